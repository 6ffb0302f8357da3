/* SPDX-License-Identifier: MIT */
/* config.c - the option table and everything generated from it. */
#include "autoconfig.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "log.h"

enum opt_type { OPT_STRING, OPT_UINT, OPT_SIZE, OPT_BOOL };

struct option_def {
	const char *key;  /* config file key */
	const char *flag; /* long command-line flag */
	enum opt_type type;
	size_t offset;
	const char *def; /* default, as text */
	const char *metavar;
	const char *help; /* one line for --help */
	const char *doc;  /* more lines for the sample file, or NULL */
};

#define OFF(field) offsetof(struct config, field)

static const struct option_def options[] = {
	{ "listen", "listen", OPT_STRING, OFF(listen), "127.0.0.1:8080", "ADDR:PORT",
	  "address to listen on; [::1]:8080 for IPv6; port 0 picks a free port",
	  "Loopback by default: put a reverse proxy in front before exposing it." },
	{ "metrics_listen", "metrics-listen", OPT_STRING, OFF(metrics_listen), "", "ADDR:PORT",
	  "serve /metrics (and health) on this separate address instead (empty: on listen)", NULL },
	{ "grpc_listen", "grpc-listen", OPT_STRING, OFF(grpc_listen), "", "ADDR:PORT",
	  "serve KServe v2 over gRPC on this address too, e.g. 127.0.0.1:8001 (empty: off); "
	  "with tls_cert_file, over TLS",
	  NULL },
	{ "port_file", "port-file", OPT_STRING, OFF(port_file), "", "FILE",
	  "write the bound port to FILE once listening (empty: don't)", NULL },
	{ "models_dir", "models", OPT_STRING, OFF(models_dir), "", "DIR",
	  "directory of stored models, one folder per model (empty: none)", NULL },
	{ "tls_cert_file", "tls-cert", OPT_STRING, OFF(tls_cert_file), "", "FILE",
	  "PEM certificate chain: serve HTTPS on listen (empty: plain HTTP); re-read on SIGHUP",
	  NULL },
	{ "tls_key_file", "tls-key", OPT_STRING, OFF(tls_key_file), "", "FILE",
	  "PEM private key of tls_cert_file; re-read on SIGHUP", NULL },
	{ "tls_ca_file", "tls-ca", OPT_STRING, OFF(tls_ca_file), "", "FILE",
	  "PEM CA bundle: require client certificates it signed (mutual TLS; empty: none)", NULL },
	{ "admin_plaintext", "admin-plaintext", OPT_STRING, OFF(admin_plaintext), "deny",
	  "deny|allow", "admin calls over plain HTTP from non-loopback peers: deny (403) or allow",
	  NULL },
	{ "admin_token_file", "admin-token-file", OPT_STRING, OFF(admin_token_file), "", "FILE",
	  "file holding the bearer token for the admin API (empty: admin API disabled)",
	  "Never put the token itself on a command line." },
	{ "log_level", "log-level", OPT_STRING, OFF(log_level), "info", "LEVEL",
	  "error, warn, info (one line per request) or debug", NULL },
	{ "log_format", "log-format", OPT_STRING, OFF(log_format), "text", "FORMAT",
	  "text (one line per message) or json (one JSON object per line)", NULL },
	{ "threads", "threads", OPT_UINT, OFF(threads), "0", "N",
	  "compute worker threads (0: one per usable CPU: the affinity mask and any cgroup CPU "
	  "quota)",
	  NULL },
	{ "io_threads", "io-threads", OPT_UINT, OFF(io_threads), "2", "N",
	  "HTTP I/O threads (1 or more; they never compute)", NULL },
	{ "spin_us", "spin-us", OPT_UINT, OFF(spin_us), "100", "US",
	  "while a request computes, an idle worker waits this long for its next task set "
	  "before it sleeps, and the worker taking a request wakes one (0: sleep at once; at "
	  "most 10000)",
	  "A sleeping worker takes tens of microseconds to wake on a virtual machine, longer "
	  "than a small layer; the waiting costs CPU time only while requests run." },
	{ "max_queue", "max-queue", OPT_UINT, OFF(max_queue), "64", "N",
	  "requests waiting for a worker before new ones get 503", NULL },
	{ "max_body", "max-body", OPT_SIZE, OFF(max_body), "64M", "SIZE",
	  "largest request body; larger ones get 413 before being read", NULL },
	{ "max_model_body", "max-model-body", OPT_SIZE, OFF(max_model_body), "512M", "SIZE",
	  "largest body of a model upload or repository load (admin endpoints only)", NULL },
	{ "max_elements", "max-elements", OPT_SIZE, OFF(max_elements), "16M", "N",
	  "largest tensor in a request, in elements (413 beyond)", NULL },
	{ "max_output_elements", "max-output-elements", OPT_SIZE, OFF(max_output_elements), "16M",
	  "N", "largest output or intermediate tensor, in elements (413 beyond)", NULL },
	{ "max_inflight_bytes", "max-inflight-bytes", OPT_SIZE, OFF(max_inflight_bytes), "256M",
	  "SIZE", "request bytes held at once, received to replied (503 beyond)", NULL },
	{ "max_connections", "max-connections", OPT_UINT, OFF(max_connections), "256", "N",
	  "concurrent client connections", NULL },
	{ "grpc_max_streams", "grpc-max-streams", OPT_UINT, OFF(grpc_max_streams), "64", "N",
	  "concurrent gRPC calls (HTTP/2 streams) per connection", NULL },
	{ "per_ip_connections", "per-ip-connections", OPT_UINT, OFF(per_ip_connections), "64", "N",
	  "concurrent connections from one address (0: no limit)", NULL },
	{ "connection_timeout", "connection-timeout", OPT_UINT, OFF(connection_timeout), "30",
	  "SEC", "close connections idle this long (an inactivity timeout, not a deadline)", NULL },
	{ "request_timeout", "request-timeout", OPT_UINT, OFF(request_timeout), "0", "MS",
	  "deadline of every compute request from its arrival (0: none); a request's own "
	  "timeout may lower it, never raise it",
	  "Past it a request is refused or abandoned with 504 (docs/API.md, Deadlines)." },
	{ "ignore_client_abort", "ignore-client-abort", OPT_BOOL, OFF(ignore_client_abort), "false",
	  "BOOL",
	  "keep computing for clients that half-closed (FIN); false abandons their work as soon "
	  "as they close",
	  "A reset connection is abandoned either way." },
	{ "fast_weights_budget", "fast-weights-budget", OPT_SIZE, OFF(fast_weights_budget), "1G",
	  "SIZE",
	  "memory for the transformed weights of minimal filtering, all models together (0: "
	  "none; every layer then runs im2col)",
	  "A layer whose weights would pass it runs im2col, with a warning in the log." },
	{ "buffer_cache", "buffer-cache", OPT_SIZE, OFF(buffer_cache), "64M", "SIZE",
	  "memory kept for reuse from freed tensors of 128 KiB or more (0: none)",
	  "Large tensors written again into kept memory fault no pages in; the memory stays "
	  "resident (atrousd_buffer_cache_bytes)." },
	{ "drain_timeout", "drain-timeout", OPT_UINT, OFF(drain_timeout), "25", "SEC",
	  "on SIGTERM, wait this long for requests in flight, then abandon the rest", NULL },
	{ "retry_after", "retry-after", OPT_UINT, OFF(retry_after), "1", "SEC",
	  "Retry-After sent with 503 replies", NULL },
};

#define NOPTIONS (sizeof(options) / sizeof(options[0]))

static const struct option_def *find_key(const char *key)
{
	size_t i;

	for (i = 0; i < NOPTIONS; i++)
		if (strcmp(options[i].key, key) == 0)
			return &options[i];
	return NULL;
}

static int parse_u64(const char *s, int sized, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (*s == '-' || *s == '\0')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s)
		return -EINVAL;
	if (sized && *end != '\0') {
		int shift = *end == 'K' || *end == 'k'   ? 10
		            : *end == 'M' || *end == 'm' ? 20
		            : *end == 'G' || *end == 'g' ? 30
		                                         : -1;

		if (shift < 0 || end[1] != '\0' || v > (UINT64_MAX >> shift))
			return -EINVAL;
		v <<= shift;
	} else if (*end != '\0') {
		return -EINVAL;
	}
	*out = v;
	return 0;
}

static int set_option(struct config *c, const struct option_def *o, const char *value, char *err)
{
	char *base = (char *)c + o->offset;
	uint64_t v;

	switch (o->type) {
	case OPT_STRING: {
		char *copy = strdup(value);

		if (copy == NULL)
			return err_set(err, -ENOMEM, "out of memory");
		free(*(char **)base);
		*(char **)base = copy;
		return 0;
	}
	case OPT_UINT:
		if (parse_u64(value, 0, &v) < 0 || v > 1000000)
			return err_set(err, -EINVAL,
			               "%s: \"%.64s\" is not an integer from 0 to 1000000", o->key,
			               value);
		*(unsigned *)base = (unsigned)v;
		return 0;
	case OPT_BOOL: {
		static const char *const yes[] = { "true", "yes", "on", "1" }, *const no[] = {
			"false", "no", "off", "0"
		};
		size_t i;

		for (i = 0; i < 4; i++)
			if (strcmp(value, yes[i]) == 0 || strcmp(value, no[i]) == 0) {
				*(int *)base = strcmp(value, yes[i]) == 0;
				return 0;
			}
		return err_set(err, -EINVAL, "%s: \"%.64s\" is not true or false", o->key, value);
	}
	case OPT_SIZE:
		if (parse_u64(value, 1, &v) < 0)
			return err_set(err, -EINVAL,
			               "%s: \"%.64s\" is not a size (e.g. 512K, 64M, 1G)", o->key,
			               value);
		*(uint64_t *)base = v;
		return 0;
	}
	return -EINVAL;
}

int config_set(struct config *c, const char *key, const char *value, char *err)
{
	const struct option_def *o = find_key(key);

	if (o == NULL)
		return err_set(err, -EINVAL, "unknown key \"%.64s\"", key);
	return set_option(c, o, value, err);
}

void config_defaults(struct config *c)
{
	size_t i;

	memset(c, 0, sizeof(*c));
	for (i = 0; i < NOPTIONS; i++)
		set_option(c, &options[i], options[i].def, NULL);
}

void config_clear(struct config *c)
{
	size_t i;

	for (i = 0; i < NOPTIONS; i++)
		if (options[i].type == OPT_STRING) {
			char **p = (char **)((char *)c + options[i].offset);

			free(*p);
			*p = NULL;
		}
	free(c->config_file);
	c->config_file = NULL;
}

struct ini_ctx {
	struct config *c;
	char *err;
	int failed;
};

static int on_ini_line(void *user, const char *section, const char *name, const char *value)
{
	struct ini_ctx *ctx = user;

	if (ctx->failed)
		return 0;
	if (section[0] != '\0') {
		err_set(ctx->err, -EINVAL, "sections are not used (found [%.64s])", section);
		ctx->failed = 1;
		return 0;
	}
	if (config_set(ctx->c, name, value, ctx->err) < 0) {
		ctx->failed = 1;
		return 0;
	}
	return 1;
}

int config_load_file(struct config *c, const char *path, char *err)
{
	struct ini_ctx ctx = { c, err, 0 };
	char msg[ERR_LEN] = "syntax error";
	int line;

	ctx.err = msg;
	line = ini_parse(path, on_ini_line, &ctx);
	if (line == -1)
		return err_set(err, -ENOENT, "%s: cannot open", path);
	if (line == -2)
		return err_set(err, -ENOMEM, "%s: out of memory", path);
	if (line != 0)
		return err_set(err, -EINVAL, "%s:%d: %s", path, line, msg);
	return 0;
}

int config_load_string(struct config *c, const char *text, char *err)
{
	struct ini_ctx ctx = { c, err, 0 };
	char msg[ERR_LEN] = "syntax error";
	int line;

	ctx.err = msg;
	line = ini_parse_string(text, on_ini_line, &ctx);
	if (line == -2)
		return err_set(err, -ENOMEM, "out of memory");
	if (line != 0)
		return err_set(err, -EINVAL, "line %d: %s", line, msg);
	return 0;
}

/* The actions: getopt's table, the dispatch below and --help read this. */
static const struct action {
	const char *flag;
	int val; /* getopt's value, and the short option if is_short */
	int is_short;
	const char *metavar; /* NULL: no value */
	enum config_action action;
	const char *help;
} actions[] = {
	{ "config", 'c', 1, "FILE", CONFIG_RUN, "read settings from FILE; flags override it" },
	{ "check-config", 'C', 0, NULL, CONFIG_CHECK, "validate the settings and exit" },
	{ "print-sample-config", 'S', 0, NULL, CONFIG_SAMPLE,
	  "print a documented config file (conf/atrousd.conf) and exit" },
	{ "print-man-keys", 'M', 0, NULL, CONFIG_MAN,
	  "print the keys as man(7) entries for atrousd.conf(5) and exit" },
	{ "help", 'h', 1, NULL, CONFIG_HELP, "show this help and exit" },
	{ "version", 'V', 1, NULL, CONFIG_VERSION, "show the version and exit" },
};
#define NACTIONS (sizeof(actions) / sizeof(actions[0]))

static const struct action *find_action(int val)
{
	size_t i;

	for (i = 0; i < NACTIONS; i++)
		if (actions[i].val == val)
			return &actions[i];
	return NULL;
}

/* Long options: every table entry plus the actions. */
static struct option *make_longopts(void)
{
	struct option *lo = calloc(NOPTIONS + NACTIONS + 1, sizeof(*lo));
	size_t i;

	if (lo == NULL)
		return NULL;
	for (i = 0; i < NOPTIONS; i++)
		lo[i] = (struct option){ options[i].flag, required_argument, NULL, 1000 + (int)i };
	for (i = 0; i < NACTIONS; i++)
		lo[NOPTIONS + i] =
		        (struct option){ actions[i].flag,
			                 actions[i].metavar ? required_argument : no_argument, NULL,
			                 actions[i].val };
	return lo;
}

int config_load_args(struct config *c, int argc, char **argv, enum config_action *action, char *err)
{
	struct option *lo = make_longopts();
	const struct action *act;
	char shortopts[2 * NACTIONS + 2] = ":", *p = shortopts + 1;
	int opt, rc = 0, pass;
	size_t i;

	*action = CONFIG_RUN;
	if (lo == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	for (i = 0; i < NACTIONS; i++) {
		if (!actions[i].is_short)
			continue;
		*p++ = (char)actions[i].val;
		if (actions[i].metavar)
			*p++ = ':';
	}
	*p = '\0';
	opterr = 0;
	/* Pass 0 finds --config and the actions; pass 1 applies the rest on top. */
	for (pass = 0; pass < 2 && rc == 0; pass++) {
		optind = 1;
		while (rc == 0 && (opt = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
			act = opt < 1000 ? find_action(opt) : NULL;
			if (opt == '?' || opt == ':') {
				rc = err_set(err, -EINVAL, "%s option '%s' (see --help)",
				             opt == ':' ? "missing value for" : "unknown",
				             argv[optind - 1]);
			} else if (pass == 0 && opt == 'c') {
				free(c->config_file);
				c->config_file = strdup(optarg);
				rc = c->config_file ? config_load_file(c, optarg, err) : -ENOMEM;
			} else if (pass == 0 && act != NULL) {
				*action = act->action;
			} else if (pass == 1 && opt >= 1000) {
				rc = set_option(c, &options[opt - 1000], optarg, err);
			}
		}
		if (rc == 0 && optind < argc)
			rc = err_set(err, -EINVAL, "unexpected argument '%s'", argv[optind]);
	}
	free(lo);
	return rc;
}

int config_validate(const struct config *c, char *err)
{
	enum log_level level;
	enum log_format format;

	if (log_parse_level(c->log_level, &level) < 0)
		return err_set(err, -EINVAL,
		               "log_level: \"%.32s\" is not error, warn, info or debug",
		               c->log_level);
	if (log_parse_format(c->log_format, &format) < 0)
		return err_set(err, -EINVAL, "log_format: \"%.32s\" is not text or json",
		               c->log_format);
	if ((c->tls_cert_file[0] == '\0') != (c->tls_key_file[0] == '\0'))
		return err_set(err, -EINVAL, "tls_cert_file and tls_key_file go together");
	if (c->tls_ca_file[0] != '\0' && c->tls_cert_file[0] == '\0')
		return err_set(err, -EINVAL, "tls_ca_file needs tls_cert_file and tls_key_file");
	if (strcmp(c->admin_plaintext, "deny") != 0 && strcmp(c->admin_plaintext, "allow") != 0)
		return err_set(err, -EINVAL, "admin_plaintext: \"%.32s\" is not deny or allow",
		               c->admin_plaintext);
	if (c->io_threads < 1)
		return err_set(err, -EINVAL, "io_threads must be at least 1");
	if (c->max_queue < 1)
		return err_set(err, -EINVAL, "max_queue must be at least 1");
	if (c->spin_us > 10000)
		return err_set(err, -EINVAL, "spin_us must be at most 10000");
	if (c->max_body < 1024)
		return err_set(err, -EINVAL, "max_body must be at least 1K");
	if (c->max_elements < 1 || c->max_output_elements < 1)
		return err_set(err, -EINVAL,
		               "max_elements and max_output_elements must be positive");
	if (c->max_inflight_bytes < c->max_body)
		return err_set(
		        err, -EINVAL, "max_inflight_bytes (%llu) must be at least max_body (%llu)",
		        (unsigned long long)c->max_inflight_bytes, (unsigned long long)c->max_body);
	if (c->max_connections < 1)
		return err_set(err, -EINVAL, "max_connections must be at least 1");
	if (c->grpc_max_streams < 1)
		return err_set(err, -EINVAL, "grpc_max_streams must be at least 1");
	if (c->models_dir[0] != '\0' && access(c->models_dir, R_OK | X_OK) != 0)
		return err_set(err, -ENOENT, "models_dir %s is not a readable directory",
		               c->models_dir);
	if (c->admin_token_file[0] != '\0' && access(c->admin_token_file, R_OK) != 0)
		return err_set(err, -ENOENT, "admin_token_file %s is not readable",
		               c->admin_token_file);
	return 0;
}

void config_print_help(FILE *f)
{
	size_t i;

	fprintf(f, "Usage: atrousd [OPTIONS]\n\n"
	           "Serve TensorFlow-exact atrous convolution and ASPP over HTTP.\n\n"
	           "Options (each also a key of the config file, with '_' for '-'):\n");
	for (i = 0; i < NOPTIONS; i++) {
		char left[64];

		snprintf(left, sizeof(left), "--%s %s", options[i].flag, options[i].metavar);
		fprintf(f, "  %-34s %s (default: %s)\n", left, options[i].help,
		        options[i].def[0] ? options[i].def : "empty");
	}
	fprintf(f, "\nActions:\n");
	for (i = 0; i < NACTIONS; i++) {
		const struct action *a = &actions[i];
		char left[64];
		int n = 0;

		if (a->is_short)
			n = snprintf(left, sizeof(left), "-%c, ", a->val);
		snprintf(left + n, sizeof(left) - (size_t)n, "--%s%s%s", a->flag,
		         a->metavar ? " " : "", a->metavar ? a->metavar : "");
		fprintf(f, "  %-34s %s\n", left, a->help);
	}
}

void config_print_sample(FILE *f)
{
	size_t i;

	fprintf(f, "# atrousd.conf - settings of the atrousd daemon.\n"
	           "#\n"
	           "# Format: \"key = value\" lines; '#' starts a comment line. Sizes accept\n"
	           "# K, M and G suffixes (powers of 1024). Command-line flags override this\n"
	           "# file (--key-name for key_name). Every key is listed with its default.\n"
	           "# This file is generated by 'atrousd --print-sample-config'.\n");
	for (i = 0; i < NOPTIONS; i++) {
		fprintf(f, "\n# %s.\n", options[i].help);
		if (options[i].doc != NULL)
			fprintf(f, "# %s\n", options[i].doc);
		fprintf(f, "%s = %s\n", options[i].key, options[i].def);
	}
}

/* Text with roff's special characters escaped: '-' and '\\'. */
static void roff(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '-' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
}

void config_print_man(FILE *f)
{
	size_t i;

	for (i = 0; i < NOPTIONS; i++) {
		fputs(".TP\n.B ", f);
		roff(f, options[i].key);
		fputs(" = \\fI", f);
		roff(f, options[i].metavar);
		fputs("\\fR\n", f);
		roff(f, options[i].help);
		fputs(".\n", f);
		if (options[i].doc != NULL) {
			roff(f, options[i].doc);
			fputc('\n', f);
		}
		fputs("Default: ", f);
		if (options[i].def[0])
			roff(f, options[i].def);
		else
			fputs("empty", f);
		fputs(". Flag: \\fB\\-\\-", f);
		roff(f, options[i].flag);
		fputs("\\fR.\n", f);
	}
}
