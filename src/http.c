/* SPDX-License-Identifier: MIT */
/* http.c - libmicrohttpd glue: routes, limits, suspend/resume, the life of
 * a request (reply, client gone, deadline, shutdown), drain. */
#include "autoconfig.h"

#include <netinet/in.h>

#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "error.h"
#include "http.h"
#include "jscan.h"
#include "log.h"
#include "metrics.h"
#include "route.h"
#include "sock.h"
#include "tls.h"
#include "tensor.h"
#include "watch.h"

/* How long a reply to a half-closed connection may take to write: from a
 * worker, and from the I/O thread when the half-close came too late for the
 * worker to see it (see on_completed()). */
#define HTTP_DIRECT_WORKER_MS 2000
#define HTTP_DIRECT_IO_MS     100

/* Per-connection memory of libmicrohttpd (headers and I/O buffers). */
#define HTTP_CONN_MEMORY (32 * 1024)

enum phase { P_NEW, P_BODY, P_RUNNING, P_DONE };

struct request {
	struct http *h;
	struct MHD_Connection *conn;
	struct route route;
	long long header_len; /* Inference-Header-Content-Length, -1 if absent */
	enum phase phase;
	int refs;            /* MHD's and the job's, under h->lock */
	int abandoned;       /* given up (see abandon()); written under h->lock */
	int cancel;          /* the flag the job's kernels watch; raised by abandon() */
	int fd;              /* the connection's socket, for peeking without MHD */
	int sock;            /* the same, watched for the client leaving (TLS too), or -1 */
	int discard;         /* a reply is queued early; ignore the body */
	int direct;          /* the reply was written to the socket by the worker */
	int gone;            /* the client left: close without a reply */
	uint64_t serial;     /* the watcher's key */
	uint64_t timeout_us; /* the request's timeout, 0: none */
	uint64_t deadline;   /* CLOCK_MONOTONIC ns, 0: none */
	uint64_t started;    /* a worker took the job (ns); 0 while queued */
	uint64_t expected;   /* the model's mean compute (ns) when that refused it */
	const char *note;    /* what ended the request, for the log */
	struct buf body;
	char *body_mem;  /* the aligned storage of body, when it has one */
	int padded;      /* body_mem: binary tensors can be used in place */
	size_t reserved; /* bytes counted in h->inflight_bytes */
	struct api_times t;
	struct reply reply;
	int status;
	size_t bytes_out;
	char method[12], path[128];
	char request_id[64];
	char model[72];
	uint64_t queue_us, compute_us;
	struct request *prev, *next; /* list of requests with a job */
};

struct http {
	struct MHD_Daemon *daemon;
	struct api *api;
	struct pool *pool;
	const struct config *cfg;
	int metrics_only;    /* a listener for /metrics and health alone */
	struct tls *tls;     /* HTTPS, or NULL */
	int admin_plaintext; /* admin calls allowed over plain HTTP from anywhere */
	pthread_mutex_t lock;
	struct request *jobs; /* requests whose job has not replied */
	size_t njobs;
	size_t live_jobs;      /* jobs queued or running, abandoned or not */
	pthread_cond_t idle;   /* live_jobs fell to 0 */
	uint64_t serial;       /* last key given to the watcher */
	struct watch *watch;   /* closed clients and deadlines of jobs */
	size_t inflight_bytes; /* atomic */
};

static void request_unref(struct http *h, struct request *rq)
{
	int last;

	pthread_mutex_lock(&h->lock);
	last = --rq->refs == 0;
	pthread_mutex_unlock(&h->lock);
	if (!last)
		return;
	buf_free(&rq->body);
	free(rq->body_mem);
	reply_clear(&rq->reply);
	free(rq);
}

static void jobs_remove(struct http *h, struct request *rq)
{
	if (rq->prev)
		rq->prev->next = rq->next;
	else
		h->jobs = rq->next;
	if (rq->next)
		rq->next->prev = rq->prev;
	rq->prev = rq->next = NULL;
	h->njobs--;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	struct request *rq = calloc(1, sizeof(*rq));

	if (rq == NULL)
		return NULL;
	rq->h = cls;
	rq->conn = c;
	rq->refs = 1;
	rq->header_len = -1;
	rq->fd = rq->sock = -1;
	rq->t.start = api_now_ns();
	return rq;
}

/* The largest body this request may send: admin endpoints carry models. */
static uint64_t body_limit(const struct request *rq)
{
	return rq->route.admin ? rq->h->cfg->max_model_body : rq->h->cfg->max_body;
}

static int draining(const struct http *h)
{
	return api_draining(h->api);
}

/* Call add(ctx, name, value) for each header a reply carries. */
static void reply_headers(const struct reply *r, void (*add)(void *ctx, const char *, const char *),
                          void *ctx)
{
	char num[24];

	add(ctx, MHD_HTTP_HEADER_CONTENT_TYPE,
	    r->content_type ? r->content_type : "application/json");
	if (r->server_timing[0])
		add(ctx, "Server-Timing", r->server_timing);
	if (r->retry_after > 0) {
		snprintf(num, sizeof(num), "%d", r->retry_after);
		add(ctx, MHD_HTTP_HEADER_RETRY_AFTER, num);
	}
	if (r->allow != NULL)
		add(ctx, MHD_HTTP_HEADER_ALLOW, r->allow);
	if (r->www_authenticate != NULL)
		add(ctx, MHD_HTTP_HEADER_WWW_AUTHENTICATE, r->www_authenticate);
	if (r->infer_header_len[0])
		add(ctx, "Inference-Header-Content-Length", r->infer_header_len);
}

/* The bookkeeping of a reply that goes out: log fields and metrics. */
static void record_reply(struct request *rq)
{
	const struct reply *r = &rq->reply;

	rq->status = r->status;
	rq->bytes_out = r->len;
	metrics_request(api_metrics(rq->h->api), rq->route.ep, r->status,
	                api_now_ns() - rq->t.start, rq->body.len, r->len);
	if (r->request_id[0])
		snprintf(rq->request_id, sizeof(rq->request_id), "%s", r->request_id);
	snprintf(rq->model, sizeof(rq->model), "%s", r->model);
	rq->queue_us = r->queue_us;
	rq->compute_us = r->compute_us;
}

static const struct sockaddr *client_addr(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
	        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

	return ci ? ci->client_addr : NULL;
}

static void add_to_response(void *ctx, const char *name, const char *value)
{
	MHD_add_response_header(ctx, name, value);
}

static enum MHD_Result send_reply(struct request *rq)
{
	struct reply *r = &rq->reply;
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
	if (resp == NULL)
		return MHD_NO;
	r->body = NULL;
	reply_headers(r, add_to_response, resp);
	if (draining(rq->h))
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	record_reply(rq);
	ret = MHD_queue_response(rq->conn, (unsigned int)r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result fail(struct request *rq, int status, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static enum MHD_Result fail(struct request *rq, int status, const char *fmt, ...)
{
	char msg[ERR_LEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	reply_error(&rq->reply, status, "%s", msg);
	if (status == 503)
		rq->reply.retry_after = (int)rq->h->cfg->retry_after;
	rq->discard = 1;
	return send_reply(rq);
}

/* Content types that cannot carry a JSON document. */
static int content_type_refused(const char *ct)
{
	static const char *const refused[] = { "multipart/", "image/", "audio/",
		                               "video/",     "font/",  "model/" };
	size_t i;

	for (i = 0; ct && i < sizeof(refused) / sizeof(refused[0]); i++)
		if (strncasecmp(ct, refused[i], strlen(refused[i])) == 0)
			return 1;
	return 0;
}

static int parse_length(const char *s, unsigned long long *out)
{
	char *end;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno == 0 && *end == '\0' ? 0 : -1;
}

/* Room for a body of len bytes.  A KServe body with binary data gets
 * storage in which that data starts TENSOR_ALIGN-aligned with slack after
 * it, so the input is used in place (kserve_decode); plain malloc (not an
 * aligned allocator) lets glibc recycle earlier bodies' memory instead of
 * mapping fresh pages. */
static int reserve_body(struct request *rq, size_t len)
{
	size_t pad;

	if (rq->header_len <= 0 || (size_t)rq->header_len >= len)
		return len > 0 && buf_reserve(&rq->body, len) == NULL ? -1 : 0;
	rq->body_mem = malloc(len + 2 * TENSOR_ALIGN);
	if (rq->body_mem == NULL)
		return -1;
	pad = (TENSOR_ALIGN - (uintptr_t)(rq->body_mem + rq->header_len) % TENSOR_ALIGN) %
	      TENSOR_ALIGN;
	buf_use(&rq->body, rq->body_mem + pad, len);
	rq->padded = 1;
	return 0;
}

/* The body's framing, encoding and size against the limits; reserve it. */
static enum MHD_Result accept_body(struct request *rq)
{
	struct http *h = rq->h;
	struct MHD_Connection *c = rq->conn;
	const char *te, *cl, *ct, *ce;
	unsigned long long len = 0;
	size_t budget;

	te = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
	cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	if (te != NULL && strcasecmp(te, "chunked") != 0)
		return fail(rq, 400, "Transfer-Encoding \"%.32s\" is not supported (only chunked)",
		            te);
	if (te != NULL && cl != NULL)
		return fail(rq, 400, "Transfer-Encoding and Content-Length together are refused");
	if (cl != NULL && parse_length(cl, &len) < 0)
		return fail(rq, 400, "malformed Content-Length");
	if (len > body_limit(rq))
		return fail(rq, 413, "request body of %llu bytes exceeds %s (%llu bytes)", len,
		            rq->route.admin ? "max_model_body" : "max_body",
		            (unsigned long long)body_limit(rq));
	ce = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_ENCODING);
	if (ce != NULL && strcasecmp(ce, "identity") != 0)
		return fail(
		        rq, 415,
		        "Content-Encoding \"%.32s\" is not supported; send the body uncompressed",
		        ce);
	if (content_type_refused(ct))
		return fail(rq, 415,
		            "Content-Type \"%.64s\" cannot carry JSON; send application/json", ct);
	if (draining(h))
		return fail(rq, 503, "shutting down");
	budget = __atomic_add_fetch(&h->inflight_bytes, (size_t)len, __ATOMIC_RELAXED);
	rq->reserved = (size_t)len;
	if (budget > h->cfg->max_inflight_bytes)
		return fail(rq, 503, "too many request bytes in flight; retry later");
	if (reserve_body(rq, (size_t)len) < 0)
		return fail(rq, 503, "out of memory for the request body");
	rq->phase = P_BODY;
	return MHD_YES;
}

/* First call: route, authorise, answer what needs no body; then the body. */
static enum MHD_Result on_headers(struct request *rq, const char *url, const char *method)
{
	struct http *h = rq->h;
	struct MHD_Connection *c = rq->conn;
	int rc;

	snprintf(rq->method, sizeof(rq->method), "%s", method);
	snprintf(rq->path, sizeof(rq->path), "%s", url);
	rc = route_match(method, url, &rq->route);
	if (rc == -EINVAL)
		return fail(rq, 400, "%s", rq->route.bad);
	if (rc < 0) {
		if (rq->route.allow != NULL) {
			rq->reply.allow = rq->route.allow;
			return fail(rq, 405, "method %s not allowed on %s (allowed: %s)", method,
			            url, rq->route.allow);
		}
		if (rq->route.bad[0])
			return fail(rq, 404, "%s", rq->route.bad);
		return fail(rq, 404, "no such endpoint: %s %s", method, url);
	}
	if ((h->metrics_only && rq->route.ep != EP_METRICS && rq->route.ep != EP_LIVE &&
	     rq->route.ep != EP_READY) ||
	    (!h->metrics_only && rq->route.ep == EP_METRICS && h->cfg->metrics_listen[0] != '\0'))
		return fail(rq, 404, "no such endpoint on this listener: %s %s", method, url);
	if (rq->route.admin && h->tls == NULL && !h->admin_plaintext &&
	    !sock_addr_loopback(client_addr(c))) {
		char peer[INET6_ADDRSTRLEN];

		sock_addr_text(client_addr(c), peer, sizeof(peer));
		return fail(rq, 403,
		            "admin calls over plain HTTP are refused from %s (not loopback): the "
		            "token would cross the network in clear text; use HTTPS "
		            "(tls_cert_file) or set admin_plaintext = allow",
		            peer);
	}
	if (rq->route.admin &&
	    api_authorize(
	            h->api,
	            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
	            &rq->reply) < 0) {
		rq->discard = 1;
		return send_reply(rq);
	}
	if (!rq->route.compute) {
		api_quick(h->api, &rq->route, &rq->reply);
		rq->discard = 1;
		return send_reply(rq);
	}
	if (rq->route.ep == EP_INFER) {
		const char *ihl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
		                                              "Inference-Header-Content-Length");

		if (!api_has_model(h->api, rq->route.model))
			return fail(rq, 404, "unknown model \"%s\"", rq->route.model);
		rq->header_len = -1;
		if (ihl != NULL) {
			unsigned long long v;

			if (parse_length(ihl, &v) < 0 || v > (unsigned long long)h->cfg->max_body)
				return fail(rq, 400, "malformed Inference-Header-Content-Length");
			rq->header_len = (long long)v;
		}
	}
	return accept_body(rq);
}

static void add_to_buf(void *ctx, const char *name, const char *value)
{
	buf_printf(ctx, "%s: %s\r\n", name, value);
}

/* libmicrohttpd 0.9.75 reads a resumed connection once before calling the
 * handler again (the suspension left it waiting for input), and a read of
 * end-of-file there drops the connection with the reply unsent.  Replies to
 * clients that have half-closed are therefore written here, straight to the
 * socket, giving up after timeout_ms; libmicrohttpd closes the connection
 * afterwards.  The reply is recorded as sent either way (a client gone is a
 * client gone). */
static void write_direct(struct request *rq, int timeout_ms)
{
	const union MHD_ConnectionInfo *ci =
	        MHD_get_connection_info(rq->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	const struct reply *r = &rq->reply;
	const char *reason = MHD_get_reason_phrase_for((unsigned int)r->status);
	struct buf b = { 0 };
	size_t off = 0;

	rq->direct = 1;
	record_reply(rq);
	buf_printf(&b, "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Length: %zu\r\n", r->status,
	           reason ? reason : "", r->len);
	reply_headers(r, add_to_buf, &b);
	buf_puts(&b, "\r\n");
	if (r->len > 0)
		buf_add(&b, r->body, r->len);
	if (ci != NULL && buf_ok(&b) == 0)
		off = sock_send_within(ci->connect_fd, b.data, b.len, timeout_ms);
	if (off < b.len)
		log_warn("%s %s: reply to a half-closed connection cut short (%zu of %zu bytes)",
		         rq->method, rq->path, off, b.len);
	buf_free(&b);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	struct http *h = cls;
	struct request *rq = *con_cls;

	if (rq == NULL)
		return;
	*con_cls = NULL;
	/* The client half-closed after the worker looked, and libmicrohttpd
	 * dropped the resumed connection before the reply was queued. */
	if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && rq->phase == P_DONE && rq->status == 0 &&
	    !rq->direct && rq->reply.status != 0 && rq->fd >= 0)
		write_direct(rq, HTTP_DIRECT_IO_MS);
	if (rq->reserved)
		__atomic_sub_fetch(&h->inflight_bytes, rq->reserved, __ATOMIC_RELAXED);
	if (rq->method[0] != '\0') {
		uint64_t total = api_now_ns() - rq->t.start;

		/* Replies are counted when queued; this is a request closed
		 * without one (a body over the limit, a client gone). */
		if (rq->status == 0)
			metrics_request(api_metrics(rq->h->api), rq->route.ep, 0, total,
			                rq->body.len, 0);
		if (log_enabled(LOG_LVL_INFO)) {
			char peer[INET6_ADDRSTRLEN];
			struct log_request lr = {
				.method = rq->method,
				.path = rq->path,
				.id = rq->request_id,
				.model = rq->model,
				.peer = peer,
				.note = rq->note ? rq->note
				        : toe == MHD_REQUEST_TERMINATED_COMPLETED_OK
				                ? NULL
				                : "(connection closed)",
				.status = rq->status,
				.bytes_in = rq->body.len,
				.bytes_out = rq->bytes_out,
				.total_us = total / 1000,
				.queue_us = rq->queue_us,
				.compute_us = rq->compute_us,
			};

			sock_addr_text(client_addr(c), peer, sizeof(peer));
			log_request(&lr);
		}
	}
	request_unref(h, rq);
}

/* The endpoints whose requests have deadlines and stop when their client
 * leaves: the computations.  Admin calls run to the end. */
static int watched(const struct route *rt)
{
	return rt->ep == EP_CONV || rt->ep == EP_ASPP || rt->ep == EP_SEQUENTIAL ||
	       rt->ep == EP_INFER;
}

/* A job left the pool (under h->lock). */
static void job_gone(struct http *h)
{
	if (--h->live_jobs == 0)
		pthread_cond_broadcast(&h->idle);
}

/* The one end of a request that is not its reply: the client left, the
 * deadline passed, or the server stops.  Under h->lock, for a request whose
 * job is listed.  A queued job leaves the queue; a running one sees its flag
 * at its next task and its result is dropped (job_run).  The connection
 * resumes with a 504 or 503, or closes without a word for a client gone. */
static void abandon(struct http *h, struct request *rq, enum metrics_abandon why)
{
	struct metrics *mt = api_metrics(h->api);
	uint64_t now = api_now_ns(), began;
	char msg[ERR_LEN];

	__atomic_store_n(&rq->abandoned, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&rq->cancel, 1, __ATOMIC_RELEASE);
	if (pool_cancel(h->pool, rq) == 0) {
		rq->refs--; /* the job's; MHD still holds one */
		job_gone(h);
		metrics_inflight(mt, -1);
	}
	began = rq->started ? rq->started : now;
	rq->queue_us = (began - rq->t.enqueue) / 1000;
	rq->compute_us = (now - began) / 1000;
	api_abandoned(h->api, &rq->route, why, now - began);
	switch (why) {
	case ABANDON_CLIENT_GONE:
		rq->gone = 1;
		rq->status = 499; /* nginx's "client closed request" */
		metrics_request(mt, rq->route.ep, 499, now - rq->t.start, rq->body.len, 0);
		rq->note = rq->started ? "(client gone: stopped computing)"
		                       : "(client gone: dropped from the queue)";
		break;
	case ABANDON_DEADLINE:
		api_deadline_text(msg, sizeof(msg), &rq->route, rq->timeout_us, rq->t.start,
		                  rq->deadline, rq->queue_us, rq->expected);
		reply_error(&rq->reply, 504, "%s", msg);
		rq->note = rq->started ? "(deadline: stopped computing)"
		                       : "(deadline: refused without computing)";
		break;
	default:
		reply_error(&rq->reply, 503, "shutting down before the request completed");
		rq->reply.retry_after = (int)h->cfg->retry_after;
		rq->note = "(shutdown: abandoned at drain_timeout)";
		break;
	}
	rq->phase = P_DONE;
	jobs_remove(h, rq);
	if (rq->sock >= 0)
		watch_del(h->watch, rq->sock);
	MHD_resume_connection(rq->conn);
}

static void job_run(void *arg)
{
	struct request *rq = arg;
	struct http *h = rq->h;
	struct reply r = { 0 };
	int run = 0, shut;
	uint64_t expect = rq->deadline != 0 ? api_expected_ns(h->api, &rq->route) : 0;

	pthread_mutex_lock(&h->lock);
	if (!rq->abandoned) {
		uint64_t now = api_now_ns();

		if (rq->deadline != 0 && now + expect >= rq->deadline) {
			rq->expected = expect;
			abandon(h, rq, ABANDON_DEADLINE); /* it never ran */
		} else {
			rq->started = now;
			run = 1;
		}
	}
	pthread_mutex_unlock(&h->lock);
	if (run) {
		struct api_request ar = { &rq->route,   rq->body.data ? rq->body.data : "",
			                  rq->body.len, rq->header_len,
			                  rq->t,        rq->padded };
		const int *old = par_watch(&rq->cancel);

		api_run(h->api, &ar, &r);
		par_watch(old);
	}
	/* Leave the in-flight gauge before the client can see the reply. */
	metrics_inflight(api_metrics(rq->h->api), -1);
	/* The syscall stays outside the lock; on a socket already closed by an
	 * abandonment it peeks at nothing that matters, as the lock decides. */
	shut = rq->fd >= 0 && sock_peer_shut(rq->fd);
	pthread_mutex_lock(&h->lock);
	if (!rq->abandoned) {
		rq->reply = r;
		/* The client half-closed and ignore_client_abort keeps it. */
		if (shut)
			write_direct(rq, HTTP_DIRECT_WORKER_MS);
		rq->phase = P_DONE;
		jobs_remove(h, rq);
		if (rq->sock >= 0)
			watch_del(h->watch, rq->sock);
		MHD_resume_connection(rq->conn);
	} else {
		reply_clear(&r);
	}
	pthread_mutex_unlock(&h->lock);
	request_unref(h, rq);
	/* The last touch of h: http_stop() waits for this. */
	pthread_mutex_lock(&h->lock);
	job_gone(h);
	pthread_mutex_unlock(&h->lock);
}

/* The request's timeout: its own (KServe "parameters": {"timeout": us},
 * native "timeout_us"), read from the JSON without parsing it, lowered to
 * the server's request_timeout.  The worker's full parse checks the value. */
static uint64_t timeout_of(const struct request *rq)
{
	static const char *const kserve[] = { "parameters", "timeout", NULL };
	static const char *const native[] = { "timeout_us", NULL };
	uint64_t server = (uint64_t)rq->h->cfg->request_timeout * 1000, own = 0;
	size_t len = rq->header_len > 0 ? (size_t)rq->header_len : rq->body.len;

	if (rq->body.data != NULL && len <= rq->body.len)
		jscan_find_uint(rq->body.data, len, rq->route.ep == EP_INFER ? kserve : native,
		                &own);
	if (own > UINT64_MAX / 4000) /* beyond any clock: none */
		own = 0;
	return own != 0 && (server == 0 || own < server) ? own : server;
}

/* Listed, suspended and watched, under h->lock: the job may start. */
static void enlist(struct request *rq)
{
	struct http *h = rq->h;

	rq->phase = P_RUNNING;
	rq->t.enqueue = api_now_ns();
	metrics_inflight(api_metrics(rq->h->api), 1);
	rq->refs++;
	rq->next = h->jobs;
	if (h->jobs)
		h->jobs->prev = rq;
	h->jobs = rq;
	h->njobs++;
	h->live_jobs++;
	rq->serial = ++h->serial;
	if (rq->sock >= 0) {
		int rc = watch_add(h->watch, rq->serial, rq->sock,
		                   h->cfg->ignore_client_abort ? 0 : WATCH_FIN);

		if (rc < 0) {
			log_warn("%s %s: cannot watch the connection (%s); it runs to the end",
			         rq->method, rq->path, strerror(-rc));
			rq->sock = -1;
		}
	}
	MHD_suspend_connection(rq->conn);
}

/* Last call: the body is complete; hand the work to the pool.  The connection
 * is suspended and listed under the lock, after a last look at draining, so
 * that http_drain() sees every suspended connection; the pool is called
 * outside it. */
static enum MHD_Result submit(struct request *rq)
{
	struct http *h = rq->h;
	const union MHD_ConnectionInfo *ci =
	        MHD_get_connection_info(rq->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	int rc;

	if (draining(h))
		return fail(rq, 503, "shutting down");
	/* A TLS connection's socket carries records, never plain bytes: no
	 * peeking, no direct writes; but its closing is seen all the same. */
	rq->fd = ci != NULL && h->tls == NULL ? ci->connect_fd : -1;
	rq->sock = ci != NULL && watched(&rq->route) ? ci->connect_fd : -1;
	if (watched(&rq->route)) {
		rq->timeout_us = timeout_of(rq);
		rq->deadline = rq->timeout_us ? rq->t.start + rq->timeout_us * 1000 : 0;
	}
	if (rq->deadline != 0 && api_now_ns() >= rq->deadline) {
		char msg[ERR_LEN];

		api_abandoned(h->api, &rq->route, ABANDON_DEADLINE, 0);
		api_deadline_text(msg, sizeof(msg), &rq->route, rq->timeout_us, rq->t.start,
		                  rq->deadline, 0, 0);
		rq->note = "(deadline: refused without computing)";
		return fail(rq, 504, "%s", msg);
	}
	pthread_mutex_lock(&h->lock);
	if (draining(h)) {
		pthread_mutex_unlock(&h->lock);
		return fail(rq, 503, "shutting down");
	}
	enlist(rq);
	pthread_mutex_unlock(&h->lock);
	if (rq->deadline != 0)
		watch_poke(h->watch);
	rc = pool_submit(h->pool, job_run, rq, rq->deadline);
	if (rc == 0)
		return MHD_YES;
	metrics_inflight(api_metrics(rq->h->api), -1);
	pthread_mutex_lock(&h->lock);
	rq->refs--;
	job_gone(h);
	if (!rq->abandoned) { /* else abandon() replied and resumed already */
		jobs_remove(h, rq);
		if (rq->sock >= 0)
			watch_del(h->watch, rq->sock);
		rq->phase = P_DONE;
		reply_error(&rq->reply, 503,
		            rc == -EAGAIN ? "queue full (max_queue %u); retry later"
		                          : "shutting down",
		            h->cfg->max_queue);
		rq->reply.retry_after = (int)h->cfg->retry_after;
		MHD_resume_connection(rq->conn);
	}
	pthread_mutex_unlock(&h->lock);
	return MHD_YES; /* the reply goes out when the handler is called again */
}

/* The watcher: a client left while its job was listed. */
static void on_gone(void *ctx, uint64_t key)
{
	struct http *h = ctx;
	struct request *rq;

	pthread_mutex_lock(&h->lock);
	for (rq = h->jobs; rq != NULL; rq = rq->next)
		if (rq->serial == key) {
			abandon(h, rq, ABANDON_CLIENT_GONE);
			break;
		}
	pthread_mutex_unlock(&h->lock);
}

/* The watcher: abandon the jobs past their deadline; the next one. */
static uint64_t on_tick(void *ctx, uint64_t now)
{
	struct http *h = ctx;
	struct request *rq, *next;
	uint64_t soonest = 0;

	pthread_mutex_lock(&h->lock);
	for (rq = h->jobs; rq != NULL; rq = next) {
		next = rq->next;
		if (rq->deadline == 0)
			continue;
		if (rq->deadline <= now)
			abandon(h, rq, ABANDON_DEADLINE);
		else if (soonest == 0 || rq->deadline < soonest)
			soonest = rq->deadline;
	}
	pthread_mutex_unlock(&h->lock);
	return soonest;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
	struct request *rq = *con_cls;
	struct http *h = cls;

	if (rq == NULL)
		return MHD_NO;
	if (rq->phase == P_NEW && !rq->discard)
		return on_headers(rq, url, method);
	if (*upload_size > 0) {
		size_t n = *upload_size;

		*upload_size = 0;
		if (rq->discard || rq->phase != P_BODY)
			return MHD_YES;
		if (rq->body.len + n > body_limit(rq)) {
			log_warn("%s %s: chunked body exceeds %s; closing", method, url,
			         rq->route.admin ? "max_model_body" : "max_body");
			return MHD_NO;
		}
		if (rq->body.len + n > rq->reserved) {
			size_t more = rq->body.len + n - rq->reserved;

			rq->reserved += more;
			if (__atomic_add_fetch(&h->inflight_bytes, more, __ATOMIC_RELAXED) >
			    h->cfg->max_inflight_bytes) {
				log_warn("%s %s: in-flight byte budget exhausted; closing", method,
				         url);
				return MHD_NO;
			}
		}
		buf_add(&rq->body, upload, n);
		return buf_ok(&rq->body) == 0 ? MHD_YES : MHD_NO;
	}
	if (rq->phase == P_DONE && (rq->direct || rq->gone))
		return MHD_NO; /* sent already, or nobody to send to: close */
	if (rq->phase == P_DONE)
		return send_reply(rq);
	if (rq->phase == P_BODY)
		return submit(rq);
	return MHD_YES;
}

static void on_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	size_t n;

	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	log_debug("libmicrohttpd: %s", line);
}

static void on_panic(void *cls, const char *file, unsigned int line, const char *reason)
{
	log_error("libmicrohttpd panic at %s:%u: %s", file ? file : "?", line,
	          reason ? reason : "?");
	abort();
}

int http_start(struct http **out, struct api *api, struct pool *pool, const struct config *cfg,
               int listen_fd, int metrics_only, struct tls *tls, char *err)
{
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
	                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	struct http *h = calloc(1, sizeof(*h));
	struct MHD_OptionItem tls_opts[3] = { { MHD_OPTION_END, 0, NULL } };
	int rc;

	*out = NULL;
	if (h == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	h->api = api;
	h->pool = pool;
	h->cfg = cfg;

	h->metrics_only = metrics_only;
	h->tls = tls;
	h->admin_plaintext = strcmp(cfg->admin_plaintext, "allow") == 0;
	if (tls != NULL) {
		flags |= MHD_USE_TLS;
		tls_opts[0] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_CERT_CALLBACK, 0,
			                               tls_cert_callback() };
		if (tls_ca_pem(tls) != NULL)
			tls_opts[1] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_TRUST, 0,
				                               (void *)tls_ca_pem(tls) };
	}
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->idle, NULL);
	rc = watch_new(&h->watch, &(struct watch_ops){ on_gone, on_tick }, h, err);
	if (rc < 0) {
		pthread_cond_destroy(&h->idle);
		pthread_mutex_destroy(&h->lock);
		free(h);
		return rc;
	}
	MHD_set_panic_func(on_panic, NULL);
	h->daemon = MHD_start_daemon(
	        flags, 0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_log, NULL,
	        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)listen_fd, MHD_OPTION_THREAD_POOL_SIZE,
	        (unsigned int)(cfg->io_threads > 1 ? cfg->io_threads : 0),
	        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)cfg->max_connections,
	        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)cfg->per_ip_connections,
	        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)cfg->connection_timeout,
	        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY,
	        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_URI_LOG_CALLBACK, on_uri,
	        h, MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
	if (h->daemon == NULL) {
		watch_free(h->watch);
		pthread_cond_destroy(&h->idle);
		pthread_mutex_destroy(&h->lock);
		free(h);
		return err_set(err, -EIO, "libmicrohttpd failed to start");
	}
	*out = h;
	return 0;
}

size_t http_drain(struct http *h, unsigned timeout_s)
{
	uint64_t deadline = api_now_ns() + (uint64_t)timeout_s * 1000000000u;
	struct timespec nap = { 0, 20 * 1000 * 1000 };
	struct request *rq;
	size_t left = 0;

	/* No MHD_quiesce_daemon(): with epoll its removal of the listening
	 * socket races the I/O threads' own (libmicrohttpd 0.9.75 panics when
	 * the second epoll_ctl fails).  Connections are still accepted while
	 * draining; their requests are answered 503. */
	for (;;) {
		pthread_mutex_lock(&h->lock);
		left = h->njobs;
		pthread_mutex_unlock(&h->lock);
		if (left == 0 || api_now_ns() >= deadline)
			break;
		nanosleep(&nap, NULL);
	}
	if (left == 0)
		return 0;
	pthread_mutex_lock(&h->lock);
	while ((rq = h->jobs) != NULL)
		abandon(h, rq, ABANDON_SHUTDOWN);
	pthread_mutex_unlock(&h->lock);
	/* Give the I/O threads a moment to send the 503 replies. */
	nanosleep(&nap, NULL);
	return left;
}

void http_stop(struct http *h)
{
	if (h == NULL)
		return;
	/* Abandoned jobs stop at their next task; the rest have replied. */
	pthread_mutex_lock(&h->lock);
	if (h->live_jobs > 0)
		log_warn("waiting for %zu abandoned computation%s to stop", h->live_jobs,
		         h->live_jobs == 1 ? "" : "s");
	while (h->live_jobs > 0)
		pthread_cond_wait(&h->idle, &h->lock);
	pthread_mutex_unlock(&h->lock);
	watch_free(h->watch);
	MHD_stop_daemon(h->daemon); /* closes the listening socket */
	pthread_cond_destroy(&h->idle);
	pthread_mutex_destroy(&h->lock);
	free(h);
}
