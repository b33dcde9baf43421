/*
 * fuzz_acme.c -- what acme.c reads from a CA: the HTTP response head, the
 * chunked transfer coding, the JSON tokenizer and the readers of the
 * directory, order, authorization and problem documents, the PEM chain
 * reader, base64 and the URL parser.  acme.c's functions and those of
 * tlsclient.c and verify.c it uses, on the input as it is (an exactly sized
 * buffer under ASan).
 *
 * Input: the bytes of a response, a body or a URL; every parser sees all of
 * it.  Checks:
 *   - http_parse_head consumes no more than it was given, and the values it
 *     keeps are NUL-terminated inside their fields;
 *   - chunked decoding in one piece and in two (split where the first byte
 *     says) agrees on the result and the data, which is never longer than
 *     the input;
 *   - a JSON document that parses has tokens inside the input whose subtrees
 *     nest (every child ends within its parent), and every string token
 *     copies out NUL-terminated; the document readers keep their fields
 *     terminated and at most ACME_AUTHZ_MAX authorizations;
 *   - the PEM reader never keeps more than CERT_CHAIN_MAX certificates and
 *     each one is as long as it says;
 *   - a URL that parses (acme_url_parse: https only; vurl_parse: http too;
 *     vurl_resolve: as a redirect's Location against a fixed base) has a
 *     host that is an IP literal exactly when is_ip says (inet_pton, so the
 *     resolver and the certificate check agree), a numeric port, an
 *     authority, and a path that starts with '/' and holds no fragment.
 */
#include "../../acme.c"
#include "fuzz.h"

static void
fuzz_init(void)
{
}

FUZZ_NOCOV static void
check_str(const char *s, size_t cap, const char *what)
{
	FUZZ_CHECK(memchr(s, '\0', cap) != NULL, "%s not terminated", what);
}

static void
fuzz_head(const uint8_t *data, size_t size)
{
	struct http_resp r;
	int k;

	k = http_parse_head(data, size, &r);
	FUZZ_CHECK(k == -1 || k == -2 || (k > 0 && (size_t)k <= size),
	    "head took %d of %zu bytes", k, size);
	if (k < 0)
		return;
	check_str(r.nonce, sizeof r.nonce, "nonce");
	check_str(r.location, sizeof r.location, "location");
	check_str(r.ctype, sizeof r.ctype, "content type");
	FUZZ_CHECK(r.status >= 0 && r.status <= 999, "status %d", r.status);
	FUZZ_CHECK(!(r.chunked && r.content_length >= 0), "both framings");
}

static void
fuzz_chunked(const uint8_t *data, size_t size)
{
	struct chunked c1 = { CH_SIZE0, 0 }, c2 = { CH_SIZE0, 0 };
	uint8_t *b1, *b2;
	size_t n1 = size, na, nb = 0, split;
	int s1, s2;

	b1 = malloc(size + 1);
	b2 = malloc(size + 1);
	FUZZ_CHECK(b1 != NULL && b2 != NULL, "malloc");
	memcpy(b1, data, size);
	memcpy(b2, data, size);
	s1 = chunked_decode(&c1, b1, &n1);
	split = size > 0 ? data[0] % (size + 1) : 0;
	na = split;
	s2 = chunked_decode(&c2, b2, &na);
	if (s2 == 0) {
		/* The rest arrives after the data decoded so far. */
		memmove(b2 + na, b2 + split, size - split);
		nb = size - split;
		s2 = chunked_decode(&c2, b2 + na, &nb);
	}
	FUZZ_CHECK(s1 == s2, "one piece %d, two pieces %d", s1, s2);
	if (s1 >= 0) {
		FUZZ_CHECK(n1 <= size && n1 == na + nb &&
		    memcmp(b1, b2, n1) == 0, "decoded data differs");
	}
	free(b1);
	free(b2);
}

FUZZ_NOCOV static void
check_tokens(const struct json *j)
{
	size_t i, k;

	FUZZ_CHECK(j->n > 0 && j->t[0].next == j->n, "root does not span");
	for (i = 0; i < j->n; i++) {
		FUZZ_CHECK(j->t[i].next > i && j->t[i].next <= j->n,
		    "token %zu next %u", i, (unsigned)j->t[i].next);
		FUZZ_CHECK(j->t[i].start <= j->t[i].end &&
		    j->t[i].end <= j->len, "token %zu outside", i);
		if (j->t[i].type != J_OBJ && j->t[i].type != J_ARR) {
			FUZZ_CHECK(j->t[i].next == i + 1, "scalar with children");
			continue;
		}
		for (k = i + 1; k < j->t[i].next; k = j->t[k].next) {
			FUZZ_CHECK(j->t[k].next <= j->t[i].next,
			    "child %zu ends past its parent %zu", k, i);
			FUZZ_CHECK(j->t[k].start >= j->t[i].start &&
			    j->t[k].end <= j->t[i].end, "child outside");
			if (j->t[i].type == J_OBJ) {
				FUZZ_CHECK(j->t[k].type == J_STR &&
				    k + 1 < j->t[i].next, "member %zu", k);
				k++;	/* its value */
			}
		}
	}
}

static void
fuzz_json(const uint8_t *data, size_t size)
{
	static struct json j;
	static struct acme_dir d;
	static struct acme_order o;
	static struct acme_authz z;
	char out[64], type[ACME_PTYPE_MAX], detail[ACME_DETAIL_MAX];
	size_t i, k;

	if (json_parse(&j, (const char *)data, size) != 0)
		return;
	check_tokens(&j);
	for (i = 0; i < j.n; i++) {
		if (j.t[i].type != J_STR)
			continue;
		if (json_str(&j, i, out, sizeof out, 0) == 0)
			FUZZ_CHECK(strlen(out) < sizeof out, "string length");
		if (json_str(&j, i, out, sizeof out, 1) == 0)
			FUZZ_CHECK(strlen(out) < sizeof out, "cut string");
	}
	if (dir_read(&j, "shortlived", &d) == 0) {
		check_str(d.new_nonce, sizeof d.new_nonce, "newNonce");
		check_str(d.new_account, sizeof d.new_account, "newAccount");
		check_str(d.new_order, sizeof d.new_order, "newOrder");
	}
	if (order_read(&j, &o) == 0) {
		FUZZ_CHECK(o.nauthz <= ACME_AUTHZ_MAX, "%zu authorizations",
		    o.nauthz);
		for (k = 0; k < o.nauthz; k++)
			check_str(o.authz[k], sizeof o.authz[k], "authz");
		check_str(o.status, sizeof o.status, "order status");
		check_str(o.finalize, sizeof o.finalize, "finalize");
		check_str(o.certificate, sizeof o.certificate, "certificate");
		check_str(o.err_detail, sizeof o.err_detail, "order detail");
	}
	if (authz_read(&j, &z) == 0) {
		check_str(z.token, sizeof z.token, "token");
		check_str(z.chall_url, sizeof z.chall_url, "challenge url");
		check_str(z.err_type, sizeof z.err_type, "challenge error");
		(void)token_ok(z.token);
	}
	if (problem_read(&j, 0, type, sizeof type, detail, sizeof detail) == 0) {
		check_str(type, sizeof type, "type");
		check_str(detail, sizeof detail, "detail");
	}
}

static void
fuzz_pem(const uint8_t *data, size_t size)
{
	struct cert_store cs;
	size_t i;
	int n;

	memset(&cs, 0, sizeof cs);
	n = tlsc_pem_certs(data, size, 1, chain_add, &cs);
	FUZZ_CHECK(n < 0 || (size_t)n == cs.chain_len, "count %d, kept %zu",
	    n, cs.chain_len);
	FUZZ_CHECK(cs.chain_len <= CERT_CHAIN_MAX, "chain of %zu",
	    cs.chain_len);
	for (i = 0; i < cs.chain_len; i++)
		FUZZ_CHECK(cs.chain[i].data_len > 0 &&
		    cs.chain[i].data_len <= TLSC_CERT_DER_MAX, "length");
	if (n > 0)
		(void)cert_matches_host(&cs, "derp.example.com");
	cert_free(&cs);
}

FUZZ_NOCOV static void
check_url(const struct vurl *u)
{
	uint8_t ip[16];
	int v4, v6;

	check_str(u->host, sizeof u->host, "host");
	check_str(u->port, sizeof u->port, "port");
	check_str(u->authority, sizeof u->authority, "authority");
	check_str(u->path, sizeof u->path, "path");
	v4 = inet_pton(AF_INET, u->host, ip) == 1;
	v6 = inet_pton(AF_INET6, u->host, ip) == 1;
	FUZZ_CHECK(u->host[0] != '\0' && u->authority[0] != '\0' &&
	    u->path[0] == '/' && strchr(u->path, '#') == NULL &&
	    atoi(u->port) >= 1 && atoi(u->port) <= 65535 &&
	    u->is_ip == (v4 || v6), "url parts");
}

static int
count_cert(void *ctx, const uint8_t *der, size_t n)
{
	(void)der;
	(void)n;
	(*(int *)ctx)++;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char text[VURL_MAX + 16];
	uint8_t out[512];
	struct vurl base, u;
	int count = 0;

	fuzz_head(data, size);
	fuzz_chunked(data, size);
	fuzz_json(data, size);
	fuzz_pem(data, size);
	(void)tlsc_pem_certs(data, size, 0, count_cert, &count);
	(void)b64_decode((const char *)data, size, out, sizeof out);
	if (size < sizeof text) {
		memcpy(text, data, size);
		text[size] = '\0';
		if (acme_url_parse(text, &u) == 0) {
			check_url(&u);
			FUZZ_CHECK(u.https, "acme took http");
		}
		if (vurl_parse(text, &u) == 0)
			check_url(&u);
		(void)vurl_parse("https://hook.example:8443/dir/x?q=1", &base);
		if (vurl_resolve(&base, (const char *)data, size, &u) == 0)
			check_url(&u);
	}
	return 0;
}

/* Hand-made responses and documents, shaped like Let's Encrypt's.  A PEM
 * chain of real certificates (made now) only with FUZZ_ALL_SEEDS: the
 * repository keeps no generated certificate. */
static void
fuzz_seeds(const char *datadir)
{
	static const char *const seeds[][2] = {
		{ "head-200", "HTTP/1.1 200 OK\r\nServer: nginx\r\n"
		  "Content-Type: application/json\r\nContent-Length: 2\r\n"
		  "Replay-Nonce: AAAA_bbbb-CCCC\r\nRetry-After: 3\r\n"
		  "Link: <https://ca/dir>;rel=\"index\"\r\n\r\n{}" },
		{ "head-201-location", "HTTP/1.1 201 Created\r\n"
		  "Location: https://ca.example/acme/order/1/2\r\n"
		  "content-type: application/json; charset=utf-8\r\n\r\n" },
		{ "head-problem", "HTTP/1.1 429 Too Many Requests\r\n"
		  "Content-Type: application/problem+json\r\n"
		  "Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n"
		  "Content-Length: 110\r\n\r\n" },
		{ "head-chunked", "HTTP/1.1 200 OK\r\n"
		  "Transfer-Encoding: chunked\r\n\r\n" },
		{ "head-bad", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n"
		  "Content-Length: 2\r\n folded\r\n\r\n" },
		{ "chunked", "5;x=y\r\nhello\r\n6\r\n world\r\n0\r\n"
		  "X-Trailer: 1\r\n\r\n" },
		{ "chunked-lf", "A\nabcdefghij\n0\n\n" },
		{ "directory", "{\"keyChange\":\"https://ca/kc\",\"meta\":{"
		  "\"caaIdentities\":[\"letsencrypt.org\"],\"profiles\":{"
		  "\"classic\":\"https://ca/docs#classic\",\"shortlived\":"
		  "\"https://ca/docs#shortlived\"},\"termsOfService\":"
		  "\"https://ca/tos.pdf\",\"website\":\"https://ca\","
		  "\"externalAccountRequired\":false},\"newAccount\":"
		  "\"https://ca/acme/new-acct\",\"newNonce\":"
		  "\"https://ca/acme/new-nonce\",\"newOrder\":"
		  "\"https://ca/acme/new-order\",\"renewalInfo\":"
		  "\"https://ca/acme/renewal-info\",\"revokeCert\":"
		  "\"https://ca/acme/revoke-cert\"}" },
		{ "order", "{\n  \"status\": \"valid\",\n  \"expires\": "
		  "\"2026-01-01T00:00:00Z\",\n  \"identifiers\": [{\"type\": "
		  "\"ip\", \"value\": \"2001:db8::7\"}],\n  \"authorizations\": "
		  "[\"https://ca/acme/authz/1\", \"https://ca/acme/authz/2\"],\n"
		  "  \"finalize\": \"https://ca/acme/finalize/1\",\n"
		  "  \"certificate\": \"https://ca/acme/cert/ff01\"\n}" },
		{ "order-invalid", "{\"status\":\"invalid\",\"authorizations\":"
		  "[],\"finalize\":\"https://ca/f\",\"error\":{\"type\":"
		  "\"urn:ietf:params:acme:error:badCSR\",\"detail\":\"key "
		  "\\u00e9\\ud83d\\ude00\",\"subproblems\":[{\"type\":\"x\"}]}}" },
		{ "authz", "{\"identifier\":{\"type\":\"dns\",\"value\":"
		  "\"derp.example.com\"},\"status\":\"pending\",\"expires\":"
		  "\"2026-01-08T00:00:00Z\",\"challenges\":[{\"type\":"
		  "\"tls-alpn-01\",\"url\":\"https://ca/c/1\",\"status\":"
		  "\"pending\",\"token\":\"t1\"},{\"type\":\"http-01\",\"url\":"
		  "\"https://ca/c/2\",\"status\":\"invalid\",\"token\":"
		  "\"LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0\",\"error\":{"
		  "\"type\":\"urn:ietf:params:acme:error:connection\","
		  "\"detail\":\"Timeout\"}}]}" },
		{ "problem", "{\"type\":\"urn:ietf:params:acme:error:"
		  "rateLimited\",\"detail\":\"too many certificates\","
		  "\"status\":429}" },
		{ "json-deep", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]"
		  "]]]]]]]]]]]]]]]]]]]" },
		{ "json-numbers", "[0,-1,1.5e10,-0.0e-0,1E+2,true,false,null,"
		  "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\"]" },
		{ "pem-junk", "explanatory text\n-----BEGIN CERTIFICATE-----\n"
		  "MAA=\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\n"
		  "MAMCAQE=\n-----END CERTIFICATE-----" },
		{ "pem-other-block", "-----BEGIN X509 CRL-----\nMAA=\n"
		  "-----END X509 CRL-----\n-----BEGIN CERTIFICATE-----\nMAA=\n" },
		{ "url", "https://[2001:db8::1]:14000/dir?x=1#frag" },
		{ "url-host", "https://acme-v02.api.letsencrypt.org/directory" },
		{ "b64", "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0=" },
	};
	char err[256], crt[256], key[256], dir[] = "/tmp/fuzz-acme.XXXXXX";
	uint8_t *pem;
	size_t i, n;

	(void)datadir;
	for (i = 0; i < sizeof seeds / sizeof seeds[0]; i++)
		seed_emit(seeds[i][0], seeds[i][1], strlen(seeds[i][1]));
	if (getenv("FUZZ_ALL_SEEDS") == NULL || mkdtemp(dir) == NULL)
		return;
	snprintf(crt, sizeof crt, "%s/c.crt", dir);
	snprintf(key, sizeof key, "%s/c.key", dir);
	if (cert_generate_dns(crt, key, "derp.example.com", time(NULL), err,
	    sizeof err) == 0 && cert_read_file(crt, &pem, &n, err,
	    sizeof err) == 0) {
		seed_emit("gen-chain", pem, n);
		free(pem);
	}
	unlink(crt);
	unlink(key);
	rmdir(dir);
}
