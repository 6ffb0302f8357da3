/* SPDX-License-Identifier: MIT */
/* h2.h - the gRPC listener: HTTP/2 with nghttp2 on one event-loop thread
 * that never computes, the same division as the HTTP listener.
 *
 *	struct h2 *g;
 *	h2_start(&g, api, pool, cfg, fd, tls, err);   // cfg->grpc_listen's socket
 *	...
 *	h2_drain(g, cfg->drain_timeout);              // GOAWAY, finish, abandon the rest
 *	h2_stop(g);
 *
 * Calls share the HTTP side's endpoints (grpc.h translates), models, pool,
 * limits, deadlines, metrics and logs.  A call's deadline is the smallest of
 * its grpc-timeout, its "timeout" parameter and request_timeout; a stream the
 * client resets, or a connection it closes, abandons its job as a closed
 * HTTP connection does.
 */
#ifndef ATROUSD_H2_H
#define ATROUSD_H2_H

#include <stddef.h>

#include "api.h"
#include "config.h"
#include "pool.h"

struct h2;
struct tls;

/* Serve gRPC on listen_fd (which it then owns); with tls, over TLS with ALPN
 * "h2" (tls must outlive the listener). */
int h2_start(struct h2 **out, struct api *api, struct pool *pool, const struct config *cfg,
             int listen_fd, struct tls *tls, char *err);

/* Stop accepting, send GOAWAY, let calls in flight finish for up to
 * timeout_s seconds, then abandon the rest (UNAVAILABLE).  Returns the
 * number abandoned. */
size_t h2_drain(struct h2 *g, unsigned timeout_s);

/* Close every connection and free the listener (after h2_drain). */
void h2_stop(struct h2 *g);

#endif
