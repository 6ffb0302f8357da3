/* ftext.c - exact float32 number parsing and shortest formatting. */
#include "autoconfig.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ftext.h"

/* Longest number token handled; longer valid tokens are refused as -EINVAL. */
#define TOKEN_MAX 512

/* 10^-30 .. 10^60, each correctly rounded by the compiler. */
static const double pow10_tab[] = {
	1e-30, 1e-29, 1e-28, 1e-27, 1e-26, 1e-25, 1e-24, 1e-23, 1e-22, 1e-21, 1e-20, 1e-19, 1e-18,
	1e-17, 1e-16, 1e-15, 1e-14, 1e-13, 1e-12, 1e-11, 1e-10, 1e-9,  1e-8,  1e-7,  1e-6,  1e-5,
	1e-4,  1e-3,  1e-2,  1e-1,  1e0,   1e1,   1e2,   1e3,   1e4,   1e5,   1e6,   1e7,   1e8,
	1e9,   1e10,  1e11,  1e12,  1e13,  1e14,  1e15,  1e16,  1e17,  1e18,  1e19,  1e20,  1e21,
	1e22,  1e23,  1e24,  1e25,  1e26,  1e27,  1e28,  1e29,  1e30,  1e31,  1e32,  1e33,  1e34,
	1e35,  1e36,  1e37,  1e38,  1e39,  1e40,  1e41,  1e42,  1e43,  1e44,  1e45,  1e46,  1e47,
	1e48,  1e49,  1e50,  1e51,  1e52,  1e53,  1e54,  1e55,  1e56,  1e57,  1e58,  1e59,  1e60
};
#define POW10_MIN (-30)

static double pow10_of(int k)
{
	return pow10_tab[k - POW10_MIN];
}

/* Exactly representable powers for the fast path. */
static const double exact10[] = { 1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
	                          1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
	                          1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22 };

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* A double d, rounded from the true value x, rounds to the same float as x
 * unless d sits exactly on a float rounding midpoint or in the subnormal
 * range; those rare cases go to strtof. */
static int float_safe(double d)
{
	uint64_t bits;

	if (d < (double)FLT_MIN)
		return 0;
	memcpy(&bits, &d, sizeof(bits));
	return (bits & ((UINT64_C(1) << 29) - 1)) != (UINT64_C(1) << 28);
}

static int slow_parse(const char *start, size_t len, float *out)
{
	char tmp[TOKEN_MAX + 1];
	float f;

	if (len > TOKEN_MAX)
		return -EINVAL;
	memcpy(tmp, start, len);
	tmp[len] = '\0';
	errno = 0;
	f = strtof(tmp, NULL);
	if (isinf(f))
		return -ERANGE;
	*out = f;
	return 0;
}

int ftext_parse(const char *p, const char *end, float *out, const char **next)
{
	const char *start = p;
	uint64_t m = 0;
	int neg = 0, nd = 0, exp10 = 0, exact = 1, rc;

	if (p < end && *p == '-') {
		neg = 1;
		p++;
	}
	if (p >= end || !is_digit(*p))
		return -EINVAL;
	if (*p == '0') {
		p++;
	} else {
		for (; p < end && is_digit(*p); p++) {
			if (nd < 19) {
				m = m * 10 + (uint64_t)(*p - '0');
				nd++;
			} else {
				exp10++;
				exact = 0;
			}
		}
	}
	if (p < end && *p == '.') {
		p++;
		if (p >= end || !is_digit(*p))
			return -EINVAL;
		for (; p < end && is_digit(*p); p++) {
			if (m == 0 && *p == '0') {
				exp10--;
			} else if (nd < 19) {
				m = m * 10 + (uint64_t)(*p - '0');
				nd++;
				exp10--;
			} else {
				exact = 0;
			}
		}
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		int eneg = 0, e = 0;

		p++;
		if (p < end && (*p == '+' || *p == '-'))
			eneg = *p++ == '-';
		if (p >= end || !is_digit(*p))
			return -EINVAL;
		for (; p < end && is_digit(*p); p++)
			if (e < 100000)
				e = e * 10 + (*p - '0');
		exp10 += eneg ? -e : e;
	}
	*next = p;
	if (m == 0) {
		*out = neg ? -0.0f : 0.0f;
		return 0;
	}
	if (exact && m <= (UINT64_C(1) << 53) && exp10 >= -22 && exp10 <= 22) {
		double d = exp10 < 0 ? (double)m / exact10[-exp10] : (double)m * exact10[exp10];

		if (float_safe(d)) {
			if (d > (double)FLT_MAX) {
				/* Rounds to infinity unless within half an ulp of FLT_MAX. */
				if ((float)d > FLT_MAX)
					return -ERANGE;
			}
			*out = neg ? -(float)d : (float)d;
			return 0;
		}
	}
	rc = slow_parse(start, (size_t)(p - start), out);
	if (rc == -EINVAL)
		*next = start;
	return rc;
}

static size_t put_digits(uint64_t v, int n, char *out)
{
	int i;

	for (i = n - 1; i >= 0; i--) {
		out[i] = (char)('0' + v % 10);
		v /= 10;
	}
	return (size_t)n;
}

/* Render digits d (n of them) times 10^(e - n + 1), i.e. d[0].d[1..] x 10^e. */
static size_t render(int neg, uint64_t d, int n, int e, char *out)
{
	char dig[20];
	size_t len = 0;
	int i;

	put_digits(d, n, dig);
	if (neg)
		out[len++] = '-';
	if (e >= -5 && e < 9) {
		if (e < 0) {
			out[len++] = '0';
			out[len++] = '.';
			for (i = -1; i > e; i--)
				out[len++] = '0';
			memcpy(out + len, dig, (size_t)n);
			return len + (size_t)n;
		}
		for (i = 0; i <= e; i++)
			out[len++] = i < n ? dig[i] : '0';
		if (n > e + 1) {
			out[len++] = '.';
			memcpy(out + len, dig + e + 1, (size_t)(n - e - 1));
			len += (size_t)(n - e - 1);
		}
		return len;
	}
	out[len++] = dig[0];
	if (n > 1) {
		out[len++] = '.';
		memcpy(out + len, dig + 1, (size_t)(n - 1));
		len += (size_t)(n - 1);
	}
	len += (size_t)sprintf(out + len, "e%d", e);
	return len;
}

static int round_trips(const char *s, size_t len, float f)
{
	const char *next;
	float g;

	return ftext_parse(s, s + len, &g, &next) == 0 && next == s + len &&
	       memcmp(&g, &f, sizeof(f)) == 0;
}

size_t ftext_format(float f, char *out)
{
	static const uint64_t p10[] = { 1,      10,      100,      1000,      10000,
		                        100000, 1000000, 10000000, 100000000, 1000000000 };
	double a = fabs((double)f);
	int neg = signbit(f) != 0, e2, e10, n, d, tries;
	uint64_t m9, best;
	size_t len;

	if (f == 0.0f) {
		memcpy(out, neg ? "-0" : "0", (size_t)(neg ? 2 : 1));
		return (size_t)(neg ? 2 : 1);
	}
	frexp(a, &e2);
	e10 = (int)floor((e2 - 1) * 0.30102999566398120);
	for (tries = 0; tries < 4; tries++) {
		m9 = (uint64_t)(a * pow10_of(8 - e10) + 0.5);
		if (m9 >= p10[9])
			e10++;
		else if (m9 < p10[8])
			e10--;
		else
			break;
	}
	best = m9;
	n = 9;
	while (n > 1 && best % 10 == 0) {
		best /= 10;
		n--;
	}
	len = render(neg, best, n, e10, out);
	if (!round_trips(out, len, f))
		return (size_t)snprintf(out, FTEXT_MAX + 1, "%.9g", (double)f);
	/* Try shorter digit strings while they still round-trip. */
	for (d = n - 1; d >= 1; d--) {
		char cand[FTEXT_MAX + 8];
		uint64_t md = (m9 + p10[9 - d] / 2) / p10[9 - d];
		int ce = e10, cn = d;
		size_t clen;

		if (md >= p10[d]) {
			md /= 10;
			ce++;
		}
		while (cn > 1 && md % 10 == 0) {
			md /= 10;
			cn--;
		}
		clen = render(neg, md, cn, ce, cand);
		if (!round_trips(cand, clen, f))
			break;
		memcpy(out, cand, clen);
		len = clen;
		d = cn;
	}
	return len;
}
