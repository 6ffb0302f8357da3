/* SPDX-License-Identifier: MIT */
/* onnx.c - ONNX to graph: each value the graph names is classified as the
 * nodes run (a convolution, a pooled map, its broadcast, a concatenation,
 * integer shape arithmetic), then the chain that ends at the graph's output
 * is read back into layers.  Weights go from ONNX's OIHW to HWIO;
 * BatchNormalization folds into the convolution before it in double
 * precision. */
#include "autoconfig.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "onnx.h"
#include "onnx.pb-c.h"

enum vkind {
	V_NONE,   /* not produced (yet): an error to read */
	V_INPUT,  /* the graph's input, NCHW */
	V_CONST,  /* an initializer or Constant */
	V_CONV,   /* a convolution's output (with BatchNorm and Relu folded in) */
	V_POOL,   /* the spatial mean of src, 1x1 */
	V_BCAST,  /* src (1x1) resized or expanded to the map's size */
	V_CONCAT, /* tensors joined on channels */
	V_INT,    /* integer shape arithmetic (sizes a Resize) */
};

struct value {
	const char *name;
	enum vkind kind;
	int src;    /* V_CONV, V_POOL, V_BCAST: the value read */
	int conv;   /* V_CONV: index into convs */
	int *parts; /* V_CONCAT: the values joined, in order */
	size_t nparts;
	int uses; /* how many node inputs (and graph outputs) read it */
	int owns; /* parts belong to this value (aliases share them) */
	const Onnx__TensorProto *init;
};

struct conv {
	struct conv_layer layer; /* owned until moved into the graph */
	const char *node;
	int bn, relu; /* folded so far */
	int used;     /* moved into the graph */
};

struct importer {
	const Onnx__GraphProto *g;
	const char **reads; /* every name a node or the output reads, sorted */
	size_t nreads;
	int64_t max_elements;
	struct value *v;
	size_t nv, cap;
	struct conv *convs;
	size_t nconvs;
	struct graph_layer *layers; /* in order, input to output */
	size_t nlayers;
	char *err;
};

/* ---------------------------------------------------------------- values */

static int find(const struct importer *im, const char *name)
{
	size_t i;

	for (i = im->nv; i-- > 0;)
		if (strcmp(im->v[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* How often name is read in the whole graph. */
static int reads(const struct importer *im, const char *name)
{
	size_t lo = 0, hi = im->nreads, first;
	int n = 0;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(im->reads[mid], name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (first = lo; first < im->nreads && strcmp(im->reads[first], name) == 0; first++)
		n++;
	return n;
}

static int collect_reads(struct importer *im)
{
	const Onnx__GraphProto *g = im->g;
	size_t i, j, n = g->n_output;

	for (i = 0; i < g->n_node; i++)
		n += g->node[i]->n_input;
	im->reads = calloc(n ? n : 1, sizeof(*im->reads));
	if (im->reads == NULL)
		return err_set(im->err, -ENOMEM, "out of memory");
	for (i = 0; i < g->n_node; i++)
		for (j = 0; j < g->node[i]->n_input; j++)
			im->reads[im->nreads++] = g->node[i]->input[j];
	for (i = 0; i < g->n_output; i++)
		if (g->output[i]->name != NULL)
			im->reads[im->nreads++] = g->output[i]->name;
	qsort(im->reads, im->nreads, sizeof(*im->reads), by_name);
	return 0;
}

/* A new value; a name defined twice is an error (ONNX is single assignment). */
static int add_value(struct importer *im, const char *name, enum vkind kind, int *out)
{
	if (name == NULL || name[0] == '\0') {
		*out = -1; /* an optional output left unnamed */
		return 0;
	}
	if (find(im, name) >= 0)
		return err_set(im->err, -EINVAL, "value \"%.64s\" is defined twice", name);
	if (im->nv == im->cap) {
		size_t cap = im->cap ? 2 * im->cap : 64;
		struct value *nv = realloc(im->v, cap * sizeof(*nv));

		if (nv == NULL)
			return err_set(im->err, -ENOMEM, "out of memory");
		im->v = nv;
		im->cap = cap;
	}
	im->v[im->nv] = (struct value){
		.name = name, .kind = kind, .src = -1, .conv = -1, .uses = reads(im, name)
	};
	*out = (int)im->nv++;
	return 0;
}

/* ---------------------------------------------------------------- attributes */

static const Onnx__AttributeProto *attr(const Onnx__NodeProto *n, const char *name)
{
	size_t i;

	for (i = 0; i < n->n_attribute; i++)
		if (n->attribute[i]->name != NULL && strcmp(n->attribute[i]->name, name) == 0)
			return n->attribute[i];
	return NULL;
}

static int64_t attr_int(const Onnx__NodeProto *n, const char *name, int64_t def)
{
	const Onnx__AttributeProto *a = attr(n, name);

	return a != NULL && a->has_i ? a->i : def;
}

/* An ints attribute of exactly want entries (or absent: def for each). */
static int attr_ints(struct importer *im, const Onnx__NodeProto *n, const char *name, size_t want,
                     int64_t def, int64_t *out)
{
	const Onnx__AttributeProto *a = attr(n, name);
	size_t i;

	if (a == NULL || a->n_ints == 0) {
		for (i = 0; i < want; i++)
			out[i] = def;
		return 0;
	}
	if (a->n_ints != want)
		return err_set(im->err, -EINVAL, "%s has %zu values, expected %zu", name, a->n_ints,
		               want);
	memcpy(out, a->ints, want * sizeof(*out));
	return 0;
}

static const char *attr_str(const Onnx__NodeProto *n, const char *name, char *buf, size_t len)
{
	const Onnx__AttributeProto *a = attr(n, name);
	size_t k;

	if (a == NULL || !a->has_s)
		return NULL;
	k = a->s.len < len ? a->s.len : len - 1;
	memcpy(buf, a->s.data, k);
	buf[k] = '\0';
	return buf;
}

/* ---------------------------------------------------------------- tensors */

static float half_to_float(uint16_t h)
{
	int e = (h >> 10) & 0x1f, m = h & 0x3ff;
	float v = e == 0    ? ldexpf((float)m, -24)
	          : e == 31 ? (m ? NAN : INFINITY)
	                    : ldexpf((float)(m | 0x400), e - 25);

	return (h & 0x8000) ? -v : v;
}

/* Element i of a float16, float32 or float64 initializer (raw_data, or
 * float16's int32_data, float_data, double_data). */
static double element(const Onnx__TensorProto *t, size_t esize, size_t i)
{
	const uint8_t *raw = t->has_raw_data ? t->raw_data.data : NULL;
	uint16_t h;
	float f;
	double d;

	if (esize == 4) {
		if (raw == NULL)
			return t->float_data[i];
		memcpy(&f, raw + 4 * i, 4);
		return f;
	}
	if (esize == 8) {
		if (raw == NULL)
			return t->double_data[i];
		memcpy(&d, raw + 8 * i, 8);
		return d;
	}
	if (raw != NULL)
		memcpy(&h, raw + 2 * i, 2);
	else
		h = (uint16_t)t->int32_data[i];
	return half_to_float(h);
}

/* A float initializer as a new float32 tensor of its own shape. */
static int load_floats(struct importer *im, const Onnx__TensorProto *t, struct tensor **out)
{
	int64_t dim[TENSOR_MAX_RANK];
	size_t count, i, esize;
	const uint8_t *raw = t->has_raw_data ? t->raw_data.data : NULL;
	int rc;

	*out = NULL;
	if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
		return err_set(im->err, -EINVAL,
		               "initializer \"%.64s\" keeps its data in an external file: export "
		               "with the weights inside the model (save_as_external_data=False)",
		               t->name ? t->name : "");
	if (t->n_dims > TENSOR_MAX_RANK)
		return err_set(im->err, -EINVAL, "initializer \"%.64s\" has rank %zu",
		               t->name ? t->name : "", t->n_dims);
	for (i = 0; i < t->n_dims; i++)
		dim[i] = t->dims[i];
	rc = tensor_shape_count((int)t->n_dims, dim, im->max_elements, &count, im->err);
	if (rc < 0) {
		err_prefix(im->err, "initializer \"%.64s\"", t->name ? t->name : "");
		return rc;
	}
	switch (t->data_type) {
	case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: esize = 4; break;
	case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: esize = 2; break;
	case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: esize = 8; break;
	default:
		return err_set(im->err, -EINVAL,
		               "initializer \"%.64s\" has data type %d; weights must be float32, "
		               "float16 or float64",
		               t->name ? t->name : "", (int)t->data_type);
	}
	if (raw != NULL ? t->raw_data.len != count * esize
	                : (esize == 4   ? t->n_float_data
	                   : esize == 8 ? t->n_double_data
	                                : t->n_int32_data) != count)
		return err_set(im->err, -EINVAL,
		               "initializer \"%.64s\": its data does not match its shape (%zu "
		               "elements)",
		               t->name ? t->name : "", count);
	rc = tensor_new_uninit(out, (int)t->n_dims, dim, im->err);
	if (rc < 0)
		return rc;
	for (i = 0; i < count; i++) {
		double d = element(t, esize, i);

		if (!isfinite(d) || fabs(d) > FLT_MAX) {
			tensor_free(*out);
			*out = NULL;
			return err_set(im->err, -ERANGE,
			               "initializer \"%.64s\": element %zu (%g) is not a finite "
			               "float32",
			               t->name ? t->name : "", i, d);
		}
		(*out)->data[i] = (float)d;
	}
	return 0;
}

/* The constant behind a node input, or NULL. */
static const Onnx__TensorProto *constant(const struct importer *im, const char *name)
{
	int i = find(im, name);

	return i >= 0 && im->v[i].kind == V_CONST ? im->v[i].init : NULL;
}

/* ---------------------------------------------------------------- nodes */

#define NODE_ERR(im, n, code, ...)                                                                 \
	(err_set((im)->err, (code), __VA_ARGS__),                                                  \
	 err_prefix((im)->err, "node \"%.64s\" (%s)", (n)->name ? (n)->name : "", (n)->op_type),   \
	 (code))

/* Prefix the message already in im->err with the node; returns rc. */
static int node_prefix(struct importer *im, const Onnx__NodeProto *n, int rc)
{
	err_prefix(im->err, "node \"%.64s\" (%s)", n->name ? n->name : "", n->op_type);
	return rc;
}

/* The tensor value read by input i of node n (not a constant, not integers). */
static int tensor_input(struct importer *im, const Onnx__NodeProto *n, size_t i, int *out)
{
	int k = i < n->n_input ? find(im, n->input[i]) : -1;

	if (k < 0)
		return NODE_ERR(im, n, -EINVAL,
		                "input %zu \"%.64s\" is not defined before the node", i,
		                i < n->n_input ? n->input[i] : "");
	if (im->v[k].kind == V_CONST || im->v[k].kind == V_INT)
		return NODE_ERR(im, n, -EINVAL,
		                "input \"%.64s\" must be a tensor computed by the "
		                "graph, not a constant",
		                n->input[i]);
	*out = k;
	return 0;
}

/* TensorFlow's SAME or VALID from ONNX's auto_pad and pads, for the
 * effective kernel. */
static int conv_padding(struct importer *im, const Onnx__NodeProto *n, const int64_t k[2],
                        const int64_t d[2], enum conv_padding *out)
{
	char ap[32];
	const char *auto_pad = attr_str(n, "auto_pad", ap, sizeof(ap));
	int64_t pads[4], keff[2] = { (k[0] - 1) * d[0] + 1, (k[1] - 1) * d[1] + 1 };
	int rc;

	if (auto_pad != NULL && strcmp(auto_pad, "NOTSET") != 0) {
		if (strcmp(auto_pad, "SAME_UPPER") == 0)
			*out = CONV_SAME;
		else if (strcmp(auto_pad, "VALID") == 0)
			*out = CONV_VALID;
		else
			return NODE_ERR(
			        im, n, -EINVAL,
			        "auto_pad %s is not TensorFlow's SAME (which is SAME_UPPER: "
			        "the odd pixel at the end) nor VALID",
			        auto_pad);
		return 0;
	}
	rc = attr_ints(im, n, "pads", 4, 0, pads);
	if (rc < 0)
		return node_prefix(im, n, rc);
	if (pads[0] == (keff[0] - 1) / 2 && pads[2] == keff[0] - 1 - pads[0] &&
	    pads[1] == (keff[1] - 1) / 2 && pads[3] == keff[1] - 1 - pads[1]) {
		*out = CONV_SAME;
		return 0;
	}
	if (pads[0] == 0 && pads[1] == 0 && pads[2] == 0 && pads[3] == 0) {
		*out = CONV_VALID;
		return 0;
	}
	return NODE_ERR(im, n, -EINVAL,
	                "pads [%lld,%lld,%lld,%lld] are neither TensorFlow's SAME "
	                "[%lld,%lld,%lld,%lld] for the effective kernel %lldx%lld nor VALID",
	                (long long)pads[0], (long long)pads[1], (long long)pads[2],
	                (long long)pads[3], (long long)((keff[0] - 1) / 2),
	                (long long)((keff[1] - 1) / 2),
	                (long long)(keff[0] - 1 - (keff[0] - 1) / 2),
	                (long long)(keff[1] - 1 - (keff[1] - 1) / 2), (long long)keff[0],
	                (long long)keff[1]);
}

/* W [M, C, kh, kw] (OIHW) into a new HWIO tensor. */
static int hwio(struct importer *im, const struct tensor *w, struct tensor **out)
{
	int64_t m = w->dim[0], c = w->dim[1], kh = w->dim[2], kw = w->dim[3], o, i, y, x;
	int64_t dim[4] = { kh, kw, c, m };
	int rc = tensor_new_uninit(out, 4, dim, im->err);

	if (rc < 0)
		return rc;
	for (o = 0; o < m; o++)
		for (i = 0; i < c; i++)
			for (y = 0; y < kh; y++)
				for (x = 0; x < kw; x++)
					(*out)->data[((y * kw + x) * c + i) * m + o] =
					        w->data[((o * c + i) * kh + y) * kw + x];
	return 0;
}

static int node_conv(struct importer *im, const Onnx__NodeProto *n)
{
	const Onnx__TensorProto *wt = n->n_input > 1 ? constant(im, n->input[1]) : NULL;
	const Onnx__TensorProto *bt =
	        n->n_input > 2 && n->input[2][0] ? constant(im, n->input[2]) : NULL;
	int64_t strides[2], dil[2], ks[2], k[2];
	struct tensor *w = NULL;
	struct conv c = { .node = n->name ? n->name : "" };
	struct conv *nc;
	int x, out, rc;

	rc = tensor_input(im, n, 0, &x);
	if (rc < 0)
		return rc;
	if (wt == NULL || (n->n_input > 2 && n->input[2][0] && bt == NULL))
		return NODE_ERR(im, n, -EINVAL, "weights and bias must be initializers");
	if (attr_int(n, "group", 1) != 1)
		return NODE_ERR(im, n, -EINVAL,
		                "group %lld: grouped and depthwise convolutions "
		                "are not supported",
		                (long long)attr_int(n, "group", 1));
	if (wt->n_dims != 4)
		return NODE_ERR(im, n, -EINVAL,
		                "weights of rank %zu: only 2-D convolutions "
		                "(OIHW weights) are supported",
		                wt->n_dims);
	k[0] = wt->dims[2];
	k[1] = wt->dims[3];
	if (attr_ints(im, n, "strides", 2, 1, strides) < 0 ||
	    attr_ints(im, n, "dilations", 2, 1, dil) < 0 ||
	    attr_ints(im, n, "kernel_shape", 2, 0, ks) < 0)
		return node_prefix(im, n, -EINVAL);
	if (strides[0] != 1 || strides[1] != 1)
		return NODE_ERR(im, n, -EINVAL, "strides [%lld,%lld]: only stride 1 is supported",
		                (long long)strides[0], (long long)strides[1]);
	if ((ks[0] != 0 || ks[1] != 0) && (ks[0] != k[0] || ks[1] != k[1]))
		return NODE_ERR(im, n, -EINVAL, "kernel_shape disagrees with the weights");
	if (dil[0] < 1 || dil[1] < 1 || dil[0] > CONV_MAX_RATE || dil[1] > CONV_MAX_RATE)
		return NODE_ERR(im, n, -EINVAL, "dilations [%lld,%lld] out of range",
		                (long long)dil[0], (long long)dil[1]);
	rc = conv_padding(im, n, k, dil, &c.layer.spec.padding);
	if (rc < 0)
		return rc;
	c.layer.spec.rate_h = dil[0];
	c.layer.spec.rate_w = dil[1];
	rc = load_floats(im, wt, &w);
	if (rc == 0)
		rc = hwio(im, w, &c.layer.filters);
	tensor_free(w);
	if (rc == 0 && bt != NULL)
		rc = load_floats(im, bt, &c.layer.bias);
	if (rc == 0)
		rc = conv_check_layer(c.layer.filters, c.layer.bias, &c.layer.spec, im->err);
	if (rc < 0) {
		conv_layer_clear(&c.layer);
		return node_prefix(im, n, rc);
	}
	nc = realloc(im->convs, (im->nconvs + 1) * sizeof(*nc));
	if (nc == NULL) {
		conv_layer_clear(&c.layer);
		return err_set(im->err, -ENOMEM, "out of memory");
	}
	im->convs = nc;
	im->convs[im->nconvs++] = c; /* freed with the importer from here on */
	rc = add_value(im, n->output[0], V_CONV, &out);
	if (rc < 0 || out < 0)
		return rc;
	im->v[out].src = x;
	im->v[out].conv = (int)im->nconvs - 1;
	return 0;
}

/* The convolution that node n may fold into: its input, if that is a
 * convolution read by n alone. */
static int foldable(struct importer *im, const Onnx__NodeProto *n, const char *what, int *x)
{
	int rc = tensor_input(im, n, 0, x);

	if (rc < 0)
		return rc;
	if (im->v[*x].kind != V_CONV)
		return NODE_ERR(im, n, -EINVAL, "%s must follow a Conv", what);
	if (im->v[*x].uses != 1)
		return NODE_ERR(im, n, -EINVAL,
		                "the Conv output \"%.64s\" is read %d times; "
		                "atrousd imports chains and ASPP heads",
		                im->v[*x].name, im->v[*x].uses);
	return 0;
}

/* The output aliases value x (Relu, BatchNorm and friends fold into it). */
static int alias(struct importer *im, const Onnx__NodeProto *n, int x)
{
	int out, rc = add_value(im, n->output[0], im->v[x].kind, &out);
	int uses;

	if (rc < 0 || out < 0)
		return rc;
	uses = im->v[out].uses;
	im->v[out] = im->v[x];
	im->v[out].name = n->output[0];
	im->v[out].uses = uses;
	im->v[out].owns = 0;
	return 0;
}

/* Fold BatchNormalization's scale, bias, mean and variance (t[0..3]) into
 * conv c: w' = w * s and b' = (b - mean) * s + beta with
 * s = gamma / sqrt(var + eps), each rounded once from double. */
static int fold(struct importer *im, struct conv *c, struct tensor *const t[4], double eps)
{
	int64_t m = c->layer.filters->dim[3], per = (int64_t)c->layer.filters->count / m, o, i;

	for (o = 0; o < m; o++) {
		double var = t[3]->data[o], s = (double)t[0]->data[o] / sqrt(var + eps);

		if (!(var + eps > 0))
			return err_set(im->err, -EINVAL, "variance %g + epsilon is not positive",
			               var);
		for (i = 0; i < per; i++) {
			float *w = &c->layer.filters->data[i * m + o];

			*w = (float)((double)*w * s);
			if (!isfinite(*w))
				break;
		}
		c->layer.bias->data[o] =
		        (float)(((double)c->layer.bias->data[o] - (double)t[2]->data[o]) * s +
		                (double)t[1]->data[o]);
		if (i < per || !isfinite(c->layer.bias->data[o]))
			return err_set(
			        im->err, -ERANGE,
			        "folding channel %lld into the Conv overflows float32 (scale %g "
			        "/ sqrt(variance %g + epsilon %g))",
			        (long long)o, (double)t[0]->data[o], var, eps);
	}
	return 0;
}

static int node_batchnorm(struct importer *im, const Onnx__NodeProto *n)
{
	const Onnx__TensorProto *p[4];
	struct tensor *t[4] = { NULL };
	struct conv *c;
	double eps;
	int64_t m;
	int x, k, rc;

	rc = foldable(im, n, "BatchNormalization", &x);
	if (rc < 0)
		return rc;
	c = &im->convs[im->v[x].conv];
	if (c->relu || c->bn)
		return NODE_ERR(im, n, -EINVAL,
		                "BatchNormalization after an activation or a "
		                "second one cannot fold into the Conv");
	if (attr_int(n, "training_mode", 0) != 0 || (n->n_output > 1 && n->output[1][0]))
		return NODE_ERR(im, n, -EINVAL,
		                "BatchNormalization in training mode: export the "
		                "model in eval mode");
	if (n->n_input != 5)
		return NODE_ERR(im, n, -EINVAL, "expected 5 inputs, got %zu", n->n_input);
	m = c->layer.filters->dim[3];
	for (k = 0; k < 4; k++) {
		p[k] = constant(im, n->input[k + 1]);
		rc = p[k] == NULL ? err_set(im->err, -EINVAL,
		                            "scale, bias, mean and variance must be "
		                            "initializers")
		                  : load_floats(im, p[k], &t[k]);
		if (rc == 0 && t[k]->count != (size_t)m)
			rc = err_set(im->err, -EINVAL, "%s has %zu values for %lld channels",
			             n->input[k + 1], t[k]->count, (long long)m);
		if (rc < 0)
			goto done;
	}
	{
		const Onnx__AttributeProto *a = attr(n, "epsilon");

		eps = a != NULL && a->has_f ? (double)a->f : 1e-5;
	}
	if (c->layer.bias == NULL) {
		int64_t dim[1] = { m };

		rc = tensor_new(&c->layer.bias, 1, dim, im->err);
		if (rc < 0)
			goto done;
	}
	rc = fold(im, c, t, eps);
	if (rc < 0)
		goto done;
	c->bn = 1;
	rc = alias(im, n, x);
done:
	for (k = 0; k < 4; k++)
		tensor_free(t[k]);
	if (rc < 0 && strncmp(im->err, "node \"", 6) != 0)
		return node_prefix(im, n, rc);
	return rc;
}

static int node_relu(struct importer *im, const Onnx__NodeProto *n)
{
	int x, rc = foldable(im, n, "Relu", &x);

	if (rc < 0)
		return rc;
	if (im->convs[im->v[x].conv].relu)
		return NODE_ERR(im, n, -EINVAL, "a second Relu");
	im->convs[im->v[x].conv].relu = 1;
	im->convs[im->v[x].conv].layer.spec.act = CONV_ACT_RELU;
	return alias(im, n, x);
}

static int node_pass(struct importer *im, const Onnx__NodeProto *n)
{
	int x = n->n_input > 0 ? find(im, n->input[0]) : -1, rc;

	/* Exporters pass initializers through Identity: a constant stays one. */
	if (x >= 0 && (im->v[x].kind == V_CONST || im->v[x].kind == V_INT))
		return alias(im, n, x);
	rc = tensor_input(im, n, 0, &x);
	if (rc < 0)
		return rc;
	if (n->n_output > 1 && n->output[1][0] && reads(im, n->output[1]) > 0)
		return NODE_ERR(im, n, -EINVAL, "the dropout mask is read by the graph");
	return alias(im, n, x);
}

static int node_pool(struct importer *im, const Onnx__NodeProto *n)
{
	int x, out, rc = tensor_input(im, n, 0, &x);

	if (rc < 0)
		return rc;
	if (strcmp(n->op_type, "ReduceMean") == 0) {
		const Onnx__AttributeProto *a = attr(n, "axes");
		const Onnx__TensorProto *t = n->n_input > 1 ? constant(im, n->input[1]) : NULL;
		const int64_t *axes = a ? a->ints : t ? t->int64_data : NULL;
		size_t na = a ? a->n_ints : t ? t->n_int64_data : 0;
		int64_t raw_axes[2];

		if (t != NULL && t->has_raw_data && t->raw_data.len == 16) {
			memcpy(raw_axes, t->raw_data.data, 16);
			axes = raw_axes;
			na = 2;
		}
		if (na != 2 ||
		    !((axes[0] == 2 || axes[0] == -2) && (axes[1] == 3 || axes[1] == -1)))
			return NODE_ERR(im, n, -EINVAL,
			                "only the mean over H and W (axes [2,3]) is "
			                "supported");
		if (attr_int(n, "keepdims", 1) != 1)
			return NODE_ERR(im, n, -EINVAL, "keepdims must be 1");
	}
	rc = add_value(im, n->output[0], V_POOL, &out);
	if (rc == 0 && out >= 0)
		im->v[out].src = x;
	return rc;
}

/* Resize, Upsample or Expand of the pooled branch back to a map's size.
 * From a 1x1 map every mode of Resize is a broadcast.  The target size is
 * whatever the exporter computed: the input's Shape when it was exported
 * with dynamic axes, or the size it was traced at; atrousd broadcasts to the
 * size of the ASPP's input either way (for the traced size that is what the
 * ONNX graph computes; other sizes the graph itself would refuse). */
static int node_bcast(struct importer *im, const Onnx__NodeProto *n)
{
	int x, out, rc = tensor_input(im, n, 0, &x);
	size_t i;

	if (rc < 0)
		return rc;
	if (im->v[x].kind != V_CONV || im->v[im->v[x].src].kind != V_POOL)
		return NODE_ERR(im, n, -EINVAL,
		                "only the image-pooling branch (a pooled map "
		                "through a Conv) may be resized");
	for (i = 1; i < n->n_input; i++) {
		int k = n->input[i][0] ? find(im, n->input[i]) : -1;

		if (n->input[i][0] &&
		    (k < 0 || (im->v[k].kind != V_INT && im->v[k].kind != V_CONST)))
			return NODE_ERR(im, n, -EINVAL,
			                "its sizes, scales or shape must be constants "
			                "or shape arithmetic");
	}
	rc = add_value(im, n->output[0], V_BCAST, &out);
	if (rc == 0 && out >= 0)
		im->v[out].src = x;
	return rc;
}

/* Shape arithmetic: integers from Shape of any tensor, constants and other
 * integers; never a tensor's values. */
static int node_int(struct importer *im, const Onnx__NodeProto *n)
{
	int shape = strcmp(n->op_type, "Shape") == 0, out, rc;
	size_t i;

	for (i = 0; i < n->n_input; i++) {
		int k = find(im, n->input[i]);

		if (n->input[i][0] == '\0')
			continue; /* an optional input left out */
		if (k < 0)
			return NODE_ERR(im, n, -EINVAL,
			                "input \"%.64s\" is not defined before the node",
			                n->input[i]);
		if (!shape && im->v[k].kind != V_INT && im->v[k].kind != V_CONST)
			return NODE_ERR(
			        im, n, -EINVAL,
			        "integer arithmetic on a tensor: only the shape computations "
			        "exporters emit are supported");
	}
	for (i = 0; i < n->n_output; i++) {
		rc = add_value(im, n->output[i], V_INT, &out);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int node_concat(struct importer *im, const Onnx__NodeProto *n)
{
	int64_t axis = attr_int(n, "axis", 1);
	size_t i, ints = 0;
	int out, rc;

	for (i = 0; i < n->n_input; i++) {
		int k = find(im, n->input[i]);

		if (k < 0)
			return NODE_ERR(im, n, -EINVAL,
			                "input \"%.64s\" is not defined before the "
			                "node",
			                n->input[i]);
		ints += im->v[k].kind == V_INT || im->v[k].kind == V_CONST;
	}
	if (ints == n->n_input)
		return node_int(im, n);
	if (axis != 1 && axis != -3)
		return NODE_ERR(im, n, -EINVAL,
		                "Concat on axis %lld: only channels (axis 1) "
		                "are supported",
		                (long long)axis);
	rc = add_value(im, n->output[0], V_CONCAT, &out);
	if (rc < 0 || out < 0)
		return rc;
	im->v[out].parts = calloc(n->n_input ? n->n_input : 1, sizeof(int));
	im->v[out].owns = 1;
	if (im->v[out].parts == NULL)
		return err_set(im->err, -ENOMEM, "out of memory");
	for (i = 0; i < n->n_input; i++) {
		rc = tensor_input(im, n, i, &im->v[out].parts[i]);
		if (rc < 0)
			return rc;
		im->v[out].nparts++;
	}
	return 0;
}

static int node_constant(struct importer *im, const Onnx__NodeProto *n)
{
	const Onnx__AttributeProto *a = attr(n, "value");
	int out, rc = add_value(im, n->output[0], V_CONST, &out);

	if (rc < 0 || out < 0)
		return rc;
	if (a != NULL && a->t != NULL) {
		im->v[out].init = a->t;
		return 0;
	}
	/* value_int(s) and friends: integers for the shape arithmetic. */
	im->v[out].kind = V_INT;
	return 0;
}

static const struct handler {
	const char *op;
	int (*fn)(struct importer *im, const Onnx__NodeProto *n);
} handlers[] = {
	{ "Conv", node_conv },       { "BatchNormalization", node_batchnorm },
	{ "Relu", node_relu },       { "Identity", node_pass },
	{ "Dropout", node_pass },    { "GlobalAveragePool", node_pool },
	{ "ReduceMean", node_pool }, { "Resize", node_bcast },
	{ "Upsample", node_bcast },  { "Expand", node_bcast },
	{ "Concat", node_concat },   { "Constant", node_constant },
	{ "Shape", node_int },       { "Gather", node_int },
	{ "Slice", node_int },       { "Unsqueeze", node_int },
	{ "Squeeze", node_int },     { "Cast", node_int },
	{ "Reshape", node_int },     { "Mul", node_int },
	{ "Div", node_int },         { "Floor", node_int },
};

static int run_node(struct importer *im, const Onnx__NodeProto *n)
{
	size_t i;

	if (n->op_type == NULL || n->n_output == 0)
		return err_set(im->err, -EINVAL, "node \"%.64s\" has no operator or no output",
		               n->name ? n->name : "");
	if (n->domain != NULL && n->domain[0] != '\0' && strcmp(n->domain, "ai.onnx") != 0)
		return NODE_ERR(im, n, -EINVAL, "operator domain \"%.64s\" is not supported",
		                n->domain);
	for (i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
		if (strcmp(n->op_type, handlers[i].op) == 0)
			return handlers[i].fn(im, n);
	return NODE_ERR(im, n, -EINVAL,
	                "operator %.32s is not supported (atrousd imports Conv, "
	                "BatchNormalization, Relu, pooling, Resize, Concat and shape arithmetic)",
	                n->op_type);
}

/* ---------------------------------------------------------------- layers */

static int add_layer(struct importer *im, struct graph_layer *l)
{
	struct graph_layer *nl = realloc(im->layers, (im->nlayers + 1) * sizeof(*nl));

	if (nl == NULL)
		return err_set(im->err, -ENOMEM, "out of memory");
	im->layers = nl;
	im->layers[im->nlayers++] = *l;
	return 0;
}

/* Move conv c out of the importer (each goes into the graph once). */
static struct conv_layer take_conv(struct importer *im, int c)
{
	struct conv_layer l = im->convs[c].layer;

	im->convs[c].layer.filters = im->convs[c].layer.bias = NULL;
	im->convs[c].used = 1;
	return l;
}

static int emit(struct importer *im, int v, int depth);

/* A pooling branch: value p is Bcast(Conv(Pool(x))); its x, or -1. */
static int pool_source(const struct importer *im, int p)
{
	const struct value *b = &im->v[p];

	if (b->kind != V_BCAST)
		return -1;
	return im->v[im->v[b->src].src].src;
}

/* The projection's input channels in the ASPP's order: pooling first, then
 * the branches as concatenated. */
static int permute_projection(struct importer *im, struct conv_layer *proj, const int64_t *from,
                              int64_t nch)
{
	const struct tensor *f = proj->filters;
	struct tensor *g;
	int64_t o = f->dim[3], j, k;
	int rc;

	if (f->dim[2] != nch)
		return err_set(im->err, -EINVAL,
		               "the projection reads %lld channels, the "
		               "concatenation has %lld",
		               (long long)f->dim[2], (long long)nch);
	rc = tensor_new_uninit(&g, 4, f->dim, im->err);
	if (rc < 0)
		return rc;
	for (j = 0; j < nch; j++)
		for (k = 0; k < o; k++)
			g->data[j * o + k] = f->data[from[j] * o + k];
	tensor_free(proj->filters);
	proj->filters = g;
	return 0;
}

/* What a concatenation of ASPP parts holds. */
struct parts {
	int x;            /* the tensor every part reads */
	int pool;         /* the pooling branch's value, or -1 */
	size_t nb;        /* Conv branches */
	int64_t nch;      /* channels of the concatenation */
	int64_t pool_off; /* where the pooling branch's channels start in it */
	int64_t pool_ch;
};

/* Classify the parts of Concat c: Conv branches over one tensor and at
 * most one pooling branch. */
static int classify(struct importer *im, const struct value *c, int proj, struct parts *pt)
{
	size_t i;

	*pt = (struct parts){ .x = -1, .pool = -1, .pool_off = -1 };
	for (i = 0; i < c->nparts; i++) {
		int p = c->parts[i], src;

		if (im->v[p].kind == V_CONV && im->v[p].uses == 1) {
			src = im->v[p].src;
			pt->nch += im->convs[im->v[p].conv].layer.filters->dim[3];
			pt->nb++;
		} else if ((src = pool_source(im, p)) >= 0 && pt->pool < 0) {
			const struct tensor *f = im->convs[im->v[im->v[p].src].conv].layer.filters;

			if (f->dim[0] != 1 || f->dim[1] != 1)
				return err_set(im->err, -EINVAL,
				               "the image-pooling branch's Conv must be 1x1");
			pt->pool = p;
			pt->pool_off = pt->nch;
			pt->pool_ch = f->dim[3];
			pt->nch += f->dim[3];
		} else {
			return err_set(im->err, -EINVAL,
			               "Concat \"%.64s\": part \"%.64s\" is neither a Conv branch "
			               "nor the image-pooling branch of an ASPP head",
			               c->name, im->v[p].name);
		}
		if (pt->x >= 0 && src != pt->x)
			return err_set(im->err, -EINVAL,
			               "Concat \"%.64s\": the branches read different tensors",
			               c->name);
		pt->x = src;
	}
	if (pt->nb == 0)
		return err_set(im->err, -EINVAL,
		               "Concat \"%.64s\": an ASPP head needs a Conv branch", c->name);
	if (pt->pool >= 0 && pt->pool_off != 0 && proj < 0)
		return err_set(im->err, -EINVAL,
		               "Concat \"%.64s\": the image-pooling branch must come first when no "
		               "projection follows (atrousd's ASPP puts it first)",
		               c->name);
	return 0;
}

/* Conv c moved into a new allocation (the ASPP's pooling or projection). */
static int take_conv_alloc(struct importer *im, int c, struct conv_layer **out)
{
	*out = malloc(sizeof(**out));
	if (*out == NULL)
		return err_set(im->err, -ENOMEM, "out of memory");
	**out = take_conv(im, c);
	return 0;
}

/* The branches in concatenation order, and from[j], the concatenation's
 * channel of the ASPP's channel j (pooling first, then the branches). */
static int take_branches(struct importer *im, const struct value *c, const struct parts *pt,
                         struct aspp *a, int64_t *from)
{
	int64_t off = 0, at = 0, k, o;
	size_t i;

	for (k = 0; k < pt->pool_ch; k++)
		from[off++] = pt->pool_off + k;
	for (i = 0; i < c->nparts; i++) {
		int p = c->parts[i];
		struct conv_layer *b;

		if (p == pt->pool) {
			at += pt->pool_ch;
			continue;
		}
		b = &a->branches[a->nbranches++];
		*b = take_conv(im, im->v[p].conv);
		if (b->spec.padding != CONV_SAME)
			return err_set(im->err, -EINVAL,
			               "ASPP branch \"%.64s\" must use SAME padding",
			               im->v[p].name);
		o = b->filters->dim[3];
		for (k = 0; k < o; k++)
			from[off++] = at + k;
		at += o;
	}
	return 0;
}

/* Concat of branches (and one pooling branch) over x, then proj (or -1). */
static int emit_aspp(struct importer *im, int cat, int proj, int depth)
{
	const struct value *c = &im->v[cat];
	struct graph_layer l = { .type = GRAPH_ASPP };
	struct parts pt;
	int64_t *from = NULL;
	int rc;

	rc = classify(im, c, proj, &pt);
	if (rc == 0)
		rc = emit(im, pt.x, depth + 1);
	if (rc < 0)
		return rc;
	l.aspp.branches = calloc(pt.nb, sizeof(*l.aspp.branches));
	from = calloc((size_t)pt.nch, sizeof(*from));
	if (l.aspp.branches == NULL || from == NULL)
		rc = err_set(im->err, -ENOMEM, "out of memory");
	if (rc == 0 && pt.pool >= 0)
		rc = take_conv_alloc(im, im->v[im->v[pt.pool].src].conv, &l.aspp.pool);
	if (rc == 0)
		rc = take_branches(im, c, &pt, &l.aspp, from);
	if (rc == 0 && proj >= 0 && (rc = take_conv_alloc(im, proj, &l.aspp.proj)) == 0)
		rc = permute_projection(im, l.aspp.proj, from, pt.nch);
	if (rc == 0)
		rc = aspp_prepare(&l.aspp, im->err);
	if (rc == 0)
		rc = add_layer(im, &l);
	free(from);
	if (rc < 0)
		aspp_clear(&l.aspp);
	return rc;
}

/* Append the layers that compute value v, input first. */
static int emit(struct importer *im, int v, int depth)
{
	const struct value *val = &im->v[v];
	struct graph_layer l = { .type = GRAPH_CONV };
	int rc;

	if (depth > (int)ONNX_MAX_NODES)
		return err_set(im->err, -EINVAL, "graph too deep");
	switch (val->kind) {
	case V_INPUT: return 0;
	case V_CONCAT: return emit_aspp(im, v, -1, depth);
	case V_CONV:
		if (im->v[val->src].kind == V_CONCAT) {
			const struct tensor *f = im->convs[val->conv].layer.filters;

			if (f->dim[0] != 1 || f->dim[1] != 1)
				return err_set(
				        im->err, -EINVAL,
				        "Conv \"%.64s\" after the ASPP concatenation must be "
				        "1x1 (its projection)",
				        im->convs[val->conv].node);
			if (im->v[val->src].uses != 1)
				return err_set(im->err, -EINVAL,
				               "the ASPP concatenation is read %d "
				               "times",
				               im->v[val->src].uses);
			return emit_aspp(im, val->src, val->conv, depth);
		}
		if (im->v[val->src].kind != V_INPUT && im->v[val->src].uses != 1)
			return err_set(im->err, -EINVAL,
			               "value \"%.64s\" is read %d times; atrousd imports chains "
			               "and ASPP heads",
			               im->v[val->src].name, im->v[val->src].uses);
		rc = emit(im, val->src, depth + 1);
		if (rc < 0)
			return rc;
		l.conv = take_conv(im, val->conv);
		rc = add_layer(im, &l);
		if (rc < 0)
			conv_layer_clear(&l.conv);
		return rc;
	default:
		return err_set(im->err, -EINVAL,
		               "value \"%.64s\" cannot be computed as a chain of convolutions and "
		               "ASPP heads",
		               val->name);
	}
}

/* ---------------------------------------------------------------- the file */

/* Nesting of messages in the wire data, bounded before protobuf-c (which
 * recurses once per level) unpacks it: only message-typed fields nest. */
static int depth_ok(const uint8_t *p, const uint8_t *end, const ProtobufCMessageDescriptor *d,
                    int depth)
{
	if (depth > ONNX_MAX_DEPTH)
		return 0;
	while (p < end) {
		uint64_t key = 0, len = 0;
		int shift = 0;
		const ProtobufCFieldDescriptor *f;

		do {
			if (p >= end || shift > 63)
				return 1; /* malformed: protobuf-c reports it */
			key |= (uint64_t)(*p & 0x7f) << shift;
			shift += 7;
		} while (*p++ & 0x80);
		switch (key & 7) {
		case 0:
			while (p < end && (*p++ & 0x80))
				;
			break;
		case 1: p += 8; break;
		case 5: p += 4; break;
		case 2:
			shift = 0;
			do {
				if (p >= end || shift > 63)
					return 1;
				len |= (uint64_t)(*p & 0x7f) << shift;
				shift += 7;
			} while (*p++ & 0x80);
			if (len > (uint64_t)(end - p))
				return 1;
			f = protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3));
			if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE &&
			    !depth_ok(p, p + len, f->descriptor, depth + 1))
				return 0;
			p += len;
			break;
		default: return 1;
		}
	}
	return 1;
}

/* The graph's one real input (not an initializer) and its channels. */
static int graph_input(struct importer *im, struct onnx_model *out)
{
	const Onnx__GraphProto *g = im->g;
	const Onnx__ValueInfoProto *in = NULL;
	size_t i, j;
	int k, rc;

	for (i = 0; i < g->n_input; i++) {
		for (j = 0; j < g->n_initializer; j++)
			if (g->initializer[j]->name && g->input[i]->name &&
			    strcmp(g->initializer[j]->name, g->input[i]->name) == 0)
				break;
		if (j < g->n_initializer)
			continue;
		if (in != NULL)
			return err_set(im->err, -EINVAL,
			               "the graph has more than one input "
			               "(\"%.64s\" and \"%.64s\")",
			               in->name, g->input[i]->name);
		in = g->input[i];
	}
	if (in == NULL || in->name == NULL || in->name[0] == '\0')
		return err_set(im->err, -EINVAL, "the graph has no input");
	if (strlen(in->name) > ONNX_NAME_MAX)
		return err_set(im->err, -EINVAL, "input name longer than %d bytes", ONNX_NAME_MAX);
	snprintf(out->input, sizeof(out->input), "%s", in->name);
	out->in_channels = 0;
	if (in->type != NULL && in->type->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE) {
		const Onnx__TypeProto__Tensor *t = in->type->tensor_type;

		if (t->has_elem_type && t->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
			return err_set(im->err, -EINVAL, "input \"%.64s\" must be float32",
			               in->name);
		if (t->shape != NULL && t->shape->n_dim != 4)
			return err_set(im->err, -EINVAL,
			               "input \"%.64s\" must be NCHW (rank 4), has "
			               "rank %zu",
			               in->name, t->shape->n_dim);
		if (t->shape != NULL &&
		    t->shape->dim[1]->value_case ==
		            ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
			out->in_channels = t->shape->dim[1]->dim_value;
	}
	rc = add_value(im, in->name, V_INPUT, &k);
	return rc;
}

static int import_graph(struct importer *im, struct onnx_model *out)
{
	const Onnx__GraphProto *g = im->g;
	size_t i;
	int k, rc;

	if (g->n_node > ONNX_MAX_NODES)
		return err_set(im->err, -E2BIG, "%zu nodes (at most %d)", g->n_node,
		               ONNX_MAX_NODES);
	if (g->n_sparse_initializer > 0)
		return err_set(im->err, -EINVAL, "sparse initializers are not supported");
	rc = graph_input(im, out);
	for (i = 0; rc == 0 && i < g->n_initializer; i++) {
		rc = add_value(im, g->initializer[i]->name, V_CONST, &k);
		if (rc == 0 && k >= 0)
			im->v[k].init = g->initializer[i];
	}
	if (rc < 0)
		return rc;
	if (g->n_output != 1 || g->output[0]->name == NULL)
		return err_set(im->err, -EINVAL, "the graph must have exactly one output, has %zu",
		               g->n_output);
	if (strlen(g->output[0]->name) > ONNX_NAME_MAX)
		return err_set(im->err, -EINVAL, "output name longer than %d bytes", ONNX_NAME_MAX);
	snprintf(out->output, sizeof(out->output), "%s", g->output[0]->name);
	/* Nodes are in topological order (ONNX requires it): each reads only
	 * values defined before it, which also rules out cycles. */
	for (i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];

		rc = run_node(im, n);
		if (rc < 0)
			return rc;
	}
	k = find(im, out->output);
	if (k < 0)
		return err_set(im->err, -EINVAL, "the output \"%.64s\" is not computed by any node",
		               out->output);
	return emit(im, k, 0);
}

static void importer_free(struct importer *im)
{
	size_t i;

	for (i = 0; i < im->nv; i++)
		if (im->v[i].owns)
			free(im->v[i].parts);
	free(im->v);
	free(im->reads);
	for (i = 0; i < im->nconvs; i++)
		conv_layer_clear(&im->convs[i].layer);
	free(im->convs);
	for (i = 0; i < im->nlayers; i++) {
		conv_layer_clear(&im->layers[i].conv);
		aspp_clear(&im->layers[i].aspp);
	}
	free(im->layers);
}

/* Move the layers into a graph and check it end to end. */
static int build_graph(struct importer *im, struct onnx_model *out)
{
	int64_t out_c;
	size_t i;
	int rc;

	if (im->nlayers == 0)
		return err_set(im->err, -EINVAL, "the graph computes nothing (no Conv)");
	rc = graph_new(&out->graph, im->nlayers, im->err);
	if (rc < 0)
		return rc;
	for (i = 0; i < im->nlayers; i++)
		*graph_layer(out->graph, i) = im->layers[i];
	free(im->layers);
	im->layers = NULL;
	im->nlayers = 0;
	rc = graph_check_channels(out->graph, &out_c, im->err);
	if (rc == 0 && out->in_channels != 0 && out->in_channels != graph_in_channels(out->graph))
		rc = err_set(im->err, -EINVAL,
		             "input \"%s\" has %lld channels, the first Conv "
		             "reads %lld",
		             out->input, (long long)out->in_channels,
		             (long long)graph_in_channels(out->graph));
	out->in_channels = graph_in_channels(out->graph);
	return rc;
}

int onnx_import(const void *data, size_t len, int64_t max_elements, struct onnx_model *out,
                char *err)
{
	struct importer im = { .max_elements = max_elements, .err = err };
	Onnx__ModelProto *mp;
	int rc;

	memset(out, 0, sizeof(*out));
	if (len > ONNX_MAX_BYTES)
		return err_set(err, -E2BIG, "ONNX file of %zu bytes (at most %zu)", len,
		               ONNX_MAX_BYTES);
	if (!depth_ok(data, (const uint8_t *)data + len, &onnx__model_proto__descriptor, 0))
		return err_set(err, -EINVAL, "ONNX messages nested deeper than %d", ONNX_MAX_DEPTH);
	mp = onnx__model_proto__unpack(NULL, len, data);
	if (mp == NULL)
		return err_set(err, -EINVAL,
		               "not an ONNX model: the protobuf does not parse "
		               "(truncated or corrupted)");
	if (mp->graph == NULL) {
		onnx__model_proto__free_unpacked(mp, NULL);
		return err_set(err, -EINVAL, "the ONNX model has no graph");
	}
	snprintf(out->producer, sizeof(out->producer), "%.30s %.30s",
	         mp->producer_name ? mp->producer_name : "",
	         mp->producer_version ? mp->producer_version : "");
	im.g = mp->graph;
	rc = collect_reads(&im);
	if (rc == 0)
		rc = import_graph(&im, out);
	if (rc == 0)
		rc = build_graph(&im, out);
	importer_free(&im);
	onnx__model_proto__free_unpacked(mp, NULL);
	if (rc < 0)
		onnx_model_clear(out);
	return rc;
}

void onnx_model_clear(struct onnx_model *m)
{
	graph_free(m->graph);
	m->graph = NULL;
}
