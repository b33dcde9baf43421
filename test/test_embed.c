/*
 * test_embed.c -- two relays in one process (issue 9 item 6: no file-level
 * mutable state; everything a relay owns lives in its struct derp_server).
 *
 * Usage: test_embed SCRATCH_DIR [EMBED_POLL]   (the directory is created if
 * missing; key files and certificates are made there at run time, never
 * committed)
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
 * Scenario own_loop: contrib/embed_poll (EMBED_POLL, by default embed_poll
 * beside this program), a daemon that drives the relay from its own poll()
 * loop with derp_pollfds / derp_next_timeout_ms / derp_step, runs as a child
 * process on a free loopback port (plain HTTP).  It must say "serving on"
 * and write its key file; two clients, then twelve more (more descriptors
 * than the example's first array with the poll(2) back-end), exchange
 * packets of 1, 1200 and 65536 bytes both ways and get Pongs; the daemon's
 * own work (echoing its stdin) goes on during a burst of packets; SIGTERM
 * delivers what was queued, prints "stopped", exits 0 within EXIT_MS and
 * every client sees a clean close; restarted on the same key file it serves
 * the same key, and a "quit" line on its stdin stops it the same way.
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
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>	/* PR_SET_PDEATHSIG: own_loop's daemon dies with us */
#endif

#include <bearssl.h>

#include "client.h"
#include "../cert.h"
#include "../derp.h"
#include "../nacl.h"

/* ---- limits and timeouts ------------------------------------------------- */

#define WATCHDOG_S 150		/* whole program: five scenarios of ~1 s (ASan) */
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
/* own_loop: the daemon's start-up (derp_create reserves ~5 MB for 64
 * clients, slower under ASan), its stop (derp_stop drains for at most 1 s;
 * a daemon should be gone well within 3 s), its stdout lines (under 100
 * bytes, a few of them), the extra clients (more than embed_poll's first
 * array of 8 descriptors), and the bursts (16 x 64 KiB each: half the 32
 * packets of a client's queue). */
#define START_MS 10000
#define EXIT_MS 3000
#define LINE_BUF_BYTES 1024
#define MORE_CLIENTS 12
#define BURST_PACKETS 16
#define QUEUED_PACKETS 16
#define SLOW_RCVBUF 4096	/* a receiver that leaves packets in the relay */
/* DERP frame types (derp-protocol.md). */
#define FT_KEEP_ALIVE 0x06
#define FT_PING 0x12
#define FT_PONG 0x13
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

/* ---- own_loop: contrib/embed_poll, the relay in a daemon's poll() loop --- */

static char embed_poll_path[PATH_BYTES];
/* The daemon, for the scenario's SIGALRM handler: it must not outlive us. */
static volatile pid_t daemon_pid = -1;

struct daemon {
	pid_t pid;			/* -1: not running */
	int in, out;			/* its stdin (we write), stdout (we read) */
	char buf[LINE_BUF_BYTES];	/* stdout read, not yet taken as lines */
	size_t len;
	char addr[64];			/* 127.0.0.1:PORT */
	int port;
};

static void
on_scenario_alarm(int sig)
{
	struct sigaction sa;

	if (daemon_pid > 0)
		kill(daemon_pid, SIGKILL);
	/* Die of SIGALRM, which the parent reports as "timed out". */
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	sigaction(sig, &sa, NULL);
	raise(sig);
}

/* Kill d if it still runs, reap it, close its pipes. */
static void
daemon_reap(struct daemon *d)
{
	if (d->pid > 0) {
		kill(d->pid, SIGKILL);
		while (waitpid(d->pid, NULL, 0) < 0 && errno == EINTR)
			continue;
	}
	d->pid = daemon_pid = -1;
	if (d->in >= 0)
		close(d->in);
	if (d->out >= 0)
		close(d->out);
	d->in = d->out = -1;
	d->len = 0;
}

/* The next line of d's stdout starting with prefix, into line[cap] without
 * its newline (other lines are skipped): 1, 0 at EOF, -1 error, -2 timeout. */
static int
daemon_line(struct daemon *d, const char *prefix, char *line, size_t cap,
    int timeout_ms)
{
	int64_t deadline = dc_now_ms() + timeout_ms;
	struct pollfd p;
	char *nl;
	size_t l;
	ssize_t n;
	int r, match, left;

	for (;;) {
		while ((nl = memchr(d->buf, '\n', d->len)) != NULL) {
			l = (size_t)(nl - d->buf);
			*nl = '\0';
			match = strncmp(d->buf, prefix, strlen(prefix)) == 0;
			if (match && cap > 0) {
				memcpy(line, d->buf, l < cap ? l : cap - 1);
				line[l < cap ? l : cap - 1] = '\0';
			}
			memmove(d->buf, nl + 1, d->len - l - 1);
			d->len -= l + 1;
			if (match)
				return 1;
		}
		if (d->len == sizeof d->buf)
			d->len = 0;		/* an overlong line: dropped */
		left = (int)(deadline - dc_now_ms());
		if (left <= 0)
			return -2;
		p.fd = d->out;
		p.events = POLLIN;
		r = poll(&p, 1, left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -1 : -2;
		n = read(d->out, d->buf + d->len, sizeof d->buf - d->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -1 : 0;
		d->len += (size_t)n;
	}
}

/* Write s to d's stdin: 0 or -1. */
static int
daemon_say(struct daemon *d, const char *s)
{
	size_t len = strlen(s), off = 0;
	ssize_t n;

	while (off < len) {
		n = write(d->in, s + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		off += (size_t)n;
	}
	return 0;
}

/* Wait up to ms for d to exit: 1 (its status in *status), 0 still running,
 * -1 waitpid failed. */
static int
daemon_wait(struct daemon *d, int ms, int *status)
{
	int64_t deadline = dc_now_ms() + ms;
	pid_t r;

	for (;;) {
		r = waitpid(d->pid, status, WNOHANG);
		if (r == d->pid) {
			d->pid = daemon_pid = -1;
			return 1;
		}
		if (r < 0 && errno != EINTR)
			return -1;
		if (dc_now_ms() >= deadline)
			return 0;
		dc_sleep_ms(10);
	}
}

/* Start embed_poll on a free loopback port with keyfile, and wait for its
 * "serving on ADDR" line; a fresh port when it exits first (a lost bind
 * race).  0, or -1 with why. */
static int
daemon_start(struct daemon *d, const char *keyfile, char *why, size_t whylen)
{
	char line[128], want[128];
	int in[2], out[2], t, r, status;
	pid_t self = getpid();

	d->pid = -1;
	d->in = d->out = -1;
	d->len = 0;
	if (access(embed_poll_path, X_OK) != 0) {
		snprintf(why, whylen, "%.160s: %s (make build/embed_poll)",
		    embed_poll_path, strerror(errno));
		return -1;
	}
	snprintf(why, whylen, "no free port");
	for (t = 0; t < PORT_TRIES; t++) {
		if ((d->port = free_port("127.0.0.1")) <= 0)
			return -1;
		snprintf(d->addr, sizeof d->addr, "127.0.0.1:%d", d->port);
		if (pipe(in) != 0) {
			snprintf(why, whylen, "pipe: %s", strerror(errno));
			return -1;
		}
		if (pipe(out) != 0) {
			snprintf(why, whylen, "pipe: %s", strerror(errno));
			close(in[0]);
			close(in[1]);
			return -1;
		}
		fflush(stdout);
		d->pid = fork();
		if (d->pid == 0) {
			/* The report pipe must reach EOF when the scenario
			 * ends, whatever the daemon does; and the daemon must
			 * not outlive a scenario killed by the watchdog (on
			 * Linux; elsewhere the scenario's SIGALRM kills it). */
			if (report_fd >= 0)
				close(report_fd);
#ifdef __linux__
			if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 ||
			    getppid() != self)
				_exit(125);
#else
			(void)self;
#endif
			if (dup2(in[0], STDIN_FILENO) < 0 ||
			    dup2(out[1], STDOUT_FILENO) < 0)
				_exit(126);
			close(in[0]);
			close(in[1]);
			close(out[0]);
			close(out[1]);
			execl(embed_poll_path, embed_poll_path, d->addr,
			    keyfile, (char *)NULL);
			_exit(127);
		}
		close(in[0]);
		close(out[1]);
		if (d->pid < 0) {
			snprintf(why, whylen, "fork: %s", strerror(errno));
			close(in[1]);
			close(out[0]);
			return -1;
		}
		daemon_pid = d->pid;
		d->in = in[1];
		d->out = out[0];
		snprintf(want, sizeof want, "embed_poll: serving on %s", d->addr);
		r = daemon_line(d, "embed_poll: serving on", line, sizeof line,
		    START_MS);
		if (r == 1 && strcmp(line, want) == 0)
			return 0;
		if (r == 1) {
			snprintf(why, whylen, "said \"%.100s\", not \"%.100s\"", line,
			    want);
			return -1;
		}
		if (r != 0 || daemon_wait(d, IO_MS, &status) != 1) {
			snprintf(why, whylen, "no \"serving on\" line within "
			    "%d ms", r == -2 ? START_MS : IO_MS);
			return -1;
		}
		daemon_reap(d);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 1) {
			snprintf(why, whylen, "%s %d before serving",
			    WIFEXITED(status) ? "exited with status" :
			    "killed by signal", WIFEXITED(status) ?
			    WEXITSTATUS(status) : WTERMSIG(status));
			return -1;
		}
		snprintf(why, whylen, "exited with status 1 before serving, %d "
		    "times (derp_create's reason is on stderr)", t + 1);
	}
	return -1;
}

/* A plain-HTTP DERP client of d whose server key must be pub (rcvbuf: its
 * SO_RCVBUF, 0 for the default): NULL on failure, with why. */
static struct dclient *
plain_client(const struct daemon *d, const uint8_t pub[32], int rcvbuf,
    const char **why)
{
	struct dclient *c = dc_new();

	*why = NULL;
	if (c == NULL)
		*why = "out of memory";
	else {
		dc_genkey(c);
		c->rcvbuf = rcvbuf;
		if (dc_connect(c, "127.0.0.1", d->port, 0, NULL, CONNECT_MS) < 0)
			*why = "TCP connect failed";
		else if (dc_handshake(c, 0, NULL, IO_MS) < 0)
			*why = "DERP handshake failed";
		else if (memcmp(c->server_pk, pub, 32) != 0)
			*why = "the server key is not the key file's";
	}
	if (*why != NULL) {
		dc_free(c);
		return NULL;
	}
	return c;
}

/* A Ping with 8 random bytes; NULL when the Pong echoing them came. */
static const char *
ping_pong(struct dclient *c)
{
	int64_t deadline = dc_now_ms() + IO_MS;
	uint8_t data[8], type;
	size_t n;
	int left;

	if (c == NULL)
		return "no client";
	dc_random(data, sizeof data);
	if (dc_send_frame(c, FT_PING, data, sizeof data) < 0)
		return "send failed";
	for (;;) {
		left = (int)(deadline - dc_now_ms());
		if (left <= 0 || dc_recv_frame(c, &type, qbuf, sizeof qbuf, &n,
		    left) != 1)
			return "no Pong";
		if (type == FT_PONG)
			return n == 8 && memcmp(qbuf, data, 8) == 0 ? NULL :
			    "a Pong with other data";
		if (type != FT_KEEP_ALIVE)
			return "another frame before the Pong";
	}
}

/* Packet k of a burst: len bytes that differ with k. */
static void
burst_fill(uint8_t *p, size_t len, unsigned k)
{
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(k * 131 + i * 7 + (i >> 8));
}

/* count packets of len bytes from a, burst_fill'ed, must reach b in order:
 * NULL or why not. */
static const char *
burst_recv(struct dclient *a, struct dclient *b, unsigned count, size_t len)
{
	static char why[128];
	uint8_t src[32];
	unsigned k;
	size_t n;
	int r;

	for (k = 0; k < count; k++) {
		r = dc_recv_packet(b, src, qbuf, sizeof qbuf, &n, IO_MS);
		if (r != 1) {
			snprintf(why, sizeof why, "packet %u of %u: %s", k + 1,
			    count, r == -2 ? "timeout" : r == 0 ? "closed" :
			    "error");
			return why;
		}
		burst_fill(pbuf, len, k);
		if (memcmp(src, a->pk, 32) != 0 || n != len ||
		    memcmp(qbuf, pbuf, len) != 0) {
			snprintf(why, sizeof why, "packet %u of %u differs "
			    "(%zu bytes)", k + 1, count, n);
			return why;
		}
	}
	return NULL;
}

/* Stopped by SIGTERM or a "quit" line: the "stopped" line, then exit 0,
 * both within EXIT_MS of t0.  NULL or why not. */
static const char *
daemon_stops(struct daemon *d, int64_t t0)
{
	static char why[160];
	char line[128];
	int status, r, left;

	left = (int)(t0 + EXIT_MS - dc_now_ms());
	r = daemon_line(d, "embed_poll: stopped", line, sizeof line,
	    left > 1 ? left : 1);
	if (r != 1) {
		snprintf(why, sizeof why, "no \"stopped\" line within %d ms (%s)",
		    EXIT_MS, r == 0 ? "EOF" : r == -2 ? "timeout" : "error");
		return why;
	}
	left = (int)(t0 + EXIT_MS - dc_now_ms());
	r = daemon_wait(d, left > 1 ? left : 1, &status);
	if (r != 1) {
		snprintf(why, sizeof why, "%s", r == 0 ? "still running after "
		    "its \"stopped\" line" : "waitpid failed");
		return why;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(why, sizeof why, "%s %d", WIFEXITED(status) ?
		    "exit status" : "killed by signal", WIFEXITED(status) ?
		    WEXITSTATUS(status) : WTERMSIG(status));
		return why;
	}
	return NULL;
}

static void
run_own_loop(int unused1, int unused2)
{
	static const size_t sizes[] = { 1, 1200, MAX_PACKET_BYTES };
	struct dclient *c[2 + MORE_CLIENTS], *slow;
	struct daemon d;
	struct sigaction sa;
	char dir[PATH_BYTES], keyfile[PATH_BYTES], what[64], why[ERR_BYTES],
	    line[128];
	const char *w;
	uint8_t pub[32];
	int64_t t0;
	size_t i;
	unsigned k, closed;
	int have_pub, ok, left;

	(void)unused1;
	(void)unused2;
	memset(c, 0, sizeof c);
	memset(&d, 0, sizeof d);
	d.pid = -1;
	d.in = d.out = -1;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_scenario_alarm;
	if (sigemptyset(&sa.sa_mask) != 0 || sigaction(SIGALRM, &sa, NULL) != 0) {
		check("start_serving", 0, "sigaction: %s", strerror(errno));
		return;
	}
	if (fmt_fit(dir, sizeof dir, "%s/%s", scratch, scen) != 0 ||
	    fmt_fit(keyfile, sizeof keyfile, "%s/derper.key", dir) != 0 ||
	    mkdir_p(dir) != 0 || (unlink(keyfile) != 0 && errno != ENOENT)) {
		check("start_serving", 0, "scratch %s: %s", dir, strerror(errno));
		return;
	}

	/* Start: "serving on", the key file written, two clients. */
	ok = daemon_start(&d, keyfile, why, sizeof why) == 0;
	check("start_serving", ok, "%s", why);
	if (!ok)
		goto out;
	have_pub = keyfile_public(keyfile, pub) == 0;
	check("keyfile_written", have_pub, "no privkey in %s", keyfile);
	if (!have_pub)
		goto out;
	c[0] = plain_client(&d, pub, 0, &w);
	verdict("client1_handshake", w);
	c[1] = plain_client(&d, pub, 0, &w);
	verdict("client2_handshake", w);

	/* Packets both ways, Pings. */
	for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		snprintf(what, sizeof what, "exchange_%zu", sizes[i]);
		verdict(what, relay_packet(c[0], c[1], sizes[i]));
		snprintf(what, sizeof what, "exchange_%zu_back", sizes[i]);
		verdict(what, relay_packet(c[1], c[0], sizes[i]));
	}
	verdict("ping_client1", ping_pong(c[0]));
	verdict("ping_client2", ping_pong(c[1]));

	/* More descriptors than the example's first array (the poll(2)
	 * back-end lists them all): each served, the last one relays. */
	w = NULL;
	for (k = 0; k < MORE_CLIENTS && w == NULL; k++)
		c[2 + k] = plain_client(&d, pub, k + 1 == MORE_CLIENTS ?
		    SLOW_RCVBUF : 0, &w);
	if (w == NULL)
		w = relay_packet(c[1 + MORE_CLIENTS], c[0], 1200);
	if (w != NULL) {
		snprintf(why, sizeof why, "client %u of %d: %s", k, MORE_CLIENTS,
		    w);
		w = why;
	}
	verdict("more_clients_served", w);

	/* The daemon's own work: a line written in two pieces, then one
	 * written in the middle of a burst it is relaying. */
	ok = daemon_say(&d, "spl") == 0;
	dc_sleep_ms(50);
	ok = ok && daemon_say(&d, "it\n") == 0 &&
	    daemon_line(&d, "embed_poll: echo ", line, sizeof line, IO_MS) == 1;
	check("echo_split_line", ok && strcmp(line, "embed_poll: echo split") ==
	    0, "%s", ok ? line : "no echo");
	w = c[0] == NULL || c[1] == NULL ? "no client pair" : NULL;
	for (k = 0; k < BURST_PACKETS && w == NULL; k++) {
		if (k == BURST_PACKETS / 2 && daemon_say(&d, "busy\n") != 0)
			w = "cannot write to its stdin";
		burst_fill(pbuf, MAX_PACKET_BYTES, k);
		if (w == NULL && dc_send_packet(c[0], c[1]->pk, pbuf,
		    MAX_PACKET_BYTES) < 0)
			w = "send failed";
	}
	if (w == NULL && (daemon_line(&d, "embed_poll: echo ", line,
	    sizeof line, IO_MS) != 1 ||
	    strcmp(line, "embed_poll: echo busy") != 0))
		w = "no \"echo busy\" line";
	verdict("echo_during_burst", w);
	verdict("burst_delivered", c[0] == NULL || c[1] == NULL ?
	    "no client pair" : burst_recv(c[0], c[1], BURST_PACKETS,
	    MAX_PACKET_BYTES));

	/*
	 * SIGTERM with packets queued in the relay for the slow client, the
	 * last one (client 1's Pong says the relay has read them all): they
	 * arrive, then every client sees the relay's FIN while it drains;
	 * once they close, "stopped" and exit 0.
	 */
	slow = c[1 + MORE_CLIENTS];
	w = c[0] == NULL || slow == NULL ? "no client pair" : NULL;
	for (k = 0; k < QUEUED_PACKETS && w == NULL; k++) {
		burst_fill(pbuf, MAX_PACKET_BYTES, k);
		if (dc_send_packet(c[0], slow->pk, pbuf, MAX_PACKET_BYTES) < 0)
			w = "send failed";
	}
	if (w == NULL)
		w = ping_pong(c[0]);
	t0 = dc_now_ms();
	if ((d.pid <= 0 || kill(d.pid, SIGTERM) != 0) && w == NULL)
		w = "kill failed";
	if (w == NULL)
		w = burst_recv(c[0], slow, QUEUED_PACKETS, MAX_PACKET_BYTES);
	verdict("sigterm_delivers_queued", w);
	for (k = closed = 0; k < 2 + MORE_CLIENTS; k++) {
		left = (int)(t0 + EXIT_MS - dc_now_ms());
		closed += c[k] != NULL && dc_expect_close(c[k], left > 1 ?
		    left : 1) == 1;
		dc_free(c[k]);
		c[k] = NULL;
	}
	check("sigterm_clients_see_fin", closed == 2 + MORE_CLIENTS,
	    "%u of %d clients saw a clean close within %d ms", closed,
	    2 + MORE_CLIENTS, EXIT_MS);
	verdict("sigterm_stops_exit_0", daemon_stops(&d, t0));
	daemon_reap(&d);

	/* Again on the same key file, stopped by a "quit" line. */
	ok = daemon_start(&d, keyfile, why, sizeof why) == 0;
	check("restart_serving", ok, "%s", why);
	if (!ok)
		goto out;
	c[0] = plain_client(&d, pub, 0, &w);
	verdict("restart_same_key", w);
	t0 = dc_now_ms();
	w = daemon_say(&d, "quit\n") != 0 ? "cannot write to its stdin" :
	    c[0] != NULL && dc_expect_close(c[0], EXIT_MS) != 1 ?
	    "the client saw no clean close" : NULL;
	dc_free(c[0]);
	c[0] = NULL;
	if (w == NULL)
		w = daemon_stops(&d, t0);
	verdict("quit_line_stops_exit_0", w);
out:
	daemon_reap(&d);
	for (k = 0; k < 2 + MORE_CLIENTS; k++)
		dc_free(c[k]);
}

/*
 * Run one scenario in a child.  Its results come through a pipe as they
 * happen and an 'E' just before exit(): a crash or sanitizer report shows as
 * a child FAIL after the results it gave, and so does a LeakSanitizer report
 * (it runs at exit, after the 'E', and sets the exit status).
 */
static pid_t child_pid = -1;

static void
fork_scenario(const char *name, void (*body)(int, int), int dns, int a_first)
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
		body(dns, a_first);
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
	const char *slash;
	int64_t t0 = dc_now_ms();

	if (argc != 2 && argc != 3) {
		fprintf(stderr, "usage: %s SCRATCH_DIR [EMBED_POLL]\n", argv[0]);
		return 2;
	}
	scratch = argv[1];
	/* contrib/embed_poll: given, or built beside this program. */
	slash = strrchr(argv[0], '/');
	if ((argc == 3 ? fmt_fit(embed_poll_path, sizeof embed_poll_path, "%s",
	    argv[2]) : fmt_fit(embed_poll_path, sizeof embed_poll_path,
	    "%.*s/embed_poll", slash != NULL ? (int)(slash - argv[0]) : 1,
	    slash != NULL ? argv[0] : ".")) != 0) {
		fprintf(stderr, "%s: path too long\n", argv[0]);
		return 2;
	}
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

	fork_scenario("ip_AB", run_scenario, 0, 1);
	fork_scenario("ip_BA", run_scenario, 0, 0);
	fork_scenario("dns_AB", run_scenario, 1, 1);
	fork_scenario("dns_BA", run_scenario, 1, 0);
	fork_scenario("own_loop", run_own_loop, 0, 0);

	printf("# %lld ms\n", (long long)(dc_now_ms() - t0));
	printf("%d passed, %d failed, %d skipped\n", n_pass, n_fail, n_skip);
	return n_fail == 0 ? 0 : 1;
}
