/*
 * nacl.h -- NaCl crypto_box (X25519 + XSalsa20-Poly1305) for the DERP handshake.
 *
 * X25519 comes from BearSSL (br_ec_c25519_*); HSalsa20, Salsa20 and Poly1305 are
 * written here because BearSSL does not export them.  No allocation, no globals;
 * every buffer belongs to the caller.  The "easy" box layout is tag[16] || ciphertext.
 */
#ifndef NACL_H
#define NACL_H

#include <stddef.h>
#include <stdint.h>

#define NACL_KEY_BYTES   32	/* X25519 keys, shared secrets, box keys */
#define NACL_NONCE_BYTES 24	/* XSalsa20 nonce */
#define NACL_TAG_BYTES   16	/* Poly1305 tag in front of the ciphertext */

/* HSalsa20: out = core(key, in[16]) words 0,5,10,15,6,7,8,9 (little-endian). */
void nacl_hsalsa20(uint8_t out[32], const uint8_t in[16], const uint8_t key[32]);

/* Salsa20/20 keystream XOR, 64-bit nonce, block counter starting at `counter`.
 * out and in may be the same buffer; in == NULL means "keystream only". */
void nacl_salsa20_xor(uint8_t *out, const uint8_t *in, size_t len,
    const uint8_t nonce[8], uint64_t counter, const uint8_t key[32]);

/* Poly1305 one-time authenticator (RFC 8439 section 2.5). */
void nacl_poly1305(uint8_t tag[16], const uint8_t *msg, size_t len,
    const uint8_t key[32]);

/* Constant-time comparison of n bytes: 1 if equal, 0 otherwise. */
int nacl_equal(const uint8_t *a, const uint8_t *b, size_t n);

/* X25519(sk, pk), all in RFC 7748 byte order; sk is clamped internally and out
 * may alias sk or pk.  Returns 0, or -1 when the result is all zeros (low-order pk). */
int nacl_x25519(uint8_t out[32], const uint8_t sk[32], const uint8_t pk[32]);

/* Public key for a private key: X25519(sk, 9). */
void nacl_x25519_base(uint8_t pk[32], const uint8_t sk[32]);

/* crypto_box_beforenm: k = HSalsa20(X25519(sk, pk), 0^16).  0, or -1 as nacl_x25519
 * (k is still written then, as Go's box would derive it). */
int nacl_box_beforenm(uint8_t k[32], const uint8_t pk[32], const uint8_t sk[32]);

/* Seal len bytes of msg into box[NACL_TAG_BYTES + len] (tag || ciphertext).
 * msg and box must not overlap. */
void nacl_box_seal_afternm(uint8_t *box, const uint8_t *msg, size_t len,
    const uint8_t nonce[24], const uint8_t k[32]);

/* Open box[boxlen] (tag || ciphertext) into msg[boxlen - NACL_TAG_BYTES].
 * Tag checked in constant time before anything is decrypted.
 * Returns 0, or -1 (boxlen < 16 or forged); msg is untouched on failure.
 * msg may equal box + NACL_TAG_BYTES (in-place). */
int nacl_box_open_afternm(uint8_t *msg, const uint8_t *box, size_t boxlen,
    const uint8_t nonce[24], const uint8_t k[32]);

/* One-shot forms: beforenm then seal/open.  Return 0 or -1. */
int nacl_box_seal(uint8_t *box, const uint8_t *msg, size_t len,
    const uint8_t nonce[24], const uint8_t pk[32], const uint8_t sk[32]);
int nacl_box_open(uint8_t *msg, const uint8_t *box, size_t boxlen,
    const uint8_t nonce[24], const uint8_t pk[32], const uint8_t sk[32]);

#endif
