/* SPDX-License-Identifier: MIT */
/* check_watch.c - the watcher thread: a FIN counts only when asked, a closed
 * peer is reported once, a deleted fd never, deadlines wake it on time. */
#include "autoconfig.h"

#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "runner.h"
#include "watch.h"

struct seen {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t gone[16];
	int ngone;
	uint64_t next;    /* what on_tick returns */
	uint64_t late_at; /* first tick at or after next, once set */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_gone(void *ctx, uint64_t key)
{
	struct seen *s = ctx;

	pthread_mutex_lock(&s->lock);
	if (s->ngone < 16)
		s->gone[s->ngone++] = key;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static uint64_t on_tick(void *ctx, uint64_t now)
{
	struct seen *s = ctx;
	uint64_t next;

	pthread_mutex_lock(&s->lock);
	if (s->next != 0 && now >= s->next) {
		s->late_at = now;
		s->next = 0;
		pthread_cond_broadcast(&s->cond);
	}
	next = s->next;
	pthread_mutex_unlock(&s->lock);
	return next;
}

/* Wait up to ms for n reports; the count then. */
static int wait_gone(struct seen *s, int n, int ms)
{
	struct timespec until;
	int got;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += (long)(ms % 1000) * 1000000;
	until.tv_sec += ms / 1000 + until.tv_nsec / 1000000000;
	until.tv_nsec %= 1000000000;
	pthread_mutex_lock(&s->lock);
	while (s->ngone < n && pthread_cond_timedwait(&s->cond, &s->lock, &until) == 0)
		;
	got = s->ngone;
	pthread_mutex_unlock(&s->lock);
	return got;
}

START_TEST(test_peers)
{
	struct seen s = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, { 0 }, 0, 0, 0 };
	struct watch *w;
	char err[ERR_LEN];
	int a[2], b[2], c[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, c), 0);
	ck_assert_int_eq(watch_new(&w, &(struct watch_ops){ on_gone, on_tick }, &s, err), 0);
	ck_assert_int_eq(watch_add(w, 1, a[0], WATCH_FIN), 0);
	ck_assert_int_eq(watch_add(w, 2, b[0], 0), 0);
	ck_assert_int_eq(watch_add(w, 3, c[0], WATCH_FIN), 0);
	ck_assert_int_lt(watch_add(w, 4, a[0], 0), 0); /* already watched */
	/* Data is not leaving. */
	ck_assert_int_eq(write(a[1], "x", 1), 1);
	ck_assert_int_eq(wait_gone(&s, 1, 100), 0);
	/* A FIN counts where asked... */
	shutdown(a[1], SHUT_WR);
	ck_assert_int_eq(wait_gone(&s, 1, 2000), 1);
	ck_assert_uint_eq(s.gone[0], 1);
	/* ...and not elsewhere; a full close always does. */
	shutdown(b[1], SHUT_WR);
	ck_assert_int_eq(wait_gone(&s, 2, 100), 1);
	close(b[1]);
	ck_assert_int_eq(wait_gone(&s, 2, 2000), 2);
	ck_assert_uint_eq(s.gone[1], 2);
	/* Once per registration; nothing after watch_del. */
	close(a[1]);
	watch_del(w, c[0]);
	close(c[1]);
	ck_assert_int_eq(wait_gone(&s, 3, 150), 2);
	watch_free(w);
	close(a[0]);
	close(b[0]);
	close(c[0]);
}
END_TEST

/* Ask the watcher to tick at due; the time on_tick saw it at or after due. */
static uint64_t tick_at(struct seen *s, struct watch *w, uint64_t due)
{
	uint64_t at;

	pthread_mutex_lock(&s->lock);
	s->next = due;
	s->late_at = 0;
	pthread_mutex_unlock(&s->lock);
	watch_poke(w);
	pthread_mutex_lock(&s->lock);
	while (s->late_at == 0)
		pthread_cond_wait(&s->cond, &s->lock);
	at = s->late_at;
	pthread_mutex_unlock(&s->lock);
	return at;
}

START_TEST(test_deadlines)
{
	struct seen s = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, { 0 }, 0, 0, 0 };
	struct watch *w;
	char err[ERR_LEN];
	uint64_t due, at;
	int i;

	ck_assert_int_eq(watch_new(&w, &(struct watch_ops){ on_gone, on_tick }, &s, err), 0);
	for (i = 0; i < 3; i++) {
		due = now_ns() + (uint64_t)(20 + 20 * i) * 1000000;
		at = tick_at(&s, w, due);
		/* On time: not before, and not long after (a loaded machine may be late). */
		ck_assert_uint_ge(at, due);
		ck_assert_uint_lt(at - due, 500000000u);
	}
	/* A time already past fires at once. */
	due = now_ns();
	at = tick_at(&s, w, due - 1000);
	ck_assert_uint_lt(at - due, 500000000u);
	watch_free(w);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("watch");
	TCase *tc = tcase_create("watch");

	tcase_add_test(tc, test_peers);
	tcase_add_test(tc, test_deadlines);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
