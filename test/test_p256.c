/*
 * test_p256.c -- known-answer and differential tests for p256.c.
 *
 * Usage: test_p256
 *
 * Checks: the RFC 6979 appendix A.2.5 vectors (P-256 with SHA-1, SHA-224,
 * SHA-256, SHA-384, SHA-512, messages "sample" and "test") and the C2SP
 * CCTV vector whose first RFC 6979 candidate k is rejected; k*G from the
 * fixed-base code against BearSSL's mulgen, including the one scalar whose
 * last table addition is a doubling; thousands of random keys and hashes
 * of several lengths signed byte-identically to br_ecdsa_i31_sign_asn1 and
 * verified; edge keys; and a P-384 key that must go to BearSSL.  Random
 * inputs come from an HMAC_DRBG with a fixed seed, so a failure repeats.
 *
 * Output: one line per check, "ok <name>" or "FAIL <name>: <detail>", then
 * "N passed, N failed".  Exit status 0 iff nothing failed.  A line starting
 * with '#' is information (the timings), not a check.
 */
#define _POSIX_C_SOURCE 200809L	/* clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bearssl.h>

#include "../p256.h"

#define SIG_MAX 160		/* P-521 DER signature is at most 139 bytes */
#define RANDOM_KEYS 1000	/* per hash length in the differential test */

static int npass, nfail;
static br_hmac_drbg_context rng;

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

static void unhex(unsigned char *out, size_t len, const char *hex)
{
	size_t i;
	unsigned v;

	for (i = 0; i < len; i++) {
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			abort();
		out[i] = (unsigned char)v;
	}
}

static void tohex(char *out, const unsigned char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
	out[2 * len] = '\0';
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static size_t hash_len(const br_hash_class *hf)
{
	return (hf->desc >> BR_HASHDESC_OUT_OFF) & BR_HASHDESC_OUT_MASK;
}

static void hash_msg(const br_hash_class *hf, const char *msg,
    unsigned char *out)
{
	br_hash_compat_context hc;

	hf->init(&hc.vtable);
	hf->update(&hc.vtable, msg, strlen(msg));
	hf->out(&hc.vtable, out);
}

/*
 * Strict DER decode of SEQUENCE { INTEGER r, INTEGER s } with minimal,
 * positive integers of at most 32 bytes; r and s come out left-padded.
 */
static int der_int(const unsigned char **p, const unsigned char *end,
    unsigned char v[32])
{
	const unsigned char *q = *p;
	size_t len;

	if (end - q < 2 || q[0] != 0x02)
		return -1;
	len = q[1];
	q += 2;
	if (len == 0 || len > (size_t)(end - q) || (q[0] & 0x80) != 0)
		return -1;
	if (len > 1 && q[0] == 0 && (q[1] & 0x80) == 0)
		return -1;	/* not minimal */
	if (q[0] == 0) {
		q++;
		len--;
	}
	if (len > 32)
		return -1;
	memset(v, 0, 32);
	memcpy(v + 32 - len, q, len);
	*p = q + len;
	return 0;
}

static int der_decode(const unsigned char *sig, size_t len,
    unsigned char r[32], unsigned char s[32])
{
	const unsigned char *p = sig + 2, *end = sig + len;

	if (len < 2 || sig[0] != 0x30 || sig[1] != len - 2 || sig[1] >= 0x80)
		return -1;
	if (der_int(&p, end, r) != 0 || der_int(&p, end, s) != 0)
		return -1;
	return p == end ? 0 : -1;
}

static const unsigned char P256_N[32] = {
	0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00,
	0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
	0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84,
	0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51
};

/* v = n + delta (big-endian, 32 bytes, delta small and may be negative). */
static void n_plus(unsigned char v[32], int delta)
{
	int i, c = delta;

	memcpy(v, P256_N, 32);
	for (i = 31; i >= 0 && c != 0; i--) {
		c += v[i];
		v[i] = (unsigned char)(c & 0xFF);
		c >>= 8;	/* arithmetic: -1 for a borrow */
	}
}

/*
 * Sign with ours and BearSSL's; 1 if both give the same bytes (or both 0).
 * Our signature and its length go to a[SIG_MAX] and *outlen.
 */
static int same_sig(const br_ec_impl *impl, const br_hash_class *hf,
    const unsigned char *hash, const unsigned char *x, size_t xlen, int curve,
    char *detail, size_t dlen, unsigned char *a, size_t *outlen)
{
	unsigned char b[SIG_MAX];
	char ha[2 * SIG_MAX + 1], hb[2 * SIG_MAX + 1];
	br_ec_private_key sk;
	size_t la, lb;

	sk.curve = curve;
	sk.x = (unsigned char *)x;
	sk.xlen = xlen;
	la = p256_ecdsa_sign_asn1(impl, hf, hash, &sk, a);
	lb = br_ecdsa_i31_sign_asn1(impl, hf, hash, &sk, b);
	*outlen = la;
	if (la == lb && memcmp(a, b, la) == 0)
		return 1;
	tohex(ha, a, la);
	tohex(hb, b, lb);
	snprintf(detail, dlen, "ours %zu [%s] BearSSL %zu [%s]", la, ha, lb,
	    hb);
	return 0;
}

/* ---- RFC 6979 A.2.5 and the CCTV rejection vector ----------------------- */

static const char RFC_X[] =
    "C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721";
static const char RFC_UX[] =
    "60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6";
static const char RFC_UY[] =
    "7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299";

static const struct {
	const char *hname;
	const br_hash_class *hf;
	const char *msg, *k, *r, *s;
} rfc[] = {
	{ "sha1", &br_sha1_vtable, "sample",
	  "882905F1227FD620FBF2ABF21244F0BA83D0DC3A9103DBBEE43A1FB858109DB4",
	  "61340C88C3AAEBEB4F6D667F672CA9759A6CCAA9FA8811313039EE4A35471D32",
	  "6D7F147DAC089441BB2E2FE8F7A3FA264B9C475098FDCF6E00D7C996E1B8B7EB" },
	{ "sha224", &br_sha224_vtable, "sample",
	  "103F90EE9DC52E5E7FB5132B7033C63066D194321491862059967C715985D473",
	  "53B2FFF5D1752B2C689DF257C04C40A587FABABB3F6FC2702F1343AF7CA9AA3F",
	  "B9AFB64FDC03DC1A131C7D2386D11E349F070AA432A4ACC918BEA988BF75C74C" },
	{ "sha256", &br_sha256_vtable, "sample",
	  "A6E3C57DD01ABE90086538398355DD4C3B17AA873382B0F24D6129493D8AAD60",
	  "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716",
	  "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8" },
	{ "sha384", &br_sha384_vtable, "sample",
	  "09F634B188CEFD98E7EC88B1AA9852D734D0BC272F7D2A47DECC6EBEB375AAD4",
	  "0EAFEA039B20E9B42309FB1D89E213057CBF973DC0CFC8F129EDDDC800EF7719",
	  "4861F0491E6998B9455193E34E7B0D284DDD7149A74B95B9261F13ABDE940954" },
	{ "sha512", &br_sha512_vtable, "sample",
	  "5FA81C63109BADB88C1F367B47DA606DA28CAD69AA22C4FE6AD7DF73A7173AA5",
	  "8496A60B5E9B47C825488827E0495B0E3FA109EC4568FD3F8D1097678EB97F00",
	  "2362AB1ADBE2B8ADF9CB9EDAB740EA6049C028114F2460F96554F61FAE3302FE" },
	{ "sha1", &br_sha1_vtable, "test",
	  "8C9520267C55D6B980DF741E56B4ADEE114D84FBFA2E62137954164028632A2E",
	  "0CBCC86FD6ABD1D99E703E1EC50069EE5C0B4BA4B9AC60E409E8EC5910D81A89",
	  "01B9D7B73DFAA60D5651EC4591A0136F87653E0FD780C3B1BC872FFDEAE479B1" },
	{ "sha224", &br_sha224_vtable, "test",
	  "669F4426F2688B8BE0DB3A6BD1989BDAEFFF84B649EEB84F3DD26080F667FAA7",
	  "C37EDB6F0AE79D47C3C27E962FA269BB4F441770357E114EE511F662EC34A692",
	  "C820053A05791E521FCAAD6042D40AEA1D6B1A540138558F47D0719800E18F2D" },
	{ "sha256", &br_sha256_vtable, "test",
	  "D16B6AE827F17175E040871A1C7EC3500192C4C92677336EC2537ACAEE0008E0",
	  "F1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367",
	  "019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083" },
	{ "sha384", &br_sha384_vtable, "test",
	  "16AEFFA357260B04B1DD199693960740066C1A8F3E8EDD79070AA914D361B3B8",
	  "83910E8B48BB0C74244EBDF7F07A1C5413D61472BD941EF3920E623FBCCEBEB6",
	  "8DDBEC54CF8CD5874883841D712142A56A8D0F218F5003CB0296B6B509619F2C" },
	{ "sha512", &br_sha512_vtable, "test",
	  "6915D11632ACA3C40D5D51C08DAF9C555933819548784480E93499000D9F0B7F",
	  "461D93F31B6540894788FD206C07CFA0CC35F46FA3C91816FFF1040AD1581A04",
	  "39AF9F15DE0DB8D97E72719C74820D304CE5226E32DEDAE67519E840D1194E55" },
	/*
	 * C2SP CCTV rfc6979 vector, same key: the first candidate k for this
	 * message is >= n, so it exercises the RFC 6979 retry.
	 */
	{ "sha256", &br_sha256_vtable, "wv[vnX",
	  "2AE40DF9D9DAB61D688DE3DCB9867A98ECC70DD4D6C0F6C228B6E4E0B18B29BC",
	  "EFD9073B652E76DA1B5A019C0E4A2E3FA529B035A6ABB91EF67F0ED7A1F21234",
	  "3DB4706C9D9F4A4FE13BB5E08EF0FAB53A57DBAB2061C83A35FA411C68D2BA33" },
};

static void test_rfc6979(void)
{
	unsigned char x[32], pt[65], want[65], h[64], sig[SIG_MAX];
	unsigned char k[32], r[32], s[32], er[32], es[32];
	char name[96], detail[2 * SIG_MAX + 128];
	br_ec_private_key sk;
	size_t i, len;

	unhex(x, 32, RFC_X);
	want[0] = 0x04;
	unhex(want + 1, 32, RFC_UX);
	unhex(want + 33, 32, RFC_UY);
	check(p256_mulgen_for_test(pt, x) == 65 && memcmp(pt, want, 65) == 0,
	    "rfc6979 public key", "x*G differs from (Ux, Uy)");
	sk.curve = BR_EC_secp256r1;
	sk.x = x;
	sk.xlen = 32;
	for (i = 0; i < sizeof rfc / sizeof rfc[0]; i++) {
		unhex(k, 32, rfc[i].k);
		unhex(er, 32, rfc[i].r);
		unhex(es, 32, rfc[i].s);
		hash_msg(rfc[i].hf, rfc[i].msg, h);

		/* r = x(kG) mod n; every listed x(kG) is already below n */
		snprintf(name, sizeof name, "rfc6979 %s \"%s\" k*G", rfc[i].hname,
		    rfc[i].msg);
		check(p256_mulgen_for_test(pt, k) == 65 &&
		    memcmp(pt + 1, er, 32) == 0, name, "x(kG) != r");

		snprintf(name, sizeof name, "rfc6979 %s \"%s\" r,s", rfc[i].hname,
		    rfc[i].msg);
		len = p256_ecdsa_sign_asn1(&br_ec_p256_m31, rfc[i].hf, h, &sk, sig);
		if (len == 0 || der_decode(sig, len, r, s) != 0) {
			check(0, name, "no valid DER signature");
			continue;
		}
		tohex(detail, sig, len);
		check(memcmp(r, er, 32) == 0 && memcmp(s, es, 32) == 0, name,
		    detail);

		snprintf(name, sizeof name, "rfc6979 %s \"%s\" BearSSL bytes",
		    rfc[i].hname, rfc[i].msg);
		check(same_sig(&br_ec_p256_m31, rfc[i].hf, h, x, 32,
		    BR_EC_secp256r1, detail, sizeof detail, sig, &len), name,
		    detail);
	}
}

/* ---- fixed-base multiplication ------------------------------------------ */

static int mulgen_matches(const unsigned char k[32], char *detail, size_t dlen)
{
	unsigned char a[65], b[65];
	char ha[131], hk[65];

	if (p256_mulgen_for_test(a, k) != 65 ||
	    br_ec_p256_m31.mulgen(b, k, 32, BR_EC_secp256r1) != 65 ||
	    memcmp(a, b, 65) != 0) {
		tohex(hk, k, 32);
		tohex(ha, a, 65);
		snprintf(detail, dlen, "k=%s ours %s", hk, ha);
		return 0;
	}
	return 1;
}

static void test_mulgen(void)
{
	unsigned char k[32], pt[65];
	char name[64], detail[256];
	int i, ok;
	static const int small[] = { 1, 2, 3, 4, 15, 16, 17, 31, 255 };

	for (i = 0; i < (int)(sizeof small / sizeof small[0]); i++) {
		memset(k, 0, 32);
		k[31] = (unsigned char)small[i];
		snprintf(name, sizeof name, "mulgen k=%d", small[i]);
		check(mulgen_matches(k, detail, sizeof detail), name, detail);
	}
	for (i = 1; i <= 4; i++) {
		n_plus(k, -i);
		snprintf(name, sizeof name, "mulgen k=n-%d", i);
		check(mulgen_matches(k, detail, sizeof detail), name, detail);
	}
	/*
	 * k' = 30 * 2^252 - n is the one odd scalar whose last window adds
	 * a point to itself; n - k' (even) is mapped onto it.
	 */
	unhex(k, 32, "E0000000FFFFFFFF00000000000000004319055258E8617B"
	    "0C46353D039CDAAF");
	check(mulgen_matches(k, detail, sizeof detail),
	    "mulgen last-window doubling k", detail);
	unhex(k, 32, "1FFFFFFE00000001FFFFFFFFFFFFFFFF79CDF55B4E2F3D09"
	    "E7739585F8C64AA2");
	check(mulgen_matches(k, detail, sizeof detail),
	    "mulgen last-window doubling n-k", detail);
	/* one digit pattern per window: 2^(4i) and 2^256 - 1 style scalars */
	ok = 1;
	for (i = 0; i < 256 && ok; i += 4) {
		memset(k, 0, 32);
		k[31 - i / 8] = (unsigned char)(1 << (i % 8));
		ok = mulgen_matches(k, detail, sizeof detail);
	}
	check(ok, "mulgen k=2^(4i), i=0..63", detail);
	ok = 1;
	for (i = 0; i < 200 && ok; i++) {
		br_hmac_drbg_generate(&rng, k, 32);
		if (memcmp(k, P256_N, 32) >= 0)
			k[0] = 0x7F;
		ok = mulgen_matches(k, detail, sizeof detail);
	}
	check(ok, "mulgen 200 random k", detail);
	memset(k, 0, 32);
	check(p256_mulgen_for_test(pt, k) == 0, "mulgen rejects k=0", "");
	memcpy(k, P256_N, 32);
	check(p256_mulgen_for_test(pt, k) == 0, "mulgen rejects k=n", "");
}

/* ---- differential: random keys and hashes ------------------------------- */

static void random_key(unsigned char x[32])
{
	do
		br_hmac_drbg_generate(&rng, x, 32);
	while (memcmp(x, P256_N, 32) >= 0);
}

static void test_random(const br_hash_class *hf, const char *hname, int count)
{
	unsigned char x[32], h[64], sig[SIG_MAX], q[65];
	char name[96], detail[2 * SIG_MAX * 2 + 128], first[sizeof detail];
	br_ec_public_key pk;
	size_t len;
	int i, same = 1, vrfy = 1;

	first[0] = '\0';
	for (i = 0; i < count; i++) {
		random_key(x);
		br_hmac_drbg_generate(&rng, h, hash_len(hf));
		if (!same_sig(&br_ec_p256_m31, hf, h, x, 32, BR_EC_secp256r1,
		    detail, sizeof detail, sig, &len)) {
			if (same)
				snprintf(first, sizeof first, "%s", detail);
			same = 0;
			continue;
		}
		br_ec_p256_m31.mulgen(q, x, 32, BR_EC_secp256r1);
		pk.curve = BR_EC_secp256r1;
		pk.q = q;
		pk.qlen = 65;
		if (!br_ecdsa_i31_vrfy_asn1(&br_ec_p256_m31, h, hash_len(hf), &pk,
		    sig, len))
			vrfy = 0;
	}
	snprintf(name, sizeof name, "random %d keys %s (%zu-byte hash) = BearSSL",
	    count, hname, hash_len(hf));
	check(same, name, first);
	snprintf(name, sizeof name, "random %d keys %s verify", count, hname);
	check(vrfy, name, "br_ecdsa_i31_vrfy_asn1 rejected a signature");
}

/* ---- edge keys, other curves -------------------------------------------- */

static void test_edges(void)
{
	unsigned char x[48], h[64], sig[SIG_MAX];
	char name[96], detail[2 * SIG_MAX * 2 + 128];
	br_ec_private_key sk;
	size_t len;
	int i;
	static const int ndelta[] = { -1, -2, 0, 1, 2 };

	br_hmac_drbg_generate(&rng, h, 32);
	for (i = 1; i <= 3; i++) {
		memset(x, 0, 32);
		x[31] = (unsigned char)i;
		snprintf(name, sizeof name, "edge key %d", i);
		check(same_sig(&br_ec_p256_m31, &br_sha256_vtable, h, x, 32,
		    BR_EC_secp256r1, detail, sizeof detail, sig, &len) && len > 0,
		    name, detail);
	}
	for (i = 0; i < 5; i++) {
		n_plus(x, ndelta[i]);
		snprintf(name, sizeof name, "edge key n%+d (%s)", ndelta[i],
		    ndelta[i] < 0 ? "signs" : "rejected");
		check(same_sig(&br_ec_p256_m31, &br_sha256_vtable, h, x, 32,
		    BR_EC_secp256r1, detail, sizeof detail, sig, &len) &&
		    (len > 0) == (ndelta[i] < 0), name, detail);
	}
	memset(x, 0xFF, 32);
	check(same_sig(&br_ec_p256_m31, &br_sha256_vtable, h, x, 32,
	    BR_EC_secp256r1, detail, sizeof detail, sig, &len) && len == 0,
	    "edge key 2^256-1 rejected", detail);
	memset(x, 0, 32);
	check(same_sig(&br_ec_p256_m31, &br_sha256_vtable, h, x, 32,
	    BR_EC_secp256r1, detail, sizeof detail, sig, &len) && len == 0,
	    "edge key 0 rejected", detail);
	sk.curve = BR_EC_secp256r1;
	sk.x = NULL;
	sk.xlen = 0;
	check(p256_ecdsa_sign_asn1(&br_ec_p256_m31, &br_sha256_vtable, h, &sk,
	    sig) == 0, "edge key empty rejected", "signed");

	/* leading zero bytes, in a 32-byte key and in shorter ones */
	for (i = 1; i <= 31; i += (i < 4 ? 1 : 9)) {
		random_key(x);
		memset(x, 0, (size_t)i);
		snprintf(name, sizeof name, "edge key %d zero bytes, xlen 32", i);
		check(same_sig(&br_ec_p256_m31, &br_sha256_vtable, h, x, 32,
		    BR_EC_secp256r1, detail, sizeof detail, sig, &len) && len > 0,
		    name, detail);
		snprintf(name, sizeof name, "edge key xlen %d", 32 - i);
		check(same_sig(&br_ec_p256_m31, &br_sha256_vtable, h, x + i,
		    32 - (size_t)i, BR_EC_secp256r1, detail, sizeof detail,
		    sig, &len) && len > 0, name, detail);
	}
	/* a 33-byte key (leading zero) is BearSSL's to handle */
	x[0] = 0;
	random_key(x + 1);
	check(same_sig(&br_ec_p256_m31, &br_sha256_vtable, h, x, 33,
	    BR_EC_secp256r1, detail, sizeof detail, sig, &len) && len > 0,
	    "edge key xlen 33 (BearSSL)", detail);

	/* short and long hashes with an all-ones value (z >= n) */
	memset(h, 0xFF, sizeof h);
	random_key(x);
	check(same_sig(&br_ec_p256_m31, &br_sha256_vtable, h, x, 32,
	    BR_EC_secp256r1, detail, sizeof detail, sig, &len) && len > 0,
	    "edge hash all ones (z >= n)", detail);
	check(same_sig(&br_ec_p256_m31, &br_md5_vtable, h, x, 32,
	    BR_EC_secp256r1, detail, sizeof detail, sig, &len) && len > 0,
	    "edge hash md5 (16 bytes)", detail);
	check(same_sig(&br_ec_all_m31, &br_sha512_vtable, h, x, 32,
	    BR_EC_secp256r1, detail, sizeof detail, sig, &len) && len > 0,
	    "edge impl br_ec_all_m31", detail);

	/* P-384 and P-521 keys go to BearSSL unchanged */
	br_hmac_drbg_generate(&rng, x, 48);
	x[0] = 0x7F;
	br_hmac_drbg_generate(&rng, h, 48);
	check(same_sig(&br_ec_prime_i31, &br_sha384_vtable, h, x, 48,
	    BR_EC_secp384r1, detail, sizeof detail, sig, &len) && len > 0,
	    "secp384r1 key = BearSSL", detail);
	x[0] = 0x01;
	br_hmac_drbg_generate(&rng, h, 64);
	check(same_sig(&br_ec_prime_i31, &br_sha512_vtable, h, x, 48,
	    BR_EC_secp521r1, detail, sizeof detail, sig, &len) && len > 0,
	    "secp521r1 key = BearSSL", detail);
}

/* ---- timing -------------------------------------------------------------- */

static void timing(double init_ms)
{
	unsigned char x[32], h[32], sig[SIG_MAX];
	br_ec_private_key sk = { BR_EC_secp256r1, x, 32 };
	double t0, ours, theirs;
	int i, n_ours = 2000, n_theirs = 200;

	random_key(x);
	br_hmac_drbg_generate(&rng, h, 32);
	t0 = now_us();
	for (i = 0; i < n_ours; i++) {
		h[0] = (unsigned char)i;
		p256_ecdsa_sign_asn1(&br_ec_p256_m31, &br_sha256_vtable, h, &sk,
		    sig);
	}
	ours = (now_us() - t0) / n_ours;
	t0 = now_us();
	for (i = 0; i < n_theirs; i++) {
		h[0] = (unsigned char)i;
		br_ecdsa_i31_sign_asn1(&br_ec_p256_m31, &br_sha256_vtable, h, &sk,
		    sig);
	}
	theirs = (now_us() - t0) / n_theirs;
	printf("# p256 sign: ours %.1f us, BearSSL %.1f us; p256_init %.2f ms\n",
	    ours, theirs, init_ms);
	printf("# fast code: %s\n", p256_is_fast() ? "on" : "off");
}

int main(void)
{
	unsigned char x[32], h[32], sig[SIG_MAX];
	char detail[2 * SIG_MAX * 2 + 128];
	double t0, init_ms;
	size_t len;
	int r;

	br_hmac_drbg_init(&rng, &br_sha256_vtable, "test_p256", 9);

	/* before p256_init: the signer builds the table itself */
	unhex(x, 32, RFC_X);
	hash_msg(&br_sha256_vtable, "sample", h);
	check(same_sig(&br_ec_p256_m31, &br_sha256_vtable, h, x, 32,
	    BR_EC_secp256r1, detail, sizeof detail, sig, &len),
	    "sign before p256_init", detail);

	t0 = now_us();
	r = p256_init();
	init_ms = (now_us() - t0) / 1e3;
	check(r == 0, "p256_init", "self-check failed");
#if defined(__SIZEOF_INT128__) && !defined(DERP_NO_FASTEC)
	check(p256_is_fast() == 1, "p256_is_fast", "0 with __int128 available");
#else
	check(p256_is_fast() == 0, "p256_is_fast", "1 in a fallback build");
#endif

	test_rfc6979();
	test_mulgen();
	test_random(&br_sha256_vtable, "sha256", RANDOM_KEYS);
	test_random(&br_sha384_vtable, "sha384", RANDOM_KEYS);
	test_random(&br_sha1_vtable, "sha1", RANDOM_KEYS);
	test_random(&br_sha224_vtable, "sha224", RANDOM_KEYS / 4);
	test_random(&br_sha512_vtable, "sha512", RANDOM_KEYS / 4);
	test_edges();
	timing(init_ms);

	printf("%d passed, %d failed\n", npass, nfail);
	return nfail == 0 ? 0 : 1;
}
