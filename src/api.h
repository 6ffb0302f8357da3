/* api.h - the endpoints behind the HTTP layer: what each route computes and
 * replies, independent of libmicrohttpd.
 *
 * Compute endpoints run on a pool worker (api_compute); cheap ones (health)
 * run on the HTTP thread (api_health).  Both fill a struct reply.
 */
#ifndef ATROUSD_API_H
#define ATROUSD_API_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "par.h"

enum api_endpoint { EP_CONV, EP_ASPP, EP_SEQUENTIAL, EP_LIVE, EP_READY };

enum api_state { API_STARTING, API_READY, API_DRAINING };

struct reply {
	int status;
	char *body; /* malloc'd, owned */
	size_t len;
	const char *content_type;
	int retry_after; /* seconds; 0 for none */
	const char *allow;
	char server_timing[160];
};

/* Timestamps of one request, in CLOCK_MONOTONIC nanoseconds. */
struct api_times {
	uint64_t start;   /* request line received */
	uint64_t enqueue; /* handed to the pool */
};

struct api {
	const struct config *cfg;
	const struct par_runner *runner;
	int state; /* enum api_state, atomic */
};

/* Monotonic clock in nanoseconds. */
uint64_t api_now_ns(void);

/* Run a compute endpoint on a worker: decode, compute, encode. */
void api_compute(struct api *a, enum api_endpoint ep, const char *body, size_t len,
                 const struct api_times *t, struct reply *r);

/* Answer a health endpoint. */
void api_health(struct api *a, enum api_endpoint ep, struct reply *r);

/* Fill r with status and {"error": message}. */
void reply_error(struct reply *r, int status, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Map a negative errno from the core to an HTTP status. */
int api_status_of(int rc);

/* Free the reply body. */
void reply_clear(struct reply *r);

#endif
