/* SPDX-License-Identifier: MIT */
/* endpoint.h - what a request asks for, as the router names it: the list
 * that metrics and logs label their series with, and nothing else. */
#ifndef ATROUSD_ENDPOINT_H
#define ATROUSD_ENDPOINT_H

enum endpoint {
	EP_NONE,
	EP_CONV,
	EP_ASPP,
	EP_SEQUENTIAL,
	EP_LIVE,
	EP_READY,
	EP_SERVER_META,
	EP_MODEL_META,
	EP_MODEL_READY,
	EP_MODEL_STATS,
	EP_STATS_ALL,
	EP_INFER,
	EP_MODEL_PUT,
	EP_MODEL_DELETE,
	EP_RELOAD,
	EP_REPO_INDEX,
	EP_REPO_LOAD,
	EP_REPO_UNLOAD,
	EP_METRICS,
	EP_COUNT /* not an endpoint: the number of them */
};

/* A short, stable label for metrics and logs ("infer", "atrous_conv2d", ...). */
const char *endpoint_label(enum endpoint ep);

#endif
