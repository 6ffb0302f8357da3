/* SPDX-License-Identifier: MIT */
/* check_config.c - the option table: defaults, file, flags, and the sample
 * conf/atrousd.conf agreeing with the table. */
#include "autoconfig.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "runner.h"

#define A(s) ((char *)(s))

static char *write_tmp(const char *text)
{
	static char path[64];
	FILE *f;
	int fd;

	strcpy(path, "/tmp/check_config.XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

START_TEST(test_defaults)
{
	struct config c;
	char err[ERR_LEN];

	config_defaults(&c);
	ck_assert_str_eq(c.listen, "127.0.0.1:8080");
	ck_assert_uint_eq(c.max_body, 64u << 20);
	ck_assert_uint_eq(c.threads, 0);
	ck_assert_uint_ge(c.per_ip_connections, 64);
	ck_assert_str_eq(c.admin_token_file, "");
	ck_assert_int_eq(config_validate(&c, err), 0);
	config_clear(&c);
}
END_TEST

START_TEST(test_file_and_flags)
{
	char *argv[] = { A("atrousd"), A("--config"),      NULL, A("--threads"),
		         A("3"),       A("--max-body=1M"), NULL };
	struct config c;
	enum config_action act;
	char err[ERR_LEN];

	argv[2] = write_tmp("# comment\nthreads = 7\nmax_queue = 5\nlisten = [::1]:0\n"
	                    "max_body = 512K\n");
	config_defaults(&c);
	ck_assert_int_eq(config_load_args(&c, 6, argv, &act, err), 0);
	ck_assert_int_eq(act, CONFIG_RUN);
	ck_assert_uint_eq(c.threads, 3);   /* flag beats file */
	ck_assert_uint_eq(c.max_queue, 5); /* file beats default */
	ck_assert_uint_eq(c.max_body, 1u << 20);
	ck_assert_str_eq(c.listen, "[::1]:0");
	config_clear(&c);
	unlink(argv[2]);
}
END_TEST

START_TEST(test_errors)
{
	char *argv[] = { A("atrousd"), A("--config"), NULL, NULL };
	char *bad_flag[] = { A("atrousd"), A("--no-such-flag"), NULL };
	char *stray[] = { A("atrousd"), A("stray"), NULL };
	struct config c;
	enum config_action act;
	char err[ERR_LEN];

	argv[2] = write_tmp("threads = 2\nmax_queue = lots\n");
	config_defaults(&c);
	ck_assert_int_lt(config_load_args(&c, 3, argv, &act, err), 0);
	ck_assert_msg(strstr(err, ":2: max_queue: \"lots\" is not an integer") != NULL, "%s", err);
	config_clear(&c);
	unlink(argv[2]);
	argv[2] = write_tmp("colour = blue\n");
	config_defaults(&c);
	ck_assert_int_lt(config_load_args(&c, 3, argv, &act, err), 0);
	ck_assert_msg(strstr(err, ":1: unknown key \"colour\"") != NULL, "%s", err);
	config_clear(&c);
	unlink(argv[2]);
	argv[2] = A("/nonexistent/atrousd.conf");
	config_defaults(&c);
	ck_assert_int_lt(config_load_args(&c, 3, argv, &act, err), 0);
	ck_assert_msg(strstr(err, "cannot open") != NULL, "%s", err);
	config_clear(&c);
	config_defaults(&c);
	ck_assert_int_lt(config_load_args(&c, 2, bad_flag, &act, err), 0);
	ck_assert_msg(strstr(err, "unknown option '--no-such-flag'") != NULL, "%s", err);
	ck_assert_int_lt(config_load_args(&c, 2, stray, &act, err), 0);
	ck_assert_int_lt(config_set(&c, "max_body", "12Q", err), 0);
	ck_assert_int_lt(config_set(&c, "max_body", "-1", err), 0);
	ck_assert_int_eq(config_set(&c, "max_body", "2G", err), 0);
	ck_assert_uint_eq(c.max_body, 2ull << 30);
	ck_assert_int_eq(config_set(&c, "log_level", "loud", err), 0);
	ck_assert_int_lt(config_validate(&c, err), 0);
	ck_assert_msg(strstr(err, "log_level") != NULL, "%s", err);
	config_clear(&c);
}
END_TEST

START_TEST(test_sample_matches_conf)
{
	char *generated = NULL, line[512];
	size_t len = 0, off = 0;
	FILE *mem = open_memstream(&generated, &len);
	FILE *f = fopen(TOP_SRCDIR "/conf/atrousd.conf", "r");
	struct config c;
	enum config_action act;
	char err[ERR_LEN];
	char *argv[] = { A("atrousd"), A("--config"), A(TOP_SRCDIR "/conf/atrousd.conf"), NULL };

	ck_assert_ptr_nonnull(f);
	config_print_sample(mem);
	fclose(mem);
	while (fgets(line, sizeof(line), f) != NULL) {
		ck_assert_msg(
		        strncmp(generated + off, line, strlen(line)) == 0,
		        "conf/atrousd.conf differs from 'atrousd --print-sample-config' at: %s",
		        line);
		off += strlen(line);
	}
	ck_assert_uint_eq(off, len);
	fclose(f);
	free(generated);
	/* And the shipped file loads to exactly the defaults. */
	config_defaults(&c);
	ck_assert_int_eq(config_load_args(&c, 3, argv, &act, err), 0);
	ck_assert_str_eq(c.listen, "127.0.0.1:8080");
	config_clear(&c);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_file_and_flags);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_sample_matches_conf);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
