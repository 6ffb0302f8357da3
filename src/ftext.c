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

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* A double d within a few ulps of the true value x rounds to the same float
 * as x unless d is within that distance of a float rounding midpoint (the
 * low 29 mantissa bits near 2^28) or in the subnormal range; those rare
 * cases go to strtof. */
static int float_safe(double d)
{
	uint64_t bits, low;

	if (d < (double)FLT_MIN)
		return 0;
	memcpy(&bits, &d, sizeof(bits));
	low = bits & ((UINT64_C(1) << 29) - 1);
	return low > (UINT64_C(1) << 28) + 8 || low < (UINT64_C(1) << 28) - 8;
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
	int neg = 0, nd = 0, exp10 = 0, rc;

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
				exp10++; /* digits past the 19th only scale */
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
	/* m (19 digits at most, so within 0.5 ulp as a double) times a power of
	 * ten correctly rounded: the result is within 2 ulps of the truth. */
	if (exp10 >= -60 && exp10 <= 38) {
		double d = exp10 < 0 ? (double)m / pow10_of(-exp10) : (double)m * pow10_of(exp10);

		if (float_safe(d)) {
			if (d > (double)FLT_MAX && (float)d > FLT_MAX)
				return -ERANGE; /* rounds to infinity */
			*out = neg ? -(float)d : (float)d;
			return 0;
		}
	}
	rc = slow_parse(start, (size_t)(p - start), out);
	if (rc == -EINVAL)
		*next = start;
	return rc;
}

/* Write the n decimal digits of v with a '.' after the first `point` of them
 * (none when point >= n); returns the characters written.  Digits go
 * straight to their places, least significant first. */
static size_t put_digits(uint64_t v, int n, int point, char *out)
{
	int j, len = n + (point < n);

	if (point < n)
		out[point] = '.';
	for (j = n - 1; j >= 0; j--) {
		out[j + (j >= point)] = (char)('0' + v % 10);
		v /= 10;
	}
	return (size_t)len;
}

/* Render digits d (n of them) times 10^(e - n + 1), i.e. d[0].d[1..] x 10^e. */
static size_t render(int neg, uint64_t d, int n, int e, char *out)
{
	char *p = out;
	int i;

	if (neg)
		*p++ = '-';
	if (e >= -5 && e < 9) {
		if (e < 0) {
			*p++ = '0';
			*p++ = '.';
			for (i = -1; i > e; i--)
				*p++ = '0';
			return (size_t)(p - out) + put_digits(d, n, n, p);
		}
		p += put_digits(d, n, e + 1, p);
		for (i = n; i <= e; i++)
			*p++ = '0';
		return (size_t)(p - out);
	}
	p += put_digits(d, n, 1, p);
	*p++ = 'e';
	if (e < 0) {
		*p++ = '-';
		e = -e;
	}
	if (e >= 10)
		*p++ = (char)('0' + e / 10);
	*p++ = (char)('0' + e % 10);
	return (size_t)(p - out);
}

/* Does the decimal d x 10^k read back as f?  Decided in double arithmetic
 * against f's rounding interval; the rare candidate within a few ulps of an
 * interval edge (where ties-to-even decides) is settled by parsing it. */
static int reads_back(uint64_t d, int k, double lo, double hi, float f, int neg, int n, int e)
{
	/* A product with a correctly rounded power of ten is within about one
	 * ulp (2.2e-16) of d x 10^k, well inside the margin; only the tiny
	 * powers the table lacks need the division. */
	double v = k >= POW10_MIN ? (double)d * pow10_of(k) : (double)d / pow10_of(-k);
	double margin = v * 8e-16;
	char text[FTEXT_MAX + 8];
	const char *next;
	size_t len;
	float g;

	if (v > lo + margin && v < hi - margin)
		return 1;
	if (v < lo - margin || v > hi + margin)
		return 0;
	len = render(neg, d, n, e, text);
	return ftext_parse(text, text + len, &g, &next) == 0 && fabsf(g) == fabsf(f);
}

/* v / 10^k rounded half up, with constant divisors the compiler turns into
 * multiplications. */
static uint32_t div_round(uint32_t v, int k)
{
	switch (k) {
	case 0: return v;
	case 1: return (v + 5) / 10;
	case 2: return (v + 50) / 100;
	case 3: return (v + 500) / 1000;
	case 4: return (v + 5000) / 10000;
	case 5: return (v + 50000) / 100000;
	case 6: return (v + 500000) / 1000000;
	case 7: return (v + 5000000) / 10000000;
	default: return (v + 50000000) / 100000000;
	}
}

size_t ftext_format(float f, char *out)
{
	static const uint64_t p10[] = { 1,      10,      100,      1000,      10000,
		                        100000, 1000000, 10000000, 100000000, 1000000000 };
	uint32_t bits, abits;
	float af, below, above;
	double a, lo, hi;
	int neg, e2, e10, n, d, tries, bn = 0, be = 0;
	uint64_t m9 = 0, best = 0;

	memcpy(&bits, &f, sizeof(bits));
	neg = (int)(bits >> 31);
	abits = bits & 0x7fffffffu;
	if (abits == 0) {
		memcpy(out, neg ? "-0" : "0", (size_t)(neg ? 2 : 1));
		return (size_t)(neg ? 2 : 1);
	}
	/* Neighbours by bit pattern: adjacent finite floats differ by one. */
	memcpy(&af, &abits, sizeof(af));
	abits--;
	memcpy(&below, &abits, sizeof(below));
	abits += 2;
	memcpy(&above, &abits, sizeof(above));
	a = (double)af;
	lo = a - (a - (double)below) / 2;
	hi = isinf(above) ? a + (a - (double)below) / 2 : a + ((double)above - a) / 2;
	/* Estimate floor(log10(a)) from the binary exponent, then correct it. */
	e2 = (int)((abits - 1) >> 23) - 127;
	e10 = (e2 * 78913) >> 18;
	for (tries = 0; tries < 4; tries++) {
		m9 = (uint64_t)(a * pow10_of(8 - e10) + 0.5);
		if (m9 >= p10[9])
			e10++;
		else if (m9 < p10[8])
			e10--;
		else
			break;
	}
	/* From 9 significant digits down, keep the shortest that reads back. */
	for (d = 9; d >= 1; d--) {
		uint32_t md = div_round((uint32_t)m9, 9 - d);
		int ce = e10;

		if (md >= (uint32_t)p10[d]) {
			md /= 10;
			ce++;
		}
		n = d;
		while (n > 1 && md % 10 == 0) {
			md /= 10;
			n--;
		}
		if (!reads_back(md, ce - n + 1, lo, hi, f, neg, n, ce))
			break;
		best = md;
		bn = n;
		be = ce;
		d = n;
	}
	if (bn == 0)
		return (size_t)snprintf(out, FTEXT_MAX + 1, "%.9g", (double)f);
	return render(neg, best, bn, be, out);
}
