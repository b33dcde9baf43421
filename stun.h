/*
 * stun.h -- the STUN binding server derper runs, as pure functions: a datagram in,
 * a reply out.  No sockets, no allocation, no globals.  See README "Files".
 */
#ifndef STUN_H
#define STUN_H

#include <stddef.h>
#include <stdint.h>

#define STUN_HEADER_BYTES 20
#define STUN_TXID_BYTES   12
#define STUN_REQUEST_BYTES 40	/* what Tailscale clients send: header + SOFTWARE + FINGERPRINT */
#define STUN_REPLY_MAX    44	/* 20 header + 4 attr header + 4 + 16 (IPv6 address) */

/* stun.md section 3 step 1: could this be a STUN message at all? 1 or 0. */
int stun_is(const uint8_t *pkt, size_t len);

/* stun.md section 3 steps 1..6: a Tailscale binding request?  On success copies the
 * transaction ID (bytes 8..19) and returns 0; otherwise leaves txid alone and returns
 * the failing step, which names the drop reason of the test vectors:
 * 1 not_stun, 2 not_binding_request, 3 malformed_attrs, 4 wrong_software,
 * 5 no_fingerprint, 6 bad_fingerprint.  Every one counts as not_stun (section 7). */
int stun_parse_binding_request(const uint8_t *pkt, size_t len,
    uint8_t txid[STUN_TXID_BYTES]);

/* The binding success response for a source address.  addr is 4 bytes (IPv4) or
 * 16 bytes (IPv6), in network order as in sockaddr_in(6); port is in host order.
 * An IPv4-mapped IPv6 address is answered as IPv4 (family 01, stun.md section 5).
 * Returns the reply length (32 or 44), or 0 for a bad addrlen.  out must not
 * overlap txid or addr. */
size_t stun_build_response(uint8_t out[STUN_REPLY_MAX],
    const uint8_t txid[STUN_TXID_BYTES], const uint8_t *addr, size_t addrlen,
    uint16_t port);

/* The whole server: parse the request and build the reply.  Returns the reply
 * length, or 0 when the datagram must be dropped silently (out is then untouched;
 * a bad addrlen also gives 0). */
size_t stun_answer(uint8_t out[STUN_REPLY_MAX], const uint8_t *pkt, size_t len,
    const uint8_t *addr, size_t addrlen, uint16_t port);

/* Client side (tests, tools): the 40-byte request Tailscale clients send. */
void stun_build_request(uint8_t out[STUN_REQUEST_BYTES],
    const uint8_t txid[STUN_TXID_BYTES]);

/* Client side (stun.md section 8): parse a binding response.  On success fills txid,
 * addr (4 or 16 bytes, *addrlen set; IPv4-mapped unmapped to 4) and port (host
 * order), returns 0; -1 otherwise, outputs untouched.  Matching txid against the
 * outstanding requests is the caller's job. */
int stun_parse_response(const uint8_t *pkt, size_t len,
    uint8_t txid[STUN_TXID_BYTES], uint8_t addr[16], size_t *addrlen,
    uint16_t *port);

/* CRC-32 (IEEE 802.3, as zlib) used by FINGERPRINT. */
uint32_t stun_crc32(const uint8_t *buf, size_t len);

#endif
