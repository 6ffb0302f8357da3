/* SPDX-License-Identifier: MIT */
/* check_codec.c - float text exactness, tensor decoding in every encoding,
 * malformed input, and encoding round trips. */
#include "autoconfig.h"

#include <check.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "codec.h"
#include "error.h"
#include "ftext.h"
#include "runner.h"

static uint64_t rng = 88172645463325252ULL;

/* Random-case counts shrink under valgrind (ATROUSD_QUICK=1 in scripts/test.sh). */
static int scaled(int n)
{
	return getenv("ATROUSD_QUICK") ? n / 100 : n;
}

static uint64_t next_u64(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static float bits_to_float(uint32_t b)
{
	float f;

	memcpy(&f, &b, sizeof(f));
	return f;
}

/* format -> parse gives the same bits, and glibc's strtof agrees. */
static void round_trip(float f)
{
	char text[FTEXT_MAX + 1];
	const char *next;
	size_t n = ftext_format(f, text);
	float g, h;

	ck_assert_uint_le(n, FTEXT_MAX);
	text[n] = '\0';
	ck_assert_int_eq(ftext_parse(text, text + n, &g, &next), 0);
	ck_assert_ptr_eq(next, text + n);
	ck_assert_msg(memcmp(&f, &g, sizeof(f)) == 0, "%.9g -> \"%s\" -> %.9g", (double)f, text,
	              (double)g);
	h = strtof(text, NULL);
	ck_assert_msg(memcmp(&f, &h, sizeof(f)) == 0, "strtof(\"%s\") != %.9g", text, (double)f);
}

START_TEST(test_special_values)
{
	static const float v[] = {
		0.0f,        -0.0f,        FLT_MIN,       -FLT_MIN,
		FLT_MAX,     -FLT_MAX,     FLT_TRUE_MIN,  -FLT_TRUE_MIN,
		1.0f,        -1.0f,        0.1f,          1e-7f,
		1e9f,        123456792.0f, 3.4028235e38f, 1.17549421e-38f /* largest subnormal */,
		16777216.0f, 16777217.0f,  0.5f,          1e-5f,
		1e-6f,       100000000.0f, 1e10f
	};
	char text[FTEXT_MAX + 1];
	size_t i, n;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		round_trip(v[i]);
	n = ftext_format(-0.0f, text);
	text[n] = '\0';
	ck_assert_str_eq(text, "-0");
	n = ftext_format(0.1f, text);
	text[n] = '\0';
	ck_assert_str_eq(text, "0.1");
	n = ftext_format(1.5e20f, text);
	text[n] = '\0';
	ck_assert_str_eq(text, "1.5e20");
	n = ftext_format(3.0f, text);
	text[n] = '\0';
	ck_assert_str_eq(text, "3");
}
END_TEST

START_TEST(test_random_bits)
{
	int i;

	/* Every class: random bit patterns cover normals and subnormals. */
	for (i = 0; i < scaled(200000); i++) {
		float f = bits_to_float((uint32_t)next_u64());

		if (isfinite(f))
			round_trip(f);
	}
	for (i = 0; i < scaled(20000); i++)
		round_trip(bits_to_float((uint32_t)next_u64() & 0x807fffffu)); /* subnormals */
}
END_TEST

/* Significant digits of a formatted number (no leading or trailing zeros). */
static int significant_digits(const char *text)
{
	int n = 0, zeros = 0, seen = 0;

	for (; *text && *text != 'e'; text++) {
		if (*text < '0' || *text > '9')
			continue;
		if (*text == '0') {
			zeros += seen;
			continue;
		}
		n += seen ? zeros + 1 : 1;
		zeros = 0;
		seen = 1;
	}
	return n > 0 ? n : 1;
}

START_TEST(test_shortest_closest)
{
	char text[FTEXT_MAX + 1], ref[64];
	int i, n;

	/* glibc's printf rounds exactly: with n digits it gives the closest
	 * n-digit decimal, and with n - 1 the only candidate that could be
	 * shorter.  So the output must equal the first and the second must
	 * not read back. */
	for (i = 0; i < scaled(200000); i++) {
		float f = bits_to_float((uint32_t)next_u64());

		if (!isfinite(f) || f == 0.0f)
			continue;
		text[ftext_format(f, text)] = '\0';
		n = significant_digits(text);
		snprintf(ref, sizeof(ref), "%.*e", n - 1, (double)f);
		ck_assert_msg(strtod(text, NULL) == strtod(ref, NULL),
		              "%s is not the closest %d-digit %s", text, n, ref);
		if (n > 1) {
			snprintf(ref, sizeof(ref), "%.*e", n - 2, (double)f);
			ck_assert_msg(strtof(ref, NULL) != f,
			              "%s is not the shortest: %s reads back", text, ref);
		}
	}
}
END_TEST

START_TEST(test_decimal_writer)
{
	static const struct {
		uint64_t v;
		int frac;
		const char *want;
	} cases[] = { { 0, 0, "0" },
		      { 7, 0, "7" },
		      { 1234, 0, "1234" },
		      { 0, 3, "0.000" },
		      { 5, 3, "0.005" },
		      { 1234, 3, "1.234" },
		      { 12345, 3, "12.345" },
		      { 100, 2, "1.00" },
		      { UINT64_MAX, 0, "18446744073709551615" },
		      { UINT64_MAX, 3, "18446744073709551.615" } };
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf b = { 0 };

		buf_puts(&b, "x=");
		buf_dec(&b, cases[i].v, cases[i].frac);
		buf_add(&b, "", 1);
		ck_assert_int_eq(buf_ok(&b), 0);
		ck_assert_str_eq(b.data + 2, cases[i].want);
		buf_free(&b);
	}
}
END_TEST

START_TEST(test_parse_matches_strtof)
{
	/* Random decimal texts, including long mantissas and extreme exponents,
	 * parse exactly as glibc's correctly rounded strtof. */
	char text[64];
	int i;

	for (i = 0; i < scaled(200000); i++) {
		uint64_t r = next_u64();
		int digits = 1 + (int)(r % 20), exp = (int)((r >> 8) % 90) - 50, k, len = 0;
		const char *next;
		float f, g;
		int rc;

		if (r & (1u << 20))
			text[len++] = '-';
		text[len++] = (char)('1' + (next_u64() % 9));
		if (digits > 1)
			text[len++] = '.';
		for (k = 1; k < digits; k++)
			text[len++] = (char)('0' + next_u64() % 10);
		len += sprintf(text + len, "e%d", exp);
		rc = ftext_parse(text, text + len, &f, &next);
		g = strtof(text, NULL);
		if (isinf(g)) {
			ck_assert_int_eq(rc, -ERANGE);
			continue;
		}
		ck_assert_int_eq(rc, 0);
		ck_assert_msg(memcmp(&f, &g, sizeof(f)) == 0, "\"%s\": %a vs strtof %a", text,
		              (double)f, (double)g);
	}
}
END_TEST

START_TEST(test_malformed_numbers)
{
	static const char *const bad[] = { "01",   "+1", ".5",  "1.",       "1e",
		                           "1e+",  "-",  "NaN", "Infinity", "-Infinity",
		                           "0x10", "e5", "--1", "1.e5" };
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *s = bad[i], *next = s;
		float f;
		int rc = ftext_parse(s, s + strlen(s), &f, &next);

		/* Either refused, or a valid prefix that leaves junk behind. */
		ck_assert_msg(rc == -EINVAL || next != s + strlen(s), "\"%s\" accepted", s);
	}
	{
		const char *s = "1e39", *next;
		float f;

		ck_assert_int_eq(ftext_parse(s, s + 4, &f, &next), -ERANGE);
		s = "-3.5e38";
		ck_assert_int_eq(ftext_parse(s, s + 7, &f, &next), -ERANGE);
		s = "1e-60"; /* underflow rounds to zero, as strtof */
		ck_assert_int_eq(ftext_parse(s, s + 5, &f, &next), 0);
		ck_assert_float_eq(f, 0.0f);
	}
}
END_TEST

/* Decode field "v" of body into a tensor; returns the rc, err filled. */
static int decode(const char *body, int64_t max, struct tensor **t, char *err)
{
	struct codec_doc *doc;
	int rc;

	*t = NULL;
	rc = codec_doc_parse(body, strlen(body), max, &doc, err);
	if (rc < 0)
		return rc;
	rc = codec_doc_take_tensor(doc, json_object_get(codec_doc_root(doc), "v"), "v", t, err);
	codec_doc_free(doc);
	return rc;
}

static char *nested_text(int n, int c)
{
	char *s = malloc((size_t)(n * c * 16 + 64)), *p = s;
	int i, j;

	p += sprintf(p, "{\"v\":[[");
	for (i = 0; i < n; i++) {
		p += sprintf(p, "%s[", i ? "," : "");
		for (j = 0; j < c; j++)
			p += sprintf(p, "%s%d.25", j ? "," : "", i * c + j);
		p += sprintf(p, "]");
	}
	sprintf(p, "]]}");
	return s;
}

START_TEST(test_decode_encodings)
{
	struct tensor *t;
	char err[ERR_LEN];
	char *big = nested_text(10, 7); /* 70 numbers: the fast path */
	size_t i;

	ck_assert_int_eq(decode(big, 0, &t, err), 0);
	ck_assert_int_eq(t->rank, 3);
	ck_assert_int_eq(t->dim[0], 1);
	ck_assert_int_eq(t->dim[1], 10);
	ck_assert_int_eq(t->dim[2], 7);
	for (i = 0; i < 70; i++)
		ck_assert_float_eq(t->data[i], (float)i + 0.25f);
	tensor_free(t);
	free(big);
	big = nested_text(2, 3); /* 6 numbers: through jansson */
	ck_assert_int_eq(decode(big, 0, &t, err), 0);
	ck_assert_int_eq(t->rank, 3);
	ck_assert_int_eq(t->dim[2], 3);
	ck_assert_float_eq(t->data[5], 5.25f);
	tensor_free(t);
	free(big);
	ck_assert_int_eq(decode("{\"v\":{\"shape\":[2,2],\"data\":[1,2,3,4]}}", 0, &t, err), 0);
	ck_assert_int_eq(t->rank, 2);
	ck_assert_float_eq(t->data[3], 4.0f);
	tensor_free(t);
	/* base64 of float32 {1, -2} little-endian */
	ck_assert_int_eq(decode("{\"v\":{\"shape\":[2],\"b64\":\"AACAPwAAAMA=\"}}", 0, &t, err), 0);
	ck_assert_float_eq(t->data[0], 1.0f);
	ck_assert_float_eq(t->data[1], -2.0f);
	tensor_free(t);
	ck_assert_int_eq(decode("{\"v\":{\"shape\":[0,3],\"data\":[]}}", 0, &t, err), 0);
	ck_assert_uint_eq(t->count, 0);
	tensor_free(t);
	/* Strings holding brackets are not arrays. */
	ck_assert_int_eq(decode("{\"s\":\"[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]\","
	                        "\"v\":[[1,2],[3,4]]}",
	                        0, &t, err),
	                 0);
	ck_assert_int_eq(t->dim[0], 2);
	tensor_free(t);
}
END_TEST

static void expect_bad(const char *body, int64_t max, int code, const char *msg)
{
	struct tensor *t;
	char err[ERR_LEN] = "";
	int rc = decode(body, max, &t, err);

	ck_assert_msg(rc == code, "%s: rc %d, wanted %d (%s)", body, rc, code, err);
	ck_assert_ptr_null(t);
	ck_assert_msg(strstr(err, msg) != NULL, "%s: expected \"%s\" in \"%s\"", body, msg, err);
}

START_TEST(test_decode_errors)
{
	char *ragged = nested_text(10, 7), *p;
	char deep[200];
	int i;

	/* Make one row shorter: 17 numbers in the fast path, ragged. */
	p = strstr(ragged, ",69.25");
	memmove(p, p + 6, strlen(p + 6) + 1);
	expect_bad(ragged, 0, -EINVAL, "ragged nested array");
	free(ragged);
	expect_bad("{\"v\":[[1,2],[3]]}", 0, -EINVAL, "ragged nested array");
	expect_bad("{\"v\":[[1,2],3]}", 0, -EINVAL, "ragged");
	expect_bad("{\"v\":{\"shape\":[2,2],\"data\":[1,2,3]}}", 0, -EINVAL,
	           "shape needs 4 elements, \"data\" has 3");
	expect_bad("{\"v\":{\"shape\":[2,-2],\"data\":[1,2,3]}}", 0, -EINVAL, "negative dimension");
	expect_bad("{\"v\":{\"shape\":[2,2.5],\"data\":[1,2,3]}}", 0, -EINVAL, "not an integer");
	expect_bad("{\"v\":{\"shape\":[4294967296,4294967296,2],\"data\":[1]}}", 0, -EOVERFLOW,
	           "overflows");
	expect_bad("{\"v\":{\"shape\":[2],\"b64\":\"AACAPwAAA!A=\"}}", 0, -EINVAL,
	           "not valid base64");
	expect_bad("{\"v\":{\"shape\":[3],\"b64\":\"AACAPwAAAMA=\"}}", 0, -EINVAL,
	           "shape needs 12");
	expect_bad("{\"v\":{\"shape\":[2],\"data\":[1,2],\"x\":1}}", 0, -EINVAL,
	           "unknown key \"x\"");
	expect_bad("{\"v\":{\"data\":[1,2]}}", 0, -EINVAL, "missing \"shape\"");
	expect_bad("{\"v\":[1,\"2\"]}", 0, -EINVAL, "element 1 is not a number");
	expect_bad("{\"v\":[1,null]}", 0, -EINVAL, "element 1 is not a number");
	expect_bad("{\"v\":[1,3.5e38]}", 0, -ERANGE, "beyond float32 range");
	expect_bad("{\"v\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,3.5e38]}", 0, -ERANGE,
	           "3.5e38 (element 16) is beyond float32 range");
	expect_bad("{\"v\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}", 10, -E2BIG,
	           "more than 10 elements");
	expect_bad("{\"v\":[1,2]", 0, -EINVAL, "invalid JSON");
	expect_bad("{\"v\":[1,2],\"v\":[3]}", 0, -EINVAL, "duplicate");
	expect_bad("[1,2]", 0, -EINVAL, "must be a JSON object");
	expect_bad("{\"v\":[NaN,1]}", 0, -EINVAL, "invalid JSON");
	expect_bad("{\"v\":\"abc\"}", 0, -EINVAL, "must be a nested array");
	expect_bad("{\"w\":1}", 0, -EINVAL, "missing \"v\"");
	{
		const char body[] = "{\"v\":[1,\0 2]}";
		struct codec_doc *doc;
		char err[ERR_LEN];

		ck_assert_int_lt(codec_doc_parse(body, sizeof(body) - 1, 0, &doc, err), 0);
		ck_assert_str_eq(err, "body contains a NUL byte");
	}
	p = deep;
	p += sprintf(p, "{\"v\":");
	for (i = 0; i < 40; i++)
		*p++ = '{';
	*p = '\0';
	expect_bad(deep, 0, -EINVAL, "nesting deeper than");
}
END_TEST

START_TEST(test_encode_round_trip)
{
	int64_t dim[4] = { 2, 3, 2, 5 };
	enum codec_enc encs[] = { CODEC_FLAT, CODEC_NESTED, CODEC_B64 };
	struct tensor *t, *u;
	char err[ERR_LEN];
	size_t i, k;

	ck_assert_int_eq(tensor_new(&t, 4, dim, err), 0);
	for (i = 0; i < t->count; i++)
		t->data[i] = bits_to_float((uint32_t)next_u64() & 0xbf7fffffu);
	t->data[0] = -0.0f;
	t->data[1] = FLT_TRUE_MIN;
	for (k = 0; k < 3; k++) {
		struct buf b = { 0 };

		buf_puts(&b, "{\"v\":");
		codec_put_tensor(&b, t, encs[k], NULL);
		buf_puts(&b, "}");
		buf_add(&b, "", 1);
		ck_assert_int_eq(buf_ok(&b), 0);
		ck_assert_int_eq(decode(b.data, 0, &u, err), 0);
		ck_assert_int_eq(u->rank, encs[k] == CODEC_NESTED ? 4 : 4);
		ck_assert_uint_eq(u->count, t->count);
		ck_assert_int_eq(memcmp(u->data, t->data, t->count * sizeof(float)), 0);
		tensor_free(u);
		buf_free(&b);
	}
	t->data[3] = INFINITY;
	ck_assert_int_eq(codec_check_finite(t, err), -EDOM);
	ck_assert_msg(strstr(err, "infinity at element 3") != NULL, "%s", err);
	t->data[3] = NAN;
	ck_assert_int_eq(codec_check_finite(t, err), -EDOM);
	tensor_free(t);
}
END_TEST

/* The finiteness scan in blocks: finite values of every kind pass, and a
 * NaN or an infinity is named at its element, first or last in a block,
 * past the vector lanes of the short last block, or after an earlier one. */
START_TEST(test_finite_blocks)
{
	int64_t d[1] = { 2603 }; /* the last block 555: 69 x 8 and 3 */
	struct tensor *t;
	char err[ERR_LEN];
	size_t i;

	ck_assert_int_eq(tensor_new(&t, 1, d, err), 0);
	for (i = 0; i < t->count; i++)
		t->data[i] = i % 3 == 0 ? FLT_MAX : i % 3 == 1 ? -FLT_TRUE_MIN : -0.0f;
	ck_assert_int_eq(codec_check_finite(t, err), 0);
	t->data[1024] = -INFINITY;
	ck_assert_int_eq(codec_check_finite(t, err), -EDOM);
	ck_assert_msg(strstr(err, "an infinity at element 1024") != NULL, "%s", err);
	t->data[1024] = 1.0f;
	t->data[2047] = NAN;
	ck_assert_int_eq(codec_check_finite(t, err), -EDOM);
	ck_assert_msg(strstr(err, "NaN at element 2047") != NULL, "%s", err);
	t->data[2602] = INFINITY;
	ck_assert_int_eq(codec_check_finite(t, err), -EDOM);
	ck_assert_msg(strstr(err, "at element 2047") != NULL, "%s", err);
	t->data[2047] = 0.0f;
	ck_assert_int_eq(codec_check_finite(t, err), -EDOM);
	ck_assert_msg(strstr(err, "an infinity at element 2602") != NULL, "%s", err);
	tensor_free(t);
}
END_TEST

START_TEST(test_base64)
{
	unsigned char in[64], out[64];
	struct buf b = { 0 };
	size_t n;

	for (n = 0; n < sizeof(in); n++)
		in[n] = (unsigned char)(n * 37 + 11);
	for (n = 0; n <= 10; n++) {
		b.len = 0;
		codec_put_base64(&b, in, n);
		ck_assert_int_eq(codec_base64_decode(b.data, b.len, out), (long long)n);
		ck_assert_int_eq(memcmp(in, out, n), 0);
	}
	ck_assert_int_eq(codec_base64_decode("abc", 3, out), -EINVAL);
	ck_assert_int_eq(codec_base64_decode("ab=c", 4, out), -EINVAL);
	buf_free(&b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("codec");
	TCase *tc = tcase_create("ftext");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_special_values);
	tcase_add_test(tc, test_random_bits);
	tcase_add_test(tc, test_shortest_closest);
	tcase_add_test(tc, test_decimal_writer);
	tcase_add_test(tc, test_parse_matches_strtof);
	tcase_add_test(tc, test_malformed_numbers);
	suite_add_tcase(s, tc);
	tc = tcase_create("tensors");
	tcase_add_test(tc, test_decode_encodings);
	tcase_add_test(tc, test_decode_errors);
	tcase_add_test(tc, test_encode_round_trip);
	tcase_add_test(tc, test_finite_blocks);
	tcase_add_test(tc, test_base64);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
