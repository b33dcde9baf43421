/*
 * acme.c -- an ACME (RFC 8555) client: one certificate over HTTP-01 (interface
 * and contract: acme.h).
 *
 * It runs in a short-lived child process the relay forks, so unlike derp.c it
 * blocks and allocates: every connect, read and write waits in poll(2) for at
 * most io_timeout_ms, the exchange as a whole ends at total_timeout_ms, and every
 * response is read into fixed caps (16 KiB of head, 256 KiB of body).  The CA is
 * whoever answers at directory_url: its responses are parsed as hostile input
 * (bounded, iterative, no recursion; fuzz target test/fuzz/fuzz_acme.c).
 * Sections, in the order a run uses them:
 *
 *   1. Helpers        limits, errors and log lines, deadlines, a string builder
 *   2. base64url, JSON  the encoder and decoder; a bounded, iterative JSON
 *                     tokenizer and the readers of the CA's documents
 *                     (directory, order, authorization, problem)
 *   3. JWS            ES256 requests signed with the account key (RFC 7515
 *                     flattened JSON), the JWK and its thumbprint (RFC 7638),
 *                     HS256 for External Account Binding
 *   4. HTTP/TLS client  connect with timeouts, BearSSL's client with the
 *                     ca_file anchors (tlsclient.c: the client profile, the
 *                     IP SAN check, the PEM reader; verify.c: https URLs),
 *                     one request per connection, the response head parser,
 *                     chunked decoding
 *   5. ACME flow      directory, nonce, account, order, HTTP-01 authorizations,
 *                     finalize with a new key's CSR, certificate, checks, files
 *
 * Specs: RFC 8555 (ACME), RFC 8738 (IP identifiers), RFC 7515 and 7638 (JWS,
 * JWK thumbprint), RFC 9112 (HTTP/1.1 message framing), RFC 2986 (the CSR is
 * cert.c's cert_make_csr).
 */
#define _POSIX_C_SOURCE 200809L

#include "acme.h"
#include "cert.h"
#include "tlsclient.h"
#include "verify.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <bearssl.h>

/* ------------------------------------------------------------------------- */
/* 1. Helpers                                                                 */
/* ------------------------------------------------------------------------- */

/* Defaults of struct acme_config's timeouts. */
#define ACME_IO_TIMEOUT_MS	30000
#define ACME_TOTAL_TIMEOUT_MS	600000

/* Response caps.  Let's Encrypt's heads are under 1 KiB and its largest body
 * (a chain) about 4 KiB; 16 KiB and 256 KiB leave room for any CA and still stop
 * a hostile one at once. */
#define ACME_HEAD_MAX		16384
#define ACME_BODY_MAX		(256 * 1024)
/* A new leaf may start at most this far ahead of our clock (the relay's
 * CERT_SKEW_S): clocks differ, and CAs backdate by about an hour anyway. */
#define ACME_SKEW_S		3600
/* Request head: the request line holds a path of up to ACME_URL_MAX, the
 * headers (Host, User-Agent, Accept, Content-Type, Content-Length, Connection)
 * under 400 bytes with a 256-byte host (struct vurl's). */
#define ACME_REQ_HEAD_MAX	2048
/* A URL we keep (directory entries, Location, authorizations): Let's Encrypt's
 * are under 100 bytes. */
#define ACME_URL_MAX		1024
/* The identifier: a 253-byte DNS name, or an IPv6 literal (45). */
#define ACME_HOST_MAX		256
/* Replay-Nonce: base64url of 16 to 32 bytes in practice (43 characters at
 * Let's Encrypt); a longer value is ignored as RFC 8555 6.5.1 says of invalid
 * ones, and the next request asks newNonce. */
#define ACME_NONCE_MAX		128
/* HTTP-01 token: 43 characters at Let's Encrypt (RFC 8555 8.3: at least 128
 * bits of entropy, base64url). */
#define ACME_TOKEN_MAX		128
/* Key authorization: token "." 43 characters of thumbprint, NUL. */
#define ACME_KEYAUTH_MAX	(ACME_TOKEN_MAX + 1 + 43 + 1)
/* Authorizations of an order: we ask for one identifier, so one authorization
 * is expected; a few more are accepted. */
#define ACME_AUTHZ_MAX		4
/* Status words ("processing", "deactivated") and the Content-Type we keep
 * (a media type such as "application/pem-certificate-chain", 33). */
#define ACME_WORD_MAX		16
#define ACME_CTYPE_MAX		64
/* A CA problem's type URN (urn:ietf:params:acme:error:externalAccountRequired
 * is 51) and its detail, cut for one log line. */
#define ACME_PTYPE_MAX		128
#define ACME_DETAIL_MAX		256
/* One log line: a URL and an identifier fit, a detail is cut. */
#define ACME_LINE_MAX		(ACME_URL_MAX + 512)
/* Polling: Retry-After is honoured between 1 and 60 s, 1 s when absent; no
 * more than 300 polls per wait (5 minutes at 1 s) before the total timeout. */
#define ACME_RETRY_MIN_S	1
#define ACME_RETRY_MAX_S	60
#define ACME_POLLS_MAX		300
/* JSON: tokens and nesting per document.  A Let's Encrypt directory is about
 * 25 tokens, an authorization about 30. */
#define JSON_TOKENS_MAX		1024
#define JSON_DEPTH_MAX		32
/* Request bodies.  The largest payload is newAccount with EAB: protected
 * header (kid, url: 1.1 KiB) and JWK as base64url, about 1.8 KiB, plus a
 * contact; finalize's CSR (ACME_CSR_MAX) is 1366 characters of base64url.  The
 * protected header holds a kid and a url (2 KiB) and a nonce.  A JWS is both
 * in base64url (4/3) plus its 60 bytes of JSON and 86 of signature. */
#define ACME_PAYLOAD_MAX	4096
#define ACME_PROTECTED_MAX	(2 * ACME_URL_MAX + ACME_NONCE_MAX + 256)
#define ACME_JWS_MAX		(((ACME_PAYLOAD_MAX + ACME_PROTECTED_MAX) / 3 + 2) * 4 + 256)
/* The CSR of a P-256 key: under 600 bytes for a 253-byte name (cert.c). */
#define ACME_CSR_MAX		1024
/* PEM "EC PRIVATE KEY" of P-256: 121 bytes of DER, under 256 of PEM. */
#define ACME_KEY_PEM_MAX	512
/* JWK {"crv":"P-256","kty":"EC","x":"<43>","y":"<43>"}: 127 bytes and a NUL. */
#define ACME_JWK_MAX		160
/* EAB HMAC key: CAs hand out 32 to 64 bytes. */
#define ACME_EAB_KEY_MAX	256

/* A string being built in a fixed buffer, always NUL-terminated.  Errors are
 * sticky: the first append that does not fit sets failed and every later one
 * does nothing; the caller checks failed once. */
struct sbuf {
	char *p;
	size_t cap, len;
	int failed;
};

/* A response: the fields of the head we use, and the body (in the shared body
 * buffer, NUL-terminated after body_len). */
struct http_resp {
	int status;
	long long content_length;	/* -1: none */
	int chunked;
	long retry_after;		/* seconds; -1: none, or an HTTP date */
	char nonce[ACME_NONCE_MAX];	/* "" when absent or invalid */
	char location[ACME_URL_MAX];
	char ctype[ACME_CTYPE_MAX];	/* media type, lower case, no parameters */
	uint8_t *body;
	size_t body_len;
};

/* A parsed JSON document: tokens in document order.  next is the index just
 * past a token's subtree (i + 1 for a scalar), so a container's children are
 * i + 1, t[i + 1].next, ... up to t[i].next; in an object they alternate key,
 * value.  Strings exclude their quotes.  Token 0 is the root, never a member. */
enum { J_OBJ = 1, J_ARR, J_STR, J_PRIM };
struct json_tok {
	uint32_t type, start, end, next;
};
struct json {
	const char *s;
	size_t len, n;
	struct json_tok t[JSON_TOKENS_MAX];
};

/* The CA's documents, as far as we read them. */
struct acme_dir {
	char new_nonce[ACME_URL_MAX], new_account[ACME_URL_MAX];
	char new_order[ACME_URL_MAX];
	int eab_required;		/* meta.externalAccountRequired */
	int profile_ok;			/* meta.profiles has the profile asked for */
};
struct acme_order {
	char status[ACME_WORD_MAX];
	char finalize[ACME_URL_MAX], certificate[ACME_URL_MAX];
	char authz[ACME_AUTHZ_MAX][ACME_URL_MAX];
	size_t nauthz;
	char err_type[ACME_PTYPE_MAX], err_detail[ACME_DETAIL_MAX];
};
struct acme_authz {
	char status[ACME_WORD_MAX];
	int http01;			/* an http-01 challenge was found */
	char chall_status[ACME_WORD_MAX];
	char chall_url[ACME_URL_MAX];
	char token[ACME_TOKEN_MAX];
	char err_type[ACME_PTYPE_MAX], err_detail[ACME_DETAIL_MAX];
};

/* One run of acme_obtain, allocated once: 117 KiB on x86-64, mostly the TLS
 * buffer (33 KiB), the response head and CA leaf buffers (16 KiB each) and
 * the JSON tokens (16 KiB); the 256 KiB body buffer beside it. */
struct acme {
	const struct acme_config *cfg;
	char *err;
	size_t errlen;
	int failed;			/* err holds the first failure */
	const char *step;		/* what we were doing, prefixed to err */
	int64_t deadline_ms;		/* CLOCK_MONOTONIC, end of the exchange */
	int io_ms;
	char ident[ACME_HOST_MAX];	/* the identifier (IPv6 in RFC 5952 form) */

	struct tlsc_anchors anchors;	/* ca_file's */

	br_ec_private_key key;		/* account key (x points to kbuf) */
	unsigned char kbuf[BR_EC_KBUF_PRIV_MAX_SIZE];
	char jwk[ACME_JWK_MAX];
	char thumbprint[44];		/* base64url of SHA-256(jwk), 43 */
	char kid[ACME_URL_MAX];		/* account URL */
	char nonce[ACME_NONCE_MAX];	/* unused nonce, or "" */

	struct acme_dir dir;
	struct acme_order order;
	char order_url[ACME_URL_MAX];
	struct acme_authz authz;
	struct http_resp resp;
	struct json js;

	/* TLS connection (one at a time): cc and xc set up once, reset for
	 * each connection, iobuf set once before the first. */
	int fd;
	int timed_out;			/* the last I/O failure was a timeout */
	br_ssl_client_context cc;
	struct tlsc_x509 xc;
	br_sslio_context io;
	unsigned char iobuf[BR_SSL_BUFSIZE_BIDI];
	uint8_t head[ACME_HEAD_MAX];
	char req[ACME_REQ_HEAD_MAX];
	char payload[ACME_PAYLOAD_MAX];
	char jws[ACME_JWS_MAX];
	uint8_t *body;			/* ACME_BODY_MAX + 1 */
};

/* Zero memory that held secrets; the volatile stores are not optimised away. */
static void
wipe(void *p, size_t n)
{
	volatile unsigned char *v = p;

	while (n-- > 0)
		*v++ = 0;
}

/* Replace control bytes (a CA's detail can hold anything) so one event stays
 * one line. */
static void
one_line(char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

static void
acme_log(struct acme *a, const char *fmt, ...)
{
	char line[ACME_LINE_MAX];
	va_list ap;

	if (a->cfg->log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	one_line(line);
	a->cfg->log(a->cfg->ctx, line);
}

/* Record the first failure as "<step>: <message>" and return -1.  Later
 * failures (the callers on the way up) keep the first, most precise one. */
static int
failf(struct acme *a, const char *fmt, ...)
{
	char msg[ACME_LINE_MAX];
	va_list ap;

	if (a->failed)
		return -1;
	a->failed = 1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	one_line(msg);
	if (a->err != NULL && a->errlen > 0)
		snprintf(a->err, a->errlen, "%s%s%s", a->step != NULL ? a->step :
		    "", a->step != NULL ? ": " : "", msg);
	return -1;
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* How long the next wait may block: io_ms, less if the exchange ends sooner;
 * 0 once it has ended. */
static int
wait_ms(const struct acme *a)
{
	int64_t left = a->deadline_ms - now_ms();

	if (left <= 0)
		return 0;
	return left < a->io_ms ? (int)left : a->io_ms;
}

static void
sb_init(struct sbuf *b, char *p, size_t cap)
{
	b->p = p;
	b->cap = cap;
	b->len = 0;
	b->failed = cap == 0;
	if (cap > 0)
		p[0] = '\0';
}

static void
sb_add(struct sbuf *b, const void *s, size_t n)
{
	if (b->failed)
		return;
	if (n >= b->cap - b->len) {
		b->failed = 1;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

/* s as a JSON string: quoted, with '"', '\\' and control bytes escaped. */
static void
sb_json(struct sbuf *b, const char *s)
{
	char esc[8];

	sb_add(b, "\"", 1);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\') {
			esc[0] = '\\';
			esc[1] = *s;
			sb_add(b, esc, 2);
		} else if ((unsigned char)*s < 0x20) {
			snprintf(esc, sizeof esc, "\\u%04x", (unsigned)*s);
			sb_add(b, esc, 6);
		} else {
			sb_add(b, s, 1);
		}
	}
	sb_add(b, "\"", 1);
}

/* ------------------------------------------------------------------------- */
/* 2. base64url and JSON                                                      */
/* ------------------------------------------------------------------------- */

static const char b64url_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Append data as base64url without padding (RFC 4648 section 5; RFC 7515 2). */
static void
sb_b64u(struct sbuf *b, const void *data, size_t n)
{
	const uint8_t *p = data;
	char q[4];
	uint32_t v;
	size_t i, k;

	for (i = 0; i < n; i += 3) {
		v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		k = n - i >= 3 ? 4 : n - i + 1;	/* 1 byte: 2 chars, 2: 3 */
		q[0] = b64url_chars[v >> 18 & 63];
		q[1] = b64url_chars[v >> 12 & 63];
		q[2] = b64url_chars[v >> 6 & 63];
		q[3] = b64url_chars[v & 63];
		sb_add(b, q, k);
	}
}

static int
b64_value(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-' || c == '+')
		return 62;
	if (c == '_' || c == '/')
		return 63;
	return -1;
}

/* Decode base64url or standard base64, padded or not (the EAB key: Go's
 * RawURLEncoding, and what people paste).  Bits left over in the last
 * character are ignored, as Go's non-strict decoder does.  The byte count,
 * or -1 (bad character, misplaced padding, a lone last character, no room). */
static long
b64_decode(const char *s, size_t n, uint8_t *out, size_t cap)
{
	size_t i, o = 0, pad = 0;
	uint32_t v = 0;
	int bits = 0, c;

	while (n > 0 && s[n - 1] == '=' && pad < 2) {
		n--;
		pad++;
	}
	if (pad > 0 && (n + pad) % 4 != 0)
		return -1;
	if (n % 4 == 1)
		return -1;
	for (i = 0; i < n; i++) {
		if ((c = b64_value((unsigned char)s[i])) < 0)
			return -1;
		v = v << 6 | (uint32_t)c;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == cap)
				return -1;
			out[o++] = (uint8_t)(v >> bits);
		}
	}
	return (long)o;
}

/* Scanners: s[*i] starts the item; on success *i is just past it.  They
 * validate RFC 8259's grammar for strings (escapes, no control bytes; UTF-8 is
 * not checked: we only copy, and log lines are made safe by one_line),
 * numbers and the three literals. */
static int
hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int
json_scan_string(const char *s, size_t len, size_t *i)
{
	size_t k = *i + 1, h;
	unsigned char c;

	while (k < len) {
		c = (unsigned char)s[k];
		if (c == '"') {
			*i = k + 1;
			return 0;
		}
		if (c < 0x20)
			return -1;
		if (c != '\\') {
			k++;
			continue;
		}
		if (k + 1 >= len)
			return -1;
		c = (unsigned char)s[k + 1];
		if (c == 'u') {
			if (len - k < 6)
				return -1;
			for (h = 2; h < 6; h++)
				if (hex_value((unsigned char)s[k + h]) < 0)
					return -1;
			k += 6;
		} else if (c == '"' || c == '\\' || c == '/' || c == 'b' ||
		    c == 'f' || c == 'n' || c == 'r' || c == 't') {
			k += 2;
		} else {
			return -1;
		}
	}
	return -1;
}

static int
is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int
json_scan_prim(const char *s, size_t len, size_t *i)
{
	static const char *const lits[] = { "true", "false", "null" };
	size_t k = *i, n, j;

	for (j = 0; j < 3; j++) {
		n = strlen(lits[j]);
		if (len - k >= n && memcmp(s + k, lits[j], n) == 0) {
			*i = k + n;
			return 0;
		}
	}
	if (s[k] == '-')
		k++;
	if (k < len && s[k] == '0')
		k++;
	else if (k < len && is_digit((unsigned char)s[k]))
		while (k < len && is_digit((unsigned char)s[k]))
			k++;
	else
		return -1;
	if (k < len && s[k] == '.') {
		if (++k >= len || !is_digit((unsigned char)s[k]))
			return -1;
		while (k < len && is_digit((unsigned char)s[k]))
			k++;
	}
	if (k < len && (s[k] == 'e' || s[k] == 'E')) {
		if (++k < len && (s[k] == '+' || s[k] == '-'))
			k++;
		if (k >= len || !is_digit((unsigned char)s[k]))
			return -1;
		while (k < len && is_digit((unsigned char)s[k]))
			k++;
	}
	*i = k;
	return 0;
}

/*
 * Tokenize one JSON document (RFC 8259), iteratively: a fixed stack of open
 * containers (JSON_DEPTH_MAX), a fixed token array (JSON_TOKENS_MAX).  States:
 *   VALUE      a value must come (start, after ':', after ',' in an array)
 *   KEY        a member name must come (after ',' in an object)
 *   COLON      after a member name
 *   NEXT       after a value inside a container: ',' or its closing bracket
 *   DONE       after the top-level value: only whitespace may follow
 * VALUE and KEY also take the closing bracket right after '[' or '{'
 * (empty_ok).  0, or -1 for anything malformed, too deep or too long.
 */
static int
json_parse(struct json *j, const char *s, size_t len)
{
	enum { JS_VALUE, JS_KEY, JS_COLON, JS_NEXT, JS_DONE } st = JS_VALUE;
	size_t stack[JSON_DEPTH_MAX], depth = 0, i = 0, k, top;
	struct json_tok *t;
	int empty_ok = 0, obj;
	unsigned char c;

	j->s = s;
	j->len = len;
	j->n = 0;
	if (len > UINT32_MAX - 1)
		return -1;
	while (i < len) {
		c = (unsigned char)s[i];
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			i++;
			continue;
		}
		obj = depth > 0 && j->t[stack[depth - 1]].type == J_OBJ;
		if ((st == JS_NEXT || empty_ok) && depth > 0 &&
		    c == (obj ? '}' : ']')) {
			top = stack[--depth];
			j->t[top].end = (uint32_t)(i + 1);
			j->t[top].next = (uint32_t)j->n;
			i++;
			empty_ok = 0;
			st = depth == 0 ? JS_DONE : JS_NEXT;
			continue;
		}
		empty_ok = 0;
		switch (st) {
		case JS_DONE:
			return -1;
		case JS_COLON:
			if (c != ':')
				return -1;
			i++;
			st = JS_VALUE;
			continue;
		case JS_NEXT:
			if (c != ',')
				return -1;
			i++;
			st = obj ? JS_KEY : JS_VALUE;
			continue;
		case JS_KEY:
		case JS_VALUE:
			break;
		}
		if (j->n == JSON_TOKENS_MAX)
			return -1;
		t = &j->t[j->n];
		if (st == JS_KEY && c != '"')
			return -1;
		if (c == '{' || c == '[') {
			if (depth == JSON_DEPTH_MAX)
				return -1;
			t->type = c == '{' ? J_OBJ : J_ARR;
			t->start = (uint32_t)i;
			stack[depth++] = j->n++;
			i++;
			st = c == '{' ? JS_KEY : JS_VALUE;
			empty_ok = 1;
			continue;
		}
		k = i;
		if (c == '"') {
			if (json_scan_string(s, len, &k) != 0)
				return -1;
			t->type = J_STR;
			t->start = (uint32_t)(i + 1);
			t->end = (uint32_t)(k - 1);
		} else {
			if (json_scan_prim(s, len, &k) != 0)
				return -1;
			t->type = J_PRIM;
			t->start = (uint32_t)i;
			t->end = (uint32_t)k;
		}
		t->next = (uint32_t)++j->n;
		i = k;
		if (st == JS_KEY)
			st = JS_COLON;
		else
			st = depth == 0 ? JS_DONE : JS_NEXT;
	}
	return st == JS_DONE ? 0 : -1;
}

/* Append code point cp as UTF-8; 0, or -1 without room. */
static int
utf8_put(char *out, size_t cap, size_t *o, unsigned long cp)
{
	uint8_t u[4];
	size_t n, i;

	if (cp < 0x80) {
		u[0] = (uint8_t)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (uint8_t)(0xc0 | cp >> 6);
		u[1] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (uint8_t)(0xe0 | cp >> 12);
		u[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
		u[2] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (uint8_t)(0xf0 | cp >> 18);
		u[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
		u[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
		u[3] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 4;
	}
	if (n >= cap - *o)
		return -1;
	for (i = 0; i < n; i++)
		out[(*o)++] = (char)u[i];
	return 0;
}

static unsigned long
hex4(const char *p)
{
	unsigned long v = 0;
	int i;

	for (i = 0; i < 4; i++)
		v = v << 4 | (unsigned long)hex_value((unsigned char)p[i]);
	return v;
}

/* String token i, unescaped, NUL-terminated in out.  A string that does not
 * fit is an error, or cut (at a character boundary of the escaped text) when
 * cut is set, as for a problem's detail.  -1 also for a NUL (\u0000), which
 * nothing we read may hold.  Lone surrogates become U+FFFD. */
static int
json_str(const struct json *j, size_t i, char *out, size_t cap, int cut)
{
	const struct json_tok *t;
	const char *s = j->s;
	unsigned long cp, lo;
	size_t k, o = 0;
	char c;

	if (i >= j->n || j->t[i].type != J_STR || cap == 0)
		return -1;
	t = &j->t[i];
	for (k = t->start; k < t->end; k++) {
		c = s[k];
		if (c == '\\') {
			c = s[++k];	/* the scanner checked the escapes */
			switch (c) {
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'n': c = '\n'; break;
			case 'r': c = '\r'; break;
			case 't': c = '\t'; break;
			case 'u':
				cp = hex4(s + k + 1);
				k += 4;
				if (cp >= 0xd800 && cp < 0xdc00 && k + 6 < t->end &&
				    s[k + 1] == '\\' && s[k + 2] == 'u' &&
				    (lo = hex4(s + k + 3)) >= 0xdc00 && lo < 0xe000) {
					cp = 0x10000 + ((cp - 0xd800) << 10) +
					    (lo - 0xdc00);
					k += 6;
				} else if (cp >= 0xd800 && cp < 0xe000) {
					cp = 0xfffd;
				}
				if (cp == 0)
					return -1;
				if (utf8_put(out, cap, &o, cp) != 0)
					goto full;
				continue;
			default:	/* '"', '\\', '/' stand for themselves */
				break;
			}
		}
		if (o + 1 >= cap)
			goto full;
		out[o++] = c;
	}
	out[o] = '\0';
	return 0;
full:
	out[o] = '\0';
	return cut ? 0 : -1;
}

/* The value of member key of object token obj, or 0 if obj is no object or
 * has no such member (the first one counts). */
static size_t
json_get(const struct json *j, size_t obj, const char *key)
{
	char name[64];
	size_t k;

	if (obj >= j->n || j->t[obj].type != J_OBJ)
		return 0;
	for (k = obj + 1; k < j->t[obj].next; k = j->t[k + 1].next)
		if (json_str(j, k, name, sizeof name, 0) == 0 &&
		    strcmp(name, key) == 0)
			return k + 1;
	return 0;
}

/* Member key of obj as a string in out: 0, or -1 if absent, not a string or
 * too long. */
static int
json_get_str(const struct json *j, size_t obj, const char *key, char *out,
    size_t cap)
{
	size_t v = json_get(j, obj, key);

	out[0] = '\0';
	return v == 0 ? -1 : json_str(j, v, out, cap, 0);
}

static int
json_is_true(const struct json *j, size_t i)
{
	return i != 0 && i < j->n && j->t[i].type == J_PRIM &&
	    j->t[i].end - j->t[i].start == 4 &&
	    memcmp(j->s + j->t[i].start, "true", 4) == 0;
}

/* A problem document (RFC 7807) at token obj: its type, and its detail (cut).
 * 0 if it has a type. */
static int
problem_read(const struct json *j, size_t obj, char *type, size_t tcap,
    char *detail, size_t dcap)
{
	size_t v;

	detail[0] = '\0';
	if (json_get_str(j, obj, "type", type, tcap) != 0)
		return -1;
	v = json_get(j, obj, "detail");
	if (v != 0 && json_str(j, v, detail, dcap, 1) != 0)
		detail[0] = '\0';
	return 0;
}

/* The directory (RFC 8555 7.1.1): the three resources we use, and meta.
 * 0, or -1 if one is missing. */
static int
dir_read(const struct json *j, const char *profile, struct acme_dir *d)
{
	size_t meta;

	memset(d, 0, sizeof *d);
	if (json_get_str(j, 0, "newNonce", d->new_nonce,
	    sizeof d->new_nonce) != 0 ||
	    json_get_str(j, 0, "newAccount", d->new_account,
	    sizeof d->new_account) != 0 ||
	    json_get_str(j, 0, "newOrder", d->new_order,
	    sizeof d->new_order) != 0)
		return -1;
	meta = json_get(j, 0, "meta");
	d->eab_required = json_is_true(j, json_get(j, meta,
	    "externalAccountRequired"));
	/* meta.profiles: an object whose member names are the profiles
	 * (draft-ietf-acme-profiles). */
	d->profile_ok = profile != NULL && profile[0] != '\0' &&
	    json_get(j, json_get(j, meta, "profiles"), profile) != 0;
	return 0;
}

/* An order (RFC 8555 7.1.3).  0, or -1 if status or finalize is missing or an
 * authorization URL is not a string. */
static int
order_read(const struct json *j, struct acme_order *o)
{
	size_t arr, k, e;

	memset(o, 0, sizeof *o);
	if (json_get_str(j, 0, "status", o->status, sizeof o->status) != 0 ||
	    json_get_str(j, 0, "finalize", o->finalize,
	    sizeof o->finalize) != 0)
		return -1;
	(void)json_get_str(j, 0, "certificate", o->certificate,
	    sizeof o->certificate);
	arr = json_get(j, 0, "authorizations");
	if (arr == 0 || j->t[arr].type != J_ARR)
		return -1;
	for (k = arr + 1; k < j->t[arr].next; k = j->t[k].next) {
		if (o->nauthz == ACME_AUTHZ_MAX ||
		    json_str(j, k, o->authz[o->nauthz],
		    sizeof o->authz[0], 0) != 0)
			return -1;
		o->nauthz++;
	}
	e = json_get(j, 0, "error");
	if (e != 0)
		(void)problem_read(j, e, o->err_type, sizeof o->err_type,
		    o->err_detail, sizeof o->err_detail);
	return 0;
}

/* An authorization (RFC 8555 7.1.4) and its http-01 challenge, if any.  0, or
 * -1 without a status, or with an http-01 challenge lacking url or token. */
static int
authz_read(const struct json *j, struct acme_authz *z)
{
	char type[ACME_WORD_MAX];
	size_t arr, k, e;

	memset(z, 0, sizeof *z);
	if (json_get_str(j, 0, "status", z->status, sizeof z->status) != 0)
		return -1;
	arr = json_get(j, 0, "challenges");
	if (arr == 0 || j->t[arr].type != J_ARR)
		return 0;
	for (k = arr + 1; k < j->t[arr].next; k = j->t[k].next) {
		if (json_get_str(j, k, "type", type, sizeof type) != 0 ||
		    strcmp(type, "http-01") != 0)
			continue;
		z->http01 = 1;
		if (json_get_str(j, k, "url", z->chall_url,
		    sizeof z->chall_url) != 0 ||
		    json_get_str(j, k, "token", z->token,
		    sizeof z->token) != 0)
			return -1;
		(void)json_get_str(j, k, "status", z->chall_status,
		    sizeof z->chall_status);
		e = json_get(j, k, "error");
		if (e != 0)
			(void)problem_read(j, e, z->err_type,
			    sizeof z->err_type, z->err_detail,
			    sizeof z->err_detail);
		return 0;
	}
	return 0;
}

/* ------------------------------------------------------------------------- */
/* 3. JWS                                                                     */
/* ------------------------------------------------------------------------- */

/*
 * A flattened JWS (RFC 7515 7.2.2): {"protected":B64U(prot),"payload":
 * B64U(payload),"signature":B64U(sig)} where sig signs the ASCII of
 * B64U(prot) "." B64U(payload).  ES256 with ec (r || s, 32 bytes each, RFC 7518
 * 3.4), or HS256 with the HMAC key hkey when ec is NULL.  0, or -1 if out is
 * too small or signing fails.
 */
static int
jws_write(struct sbuf *out, const char *prot, const char *payload,
    const br_ec_private_key *ec, const uint8_t *hkey, size_t hkey_len)
{
	br_sha256_context sha;
	br_hmac_key_context hk;
	br_hmac_context hc;
	uint8_t hash[32], sig[64];
	size_t p0, p1, q0, q1, siglen;

	sb_str(out, "{\"protected\":\"");
	p0 = out->len;
	sb_b64u(out, prot, strlen(prot));
	p1 = out->len;
	sb_str(out, "\",\"payload\":\"");
	q0 = out->len;
	sb_b64u(out, payload, strlen(payload));
	q1 = out->len;
	if (out->failed)
		return -1;
	if (ec != NULL) {
		br_sha256_init(&sha);
		br_sha256_update(&sha, out->p + p0, p1 - p0);
		br_sha256_update(&sha, ".", 1);
		br_sha256_update(&sha, out->p + q0, q1 - q0);
		br_sha256_out(&sha, hash);
		siglen = br_ecdsa_sign_raw_get_default()(br_ec_get_default(),
		    &br_sha256_vtable, hash, ec, sig);
		if (siglen != 64)
			return -1;
	} else {
		br_hmac_key_init(&hk, &br_sha256_vtable, hkey, hkey_len);
		br_hmac_init(&hc, &hk, 0);
		br_hmac_update(&hc, out->p + p0, p1 - p0);
		br_hmac_update(&hc, ".", 1);
		br_hmac_update(&hc, out->p + q0, q1 - q0);
		siglen = br_hmac_out(&hc, sig);
		wipe(&hk, sizeof hk);
		wipe(&hc, sizeof hc);
	}
	sb_str(out, "\",\"signature\":\"");
	sb_b64u(out, sig, siglen);
	sb_str(out, "\"}");
	return out->failed ? -1 : 0;
}

/* The account key's public JWK, members in RFC 7638's lexicographic order and
 * without whitespace, so the same text is its thumbprint input; and the
 * thumbprint, base64url of its SHA-256.  0, or -1. */
static int
jwk_make(const br_ec_private_key *sk, char jwk[ACME_JWK_MAX],
    char thumbprint[44])
{
	uint8_t q[BR_EC_KBUF_PUB_MAX_SIZE], hash[32];
	br_ec_public_key pk;
	br_sha256_context sha;
	struct sbuf b;

	if (sk->curve != BR_EC_secp256r1 ||
	    br_ec_compute_pub(br_ec_get_default(), &pk, q, sk) != 65)
		return -1;
	sb_init(&b, jwk, ACME_JWK_MAX);
	sb_str(&b, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"");
	sb_b64u(&b, q + 1, 32);
	sb_str(&b, "\",\"y\":\"");
	sb_b64u(&b, q + 33, 32);
	sb_str(&b, "\"}");
	if (b.failed)
		return -1;
	br_sha256_init(&sha);
	br_sha256_update(&sha, jwk, b.len);
	br_sha256_out(&sha, hash);
	sb_init(&b, thumbprint, 44);
	sb_b64u(&b, hash, sizeof hash);
	return b.failed ? -1 : 0;
}

/* ------------------------------------------------------------------------- */
/* 4. HTTP/TLS client                                                         */
/* ------------------------------------------------------------------------- */

/* Wait until fd is ready for events, at most wait_ms.  0, or -1 (timed_out set
 * on a timeout). */
static int
fd_wait(struct acme *a, short events)
{
	struct pollfd p;
	int ms, r;

	for (;;) {
		ms = wait_ms(a);
		if (ms == 0) {
			a->timed_out = 1;
			return -1;
		}
		p.fd = a->fd;
		p.events = events;
		p.revents = 0;
		r = poll(&p, 1, ms);
		if (r > 0)
			return 0;
		if (r == 0) {
			a->timed_out = 1;
			return -1;
		}
		if (errno != EINTR)
			return -1;
	}
}

/* BearSSL's low-level I/O on the non-blocking socket: each read or write
 * waits at most wait_ms for readiness.  -1 on error, timeout or EOF. */
static int
sock_read(void *ctx, unsigned char *buf, size_t len)
{
	struct acme *a = ctx;
	ssize_t n;

	for (;;) {
		n = read(a->fd, buf, len);
		if (n > 0)
			return (int)n;
		if (n == 0)
			return -1;
		if (errno == EINTR)
			continue;
		if ((errno != EAGAIN && errno != EWOULDBLOCK) ||
		    fd_wait(a, POLLIN) != 0)
			return -1;
	}
}

static int
sock_write(void *ctx, const unsigned char *buf, size_t len)
{
	struct acme *a = ctx;
	ssize_t n;

	for (;;) {
		n = send(a->fd, buf, len, MSG_NOSIGNAL);	/* no SIGPIPE */
		if (n >= 0)
			return (int)n;
		if (errno == EINTR)
			continue;
		if ((errno != EAGAIN && errno != EWOULDBLOCK) ||
		    fd_wait(a, POLLOUT) != 0)
			return -1;
	}
}

/* Connect to u, trying each address getaddrinfo gives in turn, each for at
 * most wait_ms.  (getaddrinfo itself is bounded only by the resolver's own
 * timeouts.)  0 with a->fd, or -1. */
static int
tcp_connect(struct acme *a, const struct vurl *u)
{
	struct addrinfo hints, *res, *ai;
	socklen_t sl;
	int rc, fd, soerr = 0, flags;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (u->is_ip ? AI_NUMERICHOST : 0);
	rc = getaddrinfo(u->host, u->port, &hints, &res);
	if (rc != 0)
		return failf(a, "resolve %s: %s", u->host, gai_strerror(rc));
	a->fd = -1;
	a->timed_out = 0;
	for (ai = res; ai != NULL && a->fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd < 0) {
			soerr = errno;
			continue;
		}
		flags = fcntl(fd, F_GETFL);
		if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0 ||
		    fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
			soerr = errno;
			close(fd);
			continue;
		}
		a->fd = fd;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		soerr = errno;
		if (soerr == EINPROGRESS && fd_wait(a, POLLOUT) == 0) {
			sl = sizeof soerr;
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr,
			    &sl) != 0)
				soerr = errno;
			if (soerr == 0)
				break;
		}
		close(fd);
		a->fd = -1;
	}
	freeaddrinfo(res);
	if (a->fd >= 0)
		return 0;
	if (a->timed_out)
		return failf(a, "connect %s port %s: timed out", u->host,
		    u->port);
	return failf(a, "connect %s port %s: %s", u->host, u->port,
	    strerror(soerr));
}

/* Why the TLS connection failed, as one message. */
static int
tls_fail(struct acme *a, const struct vurl *u, const char *what)
{
	int e = br_ssl_engine_last_error(&a->cc.eng);
	const char *why = "";

	if (a->timed_out)
		return failf(a, "%s %s: timed out", what, u->host);
	switch (e) {
	case BR_ERR_OK:
		return failf(a, "%s %s: connection closed", what, u->host);
	case BR_ERR_IO:
		return failf(a, "%s %s: connection lost", what, u->host);
	case BR_ERR_X509_NOT_TRUSTED:
		why = " (certificate does not chain to ca_file)";
		break;
	case BR_ERR_X509_BAD_SERVER_NAME:
		why = " (certificate is not for this host)";
		break;
	case BR_ERR_X509_EXPIRED:
		why = " (certificate expired or not yet valid)";
		break;
	default:
		break;
	}
	return failf(a, "%s %s: TLS error %d%s", what, u->host, e, why);
}

/*
 * Parse a response head (status line and header fields, RFC 9112) in
 * buf[0..len): the bytes it takes through the empty line, -2 if that line has
 * not arrived, -1 if malformed.  Lines end in LF, CR LF accepted.  Refused:
 * line folding, control bytes, a Content-Length that is not digits or that
 * two fields disagree on, a Transfer-Encoding other than chunked, and both
 * framings at once (the smuggling ambiguity).  Values we keep must fit their
 * fields; an invalid Replay-Nonce is ignored (RFC 8555 6.5.1).
 */
static int
http_parse_head(const uint8_t *buf, size_t len, struct http_resp *r)
{
	const char *line, *name, *val;
	size_t pos = 0, eol, n, nlen, vlen, i;
	long long cl;
	int first = 1;

	r->status = 0;
	r->content_length = -1;
	r->chunked = 0;
	r->retry_after = -1;
	r->nonce[0] = r->location[0] = r->ctype[0] = '\0';
	if (len > INT_MAX)
		return -1;
	for (;;) {
		const uint8_t *nl = memchr(buf + pos, '\n', len - pos);

		if (nl == NULL)
			return -2;
		eol = (size_t)(nl - buf);
		n = eol - pos;
		if (n > 0 && buf[eol - 1] == '\r')
			n--;
		line = (const char *)buf + pos;
		pos = eol + 1;
		for (i = 0; i < n; i++)
			if (((unsigned char)line[i] < 0x20 && line[i] != '\t') ||
			    line[i] == 0x7f)
				return -1;
		if (first) {
			/* HTTP/1.x SP 3DIGIT [SP reason] */
			if (n < 12 || memcmp(line, "HTTP/1.", 7) != 0 ||
			    !is_digit((unsigned char)line[7]) || line[8] != ' ' ||
			    !is_digit((unsigned char)line[9]) ||
			    !is_digit((unsigned char)line[10]) ||
			    !is_digit((unsigned char)line[11]) ||
			    (n > 12 && line[12] != ' '))
				return -1;
			r->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 +
			    (line[11] - '0');
			first = 0;
			continue;
		}
		if (n == 0)
			break;
		if (line[0] == ' ' || line[0] == '\t')
			return -1;			/* obsolete folding */
		val = memchr(line, ':', n);
		if (val == NULL || val == line)
			return -1;
		name = line;
		nlen = (size_t)(val - line);
		for (i = 0; i < nlen; i++)
			if (line[i] == ' ' || line[i] == '\t')
				return -1;
		val++;
		vlen = n - nlen - 1;
		while (vlen > 0 && (*val == ' ' || *val == '\t')) {
			val++;
			vlen--;
		}
		while (vlen > 0 && (val[vlen - 1] == ' ' || val[vlen - 1] == '\t'))
			vlen--;
#define HDR_IS(s) (nlen == sizeof(s) - 1 && strncasecmp(name, s, nlen) == 0)
		if (HDR_IS("Content-Length")) {
			if (vlen == 0 || vlen > 15)
				return -1;
			for (cl = 0, i = 0; i < vlen; i++) {
				if (!is_digit((unsigned char)val[i]))
					return -1;
				cl = cl * 10 + (val[i] - '0');
			}
			if (r->content_length >= 0 && r->content_length != cl)
				return -1;
			r->content_length = cl;
		} else if (HDR_IS("Transfer-Encoding")) {
			if (vlen != 7 || strncasecmp(val, "chunked", 7) != 0 ||
			    r->chunked)
				return -1;
			r->chunked = 1;
		} else if (HDR_IS("Replay-Nonce")) {
			for (i = 0; i < vlen; i++)
				if (strchr(b64url_chars, val[i]) == NULL)
					break;
			if (vlen > 0 && i == vlen && vlen < sizeof r->nonce) {
				memcpy(r->nonce, val, vlen);
				r->nonce[vlen] = '\0';
			}
		} else if (HDR_IS("Location")) {
			if (vlen >= sizeof r->location)
				return -1;
			memcpy(r->location, val, vlen);
			r->location[vlen] = '\0';
		} else if (HDR_IS("Content-Type")) {
			for (i = 0; i < vlen && val[i] != ';' && val[i] != ' ' &&
			    val[i] != '\t'; i++)
				;
			if (i >= sizeof r->ctype)
				return -1;
			for (vlen = 0; vlen < i; vlen++)
				r->ctype[vlen] = (char)((val[vlen] >= 'A' &&
				    val[vlen] <= 'Z') ? val[vlen] - 'A' + 'a' :
				    val[vlen]);
			r->ctype[i] = '\0';
		} else if (HDR_IS("Retry-After")) {
			/* delay-seconds; an HTTP-date leaves the default */
			for (cl = 0, i = 0; i < vlen && i < 9 &&
			    is_digit((unsigned char)val[i]); i++)
				cl = cl * 10 + (val[i] - '0');
			if (vlen > 0 && i == vlen)
				r->retry_after = (long)cl;
		}
#undef HDR_IS
	}
	if (r->chunked && r->content_length >= 0)
		return -1;
	return (int)pos;
}

/*
 * Chunked transfer coding (RFC 9112 7.1), decoded in place and incrementally,
 * as it arrives.  The caller appends raw bytes after the data decoded so far
 * and passes only the new bytes; the data in them moves to their front.
 * States:
 *   SIZE0      first hex digit of a chunk size
 *   SIZE       more hex digits; ';' or whitespace starts an extension
 *   EXT        extension, skipped to the line end
 *   SIZE_LF    the LF after a size line's CR
 *   DATA       left bytes of chunk data to go
 *   DATA_CR    the CR (or bare LF) after chunk data
 *   DATA_LF    the LF after it
 *   TRAILER0   start of a trailer line (an empty one ends the body)
 *   TRAILER    inside a trailer line, skipped
 *   END_LF     the LF of the final empty line
 * A chunk size above ACME_BODY_MAX is refused before it can overflow.
 */
enum {
	CH_SIZE0, CH_SIZE, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF,
	CH_TRAILER0, CH_TRAILER, CH_END_LF, CH_DONE
};
struct chunked {
	int state;
	size_t left;
};

/* buf[0..*len) in, data out in buf[0..*len).  1 when the body is complete
 * (bytes after it are dropped), 0 for more, -1 if malformed. */
static int
chunked_decode(struct chunked *c, uint8_t *buf, size_t *len)
{
	size_t in = 0, out = 0, n = *len, take;
	int v, line_end;
	uint8_t ch;

	while (in < n && c->state != CH_DONE) {
		ch = buf[in];
		line_end = 0;
		switch (c->state) {
		case CH_SIZE0:
		case CH_SIZE:
			v = hex_value(ch);
			if (v >= 0) {
				if (c->state == CH_SIZE0)
					c->left = 0;
				if (c->left > ACME_BODY_MAX / 16)
					return -1;
				c->left = c->left * 16 + (size_t)v;
				c->state = CH_SIZE;
			} else if (c->state == CH_SIZE0) {
				return -1;
			} else if (ch == ';' || ch == ' ' || ch == '\t') {
				c->state = CH_EXT;
			} else if (ch == '\r') {
				c->state = CH_SIZE_LF;
			} else if (ch == '\n') {
				line_end = 1;
			} else {
				return -1;
			}
			in++;
			break;
		case CH_EXT:
			if (ch == '\r')
				c->state = CH_SIZE_LF;
			else if (ch == '\n')
				line_end = 1;
			else if (ch < 0x20 && ch != '\t')
				return -1;
			in++;
			break;
		case CH_SIZE_LF:
			if (ch != '\n')
				return -1;
			line_end = 1;
			in++;
			break;
		case CH_DATA:
			take = c->left < n - in ? c->left : n - in;
			memmove(buf + out, buf + in, take);
			out += take;
			in += take;
			c->left -= take;
			if (c->left == 0)
				c->state = CH_DATA_CR;
			break;
		case CH_DATA_CR:
			if (ch == '\r')
				c->state = CH_DATA_LF;
			else if (ch == '\n')
				c->state = CH_SIZE0;
			else
				return -1;
			in++;
			break;
		case CH_DATA_LF:
			if (ch != '\n')
				return -1;
			c->state = CH_SIZE0;
			in++;
			break;
		case CH_TRAILER0:
			if (ch == '\r')
				c->state = CH_END_LF;
			else if (ch == '\n')
				c->state = CH_DONE;
			else
				c->state = CH_TRAILER;
			in++;
			break;
		case CH_TRAILER:
			if (ch == '\n')
				c->state = CH_TRAILER0;
			in++;
			break;
		case CH_END_LF:
			if (ch != '\n')
				return -1;
			c->state = CH_DONE;
			in++;
			break;
		default:
			return -1;
		}
		if (line_end)		/* a size line ended: data or the end */
			c->state = c->left > 0 ? CH_DATA : CH_TRAILER0;
	}
	*len = out;
	return c->state == CH_DONE ? 1 : 0;
}

/* Read the body that follows the head into a->body (extra: the bytes that came
 * with the head).  Framing: none for HEAD, 1xx, 204 and 304; Content-Length;
 * chunked; or until the TLS connection is closed, which must then be a clean
 * close (close_notify), so a cut connection is not taken for the end.  0, or
 * -1 with err. */
static int
http_read_body(struct acme *a, const struct vurl *u, int no_body,
    const uint8_t *extra, size_t extra_len)
{
	struct http_resp *r = &a->resp;
	struct chunked ch = { CH_SIZE0, 0 };
	size_t have = 0, n, want;
	int rd, st = 0;

	r->body = a->body;
	r->body_len = 0;
	a->body[0] = '\0';
	if (no_body)
		return 0;
	if (r->content_length > ACME_BODY_MAX)
		return failf(a, "response body of %lld bytes from %s is over "
		    "%d", r->content_length, u->host, ACME_BODY_MAX);
	want = r->content_length >= 0 ? (size_t)r->content_length :
	    ACME_BODY_MAX;
	n = extra_len < want ? extra_len : want;
	memcpy(a->body, extra, n);
	if (r->chunked) {
		st = chunked_decode(&ch, a->body, &n);
		if (st < 0)
			return failf(a, "malformed chunked body from %s",
			    u->host);
	}
	have = n;
	while (st == 0 && (r->chunked || r->content_length < 0 ||
	    have < want)) {
		if (have == ACME_BODY_MAX) {
			/* Full: one more byte means the body is too large. */
			uint8_t probe;

			rd = br_sslio_read(&a->io, &probe, 1);
			if (rd > 0 || r->chunked)
				return failf(a, "response body from %s is over "
				    "%d bytes", u->host, ACME_BODY_MAX);
		} else {
			rd = br_sslio_read(&a->io, a->body + have,
			    (r->content_length >= 0 ? want : ACME_BODY_MAX) -
			    have);
		}
		if (rd <= 0) {
			if (r->content_length < 0 && !r->chunked &&
			    !a->timed_out &&
			    br_ssl_engine_last_error(&a->cc.eng) == BR_ERR_OK)
				break;		/* clean close ends the body */
			if (a->timed_out)
				return tls_fail(a, u, "read from");
			return failf(a, "truncated response body from %s (%lu "
			    "bytes)", u->host, (unsigned long)have);
		}
		n = (size_t)rd;
		if (r->chunked) {
			st = chunked_decode(&ch, a->body + have, &n);
			if (st < 0)
				return failf(a, "malformed chunked body from "
				    "%s", u->host);
		}
		have += n;
	}
	a->body[have] = '\0';
	r->body_len = have;
	return 0;
}

/* A URL of the CA's: verify.c's parser, https only (RFC 8555 6.1).  0, or
 * -1. */
static int
acme_url_parse(const char *url, struct vurl *u)
{
	return vurl_parse(url, u) == 0 && u->https ? 0 : -1;
}

/* One request on a new connection ("Connection: close"): method, url, an
 * optional JOSE body, and Accept.  The response lands in a->resp; any status
 * is a success here.  0, or -1 with err. */
static int
http_do(struct acme *a, const char *method, const char *url,
    const char *body, const char *accept)
{
	struct http_resp *r = &a->resp;
	struct vurl u;
	size_t hlen = 0, blen = body != NULL ? strlen(body) : 0;
	int n, rd, k;

	if (acme_url_parse(url, &u) != 0)
		return failf(a, "not an https URL: %.200s", url);
	n = snprintf(a->req, sizeof a->req, "%s %s HTTP/1.1\r\nHost: %s\r\n"
	    "User-Agent: derp-acme\r\nAccept: %s\r\n", method, u.path,
	    u.authority, accept);
	if (n > 0 && (size_t)n < sizeof a->req && body != NULL)
		n += snprintf(a->req + n, sizeof a->req - (size_t)n,
		    "Content-Type: application/jose+json\r\n"
		    "Content-Length: %lu\r\n", (unsigned long)blen);
	if (n > 0 && (size_t)n < sizeof a->req)
		n += snprintf(a->req + n, sizeof a->req - (size_t)n,
		    "Connection: close\r\n\r\n");
	if (n <= 0 || (size_t)n >= sizeof a->req)
		return failf(a, "request too long for %.200s", url);

	if (tcp_connect(a, &u) != 0)
		return -1;
	/* SNI and the name check for a DNS host, the IP SAN check for an IP
	 * literal (tlsclient.c). */
	if (tlsc_client_reset(&a->cc, &a->xc, u.host) != 0) {
		failf(a, "TLS setup failed (BearSSL error %d)",
		    br_ssl_engine_last_error(&a->cc.eng));
		goto bad;
	}
	br_sslio_init(&a->io, &a->cc.eng, sock_read, a, sock_write, a);
	if (br_sslio_write_all(&a->io, a->req, (size_t)n) != 0 ||
	    (blen > 0 && br_sslio_write_all(&a->io, body, blen) != 0) ||
	    br_sslio_flush(&a->io) != 0) {
		tls_fail(a, &u, "connection to");
		goto bad;
	}
	for (;;) {
		if (hlen == sizeof a->head) {
			failf(a, "response head from %s is over %d bytes",
			    u.host, ACME_HEAD_MAX);
			goto bad;
		}
		rd = br_sslio_read(&a->io, a->head + hlen, sizeof a->head - hlen);
		if (rd <= 0) {
			if (a->timed_out || hlen == 0)
				tls_fail(a, &u, "read from");
			else
				failf(a, "truncated response head from %s",
				    u.host);
			goto bad;
		}
		hlen += (size_t)rd;
		k = http_parse_head(a->head, hlen, r);
		if (k == -1) {
			failf(a, "malformed response head from %s", u.host);
			goto bad;
		}
		if (k >= 0)
			break;
	}
	if (http_read_body(a, &u, strcmp(method, "HEAD") == 0 ||
	    r->status / 100 == 1 || r->status == 204 || r->status == 304,
	    a->head + k, hlen - (size_t)k) != 0)
		goto bad;
	/* The answer is complete: no close_notify dance, just close. */
	close(a->fd);
	a->fd = -1;
	return 0;
bad:
	close(a->fd);
	a->fd = -1;
	return -1;
}

/* tlsc_pem_certs callback: a copy of each certificate into a cert_store
 * chain. */
static int
chain_add(void *ctx, const uint8_t *der, size_t n)
{
	struct cert_store *cs = ctx;
	uint8_t *p;

	if (cs->chain_len == CERT_CHAIN_MAX || (p = malloc(n)) == NULL)
		return -1;
	memcpy(p, der, n);
	cs->chain[cs->chain_len].data = p;
	cs->chain[cs->chain_len].data_len = n;
	cs->chain_len++;
	return 0;
}

/* ------------------------------------------------------------------------- */
/* 5. ACME flow                                                               */
/* ------------------------------------------------------------------------- */

/* Does the response carry the media type want?  (Parameters such as charset
 * were dropped by the head parser.) */
static int
resp_is(const struct acme *a, const char *want)
{
	return strcmp(a->resp.ctype, want) == 0;
}

/* The response body as JSON in a->js (application/json, or problem+json when
 * problem is set).  0, or -1 with err. */
static int
resp_json(struct acme *a, const char *url)
{
	if (!resp_is(a, "application/json"))
		return failf(a, "response from %.200s has content type \"%s\", "
		    "not application/json", url, a->resp.ctype);
	if (json_parse(&a->js, (const char *)a->resp.body,
	    a->resp.body_len) != 0)
		return failf(a, "malformed JSON from %.200s", url);
	return 0;
}

/* An error status: log the CA's problem document (type and detail) and fail
 * with them, or with the bare status when there is no problem document.
 * *type gets the problem type ("" if none). */
static int
resp_error(struct acme *a, const char *url, char *type, size_t tcap)
{
	char detail[ACME_DETAIL_MAX];

	type[0] = '\0';
	if ((resp_is(a, "application/problem+json") ||
	    resp_is(a, "application/json")) &&
	    json_parse(&a->js, (const char *)a->resp.body,
	    a->resp.body_len) == 0 &&
	    problem_read(&a->js, 0, type, tcap, detail, sizeof detail) == 0) {
		acme_log(a, "acme: CA error %s: %s", type, detail);
		return failf(a, "CA error %s: %s", type, detail);
	}
	return failf(a, "HTTP status %d from %.200s", a->resp.status, url);
}

/* A fresh nonce from newNonce (RFC 8555 7.2: HEAD, 200 or 204). */
static int
acme_new_nonce(struct acme *a)
{
	char type[ACME_PTYPE_MAX];

	if (http_do(a, "HEAD", a->dir.new_nonce, NULL, "*/*") != 0)
		return -1;
	if (a->resp.status != 200 && a->resp.status != 204)
		return resp_error(a, a->dir.new_nonce, type, sizeof type);
	if (a->resp.nonce[0] == '\0')
		return failf(a, "no Replay-Nonce from %.200s",
		    a->dir.new_nonce);
	memcpy(a->nonce, a->resp.nonce, sizeof a->nonce);
	return 0;
}

/* POST a JWS of payload (NULL: POST-as-GET, an empty payload) to url, signed
 * with the account key: the JWK in the header for newAccount (use_jwk), the
 * account URL (kid) otherwise.  A badNonce error is retried once with the
 * nonce that came with it (RFC 8555 6.5).  0 on a 2xx status with a->resp,
 * or -1 with err. */
static int
acme_post(struct acme *a, const char *url, const char *payload, int use_jwk,
    const char *accept)
{
	char prot[ACME_PROTECTED_MAX], type[ACME_PTYPE_MAX];
	struct sbuf p, out;
	int attempt;

	for (attempt = 0; attempt < 2; attempt++) {
		if (a->nonce[0] == '\0' && acme_new_nonce(a) != 0)
			return -1;
		sb_init(&p, prot, sizeof prot);
		sb_str(&p, "{\"alg\":\"ES256\",");
		if (use_jwk) {
			sb_str(&p, "\"jwk\":");
			sb_str(&p, a->jwk);
		} else {
			sb_str(&p, "\"kid\":");
			sb_json(&p, a->kid);
		}
		sb_str(&p, ",\"nonce\":");
		sb_json(&p, a->nonce);
		sb_str(&p, ",\"url\":");
		sb_json(&p, url);
		sb_str(&p, "}");
		sb_init(&out, a->jws, sizeof a->jws);
		if (p.failed || jws_write(&out, prot, payload != NULL ?
		    payload : "", &a->key, NULL, 0) != 0)
			return failf(a, "request for %.200s too large", url);
		a->nonce[0] = '\0';		/* each nonce is used once */
		if (http_do(a, "POST", url, a->jws, accept) != 0)
			return -1;
		if (a->resp.nonce[0] != '\0')
			memcpy(a->nonce, a->resp.nonce, sizeof a->nonce);
		if (a->resp.status / 100 == 2)
			return 0;
		resp_error(a, url, type, sizeof type);
		if (attempt == 0 &&
		    strcmp(type, "urn:ietf:params:acme:error:badNonce") == 0) {
			a->failed = 0;		/* retried: not the error */
			if (a->err != NULL && a->errlen > 0)
				a->err[0] = '\0';
			continue;
		}
		return -1;
	}
	return -1;
}

/* Sleep before the next poll: Retry-After clamped to 1..60 s (1 s without
 * one), never past the end of the exchange, at most ACME_POLLS_MAX times. */
static int
acme_wait(struct acme *a, unsigned *polls)
{
	struct timespec ts;
	long s = a->resp.retry_after;

	if (s < ACME_RETRY_MIN_S)
		s = ACME_RETRY_MIN_S;
	if (s > ACME_RETRY_MAX_S)
		s = ACME_RETRY_MAX_S;
	if (++*polls > ACME_POLLS_MAX)
		return failf(a, "still not done after %d polls", ACME_POLLS_MAX);
	if (now_ms() + s * 1000 > a->deadline_ms)
		return failf(a, "timed out (total_timeout_ms)");
	ts.tv_sec = s;
	ts.tv_nsec = 0;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	return 0;
}

/* Load the account key, or make one (mode 0600, directories 0700) if the file
 * does not exist; then its JWK and thumbprint. */
static int
acme_account_key(struct acme *a)
{
	const char *path = a->cfg->account_key_path;
	struct cert_store cs;
	char pem[ACME_KEY_PEM_MAX], err[ACME_LINE_MAX];
	struct stat sb;
	size_t n;
	int rc;

	a->step = "account key";
	if (stat(path, &sb) == 0) {
		if (cert_load_key(&cs, path, err, sizeof err) != 0)
			return failf(a, "%s", err);
		/* RFC 5915 pads the scalar to 32 bytes; a shorter one (some
		 * old writers) is padded here. */
		rc = cs.key_type == BR_KEYTYPE_EC &&
		    cs.ec.curve == BR_EC_secp256r1 && cs.ec.xlen > 0 &&
		    cs.ec.xlen <= 32;
		if (rc) {
			memset(a->kbuf, 0, 32);
			memcpy(a->kbuf + 32 - cs.ec.xlen, cs.ec.x, cs.ec.xlen);
			a->key.curve = BR_EC_secp256r1;
			a->key.x = a->kbuf;
			a->key.xlen = 32;
		}
		cert_free(&cs);
		if (!rc)
			return failf(a, "%s: not an EC P-256 key", path);
	} else if (errno == ENOENT) {
		if (cert_ec_keygen(&a->key, a->kbuf, err, sizeof err) != 0)
			return failf(a, "%s", err);
		n = cert_ec_key_pem(&a->key, pem, sizeof pem);
		rc = n > 0 ? cert_write_atomic(path, pem, n, err, sizeof err) :
		    -1;
		wipe(pem, sizeof pem);
		if (rc != 0)
			return failf(a, "%s", n > 0 ? err : "key encoding");
		acme_log(a, "acme: created account key %s", path);
	} else {
		return failf(a, "%s: %s", path, strerror(errno));
	}
	if (jwk_make(&a->key, a->jwk, a->thumbprint) != 0)
		return failf(a, "cannot derive the public key");
	return 0;
}

/* GET the directory. */
static int
acme_directory(struct acme *a)
{
	const char *url = a->cfg->directory_url;
	char type[ACME_PTYPE_MAX];

	a->step = "directory";
	acme_log(a, "acme: directory %s", url);
	if (http_do(a, "GET", url, NULL, "application/json") != 0)
		return -1;
	if (a->resp.status != 200)
		return resp_error(a, url, type, sizeof type);
	if (resp_json(a, url) != 0)
		return -1;
	if (dir_read(&a->js, a->cfg->profile, &a->dir) != 0)
		return failf(a, "%.200s lacks newNonce, newAccount or newOrder",
		    url);
	if (a->dir.eab_required && a->cfg->eab_kid == NULL)
		return failf(a, "the CA requires External Account Binding "
		    "(EAB key ID and HMAC key)");
	if (a->cfg->profile != NULL && a->cfg->profile[0] != '\0' &&
	    !a->dir.profile_ok)
		acme_log(a, "acme: the CA does not offer profile %s; "
		    "ordering without one", a->cfg->profile);
	return 0;
}

/* newAccount (RFC 8555 7.3): terms agreed, the contact, and the External
 * Account Binding (7.3.4) when configured.  An existing account answers 200,
 * a new one 201; its URL (Location) is our kid from now on. */
static int
acme_account(struct acme *a)
{
	const struct acme_config *cfg = a->cfg;
	uint8_t hkey[ACME_EAB_KEY_MAX];
	char prot[ACME_PROTECTED_MAX], status[ACME_WORD_MAX];
	char contact[8 + 320];		/* "mailto:" and an address (RFC 5321: 254) */
	struct sbuf b, eab;
	long klen;
	int rc;

	a->step = "newAccount";
	sb_init(&b, a->payload, sizeof a->payload);
	sb_str(&b, "{\"termsOfServiceAgreed\":true");
	if (cfg->email != NULL && cfg->email[0] != '\0') {
		if ((size_t)snprintf(contact, sizeof contact, "mailto:%s",
		    cfg->email) >= sizeof contact)
			return failf(a, "email address too long");
		sb_str(&b, ",\"contact\":[");
		sb_json(&b, contact);
		sb_str(&b, "]");
	}
	if (cfg->eab_kid != NULL) {
		klen = b64_decode(cfg->eab_key, strlen(cfg->eab_key), hkey,
		    sizeof hkey);
		if (klen <= 0)
			return failf(a, "EAB HMAC key is not base64url");
		sb_init(&eab, prot, sizeof prot);
		sb_str(&eab, "{\"alg\":\"HS256\",\"kid\":");
		sb_json(&eab, cfg->eab_kid);
		sb_str(&eab, ",\"url\":");
		sb_json(&eab, a->dir.new_account);
		sb_str(&eab, "}");
		sb_str(&b, ",\"externalAccountBinding\":");
		rc = eab.failed ? -1 : jws_write(&b, prot, a->jwk, NULL, hkey,
		    (size_t)klen);
		wipe(hkey, sizeof hkey);
		if (rc != 0)
			return failf(a, "EAB binding too large");
	}
	sb_str(&b, "}");
	if (b.failed)
		return failf(a, "request too large");
	if (acme_post(a, a->dir.new_account, a->payload, 1,
	    "application/json") != 0)
		return -1;
	if (a->resp.location[0] == '\0')
		return failf(a, "no account URL (Location) from %.200s",
		    a->dir.new_account);
	memcpy(a->kid, a->resp.location, sizeof a->kid);
	if (resp_json(a, a->dir.new_account) != 0)
		return -1;
	if (json_get_str(&a->js, 0, "status", status, sizeof status) == 0 &&
	    strcmp(status, "valid") != 0)
		return failf(a, "account %.200s is %s", a->kid, status);
	acme_log(a, "acme: account %s (%s)", a->kid,
	    a->resp.status == 201 ? "new" : "existing");
	return 0;
}

/* POST-as-GET an order or authorization URL and parse the JSON answer. */
static int
acme_fetch(struct acme *a, const char *url)
{
	if (acme_post(a, url, NULL, 0, "application/json") != 0)
		return -1;
	return resp_json(a, url);
}

/* Fail with the problem a CA attached to an object (order or challenge),
 * logged like any CA error. */
static int
object_error(struct acme *a, const char *what, const char *url,
    const char *status, const char *type, const char *detail)
{
	if (type[0] == '\0')
		return failf(a, "%s %.200s is %s", what, url, status);
	acme_log(a, "acme: CA error %s: %s", type, detail);
	return failf(a, "%s is %s: CA error %s: %s", what, status, type,
	    detail);
}

/* An HTTP-01 token as RFC 8555 8.3 defines it: base64url characters only, so
 * it is safe in a path and a file name. */
static int
token_ok(const char *t)
{
	size_t i;

	for (i = 0; t[i] != '\0'; i++)
		if (strchr(b64url_chars, t[i]) == NULL)
			return 0;
	return i > 0;
}

/* One authorization: nothing if valid; if pending, publish the http-01 key
 * authorization, tell the CA (POST {} to the challenge), poll until valid or
 * invalid, and withdraw the answer in every case. */
static int
acme_authorize(struct acme *a, const char *url)
{
	const struct acme_config *cfg = a->cfg;
	struct acme_authz *z = &a->authz;
	char keyauth[ACME_KEYAUTH_MAX], token[ACME_TOKEN_MAX];
	unsigned polls = 0;
	int rc = -1;

	a->step = "authorization";
	if (acme_fetch(a, url) != 0)
		return -1;
	if (authz_read(&a->js, z) != 0)
		return failf(a, "malformed authorization %.200s", url);
	if (strcmp(z->status, "valid") == 0)
		return 0;
	if (strcmp(z->status, "pending") != 0)
		return failf(a, "authorization %.200s is %s", url, z->status);
	if (!z->http01)
		return failf(a, "authorization %.200s offers no http-01 "
		    "challenge", url);
	if (!token_ok(z->token))
		return failf(a, "http-01 token with characters outside "
		    "base64url");
	if (strcmp(z->chall_status, "invalid") == 0)
		return object_error(a, "challenge", z->chall_url,
		    z->chall_status, z->err_type, z->err_detail);
	memcpy(token, z->token, sizeof token);
	snprintf(keyauth, sizeof keyauth, "%s.%s", token, a->thumbprint);
	acme_log(a, "acme: answering http-01 for %s, token %s", a->ident,
	    token);
	if (cfg->challenge(cfg->ctx, token, keyauth) != 0) {
		failf(a, "the challenge callback refused token %s", token);
		goto done;		/* it may have half published */
	}
	/* Tell the CA to validate, unless it is already at it. */
	if (strcmp(z->chall_status, "pending") == 0 &&
	    (acme_post(a, z->chall_url, "{}", 0, "application/json") != 0 ||
	    resp_json(a, z->chall_url) != 0))
		goto done;
	for (;;) {
		if (acme_wait(a, &polls) != 0 || acme_fetch(a, url) != 0)
			goto done;
		if (authz_read(&a->js, z) != 0) {
			failf(a, "malformed authorization %.200s", url);
			goto done;
		}
		if (strcmp(z->status, "valid") == 0)
			break;
		if (strcmp(z->status, "pending") != 0) {
			object_error(a, "authorization", url, z->status,
			    z->err_type, z->err_detail);
			goto done;
		}
	}
	acme_log(a, "acme: authorization for %s valid", a->ident);
	rc = 0;
done:
	(void)cfg->challenge(cfg->ctx, token, NULL);
	return rc;
}

/* The order: create it, satisfy its authorizations, wait until it is ready,
 * finalize it with csr, wait until it is valid.  a->order then names the
 * certificate URL. */
static int
acme_order(struct acme *a, const uint8_t *csr, size_t csr_len)
{
	struct acme_order *o = &a->order;
	char auth[ACME_AUTHZ_MAX][ACME_URL_MAX];
	struct sbuf b;
	unsigned polls = 0;
	size_t i, n;
	int finalized = 0;

	a->step = "newOrder";
	sb_init(&b, a->payload, sizeof a->payload);
	sb_str(&b, "{\"identifiers\":[{\"type\":");
	sb_str(&b, a->cfg->identifier_is_ip ? "\"ip\"" : "\"dns\"");
	sb_str(&b, ",\"value\":");
	sb_json(&b, a->ident);
	sb_str(&b, "}]");
	if (a->dir.profile_ok) {
		sb_str(&b, ",\"profile\":");
		sb_json(&b, a->cfg->profile);
	}
	sb_str(&b, "}");
	if (b.failed)
		return failf(a, "request too large");
	if (acme_post(a, a->dir.new_order, a->payload, 0,
	    "application/json") != 0 || resp_json(a, a->dir.new_order) != 0)
		return -1;
	if (a->resp.location[0] == '\0')
		return failf(a, "no order URL (Location) from %.200s",
		    a->dir.new_order);
	memcpy(a->order_url, a->resp.location, sizeof a->order_url);
	if (order_read(&a->js, o) != 0)
		return failf(a, "malformed order %.200s", a->order_url);
	acme_log(a, "acme: new order %s for %s", a->order_url, a->ident);

	/* Copied out: each authorization reuses the response buffers. */
	n = o->nauthz;
	memcpy(auth, o->authz, sizeof auth);
	for (i = 0; i < n; i++)
		if (acme_authorize(a, auth[i]) != 0)
			return -1;

	/* pending -> ready (authorizations done) -> processing (after
	 * finalize) -> valid; invalid at any point is final. */
	a->step = "order";
	if (acme_fetch(a, a->order_url) != 0 || order_read(&a->js, o) != 0)
		return failf(a, "malformed order %.200s", a->order_url);
	for (;;) {
		if (strcmp(o->status, "valid") == 0)
			break;
		if (strcmp(o->status, "ready") == 0 && !finalized) {
			a->step = "finalize";
			sb_init(&b, a->payload, sizeof a->payload);
			sb_str(&b, "{\"csr\":\"");
			sb_b64u(&b, csr, csr_len);
			sb_str(&b, "\"}");
			if (b.failed)
				return failf(a, "request too large");
			acme_log(a, "acme: finalize %s", o->finalize);
			if (acme_post(a, o->finalize, a->payload, 0,
			    "application/json") != 0 ||
			    resp_json(a, o->finalize) != 0)
				return -1;
			finalized = 1;
		} else if (strcmp(o->status, "pending") != 0 &&
		    strcmp(o->status, "processing") != 0 &&
		    strcmp(o->status, "ready") != 0) {
			return object_error(a, "order", a->order_url,
			    o->status, o->err_type, o->err_detail);
		} else if (acme_wait(a, &polls) != 0 ||
		    acme_fetch(a, a->order_url) != 0) {
			return -1;
		}
		if (order_read(&a->js, o) != 0)
			return failf(a, "malformed order %.200s", a->order_url);
	}
	if (o->certificate[0] == '\0')
		return failf(a, "valid order %.200s has no certificate URL",
		    a->order_url);
	return 0;
}

/* Check the chain against the new key and the identifier, then write the
 * files: the key first when separate (an existing chain then always has its
 * key), or one file, key first, as autocert caches it. */
static int
acme_save(struct acme *a, const br_ec_private_key *sk)
{
	const struct acme_config *cfg = a->cfg;
	br_x509_decoder_context dc;
	const br_x509_pkey *pk;
	struct cert_store cs;
	uint8_t q[BR_EC_KBUF_PUB_MAX_SIZE];
	char key_pem[ACME_KEY_PEM_MAX], err[ACME_LINE_MAX], when[32];
	char *out = NULL;
	size_t i, n, key_len, len, cap;
	int64_t nb, na;
	time_t t;
	struct tm tm;
	int count, rc = -1;

	a->step = "certificate";
	memset(&cs, 0, sizeof cs);
	if (!resp_is(a, "application/pem-certificate-chain"))
		return failf(a, "certificate has content type \"%s\", not "
		    "application/pem-certificate-chain", a->resp.ctype);
	count = tlsc_pem_certs(a->resp.body, a->resp.body_len, 1, chain_add,
	    &cs);
	if (count <= 0) {
		cert_free(&cs);
		return failf(a, "not a PEM certificate chain (of 1 to %d "
		    "certificates)", CERT_CHAIN_MAX);
	}
	br_x509_decoder_init(&dc, 0, NULL);
	br_x509_decoder_push(&dc, cs.chain[0].data, cs.chain[0].data_len);
	pk = br_x509_decoder_get_pkey(&dc);
	if (pk == NULL || br_x509_decoder_last_error(&dc) != 0 ||
	    br_ec_compute_pub(br_ec_get_default(), NULL, q, sk) != 65 ||
	    pk->key_type != BR_KEYTYPE_EC ||
	    pk->key.ec.curve != BR_EC_secp256r1 || pk->key.ec.qlen != 65 ||
	    memcmp(pk->key.ec.q, q, 65) != 0) {
		acme_log(a, "acme: the CA's certificate does not match the "
		    "new key; nothing written");
		failf(a, "the certificate's public key is not the new key");
		goto done;
	}
	if (!cert_matches_host(&cs, a->ident)) {
		acme_log(a, "acme: the CA's certificate is not valid for %s; "
		    "nothing written", a->ident);
		failf(a, "the certificate is not valid for %s", a->ident);
		goto done;
	}
	/* A leaf not valid now would replace a good pair on disk that the
	 * relay could not serve (it refuses it) nor restart with. */
	if (cert_leaf_validity(&cs, &nb, &na) != 0 ||
	    nb > (int64_t)time(NULL) + ACME_SKEW_S || na <= (int64_t)time(NULL)) {
		acme_log(a, "acme: the CA's certificate is not valid now; "
		    "nothing written");
		failf(a, "the certificate is not valid now");
		goto done;
	}
	when[0] = '\0';
	t = (time_t)na;
	if ((int64_t)t == na && gmtime_r(&t, &tm) != NULL)
		strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);

	key_len = cert_ec_key_pem(sk, key_pem, sizeof key_pem);
	cap = key_len + 1;
	for (i = 0; i < cs.chain_len; i++)
		cap += br_pem_encode(NULL, cs.chain[i].data,
		    cs.chain[i].data_len, "CERTIFICATE", BR_PEM_LINE64);
	if (key_len == 0 || (out = malloc(cap)) == NULL) {
		failf(a, "out of memory");
		goto done;
	}
	len = 0;
	if (cfg->key_path == NULL) {
		memcpy(out, key_pem, key_len);
		len = key_len;
	}
	for (i = 0; i < cs.chain_len; i++) {
		n = br_pem_encode(out + len, cs.chain[i].data,
		    cs.chain[i].data_len, "CERTIFICATE", BR_PEM_LINE64);
		len += n;
	}
	if ((cfg->key_path != NULL && cert_write_atomic(cfg->key_path,
	    key_pem, key_len, err, sizeof err) != 0) ||
	    cert_write_atomic(cfg->cert_path, out, len, err, sizeof err) != 0) {
		failf(a, "%s", err);
		goto done;
	}
	acme_log(a, "acme: certificate for %s (%d in chain%s%s) written to %s",
	    a->ident, count, when[0] != '\0' ? ", valid until " : "", when,
	    cfg->cert_path);
	rc = 0;
done:
	if (out != NULL) {
		wipe(out, cap);
		free(out);
	}
	wipe(key_pem, sizeof key_pem);
	cert_free(&cs);
	return rc;
}

/* The identifier as we send it: an IP literal in its canonical text (RFC 8738
 * 3: RFC 5952 for IPv6), or a DNS name of LDH labels.  0, or -1. */
static int
ident_canon(struct acme *a)
{
	const char *id = a->cfg->identifier;
	uint8_t ip[16];
	size_t i, label, n = strlen(id);

	if (a->cfg->identifier_is_ip) {
		if (inet_pton(AF_INET, id, ip) == 1)
			return inet_ntop(AF_INET, ip, a->ident,
			    sizeof a->ident) != NULL ? 0 : -1;
		if (inet_pton(AF_INET6, id, ip) == 1)
			return inet_ntop(AF_INET6, ip, a->ident,
			    sizeof a->ident) != NULL ? 0 : -1;
		return -1;
	}
	/* LDH labels of 1 to 63 bytes, dots between (cert_make_csr agrees);
	 * not something inet_pton would take for an address. */
	if (n == 0 || n > 253 || inet_pton(AF_INET, id, ip) == 1)
		return -1;
	for (i = 0, label = 0; i <= n; i++) {
		if (id[i] == '.' || id[i] == '\0') {
			if (label == 0)
				return -1;
			label = 0;
		} else if ((id[i] >= 'a' && id[i] <= 'z') ||
		    (id[i] >= 'A' && id[i] <= 'Z') || is_digit(id[i]) ||
		    id[i] == '-') {
			if (++label > 63)
				return -1;
		} else {
			return -1;
		}
	}
	memcpy(a->ident, id, n + 1);
	return 0;
}

/* The configuration is the relay's own: a mistake in it is reported, not
 * guessed around. */
static int
config_check(struct acme *a)
{
	const struct acme_config *c = a->cfg;

	a->step = "config";
	if (c->directory_url == NULL || c->ca_file == NULL ||
	    c->account_key_path == NULL || c->cert_path == NULL ||
	    c->identifier == NULL || c->challenge == NULL)
		return failf(a, "directory_url, ca_file, account_key_path, "
		    "cert_path, identifier and challenge are required");
	if ((c->eab_kid == NULL) != (c->eab_key == NULL))
		return failf(a, "EAB needs both the key ID and the HMAC key");
	if ((c->key_path != NULL && (strcmp(c->key_path, c->cert_path) == 0 ||
	    strcmp(c->key_path, c->account_key_path) == 0)) ||
	    strcmp(c->cert_path, c->account_key_path) == 0)
		return failf(a, "account key, key and certificate paths must "
		    "differ");
	if (ident_canon(a) != 0)
		return failf(a, "identifier %.256s is not %s", c->identifier,
		    c->identifier_is_ip ? "an IP address" : "a DNS name");
	return 0;
}

int
acme_obtain(const struct acme_config *cfg, char *err, size_t errlen)
{
	struct acme *a;
	br_ec_private_key sk;
	unsigned char kbuf[BR_EC_KBUF_PRIV_MAX_SIZE];
	uint8_t csr[ACME_CSR_MAX];
	size_t csr_len;
	char msg[ACME_LINE_MAX];
	int rc = -1;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	a = calloc(1, sizeof *a);
	if (a == NULL || (a->body = malloc(ACME_BODY_MAX + 1)) == NULL) {
		free(a);
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "out of memory");
		return -1;
	}
	memset(&sk, 0, sizeof sk);
	a->cfg = cfg;
	a->err = err;
	a->errlen = errlen;
	a->fd = -1;
	a->io_ms = cfg->io_timeout_ms > 0 ? cfg->io_timeout_ms :
	    ACME_IO_TIMEOUT_MS;
	a->deadline_ms = now_ms() + (cfg->total_timeout_ms > 0 ?
	    cfg->total_timeout_ms : ACME_TOTAL_TIMEOUT_MS);
	if (config_check(a) != 0)
		goto done;

	a->step = "ca_file";
	if (tlsc_anchors_load(&a->anchors, cfg->ca_file, msg,
	    sizeof msg) != 0) {
		failf(a, "%s", msg);
		goto done;
	}
	/* One client context for every connection of the run, each one
	 * started by tlsc_client_reset (http_do). */
	tlsc_client_init(&a->cc, &a->xc, &a->anchors);
	br_ssl_engine_set_buffer(&a->cc.eng, a->iobuf, sizeof a->iobuf, 1);
	/* The certificate's key and request, made before any request to the
	 * CA, so that nothing local can fail once an order exists. */
	a->step = "certificate key";
	if (cert_ec_keygen(&sk, kbuf, msg, sizeof msg) != 0) {
		failf(a, "%s", msg);
		goto done;
	}
	csr_len = cert_make_csr(&sk, a->ident, csr, sizeof csr);
	if (csr_len == 0) {
		failf(a, "cannot make a CSR for %s", a->ident);
		goto done;
	}
	if (acme_account_key(a) != 0 || acme_directory(a) != 0 ||
	    acme_account(a) != 0 || acme_order(a, csr, csr_len) != 0)
		goto done;
	a->step = "certificate";
	if (acme_post(a, a->order.certificate, NULL, 0,
	    "application/pem-certificate-chain") != 0)
		goto done;
	rc = acme_save(a, &sk);
done:
	if (a->fd >= 0)
		close(a->fd);
	tlsc_anchors_free(&a->anchors);
	wipe(kbuf, sizeof kbuf);
	wipe(&sk, sizeof sk);
	wipe(a->kbuf, sizeof a->kbuf);
	free(a->body);
	wipe(a, sizeof *a);
	free(a);
	return rc;
}
