/* SPDX-License-Identifier: MIT */
/* endpoint.c - the endpoints' labels. */
#include "autoconfig.h"

#include <stddef.h>

#include "endpoint.h"

const char *endpoint_label(enum endpoint ep)
{
	static const char *const names[] = {
		[EP_NONE] = "unknown",
		[EP_CONV] = "atrous_conv2d",
		[EP_ASPP] = "aspp",
		[EP_SEQUENTIAL] = "sequential",
		[EP_LIVE] = "live",
		[EP_READY] = "ready",
		[EP_SERVER_META] = "server_metadata",
		[EP_MODEL_META] = "model_metadata",
		[EP_MODEL_READY] = "model_ready",
		[EP_MODEL_STATS] = "model_stats",
		[EP_STATS_ALL] = "stats",
		[EP_INFER] = "infer",
		[EP_MODEL_PUT] = "model_put",
		[EP_MODEL_DELETE] = "model_delete",
		[EP_RELOAD] = "reload",
		[EP_REPO_INDEX] = "repository_index",
		[EP_REPO_LOAD] = "repository_load",
		[EP_REPO_UNLOAD] = "repository_unload",
		[EP_METRICS] = "metrics",
	};
	_Static_assert(sizeof(names) / sizeof(names[0]) == EP_COUNT, "a label for every endpoint");

	return (size_t)ep < sizeof(names) / sizeof(names[0]) ? names[ep] : "unknown";
}
