/* SPDX-License-Identifier: MIT */
/* check_route.c - the URL map as a table: method and path to endpoint, the
 * model name, the flags, and the answers for wrong methods and bad names. */
#include "autoconfig.h"

#include <check.h>
#include <errno.h>
#include <string.h>

#include "route.h"
#include "runner.h"

#define NAME64 "m123456789012345678901234567890123456789012345678901234567890123"

static const struct row {
	const char *method, *url;
	int rc;
	enum endpoint ep;
	const char *model; /* expected model name, or NULL */
	int compute, admin;
	const char *allow; /* expected Allow list for a wrong method, or NULL */
} rows[] = {
	{ "POST", "/v1/atrous_conv2d", 0, EP_CONV, NULL, 1, 0, NULL },
	{ "POST", "/v1/aspp", 0, EP_ASPP, NULL, 1, 0, NULL },
	{ "POST", "/v1/sequential", 0, EP_SEQUENTIAL, NULL, 1, 0, NULL },
	{ "POST", "/v1/models/reload", 0, EP_RELOAD, NULL, 1, 1, NULL },
	{ "GET", "/v2", 0, EP_SERVER_META, NULL, 0, 0, NULL },
	{ "HEAD", "/v2", 0, EP_SERVER_META, NULL, 0, 0, NULL },
	{ "GET", "/v2/health/live", 0, EP_LIVE, NULL, 0, 0, NULL },
	{ "GET", "/healthz", 0, EP_LIVE, NULL, 0, 0, NULL },
	{ "GET", "/v2/health/ready", 0, EP_READY, NULL, 0, 0, NULL },
	{ "GET", "/v2/models/stats", 0, EP_STATS_ALL, NULL, 0, 0, NULL },
	{ "GET", "/metrics", 0, EP_METRICS, NULL, 0, 0, NULL },
	{ "GET", "/v2/models/demo", 0, EP_MODEL_META, "demo", 0, 0, NULL },
	{ "GET", "/v2/models/demo/versions/1", 0, EP_MODEL_META, "demo", 0, 0, NULL },
	{ "GET", "/v2/models/demo/ready", 0, EP_MODEL_READY, "demo", 0, 0, NULL },
	{ "GET", "/v2/models/demo/versions/1/ready", 0, EP_MODEL_READY, "demo", 0, 0, NULL },
	{ "GET", "/v2/models/demo/stats", 0, EP_MODEL_STATS, "demo", 0, 0, NULL },
	{ "POST", "/v2/models/demo/infer", 0, EP_INFER, "demo", 1, 0, NULL },
	{ "POST", "/v2/models/a.b-c_9/versions/1/infer", 0, EP_INFER, "a.b-c_9", 1, 0, NULL },
	{ "POST", "/v2/models/" NAME64 "/infer", 0, EP_INFER, NAME64, 1, 0, NULL },
	{ "PUT", "/v1/models/demo", 0, EP_MODEL_PUT, "demo", 1, 1, NULL },
	{ "DELETE", "/v1/models/demo", 0, EP_MODEL_DELETE, "demo", 1, 1, NULL },
	{ "POST", "/v2/repository/index", 0, EP_REPO_INDEX, NULL, 1, 1, NULL },
	{ "POST", "/v2/repository/models/deeplab/load", 0, EP_REPO_LOAD, "deeplab", 1, 1, NULL },
	{ "POST", "/v2/repository/models/deeplab/unload", 0, EP_REPO_UNLOAD, "deeplab", 1, 1,
	  NULL },
	{ "GET", "/v2/repository/index", -ENOENT, EP_NONE, NULL, 0, 0, "POST" },
	{ "GET", "/v2/repository/models/m/load", -ENOENT, EP_REPO_LOAD, "m", 1, 1, "POST" },
	{ "POST", "/v2/repository/models/m/reload", -ENOENT, EP_NONE, "m", 0, 0, NULL },
	{ "POST", "/v2/repository/models/.m/load", -EINVAL, EP_NONE, NULL, 0, 0, NULL },
	/* The path exists, the method does not: the Allow list. */
	{ "GET", "/v1/atrous_conv2d", -ENOENT, EP_NONE, NULL, 0, 0, "POST" },
	{ "POST", "/v2/health/ready", -ENOENT, EP_NONE, NULL, 0, 0, "GET, HEAD" },
	{ "GET", "/v2/models/demo/infer", -ENOENT, EP_INFER, "demo", 1, 0, "POST" },
	{ "POST", "/v2/models/demo", -ENOENT, EP_MODEL_META, "demo", 0, 0, "GET, HEAD" },
	{ "GET", "/v1/models/demo", -ENOENT, EP_NONE, "demo", 1, 1, "PUT, DELETE" },
	/* No such path. */
	{ "GET", "/", -ENOENT, EP_NONE, NULL, 0, 0, NULL },
	{ "GET", "/v2/", -ENOENT, EP_NONE, NULL, 0, 0, NULL },
	{ "GET", "/v1/atrous_conv2d/", -ENOENT, EP_NONE, NULL, 0, 0, NULL },
	{ "GET", "/v2/models/demo/nothing", -ENOENT, EP_NONE, "demo", 0, 0, NULL },
	{ "GET", "/v2/models/demo/versions/2", -ENOENT, EP_NONE, "demo", 0, 0, NULL },
	/* Bad model names. */
	{ "GET", "/v2/models/.hidden", -EINVAL, EP_NONE, NULL, 0, 0, NULL },
	{ "GET", "/v2/models/a%20b", -EINVAL, EP_NONE, NULL, 0, 0, NULL },
	{ "POST", "/v2/models/" NAME64 "x/infer", -EINVAL, EP_NONE, NULL, 0, 0, NULL },
	{ "PUT", "/v1/models/..", -EINVAL, EP_NONE, NULL, 0, 0, NULL },
	{ "PUT", "/v1/models/a/b", -EINVAL, EP_NONE, NULL, 0, 0, NULL },
	{ "PUT", "/v1/models/", -EINVAL, EP_NONE, NULL, 0, 0, NULL },
};

START_TEST(test_table)
{
	const struct row *w = &rows[_i];
	struct route r;
	int rc = route_match(w->method, w->url, &r);

	ck_assert_msg(rc == w->rc, "%s %s: rc %d, want %d", w->method, w->url, rc, w->rc);
	if (w->rc == 0 || w->allow != NULL) {
		ck_assert_msg(r.ep == w->ep, "%s %s: endpoint %d", w->method, w->url, r.ep);
		ck_assert_int_eq(r.compute, w->compute);
		ck_assert_int_eq(r.admin, w->admin);
	}
	if (w->allow != NULL)
		ck_assert_str_eq(r.allow ? r.allow : "(none)", w->allow);
	else
		ck_assert_ptr_null(r.allow);
	if (w->model != NULL && (w->rc == 0 || w->allow != NULL))
		ck_assert_str_eq(r.model, w->model);
	if (w->rc == -EINVAL)
		ck_assert_ptr_nonnull(strstr(r.bad, "[A-Za-z0-9_.-]{1,64}"));
}
END_TEST

START_TEST(test_version_message)
{
	struct route r;

	ck_assert_int_eq(route_match("GET", "/v2/models/demo/versions/2", &r), -ENOENT);
	ck_assert_str_eq(r.bad, "model demo has only version 1");
}
END_TEST

START_TEST(test_labels)
{
	int e;

	for (e = 0; e < EP_COUNT; e++) {
		const char *l = endpoint_label((enum endpoint)e);

		ck_assert_ptr_nonnull(l);
		ck_assert_int_gt((int)strlen(l), 0);
		ck_assert_msg(strspn(l, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(l),
		              "label %s is not in [a-z0-9_]", l);
	}
	ck_assert_str_eq(endpoint_label(EP_INFER), "infer");
	ck_assert_str_eq(endpoint_label(EP_COUNT), "unknown");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("route");
	TCase *tc = tcase_create("core");

	tcase_add_loop_test(tc, test_table, 0, (int)(sizeof(rows) / sizeof(rows[0])));
	tcase_add_test(tc, test_version_message);
	tcase_add_test(tc, test_labels);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
