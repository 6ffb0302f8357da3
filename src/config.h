/* SPDX-License-Identifier: MIT */
/* config.h - atrousd's settings: one option table drives the config file
 * parser, the command line, --help and the sample conf/atrousd.conf.
 *
 *	struct config cfg;
 *	config_defaults(&cfg);
 *	rc = config_load_args(&cfg, argc, argv, &action, err);  // file, then flags
 *	...
 *	config_clear(&cfg);
 *
 * The file is INI without sections: "key = value", '#' starts a comment line.
 * Sizes take K, M or G suffixes (powers of 1024).
 */
#ifndef ATROUSD_CONFIG_H
#define ATROUSD_CONFIG_H

#include <stdint.h>
#include <stdio.h>

struct config {
	char *listen;
	char *metrics_listen;
	char *grpc_listen;
	char *port_file;
	char *models_dir;
	char *admin_token_file;
	char *tls_cert_file, *tls_key_file, *tls_ca_file;
	char *admin_plaintext;
	char *log_level;
	char *log_format;
	char *config_file;
	unsigned threads;
	unsigned io_threads;
	unsigned spin_us;
	unsigned max_queue;
	uint64_t max_body;
	uint64_t max_model_body;
	uint64_t max_elements;
	uint64_t max_output_elements;
	uint64_t max_inflight_bytes;
	unsigned max_connections;
	unsigned grpc_max_streams;
	unsigned per_ip_connections;
	unsigned connection_timeout;
	unsigned request_timeout; /* ms, 0: none */
	int ignore_client_abort;
	uint64_t fast_weights_budget; /* bytes */
	uint64_t buffer_cache;        /* bytes */
	unsigned drain_timeout;
	unsigned retry_after;
};

enum config_action {
	CONFIG_RUN,
	CONFIG_CHECK,
	CONFIG_HELP,
	CONFIG_VERSION,
	CONFIG_SAMPLE,
	CONFIG_MAN
};

/* Fill in the documented defaults. */
void config_defaults(struct config *c);

/* Read the INI file at path into c; errors name the file and line. */
int config_load_file(struct config *c, const char *path, char *err);

/* Read settings from INI text (as config_load_file does from a file). */
int config_load_string(struct config *c, const char *text, char *err);

/* Apply the command line: --config first (the file), then every other flag
 * overrides it.  *action says what main should do. */
int config_load_args(struct config *c, int argc, char **argv, enum config_action *action,
                     char *err);

/* Set one key from text, as the file would; 0 or -EINVAL with a message. */
int config_set(struct config *c, const char *key, const char *value, char *err);

/* Check values that must agree with each other or with the system. */
int config_validate(const struct config *c, char *err);

/* Print --help, generated from the option table. */
void config_print_help(FILE *f);

/* Print the sample configuration file, generated from the option table. */
void config_print_sample(FILE *f);

/* Print the keys as man(7) .TP entries, for atrousd.conf(5). */
void config_print_man(FILE *f);

/* Free the strings in c. */
void config_clear(struct config *c);

#endif
