/* SPDX-License-Identifier: MIT */
/* onnx.h - ONNX models into atrousd graphs: the convolution heads that
 * PyTorch and tf2onnx export (chains of Conv, DeepLab's ASPP) become layers
 * that compute exactly what the ONNX graph defines.
 *
 *	struct onnx_model om;
 *	if (onnx_import(bytes, len, max_elements, &om, err) < 0) ...;  // names the node
 *	... om.graph (NHWC inside; the model's edges are NCHW), om.input, om.output
 *	onnx_model_clear(&om);
 *
 * Understood: Conv (stride 1, group 1, any dilations, pads that equal
 * TensorFlow's SAME or VALID, auto_pad SAME_UPPER or VALID), a following
 * BatchNormalization (folded in double precision), Relu, Identity, Dropout;
 * GlobalAveragePool or ReduceMean over H and W, Conv, Relu and a Resize or
 * Expand back to the input's size (the image-pooling branch), Concat on
 * channels, and the integer Shape arithmetic that sizes the Resize.
 * Anything else is refused with the node's name and the reason.
 */
#ifndef ATROUSD_ONNX_H
#define ATROUSD_ONNX_H

#include <stddef.h>
#include <stdint.h>

#include "graph.h"

/* Largest ONNX file read. */
#define ONNX_MAX_BYTES ((size_t)1 << 30)
/* Most nodes in a graph, and deepest nesting of messages in the file. */
#define ONNX_MAX_NODES 4096
#define ONNX_MAX_DEPTH 32
/* Longest input or output name kept. */
#define ONNX_NAME_MAX 63

struct onnx_model {
	struct graph *graph; /* owned */
	char input[ONNX_NAME_MAX + 1], output[ONNX_NAME_MAX + 1];
	int64_t in_channels;
	char producer[64]; /* producer_name and version, for the log */
};

/* Import an ONNX model; initializers above max_elements (0: no limit beyond
 * TENSOR_MAX_ELEMENTS) are -E2BIG.  0 or -errno with a message naming the
 * node and the reason. */
int onnx_import(const void *data, size_t len, int64_t max_elements, struct onnx_model *out,
                char *err);

/* Free what onnx_import built. */
void onnx_model_clear(struct onnx_model *m);

#endif
