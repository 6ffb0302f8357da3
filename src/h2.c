/* SPDX-License-Identifier: MIT */
/* h2.c - HTTP/2 connections and gRPC calls on one epoll thread; jobs on the
 * pool, their results handed back through an eventfd. */
#include "autoconfig.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "error.h"
#include "grpc.h"
#include "h2.h"
#include "log.h"
#include "metrics.h"
#include "sock.h"
#include "tls.h"

/* Request headers beyond this many bytes reset the stream. */
#define H2_MAX_HEADER_BYTES (16 * 1024)
/* Flow-control windows: a stream's, and the connection's. */
#define H2_STREAM_WINDOW (1 << 20)
#define H2_CONN_WINDOW   (16 << 20)
/* RST_STREAMs a client may send: a burst, then so many a second (the
 * "rapid reset" attack, CVE-2023-44487). */
/* Output gathered per write (HEADERS, DATA and trailers of many calls). */
#define H2_WRITE_BATCH (256 * 1024)
#define H2_RESET_BURST 200
#define H2_RESET_RATE  50

enum kind { K_LISTEN, K_WAKE, K_CONN };

struct tag {
	enum kind kind;
};

struct conn;

/* One call: a stream's request, its job, its response. */
struct gcall {
	struct h2 *h;
	struct conn *c; /* NULL once the stream is closed */
	int32_t stream_id;
	int refs; /* the stream's and the job's (loop thread only) */
	int method;
	char path[96];
	char ctype[64];
	char auth[600]; /* "Bearer " and a token of up to 511 bytes (api.c) */
	uint64_t grpc_timeout_us;
	size_t header_bytes;
	int too_large, started_call, responded;
	struct buf in;
	struct grpc_call call;
	/* The job: abandoned and started under h->lock, the rest loop-only. */
	int queued, abandoned, refused, cancel;
	uint64_t t0, enqueue, started, deadline, timeout_us, expected;
	struct reply reply;
	struct gcall *next_done;
	struct gcall *prev, *next;   /* jobs in flight */
	struct gcall *cprev, *cnext; /* the connection's open streams */
	/* The response. */
	struct buf resp;
	size_t resp_off;
	int code;
	char msg[ERR_LEN];
	size_t bytes_in;
};

struct conn {
	struct tag tag;
	struct h2 *h;
	int fd;
	nghttp2_session *s;
	gnutls_session_t tls;
	int handshaking;
	int loopback;
	int want_out; /* EPOLLOUT is in the epoll set */
	char peer[INET6_ADDRSTRLEN];
	struct buf out; /* bytes nghttp2 gave that the socket has not taken */
	size_t out_off;
	uint64_t active; /* last progress (ns) */
	size_t streams;
	struct gcall *calls; /* open streams */
	struct conn *prev, *next;
};

struct h2 {
	struct api *api;
	struct pool *pool;
	const struct config *cfg;
	struct tls *tls;
	gnutls_certificate_credentials_t cred;
	struct tag listen_tag, wake_tag;
	int listen_fd, ep, wake;
	pthread_t thread;
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	struct conn *conns;
	size_t nconns;
	struct gcall *jobs; /* loop thread only */
	size_t njobs;
	size_t outstanding; /* jobs handed to the pool and not back (loop only) */
	int running;        /* the loop thread exists */
	pthread_mutex_t lock;
	pthread_cond_t changed;              /* the loop finished a drain step */
	struct gcall *done;                  /* jobs finished on workers, for the loop */
	int draining, abandon_all, stopping; /* requests from the main thread */
	int drained;                         /* the loop has stopped accepting */
	size_t left;                         /* jobs in flight, for h2_drain */
};

static uint64_t now_ns(void)
{
	return api_now_ns();
}

static void wake(struct h2 *h)
{
	uint64_t one = 1;

	if (write(h->wake, &one, sizeof(one)) < 0) {
		/* The counter is full: the loop is awake anyway. */
	}
}

/* ------------------------------------------------------------ responses */

/* grpc-message: percent-encoded outside printable ASCII (the protocol's
 * rule). */
static void pct_encode(const char *in, char *out, size_t size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (; *in && o + 4 < size; in++) {
		unsigned char ch = (unsigned char)*in;

		if (ch >= 0x20 && ch < 0x7f && ch != '%') {
			out[o++] = (char)ch;
		} else {
			out[o++] = '%';
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 15];
		}
	}
	out[o] = '\0';
}

#define NV(n, v)                                                                                   \
	{                                                                                          \
		(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE     \
	}

static ssize_t resp_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *user)
{
	struct gcall *k = src->ptr;
	size_t n = k->resp.len - k->resp_off;
	nghttp2_nv trailer[] = { NV("grpc-status", "0") };

	if (n > length)
		n = length;
	memcpy(buf, k->resp.data + k->resp_off, n);
	k->resp_off += n;
	if (k->resp_off == k->resp.len) {
		*flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		if (nghttp2_submit_trailer(s, id, trailer, 1) != 0)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	return (ssize_t)n;
}

static void log_call(struct gcall *k, const char *note)
{
	uint64_t total = now_ns() - k->t0;

	metrics_grpc_request(api_metrics(k->h->api), k->call.route.ep, k->code, total, k->bytes_in,
	                     k->resp.len);
	if (log_enabled(LOG_LVL_INFO)) {
		struct log_request lr = {
			.method = "GRPC",
			.path = k->path,
			.id = k->reply.request_id,
			.model = k->reply.model[0] ? k->reply.model : k->call.route.model,
			.peer = k->c ? k->c->peer : "",
			.note = note,
			.status = k->code,
			.bytes_in = k->bytes_in,
			.bytes_out = k->resp.len,
			.total_us = total / 1000,
			.queue_us = k->reply.queue_us,
			.compute_us = k->reply.compute_us,
		};

		log_request(&lr);
	}
}

/* Answer the call: a message with status OK, or the status alone
 * ("Trailers-Only"). */
static void respond(struct gcall *k, int code, const char *msg, const char *note)
{
	struct conn *c = k->c;
	char code_s[8], text[ERR_LEN * 3];

	if (k->responded)
		return;
	k->responded = 1;
	k->code = code;
	snprintf(k->msg, sizeof(k->msg), "%s", msg ? msg : "");
	log_call(k, note);
	if (c == NULL)
		return;
	if (code == GRPC_OK) {
		nghttp2_nv nva[] = { NV(":status", "200"), NV("content-type", "application/grpc") };
		nghttp2_data_provider dp = { .source.ptr = k, .read_callback = resp_read };

		nghttp2_submit_response(c->s, k->stream_id, nva, 2, &dp);
		return;
	}
	snprintf(code_s, sizeof(code_s), "%d", code);
	pct_encode(k->msg, text, sizeof(text));
	{
		nghttp2_nv nva[] = { NV(":status", "200"), NV("content-type", "application/grpc"),
			             NV("grpc-status", code_s), NV("grpc-message", text) };

		nghttp2_submit_response(c->s, k->stream_id, nva, text[0] ? 4 : 3, NULL);
	}
}

/* Frame the packed message in k->resp (5-byte prefix) and answer OK. */
static void respond_message(struct gcall *k, struct buf *msg, const char *note)
{
	uint8_t prefix[5] = { 0, (uint8_t)(msg->len >> 24), (uint8_t)(msg->len >> 16),
		              (uint8_t)(msg->len >> 8), (uint8_t)msg->len };

	buf_add(&k->resp, prefix, 5);
	if (msg->len > 0)
		buf_add(&k->resp, msg->data, msg->len);
	if (buf_ok(&k->resp) < 0) {
		buf_free(&k->resp);
		respond(k, GRPC_RESOURCE_EXHAUSTED, "out of memory for the response", note);
		return;
	}
	respond(k, GRPC_OK, NULL, note);
}

/* The REST reply r as the call's response. */
static void respond_reply(struct gcall *k, const struct reply *r, const char *note)
{
	struct buf msg = { 0 };
	char err[ERR_LEN];
	int code = grpc_encode((enum grpc_method)k->method, r, &msg, err);

	if (code == GRPC_OK && buf_ok(&msg) == 0)
		respond_message(k, &msg, note);
	else
		respond(k, code == GRPC_OK ? GRPC_RESOURCE_EXHAUSTED : code,
		        code == GRPC_OK ? "out of memory" : err, note);
	buf_free(&msg);
}

/* ------------------------------------------------------------ jobs */

static void call_unref(struct gcall *k)
{
	if (--k->refs > 0)
		return;
	buf_free(&k->in);
	buf_free(&k->resp);
	grpc_call_clear(&k->call);
	reply_clear(&k->reply);
	free(k);
}

static void jobs_remove(struct h2 *h, struct gcall *k)
{
	if (k->prev)
		k->prev->next = k->next;
	else
		h->jobs = k->next;
	if (k->next)
		k->next->prev = k->prev;
	k->prev = k->next = NULL;
	h->njobs--;
}

static void job_run(void *arg)
{
	struct gcall *k = arg;
	struct h2 *h = k->h;
	uint64_t expect = k->deadline != 0 ? api_expected_ns(h->api, &k->call.route) : 0;
	int run = 0;

	pthread_mutex_lock(&h->lock);
	if (!k->abandoned) {
		uint64_t now = now_ns();

		if (k->deadline != 0 && now + expect >= k->deadline) {
			k->refused = 1;
			k->expected = expect;
		} else {
			k->started = now;
			run = 1;
		}
	}
	pthread_mutex_unlock(&h->lock);
	if (run) {
		struct api_times t = { k->t0, k->enqueue };
		struct api_request ar = { &k->call.route,
			                  k->call.body.data ? k->call.body.data : "",
			                  k->call.body.len,
			                  k->call.header_len,
			                  t,
			                  0 };
		const int *old = par_watch(&k->cancel);

		api_run(h->api, &ar, &k->reply);
		par_watch(old);
	}
	metrics_inflight(api_metrics(h->api), -1);
	pthread_mutex_lock(&h->lock);
	k->next_done = h->done;
	h->done = k;
	pthread_mutex_unlock(&h->lock);
	wake(h);
}

/* Give up a job (loop thread): a queued one leaves the queue, a running one
 * stops at its next task; the call is answered unless its client left. */
static void abandon(struct h2 *h, struct gcall *k, enum metrics_abandon why)
{
	struct metrics *mt = api_metrics(h->api);
	uint64_t now = now_ns(), began;
	int queued;
	char msg[ERR_LEN];

	pthread_mutex_lock(&h->lock);
	k->abandoned = 1;
	__atomic_store_n(&k->cancel, 1, __ATOMIC_RELEASE);
	queued = pool_cancel(h->pool, k) == 0;
	began = k->started ? k->started : now;
	pthread_mutex_unlock(&h->lock);
	jobs_remove(h, k);
	if (queued) {
		metrics_inflight(mt, -1);
		h->outstanding--;
		call_unref(k); /* the job's */
	}
	k->reply.queue_us = (began - k->enqueue) / 1000;
	k->reply.compute_us = (now - began) / 1000;
	api_abandoned(h->api, &k->call.route, why, now - began);
	switch (why) {
	case ABANDON_CLIENT_GONE:
		respond(k, GRPC_CANCELLED, "the client cancelled the call",
		        k->started ? "(client gone: stopped computing)"
		                   : "(client gone: dropped from the queue)");
		break;
	case ABANDON_DEADLINE:
		api_deadline_text(msg, sizeof(msg), &k->call.route, k->timeout_us, k->t0,
		                  k->deadline, k->reply.queue_us, 0);
		respond(k, GRPC_DEADLINE_EXCEEDED, msg,
		        k->started ? "(deadline: stopped computing)"
		                   : "(deadline: refused without computing)");
		break;
	default:
		respond(k, GRPC_UNAVAILABLE, "shutting down before the call completed",
		        "(shutdown: abandoned at drain_timeout)");
		break;
	}
}

/* Results from the workers (loop thread). */
static void take_done(struct h2 *h)
{
	struct gcall *k, *next;

	pthread_mutex_lock(&h->lock);
	k = h->done;
	h->done = NULL;
	pthread_mutex_unlock(&h->lock);
	for (; k != NULL; k = next) {
		next = k->next_done;
		if (!k->abandoned) {
			jobs_remove(h, k);
			if (k->refused) {
				char msg[ERR_LEN];

				k->reply.queue_us = (now_ns() - k->enqueue) / 1000;
				api_abandoned(h->api, &k->call.route, ABANDON_DEADLINE, 0);
				api_deadline_text(msg, sizeof(msg), &k->call.route, k->timeout_us,
				                  k->t0, k->deadline, k->reply.queue_us,
				                  k->expected);
				respond(k, GRPC_DEADLINE_EXCEEDED, msg,
				        "(deadline: refused without computing)");
			} else {
				respond_reply(k, &k->reply, NULL);
			}
		}
		h->outstanding--;
		call_unref(k); /* the job's */
	}
}

/* A grpc-timeout value: digits and a unit (H, M, S, m, u, n); 0 if bad. */
static uint64_t parse_timeout(const char *v)
{
	uint64_t n = 0;
	const char *p = v;

	for (; *p >= '0' && *p <= '9' && p - v < 8; p++)
		n = n * 10 + (uint64_t)(*p - '0');
	if (p == v || p[1] != '\0')
		return 0;
	switch (*p) {
	case 'H': return n * 3600000000ull;
	case 'M': return n * 60000000ull;
	case 'S': return n * 1000000ull;
	case 'm': return n * 1000ull;
	case 'u': return n;
	case 'n': return n / 1000 ? n / 1000 : 1;
	default: return 0;
	}
}

static uint64_t min_nonzero(uint64_t a, uint64_t b)
{
	return a == 0 ? b : b == 0 || a < b ? a : b;
}

/* Queue a call's job with its deadline. */
static void submit(struct h2 *h, struct gcall *k)
{
	struct metrics *mt = api_metrics(h->api);
	int rc;

	k->timeout_us = min_nonzero(min_nonzero(k->grpc_timeout_us, k->call.timeout_us),
	                            (uint64_t)h->cfg->request_timeout * 1000);
	if (k->call.route.admin)
		k->timeout_us = k->grpc_timeout_us; /* admin calls: the client's alone */
	k->deadline = k->timeout_us ? k->t0 + k->timeout_us * 1000 : 0;
	if (k->deadline != 0 && now_ns() >= k->deadline) {
		char msg[ERR_LEN];

		api_abandoned(h->api, &k->call.route, ABANDON_DEADLINE, 0);
		api_deadline_text(msg, sizeof(msg), &k->call.route, k->timeout_us, k->t0,
		                  k->deadline, 0, 0);
		respond(k, GRPC_DEADLINE_EXCEEDED, msg, "(deadline: refused without computing)");
		return;
	}
	if (h->draining || api_draining(h->api)) {
		respond(k, GRPC_UNAVAILABLE, "shutting down", NULL);
		return;
	}
	k->enqueue = now_ns();
	k->refs++;
	k->queued = 1;
	k->next = h->jobs;
	if (h->jobs)
		h->jobs->prev = k;
	h->jobs = k;
	h->njobs++;
	metrics_inflight(mt, 1);
	rc = pool_submit(h->pool, job_run, k, k->deadline);
	if (rc == 0) {
		h->outstanding++;
		return;
	}
	metrics_inflight(mt, -1);
	jobs_remove(h, k);
	k->refs--;
	respond(k, GRPC_UNAVAILABLE,
	        rc == -EAGAIN ? "queue full (max_queue); retry later" : "shutting down", NULL);
}

/* The request message is complete: check the framing, translate, and
 * answer or queue. */
static void call_start(struct gcall *k)
{
	struct h2 *h = k->h;
	const uint8_t *in = (const uint8_t *)k->in.data;
	struct reply r = { 0 };
	char err[ERR_LEN], service[128];
	size_t len;
	int code;

	k->started_call = 1;
	k->bytes_in = k->in.len;
	if (k->too_large) {
		snprintf(err, sizeof(err), "message larger than max_body (%llu bytes)",
		         (unsigned long long)h->cfg->max_body);
		respond(k, GRPC_RESOURCE_EXHAUSTED, err, NULL);
		return;
	}
	if (k->method < 0) {
		snprintf(err, sizeof(err), "unknown method %.80s", k->path);
		respond(k, GRPC_UNIMPLEMENTED, err, NULL);
		return;
	}
	if (k->in.len < 5) {
		respond(k, GRPC_INVALID_ARGUMENT, "truncated message: no 5-byte length prefix",
		        NULL);
		return;
	}
	if (in[0] != 0) {
		respond(k, GRPC_UNIMPLEMENTED,
		        "compressed messages are not supported (send identity)", NULL);
		return;
	}
	len = (size_t)in[1] << 24 | (size_t)in[2] << 16 | (size_t)in[3] << 8 | (size_t)in[4];
	if (len != k->in.len - 5) {
		snprintf(err, sizeof(err),
		         "the length prefix says %zu bytes, the stream carried %zu (one message "
		         "per call)",
		         len, k->in.len - 5);
		respond(k, GRPC_INVALID_ARGUMENT, err, NULL);
		return;
	}
	if (k->method == GRPC_HEALTH_CHECK) {
		struct buf msg = { 0 };

		code = grpc_health_service(in + 5, len, service, sizeof(service), err);
		if (code == GRPC_OK)
			code = grpc_health(service, api_ready(h->api), &msg, err);
		if (code == GRPC_OK)
			respond_message(k, &msg, NULL);
		else
			respond(k, code, err, NULL);
		buf_free(&msg);
		return;
	}
	code = grpc_decode((enum grpc_method)k->method, in + 5, len, &k->call, err);
	buf_free(&k->in); /* the translation holds what is needed */
	if (code != GRPC_OK) {
		respond(k, code, err, NULL);
		return;
	}
	if (k->call.route.admin) {
		if (h->tls == NULL && !k->c->loopback &&
		    strcmp(h->cfg->admin_plaintext, "allow") != 0) {
			snprintf(err, sizeof(err),
			         "admin calls over plain HTTP/2 are refused from %s (not "
			         "loopback): the "
			         "token would cross the network in clear text; use TLS or set "
			         "admin_plaintext = allow",
			         k->c->peer);
			respond(k, GRPC_PERMISSION_DENIED, err, NULL);
			return;
		}
		if (api_authorize(h->api, k->auth[0] ? k->auth : NULL, &r) < 0) {
			respond_reply(k, &r, NULL);
			reply_clear(&r);
			return;
		}
	}
	if (!k->call.route.compute) {
		api_quick(h->api, &k->call.route, &r);
		respond_reply(k, &r, NULL);
		reply_clear(&r);
		return;
	}
	submit(h, k);
}

/* ------------------------------------------------------------ nghttp2 */

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
	struct conn *c = user;
	struct gcall *k;

	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	k = calloc(1, sizeof(*k));
	if (k == NULL)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	k->h = c->h;
	k->c = c;
	k->refs = 1;
	k->method = -1;
	k->stream_id = f->hd.stream_id;
	k->t0 = now_ns();
	c->streams++;
	k->cnext = c->calls;
	if (c->calls)
		c->calls->cprev = k;
	c->calls = k;
	nghttp2_session_set_stream_user_data(s, f->hd.stream_id, k);
	return 0;
}

/* A header's value as a string; an over-long one becomes "" (no method, no
 * token, no content type): 0 then, 1 when it fits. */
static int copy_value(char *dst, size_t size, const uint8_t *v, size_t len)
{
	int fits = len < size;

	if (!fits)
		len = 0;
	memcpy(dst, v, len);
	dst[len] = '\0';
	return fits;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
	struct gcall *k = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	char tmp[32];

	if (k == NULL || k->started_call)
		return 0; /* trailers from the client carry nothing we read */
	k->header_bytes += namelen + valuelen + 32;
	if (k->header_bytes > H2_MAX_HEADER_BYTES)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
	if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
		k->method = copy_value(k->path, sizeof(k->path), value, valuelen)
		                    ? grpc_method_of(k->path)
		                    : -1;
	} else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
		copy_value(k->ctype, sizeof(k->ctype), value, valuelen);
	} else if (namelen == 13 && memcmp(name, "authorization", 13) == 0) {
		copy_value(k->auth, sizeof(k->auth), value, valuelen);
	} else if (namelen == 12 && memcmp(name, "grpc-timeout", 12) == 0) {
		k->grpc_timeout_us =
		        copy_value(tmp, sizeof(tmp), value, valuelen) ? parse_timeout(tmp) : 0;
	}
	return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *user)
{
	struct gcall *k = nghttp2_session_get_stream_user_data(s, id);
	struct conn *c = user;

	if (k == NULL || k->started_call || k->too_large)
		return 0;
	if (k->in.len + len > c->h->cfg->max_body + 5) {
		k->too_large = 1;
		k->bytes_in = k->in.len + len;
		buf_free(&k->in);
		return 0;
	}
	buf_add(&k->in, data, len);
	return buf_ok(&k->in) == 0 ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
	struct gcall *k;

	if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
	    !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	k = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	if (k == NULL || k->started_call)
		return 0;
	if (strncmp(k->ctype, "application/grpc", 16) != 0 ||
	    (k->ctype[16] != '\0' && k->ctype[16] != '+' && k->ctype[16] != ';')) {
		/* Not gRPC: the protocol says 415, before any gRPC status. */
		nghttp2_nv nva[] = { NV(":status", "415") };

		k->started_call = k->responded = 1;
		k->code = GRPC_UNKNOWN;
		nghttp2_submit_response(s, k->stream_id, nva, 1, NULL);
		return 0;
	}
	call_start(k);
	return 0;
}

/* The stream is over (answered, reset by the client, or its connection
 * ends): a job still in flight is abandoned, the stream's reference goes. */
static void stream_gone(struct conn *c, struct gcall *k)
{
	c->streams--;
	if (k->cprev)
		k->cprev->cnext = k->cnext;
	else
		c->calls = k->cnext;
	if (k->cnext)
		k->cnext->cprev = k->cprev;
	k->c = NULL; /* nothing more is sent on it */
	if (k->queued && !k->responded && !k->abandoned)
		abandon(c->h, k, ABANDON_CLIENT_GONE);
	call_unref(k); /* the stream's */
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *user)
{
	struct gcall *k = nghttp2_session_get_stream_user_data(s, id);

	if (k == NULL)
		return 0;
	nghttp2_session_set_stream_user_data(s, id, NULL);
	stream_gone(user, k);
	return 0;
}

/* ------------------------------------------------------------ connections */

static void conn_close(struct conn *c)
{
	struct h2 *h = c->h;

	/* Streams still open end here: their jobs are abandoned. */
	while (c->calls != NULL)
		stream_gone(c, c->calls);
	nghttp2_session_del(c->s);
	if (c->tls != NULL)
		gnutls_deinit(c->tls);
	epoll_ctl(h->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	h->nconns--;
	buf_free(&c->out);
	free(c);
}

static void set_events(struct conn *c, int out)
{
	struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0) };

	if (c->want_out == out)
		return;
	c->want_out = out;
	ev.data.ptr = &c->tag;
	epoll_ctl(c->h->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Write what fits; 1 when all is out, 0 when the socket is full, -1 on
 * error. */
static int conn_write(struct conn *c, const uint8_t *data, size_t len, size_t *done)
{
	*done = 0;
	while (*done < len) {
		ssize_t n = c->tls ? gnutls_record_send(c->tls, data + *done, len - *done)
		                   : send(c->fd, data + *done, len - *done, MSG_NOSIGNAL);

		if (n > 0) {
			*done += (size_t)n;
			c->active = now_ns();
			continue;
		}
		if (c->tls ? n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED
		           : errno == EAGAIN || errno == EINTR)
			return 0;
		return -1;
	}
	return 1;
}

/* Gather nghttp2's output, up to H2_WRITE_BATCH bytes, and write it in one
 * go; a batch the socket does not take waits for EPOLLOUT (and nghttp2 is
 * not asked for more meanwhile).  0 to keep the connection, -1 to close it. */
static int conn_flush(struct conn *c)
{
	size_t done;
	int rc;

	if (c->handshaking)
		return 0;
	for (;;) {
		if (c->out_off == c->out.len) {
			c->out.len = c->out_off = 0;
			while (c->out.len < H2_WRITE_BATCH) {
				const uint8_t *data;
				ssize_t n = nghttp2_session_mem_send(c->s, &data);

				if (n < 0)
					return -1;
				if (n == 0)
					break;
				buf_add(&c->out, data, (size_t)n);
			}
			if (buf_ok(&c->out) < 0)
				return -1;
			if (c->out.len == 0)
				break;
		}
		rc = conn_write(c, (uint8_t *)c->out.data + c->out_off, c->out.len - c->out_off,
		                &done);
		c->out_off += done;
		if (rc < 0)
			return -1;
		if (rc == 0) {
			set_events(c, 1);
			return 0;
		}
	}
	set_events(c, 0);
	if (!nghttp2_session_want_read(c->s) && !nghttp2_session_want_write(c->s))
		return -1;
	return 0;
}

static int start_session(struct conn *c)
{
	struct h2 *h = c->h;
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, h->cfg->grpc_max_streams },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, H2_MAX_HEADER_BYTES },
	};

	if (nghttp2_session_server_new2(&c->s, h->cbs, c, h->opt) != 0)
		return -1;
	if (nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, 3) != 0 ||
	    nghttp2_session_set_local_window_size(c->s, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW) != 0)
		return -1;
	if (h->draining)
		nghttp2_submit_goaway(c->s, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
	return 0;
}

/* TLS: continue the handshake; 0 while it goes on or once done, -1 on
 * failure (or a client that does not speak h2). */
static int handshake(struct conn *c)
{
	gnutls_datum_t proto;
	int rc = gnutls_handshake(c->tls);

	if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) {
		set_events(c, gnutls_record_get_direction(c->tls));
		return 0;
	}
	if (rc < 0) {
		log_debug("gRPC TLS handshake with %s failed: %s", c->peer, gnutls_strerror(rc));
		return -1;
	}
	if (gnutls_alpn_get_selected_protocol(c->tls, &proto) < 0 || proto.size != 2 ||
	    memcmp(proto.data, "h2", 2) != 0)
		return -1;
	c->handshaking = 0;
	return start_session(c) < 0 ? -1 : conn_flush(c);
}

static void conn_read(struct conn *c)
{
	uint8_t buf[65536];

	if (c->handshaking) {
		if (handshake(c) < 0)
			conn_close(c);
		return;
	}
	for (;;) {
		ssize_t n = c->tls ? gnutls_record_recv(c->tls, buf, sizeof(buf))
		                   : recv(c->fd, buf, sizeof(buf), 0);

		if (n > 0) {
			c->active = now_ns();
			if (nghttp2_session_mem_recv(c->s, buf, (size_t)n) < 0) {
				/* A protocol error: nghttp2 queued a GOAWAY; send it, then close.
				 */
				conn_flush(c);
				conn_close(c);
				return;
			}
			if (c->out.len > c->out_off)
				break; /* the client is not reading: stop reading too */
			continue;
		}
		if (n < 0 && (c->tls ? n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED
		                     : errno == EAGAIN || errno == EINTR))
			break;
		conn_close(c); /* closed, reset, or a TLS error */
		return;
	}
	if (conn_flush(c) < 0)
		conn_close(c);
}

static void accept_all(struct h2 *h)
{
	for (;;) {
		struct sockaddr_storage sa;
		socklen_t sl = sizeof(sa);
		int fd = accept4(h->listen_fd, (struct sockaddr *)&sa, &sl,
		                 SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev = { .events = EPOLLIN };
		struct conn *c;

		if (fd < 0)
			return;
		if (h->nconns >= h->cfg->max_connections || (c = calloc(1, sizeof(*c))) == NULL) {
			close(fd);
			continue;
		}
		/* Small frames (WINDOW_UPDATE, trailers) must not wait for ACKs. */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
		c->tag.kind = K_CONN;
		c->h = h;
		c->fd = fd;
		c->active = now_ns();
		c->loopback = sock_addr_loopback((struct sockaddr *)&sa);
		sock_addr_text((struct sockaddr *)&sa, c->peer, sizeof(c->peer));
		c->next = h->conns;
		if (h->conns)
			h->conns->prev = c;
		h->conns = c;
		h->nconns++;
		ev.data.ptr = &c->tag;
		epoll_ctl(h->ep, EPOLL_CTL_ADD, fd, &ev);
		if (h->tls != NULL) {
			static const gnutls_datum_t h2 = { (unsigned char *)"h2", 2 };

			c->handshaking = 1;
			if (gnutls_init(&c->tls, GNUTLS_SERVER | GNUTLS_NONBLOCK) < 0 ||
			    gnutls_set_default_priority(c->tls) < 0 ||
			    gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, h->cred) < 0 ||
			    gnutls_alpn_set_protocols(c->tls, &h2, 1, GNUTLS_ALPN_MANDATORY) < 0) {
				conn_close(c);
				continue;
			}
			if (tls_ca_pem(h->tls) != NULL) {
				gnutls_certificate_server_set_request(c->tls, GNUTLS_CERT_REQUIRE);
				gnutls_session_set_verify_cert(c->tls, NULL, 0);
			}
			gnutls_transport_set_int(c->tls, fd);
			continue; /* the handshake starts when the client speaks */
		}
		if (start_session(c) < 0 || conn_flush(c) < 0)
			conn_close(c);
	}
}

/* ------------------------------------------------------------ the loop */

/* Is a call of the connection waiting for its job (so that the client's
 * silence is expected), with its reply not stuck behind a full socket? */
static int waiting(const struct conn *c)
{
	const struct gcall *k;

	if (c->out.len > c->out_off || c->handshaking)
		return 0;
	for (k = c->calls; k != NULL; k = k->cnext)
		if (k->queued && !k->responded)
			return 1;
	return 0;
}

/* Deadlines, idle and stuck connections, drain steps; the next wake-up (ms). */
static int housekeeping(struct h2 *h)
{
	uint64_t now = now_ns(), soonest = now + 1000000000ull;
	uint64_t idle = (uint64_t)h->cfg->connection_timeout * 1000000000ull;
	struct gcall *k, *kn;
	struct conn *c, *cn;

	for (k = h->jobs; k != NULL; k = kn) {
		kn = k->next;
		if (k->deadline != 0 && k->deadline <= now)
			abandon(h, k, ABANDON_DEADLINE);
		else if (k->deadline != 0 && k->deadline < soonest)
			soonest = k->deadline;
	}
	for (c = h->conns; c != NULL; c = cn) {
		cn = c->next;
		if (idle != 0 && now - c->active > idle && !waiting(c))
			conn_close(c); /* idle, stalled mid-request, or not reading */
		else if (conn_flush(c) < 0)
			conn_close(c);
	}
	return (int)((soonest - now) / 1000000) + 1;
}

static void drain_step(struct h2 *h)
{
	struct conn *c;
	int abandon_all;

	pthread_mutex_lock(&h->lock);
	abandon_all = h->abandon_all;
	pthread_mutex_unlock(&h->lock);
	/* SIGTERM marks the api draining before h2_drain is called: stop
	 * taking new calls at once. */
	if (!h->drained && (h->draining || api_draining(h->api))) {
		epoll_ctl(h->ep, EPOLL_CTL_DEL, h->listen_fd, NULL);
		/* Streams the clients opened so far are served; no new ones. */
		for (c = h->conns; c != NULL; c = c->next)
			if (c->s != NULL)
				nghttp2_submit_goaway(c->s, NGHTTP2_FLAG_NONE,
				                      nghttp2_session_get_last_proc_stream_id(c->s),
				                      NGHTTP2_NO_ERROR, NULL, 0);
		h->drained = 1;
	}
	if (abandon_all)
		while (h->jobs != NULL)
			abandon(h, h->jobs, ABANDON_SHUTDOWN);
	pthread_mutex_lock(&h->lock);
	h->left = h->njobs;
	pthread_cond_broadcast(&h->changed);
	pthread_mutex_unlock(&h->lock);
}

static void *loop_main(void *arg)
{
	struct h2 *h = arg;
	struct epoll_event ev[64];
	int timeout = 1000, i, n, stop;

	for (;;) {
		n = epoll_wait(h->ep, ev, 64, timeout);
		for (i = 0; i < n; i++) {
			struct tag *t = ev[i].data.ptr;

			if (t->kind == K_LISTEN) {
				accept_all(h);
			} else if (t->kind == K_WAKE) {
				uint64_t v;

				while (read(h->wake, &v, sizeof(v)) == (ssize_t)sizeof(v))
					;
			} else {
				struct conn *c = (struct conn *)t;

				if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
					conn_read(c); /* may close c */
				else if (ev[i].events & EPOLLOUT && conn_flush(c) < 0)
					conn_close(c);
			}
		}
		take_done(h);
		drain_step(h);
		timeout = housekeeping(h);
		pthread_mutex_lock(&h->lock);
		stop = h->stopping;
		pthread_mutex_unlock(&h->lock);
		/* Abandoned jobs still touch their calls until they come back. */
		if (stop && h->outstanding == 0)
			break;
	}
	return NULL;
}

/* ------------------------------------------------------------ life cycle */

static int make_callbacks(struct h2 *h)
{
	if (nghttp2_session_callbacks_new(&h->cbs) != 0 || nghttp2_option_new(&h->opt) != 0)
		return -1;
	nghttp2_session_callbacks_set_on_begin_headers_callback(h->cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(h->cbs, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(h->cbs, on_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(h->cbs, on_frame);
	nghttp2_session_callbacks_set_on_stream_close_callback(h->cbs, on_stream_close);
	/* Floods: SETTINGS entries, queued ACKs (SETTINGS and PING), and
	 * RST_STREAM bursts end the connection with GOAWAY. */
	nghttp2_option_set_max_settings(h->opt, 32);
	nghttp2_option_set_max_outbound_ack(h->opt, 1000);
	nghttp2_option_set_stream_reset_rate_limit(h->opt, H2_RESET_BURST, H2_RESET_RATE);
	return 0;
}

int h2_start(struct h2 **out, struct api *api, struct pool *pool, const struct config *cfg,
             int listen_fd, struct tls *tls, char *err)
{
	struct h2 *h = calloc(1, sizeof(*h));
	struct epoll_event ev = { .events = EPOLLIN };
	int rc;

	*out = NULL;
	if (h == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	h->api = api;
	h->pool = pool;
	h->cfg = cfg;
	h->tls = tls;
	h->listen_fd = listen_fd;
	h->listen_tag.kind = K_LISTEN;
	h->wake_tag.kind = K_WAKE;
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->changed, NULL);
	h->ep = epoll_create1(EPOLL_CLOEXEC);
	h->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
	rc = h->ep < 0 || h->wake < 0 || make_callbacks(h) < 0 ? -ENOMEM : 0;
	if (rc == 0 && tls != NULL) {
		rc = gnutls_certificate_allocate_credentials(&h->cred) < 0 ? -ENOMEM : 0;
		if (rc == 0) {
			gnutls_certificate_set_retrieve_function2(
			        h->cred,
			        (gnutls_certificate_retrieve_function2 *)tls_cert_callback());
			if (tls_ca_pem(tls) != NULL) {
				gnutls_datum_t ca = { (unsigned char *)tls_ca_pem(tls),
					              (unsigned)strlen(tls_ca_pem(tls)) };

				if (gnutls_certificate_set_x509_trust_mem(h->cred, &ca,
				                                          GNUTLS_X509_FMT_PEM) < 0)
					rc = -EINVAL;
			}
		}
	}
	if (rc == 0) {
		ev.data.ptr = &h->listen_tag;
		rc = epoll_ctl(h->ep, EPOLL_CTL_ADD, listen_fd, &ev) < 0 ? -errno : 0;
	}
	if (rc == 0) {
		ev.data.ptr = &h->wake_tag;
		rc = epoll_ctl(h->ep, EPOLL_CTL_ADD, h->wake, &ev) < 0 ? -errno : 0;
	}
	if (rc == 0)
		rc = -pthread_create(&h->thread, NULL, loop_main, h);
	h->running = rc == 0;
	if (rc < 0) {
		h->listen_fd = -1; /* the caller closes it */
		h2_stop(h);
		return err_set(err, rc, "cannot start the gRPC listener: %s", strerror(-rc));
	}
	*out = h;
	return 0;
}

size_t h2_drain(struct h2 *h, unsigned timeout_s)
{
	struct timespec until;
	size_t left;

	if (h == NULL)
		return 0;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_s;
	pthread_mutex_lock(&h->lock);
	h->draining = 1;
	h->left = SIZE_MAX;
	pthread_mutex_unlock(&h->lock);
	wake(h);
	pthread_mutex_lock(&h->lock);
	while (h->left != 0 && pthread_cond_timedwait(&h->changed, &h->lock, &until) != ETIMEDOUT)
		;
	left = h->left == SIZE_MAX ? 0 : h->left;
	if (left > 0) {
		h->abandon_all = 1;
		h->left = SIZE_MAX;
		pthread_mutex_unlock(&h->lock);
		wake(h);
		pthread_mutex_lock(&h->lock);
		while (h->left == SIZE_MAX)
			pthread_cond_wait(&h->changed, &h->lock);
	}
	pthread_mutex_unlock(&h->lock);
	return left;
}

void h2_stop(struct h2 *h)
{
	if (h == NULL)
		return;
	if (h->running) {
		pthread_mutex_lock(&h->lock);
		h->stopping = 1;
		h->abandon_all = 1;
		pthread_mutex_unlock(&h->lock);
		wake(h);
		pthread_join(h->thread, NULL);
	}
	while (h->conns != NULL)
		conn_close(h->conns);
	if (h->cred)
		gnutls_certificate_free_credentials(h->cred);
	if (h->opt != NULL)
		nghttp2_option_del(h->opt);
	if (h->cbs != NULL)
		nghttp2_session_callbacks_del(h->cbs);
	if (h->ep >= 0)
		close(h->ep);
	if (h->wake >= 0)
		close(h->wake);
	if (h->listen_fd >= 0)
		close(h->listen_fd);
	pthread_cond_destroy(&h->changed);
	pthread_mutex_destroy(&h->lock);
	free(h);
}
