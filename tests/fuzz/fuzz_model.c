/* SPDX-License-Identifier: MIT */
/* fuzz_model.c - libFuzzer target: model.json uploads (inline tensors) and
 * .npy images, as the model directory and the admin API load them.  Odd
 * first bytes go to the npy reader, even ones to the model loader. */
#include "autoconfig.h"

#include <stdint.h>
#include <stdlib.h>

#include "error.h"
#include "model.h"
#include "npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tensor *t = NULL;
	struct model *m = NULL;
	char err[ERR_LEN];

	if (size < 1)
		return 0;
	if (data[0] & 1) {
		if (npy_parse(data + 1, size - 1, &t, err) == 0)
			tensor_free(t);
		return 0;
	}
	if (model_load_body("fuzz", (const char *)data + 1, size - 1, 1 << 16, &m, err) == 0)
		model_unref(m);
	return 0;
}
