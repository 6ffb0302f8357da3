/* SPDX-License-Identifier: MIT */
/* watch.h - a thread that notices what a suspended request cannot: its peer
 * closing, its deadline passing.
 *
 *	struct watch *w;
 *	watch_new(&w, &(struct watch_ops){ on_gone, on_tick }, ctx, err);
 *	watch_add(w, key, fd, 0);   // on_gone(ctx, key) once, when the peer leaves
 *	watch_poke(w);              // a deadline was added: on_tick runs again
 *	watch_del(w, fd);           // before the fd is closed or reused
 *	watch_free(w);
 *
 * A peer "leaves" when its socket is reset or fully closed (EPOLLHUP,
 * EPOLLERR) or, with WATCH_FIN, when it sends FIN: TCP cannot tell a client
 * that closed from one that only stopped writing without writing to it.
 * on_tick runs on the watcher thread after every wake-up and returns the
 * next CLOCK_MONOTONIC time (ns) it must run at, 0 for none.  Callbacks run
 * on the watcher thread; they may take locks that watch_add and watch_del
 * are called under (those never wait for the thread).
 */
#ifndef ATROUSD_WATCH_H
#define ATROUSD_WATCH_H

#include <stdint.h>

/* watch_add flag: a FIN (half-close) counts as leaving. */
#define WATCH_FIN 1

struct watch_ops {
	void (*on_gone)(void *ctx, uint64_t key);
	uint64_t (*on_tick)(void *ctx, uint64_t now_ns);
};

struct watch;

/* Start the thread; 0 or -errno with a message. */
int watch_new(struct watch **out, const struct watch_ops *ops, void *ctx, char *err);

/* Report the peer of fd under key (at most once); 0 or -errno. */
int watch_add(struct watch *w, uint64_t key, int fd, int flags);

/* Stop watching fd.  A report the thread already took may still arrive:
 * on_gone must look its key up. */
void watch_del(struct watch *w, int fd);

/* Make the thread call on_tick again soon (a new deadline). */
void watch_poke(struct watch *w);

/* Stop and join the thread; NULL is allowed. */
void watch_free(struct watch *w);

#endif
