/*
 * fuzz_stun.c -- stun.c on any datagram: the server side (stun_is,
 * stun_parse_binding_request, stun_answer for IPv4, IPv6, IPv4-mapped and a
 * bad address length) and the client side (stun_parse_response).
 *
 * Input: one datagram, as it arrives.  Checks: stun_answer answers exactly
 * what stun_parse_binding_request accepts; every reply is 32 or 44 bytes and
 * parses back (stun_parse_response) to the request's transaction ID and the
 * source address and port (IPv4-mapped as IPv4); a response that parses has a
 * 4- or 16-byte address and the datagram's transaction ID.
 */
#define _POSIX_C_SOURCE 200809L

#include "../../stun.h"
#include "fuzz.h"

static void
fuzz_init(void)
{
}

static void
answer(const uint8_t *data, size_t size, const uint8_t *addr, size_t alen,
    uint16_t port, int valid)
{
	uint8_t out[STUN_REPLY_MAX + 8], txid[STUN_TXID_BYTES], got[16];
	size_t n, glen = 0, want_len = alen;
	const uint8_t *want = addr;
	uint16_t gport = 0;

	memset(out, 0xAA, sizeof out);
	n = stun_answer(out, data, size, addr, alen, port);
	if (alen != 4 && alen != 16) {
		FUZZ_CHECK(n == 0, "stun_answer replied to a bad address length");
		return;
	}
	FUZZ_CHECK((n != 0) == valid, "stun_answer %zu, parse says %s", n,
	    valid ? "valid" : "invalid");
	if (n == 0)
		return;
	FUZZ_CHECK((n == 32 || n == 44) && out[n] == 0xAA, "reply of %zu bytes", n);
	FUZZ_CHECK(stun_parse_response(out, n, txid, got, &glen, &gport) == 0,
	    "our reply does not parse");
	if (alen == 16 && memcmp(addr, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
		want = addr + 12;
		want_len = 4;
	}
	FUZZ_CHECK(memcmp(txid, data + 8, STUN_TXID_BYTES) == 0 &&
	    glen == want_len && memcmp(got, want, glen) == 0 && gport == port,
	    "reply does not carry the request's txid and source");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t v4[4] = { 192, 0, 2, 1 };
	static const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0,
	    0, 0, 0, 0, 0, 0, 1 };
	static const uint8_t mapped[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff,
	    0xff, 203, 0, 113, 200 };
	uint8_t txid[STUN_TXID_BYTES], addr[16];
	size_t alen = 0;
	uint16_t port = 0;
	int valid;

	valid = stun_parse_binding_request(data, size, txid) == 0;
	FUZZ_CHECK(!valid || stun_is(data, size), "a request that is not STUN");
	answer(data, size, v4, 4, 41641, valid);
	answer(data, size, v6, 16, 443, valid);
	answer(data, size, mapped, 16, 65535, valid);
	answer(data, size, v4, 5, 1, valid);
	if (stun_parse_response(data, size, txid, addr, &alen, &port) == 0)
		FUZZ_CHECK((alen == 4 || alen == 16) && size >= STUN_HEADER_BYTES &&
		    memcmp(txid, data + 8, STUN_TXID_BYTES) == 0,
		    "parsed response: address length %zu", alen);
	(void)stun_crc32(data, size);
	return 0;
}

/* Every datagram of the .hex files of test/data/stun/. */
static void
fuzz_seeds(const char *datadir)
{
	static const char *const files[] = { "stun_binding_requests_valid.hex",
	    "stun_binding_requests_invalid.hex", "stun_is.hex",
	    "stun_responses_parse.hex", "stun_responses_server.hex" };
	char name[96], *text, *line, *next;
	uint8_t buf[2048];
	size_t f, n, len;
	int k;

	for (f = 0; f < sizeof files / sizeof files[0]; f++) {
		snprintf(name, sizeof name, "stun/%s", files[f]);
		text = fuzz_slurp(datadir, name, &len);
		k = 0;
		for (line = text; line != NULL && *line != '\0'; line = next) {
			next = strchr(line, '\n');
			if (next != NULL)
				*next++ = '\0';
			if (line[0] == '#' || line[0] == '\0')
				continue;
			n = fuzz_unhex(line, buf, sizeof buf);
			snprintf(name, sizeof name, "%.*s-%02d",
			    (int)(strlen(files[f]) - 4), files[f], k++);
			seed_emit(name, buf, n);
		}
		free(text);
	}
}
