/* SPDX-License-Identifier: MIT */
/* route.h - URL and method -> endpoint, with the model name for /v2/models/...
 * and the Allow list when only the method is wrong. */
#ifndef ATROUSD_ROUTE_H
#define ATROUSD_ROUTE_H

#include "endpoint.h"
#include "model.h"

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

#endif
