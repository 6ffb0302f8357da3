/* SPDX-License-Identifier: MIT */
/* fuzz_tensor_json.c - libFuzzer target: a native request body through the
 * codec and the layer parser, as /v1/atrous_conv2d, /v1/aspp and
 * /v1/sequential decode it.  Any input must be refused cleanly or accepted. */
#include "autoconfig.h"

#include <stdint.h>
#include <stdlib.h>

#include "codec.h"
#include "error.h"
#include "graphjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int take(void *ctx, json_t *v, const char *field, struct tensor **out, char *err)
{
	return codec_doc_take_tensor(ctx, v, field, out, err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const types[] = { "atrous_conv2d", "aspp" };
	struct codec_doc *doc = NULL;
	struct tensor *value = NULL;
	struct graph *g = NULL;
	char err[ERR_LEN];
	int64_t odim[4];
	json_t *root;

	if (codec_doc_parse((const char *)data, size, 1 << 16, &doc, err) < 0)
		return 0;
	root = codec_doc_root(doc);
	if (json_object_get(root, "layers") != NULL)
		graphjson_layers(&g, json_object_get(root, "layers"), take, doc, err);
	else
		graphjson_layer(&g, root, types[size % 2], take, doc, err);
	if (codec_doc_take_tensor(doc, json_object_get(root, "value"), "value", &value, err) == 0 &&
	    g != NULL && value->rank == 4)
		graph_output_shape(g, value->dim, 1 << 16, odim, err);
	tensor_free(value);
	graph_free(g);
	codec_doc_free(doc);
	return 0;
}
