/* SPDX-License-Identifier: MIT */
/* check_kserve.c - KServe v2 infer requests decoded (JSON data and the
 * binary extension, in place and copied), the errors a client meets, and
 * replies encoded, read back with jansson. */
#include "autoconfig.h"

#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "kserve.h"
#include "model.h"
#include "runner.h"
#include "tensor.h"

/* A 1x1 convolution from 2 channels to 3, input "x", output "y". */
static const char model_json[] =
        "{\"input\":{\"name\":\"x\",\"channels\":2},\"output\":{\"name\":\"y\"},"
        "\"layers\":[{\"filters\":{\"shape\":[1,1,2,3],\"data\":[1,2,3,4,5,6]},"
        "\"rate\":1,\"padding\":\"SAME\"}]}";

static struct model *demo(void)
{
	struct model *m;
	char err[ERR_LEN];

	ck_assert_msg(model_load_body("m", model_json, strlen(model_json), 0, &m, err) == 0, "%s",
	              err);
	return m;
}

static int decode(const char *body, struct kserve_request *req, char *err)
{
	struct model *m = demo();
	int rc = kserve_decode(m, body, strlen(body), -1, 0, 0, req, err);

	model_unref(m);
	return rc;
}

START_TEST(test_json_input)
{
	struct kserve_request req;
	char err[ERR_LEN];
	int i;

	ck_assert_int_eq(decode("{\"id\":\"r1\",\"inputs\":[{\"name\":\"x\",\"shape\":[1,2,2,2],"
	                        "\"datatype\":\"FP32\",\"data\":[0,1,2,3,4,5,6,7]}],"
	                        "\"outputs\":[{\"name\":\"y\",\"parameters\":"
	                        "{\"binary_data\":true}}]}",
	                        &req, err),
	                 0);
	ck_assert_int_eq(req.input->rank, 4);
	ck_assert_int_eq(req.input->dim[1], 2);
	ck_assert_int_eq(req.input->dim[3], 2);
	for (i = 0; i < 8; i++)
		ck_assert(req.input->data[i] == (float)i);
	ck_assert_int_eq(req.has_id, 1);
	ck_assert_str_eq(req.id, "r1");
	ck_assert_int_eq(req.binary_output, 1);
	kserve_request_clear(&req);
	ck_assert_ptr_null(req.input);
	/* Nested data and no outputs: a JSON reply. */
	ck_assert_int_eq(decode("{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1,1,2],"
	                        "\"datatype\":\"FP32\",\"data\":[[[[0.5,-2]]]]}]}",
	                        &req, err),
	                 0);
	ck_assert(req.input->data[1] == -2.0f);
	ck_assert_int_eq(req.has_id, 0);
	ck_assert_int_eq(req.binary_output, 0);
	kserve_request_clear(&req);
}
END_TEST

/* A binary body: JSON header, then the input's bytes, placed in memory so
 * that the data starts aligned (in place) or not (copied). */
static void binary_case(int aligned)
{
	static const char header[] = "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1,2,2],"
	                             "\"datatype\":\"FP32\","
	                             "\"parameters\":{\"binary_data_size\":16}}]}";
	const float x[4] = { 1.5f, -2.0f, 3.25f, 0.0f };
	size_t hlen = strlen(header), off;
	char *mem = tensor_alloc_aligned(4 * TENSOR_ALIGN + 64), *body, err[ERR_LEN];
	struct kserve_request req;
	struct model *m = demo();

	/* The data starts at body + hlen: aligned when body + hlen is. */
	off = (TENSOR_ALIGN - hlen % TENSOR_ALIGN) % TENSOR_ALIGN + (aligned ? 0 : 4);
	body = mem + TENSOR_ALIGN + off;
	memcpy(body, header, hlen);
	memcpy(body + hlen, x, sizeof(x));
	ck_assert_msg(kserve_decode(m, body, hlen + sizeof(x), (long long)hlen, 1, 0, &req, err) ==
	                      0,
	              "%s", err);
	ck_assert_int_eq(memcmp(req.input->data, x, sizeof(x)), 0);
	ck_assert_int_eq(req.input->borrowed, aligned);
	ck_assert(aligned ? (char *)req.input->data == body + hlen
	                  : (char *)req.input->data != body + hlen);
	kserve_request_clear(&req);
	/* Trailing bytes beyond the declared sizes are refused. */
	ck_assert_int_eq(
	        kserve_decode(m, body, hlen + sizeof(x) - 4, (long long)hlen, 1, 0, &req, err),
	        -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "needs 16 bytes of binary data, only 12"));
	model_unref(m);
	free(mem);
}

START_TEST(test_binary_in_place)
{
	binary_case(1);
}
END_TEST

START_TEST(test_binary_copied)
{
	binary_case(0);
}
END_TEST

static const struct bad {
	const char *body;
	const char *msg;
} bad[] = {
	{ "{\"inputs\":[{\"name\":\"z\",\"shape\":[1,1,1,2],\"datatype\":\"FP32\",\"data\":[1,2]}]"
	  "}",
	  "unknown input \"z\": model m takes \"x\"" },
	{ "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1,1,2],\"datatype\":\"INT8\",\"data\":[1,2]}]"
	  "}",
	  "INT8" },
	{ "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,2],\"datatype\":\"FP32\",\"data\":[1,2]}]}",
	  "must have rank 4" },
	{ "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1,1,3],\"datatype\":\"FP32\",\"data\":[1,2,3]}"
	  "]}",
	  "input \"x\" has 3 channels, model m takes 2" },
	{ "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1,2,2],\"datatype\":\"FP32\",\"data\":[1,2]}]"
	  "}",
	  "shape needs 4 elements, \"data\" has 2" },
	{ "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1,1,2],\"datatype\":\"FP32\",\"data\":[1,2],"
	  "\"parameters\":{\"binary_data_size\":8}}]}",
	  "exactly one of \"data\" and parameters.binary_data_size" },
	{ "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1,1,2],\"datatype\":\"FP32\",\"data\":[1,2],"
	  "\"colour\":1}]}",
	  "input: unknown key \"colour\"" },
	{ "{\"inputs\":[],\"x\":1}", "request: unknown key \"x\"" },
	{ "{\"inputs\":[]}", "inputs" },
	{ "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1,1,2],\"datatype\":\"FP32\",\"data\":[1,2]}],"
	  "\"outputs\":[{\"name\":\"q\"}]}",
	  "unknown output \"q\": model m has \"y\"" },
	{ "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1,1,2],\"datatype\":\"FP32\",\"data\":[1,2]}],"
	  "\"outputs\":[{\"name\":\"y\",\"parameters\":{\"binary_data\":1}}]}",
	  "binary_data" },
	{ "[1,2]", "object" },
};

START_TEST(test_errors)
{
	struct kserve_request req;
	char err[ERR_LEN];

	ck_assert_int_lt(decode(bad[_i].body, &req, err), 0);
	ck_assert_msg(strstr(err, bad[_i].msg) != NULL, "%s: got \"%s\"", bad[_i].body, err);
	/* The request id is the api's to prefix, once. */
	ck_assert_ptr_null(strstr(err, "[request id"));
	ck_assert_ptr_null(req.input);
}
END_TEST

START_TEST(test_header_length)
{
	struct kserve_request req;
	struct model *m = demo();
	char err[ERR_LEN];

	ck_assert_int_eq(kserve_decode(m, "{}", 2, 0, 0, 0, &req, err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "Inference-Header-Content-Length 0"));
	ck_assert_int_eq(kserve_decode(m, "{}", 2, 3, 0, 0, &req, err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "exceeds the body length 2"));
	model_unref(m);
}
END_TEST

/* Encode a reply for out and read it back. */
static json_t *encode(int binary, const struct tensor *out, struct buf *b, size_t *json_len)
{
	struct kserve_request req = { .binary_output = binary, .has_id = 1 };
	struct buf data = { 0 };
	struct model *m = demo();
	json_error_t jerr;
	json_t *root;

	strcpy(req.id, "id \"7\"");
	kserve_encode_data(&data, &req, out, NULL);
	kserve_encode(b, json_len, m, &req, out, "{\"compute_us\":5}", &data);
	ck_assert_int_eq(buf_ok(b), 0);
	root = json_loadb(b->data, *json_len, 0, &jerr);
	ck_assert_msg(root != NULL, "%s", jerr.text);
	buf_free(&data);
	model_unref(m);
	return root;
}

START_TEST(test_encode)
{
	int64_t dim[4] = { 1, 1, 2, 3 };
	struct tensor *out;
	struct buf b = { 0 };
	size_t json_len, i;
	json_t *root, *o, *data;
	char err[ERR_LEN];

	ck_assert_int_eq(tensor_new(&out, 4, dim, err), 0);
	for (i = 0; i < 6; i++)
		out->data[i] = (float)i * 0.1f - 0.25f;
	root = encode(0, out, &b, &json_len);
	ck_assert_uint_eq(json_len, b.len);
	ck_assert_str_eq(json_string_value(json_object_get(root, "model_name")), "m");
	ck_assert_str_eq(json_string_value(json_object_get(root, "id")), "id \"7\"");
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(root, "parameters"),
	                                                    "compute_us")),
	                 5);
	o = json_array_get(json_object_get(root, "outputs"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(o, "name")), "y");
	ck_assert_str_eq(json_string_value(json_object_get(o, "datatype")), "FP32");
	ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(o, "shape"), 3)), 3);
	data = json_object_get(o, "data");
	ck_assert_uint_eq(json_array_size(data), 6);
	for (i = 0; i < 6; i++)
		ck_assert((float)json_real_value(json_array_get(data, i)) == out->data[i] ||
		          (json_is_integer(json_array_get(data, i)) &&
		           (float)json_integer_value(json_array_get(data, i)) == out->data[i]));
	json_decref(root);
	buf_free(&b);

	root = encode(1, out, &b, &json_len);
	o = json_array_get(json_object_get(root, "outputs"), 0);
	ck_assert_ptr_null(json_object_get(o, "data"));
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(o, "parameters"),
	                                                    "binary_data_size")),
	                 24);
	ck_assert_uint_eq(b.len, json_len + 24);
	ck_assert_int_eq(memcmp(b.data + json_len, out->data, 24), 0);
	json_decref(root);
	buf_free(&b);
	tensor_free(out);
}
END_TEST

START_TEST(test_metadata)
{
	struct model *m = demo();
	struct buf b = { 0 };
	json_t *root, *in;

	kserve_model_metadata(&b, m);
	root = json_loadb(b.data, b.len, 0, NULL);
	ck_assert_ptr_nonnull(root);
	in = json_array_get(json_object_get(root, "inputs"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(in, "name")), "x");
	ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(in, "shape"), 3)), 2);
	ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(in, "shape"), 0)), -1);
	json_decref(root);
	buf_free(&b);
	model_record(m, 1, 2000, 100, 200, 300, 400, 1);
	kserve_model_stat(&b, m);
	root = json_loadb(b.data, b.len, 0, NULL);
	ck_assert_ptr_nonnull(root);
	ck_assert_int_eq(json_integer_value(json_object_get(root, "inference_count")), 1);
	ck_assert_int_eq(
	        json_integer_value(json_object_get(
	                json_object_get(json_object_get(root, "inference_stats"), "queue"), "ns")),
	        100);
	json_decref(root);
	buf_free(&b);
	model_unref(m);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("kserve");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_json_input);
	tcase_add_test(tc, test_binary_in_place);
	tcase_add_test(tc, test_binary_copied);
	tcase_add_loop_test(tc, test_errors, 0, (int)(sizeof(bad) / sizeof(bad[0])));
	tcase_add_test(tc, test_header_length);
	tcase_add_test(tc, test_encode);
	tcase_add_test(tc, test_metadata);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
