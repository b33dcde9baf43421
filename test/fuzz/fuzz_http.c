/*
 * fuzz_http.c -- the HTTP request head: the parser and its helpers on the raw
 * input, then the whole request path of a real relay (fuzz_server.h).
 *
 * Input: bytes a client sends, as they are (the seeds are plain requests).
 *
 * 1. The first 8 KiB (HTTP_HEAD_MAX_BYTES, what http_head_feed lets through)
 *    go to http_parse; when it accepts, to http_header, http_path,
 *    http_unescape and http_clean_path with the buffers http_request uses, and
 *    the results are checked: slices inside the input, a clean path that is
 *    rooted, has no "//", "/./" or "/../" and is its own clean form.
 * 2. The input is sent to a relay connection, in one write on the main
 *    listener and in two writes (split in the middle) on the port-80 one,
 *    both from loopback; the relay answers, keeps the connection alive,
 *    upgrades it or closes it, and fz_end checks that nothing leaked.
 */
#define main derp_main
#include "../../derp.c"
#undef main
#include "fuzz.h"
#include "fuzz_server.h"

static void
fuzz_init(void)
{
	fz_server_init();
}

/* Is [p, p+n) inside [base, base+len)? */
static int
inside(const char *p, size_t n, const char *base, size_t len)
{
	return p >= base && n <= len && (size_t)(p - base) <= len - n;
}

static void
check_clean(const char *out, size_t n)
{
	size_t i;

	FUZZ_CHECK(n >= 1 && out[0] == '/', "clean path not rooted");
	for (i = 0; i + 1 < n; i++) {
		FUZZ_CHECK(!(out[i] == '/' && out[i + 1] == '/'),
		    "clean path has //");
		if (out[i] != '/' || out[i + 1] != '.')
			continue;
		FUZZ_CHECK(!(i + 2 == n || out[i + 2] == '/'),
		    "clean path has a . segment");
		FUZZ_CHECK(!(out[i + 2] == '.' && (i + 3 == n || out[i + 3] == '/')),
		    "clean path has a .. segment");
	}
}

static void
parse_only(const char *buf, size_t len)
{
	static char upath[HTTP_HEAD_MAX_BYTES], cpath[HTTP_HEAD_MAX_BYTES + 2],
	    cpath2[HTTP_HEAD_MAX_BYTES + 4];
	static const char *const names[] = { "Host", "Upgrade", "Connection",
	    "Content-Length", "Transfer-Encoding", "Derp-Fast-Start",
	    "X-Tailscale-Challenge", "Sec-WebSocket-Protocol", "Ideal-Node" };
	struct http_req r;
	const struct http_hdr *h;
	const char *path;
	size_t plen, clen, clen2, i;
	long n;
	int rc;

	rc = http_parse(buf, len, &r);
	FUZZ_CHECK(rc == 0 || rc == -1 || rc == -2, "http_parse returned %d", rc);
	if (rc != 0)
		return;
	FUZZ_CHECK(inside(r.method, r.mlen, buf, len) && r.mlen > 0 &&
	    inside(r.target, r.tlen, buf, len) && r.tlen > 0 &&
	    (r.minor == 0 || r.minor == 1) && r.nh <= HTTP_HEADERS_MAX,
	    "request line slices");
	for (i = 0; i < r.nh; i++)
		FUZZ_CHECK(inside(r.h[i].name, r.h[i].nlen, buf, len) &&
		    r.h[i].nlen > 0 && inside(r.h[i].val, r.h[i].vlen, buf, len),
		    "header %zu slices", i);
	for (i = 0; i < sizeof names / sizeof names[0]; i++) {
		h = http_header(&r, names[i]);
		FUZZ_CHECK(h == NULL || (h >= r.h && h < r.h + r.nh),
		    "http_header result");
	}
	http_path(&r, &path, &plen);
	FUZZ_CHECK(inside(path, plen, r.target, r.tlen), "path outside target");
	n = http_unescape(path, plen, upath, sizeof upath);
	FUZZ_CHECK(n >= -1 && n <= (long)plen, "http_unescape returned %ld", n);
	if (n < 0)
		return;
	clen = http_clean_path(upath, (size_t)n, cpath);
	FUZZ_CHECK(clen <= (size_t)n + 2, "clean path longer than n + 2");
	check_clean(cpath, clen);
	clen2 = http_clean_path(cpath, clen, cpath2);
	FUZZ_CHECK(clen2 == clen && memcmp(cpath, cpath2, clen) == 0,
	    "clean path is not its own clean form");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t head = size < HTTP_HEAD_MAX_BYTES ? size : HTTP_HEAD_MAX_BYTES;
	int h;

	parse_only((const char *)data, head);

	fz_begin(1, "", QUEUE_DEPTH_DEFAULT, 0, 0, 0);
	h = fz_open(0, 0);
	FUZZ_CHECK(h >= 0, "no slot");
	fz_send(h, data, size);
	fz_round();
	fz_hangup(h, 0);
	fz_round();
	h = fz_open(1, 0);
	FUZZ_CHECK(h >= 0, "no slot");
	fz_send(h, data, size / 2);
	fz_round();
	fz_send(h, data + size / 2, size - size / 2);
	fz_round();
	fz_end();
	return 0;
}

/* Requests from the project's test data and derper's endpoints. */
static void
fuzz_seeds(const char *datadir)
{
	static const char *const reqs[] = {
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"HEAD / HTTP/1.0\r\n\r\n",
		"GET /robots.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
		"GET /generate_204 HTTP/1.1\r\nHost: a\r\nX-Tailscale-Challenge: ts_192.0.2.1\r\n\r\n",
		"GET /derp/probe HTTP/1.1\r\nHost: a\r\n\r\nGET /derp/latency-check HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /derp/probe HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbodyGET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /bootstrap-dns HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /debug/ HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a/./b/../../derp?q=1 HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /%64erp HTTP/1.1\r\nHost: a\r\nUpgrade: DERP\r\n\r\n",
		"GET https://a:443/derp/probe?x HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /derp HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: derp\r\n\r\n",
		"GET /derp HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
		"GET /derp HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n",
		"GET /derp HTTP/1.1\r\nHost: a\r\nUpgrade: DERP\r\nDerp-Fast-Start: 1\r\nIdeal-Node: x\r\n\r\n",
		"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET x HTTP/1.1\r\nHost: a\r\n\r\n",
		"G(T / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
	};
	char name[64], *text, *line, *next, *tab, req[512];
	uint8_t buf[4096];
	size_t i, n, len;
	int k = 0;

	for (i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
		snprintf(name, sizeof name, "req-%02zu", i);
		seed_emit(name, reqs[i], strlen(reqs[i]));
	}
	/* 65 headers: 431. */
	n = (size_t)snprintf((char *)buf, sizeof buf, "GET / HTTP/1.1\r\n");
	for (i = 0; i < 65; i++)
		n += (size_t)snprintf((char *)buf + n, sizeof buf - n, "H%zu: v\r\n", i);
	n += (size_t)snprintf((char *)buf + n, sizeof buf - n, "\r\n");
	seed_emit("req-65-headers", buf, n);
	/* The transcript's upgrade requests. */
	text = fuzz_slurp(datadir, "derp/handshake_transcript.txt", &len);
	for (line = text; line != NULL && *line != '\0'; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (strncmp(line, "hex: 474554", 11) != 0)	/* "GET" */
			continue;
		n = fuzz_unhex(line + 5, buf, sizeof buf);
		snprintf(name, sizeof name, "transcript-%d", k++);
		seed_emit(name, buf, n);
	}
	free(text);
	/* /generate_204 with each challenge of the test data. */
	text = fuzz_slurp(datadir, "http/generate_204_challenges.tsv", &len);
	k = 0;
	for (line = text; line != NULL && *line != '\0'; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		tab = strchr(line, '\t');
		if (line[0] == '#' || line[0] == '-' || tab == NULL ||
		    strncmp(line, "challenge_hex", 13) == 0)
			continue;
		*tab = '\0';
		n = fuzz_unhex(line, buf, sizeof buf - 1);
		buf[n] = '\0';
		n = (size_t)snprintf(req, sizeof req, "GET /generate_204 HTTP/1.1\r\n"
		    "Host: a\r\nX-Tailscale-Challenge: %s\r\n\r\n", (char *)buf);
		snprintf(name, sizeof name, "challenge-%02d", k++);
		seed_emit(name, req, n < sizeof req ? n : sizeof req - 1);
	}
	free(text);
}
