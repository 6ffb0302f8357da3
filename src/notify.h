/* SPDX-License-Identifier: MIT */
/* notify.h - service-manager integration (systemd), without #ifdefs at call
 * sites: readiness, status, stopping, watchdog, and socket activation.  When
 * built without libsystemd every call is a no-op and no socket is passed. */
#ifndef ATROUSD_NOTIFY_H
#define ATROUSD_NOTIFY_H

#include <stdint.h>

/* READY=1 with a STATUS= line. */
void notify_ready(const char *status);

/* A STATUS= line. */
void notify_status(const char *status);

/* STOPPING=1 with a STATUS= line. */
void notify_stopping(const char *status);

/* EXTEND_TIMEOUT_USEC=usec: more time for a slow start or stop. */
void notify_extend_timeout(uint64_t usec);

/* The watchdog interval in microseconds, or 0 when no watchdog is set. */
uint64_t notify_watchdog_usec(void);

/* WATCHDOG=1. */
void notify_watchdog(void);

/* The listening socket passed by socket activation: 0 with *fd set to it, or
 * to -1 when none was passed; -EINVAL when the passed sockets are unusable
 * (more than one, or not a listening stream socket). */
int notify_listen_fd(int *fd, char *err);

#endif
