/* SPDX-License-Identifier: MIT */
/* npy.c - reader and writer for NumPy's .npy format (float32 tensors). */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "npy.h"

#define NPY_MAGIC     "\x93NUMPY"
#define NPY_MAGIC_LEN 6
/* No legitimate header of ours needs more; bounds the parser's work. */
#define NPY_MAX_HEADER (1 << 16)
/* Largest file npy_load reads (4 GiB). */
#define NPY_MAX_FILE ((size_t)1 << 32)

enum npy_dtype { NPY_F4, NPY_F8 };

struct npy_header {
	enum npy_dtype dtype;
	int fortran;
	int rank;
	int64_t dim[TENSOR_MAX_RANK];
};

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* Find the value following 'key': in the header dict, or NULL. */
static const char *dict_value(const char *h, const char *end, const char *key)
{
	char quoted[32];
	size_t qlen;
	const char *p;

	qlen = (size_t)snprintf(quoted, sizeof(quoted), "'%s'", key);
	for (p = h; p + qlen <= end; p++) {
		if (memcmp(p, quoted, qlen) != 0)
			continue;
		p = skip_ws(p + qlen, end);
		if (p >= end || *p != ':')
			return NULL;
		return skip_ws(p + 1, end);
	}
	return NULL;
}

static int parse_descr(const char *p, const char *end, struct npy_header *hd, char *err)
{
	const char *q;
	size_t n;

	if (p == NULL || p >= end || (*p != '\'' && *p != '"'))
		return err_set(err, -EINVAL, "header has no 'descr' string");
	q = memchr(p + 1, *p, (size_t)(end - p - 1));
	if (q == NULL)
		return err_set(err, -EINVAL, "header 'descr' is not terminated");
	n = (size_t)(q - p - 1);
	p++;
	if (n == 3 && memcmp(p, "<f4", 3) == 0)
		hd->dtype = NPY_F4;
	else if (n == 3 && memcmp(p, "<f8", 3) == 0)
		hd->dtype = NPY_F8;
	else if (n == 3 && (memcmp(p, ">f4", 3) == 0 || memcmp(p, ">f8", 3) == 0))
		return err_set(err, -EINVAL, "dtype '%.3s' is big-endian; save with dtype '<f4'",
		               p);
	else
		return err_set(err, -EINVAL,
		               "dtype '%.*s' is not float32 ('<f4') or float64 ('<f8')",
		               (int)(n > 16 ? 16 : n), p);
	return 0;
}

static int parse_shape(const char *p, const char *end, struct npy_header *hd, char *err)
{
	if (p == NULL || p >= end || *p != '(')
		return err_set(err, -EINVAL, "header has no 'shape' tuple");
	p++;
	hd->rank = 0;
	for (;;) {
		int64_t v = 0;
		int digits = 0;

		p = skip_ws(p, end);
		if (p < end && *p == ')')
			return 0;
		if (hd->rank == TENSOR_MAX_RANK)
			return err_set(err, -EINVAL, "shape has more than %d dimensions",
			               TENSOR_MAX_RANK);
		while (p < end && *p >= '0' && *p <= '9') {
			if (v > (INT64_MAX - 9) / 10)
				return err_set(err, -EINVAL, "shape dimension is too large");
			v = v * 10 + (*p++ - '0');
			digits++;
		}
		if (p < end && *p == 'L') /* Python 2 long suffix */
			p++;
		if (digits == 0)
			return err_set(err, -EINVAL, "shape tuple is malformed");
		hd->dim[hd->rank++] = v;
		p = skip_ws(p, end);
		if (p < end && *p == ',') {
			p++;
			continue;
		}
		if (p < end && *p == ')')
			return 0;
		return err_set(err, -EINVAL, "shape tuple is malformed");
	}
}

static int parse_header(const char *h, size_t len, struct npy_header *hd, char *err)
{
	const char *end = h + len;
	const char *v;
	int rc;

	if (memchr(h, '\0', len) != NULL)
		return err_set(err, -EINVAL, "header contains a NUL byte");
	if (len == 0 || skip_ws(h, end) == end || *skip_ws(h, end) != '{')
		return err_set(err, -EINVAL, "header is not a dictionary");
	rc = parse_descr(dict_value(h, end, "descr"), end, hd, err);
	if (rc < 0)
		return rc;
	v = dict_value(h, end, "fortran_order");
	if (v != NULL && (size_t)(end - v) >= 5 && memcmp(v, "False", 5) == 0)
		hd->fortran = 0;
	else if (v != NULL && (size_t)(end - v) >= 4 && memcmp(v, "True", 4) == 0)
		hd->fortran = 1;
	else
		return err_set(err, -EINVAL, "header has no boolean 'fortran_order'");
	if (hd->fortran)
		return err_set(
		        err, -EINVAL,
		        "Fortran-ordered arrays are not supported; save a C-contiguous array");
	return parse_shape(dict_value(h, end, "shape"), end, hd, err);
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int npy_parse(const void *buf, size_t len, struct tensor **out, char *err)
{
	const unsigned char *b = buf;
	struct npy_header hd = { 0 };
	struct tensor *t = NULL;
	size_t hlen, hstart, count, esize, need, i;
	int rc;

	*out = NULL;
	if (len < NPY_MAGIC_LEN + 4 || memcmp(b, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
		return err_set(err, -EINVAL, "not a .npy file (bad magic)");
	if (b[6] == 1) {
		hlen = (size_t)b[8] | (size_t)b[9] << 8;
		hstart = 10;
	} else if (b[6] == 2 || b[6] == 3) {
		if (len < 12)
			return err_set(err, -EINVAL, "truncated header");
		hlen = le32(b + 8);
		hstart = 12;
	} else {
		return err_set(err, -EINVAL, "unsupported .npy version %u.%u", b[6], b[7]);
	}
	if (hlen > NPY_MAX_HEADER)
		return err_set(err, -EINVAL, "header length %zu exceeds %d bytes", hlen,
		               NPY_MAX_HEADER);
	if (hlen > len - hstart)
		return err_set(err, -EINVAL, "truncated header (%zu bytes announced, %zu present)",
		               hlen, len - hstart);
	rc = parse_header((const char *)b + hstart, hlen, &hd, err);
	if (rc < 0)
		return rc;
	rc = tensor_shape_count(hd.rank, hd.dim, 0, &count, err);
	if (rc < 0)
		return rc;
	esize = hd.dtype == NPY_F4 ? 4 : 8;
	need = count * esize;
	if (len - hstart - hlen != need)
		return err_set(err, -EINVAL,
		               "header shape needs %zu data bytes but the file has %zu", need,
		               len - hstart - hlen);
	rc = tensor_new_uninit(&t, hd.rank, hd.dim, err);
	if (rc < 0)
		return rc;
	b += hstart + hlen;
	if (hd.dtype == NPY_F4) {
		if (count > 0)
			memcpy(t->data, b, need);
	} else {
		for (i = 0; i < count; i++) {
			double d;

			memcpy(&d, b + 8 * i, 8);
			if (d == d && (d > FLT_MAX || d < -FLT_MAX) && d - d == 0.0) {
				tensor_free(t);
				return err_set(err, -ERANGE,
				               "float64 element %zu (%g) is beyond float32 range",
				               i, d);
			}
			t->data[i] = (float)d;
		}
	}
	*out = t;
	return 0;
}

int npy_load(const char *path, struct tensor **out, char *err)
{
	struct stat st;
	void *buf = NULL;
	size_t got = 0;
	int fd, rc;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, -errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return err_set(err, -EINVAL, "%s: not a regular file", path);
	}
	if ((uint64_t)st.st_size > NPY_MAX_FILE) {
		close(fd);
		return err_set(err, -EFBIG, "%s: file is larger than %zu bytes", path,
		               NPY_MAX_FILE);
	}
	buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
	if (buf == NULL) {
		close(fd);
		return err_set(err, -ENOMEM, "%s: out of memory", path);
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, (char *)buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = err_set(err, n < 0 ? -errno : -EIO, "%s: read failed", path);
			goto fail;
		}
		got += (size_t)n;
	}
	rc = npy_parse(buf, got, out, err);
	if (rc < 0)
		err_prefix(err, "%s", path);
fail:
	free(buf);
	close(fd);
	return rc;
}

int npy_encode(const struct tensor *t, void **out, size_t *outlen, char *err)
{
	char dict[512];
	size_t off = 0, dlen, total, hlen;
	unsigned char *buf;
	int i;

	off += (size_t)snprintf(dict, sizeof(dict),
	                        "{'descr': '<f4', 'fortran_order': False, 'shape': (");
	for (i = 0; i < t->rank; i++)
		off += (size_t)snprintf(dict + off, sizeof(dict) - off, "%lld%s",
		                        (long long)t->dim[i],
		                        t->rank == 1 || i + 1 < t->rank ? ", " : "");
	if (t->rank == 1)
		off -= 1; /* "(5,)" */
	off += (size_t)snprintf(dict + off, sizeof(dict) - off, "), }");
	dlen = off;
	/* Pad with spaces so that data starts on a 64-byte boundary; end with '\n'. */
	hlen = (10 + dlen + 1 + 63) / 64 * 64 - 10;
	total = 10 + hlen + t->count * sizeof(float);
	buf = malloc(total);
	if (buf == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	memcpy(buf, NPY_MAGIC, NPY_MAGIC_LEN);
	buf[6] = 1;
	buf[7] = 0;
	buf[8] = (unsigned char)(hlen & 0xff);
	buf[9] = (unsigned char)(hlen >> 8);
	memcpy(buf + 10, dict, dlen);
	memset(buf + 10 + dlen, ' ', hlen - dlen - 1);
	buf[10 + hlen - 1] = '\n';
	if (t->count > 0)
		memcpy(buf + 10 + hlen, t->data, t->count * sizeof(float));
	*out = buf;
	*outlen = total;
	return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int npy_save(const char *path, const struct tensor *t, char *err)
{
	char tmp[PATH_MAX];
	void *buf = NULL;
	mode_t mask;
	size_t len;
	int fd, rc;

	rc = npy_encode(t, &buf, &len, err);
	if (rc < 0)
		return rc;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path) >= sizeof(tmp)) {
		free(buf);
		return err_set(err, -ENAMETOOLONG, "%s: path too long", path);
	}
	fd = mkstemp(tmp);
	if (fd < 0) {
		rc = err_set(err, -errno, "%s: %s", path, strerror(errno));
		free(buf);
		return rc;
	}
	mask = umask(0);
	umask(mask);
	rc = fchmod(fd, 0666 & ~mask) < 0 ? -errno : 0;
	if (rc == 0)
		rc = write_all(fd, buf, len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		err_set(err, rc, "%s: %s", path, strerror(-rc));
		unlink(tmp);
	}
	free(buf);
	return rc;
}
