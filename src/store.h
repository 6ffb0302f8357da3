/* SPDX-License-Identifier: MIT */
/* store.h - model folders written so that a crash leaves the old folder or
 * the new one, never part of either.
 *
 *	struct store_file f[] = {{"model.json", body, len}, {"w.npy", npy, n}};
 *	char tmp[PATH_MAX];
 *	store_stage(dir, f, 2, tmp, err);        // dir/.upload-XXXXXX, fsynced
 *	... validate the staged folder ...
 *	store_install(dir, name, tmp, &created, err);   // rename, or exchange
 *
 * A new name is installed by rename(2); an existing folder by exchanging
 * the two (renameat2 RENAME_EXCHANGE), after which the old one is removed.
 * Leftover .upload-* folders are the caller's to remove (models_reload
 * does).
 */
#ifndef ATROUSD_STORE_H
#define ATROUSD_STORE_H

#include <stddef.h>

struct store_file {
	const char *path; /* relative to the folder; store_path_ok */
	const void *data;
	size_t len;
};

/* A relative path of one or two segments of [A-Za-z0-9_.-] that do not
 * start with '.' (so no "..", no hidden files, no absolute paths). */
int store_path_ok(const char *path);

/* Write the files into a new folder under dir; tmp (PATH_MAX bytes) gets its
 * path.  On failure nothing is left behind. */
int store_stage(const char *dir, const struct store_file *files, size_t n, char *tmp, char *err);

/* Install the staged folder tmp as dir/name; *created says whether the name
 * was new.  On failure tmp is removed and dir/name is as it was.  (tmp is
 * reused as scratch.) */
int store_install(const char *dir, const char *name, char *tmp, int *created, char *err);

/* For a directory entry: finish a replacement a crash interrupted (see
 * store.c); 1 when the entry was such a leftover and is handled. */
int store_recover(const char *dir, const char *entry);

/* Remove a folder and everything in it (logged when it cannot). */
void store_remove(const char *path);

/* fsync a directory; 0 or -errno. */
int store_fsync_dir(const char *path);

#endif
