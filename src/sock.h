/* SPDX-License-Identifier: MIT */
/* sock.h - plain TCP socket helpers: the listener, and the few raw writes
 * the HTTP front makes outside libmicrohttpd.
 *
 *	int fd, port;
 *	char bound[80];
 *	if (sock_listen("127.0.0.1:0", &fd, bound, sizeof(bound), &port, err) < 0) ...;
 */
#ifndef ATROUSD_SOCK_H
#define ATROUSD_SOCK_H

#include <stddef.h>

/* Create a listening TCP socket for "ADDR:PORT" or "[V6ADDR]:PORT"; the bound
 * address (with the real port when PORT was 0) is written to bound. */
int sock_listen(const char *addr, int *fd, char *bound, size_t boundlen, int *port, char *err);

struct sockaddr;

/* Is the address on this host (127.0.0.0/8, ::1, or 127.x mapped in IPv6)?
 * NULL is not. */
int sock_addr_loopback(const struct sockaddr *sa);

/* The address in numeric form ("" for NULL or another family). */
void sock_addr_text(const struct sockaddr *sa, char *out, size_t len);

/* Has the peer of connected socket fd shut down its sending side (with no
 * unread data before the end)?  Never blocks. */
int sock_peer_shut(int fd);

/* Write len bytes of data to socket fd without blocking, waiting for room
 * for at most timeout_ms in all; returns the bytes written. */
size_t sock_send_within(int fd, const char *data, size_t len, int timeout_ms);

#endif
