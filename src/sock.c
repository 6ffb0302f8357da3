/* SPDX-License-Identifier: MIT */
/* sock.c - plain TCP socket helpers: the listener and raw writes. */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "error.h"
#include "sock.h"

int sock_listen(const char *addr, int *fd, char *bound, size_t boundlen, int *port, char *err)
{
	char host[128], portstr[16], hbuf[NI_MAXHOST], pbuf[NI_MAXSERV];
	struct addrinfo hints = { 0 }, *ai = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	const char *colon;
	int s = -1, one = 1, rc;

	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');

		if (close == NULL || close[1] != ':' || (size_t)(close - addr - 1) >= sizeof(host))
			return err_set(err, -EINVAL, "listen \"%s\": expected [IPV6]:PORT", addr);
		memcpy(host, addr + 1, (size_t)(close - addr - 1));
		host[close - addr - 1] = '\0';
		colon = close + 1;
	} else {
		colon = strrchr(addr, ':');
		if (colon == NULL || (size_t)(colon - addr) >= sizeof(host))
			return err_set(err, -EINVAL, "listen \"%s\": expected ADDR:PORT", addr);
		memcpy(host, addr, (size_t)(colon - addr));
		host[colon - addr] = '\0';
	}
	snprintf(portstr, sizeof(portstr), "%s", colon + 1);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	rc = getaddrinfo(host[0] ? host : NULL, portstr, &hints, &ai);
	if (rc != 0)
		return err_set(err, -EINVAL, "listen \"%s\": %s", addr, gai_strerror(rc));
	s = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0) {
		rc = err_set(err, -errno, "socket: %s", strerror(errno));
		goto fail;
	}
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ai->ai_family == AF_INET6)
		setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(s, ai->ai_addr, ai->ai_addrlen) < 0 || listen(s, 511) < 0) {
		rc = err_set(err, -errno, "listen %s: %s", addr, strerror(errno));
		goto fail;
	}
	if (getsockname(s, (struct sockaddr *)&ss, &sl) < 0 ||
	    getnameinfo((struct sockaddr *)&ss, sl, hbuf, sizeof(hbuf), pbuf, sizeof(pbuf),
	                NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		rc = err_set(err, -EINVAL, "listen %s: cannot read the bound address", addr);
		goto fail;
	}
	snprintf(bound, boundlen, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", hbuf, pbuf);
	*port = atoi(pbuf);
	freeaddrinfo(ai);
	*fd = s;
	return 0;
fail:
	if (s >= 0)
		close(s);
	freeaddrinfo(ai);
	return rc;
}

int sock_peer_shut(int fd)
{
	char byte;

	return recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

size_t sock_send_within(int fd, const char *data, size_t len, int timeout_ms)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = send(fd, data + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		struct pollfd pfd = { fd, POLLOUT, 0 };

		if (n > 0) {
			off += (size_t)n;
		} else if (n < 0 && (errno == EAGAIN || errno == EINTR) && timeout_ms > 0) {
			/* Each wait counts in full: the budget is an upper bound. */
			poll(&pfd, 1, timeout_ms < 10 ? timeout_ms : 10);
			timeout_ms -= 10;
		} else {
			break;
		}
	}
	return off;
}

int sock_addr_loopback(const struct sockaddr *sa)
{
	if (sa != NULL && sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr) >>
		        24) == 127;
	if (sa != NULL && sa->sa_family == AF_INET6) {
		const struct in6_addr *a =
		        &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) ||
		       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return 0;
}

void sock_addr_text(const struct sockaddr *sa, char *out, size_t len)
{
	out[0] = '\0';
	if (sa != NULL && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
		          (socklen_t)len);
	else if (sa != NULL && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
		          out, (socklen_t)len);
}
