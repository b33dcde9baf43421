/*
 * test_nacl.c -- known-answer and property tests for nacl.c.
 *
 * Usage: test_nacl test/data/derp/nacl_box_vectors.txt
 *
 * The vector file has "[section]" headers and "name = value" lines; values are
 * hex except names ending in "_ascii"; text after '#' on a value line is a
 * comment.  Every vector in the file is checked, plus RFC 8439 appendix A.3
 * Poly1305 edge cases (they drive the final reduction through h >= p), a
 * round trip at many lengths, and a bit flip of every bit of one box.
 *
 * Output: one line per check, "ok <name>" or "FAIL <name>: <detail>", then
 * "N passed, N failed".  Exit status 0 iff nothing failed.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../nacl.h"

#define MAX_ENTRIES 128
#define MAX_NAME 64
#define MAX_VALUE 2048		/* longest line in the file is ~420 chars */
#define MAX_BYTES (MAX_VALUE / 2)

struct entry {
	char sec[MAX_NAME], key[MAX_NAME], val[MAX_VALUE];
};

static struct entry entries[MAX_ENTRIES];
static int nentries, npass, nfail;

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

static void trim(char *s)
{
	size_t n = strlen(s), i = 0;

	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	while (isspace((unsigned char)s[i]))
		i++;
	memmove(s, s + i, n - i + 1);
}

static int load(const char *path)
{
	char line[MAX_VALUE + MAX_NAME + 8], sec[MAX_NAME] = "", *eq, *hash;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		perror(path);
		return -1;
	}
	while (fgets(line, sizeof line, f) != NULL) {
		trim(line);
		if (line[0] == '\0' || line[0] == '#')
			continue;
		if (line[0] == '[') {
			char *end = strchr(line, ']');
			if (end == NULL || end - line - 1 >= MAX_NAME)
				goto bad;
			*end = '\0';
			strcpy(sec, line + 1);
			continue;
		}
		eq = strchr(line, '=');
		if (eq == NULL || nentries == MAX_ENTRIES)
			goto bad;
		*eq = '\0';
		if ((hash = strchr(eq + 1, '#')) != NULL)
			*hash = '\0';
		trim(line);
		trim(eq + 1);
		if (strlen(line) >= MAX_NAME || strlen(eq + 1) >= MAX_VALUE)
			goto bad;
		strcpy(entries[nentries].sec, sec);
		strcpy(entries[nentries].key, line);
		strcpy(entries[nentries].val, eq + 1);
		nentries++;
	}
	fclose(f);
	return 0;
bad:
	fprintf(stderr, "%s: cannot parse line: %s\n", path, line);
	fclose(f);
	return -1;
}

static const char *get(const char *sec, const char *key)
{
	int i;

	for (i = 0; i < nentries; i++)
		if (strcmp(entries[i].sec, sec) == 0 && strcmp(entries[i].key, key) == 0)
			return entries[i].val;
	return NULL;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* Decode [sec] key into out; returns the byte count or exits on a missing
 * or malformed value (the file itself is then broken: count it as a failure). */
static size_t hex(const char *sec, const char *key, uint8_t *out, size_t max)
{
	const char *v = get(sec, key);
	size_t n, i;

	if (v == NULL || (n = strlen(v)) % 2 != 0 || n / 2 > max) {
		printf("FAIL data [%s] %s: missing or bad length\n", sec, key);
		printf("%d passed, %d failed\n", npass, nfail + 1);
		exit(1);
	}
	for (i = 0; i < n / 2; i++) {
		int hi = hexval(v[2 * i]), lo = hexval(v[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			printf("FAIL data [%s] %s: not hex\n", sec, key);
			printf("%d passed, %d failed\n", npass, nfail + 1);
			exit(1);
		}
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return n / 2;
}

static void hex32(const char *sec, const char *key, uint8_t out[32])
{
	if (hex(sec, key, out, 32) != 32) {
		printf("FAIL data [%s] %s: want 32 bytes\n", sec, key);
		printf("%d passed, %d failed\n", npass, nfail + 1);
		exit(1);
	}
}

static void hex_decode(const char *v, uint8_t *out)
{
	size_t i;

	for (i = 0; v[2 * i] != '\0'; i++)
		out[i] = (uint8_t)(hexval(v[2 * i]) << 4 | hexval(v[2 * i + 1]));
}

/* Compare got with want; name the first differing byte in the detail. */
static void check_bytes(const char *name, const uint8_t *got, const uint8_t *want,
    size_t n)
{
	char detail[64];
	size_t i;

	for (i = 0; i < n && got[i] == want[i]; i++)
		;
	snprintf(detail, sizeof detail, "byte %zu of %zu differs", i, n);
	check(i == n, name, detail);
}

/* Checks of a return value are named "<name> returns <want>". */
static void check_rc(const char *name, int rc, int want)
{
	char detail[64], full[160];

	snprintf(full, sizeof full, "%s returns %d", name, want);
	snprintf(detail, sizeof detail, "returned %d", rc);
	check(rc == want, full, detail);
}

/* ---- the file's sections ------------------------------------------------ */

/* Public keys from private keys, shared secret both ways, beforenm both ways. */
static void test_keys(const char *sec, const char *a, const char *b)
{
	uint8_t ask[32], apk[32], bsk[32], bpk[32], s[32], k[32], want[32], out[32];
	char name[128], ka[64], kb[64];

	snprintf(ka, sizeof ka, "%s_private", a);
	hex32(sec, ka, ask);
	snprintf(ka, sizeof ka, "%s_public", a);
	hex32(sec, ka, apk);
	snprintf(kb, sizeof kb, "%s_private", b);
	hex32(sec, kb, bsk);
	snprintf(kb, sizeof kb, "%s_public", b);
	hex32(sec, kb, bpk);
	hex32(sec, "x25519_shared", s);
	hex32(sec, "box_key_beforenm", k);

	nacl_x25519_base(out, ask);
	snprintf(name, sizeof name, "%s/x25519_base(%s_private)", sec, a);
	check_bytes(name, out, apk, 32);
	nacl_x25519_base(out, bsk);
	snprintf(name, sizeof name, "%s/x25519_base(%s_private)", sec, b);
	check_bytes(name, out, bpk, 32);

	snprintf(name, sizeof name, "%s/x25519(%s_private, %s_public)", sec, a, b);
	check_rc(name, nacl_x25519(out, ask, bpk), 0);
	check_bytes(name, out, s, 32);
	snprintf(name, sizeof name, "%s/x25519(%s_private, %s_public)", sec, b, a);
	check_rc(name, nacl_x25519(out, bsk, apk), 0);
	check_bytes(name, out, s, 32);

	snprintf(name, sizeof name, "%s/beforenm(%s_public, %s_private)", sec, b, a);
	check_rc(name, nacl_box_beforenm(out, bpk, ask), 0);
	check_bytes(name, out, k, 32);
	snprintf(name, sizeof name, "%s/beforenm(%s_public, %s_private)", sec, a, b);
	check_rc(name, nacl_box_beforenm(out, apk, bsk), 0);
	check_bytes(name, out, k, 32);

	/* The box key is HSalsa20 of the shared secret with a zero input. */
	memset(want, 0, 16);
	nacl_hsalsa20(out, want, s);
	snprintf(name, sizeof name, "%s/hsalsa20(x25519_shared, 0^16)", sec);
	check_bytes(name, out, k, 32);
}

/*
 * Seal pt under (nonce, sender sk, receiver pk) and compare with the box;
 * open it with (receiver sk, sender pk) and compare with pt; also the
 * afternm forms with the given box key when k != NULL, and in-place open.
 */
static void test_box(const char *sec, const uint8_t *pt, size_t len,
    const uint8_t *box, size_t boxlen, const uint8_t nonce[24],
    const uint8_t spk[32], const uint8_t ssk[32],
    const uint8_t rpk[32], const uint8_t rsk[32], const uint8_t *k)
{
	uint8_t out[MAX_BYTES + 16], buf[MAX_BYTES + 16];
	char name[128];

	snprintf(name, sizeof name, "%s/box length", sec);
	check(boxlen == len + NACL_TAG_BYTES, name, "box is not 16 + plaintext bytes");
	if (boxlen != len + NACL_TAG_BYTES)
		return;

	memset(out, 0xaa, sizeof out);
	snprintf(name, sizeof name, "%s/seal", sec);
	check_rc(name, nacl_box_seal(out, pt, len, nonce, rpk, ssk), 0);
	check_bytes(name, out, box, boxlen);
	snprintf(name, sizeof name, "%s/seal stays within the box", sec);
	check(out[boxlen] == 0xaa, name, "wrote past the end of the box");

	memset(out, 0xaa, sizeof out);
	snprintf(name, sizeof name, "%s/open", sec);
	check_rc(name, nacl_box_open(out, box, boxlen, nonce, spk, rsk), 0);
	check_bytes(name, out, pt, len);
	snprintf(name, sizeof name, "%s/open stays within the message", sec);
	check(out[len] == 0xaa, name, "wrote past the end of the message");

	if (k != NULL) {
		snprintf(name, sizeof name, "%s/seal_afternm", sec);
		nacl_box_seal_afternm(out, pt, len, nonce, k);
		check_bytes(name, out, box, boxlen);
		snprintf(name, sizeof name, "%s/open_afternm", sec);
		memset(out, 0, sizeof out);
		check_rc(name, nacl_box_open_afternm(out, box, boxlen, nonce, k), 0);
		check_bytes(name, out, pt, len);
	}

	/* In place: the message lands over the ciphertext, after the tag. */
	memcpy(buf, box, boxlen);
	snprintf(name, sizeof name, "%s/open in place", sec);
	check_rc(name, nacl_box_open(buf + 16, buf, boxlen, nonce, spk, rsk), 0);
	check_bytes(name, buf + 16, pt, len);
}

/* frame = type || be32(len) || payload */
static void test_frame(const char *sec, uint8_t type, const uint8_t *payload,
    size_t plen)
{
	uint8_t frame[MAX_BYTES], want[MAX_BYTES];
	size_t n = hex(sec, "frame", frame, sizeof frame);
	char name[128];

	want[0] = type;
	want[1] = (uint8_t)(plen >> 24);
	want[2] = (uint8_t)(plen >> 16);
	want[3] = (uint8_t)(plen >> 8);
	want[4] = (uint8_t)plen;
	memcpy(want + 5, payload, plen);
	snprintf(name, sizeof name, "%s/frame length", sec);
	check(n == plen + 5, name, "not 5 + payload");
	snprintf(name, sizeof name, "%s/frame = type, length, payload", sec);
	if (n == plen + 5)
		check_bytes(name, frame, want, n);
}

static void test_derp(void)
{
	uint8_t spk[32], ssk[32], cpk[32], csk[32], k[32], nonce[24], mesh[32];
	uint8_t pt[MAX_BYTES], box[MAX_BYTES], pay[MAX_BYTES], want[MAX_BYTES];
	const char *ascii;
	size_t len, boxlen, plen;

	hex32("derp-client-info", "server_private", ssk);
	hex32("derp-client-info", "server_public", spk);
	hex32("derp-client-info", "client_private", csk);
	hex32("derp-client-info", "client_public", cpk);
	hex32("derp-client-info", "box_key_beforenm", k);
	test_keys("derp-client-info", "client", "server");

	/* ClientInfo: sender client, receiver server. */
	hex("derp-client-info", "nonce", nonce, 24);
	len = hex("derp-client-info", "plaintext", pt, sizeof pt);
	ascii = get("derp-client-info", "plaintext_ascii");
	check(ascii != NULL && strlen(ascii) == len && memcmp(ascii, pt, len) == 0,
	    "derp-client-info/plaintext = plaintext_ascii", "differ");
	boxlen = hex("derp-client-info", "box", box, sizeof box);
	test_box("derp-client-info", pt, len, box, boxlen, nonce, cpk, csk, spk, ssk, k);
	plen = hex("derp-client-info", "frame_payload", pay, sizeof pay);
	memcpy(want, cpk, 32);
	memcpy(want + 32, nonce, 24);
	memcpy(want + 56, box, boxlen);
	check(plen == 56 + boxlen, "derp-client-info/frame_payload length", "differs");
	check_bytes("derp-client-info/frame_payload = client_public, nonce, box",
	    pay, want, 56 + boxlen);
	test_frame("derp-client-info", 0x02, pay, plen);

	/* ServerInfo: sender server, receiver client, same k. */
	hex("derp-server-info", "nonce", nonce, 24);
	len = hex("derp-server-info", "plaintext", pt, sizeof pt);
	ascii = get("derp-server-info", "plaintext_ascii");
	check(ascii != NULL && strlen(ascii) == len && memcmp(ascii, pt, len) == 0,
	    "derp-server-info/plaintext = plaintext_ascii", "differ");
	boxlen = hex("derp-server-info", "box", box, sizeof box);
	test_box("derp-server-info", pt, len, box, boxlen, nonce, spk, ssk, cpk, csk, k);
	plen = hex("derp-server-info", "frame_payload", pay, sizeof pay);
	memcpy(want, nonce, 24);
	memcpy(want + 24, box, boxlen);
	check(plen == 24 + boxlen, "derp-server-info/frame_payload length", "differs");
	check_bytes("derp-server-info/frame_payload = nonce, box", pay, want, 24 + boxlen);
	test_frame("derp-server-info", 0x03, pay, plen);

	/* Mesh ClientInfo: plaintext only in ASCII; it must carry the mesh key. */
	hex("derp-client-info-mesh", "nonce", nonce, 24);
	hex32("derp-client-info-mesh", "mesh_key", mesh);
	ascii = get("derp-client-info-mesh", "plaintext_ascii");
	if (ascii == NULL || strlen(ascii) > sizeof pt) {
		check(0, "derp-client-info-mesh/plaintext_ascii", "missing");
		return;
	}
	len = strlen(ascii);
	memcpy(pt, ascii, len);
	check(strstr(ascii, get("derp-client-info-mesh", "mesh_key")) != NULL,
	    "derp-client-info-mesh/plaintext carries mesh_key", "not found");
	boxlen = hex("derp-client-info-mesh", "box", box, sizeof box);
	test_box("derp-client-info-mesh", pt, len, box, boxlen, nonce, cpk, csk, spk, ssk, k);
	memcpy(pay, cpk, 32);
	memcpy(pay + 32, nonce, 24);
	memcpy(pay + 56, box, boxlen);
	test_frame("derp-client-info-mesh", 0x02, pay, 56 + boxlen);
	(void)mesh;
}

static void test_classic(void)
{
	uint8_t apk[32], ask[32], bpk[32], bsk[32], k[32], nonce[24];
	uint8_t pt[MAX_BYTES], box[MAX_BYTES];
	size_t len, boxlen;

	test_keys("classic-nacl-box", "alice", "bob");
	hex32("classic-nacl-box", "alice_private", ask);
	hex32("classic-nacl-box", "alice_public", apk);
	hex32("classic-nacl-box", "bob_private", bsk);
	hex32("classic-nacl-box", "bob_public", bpk);
	hex32("classic-nacl-box", "box_key_beforenm", k);
	hex("classic-nacl-box", "nonce", nonce, 24);
	len = hex("classic-nacl-box", "plaintext", pt, sizeof pt);
	boxlen = hex("classic-nacl-box", "box", box, sizeof box);
	test_box("classic-nacl-box", pt, len, box, boxlen, nonce, apk, ask, bpk, bsk, k);
}

/* Open must fail and leave the output exactly as it was. */
static void expect_open_fails(const char *name, const uint8_t *box, size_t boxlen,
    const uint8_t nonce[24], const uint8_t pk[32], const uint8_t sk[32])
{
	uint8_t out[MAX_BYTES], before[MAX_BYTES];
	char full[160];
	size_t i;

	for (i = 0; i < sizeof out; i++)
		out[i] = before[i] = (uint8_t)(i * 7 + 1);
	check_rc(name, nacl_box_open(out, box, boxlen, nonce, pk, sk), -1);
	snprintf(full, sizeof full, "%s leaves the output untouched", name);
	check(memcmp(out, before, sizeof out) == 0, full, "output was modified");
}

static void test_negative(void)
{
	uint8_t spk[32], ssk[32], cpk[32], csk[32], wpk[32], k[32], nonce[24];
	uint8_t box[MAX_BYTES], bad[MAX_BYTES], buf[MAX_BYTES], zero[32];
	size_t boxlen, badlen, i, bit;
	int fails = 0, untouched = 1;
	char detail[80];

	hex32("derp-client-info", "server_private", ssk);
	hex32("derp-client-info", "server_public", spk);
	hex32("derp-client-info", "client_private", csk);
	hex32("derp-client-info", "client_public", cpk);
	hex32("derp-client-info", "box_key_beforenm", k);
	hex("derp-client-info", "nonce", nonce, 24);
	boxlen = hex("derp-client-info", "box", box, sizeof box);
	badlen = hex("negative", "box_tampered", bad, sizeof bad);
	hex32("negative", "wrong_sender_public", wpk);

	expect_open_fails("negative/box_tampered", bad, badlen, nonce, cpk, ssk);
	expect_open_fails("negative/wrong_sender_public", box, boxlen, nonce, wpk, ssk);
	expect_open_fails("negative/box shorter than a tag", box, 15, nonce, cpk, ssk);
	expect_open_fails("negative/truncated box", box, boxlen - 1, nonce, cpk, ssk);

	/* In place on a tampered box: the buffer must come back unchanged. */
	memcpy(buf, bad, badlen);
	check_rc("negative/box_tampered in place", nacl_box_open(buf + 16, buf,
	    badlen, nonce, cpk, ssk), -1);
	check(memcmp(buf, bad, badlen) == 0, "negative/box_tampered in place leaves it untouched",
	    "buffer was modified");

	/* Every single-bit flip of the genuine box must be rejected. */
	for (i = 0; i < boxlen; i++) {
		for (bit = 0; bit < 8; bit++) {
			memcpy(bad, box, boxlen);
			bad[i] ^= (uint8_t)(1u << bit);
			memset(buf, 0x5c, sizeof buf);
			if (nacl_box_open_afternm(buf, bad, boxlen, nonce, k) != 0)
				fails++;
			for (size_t j = 0; j < sizeof buf; j++)
				if (buf[j] != 0x5c)
					untouched = 0;
		}
	}
	snprintf(detail, sizeof detail, "%d of %zu flips rejected", fails, boxlen * 8);
	check(fails == (int)(boxlen * 8), "negative/every bit flip of the ClientInfo box",
	    detail);
	check(untouched, "negative/bit flips leave output untouched", "modified");

	/* An all-zero (low-order) public key yields an all-zero secret: -1. */
	memset(zero, 0, sizeof zero);
	check_rc("negative/x25519 with an all-zero public key", nacl_x25519(buf,
	    ssk, zero), -1);
	check_rc("negative/beforenm with an all-zero public key",
	    nacl_box_beforenm(buf, zero, ssk), -1);
	expect_open_fails("negative/open with an all-zero sender key", box, boxlen,
	    nonce, zero, ssk);
	check_rc("negative/seal to an all-zero public key", nacl_box_seal(buf,
	    box, 4, nonce, zero, csk), -1);
	(void)spk;
}

static void test_components(void)
{
	const char *sec = "derp-client-info-components";
	uint8_t s[32], k[32], sub[32], want[64], out[MAX_BYTES], n8[8], nonce[24];
	uint8_t ks[MAX_BYTES], pt[MAX_BYTES], ct[MAX_BYTES], tag[16], box[MAX_BYTES];
	size_t kslen, len, ctlen, i;
	static const uint8_t zero16[16];

	hex32(sec, "x25519_shared", s);
	hex32(sec, "box_key_beforenm", k);
	hex32(sec, "xsalsa20_subkey", sub);
	hex(sec, "salsa20_nonce", n8, 8);
	hex("derp-client-info", "nonce", nonce, 24);
	len = hex("derp-client-info", "plaintext", pt, sizeof pt);

	nacl_hsalsa20(out, zero16, s);
	check_bytes("components/box_key_beforenm = hsalsa20(x25519_shared, 0^16)",
	    out, k, 32);
	nacl_hsalsa20(out, nonce, k);
	check_bytes("components/xsalsa20_subkey = hsalsa20(box_key, nonce[0..16))",
	    out, sub, 32);
	check_bytes("components/salsa20_nonce = nonce[16..24)", n8, nonce + 16, 8);

	kslen = hex(sec, "keystream", ks, sizeof ks);
	check(kslen == 32 + len, "components/keystream length", "not 32 + plaintext");
	nacl_salsa20_xor(out, NULL, kslen, n8, 0, sub);
	check_bytes("components/keystream = salsa20(subkey, salsa20_nonce)", out, ks, kslen);
	memset(out, 0, kslen);
	nacl_salsa20_xor(out, out, kslen, n8, 0, sub);
	check_bytes("components/keystream via in-place xor of zeros", out, ks, kslen);

	hex32(sec, "poly1305_key", want);
	check_bytes("components/poly1305_key = keystream[0..32)", ks, want, 32);
	ctlen = hex(sec, "ciphertext", ct, sizeof ct);
	for (i = 0; i < len; i++)
		out[i] = pt[i] ^ ks[32 + i];
	check(ctlen == len, "components/ciphertext length", "not plaintext length");
	check_bytes("components/ciphertext = plaintext ^ keystream[32..)", out, ct, len);
	hex(sec, "tag", want, 16);
	nacl_poly1305(tag, ct, ctlen, ks);
	check_bytes("components/tag = poly1305(poly1305_key, ciphertext)", tag, want, 16);
	hex(sec, "box", box, sizeof box);
	memcpy(out, tag, 16);
	memcpy(out + 16, ct, ctlen);
	check_bytes("components/box = tag, ciphertext", out, box, 16 + ctlen);
}

static void test_hsalsa_poly(void)
{
	uint8_t key[32], in[16], want[32], out[32], tag[16];
	const char *msg;

	hex32("hsalsa20-classic-nacl", "key", key);
	hex("hsalsa20-classic-nacl", "input", in, 16);
	hex32("hsalsa20-classic-nacl", "output", want);
	nacl_hsalsa20(out, in, key);
	check_bytes("hsalsa20-classic-nacl/output", out, want, 32);
	hex32("hsalsa20-classic-nacl", "key2", key);
	hex("hsalsa20-classic-nacl", "input2", in, 16);
	hex32("hsalsa20-classic-nacl", "output2", want);
	nacl_hsalsa20(out, in, key);
	check_bytes("hsalsa20-classic-nacl/output2", out, want, 32);

	hex32("poly1305-rfc8439-2.5.2", "key", key);
	hex("poly1305-rfc8439-2.5.2", "tag", want, 16);
	msg = get("poly1305-rfc8439-2.5.2", "message_ascii");
	if (msg == NULL) {
		check(0, "poly1305-rfc8439-2.5.2", "no message_ascii");
		return;
	}
	nacl_poly1305(tag, (const uint8_t *)msg, strlen(msg), key);
	check_bytes("poly1305-rfc8439-2.5.2/tag", tag, want, 16);
}

/* ---- built-in vectors and properties ------------------------------------ */

/* RFC 8439 appendix A.3, the edge cases of the reduction (key, msg, tag). */
static const char *const poly_a3[][4] = {
	{ "1", "0000000000000000000000000000000000000000000000000000000000000000",
	  "0000000000000000000000000000000000000000000000000000000000000000"
	  "0000000000000000000000000000000000000000000000000000000000000000",
	  "00000000000000000000000000000000" },
	{ "5", "0200000000000000000000000000000000000000000000000000000000000000",
	  "ffffffffffffffffffffffffffffffff", "03000000000000000000000000000000" },
	{ "6", "02000000000000000000000000000000ffffffffffffffffffffffffffffffff",
	  "02000000000000000000000000000000", "03000000000000000000000000000000" },
	{ "7", "0100000000000000000000000000000000000000000000000000000000000000",
	  "fffffffffffffffffffffffffffffffff0ffffffffffffffffffffffffffffff"
	  "11000000000000000000000000000000", "05000000000000000000000000000000" },
	{ "8", "0100000000000000000000000000000000000000000000000000000000000000",
	  "fffffffffffffffffffffffffffffffffbfefefefefefefefefefefefefefefe"
	  "01010101010101010101010101010101", "00000000000000000000000000000000" },
	{ "9", "0200000000000000000000000000000000000000000000000000000000000000",
	  "fdffffffffffffffffffffffffffffff", "faffffffffffffffffffffffffffffff" },
	{ "10", "0100000000000000040000000000000000000000000000000000000000000000",
	  "e33594d7505e43b900000000000000003394d7505e4379cd0100000000000000"
	  "0000000000000000000000000000000001000000000000000000000000000000",
	  "14000000000000005500000000000000" },
	{ "11", "0100000000000000040000000000000000000000000000000000000000000000",
	  "e33594d7505e43b900000000000000003394d7505e4379cd0100000000000000"
	  "00000000000000000000000000000000", "13000000000000000000000000000000" },
};

static void test_poly_a3(void)
{
	uint8_t key[32], msg[64], want[16], tag[16];
	char name[64];
	size_t i;

	for (i = 0; i < sizeof poly_a3 / sizeof poly_a3[0]; i++) {
		hex_decode(poly_a3[i][1], key);
		hex_decode(poly_a3[i][2], msg);
		hex_decode(poly_a3[i][3], want);
		nacl_poly1305(tag, msg, strlen(poly_a3[i][2]) / 2, key);
		snprintf(name, sizeof name, "poly1305-rfc8439-A.3 #%s", poly_a3[i][0]);
		check_bytes(name, tag, want, 16);
	}
}

static uint32_t rng_state = 0x12345678;

static uint8_t rnd8(void)
{
	/* xorshift32: deterministic filler, not cryptographic */
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return (uint8_t)(rng_state >> 24);
}

static void rnd(uint8_t *p, size_t n)
{
	while (n-- > 0)
		*p++ = rnd8();
}

/*
 * Seal/open round trip at one length, on odd-aligned buffers, compared with
 * the box built the long way (one keystream from counter 0: 32 bytes of
 * Poly1305 key, then the message), which checks the block-0 split.
 */
static int round_trip(size_t len, const uint8_t apk[32], const uint8_t ask[32],
    const uint8_t bpk[32], const uint8_t bsk[32], char *detail, size_t dlen)
{
	static uint8_t msg[1 + 1100], box[1 + 1100 + 16], out[1 + 1100 + 16];
	static uint8_t ref[32 + 1100], reftag[16];
	uint8_t nonce[24], k[32], sub[32];
	uint8_t *m = msg + 1, *b = box + 1, *o = out + 1;	/* misaligned */

	rnd(m, len);
	rnd(nonce, 24);
	if (nacl_box_seal(b, m, len, nonce, bpk, ask) != 0)
		return snprintf(detail, dlen, "seal failed"), 0;
	nacl_box_beforenm(k, bpk, ask);
	nacl_hsalsa20(sub, nonce, k);
	memset(ref, 0, 32);
	memcpy(ref + 32, m, len);
	nacl_salsa20_xor(ref, ref, 32 + len, nonce + 16, 0, sub);
	nacl_poly1305(reftag, ref + 32, len, ref);
	if (memcmp(b, reftag, 16) != 0 || memcmp(b + 16, ref + 32, len) != 0)
		return snprintf(detail, dlen, "box differs from reference"), 0;
	memset(o, 0xee, len + 1);
	if (nacl_box_open(o, b, len + 16, nonce, apk, bsk) != 0)
		return snprintf(detail, dlen, "open failed"), 0;
	if (memcmp(o, m, len) != 0 || o[len] != 0xee)
		return snprintf(detail, dlen, "open gave wrong plaintext"), 0;
	if (nacl_box_open_afternm(b + 16, b, len + 16, nonce, k) != 0 ||
	    memcmp(b + 16, m, len) != 0)
		return snprintf(detail, dlen, "in-place open failed"), 0;
	if (len > 0) {
		b[16 + len - 1] ^= 0x80;	/* now a forged box of plaintext */
		memcpy(o, m, len);
		if (nacl_box_open_afternm(o, b, len + 16, nonce, k) == 0)
			return snprintf(detail, dlen, "forgery accepted"), 0;
	}
	return 1;
}

static void test_round_trips(void)
{
	static const size_t edge[] = { 0, 1, 15, 16, 17, 31, 32, 33, 47, 48, 49,
	    63, 64, 65, 95, 96, 97, 127, 128, 129, 255, 256, 257, 1000, 1024, 1100 };
	uint8_t ask[32], apk[32], bsk[32], bpk[32];
	char name[64], detail[64];
	size_t len, i;
	int bad = 0;

	rnd(ask, 32);
	rnd(bsk, 32);
	nacl_x25519_base(apk, ask);
	nacl_x25519_base(bpk, bsk);
	for (len = 0; len <= 300; len++) {
		if (!round_trip(len, apk, ask, bpk, bsk, detail, sizeof detail)) {
			snprintf(name, sizeof name, "round trip length %zu", len);
			check(0, name, detail);
			bad++;
		}
	}
	check(bad == 0, "round trip lengths 0..300", "see above");
	for (i = 0; i < sizeof edge / sizeof edge[0]; i++) {
		snprintf(name, sizeof name, "round trip length %zu", edge[i]);
		check(round_trip(edge[i], apk, ask, bpk, bsk, detail, sizeof detail),
		    name, detail);
	}
}

/* Salsa20 keystream cut into pieces at any block boundary equals the whole,
 * including a counter carry from the low to the high 32-bit word. */
static void test_salsa_split(void)
{
	uint8_t key[32], n8[8], whole[256], part[256];
	static const uint64_t base[] = { 0, 0xfffffffeu, 0xffffffffffffffffu - 1 };
	size_t i, cut;
	int ok;

	rnd(key, 32);
	rnd(n8, 8);
	for (i = 0; i < 3; i++) {
		ok = 1;
		nacl_salsa20_xor(whole, NULL, sizeof whole, n8, base[i], key);
		for (cut = 64; cut < sizeof whole; cut += 64) {
			nacl_salsa20_xor(part, NULL, cut, n8, base[i], key);
			nacl_salsa20_xor(part + cut, NULL, sizeof part - cut, n8,
			    base[i] + cut / 64, key);
			ok &= memcmp(part, whole, sizeof whole) == 0;
		}
		check(ok, i == 0 ? "salsa20 split at block boundaries" :
		    i == 1 ? "salsa20 counter carry into high word" :
		    "salsa20 counter wrap at 2^64", "pieces differ from whole");
	}
	check(memcmp(whole, whole + 64, 64) != 0, "salsa20 blocks differ", "repeated");
}

/*
 * Salsa20 against HSalsa20 on the same state: a keystream block is the
 * permuted state plus the input state, and HSalsa20 returns words 0, 5, 10,
 * 15, 6, 7, 8, 9 of the permuted state.  So block word 8 must equal HSalsa20
 * word 6 plus the counter's low half, word 9 word 7 plus its high half, and
 * so on.  This pins the 64-bit counter layout without a separate vector.
 */
static void test_salsa_vs_hsalsa(void)
{
	static const uint32_t sigma[4] = { 0x61707865, 0x3320646e, 0x79622d32, 0x6b206574 };
	static const uint64_t ctr[] = { 0, 1, 0xffffffffu, 0x100000000u,
	    0x123456789abcdefu, 0xffffffffffffffffu };
	static const int pos[8] = { 0, 5, 10, 15, 6, 7, 8, 9 };
	uint8_t key[32], in16[16], hs[32], blk[128];
	uint32_t add[16], w, h;
	size_t i, c, j;
	int ok = 1;

	rnd(key, 32);
	rnd(in16, 8);
	for (c = 0; c < sizeof ctr / sizeof ctr[0]; c++) {
		/* two blocks: the second exercises the increment from ctr[c] */
		nacl_salsa20_xor(blk, NULL, 128, in16, ctr[c], key);
		for (j = 0; j < 2; j++) {
			uint64_t n = ctr[c] + j;
			for (i = 0; i < 8; i++)
				in16[8 + i] = (uint8_t)(n >> (8 * i));
			nacl_hsalsa20(hs, in16, key);
			for (i = 0; i < 4; i++) {
				add[i] = sigma[i];
				add[4 + i] = (uint32_t)in16[4 * i] |
				    (uint32_t)in16[4 * i + 1] << 8 |
				    (uint32_t)in16[4 * i + 2] << 16 |
				    (uint32_t)in16[4 * i + 3] << 24;
			}
			for (i = 0; i < 8; i++) {
				const uint8_t *b = blk + 64 * j + 4 * pos[i];
				w = (uint32_t)b[0] | (uint32_t)b[1] << 8 |
				    (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
				h = (uint32_t)hs[4 * i] | (uint32_t)hs[4 * i + 1] << 8 |
				    (uint32_t)hs[4 * i + 2] << 16 | (uint32_t)hs[4 * i + 3] << 24;
				ok &= w == h + add[i];
			}
		}
	}
	check(ok, "salsa20 block = hsalsa20 words + input (64-bit counters)", "differ");
}

static void test_equal(void)
{
	uint8_t a[40], b[40];
	size_t i;
	int ok = 1;

	rnd(a, sizeof a);
	memcpy(b, a, sizeof b);
	ok &= nacl_equal(a, b, sizeof a) == 1 && nacl_equal(a, b, 0) == 1;
	for (i = 0; i < sizeof a * 8; i++) {
		b[i / 8] ^= (uint8_t)(1u << (i % 8));
		ok &= nacl_equal(a, b, sizeof a) == 0;
		b[i / 8] ^= (uint8_t)(1u << (i % 8));
	}
	check(ok, "nacl_equal", "wrong answer");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s nacl_box_vectors.txt\n", argv[0]);
		return 2;
	}
	if (load(argv[1]) != 0) {
		printf("FAIL load %s: cannot read the vector file\n", argv[1]);
		printf("0 passed, 1 failed\n");
		return 1;
	}
	test_classic();
	test_derp();
	test_negative();
	test_components();
	test_hsalsa_poly();
	test_poly_a3();
	test_salsa_split();
	test_salsa_vs_hsalsa();
	test_equal();
	test_round_trips();
	printf("%d passed, %d failed\n", npass, nfail);
	return nfail == 0 ? 0 : 1;
}
