/* SPDX-License-Identifier: MIT */
/* check_pool.c - job queue bounds, parallel_for coverage, shutdown. */
#include "autoconfig.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "pool.h"
#include "runner.h"

struct blocker {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int open, started, done;
};

static void blocking_job(void *arg)
{
	struct blocker *b = arg;

	pthread_mutex_lock(&b->lock);
	b->started++;
	pthread_cond_broadcast(&b->cond);
	while (!b->open)
		pthread_cond_wait(&b->cond, &b->lock);
	b->done++;
	pthread_mutex_unlock(&b->lock);
}

START_TEST(test_queue_bounds)
{
	struct blocker b = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0 };
	struct pool *p;
	char err[ERR_LEN];
	int i;

	ck_assert_int_eq(pool_new(&p, 1, 2, err), 0);
	ck_assert_int_eq(pool_workers(p), 1);
	ck_assert_int_eq(pool_submit(p, blocking_job, &b), 0);
	pthread_mutex_lock(&b.lock);
	while (b.started == 0)
		pthread_cond_wait(&b.cond, &b.lock);
	pthread_mutex_unlock(&b.lock);
	/* One running, two queued, the next is refused at once. */
	ck_assert_int_eq(pool_submit(p, blocking_job, &b), 0);
	ck_assert_int_eq(pool_submit(p, blocking_job, &b), 0);
	ck_assert_int_eq(pool_submit(p, blocking_job, &b), -EAGAIN);
	ck_assert_uint_eq(pool_counts(p).queued, 2);
	ck_assert_uint_eq(pool_counts(p).running, 1);
	ck_assert_uint_eq(pool_counts(p).completed, 0);
	pthread_mutex_lock(&b.lock);
	b.open = 1;
	pthread_cond_broadcast(&b.cond);
	pthread_mutex_unlock(&b.lock);
	pool_free(p); /* runs what was queued */
	ck_assert_int_eq(b.done, 3);
	for (i = 0; i < 2; i++)
		ck_assert_int_lt(pool_new(&p, i, (size_t)(1 - i), err), 0);
}
END_TEST

struct cover {
	struct pool *pool;
	int hits[1000];
	pthread_t who[1000];
	int rc;
};

static void cover_task(void *arg, size_t i, void *scratch)
{
	struct cover *c = arg;

	memset(scratch, 0xab, 4096); /* the scratch is really that large */
	__atomic_add_fetch(&c->hits[i], 1, __ATOMIC_RELAXED);
	c->who[i] = pthread_self();
	usleep(200);
}

static void cover_job(void *arg)
{
	struct cover *c = arg;

	c->rc = par_run(pool_runner(c->pool), 1000, 4096, cover_task, c);
}

START_TEST(test_parallel_for)
{
	struct cover *c = calloc(1, sizeof(*c));
	struct pool *p;
	char err[ERR_LEN];
	size_t i, other = 0;

	ck_assert_int_eq(pool_new(&p, 3, 4, err), 0);
	c->pool = p;
	ck_assert_int_eq(pool_submit(p, cover_job, c), 0);
	pool_free(p);
	ck_assert_int_eq(c->rc, 0);
	for (i = 0; i < 1000; i++) {
		ck_assert_int_eq(c->hits[i], 1);
		if (!pthread_equal(c->who[i], c->who[0]))
			other++;
	}
	/* Idle workers helped: some tasks ran on a thread other than the first. */
	ck_assert_uint_gt(other, 0);
	/* Off the pool, the runner runs serially on the caller. */
	memset(c, 0, sizeof(*c));
	ck_assert_int_eq(pool_new(&p, 2, 1, err), 0);
	ck_assert_int_eq(par_run(pool_runner(p), 50, 4096, cover_task, c), 0);
	for (i = 0; i < 50; i++) {
		ck_assert_int_eq(c->hits[i], 1);
		ck_assert(pthread_equal(c->who[i], pthread_self()));
	}
	pool_free(p);
	free(c);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("pool");

	tcase_add_test(tc, test_queue_bounds);
	tcase_add_test(tc, test_parallel_for);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
