/* SPDX-License-Identifier: MIT */
/* grpc.c - KServe v2 gRPC messages to REST requests and REST replies back. */
#include "autoconfig.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "error.h"
#include "grpc.h"
#include "health.pb-c.h"
#include "kserve_grpc.pb-c.h"

#define SERVICE "/inference.GRPCInferenceService/"

static const char *const method_names[GRPC_METHOD_COUNT] = {
	[GRPC_SERVER_LIVE] = "ServerLive",
	[GRPC_SERVER_READY] = "ServerReady",
	[GRPC_MODEL_READY] = "ModelReady",
	[GRPC_SERVER_METADATA] = "ServerMetadata",
	[GRPC_MODEL_METADATA] = "ModelMetadata",
	[GRPC_MODEL_INFER] = "ModelInfer",
	[GRPC_MODEL_STATISTICS] = "ModelStatistics",
	[GRPC_REPOSITORY_INDEX] = "RepositoryIndex",
	[GRPC_REPOSITORY_MODEL_LOAD] = "RepositoryModelLoad",
	[GRPC_REPOSITORY_MODEL_UNLOAD] = "RepositoryModelUnload",
	[GRPC_HEALTH_CHECK] = "Check",
};

int grpc_method_of(const char *path)
{
	int m;

	if (strcmp(path, "/grpc.health.v1.Health/Check") == 0)
		return GRPC_HEALTH_CHECK;
	if (strncmp(path, SERVICE, strlen(SERVICE)) != 0)
		return -1;
	for (m = 0; m < GRPC_HEALTH_CHECK; m++)
		if (strcmp(path + strlen(SERVICE), method_names[m]) == 0)
			return m;
	return -1;
}

const char *grpc_method_name(enum grpc_method m)
{
	return (unsigned)m < GRPC_METHOD_COUNT ? method_names[m] : "unknown";
}

const char *grpc_code_name(int code)
{
	static const char *const names[GRPC_CODE_COUNT] = {
		"OK",
		"CANCELLED",
		"UNKNOWN",
		"INVALID_ARGUMENT",
		"DEADLINE_EXCEEDED",
		"NOT_FOUND",
		"ALREADY_EXISTS",
		"PERMISSION_DENIED",
		"RESOURCE_EXHAUSTED",
		"FAILED_PRECONDITION",
		"ABORTED",
		"OUT_OF_RANGE",
		"UNIMPLEMENTED",
		"INTERNAL",
		"UNAVAILABLE",
		"DATA_LOSS",
		"UNAUTHENTICATED",
	};

	return code >= 0 && code < GRPC_CODE_COUNT ? names[code] : "UNKNOWN";
}

int grpc_code_of_status(int status)
{
	switch (status) {
	case 200:
	case 201: return GRPC_OK;
	case 401: return GRPC_UNAUTHENTICATED;
	case 403: return GRPC_PERMISSION_DENIED;
	case 404: return GRPC_NOT_FOUND;
	case 409: return GRPC_FAILED_PRECONDITION;
	case 413: return GRPC_RESOURCE_EXHAUSTED;
	case 503: return GRPC_UNAVAILABLE;
	case 504: return GRPC_DEADLINE_EXCEEDED;
	default: return status >= 400 && status < 500 ? GRPC_INVALID_ARGUMENT : GRPC_INTERNAL;
	}
}

void grpc_call_clear(struct grpc_call *c)
{
	buf_free(&c->body);
	memset(c, 0, sizeof(*c));
}

/* The route of an endpoint; admin calls and computations run on a worker. */
static void set_route(struct grpc_call *c, enum endpoint ep, const char *model)
{
	c->route.ep = ep;
	c->route.admin = ep == EP_REPO_INDEX || ep == EP_REPO_LOAD || ep == EP_REPO_UNLOAD;
	c->route.compute = c->route.admin || ep == EP_INFER;
	snprintf(c->route.model, sizeof(c->route.model), "%s", model ? model : "");
	c->header_len = -1;
}

/* A model name from a request, and its version ("" or "1"). */
static int model_of(struct grpc_call *c, enum endpoint ep, const char *name, const char *version,
                    char *err)
{
	if (name == NULL || name[0] == '\0')
		return err_set(err, GRPC_INVALID_ARGUMENT, "a model name is required");
	if (!model_name_ok(name))
		return err_set(err, GRPC_INVALID_ARGUMENT, "bad model name \"%.64s\"", name);
	if (version != NULL && version[0] != '\0' && strcmp(version, "1") != 0)
		return err_set(err, GRPC_NOT_FOUND, "model \"%s\" has no version \"%.16s\"", name,
		               version);
	set_route(c, ep, name);
	return GRPC_OK;
}

static int bad_message(const char *what, char *err)
{
	return err_set(err, GRPC_INVALID_ARGUMENT, "malformed %s message", what);
}

/* An InferParameter as JSON (NULL for an empty one). */
static json_t *param_json(const Inference__InferParameter *p)
{
	switch (p ? p->parameter_choice_case : 0) {
	case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_BOOL_PARAM:
		return json_boolean(p->bool_param);
	case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM:
		return json_integer(p->int64_param);
	case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_UINT64_PARAM:
		return p->uint64_param > (uint64_t)INT64_MAX
		               ? json_real((double)p->uint64_param)
		               : json_integer((json_int_t)p->uint64_param);
	case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_DOUBLE_PARAM:
		return json_real(p->double_param);
	case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM:
		return json_string(p->string_param);
	default: return NULL;
	}
}

/* The bytes of input i: raw_input_contents, or its typed FP32 values. */
static int input_bytes(const Inference__ModelInferRequest *rq, size_t i, const void **data,
                       size_t *len, char *err)
{
	const Inference__InferTensorContents *ct = rq->inputs[i]->contents;

	if (rq->n_raw_input_contents > 0) {
		if (rq->n_raw_input_contents != rq->n_inputs)
			return err_set(err, GRPC_INVALID_ARGUMENT,
			               "%zu raw_input_contents for %zu inputs: give one per input",
			               rq->n_raw_input_contents, rq->n_inputs);
		if (ct != NULL)
			return err_set(err, GRPC_INVALID_ARGUMENT,
			               "input \"%.64s\": contents and raw_input_contents together",
			               rq->inputs[i]->name);
		*data = rq->raw_input_contents[i].data;
		*len = rq->raw_input_contents[i].len;
		return GRPC_OK;
	}
	if (ct != NULL && (ct->n_bool_contents || ct->n_int_contents || ct->n_int64_contents ||
	                   ct->n_uint_contents || ct->n_uint64_contents || ct->n_fp64_contents ||
	                   ct->n_bytes_contents))
		return err_set(err, GRPC_INVALID_ARGUMENT,
		               "input \"%.64s\": only fp32_contents (FP32) are accepted",
		               rq->inputs[i]->name);
	*data = ct ? ct->fp32_contents : NULL;
	*len = ct ? ct->n_fp32_contents * sizeof(float) : 0;
	return GRPC_OK;
}

/* The JSON header and the inputs' bytes of the REST binary extension. */
static int infer_body(struct grpc_call *c, const Inference__ModelInferRequest *rq, char *err)
{
	json_t *root = json_object(), *params = json_object(), *inputs = json_array(), *v;
	char *head = NULL;
	size_t i, j, total = 0;
	int code = GRPC_OK;

	if (root == NULL || params == NULL || inputs == NULL) {
		code = err_set(err, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto done;
	}
	if (rq->id[0] != '\0')
		json_object_set_new(root, "id", json_string(rq->id));
	for (i = 0; i < rq->n_parameters; i++) {
		const char *key = rq->parameters[i]->key;

		/* Outputs are always raw bytes; priority and the like are ignored. */
		if (strcmp(key, "timeout") != 0)
			continue;
		v = param_json(rq->parameters[i]->value);
		if (json_is_integer(v) && json_integer_value(v) >= 0)
			c->timeout_us = (uint64_t)json_integer_value(v);
		json_object_set_new(params, key, v ? v : json_null());
	}
	json_object_set_new(params, "binary_data_output", json_true());
	json_object_set(root, "parameters", params);
	for (i = 0; i < rq->n_inputs; i++) {
		const Inference__ModelInferRequest__InferInputTensor *in = rq->inputs[i];
		json_t *t = json_object(), *shape = json_array(), *p = json_object();
		const void *data;
		size_t len;

		code = input_bytes(rq, i, &data, &len, err);
		if (code != GRPC_OK || t == NULL || shape == NULL || p == NULL) {
			json_decref(t);
			json_decref(shape);
			json_decref(p);
			if (code == GRPC_OK)
				code = err_set(err, GRPC_RESOURCE_EXHAUSTED, "out of memory");
			goto done;
		}
		for (j = 0; j < in->n_shape; j++)
			json_array_append_new(shape, json_integer(in->shape[j]));
		json_object_set_new(t, "name", json_string(in->name));
		json_object_set_new(t, "shape", shape);
		json_object_set_new(t, "datatype", json_string(in->datatype));
		json_object_set_new(p, "binary_data_size", json_integer((json_int_t)len));
		json_object_set_new(t, "parameters", p);
		json_array_append_new(inputs, t);
		total += len;
	}
	json_object_set(root, "inputs", inputs);
	if (rq->n_outputs > 0) {
		json_t *outs = json_array();

		for (i = 0; outs != NULL && i < rq->n_outputs; i++) {
			json_t *o = json_pack("{s:s}", "name", rq->outputs[i]->name);

			if (o != NULL)
				json_array_append_new(outs, o);
		}
		json_object_set_new(root, "outputs", outs);
	}
	head = json_dumps(root, JSON_COMPACT);
	if (head == NULL) {
		code = err_set(err, GRPC_INVALID_ARGUMENT,
		               "the request's names are not valid UTF-8 text");
		goto done;
	}
	buf_reserve(&c->body, strlen(head) + total);
	buf_puts(&c->body, head);
	c->header_len = (long long)strlen(head);
	for (i = 0; i < rq->n_inputs; i++) {
		const void *data;
		size_t len;

		input_bytes(rq, i, &data, &len, err);
		if (len > 0)
			buf_add(&c->body, data, len);
	}
	if (buf_ok(&c->body) < 0)
		code = err_set(err, GRPC_RESOURCE_EXHAUSTED, "out of memory");
done:
	free(head);
	json_decref(inputs);
	json_decref(params);
	json_decref(root);
	return code;
}

/* {"parameters": {...}} of a repository call: strings as they are, bytes of
 * "file:" keys as base64 (the REST form), other bytes as text. */
static int repo_body(struct grpc_call *c,
                     Inference__RepositoryModelLoadRequest__ParametersEntry **ps, size_t n,
                     char *err)
{
	json_t *root = json_object(), *params = json_object();
	char *text;
	size_t i;
	int code = GRPC_OK;

	for (i = 0; root && params && i < n; i++) {
		const Inference__ModelRepositoryParameter *p = ps[i]->value;
		json_t *v = NULL;
		struct buf b64 = { 0 };

		switch (p ? p->parameter_choice_case : 0) {
		case INFERENCE__MODEL_REPOSITORY_PARAMETER__PARAMETER_CHOICE_BOOL_PARAM:
			v = json_boolean(p->bool_param);
			break;
		case INFERENCE__MODEL_REPOSITORY_PARAMETER__PARAMETER_CHOICE_INT64_PARAM:
			v = json_integer(p->int64_param);
			break;
		case INFERENCE__MODEL_REPOSITORY_PARAMETER__PARAMETER_CHOICE_STRING_PARAM:
			v = json_string(p->string_param);
			break;
		case INFERENCE__MODEL_REPOSITORY_PARAMETER__PARAMETER_CHOICE_BYTES_PARAM:
			if (strncmp(ps[i]->key, "file:", 5) == 0) {
				codec_put_base64(&b64, p->bytes_param.data, p->bytes_param.len);
				v = buf_ok(&b64) == 0
				            ? json_stringn(b64.data ? b64.data : "", b64.len)
				            : NULL;
				buf_free(&b64);
			} else {
				v = json_stringn((const char *)p->bytes_param.data,
				                 p->bytes_param.len);
			}
			break;
		default: v = json_null(); break;
		}
		if (v == NULL) {
			code = err_set(err, GRPC_INVALID_ARGUMENT,
			               "parameter \"%.64s\" is not valid UTF-8 text", ps[i]->key);
			break;
		}
		json_object_set_new(params, ps[i]->key, v);
	}
	if (code == GRPC_OK && (root == NULL || params == NULL))
		code = err_set(err, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	if (code == GRPC_OK && n > 0)
		json_object_set(root, "parameters", params);
	text = code == GRPC_OK ? json_dumps(root, JSON_COMPACT) : NULL;
	if (code == GRPC_OK && text == NULL)
		code = err_set(err, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	if (text != NULL)
		buf_puts(&c->body, text);
	free(text);
	json_decref(params);
	json_decref(root);
	return code;
}

int grpc_decode(enum grpc_method m, const void *msg, size_t len, struct grpc_call *c, char *err)
{
	const uint8_t *data = msg;
	int code = GRPC_OK;

	memset(c, 0, sizeof(*c));
	c->header_len = -1;
	switch (m) {
	case GRPC_SERVER_LIVE:
	case GRPC_SERVER_READY:
	case GRPC_SERVER_METADATA: {
		/* Empty messages: unknown fields are skipped, as protobuf does. */
		ProtobufCMessage *e = protobuf_c_message_unpack(
		        m == GRPC_SERVER_LIVE    ? &inference__server_live_request__descriptor
		        : m == GRPC_SERVER_READY ? &inference__server_ready_request__descriptor
		                                 : &inference__server_metadata_request__descriptor,
		        NULL, len, data);

		if (e == NULL)
			return bad_message(method_names[m], err);
		protobuf_c_message_free_unpacked(e, NULL);
		set_route(c,
		          m == GRPC_SERVER_LIVE    ? EP_LIVE
		          : m == GRPC_SERVER_READY ? EP_READY
		                                   : EP_SERVER_META,
		          NULL);
		return GRPC_OK;
	}
	case GRPC_MODEL_READY: {
		Inference__ModelReadyRequest *r =
		        inference__model_ready_request__unpack(NULL, len, data);

		if (r == NULL)
			return bad_message("ModelReadyRequest", err);
		code = model_of(c, EP_MODEL_READY, r->name, r->version, err);
		if (code == GRPC_NOT_FOUND) { /* another version: not ready */
			set_route(c, EP_MODEL_READY, "");
			code = GRPC_OK;
		}
		inference__model_ready_request__free_unpacked(r, NULL);
		return code;
	}
	case GRPC_MODEL_METADATA: {
		Inference__ModelMetadataRequest *r =
		        inference__model_metadata_request__unpack(NULL, len, data);

		if (r == NULL)
			return bad_message("ModelMetadataRequest", err);
		code = model_of(c, EP_MODEL_META, r->name, r->version, err);
		inference__model_metadata_request__free_unpacked(r, NULL);
		return code;
	}
	case GRPC_MODEL_STATISTICS: {
		Inference__ModelStatisticsRequest *r =
		        inference__model_statistics_request__unpack(NULL, len, data);

		if (r == NULL)
			return bad_message("ModelStatisticsRequest", err);
		if (r->name[0] == '\0')
			set_route(c, EP_STATS_ALL, NULL);
		else
			code = model_of(c, EP_MODEL_STATS, r->name, r->version, err);
		inference__model_statistics_request__free_unpacked(r, NULL);
		return code;
	}
	case GRPC_MODEL_INFER: {
		Inference__ModelInferRequest *r =
		        inference__model_infer_request__unpack(NULL, len, data);

		if (r == NULL)
			return bad_message("ModelInferRequest", err);
		code = model_of(c, EP_INFER, r->model_name, r->model_version, err);
		if (code == GRPC_OK)
			code = infer_body(c, r, err);
		inference__model_infer_request__free_unpacked(r, NULL);
		return code;
	}
	case GRPC_REPOSITORY_INDEX: {
		Inference__RepositoryIndexRequest *r =
		        inference__repository_index_request__unpack(NULL, len, data);

		if (r == NULL)
			return bad_message("RepositoryIndexRequest", err);
		set_route(c, EP_REPO_INDEX, NULL);
		buf_puts(&c->body, r->ready ? "{\"ready\":true}" : "{}");
		inference__repository_index_request__free_unpacked(r, NULL);
		return buf_ok(&c->body) == 0
		               ? GRPC_OK
		               : err_set(err, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	case GRPC_REPOSITORY_MODEL_LOAD: {
		Inference__RepositoryModelLoadRequest *r =
		        inference__repository_model_load_request__unpack(NULL, len, data);

		if (r == NULL)
			return bad_message("RepositoryModelLoadRequest", err);
		code = model_of(c, EP_REPO_LOAD, r->model_name, NULL, err);
		if (code == GRPC_OK)
			code = repo_body(c, r->parameters, r->n_parameters, err);
		inference__repository_model_load_request__free_unpacked(r, NULL);
		return code;
	}
	case GRPC_REPOSITORY_MODEL_UNLOAD: {
		Inference__RepositoryModelUnloadRequest *r =
		        inference__repository_model_unload_request__unpack(NULL, len, data);

		if (r == NULL)
			return bad_message("RepositoryModelUnloadRequest", err);
		code = model_of(c, EP_REPO_UNLOAD, r->model_name, NULL, err);
		/* The entries have the load request's layout (key, parameter). */
		if (code == GRPC_OK)
			code = repo_body(c,
			                 (Inference__RepositoryModelLoadRequest__ParametersEntry **)
			                         r->parameters,
			                 r->n_parameters, err);
		inference__repository_model_unload_request__free_unpacked(r, NULL);
		return code;
	}
	default:
		return err_set(err, GRPC_UNIMPLEMENTED, "method %s is not served here",
		               grpc_method_name(m));
	}
}

/* Pack msg into out. */
static int pack(const ProtobufCMessage *msg, struct buf *out, char *err)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	uint8_t *dst = (uint8_t *)buf_reserve(out, n);

	if (dst == NULL)
		return err_set(err, GRPC_RESOURCE_EXHAUSTED, "out of memory for the response");
	out->len += protobuf_c_message_pack(msg, dst);
	return GRPC_OK;
}

static const char *str_of(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

static uint64_t u64_of(json_t *o, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(o, key));

	return v > 0 ? (uint64_t)v : 0;
}

/* ModelMetadataResponse.TensorMetadata entries from a JSON array. */
static Inference__ModelMetadataResponse__TensorMetadata **tensors_meta(json_t *arr, size_t *n)
{
	Inference__ModelMetadataResponse__TensorMetadata **t;
	size_t i, j;

	*n = json_array_size(arr);
	t = calloc(*n ? *n : 1, sizeof(*t));
	for (i = 0; t != NULL && i < *n; i++) {
		json_t *o = json_array_get(arr, i), *shape = json_object_get(o, "shape");

		t[i] = calloc(1, sizeof(**t));
		if (t[i] == NULL)
			continue;
		inference__model_metadata_response__tensor_metadata__init(t[i]);
		t[i]->name = (char *)str_of(o, "name");
		t[i]->datatype = (char *)str_of(o, "datatype");
		t[i]->n_shape = json_array_size(shape);
		t[i]->shape = calloc(t[i]->n_shape ? t[i]->n_shape : 1, sizeof(int64_t));
		for (j = 0; t[i]->shape != NULL && j < t[i]->n_shape; j++)
			t[i]->shape[j] = json_integer_value(json_array_get(shape, j));
		if (t[i]->shape == NULL)
			t[i]->n_shape = 0;
	}
	return t;
}

static void tensors_meta_free(Inference__ModelMetadataResponse__TensorMetadata **t, size_t n)
{
	size_t i;

	for (i = 0; t != NULL && i < n; i++)
		if (t[i] != NULL) {
			free(t[i]->shape);
			free(t[i]);
		}
	free(t);
}

static int encode_model_metadata(json_t *o, struct buf *out, char *err)
{
	Inference__ModelMetadataResponse r = INFERENCE__MODEL_METADATA_RESPONSE__INIT;
	json_t *versions = json_object_get(o, "versions");
	char *vs[8];
	size_t i;
	int code;

	r.name = (char *)str_of(o, "name");
	r.platform = (char *)str_of(o, "platform");
	for (i = 0; i < json_array_size(versions) && i < 8; i++)
		vs[i] = (char *)json_string_value(json_array_get(versions, i));
	r.n_versions = i;
	r.versions = vs;
	r.inputs = tensors_meta(json_object_get(o, "inputs"), &r.n_inputs);
	r.outputs = tensors_meta(json_object_get(o, "outputs"), &r.n_outputs);
	code = r.inputs && r.outputs ? pack(&r.base, out, err)
	                             : err_set(err, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	tensors_meta_free(r.inputs, r.n_inputs);
	tensors_meta_free(r.outputs, r.n_outputs);
	return code;
}

static void duration_of(json_t *o, const char *key, Inference__StatisticDuration *d)
{
	json_t *s = json_object_get(o, key);

	inference__statistic_duration__init(d);
	d->count = u64_of(s, "count");
	d->ns = u64_of(s, "ns");
}

static int encode_statistics(json_t *o, struct buf *out, char *err)
{
	Inference__ModelStatisticsResponse r = INFERENCE__MODEL_STATISTICS_RESPONSE__INIT;
	json_t *arr = json_object_get(o, "model_stats");
	size_t n = json_array_size(arr), i;
	struct stat_entry {
		Inference__ModelStatistics m;
		Inference__InferStatistics s;
		Inference__StatisticDuration d[6];
	} *e = calloc(n ? n : 1, sizeof(*e));
	Inference__ModelStatistics **ms = calloc(n ? n : 1, sizeof(*ms));
	int code;

	if (e == NULL || ms == NULL) {
		free(e);
		free(ms);
		return err_set(err, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	for (i = 0; i < n; i++) {
		json_t *m = json_array_get(arr, i), *st = json_object_get(m, "inference_stats");

		inference__model_statistics__init(&e[i].m);
		inference__infer_statistics__init(&e[i].s);
		e[i].m.name = (char *)str_of(m, "name");
		e[i].m.version = (char *)str_of(m, "version");
		e[i].m.last_inference = u64_of(m, "last_inference");
		e[i].m.inference_count = u64_of(m, "inference_count");
		e[i].m.execution_count = u64_of(m, "execution_count");
		duration_of(st, "success", &e[i].d[0]);
		duration_of(st, "fail", &e[i].d[1]);
		duration_of(st, "queue", &e[i].d[2]);
		duration_of(st, "compute_input", &e[i].d[3]);
		duration_of(st, "compute_infer", &e[i].d[4]);
		duration_of(st, "compute_output", &e[i].d[5]);
		e[i].s.success = &e[i].d[0];
		e[i].s.fail = &e[i].d[1];
		e[i].s.queue = &e[i].d[2];
		e[i].s.compute_input = &e[i].d[3];
		e[i].s.compute_infer = &e[i].d[4];
		e[i].s.compute_output = &e[i].d[5];
		e[i].m.inference_stats = &e[i].s;
		ms[i] = &e[i].m;
	}
	r.n_model_stats = n;
	r.model_stats = ms;
	code = pack(&r.base, out, err);
	free(ms);
	free(e);
	return code;
}

static int encode_index(json_t *arr, struct buf *out, char *err)
{
	Inference__RepositoryIndexResponse r = INFERENCE__REPOSITORY_INDEX_RESPONSE__INIT;
	size_t n = json_array_size(arr), i;
	Inference__RepositoryIndexResponse__ModelIndex *e = calloc(n ? n : 1, sizeof(*e));
	Inference__RepositoryIndexResponse__ModelIndex **p = calloc(n ? n : 1, sizeof(*p));
	int code;

	if (e == NULL || p == NULL) {
		free(e);
		free(p);
		return err_set(err, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	for (i = 0; i < n; i++) {
		json_t *m = json_array_get(arr, i);

		inference__repository_index_response__model_index__init(&e[i]);
		e[i].name = (char *)str_of(m, "name");
		e[i].version = (char *)str_of(m, "version");
		e[i].state = (char *)str_of(m, "state");
		e[i].reason = (char *)str_of(m, "reason");
		p[i] = &e[i];
	}
	r.n_models = n;
	r.models = p;
	code = pack(&r.base, out, err);
	free(p);
	free(e);
	return code;
}

/* ModelInferResponse from the REST binary reply: the JSON header, then the
 * output's bytes. */
static int encode_infer(const struct reply *rp, struct buf *out, char *err)
{
	Inference__ModelInferResponse r = INFERENCE__MODEL_INFER_RESPONSE__INIT;
	Inference__ModelInferResponse__InferOutputTensor t =
	        INFERENCE__MODEL_INFER_RESPONSE__INFER_OUTPUT_TENSOR__INIT;
	Inference__ModelInferResponse__InferOutputTensor *tp = &t;
	Inference__ModelInferResponse__ParametersEntry pe[8], *pp[8];
	Inference__InferParameter pv[8];
	ProtobufCBinaryData raw;
	size_t hl = (size_t)strtoull(rp->infer_header_len, NULL, 10), i, np = 0;
	json_t *head, *o, *shape, *params, *v;
	const char *key;
	int64_t dims[8];
	int code;

	if (hl == 0 || hl > rp->len)
		return err_set(err, GRPC_INTERNAL, "the inference reply has no binary output");
	head = json_loadb(rp->body, hl, 0, NULL);
	o = json_array_get(json_object_get(head, "outputs"), 0);
	shape = json_object_get(o, "shape");
	if (head == NULL || o == NULL || json_array_size(shape) > 8) {
		json_decref(head);
		return err_set(err, GRPC_INTERNAL, "the inference reply cannot be read");
	}
	r.model_name = (char *)str_of(head, "model_name");
	r.model_version = (char *)str_of(head, "model_version");
	r.id = (char *)str_of(head, "id");
	params = json_object_get(head, "parameters");
	json_object_foreach (params, key, v) {
		if (np == 8 || !json_is_integer(v))
			continue;
		inference__model_infer_response__parameters_entry__init(&pe[np]);
		inference__infer_parameter__init(&pv[np]);
		pv[np].parameter_choice_case =
		        INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM;
		pv[np].int64_param = json_integer_value(v);
		pe[np].key = (char *)key;
		pe[np].value = &pv[np];
		pp[np] = &pe[np];
		np++;
	}
	r.n_parameters = np;
	r.parameters = pp;
	t.name = (char *)str_of(o, "name");
	t.datatype = (char *)str_of(o, "datatype");
	for (i = 0; i < json_array_size(shape); i++)
		dims[i] = json_integer_value(json_array_get(shape, i));
	t.n_shape = json_array_size(shape);
	t.shape = dims;
	r.n_outputs = 1;
	r.outputs = &tp;
	raw.data = (uint8_t *)rp->body + hl;
	raw.len = rp->len - hl;
	r.n_raw_output_contents = 1;
	r.raw_output_contents = &raw;
	code = pack(&r.base, out, err);
	json_decref(head);
	return code;
}

int grpc_encode(enum grpc_method m, const struct reply *r, struct buf *out, char *err)
{
	int code = grpc_code_of_status(r->status);
	json_t *o = NULL;

	if (m == GRPC_MODEL_READY && (r->status == 200 || r->status == 404)) {
		Inference__ModelReadyResponse rr = INFERENCE__MODEL_READY_RESPONSE__INIT;

		rr.ready = r->status == 200;
		return pack(&rr.base, out, err);
	}
	if (m == GRPC_SERVER_READY && (r->status == 200 || r->status == 503)) {
		Inference__ServerReadyResponse rr = INFERENCE__SERVER_READY_RESPONSE__INIT;

		rr.ready = r->status == 200;
		return pack(&rr.base, out, err);
	}
	if (code != GRPC_OK) {
		o = json_loadb(r->body ? r->body : "", r->len, 0, NULL);
		err_set(err, code, "%s",
		        json_string_value(json_object_get(o, "error"))
		                ? json_string_value(json_object_get(o, "error"))
		                : "the request failed");
		json_decref(o);
		return code;
	}
	if (m == GRPC_MODEL_INFER)
		return encode_infer(r, out, err);
	o = json_loadb(r->body ? r->body : "", r->len, 0, NULL);
	switch (m) {
	case GRPC_SERVER_LIVE: {
		Inference__ServerLiveResponse rr = INFERENCE__SERVER_LIVE_RESPONSE__INIT;

		rr.live = 1;
		code = pack(&rr.base, out, err);
		break;
	}
	case GRPC_SERVER_METADATA: {
		Inference__ServerMetadataResponse rr = INFERENCE__SERVER_METADATA_RESPONSE__INIT;
		json_t *ext = json_object_get(o, "extensions");
		char *names[16];
		size_t i;

		rr.name = (char *)str_of(o, "name");
		rr.version = (char *)str_of(o, "version");
		for (i = 0; i < json_array_size(ext) && i < 16; i++)
			names[i] = (char *)json_string_value(json_array_get(ext, i));
		rr.n_extensions = i;
		rr.extensions = names;
		code = pack(&rr.base, out, err);
		break;
	}
	case GRPC_MODEL_METADATA: code = encode_model_metadata(o, out, err); break;
	case GRPC_MODEL_STATISTICS: code = encode_statistics(o, out, err); break;
	case GRPC_REPOSITORY_INDEX: code = encode_index(o, out, err); break;
	case GRPC_REPOSITORY_MODEL_LOAD: {
		Inference__RepositoryModelLoadResponse rr =
		        INFERENCE__REPOSITORY_MODEL_LOAD_RESPONSE__INIT;

		code = pack(&rr.base, out, err);
		break;
	}
	case GRPC_REPOSITORY_MODEL_UNLOAD: {
		Inference__RepositoryModelUnloadResponse rr =
		        INFERENCE__REPOSITORY_MODEL_UNLOAD_RESPONSE__INIT;

		code = pack(&rr.base, out, err);
		break;
	}
	default: code = err_set(err, GRPC_INTERNAL, "no response for %s", grpc_method_name(m));
	}
	json_decref(o);
	return code;
}

int grpc_health_service(const void *msg, size_t len, char *service, size_t size, char *err)
{
	Grpc__Health__V1__HealthCheckRequest *r =
	        grpc__health__v1__health_check_request__unpack(NULL, len, msg);

	if (r == NULL)
		return bad_message("HealthCheckRequest", err);
	snprintf(service, size, "%s", r->service);
	grpc__health__v1__health_check_request__free_unpacked(r, NULL);
	return GRPC_OK;
}

int grpc_health(const char *service, int ready, struct buf *out, char *err)
{
	Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

	if (service[0] != '\0' && strcmp(service, "inference.GRPCInferenceService") != 0)
		return err_set(err, GRPC_NOT_FOUND, "unknown service \"%.64s\"", service);
	r.status = ready ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
	                 : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
	return pack(&r.base, out, err);
}
