/* SPDX-License-Identifier: MIT */
/* pool.h - the compute workers: a bounded job queue and parallel_for.
 *
 *	struct pool *p;
 *	pool_new(&p, 2, 64, err);
 *	if (pool_submit(p, job_fn, job, 0) == -EAGAIN) ...; // queue full: 503
 *	// inside job_fn: par_run(pool_runner(p), ntasks, scratch, task_fn, arg)
 *	pool_free(p);                                      // runs what is queued
 *
 * Workers run jobs one at a time.  A job may split work into tasks through
 * pool_runner(); idle workers help with those before taking new jobs, so one
 * large request uses every core and many small ones use one core each.
 * OpenBLAS is set to one thread: the pool owns all parallelism.
 */
#ifndef ATROUSD_POOL_H
#define ATROUSD_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "par.h"

struct pool;

/* Start nworkers threads with a queue of at most max_queue waiting jobs. */
int pool_new(struct pool **out, int nworkers, size_t max_queue, char *err);

/* While a job runs, a worker with nothing to do looks for work for us
 * microseconds before it sleeps, and the worker that takes a job wakes one
 * that sleeps: on a virtual machine a sleeping worker takes tens of
 * microseconds to wake, longer than a small layer's task set.  0 (the
 * default of pool_new) sleeps at once.  The daemon's default is
 * POOL_SPIN_US. */
#define POOL_SPIN_US 100 /* = the default of the config key spin_us */
void pool_set_spin(struct pool *p, unsigned us);

/* Queue fn(arg): 0, -EAGAIN when the queue is full, -ESHUTDOWN when stopping.
 * Jobs start in order of deadline (CLOCK_MONOTONIC ns; 0 = none, after
 * every deadline), then of submission.  The pool only orders by deadline;
 * what a job past it does is the job's business. */
int pool_submit(struct pool *p, void (*fn)(void *arg), void *arg, uint64_t deadline);

/* Take the queued job whose argument is arg out of the queue: 0, or -ENOENT
 * when it is not queued (it runs, ran, or never was). */
int pool_cancel(struct pool *p, const void *arg);

/* A runner that spreads tasks over idle workers (serial off the pool). */
const struct par_runner *pool_runner(struct pool *p);

/* A consistent snapshot of the pool's job counters. */
struct pool_counts {
	size_t queued;      /* waiting in the queue */
	size_t running;     /* running now */
	uint64_t completed; /* finished since the pool started */
};

/* Read the counters (under the pool's lock). */
struct pool_counts pool_counts(struct pool *p);

/* Number of worker threads. */
int pool_workers(const struct pool *p);

/* Refuse new jobs, run those queued, join the workers and free the pool. */
void pool_free(struct pool *p);

#endif
