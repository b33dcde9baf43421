/*
 * probe.c -- `derp probe URL [flags]`: an end-to-end check of any DERP
 * relay, ours or derper (interface: probe.h; operator's view: README
 * "Checking a relay: derp probe").  Sections, in the order a run takes:
 *
 *   1. Limits and steps     the step table, its lines and the JSON
 *   2. Sockets              resolve, connect, read and write with deadlines
 *   3. TLS                  tlsclient.c's client and checker, wrapped to
 *                           explain a refusal and for -insecure
 *   4. HTTP                 one request per connection, the response head
 *   5. DERP                 upgrade, ServerKey, ClientInfo, frames
 *   6. The steps            dns .. mesh_watch, stun4, stun6
 *   7. Command line         flags, probe_main
 *
 * The steps, each one line, in this order:
 *
 *   dns           the URL's host resolved (an IP literal is its own answer)
 *   tcp           a TCP connection to the first address that answers
 *   tls           (https) handshake, certificate as a Tailscale client
 *                 checks it: chain to -ca-file or the system bundle and
 *                 the name, or the -pin sha256-raw:, or -insecure; days
 *                 left, an expired one fails
 *   home          GET / answers 200 (or a -home=URL redirect)
 *   generate_204  GET /generate_204 with X-Tailscale-Challenge: 204 and the
 *                 X-Tailscale-Response echo, on the URL's port
 *   port80        (https) the same on the plain port-80 listener
 *   derp_upgrade  client 1: /derp upgrade, 101, ServerKey (magic, key)
 *   handshake     client 1: ClientInfo sealed, ServerInfo opened
 *   client2       a second client, upgraded and handshaken
 *   packets       a random packet 1 -> 2 and another 2 -> 1, both intact
 *   ping          Ping -> Pong with the same 8 bytes, its round trip
 *   mesh_watch    (-mesh-key) a third client with the mesh key sends
 *                 WatchConns and must see PeerPresent for clients 1 and 2
 *   stun4, stun6  a STUN binding request per family of the STUN host: a
 *                 success with XOR-MAPPED-ADDRESS and our transaction ID
 *
 * A step whose prerequisite failed (or was skipped) is skipped, naming it;
 * the STUN steps depend on dns only when their host is the URL's.  Every
 * wait has a deadline (STEP_MS from the step's start), checked before each
 * read, frame and datagram (a server that keeps sending cannot hold a
 * step past it), and a watchdog
 * (WATCHDOG_S) ends a run that a blocking getaddrinfo holds.  Only the
 * relay's addresses are contacted.
 *
 * Allocation: one struct pconn per connection (at most three at once:
 * clients 1 and 2 and the watcher, about 60 KiB each with BearSSL's
 * buffers), the trust anchors of -ca-file or the system bundle; freed
 * before probe_main returns.
 */
#define _POSIX_C_SOURCE 200809L

#include "probe.h"
#include "cert.h"
#include "nacl.h"
#include "stun.h"
#include "tlsclient.h"
#include "verify.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#ifndef DERP_NO_BOOTDNS
#include <netdb.h>
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bearssl.h>

/* ========================================================================= */
/* 1. Limits and steps                                                       */
/* ========================================================================= */

/* One step's bound: a TLS handshake across the world is under 1 s, a STUN
 * answer under 300 ms; 5 s leaves room for a loaded relay and three STUN
 * requests (STUN_RESEND_MS apart).  Fourteen steps: at most 70 s, and the
 * watchdog's 120 s covers a resolver that hangs (getaddrinfo has no
 * timeout of its own). */
#define STEP_MS			5000
#define WATCHDOG_S		120
#define STUN_RESEND_MS		1000
#define STUN_DEFAULT_PORT	3478
#define HTTP_DEFAULT_PORT	80
/* Addresses kept from a lookup: a relay has one or two per family. */
#define ADDRS_MAX		8
/* "[" 45-byte IPv6 text "]:" 5 digits, NUL: 54. */
#define ADDR_TEXT_MAX		56
/* A step's detail or reason: one line an operator reads.  A
 * connection's own error (ERR_MAX) fits one with room for what the step
 * puts around it. */
#define DETAIL_MAX		400
#define ERR_MAX			160
#define STEPS_MAX		16
/* A response head we read: derper's are under 1 KiB; 8 KiB is Go's and most
 * servers' header budget. */
#define HEAD_MAX		8192
/* Frames kept whole: ServerKey (40, up to 1024 allowed), ServerInfo (24 +
 * 16 + its JSON), PeerPresent (51), Pong (8), our packets (32 +
 * PACKET_BYTES).  Longer frames are skipped in pieces, never buffered. */
#define FRAME_KEEP_MAX		4096
#define FRAME_HEADER_BYTES	5
/* Received plaintext not yet consumed: a response head or a kept frame
 * (HEAD_MAX, FRAME_KEEP_MAX + 5) with room for what follows it. */
#define RBUF_BYTES		16384
/* The packets exchanged: a typical WireGuard datagram's size. */
#define PACKET_BYTES		1000
#define KEY_BYTES		32
#define PING_BYTES		8
#define SERVER_KEY_MAGIC_BYTES	8
/* PeerPresent: key 32, then (newer relays) IP 16, port 2, flags 1. */
#define PEER_PRESENT_MIN	32
/* The 64 hex digits of a mesh key, and a file holding them with blanks. */
#define MESH_HEX		64
#define MESH_FILE_MAX		1024
/* The ClientInfo JSON we send: with the mesh key, 98 bytes. */
#define CLIENT_INFO_JSON_MAX	256
/* The challenge token: "ts_probe_" and 16 hex digits (derper answers
 * tokens of at most 64 bytes of [A-Za-z0-9._:-]). */
#define CHALLENGE_MAX		32
/* "2026-01-31", with room for any int year snprintf could write (gcc
 * checks): 3 numbers of at most 11 characters, 2 dashes, NUL. */
#define DATE_MAX		40
#define TRUST_BUNDLE		"/etc/ssl/certs/ca-certificates.crt"

#define FT_SERVER_KEY		0x01
#define FT_CLIENT_INFO		0x02
#define FT_SERVER_INFO		0x03
#define FT_SEND_PACKET		0x04
#define FT_RECV_PACKET		0x05
#define FT_PEER_GONE		0x08
#define FT_PEER_PRESENT		0x09
#define FT_WATCH_CONNS		0x10
#define FT_PING			0x12
#define FT_PONG			0x13

static const uint8_t server_key_magic[SERVER_KEY_MAGIC_BYTES] = {
	0x44, 0x45, 0x52, 0x50, 0xF0, 0x9F, 0x94, 0x91	/* "DERP" U+1F511 */
};

enum { ST_OK, ST_FAIL, ST_SKIP };
enum { TM_CA, TM_PIN, TM_INSECURE };

struct step {
	const char *name;
	int status;
	long ms;
	char detail[DETAIL_MAX];
};

struct pconn;

/* The run: flags, what earlier steps found, the step lines. */
struct probe {
	/* flags */
	char url[VURL_MAX + 16];
	struct vurl u;
	int port;
	int json;
	int tls_mode;			/* TM_* */
	const char *ca_file;		/* NULL: TRUST_BUNDLE */
	uint8_t pin[KEY_BYTES];
	int http_port;			/* -1: no port-80 step */
	int stun_off;
	char stun_host[256];
	int stun_port;
	int have_mesh;
	char mesh_hex[MESH_HEX + 1];
	struct tlsc_anchors anchors;
	/* found */
	int naddr;
	struct sockaddr_storage addr[ADDRS_MAX];
	socklen_t addrlen[ADDRS_MAX];
	int dns_ok;
	int conn_idx;			/* the address tcp connected to */
	int tcp_ok, tls_ok;		/* tls_ok is 1 for an http:// URL */
	struct pconn *c1, *c2;
	int c1_up, c1_ready, c2_ready;
	/* Why client 1 (c1_why) or clients 1 and 2 (c2_why) are not ready:
	 * the step that failed first, for the skip lines after it. */
	const char *c1_why, *c2_why;
	/* lines */
	size_t nsteps;
	struct step steps[STEPS_MAX];
	int n_ok, n_fail, n_skip;
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Milliseconds left until deadline: 0 once passed. */
static int
left_ms(int64_t deadline)
{
	int64_t d = deadline - now_ms();

	return d <= 0 ? 0 : d > STEP_MS * 4 ? STEP_MS * 4 : (int)d;
}

static void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t
get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void
hex_encode(char *out, const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

static int
hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Exactly 2n hex digits of s into out: 0, or -1. */
static int
hex_decode(uint8_t *out, const char *s, size_t n)
{
	size_t i;

	if (strlen(s) != 2 * n)
		return -1;
	for (i = 0; i < n; i++) {
		int hi = hex_digit((unsigned char)s[2 * i]);
		int lo = hex_digit((unsigned char)s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/* A port "1".."65535" (or "-1" when allow_off): the number, or 0.  No
 * strtol: the firmware build counts bytes (README, make static). */
static long
parse_port(const char *s, int allow_off)
{
	long v = 0;
	size_t i;

	if (allow_off && strcmp(s, "-1") == 0)
		return -1;
	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9' || i == 5)
			return 0;
		v = v * 10 + (s[i] - '0');
	}
	return v >= 1 && v <= 65535 ? v : 0;
}

/* The first "\r\n" at or after s, or NULL. */
static const char *
find_crlf(const char *s)
{
	for (; *s != '\0'; s++)
		if (s[0] == '\r' && s[1] == '\n')
			return s;
	return NULL;
}

/* n bytes from the kernel: 0, or -1. */
static int
random_bytes(void *buf, size_t n)
{
	uint8_t *p = buf;
	int fd = open("/dev/urandom", O_RDONLY);

	if (fd < 0)
		return -1;
	while (n > 0) {
		ssize_t r = read(fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			close(fd);
			return -1;
		}
		p += r;
		n -= (size_t)r;
	}
	close(fd);
	return 0;
}

#ifdef __GNUC__
static void step_end(struct probe *p, const char *name, int status,
    int64_t t0, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
#endif

/* Record (and, without -json, print) one step's line.  t0: its start, for
 * the ok line's milliseconds. */
static void
step_end(struct probe *p, const char *name, int status, int64_t t0,
    const char *fmt, ...)
{
	struct step *s;
	va_list ap;
	size_t i;

	if (p->nsteps == STEPS_MAX)
		return;
	s = &p->steps[p->nsteps++];
	s->name = name;
	s->status = status;
	s->ms = status == ST_OK ? (long)(now_ms() - t0) : 0;
	va_start(ap, fmt);
	vsnprintf(s->detail, sizeof s->detail, fmt, ap);
	va_end(ap);
	/* The server's words (a status line, a header, its ServerInfo) stay
	 * on one line of printable text: -json escapes every byte over 0x7e
	 * (json_string), the lines below print each as \xNN. */
	for (i = 0; s->detail[i] != '\0'; i++)
		if ((unsigned char)s->detail[i] < 0x20 ||
		    (unsigned char)s->detail[i] == 0x7f)
			s->detail[i] = '?';
	if (status == ST_OK)
		p->n_ok++;
	else if (status == ST_FAIL)
		p->n_fail++;
	else
		p->n_skip++;
	if (p->json)
		return;
	if (status == ST_OK)
		printf("ok   %s: ", name);
	else
		printf("%s %s: ", status == ST_FAIL ? "FAIL" : "skip", name);
	/* Printable ASCII only: a byte over 0x7e (UTF-8's C1 controls as
	 * U+009B CSI, bidi overrides) never reaches the terminal as is. */
	for (i = 0; s->detail[i] != '\0'; i++) {
		unsigned char c = (unsigned char)s->detail[i];

		if (c < 0x20 || c > 0x7e)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	if (status == ST_OK)
		printf(" (%ld ms)", s->ms);
	putchar('\n');
	fflush(stdout);
}

/* s as a JSON string.  Bytes over 0x7f are escaped one by one (as
 * Latin-1): a server's text need not be UTF-8, the JSON must be. */
static void
json_string(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

/* s as a JSON string's inside (json_string's escapes) into out[cap],
 * NUL-terminated; cut short, at a whole escape, when it does not fit. */
static void
json_escape(char *out, size_t cap, const char *s)
{
	static const char digits[] = "0123456789abcdef";
	size_t o = 0;

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		char e[7];
		size_t n;

		if (c == '"' || c == '\\') {
			e[0] = '\\';
			e[1] = (char)c;
			n = 2;
		} else if (c < 0x20 || c >= 0x7f) {
			memcpy(e, "\\u00", 4);
			e[4] = digits[c >> 4];
			e[5] = digits[c & 15];
			n = 6;
		} else {
			e[0] = (char)c;
			n = 1;
		}
		if (o + n >= cap)
			break;
		memcpy(out + o, e, n);
		o += n;
	}
	out[o] = '\0';
}

static void
json_report(const struct probe *p)
{
	static const char *const status_name[] = { "ok", "fail", "skip" };
	size_t i;

	printf("{\"url\":");
	json_string(p->url);
	printf(",\"ok\":%s,\"passed\":%d,\"failed\":%d,\"skipped\":%d,"
	    "\"steps\":[", p->n_fail == 0 ? "true" : "false", p->n_ok,
	    p->n_fail, p->n_skip);
	for (i = 0; i < p->nsteps; i++) {
		const struct step *s = &p->steps[i];

		printf("%s{\"name\":", i > 0 ? "," : "");
		json_string(s->name);
		printf(",\"status\":\"%s\",\"ok\":%s,\"skipped\":%s,"
		    "\"ms\":%ld,\"detail\":", status_name[s->status],
		    s->status == ST_OK ? "true" : "false",
		    s->status == ST_SKIP ? "true" : "false", s->ms);
		json_string(s->detail);
		putchar('}');
	}
	printf("]}\n");
	fflush(stdout);
}

/* ========================================================================= */
/* 2. Sockets                                                                */
/* ========================================================================= */

/* "1.2.3.4:443" or "[::1]:443" (port 0: the address alone). */
static void
addr_text(const struct sockaddr_storage *ss, char out[ADDR_TEXT_MAX])
{
	char ip[INET6_ADDRSTRLEN];
	unsigned port;

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)ss;

		if (inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip) == NULL)
			snprintf(ip, sizeof ip, "?");
		port = ntohs(s6->sin6_port);
		if (port != 0)
			snprintf(out, ADDR_TEXT_MAX, "[%s]:%u", ip, port);
		else
			snprintf(out, ADDR_TEXT_MAX, "%s", ip);
	} else {
		const struct sockaddr_in *s4 = (const void *)ss;

		if (inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip) == NULL)
			snprintf(ip, sizeof ip, "?");
		port = ntohs(s4->sin_port);
		if (port != 0)
			snprintf(out, ADDR_TEXT_MAX, "%s:%u", ip, port);
		else
			snprintf(out, ADDR_TEXT_MAX, "%s", ip);
	}
}

static void
addr_set_port(struct sockaddr_storage *ss, int port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)(void *)ss)->sin6_port =
		    htons((uint16_t)port);
	else
		((struct sockaddr_in *)(void *)ss)->sin_port =
		    htons((uint16_t)port);
}

/* An IP literal (no brackets) into one address; 1, or 0 if host is not
 * one. */
static int
addr_literal(const char *host, int port, struct sockaddr_storage *ss,
    socklen_t *len)
{
	memset(ss, 0, sizeof *ss);
	if (strchr(host, ':') != NULL) {
		struct sockaddr_in6 *s6 = (void *)ss;

		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return 0;
		s6->sin6_family = AF_INET6;
		*len = sizeof *s6;
	} else {
		struct sockaddr_in *s4 = (void *)ss;

		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			return 0;
		s4->sin_family = AF_INET;
		*len = sizeof *s4;
	}
	addr_set_port(ss, port);
	return 1;
}

/* host's addresses (both families, the resolver's order) with port: their
 * count (at least 1), or -1 with why. */
static int
resolve(const char *host, int port, struct sockaddr_storage *out,
    socklen_t *outlen, int cap, char *why, size_t whylen)
{
#ifndef DERP_NO_BOOTDNS
	struct addrinfo hints, *res, *ai;
	int n = 0, rc;
#endif

	if (addr_literal(host, port, &out[0], &outlen[0]))
		return 1;
#ifdef DERP_NO_BOOTDNS
	/* The firmware build: getaddrinfo alone is about 28 KB of a static
	 * musl binary, as bootstrap DNS says (Makefile BOOTDNS). */
	(void)cap;
	snprintf(why, whylen, "resolve %s: this build resolves no host names"
	    " (BOOTDNS=0): give the relay's IP address", host);
	return -1;
#else
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc != 0) {
		snprintf(why, whylen, "resolve %s: %s", host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL && n < cap; ai = ai->ai_next) {
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof out[n])
			continue;
		memset(&out[n], 0, sizeof out[n]);
		memcpy(&out[n], ai->ai_addr, ai->ai_addrlen);
		outlen[n] = (socklen_t)ai->ai_addrlen;
		addr_set_port(&out[n], port);
		n++;
	}
	freeaddrinfo(res);
	if (n == 0) {
		snprintf(why, whylen, "resolve %s: no IPv4 or IPv6 address",
		    host);
		return -1;
	}
	return n;
#endif
}

static int
set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -1 : 0;
}

/* Wait for events on fd until deadline: 1 ready, -2 timeout, -1 error.
 * A deadline already passed is a timeout, even with fd ready (a poll of 0
 * ms would say ready while a server keeps sending). */
static int
wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd pf;
		int r;

		if (now_ms() >= deadline)
			return -2;
		pf.fd = fd;
		pf.events = events;
		pf.revents = 0;
		r = poll(&pf, 1, left_ms(deadline));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		return r == 0 ? -2 : 1;
	}
}

/*
 * A connection: TCP, and TLS on it for an https:// URL.  err holds the
 * first failure (sticky: later calls keep it).  rbuf holds received
 * plaintext not yet consumed.  The DERP client's keys live here too.
 */
struct px509 {
	const br_x509_class *vtable;	/* first: BearSSL calls us by it */
	struct tlsc_x509 in;		/* tlsclient.c's checker */
	int insecure;			/* -insecure: any leaf is accepted */
	int ended;			/* end_chain was called */
	unsigned in_err;		/* what tlsclient's checker said */
	br_x509_decoder_context dec;	/* the leaf's key, for -insecure */
};

struct pconn {
	int fd;
	int tls;
	int tls_done;
	char err[ERR_MAX];
	size_t rlen;
	uint8_t sk[KEY_BYTES], pk[KEY_BYTES], server_pk[KEY_BYTES];
	br_ssl_client_context cc;
	struct px509 x;
	uint8_t iobuf[BR_SSL_BUFSIZE_BIDI];
	uint8_t rbuf[RBUF_BYTES];
};

#ifdef __GNUC__
static void pc_fail(struct pconn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#endif

static void
pc_fail(struct pconn *c, const char *fmt, ...)
{
	va_list ap;

	if (c->err[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof c->err, fmt, ap);
	va_end(ap);
}

static struct pconn *
pc_new(void)
{
	struct pconn *c = calloc(1, sizeof *c);

	if (c != NULL)
		c->fd = -1;
	return c;
}

static void
pc_free(struct pconn *c)
{
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

/* TCP to ss within the deadline: 0, or -1 with c->err ("connect ADDR:
 * Connection refused"). */
static int
pc_connect(struct pconn *c, const struct sockaddr_storage *ss, socklen_t len,
    int64_t deadline)
{
	char at[ADDR_TEXT_MAX];
	int fd, err = 0, one = 1;
	socklen_t errlen = sizeof err;

	addr_text(ss, at);
	fd = socket(ss->ss_family, SOCK_STREAM, 0);
	if (fd < 0) {
		pc_fail(c, "socket for %s: %s", at, strerror(errno));
		return -1;
	}
	if (set_nonblock(fd) < 0) {
		pc_fail(c, "fcntl: %s", strerror(errno));
		close(fd);
		return -1;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (const struct sockaddr *)ss, len) < 0) {
		int w;

		if (errno != EINPROGRESS && errno != EINTR) {
			pc_fail(c, "connect %s: %s", at, strerror(errno));
			close(fd);
			return -1;
		}
		w = wait_fd(fd, POLLOUT, deadline);
		if (w == -2) {
			pc_fail(c, "connect %s: no answer within %d ms", at,
			    STEP_MS);
			close(fd);
			return -1;
		}
		if (w < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err,
		    &errlen) < 0 || err != 0) {
			pc_fail(c, "connect %s: %s", at,
			    strerror(err != 0 ? err : errno));
			close(fd);
			return -1;
		}
	}
	c->fd = fd;
	return 0;
}

/* Some bytes from the socket: >0, 0 closed (c->err says so), -1 error,
 * -2 timeout.  The deadline is checked before every read, not only when
 * the socket is empty: a server that keeps sending (KeepAlive frames, a
 * long frame's bytes) must not hold a step past it. */
static int
sock_read(struct pconn *c, uint8_t *buf, size_t cap, int64_t deadline)
{
	for (;;) {
		ssize_t r;
		int w;

		if (now_ms() >= deadline) {
			pc_fail(c, "no answer within %d ms", STEP_MS);
			return -2;
		}
		r = recv(c->fd, buf, cap, 0);
		if (r > 0)
			return (int)r;
		if (r == 0 || (r < 0 && errno == ECONNRESET)) {
			pc_fail(c, "the server closed the connection");
			return 0;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			pc_fail(c, "read: %s", strerror(errno));
			return -1;
		}
		w = wait_fd(c->fd, POLLIN, deadline);
		if (w == -2) {
			pc_fail(c, "no answer within %d ms", STEP_MS);
			return -2;
		}
		if (w < 0) {
			pc_fail(c, "poll: %s", strerror(errno));
			return -1;
		}
	}
}

/* All of buf to the socket: 0, -1 (c->err), -2 timeout.  SIGPIPE is
 * ignored by probe_main: a closed peer is EPIPE here. */
static int
sock_write(struct pconn *c, const uint8_t *buf, size_t len, int64_t deadline)
{
	while (len > 0) {
		ssize_t r = send(c->fd, buf, len, 0);
		int w;

		if (r > 0) {
			buf += r;
			len -= (size_t)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			if (errno == EPIPE || errno == ECONNRESET)
				pc_fail(c, "the server closed the connection");
			else
				pc_fail(c, "write: %s", strerror(errno));
			return -1;
		}
		w = wait_fd(c->fd, POLLOUT, deadline);
		if (w == -2) {
			pc_fail(c, "write blocked for %d ms", STEP_MS);
			return -2;
		}
		if (w < 0) {
			pc_fail(c, "poll: %s", strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* ========================================================================= */
/* 3. TLS                                                                    */
/* ========================================================================= */

/*
 * The X.509 checker BearSSL calls: tlsclient.c's (chain and name, or the
 * pin) does the work; this wrapper keeps its verdict so that a refusal can
 * be explained from the leaf it kept (in.leaf: tlsclient.h's public
 * struct), and with -insecure accepts any leaf whose key decodes.
 */
static struct px509 *
px_of(const br_x509_class **ctx)
{
	return (struct px509 *)(void *)ctx;
}

static void
px_start_chain(const br_x509_class **ctx, const char *server_name)
{
	struct px509 *x = px_of(ctx);

	x->ended = 0;
	x->in_err = 0;
	x->in.vtable->start_chain(&x->in.vtable, server_name);
}

static void
px_start_cert(const br_x509_class **ctx, uint32_t length)
{
	struct px509 *x = px_of(ctx);

	x->in.vtable->start_cert(&x->in.vtable, length);
}

static void
px_append(const br_x509_class **ctx, const unsigned char *buf, size_t len)
{
	struct px509 *x = px_of(ctx);

	x->in.vtable->append(&x->in.vtable, buf, len);
}

static void
px_end_cert(const br_x509_class **ctx)
{
	struct px509 *x = px_of(ctx);

	x->in.vtable->end_cert(&x->in.vtable);
}

static unsigned
px_end_chain(const br_x509_class **ctx)
{
	struct px509 *x = px_of(ctx);
	unsigned e = x->in.vtable->end_chain(&x->in.vtable);

	x->ended = 1;
	x->in_err = e;
	if (!x->insecure)
		return e;
	if (x->in.leaf_too_big || x->in.cert_no == 0)
		return BR_ERR_X509_LIMIT_EXCEEDED;
	br_x509_decoder_init(&x->dec, NULL, NULL);
	br_x509_decoder_push(&x->dec, x->in.leaf, x->in.leaf_len);
	return br_x509_decoder_get_pkey(&x->dec) != NULL ? 0 :
	    BR_ERR_X509_UNSUPPORTED;
}

static const br_x509_pkey *
px_get_pkey(const br_x509_class *const *ctx, unsigned *usages)
{
	const struct px509 *x = (const struct px509 *)(const void *)ctx;

	if (x->insecure) {
		if (usages != NULL)
			*usages = BR_KEYTYPE_KEYX | BR_KEYTYPE_SIGN;
		return br_x509_decoder_get_pkey((br_x509_decoder_context *)
		    (uintptr_t)&x->dec);
	}
	return x->in.vtable->get_pkey(&x->in.vtable, usages);
}

static const br_x509_class px_vtable = {
	sizeof(struct px509), px_start_chain, px_start_cert, px_append,
	px_end_cert, px_end_chain, px_get_pkey
};

/* What BearSSL's error code means to an operator. */
static const char *
tls_error_text(int e)
{
	switch (e) {
	case BR_ERR_UNSUPPORTED_VERSION:
	case BR_ERR_BAD_VERSION:
	case BR_ERR_BAD_LENGTH:
	case BR_ERR_UNKNOWN_TYPE:
	case BR_ERR_TOO_LARGE:
		return "the server's answer is not TLS (a plain HTTP relay? "
		    "try an http:// URL)";
	case BR_ERR_BAD_CIPHER_SUITE:
	case BR_ERR_INVALID_ALGORITHM:
		return "no cipher suite or signature in common";
	case BR_ERR_BAD_SIGNATURE:
		return "bad signature in the handshake";
	case BR_ERR_BAD_MAC:
		return "bad record MAC";
	case BR_ERR_NO_RANDOM:
		return "no randomness";
	case BR_ERR_X509_EXPIRED:
		return "certificate expired or not yet valid";
	case BR_ERR_X509_BAD_SERVER_NAME:
		return "certificate not valid for the host name";
	case BR_ERR_X509_NOT_TRUSTED:
		return "certificate not trusted";
	case BR_ERR_X509_NOT_CA:
		return "an issuer in the chain is not a CA";
	case BR_ERR_X509_CRITICAL_EXTENSION:
		return "certificate has an unknown critical extension";
	case BR_ERR_X509_FORBIDDEN_KEY_USAGE:
		return "certificate's key usage forbids TLS server use";
	case BR_ERR_X509_WEAK_PUBLIC_KEY:
		return "certificate's key is too weak";
	case BR_ERR_X509_UNSUPPORTED:
		return "certificate uses an unsupported algorithm";
	default:
		break;
	}
	if (e >= BR_ERR_RECV_FATAL_ALERT && e < BR_ERR_SEND_FATAL_ALERT)
		return "the server sent a fatal alert";
	if (e >= BR_ERR_SEND_FATAL_ALERT)
		return "we sent a fatal alert";
	if (e >= BR_ERR_X509_OK)
		return "certificate could not be decoded";
	return "handshake failed";
}

/*
 * Drive the engine until one of want's state bits is set; pending records
 * are sent first, and application data nobody asked for yet is kept in
 * rbuf while room lasts.  1 wanted, 0 closed, -1 error, -2 timeout (c->err
 * set).
 */
static int
pc_run(struct pconn *c, unsigned want, int64_t deadline)
{
	br_ssl_engine_context *eng = &c->cc.eng;

	for (;;) {
		unsigned st = br_ssl_engine_current_state(eng);
		unsigned char *buf;
		size_t len;
		int r;

		if (st & BR_SSL_CLOSED) {
			int e = br_ssl_engine_last_error(eng);

			if (e == BR_ERR_OK) {
				pc_fail(c, "the server closed the connection");
				return 0;
			}
			if (e != BR_ERR_IO)
				pc_fail(c, "TLS: %s (BearSSL error %d)",
				    tls_error_text(e), e);
			return -1;
		}
		if (st & BR_SSL_SENDREC) {
			buf = br_ssl_engine_sendrec_buf(eng, &len);
			r = sock_write(c, buf, len, deadline);
			if (r < 0)
				return r;
			br_ssl_engine_sendrec_ack(eng, len);
			continue;
		}
		if (st & want)
			return 1;
		if ((st & BR_SSL_RECVAPP) && c->rlen < sizeof c->rbuf) {
			size_t n = sizeof c->rbuf - c->rlen;

			buf = br_ssl_engine_recvapp_buf(eng, &len);
			if (n > len)
				n = len;
			memcpy(c->rbuf + c->rlen, buf, n);
			c->rlen += n;
			br_ssl_engine_recvapp_ack(eng, n);
			continue;
		}
		if (st & BR_SSL_RECVREC) {
			buf = br_ssl_engine_recvrec_buf(eng, &len);
			r = sock_read(c, buf, len, deadline);
			if (r <= 0)
				return r;
			br_ssl_engine_recvrec_ack(eng, (size_t)r);
			continue;
		}
		pc_fail(c, "TLS engine stalled");
		return -1;
	}
}

/* The TLS handshake on c's socket to the URL's host, checked as the flags
 * say: 0, or -1 (c->err, and c->x for the tls step's explanation). */
static int
pc_tls(struct probe *p, struct pconn *c, int64_t deadline)
{
	c->tls = 1;
	tlsc_client_init(&c->cc, &c->x.in, &p->anchors);
	c->x.vtable = &px_vtable;
	c->x.insecure = p->tls_mode == TM_INSECURE;
	br_ssl_engine_set_x509(&c->cc.eng, &c->x.vtable);
	if (p->tls_mode == TM_PIN)
		tlsc_x509_pin(&c->x.in, p->pin);
	br_ssl_engine_set_buffer(&c->cc.eng, c->iobuf, sizeof c->iobuf, 1);
	if (tlsc_client_reset(&c->cc, &c->x.in, p->u.host) != 0) {
		pc_fail(c, "TLS: BearSSL refused to start (error %d)",
		    br_ssl_engine_last_error(&c->cc.eng));
		return -1;
	}
	if (pc_run(c, BR_SSL_SENDAPP, deadline) != 1)
		return -1;
	c->tls_done = 1;
	return 0;
}

/* A fresh connection to the address tcp found, with TLS for https. */
static struct pconn *
pc_open(struct probe *p, int64_t deadline, char *why, size_t whylen)
{
	struct pconn *c = pc_new();

	if (c == NULL) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	if (pc_connect(c, &p->addr[p->conn_idx], p->addrlen[p->conn_idx],
	    deadline) < 0 || (p->u.https && pc_tls(p, c, deadline) < 0)) {
		snprintf(why, whylen, "%s", c->err);
		pc_free(c);
		return NULL;
	}
	return c;
}

/* Write all of buf (through TLS when on): 0, or -1 (c->err). */
static int
pc_write(struct pconn *c, const void *buf, size_t len, int64_t deadline)
{
	const uint8_t *q = buf;

	if (!c->tls)
		return sock_write(c, q, len, deadline) == 0 ? 0 : -1;
	while (len > 0) {
		unsigned char *b;
		size_t n;

		if (pc_run(c, BR_SSL_SENDAPP, deadline) != 1)
			return -1;
		b = br_ssl_engine_sendapp_buf(&c->cc.eng, &n);
		if (n > len)
			n = len;
		memcpy(b, q, n);
		br_ssl_engine_sendapp_ack(&c->cc.eng, n);
		q += n;
		len -= n;
	}
	br_ssl_engine_flush(&c->cc.eng, 0);
	/* pc_run sends every pending record before it looks at want. */
	return pc_run(c, BR_SSL_SENDAPP, deadline) == 1 ? 0 : -1;
}

/* More received bytes into rbuf: 1, 0 closed, -1 error, -2 timeout. */
static int
pc_fill(struct pconn *c, int64_t deadline)
{
	size_t before = c->rlen;
	int r;

	/* Before the TLS engine too: it may hold decrypted data to hand
	 * over without a read. */
	if (now_ms() >= deadline) {
		pc_fail(c, "no answer within %d ms", STEP_MS);
		return -2;
	}
	if (c->rlen == sizeof c->rbuf) {
		pc_fail(c, "receive buffer full");
		return -1;
	}
	if (!c->tls) {
		r = sock_read(c, c->rbuf + c->rlen, sizeof c->rbuf - c->rlen,
		    deadline);
		if (r <= 0)
			return r;
		c->rlen += (size_t)r;
		return 1;
	}
	r = pc_run(c, BR_SSL_RECVAPP, deadline);
	if (r != 1)
		return r;
	if (c->rlen == before) {
		unsigned char *b;
		size_t n, room = sizeof c->rbuf - c->rlen;

		b = br_ssl_engine_recvapp_buf(&c->cc.eng, &n);
		if (n > room)
			n = room;
		memcpy(c->rbuf + c->rlen, b, n);
		c->rlen += n;
		br_ssl_engine_recvapp_ack(&c->cc.eng, n);
	}
	return 1;
}

static void
pc_consume(struct pconn *c, size_t n)
{
	memmove(c->rbuf, c->rbuf + n, c->rlen - n);
	c->rlen -= n;
}

/* At least n bytes in rbuf (n <= RBUF_BYTES): 1, or pc_fill's 0, -1, -2. */
static int
pc_need(struct pconn *c, size_t n, int64_t deadline)
{
	while (c->rlen < n) {
		int r = pc_fill(c, deadline);

		if (r != 1)
			return r;
	}
	return 1;
}

/* ========================================================================= */
/* 4. HTTP                                                                   */
/* ========================================================================= */

/* Send request, read the response head (through the blank line) into
 * head[HEAD_MAX], NUL-terminated; what follows stays in rbuf.  The status,
 * or -1 (c->err). */
static int
http_exchange(struct pconn *c, const char *request, char *head,
    int64_t deadline)
{
	int status;

	if (pc_write(c, request, strlen(request), deadline) < 0)
		return -1;
	for (;;) {
		size_t i;

		for (i = 3; i < c->rlen; i++) {
			if (memcmp(c->rbuf + i - 3, "\r\n\r\n", 4) != 0)
				continue;
			if (i + 1 >= HEAD_MAX) {
				pc_fail(c, "response head over %d bytes",
				    HEAD_MAX);
				return -1;
			}
			memcpy(head, c->rbuf, i + 1);
			head[i + 1] = '\0';
			pc_consume(c, i + 1);
			if (strncmp(head, "HTTP/1.", 7) != 0 ||
			    head[8] != ' ' || head[9] < '1' || head[9] > '9' ||
			    head[10] < '0' || head[10] > '9' ||
			    head[11] < '0' || head[11] > '9') {
				pc_fail(c, "not an HTTP response: \"%.40s\"",
				    head);
				return -1;
			}
			status = (head[9] - '0') * 100 + (head[10] - '0') * 10 +
			    (head[11] - '0');
			return status;
		}
		if (c->rlen >= HEAD_MAX) {
			pc_fail(c, "response head over %d bytes", HEAD_MAX);
			return -1;
		}
		if (pc_fill(c, deadline) != 1) {
			if (c->rlen == 0 && strcmp(c->err,
			    "the server closed the connection") == 0) {
				c->err[0] = '\0';
				pc_fail(c, "the server closed the connection"
				    " without an answer");
			}
			return -1;
		}
	}
}

/* The value of header name (case-insensitive) in head, blanks trimmed,
 * into out[cap]: 1, or 0 when absent. */
static int
http_header(const char *head, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);
	const char *line = find_crlf(head);

	while (line != NULL && line[2] != '\r') {
		const char *s = line + 2, *e = find_crlf(s);
		size_t i;

		if (e == NULL)
			break;
		for (i = 0; i < nl && s + i < e; i++) {
			int a = (unsigned char)s[i], b = (unsigned char)name[i];

			if (a >= 'A' && a <= 'Z')
				a += 'a' - 'A';
			if (b >= 'A' && b <= 'Z')
				b += 'a' - 'A';
			if (a != b)
				break;
		}
		if (i == nl && s + nl < e && s[nl] == ':') {
			const char *v = s + nl + 1;
			size_t n;

			while (v < e && (*v == ' ' || *v == '\t'))
				v++;
			n = (size_t)(e - v);
			while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
				n--;
			if (n >= cap)
				n = cap - 1;
			memcpy(out, v, n);
			out[n] = '\0';
			return 1;
		}
		line = e;
	}
	return 0;
}

/* The first line of head (its status line), for a message. */
static void
status_line(const char *head, char *out, size_t cap)
{
	size_t n = strcspn(head, "\r\n");

	if (n >= cap)
		n = cap - 1;
	memcpy(out, head, n);
	out[n] = '\0';
}

/* ========================================================================= */
/* 5. DERP                                                                   */
/* ========================================================================= */

/* A frame: its type and length; its payload copied into buf when it fits
 * (*kept = 1), else skipped in pieces (*kept = 0).  1, or pc_fill's 0, -1,
 * -2. */
static int
frame_read(struct pconn *c, uint8_t *type, uint32_t *len, uint8_t *buf,
    int *kept, int64_t deadline)
{
	uint32_t n;
	int r;

	/* Frames already buffered are no reason to run past the deadline:
	 * every frame read checks it. */
	if (now_ms() >= deadline) {
		pc_fail(c, "no answer within %d ms", STEP_MS);
		return -2;
	}
	r = pc_need(c, FRAME_HEADER_BYTES, deadline);
	if (r != 1)
		return r;
	*type = c->rbuf[0];
	n = get_be32(c->rbuf + 1);
	*len = n;
	if (n <= FRAME_KEEP_MAX) {
		r = pc_need(c, FRAME_HEADER_BYTES + (size_t)n, deadline);
		if (r != 1)
			return r;
		memcpy(buf, c->rbuf + FRAME_HEADER_BYTES, n);
		pc_consume(c, FRAME_HEADER_BYTES + (size_t)n);
		*kept = 1;
		return 1;
	}
	pc_consume(c, FRAME_HEADER_BYTES);
	while (n > 0) {
		size_t take;

		if (now_ms() >= deadline) {
			pc_fail(c, "no answer within %d ms", STEP_MS);
			return -2;
		}
		if (c->rlen == 0 && (r = pc_fill(c, deadline)) != 1)
			return r;
		take = c->rlen < n ? c->rlen : n;
		pc_consume(c, take);
		n -= (uint32_t)take;
	}
	*kept = 0;
	return 1;
}

static int
frame_write(struct pconn *c, uint8_t type, const uint8_t *payload,
    size_t len, int64_t deadline)
{
	uint8_t f[FRAME_HEADER_BYTES + FRAME_KEEP_MAX];

	if (len > FRAME_KEEP_MAX)
		return -1;
	f[0] = type;
	put_be32(f + 1, (uint32_t)len);
	if (len > 0)
		memcpy(f + FRAME_HEADER_BYTES, payload, len);
	return pc_write(c, f, FRAME_HEADER_BYTES + len, deadline);
}

/* Why a wait for a frame ended (r from frame_read), into why. */
static void
frame_why(const struct pconn *c, int r, const char *waiting, char *why,
    size_t whylen)
{
	if (r == -2)
		snprintf(why, whylen, "no %s within %d ms", waiting, STEP_MS);
	else
		snprintf(why, whylen, "waiting for %s: %s", waiting, c->err);
}

/*
 * A DERP client's first half: connect, GET /derp with Upgrade: DERP (as
 * Tailscale's client writes it, derp-protocol.md 5.1), a 101, then the
 * ServerKey frame (magic and key).  0, or -1 with why.  *c set either way
 * (NULL when the connection failed).
 */
static int
derp_upgrade(struct probe *p, struct pconn **cp, int64_t deadline, char *why,
    size_t whylen)
{
	char req[512], head[HEAD_MAX], sl[120];
	uint8_t f[FRAME_KEEP_MAX];
	struct pconn *c;
	uint8_t type;
	uint32_t len;
	int status, kept, r;

	*cp = c = pc_open(p, deadline, why, whylen);
	if (c == NULL)
		return -1;
	if (random_bytes(c->sk, KEY_BYTES) != 0) {
		snprintf(why, whylen, "cannot read /dev/urandom");
		return -1;
	}
	c->sk[0] &= 248;
	c->sk[31] = (uint8_t)((c->sk[31] & 127) | 64);
	nacl_x25519_base(c->pk, c->sk);
	snprintf(req, sizeof req, "GET /derp HTTP/1.1\r\nHost: %s\r\n"
	    "User-Agent: derp-probe\r\nConnection: Upgrade\r\n"
	    "Upgrade: DERP\r\n\r\n", p->u.authority);
	status = http_exchange(c, req, head, deadline);
	if (status < 0) {
		snprintf(why, whylen, "GET /derp: %s", c->err);
		return -1;
	}
	if (status != 101) {
		status_line(head, sl, sizeof sl);
		snprintf(why, whylen, "GET /derp answered \"%s\", wanted 101"
		    " Switching Protocols", sl);
		return -1;
	}
	r = frame_read(c, &type, &len, f, &kept, deadline);
	if (r != 1) {
		frame_why(c, r, "ServerKey frame after the 101", why, whylen);
		return -1;
	}
	if (type != FT_SERVER_KEY || !kept ||
	    len < SERVER_KEY_MAGIC_BYTES + KEY_BYTES ||
	    memcmp(f, server_key_magic, SERVER_KEY_MAGIC_BYTES) != 0) {
		snprintf(why, whylen, "first frame is type 0x%02x, %lu bytes:"
		    " not a ServerKey (0x01, magic \"DERP\\xf0\\x9f\\x94\\x91\""
		    " and a 32-byte key)", type, (unsigned long)len);
		return -1;
	}
	memcpy(c->server_pk, f + SERVER_KEY_MAGIC_BYTES, KEY_BYTES);
	return 0;
}

/*
 * The second half: ClientInfo (our key, a nonce, the JSON sealed to the
 * server's key) and the ServerInfo that must come first (derp-protocol.md
 * 7), opened.  The opened JSON into info (for the step's line).  0, or -1
 * with why.
 */
static int
derp_handshake(struct pconn *c, const char *json, int64_t deadline,
    char *info, size_t infolen, char *why, size_t whylen)
{
	uint8_t ci[KEY_BYTES + NACL_NONCE_BYTES + NACL_TAG_BYTES +
	    CLIENT_INFO_JSON_MAX];
	uint8_t f[FRAME_KEEP_MAX], msg[FRAME_KEEP_MAX];
	size_t jl = strlen(json), n;
	uint8_t type;
	uint32_t len;
	int kept, r;

	if (jl > CLIENT_INFO_JSON_MAX) {
		snprintf(why, whylen, "ClientInfo JSON too long");
		return -1;
	}
	memcpy(ci, c->pk, KEY_BYTES);
	if (random_bytes(ci + KEY_BYTES, NACL_NONCE_BYTES) != 0 ||
	    nacl_box_seal(ci + KEY_BYTES + NACL_NONCE_BYTES,
	    (const uint8_t *)json, jl, ci + KEY_BYTES, c->server_pk,
	    c->sk) != 0) {
		snprintf(why, whylen, "cannot seal ClientInfo (no randomness,"
		    " or a low-order server key)");
		return -1;
	}
	if (frame_write(c, FT_CLIENT_INFO, ci, KEY_BYTES + NACL_NONCE_BYTES +
	    NACL_TAG_BYTES + jl, deadline) < 0) {
		snprintf(why, whylen, "sending ClientInfo: %s", c->err);
		return -1;
	}
	r = frame_read(c, &type, &len, f, &kept, deadline);
	if (r == 0) {
		snprintf(why, whylen, "the relay closed the connection after"
		    " ClientInfo (client verification, -verify-clients or"
		    " -verify-client-url, refused our key?)");
		return -1;
	}
	if (r != 1) {
		frame_why(c, r, "ServerInfo frame", why, whylen);
		return -1;
	}
	if (type != FT_SERVER_INFO || !kept ||
	    len < NACL_NONCE_BYTES + NACL_TAG_BYTES) {
		snprintf(why, whylen, "first frame after ClientInfo is type"
		    " 0x%02x (%lu bytes), not ServerInfo (0x03)", type,
		    (unsigned long)len);
		return -1;
	}
	n = len - NACL_NONCE_BYTES - NACL_TAG_BYTES;
	if (nacl_box_open(msg, f + NACL_NONCE_BYTES, len - NACL_NONCE_BYTES, f,
	    c->server_pk, c->sk) != 0) {
		snprintf(why, whylen, "ServerInfo does not open with the"
		    " server key of ServerKey");
		return -1;
	}
	if (n == 0 || msg[0] != '{' || memchr(msg, '\0', n) != NULL) {
		snprintf(why, whylen, "ServerInfo is not a JSON object");
		return -1;
	}
	if (n >= infolen)
		n = infolen - 1;
	memcpy(info, msg, n);
	info[n] = '\0';
	return 0;
}

/* Wait on c for a RecvPacket from src holding want[len]: other frames are
 * skipped.  0, or -1 with why. */
static int
await_packet(struct pconn *c, const uint8_t *src, const uint8_t *want,
    size_t wlen, int64_t deadline, char *why, size_t whylen)
{
	uint8_t f[FRAME_KEEP_MAX];

	for (;;) {
		uint8_t type;
		uint32_t len;
		int kept, r;

		/* Other frames (KeepAlive, ...) may keep coming: the deadline
		 * still ends the wait. */
		r = now_ms() >= deadline ? -2 :
		    frame_read(c, &type, &len, f, &kept, deadline);
		if (r != 1) {
			frame_why(c, r, "RecvPacket with the packet", why,
			    whylen);
			return -1;
		}
		if (type != FT_RECV_PACKET || !kept || len < KEY_BYTES)
			continue;
		if (memcmp(f, src, KEY_BYTES) != 0)
			continue;	/* not ours: another sender's */
		if (len - KEY_BYTES != wlen ||
		    memcmp(f + KEY_BYTES, want, wlen) != 0) {
			snprintf(why, whylen, "the packet arrived altered (%lu"
			    " bytes, sent %lu)", (unsigned long)(len -
			    KEY_BYTES), (unsigned long)wlen);
			return -1;
		}
		return 0;
	}
}

/* Send a random packet from a to b and wait for it on b: 0, or -1. */
static int
packet_one_way(struct pconn *a, struct pconn *b, int64_t deadline,
    char *why, size_t whylen)
{
	uint8_t f[KEY_BYTES + PACKET_BYTES];

	memcpy(f, b->pk, KEY_BYTES);
	if (random_bytes(f + KEY_BYTES, PACKET_BYTES) != 0) {
		snprintf(why, whylen, "cannot read /dev/urandom");
		return -1;
	}
	/* Not the disco magic "TS\xf0\x9f\x92\xac" (derp-protocol.md 10.6):
	 * an ordinary packet. */
	f[KEY_BYTES] = 0;
	if (frame_write(a, FT_SEND_PACKET, f, sizeof f, deadline) < 0) {
		snprintf(why, whylen, "SendPacket: %s", a->err);
		return -1;
	}
	return await_packet(b, a->pk, f + KEY_BYTES, PACKET_BYTES, deadline,
	    why, whylen);
}

/* ========================================================================= */
/* 6. The steps                                                              */
/* ========================================================================= */

static void
step_dns(struct probe *p)
{
	int64_t t0 = now_ms();
	char why[DETAIL_MAX], list[DETAIL_MAX] = "", at[ADDR_TEXT_MAX];
	int i;

	p->naddr = resolve(p->u.host, p->port, p->addr, p->addrlen, ADDRS_MAX,
	    why, sizeof why);
	if (p->naddr < 0) {
		p->naddr = 0;
		step_end(p, "dns", ST_FAIL, t0, "%s", why);
		return;
	}
	p->dns_ok = 1;
	if (p->u.is_ip) {
		step_end(p, "dns", ST_OK, t0, "%s is an IP address",
		    p->u.host);
		return;
	}
	for (i = 0; i < p->naddr; i++) {
		struct sockaddr_storage a = p->addr[i];
		size_t l = strlen(list);

		addr_set_port(&a, 0);
		addr_text(&a, at);
		snprintf(list + l, sizeof list - l, "%s%s", i > 0 ? " " : "",
		    at);
	}
	step_end(p, "dns", ST_OK, t0, "%s: %s", p->u.host, list);
}

/* The tcp step keeps its connection for the tls step. */
static struct pconn *
step_tcp(struct probe *p)
{
	int64_t t0 = now_ms(), deadline = t0 + STEP_MS;
	char why[DETAIL_MAX] = "", at[ADDR_TEXT_MAX];
	struct pconn *c;
	int i;

	if (!p->dns_ok) {
		step_end(p, "tcp", ST_SKIP, t0, "dns failed");
		return NULL;
	}
	for (i = 0; i < p->naddr; i++) {
		size_t l = strlen(why);

		c = pc_new();
		if (c == NULL) {
			step_end(p, "tcp", ST_FAIL, t0, "out of memory");
			return NULL;
		}
		if (pc_connect(c, &p->addr[i], p->addrlen[i], deadline) == 0) {
			p->conn_idx = i;
			p->tcp_ok = 1;
			addr_text(&p->addr[i], at);
			step_end(p, "tcp", ST_OK, t0, "connected to %s", at);
			return c;
		}
		snprintf(why + l, sizeof why - l, "%s%s", l > 0 ? "; " : "",
		    c->err);
		pc_free(c);
	}
	step_end(p, "tcp", ST_FAIL, t0, "%s", why);
	return NULL;
}

static const char *
suite_name(unsigned s)
{
	switch (s) {
	case BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:
		return "ECDHE-ECDSA-AES128-GCM-SHA256";
	case BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:
		return "ECDHE-RSA-AES128-GCM-SHA256";
	case BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256:
		return "ECDHE-ECDSA-CHACHA20-POLY1305";
	case BR_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:
		return "ECDHE-RSA-CHACHA20-POLY1305";
	case BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384:
		return "ECDHE-ECDSA-AES256-GCM-SHA384";
	case BR_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:
		return "ECDHE-RSA-AES256-GCM-SHA384";
	default:
		return "another suite";
	}
}

/* "2026-01-31" for Unix seconds t (gmtime_r and snprintf: strftime
 * costs the firmware build 3 KB). */
static void
date_text(int64_t t, char out[DATE_MAX])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL)
		snprintf(out, DATE_MAX, "?");
	else
		snprintf(out, DATE_MAX, "%04d-%02d-%02d", tm.tm_year + 1900,
		    tm.tm_mon + 1, tm.tm_mday);
}

/* The leaf tlsclient.c kept as a one-certificate store (pointing into x):
 * 1, or 0 when there is none whole. */
static int
leaf_store(const struct px509 *x, struct cert_store *cs)
{
	memset(cs, 0, sizeof *cs);
	if (!x->ended || x->in.leaf_too_big || x->in.cert_no == 0 ||
	    x->in.leaf_len == 0)
		return 0;
	cs->chain[0].data = (unsigned char *)(uintptr_t)x->in.leaf;
	cs->chain[0].data_len = x->in.leaf_len;
	cs->chain_len = 1;
	return 1;
}

static void
leaf_pin(const struct px509 *x, char hex[2 * KEY_BYTES + 1])
{
	uint8_t h[br_sha256_SIZE];
	br_sha256_context sc;

	br_sha256_init(&sc);
	br_sha256_update(&sc, x->in.leaf, x->in.leaf_len);
	br_sha256_out(&sc, h);
	hex_encode(hex, h, sizeof h);
}

/* Why the handshake of c failed, as the tls step says it. */
static void
tls_why(const struct probe *p, const struct pconn *c, char *why,
    size_t whylen)
{
	const struct px509 *x = &c->x;
	int e = br_ssl_engine_last_error(&c->cc.eng);
	struct cert_store cs;
	char pin[2 * KEY_BYTES + 1], wanted[2 * KEY_BYTES + 1], d[DATE_MAX];
	int64_t nb, na, now = (int64_t)time(NULL);
	int have = leaf_store(x, &cs);

	if (!x->ended || (int)x->in_err == 0 || !have) {
		/* A plain HTTP server waits for a request head: the
		 * ClientHello gets no answer. */
		snprintf(why, whylen, "TLS handshake with %.100s: %s%s",
		    p->u.host, c->err[0] != '\0' ? c->err : tls_error_text(e),
		    strncmp(c->err, "no answer", 9) == 0 ? " (a plain HTTP"
		    " relay? try an http:// URL)" : "");
		return;
	}
	leaf_pin(x, pin);
	if (p->tls_mode == TM_PIN) {
		hex_encode(wanted, p->pin, KEY_BYTES);
		snprintf(why, whylen, "certificate pin mismatch: the server's"
		    " leaf is sha256-raw:%s, -pin wants sha256-raw:%s", pin,
		    wanted);
		return;
	}
	switch (x->in_err) {
	case BR_ERR_X509_EXPIRED:
		if (cert_leaf_validity(&cs, &nb, &na) == 0 && na < now) {
			date_text(na, d);
			snprintf(why, whylen, "certificate expired on %s", d);
		} else if (cert_leaf_validity(&cs, &nb, &na) == 0) {
			date_text(nb, d);
			snprintf(why, whylen, "certificate not valid before"
			    " %s (check this machine's clock)", d);
		} else {
			snprintf(why, whylen, "certificate expired or not yet"
			    " valid");
		}
		return;
	case BR_ERR_X509_BAD_SERVER_NAME:
		snprintf(why, whylen, "certificate is not valid for %s (no"
		    " matching %s SAN)", p->u.host, p->u.is_ip ? "IP address" :
		    "DNS name");
		return;
	case BR_ERR_X509_NOT_TRUSTED:
		snprintf(why, whylen, "certificate not trusted: no chain to a"
		    " root of %s (self-signed? its pin is sha256-raw:%s)",
		    p->ca_file != NULL ? p->ca_file : TRUST_BUNDLE, pin);
		return;
	default:
		snprintf(why, whylen, "certificate refused: %s (BearSSL error"
		    " %u)", tls_error_text((int)x->in_err), x->in_err);
		return;
	}
}

static void
step_tls(struct probe *p, struct pconn *c)
{
	int64_t t0 = now_ms(), deadline = t0 + STEP_MS, nb, na;
	int64_t now = (int64_t)time(NULL);
	br_ssl_session_parameters sp;
	struct cert_store cs;
	char why[DETAIL_MAX], how[DETAIL_MAX], d[DATE_MAX];
	long days;

	if (!p->u.https) {
		p->tls_ok = 1;
		step_end(p, "tls", ST_SKIP, t0, "plain http:// URL");
		return;
	}
	if (c == NULL) {
		step_end(p, "tls", ST_SKIP, t0, "%s", p->dns_ok ? "tcp failed" :
		    "dns failed");
		return;
	}
	if (p->tls_mode == TM_CA && p->anchors.n == 0) {
		char err[300];

		if (tlsc_anchors_load(&p->anchors, TRUST_BUNDLE, err,
		    sizeof err) != 0) {
			step_end(p, "tls", ST_FAIL, t0, "no trust anchors: %s"
			    " (give -ca-file, -pin or -insecure)", err);
			return;
		}
	}
	if (pc_tls(p, c, deadline) < 0) {
		tls_why(p, c, why, sizeof why);
		step_end(p, "tls", ST_FAIL, t0, "%s", why);
		return;
	}
	if (!leaf_store(&c->x, &cs) ||
	    cert_leaf_validity(&cs, &nb, &na) != 0) {
		step_end(p, "tls", ST_FAIL, t0, "the server's leaf certificate"
		    " could not be read (over %d bytes, or no validity)",
		    TLSC_LEAF_MAX);
		return;
	}
	/* A pin or -insecure skips BearSSL's validity and name checks;
	 * Tailscale's client still checks both for a pin (derp-protocol.md
	 * 4.1, case 3). */
	date_text(na, d);
	if (na < now) {
		step_end(p, "tls", ST_FAIL, t0, "certificate expired on %s", d);
		return;
	}
	if (nb > now) {
		date_text(nb, d);
		step_end(p, "tls", ST_FAIL, t0, "certificate not valid before"
		    " %s (check this machine's clock)", d);
		return;
	}
	if (p->tls_mode == TM_PIN && !cert_matches_host(&cs, p->u.host)) {
		step_end(p, "tls", ST_FAIL, t0, "certificate is not valid for"
		    " %s (pin matched, but Tailscale clients also check the"
		    " name)", p->u.host);
		return;
	}
	days = (long)((na - now) / 86400);
	if (p->tls_mode == TM_PIN)
		snprintf(how, sizeof how, "pin sha256-raw matched, name %s",
		    p->u.host);
	else if (p->tls_mode == TM_INSECURE)
		snprintf(how, sizeof how, "NOT checked (-insecure), name %s"
		    " %s", p->u.host, cert_matches_host(&cs, p->u.host) ?
		    "matches" : "does NOT match");
	else
		snprintf(how, sizeof how, "chain to %s, name %s",
		    p->ca_file != NULL ? p->ca_file : TRUST_BUNDLE, p->u.host);
	br_ssl_engine_get_session_parameters(&c->cc.eng, &sp);
	p->tls_ok = 1;
	step_end(p, "tls", ST_OK, t0, "TLS 1.2 %s; certificate: %s; expires"
	    " %s (%ld days)", suite_name(sp.cipher_suite), how, d, days);
}

/* Why a step that needs the main port cannot run, or NULL. */
static const char *
main_port_missing(const struct probe *p)
{
	if (!p->tcp_ok)
		return p->dns_ok ? "tcp failed" : "dns failed";
	if (!p->tls_ok)
		return "tls failed";
	return NULL;
}

static void
step_home(struct probe *p)
{
	int64_t t0 = now_ms(), deadline = t0 + STEP_MS;
	const char *miss = main_port_missing(p);
	char req[600], head[HEAD_MAX], why[DETAIL_MAX], v[200], sl[120];
	struct pconn *c;
	int status;

	if (miss != NULL) {
		step_end(p, "home", ST_SKIP, t0, "%s", miss);
		return;
	}
	c = pc_open(p, deadline, why, sizeof why);
	if (c == NULL) {
		step_end(p, "home", ST_FAIL, t0, "%s", why);
		return;
	}
	snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: %s\r\n"
	    "User-Agent: derp-probe\r\nConnection: close\r\n\r\n",
	    p->u.authority);
	status = http_exchange(c, req, head, deadline);
	if (status < 0) {
		step_end(p, "home", ST_FAIL, t0, "GET /: %s", c->err);
	} else if (status == 200) {
		if (!http_header(head, "Content-Type", v, sizeof v))
			snprintf(v, sizeof v, "no Content-Type");
		step_end(p, "home", ST_OK, t0, "GET / 200 (%s)", v);
	} else if (status >= 300 && status < 400 &&
	    http_header(head, "Location", v, sizeof v)) {
		/* derper's -home=URL: every unmatched path redirects. */
		step_end(p, "home", ST_OK, t0, "GET / %d to %s (-home=URL)",
		    status, v);
	} else {
		status_line(head, sl, sizeof sl);
		step_end(p, "home", ST_FAIL, t0, "GET / answered \"%s\","
		    " wanted 200", sl);
	}
	pc_free(c);
}

/*
 * GET /generate_204 with a fresh challenge on a connection to (ss, len),
 * TLS as the URL says when tls: NULL when it answered 204 with
 * "X-Tailscale-Response: response <challenge>" (derper-compat.md 4.3),
 * else why.  host_hdr: the Host header.
 */
static const char *
check_204(struct probe *p, const struct sockaddr_storage *ss, socklen_t len,
    int tls, const char *host_hdr, int64_t deadline)
{
	static char why[DETAIL_MAX];
	uint8_t rnd[8];
	char tok[CHALLENGE_MAX], want[CHALLENGE_MAX + 16], got[200];
	char req[700], head[HEAD_MAX], sl[120], hex[17];
	struct pconn *c = pc_new();
	int status;

	if (c == NULL)
		return "out of memory";
	if (random_bytes(rnd, sizeof rnd) != 0) {
		pc_free(c);
		return "cannot read /dev/urandom";
	}
	hex_encode(hex, rnd, sizeof rnd);
	snprintf(tok, sizeof tok, "ts_probe_%s", hex);
	if (pc_connect(c, ss, len, deadline) < 0 ||
	    (tls && pc_tls(p, c, deadline) < 0)) {
		snprintf(why, sizeof why, "%s", c->err);
		pc_free(c);
		return why;
	}
	snprintf(req, sizeof req, "GET /generate_204 HTTP/1.1\r\nHost: %s\r\n"
	    "User-Agent: derp-probe\r\nConnection: close\r\n"
	    "X-Tailscale-Challenge: %s\r\n\r\n", host_hdr, tok);
	status = http_exchange(c, req, head, deadline);
	snprintf(want, sizeof want, "response %s", tok);
	if (status < 0) {
		snprintf(why, sizeof why, "GET /generate_204: %s", c->err);
	} else if (status != 204) {
		status_line(head, sl, sizeof sl);
		snprintf(why, sizeof why, "GET /generate_204 answered \"%s\","
		    " wanted 204 (a captive portal in the way?)", sl);
	} else if (!http_header(head, "X-Tailscale-Response", got,
	    sizeof got)) {
		snprintf(why, sizeof why, "204 without X-Tailscale-Response"
		    " (challenge %s): clients take the relay for a captive"
		    " portal", tok);
	} else if (strcmp(got, want) != 0) {
		snprintf(why, sizeof why, "X-Tailscale-Response is \"%.100s\","
		    " wanted \"%s\"", got, want);
	} else {
		pc_free(c);
		return NULL;
	}
	pc_free(c);
	return why;
}

static void
step_generate_204(struct probe *p)
{
	int64_t t0 = now_ms();
	const char *miss = main_port_missing(p), *why;

	if (miss != NULL) {
		step_end(p, "generate_204", ST_SKIP, t0, "%s", miss);
		return;
	}
	why = check_204(p, &p->addr[p->conn_idx], p->addrlen[p->conn_idx],
	    p->u.https, p->u.authority, t0 + STEP_MS);
	if (why != NULL)
		step_end(p, "generate_204", ST_FAIL, t0, "%s", why);
	else
		step_end(p, "generate_204", ST_OK, t0, "204 with the"
		    " challenge's response on port %d", p->port);
}

static void
step_port80(struct probe *p)
{
	int64_t t0 = now_ms();
	struct sockaddr_storage ss;
	char host[300], at[ADDR_TEXT_MAX];
	const char *why;
	int v6;

	if (!p->u.https) {
		step_end(p, "port80", ST_SKIP, t0, "plain http:// URL:"
		    " generate_204 was checked on its port %d", p->port);
		return;
	}
	if (p->http_port < 0) {
		step_end(p, "port80", ST_SKIP, t0, "-http-port -1");
		return;
	}
	if (!p->dns_ok) {
		step_end(p, "port80", ST_SKIP, t0, "dns failed");
		return;
	}
	/* The address tcp used, else the first (tcp may have failed on the
	 * main port alone). */
	ss = p->addr[p->tcp_ok ? p->conn_idx : 0];
	addr_set_port(&ss, p->http_port);
	addr_text(&ss, at);
	v6 = strchr(p->u.host, ':') != NULL;
	/* Go's client writes no ":80" in Host. */
	if (p->http_port == HTTP_DEFAULT_PORT)
		snprintf(host, sizeof host, "%s%s%s", v6 ? "[" : "",
		    p->u.host, v6 ? "]" : "");
	else
		snprintf(host, sizeof host, "%s%s%s:%d", v6 ? "[" : "",
		    p->u.host, v6 ? "]" : "", p->http_port);
	why = check_204(p, &ss, p->addrlen[p->tcp_ok ? p->conn_idx : 0], 0,
	    host, t0 + STEP_MS);
	if (why != NULL)
		step_end(p, "port80", ST_FAIL, t0, "http://%s: %s", host, why);
	else
		step_end(p, "port80", ST_OK, t0, "http://%s/generate_204: 204"
		    " with the challenge's response", host);
}

static void
step_derp(struct probe *p)
{
	static const char json[] =
	    "{\"version\":2,\"CanAckPings\":false,\"IsProber\":true}";
	int64_t t0 = now_ms();
	const char *miss = main_port_missing(p);
	char why[DETAIL_MAX], hex[2 * KEY_BYTES + 1], info[120];

	p->c1_why = p->c2_why = miss;
	if (miss != NULL) {
		step_end(p, "derp_upgrade", ST_SKIP, t0, "%s", miss);
		step_end(p, "handshake", ST_SKIP, t0, "%s", miss);
		step_end(p, "client2", ST_SKIP, t0, "%s", miss);
		return;
	}
	p->c1_why = p->c2_why = "derp_upgrade failed";
	if (derp_upgrade(p, &p->c1, t0 + STEP_MS, why, sizeof why) < 0) {
		step_end(p, "derp_upgrade", ST_FAIL, t0, "%s", why);
		step_end(p, "handshake", ST_SKIP, t0, "derp_upgrade failed");
		step_end(p, "client2", ST_SKIP, t0, "derp_upgrade failed");
		return;
	}
	p->c1_why = p->c2_why = "handshake failed";
	p->c1_up = 1;
	hex_encode(hex, p->c1->server_pk, KEY_BYTES);
	step_end(p, "derp_upgrade", ST_OK, t0, "101, ServerKey nodekey:%s",
	    hex);

	t0 = now_ms();
	if (derp_handshake(p->c1, json, t0 + STEP_MS, info, sizeof info, why,
	    sizeof why) < 0) {
		step_end(p, "handshake", ST_FAIL, t0, "%s", why);
		step_end(p, "client2", ST_SKIP, t0, "handshake failed");
		return;
	}
	p->c1_ready = 1;
	p->c1_why = NULL;
	p->c2_why = "client2 failed";
	step_end(p, "handshake", ST_OK, t0, "ClientInfo accepted, ServerInfo"
	    " %s", info);

	t0 = now_ms();
	if (derp_upgrade(p, &p->c2, t0 + STEP_MS, why, sizeof why) < 0 ||
	    derp_handshake(p->c2, json, t0 + STEP_MS, info, sizeof info, why,
	    sizeof why) < 0) {
		step_end(p, "client2", ST_FAIL, t0, "%s", why);
		return;
	}
	if (memcmp(p->c1->server_pk, p->c2->server_pk, KEY_BYTES) != 0) {
		step_end(p, "client2", ST_FAIL, t0, "its ServerKey differs"
		    " from client 1's (a load balancer over several relays?)");
		return;
	}
	p->c2_ready = 1;
	p->c2_why = NULL;
	step_end(p, "client2", ST_OK, t0, "upgraded and handshaken");
}

static void
step_packets(struct probe *p)
{
	int64_t t0 = now_ms(), t1, t2;
	char why[DETAIL_MAX];

	if (!p->c2_ready) {
		step_end(p, "packets", ST_SKIP, t0, "%s", p->c2_why);
		return;
	}
	if (packet_one_way(p->c1, p->c2, t0 + STEP_MS, why, sizeof why) < 0) {
		step_end(p, "packets", ST_FAIL, t0, "1 -> 2: %s", why);
		return;
	}
	t1 = now_ms();
	if (packet_one_way(p->c2, p->c1, t1 + STEP_MS, why, sizeof why) < 0) {
		step_end(p, "packets", ST_FAIL, t0, "2 -> 1: %s", why);
		return;
	}
	t2 = now_ms();
	step_end(p, "packets", ST_OK, t0, "%d bytes 1 -> 2 (%ld ms) and 2 ->"
	    " 1 (%ld ms), intact", PACKET_BYTES, (long)(t1 - t0),
	    (long)(t2 - t1));
}

static void
step_ping(struct probe *p)
{
	int64_t t0 = now_ms(), deadline = t0 + STEP_MS, us0;
	uint8_t data[PING_BYTES], f[FRAME_KEEP_MAX];
	char why[DETAIL_MAX];
	long rtt;

	if (!p->c1_ready) {
		step_end(p, "ping", ST_SKIP, t0, "%s", p->c1_why);
		return;
	}
	if (random_bytes(data, sizeof data) != 0) {
		step_end(p, "ping", ST_FAIL, t0, "cannot read /dev/urandom");
		return;
	}
	us0 = now_us();
	if (frame_write(p->c1, FT_PING, data, sizeof data, deadline) < 0) {
		step_end(p, "ping", ST_FAIL, t0, "sending Ping: %s",
		    p->c1->err);
		return;
	}
	for (;;) {
		uint8_t type;
		uint32_t len;
		int kept, r;

		r = now_ms() >= deadline ? -2 :
		    frame_read(p->c1, &type, &len, f, &kept, deadline);
		if (r != 1) {
			frame_why(p->c1, r, "Pong", why, sizeof why);
			step_end(p, "ping", ST_FAIL, t0, "%s", why);
			return;
		}
		if (type == FT_PONG && kept && len == PING_BYTES &&
		    memcmp(f, data, PING_BYTES) == 0)
			break;
		if (type == FT_PONG) {
			step_end(p, "ping", ST_FAIL, t0, "Pong (%lu bytes) does"
			    " not echo the Ping's 8 bytes", (unsigned long)len);
			return;
		}
	}
	rtt = (long)(now_us() - us0);
	step_end(p, "ping", ST_OK, t0, "Pong echoed, round trip %ld.%03ld ms",
	    rtt / 1000, rtt % 1000);
}

static void
step_mesh_watch(struct probe *p)
{
	int64_t t0 = now_ms(), deadline = t0 + STEP_MS;
	char json[CLIENT_INFO_JSON_MAX], why[DETAIL_MAX], info[120];
	uint8_t f[FRAME_KEEP_MAX];
	struct pconn *w = NULL;
	int seen1 = 0, seen2 = 0, peers = 0;

	if (!p->have_mesh) {
		step_end(p, "mesh_watch", ST_SKIP, t0, "no -mesh-key");
		return;
	}
	if (!p->c2_ready) {
		step_end(p, "mesh_watch", ST_SKIP, t0, "%s", p->c2_why);
		return;
	}
	snprintf(json, sizeof json, "{\"version\":2,\"meshKey\":\"%s\","
	    "\"CanAckPings\":false,\"IsProber\":true}", p->mesh_hex);
	if (derp_upgrade(p, &w, deadline, why, sizeof why) < 0 ||
	    derp_handshake(w, json, deadline, info, sizeof info, why,
	    sizeof why) < 0) {
		step_end(p, "mesh_watch", ST_FAIL, t0, "watcher: %s", why);
		pc_free(w);
		return;
	}
	if (frame_write(w, FT_WATCH_CONNS, NULL, 0, deadline) < 0) {
		step_end(p, "mesh_watch", ST_FAIL, t0, "sending WatchConns: %s",
		    w->err);
		pc_free(w);
		return;
	}
	while (!(seen1 && seen2)) {
		uint8_t type;
		uint32_t len;
		int kept, r;

		r = now_ms() >= deadline ? -2 :
		    frame_read(w, &type, &len, f, &kept, deadline);
		if (r == 0) {
			step_end(p, "mesh_watch", ST_FAIL, t0, "the relay"
			    " closed the connection after WatchConns: it did"
			    " not take -mesh-key as its mesh key (wrong key,"
			    " or none configured)");
			pc_free(w);
			return;
		}
		if (r != 1) {
			frame_why(w, r, "PeerPresent for clients 1 and 2", why,
			    sizeof why);
			step_end(p, "mesh_watch", ST_FAIL, t0, "%s (saw %s)",
			    why, seen1 ? "client 1's only" : seen2 ?
			    "client 2's only" : "neither");
			pc_free(w);
			return;
		}
		if (type != FT_PEER_PRESENT || !kept || len < PEER_PRESENT_MIN)
			continue;
		peers++;
		if (memcmp(f, p->c1->pk, KEY_BYTES) == 0)
			seen1 = 1;
		if (memcmp(f, p->c2->pk, KEY_BYTES) == 0)
			seen2 = 1;
	}
	pc_free(w);
	step_end(p, "mesh_watch", ST_OK, t0, "PeerPresent for clients 1 and 2"
	    " (%d PeerPresent read)", peers);
}

/* One STUN binding request to ss (resent every STUN_RESEND_MS): NULL with
 * the mapped address in mapped, or why. */
static const char *
stun_exchange(const struct sockaddr_storage *ss, socklen_t len,
    char mapped[ADDR_TEXT_MAX], int64_t deadline)
{
	static char why[DETAIL_MAX];
	uint8_t txid[STUN_TXID_BYTES], req[STUN_REQUEST_BYTES], buf[1500];
	char at[ADDR_TEXT_MAX];
	int64_t next = 0;
	int fd, sent = 0, wrong_txid = 0;

	addr_text(ss, at);
	if (random_bytes(txid, sizeof txid) != 0)
		return "cannot read /dev/urandom";
	stun_build_request(req, txid);
	fd = socket(ss->ss_family, SOCK_DGRAM, 0);
	if (fd < 0) {
		snprintf(why, sizeof why, "socket: %s", strerror(errno));
		return why;
	}
	/* Connected: only the server's datagrams arrive, and an ICMP port
	 * unreachable comes back as ECONNREFUSED. */
	if (set_nonblock(fd) < 0 ||
	    connect(fd, (const struct sockaddr *)ss, len) < 0) {
		snprintf(why, sizeof why, "connect %s: %s", at,
		    strerror(errno));
		close(fd);
		return why;
	}
	for (;;) {
		uint8_t rtx[STUN_TXID_BYTES], addr[16];
		size_t alen = 0;
		uint16_t port = 0;
		ssize_t r;
		int w;

		/* First: datagrams that keep coming (wrong ones, a flood)
		 * do not hold the step past its deadline. */
		if (now_ms() >= deadline) {
			snprintf(why, sizeof why, "no STUN answer from %s within"
			    " %d ms (%d requests%s)", at, STEP_MS, sent,
			    wrong_txid ? "; answers with another transaction"
			    " ID were ignored" : "");
			break;
		}
		if (now_ms() >= next) {
			if (send(fd, req, sizeof req, 0) < 0 &&
			    errno != ECONNREFUSED) {
				snprintf(why, sizeof why, "send to %s: %s", at,
				    strerror(errno));
				break;
			}
			sent++;
			next = now_ms() + STUN_RESEND_MS;
		}
		w = wait_fd(fd, POLLIN, next < deadline ? next : deadline);
		if (w == -1) {
			snprintf(why, sizeof why, "poll: %s", strerror(errno));
			break;
		}
		if (w == -2)
			continue;	/* resend, or the deadline above */
		r = recv(fd, buf, sizeof buf, 0);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN ||
			    errno == EWOULDBLOCK)
				continue;
			snprintf(why, sizeof why, "no STUN server at %s (%s)",
			    at, strerror(errno));
			break;
		}
		if (stun_parse_response(buf, (size_t)r, rtx, addr, &alen,
		    &port) != 0)
			continue;	/* not a binding success */
		if (memcmp(rtx, txid, sizeof txid) != 0) {
			wrong_txid++;
			continue;
		}
		{
			struct sockaddr_storage m;

			memset(&m, 0, sizeof m);
			if (alen == 16) {
				struct sockaddr_in6 *m6 = (void *)&m;

				m6->sin6_family = AF_INET6;
				memcpy(&m6->sin6_addr, addr, 16);
			} else {
				struct sockaddr_in *m4 = (void *)&m;

				m4->sin_family = AF_INET;
				memcpy(&m4->sin_addr, addr, 4);
			}
			addr_set_port(&m, port);
			addr_text(&m, mapped);
		}
		close(fd);
		return NULL;
	}
	close(fd);
	return why;
}

static void
step_stun(struct probe *p)
{
	static const char *const names[2] = { "stun4", "stun6" };
	static const int fams[2] = { AF_INET, AF_INET6 };
	struct sockaddr_storage a[ADDRS_MAX];
	socklen_t al[ADDRS_MAX];
	char why[DETAIL_MAX], mapped[ADDR_TEXT_MAX], at[ADDR_TEXT_MAX];
	int64_t t0 = now_ms();
	int n, i, k;

	if (p->stun_off) {
		step_end(p, "stun4", ST_SKIP, t0, "-stun none");
		step_end(p, "stun6", ST_SKIP, t0, "-stun none");
		return;
	}
	if (strcmp(p->stun_host, p->u.host) == 0) {
		/* The URL's host: dns's answer. */
		if (!p->dns_ok) {
			step_end(p, "stun4", ST_SKIP, t0, "dns failed");
			step_end(p, "stun6", ST_SKIP, t0, "dns failed");
			return;
		}
		n = p->naddr;
		for (i = 0; i < n; i++) {
			a[i] = p->addr[i];
			al[i] = p->addrlen[i];
			addr_set_port(&a[i], p->stun_port);
		}
	} else {
		n = resolve(p->stun_host, p->stun_port, a, al, ADDRS_MAX, why,
		    sizeof why);
		if (n < 0) {
			step_end(p, "stun4", ST_FAIL, t0, "%s", why);
			step_end(p, "stun6", ST_FAIL, t0, "%s", why);
			return;
		}
	}
	for (k = 0; k < 2; k++) {
		const char *e;

		t0 = now_ms();
		for (i = 0; i < n && a[i].ss_family != fams[k]; i++)
			;
		if (i == n) {
			step_end(p, names[k], ST_SKIP, t0, "%s has no IPv%c"
			    " address", p->stun_host, k == 0 ? '4' : '6');
			continue;
		}
		addr_text(&a[i], at);
		e = stun_exchange(&a[i], al[i], mapped, t0 + STEP_MS);
		if (e != NULL)
			step_end(p, names[k], ST_FAIL, t0, "%s", e);
		else
			step_end(p, names[k], ST_OK, t0, "%s mapped us to %s",
			    at, mapped);
	}
}

/* ========================================================================= */
/* 7. Command line                                                           */
/* ========================================================================= */

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: derp probe URL [flags]\n"
	    "  Check a DERP relay end to end, as a Tailscale client sees it.\n"
	    "  URL: https://HOST[:PORT] (TLS, port 443 by default) or\n"
	    "  http://HOST[:PORT] (a plain relay); a bare HOST[:PORT] means"
	    " https.\n"
	    "  -stun HOST:PORT     STUN server (default: the URL's host, port"
	    " 3478);\n"
	    "                      -stun none (or -stun=) skips STUN\n"
	    "  -ca-file FILE       trust the CA certificates of FILE (PEM)"
	    " instead of\n"
	    "                      " TRUST_BUNDLE "\n"
	    "  -pin sha256-raw:HEX trust exactly the leaf certificate with"
	    " this SHA-256\n"
	    "                      (the relay logs it for a self-signed IP"
	    " certificate)\n"
	    "  -insecure           accept any certificate (an expired one still"
	    " fails)\n"
	    "  -http-port N        the plain port-80 listener to check"
	    " /generate_204 on\n"
	    "                      (default 80; -1 skips it)\n"
	    "  -mesh-key FILE      the relay's mesh key (64 hex digits): also"
	    " check the\n"
	    "                      watcher stream (WatchConns, PeerPresent)\n"
	    "  -json               one JSON object on stdout instead of"
	    " lines\n"
	    "Exit status: 0 when every step passed or was skipped, 1 when one"
	    " failed,\n"
	    "2 for a usage error.\n");
}

static int
parse_bool(const char *v, int *out)
{
	static const char *const t[] = { "1", "t", "T", "TRUE", "true",
	    "True" };
	static const char *const f[] = { "0", "f", "F", "FALSE", "false",
	    "False" };
	size_t i;

	for (i = 0; i < sizeof t / sizeof t[0]; i++) {
		if (strcmp(v, t[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcmp(v, f[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

/* -stun's value: none, "", HOST, HOST:PORT, [V6]:PORT, V6.  0, or -1. */
static int
parse_stun(struct probe *p, const char *v)
{
	const char *colon = strrchr(v, ':');
	size_t hl;
	long port = STUN_DEFAULT_PORT;

	if (v[0] == '\0' || strcmp(v, "none") == 0) {
		p->stun_off = 1;
		return 0;
	}
	p->stun_off = 0;
	if (v[0] == '[') {
		const char *rb = strchr(v, ']');

		if (rb == NULL || (rb[1] != '\0' && rb[1] != ':'))
			return -1;
		hl = (size_t)(rb - v - 1);
		if (rb[1] == ':' && (port = parse_port(rb + 2, 0)) == 0)
			return -1;
		v++;
	} else if (colon != NULL && strchr(v, ':') == colon) {
		hl = (size_t)(colon - v);
		if ((port = parse_port(colon + 1, 0)) == 0)
			return -1;
	} else {
		hl = strlen(v);		/* a host, or a bare IPv6 literal */
	}
	if (hl == 0 || hl >= sizeof p->stun_host || port < 1 || port > 65535)
		return -1;
	memcpy(p->stun_host, v, hl);
	p->stun_host[hl] = '\0';
	p->stun_port = (int)port;
	return 0;
}

/* The mesh key file: 64 hex digits, blanks around them ignored (as the
 * relay's -mesh-psk-file).  0, or -1 with err. */
static int
read_mesh_key(struct probe *p, const char *path, char *err, size_t errlen)
{
	char buf[MESH_FILE_MAX + 1];
	uint8_t key[MESH_HEX / 2];
	size_t n, s = 0, i;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		snprintf(err, errlen, "-mesh-key %s: %s", path,
		    strerror(errno));
		return -1;
	}
	n = fread(buf, 1, MESH_FILE_MAX, f);
	fclose(f);
	buf[n] = '\0';
	while (s < n && strchr(" \t\r\n", buf[s]) != NULL && buf[s] != '\0')
		s++;
	while (n > s && strchr(" \t\r\n", buf[n - 1]) != NULL &&
	    buf[n - 1] != '\0')
		n--;
	buf[n] = '\0';
	if (hex_decode(key, buf + s, sizeof key) != 0) {
		snprintf(err, errlen, "-mesh-key %s: not 64 hex digits", path);
		return -1;
	}
	for (i = 0; i < MESH_HEX; i++) {
		char c = buf[s + i];

		p->mesh_hex[i] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' :
		    c);
	}
	p->mesh_hex[MESH_HEX] = '\0';
	return 0;
}

/* The flags and the URL into p: 0, 1 for -h, or -1 (said on stderr). */
static int
parse_args(struct probe *p, int argc, char **argv)
{
	const char *url = NULL, *pin = NULL, *stun = NULL, *mesh = NULL;
	int i, insecure = 0, dash_dash = 0;
	char err[400];

	p->http_port = HTTP_DEFAULT_PORT;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *name, *eq, *val;
		size_t nl;
		int is_bool, bv = 1;

		if (dash_dash || a[0] != '-' || a[1] == '\0') {
			if (url != NULL) {
				fprintf(stderr, "derp probe: one URL only: %s\n",
				    a);
				return -1;
			}
			url = a;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			dash_dash = 1;
			continue;
		}
		name = a + 1 + (a[1] == '-');
		eq = strchr(name, '=');
		nl = eq != NULL ? (size_t)(eq - name) : strlen(name);
#define IS(s) (nl == sizeof(s) - 1 && strncmp(name, s, nl) == 0)
		if (IS("h") || IS("help")) {
			usage(stdout);
			return 1;
		}
		is_bool = IS("json") || IS("insecure");
		if (!is_bool && !(IS("stun") || IS("ca-file") || IS("pin") ||
		    IS("mesh-key") || IS("http-port"))) {
			fprintf(stderr, "derp probe: flag provided but not"
			    " defined: -%.*s\n", (int)nl, name);
			return -1;
		}
		if (eq != NULL) {
			val = eq + 1;
		} else if (is_bool) {
			val = NULL;
		} else if (i + 1 < argc) {
			val = argv[++i];
		} else {
			fprintf(stderr, "derp probe: flag needs an argument:"
			    " -%.*s\n", (int)nl, name);
			return -1;
		}
		if (is_bool && val != NULL && parse_bool(val, &bv) != 0) {
			fprintf(stderr, "derp probe: invalid boolean value"
			    " \"%s\" for -%.*s\n", val, (int)nl, name);
			return -1;
		}
		if (IS("json"))
			p->json = bv;
		else if (IS("insecure"))
			insecure = bv;
		else if (IS("stun"))
			stun = val;
		else if (IS("ca-file"))
			p->ca_file = val;
		else if (IS("pin"))
			pin = val;
		else if (IS("mesh-key"))
			mesh = val;
		else {
			long v = parse_port(val, 1);

			if (v == 0) {
				fprintf(stderr, "derp probe: -http-port %s:"
				    " a port 1..65535, or -1\n", val);
				return -1;
			}
			p->http_port = (int)v;
		}
#undef IS
	}
	if (url == NULL) {
		fprintf(stderr, "derp probe: no URL\n");
		usage(stderr);
		return -1;
	}
	if ((p->ca_file != NULL) + (pin != NULL) + insecure > 1) {
		fprintf(stderr, "derp probe: -ca-file, -pin and -insecure"
		    " exclude each other\n");
		return -1;
	}
	/* A bare host means https, as a DERPMap's HostName does. */
	snprintf(p->url, sizeof p->url, "%s%s", strchr(url, ':') != NULL &&
	    strncmp(strchr(url, ':'), "://", 3) == 0 ?
	    "" : "https://", url);
	if (vurl_parse(p->url, &p->u) != 0) {
		fprintf(stderr, "derp probe: bad URL %s (http[s]://HOST[:PORT]"
		    "[/derp])\n", url);
		return -1;
	}
	p->port = (int)parse_port(p->u.port, 0);
	p->tls_mode = insecure ? TM_INSECURE : pin != NULL ? TM_PIN : TM_CA;
	if (pin != NULL && (strncmp(pin, "sha256-raw:", 11) != 0 ||
	    hex_decode(p->pin, pin + 11, KEY_BYTES) != 0)) {
		fprintf(stderr, "derp probe: -pin %s: want sha256-raw: and 64"
		    " hex digits\n", pin);
		return -1;
	}
	if (p->ca_file != NULL && tlsc_anchors_load(&p->anchors, p->ca_file,
	    err, sizeof err) != 0) {
		fprintf(stderr, "derp probe: -ca-file: %s\n", err);
		return -1;
	}
	if (mesh != NULL) {
		if (read_mesh_key(p, mesh, err, sizeof err) != 0) {
			fprintf(stderr, "derp probe: %s\n", err);
			return -1;
		}
		p->have_mesh = 1;
	}
	p->stun_port = STUN_DEFAULT_PORT;
	snprintf(p->stun_host, sizeof p->stun_host, "%s", p->u.host);
	if (stun != NULL && parse_stun(p, stun) != 0) {
		fprintf(stderr, "derp probe: -stun %s: want HOST:PORT,"
		    " [IPV6]:PORT, or none\n", stun);
		return -1;
	}
	return 0;
}

#define WATCHDOG_TEXT	"the probe ran over its time bound"

/* What the watchdog writes, prepared before alarm(): the handler only
 * write(2)s it (async-signal-safe).  With -json a JSON object, as the
 * report would be: the URL JSON-escaped (6 bytes a byte at most). */
static char watchdog_msg[6 * (VURL_MAX + 16) + 128];
static size_t watchdog_len;

static void
watchdog_prepare(const struct probe *p)
{
	char url[6 * (VURL_MAX + 16) + 1];

	if (p->json) {
		json_escape(url, sizeof url, p->url);
		snprintf(watchdog_msg, sizeof watchdog_msg, "{\"url\":\"%s\","
		    "\"ok\":false,\"error\":\"watchdog: " WATCHDOG_TEXT "\"}\n",
		    url);
	} else {
		snprintf(watchdog_msg, sizeof watchdog_msg, "FAIL watchdog: "
		    WATCHDOG_TEXT "\n");
	}
	watchdog_len = strlen(watchdog_msg);
}

static void
on_watchdog(int sig)
{
	(void)sig;
	if (write(STDOUT_FILENO, watchdog_msg, watchdog_len) < 0)
		_exit(1);
	_exit(1);
}

int
probe_main(int argc, char **argv)
{
	struct probe *p = calloc(1, sizeof *p);
	struct sigaction sa;
	struct pconn *c;
	int rc;

	if (p == NULL) {
		fprintf(stderr, "derp probe: out of memory\n");
		return 1;
	}
	rc = parse_args(p, argc, argv);
	if (rc != 0) {
		tlsc_anchors_free(&p->anchors);
		free(p);
		return rc > 0 ? 0 : 2;
	}
	signal(SIGPIPE, SIG_IGN);
	watchdog_prepare(p);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_watchdog;
	sigaction(SIGALRM, &sa, NULL);
	alarm(WATCHDOG_S);

	step_dns(p);
	c = step_tcp(p);
	step_tls(p, c);
	pc_free(c);
	step_home(p);
	step_generate_204(p);
	step_port80(p);
	step_derp(p);
	step_packets(p);
	step_ping(p);
	step_mesh_watch(p);
	pc_free(p->c1);
	pc_free(p->c2);
	p->c1 = p->c2 = NULL;
	step_stun(p);
	alarm(0);

	if (p->json)
		json_report(p);
	else
		printf("derp probe: %s: %d ok, %d failed, %d skipped\n", p->url,
		    p->n_ok, p->n_fail, p->n_skip);
	fflush(stdout);
	rc = p->n_fail == 0 ? 0 : 1;
	tlsc_anchors_free(&p->anchors);
	free(p);
	return rc;
}
