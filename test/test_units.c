/*
 * test_units.c -- unit tests of derp.c's internals (it includes derp.c).
 *
 * JSON: known answers for the ClientInfo and key-file parsers: every row of
 * client_info_json.tsv, the -c key file of keys_and_config.txt, hand-made edge
 * cases for Go's encoding/json rules, the hex helpers, and a fixed-seed mutation
 * loop that must never crash (build with -fsanitize=address,undefined).
 *
 * usage: test_json DATADIR   (DATADIR holds client_info_json.tsv and keys_and_config.txt)
 * Prints "ok <name>" or "FAIL <name>: <detail>" per check, then "N passed, N failed".
 */
/* derp.c's main becomes derp_main, so its flag parser is reachable too. */
#define main derp_main
#include "../derp.c"
#undef main

static int passed, failed;

static void check(int cond, const char *name, const char *detail)
{
	if (cond) {
		printf("ok %s\n", name);
		passed++;
	} else {
		printf("FAIL %s: %s\n", name, detail);
		failed++;
	}
}

/* The whole file in a malloc'd buffer (NUL-terminated for the line parsers). */
static char *slurp(const char *dir, const char *file, size_t *len)
{
	char path[1024];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof path, "%s/%s", dir, file);
	if ((f = fopen(path, "rb")) == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0) {
		fprintf(stderr, "test_json: cannot read %s\n", path);
		exit(2);
	}
	rewind(f);
	buf = malloc((size_t)n + 1);
	if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n)
		exit(2);
	fclose(f);
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

/* Parses from an exactly-sized heap copy, so that ASan sees any read past len. */
static int parse_ci(const char *json, size_t len, struct clientinfo *ci)
{
	char *copy = malloc(len ? len : 1);
	int r;

	memcpy(copy, json, len);
	r = clientinfo_parse(copy, len, ci);
	free(copy);
	return r;
}

static int parse_key(const char *json, size_t len, uint8_t key[32], const char **why)
{
	char *copy = malloc(len ? len : 1);
	int r;

	memcpy(copy, json, len);
	*why = "";
	r = keyfile_parse(copy, len, key, why);
	free(copy);
	return r;
}

static uint8_t mesh_key[32];	/* 000102...1f, the server mesh key of the TSV */

static void test_tsv(const char *dir)
{
	size_t len, lineno = 0;
	char *buf = slurp(dir, "client_info_json.tsv", &len), *line, *next, *f[4];
	char name[160], detail[160];
	struct clientinfo ci;
	int i, r, mesh, rows = 0;

	for (line = buf; line && *line; line = next) {
		lineno++;
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if (line[0] == '#' || strncmp(line, "verdict\t", 8) == 0 || line[0] == '\0')
			continue;
		/* Columns are tab-separated; the json column is the raw document. */
		for (i = 0, f[0] = line; i < 3; i++) {
			if ((f[i + 1] = strchr(f[i], '\t')) == NULL) {
				snprintf(name, sizeof name, "tsv line %zu", lineno);
				check(0, name, "fewer than 4 columns");
				goto nextline;
			}
			*f[i + 1]++ = '\0';
		}
		rows++;
		snprintf(name, sizeof name, "tsv line %zu (%s)", lineno, f[3]);
		r = parse_ci(f[2], strlen(f[2]), &ci);
		mesh = r == 0 && clientinfo_is_mesh(&ci, mesh_key, 1);
		snprintf(detail, sizeof detail, "got %s/%s for %s", r ? "reject" : "accept",
		    r ? "-" : mesh ? "yes" : "no", f[2]);
		check((strcmp(f[0], "accept") == 0) == (r == 0)
		    && strcmp(f[1], r ? "-" : mesh ? "yes" : "no") == 0, name, detail);
nextline:	;
	}
	check(rows >= 29, "tsv has all 29 rows", "too few rows read");
	free(buf);
}

/* Hand-made cases: verdict and, when accepted, the fields. */
struct ci_case {
	const char *name, *json;
	int ok, version, ack, prober, mesh;
	const char *app;
};

#define MK "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define MK_TAIL "00102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"	/* MK less one digit */

static const struct ci_case ci_cases[] = {
	{ "dup last wins", "{\"version\":2,\"version\":3}", 1, 3, 0, 0, 0, NULL },
	{ "null keeps earlier value", "{\"version\":7,\"version\":null,\"CanAckPings\":true,\"canackpings\":null}", 1, 7, 1, 0, 0, NULL },
	{ "appname escapes", "{\"AppName\":\"caf\\u00e9 \\\"x\\\"\"}", 1, 0, 0, 0, 0, "caf\xc3\xa9 \"x\"" },
	{ "appname surrogate pair", "{\"appname\":\"\\ud83d\\ude00\"}", 1, 0, 0, 0, 0, "\xf0\x9f\x98\x80" },
	{ "appname lone surrogates", "{\"appname\":\"\\ud800x\\udc00\"}", 1, 0, 0, 0, 0, "\xef\xbf\xbdx\xef\xbf\xbd" },
	{ "appname control escaped", "{\"appname\":\"a\\nb\\u0000c\"}", 1, 0, 0, 0, 0, "a?b?c" },
	{ "appname raw utf8 and 0x80", "{\"appname\":\"\xc3\xa9\x80\xff\"}", 1, 0, 0, 0, 0, "\xc3\xa9\x80\xff" },
	{ "appname slash escapes", "{\"appname\":\"\\/\\\\\\b\\f\\r\\t\"}", 1, 0, 0, 0, 0, "/\\????" },
	{ "appname truncated", "{\"appname\":\"0123456789012345678901234567890123456789012345678901234567890123456789\"}", 1, 0, 0, 0, 0, "012345678901234567890123456789012345678901234567890123456789012" },
	{ "appname number", "{\"AppName\":5}", 0, 0, 0, 0, 0, NULL },
	{ "appname bool", "{\"AppName\":true}", 0, 0, 0, 0, 0, NULL },
	{ "kelvin raw", "{\"mesh\xe2\x84\xaa" "ey\":\"" MK "\"}", 1, 0, 0, 0, 1, NULL },
	{ "kelvin escaped", "{\"mesh\\u212aey\":\"" MK "\"}", 1, 0, 0, 0, 1, NULL },
	{ "long s", "{\"I\\u017fProber\":true,\"CanAckPing\xc5\xbf\":true}", 1, 0, 1, 1, 0, NULL },
	{ "escaped name", "{\"\\u0076ersion\":4}", 1, 4, 0, 0, 0, NULL },
	{ "name with space", "{\"version \":4}", 1, 0, 0, 0, 0, NULL },
	{ "name prefix", "{\"versio\":4,\"versions\":5}", 1, 0, 0, 0, 0, NULL },
	{ "long unknown name", "{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":[1,{\"x\":2}]}", 1, 0, 0, 0, 0, NULL },
	{ "dotless i no fold", "{\"\xc4\xb1sProber\":true}", 1, 0, 0, 0, 0, NULL },
	{ "escaped mesh key", "{\"meshKey\":\"\\u0030" MK_TAIL "\"}", 1, 0, 0, 0, 1, NULL },
	{ "mesh key 65", "{\"meshKey\":\"" MK "0\"}", 0, 0, 0, 0, 0, NULL },
	{ "mesh key 63", "{\"meshKey\":\"" MK_TAIL "\"}", 0, 0, 0, 0, 0, NULL },
	{ "mesh key object", "{\"meshKey\":{}}", 0, 0, 0, 0, 0, NULL },
	{ "mesh key bool", "{\"meshKey\":true}", 0, 0, 0, 0, 0, NULL },
	{ "mesh key zero", "{\"meshKey\":\"0000000000000000000000000000000000000000000000000000000000000000\"}", 1, 0, 0, 0, 0, NULL },
	{ "mesh key dup bad", "{\"meshKey\":\"" MK "\",\"meshkey\":\"x\"}", 0, 0, 0, 0, 0, NULL },
	{ "mesh key bad then good", "{\"meshKey\":\"" MK "f\",\"meshkey\":\"" MK "\"}", 0, 0, 0, 0, 0, NULL },
	{ "version int64 max", "{\"version\":9223372036854775807}", 1, JSON_INT_MAX, 0, 0, 0, NULL },
	{ "version int64 min", "{\"version\":-9223372036854775808}", 1, -JSON_INT_MAX - 1, 0, 0, 0, NULL },
	{ "version over int64", "{\"version\":9223372036854775808}", 0, 0, 0, 0, 0, NULL },
	{ "version under int64", "{\"version\":-9223372036854775809}", 0, 0, 0, 0, 0, NULL },
	{ "version huge", "{\"version\":123456789012345678901234567890}", 0, 0, 0, 0, 0, NULL },
	{ "version -0", "{\"version\":-0}", 1, 0, 0, 0, 0, NULL },
	{ "version 1.0", "{\"version\":1.0}", 0, 0, 0, 0, 0, NULL },
	{ "version 1E2", "{\"version\":1E2}", 0, 0, 0, 0, 0, NULL },
	{ "version leading zero", "{\"version\":02}", 0, 0, 0, 0, 0, NULL },
	{ "version plus", "{\"version\":+2}", 0, 0, 0, 0, 0, NULL },
	{ "version bool", "{\"version\":true}", 0, 0, 0, 0, 0, NULL },
	{ "version array", "{\"version\":[2]}", 0, 0, 0, 0, 0, NULL },
	{ "bool number", "{\"CanAckPings\":1}", 0, 0, 0, 0, 0, NULL },
	{ "bool false", "{\"CanAckPings\":true,\"CanAckPings\":false}", 1, 0, 0, 0, 0, NULL },
	{ "prober string", "{\"IsProber\":\"true\"}", 0, 0, 0, 0, 0, NULL },
	{ "unknown numbers", "{\"a\":-0.5e-3,\"b\":1E+9,\"c\":0,\"d\":[],\"e\":{},\"f\":[[]],\"g\":\"\\u0000\"}", 1, 0, 0, 0, 0, NULL },
	{ "whitespace everywhere", " \t\r\n{ \"version\" : 2 , \"x\" : [ 1 , { } ] } \n", 1, 2, 0, 0, 0, NULL },
	{ "empty input", "", 0, 0, 0, 0, 0, NULL },
	{ "only space", "  ", 0, 0, 0, 0, 0, NULL },
	{ "top string", "\"x\"", 0, 0, 0, 0, 0, NULL },
	{ "top number", "2", 0, 0, 0, 0, 0, NULL },
	{ "top true", "true", 0, 0, 0, 0, 0, NULL },
	{ "null garbage", "nullx", 0, 0, 0, 0, 0, NULL },
	{ "null space", " null ", 1, 0, 0, 0, 0, NULL },
	{ "two objects", "{}{}", 0, 0, 0, 0, 0, NULL },
	{ "bom", "\xef\xbb\xbf{}", 0, 0, 0, 0, 0, NULL },
	{ "unterminated", "{\"version\":2", 0, 0, 0, 0, 0, NULL },
	{ "trailing comma", "{\"version\":2,}", 0, 0, 0, 0, 0, NULL },
	{ "leading comma", "{,\"version\":2}", 0, 0, 0, 0, 0, NULL },
	{ "array trailing comma", "{\"a\":[1,]}", 0, 0, 0, 0, 0, NULL },
	{ "missing colon", "{\"a\" 1}", 0, 0, 0, 0, 0, NULL },
	{ "number key", "{1:2}", 0, 0, 0, 0, 0, NULL },
	{ "single quotes", "{'a':1}", 0, 0, 0, 0, 0, NULL },
	{ "bad escape", "{\"a\":\"\\x\"}", 0, 0, 0, 0, 0, NULL },
	{ "bad escape quote", "{\"a\":\"\\'\"}", 0, 0, 0, 0, 0, NULL },
	{ "short u escape", "{\"a\":\"\\u12\"}", 0, 0, 0, 0, 0, NULL },
	{ "bad u escape", "{\"a\":\"\\u12g4\"}", 0, 0, 0, 0, 0, NULL },
	{ "surrogate then bad u", "{\"a\":\"\\ud800\\u12\"}", 0, 0, 0, 0, 0, NULL },
	{ "raw tab in string", "{\"a\":\"x\ty\"}", 0, 0, 0, 0, 0, NULL },
	{ "raw newline in name", "{\"a\nb\":1}", 0, 0, 0, 0, 0, NULL },
	{ "del in string", "{\"a\":\"\x7f\"}", 1, 0, 0, 0, 0, NULL },
	{ "bad literal", "{\"a\":tru}", 0, 0, 0, 0, 0, NULL },
	{ "nan", "{\"a\":NaN}", 0, 0, 0, 0, 0, NULL },
	{ "number dot", "{\"a\":1.}", 0, 0, 0, 0, 0, NULL },
	{ "number dot first", "{\"a\":.5}", 0, 0, 0, 0, 0, NULL },
	{ "number e", "{\"a\":1e}", 0, 0, 0, 0, 0, NULL },
	{ "number e sign", "{\"a\":1e+}", 0, 0, 0, 0, 0, NULL },
	{ "minus alone", "{\"a\":-}", 0, 0, 0, 0, 0, NULL },
	{ "mismatched close", "{\"a\":[1}", 0, 0, 0, 0, 0, NULL },
	{ "mismatched close 2", "{\"a\":{\"b\":1]}", 0, 0, 0, 0, 0, NULL },
	{ "object value no name", "{\"a\":{1}}", 0, 0, 0, 0, 0, NULL },
};

static void test_ci_cases(void)
{
	char name[128], detail[256];
	struct clientinfo ci;
	size_t i;
	int r, ok;

	for (i = 0; i < sizeof ci_cases / sizeof ci_cases[0]; i++) {
		const struct ci_case *t = &ci_cases[i];

		r = parse_ci(t->json, strlen(t->json), &ci);
		snprintf(name, sizeof name, "clientinfo %s", t->name);
		ok = (r == 0) == t->ok;
		if (ok && r == 0)
			ok = ci.version == t->version && ci.can_ack_pings == t->ack
			    && ci.is_prober == t->prober && clientinfo_is_mesh(&ci, mesh_key, 1) == t->mesh
			    && (t->app == NULL || strcmp(ci.app_name, t->app) == 0);
		snprintf(detail, sizeof detail, "r=%d version=%d ack=%d prober=%d mesh=%d app=\"%s\"",
		    r, ci.version, ci.can_ack_pings, ci.is_prober,
		    r == 0 && clientinfo_is_mesh(&ci, mesh_key, 1), r == 0 ? ci.app_name : "");
		check(ok, name, detail);
	}
}

/* Nesting: exactly JSON_MAX_DEPTH levels pass, one more fails, and a very deep
   document fails without recursion. */
static void test_depth(void)
{
	size_t deep = 200000, n, i;
	char *buf = malloc(deep * 2 + 16);
	struct clientinfo ci;
	int levels;

	for (levels = JSON_MAX_DEPTH; levels <= JSON_MAX_DEPTH + 1; levels++) {
		memcpy(buf, "{\"x\":", 5);
		n = 5;
		for (i = 1; i < (size_t)levels; i++)
			buf[n++] = '[';
		for (i = 1; i < (size_t)levels; i++)
			buf[n++] = ']';
		buf[n++] = '}';
		check((parse_ci(buf, n, &ci) == 0) == (levels == JSON_MAX_DEPTH),
		    levels == JSON_MAX_DEPTH ? "depth limit accepted" : "depth limit + 1 rejected",
		    "wrong verdict");
	}
	memcpy(buf, "{\"x\":", 5);
	for (i = 0; i < deep; i++)
		buf[5 + i] = i & 1 ? '{' : '[';
	check(parse_ci(buf, 5 + deep, &ci) < 0, "very deep rejected", "accepted");
	free(buf);
}

static void test_mesh_rule(void)
{
	struct clientinfo ci;
	uint8_t zero[32] = { 0 };
	const char *j = "{\"meshKey\":\"" MK "\"}";
	const char *z = "{\"meshKey\":\"0000000000000000000000000000000000000000000000000000000000000000\"}";

	parse_ci(j, strlen(j), &ci);
	check(clientinfo_is_mesh(&ci, mesh_key, 1) == 1, "mesh: equal keys", "not mesh");
	check(clientinfo_is_mesh(&ci, mesh_key, 0) == 0, "mesh: server without key", "mesh");
	ci.mesh_key[31] ^= 1;
	check(clientinfo_is_mesh(&ci, mesh_key, 1) == 0, "mesh: last byte differs", "mesh");
	ci.mesh_key[31] ^= 1;
	ci.has_mesh_key = 0;
	check(clientinfo_is_mesh(&ci, mesh_key, 1) == 0, "mesh: client without key", "mesh");
	parse_ci(z, strlen(z), &ci);
	check(clientinfo_is_mesh(&ci, zero, 1) == 0, "mesh: both keys zero", "mesh");
}

/* The value of `name = value` in keys_and_config.txt (up to blanks or '#'). */
static void kv(const char *text, const char *name, char *out, size_t cap)
{
	const char *p = text;
	size_t n = strlen(name), i = 0;

	while ((p = strstr(p, name)) != NULL) {
		if ((p == text || p[-1] == '\n') && strncmp(p + n, " = ", 3) == 0)
			break;
		p += n;
	}
	if (p == NULL) {
		fprintf(stderr, "test_json: %s missing\n", name);
		exit(2);
	}
	for (p += n + 3; *p && *p != '\n' && *p != ' ' && i + 1 < cap; p++)
		out[i++] = *p;
	out[i] = '\0';
}

static void test_keyfile(const char *dir)
{
	size_t len, flen, i;
	char *text = slurp(dir, "keys_and_config.txt", &len);
	char hex[512], priv[128], file[256], out[256], *b, *e;
	uint8_t want[32], key[32];
	const char *why;
	unsigned v;

	kv(text, "config_file_hex", hex, sizeof hex);
	kv(text, "server_private_text", priv, sizeof priv);
	for (flen = 0; hex[2 * flen] && sscanf(hex + 2 * flen, "%2x", &v) == 1; flen++)
		file[flen] = (char)v;
	b = strstr(text, "config_file_text_begin\n");
	e = strstr(text, "\nconfig_file_text_end");
	check(b && e && (size_t)(e - b - 23) == flen && memcmp(b + 23, file, flen) == 0,
	    "keyfile: text block equals config_file_hex", "data file inconsistent");
	check(hex_decode32(want, priv + 8) == 0 && strncmp(priv, "privkey:", 8) == 0,
	    "keyfile: server_private_text decodes", priv);

	check(parse_key(file, flen, key, &why) == 0 && memcmp(key, want, 32) == 0,
	    "keyfile: derper file gives the server key", why);
	memset(out, 'x', sizeof out);
	i = keyfile_format(out, sizeof out, want);
	check(i == flen && memcmp(out, file, flen) == 0 && out[flen] == '\0',
	    "keyfile: format reproduces config_file_hex", out);
	check(keyfile_format(out, flen, want) == 0 && keyfile_format(out, flen + 1, want) == flen,
	    "keyfile: format needs len + 1 bytes", "wrong capacity rule");
	free(text);
}

struct key_case {
	const char *name, *json;
	int ok;
	const char *why;	/* expected reason when rejected */
};

#define PK "0002030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f60"
#define PK_TAIL "002030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f60"	/* PK less one digit */

static const struct key_case key_cases[] = {
	{ "lower-case member", "{\"privatekey\":\"privkey:" PK "\"}", 1, NULL },
	{ "kelvin member", "{\"Private\\u212aey\":\"privkey:" PK "\"}", 1, NULL },
	{ "upper-case hex", "{\"PrivateKey\":\"privkey:0002030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F60\"}", 1, NULL },
	{ "unknown members", "{\"x\":[null,{}],\"PrivateKey\":\"privkey:" PK "\",\"y\":1}", 1, NULL },
	{ "escaped text", "{\"PrivateKey\":\"privkey\\u003a" PK "\"}", 1, NULL },
	{ "duplicate last wins", "{\"PrivateKey\":\"privkey:" PK "\",\"PrivateKey\":\"privkey:" PK "\"}", 1, NULL },
	{ "not json", "PrivateKey = privkey:" PK, 0, "invalid JSON" },
	{ "empty file", "", 0, "invalid JSON" },
	{ "trailing garbage", "{\"PrivateKey\":\"privkey:" PK "\"}x", 0, "invalid JSON" },
	{ "array", "[\"privkey:" PK "\"]", 0, "invalid JSON" },
	{ "missing member", "{\"Other\":\"privkey:" PK "\"}", 0, "no PrivateKey" },
	{ "empty object", "{}", 0, "no PrivateKey" },
	{ "top-level null", "null", 0, "no PrivateKey" },
	{ "null member", "{\"PrivateKey\":null}", 0, "PrivateKey is not a string" },
	{ "number member", "{\"PrivateKey\":5}", 0, "PrivateKey is not a string" },
	{ "nodekey prefix", "{\"PrivateKey\":\"nodekey:" PK "\"}", 0, "PrivateKey does not start with privkey:" },
	{ "upper prefix", "{\"PrivateKey\":\"PRIVKEY:" PK "\"}", 0, "PrivateKey does not start with privkey:" },
	{ "bare hex", "{\"PrivateKey\":\"" PK "\"}", 0, "PrivateKey does not start with privkey:" },
	{ "63 digits", "{\"PrivateKey\":\"privkey:" PK_TAIL "\"}", 0, "PrivateKey needs exactly 64 hex digits" },
	{ "65 digits", "{\"PrivateKey\":\"privkey:" PK "0\"}", 0, "PrivateKey needs exactly 64 hex digits" },
	{ "non-hex digit", "{\"PrivateKey\":\"privkey:0002030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f6g\"}", 0, "PrivateKey has a non-hex digit" },
	{ "zero key", "{\"PrivateKey\":\"privkey:0000000000000000000000000000000000000000000000000000000000000000\"}", 0, "PrivateKey is zero" },
	{ "bad second", "{\"PrivateKey\":\"privkey:" PK "\",\"privateKEY\":\"x\"}", 0, "PrivateKey does not start with privkey:" },
};

static void test_key_cases(void)
{
	char name[128], detail[160];
	uint8_t key[32];
	const char *why;
	size_t i;
	int r;

	for (i = 0; i < sizeof key_cases / sizeof key_cases[0]; i++) {
		const struct key_case *t = &key_cases[i];

		r = parse_key(t->json, strlen(t->json), key, &why);
		snprintf(name, sizeof name, "keyfile %s", t->name);
		snprintf(detail, sizeof detail, "r=%d why=\"%s\"", r, r ? why : "");
		check(t->ok ? r == 0 && key[0] == 0 && key[1] == 2 && key[31] == 0x60
		    : r < 0 && strcmp(why, t->why) == 0, name, detail);
	}
}

static void test_hex(void)
{
	char text[65], enc[65];
	uint8_t out[32], in[32];
	int c, pos, bad = 0, want, i;

	/* Every byte value at the first, a middle and the last position. */
	for (pos = 0; pos < 64; pos += 31) {
		for (c = 0; c < 256; c++) {
			memset(text, '0', 64);
			text[pos] = (char)c;
			want = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
			if ((hex_decode32(out, text) == 0) != want)
				bad++;
			else if (want && out[pos / 2] != (pos & 1 ? 1 : 16) * (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10))
				bad++;
		}
	}
	check(bad == 0, "hex_decode32 every byte value", "wrong verdict or value");
	for (i = 0; i < 32; i++)
		in[i] = (uint8_t)(i * 37 + 11);
	hex_encode(enc, in, 32);
	check(strlen(enc) == 64 && hex_decode32(out, enc) == 0 && memcmp(in, out, 32) == 0,
	    "hex round trip", enc);
	memset(in, 0xAB, 32);
	hex_encode(enc, in, 2);
	check(strcmp(enc, "abab") == 0, "hex_encode lower case", enc);
	check(hex_decode32(out, "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFffffffffffffffffffffffffffffffff") == 0
	    && out[0] == 0xff && out[31] == 0xff, "hex_decode32 mixed case", "rejected");
	check(hex_decode32(out, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1 ") < 0,
	    "hex_decode32 last digit space", "accepted");
}

/* Fixed-seed mutations of valid documents: byte flips, insertions of bytes and
   tokens, deletions, truncations.  Only crashes (sanitizers) count as failures. */
static void test_mutations(void)
{
	static const char *seeds[] = {
		"{\"meshKey\":\"" MK "\",\"version\":2,\"CanAckPings\":false}",
		"{\"version\":2,\"CanAckPings\":true,\"IsProber\":true,\"AppName\":\"caf\\u00e9\\ud83d\\ude00\"}",
		"{\"version\":2,\"Unknown\":{\"a\":[1,2,{\"b\":null}],\"c\":-1.5e+3},\"x\":\"y\"}",
		"{\n\t\"PrivateKey\": \"privkey:" PK "\"\n}",
		" null ",
	};
	static const char *tokens[] = { "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "\\ud800",
		"null", "true", "-", "e", ".", "0", "\xe2\x84\xaa", "\xc5\xbf" };
	uint64_t s = 0x9E3779B97F4A7C15u;
	char buf[512], name[80], *copy;
	struct clientinfo ci;
	uint8_t key[32];
	const char *why;
	size_t len, pos, k;
	long iter, accepted = 0;
	int ops;

	for (iter = 0; iter < 200000; iter++) {
		const char *seed = seeds[iter % 5];

		len = strlen(seed);
		memcpy(buf, seed, len);
		for (ops = 1 + (int)(iter % 4); ops > 0; ops--) {
			s ^= s << 13, s ^= s >> 7, s ^= s << 17;	/* xorshift64 */
			pos = len ? (size_t)(s >> 8) % (len + 1) : 0;
			switch ((s >> 3) % 5) {
			case 0:		/* flip a byte */
				if (pos < len)
					buf[pos] = (char)(s >> 40);
				break;
			case 1:		/* insert a byte */
				if (len + 1 < sizeof buf) {
					memmove(buf + pos + 1, buf + pos, len - pos);
					buf[pos] = (char)(s >> 48);
					len++;
				}
				break;
			case 2:		/* insert a token */
				k = strlen(tokens[(s >> 32) % (sizeof tokens / sizeof tokens[0])]);
				if (len + k < sizeof buf) {
					memmove(buf + pos + k, buf + pos, len - pos);
					memcpy(buf + pos, tokens[(s >> 32) % (sizeof tokens / sizeof tokens[0])], k);
					len += k;
				}
				break;
			case 3:		/* delete a byte */
				if (pos < len) {
					memmove(buf + pos, buf + pos + 1, len - pos - 1);
					len--;
				}
				break;
			default:	/* truncate */
				len = pos;
				break;
			}
		}
		copy = malloc(len ? len : 1);	/* exact size: ASan catches over-reads */
		memcpy(copy, buf, len);
		if (clientinfo_parse(copy, len, &ci) == 0) {
			accepted++;
			if (memchr(ci.app_name, '\0', sizeof ci.app_name) == NULL)
				break;
			(void)clientinfo_is_mesh(&ci, mesh_key, 1);
		}
		(void)keyfile_parse(copy, len, key, &why);
		free(copy);
	}
	snprintf(name, sizeof name, "200000 mutations without a crash (%ld accepted)", accepted);
	check(iter == 200000, name, "app_name not terminated");
}

/* ---- derp.c internals: HTTP, paths, flags, key table, chunk pool ---- */

static void test_http_parse(void)
{
	static const char ok_req[] = "GET /derp?x=1 HTTP/1.1\r\nHost: a\r\n"
	    "Upgrade:  DERP \t\r\nX-Empty:\r\nupgrade: second\r\n\r\n";
	static const char lf_req[] = "HEAD / HTTP/1.0\nHost: b\n\n";
	struct http_req r;
	const struct http_hdr *h;
	const char *path;
	size_t plen;
	char big[8192];
	size_t n, i;

	check(http_parse(ok_req, sizeof ok_req - 1, &r) == 0 && r.nh == 4 &&
	    r.minor == 1 && http_method_is(&r, "GET"), "http: request parses", "");
	h = http_header(&r, "UPGRADE");
	check(h != NULL && h->vlen == 4 && memcmp(h->val, "DERP", 4) == 0,
	    "http: first header wins, case-insensitive, value trimmed", "");
	h = http_header(&r, "x-empty");
	check(h != NULL && h->vlen == 0, "http: empty header value", "");
	http_path(&r, &path, &plen);
	check(path_is(path, plen, "/derp"), "http: query stripped from path", "");
	check(http_parse(lf_req, sizeof lf_req - 1, &r) == 0 && r.minor == 0 &&
	    http_method_is(&r, "HEAD"), "http: bare LF line ends", "");
	check(http_parse("GET http://h:1/derp/probe?q HTTP/1.1\r\n\r\n", 40, &r) == 0,
	    "http: absolute-form parses", "");
	http_path(&r, &path, &plen);
	check(path_is(path, plen, "/derp/probe"), "http: absolute-form path", "");
	check(http_parse("GET / HTTP/2.0\r\n\r\n", 18, &r) == -1, "http: HTTP/2.0 refused", "");
	check(http_parse("GET /\r\n\r\n", 9, &r) == -1, "http: no version refused", "");
	check(http_parse("GET  / HTTP/1.1\r\n\r\n", 19, &r) == -1, "http: empty target refused", "");
	check(http_parse("G(T / HTTP/1.1\r\n\r\n", 18, &r) == -1, "http: bad method token", "");
	check(http_parse("GET / HTTP/1.1\r\nNoColon\r\n\r\n", 27, &r) == -1, "http: header without colon", "");
	check(http_parse("GET / HTTP/1.1\r\nA B: c\r\n\r\n", 26, &r) == -1, "http: space in header name", "");
	check(http_parse("GET / HTTP/1.1\r\n: v\r\n\r\n", 22, &r) == -1, "http: empty header name", "");
	/* Header values as Go's net/textproto takes them: VCHAR, SP, HTAB and
	 * obs-text; NUL, other controls, a lone CR and DEL are 400. */
	check(http_parse("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 26, &r) == -1,
	    "http: NUL in a header value", "");
	check(http_parse("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 26, &r) == -1,
	    "http: lone CR in a header value", "");
	check(http_parse("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", 25, &r) == -1,
	    "http: DEL in a header value", "");
	check(http_parse("GET / HTTP/1.1\r\nX: a\x01\r\n\r\n", 25, &r) == -1,
	    "http: control byte in a header value", "");
	check(http_parse("GET / HTTP/1.1\r\nX: \ta\t\xc3\xa9 b\xff\r\n\r\n", 31, &r) ==
	    0 && r.nh == 1 && r.h[0].vlen == 7, "http: tab and obs-text in a header value", "");
	n = (size_t)snprintf(big, sizeof big, "GET / HTTP/1.1\r\n");
	for (i = 0; i < HTTP_HEADERS_MAX; i++)
		n += (size_t)snprintf(big + n, sizeof big - n, "H%zu: v\r\n", i);
	memcpy(big + n, "\r\n", 2);
	check(http_parse(big, n + 2, &r) == 0 && r.nh == HTTP_HEADERS_MAX,
	    "http: 64 headers accepted", "");
	n += (size_t)snprintf(big + n, sizeof big - n, "Extra: v\r\n\r\n");
	check(http_parse(big, n, &r) == -2, "http: 65 headers -> 431", "");
	check(http_parse("GET / HTTP/1.1\r\nHost: x\r\n", 25, &r) == -1,
	    "http: unterminated head refused", "");
}

static void test_paths(void)
{
	static const struct { const char *in, *out; } cases[] = {
		{ "", "/" }, { "/", "/" }, { "/a//b", "/a/b" }, { "/a/./b", "/a/b" },
		{ "/a/../b", "/b" }, { "/..", "/" }, { "/../..//x", "/x" },
		{ "/a/b/", "/a/b/" }, { "/a/b/..", "/a" }, { "/a/b/../", "/a/" },
		{ "a", "/a" }, { "/.", "/" }, { "/./", "/" }, { "//", "/" },
		{ "/derp", "/derp" }, { "/a/...", "/a/..." }, { "/a/.b", "/a/.b" },
	};
	char out[64], name[128], un[64];
	size_t i, n;
	long u;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		n = http_clean_path(cases[i].in, strlen(cases[i].in), out);
		snprintf(name, sizeof name, "path: clean \"%s\" -> \"%s\"", cases[i].in, cases[i].out);
		check(n == strlen(cases[i].out) && memcmp(out, cases[i].out, n) == 0, name, "");
	}
	u = http_unescape("/derp%2fprobe", 13, un, sizeof un);
	check(u == 11 && memcmp(un, "/derp/probe", 11) == 0, "path: %2f decoded", "");
	check(http_unescape("/%zz", 4, un, sizeof un) == -1, "path: bad escape refused", "");
	check(http_unescape("/%2", 3, un, sizeof un) == -1, "path: cut escape refused", "");
	check(http_unescape("/abc", 4, un, 2) == -1, "path: no room refused", "");
}

static void test_go_numbers(void)
{
	static const struct { const char *in; int ok; int64_t v; } ints[] = {
		{ "80", 1, 80 }, { "-1", 1, -1 }, { "+7", 1, 7 }, { "0x50", 1, 80 },
		{ "0X_5_0", 1, 80 }, { "0o17", 1, 15 }, { "017", 1, 15 }, { "0b101", 1, 5 },
		{ "1_000", 1, 1000 }, { "0", 1, 0 }, { "9223372036854775807", 1, INT64_MAX },
		{ "-9223372036854775808", 1, INT64_MIN }, { "9223372036854775808", 0, 0 },
		{ "", 0, 0 }, { "1__0", 0, 0 }, { "_1", 0, 0 }, { "1_", 0, 0 }, { "08", 0, 0 },
		{ "0x", 0, 0 }, { "12a", 0, 0 }, { " 1", 0, 0 }, { "0b2", 0, 0 },
	};
	static const struct { const char *in; int ok; int64_t ns; } durs[] = {
		{ "2s", 1, 2000000000LL }, { "0", 1, 0 }, { "10m0s", 1, 600000000000LL },
		{ "1h30m", 1, 5400000000000LL }, { "500ms", 1, 500000000LL },
		{ "1.5s", 1, 1500000000LL }, { "-1s", 1, -1000000000LL }, { "1us", 1, 1000 },
		{ "1\xc2\xb5s", 1, 1000 }, { "3ns", 1, 3 }, { ".5s", 1, 500000000LL },
		{ "1", 0, 0 }, { "", 0, 0 }, { "s", 0, 0 }, { "1x", 0, 0 }, { "1s2", 0, 0 },
		{ "+", 0, 0 }, { "1.s", 1, 1000000000LL },
	};
	static const char *t[] = { "1", "t", "T", "TRUE", "true", "True" };
	static const char *bad[] = { "", "yes", "tRUE", "2", "on" };
	char name[128];
	int64_t v;
	size_t i;

	for (i = 0; i < sizeof ints / sizeof ints[0]; i++) {
		snprintf(name, sizeof name, "flags: int \"%s\"", ints[i].in);
		v = -42;
		check(ints[i].ok ? parse_go_int(ints[i].in, &v) == 0 && v == ints[i].v :
		    parse_go_int(ints[i].in, &v) != 0, name, "");
	}
	for (i = 0; i < sizeof durs / sizeof durs[0]; i++) {
		snprintf(name, sizeof name, "flags: duration \"%s\"", durs[i].in);
		v = -42;
		check(durs[i].ok ? parse_go_duration(durs[i].in, &v) == 0 && v == durs[i].ns :
		    parse_go_duration(durs[i].in, &v) != 0, name, "");
	}
	for (i = 0; i < 6; i++) {
		snprintf(name, sizeof name, "flags: bool \"%s\"", t[i]);
		check(parse_go_bool(t[i], &v) == 0 && v == 1, name, "");
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(name, sizeof name, "flags: bool \"%s\" refused", bad[i]);
		check(parse_go_bool(bad[i], &v) != 0, name, "");
	}
}

static struct flag flags_initial[NFLAGS];

static int parse_args(const char *const *args)
{
	char *argv[16];
	int argc = 0;

	memcpy(flags, flags_initial, sizeof flags);
	argv[argc++] = (char *)"derp";
	while (*args != NULL && argc < 15)
		argv[argc++] = (char *)*args++;
	argv[argc] = NULL;
	return flags_parse(argc, argv);
}

static void test_flags(void)
{
	static const char *const a1[] = { "-a=:1234", "--http-port", "-1", "-dev", NULL };
	static const char *const a2[] = { "-dev", "false", "-a", ":9", NULL };
	static const char *const a3[] = { "-dev=false", "--stun=0", NULL };
	static const char *const a4[] = { "-nosuch", NULL };
	static const char *const a5[] = { "-h", NULL };
	static const char *const a6[] = { "--help", NULL };
	static const char *const a7[] = { "-a", NULL };
	static const char *const a8[] = { "--verify-clients=", NULL };
	static const char *const a9[] = { "---a", ":1", NULL };
	static const char *const a10[] = { "--", "-a", ":1", NULL };
	static const char *const a11[] = { "-http-port", "eighty", NULL };
	static const char *const a12[] = { "-tcp-write-timeout=500ms", "-c", "/x", NULL };
	static const char *const a13[] = { "-mesh-with", "a,b", NULL };
	static const char *const a14[] = { "-verify-clients=false", "-mesh-with=", NULL };
	static const char *const a15[] = { "-accept-connection-limit", "+Inf", NULL };
	static const char *const a16[] = { "-accept-connection-limit", "100", NULL };
	int rc, saved = dup(2), devnull = open("/dev/null", O_WRONLY);

	memcpy(flags_initial, flags, sizeof flags);
	/* The parser's messages go to /dev/null (stderr itself is read-only
	 * on musl, so the descriptor is swapped instead). */
	fflush(stderr);
	if (devnull >= 0)
		dup2(devnull, 2);
	rc = parse_args(a1);
	check(rc == 0 && strcmp(flag_find("a", 1)->sval, ":1234") == 0 &&
	    flag_find("http-port", 9)->ival == -1 && flag_find("dev", 3)->ival == 1,
	    "flags: -a=v, --flag v, bool", "");
	rc = parse_args(a2);
	check(rc == 0 && flag_find("dev", 3)->ival == 1 &&
	    strcmp(flag_find("a", 1)->sval, ":443") == 0,
	    "flags: \"-dev false\" stops parsing at false (Go rule)", "");
	rc = parse_args(a3);
	check(rc == 0 && flag_find("dev", 3)->ival == 0 && flag_find("stun", 4)->ival == 0,
	    "flags: -bool=false", "");
	check(parse_args(a4) == -1, "flags: unknown flag is an error", "");
	check(parse_args(a5) == 1 && parse_args(a6) == 1, "flags: -h and --help", "");
	check(parse_args(a7) == -1, "flags: missing value is an error", "");
	check(parse_args(a8) == -1, "flags: --verify-clients= is an error", "");
	check(parse_args(a9) == -1, "flags: three dashes is an error", "");
	check(parse_args(a10) == 0 && !flag_find("a", 1)->set, "flags: -- ends flags", "");
	check(parse_args(a11) == -1, "flags: bad int is an error", "");
	rc = parse_args(a12);
	check(rc == 0 && ns_to_ms(flag_find("tcp-write-timeout", 17)->ival) == 500 &&
	    strcmp(flag_find("c", 1)->sval, "/x") == 0, "flags: duration and string", "");
	check(parse_args(a13) == 0 && flags_check_missing() != 0,
	    "flags: -mesh-with refused (feature missing)", "");
	check(parse_args(a14) == 0 && flags_check_missing() == 0,
	    "flags: missing features at their off values accepted", "");
	check(parse_args(a15) == 0 && flags_check_missing() == 0,
	    "flags: -accept-connection-limit +Inf accepted", "");
	check(parse_args(a16) == 0 && flags_check_missing() == 0 &&
	    flag_find("accept-connection-limit", 23)->fval == 100.0,
	    "flags: -accept-connection-limit 100", "");
	check(ns_to_ms(1) == 1 && ns_to_ms(0) == 0 && ns_to_ms(2500000) == 2,
	    "flags: ns to ms rounds sub-ms up", "");
	fflush(stderr);
	if (saved >= 0) {
		dup2(saved, 2);
		close(saved);
	}
	if (devnull >= 0)
		close(devnull);
	memcpy(flags, flags_initial, sizeof flags);
}

static uint32_t xs_state = 12345;
static uint32_t xs(void)
{
	xs_state ^= xs_state << 13;
	xs_state ^= xs_state >> 17;
	xs_state ^= xs_state << 5;
	return xs_state;
}

/* The key table against a plain array: inserts, backward-shift deletes. */
static void test_keytab(void)
{
	static struct derp_server s;
	static struct keyent tab[64];
	static uint8_t keys[48][32];
	static int present[48];
	struct keyent *e;
	uint32_t i, k, round, bad = 0;

	s.keytab = tab;
	s.keytab_mask = 63;
	s.hash_seed[0] = 1;
	s.hash_seed[1] = 2;
	for (k = 0; k < 48; k++)
		for (i = 0; i < 32; i++)
			keys[k][i] = (uint8_t)xs();
	for (round = 0; round < 20000; round++) {
		k = xs() % 48;
		if (!present[k]) {
			i = keytab_slot(&s, keys[k]);
			if (tab[i].nconns != 0)
				bad++;
			memcpy(tab[i].key, keys[k], 32);
			tab[i].first = (int32_t)k;
			tab[i].nconns = 1;
			present[k] = 1;
		} else {
			i = keytab_slot(&s, keys[k]);
			if (tab[i].first != (int32_t)k)
				bad++;
			keytab_delete(&s, i);
			present[k] = 0;
		}
		for (k = 0; k < 48; k++) {
			e = keytab_find(&s, keys[k]);
			if (present[k] ? (e == NULL || e->first != (int32_t)k) : e != NULL)
				bad++;
		}
	}
	check(bad == 0, "keytab: 20000 random inserts/deletes agree with a reference", "mismatch");
}

/* Chunk pool and byte chains across chunk boundaries, and exhaustion. */
static void test_pool(void)
{
	static struct chunk mem[8];
	static uint8_t in[7 * CHUNK_DATA_BYTES], out[sizeof in];
	struct pool p;
	struct cbuf b;
	size_t i, got = 0;
	int ok = 1;

	pool_init(&p, mem, 7);
	memset(&b, 0, sizeof b);
	for (i = 0; i < sizeof in; i++)
		in[i] = (uint8_t)(i * 7 + i / 251);
	check(cbuf_append(&p, &b, in, 1000) == 0 && cbuf_append(&p, &b, in + 1000,
	    3 * CHUNK_DATA_BYTES) == 0 && b.len == 1000 + 3 * CHUNK_DATA_BYTES &&
	    p.free_count == 3, "pool: append across chunks", "");
	check(cbuf_append(&p, &b, in, 4 * CHUNK_DATA_BYTES) == -1 &&
	    b.len == 1000 + 3 * CHUNK_DATA_BYTES && p.free_count == 3,
	    "pool: exhaustion appends nothing", "");
	while (b.len > 0) {
		size_t k = b.len < 777 ? b.len : 777;
		cbuf_peek(&p, &b, out + got, k);
		cbuf_consume(&p, &b, k);
		got += k;
	}
	ok = got == 1000 + 3 * CHUNK_DATA_BYTES && memcmp(in, out, got) == 0;
	check(ok && p.free_count == 7 && b.head == NIL && b.tail == NIL,
	    "pool: peek/consume returns bytes in order and every chunk", "");
	check(cbuf_append(&p, &b, in, 7 * CHUNK_DATA_BYTES) == 0 && p.free_count == 0,
	    "pool: whole pool usable", "");
	check(cbuf_consume(&p, &b, b.len) == 7 && p.free_count == 7 &&
	    pool_take(&p) != NIL, "pool: consuming all returns every chunk", "");
	check(chunks_for(0) == 0 && chunks_for(1) == 1 && chunks_for(CHUNK_DATA_BYTES) == 1 &&
	    chunks_for(CHUNK_DATA_BYTES + 1) == 2 &&
	    chunks_for(RECV_PREFIX_BYTES + MAX_PACKET_BYTES) == 33,
	    "pool: chunks_for", "");
}

/*
 * Issue 9's mechanisms on a real relay object (plain HTTP on 127.0.0.1, any
 * port) with connections made up in its slots: the chunk budgets and the
 * spare, the reclaim heap, unfinished connections by source, PeerGone
 * records.  What they do end to end is in test_integration and the soak.
 */
static struct derp_server *
ut_server(const char *dir, unsigned max_clients, unsigned max_handshakes)
{
	static char keypath[512];
	struct derp_config cfg;
	struct derp_server *s;
	char err[256];

	derp_config_defaults(&cfg);
	snprintf(keypath, sizeof keypath, "%s/ut.key", dir);
	cfg.addr = "127.0.0.1:0";
	cfg.config_path = keypath;
	cfg.stun = 0;
	cfg.max_clients = max_clients;
	cfg.max_handshakes = max_handshakes;
	s = derp_create(&cfg, err, sizeof err);
	if (s == NULL)
		printf("FAIL derp_create: %s\n", err);
	else
		s->now = 1000000;
	return s;
}

/* An unfinished connection from ip (text, v4 or v6) in the next free slot,
 * on one end of a socket pair, in the poller (so conn_close works on it). */
static struct conn *
ut_conn(struct derp_server *s, const char *ip)
{
	struct conn *c;
	uint32_t idx = s->nfree > 0 ? (uint32_t)s->free_slots[--s->nfree] :
	    s->fresh++;
	struct in_addr a4;

	int sv[2];

	c = &s->conns[idx];
	memset(c, 0, sizeof *c);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 ||
	    poller_add(&s->pl, sv[0], (int32_t)idx, POLLIN, &c->pidx) != 0)
		abort();
	close(sv[1]);
	c->fd = sv[0];
	c->state = CS_HTTP_HEAD;
	c->key_next = -1;
	c->qheap_pos = -1;
	c->accepted_ms = s->now;
	if (inet_pton(AF_INET, ip, &a4) == 1) {
		c->peer_ip[10] = c->peer_ip[11] = 0xff;
		memcpy(c->peer_ip + 12, &a4, 4);
	} else if (inet_pton(AF_INET6, ip, c->peer_ip) != 1) {
		abort();
	}
	pending_append(s, c, PEND_MAIN);
	return c;
}

/* A registered connection with a made-up key, from ip. */
static struct conn *
ut_client_from(struct derp_server *s, uint8_t tag, const char *ip)
{
	struct conn *c = ut_conn(s, ip);

	memset(c->key, 0, KEY_BYTES);
	c->key[0] = tag;
	c->key[31] = 0x5a;
	conn_register(s, c);
	return c;
}

static struct conn *
ut_client(struct derp_server *s, uint8_t tag)
{
	return ut_client_from(s, tag, "10.9.9.9");
}

static void
ut_close_all(struct derp_server *s)
{
	uint32_t i;

	for (i = 0; i < s->fresh; i++)
		if (s->conns[i].state != CS_FREE)
			conn_close(s, &s->conns[i]);
}

/* Every slot registered: one source holding them all gives up its newest to
 * a newcomer from elsewhere; a relay full of distinct sources closes nobody. */
static void
test_slots_fair_share(const char *dir)
{
	struct derp_server *s = ut_server(dir, 8, 8);
	struct conn *c[8];
	uint8_t ip[16] = { 0 };
	char text[32];
	int i;

	if (s == NULL)
		return;
	for (i = 0; i < 8; i++)
		c[i] = ut_client(s, (uint8_t)(i + 1));
	ip[10] = ip[11] = 0xff;
	ip[12] = 10, ip[15] = 2;
	check(pending_make_room(s, PEND_MAIN, ip) == 1 && c[7]->state ==
	    CS_FREE && c[6]->state == CS_DERP && s->nfree == 1,
	    "slots: one source holding every slot gives up its newest", "");
	ut_client_from(s, 9, "10.0.0.2");
	ip[12] = 10, ip[13] = 9, ip[14] = 9, ip[15] = 9;
	check(pending_make_room(s, PEND_MAIN, ip) == 1 && s->nfree == 0 &&
	    c[6]->state == CS_DERP, "slots: ... but not to a newcomer of its "
	    "own (-max-clients refuses it)", "");
	ut_close_all(s);
	for (i = 0; i < 8; i++) {
		snprintf(text, sizeof text, "10.0.1.%d", i + 1);
		c[i] = ut_client_from(s, (uint8_t)(i + 1), text);
	}
	ip[12] = 10, ip[13] = 0, ip[14] = 2, ip[15] = 1;
	check(pending_make_room(s, PEND_MAIN, ip) == 1 && s->nfree == 0,
	    "slots: a relay full of distinct sources closes nobody", "");
	ut_close_all(s);
	derp_destroy(s);
}

static void
test_unfinished_by_source(const char *dir)
{
	struct derp_server *s = ut_server(dir, 64, 8);
	struct conn *c[8], *b;
	uint8_t ip[16] = { 0 };
	int i, ok;

	if (s == NULL)
		return;
	for (i = 0; i < 8; i++) {
		c[i] = ut_conn(s, "10.0.0.1");
		s->now++;
	}
	ip[10] = ip[11] = 0xff;
	ip[12] = 10, ip[15] = 2;		/* 10.0.0.2 */
	ok = pending_make_room(s, PEND_MAIN, ip) == 1 &&
	    c[0]->state == CS_FREE && c[1]->state != CS_FREE &&
	    s->pend[PEND_MAIN].n == 7;
	check(ok, "unfinished: at the cap, a newcomer from a small source "
	    "evicts the largest source's oldest at once", "");
	b = ut_conn(s, "10.0.0.2");
	ip[15] = 1;				/* 10.0.0.1 again */
	check(pending_make_room(s, PEND_MAIN, ip) == 0 && c[1]->state !=
	    CS_FREE && b->state != CS_FREE, "unfinished: a newcomer from the "
	    "largest source competes with itself: refused while its oldest is "
	    "young", "");
	s->now += HANDSHAKE_GRACE_MS;
	check(pending_make_room(s, PEND_MAIN, ip) == 1 && c[1]->state ==
	    CS_FREE && b->state != CS_FREE, "unfinished: ... and its own "
	    "oldest gives way after the grace", "");
	ut_conn(s, "10.0.0.1");
	ut_conn(s, "2001:db8::1");
	ip[15] = 3;				/* 10.0.0.3 */
	check(pending_make_room(s, PEND_MAIN, ip) == 1 && c[2]->state ==
	    CS_FREE && s->pend[PEND_MAIN].top == 6, "unfinished: counts and "
	    "the largest source follow evictions", "");
	ut_conn(s, "10.0.0.3");
	/* 2001:db8::/64 now holds one; a second address in it is the same
	 * source, one in another /64 is not. */
	inet_pton(AF_INET6, "2001:db8::ffff:1", ip);
	i = (int)source_find(s, &s->pend[PEND_MAIN], (source_addr(ip, ip), ip));
	check(i != NIL && s->pend[PEND_MAIN].src[i].count == 1,
	    "unfinished: IPv6 sources are /64s", "");
	inet_pton(AF_INET6, "2001:db8:0:1::1", ip);
	source_addr(ip, ip);
	check(source_find(s, &s->pend[PEND_MAIN], ip) == NIL,
	    "unfinished: another /64 is another source", "");
	ut_close_all(s);
	check(s->pend[PEND_MAIN].n == 0 && s->pend[PEND_MAIN].top == 0,
	    "unfinished: empty after closing all", "");
	/* Many sources holding one each (a flood from many addresses): the
	 * one that has held its one longest gives way, not the newest. */
	s->pend[PEND_MAIN].cap = 3;
	c[0] = ut_conn(s, "10.1.0.1");
	c[1] = ut_conn(s, "10.1.0.2");
	c[2] = ut_conn(s, "10.1.0.3");
	ip[12] = 10, ip[13] = 1, ip[14] = 0, ip[15] = 4;
	memset(ip, 0, 10);
	ip[10] = ip[11] = 0xff;
	ok = pending_make_room(s, PEND_MAIN, ip) == 1 &&
	    c[0]->state == CS_FREE && c[1]->state != CS_FREE;
	b = ut_conn(s, "10.1.0.4");
	ip[15] = 5;
	ok = ok && pending_make_room(s, PEND_MAIN, ip) == 1 &&
	    c[1]->state == CS_FREE && c[2]->state != CS_FREE &&
	    b->state != CS_FREE;
	check(ok, "unfinished: among sources holding as many, the one that has "
	    "held them longest gives way first", "");
	ut_close_all(s);
	derp_destroy(s);
}

/* A queued packet of plen bytes for c, made by hand. */
static void
ut_queue_packet(struct derp_server *s, struct conn *c, uint32_t plen)
{
	uint32_t n = chunks_for(RECV_PREFIX_BYTES + plen), first = NIL, prev = NIL,
	    i, k, left = RECV_PREFIX_BYTES + plen;

	for (k = 0; k < n; k++) {
		i = pool_take(&s->pool);
		if (prev == NIL)
			first = i;
		else
			s->pool.chunks[prev].next = i;
		s->pool.chunks[i].len = (uint16_t)(left < CHUNK_DATA_BYTES ?
		    left : CHUNK_DATA_BYTES);
		left -= s->pool.chunks[i].len;
		prev = i;
	}
	frame_put_header(s->pool.chunks[first].data, FRAME_RECV_PACKET,
	    KEY_BYTES + plen);
	conn_queue_push(s, c, Q_OTHER, first);
}

static void
test_budgets(const char *dir)
{
	struct derp_server *s = ut_server(dir, 4, 4);
	struct conn *a, *b, *q;
	uint32_t k, spare;
	int ok = 1;

	if (s == NULL)
		return;
	a = ut_client(s, 1);
	b = ut_client(s, 2);
	q = ut_client(s, 3);
	spare = s->spare_cap;
	check(s->pool.count == 4 * CHUNKS_PER_CONN + spare && spare ==
	    CHUNKS_SPARE_BASE + 4 * CHUNKS_SPARE_PER_CONN,
	    "budgets: the pool is every slot's budgets plus the spare", "");
	for (k = 0; k < CHUNKS_IN && ok; k++)
		ok = hold_take(s, a, HOLD_IN, 1) == 0;
	check(ok && s->spare_used == 0 && a->spare_since == 0,
	    "budgets: the IN budget costs the spare nothing", "");
	check(hold_take(s, a, HOLD_IN, 10) == 0 && s->spare_used == 10 &&
	    a->spare_since == s->now, "budgets: beyond it, the spare lends and "
	    "the clock starts", "");
	check(hold_take(s, b, HOLD_IN, CHUNKS_IN + spare - 9) == -1 &&
	    b->hold[HOLD_IN] == 0 && s->spare_used == 10,
	    "budgets: a loan the spare cannot cover is refused whole", "");
	check(hold_take(s, b, HOLD_IN, CHUNKS_IN + spare - 10) == 0 &&
	    s->spare_used == spare, "budgets: the spare lends to its last "
	    "chunk", "");
	hold_give(s, b, HOLD_IN, CHUNKS_IN + spare - 10);
	hold_give(s, a, HOLD_IN, CHUNKS_IN + 10);
	check(s->spare_used == 0 && a->spare_since == 0 && b->spare_since == 0,
	    "budgets: given back, the spare is whole and the clocks stop", "");
	/* Borrowers take turns: with a waiting, b cannot borrow ahead of it,
	 * even with room; a that had its turn and did not ask again leaves
	 * the line. */
	check(hold_take(s, a, HOLD_IN, CHUNKS_IN + spare + 1) == -1 &&
	    a->spare_wait && hold_take(s, b, HOLD_IN, CHUNKS_IN + 1) == -1 &&
	    b->hold[HOLD_IN] == 0 && s->spare_used == 0,
	    "budgets: while one waits for the spare, no other borrows ahead of "
	    "it", "");
	check(hold_take(s, a, HOLD_IN, CHUNKS_IN + 2) == 0 && !a->spare_wait &&
	    s->spare_used == 2, "budgets: the first in line borrows when it "
	    "fits", "");
	hold_give(s, a, HOLD_IN, CHUNKS_IN + 2);
	check(hold_take(s, b, HOLD_IN, CHUNKS_IN + 1) == 0 && s->spare_used == 1,
	    "budgets: then the next", "");
	hold_give(s, b, HOLD_IN, CHUNKS_IN + 1);
	/* (as out_start_packet does when a large packet waits) */
	check(hold_take(s, a, HOLD_IN, CHUNKS_IN + spare + 1) == -1 &&
	    (a->out_wait = 1, ring_push(&s->paused, (uint32_t)(a - s->conns)),
	    input_resume_paused(s), input_resume_paused(s), !a->spare_wait) &&
	    hold_take(s, b, HOLD_IN, CHUNKS_IN + 1) == 0,
	    "budgets: one whose turn came and went without asking leaves the "
	    "line", "");
	hold_give(s, b, HOLD_IN, CHUNKS_IN + 1);
	/* A 64 KiB packet: its first chunks come from the budget one by one;
	 * the chunk that overflows it borrows the whole rest at once, or
	 * nothing. */
	a->flen = KEY_BYTES + MAX_PACKET_BYTES;
	for (k = 0; k < CHUNKS_IN; k++)
		(void)frame_packet_chunk(s, a);
	check(a->fpkt_chunks == CHUNKS_IN && s->spare_used == 0,
	    "budgets: a large packet's first chunks come from the budget", "");
	s->spare_cap = 10;
	check(frame_packet_chunk(s, a) == -1 && s->spare_used == 0 &&
	    a->fpkt_chunks == CHUNKS_IN, "budgets: the rest does not fit the "
	    "spare: nothing is borrowed", "");
	s->spare_cap = spare;
	check(frame_packet_chunk(s, a) == 0 && s->spare_used == 33 - CHUNKS_IN &&
	    a->fpkt_lent == 33 - CHUNKS_IN - 1, "budgets: it fits: the whole "
	    "rest is borrowed at once", "");
	for (k = 0; k < 33 - CHUNKS_IN - 1; k++)
		(void)frame_packet_chunk(s, a);
	check(a->fpkt_chunks == 33 && a->fpkt_lent == 0 &&
	    a->hold[HOLD_IN] == 33 && s->spare_used == 33 - CHUNKS_IN &&
	    chain_count(&s->pool, a->fpkt) == 33, "budgets: the lent chunks are "
	    "taken as bytes come, each counted once", "");
	conn_packet_free(s, a, 1, a->fpkt);
	hold_give(s, a, HOLD_IN, a->fpkt_lent);
	a->fpkt = a->fpkt_cur = NIL;
	a->fpkt_chunks = a->fpkt_lent = 0;
	check(s->spare_used == 0 && a->spare_since == 0, "budgets: given back",
	    "");
	/* Chunks only by account: take them for real now.  q's queue fills
	 * every free chunk; a's budgets must still be served (P4) and only
	 * q's queue pays. */
	while (s->pool.free_count > 0)
		ut_queue_packet(s, q, 1200);
	k = q->q_chunks;
	{
		static uint8_t bytes[CHUNKS_IN * CHUNK_DATA_BYTES];

		check(conn_append(s, a, HOLD_IN, &a->head, bytes,
		    sizeof bytes) == 0 && a->hold[HOLD_IN] == CHUNKS_IN &&
		    s->spare_used == 0 && q->q_chunks < k &&
		    s->st.pool_evictions > 0, "budgets: with the pool full of one "
		    "queue, a budget is still served, by that queue's oldest "
		    "packets", "");
	}
	ut_close_all(s);
	check(s->pool.free_count == s->pool.count && s->spare_used == 0 &&
	    s->nqheap == 0, "budgets: all back after closing", "");
	derp_destroy(s);
}

static void
test_reclaim_heap(const char *dir)
{
	struct derp_server *s = ut_server(dir, 16, 16);
	struct conn *c[10];
	uint32_t i, k, bad = 0, prev;

	if (s == NULL)
		return;
	for (i = 0; i < 10; i++)
		c[i] = ut_client(s, (uint8_t)(i + 1));
	for (k = 0; k < 200; k++) {
		i = xs() % 10;
		if (c[i]->q[Q_OTHER].count < 30)
			ut_queue_packet(s, c[i], xs() % 5000);
		for (i = 1; i < s->nqheap; i++)
			bad += s->conns[s->qheap[(i - 1) / 2]].q_chunks <
			    s->conns[s->qheap[i]].q_chunks;
	}
	check(bad == 0, "reclaim heap: ordered after random pushes", "");
	/* Each reclaim takes from the connection with the most queued
	 * chunks: the largest queue never grows back above the others. */
	prev = UINT32_MAX;
	for (k = 0; k < 100 && s->nqheap > 0; k++) {
		uint32_t most = 0;

		for (i = 0; i < 10; i++)
			if (c[i]->q_chunks > most)
				most = c[i]->q_chunks;
		if (s->conns[s->qheap[0]].q_chunks != most || most > prev)
			bad++;
		prev = most;
		(void)pool_reclaim(s, s->pool.free_count + 1);
	}
	check(bad == 0, "reclaim heap: the victim is always the connection with "
	    "the most queued chunks", "");
	ut_close_all(s);
	check(s->nqheap == 0 && s->pool.free_count == s->pool.count,
	    "reclaim heap: empty after closing", "");
	derp_destroy(s);
}

/* The notices waiting for d: how many, and whether each key is there once. */
static uint32_t
ut_notices(struct derp_server *s, struct conn *d, uint8_t first, uint8_t n,
    int *each_once)
{
	uint32_t e, got = 0;
	uint8_t seen[256] = { 0 };

	for (e = d->snd.gone_head; e != NIL; e = s->snd[e].dnext) {
		got++;
		seen[s->snd[e].key[0]]++;
	}
	*each_once = 1;
	for (e = first; e < (uint32_t)first + n; e++)
		if (seen[e] != 1)
			*each_once = 0;
	return got;
}

static void
test_peergone_records(const char *dir)
{
	struct derp_server *s = ut_server(dir, 128, 128);
	struct conn *d, *c[60], *dup;
	uint8_t frame[FRAME_HEADER_BYTES + PEERGONE_BYTES];
	uint32_t i, n;
	int once;

	if (s == NULL)
		return;
	d = ut_client(s, 200);
	for (i = 0; i < 40; i++) {
		c[i] = ut_client(s, (uint8_t)(i + 1));
		senders_note(s, d, c[i]);
		senders_note(s, d, c[i]);	/* the same one again: no record */
	}
	check(d->snd.paid == SENDERS_PER_CONN && c[39]->snd.paid == 1 &&
	    c[0]->snd.paid == 0, "peergone: the recipient pays for its first "
	    "records, then each sender for its own", "");
	for (i = 0; i < 40; i++)
		conn_close(s, c[i]);
	n = ut_notices(s, d, 1, 40, &once);
	check(n == 40 && once && d->snd.paid == 40, "peergone: 40 senders "
	    "leave, 40 notices, one per key (the departed senders' records now "
	    "paid by the recipient)", "");
	for (i = 0; i < 40; i++)
		out_peer_gone(s, d, frame);
	check(d->snd.gone_head == NIL && d->snd.paid == 0 && frame[0] ==
	    FRAME_PEER_GONE && frame[FRAME_HEADER_BYTES + KEY_BYTES] ==
	    PEER_GONE_DISCONNECTED, "peergone: written, the records are free", "");
	/* Duplicates: the key stays while one connection of it remains. */
	c[0] = ut_client(s, 1);
	senders_note(s, d, c[0]);
	dup = ut_client(s, 1);
	conn_close(s, c[0]);
	check(ut_notices(s, d, 1, 1, &once) == 0, "peergone: a duplicate "
	    "leaving announces nothing", "");
	conn_close(s, dup);
	check(ut_notices(s, d, 1, 1, &once) == 1 && once, "peergone: the last "
	    "connection of the key leaving does", "");
	out_peer_gone(s, d, frame);
	/* Nobody can pay: the recipient and the sender at their budgets and
	 * the spare used up.  The departure then goes unannounced, counted. */
	c[0] = ut_client(s, 1);
	d->snd.paid = SENDERS_PER_CONN;
	c[0]->snd.paid = SENDERS_PER_CONN;
	s->snd_spare_used = SENDERS_SPARE;
	senders_note(s, d, c[0]);
	check(s->st.peer_gone_untracked == 1 && d->snd.live == NIL,
	    "peergone: no budget anywhere: not tracked, counted", "");
	d->snd.paid = 0;
	c[0]->snd.paid = 0;
	s->snd_spare_used = 0;
	/* A key whose connections come and go (duplicates) while the key
	 * stays: the records a closing connection paid for pass to one that
	 * remains, never beyond anyone's budget, so reconnecting over and over
	 * piles up nothing; with nobody to pay, the record is dropped. */
	{
		struct conn *k1, *k2;
		uint32_t live0 = s->snd_fresh, j;
		int good = 1;

		d->snd.paid = SENDERS_PER_CONN;	/* d's own budget spent */
		k1 = ut_client(s, 7);
		senders_note(s, d, k1);
		good = k1->snd.paid == 1;
		for (j = 0; j < 50 && good; j++) {
			k2 = ut_client(s, 7);
			conn_close(s, k1);
			good = k2->snd.paid == 1 && d->snd.paid ==
			    SENDERS_PER_CONN && s->snd_spare_used == 0 &&
			    snd_find(s, (uint32_t)(d - s->conns), k2->key) != NIL;
			k1 = k2;
		}
		check(good && s->snd_fresh <= live0 + 1, "peergone: a key "
		    "reconnecting 50 times keeps one record, paid by the "
		    "connection that remains", "");
		k2 = ut_client(s, 7);
		k2->snd.paid = SENDERS_PER_CONN;
		s->snd_spare_used = SENDERS_SPARE;
		n = (uint32_t)s->st.peer_gone_untracked;
		conn_close(s, k1);
		check(s->st.peer_gone_untracked == n + 1 && d->snd.live == NIL &&
		    d->snd.paid == SENDERS_PER_CONN, "peergone: nobody left to "
		    "pay: the record is dropped, counted", "");
		k2->snd.paid = 0;
		s->snd_spare_used = 0;
		d->snd.paid = 0;
		conn_close(s, k2);
		check(d->snd.gone_head == NIL, "peergone: a dropped record "
		    "announces nothing", "");
	}
	/* A recipient closing first frees its records; the senders leaving
	 * later find nothing of it. */
	senders_note(s, d, c[0]);
	conn_close(s, d);
	conn_close(s, c[0]);
	check(s->snd_free != NIL && s->snd_spare_used == 0 && s->nkeys == 0,
	    "peergone: a recipient closing first frees its records", "");
	ut_close_all(s);
	derp_destroy(s);
}

static void test_misc(void)
{
	char host[64];
	int port = 0;
	struct derp_config a, b;

	check(parse_hostport(":443", host, sizeof host, &port) == 0 && host[0] == 0 && port == 443,
	    "addr: :443", "");
	check(parse_hostport("[::1]:80", host, sizeof host, &port) == 0 &&
	    strcmp(host, "::1") == 0 && port == 80, "addr: [::1]:80", "");
	check(parse_hostport("1.2.3.4:https", host, sizeof host, &port) == 0 &&
	    strcmp(host, "1.2.3.4") == 0 && port == 443, "addr: port name https", "");
	check(parse_hostport("::1:80", host, sizeof host, &port) == -1, "addr: bare v6 refused", "");
	check(parse_hostport("x:70000", host, sizeof host, &port) == -1, "addr: port range", "");
	check(parse_hostport("nocolon", host, sizeof host, &port) == -1, "addr: no port", "");
	derp_config_defaults(&a);
	b = a;
	b.max_clients = 2 * a.max_clients;
	check(derp_memory_bytes(&b) > derp_memory_bytes(&a) &&
	    derp_memory_bytes(&a) > (size_t)a.max_clients * (IBUF_BYTES + OBUF_BYTES),
	    "memory: reservation grows with -max-clients", "");
}

static void test_ratecfg(void)
{
	struct ratecfg r;

	check(ratecfg_parse("{\"PerClientRateLimitBytesPerSec\": 1000, \"perclientrateburstbytes\":5}", 68, &r) == 0 &&
	    r.rate == 1000 && r.burst == 5, "ratecfg: both members, any case", "");
	check(ratecfg_parse("{\"Other\":[1,2],\"PerClientRateLimitBytesPerSec\":null}", 52, &r) == 0 &&
	    r.rate == 0 && r.burst == 0, "ratecfg: unknown member, null", "");
	check(ratecfg_parse("{\"PerClientRateLimitBytesPerSec\":-1}", 36, &r) == -1,
	    "ratecfg: negative refused", "");
	check(ratecfg_parse("{\"PerClientRateLimitBytesPerSec\":1.5}", 37, &r) == -1,
	    "ratecfg: fraction refused", "");
	check(ratecfg_parse("{\"PerClientRateLimitBytesPerSec\":\"1\"}", 37, &r) == -1,
	    "ratecfg: string refused", "");
	check(ratecfg_parse("[1]", 3, &r) == -1, "ratecfg: not an object", "");
}

int main(int argc, char **argv)
{
	char scratch[256], key[300];
	const char *tmp = getenv("TMPDIR");
	int i;

	if (argc != 2) {
		fprintf(stderr, "usage: test_json DATADIR\n");
		return 2;
	}
	for (i = 0; i < 32; i++)
		mesh_key[i] = (uint8_t)i;
	test_tsv(argv[1]);
	test_ci_cases();
	test_depth();
	test_mesh_rule();
	test_keyfile(argv[1]);
	test_key_cases();
	test_hex();
	test_mutations();
	test_http_parse();
	test_paths();
	test_go_numbers();
	test_flags();
	test_keytab();
	test_pool();
	snprintf(scratch, sizeof scratch, "%s/derp-units.XXXXXX",
	    tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	if (mkdtemp(scratch) == NULL) {
		printf("FAIL mkdtemp %s: %s\n", scratch, strerror(errno));
		return 1;
	}
	test_unfinished_by_source(scratch);
	test_slots_fair_share(scratch);
	test_budgets(scratch);
	test_reclaim_heap(scratch);
	test_peergone_records(scratch);
	snprintf(key, sizeof key, "%s/ut.key", scratch);
	(void)unlink(key);
	(void)rmdir(scratch);
	test_misc();
	test_ratecfg();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
