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
	int leaf_key_type;		/* key type of the leaf's public key */
	unsigned leaf_issuer_key_type;	/* BR_KEYTYPE_EC or _RSA: who signed the leaf */
	uint8_t leaf_sha256[32];	/* SHA-256 of the leaf DER: the sha256-raw: pin */
};

/* Load <crt_path> (PEM CERTIFICATE blocks, leaf first) and <key_path> (PEM
 * "EC PRIVATE KEY", "RSA PRIVATE KEY" or "PRIVATE KEY" (PKCS#8)).  Checks that
 * the key matches the leaf's public key.  0, or -1 with a message in err. */
int cert_load_files(struct cert_store *cs, const char *crt_path,
    const char *key_path, char *err, size_t errlen);

/* Load a single PEM file holding the key and the chain (golang autocert's cache
 * format: key block first, then certificates, leaf first).  0 or -1 with err. */
int cert_load_combined(struct cert_store *cs, const char *path, char *err,
    size_t errlen);

/* Generate a self-signed ECDSA P-256 certificate for the IP literal ip_text, as
 * derper does (cert.md: CN = ip_text, IP SAN, serverAuth, 1 year from now), and write
 * crt_path and key_path (PEM), both mode 0600.  0 or -1 with err. */
int cert_generate_ip(const char *crt_path, const char *key_path,
    const char *ip_text, time_t now, char *err, size_t errlen);

/* 1 if the leaf is valid for hostname: a DNS name against the dNSName SANs
 * (one leading "*." wildcard label allowed, case-insensitive), an IP literal
 * against the iPAddress SANs.  0 otherwise. */
int cert_matches_host(const struct cert_store *cs, const char *hostname);

/* Free what cert_load_* allocated; cs is zeroed. */
void cert_free(struct cert_store *cs);

#endif
