/* SPDX-License-Identifier: MIT */
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
#include "metrics.h"
#include "reply.h"
#include "par.h"
#include "route.h"

enum api_state { API_STARTING, API_READY, API_DRAINING };

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

struct metrics;
struct models;
struct pool;
struct api;

/* The endpoints over borrowed subsystems (they outlive the api); reads the
 * admin token from cfg->admin_token_file when set.  State: API_STARTING. */
int api_new(struct api **out, const struct config *cfg, struct pool *pool, struct models *models,
            struct metrics *metrics, char *err);

/* Free the api (and forget the token); NULL is allowed. */
void api_free(struct api *a);

/* Monotonic clock in nanoseconds. */
uint64_t api_now_ns(void);

/* Readiness: set by the main thread, read by any. */
void api_set_state(struct api *a, enum api_state state);
int api_draining(const struct api *a);
int api_ready(const struct api *a); /* API_READY: serving */

/* Is a model of that name served now? */
int api_has_model(struct api *a, const char *name);

/* The metrics the api and its HTTP layer record into. */
struct metrics *api_metrics(struct api *a);

/* Reload the model directory (SIGHUP, the admin endpoint, start-up): logs
 * the outcome with why, records it in the metrics; 0 or -errno. */
int api_reload(struct api *a, const char *why, size_t *loaded, size_t *failed);

/* The deadline bookkeeping both front ends (HTTP, gRPC) share. */

/* The compute a request of rt is expected to take, for deciding at its start
 * whether it can meet its deadline: its stored model's mean compute time so
 * far (0: no guess, as for native requests, which carry their own filters). */
uint64_t api_expected_ns(struct api *a, const struct route *rt);

/* Count a request given up after used_ns of compute; the compute it saved is
 * the mean of its model (or native endpoint) less what it used. */
void api_abandoned(struct api *a, const struct route *rt, enum metrics_abandon why,
                   uint64_t used_ns);

/* The 504 message of a request of rt that arrived at start_ns with a timeout
 * ending at deadline_ns: "deadline of N us exceeded after M us (queued Q us)",
 * or, when a worker refused it with time left because its model computes in
 * expected_ns on average, "deadline of N us cannot be met: ...". */
void api_deadline_text(char *out, size_t len, const struct route *rt, uint64_t timeout_us,
                       uint64_t start_ns, uint64_t deadline_ns, uint64_t queued_us,
                       uint64_t expected_ns);

/* Run an endpoint that needs a worker: decode, compute, encode. */
void api_run(struct api *a, const struct api_request *rq, struct reply *r);

/* Answer a cheap endpoint on the calling thread. */
void api_quick(struct api *a, const struct route *rt, struct reply *r);

/* 0 when the Authorization header carries the admin token; else fills r and
 * returns -EPERM (403: no token is configured) or -EACCES (401). */
int api_authorize(struct api *a, const char *authorization, struct reply *r);

#endif
