/* SPDX-License-Identifier: MIT */
/* route.c - the URL map of atrousd. */
#include "autoconfig.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "route.h"

struct fixed {
	const char *path;
	const char *method;
	enum endpoint ep;
	int compute, admin;
};

static const struct fixed fixed[] = {
	{ "/v1/atrous_conv2d", "POST", EP_CONV, 1, 0 },
	{ "/v1/aspp", "POST", EP_ASPP, 1, 0 },
	{ "/v1/sequential", "POST", EP_SEQUENTIAL, 1, 0 },
	{ "/v1/models/reload", "POST", EP_RELOAD, 1, 1 },
	{ "/v2/repository/index", "POST", EP_REPO_INDEX, 1, 1 },
	{ "/v2", "GET", EP_SERVER_META, 0, 0 },
	{ "/v2/health/live", "GET", EP_LIVE, 0, 0 },
	{ "/v2/health/ready", "GET", EP_READY, 0, 0 },
	{ "/v2/models/stats", "GET", EP_STATS_ALL, 0, 0 },
	{ "/healthz", "GET", EP_LIVE, 0, 0 },
	{ "/metrics", "GET", EP_METRICS, 0, 0 },
};

static int method_is(const char *method, const char *want)
{
	return strcmp(method, want) == 0 ||
	       (strcmp(want, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

static const char *allow_of(const char *want)
{
	return strcmp(want, "GET") == 0 ? "GET, HEAD" : want;
}

/* Copy the next path segment of p into seg; returns the rest or NULL. */
static const char *segment(const char *p, char *seg, size_t len, int *toolong)
{
	const char *slash = strchr(p, '/');
	size_t n = slash ? (size_t)(slash - p) : strlen(p);

	*toolong = n >= len;
	snprintf(seg, len, "%.*s", (int)(n >= len ? len - 1 : n), p);
	return slash ? slash + 1 : p + n;
}

/* The model name that starts rest into r->model; *after gets what follows
 * its '/'.  -EINVAL (r->bad set) for a malformed name. */
static int take_model(const char *rest, struct route *r, const char **after)
{
	char name[MODEL_NAME_MAX + 2];
	int toolong;

	*after = segment(rest, name, sizeof(name), &toolong);
	if (toolong || !model_name_ok(name)) {
		snprintf(r->bad, sizeof(r->bad),
		         "model names match [A-Za-z0-9_.-]{1,64} and do not start with '.'");
		return -EINVAL;
	}
	memcpy(r->model, name, strlen(name) + 1); /* length checked above */
	return 0;
}

static int model_routes(const char *method, const char *rest, struct route *r)
{
	const char *name = r->model;
	char part[32];
	int toolong;
	const char *p;

	if (take_model(rest, r, &p) < 0)
		return -EINVAL;
	if (strncmp(p, "versions/", 9) == 0) {
		p = segment(p + 9, part, sizeof(part), &toolong);
		if (strcmp(part, "1") != 0) {
			snprintf(r->bad, sizeof(r->bad), "model %s has only version 1", name);
			return -ENOENT;
		}
	}
	if (*p == '\0') {
		r->ep = EP_MODEL_META;
		r->allow = method_is(method, "GET") ? NULL : "GET, HEAD";
	} else if (strcmp(p, "ready") == 0) {
		r->ep = EP_MODEL_READY;
		r->allow = method_is(method, "GET") ? NULL : "GET, HEAD";
	} else if (strcmp(p, "stats") == 0) {
		r->ep = EP_MODEL_STATS;
		r->allow = method_is(method, "GET") ? NULL : "GET, HEAD";
	} else if (strcmp(p, "infer") == 0) {
		r->ep = EP_INFER;
		r->compute = 1;
		r->allow = strcmp(method, "POST") == 0 ? NULL : "POST";
	} else {
		return -ENOENT;
	}
	return r->allow ? -ENOENT : 0;
}

/* /v2/repository/models/NAME/load and .../unload (Triton's extension). */
static int repository_routes(const char *method, const char *rest, struct route *r)
{
	const char *p;

	if (take_model(rest, r, &p) < 0)
		return -EINVAL;
	if (strcmp(p, "load") == 0)
		r->ep = EP_REPO_LOAD;
	else if (strcmp(p, "unload") == 0)
		r->ep = EP_REPO_UNLOAD;
	else
		return -ENOENT;
	r->compute = 1;
	r->admin = 1;
	if (strcmp(method, "POST") != 0) {
		r->allow = "POST";
		return -ENOENT;
	}
	return 0;
}

int route_match(const char *method, const char *url, struct route *r)
{
	size_t i;

	memset(r, 0, sizeof(*r));
	for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		if (strcmp(fixed[i].path, url) != 0)
			continue;
		if (!method_is(method, fixed[i].method)) {
			r->allow = allow_of(fixed[i].method);
			return -ENOENT;
		}
		r->ep = fixed[i].ep;
		r->compute = fixed[i].compute;
		r->admin = fixed[i].admin;
		return 0;
	}
	if (strncmp(url, "/v2/models/", 11) == 0)
		return model_routes(method, url + 11, r);
	if (strncmp(url, "/v2/repository/models/", 22) == 0)
		return repository_routes(method, url + 22, r);
	if (strncmp(url, "/v1/models/", 11) == 0) {
		const char *p;

		if (take_model(url + 11, r, &p) < 0 || *p != '\0' || url[strlen(url) - 1] == '/') {
			snprintf(
			        r->bad, sizeof(r->bad),
			        "model names match [A-Za-z0-9_.-]{1,64} and do not start with '.'");
			return -EINVAL;
		}
		r->admin = 1;
		r->compute = 1;
		if (strcmp(method, "PUT") == 0) {
			r->ep = EP_MODEL_PUT;
		} else if (strcmp(method, "DELETE") == 0) {
			r->ep = EP_MODEL_DELETE;
		} else {
			r->allow = "PUT, DELETE";
			return -ENOENT;
		}
		return 0;
	}
	return -ENOENT;
}
