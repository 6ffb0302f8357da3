/* SPDX-License-Identifier: MIT */
/* kserve.c - KServe v2 request decoding and reply encoding. */
#include "autoconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "error.h"
#include "kserve.h"

static int check_keys(json_t *obj, const char *const *keys, const char *what, char *err)
{
	int rc = codec_check_keys(obj, keys, NULL, err);

	if (rc < 0)
		err_prefix(err, "%s", what);
	return rc;
}

static int get_bool(json_t *params, const char *key, int *out, char *err)
{
	json_t *v = json_is_object(params) ? json_object_get(params, key) : NULL;

	if (v == NULL)
		return 0;
	if (!json_is_boolean(v))
		return err_set(err, -EINVAL, "parameter \"%s\" must be true or false", key);
	*out = json_is_true(v);
	return 0;
}

static int input_shape(json_t *in, const struct model *m, int64_t dim[4], size_t *count, char *err)
{
	json_t *shape = json_object_get(in, "shape"), *dt = json_object_get(in, "datatype");
	char buf[160];
	size_t i;

	if (!json_is_string(dt))
		return err_set(err, -EINVAL,
		               "input \"%s\": missing \"datatype\" (only FP32 is accepted)",
		               model_input_name(m));
	if (strcmp(json_string_value(dt), "FP32") != 0)
		return err_set(err, -EINVAL,
		               "input \"%s\": datatype \"%.16s\" is not supported; only FP32",
		               model_input_name(m), json_string_value(dt));
	if (!json_is_array(shape))
		return err_set(err, -EINVAL, "input \"%s\": missing \"shape\"",
		               model_input_name(m));
	for (i = 0; i < json_array_size(shape); i++)
		if (!json_is_integer(json_array_get(shape, i)) ||
		    json_integer_value(json_array_get(shape, i)) < 0)
			return err_set(err, -EINVAL,
			               "input \"%s\": shape[%zu] is not a non-negative integer",
			               model_input_name(m), i);
	if (json_array_size(shape) != 4) {
		int64_t d[8];
		int r = (int)(json_array_size(shape) < 8 ? json_array_size(shape) : 8);

		for (i = 0; i < (size_t)r; i++)
			d[i] = json_integer_value(json_array_get(shape, i));
		return err_set(err, -EINVAL,
		               model_nchw(m)
		                       ? "input \"%s\" must have rank 4 [N,%lld,H,W], got shape %s"
		                       : "input \"%s\" must have rank 4 [N,H,W,%lld], got shape %s",
		               model_input_name(m), (long long)model_in_channels(m),
		               tensor_shape_str(r, d, buf, sizeof(buf)));
	}
	for (i = 0; i < 4; i++)
		dim[i] = json_integer_value(json_array_get(shape, i));
	if (dim[model_nchw(m) ? 1 : 3] != model_in_channels(m))
		return err_set(err, -EINVAL, "input \"%s\" has %lld channels, model %s takes %lld",
		               model_input_name(m), (long long)dim[model_nchw(m) ? 1 : 3],
		               model_name(m), (long long)model_in_channels(m));
	return 0;
}

static int decode_input(struct codec_doc *doc, json_t *in, const struct model *m, const char *bin,
                        size_t binlen, size_t *cursor, int borrow, int64_t max_elements,
                        struct tensor **out, char *err)
{
	static const char *const keys[] = {
		"name", "shape", "datatype", "parameters", "data", NULL
	};
	json_t *name = json_object_get(in, "name"), *params = json_object_get(in, "parameters");
	json_t *data = json_object_get(in, "data"), *size = NULL;
	int64_t dim[4];
	size_t count;
	int rc;

	if (!json_is_object(in))
		return err_set(err, -EINVAL, "each input must be an object");
	rc = check_keys(in, keys, "input", err);
	if (rc < 0)
		return rc;
	if (!json_is_string(name) || strcmp(json_string_value(name), model_input_name(m)) != 0)
		return err_set(err, -EINVAL, "unknown input \"%.64s\": model %s takes \"%s\"",
		               json_is_string(name) ? json_string_value(name) : "", model_name(m),
		               model_input_name(m));
	rc = input_shape(in, m, dim, &count, err);
	if (rc == 0)
		rc = tensor_shape_count(4, dim, max_elements, &count, err);
	if (rc < 0)
		return rc;
	if (json_is_object(params))
		size = json_object_get(params, "binary_data_size");
	if ((size != NULL) == (data != NULL))
		return err_set(err, -EINVAL,
		               "input \"%s\" must have exactly one of \"data\" and "
		               "parameters.binary_data_size",
		               model_input_name(m));
	if (size != NULL) {
		json_int_t n = json_is_integer(size) ? json_integer_value(size) : -1;

		if (n < 0)
			return err_set(err, -EINVAL,
			               "binary_data_size must be a non-negative integer");
		if ((size_t)n != count * sizeof(float))
			return err_set(err, -EINVAL,
			               "input \"%s\": binary_data_size %lld != %zu bytes for FP32 "
			               "shape [%lld,%lld,%lld,%lld]",
			               model_input_name(m), (long long)n, count * sizeof(float),
			               (long long)dim[0], (long long)dim[1], (long long)dim[2],
			               (long long)dim[3]);
		if ((size_t)n > binlen - *cursor)
			return err_set(
			        err, -EINVAL,
			        "input \"%s\" needs %lld bytes of binary data, only %zu follow the "
			        "JSON header",
			        model_input_name(m), (long long)n, binlen - *cursor);
		if (borrow && n > 0 && (uintptr_t)(bin + *cursor) % TENSOR_ALIGN == 0)
			rc = tensor_view(out, 4, dim, (float *)(uintptr_t)(bin + *cursor), err);
		else if ((rc = tensor_new_uninit(out, 4, dim, err)) == 0 && n > 0)
			memcpy((*out)->data, bin + *cursor, (size_t)n);
		if (rc < 0)
			return rc;
		*cursor += (size_t)n;
		return 0;
	}
	rc = codec_doc_take_tensor(doc, data, "data", out, err);
	if (rc < 0)
		return rc;
	if ((*out)->count != count) {
		rc = err_set(err, -EINVAL,
		             "input \"%s\": shape needs %zu elements, \"data\" has %zu",
		             model_input_name(m), count, (*out)->count);
		tensor_free(*out);
		*out = NULL;
		return rc;
	}
	rc = tensor_reshape(*out, 4, dim, err);
	if (rc < 0) {
		tensor_free(*out);
		*out = NULL;
	}
	return rc;
}

static int decode_outputs(json_t *outs, const struct model *m, int *binary, char *err)
{
	static const char *const keys[] = { "name", "parameters", NULL };
	size_t i;

	if (outs == NULL)
		return 0;
	if (!json_is_array(outs))
		return err_set(err, -EINVAL, "\"outputs\" must be an array");
	for (i = 0; i < json_array_size(outs); i++) {
		json_t *o = json_array_get(outs, i), *name = json_object_get(o, "name");
		int rc;

		if (!json_is_object(o))
			return err_set(err, -EINVAL, "each requested output must be an object");
		rc = check_keys(o, keys, "output", err);
		if (rc < 0)
			return rc;
		if (!json_is_string(name) ||
		    strcmp(json_string_value(name), model_output_name(m)) != 0)
			return err_set(err, -EINVAL,
			               "unknown output \"%.64s\": model %s has \"%s\"",
			               json_is_string(name) ? json_string_value(name) : "",
			               model_name(m), model_output_name(m));
		rc = get_bool(json_object_get(o, "parameters"), "binary_data", binary, err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int kserve_decode(const struct model *m, const char *body, size_t len, long long header_len,
                  int borrow, int64_t max_elements, struct kserve_request *req, char *err)
{
	static const char *const keys[] = { "id",         "parameters",    "inputs", "outputs",
		                            "model_name", "model_version", NULL };
	struct codec_doc *doc = NULL;
	size_t jlen = len, cursor = 0;
	json_t *root, *id, *inputs;
	int rc;

	memset(req, 0, sizeof(*req));
	if (header_len == 0)
		return err_set(
		        err, -EINVAL,
		        "Inference-Header-Content-Length 0 (a raw binary body) is not supported: "
		        "send a JSON header giving the input shape");
	if (header_len > 0) {
		if ((unsigned long long)header_len > len)
			return err_set(
			        err, -EINVAL,
			        "Inference-Header-Content-Length %lld exceeds the body length %zu",
			        header_len, len);
		jlen = (size_t)header_len;
	}
	rc = codec_doc_parse(body, jlen, max_elements, &doc, err);
	if (rc < 0)
		return rc;
	root = codec_doc_root(doc);
	rc = check_keys(root, keys, "request", err);
	if (rc < 0)
		goto done;
	id = json_object_get(root, "id");
	if (id != NULL) {
		if (!json_is_string(id) || json_string_length(id) >= KSERVE_ID_MAX) {
			rc = err_set(err, -EINVAL, "\"id\" must be a string of at most %d bytes",
			             KSERVE_ID_MAX - 1);
			goto done;
		}
		snprintf(req->id, sizeof(req->id), "%s", json_string_value(id));
		req->has_id = 1;
	}
	rc = get_bool(json_object_get(root, "parameters"), "binary_data_output",
	              &req->binary_output, err);
	if (rc == 0 && json_is_object(json_object_get(root, "parameters")))
		rc = codec_check_timeout(
		        json_object_get(json_object_get(root, "parameters"), "timeout"),
		        "parameters.timeout", err);
	if (rc == 0)
		rc = decode_outputs(json_object_get(root, "outputs"), m, &req->binary_output, err);
	if (rc < 0)
		goto done;
	inputs = json_object_get(root, "inputs");
	if (!json_is_array(inputs) || json_array_size(inputs) != 1) {
		rc = err_set(err, -EINVAL, "\"inputs\" must be an array of one input (\"%s\")",
		             model_input_name(m));
		goto done;
	}
	rc = decode_input(doc, json_array_get(inputs, 0), m, body + jlen, len - jlen, &cursor,
	                  borrow, max_elements, &req->input, err);
	if (rc == 0 && cursor != len - jlen)
		rc = err_set(err, -EINVAL,
		             "%zu bytes after the JSON header, but the inputs' binary_data_size "
		             "total %zu",
		             len - jlen, cursor);
done:
	codec_doc_free(doc);
	if (rc < 0)
		kserve_request_clear(req);
	return rc;
}

void kserve_request_clear(struct kserve_request *req)
{
	tensor_free(req->input);
	req->input = NULL;
}

void kserve_encode_data(struct buf *data, const struct kserve_request *req,
                        const struct tensor *out, const struct par_runner *runner)
{
	if (!req->binary_output)
		codec_put_numbers(data, out->data, out->count, runner);
}

void kserve_encode(struct buf *b, size_t *json_len, const struct model *m,
                   const struct kserve_request *req, const struct tensor *out, const char *params,
                   const struct buf *data)
{
	size_t start = b->len;

	buf_puts(b, "{\"model_name\":");
	buf_json_string(b, model_name(m));
	buf_puts(b, ",\"model_version\":\"1\"");
	if (req->has_id) {
		buf_puts(b, ",\"id\":");
		buf_json_string(b, req->id);
	}
	buf_printf(b, ",\"parameters\":%s,\"outputs\":[{\"name\":", params);
	buf_json_string(b, model_output_name(m));
	buf_puts(b, ",\"datatype\":\"FP32\",\"shape\":");
	codec_put_shape(b, out);
	if (req->binary_output) {
		buf_printf(b, ",\"parameters\":{\"binary_data_size\":%zu}}]}",
		           out->count * sizeof(float));
		*json_len = b->len - start;
		buf_add(b, out->data, out->count * sizeof(float));
		return;
	}
	buf_puts(b, ",\"data\":");
	buf_add(b, data->data, data->len);
	buf_puts(b, "}]}\n");
	*json_len = b->len - start;
}

void kserve_server_metadata(struct buf *b)
{
	buf_printf(
	        b,
	        "{\"name\":\"atrousd\",\"version\":\"%s\",\"extensions\":[\"binary_tensor_data\","
	        "\"statistics\",\"model_repository\"]}\n",
	        PACKAGE_VERSION);
}

void kserve_model_metadata(struct buf *b, const struct model *m)
{
	buf_puts(b, "{\"name\":");
	buf_json_string(b, model_name(m));
	buf_puts(b, ",\"versions\":[\"1\"],\"platform\":\"atrousd\",\"inputs\":[{\"name\":");
	buf_json_string(b, model_input_name(m));
	buf_printf(b,
	           model_nchw(m) ? ",\"datatype\":\"FP32\",\"shape\":[-1,%lld,-1,-1]}],\"outputs\":"
	                           "[{\"name\":"
	                         : ",\"datatype\":\"FP32\",\"shape\":[-1,-1,-1,%lld]}],\"outputs\":"
	                           "[{\"name\":",
	           (long long)model_in_channels(m));
	buf_json_string(b, model_output_name(m));
	buf_printf(b,
	           model_nchw(m) ? ",\"datatype\":\"FP32\",\"shape\":[-1,%lld,-1,-1]}]}\n"
	                         : ",\"datatype\":\"FP32\",\"shape\":[-1,-1,-1,%lld]}]}\n",
	           (long long)model_out_channels(m));
}

static void put_stat(struct buf *b, const char *name, const struct model_stat *s, int comma)
{
	buf_printf(b, "%s\"%s\":{\"count\":%llu,\"ns\":%llu}", comma ? "," : "", name,
	           (unsigned long long)s->count, (unsigned long long)s->ns);
}

void kserve_model_stat(struct buf *b, struct model *m)
{
	struct model_stats st;
	struct model_stat zero = { 0, 0 };

	model_stats_read(m, &st);
	buf_puts(b, "{\"name\":");
	buf_json_string(b, model_name(m));
	buf_printf(b,
	           ",\"version\":\"1\",\"last_inference\":%llu,\"inference_count\":%llu,"
	           "\"execution_count\":%llu,\"inference_stats\":{",
	           (unsigned long long)st.last_inference_ms, (unsigned long long)st.inference_count,
	           (unsigned long long)st.execution_count);
	put_stat(b, "success", &st.success, 0);
	put_stat(b, "fail", &st.fail, 1);
	put_stat(b, "queue", &st.queue, 1);
	put_stat(b, "compute_input", &st.compute_input, 1);
	put_stat(b, "compute_infer", &st.compute_infer, 1);
	put_stat(b, "compute_output", &st.compute_output, 1);
	put_stat(b, "cache_hit", &zero, 1);
	put_stat(b, "cache_miss", &zero, 1);
	buf_puts(b, "},\"batch_stats\":[]}");
}
