/* SPDX-License-Identifier: MIT */
/* notify.c - sd_notify and sd_listen_fds behind a small interface. */
#include "autoconfig.h"

#include <errno.h>

#include <stdio.h>
#include <sys/socket.h>

#include "error.h"
#include "notify.h"

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>

void notify_ready(const char *status)
{
	sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void notify_status(const char *status)
{
	sd_notifyf(0, "STATUS=%s", status);
}

void notify_stopping(const char *status)
{
	sd_notifyf(0, "STOPPING=1\nSTATUS=%s", status);
}

void notify_extend_timeout(uint64_t usec)
{
	sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%llu", (unsigned long long)usec);
}

uint64_t notify_watchdog_usec(void)
{
	uint64_t usec = 0;

	return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}

void notify_watchdog(void)
{
	sd_notify(0, "WATCHDOG=1");
}

int notify_listen_fd(int *fd, char *err)
{
	int n = sd_listen_fds(1);

	*fd = -1;
	if (n <= 0)
		return 0;
	if (n > 1)
		return err_set(err, -EINVAL,
		               "socket activation passed %d sockets; atrousd takes one", n);
	if (sd_is_socket(SD_LISTEN_FDS_START, AF_UNSPEC, SOCK_STREAM, 1) <= 0)
		return err_set(
		        err, -EINVAL,
		        "the socket passed by socket activation is not a listening stream socket");
	*fd = SD_LISTEN_FDS_START;
	return 0;
}

#else /* without libsystemd: nothing to notify, no sockets passed */

void notify_ready(const char *status)
{
}

void notify_status(const char *status)
{
}

void notify_stopping(const char *status)
{
}

void notify_extend_timeout(uint64_t usec)
{
}

uint64_t notify_watchdog_usec(void)
{
	return 0;
}

void notify_watchdog(void)
{
}

int notify_listen_fd(int *fd, char *err)
{
	*fd = -1;
	return 0;
}

#endif
