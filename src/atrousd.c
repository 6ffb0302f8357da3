/* SPDX-License-Identifier: MIT */
/* atrousd.c - the daemon's main: settings, subsystems in order, signals.
 *
 * Start: config -> metrics, models, pool, api -> models loaded -> listen
 * socket (or the one systemd passed) -> HTTP -> READY=1.  SIGHUP reloads the
 * models.  SIGTERM/SIGINT: STOPPING=1, readiness 503, stop accepting, drain
 * in-flight requests, tear down in reverse order, exit 0.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <netdb.h>

#include "api.h"
#include "config.h"
#include "cpus.h"
#include "error.h"
#include "fast.h"
#include "h2.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "models.h"
#include "notify.h"
#include "pool.h"
#include "sock.h"
#include "tensor.h"
#include "tls.h"

/* Extra start-up time asked for before each model is loaded. */
#define LOAD_EXTEND_USEC (60u * 1000000u)

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

static void on_model_load(void *arg, const char *name)
{
	char status[128];

	snprintf(status, sizeof(status), "loading model %s", name);
	notify_extend_timeout(LOAD_EXTEND_USEC);
	notify_status(status);
}

/* The address of a socket systemd passed, for the log. */
static void describe_fd(int fd, char *bound, size_t len, int *port)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char h[NI_MAXHOST], p[NI_MAXSERV];

	*port = 0;
	snprintf(bound, len, "fd %d", fd);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), p, sizeof(p),
	                NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
		snprintf(bound, len, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, p);
		*port = atoi(p);
	}
}

/* Signals arrive through a pipe: a handler may run on any thread (libraries
 * start threads before main can block anything), the main loop reads them. */
static int signal_pipe[2] = { -1, -1 };

static void on_signal(int sig)
{
	unsigned char c = (unsigned char)sig;
	int saved = errno;

	if (write(signal_pipe[1], &c, 1) < 0) {
		/* The pipe is full: signals are already pending. */
	}
	errno = saved;
}

static int catch_signals(char *err)
{
	struct sigaction sa;

	if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return err_set(err, -errno, "pipe: %s", strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

/* The watchdog's view of the queue between two pings. */
struct watchdog {
	uint64_t last_done; /* jobs completed at the last look */
	int stalled;        /* looks in a row with jobs queued and none completed */
};

/* Wait for a signal; with a watchdog, wake up to ping it while the workers
 * make progress (a stuck queue stops the pings and lets systemd restart us). */
static int wait_signal(struct pool *pool, struct watchdog *wd, uint64_t wd_usec)
{
	struct pollfd pfd = { signal_pipe[0], POLLIN, 0 };
	/* Ping every half interval (at least every millisecond). */
	int timeout = wd_usec == 0 ? -1 : wd_usec < 2000 ? 1 : (int)(wd_usec / 2 / 1000);

	for (;;) {
		unsigned char c;
		struct pool_counts now;
		int n = poll(&pfd, 1, timeout);

		if (n > 0 && read(signal_pipe[0], &c, 1) == 1)
			return c;
		if (n < 0 || wd_usec == 0)
			continue;
		now = pool_counts(pool);
		wd->stalled =
		        now.queued > 0 && now.completed == wd->last_done ? wd->stalled + 1 : 0;
		wd->last_done = now.completed;
		if (wd->stalled < 2)
			notify_watchdog();
		else
			log_error("watchdog: the queue has not moved for %d intervals",
			          wd->stalled);
	}
}

/* What serve() starts, torn down in reverse. */
struct daemon {
	struct tls *tls; /* NULL: plain HTTP */
	struct metrics *metrics;
	struct models *models;
	struct pool *pool;
	struct api *api;
	struct http *http, *mhttp;
	struct h2 *grpc;
};

static void daemon_stop(struct daemon *d)
{
	h2_stop(d->grpc);
	http_stop(d->mhttp);
	http_stop(d->http);
	/* A computation that outlived the drain deadline (its client already
	 * has a 503) is allowed to finish: workers are joined, nothing is torn
	 * down under them. */
	if (d->pool != NULL && pool_counts(d->pool).running > 0)
		log_warn("waiting for a computation that outlived drain_timeout");
	pool_free(d->pool);
	api_free(d->api);
	models_free(d->models);
	metrics_free(d->metrics);
	tls_free(d->tls);
	tensor_cache_drop(); /* the large blocks kept for reuse */
}

/* Metrics, models, pool, api, then the models loaded. */
/* fast.c's word when the transformed-weights budget refuses a layer. */
static void fast_warning(const char *msg)
{
	log_warn("%s", msg);
}

static int start_core(struct daemon *d, const struct config *cfg, char *err)
{
	size_t loaded, failed;
	struct cpus cpus;
	int threads, rc;

	cpus_detect("", &cpus);
	threads = cfg->threads ? (int)cfg->threads : cpus.usable;
	if (cfg->threads == 0)
		log_info("workers: %d (%s)", threads, cpus.why);

	fast_set_budget((size_t)cfg->fast_weights_budget);
	tensor_set_cache((size_t)cfg->buffer_cache);
	fast_set_warn(fast_warning);
	if (metrics_new(&d->metrics) < 0)
		return err_set(err, -ENOMEM, "out of memory");
	rc = models_new(&d->models, cfg->models_dir, (int64_t)cfg->max_elements, err);
	if (rc == 0)
		rc = pool_new(&d->pool, threads, cfg->max_queue, err);
	if (rc == 0)
		pool_set_spin(d->pool, cfg->spin_us);
	if (rc == 0)
		rc = api_new(&d->api, cfg, d->pool, d->models, d->metrics, err);
	if (rc < 0)
		return rc;
	models_set_progress(d->models, on_model_load, NULL);
	if (cfg->models_dir[0] != '\0') {
		notify_status("loading models");
		api_reload(d->api, "models", &loaded, &failed);
	}
	return 0;
}

/* The HTTP listener (systemd's socket or our own) and the metrics one. */
static int start_http(struct daemon *d, const struct config *cfg, char *bound, size_t len,
                      int *port, char *err)
{
	char mbound[160];
	int fd, mfd, mport, rc;

	if (cfg->tls_cert_file[0] != '\0' &&
	    (rc = tls_new(&d->tls, cfg->tls_cert_file, cfg->tls_key_file, cfg->tls_ca_file, err)) <
	            0)
		return rc;
	rc = notify_listen_fd(&fd, err);
	if (rc < 0)
		return rc;
	if (fd >= 0)
		describe_fd(fd, bound, len, port);
	else if ((rc = sock_listen(cfg->listen, &fd, bound, len, port, err)) < 0)
		return rc;
	rc = http_start(&d->http, d->api, d->pool, cfg, fd, 0, d->tls, err);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	if (cfg->grpc_listen[0] != '\0') {
		int gfd, gport;
		char gbound[160];

		rc = sock_listen(cfg->grpc_listen, &gfd, gbound, sizeof(gbound), &gport, err);
		if (rc < 0)
			return rc;
		rc = h2_start(&d->grpc, d->api, d->pool, cfg, gfd, d->tls, err);
		if (rc < 0) {
			close(gfd);
			return rc;
		}
		log_info("gRPC on %s%s", gbound, d->tls ? " over TLS" : "");
	}
	if (cfg->metrics_listen[0] == '\0')
		return 0;
	rc = sock_listen(cfg->metrics_listen, &mfd, mbound, sizeof(mbound), &mport, err);
	if (rc < 0)
		return rc;
	rc = http_start(&d->mhttp, d->api, d->pool, cfg, mfd, 1, NULL, err);
	if (rc < 0) {
		close(mfd);
		return rc;
	}
	log_info("metrics on %s", mbound);
	return 0;
}

/* SIGTERM/SIGINT: readiness 503, drain within drain_timeout. */
static void drain(struct daemon *d, const struct config *cfg, int sig)
{
	size_t left;

	log_info("%s: draining (up to %us)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
	         cfg->drain_timeout);
	notify_stopping("draining requests in flight");
	api_set_state(d->api, API_DRAINING);
	left = http_drain(d->http, cfg->drain_timeout);
	if (left > 0)
		log_warn("drain timeout: %zu request(s) answered 503", left);
	/* Both listeners drained together: the HTTP wait above let gRPC calls
	 * finish too; what is left of them gets the rest of a short grace. */
	left = h2_drain(d->grpc, 1);
	if (left > 0)
		log_warn("drain timeout: %zu gRPC call(s) answered UNAVAILABLE", left);
	if (d->mhttp != NULL)
		http_drain(d->mhttp, 1);
}

static int serve(const struct config *cfg)
{
	struct daemon d = { 0 };
	struct watchdog wd = { 0 };
	char err[ERR_LEN], bound[160], status[256];
	size_t loaded, failed;
	int port = 0, sig;

	if (catch_signals(err) < 0 || start_core(&d, cfg, err) < 0 ||
	    start_http(&d, cfg, bound, sizeof(bound), &port, err) < 0)
		goto fail;
	api_set_state(d.api, API_READY);
	log_info("listening on %s%s (%d workers, max_queue %u)", bound,
	         d.tls == NULL         ? ""
	         : cfg->tls_ca_file[0] ? " with HTTPS and client certificates"
	                               : " with HTTPS",
	         pool_workers(d.pool), cfg->max_queue);
	if (cfg->port_file[0] != '\0' && write_port_file(cfg->port_file, port, err) < 0)
		goto fail;
	snprintf(status, sizeof(status), "serving %zu model(s) on %s with %d workers",
	         models_count(d.models), bound, pool_workers(d.pool));
	notify_ready(status);
	while ((sig = wait_signal(d.pool, &wd, notify_watchdog_usec())) == SIGHUP) {
		notify_status("reloading models");
		api_reload(d.api, "SIGHUP", &loaded, &failed);
		if (d.tls != NULL && tls_reload(d.tls, err) < 0)
			log_error("SIGHUP: keeping the certificate in force: %s", err);
		else if (d.tls != NULL)
			log_info("SIGHUP: certificate and key re-read");
	}
	drain(&d, cfg, sig);
	daemon_stop(&d);
	log_info("stopped");
	return 0;
fail:
	log_error("%s", err);
	daemon_stop(&d);
	return 1;
}

int main(int argc, char **argv)
{
	enum config_action action;
	enum log_level level;
	enum log_format format;
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
	case CONFIG_MAN:
		config_print_man(stdout);
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
		/* The certificate pair too, so that ExecStartPre catches it. */
		struct tls *tls = NULL;

		if (cfg.tls_cert_file[0] != '\0' &&
		    tls_new(&tls, cfg.tls_cert_file, cfg.tls_key_file, cfg.tls_ca_file, err) < 0) {
			fprintf(stderr, "atrousd: %s\n", err);
			config_clear(&cfg);
			return 1;
		}
		tls_free(tls);
		printf("atrousd: configuration OK\n");
		config_clear(&cfg);
		return 0;
	}
	log_parse_level(cfg.log_level, &level);
	log_set_level(level);
	log_parse_format(cfg.log_format, &format);
	log_set_format(format);
	rc = serve(&cfg);
	config_clear(&cfg);
	return rc;
}
