/* SPDX-License-Identifier: MIT */
/* kserve.h - the KServe v2 / Open Inference Protocol: infer requests in JSON
 * and with the binary tensor data extension, replies, metadata, statistics.
 *
 * Only FP32 is computed.  Binary request bodies are a JSON header of
 * Inference-Header-Content-Length bytes followed by each input's raw
 * little-endian bytes in input order.
 */
#ifndef ATROUSD_KSERVE_H
#define ATROUSD_KSERVE_H

#include <stddef.h>

#include "buf.h"
#include "par.h"
#include "model.h"
#include "tensor.h"

#define KSERVE_ID_MAX 256

struct kserve_request {
	struct tensor *input; /* owned */
	char id[KSERVE_ID_MAX];
	int has_id;
	int binary_output;
};

/* Decode an infer body for model m.  header_len is the value of
 * Inference-Header-Content-Length, or -1 when the header is absent.  With
 * borrow set, the body outlives req and is readable TENSOR_ALIGN bytes past
 * its end, and a binary input that starts TENSOR_ALIGN-aligned is used in
 * place instead of copied. */
int kserve_decode(const struct model *m, const char *body, size_t len, long long header_len,
                  int borrow, int64_t max_elements, struct kserve_request *req, char *err);

/* Release the request's tensor. */
void kserve_request_clear(struct kserve_request *req);

/* Append the output's data as a JSON array unless the reply is binary. */
void kserve_encode_data(struct buf *data, const struct kserve_request *req,
                        const struct tensor *out, const struct par_runner *runner);

/* Append the infer reply: the JSON header (with params, a JSON object text of
 * timing parameters, and data from kserve_encode_data), then for binary
 * replies the output bytes.  *json_len is the length of the JSON part. */
void kserve_encode(struct buf *b, size_t *json_len, const struct model *m,
                   const struct kserve_request *req, const struct tensor *out, const char *params,
                   const struct buf *data);

/* GET /v2: server metadata. */
void kserve_server_metadata(struct buf *b);

/* GET /v2/models/NAME: model metadata. */
void kserve_model_metadata(struct buf *b, const struct model *m);

/* Append one $model_stat object. */
void kserve_model_stat(struct buf *b, struct model *m);

#endif
