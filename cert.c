/*
 * cert.c -- TLS certificates for the relay (interface and contract: cert.h).
 *
 * Start-up code only: it reads files, may allocate with malloc (everything it keeps
 * hangs off struct cert_store and is released by cert_free), and never runs on the
 * packet path.  Sections, in the order a start-up uses them:
 *
 *   1. Helpers        errors, wiping secrets, reading and writing whole files
 *   2. DER reader     a bounded, iterative TLV walker (no recursion) and the
 *                     hostname check on the leaf's subjectAltName (cert_matches_host)
 *   3. PEM loading    PEM blocks → DER chain + private key, the key/leaf match,
 *                     the sha256-raw: pin (cert_load_files, cert_load_combined)
 *   4. DER writer     length-prefixed TLVs in a fixed buffer, and the self-signed
 *                     IP certificate derper makes in manual mode (cert_generate_ip)
 *   5. For ACME       what acme.c needs of the above: key files, atomic writes,
 *                     the certificate request (cert_make_csr), and a leaf issued
 *                     by a given key for its stand-in CA (cert_issue)
 *
 * Specs: derper-compat.md section 7 (certificate modes and files), derp-protocol.md
 * section 4 (what the Tailscale client checks).
 */
#define _POSIX_C_SOURCE 200809L

#include "cert.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* ------------------------------------------------------------------------- */
/* 1. Helpers                                                                 */
/* ------------------------------------------------------------------------- */

/* Largest PEM file we read.  Real chains are a few KiB (a Let's Encrypt leaf plus
 * intermediate is about 3.5 KiB of PEM); 1 MiB leaves room for CERT_CHAIN_MAX
 * unusually large certificates and still stops at once on a wrong path (a log
 * file, a device). */
#define CERT_FILE_MAX_BYTES (1024 * 1024)

/* Longest path we copy to create its parent directories: Linux's PATH_MAX. */
#define CERT_PATH_MAX 4096

/* Write a message into err (if any) and return -1, so error paths are one line. */
static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* Zero memory that held secrets; the volatile stores are not optimised away. */
static void
wipe(void *p, size_t n)
{
	volatile unsigned char *v = p;

	while (n-- > 0)
		*v++ = 0;
}

static void
wipe_free(void *p, size_t n)
{
	if (p != NULL) {
		wipe(p, n);
		free(p);
	}
}

/* Read the whole of path into a malloc'd buffer (*out, *outlen).  The buffer is
 * grown by copying, never realloc, so no stale copy of a key is left in freed
 * memory; the caller wipes and frees it.  0, or -1 with err. */
static int
read_file(const char *path, uint8_t **out, size_t *outlen, char *err,
    size_t errlen)
{
	uint8_t *buf = NULL, *nbuf;
	size_t len = 0, cap = 0, ncap;
	ssize_t n;
	int fd;

	*out = NULL;
	*outlen = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(err, errlen, "open %s: %s", path, strerror(errno));
	for (;;) {
		if (len == cap) {
			/* Capacity tops out at the limit plus one byte, so a
			 * file of exactly CERT_FILE_MAX_BYTES is read to EOF. */
			if (cap > CERT_FILE_MAX_BYTES) {
				fail(err, errlen, "read %s: larger than %d bytes",
				    path, CERT_FILE_MAX_BYTES);
				goto bad;
			}
			ncap = cap == 0 ? 4096 : 2 * cap;
			if (ncap > (size_t)CERT_FILE_MAX_BYTES + 1)
				ncap = (size_t)CERT_FILE_MAX_BYTES + 1;
			nbuf = malloc(ncap);
			if (nbuf == NULL) {
				fail(err, errlen, "read %s: out of memory", path);
				goto bad;
			}
			if (len > 0)
				memcpy(nbuf, buf, len);
			wipe_free(buf, cap);
			buf = nbuf;
			cap = ncap;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fail(err, errlen, "read %s: %s", path, strerror(errno));
			goto bad;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	*out = buf;
	*outlen = len;
	return 0;
bad:
	close(fd);
	wipe_free(buf, cap);
	return -1;
}

/* Create the directories leading to path's last component, mode 0700 (as derper's
 * os.MkdirAll(certdir, 0700)); existing ones are left alone.  0, or -1 with err. */
static int
make_parent_dirs(const char *path, char *err, size_t errlen)
{
	char dir[CERT_PATH_MAX];
	size_t len, i;
	char *slash;

	len = strlen(path);
	if (len >= sizeof dir)
		return fail(err, errlen, "path too long: %.64s...", path);
	memcpy(dir, path, len + 1);
	slash = strrchr(dir, '/');
	if (slash == NULL)
		return 0;		/* relative name in the current directory */
	*slash = '\0';
	len = (size_t)(slash - dir);
	/* Walk the prefixes "a", "a/b", ... then the whole directory; an empty
	 * component ("/" at the start, or "a//b") has nothing to create. */
	for (i = 1; i <= len; i++) {
		if (i < len && dir[i] != '/')
			continue;
		if (dir[i - 1] == '/')
			continue;
		dir[i] = '\0';
		if (mkdir(dir, 0700) != 0 && errno != EEXIST)
			return fail(err, errlen, "mkdir %s: %s", dir,
			    strerror(errno));
		if (i < len)
			dir[i] = '/';
	}
	return 0;
}

/* Create or replace path with exactly data[0..len), mode 0600 (fchmod too, since
 * O_CREAT's mode does not apply to an existing file), flushed to disk.  Every call
 * is checked: a half-written key must not look like success.  0, or -1 with err. */
static int
write_file(const char *path, const void *data, size_t len, char *err,
    size_t errlen)
{
	const uint8_t *p = data;
	ssize_t n;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return fail(err, errlen, "open %s: %s", path, strerror(errno));
	if (fchmod(fd, 0600) != 0) {
		fail(err, errlen, "chmod %s: %s", path, strerror(errno));
		goto bad;
	}
	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fail(err, errlen, "write %s: %s", path, strerror(errno));
			goto bad;
		}
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) != 0) {
		fail(err, errlen, "fsync %s: %s", path, strerror(errno));
		goto bad;
	}
	if (close(fd) != 0)
		return fail(err, errlen, "close %s: %s", path, strerror(errno));
	return 0;
bad:
	close(fd);
	return -1;
}

static int
ascii_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* ------------------------------------------------------------------------- */
/* 2. DER reader and the hostname check                                       */
/* ------------------------------------------------------------------------- */

/* A slice of DER.  der_next takes one TLV off its front; every length is checked
 * against what remains before anything is read, so a hostile certificate can at
 * worst make us report "no match".  No recursion: callers descend by taking the
 * value of one TLV as a new slice. */
struct der_rd {
	const uint8_t *p;
	size_t n;
};

#define DER_BOOLEAN		0x01
#define DER_INTEGER		0x02
#define DER_BIT_STRING		0x03
#define DER_OCTET_STRING	0x04
#define DER_OID			0x06
#define DER_PRINTABLE_STRING	0x13
#define DER_UTC_TIME		0x17
#define DER_GENERALIZED_TIME	0x18
#define DER_SEQUENCE		0x30
#define DER_SET			0x31
#define DER_CTX_CONS(n)		(0xa0 | (n))	/* [n], constructed (EXPLICIT) */
#define DER_CTX_PRIM(n)		(0x80 | (n))	/* [n] IMPLICIT primitive type */

/* GeneralName choices we look at (RFC 5280 4.2.1.6). */
#define GN_DNS_NAME		DER_CTX_PRIM(2)	/* IA5String */
#define GN_IP_ADDRESS		DER_CTX_PRIM(7)	/* OCTET STRING, 4 or 16 bytes */

/* OID contents (without tag and length). */
static const uint8_t oid_subject_alt_name[] = { 0x55, 0x1d, 0x11 };	/* 2.5.29.17 */

/* Take one TLV off r: its tag in *tag, its value as *val.  Only single-byte tags
 * (X.509 uses no others) and definite lengths of up to 4 bytes (DER has no
 * indefinite form).  0, or -1 if the TLV is malformed or overruns r. */
static int
der_next(struct der_rd *r, unsigned *tag, struct der_rd *val)
{
	size_t len, hdr, nb, i;

	if (r->n < 2)
		return -1;
	*tag = r->p[0];
	if ((*tag & 0x1f) == 0x1f)
		return -1;
	len = r->p[1];
	hdr = 2;
	if (len & 0x80) {
		nb = len & 0x7f;
		if (nb == 0 || nb > 4 || nb > r->n - 2)
			return -1;
		len = 0;
		for (i = 0; i < nb; i++)
			len = (len << 8) | r->p[2 + i];
		hdr += nb;
	}
	if (len > r->n - hdr)
		return -1;
	val->p = r->p + hdr;
	val->n = len;
	r->p += hdr + len;
	r->n -= hdr + len;
	return 0;
}

/* Like der_next, but the tag must be want. */
static int
der_expect(struct der_rd *r, unsigned want, struct der_rd *val)
{
	unsigned tag;

	if (der_next(r, &tag, val) != 0 || tag != want)
		return -1;
	return 0;
}

/* Find the subjectAltName's GeneralNames (the SEQUENCE's contents) in a
 * certificate: Certificate → tbsCertificate → [3] extensions → Extension with
 * extnID 2.5.29.17 → extnValue (OCTET STRING) → GeneralNames.  0, or -1 if there
 * is none or the DER is malformed. */
static int
der_find_san(const uint8_t *cert, size_t len, struct der_rd *names)
{
	struct der_rd r, c, tbs, ext3, exts, ext, oid, v;
	unsigned tag;

	r.p = cert;
	r.n = len;
	if (der_expect(&r, DER_SEQUENCE, &c) != 0 ||
	    der_expect(&c, DER_SEQUENCE, &tbs) != 0)
		return -1;
	/* The fields before the extensions (version, serial, ..., unique IDs) are
	 * skipped by tag: [3] appears only as the extensions wrapper. */
	for (;;) {
		if (tbs.n == 0)
			return -1;
		if (der_next(&tbs, &tag, &ext3) != 0)
			return -1;
		if (tag == DER_CTX_CONS(3))
			break;
	}
	if (der_expect(&ext3, DER_SEQUENCE, &exts) != 0)
		return -1;
	while (exts.n > 0) {
		if (der_expect(&exts, DER_SEQUENCE, &ext) != 0 ||
		    der_expect(&ext, DER_OID, &oid) != 0)
			return -1;
		if (oid.n != sizeof oid_subject_alt_name ||
		    memcmp(oid.p, oid_subject_alt_name, oid.n) != 0)
			continue;
		if (der_next(&ext, &tag, &v) != 0)
			return -1;
		if (tag == DER_BOOLEAN && der_next(&ext, &tag, &v) != 0)
			return -1;	/* critical flag, then the value */
		if (tag != DER_OCTET_STRING)
			return -1;
		return der_expect(&v, DER_SEQUENCE, names);
	}
	return -1;
}

/* Parse an IP literal (IPv4, IPv6, or IPv6 in brackets as Go's VerifyHostname
 * accepts).  IPv4-mapped IPv6 is reduced to 4 bytes, as Go's net.IP.Equal and
 * x509 marshalling treat it.  Returns 4 or 16, or 0 if text is no IP literal. */
static size_t
parse_ip(const char *text, uint8_t ip[16])
{
	static const uint8_t v4mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
	};
	char buf[64];		/* INET6_ADDRSTRLEN (46) plus brackets, rounded up */
	size_t n = strlen(text);

	if (n >= 3 && text[0] == '[' && text[n - 1] == ']') {
		if (n - 2 >= sizeof buf)
			return 0;
		memcpy(buf, text + 1, n - 2);
		buf[n - 2] = '\0';
		text = buf;
	}
	if (inet_pton(AF_INET, text, ip) == 1)
		return 4;
	if (inet_pton(AF_INET6, text, ip) != 1)
		return 0;
	if (memcmp(ip, v4mapped, sizeof v4mapped) == 0) {
		memmove(ip, ip + 12, 4);
		return 4;
	}
	return 16;
}

/* Does the dNSName pattern (not NUL-terminated) cover host?  Go's rules
 * (crypto/x509 matchHostnames): ASCII case-insensitive, one trailing dot on the
 * host ignored, label by label; a first pattern label of exactly "*" (and only
 * as "*.") matches one whole non-empty label. */
static int
dns_name_matches(const uint8_t *pat, size_t plen, const char *host)
{
	size_t hlen = strlen(host);
	size_t pi = 0, hi = 0, pe, he;
	int first = 1;

	if (hlen > 0 && host[hlen - 1] == '.')
		hlen--;
	if (plen == 0 || hlen == 0)
		return 0;
	for (;;) {
		for (pe = pi; pe < plen && pat[pe] != '.'; pe++)
			;
		for (he = hi; he < hlen && host[he] != '.'; he++)
			;
		if (pe == pi || he == hi)
			return 0;	/* empty label */
		if (first && pe - pi == 1 && pat[pi] == '*' && pe < plen) {
			/* wildcard: any one label */
		} else {
			if (pe - pi != he - hi)
				return 0;
			for (; pi < pe; pi++, hi++)
				if (ascii_lower(pat[pi]) !=
				    ascii_lower((unsigned char)host[hi]))
					return 0;
		}
		first = 0;
		if (pe == plen || he == hlen)
			return pe == plen && he == hlen;
		pi = pe + 1;
		hi = he + 1;
	}
}

int
cert_matches_host(const struct cert_store *cs, const char *hostname)
{
	struct der_rd names, gn;
	uint8_t ip[16], san_ip[16];
	size_t iplen, san_len;
	unsigned tag;

	if (cs == NULL || cs->chain_len == 0 || hostname == NULL ||
	    hostname[0] == '\0')
		return 0;
	if (der_find_san(cs->chain[0].data, cs->chain[0].data_len,
	    &names) != 0)
		return 0;
	/* An IP literal is checked against iPAddress entries only, a name
	 * against dNSName entries only; no fallback to the Subject CN (Go has
	 * none since 1.15). */
	iplen = parse_ip(hostname, ip);
	while (names.n > 0) {
		if (der_next(&names, &tag, &gn) != 0)
			return 0;
		if (iplen == 0 && tag == GN_DNS_NAME) {
			if (dns_name_matches(gn.p, gn.n, hostname))
				return 1;
		} else if (iplen != 0 && tag == GN_IP_ADDRESS) {
			if (gn.n != 4 && gn.n != 16)
				continue;
			memcpy(san_ip, gn.p, gn.n);
			san_len = gn.n;
			if (san_len == 16 && san_ip[10] == 0xff &&
			    san_ip[11] == 0xff && memcmp(san_ip,
			    "\0\0\0\0\0\0\0\0\0\0", 10) == 0) {
				memmove(san_ip, san_ip + 12, 4);
				san_len = 4;
			}
			if (san_len == iplen && memcmp(san_ip, ip, iplen) == 0)
				return 1;
		}
	}
	return 0;
}

/* Two decimal digits at s, or -1. */
static int
dec2(const uint8_t *s)
{
	if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
		return -1;
	return (s[0] - '0') * 10 + (s[1] - '0');
}

/* Days from 1970-01-01 to year-01-01 (negative before), for year >= 1: 365 a
 * year plus the Gregorian leap days (every 4th year, not every 100th, every
 * 400th) counted up to the year before. */
static int64_t
days_to_year(int64_t year)
{
	int64_t y = year - 1;

	return 365 * (year - 1970) + (y / 4 - y / 100 + y / 400) -
	    (1969 / 4 - 1969 / 100 + 1969 / 400);
}

/* A Time of RFC 5280 4.1.2.5 as Unix seconds: UTCTime YYMMDDHHMMSSZ (YY below 50
 * is 20YY, as the RFC says) or GeneralizedTime YYYYMMDDHHMMSSZ, seconds present
 * and no fraction or offset, as the RFC requires of certificates.  0, or -1. */
static int
der_time_read(unsigned tag, const struct der_rd *v, int64_t *out)
{
	static const uint8_t mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30,
	    31, 30, 31 };
	const uint8_t *p = v->p;
	int64_t year, days;
	int f[6], i, leap;

	if (tag == DER_UTC_TIME && v->n == 13) {
		if ((year = dec2(p)) < 0)
			return -1;
		year += year < 50 ? 2000 : 1900;
		p += 2;
	} else if (tag == DER_GENERALIZED_TIME && v->n == 15) {
		if ((f[0] = dec2(p)) < 0 || (f[1] = dec2(p + 2)) < 0)
			return -1;
		year = f[0] * 100 + f[1];
		p += 4;
	} else {
		return -1;
	}
	for (i = 1; i < 6; i++)		/* month, day, hour, minute, second */
		if ((f[i] = dec2(p + 2 * (i - 1))) < 0)
			return -1;
	if (p[10] != 'Z' || year < 1)
		return -1;
	leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	if (f[1] < 1 || f[1] > 12 || f[2] < 1 ||
	    f[2] > mdays[f[1] - 1] + (f[1] == 2 && leap) || f[3] > 23 ||
	    f[4] > 59 || f[5] > 59)
		return -1;
	days = days_to_year(year) + f[2] - 1 + (f[1] > 2 && leap);
	for (i = 0; i < f[1] - 1; i++)
		days += mdays[i];
	*out = ((days * 24 + f[3]) * 60 + f[4]) * 60 + f[5];
	return 0;
}

int
cert_leaf_validity(const struct cert_store *cs, int64_t *not_before,
    int64_t *not_after)
{
	struct der_rd r, c, tbs, field, validity, t;
	unsigned tag;
	int i;

	if (cs == NULL || cs->chain_len == 0)
		return -1;
	r.p = cs->chain[0].data;
	r.n = cs->chain[0].data_len;
	if (der_expect(&r, DER_SEQUENCE, &c) != 0 ||
	    der_expect(&c, DER_SEQUENCE, &tbs) != 0 ||
	    der_next(&tbs, &tag, &field) != 0)
		return -1;
	/* [0] version (absent in v1), serial, signature, issuer, validity. */
	if (tag == DER_CTX_CONS(0) && der_next(&tbs, &tag, &field) != 0)
		return -1;
	if (tag != DER_INTEGER)
		return -1;
	for (i = 0; i < 2; i++)
		if (der_expect(&tbs, DER_SEQUENCE, &field) != 0)
			return -1;
	if (der_expect(&tbs, DER_SEQUENCE, &validity) != 0 ||
	    der_next(&validity, &tag, &t) != 0 ||
	    der_time_read(tag, &t, not_before) != 0 ||
	    der_next(&validity, &tag, &t) != 0 ||
	    der_time_read(tag, &t, not_after) != 0 || validity.n != 0)
		return -1;
	return 0;
}

/* ------------------------------------------------------------------------- */
/* 3. PEM loading                                                             */
/* ------------------------------------------------------------------------- */

/* Largest RSA modulus BearSSL handles (BR_MAX_RSA_SIZE, 4096 bits), in bytes. */
#define RSA_MODULUS_MAX_BYTES 512

/* Decoded bytes of the PEM block being read, grown by copying (see read_file). */
struct pem_obj {
	uint8_t *buf;
	size_t len, cap;
	int oom;
};

static void
pem_obj_append(void *ctx, const void *src, size_t n)
{
	struct pem_obj *o = ctx;
	uint8_t *nbuf;
	size_t ncap;

	if (o->oom)
		return;
	if (n > o->cap - o->len) {
		/* A block decodes to less than its file, so this stays under
		 * CERT_FILE_MAX_BYTES and cannot overflow. */
		ncap = o->cap == 0 ? 2048 : 2 * o->cap;
		if (ncap < o->len + n)
			ncap = o->len + n;
		nbuf = malloc(ncap);
		if (nbuf == NULL) {
			o->oom = 1;
			return;
		}
		if (o->len > 0)
			memcpy(nbuf, o->buf, o->len);
		wipe_free(o->buf, o->cap);
		o->buf = nbuf;
		o->cap = ncap;
	}
	memcpy(o->buf + o->len, src, n);
	o->len += n;
}

/* Does buf[0..len) contain the string s? */
static int
has_bytes(const uint8_t *buf, size_t len, const char *s)
{
	size_t n = strlen(s), i;

	for (i = 0; n <= len && i <= len - n; i++)
		if (memcmp(buf + i, s, n) == 0)
			return 1;
	return 0;
}

enum pem_kind { PEM_OTHER, PEM_CERT, PEM_KEY, PEM_ENCRYPTED_KEY };

/* What a block is, by its (upper-cased) name.  As Go's tls.X509KeyPair: a key is
 * "PRIVATE KEY" or any "... PRIVATE KEY"; other blocks ("EC PARAMETERS", which
 * `openssl ecparam -genkey` writes before the key) are skipped. */
static enum pem_kind
pem_classify(const char *name)
{
	static const char suffix[] = " PRIVATE KEY";
	size_t n = strlen(name), sn = sizeof suffix - 1;

	if (strcmp(name, "CERTIFICATE") == 0)
		return PEM_CERT;
	if (strcmp(name, "ENCRYPTED PRIVATE KEY") == 0)
		return PEM_ENCRYPTED_KEY;
	if (strcmp(name, "PRIVATE KEY") == 0 ||
	    (n > sn && strcmp(name + n - sn, suffix) == 0))
		return PEM_KEY;
	return PEM_OTHER;
}

/* Read the PEM blocks of path.  CERTIFICATE blocks are appended to cs->chain when
 * want_certs; the first private-key block is returned as malloc'd DER in *key_der
 * (caller wipes and frees) when key_der is not NULL.  Blocks not wanted are
 * skipped; a block that does not decode, or a file that ends inside a block, is
 * an error.  0, or -1 with err (cs->chain may then hold some certificates). */
static int
pem_read_file(const char *path, struct cert_store *cs, int want_certs,
    uint8_t **key_der, size_t *key_der_len, char *err, size_t errlen)
{
	br_pem_decoder_context pc;
	struct pem_obj obj = { NULL, 0, 0, 0 };
	uint8_t *file = NULL;
	size_t file_len = 0, off = 0;
	char name[sizeof pc.name];
	enum pem_kind kind = PEM_OTHER;
	int in_block = 0, newline_pushed = 0, keep = 0, rc = -1;

	if (key_der != NULL) {
		*key_der = NULL;
		*key_der_len = 0;
	}
	if (read_file(path, &file, &file_len, err, errlen) != 0)
		return -1;
	br_pem_decoder_init(&pc);
	name[0] = '\0';
	for (;;) {
		/* Feed the file, then one extra newline: BearSSL recognises an
		 * END line only once its line ends, and files often lack the
		 * final newline. */
		if (off < file_len) {
			off += br_pem_decoder_push(&pc, file + off,
			    file_len - off);
		} else if (!newline_pushed) {
			newline_pushed = br_pem_decoder_push(&pc, "\n", 1) == 1;
		}
		switch (br_pem_decoder_event(&pc)) {
		case BR_PEM_BEGIN_OBJ:
			snprintf(name, sizeof name, "%s",
			    br_pem_decoder_name(&pc));
			kind = pem_classify(name);
			if (kind == PEM_ENCRYPTED_KEY && key_der != NULL &&
			    *key_der == NULL) {
				fail(err, errlen, "%s: encrypted private keys "
				    "are not supported", path);
				goto done;
			}
			keep = (kind == PEM_CERT && want_certs) ||
			    (kind == PEM_KEY && key_der != NULL &&
			    *key_der == NULL);
			obj.len = 0;
			br_pem_decoder_setdest(&pc, keep ? pem_obj_append : 0,
			    &obj);
			in_block = 1;
			break;
		case BR_PEM_END_OBJ:
			in_block = 0;
			if (!keep)
				break;
			if (obj.oom) {
				fail(err, errlen, "%s: out of memory", path);
				goto done;
			}
			if (obj.len == 0) {
				fail(err, errlen, "%s: empty %s block", path,
				    name);
				goto done;
			}
			if (kind == PEM_KEY) {
				*key_der = obj.buf;
				*key_der_len = obj.len;
			} else {
				if (cs->chain_len == CERT_CHAIN_MAX) {
					fail(err, errlen, "%s: more than %d "
					    "certificates", path, CERT_CHAIN_MAX);
					goto done;
				}
				cs->chain[cs->chain_len].data = obj.buf;
				cs->chain[cs->chain_len].data_len = obj.len;
				cs->chain_len++;
			}
			obj.buf = NULL;		/* ownership passed on */
			obj.len = obj.cap = 0;
			break;
		case BR_PEM_ERROR:
			/* BearSSL takes no PEM headers; the one a key file
			 * has is OpenSSL's legacy encryption. */
			if (in_block && kind == PEM_KEY &&
			    has_bytes(file, file_len, "Proc-Type:"))
				fail(err, errlen, "%s: encrypted private keys "
				    "are not supported", path);
			else
				fail(err, errlen, "%s: invalid PEM data in %s "
				    "block", path, in_block ? name : "a");
			goto done;
		default:
			if (off == file_len && newline_pushed) {
				if (in_block) {
					fail(err, errlen, "%s: truncated PEM "
					    "(%s block has no END line)", path,
					    name);
					goto done;
				}
				rc = 0;
				goto done;
			}
			break;
		}
	}
done:
	wipe_free(obj.buf, obj.cap);
	wipe_free(file, file_len);
	wipe(&pc, sizeof pc);
	return rc;
}

/* Decode a private key (SEC 1 "EC PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY" or
 * PKCS#8) into cs, copying the key material out of the decoder's buffer.  0, or -1
 * with err. */
static int
decode_key(struct cert_store *cs, const uint8_t *der, size_t len,
    const char *path, char *err, size_t errlen)
{
	br_skey_decoder_context dc;
	const br_ec_private_key *ek;
	const br_rsa_private_key *rk;
	struct {
		unsigned char **dst;
		size_t *dst_len;
		const unsigned char *src;
		size_t len;
	} part[5];
	size_t i;
	int e, rc = -1;

	br_skey_decoder_init(&dc);
	br_skey_decoder_push(&dc, der, len);
	e = br_skey_decoder_last_error(&dc);
	if (e != 0) {
		fail(err, errlen, "%s: cannot decode private key (BearSSL "
		    "error %d)", path, e);
		goto done;
	}
	switch (br_skey_decoder_key_type(&dc)) {
	case BR_KEYTYPE_EC:
		ek = br_skey_decoder_get_ec(&dc);
		if (ek == NULL || ek->xlen == 0)
			break;
		cs->ec.x = malloc(ek->xlen);
		if (cs->ec.x == NULL)
			break;
		memcpy(cs->ec.x, ek->x, ek->xlen);
		cs->ec.xlen = ek->xlen;
		cs->ec.curve = ek->curve;
		cs->key_type = BR_KEYTYPE_EC;
		rc = 0;
		break;
	case BR_KEYTYPE_RSA:
		rk = br_skey_decoder_get_rsa(&dc);
		if (rk == NULL)
			break;
		cs->rsa.n_bitlen = rk->n_bitlen;
		cs->key_type = BR_KEYTYPE_RSA;	/* so cert_free frees parts */
		part[0].dst = &cs->rsa.p;  part[0].dst_len = &cs->rsa.plen;
		part[0].src = rk->p;       part[0].len = rk->plen;
		part[1].dst = &cs->rsa.q;  part[1].dst_len = &cs->rsa.qlen;
		part[1].src = rk->q;       part[1].len = rk->qlen;
		part[2].dst = &cs->rsa.dp; part[2].dst_len = &cs->rsa.dplen;
		part[2].src = rk->dp;      part[2].len = rk->dplen;
		part[3].dst = &cs->rsa.dq; part[3].dst_len = &cs->rsa.dqlen;
		part[3].src = rk->dq;      part[3].len = rk->dqlen;
		part[4].dst = &cs->rsa.iq; part[4].dst_len = &cs->rsa.iqlen;
		part[4].src = rk->iq;      part[4].len = rk->iqlen;
		for (i = 0; i < 5; i++) {
			if (part[i].len == 0)
				goto done;
			*part[i].dst = malloc(part[i].len);
			if (*part[i].dst == NULL)
				goto done;
			memcpy(*part[i].dst, part[i].src, part[i].len);
			*part[i].dst_len = part[i].len;
		}
		rc = 0;
		break;
	default:
		break;
	}
	if (rc != 0)
		fail(err, errlen, "%s: cannot load private key (unsupported "
		    "type or out of memory)", path);
done:
	wipe(&dc, sizeof dc);
	return rc;
}

/* Strip leading zero bytes of a big-endian unsigned integer. */
static void
be_trim(const unsigned char **p, size_t *n)
{
	while (*n > 0 && (*p)[0] == 0) {
		(*p)++;
		(*n)--;
	}
}

/* Does cs's private key belong to the public key pk (the leaf's)?  EC: recompute
 * the public point and compare.  RSA: compare the modulus p*q, then sign a probe
 * with the private key and verify it with the certificate's key, which also
 * checks the public exponent and the CRT parameters (BearSSL's pubexp recovery
 * needs p and q = 3 mod 4, which most keys do not have).  1 yes, 0 no, -1 if
 * BearSSL cannot handle the key (message in err). */
static int
key_matches(const struct cert_store *cs, const br_x509_pkey *pk,
    char *err, size_t errlen)
{
	const br_ec_impl *ec = br_ec_get_default();
	br_rsa_compute_modulus modulus = br_rsa_compute_modulus_get_default();
	br_rsa_pkcs1_sign rsa_sign = br_rsa_pkcs1_sign_get_default();
	br_rsa_pkcs1_vrfy rsa_vrfy = br_rsa_pkcs1_vrfy_get_default();
	uint8_t q[BR_EC_KBUF_PUB_MAX_SIZE], n[RSA_MODULUS_MAX_BYTES];
	uint8_t sig[RSA_MODULUS_MAX_BYTES], probe[32], back[32];
	const unsigned char *a, *b;
	size_t alen, blen, siglen, i;

	if (pk->key_type != cs->key_type)
		return 0;
	if (cs->key_type == BR_KEYTYPE_EC) {
		alen = br_ec_compute_pub(ec, NULL, q, &cs->ec);
		if (alen == 0)
			return fail(err, errlen, "unsupported EC curve %d",
			    cs->ec.curve);
		return pk->key.ec.curve == cs->ec.curve &&
		    pk->key.ec.qlen == alen &&
		    memcmp(pk->key.ec.q, q, alen) == 0;
	}
	alen = modulus(NULL, &cs->rsa);
	siglen = (cs->rsa.n_bitlen + 7) / 8;
	if (alen == 0 || alen > sizeof n || siglen == 0 || siglen > sizeof sig)
		return fail(err, errlen, "unsupported RSA key size (%lu bits)",
		    (unsigned long)cs->rsa.n_bitlen);
	modulus(n, &cs->rsa);
	a = n;
	b = pk->key.rsa.n;
	blen = pk->key.rsa.nlen;
	be_trim(&a, &alen);
	be_trim(&b, &blen);
	if (alen != blen || memcmp(a, b, alen) != 0)
		return 0;
	for (i = 0; i < sizeof probe; i++)
		probe[i] = (uint8_t)(i * 7 + 1);	/* any "SHA-256 value" */
	if (!rsa_sign(BR_HASH_OID_SHA256, probe, sizeof probe, &cs->rsa, sig))
		return 0;
	if (!rsa_vrfy(sig, siglen, BR_HASH_OID_SHA256, sizeof back,
	    &pk->key.rsa, back))
		return 0;
	return memcmp(back, probe, sizeof probe) == 0;
}

/* The steps after reading: decode the key, decode the leaf (BearSSL's X.509
 * decoder: its public key, who signed it), match the key against it, check that
 * each intermediate is at least one whole DER SEQUENCE (we only pass them on, so
 * algorithms BearSSL does not know are fine there), and hash the leaf.
 * crt_path and key_path only name things in messages. */
static int
finish_load(struct cert_store *cs, const uint8_t *key_der, size_t key_len,
    const char *crt_path, const char *key_path, char *err, size_t errlen)
{
	br_x509_decoder_context xd;
	const br_x509_pkey *pk;
	br_sha256_context sha;
	struct der_rd r, v;
	size_t i;
	int e, m;

	if (decode_key(cs, key_der, key_len, key_path, err, errlen) != 0)
		return -1;
	br_x509_decoder_init(&xd, 0, NULL);
	br_x509_decoder_push(&xd, cs->chain[0].data, cs->chain[0].data_len);
	e = br_x509_decoder_last_error(&xd);
	pk = br_x509_decoder_get_pkey(&xd);
	if (e != 0 || pk == NULL)
		return fail(err, errlen, "%s: certificate 1 is not a valid "
		    "X.509 certificate (BearSSL error %d)", crt_path, e);
	cs->leaf_key_type = pk->key_type;
	cs->leaf_issuer_key_type =
	    (unsigned)br_x509_decoder_get_signer_key_type(&xd);
	m = key_matches(cs, pk, err, errlen);
	if (m < 0)
		return -1;
	if (m == 0)
		return fail(err, errlen, "private key does not match "
		    "certificate (key %s, certificate %s)", key_path, crt_path);
	for (i = 1; i < cs->chain_len; i++) {
		r.p = cs->chain[i].data;
		r.n = cs->chain[i].data_len;
		if (der_expect(&r, DER_SEQUENCE, &v) != 0 || r.n != 0)
			return fail(err, errlen, "%s: certificate %lu is not "
			    "DER", crt_path, (unsigned long)i + 1);
	}
	br_sha256_init(&sha);
	br_sha256_update(&sha, cs->chain[0].data, cs->chain[0].data_len);
	br_sha256_out(&sha, cs->leaf_sha256);
	return 0;
}

static int
no_key(const char *path, char *err, size_t errlen)
{
	return fail(err, errlen, "no private key block (EC PRIVATE KEY, RSA "
	    "PRIVATE KEY or PRIVATE KEY) in %s", path);
}

int
cert_load_files(struct cert_store *cs, const char *crt_path,
    const char *key_path, char *err, size_t errlen)
{
	uint8_t *key_der = NULL;
	size_t key_len = 0;
	int rc = -1;

	memset(cs, 0, sizeof *cs);
	if (pem_read_file(crt_path, cs, 1, NULL, NULL, err, errlen) != 0)
		goto done;
	if (cs->chain_len == 0) {
		fail(err, errlen, "no CERTIFICATE block in %s", crt_path);
		goto done;
	}
	if (pem_read_file(key_path, cs, 0, &key_der, &key_len, err,
	    errlen) != 0)
		goto done;
	if (key_der == NULL) {
		no_key(key_path, err, errlen);
		goto done;
	}
	rc = finish_load(cs, key_der, key_len, crt_path, key_path, err,
	    errlen);
done:
	wipe_free(key_der, key_len);
	if (rc != 0)
		cert_free(cs);
	return rc;
}

/* *cs zeroed, then path's PEM blocks read (certificates too when want_certs);
 * a private-key block must be among them.  0, or -1 with err. */
static int
pem_read_with_key(struct cert_store *cs, const char *path, int want_certs,
    uint8_t **key_der, size_t *key_len, char *err, size_t errlen)
{
	memset(cs, 0, sizeof *cs);
	if (pem_read_file(path, cs, want_certs, key_der, key_len, err,
	    errlen) != 0)
		return -1;
	if (*key_der == NULL) {
		no_key(path, err, errlen);
		return -1;
	}
	return 0;
}

int
cert_load_combined(struct cert_store *cs, const char *path, char *err,
    size_t errlen)
{
	uint8_t *key_der = NULL;
	size_t key_len = 0;
	int rc = -1;

	if (pem_read_with_key(cs, path, 1, &key_der, &key_len, err,
	    errlen) != 0)
		goto done;
	if (cs->chain_len == 0) {
		fail(err, errlen, "no CERTIFICATE block in %s", path);
		goto done;
	}
	rc = finish_load(cs, key_der, key_len, path, path, err, errlen);
done:
	wipe_free(key_der, key_len);
	if (rc != 0)
		cert_free(cs);
	return rc;
}

void
cert_free(struct cert_store *cs)
{
	size_t i;

	if (cs == NULL)
		return;
	for (i = 0; i < cs->chain_len && i < CERT_CHAIN_MAX; i++)
		free(cs->chain[i].data);
	wipe_free(cs->ec.x, cs->ec.xlen);
	wipe_free(cs->rsa.p, cs->rsa.plen);
	wipe_free(cs->rsa.q, cs->rsa.qlen);
	wipe_free(cs->rsa.dp, cs->rsa.dplen);
	wipe_free(cs->rsa.dq, cs->rsa.dqlen);
	wipe_free(cs->rsa.iq, cs->rsa.iqlen);
	wipe(cs, sizeof *cs);
}

/* ------------------------------------------------------------------------- */
/* 4. DER writer and the self-signed IP certificate                           */
/* ------------------------------------------------------------------------- */

/*
 * The writer appends to a fixed buffer.  der_begin writes a tag and remembers
 * where the value starts; der_end measures the value, moves it up by the size of
 * the length field and writes the length there.  Nesting is a fixed stack, not
 * recursion.  Errors are sticky: the first write that does not fit (or a nesting
 * mistake) sets failed, every later call does nothing, and the caller checks
 * failed once at the end.
 */

/* Deepest nesting we write: CertificationRequest > CertificationRequestInfo >
 * [0] attributes > Attribute > SET > Extensions > Extension > OCTET STRING >
 * GeneralNames > dNSName = 10 (a certificate's is 8: Certificate >
 * TBSCertificate > [3] > Extensions > Extension > OCTET STRING > SEQUENCE >
 * entry). */
#define DER_DEPTH_MAX 10

/*
 * Size of the generated certificate, worst case (IPv6 with the longest text, 45
 * characters; a 17-byte serial; GeneralizedTime):
 *   version 5, serial 19, signature algorithm 12, issuer and subject 2 * 58,
 *   validity 36, SubjectPublicKeyInfo 91, extensions 4 + 16 + 21 + 14 + 22 = 77
 *   → TBSCertificate 356 + 3 of header;
 *   + signature algorithm 12 + signature BIT STRING 3 + 72 + Certificate header 4
 *   → about 450 bytes.  1024 leaves a wide margin; overflow is checked anyway.
 */
#define CERT_GEN_DER_MAX 1024
/* PEM of that: base64 4/3 (1368) + a newline per 64 characters (22) + BEGIN and
 * END lines (28 + 26) + NUL → under 1450. */
#define CERT_GEN_PEM_MAX 2048
/* SEC 1 ECPrivateKey for P-256: 2 + version 3 + key 34 + [0] curve OID 12 +
 * [1] public key 2 + 3 + 65 = 121 bytes; its PEM is under 256. */
#define KEY_GEN_DER_MAX 256
#define KEY_GEN_PEM_MAX 512
/* Seed for HMAC-DRBG: 32 bytes of entropy (SHA-256's security strength) plus a
 * 16-byte nonce, as NIST SP 800-90A asks for instantiation. */
#define CERT_SEED_BYTES 48
/* derper: NotAfter = NotBefore + 365 * 24 hours. */
#define CERT_IP_VALID_SECONDS (365L * 24 * 60 * 60)
/* Serial number: random 128 bits, as derper (rand.Int below 2^128). */
#define CERT_SERIAL_BYTES 16
/* ECDSA P-256 signature, ASN.1 form: at most 72 bytes (bearssl_ec.h). */
#define ECDSA_P256_SIG_MAX 72

static const uint8_t oid_ecdsa_sha256[] =	/* 1.2.840.10045.4.3.2 */
	{ 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02 };
static const uint8_t oid_ec_public_key[] =	/* 1.2.840.10045.2.1 */
	{ 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01 };
static const uint8_t oid_prime256v1[] =		/* 1.2.840.10045.3.1.7 */
	{ 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
static const uint8_t oid_common_name[] = { 0x55, 0x04, 0x03 };	/* 2.5.4.3 */
static const uint8_t oid_key_usage[] = { 0x55, 0x1d, 0x0f };	/* 2.5.29.15 */
static const uint8_t oid_ext_key_usage[] = { 0x55, 0x1d, 0x25 }; /* 2.5.29.37 */
static const uint8_t oid_basic_constraints[] = { 0x55, 0x1d, 0x13 }; /* .19 */
static const uint8_t oid_server_auth[] =	/* 1.3.6.1.5.5.7.3.1 */
	{ 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01 };

struct der_w {
	uint8_t *buf;
	size_t cap, len;
	size_t open[DER_DEPTH_MAX];	/* value offset of each open TLV */
	unsigned depth;
	int failed;
};

static void
der_bytes(struct der_w *w, const void *p, size_t n)
{
	if (w->failed)
		return;
	if (n > w->cap - w->len) {
		w->failed = 1;
		return;
	}
	if (n > 0)
		memcpy(w->buf + w->len, p, n);
	w->len += n;
}

static void
der_begin(struct der_w *w, uint8_t tag)
{
	if (!w->failed && w->depth == DER_DEPTH_MAX)
		w->failed = 1;
	der_bytes(w, &tag, 1);
	if (!w->failed)
		w->open[w->depth++] = w->len;
}

static void
der_end(struct der_w *w)
{
	uint8_t hdr[3];
	size_t start, vlen, hl;

	if (w->failed)
		return;
	if (w->depth == 0) {
		w->failed = 1;
		return;
	}
	start = w->open[--w->depth];
	vlen = w->len - start;
	if (vlen < 0x80) {
		hdr[0] = (uint8_t)vlen;
		hl = 1;
	} else if (vlen <= 0xff) {
		hdr[0] = 0x81;
		hdr[1] = (uint8_t)vlen;
		hl = 2;
	} else if (vlen <= 0xffff) {
		hdr[0] = 0x82;
		hdr[1] = (uint8_t)(vlen >> 8);
		hdr[2] = (uint8_t)vlen;
		hl = 3;
	} else {
		w->failed = 1;
		return;
	}
	if (hl > w->cap - w->len) {
		w->failed = 1;
		return;
	}
	memmove(w->buf + start + hl, w->buf + start, vlen);
	memcpy(w->buf + start, hdr, hl);
	w->len += hl;
}

/* A primitive TLV with the given value. */
static void
der_prim(struct der_w *w, uint8_t tag, const void *p, size_t n)
{
	der_begin(w, tag);
	der_bytes(w, p, n);
	der_end(w);
}

/* A non-negative INTEGER from big-endian bytes: minimal, with a 0x00 in front
 * when the top bit is set (DER X.690 8.3). */
static void
der_uint(struct der_w *w, const uint8_t *be, size_t n)
{
	while (n > 1 && be[0] == 0) {
		be++;
		n--;
	}
	der_begin(w, DER_INTEGER);
	if (n == 0 || (be[0] & 0x80))
		der_bytes(w, "", 1);
	der_bytes(w, be, n);
	der_end(w);
}

/* A BIT STRING: the count of unused bits in the last byte, then the bytes. */
static void
der_bits(struct der_w *w, uint8_t unused, const void *p, size_t n)
{
	der_begin(w, DER_BIT_STRING);
	der_bytes(w, &unused, 1);
	der_bytes(w, p, n);
	der_end(w);
}

/* AlgorithmIdentifier ecdsa-with-SHA256: the OID alone, no parameters (RFC 5758). */
static void
der_alg_ecdsa_sha256(struct der_w *w)
{
	der_begin(w, DER_SEQUENCE);
	der_prim(w, DER_OID, oid_ecdsa_sha256, sizeof oid_ecdsa_sha256);
	der_end(w);
}

/* Name with one RDN, CN = cn.  The IP text is digits, hex letters, '.' and ':',
 * all in PrintableString's alphabet, which is what Go picks for such a CN. */
static void
der_name_cn(struct der_w *w, const char *cn)
{
	der_begin(w, DER_SEQUENCE);
	der_begin(w, DER_SET);
	der_begin(w, DER_SEQUENCE);
	der_prim(w, DER_OID, oid_common_name, sizeof oid_common_name);
	der_prim(w, DER_PRINTABLE_STRING, cn, strlen(cn));
	der_end(w);
	der_end(w);
	der_end(w);
}

static void
put_dec(char *s, unsigned v, int digits)
{
	while (digits-- > 0) {
		s[digits] = (char)('0' + v % 10);
		v /= 10;
	}
}

/* Time as RFC 5280 4.1.2.5 (and Go) write it: UTCTime YYMMDDHHMMSSZ for 1950..2049,
 * GeneralizedTime YYYYMMDDHHMMSSZ otherwise.  0, or -1 if t is out of range. */
static int
der_time(struct der_w *w, time_t t)
{
	struct tm tm;
	char s[15];		/* YYYYMMDDHHMMSSZ */
	char *p = s;
	int year;

	if (gmtime_r(&t, &tm) == NULL)
		return -1;
	year = tm.tm_year + 1900;
	if (year < 0 || year > 9999)
		return -1;
	if (year >= 1950 && year < 2050) {
		put_dec(p, (unsigned)year % 100, 2);
		p += 2;
	} else {
		put_dec(p, (unsigned)year, 4);
		p += 4;
	}
	put_dec(p, (unsigned)tm.tm_mon + 1, 2);
	put_dec(p + 2, (unsigned)tm.tm_mday, 2);
	put_dec(p + 4, (unsigned)tm.tm_hour, 2);
	put_dec(p + 6, (unsigned)tm.tm_min, 2);
	put_dec(p + 8, (unsigned)tm.tm_sec, 2);
	p[10] = 'Z';
	p += 11;
	der_prim(w, year >= 1950 && year < 2050 ? DER_UTC_TIME :
	    DER_GENERALIZED_TIME, s, (size_t)(p - s));
	return 0;
}

/* Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue
 * OCTET STRING }: opens the extnValue; der_ext_end closes both. */
static void
der_ext_begin(struct der_w *w, const uint8_t *oid, size_t oid_len,
    int critical)
{
	der_begin(w, DER_SEQUENCE);
	der_prim(w, DER_OID, oid, oid_len);
	if (critical)
		der_prim(w, DER_BOOLEAN, "\xff", 1);
	der_begin(w, DER_OCTET_STRING);
}

static void
der_ext_end(struct der_w *w)
{
	der_end(w);
	der_end(w);
}

/* Fill buf with n bytes from /dev/urandom.  0, or -1 with err: without a good
 * seed we make no key. */
static int
read_urandom(uint8_t *buf, size_t n, char *err, size_t errlen)
{
	size_t got = 0;
	ssize_t r;
	int fd;

	fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(err, errlen, "open /dev/urandom: %s",
		    strerror(errno));
	while (got < n) {
		r = read(fd, buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fail(err, errlen, "read /dev/urandom: %s",
			    r < 0 ? strerror(errno) : "unexpected end of file");
			close(fd);
			return -1;
		}
		got += (size_t)r;
	}
	close(fd);
	return 0;
}

/* A DNS name as a dNSName SAN may hold it: LDH labels of 1..63, dots
 * between, at most 253 bytes. */
static int
is_dns_name(const char *s)
{
	size_t i, label = 0, n = strlen(s);

	if (n == 0 || n > 253)
		return 0;
	for (i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else if ((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		    s[i] == '-') {
			if (++label > 63)
				return 0;
		} else {
			return 0;
		}
	}
	return label > 0;
}

static int cert_generate(const char *crt_path, const char *key_path,
    const char *name, int dns, time_t now, char *err, size_t errlen);

int
cert_generate_ip(const char *crt_path, const char *key_path,
    const char *ip_text, time_t now, char *err, size_t errlen)
{
	return cert_generate(crt_path, key_path, ip_text, 0, now, err, errlen);
}

int
cert_generate_dns(const char *crt_path, const char *key_path,
    const char *name, time_t now, char *err, size_t errlen)
{
	if (name == NULL || !is_dns_name(name))
		return fail(err, errlen, "not a DNS name: %s",
		    name != NULL ? name : "(null)");
	return cert_generate(crt_path, key_path, name, 1, now, err, errlen);
}

/* The certificate of cert_generate_ip, for an IP literal or (dns) a name. */
static int
cert_generate(const char *crt_path, const char *key_path, const char *ip_text,
    int dns, time_t now, char *err, size_t errlen)
{
	const br_ec_impl *ec = br_ec_get_default();
	br_ecdsa_sign sign = br_ecdsa_sign_asn1_get_default();
	uint8_t seed[CERT_SEED_BYTES];
	br_hmac_drbg_context rng;
	uint8_t kbuf[BR_EC_KBUF_PRIV_MAX_SIZE], qbuf[BR_EC_KBUF_PUB_MAX_SIZE];
	br_ec_private_key sk;
	br_ec_public_key pk;
	uint8_t ip[16], serial[CERT_SERIAL_BYTES], hash[32];
	uint8_t sig[ECDSA_P256_SIG_MAX];
	uint8_t der[CERT_GEN_DER_MAX];
	char pem[CERT_GEN_PEM_MAX];
	uint8_t key_der[KEY_GEN_DER_MAX];
	char key_pem[KEY_GEN_PEM_MAX];
	br_sha256_context sha;
	struct der_w w;
	size_t iplen, tbs_off, siglen, der_len, pem_len, key_der_len,
	    key_pem_len, i;
	uint8_t any;
	int rc = -1;

	memset(&w, 0, sizeof w);
	memset(&sk, 0, sizeof sk);
	/* Only a bare IP literal: brackets or a zone ("%eth0") make no sense
	 * in a CN, and inet_pton accepts neither. */
	if (dns) {
		iplen = 0;
	} else if (ip_text == NULL || strlen(ip_text) >= 46 ||
	    (inet_pton(AF_INET, ip_text, ip) != 1 &&
	    inet_pton(AF_INET6, ip_text, ip) != 1)) {
		return fail(err, errlen, "not an IP address: %s",
		    ip_text != NULL ? ip_text : "(null)");
	} else {
		iplen = parse_ip(ip_text, ip);	/* IPv4-mapped → 4 bytes, as Go */
	}
	if (strcmp(crt_path, key_path) == 0)
		return fail(err, errlen, "certificate and key paths are the "
		    "same: %s", crt_path);
	/* NotAfter must not overflow a 32-bit time_t (2038). */
	if (now < 0 || (sizeof(time_t) < 8 &&
	    now > (time_t)0x7fffffffL - CERT_IP_VALID_SECONDS))
		return fail(err, errlen, "current time out of range");

	/* Key: P-256 from an HMAC-DRBG seeded by the kernel. */
	if (read_urandom(seed, sizeof seed, err, errlen) != 0)
		goto done;
	br_hmac_drbg_init(&rng, &br_sha256_vtable, seed, sizeof seed);
	if (br_ec_keygen(&rng.vtable, ec, &sk, kbuf, BR_EC_secp256r1) == 0 ||
	    br_ec_compute_pub(ec, &pk, qbuf, &sk) == 0) {
		fail(err, errlen, "EC P-256 key generation failed");
		goto done;
	}
	br_hmac_drbg_generate(&rng, serial, sizeof serial);
	for (any = 0, i = 0; i < sizeof serial; i++)
		any |= serial[i];
	if (any == 0)
		serial[sizeof serial - 1] = 1;	/* RFC 5280: positive */

	/* Certificate, fields in Go's x509.CreateCertificate order. */
	w.buf = der;
	w.cap = sizeof der;
	der_begin(&w, DER_SEQUENCE);			/* Certificate */
	tbs_off = w.len;
	der_begin(&w, DER_SEQUENCE);			/* TBSCertificate */
	der_begin(&w, DER_CTX_CONS(0));			/* version: v3 (2) */
	der_prim(&w, DER_INTEGER, "\x02", 1);
	der_end(&w);
	der_uint(&w, serial, sizeof serial);
	der_alg_ecdsa_sha256(&w);
	der_name_cn(&w, ip_text);			/* issuer */
	der_begin(&w, DER_SEQUENCE);			/* validity */
	if (der_time(&w, now) != 0 ||
	    der_time(&w, now + CERT_IP_VALID_SECONDS) != 0) {
		fail(err, errlen, "current time out of range");
		goto done;
	}
	der_end(&w);
	der_name_cn(&w, ip_text);			/* subject */
	der_begin(&w, DER_SEQUENCE);			/* subjectPublicKeyInfo */
	der_begin(&w, DER_SEQUENCE);
	der_prim(&w, DER_OID, oid_ec_public_key, sizeof oid_ec_public_key);
	der_prim(&w, DER_OID, oid_prime256v1, sizeof oid_prime256v1);
	der_end(&w);
	der_bits(&w, 0, pk.q, pk.qlen);			/* uncompressed point */
	der_end(&w);
	der_begin(&w, DER_CTX_CONS(3));			/* extensions */
	der_begin(&w, DER_SEQUENCE);
	/* keyUsage, critical: digitalSignature (bit 0) + keyEncipherment
	 * (bit 2) = 101 followed by 5 unused bits. */
	der_ext_begin(&w, oid_key_usage, sizeof oid_key_usage, 1);
	der_bits(&w, 5, "\xa0", 1);
	der_ext_end(&w);
	der_ext_begin(&w, oid_ext_key_usage, sizeof oid_ext_key_usage, 0);
	der_begin(&w, DER_SEQUENCE);
	der_prim(&w, DER_OID, oid_server_auth, sizeof oid_server_auth);
	der_end(&w);
	der_ext_end(&w);
	/* basicConstraints, critical, CA false: Go writes the empty SEQUENCE
	 * (cA's DEFAULT FALSE and no pathLen are omitted). */
	der_ext_begin(&w, oid_basic_constraints, sizeof oid_basic_constraints,
	    1);
	der_begin(&w, DER_SEQUENCE);
	der_end(&w);
	der_ext_end(&w);
	/* subjectAltName: iPAddress (or dNSName); not critical since the
	 * subject is set. */
	der_ext_begin(&w, oid_subject_alt_name, sizeof oid_subject_alt_name,
	    0);
	der_begin(&w, DER_SEQUENCE);
	if (dns)
		der_prim(&w, GN_DNS_NAME, ip_text, strlen(ip_text));
	else
		der_prim(&w, GN_IP_ADDRESS, ip, iplen);
	der_end(&w);
	der_ext_end(&w);
	der_end(&w);
	der_end(&w);					/* [3] */
	der_end(&w);					/* TBSCertificate */
	if (w.failed) {
		fail(err, errlen, "certificate encoding overflow");
		goto done;
	}
	br_sha256_init(&sha);
	br_sha256_update(&sha, der + tbs_off, w.len - tbs_off);
	br_sha256_out(&sha, hash);
	siglen = sign(ec, &br_sha256_vtable, hash, &sk, sig);
	if (siglen == 0) {
		fail(err, errlen, "ECDSA signing failed");
		goto done;
	}
	der_alg_ecdsa_sha256(&w);
	der_bits(&w, 0, sig, siglen);
	der_end(&w);					/* Certificate */
	if (w.failed || w.depth != 0) {
		fail(err, errlen, "certificate encoding overflow");
		goto done;
	}
	der_len = w.len;

	/* PEM, 64-character lines as Go's pem.Encode writes. */
	pem_len = br_pem_encode(NULL, der, der_len, "CERTIFICATE",
	    BR_PEM_LINE64);
	key_der_len = br_encode_ec_raw_der(NULL, &sk, &pk);
	if (pem_len + 1 > sizeof pem || key_der_len == 0 ||
	    key_der_len > sizeof key_der) {
		fail(err, errlen, "certificate encoding overflow");
		goto done;
	}
	br_pem_encode(pem, der, der_len, "CERTIFICATE", BR_PEM_LINE64);
	br_encode_ec_raw_der(key_der, &sk, &pk);
	key_pem_len = br_pem_encode(NULL, key_der, key_der_len,
	    BR_ENCODE_PEM_EC_RAW, BR_PEM_LINE64);
	if (key_pem_len + 1 > sizeof key_pem) {
		fail(err, errlen, "key encoding overflow");
		goto done;
	}
	br_pem_encode(key_pem, key_der, key_der_len, BR_ENCODE_PEM_EC_RAW,
	    BR_PEM_LINE64);

	/* The key first: an existing .crt then always has its .key beside it. */
	if (make_parent_dirs(key_path, err, errlen) != 0 ||
	    write_file(key_path, key_pem, key_pem_len, err, errlen) != 0 ||
	    make_parent_dirs(crt_path, err, errlen) != 0 ||
	    write_file(crt_path, pem, pem_len, err, errlen) != 0)
		goto done;
	rc = 0;
done:
	wipe(seed, sizeof seed);
	wipe(&rng, sizeof rng);
	wipe(kbuf, sizeof kbuf);
	wipe(&sk, sizeof sk);
	wipe(key_der, sizeof key_der);
	wipe(key_pem, sizeof key_pem);
	return rc;
}

/* ------------------------------------------------------------------------- */
/* 5. Keys, requests and files for the ACME client (acme.c)                   */
/* ------------------------------------------------------------------------- */

/* The issued test certificate (cert_issue) and a CSR are the generated
 * certificate above with a longer name: a 253-byte dNSName adds at most 2 * 253
 * (SAN and CN are not both that long: the CN stops at 64) over the 45-byte IP
 * text, so 1024 still holds them; overflow is checked anyway. */

/* subjectPublicKeyInfo of a P-256 public key (uncompressed point). */
static void
der_spki_ec(struct der_w *w, const br_ec_public_key *pk)
{
	der_begin(w, DER_SEQUENCE);
	der_begin(w, DER_SEQUENCE);
	der_prim(w, DER_OID, oid_ec_public_key, sizeof oid_ec_public_key);
	der_prim(w, DER_OID, oid_prime256v1, sizeof oid_prime256v1);
	der_end(w);
	der_bits(w, 0, pk->q, pk->qlen);
	der_end(w);
}

/* A name as the requests and test certificates carry it: an IP literal becomes
 * an iPAddress SAN and an empty Subject (RFC 8738 asks for no CN), a DNS name a
 * dNSName SAN and, when it fits the 64 characters of X.520's ub-common-name,
 * the Subject CN (Let's Encrypt copies it).  Writes the Subject; the SAN
 * extension is der_san's.  -1 if name is neither. */
static int
der_subject(struct der_w *w, const char *name, uint8_t ip[16], size_t *iplen)
{
	if (name == NULL || name[0] == '[')
		return -1;		/* parse_ip's brackets: not in requests */
	*iplen = strlen(name) < 46 ? parse_ip(name, ip) : 0;
	if (*iplen == 0 && !is_dns_name(name))
		return -1;
	if (*iplen == 0 && strlen(name) <= 64) {
		der_name_cn(w, name);
	} else {
		der_begin(w, DER_SEQUENCE);
		der_end(w);
	}
	return 0;
}

/* The subjectAltName Extension: one dNSName, or one iPAddress when iplen > 0. */
static void
der_san(struct der_w *w, const char *name, const uint8_t *ip, size_t iplen)
{
	der_ext_begin(w, oid_subject_alt_name, sizeof oid_subject_alt_name, 0);
	der_begin(w, DER_SEQUENCE);
	if (iplen > 0)
		der_prim(w, GN_IP_ADDRESS, ip, iplen);
	else
		der_prim(w, GN_DNS_NAME, name, strlen(name));
	der_end(w);
	der_ext_end(w);
}

/* Close the signed structure whose to-be-signed part starts at tbs_off: append
 * ecdsa-with-SHA256 and the signature of sk over it, then end the outer
 * SEQUENCE.  Returns the DER length, or 0. */
static size_t
der_sign_close(struct der_w *w, size_t tbs_off, const br_ec_private_key *sk)
{
	br_ecdsa_sign sign = br_ecdsa_sign_asn1_get_default();
	uint8_t hash[32], sig[ECDSA_P256_SIG_MAX];
	br_sha256_context sha;
	size_t siglen;

	if (w->failed)
		return 0;
	br_sha256_init(&sha);
	br_sha256_update(&sha, w->buf + tbs_off, w->len - tbs_off);
	br_sha256_out(&sha, hash);
	siglen = sign(br_ec_get_default(), &br_sha256_vtable, hash, sk, sig);
	if (siglen == 0)
		return 0;
	der_alg_ecdsa_sha256(w);
	der_bits(w, 0, sig, siglen);
	der_end(w);
	return w->failed || w->depth != 0 ? 0 : w->len;
}

int
cert_read_file(const char *path, uint8_t **out, size_t *outlen, char *err,
    size_t errlen)
{
	return read_file(path, out, outlen, err, errlen);
}

int
cert_write_atomic(const char *path, const void *data, size_t len, char *err,
    size_t errlen)
{
	char tmp[CERT_PATH_MAX], dir[CERT_PATH_MAX];
	char *slash;
	int fd;

	if (make_parent_dirs(path, err, errlen) != 0)
		return -1;
	if ((size_t)snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= sizeof tmp)
		return fail(err, errlen, "path too long: %.64s...", path);
	fd = mkstemp(tmp);		/* a fresh name, mode 0600 */
	if (fd < 0)
		return fail(err, errlen, "create %s: %s", tmp, strerror(errno));
	close(fd);
	if (write_file(tmp, data, len, err, errlen) != 0) {
		unlink(tmp);
		return -1;
	}
	if (rename(tmp, path) != 0) {
		fail(err, errlen, "rename %s: %s", tmp, strerror(errno));
		unlink(tmp);
		return -1;
	}
	/* The rename is durable once the directory is flushed.  The new file
	 * is already in place, so a directory that cannot be synced (some file
	 * systems refuse) is not reported as a failed write. */
	memcpy(dir, path, strlen(path) + 1);
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash != NULL)
		*slash = '\0';
	fd = open(slash != NULL ? dir : ".", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	return 0;
}

int
cert_load_key(struct cert_store *cs, const char *path, char *err,
    size_t errlen)
{
	uint8_t *key_der = NULL;
	size_t key_len = 0;
	int rc = -1;

	if (pem_read_with_key(cs, path, 0, &key_der, &key_len, err,
	    errlen) == 0)
		rc = decode_key(cs, key_der, key_len, path, err, errlen);
	wipe_free(key_der, key_len);
	if (rc != 0)
		cert_free(cs);
	return rc;
}

int
cert_ec_keygen(br_ec_private_key *sk,
    unsigned char kbuf[BR_EC_KBUF_PRIV_MAX_SIZE], char *err, size_t errlen)
{
	uint8_t seed[CERT_SEED_BYTES];
	br_hmac_drbg_context rng;
	int rc = -1;

	if (read_urandom(seed, sizeof seed, err, errlen) != 0)
		return -1;
	br_hmac_drbg_init(&rng, &br_sha256_vtable, seed, sizeof seed);
	if (br_ec_keygen(&rng.vtable, br_ec_get_default(), sk, kbuf,
	    BR_EC_secp256r1) == 0)
		fail(err, errlen, "EC P-256 key generation failed");
	else
		rc = 0;
	wipe(seed, sizeof seed);
	wipe(&rng, sizeof rng);
	return rc;
}

size_t
cert_ec_key_pem(const br_ec_private_key *sk, char *out, size_t cap)
{
	uint8_t qbuf[BR_EC_KBUF_PUB_MAX_SIZE], der[KEY_GEN_DER_MAX];
	br_ec_public_key pk;
	size_t der_len, n = 0;

	if (br_ec_compute_pub(br_ec_get_default(), &pk, qbuf, sk) == 0)
		return 0;
	der_len = br_encode_ec_raw_der(NULL, sk, &pk);
	if (der_len == 0 || der_len > sizeof der)
		return 0;
	br_encode_ec_raw_der(der, sk, &pk);
	n = br_pem_encode(NULL, der, der_len, BR_ENCODE_PEM_EC_RAW,
	    BR_PEM_LINE64);
	if (n + 1 > cap)
		n = 0;
	else
		br_pem_encode(out, der, der_len, BR_ENCODE_PEM_EC_RAW,
		    BR_PEM_LINE64);
	wipe(der, sizeof der);
	return n;
}

/* The extensionRequest attribute type of PKCS#9 (RFC 2985 5.4.2). */
static const uint8_t oid_extension_request[] =	/* 1.2.840.113549.1.9.14 */
	{ 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e };

size_t
cert_make_csr(const br_ec_private_key *sk, const char *name, uint8_t *out,
    size_t cap)
{
	uint8_t qbuf[BR_EC_KBUF_PUB_MAX_SIZE], ip[16];
	br_ec_public_key pk;
	struct der_w w;
	size_t iplen, tbs_off;

	if (br_ec_compute_pub(br_ec_get_default(), &pk, qbuf, sk) == 0)
		return 0;
	/* RFC 2986 4: CertificationRequest { CertificationRequestInfo
	 * { version 0, subject, subjectPKInfo, [0] attributes }, algorithm,
	 * signature }. */
	memset(&w, 0, sizeof w);
	w.buf = out;
	w.cap = cap;
	der_begin(&w, DER_SEQUENCE);
	tbs_off = w.len;
	der_begin(&w, DER_SEQUENCE);
	der_prim(&w, DER_INTEGER, "", 1);		/* version 0 */
	if (der_subject(&w, name, ip, &iplen) != 0)
		return 0;
	der_spki_ec(&w, &pk);
	der_begin(&w, DER_CTX_CONS(0));
	der_begin(&w, DER_SEQUENCE);
	der_prim(&w, DER_OID, oid_extension_request,
	    sizeof oid_extension_request);
	der_begin(&w, DER_SET);
	der_begin(&w, DER_SEQUENCE);
	der_san(&w, name, ip, iplen);
	der_end(&w);
	der_end(&w);
	der_end(&w);
	der_end(&w);
	der_end(&w);					/* CertificationRequestInfo */
	return der_sign_close(&w, tbs_off, sk);
}

size_t
cert_issue(const br_ec_private_key *issuer_sk, const char *issuer_cn,
    const br_ec_public_key *pk, const char *name, time_t not_before,
    time_t not_after, uint8_t *out, size_t cap)
{
	uint8_t serial[CERT_SERIAL_BYTES], ip[16];
	char err[8];
	struct der_w w;
	size_t iplen, tbs_off;

	if (read_urandom(serial, sizeof serial, err, sizeof err) != 0)
		return 0;
	serial[0] |= 1;		/* non-zero; der_uint keeps it positive */
	memset(&w, 0, sizeof w);
	w.buf = out;
	w.cap = cap;
	der_begin(&w, DER_SEQUENCE);			/* Certificate */
	tbs_off = w.len;
	der_begin(&w, DER_SEQUENCE);			/* TBSCertificate */
	der_begin(&w, DER_CTX_CONS(0));			/* version: v3 (2) */
	der_prim(&w, DER_INTEGER, "\x02", 1);
	der_end(&w);
	der_uint(&w, serial, sizeof serial);
	der_alg_ecdsa_sha256(&w);
	der_name_cn(&w, issuer_cn);
	der_begin(&w, DER_SEQUENCE);
	if (der_time(&w, not_before) != 0 || der_time(&w, not_after) != 0)
		return 0;
	der_end(&w);
	if (der_subject(&w, name, ip, &iplen) != 0)
		return 0;
	der_spki_ec(&w, pk);
	der_begin(&w, DER_CTX_CONS(3));
	der_begin(&w, DER_SEQUENCE);
	der_san(&w, name, ip, iplen);
	der_end(&w);
	der_end(&w);
	der_end(&w);					/* TBSCertificate */
	return der_sign_close(&w, tbs_off, issuer_sk);
}
