/* api.h - the endpoints behind the HTTP layer: what each route computes and
 * replies, independent of libmicrohttpd.
 *
 * Work that reads a body (convolutions, infer, admin) runs on a pool worker
 * through api_run; cheap endpoints (health, metadata, statistics) run on the
 * HTTP thread through api_quick.  Both fill a struct reply.
 */
#ifndef ATROUSD_API_H
#define ATROUSD_API_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "model.h"
#include "par.h"
#include "route.h"

enum api_state { API_STARTING, API_READY, API_DRAINING };

struct reply {
	int status;
	char *body; /* malloc'd, owned */
	size_t len;
	const char *content_type;
	int retry_after; /* seconds; 0 for none */
	const char *allow;
	const char *www_authenticate;
	char server_timing[160];
	char infer_header_len[24]; /* Inference-Header-Content-Length, or "" */
	char request_id[64];       /* a KServe request's id, for the log */
};

/* Timestamps of one request, in CLOCK_MONOTONIC nanoseconds. */
struct api_times {
	uint64_t start;   /* request line received */
	uint64_t enqueue; /* handed to the pool */
};

struct api_request {
	const struct route *route;
	const char *body;
	size_t len;
	long long header_len; /* Inference-Header-Content-Length, -1 when absent */
	struct api_times t;
	int padded; /* the body outlives the request and has TENSOR_ALIGN bytes of slack */
};

struct pool;

struct api {
	const struct config *cfg;
	const struct par_runner *runner;
	struct pool *pool;
	struct models *models;
	char *admin_token; /* NULL: admin API disabled */
	int state;         /* enum api_state, atomic */
};

/* Monotonic clock in nanoseconds. */
uint64_t api_now_ns(void);

/* Read the admin token from cfg->admin_token_file (if set) into a->admin_token. */
int api_load_token(struct api *a, char *err);

/* Run an endpoint that needs a worker: decode, compute, encode. */
void api_run(struct api *a, const struct api_request *rq, struct reply *r);

/* Answer a cheap endpoint on the calling thread. */
void api_quick(struct api *a, const struct route *rt, struct reply *r);

/* 0 when the Authorization header carries the admin token; else fills r
 * (403 when no token is configured, 401 otherwise). */
int api_authorize(struct api *a, const char *authorization, struct reply *r);

/* Fill r with status and {"error": message}. */
void reply_error(struct reply *r, int status, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Map a negative errno from the core to an HTTP status. */
int api_status_of(int rc);

/* Free the reply body. */
void reply_clear(struct reply *r);

#endif
