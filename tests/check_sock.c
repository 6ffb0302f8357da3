/* SPDX-License-Identifier: MIT */
/* check_sock.c - the listener's address forms and the raw-socket helpers. */
#include "autoconfig.h"

#include <check.h>
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "error.h"
#include "runner.h"
#include "sock.h"

START_TEST(test_listen)
{
	char bound[80], err[ERR_LEN];
	int fd, port;

	ck_assert_int_eq(sock_listen("127.0.0.1:0", &fd, bound, sizeof(bound), &port, err), 0);
	ck_assert_int_gt(port, 0);
	ck_assert_int_eq(strncmp(bound, "127.0.0.1:", 10), 0);
	ck_assert_int_eq(atoi(bound + 10), port);
	close(fd);
	/* IPv6 where the machine has it; the form is reported either way. */
	if (sock_listen("[::1]:0", &fd, bound, sizeof(bound), &port, err) == 0) {
		ck_assert_int_eq(strncmp(bound, "[::1]:", 6), 0);
		close(fd);
	}
}
END_TEST

START_TEST(test_listen_errors)
{
	static const char *const bad[] = { "8080", "[::1]8080", "[::1", "localhost:80", "1.2.3:x" };
	char bound[80], err[ERR_LEN];
	int fd = -1, port, i;

	for (i = 0; i < (int)(sizeof(bad) / sizeof(bad[0])); i++) {
		ck_assert_int_lt(sock_listen(bad[i], &fd, bound, sizeof(bound), &port, err), 0);
		ck_assert_ptr_nonnull(strstr(err, bad[i]));
	}
	ck_assert_int_eq(fd, -1);
}
END_TEST

START_TEST(test_peer_shut)
{
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_int_eq(sock_peer_shut(sv[0]), 0); /* open, nothing sent */
	ck_assert_int_eq(write(sv[1], "x", 1), 1);
	ck_assert_int_eq(sock_peer_shut(sv[0]), 0); /* data before the end */
	shutdown(sv[1], SHUT_WR);
	ck_assert_int_eq(sock_peer_shut(sv[0]), 0);
	ck_assert_int_eq(read(sv[0], (char[1]){ 0 }, 1), 1);
	ck_assert_int_eq(sock_peer_shut(sv[0]), 1);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_send_within)
{
	size_t len = 8 << 20, n;
	char *data = calloc(1, len);
	int sv[2];

	ck_assert_ptr_nonnull(data);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	ck_assert_uint_eq(sock_send_within(sv[0], data, 100, 0), 100);
	/* Nobody reads: the socket fills, the budget runs out, part is sent. */
	n = sock_send_within(sv[0], data, len, 30);
	ck_assert_uint_gt(n, 0);
	ck_assert_uint_lt(n, len);
	close(sv[1]);
	ck_assert_uint_eq(sock_send_within(sv[0], data, 100, 30), 0); /* peer gone */
	close(sv[0]);
	free(data);
}
END_TEST

START_TEST(test_addr)
{
	struct sockaddr_in a4 = { .sin_family = AF_INET };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6 };
	char text[64];

	inet_pton(AF_INET, "127.1.2.3", &a4.sin_addr);
	ck_assert(sock_addr_loopback((struct sockaddr *)&a4));
	sock_addr_text((struct sockaddr *)&a4, text, sizeof(text));
	ck_assert_str_eq(text, "127.1.2.3");
	inet_pton(AF_INET, "10.0.0.1", &a4.sin_addr);
	ck_assert(!sock_addr_loopback((struct sockaddr *)&a4));
	inet_pton(AF_INET6, "::1", &a6.sin6_addr);
	ck_assert(sock_addr_loopback((struct sockaddr *)&a6));
	inet_pton(AF_INET6, "::ffff:127.0.0.9", &a6.sin6_addr);
	ck_assert(sock_addr_loopback((struct sockaddr *)&a6));
	inet_pton(AF_INET6, "::ffff:192.0.2.1", &a6.sin6_addr);
	ck_assert(!sock_addr_loopback((struct sockaddr *)&a6));
	sock_addr_text((struct sockaddr *)&a6, text, sizeof(text));
	ck_assert_str_eq(text, "::ffff:192.0.2.1");
	ck_assert(!sock_addr_loopback(NULL));
	sock_addr_text(NULL, text, sizeof(text));
	ck_assert_str_eq(text, "");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sock");
	TCase *tc = tcase_create("sock");

	tcase_add_test(tc, test_listen);
	tcase_add_test(tc, test_addr);
	tcase_add_test(tc, test_listen_errors);
	tcase_add_test(tc, test_peer_shut);
	tcase_add_test(tc, test_send_within);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
