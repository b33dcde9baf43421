/*
 * test_embed.c -- two relays in one process (issue 9 item 6: no file-level
 * mutable state; everything a relay owns lives in its struct derp_server).
 *
 * Usage: test_embed SCRATCH_DIR   (created if missing; key files and
 * certificates are made there at run time, never committed)
 *
 * Links derp.c built with -DDERP_NO_MAIN.  Each scenario creates relay A,
 * starts its derp_run() in a POSIX thread, then does the same for relay B:
 * both TLS (-certmode manual), -stun off, -http-port -1, -max-clients 16, each
 * with its own loopback port, key file and -certdir.  Then, for each relay:
 *   - two clients (TLS, the relay's SNI) finish the DERP handshake and see that
 *     relay's own server key and certificate, never the other's;
 *   - they exchange packets both ways: 1, 1200, 16384 and 65536 bytes;
 *   - a packet sent on the other relay to one of these clients' keys is not
 *     delivered (the key tables are separate);
 * then the relay destroyed first is stopped, joined and destroyed while the
 * other keeps serving: its old clients still exchange, and a new client (a new
 * connection slot, a fresh TLS context) is served; last the survivor is
 * stopped, joined and destroyed.
 *
 * Scenarios: ip_AB and ip_BA (-hostname 127.0.0.1 for A, ::1 for B when the
 * host has an IPv6 loopback: each relay makes its own self-signed IP
 * certificate), dns_AB and dns_BA (-hostname a.example and b.example with
 * certificates this program makes: with a DNS -hostname the relay, as derper,
 * serves only a ClientHello whose SNI equals it, so a client of A is served
 * with SNI a.example and refused with b.example or none, and the same for B).
 * _AB destroys A first, _BA destroys B first.
 *
 * Each scenario runs in a child process, so that a crash, a sanitizer report or
 * a LeakSanitizer exit status is reported as a FAIL line of that scenario and
 * the others still run.  Output: "ok SCENARIO NAME", "FAIL SCENARIO NAME:
 * DETAIL", "skip SCENARIO NAME: WHY", then "N passed, N failed, N skipped";
 * exit status 0 iff nothing failed.  Every client call has a timeout, a child
 * gets SCENARIO_MS, and alarm() bounds the whole program.  Only loopback
 * addresses are used.
 */
#define _POSIX_C_SOURCE 200809L

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bearssl.h>

#include "client.h"
#include "../cert.h"
#include "../derp.h"
#include "../nacl.h"

/* ---- limits and timeouts ------------------------------------------------- */

#define WATCHDOG_S 120		/* whole program: four scenarios of ~1 s (ASan) */
#define SCENARIO_MS 25000	/* one child; it normally takes under 2 s */
#define CONNECT_MS 3000		/* TCP connect + TLS handshake on loopback */
#define IO_MS 3000		/* one DERP handshake or one relayed packet */
#define QUIET_MS 250		/* a packet that must not arrive: wait this long */
#define MAX_CLIENTS 16		/* -max-clients of each relay */
#define PORT_TRIES 5		/* fresh ports when a bind loses a race */
#define PATH_BYTES 512		/* scratch paths: the scratch dir plus ~40 */
#define ERR_BYTES 256
/* The largest packet: derper's MaxPacketSize, 64 KiB. */
#define MAX_PACKET_BYTES 65536
/* A key file is derper's 109 bytes ({, tab, "PrivateKey", privkey: + 64 hex,
 * }); anything up to 4 KiB is read, more is an error. */
#define KEYFILE_MAX 4096

/* ---- results ------------------------------------------------------------- */

static int n_pass, n_fail, n_skip;
static const char *scen = "";		/* the scenario running (prefix of lines) */
static const char *scratch;
/* In a scenario's child: the pipe to the parent, one byte per result ('p',
 * 'f' or 's') as it happens, 'E' at the end, so the parent counts what a child
 * that crashed had already reported. */
static int report_fd = -1;

static void
report(char what)
{
	if (report_fd >= 0 && write(report_fd, &what, 1) != 1) {
		report_fd = -1;
		printf("FAIL %s report: pipe to the parent: %s\n", scen,
		    strerror(errno));
	}
}

static void
check(const char *name, int cond, const char *fmt, ...)
{
	va_list ap;

	if (cond) {
		printf("ok %s %s\n", scen, name);
		n_pass++;
		report('p');
	} else {
		printf("FAIL %s %s: ", scen, name);
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		printf("\n");
		n_fail++;
		report('f');
	}
	fflush(stdout);
}

/* A check whose detail is NULL on success (the relay()/exchange() style). */
static void
verdict(const char *name, const char *why)
{
	check(name, why == NULL, "%s", why != NULL ? why : "");
}

static void
skip(const char *name, const char *why)
{
	printf("skip %s %s: %s\n", scen, name, why);
	n_skip++;
	report('s');
	fflush(stdout);
}

/* ---- files --------------------------------------------------------------- */

/* snprintf into out[cap]: 0, or -1 when it did not fit. */
static int
fmt_fit(char *out, size_t cap, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, cap, fmt, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int
mkdir_p(const char *path)
{
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

/* The public key of the derper key file at path (its "privkey:" + 64 hex
 * digits).  0 or -1. */
static int
keyfile_public(const char *path, uint8_t pub[32])
{
	char buf[KEYFILE_MAX + 1];
	uint8_t priv[32];
	const char *p;
	size_t len = 0;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	while (len < KEYFILE_MAX &&
	    (n = read(fd, buf + len, KEYFILE_MAX - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			close(fd);
			return -1;
		}
		len += (size_t)n;
	}
	if (close(fd) != 0)
		return -1;
	buf[len] = '\0';
	p = strstr(buf, "privkey:");
	if (p == NULL)
		return -1;
	p += strlen("privkey:");
	if (dc_unhex(p, priv, sizeof priv) != (long)sizeof priv)
		return -1;
	nacl_x25519_base(pub, priv);
	memset(priv, 0, sizeof priv);
	return 0;
}

/* ---- a self-signed certificate for a DNS name ---------------------------- */

/* <dir>/<name>.crt and .key, as an operator would put in -certdir for
 * -certmode manual: cert.c's generator with a dNSName SAN.  0 or -1. */
static int
make_dns_cert(const char *dir, const char *name)
{
	char crt[PATH_BYTES], key[PATH_BYTES], err[256];

	if (fmt_fit(crt, sizeof crt, "%s/%s.crt", dir, name) != 0 ||
	    fmt_fit(key, sizeof key, "%s/%s.key", dir, name) != 0)
		return -1;
	if (cert_generate_dns(crt, key, name, time(NULL), err, sizeof err) != 0) {
		printf("cert_generate_dns %s: %s\n", name, err);
		return -1;
	}
	return 0;
}

/* ---- relays -------------------------------------------------------------- */

struct relay {
	const char *name;		/* "A" or "B" */
	const char *host;		/* listen address and what clients dial */
	const char *hostname;		/* -hostname */
	const char *sni;		/* what its clients send: NULL for an IP */
	const char *wrong_sni;		/* the other relay's name (DNS only) */
	char dir[PATH_BYTES];		/* -certdir; the key file is beside it */
	char keyfile[PATH_BYTES];
	char addr[80];			/* -a */
	int port;
	struct derp_config cfg;
	struct derp_server *srv;
	pthread_t thr;
	int started;			/* thread running, not joined */
	int run_rc;			/* derp_run's result (after the join) */
	uint8_t pub[32];		/* from its key file */
	uint8_t leaf[32];		/* SHA-256 of its certificate */
	int have_pub, have_leaf;
	struct dclient *c[2];		/* its two clients */
};

static void *
relay_main(void *arg)
{
	struct relay *r = arg;

	r->run_rc = derp_run(r->srv);
	return NULL;
}

/* A port that was free a moment ago on host (bind to 0, read it, close). */
static int
free_port(const char *host)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	socklen_t sl;
	int fd, port = -1;

	memset(&ss, 0, sizeof ss);
	if (strchr(host, ':') != NULL) {
		s6->sin6_family = AF_INET6;
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return -1;
		sl = sizeof *s6;
	} else {
		s4->sin_family = AF_INET;
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			return -1;
		sl = sizeof *s4;
	}
	fd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&ss, sl) == 0 &&
	    getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		port = ntohs(ss.ss_family == AF_INET6 ? s6->sin6_port :
		    s4->sin_port);
	close(fd);
	return port;
}

static int
have_ipv6_loopback(void)
{
	return free_port("::1") > 0;
}

/* The file name derper gives a -hostname in -certdir: characters outside
 * [a-zA-Z0-9.-] dropped ("::1" -> "1"). */
static void
cert_basename(char *out, size_t cap, const char *hostname)
{
	size_t n = 0;

	for (; *hostname != '\0' && n + 1 < cap; hostname++) {
		char ch = *hostname;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.')
			out[n++] = ch;
	}
	out[n] = '\0';
}

/* Create r (fresh ports when the bind loses a race), start its thread, read
 * its key and certificate.  0 or -1, reported as NAME_create, NAME_thread,
 * NAME_keyfile and NAME_certificate. */
static int
relay_start(struct relay *r)
{
	char err[ERR_BYTES], what[32], base[128], crt[PATH_BYTES],
	    key[PATH_BYTES];
	struct cert_store cs;
	int t, e;

	err[0] = '\0';
	for (t = 0; t < PORT_TRIES && r->srv == NULL; t++) {
		r->port = free_port(r->host);
		if (r->port <= 0) {
			snprintf(err, sizeof err, "no free port on %s", r->host);
			continue;
		}
		snprintf(r->addr, sizeof r->addr, strchr(r->host, ':') ?
		    "[%s]:%d" : "%s:%d", r->host, r->port);
		derp_config_defaults(&r->cfg);
		r->cfg.addr = r->addr;
		r->cfg.http_port = -1;
		r->cfg.stun = 0;
		r->cfg.config_path = r->keyfile;
		r->cfg.hostname = r->hostname;
		r->cfg.certmode = "manual";
		r->cfg.certdir = r->dir;
		r->cfg.max_clients = MAX_CLIENTS;
		r->srv = derp_create(&r->cfg, err, sizeof err);
		if (r->srv == NULL && strstr(err, strerror(EADDRINUSE)) == NULL)
			break;		/* fresh ports would not help */
	}
	snprintf(what, sizeof what, "%s_create", r->name);
	check(what, r->srv != NULL, "derp_create: %s", err);
	if (r->srv == NULL)
		return -1;
	e = pthread_create(&r->thr, NULL, relay_main, r);
	r->started = e == 0;
	snprintf(what, sizeof what, "%s_thread", r->name);
	check(what, e == 0, "pthread_create: %s", strerror(e));
	if (e != 0)
		return -1;

	r->have_pub = keyfile_public(r->keyfile, r->pub) == 0;
	snprintf(what, sizeof what, "%s_keyfile", r->name);
	check(what, r->have_pub, "no privkey in %s", r->keyfile);
	cert_basename(base, sizeof base, r->hostname);
	memset(&cs, 0, sizeof cs);
	snprintf(err, sizeof err, "certificate path too long");
	if (fmt_fit(crt, sizeof crt, "%s/%s.crt", r->dir, base) == 0 &&
	    fmt_fit(key, sizeof key, "%s/%s.key", r->dir, base) == 0 &&
	    cert_load_files(&cs, crt, key, err, sizeof err) == 0) {
		memcpy(r->leaf, cs.leaf_sha256, sizeof r->leaf);
		r->have_leaf = 1;
	}
	cert_free(&cs);
	snprintf(what, sizeof what, "%s_certificate", r->name);
	check(what, r->have_leaf, "%s", err);
	return 0;
}

/* derp_stop, join, check derp_run returned 0.  The join is bounded by the
 * scenario's watchdog. */
static void
relay_stop(struct relay *r)
{
	char what[32];
	int e;

	if (!r->started)
		return;
	derp_stop(r->srv);
	e = pthread_join(r->thr, NULL);
	r->started = 0;
	snprintf(what, sizeof what, "%s_run_returns_0", r->name);
	check(what, e == 0 && r->run_rc == 0, "%s, derp_run returned %d",
	    e == 0 ? "joined" : strerror(e), r->run_rc);
}

static void
relay_destroy(struct relay *r)
{
	relay_stop(r);
	derp_destroy(r->srv);
	r->srv = NULL;
}

/* ---- clients ------------------------------------------------------------- */

static uint8_t pbuf[MAX_PACKET_BYTES], qbuf[MAX_PACKET_BYTES];

/* A TLS connection to r with SNI sni, without the DERP handshake; NULL if
 * TCP or TLS failed. */
static struct dclient *
tls_to(const struct relay *r, const char *sni)
{
	struct dclient *c = dc_new();

	if (c == NULL)
		return NULL;
	if (dc_connect(c, r->host, r->port, 1, sni, CONNECT_MS) < 0) {
		dc_free(c);
		return NULL;
	}
	return c;
}

/*
 * A DERP client of r with a fresh key: TLS with r's SNI, the handshake, and
 * the server key and certificate it saw must be r's own.  NULL on failure
 * (reported as NAME).
 */
static struct dclient *
client_of(const struct relay *r, const char *name)
{
	struct dclient *c = dc_new();
	const char *why = NULL;

	if (c == NULL)
		why = "out of memory";
	else {
		dc_genkey(c);
		if (dc_connect(c, r->host, r->port, 1, r->sni, CONNECT_MS) < 0)
			why = "TCP or TLS failed";
		else if (dc_handshake(c, 0, NULL, IO_MS) < 0)
			why = "DERP handshake failed";
		else if (!r->have_pub || memcmp(c->server_pk, r->pub, 32) != 0)
			why = "the server key is not this relay's own";
		else if (!r->have_leaf || c->x509.ncerts != 1 ||
		    memcmp(c->x509.leaf_sha256, r->leaf, 32) != 0)
			why = "the certificate is not this relay's own";
	}
	verdict(name, why);
	if (why != NULL) {
		dc_free(c);
		return NULL;
	}
	return c;
}

/* One packet of len random bytes from a to b: NULL, or why not. */
static const char *
relay_packet(struct dclient *a, struct dclient *b, size_t len)
{
	static char why[160];
	uint8_t src[32];
	size_t n;
	int r;

	if (a == NULL || b == NULL)
		return "no client";
	dc_random(pbuf, len);
	if (dc_send_packet(a, b->pk, pbuf, len) < 0)
		return "send failed";
	r = dc_recv_packet(b, src, qbuf, sizeof qbuf, &n, IO_MS);
	if (r != 1) {
		snprintf(why, sizeof why, "no packet of %zu bytes arrived (%s)",
		    len, r == -2 ? "timeout" : r == 0 ? "closed" : "error");
		return why;
	}
	if (memcmp(src, a->pk, 32) != 0)
		return "wrong source key";
	if (n != len || memcmp(qbuf, pbuf, len) != 0) {
		snprintf(why, sizeof why, "sent %zu bytes, received %zu%s", len,
		    n, n == len ? " that differ" : "");
		return why;
	}
	return NULL;
}

/* r's two clients exchange every size both ways. */
static void
exchange_all(struct relay *r)
{
	static const size_t sizes[] = { 1, 1200, 16384, MAX_PACKET_BYTES };
	char what[48];
	size_t i;

	for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		snprintf(what, sizeof what, "%s_exchange_%zu", r->name, sizes[i]);
		if (r->c[0] == NULL || r->c[1] == NULL) {
			check(what, 0, "no client pair");
			continue;
		}
		verdict(what, relay_packet(r->c[0], r->c[1], sizes[i]));
		snprintf(what, sizeof what, "%s_exchange_%zu_back", r->name,
		    sizes[i]);
		verdict(what, relay_packet(r->c[1], r->c[0], sizes[i]));
	}
}

/*
 * Separate key tables: B's first client sends to the key of A's first client
 * (registered only on A) and A's first client to the key of B's second (only
 * on B).  Neither may arrive within QUIET_MS of being sent (both wait at
 * once), and then each receiver still gets a marker packet from its
 * neighbour, so silence is not a dead connection.
 */
static void
isolation(struct relay *rel)
{
	struct dclient *from[2], *to[2], *peer[2];
	char what[2][48];
	uint8_t src[32];
	int64_t sent;
	size_t n;
	int i, r, ok[2];

	from[0] = rel[1].c[0];
	to[0] = rel[0].c[0];
	peer[0] = rel[0].c[1];
	from[1] = rel[0].c[0];
	to[1] = rel[1].c[1];
	peer[1] = rel[1].c[0];
	snprintf(what[0], sizeof what[0], "B_cannot_reach_A_keys");
	snprintf(what[1], sizeof what[1], "A_cannot_reach_B_keys");
	sent = dc_now_ms();
	for (i = 0; i < 2; i++) {
		ok[i] = from[i] != NULL && to[i] != NULL && peer[i] != NULL;
		if (!ok[i]) {
			check(what[i], 0, "no clients");
			continue;
		}
		dc_random(pbuf, 100);
		if (dc_send_packet(from[i], to[i]->pk, pbuf, 100) < 0) {
			check(what[i], 0, "send failed");
			ok[i] = 0;
		}
	}
	for (i = 0; i < 2; i++) {
		if (!ok[i])
			continue;
		r = dc_recv_packet(to[i], src, qbuf, sizeof qbuf, &n,
		    (int)(sent + QUIET_MS - dc_now_ms()) > 1 ?
		    (int)(sent + QUIET_MS - dc_now_ms()) : 1);
		if (r == 1)
			check(what[i], 0, "the packet was delivered by the other "
			    "relay");
		else
			check(what[i], r == -2, "receiver's connection %s",
			    r == 0 ? "closed" : "failed");
		snprintf(what[i], sizeof what[i], "%s_still_serves_after_stray",
		    i == 0 ? "A" : "B");
		verdict(what[i], relay_packet(peer[i], to[i], 100));
	}
}

/* DNS -hostname: r serves its own SNI only. */
static void
sni_policy(const struct relay *r, const char *when)
{
	struct { const char *suffix, *sni; int want; } t[3];
	struct dclient *c;
	char what[64];
	size_t i;

	t[0].suffix = "own_served";
	t[0].sni = r->sni;
	t[0].want = 1;
	t[1].suffix = "other_refused";
	t[1].sni = r->wrong_sni;
	t[1].want = 0;
	t[2].suffix = "none_refused";
	t[2].sni = NULL;
	t[2].want = 0;
	for (i = 0; i < 3; i++) {
		snprintf(what, sizeof what, "%s_sni_%s%s", r->name, t[i].suffix,
		    when);
		c = tls_to(r, t[i].sni);
		check(what, (c != NULL) == t[i].want, "SNI %s: TLS %s",
		    t[i].sni != NULL ? t[i].sni : "(none)",
		    c != NULL ? "served" : "refused");
		dc_free(c);
	}
}

/* ---- scenarios ----------------------------------------------------------- */

static void
run_scenario(int dns, int a_first)
{
	struct relay rel[2], *first, *second;
	struct dclient *fresh;
	char dir[PATH_BYTES], what[64];
	int i, v6 = !dns && have_ipv6_loopback();

	memset(rel, 0, sizeof rel);
	rel[0].name = "A";
	rel[1].name = "B";
	rel[0].host = "127.0.0.1";
	rel[1].host = v6 ? "::1" : "127.0.0.1";
	if (dns) {
		rel[0].hostname = rel[0].sni = rel[1].wrong_sni = "a.example";
		rel[1].hostname = rel[1].sni = rel[0].wrong_sni = "b.example";
	} else {
		rel[0].hostname = rel[0].host;
		rel[1].hostname = rel[1].host;
		if (!v6)
			skip("B_on_ipv6", "no IPv6 loopback: B uses 127.0.0.1");
	}
	if (fmt_fit(dir, sizeof dir, "%s/%s", scratch, scen) != 0 ||
	    mkdir_p(dir) != 0) {
		check("scratch_dir", 0, "mkdir %s: %s", dir, strerror(errno));
		return;
	}
	for (i = 0; i < 2; i++) {
		struct relay *r = &rel[i];

		if (fmt_fit(r->dir, sizeof r->dir, "%s/%s", dir, r->name) != 0 ||
		    fmt_fit(r->keyfile, sizeof r->keyfile, "%s/%s/derper.key",
		    dir, r->name) != 0) {
			check("scratch_dir", 0, "%s: path too long", dir);
			return;
		}
		if (mkdir_p(r->dir) != 0) {
			check("scratch_dir", 0, "mkdir %s: %s", r->dir,
			    strerror(errno));
			return;
		}
		if (dns) {
			snprintf(what, sizeof what, "%s_make_dns_cert", r->name);
			check(what, make_dns_cert(r->dir, r->hostname) == 0,
			    "could not write %s/%s.crt", r->dir, r->hostname);
		}
	}
	/* A runs while B is created: B's start-up must leave A's state alone. */
	if (relay_start(&rel[0]) != 0 || relay_start(&rel[1]) != 0)
		goto out;
	check("distinct_server_keys", !rel[0].have_pub || !rel[1].have_pub ||
	    memcmp(rel[0].pub, rel[1].pub, 32) != 0, "A and B have one key");
	check("distinct_certificates", !rel[0].have_leaf ||
	    !rel[1].have_leaf || memcmp(rel[0].leaf, rel[1].leaf, 32) != 0,
	    "A and B serve one certificate");

	for (i = 0; i < 2; i++) {
		struct relay *r = &rel[i];

		snprintf(what, sizeof what, "%s_client1_own_key_and_cert",
		    r->name);
		r->c[0] = client_of(r, what);
		snprintf(what, sizeof what, "%s_client2_own_key_and_cert",
		    r->name);
		r->c[1] = client_of(r, what);
	}
	if (dns)
		for (i = 0; i < 2; i++)
			sni_policy(&rel[i], "");
	for (i = 0; i < 2; i++)
		exchange_all(&rel[i]);
	isolation(rel);

	/* Destroy one while the other keeps serving. */
	first = a_first ? &rel[0] : &rel[1];
	second = a_first ? &rel[1] : &rel[0];
	relay_destroy(first);
	for (i = 0; i < 2; i++) {
		dc_free(first->c[i]);
		first->c[i] = NULL;
	}
	snprintf(what, sizeof what, "%s_pair_after_%s_destroyed", second->name,
	    first->name);
	verdict(what, relay_packet(second->c[0], second->c[1], 1200));
	snprintf(what, sizeof what, "%s_new_client_after_%s_destroyed",
	    second->name, first->name);
	fresh = client_of(second, what);
	snprintf(what, sizeof what, "%s_new_client_exchange_%zu",
	    second->name, (size_t)MAX_PACKET_BYTES);
	verdict(what, relay_packet(fresh, second->c[0], MAX_PACKET_BYTES));
	dc_free(fresh);
	if (dns) {
		snprintf(what, sizeof what, "_after_%s_destroyed", first->name);
		sni_policy(second, what);
	}
out:
	for (i = 0; i < 2; i++) {
		relay_destroy(&rel[i]);
		dc_free(rel[i].c[0]);
		dc_free(rel[i].c[1]);
	}
}

/*
 * Run one scenario in a child.  Its results come through a pipe as they
 * happen and an 'E' just before exit(): a crash or sanitizer report shows as
 * a child FAIL after the results it gave, and so does a LeakSanitizer report
 * (it runs at exit, after the 'E', and sets the exit status).
 */
static pid_t child_pid = -1;

static void
fork_scenario(const char *name, int dns, int a_first)
{
	int fds[2], status = 0, ended = 0;
	char buf[256];
	int64_t deadline;
	ssize_t n, i;
	pid_t r;

	scen = name;
	fflush(stdout);
	if (pipe(fds) != 0) {
		check("fork", 0, "pipe: %s", strerror(errno));
		return;
	}
	child_pid = fork();
	if (child_pid < 0) {
		check("fork", 0, "fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return;
	}
	if (child_pid == 0) {
		close(fds[0]);
		report_fd = fds[1];
		/* Killed by SIGALRM when stuck: the parent says "timed out". */
		if (signal(SIGALRM, SIG_DFL) == SIG_ERR)
			_exit(3);
		alarm((SCENARIO_MS + 999) / 1000);
		run_scenario(dns, a_first);
		report('E');
		fflush(stdout);
		exit(0);	/* exit, not _exit: LeakSanitizer runs here */
	}
	close(fds[1]);
	/* The child writes a few hundred bytes at most, far below a pipe's
	 * capacity, so it never blocks on the pipe: read after it exits. */
	deadline = dc_now_ms() + SCENARIO_MS + 2000;
	while ((r = waitpid(child_pid, &status, WNOHANG)) == 0 &&
	    dc_now_ms() < deadline)
		dc_sleep_ms(10);
	if (r == 0) {
		kill(child_pid, SIGKILL);
		r = waitpid(child_pid, &status, 0);
	}
	child_pid = -1;
	while ((n = read(fds[0], buf, sizeof buf)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		for (i = 0; i < n; i++) {
			if (buf[i] == 'p')
				n_pass++;
			else if (buf[i] == 'f')
				n_fail++;
			else if (buf[i] == 's')
				n_skip++;
			else if (buf[i] == 'E')
				ended = 1;
		}
	}
	close(fds[0]);
	if (r < 0)
		check("child", 0, "waitpid: %s", strerror(errno));
	else if (WIFSIGNALED(status))
		check("child", 0, "killed by signal %d%s %s", WTERMSIG(status),
		    WTERMSIG(status) == SIGALRM || WTERMSIG(status) == SIGKILL ?
		    " (timed out)" : "", ended ? "after its checks" :
		    "before finishing its checks");
	else
		check("child", ended && WEXITSTATUS(status) == 0,
		    "exit status %d %s", WEXITSTATUS(status), ended ?
		    "after its checks (a LeakSanitizer report on stderr?)" :
		    "before finishing its checks (a crash or sanitizer report "
		    "on stderr?)");
}

static void
on_alarm(int sig)
{
	static const char msg[] = "FAIL watchdog: the whole run took too long\n";
	ssize_t n;

	(void)sig;
	if (child_pid > 0)
		kill(child_pid, SIGKILL);
	n = write(STDOUT_FILENO, msg, sizeof msg - 1);
	_exit(n < 0 ? 3 : 2);
}

int
main(int argc, char **argv)
{
	struct sigaction sa;
	int64_t t0 = dc_now_ms();

	if (argc != 2) {
		fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
		return 2;
	}
	scratch = argv[1];
	if (mkdir_p(scratch) != 0) {
		fprintf(stderr, "mkdir %s: %s\n", scratch, strerror(errno));
		return 2;
	}
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	/* An embedder's job: the relay writes to sockets a peer may have
	 * closed, and derp.c ignores SIGPIPE only in its own main(). */
	if (sigemptyset(&sa.sa_mask) != 0 || sigaction(SIGPIPE, &sa, NULL) != 0) {
		perror("sigaction SIGPIPE");
		return 2;
	}
	sa.sa_handler = on_alarm;
	if (sigaction(SIGALRM, &sa, NULL) != 0) {
		perror("sigaction SIGALRM");
		return 2;
	}
	alarm(WATCHDOG_S);

	fork_scenario("ip_AB", 0, 1);
	fork_scenario("ip_BA", 0, 0);
	fork_scenario("dns_AB", 1, 1);
	fork_scenario("dns_BA", 1, 0);

	printf("# %lld ms\n", (long long)(dc_now_ms() - t0));
	printf("%d passed, %d failed, %d skipped\n", n_pass, n_fail, n_skip);
	return n_fail == 0 ? 0 : 1;
}
