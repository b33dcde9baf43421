/*
 * verify.h -- client admission's wire formats (derp-protocol.md 14): the
 * LocalAPI requests -verify-clients sends to tailscaled, a reader of HTTP/1.1
 * responses that takes them a piece at a time, and a JSON reader that checks
 * a document and reports the keys and values along the way, for documents of
 * any size (tailscaled's /localapi/v0/status of a big tailnet is megabytes,
 * chunked).  Fixed state, caller-owned buffers, no allocation, no sockets:
 * the relay's loop feeds them what its non-blocking sockets read.
 * It also judges an answer (vjudge: tailscaled's whois and status, the
 * webhook's) and writes the webhook's request; derp.c moves the bytes.
 */
#ifndef VERIFY_H
#define VERIFY_H

#include <stddef.h>
#include <stdint.h>

/* tailscaled refuses any other Host (derp-protocol.md 14.1). */
#define VERIFY_LOCALAPI_HOST "local-tailscaled.sock"

/* "GET /localapi/v0/whois?addr=nodekey%3A<64 hex> HTTP/1.1" with Host and
 * Tailscale-Cap (capver) and nothing else: its length, 0 if cap is short. */
size_t verify_whois_request(char *out, size_t cap, const uint8_t key[32],
    unsigned capver);
/* The same for GET /localapi/v0/status (tailscaled older than 1.70). */
size_t verify_status_request(char *out, size_t cap, unsigned capver);

/* ---- HTTP/1.1 responses ---- */

#define VHTTP_LINE_MAX 1024		/* a head line, a chunk-size line */
#define VHTTP_HEAD_MAX (1024 * 1024)	/* the whole head, 1xx heads included */
#define VHTTP_INFORMATIONAL_MAX 5	/* 1xx heads skipped (as Go's client) */

enum { VH_MORE = 0, VH_DONE = 1, VH_ERROR = -1 };

struct vhttp {
	int state;			/* VHS_* in verify.c */
	int status;			/* the status code, once the head is in */
	int chunked, have_length;
	int head_done;			/* the blank line after the final head */
	int informational;		/* 1xx heads skipped so far */
	int line_cut;			/* the line outgrew line[]: its rest is
					 * dropped */
	uint64_t left;			/* body bytes, or the chunk's, still due */
	size_t location_len;		/* Location's value, when given */
	char location[VHTTP_LINE_MAX];
	size_t head_bytes, llen;
	char line[VHTTP_LINE_MAX];
};

typedef void (*vhttp_sink)(void *ctx, const uint8_t *p, size_t n);

void vhttp_init(struct vhttp *h);
/* Take n bytes of the response; body bytes (de-chunked) go to sink as they
 * come, once the head is complete (h->status set).  VH_MORE: wants more;
 * VH_DONE: the response ended (*used says how much of p it took); VH_ERROR:
 * not an HTTP/1.x response this reader accepts (an overlong head, chunk-size
 * line, or Content-Length, Transfer-Encoding or Location line; a bad chunk
 * size; more than VHTTP_INFORMATIONAL_MAX 1xx heads).  As Go's client:
 * any three-digit status is a status; 1xx heads but 101 are skipped; the
 * first Location counts; other overlong header lines are ignored. */
int vhttp_feed(struct vhttp *h, const uint8_t *p, size_t n, size_t *used,
    vhttp_sink sink, void *ctx);
/* The peer closed: VH_DONE when that ends the response (a body without
 * length or chunking ends at close), else VH_ERROR. */
int vhttp_eof(struct vhttp *h);

/* ---- JSON ---- */

#define VJSON_DEPTH_MAX 64		/* deeper documents are refused */
#define VJSON_TEXT_MAX 80		/* keys and strings kept (longer:
					 * kept as "too long", equal to none) */

enum { VJ_MORE = 0, VJ_DONE = 1, VJ_ERROR = -1 };
/* What the reader reports to its callback. */
enum { VJ_KEY = 1, VJ_STRING, VJ_LITERAL, VJ_NUMBER, VJ_OPEN, VJ_CLOSE };

struct vjson;
/* kind (VJ_*), depth of the value or key (the top value is 0; the members
 * of the top object are 1), and for VJ_KEY and VJ_STRING the decoded text
 * (NUL-terminated, NULL when longer than VJSON_TEXT_MAX or not ASCII), for
 * VJ_LITERAL "true", "false" or "null".  path[d] is the key under which the
 * container at depth d + 1 lies (path[0] for members of the top object's
 * members), as far as known and kept. */
typedef void (*vjson_event)(void *ctx, const struct vjson *j, int kind,
    int depth, const char *text);

struct vjson {
	int state, sub;			/* VJS_* in verify.c */
	int depth;			/* open containers */
	uint8_t is_obj[VJSON_DEPTH_MAX];	/* container kinds, by depth */
	int expect_key;			/* inside an object, before a key */
	int text_len, text_bad;		/* the string being read */
	unsigned uesc, uesc_n;		/* a \uXXXX escape being read */
	const char *lit;		/* the literal being matched */
	int lit_pos;
	char text[VJSON_TEXT_MAX + 1];
	char path[2][VJSON_TEXT_MAX + 1];	/* keys at depths 1 and 2 */
	int path_ok[2];
	vjson_event ev;
	void *ctx;
};

void vjson_init(struct vjson *j, vjson_event ev, void *ctx);
/* Take n bytes.  VJ_MORE: the top value is not complete yet; VJ_DONE: it is
 * (*used says how much of p it took: the rest is after it); VJ_ERROR: not
 * JSON (as Go's decoder would refuse it), or deeper than VJSON_DEPTH_MAX. */
int vjson_feed(struct vjson *j, const uint8_t *p, size_t n, size_t *used);
/* The input ended: VJ_DONE when a complete value was read (a number at the
 * end completes here), else VJ_ERROR. */
int vjson_finish(struct vjson *j);

/* ---- judging an answer (derp-protocol.md 14) ---- */

/* What is asked. */
enum { VQ_WHOIS = 1, VQ_STATUS, VQ_HOOK };
/* The verdict on an answer so far: VV_MORE wants more bytes; VV_OLD is
 * whois's "invalid 'addr' parameter" of a tailscaled older than 1.70 (ask
 * /status instead); VV_REDIRECT is a webhook's 301/302/303/307/308 with a
 * Location (in http.location); VV_BROKEN is an answer that is not HTTP/1.x
 * or ended early, which the webhook's fail-open treats as a transport
 * failure (as Go's client reports it). */
enum { VV_MORE = 0, VV_ALLOW, VV_DENY, VV_OLD, VV_REDIRECT, VV_BROKEN };

#define VERIFY_WHOIS_BODY_MAX	(1u << 20)	/* a whois answer is ~2 KB */
#define VERIFY_STATUS_BODY_MAX	(64u << 20)	/* a big tailnet's status */
#define VERIFY_HOOK_BODY_MAX	4096		/* derper reads no more */
#define VERIFY_OLD_BODY "invalid 'addr' parameter"

struct vjudge {
	int kind;			/* VQ_* */
	char keytext[8 + 64 + 1];	/* "nodekey:<64 hex>" */
	struct vhttp http;
	struct vjson json;
	uint64_t body_bytes, body_max;
	int json_rc;			/* VJ_* of the body's JSON so far */
	int found;			/* status: the key is Self's or a Peer's;
					 * hook: Allow's value (last wins) */
	int allow_next;			/* hook: the next depth-1 value is Allow's */
	int type_bad;			/* hook: Allow is not a boolean (or null) */
	int top_obj;			/* the top value is an object */
	int top_null;			/* the top value is null */
	size_t start_len;		/* whois 400: its body's first bytes */
	char start[sizeof VERIFY_OLD_BODY];
	int verdict;			/* once decided */
	const char *why;		/* a short reason for the log line */
	/* status: called with every key the answer names as the node's own
	 * or a peer's (so one fetch can serve every client waiting on it);
	 * set after vjudge_init, NULL for none */
	void (*key_seen)(void *ctx, const uint8_t key[32]);
	void *key_ctx;
};

void vjudge_init(struct vjudge *v, int kind, const uint8_t key[32]);
/* Take n more bytes of the answer: the verdict (VV_MORE to go on). */
int vjudge_feed(struct vjudge *v, const uint8_t *p, size_t n);
/* The peer closed the connection: the verdict. */
int vjudge_eof(struct vjudge *v);

/* ---- the webhook's request ---- */

/* http[s]://host[:port][/path][?query][#fragment], the scheme in any case
 * (RFC 3986 3.1, as Go reads it), the one parser of the webhook's URL, its
 * redirects and acme.c's URLs (which refuse !https themselves).  Refused:
 * VURL_MAX bytes or more, user info, spaces and control bytes anywhere, an
 * empty host, a port that is not 1 to 65535 in 1 to 5 digits, a bracketed
 * host that is not an IPv6 literal as inet_pton reads it (no zone), and a
 * host outside brackets that is neither an IPv4 literal as inet_pton reads
 * it nor a DNS name of letters, digits, '-', '_' in non-empty labels
 * (percent escapes and other punctuation; a name whose last label is a
 * number, "127.1" or "010.0.0.1", which resolvers read as an address that
 * inet_pton does not).  The fragment is dropped.  Let's Encrypt's URLs are
 * under 100 bytes, a webhook's a few more. */
#define VURL_MAX 1024
struct vurl {
	int https;
	char host[256];			/* without brackets; a 253-byte DNS
					 * name, an IPv6 literal's 45 */
	char port[6];			/* decimal, no leading zero; 443 or
					 * 80 when the URL has none */
	char authority[256 + 8];	/* Host:, as written (brackets, port):
					 * "[" 255 "]:" 5 digits, NUL */
	char path[VURL_MAX];		/* "/..." (at least "/"), query kept */
	int is_ip;			/* host is an IPv4 or IPv6 literal */
};

/* 0, or -1 if s is not such a URL (*u then holds nothing usable). */
int vurl_parse(const char *s, struct vurl *u);
/* A redirect's Location against base, as a browser (and Go) resolves it:
 * absolute (any scheme: only http and https parse), scheme-relative,
 * absolute path, or relative to base's directory.  0, or -1. */
int vurl_resolve(const struct vurl *base, const char *loc, size_t len,
    struct vurl *out);
/* The body derper POSTs: {"NodePublic":"nodekey:<hex>","Source":"<ip>"};
 * ip is the text of the client's address ("" if unknown).  Its length, or
 * 0 if cap is short. */
size_t verify_hook_body(char *out, size_t cap, const uint8_t key[32],
    const char *ip);
/* The request as Go's client writes it: POST (or, after a 301, 302 or 303,
 * GET), Host, User-Agent, then with a body (NULL for none) Content-Length,
 * then on a redirect Referer (NULL for none), and the body.  Its length, 0
 * if cap is short. */
size_t verify_hook_request(char *out, size_t cap, const struct vurl *u,
    int post, const char *referer, const char *body, size_t body_len);
/* What Go sends as Referer when following a redirect from "from" to "to":
 * from's URL, or "" from https to http.  Its length, 0 if none or cap is
 * short. */
size_t verify_hook_referer(char *out, size_t cap, const struct vurl *from,
    const struct vurl *to);

#endif
