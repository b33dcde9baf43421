/*
 * x25519.h -- X25519 (RFC 7748) with 64-bit limbs, and a BearSSL br_ec_impl that
 * uses it for Curve25519.  No allocation, no globals besides the const impl.
 *
 * Where the compiler has no 64x64->128 multiply (no __SIZEOF_INT128__, e.g.
 * 32-bit MIPS) or with -DDERP_NO_FASTEC, the same API runs on BearSSL's
 * br_ec_c25519_m31 instead, and x25519_ec_impl is br_ec_all_m31 in effect.
 */
#ifndef X25519_H
#define X25519_H

#include <stdint.h>
#include <bearssl.h>

#define X25519_BYTES 32		/* scalars, u-coordinates and outputs */

/* RFC 7748 X25519(scalar, u): clamps a copy of scalar, ignores the top bit of u
 * (u >= p is accepted and taken mod p) and writes the fully reduced u of the
 * result, all little-endian.  out may alias scalar or u.  An all-zero out means
 * u was of small order; rejecting that is the caller's business. */
void x25519(uint8_t out[32], const uint8_t scalar[32], const uint8_t u[32]);

/* X25519(scalar, 9): the public key for a private key. */
void x25519_base(uint8_t out[32], const uint8_t scalar[32]);

/* 1 if the 64-bit code is compiled in, 0 if x25519() is BearSSL's m31. */
int x25519_is_fast(void);

/*
 * br_ec_all_m31 with Curve25519 mul and mulgen done by x25519() (for
 * br_ssl_engine_set_ec()).  Every other curve and operation is delegated to
 * br_ec_all_m31, and Curve25519 follows br_ec_c25519_m31 byte for byte, whose
 * conventions differ from the "big-endian" of bearssl_ec.h: the scalar is
 * little-endian as in RFC 7748; a scalar shorter than 32 bytes is its low bytes
 * (zero-extended at the top); xlen > 32 or Glen != 32 make mul return 0 with G
 * untouched and mulgen return 32 with R = the generator; a zero result is not
 * an error (mul returns 1); muladd always returns 0.
 */
extern const br_ec_impl x25519_ec_impl;

#endif
