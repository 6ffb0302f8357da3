/* SPDX-License-Identifier: MIT */
/* aspp.h - DeepLab atrous spatial pyramid pooling.
 *
 * The output channels are image pooling's (if present) then each branch's in
 * order; image pooling is the spatial mean, a 1x1 convolution (+bias,
 * activation) and a broadcast; an optional 1x1 projection follows the
 * concatenation.  With a projection, the broadcast is never made: image
 * pooling's share of the projection is the same for every pixel, so it is
 * added as a bias of each image.  Branches use SAME padding and write their
 * channel slice of the concatenation directly.  When the input is at least
 * ASPP_FUSION_RATIO times wider than the widest branch, every kernel is odd
 * and no branch runs minimal filtering or the direct kernel, the branches'
 * centre taps run as one GEMM straight from the input (N = sum of the branch
 * outputs), the other taps accumulate, and bias/activation come last.
 */
#ifndef ATROUSD_ASPP_H
#define ATROUSD_ASPP_H

#include <stddef.h>
#include <stdint.h>

#include "layer.h"
#include "par.h"
#include "tensor.h"

/* Fusion threshold: input channels / widest branch's output channels. */
#define ASPP_FUSION_RATIO 4

struct aspp {
	struct conv_layer *branches;
	size_t nbranches;
	struct conv_layer *pool, *proj; /* optional (NULL) */
	struct tensor *center;          /* packed centre taps [C, sum O], or NULL */
	struct tensor *proj_rest;       /* projection rows after pooling's, or NULL */
};

/* Once the layer is set: the projection's rows past image pooling's
 * channels (image pooling then folds into a per-image bias of the
 * projection), and the packed centre taps for fusion (none when a kernel
 * is even or the branches disagree on input channels). */
int aspp_prepare(struct aspp *a, char *err);

/* Channels of the concatenation. */
int64_t aspp_concat_channels(const struct aspp *a);

/* Validate a value shape through the layer; odim gets the output shape;
 * tensors above max_elements are -E2BIG. */
int aspp_output_shape(const struct aspp *a, const int64_t vdim[4], int64_t max_elements,
                      int64_t odim[4], char *err);

/* Run the layer; *out is owned by the caller; FLOPs and the branches'
 * algorithms are added to st. */
int aspp_run(const struct aspp *a, const struct tensor *in, const struct par_runner *runner,
             struct tensor **out, struct graph_stats *st, char *err);

/* Free the layer's weights. */
void aspp_clear(struct aspp *a);

#endif
