/* SPDX-License-Identifier: MIT */
/* metrics.c - atomic counters and histograms; Prometheus text exposition. */
#include "autoconfig.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "grpc.h"
#include "metrics.h"

/* Upper bounds in seconds; +Inf is implicit. */
static const double bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	                         0.1,    0.25,  0.5,    1,     2.5,  5,     10 };
#define NBUCKETS (sizeof(bounds) / sizeof(bounds[0]) + 1)

struct histo {
	uint64_t bucket[NBUCKETS]; /* per bucket, not cumulative */
	uint64_t count;
	uint64_t sum_ns;
};

/* Status codes given their own series; anything else is "other". */
static const int codes[] = { 200, 201, 400, 401, 403, 404, 405, 409,
	                     413, 415, 422, 499, 500, 503, 504 };
#define NCODES     (sizeof(codes) / sizeof(codes[0]) + 1)
#define NENDPOINTS EP_COUNT

/* Per-model compute histograms; names are appended, never removed. */
#define MAX_MODELS 256
struct model_series {
	char name[72];
	int ready; /* atomic: name published */
	struct histo compute;
};

struct metrics {
	uint64_t requests[NENDPOINTS][NCODES];
	struct histo duration[NENDPOINTS];
	struct histo queue, decode, encode;
	struct model_series models[MAX_MODELS];
	int nmodels; /* atomic */
	uint64_t flops, bytes_in, bytes_out;
	int64_t inflight;
	uint64_t reloads_ok, reloads_failed;
	uint64_t abandoned[NENDPOINTS][ABANDON_COUNT];
	uint64_t saved_ns[NENDPOINTS][ABANDON_COUNT];
	uint64_t grpc_requests[NENDPOINTS][GRPC_CODE_COUNT];
	struct histo grpc_duration[NENDPOINTS];
	double start_time;
	pthread_mutex_t add; /* serialises adding a model's series */
};

int metrics_new(struct metrics **out)
{
	struct metrics *mt = calloc(1, sizeof(*mt));
	struct timeval tv;

	*out = NULL;
	if (mt == NULL)
		return -ENOMEM;
	pthread_mutex_init(&mt->add, NULL);
	gettimeofday(&tv, NULL);
	mt->start_time = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
	*out = mt;
	return 0;
}

void metrics_free(struct metrics *mt)
{
	if (mt == NULL)
		return;
	pthread_mutex_destroy(&mt->add);
	free(mt);
}

static void observe(struct histo *h, uint64_t ns)
{
	double s = (double)ns / 1e9;
	size_t i = 0;

	while (i < NBUCKETS - 1 && s > bounds[i])
		i++;
	__atomic_add_fetch(&h->bucket[i], 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&h->count, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&h->sum_ns, ns, __ATOMIC_RELAXED);
}

static size_t code_index(int status)
{
	size_t i;

	for (i = 0; i < NCODES - 1; i++)
		if (codes[i] == status)
			return i;
	return NCODES - 1;
}

void metrics_request(struct metrics *mt, enum endpoint ep, int status, uint64_t total_ns,
                     size_t bytes_in, size_t bytes_out)
{
	if ((unsigned)ep >= NENDPOINTS)
		ep = EP_NONE;
	__atomic_add_fetch(&mt->requests[ep][code_index(status)], 1, __ATOMIC_RELAXED);
	observe(&mt->duration[ep], total_ns);
	__atomic_add_fetch(&mt->bytes_in, bytes_in, __ATOMIC_RELAXED);
	__atomic_add_fetch(&mt->bytes_out, bytes_out, __ATOMIC_RELAXED);
}

static unsigned long long load(const uint64_t *v)
{
	return (unsigned long long)__atomic_load_n(v, __ATOMIC_RELAXED);
}

void metrics_grpc_request(struct metrics *mt, enum endpoint ep, int code, uint64_t total_ns,
                          size_t bytes_in, size_t bytes_out)
{
	if ((unsigned)ep >= NENDPOINTS)
		ep = EP_NONE;
	if (code < 0 || code >= GRPC_CODE_COUNT)
		code = GRPC_UNKNOWN;
	__atomic_add_fetch(&mt->grpc_requests[ep][code], 1, __ATOMIC_RELAXED);
	observe(&mt->grpc_duration[ep], total_ns);
	__atomic_add_fetch(&mt->bytes_in, bytes_in, __ATOMIC_RELAXED);
	__atomic_add_fetch(&mt->bytes_out, bytes_out, __ATOMIC_RELAXED);
}

static struct model_series *series(struct metrics *mt, const char *model)
{
	int i, n = __atomic_load_n(&mt->nmodels, __ATOMIC_ACQUIRE);

	for (i = 0; i < n; i++)
		if (strcmp(mt->models[i].name, model) == 0)
			return &mt->models[i];
	pthread_mutex_lock(&mt->add); /* only when a model is seen the first time */
	n = mt->nmodels;
	for (i = 0; i < n; i++)
		if (strcmp(mt->models[i].name, model) == 0)
			break;
	if (i == n && n < MAX_MODELS) {
		snprintf(mt->models[n].name, sizeof(mt->models[n].name), "%s", model);
		__atomic_store_n(&mt->nmodels, n + 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&mt->add);
	return i < MAX_MODELS ? &mt->models[i] : NULL;
}

void metrics_compute(struct metrics *mt, const char *model, uint64_t queue_ns, uint64_t decode_ns,
                     uint64_t compute_ns, uint64_t encode_ns, double flops)
{
	struct model_series *s = series(mt, model);

	observe(&mt->queue, queue_ns);
	observe(&mt->decode, decode_ns);
	observe(&mt->encode, encode_ns);
	if (s != NULL)
		observe(&s->compute, compute_ns);
	__atomic_add_fetch(&mt->flops, (uint64_t)flops, __ATOMIC_RELAXED);
}

uint64_t metrics_mean_compute_ns(struct metrics *mt, const char *model)
{
	int i, n = __atomic_load_n(&mt->nmodels, __ATOMIC_ACQUIRE);

	for (i = 0; i < n; i++)
		if (strcmp(mt->models[i].name, model) == 0) {
			uint64_t count = load(&mt->models[i].compute.count);

			return count ? load(&mt->models[i].compute.sum_ns) / count : 0;
		}
	return 0;
}

void metrics_abandoned(struct metrics *mt, enum endpoint ep, enum metrics_abandon why,
                       uint64_t saved_ns)
{
	if ((unsigned)ep >= NENDPOINTS || (unsigned)why >= ABANDON_COUNT)
		return;
	__atomic_add_fetch(&mt->abandoned[ep][why], 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&mt->saved_ns[ep][why], saved_ns, __ATOMIC_RELAXED);
}

void metrics_inflight(struct metrics *mt, int delta)
{
	__atomic_add_fetch(&mt->inflight, delta, __ATOMIC_RELAXED);
}

void metrics_reload(struct metrics *mt, int ok)
{
	__atomic_add_fetch(ok ? &mt->reloads_ok : &mt->reloads_failed, 1, __ATOMIC_RELAXED);
}

/* A label value with \, " and newline escaped. */
static void put_label(struct buf *b, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			buf_printf(b, "\\%c", *v);
		else if (*v == '\n')
			buf_puts(b, "\\n");
		else
			buf_add(b, v, 1);
	}
}

static void header(struct buf *b, const char *name, const char *type, const char *help)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A family of one unlabelled sample. */
static void scalar(struct buf *b, const char *name, const char *type, const char *help,
                   unsigned long long v)
{
	header(b, name, type, help);
	buf_printf(b, "%s %llu\n", name, v);
}

/* Histogram samples; labels is "" or `key="value"` (already escaped). */
static void put_histo(struct buf *b, const char *name, const char *labels, const struct histo *h)
{
	uint64_t cum = 0, sum;
	size_t i;

	for (i = 0; i < NBUCKETS; i++) {
		cum += __atomic_load_n(&h->bucket[i], __ATOMIC_RELAXED);
		if (i < NBUCKETS - 1)
			buf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels,
			           *labels ? "," : "", bounds[i], (unsigned long long)cum);
		else
			buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels,
			           *labels ? "," : "", (unsigned long long)cum);
	}
	/* h->count can run ahead of the buckets by a racing update: _count is
	 * the bucket total, so that it always equals +Inf. */
	sum = __atomic_load_n(&h->sum_ns, __ATOMIC_RELAXED);
	buf_printf(b, "%s_sum%s%s%s %.9f\n", name, *labels ? "{" : "", labels, *labels ? "}" : "",
	           (double)sum / 1e9);
	buf_printf(b, "%s_count%s%s%s %llu\n", name, *labels ? "{" : "", labels, *labels ? "}" : "",
	           (unsigned long long)cum);
}

static void process_metrics(const struct metrics *mt, struct buf *b)
{
	struct rusage ru;
	long rss_pages = 0, vsize = 0, page = sysconf(_SC_PAGESIZE);
	struct rlimit rl;
	struct dirent *e;
	FILE *f;
	DIR *d;
	int fds = 0;

	getrusage(RUSAGE_SELF, &ru);
	f = fopen("/proc/self/statm", "r");
	if (f != NULL) {
		if (fscanf(f, "%ld %ld", &vsize, &rss_pages) != 2)
			vsize = rss_pages = 0;
		fclose(f);
	}
	d = opendir("/proc/self/fd");
	while (d != NULL && (e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			fds++;
	if (d != NULL) {
		closedir(d);
		fds--; /* the directory stream itself */
	}
	header(b, "process_cpu_seconds_total", "counter",
	       "Total user and system CPU time spent in seconds.");
	buf_printf(b, "process_cpu_seconds_total %.6f\n",
	           (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	                   (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
	header(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
	buf_printf(b, "process_resident_memory_bytes %ld\n", rss_pages * page);
	header(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
	buf_printf(b, "process_virtual_memory_bytes %ld\n", vsize * page);
	header(b, "process_open_fds", "gauge", "Number of open file descriptors.");
	buf_printf(b, "process_open_fds %d\n", fds);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		header(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
		buf_printf(b, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
	}
	header(b, "process_start_time_seconds", "gauge",
	       "Start time of the process since unix epoch in seconds.");
	buf_printf(b, "process_start_time_seconds %.3f\n", mt->start_time);
}

/* Requests given up, for each endpoint that computes (zeros included, so
 * that rates exist before the first one). */
static void render_abandoned(struct metrics *mt, struct buf *b)
{
	static const enum endpoint computing[] = { EP_CONV, EP_ASPP, EP_SEQUENTIAL, EP_INFER };
	static const char *const reasons[ABANDON_COUNT] = {
		[ABANDON_CLIENT_GONE] = "client_gone",
		[ABANDON_DEADLINE] = "deadline",
		[ABANDON_SHUTDOWN] = "shutdown",
	};
	const size_t ncomputing = sizeof(computing) / sizeof(computing[0]);
	size_t i, r;

	header(b, "atrousd_requests_abandoned_total", "counter",
	       "Requests given up before their result, by endpoint and reason (client_gone: "
	       "the connection closed; deadline: past the request's deadline; shutdown: still "
	       "in flight at drain_timeout).");
	for (i = 0; i < ncomputing; i++)
		for (r = 0; r < ABANDON_COUNT; r++)
			buf_printf(
			        b,
			        "atrousd_requests_abandoned_total{endpoint=\"%s\",reason=\"%s\"} "
			        "%llu\n",
			        endpoint_label(computing[i]), reasons[r],
			        load(&mt->abandoned[computing[i]][r]));
	header(b, "atrousd_abandoned_compute_seconds_total", "counter",
	       "Compute time not spent because requests were abandoned, estimated for each as "
	       "the mean compute time of its model minus what it had used.");
	for (i = 0; i < ncomputing; i++)
		for (r = 0; r < ABANDON_COUNT; r++)
			buf_printf(b,
			           "atrousd_abandoned_compute_seconds_total{endpoint=\"%s\","
			           "reason=\"%s\"} %.6f\n",
			           endpoint_label(computing[i]), reasons[r],
			           (double)load(&mt->saved_ns[computing[i]][r]) / 1e9);
}

/* Requests by endpoint and code, and their durations by endpoint. */
/* gRPC calls by endpoint (the REST endpoint each call maps to) and status. */
static void render_grpc(struct metrics *mt, struct buf *b)
{
	char labels[128];
	size_t e;
	int c;

	header(b, "atrousd_grpc_requests_total", "counter",
	       "gRPC calls answered, by endpoint (as the REST API names it) and gRPC status.");
	for (e = 0; e < NENDPOINTS; e++)
		for (c = 0; c < GRPC_CODE_COUNT; c++) {
			uint64_t v = load(&mt->grpc_requests[e][c]);

			if (v != 0)
				buf_printf(
				        b,
				        "atrousd_grpc_requests_total{endpoint=\"%s\",code=\"%s\"} "
				        "%llu\n",
				        endpoint_label((enum endpoint)e), grpc_code_name(c),
				        (unsigned long long)v);
		}
	header(b, "atrousd_grpc_request_duration_seconds", "histogram",
	       "Time from a call's headers to its response, by endpoint.");
	for (e = 0; e < NENDPOINTS; e++) {
		if (load(&mt->grpc_duration[e].count) == 0)
			continue;
		snprintf(labels, sizeof(labels), "endpoint=\"%s\"",
		         endpoint_label((enum endpoint)e));
		put_histo(b, "atrousd_grpc_request_duration_seconds", labels,
		          &mt->grpc_duration[e]);
	}
}

static void render_requests(struct metrics *mt, struct buf *b)
{
	char labels[128];
	size_t e, c;

	header(b, "atrousd_requests_total", "counter",
	       "HTTP requests answered, by endpoint and status code.");
	for (e = 0; e < NENDPOINTS; e++)
		for (c = 0; c < NCODES; c++) {
			uint64_t v = __atomic_load_n(&mt->requests[e][c], __ATOMIC_RELAXED);
			char code[16];

			if (v == 0)
				continue;
			if (c < NCODES - 1)
				snprintf(code, sizeof(code), "%d", codes[c]);
			else
				snprintf(code, sizeof(code), "other");
			buf_printf(b, "atrousd_requests_total{endpoint=\"%s\",code=\"%s\"} %llu\n",
			           endpoint_label((enum endpoint)e), code, (unsigned long long)v);
		}
	header(b, "atrousd_request_duration_seconds", "histogram",
	       "Time from the request line to the reply, by endpoint.");
	for (e = 0; e < NENDPOINTS; e++) {
		if (__atomic_load_n(&mt->duration[e].count, __ATOMIC_RELAXED) == 0)
			continue;
		snprintf(labels, sizeof(labels), "endpoint=\"%s\"",
		         endpoint_label((enum endpoint)e));
		put_histo(b, "atrousd_request_duration_seconds", labels, &mt->duration[e]);
	}
}

/* The stages of computations, and compute time by model. */
static void render_stages(struct metrics *mt, struct buf *b)
{
	int i, n;

	header(b, "atrousd_queue_duration_seconds", "histogram",
	       "Time computations waited for a worker.");
	put_histo(b, "atrousd_queue_duration_seconds", "", &mt->queue);
	header(b, "atrousd_decode_duration_seconds", "histogram",
	       "Time decoding request bodies into tensors.");
	put_histo(b, "atrousd_decode_duration_seconds", "", &mt->decode);
	header(b, "atrousd_encode_duration_seconds", "histogram",
	       "Time encoding results into replies.");
	put_histo(b, "atrousd_encode_duration_seconds", "", &mt->encode);
	header(b, "atrousd_compute_duration_seconds", "histogram",
	       "Time computing, by stored model (or native endpoint).");
	n = __atomic_load_n(&mt->nmodels, __ATOMIC_ACQUIRE);
	for (i = 0; i < n; i++) {
		struct buf lb = { 0 };

		buf_puts(&lb, "model=\"");
		put_label(&lb, mt->models[i].name);
		buf_puts(&lb, "\"");
		buf_add(&lb, "", 1);
		if (buf_ok(&lb) == 0)
			put_histo(b, "atrousd_compute_duration_seconds", lb.data,
			          &mt->models[i].compute);
		buf_free(&lb);
	}
}

/* Transformed weights per model, and the budget they share. */
static void render_fast(struct buf *b, const struct metrics_gauges *g)
{
	size_t i;

	header(b, "atrousd_model_fast_weights_bytes", "gauge",
	       "Transformed weights of minimal filtering a stored model holds.");
	for (i = 0; i < g->nfast; i++)
		buf_printf(b, "atrousd_model_fast_weights_bytes{model=\"%s\"} %zu\n",
		           g->fast[i].model, g->fast[i].bytes);
	scalar(b, "atrousd_fast_weights_budget_bytes", "gauge",
	       "Budget of transformed weights, all models together (fast_weights_budget).",
	       (unsigned long long)g->fast_budget);
	scalar(b, "atrousd_buffer_cache_bytes", "gauge",
	       "Memory of freed large tensors kept for reuse.",
	       (unsigned long long)g->buffer_cache);
	scalar(b, "atrousd_buffer_cache_limit_bytes", "gauge",
	       "Bound of that memory (buffer_cache).", (unsigned long long)g->buffer_cache_limit);
}

void metrics_render(struct metrics *mt, struct buf *b, const struct metrics_gauges *g)
{
	long long inflight = __atomic_load_n(&mt->inflight, __ATOMIC_RELAXED);

	header(b, "atrousd_build_info", "gauge", "Build information; the value is always 1.");
	buf_printf(b, "atrousd_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
	render_requests(mt, b);
	render_grpc(mt, b);
	render_abandoned(mt, b);
	render_stages(mt, b);
	scalar(b, "atrousd_queue_depth", "gauge", "Computations waiting for a worker.",
	       g->queue_depth);
	scalar(b, "atrousd_inflight_requests", "gauge", "Requests received and not yet answered.",
	       inflight > 0 ? (unsigned long long)inflight : 0);
	scalar(b, "atrousd_workers", "gauge", "Compute worker threads.",
	       (unsigned long long)g->workers);
	scalar(b, "atrousd_workers_busy", "gauge", "Compute workers running a job now.",
	       (unsigned long long)g->workers_busy);
	scalar(b, "atrousd_flops_total", "counter",
	       "Useful floating-point operations computed (multiply-adds x 2).", load(&mt->flops));
	scalar(b, "atrousd_received_bytes_total", "counter", "Request body bytes received.",
	       load(&mt->bytes_in));
	scalar(b, "atrousd_sent_bytes_total", "counter", "Reply body bytes sent.",
	       load(&mt->bytes_out));
	scalar(b, "atrousd_models_loaded", "gauge", "Stored models being served.",
	       g->models_loaded);
	header(b, "atrousd_model_reloads_total", "counter",
	       "Model directory reloads, by result (failure: some model did not load).");
	buf_printf(b, "atrousd_model_reloads_total{result=\"success\"} %llu\n",
	           load(&mt->reloads_ok));
	buf_printf(b, "atrousd_model_reloads_total{result=\"failure\"} %llu\n",
	           load(&mt->reloads_failed));
	render_fast(b, g);
	process_metrics(mt, b);
}
