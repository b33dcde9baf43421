/*
 * cert.h -- TLS certificates for the relay: PEM loading (chains and EC/RSA/PKCS#8
 * keys), the self-signed IP certificate derper generates in manual mode, and the
 * hostname check derper makes at start-up.  Runs only at start-up: it may allocate
 * (with malloc, freed by cert_free), never on the packet path.
 */
#ifndef CERT_H
#define CERT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <bearssl.h>

#define CERT_CHAIN_MAX 10	/* leaf + intermediates accepted from a .crt file */

struct cert_store {
	br_x509_certificate chain[CERT_CHAIN_MAX];	/* DER, leaf first (malloc'd) */
	size_t chain_len;
	int key_type;			/* BR_KEYTYPE_EC or BR_KEYTYPE_RSA */
	br_ec_private_key ec;		/* when key_type == BR_KEYTYPE_EC (x malloc'd) */
	br_rsa_private_key rsa;		/* when key_type == BR_KEYTYPE_RSA (fields malloc'd) */
	int leaf_key_type;		/* key type of the leaf's public key (== key_type) */
	unsigned leaf_issuer_key_type;	/* BR_KEYTYPE_EC or _RSA: who signed the leaf, as
					   br_ssl_server_set_single_*() wants it; 0 if
					   BearSSL does not know the signature algorithm */
	uint8_t leaf_sha256[32];	/* SHA-256 of the leaf DER: the sha256-raw: pin */
};

/* Load <crt_path> (PEM CERTIFICATE blocks, leaf first) and <key_path> (PEM
 * "EC PRIVATE KEY", "RSA PRIVATE KEY" or "PRIVATE KEY" (PKCS#8); the first key
 * block is used, other blocks such as "EC PARAMETERS" are skipped, as Go's
 * tls.X509KeyPair does).  Checks that the key matches the leaf's public key.
 * Encrypted keys are refused.  0, or -1 with a one-line message in err, e.g.
 * "open /x/y.crt: No such file or directory"; on failure *cs is left zeroed
 * (cert_free on it is harmless). */
int cert_load_files(struct cert_store *cs, const char *crt_path,
    const char *key_path, char *err, size_t errlen);

/* Load a single PEM file holding the key and the chain (golang autocert's cache
 * format: key block first, then certificates, leaf first; the order of the key
 * block relative to the certificates is not enforced).  0 or -1 with err, as
 * cert_load_files. */
int cert_load_combined(struct cert_store *cs, const char *path, char *err,
    size_t errlen);

/* Generate a self-signed ECDSA P-256 certificate for the IP literal ip_text, as
 * derper does (derper-compat.md 7.3: CN = ip_text, IP SAN, serverAuth, valid from
 * now for 365 days), and write key_path ("EC PRIVATE KEY") then crt_path
 * ("CERTIFICATE"), both mode 0600 (derper leaves the .crt 0644), creating missing
 * parent directories with mode 0700.  Existing files are replaced.  Randomness
 * from /dev/urandom; no file is written if that fails.  0 or -1 with err. */
int cert_generate_ip(const char *crt_path, const char *key_path,
    const char *ip_text, time_t now, char *err, size_t errlen);
/* The same for a DNS name (CN and one dNSName SAN): derper never makes one, but
 * the tests do, for relays that check SNI against a DNS -hostname. */
int cert_generate_dns(const char *crt_path, const char *key_path,
    const char *name, time_t now, char *err, size_t errlen);

/* 1 if the leaf is valid for hostname, by Go's crypto/x509 VerifyHostname rules:
 * a DNS name against the dNSName SANs (ASCII case-insensitive, one trailing dot
 * on hostname ignored, a leading "*." label matching exactly one label), an IP
 * literal (optionally in brackets; IPv4-mapped IPv6 equals IPv4) against the
 * iPAddress SANs.  No Subject CN fallback.  0 otherwise, also for a malformed
 * certificate. */
int cert_matches_host(const struct cert_store *cs, const char *hostname);

/* The leaf's validity (notBefore, notAfter) as Unix seconds, from UTCTime or
 * GeneralizedTime in RFC 5280's form (seconds, "Z").  For renewal scheduling and
 * for refusing an expired certificate on reload.  0, or -1 if the leaf is
 * missing or malformed. */
int cert_leaf_validity(const struct cert_store *cs, int64_t *not_before,
    int64_t *not_after);

/*
 * For the ACME client (acme.c) and its tests.  Keys are P-256 only.
 */

/* The whole of path (at most 1 MiB) in a malloc'd buffer; the caller frees it
 * (wiping it first if it held a key).  0, or -1 with err. */
int cert_read_file(const char *path, uint8_t **out, size_t *outlen, char *err,
    size_t errlen);

/* Replace path with data atomically: missing parent directories are made mode
 * 0700, the bytes go to a fresh temporary file beside path (mode 0600), which is
 * fsync'd and renamed over path; the directory is then synced.  path is never
 * left partly written.  0, or -1 with err (the temporary file removed). */
int cert_write_atomic(const char *path, const void *data, size_t len,
    char *err, size_t errlen);

/* Load the first private-key block of path (as cert_load_files reads its key
 * file) into cs->ec or cs->rsa, with cs->key_type; no certificate.  0, or -1
 * with err and *cs zeroed.  Release with cert_free. */
int cert_load_key(struct cert_store *cs, const char *path, char *err,
    size_t errlen);

/* A new P-256 private key from the kernel's randomness; sk->x points into
 * kbuf.  0, or -1 with err. */
int cert_ec_keygen(br_ec_private_key *sk,
    unsigned char kbuf[BR_EC_KBUF_PRIV_MAX_SIZE], char *err, size_t errlen);

/* sk as PEM "EC PRIVATE KEY" (SEC 1, with the public key, as Go's
 * x509.MarshalECPrivateKey), NUL-terminated in out.  Returns the length
 * without the NUL, or 0 if it does not fit cap. */
size_t cert_ec_key_pem(const br_ec_private_key *sk, char *out, size_t cap);

/* A PKCS#10 request (DER) signed by sk (ecdsa-with-SHA256) for name: an IP
 * literal (IPv4 or IPv6, no brackets) gets an iPAddress subjectAltName and an
 * empty Subject, a DNS name a dNSName and Subject CN = name when it has at
 * most 64 characters.  Returns the DER length, or 0 (bad name, no room). */
size_t cert_make_csr(const br_ec_private_key *sk, const char *name,
    uint8_t *out, size_t cap);

/* A certificate (DER) for public key pk and name (Subject and subjectAltName
 * as cert_make_csr), issued by CN = issuer_cn and signed by issuer_sk, valid
 * from not_before to not_after, random serial.  No other extension: a stand-in
 * CA's leaf for the tests.  Returns the DER length, or 0. */
size_t cert_issue(const br_ec_private_key *issuer_sk, const char *issuer_cn,
    const br_ec_public_key *pk, const char *name, time_t not_before,
    time_t not_after, uint8_t *out, size_t cap);

/* Free what cert_load_* allocated; cs is zeroed. */
void cert_free(struct cert_store *cs);

#endif
