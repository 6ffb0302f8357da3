/* SPDX-License-Identifier: MIT */
/* check_pool.c - job queue bounds and order, parallel_for coverage,
 * cancellation, shutdown. */
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
	ck_assert_int_eq(pool_submit(p, blocking_job, &b, 0), 0);
	pthread_mutex_lock(&b.lock);
	while (b.started == 0)
		pthread_cond_wait(&b.cond, &b.lock);
	pthread_mutex_unlock(&b.lock);
	/* One running, two queued, the next is refused at once. */
	ck_assert_int_eq(pool_submit(p, blocking_job, &b, 0), 0);
	ck_assert_int_eq(pool_submit(p, blocking_job, &b, 0), 0);
	ck_assert_int_eq(pool_submit(p, blocking_job, &b, 0), -EAGAIN);
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
	ck_assert_int_eq(pool_submit(p, cover_job, c, 0), 0);
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

/* A job of many small task sets in a row, as a chain of small layers. */
struct chain {
	struct pool *pool;
	int hits[200][4];
	pthread_t who[200][4];
	int rc;
};

struct link {
	struct chain *c;
	int k;
};

static void chain_task(void *arg, size_t i, void *scratch)
{
	struct link *l = arg;

	(void)scratch;
	__atomic_add_fetch(&l->c->hits[l->k][i], 1, __ATOMIC_RELAXED);
	l->c->who[l->k][i] = pthread_self();
}

static void chain_job(void *arg)
{
	struct chain *c = arg;
	struct link l = { c, 0 };

	for (l.k = 0; l.k < 200 && c->rc == 0; l.k++)
		c->rc = par_run(pool_runner(c->pool), 4, 64, chain_task, &l);
}

/* CPU seconds the threads that ran c's tasks (the pool's workers) used. */
static double workers_cpu(const struct chain *c)
{
	pthread_t seen[16];
	double sum = 0;
	int n = 0, k, i, j;

	for (k = 0; k < 200; k++)
		for (i = 0; i < 4; i++) {
			struct timespec t;
			clockid_t id;

			for (j = 0; j < n && !pthread_equal(seen[j], c->who[k][i]); j++)
				;
			if (j < n || n == 16)
				continue;
			seen[n++] = c->who[k][i];
			ck_assert_int_eq(pthread_getcpuclockid(c->who[k][i], &id), 0);
			ck_assert_int_eq(clock_gettime(id, &t), 0);
			sum += (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
		}
	return sum;
}

/* Idle workers that wait for work while a job runs (pool_set_spin): every
 * task of 200 task sets in a row runs once, and once the job is done they
 * sleep: the workers of a quiet pool use no CPU time. */
START_TEST(test_spin)
{
	struct chain *c = calloc(1, sizeof(*c));
	struct pool *p;
	char err[ERR_LEN];
	double t0;
	int k, i;

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(pool_new(&p, 3, 4, err), 0);
	pool_set_spin(p, 2000);
	c->pool = p;
	ck_assert_int_eq(pool_submit(p, chain_job, c, 0), 0);
	while (pool_counts(p).completed < 1)
		usleep(1000);
	ck_assert_int_eq(c->rc, 0);
	for (k = 0; k < 200; k++)
		for (i = 0; i < 4; i++)
			ck_assert_int_eq(c->hits[k][i], 1);
	usleep(20000); /* any spin ends within 2 ms of the job's end */
	t0 = workers_cpu(c);
	usleep(100000);
	ck_assert_msg(workers_cpu(c) - t0 < 0.01, "idle workers used %.3f s of CPU in 0.1 s",
	              workers_cpu(c) - t0);
	pool_free(p);
	free(c);
}
END_TEST

struct order {
	struct blocker *b;
	int ids[8];
	int n;
};

struct ordered {
	struct order *o;
	int id;
};

static void ordered_job(void *arg)
{
	struct ordered *j = arg;

	j->o->ids[j->o->n++] = j->id; /* one worker: no race */
}

START_TEST(test_deadline_order)
{
	struct blocker b = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0 };
	struct order o = { &b, { 0 }, 0 };
	/* id: deadline; 0 has none, and equal deadlines keep submission order. */
	static const uint64_t deadline[6] = { 300, 100, 0, 200, 100, 0 };
	static const int expect[5] = { 1, 4, 3, 0, 2 };
	struct ordered j[6];
	struct pool *p;
	char err[ERR_LEN];
	int i;

	ck_assert_int_eq(pool_new(&p, 1, 8, err), 0);
	ck_assert_int_eq(pool_submit(p, blocking_job, &b, 0), 0);
	pthread_mutex_lock(&b.lock);
	while (b.started == 0)
		pthread_cond_wait(&b.cond, &b.lock);
	pthread_mutex_unlock(&b.lock);
	for (i = 0; i < 6; i++) {
		j[i] = (struct ordered){ &o, i };
		ck_assert_int_eq(pool_submit(p, ordered_job, &j[i], deadline[i]), 0);
	}
	/* A queued job taken out never runs; one not queued is not found. */
	ck_assert_int_eq(pool_cancel(p, &j[5]), 0);
	ck_assert_int_eq(pool_cancel(p, &j[5]), -ENOENT);
	ck_assert_int_eq(pool_cancel(p, &b), -ENOENT); /* running */
	ck_assert_uint_eq(pool_counts(p).queued, 5);
	pthread_mutex_lock(&b.lock);
	b.open = 1;
	pthread_cond_broadcast(&b.cond);
	pthread_mutex_unlock(&b.lock);
	pool_free(p);
	ck_assert_int_eq(o.n, 5);
	for (i = 0; i < 5; i++)
		ck_assert_int_eq(o.ids[i], expect[i]);
}
END_TEST

struct stopper {
	struct pool *pool;
	int flag, ran, rc, rc_after;
};

static void stopping_task(void *arg, size_t i, void *scratch)
{
	struct stopper *s = arg;

	(void)scratch;
	__atomic_add_fetch(&s->ran, 1, __ATOMIC_RELAXED);
	if (i == 10)
		__atomic_store_n(&s->flag, 1, __ATOMIC_RELAXED);
	usleep(500);
}

static void stopping_job(void *arg)
{
	struct stopper *s = arg;
	const int *old = par_watch(&s->flag);

	s->rc = par_run(pool_runner(s->pool), 1000, 64, stopping_task, s);
	/* Once raised, nothing more starts. */
	s->rc_after = par_run(pool_runner(s->pool), 1000, 64, stopping_task, s);
	par_watch(old);
}

START_TEST(test_cancel_tasks)
{
	struct stopper s = { 0 };
	char err[ERR_LEN];
	int ran;

	ck_assert_int_eq(pool_new(&s.pool, 3, 4, err), 0);
	ck_assert_int_eq(pool_submit(s.pool, stopping_job, &s, 0), 0);
	pool_free(s.pool);
	ck_assert_int_eq(s.rc, -ECANCELED);
	ck_assert_int_eq(s.rc_after, -ECANCELED);
	/* Task 10 raised the flag: at most the tasks already claimed ran. */
	ck_assert_int_ge(s.ran, 11);
	ck_assert_int_le(s.ran, 11 + 3);
	/* The serial runner stops the same way. */
	memset(&s, 0, sizeof(s));
	par_watch(&s.flag);
	ck_assert_int_eq(par_run(NULL, 1000, 64, stopping_task, &s), -ECANCELED);
	ck_assert_int_eq(s.ran, 11);
	ran = s.ran;
	ck_assert(par_cancelled());
	ck_assert_int_eq(par_run(NULL, 5, 64, stopping_task, &s), -ECANCELED);
	ck_assert_int_eq(s.ran, ran);
	par_watch(NULL);
	ck_assert(!par_cancelled());
	ck_assert_int_eq(par_run(NULL, 5, 64, stopping_task, &s), 0);
	ck_assert_int_eq(s.ran, ran + 5);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("pool");

	tcase_add_test(tc, test_queue_bounds);
	tcase_add_test(tc, test_parallel_for);
	tcase_add_test(tc, test_spin);
	tcase_add_test(tc, test_deadline_order);
	tcase_add_test(tc, test_cancel_tasks);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
