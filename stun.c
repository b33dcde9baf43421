/*
 * stun.c -- the STUN binding server derper runs (spec/stun.md), as pure functions.
 *
 * Tailscale clients learn their public address by sending derper a fixed 40-byte
 * binding request (stun.md section 2) and reading one XOR-MAPPED-ADDRESS back.  This
 * file decides whether a datagram is such a request (section 3, steps 1..6, checked
 * in derper's order so that the failing step doubles as the drop reason) and builds
 * the 32- or 44-byte answer (sections 4 and 5).  The client half (the request
 * Tailscale sends, the response parser of section 8) lives here too, so tests and
 * tools use the same attribute walk as the server.
 *
 * Portability: every wire integer goes through get_be16/put_be16/get_be32/put_be32,
 * a byte at a time, never through a cast of the buffer, so nothing depends on the
 * host's byte order or alignment (the code runs on 32-bit big-endian MIPS).  Nothing
 * allocates, nothing keeps state; the only global is the const CRC table.
 */
#include "stun.h"

#include <string.h>

/* Wire constants, stun.md section 1 (RFC 5389). */
#define MAGIC_COOKIE		0x2112A442u
#define FINGERPRINT_XOR		0x5354554Eu	/* "STUN", RFC 5389 section 15.5 */
#define TYPE_BINDING_REQUEST	0x0001u
#define TYPE_BINDING_SUCCESS	0x0101u
#define ATTR_MAPPED_ADDRESS	0x0001u
#define ATTR_XOR_MAPPED_ADDRESS	0x0020u
#define ATTR_XOR_MAPPED_ALT	0x8020u		/* pre-RFC 5389 alias: read, never sent */
#define ATTR_SOFTWARE		0x8022u
#define ATTR_FINGERPRINT	0x8028u
#define FAMILY_IPV4		0x01
#define FAMILY_IPV6		0x02

#define ATTR_HEADER_BYTES	4	/* type (2) + length (2) */
#define FINGERPRINT_VALUE_BYTES	4	/* one CRC-32 */
#define FINGERPRINT_ATTR_BYTES	(ATTR_HEADER_BYTES + FINGERPRINT_VALUE_BYTES)
#define ADDR_ATTR_FIXED_BYTES	4	/* zero byte, family, port: before the address */
#define SOFTWARE_VALUE		"tailnode"	/* what Tailscale clients send */
#define SOFTWARE_VALUE_BYTES	8	/* strlen(SOFTWARE_VALUE): no NUL on the wire */

/* --- Big-endian helpers: the only way a wire integer is read or written. --- */

static unsigned get_be16(const uint8_t *p)
{
	return (unsigned)p[0] << 8 | (unsigned)p[1];
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_be16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* --- CRC-32 (reflected polynomial 0xEDB88320, as zlib) for FINGERPRINT. ---
 * A 16-entry table, one lookup per nibble: 64 bytes of rodata instead of 1 KiB,
 * and still only 2 lookups per byte.  A request is 32 bytes, and every request
 * that passes steps 1..5 costs one CRC, so this is cheap even under a flood. */
static const uint32_t crc_nibble[16] = {
	0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu,
	0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
	0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
	0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t stun_crc32(const uint8_t *buf, size_t len)
{
	uint32_t crc = 0xFFFFFFFFu;
	size_t i;

	for (i = 0; i < len; i++) {
		crc ^= buf[i];
		crc = (crc >> 4) ^ crc_nibble[crc & 15];
		crc = (crc >> 4) ^ crc_nibble[crc & 15];
	}
	return crc ^ 0xFFFFFFFFu;
}

/* --- Attribute walk (stun.md section 3 step 3, shared with section 8). ---
 * Each attribute is a 4-byte header and a value padded to a multiple of 4; the
 * value plus its padding must fit in what is left.  The padding bytes are not
 * checked (derper does not).  The walk covers exactly the bytes it is given: the
 * server gives it everything after the header, the client what the header length
 * field announces. */
struct attr_walk {
	const uint8_t *p;	/* next attribute header */
	size_t left;		/* bytes from p to the end of the walk */
};

/* 1: an attribute (type, val, vlen set); 0: clean end; -1: malformed (a leftover
 * of 1..3 bytes, or a value plus padding running past the end). */
static int attr_next(struct attr_walk *w, unsigned *type, const uint8_t **val,
    size_t *vlen)
{
	size_t padded;

	if (w->left == 0)
		return 0;
	if (w->left < ATTR_HEADER_BYTES)
		return -1;
	*type = get_be16(w->p);
	*vlen = get_be16(w->p + 2);
	padded = (*vlen + 3) & ~(size_t)3;
	if (padded > w->left - ATTR_HEADER_BYTES)
		return -1;
	*val = w->p + ATTR_HEADER_BYTES;
	w->p += ATTR_HEADER_BYTES + padded;
	w->left -= ATTR_HEADER_BYTES + padded;
	return 1;
}

/* ::ffff:a.b.c.d (RFC 4291 section 2.5.5.2), what a dual-stack socket reports for
 * an IPv4 peer. */
static int is_v4mapped(const uint8_t a[16])
{
	static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	return memcmp(a, prefix, sizeof prefix) == 0;
}

/* --- Server side. --- */

int stun_is(const uint8_t *pkt, size_t len)
{
	/* RFC 5389 section 6: the top two bits of every STUN message are zero, which
	 * tells STUN apart from other protocols multiplexed on the same port. */
	return len >= STUN_HEADER_BYTES && (pkt[0] & 0xC0) == 0 &&
	    get_be32(pkt + 4) == MAGIC_COOKIE;
}

int stun_parse_binding_request(const uint8_t *pkt, size_t len,
    uint8_t txid[STUN_TXID_BYTES])
{
	struct attr_walk w;
	const uint8_t *val, *last_val = NULL;
	size_t vlen, last_len = 0;
	unsigned type, last_type = 0;	/* 0: no attribute yet, never 0x8028 */
	int r, software_ok = 0;

	if (!stun_is(pkt, len))
		return 1;		/* not_stun */
	if (get_be16(pkt) != TYPE_BINDING_REQUEST)
		return 2;		/* not_binding_request */

	/* The walk runs from the end of the header to the end of the datagram; the
	 * header's length field is not consulted, as in derper: UDP already delimits
	 * the message, FINGERPRINT covers the field, and a request with a wrong value
	 * is answered (test vectors with 0x0000 and 0xffff).  The whole walk runs
	 * before steps 4..6, so a malformed list is step 3 whatever it contains. */
	w.p = pkt + STUN_HEADER_BYTES;
	w.left = len - STUN_HEADER_BYTES;
	while ((r = attr_next(&w, &type, &val, &vlen)) > 0) {
		/* Any position, any other attributes: clients send SOFTWARE first,
		 * but derper only asks that one be present. */
		if (type == ATTR_SOFTWARE && vlen == SOFTWARE_VALUE_BYTES &&
		    memcmp(val, SOFTWARE_VALUE, SOFTWARE_VALUE_BYTES) == 0)
			software_ok = 1;
		last_type = type;
		last_val = val;
		last_len = vlen;
	}
	if (r < 0)
		return 3;		/* malformed_attrs */
	if (!software_ok)
		return 4;		/* wrong_software: not a Tailscale client */
	if (last_type != ATTR_FINGERPRINT)
		return 5;		/* no_fingerprint (or not last) */

	/* A last attribute with a 4-byte value is exactly the last 8 bytes of the
	 * datagram (4 needs no padding, and it follows the 20-byte header, so
	 * len >= 28): the CRC covers datagram[0 .. len-8), everything before it.
	 * This is stun.md's clean rule; derper differs only for crafted datagrams
	 * whose last FINGERPRINT is not 4 bytes long. */
	if (last_len != FINGERPRINT_VALUE_BYTES ||
	    get_be32(last_val) !=
	    (stun_crc32(pkt, len - FINGERPRINT_ATTR_BYTES) ^ FINGERPRINT_XOR))
		return 6;		/* bad_fingerprint */

	memcpy(txid, pkt + 8, STUN_TXID_BYTES);
	return 0;
}

size_t stun_build_response(uint8_t out[STUN_REPLY_MAX],
    const uint8_t txid[STUN_TXID_BYTES], const uint8_t *addr, size_t addrlen,
    uint16_t port)
{
	unsigned family;
	size_t i;

	/* stun.md section 5: derper on a dual-stack socket would answer family 02
	 * with ::ffff:a.b.c.d, which clients before v1.32 take for an IPv6 address.
	 * Family 01 with the 4 bytes is understood by every client version. */
	if (addrlen == 16 && is_v4mapped(addr)) {
		addr += 12;
		addrlen = 4;
	}
	if (addrlen == 4)
		family = FAMILY_IPV4;
	else if (addrlen == 16)
		family = FAMILY_IPV6;
	else
		return 0;

	put_be16(out, TYPE_BINDING_SUCCESS);
	/* One attribute: its header, zero byte, family, port, address. */
	put_be16(out + 2, (unsigned)(ATTR_HEADER_BYTES + ADDR_ATTR_FIXED_BYTES + addrlen));
	put_be32(out + 4, MAGIC_COOKIE);
	memcpy(out + 8, txid, STUN_TXID_BYTES);
	put_be16(out + 20, ATTR_XOR_MAPPED_ADDRESS);
	put_be16(out + 22, (unsigned)(ADDR_ATTR_FIXED_BYTES + addrlen));
	out[24] = 0;
	out[25] = (uint8_t)family;
	put_be16(out + 26, port ^ (MAGIC_COOKIE >> 16));
	/* The XOR mask is cookie || transaction ID, which is out[4..20) as written. */
	for (i = 0; i < addrlen; i++)
		out[28 + i] = addr[i] ^ out[4 + i];
	return 28 + addrlen;
}

size_t stun_answer(uint8_t out[STUN_REPLY_MAX], const uint8_t *pkt, size_t len,
    const uint8_t *addr, size_t addrlen, uint16_t port)
{
	uint8_t txid[STUN_TXID_BYTES];

	if (stun_parse_binding_request(pkt, len, txid) != 0)
		return 0;
	return stun_build_response(out, txid, addr, addrlen, port);
}

/* --- Client side. --- */

void stun_build_request(uint8_t out[STUN_REQUEST_BYTES],
    const uint8_t txid[STUN_TXID_BYTES])
{
	put_be16(out, TYPE_BINDING_REQUEST);
	put_be16(out + 2, STUN_REQUEST_BYTES - STUN_HEADER_BYTES);
	put_be32(out + 4, MAGIC_COOKIE);
	memcpy(out + 8, txid, STUN_TXID_BYTES);
	put_be16(out + 20, ATTR_SOFTWARE);
	put_be16(out + 22, SOFTWARE_VALUE_BYTES);
	memcpy(out + 24, SOFTWARE_VALUE, SOFTWARE_VALUE_BYTES);
	put_be16(out + 32, ATTR_FINGERPRINT);
	put_be16(out + 34, FINGERPRINT_VALUE_BYTES);
	put_be32(out + 36, stun_crc32(out, 32) ^ FINGERPRINT_XOR);
}

/* A (XOR-)MAPPED-ADDRESS value: zero byte, family, port, address.  mask is
 * cookie || transaction ID for the XOR form, NULL for the plain one.  A short
 * value or an unknown family is an error, as in stun.ParseResponse. */
static int read_address(const uint8_t *val, size_t vlen, const uint8_t *mask,
    uint8_t addr[16], size_t *addrlen, uint16_t *port)
{
	size_t n, i;

	if (vlen < ADDR_ATTR_FIXED_BYTES)
		return -1;
	if (val[1] == FAMILY_IPV4)
		n = 4;
	else if (val[1] == FAMILY_IPV6)
		n = 16;
	else
		return -1;
	if (vlen < ADDR_ATTR_FIXED_BYTES + n)
		return -1;
	*port = (uint16_t)(get_be16(val + 2) ^ (mask ? MAGIC_COOKIE >> 16 : 0));
	for (i = 0; i < n; i++)
		addr[i] = val[ADDR_ATTR_FIXED_BYTES + i] ^ (mask ? mask[i] : 0);
	if (n == 16 && is_v4mapped(addr)) {	/* clients since v1.32 unmap */
		memmove(addr, addr + 12, 4);
		n = 4;
	}
	*addrlen = n;
	return 0;
}

int stun_parse_response(const uint8_t *pkt, size_t len,
    uint8_t txid[STUN_TXID_BYTES], uint8_t addr[16], size_t *addrlen,
    uint16_t *port)
{
	struct attr_walk w;
	const uint8_t *val;
	uint8_t xaddr[16], maddr[16];
	size_t vlen, hlen, xlen = 0, mlen = 0;
	uint16_t xport = 0, mport = 0;
	unsigned type;
	int r;

	if (!stun_is(pkt, len) || get_be16(pkt) != TYPE_BINDING_SUCCESS)
		return -1;
	/* Unlike the server, the client trusts the header length: more is an
	 * error, bytes beyond it are trimmed (stun.ParseResponse does this). */
	hlen = get_be16(pkt + 2);
	if (hlen > len - STUN_HEADER_BYTES)
		return -1;
	w.p = pkt + STUN_HEADER_BYTES;
	w.left = hlen;
	while ((r = attr_next(&w, &type, &val, &vlen)) > 0) {
		/* The last XOR-MAPPED-ADDRESS wins; MAPPED-ADDRESS is a fallback for
		 * old servers.  A bad one of either kind fails the whole response. */
		if (type == ATTR_XOR_MAPPED_ADDRESS || type == ATTR_XOR_MAPPED_ALT) {
			if (read_address(val, vlen, pkt + 4, xaddr, &xlen, &xport) < 0)
				return -1;
		} else if (type == ATTR_MAPPED_ADDRESS) {
			if (read_address(val, vlen, NULL, maddr, &mlen, &mport) < 0)
				return -1;
		}
	}
	if (r < 0)
		return -1;
	if (xlen != 0) {
		memcpy(addr, xaddr, xlen);
		*addrlen = xlen;
		*port = xport;
	} else if (mlen != 0) {
		memcpy(addr, maddr, mlen);
		*addrlen = mlen;
		*port = mport;
	} else {
		return -1;
	}
	memcpy(txid, pkt + 8, STUN_TXID_BYTES);
	return 0;
}
