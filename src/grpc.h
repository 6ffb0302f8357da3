/* SPDX-License-Identifier: MIT */
/* grpc.h - the KServe v2 gRPC service as a translation of the REST one: a
 * call's protobuf request becomes the route and body the HTTP endpoints
 * take (api.c), and their reply becomes the call's protobuf response, so
 * both protocols share one implementation of every endpoint.
 *
 *	struct grpc_call c;
 *	int code = grpc_decode(GRPC_MODEL_INFER, msg, len, &c, err);   // GRPC_OK?
 *	... api_run(api, &(struct api_request){ &c.route, c.body.data, ... }, &reply);
 *	code = grpc_encode(GRPC_MODEL_INFER, &reply, &out, err);        // packed message
 *	grpc_call_clear(&c);
 *
 * Tensors travel as the binary extension of the REST protocol: the inputs'
 * bytes (raw_input_contents, or fp32_contents) follow a small JSON header,
 * and the output's bytes become raw_output_contents, copied once each way.
 */
#ifndef ATROUSD_GRPC_H
#define ATROUSD_GRPC_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "reply.h"
#include "route.h"

/* The calls served. */
enum grpc_method {
	GRPC_SERVER_LIVE,
	GRPC_SERVER_READY,
	GRPC_MODEL_READY,
	GRPC_SERVER_METADATA,
	GRPC_MODEL_METADATA,
	GRPC_MODEL_INFER,
	GRPC_MODEL_STATISTICS,
	GRPC_REPOSITORY_INDEX,
	GRPC_REPOSITORY_MODEL_LOAD,
	GRPC_REPOSITORY_MODEL_UNLOAD,
	GRPC_HEALTH_CHECK,
	GRPC_METHOD_COUNT
};

/* gRPC status codes (the protocol's numbers). */
enum grpc_code {
	GRPC_OK = 0,
	GRPC_CANCELLED = 1,
	GRPC_UNKNOWN = 2,
	GRPC_INVALID_ARGUMENT = 3,
	GRPC_DEADLINE_EXCEEDED = 4,
	GRPC_NOT_FOUND = 5,
	GRPC_ALREADY_EXISTS = 6,
	GRPC_PERMISSION_DENIED = 7,
	GRPC_RESOURCE_EXHAUSTED = 8,
	GRPC_FAILED_PRECONDITION = 9,
	GRPC_ABORTED = 10,
	GRPC_OUT_OF_RANGE = 11,
	GRPC_UNIMPLEMENTED = 12,
	GRPC_INTERNAL = 13,
	GRPC_UNAVAILABLE = 14,
	GRPC_DATA_LOSS = 15,
	GRPC_UNAUTHENTICATED = 16,
	GRPC_CODE_COUNT
};

/* The method of an HTTP/2 :path ("/inference.GRPCInferenceService/ModelInfer"),
 * or -1. */
int grpc_method_of(const char *path);

/* "ModelInfer", ... */
const char *grpc_method_name(enum grpc_method m);

/* "OK", "NOT_FOUND", ... */
const char *grpc_code_name(int code);

/* The gRPC code of a REST status, as Triton maps its errors. */
int grpc_code_of_status(int status);

/* A call translated for the REST endpoints. */
struct grpc_call {
	struct route route;
	struct buf body;      /* the REST body: JSON, or a JSON header and tensor bytes */
	long long header_len; /* that header's length, -1 for a JSON body */
	uint64_t timeout_us;  /* the request's own "timeout" parameter, 0: none */
};

/* Decode one request message of method m into c (which it owns until
 * grpc_call_clear); GRPC_OK, or a code with err set. */
int grpc_decode(enum grpc_method m, const void *msg, size_t len, struct grpc_call *c, char *err);

/* Encode the REST reply r to method m's response message, appended to out;
 * GRPC_OK, or the call's error code with err set (r's "error" text). */
int grpc_encode(enum grpc_method m, const struct reply *r, struct buf *out, char *err);

/* A grpc.health.v1 HealthCheckResponse for a service name; GRPC_OK, or
 * GRPC_NOT_FOUND for a service not served. */
int grpc_health(const char *service, int ready, struct buf *out, char *err);

/* Decode a HealthCheckRequest's service name (at most len - 1 bytes). */
int grpc_health_service(const void *msg, size_t len, char *service, size_t size, char *err);

void grpc_call_clear(struct grpc_call *c);

#endif
