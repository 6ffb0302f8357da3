/* SPDX-License-Identifier: MIT */
/* check_models.c - the served set on a real directory: uploads persisted
 * atomically, reloads that keep a model's last good version, deletes, and
 * references that outlive both. */
#include "autoconfig.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "graph.h"
#include "models.h"
#include "runner.h"

static const char good[] = "{\"input\":{\"name\":\"x\",\"channels\":2},"
                           "\"layers\":[{\"filters\":{\"shape\":[1,1,2,1],\"data\":[1,2]},"
                           "\"rate\":1,\"padding\":\"SAME\"}]}";
static const char wider[] = "{\"input\":{\"name\":\"x\",\"channels\":3},"
                            "\"layers\":[{\"filters\":{\"shape\":[1,1,3,1],\"data\":[1,2,3]},"
                            "\"rate\":1,\"padding\":\"SAME\"}]}";

static char dir[256];

static void make_dir(void)
{
	snprintf(dir, sizeof(dir), "%s/atrousd-models.XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void remove_dir(void)
{
	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Entries of dir, hidden ones included, other than . and .. */
static int entries(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL)
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

static int exists(const char *name, const char *file)
{
	char path[512];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s%s%s", dir, name, file ? "/" : "", file ? file : "");
	return stat(path, &st) == 0;
}

static void write_model(const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/model.json", dir, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

static int64_t channels_of(struct models *ms, const char *name)
{
	struct model *m = models_get(ms, name);
	int64_t c;

	ck_assert_ptr_nonnull(m);
	c = model_in_channels(m);
	model_unref(m);
	return c;
}

START_TEST(test_put_persists)
{
	struct models *ms, *again;
	size_t loaded, failed;
	char err[ERR_LEN];
	int created;

	make_dir();
	ck_assert_int_eq(models_new(&ms, dir, 0, err), 0);
	ck_assert_int_eq(models_reload(ms, &loaded, &failed), 0);
	ck_assert_uint_eq(loaded, 0);
	ck_assert_int_eq(models_put(ms, "a", good, strlen(good), &created, err), 0);
	ck_assert_int_eq(created, 1);
	ck_assert(exists("a", "model.json"));
	ck_assert_uint_eq(models_count(ms), 1);
	ck_assert_int_eq(channels_of(ms, "a"), 2);
	ck_assert_int_eq(models_put(ms, "a", wider, strlen(wider), &created, err), 0);
	ck_assert_int_eq(created, 0);
	ck_assert_int_eq(channels_of(ms, "a"), 3);
	/* A bad upload is refused before anything is written. */
	ck_assert_int_eq(models_put(ms, "b", "{\"layers\":[]}", 13, &created, err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "\"layers\" must be a non-empty array"));
	ck_assert_int_eq(entries(dir), 1); /* a/ alone: no b/, no .upload-* */
	/* What was stored is what a new registry on the same folder serves. */
	ck_assert_int_eq(models_new(&again, dir, 0, err), 0);
	ck_assert_int_eq(models_reload(again, &loaded, &failed), 0);
	ck_assert_uint_eq(loaded, 1);
	ck_assert_uint_eq(failed, 0);
	ck_assert_int_eq(channels_of(again, "a"), 3);
	models_free(again);
	models_free(ms);
	remove_dir();
}
END_TEST

START_TEST(test_reload_keeps_last_good)
{
	struct models *ms;
	size_t loaded, failed;
	char err[ERR_LEN];

	make_dir();
	write_model("a", good);
	write_model("b", wider);
	write_model(".hidden", good);
	ck_assert_int_eq(models_new(&ms, dir, 0, err), 0);
	ck_assert_int_eq(models_reload(ms, &loaded, &failed), 0);
	ck_assert_uint_eq(loaded, 2);
	ck_assert_uint_eq(failed, 0);
	/* a breaks and c is new and broken: a keeps its version, c is not served. */
	write_model("a", "{\"layers\": 7}");
	write_model("c", "not json");
	ck_assert_int_eq(models_reload(ms, &loaded, &failed), 0);
	ck_assert_uint_eq(failed, 2);
	ck_assert_int_eq(channels_of(ms, "a"), 2);
	ck_assert_ptr_null(models_get(ms, "c"));
	/* b's folder removed by hand: gone from the set at the next reload. */
	unlink(strcat(strcpy(err, dir), "/b/model.json"));
	rmdir(strcat(strcpy(err, dir), "/b"));
	ck_assert_int_eq(models_reload(ms, &loaded, &failed), 0);
	ck_assert_ptr_null(models_get(ms, "b"));
	models_free(ms);
	remove_dir();
}
END_TEST

START_TEST(test_delete)
{
	int64_t vdim[4] = { 1, 2, 2, 2 }, odim[4];
	struct models *ms;
	struct model *held;
	char err[ERR_LEN];
	int created;

	make_dir();
	ck_assert_int_eq(models_new(&ms, dir, 0, err), 0);
	ck_assert_int_eq(models_put(ms, "a", good, strlen(good), &created, err), 0);
	held = models_get(ms, "a");
	ck_assert_int_eq(models_delete(ms, "a", err), 0);
	ck_assert_ptr_null(models_get(ms, "a"));
	ck_assert_int_eq(entries(dir), 0); /* nothing set aside is left */
	/* A request holding the model still runs on it. */
	ck_assert_int_eq(graph_output_shape(model_graph(held), vdim, 0, odim, err), 0);
	ck_assert_int_eq(odim[3], 1);
	model_unref(held);
	ck_assert_int_eq(models_delete(ms, "a", err), -ENOENT);
	ck_assert_str_eq(err, "no model named \"a\"");
	models_free(ms);
	remove_dir();
}
END_TEST

START_TEST(test_interrupted_replacement)
{
	struct models *ms;
	size_t loaded, failed;
	char err[ERR_LEN];

	/* A crash between the two renames of a replacement without
	 * RENAME_EXCHANGE: only the old folder, set aside. */
	make_dir();
	write_model(".replaced-a", good);
	ck_assert_int_eq(models_new(&ms, dir, 0, err), 0);
	ck_assert_int_eq(models_reload(ms, &loaded, &failed), 0);
	ck_assert_uint_eq(loaded, 1);
	ck_assert_int_eq(channels_of(ms, "a"), 2);
	ck_assert(exists("a", "model.json"));
	ck_assert(!exists(".replaced-a", NULL));
	/* A crash after both: the new folder stays, the old one goes. */
	write_model(".replaced-a", wider);
	ck_assert_int_eq(models_reload(ms, &loaded, &failed), 0);
	ck_assert_int_eq(channels_of(ms, "a"), 2);
	ck_assert(!exists(".replaced-a", NULL));
	ck_assert_int_eq(entries(dir), 1);
	models_free(ms);
	remove_dir();
}
END_TEST

static void count_row(void *arg, const struct models_entry *e)
{
	(*(int *)arg)++;
}

START_TEST(test_without_dir)
{
	int rows;
	struct models *ms;
	size_t loaded, failed;
	char err[ERR_LEN];
	int created;

	ck_assert_int_eq(models_new(&ms, NULL, 0, err), 0);
	ck_assert_int_eq(models_reload(ms, &loaded, &failed), 0);
	ck_assert_uint_eq(loaded + failed, 0);
	ck_assert_int_eq(models_put(ms, "a", good, strlen(good), &created, err), -EROFS);
	rows = 0;
	ck_assert_int_eq(models_index(ms, count_row, &rows), 0); /* nothing, and no crash */
	ck_assert_int_eq(rows, 0);
	models_free(ms);
}
END_TEST

START_TEST(test_names)
{
	static const char *const ok[] = { "a", "deeplab_v3", "A-1.2", "x.", "_" };
	static const char *const bad[] = {
		"",
		".a",
		"..",
		"a/b",
		"a b",
		"é",
		"m1234567890123456789012345678901234567890123456789012345"
		"678901234"
	};
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		ck_assert_msg(model_name_ok(ok[i]), "%s", ok[i]);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!model_name_ok(bad[i]), "%s", bad[i]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("models");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_put_persists);
	tcase_add_test(tc, test_reload_keeps_last_good);
	tcase_add_test(tc, test_delete);
	tcase_add_test(tc, test_interrupted_replacement);
	tcase_add_test(tc, test_without_dir);
	tcase_add_test(tc, test_names);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
