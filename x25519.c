/*
 * x25519.c -- X25519 (RFC 7748) in radix 2^51, and a br_ec_impl around it.
 *
 * Map: byte-order helpers, field arithmetic mod p = 2^255 - 19, the Montgomery
 * ladder (x25519, x25519_base), then the br_ec_impl for BearSSL's TLS engine.
 *
 * Why: a TLS handshake on the relay does three X25519 (ECDHE key, ECDHE secret,
 * the DERP NaCl box key), and BearSSL 0.6's fastest (m31, 32x32->64 word
 * products) takes ~120 us each on x86-64.  Five 51-bit limbs and 64x64->128
 * products make a field multiplication 25 word products, and the whole X25519
 * about three times faster.  Without unsigned __int128 (32-bit targets) or with
 * -DDERP_NO_FASTEC, x25519() is br_ec_c25519_m31 and none of the field code is
 * compiled.
 *
 * Constant time: no branch or memory index depends on the scalar or on a field
 * value; the only branches are on lengths and curve ids, which are public.  Like
 * BearSSL's m31/m62 code, this assumes the CPU's widest multiply takes the same
 * time for all operands (bearssl.org/ctmul.html lists the cores where it does
 * not; x86-64 MUL is fine).  No byte buffer is cast to a wider type: values are
 * assembled byte by byte, little-endian.
 */
#include <string.h>

#include "x25519.h"

#if defined(__SIZEOF_INT128__) && !defined(DERP_NO_FASTEC)
#define X25519_FAST 1
#else
#define X25519_FAST 0
#endif

/* Zero secrets through a volatile pointer so the stores are not elided as
 * dead (a memset of a buffer about to go out of scope may be). */
static void wipe(void *p, size_t n)
{
	volatile uint8_t *v = (volatile uint8_t *)p;

	while (n-- > 0)
		*v++ = 0;
}

void x25519_base(uint8_t out[32], const uint8_t scalar[32])
{
	static const uint8_t nine[32] = { 9 };

	x25519(out, scalar, nine);
}

int x25519_is_fast(void)
{
	return X25519_FAST;
}

#if X25519_FAST

__extension__ typedef unsigned __int128 u128;

#define MASK51 (((uint64_t)1 << 51) - 1)

/* ---- byte order --------------------------------------------------------- */

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void put_le64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 0; i < 8; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

/* ---- field arithmetic mod p = 2^255 - 19 -------------------------------- */

/*
 * A field element is five uint64_t limbs in radix 2^51,
 *   f = f[0] + f[1]*2^51 + f[2]*2^102 + f[3]*2^153 + f[4]*2^204,
 * not necessarily reduced.  Since 2^255 = 19 mod p, product terms that land
 * at 2^255 or above fold back into the low limbs multiplied by 19.  Two bounds:
 *
 *   tight: every limb < 2^51 + 2^13.  Produced by fe_frombytes, fe_mul, fe_sq,
 *          fe_mul121665 (and 0, 1); a tight f is < 2^255 + 2^218 < 2p.
 *   loose: every limb < 2^54.  Accepted by fe_mul, fe_sq, fe_mul121665.
 *
 * fe_add and fe_sub take tight operands and give loose ones (< 2^53), so a
 * sum or difference goes straight into a multiplication without a carry pass.
 * Every function reads all its inputs before writing, so outputs may alias them.
 */

/* Carry column sums into a tight h.  With loose inputs each word product is
 * < 2^108; r0..r3 hold at most 77 of them (counting the *19s), so < 2^115, and
 * r4 only 5, none folded, so < 2^110.4: its carry is < 2^59.4, and 19 times
 * that plus a 51-bit limb fits 64 bits.  The last carry leaves h1 < 2^51 + 2^13.
 * inline: gcc 12 -O2 would otherwise pass the u128s on the stack (20% slower). */
static inline void fe_carry(uint64_t h[5],
    u128 r0, u128 r1, u128 r2, u128 r3, u128 r4)
{
	uint64_t c;

	r1 += (uint64_t)(r0 >> 51);
	r2 += (uint64_t)(r1 >> 51);
	r3 += (uint64_t)(r2 >> 51);
	r4 += (uint64_t)(r3 >> 51);
	c = ((uint64_t)r0 & MASK51) + 19 * (uint64_t)(r4 >> 51);
	h[0] = c & MASK51;
	h[1] = ((uint64_t)r1 & MASK51) + (c >> 51);
	h[2] = (uint64_t)r2 & MASK51;
	h[3] = (uint64_t)r3 & MASK51;
	h[4] = (uint64_t)r4 & MASK51;
}

/* h = f * g; f, g loose, h tight. */
static void fe_mul(uint64_t h[5], const uint64_t f[5], const uint64_t g[5])
{
	uint64_t f0 = f[0], f1 = f[1], f2 = f[2], f3 = f[3], f4 = f[4];
	uint64_t g0 = g[0], g1 = g[1], g2 = g[2], g3 = g[3], g4 = g[4];
	uint64_t g1_19 = 19 * g1, g2_19 = 19 * g2, g3_19 = 19 * g3, g4_19 = 19 * g4;

	fe_carry(h,
	    (u128)f0 * g0 + (u128)f1 * g4_19 + (u128)f2 * g3_19 +
	    (u128)f3 * g2_19 + (u128)f4 * g1_19,
	    (u128)f0 * g1 + (u128)f1 * g0 + (u128)f2 * g4_19 +
	    (u128)f3 * g3_19 + (u128)f4 * g2_19,
	    (u128)f0 * g2 + (u128)f1 * g1 + (u128)f2 * g0 +
	    (u128)f3 * g4_19 + (u128)f4 * g3_19,
	    (u128)f0 * g3 + (u128)f1 * g2 + (u128)f2 * g1 +
	    (u128)f3 * g0 + (u128)f4 * g4_19,
	    (u128)f0 * g4 + (u128)f1 * g3 + (u128)f2 * g2 +
	    (u128)f3 * g1 + (u128)f4 * g0);
}

/* h = f^2; f loose, h tight.  The 10 cross products appear once, doubled. */
static void fe_sq(uint64_t h[5], const uint64_t f[5])
{
	uint64_t f0 = f[0], f1 = f[1], f2 = f[2], f3 = f[3], f4 = f[4];
	uint64_t d0 = 2 * f0, d1 = 2 * f1, d2 = 2 * f2, d3 = 2 * f3;
	uint64_t f3_19 = 19 * f3, f4_19 = 19 * f4;

	fe_carry(h,
	    (u128)f0 * f0 + (u128)d1 * f4_19 + (u128)d2 * f3_19,
	    (u128)d0 * f1 + (u128)d2 * f4_19 + (u128)f3 * f3_19,
	    (u128)d0 * f2 + (u128)f1 * f1 + (u128)d3 * f4_19,
	    (u128)d0 * f3 + (u128)d1 * f2 + (u128)f4 * f4_19,
	    (u128)d0 * f4 + (u128)d1 * f3 + (u128)f2 * f2);
}

/* h = f^(2^n), n >= 1; f loose, h tight. */
static void fe_sqn(uint64_t h[5], const uint64_t f[5], int n)
{
	fe_sq(h, f);
	while (--n > 0)
		fe_sq(h, h);
}

/* h = 121665 * f, the (A - 2) / 4 of the ladder; f loose, h tight. */
static void fe_mul121665(uint64_t h[5], const uint64_t f[5])
{
	fe_carry(h, (u128)f[0] * 121665, (u128)f[1] * 121665,
	    (u128)f[2] * 121665, (u128)f[3] * 121665, (u128)f[4] * 121665);
}

/* h = f + g; f, g tight, h loose (< 2^52 + 2^14). */
static void fe_add(uint64_t h[5], const uint64_t f[5], const uint64_t g[5])
{
	int i;

	for (i = 0; i < 5; i++)
		h[i] = f[i] + g[i];
}

/* h = f - g + 2p, which keeps limbs non-negative: 2p's limbs are 2^52 - 38,
 * then 2^52 - 2, each above a tight g's.  f, g tight, h loose (< 2^53). */
static void fe_sub(uint64_t h[5], const uint64_t f[5], const uint64_t g[5])
{
	int i;

	h[0] = f[0] + (((uint64_t)1 << 52) - 38) - g[0];
	for (i = 1; i < 5; i++)
		h[i] = f[i] + (((uint64_t)1 << 52) - 2) - g[i];
}

/* Swap f and g iff b == 1 (b is 0 or 1), by masking rather than branching. */
static void fe_cswap(uint64_t f[5], uint64_t g[5], uint64_t b)
{
	uint64_t m = 0 - b, t;
	int i;

	for (i = 0; i < 5; i++) {
		t = m & (f[i] ^ g[i]);
		f[i] ^= t;
		g[i] ^= t;
	}
}

/* 32 little-endian bytes, bit 255 ignored (RFC 7748 section 5), to a tight h
 * (limbs < 2^51); values p..2^255-1 stay unreduced, which is fine mod p. */
static void fe_frombytes(uint64_t h[5], const uint8_t s[32])
{
	h[0] = get_le64(s) & MASK51;		/* bits   0..50 */
	h[1] = (get_le64(s + 6) >> 3) & MASK51;	/* bits  51..101 */
	h[2] = (get_le64(s + 12) >> 6) & MASK51;	/* bits 102..152 */
	h[3] = (get_le64(s + 19) >> 1) & MASK51;	/* bits 153..203 */
	h[4] = (get_le64(s + 24) >> 12) & MASK51;	/* bits 204..254 */
}

/*
 * Tight f to its canonical 32 bytes.  A tight f is < 2p, so f mod p is f - q*p
 * with q = 1 iff f + 19 >= 2^255: q is the carry out of bit 255 of f + 19,
 * found by a carry chain without storing the sum.  Then f + 19q, carried and
 * cut to 255 bits, is f + 19q - q*2^255 = f - q*p.
 */
static void fe_tobytes(uint8_t s[32], const uint64_t f[5])
{
	uint64_t h0 = f[0], h1 = f[1], h2 = f[2], h3 = f[3], h4 = f[4], q;

	q = (h0 + 19) >> 51;
	q = (h1 + q) >> 51;
	q = (h2 + q) >> 51;
	q = (h3 + q) >> 51;
	q = (h4 + q) >> 51;
	h0 += 19 * q;
	h1 += h0 >> 51;
	h2 += h1 >> 51;
	h3 += h2 >> 51;
	h4 += h3 >> 51;
	h0 &= MASK51;
	h1 &= MASK51;
	h2 &= MASK51;
	h3 &= MASK51;
	h4 &= MASK51;				/* drops q * 2^255 */
	put_le64(s, h0 | (h1 << 51));
	put_le64(s + 8, (h1 >> 13) | (h2 << 38));
	put_le64(s + 16, (h2 >> 26) | (h3 << 25));
	put_le64(s + 24, (h3 >> 39) | (h4 << 12));
}

/* h = z^(p-2) = 1/z (0 for z = 0), p - 2 = 2^255 - 21, by a fixed chain of
 * 254 squarings and 11 multiplications; each comment is the exponent so far.
 * z loose, h tight. */
static void fe_invert(uint64_t h[5], const uint64_t z[5])
{
	uint64_t t[4][5];	/* in one array for one wipe */
	uint64_t *z11 = t[0], *a = t[1], *b = t[2], *c = t[3];

	fe_sq(z11, z);				/* 2 */
	fe_sqn(a, z11, 2);			/* 8 */
	fe_mul(a, a, z);			/* 9 */
	fe_mul(z11, z11, a);			/* 11 */
	fe_sq(b, z11);				/* 22 */
	fe_mul(a, a, b);			/* 31 = 2^5 - 1 */
	fe_sqn(b, a, 5);
	fe_mul(a, b, a);			/* 2^10 - 1 */
	fe_sqn(b, a, 10);
	fe_mul(b, b, a);			/* 2^20 - 1 */
	fe_sqn(c, b, 20);
	fe_mul(b, c, b);			/* 2^40 - 1 */
	fe_sqn(b, b, 10);
	fe_mul(a, b, a);			/* 2^50 - 1 */
	fe_sqn(b, a, 50);
	fe_mul(b, b, a);			/* 2^100 - 1 */
	fe_sqn(c, b, 100);
	fe_mul(b, c, b);			/* 2^200 - 1 */
	fe_sqn(b, b, 50);
	fe_mul(a, b, a);			/* 2^250 - 1 */
	fe_sqn(a, a, 5);			/* 2^255 - 32 */
	fe_mul(h, a, z11);			/* 2^255 - 21 */
	wipe(t, sizeof t);
}

/* ---- X25519 ------------------------------------------------------------- */

/*
 * The ladder of RFC 7748 section 5, with its names: (x2:z2) and (x3:z3) are
 * k'P and (k'+1)P for the scalar's top bits k' so far, swapped in constant time
 * when the next bit differs from the previous one.  All four stay tight.
 */
void x25519(uint8_t out[32], const uint8_t scalar[32], const uint8_t u[32])
{
	uint8_t k[32];
	uint64_t t[12][5];	/* every field value, in one array for one wipe */
	uint64_t *x1 = t[0], *x2 = t[1], *z2 = t[2], *x3 = t[3], *z3 = t[4];
	uint64_t *a = t[5], *b = t[6], *c = t[7], *d = t[8], *aa = t[9];
	uint64_t *bb = t[10], *e = t[11];
	uint64_t bit, swap = 0;
	int i;

	/* Read both inputs before out is written: out may alias either. */
	memcpy(k, scalar, 32);
	k[0] &= 248;
	k[31] &= 127;
	k[31] |= 64;
	memset(t, 0, sizeof t);
	fe_frombytes(x1, u);
	x2[0] = 1;				/* (x2:z2) = (1:0), infinity */
	memcpy(x3, x1, sizeof t[0]);		/* (x3:z3) = (u:1) */
	z3[0] = 1;

	for (i = 254; i >= 0; i--) {
		bit = (k[i >> 3] >> (i & 7)) & 1;
		swap ^= bit;
		fe_cswap(x2, x3, swap);
		fe_cswap(z2, z3, swap);
		swap = bit;

		fe_add(a, x2, z2);		/* A */
		fe_sub(b, x2, z2);		/* B */
		fe_add(c, x3, z3);		/* C */
		fe_sub(d, x3, z3);		/* D */
		fe_sq(aa, a);			/* AA */
		fe_sq(bb, b);			/* BB */
		fe_mul(d, d, a);		/* DA */
		fe_mul(c, c, b);		/* CB */
		fe_add(a, d, c);
		fe_sq(x3, a);			/* x3 = (DA + CB)^2 */
		fe_sub(b, d, c);
		fe_sq(b, b);
		fe_mul(z3, x1, b);		/* z3 = x1 * (DA - CB)^2 */
		fe_mul(x2, aa, bb);		/* x2 = AA * BB */
		fe_sub(e, aa, bb);		/* E */
		fe_mul121665(a, e);
		fe_add(a, a, aa);
		fe_mul(z2, e, a);		/* z2 = E * (AA + a24 * E) */
	}
	fe_cswap(x2, x3, swap);
	fe_cswap(z2, z3, swap);

	fe_invert(z2, z2);
	fe_mul(x2, x2, z2);
	fe_tobytes(out, x2);

	wipe(k, sizeof k);
	wipe(t, sizeof t);
}

#else /* !X25519_FAST */

void x25519(uint8_t out[32], const uint8_t scalar[32], const uint8_t u[32])
{
	uint8_t g[32];		/* mul() works in place; out may alias scalar */

	/* BearSSL takes both in RFC 7748 byte order and clamps itself. */
	memcpy(g, u, 32);
	(void)br_ec_c25519_m31.mul(g, 32, scalar, 32, BR_EC_curve25519);
	memcpy(out, g, 32);
	wipe(g, sizeof g);
}

#endif /* X25519_FAST */

/* ---- br_ec_impl --------------------------------------------------------- */

/*
 * Curve25519 mul and mulgen go to x25519() with br_ec_c25519_m31's conventions
 * (see x25519.h, found by testing: bearssl_ec.h's "big-endian" does not hold
 * for Curve25519); everything else is br_ec_all_m31's.
 */
static uint32_t api_mul(unsigned char *G, size_t Glen,
    const unsigned char *x, size_t xlen, int curve)
{
#if X25519_FAST
	uint8_t k[32];

	if (curve == BR_EC_curve25519) {
		if (Glen != 32 || xlen > 32)
			return 0;
		memset(k, 0, sizeof k);
		if (xlen > 0)
			memcpy(k, x, xlen);
		x25519(G, k, G);
		wipe(k, sizeof k);
		return 1;
	}
#endif
	return br_ec_all_m31.mul(G, Glen, x, xlen, curve);
}

static size_t api_mulgen(unsigned char *R,
    const unsigned char *x, size_t xlen, int curve)
{
#if X25519_FAST
	if (curve == BR_EC_curve25519) {
		memset(R, 0, 32);
		R[0] = 9;
		(void)api_mul(R, 32, x, xlen, curve);
		return 32;
	}
#endif
	return br_ec_all_m31.mulgen(R, x, xlen, curve);
}

static const unsigned char *api_generator(int curve, size_t *len)
{
	return br_ec_all_m31.generator(curve, len);
}

static const unsigned char *api_order(int curve, size_t *len)
{
	return br_ec_all_m31.order(curve, len);
}

static size_t api_xoff(int curve, size_t *len)
{
	return br_ec_all_m31.xoff(curve, len);
}

static uint32_t api_muladd(unsigned char *A, const unsigned char *B, size_t len,
    const unsigned char *x, size_t xlen,
    const unsigned char *y, size_t ylen, int curve)
{
	return br_ec_all_m31.muladd(A, B, len, x, xlen, y, ylen, curve);
}

/* br_ec_all_m31.supported_curves is not a constant expression, so it is spelt
 * out here (P-256, P-384, P-521, Curve25519); the test checks they agree. */
const br_ec_impl x25519_ec_impl = {
	((uint32_t)1 << BR_EC_secp256r1) | ((uint32_t)1 << BR_EC_secp384r1) |
	((uint32_t)1 << BR_EC_secp521r1) | ((uint32_t)1 << BR_EC_curve25519),
	&api_generator,
	&api_order,
	&api_xoff,
	&api_mul,
	&api_mulgen,
	&api_muladd
};
