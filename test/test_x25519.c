/*
 * test_x25519.c -- known-answer and differential tests for x25519.c.
 *
 * Usage: test_x25519 [seed]
 *
 * RFC 7748 vectors (section 5.2, the iterated test to 1,000, section 6.1), then
 * x25519()/x25519_base() against BearSSL's br_ec_c25519_m31 on random and edge
 * inputs, x25519_ec_impl against br_ec_c25519_m31 and br_ec_p256_m31 operation
 * by operation, and aliasing.  Random inputs come from a fixed-seed PRNG (seed
 * from argv[1] if given) so a failure repeats.
 *
 * Output: one line per check, "ok <name>" or "FAIL <name>: <detail>", then
 * "N passed, N failed"; lines starting with '#' are information (timing).
 * Exit status 0 iff nothing failed.
 */
#define _POSIX_C_SOURCE 200809L	/* clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../x25519.h"

#define RANDOM_PAIRS 2000	/* (scalar, u) pairs against br_ec_c25519_m31 */
#define RANDOM_IMPL 300		/* inputs per br_ec_impl operation */
#define TIMING_CALLS 100	/* calls per timing round */
#define TIMING_ROUNDS 5		/* rounds; the fastest is reported */

static int npass, nfail;
static uint64_t rng_state = 0x7832353531392d31;	/* "x25519-1" */

static void check(int cond, const char *name, const char *detail)
{
	if (cond) {
		printf("ok %s\n", name);
		npass++;
	} else {
		printf("FAIL %s: %s\n", name, detail);
		nfail++;
	}
}

/* splitmix64: tiny, and every seed gives a full-period stream. */
static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
	return z ^ (z >> 31);
}

static void rng_bytes(uint8_t *p, size_t n)
{
	while (n-- > 0)
		*p++ = (uint8_t)rng_next();
}

static void unhex(uint8_t *out, const char *hex, size_t n)
{
	size_t i;
	unsigned v;

	for (i = 0; i < n; i++) {
		if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
			fprintf(stderr, "bad hex constant %s\n", hex);
			exit(2);
		}
		out[i] = (uint8_t)v;
	}
}

static void tohex(char *out, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

/* Check got == the hex string want (32 bytes). */
static void check_hex(const char *name, const uint8_t got[32], const char *want)
{
	uint8_t w[32];
	char detail[160], g[65];

	unhex(w, want, 32);
	tohex(g, got, 32);
	snprintf(detail, sizeof detail, "got %s want %s", g, want);
	check(memcmp(got, w, 32) == 0, name, detail);
}

/* Record the first mismatch of a loop for its one check line. */
static void mismatch(char *detail, size_t size, int i, const uint8_t *k,
    const uint8_t *u, const uint8_t *a, const uint8_t *b, size_t n)
{
	char hk[65], hu[65], ha[65], hb[65];

	if (detail[0] != '\0')
		return;
	tohex(hk, k, 32);
	tohex(hu, u, 32);
	tohex(ha, a, n);
	tohex(hb, b, n);
	snprintf(detail, size, "#%d scalar %s u %s: ours %s bearssl %s",
	    i, hk, hu, ha, hb);
}

/* RFC 7748 section 5.2 and 6.1. */
static void test_rfc(void)
{
	uint8_t k[32], u[32], out[32], tmp[32];
	uint8_t apriv[32], bpriv[32], apub[32], bpub[32];
	int i;

	unhex(k, "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4", 32);
	unhex(u, "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c", 32);
	x25519(out, k, u);
	check_hex("rfc7748_5.2_vector1", out,
	    "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
	/* This u has its top bit set, which X25519 must ignore. */
	unhex(k, "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d", 32);
	unhex(u, "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493", 32);
	x25519(out, k, u);
	check_hex("rfc7748_5.2_vector2", out,
	    "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957");

	/* Iterated: k = u = 9, then (k, u) = (X25519(k, u), k). */
	memset(k, 0, 32);
	k[0] = 9;
	memcpy(u, k, 32);
	for (i = 1; i <= 1000; i++) {
		x25519(tmp, k, u);
		memcpy(u, k, 32);
		memcpy(k, tmp, 32);
		if (i == 1)
			check_hex("rfc7748_5.2_iterated_1", k,
			    "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079");
	}
	check_hex("rfc7748_5.2_iterated_1000", k,
	    "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51");

	unhex(apriv, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", 32);
	unhex(bpriv, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb", 32);
	x25519_base(apub, apriv);
	check_hex("rfc7748_6.1_alice_public", apub,
	    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
	x25519_base(bpub, bpriv);
	check_hex("rfc7748_6.1_bob_public", bpub,
	    "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
	x25519(out, apriv, bpub);
	check_hex("rfc7748_6.1_shared_alice", out,
	    "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
	x25519(out, bpriv, apub);
	check_hex("rfc7748_6.1_shared_bob", out,
	    "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
}

/* Set u to edge value n (little-endian), 0 <= n < NEDGE: 0, 1, p - 1, p,
 * p + 1, 2^255 - 1, and the same six with the top bit set. */
#define NEDGE 12
static void edge_u(uint8_t u[32], int n)
{
	static const int lo[6] = { 0, 1, 0xec, 0xed, 0xee, 0xff };

	memset(u, n % 6 < 2 ? 0 : 0xff, 32);
	u[0] = (uint8_t)lo[n % 6];
	u[31] = n % 6 < 2 ? 0 : 0x7f;
	if (n >= 6)
		u[31] |= 0x80;
}

/* x25519() against br_ec_c25519_m31.mul (which takes the same byte order). */
static void test_random(void)
{
	uint8_t k[32], u[32], ours[32], theirs[32];
	char detail[400] = "";
	int i, bad = 0;

	for (i = 0; i < RANDOM_PAIRS; i++) {
		rng_bytes(k, 32);
		rng_bytes(u, 32);
		if (i < 4 * NEDGE) {
			edge_u(u, i % NEDGE);
		} else if (i % 8 == 1) {
			/* u in [p, 2^255): bytes 1..30 all 0xff. */
			memset(u + 1, 0xff, 30);
			u[0] |= 0xed;
			u[31] = 0x7f | (u[31] & 0x80);
		} else if (i % 8 == 2) {
			u[31] |= 0x80;
		}
		x25519(ours, k, u);
		memcpy(theirs, u, 32);
		if (br_ec_c25519_m31.mul(theirs, 32, k, 32, BR_EC_curve25519) != 1 ||
		    memcmp(ours, theirs, 32) != 0) {
			bad++;
			mismatch(detail, sizeof detail, i, k, u, ours, theirs, 32);
		}
	}
	check(bad == 0, "x25519_vs_br_ec_c25519_m31_mul", detail);

	detail[0] = '\0';
	for (i = 0, bad = 0; i < RANDOM_PAIRS / 4; i++) {
		rng_bytes(k, 32);
		x25519_base(ours, k);
		br_ec_c25519_m31.mulgen(theirs, k, 32, BR_EC_curve25519);
		if (memcmp(ours, theirs, 32) != 0) {
			bad++;
			mismatch(detail, sizeof detail, i, k, k, ours, theirs, 32);
		}
	}
	check(bad == 0, "x25519_base_vs_br_ec_c25519_m31_mulgen", detail);
}

/*
 * Every u of small order (0, 1, p - 1, the two of order 8), also spelt p and
 * p + 1 or with the top bit set, must give the all-zero output: this is where
 * a result's limbs may hold p rather than 0 before the final reduction.
 */
static void test_low_order(void)
{
	static const char *const u_hex[] = {
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	};
	static const uint8_t zero[32];
	uint8_t k[32], u[32], out[32];
	char detail[200] = "";
	size_t i;
	int j, bad = 0;

	for (i = 0; i < sizeof u_hex / sizeof u_hex[0]; i++) {
		unhex(u, u_hex[i], 32);
		for (j = 0; j < 8; j++) {
			rng_bytes(k, 32);
			u[31] = (uint8_t)((u[31] & 0x7f) | (j & 1) << 7);
			x25519(out, k, u);
			if (memcmp(out, zero, 32) != 0 && detail[0] == '\0') {
				snprintf(detail, sizeof detail, "u %s", u_hex[i]);
				bad++;
			}
		}
	}
	check(bad == 0, "low_order_u_gives_zero", detail);
}

/* out may alias scalar or u. */
static void test_alias(void)
{
	uint8_t k[32], u[32], want[32], buf[32];
	int i, ok_k = 1, ok_u = 1, ok_b = 1;

	for (i = 0; i < 20; i++) {
		rng_bytes(k, 32);
		rng_bytes(u, 32);
		x25519(want, k, u);
		memcpy(buf, k, 32);
		x25519(buf, buf, u);
		ok_k &= memcmp(buf, want, 32) == 0;
		memcpy(buf, u, 32);
		x25519(buf, k, buf);
		ok_u &= memcmp(buf, want, 32) == 0;
		x25519_base(want, k);
		memcpy(buf, k, 32);
		x25519_base(buf, buf);
		ok_b &= memcmp(buf, want, 32) == 0;
	}
	check(ok_k, "alias_out_scalar", "x25519(buf, buf, u) differs");
	check(ok_u, "alias_out_u", "x25519(buf, k, buf) differs");
	check(ok_b, "alias_base_out_scalar", "x25519_base(buf, buf) differs");
}

/*
 * x25519_ec_impl against br_ec_c25519_m31 for Curve25519: every scalar length
 * 0..34 (BearSSL's limit is 32), point lengths 31..33, return values, and what
 * is left in G or R on error.  Then P-256 against br_ec_p256_m31.
 */
static void test_impl(void)
{
	const br_ec_impl *ours = &x25519_ec_impl, *ref = &br_ec_c25519_m31;
	const unsigned char *p1, *p2;
	uint8_t k[40], y[32], g1[72], g2[72];
	char detail[400] = "";
	size_t l1, l2, o1, o2, xlen, glen;
	uint32_t r1, r2;
	int i, bad = 0;

	check(ours->supported_curves == br_ec_all_m31.supported_curves,
	    "impl_supported_curves", "differs from br_ec_all_m31");
	p1 = ours->generator(BR_EC_curve25519, &l1);
	p2 = ref->generator(BR_EC_curve25519, &l2);
	check(l1 == l2 && memcmp(p1, p2, l1) == 0, "impl_c25519_generator",
	    "differs from br_ec_c25519_m31");
	p1 = ours->order(BR_EC_curve25519, &l1);
	p2 = ref->order(BR_EC_curve25519, &l2);
	check(l1 == l2 && memcmp(p1, p2, l1) == 0, "impl_c25519_order",
	    "differs from br_ec_c25519_m31");
	o1 = ours->xoff(BR_EC_curve25519, &l1);
	o2 = ref->xoff(BR_EC_curve25519, &l2);
	check(o1 == o2 && l1 == l2, "impl_c25519_xoff",
	    "differs from br_ec_c25519_m31");

	for (i = 0; i < RANDOM_IMPL; i++) {
		rng_bytes(k, sizeof k);
		rng_bytes(g1, sizeof g1);
		xlen = (size_t)i % 35;
		glen = i % 10 == 9 ? 31 + (size_t)(i / 10) % 3 : 32;
		if (i % 7 == 3)
			edge_u(g1, i % NEDGE);
		memcpy(g2, g1, sizeof g2);
		r1 = ours->mul(g1, glen, k, xlen, BR_EC_curve25519);
		r2 = ref->mul(g2, glen, k, xlen, BR_EC_curve25519);
		if (r1 != r2 || memcmp(g1, g2, sizeof g1) != 0) {
			bad++;
			mismatch(detail, sizeof detail, i, k, g2, g1, g2, 32);
		}
	}
	check(bad == 0, "impl_c25519_mul", detail);

	detail[0] = '\0';
	for (i = 0, bad = 0; i < RANDOM_IMPL; i++) {
		rng_bytes(k, sizeof k);
		xlen = (size_t)i % 35;
		memset(g1, 0xa5, sizeof g1);
		memset(g2, 0xa5, sizeof g2);
		l1 = ours->mulgen(g1, k, xlen, BR_EC_curve25519);
		l2 = ref->mulgen(g2, k, xlen, BR_EC_curve25519);
		if (l1 != l2 || memcmp(g1, g2, sizeof g1) != 0) {
			bad++;
			mismatch(detail, sizeof detail, i, k, k, g1, g2, 32);
		}
	}
	check(bad == 0, "impl_c25519_mulgen", detail);

	for (i = 0, bad = 0; i < 20; i++) {
		rng_bytes(k, 32);
		rng_bytes(y, 32);
		rng_bytes(g1, 32);
		memcpy(g2, g1, 32);
		r1 = ours->muladd(g1, NULL, 32, k, 32, y, 32, BR_EC_curve25519);
		r2 = ref->muladd(g2, NULL, 32, k, 32, y, 32, BR_EC_curve25519);
		bad += r1 != r2 || memcmp(g1, g2, 32) != 0;
	}
	check(bad == 0, "impl_c25519_muladd", "differs from br_ec_c25519_m31");

	/* P-256: scalars below the order (top byte < 0xff), points from mulgen. */
	detail[0] = '\0';
	for (i = 0, bad = 0; i < 50; i++) {
		rng_bytes(k, 32);
		rng_bytes(y, 32);
		k[0] &= 0x7f;
		k[31] |= 1;
		y[0] &= 0x7f;
		y[31] |= 1;
		l1 = ours->mulgen(g1, k, 32, BR_EC_secp256r1);
		l2 = br_ec_p256_m31.mulgen(g2, k, 32, BR_EC_secp256r1);
		if (l1 != 65 || l1 != l2 || memcmp(g1, g2, l1) != 0) {
			bad++;
			mismatch(detail, sizeof detail, i, k, k, g1, g2, 32);
			continue;
		}
		r1 = ours->mul(g1, l1, y, 32, BR_EC_secp256r1);
		r2 = br_ec_p256_m31.mul(g2, l2, y, 32, BR_EC_secp256r1);
		if (r1 != 1 || r1 != r2 || memcmp(g1, g2, l1) != 0) {
			bad++;
			mismatch(detail, sizeof detail, i, y, k, g1, g2, 32);
		}
	}
	check(bad == 0, "impl_p256_mulgen_mul", detail);
	p1 = ours->generator(BR_EC_secp256r1, &l1);
	p2 = br_ec_p256_m31.generator(BR_EC_secp256r1, &l2);
	check(l1 == l2 && memcmp(p1, p2, l1) == 0, "impl_p256_generator",
	    "differs from br_ec_p256_m31");
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Information only.  The best of TIMING_ROUNDS rounds, to see through other
 * load on the machine; each call's output feeds the next so none is dropped. */
static void timing(void)
{
	uint8_t k[32], u[32];
	double t0, t, ours = 1e9, theirs = 1e9;
	int i, r;

	rng_bytes(k, 32);
	rng_bytes(u, 32);
	for (r = 0; r < TIMING_ROUNDS; r++) {
		t0 = now_us();
		for (i = 0; i < TIMING_CALLS; i++)
			x25519(u, k, u);
		t = (now_us() - t0) / TIMING_CALLS;
		ours = t < ours ? t : ours;
		t0 = now_us();
		for (i = 0; i < TIMING_CALLS; i++)
			br_ec_c25519_m31.mul(u, 32, k, 32, BR_EC_curve25519);
		t = (now_us() - t0) / TIMING_CALLS;
		theirs = t < theirs ? t : theirs;
	}
	printf("# x25519: ours %.1f us, br_ec_c25519_m31 %.1f us (fast code %s)\n",
	    ours, theirs, x25519_is_fast() ? "on" : "off");
}

int main(int argc, char **argv)
{
	if (argc > 1)
		rng_state = strtoull(argv[1], NULL, 0);
	test_rfc();
	test_low_order();
	test_random();
	test_alias();
	test_impl();
	timing();
	printf("%d passed, %d failed\n", npass, nfail);
	return nfail == 0 ? 0 : 1;
}
