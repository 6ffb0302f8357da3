/* SPDX-License-Identifier: MIT */
/* fuzz_onnx.c - libFuzzer target: ONNX files as `atrous import` and the
 * repository's load read them (hostile input like any request body).  A
 * model that imports is also run once on a small input, so that whatever
 * the importer accepts is a graph the kernels can execute. */
#include "autoconfig.h"

#include <stdint.h>
#include <stdlib.h>

#include "error.h"
#include "graph.h"
#include "onnx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct onnx_model om;
	struct tensor *x = NULL, *y = NULL;
	char err[ERR_LEN];
	int64_t dim[4], odim[4];

	if (onnx_import(data, size, 1 << 16, &om, err) < 0)
		return 0;
	dim[0] = 1;
	dim[1] = 5;
	dim[2] = 4;
	dim[3] = om.in_channels;
	if (graph_output_shape(om.graph, dim, 1 << 16, odim, err) == 0 &&
	    tensor_new(&x, 4, dim, err) == 0 && graph_run(om.graph, x, NULL, &y, NULL, err) == 0)
		tensor_free(y);
	tensor_free(x);
	onnx_model_clear(&om);
	return 0;
}
