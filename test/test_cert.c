/*
 * test_cert.c -- tests for cert.c: the self-signed IP certificate, PEM loading of
 * openssl-made keys and chains, hostname matching, and clean errors on bad files.
 *
 * Usage: test_cert SCRATCH_DIR   (created if missing; keys and certificates are
 * generated there and nowhere else).  Checks that need the `openssl` command print
 * `skip` lines when it is missing.  One line per check, then
 * "N passed, N failed, N skipped"; exit status 0 iff nothing failed.
 *
 * Build: cc -std=c99 -Wall -Wextra -pedantic -O1 -g -fsanitize=address,undefined \
 *            -o /tmp/test_cert cert.c test/test_cert.c -lbearssl
 */
#define _POSIX_C_SOURCE 200809L

#include "../cert.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int n_pass, n_fail, n_skip;
static const char *skip_reason;	/* non-NULL: check() prints skip lines */
static const char *scratch;
static int have_openssl;

#define ERR_MAX 512
#define PATH_BYTES 4096

static void
check(const char *name, int cond, const char *fmt, ...)
{
	va_list ap;

	if (skip_reason != NULL) {
		printf("skip %s: %s\n", name, skip_reason);
		n_skip++;
	} else if (cond) {
		printf("ok %s\n", name);
		n_pass++;
	} else {
		printf("FAIL %s: ", name);
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		printf("\n");
		n_fail++;
	}
	fflush(stdout);
}

/* scratch/name, in a static buffer (one of four, used round-robin). */
static const char *
sp(const char *name)
{
	static char buf[4][PATH_BYTES];
	static int i;
	char *p = buf[i++ & 3];

	snprintf(p, PATH_BYTES, "%s/%s", scratch, name);
	return p;
}

/* Run a shell command in the scratch directory, output appended to
 * scratch/openssl.log.  1 if it exited 0.  Does nothing (0) without openssl. */
static int
sh(const char *fmt, ...)
{
	char cmd[8192], inner[6144];
	va_list ap;
	int st;

	if (!have_openssl)
		return 0;
	va_start(ap, fmt);
	vsnprintf(inner, sizeof inner, fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof cmd, "cd '%s' && ( %s ) >>openssl.log 2>&1",
	    scratch, inner);
	st = system(cmd);
	return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* Whole file, NUL-terminated, malloc'd; NULL if unreadable. */
static char *
slurp(const char *path, size_t *lenp)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL, *nb;
	size_t len = 0, cap = 0, n;

	if (f == NULL)
		return NULL;
	for (;;) {
		if (cap - len < 4096) {
			cap = cap * 2 + 8192;
			nb = realloc(buf, cap);
			if (nb == NULL) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		if (n == 0)
			break;
		len += n;
	}
	fclose(f);
	buf[len] = '\0';
	if (lenp != NULL)
		*lenp = len;
	return buf;
}

static int
spew(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	int ok;

	if (f == NULL)
		return -1;
	ok = fwrite(data, 1, len, f) == len;
	ok = (fclose(f) == 0) && ok;
	return ok ? 0 : -1;
}

static int
spews(const char *path, const char *s)
{
	return spew(path, s, strlen(s));
}

/* Concatenate files a and b into out.  0 or -1. */
static int
cat2(const char *out, const char *a, const char *b)
{
	char *x = slurp(a, NULL), *y = slurp(b, NULL);
	char *z;
	int rc = -1;

	if (x != NULL && y != NULL) {
		z = malloc(strlen(x) + strlen(y) + 1);
		if (z != NULL) {
			strcpy(z, x);
			strcat(z, y);
			rc = spew(out, z, strlen(z));
			free(z);
		}
	}
	free(x);
	free(y);
	return rc;
}

static int
file_contains(const char *path, const char *needle)
{
	char *s = slurp(path, NULL);
	int r = s != NULL && strstr(s, needle) != NULL;

	free(s);
	return r;
}

static int
file_starts_with(const char *path, const char *prefix)
{
	char *s = slurp(path, NULL);
	int r = s != NULL && strncmp(s, prefix, strlen(prefix)) == 0;

	free(s);
	return r;
}

static unsigned
mode_of(const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return 0xffff;
	return (unsigned)(st.st_mode & 07777);
}

static void
sha256(const void *p, size_t n, uint8_t out[32])
{
	br_sha256_context c;

	br_sha256_init(&c);
	br_sha256_update(&c, p, n);
	br_sha256_out(&c, out);
}

/* cert_load_files, expecting failure whose message contains want. */
static void
expect_load_error(const char *name, const char *crt, const char *key,
    const char *want)
{
	struct cert_store cs;
	char err[ERR_MAX] = "";
	int rc;

	rc = cert_load_files(&cs, crt, key, err, sizeof err);
	check(name, rc == -1 && err[0] != '\0' && strstr(err, want) != NULL &&
	    cs.chain_len == 0 && cs.ec.x == NULL && cs.rsa.p == NULL,
	    "rc %d, err \"%s\", want \"%s\"", rc, err, want);
	if (rc == 0)
		cert_free(&cs);
}

static void
expect_combined_error(const char *name, const char *path, const char *want)
{
	struct cert_store cs;
	char err[ERR_MAX] = "";
	int rc;

	rc = cert_load_combined(&cs, path, err, sizeof err);
	check(name, rc == -1 && strstr(err, want) != NULL && cs.chain_len == 0,
	    "rc %d, err \"%s\", want \"%s\"", rc, err, want);
	if (rc == 0)
		cert_free(&cs);
}

/* Hostname expectations against a loaded store. */
struct host_case {
	const char *host;
	int want;
};

static void
check_hosts(const char *prefix, const struct cert_store *cs,
    const struct host_case *hc, size_t n)
{
	char name[256];
	size_t i;
	int got;

	for (i = 0; i < n; i++) {
		snprintf(name, sizeof name, "%s_host[%s]=%s", prefix,
		    hc[i].host, hc[i].want ? "yes" : "no");
		got = cert_matches_host(cs, hc[i].host);
		check(name, got == hc[i].want, "got %d", got);
	}
}

/* ------------------------------------------------------------------------- */

/* A generated IP certificate: write, modes, load, pin, hosts. */
static void
test_generated(const char *tag, const char *ip, const char *crt,
    const char *key, const struct host_case *hc, size_t nhc,
    const char *openssl_san)
{
	struct cert_store cs;
	char err[ERR_MAX] = "", name[128], *text;
	uint8_t h[32];
	size_t derlen;
	char *der;
	int rc;

	rc = cert_generate_ip(crt, key, ip, time(NULL), err, sizeof err);
	snprintf(name, sizeof name, "%s_generate", tag);
	check(name, rc == 0, "%s", err);
	snprintf(name, sizeof name, "%s_key_mode_0600", tag);
	check(name, mode_of(key) == 0600, "mode %o", mode_of(key));
	snprintf(name, sizeof name, "%s_crt_mode_0600", tag);
	check(name, mode_of(crt) == 0600, "mode %o", mode_of(crt));
	snprintf(name, sizeof name, "%s_key_pem_banner", tag);
	check(name, file_starts_with(key, "-----BEGIN EC PRIVATE KEY-----\n"),
	    "key file does not start with an EC PRIVATE KEY block");
	snprintf(name, sizeof name, "%s_crt_pem_banner", tag);
	check(name, file_starts_with(crt, "-----BEGIN CERTIFICATE-----\n"),
	    "crt file does not start with a CERTIFICATE block");

	rc = cert_load_files(&cs, crt, key, err, sizeof err);
	snprintf(name, sizeof name, "%s_load", tag);
	check(name, rc == 0, "%s", err);
	snprintf(name, sizeof name, "%s_key_type_ec", tag);
	check(name, cs.key_type == BR_KEYTYPE_EC &&
	    cs.ec.curve == BR_EC_secp256r1 && cs.ec.xlen == 32,
	    "key_type %d curve %d xlen %lu", cs.key_type, cs.ec.curve,
	    (unsigned long)cs.ec.xlen);
	snprintf(name, sizeof name, "%s_chain_len_1", tag);
	check(name, cs.chain_len == 1, "chain_len %lu",
	    (unsigned long)cs.chain_len);
	snprintf(name, sizeof name, "%s_leaf_and_issuer_ec", tag);
	check(name, cs.leaf_key_type == BR_KEYTYPE_EC &&
	    cs.leaf_issuer_key_type == BR_KEYTYPE_EC, "leaf %d issuer %u",
	    cs.leaf_key_type, cs.leaf_issuer_key_type);
	if (cs.chain_len > 0)
		sha256(cs.chain[0].data, cs.chain[0].data_len, h);
	snprintf(name, sizeof name, "%s_leaf_sha256", tag);
	check(name, cs.chain_len > 0 && memcmp(h, cs.leaf_sha256, 32) == 0,
	    "leaf_sha256 differs from SHA-256 of chain[0]");
	check_hosts(tag, &cs, hc, nhc);

	/* openssl's view of the same file. */
	if (!have_openssl)
		skip_reason = "openssl command not found";
	rc = sh("openssl x509 -in '%s' -noout -text > %s.text", crt, tag);
	snprintf(name, sizeof name, "%s_openssl_x509_text", tag);
	check(name, rc, "openssl x509 -text rejected %s (see openssl.log)",
	    crt);
	snprintf(name, sizeof name, "%s.text", tag);
	text = slurp(sp(name), NULL);
	{
		static const char *want[] = {
			"Version: 3 (0x2)",
			"Signature Algorithm: ecdsa-with-SHA256",
			"ASN1 OID: prime256v1",
			"X509v3 Key Usage: critical",
			"Digital Signature, Key Encipherment",
			"TLS Web Server Authentication",
			"X509v3 Basic Constraints: critical",
			"CA:FALSE",
		};
		size_t i;
		char line[128];

		for (i = 0; i < sizeof want / sizeof want[0]; i++) {
			snprintf(name, sizeof name, "%s_openssl_shows[%s]",
			    tag, want[i]);
			check(name, text != NULL && strstr(text, want[i]) != NULL,
			    "not in openssl output");
		}
		snprintf(line, sizeof line, "Subject: CN = %s", ip);
		snprintf(name, sizeof name, "%s_openssl_shows_subject", tag);
		check(name, text != NULL && strstr(text, line) != NULL,
		    "no \"%s\"", line);
		snprintf(line, sizeof line, "Issuer: CN = %s", ip);
		snprintf(name, sizeof name, "%s_openssl_shows_issuer", tag);
		check(name, text != NULL && strstr(text, line) != NULL,
		    "no \"%s\"", line);
		snprintf(name, sizeof name, "%s_openssl_shows_ip_san", tag);
		check(name, text != NULL && strstr(text, openssl_san) != NULL,
		    "no \"%s\"", openssl_san);
	}
	free(text);
	rc = sh("openssl verify -CAfile '%s' '%s'", crt, crt);
	snprintf(name, sizeof name, "%s_openssl_verify_signature", tag);
	check(name, rc, "openssl verify failed (see openssl.log)");
	rc = sh("openssl x509 -in '%s' -noout -pubkey > %s.pub1 && "
	    "openssl pkey -in '%s' -pubout > %s.pub2 && cmp %s.pub1 %s.pub2",
	    crt, tag, key, tag, tag, tag);
	snprintf(name, sizeof name, "%s_openssl_key_matches_cert", tag);
	check(name, rc, "public keys differ (see openssl.log)");
	rc = sh("openssl x509 -in '%s' -outform DER -out %s.der", crt, tag);
	snprintf(name, sizeof name, "%s.der", tag);
	der = rc ? slurp(sp(name), &derlen) : NULL;
	if (der != NULL)
		sha256(der, derlen, h);
	snprintf(name, sizeof name, "%s_leaf_sha256_vs_openssl_der", tag);
	check(name, der != NULL && memcmp(h, cs.leaf_sha256, 32) == 0,
	    "SHA-256 of openssl's DER differs from leaf_sha256");
	free(der);
	skip_reason = NULL;
	cert_free(&cs);
}

/* Validity dates and their encoding, for a fixed time. */
static void
test_dates(void)
{
	char err[ERR_MAX] = "";
	int rc;

	rc = cert_generate_ip(sp("t2023.crt"), sp("t2023.key"), "192.0.2.1",
	    (time_t)1700000000L, err, sizeof err);
	check("dates_2023_generate", rc == 0, "%s", err);
	if (!have_openssl)
		skip_reason = "openssl command not found";
	rc = sh("openssl x509 -in t2023.crt -noout -dates > t2023.dates && "
	    "openssl asn1parse -in t2023.crt > t2023.asn1");
	check("dates_2023_openssl", rc, "openssl failed (see openssl.log)");
	/* 1700000000 = 2023-11-14 22:13:20 UTC; 365 days on, 2024 being a
	 * leap year, is 2024-11-13. */
	check("dates_2023_not_before", file_contains(sp("t2023.dates"),
	    "notBefore=Nov 14 22:13:20 2023 GMT"), "wrong notBefore");
	check("dates_2023_not_after", file_contains(sp("t2023.dates"),
	    "notAfter=Nov 13 22:13:20 2024 GMT"), "wrong notAfter");
	check("dates_2023_utctime", file_contains(sp("t2023.asn1"),
	    "UTCTIME           :231114221320Z") && !file_contains(
	    sp("t2023.asn1"), "GENERALIZEDTIME"), "not UTCTime");
	skip_reason = NULL;

	if (sizeof(time_t) < 8) {
		skip_reason = "32-bit time_t";
		check("dates_2050_generalizedtime", 0, "");
		skip_reason = NULL;
		return;
	}
	/* 2524608000 = 2050-01-01 00:00:00 UTC: from 2050 on, GeneralizedTime. */
	rc = cert_generate_ip(sp("t2050.crt"), sp("t2050.key"), "192.0.2.1",
	    (time_t)2524608000, err, sizeof err);
	check("dates_2050_generate", rc == 0, "%s", err);
	if (!have_openssl)
		skip_reason = "openssl command not found";
	rc = sh("openssl x509 -in t2050.crt -noout -dates > t2050.dates && "
	    "openssl asn1parse -in t2050.crt > t2050.asn1");
	check("dates_2050_openssl", rc, "openssl failed (see openssl.log)");
	check("dates_2050_not_before", file_contains(sp("t2050.dates"),
	    "notBefore=Jan  1 00:00:00 2050 GMT"), "wrong notBefore");
	check("dates_2050_not_after", file_contains(sp("t2050.dates"),
	    "notAfter=Jan  1 00:00:00 2051 GMT"), "wrong notAfter");
	check("dates_2050_generalizedtime", file_contains(sp("t2050.asn1"),
	    "GENERALIZEDTIME   :20500101000000Z"), "not GeneralizedTime");
	skip_reason = NULL;
}

/* Generation edge cases: directories, bad input, overwriting. */
static void
test_generate_misc(const char *crt4, const char *key4)
{
	char dir[PATH_BYTES / 2], crt[PATH_BYTES], key[PATH_BYTES];
	char err[ERR_MAX] = "";
	struct cert_store a, b;
	int rc;

	/* Parent directories created, mode 0700 (mkdir -p). */
	snprintf(dir, sizeof dir, "%s/mk-%ld", scratch, (long)getpid());
	snprintf(crt, sizeof crt, "%s/a/b/10.0.0.1.crt", dir);
	snprintf(key, sizeof key, "%s/a/b/10.0.0.1.key", dir);
	rc = cert_generate_ip(crt, key, "10.0.0.1", time(NULL), err,
	    sizeof err);
	check("generate_makes_parent_dirs", rc == 0, "%s", err);
	unlink(crt);
	unlink(key);
	snprintf(crt, sizeof crt, "%s/a/b", dir);
	check("generate_dir_mode_0700", mode_of(crt) == 0700 &&
	    mode_of(dir) == 0700, "modes %o %o", mode_of(crt), mode_of(dir));
	rmdir(crt);
	snprintf(crt, sizeof crt, "%s/a", dir);
	rmdir(crt);
	rmdir(dir);

	/* A DNS name (the tests' relays that check SNI): a dNSName SAN that
	 * Go's host check accepts for the name only. */
	rc = cert_generate_dns(sp("dns.crt"), sp("dns.key"), "derp.example.test",
	    time(NULL), err, sizeof err);
	check("generate_dns", rc == 0, "%s", err);
	rc = rc == 0 ? cert_load_files(&a, sp("dns.crt"), sp("dns.key"), err,
	    sizeof err) : -1;
	check("generate_dns_matches_its_name_only", rc == 0 &&
	    cert_matches_host(&a, "derp.example.test") &&
	    cert_matches_host(&a, "DERP.example.test.") &&
	    !cert_matches_host(&a, "other.example.test") &&
	    !cert_matches_host(&a, "127.0.0.1"), "rc %d %s", rc, err);
	if (rc == 0)
		cert_free(&a);
	check("generate_dns_rejects_bad_names",
	    cert_generate_dns(sp("x.crt"), sp("x.key"), "a..b", time(NULL),
	    err, sizeof err) == -1 &&
	    cert_generate_dns(sp("x.crt"), sp("x.key"), "a b", time(NULL),
	    err, sizeof err) == -1 &&
	    cert_generate_dns(sp("x.crt"), sp("x.key"), "", time(NULL),
	    err, sizeof err) == -1 && mode_of(sp("x.crt")) == 0xffff, "");

	/* Bad input. */
	err[0] = '\0';
	rc = cert_generate_ip(sp("bad.crt"), sp("bad.key"), "not-an-ip",
	    time(NULL), err, sizeof err);
	check("generate_rejects_dns_name", rc == -1 &&
	    strstr(err, "not an IP address") != NULL, "rc %d err %s", rc, err);
	rc = cert_generate_ip(sp("bad.crt"), sp("bad.key"), "",
	    time(NULL), err, sizeof err);
	check("generate_rejects_empty", rc == -1, "rc %d", rc);
	rc = cert_generate_ip(sp("bad.crt"), sp("bad.key"), "[::1]",
	    time(NULL), err, sizeof err);
	check("generate_rejects_brackets", rc == -1, "rc %d", rc);
	rc = cert_generate_ip(sp("bad.crt"), sp("bad.crt"), "::1",
	    time(NULL), err, sizeof err);
	check("generate_rejects_same_paths", rc == -1, "rc %d", rc);
	check("generate_bad_input_writes_nothing", mode_of(sp("bad.crt")) ==
	    0xffff && mode_of(sp("bad.key")) == 0xffff, "files exist");
	spews(sp("afile"), "x");
	err[0] = '\0';
	rc = cert_generate_ip(sp("afile/x.crt"), sp("afile/x.key"), "::1",
	    time(NULL), err, sizeof err);
	check("generate_parent_is_a_file", rc == -1 &&
	    strstr(err, "Not a directory") != NULL, "rc %d err %s", rc, err);

	/* An existing file is replaced, and its mode tightened. */
	rc = spew(sp("re.crt"), "old", 3) | spew(sp("re.key"), "old", 3);
	rc |= chmod(sp("re.crt"), 0644) | chmod(sp("re.key"), 0644);
	rc |= cert_generate_ip(sp("re.crt"), sp("re.key"), "192.0.2.9",
	    time(NULL), err, sizeof err);
	check("generate_overwrites", rc == 0 && mode_of(sp("re.crt")) == 0600 &&
	    mode_of(sp("re.key")) == 0600, "rc %d err %s modes %o %o", rc,
	    err, mode_of(sp("re.crt")), mode_of(sp("re.key")));

	/* Two generations: fresh key and serial, so a different pin. */
	rc = cert_load_files(&a, crt4, key4, err, sizeof err);
	rc |= cert_load_files(&b, sp("re.crt"), sp("re.key"), err, sizeof err);
	check("generate_fresh_each_time", rc == 0 &&
	    memcmp(a.leaf_sha256, b.leaf_sha256, 32) != 0 &&
	    (a.ec.xlen != b.ec.xlen || memcmp(a.ec.x, b.ec.x, a.ec.xlen) != 0),
	    "rc %d", rc);
	cert_free(&a);
	cert_free(&b);

	/* NotAfter past 2038: refused with a 32-bit time_t, fine otherwise. */
	rc = cert_generate_ip(sp("y2038.crt"), sp("y2038.key"), "192.0.2.38",
	    (time_t)0x7fffffffL - 1000, err, sizeof err);
	if (sizeof(time_t) < 8)
		check("generate_2038_32bit_time_t", rc == -1 &&
		    strstr(err, "out of range") != NULL, "rc %d err %s", rc, err);
	else
		check("generate_2038_64bit_time_t", rc == 0, "%s", err);

	/* IPv4-mapped IPv6 text: Go writes it as a 4-byte IP SAN. */
	rc = cert_generate_ip(sp("mapped.crt"), sp("mapped.key"),
	    "::ffff:192.0.2.44", time(NULL), err, sizeof err);
	rc |= cert_load_files(&a, sp("mapped.crt"), sp("mapped.key"), err,
	    sizeof err);
	check("generate_v4mapped", rc == 0 &&
	    cert_matches_host(&a, "192.0.2.44") &&
	    cert_matches_host(&a, "::ffff:192.0.2.44") &&
	    !cert_matches_host(&a, "192.0.2.45"), "rc %d err %s", rc, err);
	cert_free(&a);
}

/* The autocert cache format: key block, then the chain. */
static void
test_combined(const char *crt, const char *key)
{
	struct cert_store a, b;
	char err[ERR_MAX] = "";
	int rc;

	rc = cat2(sp("combined.pem"), key, crt);
	rc |= cert_load_combined(&a, sp("combined.pem"), err, sizeof err);
	check("combined_load", rc == 0, "%s", err);
	rc = cert_load_files(&b, crt, key, err, sizeof err);
	check("combined_same_as_files", rc == 0 && a.chain_len == 1 &&
	    a.key_type == BR_KEYTYPE_EC &&
	    memcmp(a.leaf_sha256, b.leaf_sha256, 32) == 0 &&
	    cert_matches_host(&a, "127.0.0.1"), "rc %d", rc);
	cert_free(&a);
	cert_free(&b);
	expect_combined_error("combined_cert_only", crt, "no private key");
	expect_combined_error("combined_key_only", key,
	    "no CERTIFICATE block");
	expect_combined_error("combined_missing", sp("nonexistent.pem"),
	    "No such file or directory");
}

/* Files that must fail cleanly. */
static void
test_bad_files(const char *crt4, const char *key4, const char *crt6,
    const char *key6)
{
	char *pem, *p, path[PATH_BYTES];
	size_t len, i, end_at, loaded_short;
	struct cert_store cs;
	char err[ERR_MAX];

	snprintf(path, sizeof path, "open %s/nonexistent.crt: No such file "
	    "or directory", scratch);
	expect_load_error("missing_crt", sp("nonexistent.crt"), key4, path);
	expect_load_error("missing_key", crt4, sp("nonexistent.key"),
	    "No such file or directory");
	spews(sp("empty"), "");
	expect_load_error("empty_crt", sp("empty"), key4,
	    "no CERTIFICATE block");
	expect_load_error("empty_key", crt4, sp("empty"), "no private key");
	spews(sp("garbage"), "\x01\x02 hello \xff\xfe\n-----BEGIN\n--");
	expect_load_error("garbage_crt", sp("garbage"), key4,
	    "no CERTIFICATE block");
	expect_load_error("garbage_key", crt4, sp("garbage"),
	    "no private key");
	expect_load_error("cert_with_no_key", crt4, crt4, "no private key");
	expect_load_error("key_as_cert", key4, key4, "no CERTIFICATE block");
	expect_load_error("directory_as_crt", scratch, key4, "read ");
	expect_load_error("mismatched_key_ec", crt4, key6,
	    "private key does not match certificate");
	expect_load_error("mismatched_key_ec2", crt6, key4,
	    "private key does not match certificate");

	pem = slurp(crt4, &len);
	if (pem == NULL) {
		check("truncated_pem_setup", 0, "cannot read %s", crt4);
		return;
	}
	/* Cut anywhere: never a crash.  Every prefix that stops before the END
	 * line fails (BearSSL takes a line starting "-----END " as the end, so
	 * the prefixes from there on may load; the full file less its final
	 * newline must). */
	p = strstr(pem, "-----END ");
	end_at = p != NULL ? (size_t)(p - pem) + 9 : len;
	loaded_short = 0;
	for (i = 0; i < len; i++) {
		spew(sp("trunc.crt"), pem, i);
		if (cert_load_files(&cs, sp("trunc.crt"), key4, err,
		    sizeof err) == 0) {
			if (i < end_at && loaded_short == 0)
				loaded_short = i + 1;
			cert_free(&cs);
		}
	}
	check("truncated_pem_every_length", p != NULL && loaded_short == 0,
	    "a %lu-byte prefix loaded", (unsigned long)loaded_short - 1);
	/* Cut at a line boundary in the base64: "truncated". */
	p = strchr(pem + len / 2, '\n');
	spew(sp("trunc.crt"), pem, p != NULL ? (size_t)(p - pem) + 1 : 0);
	expect_load_error("truncated_pem_message", sp("trunc.crt"), key4,
	    "truncated PEM");
	/* Cut inside a base64 line: an invalid line. */
	spew(sp("trunc.crt"), pem, p != NULL ? (size_t)(p - pem) - 5 : 0);
	expect_load_error("truncated_pem_mid_line", sp("trunc.crt"), key4,
	    "invalid PEM");
	spew(sp("trunc.crt"), pem, len - 1);
	check("pem_without_final_newline", cert_load_files(&cs,
	    sp("trunc.crt"), key4, err, sizeof err) == 0, "%s", err);
	cert_free(&cs);
	/* A character outside base64 inside the block. */
	p = strchr(pem, '\n');
	if (p != NULL && p[1] != '\0' && p[2] != '\0') {
		p[2] = '!';
		spew(sp("badb64.crt"), pem, len);
		expect_load_error("bad_base64", sp("badb64.crt"), key4,
		    "invalid PEM");
	}
	free(pem);

	/* Well-formed PEM around bytes that are no certificate / no key. */
	spews(sp("notx509.crt"), "-----BEGIN CERTIFICATE-----\n"
	    "aGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n");
	expect_load_error("pem_not_x509", sp("notx509.crt"), key4,
	    "not a valid X.509 certificate");
	spews(sp("notkey.key"), "-----BEGIN EC PRIVATE KEY-----\n"
	    "aGVsbG8gd29ybGQ=\n-----END EC PRIVATE KEY-----\n");
	expect_load_error("pem_not_a_key", crt4, sp("notkey.key"),
	    "cannot decode private key");
	{
		char *leaf = slurp(crt4, NULL);
		char *bad = malloc(strlen(leaf != NULL ? leaf : "") + 100);

		if (leaf != NULL && bad != NULL) {
			strcpy(bad, leaf);
			strcat(bad, "-----BEGIN CERTIFICATE-----\n"
			    "aGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n");
			spews(sp("badint.crt"), bad);
		}
		free(leaf);
		free(bad);
		expect_load_error("pem_intermediate_not_der", sp("badint.crt"),
		    key4, "certificate 2 is not DER");
	}
	spews(sp("emptyblock.crt"), "-----BEGIN CERTIFICATE-----\n"
	    "-----END CERTIFICATE-----\n");
	expect_load_error("pem_empty_block", sp("emptyblock.crt"), key4,
	    "empty CERTIFICATE block");

	/* More certificates than CERT_CHAIN_MAX. */
	pem = slurp(crt4, &len);
	if (pem != NULL) {
		p = malloc(len * (CERT_CHAIN_MAX + 1));
		if (p != NULL) {
			for (i = 0; i < CERT_CHAIN_MAX + 1; i++)
				memcpy(p + i * len, pem, len);
			spew(sp("long.crt"), p, len * (CERT_CHAIN_MAX + 1));
			expect_load_error("chain_too_long", sp("long.crt"), key4,
			    "more than");
			spew(sp("long.crt"), p, len * CERT_CHAIN_MAX);
			check("chain_at_max", cert_load_files(&cs, sp("long.crt"),
			    key4, err, sizeof err) == 0 &&
			    cs.chain_len == CERT_CHAIN_MAX, "%s", err);
			cert_free(&cs);
			free(p);
		}
		free(pem);
	}

	/* Zeroed and freed stores are harmless. */
	memset(&cs, 0, sizeof cs);
	check("matches_on_empty_store", cert_matches_host(&cs, "127.0.0.1") == 0,
	    "matched");
	cert_free(&cs);
	cert_free(&cs);
	check("free_twice", cs.chain_len == 0, "not zeroed");
}

/* cert_matches_host on every truncation and many corruptions of a real leaf:
 * no crash, no out-of-bounds read (run under ASan). */
static void
test_san_walker_robust(const char *crt, const char *key)
{
	static const uint8_t vals[] = { 0x00, 0x01, 0x30, 0x7f, 0x80, 0x81,
	    0x82, 0x84, 0x85, 0xa3, 0xff };
	struct cert_store cs, fake;
	char err[ERR_MAX];
	uint8_t *copy;
	size_t n, i, v;
	int matched_whole = 0;

	if (cert_load_files(&cs, crt, key, err, sizeof err) != 0) {
		check("san_walker_robust", 0, "load: %s", err);
		return;
	}
	n = cs.chain[0].data_len;
	memset(&fake, 0, sizeof fake);
	fake.chain_len = 1;
	for (i = 0; i <= n; i++) {
		copy = malloc(i == 0 ? 1 : i);	/* exact size for ASan */
		if (copy == NULL)
			break;
		memcpy(copy, cs.chain[0].data, i);
		fake.chain[0].data = copy;
		fake.chain[0].data_len = i;
		if (cert_matches_host(&fake, "127.0.0.1"))
			matched_whole += i == n ? 1 : 1000;
		free(copy);
	}
	check("san_walker_truncations", matched_whole == 1,
	    "only the whole certificate should match (%d)", matched_whole);
	copy = malloc(n);
	if (copy != NULL) {
		for (i = 0; i < n; i++) {
			for (v = 0; v < sizeof vals; v++) {
				memcpy(copy, cs.chain[0].data, n);
				copy[i] = vals[v];
				fake.chain[0].data = copy;
				fake.chain[0].data_len = n;
				(void)cert_matches_host(&fake, "127.0.0.1");
				(void)cert_matches_host(&fake, "a.example");
			}
		}
		free(copy);
	}
	check("san_walker_corruptions", 1, "");
	cert_free(&cs);
}

/* ------------------------------------------------------------------------- */
/* Certificates and keys made by openssl.                                     */

static const char openssl_cnf[] =
	"[req]\n"
	"distinguished_name = dn\n"
	"prompt = no\n"
	"[dn]\n"
	"CN = unused\n"
	"[v3_ca]\n"
	"basicConstraints = critical,CA:TRUE\n"
	"keyUsage = critical,keyCertSign,cRLSign\n"
	"subjectKeyIdentifier = hash\n"
	"[v3_leaf]\n"
	"basicConstraints = critical,CA:FALSE\n"
	"keyUsage = critical,digitalSignature,keyEncipherment\n"
	"extendedKeyUsage = serverAuth\n"
	"subjectAltName = DNS:derp.example.test,DNS:*.wild.example.test\n"
	"authorityKeyIdentifier = keyid\n"
	"[v3_rsa]\n"
	"basicConstraints = critical,CA:FALSE\n"
	"subjectAltName = DNS:rsa.example.test\n"
	"[v3_ec]\n"
	"basicConstraints = critical,CA:FALSE\n"
	"subjectAltName = DNS:ec.example.test,IP:192.0.2.7,IP:2001:db8::7\n";

static void
expect_load(const char *name, const char *crt, const char *key,
    size_t chain_len, int key_type, int issuer_type,
    const struct host_case *hc, size_t nhc)
{
	struct cert_store cs;
	char err[ERR_MAX] = "", sub[160];
	int rc;

	rc = cert_load_files(&cs, crt, key, err, sizeof err);
	check(name, rc == 0, "%s", err);
	snprintf(sub, sizeof sub, "%s_shape", name);
	check(sub, cs.chain_len == chain_len && cs.key_type == key_type &&
	    cs.leaf_key_type == key_type &&
	    (int)cs.leaf_issuer_key_type == issuer_type,
	    "chain_len %lu key_type %d leaf %d issuer %u",
	    (unsigned long)cs.chain_len, cs.key_type, cs.leaf_key_type,
	    cs.leaf_issuer_key_type);
	if (nhc > 0)
		check_hosts(name, &cs, hc, nhc);
	cert_free(&cs);
}

static void
test_openssl(void)
{
	static const struct host_case rsa_hosts[] = {
		{ "rsa.example.test", 1 }, { "RSA.example.TEST", 1 },
		{ "ec.example.test", 0 }, { "192.0.2.7", 0 },
	};
	static const struct host_case ec_hosts[] = {
		{ "ec.example.test", 1 }, { "192.0.2.7", 1 },
		{ "::ffff:192.0.2.7", 1 }, { "2001:db8::7", 1 },
		{ "[2001:db8::7]", 1 }, { "2001:db8:0:0::7", 1 },
		{ "2001:db8::8", 0 }, { "192.0.2.8", 0 },
		{ "rsa.example.test", 0 },
	};
	static const struct host_case chain_hosts[] = {
		{ "derp.example.test", 1 }, { "DERP.Example.TEST", 1 },
		{ "derp.example.test.", 1 }, { "a.wild.example.test", 1 },
		{ "XyZ-9.WILD.Example.test", 1 }, { "wild.example.test", 0 },
		{ "a.b.wild.example.test", 0 }, { ".wild.example.test", 0 },
		{ "example.test", 0 }, { "xderp.example.test", 0 },
		{ "derp.example.tes", 0 }, { "derp.example.test..", 0 },
		{ "derp", 0 }, { "127.0.0.1", 0 }, { "", 0 },
	};
	struct cert_store cs;
	char err[ERR_MAX];
	int rc;

	if (!have_openssl)
		skip_reason = "openssl command not found";
	else
		spew(sp("t.cnf"), openssl_cnf, sizeof openssl_cnf - 1);

	/* RSA-2048, PKCS#8 and PKCS#1. */
	rc = sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
	    "-out rsa8.key && openssl rsa -in rsa8.key -traditional "
	    "-out rsa1.key && openssl req -new -x509 -key rsa8.key "
	    "-config t.cnf -extensions v3_rsa -subj /CN=rsa.example.test "
	    "-days 30 -out rsa.crt");
	check("openssl_rsa_setup", rc, "openssl failed (see openssl.log)");
	check("openssl_rsa_pkcs1_banner", file_starts_with(sp("rsa1.key"),
	    "-----BEGIN RSA PRIVATE KEY-----"), "rsa1.key not PKCS#1");
	check("openssl_rsa_pkcs8_banner", file_starts_with(sp("rsa8.key"),
	    "-----BEGIN PRIVATE KEY-----"), "rsa8.key not PKCS#8");
	expect_load("openssl_rsa_pkcs1", sp("rsa.crt"), sp("rsa1.key"), 1,
	    BR_KEYTYPE_RSA, BR_KEYTYPE_RSA, rsa_hosts,
	    sizeof rsa_hosts / sizeof rsa_hosts[0]);
	expect_load("openssl_rsa_pkcs8", sp("rsa.crt"), sp("rsa8.key"), 1,
	    BR_KEYTYPE_RSA, BR_KEYTYPE_RSA, NULL, 0);

	/* EC P-256: SEC 1 (behind an EC PARAMETERS block) and PKCS#8. */
	rc = sh("openssl ecparam -name prime256v1 -genkey -out ec1.key && "
	    "openssl pkcs8 -topk8 -nocrypt -in ec1.key -out ec8.key && "
	    "openssl req -new -x509 -key ec1.key -config t.cnf "
	    "-extensions v3_ec -subj /CN=ec.example.test -days 30 -out ec.crt");
	check("openssl_ec_setup", rc, "openssl failed (see openssl.log)");
	check("openssl_ec_sec1_banner", file_starts_with(sp("ec1.key"),
	    "-----BEGIN EC PARAMETERS-----") && file_contains(sp("ec1.key"),
	    "-----BEGIN EC PRIVATE KEY-----"), "ec1.key not params + SEC 1");
	check("openssl_ec_pkcs8_banner", file_starts_with(sp("ec8.key"),
	    "-----BEGIN PRIVATE KEY-----"), "ec8.key not PKCS#8");
	expect_load("openssl_ec_sec1", sp("ec.crt"), sp("ec1.key"), 1,
	    BR_KEYTYPE_EC, BR_KEYTYPE_EC, ec_hosts,
	    sizeof ec_hosts / sizeof ec_hosts[0]);
	expect_load("openssl_ec_pkcs8", sp("ec.crt"), sp("ec8.key"), 1,
	    BR_KEYTYPE_EC, BR_KEYTYPE_EC, NULL, 0);

	/* CA (EC) → intermediate (RSA) → leaf (EC): the leaf's issuer is RSA. */
	rc = sh("openssl genpkey -algorithm EC -pkeyopt "
	    "ec_paramgen_curve:P-256 -out ca.key && "
	    "openssl req -new -x509 -key ca.key -config t.cnf -extensions v3_ca "
	    "-subj '/CN=Test Root CA' -days 30 -out ca.crt && "
	    "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
	    "-out int.key && "
	    "openssl req -new -key int.key -config t.cnf "
	    "-subj '/CN=Test Intermediate CA' -out int.csr && "
	    "openssl x509 -req -in int.csr -CA ca.crt -CAkey ca.key "
	    "-CAcreateserial -days 30 -sha256 -extfile t.cnf -extensions v3_ca "
	    "-out int.crt && "
	    "openssl genpkey -algorithm EC -pkeyopt "
	    "ec_paramgen_curve:P-256 -out leaf.key && "
	    "openssl req -new -key leaf.key -config t.cnf "
	    "-subj /CN=derp.example.test -out leaf.csr && "
	    "openssl x509 -req -in leaf.csr -CA int.crt -CAkey int.key "
	    "-CAcreateserial -days 30 -sha256 -extfile t.cnf "
	    "-extensions v3_leaf -out leaf.crt && "
	    "cat leaf.crt int.crt > chain.crt && "
	    "cat leaf.crt int.crt ca.crt > full.crt && "
	    "cat leaf.key leaf.crt int.crt > chain.combined && "
	    "openssl verify -CAfile ca.crt -untrusted int.crt leaf.crt");
	check("openssl_chain_setup", rc, "openssl failed (see openssl.log)");
	expect_load("openssl_chain", sp("chain.crt"), sp("leaf.key"), 2,
	    BR_KEYTYPE_EC, BR_KEYTYPE_RSA, chain_hosts,
	    sizeof chain_hosts / sizeof chain_hosts[0]);
	expect_load("openssl_chain_full", sp("full.crt"), sp("leaf.key"), 3,
	    BR_KEYTYPE_EC, BR_KEYTYPE_RSA, NULL, 0);
	err[0] = '\0';
	rc = cert_load_combined(&cs, sp("chain.combined"), err, sizeof err);
	check("openssl_chain_combined", rc == 0 && cs.chain_len == 2 &&
	    cs.key_type == BR_KEYTYPE_EC &&
	    cert_matches_host(&cs, "x.wild.example.test"), "rc %d %s", rc, err);
	if (rc == 0)
		cert_free(&cs);

	/* Keys that belong to other certificates. */
	expect_load_error("openssl_mismatch_ec", sp("chain.crt"), sp("ec1.key"),
	    "private key does not match certificate");
	expect_load_error("openssl_mismatch_rsa", sp("rsa.crt"), sp("int.key"),
	    "private key does not match certificate");
	expect_load_error("openssl_mismatch_type", sp("chain.crt"),
	    sp("rsa1.key"), "private key does not match certificate");
	expect_load_error("openssl_mismatch_type2", sp("rsa.crt"),
	    sp("ec8.key"), "private key does not match certificate");

	/* Encrypted keys: refused with a message, not a crash. */
	rc = sh("openssl pkcs8 -topk8 -v2 aes-256-cbc -passout pass:x "
	    "-in ec1.key -out enc8.key && "
	    "openssl ec -in ec1.key -aes128 -passout pass:x -out encl.key");
	check("openssl_encrypted_setup", rc, "openssl failed (see openssl.log)");
	expect_load_error("openssl_encrypted_pkcs8", sp("ec.crt"),
	    sp("enc8.key"), "encrypted");
	expect_load_error("openssl_encrypted_legacy_pem", sp("ec.crt"),
	    sp("encl.key"), "encrypted");
	skip_reason = NULL;
}

int
main(int argc, char **argv)
{
	static const struct host_case v4_hosts[] = {
		{ "127.0.0.1", 1 }, { "[127.0.0.1]", 1 },
		{ "::ffff:127.0.0.1", 1 }, { "127.0.0.2", 0 },
		{ "::1", 0 }, { "localhost", 0 }, { "derp.example.test", 0 },
		{ "127.0.0.1.", 0 }, { "", 0 },
	};
	static const struct host_case v6_hosts[] = {
		{ "::1", 1 }, { "0:0:0:0:0:0:0:1", 1 }, { "[::1]", 1 },
		{ "::2", 0 }, { "127.0.0.1", 0 }, { "localhost", 0 },
	};
	char crt4[PATH_BYTES], key4[PATH_BYTES], crt6[PATH_BYTES],
	    key6[PATH_BYTES];
	int st;

	if (argc != 2) {
		fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
		return 2;
	}
	scratch = argv[1];
	if (strchr(scratch, '\'') != NULL || strlen(scratch) > 1024) {
		fprintf(stderr, "test_cert: unusable scratch path\n");
		return 2;
	}
	if (mkdir(scratch, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "test_cert: mkdir %s: %s\n", scratch,
		    strerror(errno));
		return 2;
	}
	st = system("command -v openssl >/dev/null 2>&1");
	have_openssl = st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
	if (have_openssl)
		unlink(sp("openssl.log"));

	snprintf(crt4, sizeof crt4, "%s/ip4/127.0.0.1.crt", scratch);
	snprintf(key4, sizeof key4, "%s/ip4/127.0.0.1.key", scratch);
	snprintf(crt6, sizeof crt6, "%s/ip6/1.crt", scratch);
	snprintf(key6, sizeof key6, "%s/ip6/1.key", scratch);
	test_generated("ipv4", "127.0.0.1", crt4, key4, v4_hosts,
	    sizeof v4_hosts / sizeof v4_hosts[0], "IP Address:127.0.0.1");
	test_generated("ipv6", "::1", crt6, key6, v6_hosts,
	    sizeof v6_hosts / sizeof v6_hosts[0], "IP Address:0:0:0:0:0:0:0:1");
	test_dates();
	test_generate_misc(crt4, key4);
	test_combined(crt4, key4);
	test_bad_files(crt4, key4, crt6, key6);
	test_san_walker_robust(crt4, key4);
	test_openssl();

	printf("%d passed, %d failed, %d skipped\n", n_pass, n_fail, n_skip);
	return n_fail == 0 ? 0 : 1;
}
