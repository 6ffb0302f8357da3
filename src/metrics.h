/* SPDX-License-Identifier: MIT */
/* metrics.h - counters and histograms for Prometheus, text format 0.0.4.
 *
 * Updates are relaxed atomic additions on fixed arrays (no lock on the hot
 * path); the exposition walks them at scrape time.  Histogram buckets are
 * cumulative on output only.
 */
#ifndef ATROUSD_METRICS_H
#define ATROUSD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "endpoint.h"

/* Values read at scrape time from the other subsystems. */
/* One stored model's transformed weights (minimal filtering). */
struct metrics_model_bytes {
	const char *model;
	size_t bytes;
};

struct metrics_gauges {
	size_t queue_depth;
	int workers;
	size_t workers_busy; /* jobs running now */
	size_t models_loaded;
	size_t fast_budget;                      /* bytes */
	size_t buffer_cache, buffer_cache_limit; /* bytes held, bound */
	const struct metrics_model_bytes *fast;  /* per model, nfast of them */
	size_t nfast;
};

struct metrics;

/* A new set of zeroed series; the process start time is taken now.  0 or
 * -ENOMEM. */
int metrics_new(struct metrics **out);

/* Free the set; NULL is allowed. */
void metrics_free(struct metrics *mt);

/* One finished HTTP request: endpoint, status, duration, body bytes. */
void metrics_request(struct metrics *mt, enum endpoint ep, int status, uint64_t total_ns,
                     size_t bytes_in, size_t bytes_out);

/* One gRPC call answered: the endpoint it maps to, its gRPC status code. */
void metrics_grpc_request(struct metrics *mt, enum endpoint ep, int code, uint64_t total_ns,
                          size_t bytes_in, size_t bytes_out);

/* The stages of one successful computation; model names the stored model or
 * the native endpoint. */
void metrics_compute(struct metrics *mt, const char *model, uint64_t queue_ns, uint64_t decode_ns,
                     uint64_t compute_ns, uint64_t encode_ns, double flops);

/* Why a request was given up before its result. */
enum metrics_abandon { ABANDON_CLIENT_GONE, ABANDON_DEADLINE, ABANDON_SHUTDOWN, ABANDON_COUNT };

/* One request given up (dropped from the queue or stopped while computing),
 * and the compute time that saved. */
void metrics_abandoned(struct metrics *mt, enum endpoint ep, enum metrics_abandon why,
                       uint64_t saved_ns);

/* Mean compute time of a model (or native endpoint) so far; 0 if none. */
uint64_t metrics_mean_compute_ns(struct metrics *mt, const char *model);

/* A request entered (+1) or left (-1) the compute path. */
void metrics_inflight(struct metrics *mt, int delta);

/* One model reload, successful (every model loaded) or not. */
void metrics_reload(struct metrics *mt, int ok);

/* Append the whole exposition. */
void metrics_render(struct metrics *mt, struct buf *b, const struct metrics_gauges *g);

/* The Content-Type of the exposition. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
