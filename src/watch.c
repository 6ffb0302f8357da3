/* SPDX-License-Identifier: MIT */
/* watch.c - one epoll thread for closed peers, a timerfd for deadlines. */
#include "autoconfig.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "watch.h"

/* Keys of the thread's own descriptors (request keys start at 1). */
#define KEY_WAKE  UINT64_MAX
#define KEY_TIMER (UINT64_MAX - 1)

struct watch {
	struct watch_ops ops;
	void *ctx;
	int ep, wake, timer;
	int stop; /* atomic */
	pthread_t thread;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Fire the timer at next (0: never; a time passed: at once). */
static void arm(int timer, uint64_t next)
{
	struct itimerspec it = { { 0, 0 }, { 0, 0 } };

	if (next != 0) {
		if (next <= now_ns())
			next = now_ns() + 1;
		it.it_value.tv_sec = (time_t)(next / 1000000000u);
		it.it_value.tv_nsec = (long)(next % 1000000000u);
	}
	timerfd_settime(timer, TFD_TIMER_ABSTIME, &it, NULL);
}

static void drain_fd(int fd)
{
	uint64_t v;

	while (read(fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
		;
}

static void *watch_main(void *arg)
{
	struct watch *w = arg;
	struct epoll_event ev[32];
	int i, n;

	while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
		n = epoll_wait(w->ep, ev, 32, -1);
		for (i = 0; i < n; i++) {
			uint64_t key = ev[i].data.u64;

			if (key == KEY_WAKE)
				drain_fd(w->wake);
			else if (key == KEY_TIMER)
				drain_fd(w->timer);
			else
				w->ops.on_gone(w->ctx, key);
		}
		if (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE))
			arm(w->timer, w->ops.on_tick(w->ctx, now_ns()));
	}
	return NULL;
}

static int add_own(struct watch *w, int fd, uint64_t key)
{
	struct epoll_event ev = { .events = EPOLLIN };

	ev.data.u64 = key;
	return epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev);
}

int watch_new(struct watch **out, const struct watch_ops *ops, void *ctx, char *err)
{
	struct watch *w = calloc(1, sizeof(*w));
	int rc;

	*out = NULL;
	if (w == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	w->ops = *ops;
	w->ctx = ctx;
	w->ep = epoll_create1(EPOLL_CLOEXEC);
	w->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	w->timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (w->ep < 0 || w->wake < 0 || w->timer < 0 || add_own(w, w->wake, KEY_WAKE) < 0 ||
	    add_own(w, w->timer, KEY_TIMER) < 0) {
		rc = -errno;
		goto fail;
	}
	rc = -pthread_create(&w->thread, NULL, watch_main, w);
	if (rc < 0)
		goto fail;
	*out = w;
	return 0;
fail:
	if (w->ep >= 0)
		close(w->ep);
	if (w->wake >= 0)
		close(w->wake);
	if (w->timer >= 0)
		close(w->timer);
	free(w);
	return err_set(err, rc, "cannot start the connection watcher: %s", strerror(-rc));
}

int watch_add(struct watch *w, uint64_t key, int fd, int flags)
{
	/* One report per registration: a closed peer stays closed. */
	struct epoll_event ev = { .events = EPOLLONESHOT | (flags & WATCH_FIN ? EPOLLRDHUP : 0) };

	ev.data.u64 = key;
	return epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

void watch_del(struct watch *w, int fd)
{
	epoll_ctl(w->ep, EPOLL_CTL_DEL, fd, NULL);
}

void watch_poke(struct watch *w)
{
	uint64_t one = 1;

	if (write(w->wake, &one, sizeof(one)) < 0) {
		/* The counter is full: a wake-up is pending anyway. */
	}
}

void watch_free(struct watch *w)
{
	if (w == NULL)
		return;
	__atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
	watch_poke(w);
	pthread_join(w->thread, NULL);
	close(w->ep);
	close(w->wake);
	close(w->timer);
	free(w);
}
