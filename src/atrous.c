/* SPDX-License-Identifier: MIT */
/* atrous.c - the command-line tool: offline convolution on .npy files.
 *
 * Exit status: 0 success, 1 bad data (unreadable or invalid tensors, kernel
 * errors), 2 bad usage.  On failure no output file is created.
 */
#include "autoconfig.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "layer.h"
#include "error.h"
#include "graph.h"
#include "model.h"
#include "npy.h"
#include "onnx.h"
#include "store.h"
#include "buf.h"
#include "graphjson.h"

#define EXIT_DATA  1
#define EXIT_USAGE 2

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "atrous: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see 'atrous --help')\n");
	return EXIT_USAGE;
}

static int parse_int64(const char *s, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0')
		return -EINVAL;
	*out = v;
	return 0;
}

/* "R" or "RH,RW" */
static int parse_rate(const char *s, struct conv_spec *spec)
{
	char buf[64];
	char *comma;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	comma = strchr(buf, ',');
	if (comma == NULL) {
		if (parse_int64(buf, &spec->rate_h) < 0)
			return -EINVAL;
		spec->rate_w = spec->rate_h;
		return 0;
	}
	*comma = '\0';
	if (parse_int64(buf, &spec->rate_h) < 0 || parse_int64(comma + 1, &spec->rate_w) < 0)
		return -EINVAL;
	return 0;
}

/* A command's flag: getopt's table and the help text come from this. */
struct flag {
	const char *name;
	int val;             /* getopt's value; 'h' is --help */
	const char *metavar; /* NULL: the flag takes no value */
	const char *help;
};

struct command {
	const char *name;
	const char *operand; /* the one positional argument ("MODEL.onnx"), or NULL */
	const char *summary;
	const struct flag *flags; /* ends with a NULL name */
	int (*run)(const struct command *cmd, int argc, char **argv);
};

static const struct command commands[];

static void print_command(FILE *f, const struct command *cmd)
{
	const struct flag *fl;
	char left[40];

	fprintf(f, "atrous %s%s%s: %s\n", cmd->name, cmd->operand ? " " : "",
	        cmd->operand ? cmd->operand : "", cmd->summary);
	for (fl = cmd->flags; fl->name != NULL; fl++) {
		snprintf(left, sizeof(left), "--%s%s%s", fl->name, fl->metavar ? " " : "",
		         fl->metavar ? fl->metavar : "");
		fprintf(f, "  %-24s %s\n", left, fl->help);
	}
}

/* The whole usage, generated from the command table. */
static void print_usage(FILE *f)
{
	const struct command *cmd;

	fputs("Usage: atrous COMMAND [OPTIONS]\n\nCommands:\n", f);
	for (cmd = commands; cmd->name != NULL; cmd++)
		fprintf(f, "  %-8s %s\n", cmd->name, cmd->summary);
	for (cmd = commands; cmd->name != NULL; cmd++) {
		fputc('\n', f);
		print_command(f, cmd);
	}
	fputs("\nGlobal options:\n"
	      "  -h, --help               show this help (or a command's: atrous COMMAND --help)\n"
	      "  -V, --version            show the version and exit\n"
	      "\nExit status: 0 success, 1 bad data, 2 bad usage.\n",
	      f);
}

/* getopt over a command's flags: calls on(ctx, val, optarg) for each and
 * sets *operand to the positional argument when the command takes one; 1
 * after printing the command's help, 0, or EXIT_USAGE. */
static int parse_flags(const struct command *cmd, int argc, char **argv,
                       int (*on)(void *ctx, int val, const char *arg), void *ctx,
                       const char **operand)
{
	struct option lo[16];
	size_t n = 0;
	int c, rc;

	for (n = 0; cmd->flags[n].name != NULL && n + 1 < sizeof(lo) / sizeof(lo[0]); n++)
		lo[n] = (struct option){ cmd->flags[n].name,
			                 cmd->flags[n].metavar ? required_argument : no_argument,
			                 NULL, cmd->flags[n].val };
	lo[n] = (struct option){ NULL, 0, NULL, 0 };
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		if (c == 'h') {
			print_command(stdout, cmd);
			return 1;
		}
		if (c == '?' || c == ':')
			return usage_error("%s option '%s' for %s",
			                   c == ':' ? "missing value for" : "unknown",
			                   argv[optind - 1], cmd->name);
		rc = on(ctx, c, optarg);
		if (rc != 0)
			return rc;
	}
	if (cmd->operand != NULL) {
		if (optind >= argc)
			return usage_error("%s needs %s", cmd->name, cmd->operand);
		*operand = argv[optind++];
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	return 0;
}

/* mkdir -p path. */
static int make_dirs(const char *path, char *err)
{
	char p[PATH_MAX];
	size_t i;

	if ((size_t)snprintf(p, sizeof(p), "%s", path) >= sizeof(p))
		return err_set(err, -ENAMETOOLONG, "%s: path too long", path);
	for (i = 1; p[i] != '\0'; i++) {
		if (p[i] != '/')
			continue;
		p[i] = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			return err_set(err, -errno, "%s: %s", p, strerror(errno));
		p[i] = '/';
	}
	if (mkdir(p, 0755) < 0 && errno != EEXIST)
		return err_set(err, -errno, "%s: %s", p, strerror(errno));
	return 0;
}

/* A whole file of at most max bytes into a new buffer. */
static int read_whole(const char *path, size_t max, void **data, size_t *len, char *err)
{
	FILE *f = fopen(path, "rb");
	long size;

	*data = NULL;
	if (f == NULL)
		return err_set(err, -errno, "%s", strerror(errno));
	if (fseek(f, 0, SEEK_END) < 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0) {
		fclose(f);
		return err_set(err, -EINVAL, "not a regular file");
	}
	if ((size_t)size > max) {
		fclose(f);
		return err_set(err, -E2BIG, "%ld bytes (at most %zu)", size, max);
	}
	*data = malloc((size_t)size + 1);
	if (*data == NULL) {
		fclose(f);
		return err_set(err, -ENOMEM, "out of memory");
	}
	*len = fread(*data, 1, (size_t)size, f);
	fclose(f);
	return *len == (size_t)size ? 0 : err_set(err, -EIO, "short read");
}

/* conv2d */

static const struct flag conv2d_flags[] = {
	{ "value", 'v', "FILE", "input, float32 NHWC [batch, height, width, channels]" },
	{ "filters", 'f', "FILE", "float32 HWIO [kh, kw, in_channels, out_channels]" },
	{ "rate", 'r', "R|RH,RW", "dilation rate, an integer >= 1 or a height,width pair" },
	{ "padding", 'p', "SAME|VALID", "TensorFlow's padding (case-sensitive)" },
	{ "bias", 'b', "FILE", "optional float32 [out_channels], added before activation" },
	{ "activation", 'a', "none|relu", "activation (default: none)" },
	{ "output", 'o', "FILE", "where to write the float32 result" },
	{ "help", 'h', NULL, "show this command's help" },
	{ NULL, 0, NULL, NULL },
};

struct conv2d_args {
	const char *value, *filters, *rate, *padding, *bias, *act, *output;
};

static int conv2d_flag(void *ctx, int val, const char *arg)
{
	struct conv2d_args *a = ctx;

	switch (val) {
	case 'v': a->value = arg; break;
	case 'f': a->filters = arg; break;
	case 'r': a->rate = arg; break;
	case 'p': a->padding = arg; break;
	case 'b': a->bias = arg; break;
	case 'a': a->act = arg; break;
	case 'o': a->output = arg; break;
	}
	return 0;
}

static int cmd_conv2d(const struct command *cmd, int argc, char **argv)
{
	struct conv2d_args a = { .act = "none" };
	struct conv_spec spec = { 0 };
	struct tensor *value = NULL, *filters = NULL, *bias = NULL, *out = NULL;
	char err[ERR_LEN];
	int rc, status = EXIT_DATA;

	rc = parse_flags(cmd, argc, argv, conv2d_flag, &a, NULL);
	if (rc != 0)
		return rc == 1 ? 0 : rc;
	if (!a.value || !a.filters || !a.rate || !a.padding || !a.output)
		return usage_error(
		        "%s", "conv2d needs --value, --filters, --rate, --padding and --output");
	if (parse_rate(a.rate, &spec) < 0)
		return usage_error("--rate '%s' is not an integer or a RH,RW pair", a.rate);
	if (conv_parse_padding(a.padding, &spec.padding, err) < 0 ||
	    conv_parse_activation(a.act, &spec.act, err) < 0)
		return usage_error("%s", err);

	if (npy_load(a.value, &value, err) < 0 || npy_load(a.filters, &filters, err) < 0 ||
	    (a.bias && npy_load(a.bias, &bias, err) < 0) ||
	    conv_atrous2d(value, filters, bias, &spec, NULL, &out, err) < 0 ||
	    npy_save(a.output, out, err) < 0)
		fprintf(stderr, "atrous: %s\n", err);
	else
		status = 0;
	tensor_free(out);
	tensor_free(bias);
	tensor_free(filters);
	tensor_free(value);
	return status;
}

/* run */

static const struct flag run_flags[] = {
	{ "model", 'm', "DIR/NAME", "a stored model's folder (model.json and its .npy files)" },
	{ "value", 'v', "FILE", "input, float32 in the model's layout (NHWC, NCHW if imported)" },
	{ "output", 'o', "FILE", "where to write the float32 result" },
	{ "help", 'h', NULL, "show this command's help" },
	{ NULL, 0, NULL, NULL },
};

struct run_args {
	const char *model, *value, *output;
};

static int run_flag(void *ctx, int val, const char *arg)
{
	struct run_args *a = ctx;

	switch (val) {
	case 'm': a->model = arg; break;
	case 'v': a->value = arg; break;
	case 'o': a->output = arg; break;
	}
	return 0;
}

static int cmd_run(const struct command *cmd, int argc, char **argv)
{
	struct run_args a = { 0 };
	struct tensor *value = NULL, *out = NULL;
	struct model *m = NULL;
	char err[ERR_LEN], shape[160];
	const char *name;
	int64_t odim[4];
	int rc, status = EXIT_DATA;

	rc = parse_flags(cmd, argc, argv, run_flag, &a, NULL);
	if (rc != 0)
		return rc == 1 ? 0 : rc;
	if (!a.model || !a.value || !a.output)
		return usage_error("%s", "run needs --model, --value and --output");
	name = strrchr(a.model, '/') ? strrchr(a.model, '/') + 1 : a.model;
	if (*name == '\0')
		return usage_error("--model '%s' must name a folder without a trailing '/'",
		                   a.model);
	rc = model_load_dir(a.model, name, 0, &m, err);
	if (rc == 0)
		rc = npy_load(a.value, &value, err);
	if (rc == 0 && value->rank != 4)
		rc = err_set(err, -EINVAL, "%s: value must be rank 4 (%s), got shape %s", a.value,
		             model_nchw(m) ? "NCHW" : "NHWC",
		             tensor_shape_str(value->rank, value->dim, shape, sizeof(shape)));
	if (rc == 0 && model_nchw(m))
		rc = tensor_relayout(&value, 1, err); /* NCHW edges, an NHWC graph */
	if (rc == 0)
		rc = graph_output_shape(model_graph(m), value->dim, 0, odim, err);
	if (rc == 0)
		rc = graph_run(model_graph(m), value, NULL, &out, NULL, err);
	if (rc == 0 && model_nchw(m))
		rc = tensor_relayout(&out, 0, err);
	if (rc == 0)
		rc = npy_save(a.output, out, err);
	if (rc < 0)
		fprintf(stderr, "atrous: %s\n", err);
	else
		status = 0;
	tensor_free(out);
	tensor_free(value);
	model_unref(m);
	return status;
}

/* import */

static const struct flag import_flags[] = {
	{ "output", 'o', "DIR/NAME",
	  "the model folder to write (replaced atomically if it exists)" },
	{ "help", 'h', NULL, "show this command's help" },
	{ NULL, 0, NULL, NULL },
};

struct import_args {
	const char *output;
};

static int import_flag(void *ctx, int val, const char *arg)
{
	struct import_args *a = ctx;

	if (val == 'o')
		a->output = arg;
	return 0;
}

/* The model folder's files, built in memory. */
struct folder {
	struct store_file *files;
	size_t n;
};

static int folder_add(struct folder *f, const char *path, void *data, size_t len, char *err)
{
	struct store_file *nf = realloc(f->files, (f->n + 1) * sizeof(*nf));
	char *p = strdup(path);

	if (nf == NULL || p == NULL) {
		free(p);
		free(data);
		if (nf != NULL)
			f->files = nf;
		return err_set(err, -ENOMEM, "out of memory");
	}
	f->files = nf;
	f->files[f->n++] = (struct store_file){ p, data, len };
	return 0;
}

static int save_npy(void *ctx, const struct tensor *t, const char *hint, char *file, size_t len,
                    char *err)
{
	void *buf;
	size_t n;
	int rc = npy_encode(t, &buf, &n, err);

	if (rc < 0)
		return rc;
	snprintf(file, len, "%s.npy", hint);
	return folder_add(ctx, file, buf, n, err);
}

static void folder_free(struct folder *f)
{
	size_t i;

	for (i = 0; i < f->n; i++) {
		free((void *)f->files[i].path);
		free((void *)f->files[i].data);
	}
	free(f->files);
}

/* model.json and the .npy files of an imported model. */
static int import_folder(const struct onnx_model *om, struct folder *f, char *err)
{
	struct buf b = { 0 };
	size_t len;
	int rc;

	buf_puts(&b, "{\"description\":");
	{
		char d[128];

		snprintf(d, sizeof(d), "imported from ONNX (%s)", om->producer);
		buf_json_string(&b, d);
	}
	buf_puts(&b, ",\n \"layout\":\"NCHW\",\n \"input\":{\"name\":");
	buf_json_string(&b, om->input);
	buf_printf(&b, ",\"channels\":%lld},\n \"output\":{\"name\":", (long long)om->in_channels);
	buf_json_string(&b, om->output);
	buf_puts(&b, "},\n \"layers\":");
	rc = graphjson_write(&b, om->graph, save_npy, f, err);
	buf_puts(&b, "}\n");
	if (rc == 0 && buf_ok(&b) < 0)
		rc = err_set(err, -ENOMEM, "out of memory");
	if (rc < 0) {
		buf_free(&b);
		return rc;
	}
	{
		char *json = buf_take(&b, &len);

		return folder_add(f, "model.json", json, len, err);
	}
}

static int cmd_import(const struct command *cmd, int argc, char **argv)
{
	struct import_args a = { 0 };
	struct onnx_model om = { 0 };
	struct folder f = { 0 };
	struct model *check = NULL;
	char err[ERR_LEN], parent[PATH_MAX], tmp[PATH_MAX];
	const char *name, *onnx_path = NULL;
	void *data = NULL;
	size_t len = 0;
	int rc, created;

	rc = parse_flags(cmd, argc, argv, import_flag, &a, &onnx_path);
	if (rc != 0)
		return rc == 1 ? 0 : rc;
	if (a.output == NULL)
		return usage_error("%s", "import needs MODEL.onnx and --output DIR/NAME");
	name = strrchr(a.output, '/') ? strrchr(a.output, '/') + 1 : a.output;
	snprintf(parent, sizeof(parent), "%.*s", name == a.output ? 1 : (int)(name - a.output - 1),
	         name == a.output ? "." : a.output);
	if (parent[0] == '\0')
		snprintf(parent, sizeof(parent), "/");
	if (!model_name_ok(name))
		return usage_error("--output '%s': the folder name must match [A-Za-z0-9_.-]{1,64} "
		                   "and not start with '.'",
		                   a.output);
	rc = read_whole(onnx_path, ONNX_MAX_BYTES, &data, &len, err);
	if (rc == 0)
		rc = onnx_import(data, len, 0, &om, err);
	if (rc == 0)
		rc = make_dirs(parent, err);
	if (rc == 0)
		rc = import_folder(&om, &f, err);
	if (rc == 0)
		rc = store_stage(parent, f.files, f.n, tmp, err);
	if (rc == 0) {
		/* What was written must load back as the model it came from. */
		rc = model_load_dir(tmp, name, 0, &check, err);
		if (rc < 0)
			store_remove(tmp);
	}
	if (rc == 0)
		rc = store_install(parent, name, tmp, &created, err);
	if (rc < 0) {
		fprintf(stderr, "atrous: %s: %s\n", onnx_path, err);
	} else {
		printf("atrous: %s: %zu layer(s), input \"%s\" [N,%lld,H,W], output \"%s\" "
		       "[N,%lld,H,W], written to %s\n",
		       onnx_path, graph_size(model_graph(check)), om.input,
		       (long long)om.in_channels, om.output,
		       (long long)graph_out_channels(model_graph(check)), a.output);
	}
	model_unref(check);
	folder_free(&f);
	onnx_model_clear(&om);
	free(data);
	return rc < 0 ? EXIT_DATA : 0;
}

/* bench */

static const struct flag bench_flags[] = {
	{ "threads", 't', "N", "worker threads, 1 to 1000 (default: online CPUs)" },
	{ "repeats", 'r', "N", "timed runs per case, 1 to 1000 (default: 10)" },
	{ "case", 'c', "NAME",
	  "run only this case (seed1, chain, os16, os8, block4os16, block3os8, block4os8)" },
	{ "algorithm", 'a', "A", "auto, im2col or fast for every layer (default: auto)" },
	{ "unfolded", 'u', NULL,
	  "ASPP: broadcast image pooling instead of folding it into the "
	  "projection's bias" },
	{ "json", 'j', NULL, "one JSON object per line instead of a table" },
	{ "jansson", 'J', "FILE", "time jansson's parse and dump of a JSON file instead" },
	{ "help", 'h', NULL, "show this command's help" },
	{ NULL, 0, NULL, NULL },
};

struct bench_args {
	struct bench_options o;
	const char *jansson;
};

static int bench_flag(void *ctx, int val, const char *arg)
{
	struct bench_args *a = ctx;
	int64_t v;

	switch (val) {
	case 't':
	case 'r':
		if (parse_int64(arg, &v) < 0 || v < 1 || v > 1000)
			return usage_error("--%s '%s' is not an integer from 1 to 1000",
			                   val == 't' ? "threads" : "repeats", arg);
		*(val == 't' ? &a->o.threads : &a->o.repeats) = (int)v;
		break;
	case 'c': a->o.only = arg; break;
	case 'a': {
		char err[ERR_LEN];

		if (conv_parse_algorithm(arg, &a->o.algo, err) < 0)
			return usage_error("--algorithm: %s", err);
		break;
	}
	case 'j': a->o.json = 1; break;
	case 'u': a->o.unfolded = 1; break;
	case 'J': a->jansson = arg; break;
	}
	return 0;
}

static int cmd_bench(const struct command *cmd, int argc, char **argv)
{
	struct bench_args a = { .o = { .repeats = 10 } };
	char err[ERR_LEN];
	int rc;

	rc = parse_flags(cmd, argc, argv, bench_flag, &a, NULL);
	if (rc != 0)
		return rc == 1 ? 0 : rc;
	rc = a.jansson != NULL ? bench_jansson(a.jansson, a.o.repeats, stdout, err)
	                       : bench_run(&a.o, stdout, err);
	if (rc < 0) {
		fprintf(stderr, "atrous: %s\n", err);
		return EXIT_DATA;
	}
	return 0;
}

/* The commands: dispatch and --help both read this table. */
static const struct command commands[] = {
	{ "conv2d", NULL, "tf.nn.atrous_conv2d on .npy files", conv2d_flags, cmd_conv2d },
	{ "run", NULL, "a stored model on a .npy file", run_flags, cmd_run },
	{ "import", "MODEL.onnx", "an ONNX model into a model folder the daemon serves",
	  import_flags, cmd_import },
	{ "bench", NULL, "in-process kernel figures beside the sgemm ceiling", bench_flags,
	  cmd_bench },
	{ NULL, NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	const struct command *cmd;

	if (argc < 2)
		return usage_error("%s", "missing command");
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		print_usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
		printf("atrous %s\n", PACKAGE_VERSION);
		return 0;
	}
	for (cmd = commands; cmd->name != NULL; cmd++)
		if (strcmp(argv[1], cmd->name) == 0)
			return cmd->run(cmd, argc - 1, argv + 1);
	return usage_error("unknown command '%s'", argv[1]);
}
