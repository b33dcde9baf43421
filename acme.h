/*
 * acme.h -- an ACME (RFC 8555) client that obtains one certificate over
 * HTTP-01, for the relay's -certmode letsencrypt and gcp and -acme-ip-certs.
 *
 * It runs in a short-lived child process the relay forks: it blocks (every
 * connect, read and write bounded by io_timeout_ms, the whole exchange by
 * total_timeout_ms), allocates with malloc, and answers the CA's HTTP-01
 * challenge through the challenge callback, which the parent serves on its
 * port-80 listener.  Nothing outside acme.c calls it except through this
 * header, so a build can leave it out.
 */
#ifndef ACME_H
#define ACME_H

#include <stddef.h>

struct acme_config {
	const char *directory_url;	/* https only, e.g. https://acme-v02.api.letsencrypt.org/directory */
	const char *ca_file;		/* PEM roots the CA's TLS certificate must chain to (always verified) */
	const char *account_key_path;	/* PEM "EC PRIVATE KEY" P-256: created (0600, parent
					   directories 0700) if missing, reused if present */
	const char *cert_path;		/* where the chain goes */
	const char *key_path;		/* where the new certificate's key goes; NULL: cert_path
					   holds the key ("EC PRIVATE KEY") first, then the chain
					   (golang autocert's cache format) */
	const char *identifier;		/* DNS name, or IP literal (IPv4 or IPv6, no brackets) */
	int identifier_is_ip;		/* RFC 8738 {"type":"ip"}; must agree with identifier */
	const char *profile;		/* e.g. "shortlived": sent in newOrder only when the
					   directory's meta.profiles lists it; NULL for none */
	const char *email;		/* account contact "mailto:..." when non-NULL and non-empty */
	const char *eab_kid;		/* External Account Binding (RFC 8555 7.3.4): */
	const char *eab_key;		/*   both or neither; the key base64url (padded or not;
					   standard base64 accepted too) */
	/* Publish (keyauth non-NULL) or withdraw (keyauth NULL) an HTTP-01 answer:
	 * GET /.well-known/acme-challenge/<token> must return keyauth.  token is
	 * [A-Za-z0-9_-] only.  Return 0, or -1 to abort (publish only; the return
	 * of a withdrawal is ignored).  Every publish is followed by a withdrawal. */
	int (*challenge)(void *ctx, const char *token, const char *keyauth);
	void *ctx;
	/* One line per event, no newline, e.g. "acme: new order https://... for
	 * derp.example.com"; for every CA error "acme: CA error <type>: <detail>"
	 * (type and detail from the problem document).  May be NULL. */
	void (*log)(void *ctx, const char *line);
	int io_timeout_ms;		/* each connect, read and write; 0 = 30000 */
	int total_timeout_ms;		/* the whole exchange; 0 = 600000 */
};

/* Obtain a certificate for cfg->identifier.  0 on success: the files are written
 * atomically (a temporary file in the same directory, fsync, rename; mode 0600,
 * missing directories 0700), the key file before the chain when they are
 * separate.  -1 with a one-line reason in err, e.g. "newOrder: CA error
 * urn:ietf:params:acme:error:rateLimited: too many certificates ...".  The
 * chain is checked before anything is written: one to CERT_CHAIN_MAX PEM
 * certificates, the leaf's public key is the new key, the leaf is valid for
 * the identifier; so on -1 neither file was touched, except when writing the
 * chain itself failed (disk full) after the new key file was renamed into
 * place.  A partial file is never left at either path.  The account key is
 * created before the first request, and kept whatever happens next. */
int acme_obtain(const struct acme_config *cfg, char *err, size_t errlen);

#endif
