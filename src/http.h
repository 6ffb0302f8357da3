/* SPDX-License-Identifier: MIT */
/* http.h - the HTTP front: libmicrohttpd, routing, body limits, suspend/resume.
 *
 * Requests are received on libmicrohttpd's I/O threads; compute requests are
 * queued on the pool with their connection suspended and resumed with the
 * reply.  The I/O threads never decode or compute.
 */
#ifndef ATROUSD_HTTP_H
#define ATROUSD_HTTP_H

#include <stddef.h>

#include "api.h"
#include "config.h"
#include "pool.h"

struct http;

struct tls;

/* Start serving on listen_fd (ownership passes to the server); a
 * metrics_only server answers /metrics and health only; with tls, HTTPS
 * (tls must outlive the server). */
int http_start(struct http **out, struct api *api, struct pool *pool, const struct config *cfg,
               int listen_fd, int metrics_only, struct tls *tls, char *err);

/* Let requests in flight finish for up to timeout_s seconds (new ones are
 * answered 503 meanwhile), then abandon the rest with 503.  Returns the
 * number abandoned. */
size_t http_drain(struct http *h, unsigned timeout_s);

/* Stop the server and free it (after http_drain). */
void http_stop(struct http *h);

#endif
