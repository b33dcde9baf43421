/*
 * derp.c -- a DERP relay server: Tailscale's derper protocol v2, in one C file.
 *
 * Map of this file, in data-path order (grep the banner names):
 *
 *   LIMITS        constants, each derived where it is defined
 *   UTIL          logging, clocks, randomness, big-endian helpers, strings
 *   JSON          ClientInfo, key-file and -rate-config parsing (Go's rules)
 *   POOLS         chunk pool (packets, HTTP heads, ClientInfo), chained buffers
 *   POLLER        the readiness interface (epoll and poll(2) back-ends)
 *   SOCKETS       listen/accept helpers, socket options
 *   CONN          connection slots and their state machine
 *   SERVER STATE  the server struct, slot rings (dirty and paused lists)
 *   TLS           BearSSL server contexts, the SNI policy
 *   OUTPUT        filling a connection's output from its queues, writing
 *   ROUTING       the key table, duplicates, queues, PeerGone
 *   DERP          rate limit, handshake (ClientInfo/ServerInfo), frame reader
 *   HTTP          request parsing, derper's endpoints, the /derp upgrade
 *   CONN (I/O)    the pump (read, TLS records, consume, fill, write), accept,
 *                 close, the dirty and paused lists
 *   STUN          the UDP glue around stun.c
 *   TIMERS        the once-a-tick sweep: deadlines, keepalives, write stalls
 *   KEYS/CERTS    the -c key file, -rate-config, certificate modes; the
 *                 certificate banks (reload without restart), the ACME child
 *                 and the HTTP-01 answers
 *   SERVER        derp_create / derp_run / derp_stop / derp_destroy
 *   FLAGS, MAIN   derper's command line
 *
 * The relay is one thread around one readiness call.  Each loop round: wait for
 * readiness, read and route everything readable, then (like Redis's beforeSleep)
 * fill and flush the output of every connection that got something to send, and
 * once per tick sweep the timers.  Nothing below the SERVER section allocates.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE	/* TCP_KEEPIDLE, TCP_USER_TIMEOUT, IPV6_V6ONLY on glibc/musl */

#include <sys/types.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>	/* PR_SET_NO_NEW_PRIVS */
#endif

#include <bearssl.h>

#include "derp.h"
#ifndef DERP_NO_PROBE
#include "probe.h"
#endif
#include "stun.h"
#include "nacl.h"
#include "x25519.h"
#include "p256.h"
#include "cert.h"
#include "verify.h"
#if !defined(DERP_NO_HOOKTLS) || !defined(DERP_NO_MESH)
#include "tlsclient.h"
#endif
#ifndef DERP_NO_BOOTDNS
#include "bootdns.h"
#endif
#ifndef DERP_NO_ACME
#include "acme.h"
#endif

/* ==================================================================== LIMITS */

#define KEY_BYTES		32
#define FRAME_HEADER_BYTES	5	/* type (1) + big-endian length (4) */
#define MAX_PACKET_BYTES	65536	/* derper's MaxPacketSize */
/* A ClientInfo frame: client key 32 + nonce 24, then a box of >= 16 bytes
 * (checked when opening).  derper refuses more than 256 KiB. */
#define CLIENTINFO_MIN_BYTES	(KEY_BYTES + NACL_NONCE_BYTES)
#define CLIENTINFO_MAX_BYTES	(256 * 1024)
/* Ours: a ClientInfo must fit a connection's input budget (CHUNKS_IN chunks,
 * 10,180 bytes), so no stranger can borrow the spare before registering.
 * Tailscale's clients send about 100 bytes. */
#define CLIENTINFO_OURS_MAX_BYTES (CHUNKS_IN * CHUNK_DATA_BYTES)
#define PING_MIN_BYTES		8
#define PING_MAX_BYTES		1000	/* derper reads at most this much of a Ping */
#define PEERGONE_BYTES		(KEY_BYTES + 1)	/* key + reason; v1.40+ form */
/* A RecvPacket as it sits in a queue: header + source key + packet. */
#define RECV_PREFIX_BYTES	(FRAME_HEADER_BYTES + KEY_BYTES)
/* The disco magic "TS" U+1F4AC; a disco packet is at least 62 bytes long
 * (magic 6 + sender key 32 + nonce 24). */
#define DISCO_MIN_BYTES		62

#define FRAME_SERVER_KEY	0x01
#define FRAME_CLIENT_INFO	0x02
#define FRAME_SERVER_INFO	0x03
#define FRAME_SEND_PACKET	0x04
#define FRAME_RECV_PACKET	0x05
#define FRAME_KEEP_ALIVE	0x06
#define FRAME_NOTE_PREFERRED	0x07
#define FRAME_PEER_GONE		0x08
#define FRAME_PEER_PRESENT	0x09
#define PEER_PRESENT_BYTES	(KEY_BYTES + 16 + 2 + 1)	/* 51 */
#define FRAME_FORWARD_PACKET	0x0a
#define FRAME_WATCH_CONNS	0x10
#define FRAME_CLOSE_PEER	0x11
#define FRAME_PING		0x12
#define FRAME_PONG		0x13

#define PEER_GONE_DISCONNECTED	0x00
#define PEER_GONE_NOT_HERE	0x01

/* Timers, as derper's. */
#define KEEPALIVE_MS		60000	/* KeepAlive ticker ... */
#define KEEPALIVE_JITTER_MS	5000	/* ... plus [0, 5 s) chosen per connection */
#define KEEPALIVE_MIN_MS	1000	/* shortest cfg.keepalive_ms: the sweep is
					 * 4/s, so shorter would not be kept */
#define KEEPALIVE_MAX_MS	3600000
#define CLIENTINFO_TIMEOUT_MS	10000	/* ServerKey sent -> ClientInfo complete */
#define HTTP_READ_TIMEOUT_MS	30000	/* accept -> TLS + request headers */
#define WRITE_TIMEOUT_DEFAULT_MS 2000	/* no write progress with output pending */
#define MESH_WRITE_TIMEOUT_MS	30000	/* ... for a mesh peer, whatever the flag */
#define NOT_HERE_PER_SEC	1	/* NotHere limiter: 1/s ... */
#define NOT_HERE_BURST		3	/* ... burst 3, per sending connection */
/* The sweep runs this often; it bounds how late a deadline fires (a 2 s write
 * timeout fires between 2.0 and 2.25 s) and how long derp_stop() takes. */
#define LOOP_TICK_MS		250
#define PAUSED_RETRY_MS		5	/* wake-ups while reads wait (rate, pool) */

/*
 * Memory.  A connection slot owns its struct, a BearSSL server context (TLS mode)
 * and two byte buffers: the input buffer must hold a whole TLS record, because Go
 * clients never negotiate smaller ones (16384 + 325 = BR_SSL_BUFSIZE_INPUT:
 * 5 header + 16 IV/tag + 48 MAC/padding + 256 slack, BearSSL's derivation); the
 * output buffer holds one outgoing record (16384 + 85).  Plain-HTTP connections
 * use the same two buffers for read() and write().
 */
/* WebSocket (derp-protocol.md 5.4, RFC 6455) */
#define WS_HDR_MAX		14	/* 2 + 8-byte length + 4-byte mask */
#define WS_OUT_HDR		4	/* ours: 0x82, 126, 16-bit length */
#define WS_CTL_MAX		125	/* control payload, RFC 6455 5.5 */
#define WS_MESSAGE_MAX		32768	/* derper's library's read limit */
#define WS_NO_STATUS		1005	/* a close without a status code */
enum { WS_CLOSE_NONE = 0, WS_CLOSE_PENDING, WS_CLOSE_SENT };
#define WS_OP_CONT	0x0
#define WS_OP_TEXT	0x1
#define WS_OP_BINARY	0x2
#define WS_OP_CLOSE	0x8
#define WS_OP_PING	0x9
#define WS_OP_PONG	0xa
#define IBUF_BYTES		BR_SSL_BUFSIZE_INPUT
#define OBUF_BYTES		BR_SSL_BUFSIZE_OUTPUT

/*
 * Chunks.  Everything variable-sized that a connection holds for a while lives
 * in chains of fixed chunks from one pool: queued packets (as the complete
 * RecvPacket frame, so output is a straight copy), request heads split over TLS
 * records, ClientInfo frames, pending raw output (HTTP responses, ServerKey,
 * ServerInfo).  2048-byte chunks hold a 1280-byte WireGuard packet with its
 * 37-byte frame prefix in one chunk; a 64 KiB packet takes 33.
 */
#define CHUNK_BYTES		2048
#define CHUNK_HEADER_BYTES	12	/* next, qnext, len (see struct chunk) */
#define CHUNK_DATA_BYTES	(CHUNK_BYTES - CHUNK_HEADER_BYTES)
/*
 * Chunks reserved per connection slot, in three budgets (see POOLS for the
 * invariants): control output (HTTP responses, 101, ServerKey, ServerInfo:
 * at most 4 KiB at once), TLS ciphertext read ahead of the engine (the read
 * size is cut so that what is left over always fits), and input in progress
 * (a request head of up to 8 KiB, a ClientInfo, a packet being received or
 * being written out).  Beyond its own budget a connection borrows from the
 * shared spare, for at most SPARE_HOLD_MS; queued packets take whatever is
 * free and are reclaimed (the longest queue pays) when a budget needs room.
 */
#define CHUNKS_CTRL		3
#define CHUNKS_RAWIN		8
#define CHUNKS_IN		5
#define CHUNKS_PER_CONN		(CHUNKS_CTRL + CHUNKS_RAWIN + CHUNKS_IN)
/* The spare: 128 chunks (about four 64 KiB packets in flight beyond their
 * senders' budgets) plus one per slot, so its size follows -max-clients. */
#define CHUNKS_SPARE_BASE	128
#define CHUNKS_SPARE_PER_CONN	1
/* A connection holding spare chunks (a large packet or ClientInfo in
 * progress, a large packet being written out) must give them back within
 * this long, or it is closed: the 55 KiB of a 64 KiB packet beyond the IN
 * budget take 5 s at 90 kbit/s. */
#define SPARE_HOLD_MS		5000
#define NIL			0	/* chunk index 0 is never allocated */

#define HTTP_HEAD_MAX_BYTES	8192	/* request line + headers; beyond: 431 */
#define HTTP_HEADERS_MAX	64	/* header lines; beyond: 431 */
#define HTTP_BODY_SKIP_MAX	(256 * 1024)	/* Go discards this much for keep-alive */
/* The largest thing linearised: a ClientInfo (a request head is at most
 * HTTP_HEAD_MAX_BYTES, less). */
#define SCRATCH_BYTES		CLIENTINFO_OURS_MAX_BYTES
typedef char scratch_holds_a_head[SCRATCH_BYTES >= HTTP_HEAD_MAX_BYTES ? 1 : -1];

/*
 * PeerGone bookkeeping: one record per (recipient connection, source key) that
 * has delivered a packet (derper's sentTo).  Each record is paid for by the
 * recipient, or else by the sending connection, from a budget of
 * SENDERS_PER_CONN each, or else by a shared spare; a record nobody can pay
 * for is not kept, and that departure goes unannounced (counted in
 * peer_gone_untracked).  So 32 + 32 per pair of clients, and a recipient whose
 * senders have budget left can hear from any number of them.
 */
#define SENDERS_PER_CONN	32
#define SENDERS_SPARE		1024
#define QUEUE_DEPTH_DEFAULT	32	/* derper's per-client send queue depth */
#define MAX_CLIENTS_DEFAULT	4096	/* ~310 MB reserved worst case, see README */
#define ACCEPTS_PER_ROUND	64	/* accept() calls per listener per round */
/*
 * listen(2)'s queue, which the kernel caps at net.core.somaxconn (4096 on
 * current Linux), as Go's listeners ask for.  Every client of a restarted
 * relay connects at once; a SYN that finds the queue full is dropped and
 * retried by the client 1 s later, then 3 s, 7 s: a lottery, not a line.
 */
#define LISTEN_BACKLOG		65535
/*
 * Unfinished connections (TLS, HTTP request, ClientInfo) at once: 256 full
 * handshakes are ~0.5 s of one core's crypto.  They are grouped by source (an
 * IPv4 address, an IPv6 /64).  At the cap, or when every slot is taken, a
 * newcomer from a source holding fewer than the largest source evicts that
 * source's oldest (among equals, the source that has held that many
 * longest); otherwise it competes with its own source, whose oldest
 * gives way only once it has had HANDSHAKE_GRACE_MS (four round trips of a
 * slow mobile link, far more than any client needs).  The -http-port
 * listener has its own small budget, PORT80_PENDING.
 */
#define MAX_HANDSHAKES_DEFAULT	256
#define HANDSHAKE_GRACE_MS	5000
/*
 * A crowd is not a flood.  When every source holds about as many unfinished
 * handshakes as the next (a relay restart: thousands of clients, one each),
 * a newcomer evicting the oldest would close the handshake nearest its end,
 * and the crowd would churn without ever finishing.  So at the cap a
 * newcomer evicts only from a source holding at least HOG_MARGIN more than
 * its own; otherwise it waits, accepted but not yet read, in one FIFO
 * (server.wait) that starts the oldest as soon as the cap has room, for at
 * most WAIT_MAX_MS (a Tailscale client gives up on a connect after about
 * 10 s anyway).
 *
 * A line is what a stranger with many addresses would fill: idle sockets,
 * one per address, each holding its place.  So what holds the cap or the
 * line without moving gives way to the head of the line: a waiter that has
 * sent nothing by WAIT_IDLE_MS is closed when it reaches the head (every
 * client speaks first: a ClientHello, or a GET), and a holder that has been
 * waiting on its peer for STALL_MS (nothing read for that long and nothing
 * unread: the relay is not the one behind) is evicted for it, as is any
 * holder past HANDSHAKE_GRACE_MS.  A crowd's handshakes never stall (each
 * answers within a round trip), so it is served in order; a stranger's idle
 * sockets leave the line at the rate the relay can look at them.
 */
#define HOG_MARGIN		2
#define WAIT_MAX_MS		15000
#define WAIT_IDLE_MS		2000
#define STALL_MS		2000
#define STALL_SCAN_MS		100	/* a fruitless look for one, at most this often */
#define PORT80_PENDING		32
#define TLS_RECORDS_PER_ROUND	2	/* read(2) calls per connection per round */
#define HS_SLICE_MIN_US		500	/* handshake steps per round, at least (hs_admit) */
/* One read(2) of ciphertext at most: ~2 records.  Each read is also cut to
 * what the engine asks for plus what CHUNKS_RAWIN keeps (tls_feed). */
#define READ_BATCH_BYTES	32768
#define STUN_DATAGRAMS_PER_ROUND 64
#define STUN_RECV_BYTES		2048	/* requests are 40 bytes; longer ones fail CRC */

enum queue_kind { Q_DISCO = 0, Q_OTHER = 1 };

/* ====================================================================== UTIL */

/* "YYYY/MM/DD HH:MM:SS" (sep '/') or "YYYY-MM-DD HH:MM:SS" (sep '-').  Not
 * strftime: in the firmware build it alone links the C library's number
 * scanner, 4 KB. */
static void
tm_text(char *out, size_t cap, const struct tm *tm, char sep)
{
	snprintf(out, cap, "%04d%c%02d%c%02d %02d:%02d:%02d", tm->tm_year +
	    1900, sep, tm->tm_mon + 1, sep, tm->tm_mday, tm->tm_hour,
	    tm->tm_min, tm->tm_sec);
}

/*
 * Where log lines go: the one piece of state a process's relays share, as
 * syslog(3) and stderr are shared.  derp_set_log() sets it before any relay
 * starts (derp's main does for -syslog); stderr with Go's time prefix
 * otherwise.
 */
static void (*log_sink)(void *ctx, const char *line);
static void *log_sink_ctx;

void
derp_set_log(void (*fn)(void *ctx, const char *line), void *ctx)
{
	log_sink = fn;
	log_sink_ctx = ctx;
}

static void
logf_(const char *fmt, ...)
{
	char ts[80], line[1024];
	struct tm tm;
	time_t now = time(NULL);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (log_sink != NULL) {
		log_sink(log_sink_ctx, line);
		return;
	}
	/* Go's log package: local time, "YYYY/MM/DD HH:MM:SS ". */
	if (localtime_r(&now, &tm) != NULL)
		tm_text(ts, sizeof ts, &tm, '/');
	else
		ts[0] = '\0';
	fprintf(stderr, "%s %s\n", ts, line);
}
#define logf logf_

static int64_t
now_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		abort();	/* POSIX guarantees CLOCK_MONOTONIC here */
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
now_us(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		abort();
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint32_t
get_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	    ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static uint64_t
get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void
frame_put_header(uint8_t *p, uint8_t type, uint32_t len)
{
	p[0] = type;
	put_be32(p + 1, len);
}

/*
 * Randomness: one HMAC-DRBG per relay, seeded from the OS at start-up, reseeded
 * now and then.  It supplies box nonces, KeepAlive jitter, the hash seeds and
 * the entropy injected into every TLS engine (so an accept costs no syscall
 * for it).
 */
struct rng {
	br_hmac_drbg_context drbg;
	unsigned uses;
};

static int
os_random(void *buf, size_t len)
{
	int fd;
	size_t got = 0;
	ssize_t n;

	fd = open("/dev/urandom", O_RDONLY);
	if (fd < 0)
		return -1;
	while (got < len) {
		n = read(fd, (uint8_t *)buf + got, len - got);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			close(fd);
			return -1;
		}
		got += (size_t)n;
	}
	close(fd);
	return 0;
}

static int
rng_init(struct rng *r)
{
	uint8_t seed[48];

	if (os_random(seed, sizeof seed) != 0)
		return -1;
	br_hmac_drbg_init(&r->drbg, &br_sha256_vtable, seed, sizeof seed);
	r->uses = 0;
	return 0;
}

static void
rng_bytes(struct rng *r, void *out, size_t len)
{
	uint8_t seed[32];

	if (++r->uses >= 65536) {
		r->uses = 0;
		if (os_random(seed, sizeof seed) == 0)
			br_hmac_drbg_update(&r->drbg, seed, sizeof seed);
	}
	br_hmac_drbg_generate(&r->drbg, out, len);
}

static uint32_t
rng_u32(struct rng *r)
{
	uint8_t b[4];

	rng_bytes(r, b, sizeof b);
	return get_be32(b);
}

static int
is_zero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;
	size_t i;

	for (i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

static int
ascii_lower(int ch)
{
	return (ch >= 'A' && ch <= 'Z') ? ch + 32 : ch;
}

/* Case-insensitive ASCII comparison of a (len bytes) with the C string b. */
static int
ascii_eq_ci(const char *a, size_t len, const char *b)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (b[i] == '\0' || ascii_lower((unsigned char)a[i]) !=
		    ascii_lower((unsigned char)b[i]))
			return 0;
	return b[len] == '\0';
}

/* A bounded string builder for HTTP responses; sticky overflow.  The text is
 * kept NUL-terminated (cap includes the NUL), so a built header block can be
 * passed on as a C string. */
struct sbuf {
	char *p;
	size_t len, cap;
	int overflow;
};

static void
sb_addn(struct sbuf *sb, const char *s, size_t n)
{
	if (sb->overflow || n >= sb->cap - sb->len) {
		sb->overflow = 1;
		return;
	}
	memcpy(sb->p + sb->len, s, n);
	sb->len += n;
	sb->p[sb->len] = '\0';
}

static void
sb_add(struct sbuf *sb, const char *s)
{
	sb_addn(sb, s, strlen(s));
}

static void
sb_add_u64(struct sbuf *sb, uint64_t v)
{
	char tmp[24];
	size_t i = sizeof tmp;

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	sb_addn(sb, tmp + i, sizeof tmp - i);
}

/* A whole-token bucket: burst tokens, one more every per_ms; full at its
 * first use (last_ms 0). */
struct tbucket {
	uint32_t tokens;
	int64_t last_ms;
};

/* A class of connection log lines (LOG): its bucket, and the lines held
 * back since it last reported them. */
struct log_class {
	struct tbucket bucket;
	uint64_t held;
};

static int
tbucket_take(struct tbucket *b, int64_t now, uint32_t burst, int64_t per_ms)
{
	int64_t add;

	if (b->last_ms == 0) {
		b->tokens = burst;
		b->last_ms = now;
	}
	add = (now - b->last_ms) / per_ms;
	if (add > 0) {
		b->tokens = (int64_t)b->tokens + add > (int64_t)burst ? burst :
		    b->tokens + (uint32_t)add;
		b->last_ms += add * per_ms;
	}
	if (b->tokens == 0)
		return 0;
	b->tokens--;
	return 1;
}

/* Equal, in time that depends on n only (a secret compared). */
static int
bytes_equal_ct(const uint8_t *a, const uint8_t *b, size_t n)
{
	uint32_t diff = 0;
	size_t i;

	for (i = 0; i < n; i++)
		diff |= (uint32_t)(a[i] ^ b[i]);
	return (int)(((diff - 1) >> 8) & 1);
}

/* Text into HTML: &, <, >, " escaped. */
static void
html_escape(struct sbuf *sb, const char *t)
{
	for (; *t != '\0'; t++) {
		switch (*t) {
		case '&': sb_add(sb, "&amp;"); break;
		case '<': sb_add(sb, "&lt;"); break;
		case '>': sb_add(sb, "&gt;"); break;
		case '"': sb_add(sb, "&#34;"); break;
		default: sb_addn(sb, t, 1); break;
		}
	}
}

/* ====================================================================== JSON */

/*
 * JSON -- the two documents derper reads with Go's encoding/json: the ClientInfo
 * inside the handshake box (derp-protocol.md 7.2) and the -c key file
 * (derper-compat.md 8); plus the hex helpers for key text (derp-protocol.md 3).
 *
 * Nothing is built or stored: one pass over (buf, len) checks the text with the
 * grammar of Go's scanner and picks out the few known members.  json.Unmarshal
 * fails on a syntax error and on a type mismatch alike, and derper then drops the
 * connection (ClientInfo) or exits (key file), so every error here is just -1.
 * Containers are walked with an explicit bit stack, never by recursion.
 * Needs <stddef.h>, <stdint.h>, <string.h>.
 */

/* Deepest nesting accepted, the top-level object counting as 1.  Go allows 10000;
   clients send flat objects, and 64 lets one uint64_t hold the container stack. */
#define JSON_MAX_DEPTH 64
/* Longest member name compared: "PerClientRateLimitBytesPerSec" (-rate-config) is
   29 bytes, a few more when spelled with a 3-byte KELVIN SIGN or 2-byte LONG S.
   Longer names match no field. */
#define JSON_NAME_MAX 40
/* Go int is 64-bit; ClientInfo.version is only logged, so it saturates to C int. */
#define JSON_INT_MAX ((int)(~0u >> 1))

struct json_cur {
	const unsigned char *p, *end;	/* next byte, one past the last */
};

static void json_ws(struct json_cur *c)
{
	/* JSON whitespace is exactly these four bytes (Go's isSpace). */
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

/* Consumes the literal `lit` ("true", "false", "null") when it comes next. */
static int json_lit(struct json_cur *c, const char *lit)
{
	size_t n = strlen(lit);

	if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0)
		return -1;
	c->p += n;
	return 0;
}

static int json_next_is(const struct json_cur *c, unsigned char ch)
{
	return c->p < c->end && *c->p == ch;
}

/* Value of the 4 hex digits at p (either case), or -1.  Not constant time, but
   only \u escapes use it, and no client escapes the digits of a key. */
static long json_hex4(const unsigned char *p)
{
	long v = 0;
	int i, d;

	for (i = 0; i < 4; i++) {
		d = p[i];
		if (d >= '0' && d <= '9')
			d -= '0';
		else if ((d | 0x20) >= 'a' && (d | 0x20) <= 'f')
			d = (d | 0x20) - 'a' + 10;
		else
			return -1;
		v = v << 4 | d;
	}
	return v;
}

/* Appends one byte to out[0..cap), counting it even when it does not fit. */
static void json_put(unsigned char *out, size_t cap, size_t *n, unsigned long b)
{
	if (*n < cap)
		out[*n] = (unsigned char)b;
	(*n)++;
}

/* Appends rune r as UTF-8: a lead byte, then `more` continuation bytes. */
static void json_put_utf8(unsigned char *out, size_t cap, size_t *n, unsigned long r)
{
	static const unsigned char lead[4] = { 0x00, 0xC0, 0xE0, 0xF0 };
	int more = r < 0x80 ? 0 : r < 0x800 ? 1 : r < 0x10000 ? 2 : 3;

	json_put(out, cap, n, lead[more] | r >> 6 * more);
	while (more-- > 0)
		json_put(out, cap, n, 0x80 | (r >> 6 * more & 0x3F));
}

/*
 * The string at c->p (which must be '"'), decoded as Go's unquote does into
 * out[0..cap) (out may be NULL with cap 0); *n gets the full decoded length, which
 * may exceed cap.  Go's scanner rejects raw bytes below 0x20 and any escape other
 * than \" \\ \/ \b \f \n \r \t \uXXXX.  A \u surrogate that is not a high one
 * followed by a \u low one becomes U+FFFD, not an error.  Bytes >= 0x80 are copied
 * as they are (Go would replace invalid UTF-8 by U+FFFD; no verdict depends on it).
 */
static int json_string(struct json_cur *c, unsigned char *out, size_t cap, size_t *n)
{
	unsigned ch;
	long r, lo;

	*n = 0;
	if (!json_next_is(c, '"'))
		return -1;
	c->p++;
	for (;;) {
		if (c->p == c->end)
			return -1;
		ch = *c->p++;
		if (ch == '"')
			return 0;
		if (ch < 0x20)
			return -1;
		if (ch != '\\') {
			json_put(out, cap, n, ch);
			continue;
		}
		if (c->p == c->end)
			return -1;
		switch (ch = *c->p++) {
		case '"': case '\\': case '/': json_put(out, cap, n, ch); break;
		case 'b': json_put(out, cap, n, '\b'); break;
		case 'f': json_put(out, cap, n, '\f'); break;
		case 'n': json_put(out, cap, n, '\n'); break;
		case 'r': json_put(out, cap, n, '\r'); break;
		case 't': json_put(out, cap, n, '\t'); break;
		case 'u':
			if (c->end - c->p < 4 || (r = json_hex4(c->p)) < 0)
				return -1;
			c->p += 4;
			if (r >= 0xD800 && r <= 0xDFFF) {
				if (r <= 0xDBFF && c->end - c->p >= 6 && c->p[0] == '\\' && c->p[1] == 'u'
				    && (lo = json_hex4(c->p + 2)) >= 0xDC00 && lo <= 0xDFFF) {
					r = 0x10000 + ((r - 0xD800) << 10) + (lo - 0xDC00);
					c->p += 6;
				} else {
					r = 0xFFFD;
				}
			}
			json_put_utf8(out, cap, n, (unsigned long)r);
			break;
		default:
			return -1;
		}
	}
}

static size_t json_digits(struct json_cur *c)
{
	const unsigned char *s = c->p;

	while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
		c->p++;
	return (size_t)(c->p - s);
}

/*
 * A number in JSON grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
 * *is_int says whether strconv.ParseInt(s, 10, 64) would accept it -- what Go
 * requires for an int field: no fraction, no exponent (1.0 and 1e2 are errors),
 * within int64 -- and *v then holds its value.
 */
static int json_number(struct json_cur *c, int64_t *v, int *is_int)
{
	const uint64_t min_mag = (uint64_t)1 << 63;	/* magnitude of INT64_MIN */
	uint64_t mag = 0;
	int neg = 0, over = 0, frac = 0;
	unsigned d;

	if (json_next_is(c, '-')) {
		neg = 1;
		c->p++;
	}
	if (json_next_is(c, '0')) {
		c->p++;
	} else {
		if (c->p == c->end || *c->p < '1' || *c->p > '9')
			return -1;
		while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
			d = *c->p++ - '0';
			if (mag > (UINT64_MAX - d) / 10)
				over = 1;
			else
				mag = mag * 10 + d;
		}
	}
	if (json_next_is(c, '.')) {
		c->p++;
		frac = 1;
		if (json_digits(c) == 0)
			return -1;
	}
	if (json_next_is(c, 'e') || json_next_is(c, 'E')) {
		c->p++;
		frac = 1;
		if (json_next_is(c, '+') || json_next_is(c, '-'))
			c->p++;
		if (json_digits(c) == 0)
			return -1;
	}
	*is_int = !frac && !over && mag <= (neg ? min_mag : min_mag - 1);
	if (*is_int)
		*v = neg && mag ? -(int64_t)(mag - 1) - 1 : (int64_t)mag;
	return 0;
}

/* Any string, number, true, false or null. */
static int json_scalar(struct json_cur *c)
{
	size_t n;
	int64_t v;
	int is_int;

	if (c->p == c->end)
		return -1;
	switch (*c->p) {
	case '"': return json_string(c, NULL, 0, &n);
	case 't': return json_lit(c, "true");
	case 'f': return json_lit(c, "false");
	case 'n': return json_lit(c, "null");
	default: return json_number(c, &v, &is_int);
	}
}

/* A member name, its ':' and the whitespace around them. */
static int json_skip_name(struct json_cur *c)
{
	size_t n;

	json_ws(c);
	if (json_string(c, NULL, 0, &n) < 0)
		return -1;
	json_ws(c);
	if (!json_next_is(c, ':'))
		return -1;
	c->p++;
	return 0;
}

/*
 * Skips one value of any type, checking it fully: Go validates the whole document
 * before it decodes, so an unknown member must still be valid JSON.  `depth` is
 * the nesting of the container holding the value.  Bit i of `obj` is set when the
 * i-th innermost open container is an object.
 */
static int json_skip_value(struct json_cur *c, int depth)
{
	uint64_t obj = 0;
	int open = 0;
	unsigned char ch, close;

	for (;;) {
		json_ws(c);
		if (json_next_is(c, '{') || json_next_is(c, '[')) {
			if (depth + open >= JSON_MAX_DEPTH)
				return -1;
			ch = *c->p++;
			obj = obj << 1 | (ch == '{');
			open++;
			json_ws(c);
			if (!json_next_is(c, ch == '{' ? '}' : ']')) {
				if (ch == '{' && json_skip_name(c) < 0)
					return -1;
				continue;	/* the first element or member value */
			}
			c->p++;		/* empty container */
			obj >>= 1;
			open--;
		} else if (json_scalar(c) < 0) {
			return -1;
		}
		/* A value ended: close containers until one continues with ','. */
		for (;;) {
			if (open == 0)
				return 0;
			json_ws(c);
			if (c->p == c->end)
				return -1;
			ch = *c->p++;
			close = (obj & 1) ? '}' : ']';
			if (ch == ',') {
				if ((obj & 1) && json_skip_name(c) < 0)
					return -1;
				break;
			}
			if (ch != close)
				return -1;
			obj >>= 1;
			open--;
		}
	}
}

/* Called with each member name that fits JSON_NAME_MAX; must consume the value. */
typedef int (*json_member_fn)(void *ctx, const unsigned char *name, size_t n, struct json_cur *c);

/* The members of an object whose '{' has been consumed, through its '}'. */
static int json_members(struct json_cur *c, json_member_fn member, void *ctx)
{
	unsigned char name[JSON_NAME_MAX];
	size_t n;

	json_ws(c);
	if (json_next_is(c, '}')) {
		c->p++;
		return 0;
	}
	for (;;) {
		json_ws(c);
		if (json_string(c, name, sizeof name, &n) < 0)
			return -1;
		json_ws(c);
		if (!json_next_is(c, ':'))
			return -1;
		c->p++;
		json_ws(c);
		if (n <= sizeof name ? member(ctx, name, n, c) < 0 : json_skip_value(c, 1) < 0)
			return -1;
		json_ws(c);
		if (json_next_is(c, '}')) {
			c->p++;
			return 0;
		}
		if (!json_next_is(c, ','))
			return -1;
		c->p++;
	}
}

/*
 * A whole document that must be an object, or null (Go then sets nothing).  Any
 * other top-level value is a type error; bytes after the value a syntax error.
 */
static int json_object(const char *json, size_t len, json_member_fn member, void *ctx)
{
	struct json_cur c;

	c.p = (const unsigned char *)json;
	c.end = c.p + len;
	json_ws(&c);
	if (json_lit(&c, "null") < 0) {
		if (!json_next_is(&c, '{'))
			return -1;
		c.p++;
		if (json_members(&c, member, ctx) < 0)
			return -1;
	}
	json_ws(&c);
	return c.p == c.end ? 0 : -1;
}

/*
 * Member names match as Go's encoding/json matches them (bytes.EqualFold):
 * ASCII letters fold, and so do the only two non-ASCII runes that fold to ASCII,
 * KELVIN SIGN U+212A (to k) and LONG S U+017F (to s).  `lower` is the field name
 * in lower case.
 */
static int json_name_is(const unsigned char *name, size_t n, const char *lower)
{
	size_t i = 0;
	unsigned ch;

	for (; *lower; lower++) {
		if (i == n)
			return 0;
		ch = name[i];
		if (ch >= 'A' && ch <= 'Z')
			ch += 'a' - 'A';
		if (ch == (unsigned char)*lower)
			i++;
		else if (*lower == 'k' && n - i >= 3 && !memcmp(name + i, "\xE2\x84\xAA", 3))
			i += 3;
		else if (*lower == 's' && n - i >= 2 && !memcmp(name + i, "\xC5\xBF", 2))
			i += 2;
		else
			return 0;
	}
	return i == n;
}

/*
 * Hex text of keys, decoded in constant time: no branch or table index depends on
 * a digit.  A range test lo <= x <= hi becomes the sign bit of (x - lo) | (hi - x)
 * in 32-bit arithmetic (all values are below 2^31).  Either case is accepted, as
 * parseHex and hex.Decode accept it.  Returns -1 if any of the 64 is not a digit
 * (out is written all the same).
 */
static int hex_decode32(uint8_t out[32], const char *hex)
{
	uint32_t bad = 0, ch, lc, not_dig, not_alpha, val, hi = 0;
	int i;

	for (i = 0; i < 64; i++) {
		ch = (unsigned char)hex[i];
		lc = ch | 0x20;		/* 'A'..'F' -> 'a'..'f'; '0'..'9' unchanged */
		not_dig = ((ch - '0') | ('9' - ch)) >> 31;
		not_alpha = ((lc - 'a') | ('f' - lc)) >> 31;
		val = ((not_dig - 1) & (ch - '0')) | ((not_alpha - 1) & (lc - 'a' + 10));
		bad |= not_dig & not_alpha;
		if (i & 1)
			out[i >> 1] = (uint8_t)(hi << 4 | val);
		else
			hi = val;
	}
	return -(int)bad;
}

/* Lower-case hex, constant time: 39 = 'a' - '0' - 10 is added when the nibble is
   over 9, taken from the borrow of 9 - v. */
static void hex_encode(char *out, const uint8_t *in, size_t n)
{
	size_t i;
	uint32_t v;

	for (i = 0; i < 2 * n; i++) {
		v = (uint32_t)(in[i >> 1] >> (4 - 4 * (i & 1))) & 15;
		out[i] = (char)('0' + v + (((9 - v) >> 8) & 39));
	}
	out[2 * n] = '\0';
}

/* ---- ClientInfo (derp-protocol.md 7.2) ---- */

struct clientinfo {
	int version;		/* 0 if absent */
	int can_ack_pings;	/* 0/1 */
	int is_prober;		/* 0/1 */
	int has_mesh_key;	/* meshKey present (and valid) */
	uint8_t mesh_key[32];
	char app_name[64];	/* truncated copy (NUL-terminated) -- only for logs */
};

/* A Go bool field: true or false; null leaves it as it was; anything else is a
   type error. */
static int json_bool(struct json_cur *c, int *out)
{
	if (json_lit(c, "true") == 0)
		*out = 1;
	else if (json_lit(c, "false") == 0)
		*out = 0;
	else if (json_lit(c, "null") < 0)
		return -1;
	return 0;
}

static int clientinfo_member(void *ctx, const unsigned char *name, size_t n, struct json_cur *c)
{
	struct clientinfo *ci = ctx;
	unsigned char hex[64];
	int64_t v;
	int is_int;
	size_t len, i;

	if (json_name_is(name, n, "meshkey")) {
		/* key.DERPMesh.UnmarshalJSON decodes a string and ignores that error, so a
		   non-string (null too) is "" and fails its check of exactly 64 digits. */
		if (!json_next_is(c, '"') || json_string(c, hex, sizeof hex, &len) < 0 || len != 64
		    || hex_decode32(ci->mesh_key, (const char *)hex) < 0)
			return -1;
		ci->has_mesh_key = 1;
		return 0;
	}
	if (json_name_is(name, n, "version")) {
		if (json_lit(c, "null") == 0)
			return 0;	/* null leaves a Go int unchanged */
		if (c->p == c->end || (*c->p != '-' && (*c->p < '0' || *c->p > '9')))
			return -1;	/* string, bool, object, array: type error */
		if (json_number(c, &v, &is_int) < 0 || !is_int)
			return -1;
		ci->version = v > JSON_INT_MAX ? JSON_INT_MAX
		    : v < -JSON_INT_MAX - 1 ? -JSON_INT_MAX - 1 : (int)v;
		return 0;
	}
	if (json_name_is(name, n, "canackpings"))
		return json_bool(c, &ci->can_ack_pings);
	if (json_name_is(name, n, "isprober"))
		return json_bool(c, &ci->is_prober);
	if (json_name_is(name, n, "appname")) {
		if (json_lit(c, "null") == 0)
			return 0;
		if (!json_next_is(c, '"'))
			return -1;
		if (json_string(c, (unsigned char *)ci->app_name, sizeof ci->app_name - 1, &len) < 0)
			return -1;
		if (len > sizeof ci->app_name - 1)
			len = sizeof ci->app_name - 1;
		/* Log safety, not Go: control bytes (e.g. a decoded \n) become '?'. */
		for (i = 0; i < len; i++)
			if ((unsigned char)ci->app_name[i] < 0x20 || ci->app_name[i] == 0x7F)
				ci->app_name[i] = '?';
		ci->app_name[len] = '\0';
		return 0;
	}
	return json_skip_value(c, 1);	/* unknown member: any valid JSON */
}

/* Parses ClientInfo as json.Unmarshal into derper's struct would; duplicate
   members: the last wins.  0 ok, -1 invalid (*ci is then unspecified). */
static int clientinfo_parse(const char *json, size_t len, struct clientinfo *ci)
{
	memset(ci, 0, sizeof *ci);
	return json_object(json, len, clientinfo_member, ci);
}

/* isMeshPeer: the server has a non-zero mesh key, the client sent one, and the
   32 bytes are equal (so the client's is non-zero too) -- in constant time. */
static int clientinfo_is_mesh(const struct clientinfo *ci, const uint8_t server_mesh_key[32],
    int server_has_mesh_key)
{
	uint32_t diff = 0, srv = 0;
	int i;

	if (!server_has_mesh_key || !ci->has_mesh_key)
		return 0;
	for (i = 0; i < 32; i++) {
		diff |= ci->mesh_key[i] ^ server_mesh_key[i];
		srv |= server_mesh_key[i];
	}
	/* For x < 256, (x - 1) >> 8 has bit 0 set exactly when x == 0. */
	return (int)(((diff - 1) >> 8) & ~((srv - 1) >> 8) & 1);
}

/* ---- The -c key file (derper-compat.md 8) ---- */

struct keyfile_ctx {
	uint8_t *key;
	int found;
	const char *why;	/* set by a member error; NULL means a JSON error */
};

static int keyfile_member(void *ctx, const unsigned char *name, size_t n, struct json_cur *c)
{
	struct keyfile_ctx *k = ctx;
	unsigned char text[8 + 64];	/* "privkey:" + 64 hex digits */
	size_t len;

	if (!json_name_is(name, n, "privatekey"))
		return json_skip_value(c, 1);
	/* key.NodePrivate is a TextUnmarshaler: Go rejects any non-string, null too. */
	if (!json_next_is(c, '"')) {
		k->why = "PrivateKey is not a string";
		return -1;
	}
	if (json_string(c, text, sizeof text, &len) < 0)
		return -1;
	/* parseHex: the case-sensitive prefix first, then the length, then digits. */
	if (len < 8 || memcmp(text, "privkey:", 8) != 0)
		k->why = "PrivateKey does not start with privkey:";
	else if (len != sizeof text)
		k->why = "PrivateKey needs exactly 64 hex digits";
	else if (hex_decode32(k->key, (const char *)text + 8) < 0)
		k->why = "PrivateKey has a non-hex digit";
	else
		k->found = 1;
	return k->why ? -1 : 0;
}

/* 0 with key filled, or -1 with a short reason in *why. */
static int keyfile_parse(const char *json, size_t len, uint8_t key[32], const char **why)
{
	struct keyfile_ctx k;
	uint8_t any = 0;
	int i;

	k.key = key;
	k.found = 0;
	k.why = NULL;
	if (json_object(json, len, keyfile_member, &k) < 0) {
		*why = k.why ? k.why : "invalid JSON";
		return -1;
	}
	/* derper would run with a zero key (missing member) and panic in Public(). */
	if (!k.found) {
		*why = "no PrivateKey";
		return -1;
	}
	for (i = 0; i < 32; i++)
		any |= key[i];
	if (!any) {
		*why = "PrivateKey is zero";
		return -1;
	}
	return 0;
}

/* derper's file bytes (json.MarshalIndent with a tab, no trailing newline) plus a
   NUL; returns the length without the NUL, or 0 when cap is too small. */
static size_t keyfile_format(char *out, size_t cap, const uint8_t key[32])
{
	static const char head[] = "{\n\t\"PrivateKey\": \"privkey:", tail[] = "\"\n}";
	size_t hl = sizeof head - 1, n = hl + 64 + sizeof tail - 1;

	if (cap < n + 1)
		return 0;
	memcpy(out, head, hl);
	hex_encode(out + hl, key, 32);
	memcpy(out + hl + 64, tail, sizeof tail);
	return n;
}

/* ---- -rate-config (derp-protocol.md 13.1) ---- */

struct ratecfg {
	uint64_t rate;		/* PerClientRateLimitBytesPerSec; 0 = off */
	uint64_t burst;		/* PerClientRateBurstBytes */
};

/* A Go uint64 member: null leaves it, a negative, fraction or non-number is
 * an error. */
static int json_uint64(struct json_cur *c, uint64_t *out)
{
	int64_t v;
	int is_int;

	if (json_lit(c, "null") == 0)
		return 0;
	if (c->p == c->end || *c->p < '0' || *c->p > '9')
		return -1;
	if (json_number(c, &v, &is_int) < 0 || !is_int || v < 0)
		return -1;
	*out = (uint64_t)v;
	return 0;
}

static int ratecfg_member(void *ctx, const unsigned char *name, size_t n, struct json_cur *c)
{
	struct ratecfg *r = ctx;

	if (json_name_is(name, n, "perclientratelimitbytespersec"))
		return json_uint64(c, &r->rate);
	if (json_name_is(name, n, "perclientrateburstbytes"))
		return json_uint64(c, &r->burst);
	return json_skip_value(c, 1);
}

static int ratecfg_parse(const char *json, size_t len, struct ratecfg *r)
{
	memset(r, 0, sizeof *r);
	return json_object(json, len, ratecfg_member, r) < 0 ? -1 : 0;
}

/* ===================================================================== POOLS */

/*
 * The chunk pool: one array of fixed chunks and a free list through `next`.
 * A chain is a singly linked list of chunks; the first chunk of a queued packet
 * also links the packet into its queue through `qnext`.  Index 0 is NIL.
 *
 * Who may hold chunks is decided in one place, the budget functions after the
 * server struct (hold_take, hold_give); nothing else calls pool_take.  There,
 * R = CHUNKS_PER_CONN, n = -max-clients and the pool has n * R + SPARE chunks,
 * SPARE = CHUNKS_SPARE_BASE + n * CHUNKS_SPARE_PER_CONN.  Invariants, after
 * every step of the loop:
 *
 *  P1. Every chunk is on exactly one of: the free list, one connection's byte
 *      chain (head, info, raw, rawin), its packet in progress (fpkt), its
 *      packet being written (out_pkt), or one packet in one queue.
 *  P2. Held chunks are counted where they are held: conn.hold[HOLD_CTRL] is
 *      the chunks of raw, hold[HOLD_RAWIN] those of rawin, hold[HOLD_IN] those
 *      of head, info, fpkt and out_pkt.  Queued packets are held by nobody:
 *      they are reclaimable (pool_reclaim drops the oldest packet of the
 *      connection with the most queued chunks).
 *  P3. Each budget k of a connection has a limit L[k] (CHUNKS_CTRL,
 *      CHUNKS_RAWIN, CHUNKS_IN; sum R).  over(c) = sum of max(0, hold[k] -
 *      L[k]) is what c borrows from the spare, and server.spare_used = sum of
 *      over(c) <= SPARE.  A hold that would break this is refused: the
 *      connection stops reading (input) until the spare has room.
 *  P4. Hence free + queued >= sum over all n slots of (R - sum min(hold[k],
 *      L[k])): every slot, in use or not, can always fill its own budgets, by
 *      reclaiming queued packets if the free list is short.  So no set of
 *      connections can keep another from its 101, ServerKey, ServerInfo, HTTP
 *      response or a 1280-byte packet, and only queued packets, longest queue
 *      first, are ever dropped to make room.
 *  P5. conn.spare_since is set while over(c) > 0; the sweep closes a
 *      connection whose over(c) has stayed above 0 for SPARE_HOLD_MS.  So what
 *      a connection borrows is bounded in size (SPARE) and in time.
 *  P6. A connection's queued chunks are counted in conn.q_chunks, and the
 *      connections with q_chunks > 0 form a max-heap on it (server.qheap), so
 *      the reclaim victim is found without a scan.
 *
 * RAWIN never borrows: a read of ciphertext ahead of the engine is cut so that
 * what the engine has not taken fits in CHUNKS_RAWIN (tls_feed).  CTRL
 * borrows only for a /debug/ page (up to METRICS_BYTES, to a peer that
 * debug access admits; refused with a 503 when the spare cannot lend): every
 * other control output fits CHUNKS_CTRL and is written before the next is
 * made.  IN borrows for packets; what anyone borrows is time-bounded by P5.
 */
struct chunk {
	uint32_t next;		/* next chunk of the same chain */
	uint32_t qnext;		/* first chunk only: next packet in the queue */
	uint16_t len;		/* bytes used in data[] */
	uint16_t spare;
	uint8_t data[CHUNK_DATA_BYTES];
};

struct pool {
	struct chunk *chunks;	/* [count + 1]; [0] unused */
	uint32_t count;
	uint32_t free_head;	/* stack of returned chunks, through next */
	uint32_t lazy_next;	/* chunks [lazy_next, count] were never used */
	uint32_t free_count;	/* stack + never used */
	uint32_t high;		/* the most ever in use (metrics) */
};

/*
 * Chunks never handed out are not on the free list: they are taken in index
 * order from lazy_next.  The pool comes from calloc, so untouched chunks cost
 * no RSS, and RSS follows the peak number of chunks in use, not the pool size.
 */
static void
pool_init(struct pool *p, struct chunk *mem, uint32_t count)
{
	p->chunks = mem;
	p->count = count;
	p->free_head = NIL;
	p->lazy_next = 1;
	p->free_count = count;
}

static uint32_t
pool_take(struct pool *p)
{
	uint32_t i;

	if (p->free_head != NIL) {
		i = p->free_head;
		p->free_head = p->chunks[i].next;
	} else if (p->lazy_next <= p->count) {
		i = p->lazy_next++;
	} else {
		return NIL;
	}
	p->free_count--;
	if (p->count - p->free_count > p->high)
		p->high = p->count - p->free_count;
	p->chunks[i].next = NIL;
	p->chunks[i].qnext = NIL;
	p->chunks[i].len = 0;
	return i;
}

static void
pool_give(struct pool *p, uint32_t i)
{
	p->chunks[i].next = p->free_head;
	p->free_head = i;
	p->free_count++;
}

static void
pool_give_chain(struct pool *p, uint32_t i)
{
	uint32_t next;

	while (i != NIL) {
		next = p->chunks[i].next;
		pool_give(p, i);
		i = next;
	}
}

/* Chunks needed for n bytes. */
static uint32_t
chunks_for(size_t n)
{
	return (uint32_t)((n + CHUNK_DATA_BYTES - 1) / CHUNK_DATA_BYTES);
}

/*
 * A byte chain: a FIFO of bytes in chunks.  `off` is the read offset in the head
 * chunk.  Used for request heads, ClientInfo frames and raw output.
 */
struct cbuf {
	uint32_t head, tail;
	uint32_t len;		/* bytes held (from off in head) */
	uint16_t off;
};

/* Chunks that appending n bytes to b takes from the pool. */
static uint32_t
cbuf_need(const struct pool *p, const struct cbuf *b, size_t n)
{
	size_t room = b->tail != NIL ? CHUNK_DATA_BYTES - p->chunks[b->tail].len : 0;

	return n > room ? chunks_for(n - room) : 0;
}

/* Append n bytes; -1 (nothing appended) when the pool cannot supply chunks.
 * Callers account for the chunks first (conn_append). */
static int
cbuf_append(struct pool *p, struct cbuf *b, const uint8_t *data, size_t n)
{
	struct chunk *t;
	size_t k, need;
	uint32_t i, first = NIL, last = NIL;

	need = cbuf_need(p, b, n);
	if (need > p->free_count)
		return -1;
	for (k = 0; k < need; k++) {	/* all or nothing: take them first */
		i = pool_take(p);
		if (first == NIL)
			first = i;
		else
			p->chunks[last].next = i;
		last = i;
	}
	if (b->tail == NIL) {
		b->head = b->tail = first;
		first = p->chunks[first].next;	/* taken chunks are linked already */
	}
	while (n > 0) {
		t = &p->chunks[b->tail];
		if (t->len == CHUNK_DATA_BYTES) {
			t->next = first;
			b->tail = first;
			first = p->chunks[first].next;
			continue;
		}
		k = CHUNK_DATA_BYTES - t->len;
		if (k > n)
			k = n;
		memcpy(t->data + t->len, data, k);
		t->len = (uint16_t)(t->len + k);
		b->len += (uint32_t)k;
		data += k;
		n -= k;
	}
	return 0;
}

/* Copy the first n bytes of b (n <= b->len) to out, without consuming. */
static void
cbuf_peek(const struct pool *p, const struct cbuf *b, uint8_t *out, size_t n)
{
	uint32_t i = b->head;
	size_t off = b->off, k;

	while (n > 0 && i != NIL) {
		k = p->chunks[i].len - off;
		if (k > n)
			k = n;
		memcpy(out, p->chunks[i].data + off, k);
		out += k;
		n -= k;
		off = 0;
		i = p->chunks[i].next;
	}
}

/* Drop the first n bytes (n <= b->len), returning emptied chunks.  Returns
 * how many chunks went back to the pool. */
static uint32_t
cbuf_consume(struct pool *p, struct cbuf *b, size_t n)
{
	uint32_t next, freed = 0;
	size_t k;

	while (n > 0) {
		k = p->chunks[b->head].len - b->off;
		if (k > n) {
			b->off = (uint16_t)(b->off + n);
			b->len -= (uint32_t)n;
			return freed;
		}
		n -= k;
		b->len -= (uint32_t)k;
		next = p->chunks[b->head].next;
		pool_give(p, b->head);
		freed++;
		b->head = next;
		b->off = 0;
		if (next == NIL) {
			b->tail = NIL;
			break;
		}
	}
	return freed;
}

/* Chunks in a chain. */
static uint32_t
chain_count(const struct pool *p, uint32_t i)
{
	uint32_t n = 0;

	for (; i != NIL; i = p->chunks[i].next)
		n++;
	return n;
}

/* A FIFO of packets linked through their first chunk's qnext. */
struct pktq {
	uint32_t head, tail;
	uint32_t count;
};

/* A queued packet is its RecvPacket frame: header, source key, packet. */
static uint32_t
pkt_len(const struct pool *p, uint32_t first)
{
	return get_be32(p->chunks[first].data + 1) - KEY_BYTES;
}

static void
pktq_push(struct pool *p, struct pktq *q, uint32_t first)
{
	p->chunks[first].qnext = NIL;
	if (q->tail == NIL)
		q->head = first;
	else
		p->chunks[q->tail].qnext = first;
	q->tail = first;
	q->count++;
}

static uint32_t
pktq_pop(struct pool *p, struct pktq *q)
{
	uint32_t first = q->head;

	if (first == NIL)
		return NIL;
	q->head = p->chunks[first].qnext;
	if (q->head == NIL)
		q->tail = NIL;
	q->count--;
	return first;
}

/* Chunks of a queued packet: its chain is filled chunk by chunk. */
static uint32_t
pkt_chunks(const struct pool *p, uint32_t first)
{
	return chunks_for(RECV_PREFIX_BYTES + (size_t)pkt_len(p, first));
}

/* ==================================================================== POLLER */

/*
 * The readiness interface, as small as Redis's ae back-ends: add a descriptor
 * with a tag, change its events, remove it, wait.  Waiting fills `ready` with
 * (tag, revents) pairs; tags >= 0 are connection slots, listeners use the
 * negative TAG_ values.  Both back-ends are level-triggered, so the loop above
 * them is the same.
 *
 * epoll (Linux, the default there): the kernel keeps the interest set, and a
 * wait costs the same at 10 or 10,000 idle descriptors (1.3 us per call here,
 * against 57 us for poll(2) at 1,000; DESIGN.md).  poll(2) (everywhere else,
 * or `make POLLER=poll`): a dense pollfd array; a removal moves the last entry
 * into the hole and returns the moved entry's tag so its owner can update the
 * slot index it keeps.
 */
#if defined(__linux__) && !defined(DERP_POLLER_POLL)
#define POLLER_EPOLL 1
#include <sys/epoll.h>
#endif

enum { TAG_NONE = -100, TAG_MAIN = -1, TAG_HTTP = -2, TAG_STUN4 = -3,
    TAG_STUN6 = -4 };

struct poller_event {
	int32_t tag;
	short revents;
};

struct poller {
	struct poller_event *ready;	/* [cap]: filled by poller_wait */
	uint32_t cap;
	int inited;			/* poller_init ran: poller_free may */
#ifdef POLLER_EPOLL
	int epfd;
	struct epoll_event *evs;	/* [cap] */
#else
	struct pollfd *pfd;		/* [cap] */
	int32_t *tag;			/* [cap] */
	uint32_t n;
#endif
};

#ifdef POLLER_EPOLL
static const char poller_name[] = "epoll";

static int
poller_init(struct poller *pl, uint32_t cap)
{
	pl->cap = cap;
	pl->inited = 1;
	pl->epfd = epoll_create1(EPOLL_CLOEXEC);
	pl->ready = calloc(cap, sizeof *pl->ready);
	pl->evs = calloc(cap, sizeof *pl->evs);
	return pl->epfd >= 0 && pl->ready != NULL && pl->evs != NULL ? 0 : -1;
}

static void
poller_free(struct poller *pl)
{
	if (!pl->inited)
		return;
	if (pl->epfd >= 0)
		close(pl->epfd);
	free(pl->ready);
	free(pl->evs);
}

#if !defined(DERP_NO_ACME) || !defined(DERP_NO_BOOTDNS)
/* A forked child's copy: its descriptor only (the memory goes with it). */
static void
poller_close_fd(struct poller *pl)
{
	if (pl->inited && pl->epfd >= 0)
		close(pl->epfd);
}
#endif

static uint32_t
epoll_mask(short events)
{
	return ((events & POLLIN) ? EPOLLIN : 0) |
	    ((events & POLLOUT) ? EPOLLOUT : 0);
}

static int
poller_ctl(struct poller *pl, int op, int fd, int32_t tag, short events)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof ev);
	ev.events = epoll_mask(events);
	ev.data.u32 = (uint32_t)tag;
	return epoll_ctl(pl->epfd, op, fd, &ev);
}

/* Returns 0 (slot unused by this back-end) or -1. */
static int
poller_add(struct poller *pl, int fd, int32_t tag, short events,
    uint32_t *slot)
{
	*slot = 0;
	return poller_ctl(pl, EPOLL_CTL_ADD, fd, tag, events);
}

static void
poller_set(struct poller *pl, int fd, int32_t tag, uint32_t slot, short events)
{
	(void)slot;
	if (poller_ctl(pl, EPOLL_CTL_MOD, fd, tag, events) != 0)
		logf("epoll_ctl: %s", strerror(errno));
}

static int32_t
poller_del(struct poller *pl, int fd, uint32_t slot)
{
	(void)slot;
	(void)epoll_ctl(pl->epfd, EPOLL_CTL_DEL, fd, NULL);
	return TAG_NONE;
}

static int
poller_wait(struct poller *pl, int timeout_ms)
{
	int n, i;
	short rev;

	n = epoll_wait(pl->epfd, pl->evs, (int)pl->cap, timeout_ms);
	for (i = 0; i < n; i++) {
		rev = 0;
		if (pl->evs[i].events & EPOLLIN)
			rev |= POLLIN;
		if (pl->evs[i].events & EPOLLOUT)
			rev |= POLLOUT;
		if (pl->evs[i].events & EPOLLHUP)
			rev |= POLLHUP;
		if (pl->evs[i].events & EPOLLERR)
			rev |= POLLERR;
		pl->ready[i].tag = (int32_t)pl->evs[i].data.u32;
		pl->ready[i].revents = rev;
	}
	return n;
}
#else
static const char poller_name[] = "poll";

static int
poller_init(struct poller *pl, uint32_t cap)
{
	pl->cap = cap;
	pl->inited = 1;
	pl->n = 0;
	pl->ready = calloc(cap, sizeof *pl->ready);
	pl->pfd = calloc(cap, sizeof *pl->pfd);
	pl->tag = calloc(cap, sizeof *pl->tag);
	return pl->ready != NULL && pl->pfd != NULL && pl->tag != NULL ? 0 : -1;
}

static void
poller_free(struct poller *pl)
{
	if (!pl->inited)
		return;
	free(pl->ready);
	free(pl->pfd);
	free(pl->tag);
}

#if !defined(DERP_NO_ACME) || !defined(DERP_NO_BOOTDNS)
static void
poller_close_fd(struct poller *pl)
{
	(void)pl;
}
#endif

static int
poller_add(struct poller *pl, int fd, int32_t tag, short events,
    uint32_t *slot)
{
	uint32_t i;

	if (pl->n == pl->cap)
		return -1;
	i = pl->n++;
	pl->pfd[i].fd = fd;
	pl->pfd[i].events = events;
	pl->pfd[i].revents = 0;
	pl->tag[i] = tag;
	*slot = i;
	return 0;
}

static void
poller_set(struct poller *pl, int fd, int32_t tag, uint32_t slot, short events)
{
	(void)fd;
	(void)tag;
	pl->pfd[slot].events = events;
}

/* Returns the tag of the entry moved into slot, or TAG_NONE. */
static int32_t
poller_del(struct poller *pl, int fd, uint32_t slot)
{
	uint32_t last = --pl->n;

	(void)fd;
	if (slot == last)
		return TAG_NONE;
	pl->pfd[slot] = pl->pfd[last];
	pl->tag[slot] = pl->tag[last];
	return pl->tag[slot];
}

static int
poller_wait(struct poller *pl, int timeout_ms)
{
	int n, k = 0;
	uint32_t i;

	n = poll(pl->pfd, (nfds_t)pl->n, timeout_ms);
	for (i = 0; n > 0 && i < pl->n; i++) {
		if (pl->pfd[i].revents == 0)
			continue;
		pl->ready[k].tag = pl->tag[i];
		pl->ready[k].revents = pl->pfd[i].revents;
		k++;
		n--;
	}
	return n < 0 ? n : k;
}
#endif

/* =================================================================== SOCKETS */

static int
sock_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* A decimal port number: digits only (leading zeros too), at most 65535;
 * -1 if p is not one.  (Not strtol: it would link the C library's whole
 * number scanner into the firmware build.) */
static long
port_number(const char *p)
{
	long v = 0;

	if (*p == '\0')
		return -1;
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (*p - '0');
		if (v > 65535)
			return -1;
	}
	return v;
}

/*
 * Parse derper's -a form (":443", "ip:port", "[v6]:port", port may be "https"
 * or "http") into host (empty = all interfaces) and port.  0 or -1.
 */
static int
parse_hostport(const char *a, char *host, size_t hostcap, int *port)
{
	const char *colon, *p;
	size_t hl;
	long v;

	if (a[0] == '[') {
		p = strchr(a, ']');
		if (p == NULL || p[1] != ':')
			return -1;
		hl = (size_t)(p - a - 1);
		if (hl >= hostcap)
			return -1;
		memcpy(host, a + 1, hl);
		host[hl] = '\0';
		colon = p + 1;
	} else {
		colon = strrchr(a, ':');
		if (colon == NULL || memchr(a, ':', (size_t)(colon - a)) != NULL)
			return -1;
		hl = (size_t)(colon - a);
		if (hl >= hostcap)
			return -1;
		memcpy(host, a, hl);
		host[hl] = '\0';
	}
	p = colon + 1;
	if (strcmp(p, "https") == 0)
		v = 443;
	else if (strcmp(p, "http") == 0)
		v = 80;
	else if ((v = port_number(p)) < 0)
		return -1;
	*port = (int)v;
	return 0;
}

/*
 * Fill sa for host:port.  An empty host means all interfaces: the IPv6 wildcard
 * (dual-stack, as Go listens) when want_v6, else the IPv4 one.
 */
static int
sockaddr_for(const char *host, int port, int want_v6,
    struct sockaddr_storage *ss, socklen_t *sslen)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)ss;

	memset(ss, 0, sizeof *ss);
	if (host[0] == '\0' ? !want_v6 : inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		if (host[0] == '\0')
			s4->sin_addr.s_addr = htonl(INADDR_ANY);
		*sslen = sizeof *s4;
		return 0;
	}
	if (host[0] == '\0' || inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		if (host[0] == '\0')
			s6->sin6_addr = in6addr_any;
		*sslen = sizeof *s6;
		return 0;
	}
	return -1;
}

static void sock_tune(int, const struct derp_config *);

/* Bind a TCP listener or UDP socket on host:port; -1 with err set.  A TCP
 * listener gets tune's per-connection options (sock_tune) before listen(),
 * so no connection can be queued without them where they are inherited. */
static int
sock_listen(const char *host, int port, int type,
    const struct derp_config *tune, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	int fd, one = 1, zero = 0, v6;

	for (v6 = 1; v6 >= 0; v6--) {
		if (sockaddr_for(host, port, v6, &ss, &sslen) != 0) {
			snprintf(err, errlen, "bad listen address %s", host);
			return -1;
		}
		fd = socket(ss.ss_family, type, 0);
		if (fd < 0) {
			/* No IPv6 on this machine: fall back to IPv4 for "all". */
			if (host[0] == '\0' && v6 && errno == EAFNOSUPPORT)
				continue;
			snprintf(err, errlen, "socket: %s", strerror(errno));
			return -1;
		}
		break;
	}
	if (fd < 0)
		return -1;
	if (ss.ss_family == AF_INET6 && host[0] == '\0')
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
	if (type == SOCK_STREAM &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
		snprintf(err, errlen, "setsockopt SO_REUSEADDR: %s", strerror(errno));
		goto fail;
	}
	if (bind(fd, (struct sockaddr *)&ss, sslen) != 0) {
		snprintf(err, errlen, "listen %s %s:%d: %s",
		    type == SOCK_STREAM ? "tcp" : "udp", host, port, strerror(errno));
		goto fail;
	}
	if (type == SOCK_STREAM && tune != NULL)
		sock_tune(fd, tune);
	if (type == SOCK_STREAM && listen(fd, LISTEN_BACKLOG) != 0) {
		snprintf(err, errlen, "listen: %s", strerror(errno));
		goto fail;
	}
	if (sock_nonblock(fd) != 0) {
		snprintf(err, errlen, "fcntl: %s", strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

/*
 * Per-connection options derper sets (derper-compat.md section 13), at most
 * SOCK_OPTS of them.  They are set on the TCP listeners too: where accepted
 * sockets inherit them (Linux does), conn_accept finds that out on the first
 * one (sock_tuned) and saves five system calls per connection after it.
 */
#define SOCK_OPTS	5

struct sock_opt {
	int level, name, value;
	int flag;			/* value is a boolean: any nonzero holds */
};

static void
sock_opt_add(struct sock_opt *o, int *n, int level, int name, int value,
    int flag)
{
	o[*n].level = level;
	o[*n].name = name;
	o[*n].value = value;
	o[*n].flag = flag;
	(*n)++;
}

static int
sock_tune_opts(const struct derp_config *cfg, struct sock_opt o[SOCK_OPTS])
{
	int n = 0, v;

	sock_opt_add(o, &n, IPPROTO_TCP, TCP_NODELAY, 1, 1);
	if (cfg->tcp_keepalive_ms > 0) {
		sock_opt_add(o, &n, SOL_SOCKET, SO_KEEPALIVE, 1, 1);
#ifdef TCP_KEEPIDLE
		v = (int)(cfg->tcp_keepalive_ms / 1000);
		if (v < 1)
			v = 1;
		sock_opt_add(o, &n, IPPROTO_TCP, TCP_KEEPIDLE, v, 0);
		sock_opt_add(o, &n, IPPROTO_TCP, TCP_KEEPINTVL, v, 0);
#endif
	}
#ifdef TCP_USER_TIMEOUT
	if (cfg->tcp_user_timeout_ms > 0) {
		v = cfg->tcp_user_timeout_ms > INT_MAX ? INT_MAX :
		    (int)cfg->tcp_user_timeout_ms;
		sock_opt_add(o, &n, IPPROTO_TCP, TCP_USER_TIMEOUT, v, 0);
	}
#endif
	(void)v;
	return n;
}

/* Set them.  Failures are not fatal: the options tune, they do not change
 * the protocol. */
static void
sock_tune(int fd, const struct derp_config *cfg)
{
	struct sock_opt o[SOCK_OPTS];
	int i, n = sock_tune_opts(cfg, o);

	for (i = 0; i < n; i++)
		(void)setsockopt(fd, o[i].level, o[i].name, &o[i].value,
		    sizeof o[i].value);
}

/* 1 when fd has every one of them already. */
static int
sock_tuned(int fd, const struct derp_config *cfg)
{
	struct sock_opt o[SOCK_OPTS];
	int i, v, n = sock_tune_opts(cfg, o);
	socklen_t len;

	for (i = 0; i < n; i++) {
		len = sizeof v;
		if (getsockopt(fd, o[i].level, o[i].name, &v, &len) != 0 ||
		    len != sizeof v || (o[i].flag ? v == 0 : v != o[i].value))
			return 0;
	}
	return 1;
}

/* An accepted socket: non-blocking, closed on exec.  Its file status
 * flags are its own, fresh (no F_GETFL needed): O_NONBLOCK is all of them. */
static int
sock_nonblock_accepted(int fd)
{
	if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
		return -1;
	return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* Peer address as 16 bytes (IPv4 mapped) + port, for logs and STUN. */
static void
sockaddr_to_ip16(const struct sockaddr_storage *ss, uint8_t ip[16],
    uint16_t *port)
{
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)ss;
	const struct sockaddr_in6 *s6 =
	    (const struct sockaddr_in6 *)(const void *)ss;

	memset(ip, 0, 16);
	*port = 0;
	if (ss->ss_family == AF_INET) {
		ip[10] = ip[11] = 0xff;
		memcpy(ip + 12, &s4->sin_addr, 4);
		*port = ntohs(s4->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		memcpy(ip, &s6->sin6_addr, 16);
		*port = ntohs(s6->sin6_port);
	}
}

/* The reverse, for connect(2): its length. */
static socklen_t
ip16_to_sockaddr(const uint8_t ip[16], uint16_t port,
    struct sockaddr_storage *ss)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)ss;
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0xff, 0xff };

	memset(ss, 0, sizeof *ss);
	if (memcmp(ip, mapped, 12) == 0) {
		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, ip + 12, 4);
		s4->sin_port = htons(port);
		return (socklen_t)sizeof *s4;
	}
	s6->sin6_family = AF_INET6;
	memcpy(&s6->sin6_addr, ip, 16);
	s6->sin6_port = htons(port);
	return (socklen_t)sizeof *s6;
}

static int
ip16_is_v4(const uint8_t ip[16])
{
	static const uint8_t prefix[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };

	return memcmp(ip, prefix, 12) == 0;
}

/* "1.2.3.4:5" or "[v6]:5" */
static void
ip16_format(char *out, size_t cap, const uint8_t ip[16], uint16_t port)
{
	char a[INET6_ADDRSTRLEN];

	if (ip16_is_v4(ip)) {
		if (inet_ntop(AF_INET, ip + 12, a, sizeof a) == NULL)
			a[0] = '\0';
		snprintf(out, cap, "%s:%u", a, (unsigned)port);
	} else {
		if (inet_ntop(AF_INET6, ip, a, sizeof a) == NULL)
			a[0] = '\0';
		snprintf(out, cap, "[%s]:%u", a, (unsigned)port);
	}
}

/* ====================================================================== CONN */

/*
 * A connection slot.  States (conn.state), in the order a DERP client walks them:
 *
 *   CS_FREE        slot unused; on the free stack.
 *   CS_HTTP_HEAD   reading a request head into `head` (TLS handshake, if any,
 *                  runs inside BearSSL before the first plaintext byte).
 *                  Deadline: `deadline_ms` = accept (or last response) + 30 s.
 *   CS_HTTP_BODY   discarding `body_left` bytes of a request body (keep-alive).
 *   CS_HTTP_DRAIN  a response is queued in `raw`; no input is consumed until it
 *                  is written, then CS_HTTP_HEAD again, or close if `close_after`.
 *   CS_DERP_INFO   101 (unless fast start) and ServerKey queued; reading the
 *                  ClientInfo frame.  Deadline: ServerKey + 10 s.
 *   CS_DERP_VERIFY ClientInfo opened, `key` set; input paused while the
 *                  client's admission is checked (ADMISSION).  Deadline:
 *                  ClientInfo + VERIFY_CLIENT_MS.
 *   CS_DERP        registered under `key`; steady state, no deadline.
 *
 * `dead` is sticky: whatever fails sets it, and only the top of the loop
 * (conn_service, output_flush_dirty, the sweep) closes the slot, so no code
 * below ever sees a slot freed under it.
 *
 * Output order: bytes in `raw` first (HTTP, 101, ServerKey, ServerInfo), then in
 * CS_DERP: Pong, PeerGone notices, KeepAlive, the packet in progress, then the
 * disco queue before the other queue.  So ServerInfo is always the first frame
 * after ServerKey, as clients require.
 */
enum conn_state {
	CS_FREE = 0, CS_HTTP_HEAD, CS_HTTP_BODY, CS_HTTP_DRAIN, CS_DERP_INFO,
	CS_DERP_VERIFY, CS_DERP,
	CS_WAIT		/* accepted, in server.wait: not read, not polled */
};

struct conn {
	int fd;
	uint32_t pidx;			/* poller slot (poll back-end) */
	short events;			/* events registered with the poller */
	uint8_t state;			/* enum conn_state */
	uint8_t tls;			/* TLS engine in use */
	uint8_t port80;			/* accepted on the -http-port listener */
	uint8_t dead;			/* sticky failure: close at top level */
	uint8_t close_after;		/* close once output drained */
	uint8_t in_paused;		/* input waits (spare, rate limit) */
	uint8_t out_wait;		/* a large packet waits for the spare */
	uint8_t spare_wait;		/* in line for the spare (server.spare_q) */
	uint8_t spare_asked;		/* ... and asked again since its turn */
	uint8_t want_out;		/* POLLOUT registered */
	uint8_t tls_closing;		/* close_notify sent */
	uint8_t fin_sent;		/* SHUTDOWN: shutdown(SHUT_WR) done */
	uint8_t tls_started;		/* first bytes looked at (not HTTP) */
	uint8_t tls_up;			/* handshake done */
	uint8_t wait_spoke;		/* CS_WAIT: its first bytes are in (unread,
					 * so they stay: looked for once) */
	uint8_t cert_ref;		/* 1 + 2 * identity + the bank its
					 * handshake reads; 0 if none (CERTS) */
	uint8_t peer_ip[16];		/* IPv4 mapped */
	uint16_t peer_port;
	int64_t accepted_ms;
	int64_t last_in_ms;		/* unfinished: the last read that got bytes */
	/* Unfinished (state not CS_DERP): in its source's FIFO, oldest first. */
	struct {
		uint32_t src;		/* struct source index; NIL once registered */
		uint8_t set;		/* PEND_MAIN or PEND_PORT80 */
		int32_t prev, next;	/* the source's connections; -1 ends */
	} pend;
	int64_t deadline_ms;		/* HTTP / ClientInfo deadline; 0 none */
	int64_t wstall_ms;		/* output pending without progress since */
	int64_t next_keepalive_ms;

	br_ssl_server_context *ssl;	/* TLS mode: this slot's context */
	uint8_t *ibuf, *obuf;		/* IBUF_BYTES, OBUF_BYTES */
	size_t ilen;			/* plain: bytes in ibuf */
	size_t oofs, olen;		/* plain: unwritten obuf[oofs, olen) */

	/* HTTP */
	struct cbuf head;		/* request head so far */
	uint8_t head_match;		/* how much of "\r\n\r\n" ends head */
	uint64_t body_left;

	/* DERP frame reader: header, then payload by type */
	uint8_t fhdr[FRAME_HEADER_BYTES];
	uint8_t fhdr_len;
	uint8_t ftype;
	uint32_t flen, fgot;
	uint8_t fsmall[KEY_BYTES];	/* SendPacket/ForwardPacket dst, Ping
					 * data, ClosePeer key, 1-byte frames */
	uint8_t fsrc[KEY_BYTES];	/* ForwardPacket src */
	uint32_t fpkt, fpkt_cur;	/* packet under construction: first, last chunk */
	uint32_t fpkt_chunks;		/* ... chunks in it */
	uint32_t fpkt_lent;		/* ... chunks it may still take, accounted */
	struct cbuf info;		/* ClientInfo frame */

	/* chunk budgets (POOLS, P2-P5) */
	uint32_t hold[3];		/* HOLD_CTRL, HOLD_RAWIN, HOLD_IN */
	int64_t spare_since;		/* borrowing from the spare since; 0 not */
	uint32_t q_chunks;		/* chunks of the packets in q[] */
	int32_t qheap_pos;		/* in server.qheap; -1 when q_chunks == 0 */

	/* identity, once registered */
	uint8_t key[KEY_BYTES];
	uint8_t boxkey[NACL_KEY_BYTES];	/* crypto_box shared key with the client */
	int32_t key_next;		/* next connection with the same key, -1 */
	uint64_t send_seq;		/* when this connection last sent (duplicates) */
	uint8_t can_ack_pings, is_prober, preferred, notideal, mesh;
	uint8_t dup;			/* other connections share this key */

	/* admission, in CS_DERP_VERIFY (ADMISSION) */
	struct {
		uint8_t step;		/* VQ_* asked now or next */
		uint8_t redirects;	/* webhook redirects followed */
		uint8_t check;		/* its check slot + 1; 0 none */
		uint8_t fail_open;	/* let in because a webhook is down */
		int64_t since_ms;	/* its ClientInfo came */
	} adm;

	/* output */
	struct cbuf raw;
	struct cbuf rawin;		/* TLS: ciphertext read ahead, not yet fed */
	struct pktq q[2];		/* Q_DISCO, Q_OTHER */
	uint32_t out_pkt;		/* the rest of the packet being written */
	uint16_t out_off;		/* bytes of its first chunk written */
	uint8_t out_held;		/* its chunks are in hold[HOLD_IN] */
	uint8_t pong_pending, keepalive_pending;
	uint8_t out_unflushed;		/* TLS: app data written, record not closed */
	uint8_t routed;			/* this SendPacket went the direct path */
	uint8_t pong[PING_MIN_BYTES];

	/* PeerGone records (struct sender) of which this connection is the
	 * recipient: live ones, and the FIFO of notices to write */
	struct {
		uint32_t live;		/* list through dnext/dprev */
		uint32_t gone_head, gone_tail;	/* FIFO through dnext */
		uint32_t last;		/* the record the last packet hit */
		uint32_t paid;		/* records this slot pays for */
	} snd;

	/* -rate-config bucket: bytes; negative while waiting (Go's WaitN) */
	double rate_tokens;
	int64_t rate_last_ms, rate_until_ms;

	/* NotHere limiter: tokens scaled by 1000 (milli-tokens) */
	int64_t nh_tokens_milli;
	int64_t nh_last_ms;

	/* ForwardPackets of this sender in the mesh links' rings (MESH) */
	struct {
		uint32_t bytes;		/* at most MESH_SHARE_BYTES */
		uint32_t gen;		/* tells a record's sender from a later
					 * connection in this slot */
	} fwd;

	/* A mesh peer watching our connections (derp-protocol.md 15.3) */
	struct {
		uint8_t on;
		uint32_t scan;		/* the flood: next slot to announce */
		uint64_t seq;		/* next event of the watch log */
		int32_t next;		/* the watchers' list; -1 ends */
	} watch;

	/* WebSocket (derp-protocol.md 5.4): the DERP stream rides in binary
	 * messages once the upgrade said websocket (WEBSOCKET) */
	struct {
		uint8_t on;		/* output framed, input deframed */
		uint8_t hdr[WS_HDR_MAX];	/* the client frame's header */
		uint8_t hdr_len;
		uint8_t mask[4];	/* its masking key */
		uint8_t op;		/* its opcode */
		uint8_t fin;
		uint8_t in_msg;		/* a fragmented data message is open */
		uint8_t close;		/* WS_CLOSE_*: our close frame */
		uint8_t ctl_len;	/* control payload read so far */
		uint8_t pong_pending;	/* ctl[0, ctl_len) is a ping to answer */
		uint16_t close_code;	/* ours to send; WS_NO_STATUS: empty */
		uint32_t left;		/* payload of the frame not yet read */
		uint32_t msg_len;	/* data message's bytes so far */
		uint32_t mpos;		/* payload read: the mask's phase */
		uint32_t plain;		/* raw's first bytes go out unframed
					 * (the 101, a close frame) */
		uint8_t *out_at;	/* out_space's header room */
		const char *close_why;	/* reason text of our close */
		uint8_t ctl[WS_CTL_MAX];	/* ping/close payload */
	} ws;
};

/* ============================================================ SERVER STATE */

/*
 * A FIFO of slot indexes in which each slot appears at most once: membership
 * lives in on[], which belongs to the ring, not to the slot, so it survives the
 * slot being closed and reused.  Hence at most `cap` entries, and a ring of
 * `cap` never overflows.  Used for the dirty list (output to fill) and the
 * paused list (input to retry).
 */
struct slot_ring {
	uint32_t *slot;		/* [cap] */
	uint8_t *on;		/* [cap]: slot i is in the ring */
	uint32_t cap, head, count;
};

static void
ring_init(struct slot_ring *r, uint32_t cap)
{
	r->slot = calloc(cap, sizeof *r->slot);
	r->on = calloc(cap, 1);
	r->cap = cap;
	r->head = r->count = 0;
}

static void
ring_free(struct slot_ring *r)
{
	free(r->slot);
	free(r->on);
	r->slot = NULL;
	r->on = NULL;
}

/* What ring_init takes for cap slots. */
static size_t
ring_bytes(size_t cap)
{
	return cap * (sizeof(uint32_t) + 1);
}

static void
ring_push(struct slot_ring *r, uint32_t i)
{
	if (r->on[i])
		return;
	r->on[i] = 1;
	r->slot[(r->head + r->count) % r->cap] = i;
	r->count++;
}

static uint32_t
ring_pop(struct slot_ring *r)
{
	uint32_t i = r->slot[r->head];

	r->head = (r->head + 1) % r->cap;
	r->count--;
	r->on[i] = 0;
	return i;
}

/* One entry per key with at least one registered connection. */
struct keyent {
	uint8_t key[KEY_BYTES];
	int32_t first;		/* connections with this key, via key_next */
	int32_t active;		/* the one that gets the traffic */
	uint32_t nconns;	/* local connections; 0 and fwd 0: the slot is
				 * empty (so calloc makes an empty table) */
	uint32_t senders;	/* PeerGone records of this source key (knext) */
	uint32_t fwd;		/* MESH: bit i, link i announced the key */
	uint8_t fwd_via;	/* ... the link its packets go out on */
};

/* A slot of the key table in use: the key is here or on a mesh peer. */
static int
keyent_used(const struct keyent *e)
{
	return e->nconns != 0 || e->fwd != 0;
}

/* A PeerGone record (derper's sentTo): recipient slot dst has received a
 * packet from key since it connected.  When key leaves, the record moves to
 * dst's FIFO of notices (gone) and is freed once the PeerGone is written.
 * NotHere notices use the same FIFO, with no source list. */
struct sender {
	uint8_t key[KEY_BYTES];
	uint32_t dst;		/* recipient slot */
	uint32_t hnext;		/* hash chain while live; the free list */
	uint32_t dnext, dprev;	/* dst's live list; dst's FIFO (dnext) once gone */
	uint32_t knext, kprev;	/* the source key's list, while live */
	uint32_t payer;		/* slot + 1 that pays for it; 0: the spare */
	uint8_t gone;		/* a notice waiting in dst's FIFO */
	uint8_t reason;		/* PEER_GONE_* of that notice */
};

/*
 * Connections grouped by source.  A source entry lives while it has
 * connections; sources are hashed (seeded) and kept in buckets by how many
 * connections they hold, so the largest is found at once.  Three sets, each
 * connection in exactly one: the main listener's unfinished connections
 * (-max-handshakes), the -http-port listener's, and the registered ones
 * (the slots' fair share when all are taken).
 */
enum { PEND_MAIN = 0, PEND_PORT80 = 1, SET_REG = 2 };
#define NSETS 3

struct source {
	uint8_t addr[16];	/* IPv4-mapped address, or IPv6 /64 (low half 0) */
	uint32_t count;		/* its unfinished connections */
	int32_t head, tail;	/* oldest, newest (conn.pend.next) */
	uint32_t hnext;		/* hash chain; the free list */
	uint32_t bnext, bprev;	/* sources with the same count */
};

struct pend_set {
	uint32_t cap, n;	/* at most cap connections; n now */
	struct source *src;	/* [cap + 1]; [0] unused (NIL) */
	uint32_t *hash;		/* [hmask + 1] chain heads */
	uint32_t hmask, free;	/* free: unused entries through hnext */
	struct {
		uint32_t head, tail;
	} *bucket;		/* [cap + 1]: sources holding exactly i, in the
				 * order they came to hold i (the eviction order
				 * among equals: longest there first) */
	uint32_t top;		/* largest i with a source; 0 when n == 0 */
};

/* Why a packet was dropped: derper's reasons (derp_packets_dropped), then
 * ours. */
enum { DROP_UNKNOWN_DEST, DROP_UNKNOWN_DEST_ON_FWD, DROP_GONE_DISCONNECTED,
    DROP_QUEUE_HEAD, DROP_QUEUE_TAIL, DROP_WRITE_ERROR, DROP_DUP_CLIENT,
    DROP_MESH_QUEUE, DROP_REASONS };
#define DROP_DERPER_REASONS	DROP_MESH_QUEUE
/* Where a connection that never registered failed (relay_handshake_failures). */
enum { HS_TLS, HS_HTTP, HS_DERP, HS_STAGES };

/* Counters, named after derper's metrics (derper-compat.md section 11). */
struct stats {
	uint64_t accepts, refused, tls_handshake_fail, http_requests;
	uint64_t tls_no_cert;		/* closed: no certificate loaded yet */
	uint64_t acme_answers[2];	/* HTTP-01 requests: [0] 404, [1] 200 */
	uint64_t packets_received, bytes_received, packets_sent, bytes_sent;
	uint64_t received_kind[2];
	uint64_t drop_pkts[DROP_REASONS][2], drop_bytes[DROP_REASONS][2];
	uint64_t got_ping, sent_pong, peer_gone_disconnected, peer_gone_not_here;
	uint64_t peer_gone_untracked, write_timeouts, total_dup_client_conns;
	uint64_t home_moves_in, home_moves_out, pool_evictions, accept_limited;
	uint64_t rate_limit_waited, handshakes_refused, handshakes_evicted;
	uint64_t handshakes_waited, wait_timeouts, wait_idle;
	uint64_t spare_refused, spare_timeouts, slots_reclaimed;
	uint64_t stun_success, stun_not_stun, stun_read_error, stun_write_error;
	uint64_t stun_ipv4, stun_ipv6;
	uint64_t admit[3];		/* ADMIT_*: admission decisions */
	uint64_t forwarded_in, forwarded_out;	/* ForwardPacket frames */
	uint64_t ws_accepts;		/* WebSocket upgrades */
	uint64_t tls_accepted, tls_rejected;	/* on the TLS listener */
	uint64_t tls_requests;		/* HTTP requests over TLS (1.2) */
	uint64_t hs_failed[HS_STAGES];	/* closed before registering, by stage */
	uint64_t log_suppressed;	/* connection log lines (LOG) */
	uint64_t watchers_behind;	/* watchers closed: log overrun */
	uint64_t mesh_keys_refused;	/* announced keys over a link's share */
	uint32_t current_connections, current_home, current_notideal;
};

enum { ADMIT_ALLOWED = 0, ADMIT_REJECTED = 1, ADMIT_FAIL_OPEN = 2 };

/*
 * A certificate and key in one of two banks (CERTS): users counts the slots
 * whose TLS handshake reads it (BearSSL keeps pointers into it until the
 * handshake ends; renegotiation is off).
 */
struct cert_bank {
	struct cert_store cs;
	uint32_t users;
	uint8_t loaded;
	int64_t not_before, not_after;	/* the leaf's validity, Unix seconds */
};

/* What says a file changed: compared, never interpreted. */
struct file_stamp {
	dev_t dev;
	ino_t ino;
	off_t size;
	time_t mtime;
	long mtime_ns;
	int err;			/* errno of a failed stat, else 0 */
};

/* An identity's orders (CERTS). */
struct acme_sched {
	int64_t not_before_ms;		/* no order before (after a success) */
	int64_t next_ms;		/* loop time of the next order or check */
	int64_t backoff_ms;		/* wait after the next failure */
	int64_t backoff_max_ms;
};

/*
 * A name the relay holds a certificate for (CERTS): ident[0] is -hostname's;
 * with -acme-ip-certs beside a DNS -hostname, each further one is a local
 * address that a client reached with no SNI (or an IP SNI equal to it), as
 * derper's per-address IP certificates.  New handshakes take bank[cur]; a
 * reload fills the other bank once no handshake reads it.
 */
struct cert_ident {
	char name[256];			/* -hostname, or the address's text */
	uint8_t ip;			/* name is an IP literal */
	struct cert_bank bank[2];
	uint8_t cur;			/* the bank new handshakes take */
	uint8_t wait;			/* a reload waits for the other bank: 1,
					 * or 2 when forced (SIGHUP, ACME) */
	char crt_path[PATH_MAX];	/* chain (autocert: key and chain) */
	char key_path[PATH_MAX];	/* key; "" when crt_path holds both */
	struct file_stamp crt_stamp, key_stamp;	/* as last loaded or tried */
	struct acme_sched acme;
};
#define CERT_IP_IDENTS 4	/* local addresses with IP certificates */
#define CERT_IDENTS (1 + CERT_IP_IDENTS)

#ifndef DERP_NO_BOOTDNS
/* What a child process wrote, reassembled into lines. */
struct line_acc {
	size_t len;
	uint8_t too_long;		/* discarding an overlong line */
	char line[BOOTDNS_LINE_MAX];
};

/*
 * Bootstrap DNS (BOOTSTRAP DNS): tab[cur] is published; a lookup child fills
 * tab[!cur] through fd.  tab is NULL when no names are configured.
 */
struct bootdns_job {
	struct bootdns *tab;		/* [2] */
	uint8_t cur;
	uint8_t published;		/* a round has finished */
	pid_t pid;			/* the child, running or to be reaped */
	int fd;				/* its results; -1 once read to the end */
	int64_t started_ms, next_ms;
	size_t body_len;
	struct line_acc acc;
	char body[BOOTDNS_JSON_MAX];	/* tab[cur] as /bootstrap-dns answers */
};
#endif

/* Admission's outbound checks (ADMISSION). */
#define VERIFY_CHECKS		16	/* check slots: connections at once */
#define VCHECK_REQ_BYTES	(2 * VURL_MAX + 512)	/* path, Referer, the
						 * rest of the head, body */
#define TAG_CHECK0		(-1000)	/* check k polls as TAG_CHECK0 - k */
enum { VC_FREE = 0, VC_RESOLVE, VC_CONNECT, VC_TALK };

#ifndef DERP_NO_HOOKTLS
/* An https webhook's client engine: a mono buffer, as an HTTP exchange
 * never sends and receives at once. */
struct check_tls {
	br_ssl_client_context cc;
	struct tlsc_x509 xc;
	uint8_t buf[BR_SSL_BUFSIZE_MONO];
};
#endif

/* One check: an HTTP/1.1 exchange for the client in slot owner. */
struct vcheck {
	uint8_t phase;			/* VC_* */
	uint8_t kind;			/* VQ_* of verify.h */
	uint8_t post;			/* webhook: POST (GET after 301-303) */
	uint8_t with_body;		/* webhook: the request carries the body */
	uint8_t tls_on;			/* https */
	uint8_t eof;			/* TLS: the peer closed the socket */
	uint8_t addr_i;			/* webhook: its address tried now */
	int fd;				/* -1 none */
	uint32_t pidx;			/* poller slot (poll back-end) */
	short events;
	uint32_t owner;			/* its client; CHECK_NO_OWNER: left */
	int64_t deadline_ms;
	const char *why;		/* a transport failure's reason */
	size_t req_len, req_off;
	struct vurl url;		/* webhook: this request's target */
	char referer[VURL_MAX + 16];	/* webhook: after a redirect; "" none */
	struct vjudge judge;
	char req[VCHECK_REQ_BYTES];
#ifndef DERP_NO_HOOKTLS
	struct check_tls *tls;		/* NULL without a webhook */
#endif
};

#ifndef DERP_NO_BOOTDNS
#define RESOLVE_NAMES		4	/* the webhook's and its redirects' */
enum { RS_NONE = 0, RS_WAIT, RS_OK, RS_FAIL };
struct resolve_name {
	char name[BOOTDNS_NAME_MAX + 1];
	uint8_t state;			/* RS_* */
	uint8_t naddr;
	int64_t until_ms, used_ms;
	uint8_t ip[BOOTDNS_ADDRS_MAX][16];	/* IPv4-mapped */
};
struct resolver {
	struct resolve_name n[RESOLVE_NAMES];
	pid_t pid;			/* lookup child, running or to reap */
	int fd;				/* its answer; -1 none */
	int busy;			/* n[] being looked up; -1 none */
	int64_t started_ms;
	struct line_acc acc;
	struct bootdns tab;		/* the one name, as bootdns.c takes it */
};
#endif

/*
 * What the last /status fetch (tailscaled < 1.70) said: its keys' first 16
 * bytes, by open addressing on their first 4.  Every client whose ClientInfo
 * came before that fetch began is judged from it (admitted, refused, or
 * refused as the fetch failed), so a flood of strangers costs one fetch a
 * STATUS_FETCH_GAP_MS, not one fetch (megabytes of JSON) each.  The fetch
 * goes on if the client it began for leaves (its slot then has no owner).
 * A status naming more than STATUS_CACHE_KEYS keys does not fit: for
 * STATUS_BIG_MS each client fetches its own again, VERIFY_CHECKS at a time.
 */
#define STATUS_CACHE_SLOTS	8192	/* 128 KiB */
#define STATUS_CACHE_KEYS	(STATUS_CACHE_SLOTS / 4 * 3)
#define STATUS_FETCH_GAP_MS	1000	/* between two fetches' starts */
#define STATUS_BIG_MS		60000
enum { SC_NONE = 0, SC_FILLING, SC_VALID, SC_FAILED };
struct status_cache {
	uint8_t (*fp)[16];		/* [STATUS_CACHE_SLOTS]; zero: free */
	uint32_t n;
	uint8_t state;			/* SC_*: of the fetch of started_ms */
	uint8_t overflow;		/* it named more than STATUS_CACHE_KEYS */
	int64_t started_ms;
	int64_t big_until_ms;		/* no cache until then */
	struct slot_ring waitq;		/* clients waiting for the next fetch */
};

struct admit_state {
	uint8_t on;			/* -verify-clients or -verify-client-url */
	uint8_t hook_on;
	char socket[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct vurl hook;		/* -verify-client-url */
	int64_t old_until_ms;		/* tailscaled < 1.70: /status until */
	uint32_t hook_fails;		/* webhook transport failures in a row;
					 * from VERIFY_CHECKS on it is down */
	struct vcheck *checks;		/* [VERIFY_CHECKS] */
	struct slot_ring waitq;		/* clients waiting for a check slot */
	struct status_cache sc;		/* -verify-clients: /status's keys */
#ifndef DERP_NO_HOOKTLS
	struct tlsc_anchors anchors;
#endif
#ifndef DERP_NO_BOOTDNS
	struct resolver res;
#endif
};

/* MESH: links to the region's other servers (-mesh-with), at most 32 (a
 * key's routes are a bit mask).  The output ring takes forwarded packets. */
#define MESH_LINKS_MAX		32
#define MESH_OUT_BYTES		(512 * 1024)
/* One sender's forwarded bytes waiting in the rings at most: two of the
 * largest ForwardPackets, a quarter of a ring, so one client blasting a
 * remote key cannot take a link from everyone else (derper's senders wait
 * their turn on the link's write). */
#define MESH_SHARE_BYTES	(MESH_OUT_BYTES / 4)
/* Frames in a ring at most: the smallest ForwardPacket is 69 bytes; and
 * the upgrade request, ClientInfo and WatchConns. */
#define MESH_RECS		(MESH_OUT_BYTES / 69 + 4)
#define MESH_REC_OURS		UINT32_MAX
#define TAG_MESH0		(-500)	/* link i polls as TAG_MESH0 - i */
enum { ML_IDLE = 0, ML_RESOLVE, ML_CONNECT, ML_HEAD, ML_TALK, ML_DERP,
    ML_SELF };
#ifndef DERP_NO_MESH
struct mesh_link {
	/* the -mesh-with entry */
	char name[264];			/* host[:port]: Host header, logs */
	char sni[256];			/* host: TLS name (or IP literal) */
	char dial[256];			/* what to connect to */
	int port;
	uint8_t literal;		/* dial is an IP literal: ip */
	uint8_t ip[16];
	/* state */
	uint8_t phase;			/* ML_* */
	uint8_t self;			/* the peer is this server */
	uint8_t said_up, dirty, fails, addr_i;
	int fd;
	uint32_t pidx;
	short events;
	int64_t retry_ms, deadline_ms, last_rx_ms, wstall_ms;
	uint8_t server_key[KEY_BYTES];
	uint32_t nkeys;			/* keys this link routes */
	/* input: the 101's head, then frames (kept whole up to
	 * MESH_HEAD_MAX bytes, larger ones skipped) */
	uint8_t hdr[FRAME_HEADER_BYTES];
	uint8_t hlen, ftype;
	uint32_t flen, blen;
	uint8_t buf[1024];
	/* output ring, and who queued its bytes (a record per frame, in
	 * order: the sender's share comes back as they leave) */
	uint8_t *out;			/* [MESH_OUT_BYTES] */
	size_t ohead, olen;
	struct mesh_rec {
		uint32_t slot;		/* sender; MESH_REC_OURS: ours */
		uint32_t gen;		/* its conn.fwd.gen */
		uint32_t len, left;	/* bytes; still in the ring */
	} *rec;				/* [MESH_RECS] */
	uint32_t rec_head, rec_n;
	br_ssl_client_context cc;
	struct tlsc_x509 xc;
	uint8_t iobuf[BR_SSL_BUFSIZE_BIDI];
};
#endif

/* The ACME child (CERTS): at most one at a time, for one identity. */
struct acme_job {
	uint8_t on;			/* letsencrypt or gcp, in TLS mode */
	pid_t pid;			/* running child, or 0 */
	pid_t parent;			/* the relay, as the child checks */
	uint8_t ident;			/* whose order the child runs */
	int64_t started_ms;
	const char *directory;
	char chaldir[PATH_MAX];		/* HTTP-01 answers the child writes */
};

/* DEBUG: who may read /debug/ */
#define DEBUG_ACL_MAX		32	/* prefixes on the lists together */
#define DEBUG_KEY_MAX		256

enum { ACL_LOOPBACK = 1, ACL_PRIVATE = 2, ACL_TAILSCALE = 4, ACL_ANY = 8 };

struct ip_prefix {
	uint8_t ip[16];		/* IPv4 mapped, as conn.peer_ip */
	uint8_t bits;		/* of the 128 */
};

struct debug_acl {
	uint8_t kw;		/* ACL_* */
	uint8_t n;
	struct ip_prefix p[DEBUG_ACL_MAX];
};

struct derp_server {
	struct derp_config cfg;
	volatile sig_atomic_t stop;
	int tls_mode;
	char host[256];			/* host part of -a ("" = all) */
	int port;
	int main_fd, http_fd, stun_fd[2];
	/* Per listener (main, port 80): 0 until the first accept, then 1
	 * when accepted sockets inherit the listener's options (sock_tuned),
	 * -1 when each gets them set (sock_tune). */
	int accept_tuned[2];

	uint8_t priv[KEY_BYTES], pub[KEY_BYTES];

	struct rng rng;

	/* TLS: certificates, see CERTS */
	struct cert_ident ident[CERT_IDENTS];
	uint8_t nident;			/* ident[0, nident) in use */
	uint8_t ip_idents;		/* -acme-ip-certs beside a DNS -hostname */
	uint8_t ip_idents_full_logged;
	int64_t next_cert_check_ms;
	struct acme_job acme;
#ifndef DERP_NO_BOOTDNS
	struct bootdns_job bdns;
#endif
	struct admit_state admit;	/* ADMISSION */
	uint8_t mesh_key[KEY_BYTES];	/* -mesh-psk-file; all zero: none */
	uint8_t has_mesh_key;
	int sni_strict;			/* SNI must equal -hostname byte for byte */
	struct sni_policy *sni;		/* [max] in TLS mode */
	const uint16_t *suites;
	struct {			/* record-layer code, chosen once */
		const br_block_ctr_class *aes_ctr;
		br_ghash ghash;
		br_chacha20_run chacha;
		br_poly1305_run poly;
	} tls_impl;
	size_t nsuites;

	/* connection slots */
	struct conn *conns;		/* [max] */
	br_ssl_server_context *ssl;	/* [max] in TLS mode, else NULL */
	uint8_t *bufs;			/* [max][IBUF_BYTES + OBUF_BYTES] */
	int32_t *free_slots;		/* stack of returned slot indexes */
	uint32_t nfree, max;
	uint32_t fresh;			/* slots [fresh, max) never used yet, so every
					 * scan of the slots stops at fresh */
	uint32_t slots_high, hs_high;	/* the most slots, and unfinished
					 * connections, at once (metrics) */

	struct pool pool;
	uint32_t spare_cap, spare_used;	/* POOLS, P3 */
	uint32_t *qheap, nqheap;	/* POOLS, P6: slots by q_chunks */
	struct keyent *keytab;		/* [keytab_mask + 1], open addressing */
	uint32_t keytab_mask, nkeys;
	uint64_t hash_seed[2];

	/* PeerGone records: [nsnd + 1], [0] unused; hashed by (dst, key) */
	struct sender *snd;
	uint32_t nsnd, snd_free, snd_fresh, snd_spare_used;
	uint32_t *snd_hash, snd_hmask;

	struct pend_set pend[NSETS];	/* PEND_MAIN, PEND_PORT80, SET_REG */
	struct {
		int32_t head, tail;	/* CS_WAIT slots, oldest first, linked
					 * through their pend.prev/next */
		uint32_t n, high;
		int64_t next_scan_ms;	/* wait_victim's next look for a stall */
	} wait;

	struct slot_ring dirty;		/* slots with output to fill this round */
	struct slot_ring paused;	/* slots whose input waits */
	struct slot_ring spare_q;	/* slots waiting for the spare, in turn */

	struct poller pl;
	uint8_t *scratch;		/* SCRATCH_BYTES: linearised heads, ClientInfo */
	uint8_t *rbatch;		/* READ_BATCH_BYTES: ciphertext read ahead */
	size_t rb_off, rb_len;		/* unread part of rbatch ... */
	struct conn *rb_owner;		/* ... which belongs to this connection */
	uint64_t send_seq;
	int64_t now;			/* loop time, ms, set once per round */
	int64_t next_sweep_ms;
	int64_t hs_slice_us;		/* handshake time allowed this round */
	int round_traffic;		/* a registered client was served */
	double accept_tokens;		/* -accept-connection-limit bucket */
	struct ratecfg rate;		/* -rate-config, as last loaded */
	volatile sig_atomic_t reload;	/* SIGHUP: -rate-config, certificates */
	int64_t accept_last_ms;
	struct stats st;
	uint8_t started;		/* the loop's clocks are set (loop_start) */
	uint8_t stopping;		/* SHUTDOWN: the drain runs */
	int64_t stop_begin_ms, stop_deadline_ms;
	uint32_t lpidx[4];		/* poller slots of TAG_MAIN .. TAG_STUN6 */
	struct {			/* LOG: connection lines by class */
		struct log_class fail;	/* failures */
		struct log_class reject;	/* admission rejections */
		struct log_class failopen;	/* fail-open admissions */
	} log;
	int64_t start_unix;		/* derp_create's time (metrics) */
	uint8_t *mbuf;			/* METRICS_BYTES: a rendered page */
	struct debug_acl debug_acl;	/* who may read /debug/ (DEBUG) */
	uint8_t debug_key[DEBUG_KEY_MAX];	/* TS_DEBUG_KEY_PATH's */
	size_t debug_key_len;		/* 0: none */
	struct tbucket dbg_renders;	/* debug_render_allow */

	/* MESH: what watchers are told after their flood, oldest first;
	 * event n lives in ev[n % cap] */
	struct watch_ev {
		uint8_t key[KEY_BYTES];
		uint8_t ip[16];
		uint16_t port;
		uint8_t flags;		/* PEER_PRESENT_*; 0: PeerGone */
	} *wlog;
	uint32_t wlog_cap;
	uint64_t wlog_head;		/* events ever logged */
	int32_t watch_first;		/* watching connections */
	uint32_t nwatchers;
#ifndef DERP_NO_MESH
	struct mesh_link *links;	/* [nlinks] */
	struct tlsc_anchors mesh_anchors;
#endif
	uint8_t nlinks, links_dirty;
	uint32_t fwd_gen;		/* the last conn.fwd.gen given */
};

static void
mark_dirty(struct derp_server *s, struct conn *c)
{
	ring_push(&s->dirty, (uint32_t)(c - s->conns));
}

static void
mark_paused(struct derp_server *s, struct conn *c)
{
	c->in_paused = 1;
	ring_push(&s->paused, (uint32_t)(c - s->conns));
}

/* The source of an address: IPv4 by address, IPv6 by /64. */
static void
source_addr(const uint8_t ip[16], uint8_t out[16])
{
	memcpy(out, ip, 16);
	if (!ip16_is_v4(ip))
		memset(out + 8, 0, 8);
}

/*
 * A bucket is the low bits of the result's upper half, and bit k of a
 * product depends only on bits 0..k of its factors: so the second word (an
 * IPv4 address is in its upper half, bytes 12..15 of the mapped form) goes
 * through a full mix (shifts folding high bits down between multiplies, as
 * splitmix64's finalizer).  With a single multiply after it, every IPv4
 * address sharing its first 15 or so bits shared one bucket; with one fold,
 * addresses chosen within a /16 still collided 10-300 times more than chance.
 */
static uint32_t
source_hash(const struct derp_server *s, const uint8_t addr[16])
{
	uint64_t h = s->hash_seed[1];

	h ^= get_le64(addr);
	h *= 0x9e3779b97f4a7c15ULL;
	h ^= (h >> 29) ^ get_le64(addr + 8);
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return (uint32_t)(h >> 32);
}

static uint32_t
source_find(const struct derp_server *s, const struct pend_set *ps,
    const uint8_t addr[16])
{
	uint32_t e = ps->hash[source_hash(s, addr) & ps->hmask];

	while (e != NIL && memcmp(ps->src[e].addr, addr, 16) != 0)
		e = ps->src[e].hnext;
	return e;
}

/* Move source e from bucket `from` to the tail of the bucket of its count
 * now. */
static void
source_rebucket(struct pend_set *ps, uint32_t e, uint32_t from)
{
	struct source *x = &ps->src[e];

	if (from > 0) {
		if (x->bprev != NIL)
			ps->src[x->bprev].bnext = x->bnext;
		else
			ps->bucket[from].head = x->bnext;
		if (x->bnext != NIL)
			ps->src[x->bnext].bprev = x->bprev;
		else
			ps->bucket[from].tail = x->bprev;
	}
	x->bprev = NIL;
	x->bnext = NIL;
	if (x->count > 0) {
		x->bprev = ps->bucket[x->count].tail;
		if (x->bprev != NIL)
			ps->src[x->bprev].bnext = e;
		else
			ps->bucket[x->count].head = e;
		ps->bucket[x->count].tail = e;
		if (x->count > ps->top)
			ps->top = x->count;
	}
	while (ps->top > 0 && ps->bucket[ps->top].head == NIL)
		ps->top--;
}

/* c is unfinished: it joins its source's FIFO in set `set`.  The caller has
 * made room (ps->n < ps->cap), so an entry is free. */
static void
pending_append(struct derp_server *s, struct conn *c, int set)
{
	struct pend_set *ps = &s->pend[set];
	int32_t idx = (int32_t)(c - s->conns);
	uint8_t addr[16];
	uint32_t e, h;
	struct source *x;

	source_addr(c->peer_ip, addr);
	e = source_find(s, ps, addr);
	if (e == NIL) {
		e = ps->free;
		x = &ps->src[e];
		ps->free = x->hnext;
		memcpy(x->addr, addr, 16);
		x->count = 0;
		x->head = x->tail = -1;
		h = source_hash(s, addr) & ps->hmask;
		x->hnext = ps->hash[h];
		ps->hash[h] = e;
	}
	x = &ps->src[e];
	c->pend.src = e;
	c->pend.set = (uint8_t)set;
	c->pend.prev = x->tail;
	c->pend.next = -1;
	if (x->tail >= 0)
		s->conns[x->tail].pend.next = idx;
	else
		x->head = idx;
	x->tail = idx;
	x->count++;
	source_rebucket(ps, e, x->count - 1);
	ps->n++;
	if (set != SET_REG && s->pend[PEND_MAIN].n + s->pend[PEND_PORT80].n >
	    s->hs_high)
		s->hs_high = s->pend[PEND_MAIN].n + s->pend[PEND_PORT80].n;
}

/* c leaves its set: when it registers (and joins SET_REG), and when it
 * closes. */
static void
pending_remove(struct derp_server *s, struct conn *c)
{
	struct pend_set *ps = &s->pend[c->pend.set];
	uint32_t e = c->pend.src, *pp;
	struct source *x = &ps->src[e];

	if (c->pend.prev >= 0)
		s->conns[c->pend.prev].pend.next = c->pend.next;
	else
		x->head = c->pend.next;
	if (c->pend.next >= 0)
		s->conns[c->pend.next].pend.prev = c->pend.prev;
	else
		x->tail = c->pend.prev;
	c->pend.prev = c->pend.next = -1;
	c->pend.src = NIL;
	x->count--;
	source_rebucket(ps, e, x->count + 1);
	if (x->count == 0) {
		pp = &ps->hash[source_hash(s, x->addr) & ps->hmask];
		while (*pp != e)
			pp = &ps->src[*pp].hnext;
		*pp = x->hnext;
		x->hnext = ps->free;
		ps->free = e;
	}
	ps->n--;
}

/* The key as derper's logs show it: "[" + 5 chars of standard base64 + "]". */
static void
key_short(char out[8], const uint8_t key[KEY_BYTES])
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint32_t v = ((uint32_t)key[0] << 16) | ((uint32_t)key[1] << 8) | key[2];
	uint32_t w = (uint32_t)key[3] << 16;

	out[0] = '[';
	out[1] = b64[(v >> 18) & 63];
	out[2] = b64[(v >> 12) & 63];
	out[3] = b64[(v >> 6) & 63];
	out[4] = b64[v & 63];
	out[5] = b64[(w >> 18) & 63];
	out[6] = ']';
	out[7] = '\0';
}

/*
 * Lines about one connection are what a flood of bad clients multiplies:
 * they pass a token bucket of LOG_BURST lines refilled one per
 * LOG_REFILL_MS, and what it holds back is counted and reported in one line
 * once it has room again (log_tick), so a flood cannot flush a router's
 * 64 KiB log ring: at most LOG_BURST lines, then 12 a minute.
 */
#define LOG_BURST		20
#define LOG_REFILL_MS		5000

static int
log_take(struct derp_server *s, struct tbucket *b)
{
	return tbucket_take(b, s->now, LOG_BURST, LOG_REFILL_MS);
}

static void
conn_log_line(const struct conn *c, const char *what)
{
	char addr[64];

	ip16_format(addr, sizeof addr, c->peer_ip, c->peer_port);
	logf("derp: %s: %s", addr, what);
}

/* A line of class k: failures, admission rejections, fail-open passes
 * (what strangers can multiply), each class with its own bucket so that a
 * flood of one does not silence the others.  Nothing passes while older lines wait to be
 * reported, so the report comes before what follows it. */
static void
conn_log_in(struct derp_server *s, struct log_class *k, const struct conn *c,
    const char *what)
{
	if (k->held == 0 && log_take(s, &k->bucket)) {
		conn_log_line(c, what);
		return;
	}
	k->held++;
	s->st.log_suppressed++;
}

static void
conn_log(struct derp_server *s, const struct conn *c, const char *what)
{
	conn_log_in(s, &s->log.fail, c, what);
}

/* The held-back count, once the bucket has room (the sweep calls it). */
static void
log_report(struct derp_server *s, struct log_class *k, const char *what)
{
	if (k->held > 0 && log_take(s, &k->bucket)) {
		logf("derp: suppressed %llu %s log lines",
		    (unsigned long long)k->held, what);
		k->held = 0;
	}
}

static void
log_tick(struct derp_server *s)
{
	log_report(s, &s->log.fail, "connection");
	log_report(s, &s->log.reject, "admission rejection");
	log_report(s, &s->log.failopen, "fail-open admission");
}

/* -verbose: a connection's life, line by line, not rate limited (asked
 * for).  key: shortened as derper does, or NULL. */
static void
conn_verbose(struct derp_server *s, const struct conn *c, const char *what)
{
	char k[8], line[160];

	if (!s->cfg.verbose)
		return;
	if (!is_zero(c->key, KEY_BYTES)) {
		key_short(k, c->key);
		snprintf(line, sizeof line, "%s %s", k, what);
		conn_log_line(c, line);
	} else {
		conn_log_line(c, what);
	}
}

/* Sticky failure with a log line (derper logs handshake problems this way). */
static void
conn_fail(struct derp_server *s, struct conn *c, const char *why)
{
	if (!c->dead && why != NULL)
		conn_log(s, c, why);
	c->dead = 1;
}

/* ============================================================ CHUNK BUDGETS */

/*
 * The one place that decides who may hold chunks (POOLS, P1-P6).  Byte chains
 * and packets in progress take chunks through hold_take; queued packets are
 * moved between queues and the reclaim heap through conn_queue_*.
 */
enum { HOLD_CTRL = 0, HOLD_RAWIN = 1, HOLD_IN = 2 };
static const uint32_t hold_limit[3] = { CHUNKS_CTRL, CHUNKS_RAWIN, CHUNKS_IN };

/* What c borrows from the spare (P3). */
static uint32_t
hold_over(const struct conn *c)
{
	uint32_t over = 0;
	int k;

	for (k = HOLD_CTRL; k <= HOLD_IN; k++)
		if (c->hold[k] > hold_limit[k])
			over += c->hold[k] - hold_limit[k];
	return over;
}

/* The connection first in line for the spare, or -1; entries of connections
 * that no longer wait (served, closed) are dropped on the way. */
static int32_t
spare_queue_head(struct derp_server *s)
{
	struct conn *h;

	while (s->spare_q.count > 0) {
		h = &s->conns[s->spare_q.slot[s->spare_q.head]];
		if (h->state != CS_FREE && h->spare_wait)
			return (int32_t)(h - s->conns);
		(void)ring_pop(&s->spare_q);
	}
	return -1;
}

/*
 * Account n more chunks to budget k of c, borrowing from the spare beyond
 * the budget.  Borrowers take turns: while others wait, only the first in
 * line may borrow, so a freed chunk goes to the one that has waited longest,
 * not to whoever reads next.  0, or -1 (nothing changed; c is in line and
 * input_resume_paused retries it) when the spare has no room or it is not
 * c's turn.
 */
static int
hold_admit(struct derp_server *s, struct conn *c, int k, uint32_t n)
{
	uint32_t before = hold_over(c), after;
	int32_t idx = (int32_t)(c - s->conns), head;

	c->hold[k] += n;
	after = hold_over(c);
	if (after > before) {
		head = spare_queue_head(s);
		if ((head >= 0 && head != idx) ||
		    s->spare_used + (after - before) > s->spare_cap) {
			c->hold[k] -= n;
			c->spare_wait = 1;
			c->spare_asked = 1;
			ring_push(&s->spare_q, (uint32_t)idx);
			s->st.spare_refused++;
			return -1;
		}
		if (head == idx)
			(void)ring_pop(&s->spare_q);
		c->spare_wait = 0;
	}
	s->spare_used += after - before;
	if (after > 0 && c->spare_since == 0)
		c->spare_since = s->now;
	return 0;
}

static void
hold_give(struct derp_server *s, struct conn *c, int k, uint32_t n)
{
	uint32_t before = hold_over(c), after;

	c->hold[k] -= n;
	after = hold_over(c);
	s->spare_used -= before - after;
	if (after == 0)
		c->spare_since = 0;
}

/* Reclaim heap (P6): slots with queued chunks, the most at qheap[0]. */
static int
qheap_less(const struct derp_server *s, uint32_t a, uint32_t b)
{
	return s->conns[a].q_chunks < s->conns[b].q_chunks;
}

static void
qheap_set(struct derp_server *s, uint32_t pos, uint32_t slot)
{
	s->qheap[pos] = slot;
	s->conns[slot].qheap_pos = (int32_t)pos;
}

static void
qheap_sift(struct derp_server *s, uint32_t pos)
{
	uint32_t slot = s->qheap[pos], parent, child;

	while (pos > 0 && qheap_less(s, s->qheap[parent = (pos - 1) / 2], slot)) {
		qheap_set(s, pos, s->qheap[parent]);
		pos = parent;
	}
	for (;;) {
		child = 2 * pos + 1;
		if (child >= s->nqheap)
			break;
		if (child + 1 < s->nqheap &&
		    qheap_less(s, s->qheap[child], s->qheap[child + 1]))
			child++;
		if (!qheap_less(s, slot, s->qheap[child]))
			break;
		qheap_set(s, pos, s->qheap[child]);
		pos = child;
	}
	qheap_set(s, pos, slot);
}

/* c->q_chunks changed: put c where it belongs (or out of the heap). */
static void
qheap_update(struct derp_server *s, struct conn *c)
{
	uint32_t slot = (uint32_t)(c - s->conns), pos, last;

	if (c->qheap_pos < 0) {
		if (c->q_chunks == 0)
			return;
		pos = s->nqheap++;
		qheap_set(s, pos, slot);
		qheap_sift(s, pos);
		return;
	}
	pos = (uint32_t)c->qheap_pos;
	if (c->q_chunks > 0) {
		qheap_sift(s, pos);
		return;
	}
	c->qheap_pos = -1;
	last = s->qheap[--s->nqheap];
	if (pos < s->nqheap) {
		qheap_set(s, pos, last);
		qheap_sift(s, pos);
	}
}

static void
conn_queue_push(struct derp_server *s, struct conn *c, int k, uint32_t first)
{
	pktq_push(&s->pool, &c->q[k], first);
	c->q_chunks += pkt_chunks(&s->pool, first);
	qheap_update(s, c);
}

static uint32_t
conn_queue_pop(struct derp_server *s, struct conn *c, int k)
{
	uint32_t first = pktq_pop(&s->pool, &c->q[k]);

	if (first != NIL) {
		c->q_chunks -= pkt_chunks(&s->pool, first);
		qheap_update(s, c);
	}
	return first;
}

/* Drop the oldest packet of queue k (counted under `reason`). */
/* Count a dropped packet of plen bytes and give its chain back. */
static void
pkt_drop(struct derp_server *s, uint32_t first, uint32_t plen, int reason,
    int kind)
{
	s->st.drop_pkts[reason][kind]++;
	s->st.drop_bytes[reason][kind] += plen;
	pool_give_chain(&s->pool, first);
}

static void
conn_queue_drop_head(struct derp_server *s, struct conn *c, int k, int reason)
{
	uint32_t first = conn_queue_pop(s, c, k);

	if (first != NIL)
		pkt_drop(s, first, pkt_len(&s->pool, first), reason, k);
}

/*
 * Make `need` chunks free by dropping the oldest packets of the connection
 * with the most queued chunks: the one that is not keeping up pays, never a
 * budget.  0 when enough are free; by P4 it fails only if need exceeds what
 * hold_admit allowed.
 */
static int
pool_reclaim(struct derp_server *s, uint32_t need)
{
	struct conn *c;

	while (s->pool.free_count < need) {
		if (s->nqheap == 0)
			return -1;
		c = &s->conns[s->qheap[0]];
		conn_queue_drop_head(s, c, c->q[Q_OTHER].count > 0 ? Q_OTHER :
		    Q_DISCO, DROP_QUEUE_HEAD);
		s->st.pool_evictions++;
	}
	return 0;
}

/* hold_admit, then make sure the pool has the n chunks.  0 or -1. */
static int
hold_take(struct derp_server *s, struct conn *c, int k, uint32_t n)
{
	if (hold_admit(s, c, k, n) != 0)
		return -1;
	if (s->pool.free_count < n && pool_reclaim(s, n) != 0) {
		hold_give(s, c, k, n);
		return -1;
	}
	return 0;
}

/* Append to one of c's byte chains, charged to budget k.  0 or -1. */
static int
conn_append(struct derp_server *s, struct conn *c, int k, struct cbuf *b,
    const uint8_t *data, size_t n)
{
	uint32_t need = cbuf_need(&s->pool, b, n);

	if (hold_take(s, c, k, need) != 0)
		return -1;
	return cbuf_append(&s->pool, b, data, n);	/* cannot fail now */
}

static void
conn_chain_consume(struct derp_server *s, struct conn *c, int k,
    struct cbuf *b, size_t n)
{
	hold_give(s, c, k, cbuf_consume(&s->pool, b, n));
}

static void
conn_chain_clear(struct derp_server *s, struct conn *c, int k, struct cbuf *b)
{
	hold_give(s, c, k, chain_count(&s->pool, b->head));
	pool_give_chain(&s->pool, b->head);
	memset(b, 0, sizeof *b);
}

/* ======================================================================= TLS */

/*
 * TLS 1.2 only (BearSSL's newest; Tailscale clients accept it), ECDHE only
 * (clients offer no RSA key exchange), AEAD suites only.  The server's order
 * decides (BR_OPT_ENFORCE_SERVER_PREFERENCES): AES-GCM first where BearSSL has
 * AES instructions, ChaCha20-Poly1305 first elsewhere (routers) -- the wrong
 * choice costs 10x in CPU either way (DESIGN.md).
 */
/*
 * Every suite the relay offers, ECDSA first.  BearSSL's single-chain handlers
 * take, among the suites common to both sides, only those their key can
 * sign, so one list serves EC and RSA certificates alike (identities may
 * differ: a certbot RSA -hostname certificate beside EC IP certificates).
 */
static const uint16_t suites_aes[] = {
	BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	BR_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	BR_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
};
static const uint16_t suites_chacha[] = {
	BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	BR_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	BR_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
};

/* Never h2: DERP clients send no ALPN, browsers get http/1.1. */
static const char *alpn_names[] = { "http/1.1" };

static int
tls_have_aes_instructions(void)
{
	return br_aes_x86ni_ctr_get_vtable() != NULL ||
	    br_aes_pwr8_ctr_get_vtable() != NULL;
}

/* AES-GCM first where the CPU has AES instructions, else ChaCha20. */
static void
tls_choose_suites(struct derp_server *s)
{
	br_ssl_engine_context e;	/* a scratch engine, for its choices */

	s->suites = tls_have_aes_instructions() ? suites_aes : suites_chacha;
	s->nsuites = sizeof suites_aes / sizeof suites_aes[0];
	/* What BearSSL's defaults pick for this CPU, asked once: each pick
	 * asks the CPU (CPUID), which a virtual machine answers slowly
	 * (about 4 us a question here, several per handshake). */
	memset(&e, 0, sizeof e);
	br_ssl_engine_set_default_aes_gcm(&e);
	br_ssl_engine_set_default_chapol(&e);
	s->tls_impl.aes_ctr = e.iaes_ctr;
	s->tls_impl.ghash = e.ighash;
	s->tls_impl.chacha = e.ichacha;
	s->tls_impl.poly = e.ipoly;
}

/* c's handshake no longer reads its certificate bank (done, or closed). */
static void
cert_release(struct derp_server *s, struct conn *c)
{
	if (c->cert_ref != 0) {
		s->ident[(c->cert_ref - 1) / 2].bank[(c->cert_ref - 1) % 2].users--;
		c->cert_ref = 0;
	}
}

static struct cert_ident *cert_ident_local(struct derp_server *s,
    struct conn *c, const char *sni);
static int is_ip_literal(const char *h);

/*
 * SNI policy: which identity's certificate a ClientHello gets.  derper, with a
 * DNS -hostname, serves it only to an SNI equal to -hostname exactly (no SNI
 * fails too); with an IP -hostname, the one certificate whatever the SNI says
 * (Go clients send none for an IP, some tools send "ip:port").  With
 * -acme-ip-certs beside a DNS -hostname, no SNI or an IP SNI equal to the
 * local address gets that address's certificate (cert_ident_local).
 *
 * BearSSL's single-chain handlers ignore SNI, so this wrapper picks the
 * identity, installs its chain in the slot's context with
 * br_ssl_server_set_single_ec/_rsa (which install their own handler as the
 * policy, so this one is put back) and delegates to that handler.  It sits
 * beside each slot's context (server.sni): do_keyx/do_sign get no server
 * context, only the policy pointer, which leads here.
 */
struct sni_policy {
	const br_ssl_server_policy_class *vtable;
	br_ssl_server_context *sc;
	struct derp_server *s;
	struct conn *c;
};

static const br_ssl_server_policy_class **
sni_inner(const br_ssl_server_policy_class **pctx)
{
	const struct sni_policy *sp = (const struct sni_policy *)(const void *)pctx;

	return &sp->sc->chain_handler.vtable;
}

static struct cert_ident *
sni_identity(struct derp_server *s, struct conn *c, const char *sni)
{
	if (!s->sni_strict || strcmp(sni, s->cfg.hostname) == 0)
		return &s->ident[0];
	if (s->ip_idents && (sni[0] == '\0' || is_ip_literal(sni)))
		return cert_ident_local(s, c, sni);
	return NULL;
}

/* Install a certificate and its key as sc's single chain. */
static void
tls_set_chain(br_ssl_server_context *sc, const struct cert_store *cs)
{
	if (cs->key_type == BR_KEYTYPE_EC)
		br_ssl_server_set_single_ec(sc, cs->chain, cs->chain_len, &cs->ec,
		    BR_KEYTYPE_SIGN, cs->leaf_issuer_key_type,
		    br_ec_get_default(), p256_ecdsa_sign_asn1);
	else
		br_ssl_server_set_single_rsa(sc, cs->chain, cs->chain_len,
		    &cs->rsa, BR_KEYTYPE_SIGN, br_rsa_private_get_default(),
		    br_rsa_pkcs1_sign_get_default());
}

static int
sni_choose(const br_ssl_server_policy_class **pctx,
    const br_ssl_server_context *cc, br_ssl_server_choices *choices)
{
	struct sni_policy *sp = (struct sni_policy *)(void *)pctx;
	struct derp_server *s = sp->s;
	struct cert_ident *id;
	struct cert_bank *b;

	cert_release(s, sp->c);
	id = sni_identity(s, sp->c, br_ssl_engine_get_server_name(&cc->eng));
	if (id == NULL || !id->bank[id->cur].loaded)
		return 0;
	b = &id->bank[id->cur];
	tls_set_chain(sp->sc, &b->cs);
	br_ssl_server_set_policy(sp->sc, &sp->vtable);
	/* Held until the handshake ends: a reload leaves this bank alone. */
	sp->c->cert_ref = (uint8_t)(1 + 2 * (id - s->ident) + id->cur);
	b->users++;
	return (*sni_inner(pctx))->choose(sni_inner(pctx), cc, choices);
}

static uint32_t
sni_do_keyx(const br_ssl_server_policy_class **pctx, unsigned char *data,
    size_t *len)
{
	const br_ssl_server_policy_class **in = sni_inner(pctx);

	return (*in)->do_keyx(in, data, len);
}

static size_t
sni_do_sign(const br_ssl_server_policy_class **pctx, unsigned algo_id,
    unsigned char *data, size_t hv_len, size_t len)
{
	const br_ssl_server_policy_class **in = sni_inner(pctx);

	return (*in)->do_sign(in, algo_id, data, hv_len, len);
}

static const br_ssl_server_policy_class sni_policy_vtable = {
	sizeof(struct sni_policy), sni_choose, sni_do_keyx, sni_do_sign
};

/*
 * Prepare slot i's BearSSL context for a new connection; its certificate is
 * chosen from the ClientHello (sni_choose).  0, -1 on a BearSSL failure, -2
 * when no certificate can be served yet (ACME has not delivered one).
 */
static int
tls_conn_init(struct derp_server *s, struct conn *c, uint32_t i)
{
	br_ssl_server_context *sc = &s->ssl[i];
	br_ssl_engine_context *e = &sc->eng;
	const struct cert_ident *id = &s->ident[0];
	uint8_t seed[32];

	if (!id->bank[id->cur].loaded && !s->ip_idents)
		return -2;
	br_ssl_server_zero(sc);
	br_ssl_engine_set_versions(e, BR_TLS12, BR_TLS12);
	br_ssl_engine_set_suites(e, s->suites, s->nsuites);
	br_ssl_engine_set_hash(e, br_sha256_ID, &br_sha256_vtable);
	br_ssl_engine_set_hash(e, br_sha384_ID, &br_sha384_vtable);
	br_ssl_engine_set_hash(e, br_sha512_ID, &br_sha512_vtable);
	br_ssl_engine_set_prf_sha256(e, &br_tls12_sha256_prf);
	br_ssl_engine_set_prf_sha384(e, &br_tls12_sha384_prf);
	br_ssl_engine_set_gcm(e, &br_sslrec_in_gcm_vtable,
	    &br_sslrec_out_gcm_vtable);
	br_ssl_engine_set_aes_ctr(e, s->tls_impl.aes_ctr);
	br_ssl_engine_set_ghash(e, s->tls_impl.ghash);
	br_ssl_engine_set_chapol(e, &br_sslrec_in_chapol_vtable,
	    &br_sslrec_out_chapol_vtable);
	br_ssl_engine_set_chacha20(e, s->tls_impl.chacha);
	br_ssl_engine_set_poly1305(e, s->tls_impl.poly);
	/* X25519 (the key exchange Tailscale clients offer first) by
	 * x25519.c; every other curve by BearSSL's m31 code. */
	br_ssl_engine_set_ec(e, &x25519_ec_impl);
	s->sni[i].vtable = &sni_policy_vtable;
	s->sni[i].sc = sc;
	s->sni[i].s = s;
	s->sni[i].c = c;
	br_ssl_server_set_policy(sc, &s->sni[i].vtable);
	br_ssl_engine_set_buffers_bidi(e, c->ibuf, IBUF_BYTES, c->obuf,
	    OBUF_BYTES);
	br_ssl_engine_set_protocol_names(e, alpn_names, 1);
	br_ssl_engine_add_flags(e, BR_OPT_ENFORCE_SERVER_PREFERENCES |
	    BR_OPT_NO_RENEGOTIATION);
	rng_bytes(&s->rng, seed, sizeof seed);
	br_ssl_engine_inject_entropy(e, seed, sizeof seed);
	/* 256 bits from our own generator (seeded by the system at start)
	 * seed it: the reset need not ask the system again (a syscall and a
	 * CPUID per handshake). */
	e->rng_os_rand_done = 1;
	if (!br_ssl_server_reset(sc))
		return -1;
	c->ssl = sc;
	c->tls = 1;
	c->cert_ref = 0;
	return 0;
}

/* ==================================================================== OUTPUT */

/*
 * A connection's output: packets wait in two FIFOs of at most queue_depth
 * packets (derper's sendQueue and discoSendQueue); control frames wait in
 * fixed slots.  conn_fill copies whatever is waiting into the output buffer
 * (BearSSL's application buffer, or obuf in plain mode) until it is full; then
 * one TLS record (or one write) carries many frames.
 */

/* "TS" U+1F4AC: the start of a disco packet (disco/disco.go). */
static const uint8_t disco_magic[6] = { 0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac };

static int
pkt_is_disco(const struct pool *p, uint32_t first, uint32_t plen)
{

	/* The packet starts at RECV_PREFIX_BYTES in the first chunk, and
	 * CHUNK_DATA_BYTES > RECV_PREFIX_BYTES + 6, so the magic is contiguous. */
	return plen >= DISCO_MIN_BYTES &&
	    memcmp(p->chunks[first].data + RECV_PREFIX_BYTES, disco_magic, 6) == 0;
}





/* Where output bytes go next and how much fits; NULL/0 when nothing fits
 * now.  No WebSocket framing: out_space adds it. */
static uint8_t *
out_raw_space(struct conn *c, size_t *avail)
{
	if (c->tls) {
		if (!(br_ssl_engine_current_state(&c->ssl->eng) & BR_SSL_SENDAPP)) {
			*avail = 0;
			return NULL;
		}
		return br_ssl_engine_sendapp_buf(&c->ssl->eng, avail);
	}
	if (c->oofs == c->olen) {
		c->oofs = c->olen = 0;
	} else if (c->oofs > 0 && OBUF_BYTES - c->olen < CHUNK_DATA_BYTES) {
		memmove(c->obuf, c->obuf + c->oofs, c->olen - c->oofs);
		c->olen -= c->oofs;
		c->oofs = 0;
	}
	*avail = OBUF_BYTES - c->olen;
	return *avail ? c->obuf + c->olen : NULL;
}

static void
out_raw_commit(struct conn *c, size_t n)
{
	if (c->tls)
		br_ssl_engine_sendapp_ack(&c->ssl->eng, n);
	else
		c->olen += n;
}

/*
 * Where DERP bytes go next.  On a WebSocket every commit becomes one
 * unmasked binary message (boundaries mean nothing to the client), so room
 * for its header is kept in front: at most 65535 bytes follow it, which
 * the 16-bit length form carries.
 */
static uint8_t *
out_space(struct conn *c, size_t *avail)
{
	uint8_t *p = out_raw_space(c, avail);

	if (p == NULL || !c->ws.on)
		return p;
	if (*avail <= WS_OUT_HDR) {
		*avail = 0;
		return NULL;
	}
	*avail -= WS_OUT_HDR;
	if (*avail > 0xffff)
		*avail = 0xffff;
	c->ws.out_at = p;
	return p + WS_OUT_HDR;
}

/* n bytes were written where out_space said: send them. */
static void
out_commit(struct conn *c, size_t n)
{
	uint8_t *p = c->ws.out_at;

	if (!c->ws.on || n == 0) {
		out_raw_commit(c, n);
		return;
	}
	/* RFC 6455 5.2: the shortest length form. */
	if (n < 126) {
		memmove(p + 2, p + WS_OUT_HDR, n);
		p[0] = 0x82;		/* FIN, binary */
		p[1] = (uint8_t)n;
		out_raw_commit(c, n + 2);
	} else {
		p[0] = 0x82;
		p[1] = 126;
		p[2] = (uint8_t)(n >> 8);
		p[3] = (uint8_t)n;
		out_raw_commit(c, n + WS_OUT_HDR);
	}
}

#ifndef DERP_NO_WS
/* A pong or our close frame, unmasked, outside any message.  Bytes written,
 * 0 when they do not fit now. */
static size_t
ws_out_control(struct conn *c)
{
	uint8_t *p;
	size_t avail, n = 0, k;

	p = out_raw_space(c, &avail);
	if (p == NULL || avail < 2 + WS_CTL_MAX)
		return 0;
	if (c->ws.close == WS_CLOSE_PENDING) {
		p[0] = 0x80 | WS_OP_CLOSE;
		if (c->ws.close_code != WS_NO_STATUS) {
			p[2] = (uint8_t)(c->ws.close_code >> 8);
			p[3] = (uint8_t)c->ws.close_code;
			n = 2;
			k = c->ws.close_why != NULL ? strlen(c->ws.close_why) : 0;
			if (k > WS_CTL_MAX - 2)
				k = WS_CTL_MAX - 2;
			if (k > 0)	/* close_why is NULL for an echo */
				memcpy(p + 4, c->ws.close_why, k);
			n += k;
		}
		p[1] = (uint8_t)n;
		c->ws.close = WS_CLOSE_SENT;
		c->close_after = 1;
	} else {
		p[0] = 0x80 | WS_OP_PONG;
		n = c->ws.ctl_len;
		p[1] = (uint8_t)n;
		memcpy(p + 2, c->ws.ctl, n);
		c->ws.pong_pending = 0;
	}
	out_raw_commit(c, 2 + n);
	return 2 + n;
}
#else
static size_t
ws_out_control(struct conn *c)
{
	(void)c;
	return 0;
}
#endif

/*
 * Copy as much as fits of the packet being written, giving each chunk back
 * once copied (and its budget, for a packet held over several writes: one
 * larger than a record).  Returns bytes copied.
 */
static size_t
out_packet(struct derp_server *s, struct conn *c, uint8_t *buf, size_t avail)
{
	struct chunk *ch;
	size_t k, done = 0;
	uint32_t next;

	while (c->out_pkt != NIL && done < avail) {
		ch = &s->pool.chunks[c->out_pkt];
		k = ch->len - c->out_off;
		if (k > avail - done)
			k = avail - done;
		memcpy(buf + done, ch->data + c->out_off, k);
		done += k;
		c->out_off = (uint16_t)(c->out_off + k);
		if (c->out_off == ch->len) {
			next = ch->next;
			pool_give(&s->pool, c->out_pkt);
			if (c->out_held)
				hold_give(s, c, HOLD_IN, 1);
			c->out_pkt = next;
			c->out_off = 0;
		}
	}
	if (c->out_pkt == NIL)
		c->out_held = 0;
	out_commit(c, done);
	return done;
}

/*
 * Start writing the packet at the head of queue k.  A frame that fits the
 * output is copied whole and given back at once; one that fits an empty
 * output waits until the output is empty; a larger one (packets over 16 KiB)
 * is written over several records and its chunks are held in the IN budget
 * meanwhile (so a slow reader cannot pin the pool: P3, P5).  Returns bytes
 * copied, 0 when it has to wait.
 */
static size_t
out_start_packet(struct derp_server *s, struct conn *c, int k, uint8_t *buf,
    size_t avail, int pending)
{
	uint32_t first = c->q[k].head, n = pkt_chunks(&s->pool, first);
	uint32_t plen = pkt_len(&s->pool, first);
	size_t flen = RECV_PREFIX_BYTES + (size_t)plen;

	if (flen > avail && pending)
		return 0;
	if (flen > avail && hold_admit(s, c, HOLD_IN, n) != 0) {
		/* Retried when the spare has room (input_resume_paused). */
		c->out_wait = 1;
		ring_push(&s->paused, (uint32_t)(c - s->conns));
		return 0;
	}
	c->out_held = flen > avail;
	c->out_pkt = conn_queue_pop(s, c, k);
	c->out_off = 0;
	s->st.packets_sent++;
	s->st.bytes_sent += plen;
	return out_packet(s, c, buf, avail);
}

/* Output waiting for the socket (not counting what still waits in queues). */
static int
conn_out_pending(const struct conn *c)
{
	if (c->tls)
		return (br_ssl_engine_current_state(&c->ssl->eng) &
		    BR_SSL_SENDREC) != 0;
	return c->olen > c->oofs;
}

static void out_peer_gone(struct derp_server *s, struct conn *c, uint8_t *buf);
static int watch_pending(const struct derp_server *s, const struct conn *c);
static size_t watch_out(struct derp_server *s, struct conn *c, uint8_t *buf,
    size_t avail);
static void watch_note(struct derp_server *s, const struct conn *c,
    int present);
static void watch_start(struct derp_server *s, struct conn *c);
static void watch_stop(struct derp_server *s, struct conn *c);
static void mesh_close_peer(struct derp_server *s, struct conn *c);

/* Fill the output buffer from what waits.  Returns bytes added. */
static size_t
conn_fill(struct derp_server *s, struct conn *c)
{
	uint8_t *buf;
	size_t avail, n, total = 0;
	int k;

	if (c->ws.close == WS_CLOSE_SENT)
		return 0;
	for (;;) {
		if (c->ws.plain > 0) {	/* the 101: not in a message */
			buf = out_raw_space(c, &avail);
			if (buf == NULL)
				break;
			n = c->ws.plain < avail ? c->ws.plain : avail;
			cbuf_peek(&s->pool, &c->raw, buf, n);
			conn_chain_consume(s, c, HOLD_CTRL, &c->raw, n);
			out_raw_commit(c, n);
			c->ws.plain -= (uint32_t)n;
			total += n;
			continue;
		}
		if (c->ws.on && (c->ws.close || c->ws.pong_pending)) {
			n = ws_out_control(c);
			if (n == 0)
				break;
			total += n;
			if (c->ws.close == WS_CLOSE_SENT)
				break;
			continue;
		}
		buf = out_space(c, &avail);
		if (buf == NULL)
			break;
		if (c->raw.len > 0) {
			n = c->raw.len < avail ? c->raw.len : avail;
			cbuf_peek(&s->pool, &c->raw, buf, n);
			conn_chain_consume(s, c, HOLD_CTRL, &c->raw, n);
			out_commit(c, n);
			total += n;
			continue;
		}
		if (c->state != CS_DERP)
			break;
		if (c->out_pkt != NIL) {	/* a packet is half written */
			total += out_packet(s, c, buf, avail);
			continue;
		}
		if (c->pong_pending) {
			if (avail < FRAME_HEADER_BYTES + PING_MIN_BYTES)
				break;
			frame_put_header(buf, FRAME_PONG, PING_MIN_BYTES);
			memcpy(buf + FRAME_HEADER_BYTES, c->pong, PING_MIN_BYTES);
			out_commit(c, FRAME_HEADER_BYTES + PING_MIN_BYTES);
			total += FRAME_HEADER_BYTES + PING_MIN_BYTES;
			c->pong_pending = 0;
			s->st.sent_pong++;
			continue;
		}
		if (c->snd.gone_head != NIL) {
			if (avail < FRAME_HEADER_BYTES + PEERGONE_BYTES)
				break;
			out_peer_gone(s, c, buf);
			out_commit(c, FRAME_HEADER_BYTES + PEERGONE_BYTES);
			total += FRAME_HEADER_BYTES + PEERGONE_BYTES;
			continue;
		}
		if (c->keepalive_pending) {
			if (avail < FRAME_HEADER_BYTES)
				break;
			frame_put_header(buf, FRAME_KEEP_ALIVE, 0);
			out_commit(c, FRAME_HEADER_BYTES);
			total += FRAME_HEADER_BYTES;
			c->keepalive_pending = 0;
			continue;
		}
		if (watch_pending(s, c)) {	/* a mesh peer watching */
			if (avail < FRAME_HEADER_BYTES + PEER_PRESENT_BYTES)
				break;
			/* 0: the flood's scan found no more (or c failed) */
			if ((n = watch_out(s, c, buf, avail)) > 0) {
				out_commit(c, n);
				total += n;
				continue;
			}
			if (c->dead)	/* a whole log behind */
				break;
		}
		/* Disco first: it is small and decides whether paths work. */
		for (k = Q_DISCO; k <= Q_OTHER; k++)
			if (c->q[k].head != NIL)
				break;
		if (k > Q_OTHER)
			break;
		n = out_start_packet(s, c, k, buf, avail, total > 0 ||
		    c->out_unflushed || conn_out_pending(c));
		if (n == 0)
			break;
		total += n;
	}
	return total;
}


/* write(2) what is ready.  1 progress, 0 nothing to write or EAGAIN. */
static int
conn_write(struct derp_server *s, struct conn *c)
{
	const uint8_t *buf;
	size_t len;
	ssize_t n;

	if (c->tls) {
		if (!(br_ssl_engine_current_state(&c->ssl->eng) & BR_SSL_SENDREC))
			return 0;
		buf = br_ssl_engine_sendrec_buf(&c->ssl->eng, &len);
	} else {
		if (c->olen == c->oofs)
			return 0;
		buf = c->obuf + c->oofs;
		len = c->olen - c->oofs;
	}
	n = write(c->fd, buf, len);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
			if (c->wstall_ms == 0)
				c->wstall_ms = s->now;
			return 0;
		}
		c->dead = 1;	/* reset by peer etc.: not worth a log line */
		return 0;
	}
	if (c->tls)
		br_ssl_engine_sendrec_ack(&c->ssl->eng, (size_t)n);
	else
		c->oofs += (size_t)n;
	c->wstall_ms = conn_out_pending(c) ? s->now : 0;
	return 1;
}

/* =================================================================== ROUTING */

/*
 * The key table maps a 32-byte public key to the connections registered with
 * it: open addressing with linear probing, at most half full (sized at start-up
 * to a power of two >= 2 x max connections), deletion by backward shift so no
 * tombstones accumulate.  Keys come from clients, who can choose them, so the
 * hash is keyed with a random per-process seed.
 */
static uint32_t
key_hash(const struct derp_server *s, const uint8_t key[KEY_BYTES])
{
	uint64_t h = s->hash_seed[0];
	int i;

	for (i = 0; i < KEY_BYTES; i += 8) {
		h ^= get_le64(key + i);
		h *= 0x9e3779b97f4a7c15ULL;
		h ^= (h >> 29) ^ s->hash_seed[1];
	}
	h *= 0xbf58476d1ce4e5b9ULL;
	return (uint32_t)(h >> 32);
}

/* The slot holding key, or the empty slot where it would go. */
static uint32_t
keytab_slot(const struct derp_server *s, const uint8_t key[KEY_BYTES])
{
	uint32_t i = key_hash(s, key) & s->keytab_mask;

	while (keyent_used(&s->keytab[i]) &&
	    memcmp(s->keytab[i].key, key, KEY_BYTES) != 0)
		i = (i + 1) & s->keytab_mask;
	return i;
}

static struct keyent *
keytab_find(struct derp_server *s, const uint8_t key[KEY_BYTES])
{
	struct keyent *e = &s->keytab[keytab_slot(s, key)];

	return keyent_used(e) ? e : NULL;
}

static void
keytab_delete(struct derp_server *s, uint32_t i)
{
	uint32_t j = i, home;

	for (;;) {
		s->keytab[i].nconns = 0;
		s->keytab[i].fwd = 0;
		for (;;) {
			j = (j + 1) & s->keytab_mask;
			if (!keyent_used(&s->keytab[j]))
				return;
			home = key_hash(s, s->keytab[j].key) & s->keytab_mask;
			/* Move j back to i unless its home lies cyclically in (i, j]. */
			if (i <= j ? (home <= i || home > j) : (home <= i && home > j))
				break;
		}
		s->keytab[i] = s->keytab[j];
		i = j;
	}
}

/* Any frame from c makes it the active connection of its key (derper's "last
 * writer is active" policy for duplicate keys). */
static void
route_note_sender(struct derp_server *s, struct conn *c)
{
	struct keyent *e;

	c->send_seq = ++s->send_seq;
	if (!c->dup)
		return;		/* the common case costs no lookup */
	e = keytab_find(s, c->key);
	if (e != NULL)
		e->active = (int32_t)(c - s->conns);
}

/* Keep conn.dup (its key has other connections) true on every member. */
static void
route_mark_dups(struct derp_server *s, const struct keyent *e)
{
	int32_t i;

	for (i = e->first; i >= 0; i = s->conns[i].key_next)
		s->conns[i].dup = e->nconns > 1;
}

/* Register c under c->key; the newest connection of a key gets its traffic. */
static void
route_register(struct derp_server *s, struct conn *c)
{
	uint32_t i = keytab_slot(s, c->key);
	struct keyent *e = &s->keytab[i];
	int32_t idx = (int32_t)(c - s->conns);

	if (!keyent_used(e)) {
		memcpy(e->key, c->key, KEY_BYTES);
		e->nconns = 0;
		e->fwd = 0;
		e->senders = NIL;
		s->nkeys++;
	}
	if (e->nconns == 0) {
		c->key_next = -1;
	} else {
		c->key_next = e->first;
		s->st.total_dup_client_conns++;
	}
	e->first = idx;
	e->active = idx;
	e->nconns++;
	c->send_seq = ++s->send_seq;
	s->st.current_connections++;
	if (e->nconns > 1)
		route_mark_dups(s, e);
	watch_note(s, c, 1);
}

/*
 * PeerGone records (struct sender), derper's sentTo: one per (recipient slot,
 * source key) that delivered a packet, hashed by both, listed on the recipient
 * (live list, then its FIFO of notices) and on the source key's entry.  A
 * departure walks only the departing key's list (no scan of the slots), marks
 * each record gone and moves it to its recipient's FIFO, from which conn_fill
 * writes the PeerGone and frees it.  So every recipient hears of every
 * departure once, as from derper, within the records' budget (LIMITS).
 */
static uint32_t
snd_bucket(const struct derp_server *s, uint32_t dst,
    const uint8_t key[KEY_BYTES])
{
	return (key_hash(s, key) ^ (dst * 0x9e3779b9u)) & s->snd_hmask;
}

static uint32_t
snd_find(const struct derp_server *s, uint32_t dst, const uint8_t key[KEY_BYTES])
{
	uint32_t e = s->snd_hash[snd_bucket(s, dst, key)];

	while (e != NIL && (s->snd[e].dst != dst ||
	    memcmp(s->snd[e].key, key, KEY_BYTES) != 0))
		e = s->snd[e].hnext;
	return e;
}

static void
snd_unhash(struct derp_server *s, uint32_t e)
{
	uint32_t *pp = &s->snd_hash[snd_bucket(s, s->snd[e].dst, s->snd[e].key)];

	while (*pp != e)
		pp = &s->snd[*pp].hnext;
	*pp = s->snd[e].hnext;
}

/* A record for recipient d, paid by d, else by the sender c (may be NULL),
 * else by the spare.  NIL when nobody can pay or none is left. */
static uint32_t
snd_alloc(struct derp_server *s, struct conn *d, struct conn *c)
{
	uint32_t e = s->snd_free != NIL ? s->snd_free :
	    s->snd_fresh <= s->nsnd ? s->snd_fresh : NIL;

	if (e == NIL)
		return NIL;
	if (d->snd.paid < SENDERS_PER_CONN) {
		d->snd.paid++;
		s->snd[e].payer = (uint32_t)(d - s->conns) + 1;
	} else if (c != NULL && c->snd.paid < SENDERS_PER_CONN) {
		c->snd.paid++;
		s->snd[e].payer = (uint32_t)(c - s->conns) + 1;
	} else if (s->snd_spare_used < SENDERS_SPARE) {
		s->snd_spare_used++;
		s->snd[e].payer = 0;
	} else {
		return NIL;
	}
	if (e == s->snd_free)
		s->snd_free = s->snd[e].hnext;
	else
		s->snd_fresh++;
	s->snd[e].dst = (uint32_t)(d - s->conns);
	s->snd[e].hnext = s->snd[e].dnext = s->snd[e].dprev = NIL;
	s->snd[e].knext = s->snd[e].kprev = NIL;
	s->snd[e].gone = 0;
	s->snd[e].reason = PEER_GONE_DISCONNECTED;
	return e;
}

/* Back to the free list; whoever paid for it has been credited. */
static void
snd_free(struct derp_server *s, uint32_t e)
{
	s->snd[e].hnext = s->snd_free;
	s->snd_free = e;
}

static void
snd_release(struct derp_server *s, uint32_t e)
{
	struct sender *x = &s->snd[e];

	if (x->payer == 0)
		s->snd_spare_used--;
	else
		s->conns[x->payer - 1].snd.paid--;
	snd_free(s, e);
}

/* Append record e to d's FIFO of notices (e is on no recipient list). */
static void
snd_queue_notice(struct derp_server *s, struct conn *d, uint32_t e)
{
	s->snd[e].gone = 1;
	s->snd[e].dnext = NIL;
	if (d->snd.gone_tail != NIL)
		s->snd[d->snd.gone_tail].dnext = e;
	else
		d->snd.gone_head = e;
	d->snd.gone_tail = e;
	mark_dirty(s, d);
}

/* Take live record e off its recipient's live list. */
static void
snd_unlink_dst(struct derp_server *s, uint32_t e)
{
	struct sender *x = &s->snd[e];
	struct conn *d = &s->conns[x->dst];

	if (x->dprev != NIL)
		s->snd[x->dprev].dnext = x->dnext;
	else
		d->snd.live = x->dnext;
	if (x->dnext != NIL)
		s->snd[x->dnext].dprev = x->dprev;
	if (d->snd.last == e)
		d->snd.last = NIL;
}

/* PeerGone(key, NotHere) to c: a record that is a notice from the start. */
static void
peergone_not_here(struct derp_server *s, struct conn *c,
    const uint8_t key[KEY_BYTES])
{
	uint32_t e = snd_alloc(s, c, NULL);

	if (e == NIL) {
		s->st.peer_gone_untracked++;
		return;
	}
	memcpy(s->snd[e].key, key, KEY_BYTES);
	s->snd[e].reason = PEER_GONE_NOT_HERE;
	snd_queue_notice(s, c, e);
}

/* Write the oldest notice of c (room for a PeerGone frame is checked). */
static void
out_peer_gone(struct derp_server *s, struct conn *c, uint8_t *buf)
{
	uint32_t e = c->snd.gone_head;
	struct sender *x = &s->snd[e];

	frame_put_header(buf, FRAME_PEER_GONE, PEERGONE_BYTES);
	memcpy(buf + FRAME_HEADER_BYTES, x->key, KEY_BYTES);
	buf[FRAME_HEADER_BYTES + KEY_BYTES] = x->reason;
	if (x->reason == PEER_GONE_NOT_HERE)
		s->st.peer_gone_not_here++;
	else
		s->st.peer_gone_disconnected++;
	c->snd.gone_head = x->dnext;
	if (c->snd.gone_head == NIL)
		c->snd.gone_tail = NIL;
	snd_release(s, e);
}

/* d received a packet from key src (connection c, or NULL for a forwarded
 * one): remember it (derper's sentTo). */
static void
senders_note(struct derp_server *s, struct conn *d, const uint8_t *src,
    struct conn *c)
{
	uint32_t e = d->snd.last, dst = (uint32_t)(d - s->conns);
	struct keyent *ke;
	struct sender *x;

	if (e != NIL && memcmp(s->snd[e].key, src, KEY_BYTES) == 0)
		return;		/* same source as last time: the common case */
	e = snd_find(s, dst, src);
	if (e == NIL) {
		/* A forwarded packet's source not announced (any more)
		 * cannot leave later: nothing to record. */
		ke = keytab_find(s, src);
		if (ke == NULL || (e = snd_alloc(s, d, c)) == NIL) {
			s->st.peer_gone_untracked++;
			return;
		}
		x = &s->snd[e];
		memcpy(x->key, src, KEY_BYTES);
		x->hnext = s->snd_hash[snd_bucket(s, dst, src)];
		s->snd_hash[snd_bucket(s, dst, src)] = e;
		x->dnext = d->snd.live;
		if (x->dnext != NIL)
			s->snd[x->dnext].dprev = e;
		d->snd.live = e;
		x->knext = ke->senders;
		if (x->knext != NIL)
			s->snd[x->knext].kprev = e;
		ke->senders = e;
	}
	d->snd.last = e;
}

/*
 * Who pays for record x now that its payer, connection c of x's source key,
 * closes while the key stays (other connections of it remain, listed from
 * `first`): one of those with budget left, else the recipient, else the spare.
 * 0, or -1 when nobody can (the record is then dropped by the caller: budgets
 * never grow, so a key reconnecting over and over cannot pile up records).
 */
static int
snd_repay(struct derp_server *s, struct sender *x, int32_t first)
{
	struct conn *d = &s->conns[x->dst];
	int32_t j;

	for (j = first; j >= 0; j = s->conns[j].key_next)
		if (s->conns[j].snd.paid < SENDERS_PER_CONN) {
			s->conns[j].snd.paid++;
			x->payer = (uint32_t)j + 1;
			return 0;
		}
	if (d->snd.paid < SENDERS_PER_CONN) {
		d->snd.paid++;
		x->payer = x->dst + 1;
		return 0;
	}
	if (s->snd_spare_used < SENDERS_SPARE) {
		s->snd_spare_used++;
		x->payer = 0;
		return 0;
	}
	return -1;
}

/*
 * A source key's records when connection c of it closes.  ke: the key's entry
 * while the key stays; NULL when it has left (head: its records), and then
 * each record becomes a notice to its recipient, who pays for it until it is
 * written (a moment, or the recipient's write timeout).  While the key stays,
 * the records c paid for are paid by someone else (snd_repay) or dropped.
 */
static void
snd_source_closed(struct derp_server *s, struct keyent *ke, uint32_t head,
    struct conn *c)
{
	/* c NULL: a peer's key left (MESH); no connection paid for these */
	uint32_t e, next, me = c != NULL ? (uint32_t)(c - s->conns) + 1 :
	    UINT32_MAX;
	struct sender *x;

	for (e = head; e != NIL; e = next) {
		x = &s->snd[e];
		next = x->knext;
		if (ke == NULL) {
			if (x->payer == me) {
				c->snd.paid--;
				s->conns[x->dst].snd.paid++;
				x->payer = x->dst + 1;
			}
			snd_unhash(s, e);
			snd_unlink_dst(s, e);
			snd_queue_notice(s, &s->conns[x->dst], e);
			continue;
		}
		if (x->payer != me)
			continue;
		c->snd.paid--;
		if (snd_repay(s, x, ke->first) == 0)
			continue;
		/* Nobody can pay: forget it (that departure will go
		 * unannounced to this recipient). */
		snd_unhash(s, e);
		snd_unlink_dst(s, e);
		if (x->kprev != NIL)
			s->snd[x->kprev].knext = x->knext;
		else
			ke->senders = x->knext;
		if (x->knext != NIL)
			s->snd[x->knext].kprev = x->kprev;
		s->st.peer_gone_untracked++;
		snd_free(s, e);
	}
}

/* Recipient c closes: free its records, live (off their source key's list)
 * and pending notices. */
static void
snd_recipient_closed(struct derp_server *s, struct conn *c)
{
	uint32_t e, next;
	struct sender *x;
	struct keyent *ke;

	for (e = c->snd.live; e != NIL; e = next) {
		x = &s->snd[e];
		next = x->dnext;
		snd_unhash(s, e);
		if (x->kprev != NIL) {
			s->snd[x->kprev].knext = x->knext;
		} else {
			ke = keytab_find(s, x->key);
			if (ke != NULL)
				ke->senders = x->knext;
		}
		if (x->knext != NIL)
			s->snd[x->knext].kprev = x->kprev;
		snd_release(s, e);
	}
	for (e = c->snd.gone_head; e != NIL; e = next) {
		next = s->snd[e].dnext;
		snd_release(s, e);
	}
	memset(&c->snd, 0, sizeof c->snd);
}

static void
route_unregister(struct derp_server *s, struct conn *c)
{
	uint32_t i = keytab_slot(s, c->key), senders;
	struct keyent *e = &s->keytab[i];
	int32_t idx = (int32_t)(c - s->conns), *pp, best = -1;
	uint64_t best_seq = 0;

	if (e->nconns == 0)
		return;
	for (pp = &e->first; *pp >= 0; pp = &s->conns[*pp].key_next)
		if (*pp == idx) {
			*pp = c->key_next;
			break;
		}
	e->nconns--;
	s->st.current_connections--;
	if (e->nconns == 0)
		watch_note(s, c, 0);
	if (e->nconns == 0 && e->fwd == 0) {
		/* The key has left the region: PeerGone(Disconnected) to
		 * everyone who received from it since connecting. */
		senders = e->senders;
		keytab_delete(s, i);
		s->nkeys--;
		snd_source_closed(s, NULL, senders, c);
		return;
	}
	if (e->nconns == 0) {	/* still on a mesh peer */
		e->first = e->active = -1;
		snd_source_closed(s, e, e->senders, c);
		return;
	}
	snd_source_closed(s, e, e->senders, c);
	if (e->nconns == 1)
		route_mark_dups(s, e);
	if (e->active == idx) {
		/* The most recent sender (or registration) still connected. */
		for (idx = e->first; idx >= 0; idx = s->conns[idx].key_next)
			if (best < 0 || s->conns[idx].send_seq > best_seq) {
				best = idx;
				best_seq = s->conns[idx].send_seq;
			}
		e->active = best;
	}
}

static int
nothere_allow(struct derp_server *s, struct conn *c)
{
	int64_t cap = (int64_t)NOT_HERE_BURST * 1000;

	c->nh_tokens_milli += (s->now - c->nh_last_ms) * NOT_HERE_PER_SEC;
	c->nh_last_ms = s->now;
	if (c->nh_tokens_milli > cap)
		c->nh_tokens_milli = cap;
	if (c->nh_tokens_milli < 1000)
		return 0;
	c->nh_tokens_milli -= 1000;
	return 1;
}

/* Bytes of a packet frame before the packet: dst, or src and dst. */
static uint32_t
frame_pkt_prefix(const struct conn *c)
{
	return c->ftype == FRAME_FORWARD_PACKET ? 2 * KEY_BYTES : KEY_BYTES;
}

/* The source key of the packet frame being read. */
static const uint8_t *
frame_src(const struct conn *c)
{
	return c->ftype == FRAME_FORWARD_PACKET ? c->fsrc : c->key;
}

/* A packet was taken in: SendPacket counts as received, ForwardPacket as
 * forwarded in (derper-compat.md 11). */
static void
route_count_in(struct derp_server *s, const struct conn *c, int kind,
    uint32_t plen)
{
	if (c->ftype == FRAME_FORWARD_PACKET) {
		s->st.forwarded_in++;
		return;
	}
	s->st.packets_received++;
	s->st.bytes_received += plen;
	s->st.received_kind[kind]++;
}

static void mesh_forward(struct derp_server *s, struct conn *c,
    struct keyent *e, uint32_t first, uint32_t plen, int kind);

/*
 * A complete SendPacket (or a mesh peer's ForwardPacket) from c, held in the
 * chain c->fpkt, to c->fsmall (derp-protocol.md 10.2, 10.3): to the key's
 * active local connection; else, for a SendPacket, to the mesh peer that
 * announced the key; else dropped.  A forwarded packet is never forwarded
 * again, so there are no loops.
 */
static void
route_packet(struct derp_server *s, struct conn *c)
{
	uint32_t first = c->fpkt, plen = c->flen - frame_pkt_prefix(c);
	int kind = pkt_is_disco(&s->pool, first, plen) ? Q_DISCO : Q_OTHER;
	int fwd = c->ftype == FRAME_FORWARD_PACKET;
	struct keyent *e;
	struct conn *d;

	e = keytab_find(s, c->fsmall);
	/* The sender's budget gave the chunks; from here the packet is queued
	 * (reclaimable) or gone. */
	hold_give(s, c, HOLD_IN, c->fpkt_chunks);
	c->fpkt = c->fpkt_cur = NIL;
	c->fpkt_chunks = 0;
	route_count_in(s, c, kind, plen);
	if (e != NULL && e->nconns == 0 && !fwd) {
		mesh_forward(s, c, e, first, plen, kind);
		return;
	}
	/* A key with connections always has an active one (route_register,
	 * route_unregister), so derper's dup_client drop cannot happen here. */
	if (e == NULL || e->nconns == 0) {
		pkt_drop(s, first, plen, fwd ? DROP_UNKNOWN_DEST_ON_FWD :
		    DROP_UNKNOWN_DEST, kind);
		/* Tell the sender the peer is not here, so it stops using this
		 * region for it (derper does this for disco only, rate-limited). */
		if (kind == Q_DISCO && nothere_allow(s, c))
			peergone_not_here(s, c, c->fsmall);
		return;
	}
	d = &s->conns[e->active];
	if (d->q[kind].count >= s->cfg.queue_depth)
		conn_queue_drop_head(s, d, kind, DROP_QUEUE_HEAD);
	conn_queue_push(s, d, kind, first);
	senders_note(s, d, frame_src(c), fwd ? NULL : c);
	mark_dirty(s, d);
}

/*
 * The direct path: a packet that arrived whole (the usual case: Go clients send
 * one packet per TLS record) for a destination with nothing queued is written
 * straight into the destination's output buffer, skipping the chunk pool and
 * the queue: one copy instead of two.  Order is kept, since nothing of that
 * destination waits.  Returns 1 if the packet was delivered so.
 */
static int
route_direct(struct derp_server *s, struct conn *c, const uint8_t *pkt,
    size_t plen)
{
	struct keyent *e = keytab_find(s, c->fsmall);
	struct conn *d;
	uint8_t *buf;
	size_t avail;
	int kind;

	if (e == NULL || e->nconns == 0)
		return 0;
	d = &s->conns[e->active];
	if (d->state != CS_DERP || d->dead || d->out_pkt != NIL ||
	    d->ws.close != WS_CLOSE_NONE ||
	    d->q[Q_DISCO].head != NIL || d->q[Q_OTHER].head != NIL ||
	    d->raw.len > 0)
		return 0;
	buf = out_space(d, &avail);
	if (buf == NULL || avail < RECV_PREFIX_BYTES + plen)
		return 0;
	frame_put_header(buf, FRAME_RECV_PACKET, (uint32_t)(KEY_BYTES + plen));
	memcpy(buf + FRAME_HEADER_BYTES, frame_src(c), KEY_BYTES);
	memcpy(buf + RECV_PREFIX_BYTES, pkt, plen);
	out_commit(d, RECV_PREFIX_BYTES + plen);
	d->out_unflushed = d->tls;	/* plain output has no record to close */
	kind = plen >= DISCO_MIN_BYTES && memcmp(pkt, disco_magic, 6) == 0 ?
	    Q_DISCO : Q_OTHER;
	route_count_in(s, c, kind, (uint32_t)plen);
	s->st.packets_sent++;
	s->st.bytes_sent += plen;
	senders_note(s, d, frame_src(c), c->ftype == FRAME_FORWARD_PACKET ?
	    NULL : c);
	mark_dirty(s, d);
	c->routed = 1;
	return 1;
}

/* ====================================================================== DERP */

static const uint8_t server_key_magic[8] = {
	0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91	/* "DERP" U+1F511 */
};

/*
 * -rate-config: each frame's payload (at most MAX_PACKET_BYTES + 32) is charged
 * to the connection's token bucket before it is read, as derper does; when the
 * bucket goes negative the connection stops being read (TCP pushes back on the
 * sender) until it refills.  Mesh peers are exempt.
 */
#define RATE_FRAME_CAP_BYTES	(MAX_PACKET_BYTES + 32)

static double
rate_burst(const struct derp_server *s)
{
	return s->rate.burst < RATE_FRAME_CAP_BYTES ? RATE_FRAME_CAP_BYTES :
	    (double)s->rate.burst;
}

static void
rate_refill(const struct derp_server *s, struct conn *c)
{
	c->rate_tokens += (double)(s->now - c->rate_last_ms) *
	    (double)s->rate.rate / 1000.0;
	c->rate_last_ms = s->now;
	if (c->rate_tokens > rate_burst(s))
		c->rate_tokens = rate_burst(s);
}

static void
rate_charge(struct derp_server *s, struct conn *c)
{
	if (s->rate.rate == 0 || c->mesh)
		return;
	rate_refill(s, c);
	c->rate_tokens -= c->flen < RATE_FRAME_CAP_BYTES ? c->flen :
	    RATE_FRAME_CAP_BYTES;
	if (c->rate_tokens < 0) {
		c->rate_until_ms = s->now + 1 +
		    (int64_t)(-c->rate_tokens * 1000.0 / (double)s->rate.rate);
		s->st.rate_limit_waited++;
		mark_paused(s, c);
	}
}

/* Queue the ServerKey frame (the server speaks first, unprompted). */
static int
derp_queue_server_key(struct derp_server *s, struct conn *c)
{
	uint8_t f[FRAME_HEADER_BYTES + 8 + KEY_BYTES];

	frame_put_header(f, FRAME_SERVER_KEY, 8 + KEY_BYTES);
	memcpy(f + FRAME_HEADER_BYTES, server_key_magic, 8);
	memcpy(f + FRAME_HEADER_BYTES + 8, s->pub, KEY_BYTES);
	return conn_append(s, c, HOLD_CTRL, &c->raw, f, sizeof f);
}

/* ServerInfo: fresh nonce | box of {"version":2} to the client. */
static int
derp_queue_server_info(struct derp_server *s, struct conn *c)
{
	static const char json[] = "{\"version\":2}";
	uint8_t f[FRAME_HEADER_BYTES + NACL_NONCE_BYTES + NACL_TAG_BYTES +
	    sizeof json - 1];
	uint8_t *nonce = f + FRAME_HEADER_BYTES;

	frame_put_header(f, FRAME_SERVER_INFO, sizeof f - FRAME_HEADER_BYTES);
	rng_bytes(&s->rng, nonce, NACL_NONCE_BYTES);
	nacl_box_seal_afternm(nonce + NACL_NONCE_BYTES, (const uint8_t *)json,
	    sizeof json - 1, nonce, c->boxkey);
	return conn_append(s, c, HOLD_CTRL, &c->raw, f, sizeof f);
}

/*
 * The ClientInfo frame is complete in c->info: open it, check it, register the
 * connection, queue ServerInfo.  Every failure closes, as derper does (DERP has
 * no error frame).
 */
static void admit_begin(struct derp_server *s, struct conn *c);

/* ClientInfo accepted (key and flags set): the connection joins the key table
 * and leaves the unfinished list; ServerInfo is its first frame. */
static void
conn_register(struct derp_server *s, struct conn *c)
{
	route_register(s, c);
	pending_remove(s, c);
	pending_append(s, c, SET_REG);
	c->state = CS_DERP;	/* registered: conn_close must unregister it */
	if (derp_queue_server_info(s, c) != 0) {
		conn_fail(s, c, "out of buffer memory");
		return;
	}
	c->deadline_ms = 0;
	/* 0 never: a record's gen 0 would match a slot not yet here */
	c->fwd.gen = ++s->fwd_gen != 0 ? s->fwd_gen : ++s->fwd_gen;
	c->rate_tokens = rate_burst(s);
	c->rate_last_ms = s->now;
	c->nh_tokens_milli = (int64_t)NOT_HERE_BURST * 1000;
	c->nh_last_ms = s->now;
	/* The jitter keeps derper's proportion (5 s of 60 s) when a test
	 * shortens the interval. */
	c->next_keepalive_ms = s->now + s->cfg.keepalive_ms +
	    (int64_t)(rng_u32(&s->rng) % (uint32_t)(s->cfg.keepalive_ms *
	    KEEPALIVE_JITTER_MS / KEEPALIVE_MS));
	if (c->notideal)
		s->st.current_notideal++;
	conn_verbose(s, c, c->mesh ? "connected (mesh peer)" : c->ws.on ?
	    "connected (WebSocket)" : "connected");
	mark_dirty(s, c);
}

static void
derp_client_info(struct derp_server *s, struct conn *c)
{
	struct clientinfo ci;
	uint8_t *p = s->scratch;
	uint32_t len = c->info.len;
	size_t boxlen = len - CLIENTINFO_MIN_BYTES;
	uint8_t *msg;

	cbuf_peek(&s->pool, &c->info, p, len);
	conn_chain_clear(s, c, HOLD_IN, &c->info);
	if (is_zero(p, KEY_BYTES)) {
		conn_fail(s, c, "client sent all-zero public key");
		return;
	}
	msg = p + CLIENTINFO_MIN_BYTES + NACL_TAG_BYTES;
	if (nacl_box_beforenm(c->boxkey, p, s->priv) != 0 ||
	    nacl_box_open_afternm(msg, p + CLIENTINFO_MIN_BYTES, boxlen,
	    p + KEY_BYTES, c->boxkey) != 0) {
		conn_fail(s, c, "failed to open naclbox from client");
		return;
	}
	if (clientinfo_parse((const char *)msg, boxlen - NACL_TAG_BYTES,
	    &ci) != 0) {
		conn_fail(s, c, "invalid client info JSON");
		return;
	}
	memcpy(c->key, p, KEY_BYTES);
	c->can_ack_pings = (uint8_t)ci.can_ack_pings;
	c->is_prober = (uint8_t)ci.is_prober;
	/* Without -mesh-psk-file a meshKey in ClientInfo makes a regular
	 * client, as in derper. */
	c->mesh = (uint8_t)clientinfo_is_mesh(&ci, s->mesh_key,
	    s->has_mesh_key);
	if (s->admit.on && !c->mesh) {
		admit_begin(s, c);	/* mesh peers skip admission */
		return;
	}
	conn_register(s, c);
}

/* A frame header is complete: check it against the state.  0 or -1 (close). */
static int
frame_begin(struct derp_server *s, struct conn *c)
{
	c->ftype = c->fhdr[0];
	c->flen = get_be32(c->fhdr + 1);
	c->fgot = 0;
	if (c->state == CS_DERP_INFO) {
		if (c->ftype != FRAME_CLIENT_INFO) {
			conn_fail(s, c, "first frame is not ClientInfo");
			return -1;
		}
		if (c->flen < CLIENTINFO_MIN_BYTES + NACL_TAG_BYTES ||
		    c->flen > CLIENTINFO_MAX_BYTES) {
			conn_fail(s, c, "ClientInfo frame has a bad length");
			return -1;
		}
		if (c->flen > CLIENTINFO_OURS_MAX_BYTES) {
			conn_fail(s, c, "ClientInfo larger than this relay takes");
			return -1;
		}
		return 0;
	}
	route_note_sender(s, c);
	rate_charge(s, c);
	switch (c->ftype) {
	case FRAME_SEND_PACKET:
		if (c->flen < KEY_BYTES || c->flen - KEY_BYTES > MAX_PACKET_BYTES) {
			conn_fail(s, c, "SendPacket has a bad length");
			return -1;
		}
		return 0;
	case FRAME_NOTE_PREFERRED:
		if (c->flen != 1) {
			conn_fail(s, c, "NotePreferred has a bad length");
			return -1;
		}
		return 0;
	case FRAME_PING:
		if (c->flen < PING_MIN_BYTES || c->flen > PING_MAX_BYTES) {
			conn_fail(s, c, "Ping has a bad length");
			return -1;
		}
		s->st.got_ping++;
		return 0;
	case FRAME_FORWARD_PACKET:
	case FRAME_WATCH_CONNS:
	case FRAME_CLOSE_PEER:
		/* Mesh frames need the mesh key in ClientInfo; derper closes
		 * any other client that sends one, before its payload. */
		if (!c->mesh) {
			conn_fail(s, c, "mesh frame from a client without the "
			    "mesh key");
			return -1;
		}
#ifdef DERP_NO_MESH
		conn_fail(s, c, "mesh frame: this build has no mesh (MESH=0)");
		return -1;
#endif
		if (c->ftype == FRAME_FORWARD_PACKET ? c->flen < 2 * KEY_BYTES ||
		    c->flen - 2 * KEY_BYTES > MAX_PACKET_BYTES :
		    c->flen != (c->ftype == FRAME_CLOSE_PEER ? KEY_BYTES : 0)) {
			conn_fail(s, c, "mesh frame has a bad length");
			return -1;
		}
		return 0;
	default:
		return 0;	/* skipped: Pong, KeepAlive, unknown types */
	}
}

/*
 * One more chunk for the RecvPacket frame c is receiving, charged to its IN
 * budget: packets take chunks as their bytes arrive, never for the declared
 * length up front.  A packet that will not fit the budget borrows what it
 * lacks from the spare all at once, when its bytes first overflow the budget
 * (so a borrower never waits holding part of the spare, and borrowers cannot
 * deadlock); the chunks are then taken as bytes come.  The first chunk starts
 * with the frame header and the source key.  0, or -1 when the spare cannot
 * lend now (the caller pauses c; nothing is held for it meanwhile).
 */
static int
frame_packet_chunk(struct derp_server *s, struct conn *c)
{
	uint32_t i, need;
	struct chunk *ch;

	if (c->fpkt_lent > 0) {
		/* Accounted already, so by P4 the pool has it, reclaiming
		 * queued packets if need be. */
		if (s->pool.free_count == 0 && pool_reclaim(s, 1) != 0)
			return -1;
		c->fpkt_lent--;
	} else {
		need = 1;
		if (c->hold[HOLD_IN] + 1 > CHUNKS_IN)	/* the budget is full */
			need = chunks_for(RECV_PREFIX_BYTES + (size_t)(c->flen -
			    frame_pkt_prefix(c))) - c->fpkt_chunks;
		if (hold_take(s, c, HOLD_IN, need) != 0)
			return -1;
		c->fpkt_lent = need - 1;
	}
	i = pool_take(&s->pool);
	c->fpkt_chunks++;
	if (c->fpkt == NIL) {
		ch = &s->pool.chunks[i];
		frame_put_header(ch->data, FRAME_RECV_PACKET, c->flen -
		    frame_pkt_prefix(c) + KEY_BYTES);
		memcpy(ch->data + FRAME_HEADER_BYTES, frame_src(c), KEY_BYTES);
		ch->len = RECV_PREFIX_BYTES;
		c->fpkt = i;
	} else {
		s->pool.chunks[c->fpkt_cur].next = i;
	}
	c->fpkt_cur = i;
	return 0;
}

/* Payload bytes of the current frame.  Returns how many were taken; fewer
 * than n only when the pool is exhausted (the connection pauses). */
static size_t
frame_payload(struct derp_server *s, struct conn *c, const uint8_t *p, size_t n)
{
	size_t taken = 0, k;
	uint32_t pre, at;
	struct chunk *ch;

	switch (c->ftype) {
	case FRAME_CLIENT_INFO:
		if (c->state != CS_DERP_INFO)
			return n;	/* a second ClientInfo is skipped */
		return conn_append(s, c, HOLD_IN, &c->info, p, n) == 0 ? n : 0;
	case FRAME_FORWARD_PACKET:	/* src, then as SendPacket */
		if (c->ftype == FRAME_FORWARD_PACKET && c->fgot < KEY_BYTES) {
			taken = KEY_BYTES - c->fgot;
			if (taken > n)
				taken = n;
			memcpy(c->fsrc + c->fgot, p, taken);
			if (taken == n)
				return taken;
		}
		/* FALLTHROUGH */
	case FRAME_SEND_PACKET:
		pre = frame_pkt_prefix(c);
		if (c->fgot + taken < pre) {
			at = c->fgot + (uint32_t)taken - (pre - KEY_BYTES);
			k = KEY_BYTES - at;
			if (k > n - taken)
				k = n - taken;
			memcpy(c->fsmall + at, p + taken, k);
			taken += k;
			if (c->fgot + taken < pre)
				return taken;
			/* The whole packet is here: try the direct path. */
			if (c->fgot + n == c->flen &&
			    route_direct(s, c, p + taken, n - taken))
				return n;
		}
		if (c->fpkt == NIL && frame_packet_chunk(s, c) != 0)
			return taken;
		while (taken < n) {
			ch = &s->pool.chunks[c->fpkt_cur];
			if (ch->len == CHUNK_DATA_BYTES) {
				if (frame_packet_chunk(s, c) != 0)
					return taken;
				continue;
			}
			k = CHUNK_DATA_BYTES - ch->len;
			if (k > n - taken)
				k = n - taken;
			memcpy(ch->data + ch->len, p + taken, k);
			ch->len = (uint16_t)(ch->len + k);
			taken += k;
		}
		return taken;
	case FRAME_PING:
		if (c->fgot < PING_MIN_BYTES) {
			k = PING_MIN_BYTES - c->fgot;
			if (k > n)
				k = n;
			memcpy(c->fsmall + c->fgot, p, k);
		}
		return n;	/* bytes past the first 8 are skipped */
	case FRAME_NOTE_PREFERRED:
		c->fsmall[0] = p[0];
		return n;
	case FRAME_CLOSE_PEER:
		memcpy(c->fsmall + c->fgot, p, n);	/* n <= 32 - fgot */
		return n;
	default:
		return n;
	}
}

static void
frame_end(struct derp_server *s, struct conn *c)
{
	switch (c->ftype) {
	case FRAME_CLIENT_INFO:
		if (c->state == CS_DERP_INFO)
			derp_client_info(s, c);
		break;
	case FRAME_SEND_PACKET:
	case FRAME_FORWARD_PACKET:
		if (c->routed) {
			c->routed = 0;
			break;
		}
		if (c->fpkt == NIL && frame_packet_chunk(s, c) != 0) {
			/* Only for an empty packet: paused until chunks free
			 * up, with the frame still complete (derp_resume_frame
			 * finishes it). */
			if (!c->in_paused)
				mark_paused(s, c);
			c->fgot = c->flen;
			return;
		}
		route_packet(s, c);
		break;
	case FRAME_PING:
		/* One Pong waits at most; a Ping meanwhile is ignored (derper). */
		if (!c->pong_pending) {
			c->pong_pending = 1;
			memcpy(c->pong, c->fsmall, PING_MIN_BYTES);
			mark_dirty(s, c);
		}
		break;
	case FRAME_WATCH_CONNS:
		watch_start(s, c);
		break;
	case FRAME_CLOSE_PEER:
		mesh_close_peer(s, c);
		break;
	case FRAME_NOTE_PREFERRED:
		if ((c->fsmall[0] != 0) != c->preferred) {
			c->preferred = c->fsmall[0] != 0;
			if (c->preferred)
				s->st.current_home++;
			else
				s->st.current_home--;
		}
		break;
	default:
		break;
	}
	c->fhdr_len = 0;
}

/*
 * The DERP byte stream: frames may be split or coalesced anywhere.  Returns the
 * bytes consumed; fewer than len when the connection died or paused.
 */
static size_t
derp_feed(struct derp_server *s, struct conn *c, const uint8_t *p, size_t len)
{
	size_t off = 0, k, n;

	while (off < len && !c->dead && !c->in_paused) {
		if (c->fhdr_len < FRAME_HEADER_BYTES) {
			k = FRAME_HEADER_BYTES - c->fhdr_len;
			if (k > len - off)
				k = len - off;
			memcpy(c->fhdr + c->fhdr_len, p + off, k);
			c->fhdr_len = (uint8_t)(c->fhdr_len + k);
			off += k;
			if (c->fhdr_len < FRAME_HEADER_BYTES)
				break;
			if (frame_begin(s, c) != 0 || c->in_paused)
				break;
		} else {
			k = c->flen - c->fgot;
			if (k > len - off)
				k = len - off;
			n = frame_payload(s, c, p + off, k);
			off += n;
			c->fgot += (uint32_t)n;
			if (n < k) {
				mark_paused(s, c);
				break;
			}
		}
		if (c->fgot == c->flen) {
			frame_end(s, c);
			if (c->fhdr_len != 0) {	/* frame_end could not finish */
				mark_paused(s, c);
				break;
			}
		}
	}
	return off;
}

/* ================================================================= WEBSOCKET */

/*
 * DERP over WebSocket (derp-protocol.md 5.4, RFC 6455), for browser clients:
 * the same DERP byte stream, carried in binary messages whose boundaries mean
 * nothing.  Reading: each client frame's header (masked, as RFC 6455 requires
 * of clients), then its payload unmasked a piece at a time into derp_feed;
 * pings, pongs and closes are answered here.  Writing: out_space/out_commit
 * wrap each commit in one unfragmented binary message.  Anything else is
 * closed as derper's library closes it: a close frame with a status code
 * (1002 protocol error, 1003 a text message, 1009 a message over 32 KiB),
 * then the connection.  Same queues, limits and deadlines as raw DERP.
 */
#define WS_UNMASK_BYTES	2048	/* payload unmasked per derp_feed call */

#ifndef DERP_NO_WS
/* Our close frame goes out before anything else; input is ignored from now. */
static void
ws_fail(struct derp_server *s, struct conn *c, uint16_t code, const char *why)
{
	if (c->ws.close != WS_CLOSE_NONE)
		return;
	c->ws.close = WS_CLOSE_PENDING;
	c->ws.close_code = code;
	c->ws.close_why = why;
	if (why != NULL)
		conn_log(s, c, why);
	mark_dirty(s, c);
}

/* A client frame's header is complete: check it as RFC 6455 5.2-5.5 and
 * derper's library do.  0, or -1 with the connection closing. */
static int
ws_frame_begin(struct derp_server *s, struct conn *c)
{
	const uint8_t *h = c->ws.hdr;
	uint64_t len = h[1] & 0x7f;
	unsigned i, at = 2;

	if (len == 126) {
		len = ((uint64_t)h[2] << 8) | h[3];
		at = 4;
	} else if (len == 127) {
		len = 0;
		for (i = 0; i < 8; i++)
			len = (len << 8) | h[2 + i];
		at = 10;
	}
	memcpy(c->ws.mask, h + at, 4);
	c->ws.op = h[0] & 0x0f;
	c->ws.fin = (h[0] & 0x80) != 0;
	c->ws.mpos = 0;
	if (h[0] & 0x70) {
		ws_fail(s, c, 1002, "websocket: reserved bits set");
		return -1;
	}
	if (!(h[1] & 0x80)) {
		ws_fail(s, c, 1002, "websocket: unmasked client frame");
		return -1;
	}
	switch (c->ws.op) {
	case WS_OP_CLOSE:
	case WS_OP_PING:
	case WS_OP_PONG:
		if (!c->ws.fin || len > WS_CTL_MAX) {
			ws_fail(s, c, 1002, "websocket: bad control frame");
			return -1;
		}
		if (c->ws.op != WS_OP_PONG) {
			/* Only the latest ping is answered (5.5.3). */
			c->ws.pong_pending = 0;
			c->ws.ctl_len = 0;
		}
		break;
	case WS_OP_CONT:
		if (!c->ws.in_msg) {
			ws_fail(s, c, 1002, "websocket: continuation "
			    "without a message");
			return -1;
		}
		break;
	case WS_OP_TEXT:
	case WS_OP_BINARY:
		if (c->ws.in_msg) {
			ws_fail(s, c, 1002, "websocket: new message inside "
			    "a fragmented one");
			return -1;
		}
		if (c->ws.op == WS_OP_TEXT) {
			ws_fail(s, c, 1003, "websocket: text message");
			return -1;
		}
		c->ws.msg_len = 0;
		break;
	default:
		ws_fail(s, c, 1002, "websocket: unknown opcode");
		return -1;
	}
	if (c->ws.op == WS_OP_CONT || c->ws.op == WS_OP_BINARY) {
		if (len > WS_MESSAGE_MAX - c->ws.msg_len) {
			ws_fail(s, c, 1009, "websocket: message too big");
			return -1;
		}
		c->ws.msg_len += (uint32_t)len;
		c->ws.in_msg = !c->ws.fin;
	}
	c->ws.left = (uint32_t)len;
	return 0;
}

/* A frame's payload is all read. */
static void
ws_frame_end(struct derp_server *s, struct conn *c)
{
	uint16_t code = WS_NO_STATUS;

	c->ws.hdr_len = 0;
	switch (c->ws.op) {
	case WS_OP_PING:
		c->ws.pong_pending = 1;
		mark_dirty(s, c);
		break;
	case WS_OP_CLOSE:
		/* Echo the client's status code (RFC 6455 5.5.1); the
		 * stream ends here. */
		if (c->ws.ctl_len == 1) {
			ws_fail(s, c, 1002, "websocket: bad close frame");
			break;
		}
		if (c->ws.ctl_len >= 2)
			code = (uint16_t)(c->ws.ctl[0] << 8 | c->ws.ctl[1]);
		/* Codes no endpoint may send (RFC 6455 7.4) are a protocol
		 * error, as derper's library answers them. */
		if (c->ws.ctl_len >= 2 && !((code >= 1000 && code <= 1003) ||
		    (code >= 1007 && code <= 1014) ||
		    (code >= 3000 && code <= 4999))) {
			ws_fail(s, c, 1002, "websocket: bad close status");
			break;
		}
		ws_fail(s, c, code, NULL);
		break;
	default:
		break;
	}
}

/* Bytes of one frame header: 2, then what its length byte says. */
static uint8_t
ws_header_bytes(const uint8_t *h, uint8_t have)
{
	if (have < 2)
		return 2;
	return (uint8_t)(2 + ((h[1] & 0x7f) == 126 ? 2 :
	    (h[1] & 0x7f) == 127 ? 8 : 0) + 4);
}

/*
 * The client's bytes on a WebSocket: frames of any size, split anywhere.
 * Returns bytes consumed; fewer than len when the DERP layer paused, the
 * connection waits for its verdict, or it died.
 */
static size_t
ws_feed(struct derp_server *s, struct conn *c, const uint8_t *p, size_t len)
{
	uint8_t buf[WS_UNMASK_BYTES];
	const uint8_t *mask = c->ws.mask;
	size_t off = 0, k, i, used;

	while (off < len && !c->dead && !c->in_paused &&
	    c->ws.close == WS_CLOSE_NONE &&
	    (c->state == CS_DERP_INFO || c->state == CS_DERP)) {
		if (c->ws.hdr_len < ws_header_bytes(c->ws.hdr,
		    c->ws.hdr_len)) {
			c->ws.hdr[c->ws.hdr_len++] = p[off++];
			if (c->ws.hdr_len == ws_header_bytes(c->ws.hdr,
			    c->ws.hdr_len) && ws_frame_begin(s, c) == 0 &&
			    c->ws.left == 0)
				ws_frame_end(s, c);
			continue;
		}
		k = c->ws.left < len - off ? c->ws.left : len - off;
		if (c->ws.op == WS_OP_PONG) {
			used = k;	/* nothing asked for it */
		} else if (c->ws.op == WS_OP_BINARY || c->ws.op == WS_OP_CONT) {
			if (k > sizeof buf)
				k = sizeof buf;
			for (i = 0; i < k; i++)
				buf[i] = p[off + i] ^ mask[(c->ws.mpos + i) & 3];
			used = derp_feed(s, c, buf, k);
		} else {
			for (i = 0; i < k; i++)
				c->ws.ctl[c->ws.ctl_len + i] =
				    p[off + i] ^ mask[(c->ws.mpos + i) & 3];
			c->ws.ctl_len = (uint8_t)(c->ws.ctl_len + k);
			used = k;
		}
		off += used;
		c->ws.mpos += (uint32_t)used;
		c->ws.left -= (uint32_t)used;
		if (c->ws.left == 0)
			ws_frame_end(s, c);
		if (used < k)
			break;
	}
	/* After our close frame the client's bytes mean nothing. */
	return c->ws.close != WS_CLOSE_NONE ? len : off;
}
#else
/* WS=0 (firmware builds): no connection is ever a WebSocket. */
static size_t
ws_feed(struct derp_server *s, struct conn *c, const uint8_t *p, size_t len)
{
	(void)s;
	(void)c;
	(void)p;
	return len;
}
#endif

/* ====================================================================== HTTP */

/*
 * One request head, parsed in place: slices into the caller's buffer.  Lines
 * end in CRLF or a bare LF (Go's textproto accepts both).
 */
struct http_hdr {
	const char *name, *val;
	size_t nlen, vlen;
};

struct http_req {
	const char *method, *target;
	size_t mlen, tlen;
	int minor;			/* HTTP/1.<minor> */
	struct http_hdr h[HTTP_HEADERS_MAX];
	size_t nh;
};

static int
http_is_tchar(int ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	    (ch >= '0' && ch <= '9') || (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch));
}

/* A byte Go's net/textproto takes in a header value: VCHAR, SP, HTAB and
 * obs-text.  Any other control byte (NUL, a lone CR, DEL) makes it answer
 * 400, and so do we. */
static int
http_is_value_byte(int ch)
{
	return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

/* Next line of buf[*pos, len): sets line and llen, without the line end. */
static int
http_next_line(const char *buf, size_t len, size_t *pos, const char **line,
    size_t *llen)
{
	const char *nl = memchr(buf + *pos, '\n', len - *pos);
	size_t end;

	if (nl == NULL)
		return -1;
	end = (size_t)(nl - buf);
	*line = buf + *pos;
	*llen = end - *pos;
	if (*llen > 0 && (*line)[*llen - 1] == '\r')
		(*llen)--;
	*pos = end + 1;
	return 0;
}

/* Parse a complete head.  0; -1 malformed (400); -2 too many headers (431). */
static int
http_parse(const char *buf, size_t len, struct http_req *r)
{
	const char *line, *sp1, *sp2, *colon, *v, *ve;
	size_t llen, pos = 0, i;

	memset(r, 0, sizeof *r);
	if (http_next_line(buf, len, &pos, &line, &llen) != 0)
		return -1;
	sp1 = memchr(line, ' ', llen);
	if (sp1 == NULL || sp1 == line)
		return -1;
	sp2 = memchr(sp1 + 1, ' ', llen - (size_t)(sp1 + 1 - line));
	if (sp2 == NULL || sp2 == sp1 + 1)
		return -1;
	r->method = line;
	r->mlen = (size_t)(sp1 - line);
	for (i = 0; i < r->mlen; i++)
		if (!http_is_tchar((unsigned char)line[i]))
			return -1;
	r->target = sp1 + 1;
	r->tlen = (size_t)(sp2 - sp1 - 1);
	if ((size_t)(line + llen - sp2 - 1) != 8 ||
	    memcmp(sp2 + 1, "HTTP/1.", 7) != 0 || (sp2[8] != '0' && sp2[8] != '1'))
		return -1;
	r->minor = sp2[8] - '0';
	for (;;) {
		if (http_next_line(buf, len, &pos, &line, &llen) != 0)
			return -1;
		if (llen == 0)
			return 0;
		if (r->nh == HTTP_HEADERS_MAX)
			return -2;
		colon = memchr(line, ':', llen);
		if (colon == NULL || colon == line)
			return -1;
		for (i = 0; line + i < colon; i++)
			if (!http_is_tchar((unsigned char)line[i]))
				return -1;
		v = colon + 1;
		ve = line + llen;
		for (i = 0; v + i < ve; i++)
			if (!http_is_value_byte((unsigned char)v[i]))
				return -1;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		r->h[r->nh].name = line;
		r->h[r->nh].nlen = (size_t)(colon - line);
		r->h[r->nh].val = v;
		r->h[r->nh].vlen = (size_t)(ve - v);
		r->nh++;
	}
}

/* The first header called name, or NULL. */
static const struct http_hdr *
http_header(const struct http_req *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->nh; i++)
		if (ascii_eq_ci(r->h[i].name, r->h[i].nlen, name))
			return &r->h[i];
	return NULL;
}

static int
http_method_is(const struct http_req *r, const char *m)
{
	return r->mlen == strlen(m) && memcmp(r->method, m, r->mlen) == 0;
}

/* The path of the request target (origin or absolute form), no query. */
static void
http_path(const struct http_req *r, const char **path, size_t *plen)
{
	const char *t = r->target, *end = r->target + r->tlen, *q;

	if (r->tlen > 7 && (ascii_eq_ci(t, 7, "http://") ||
	    (r->tlen > 8 && ascii_eq_ci(t, 8, "https://")))) {
		t = memchr(t + 8 - (t[4] == ':'), '/', (size_t)(end - t) - 7);
		if (t == NULL)
			t = end;
	}
	q = memchr(t, '?', (size_t)(end - t));
	*path = t;
	*plen = (size_t)((q != NULL ? q : end) - t);
}

static int
path_is(const char *path, size_t plen, const char *want)
{
	return plen == strlen(want) && memcmp(path, want, plen) == 0;
}

static int
hex_digit(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Percent-decode a path (Go's URL.Path).  Returns the length, or -1 for a bad
 * escape or no room. */
static long
http_unescape(const char *p, size_t n, char *out, size_t cap)
{
	size_t i, o = 0;
	int hi, lo;

	for (i = 0; i < n; i++) {
		if (o == cap)
			return -1;
		if (p[i] != '%') {
			out[o++] = p[i];
			continue;
		}
		if (i + 2 >= n)
			return -1;
		hi = hex_digit((unsigned char)p[i + 1]);
		lo = hex_digit((unsigned char)p[i + 2]);
		if (hi < 0 || lo < 0)
			return -1;
		out[o++] = (char)(hi * 16 + lo);
		i += 2;
	}
	return (long)o;
}

/*
 * Go's ServeMux cleanPath: path.Clean (collapse "//", drop ".", resolve
 * ".."), rooted, keeping a trailing slash.  out needs n + 2 bytes.
 */
static size_t
http_clean_path(const char *p, size_t n, char *out)
{
	size_t r = 0, w = 1, dotdot = 1, back;

	out[0] = '/';
	if (n > 0 && p[0] == '/')
		r = 1;
	while (r < n) {
		if (p[r] == '/') {
			r++;
		} else if (p[r] == '.' && (r + 1 == n || p[r + 1] == '/')) {
			r++;
		} else if (p[r] == '.' && p[r + 1] == '.' &&
		    (r + 2 == n || p[r + 2] == '/')) {
			r += 2;
			if (w > dotdot) {
				back = w - 1;
				while (back > dotdot && out[back] != '/')
					back--;
				w = back;
			}
		} else {
			if (w != 1)
				out[w++] = '/';
			while (r < n && p[r] != '/')
				out[w++] = p[r++];
		}
	}
	if (n > 0 && p[n - 1] == '/' && w != 1)
		out[w++] = '/';
	return w;
}

/* "Wed, 25 Nov 2026 15:04:05 GMT", as Go's Date header. */
static void
http_date(char out[32])
{
	static const char days[] = "SunMonTueWedThuFriSat";
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	char text[80];
	struct tm tm;
	time_t t = time(NULL);

	if (gmtime_r(&t, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 ||
	    tm.tm_mon < 0 || tm.tm_mon > 11) {
		out[0] = '\0';
		return;
	}
	snprintf(text, sizeof text, "%.3s, %02d %.3s %04d %02d:%02d:%02d GMT",
	    days + 3 * tm.tm_wday, tm.tm_mday, months + 3 * tm.tm_mon,
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
	snprintf(out, 32, "%.31s", text);
}

#define RESP_CLOSE	1	/* Connection: close, then close */
#define RESP_NO_LENGTH	2	/* 204: no Content-Length */

/* Headers on derper's browser-facing pages (derper-compat.md section 4.8). */
static const char browser_headers[] =
    "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'self'; block-all-mixed-content; "
    "object-src 'none'\r\n"
    "Strict-Transport-Security: max-age=63072000; includeSubDomains\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: DENY\r\n";

/* The response is built: queue it (CTRL budget, which always has room for
 * one response of 4 KiB, P4; a larger body, a /debug/ page, borrows from
 * the spare) and wait for it to be written. */
static void
http_queue2(struct derp_server *s, struct conn *c, const char *head,
    size_t hlen, const char *body, size_t blen, int flags)
{
	static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
	    "Content-Length: 5\r\n\r\nbusy\n";

	if (hlen == 0 || conn_append(s, c, HOLD_CTRL, &c->raw,
	    (const uint8_t *)head, hlen) != 0) {
		c->dead = 1;
		return;
	}
	if (blen > 0 && conn_append(s, c, HOLD_CTRL, &c->raw,
	    (const uint8_t *)body, blen) != 0) {
		/* A /debug/ page the spare cannot lend for now: out of line,
		 * and a short answer that fits the budget instead. */
		c->spare_wait = 0;
		conn_chain_clear(s, c, HOLD_CTRL, &c->raw);
		if (conn_append(s, c, HOLD_CTRL, &c->raw, (const uint8_t *)busy,
		    sizeof busy - 1) != 0) {
			c->dead = 1;
			return;
		}
		flags |= RESP_CLOSE;
	}
	c->state = CS_HTTP_DRAIN;
	if (flags & RESP_CLOSE)
		c->close_after = 1;
	mark_dirty(s, c);
}

static void
http_queue(struct derp_server *s, struct conn *c, const char *resp, size_t len,
    int flags)
{
	http_queue2(s, c, resp, len, NULL, 0, flags);
}

/*
 * Queue a whole response in c->raw and stop reading requests until it is
 * written (CS_HTTP_DRAIN).  headers: complete "Name: value\r\n" lines.
 */
static void
http_respond(struct derp_server *s, struct conn *c, const struct http_req *r,
    const char *status, const char *headers, const char *body, size_t blen,
    int flags)
{
	char buf[4096], date[32];
	struct sbuf sb = { buf, 0, sizeof buf, 0 };
	const struct http_hdr *h;
	int head_only = r != NULL && http_method_is(r, "HEAD");

	if (r == NULL || r->minor == 0)
		flags |= RESP_CLOSE;
	if (r != NULL && (h = http_header(r, "Connection")) != NULL &&
	    ascii_eq_ci(h->val, h->vlen, "close"))
		flags |= RESP_CLOSE;
	http_date(date);
	sb_add(&sb, "HTTP/1.1 ");
	sb_add(&sb, status);
	sb_add(&sb, "\r\n");
	if (headers != NULL)
		sb_add(&sb, headers);
	if (flags & RESP_CLOSE)
		sb_add(&sb, "Connection: close\r\n");
	sb_add(&sb, "Date: ");
	sb_add(&sb, date);
	sb_add(&sb, "\r\n");
	if (!(flags & RESP_NO_LENGTH)) {
		sb_add(&sb, "Content-Length: ");
		sb_add_u64(&sb, blen);
		sb_add(&sb, "\r\n");
	}
	sb_add(&sb, "\r\n");
	s->st.http_requests++;
	if (head_only || body == NULL)
		blen = 0;
	if (blen > 0 && !sb.overflow && blen < sb.cap - sb.len) {	/* one piece */
		sb_addn(&sb, body, blen);
		blen = 0;
	}
	http_queue2(s, c, buf, sb.overflow ? 0 : sb.len, body, blen, flags);
}

/* Go's http.Error: text/plain, nosniff, the message plus a newline. */
static void
http_error(struct derp_server *s, struct conn *c, const struct http_req *r,
    const char *status, const char *msg, int flags)
{
	char body[256];
	size_t n = strlen(msg);

	if (n > sizeof body - 1)
		n = sizeof body - 1;
	memcpy(body, msg, n);
	body[n++] = '\n';
	http_respond(s, c, r, status,
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "X-Content-Type-Options: nosniff\r\n", body, n, flags);
}

/* Go's http.Redirect for GET/HEAD: Location plus a tiny HTML body. */
static void
http_redirect(struct derp_server *s, struct conn *c, const struct http_req *r,
    const char *status, const char *url, size_t ulen)
{
	char hdr[2048], body[2048];
	struct sbuf h = { hdr, 0, sizeof hdr, 0 }, b = { body, 0, sizeof body, 0 };
	size_t i;

	sb_add(&h, "Content-Type: text/html; charset=utf-8\r\nLocation: ");
	sb_addn(&h, url, ulen);
	sb_add(&h, "\r\n");
	sb_add(&b, "<a href=\"");
	for (i = 0; i < ulen; i++) {
		switch (url[i]) {
		case '<': sb_add(&b, "&lt;"); break;
		case '>': sb_add(&b, "&gt;"); break;
		case '&': sb_add(&b, "&amp;"); break;
		case '"': sb_add(&b, "&#34;"); break;
		case '\'': sb_add(&b, "&#39;"); break;
		default: sb_addn(&b, url + i, 1); break;
		}
	}
	sb_add(&b, "\">");
	sb_add(&b, status + 4);		/* "302 Found" -> "Found" */
	sb_add(&b, "</a>.\n\n");
	if (h.overflow || b.overflow) {
		http_error(s, c, r, "400 Bad Request", "Bad Request", RESP_CLOSE);
		return;
	}
	http_respond(s, c, r, status, hdr, body,
	    http_method_is(r, "GET") ? b.len : 0, 0);
}

/*
 * /generate_204: the captive-portal check.  The challenge is echoed only when
 * it is 1..64 bytes of [A-Za-z0-9.-_:] (derper's rule).
 */
static void
http_generate_204(struct derp_server *s, struct conn *c, const struct http_req *r)
{
	static const char cache[] = "Cache-Control: no-cache, no-store, "
	    "must-revalidate, no-transform, max-age=0\r\n";
	char hdr[256];
	struct sbuf sb = { hdr, 0, sizeof hdr, 0 };
	const struct http_hdr *h = http_header(r, "X-Tailscale-Challenge");
	size_t i;
	int ok = h != NULL && h->vlen > 0 && h->vlen <= 64;

	for (i = 0; ok && i < h->vlen; i++) {
		int ch = (unsigned char)h->val[i];
		ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' ||
		    ch == '_' || ch == ':';
	}
	sb_add(&sb, cache);
	if (ok) {
		sb_add(&sb, "X-Tailscale-Response: response ");
		sb_addn(&sb, h->val, h->vlen);
		sb_add(&sb, "\r\n");
	}
	http_respond(s, c, r, "204 No Content", hdr, NULL, 0, RESP_NO_LENGTH);
}

/* derper's home page says what the server is; the wording is free. */
static const char home_page[] =
    "<html><body>\n"
    "<h1>DERP relay</h1>\n"
    "<p>This server relays end-to-end encrypted traffic between Tailscale\n"
    "clients that cannot reach each other directly, and answers STUN so they\n"
    "can learn their public address (DERP protocol version 2).</p>\n"
    "<p>See <a href=\"https://tailscale.com/kb/1232/derp-servers\">DERP servers"
    "</a> and <a href=\"https://tailscale.com/kb/1118/custom-derp-servers\">"
    "running your own</a>.</p>\n";

static void
http_home(struct derp_server *s, struct conn *c, const struct http_req *r)
{
	char body[2048], hdr[1024];
	struct sbuf b = { body, 0, sizeof body, 0 }, h = { hdr, 0, sizeof hdr, 0 };

	if (strcmp(s->cfg.home, "blank") == 0) {
		sb_add(&h, browser_headers);
		sb_add(&h, "Content-Type: text/html; charset=utf-8\r\n");
		http_respond(s, c, r, "200 OK", hdr, "", 0, 0);
		return;
	}
	if (s->cfg.home[0] != '\0') {
		http_redirect(s, c, r, "302 Found", s->cfg.home,
		    strlen(s->cfg.home));
		return;
	}
	sb_add(&b, home_page);
	if (!s->cfg.derp)
		sb_add(&b, "<p>Status: disabled</p>\n");
	sb_add(&b, "</body></html>\n");
	sb_add(&h, browser_headers);
	sb_add(&h, "Content-Type: text/html; charset=utf-8\r\n");
	http_respond(s, c, r, "200 OK", hdr, body, b.len, 0);
}

#ifndef DERP_NO_WS
/* Is token (lower case) one of the comma-separated tokens of any header
 * called name?  Go's headerTokens: each trimmed of spaces and tabs, compared
 * without case.  The client's spelling of the first match in *at. */
static int
http_has_token(const struct http_req *r, const char *name, const char *token,
    const char **at)
{
	size_t i, tl = strlen(token);
	const char *p, *end, *e;

	for (i = 0; i < r->nh; i++) {
		if (!ascii_eq_ci(r->h[i].name, r->h[i].nlen, name))
			continue;
		p = r->h[i].val;
		end = p + r->h[i].vlen;
		while (p < end) {
			for (e = p; e < end && *e != ','; e++)
				;
			while (p < e && (*p == ' ' || *p == '\t'))
				p++;
			while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			if ((size_t)(e - p) == tl && ascii_eq_ci(p, tl, token)) {
				if (at != NULL)
					*at = p;
				return 1;
			}
			while (p < end && *p != ',')
				p++;
			if (p < end)
				p++;
		}
	}
	return 0;
}

/* Sec-WebSocket-Key: base64 (padded, standard alphabet) of 16 bytes. */
static int
ws_key_ok(const char *k, size_t n)
{
	size_t i;

	if (n != 24 || k[22] != '=' || k[23] != '=')
		return 0;
	for (i = 0; i < 22; i++)
		if (!((k[i] >= 'A' && k[i] <= 'Z') || (k[i] >= 'a' &&
		    k[i] <= 'z') || (k[i] >= '0' && k[i] <= '9') ||
		    k[i] == '+' || k[i] == '/'))
			return 0;
	return 1;
}

/* Sec-WebSocket-Accept: base64(SHA-1(key + RFC 6455's GUID)), 28 chars. */
static void
ws_accept(char out[29], const char *key, size_t n)
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	br_sha1_context h;
	uint8_t d[br_sha1_SIZE + 1];
	uint32_t v;
	size_t i, o = 0;

	br_sha1_init(&h);
	br_sha1_update(&h, key, n);
	br_sha1_update(&h, guid, sizeof guid - 1);
	br_sha1_out(&h, d);
	d[br_sha1_SIZE] = 0;
	for (i = 0; i < br_sha1_SIZE; i += 3) {
		v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 |
		    (i + 2 < br_sha1_SIZE ? d[i + 2] : 0);
		out[o++] = b64[(v >> 18) & 63];
		out[o++] = b64[(v >> 12) & 63];
		out[o++] = b64[(v >> 6) & 63];
		out[o++] = i + 2 < br_sha1_SIZE ? b64[v & 63] : '=';
	}
	out[o] = '\0';
}

/* A refused WebSocket handshake, as derper's library answers it. */
static void
ws_refuse(struct derp_server *s, struct conn *c, const struct http_req *r,
    const char *status, const char *hdr, const char *msg)
{
	char body[160];
	struct sbuf b = { body, 0, sizeof body, 0 };
	struct sbuf h;
	char head[256];

	h.p = head;
	h.len = 0;
	h.cap = sizeof head;
	h.overflow = 0;
	sb_add(&h, hdr);
	sb_add(&h, "Content-Type: text/plain; charset=utf-8\r\n"
	    "X-Content-Type-Options: nosniff\r\n");
	head[h.len < sizeof head ? h.len : sizeof head - 1] = '\0';
	sb_add(&b, "WebSocket protocol violation: ");
	sb_add(&b, msg);
	sb_add(&b, "\n");
	http_respond(s, c, r, status, head, body, b.len, RESP_CLOSE);
}

/*
 * The RFC 6455 handshake of a /derp request that asked for websocket with
 * "derp" somewhere in Sec-WebSocket-Protocol (derp-protocol.md 5.4): checked
 * in the order of derper's library; the 101 queued, to go out unframed.  A
 * client that did not name the derp token gets the 101 and then close 1008.
 * 0 when upgraded, -1 when refused (answered).
 */
static int
ws_upgrade(struct derp_server *s, struct conn *c, const struct http_req *r)
{
	static const char up_hdrs[] = "Connection: Upgrade\r\n"
	    "Upgrade: websocket\r\n";
	const struct http_hdr *key = NULL;
	const char *proto = NULL;
	char acc[29], buf[256];
	struct sbuf sb = { buf, 0, sizeof buf, 0 };
	size_t i, nkeys = 0;

	if (r->minor == 0) {
		ws_refuse(s, c, r, "426 Upgrade Required", up_hdrs,
		    "handshake request must be at least HTTP/1.1");
		return -1;
	}
	if (!http_has_token(r, "Connection", "upgrade", NULL)) {
		ws_refuse(s, c, r, "426 Upgrade Required", up_hdrs,
		    "Connection header does not contain Upgrade");
		return -1;
	}
	if (!http_has_token(r, "Upgrade", "websocket", NULL)) {
		ws_refuse(s, c, r, "426 Upgrade Required", up_hdrs,
		    "Upgrade header does not contain websocket");
		return -1;
	}
	if (!http_method_is(r, "GET")) {
		ws_refuse(s, c, r, "405 Method Not Allowed", "",
		    "handshake request method is not GET");
		return -1;
	}
	key = http_header(r, "Sec-WebSocket-Version");
	if (key == NULL || key->vlen != 2 || memcmp(key->val, "13", 2) != 0) {
		ws_refuse(s, c, r, "400 Bad Request",
		    "Sec-WebSocket-Version: 13\r\n",
		    "unsupported WebSocket protocol version (only 13 is "
		    "supported)");
		return -1;
	}
	for (i = 0; i < r->nh; i++)
		if (ascii_eq_ci(r->h[i].name, r->h[i].nlen,
		    "Sec-WebSocket-Key")) {
			key = &r->h[i];
			nkeys++;
		}
	if (nkeys != 1 || !ws_key_ok(key->val, key->vlen)) {
		ws_refuse(s, c, r, "400 Bad Request", "", nkeys == 0 ?
		    "missing Sec-WebSocket-Key" : nkeys > 1 ?
		    "multiple Sec-WebSocket-Key headers" :
		    "invalid Sec-WebSocket-Key, must be a 16 byte base64 "
		    "encoded string");
		return -1;
	}
	ws_accept(acc, key->val, key->vlen);
	(void)http_has_token(r, "Sec-WebSocket-Protocol", "derp", &proto);
	sb_add(&sb, "HTTP/1.1 101 Switching Protocols\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Accept: ");
	sb_add(&sb, acc);
	sb_add(&sb, "\r\n");
	if (proto != NULL) {	/* as the client spelled it */
		sb_add(&sb, "Sec-WebSocket-Protocol: ");
		sb_addn(&sb, proto, 4);
		sb_add(&sb, "\r\n");
	}
	sb_add(&sb, "Upgrade: websocket\r\n\r\n");
	if (sb.overflow || conn_append(s, c, HOLD_CTRL, &c->raw,
	    (uint8_t *)buf, sb.len) != 0) {
		c->dead = 1;
		return -1;
	}
	c->ws.on = 1;
	s->st.ws_accepts++;
	c->ws.plain = (uint32_t)sb.len;
	/* derper insists on the exact spelling (its library matched the
	 * token without case). */
	if (proto == NULL || memcmp(proto, "derp", 4) != 0)
		ws_fail(s, c, 1008, "client must speak the derp subprotocol");
	return 0;
}
#else
static int
ws_upgrade(struct derp_server *s, struct conn *c, const struct http_req *r)
{
	http_error(s, c, r, "501 Not Implemented", "DERP over WebSocket is "
	    "not in this build (WS=0)", RESP_CLOSE);
	return -1;
}
#endif

/*
 * The /derp upgrade (derp-protocol.md section 5).  Upgrade: DERP (or a bare
 * "websocket" without the derp subprotocol: very old clients said that and
 * spoke raw DERP) switches to the DERP stream; anything else gets 426.
 */
static void
http_derp(struct derp_server *s, struct conn *c, const struct http_req *r)
{
	static const char resp_fmt[] = "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: DERP\r\nConnection: Upgrade\r\nDerp-Version: 2\r\n"
	    "Derp-Public-Key: ";
	const struct http_hdr *up, *h;
	char hex[2 * KEY_BYTES + 1], low[16];
	struct sbuf sb;
	char buf[256];
	size_t i;
	int fast, ws;

	if (!s->cfg.derp) {
		http_error(s, c, r, "404 Not Found", "derp server disabled", 0);
		return;
	}
	up = http_header(r, "Upgrade");
	if (up != NULL && up->vlen < sizeof low) {
		for (i = 0; i < up->vlen; i++)
			low[i] = (char)ascii_lower((unsigned char)up->val[i]);
		low[i] = '\0';
	} else {
		low[0] = '\0';
	}
	ws = 0;
	if (strcmp(low, "websocket") == 0 &&
	    (h = http_header(r, "Sec-WebSocket-Protocol")) != NULL) {
		for (i = 0; i + 4 <= h->vlen; i++)
			if (memcmp(h->val + i, "derp", 4) == 0)
				break;
		ws = i + 4 <= h->vlen;
	}
	if (ws) {
		if (ws_upgrade(s, c, r) != 0)
			return;
	} else if (strcmp(low, "derp") != 0 && strcmp(low, "websocket") != 0) {
		http_error(s, c, r, "426 Upgrade Required",
		    "DERP requires connection upgrade", 0);
		return;
	}
	h = http_header(r, "Derp-Fast-Start");
	fast = ws || (h != NULL && h->vlen == 1 && h->val[0] == '1');
	h = http_header(r, "Ideal-Node");
	c->notideal = h != NULL && h->vlen > 0;
	if (!fast) {
		sb.p = buf;
		sb.len = 0;
		sb.cap = sizeof buf;
		sb.overflow = 0;
		hex_encode(hex, s->pub, KEY_BYTES);
		sb_add(&sb, resp_fmt);
		sb_add(&sb, hex);
		sb_add(&sb, "\r\n\r\n");
		if (conn_append(s, c, HOLD_CTRL, &c->raw, (uint8_t *)buf,
		    sb.len) != 0) {
			c->dead = 1;
			return;
		}
	}
	/* derper writes 101 and ServerKey in one write; so do we (one record). */
	if (c->ws.close == WS_CLOSE_NONE) {
		if (derp_queue_server_key(s, c) != 0) {
			c->dead = 1;
			return;
		}
		s->st.accepts++;
	}
	/* derper hijacks the connection whatever the method: what follows the
	 * head, a declared body included, is the DERP stream. */
	c->body_left = 0;
	c->close_after = 0;
	c->state = CS_DERP_INFO;
	c->fhdr_len = 0;
	c->deadline_ms = s->now + CLIENTINFO_TIMEOUT_MS;
	mark_dirty(s, c);
}

static int debug_allowed(struct derp_server *s, const struct conn *c,
    const struct http_req *r);

/*
 * HTTP-01 answers (RFC 8555 8.3): /.well-known/acme-challenge/<token>, when
 * ACME runs (the child's files in acme.chaldir) or -acme-webroot is set (the
 * files certbot --webroot, acme.sh --webroot or uacme's hook write under
 * DIR/.well-known/acme-challenge/).  The token is [A-Za-z0-9_-] only, on the
 * path as received, so "..", "/", "%2f" or a NUL never reach open().  Below
 * the configured directory no symlink is followed, neither the two
 * directories nor the file (a link to /proc/self would otherwise serve the
 * relay's command line and environment), and the file must be a regular one
 * of 1..ACME_ANSWER_MAX bytes (procfs files say 0).  A key authorization is
 * about 90 bytes: reading it is one small local read, like the answer
 * autocert keeps in memory.  0 when the path is not under the prefix or no
 * answers are served; 1 when answered (200 or 404).
 */
#define ACME_PREFIX "/.well-known/acme-challenge/"
#define ACME_ANSWER_MAX 1024
#define ACME_TOKEN_MAX 256

/* [A-Za-z0-9_-], 1..ACME_TOKEN_MAX: a token (RFC 8555 8.1) is base64url. */
static int
acme_token_ok(const char *t, size_t n)
{
	size_t i;

	if (n == 0 || n > ACME_TOKEN_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		char ch = t[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
			return 0;
	}
	return 1;
}

/* dir, then each name of subdirs (NULL-terminated) without following a
 * symlink, then the file tok.  A descriptor of the file, or -1. */
static int
answer_open(const char *dir, const char *const *subdirs, const char *tok,
    size_t tlen)
{
	char name[ACME_TOKEN_MAX + 1];
	int dfd, fd;

	if (tlen > ACME_TOKEN_MAX)
		return -1;
	memcpy(name, tok, tlen);
	name[tlen] = '\0';
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	for (; dfd >= 0 && *subdirs != NULL; subdirs++) {
		fd = openat(dfd, *subdirs, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
		close(dfd);
		dfd = fd;
	}
	if (dfd < 0)
		return -1;
	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
	close(dfd);
	return fd;
}

static int
answer_read(const char *dir, const char *const *subdirs, const char *tok,
    size_t tlen, char *buf, size_t *len)
{
	struct stat sb;
	ssize_t n;
	size_t got = 0;
	int fd = answer_open(dir, subdirs, tok, tlen);

	if (fd < 0)
		return -1;
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < 1 ||
	    sb.st_size > ACME_ANSWER_MAX) {
		close(fd);
		return -1;
	}
	while (got < ACME_ANSWER_MAX) {
		n = read(fd, buf + got, ACME_ANSWER_MAX - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	*len = got;
	return got > 0 ? 0 : -1;
}

static int
http_acme_answer(struct derp_server *s, struct conn *c,
    const struct http_req *r, const char *path, size_t plen)
{
	static const size_t pre = sizeof ACME_PREFIX - 1;
	static const char *const none[] = { NULL };
	static const char *const webdirs[] = { ".well-known", "acme-challenge",
	    NULL };
	const char *tok, *web = s->cfg.acme_webroot;
	char body[ACME_ANSWER_MAX];
	size_t tlen, blen = 0;
	int found = 0, ok;

	if (!s->acme.on && (web == NULL || web[0] == '\0'))
		return 0;
	if (plen < pre || memcmp(path, ACME_PREFIX, pre) != 0)
		return 0;
	tok = path + pre;
	tlen = plen - pre;
	ok = acme_token_ok(tok, tlen);
	if (ok && s->acme.on)
		found = answer_read(s->acme.chaldir, none, tok, tlen, body,
		    &blen) == 0;
	if (ok && !found && web != NULL && web[0] != '\0')
		found = answer_read(web, webdirs, tok, tlen, body, &blen) == 0;
	s->st.acme_answers[found]++;
	if (found)
		http_respond(s, c, r, "200 OK",
		    "Content-Type: text/plain; charset=utf-8\r\n", body, blen, 0);
	else
		http_error(s, c, r, "404 Not Found", "404 page not found", 0);
	return 1;
}

/* The port-80 listener in TLS mode (derper-compat.md section 5). */
static void
http_port80(struct derp_server *s, struct conn *c, const struct http_req *r,
    const char *path, size_t plen)
{
	const struct http_hdr *host = http_header(r, "Host");
	char url[2048];
	struct sbuf sb = { url, 0, sizeof url, 0 };

	if (path_is(path, plen, "/generate_204")) {
		http_generate_204(s, c, r);
		return;
	}
	if (http_acme_answer(s, c, r, path, plen))
		return;
	if (plen >= 6 && memcmp(path, "/debug", 6) == 0) {	/* main only */
		http_error(s, c, r, "404 Not Found", "404 page not found", 0);
		return;
	}
	if (!http_method_is(r, "GET") && !http_method_is(r, "HEAD")) {
		http_error(s, c, r, "400 Bad Request", "Use HTTPS", 0);
		return;
	}
	sb_add(&sb, "https://");
	if (host != NULL)
		sb_addn(&sb, host->val, host->vlen);
	if (path_is(path, plen, "/") && debug_allowed(s, c, r))
		sb_add(&sb, "/debug/");
	else
		sb_addn(&sb, r->target, r->tlen);
	http_redirect(s, c, r, "302 Found", url, sb.overflow ? 0 : sb.len);
}

/*
 * A request Go's server refuses before any handler runs: it writes the status
 * (for some errors with the reason after it), no Date and no length, then the
 * status again as the body, and closes.
 */
static void
http_reject(struct derp_server *s, struct conn *c, const char *status)
{
	char buf[256];
	struct sbuf sb = { buf, 0, sizeof buf, 0 };

	sb_add(&sb, "HTTP/1.1 ");
	sb_add(&sb, status);
	sb_add(&sb, "\r\nContent-Type: text/plain; charset=utf-8\r\n"
	    "Connection: close\r\n\r\n");
	sb_add(&sb, status);
	s->st.http_requests++;
	s->st.hs_failed[HS_HTTP]++;
	http_queue(s, c, buf, sb.overflow ? 0 : sb.len, RESP_CLOSE);
}

/*
 * Content-Length as Go reads it: digits only; several headers must all carry
 * the same value (Go keeps one; differing values are refused, so a proxy in
 * front and this server cannot disagree on where the body ends).  0 (*len
 * set, 0 without the header) or -1.
 */
static int
http_content_length(const struct http_req *r, uint64_t *len)
{
	const struct http_hdr *first = NULL, *h;
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < r->nh; i++) {
		h = &r->h[i];
		if (!ascii_eq_ci(h->name, h->nlen, "Content-Length"))
			continue;
		if (first == NULL)
			first = h;
		else if (h->vlen != first->vlen ||
		    memcmp(h->val, first->val, h->vlen) != 0)
			return -1;
	}
	*len = 0;
	if (first == NULL)
		return 0;
	if (first->vlen == 0 || first->vlen > 19)
		return -1;
	for (i = 0; i < first->vlen; i++) {
		if (first->val[i] < '0' || first->val[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(first->val[i] - '0');
	}
	*len = v;
	return 0;
}

/*
 * The first value of query parameter name in r's target, unescaped, as Go's
 * URL.Query().Get finds it: its length, or -1 when it is absent, does not
 * unescape or does not fit out[cap] (with its NUL).
 */
static long
http_query_get(const struct http_req *r, const char *name, char *out,
    size_t cap)
{
	const char *q = memchr(r->target, '?', r->tlen), *end, *amp, *eq;
	size_t nlen = strlen(name);
	long n;

	if (q == NULL || cap == 0)
		return -1;
	end = r->target + r->tlen;
	for (q++; q < end; q = amp + 1) {
		amp = memchr(q, '&', (size_t)(end - q));
		if (amp == NULL)
			amp = end;
		eq = memchr(q, '=', (size_t)(amp - q));
		if (eq != NULL && (size_t)(eq - q) == nlen &&
		    memcmp(q, name, nlen) == 0) {
			n = http_unescape(eq + 1, (size_t)(amp - eq - 1), out,
			    cap - 1);
			if (n >= 0)
				out[n] = '\0';
			return n;
		}
	}
	return -1;
}

/*
 * /bootstrap-dns (derper-compat.md 4.5): the published names' addresses as
 * the last lookup round found them (an empty body before the first round, or
 * with no names); ?q=<name> of an unpublished name that resolved answers that
 * name alone.  Connection: close, as derper (the requests are one-off).
 */
static void
http_bootstrap_dns(struct derp_server *s, struct conn *c,
    const struct http_req *r)
{
	char hdr[1024];
	struct sbuf sb = { hdr, 0, sizeof hdr, 0 };
	const char *body = "";
	size_t len = 0;
#ifndef DERP_NO_BOOTDNS
	const struct bootdns_job *j = &s->bdns;
	char q[BOOTDNS_NAME_MAX + 1], one[BOOTDNS_JSON_MAX];
	size_t max;
#endif

	sb_add(&sb, browser_headers);
	sb_add(&sb, "Content-Type: application/json\r\n");
#ifndef DERP_NO_BOOTDNS
	if (j->tab != NULL && j->published) {
		body = j->body;
		len = j->body_len;
		if (http_query_get(r, "q", q, sizeof q) > 0) {
			for (max = BOOTDNS_ADDRS_MAX; max > 0; max--) {
				size_t n = bootdns_json(&j->tab[j->cur], q, max,
				    one, sizeof one);

				if (n > 2) {	/* not "{}": q resolved */
					body = one;
					len = n;
				}
				if (n > 0)
					break;
			}
		}
	}
#endif
	http_respond(s, c, r, "200 OK", hdr, body, len, RESP_CLOSE);
}

/* A complete request head in buf: route it (derper's mux). */
/* =================================================================== METRICS */

/*
 * derper's metrics (derper-compat.md 11) and ours, rendered on request from
 * the counters in struct stats and the tables the relay keeps anyway: the
 * packet path only increments.  One walk over them writes either form:
 * Prometheus text (/debug/varz; group_name, # TYPE from the kind) or Go
 * expvar JSON (/debug/vars; {"group":{"name":v}}, gauges named gauge_name as
 * derper's expvars are, label sets as objects nested by label value).  The
 * text goes into srv.mbuf, METRICS_BYTES reserved at start: the largest set
 * (five certificates, sixteen mesh links) is under half of it.
 */
#define METRICS_BYTES		32768

enum { MT_COUNTER, MT_GAUGE, MT_UNTYPED };
static const char *const metric_type[] = { "counter", "gauge", "untyped" };

struct mout {
	struct sbuf sb;
	uint8_t json;
	uint8_t first;		/* JSON: the next member opens its object */
	uint8_t grouped;	/* JSON: a group's object is open */
	uint8_t top_first;	/* JSON: nothing written at the top level yet */
	const char *group;	/* "": top level */
};

/* A label value or JSON string body: \, " and newline escaped (both forms
 * take the same three). */
static void
mo_quoted(struct sbuf *sb, const char *v)
{
	sb_add(sb, "\"");
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			sb_addn(sb, "\\", 1);
		if (*v == '\n')
			sb_add(sb, "\\n");
		else if ((unsigned char)*v >= 0x20)
			sb_addn(sb, v, 1);
	}
	sb_add(sb, "\"");
}

static void
mo_i64(struct sbuf *sb, int64_t v)
{
	if (v < 0) {
		sb_add(sb, "-");
		sb_add_u64(sb, (uint64_t)-(v + 1) + 1);
	} else {
		sb_add_u64(sb, (uint64_t)v);
	}
}

static void
mo_group(struct mout *o, const char *group)
{
	if (o->json) {
		if (o->grouped)
			sb_add(&o->sb, "}");
		o->grouped = group[0] != '\0';
		if (o->grouped) {
			sb_add(&o->sb, o->top_first ? "" : ",");
			mo_quoted(&o->sb, group);
			sb_add(&o->sb, ":{");
			o->top_first = 0;
			o->first = 1;
		} else {
			o->first = o->top_first;
		}
	}
	o->group = group;
}

/* Prometheus: the full name. */
static void
mo_name(struct mout *o, const char *name)
{
	if (o->group[0] != '\0') {
		sb_add(&o->sb, o->group);
		sb_add(&o->sb, "_");
	}
	sb_add(&o->sb, name);
}

/* A metric's start: # HELP and # TYPE, or its JSON member name. */
static void
mo_head(struct mout *o, const char *name, int type, const char *help)
{
	if (o->json) {
		sb_add(&o->sb, o->first ? "\"" : ",\"");
		if (type == MT_GAUGE && o->grouped)
			sb_add(&o->sb, "gauge_");
		sb_add(&o->sb, name);
		sb_add(&o->sb, "\":");
		o->first = 0;
		if (!o->grouped)
			o->top_first = 0;
		return;
	}
	sb_add(&o->sb, "# HELP ");
	mo_name(o, name);
	sb_add(&o->sb, " ");
	sb_add(&o->sb, help);
	sb_add(&o->sb, "\n# TYPE ");
	mo_name(o, name);
	sb_add(&o->sb, " ");
	sb_add(&o->sb, metric_type[type]);
	sb_add(&o->sb, "\n");
}

static void
mo_int(struct mout *o, const char *name, int type, const char *help,
    int64_t v)
{
	mo_head(o, name, type, help);
	if (!o->json) {
		mo_name(o, name);
		sb_add(&o->sb, " ");
	}
	mo_i64(&o->sb, v);
	if (!o->json)
		sb_add(&o->sb, "\n");
}

/*
 * A labelled metric's samples: labels[0..nl) (one or two), the values of
 * each in vals[l][0..nv[l]), v[] in row order (the last label varies
 * fastest), as the counters' arrays are laid out.
 */
struct mlabels {
	uint8_t nl;
	const char *label[2];
	const char *const *vals[2];
	uint32_t nv[2];
};

static void
mo_vec(struct mout *o, const char *name, int type, const char *help,
    const struct mlabels *l, const uint64_t *v)
{
	uint32_t i, j, n1 = l->nv[0], n2 = l->nl > 1 ? l->nv[1] : 1;

	mo_head(o, name, type, help);
	if (o->json)
		sb_add(&o->sb, "{");
	for (i = 0; i < n1; i++) {
		if (o->json) {
			sb_add(&o->sb, i > 0 ? "," : "");
			mo_quoted(&o->sb, l->vals[0][i]);
			sb_add(&o->sb, l->nl > 1 ? ":{" : ":");
		}
		for (j = 0; j < n2; j++) {
			if (o->json) {
				if (l->nl > 1) {
					sb_add(&o->sb, j > 0 ? "," : "");
					mo_quoted(&o->sb, l->vals[1][j]);
					sb_add(&o->sb, ":");
				}
				sb_add_u64(&o->sb, v[i * n2 + j]);
				continue;
			}
			mo_name(o, name);
			sb_add(&o->sb, "{");
			sb_add(&o->sb, l->label[0]);
			sb_add(&o->sb, "=");
			mo_quoted(&o->sb, l->vals[0][i]);
			if (l->nl > 1) {
				sb_add(&o->sb, ",");
				sb_add(&o->sb, l->label[1]);
				sb_add(&o->sb, "=");
				mo_quoted(&o->sb, l->vals[1][j]);
			}
			sb_add(&o->sb, "} ");
			sb_add_u64(&o->sb, v[i * n2 + j]);
			sb_add(&o->sb, "\n");
		}
		if (o->json && l->nl > 1)
			sb_add(&o->sb, "}");
	}
	if (o->json)
		sb_add(&o->sb, "}");
}

/* One label, one value: derp_..._kind{kind="disco"} and the like. */
static void
mo_vec1(struct mout *o, const char *name, int type, const char *help,
    const char *label, const char *const *vals, uint32_t n, const uint64_t *v)
{
	struct mlabels l = { 1, { label, NULL }, { vals, NULL }, { n, 0 } };

	mo_vec(o, name, type, help, &l, v);
}

static const char *const m_kinds[] = { "disco", "other" };
static const char *const m_drop_reasons[DROP_REASONS] = { "unknown_dest",
    "unknown_dest_on_fwd", "gone_disconnected", "queue_head", "queue_tail",
    "write_error", "dup_client", "mesh_queue" };

/* What derp_clients_* and the dup gauges count: a walk of the key table. */
struct keycount {
	uint64_t local, remote, dup_keys, dup_conns;
};

static void
metrics_keys(const struct derp_server *s, struct keycount *k)
{
	const struct keyent *e;
	uint32_t i;

	memset(k, 0, sizeof *k);
	for (i = 0; s->keytab != NULL && i <= s->keytab_mask; i++) {
		e = &s->keytab[i];
		if (e->nconns > 0)
			k->local++;
		else if (e->fwd != 0)
			k->remote++;
		if (e->nconns > 1) {
			k->dup_keys++;
			k->dup_conns += e->nconns;
		}
	}
}

/* Open descriptors (Linux), or -1 where /proc does not say. */
static int64_t
metrics_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int64_t n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;		/* opendir's own */
}

static void
metrics_derp(struct derp_server *s, struct mout *o)
{
	const struct stats *st = &s->st;
	struct mlabels drop = { 2, { "reason", "kind" },
	    { m_drop_reasons, m_kinds }, { DROP_DERPER_REASONS, 2 } };
	struct keycount k;
	int64_t fds = metrics_fds();

	metrics_keys(s, &k);
	mo_group(o, "derp");
	mo_int(o, "accepts", MT_COUNTER, "connections that reached the DERP "
	    "handshake", (int64_t)st->accepts);
	mo_int(o, "current_connections", MT_GAUGE, "registered connections",
	    st->current_connections);
	mo_int(o, "current_home_connections", MT_GAUGE, "connections that "
	    "said this is their home", st->current_home);
	mo_int(o, "current_notideal_connections", MT_GAUGE, "connections with "
	    "an Ideal-Node header", st->current_notideal);
	mo_int(o, "clients_total", MT_GAUGE, "distinct keys in the region",
	    (int64_t)(k.local + k.remote));
	mo_int(o, "clients_local", MT_GAUGE, "distinct keys here",
	    (int64_t)k.local);
	mo_int(o, "clients_remote", MT_GAUGE, "distinct keys only on mesh "
	    "peers", (int64_t)k.remote);
	mo_int(o, "current_dup_client_keys", MT_GAUGE, "keys with 2 or more "
	    "connections", (int64_t)k.dup_keys);
	mo_int(o, "current_dup_client_conns", MT_GAUGE, "connections of such "
	    "keys", (int64_t)k.dup_conns);
	mo_int(o, "total_dup_client_conns", MT_COUNTER, "connections whose "
	    "key was already connected", (int64_t)st->total_dup_client_conns);
	mo_int(o, "packets_received", MT_COUNTER, "SendPacket frames",
	    (int64_t)st->packets_received);
	mo_int(o, "bytes_received", MT_COUNTER, "bytes of SendPacket packets",
	    (int64_t)st->bytes_received);
	mo_vec1(o, "packets_received_kind", MT_COUNTER, "SendPacket frames by "
	    "kind", "kind", m_kinds, 2, st->received_kind);
	mo_int(o, "packets_sent", MT_COUNTER, "RecvPacket frames written",
	    (int64_t)st->packets_sent);
	mo_int(o, "bytes_sent", MT_COUNTER, "bytes of RecvPacket packets",
	    (int64_t)st->bytes_sent);
	mo_int(o, "packets_forwarded_out", MT_COUNTER, "ForwardPacket frames "
	    "sent to mesh peers", (int64_t)st->forwarded_out);
	mo_int(o, "packets_forwarded_in", MT_COUNTER, "ForwardPacket frames "
	    "from mesh peers", (int64_t)st->forwarded_in);
	mo_vec(o, "packets_dropped", MT_COUNTER, "packets dropped, by reason "
	    "and kind", &drop, &st->drop_pkts[0][0]);
	mo_vec(o, "bytes_dropped", MT_COUNTER, "bytes of dropped packets",
	    &drop, &st->drop_bytes[0][0]);
	mo_int(o, "got_ping", MT_COUNTER, "Ping frames", (int64_t)st->got_ping);
	mo_int(o, "sent_pong", MT_COUNTER, "Pong frames",
	    (int64_t)st->sent_pong);
	mo_int(o, "peer_gone_disconnected_frames", MT_COUNTER, "PeerGone "
	    "frames: disconnected", (int64_t)st->peer_gone_disconnected);
	mo_int(o, "peer_gone_not_here_frames", MT_COUNTER, "PeerGone frames: "
	    "not here", (int64_t)st->peer_gone_not_here);
	mo_int(o, "home_moves_in", MT_COUNTER, "connections that made this "
	    "their home later", (int64_t)st->home_moves_in);
	mo_int(o, "home_moves_out", MT_COUNTER, "connections that stopped "
	    "calling this home", (int64_t)st->home_moves_out);
	mo_int(o, "unknown_frames", MT_COUNTER, "never counted, as in derper",
	    0);
	mo_int(o, "watchers", MT_GAUGE, "mesh peers watching connections",
	    s->nwatchers);
	if (fds >= 0)
		mo_int(o, "current_file_descriptors", MT_GAUGE, "open "
		    "descriptors", fds);
	mo_int(o, "sclient_write_timeouts", MT_COUNTER, "connections closed "
	    "by the write timeout", (int64_t)st->write_timeouts);
	mo_int(o, "websocket_accepts", MT_COUNTER, "WebSocket DERP "
	    "connections", (int64_t)st->ws_accepts);
	if (s->rate.rate != 0) {
		mo_int(o, "rate_limit_per_client_bytes_per_second", MT_UNTYPED,
		    "-rate-config", (int64_t)s->rate.rate);
		mo_int(o, "rate_limit_per_client_burst_bytes", MT_UNTYPED,
		    "-rate-config", (int64_t)s->rate.burst);
		mo_int(o, "rate_limit_per_client_waited", MT_COUNTER, "reads "
		    "delayed by the limiter", (int64_t)st->rate_limit_waited);
	}
}

static void
metrics_relay(struct derp_server *s, struct mout *o)
{
	static const char *const stages[HS_STAGES] = { "tls", "http", "derp" };
	static const char *const decisions[3] = { "allowed", "rejected",
	    "fail_open" };
	static const char *const refusals[3] = { "slots", "accept_limit",
	    "handshakes" };
	struct mlabels mdrop = { 2, { "reason", "kind" },
	    { m_drop_reasons + DROP_MESH_QUEUE, m_kinds }, { 1, 2 } };
	const struct stats *st = &s->st;
	uint64_t refused[3];
	uint8_t k;

	mo_group(o, "relay");
	mo_int(o, "slots_max", MT_GAUGE, "connection slots (-max-clients)",
	    s->max);
	mo_int(o, "slots_in_use", MT_GAUGE, "connection slots in use",
	    s->fresh - s->nfree);
	mo_int(o, "slots_high_water", MT_GAUGE, "the most slots in use at "
	    "once", s->slots_high);
	mo_int(o, "chunks_reserved", MT_GAUGE, "packet chunks reserved",
	    s->pool.count);
	mo_int(o, "chunks_in_use", MT_GAUGE, "packet chunks in use",
	    s->pool.count - s->pool.free_count);
	mo_int(o, "chunks_high_water", MT_GAUGE, "the most chunks in use at "
	    "once", s->pool.high);
	mo_int(o, "spare_chunks_in_use", MT_GAUGE, "chunks borrowed beyond "
	    "connection budgets", s->spare_used);
	mo_int(o, "memory_reserved_bytes", MT_GAUGE, "memory reserved at "
	    "start for the limits", (int64_t)derp_memory_bytes(&s->cfg));
	mo_int(o, "handshakes_in_progress", MT_GAUGE, "connections not yet "
	    "registered", s->pend[PEND_MAIN].n + s->pend[PEND_PORT80].n);
	mo_int(o, "handshakes_high_water", MT_GAUGE, "the most unregistered "
	    "connections at once", s->hs_high);
	mo_vec1(o, "handshake_failures_total", MT_COUNTER, "connections closed "
	    "before registering, by stage", "stage", stages, HS_STAGES,
	    st->hs_failed);
	refused[0] = st->refused;
	refused[1] = st->accept_limited;
	refused[2] = st->handshakes_refused;
	mo_vec1(o, "connections_refused_total", MT_COUNTER, "accepted and closed "
	    "at once, by limit", "limit", refusals, 3, refused);
	mo_int(o, "handshakes_evicted_total", MT_COUNTER, "unfinished connections "
	    "closed to make room", (int64_t)st->handshakes_evicted);
	mo_int(o, "handshakes_waiting", MT_GAUGE, "accepted connections waiting "
	    "for room among the unfinished", s->wait.n);
	mo_int(o, "handshakes_waiting_high_water", MT_GAUGE, "the most waiting "
	    "at once since start", s->wait.high);
	mo_int(o, "handshakes_waited_total", MT_COUNTER, "connections that "
	    "waited for room before their handshake",
	    (int64_t)st->handshakes_waited);
	mo_int(o, "handshake_wait_timeouts_total", MT_COUNTER, "waiting "
	    "connections closed after WAIT_MAX_MS", (int64_t)st->wait_timeouts);
	mo_int(o, "handshake_wait_idle_total", MT_COUNTER, "waiting connections "
	    "closed at the head of the line, silent", (int64_t)st->wait_idle);
	mo_int(o, "pool_evictions_total", MT_COUNTER, "queued packets dropped to "
	    "free chunks", (int64_t)st->pool_evictions);
	mo_int(o, "spare_refused_total", MT_COUNTER, "reads paused for the spare",
	    (int64_t)st->spare_refused);
	mo_int(o, "spare_timeouts_total", MT_COUNTER, "connections closed for "
	    "holding the spare", (int64_t)st->spare_timeouts);
	mo_vec1(o, "admission_decisions_total", MT_COUNTER, "admission decisions",
	    "decision", decisions, 3, st->admit);
	mo_vec(o, "packets_dropped_total", MT_COUNTER, "packets dropped, reasons "
	    "beyond derper's", &mdrop, &st->drop_pkts[DROP_MESH_QUEUE][0]);
	mo_int(o, "mesh_keys_refused_total", MT_COUNTER, "keys a mesh peer "
	    "announced over its share", (int64_t)st->mesh_keys_refused);
	mo_int(o, "watchers_behind_total", MT_COUNTER, "watchers closed a whole "
	    "log behind", (int64_t)st->watchers_behind);
	mo_int(o, "tls_no_certificate_total", MT_COUNTER, "TLS connections closed: "
	    "no certificate yet", (int64_t)st->tls_no_cert);
	mo_int(o, "log_lines_suppressed_total", MT_COUNTER, "connection log lines "
	    "over the rate limit", (int64_t)st->log_suppressed);
	if (s->tls_mode && s->nident > 0) {
		const char *names[CERT_IDENTS];
		uint64_t left[CERT_IDENTS];
		int64_t now = (int64_t)time(NULL), na;

		for (k = 0; k < s->nident; k++) {
			names[k] = s->ident[k].name;
			na = s->ident[k].bank[s->ident[k].cur].not_after;
			left[k] = na > now ? (uint64_t)(na - now) : 0;
		}
		mo_vec1(o, "cert_expiry_seconds", MT_GAUGE, "seconds until the "
		    "served certificate expires (0: expired or none)", "name",
		    names, s->nident, left);
	}
#ifndef DERP_NO_MESH
	if (s->nlinks > 0) {
		const char *names[255];
		uint64_t up[255];

		for (k = 0; k < s->nlinks; k++) {
			names[k] = s->links[k].name;
			up[k] = s->links[k].phase == ML_DERP;
		}
		mo_vec1(o, "mesh_link_up", MT_GAUGE, "mesh links connected "
		    "(1) or not (0)", "peer", names, s->nlinks, up);
	}
#endif
}

/* The whole set in srv.mbuf; its length, 0 if it did not fit. */
static size_t
metrics_render(struct derp_server *s, int json)
{
	static const char *const disp[4] = { "success", "not_stun",
	    "read_error", "write_error" };
	static const char *const fam[2] = { "ipv4", "ipv6" };
	static const char *const v12[1] = { "1.2" };
	const char *ver[2] = { DERP_VERSION, "derp" };
	struct mlabels lver = { 2, { "version", "binary" },
	    { ver, ver + 1 }, { 1, 1 } };
	struct mout o;
	uint64_t v[4], one = 1, tls_active = 0;
	uint32_t i;

	memset(&o, 0, sizeof o);
	o.sb.p = (char *)s->mbuf;
	o.sb.cap = METRICS_BYTES;
	o.json = (uint8_t)json;
	o.first = o.top_first = 1;
	o.group = "";
	if (json)
		sb_add(&o.sb, "{");
	metrics_derp(s, &o);
	mo_group(&o, "stun");
	v[0] = s->st.stun_success;
	v[1] = s->st.stun_not_stun;
	v[2] = s->st.stun_read_error;
	v[3] = s->st.stun_write_error;
	mo_vec1(&o, "requests", MT_COUNTER, "STUN datagrams by disposition",
	    "disposition", disp, 4, v);
	v[0] = s->st.stun_ipv4;
	v[1] = s->st.stun_ipv6;
	mo_vec1(&o, "addrfamily", MT_COUNTER, "STUN answers by address family",
	    "family", fam, 2, v);
	if (s->tls_mode) {
		for (i = 0; i < s->fresh; i++)
			if (s->conns[i].state == CS_DERP && s->conns[i].tls)
				tls_active++;
		mo_group(&o, "tls_listener");
		mo_int(&o, "accepted_connections", MT_COUNTER, "connections "
		    "accepted", (int64_t)s->st.tls_accepted);
		mo_int(&o, "rejected_connections", MT_COUNTER, "connections "
		    "closed at once", (int64_t)s->st.tls_rejected);
		mo_group(&o, "derper_tls");
		mo_vec1(&o, "request_version", MT_UNTYPED, "HTTP requests by "
		    "TLS version", "version", v12, 1, &s->st.tls_requests);
		mo_vec1(&o, "active_version", MT_GAUGE, "DERP connections by "
		    "TLS version", "version", v12, 1, &tls_active);
	}
	metrics_relay(s, &o);
	mo_group(&o, "");
	mo_int(&o, "uptime_sec", MT_GAUGE, "seconds since start",
	    ((int64_t)time(NULL) - s->start_unix));
	mo_int(&o, "process_start_unix_time", MT_GAUGE, "start, Unix seconds",
	    s->start_unix);
	mo_vec(&o, "version", MT_GAUGE, "this relay", &lver, &one);
	if (json)
		sb_add(&o.sb, "}\n");
	return o.sb.overflow ? 0 : o.sb.len;
}

/* ===================================================================== DEBUG */

/*
 * Who may read /debug/ (derper-compat.md 6, and the issue's rule): a peer
 * address on the list -debug-allow gives (keywords loopback, private,
 * tailscale, any, none, and CIDR prefixes; default loopback,private,
 * tailscale), or on derper's TS_ALLOW_DEBUG_IP and TS_DEBUG_TRUSTED_CIDRS;
 * never a request with X-Forwarded-For (a proxy in front would make every
 * visitor look local); a GET with ?debugkey= equal to the trimmed contents
 * of the file TS_DEBUG_KEY_PATH names, whatever the address.
 */

static int
prefix_has(const struct ip_prefix *p, const uint8_t ip[16])
{
	uint8_t full = p->bits / 8, rest = p->bits % 8;

	if (memcmp(p->ip, ip, full) != 0)
		return 0;
	return rest == 0 || ((p->ip[full] ^ ip[full]) &
	    (uint8_t)(0xff << (8 - rest))) == 0;
}

/* "a.b.c.d[/n]" or "v6[/n]" (no prefix: one address).  0 or -1. */
static int
prefix_parse(const char *t, size_t n, struct ip_prefix *p)
{
	char txt[INET6_ADDRSTRLEN + 8];
	const char *slash = memchr(t, '/', n);
	size_t alen = slash != NULL ? (size_t)(slash - t) : n;
	int64_t bits = -1, width;
	struct in_addr a4;

	if (alen == 0 || alen >= sizeof txt)
		return -1;
	memcpy(txt, t, alen);
	txt[alen] = '\0';
	memset(p, 0, sizeof *p);
	if (inet_pton(AF_INET, txt, &a4) == 1) {
		p->ip[10] = p->ip[11] = 0xff;
		memcpy(p->ip + 12, &a4, 4);
		width = 32;
	} else if (inet_pton(AF_INET6, txt, p->ip) == 1) {
		width = 128;
	} else {
		return -1;
	}
	if (slash != NULL) {
		const char *d = slash + 1, *end = t + n;

		if (d == end || end - d > 3)
			return -1;
		for (bits = 0; d < end; d++) {
			if (*d < '0' || *d > '9')
				return -1;
			bits = bits * 10 + (*d - '0');
		}
		if (bits > width)
			return -1;
	} else {
		bits = width;
	}
	p->bits = (uint8_t)(bits + 128 - width);
	return 0;
}

/* Add a comma-separated list (keywords with kw_ok) to a.  0, or -1 with
 * the bad item in err. */
static int
debug_acl_add(struct debug_acl *a, const char *list, int kw_ok, char *err,
    size_t errlen)
{
	static const struct { const char *name; uint8_t bit; } kws[] = {
		{ "loopback", ACL_LOOPBACK }, { "private", ACL_PRIVATE },
		{ "tailscale", ACL_TAILSCALE }, { "any", ACL_ANY },
		{ "none", 0 } };
	const char *t = list, *e;
	size_t n, k;

	while (t != NULL && *t != '\0') {
		e = strchr(t, ',');
		n = e != NULL ? (size_t)(e - t) : strlen(t);
		while (n > 0 && t[0] == ' ')
			t++, n--;
		while (n > 0 && t[n - 1] == ' ')
			n--;
		for (k = 0; kw_ok && k < sizeof kws / sizeof kws[0]; k++)
			if (strlen(kws[k].name) == n &&
			    memcmp(kws[k].name, t, n) == 0)
				break;
		if (kw_ok && k < sizeof kws / sizeof kws[0]) {
			a->kw |= kws[k].bit;
		} else if (n > 0 && (a->n == DEBUG_ACL_MAX ||
		    prefix_parse(t, n, &a->p[a->n++]) != 0)) {
			snprintf(err, errlen, "%.*s: not %s", (int)(n > 64 ?
			    64 : n), t, a->n == DEBUG_ACL_MAX ? "room for "
			    "more prefixes" : kw_ok ? "an address, prefix or "
			    "keyword" : "an address or prefix");
			return -1;
		}
		t = e != NULL ? e + 1 : NULL;
	}
	return 0;
}

/* The address rule alone (a unit test's entry). */
static int
debug_acl_allows(const struct debug_acl *a, const uint8_t ip[16])
{
	static const uint8_t ts_v6[6] = { 0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0 };
	const uint8_t *v4 = ip + 12;
	int is4 = ip16_is_v4(ip);
	uint8_t i;

	if (a->kw & ACL_ANY)
		return 1;
	if ((a->kw & ACL_LOOPBACK) && (is4 ? v4[0] == 127 :
	    is_zero(ip, 15) && ip[15] == 1))
		return 1;
	if ((a->kw & ACL_PRIVATE) && (is4 ? v4[0] == 10 || (v4[0] == 172 &&
	    (v4[1] & 0xf0) == 16) || (v4[0] == 192 && v4[1] == 168) :
	    (ip[0] & 0xfe) == 0xfc))
		return 1;
	/* Tailscale's CGNAT range less 100.115.92.0/23 (ChromeOS's), and
	 * its ULA /48. */
	if ((a->kw & ACL_TAILSCALE) && (is4 ? v4[0] == 100 &&
	    (v4[1] & 0xc0) == 64 && !(v4[1] == 115 && (v4[2] & 0xfe) == 92) :
	    memcmp(ip, ts_v6, 6) == 0))
		return 1;
	for (i = 0; i < a->n; i++)
		if (prefix_has(&a->p[i], ip))
			return 1;
	return 0;
}

static int
debug_allowed(struct derp_server *s, const struct conn *c,
    const struct http_req *r)
{
	char key[DEBUG_KEY_MAX];
	long n;

	/* A wrong key falls through to the other rules, as derper's. */
	if (s->debug_key_len > 0 && http_method_is(r, "GET") &&
	    (n = http_query_get(r, "debugkey", key, sizeof key)) >= 0 &&
	    (size_t)n == s->debug_key_len && bytes_equal_ct((const uint8_t *)
	    key, s->debug_key, s->debug_key_len))
		return 1;
	if (http_header(r, "X-Forwarded-For") != NULL)
		return 0;
	return debug_acl_allows(&s->debug_acl, c->peer_ip);
}

/*
 * /debug/check: the tables the relay keeps agree with each other (derper
 * checks its client maps the same way): registered connections, the key
 * table's counts and active connections, the watchers' list, the chunks.
 * The problems found, one per line, in out; their number.
 */
static int
debug_check(struct derp_server *s, struct sbuf *out)
{
	uint32_t i, regs = 0, keyconns = 0, watchers = 0, holds = 0;
	const struct keyent *e;
	const struct conn *c;
	int32_t w;
	int bad = 0;

	for (i = 0; i < s->fresh; i++) {
		c = &s->conns[i];
		if (c->state == CS_DERP)
			regs++;
		if (c->state != CS_FREE)
			holds += c->hold[HOLD_CTRL] + c->hold[HOLD_RAWIN] +
			    c->hold[HOLD_IN] + c->q_chunks;
	}
	for (i = 0; s->keytab != NULL && i <= s->keytab_mask; i++) {
		e = &s->keytab[i];
		if (e->nconns == 0)
			continue;
		keyconns += e->nconns;
		c = e->active >= 0 && (uint32_t)e->active < s->max ?
		    &s->conns[e->active] : NULL;
		if (c == NULL || c->state != CS_DERP ||
		    memcmp(c->key, e->key, KEY_BYTES) != 0) {
			bad++;
			sb_add(out, "a key's active connection is not "
			    "registered with that key\n");
		}
	}
	for (w = s->watch_first; w >= 0 && watchers <= s->max;
	    w = s->conns[w].watch.next)
		watchers++;
	if (regs != s->st.current_connections) {
		bad++;
		sb_add(out, "registered connections differ from "
		    "current_connections\n");
	}
	if (keyconns != regs) {
		bad++;
		sb_add(out, "the key table counts a different number of "
		    "connections\n");
	}
	if (watchers != s->nwatchers) {
		bad++;
		sb_add(out, "the watchers' list differs from its count\n");
	}
	if (holds + s->pool.free_count > s->pool.count + s->spare_used) {
		bad++;
		sb_add(out, "connections account for more chunks than are "
		    "in use\n");
	}
	return bad;
}

/*
 * A page walks the key table (34 entries a slot with mesh links): about
 * 0.8 ms at 4,096 slots.  A token bucket keeps a peer that may read them
 * from spending the loop on them: DEBUG_RENDER_BURST at once, then
 * DEBUG_RENDERS_PER_S (a scrape every few seconds is the use).
 */
#define DEBUG_RENDER_BURST	40
#define DEBUG_RENDERS_PER_S	50

static int
debug_render_allow(struct derp_server *s)
{
	return tbucket_take(&s->dbg_renders, s->now, DEBUG_RENDER_BURST,
	    1000 / DEBUG_RENDERS_PER_S);
}

/* The /debug/ pages (derper-compat.md 6) on the main listener. */
static void
http_debug(struct derp_server *s, struct conn *c, const struct http_req *r,
    const char *path, size_t plen)
{
	static const char text_hdr[] = "Content-Type: text/plain; "
	    "charset=utf-8\r\n";
	static const char check_ok[] = "derp.Server ConsistencyCheck okay";
	char body[2048], host[256];
	struct sbuf b = { body, 0, sizeof body, 0 };
	size_t n;

	if (!debug_allowed(s, c, r)) {
		http_error(s, c, r, "403 Forbidden", "debug access denied", 0);
		return;
	}
	if ((path_is(path, plen, "/debug/vars") ||
	    path_is(path, plen, "/debug/varz") ||
	    path_is(path, plen, "/debug/check")) && !debug_render_allow(s)) {
		http_error(s, c, r, "429 Too Many Requests", "too many debug "
		    "requests: at most 50 a second", 0);
		return;
	}
	if (path_is(path, plen, "/debug/vars") ||
	    path_is(path, plen, "/debug/varz")) {
		int json = path[plen - 1] == 's';

		n = metrics_render(s, json);
		if (n == 0) {
			http_error(s, c, r, "500 Internal Server Error",
			    "metrics do not fit", 0);
			return;
		}
		http_respond(s, c, r, "200 OK", json ? "Content-Type: "
		    "application/json; charset=utf-8\r\n" : "Content-Type: "
		    "text/plain; version=0.0.4; charset=utf-8\r\n",
		    (const char *)s->mbuf, n, 0);
	} else if (path_is(path, plen, "/debug/check")) {
		if (debug_check(s, &b) == 0)
			http_respond(s, c, r, "200 OK", text_hdr, check_ok,
			    sizeof check_ok - 1, 0);
		else
			http_respond(s, c, r, "500 Internal Server Error",
			    text_hdr, body, b.overflow ? 0 : b.len, 0);
	} else if (path_is(path, plen, "/debug/")) {
		if (gethostname(host, sizeof host) != 0)
			host[0] = '\0';
		host[sizeof host - 1] = '\0';
		sb_add(&b, "<html><body>\n<h1>derp debug</h1>\n<ul>\n"
		    "<li><b>Uptime:</b> ");
		sb_add_u64(&b, (uint64_t)((int64_t)time(NULL) - s->start_unix));
		sb_add(&b, " s</li>\n<li><b>Version:</b> " DERP_VERSION
		    "</li>\n<li><b>Machine:</b> ");
		html_escape(&b, host);
		sb_add(&b, "</li>\n<li><b>Hostname:</b> ");
		html_escape(&b, s->cfg.hostname);
		sb_add(&b, "</li>\n<li><b>Mesh key:</b> ");
		sb_add(&b, s->has_mesh_key ? "set" : "not set");
		sb_add(&b, "</li>\n</ul>\n<ul>\n"
		    "<li><a href=\"/debug/vars\">/debug/vars</a> (JSON)</li>\n"
		    "<li><a href=\"/debug/varz\">/debug/varz</a> (Prometheus)"
		    "</li>\n<li><a href=\"/debug/check\">/debug/check</a></li>\n"
		    "</ul>\n</body></html>\n");
		http_respond(s, c, r, "200 OK", "Content-Type: text/html; "
		    "charset=utf-8\r\n", body, b.overflow ? 0 : b.len, 0);
	} else {
		http_error(s, c, r, "404 Not Found", "404 page not found", 0);
	}
}

/* -debug-allow (default loopback,private,tailscale), derper's
 * TS_ALLOW_DEBUG_IP and TS_DEBUG_TRUSTED_CIDRS, TS_DEBUG_KEY_PATH's key.  0,
 * or -1 with err. */
static int
debug_setup(struct derp_server *s, char *err, size_t errlen)
{
	const char *allow = s->cfg.debug_allow, *path;
	char why[128];
	ssize_t n = -1;
	size_t i;
	int fd;

	if (allow == NULL || allow[0] == '\0')
		allow = "loopback,private,tailscale";
	if (debug_acl_add(&s->debug_acl, allow, 1, why, sizeof why) != 0) {
		snprintf(err, errlen, "-debug-allow: %s", why);
		return -1;
	}
	if (debug_acl_add(&s->debug_acl, getenv("TS_ALLOW_DEBUG_IP"), 0, why,
	    sizeof why) != 0 || debug_acl_add(&s->debug_acl,
	    getenv("TS_DEBUG_TRUSTED_CIDRS"), 0, why, sizeof why) != 0) {
		snprintf(err, errlen, "TS_ALLOW_DEBUG_IP or "
		    "TS_DEBUG_TRUSTED_CIDRS: %s", why);
		return -1;
	}
	path = getenv("TS_DEBUG_KEY_PATH");
	if (path == NULL || path[0] == '\0')
		return 0;
	if ((fd = open(path, O_RDONLY)) >= 0) {
		n = read(fd, s->debug_key, sizeof s->debug_key);
		close(fd);
	}
	if (n < 0 || (size_t)n == sizeof s->debug_key) {
		snprintf(err, errlen, "TS_DEBUG_KEY_PATH %.200s: %s", path,
		    n < 0 ? strerror(errno) : "longer than a key");
		return -1;
	}
	/* Go's strings.TrimSpace: both ends. */
	while (n > 0 && strchr(" \t\r\n\v\f", s->debug_key[n - 1]) != NULL)
		n--;
	for (i = 0; i < (size_t)n && strchr(" \t\r\n\v\f",
	    s->debug_key[i]) != NULL; i++)
		continue;
	memmove(s->debug_key, s->debug_key + i, (size_t)n - i);
	s->debug_key_len = (size_t)n - i;
	return 0;
}

static void
http_request(struct derp_server *s, struct conn *c, const char *buf, size_t len)
{
	struct http_req r;
	const char *path;
	size_t plen;
	char upath[HTTP_HEAD_MAX_BYTES], cpath[HTTP_HEAD_MAX_BYTES + 2];
	const char *q;
	size_t clen;
	long n;
	int rc = http_parse(buf, len, &r);

	c->close_after = 0;
	c->body_left = 0;
	if (c->tls)
		s->st.tls_requests++;
	if (rc == -2) {
		http_reject(s, c, "431 Request Header Fields Too Large");
		return;
	}
	if (rc != 0) {
		http_reject(s, c, "400 Bad Request");
		return;
	}
	if (r.minor == 1 && http_header(&r, "Host") == NULL) {
		http_reject(s, c, "400 Bad Request: missing required Host header");
		return;
	}
	/* A body, if any, is skipped before the next request (keep-alive). */
	if (http_header(&r, "Transfer-Encoding") != NULL) {
		c->close_after = 1;
	} else if (http_content_length(&r, &c->body_left) != 0) {
		http_reject(s, c, "400 Bad Request");
		return;
	}
	http_path(&r, &path, &plen);
	if (!c->port80 && !http_method_is(&r, "CONNECT")) {
		if (r.tlen == 1 && r.target[0] == '*' &&
		    http_method_is(&r, "OPTIONS")) {
			http_respond(s, c, &r, "200 OK", NULL, "", 0, 0);
			return;
		}
		/* Route on the decoded path; an unclean one is redirected to its
		 * clean form, as Go's mux does. */
		n = http_unescape(path, plen, upath, sizeof upath);
		if (n < 0 || (n > 0 && upath[0] != '/')) {
			http_respond(s, c, NULL, "400 Bad Request",
			    "Content-Type: text/plain; charset=utf-8\r\n",
			    "400 Bad Request", 15, RESP_CLOSE);
			return;
		}
		clen = http_clean_path(upath, (size_t)n, cpath);
		if (clen != (size_t)n || memcmp(cpath, upath, clen) != 0) {
			q = memchr(r.target, '?', r.tlen);
			if (q != NULL && clen + (size_t)(r.target + r.tlen - q) <
			    sizeof cpath) {
				memcpy(cpath + clen, q, (size_t)(r.target + r.tlen - q));
				clen += (size_t)(r.target + r.tlen - q);
			}
			http_redirect(s, c, &r, "301 Moved Permanently", cpath, clen);
			return;
		}
		path = upath;
		plen = (size_t)n;
	}
	if (c->port80) {
		http_port80(s, c, &r, path, plen);
	} else if (http_method_is(&r, "CONNECT")) {
		if (c->tls)
			http_error(s, c, &r, "403 Forbidden", "CONNECT not enabled", 0);
		else
			http_error(s, c, &r, "404 Not Found", "404 page not found", 0);
	} else if (!c->tls && http_acme_answer(s, c, &r, path, plen)) {
		/* plain mode: the main listener is where port 80 points */
	} else if (path_is(path, plen, "/derp")) {
		http_derp(s, c, &r);
	} else if (path_is(path, plen, "/derp/probe") ||
	    path_is(path, plen, "/derp/latency-check")) {
		if (http_method_is(&r, "GET") || http_method_is(&r, "HEAD"))
			http_respond(s, c, &r, "200 OK",
			    "Access-Control-Allow-Origin: *\r\n", "", 0, 0);
		else
			http_error(s, c, &r, "405 Method Not Allowed",
			    "bogus probe method", 0);
	} else if (path_is(path, plen, "/generate_204")) {
		http_generate_204(s, c, &r);
	} else if (path_is(path, plen, "/robots.txt")) {
		char hdr[1024];
		struct sbuf sb = { hdr, 0, sizeof hdr, 0 };

		sb_add(&sb, browser_headers);
		sb_add(&sb, "Content-Type: text/plain; charset=utf-8\r\n");
		http_respond(s, c, &r, "200 OK", hdr,
		    "User-agent: *\nDisallow: /\n", 26, 0);
	} else if (path_is(path, plen, "/bootstrap-dns")) {
		http_bootstrap_dns(s, c, &r);
	} else if (plen >= 7 && memcmp(path, "/debug/", 7) == 0) {
		http_debug(s, c, &r, path, plen);
	} else if (path_is(path, plen, "/debug")) {	/* Go's mux */
		http_redirect(s, c, &r, "301 Moved Permanently", "/debug/", 7);
	} else {
		http_home(s, c, &r);
	}
	if (c->body_left > HTTP_BODY_SKIP_MAX)
		c->close_after = 1;
}

/*
 * Request-head bytes.  The end is the first empty line.  Usually the whole head
 * arrives in one read (or one TLS record) and is parsed where it lies; otherwise
 * it accumulates in c->head.  Returns bytes consumed (0: paused).
 */
static size_t
http_head_feed(struct derp_server *s, struct conn *c, const uint8_t *p,
    size_t len)
{
	size_t i, total;
	uint8_t m = c->head_match;

	/* head_match: 0 mid-line, 1 just after LF, 2 after LF CR. */
	for (i = 0; i < len; i++) {
		if (p[i] == '\n') {
			if (m >= 1 && c->head.len + i > 0)
				break;
			m = 1;
		} else if (p[i] == '\r' && m == 1) {
			m = 2;
		} else {
			m = 0;
		}
	}
	c->head_match = m;
	total = c->head.len + (i < len ? i + 1 : len);
	if (total > HTTP_HEAD_MAX_BYTES) {
		conn_chain_clear(s, c, HOLD_IN, &c->head);
		http_reject(s, c, "431 Request Header Fields Too Large");
		return len;
	}
	if (i == len) {
		if (conn_append(s, c, HOLD_IN, &c->head, p, len) != 0) {
			mark_paused(s, c);
			return 0;
		}
		return len;
	}
	i++;			/* include the final LF */
	c->head_match = 1;	/* the next request starts a line */
	if (c->head.len == 0) {
		http_request(s, c, (const char *)p, i);
	} else {
		cbuf_peek(&s->pool, &c->head, s->scratch, c->head.len);
		memcpy(s->scratch + c->head.len, p, i);
		total = c->head.len + i;
		conn_chain_clear(s, c, HOLD_IN, &c->head);
		http_request(s, c, (const char *)s->scratch, total);
	}
	return i;
}

/* ============================================================== CONN (I/O) */

/* Plaintext bytes from the client, by state.  Returns bytes consumed. */
static size_t
conn_consume(struct derp_server *s, struct conn *c, const uint8_t *p,
    size_t len)
{
	size_t off = 0, n;

	if (s->stopping)	/* SHUTDOWN: only output is wanted now */
		return len;
	while (off < len && !c->dead && !c->in_paused) {
		switch (c->state) {
		case CS_HTTP_HEAD:
			n = http_head_feed(s, c, p + off, len - off);
			break;
		case CS_HTTP_BODY:
			n = len - off < c->body_left ? len - off :
			    (size_t)c->body_left;
			c->body_left -= n;
			if (c->body_left == 0)
				c->state = CS_HTTP_HEAD;
			break;
		case CS_DERP_INFO:
		case CS_DERP:
			n = c->ws.on ? ws_feed(s, c, p + off, len - off) :
			    derp_feed(s, c, p + off, len - off);
			break;
		default:	/* CS_HTTP_DRAIN: wait for the response */
			return off;
		}
		if (n == 0)
			break;
		off += n;
	}
	return c->dead ? len : off;
}

/* A response is written out: next request, or close (after a TLS
 * close_notify, as Go's server sends).  1 if something changed. */
static int
conn_http_drained(struct derp_server *s, struct conn *c)
{
	if (c->ws.close == WS_CLOSE_SENT) {
		/* What waits behind our close frame is never sent. */
		if (conn_out_pending(c))
			return 0;
	} else if (c->state != CS_HTTP_DRAIN || c->raw.len > 0 ||
	    conn_out_pending(c)) {
		return 0;
	}
	if (c->close_after) {
		if (c->tls && !c->tls_closing) {
			c->tls_closing = 1;
			br_ssl_engine_close(&c->ssl->eng);
			return 1;
		}
		c->dead = 1;
		return 1;
	}
	c->state = c->body_left > 0 ? CS_HTTP_BODY : CS_HTTP_HEAD;
	c->deadline_ms = s->now + HTTP_READ_TIMEOUT_MS;
	return 1;
}

/*
 * Plain HTTP sent to the TLS port.  Go's server answers it in clear text before
 * closing (net/http checks the first record header against a few methods); a
 * user who typed http:// sees why.  Called once, on the first bytes read.
 */
static int
tls_first_bytes_are_http(struct conn *c, const uint8_t *p, size_t n)
{
	static const char msg[] = "HTTP/1.0 400 Bad Request\r\n\r\n"
	    "Client sent an HTTP request to an HTTPS server.\n";
	static const char *starts[] = { "GET /", "HEAD ", "POST ", "PUT /", "OPTIO" };
	size_t i;

	if (n < 5)
		return 0;	/* not enough to tell: BearSSL will judge */
	c->tls_started = 1;
	for (i = 0; i < sizeof starts / sizeof starts[0]; i++)
		if (memcmp(p, starts[i], 5) == 0) {
			/* Best effort: the socket is fresh, so this fits. */
			ssize_t w = write(c->fd, msg, sizeof msg - 1);
			(void)w;
			c->dead = 1;
			return 1;
		}
	return 0;
}

/*
 * Ciphertext is read ahead of BearSSL.  BearSSL asks for one record at a time
 * (5 header bytes, then the body), which would cost two read(2) calls per
 * record -- per packet, for a client that sends one packet per record, as Go's
 * does.  So read(2) takes up to READ_BATCH_BYTES into one shared buffer and
 * records are copied from it into BearSSL's; the copy costs far less than the
 * syscalls it saves.  Bytes a connection does not take before it stops (it
 * paused, or waits for a response to drain) move to its `rawin` chain.
 */
static int
tls_feed(struct derp_server *s, struct conn *c, int *can_read, int *budget)
{
	br_ssl_engine_context *e = &c->ssl->eng;
	uint8_t *buf;
	size_t len, k, want;
	ssize_t n;

	buf = br_ssl_engine_recvrec_buf(e, &len);
	if (c->rawin.len > 0) {
		k = c->rawin.len < len ? c->rawin.len : len;
		cbuf_peek(&s->pool, &c->rawin, buf, k);
		conn_chain_consume(s, c, HOLD_RAWIN, &c->rawin, k);
		br_ssl_engine_recvrec_ack(e, k);
		return 1;
	}
	if (s->rb_owner == c && s->rb_off < s->rb_len) {
		k = s->rb_len - s->rb_off < len ? s->rb_len - s->rb_off : len;
		memcpy(buf, s->rbatch + s->rb_off, k);
		s->rb_off += k;
		br_ssl_engine_recvrec_ack(e, k);
		return 1;
	}
	if (!*can_read || *budget == 0 || c->in_paused)
		return 0;
	/* What the engine asks for, plus what rawin could keep if c stops
	 * before taking the rest (rawin is empty here: P3, RAWIN). */
	want = len + (size_t)CHUNKS_RAWIN * CHUNK_DATA_BYTES;
	if (want > READ_BATCH_BYTES)
		want = READ_BATCH_BYTES;
	n = read(c->fd, s->rbatch, want);
	if (n > 0) {
		(*budget)--;
		c->last_in_ms = s->now;
		/* A short read emptied the socket: another read would only
		 * return EAGAIN (level-triggered readiness tells us when). */
		if ((size_t)n < want)
			*can_read = 0;
		if (!c->tls_started &&
		    tls_first_bytes_are_http(c, s->rbatch, (size_t)n))
			return 0;
		s->rb_owner = c;
		s->rb_off = 0;
		s->rb_len = (size_t)n;
		return 1;
	}
	if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
		c->dead = 1;	/* EOF or reset */
	else
		*can_read = 0;
	return 0;
}

static void
tls_keep_leftover(struct derp_server *s, struct conn *c)
{
	size_t k = s->rb_len - s->rb_off;

	s->rb_owner = NULL;
	if (k == 0 || c->dead)
		return;
	/* Fits CHUNKS_RAWIN by the read size (tls_feed), so this cannot fail. */
	if (conn_append(s, c, HOLD_RAWIN, &c->rawin, s->rbatch + s->rb_off,
	    k) != 0)
		conn_fail(s, c, "out of buffer memory");
}

/*
 * Move bytes for one connection until nothing moves: read (if can_read and
 * within budget), hand plaintext to conn_consume, fill output, write.  TLS
 * runs the same steps through BearSSL's four buffers.
 */
static void
conn_pump(struct derp_server *s, struct conn *c, int can_read)
{
	br_ssl_engine_context *e = c->tls ? &c->ssl->eng : NULL;
	int budget = TLS_RECORDS_PER_ROUND, progress, err;
	unsigned st;
	uint8_t *buf;
	size_t len, used;
	ssize_t n;

	while (!c->dead) {
		progress = 0;
		if (e != NULL) {
			st = br_ssl_engine_current_state(e);
			if (st & BR_SSL_CLOSED) {
				err = br_ssl_engine_last_error(e);
				if (err != BR_ERR_OK && err != BR_ERR_IO) {
					s->st.tls_handshake_fail++;
					if (c->state == CS_HTTP_HEAD && c->raw.len == 0) {
						char why[64];
						snprintf(why, sizeof why,
						    "TLS error %d", err);
						conn_fail(s, c, why);
					}
				}
				c->dead = 1;
				break;
			}
			if (conn_write(s, c)) {
				/* A write can end the engine (its alert went
				 * out): read on from the state as it is now. */
				progress = 1;
				st = br_ssl_engine_current_state(e);
				if (st & BR_SSL_CLOSED)
					continue;
			}
			if (st & BR_SSL_RECVAPP) {
				buf = br_ssl_engine_recvapp_buf(e, &len);
				used = conn_consume(s, c, buf, len);
				if (used > 0 && !c->dead) {
					br_ssl_engine_recvapp_ack(e, used);
					progress = 1;
				}
			} else if ((st & BR_SSL_RECVREC) &&
			    tls_feed(s, c, &can_read, &budget)) {
				progress = 1;
			}
			if (!c->tls_up && (br_ssl_engine_current_state(e) &
			    BR_SSL_SENDAPP)) {
				c->tls_up = 1;
				cert_release(s, c);
			}
			if (!c->dead && (br_ssl_engine_current_state(e) &
			    BR_SSL_SENDAPP) && (conn_fill(s, c) > 0 ||
			    c->out_unflushed)) {
				br_ssl_engine_flush(e, 0);
				c->out_unflushed = 0;
				progress = 1;
			}
		} else {
			if (c->ilen > 0) {
				used = conn_consume(s, c, c->ibuf, c->ilen);
				if (used > 0 && !c->dead) {
					memmove(c->ibuf, c->ibuf + used, c->ilen - used);
					c->ilen -= used;
					progress = 1;
				}
			}
			if (can_read && budget > 0 && c->ilen < IBUF_BYTES &&
			    !c->in_paused && !c->dead) {
				len = IBUF_BYTES - c->ilen;
				n = read(c->fd, c->ibuf + c->ilen, len);
				if (n > 0) {
					c->last_in_ms = s->now;
					c->ilen += (size_t)n;
					budget--;
					progress = 1;
					if ((size_t)n < len)
						can_read = 0;	/* drained */
				} else if (n == 0 && c->state == CS_HTTP_DRAIN) {
					c->close_after = 1;	/* finish the response */
					can_read = 0;
				} else if (n == 0 || (errno != EAGAIN &&
				    errno != EWOULDBLOCK && errno != EINTR)) {
					c->dead = 1;
				} else {
					can_read = 0;
				}
			}
			if (!c->dead && conn_fill(s, c) > 0)
				progress = 1;
			if (!c->dead && conn_write(s, c))
				progress = 1;
		}
		if (!c->dead && conn_http_drained(s, c))
			progress = 1;
		if (!progress)
			break;
	}
	if (s->rb_owner == c)
		tls_keep_leftover(s, c);
}

/* Poll interest from the state: read while input can be taken, write while
 * output waits for the socket. */
static void
conn_update_interest(struct derp_server *s, struct conn *c)
{
	short ev = 0;
	unsigned st;

	if (c->tls) {
		st = br_ssl_engine_current_state(&c->ssl->eng);
		if ((st & BR_SSL_RECVREC) && !c->in_paused)
			ev |= POLLIN;
		if (st & BR_SSL_SENDREC)
			ev |= POLLOUT;
	} else {
		if (c->ilen < IBUF_BYTES && !c->in_paused)
			ev |= POLLIN;
		if (c->olen > c->oofs)
			ev |= POLLOUT;
	}
	if (!(ev & POLLOUT))
		c->wstall_ms = 0;
	else if (c->wstall_ms == 0)
		c->wstall_ms = s->now;
	if (c->events != ev) {
		c->events = ev;
		poller_set(&s->pl, c->fd, (int32_t)(c - s->conns), c->pidx, ev);
	}
}

/* Give back a packet chain c held (in its IN budget if held). */
static void
conn_packet_free(struct derp_server *s, struct conn *c, int held,
    uint32_t first)
{
	if (held)
		hold_give(s, c, HOLD_IN, chain_count(&s->pool, first));
	pool_give_chain(&s->pool, first);
}

/* The poll back-end moved the entry of tag into poller slot pidx. */
static void
poller_moved(struct derp_server *s, int32_t tag, uint32_t pidx)
{
	if (tag >= 0)
		s->conns[tag].pidx = pidx;
	else if (tag <= TAG_MAIN && tag >= TAG_STUN6)
		s->lpidx[-1 - tag] = pidx;
	else if (tag <= TAG_CHECK0)
		s->admit.checks[TAG_CHECK0 - tag].pidx = pidx;
#ifndef DERP_NO_MESH
	else if (tag <= TAG_MESH0)
		s->links[TAG_MESH0 - tag].pidx = pidx;
#endif
}

static void admit_forget(struct derp_server *s, struct conn *c);
static void admit_log(struct derp_server *s, struct conn *c, int allowed,
    const char *why);

/* Free a slot: unregister, drop what it held, close the socket. */
static void wait_unlink(struct derp_server *, struct conn *);
static void conn_close(struct derp_server *, struct conn *);

/* c's socket closed and its slot free again (CS_FREE, zeroed); whatever
 * else it held, the caller has given back. */
static void
slot_release(struct derp_server *s, struct conn *c)
{
	close(c->fd);
	memset(c, 0, sizeof *c);
	c->fd = -1;
	s->free_slots[s->nfree++] = (int32_t)(c - s->conns);
}

/* An unfinished connection closed to make room (never logged: a flood
 * would make one line per connection). */
static void
pend_evict(struct derp_server *s, struct conn *old)
{
	s->st.handshakes_evicted++;
	old->dead = 1;
	conn_close(s, old);
}

static void
conn_close(struct derp_server *s, struct conn *c)
{
	uint32_t first;
	int32_t moved;
	int k;

	if (c->state == CS_FREE)
		return;
	if (c->state == CS_WAIT) {
		/* Never polled, nothing held: out of line and closed. */
		wait_unlink(s, c);
		s->st.wait_timeouts += !s->stopping && c->deadline_ms != 0 &&
		    s->now >= c->deadline_ms;
		slot_release(s, c);
		return;
	}
	/* A connection that never registered: where it failed (not when the
	 * relay is the one closing it). */
	if (c->state != CS_DERP && !s->stopping) {
		if (c->tls && !c->tls_up)
			s->st.hs_failed[HS_TLS]++;
		else if (c->state == CS_DERP_INFO ||
		    c->state == CS_DERP_VERIFY)
			s->st.hs_failed[HS_DERP]++;
		else if (c->state == CS_HTTP_HEAD && (c->head.len > 0 ||
		    (!c->tls && c->ilen > 0)))
			s->st.hs_failed[HS_HTTP]++;
	}
	if (s->cfg.verbose) {
		char what[96];

		snprintf(what, sizeof what, "closed after %lld ms%s",
		    (long long)(s->now - c->accepted_ms),
		    c->state == CS_DERP_INFO || c->state == CS_DERP_VERIFY ?
		    ", its DERP handshake unfinished" : "");
		conn_verbose(s, c, what);
	}
	if (c->state == CS_DERP_VERIFY)
		admit_forget(s, c);
	if (c->state == CS_DERP) {
		watch_stop(s, c);
		route_unregister(s, c);
		if (c->preferred)
			s->st.current_home--;
		if (c->notideal)
			s->st.current_notideal--;
	}
	pending_remove(s, c);
	snd_recipient_closed(s, c);
	for (k = Q_DISCO; k <= Q_OTHER; k++)
		while ((first = conn_queue_pop(s, c, k)) != NIL)
			pkt_drop(s, first, pkt_len(&s->pool, first),
			    DROP_GONE_DISCONNECTED, k);
	conn_packet_free(s, c, c->out_held, c->out_pkt);
	conn_packet_free(s, c, 1, c->fpkt);
	hold_give(s, c, HOLD_IN, c->fpkt_lent);
	conn_chain_clear(s, c, HOLD_IN, &c->head);
	conn_chain_clear(s, c, HOLD_IN, &c->info);
	conn_chain_clear(s, c, HOLD_CTRL, &c->raw);
	conn_chain_clear(s, c, HOLD_RAWIN, &c->rawin);
	cert_release(s, c);
	moved = poller_del(&s->pl, c->fd, c->pidx);
	poller_moved(s, moved, c->pidx);
	slot_release(s, c);
}

/* Service one connection after readiness, then close it if it failed. */
static void
conn_service(struct derp_server *s, struct conn *c, short revents)
{
	/* A hang-up or error while we are not reading (paused, or a response
	 * waiting) would be reported again every round: the peer is gone. */
	if ((revents & (POLLHUP | POLLERR)) && !(c->events & POLLIN))
		c->dead = 1;
	conn_pump(s, c, (revents & (POLLIN | POLLHUP | POLLERR)) != 0);
	if (c->dead)
		conn_close(s, c);
	else
		conn_update_interest(s, c);
}

/* How many connections of set ps come from addr's source. */
static uint32_t
source_count(const struct derp_server *s, const struct pend_set *ps,
    const uint8_t addr[16])
{
	uint32_t e = source_find(s, ps, addr);

	return e != NIL ? ps->src[e].count : 0;
}

/*
 * Every slot is taken: a source holding at least two registered slots more
 * than the newcomer's gives up its newest (the slots' fair share: one source
 * cannot fill the relay and keep everyone else out, while a relay full of
 * distinct clients closes nobody).  1 if a slot was freed.
 */
static int
slots_fair_share(struct derp_server *s, const uint8_t addr[16])
{
	struct pend_set *ps = &s->pend[SET_REG];
	struct conn *victim;

	if (ps->top < source_count(s, ps, addr) + 2)
		return 0;
	victim = &s->conns[ps->src[ps->bucket[ps->top].head].tail];
	s->st.slots_reclaimed++;
	conn_fail(s, victim, "relay full: its address holds the most slots");
	conn_close(s, victim);
	return 1;
}

/* The oldest unfinished connection of source e (with bucket, of e's
 * bucket from e on) whose admission check is not in flight: a check under
 * way is not thrown away for a newcomer.  At most VERIFY_CHECKS are in
 * flight, so the walk is short.  NULL if every one is. */
static struct conn *
pend_victim(struct derp_server *s, const struct pend_set *ps, uint32_t e,
    int bucket)
{
	int32_t i;

	for (; e != NIL; e = bucket ? ps->src[e].bnext : NIL)
		for (i = ps->src[e].head; i >= 0; i = s->conns[i].pend.next)
			if (s->conns[i].state != CS_DERP_VERIFY ||
			    s->conns[i].adm.check == 0)
				return &s->conns[i];
	return NULL;
}

/*
 * -max-handshakes.  A connection that has not yet sent its ClientInfo holds a
 * slot and costs crypto; a flood of them, or a few that never finish (slow
 * loris), must not crowd out the clients that do.  Room is made in set `set`
 * for a newcomer from ip when the set is at its cap or every slot is taken:
 * a newcomer whose source holds fewer unfinished connections than the largest
 * source evicts that source's oldest (so a flood from one source, or a few,
 * only competes with itself, and a client from anywhere else gets in);
 * otherwise its own source's oldest gives way if it has had
 * HANDSHAKE_GRACE_MS, else the newcomer is refused (pend_victim skips a
 * connection whose admission check runs).  With every slot taken by
 * registered clients, a source hogging them gives one up (slots_fair_share).
 * On the main listener with a slot free, a newcomer evicts only from a
 * source holding HOG_MARGIN more than its own; else it waits its turn (see
 * WAIT_MAX_MS), as it does behind anyone already waiting, and the grace
 * rule is applied for the head of the line (wait_start).
 * 1: go on (slots full of registered clients: -max-clients refuses), 0:
 * refuse, 2: wait.
 */
static int
pending_make_room(struct derp_server *s, int set, const uint8_t ip[16])
{
	struct pend_set *ps = &s->pend[set];
	int slot_free = s->nfree > 0 || s->fresh < s->max;
	int can_wait = set == PEND_MAIN && slot_free && !s->stopping;
	uint8_t addr[16];
	uint32_t mine = NIL, count;
	struct conn *old;

	if (ps->n < ps->cap && slot_free)
		return s->wait.n > 0 && can_wait ? 2 : 1;
	source_addr(ip, addr);
	if (can_wait && ps->n > 0) {
		mine = source_find(s, ps, addr);
		count = mine == NIL ? 0 : ps->src[mine].count;
		if (count + HOG_MARGIN > ps->top)
			return 2;	/* no hog: in line (wait_start) */
		if ((old = pend_victim(s, ps, ps->bucket[ps->top].head, 1)) ==
		    NULL)
			return 2;
		pend_evict(s, old);
		return 1;
	}
	if (ps->n == 0) {
		/* Slots full, none of them unfinished in this set: the other
		 * set's largest source gives way; with none unfinished at all,
		 * a source hogging the slots, or -max-clients refuses. */
		ps = &s->pend[set == PEND_MAIN ? PEND_PORT80 : PEND_MAIN];
		if (ps->n == 0) {
			(void)slots_fair_share(s, addr);
			return 1;
		}
	} else {
		mine = source_find(s, ps, addr);
	}
	if (mine == NIL || ps->src[mine].count < ps->top) {
		old = pend_victim(s, ps, ps->bucket[ps->top].head, 1);
	} else {
		old = pend_victim(s, ps, mine, 0);
		if (old != NULL && s->now - old->accepted_ms <
		    HANDSHAKE_GRACE_MS)
			return 0;
	}
	if (old == NULL)
		return 0;
	pend_evict(s, old);
	return 1;
}

/*
 * -accept-connection-limit/-burst: a token bucket over accepted connections on
 * the TLS listener, full at start (derper uses golang.org/x/time/rate the same
 * way).  +Inf, the default, never limits.
 */
static int
accept_allow(struct derp_server *s)
{
	double limit = s->cfg.accept_limit_per_sec, burst = (double)s->cfg.accept_burst;

	if (isinf(limit) && limit > 0)
		return 1;
	s->accept_tokens += (double)(s->now - s->accept_last_ms) * limit / 1000.0;
	s->accept_last_ms = s->now;
	if (s->accept_tokens > burst)
		s->accept_tokens = burst;
	if (s->accept_tokens < 1.0)
		return 0;
	s->accept_tokens -= 1.0;
	return 1;
}

static void conn_start(struct derp_server *, struct conn *);
static void wait_push(struct derp_server *, struct conn *);

static void
conn_accept(struct derp_server *s, int lfd, int port80)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	struct conn *c;
	int fd, n, r;
	uint32_t idx;
	uint8_t ip[16];
	uint16_t port;

	for (n = 0; n < ACCEPTS_PER_ROUND; n++) {
		sl = sizeof ss;
		fd = accept(lfd, (struct sockaddr *)&ss, &sl);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR && errno != ECONNABORTED)
				logf("accept: %s", strerror(errno));
			return;
		}
		if (s->tls_mode && !port80 && !accept_allow(s)) {
			/* derper's accept limiter: accepted, then closed. */
			s->st.accept_limited++;
			s->st.tls_rejected += s->tls_mode && !port80;
			close(fd);
			continue;
		}
		sockaddr_to_ip16(&ss, ip, &port);
		r = pending_make_room(s, port80 ? PEND_PORT80 : PEND_MAIN, ip);
		if (r == 0) {
			s->st.handshakes_refused++;
			s->st.tls_rejected += s->tls_mode && !port80;
			close(fd);
			continue;
		}
		if ((s->nfree == 0 && s->fresh == s->max) ||
		    sock_nonblock_accepted(fd) != 0) {
			/* Over -max-clients: accept and close at once, which a
			 * client sees as a reset, as derper's accept limiter. */
			s->st.refused++;
			s->st.tls_rejected += s->tls_mode && !port80;
			close(fd);
			continue;
		}
		if (s->accept_tuned[port80] == 0)
			s->accept_tuned[port80] = sock_tuned(fd, &s->cfg) ? 1 : -1;
		if (s->accept_tuned[port80] < 0)
			sock_tune(fd, &s->cfg);
		idx = s->nfree > 0 ? (uint32_t)s->free_slots[--s->nfree] :
		    s->fresh++;
		if (s->fresh - s->nfree > s->slots_high)
			s->slots_high = s->fresh - s->nfree;
		c = &s->conns[idx];
		c->fd = fd;
		c->port80 = (uint8_t)port80;
		c->key_next = -1;
		c->qheap_pos = -1;
		c->accepted_ms = s->now;
		memcpy(c->peer_ip, ip, 16);
		c->peer_port = port;
		if (r == 2)
			wait_push(s, c);
		else
			conn_start(s, c);
	}
}

/*
 * An accepted connection begins: it joins its unfinished set, gets its
 * buffers and TLS context (slot idx's, fixed) and is polled for input.  On a
 * failure its slot is free again.
 */
static void
conn_start(struct derp_server *s, struct conn *c)
{
	uint32_t idx = (uint32_t)(c - s->conns);
	int r, port80 = c->port80;

	c->state = CS_HTTP_HEAD;
	c->last_in_ms = s->now;
	pending_append(s, c, port80 ? PEND_PORT80 : PEND_MAIN);
	c->deadline_ms = s->now + HTTP_READ_TIMEOUT_MS;
	c->ibuf = s->bufs + (size_t)idx * (IBUF_BYTES + OBUF_BYTES);
	c->obuf = c->ibuf + IBUF_BYTES;
	if (s->tls_mode && !port80 && (r = tls_conn_init(s, c, idx)) != 0) {
		/* Without a certificate (ACME still ordering) the handshake
		 * could only fail: close at once. */
		if (r == -1)
			logf("TLS setup failed: %d",
			    br_ssl_engine_last_error(&s->ssl[idx].eng));
		else
			s->st.tls_no_cert++;
		s->st.tls_rejected++;
		pending_remove(s, c);
		slot_release(s, c);
		return;
	}
	c->events = POLLIN;
	s->st.tls_accepted += s->tls_mode && !port80;
	conn_verbose(s, c, "accepted");
	if (poller_add(&s->pl, c->fd, (int32_t)idx, POLLIN, &c->pidx) != 0) {
		logf("poller: %s", strerror(errno));
		pending_remove(s, c);
		cert_release(s, c);
		slot_release(s, c);
	}
}

/* c, accepted, waits for room among the unfinished (see WAIT_MAX_MS). */
static void
wait_push(struct derp_server *s, struct conn *c)
{
	int32_t idx = (int32_t)(c - s->conns);

	c->state = CS_WAIT;
	c->deadline_ms = s->now + WAIT_MAX_MS;
	c->pend.src = NIL;
	c->pend.next = -1;
	c->pend.prev = s->wait.tail;
	if (s->wait.tail >= 0)
		s->conns[s->wait.tail].pend.next = idx;
	else
		s->wait.head = idx;
	s->wait.tail = idx;
	if (++s->wait.n > s->wait.high)
		s->wait.high = s->wait.n;
	s->st.handshakes_waited++;
}

static void
wait_unlink(struct derp_server *s, struct conn *c)
{
	if (c->pend.prev >= 0)
		s->conns[c->pend.prev].pend.next = c->pend.next;
	else
		s->wait.head = c->pend.next;
	if (c->pend.next >= 0)
		s->conns[c->pend.next].pend.prev = c->pend.prev;
	else
		s->wait.tail = c->pend.prev;
	c->pend.prev = c->pend.next = -1;
	s->wait.n--;
}

/* 1 if the peer sent bytes nobody has read yet; 0 if not, at its EOF, or
 * on any error (the socket is non-blocking: a peek never waits). */
static int
sock_unread(int fd)
{
	uint8_t b;

	return recv(fd, &b, 1, MSG_PEEK) > 0;
}

/*
 * An unfinished connection on the main listener that may give way to the
 * head of the line: the largest source's oldest past its grace, else the
 * first found stalled on its peer (STALL_MS); NULL if none.  The scan runs
 * only with a line and a full cap, for each start or every STALL_SCAN_MS
 * while it finds none.
 */
static struct conn *
wait_victim(struct derp_server *s)
{
	struct pend_set *ps = &s->pend[PEND_MAIN];
	struct conn *c;
	uint32_t e;
	int32_t k;

	c = pend_victim(s, ps, ps->bucket[ps->top].head, 1);
	if (c != NULL && s->now - c->accepted_ms >= HANDSHAKE_GRACE_MS)
		return c;
	/* A crowd's holders all move: a scan that found none is not
	 * repeated every round (STALL_MS is coarse anyway). */
	if (s->now < s->wait.next_scan_ms)
		return NULL;
	/* The holders are the set's members: its sources (src[1..cap], a
	 * free entry counts 0), each with its connections. */
	for (e = 1; e <= ps->cap; e++)
		for (k = ps->src[e].count > 0 ? ps->src[e].head : -1; k >= 0;
		    k = c->pend.next) {
			c = &s->conns[k];
			/* Waiting on the peer: not on an admission verdict,
			 * with no input of its own unprocessed and no record
			 * of ours unsent. */
			if (c->state == CS_DERP_VERIFY ||
			    s->now - c->last_in_ms < STALL_MS || c->ilen > 0 ||
			    (s->rb_owner == c && s->rb_off < s->rb_len) ||
			    (c->tls && (br_ssl_engine_current_state(
			    &c->ssl->eng) & BR_SSL_SENDREC)) ||
			    sock_unread(c->fd))
				continue;
			return c;
		}
	s->wait.next_scan_ms = s->now + STALL_SCAN_MS;
	return NULL;
}

/*
 * Once per round: the oldest waiting begin while the cap has room, or while
 * a holder gives way (wait_victim).  A waiter that has sent nothing in
 * WAIT_IDLE_MS is closed at the head instead.  The grace of those started
 * counts from here.
 */
static void
wait_start(struct derp_server *s)
{
	struct pend_set *ps = &s->pend[PEND_MAIN];
	struct conn *c, *old;

	while (s->wait.n > 0 && !s->stopping) {
		c = &s->conns[s->wait.head];
		if (s->now - c->accepted_ms >= WAIT_IDLE_MS && !c->wait_spoke &&
		    !(c->wait_spoke = (uint8_t)sock_unread(c->fd))) {
			s->st.wait_idle++;
			conn_close(s, c);
			continue;
		}
		if (ps->n >= ps->cap) {
			if ((old = wait_victim(s)) == NULL)
				return;
			pend_evict(s, old);
		}
		wait_unlink(s, c);
		c->accepted_ms = s->now;
		conn_start(s, c);
	}
}

/* Fill and flush every connection that got something to send this round. */
static void
output_flush_dirty(struct derp_server *s)
{
	uint32_t n;
	struct conn *c;

	/* Serving one slot can mark others (a close sends PeerGone, buffered
	 * input routes packets); the bound keeps a round finite regardless. */
	for (n = 4 * s->max; n > 0 && s->dirty.count > 0; n--) {
		c = &s->conns[ring_pop(&s->dirty)];
		/* A slot closed and taken by a waiter since it was marked:
		 * nothing of the waiter's is to be written or polled. */
		if (c->state == CS_FREE || c->state == CS_WAIT)
			continue;
		conn_pump(s, c, 0);
		if (c->dead)
			conn_close(s, c);
		else
			conn_update_interest(s, c);
	}
}

static void
derp_resume_frame(struct derp_server *s, struct conn *c)
{
	if ((c->state == CS_DERP || c->state == CS_DERP_INFO) &&
	    c->fhdr_len == FRAME_HEADER_BYTES && c->fgot == c->flen) {
		frame_end(s, c);
		if (c->fhdr_len != 0 && !c->dead && !c->in_paused)
			mark_paused(s, c);
	}
}

/* Give paused connections another go once chunks are free again. */
static void
input_resume_paused(struct derp_server *s)
{
	uint32_t i, n = s->paused.count, idx;
	int32_t head = spare_queue_head(s);
	struct conn *c;

	/* The first in line for the spare had its turn and did not ask again
	 * (its packet was written or dropped meanwhile): it leaves the line,
	 * so it cannot hold up those behind it. */
	if (head >= 0 && !s->conns[head].spare_asked)
		s->conns[head].spare_wait = 0;
	for (i = 0; i < n; i++) {
		idx = ring_pop(&s->paused);
		c = &s->conns[idx];
		if (c->state == CS_FREE || (!c->in_paused && !c->out_wait))
			continue;
		/* Input waits for its rate or for the spare (P3), output for
		 * the spare (out_start_packet). */
		if ((c->in_paused && c->rate_until_ms > s->now) ||
		    (c->spare_wait && (spare_queue_head(s) != (int32_t)idx ||
		    s->spare_used >= s->spare_cap))) {
			ring_push(&s->paused, idx);	/* keep waiting */
			continue;
		}
		c->spare_asked = 0;	/* its turn: it asks again, or leaves */
		if (c->out_wait) {
			c->out_wait = 0;
			mark_dirty(s, c);
		}
		if (!c->in_paused)
			continue;
		c->in_paused = 0;
		c->rate_until_ms = 0;
		/* A frame that was complete when it paused (an empty packet
		 * without chunks, a 0-byte frame over the rate) has no bytes
		 * left to drive it: finish it here. */
		derp_resume_frame(s, c);
		conn_service(s, c, POLLIN);
	}
}

/* ===================================================================== STUN */

static void
stun_service(struct derp_server *s, int fd)
{
	uint8_t buf[STUN_RECV_BYTES], reply[STUN_REPLY_MAX], ip[16];
	struct sockaddr_storage ss;
	socklen_t sl;
	ssize_t n;
	size_t rlen;
	uint16_t port;
	int i;

	for (i = 0; i < STUN_DATAGRAMS_PER_ROUND; i++) {
		sl = sizeof ss;
		n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&ss, &sl);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR)
				s->st.stun_read_error++;
			return;
		}
		sockaddr_to_ip16(&ss, ip, &port);
		rlen = stun_answer(reply, buf, (size_t)n, ip, 16, port);
		if (rlen == 0) {
			s->st.stun_not_stun++;
			continue;
		}
		if (ip16_is_v4(ip))
			s->st.stun_ipv4++;
		else
			s->st.stun_ipv6++;
		if (sendto(fd, reply, rlen, 0, (struct sockaddr *)&ss, sl) < 0)
			s->st.stun_write_error++;
		else
			s->st.stun_success++;
	}
}

/* ==================================================================== TIMERS */

/*
 * Once per tick: deadlines, write stalls, KeepAlives.  A sweep over all slots
 * costs far less per second than the traffic it supervises, and it keeps every
 * timer in one place instead of a timer heap.
 */
/* derper's write deadline: -tcp-write-timeout, a mesh peer's 30 s. */
static int64_t
write_timeout_ms(const struct derp_server *s, const struct conn *c)
{
	return c->mesh ? MESH_WRITE_TIMEOUT_MS : s->cfg.tcp_write_timeout_ms;
}

static void
timers_sweep(struct derp_server *s)
{
	uint32_t i;
	struct conn *c;

	log_tick(s);
	for (i = 0; i < s->fresh; i++) {
		c = &s->conns[i];
		if (c->state == CS_FREE)
			continue;
		if (c->deadline_ms != 0 && s->now >= c->deadline_ms) {
			if (c->state == CS_DERP_VERIFY) {
				admit_log(s, c, 0, "no verdict in time");
				c->dead = 1;
			}
			conn_fail(s, c, c->state == CS_DERP_INFO ?
			    "timeout waiting for ClientInfo" : NULL);
		} else if (c->spare_since != 0 &&
		    s->now - c->spare_since >= SPARE_HOLD_MS) {
			/* P5: what it borrowed goes back to everyone. */
			s->st.spare_timeouts++;
			conn_fail(s, c, "held shared buffer memory too long");
		} else if (c->state == CS_DERP && c->wstall_ms != 0 &&
		    write_timeout_ms(s, c) > 0 &&
		    s->now - c->wstall_ms >= write_timeout_ms(s, c)) {
			/* derper's per-frame write deadline; before the
			 * handshake the 30 s HTTP deadline covers writes. */
			s->st.write_timeouts++;
			conn_fail(s, c, "write timeout");
		} else if (c->state == CS_DERP && s->now >= c->next_keepalive_ms) {
			c->keepalive_pending = 1;
			c->next_keepalive_ms += s->cfg.keepalive_ms;
			mark_dirty(s, c);
		}
		if (c->dead)
			conn_close(s, c);
	}
}

/* =============================================================== KEYS/CERTS */

/* mkdir -p for the directories above path's last component. */
static int
mkdir_parents(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	size_t i, n = strlen(path);

	if (n >= sizeof tmp)
		return -1;
	memcpy(tmp, path, n + 1);
	for (i = 1; i < n; i++) {
		if (tmp[i] != '/')
			continue;
		tmp[i] = '\0';
		if (mkdir(tmp, mode) != 0 && errno != EEXIST)
			return -1;
		tmp[i] = '/';
	}
	return 0;
}

/* Write a whole file atomically (temporary file, fsync, rename), mode 0600. */
static int
write_file_atomic(const char *path, const void *data, size_t len)
{
	char tmp[PATH_MAX];
	const uint8_t *p = data;
	ssize_t n;
	int fd;

	if (snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid()) >=
	    (int)sizeof tmp)
		return -1;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_EXCL, 0600);
	if (fd < 0)
		return -1;
	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto fail;
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) != 0 || close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	if (rename(tmp, path) != 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return -1;
}

/*
 * The -c key file (derper-compat.md section 8): JSON with a "privkey:" key;
 * created with a fresh key when missing, in derper's exact bytes.
 */
static int
keyfile_load_or_create(struct rng *rng, const char *path,
    uint8_t priv[KEY_BYTES], char *err, size_t errlen)
{
	char buf[65536];
	const char *why;
	size_t len = 0;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY);
	if (fd < 0 && errno == ENOENT) {
		rng_bytes(rng, priv, KEY_BYTES);
		priv[0] &= 248;
		priv[31] = (uint8_t)((priv[31] & 127) | 64);
		len = keyfile_format(buf, sizeof buf, priv);
		if (mkdir_parents(path, 0777) != 0 ||
		    write_file_atomic(path, buf, len) != 0) {
			snprintf(err, errlen, "derper: config: write %s: %s", path,
			    strerror(errno));
			return -1;
		}
		return 0;
	}
	if (fd < 0) {
		snprintf(err, errlen, "derper: config: open %s: %s", path,
		    strerror(errno));
		return -1;
	}
	while (len < sizeof buf && (n = read(fd, buf + len, sizeof buf - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "derper: config: read %s: %s", path,
			    strerror(errno));
			close(fd);
			return -1;
		}
		len += (size_t)n;
	}
	close(fd);
	if (len == sizeof buf) {
		snprintf(err, errlen, "derper: config: %s is too large", path);
		return -1;
	}
	if (keyfile_parse(buf, len, priv, &why) != 0) {
		snprintf(err, errlen, "derper: config: %s: %s", path, why);
		return -1;
	}
	return 0;
}

/* Read -rate-config.  0, or -1 with err set (the old limits stay). */
static int
rate_load(struct derp_server *s, char *err, size_t errlen)
{
	char buf[4096];
	struct ratecfg r;
	ssize_t n;
	size_t len = 0;
	int fd;

	fd = open(s->cfg.rate_config, O_RDONLY);
	if (fd < 0) {
		snprintf(err, errlen, "rate config: open %s: %s", s->cfg.rate_config,
		    strerror(errno));
		return -1;
	}
	while (len < sizeof buf && (n = read(fd, buf + len, sizeof buf - len)) > 0)
		len += (size_t)n;
	close(fd);
	if (len == sizeof buf || ratecfg_parse(buf, len, &r) != 0) {
		snprintf(err, errlen, "rate config: %s: invalid JSON",
		    s->cfg.rate_config);
		return -1;
	}
	s->rate = r;
	logf("per-client rate limit: %llu bytes/s, burst %.0f bytes%s",
	    (unsigned long long)r.rate, rate_burst(s), r.rate ? "" : " (off)");
	return 0;
}

static int
is_ip_literal(const char *h)
{
	uint8_t tmp[16];

	return inet_pton(AF_INET, h, tmp) == 1 || inet_pton(AF_INET6, h, tmp) == 1;
}

static int
file_exists(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0;
}

/*
 * Certificates by -certmode (derper-compat.md section 7), and their
 * replacement without a restart.
 *
 *   manual       <certdir>/<name>.crt and .key; for an IP -hostname a
 *                self-signed pair is made here on first start.
 *   letsencrypt  golang autocert's cache: <certdir>/<hostname>, the key then
 *   gcp          the chain in one PEM file, account key acme_account+key; for
 *                an IP -hostname (-acme-ip-certs) <certdir>/<ip>.crt and .key,
 *                account key acme-account.key, as derper's ipcert.go.  A valid
 *                stored certificate is served at once; ACME (a child process,
 *                below) orders one when there is none or it is due.
 *
 * Two banks: new handshakes take the current one (tls_conn_init); a reload
 * loads the files into the other and makes it current, so established
 * connections never notice.  BearSSL reads the chain and key only during a
 * handshake (renegotiation is off), so the other bank may be overwritten once
 * no handshake holds it (bank.users, cert_release); a reload that finds it held
 * waits for a later tick, which the handshake deadline bounds.
 *
 * A reload follows SIGHUP (forced), a change of the files' stamps seen by the
 * once-a-minute check, or an ACME child's success (forced).  A new pair that
 * does not load, does not match -hostname or has expired is logged and the old
 * one kept; its stamps are remembered, so it is tried again only when the
 * files change again (or on SIGHUP).
 */
#define CERT_CHECK_MS 60000	/* the files' stamps, about once a minute */
#define CERT_SKEW_S 3600	/* a leaf valid from at most this far ahead */

/* The name of the manual-mode files: -hostname with every character other
 * than A-Z a-z 0-9 - . removed (derper's rule). */
static void
cert_file_name(const char *host, char *name, size_t cap)
{
	size_t i, n = 0;

	for (i = 0; host[i] != '\0' && n < cap - 1; i++) {
		char ch = host[i];

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.')
			name[n++] = ch;
	}
	name[n] = '\0';
}

static void
file_stamp_get(const char *path, struct file_stamp *st)
{
	struct stat sb;

	memset(st, 0, sizeof *st);
	if (path[0] == '\0')
		return;
	if (stat(path, &sb) != 0) {
		st->err = errno;
		return;
	}
	st->dev = sb.st_dev;
	st->ino = sb.st_ino;
	st->size = sb.st_size;
	st->mtime = sb.st_mtim.tv_sec;
	st->mtime_ns = sb.st_mtim.tv_nsec;
}

static int
file_stamp_eq(const struct file_stamp *a, const struct file_stamp *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	    a->mtime == b->mtime && a->mtime_ns == b->mtime_ns &&
	    a->err == b->err;
}

static void
bank_clear(struct cert_bank *b)
{
	if (b->loaded)
		cert_free(&b->cs);
	b->loaded = 0;
	b->not_before = b->not_after = 0;
}

/* "2026-12-02 14:00:00 UTC" */
static void
utc_text(int64_t t, char *buf, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm;
	size_t n;

	if (gmtime_r(&tt, &tm) == NULL) {
		snprintf(buf, cap, "%lld", (long long)t);
		return;
	}
	tm_text(buf, cap, &tm, '-');
	n = strlen(buf);
	if (n + 4 < cap)
		memcpy(buf + n, " UTC", 5);
}

/*
 * Load id's files into bank b and check them: the key matches the leaf
 * (cert.c), the leaf is valid for id's name and, when fresh is set (every
 * reload), has
 * not expired.  derper starts with an expired manual certificate, so start-up
 * only warns.  0, or -1 with err (b left empty).
 */
static int
bank_load(const struct cert_ident *id, struct cert_bank *b, int fresh,
    char *err, size_t errlen)
{
	char cerr[256], when[40];
	int r;

	bank_clear(b);
	if (id->key_path[0] != '\0')
		r = cert_load_files(&b->cs, id->crt_path, id->key_path, cerr,
		    sizeof cerr);
	else
		r = cert_load_combined(&b->cs, id->crt_path, cerr, sizeof cerr);
	if (r != 0) {
		snprintf(err, errlen, "%s", cerr);
		return -1;
	}
	b->loaded = 1;
	if (!cert_matches_host(&b->cs, id->name)) {
		snprintf(err, errlen, "certificate %.400s is not valid for "
		    "hostname %.100s", id->crt_path, id->name);
		bank_clear(b);
		return -1;
	}
	if (cert_leaf_validity(&b->cs, &b->not_before, &b->not_after) != 0) {
		snprintf(err, errlen, "certificate %.400s: unreadable validity",
		    id->crt_path);
		bank_clear(b);
		return -1;
	}
	if (fresh && b->not_before > (int64_t)time(NULL) + CERT_SKEW_S) {
		utc_text(b->not_before, when, sizeof when);
		snprintf(err, errlen, "certificate %.400s is not valid before %s",
		    id->crt_path, when);
		bank_clear(b);
		return -1;
	}
	if (b->not_after <= (int64_t)time(NULL)) {
		utc_text(b->not_after, when, sizeof when);
		if (fresh) {
			snprintf(err, errlen, "certificate %.400s expired at %s",
			    id->crt_path, when);
			bank_clear(b);
			return -1;
		}
		logf("warning: certificate %s expired at %s", id->crt_path, when);
	}
	return 0;
}

/* The pin line derper logs for a self-signed IP certificate. */
static void
cert_log_pin(struct derp_server *s)
{
	char hex[65];

	hex_encode(hex, s->ident[0].bank[s->ident[0].cur].cs.leaf_sha256, 32);
	logf("Using self-signed certificate for IP address %s. Configure it in "
	    "DERPMap using: (https://tailscale.com/s/custom-derp)",
	    s->cfg.hostname);
	logf("  {\"Name\":\"custom\",\"RegionID\":900,\"HostName\":\"%s\","
	    "\"CertName\":\"sha256-raw:%s\"}", s->cfg.hostname, hex);
}

static void acme_schedule(struct derp_server *s, struct cert_ident *id);
static void acme_sched_init(struct acme_sched *a, int ip);

/*
 * Reload id's files when forced or when their stamps changed.  1 when a new
 * certificate went into service, 0 when nothing changed or the reload waits
 * for the other bank, -1 when the new files were refused (logged).
 */
static int
certs_reload(struct derp_server *s, struct cert_ident *id, int force)
{
	struct cert_bank *b = &id->bank[!id->cur];
	struct file_stamp crt, key;
	char err[600], when[40];

	file_stamp_get(id->crt_path, &crt);
	file_stamp_get(id->key_path, &key);
	if (!force && id->wait == 0 && file_stamp_eq(&crt, &id->crt_stamp) &&
	    file_stamp_eq(&key, &id->key_stamp))
		return 0;
	if (b->users > 0) {
		if (id->wait < 1 + (force != 0))
			id->wait = (uint8_t)(1 + (force != 0));
		return 0;
	}
	id->wait = 0;
	id->crt_stamp = crt;
	id->key_stamp = key;
	if (bank_load(id, b, 1, err, sizeof err) != 0) {
		logf("cert: %s; the certificate in service stays", err);
		return -1;
	}
	id->cur = (uint8_t)!id->cur;
	utc_text(b->not_after, when, sizeof when);
	logf("cert: serving %s, valid until %s", id->crt_path, when);
	if (id == &s->ident[0] && !s->sni_strict &&
	    strcmp(s->cfg.certmode, "manual") == 0)
		cert_log_pin(s);
	if (s->acme.on)
		acme_schedule(s, id);
	return 1;
}

/* Every identity: SIGHUP (forced) and the once-a-minute check. */
static void
certs_reload_all(struct derp_server *s, int force)
{
	uint8_t k;

	for (k = 0; k < s->nident; k++)
		certs_reload(s, &s->ident[k], force || s->ident[k].wait == 2);
}

/* An IP identity's files, as derper's ipcert.go names them:
 * <certdir>/<ip>.crt and .key, ':' of IPv6 becoming '.'.  0, or -1 when
 * they do not fit. */
static int
cert_ident_ip_paths(const struct derp_config *cfg, struct cert_ident *id)
{
	char name[sizeof id->name];
	size_t i;

	snprintf(name, sizeof name, "%s", id->name);
	for (i = 0; name[i] != '\0'; i++)
		if (name[i] == ':')
			name[i] = '.';
	if ((size_t)snprintf(id->crt_path, sizeof id->crt_path, "%s/%s.crt",
	    cfg->certdir, name) >= sizeof id->crt_path ||
	    (size_t)snprintf(id->key_path, sizeof id->key_path, "%s/%s.key",
	    cfg->certdir, name) >= sizeof id->key_path)
		return -1;
	return 0;
}

/*
 * The identity of the local address that c reached, for a ClientHello with no
 * SNI or with an IP SNI, which must equal that address (derper-compat.md
 * 7.4): found, or made while there are free identities, from the address's
 * stored files when they hold a valid certificate for it.  ACME orders one
 * when there is none (acme_schedule); until it arrives those handshakes fail,
 * as derper's do while its order runs, and the client tries again.  NULL
 * when none applies.  A client picks the address among the host's own only,
 * so CERT_IP_IDENTS bounds what strangers can make the relay order.
 */
static struct cert_ident *
cert_ident_local(struct derp_server *s, struct conn *c, const char *sni)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	uint8_t local[16], want[16];
	char text[INET6_ADDRSTRLEN], err[600];
	struct cert_ident *id;
	uint16_t port;
	int v4;
	uint8_t k;

	memset(&ss, 0, sizeof ss);
	if (getsockname(c->fd, (struct sockaddr *)(void *)&ss, &sl) != 0)
		return NULL;
	sockaddr_to_ip16(&ss, local, &port);
	v4 = ip16_is_v4(local);
	if (inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? local + 12 : local, text,
	    sizeof text) == NULL)
		return NULL;
	if (sni[0] != '\0' && (inet_pton(v4 ? AF_INET : AF_INET6, sni,
	    want) != 1 || memcmp(v4 ? local + 12 : local, want, v4 ? 4 : 16) !=
	    0))
		return NULL;
	for (k = 1; k < s->nident; k++)
		if (strcmp(s->ident[k].name, text) == 0)
			return &s->ident[k];
	if (s->nident == CERT_IDENTS) {
		/* Once: the first CERT_IP_IDENTS addresses keep their places
		 * until a restart (README, "IP certificates beside a name"). */
		char list[CERT_IP_IDENTS * (INET6_ADDRSTRLEN + 1)];
		struct sbuf sb = { list, 0, sizeof list, 0 };

		if (!s->ip_idents_full_logged) {
			s->ip_idents_full_logged = 1;
			list[0] = '\0';
			for (k = 1; k < s->nident; k++) {
				sb_add(&sb, s->ident[k].name);
				sb_add(&sb, k + 1 < s->nident ? " " : "");
			}
			logf("cert: no certificate for local address %s: "
			    "-acme-ip-certs serves %d addresses already (%s); "
			    "clients without SNI reaching it fail", text,
			    CERT_IP_IDENTS, list);
		}
		return NULL;
	}
	id = &s->ident[s->nident];
	memset(id, 0, sizeof *id);
	snprintf(id->name, sizeof id->name, "%s", text);
	id->ip = 1;
	if (cert_ident_ip_paths(&s->cfg, id) != 0)
		return NULL;
	s->nident++;
	acme_sched_init(&id->acme, 1);
	file_stamp_get(id->crt_path, &id->crt_stamp);
	file_stamp_get(id->key_path, &id->key_stamp);
	if (bank_load(id, &id->bank[0], 1, err, sizeof err) == 0)
		logf("cert: serving the stored %s to connections to %s",
		    id->crt_path, text);
	else
		logf("cert: no certificate for local address %s yet (%s)",
		    text, err);
	if (s->acme.on)
		acme_schedule(s, id);
	return id;
}

/* Every socket of the server: at its end, and in a forked ACME child. */
static void
server_close_sockets(struct derp_server *s)
{
	uint32_t i;

	for (i = 0; s->conns != NULL && i < s->fresh; i++)
		if (s->conns[i].state != CS_FREE)
			close(s->conns[i].fd);
	if (s->main_fd >= 0)
		close(s->main_fd);
	if (s->http_fd >= 0)
		close(s->http_fd);
	if (s->stun_fd[0] >= 0)
		close(s->stun_fd[0]);
}

/*
 * The start of a child process the loop forks (ACME, bootstrap DNS): default
 * signals but SIGHUP ignored (a renewal hook's SIGHUP is the relay's), none
 * of the relay's sockets nor any other descriptor but keep_fd (what an
 * embedding program left open too, up to a sane bound), and on Linux gone
 * with the relay and called name in ps, so pkill -x derp does not reach it.
 * 0, or -1 when the relay that forked it (parent) is gone already.
 */
#define CHILD_CLOSE_MAX 65536	/* a child closes descriptors below this */

#if !defined(DERP_NO_ACME) || !defined(DERP_NO_BOOTDNS)
static int
child_start(struct derp_server *s, const char *name, int keep_fd,
    pid_t parent)
{
	struct sigaction sa;
	long fd, maxfd;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGHUP, &sa, NULL);
	server_close_sockets(s);
	poller_close_fd(&s->pl);
	for (fd = 3, maxfd = sysconf(_SC_OPEN_MAX); fd < maxfd &&
	    fd < CHILD_CLOSE_MAX; fd++)
		if (fd != keep_fd)
			close(fd);
#ifdef __linux__
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	prctl(PR_SET_NAME, name);
#else
	(void)name;
#endif
	return getppid() == parent ? 0 : -1;
}
#endif

/* ---- ACME: the child process ---- */

#ifndef DERP_NO_ACME
#define ACME_LE_DIRECTORY "https://acme-v02.api.letsencrypt.org/directory"
#define ACME_GCP_DIRECTORY "https://dv.acme-v02.api.pki.goog/directory"
#define ACME_CA_FILE_DEFAULT "/etc/ssl/certs/ca-certificates.crt"
#define ACME_RETRY_MIN_MS 60000		/* first retry after a failure ... */
#define ACME_RETRY_MAX_MS 3600000	/* ... doubling to an hour (names) */
#define ACME_RETRY_MAX_IP_MS 1800000	/* ... or 30 min (IPs, as derper) */
#define ACME_CHILD_MAX_MS 900000	/* a child running longer is killed */
#define ACME_RECHECK_MS 86400000	/* renewal time re-derived daily */
#define ACME_RENEW_BEFORE_S (30 * 86400)	/* autocert's RenewBefore */
#define ACME_MIN_GAP_MS 3600000		/* between two successful orders */
#define ACME_ACCOUNT_NAME "acme_account+key"	/* autocert's account key */
#define ACME_ACCOUNT_IP "acme-account.key"	/* ipcert.go's */

/*
 * Why a child process (README, "Certificates and ACME"): the exchange needs
 * DNS, connects, TLS to the CA, polling and waits of seconds; in a child they
 * are plain blocking calls with timeouts (acme.c), and the relay's loop only
 * forks, reaps and reloads.  The child writes each HTTP-01 answer as a file in acme.chaldir
 * before telling the CA, so the relay serves it without any message passing,
 * and writes the new files atomically; the relay swaps them in when the child
 * exits 0.  It runs with the relay's privileges, dropped already (-user),
 * and so makes -certdir and the answer directory itself.
 */

/* The child's challenge callback: write (or remove) <chaldir>/<token>.  The
 * temporary name cert_write_atomic uses holds a dot, never a token, so a
 * half-written answer is never served. */
static int
acme_child_answer(void *ctx, const char *token, const char *keyauth)
{
	struct derp_server *s = ctx;
	char path[PATH_MAX], err[PATH_MAX + 100];

	if (!acme_token_ok(token, strlen(token)) ||
	    (size_t)snprintf(path, sizeof path, "%s/%s", s->acme.chaldir,
	    token) >= sizeof path)
		return -1;
	if (keyauth == NULL)
		return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
	if (cert_write_atomic(path, keyauth, strlen(keyauth), err,
	    sizeof err) != 0) {
		logf("acme: %s", err);
		return -1;
	}
	return 0;
}

static void
acme_child_log(void *ctx, const char *line)
{
	(void)ctx;
	logf("%s", line);
}

static const char *
nonempty(const char *v)
{
	return v != NULL && v[0] != '\0' ? v : NULL;
}

/* The child: no sockets of the relay, default signals, one acme_obtain. */
static int
acme_child(struct derp_server *s)
{
	const struct cert_ident *id = &s->ident[s->acme.ident];
	struct acme_config ac;
	char err[600], account[PATH_MAX];

	if (child_start(s, "derp-acme", -1, s->acme.parent) != 0)
		return 1;
	if (mkdir_parents(s->acme.chaldir, 0700) != 0 ||
	    (mkdir(s->cfg.certdir, 0700) != 0 && errno != EEXIST) ||
	    (mkdir(s->acme.chaldir, 0700) != 0 && errno != EEXIST)) {
		logf("acme: mkdir %s: %s (-certdir must be writable by the "
		    "relay's user)", s->acme.chaldir, strerror(errno));
		return 1;
	}

	memset(&ac, 0, sizeof ac);
	ac.directory_url = s->acme.directory;
	ac.ca_file = s->cfg.acme_ca_file != NULL && s->cfg.acme_ca_file[0] ?
	    s->cfg.acme_ca_file : ACME_CA_FILE_DEFAULT;
	/* Two accounts, as derper: autocert's and ipcert.go's (acme_setup
	 * checked that both names fit). */
	snprintf(account, sizeof account, "%s/%s", s->cfg.certdir, id->ip ?
	    ACME_ACCOUNT_IP : ACME_ACCOUNT_NAME);
	ac.account_key_path = account;
	ac.cert_path = id->crt_path;
	ac.key_path = id->key_path[0] != '\0' ? id->key_path : NULL;
	ac.identifier = id->name;
	ac.identifier_is_ip = id->ip;
	ac.profile = id->ip ? "shortlived" : NULL;
	/* acme.c takes NULL for "none"; flags default to "". */
	ac.email = nonempty(s->cfg.acme_email);
	ac.eab_kid = nonempty(s->cfg.acme_eab_kid);
	ac.eab_key = nonempty(s->cfg.acme_eab_key);
	ac.challenge = acme_child_answer;
	ac.ctx = s;
	ac.log = acme_child_log;
	if (acme_obtain(&ac, err, sizeof err) != 0) {
		logf("acme: no certificate for %s: %s", id->name, err);
		return 1;
	}
	return 0;
}

static void
acme_spawn(struct derp_server *s, uint8_t k)
{
	struct cert_ident *id = &s->ident[k];
	pid_t pid;

	fflush(stderr);
	s->acme.parent = getpid();
	s->acme.ident = k;
	pid = fork();
	if (pid == 0)
		_exit(acme_child(s));
	if (pid < 0) {
		logf("acme: fork: %s", strerror(errno));
		id->acme.next_ms = s->now + id->acme.backoff_ms;
		return;
	}
	s->acme.pid = pid;
	s->acme.started_ms = s->now;
	logf("acme: ordering a certificate for %s from %s (process %ld)",
	    id->name, s->acme.directory, (long)pid);
}

static void
acme_sched_init(struct acme_sched *a, int ip)
{
	a->backoff_ms = ACME_RETRY_MIN_MS;
	a->backoff_max_ms = ip ? ACME_RETRY_MAX_IP_MS : ACME_RETRY_MAX_MS;
	a->next_ms = a->not_before_ms = 0;
}

/* After a load: id's next order when its certificate in service is due
 * (now when there is none), checked again at least daily. */
static void
acme_schedule(struct derp_server *s, struct cert_ident *id)
{
	const struct cert_bank *b = &id->bank[id->cur];
	int64_t before, due, left;

	id->acme.next_ms = s->now;
	if (!b->loaded)
		return;
	before = s->cfg.acme_renew_before_s;
	if (before <= 0) {
		before = (b->not_after - b->not_before) / 3;
		if (before > ACME_RENEW_BEFORE_S)
			before = ACME_RENEW_BEFORE_S;
	}
	due = b->not_after - before;
	left = due - (int64_t)time(NULL);
	if (left > 0)
		id->acme.next_ms += left > ACME_RECHECK_MS / 1000 ?
		    ACME_RECHECK_MS : left * 1000;
	if (id->acme.next_ms < id->acme.not_before_ms)
		id->acme.next_ms = id->acme.not_before_ms;
}

static int
acme_due(const struct derp_server *s, const struct cert_ident *id)
{
	const struct cert_bank *b = &id->bank[id->cur];
	int64_t before = s->cfg.acme_renew_before_s;

	if (!b->loaded)
		return 1;
	if (before <= 0) {
		before = (b->not_after - b->not_before) / 3;
		if (before > ACME_RENEW_BEFORE_S)
			before = ACME_RENEW_BEFORE_S;
	}
	return (int64_t)time(NULL) >= b->not_after - before;
}

/* Once a tick: reap a finished child (swap its certificate in, or back off),
 * kill one that overstayed, start one for the first identity due. */
static void
acme_tick(struct derp_server *s)
{
	struct cert_ident *id = &s->ident[s->acme.ident];
	int status, ok;
	pid_t r;
	uint8_t k;

	if (!s->acme.on)
		return;
	if (s->acme.pid > 0) {
		r = waitpid(s->acme.pid, &status, WNOHANG);
		if (r == 0) {
			if (s->now - s->acme.started_ms > ACME_CHILD_MAX_MS) {
				logf("acme: process %ld ran over %d s: killed",
				    (long)s->acme.pid, ACME_CHILD_MAX_MS / 1000);
				kill(s->acme.pid, SIGKILL);
			}
			return;
		}
		ok = r == s->acme.pid && WIFEXITED(status) &&
		    WEXITSTATUS(status) == 0;
		s->acme.pid = 0;
		/* In service now, or as soon as the other bank is free. */
		if (ok && (certs_reload(s, id, 1) == 1 || id->wait == 2)) {
			id->acme.backoff_ms = ACME_RETRY_MIN_MS;
			/* A certificate due at once (a renewal threshold
			 * longer than its life) is not ordered again at once:
			 * the CA's duplicate limits. */
			id->acme.not_before_ms = s->now + ACME_MIN_GAP_MS;
			if (id->acme.next_ms < id->acme.not_before_ms)
				id->acme.next_ms = id->acme.not_before_ms;
			return;
		}
		id->acme.next_ms = s->now + id->acme.backoff_ms;
		logf("acme: attempt failed for %s; next in %lld s", id->name,
		    (long long)(id->acme.backoff_ms / 1000));
		id->acme.backoff_ms *= 2;
		if (id->acme.backoff_ms > id->acme.backoff_max_ms)
			id->acme.backoff_ms = id->acme.backoff_max_ms;
		return;
	}
	for (k = 0; k < s->nident; k++) {
		id = &s->ident[k];
		if (s->now < id->acme.next_ms)
			continue;
		if (acme_due(s, id) && s->now >= id->acme.not_before_ms) {
			acme_spawn(s, k);
			return;
		}
		acme_schedule(s, id);
	}
}

/* Stop a running child with the relay (derp_destroy). */
static void
acme_stop(struct derp_server *s)
{
	int status;

	if (s->acme.pid > 0) {
		kill(s->acme.pid, SIGTERM);
		waitpid(s->acme.pid, &status, 0);
		s->acme.pid = 0;
	}
}

/* ACME's settings, checked at start-up (derper's rules); the directory
 * made.  0 or -1 with err. */
static int
acme_setup(struct derp_server *s, int ip, char *err, size_t errlen)
{
	const struct derp_config *cfg = &s->cfg;
	int gcp = strcmp(cfg->certmode, "gcp") == 0;
	const char *kid = cfg->acme_eab_kid, *key = cfg->acme_eab_key;
	int have_kid = kid != NULL && kid[0] != '\0';
	int have_key = key != NULL && key[0] != '\0';

	if (have_kid != have_key) {
		snprintf(err, errlen, "derper: -acme-eab-kid and -acme-eab-key "
		    "go together");
		return -1;
	}
	if (gcp && (ip || !have_kid || cfg->acme_email == NULL ||
	    cfg->acme_email[0] == '\0')) {
		snprintf(err, errlen, "derper: -certmode gcp needs a DNS "
		    "-hostname, -acme-email, -acme-eab-kid and -acme-eab-key");
		return -1;
	}
	s->acme.on = 1;
	s->acme.directory = cfg->acme_directory != NULL &&
	    cfg->acme_directory[0] != '\0' ? cfg->acme_directory :
	    gcp ? ACME_GCP_DIRECTORY : ACME_LE_DIRECTORY;
	if (strncmp(s->acme.directory, "https://", 8) != 0) {
		snprintf(err, errlen, "derp: -acme-directory must be an https "
		    "URL: %s", s->acme.directory);
		return -1;
	}
	acme_sched_init(&s->ident[0].acme, ip);
	if (strlen(cfg->certdir) + 1 + sizeof ACME_ACCOUNT_NAME > PATH_MAX ||
	    strlen(cfg->certdir) + 1 + sizeof ACME_ACCOUNT_IP > PATH_MAX ||
	    (size_t)snprintf(s->acme.chaldir, sizeof s->acme.chaldir,
	    "%s/.acme-challenge", cfg->certdir) >= sizeof s->acme.chaldir) {
		snprintf(err, errlen, "derp: -certdir too long");
		return -1;
	}
	/* The child makes -certdir and the answer directory, as the user it
	 * runs as (-user): made here they would belong to root. */
	return 0;
}
#else
static void acme_tick(struct derp_server *s) { (void)s; }
static void acme_stop(struct derp_server *s) { (void)s; }
static void
acme_schedule(struct derp_server *s, struct cert_ident *id)
{
	(void)s;
	(void)id;
}
static void
acme_sched_init(struct acme_sched *a, int ip)
{
	(void)a;
	(void)ip;
}
#endif /* DERP_NO_ACME */

/* Once a tick in TLS mode: the files' stamps about once a minute (or a reload
 * that waits for a bank), and the ACME child. */
static void
certs_tick(struct derp_server *s)
{
	uint8_t k;

	if (!s->tls_mode)
		return;
	if (s->now >= s->next_cert_check_ms) {
		s->next_cert_check_ms = s->now + (s->cfg.cert_check_ms > 0 ?
		    s->cfg.cert_check_ms : CERT_CHECK_MS);
		certs_reload_all(s, 0);
	} else {
		for (k = 0; k < s->nident; k++)
			if (s->ident[k].wait != 0)
				certs_reload(s, &s->ident[k],
				    s->ident[k].wait == 2);
	}
	acme_tick(s);
}

/* Start-up: the files of -certmode, the first load, ACME's settings. */
static int
certs_setup(struct derp_server *s, char *err, size_t errlen)
{
	const struct derp_config *cfg = &s->cfg;
	struct cert_ident *id = &s->ident[0];
	char name[256], cerr[600];
	int ip = is_ip_literal(cfg->hostname), manual, r = 0;

	manual = strcmp(cfg->certmode, "manual") == 0;
	if (cfg->certdir[0] == '\0') {
		snprintf(err, errlen, "missing required --certdir flag");
		return -1;
	}
	snprintf(id->name, sizeof id->name, "%s", cfg->hostname);
	id->ip = (uint8_t)ip;
	s->nident = 1;
	s->sni_strict = !ip;
	cert_file_name(cfg->hostname, name, sizeof name);
	if (!manual && ip)
		r = cert_ident_ip_paths(cfg, id);
	else if (manual)
		r = (size_t)snprintf(id->crt_path, sizeof id->crt_path,
		    "%s/%s.crt", cfg->certdir, name) >= sizeof id->crt_path ||
		    (size_t)snprintf(id->key_path, sizeof id->key_path,
		    "%s/%s.key", cfg->certdir, name) >= sizeof id->key_path;
	else
		r = (size_t)snprintf(id->crt_path, sizeof id->crt_path, "%s/%s",
		    cfg->certdir, cfg->hostname) >= sizeof id->crt_path;
	if (r != 0 || strlen(cfg->hostname) >= sizeof id->name) {
		snprintf(err, errlen, "derp: -certdir or -hostname too long");
		return -1;
	}
	if (manual) {
		if (ip && !file_exists(id->crt_path) &&
		    !file_exists(id->key_path)) {
			if (cert_generate_ip(id->crt_path, id->key_path,
			    cfg->hostname, time(NULL), cerr, sizeof cerr) != 0) {
				snprintf(err, errlen, "derper: %s", cerr);
				return -1;
			}
			logf("generated self-signed certificate %s",
			    id->crt_path);
		}
		file_stamp_get(id->crt_path, &id->crt_stamp);
		file_stamp_get(id->key_path, &id->key_stamp);
		if (bank_load(id, &id->bank[0], 0, cerr, sizeof cerr) != 0) {
			snprintf(err, errlen, "derper: can not start cert "
			    "provider: %s", cerr);
			return -1;
		}
		if (ip)
			cert_log_pin(s);
		return 0;
	}
	/* derper-compat.md 7.4: beside a DNS -hostname, a certificate per
	 * local address for clients that send no SNI (cert_ident_local). */
	s->ip_idents = (uint8_t)(!ip && cfg->acme_ip_certs &&
	    strcmp(cfg->certmode, "letsencrypt") == 0);
#ifdef DERP_NO_ACME
	if (ip) {
		snprintf(err, errlen, "derper: -certmode %s needs a DNS "
		    "-hostname in this build (no ACME: DERP_NO_ACME); use "
		    "-certmode manual for a self-signed IP certificate",
		    cfg->certmode);
		return -1;
	}
	if (!file_exists(id->crt_path)) {
		snprintf(err, errlen, "derper: -certmode %s needs ACME, which "
		    "this build leaves out (DERP_NO_ACME): use -certmode manual "
		    "with %s/%s.crt and %s/%s.key, or an existing autocert file "
		    "%s", cfg->certmode, cfg->certdir, name, cfg->certdir, name,
		    id->crt_path);
		return -1;
	}
	file_stamp_get(id->crt_path, &id->crt_stamp);
	if (bank_load(id, &id->bank[0], 0, cerr, sizeof cerr) != 0) {
		snprintf(err, errlen, "derper: %s", cerr);
		return -1;
	}
	logf("serving the existing certificate %s (no ACME in this build: "
	    "renew it by other means; it is reloaded when it changes)",
	    id->crt_path);
	if (s->ip_idents)
		logf("-acme-ip-certs: stored <address>.crt and .key in %s are "
		    "served; this build orders none", cfg->certdir);
	return 0;
#else
	if (ip && !cfg->acme_ip_certs) {
		snprintf(err, errlen, "derper: -certmode %s with an IP address "
		    "as -hostname needs -acme-ip-certs (or -certmode manual "
		    "for a self-signed certificate)", cfg->certmode);
		return -1;
	}
	if (acme_setup(s, ip, err, errlen) != 0)
		return -1;
	file_stamp_get(id->crt_path, &id->crt_stamp);
	file_stamp_get(id->key_path, &id->key_stamp);
	if (id->crt_stamp.err == ENOENT) {
		logf("acme: no certificate stored at %s yet", id->crt_path);
	} else if (bank_load(id, &id->bank[0], 1, cerr, sizeof cerr) != 0) {
		logf("acme: the stored certificate is not usable (%s): a new "
		    "one is ordered", cerr);
	} else {
		char when[40];

		utc_text(id->bank[0].not_after, when, sizeof when);
		logf("cert: serving the stored %s, valid until %s",
		    id->crt_path, when);
	}
	return 0;	/* the first tick decides (next_ms 0) */
#endif
}

/* ============================================================= BOOTSTRAP DNS */

#ifndef DERP_NO_BOOTDNS
/*
 * -bootstrap-dns-names (derper-compat.md 4.5 and 10).  getaddrinfo blocks for
 * as long as the resolver takes, so every BOOTDNS_REFRESH_MS a child process
 * (child_start) looks the names up and writes one line per name into a pipe;
 * the loop reads the pipe once a tick and, when the child has finished or has
 * overrun derper's one-minute budget (killed), publishes the new table, in
 * which names whose lookup failed or did not finish are absent.  Until the
 * first round ends /bootstrap-dns answers an empty body, as derper does
 * before its first refresh.
 */
#define BOOTDNS_REFRESH_MS 600000	/* derper: every 10 minutes */
#define BOOTDNS_TIMEOUT_MS 60000	/* derper: one minute for a round */

/* A round ended: shuffle each name's addresses (derper does, so clients
 * spread over them) and make the new table the published one. */
static void
bootdns_publish(struct derp_server *s)
{
	struct bootdns_job *j = &s->bdns;
	struct bootdns *t = &j->tab[!j->cur];
	char tmp[BOOTDNS_ADDR_TEXT];
	uint8_t rnd[4];
	size_t i, k, r, found = 0, max;

	for (i = 0; i < t->count; i++) {
		struct bootdns_name *n = &t->n[i];

		found += n->found;
		for (k = n->naddr; k > 1; k--) {
			rng_bytes(&s->rng, rnd, sizeof rnd);
			r = get_be32(rnd) % k;
			memcpy(tmp, n->addr[k - 1], sizeof tmp);
			memcpy(n->addr[k - 1], n->addr[r], sizeof tmp);
			memcpy(n->addr[r], tmp, sizeof tmp);
		}
	}
	j->cur = (uint8_t)!j->cur;
	j->published = 1;
	/* All addresses when they fit, else as many per name as fit. */
	for (max = BOOTDNS_ADDRS_MAX; max > 0; max--)
		if ((j->body_len = bootdns_json(&j->tab[j->cur], NULL, max,
		    j->body, sizeof j->body)) > 0)
			break;
	logf("bootstrap DNS: %zu of %zu names resolved", found, t->count);
}

/* What a lookup child wrote: whole lines into table t (an overlong line
 * is dropped). */
static void
lines_feed(struct line_acc *a, struct bootdns *t, const char *p, size_t n)
{
	const char *nl;
	size_t take;

	while (n > 0) {
		nl = memchr(p, '\n', n);
		take = nl != NULL ? (size_t)(nl - p) : n;
		if (a->too_long || take > sizeof a->line - a->len)
			a->too_long = 1;
		else {
			memcpy(a->line + a->len, p, take);
			a->len += take;
		}
		if (nl == NULL)
			return;
		if (!a->too_long)
			(void)bootdns_take_line(t, a->line, a->len);
		a->len = 0;
		a->too_long = 0;
		p += take + 1;
		n -= take + 1;
	}
}

static void
bootdns_spawn(struct derp_server *s)
{
	struct bootdns_job *j = &s->bdns;
	pid_t parent = getpid(), pid;
	int p[2];

	j->next_ms = s->now + BOOTDNS_REFRESH_MS;
	if (pipe(p) != 0) {
		logf("bootstrap DNS: pipe: %s", strerror(errno));
		return;
	}
	bootdns_clear(&j->tab[!j->cur]);
	j->acc.len = 0;
	j->acc.too_long = 0;
	fflush(stderr);
	pid = fork();
	if (pid == 0) {
		if (child_start(s, "derp-dns", p[1], parent) == 0)
			bootdns_lookup_all(&j->tab[!j->cur], p[1]);
		_exit(0);
	}
	close(p[1]);
	if (pid < 0 || sock_nonblock(p[0]) != 0) {
		logf("bootstrap DNS: fork: %s", strerror(errno));
		close(p[0]);
		if (pid > 0) {
			kill(pid, SIGKILL);
			j->pid = pid;	/* reaped by a later tick */
		}
		return;
	}
	j->pid = pid;
	j->fd = p[0];
	j->started_ms = s->now;
}

/* Once a tick: start a round when due, read what the child wrote, end the
 * round at its end of file or when it overran (killed), reap it. */
static void
bootdns_tick(struct derp_server *s)
{
	struct bootdns_job *j = &s->bdns;
	char buf[4096];
	ssize_t n;
	int status, end = 0;

	if (j->tab == NULL)
		return;
	if (j->fd >= 0) {
		for (;;) {
			n = read(j->fd, buf, sizeof buf);
			if (n > 0) {
				lines_feed(&j->acc, &j->tab[!j->cur], buf,
				    (size_t)n);
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			end = n == 0 || (errno != EAGAIN &&
			    errno != EWOULDBLOCK);
			break;
		}
		if (!end && s->now - j->started_ms >= BOOTDNS_TIMEOUT_MS) {
			logf("bootstrap DNS: lookups still running after %d s:"
			    " stopped", BOOTDNS_TIMEOUT_MS / 1000);
			kill(j->pid, SIGKILL);
			end = 1;
		}
		if (!end)
			return;
		close(j->fd);
		j->fd = -1;
		bootdns_publish(s);
	}
	if (j->pid > 0) {
		if (waitpid(j->pid, &status, WNOHANG) == 0)
			return;
		j->pid = 0;
	}
	if (s->now >= j->next_ms)
		bootdns_spawn(s);
}

/* Start-up: the names (checked), the tables, the first round at once. */
static int
bootdns_setup(struct derp_server *s, char *err, size_t errlen)
{
	struct bootdns_job *j = &s->bdns;
	const char *pub = s->cfg.bootstrap_dns_names;
	const char *unpub = s->cfg.unpublished_bootstrap_dns_names;

	j->fd = -1;
	if ((pub == NULL || pub[0] == '\0') && (unpub == NULL ||
	    unpub[0] == '\0'))
		return 0;
	j->tab = calloc(2, sizeof *j->tab);
	if (j->tab == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (bootdns_parse_names(&j->tab[0], pub != NULL ? pub : "",
	    unpub != NULL ? unpub : "", err, errlen) != 0)
		return -1;
	j->tab[1] = j->tab[0];
	j->next_ms = 0;
	return 0;
}

/* At the relay's end: the child stopped, the tables freed. */
static void
bootdns_stop(struct derp_server *s)
{
	struct bootdns_job *j = &s->bdns;
	int status;

	if (j->pid > 0) {
		kill(j->pid, SIGKILL);
		waitpid(j->pid, &status, 0);
		j->pid = 0;
	}
	if (j->fd >= 0)
		close(j->fd);
	j->fd = -1;
	free(j->tab);
	j->tab = NULL;
}
#else
/* Built without bootstrap DNS (make static's firmware build: getaddrinfo
 * alone is about 28 KB of a static musl binary): names are refused. */
static void bootdns_tick(struct derp_server *s) { (void)s; }
static void bootdns_stop(struct derp_server *s) { (void)s; }

static int
bootdns_setup(struct derp_server *s, char *err, size_t errlen)
{
	const char *pub = s->cfg.bootstrap_dns_names;
	const char *unpub = s->cfg.unpublished_bootstrap_dns_names;

	if ((pub != NULL && pub[0] != '\0') || (unpub != NULL &&
	    unpub[0] != '\0')) {
		snprintf(err, errlen, "bootstrap DNS is not built into this "
		    "relay (DERP_NO_BOOTDNS)");
		return -1;
	}
	return 0;
}
#endif /* DERP_NO_BOOTDNS */

/* ================================================================ ADMISSION */

/*
 * -verify-clients and -verify-client-url (derp-protocol.md 14).  A client
 * whose ClientInfo opened waits in CS_DERP_VERIFY: its input is paused (what
 * it pipelined stays, in order, in the kernel, the TLS engine and its RAWIN
 * budget), it keeps its handshake slot (so -max-handshakes bounds how many
 * wait), and it is closed if no verdict comes within VERIFY_CLIENT_MS.
 * Waiting clients queue in admit.waitq (a FIFO of slots, so bounded by them)
 * for one of VERIFY_CHECKS check slots.  A check is one HTTP/1.1 exchange on
 * a non-blocking socket of this loop (tailscaled's Unix socket; the
 * webhook's TCP, and TLS for https) with its own VERIFY_REQUEST_MS deadline
 * (the webhook's covers its redirects, as Go's client.Timeout does).  So a
 * tailscaled or webhook that hangs never takes more than VERIFY_CHECKS
 * descriptors.  A webhook that failed VERIFY_CHECKS times in a row (no
 * answer's head) is down: while it is, one client at a time asks it (the
 * probe) and the others get fail-open's verdict at once, as derper's would
 * after its 5 s; so a hanging webhook does not make the queue outlast
 * VERIFY_CLIENT_MS.  Any complete head brings it back.  verify.c writes the
 * requests and judges the answers; this section moves the bytes.
 */
#define VERIFY_REQUEST_MS	5000	/* one exchange (derper's webhook budget) */
#define VERIFY_CLIENT_MS	15000	/* ClientInfo -> verdict, queue included */
#define VERIFY_OLD_MS		600000	/* after an old tailscaled: /status for
					 * 10 minutes before asking whois again */
#define VERIFY_REQUESTS_MAX	10	/* Go's client makes at most 10 requests
					 * ("stopped after 10 redirects") */
#define VERIFY_CAPVER		145	/* the Tailscale-Cap we send */
#define VERIFY_READS_PER_ROUND	16	/* read(2) calls per check per round */
#define VERIFY_SOCKET_DEFAULT	"/var/run/tailscale/tailscaled.sock"
#define CHECK_NO_OWNER		UINT32_MAX	/* a /status fetch whose client
						 * left: it goes on for the cache */
#define VERIFY_CA_FILE_DEFAULT	"/etc/ssl/certs/ca-certificates.crt"


/* One decision, one line (derper-compat.md 12), and its counter. */
static void
admit_log(struct derp_server *s, struct conn *c, int allowed, const char *why)
{
	char k[8], line[192];

	key_short(k, c->key);
	snprintf(line, sizeof line, "client %s %s: %s", k, allowed ?
	    "admitted" : "rejected", why);
	/* An admission is the audit trail of who got in, one line per
	 * client the checks let in: never held back.  A rejection, or a
	 * fail-open pass (a webhook down lets strangers in), is what a flood
	 * multiplies: limited like other failures. */
	if (allowed && !c->adm.fail_open)
		conn_log_line(c, line);
	else
		conn_log_in(s, allowed ? &s->log.failopen : &s->log.reject, c,
		    line);
	s->st.admit[allowed ? ADMIT_ALLOWED : ADMIT_REJECTED]++;
}

/* c's ClientInfo opened and it is no mesh peer: it waits for its verdict. */
static void
admit_begin(struct derp_server *s, struct conn *c)
{
	c->state = CS_DERP_VERIFY;
	c->in_paused = 1;		/* not in the paused list: no retries */
	if (s->cfg.verify_clients)
		c->adm.step = s->now < s->admit.old_until_ms ? VQ_STATUS :
		    VQ_WHOIS;
	else
		c->adm.step = VQ_HOOK;
	c->adm.redirects = 0;
	c->adm.check = 0;
	c->adm.since_ms = s->now;
	c->deadline_ms = s->now + VERIFY_CLIENT_MS;
	ring_push(&s->admit.waitq, (uint32_t)(c - s->conns));
}

/* Admitted: registered, ServerInfo queued, and what it sent meanwhile read
 * on (input_resume_paused). */
static void
admit_pass(struct derp_server *s, struct conn *c, const char *why)
{
	admit_log(s, c, 1, why);
	c->adm.check = 0;
	conn_register(s, c);
	if (c->dead)
		conn_close(s, c);
	else
		mark_paused(s, c);
}

/* Refused: closed with nothing sent (derper logs and closes). */
static void
admit_refuse(struct derp_server *s, struct conn *c, const char *why)
{
	admit_log(s, c, 0, why);
	c->adm.check = 0;
	c->dead = 1;
	conn_close(s, c);
}

/* ---- the webhook's host names ---- */

#ifndef DERP_NO_BOOTDNS
/*
 * Names are looked up as bootstrap DNS looks them up, in a child process
 * (getaddrinfo blocks), one name at a time, the answer kept RESOLVE_OK_MS
 * (a failure RESOLVE_FAIL_MS): a webhook's name, and the names its redirects
 * lead to, at most RESOLVE_NAMES of them.
 */
#define RESOLVE_OK_MS		60000
#define RESOLVE_FAIL_MS		5000
#define RESOLVE_CHILD_MS	VERIFY_REQUEST_MS

/* The entry for name, made (and its lookup asked for) when missing or
 * stale; NULL when all entries are being looked up. */
static struct resolve_name *
resolve_get(struct derp_server *s, const char *name)
{
	struct resolver *r = &s->admit.res;
	struct resolve_name *e = NULL, *old = NULL;
	size_t i;

	for (i = 0; i < RESOLVE_NAMES; i++) {
		if (strcmp(r->n[i].name, name) == 0) {
			e = &r->n[i];
			break;
		}
		if (r->n[i].state != RS_WAIT && (old == NULL ||
		    r->n[i].used_ms < old->used_ms))
			old = &r->n[i];
	}
	if (e == NULL) {
		if (old == NULL || strlen(name) >= sizeof old->name)
			return NULL;
		e = old;
		memset(e, 0, sizeof *e);
		memcpy(e->name, name, strlen(name) + 1);
	}
	e->used_ms = s->now;
	if (e->state != RS_WAIT && (e->state == RS_NONE ||
	    s->now >= e->until_ms))
		e->state = RS_WAIT;
	return e;
}

static void
resolve_spawn(struct derp_server *s, struct resolve_name *e)
{
	struct resolver *r = &s->admit.res;
	char err[128];
	pid_t parent = getpid(), pid;
	int p[2];

	r->busy = (int)(e - r->n);
	r->acc.len = 0;
	r->acc.too_long = 0;
	if (bootdns_parse_names(&r->tab, e->name, "", err, sizeof err) != 0 ||
	    pipe(p) != 0) {
		r->busy = -1;
		e->state = RS_FAIL;
		e->until_ms = s->now + RESOLVE_FAIL_MS;
		return;
	}
	fflush(stderr);
	pid = fork();
	if (pid == 0) {
		if (child_start(s, "derp-dns", p[1], parent) == 0)
			bootdns_lookup_all(&r->tab, p[1]);
		_exit(0);
	}
	close(p[1]);
	if (pid < 0 || sock_nonblock(p[0]) != 0) {
		close(p[0]);
		if (pid > 0)
			kill(pid, SIGKILL);
		r->pid = pid > 0 ? pid : 0;	/* reaped by resolve_poll */
		r->busy = -1;
		e->state = RS_FAIL;
		e->until_ms = s->now + RESOLVE_FAIL_MS;
		return;
	}
	r->pid = pid;
	r->fd = p[0];
	r->started_ms = s->now;
}

/* The lookup's addresses, IPv4-mapped: the entry's answer. */
static void
resolve_done(struct derp_server *s, struct resolve_name *e)
{
	const struct bootdns_name *b = &s->admit.res.tab.n[0];
	uint8_t a[16];
	size_t i;

	e->naddr = 0;
	for (i = 0; b->found && i < b->naddr && e->naddr < BOOTDNS_ADDRS_MAX;
	    i++) {
		memset(a, 0, sizeof a);
		if (inet_pton(AF_INET, b->addr[i], a + 12) == 1) {
			a[10] = a[11] = 0xff;
		} else if (inet_pton(AF_INET6, b->addr[i], a) != 1) {
			continue;
		}
		memcpy(e->ip[e->naddr++], a, 16);
	}
	e->state = e->naddr > 0 ? RS_OK : RS_FAIL;
	e->until_ms = s->now + (e->naddr > 0 ? RESOLVE_OK_MS : RESOLVE_FAIL_MS);
}

static void check_dial(struct derp_server *s, struct vcheck *k);

/* Each round while a lookup runs: its lines, its end (or its overrun), then
 * the checks that waited for it, and the next name waiting. */
static void
resolve_poll(struct derp_server *s)
{
	struct resolver *r = &s->admit.res;
	struct resolve_name *e;
	char buf[1024];
	ssize_t n;
	int status, end = 0;
	size_t i;

	if (r->pid > 0 && r->fd < 0 && waitpid(r->pid, &status, WNOHANG) != 0)
		r->pid = 0;
	if (r->fd >= 0) {
		for (;;) {
			n = read(r->fd, buf, sizeof buf);
			if (n > 0) {
				lines_feed(&r->acc, &r->tab, buf, (size_t)n);
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			end = n == 0 || (errno != EAGAIN &&
			    errno != EWOULDBLOCK);
			break;
		}
		if (!end && s->now - r->started_ms >= RESOLVE_CHILD_MS) {
			kill(r->pid, SIGKILL);
			end = 1;
		}
		if (!end)
			return;
		close(r->fd);
		r->fd = -1;
		e = &r->n[r->busy];
		r->busy = -1;
		resolve_done(s, e);
		if (e->state != RS_OK)
			logf("verify: cannot resolve %s", e->name);
		for (i = 0; i < VERIFY_CHECKS; i++)
			if (s->admit.checks[i].phase == VC_RESOLVE &&
			    strcmp(s->admit.checks[i].url.host, e->name) == 0)
				check_dial(s, &s->admit.checks[i]);
	}
	if (r->busy < 0 && r->pid == 0)
		for (i = 0; i < RESOLVE_NAMES; i++)
			if (r->n[i].state == RS_WAIT) {
				resolve_spawn(s, &r->n[i]);
				break;
			}
}

static void
resolve_stop(struct derp_server *s)
{
	struct resolver *r = &s->admit.res;
	int status;

	if (r->pid > 0) {
		kill(r->pid, SIGKILL);
		waitpid(r->pid, &status, 0);
		r->pid = 0;
	}
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
}
#endif /* DERP_NO_BOOTDNS */

/* ---- tailscaled's status, shared ---- */

static const uint8_t status_free[16];	/* a free entry's bytes */

/* key's entry: where it is, or the free one where it would go (the table is
 * never full, so the probe ends).  A key whose first 16 bytes are zero is
 * never stored: it would look free. */
static uint32_t
status_cache_find(const struct status_cache *sc, const uint8_t key[KEY_BYTES])
{
	uint32_t i = get_be32(key) & (STATUS_CACHE_SLOTS - 1);

	while (memcmp(sc->fp[i], status_free, 16) != 0 &&
	    memcmp(sc->fp[i], key, 16) != 0)
		i = (i + 1) & (STATUS_CACHE_SLOTS - 1);
	return i;
}

/* The status judge saw key (vjudge.key_seen). */
static void
status_cache_add(void *ctx, const uint8_t key[KEY_BYTES])
{
	struct status_cache *sc = &((struct derp_server *)ctx)->admit.sc;
	uint32_t i;

	if (sc->overflow || memcmp(key, status_free, 16) == 0)
		return;
	i = status_cache_find(sc, key);
	if (memcmp(sc->fp[i], status_free, 16) != 0)
		return;		/* Self is a Peer key too, or twice */
	if (sc->n == STATUS_CACHE_KEYS) {
		sc->overflow = 1;
		return;
	}
	memcpy(sc->fp[i], key, 16);
	sc->n++;
}

static int
status_cache_has(const struct status_cache *sc, const uint8_t key[KEY_BYTES])
{
	return memcmp(key, status_free, 16) != 0 &&
	    memcmp(sc->fp[status_cache_find(sc, key)], key, 16) == 0;
}

/* k starts a fetch: it fills the cache as its answer comes (not while the
 * tailnet is too big for it). */
static void
status_fetch_begin(struct derp_server *s, struct vcheck *k)
{
	struct status_cache *sc = &s->admit.sc;

	if (s->now < sc->big_until_ms)
		return;
	memset(sc->fp, 0, STATUS_CACHE_SLOTS * sizeof *sc->fp);
	sc->n = 0;
	sc->overflow = 0;
	sc->state = SC_FILLING;
	sc->started_ms = s->now;
	k->judge.key_seen = status_cache_add;
	k->judge.key_ctx = s;
}

/* The clients waiting for a fetch go back to the queue: judged from the
 * cache, or one of them fetches. */
static void
status_release(struct derp_server *s)
{
	struct slot_ring *q = &s->admit.sc.waitq;

	while (q->count > 0)
		ring_push(&s->admit.waitq, ring_pop(q));
}

/* k's fetch ended with verdict v (VV_BROKEN: it failed). */
static void
status_fetch_end(struct derp_server *s, struct vcheck *k, int v)
{
	struct status_cache *sc = &s->admit.sc;

	if (k->judge.key_seen == NULL)
		return;			/* a fetch of its own client's */
	k->judge.key_seen = NULL;
	if (sc->overflow) {
		sc->state = SC_NONE;
		sc->big_until_ms = s->now + STATUS_BIG_MS;
		logf("verify: tailscaled's status names more than %u keys: "
		    "each client asks for its own for a minute",
		    (unsigned)STATUS_CACHE_KEYS);
	} else {
		sc->state = (v == VV_ALLOW || v == VV_DENY) &&
		    k->judge.http.status == 200 && k->judge.json_rc ==
		    VJ_DONE ? SC_VALID : SC_FAILED;
	}
	status_release(s);
}

/* c is to be judged by tailscaled's status.  1: judged from the last fetch
 * (begun after c's ClientInfo), or waiting for the next (one is under way,
 * or one began less than STATUS_FETCH_GAP_MS ago); 0: c fetches. */
static int
status_from_cache(struct derp_server *s, struct conn *c)
{
	struct status_cache *sc = &s->admit.sc;
	uint32_t idx = (uint32_t)(c - s->conns);

	if (s->now < sc->big_until_ms)
		return 0;
	if (sc->state == SC_FAILED && sc->started_ms >= c->adm.since_ms) {
		admit_refuse(s, c, "tailscaled: its status failed");
		return 1;
	}
	if (sc->state == SC_VALID && sc->started_ms >= c->adm.since_ms) {
		if (!status_cache_has(sc, c->key)) {
			admit_refuse(s, c, "not authorized (not this node nor "
			    "a peer in tailscaled's status)");
		} else if (s->admit.hook_on) {
			c->adm.step = VQ_HOOK;
			c->adm.redirects = 0;
			ring_push(&s->admit.waitq, idx);
		} else {
			admit_pass(s, c, "a node of the tailnet (status)");
		}
		return 1;
	}
	if (sc->state == SC_FILLING || s->now - sc->started_ms <
	    STATUS_FETCH_GAP_MS) {
		ring_push(&sc->waitq, idx);
		return 1;
	}
	return 0;
}

/* ---- check slots ---- */

static void admit_verdict(struct derp_server *s, struct vcheck *k, int v,
    const char *why);

/* Close k's socket (the slot stays taken). */
static void
check_close_fd(struct derp_server *s, struct vcheck *k)
{
	int32_t moved;

	if (k->fd < 0)
		return;
	moved = poller_del(&s->pl, k->fd, k->pidx);
	poller_moved(s, moved, k->pidx);
	close(k->fd);
	k->fd = -1;
}

/* Give slot k back (its client is closed, or has its verdict). */
static void
check_free(struct derp_server *s, struct vcheck *k)
{
	check_close_fd(s, k);
	k->phase = VC_FREE;
}

/* The address of the webhook's host to try next: its IP literal, or its
 * name's addresses in the order the lookup gave them.  0; 1 while the name
 * is being looked up; -1 when none is left. */
static int
check_hook_addr(struct derp_server *s, struct vcheck *k, uint8_t ip[16])
{
	memset(ip, 0, 16);
	if (k->url.is_ip) {
		if (k->addr_i > 0)
			return -1;
		if (inet_pton(AF_INET, k->url.host, ip + 12) == 1) {
			ip[10] = ip[11] = 0xff;
			return 0;
		}
		return inet_pton(AF_INET6, k->url.host, ip) == 1 ? 0 : -1;
	}
#ifndef DERP_NO_BOOTDNS
	{
		struct resolve_name *e = resolve_get(s, k->url.host);

		if (e == NULL || e->state == RS_WAIT)
			return 1;
		if (e->state != RS_OK || k->addr_i >= e->naddr)
			return -1;
		memcpy(ip, e->ip[k->addr_i], 16);
		return 0;
	}
#else
	(void)s;
	return -1;
#endif
}

/* Connect k: tailscaled's socket, or the webhook's next address. */
static void
check_dial(struct derp_server *s, struct vcheck *k)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	uint8_t ip[16];
	int fd, rc;

	memset(&ss, 0, sizeof ss);
	if (k->kind != VQ_HOOK) {
		struct sockaddr_un *un = (struct sockaddr_un *)(void *)&ss;

		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, s->admit.socket, strlen(s->admit.socket));
		sl = (socklen_t)sizeof *un;
	} else {
		rc = check_hook_addr(s, k, ip);
		if (rc > 0) {
			k->phase = VC_RESOLVE;
			return;
		}
		if (rc < 0) {
			admit_verdict(s, k, VV_BROKEN, k->addr_i > 0 ?
			    "cannot connect to the webhook" :
			    "cannot resolve the webhook's host");
			return;
		}
		sl = ip16_to_sockaddr(ip, (uint16_t)port_number(k->url.port),
		    &ss);
	}
	k->phase = VC_CONNECT;
	fd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (fd >= 0 && (sock_nonblock(fd) != 0 ||
	    (connect(fd, (struct sockaddr *)&ss, sl) != 0 &&
	    errno != EINPROGRESS && errno != EAGAIN && errno != EINTR))) {
		close(fd);
		fd = -1;
	}
	if (fd >= 0) {
		k->fd = fd;
		k->events = POLLOUT;
		if (poller_add(&s->pl, fd, TAG_CHECK0 - (int32_t)(k -
		    s->admit.checks), POLLOUT, &k->pidx) == 0)
			return;
		close(fd);
		k->fd = -1;
	}
	if (k->kind == VQ_HOOK) {
		k->addr_i++;
		check_dial(s, k);	/* at most BOOTDNS_ADDRS_MAX deep */
	} else {
		admit_verdict(s, k, VV_BROKEN, "cannot reach tailscaled");
	}
}

/* A webhook's first request: POST with the body, no Referer. */
static void
check_first_hop(struct vcheck *k)
{
	k->post = 1;
	k->with_body = 1;
	k->referer[0] = '\0';
}

/* Slot k asks what c's current step asks; url is the webhook's target
 * (with k->post, k->with_body and k->referer). */
static void
check_begin(struct derp_server *s, struct vcheck *k, struct conn *c,
    const struct vurl *url)
{
	char body[160], ip[INET6_ADDRSTRLEN];
	size_t blen = 0;

	k->owner = (uint32_t)(c - s->conns);
	c->adm.check = (uint8_t)(k - s->admit.checks + 1);
	k->kind = c->adm.step;
	k->addr_i = 0;
	k->tls_on = 0;
	if (k->kind != VQ_HOOK || c->adm.redirects == 0)
		k->deadline_ms = s->now + VERIFY_REQUEST_MS;
	k->req_off = 0;
	vjudge_init(&k->judge, k->kind, c->key);
	if (k->kind == VQ_WHOIS)
		k->req_len = verify_whois_request(k->req, sizeof k->req, c->key,
		    VERIFY_CAPVER);
	else if (k->kind == VQ_STATUS) {
		k->req_len = verify_status_request(k->req, sizeof k->req,
		    VERIFY_CAPVER);
		status_fetch_begin(s, k);
	}
	else {
		k->url = *url;
		ip[0] = '\0';
		if (ip16_is_v4(c->peer_ip))
			inet_ntop(AF_INET, c->peer_ip + 12, ip, sizeof ip);
		else
			inet_ntop(AF_INET6, c->peer_ip, ip, sizeof ip);
		blen = verify_hook_body(body, sizeof body, c->key, ip);
		k->req_len = blen == 0 ? 0 : verify_hook_request(k->req,
		    sizeof k->req, &k->url, k->post, k->referer[0] != '\0' ?
		    k->referer : NULL, k->with_body ? body : NULL, blen);
		k->tls_on = k->url.https;
	}
	if (k->req_len == 0) {
		admit_verdict(s, k, VV_BROKEN, "request too long");
		return;
	}
	check_dial(s, k);
}

/* What k's exchange says of the webhook's health: any complete head (a
 * redirect's too) means it answers; a failure before one counts towards
 * down. */
static void
hook_health(struct derp_server *s, const struct vcheck *k, int v)
{
	struct admit_state *a = &s->admit;

	if (k->judge.http.head_done) {
		if (a->hook_fails >= VERIFY_CHECKS)
			logf("verify: the webhook answers again");
		a->hook_fails = 0;
	} else if (v == VV_BROKEN && a->hook_fails < VERIFY_CHECKS &&
	    ++a->hook_fails == VERIFY_CHECKS) {
		logf("verify: the webhook failed %u times in a row: %s "
		    "without asking it, one client at a time asking",
		    (unsigned)VERIFY_CHECKS, s->cfg.verify_client_url_fail_open ?
		    "admitting (fail-open)" : "refusing");
	}
}

/* c is to ask the webhook.  While it is down and another client is asking
 * it, c gets fail-open's verdict without asking: 1 then (c is admitted or
 * closed), else 0 (c asks, as the probe). */
static int
hook_down_verdict(struct derp_server *s, struct conn *c)
{
	uint32_t i;

	if (s->admit.hook_fails < VERIFY_CHECKS)
		return 0;
	for (i = 0; i < VERIFY_CHECKS; i++)
		if (s->admit.checks[i].phase != VC_FREE &&
		    s->admit.checks[i].kind == VQ_HOOK)
			break;
	if (i == VERIFY_CHECKS)
		return 0;
	if (!s->cfg.verify_client_url_fail_open) {
		admit_refuse(s, c, "webhook down, refused without asking");
		return 1;
	}
	s->st.admit[ADMIT_FAIL_OPEN]++;
	c->adm.fail_open = 1;
	admit_pass(s, c, "webhook down, fail-open without asking");
	return 1;
}

/* c's current step (c->adm.step) in check slot k: decided without asking
 * (the webhook is down, or a /status fetch judges it), or k asks.  k is
 * free meanwhile, so it is no probe of its own. */
static void
admit_step(struct derp_server *s, struct vcheck *k, struct conn *c)
{
	k->phase = VC_FREE;
	c->adm.check = 0;
	if (c->adm.step == VQ_HOOK && hook_down_verdict(s, c))
		return;
	if (c->adm.step == VQ_STATUS && status_from_cache(s, c))
		return;
	k->phase = VC_CONNECT;
	check_first_hop(k);
	check_begin(s, k, c, &s->admit.hook);
}

/* A verdict on k's exchange, for its client: the next step, a redirect,
 * or the decision. */
static void
admit_verdict(struct derp_server *s, struct vcheck *k, int v, const char *why)
{
	struct conn *c;
	struct vurl next;
	char msg[128];

	check_close_fd(s, k);
	if (k->kind == VQ_HOOK)
		hook_health(s, k, v);
	if (k->kind == VQ_STATUS)
		status_fetch_end(s, k, v);
	if (k->owner == CHECK_NO_OWNER) {
		k->phase = VC_FREE;	/* it was for the cache only */
		return;
	}
	c = &s->conns[k->owner];
	if (k->kind == VQ_HOOK && v == VV_REDIRECT) {
		if (c->adm.redirects + 1 >= VERIFY_REQUESTS_MAX) {
			v = VV_BROKEN;
			why = "stopped after 10 redirects";
		} else if (vurl_resolve(&k->url, k->judge.http.location,
		    k->judge.http.location_len, &next) != 0) {
			v = VV_BROKEN;
			why = "redirect to a bad Location";
		} else {
			c->adm.redirects++;
			/* Go: 301, 302 and 303 turn the request into a GET
			 * without body; 307 and 308 keep its method and send
			 * the first request's body again (after a GET too). */
			if (k->judge.http.status == 307 ||
			    k->judge.http.status == 308) {
				k->with_body = 1;
			} else {
				k->post = 0;
				k->with_body = 0;
			}
			if (verify_hook_referer(k->referer, sizeof k->referer,
			    &k->url, &next) == 0)
				k->referer[0] = '\0';
			check_begin(s, k, c, &next);
			return;
		}
	}
	if (v == VV_OLD) {
		if (s->now >= s->admit.old_until_ms)
			logf("verify: tailscaled is older than 1.70 (no whois "
			    "by node key): asking /localapi/v0/status instead");
		s->admit.old_until_ms = s->now + VERIFY_OLD_MS;
		c->adm.step = VQ_STATUS;
		admit_step(s, k, c);
		return;
	}
	if (v == VV_BROKEN && k->kind == VQ_HOOK && k->judge.http.head_done &&
	    k->judge.http.status == 200) {
		/* Go's client returned the 200: what fails after it is the
		 * JSON decoder's error, a refusal whatever fail-open says. */
		snprintf(msg, sizeof msg, "webhook answer broken after its "
		    "head (%s)", why);
		why = msg;
		v = VV_DENY;
	} else if (v == VV_BROKEN && k->kind == VQ_HOOK) {
		snprintf(msg, sizeof msg, "webhook unreachable (%s)%s", why,
		    s->cfg.verify_client_url_fail_open ? ", fail-open" : "");
		why = msg;
		if (s->cfg.verify_client_url_fail_open) {
			s->st.admit[ADMIT_FAIL_OPEN]++;
			c->adm.fail_open = 1;
			v = VV_ALLOW;
		}
	} else if (v == VV_BROKEN) {
		snprintf(msg, sizeof msg, "tailscaled: %s", why);
		why = msg;
	}
	if (v != VV_ALLOW) {
		k->phase = VC_FREE;
		admit_refuse(s, c, why);
		return;
	}
	if (k->kind != VQ_HOOK && s->admit.hook_on) {
		c->adm.step = VQ_HOOK;
		c->adm.redirects = 0;
		admit_step(s, k, c);
		return;
	}
	k->phase = VC_FREE;
	admit_pass(s, c, why);
}

/* Request out, answer in, over a plain socket.  A verdict, or VV_MORE with
 * k->events set. */
static int
check_plain_io(struct vcheck *k)
{
	uint8_t buf[4096];
	ssize_t n;
	int i, v;

	while (k->req_off < k->req_len) {
		n = write(k->fd, k->req + k->req_off, k->req_len - k->req_off);
		if (n > 0) {
			k->req_off += (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == EINTR)) {
			k->events = POLLOUT;
			return VV_MORE;
		}
		k->why = "write failed";
		return VV_BROKEN;
	}
	for (i = 0; i < VERIFY_READS_PER_ROUND; i++) {
		n = read(k->fd, buf, sizeof buf);
		if (n > 0) {
			if ((v = vjudge_feed(&k->judge, buf, (size_t)n)) !=
			    VV_MORE)
				return v;
			continue;
		}
		if (n == 0)
			return vjudge_eof(&k->judge);
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			k->why = "read failed";
			return VV_BROKEN;
		}
		break;
	}
	k->events = POLLIN;
	return VV_MORE;
}

#ifndef DERP_NO_HOOKTLS
/* The same through k's TLS client engine (https webhooks). */
static int
check_tls_io(struct vcheck *k)
{
	br_ssl_engine_context *e = &k->tls->cc.eng;
	unsigned st;
	uint8_t *buf;
	size_t len;
	ssize_t n;
	int v, reads = 0;

	for (;;) {
		st = br_ssl_engine_current_state(e);
		if (st & BR_SSL_CLOSED) {
			if (br_ssl_engine_last_error(e) == BR_ERR_OK ||
			    (br_ssl_engine_last_error(e) == BR_ERR_IO &&
			    k->eof))
				return vjudge_eof(&k->judge);
			k->why = "TLS failed";
			return VV_BROKEN;
		}
		if (st & BR_SSL_SENDREC) {
			buf = br_ssl_engine_sendrec_buf(e, &len);
			n = write(k->fd, buf, len);
			if (n > 0) {
				br_ssl_engine_sendrec_ack(e, (size_t)n);
				continue;
			}
			if (n < 0 && (errno == EAGAIN ||
			    errno == EWOULDBLOCK || errno == EINTR)) {
				k->events = POLLOUT;
				return VV_MORE;
			}
			k->why = "write failed";
			return VV_BROKEN;
		}
		if (st & BR_SSL_RECVAPP) {
			buf = br_ssl_engine_recvapp_buf(e, &len);
			v = vjudge_feed(&k->judge, buf, len);
			br_ssl_engine_recvapp_ack(e, len);
			if (v != VV_MORE)
				return v;
			continue;
		}
		if ((st & BR_SSL_SENDAPP) && k->req_off < k->req_len) {
			buf = br_ssl_engine_sendapp_buf(e, &len);
			if (len > k->req_len - k->req_off)
				len = k->req_len - k->req_off;
			memcpy(buf, k->req + k->req_off, len);
			br_ssl_engine_sendapp_ack(e, len);
			k->req_off += len;
			if (k->req_off == k->req_len)
				br_ssl_engine_flush(e, 0);
			continue;
		}
		if ((st & BR_SSL_RECVREC) && reads < VERIFY_READS_PER_ROUND) {
			buf = br_ssl_engine_recvrec_buf(e, &len);
			n = read(k->fd, buf, len);
			if (n > 0) {
				reads++;
				br_ssl_engine_recvrec_ack(e, (size_t)n);
				continue;
			}
			if (n == 0) {
				/* Closed without close_notify: the answer ends
				 * here if its framing says it may. */
				k->eof = 1;
				return vjudge_eof(&k->judge);
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR) {
				k->why = "read failed";
				return VV_BROKEN;
			}
		}
		k->events = POLLIN;
		return VV_MORE;
	}
}
#endif

/* Readiness on check k's socket. */
static void
check_service(struct derp_server *s, struct vcheck *k, short revents)
{
	int err = 0, v;
	socklen_t el = sizeof err;

	if (k->phase == VC_CONNECT) {
		if (!(revents & (POLLOUT | POLLERR | POLLHUP)))
			return;
		if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 ||
		    err != 0) {
			check_close_fd(s, k);
			if (k->kind == VQ_HOOK) {
				k->addr_i++;
				check_dial(s, k);
			} else {
				admit_verdict(s, k, VV_BROKEN,
				    "cannot reach tailscaled");
			}
			return;
		}
		k->phase = VC_TALK;
#ifndef DERP_NO_HOOKTLS
		if (k->tls_on && tlsc_client_reset(&k->tls->cc, &k->tls->xc,
		    k->url.host) != 0) {
			admit_verdict(s, k, VV_BROKEN, "TLS set-up failed");
			return;
		}
#endif
	}
	k->why = NULL;
	k->eof = 0;
#ifndef DERP_NO_HOOKTLS
	if (k->tls_on)
		v = check_tls_io(k);
	else
#endif
		v = check_plain_io(k);
	if (v != VV_MORE) {
		admit_verdict(s, k, v, k->why != NULL ? k->why :
		    k->judge.why != NULL ? k->judge.why : "no answer");
		return;
	}
	poller_set(&s->pl, k->fd, TAG_CHECK0 - (int32_t)(k - s->admit.checks),
	    k->pidx, k->events);
}

/* The peer of c closed its side (or reset): a peek, as c's input is
 * paused.  What it sent before is still to read, so only an empty socket
 * at its end counts. */
static int
conn_peer_closed(const struct conn *c)
{
	uint8_t b;
	ssize_t n = recv(c->fd, &b, 1, MSG_PEEK);

	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
	    errno != EINTR);
}

/* Each round: waiting clients into free check slots, in turn; lookups. */
static void
admit_pump(struct derp_server *s)
{
	struct conn *c;
	uint32_t i = 0;

#ifndef DERP_NO_BOOTDNS
	if (s->admit.res.fd >= 0 || s->admit.res.pid > 0 ||
	    s->admit.res.busy >= 0)
		resolve_poll(s);
#endif
	while (s->admit.waitq.count > 0) {
		while (i < VERIFY_CHECKS && s->admit.checks[i].phase != VC_FREE)
			i++;
		if (i == VERIFY_CHECKS)
			return;
		c = &s->conns[ring_pop(&s->admit.waitq)];
		if (c->state != CS_DERP_VERIFY || c->adm.check != 0)
			continue;	/* closed (or reused) meanwhile */
		if (conn_peer_closed(c)) {
			/* Left while it waited (its input is paused, so
			 * nothing else noticed): not worth a check. */
			c->dead = 1;
			conn_close(s, c);
			continue;
		}
		admit_step(s, &s->admit.checks[i], c);
	}
#ifndef DERP_NO_BOOTDNS
	if (s->admit.res.busy < 0 && s->admit.res.pid == 0)
		resolve_poll(s);	/* a name asked for this round */
#endif
}

/* Once a tick: checks past their deadline. */
static void
admit_tick(struct derp_server *s)
{
	uint32_t i;
	struct vcheck *k;

	for (i = 0; s->admit.checks != NULL && i < VERIFY_CHECKS; i++) {
		k = &s->admit.checks[i];
		if (k->phase != VC_FREE && s->now >= k->deadline_ms)
			admit_verdict(s, k, VV_BROKEN, "timed out");
	}
	if (s->admit.sc.waitq.count > 0 && s->admit.sc.state != SC_FILLING &&
	    s->now - s->admit.sc.started_ms >= STATUS_FETCH_GAP_MS)
		status_release(s);	/* the next fetch may begin */
}

/* c is closing while it waits: its check stops. */
static void
admit_forget(struct derp_server *s, struct conn *c)
{
	struct vcheck *k;

	if (c->adm.check != 0) {
		k = &s->admit.checks[c->adm.check - 1];
		if (k->judge.key_seen != NULL)
			k->owner = CHECK_NO_OWNER;	/* the cache's fetch */
		else
			check_free(s, k);
	}
	c->adm.check = 0;
}

/* Start-up: the socket path, the webhook's URL, the check slots (with their
 * TLS engines when a webhook is set), the queue.  0, or -1 with err. */
static int
admit_setup(struct derp_server *s, char *err, size_t errlen)
{
	struct admit_state *a = &s->admit;
	const char *sock = s->cfg.socket_path, *url = s->cfg.verify_client_url;
	uint32_t i;

#ifndef DERP_NO_BOOTDNS
	a->res.fd = -1;
	a->res.busy = -1;
#endif
	a->hook_on = url != NULL && url[0] != '\0';
	a->on = s->cfg.verify_clients || a->hook_on;
	if (!a->on)
		return 0;
	if (sock == NULL || sock[0] == '\0')
		sock = VERIFY_SOCKET_DEFAULT;
	if (strlen(sock) >= sizeof a->socket) {
		snprintf(err, errlen, "-socket %.200s: path too long", sock);
		return -1;
	}
	memcpy(a->socket, sock, strlen(sock) + 1);
	if (a->hook_on && vurl_parse(url, &a->hook) != 0) {
		snprintf(err, errlen, "-verify-client-url %s: not an http:// or "
		    "https:// URL", url);
		return -1;
	}
#ifdef DERP_NO_BOOTDNS
	if (a->hook_on && !a->hook.is_ip) {
		snprintf(err, errlen, "-verify-client-url: this relay is built "
		    "without a resolver (BOOTDNS=0): give the webhook's IP "
		    "address");
		return -1;
	}
#endif
#ifdef DERP_NO_HOOKTLS
	if (a->hook_on && a->hook.https) {
		snprintf(err, errlen, "-verify-client-url: https is not built "
		    "into this relay (HOOKTLS=0)");
		return -1;
	}
#endif
	a->checks = calloc(VERIFY_CHECKS, sizeof *a->checks);
	ring_init(&a->waitq, s->max);
	if (s->cfg.verify_clients) {
		a->sc.fp = calloc(STATUS_CACHE_SLOTS, sizeof *a->sc.fp);
		ring_init(&a->sc.waitq, s->max);
		if (a->sc.fp == NULL || a->sc.waitq.slot == NULL ||
		    a->sc.waitq.on == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	if (a->checks == NULL || a->waitq.slot == NULL || a->waitq.on == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < VERIFY_CHECKS; i++)
		a->checks[i].fd = -1;
#ifndef DERP_NO_HOOKTLS
	if (a->hook_on) {
		const char *ca = s->cfg.verify_client_ca_file;
		char why[200];

		if (ca == NULL || ca[0] == '\0')
			ca = VERIFY_CA_FILE_DEFAULT;
		/* An http:// webhook needs roots only if it redirects to
		 * https://: without them that redirect fails, as a
		 * transport failure. */
		if (tlsc_anchors_load(&a->anchors, ca, why, sizeof why) != 0) {
			if (a->hook.https) {
				snprintf(err, errlen, "-verify-client-ca-file: "
				    "%s", why);
				return -1;
			}
			logf("verify: %s: https redirects will fail", why);
		}
		for (i = 0; i < VERIFY_CHECKS; i++) {
			struct check_tls *t = calloc(1, sizeof *t);

			if (t == NULL) {
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			tlsc_client_init(&t->cc, &t->xc, &a->anchors);
			br_ssl_engine_set_buffer(&t->cc.eng, t->buf,
			    sizeof t->buf, 0);
			a->checks[i].tls = t;
		}
	}
#endif
	if (s->cfg.verify_clients)
		logf("verify: admitting only clients tailscaled at %s knows",
		    a->socket);
	if (a->hook_on)
		logf("verify: asking %s about every client (fail-open %s)",
		    url, s->cfg.verify_client_url_fail_open ? "on" : "off");
	return 0;
}

/* At the relay's end. */
static void
admit_stop(struct derp_server *s)
{
	struct admit_state *a = &s->admit;
	uint32_t i;

	for (i = 0; a->checks != NULL && i < VERIFY_CHECKS; i++) {
		if (a->checks[i].fd >= 0)
			close(a->checks[i].fd);
#ifndef DERP_NO_HOOKTLS
		free(a->checks[i].tls);
#endif
	}
	free(a->checks);
	a->checks = NULL;
	ring_free(&a->waitq);
	ring_free(&a->sc.waitq);
	free(a->sc.fp);
	a->sc.fp = NULL;
#ifndef DERP_NO_HOOKTLS
	tlsc_anchors_free(&a->anchors);
#endif
#ifndef DERP_NO_BOOTDNS
	resolve_stop(s);
#endif
}

/* ====================================================================== MESH */

/*
 * A region of relays (derp-protocol.md 15): every server of the region
 * dials every other (-mesh-with) as a DERP client with the region's mesh
 * key and sends WatchConns; the dialled server tells it, as PeerPresent and
 * PeerGone, which keys connect and leave there.  A packet for a key that is
 * not here but was announced on one of our links goes out on that link as
 * ForwardPacket, one hop: the receiving server delivers it locally only.
 *
 * Server side (any mesh-key client): watchers get a flood of every
 * registered connection, then the changes from a log of fixed size that
 * every watcher reads at its own pace (watch_note, watch_out): one that
 * falls a whole log behind is closed, and comes back for a fresh flood, so
 * a slow watcher costs nothing but itself.  ForwardPacket and ClosePeer are
 * read in DERP (frame_begin).
 *
 * Client side (MESH_CLIENT): one struct mesh_link per -mesh-with entry, a
 * state machine on the relay's loop like admission's checks: the name
 * looked up by the resolver child (never getaddrinfo here), a non-blocking
 * connect, BearSSL as a client (the system's roots, -mesh-ca-file, or a
 * per-entry sha256-raw: pin), the /derp upgrade, ClientInfo sealed with
 * this server's own key, WatchConns; then announced keys become forwarders
 * in the key table (struct keyent's fwd bits).  Forwarded packets are copied
 * into the link's fixed output ring, or dropped when it is full or down:
 * never a wait, never growth.  A link that breaks forgets its keys and
 * dials again after 5 s, doubling to 30 s while it keeps failing, with a
 * quarter of jitter either way.
 */
#define WATCH_LOG_MIN		1024	/* events, beside one per slot */

#ifndef DERP_NO_MESH
/* PeerPresent's flags byte (derp-protocol.md 8). */
static uint8_t
peer_flags(const struct conn *d)
{
	uint8_t f = 0;

	if (d->mesh)
		f |= 0x02;
	if (d->is_prober)
		f |= 0x04;
	if (d->notideal)
		f |= 0x08;
	return f != 0 ? f : 0x01;
}

/* Connection c registered (present), or its key's last local connection
 * left: one event for every watcher. */
static void
watch_note(struct derp_server *s, const struct conn *c, int present)
{
	struct watch_ev *ev;
	int32_t w;

	if (s->nwatchers == 0)
		return;
	ev = &s->wlog[s->wlog_head % s->wlog_cap];
	memcpy(ev->key, c->key, KEY_BYTES);
	memcpy(ev->ip, c->peer_ip, 16);
	ev->port = c->peer_port;
	ev->flags = present ? peer_flags(c) : 0;
	s->wlog_head++;
	for (w = s->watch_first; w >= 0; w = s->conns[w].watch.next)
		mark_dirty(s, &s->conns[w]);
}

/* WatchConns from mesh peer c: the flood, then the log from now on.  A
 * second WatchConns starts over, as derper floods again. */
static void
watch_start(struct derp_server *s, struct conn *c)
{
	if (memcmp(c->key, s->pub, KEY_BYTES) == 0)
		return;		/* this server dialled itself */
	if (!c->watch.on) {
		c->watch.on = 1;
		c->watch.next = s->watch_first;
		s->watch_first = (int32_t)(c - s->conns);
		s->nwatchers++;
	}
	c->watch.scan = 0;
	c->watch.seq = s->wlog_head;
	mark_dirty(s, c);
}

static void
watch_stop(struct derp_server *s, struct conn *c)
{
	int32_t *pp, me = (int32_t)(c - s->conns);

	if (!c->watch.on)
		return;
	for (pp = &s->watch_first; *pp >= 0; pp = &s->conns[*pp].watch.next)
		if (*pp == me) {
			*pp = c->watch.next;
			break;
		}
	c->watch.on = 0;
	s->nwatchers--;
}

static int
watch_pending(const struct derp_server *s, const struct conn *c)
{
	return c->watch.on && (c->watch.scan < s->fresh ||
	    c->watch.seq != s->wlog_head);
}

/* PeerPresent (flags != 0) or PeerGone(Disconnected) into buf. */
static size_t
watch_put(uint8_t *buf, const uint8_t key[KEY_BYTES], const uint8_t ip[16],
    uint16_t port, uint8_t flags)
{
	uint8_t *p = buf + FRAME_HEADER_BYTES;

	memcpy(p, key, KEY_BYTES);
	if (flags == 0) {
		frame_put_header(buf, FRAME_PEER_GONE, PEERGONE_BYTES);
		p[KEY_BYTES] = PEER_GONE_DISCONNECTED;
		return FRAME_HEADER_BYTES + PEERGONE_BYTES;
	}
	frame_put_header(buf, FRAME_PEER_PRESENT, PEER_PRESENT_BYTES);
	memcpy(p + KEY_BYTES, ip, 16);
	p[KEY_BYTES + 16] = (uint8_t)(port >> 8);
	p[KEY_BYTES + 17] = (uint8_t)port;
	p[KEY_BYTES + 18] = flags;
	return FRAME_HEADER_BYTES + PEER_PRESENT_BYTES;
}

/* Watcher c's next frame, if it fits avail: bytes written, or 0. */
static size_t
watch_out(struct derp_server *s, struct conn *c, uint8_t *buf, size_t avail)
{
	const struct watch_ev *ev;
	const struct conn *d;

	if (avail < FRAME_HEADER_BYTES + PEER_PRESENT_BYTES)
		return 0;
	/* Every registered connection, duplicates too: a key whose active
	 * connection changes during the flood is then still announced. */
	while (c->watch.scan < s->fresh) {
		d = &s->conns[c->watch.scan++];
		if (d->state == CS_DERP)
			return watch_put(buf, d->key, d->peer_ip, d->peer_port,
			    peer_flags(d));
	}
	if (c->watch.seq == s->wlog_head)
		return 0;
	if (s->wlog_head - c->watch.seq > s->wlog_cap) {
		s->st.watchers_behind++;
		conn_fail(s, c, "mesh watcher fell a whole log behind");
		return 0;
	}
	ev = &s->wlog[c->watch.seq++ % s->wlog_cap];
	return watch_put(buf, ev->key, ev->ip, ev->port, ev->flags);
}

/* ClosePeer from mesh peer c: close (no frame) every local connection of
 * the key in c->fsmall (derp-protocol.md 15.6). */
static void
mesh_close_peer(struct derp_server *s, struct conn *c)
{
	struct keyent *e = keytab_find(s, c->fsmall);
	struct conn *d;
	int32_t i;
	char k[8];

	if (e == NULL || e->nconns == 0) {
		key_short(k, c->fsmall);
		logf("mesh: ClosePeer for %s, which is not here", k);
		return;
	}
	for (i = e->first; i >= 0; i = d->key_next) {
		d = &s->conns[i];
		if (!d->dead)
			conn_log(s, d, "closed by a mesh peer's ClosePeer");
		d->dead = 1;
		mark_dirty(s, d);
	}
}

/* Bit li of key-table slot i goes (its link dropped the key).  The last
 * route of a key that has no local connection takes it out of the region:
 * PeerGone(Disconnected) to whoever received from it (10.5). */
static void
mesh_unannounce(struct derp_server *s, uint32_t i, uint8_t li)
{
	struct keyent *e = &s->keytab[i];
	uint32_t senders;
	uint8_t b;

	s->links[li].nkeys--;
	e->fwd &= ~((uint32_t)1 << li);
	if (e->fwd != 0) {
		/* Derper takes the oldest route left; the lowest link
		 * holding the key is as good a route. */
		if (e->fwd_via == li)
			for (b = 0; b < 32; b++)
				if (e->fwd & ((uint32_t)1 << b)) {
					e->fwd_via = b;
					break;
				}
		return;
	}
	if (e->nconns > 0)
		return;
	senders = e->senders;
	keytab_delete(s, i);
	s->nkeys--;
	snd_source_closed(s, NULL, senders, NULL);
}

/* Link li announced key (PeerPresent): it becomes a route, kept beside any
 * other link's (the first stays in use) and behind a local connection. */
static void
mesh_announce(struct derp_server *s, uint8_t li, const uint8_t key[KEY_BYTES])
{
	uint32_t i = keytab_slot(s, key);
	struct keyent *e = &s->keytab[i];
	struct mesh_link *l = &s->links[li];

	if (keyent_used(e) && (e->fwd & ((uint32_t)1 << li)))
		return;			/* announced again */
	/* Each link routes at most -max-clients keys, counted whether or
	 * not they are also here: so entries with a route are at most that
	 * many per link, local ones at most the slots, and the table (sized
	 * by key_entries) stays under half full whatever peers announce and
	 * clients do, and one link cannot take the others' room.  The second
	 * test only guards that sum. */
	if (l->nkeys >= s->max || (!keyent_used(e) &&
	    2 * (s->nkeys + 1) > s->keytab_mask + 1)) {
		s->st.mesh_keys_refused++;
		return;
	}
	if (!keyent_used(e)) {
		memcpy(e->key, key, KEY_BYTES);
		e->nconns = 0;
		e->first = e->active = -1;
		e->senders = NIL;
		e->fwd = 0;
		s->nkeys++;
	}
	l->nkeys++;
	if (e->fwd == 0)
		e->fwd_via = li;
	e->fwd |= (uint32_t)1 << li;
}

#define MESH_RETRY_MS		5000	/* derper's; then doubling ... */
#define MESH_RETRY_MAX_MS	30000	/* ... up to this */
#define MESH_CONNECT_MS		10000	/* dial to ServerKey: derper's budget */
#define MESH_IDLE_MS		120000	/* silence that ends a link (a server
					 * sends KeepAlive every 60 s) */
#define MESH_WRITE_MS		5000	/* derper's write deadline on a link */
#define MESH_HEAD_MAX		1024	/* the 101's head; frames kept whole */
#define MESH_READS_PER_ROUND	16

/* The bytes queued on link l's output ring. */
static size_t
mesh_out_free(const struct mesh_link *l)
{
	return MESH_OUT_BYTES - l->olen;
}

/* A frame of len bytes, from the connection in slot (or ours), goes into
 * the ring next. */
static void
mesh_rec_push(struct derp_server *s, struct mesh_link *l, uint32_t slot,
    uint32_t len)
{
	struct mesh_rec *r = &l->rec[(l->rec_head + l->rec_n++) % MESH_RECS];

	r->slot = slot;
	r->gen = slot != MESH_REC_OURS ? s->conns[slot].fwd.gen : 0;
	r->len = r->left = len;
	if (slot != MESH_REC_OURS)
		s->conns[slot].fwd.bytes += len;
}

/* Record r's bytes left the ring (or never will): its sender's share back,
 * if the sender is still the connection that queued them. */
static void
mesh_rec_done(struct derp_server *s, const struct mesh_rec *r)
{
	struct conn *c;

	if (r->slot == MESH_REC_OURS)
		return;
	c = &s->conns[r->slot];
	if (c->state != CS_FREE && c->fwd.gen == r->gen)
		c->fwd.bytes -= r->len;
}

/* n bytes left the head of l's ring. */
static void
mesh_rec_drained(struct derp_server *s, struct mesh_link *l, size_t n)
{
	struct mesh_rec *r;
	size_t k;

	while (n > 0 && l->rec_n > 0) {
		r = &l->rec[l->rec_head];
		k = r->left < n ? r->left : n;
		r->left -= (uint32_t)k;
		n -= k;
		if (r->left == 0) {
			mesh_rec_done(s, r);
			l->rec_head = (l->rec_head + 1) % MESH_RECS;
			l->rec_n--;
		}
	}
}

/* The ring is emptied (the link went down). */
static void
mesh_rec_clear(struct derp_server *s, struct mesh_link *l)
{
	for (; l->rec_n > 0; l->rec_n--) {
		mesh_rec_done(s, &l->rec[l->rec_head]);
		l->rec_head = (l->rec_head + 1) % MESH_RECS;
	}
	l->rec_head = 0;
	l->olen = l->ohead = 0;
}

static void
mesh_out_put(struct mesh_link *l, const uint8_t *p, size_t n)
{
	size_t at = (l->ohead + l->olen) % MESH_OUT_BYTES, k;

	k = MESH_OUT_BYTES - at < n ? MESH_OUT_BYTES - at : n;
	memcpy(l->out + at, p, k);
	memcpy(l->out, p + k, n - k);
	l->olen += n;
}

/* A SendPacket of c for key e, only on a peer: ForwardPacket on e's link,
 * or dropped (link down, ring full, c's share of the rings used).  The
 * chain is given back either way. */
static void
mesh_forward(struct derp_server *s, struct conn *c, struct keyent *e,
    uint32_t first, uint32_t plen, int kind)
{
	struct mesh_link *l = &s->links[e->fwd_via];
	uint8_t hdr[FRAME_HEADER_BYTES + 2 * KEY_BYTES];
	const struct chunk *ch;
	uint32_t i, off = RECV_PREFIX_BYTES, need = sizeof hdr + plen;

	if (l->phase != ML_DERP || mesh_out_free(l) < need ||
	    c->fwd.bytes + need > MESH_SHARE_BYTES) {
		pkt_drop(s, first, plen, DROP_MESH_QUEUE, kind);
		return;
	}
	mesh_rec_push(s, l, (uint32_t)(c - s->conns), need);
	frame_put_header(hdr, FRAME_FORWARD_PACKET, 2 * KEY_BYTES + plen);
	memcpy(hdr + FRAME_HEADER_BYTES, c->key, KEY_BYTES);
	memcpy(hdr + FRAME_HEADER_BYTES + KEY_BYTES, e->key, KEY_BYTES);
	mesh_out_put(l, hdr, sizeof hdr);
	for (i = first; i != NIL; i = ch->next, off = 0) {
		ch = &s->pool.chunks[i];
		mesh_out_put(l, ch->data + off, ch->len - off);
	}
	pool_give_chain(&s->pool, first);
	s->st.forwarded_out++;
	l->dirty = 1;
	s->links_dirty = 1;
}

/* Link l is down: its keys are forgotten, it dials again later. */
static void
mesh_link_down(struct derp_server *s, struct mesh_link *l, const char *why)
{
	uint8_t li = (uint8_t)(l - s->links);
	uint32_t i, bit = (uint32_t)1 << li, pass, gone;
	int32_t moved;
	int64_t wait;

	if (l->fd >= 0) {
		moved = poller_del(&s->pl, l->fd, l->pidx);
		poller_moved(s, moved, l->pidx);
		close(l->fd);
		l->fd = -1;
	}
	if (l->self) {
		logf("mesh: %s is this server: skipped", l->name);
		l->phase = ML_SELF;
		return;
	}
	if (l->phase == ML_DERP || l->phase == ML_TALK)
		logf("mesh: %s: %s", l->name, why);
	else if (l->fails == 0)
		logf("mesh: cannot reach %s: %s", l->name, why);
	/* Backward-shift deletion can move a later slot onto the one just
	 * emptied: look at a slot again after a deletion, and make passes
	 * until one finds nothing. */
	for (pass = 0; pass < 4 && l->nkeys > 0; pass++) {
		gone = 0;
		for (i = 0; i <= s->keytab_mask; i++)
			while (keyent_used(&s->keytab[i]) &&
			    (s->keytab[i].fwd & bit)) {
				mesh_unannounce(s, i, li);
				gone++;
			}
		if (gone == 0)
			break;
	}
	l->phase = ML_IDLE;
	mesh_rec_clear(s, l);
	wait = MESH_RETRY_MS << (l->fails < 3 ? l->fails : 3);
	if (wait > MESH_RETRY_MAX_MS)
		wait = MESH_RETRY_MAX_MS;
	wait += (int64_t)(rng_u32(&s->rng) % (uint32_t)(wait / 2)) - wait / 4;
	l->retry_ms = s->now + wait;
	if (l->fails < 255)
		l->fails++;
}

/* ServerKey came: ClientInfo (the mesh key, sealed with this server's own
 * key, derp-protocol.md 15.4) and WatchConns go out. */
static void
mesh_hello(struct derp_server *s, struct mesh_link *l)
{
	char json[128];
	uint8_t f[FRAME_HEADER_BYTES + KEY_BYTES + NACL_NONCE_BYTES +
	    NACL_TAG_BYTES + sizeof json];
	uint8_t *p = f + FRAME_HEADER_BYTES;
	size_t jlen;

	memcpy(json, "{\"meshKey\":\"", 12);
	hex_encode(json + 12, s->mesh_key, KEY_BYTES);
	memcpy(json + 12 + 2 * KEY_BYTES, "\",\"version\":2}", 15);
	jlen = strlen(json);
	frame_put_header(f, FRAME_CLIENT_INFO, (uint32_t)(KEY_BYTES +
	    NACL_NONCE_BYTES + NACL_TAG_BYTES + jlen));
	memcpy(p, s->pub, KEY_BYTES);
	rng_bytes(&s->rng, p + KEY_BYTES, NACL_NONCE_BYTES);
	nacl_box_seal(p + KEY_BYTES + NACL_NONCE_BYTES, (const uint8_t *)json,
	    jlen, p + KEY_BYTES, l->server_key, s->priv);
	mesh_rec_push(s, l, MESH_REC_OURS, (uint32_t)(FRAME_HEADER_BYTES +
	    KEY_BYTES + NACL_NONCE_BYTES + NACL_TAG_BYTES + jlen +
	    FRAME_HEADER_BYTES));
	mesh_out_put(l, f, FRAME_HEADER_BYTES + KEY_BYTES + NACL_NONCE_BYTES +
	    NACL_TAG_BYTES + jlen);
	frame_put_header(f, FRAME_WATCH_CONNS, 0);
	mesh_out_put(l, f, FRAME_HEADER_BYTES);
}

/* A whole frame from the peer (one of at most MESH_HEAD_MAX bytes; larger
 * ones were skipped).  0, or -1 with *why. */
static int
mesh_frame(struct derp_server *s, struct mesh_link *l, const char **why)
{
	uint8_t li = (uint8_t)(l - s->links);
	struct keyent *e;

	if (l->phase == ML_TALK) {	/* the first frame: ServerKey */
		if (l->ftype != FRAME_SERVER_KEY || l->flen < 8 + KEY_BYTES ||
		    l->flen > MESH_HEAD_MAX ||
		    memcmp(l->buf, server_key_magic, 8) != 0) {
			*why = "no ServerKey";
			return -1;
		}
		memcpy(l->server_key, l->buf + 8, KEY_BYTES);
		if (memcmp(l->server_key, s->pub, KEY_BYTES) == 0) {
			l->self = 1;	/* derper lets a server list itself */
			*why = "is this server";
			return -1;
		}
		mesh_hello(s, l);
		l->phase = ML_DERP;
		l->dirty = 1;
		s->links_dirty = 1;
		return 0;
	}
	switch (l->ftype) {
	case FRAME_SERVER_INFO:
		if (l->fails > 0 || !l->said_up)
			logf("mesh: connected to %s", l->name);
		l->said_up = 1;
		l->fails = 0;
		break;
	case FRAME_PEER_PRESENT:
		if (l->flen >= KEY_BYTES)
			mesh_announce(s, li, l->buf);
		break;
	case FRAME_PEER_GONE:	/* any reason */
		e = l->flen >= KEY_BYTES ? keytab_find(s, l->buf) : NULL;
		if (e != NULL && (e->fwd & ((uint32_t)1 << li)))
			mesh_unannounce(s, (uint32_t)(e - s->keytab), li);
		break;
	default:		/* KeepAlive, Ping, RecvPacket, ...: ignored */
		break;
	}
	return 0;
}

static int
head_done(const struct mesh_link *l)
{
	return l->blen >= 4 && memcmp(l->buf + l->blen - 4, "\r\n\r\n", 4) == 0;
}

/* Bytes from the peer: the 101's head, then DERP frames.  0, or -1. */
static int
mesh_input(struct derp_server *s, struct mesh_link *l, const uint8_t *p,
    size_t n, const char **why)
{
	size_t k;

	l->last_rx_ms = s->now;
	while (n > 0) {
		if (l->phase == ML_HEAD) {
			/* A byte at a time: the head is short and comes once,
			 * and what follows it is the DERP stream. */
			while (n > 0 && !head_done(l)) {
				if (l->blen == MESH_HEAD_MAX) {
					*why = "upgrade answer too long";
					return -1;
				}
				l->buf[l->blen++] = *p++;
				n--;
			}
			if (!head_done(l))
				break;
			/* Go's client looks at the status code only. */
			if (l->blen < 13 || (memcmp(l->buf, "HTTP/1.1 101 ",
			    13) != 0 && memcmp(l->buf, "HTTP/1.0 101 ", 13) != 0)) {
				*why = "upgrade refused";
				return -1;
			}
			l->phase = ML_TALK;
			l->hlen = 0;
			continue;
		}
		if (l->hlen < FRAME_HEADER_BYTES) {
			l->hdr[l->hlen++] = *p++;
			n--;
			if (l->hlen == FRAME_HEADER_BYTES) {
				l->ftype = l->hdr[0];
				l->flen = get_be32(l->hdr + 1);
				l->blen = 0;
			} else {
				continue;
			}
		} else {
			k = l->flen - l->blen < n ? l->flen - l->blen : n;
			if (l->flen <= MESH_HEAD_MAX)
				memcpy(l->buf + l->blen, p, k);
			l->blen += (uint32_t)k;
			p += k;
			n -= k;
		}
		if (l->blen == l->flen) {
			l->hlen = 0;
			if (l->flen <= MESH_HEAD_MAX && mesh_frame(s, l, why) != 0)
				return -1;
		}
	}
	return 0;
}

/* Move bytes through link l's TLS engine and socket.  0, or -1 with *why. */
static int
mesh_io(struct derp_server *s, struct mesh_link *l, const char **why)
{
	br_ssl_engine_context *e = &l->cc.eng;
	unsigned st;
	uint8_t *buf;
	size_t len;
	ssize_t n;
	int reads = 0, progress;

	l->events = POLLIN;
	for (;;) {
		progress = 0;
		st = br_ssl_engine_current_state(e);
		if (st & BR_SSL_CLOSED) {
			*why = br_ssl_engine_last_error(e) == BR_ERR_OK ?
			    "closed" : "TLS failed";
			if (br_ssl_engine_last_error(e) ==
			    BR_ERR_X509_NOT_TRUSTED ||
			    br_ssl_engine_last_error(e) ==
			    BR_ERR_X509_BAD_SERVER_NAME)
				*why = "certificate not trusted";
			return -1;
		}
		if (st & BR_SSL_SENDREC) {
			buf = br_ssl_engine_sendrec_buf(e, &len);
			n = write(l->fd, buf, len);
			if (n > 0) {
				br_ssl_engine_sendrec_ack(e, (size_t)n);
				l->wstall_ms = 0;
				progress = 1;
			} else if (n < 0 && (errno == EAGAIN ||
			    errno == EWOULDBLOCK || errno == EINTR)) {
				l->events |= POLLOUT;
				if (l->wstall_ms == 0)
					l->wstall_ms = s->now;
			} else {
				*why = "write failed";
				return -1;
			}
		}
		if (st & BR_SSL_RECVAPP) {
			buf = br_ssl_engine_recvapp_buf(e, &len);
			if (mesh_input(s, l, buf, len, why) != 0)
				return -1;
			br_ssl_engine_recvapp_ack(e, len);
			progress = 1;
		} else if ((st & BR_SSL_RECVREC) &&
		    reads < MESH_READS_PER_ROUND) {
			buf = br_ssl_engine_recvrec_buf(e, &len);
			n = read(l->fd, buf, len);
			if (n > 0) {
				br_ssl_engine_recvrec_ack(e, (size_t)n);
				reads++;
				progress = 1;
			} else if (n == 0) {
				*why = "closed";
				return -1;
			} else if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR) {
				*why = "read failed";
				return -1;
			} else {
				reads = MESH_READS_PER_ROUND;	/* drained */
			}
		}
		st = br_ssl_engine_current_state(e);
		if ((st & BR_SSL_SENDAPP) && l->olen > 0) {
			buf = br_ssl_engine_sendapp_buf(e, &len);
			if (len > l->olen)
				len = l->olen;
			if (len > MESH_OUT_BYTES - l->ohead)
				len = MESH_OUT_BYTES - l->ohead;
			memcpy(buf, l->out + l->ohead, len);
			br_ssl_engine_sendapp_ack(e, len);
			l->ohead = (l->ohead + len) % MESH_OUT_BYTES;
			l->olen -= len;
			mesh_rec_drained(s, l, len);
			if (l->olen == 0)
				br_ssl_engine_flush(e, 0);
			progress = 1;
		}
		if (!progress)
			break;
	}
	if (br_ssl_engine_current_state(e) & BR_SSL_SENDREC)
		l->events |= POLLOUT;
	return 0;
}

/* Dial link l's next address (the name looked up first when it is not a
 * literal).  0 while it goes on (dialling or resolving), -1 down. */
static int
mesh_dial(struct derp_server *s, struct mesh_link *l)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	uint8_t ip[16];
	int fd, one = 1;

	if (!l->literal) {
#ifndef DERP_NO_BOOTDNS
		struct resolve_name *r = resolve_get(s, l->dial);

		if (r == NULL || r->state == RS_FAIL) {
			mesh_link_down(s, l, "cannot resolve its name");
			return -1;
		}
		if (r->state == RS_WAIT) {
			l->phase = ML_RESOLVE;
			return 0;
		}
		if (l->addr_i >= r->naddr) {
			mesh_link_down(s, l, "cannot connect");
			return -1;
		}
		memcpy(ip, r->ip[l->addr_i], 16);
#else
		mesh_link_down(s, l, "this build resolves no names");
		return -1;
#endif
	} else {
		if (l->addr_i > 0) {
			mesh_link_down(s, l, "cannot connect");
			return -1;
		}
		memcpy(ip, l->ip, 16);
	}
	l->addr_i++;
	memset(&ss, 0, sizeof ss);
	sl = ip16_to_sockaddr(ip, (uint16_t)l->port, &ss);
	fd = socket(ss.ss_family, SOCK_STREAM, 0);
	/* As Go's dialer: no Nagle delay under forwarded packets. */
	if (fd >= 0)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof one);
	if (fd < 0 || sock_nonblock(fd) != 0 ||
	    (connect(fd, (struct sockaddr *)&ss, sl) != 0 &&
	    errno != EINPROGRESS && errno != EAGAIN && errno != EINTR) ||
	    poller_add(&s->pl, fd, TAG_MESH0 - (int32_t)(l - s->links),
	    POLLOUT, &l->pidx) != 0) {
		if (fd >= 0)
			close(fd);
		return mesh_dial(s, l);	/* at most BOOTDNS_ADDRS_MAX deep */
	}
	l->fd = fd;
	l->events = POLLOUT;
	l->phase = ML_CONNECT;
	return 0;
}

/* Start link l afresh. */
static void
mesh_link_start(struct derp_server *s, struct mesh_link *l)
{
	static const char req_fmt[] = " HTTP/1.1\r\nHost: ";
	static const char req_end[] = "\r\nUser-Agent: Go-http-client/1.1\r\n"
	    "Connection: Upgrade\r\nUpgrade: DERP\r\n\r\n";

	l->addr_i = 0;
	mesh_rec_clear(s, l);
	l->blen = 0;
	l->hlen = 0;
	l->wstall_ms = 0;
	l->deadline_ms = s->now + MESH_CONNECT_MS;
	/* What derper's mesh client writes (derp-protocol.md 5.1). */
	mesh_rec_push(s, l, MESH_REC_OURS, (uint32_t)(9 + sizeof req_fmt - 1 +
	    strlen(l->name) + sizeof req_end - 1));
	mesh_out_put(l, (const uint8_t *)"GET /derp", 9);
	mesh_out_put(l, (const uint8_t *)req_fmt, sizeof req_fmt - 1);
	mesh_out_put(l, (const uint8_t *)l->name, strlen(l->name));
	mesh_out_put(l, (const uint8_t *)req_end, sizeof req_end - 1);
	(void)mesh_dial(s, l);
}

/* Readiness on link l's socket. */
static void
mesh_service(struct derp_server *s, struct mesh_link *l, short revents)
{
	const char *why = NULL;
	socklen_t el = sizeof(int);
	int err = 0;

	if (l->phase == ML_CONNECT) {
		if (!(revents & (POLLOUT | POLLERR | POLLHUP)))
			return;
		if (getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 ||
		    err != 0) {
			int32_t moved = poller_del(&s->pl, l->fd, l->pidx);

			poller_moved(s, moved, l->pidx);
			close(l->fd);
			l->fd = -1;
			(void)mesh_dial(s, l);
			return;
		}
		if (tlsc_client_reset(&l->cc, &l->xc, l->sni) != 0) {
			mesh_link_down(s, l, "TLS set-up failed");
			return;
		}
		l->phase = ML_HEAD;
		l->last_rx_ms = s->now;
	}
	if (l->phase < ML_HEAD)
		return;
	if (mesh_io(s, l, &why) != 0) {
		mesh_link_down(s, l, why);
		return;
	}
	poller_set(&s->pl, l->fd, TAG_MESH0 - (int32_t)(l - s->links),
	    l->pidx, l->events);
}

/* Each round: links with forwarded packets to send. */
static void
mesh_flush(struct derp_server *s)
{
	uint8_t i;

	s->links_dirty = 0;
	for (i = 0; i < s->nlinks; i++)
		if (s->links[i].dirty) {
			s->links[i].dirty = 0;
			if (s->links[i].phase >= ML_HEAD)
				mesh_service(s, &s->links[i], 0);
		}
}

/* Each tick: dial what is due, follow lookups, enforce the deadlines. */
static void
mesh_tick(struct derp_server *s)
{
	struct mesh_link *l;
	uint8_t i;
	int resolving = 0;

	for (i = 0; i < s->nlinks; i++) {
		l = &s->links[i];
		switch (l->phase) {
		case ML_IDLE:
			if (s->now >= l->retry_ms)
				mesh_link_start(s, l);
			break;
		case ML_RESOLVE:
			resolving = 1;
			(void)mesh_dial(s, l);
			break;
		case ML_CONNECT:
		case ML_HEAD:
		case ML_TALK:
			if (s->now >= l->deadline_ms)
				mesh_link_down(s, l, "connect timed out");
			break;
		case ML_DERP:
			if (s->now - l->last_rx_ms >= MESH_IDLE_MS)
				mesh_link_down(s, l, "silent for 120 s");
			else if (l->wstall_ms != 0 &&
			    s->now - l->wstall_ms >= MESH_WRITE_MS)
				mesh_link_down(s, l, "write timed out");
			break;
		default:		/* ML_SELF */
			break;
		}
	}
#ifndef DERP_NO_BOOTDNS
	if (resolving || s->admit.res.busy >= 0)
		resolve_poll(s);
#else
	(void)resolving;
#endif
}
#else
/* MESH=0: no mesh at all (a relay on its own, the firmware build): mesh
 * frames close even a client with the mesh key (frame_begin), so nothing
 * watches and no key has a route. */
static void
mesh_forward(struct derp_server *s, struct conn *c, struct keyent *e,
    uint32_t first, uint32_t plen, int kind)
{
	(void)c;
	(void)e;
	pkt_drop(s, first, plen, DROP_MESH_QUEUE, kind);
}
static void watch_note(struct derp_server *s, const struct conn *c,
    int present) { (void)s; (void)c; (void)present; }
static void watch_start(struct derp_server *s, struct conn *c)
    { (void)s; (void)c; }
static void watch_stop(struct derp_server *s, struct conn *c)
    { (void)s; (void)c; }
static int watch_pending(const struct derp_server *s, const struct conn *c)
    { (void)s; (void)c; return 0; }
static size_t watch_out(struct derp_server *s, struct conn *c, uint8_t *buf,
    size_t avail) { (void)s; (void)c; (void)buf; (void)avail; return 0; }
static void mesh_close_peer(struct derp_server *s, struct conn *c)
    { (void)s; (void)c; }
#endif

/* -mesh-with's entries (at most MESH_LINKS_MAX count; more are refused). */
static uint32_t
mesh_link_count(const struct derp_config *cfg)
{
	const char *p = cfg->mesh_with;
	uint32_t n = 0;
	int in = 0;

	for (; p != NULL && *p != '\0'; p++) {
		if (*p == ',') {
			in = 0;
		} else if (*p != ' ' && !in) {
			in = 1;
			n++;
		}
	}
	return n;
}

static int
mesh_configured(const struct derp_config *cfg)
{
	return cfg->mesh_key_hex != NULL && cfg->mesh_key_hex[0] != '\0';
}

/* Key-table entries: every slot's key, and with links, the peers' keys (at
 * most -max-clients per link) plus one per slot more, as a local key that a
 * peer also announced stays as a peer's key when it leaves here (MESH). */
static uint32_t
key_entries(const struct derp_config *cfg)
{
	uint64_t n = cfg->max_clients, links = mesh_link_count(cfg);

	if (links > MESH_LINKS_MAX)
		links = MESH_LINKS_MAX;
	if (links > 0)
		n += (links + 1) * cfg->max_clients;
	return n > UINT32_MAX / 4 ? UINT32_MAX / 4 : (uint32_t)n;
}

#ifndef DERP_NO_MESH
/*
 * One -mesh-with entry: host[:port][/dialhost][=sha256-raw:HEX].  host (and
 * its port, 443 by default) names the peer as derper's https://host/derp
 * does: the Host header, SNI and the certificate's name; dialhost is what is
 * connected to instead.  The pin (ours; Tailscale's CertName form) trusts
 * exactly that leaf certificate.  0, or -1 with err.
 */
static int
mesh_entry_parse(struct mesh_link *l, const char *ent, size_t len,
    uint8_t pin[32], int *pinned, char *err, size_t errlen)
{
	static const char pfx[] = "sha256-raw:";
	char buf[600], *eq, *slash, *host = buf;
	uint8_t a[16];

	*pinned = 0;
	if (len >= sizeof buf) {
		snprintf(err, errlen, "-mesh-with: entry too long");
		return -1;
	}
	memcpy(buf, ent, len);
	buf[len] = '\0';
	if ((eq = strchr(buf, '=')) != NULL) {
		*eq++ = '\0';
		if (strncmp(eq, pfx, sizeof pfx - 1) != 0 || strlen(eq) !=
		    sizeof pfx - 1 + 64 || hex_decode32(pin, eq + sizeof pfx - 1)
		    != 0) {
			snprintf(err, errlen, "-mesh-with %s: a pin is "
			    "=sha256-raw: and 64 hex digits", buf);
			return -1;
		}
		*pinned = 1;
	}
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = '\0';
	if (host[0] == '\0' || strlen(host) >= sizeof l->name ||
	    (slash != NULL && (slash[0] == '\0' ||
	    strlen(slash) >= sizeof l->dial))) {
		snprintf(err, errlen, "-mesh-with: bad entry \"%.*s\"",
		    (int)len, ent);
		return -1;
	}
	memcpy(l->name, host, strlen(host) + 1);
	l->port = 443;
	if (host[0] == '[' && strchr(host, ']') != NULL &&
	    strchr(host, ']')[1] == '\0') {	/* [v6] without a port */
		size_t hl = strlen(host) - 2;

		if (hl >= sizeof l->sni) {
			snprintf(err, errlen, "-mesh-with: bad entry \"%s\"",
			    host);
			return -1;
		}
		memcpy(l->sni, host + 1, hl);
		l->sni[hl] = '\0';
	} else if ((host[0] == '[' || (strchr(host, ':') != NULL &&
	    strchr(host, ':') == strrchr(host, ':'))) &&
	    parse_hostport(host, l->sni, sizeof l->sni, &l->port) == 0) {
		if (l->sni[0] == '\0' || l->port == 0) {
			snprintf(err, errlen, "-mesh-with: bad entry \"%s\"",
			    host);
			return -1;
		}
	} else if (strchr(host, ':') == NULL) {
		memcpy(l->sni, host, strlen(host) + 1);
	} else {
		snprintf(err, errlen, "-mesh-with: bad entry \"%s\"", host);
		return -1;
	}
	if (slash != NULL)
		memcpy(l->dial, slash, strlen(slash) + 1);
	else
		memcpy(l->dial, l->sni, strlen(l->sni) + 1);
	memset(l->ip, 0, 16);
	if (inet_pton(AF_INET, l->dial, a) == 1) {
		l->ip[10] = l->ip[11] = 0xff;
		memcpy(l->ip + 12, a, 4);
		l->literal = 1;
	} else if (inet_pton(AF_INET6, l->dial, a) == 1) {
		memcpy(l->ip, a, 16);
		l->literal = 1;
	}
#ifdef DERP_NO_BOOTDNS
	if (!l->literal) {
		snprintf(err, errlen, "-mesh-with %s: this build resolves no "
		    "names (BOOTDNS=0): give host/IP", l->name);
		return -1;
	}
#endif
	return 0;
}
#endif

/* MESH: the watchers' log; -mesh-with's links, first dialled at once. */
static int
mesh_setup(struct derp_server *s, char *err, size_t errlen)
{
	uint32_t n = mesh_link_count(&s->cfg);

	s->watch_first = -1;
	if (s->has_mesh_key) {
		s->wlog_cap = s->max + WATCH_LOG_MIN;
		s->wlog = calloc(s->wlog_cap, sizeof *s->wlog);
		if (s->wlog == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	if (n == 0)
		return 0;
	if (!s->has_mesh_key) {
		snprintf(err, errlen, "-mesh-with needs the mesh key "
		    "(-mesh-psk-file)");
		return -1;
	}
	if (n > MESH_LINKS_MAX) {
		snprintf(err, errlen, "-mesh-with: at most %d servers",
		    MESH_LINKS_MAX);
		return -1;
	}
#ifdef DERP_NO_MESH
	snprintf(err, errlen, "-mesh-with: this build has no mesh client "
	    "(MESH=0)");
	return -1;
#else
	{
		const char *p = s->cfg.mesh_with, *e, *q, *ca;
		struct mesh_link *l;
		uint8_t pin[32];
		int pinned, anchors = 0;
		char why[200];

		s->links = calloc(n, sizeof *s->links);
		if (s->links == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		for (s->nlinks = 0; *p != '\0'; p = *e != '\0' ? e + 1 : e) {
			while (*p == ' ')
				p++;
			for (e = p; *e != '\0' && *e != ','; e++)
				;
			for (q = e; q > p && q[-1] == ' '; q--)
				;
			if (q == p)
				continue;
			l = &s->links[s->nlinks++];
			l->fd = -1;
			l->out = malloc(MESH_OUT_BYTES);
			l->rec = calloc(MESH_RECS, sizeof *l->rec);
			if (l->out == NULL || l->rec == NULL) {
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			if (mesh_entry_parse(l, p, (size_t)(q - p), pin,
			    &pinned, err, errlen) != 0)
				return -1;
			if (!pinned && !anchors) {
				ca = s->cfg.mesh_ca_file;
				if (ca == NULL || ca[0] == '\0')
					ca = VERIFY_CA_FILE_DEFAULT;
				if (tlsc_anchors_load(&s->mesh_anchors, ca, why,
				    sizeof why) != 0) {
					snprintf(err, errlen, "-mesh-ca-file: "
					    "%s", why);
					return -1;
				}
				anchors = 1;
			}
			tlsc_client_init(&l->cc, &l->xc, &s->mesh_anchors);
			br_ssl_engine_set_buffer(&l->cc.eng, l->iobuf,
			    sizeof l->iobuf, 1);
			tlsc_x509_pin(&l->xc, pinned ? pin : NULL);
			l->retry_ms = 0;	/* dialled at the first tick */
		}
	}
	return 0;
#endif
}

static void
mesh_stop(struct derp_server *s)
{
#ifndef DERP_NO_MESH
	uint8_t i;

	for (i = 0; s->links != NULL && i < s->nlinks; i++) {
		if (s->links[i].fd >= 0)
			close(s->links[i].fd);
		free(s->links[i].out);
		free(s->links[i].rec);
	}
	free(s->links);
	s->links = NULL;
	tlsc_anchors_free(&s->mesh_anchors);
#endif
	free(s->wlog);
	s->wlog = NULL;
}

/* ==================================================================== SERVER */

void
derp_config_defaults(struct derp_config *cfg)
{
	static char certdir[PATH_MAX];
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");

	memset(cfg, 0, sizeof *cfg);
	cfg->addr = ":443";
	cfg->http_port = 80;
	cfg->stun_port = 3478;
	cfg->stun = 1;
	cfg->derp = 1;
	cfg->config_path = "";
	cfg->hostname = "derp.tailscale.com";
	cfg->certmode = "letsencrypt";
	/* Go's os.UserCacheDir: $XDG_CACHE_HOME, else $HOME/.cache. */
	if (xdg != NULL && xdg[0] != '\0')
		snprintf(certdir, sizeof certdir, "%s/tailscale/derper-certs", xdg);
	else if (home != NULL && home[0] != '\0')
		snprintf(certdir, sizeof certdir,
		    "%s/.cache/tailscale/derper-certs", home);
	else
		certdir[0] = '\0';
	cfg->certdir = certdir;
	cfg->home = "";
	cfg->rate_config = "";
	cfg->tcp_keepalive_ms = 10 * 60 * 1000;
	cfg->tcp_user_timeout_ms = 15000;
	cfg->tcp_write_timeout_ms = WRITE_TIMEOUT_DEFAULT_MS;
	cfg->max_clients = MAX_CLIENTS_DEFAULT;
	cfg->max_handshakes = MAX_HANDSHAKES_DEFAULT;
	cfg->accept_limit_per_sec = INFINITY;
	cfg->accept_burst = INT64_MAX;
	cfg->queue_depth = QUEUE_DEPTH_DEFAULT;
	cfg->keepalive_ms = KEEPALIVE_MS;
}

static uint32_t
keytab_size(uint32_t max)
{
	uint32_t n = 16;

	while (n < 2 * max)
		n <<= 1;
	return n;
}

static uint32_t
spare_chunks(uint32_t max)
{
	return CHUNKS_SPARE_BASE + max * CHUNKS_SPARE_PER_CONN;
}

/* POOLS, P3: every slot's budgets plus the spare. */
static uint32_t
pool_chunks(uint32_t max)
{
	return max * CHUNKS_PER_CONN + spare_chunks(max);
}

static uint32_t
sender_records(uint32_t max)
{
	return max * SENDERS_PER_CONN + SENDERS_SPARE;
}

/* Unfinished connections each set holds at most. */
static uint32_t
pend_cap(const struct derp_config *cfg, int set)
{
	uint32_t cap = set == PEND_PORT80 ? PORT80_PENDING :
	    set == SET_REG ? cfg->max_clients : cfg->max_handshakes;

	return cap < cfg->max_clients ? cap : cfg->max_clients;
}

static size_t
pend_set_bytes(uint32_t cap)
{
	return (cap + 1) * (sizeof(struct source) + 2 * sizeof(uint32_t)) +
	    keytab_size(cap + 1) * sizeof(uint32_t);
}

size_t
derp_memory_bytes(const struct derp_config *cfg)
{
	size_t max = cfg->max_clients, n;

	n = max * (sizeof(struct conn) + IBUF_BYTES + OBUF_BYTES +
	    sizeof(br_ssl_server_context) + sizeof(struct sni_policy) +
	    3 * sizeof(int32_t) + sizeof(struct pollfd) + sizeof(int32_t) +
	    sizeof(uint32_t));
	n += (size_t)pool_chunks(cfg->max_clients) * sizeof(struct chunk);
	n += (size_t)keytab_size(key_entries(cfg)) * sizeof(struct keyent);
	/* MESH: the watchers' log, and each link's engine and ring */
	if (mesh_configured(cfg))
		n += ((size_t)cfg->max_clients + WATCH_LOG_MIN) *
		    sizeof(struct watch_ev);
#ifndef DERP_NO_MESH
	n += (size_t)mesh_link_count(cfg) * (sizeof(struct mesh_link) +
	    MESH_OUT_BYTES + MESH_RECS * sizeof(struct mesh_rec));
#endif
	n += (size_t)(sender_records(cfg->max_clients) + 1) * sizeof(struct sender);
	n += (size_t)keytab_size(sender_records(cfg->max_clients) / 2) *
	    sizeof(uint32_t);
	n += pend_set_bytes(pend_cap(cfg, PEND_MAIN)) +
	    pend_set_bytes(pend_cap(cfg, PEND_PORT80)) +
	    pend_set_bytes(pend_cap(cfg, SET_REG));
	n += SCRATCH_BYTES + READ_BATCH_BYTES + METRICS_BYTES +
	    sizeof(struct derp_server);
	/* Admission: the check slots and the wait queue; with a webhook, a
	 * TLS client engine per slot (ADMISSION). */
	if (cfg->verify_clients || (cfg->verify_client_url != NULL &&
	    cfg->verify_client_url[0] != '\0'))
		n += VERIFY_CHECKS * sizeof(struct vcheck) + ring_bytes(max);
	if (cfg->verify_clients)	/* status's cache and its queue */
		n += STATUS_CACHE_SLOTS * 16 + ring_bytes(max);
#ifndef DERP_NO_HOOKTLS
	if (cfg->verify_client_url != NULL && cfg->verify_client_url[0] != '\0')
		n += VERIFY_CHECKS * sizeof(struct check_tls);
#endif
	return n;
}

static int
pend_set_alloc(struct pend_set *ps, uint32_t cap)
{
	uint32_t i, hs = keytab_size(cap + 1);

	ps->cap = cap;
	ps->n = 0;
	ps->top = 0;
	ps->src = calloc((size_t)cap + 1, sizeof *ps->src);
	ps->bucket = calloc((size_t)cap + 1, sizeof *ps->bucket);
	ps->hash = calloc(hs, sizeof *ps->hash);
	if (ps->src == NULL || ps->bucket == NULL || ps->hash == NULL)
		return -1;
	ps->hmask = hs - 1;
	ps->free = NIL;
	for (i = cap; i >= 1; i--) {
		ps->src[i].hnext = ps->free;
		ps->free = i;
	}
	return 0;
}

static void
pend_set_free(struct pend_set *ps)
{
	free(ps->src);
	free(ps->bucket);
	free(ps->hash);
}

static int
derp_alloc(struct derp_server *s, char *err, size_t errlen)
{
	uint32_t max = s->cfg.max_clients, ks = keytab_size(key_entries(&s->cfg));
	uint32_t pcap = max + 4 + VERIFY_CHECKS + MESH_LINKS_MAX;

	s->max = max;
	s->conns = calloc(max, sizeof *s->conns);
	s->bufs = calloc(max, IBUF_BYTES + OBUF_BYTES);
	s->free_slots = calloc(max, sizeof *s->free_slots);
	ring_init(&s->dirty, max);
	ring_init(&s->paused, max);
	ring_init(&s->spare_q, max);
	s->keytab = calloc(ks, sizeof *s->keytab);
	s->scratch = malloc(SCRATCH_BYTES);
	s->rbatch = malloc(READ_BATCH_BYTES);
	s->mbuf = malloc(METRICS_BYTES);
	s->pool.chunks = calloc((size_t)pool_chunks(max) + 1, sizeof(struct chunk));
	s->qheap = calloc(max, sizeof *s->qheap);
	s->nsnd = sender_records(max);
	s->snd = calloc((size_t)s->nsnd + 1, sizeof *s->snd);
	s->snd_hmask = keytab_size(s->nsnd / 2) - 1;
	s->snd_hash = calloc((size_t)s->snd_hmask + 1, sizeof *s->snd_hash);
	if (s->tls_mode) {
		s->ssl = calloc(max, sizeof *s->ssl);
		s->sni = calloc(max, sizeof *s->sni);
	}
	if (s->conns == NULL || s->bufs == NULL || s->free_slots == NULL ||
	    s->dirty.slot == NULL || s->paused.slot == NULL || s->keytab == NULL ||
	    poller_init(&s->pl, pcap) != 0 || s->scratch == NULL ||
	    s->rbatch == NULL || s->mbuf == NULL ||
	    s->pool.chunks == NULL || s->qheap == NULL || s->snd == NULL ||
	    s->snd_hash == NULL ||
	    pend_set_alloc(&s->pend[PEND_MAIN], pend_cap(&s->cfg, PEND_MAIN)) != 0 ||
	    pend_set_alloc(&s->pend[PEND_PORT80],
	    pend_cap(&s->cfg, PEND_PORT80)) != 0 ||
	    pend_set_alloc(&s->pend[SET_REG], pend_cap(&s->cfg, SET_REG)) != 0 ||
	    s->dirty.on == NULL || s->paused.on == NULL ||
	    s->spare_q.slot == NULL || s->spare_q.on == NULL ||
	    (s->tls_mode && (s->ssl == NULL || s->sni == NULL))) {
		snprintf(err, errlen, "cannot reserve %zu bytes for -max-clients %u",
		    derp_memory_bytes(&s->cfg), max);
		return -1;
	}
	pool_init(&s->pool, s->pool.chunks, pool_chunks(max));
	s->spare_cap = spare_chunks(max);
	/* Nothing here touches the slot, pool, record or table memory: a slot
	 * is CS_FREE and a table entry empty when zero, and records are taken
	 * in index order from snd_fresh, so pages become resident only when
	 * used, and idle RSS does not grow with -max-clients. */
	s->snd_fresh = 1;
	s->nfree = 0;
	s->fresh = 0;
	s->wait.head = s->wait.tail = -1;
	s->keytab_mask = ks - 1;
	rng_bytes(&s->rng, s->hash_seed, sizeof s->hash_seed);
	return 0;
}

/*
 * Every slot needs a descriptor: raise the soft RLIMIT_NOFILE towards the hard
 * limit, and if that is still short, serve fewer slots (saying so) rather than
 * spin on accept() failing with EMFILE.
 */
#define FDS_RESERVED	(32 + VERIFY_CHECKS + MESH_LINKS_MAX)	/* listeners,
					 * STUN, stdio, files opened at start-up,
					 * admission checks, mesh links */

static int
fd_limit_fit(struct derp_server *s)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)s->cfg.max_clients + FDS_RESERVED;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -1;
	if (rl.rlim_cur < want) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ?
		    want : rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
		if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
			return -1;
	}
	if (rl.rlim_cur < want) {
		logf("open-file limit %lu leaves room for %lu of -max-clients %u",
		    (unsigned long)rl.rlim_cur,
		    (unsigned long)(rl.rlim_cur > FDS_RESERVED ?
		    rl.rlim_cur - FDS_RESERVED : 1), s->cfg.max_clients);
		s->cfg.max_clients = rl.rlim_cur > FDS_RESERVED + 1 ?
		    (unsigned)(rl.rlim_cur - FDS_RESERVED) : 1;
	}
	return 0;
}

/*
 * The region's mesh key (derp-protocol.md 15.1): 64 hex digits, either case,
 * surrounding white space trimmed; anything else is fatal.  All zero counts
 * as none.  0, or -1 with err.
 */
static int
mesh_key_setup(struct derp_server *s, char *err, size_t errlen)
{
	const char *k = s->cfg.mesh_key_hex;
	char hex[65];
	size_t n;

	if (k == NULL || k[0] == '\0') {
		logf("No mesh key configured");
		return 0;
	}
	while (*k == ' ' || *k == '\t' || *k == '\n' || *k == '\r')
		k++;
	n = strlen(k);
	while (n > 0 && (k[n - 1] == ' ' || k[n - 1] == '\t' ||
	    k[n - 1] == '\n' || k[n - 1] == '\r'))
		n--;
	if (n != 64) {
		snprintf(err, errlen, "mesh key must be 64 hex digits");
		return -1;
	}
	memcpy(hex, k, 64);
	hex[64] = '\0';
	if (hex_decode32(s->mesh_key, hex) < 0) {
		snprintf(err, errlen, "mesh key must be 64 hex digits");
		return -1;
	}
	s->has_mesh_key = !is_zero(s->mesh_key, KEY_BYTES);
	logf(s->has_mesh_key ? "mesh key configured" :
	    "No mesh key configured (all zero)");
	return 0;
}

struct derp_server *
derp_create(const struct derp_config *cfg, char *err, size_t errlen)
{
	struct derp_server *s;
	char pubshort[8];
	int port;

	s = calloc(1, sizeof *s);
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->cfg = *cfg;
	s->main_fd = s->http_fd = s->stun_fd[0] = s->stun_fd[1] = -1;
#ifndef DERP_NO_BOOTDNS
	s->bdns.fd = -1;
#endif
	if (rng_init(&s->rng) != 0) {
		snprintf(err, errlen, "cannot read /dev/urandom: %s", strerror(errno));
		goto fail;
	}
	if (s->cfg.dev)
		s->cfg.addr = ":3340";
	if (parse_hostport(s->cfg.addr, s->host, sizeof s->host, &s->port) != 0) {
		snprintf(err, errlen, "invalid -a %s", s->cfg.addr);
		goto fail;
	}
	if (s->cfg.max_clients == 0 || s->cfg.max_clients > (1u << 24)) {
		snprintf(err, errlen, "-max-clients must be 1..16777216");
		goto fail;
	}
	if (s->cfg.max_handshakes == 0) {
		snprintf(err, errlen, "-max-handshakes must be at least 1");
		goto fail;
	}
	if (s->cfg.queue_depth == 0 || s->cfg.queue_depth > 65536) {
		snprintf(err, errlen, "queue depth must be 1..65536");
		goto fail;
	}
	if (s->cfg.keepalive_ms < KEEPALIVE_MIN_MS ||
	    s->cfg.keepalive_ms > KEEPALIVE_MAX_MS) {
		snprintf(err, errlen, "KeepAlive interval must be 1 s .. 1 h");
		goto fail;
	}
	s->tls_mode = s->port == 443 || strcmp(s->cfg.certmode, "manual") == 0 ||
	    s->cfg.tls;
	s->start_unix = (int64_t)time(NULL);
	if (debug_setup(s, err, errlen) != 0)
		goto fail;

	if (s->cfg.stun) {
		s->stun_fd[0] = sock_listen(s->host, s->cfg.stun_port, SOCK_DGRAM,
		    NULL, err, errlen);
		if (s->stun_fd[0] < 0)
			goto fail;
		logf("STUN server listening on %s%s%s:%d",
		    strchr(s->host, ':') ? "[" : "", s->host[0] ? s->host : "[::]",
		    strchr(s->host, ':') ? "]" : "", s->cfg.stun_port);
	}

	if (s->cfg.dev) {
		rng_bytes(&s->rng, s->priv, KEY_BYTES);
		s->priv[0] &= 248;
		s->priv[31] = (uint8_t)((s->priv[31] & 127) | 64);
	} else if (keyfile_load_or_create(&s->rng, s->cfg.config_path, s->priv, err,
	    errlen) != 0) {
		goto fail;
	}
	nacl_x25519_base(s->pub, s->priv);
	if (mesh_key_setup(s, err, errlen) != 0)
		goto fail;

	if (s->cfg.rate_config != NULL && s->cfg.rate_config[0] != '\0' &&
	    rate_load(s, err, errlen) != 0)
		goto fail;
	if (bootdns_setup(s, err, errlen) != 0)
		goto fail;
	if (s->tls_mode) {
		if (certs_setup(s, err, errlen) != 0)
			goto fail;
		tls_choose_suites(s);
		/* The signer's table of multiples of G (32 KB, ~1.5 ms);
		 * should its self-check fail, BearSSL signs instead. */
		if (p256_init() != 0)
			logf("derp: P-256 table self-check failed; signing with"
			    " BearSSL's code");
	}
	s->main_fd = sock_listen(s->host, s->port, SOCK_STREAM, &s->cfg, err,
	    errlen);
	if (s->main_fd < 0)
		goto fail;
	if (s->tls_mode && s->cfg.http_port >= 0) {
		port = s->cfg.http_port;
		s->http_fd = sock_listen(s->host, port, SOCK_STREAM, &s->cfg,
		    err, errlen);
		if (s->http_fd < 0)
			goto fail;
	}
	if (fd_limit_fit(s) != 0) {
		snprintf(err, errlen, "getrlimit: %s", strerror(errno));
		goto fail;
	}
	if (derp_alloc(s, err, errlen) != 0 || admit_setup(s, err, errlen) != 0 ||
	    mesh_setup(s, err, errlen) != 0)
		goto fail;
	if (poller_add(&s->pl, s->main_fd, TAG_MAIN, POLLIN,
	    &s->lpidx[-1 - TAG_MAIN]) != 0 || (s->http_fd >= 0 &&
	    poller_add(&s->pl, s->http_fd, TAG_HTTP, POLLIN,
	    &s->lpidx[-1 - TAG_HTTP]) != 0) || (s->stun_fd[0] >= 0 &&
	    poller_add(&s->pl, s->stun_fd[0], TAG_STUN4, POLLIN,
	    &s->lpidx[-1 - TAG_STUN4]) != 0)) {
		snprintf(err, errlen, "poller: %s", strerror(errno));
		goto fail;
	}

	key_short(pubshort, s->pub);	/* no key is logged whole */
	logf("server public key %s", pubshort);
	logf("reserved %zu bytes for -max-clients %u (%u packet chunks of %u "
	    "bytes); resident memory grows with use up to that",
	    derp_memory_bytes(&s->cfg), s->max, pool_chunks(s->max),
	    (unsigned)sizeof(struct chunk));
	if (s->tls_mode)
		logf("derper: serving on %s with TLS (%s first)", s->cfg.addr,
		    s->suites[0] == BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 ||
		    s->suites[0] == BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 ?
		    "AES-GCM" : "ChaCha20-Poly1305", poller_name);
	else
		logf("derper: serving on %s (%s)", s->cfg.addr, poller_name);
	return s;
fail:
	derp_destroy(s);
	return NULL;
}

/* Still doing expensive public-key work: the TLS handshake or ClientInfo. */
static int
conn_in_handshake(const struct conn *c)
{
	return c->state == CS_DERP_INFO || (c->tls && !c->tls_up);
}

/*
 * Handshakes against traffic.  A full handshake costs ~2 ms of this core
 * (ECDSA signature, two X25519, the ClientInfo box); a flood of them must not
 * starve established clients.  So each round handshake steps may take as long
 * as everything else took in the round before, and always at least one
 * step: under contention each side gets about half the core.  Steps not
 * taken stay ready and are reported again next round (level-triggered),
 * which costs a readiness check of each of them: with a crowd of handshakes
 * and no traffic, one step per round spent more on those checks than a
 * step's non-cryptographic work (256 ready sockets re-polled for each step).
 * So after a round that served no registered client, handshakes may take
 * HS_SLICE_MIN_US; a round with traffic keeps the plain rule, so a flood
 * adds no latency beyond it.
 */
static int
hs_admit(const struct derp_server *s, int64_t hs_used_us)
{
	return hs_used_us == 0 || hs_used_us < s->hs_slice_us;
}

/* ================================================================== SHUTDOWN */

/*
 * derp_stop() starts a drain (derp-protocol.md 16 says what derper does: it
 * just exits; a client then sees its connection reset with packets lost).
 * Here the listeners and STUN close at once, so a restarted relay can bind
 * and new connections go elsewhere; what each client's queues already hold
 * is written out; then each connection gets a TLS close_notify and a FIN.
 * Input is read and discarded meanwhile, never routed: unread bytes at
 * close() would make the kernel send a reset instead of the FIN.  Whatever
 * is left at SHUTDOWN_DRAIN_MS (a client that does not read) is closed then.
 */
#define SHUTDOWN_DRAIN_MS	1000
#define SHUTDOWN_READ_TRIES	8	/* discarding reads before a close */

static void
listener_close(struct derp_server *s, int *fd, int32_t tag)
{
	int32_t moved;

	if (*fd < 0)
		return;
	moved = poller_del(&s->pl, *fd, s->lpidx[-1 - tag]);
	poller_moved(s, moved, s->lpidx[-1 - tag]);
	close(*fd);
	*fd = -1;
}

/* Anything c still has to write, queued or in its buffers. */
static int
conn_has_output(const struct derp_server *s, const struct conn *c)
{
	return conn_out_pending(c) || c->out_unflushed || c->raw.len > 0 ||
	    c->out_pkt != NIL || c->q[Q_DISCO].head != NIL ||
	    c->q[Q_OTHER].head != NIL || c->pong_pending ||
	    c->snd.gone_head != NIL || watch_pending(s, c);
}

/* Close c now, with a FIN: what it sent is read and thrown away first. */
static void
conn_close_fin(struct derp_server *s, struct conn *c)
{
	int tries;

	for (tries = 0; tries < SHUTDOWN_READ_TRIES; tries++)
		if (read(c->fd, s->scratch, SCRATCH_BYTES) <= 0)
			break;
	if (!c->fin_sent)
		(void)shutdown(c->fd, SHUT_WR);
	conn_close(s, c);
}

static void
shutdown_begin(struct derp_server *s)
{
	uint32_t i, n = 0, queued = 0;
	struct conn *c;
	uint8_t li;

	s->stopping = 1;
	s->stop_begin_ms = s->now;
	s->stop_deadline_ms = s->now + SHUTDOWN_DRAIN_MS;
	listener_close(s, &s->main_fd, TAG_MAIN);
	listener_close(s, &s->http_fd, TAG_HTTP);
	listener_close(s, &s->stun_fd[0], TAG_STUN4);
#ifndef DERP_NO_MESH
	for (li = 0; li < s->nlinks; li++)
		mesh_link_down(s, &s->links[li], "relay shutting down");
#else
	(void)li;
#endif
	for (i = 0; i < s->fresh; i++) {
		c = &s->conns[i];
		if (c->state == CS_FREE)
			continue;
		if (c->state != CS_DERP) {	/* no packet of anyone's */
			conn_close_fin(s, c);
			continue;
		}
		n++;
		queued += c->q[Q_DISCO].count + c->q[Q_OTHER].count;
		mark_dirty(s, c);
	}
	logf("derp: shutting down: %u connections, %u packets queued; "
	    "draining for up to %d ms", n, queued, SHUTDOWN_DRAIN_MS);
}

/* One drain round: the FIN for each connection whose output is out, a
 * close for everything at the deadline.  The connections left. */
static uint32_t
shutdown_round(struct derp_server *s)
{
	uint32_t i, left = 0;
	struct conn *c;

	for (i = 0; i < s->fresh; i++) {
		c = &s->conns[i];
		if (c->state == CS_FREE)
			continue;
		if (s->now >= s->stop_deadline_ms) {
			conn_close_fin(s, c);
			continue;
		}
		left++;
		if (c->fin_sent || conn_has_output(s, c))
			continue;
		if (c->tls && !c->tls_closing) {
			c->tls_closing = 1;
			br_ssl_engine_close(&c->ssl->eng);
			conn_pump(s, c, 0);
			if (c->dead) {
				conn_close(s, c);
				left--;
			} else {
				conn_update_interest(s, c);
			}
			continue;
		}
		if (c->tls && conn_out_pending(c))
			continue;
		(void)shutdown(c->fd, SHUT_WR);
		c->fin_sent = 1;
	}
	return left;
}

/* ====================================================================== LOOP */

static void
loop_start(struct derp_server *s)
{
	s->started = 1;
	s->now = now_ms();
	s->next_sweep_ms = s->now + LOOP_TICK_MS;
	s->accept_last_ms = s->now;
	s->accept_tokens = (double)s->cfg.accept_burst;
}

int
derp_next_timeout_ms(struct derp_server *s)
{
	int64_t t;

	if (!s->started)
		loop_start(s);
	t = s->next_sweep_ms - now_ms();
	if (s->stopping != s->stop || s->reload)
		t = 0;
	if (t < 0)
		t = 0;
	if (t > LOOP_TICK_MS)
		t = LOOP_TICK_MS;
	if ((s->paused.count > 0 || s->stopping) && t > PAUSED_RETRY_MS)
		t = PAUSED_RETRY_MS;
	return (int)t;
}

size_t
derp_pollfds(struct derp_server *s, struct derp_pollfd *fds, size_t cap)
{
#ifdef POLLER_EPOLL
	if (cap > 0) {
		fds[0].fd = s->pl.epfd;
		fds[0].events = POLLIN;
	}
	return 1;
#else
	uint32_t i;

	for (i = 0; i < s->pl.n && i < cap; i++) {
		fds[i].fd = s->pl.pfd[i].fd;
		fds[i].events = s->pl.pfd[i].events;
	}
	return s->pl.n;
#endif
}

/* Dispatch one readiness report. */
static void
loop_ready(struct derp_server *s, int32_t tag, short rev, int64_t *hs_used_us)
{
	struct conn *c;
	int64_t t_us;

	if (tag >= 0) {
		c = &s->conns[tag];
		/* A slot closed earlier in this round is skipped (also when
		 * a waiter took it: that one is not read before its start);
		 * one reused by an accept meanwhile just finds nothing to
		 * read. */
		if (c->state == CS_FREE || c->state == CS_WAIT)
			return;
		if (!conn_in_handshake(c)) {
			s->round_traffic = 1;
			conn_service(s, c, rev);
		} else if (hs_admit(s, *hs_used_us)) {
			t_us = now_us();
			conn_service(s, c, rev);
			*hs_used_us += now_us() - t_us + 1;
		}
	} else if (tag <= TAG_CHECK0) {
		struct vcheck *k = &s->admit.checks[TAG_CHECK0 - tag];

		if (k->phase == VC_CONNECT || k->phase == VC_TALK)
			check_service(s, k, rev);
#ifndef DERP_NO_MESH
	} else if (tag <= TAG_MESH0) {
		struct mesh_link *l = &s->links[TAG_MESH0 - tag];

		if (l->phase >= ML_CONNECT && l->phase <= ML_DERP)
			mesh_service(s, l, rev);
#endif
	} else if (tag == TAG_MAIN) {
		conn_accept(s, s->main_fd, 0);
	} else if (tag == TAG_HTTP) {
		conn_accept(s, s->http_fd, 1);
	} else {
		stun_service(s, s->stun_fd[0]);
	}
}

/*
 * One round: wait up to timeout_ms for readiness, serve it, then what the
 * round left (paused input, dirty output, links) and the timers when due.
 * 0 to go on, 1 once stopped (the drain done), -1 on a loop error.
 */
static int
loop_round(struct derp_server *s, int timeout_ms)
{
	int n, i;
	int64_t round_us, hs_used_us;

	if (!s->started)
		loop_start(s);
	if (s->reload) {
		char err[256];

		s->reload = 0;
		if (s->cfg.rate_config != NULL && s->cfg.rate_config[0] &&
		    rate_load(s, err, sizeof err) != 0)
			logf("%s; keeping the previous limits", err);
		if (s->tls_mode)
			certs_reload_all(s, 1);
	}
	if (s->stop && !s->stopping) {
		s->now = now_ms();
		shutdown_begin(s);
		timeout_ms = 0;
	}
	n = poller_wait(&s->pl, timeout_ms);
	/* A signal that stops the relay ends the wait whatever errno says
	 * (qemu-user has been seen to report an interrupted epoll_wait as
	 * something other than EINTR). */
	if (n < 0 && errno != EINTR && !s->stop) {
		logf("poll: %s", strerror(errno));
		return -1;
	}
	s->now = now_ms();
	round_us = now_us();
	hs_used_us = 0;
	s->round_traffic = 0;
	for (i = 0; i < n; i++)
		loop_ready(s, s->pl.ready[i].tag, s->pl.ready[i].revents,
		    &hs_used_us);
	if (s->admit.on && !s->stopping)
		admit_pump(s);
	wait_start(s);
	input_resume_paused(s);
	output_flush_dirty(s);
#ifndef DERP_NO_MESH
	if (s->links_dirty && !s->stopping)
		mesh_flush(s);
#endif
	if (s->now >= s->next_sweep_ms) {
		timers_sweep(s);
		if (!s->stopping) {
			if (s->admit.on)
				admit_tick(s);
#ifndef DERP_NO_MESH
			if (s->nlinks > 0)
				mesh_tick(s);
#endif
			certs_tick(s);
			bootdns_tick(s);
		}
		output_flush_dirty(s);
		s->next_sweep_ms = s->now + LOOP_TICK_MS;
	}
	s->hs_slice_us = now_us() - round_us - hs_used_us;
	if (!s->round_traffic && s->hs_slice_us < HS_SLICE_MIN_US)
		s->hs_slice_us = HS_SLICE_MIN_US;
	if (s->stopping && shutdown_round(s) == 0) {
		logf("derp: stopped after %lld ms", (long long)(now_ms() -
		    s->stop_begin_ms));
		return 1;
	}
	return 0;
}

int
derp_step(struct derp_server *s)
{
	return loop_round(s, 0);
}

int
derp_run(struct derp_server *s)
{
	int rc;

	while ((rc = loop_round(s, derp_next_timeout_ms(s))) == 0)
		continue;
	return rc < 0 ? -1 : 0;
}

void
derp_stop(struct derp_server *s)
{
	s->stop = 1;
}

void
derp_reload(struct derp_server *s)
{
	s->reload = 1;
}

void
derp_destroy(struct derp_server *s)
{
	uint8_t k;

	if (s == NULL)
		return;
	server_close_sockets(s);
	acme_stop(s);
	bootdns_stop(s);
	admit_stop(s);
	mesh_stop(s);
	for (k = 0; k < s->nident; k++) {
		bank_clear(&s->ident[k].bank[0]);
		bank_clear(&s->ident[k].bank[1]);
	}
	free(s->conns);
	free(s->bufs);
	free(s->free_slots);
	ring_free(&s->dirty);
	ring_free(&s->paused);
	ring_free(&s->spare_q);
	free(s->keytab);
	poller_free(&s->pl);
	free(s->scratch);
	free(s->rbatch);
	free(s->mbuf);
	free(s->pool.chunks);
	free(s->ssl);
	free(s->sni);
	free(s->qheap);
	free(s->snd);
	free(s->snd_hash);
	pend_set_free(&s->pend[PEND_MAIN]);
	pend_set_free(&s->pend[PEND_PORT80]);
	pend_set_free(&s->pend[SET_REG]);
	free(s);
}

/* ================================================================ FLAGS, MAIN */

#ifndef DERP_NO_MAIN

/*
 * derper's command line, parsed with Go's flag package rules
 * (derper-compat.md section 1): -name or --name; -name=value or -name value;
 * booleans only as -name or -name=bool; parsing stops at the first non-flag
 * or "--".  A flag whose feature this relay lacks is accepted only at a value
 * that leaves the feature off; otherwise the relay refuses to start, naming it.
 */
enum flag_type { F_BOOL, F_STRING, F_INT, F_DURATION, F_FLOAT };

struct flag {
	const char *name;
	enum flag_type type;
	const char *def;	/* Go's "(default ...)" text; NULL = zero value */
	const char *usage;
	const char *missing;	/* feature not built: refuse enabling values */
	const char *sval;	/* value as given (strings) */
	int64_t ival;		/* ints; durations in ns; bools 0/1 */
	double fval;
	int set;
};

#ifdef DERP_NO_BOOTDNS
#define BOOTDNS_MISSING "bootstrap DNS"
#else
#define BOOTDNS_MISSING NULL
#endif
#ifdef DERP_NO_ACME
#define ACME_MISSING "ACME"
#define ACME_CA_FILE_TEXT ""
#else
#define ACME_MISSING NULL
#define ACME_CA_FILE_TEXT ACME_CA_FILE_DEFAULT
#endif

#ifdef DERP_NO_MESH
#define MESH_MISSING "the mesh client (MESH=0)"
#else
#define MESH_MISSING NULL
#endif

static struct flag flags[] = {
	{ "a", F_STRING, "\":443\"", "listen address: \":port\", \"ip:port\" or \"[ipv6]:port\"; no host means every interface. TLS when the port is 443 or -certmode is manual, plain HTTP otherwise", NULL, ":443", 0, 0, 0 },
	{ "accept-connection-burst", F_INT, "9223372036854775807", "connections accepted at once above -accept-connection-limit", NULL, NULL, INT64_MAX, 0, 0 },
	{ "accept-connection-limit", F_FLOAT, "+Inf", "connections accepted per second on the TLS listener", NULL, NULL, 0, INFINITY, 0 },
	{ "ace", F_BOOL, NULL, "serve the experimental CONNECT proxy", "the CONNECT proxy (-ace)", NULL, 0, 0, 0 },
	{ "acme-ca-file", F_STRING, "\"" ACME_CA_FILE_TEXT "\"", "PEM roots the ACME server's TLS certificate is verified against (not a derper flag)", ACME_MISSING, ACME_CA_FILE_TEXT, 0, 0, 0 },
	{ "acme-directory", F_STRING, NULL, "ACME directory URL (not a derper flag); empty means Let's Encrypt's, or Google's for -certmode gcp", ACME_MISSING, "", 0, 0, 0 },
	{ "acme-eab-key", F_STRING, NULL, "ACME external account binding key, base64url", ACME_MISSING, "", 0, 0, 0 },
	{ "acme-eab-kid", F_STRING, NULL, "ACME external account binding key ID", ACME_MISSING, "", 0, 0, 0 },
	{ "acme-email", F_STRING, NULL, "contact address for the ACME account", ACME_MISSING, "", 0, 0, 0 },
	{ "acme-ip-certs", F_BOOL, NULL, "with -certmode letsencrypt, get Let's Encrypt certificates for IP addresses (short-lived profile when offered): an IP -hostname's, or beside a DNS -hostname each local address that clients reach without SNI", ACME_MISSING, NULL, 0, 0, 0 },
	{ "acme-webroot", F_STRING, NULL, "serve /.well-known/acme-challenge/ files from DIR/.well-known/acme-challenge/ on the port-80 listener, for certbot --webroot, acme.sh and the like (not a derper flag)", NULL, "", 0, 0, 0 },
	{ "allow-root", F_BOOL, NULL, "run as root without -user (not a derper flag); without either the relay refuses to start as root", NULL, NULL, 0, 0, 0 },
	{ "bootstrap-dns-names", F_STRING, NULL, "comma-separated names whose addresses /bootstrap-dns publishes, looked up every 10 minutes", BOOTDNS_MISSING, "", 0, 0, 0 },
	{ "c", F_STRING, NULL, "path of the JSON file holding the server's private key (created if missing)", NULL, "", 0, 0, 0 },
	{ "certdir", F_STRING, NULL, "directory of the TLS certificate and key files", NULL, NULL, 0, 0, 0 },
	{ "certmode", F_STRING, "\"letsencrypt\"", "where the TLS certificate comes from: manual, letsencrypt or gcp (ACME); the files are reloaded on SIGHUP and when they change", NULL, "letsencrypt", 0, 0, 0 },
	{ "derp", F_BOOL, "true", "relay DERP traffic; false keeps STUN and the other endpoints but /derp answers 404", NULL, NULL, 1, 0, 0 },
	{ "debug-allow", F_STRING, "\"loopback,private,tailscale\"", "who may read /debug/ (metrics): comma-separated keywords loopback, private, tailscale, any, none and CIDR prefixes (not a derper flag); a request with X-Forwarded-For never may", NULL, "loopback,private,tailscale", 0, 0, 0 },
	{ "dev", F_BOOL, NULL, "development mode: listen on :3340 with a fresh key each run (overrides -a and -c)", NULL, NULL, 0, 0, 0 },
	{ "home", F_STRING, NULL, "the page at /: empty for the default page, \"blank\" for an empty one, or an http(s) URL to redirect to", NULL, "", 0, 0, 0 },
	{ "hostname", F_STRING, "\"derp.tailscale.com\"", "TLS server name for the certificate; with -certmode manual it may be an IP address (a self-signed certificate is made for it, and SNI is not checked)", NULL, "derp.tailscale.com", 0, 0, 0 },
	{ "http-port", F_INT, "80", "plain-HTTP port in TLS mode (captive-portal check, redirects), on the host of -a; -1 disables it", NULL, NULL, 80, 0, 0 },
	{ "max-clients", F_INT, "4096", "connection slots reserved at start-up (not a derper flag); memory is reserved for this many and further connections are refused", NULL, NULL, MAX_CLIENTS_DEFAULT, 0, 0 },
	{ "max-handshakes", F_INT, "256", "connections at once that have not finished TLS, the /derp request and ClientInfo, counted by source (IPv4 address, IPv6 /64; not a derper flag); at the limit a newcomer from a source holding 2 fewer than the largest evicts the largest's oldest, any other waits in line (at most 15s) until there is room, a holder has had 5s or stalled 2s, or it is silent 2s at the head; with every -max-clients slot taken, a newcomer from a smaller source evicts the largest source's oldest, one from the largest only after its oldest has had 5s, else it is closed. The -http-port listener has its own 32", NULL, NULL, MAX_HANDSHAKES_DEFAULT, 0, 0 },
	{ "mesh-ca-file", F_STRING, "\"" VERIFY_CA_FILE_DEFAULT "\"", "PEM roots the -mesh-with servers' certificates are verified against, unless pinned (not a derper flag)", MESH_MISSING, VERIFY_CA_FILE_DEFAULT, 0, 0, 0 },
	{ "mesh-psk-file", F_STRING, NULL, "file holding the region's mesh key (64 hex digits): clients presenting it may watch connections, forward packets and close peers, and skip admission and rate limits", NULL, "", 0, 0, 0 },
	{ "mesh-with", F_STRING, NULL, "comma-separated entries host[:port][/dialhost][=sha256-raw:HEX] of the region's other servers (this server's own entry is skipped); the pin form is ours", MESH_MISSING, "", 0, 0, 0 },
	{ "rate-config", F_STRING, NULL, "JSON file with per-client receive rate limits, reloaded on SIGHUP", NULL, "", 0, 0, 0 },
	{ "secrets-cache-dir", F_STRING, NULL, "cache directory for -secrets-url", NULL, "", 0, 0, 0 },
	{ "secrets-path-prefix", F_STRING, "\"prod/derp\"", "secret name prefix for -secrets-url", NULL, "prod/derp", 0, 0, 0 },
	{ "secrets-url", F_STRING, NULL, "setec server to fetch the mesh key from", "setec secrets", "", 0, 0, 0 },
	{ "socket", F_STRING, NULL, "tailscaled's LocalAPI socket for -verify-clients; empty means " VERIFY_SOCKET_DEFAULT, NULL, "", 0, 0, 0 },
	{ "stun", F_BOOL, "true", "serve STUN on UDP, on the host of -a", NULL, NULL, 1, 0, 0 },
	{ "stun-port", F_INT, "3478", "UDP port for STUN", NULL, NULL, 3478, 0, 0 },
	{ "syslog", F_BOOL, NULL, "log to the local syslog socket (/dev/log: syslogd, OpenWrt's logd) instead of stderr, facility daemon (not a derper flag)", NULL, NULL, 0, 0, 0 },
	{ "tcp-keepalive-time", F_DURATION, "10m0s", "TCP keepalive idle time and interval on accepted connections", NULL, NULL, 600000000000LL, 0, 0 },
	{ "tcp-user-timeout", F_DURATION, "15s", "TCP_USER_TIMEOUT on accepted connections", NULL, NULL, 15000000000LL, 0, 0 },
	{ "tcp-write-timeout", F_DURATION, "2s", "close a client whose output makes no progress for this long; 0 never", NULL, NULL, 2000000000LL, 0, 0 },
	{ "unpublished-bootstrap-dns-names", F_STRING, NULL, "comma-separated names /bootstrap-dns answers only when asked for them (?q=name)", BOOTDNS_MISSING, "", 0, 0, 0 },
	{ "user", F_STRING, NULL, "after binding the ports and reading the key and certificate, switch to this user and its group (not a derper flag)", NULL, "", 0, 0, 0 },
	{ "verify-client-ca-file", F_STRING, "\"" VERIFY_CA_FILE_DEFAULT "\"", "PEM roots an https -verify-client-url's certificate is verified against (not a derper flag)", NULL, VERIFY_CA_FILE_DEFAULT, 0, 0, 0 },
	{ "verify-client-url", F_STRING, NULL, "admission webhook URL (http:// or https://) POSTed {\"NodePublic\",\"Source\"} for every client; it admits with 200 and {\"Allow\":true}", NULL, "", 0, 0, 0 },
	{ "verify-client-url-fail-open", F_BOOL, "true", "admit clients when -verify-client-url cannot be reached", NULL, NULL, 1, 0, 0 },
	{ "verify-clients", F_BOOL, NULL, "admit only clients the local tailscaled knows (its node and its peers)", NULL, NULL, 0, 0, 0 },
	{ "verbose", F_BOOL, NULL, "log each connection accepted, registered and closed (not a derper flag)", NULL, NULL, 0, 0, 0 },
	{ "version", F_BOOL, NULL, "print the version and exit", NULL, NULL, 0, 0, 0 },
};
#define NFLAGS (sizeof flags / sizeof flags[0])

static const char *progname = "derp";

static struct flag *
flag_find(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < NFLAGS; i++)
		if (strlen(flags[i].name) == len &&
		    memcmp(flags[i].name, name, len) == 0)
			return &flags[i];
	return NULL;
}

static void
usage(FILE *f)
{
	static const char *tn[] = { "", "string", "int", "duration", "float" };
	const char *u;
	size_t i;

	fprintf(f, "Usage of %s:\n", progname);
	for (i = 0; i < NFLAGS; i++) {
		fprintf(f, "  -%s", flags[i].name);
		if (flags[i].type != F_BOOL)
			fprintf(f, " %s", tn[flags[i].type]);
		fprintf(f, "%s", strlen(flags[i].name) +
		    (flags[i].type != F_BOOL ? 1 + strlen(tn[flags[i].type]) : 0) <= 1 ?
		    "\t" : "\n    \t");
		for (u = flags[i].usage; *u != '\0'; u++) {
			fputc(*u, f);
			if (*u == '\n')
				fputs("    \t", f);
		}
		if (flags[i].def != NULL)
			fprintf(f, " (default %s)", flags[i].def);
		if (flags[i].missing != NULL)
			fprintf(f, " [not built yet: %s]", flags[i].missing);
		fputc('\n', f);
	}
}

/*
 * Go's strconv.ParseInt(s, 0, 64): sign; 0x, 0o, 0b or a leading 0 (octal);
 * underscores only between digits or right after a base prefix.
 */
static int
parse_go_int(const char *s, int64_t *out)
{
	int neg = 0, base = 10, any = 0, sep_ok = 0;
	uint64_t v = 0, lim;
	int d;

	if (*s == '+' || *s == '-')
		neg = *s++ == '-';
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		base = 16;
	else if (s[0] == '0' && (s[1] == 'o' || s[1] == 'O'))
		base = 8;
	else if (s[0] == '0' && (s[1] == 'b' || s[1] == 'B'))
		base = 2;
	if (base != 10) {
		s += 2;
		sep_ok = 1;
	} else if (s[0] == '0' && s[1] != '\0') {
		base = 8;		/* "017": the 0 is a digit and a prefix */
	}
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; *s != '\0'; s++) {
		if (*s == '_') {
			if (!sep_ok || s[1] == '\0' || s[1] == '_')
				return -1;
			sep_ok = 0;
			continue;
		}
		d = hex_digit((unsigned char)*s);
		if (d < 0 || d >= base)
			return -1;
		if (v > (lim - (uint64_t)d) / (uint64_t)base)
			return -1;
		v = v * (uint64_t)base + (uint64_t)d;
		any = 1;
		sep_ok = 1;
	}
	if (!any)
		return -1;
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

/* Go's time.ParseDuration, in nanoseconds. */
static int
parse_go_duration(const char *s, int64_t *ns)
{
	static const struct { const char *u; double mult; } units[] = {
		{ "ns", 1 }, { "us", 1e3 }, { "\xc2\xb5s", 1e3 }, { "\xce\xbcs", 1e3 },
		{ "ms", 1e6 }, { "s", 1e9 }, { "m", 60e9 }, { "h", 3600e9 },
	};
	double total = 0, v, frac;
	int neg = 0, digits;
	size_t i, ul;

	if (*s == '+' || *s == '-')
		neg = *s++ == '-';
	if (strcmp(s, "0") == 0) {
		*ns = 0;
		return 0;
	}
	if (*s == '\0')
		return -1;
	while (*s != '\0') {
		v = 0;
		digits = 0;
		while (*s >= '0' && *s <= '9') {
			v = v * 10 + (*s++ - '0');
			digits++;
		}
		if (*s == '.') {
			s++;
			frac = 0.1;
			while (*s >= '0' && *s <= '9') {
				v += (*s++ - '0') * frac;
				frac /= 10;
				digits++;
			}
		}
		if (digits == 0)
			return -1;
		for (i = 0; i < sizeof units / sizeof units[0]; i++) {
			ul = strlen(units[i].u);
			/* "m" must not swallow "ms": try the longer units first */
			if (strncmp(s, units[i].u, ul) == 0 &&
			    !(ul == 1 && s[0] == 'm' && s[1] == 's'))
				break;
		}
		if (i == sizeof units / sizeof units[0])
			return -1;
		total += v * units[i].mult;
		s += ul;
	}
	if (total > 9.2e18)
		return -1;
	*ns = (int64_t)(neg ? -total : total);
	return 0;
}

/* Digits of base (10 or 16) into *v; how many (with one '.' among them
 * when dot, its place in *point: digits after it). */
static int
float_digits(const char **s, int base, double *v, int *after_point)
{
	int n = 0, d, point = -1;

	for (;; (*s)++) {
		if (**s == '.' && after_point != NULL && point < 0) {
			point = 0;
			continue;
		}
		d = **s >= '0' && **s <= '9' ? **s - '0' : base == 16 &&
		    (**s | 0x20) >= 'a' && (**s | 0x20) <= 'f' ?
		    (**s | 0x20) - 'a' + 10 : -1;
		if (d < 0)
			break;
		*v = *v * base + d;
		n++;
		if (point >= 0)
			point++;
	}
	if (after_point != NULL)
		*after_point = point < 0 ? 0 : point;
	return n;
}

/*
 * Go's strconv.ParseFloat for flag values: an optional sign, then "inf" or
 * "infinity" (any case), or decimal digits with an optional fraction and
 * e exponent, or a "0x" mantissa with its p exponent; "nan" unsigned.  A
 * finite text too large is an error (Go's ErrRange).  Ours rather than
 * strtod, which costs 8 KB of the static firmware binary; the result may
 * differ from a correctly rounded one in the last bit, which no flag feels.
 */
static int
parse_go_float(const char *s, double *out)
{
	double v = 0, e = 0, m;
	int neg = 0, hex = 0, after = 0, eneg = 0, n;
	long x;

	if (strcmp(s, "nan") == 0 || strcmp(s, "NaN") == 0 ||
	    strcmp(s, "NAN") == 0) {
		*out = NAN;
		return 0;
	}
	if (*s == '+' || *s == '-')
		neg = *s++ == '-';
	if (strlen(s) == 3 || strlen(s) == 8) {
		static const char inf[] = "infinity";
		size_t i, k = strlen(s);

		for (i = 0; i < k && (s[i] | 0x20) == inf[i]; i++)
			continue;
		if (i == k) {
			*out = neg ? -INFINITY : INFINITY;
			return 0;
		}
	}
	if (s[0] == '0' && (s[1] | 0x20) == 'x') {
		hex = 1;
		s += 2;
	}
	n = float_digits(&s, hex ? 16 : 10, &v, &after);
	if (n == 0)
		return -1;
	if ((*s | 0x20) == (hex ? 'p' : 'e')) {
		s++;
		if (*s == '+' || *s == '-')
			eneg = *s++ == '-';
		if (float_digits(&s, 10, &e, NULL) == 0)
			return -1;
	} else if (hex) {
		return -1;	/* Go: a hex mantissa needs its exponent */
	}
	if (*s != '\0')
		return -1;
	/* value = v * base^-after * (2 or 10)^(+-e) */
	x = (long)(e > 4000 ? 4000 : e) * (eneg ? -1 : 1) - (long)after *
	    (hex ? 4 : 1);
	for (m = hex ? 2 : 10; x > 0 && !isinf(v); x--)
		v *= m;
	for (; x < 0 && v != 0; x++)
		v /= m;
	if (isinf(v))
		return -1;
	*out = neg ? -v : v;
	return 0;
}

static int
parse_go_bool(const char *v, int64_t *out)
{
	static const char *t[] = { "1", "t", "T", "TRUE", "true", "True" };
	static const char *f[] = { "0", "f", "F", "FALSE", "false", "False" };
	size_t i;

	for (i = 0; i < 6; i++) {
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

static int
flag_set(struct flag *f, const char *v)
{
	switch (f->type) {
	case F_BOOL:
		if (parse_go_bool(v, &f->ival) != 0) {
			fprintf(stderr, "invalid boolean value \"%s\" for -%s: "
			    "parse error\n", v, f->name);
			return -1;
		}
		break;
	case F_STRING:
		f->sval = v;
		break;
	case F_INT:
		if (parse_go_int(v, &f->ival) != 0)
			goto bad;
		break;
	case F_DURATION:
		if (parse_go_duration(v, &f->ival) != 0)
			goto bad;
		break;
	case F_FLOAT:
		if (parse_go_float(v, &f->fval) != 0)
			goto bad;
		break;
	}
	f->set = 1;
	return 0;
bad:
	fprintf(stderr, "invalid value \"%s\" for flag -%s: parse error\n", v,
	    f->name);
	return -1;
}

/* 0 ok, 1 help requested, -1 error (message printed). */
static int
flags_parse(int argc, char **argv)
{
	const char *a, *eq, *name;
	size_t nlen;
	struct flag *f;
	int i;

	for (i = 1; i < argc; i++) {
		a = argv[i];
		if (a[0] != '-' || a[1] == '\0')
			break;			/* first positional: stop */
		name = a + 1;
		if (name[0] == '-') {
			name++;
			if (name[0] == '\0')
				break;		/* "--" */
		}
		if (name[0] == '-' || name[0] == '=') {
			fprintf(stderr, "bad flag syntax: %s\n", a);
			return -1;
		}
		eq = strchr(name, '=');
		nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
		f = flag_find(name, nlen);
		if (f == NULL) {
			if ((nlen == 1 && name[0] == 'h') ||
			    (nlen == 4 && memcmp(name, "help", 4) == 0))
				return 1;
			fprintf(stderr, "flag provided but not defined: -%.*s\n",
			    (int)nlen, name);
			return -1;
		}
		if (eq != NULL) {
			if (flag_set(f, eq + 1) != 0)
				return -1;
		} else if (f->type == F_BOOL) {
			f->ival = 1;
			f->set = 1;
		} else {
			if (i + 1 >= argc) {
				fprintf(stderr, "flag needs an argument: -%s\n",
				    f->name);
				return -1;
			}
			if (flag_set(f, argv[++i]) != 0)
				return -1;
		}
	}
	return 0;
}

/* A missing feature is refused at any value that would turn it on. */
static int
flags_check_missing(void)
{
	size_t i;
	struct flag *f;
	int on;

	for (i = 0; i < NFLAGS; i++) {
		f = &flags[i];
		if (f->missing == NULL || !f->set)
			continue;
		switch (f->type) {
		case F_BOOL: on = f->ival != 0; break;
		case F_STRING: on = f->sval[0] != '\0'; break;
		case F_INT: on = f->ival != INT64_MAX; break;
		case F_FLOAT: on = !isinf(f->fval) || f->fval < 0; break;
		default: on = 1; break;
		}
		if (on) {
			fprintf(stderr, "derp: -%s: %s is not built into this relay "
			    "yet\n", f->name, f->missing);
			return -1;
		}
	}
	return 0;
}

/* An int flag that counts slots: 1 to 2^24.  0, or -1 with a message. */
static int
flag_count(const char *name, unsigned *out)
{
	int64_t v = flag_find(name, strlen(name))->ival;

	if (v < 1 || v > (1 << 24)) {
		fprintf(stderr, "derp: -%s must be between 1 and %d\n", name,
		    1 << 24);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

static int64_t
ns_to_ms(int64_t ns)
{
	if (ns <= 0)
		return 0;
	return ns < 1000000 ? 1 : ns / 1000000;
}

/*
 * Privileges.  Root is needed only to bind ports below 1024 and perhaps to read
 * the key and certificate; all of that happens in derp_create().  Running a
 * network parser as root afterwards is a risk nothing pays for, so as root the
 * relay either switches to -user or is told with -allow-root that root is meant
 * (derper has neither flag: it runs as whoever starts it).
 */
struct run_as {
	uid_t uid;
	gid_t gid;
	char name[64];
};

/* Resolve -user before anything is bound, so a typo fails at once. */
static int
run_as_lookup(const char *user, int allow_root, struct run_as *ra)
{
	struct passwd *pw;

	if (user[0] == '\0') {
		if (geteuid() == 0 && !allow_root) {
			fprintf(stderr, "derp: refusing to run as root: give -user "
			    "NAME to switch to NAME once the ports are bound, or "
			    "-allow-root\n");
			return -1;
		}
		return 0;
	}
	errno = 0;
	pw = getpwnam(user);
	if (pw == NULL) {
		fprintf(stderr, "derp: -user %s: %s\n", user,
		    errno != 0 ? strerror(errno) : "no such user");
		return -1;
	}
	if (pw->pw_uid == 0) {
		fprintf(stderr, "derp: -user %s: that is root; name an "
		    "unprivileged user (or use -allow-root)\n", user);
		return -1;
	}
	if (geteuid() != 0 && pw->pw_uid != geteuid()) {
		fprintf(stderr, "derp: -user %s: only root can switch users\n",
		    user);
		return -1;
	}
	if (strlen(pw->pw_name) >= sizeof ra->name) {
		fprintf(stderr, "derp: -user %s: name too long\n", user);
		return -1;
	}
	ra->uid = pw->pw_uid;
	ra->gid = pw->pw_gid;
	memcpy(ra->name, pw->pw_name, strlen(pw->pw_name) + 1);
	return 0;
}

/*
 * Groups first (they need root), then the uid, then proof that root cannot
 * come back.  PR_SET_NO_NEW_PRIVS in any case: the relay never executes
 * anything, so no set-uid program or file capability can ever raise it again.
 */
static int
privileges_drop(const struct run_as *ra)
{
	if (ra->name[0] != '\0' && geteuid() == 0) {
		if (setgroups(1, &ra->gid) != 0 || setgid(ra->gid) != 0 ||
		    setuid(ra->uid) != 0) {
			logf("-user %s: %s", ra->name, strerror(errno));
			return -1;
		}
		if (setuid(0) == 0 || getuid() != ra->uid ||
		    geteuid() != ra->uid || getgid() != ra->gid ||
		    getegid() != ra->gid) {
			logf("-user %s: root privileges still held", ra->name);
			return -1;
		}
		logf("running as user %s (uid %lu, gid %lu)", ra->name,
		    (unsigned long)ra->uid, (unsigned long)ra->gid);
	}
#ifdef PR_SET_NO_NEW_PRIVS
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 && errno != EINVAL) {
		logf("prctl(PR_SET_NO_NEW_PRIVS): %s", strerror(errno));
		return -1;
	}
#endif
	return 0;
}

static struct derp_server *running;
static volatile sig_atomic_t stop_early;	/* a signal before derp_create
						 * returned */

static void
on_signal(int sig)
{
	if (sig == SIGHUP) {
		if (running != NULL)
			derp_reload(running);
	} else if (stop_early || (running != NULL && running->stop)) {
		_exit(1);	/* a second one: no drain, now */
	} else if (running == NULL) {
		stop_early = 1;
	} else {
		derp_stop(running);
	}
}

/*
 * -syslog: each line one RFC 3164 datagram on the local syslog socket,
 * "<30>Mmm dd hh:mm:ss derp[pid]: line" (facility daemon, severity info;
 * warning for lines that say so), as syslog(3) sends them; OpenWrt's logd
 * reads the same socket (logread -e derp).  DERP_SYSLOG_SOCKET names
 * another socket (tests).  A line the socket refuses goes to stderr.
 */
struct syslog_sink {
	int fd;
	struct sockaddr_un sa;
	unsigned long dropped;	/* lines the full socket refused */
};

static void
syslog_line(void *ctx, const char *line)
{
	static const char mon[12][4] = { "Jan", "Feb", "Mar", "Apr", "May",
	    "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct syslog_sink *sl = ctx;
	char msg[1200];
	time_t now = time(NULL);
	struct tm tm;
	int n, pri = 3 * 8 + (strncmp(line, "warning", 7) == 0 ? 4 : 6);

	if (localtime_r(&now, &tm) == NULL)
		memset(&tm, 0, sizeof tm);
	n = snprintf(msg, sizeof msg, "<%d>%s %2d %02d:%02d:%02d derp[%ld]: %s",
	    pri, mon[tm.tm_mon % 12], tm.tm_mday, tm.tm_hour, tm.tm_min,
	    tm.tm_sec, (long)getpid(), line);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof msg)
		n = (int)sizeof msg - 1;
	/* Never wait for the reader: a stalled syslogd would stop the loop.
	 * A full queue drops the line (counted, and said once there is
	 * room); no socket at all sends it to stderr. */
	if (sl->dropped > 0) {
		char note[96];
		int k = snprintf(note, sizeof note, "<28>derp[%ld]: %lu log "
		    "lines dropped: the syslog socket was full", (long)getpid(),
		    sl->dropped);

		if (k > 0 && (size_t)k < sizeof note && sendto(sl->fd, note,
		    (size_t)k, MSG_DONTWAIT, (struct sockaddr *)&sl->sa,
		    sizeof sl->sa) >= 0)
			sl->dropped = 0;
	}
	if (sendto(sl->fd, msg, (size_t)n, MSG_DONTWAIT,
	    (struct sockaddr *)&sl->sa, sizeof sl->sa) >= 0)
		return;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
		sl->dropped++;
	else
		fprintf(stderr, "%s\n", msg);
}

static int
syslog_open(struct syslog_sink *sl)
{
	const char *path = getenv("DERP_SYSLOG_SOCKET");

	if (path == NULL || path[0] == '\0')
		path = "/dev/log";
	memset(&sl->sa, 0, sizeof sl->sa);
	sl->sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sl->sa.sun_path) {
		fprintf(stderr, "derp: -syslog: socket path too long\n");
		return -1;
	}
	memcpy(sl->sa.sun_path, path, strlen(path) + 1);
	sl->fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (sl->fd < 0) {
		fprintf(stderr, "derp: -syslog: %s\n", strerror(errno));
		return -1;
	}
	(void)fcntl(sl->fd, F_SETFD, FD_CLOEXEC);
	derp_set_log(syslog_line, sl);
	return 0;
}

/*
 * The mesh key's text (derp-protocol.md 15.1): in -dev from
 * TAILSCALE_DERPER_MESH_KEY, else from -mesh-psk-file; derp_create checks
 * it.  0, or -1 with a message printed.
 */
static int
mesh_key_read(struct derp_config *cfg, char *buf, size_t cap)
{
	const char *path = flag_find("mesh-psk-file", 13)->sval;
	size_t n = 0;
	ssize_t r;
	int fd;

	if (cfg->dev) {
		cfg->mesh_key_hex = getenv("TAILSCALE_DERPER_MESH_KEY");
		return 0;
	}
	if (path == NULL || path[0] == '\0')
		return 0;
	if ((fd = open(path, O_RDONLY)) < 0) {
		fprintf(stderr, "derp: -mesh-psk-file %s: %s\n", path,
		    strerror(errno));
		return -1;
	}
	while (n < cap - 1 && (r = read(fd, buf + n, cap - 1 - n)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			fprintf(stderr, "derp: -mesh-psk-file %s: %s\n", path,
			    strerror(errno));
			close(fd);
			return -1;
		}
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	if (n == cap - 1 || strlen(buf) != n) {
		fprintf(stderr, "derp: -mesh-psk-file %s: not a mesh key\n",
		    path);
		return -1;
	}
	cfg->mesh_key_hex = buf;
	return 0;
}

int
main(int argc, char **argv)
{
	struct derp_config cfg;
	struct run_as ra;
	struct sigaction sa;
	char err[512];
	static char mesh_key[1024];
	static struct syslog_sink sl;
	struct derp_server *srv;
	const char *qd;
	int64_t v;
	int rc;

	if (argc > 0 && argv[0] != NULL)
		progname = argv[0];
#ifndef DERP_NO_PROBE
	if (argc > 1 && strcmp(argv[1], "probe") == 0)
		return probe_main(argc - 1, argv + 1);
#endif
	rc = flags_parse(argc, argv);
	if (rc != 0) {
		usage(stderr);
		return rc > 0 ? 0 : 2;
	}
	if (flags_check_missing() != 0)
		return 1;
	if (flag_find("version", 7)->ival) {
		printf("%s\n", DERP_VERSION);
		return 0;
	}
	derp_config_defaults(&cfg);
	cfg.addr = flag_find("a", 1)->sval;
	cfg.http_port = (int)flag_find("http-port", 9)->ival;
	cfg.stun_port = (int)flag_find("stun-port", 9)->ival;
	cfg.stun = (int)flag_find("stun", 4)->ival;
	cfg.derp = (int)flag_find("derp", 4)->ival;
	cfg.config_path = flag_find("c", 1)->sval;
	cfg.dev = (int)flag_find("dev", 3)->ival;
	cfg.hostname = flag_find("hostname", 8)->sval;
	cfg.certmode = flag_find("certmode", 8)->sval;
	if (flag_find("certdir", 7)->set)
		cfg.certdir = flag_find("certdir", 7)->sval;
	cfg.home = flag_find("home", 4)->sval;
	cfg.rate_config = flag_find("rate-config", 11)->sval;
	cfg.tcp_keepalive_ms = ns_to_ms(flag_find("tcp-keepalive-time", 18)->ival);
	cfg.tcp_user_timeout_ms = ns_to_ms(flag_find("tcp-user-timeout", 16)->ival);
	cfg.tcp_write_timeout_ms = ns_to_ms(flag_find("tcp-write-timeout", 17)->ival);
	cfg.accept_limit_per_sec = flag_find("accept-connection-limit", 23)->fval;
	cfg.accept_burst = flag_find("accept-connection-burst", 23)->ival;
	if (isnan(cfg.accept_limit_per_sec) || cfg.accept_limit_per_sec < 0 ||
	    cfg.accept_burst < 0) {
		fprintf(stderr, "derp: -accept-connection-limit and -burst must "
		    "not be negative\n");
		return 2;
	}
	if (flag_count("max-clients", &cfg.max_clients) != 0 ||
	    flag_count("max-handshakes", &cfg.max_handshakes) != 0)
		return 2;
	qd = getenv("TS_DEBUG_DERP_PER_CLIENT_SEND_QUEUE_DEPTH");
	if (qd != NULL && qd[0] != '\0') {
		if (parse_go_int(qd, &v) != 0 || v < 1 || v > 65536) {
			fprintf(stderr, "derp: bad TS_DEBUG_DERP_PER_CLIENT_SEND_"
			    "QUEUE_DEPTH %s\n", qd);
			return 1;
		}
		cfg.queue_depth = (unsigned)v;
	}
	/* Ours, for tests: KeepAlive every N ms instead of 60 s, so a test
	 * can watch the ticker without waiting a minute. */
	qd = getenv("DERP_TEST_KEEPALIVE_MS");
	if (qd != NULL && qd[0] != '\0') {
		if (parse_go_int(qd, &v) != 0 || v < KEEPALIVE_MIN_MS ||
		    v > KEEPALIVE_MAX_MS) {
			fprintf(stderr, "derp: bad DERP_TEST_KEEPALIVE_MS %s "
			    "(1000..3600000)\n", qd);
			return 1;
		}
		cfg.keepalive_ms = v;
	}
	cfg.acme_directory = flag_find("acme-directory", 14)->sval;
	cfg.acme_ca_file = flag_find("acme-ca-file", 12)->sval;
	cfg.acme_email = flag_find("acme-email", 10)->sval;
	cfg.acme_eab_kid = flag_find("acme-eab-kid", 12)->sval;
	cfg.acme_eab_key = flag_find("acme-eab-key", 12)->sval;
	cfg.acme_ip_certs = (int)flag_find("acme-ip-certs", 13)->ival;
	cfg.acme_webroot = flag_find("acme-webroot", 12)->sval;
	cfg.bootstrap_dns_names = flag_find("bootstrap-dns-names", 19)->sval;
	cfg.verify_clients = (int)flag_find("verify-clients", 14)->ival;
	cfg.socket_path = flag_find("socket", 6)->sval;
	cfg.verify_client_url = flag_find("verify-client-url", 17)->sval;
	cfg.verify_client_url_fail_open =
	    (int)flag_find("verify-client-url-fail-open", 27)->ival;
	cfg.verify_client_ca_file = flag_find("verify-client-ca-file", 21)->sval;
	if (mesh_key_read(&cfg, mesh_key, sizeof mesh_key) != 0)
		return 1;
	cfg.mesh_with = flag_find("mesh-with", 9)->sval;
	cfg.mesh_ca_file = flag_find("mesh-ca-file", 12)->sval;
	cfg.debug_allow = flag_find("debug-allow", 11)->sval;
	cfg.verbose = (int)flag_find("verbose", 7)->ival;
	if (flag_find("syslog", 6)->ival && syslog_open(&sl) != 0)
		return 1;
	cfg.unpublished_bootstrap_dns_names =
	    flag_find("unpublished-bootstrap-dns-names", 31)->sval;
	/* Ours, documented in README: renew when this many seconds are left
	 * (tests make pebble's long-lived certificates due at once). */
	qd = getenv("DERP_ACME_RENEW_BEFORE");
	if (qd != NULL && qd[0] != '\0') {
		if (parse_go_int(qd, &v) != 0 || v < 1) {
			fprintf(stderr, "derp: bad DERP_ACME_RENEW_BEFORE %s "
			    "(seconds)\n", qd);
			return 1;
		}
		cfg.acme_renew_before_s = v;
	}
	/* Ours, for tests: the certificate files' stamps checked every N ms
	 * instead of every minute. */
	qd = getenv("DERP_TEST_CERT_CHECK_MS");
	if (qd != NULL && qd[0] != '\0') {
		if (parse_go_int(qd, &v) != 0 || v < 100 || v > 3600000) {
			fprintf(stderr, "derp: bad DERP_TEST_CERT_CHECK_MS %s "
			    "(100..3600000)\n", qd);
			return 1;
		}
		cfg.cert_check_ms = v;
	}
	/* Ours, for tests: TLS on any port (derper: only on 443 or manual). */
	qd = getenv("DERP_TEST_TLS");
	cfg.tls = qd != NULL && strcmp(qd, "1") == 0;
	if (strcmp(cfg.certmode, "manual") != 0 &&
	    strcmp(cfg.certmode, "letsencrypt") != 0 &&
	    strcmp(cfg.certmode, "gcp") != 0) {
		fprintf(stderr, "derper: unsupported cert mode: \"%s\"\n",
		    cfg.certmode);
		return 1;
	}
	if (cfg.home[0] != '\0' && strcmp(cfg.home, "blank") != 0 &&
	    strncmp(cfg.home, "http://", 7) != 0 &&
	    strncmp(cfg.home, "https://", 8) != 0) {
		fprintf(stderr, "derper: unsupported -home value \"%s\"; must be "
		    "empty, \"blank\", or a URL\n", cfg.home);
		return 1;
	}
	memset(&ra, 0, sizeof ra);
	if (run_as_lookup(flag_find("user", 4)->sval,
	    (int)flag_find("allow-root", 10)->ival, &ra) != 0)
		return 1;
	if (!cfg.dev && cfg.config_path[0] == '\0') {
		if (geteuid() != 0) {
			fprintf(stderr, "derper: -c <config path> not specified\n");
			return 1;
		}
		cfg.config_path = "/var/lib/derper/derper.key";
		logf("no config path specified; using %s", cfg.config_path);
	}

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGPIPE, &sa, NULL) != 0) {
		perror("sigaction");
		return 1;
	}
	/* Before derp_create, so that a stop asked for during start-up (a
	 * certificate being made) is a clean one too.  No SA_RESTART: poll
	 * returns EINTR.  SIGHUP reloads -rate-config and the certificates. */
	sa.sa_handler = on_signal;
	if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0 ||
	    sigaction(SIGHUP, &sa, NULL) != 0) {
		perror("sigaction");
		return 1;
	}
	srv = derp_create(&cfg, err, sizeof err);
	if (srv == NULL) {
		logf("%s", err);
		return 1;
	}
	running = srv;
	if (privileges_drop(&ra) == 0) {
		if (stop_early)
			derp_stop(srv);
		rc = derp_run(srv);
	} else {
		rc = -1;
	}
	running = NULL;		/* the handler must not see it freed */
	derp_destroy(srv);
	return rc == 0 ? 0 : 1;
}

#endif /* DERP_NO_MAIN */
