/* atrousd.c - the daemon's main: settings, subsystems in order, signals.
 *
 * Start: config -> pool -> listen socket -> HTTP -> ready.  SIGTERM/SIGINT:
 * readiness 503, stop accepting, drain in-flight requests, tear down in
 * reverse order, exit 0.
 */
#include "autoconfig.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "config.h"
#include "error.h"
#include "http.h"
#include "log.h"
#include "model.h"
#include "pool.h"

static int write_port_file(const char *path, int port, char *err)
{
	char tmp[4096];
	FILE *f;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return err_set(err, -ENAMETOOLONG, "port_file path too long");
	f = fopen(tmp, "w");
	if (f == NULL)
		return err_set(err, -errno, "port_file %s: %s", tmp, strerror(errno));
	fprintf(f, "%d\n", port);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		unlink(tmp);
		return err_set(err, -EIO, "port_file %s: cannot write", path);
	}
	return 0;
}

static int serve(struct config *cfg)
{
	struct models *models = NULL;
	struct pool *pool = NULL;
	struct http *http = NULL;
	size_t loaded, failed;
	struct api api = { 0 };
	char err[ERR_LEN], bound[160];
	sigset_t sigs;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int threads = cfg->threads ? (int)cfg->threads : (ncpu > 0 ? (int)ncpu : 1);
	int fd = -1, port, sig, rc;

	/* Signals are taken synchronously by this thread only. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	json_object_seed(0);

	api.cfg = cfg;
	api.state = API_STARTING;
	rc = api_load_token(&api, err);
	if (rc == 0)
		rc = models_new(&models, cfg->models_dir, (int64_t)cfg->max_elements, err);
	if (rc < 0)
		goto fail;
	api.models = models;
	rc = models_reload(models, &loaded, &failed);
	if (rc < 0) {
		err_set(err, rc, "models_dir %s cannot be read", cfg->models_dir);
		goto fail;
	}
	if (cfg->models_dir[0] != '\0')
		log_info("models: %zu loaded, %zu failed", loaded, failed);
	rc = pool_new(&pool, threads, cfg->max_queue, err);
	if (rc == 0)
		rc = http_listen(cfg->listen, &fd, bound, sizeof(bound), &port, err);
	if (rc < 0)
		goto fail;
	api.runner = pool_runner(pool);
	rc = http_start(&http, &api, pool, cfg, fd, err);
	if (rc < 0) {
		close(fd);
		goto fail;
	}
	__atomic_store_n(&api.state, API_READY, __ATOMIC_RELEASE);
	log_info("listening on %s (%d workers, max_queue %u)", bound, threads, cfg->max_queue);
	if (cfg->port_file[0] != '\0' && (rc = write_port_file(cfg->port_file, port, err)) < 0)
		goto fail;
	for (;;) {
		if (sigwait(&sigs, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			if (models_reload(models, &loaded, &failed) == 0)
				log_info(
				        "SIGHUP: reloaded, %zu model(s) served, %zu failed to load",
				        loaded, failed);
			continue;
		}
		break;
	}
	log_info("%s: draining (up to %us)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
	         cfg->drain_timeout);
	__atomic_store_n(&api.state, API_DRAINING, __ATOMIC_RELEASE);
	{
		size_t left = http_drain(http, cfg->drain_timeout);

		if (left > 0)
			log_warn("drain timeout: %zu request(s) answered 503", left);
	}
	http_stop(http);
	/* A computation that outlived the deadline (its client already has a
	 * 503) is allowed to finish: workers are joined, nothing is torn down
	 * under them. */
	if (pool_running(pool) > 0)
		log_warn("waiting for a computation that outlived drain_timeout");
	pool_free(pool);
	models_free(models);
	free(api.admin_token);
	log_info("stopped");
	return 0;
fail:
	log_error("%s", err);
	http_stop(http);
	pool_free(pool);
	models_free(models);
	free(api.admin_token);
	return 1;
}

int main(int argc, char **argv)
{
	enum config_action action;
	enum log_level level;
	struct config cfg;
	char err[ERR_LEN];
	int rc;

	config_defaults(&cfg);
	rc = config_load_args(&cfg, argc, argv, &action, err);
	if (rc < 0) {
		fprintf(stderr, "atrousd: %s\n", err);
		config_clear(&cfg);
		return 2;
	}
	switch (action) {
	case CONFIG_HELP:
		config_print_help(stdout);
		config_clear(&cfg);
		return 0;
	case CONFIG_VERSION:
		printf("atrousd %s\n", PACKAGE_VERSION);
		config_clear(&cfg);
		return 0;
	case CONFIG_SAMPLE:
		config_print_sample(stdout);
		config_clear(&cfg);
		return 0;
	default: break;
	}
	rc = config_validate(&cfg, err);
	if (rc < 0) {
		fprintf(stderr, "atrousd: %s\n", err);
		config_clear(&cfg);
		return 1;
	}
	if (action == CONFIG_CHECK) {
		printf("atrousd: configuration OK\n");
		config_clear(&cfg);
		return 0;
	}
	log_parse_level(cfg.log_level, &level);
	log_set_level(level);
	rc = serve(&cfg);
	config_clear(&cfg);
	return rc;
}
