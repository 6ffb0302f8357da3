/* SPDX-License-Identifier: MIT */
/* par.h - the contract between compute kernels and whoever runs their tasks.
 *
 * A kernel splits its work into independent tasks and hands them to a runner.
 * The serial runner (par_serial) runs them in order on the calling thread; the
 * worker pool (pool.h) provides a runner that spreads them over idle workers.
 * Each task receives a scratch area of at least the requested size that no
 * other concurrently running task touches.
 *
 * Cancellation: a job names the flag its kernels watch (par_watch); anyone
 * may raise it.  Runners check it before each task and return -ECANCELED
 * when it was raised, so abandoning costs at most the tasks running; a long
 * task may look too (par_cancelled) between steps of its own.
 */
#ifndef ATROUSD_PAR_H
#define ATROUSD_PAR_H

#include <stddef.h>

typedef void (*par_task_fn)(void *arg, size_t task, void *scratch);

struct par_runner {
	/* Run fn(arg, i, scratch) for every i in [0, ntasks); 0 or -errno. */
	int (*run)(void *ctx, size_t ntasks, size_t scratch_bytes, par_task_fn fn, void *arg);
	void *ctx;
};

/* A runner that executes tasks in order on the calling thread. */
extern const struct par_runner par_serial;

/* Run tasks through runner, or serially when runner is NULL. */
int par_run(const struct par_runner *runner, size_t ntasks, size_t scratch_bytes, par_task_fn fn,
            void *arg);

/* Make flag (NULL: none) the one that par_run calls and tasks on this thread
 * watch; returns the flag watched before. */
const int *par_watch(const int *flag);

/* The flag this thread watches (a runner hands it to its helpers). */
const int *par_watched(void);

/* Has the watched flag been raised? */
int par_cancelled(void);

#endif
