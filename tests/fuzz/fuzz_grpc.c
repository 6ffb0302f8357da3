/* SPDX-License-Identifier: MIT */
/* fuzz_grpc.c - libFuzzer target: gRPC request messages.  The first byte
 * chooses the method; the rest is its protobuf message, translated to a REST
 * request (grpc_decode) and, for ModelInfer, decoded on for a small model as
 * the daemon would. */
#include "autoconfig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "grpc.h"
#include "kserve.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char model_json[] =
        "{\"input\":{\"name\":\"input\",\"channels\":2},\"output\":{\"name\":\"output\"},"
        "\"layers\":[{\"filters\":{\"shape\":[1,1,2,1],\"data\":[1,2]},\"rate\":1,\"padding\":"
        "\"SAME\"}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct model *m;
	struct kserve_request req;
	struct grpc_call c;
	char err[ERR_LEN], service[64];
	int method;

	if (m == NULL &&
	    model_load_body("fuzz", model_json, sizeof(model_json) - 1, 0, &m, err) < 0)
		abort(); /* the fixed model is valid */
	if (size < 1)
		return 0;
	method = data[0] % GRPC_METHOD_COUNT;
	if (method == GRPC_HEALTH_CHECK) {
		grpc_health_service(data + 1, size - 1, service, sizeof(service), err);
		return 0;
	}
	if (grpc_decode((enum grpc_method)method, data + 1, size - 1, &c, err) == GRPC_OK &&
	    method == GRPC_MODEL_INFER &&
	    kserve_decode(m, c.body.data ? c.body.data : "", c.body.len, c.header_len, 0, 1 << 16,
	                  &req, err) == 0)
		kserve_request_clear(&req);
	grpc_call_clear(&c);
	return 0;
}
