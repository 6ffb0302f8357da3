/* SPDX-License-Identifier: MIT */
/* fuzz_kserve.c - libFuzzer target: KServe v2 infer bodies, JSON and binary.
 * The first two bytes choose Inference-Header-Content-Length (0xffff: no
 * header); the rest is the body, decoded for a small fixed model. */
#include "autoconfig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
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
	char err[ERR_LEN];
	long long header;

	if (m == NULL &&
	    model_load_body("fuzz", model_json, sizeof(model_json) - 1, 0, &m, err) < 0)
		abort(); /* the fixed model is valid */
	if (size < 2)
		return 0;
	header = data[0] << 8 | data[1];
	if (header == 0xffff)
		header = -1;
	if (kserve_decode(m, (const char *)data + 2, size - 2, header, 0, 1 << 16, &req, err) == 0)
		kserve_request_clear(&req);
	return 0;
}
