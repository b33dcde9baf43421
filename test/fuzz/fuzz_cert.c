/*
 * fuzz_cert.c -- the certificate files the relay reads at start-up (cert.c):
 * PEM chains and keys (cert_load_files, cert_load_combined, through BearSSL's
 * PEM, key and X.509 decoders and our key match), and the hostname check on
 * the leaf's subjectAltName (cert_matches_host, our own DER walker).
 *
 * Input: mode byte, hostname length h, h bytes of hostname, then content:
 *   mode & 3 == 0  content is one PEM file: cert_load_combined
 *              1  two bytes (big-endian) n, n bytes of .crt, the rest is .key:
 *                 cert_load_files
 *              2  content is a DER leaf: written as a PEM CERTIFICATE next to
 *                 the harness's own key, then cert_load_files, so mutations
 *                 of a real leaf (outside its public key) still load and
 *                 reach cert_matches_host
 *              3  content is a DER leaf given to cert_matches_host directly
 * Whenever a leaf is loaded, cert_matches_host runs on the input's hostname
 * and on a fixed list (IPv4, IPv6, bracketed, mapped, names, wildcards).
 * Checks: a load that succeeds has a chain, a key of the leaf's type and the
 * leaf's SHA-256; one that fails leaves the store zeroed; nothing leaks.
 *
 * Files go to a directory on tmpfs: $FUZZ_CERT_DIR, else a fresh one under
 * /dev/shm (or /tmp), removed at exit.  The harness's key and certificate are
 * made there at start-up with cert_generate_ip (192.0.2.1) unless
 * $FUZZ_CERT_DIR already holds them (so seeds written by one process load in
 * the next).  Seeds named gen-* hold that key and certificate: they are
 * written only with FUZZ_ALL_SEEDS (make fuzz, make test's replay), into
 * scratch directories; the committed corpus holds only the hand-* ones.
 */
#define _POSIX_C_SOURCE 200809L

#include <sys/types.h>
#include <bearssl.h>
#include "../../cert.h"
#include "fuzz.h"

static char dir[512];		/* work directory */
static int dir_ours;		/* made here: removed at exit */
static char crt_path[600], key_path[600], in_crt[600], in_key[600];
static uint8_t *own_key_pem, *own_leaf_der;
static size_t own_key_len, own_leaf_len;
static pid_t owner;

static void
write_all(const char *path, const void *p, size_t n)
{
	const uint8_t *b = p;
	ssize_t w;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	FUZZ_CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
	while (n > 0) {
		w = write(fd, b, n);
		FUZZ_CHECK(w > 0, "write %s: %s", path, strerror(errno));
		b += w;
		n -= (size_t)w;
	}
	close(fd);
}

static uint8_t *
read_all(const char *path, size_t *len)
{
	char *slash = strrchr(path, '/'), d[600];

	snprintf(d, sizeof d, "%.*s", (int)(slash - path), path);
	return (uint8_t *)fuzz_slurp(d, slash + 1, len);
}

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* PEM armour around DER: 64 characters a line.  Returns the length. */
static size_t
pem_wrap(char *out, size_t cap, const uint8_t *der, size_t n)
{
	size_t o, i, col = 0;
	uint32_t v;

	o = (size_t)snprintf(out, cap, "-----BEGIN CERTIFICATE-----\n");
	for (i = 0; i < n; i += 3) {
		v = (uint32_t)der[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)der[i + 1] << 8;
		if (i + 2 < n)
			v |= der[i + 2];
		FUZZ_CHECK(o + 6 < cap, "pem buffer");
		out[o++] = b64[v >> 18 & 63];
		out[o++] = b64[v >> 12 & 63];
		out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? b64[v & 63] : '=';
		if ((col += 4) == 64) {
			out[o++] = '\n';
			col = 0;
		}
	}
	FUZZ_CHECK(o + 28 < cap, "pem buffer");
	if (col != 0)
		out[o++] = '\n';
	o += (size_t)snprintf(out + o, cap - o, "-----END CERTIFICATE-----\n");
	return o;
}

/* The first CERTIFICATE block of a PEM text, as DER (malloc'd). */
static uint8_t *
pem_first_cert(const uint8_t *pem, size_t len, size_t *out_len)
{
	const char *b = strstr((const char *)pem, "-----BEGIN CERTIFICATE-----");
	const char *e = b != NULL ? strstr(b, "-----END") : NULL;
	uint8_t *der;
	uint32_t v = 0;
	size_t n = 0;
	int bits = 0;
	const char *p, *q;

	(void)len;
	if (e == NULL)
		return NULL;
	der = malloc((size_t)(e - b));
	FUZZ_CHECK(der != NULL, "malloc");
	for (p = b + 27; p < e; p++) {
		if (*p == '\0' || (q = strchr(b64, *p)) == NULL)
			continue;
		v = v << 6 | (uint32_t)(q - b64);
		if ((bits += 6) >= 8) {
			bits -= 8;
			der[n++] = (uint8_t)(v >> bits);
		}
	}
	*out_len = n;
	return der;
}

static void
cleanup(void)
{
	if (getpid() != owner)
		return;		/* a replay child: the parent cleans up */
	unlink(in_crt);
	unlink(in_key);
	if (dir_ours) {
		unlink(crt_path);
		unlink(key_path);
		rmdir(dir);
	}
}

static void
fuzz_init(void)
{
	static char shm[] = "/dev/shm/derp-fuzz-cert.XXXXXX";
	static char tmp[] = "/tmp/derp-fuzz-cert.XXXXXX";
	const char *env = getenv("FUZZ_CERT_DIR");
	char err[256];
	uint8_t *pem;
	size_t n;
	struct stat sb;

	owner = getpid();
	if (env != NULL && env[0] != '\0') {
		snprintf(dir, sizeof dir, "%s", env);
		(void)mkdir(dir, 0700);
	} else {
		if (mkdtemp(shm) != NULL)
			snprintf(dir, sizeof dir, "%s", shm);
		else if (mkdtemp(tmp) != NULL)
			snprintf(dir, sizeof dir, "%s", tmp);
		else
			fuzz_die("mkdtemp: %s", strerror(errno));
		dir_ours = 1;
	}
	snprintf(crt_path, sizeof crt_path, "%s/own.crt", dir);
	snprintf(key_path, sizeof key_path, "%s/own.key", dir);
	snprintf(in_crt, sizeof in_crt, "%s/in.%ld.crt", dir, (long)owner);
	snprintf(in_key, sizeof in_key, "%s/in.%ld.key", dir, (long)owner);
	atexit(cleanup);
	if (stat(crt_path, &sb) != 0 || stat(key_path, &sb) != 0)
		FUZZ_CHECK(cert_generate_ip(crt_path, key_path, "192.0.2.1",
		    time(NULL), err, sizeof err) == 0, "cert_generate_ip: %s", err);
	own_key_pem = read_all(key_path, &own_key_len);
	pem = read_all(crt_path, &n);
	FUZZ_CHECK(own_key_pem != NULL && pem != NULL, "read %s", dir);
	own_leaf_der = pem_first_cert(pem, n, &own_leaf_len);
	FUZZ_CHECK(own_leaf_der != NULL, "no certificate in %s", crt_path);
	free(pem);
}

static void
check_loaded(const struct cert_store *cs, int rc, const char *host)
{
	static const char *const hosts[] = { "192.0.2.1", "[192.0.2.1]",
	    "::ffff:192.0.2.1", "2001:db8::1", "[::1]", "::1", "example.com",
	    "EXAMPLE.com.", "a.example.com", "*.example.com", "a..b", ".", "[",
	    "derp.tailscale.com" };
	static const uint8_t zero[sizeof(struct cert_store)];
	uint8_t sha[32];
	br_sha256_context h;
	size_t i;

	if (rc != 0) {
		FUZZ_CHECK(memcmp(cs, zero, sizeof zero) == 0,
		    "failed load left the store dirty");
		return;
	}
	FUZZ_CHECK(cs->chain_len >= 1 && cs->chain_len <= CERT_CHAIN_MAX &&
	    (cs->key_type == BR_KEYTYPE_EC || cs->key_type == BR_KEYTYPE_RSA) &&
	    cs->leaf_key_type == cs->key_type, "loaded store: chain %zu, key %d",
	    cs->chain_len, cs->key_type);
	br_sha256_init(&h);
	br_sha256_update(&h, cs->chain[0].data, cs->chain[0].data_len);
	br_sha256_out(&h, sha);
	FUZZ_CHECK(memcmp(sha, cs->leaf_sha256, 32) == 0, "leaf pin");
	(void)cert_matches_host(cs, host);
	for (i = 0; i < sizeof hosts / sizeof hosts[0]; i++)
		(void)cert_matches_host(cs, hosts[i]);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char pem[4 * 65536];
	struct cert_store cs;
	char host[256], err[256];
	const uint8_t *p;
	size_t hl, n, k;
	int mode, rc;

	if (size < 2)
		return 0;
	mode = data[0] & 3;
	hl = data[1] < size - 2 ? data[1] : size - 2;
	memcpy(host, data + 2, hl);
	host[hl] = '\0';
	p = data + 2 + hl;
	n = size - 2 - hl;
	switch (mode) {
	case 0:
		write_all(in_crt, p, n);
		rc = cert_load_combined(&cs, in_crt, err, sizeof err);
		check_loaded(&cs, rc, host);
		break;
	case 1:
		k = n >= 2 ? (size_t)p[0] << 8 | p[1] : 0;
		p += n >= 2 ? 2 : n;
		n -= n >= 2 ? 2 : n;
		if (k > n)
			k = n;
		write_all(in_crt, p, k);
		write_all(in_key, p + k, n - k);
		rc = cert_load_files(&cs, in_crt, in_key, err, sizeof err);
		check_loaded(&cs, rc, host);
		break;
	case 2:
		if (n > 65536)
			return 0;
		write_all(in_crt, pem, pem_wrap(pem, sizeof pem, p, n));
		write_all(in_key, own_key_pem, own_key_len);
		rc = cert_load_files(&cs, in_crt, in_key, err, sizeof err);
		check_loaded(&cs, rc, host);
		break;
	default:
		memset(&cs, 0, sizeof cs);
		cs.chain[0].data = (unsigned char *)(uintptr_t)p;
		cs.chain[0].data_len = n;
		cs.chain_len = 1;
		(void)cert_matches_host(&cs, host);
		(void)cert_matches_host(&cs, "192.0.2.1");
		(void)cert_matches_host(&cs, "example.com");
		return 0;
	}
	cert_free(&cs);
	return 0;
}

/* ---- seeds ---- */

static void
emit(const char *name, int mode, const char *host, const void *a, size_t an,
    const void *b, size_t bn)
{
	static uint8_t buf[1 << 17];
	size_t hl = strlen(host), n = 0;

	FUZZ_CHECK(2 + hl + 2 + an + bn <= sizeof buf, "seed too big");
	buf[n++] = (uint8_t)mode;
	buf[n++] = (uint8_t)hl;
	memcpy(buf + n, host, hl);
	n += hl;
	if (mode == 1) {
		buf[n++] = (uint8_t)(an >> 8);
		buf[n++] = (uint8_t)an;
	}
	memcpy(buf + n, a, an);
	n += an;
	if (bn > 0)
		memcpy(buf + n, b, bn);
	n += bn;
	seed_emit(name, buf, n);
}

/*
 * hand-*: no key, no real certificate: broken PEM, and DER skeletons of
 * Certificate > TBSCertificate > [3] > Extensions > SAN with dNSName and
 * iPAddress entries (not certificates: no key, no signature).  Those with
 * private-key armour (around junk) and gen-* (the harness's own key and
 * certificate) only with FUZZ_ALL_SEEDS: never committed.
 */
static void
fuzz_seeds(const char *datadir)
{
	static const uint8_t san[] = {
		0x30, 0x3b,				/* Certificate */
		0x30, 0x39,				/* TBSCertificate */
		0xa0, 0x03, 0x02, 0x01, 0x02,		/* [0] version 3 */
		0x02, 0x01, 0x01,			/* serial */
		0xa3, 0x31, 0x30, 0x2f,			/* [3] Extensions */
		0x30, 0x2d, 0x06, 0x03, 0x55, 0x1d, 0x11,	/* SAN */
		0x01, 0x01, 0x00,			/* critical FALSE */
		0x04, 0x23, 0x30, 0x21,			/* GeneralNames */
		0x82, 0x0d, '*', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.',
		'c', 'o', 'm',
		0x87, 0x04, 192, 0, 2, 1,
		0x87, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
	};
	static const char *const pems[] = {
		"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
		"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
		"-----BEGIN CERTIFICATE-----\nMAA=\n",
		("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
		"-----BEGIN EC PRIVATE KEY-----\nMAA=\n-----END EC PRIVATE KEY-----\n"),
		"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nMAA=\n-----END RSA PRIVATE KEY-----\n",
		"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n",
		"-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
	};
	char name[64], *pem = NULL;
	uint8_t *both;
	size_t i, n;

	(void)datadir;
	emit("hand-san-ip", 3, "192.0.2.1", san, sizeof san, NULL, 0);
	emit("hand-san-v6", 3, "[::1]", san, sizeof san, NULL, 0);
	emit("hand-san-wild", 3, "derp.example.com", san, sizeof san, NULL, 0);
	emit("hand-san-pem", 2, "a.example.com", san, sizeof san, NULL, 0);
	for (i = 0; i < sizeof pems / sizeof pems[0]; i++) {
		/* Key armour, even around junk, stays out of the repository
		 * (secret scanners): only in scratch corpora. */
		if (strstr(pems[i], "PRIVATE KEY") != NULL &&
		    getenv("FUZZ_ALL_SEEDS") == NULL)
			continue;
		snprintf(name, sizeof name, "hand-pem-%02zu", i);
		emit(name, (int)(i & 1), "example.com", pems[i], strlen(pems[i]),
		    pems[i], strlen(pems[i]));
	}
	if (getenv("FUZZ_ALL_SEEDS") == NULL)
		return;
	pem = (char *)read_all(crt_path, &n);
	FUZZ_CHECK(pem != NULL, "read %s", crt_path);
	emit("gen-files", 1, "192.0.2.1", pem, n, own_key_pem, own_key_len);
	emit("gen-files-v6", 1, "::ffff:192.0.2.1", pem, n, own_key_pem,
	    own_key_len);
	both = malloc(n + own_key_len);
	FUZZ_CHECK(both != NULL, "malloc");
	memcpy(both, own_key_pem, own_key_len);
	memcpy(both + own_key_len, pem, n);
	emit("gen-combined", 0, "192.0.2.1", both, n + own_key_len, NULL, 0);
	free(both);
	emit("gen-leaf-pem", 2, "192.0.2.1", own_leaf_der, own_leaf_len, NULL, 0);
	emit("gen-leaf-der", 3, "[192.0.2.1]", own_leaf_der, own_leaf_len, NULL, 0);
	free(pem);
}
