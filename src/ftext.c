/* SPDX-License-Identifier: MIT */
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
static size_t put_digits(uint32_t v, int n, int point, char *out)
{
	static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930"
	                            "31323334353637383940414243444546474849"
	                            "50515253545556575859606162636465666768697071727374757677787980"
	                            "81828384858687888990919293949596979899";
	int j = n - 1, len = n + (point < n);

	if (point < n)
		out[point] = '.';
	for (; j >= 1; j -= 2) { /* two digits per division */
		uint32_t r = v % 100;

		v /= 100;
		out[j + (j >= point)] = pairs[2 * r + 1];
		out[j - 1 + (j - 1 >= point)] = pairs[2 * r];
	}
	if (j == 0)
		out[0] = (char)('0' + v);
	return (size_t)len;
}

/* Render digits d (n of them) times 10^(e - n + 1), i.e. d[0].d[1..] x 10^e. */
static size_t render(int neg, uint32_t d, int n, int e, char *out)
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

/* Shortest formatting, exactly, in integer arithmetic (the method of Ulf
 * Adams' Ryu for binary32): the float's rounding interval, scaled by a power
 * of ten taken from 64-bit tables, is narrowed one decimal digit at a time
 * while both ends still differ; the digits kept are the interval's shortest
 * member closest to the float.  The tables are exact: pow5_inv[q] =
 * floor(2^(pow5_bits(q) + 58) / 5^q) + 1 and pow5[i] = 5^i scaled to 61
 * significant bits (generated with arbitrary-precision integers). */
static const uint64_t pow5_inv[31] = {
	UINT64_C(576460752303423489), UINT64_C(461168601842738791), UINT64_C(368934881474191033),
	UINT64_C(295147905179352826), UINT64_C(472236648286964522), UINT64_C(377789318629571618),
	UINT64_C(302231454903657294), UINT64_C(483570327845851670), UINT64_C(386856262276681336),
	UINT64_C(309485009821345069), UINT64_C(495176015714152110), UINT64_C(396140812571321688),
	UINT64_C(316912650057057351), UINT64_C(507060240091291761), UINT64_C(405648192073033409),
	UINT64_C(324518553658426727), UINT64_C(519229685853482763), UINT64_C(415383748682786211),
	UINT64_C(332306998946228969), UINT64_C(531691198313966350), UINT64_C(425352958651173080),
	UINT64_C(340282366920938464), UINT64_C(544451787073501542), UINT64_C(435561429658801234),
	UINT64_C(348449143727040987), UINT64_C(557518629963265579), UINT64_C(446014903970612463),
	UINT64_C(356811923176489971), UINT64_C(570899077082383953), UINT64_C(456719261665907162),
	UINT64_C(365375409332725730)
};
static const uint64_t pow5[47] = {
	UINT64_C(1152921504606846976), UINT64_C(1441151880758558720), UINT64_C(1801439850948198400),
	UINT64_C(2251799813685248000), UINT64_C(1407374883553280000), UINT64_C(1759218604441600000),
	UINT64_C(2199023255552000000), UINT64_C(1374389534720000000), UINT64_C(1717986918400000000),
	UINT64_C(2147483648000000000), UINT64_C(1342177280000000000), UINT64_C(1677721600000000000),
	UINT64_C(2097152000000000000), UINT64_C(1310720000000000000), UINT64_C(1638400000000000000),
	UINT64_C(2048000000000000000), UINT64_C(1280000000000000000), UINT64_C(1600000000000000000),
	UINT64_C(2000000000000000000), UINT64_C(1250000000000000000), UINT64_C(1562500000000000000),
	UINT64_C(1953125000000000000), UINT64_C(1220703125000000000), UINT64_C(1525878906250000000),
	UINT64_C(1907348632812500000), UINT64_C(1192092895507812500), UINT64_C(1490116119384765625),
	UINT64_C(1862645149230957031), UINT64_C(1164153218269348144), UINT64_C(1455191522836685180),
	UINT64_C(1818989403545856475), UINT64_C(2273736754432320594), UINT64_C(1421085471520200371),
	UINT64_C(1776356839400250464), UINT64_C(2220446049250313080), UINT64_C(1387778780781445675),
	UINT64_C(1734723475976807094), UINT64_C(2168404344971008868), UINT64_C(1355252715606880542),
	UINT64_C(1694065894508600678), UINT64_C(2117582368135750847), UINT64_C(1323488980084844279),
	UINT64_C(1654361225106055349), UINT64_C(2067951531382569187), UINT64_C(1292469707114105741),
	UINT64_C(1615587133892632177), UINT64_C(2019483917365790221)
};

/* Bits of 5^e (e >= 1), floor(log10(2^e)), floor(log10(5^e)). */
static int32_t pow5_bits(int32_t e)
{
	return (int32_t)(((uint32_t)e * 1217359u) >> 19) + 1;
}

static uint32_t log10_pow2(int32_t e)
{
	return ((uint32_t)e * 78913u) >> 18;
}

static uint32_t log10_pow5(int32_t e)
{
	return ((uint32_t)e * 732923u) >> 20;
}

/* (m x factor) >> shift, for shift > 32. */
static uint32_t mul_shift(uint32_t m, uint64_t factor, int32_t shift)
{
	uint64_t lo = (uint64_t)m * (uint32_t)factor, hi = (uint64_t)m * (uint32_t)(factor >> 32);

	return (uint32_t)(((lo >> 32) + hi) >> (shift - 32));
}

static int pow5_factor_at_least(uint32_t v, uint32_t p)
{
	uint32_t count = 0;

	while (v % 5 == 0 && count < p) {
		v /= 5;
		count++;
	}
	return count >= p;
}

static int decimal_len(uint32_t v)
{
	return v >= 100000000  ? 9
	       : v >= 10000000 ? 8
	       : v >= 1000000  ? 7
	       : v >= 100000   ? 6
	       : v >= 10000    ? 5
	       : v >= 1000     ? 4
	       : v >= 100      ? 3
	       : v >= 10       ? 2
	                       : 1;
}

/* A float's value and rounding interval scaled by 10^-e10 to integers
 * vm < vr < vp, with what exact rounding needs: the last digit removed by
 * the scaling, whether the removed parts of vm and vr were all zeros, and
 * whether the interval's ends belong to it (even mantissa). */
struct interval {
	uint32_t vr, vp, vm;
	int32_t e10;
	uint8_t last;
	int vm_zeros, vr_zeros, even;
};

/* Scale 4x-mantissas mv, mp, mm times 2^e2 for e2 >= 0. */
static void scale_pos(struct interval *iv, uint32_t mv, uint32_t mp, uint32_t mm, int32_t e2)
{
	uint32_t q = log10_pow2(e2);
	int32_t k = 59 + pow5_bits((int32_t)q) - 1, i = -e2 + (int32_t)q + k;

	iv->e10 = (int32_t)q;
	iv->vr = mul_shift(mv, pow5_inv[q], i);
	iv->vp = mul_shift(mp, pow5_inv[q], i);
	iv->vm = mul_shift(mm, pow5_inv[q], i);
	if (q != 0 && (iv->vp - 1) / 10 <= iv->vm / 10) {
		int32_t l = 59 + pow5_bits((int32_t)q - 1) - 1;

		iv->last = (uint8_t)(mul_shift(mv, pow5_inv[q - 1], -e2 + (int32_t)q - 1 + l) % 10);
	}
	if (q <= 9) {
		/* At most one of mp, mv, mm is a multiple of 5. */
		if (mv % 5 == 0)
			iv->vr_zeros = pow5_factor_at_least(mv, q);
		else if (iv->even)
			iv->vm_zeros = pow5_factor_at_least(mm, q);
		else
			iv->vp -= (uint32_t)pow5_factor_at_least(mp, q);
	}
}

/* The same for e2 < 0. */
static void scale_neg(struct interval *iv, uint32_t mv, uint32_t mp, uint32_t mm, int32_t e2)
{
	uint32_t q = log10_pow5(-e2);
	int32_t i = -e2 - (int32_t)q, j = (int32_t)q - (pow5_bits(i) - 61);

	iv->e10 = (int32_t)q + e2;
	iv->vr = mul_shift(mv, pow5[i], j);
	iv->vp = mul_shift(mp, pow5[i], j);
	iv->vm = mul_shift(mm, pow5[i], j);
	if (q != 0 && (iv->vp - 1) / 10 <= iv->vm / 10) {
		j = (int32_t)q - 1 - (pow5_bits(i + 1) - 61);
		iv->last = (uint8_t)(mul_shift(mv, pow5[i + 1], j) % 10);
	}
	if (q <= 1) {
		/* mv has at least q trailing zero bits. */
		iv->vr_zeros = 1;
		if (iv->even)
			iv->vm_zeros = mm == mv - 2;
		else
			iv->vp--;
	} else if (q < 31) {
		iv->vr_zeros = (mv & ((1u << (q - 1)) - 1)) == 0;
	}
}

static void drop_digit(struct interval *iv, int32_t *removed)
{
	iv->vr_zeros &= iv->last == 0;
	iv->last = (uint8_t)(iv->vr % 10);
	iv->vr /= 10;
	iv->vp /= 10;
	iv->vm /= 10;
	(*removed)++;
}

/* Drop digits while the interval's ends still differ in what remains; the
 * digits of the result, its exponent added to *removed. */
static uint32_t narrow(struct interval *iv, int32_t *removed)
{
	if (!iv->vm_zeros && !iv->vr_zeros) { /* the common case */
		while (iv->vp / 10 > iv->vm / 10)
			drop_digit(iv, removed);
		return iv->vr + (iv->vr == iv->vm || iv->last >= 5);
	}
	/* Rare: an exact end or an exact tie decides.  First narrow as above,
	 * then, with vm exact, drop its trailing zeros too. */
	while (iv->vp / 10 > iv->vm / 10) {
		iv->vm_zeros &= iv->vm % 10 == 0;
		drop_digit(iv, removed);
	}
	while (iv->vm_zeros && iv->vm % 10 == 0)
		drop_digit(iv, removed);
	if (iv->vr_zeros && iv->last == 5 && iv->vr % 2 == 0)
		iv->last = 4; /* ties to even */
	return iv->vr + ((iv->vr == iv->vm && (!iv->even || !iv->vm_zeros)) || iv->last >= 5);
}

size_t ftext_format(float f, char *out)
{
	struct interval iv = { 0 };
	uint32_t bits, mant, exp, m2, output;
	int32_t e2, removed = 0, n;
	int neg;

	memcpy(&bits, &f, sizeof(bits));
	neg = (int)(bits >> 31);
	mant = bits & 0x7fffffu;
	exp = (bits >> 23) & 0xffu;
	if (exp == 0 && mant == 0) {
		memcpy(out, neg ? "-0" : "0", (size_t)(neg ? 2 : 1));
		return (size_t)(neg ? 2 : 1);
	}
	/* Finite inputs only (callers refuse NaN and Inf). */
	e2 = (exp == 0 ? 1 : (int32_t)exp) - 127 - 23 - 2;
	m2 = exp == 0 ? mant : (1u << 23) | mant;
	iv.even = (m2 & 1) == 0;
	/* 4x the float and the ends of its rounding interval; the lower gap
	 * is half as wide just above a power of two. */
	if (e2 >= 0)
		scale_pos(&iv, 4 * m2, 4 * m2 + 2, 4 * m2 - 1 - (mant != 0 || exp <= 1), e2);
	else
		scale_neg(&iv, 4 * m2, 4 * m2 + 2, 4 * m2 - 1 - (mant != 0 || exp <= 1), e2);
	output = narrow(&iv, &removed);
	n = decimal_len(output);
	/* Trailing zeros come from exact multiples; render() prints the digits. */
	while (n > 1 && output % 10 == 0) {
		output /= 10;
		removed++;
		n--;
	}
	return render(neg, output, n, iv.e10 + removed + n - 1, out);
}
