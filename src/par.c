/* SPDX-License-Identifier: MIT */
/* par.c - the serial task runner and the cancellation flag. */
#include "autoconfig.h"

#include <errno.h>
#include <stdlib.h>

#include "par.h"
#include "tensor.h"

static __thread const int *watched;

const int *par_watch(const int *flag)
{
	const int *old = watched;

	watched = flag;
	return old;
}

const int *par_watched(void)
{
	return watched;
}

int par_cancelled(void)
{
	return watched != NULL && __atomic_load_n(watched, __ATOMIC_RELAXED) != 0;
}

static int serial_run(void *ctx, size_t ntasks, size_t scratch_bytes, par_task_fn fn, void *arg)
{
	void *scratch;
	size_t i;

	if (ntasks == 0)
		return 0;
	scratch = tensor_alloc_aligned(scratch_bytes);
	if (scratch == NULL)
		return -ENOMEM;
	for (i = 0; i < ntasks && !par_cancelled(); i++)
		fn(arg, i, scratch);
	free(scratch);
	return i < ntasks ? -ECANCELED : 0;
}

const struct par_runner par_serial = { serial_run, NULL };

int par_run(const struct par_runner *runner, size_t ntasks, size_t scratch_bytes, par_task_fn fn,
            void *arg)
{
	if (runner == NULL)
		runner = &par_serial;
	if (par_cancelled())
		return -ECANCELED;
	return runner->run(runner->ctx, ntasks, scratch_bytes, fn, arg);
}
