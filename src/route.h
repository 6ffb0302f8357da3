/* route.h - URL and method -> endpoint, with the model name for /v2/models/...
 * and the Allow list when only the method is wrong. */
#ifndef ATROUSD_ROUTE_H
#define ATROUSD_ROUTE_H

#include "model.h"

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
	EP_METRICS,
};

struct route {
	enum endpoint ep;
	int compute;                    /* runs on a worker, needs the body */
	int admin;                      /* needs the admin token */
	char model[MODEL_NAME_MAX + 1]; /* for model endpoints */
	const char *allow;              /* set when the path exists but the method doesn't */
	char bad[96];                   /* set when the path is malformed (400 or 404) */
};

/* Match a request; returns 0 with r->ep set, or -ENOENT (no such path, or
 * r->allow set for a wrong method) or -EINVAL (bad model name, in r->bad). */
int route_match(const char *method, const char *url, struct route *r);

/* A short, stable label for metrics and logs ("infer", "atrous_conv2d", ...). */
const char *route_label(enum endpoint ep);

#endif
