/*
 * test_stun.c -- known-answer, round-trip and garbage tests for stun.c.
 *
 * Usage: test_stun DATA_DIR   (reads DATA_DIR/stun/NAME.hex, copies of the shared
 * vectors; see test/data/stun and testdata/README.md for their format).
 *
 * Output: one line per check group, "ok NAME" or "FAIL NAME: DETAIL" (one FAIL line
 * per failed check, naming the vector's comment), then "N passed, N failed".  Exit
 * status 0 iff nothing failed.
 *
 * Every datagram is handed to stun.c in a heap buffer of exactly its length, so
 * that AddressSanitizer catches a read one byte past the end.
 */
#define _POSIX_C_SOURCE 200112L

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../stun.h"

#define MAX_VECTORS	64	/* the largest file has 21 entries */
#define MAX_COMMENT	512	/* longest comment line is ~330 characters */
#define MAX_DATAGRAM	1024	/* longest vector is 96 bytes */
#define MAX_LINE	(2 * MAX_DATAGRAM + MAX_COMMENT)
#define GARBAGE_ROUNDS	100000
#define GARBAGE_MAX_LEN	600
#define MUTATION_ROUNDS	50000
#define FP_XOR		0x5354554Eu

struct vec {
	char comment[MAX_COMMENT];	/* without the leading "# " */
	uint8_t data[MAX_DATAGRAM];
	size_t len;
};

static struct vec vecs[MAX_VECTORS];
static int n_passed, n_failed, group_failed;
static const char *group;

static void begin(const char *name)
{
	group = name;
	group_failed = 0;
}

static void end(void)
{
	if (group_failed == 0)
		printf("ok %s\n", group);
}

#ifdef __GNUC__
static void check(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#endif

static void check(int cond, const char *fmt, ...)
{
	va_list ap;

	if (cond) {
		n_passed++;
		return;
	}
	n_failed++;
	group_failed++;
	printf("FAIL %s: ", group);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static const char *hex(const uint8_t *p, size_t n)
{
	static char buf[2 * MAX_DATAGRAM + 1];
	size_t i;

	if (n > MAX_DATAGRAM)
		n = MAX_DATAGRAM;
	for (i = 0; i < n; i++)
		sprintf(buf + 2 * i, "%02x", p[i]);
	buf[2 * n] = 0;
	return buf;
}

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* The whole of s is hex digits in pairs (at least one): 0, or -1. */
static int unhex(const char *s, uint8_t *out, size_t max, size_t *outlen)
{
	size_t n = 0;
	int hi, lo;

	while (*s != '\0') {
		if (n == max || (hi = hexval((unsigned char)s[0])) < 0 ||
		    (lo = hexval((unsigned char)s[1])) < 0)
			return -1;
		out[n++] = (uint8_t)(hi << 4 | lo);
		s += 2;
	}
	*outlen = n;
	return n > 0 ? 0 : -1;
}

/* A decimal of at most 5 digits, not followed by another digit, at most
 * max: 0 and *end past it, or -1. */
static int dec_at(const char *s, unsigned max, unsigned *out, const char **end)
{
	size_t i;
	unsigned v = 0;

	for (i = 0; s[i] >= '0' && s[i] <= '9'; i++) {
		if (i == 5)
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (i == 0 || v > max)
		return -1;
	*out = v;
	*end = s + i;
	return 0;
}

/*
 * The .hex files: a comment line naming the datagram, then the datagram as
 * one line of hex; a comment followed by another comment is a note (stun_is.hex
 * opens with one) and is replaced.  Strict, so that no vector is lost
 * unnoticed: a hex line that does not parse whole (odd length, a non-hex
 * character, anything after the hex), a hex line with no comment right before
 * it, a line or comment too long for the buffers, a NUL byte, or more vectors
 * than fit is a FAIL naming the file and line; so is a file with no vector.
 * Returns the count, or -1 after a FAIL.
 */
static int load(const char *dir, const char *name, struct vec *out)
{
	char path[1024], line[MAX_LINE], comment[MAX_COMMENT] = "";
	FILE *f;
	size_t len, lineno = 0;
	int n = 0, have_comment = 0;
	const char *why = NULL;

	snprintf(path, sizeof path, "%s/stun/%s", dir, name);
	if ((f = fopen(path, "r")) == NULL) {
		check(0, "cannot open %s", path);
		return -1;
	}
	while (why == NULL && fgets(line, sizeof line, f) != NULL) {
		lineno++;
		len = strlen(line);
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		else if (len == sizeof line - 1)
			why = "line too long";
		else if (!feof(f))
			why = "NUL byte in the line";
		if (why != NULL)
			break;
		if (line[0] == '#') {
			const char *c = line + 1 + (line[1] == ' ');

			if (strlen(c) >= sizeof comment)
				why = "comment too long";
			else
				memcpy(comment, c, strlen(c) + 1);
			have_comment = 1;
			continue;
		}
		if (line[0] == '\0')
			continue;	/* blank lines separate, if any */
		if (!have_comment)
			why = "hex line without a comment line before it";
		else if (n == MAX_VECTORS)
			why = "more vectors than MAX_VECTORS";
		else if (unhex(line, out[n].data, MAX_DATAGRAM, &out[n].len) != 0)
			why = "not one whole line of hex";
		else {
			memcpy(out[n].comment, comment, sizeof comment);
			n++;
			have_comment = 0;
		}
	}
	if (why == NULL && ferror(f))
		why = "read error";
	fclose(f);
	if (why != NULL) {
		check(0, "%s line %zu: %s", path, lineno, why);
		return -1;
	}
	if (n == 0) {
		check(0, "%s: no vectors", path);
		return -1;
	}
	return n;
}

/* A private copy of exactly len bytes (ASan flags any read past it). */
static uint8_t *exact(const uint8_t *p, size_t len)
{
	uint8_t *b = malloc(len ? len : 1);

	if (b == NULL) {
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	if (len)
		memcpy(b, p, len);
	return b;
}

/* "KEY<24 hex digits>" (and no 25th): the transaction ID, or -1. */
static int find_txid(const char *s, const char *key, uint8_t txid[12])
{
	const char *p = strstr(s, key);
	size_t n;
	char h[25];

	if (p == NULL)
		return -1;
	p += strlen(key);
	if (strlen(p) < 24 || hexval((unsigned char)p[24]) >= 0)
		return -1;
	memcpy(h, p, 24);
	h[24] = '\0';
	if (unhex(h, txid, 12, &n) != 0 || n != 12)
		return -1;
	return 0;
}

/* "KEY1.2.3.4:254" or "KEY[1::4]:254": address (4 or 16 bytes) and port. */
static int find_addrport(const char *s, const char *key, uint8_t addr[16],
    size_t *alen, unsigned *port)
{
	const char *p = strstr(s, key), *e;
	char a[64];

	if (p == NULL)
		return -1;
	p += strlen(key);
	if (*p == '[') {
		p++;
		e = strchr(p, ']');
		if (e == NULL || e[1] != ':' || (size_t)(e - p) >= sizeof a)
			return -1;
		memcpy(a, p, (size_t)(e - p));
		a[e - p] = 0;
		e++;
	} else {
		e = strchr(p, ':');
		if (e == NULL || (size_t)(e - p) >= sizeof a)
			return -1;
		memcpy(a, p, (size_t)(e - p));
		a[e - p] = 0;
	}
	if (dec_at(e + 1, 65535, port, &e) != 0)
		return -1;
	if (inet_pton(AF_INET, a, addr) == 1)
		*alen = 4;
	else if (inet_pton(AF_INET6, a, addr) == 1)
		*alen = 16;
	else
		return -1;
	return 0;
}

/* --- check groups --- */

static void test_crc32(void)
{
	begin("crc32");
	check(stun_crc32((const uint8_t *)"123456789", 9) == 0xCBF43926u,
	    "CRC-32(\"123456789\") = %08lx, want cbf43926",
	    (unsigned long)stun_crc32((const uint8_t *)"123456789", 9));
	check(stun_crc32((const uint8_t *)"", 0) == 0, "CRC-32 of nothing is not 0");
	end();
}

/*
 * The response stun.md section 4 specifies, written out here from its table
 * (not by stun.c, which is under test): 32 bytes for a 4-byte address, 44 for
 * a 16-byte one.  test_server_responses checks it against every vector.
 */
static size_t expect_response(uint8_t *out, const uint8_t txid[12],
    const uint8_t *addr, size_t alen, unsigned port)
{
	static const uint8_t cookie[4] = { 0x21, 0x12, 0xa4, 0x42 };
	size_t i;

	out[0] = 0x01;
	out[1] = 0x01;
	out[2] = 0x00;
	out[3] = alen == 4 ? 0x0c : 0x18;
	memcpy(out + 4, cookie, 4);
	memcpy(out + 8, txid, 12);
	out[20] = 0x00;
	out[21] = 0x20;
	out[22] = 0x00;
	out[23] = alen == 4 ? 0x08 : 0x14;
	out[24] = 0x00;
	out[25] = alen == 4 ? 0x01 : 0x02;
	out[26] = (uint8_t)(port >> 8) ^ 0x21;
	out[27] = (uint8_t)port ^ 0x12;
	for (i = 0; i < alen; i++)
		out[28 + i] = addr[i] ^ (i < 4 ? cookie[i] : txid[i - 4]);
	return 28 + alen;
}

/* Every valid request is answered with exactly the spec's bytes, from an
 * IPv4, an IPv6 and an IPv4-mapped source, and, where stun_responses_server.hex
 * has a response for the request's transaction ID, with exactly that. */
static void test_valid(const char *dir)
{
	static const struct {
		const char *name;
		uint8_t addr[16];
		size_t alen, off, wlen;	/* answered with addr[off..off+wlen) */
	} src[] = {
		{ "IPv4 192.0.2.1", { 192, 0, 2, 1 }, 4, 0, 4 },
		{ "IPv6 2001:db8::1", { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 }, 16, 0, 16 },
		{ "IPv4-mapped ::ffff:192.0.2.1",
		    { [10] = 0xff, 0xff, 192, 0, 2, 1 }, 16, 12, 4 },
	};
	static struct vec resp[MAX_VECTORS];
	uint8_t txid[12], want[12], out[STUN_REPLY_MAX], exp[STUN_REPLY_MAX];
	uint8_t addr[16];
	size_t n, w, k, alen;
	unsigned port;
	int i, j, rc, count, nresp, linked = 0;

	begin("valid_requests");
	nresp = load(dir, "stun_responses_server.hex", resp);
	count = load(dir, "stun_binding_requests_valid.hex", vecs);
	for (i = 0; i < count; i++) {
		const struct vec *v = &vecs[i];
		uint8_t *pkt = exact(v->data, v->len);

		rc = stun_parse_binding_request(pkt, v->len, txid);
		check(rc == 0, "%s: dropped at step %d", v->comment, rc);
		check(rc != 0 || memcmp(txid, pkt + 8, 12) == 0,
		    "%s: txid %s is not bytes 8..19", v->comment, hex(txid, 12));
		if (find_txid(v->comment, "txid ", want) == 0)
			check(memcmp(pkt + 8, want, 12) == 0,
			    "%s: txid in the comment differs from bytes 8..19", v->comment);
		for (k = 0; k < sizeof src / sizeof src[0]; k++) {
			n = stun_answer(out, pkt, v->len, src[k].addr, src[k].alen,
			    41641);
			w = expect_response(exp, pkt + 8, src[k].addr + src[k].off,
			    src[k].wlen, 41641);
			check(n == w && memcmp(out, exp, w) == 0,
			    "%s: answer to %s:41641 is not the spec's: %s",
			    v->comment, src[k].name, hex(out, n));
		}
		for (j = 0; j < nresp; j++) {
			if (memcmp(resp[j].data + 8, pkt + 8, 12) != 0 ||
			    strstr(resp[j].comment, "dual-stack") != NULL)
				continue;
			if (find_addrport(resp[j].comment, "source ", addr, &alen,
			    &port) != 0) {
				check(0, "%s: cannot parse comment", resp[j].comment);
				continue;
			}
			n = stun_answer(out, pkt, v->len, addr, alen,
			    (uint16_t)port);
			check(n == resp[j].len && memcmp(out, resp[j].data, n) == 0,
			    "%s, answered as in \"%s\": %s", v->comment,
			    resp[j].comment, hex(out, n));
			linked++;
		}
		free(pkt);
	}
	check(count < 0 || nresp < 0 || linked >= 4, "only %d answers compared "
	    "with stun_responses_server.hex (want 4 or more)", linked);
	end();
}

static void test_invalid(const char *dir)
{
	static const struct { const char *tag; int step; } reasons[] = {
		{ "drop [not_stun]", 1 }, { "drop [not_binding_request]", 2 },
		{ "drop [malformed_attrs]", 3 }, { "drop [wrong_software]", 4 },
		{ "drop [no_fingerprint]", 5 }, { "drop [bad_fingerprint]", 6 },
	};
	static const uint8_t v4[4] = { 192, 0, 2, 1 };
	uint8_t txid[12], out[STUN_REPLY_MAX], canary[STUN_REPLY_MAX];
	size_t n, k;
	int i, rc, step, count;

	begin("invalid_requests");
	count = load(dir, "stun_binding_requests_invalid.hex", vecs);
	memset(canary, 0xA5, sizeof canary);
	for (i = 0; i < count; i++) {
		const struct vec *v = &vecs[i];
		uint8_t *pkt = exact(v->data, v->len);

		step = 0;
		for (k = 0; k < sizeof reasons / sizeof reasons[0]; k++)
			if (strncmp(v->comment, reasons[k].tag, strlen(reasons[k].tag)) == 0)
				step = reasons[k].step;
		check(step != 0, "%s: unknown drop reason", v->comment);
		memset(txid, 0xA5, sizeof txid);
		rc = stun_parse_binding_request(pkt, v->len, txid);
		check(rc == step, "%s: step %d, want %d", v->comment, rc, step);
		check(memcmp(txid, canary, sizeof txid) == 0,
		    "%s: txid written although dropped", v->comment);
		memcpy(out, canary, sizeof out);
		n = stun_answer(out, pkt, v->len, v4, 4, 41641);
		check(n == 0 && memcmp(out, canary, sizeof out) == 0,
		    "%s: answered (%zu bytes) or reply buffer touched", v->comment, n);
		free(pkt);
	}
	end();
}

static void test_is(const char *dir)
{
	uint8_t txid[12];
	int i, want, count;

	begin("stun_is");
	count = load(dir, "stun_is.hex", vecs);
	for (i = 0; i < count; i++) {
		const struct vec *v = &vecs[i];
		uint8_t *pkt = exact(v->data, v->len);

		want = strncmp(v->comment, "true", 4) == 0;
		check(want || strncmp(v->comment, "false", 5) == 0,
		    "%s: comment starts with neither true nor false", v->comment);
		check(stun_is(pkt, v->len) == want, "%s: got %d", v->comment, !want);
		check((stun_parse_binding_request(pkt, v->len, txid) == 1) == !want,
		    "%s: parse step 1 disagrees with stun_is", v->comment);
		free(pkt);
	}
	{
		uint8_t *empty = exact(NULL, 0);

		check(stun_is(empty, 0) == 0, "the empty datagram is STUN");
		check(stun_parse_binding_request(empty, 0, txid) == 1,
		    "the empty datagram is not dropped at step 1");
		free(empty);
	}
	end();
}

static void test_server_responses(const char *dir)
{
	uint8_t txid[12], addr[16], mapped[16], out[STUN_REPLY_MAX], out4[STUN_REPLY_MAX];
	uint8_t req[STUN_REQUEST_BYTES], rtx[12], raddr[16];
	size_t alen, n, n4, rlen;
	unsigned port;
	uint16_t rport;
	int i, j, count, found;

	begin("server_responses");
	count = load(dir, "stun_responses_server.hex", vecs);
	for (i = 0; i < count; i++) {
		const struct vec *v = &vecs[i];

		if (strstr(v->comment, "dual-stack") != NULL) {
			/* derper's ::ffff:a.b.c.d form: we must send family 01 instead. */
			if (find_txid(v->comment, "txid ", txid) != 0 ||
			    find_addrport(v->comment, "IPv4 client ", addr, &alen, &port) != 0 ||
			    alen != 4) {
				check(0, "%s: cannot parse comment", v->comment);
				continue;
			}
			memset(mapped, 0, 10);
			mapped[10] = mapped[11] = 0xff;
			memcpy(mapped + 12, addr, 4);
			n = stun_build_response(out, txid, mapped, 16, (uint16_t)port);
			n4 = stun_build_response(out4, txid, addr, 4, (uint16_t)port);
			check(n == 32 && n4 == 32 && memcmp(out, out4, 32) == 0 && out[25] == 1,
			    "%s: IPv4-mapped source not answered in the IPv4 form: %s",
			    v->comment, hex(out, n));
			check(n != v->len || memcmp(out, v->data, n) != 0,
			    "%s: sent derper's dual-stack form", v->comment);
			found = 0;	/* the family-01 entry for the same client, if any */
			for (j = 0; j < count; j++)
				if (vecs[j].len == 32 && memcmp(vecs[j].data + 8, txid, 12) == 0 &&
				    memcmp(vecs[j].data, out, 32) == 0)
					found = 1;
			check(found, "%s: our IPv4 form %s is not among the vectors",
			    v->comment, hex(out, n));
			stun_build_request(req, txid);
			n = stun_answer(out, req, sizeof req, mapped, 16, (uint16_t)port);
			check(n == 32 && memcmp(out, out4, 32) == 0,
			    "%s: stun_answer from ::ffff:a.b.c.d differs", v->comment);
			/* A client still understands derper's form (it unmaps). */
			check(stun_parse_response(v->data, v->len, rtx, raddr, &rlen, &rport) == 0 &&
			    memcmp(rtx, txid, 12) == 0 && rlen == 4 &&
			    memcmp(raddr, addr, 4) == 0 && rport == port,
			    "%s: response parser does not unmap it", v->comment);
			continue;
		}
		if (find_txid(v->comment, "txid ", txid) != 0 ||
		    find_addrport(v->comment, "source ", addr, &alen, &port) != 0) {
			check(0, "%s: cannot parse comment", v->comment);
			continue;
		}
		/* "(IPv4, 32 bytes)": the family and size the comment says. */
		{
			const char *p = strstr(v->comment, "(IPv");
			const char *e;
			unsigned bytes;

			check(p != NULL && strncmp(p, alen == 4 ? "(IPv4, " :
			    "(IPv6, ", 7) == 0 &&
			    dec_at(p + 7, MAX_DATAGRAM, &bytes, &e) == 0 &&
			    strcmp(e, " bytes)") == 0 && bytes == v->len,
			    "%s: the comment's family and size disagree with "
			    "the vector", v->comment);
		}
		n = expect_response(out, txid, addr, alen, port);
		check(n == v->len && memcmp(out, v->data, n) == 0,
		    "%s: stun.md's table gives %s", v->comment, hex(out, n));
		n = stun_build_response(out, txid, addr, alen, (uint16_t)port);
		check(n == v->len && memcmp(out, v->data, n) == 0,
		    "%s: built %s", v->comment, hex(out, n));
		stun_build_request(req, txid);
		n = stun_answer(out, req, sizeof req, addr, alen, (uint16_t)port);
		check(n == v->len && memcmp(out, v->data, n) == 0,
		    "%s: stun_answer gave %s", v->comment, hex(out, n));
	}
	{
		static const size_t bad[] = { 0, 1, 3, 5, 15, 17 };
		size_t k;

		memset(addr, 1, sizeof addr);
		for (k = 0; k < sizeof bad / sizeof bad[0]; k++)
			check(stun_build_response(out, txid, addr, bad[k], 1) == 0,
			    "addrlen %zu accepted", bad[k]);
	}
	end();
}

static void test_parse_vectors(const char *dir)
{
	uint8_t txid[12], addr[16], rtx[12], raddr[16];
	size_t alen, rlen;
	unsigned port;
	uint16_t rport;
	char a[64], buf[128];
	const char *p, *e, *tail;
	int i, count, rc;

	begin("response_parse");
	count = load(dir, "stun_responses_parse.hex", vecs);
	for (i = 0; i < count; i++) {
		const struct vec *v = &vecs[i];
		uint8_t *pkt;

		/* "addr=A port=P" (the end of the comment) -> "A:P" for
		 * find_addrport */
		p = strstr(v->comment, "addr=");
		e = p == NULL ? NULL : strstr(p, " port=");
		if (find_txid(v->comment, "txid=", txid) != 0 || e == NULL ||
		    (size_t)(e - p - 5) >= sizeof a ||
		    dec_at(e + 6, 65535, &port, &tail) != 0 || *tail != '\0') {
			check(0, "%s: cannot parse comment", v->comment);
			continue;
		}
		memcpy(a, p + 5, (size_t)(e - p - 5));
		a[e - p - 5] = '\0';
		if (strchr(a, ':') != NULL)
			snprintf(buf, sizeof buf, "[%s]:%u", a, port);
		else
			snprintf(buf, sizeof buf, "%s:%u", a, port);
		if (find_addrport(buf, "", addr, &alen, &port) != 0) {
			check(0, "%s: cannot parse address", v->comment);
			continue;
		}
		pkt = exact(v->data, v->len);
		rc = stun_parse_response(pkt, v->len, rtx, raddr, &rlen, &rport);
		check(rc == 0, "%s: rejected", v->comment);
		if (rc == 0) {
			check(memcmp(rtx, txid, 12) == 0, "%s: txid %s", v->comment, hex(rtx, 12));
			check(rlen == alen && memcmp(raddr, addr, alen) == 0,
			    "%s: addr %s", v->comment, hex(raddr, rlen));
			check(rport == port, "%s: port %u", v->comment, (unsigned)rport);
		}
		free(pkt);
	}
	end();
}

/* Responses built here: header + attributes, header length = attribute bytes. */
static size_t mkresp(uint8_t *out, unsigned type, const uint8_t *attrs, size_t alen)
{
	static const uint8_t hdr[20] = { 0, 0, 0, 0, 0x21, 0x12, 0xa4, 0x42,
	    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };

	memcpy(out, hdr, 20);
	out[0] = (uint8_t)(type >> 8);
	out[1] = (uint8_t)type;
	out[2] = (uint8_t)(alen >> 8);
	out[3] = (uint8_t)alen;
	memcpy(out + 20, attrs, alen);
	return 20 + alen;
}

static void test_parse_negative(void)
{
	/* MAPPED-ADDRESS 1.1.1.1:1, then XOR-MAPPED-ADDRESS 2.2.2.2:2 */
	static const uint8_t both[] = { 0x00, 0x01, 0, 8, 0, 1, 0, 1, 1, 1, 1, 1,
	    0x00, 0x20, 0, 8, 0, 1, 0x21, 0x10, 2 ^ 0x21, 2 ^ 0x12, 2 ^ 0xa4, 2 ^ 0x42 };
	/* only the pre-RFC 5389 alias 0x8020 of XOR-MAPPED-ADDRESS: 2.2.2.2:2 */
	static const uint8_t alias_only[] = { 0x80, 0x20, 0, 8, 0, 1, 0x21, 0x10,
	    2 ^ 0x21, 2 ^ 0x12, 2 ^ 0xa4, 2 ^ 0x42 };
	static const uint8_t mapped_only[] = { 0x00, 0x01, 0, 8, 0, 1, 0, 1, 1, 1, 1, 1 };
	static const uint8_t family3[] = { 0x00, 0x20, 0, 8, 0, 3, 0, 1, 1, 1, 1, 1 };
	static const uint8_t short6[] = { 0x00, 0x20, 0, 8, 0, 2, 0, 1, 1, 1, 1, 1 };
	static const uint8_t short_val[] = { 0x00, 0x20, 0, 2, 0, 1, 0, 0 };
	static const uint8_t bad_mapped[] = { 0x00, 0x01, 0, 8, 0, 9, 0, 1, 1, 1, 1, 1,
	    0x00, 0x20, 0, 8, 0, 1, 0x21, 0x10, 2 ^ 0x21, 2 ^ 0x12, 2 ^ 0xa4, 2 ^ 0x42 };
	static const uint8_t software[] = { 0x80, 0x22, 0, 3, 'a', 'b', 'c', 0 };
	static const uint8_t overrun[] = { 0x00, 0x20, 0, 12, 0, 1, 0, 1, 1, 1, 1, 1 };
	uint8_t pkt[128], rtx[12], raddr[16];
	size_t n, rlen;
	uint16_t rport;
	int rc;

	begin("response_parse_cases");
	n = mkresp(pkt, 0x0101, both, sizeof both);
	rc = stun_parse_response(pkt, n, rtx, raddr, &rlen, &rport);
	check(rc == 0 && rlen == 4 && raddr[0] == 2 && raddr[3] == 2 && rport == 2,
	    "XOR-MAPPED-ADDRESS does not win over MAPPED-ADDRESS");
	n = mkresp(pkt, 0x0101, alias_only, sizeof alias_only);
	rc = stun_parse_response(pkt, n, rtx, raddr, &rlen, &rport);
	check(rc == 0 && rlen == 4 && raddr[0] == 2 && raddr[3] == 2 && rport == 2,
	    "XOR-MAPPED-ADDRESS alias 0x8020 not read");
	n = mkresp(pkt, 0x0101, mapped_only, sizeof mapped_only);
	rc = stun_parse_response(pkt, n, rtx, raddr, &rlen, &rport);
	check(rc == 0 && rlen == 4 && raddr[0] == 1 && rport == 1,
	    "MAPPED-ADDRESS fallback not used");
	n = mkresp(pkt, 0x0111, mapped_only, sizeof mapped_only);
	check(stun_parse_response(pkt, n, rtx, raddr, &rlen, &rport) == -1,
	    "binding error response (0x0111) accepted");
	n = mkresp(pkt, 0x0001, mapped_only, sizeof mapped_only);
	check(stun_parse_response(pkt, n, rtx, raddr, &rlen, &rport) == -1,
	    "binding request accepted as a response");
	n = mkresp(pkt, 0x0101, family3, sizeof family3);
	check(stun_parse_response(pkt, n, rtx, raddr, &rlen, &rport) == -1,
	    "family 03 accepted");
	n = mkresp(pkt, 0x0101, short6, sizeof short6);
	check(stun_parse_response(pkt, n, rtx, raddr, &rlen, &rport) == -1,
	    "family 02 with a 4-byte address accepted");
	n = mkresp(pkt, 0x0101, short_val, sizeof short_val);
	check(stun_parse_response(pkt, n, rtx, raddr, &rlen, &rport) == -1,
	    "2-byte XOR-MAPPED-ADDRESS accepted");
	n = mkresp(pkt, 0x0101, bad_mapped, sizeof bad_mapped);
	check(stun_parse_response(pkt, n, rtx, raddr, &rlen, &rport) == -1,
	    "a bad MAPPED-ADDRESS does not fail the response");
	n = mkresp(pkt, 0x0101, software, sizeof software);
	check(stun_parse_response(pkt, n, rtx, raddr, &rlen, &rport) == -1,
	    "response without an address accepted");
	n = mkresp(pkt, 0x0101, overrun, sizeof overrun);
	check(stun_parse_response(pkt, n, rtx, raddr, &rlen, &rport) == -1,
	    "attribute running past the header length accepted");
	n = mkresp(pkt, 0x0101, mapped_only, sizeof mapped_only);
	pkt[3] += 4;	/* header length beyond the datagram */
	check(stun_parse_response(pkt, n, rtx, raddr, &rlen, &rport) == -1,
	    "header length beyond the datagram accepted");
	pkt[3] -= 4;
	memcpy(pkt + n, "\x01\x02\x03", 3);	/* trailing bytes beyond the header length */
	check(stun_parse_response(pkt, n + 3, rtx, raddr, &rlen, &rport) == 0,
	    "trailing bytes beyond the header length not trimmed");
	end();
}

/* Fixed-seed xorshift32 (Marsaglia 2003): deterministic on every platform. */
static uint32_t rng_state = 2463534242u;

static uint32_t rnd(void)
{
	uint32_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return rng_state = x;
}

static void test_roundtrip(const char *dir)
{
	static const struct { const char *name; const char *addr; int v6; size_t alen; } src[] = {
		{ "IPv4", "203.0.113.7", 0, 4 },
		{ "IPv4-mapped", "::ffff:198.51.100.9", 1, 4 },
		{ "IPv6", "2001:db8:1:2:3:4:5:6", 1, 16 },
	};
	static const uint16_t ports[] = { 0, 1, 3478, 41641, 65535 };
	uint8_t txid[12], addr[16], req[STUN_REQUEST_BYTES], rtx[12], raddr[16];
	uint8_t out[STUN_REPLY_MAX], buf[STUN_REQUEST_BYTES + 3];
	size_t s, p, n, rlen, want_alen;
	uint16_t rport;
	int i, count;

	begin("roundtrip");
	/* The builder reproduces the first two valid vectors byte for byte. */
	count = load(dir, "stun_binding_requests_valid.hex", vecs);
	for (i = 0; i < count && i < 2; i++) {
		stun_build_request(req, vecs[i].data + 8);
		check(vecs[i].len == sizeof req && memcmp(req, vecs[i].data, sizeof req) == 0,
		    "%s: stun_build_request gave %s", vecs[i].comment, hex(req, sizeof req));
	}
	for (s = 0; s < sizeof src / sizeof src[0]; s++) {
		if (inet_pton(src[s].v6 ? AF_INET6 : AF_INET, src[s].addr, addr) != 1) {
			check(0, "%s: inet_pton", src[s].name);
			continue;
		}
		want_alen = src[s].alen;
		for (p = 0; p < sizeof ports / sizeof ports[0]; p++) {
			for (i = 0; i < 12; i++)
				txid[i] = (uint8_t)rnd();
			stun_build_request(req, txid);
			/* at an odd address: nothing may depend on alignment */
			memcpy(buf + 1, req, sizeof req);
			n = stun_answer(out, buf + 1, sizeof req, addr, src[s].v6 ? 16 : 4,
			    ports[p]);
			check(n == 28 + want_alen && out[25] == (want_alen == 4 ? 1 : 2),
			    "%s port %u: reply of %zu bytes %s", src[s].name,
			    (unsigned)ports[p], n, hex(out, n));
			check(stun_parse_response(out, n, rtx, raddr, &rlen, &rport) == 0 &&
			    memcmp(rtx, txid, 12) == 0 && rlen == want_alen &&
			    memcmp(raddr, src[s].v6 ? addr + 16 - want_alen : addr, rlen) == 0 &&
			    rport == ports[p],
			    "%s port %u: reply %s does not parse back", src[s].name,
			    (unsigned)ports[p], hex(out, n));
		}
	}
	end();
}

static void test_garbage(void)
{
	static const uint8_t v4[4] = { 10, 0, 0, 1 };
	static const uint16_t types[] = { 0x8022, 0x8028, 0x0020, 0x0001, 0x8020, 0x0000 };
	uint8_t data[GARBAGE_MAX_LEN + 16], out[STUN_REPLY_MAX], txid[12], raddr[16];
	uint8_t orig[STUN_REQUEST_BYTES];
	unsigned long bad_rc = 0, bad_answer = 0, bad_accept = 0, bad_resp = 0;
	unsigned long mut_badcrc = 0, mut_badcrc_total = 0, mut_model = 0, mut_model_total = 0;
	unsigned long mut_len = 0, mut_len_total = 0, accepted = 0, parsed = 0;
	unsigned long first_fail = 0;
	size_t len, i, k, rlen, n;
	uint16_t rport;
	uint32_t kind;
	int rc, prc;

	begin("garbage");
	for (i = 0; i < GARBAGE_ROUNDS; i++) {
		uint8_t *pkt;

		len = rnd() % (GARBAGE_MAX_LEN + 1);
		for (k = 0; k < len; k++)
			data[k] = (uint8_t)rnd();
		kind = rnd() % 4;
		if (kind >= 1 && len >= 20) {
			/* a plausible header, so the attribute walk runs */
			data[0] = kind == 3 ? 0x01 : 0x00;	/* 0101: a response */
			data[1] = 0x01;
			memcpy(data + 4, "\x21\x12\xa4\x42", 4);
			if (kind == 3) {
				data[2] = (uint8_t)((len - 20) >> 8);
				data[3] = (uint8_t)(len - 20);
			}
		}
		if (kind >= 2 && len >= 20) {
			/* a chain of short attributes of interesting types */
			k = 20;
			while (k + 4 <= len) {
				size_t vl = rnd() % 24;
				unsigned t = types[rnd() % 6];
				data[k] = (uint8_t)(t >> 8);
				data[k + 1] = (uint8_t)t;
				data[k + 2] = 0;
				data[k + 3] = (uint8_t)vl;
				if (t == 0x8022 && vl == 8 && k + 12 <= len)
					memcpy(data + k + 4, "tailnode", 8);
				if ((t == 0x0020 || t == 0x0001) && k + 6 <= len)
					data[k + 5] = (uint8_t)(1 + rnd() % 2);
				k += 4 + ((vl + 3) & ~(size_t)3);
			}
		}
		pkt = exact(data, len);
		rc = stun_parse_binding_request(pkt, len, txid);
		if (rc < 0 || rc > 6 || (rc == 1) != !stun_is(pkt, len))
			bad_rc++, first_fail = first_fail ? first_fail : i + 1;
		n = stun_answer(out, pkt, len, v4, 4, 7);
		if ((rc == 0 && n != 32) || (rc != 0 && n != 0))
			bad_answer++, first_fail = first_fail ? first_fail : i + 1;
		if (rc == 0) {
			/* independent check of what acceptance implies */
			accepted++;
			if (pkt[0] != 0 || pkt[1] != 1 || len < 28 ||
			    memcmp(pkt + len - 8, "\x80\x28\x00\x04", 4) != 0 ||
			    ((uint32_t)pkt[len - 4] << 24 | (uint32_t)pkt[len - 3] << 16 |
			    (uint32_t)pkt[len - 2] << 8 | pkt[len - 1]) !=
			    (stun_crc32(pkt, len - 8) ^ FP_XOR))
				bad_accept++;
		}
		prc = stun_parse_response(pkt, len, txid, raddr, &rlen, &rport);
		if (prc == 0)
			parsed++;
		if (prc != 0 && prc != -1)
			bad_resp++;
		if (prc == 0 && (rlen != 4 && rlen != 16))
			bad_resp++;
		if (prc == 0 && rlen == 16 && memcmp(raddr, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0)
			bad_resp++;
		free(pkt);
	}
	check(bad_rc == 0, "%lu datagrams gave a step outside 0..6 or disagreed with "
	    "stun_is (first at round %lu)", bad_rc, first_fail);
	check(bad_answer == 0, "%lu datagrams: stun_answer disagrees with the parser", bad_answer);
	check(bad_accept == 0, "%lu of %lu accepted datagrams lack a valid final FINGERPRINT",
	    bad_accept, accepted);
	check(bad_resp == 0, "%lu of %lu parsed responses are inconsistent", bad_resp, parsed);

	/* Mutations of a valid request: 1..3 bit flips or byte replacements, maybe a
	 * changed length, maybe the FINGERPRINT recomputed afterwards. */
	for (i = 0; i < MUTATION_ROUNDS; i++) {
		uint8_t *pkt;
		uint32_t nm = 1 + rnd() % 3, m;

		for (k = 0; k < 12; k++)
			txid[k] = (uint8_t)rnd();
		stun_build_request(orig, txid);
		memcpy(data, orig, sizeof orig);
		len = sizeof orig;
		for (m = 0; m < nm; m++) {
			k = rnd() % len;
			switch (rnd() % 8) {
			case 0:	/* truncate */
				len = rnd() % len;
				break;
			case 1:	/* append 1..8 random bytes */
				n = 1 + rnd() % 8;
				while (n-- > 0 && len < sizeof data)
					data[len++] = (uint8_t)rnd();
				break;
			case 2: case 3: case 4:
				data[k] = (uint8_t)rnd();
				break;
			default:
				data[k] ^= (uint8_t)(1u << (rnd() % 8));
				break;
			}
			if (len == 0)
				break;
		}
		if (len == sizeof orig && rnd() % 2) {
			uint32_t fp = stun_crc32(data, 32) ^ FP_XOR;
			data[36] = (uint8_t)(fp >> 24);
			data[37] = (uint8_t)(fp >> 16);
			data[38] = (uint8_t)(fp >> 8);
			data[39] = (uint8_t)fp;
		}
		pkt = exact(data, len);
		rc = stun_parse_binding_request(pkt, len, txid);
		if (len != sizeof orig) {
			/* truncated or extended: the last 8 bytes are no longer a
			 * FINGERPRINT over the rest */
			mut_len_total++;
			if (rc == 0)
				mut_len++;
		} else if (((uint32_t)pkt[36] << 24 | (uint32_t)pkt[37] << 16 |
		    (uint32_t)pkt[38] << 8 | pkt[39]) != (stun_crc32(pkt, 32) ^ FP_XOR)) {
			mut_badcrc_total++;
			if (rc == 0)
				mut_badcrc++;
		} else {
			/* Good CRC: accepted iff type, cookie, SOFTWARE and the FINGERPRINT
			 * header survived; the length field and txid are free. */
			int want = memcmp(pkt, orig, 2) == 0 && memcmp(pkt + 4, orig + 4, 4) == 0 &&
			    memcmp(pkt + 20, orig + 20, 16) == 0;
			mut_model_total++;
			if ((rc == 0) != want || (rc == 0 && memcmp(txid, pkt + 8, 12) != 0))
				mut_model++;
		}
		free(pkt);
	}
	check(mut_badcrc == 0 && mut_badcrc_total > 0,
	    "%lu of %lu mutated requests with a bad CRC answered", mut_badcrc, mut_badcrc_total);
	check(mut_len == 0 && mut_len_total > 0,
	    "%lu of %lu truncated/extended requests answered", mut_len, mut_len_total);
	check(mut_model == 0 && mut_model_total > 0,
	    "%lu of %lu re-fingerprinted mutations decided wrongly", mut_model, mut_model_total);
	end();
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
		return 2;
	}
	test_crc32();
	test_valid(argv[1]);
	test_invalid(argv[1]);
	test_is(argv[1]);
	test_server_responses(argv[1]);
	test_parse_vectors(argv[1]);
	test_parse_negative();
	test_roundtrip(argv[1]);
	test_garbage();
	printf("%d passed, %d failed\n", n_passed, n_failed);
	return n_failed == 0 ? 0 : 1;
}
