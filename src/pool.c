/* SPDX-License-Identifier: MIT */
/* pool.c - worker threads, a bounded queue of jobs ordered by deadline,
 * cooperative parallel_for with cancellation. */
#include "autoconfig.h"

#include <cblas.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "error.h"
#include "pool.h"
#include "tensor.h"

struct job {
	void (*fn)(void *arg);
	void *arg;
	uint64_t key; /* deadline, or UINT64_MAX: none */
	uint64_t seq; /* order of submission among equal keys */
};

/* One parallel_for in progress: workers claim task indices from next. */
struct section {
	par_task_fn fn;
	void *arg;
	const int *cancel; /* the owner's watched flag */
	size_t ntasks, scratch;
	size_t next; /* atomic */
	int helpers; /* workers inside, under pool lock */
	struct section *link;
};

struct worker {
	struct pool *pool;
	pthread_t thread;
	void *scratch;
	size_t scratch_size;
};

struct pool {
	pthread_mutex_t lock;
	pthread_cond_t work;   /* a job or a section became available, or stop */
	pthread_cond_t helped; /* a helper left a section */
	struct job *queue;     /* binary heap: earliest deadline, then oldest */
	size_t cap, len;
	uint64_t seq;
	size_t running;
	uint64_t completed;
	struct section *sections; /* open sections, newest first */
	int stopping;
	unsigned gen;     /* atomic: bumped when work appears, a job ends or stop is asked */
	int sleeping;     /* workers waiting on work */
	uint64_t spin_ns; /* atomic: while a job runs, an idle worker looks for work this long */
	int nworkers;
	struct worker *workers;
	struct par_runner runner;
};

static __thread struct worker *self;

static void *scratch_get(struct worker *w, size_t size)
{
	if (size <= w->scratch_size)
		return w->scratch;
	free(w->scratch);
	w->scratch = tensor_alloc_aligned(size);
	w->scratch_size = w->scratch ? size : 0;
	return w->scratch;
}

static int job_before(const struct job *a, const struct job *b)
{
	return a->key != b->key ? a->key < b->key : a->seq < b->seq;
}

static void heap_swap(struct job *q, size_t i, size_t j)
{
	struct job t = q[i];

	q[i] = q[j];
	q[j] = t;
}

/* Restore the heap order around slot i after it changed. */
static void heap_fix(struct job *q, size_t len, size_t i)
{
	while (i > 0 && job_before(&q[i], &q[(i - 1) / 2])) {
		heap_swap(q, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < len && job_before(&q[l], &q[m]))
			m = l;
		if (r < len && job_before(&q[r], &q[m]))
			m = r;
		if (m == i)
			return;
		heap_swap(q, i, m);
		i = m;
	}
}

/* Take slot i out of the queue (under the lock). */
static struct job heap_remove(struct pool *p, size_t i)
{
	struct job j = p->queue[i];

	p->queue[i] = p->queue[--p->len];
	if (i < p->len)
		heap_fix(p->queue, p->len, i);
	return j;
}

/* Claim and run tasks of s until none are left or its owner's flag is
 * raised; the helpers' tasks watch that flag too. */
static void section_work(struct section *s, void *scratch)
{
	const int *saved = par_watch(s->cancel);
	size_t i;

	for (;;) {
		if (par_cancelled()) {
			__atomic_store_n(&s->next, s->ntasks, __ATOMIC_RELAXED);
			break;
		}
		i = __atomic_fetch_add(&s->next, 1, __ATOMIC_RELAXED);
		if (i >= s->ntasks)
			break;
		s->fn(s->arg, i, scratch);
	}
	par_watch(saved);
}

static struct section *open_section(struct pool *p)
{
	struct section *s;

	for (s = p->sections; s; s = s->link)
		if (__atomic_load_n(&s->next, __ATOMIC_RELAXED) < s->ntasks)
			return s;
	return NULL;
}

static uint64_t mono_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* An idle worker while a job runs: look for work (a change of gen) for up
 * to p->spin_ns without the lock.  A job's next task set comes within
 * microseconds, and a worker that sleeps takes tens of them to wake on a
 * virtual machine, longer than a small layer takes. */
static void spin_for_work(struct pool *p, unsigned gen)
{
	uint64_t t0 = mono_ns();
	unsigned i;

	for (i = 1;; i++) {
		if (__atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) != gen)
			return;
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
		if (i % 64 == 0 && mono_ns() - t0 >= __atomic_load_n(&p->spin_ns, __ATOMIC_RELAXED))
			return;
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct pool *p = w->pool;
	int spun = 0; /* looked for work since the last wake-up or task */

	self = w;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct section *s = open_section(p);

		if (s != NULL) {
			void *scratch = NULL;

			s->helpers++;
			spun = 0;
			pthread_mutex_unlock(&p->lock);
			scratch = scratch_get(w, s->scratch);
			if (scratch != NULL)
				section_work(s, scratch);
			pthread_mutex_lock(&p->lock);
			if (--s->helpers == 0)
				pthread_cond_broadcast(&p->helped);
			continue;
		}
		if (p->len > 0) {
			struct job j = heap_remove(p, 0);

			p->running++;
			spun = 0;
			/* A worker asleep gets up now to help: by the job's
			 * first task set it is awake. */
			if (p->sleeping > 0 && __atomic_load_n(&p->spin_ns, __ATOMIC_RELAXED) > 0)
				pthread_cond_signal(&p->work);
			pthread_mutex_unlock(&p->lock);
			j.fn(j.arg);
			pthread_mutex_lock(&p->lock);
			p->completed++;
			__atomic_add_fetch(&p->gen, 1, __ATOMIC_RELEASE);
			if (--p->running == 0 && p->stopping)
				pthread_cond_broadcast(&p->work);
			continue;
		}
		/* A running job may still open a section: stay until none runs. */
		if (p->stopping && p->running == 0)
			break;
		if (!spun && p->running > 0 && __atomic_load_n(&p->spin_ns, __ATOMIC_RELAXED) > 0) {
			unsigned gen = __atomic_load_n(&p->gen, __ATOMIC_RELAXED);

			pthread_mutex_unlock(&p->lock);
			spin_for_work(p, gen);
			pthread_mutex_lock(&p->lock);
			spun = 1;
			continue;
		}
		spun = 0;
		p->sleeping++;
		pthread_cond_wait(&p->work, &p->lock);
		p->sleeping--;
	}
	pthread_mutex_unlock(&p->lock);
	free(w->scratch);
	return NULL;
}

static int pool_run(void *ctx, size_t ntasks, size_t scratch_bytes, par_task_fn fn, void *arg)
{
	struct pool *p = ctx;
	struct section s = { fn, arg, par_watched(), ntasks, scratch_bytes, 0, 0, NULL };
	void *scratch;

	if (self == NULL || self->pool != p)
		return par_serial.run(NULL, ntasks, scratch_bytes, fn, arg);
	if (ntasks == 0)
		return 0;
	scratch = scratch_get(self, scratch_bytes);
	if (scratch == NULL)
		return -ENOMEM;
	if (ntasks > 1 && p->nworkers > 1) {
		pthread_mutex_lock(&p->lock);
		s.link = p->sections;
		p->sections = &s;
		__atomic_add_fetch(&p->gen, 1, __ATOMIC_RELEASE);
		pthread_cond_broadcast(&p->work);
		pthread_mutex_unlock(&p->lock);
	}
	section_work(&s, scratch);
	if (ntasks > 1 && p->nworkers > 1) {
		struct section **pp;

		pthread_mutex_lock(&p->lock);
		for (pp = &p->sections; *pp != &s; pp = &(*pp)->link)
			;
		*pp = s.link;
		while (s.helpers > 0)
			pthread_cond_wait(&p->helped, &p->lock);
		pthread_mutex_unlock(&p->lock);
	}
	return par_cancelled() ? -ECANCELED : 0;
}

int pool_new(struct pool **out, int nworkers, size_t max_queue, char *err)
{
	struct pool *p;
	int i, rc;

	*out = NULL;
	if (nworkers < 1 || max_queue < 1)
		return err_set(err, -EINVAL,
		               "the pool needs at least one worker and one queue slot");
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
	openblas_set_num_threads(1);
#endif
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	p->queue = calloc(max_queue, sizeof(*p->queue));
	p->workers = calloc((size_t)nworkers, sizeof(*p->workers));
	if (p->queue == NULL || p->workers == NULL) {
		free(p->queue);
		free(p->workers);
		free(p);
		return err_set(err, -ENOMEM, "out of memory");
	}
	p->cap = max_queue;
	p->runner.run = pool_run;
	p->runner.ctx = p;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->helped, NULL);
	for (i = 0; i < nworkers; i++) {
		p->workers[i].pool = p;
		rc = pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]);
		if (rc != 0) {
			p->nworkers = i;
			pool_free(p);
			return err_set(err, -rc, "cannot start worker thread");
		}
		p->nworkers = i + 1;
	}
	*out = p;
	return 0;
}

void pool_set_spin(struct pool *p, unsigned us)
{
	__atomic_store_n(&p->spin_ns, (uint64_t)us * 1000, __ATOMIC_RELAXED);
}

int pool_submit(struct pool *p, void (*fn)(void *arg), void *arg, uint64_t deadline)
{
	int rc = 0;

	pthread_mutex_lock(&p->lock);
	if (p->stopping)
		rc = -ESHUTDOWN;
	else if (p->len == p->cap)
		rc = -EAGAIN;
	else {
		p->queue[p->len] =
		        (struct job){ fn, arg, deadline ? deadline : UINT64_MAX, p->seq++ };
		p->len++;
		heap_fix(p->queue, p->len, p->len - 1);
		__atomic_add_fetch(&p->gen, 1, __ATOMIC_RELEASE);
		pthread_cond_signal(&p->work);
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

int pool_cancel(struct pool *p, const void *arg)
{
	size_t i;
	int rc = -ENOENT;

	pthread_mutex_lock(&p->lock);
	for (i = 0; i < p->len; i++)
		if (p->queue[i].arg == arg) {
			heap_remove(p, i);
			rc = 0;
			break;
		}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

const struct par_runner *pool_runner(struct pool *p)
{
	return &p->runner;
}

struct pool_counts pool_counts(struct pool *p)
{
	struct pool_counts c;

	pthread_mutex_lock(&p->lock);
	c.queued = p->len;
	c.running = p->running;
	c.completed = p->completed;
	pthread_mutex_unlock(&p->lock);
	return c;
}

int pool_workers(const struct pool *p)
{
	return p->nworkers;
}

void pool_free(struct pool *p)
{
	int i;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = 1;
	__atomic_add_fetch(&p->gen, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < p->nworkers; i++)
		pthread_join(p->workers[i].thread, NULL);
	pthread_cond_destroy(&p->helped);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->lock);
	free(p->workers);
	free(p->queue);
	free(p);
}
