/*
 * nacl.c -- NaCl crypto_box for the DERP handshake (see nacl.h, spec section 7.1).
 *
 * Map: byte-order helpers, Salsa20 core (HSalsa20 and Salsa20/20 share it),
 * Poly1305, X25519 glue over x25519.c, then the box itself.
 *
 * Portability rules kept throughout, because this also runs on 32-bit
 * big-endian MIPS: every multi-byte value is assembled or split byte by byte
 * (get_le32/put_le32), no byte buffer is ever cast to a wider type, so there
 * is no unaligned access; only 32x32->64 multiplications (one MULTU on MIPS).
 *
 * Constant time: no branch or array index depends on a key, a keystream or a
 * plaintext.  The only data-dependent branches are on public outcomes (the
 * tag check result, an all-zero X25519 output that the caller rejects anyway).
 * Like BearSSL's m31 code, this assumes the CPU's 32x32->64 multiply takes
 * the same time for all operands (bearssl.org/ctmul.html lists the cores
 * with early-out multipliers where that fails).
 */
#include <string.h>

#include "nacl.h"
#include "x25519.h"

/* ---- helpers ------------------------------------------------------------ */

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) |
	    ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* Zero key material through a volatile pointer so the stores are not elided
 * as dead (memset on a buffer about to go out of scope may be). */
static void wipe(void *p, size_t n)
{
	volatile uint8_t *v = (volatile uint8_t *)p;

	while (n-- > 0)
		*v++ = 0;
}

int nacl_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
	uint32_t d = 0;
	size_t i;

	for (i = 0; i < n; i++)
		d |= (uint32_t)(a[i] ^ b[i]);
	/* d is in 0..255: d - 1 has bit 8 set only when d == 0 (wraps). */
	return (int)(1 & ((d - 1) >> 8));
}

/* ---- Salsa20 core ------------------------------------------------------- */

#define ROTL32(v, c) (((v) << (c)) | ((v) >> (32 - (c))))

/* The Salsa20 quarter-round on words a, b, c, d of x (Bernstein's y0..y3). */
#define QR(x, a, b, c, d) do { \
	x[b] ^= ROTL32(x[a] + x[d], 7); \
	x[c] ^= ROTL32(x[b] + x[a], 9); \
	x[d] ^= ROTL32(x[c] + x[b], 13); \
	x[a] ^= ROTL32(x[d] + x[c], 18); \
} while (0)

/*
 * Initial state: the "expand 32-byte k" constant on the diagonal (words
 * 0, 5, 10, 15), the key in words 1-4 and 11-14, and 16 bytes of input in
 * words 6-9.  For Salsa20 those 16 bytes are nonce[8] || counter (LE64);
 * for HSalsa20 they are the caller's 16-byte input.
 */
static void salsa_init(uint32_t s[16], const uint8_t key[32], const uint8_t in[16])
{
	int i;

	s[0] = 0x61707865;	/* "expa" */
	s[5] = 0x3320646e;	/* "nd 3" */
	s[10] = 0x79622d32;	/* "2-by" */
	s[15] = 0x6b206574;	/* "te k" */
	for (i = 0; i < 4; i++) {
		s[1 + i] = get_le32(key + 4 * i);
		s[11 + i] = get_le32(key + 16 + 4 * i);
		s[6 + i] = get_le32(in + 4 * i);
	}
}

/* 20 rounds = 10 double rounds (column round, then row round), in place. */
static void salsa_rounds(uint32_t x[16])
{
	int i;

	for (i = 0; i < 10; i++) {
		QR(x, 0, 4, 8, 12);
		QR(x, 5, 9, 13, 1);
		QR(x, 10, 14, 2, 6);
		QR(x, 15, 3, 7, 11);
		QR(x, 0, 1, 2, 3);
		QR(x, 5, 6, 7, 4);
		QR(x, 10, 11, 8, 9);
		QR(x, 15, 12, 13, 14);
	}
}

void nacl_hsalsa20(uint8_t out[32], const uint8_t in[16], const uint8_t key[32])
{
	/* No feed-forward addition: the words output sit where the constant
	 * and the input were, which are public, so adding them back would
	 * hide nothing; this is HSalsa20 as NaCl defines it. */
	static const uint8_t pick[8] = { 0, 5, 10, 15, 6, 7, 8, 9 };
	uint32_t x[16];
	int i;

	salsa_init(x, key, in);
	salsa_rounds(x);
	for (i = 0; i < 8; i++)
		put_le32(out + 4 * i, x[pick[i]]);
	wipe(x, sizeof x);
}

void nacl_salsa20_xor(uint8_t *out, const uint8_t *in, size_t len,
    const uint8_t nonce[8], uint64_t counter, const uint8_t key[32])
{
	uint8_t in16[16], ks[64];	/* one 64-byte keystream block */
	uint32_t s[16], x[16];
	size_t i, n;

	memset(in16, 0, sizeof in16);
	memcpy(in16, nonce, 8);
	salsa_init(s, key, in16);
	while (len > 0) {
		s[8] = (uint32_t)counter;	/* counter is little-endian */
		s[9] = (uint32_t)(counter >> 32);
		memcpy(x, s, sizeof x);
		salsa_rounds(x);
		for (i = 0; i < 16; i++)
			put_le32(ks + 4 * i, x[i] + s[i]);
		n = len < 64 ? len : 64;
		/* Byte i is read before byte i is written, so out == in works. */
		for (i = 0; i < n; i++)
			out[i] = (uint8_t)((in != NULL ? in[i] : 0) ^ ks[i]);
		out += n;
		if (in != NULL)
			in += n;
		len -= n;
		counter++;
	}
	wipe(s, sizeof s);
	wipe(x, sizeof x);
	wipe(ks, sizeof ks);
}

/* ---- Poly1305 ----------------------------------------------------------- */

/*
 * Arithmetic modulo p = 2^130 - 5 in five 26-bit limbs (radix 2^26), so that a
 * limb product fits 52 bits and a sum of five products, each with one factor
 * premultiplied by 5 (< 2^29), stays below 2^59: no 128-bit type is needed.
 * The 5 comes from 2^130 = 5 (mod p): a product term landing at 2^(26*(i+j))
 * with i + j >= 5 wraps round to limb i + j - 5 times 5.
 */
#define M26 0x3ffffffu

/* Split 16 little-endian bytes into limbs of 26 bits. Limb 4 gets bits
 * 104..127 plus hibit, the 2^128 pad bit of a full block. */
static void poly_load(uint32_t l[5], const uint8_t b[16], uint32_t hibit)
{
	uint32_t w0 = get_le32(b), w1 = get_le32(b + 4);
	uint32_t w2 = get_le32(b + 8), w3 = get_le32(b + 12);

	l[0] = w0 & M26;
	l[1] = ((w0 >> 26) | (w1 << 6)) & M26;
	l[2] = ((w1 >> 20) | (w2 << 12)) & M26;
	l[3] = ((w2 >> 14) | (w3 << 18)) & M26;
	l[4] = (w3 >> 8) | hibit;
}

/* h = (h + block) * r mod p, partially reduced: limbs end below 2^26 except
 * limb 1, which may exceed it by a small carry (at most 2^10 or so). */
static void poly_block(uint32_t h[5], const uint32_t r[5], const uint8_t b[16],
    uint32_t hibit)
{
	uint32_t m[5], s1 = r[1] * 5, s2 = r[2] * 5, s3 = r[3] * 5, s4 = r[4] * 5;
	uint64_t d0, d1, d2, d3, d4;
	int i;

	poly_load(m, b, hibit);
	for (i = 0; i < 5; i++)
		h[i] += m[i];		/* each limb now < 2^27 + 2^10 */
#define MUL(a, b) ((uint64_t)(a) * (b))
	d0 = MUL(h[0], r[0]) + MUL(h[1], s4) + MUL(h[2], s3) + MUL(h[3], s2) + MUL(h[4], s1);
	d1 = MUL(h[0], r[1]) + MUL(h[1], r[0]) + MUL(h[2], s4) + MUL(h[3], s3) + MUL(h[4], s2);
	d2 = MUL(h[0], r[2]) + MUL(h[1], r[1]) + MUL(h[2], r[0]) + MUL(h[3], s4) + MUL(h[4], s3);
	d3 = MUL(h[0], r[3]) + MUL(h[1], r[2]) + MUL(h[2], r[1]) + MUL(h[3], r[0]) + MUL(h[4], s4);
	d4 = MUL(h[0], r[4]) + MUL(h[1], r[3]) + MUL(h[2], r[2]) + MUL(h[3], r[1]) + MUL(h[4], r[0]);
#undef MUL
	d1 += d0 >> 26;
	d2 += d1 >> 26;
	d3 += d2 >> 26;
	d4 += d3 >> 26;
	/* The carry out of limb 4 is worth 2^130 = 5 (mod p); it is < 2^34, so
	 * fold it in 64 bits before narrowing limb 0. */
	d0 = (d0 & M26) + (d4 >> 26) * 5;
	h[0] = (uint32_t)d0 & M26;
	h[1] = ((uint32_t)d1 & M26) + (uint32_t)(d0 >> 26);
	h[2] = (uint32_t)d2 & M26;
	h[3] = (uint32_t)d3 & M26;
	h[4] = (uint32_t)d4 & M26;
}

void nacl_poly1305(uint8_t tag[16], const uint8_t *msg, size_t len,
    const uint8_t key[32])
{
	uint32_t r[5], h[5] = { 0, 0, 0, 0, 0 }, g[5], c, mask;
	uint8_t last[16];
	uint64_t acc;
	size_t i;

	/* r = key[0..16) with the RFC 8439 clamp (top 4 bits of bytes 3, 7,
	 * 11, 15 and low 2 bits of bytes 4, 8, 12 cleared); in limb form the
	 * clamp is these masks. */
	poly_load(r, key, 0);
	r[1] &= 0x3ffff03;
	r[2] &= 0x3ffc0ff;
	r[3] &= 0x3f03fff;
	r[4] &= 0x00fffff;

	for (; len >= 16; len -= 16, msg += 16)
		poly_block(h, r, msg, 1u << 24);
	if (len > 0) {
		/* A short final block is padded with one 0x01 byte and zeros,
		 * instead of the 2^128 bit a full block gets. */
		memset(last, 0, sizeof last);
		memcpy(last, msg, len);
		last[len] = 1;
		poly_block(h, r, last, 0);
		wipe(last, sizeof last);
	}

	/* Carry through once more: limbs 0, 2, 3, 4 end below 2^26, limb 1 at
	 * most 2^26, so h < 2^130 + 2^52 < 2p and h mod p is h or h - p. */
	for (i = 1; i < 5; i++) {
		h[i] += h[i - 1] >> 26;
		h[i - 1] &= M26;
	}
	h[0] += (h[4] >> 26) * 5;
	h[4] &= M26;
	h[1] += h[0] >> 26;
	h[0] &= M26;

	/* g = h + 5 - 2^130 = h - p, with exact carries; g[4]'s top bit is
	 * set iff that went negative, i.e. h < p, and then h is kept. */
	c = 5;
	for (i = 0; i < 4; i++) {
		g[i] = h[i] + c;
		c = g[i] >> 26;
		g[i] &= M26;
	}
	g[4] = h[4] + c - (1u << 26);
	mask = (g[4] >> 31) - 1;	/* all ones: take g; zero: keep h */
	for (i = 0; i < 5; i++)
		h[i] = (h[i] & ~mask) | (g[i] & mask);

	/* tag = (h + s) mod 2^128, s = key[16..32).  Summed in a 64-bit
	 * accumulator, so a limb 1 slightly over 26 bits still adds correctly. */
	acc = (uint64_t)h[0] + ((uint64_t)h[1] << 26) + get_le32(key + 16);
	put_le32(tag, (uint32_t)acc);
	acc = (acc >> 32) + ((uint64_t)h[2] << 20) + get_le32(key + 20);
	put_le32(tag + 4, (uint32_t)acc);
	acc = (acc >> 32) + ((uint64_t)h[3] << 14) + get_le32(key + 24);
	put_le32(tag + 8, (uint32_t)acc);
	acc = (acc >> 32) + ((uint64_t)h[4] << 8) + get_le32(key + 28);
	put_le32(tag + 12, (uint32_t)acc);

	wipe(r, sizeof r);
	wipe(h, sizeof h);
	wipe(g, sizeof g);
}

/* ---- X25519 (x25519.c) -------------------------------------------------- */

int nacl_x25519(uint8_t out[32], const uint8_t sk[32], const uint8_t pk[32])
{
	uint32_t z = 0;
	int i;

	/* x25519 clamps sk itself; out may alias sk or pk. */
	x25519(out, sk, pk);
	for (i = 0; i < 32; i++)
		z |= out[i];
	/* All zero = pk of small order; the result is public then anyway. */
	return z != 0 ? 0 : -1;
}

void nacl_x25519_base(uint8_t pk[32], const uint8_t sk[32])
{
	static const uint8_t nine[32] = { 9 };

	/* Never zero: the clamped scalar is a multiple of 8 in [2^254, 2^255),
	 * hence not a multiple of the base point's prime order q ~ 2^252. */
	(void)nacl_x25519(pk, sk, nine);
}

/* ---- crypto_box --------------------------------------------------------- */

int nacl_box_beforenm(uint8_t k[32], const uint8_t pk[32], const uint8_t sk[32])
{
	static const uint8_t zero16[16];
	uint8_t s[32];
	int rc;

	/* k is derived even on -1, as Go's box does, so a caller that chooses
	 * to accept low-order keys gets derper's (zero-secret) behaviour. */
	rc = nacl_x25519(s, sk, pk);
	nacl_hsalsa20(k, zero16, s);
	wipe(s, sizeof s);
	return rc;
}

/*
 * XSalsa20 block 0 for (nonce, k): subkey = HSalsa20(k, nonce[0..16)), then
 * Salsa20(subkey, nonce[16..24)) from counter 0.  Its first 32 bytes are the
 * Poly1305 key, its last 32 encrypt the first 32 message bytes; the rest of
 * the message uses blocks 1, 2, ... (see xor_message).
 */
static void box_block0(uint8_t ks[64], uint8_t subkey[32],
    const uint8_t nonce[24], const uint8_t k[32])
{
	nacl_hsalsa20(subkey, nonce, k);
	nacl_salsa20_xor(ks, NULL, 64, nonce + 16, 0, subkey);
}

/* out = in XOR keystream[32 .. 32 + len); out == in allowed. */
static void xor_message(uint8_t *out, const uint8_t *in, size_t len,
    const uint8_t ks[64], const uint8_t subkey[32], const uint8_t nonce[24])
{
	size_t i, n = len < 32 ? len : 32;

	for (i = 0; i < n; i++)
		out[i] = (uint8_t)(in[i] ^ ks[32 + i]);
	if (len > 32)
		nacl_salsa20_xor(out + 32, in + 32, len - 32, nonce + 16, 1, subkey);
}

void nacl_box_seal_afternm(uint8_t *box, const uint8_t *msg, size_t len,
    const uint8_t nonce[24], const uint8_t k[32])
{
	uint8_t ks[64], subkey[32];

	box_block0(ks, subkey, nonce, k);
	xor_message(box + NACL_TAG_BYTES, msg, len, ks, subkey, nonce);
	nacl_poly1305(box, box + NACL_TAG_BYTES, len, ks);
	wipe(ks, sizeof ks);
	wipe(subkey, sizeof subkey);
}

int nacl_box_open_afternm(uint8_t *msg, const uint8_t *box, size_t boxlen,
    const uint8_t nonce[24], const uint8_t k[32])
{
	uint8_t ks[64], subkey[32], tag[NACL_TAG_BYTES];
	int ok;

	if (boxlen < NACL_TAG_BYTES)
		return -1;
	box_block0(ks, subkey, nonce, k);
	nacl_poly1305(tag, box + NACL_TAG_BYTES, boxlen - NACL_TAG_BYTES, ks);
	ok = nacl_equal(tag, box, NACL_TAG_BYTES);
	/* Decrypt only authenticated data; msg stays untouched on failure. */
	if (ok)
		xor_message(msg, box + NACL_TAG_BYTES, boxlen - NACL_TAG_BYTES,
		    ks, subkey, nonce);
	wipe(ks, sizeof ks);
	wipe(subkey, sizeof subkey);
	return ok ? 0 : -1;
}

int nacl_box_seal(uint8_t *box, const uint8_t *msg, size_t len,
    const uint8_t nonce[24], const uint8_t pk[32], const uint8_t sk[32])
{
	uint8_t k[32];
	int rc = nacl_box_beforenm(k, pk, sk);

	if (rc == 0)
		nacl_box_seal_afternm(box, msg, len, nonce, k);
	wipe(k, sizeof k);
	return rc;
}

int nacl_box_open(uint8_t *msg, const uint8_t *box, size_t boxlen,
    const uint8_t nonce[24], const uint8_t pk[32], const uint8_t sk[32])
{
	uint8_t k[32];
	int rc = nacl_box_beforenm(k, pk, sk);

	if (rc == 0)
		rc = nacl_box_open_afternm(msg, box, boxlen, nonce, k);
	wipe(k, sizeof k);
	return rc;
}
