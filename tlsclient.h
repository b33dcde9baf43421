/*
 * tlsclient.h -- the outbound TLS client pieces shared by acme.c (the ACME
 * client, in a forked child, blocking) and derp.c (the HTTPS admission
 * webhook, non-blocking on the relay's loop): trust anchors from a PEM
 * bundle, BearSSL's client profile, an X.509 checker that also checks an IP
 * literal host against the leaf's iPAddress SANs (URLs: verify.h's
 * vurl_parse).  No I/O here: each caller drives the engine (br_sslio_* or
 * br_ssl_engine_*) on its own socket.  Only tlsc_anchors_load (start-up)
 * and tlsc_pem_certs (a 16 KiB buffer for the call) allocate; the rest
 * works in the caller's memory, of fixed size.
 *
 * Built whenever ACME=1 or HOOKTLS=1 (Makefile).
 */
#ifndef TLSCLIENT_H
#define TLSCLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <bearssl.h>

/* An IP literal host as inet_ntop writes it, NUL included: INET6_ADDRSTRLEN
 * (six groups and a dotted quad: 45, and the NUL). */
#define TLSC_IP_MAX		46
/* The server's leaf, kept during a handshake for the IP SAN check: web
 * server certificates are 1 to 3 KiB; 16 KiB is BearSSL's own bound for a
 * whole chain.  This makes struct tlsc_x509 large: 19,624 bytes on x86-64
 * (16 KiB of leaf, 3 KiB of BearSSL's minimal engine), so a caller holding
 * several counts them (derp.c, up to 16 webhook connections: 307 KiB). */
#define TLSC_LEAF_MAX		16384
/* One PEM certificate decoded (a chain's or a bundle's): the same 16 KiB. */
#define TLSC_CERT_DER_MAX	16384
/* Trust anchors of one bundle: Debian's has about 150 roots.  A
 * distinguished name is under 1 KiB in practice. */
#define TLSC_ANCHORS_MAX	1024
#define TLSC_DN_MAX		4096

/* Trust anchors, malloc'd by tlsc_anchors_load (each DN and key too). */
struct tlsc_anchors {
	br_x509_trust_anchor *ta;
	size_t n;
};

/* Load every certificate of the PEM bundle at path (at most 1 MiB, as
 * cert_read_file reads) that BearSSL can decode as a trust anchor (subject
 * DN, public key, CA flag from basicConstraints), up to TLSC_ANCHORS_MAX;
 * the others are skipped, as a bundle may hold roots of algorithms BearSSL
 * lacks.  Blocks other than CERTIFICATE are skipped.  *a need not be
 * initialised.  0, or -1 with a one-line err ("open PATH: ...", "PATH: no
 * usable PEM CERTIFICATE", the latter also for a PEM error anywhere in the
 * file or no memory) and *a empty.  Allocates: start-up only. */
int tlsc_anchors_load(struct tlsc_anchors *a, const char *path, char *err,
    size_t errlen);
/* Free what tlsc_anchors_load allocated; *a is left empty (harmless on an
 * empty or zeroed one). */
void tlsc_anchors_free(struct tlsc_anchors *a);

/* The CERTIFICATE blocks of a PEM text, each handed to cb as DER (a buffer
 * valid only during the call).  Text outside blocks is skipped (RFC 7468
 * explanatory text).  With strict, any other block is an error (RFC 8555
 * 9.1: a chain holds certificates only); without, other blocks are skipped
 * (a CA bundle).  A block that does not decode, is empty or over
 * TLSC_CERT_DER_MAX, or a text that ends inside a block, is an error.  The
 * number of certificates, or -1 (also cb's -1, and no memory). */
int tlsc_pem_certs(const uint8_t *pem, size_t len, int strict,
    int (*cb)(void *ctx, const uint8_t *der, size_t n), void *ctx);

/*
 * The X.509 checker: BearSSL's minimal engine (chain to the anchors,
 * validity at the time of tlsc_client_reset, server name for a DNS host),
 * wrapped to keep the leaf so that an IP literal host is checked against
 * its iPAddress SANs (cert.c's cert_matches_host), which the minimal engine
 * does not look at.  vtable first: BearSSL calls it with a pointer to it.
 * Set up by tlsc_client_init; the fields are the module's.  Size: see
 * TLSC_LEAF_MAX.
 */
struct tlsc_x509 {
	const br_x509_class *vtable;
	br_x509_minimal_context minimal;
	char ip[TLSC_IP_MAX];		/* IP literal host; "" for a DNS name */
	int cert_no;			/* certificates begun in this chain */
	int leaf_too_big;
	size_t leaf_len;
	uint8_t leaf[TLSC_LEAF_MAX];
	/* tlsc_x509_pin: the leaf's SHA-256 is all that is checked */
	int pinned;
	uint8_t pin[32];
	br_x509_decoder_context dec;	/* the pinned leaf's key */
};

/* Configure a client context once (it is zeroed here first): TLS 1.2 only;
 * ECDHE with ECDSA or RSA signatures, AES-GCM and ChaCha20-Poly1305; SHA-256
 * to SHA-512; the X.509 checker x bound to the anchors.  a->ta is used in
 * place: a must stay loaded, unmoved, as long as cc is used.  No buffer is
 * set: see tlsc_client_reset. */
void tlsc_client_init(br_ssl_client_context *cc, struct tlsc_x509 *x,
    const struct tlsc_anchors *a);

/* Start a new handshake on cc (set up by tlsc_client_init with x) to host:
 * a DNS name gets SNI and BearSSL's name check; an IPv4 or IPv6 literal as
 * inet_pton reads it (no brackets, no zone) gets no SNI (RFC 6066 forbids
 * it) and the leaf must carry that address as an iPAddress SAN.  host is
 * copied: it need not outlive the call.  The certificate's validity is
 * checked at the time of this call.  No session resumption.
 *
 * The I/O buffers are the caller's and must be set BEFORE the first reset
 * (br_ssl_engine_set_buffer or br_ssl_engine_set_buffers_bidi: BearSSL
 * requires a reset after setting them, and this reset refuses an engine
 * without them); they are kept from one reset to the next, so a connection
 * slot sets them once.  The ClientHello is then ready in the engine's
 * output (BR_SSL_SENDREC).  0, or -1 when BearSSL refused
 * (br_ssl_client_reset returned 0: no buffer, a DNS name over 255 bytes, no
 * OS randomness; br_ssl_engine_last_error says which).
 */
int tlsc_client_reset(br_ssl_client_context *cc, struct tlsc_x509 *x,
    const char *host);

/* Trust exactly the server whose leaf certificate's DER has this SHA-256
 * (Tailscale's "sha256-raw:" CertName): no chain, name, address or
 * validity check, as Tailscale's clients do for such a pin.  NULL goes back
 * to the anchors.  Kept across tlsc_client_reset. */
void tlsc_x509_pin(struct tlsc_x509 *x, const uint8_t *sha256);

#endif
