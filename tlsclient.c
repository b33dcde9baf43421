/*
 * tlsclient.c -- the outbound TLS client pieces of acme.c and derp.c's
 * admission webhook (interface and contract: tlsclient.h).  Sections:
 *
 *   1. Trust anchors  the PEM reader, and a bundle's certificates as anchors
 *   2. X.509 check    BearSSL's minimal engine plus our IP SAN check
 *   3. Client         BearSSL's client profile, and the reset per connection
 *
 * URLs are verify.c's (vurl_parse): an http:// webhook needs them in a
 * relay built without this file.
 *
 * No socket I/O here.  Allocation: tlsc_anchors_load (the anchors, kept
 * until tlsc_anchors_free) and tlsc_pem_certs (one 16 KiB buffer per call,
 * freed before it returns); nothing else.
 */
#define _POSIX_C_SOURCE 200809L

#include "tlsclient.h"
#include "cert.h"

#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------- */
/* 1. Trust anchors                                                           */
/* ------------------------------------------------------------------------- */

/* Bytes BearSSL's decoders hand out (a PEM block's DER, a certificate's
 * DN) gathered into a buffer of cap bytes; over is sticky. */
struct acc {
	uint8_t *p;
	size_t len, cap;
	int over;
};

static void
acc_add(void *ctx, const void *src, size_t n)
{
	struct acc *acc = ctx;

	if (acc->over || n > acc->cap - acc->len) {
		acc->over = 1;
		return;
	}
	memcpy(acc->p + acc->len, src, n);
	acc->len += n;
}

int
tlsc_pem_certs(const uint8_t *pem, size_t len, int strict,
    int (*cb)(void *ctx, const uint8_t *der, size_t n), void *ctx)
{
	br_pem_decoder_context pc;
	struct acc acc;
	size_t off = 0;
	int count = 0, in_block = 0, is_cert = 0, nl_pushed = 0, rc = -1;

	acc.p = malloc(TLSC_CERT_DER_MAX);
	if (acc.p == NULL)
		return -1;
	acc.len = 0;
	acc.cap = TLSC_CERT_DER_MAX;
	acc.over = 0;
	br_pem_decoder_init(&pc);
	for (;;) {
		/* The text, then one newline: BearSSL sees an END line only
		 * once it ends, and the last line may lack its newline. */
		if (off < len)
			off += br_pem_decoder_push(&pc, pem + off, len - off);
		else if (!nl_pushed)
			nl_pushed = br_pem_decoder_push(&pc, "\n", 1) == 1;
		switch (br_pem_decoder_event(&pc)) {
		case BR_PEM_BEGIN_OBJ:
			is_cert = strcmp(br_pem_decoder_name(&pc),
			    "CERTIFICATE") == 0;
			if (!is_cert && strict)
				goto done;
			acc.len = 0;
			acc.over = 0;
			br_pem_decoder_setdest(&pc, is_cert ? acc_add : 0,
			    &acc);
			in_block = 1;
			break;
		case BR_PEM_END_OBJ:
			in_block = 0;
			if (!is_cert)
				break;
			if (acc.over || acc.len == 0 ||
			    cb(ctx, acc.p, acc.len) != 0)
				goto done;
			count++;
			break;
		case BR_PEM_ERROR:
			goto done;
		default:
			if (off == len && nl_pushed) {
				if (!in_block)
					rc = count;
				goto done;
			}
			break;
		}
	}
done:
	free(acc.p);
	return rc;
}

/* tlsc_pem_certs callback for a bundle: each certificate BearSSL can decode
 * becomes a trust anchor (subject DN, public key, CA flag from
 * basicConstraints); others are skipped, as a bundle may hold roots of
 * algorithms it lacks.  0, or -1 when out of memory. */
static int
anchor_add(void *ctx, const uint8_t *der, size_t n)
{
	struct tlsc_anchors *a = ctx;
	br_x509_decoder_context dc;
	const br_x509_pkey *pk;
	br_x509_trust_anchor *ta, *nt;
	struct acc dn;
	uint8_t *k1 = NULL, *k2 = NULL;

	if (a->n == TLSC_ANCHORS_MAX)
		return 0;
	if ((dn.p = malloc(TLSC_DN_MAX)) == NULL)
		return -1;
	dn.len = 0;
	dn.cap = TLSC_DN_MAX;
	dn.over = 0;
	br_x509_decoder_init(&dc, acc_add, &dn);
	br_x509_decoder_push(&dc, der, n);
	pk = br_x509_decoder_get_pkey(&dc);
	if (pk == NULL || br_x509_decoder_last_error(&dc) != 0 || dn.over ||
	    dn.len == 0) {
		free(dn.p);
		return 0;
	}
	nt = realloc(a->ta, (a->n + 1) * sizeof *a->ta);
	if (nt == NULL) {
		free(dn.p);
		return -1;
	}
	a->ta = nt;
	ta = &a->ta[a->n];
	memset(ta, 0, sizeof *ta);
	ta->dn.data = dn.p;
	ta->dn.len = dn.len;
	ta->flags = br_x509_decoder_isCA(&dc) ? BR_X509_TA_CA : 0;
	ta->pkey.key_type = pk->key_type;
	if (pk->key_type == BR_KEYTYPE_RSA) {
		k1 = malloc(pk->key.rsa.nlen);
		k2 = malloc(pk->key.rsa.elen);
		if (k1 == NULL || k2 == NULL)
			goto oom;
		memcpy(k1, pk->key.rsa.n, pk->key.rsa.nlen);
		memcpy(k2, pk->key.rsa.e, pk->key.rsa.elen);
		ta->pkey.key.rsa.n = k1;
		ta->pkey.key.rsa.nlen = pk->key.rsa.nlen;
		ta->pkey.key.rsa.e = k2;
		ta->pkey.key.rsa.elen = pk->key.rsa.elen;
	} else {
		k1 = malloc(pk->key.ec.qlen);
		if (k1 == NULL)
			goto oom;
		memcpy(k1, pk->key.ec.q, pk->key.ec.qlen);
		ta->pkey.key.ec.curve = pk->key.ec.curve;
		ta->pkey.key.ec.q = k1;
		ta->pkey.key.ec.qlen = pk->key.ec.qlen;
	}
	a->n++;
	return 0;
oom:
	free(k1);
	free(k2);
	free(dn.p);
	return -1;
}

int
tlsc_anchors_load(struct tlsc_anchors *a, const char *path, char *err,
    size_t errlen)
{
	uint8_t *file = NULL;
	size_t file_len = 0;
	int n;

	a->ta = NULL;
	a->n = 0;
	if (cert_read_file(path, &file, &file_len, err, errlen) != 0)
		return -1;
	n = tlsc_pem_certs(file, file_len, 0, anchor_add, a);
	free(file);
	if (n < 0 || a->n == 0) {
		tlsc_anchors_free(a);
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "%s: no usable PEM CERTIFICATE",
			    path);
		return -1;
	}
	return 0;
}

void
tlsc_anchors_free(struct tlsc_anchors *a)
{
	size_t i;

	for (i = 0; i < a->n; i++) {
		free(a->ta[i].dn.data);
		if (a->ta[i].pkey.key_type == BR_KEYTYPE_RSA) {
			free(a->ta[i].pkey.key.rsa.n);
			free(a->ta[i].pkey.key.rsa.e);
		} else {
			free(a->ta[i].pkey.key.ec.q);
		}
	}
	free(a->ta);
	a->ta = NULL;
	a->n = 0;
}

/* ------------------------------------------------------------------------- */
/* 2. X.509 check                                                             */
/* ------------------------------------------------------------------------- */

/* The tlsc_x509 vtable: everything is BearSSL's minimal engine; we keep the
 * first certificate (the leaf) and, for an IP host, check its SAN at the
 * end. */
static struct tlsc_x509 *
xc_of(const br_x509_class **ctx)
{
	return (struct tlsc_x509 *)(void *)ctx;
}

static void
xc_start_chain(const br_x509_class **ctx, const char *server_name)
{
	struct tlsc_x509 *x = xc_of(ctx);

	x->cert_no = 0;
	x->leaf_len = 0;
	x->leaf_too_big = 0;
	x->minimal.vtable->start_chain(&x->minimal.vtable, server_name);
}

static void
xc_start_cert(const br_x509_class **ctx, uint32_t length)
{
	struct tlsc_x509 *x = xc_of(ctx);

	if (++x->cert_no == 1 && length > sizeof x->leaf)
		x->leaf_too_big = 1;
	x->minimal.vtable->start_cert(&x->minimal.vtable, length);
}

static void
xc_append(const br_x509_class **ctx, const unsigned char *buf, size_t len)
{
	struct tlsc_x509 *x = xc_of(ctx);

	if (x->cert_no == 1 && !x->leaf_too_big) {
		if (len > sizeof x->leaf - x->leaf_len) {
			x->leaf_too_big = 1;
		} else {
			memcpy(x->leaf + x->leaf_len, buf, len);
			x->leaf_len += len;
		}
	}
	x->minimal.vtable->append(&x->minimal.vtable, buf, len);
}

static void
xc_end_cert(const br_x509_class **ctx)
{
	struct tlsc_x509 *x = xc_of(ctx);

	x->minimal.vtable->end_cert(&x->minimal.vtable);
}

static unsigned
xc_end_chain(const br_x509_class **ctx)
{
	struct tlsc_x509 *x = xc_of(ctx);
	struct cert_store cs;
	unsigned e;

	e = x->minimal.vtable->end_chain(&x->minimal.vtable);
	if (x->pinned) {
		uint8_t h[br_sha256_SIZE];
		br_sha256_context sc;

		if (x->leaf_too_big || x->cert_no == 0)
			return BR_ERR_X509_NOT_TRUSTED;
		br_sha256_init(&sc);
		br_sha256_update(&sc, x->leaf, x->leaf_len);
		br_sha256_out(&sc, h);
		if (memcmp(h, x->pin, sizeof h) != 0)
			return BR_ERR_X509_NOT_TRUSTED;
		br_x509_decoder_init(&x->dec, NULL, NULL);
		br_x509_decoder_push(&x->dec, x->leaf, x->leaf_len);
		if (br_x509_decoder_get_pkey(&x->dec) == NULL)
			return BR_ERR_X509_BAD_SERVER_NAME;
		return 0;
	}
	if (e != 0 || x->ip[0] == '\0')
		return e;
	memset(&cs, 0, sizeof cs);
	cs.chain[0].data = x->leaf;
	cs.chain[0].data_len = x->leaf_len;
	cs.chain_len = 1;
	if (x->leaf_too_big || x->cert_no == 0 ||
	    !cert_matches_host(&cs, x->ip))
		return BR_ERR_X509_BAD_SERVER_NAME;
	return 0;
}

static const br_x509_pkey *
xc_get_pkey(const br_x509_class *const *ctx, unsigned *usages)
{
	const struct tlsc_x509 *x = (const struct tlsc_x509 *)(const void *)ctx;

	if (x->pinned) {
		if (usages != NULL)
			*usages = BR_KEYTYPE_KEYX | BR_KEYTYPE_SIGN;
		return br_x509_decoder_get_pkey((br_x509_decoder_context *)
		    (uintptr_t)&x->dec);
	}
	return x->minimal.vtable->get_pkey(&x->minimal.vtable, usages);
}

static const br_x509_class xc_vtable = {
	sizeof(struct tlsc_x509), xc_start_chain, xc_start_cert, xc_append,
	xc_end_cert, xc_end_chain, xc_get_pkey
};

/* ------------------------------------------------------------------------- */
/* 3. Client                                                                  */
/* ------------------------------------------------------------------------- */

/* The TLS client profile: what the relay's server already links, so little
 * is added to the binary: TLS 1.2, ECDHE with ECDSA or RSA signatures,
 * AES-GCM and ChaCha20-Poly1305 (which every public ACME CA offers, as any
 * current web server does), and BearSSL's minimal X.509 engine with the
 * anchors, RSA and ECDSA, SHA-256 to SHA-512.  br_ssl_client_init_full would
 * add CBC, 3DES and RSA key exchange, which nothing here needs. */
static const uint16_t tls_suites[] = {
	BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	BR_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	BR_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
};

void
tlsc_client_init(br_ssl_client_context *cc, struct tlsc_x509 *x,
    const struct tlsc_anchors *a)
{
	static const br_hash_class *const hashes[] = {
		&br_sha256_vtable, &br_sha384_vtable, &br_sha512_vtable
	};
	br_ssl_engine_context *eng = &cc->eng;
	br_x509_minimal_context *xm = &x->minimal;
	size_t i;

	br_ssl_client_zero(cc);
	br_ssl_engine_set_versions(eng, BR_TLS12, BR_TLS12);
	br_ssl_engine_set_suites(eng, tls_suites,
	    sizeof tls_suites / sizeof tls_suites[0]);
	br_x509_minimal_init(xm, &br_sha256_vtable, a->ta, a->n);
	for (i = 0; i < sizeof hashes / sizeof hashes[0]; i++) {
		br_ssl_engine_set_hash(eng, hashes[i]->desc >>
		    BR_HASHDESC_ID_OFF & BR_HASHDESC_ID_MASK, hashes[i]);
		br_x509_minimal_set_hash(xm, hashes[i]->desc >>
		    BR_HASHDESC_ID_OFF & BR_HASHDESC_ID_MASK, hashes[i]);
	}
	br_x509_minimal_set_rsa(xm, br_rsa_pkcs1_vrfy_get_default());
	br_x509_minimal_set_ecdsa(xm, br_ec_get_default(),
	    br_ecdsa_vrfy_asn1_get_default());
	br_ssl_engine_set_default_rsavrfy(eng);
	br_ssl_engine_set_default_ecdsa(eng);
	br_ssl_engine_set_prf_sha256(eng, &br_tls12_sha256_prf);
	br_ssl_engine_set_prf_sha384(eng, &br_tls12_sha384_prf);
	br_ssl_engine_set_default_aes_gcm(eng);
	br_ssl_engine_set_default_chapol(eng);
	x->vtable = &xc_vtable;
	x->ip[0] = '\0';
	x->cert_no = 0;
	x->leaf_too_big = 0;
	x->leaf_len = 0;
	x->pinned = 0;
	br_ssl_engine_set_x509(eng, &x->vtable);
}

int
tlsc_client_reset(br_ssl_client_context *cc, struct tlsc_x509 *x,
    const char *host)
{
	uint8_t ip[16];
	time_t now = time(NULL);
	int af = 0;

	if (inet_pton(AF_INET, host, ip) == 1)
		af = AF_INET;
	else if (inet_pton(AF_INET6, host, ip) == 1)
		af = AF_INET6;
	/* The address as inet_ntop writes it, which always fits x->ip
	 * (INET6_ADDRSTRLEN), whatever spelling inet_pton took. */
	x->ip[0] = '\0';
	if (af != 0 && inet_ntop(af, ip, x->ip, sizeof x->ip) == NULL)
		return -1;
	/* Validity is checked at the start of each handshake: BearSSL reads
	 * the clock itself only while no time was ever set, so a time set
	 * once would go stale in a context reused for days. */
	br_x509_minimal_set_time(&x->minimal,
	    (uint32_t)(now / 86400 + 719528), (uint32_t)(now % 86400));
	/* SNI and BearSSL's name check for a DNS host; none for an IP
	 * literal (RFC 6066 forbids it in SNI), whose SAN xc_end_chain
	 * checks. */
	if (!br_ssl_client_reset(cc, af != 0 ? NULL : host, 0))
		return -1;
	return 0;
}

void
tlsc_x509_pin(struct tlsc_x509 *x, const uint8_t *sha256)
{
	x->pinned = sha256 != NULL;
	if (sha256 != NULL)
		memcpy(x->pin, sha256, sizeof x->pin);
}
