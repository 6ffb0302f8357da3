/* SPDX-License-Identifier: MIT */
/* check_jscan.c - the fast path of JSON bodies: which arrays it takes, the
 * envelope it leaves for jansson, exact numbers, and what it refuses. */
#include "autoconfig.h"

#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "jscan.h"
#include "runner.h"

static int scan(const char *body, struct jscan *js, struct buf *env, char *err)
{
	memset(js, 0, sizeof(*js));
	js->max_elements = 1 << 20;
	memset(env, 0, sizeof(*env));
	return jscan_body(js, body, strlen(body), env, err);
}

/* "[a, a+1, ..., a+n-1]" */
static void put_range(struct buf *b, int a, int n)
{
	int i;

	buf_puts(b, "[");
	for (i = 0; i < n; i++)
		buf_printf(b, "%s%d", i ? "," : "", a + i);
	buf_puts(b, "]");
}

START_TEST(test_small_left_alone)
{
	const char *body = "{\"value\": [1, 2.5, -3e2], \"s\": \"[1,2,3]\", \"o\": {\"a\": [[1]]}}";
	struct jscan js;
	struct buf env;
	char err[ERR_LEN];

	ck_assert_int_eq(scan(body, &js, &env, err), 0);
	ck_assert_uint_eq(js.nfast, 0);
	ck_assert_uint_eq(env.len, strlen(body));
	ck_assert_int_eq(memcmp(env.data, body, env.len), 0);
	buf_free(&env);
	jscan_clear(&js);
}
END_TEST

START_TEST(test_large_taken)
{
	struct buf body = { 0 }, env;
	struct jscan js;
	char err[ERR_LEN];
	json_t *root;
	int i;

	/* A flat array of 16 (the threshold), a [2,3,4] nest, and a string that
	 * looks like an array. */
	buf_puts(&body, "{\"a\":");
	put_range(&body, 0, JSCAN_FAST_MIN);
	buf_puts(&body, ",\"s\":\"[1,2]\",\"b\":[");
	for (i = 0; i < 2; i++) {
		buf_puts(&body, i ? ",[" : "[");
		put_range(&body, 100 + 12 * i, 4);
		buf_puts(&body, ",");
		put_range(&body, 104 + 12 * i, 4);
		buf_puts(&body, ",");
		put_range(&body, 108 + 12 * i, 4);
		buf_puts(&body, "]");
	}
	buf_puts(&body, "]}");
	buf_add(&body, "", 1);
	ck_assert_int_eq(scan(body.data, &js, &env, err), 0);
	ck_assert_uint_eq(js.nfast, 2);
	ck_assert_int_eq(js.fast[0]->rank, 1);
	ck_assert_int_eq(js.fast[0]->dim[0], JSCAN_FAST_MIN);
	ck_assert(js.fast[0]->data[15] == 15.0f);
	ck_assert_int_eq(js.fast[1]->rank, 3);
	ck_assert_int_eq(js.fast[1]->dim[0], 2);
	ck_assert_int_eq(js.fast[1]->dim[1], 3);
	ck_assert_int_eq(js.fast[1]->dim[2], 4);
	for (i = 0; i < 24; i++)
		ck_assert(js.fast[1]->data[i] == (float)(100 + i));
	/* The envelope is JSON with placeholders where the arrays were. */
	root = json_loadb(env.data, env.len, 0, NULL);
	ck_assert_ptr_nonnull(root);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(root, "a"),
	                                                    JSCAN_PLACEHOLDER_KEY)),
	                 0);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(root, "b"),
	                                                    JSCAN_PLACEHOLDER_KEY)),
	                 1);
	ck_assert_str_eq(json_string_value(json_object_get(root, "s")), "[1,2]");
	json_decref(root);
	buf_free(&env);
	buf_free(&body);
	jscan_clear(&js);
}
END_TEST

/* Numbers are rounded to float32 exactly as strtof rounds them. */
START_TEST(test_exact_numbers)
{
	static const char *const nums[] = {
		"0.1",
		"-0",
		"1e-45",
		"3.4028234663852886e38",
		"1e-50",
		"16777217",
		"0.30000001192093",
		"-2.5E+3",
		"7e-46",
		"1.17549435e-38",
		"123456789012345678901234567890",
		"0.0000001",
		"5",
		"-1",
		"2e10",
		"9.99999999e-1",
	};
	struct buf body = { 0 }, env;
	struct jscan js;
	char err[ERR_LEN];
	size_t i;

	buf_puts(&body, "[");
	for (i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
		buf_printf(&body, "%s%s", i ? "," : "", nums[i]);
	buf_puts(&body, "]");
	buf_add(&body, "", 1);
	ck_assert_int_eq(scan(body.data, &js, &env, err), 0);
	ck_assert_uint_eq(js.nfast, 1);
	for (i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		float want = strtof(nums[i], NULL);

		ck_assert_msg(memcmp(&js.fast[0]->data[i], &want, sizeof(want)) == 0,
		              "%s: %a, want %a", nums[i], (double)js.fast[0]->data[i],
		              (double)want);
	}
	buf_free(&env);
	buf_free(&body);
	jscan_clear(&js);
}
END_TEST

static const struct refusal {
	const char *body;
	int rc;
	const char *msg;
} refusals[] = {
	/* ragged: the second row is shorter */
	{ "[[1,2,3,4,5,6,7,8],[1,2,3,4,5,6,7]]", -EINVAL, "" },
	/* a number beyond float32 */
	{ "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,1e39]", -ERANGE, "" },
	/* nesting deeper than JSCAN_MAX_DEPTH (objects: arrays of up to
	 * TENSOR_MAX_RANK levels around numbers are tensors, not nesting) */
	{ "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
	  "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
	  "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{}}}}}}}}}"
	  "}}}}}}}}}}}}}}}}}}}}}}}}",
	  -EINVAL, "nesting deeper than 32" },
};

START_TEST(test_refused)
{
	const struct refusal *r = &refusals[_i];
	struct jscan js;
	struct buf env;
	char err[ERR_LEN] = "";
	int rc = scan(r->body, &js, &env, err);

	ck_assert_msg(rc == r->rc, "%s: rc %d (%s), want %d", r->body, rc, err, r->rc);
	ck_assert_int_gt((int)strlen(err), 0);
	ck_assert_ptr_nonnull(strstr(err, r->msg));
	buf_free(&env);
	jscan_clear(&js);
}
END_TEST

START_TEST(test_limits)
{
	struct buf body = { 0 }, env = { 0 };
	struct jscan js = { .max_elements = 20 };
	char err[ERR_LEN];
	int i;

	put_range(&body, 0, 21);
	ck_assert_int_eq(jscan_body(&js, body.data, body.len, &env, err), -E2BIG);
	jscan_clear(&js);
	buf_free(&env);
	buf_free(&body);
	/* More values than jansson is allowed to hold ({} and a comma each). */
	buf_puts(&body, "[");
	for (i = 0; i < JSCAN_MAX_VALUES / 2 + 1; i++)
		buf_puts(&body, i ? ",{}" : "{}");
	buf_puts(&body, "]");
	memset(&js, 0, sizeof(js));
	js.max_elements = 1 << 20;
	memset(&env, 0, sizeof(env));
	ck_assert_int_eq(jscan_body(&js, body.data, body.len, &env, err), -E2BIG);
	jscan_clear(&js);
	buf_free(&env);
	buf_free(&body);
}
END_TEST

START_TEST(test_find_uint)
{
	static const char *const kserve[] = { "parameters", "timeout", NULL };
	static const char *const native[] = { "timeout_us", NULL };
	static const struct {
		const char *body;
		int kserve_found;
		uint64_t kserve_value;
		int native_found;
		uint64_t native_value;
	} cases[] = {
		{ "{\"parameters\":{\"timeout\":1500}}", 1, 1500, 0, 0 },
		{ " {\n\"inputs\":[{\"data\":[1,2,[3,{\"timeout\":7}]],\"s\":\"}]\\\"{\"}],"
		  "\"parameters\" : { \"x\":[\"timeout\"], \"timeout\" : 0 } }",
		  1, 0, 0, 0 },
		{ "{\"timeout_us\":9223372036854775807,\"value\":[1]}", 0, 0, 1,
		  9223372036854775807ull },
		{ "{\"value\":[[1,2],[3,4]],\"timeout_us\":42}", 0, 0, 1, 42 },
		/* At the wrong depth, or not an integer: not found. */
		{ "{\"a\":{\"timeout_us\":5},\"parameters\":{\"b\":{\"timeout\":5}}}", 0, 0, 0, 0 },
		{ "{\"timeout_us\":9223372036854775808}", 0, 0, 0, 0 },
		{ "{\"timeout_us\":-1,\"parameters\":{\"timeout\":1.5}}", 0, 0, 0, 0 },
		{ "{\"timeout_us\":1e3,\"parameters\":{\"timeout\":\"10\"}}", 0, 0, 0, 0 },
		{ "{\"time\\u006fut_us\":5}", 0, 0, 0, 0 },
		/* Broken text: nothing, without reading past the end. */
		{ "{\"value\":[1,2", 0, 0, 0, 0 },
		{ "{\"s\":\"unterminated", 0, 0, 0, 0 },
		{ "[{\"timeout_us\":5}]", 0, 0, 0, 0 },
		{ "", 0, 0, 0, 0 },
		{ "{\"timeout_us\"", 0, 0, 0, 0 },
		{ "{\"timeout_us\":", 0, 0, 0, 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *b = cases[i].body;
		/* A copy that ends exactly at the text: no NUL to lean on. */
		size_t len = strlen(b);
		char *copy = malloc(len + 1);
		uint64_t v = 12345;

		memcpy(copy, b, len);
		ck_assert_msg(jscan_find_uint(copy, len, kserve, &v) == cases[i].kserve_found,
		              "case %zu kserve", i);
		if (cases[i].kserve_found)
			ck_assert_uint_eq(v, cases[i].kserve_value);
		ck_assert_msg(jscan_find_uint(copy, len, native, &v) == cases[i].native_found,
		              "case %zu native", i);
		if (cases[i].native_found)
			ck_assert_uint_eq(v, cases[i].native_value);
		free(copy);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("jscan");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_small_left_alone);
	tcase_add_test(tc, test_find_uint);
	tcase_add_test(tc, test_large_taken);
	tcase_add_test(tc, test_exact_numbers);
	tcase_add_loop_test(tc, test_refused, 0, (int)(sizeof(refusals) / sizeof(refusals[0])));
	tcase_add_test(tc, test_limits);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
