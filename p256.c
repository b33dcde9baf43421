/*
 * p256.c -- ECDSA P-256 signing with 64-bit limbs and a fixed-base table
 * (see p256.h).
 *
 * Map: the BearSSL fallback, then (fast build only) byte-order and
 * constant-time helpers, Montgomery arithmetic shared by the field (mod p)
 * and the scalars (mod n), Jacobian point formulas, the fixed-base table and
 * k*G, and last the RFC 6979 signer with its DER encoder.
 *
 * Numbers are 4 little-endian 64-bit limbs (limb 0 least significant); bytes
 * are always moved through decode32/encode32, never by casting buffers, so
 * the code is endian-neutral.  Field elements live in Montgomery form aR mod p
 * with R = 2^256, fully reduced (in [0, p)) after every operation; scalars
 * mod n use the same code with n.  Products are 64x64->128 through
 * unsigned __int128.
 *
 * Constant time: nothing branches on or indexes by k, d, k^-1 or a point
 * derived from them.  Data-dependent branches are only on public outcomes:
 * a rejected key (the caller gets 0), an RFC 6979 candidate k outside
 * [1, n-1] (discarded, never used), r or s equal to 0, and the lengths of r
 * and s in the DER output.  Like BearSSL's m31/m64 code this assumes the
 * CPU multiplies in constant time, and that a compiler turns a carry test
 * "sum < addend" into flag arithmetic (adc/setc), as gcc and clang do.
 */
#include <stdint.h>
#include <string.h>

#include "p256.h"

#if defined(__SIZEOF_INT128__) && !defined(DERP_NO_FASTEC)
#define P256_FAST 1
#endif

#ifndef P256_FAST

int p256_init(void)
{
	return 0;
}

int p256_is_fast(void)
{
	return 0;
}

size_t p256_ecdsa_sign_asn1(const br_ec_impl *impl, const br_hash_class *hf,
    const void *hash_value, const br_ec_private_key *sk, void *sig)
{
	return br_ecdsa_i31_sign_asn1(impl, hf, hash_value, sk, sig);
}

size_t p256_mulgen_for_test(unsigned char out[65], const unsigned char k[32])
{
	/* n, big-endian; BearSSL's mulgen itself does not check the range */
	static const unsigned char n[32] = {
		0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00,
		0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
		0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84,
		0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51
	};
	static const unsigned char zero[32];

	if (memcmp(k, n, 32) >= 0 || memcmp(k, zero, 32) == 0)
		return 0;
	return br_ec_p256_m31.mulgen(out, k, 32, BR_EC_secp256r1);
}

#else /* P256_FAST */

__extension__ typedef unsigned __int128 u128;

/* ---- constants (FIPS 186-4 D.1.2.3), limb 0 first ----------------------- */

/* p = 2^256 - 2^224 + 2^192 + 2^96 - 1; p = -1 mod 2^64, so -p^-1 = 1. */
static const uint64_t P[4] = {
	0xFFFFFFFFFFFFFFFF, 0x00000000FFFFFFFF, 0, 0xFFFFFFFF00000001
};
#define P_N0 1

/* Group order n, and -n^-1 mod 2^64 for Montgomery reduction. */
static const uint64_t N[4] = {
	0xF3B9CAC2FC632551, 0xBCE6FAADA7179E84,
	0xFFFFFFFFFFFFFFFF, 0xFFFFFFFF00000000
};
#define N_N0 0xCCD1C8AAEE00BC4F

/* R^2 mod p and mod n (R = 2^256): mont_mul(a, R2) = aR, into the domain. */
static const uint64_t P_R2[4] = {
	0x0000000000000003, 0xFFFFFFFBFFFFFFFF,
	0xFFFFFFFFFFFFFFFE, 0x00000004FFFFFFFD
};
static const uint64_t N_R2[4] = {
	0x83244C95BE79EEA2, 0x4699799C49BD6FA6,
	0x2845B2392B6BEC59, 0x66E12D94F3D95620
};
/* R mod p, 1 in Montgomery form; mont_mul(aR, ONE) = a leaves the domain. */
static const uint64_t P_ONE[4] = {
	0x0000000000000001, 0xFFFFFFFF00000000,
	0xFFFFFFFFFFFFFFFF, 0x00000000FFFFFFFE
};
static const uint64_t ONE[4] = { 1, 0, 0, 0 };
static const uint64_t ZERO[4] = { 0, 0, 0, 0 };

static const uint64_t GX[4] = {
	0xF4A13945D898C296, 0x77037D812DEB33A0,
	0xF8BCE6E563A440F2, 0x6B17D1F2E12C4247
};
static const uint64_t GY[4] = {
	0xCBB6406837BF51F5, 0x2BCE33576B315ECE,
	0x8EE7EB4A7C0F9E16, 0x4FE342E2FE1A7F9B
};
static const uint64_t CURVE_B[4] = {
	0x3BCE3C3E27D2604B, 0x651D06B0CC53B0F6,
	0xB3EBBD55769886BC, 0x5AC635D8AA3A93E7
};

/* ---- helpers ------------------------------------------------------------ */

/* 32 big-endian bytes <-> 4 limbs, byte by byte (any alignment, endianness). */
static void decode32(uint64_t a[4], const unsigned char b[32])
{
	int i;

	memset(a, 0, 32);
	for (i = 0; i < 32; i++)
		a[3 - i / 8] = (a[3 - i / 8] << 8) | b[i];
}

static void encode32(unsigned char b[32], const uint64_t a[4])
{
	int i;

	for (i = 0; i < 32; i++)
		b[i] = (unsigned char)(a[3 - i / 8] >> (56 - 8 * (i % 8)));
}

/* Zero secrets through a volatile pointer so the stores are not elided. */
static void wipe(void *p, size_t n)
{
	volatile unsigned char *v = (volatile unsigned char *)p;

	while (n-- > 0)
		*v++ = 0;
}

/* All ones if x == 0, else 0; no branch. */
static uint64_t ct_is_zero(uint64_t x)
{
	return -(((x | -x) >> 63) ^ 1);
}

/* d = mask ? a : b, mask all ones or all zeros. */
static inline void ct_select(uint64_t *d, const uint64_t *a, const uint64_t *b,
    size_t n, uint64_t mask)
{
	size_t i;

	/* The optimizer must not learn that mask is 0 or ~0: clang -Os made
	 * a select of this kind a choice between two addresses, a load whose
	 * address depends on the secret. */
	__asm__("" : "+r"(mask));
	for (i = 0; i < n; i++)
		d[i] = (a[i] & mask) | (b[i] & ~mask);
}

/*
 * Carry and borrow out of the limb sum d = a + b + c or difference
 * d = a - b - c, c in {0, 1} (Hacker's Delight 2-13).  Carries never go
 * through unsigned __int128 sums of zero-extended words: gcc 12 spills the
 * zero halves to the stack, and a field multiplication took 1.5x as long.
 */
static uint64_t carry_out(uint64_t a, uint64_t b, uint64_t d)
{
	return ((a & b) | ((a | b) & ~d)) >> 63;
}

static uint64_t borrow_out(uint64_t a, uint64_t b, uint64_t d)
{
	return ((~a & b) | (~(a ^ b) & d)) >> 63;
}

/* d = a - b mod 2^256, returns the borrow (1 iff a < b); d may alias a, b. */
static inline uint64_t sub4(uint64_t d[4], const uint64_t a[4],
    const uint64_t b[4])
{
	uint64_t x, br = 0;
	int i;

	for (i = 0; i < 4; i++) {
		x = a[i] - b[i] - br;
		br = borrow_out(a[i], b[i], x);
		d[i] = x;
	}
	return br;
}

/* 1 iff 0 < k < n, without branches (k may be secret). */
static int scalar_ok(const uint64_t k[4])
{
	uint64_t t[4], nz;

	nz = ~ct_is_zero(k[0] | k[1] | k[2] | k[3]);
	return (int)(sub4(t, k, N) & nz & 1);
}

/* ---- Montgomery arithmetic mod m (m = p or n, odd, 2^255 < m < 2^256) --- */

/*
 * d = t - m if the 257-bit value hi:t is >= m, else t.  Callers guarantee
 * hi:t < 2m, so one subtraction reduces fully.
 */
static inline void reduce_once(uint64_t d[4], const uint64_t t[4], uint64_t hi,
    const uint64_t m[4])
{
	uint64_t u[4], br;

	br = sub4(u, t, m);
	/* keep t only when t < m: a borrow and no 257th bit */
	ct_select(d, t, u, 4, -(br & (hi ^ 1)));
}

static void mod_add(uint64_t d[4], const uint64_t a[4], const uint64_t b[4],
    const uint64_t m[4])
{
	uint64_t t[4], x, c = 0;
	int i;

	for (i = 0; i < 4; i++) {
		x = a[i] + b[i] + c;
		c = carry_out(a[i], b[i], x);
		t[i] = x;
	}
	reduce_once(d, t, c, m);
}

static void mod_sub(uint64_t d[4], const uint64_t a[4], const uint64_t b[4],
    const uint64_t m[4])
{
	uint64_t t[4], madd[4], x, c = 0, mask;
	int i;

	/* add m back if a < b */
	mask = -sub4(t, a, b);
	__asm__("" : "+r"(mask));	/* the compiler must not know mask is 0 or ~0 */
	for (i = 0; i < 4; i++)
		madd[i] = m[i] & mask;
	for (i = 0; i < 4; i++) {
		x = t[i] + madd[i] + c;
		c = carry_out(t[i], madd[i], x);
		d[i] = x;
	}
}

/*
 * *lo = low word of a*b + c + d, returns the high word; the sum is below
 * 2^128 since (2^64-1)^2 + 2(2^64-1) = 2^128 - 1.  Only the product is
 * 128-bit; the additions carry through 64-bit compares (see carry_out).
 */
static inline uint64_t mac(uint64_t *lo, uint64_t a, uint64_t b, uint64_t c,
    uint64_t d)
{
	u128 p = (u128)a * b;
	uint64_t l = (uint64_t)p, h = (uint64_t)(p >> 64);

	l += c;
	h += l < c;
	l += d;
	h += l < d;
	*lo = l;
	return h;
}

/*
 * One round of operand-scanning Montgomery multiplication (CIOS):
 * t = (t + a*bi + q*m) / 2^64, q chosen to zero the low limb.  For m = p
 * (a public choice) q = t[0] and the limbs of p make q*p cheap: q*p[0] +
 * t[0] = q*2^64, then q*p[1] + q = q*2^32 and p[2] = 0; about 15% faster.
 */
static inline void mont_round(uint64_t t[5], const uint64_t a[4], uint64_t bi,
    const uint64_t m[4], uint64_t m0)
{
	uint64_t c, hi, q, x;

	c = mac(&t[0], a[0], bi, t[0], 0);
	c = mac(&t[1], a[1], bi, t[1], c);
	c = mac(&t[2], a[2], bi, t[2], c);
	c = mac(&t[3], a[3], bi, t[3], c);
	t[4] += c;
	hi = t[4] < c;
	q = t[0] * m0;
	if (m == P) {
		x = t[1] + (q << 32);
		c = (q >> 32) + (x < t[1]);
		t[0] = x;
		t[1] = t[2] + c;
		c = t[1] < c;
	} else {
		c = mac(&x, q, m[0], t[0], 0);	/* x = 0 by the choice of q */
		c = mac(&t[0], q, m[1], t[1], c);
		c = mac(&t[1], q, m[2], t[2], c);
	}
	c = mac(&t[2], q, m[3], t[3], c);
	t[3] = t[4] + c;
	t[4] = hi + (t[3] < c);
}

/*
 * d = a * b / R mod m.  With a, b < m the accumulator stays below 2m < 2^257
 * (four limbs and a carry bit in t[4]), so one conditional subtraction
 * finishes.  d may alias a or b.
 */
static void mont_mul(uint64_t d[4], const uint64_t a[4], const uint64_t b[4],
    const uint64_t m[4], uint64_t m0)
{
	uint64_t t[5] = { 0, 0, 0, 0, 0 };
	int i;

	for (i = 0; i < 4; i++)
		mont_round(t, a, b[i], m, m0);
	reduce_once(d, t, t[4], m);
}

/*
 * d = a^(m-2) = a^-1 (Fermat; 0 for a = 0) in the Montgomery domain.  Fixed
 * 4-bit windows over the public exponent, so a window may index pw[]:
 * 14 products for the powers, 252 squarings, at most 63 products.
 */
static void mont_inv(uint64_t d[4], const uint64_t a[4], const uint64_t m[4],
    uint64_t m0)
{
	uint64_t pw[16][4], acc[4], e[4];
	unsigned nib;
	int i;

	memcpy(e, m, sizeof e);
	e[0] -= 2;			/* both moduli have m[0] >= 2 */
	memcpy(pw[1], a, sizeof pw[1]);
	for (i = 2; i < 16; i++)
		mont_mul(pw[i], pw[i - 1], a, m, m0);
	memcpy(acc, pw[e[3] >> 60], sizeof acc);	/* top nibble is 0xF */
	for (i = 62; i >= 0; i--) {
		nib = (unsigned)(e[i >> 4] >> ((i & 15) * 4)) & 15;
		mont_mul(acc, acc, acc, m, m0);
		mont_mul(acc, acc, acc, m, m0);
		mont_mul(acc, acc, acc, m, m0);
		mont_mul(acc, acc, acc, m, m0);
		if (nib != 0)
			mont_mul(acc, acc, pw[nib], m, m0);
	}
	memcpy(d, acc, sizeof acc);
	wipe(pw, sizeof pw);
	wipe(acc, sizeof acc);
}

/* The field: arithmetic mod p. */
#define fp_mul(d, a, b)	mont_mul(d, a, b, P, P_N0)
#define fp_add(d, a, b)	mod_add(d, a, b, P)
#define fp_sub(d, a, b)	mod_sub(d, a, b, P)

/* ---- points ------------------------------------------------------------- */

/* Affine (x, y) and Jacobian (X/Z^2, Y/Z^3), coordinates in Montgomery form. */
struct aff {
	uint64_t x[4], y[4];
};

struct jac {
	uint64_t x[4], y[4], z[4];
};

/*
 * r = 2a, for curve parameter a = -3 (dbl-2001-b): 3M + 5S.  a = infinity
 * (Z = 0) gives Z = 0; no point of P-256 has y = 0.
 */
static void point_dbl(struct jac *r, const struct jac *a)
{
	uint64_t delta[4], gamma[4], beta[4], alpha[4], t[4], u[4];

	fp_mul(delta, a->z, a->z);
	fp_mul(gamma, a->y, a->y);
	fp_mul(beta, a->x, gamma);
	fp_sub(t, a->x, delta);
	fp_add(u, a->x, delta);
	fp_mul(alpha, t, u);
	fp_add(t, alpha, alpha);
	fp_add(alpha, alpha, t);
	/* Z3 = (Y + Z)^2 - gamma - delta */
	fp_add(t, a->y, a->z);
	fp_mul(t, t, t);
	fp_sub(t, t, gamma);
	fp_sub(r->z, t, delta);
	/* X3 = alpha^2 - 8 beta */
	fp_add(beta, beta, beta);
	fp_add(beta, beta, beta);
	fp_mul(t, alpha, alpha);
	fp_sub(t, t, beta);
	fp_sub(r->x, t, beta);
	/* Y3 = alpha (4 beta - X3) - 8 gamma^2 */
	fp_sub(u, beta, r->x);
	fp_mul(u, alpha, u);
	fp_mul(gamma, gamma, gamma);
	fp_add(gamma, gamma, gamma);
	fp_add(gamma, gamma, gamma);
	fp_add(gamma, gamma, gamma);
	fp_sub(r->y, u, gamma);
}

/*
 * r = a + b with b affine (mixed addition): 8M + 3S.  Wrong when a = +-b or
 * a is infinity; returns all ones when H = x(b) Z^2 - X is 0, which is
 * exactly a = +-b, so the caller can substitute a doubling.  r may be a.
 */
static uint64_t point_madd(struct jac *r, const struct jac *a,
    const struct aff *b)
{
	uint64_t zz[4], u2[4], s2[4], h[4], rr[4], hh[4], hhh[4], v[4], t[4];

	fp_mul(zz, a->z, a->z);
	fp_mul(u2, b->x, zz);
	fp_mul(s2, a->z, zz);
	fp_mul(s2, b->y, s2);
	fp_sub(h, u2, a->x);
	fp_sub(rr, s2, a->y);
	fp_mul(hh, h, h);
	fp_mul(hhh, h, hh);
	fp_mul(v, a->x, hh);
	fp_mul(r->z, a->z, h);
	/* X3 = R^2 - H^3 - 2V, Y3 = R (V - X3) - Y1 H^3 */
	fp_mul(t, rr, rr);
	fp_sub(t, t, hhh);
	fp_sub(t, t, v);
	fp_sub(r->x, t, v);
	fp_sub(v, v, r->x);
	fp_mul(v, rr, v);
	fp_mul(hhh, a->y, hhh);
	fp_sub(r->y, v, hhh);
	return ct_is_zero(h[0] | h[1] | h[2] | h[3]);
}

static void jac_from_aff(struct jac *r, const struct aff *a)
{
	memcpy(r->x, a->x, sizeof r->x);
	memcpy(r->y, a->y, sizeof r->y);
	memcpy(r->z, P_ONE, sizeof r->z);
}

/*
 * Affine forms of a[0..n-1], none infinity, with one Fermat inversion
 * (Montgomery's trick): prefix products of the Z, invert, then unwind.
 */
#define BATCH_MAX 8
static void batch_to_aff(struct aff *r, const struct jac *a, int n)
{
	uint64_t pre[BATCH_MAX][4], inv[4], zi[4], zi2[4];
	int i;

	memcpy(pre[0], a[0].z, sizeof pre[0]);
	for (i = 1; i < n; i++)
		fp_mul(pre[i], pre[i - 1], a[i].z);
	mont_inv(inv, pre[n - 1], P, P_N0);
	for (i = n - 1; i >= 0; i--) {
		if (i > 0) {
			fp_mul(zi, inv, pre[i - 1]);
			fp_mul(inv, inv, a[i].z);
		} else {
			memcpy(zi, inv, sizeof zi);
		}
		fp_mul(zi2, zi, zi);
		fp_mul(r[i].x, a[i].x, zi2);
		fp_mul(zi, zi, zi2);
		fp_mul(r[i].y, a[i].y, zi);
	}
	/* in mulgen, Z carries information about k */
	wipe(pre, sizeof pre);
	wipe(inv, sizeof inv);
	wipe(zi, sizeof zi);
	wipe(zi2, sizeof zi2);
}

/* ---- fixed-base table and k*G ------------------------------------------- */

/*
 * tab[i][j] = (2j + 1) * 16^i * G, affine, i = 0..63, j = 0..7: 64 windows
 * x 8 odd multiples x 64 bytes = 32768 bytes.  Odd digits only, because the
 * scalar is written in the signed odd-digit form below, which has no zero
 * digit: each window is one mixed addition and no entry is infinity.
 */
#define TAB_WINDOWS 64
#define TAB_ENTRIES 8
static struct aff tab[TAB_WINDOWS][TAB_ENTRIES];
static int tab_state;		/* 0 not built, 1 ready, -1 self-check failed */

/* y^2 == x^3 - 3x + b, in constant time (used on public points only). */
static int on_curve(const struct aff *a)
{
	uint64_t l[4], r[4], t[4], b[4];

	fp_mul(b, CURVE_B, P_R2);
	fp_mul(l, a->y, a->y);
	fp_mul(r, a->x, a->x);
	fp_mul(r, r, a->x);
	fp_sub(r, r, a->x);
	fp_sub(r, r, a->x);
	fp_sub(r, r, a->x);
	fp_add(r, r, b);
	sub4(t, l, r);
	return ct_is_zero(t[0] | t[1] | t[2] | t[3]) != 0;
}

int p256_init(void)
{
	struct jac j[BATCH_MAX], d;
	struct aff base, twice, chk[BATCH_MAX];
	int i, e, ok = 1;

	/* Built once per process: a second relay in it (derp.h allows one per
	 * thread) must not rewrite the table under one that is signing. */
	if (tab_state != 0)
		return tab_state == 1 ? 0 : -1;
	/* base = 16^i G; j[e-1] = (2e + 1) base; j[7] = 16 base, next row */
	fp_mul(base.x, GX, P_R2);
	fp_mul(base.y, GY, P_R2);
	for (i = 0; i < TAB_WINDOWS; i++) {
		tab[i][0] = base;
		jac_from_aff(&d, &base);
		point_dbl(&d, &d);
		batch_to_aff(&twice, &d, 1);
		/*
		 * No addition here is exceptional: each adds a*base and
		 * b*base with 1 <= a, b <= 15, a != b, a + b <= 16, and
		 * base = 16^i G with 16^i <= 2^252; (a -+ b) 16^i is then
		 * nonzero, at most 2^256 < 2n, and not n (n is no multiple
		 * of 2^252), so the points are neither equal nor opposite.
		 */
		jac_from_aff(&j[0], &base);
		point_madd(&j[0], &j[0], &twice);
		for (e = 1; e < TAB_ENTRIES - 1; e++)
			point_madd(&j[e], &j[e - 1], &twice);
		point_madd(&j[7], &j[6], &base);
		batch_to_aff(chk, j, BATCH_MAX);
		for (e = 1; e < TAB_ENTRIES; e++)
			tab[i][e] = chk[e - 1];
		base = chk[7];
	}
	for (i = 0; i < TAB_WINDOWS; i++)
		for (e = 0; e < TAB_ENTRIES; e++)
			ok &= on_curve(&tab[i][e]);
	tab_state = ok ? 1 : -1;
	return ok ? 0 : -1;
}

int p256_is_fast(void)
{
	return 1;
}

/* The 5 bits of k at bit position pos (bits past 255 read as 0). */
static unsigned bits5(const uint64_t k[4], unsigned pos)
{
	uint64_t w = k[pos >> 6] >> (pos & 63);

	if ((pos & 63) > 59 && (pos >> 6) < 3)
		w |= k[(pos >> 6) + 1] << (64 - (pos & 63));
	return (unsigned)w & 31;
}

/*
 * r = table point for window i and odd digit +-(2 idx + 1): reads all 8
 * entries and keeps one with masks, then negates y under a mask.
 */
static void lookup(struct aff *r, int i, unsigned idx, uint64_t neg)
{
	uint64_t ny[4], m;
	unsigned e;
	int l;

	memset(r, 0, sizeof *r);
	for (e = 0; e < TAB_ENTRIES; e++) {
		m = ct_is_zero(e ^ idx);
		for (l = 0; l < 4; l++) {
			r->x[l] |= tab[i][e].x[l] & m;
			r->y[l] |= tab[i][e].y[l] & m;
		}
	}
	fp_sub(ny, ZERO, r->y);
	ct_select(r->y, ny, r->y, 4, neg);
}

/*
 * (x, y) = k*G, affine, out of the Montgomery domain, for k in [1, n-1].
 *
 * k' = k if k is odd, else n - k (odd, as n is odd); kG = +-k'G.  An odd
 * k' < 2^256 is sum d_i 16^i, i = 0..63, with every d_i odd: for i < 63,
 * d_i = ((k' >> 4i) mod 32 | 1) - 16 in [-15, 15], and d_63 = (k' >> 252) | 1
 * in [1, 15] (the "| 1" is the carry of the digit below; check: with
 * k_i = (k' >> 4i) | 1 we have k_i = d_i + 16 k_{i+1}).
 *
 * Exceptional additions: before window i the sum is s G with s odd and
 * |s| < 16^i, and we add d_i 16^i G with 16^i <= |d_i 16^i| < 16^(i+1).  For
 * i <= 62, 0 < |s -+ d_i 16^i| < 16^(i+1) <= 2^252 < n, so the points differ,
 * are not opposite, and s G is not infinity.  At i = 63, s + d_63 16^63 = k'
 * is not 0 mod n, but s = d_63 16^63 - n (a doubling) is possible, exactly
 * for k' = 30 * 2^252 - n; point_madd flags it and the last step takes a
 * doubling instead, in constant time.
 *
 * Wiped here: the scalar, the running sum, the last table point.  The field
 * and point functions' own stack temporaries are not (BearSSL does not
 * either); the next calls overwrite them.
 */
static void mulgen(uint64_t x[4], uint64_t y[4], const uint64_t k[4])
{
	uint64_t kk[4], nk[4], even, neg;
	struct jac q, q2;
	struct aff a;
	unsigned h;
	int i;

	even = ct_is_zero(k[0] & 1);
	sub4(nk, N, k);
	ct_select(kk, nk, k, 4, even);

	for (i = 0; i < TAB_WINDOWS; i++) {
		if (i < TAB_WINDOWS - 1) {
			h = (bits5(kk, 4 * i) | 1) >> 1;
			/* digit 2h + 1 - 16 < 0 iff h < 8 */
			neg = ct_is_zero(h >> 3);
			lookup(&a, i, (h & 7) ^ (unsigned)(neg & 7), neg);
		} else {
			lookup(&a, i, bits5(kk, 4 * i) >> 1, 0);
		}
		if (i == 0) {
			jac_from_aff(&q, &a);
		} else if (i < TAB_WINDOWS - 1) {
			point_madd(&q, &q, &a);
		} else {
			point_dbl(&q2, &q);
			neg = point_madd(&q, &q, &a);
			ct_select(q.x, q2.x, q.x, 4, neg);
			ct_select(q.y, q2.y, q.y, 4, neg);
			ct_select(q.z, q2.z, q.z, 4, neg);
		}
	}
	batch_to_aff(&a, &q, 1);
	mont_mul(x, a.x, ONE, P, P_N0);
	mont_mul(y, a.y, ONE, P, P_N0);
	mod_sub(nk, ZERO, y, P);
	ct_select(y, nk, y, 4, even);

	wipe(kk, sizeof kk);
	wipe(nk, sizeof nk);
	wipe(&q, sizeof q);
	wipe(&q2, sizeof q2);
	wipe(&a, sizeof a);
}

static int p256_ready(void)
{
	if (tab_state == 0)
		p256_init();
	return tab_state == 1;
}

size_t p256_mulgen_for_test(unsigned char out[65], const unsigned char k[32])
{
	uint64_t kl[4], x[4], y[4];

	decode32(kl, k);
	if (!p256_ready() || !scalar_ok(kl))
		return 0;
	mulgen(x, y, kl);
	out[0] = 0x04;
	encode32(out + 1, x);
	encode32(out + 33, y);
	return 65;
}

/* ---- ECDSA with RFC 6979 nonces ----------------------------------------- */

/*
 * DER INTEGER (minimal, positive) for the big-endian v[32], written at out
 * if it fits in cap bytes; returns its length, or 0 if it does not fit.
 */
static size_t der_int(unsigned char *out, size_t cap, const unsigned char v[32])
{
	size_t i = 0, len, pad;

	while (i < 31 && v[i] == 0)
		i++;
	len = 32 - i;
	pad = v[i] >> 7;	/* a 0x00 keeps a high first bit positive */
	if (2 + pad + len > cap)
		return 0;
	out[0] = 0x02;
	out[1] = (unsigned char)(pad + len);
	out[2] = 0x00;		/* the pad, or overwritten by v */
	memcpy(out + 2 + pad, v + i, len);
	return 2 + pad + len;
}

size_t p256_ecdsa_sign_asn1(const br_ec_impl *impl, const br_hash_class *hf,
    const void *hash_value, const br_ec_private_key *sk, void *sig)
{
	unsigned char seed[64], buf[32], rb[32], sb[32];
	unsigned char der[P256_SIG_MAX_BYTES];
	uint64_t d[4], z[4], k[4], x[4], y[4], r[4], s[4], t[4];
	br_hmac_drbg_context drbg;
	size_t hlen, rlen, slen, len;

	if (sk->curve != BR_EC_secp256r1 || sk->xlen > 32 ||
	    !(impl->supported_curves & ((uint32_t)1 << BR_EC_secp256r1)) ||
	    !p256_ready())
		return br_ecdsa_i31_sign_asn1(impl, hf, hash_value, sk, sig);

	/* int2octets(d): the key left-padded to 32 bytes; 0 < d < n */
	memset(seed, 0, sizeof seed);
	if (sk->xlen > 0)	/* else x may be NULL, which memcpy forbids */
		memcpy(seed + 32 - sk->xlen, sk->x, sk->xlen);
	decode32(d, seed);
	if (!scalar_ok(d)) {
		len = 0;
		goto done;
	}

	/*
	 * bits2int(h): qlen = 256 is a whole number of bytes, so it is the
	 * first 32 bytes of a longer hash, or a shorter hash left-padded.
	 * bits2octets(h) = bits2int(h) mod n; z < 2^256 < 2n.
	 */
	hlen = (hf->desc >> BR_HASHDESC_OUT_OFF) & BR_HASHDESC_OUT_MASK;
	memset(buf, 0, sizeof buf);
	if (hlen >= 32)
		memcpy(buf, hash_value, 32);
	else
		memcpy(buf + 32 - hlen, hash_value, hlen);
	decode32(z, buf);
	reduce_once(z, z, 0, N);
	encode32(seed + 32, z);

	/*
	 * RFC 6979 3.2 steps b-g are HMAC_DRBG instantiation with seed
	 * int2octets(d) || bits2octets(h); step h is generate, and its
	 * retry (K = HMAC_K(V || 0), V = HMAC_K(V)) is the update that
	 * br_hmac_drbg_generate does after each output.
	 */
	br_hmac_drbg_init(&drbg, hf, seed, sizeof seed);
	for (;;) {
		br_hmac_drbg_generate(&drbg, buf, sizeof buf);
		decode32(k, buf);
		if (!scalar_ok(k))
			continue;	/* about 2^-32: not in [1, n-1] */
		mulgen(x, y, k);
		reduce_once(r, x, 0, N);	/* x < p < 2n */
		if (ct_is_zero(r[0] | r[1] | r[2] | r[3]))
			continue;
		/*
		 * s = k^-1 (z + r d) mod n.  Montgomery: (kR)^(n-2) = k^-1 R;
		 * (rR) d / R = r d; (k^-1 R)(z + r d) / R = s.
		 */
		mont_mul(k, k, N_R2, N, N_N0);
		mont_inv(k, k, N, N_N0);
		mont_mul(t, r, N_R2, N, N_N0);
		mont_mul(t, t, d, N, N_N0);
		mod_add(t, t, z, N);
		mont_mul(s, k, t, N, N_N0);
		if (!ct_is_zero(s[0] | s[1] | s[2] | s[3]))
			break;
	}

	encode32(rb, r);
	encode32(sb, s);
	rlen = der_int(der + 2, sizeof der - 2, rb);
	slen = der_int(der + 2 + rlen, sizeof der - 2 - rlen, sb);
	if (rlen == 0 || slen == 0) {	/* cannot happen: 2 + 2 x 35 = 72 */
		len = 0;
		goto done;
	}
	len = rlen + slen;
	der[0] = 0x30;
	der[1] = (unsigned char)len;
	len += 2;
	memcpy(sig, der, len);

done:
	wipe(seed, sizeof seed);
	wipe(buf, sizeof buf);
	wipe(d, sizeof d);
	wipe(k, sizeof k);
	wipe(t, sizeof t);
	wipe(&drbg, sizeof drbg);
	return len;
}

#endif /* P256_FAST */
