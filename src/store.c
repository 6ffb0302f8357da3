/* SPDX-License-Identifier: MIT */
/* store.c - staged model folders installed by rename or exchange, each
 * file and folder fsynced before it becomes visible. */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "store.h"

int store_path_ok(const char *path)
{
	const char *p = path;
	int segments = 0;

	for (;;) {
		size_t n = strcspn(p, "/"), i;

		if (n == 0 || p[0] == '.' || ++segments > 2)
			return 0;
		for (i = 0; i < n; i++) {
			char c = p[i];

			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			      (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
				return 0;
		}
		if (p[n] == '\0')
			return 1;
		p += n + 1;
	}
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

void store_remove(const char *path)
{
	if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
		log_warn("cannot remove %s: %s", path, strerror(errno));
}

int store_fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECTORY), rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static int write_synced(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644), rc = 0;
	size_t off = 0;

	if (fd < 0)
		return -errno;
	while (off < len && rc == 0) {
		ssize_t w = write(fd, (const char *)data + off, len - off);

		if (w < 0 && errno != EINTR)
			rc = -errno;
		else if (w > 0)
			off += (size_t)w;
	}
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

/* One file of the staged folder, its subfolder made first. */
static int stage_file(const char *tmp, const struct store_file *f)
{
	char path[PATH_MAX], sub[PATH_MAX];
	const char *slash = strchr(f->path, '/');
	int rc;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", tmp, f->path) >= sizeof(path))
		return -ENAMETOOLONG;
	if (slash != NULL) {
		snprintf(sub, sizeof(sub), "%s/%.*s", tmp, (int)(slash - f->path), f->path);
		if (mkdir(sub, 0755) < 0 && errno != EEXIST)
			return -errno;
	}
	rc = write_synced(path, f->data, f->len);
	if (rc == 0 && slash != NULL)
		rc = store_fsync_dir(sub);
	return rc;
}

int store_stage(const char *dir, const struct store_file *files, size_t n, char *tmp, char *err)
{
	size_t i;
	int rc = 0;

	if ((size_t)snprintf(tmp, PATH_MAX, "%s/.upload-XXXXXX", dir) >= PATH_MAX)
		return err_set(err, -ENAMETOOLONG, "%s: path too long", dir);
	if (mkdtemp(tmp) == NULL)
		return err_set(err, -errno, "%s: %s", dir, strerror(errno));
	chmod(tmp, 0755);
	for (i = 0; i < n && rc == 0; i++) {
		if (!store_path_ok(files[i].path)) {
			rc = err_set(err, -EINVAL,
			             "file \"%.64s\": a model file is NAME or DIR/NAME of "
			             "[A-Za-z0-9_.-], not starting with '.'",
			             files[i].path);
			break;
		}
		rc = stage_file(tmp, &files[i]);
		if (rc < 0)
			err_set(err, rc, "%s: %s", files[i].path, strerror(-rc));
	}
	if (rc == 0 && (rc = store_fsync_dir(tmp)) < 0)
		err_set(err, rc, "%s: %s", tmp, strerror(-rc));
	if (rc < 0)
		store_remove(tmp);
	return rc;
}

/* Where the file system cannot exchange two folders: move the old one to
 * dir/.replaced-NAME, the new one into place, then drop the old.  A crash
 * between the two renames leaves .replaced-NAME, which store_recover puts
 * back.  On success tmp names the old folder, as after an exchange. */
static int replace_aside(const char *dir, const char *name, const char *target, char *tmp)
{
	char aside[PATH_MAX];

	if ((size_t)snprintf(aside, sizeof(aside), "%s/.replaced-%s", dir, name) >= sizeof(aside))
		return -ENAMETOOLONG;
	store_remove(aside);
	if (rename(target, aside) < 0)
		return -errno;
	if (rename(tmp, target) < 0) {
		int rc = -errno;

		rename(aside, target);
		return rc;
	}
	store_remove(tmp);
	snprintf(tmp, PATH_MAX, "%s", aside);
	return 0;
}

int store_recover(const char *dir, const char *entry)
{
	char aside[PATH_MAX], target[PATH_MAX];
	struct stat st;

	if (strncmp(entry, ".replaced-", 10) != 0)
		return 0;
	snprintf(aside, sizeof(aside), "%s/%s", dir, entry);
	if ((size_t)snprintf(target, sizeof(target), "%s/%s", dir, entry + 10) >= sizeof(target))
		return 0;
	if (lstat(target, &st) == 0) {
		store_remove(aside); /* the new folder made it: the old one goes */
		return 1;
	}
	if (rename(aside, target) == 0) {
		log_warn("%s: restored after an interrupted replacement", target);
		return 1;
	}
	return 0;
}

int store_install(const char *dir, const char *name, char *tmp, int *created, char *err)
{
	char target[PATH_MAX];
	struct stat st;
	int rc = 0;

	if ((size_t)snprintf(target, sizeof(target), "%s/%s", dir, name) >= sizeof(target)) {
		store_remove(tmp);
		return err_set(err, -ENAMETOOLONG, "%s: path too long", dir);
	}
	*created = !(lstat(target, &st) == 0 && S_ISDIR(st.st_mode));
	if (*created) {
		if (rename(tmp, target) < 0)
			rc = -errno;
	} else if (renameat2(AT_FDCWD, tmp, AT_FDCWD, target, RENAME_EXCHANGE) < 0) {
		rc = errno == EINVAL || errno == ENOSYS ? replace_aside(dir, name, target, tmp)
		                                        : -errno;
	}
	if (rc < 0) {
		store_remove(tmp);
		return err_set(err, rc, "model %s: cannot install: %s", name, strerror(-rc));
	}
	rc = store_fsync_dir(dir);
	if (!*created)
		store_remove(tmp); /* now the old folder */
	return rc < 0 ? err_set(err, rc, "%s: %s", dir, strerror(-rc)) : 0;
}
