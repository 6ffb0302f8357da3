/* atrous.c - the command-line tool: offline convolution on .npy files.
 *
 * Exit status: 0 success, 1 bad data (unreadable or invalid tensors, kernel
 * errors), 2 bad usage.  On failure no output file is created.
 */
#include "autoconfig.h"

#include <errno.h>
#include <getopt.h>
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

#define EXIT_DATA  1
#define EXIT_USAGE 2

static const char usage_text[] =
        "Usage: atrous COMMAND [OPTIONS]\n"
        "\n"
        "Commands:\n"
        "  conv2d   tf.nn.atrous_conv2d on .npy files\n"
        "\n"
        "atrous conv2d --value X.npy --filters F.npy --rate R --padding SAME|VALID\n"
        "              [--bias B.npy] [--activation none|relu] --output Y.npy\n"
        "  --value FILE        input, float32 NHWC [batch, height, width, channels]\n"
        "  --filters FILE      float32 HWIO [kh, kw, in_channels, out_channels]\n"
        "  --rate R | RH,RW    dilation rate, an integer >= 1 or a height,width pair\n"
        "  --padding P         SAME or VALID (case-sensitive)\n"
        "  --bias FILE         optional float32 [out_channels], added before activation\n"
        "  --activation A      none (default) or relu\n"
        "  --output FILE       where to write the float32 result\n"
        "\n"
        "Global options:\n"
        "  -h, --help          show this help and exit\n"
        "  -V, --version       show the version and exit\n"
        "\n"
        "Exit status: 0 success, 1 bad data, 2 bad usage.\n";

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

static int cmd_conv2d(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "value", required_argument, NULL, 'v' },
		{ "filters", required_argument, NULL, 'f' },
		{ "rate", required_argument, NULL, 'r' },
		{ "padding", required_argument, NULL, 'p' },
		{ "bias", required_argument, NULL, 'b' },
		{ "activation", required_argument, NULL, 'a' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *vpath = NULL, *fpath = NULL, *bpath = NULL, *opath = NULL, *rate = NULL;
	const char *padding = NULL, *act = "none";
	struct conv_spec spec = { 0 };
	struct tensor *value = NULL, *filters = NULL, *bias = NULL, *out = NULL;
	char err[ERR_LEN];
	int c, status = EXIT_DATA;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'v': vpath = optarg; break;
		case 'f': fpath = optarg; break;
		case 'r': rate = optarg; break;
		case 'p': padding = optarg; break;
		case 'b': bpath = optarg; break;
		case 'a': act = optarg; break;
		case 'o': opath = optarg; break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: return usage_error("%s", "bad option for conv2d");
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (!vpath || !fpath || !rate || !padding || !opath)
		return usage_error(
		        "%s", "conv2d needs --value, --filters, --rate, --padding and --output");
	if (parse_rate(rate, &spec) < 0)
		return usage_error("--rate '%s' is not an integer or a RH,RW pair", rate);
	if (conv_parse_padding(padding, &spec.padding, err) < 0 ||
	    conv_parse_activation(act, &spec.act, err) < 0)
		return usage_error("%s", err);

	if (npy_load(vpath, &value, err) < 0 || npy_load(fpath, &filters, err) < 0 ||
	    (bpath && npy_load(bpath, &bias, err) < 0))
		goto fail;
	if (conv_atrous2d(value, filters, bias, &spec, NULL, &out, err) < 0)
		goto fail;
	if (npy_save(opath, out, err) < 0)
		goto fail;
	status = 0;
	goto done;
fail:
	fprintf(stderr, "atrous: %s\n", err);
done:
	tensor_free(out);
	tensor_free(bias);
	tensor_free(filters);
	tensor_free(value);
	return status;
}

static int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "value", required_argument, NULL, 'v' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *mpath = NULL, *vpath = NULL, *opath = NULL, *name;
	struct tensor *value = NULL, *out = NULL;
	struct model *m = NULL;
	char err[ERR_LEN], shape[160];
	int64_t odim[4];
	int c, status = EXIT_DATA;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': mpath = optarg; break;
		case 'v': vpath = optarg; break;
		case 'o': opath = optarg; break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: return usage_error("%s", "bad option for run");
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (!mpath || !vpath || !opath)
		return usage_error("%s", "run needs --model, --value and --output");
	name = strrchr(mpath, '/') ? strrchr(mpath, '/') + 1 : mpath;
	if (*name == '\0')
		return usage_error("--model '%s' must name a folder without a trailing '/'", mpath);
	if (model_load_dir(mpath, name, 0, &m, err) < 0 || npy_load(vpath, &value, err) < 0)
		goto fail;
	if (value->rank != 4) {
		err_set(err, -EINVAL, "%s: value must be rank 4 (NHWC), got shape %s", vpath,
		        tensor_shape_str(value->rank, value->dim, shape, sizeof(shape)));
		goto fail;
	}
	if (graph_output_shape(model_graph(m), value->dim, 0, odim, err) < 0 ||
	    graph_run(model_graph(m), value, NULL, &out, NULL, err) < 0 ||
	    npy_save(opath, out, err) < 0)
		goto fail;
	status = 0;
	goto done;
fail:
	fprintf(stderr, "atrous: %s\n", err);
done:
	tensor_free(out);
	tensor_free(value);
	model_unref(m);
	return status;
}

static int cmd_bench(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "threads", required_argument, NULL, 't' },
		{ "repeats", required_argument, NULL, 'r' },
		{ "case", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "jansson", required_argument, NULL, 'J' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct bench_options o = { 0, 10, NULL, 0 };
	const char *jansson = NULL;
	char err[ERR_LEN];
	int64_t v;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
		case 'r':
			if (parse_int64(optarg, &v) < 0 || v < 1 || v > 1000)
				return usage_error("--%s '%s' is not an integer from 1 to 1000",
				                   c == 't' ? "threads" : "repeats", optarg);
			*(c == 't' ? &o.threads : &o.repeats) = (int)v;
			break;
		case 'c': o.only = optarg; break;
		case 'j': o.json = 1; break;
		case 'J': jansson = optarg; break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: return usage_error("%s", "bad option for bench");
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (jansson != NULL ? bench_jansson(jansson, o.repeats, stdout, err) < 0
	                    : bench_run(&o, stdout, err) < 0) {
		fprintf(stderr, "atrous: %s\n", err);
		return EXIT_DATA;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage_error("%s", "missing command");
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
		printf("atrous %s\n", PACKAGE_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "conv2d") == 0)
		return cmd_conv2d(argc - 1, argv + 1);
	if (strcmp(argv[1], "run") == 0)
		return cmd_run(argc - 1, argv + 1);
	if (strcmp(argv[1], "bench") == 0)
		return cmd_bench(argc - 1, argv + 1);
	return usage_error("unknown command '%s'", argv[1]);
}
