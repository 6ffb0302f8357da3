/* atrousd.c - the daemon's main: settings, subsystems in order, signals.
 *
 * Start: config -> models -> pool -> listen socket (or the one systemd passed)
 * -> HTTP -> READY=1.  SIGHUP reloads the models.  SIGTERM/SIGINT: STOPPING=1,
 * readiness 503, stop accepting, drain in-flight requests, tear down in
 * reverse order, exit 0.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <jansson.h>
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
#include "error.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "model.h"
#include "notify.h"
#include "pool.h"
#include "sock.h"

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

	(void)arg;
	snprintf(status, sizeof(status), "loading model %s", name);
	notify_extend_timeout(LOAD_EXTEND_USEC);
	notify_status(status);
}

static void reload(struct models *models, const char *why)
{
	size_t loaded, failed;

	notify_status("reloading models");
	if (models_reload(models, &loaded, &failed) == 0) {
		metrics_reload(failed == 0);
		log_info("%s: %zu model(s) served, %zu failed to load", why, loaded, failed);
	} else {
		metrics_reload(0);
	}
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

/* Wait for a signal; with a watchdog, wake up to ping it while the workers
 * make progress (a stuck queue stops the pings and lets systemd restart us). */
static int wait_signal(struct pool *pool, uint64_t wd_usec)
{
	static uint64_t last_done;
	static int stalled;
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
		stalled = now.queued > 0 && now.completed == last_done ? stalled + 1 : 0;
		last_done = now.completed;
		if (stalled < 2)
			notify_watchdog();
		else
			log_error("watchdog: the queue has not moved for %d intervals", stalled);
	}
}

static int serve(struct config *cfg)
{
	struct models *models = NULL;
	struct pool *pool = NULL;
	struct http *http = NULL, *mhttp = NULL;
	struct api api = { 0 };
	char err[ERR_LEN], bound[160], mbound[160], status[256];
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int threads = cfg->threads ? (int)cfg->threads : (ncpu > 0 ? (int)ncpu : 1);
	int fd = -1, mfd = -1, port = 0, mport, sig, rc;
	size_t left;

	if (catch_signals(err) < 0) {
		log_error("%s", err);
		return 1;
	}
	json_object_seed(0);
	metrics_init();

	api.cfg = cfg;
	api.state = API_STARTING;
	rc = api_load_token(&api, err);
	if (rc == 0)
		rc = models_new(&models, cfg->models_dir, (int64_t)cfg->max_elements, err);
	if (rc < 0)
		goto fail;
	api.models = models;
	models_set_progress(models, on_model_load, NULL);
	if (cfg->models_dir[0] != '\0')
		reload(models, "models");
	rc = pool_new(&pool, threads, cfg->max_queue, err);
	if (rc < 0)
		goto fail;
	api.runner = pool_runner(pool);
	api.pool = pool;
	fd = notify_listen_fd(err);
	if (fd == -2) {
		rc = -EINVAL;
		goto fail;
	}
	if (fd >= 0)
		describe_fd(fd, bound, sizeof(bound), &port);
	else if ((rc = sock_listen(cfg->listen, &fd, bound, sizeof(bound), &port, err)) < 0)
		goto fail;
	rc = http_start(&http, &api, pool, cfg, fd, 0, err);
	if (rc < 0) {
		close(fd);
		goto fail;
	}
	if (cfg->metrics_listen[0] != '\0') {
		rc = sock_listen(cfg->metrics_listen, &mfd, mbound, sizeof(mbound), &mport, err);
		if (rc == 0 && (rc = http_start(&mhttp, &api, pool, cfg, mfd, 1, err)) < 0)
			close(mfd);
		if (rc < 0)
			goto fail;
		log_info("metrics on %s", mbound);
	}
	__atomic_store_n(&api.state, API_READY, __ATOMIC_RELEASE);
	log_info("listening on %s (%d workers, max_queue %u)", bound, threads, cfg->max_queue);
	if (cfg->port_file[0] != '\0' && (rc = write_port_file(cfg->port_file, port, err)) < 0)
		goto fail;
	snprintf(status, sizeof(status), "serving %zu model(s) on %s with %d workers",
	         models_count(models), bound, threads);
	notify_ready(status);
	while ((sig = wait_signal(pool, notify_watchdog_usec())) == SIGHUP)
		reload(models, "SIGHUP");
	log_info("%s: draining (up to %us)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
	         cfg->drain_timeout);
	notify_stopping("draining requests in flight");
	__atomic_store_n(&api.state, API_DRAINING, __ATOMIC_RELEASE);
	left = http_drain(http, cfg->drain_timeout);
	if (left > 0)
		log_warn("drain timeout: %zu request(s) answered 503", left);
	if (mhttp != NULL) {
		http_drain(mhttp, 1);
		http_stop(mhttp);
	}
	http_stop(http);
	/* A computation that outlived the deadline (its client already has a
	 * 503) is allowed to finish: workers are joined, nothing is torn down
	 * under them. */
	if (pool_counts(pool).running > 0)
		log_warn("waiting for a computation that outlived drain_timeout");
	pool_free(pool);
	models_free(models);
	free(api.admin_token);
	log_info("stopped");
	return 0;
fail:
	log_error("%s", err);
	http_stop(mhttp);
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
