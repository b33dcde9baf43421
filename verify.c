/*
 * verify.c -- client admission's wire formats: LocalAPI requests, an HTTP/1.1
 * response reader and a JSON reader, each fed a piece at a time.  See
 * verify.h.
 */
#include "verify.h"

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
		    l[12] != ' ') || num < 200 || num > 599) {
			h->state = VHS_ERROR;
			return;
		}
		h->status = (int)num;
		h->state = VHS_HEADER;
		return;
	case VHS_HEADER:
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
			}
			return;
		}
		/* The end of the head: how the body is framed. */
		if (h->status == 204 || h->status == 304)
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

			if (h->state == VHS_STATUS || h->state == VHS_HEADER) {
				if (++h->head_bytes > VHTTP_HEAD_MAX) {
					h->state = VHS_ERROR;
					break;
				}
			}
			if (c != '\n') {
				if (h->llen == sizeof h->line) {
					h->state = VHS_ERROR;
					break;
				}
				h->line[h->llen++] = c;
				continue;
			}
			if (h->llen > 0 && h->line[h->llen - 1] == '\r')
				h->llen--;
			vhttp_line(h, h->line, h->llen);
			h->llen = 0;
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
