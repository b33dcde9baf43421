/*
 * verify.c -- client admission's wire formats: LocalAPI requests, an HTTP/1.1
 * response reader and a JSON reader, each fed a piece at a time.  See
 * verify.h.
 */
#define _POSIX_C_SOURCE 200809L	/* inet_pton */

#include "verify.h"

#include <sys/socket.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

/* ---- requests ---- */

static size_t
localapi_request(char *out, size_t cap, const char *target, unsigned capver)
{
	int n = snprintf(out, cap, "GET %s HTTP/1.1\r\nHost: "
	    VERIFY_LOCALAPI_HOST "\r\nTailscale-Cap: %u\r\n\r\n", target,
	    capver);

	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

size_t
verify_whois_request(char *out, size_t cap, const uint8_t key[32],
    unsigned capver)
{
	static const char hex[] = "0123456789abcdef";
	char target[40 + 64 + 1];
	size_t i, n;

	n = (size_t)snprintf(target, sizeof target,
	    "/localapi/v0/whois?addr=nodekey%%3A");
	for (i = 0; i < 32; i++) {
		target[n++] = hex[key[i] >> 4];
		target[n++] = hex[key[i] & 15];
	}
	target[n] = '\0';
	return localapi_request(out, cap, target, capver);
}

size_t
verify_status_request(char *out, size_t cap, unsigned capver)
{
	return localapi_request(out, cap, "/localapi/v0/status", capver);
}

/* ---- HTTP/1.1 responses ---- */

enum {
	VHS_STATUS, VHS_HEADER, VHS_BODY_LEN, VHS_BODY_CLOSE, VHS_CHUNK_SIZE,
	VHS_CHUNK_DATA, VHS_CHUNK_END, VHS_TRAILER, VHS_DONE, VHS_ERROR
};

void
vhttp_init(struct vhttp *h)
{
	memset(h, 0, sizeof *h);
	h->state = VHS_STATUS;
}

static int
lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* p[0..n) equals lower-case s, ASCII case aside. */
static int
same_ci(const char *p, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (lower((unsigned char)p[i]) != s[i])
			return 0;
	return 1;
}

/* Does line (len bytes) start with header name (lower case) and a colon?
 * The value after it, spaces trimmed, in *v / *vl. */
static int
header_is(const char *line, size_t len, const char *name, const char **v,
    size_t *vl)
{
	size_t n = strlen(name);

	if (len <= n || line[n] != ':' || !same_ci(line, name, n))
		return 0;
	*v = line + n + 1;
	*vl = len - n - 1;
	while (*vl > 0 && (**v == ' ' || **v == '\t')) {
		(*v)++;
		(*vl)--;
	}
	while (*vl > 0 && ((*v)[*vl - 1] == ' ' || (*v)[*vl - 1] == '\t'))
		(*vl)--;
	return 1;
}

/* A decimal (or, with hex, hexadecimal) number of the whole of p[0..n),
 * at most 2^60; -1 if it is not one. */
static int
parse_num(const char *p, size_t n, int hex, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;
	int d;

	if (n == 0)
		return -1;
	for (i = 0; i < n; i++) {
		int c = lower((unsigned char)p[i]);

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (hex && c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else
			return -1;
		v = v * (hex ? 16 : 10) + (uint64_t)d;
		if (v > ((uint64_t)1 << 60))
			return -1;
	}
	*out = v;
	return 0;
}

/* One complete line (without CR LF) in the states that read lines. */
static void
vhttp_line(struct vhttp *h, const char *l, size_t n)
{
	const char *v;
	size_t vl, k;
	uint64_t num;

	switch (h->state) {
	case VHS_STATUS:
		/* "HTTP/1.x SSS reason" */
		if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || (l[7] != '0' &&
		    l[7] != '1') || l[8] != ' ' ||
		    parse_num(l + 9, 3, 0, &num) != 0 || (n > 12 &&
		    l[12] != ' ') || num < 100) {
			h->state = VHS_ERROR;
			return;
		}
		h->status = (int)num;
		h->state = VHS_HEADER;
		return;
	case VHS_HEADER:
		if (n > 0 && h->line_cut) {
			/* Only a line this reader needs whole is an error. */
			if (header_is(l, n, "content-length", &v, &vl) ||
			    header_is(l, n, "transfer-encoding", &v, &vl) ||
			    header_is(l, n, "location", &v, &vl))
				h->state = VHS_ERROR;
			return;
		}
		if (n > 0) {
			if (header_is(l, n, "content-length", &v, &vl)) {
				if (parse_num(v, vl, 0, &num) != 0 ||
				    (h->have_length && num != h->left)) {
					h->state = VHS_ERROR;
					return;
				}
				h->have_length = 1;
				h->left = num;
			} else if (header_is(l, n, "transfer-encoding", &v,
			    &vl)) {
				if (vl != 7 || !same_ci(v, "chunked", 7)) {
					h->state = VHS_ERROR;
					return;
				}
				h->chunked = 1;
			} else if (header_is(l, n, "location", &v, &vl) &&
			    h->location_len == 0) {
				memcpy(h->location, v, vl);
				h->location_len = vl;
			}
			return;
		}
		/* The end of a head.  An informational one (1xx but 101,
		 * which ends the exchange) has no body: the next head
		 * follows. */
		if (h->status < 200 && h->status != 101) {
			if (++h->informational > VHTTP_INFORMATIONAL_MAX) {
				h->state = VHS_ERROR;
				return;
			}
			h->status = 0;
			h->chunked = h->have_length = 0;
			h->location_len = 0;
			h->state = VHS_STATUS;
			return;
		}
		/* The end of the head: how the body is framed. */
		h->head_done = 1;
		if (h->status < 200 || h->status == 204 || h->status == 304)
			h->state = VHS_DONE;
		else if (h->chunked)
			h->state = VHS_CHUNK_SIZE;
		else if (h->have_length)
			h->state = h->left > 0 ? VHS_BODY_LEN : VHS_DONE;
		else
			h->state = VHS_BODY_CLOSE;
		return;
	case VHS_CHUNK_SIZE:
		for (k = 0; k < n && l[k] != ';'; k++)
			continue;
		while (k > 0 && (l[k - 1] == ' ' || l[k - 1] == '\t'))
			k--;
		if (parse_num(l, k, 1, &num) != 0) {
			h->state = VHS_ERROR;
			return;
		}
		h->left = num;
		h->state = num > 0 ? VHS_CHUNK_DATA : VHS_TRAILER;
		return;
	case VHS_CHUNK_END:
		h->state = n == 0 ? VHS_CHUNK_SIZE : VHS_ERROR;
		return;
	case VHS_TRAILER:
		if (n == 0)
			h->state = VHS_DONE;
		return;
	default:
		h->state = VHS_ERROR;
		return;
	}
}

static int
reads_lines(int state)
{
	return state == VHS_STATUS || state == VHS_HEADER ||
	    state == VHS_CHUNK_SIZE || state == VHS_CHUNK_END ||
	    state == VHS_TRAILER;
}

int
vhttp_feed(struct vhttp *h, const uint8_t *p, size_t n, size_t *used,
    vhttp_sink sink, void *ctx)
{
	size_t i = 0, take;

	while (i < n && h->state != VHS_DONE && h->state != VHS_ERROR) {
		if (reads_lines(h->state)) {
			char c = (char)p[i++];

			/* Head and trailer lines: bounded together, and
			 * cut rather than refused when overlong. */
			int head = h->state != VHS_CHUNK_SIZE &&
			    h->state != VHS_CHUNK_END;

			if (head && ++h->head_bytes > VHTTP_HEAD_MAX) {
				h->state = VHS_ERROR;
				break;
			}
			if (c != '\n') {
				if (h->llen < sizeof h->line)
					h->line[h->llen++] = c;
				else if (head)
					h->line_cut = 1;
				else {
					h->state = VHS_ERROR;
					break;
				}
				continue;
			}
			if (!h->line_cut && h->llen > 0 &&
			    h->line[h->llen - 1] == '\r')
				h->llen--;
			vhttp_line(h, h->line, h->llen);
			h->llen = 0;
			h->line_cut = 0;
			continue;
		}
		take = n - i;
		if (h->state != VHS_BODY_CLOSE && take > h->left)
			take = (size_t)h->left;
		if (take > 0 && sink != NULL)
			sink(ctx, p + i, take);
		i += take;
		if (h->state == VHS_BODY_CLOSE)
			continue;
		h->left -= take;
		if (h->left == 0)
			h->state = h->state == VHS_BODY_LEN ? VHS_DONE :
			    VHS_CHUNK_END;
	}
	*used = i;
	return h->state == VHS_DONE ? VH_DONE : h->state == VHS_ERROR ?
	    VH_ERROR : VH_MORE;
}

int
vhttp_eof(struct vhttp *h)
{
	if (h->state == VHS_BODY_CLOSE)
		h->state = VHS_DONE;
	return h->state == VHS_DONE ? VH_DONE : VH_ERROR;
}

/* ---- JSON ---- */

enum {
	VJS_VALUE, VJS_AFTER, VJS_KEY, VJS_COLON, VJS_STRING, VJS_NUMBER,
	VJS_LITERAL, VJS_DONE, VJS_ERROR
};
/* VJS_STRING's sub: plain, after a backslash, in a \u escape. */
enum { STR_PLAIN, STR_ESC, STR_U };
/* VJS_NUMBER's sub, after: '-', a leading 0, integer digits, '.',
 * fraction digits, 'e', the exponent's sign, exponent digits. */
enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };

void
vjson_init(struct vjson *j, vjson_event ev, void *ctx)
{
	memset(j, 0, sizeof *j);
	j->state = VJS_VALUE;
	j->ev = ev;
	j->ctx = ctx;
}

static void
emit(struct vjson *j, int kind, int depth, const char *text)
{
	if (j->ev != NULL)
		j->ev(j->ctx, j, kind, depth, text);
}

static void
value_done(struct vjson *j)
{
	j->state = j->depth == 0 ? VJS_DONE : VJS_AFTER;
}

static void
text_add(struct vjson *j, unsigned c)
{
	if (c == 0 || c >= 0x80 || j->text_len == VJSON_TEXT_MAX) {
		j->text_bad = 1;
		return;
	}
	j->text[j->text_len++] = (char)c;
}

static int
hexval(int c)
{
	c = lower(c);
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ?
	    c - 'a' + 10 : -1;
}

/* A string ended: a key (remembered in the path) or a value. */
static void
string_done(struct vjson *j)
{
	const char *t;

	j->text[j->text_len] = '\0';
	t = j->text_bad ? NULL : j->text;
	if (j->expect_key) {
		if (j->depth >= 1 && j->depth <= 2) {
			memcpy(j->path[j->depth - 1], j->text,
			    (size_t)j->text_len + 1);
			j->path_ok[j->depth - 1] = !j->text_bad;
		}
		emit(j, VJ_KEY, j->depth, t);
		j->expect_key = 0;
		j->state = VJS_COLON;
		return;
	}
	emit(j, VJ_STRING, j->depth, t);
	value_done(j);
}

static void
open_container(struct vjson *j, int obj)
{
	if (j->depth == VJSON_DEPTH_MAX) {
		j->state = VJS_ERROR;
		return;
	}
	emit(j, VJ_OPEN, j->depth, obj ? "{" : "[");
	j->is_obj[j->depth++] = (uint8_t)obj;
	if (j->depth <= 2)
		j->path_ok[j->depth - 1] = 0;
	j->sub = 1;		/* an immediate close is allowed */
	j->state = obj ? VJS_KEY : VJS_VALUE;
}

static void
close_container(struct vjson *j, int obj)
{
	if (j->depth == 0 || j->is_obj[j->depth - 1] != obj) {
		j->state = VJS_ERROR;
		return;
	}
	j->depth--;
	emit(j, VJ_CLOSE, j->depth, obj ? "}" : "]");
	value_done(j);
}

static int
is_ws(int c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* One byte in a number; 0 when it is not part of it (the number ended
 * before it: the caller reads it again as what follows). */
static int
number_byte(struct vjson *j, int c)
{
	int digit = c >= '0' && c <= '9';

	switch (j->sub) {
	case N_MINUS:
		if (!digit)
			break;
		j->sub = c == '0' ? N_ZERO : N_INT;
		return 1;
	case N_ZERO:
	case N_INT:
		if (digit && j->sub == N_INT)
			return 1;
		if (c == '.') {
			j->sub = N_DOT;
			return 1;
		}
		if (c == 'e' || c == 'E') {
			j->sub = N_E;
			return 1;
		}
		return 0;
	case N_DOT:
		if (!digit)
			break;
		j->sub = N_FRAC;
		return 1;
	case N_FRAC:
		if (digit)
			return 1;
		if (c == 'e' || c == 'E') {
			j->sub = N_E;
			return 1;
		}
		return 0;
	case N_E:
		if (c == '+' || c == '-') {
			j->sub = N_ESIGN;
			return 1;
		}
		/* FALLTHROUGH */
	case N_ESIGN:
		if (!digit)
			break;
		j->sub = N_EXP;
		return 1;
	case N_EXP:
		return digit;
	}
	j->state = VJS_ERROR;
	return 1;
}

/* May the number end here (not after '-', '.', 'e' or its sign)? */
static int
number_complete(const struct vjson *j)
{
	return j->sub == N_ZERO || j->sub == N_INT || j->sub == N_FRAC ||
	    j->sub == N_EXP;
}

/* A string begins (after its quote): a key, or a value. */
static void
string_start(struct vjson *j, int key)
{
	j->expect_key = key;
	j->state = VJS_STRING;
	j->sub = STR_PLAIN;
	j->text_len = j->text_bad = 0;
}

/* Start a value at byte c. */
static void
value_start(struct vjson *j, int c)
{
	if (c == '{' || c == '[') {
		open_container(j, c == '{');
	} else if (c == ']' && j->sub == 1 && j->depth > 0 &&
	    !j->is_obj[j->depth - 1]) {
		close_container(j, 0);
	} else if (c == '"') {
		string_start(j, 0);
	} else if (c == '-' || (c >= '0' && c <= '9')) {
		j->state = VJS_NUMBER;
		j->sub = c == '-' ? N_MINUS : c == '0' ? N_ZERO : N_INT;
	} else if (c == 't' || c == 'f' || c == 'n') {
		j->lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
		j->lit_pos = 1;
		j->state = VJS_LITERAL;
	} else {
		j->state = VJS_ERROR;
	}
}

int
vjson_feed(struct vjson *j, const uint8_t *p, size_t n, size_t *used)
{
	size_t i = 0;
	int c, h;

	while (i < n && j->state != VJS_DONE && j->state != VJS_ERROR) {
		c = p[i];
		switch (j->state) {
		case VJS_VALUE:
			if (!is_ws(c))
				value_start(j, c);
			break;
		case VJS_AFTER:
			if (is_ws(c))
				break;
			if (c == ',') {
				j->sub = 0;
				j->state = j->is_obj[j->depth - 1] ? VJS_KEY :
				    VJS_VALUE;
			} else if (c == '}' || c == ']') {
				close_container(j, c == '}');
			} else {
				j->state = VJS_ERROR;
			}
			break;
		case VJS_KEY:
			if (is_ws(c))
				break;
			if (c == '}' && j->sub == 1) {
				close_container(j, 1);
			} else if (c == '"') {
				string_start(j, 1);
			} else {
				j->state = VJS_ERROR;
			}
			break;
		case VJS_COLON:
			if (is_ws(c))
				break;
			j->sub = 0;
			j->state = c == ':' ? VJS_VALUE : VJS_ERROR;
			break;
		case VJS_STRING:
			if (j->sub == STR_PLAIN) {
				if (c == '"')
					string_done(j);
				else if (c == '\\')
					j->sub = STR_ESC;
				else if (c < 0x20)
					j->state = VJS_ERROR;
				else
					text_add(j, (unsigned)c);
			} else if (j->sub == STR_ESC) {
				const char *e = strchr("\"\\/bfnrt", c);
				static const char dec[] = "\"\\/\b\f\n\r\t";

				if (c == 'u') {
					j->sub = STR_U;
					j->uesc = j->uesc_n = 0;
				} else if (c != 0 && e != NULL) {
					text_add(j, (unsigned char)dec[e -
					    "\"\\/bfnrt"]);
					j->sub = STR_PLAIN;
				} else {
					j->state = VJS_ERROR;
				}
			} else {
				if ((h = hexval(c)) < 0) {
					j->state = VJS_ERROR;
					break;
				}
				j->uesc = j->uesc * 16 + (unsigned)h;
				if (++j->uesc_n == 4) {
					text_add(j, j->uesc);
					j->sub = STR_PLAIN;
				}
			}
			break;
		case VJS_NUMBER:
			if (number_byte(j, c))
				break;
			/* The number ended before c: read c again. */
			emit(j, VJ_NUMBER, j->depth, NULL);
			value_done(j);
			if (j->state == VJS_DONE)
				goto out;
			continue;
		case VJS_LITERAL:
			if (c != j->lit[j->lit_pos]) {
				j->state = VJS_ERROR;
				break;
			}
			if (j->lit[++j->lit_pos] == '\0') {
				emit(j, VJ_LITERAL, j->depth, j->lit);
				value_done(j);
			}
			break;
		}
		i++;
	}
out:
	*used = i;
	return j->state == VJS_DONE ? VJ_DONE : j->state == VJS_ERROR ?
	    VJ_ERROR : VJ_MORE;
}

int
vjson_finish(struct vjson *j)
{
	if (j->state == VJS_NUMBER && j->depth == 0 && number_complete(j)) {
		emit(j, VJ_NUMBER, 0, NULL);
		j->state = VJS_DONE;
	}
	return j->state == VJS_DONE ? VJ_DONE : VJ_ERROR;
}

/* ---- judging an answer ---- */

static int
text_is(const char *t, const char *want)
{
	return t != NULL && strcmp(t, want) == 0;
}

/* The key "nodekey:<64 lower-case hex>" names (the form key_text writes
 * and found compares): 0, or -1 if text is not one. */
static int
key_from_text(const char *text, uint8_t key[32])
{
	size_t i;
	int hi, lo;

	if (strlen(text) != 8 + 64 || memcmp(text, "nodekey:", 8) != 0)
		return -1;
	for (i = 0; i < 32; i++) {
		hi = hexval((unsigned char)text[8 + 2 * i]);
		lo = hexval((unsigned char)text[9 + 2 * i]);
		if (hi < 0 || lo < 0 || text[8 + 2 * i] != lower(text[8 +
		    2 * i]) || text[9 + 2 * i] != lower(text[9 + 2 * i]))
			return -1;
		key[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/* The JSON reader's events: status looks for the key as Self.PublicKey or
 * as a member name of Peer; the webhook for a top-level boolean "Allow"
 * (member names match case-insensitively, as Go's decoder matches them). */
static void
judge_event(void *ctx, const struct vjson *j, int kind, int depth,
    const char *text)
{
	struct vjudge *v = ctx;

	if (depth == 0 && kind == VJ_OPEN)
		v->top_obj = text[0] == '{';
	else if (depth == 0 && kind == VJ_LITERAL)
		v->top_null = text_is(text, "null");
	if (v->kind == VQ_STATUS) {
		uint8_t key[32];

		if (depth != 2 || !j->path_ok[0] || text == NULL)
			return;
		if (!(kind == VJ_KEY && strcmp(j->path[0], "Peer") == 0) &&
		    !(kind == VJ_STRING && strcmp(j->path[0], "Self") == 0 &&
		    j->path_ok[1] && strcmp(j->path[1], "PublicKey") == 0))
			return;
		if (strcmp(text, v->keytext) == 0)
			v->found = 1;
		if (v->key_seen != NULL && key_from_text(text, key) == 0)
			v->key_seen(v->key_ctx, key);
		return;
	}
	if (v->kind != VQ_HOOK)
		return;
	if (depth != 1 || !v->top_obj)
		return;
	if (kind == VJ_KEY) {
		v->allow_next = text != NULL && strlen(text) == 5 &&
		    same_ci(text, "allow", 5);
		return;
	}
	if (!v->allow_next)
		return;
	v->allow_next = 0;
	if (kind == VJ_LITERAL && strcmp(text, "null") != 0)
		v->found = text[0] == 't';
	else if (kind != VJ_LITERAL)
		v->type_bad = 1;	/* a string, number or container */
}

/* "nodekey:<64 lower-case hex>", as JSON and LocalAPI write a key. */
static void
key_text(char out[8 + 64 + 1], const uint8_t key[32])
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	memcpy(out, "nodekey:", 8);
	for (i = 0; i < 32; i++) {
		out[8 + 2 * i] = hex[key[i] >> 4];
		out[9 + 2 * i] = hex[key[i] & 15];
	}
	out[72] = '\0';
}

void
vjudge_init(struct vjudge *v, int kind, const uint8_t key[32])
{
	memset(v, 0, sizeof *v);
	v->kind = kind;
	key_text(v->keytext, key);
	vhttp_init(&v->http);
	vjson_init(&v->json, judge_event, v);
	v->json_rc = VJ_MORE;
	v->body_max = kind == VQ_STATUS ? VERIFY_STATUS_BODY_MAX :
	    kind == VQ_HOOK ? VERIFY_HOOK_BODY_MAX : VERIFY_WHOIS_BODY_MAX;
}

static int
decide(struct vjudge *v, int verdict, const char *why)
{
	if (v->verdict == VV_MORE) {
		v->verdict = verdict;
		v->why = why;
	}
	return v->verdict;
}

/* Body bytes as vhttp de-chunks them. */
static void
judge_body(void *ctx, const uint8_t *p, size_t n)
{
	struct vjudge *v = ctx;
	size_t used, k;

	if (v->verdict != VV_MORE)
		return;
	if (v->http.status != 200) {
		/* Only whois's 400 is read, for its first bytes. */
		k = sizeof v->start - 1 - v->start_len;
		if (k > n)
			k = n;
		memcpy(v->start + v->start_len, p, k);
		v->start_len += k;
		return;
	}
	if (n > v->body_max - v->body_bytes) {
		if (v->kind == VQ_HOOK)
			n = (size_t)(v->body_max - v->body_bytes);
		else {
			decide(v, VV_DENY, "answer too large");
			return;
		}
	}
	v->body_bytes += n;
	if (v->json_rc == VJ_MORE) {
		v->json_rc = vjson_feed(&v->json, p, n, &used);
		p += used;
		n -= used;
	}
	/* tailscaled's answers are decoded whole (Go's json.Unmarshal): only
	 * white space may follow the value.  Of the webhook's, the first
	 * value is all that is read. */
	for (k = 0; v->json_rc == VJ_DONE && v->kind != VQ_HOOK && k < n; k++)
		if (p[k] != ' ' && p[k] != '\t' && p[k] != '\r' && p[k] != '\n')
			v->json_rc = VJ_ERROR;
}

/* What the head alone decides, once it is in. */
static int
judge_head(struct vjudge *v)
{
	int st = v->http.status;

	if (v->kind == VQ_HOOK) {
		if ((st == 301 || st == 302 || st == 303 || st == 307 ||
		    st == 308) && v->http.location_len > 0)
			return decide(v, VV_REDIRECT, "redirect");
		if (st != 200)
			return decide(v, VV_DENY, "webhook answered a status "
			    "other than 200");
		return VV_MORE;
	}
	if (st == 404)
		return decide(v, VV_DENY, v->kind == VQ_WHOIS ?
		    "not authorized (tailscaled does not know the node)" :
		    "tailscaled answered 404");
	if (st != 200 && !(st == 400 && v->kind == VQ_WHOIS)) {
		return decide(v, VV_DENY, "tailscaled answered an unexpected "
		    "status");
	}
	return VV_MORE;
}

/* The JSON is complete or broken: the verdict. */
static int
judge_json(struct vjudge *v)
{
	if (v->json_rc == VJ_ERROR)
		return decide(v, VV_DENY, v->kind == VQ_HOOK ?
		    "webhook answer is not JSON" : "tailscaled's answer is not "
		    "JSON");
	switch (v->kind) {
	case VQ_WHOIS:
		/* derper decodes it into a pointer to a struct: an object,
		 * or null; any other JSON value fails the check. */
		return v->top_obj || v->top_null ? decide(v, VV_ALLOW,
		    "known to tailscaled") : decide(v, VV_DENY, "tailscaled's "
		    "whois answer is not an object");
	case VQ_STATUS:
		return v->found ? decide(v, VV_ALLOW, "a node of the "
		    "tailnet (status)") : decide(v, VV_DENY, "not authorized "
		    "(not this node nor a peer in tailscaled's status)");
	default:
		if (!v->top_obj || v->type_bad)
			return decide(v, VV_DENY, "webhook answer does not "
			    "decode");
		return v->found ? decide(v, VV_ALLOW, "webhook allowed") :
		    decide(v, VV_DENY, "webhook denied");
	}
}

/* The answer ended (its framing, or the peer's close). */
static int
judge_end(struct vjudge *v)
{
	if (v->http.status == 400 && v->kind == VQ_WHOIS)
		return v->start_len >= sizeof VERIFY_OLD_BODY - 1 &&
		    memcmp(v->start, VERIFY_OLD_BODY, sizeof VERIFY_OLD_BODY -
		    1) == 0 ? decide(v, VV_OLD, "tailscaled older than 1.70") :
		    decide(v, VV_DENY, "tailscaled answered 400");
	if (v->json_rc == VJ_MORE)
		v->json_rc = vjson_finish(&v->json);
	return judge_json(v);
}

int
vjudge_feed(struct vjudge *v, const uint8_t *p, size_t n)
{
	size_t used = 0, off = 0;
	int rc, had_head;

	while (v->verdict == VV_MORE && off < n) {
		had_head = v->http.head_done;
		rc = vhttp_feed(&v->http, p + off, n - off, &used, judge_body,
		    v);
		off += used;
		if (rc == VH_ERROR)
			return decide(v, VV_BROKEN, "answer is not HTTP/1.1");
		if (!had_head && v->http.head_done && judge_head(v) != VV_MORE)
			break;
		if (v->verdict != VV_MORE)
			break;
		/* The webhook's first JSON value decides, whatever follows
		 * it; a JSON error decides at once. */
		if (v->json_rc == VJ_ERROR || (v->kind == VQ_HOOK &&
		    v->json_rc == VJ_DONE))
			return judge_json(v);
		if (v->kind == VQ_HOOK && v->body_bytes == v->body_max &&
		    v->json_rc == VJ_MORE)
			return decide(v, VV_DENY, "webhook answer does not "
			    "decode in 4096 bytes");
		if (rc == VH_DONE)
			return judge_end(v);
	}
	return v->verdict;
}

int
vjudge_eof(struct vjudge *v)
{
	if (v->verdict != VV_MORE)
		return v->verdict;
	if (vhttp_eof(&v->http) != VH_DONE)
		return decide(v, VV_BROKEN, "answer ended early");
	return judge_end(v);
}

/* ---- the webhook's request ---- */

static int
url_text_ok(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
			return 0;
	return 1;
}

static int
is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9');
}

/* Does the host's last label (a trailing dot aside) spell a number, decimal
 * or 0x hex?  Then it is an IPv4 address or nothing (the WHATWG URL rule):
 * getaddrinfo (inet_aton) reads "2130706433", "127.1", "0x7f.1" and
 * "010.0.0.1" as addresses that inet_pton refuses, so a host that the
 * relay's check and the resolver would read differently never gets that
 * far. */
static int
ends_in_number(const char *h, size_t n)
{
	size_t i;

	if (n > 0 && h[n - 1] == '.')
		n--;
	for (i = n; i > 0 && h[i - 1] != '.'; i--)
		continue;
	h += i;
	n -= i;
	if (n >= 2 && h[0] == '0' && (h[1] == 'x' || h[1] == 'X')) {
		for (i = 2; i < n; i++)
			if (hexval(h[i]) < 0)
				return 0;
		return 1;
	}
	for (i = 0; i < n; i++)
		if (h[i] < '0' || h[i] > '9')
			return 0;
	return n > 0;
}

/* A host outside brackets: an IPv4 literal as inet_pton reads it (1, is an
 * IP), or a DNS name of letters, digits, '-' and '_' in non-empty labels
 * with at most one trailing dot (0); -1 for anything else (percent escapes,
 * other punctuation, bytes over 0x7f, a number that is no dotted quad). */
static int
host_kind(const char *h)
{
	uint8_t ip[4];
	size_t i, n = strlen(h);

	if (inet_pton(AF_INET, h, ip) == 1)
		return 1;
	if (ends_in_number(h, n))
		return -1;
	for (i = 0; i < n; i++) {
		if (h[i] == '.') {
			if (i == 0 || h[i - 1] == '.')
				return -1;
		} else if (!is_alnum(h[i]) && h[i] != '-' && h[i] != '_') {
			return -1;
		}
	}
	return 0;
}

/* scheme://authority then the rest (path, query; fragment dropped). */
static int
url_split(const char *s, size_t n, struct vurl *u)
{
	const char *a, *end, *colon, *rb, *stop = s + n;
	uint8_t ip6[16];
	size_t k;
	unsigned long port;
	int kind, slash;

	memset(u, 0, sizeof *u);
	if (n >= VURL_MAX || !url_text_ok(s, n))
		return -1;
	if (n > 8 && same_ci(s, "https://", 8)) {
		u->https = 1;
		a = s + 8;
	} else if (n > 7 && same_ci(s, "http://", 7)) {
		a = s + 7;
	} else {
		return -1;
	}
	for (end = a; end < stop && *end != '/' && *end != '?' &&
	    *end != '#'; end++)
		continue;
	if (memchr(a, '@', (size_t)(end - a)) != NULL || end == a ||
	    (size_t)(end - a) >= sizeof u->authority)
		return -1;
	if (a[0] == '[') {
		/* An IPv6 literal as inet_pton reads it: no zone, no IPv4
		 * in brackets, nothing else. */
		rb = memchr(a, ']', (size_t)(end - a));
		if (rb == NULL || (size_t)(rb - a - 1) >= sizeof u->host)
			return -1;
		memcpy(u->host, a + 1, (size_t)(rb - a - 1));
		if (inet_pton(AF_INET6, u->host, ip6) != 1)
			return -1;
		u->is_ip = 1;
		if (rb + 1 < end && rb[1] != ':')
			return -1;
		colon = rb + 1 < end ? rb + 1 : NULL;
	} else {
		colon = memchr(a, ':', (size_t)(end - a));
		k = (size_t)((colon != NULL ? colon : end) - a);
		if (k == 0 || k >= sizeof u->host)
			return -1;
		memcpy(u->host, a, k);
		if ((kind = host_kind(u->host)) < 0)
			return -1;
		u->is_ip = kind;
	}
	port = u->https ? 443 : 80;
	if (colon != NULL) {
		/* 1 to 5 digits (leading zeros as Go takes them), no sign. */
		if (end - colon < 2 || end - colon > 6)
			return -1;
		port = 0;
		for (k = 1; colon + k < end; k++) {
			if (colon[k] < '0' || colon[k] > '9')
				return -1;
			port = port * 10 + (unsigned long)(colon[k] - '0');
		}
		if (port < 1 || port > 65535)
			return -1;
	}
	snprintf(u->port, sizeof u->port, "%lu", port);
	memcpy(u->authority, a, (size_t)(end - a));
	/* The path and query, without the fragment; "/" when empty.  end may
	 * be stop (a Location is not NUL-terminated): k says what is there. */
	for (k = 0; end + k < stop && end[k] != '#'; k++)
		continue;
	slash = k > 0 && end[0] == '/';
	if (!slash)
		u->path[0] = '/';
	memcpy(u->path + !slash, end, k);
	return 0;
}

int
vurl_parse(const char *s, struct vurl *u)
{
	return url_split(s, strlen(s), u);
}

/* Does loc start with a scheme (RFC 3986 3.1: a letter, then letters,
 * digits, '+', '-' or '.', then ':')?  Then it is absolute, whatever the
 * scheme: "ftp://x" or "mailto:x" is not a path relative to the base. */
static int
has_scheme(const char *loc, size_t len)
{
	size_t i;

	if (len == 0 || !is_alnum(loc[0]) || (loc[0] >= '0' && loc[0] <= '9'))
		return 0;
	for (i = 1; i < len; i++) {
		if (loc[i] == ':')
			return 1;
		if (!is_alnum(loc[i]) && loc[i] != '+' && loc[i] != '-' &&
		    loc[i] != '.')
			return 0;
	}
	return 0;
}

int
vurl_resolve(const struct vurl *base, const char *loc, size_t len,
    struct vurl *out)
{
	char buf[VURL_MAX];
	const char *slash;
	size_t k, dir;
	int n;

	if (len >= VURL_MAX || !url_text_ok(loc, len))
		return -1;
	if (has_scheme(loc, len))
		return url_split(loc, len, out);	/* http(s) only */
	if (len >= 2 && loc[0] == '/' && loc[1] == '/')
		n = snprintf(buf, sizeof buf, "%s:%.*s", base->https ?
		    "https" : "http", (int)len, loc);
	else if (len >= 1 && loc[0] == '/')
		n = snprintf(buf, sizeof buf, "%s://%s%.*s", base->https ?
		    "https" : "http", base->authority, (int)len, loc);
	else {
		/* Relative: base's path up to its last '/' before any query. */
		k = strcspn(base->path, "?");
		for (slash = NULL, dir = 0; dir < k; dir++)
			if (base->path[dir] == '/')
				slash = base->path + dir;
		dir = slash != NULL ? (size_t)(slash - base->path) + 1 : 1;
		n = snprintf(buf, sizeof buf, "%s://%s%.*s%.*s", base->https ?
		    "https" : "http", base->authority, (int)dir, base->path,
		    (int)len, loc);
	}
	if (n < 0 || (size_t)n >= sizeof buf)
		return -1;
	return url_split(buf, (size_t)n, out);
}

size_t
verify_hook_body(char *out, size_t cap, const uint8_t key[32], const char *ip)
{
	char kt[8 + 64 + 1];
	size_t i;
	int n;

	for (i = 0; ip[i] != '\0'; i++)
		if (hexval(ip[i]) < 0 && ip[i] != '.' && ip[i] != ':')
			return 0;	/* an address's text needs no escaping */
	key_text(kt, key);
	n = snprintf(out, cap, "{\"NodePublic\":\"%s\",\"Source\":\"%s\"}",
	    kt, ip);
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

size_t
verify_hook_request(char *out, size_t cap, const struct vurl *u, int post,
    const char *referer, const char *body, size_t body_len)
{
	char length[40] = "";
	int n;

	if (body != NULL)
		snprintf(length, sizeof length, "Content-Length: %zu\r\n",
		    body_len);
	n = snprintf(out, cap, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: "
	    "Go-http-client/1.1\r\n%s%s%s%s\r\n%.*s", post ? "POST" : "GET",
	    u->path, u->authority, length, referer != NULL ? "Referer: " : "",
	    referer != NULL ? referer : "", referer != NULL ? "\r\n" : "",
	    body != NULL ? (int)body_len : 0, body != NULL ? body : "");
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

size_t
verify_hook_referer(char *out, size_t cap, const struct vurl *from,
    const struct vurl *to)
{
	int n;

	if (from->https && !to->https)
		return 0;
	n = snprintf(out, cap, "%s://%s%s", from->https ? "https" : "http",
	    from->authority, from->path);
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}
