/*
 * p256.h -- fast ECDSA P-256 signing for the TLS ServerKeyExchange.
 *
 * A drop-in for br_ecdsa_i31_sign_asn1: same type (br_ecdsa_sign), same
 * RFC 6979 deterministic nonces, hence byte-identical signatures, but with
 * 4 x 64-bit limbs and a precomputed table of multiples of G, about ten times
 * faster on x86-64.  Built without unsigned __int128 (32-bit targets) or with
 * -DDERP_NO_FASTEC, every call goes to BearSSL and no table is compiled in.
 */
#ifndef P256_H
#define P256_H

#include <stddef.h>
#include <bearssl.h>

/* Longest DER signature: SEQUENCE header 2 + 2 x INTEGER (2 + 1 pad + 32). */
#define P256_SIG_MAX_BYTES 72

/*
 * Build the fixed-base table (32 KB, about 1 ms) and self-check it: every
 * point must lie on the curve.  0 on success, -1 if the check fails, in which
 * case signing keeps going to BearSSL.  Call it once at start-up, before any
 * thread could sign.  If it was not called, the first P-256 signature calls
 * it (lazy, not thread-safe); without the fast code it does nothing and
 * returns 0.
 */
int p256_init(void);

/* 1 when the 64-bit code is compiled in, 0 when everything goes to BearSSL. */
int p256_is_fast(void);

/*
 * br_ecdsa_sign for br_ssl_server_set_single_ec().  For a secp256r1 key of at
 * most 32 bytes (and an impl that supports secp256r1) the signature is made
 * here; anything else is passed to br_ecdsa_i31_sign_asn1 unchanged.  sig
 * needs P256_SIG_MAX_BYTES for P-256.  Returns the DER length, or 0 on error
 * (a key of 0 or >= n is rejected, as BearSSL rejects it).
 */
size_t p256_ecdsa_sign_asn1(const br_ec_impl *impl, const br_hash_class *hf,
    const void *hash_value, const br_ec_private_key *sk, void *sig);

/*
 * Test hook, not for production use: out = k*G as an uncompressed point
 * (0x04 || x || y, 65 bytes) for a big-endian k in [1, n-1], through the
 * same fixed-base code the signer uses (BearSSL's mulgen when not fast).
 * Returns 65, or 0 for k out of range.
 */
size_t p256_mulgen_for_test(unsigned char out[65], const unsigned char k[32]);

#endif
