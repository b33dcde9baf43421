/*
 * client.c -- the blocking DERP client of client.h.
 *
 * Sections, in the order a connection uses them:
 *   clock and randomness
 *   sockets        non-blocking connect with a timeout, poll()-bounded I/O
 *   x509           a certificate "validator" that accepts any chain but records
 *                  the leaf's SHA-256, its public key and the chain length
 *   TLS            the BearSSL engine driven by hand so every wait can time out
 *   bytes          dc_write / dc_read over either transport, with rbuf holding
 *                  what was received but not yet consumed
 *   WebSocket      framing under the bytes in ws mode: writes staged in
 *                  ws_out and framed at the flush, received frames kept in
 *                  ws_raw and deframed into rbuf
 *   HTTP           request, response head, body
 *   DERP           keys, upgrade, handshake, frames
 *
 * Every blocking step turns its timeout into an absolute deadline on the
 * monotonic clock first, so loops that wait several times still end in time.
 */
#include "client.h"
#include "../nacl.h"
#include "../x25519.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* RFC 6455 1.3: appended to Sec-WebSocket-Key before hashing. */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_BYTES 16			/* Sec-WebSocket-Key: 16 random bytes */
#define WS_MASK_CHUNK 4096		/* payload masked through a stack buffer */

#define FRAME_HEADER_BYTES 5		/* type 1 + big-endian length 4 */
#define SERVER_KEY_MAGIC_BYTES 8
#define SERVER_KEY_MAX_BYTES 1024	/* the Go client rejects longer ServerKey frames */
#define CLIENT_INFO_MAX_JSON 1024	/* our own ClientInfo JSON documents are small */
#define DEFAULT_JSON "{\"version\":2,\"CanAckPings\":true}"

/* Frame types used here (derp-protocol.md section 8). */
#define FT_SERVER_KEY 0x01
#define FT_CLIENT_INFO 0x02
#define FT_SERVER_INFO 0x03
#define FT_SEND_PACKET 0x04
#define FT_RECV_PACKET 0x05

static const uint8_t server_key_magic[SERVER_KEY_MAGIC_BYTES] = {
	0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91	/* "DERP" U+1F511 */
};

/* ---- clock and randomness ---------------------------------------------- */

int64_t
dc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline, never negative, capped for poll(). */
int
dc_left_ms(int64_t deadline)
{
	int64_t d = deadline - dc_now_ms();

	if (d < 0)
		return 0;
	if (d > 1000000)
		return 1000000;
	return (int)d;
}

void
dc_random(void *buf, size_t n)
{
	uint8_t *p = buf;
	int fd = open("/dev/urandom", O_RDONLY);

	if (fd < 0) {
		perror("client: open /dev/urandom");
		abort();
	}
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			perror("client: read /dev/urandom");
			abort();
		}
		p += r;
		n -= (size_t)r;
	}
	close(fd);
}

void
dc_bad_client_hello(uint8_t out[DC_BAD_HELLO_BYTES])
{
	dc_random(out, DC_BAD_HELLO_BYTES);
	out[0] = 0x16;		/* handshake record, TLS 1.0 version field */
	out[1] = 3;
	out[2] = 1;
	out[3] = 0;
	out[4] = DC_BAD_HELLO_BYTES - 5;
	out[5] = 1;		/* ClientHello of the record's remaining 191 */
	out[6] = 0;
	out[7] = 0;
	out[8] = DC_BAD_HELLO_BYTES - 9;
	out[9] = 3;		/* client_version TLS 1.2 */
	out[10] = 3;
	out[43] = 255;		/* after the 32-byte random: session ID length */
}

void
dc_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

uint32_t
dc_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* ---- sockets ------------------------------------------------------------ */

/* Wait for events on c->fd until deadline: 1 ready, -2 timeout, -1 error. */
int
dc_wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd p;
		int r;

		p.fd = fd;
		p.events = events;
		p.revents = 0;
		r = poll(&p, 1, dc_left_ms(deadline));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			return -2;
		return 1;	/* POLLERR/POLLHUP: the read or write reports it */
	}
}

/* Read some bytes: >0, 0 EOF (or reset: the peer closed), -1 error, -2 timeout. */
static int
sock_read_some(int fd, uint8_t *buf, size_t cap, int64_t deadline)
{
	for (;;) {
		ssize_t r = recv(fd, buf, cap, 0);
		int w;

		if (r >= 0)
			return (int)r;
		if (errno == EINTR)
			continue;
		if (errno == ECONNRESET || errno == EPIPE)
			return 0;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		w = dc_wait_fd(fd, POLLIN, deadline);
		if (w < 0)
			return w;
	}
}

/* Write all of buf: 0, -1 error or closed, -2 timeout. */
static int
sock_write_all(int fd, const uint8_t *buf, size_t len, int64_t deadline)
{
	while (len > 0) {
		ssize_t r = send(fd, buf, len, MSG_NOSIGNAL);
		int w;

		if (r > 0) {
			buf += r;
			len -= (size_t)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		w = dc_wait_fd(fd, POLLOUT, deadline);
		if (w < 0)
			return w;
	}
	return 0;
}

/* host (numeric IPv4 or IPv6) and port into ss; its length, or 0. */
static socklen_t
sock_addr(const char *host, int port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(host, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return 0;
		return sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			return 0;
		return sizeof(*s4);
	}
}

/*
 * A non-blocking socket with its connect() started: the descriptor, with
 * *pending set when the connect is still in progress (wait for POLLOUT, then
 * read SO_ERROR); -1 on failure.  TCP_NODELAY is set here, before connecting,
 * and the socket is bound to src (any port) first when src is not empty.
 */
static int
sock_connect_begin(const char *host, int port, int rcvbuf, const char *src,
    int *pending)
{
	struct sockaddr_storage ss, me;
	socklen_t sslen, melen = 0;
	int fd, one = 1;

	*pending = 0;
	if ((sslen = sock_addr(host, port, &ss)) == 0)
		return -1;
	if (src[0] != '\0' && ((melen = sock_addr(src, 0, &me)) == 0 ||
	    me.ss_family != ss.ss_family))
		return -1;
	fd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
	    (melen > 0 && bind(fd, (struct sockaddr *)&me, melen) < 0)) {
		close(fd);
		return -1;
	}
	if (rcvbuf > 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
		    sizeof(rcvbuf));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&ss, sslen) < 0) {
		if (errno != EINPROGRESS && errno != EINTR) {
			close(fd);
			return -1;
		}
		*pending = 1;
	}
	return fd;
}

static int
sock_connect(const char *host, int port, int rcvbuf, const char *src,
    int timeout_ms)
{
	int pending, err = 0;
	socklen_t errlen = sizeof(err);
	int fd = sock_connect_begin(host, port, rcvbuf, src, &pending);

	if (fd < 0)
		return -1;
	if (pending && (dc_wait_fd(fd, POLLOUT, dc_now_ms() + timeout_ms) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0 ||
	    err != 0)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* ---- x509: accept any chain, remember the leaf -------------------------- */

static struct dc_x509 *
x509_of(const br_x509_class **ctx)
{
	return (struct dc_x509 *)(void *)ctx;	/* vtable is the first member */
}

static void
x509_start_chain(const br_x509_class **ctx, const char *server_name)
{
	struct dc_x509 *x = x509_of(ctx);

	(void)server_name;
	x->cert_index = 0;
	x->ncerts = 0;
	x->pkey_ok = 0;
	memset(x->leaf_sha256, 0, sizeof(x->leaf_sha256));
}

static void
x509_start_cert(const br_x509_class **ctx, uint32_t length)
{
	struct dc_x509 *x = x509_of(ctx);

	(void)length;
	if (x->cert_index == 0) {
		br_sha256_init(&x->sha);
		br_x509_decoder_init(&x->dec, NULL, NULL);
	}
}

static void
x509_append(const br_x509_class **ctx, const unsigned char *buf, size_t len)
{
	struct dc_x509 *x = x509_of(ctx);

	if (x->cert_index == 0) {
		br_sha256_update(&x->sha, buf, len);
		br_x509_decoder_push(&x->dec, buf, len);
	}
}

/* Copy the decoded leaf key out of the decoder into keybuf. */
static void
x509_keep_pkey(struct dc_x509 *x)
{
	const br_x509_pkey *pk = br_x509_decoder_get_pkey(&x->dec);

	if (pk == NULL)
		return;
	x->pkey.key_type = pk->key_type;
	if (pk->key_type == BR_KEYTYPE_EC) {
		if (pk->key.ec.qlen > sizeof(x->keybuf))
			return;
		memcpy(x->keybuf, pk->key.ec.q, pk->key.ec.qlen);
		x->pkey.key.ec.curve = pk->key.ec.curve;
		x->pkey.key.ec.q = x->keybuf;
		x->pkey.key.ec.qlen = pk->key.ec.qlen;
	} else if (pk->key_type == BR_KEYTYPE_RSA) {
		size_t nl = pk->key.rsa.nlen, el = pk->key.rsa.elen;
		if (nl + el > sizeof(x->keybuf))
			return;
		memcpy(x->keybuf, pk->key.rsa.n, nl);
		memcpy(x->keybuf + nl, pk->key.rsa.e, el);
		x->pkey.key.rsa.n = x->keybuf;
		x->pkey.key.rsa.nlen = nl;
		x->pkey.key.rsa.e = x->keybuf + nl;
		x->pkey.key.rsa.elen = el;
	} else {
		return;
	}
	x->pkey_ok = 1;
}

static void
x509_end_cert(const br_x509_class **ctx)
{
	struct dc_x509 *x = x509_of(ctx);

	if (x->cert_index == 0) {
		br_sha256_out(&x->sha, x->leaf_sha256);
		x509_keep_pkey(x);
	}
	x->cert_index++;
	x->ncerts++;
}

static unsigned
x509_end_chain(const br_x509_class **ctx)
{
	struct dc_x509 *x = x509_of(ctx);

	if (x->ncerts == 0)
		return BR_ERR_X509_EMPTY_CHAIN;
	return x->pkey_ok ? 0 : BR_ERR_X509_UNSUPPORTED;
}

static const br_x509_pkey *
x509_get_pkey(const br_x509_class *const *ctx, unsigned *usages)
{
	struct dc_x509 *x = (struct dc_x509 *)(void *)ctx;

	if (usages != NULL)
		*usages = BR_KEYTYPE_KEYX | BR_KEYTYPE_SIGN;
	return x->pkey_ok ? &x->pkey : NULL;
}

static const br_x509_class x509_accept_any = {
	sizeof(struct dc_x509),
	x509_start_chain,
	x509_start_cert,
	x509_append,
	x509_end_cert,
	x509_end_chain,
	x509_get_pkey
};

/* ---- TLS ---------------------------------------------------------------- */

/* br_ecdsa_vrfy that accepts any signature (dclient.no_sig_check). */
static uint32_t
ecdsa_accept_any(const br_ec_impl *impl, const void *hash, size_t hash_len,
    const br_ec_public_key *pk, const void *sig, size_t sig_len)
{
	(void)impl;
	(void)hash;
	(void)hash_len;
	(void)pk;
	(void)sig;
	return sig_len > 0;
}

/* The transport under the engine failed (EOF, reset, write error): the
 * engine cannot be told (br_ssl_engine_fail is internal), so remember it. */
static void
tls_break(struct dclient *c)
{
	c->tls_broken = 1;
	if (c->tls_err == 0)
		c->tls_err = BR_ERR_IO;
}

/* A write to the socket under the engine failed with r (sock_write_all): a
 * peer that closed or reset it is a close, anything else an error. */
static void
tls_write_failed(struct dclient *c, int r)
{
	int closed = r == -1 && (errno == EPIPE || errno == ECONNRESET);

	tls_break(c);
	c->tls_broken_eof = closed;
}

/*
 * Where received transport bytes go: rbuf, or in ws mode ws_raw (deframed
 * into rbuf by fill).  recv_room: the room left there; recv_add appends.
 */
static size_t
recv_room(const struct dclient *c)
{
	if (c->ws_on)
		return sizeof(c->ws_raw) - c->ws_rawlen;
	return sizeof(c->rbuf) - c->rlen;
}

static void
recv_add(struct dclient *c, const uint8_t *p, size_t n)
{
	if (c->ws_on) {
		memcpy(c->ws_raw + c->ws_rawlen, p, n);
		c->ws_rawlen += n;
	} else {
		memcpy(c->rbuf + c->rlen, p, n);
		c->rlen += n;
	}
}

/*
 * Drive the engine until one of the `want` state bits is set.  Pending records
 * are always sent first.  Returns 1 when wanted, 0 when the connection closed
 * (EOF, reset, or close_notify), -1 on a TLS or socket error, -2 at the
 * deadline.  When the engine fails its error code is kept in c->tls_err.
 */
static int
tls_run(struct dclient *c, unsigned want, int64_t deadline)
{
	br_ssl_engine_context *eng = &c->sc.eng;

	for (;;) {
		unsigned st = br_ssl_engine_current_state(eng);
		unsigned char *buf;
		size_t len;
		int r;

		if (c->tls_broken)
			return c->tls_broken_eof ? 0 : -1;
		if (st & BR_SSL_CLOSED) {
			c->tls_err = br_ssl_engine_last_error(eng);
			return c->tls_err == BR_ERR_OK ? 0 : -1;
		}
		if (st & BR_SSL_SENDREC) {
			buf = br_ssl_engine_sendrec_buf(eng, &len);
			r = sock_write_all(c->fd, buf, len, deadline);
			if (r == -1) {
				tls_write_failed(c, r);
				return c->tls_broken_eof ? 0 : -1;
			}
			if (r < 0)
				return r;
			br_ssl_engine_sendrec_ack(eng, len);
			continue;
		}
		if (st & want)
			return 1;
		if ((st & BR_SSL_RECVAPP) && recv_room(c) > 0) {
			/* Application data nobody asked for yet: keep it. */
			size_t n = recv_room(c);
			buf = br_ssl_engine_recvapp_buf(eng, &len);
			if (n > len)
				n = len;
			recv_add(c, buf, n);
			br_ssl_engine_recvapp_ack(eng, n);
			continue;
		}
		if (st & BR_SSL_RECVREC) {
			buf = br_ssl_engine_recvrec_buf(eng, &len);
			r = sock_read_some(c->fd, buf, len, deadline);
			if (r == 0) {
				tls_break(c);
				c->tls_broken_eof = 1;
				return 0;
			}
			if (r < 0)
				return r;
			br_ssl_engine_recvrec_ack(eng, (size_t)r);
			continue;
		}
		return -1;	/* nothing to do and not what we want: stuck */
	}
}

/* Go's default TLS 1.2 suites in its order on a CPU with AES instructions
 * (derp-protocol.md 4.1): what a Tailscale client offers. */
static const uint16_t go_suites[] = {
	BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	BR_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	BR_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	BR_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	BR_TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	BR_TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	BR_TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA
};

/* The client engine with the accept-any validator, reset for sni: its
 * ClientHello is ready to go.  0 or -1. */
static int
tls_init(struct dclient *c, const char *sni)
{
	/* BearSSL's full client profile, built once and copied: each of its
	 * default picks asks the CPU (CPUID), slow in a virtual machine, and a
	 * storm starts thousands of clients.  After init_full the context
	 * holds no pointer into itself (br_ssl_client_zero is a memset), only
	 * static tables and the validator, replaced below. */
	static br_ssl_client_context tmpl;
	static br_x509_minimal_context unused;
	static int tmpl_ok;

	if (!tmpl_ok) {
		br_ssl_client_init_full(&tmpl, &unused, NULL, 0);
		tmpl_ok = 1;
	}
	memcpy(&c->sc, &tmpl, sizeof(c->sc));
	c->x509.vtable = &x509_accept_any;
	br_ssl_engine_set_x509(&c->sc.eng, &c->x509.vtable);
	br_ssl_engine_set_versions(&c->sc.eng, c->tls_min, c->tls_max);
	/* X25519 as the relay does it: the load generators share the cores
	 * with the relay, and every handshake checks x25519.c both ways. */
	br_ssl_engine_set_ec(&c->sc.eng, &x25519_ec_impl);
	if (c->no_sig_check)
		br_ssl_engine_set_ecdsa(&c->sc.eng, ecdsa_accept_any);
	if (c->go_suites)
		br_ssl_engine_set_suites(&c->sc.eng, go_suites,
		    sizeof(go_suites) / sizeof(go_suites[0]));
	br_ssl_engine_set_buffer(&c->sc.eng, c->iobuf, sizeof(c->iobuf), 1);
	if (c->alpn_count > 0)
		br_ssl_engine_set_protocol_names(&c->sc.eng, c->alpn,
		    c->alpn_count);
	return br_ssl_client_reset(&c->sc, sni, 0) ? 0 : -1;
}

static int
tls_setup(struct dclient *c, const char *sni, int64_t deadline)
{
	if (tls_init(c, sni) < 0)
		return -1;
	/* The handshake is done when application data may be sent. */
	return tls_run(c, BR_SSL_SENDAPP, deadline) == 1 ? 0 : -1;
}

/* ---- bytes -------------------------------------------------------------- */

/* Back out of ws mode with nothing received or staged (a new connection). */
static void
ws_reset(struct dclient *c)
{
	c->ws_on = 0;
	c->ws_err = NULL;
	c->ws_close_code = 0;
	c->ws_close_reason[0] = '\0';
	c->ws_pong_len = 0;
	c->ws_pongs = c->ws_pings = 0;
	c->ws_frames_in = c->ws_msgs_in = c->ws_frags_in = 0;
	c->ws_in_left = 0;
	c->ws_in_fin = 0;
	c->ws_in_msg = 0;
	c->ws_rawlen = 0;
	c->ws_outlen = 0;
}

struct dclient *
dc_new(void)
{
	struct dclient *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->fd = -1;
	c->tls_min = BR_TLS12;
	c->tls_max = BR_TLS12;
	c->write_timeout_ms = 5000;
	c->ws_msg_bytes = DC_WS_MSG_MAX;
	return c;
}

void
dc_free(struct dclient *c)
{
	if (c == NULL)
		return;
	dc_close(c);
	free(c);
}

int
dc_connect(struct dclient *c, const char *host, int port, int tls,
    const char *sni, int timeout_ms)
{
	int64_t deadline = dc_now_ms() + timeout_ms;

	dc_close(c);
	c->rlen = 0;
	c->tls_err = 0;
	c->tls_broken = 0;
	c->tls_broken_eof = 0;
	c->got_server_key = 0;
	ws_reset(c);
	memset(&c->x509, 0, sizeof(c->x509));
	if (strchr(host, ':') != NULL)
		snprintf(c->host, sizeof(c->host), "[%s]:%d", host, port);
	else
		snprintf(c->host, sizeof(c->host), "%s:%d", host, port);
	c->fd = sock_connect(host, port, c->rcvbuf, c->src_addr, timeout_ms);
	if (c->fd < 0)
		return -1;
	c->use_tls = tls;
	if (tls && tls_setup(c, sni, deadline) < 0) {
		dc_close(c);
		return -1;
	}
	return 0;
}

int
dc_start(struct dclient *c, const char *host, int port, int tls,
    const char *sni, int *pending)
{
	dc_close(c);
	c->rlen = 0;
	c->tls_err = 0;
	c->tls_broken = 0;
	c->tls_broken_eof = 0;
	c->got_server_key = 0;
	ws_reset(c);
	memset(&c->x509, 0, sizeof(c->x509));
	if (strchr(host, ':') != NULL)
		snprintf(c->host, sizeof(c->host), "[%s]:%d", host, port);
	else
		snprintf(c->host, sizeof(c->host), "%s:%d", host, port);
	c->fd = sock_connect_begin(host, port, c->rcvbuf, c->src_addr,
	    pending);
	if (c->fd < 0)
		return -1;
	c->use_tls = tls;
	if (tls && tls_init(c, sni) < 0) {
		dc_close(c);
		return -1;
	}
	return 0;
}

void
dc_close(struct dclient *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* Write len bytes to the transport without flushing TLS.  0, -1 (closed or
 * error), -2 (timeout). */
static int
raw_write(struct dclient *c, const uint8_t *p, size_t len, int64_t deadline)
{
	br_ssl_engine_context *eng = &c->sc.eng;

	if (c->fd < 0)
		return -1;
	if (!c->use_tls)
		return sock_write_all(c->fd, p, len, deadline);
	while (len > 0) {
		unsigned char *buf;
		size_t alen;
		int r = tls_run(c, BR_SSL_SENDAPP, deadline);

		if (r != 1)
			return r == -2 ? -2 : -1;
		buf = br_ssl_engine_sendapp_buf(eng, &alen);
		if (alen > len)
			alen = len;
		memcpy(buf, p, alen);
		br_ssl_engine_sendapp_ack(eng, alen);
		p += alen;
		len -= alen;
	}
	return 0;
}

/* Push buffered TLS records out to the socket. */
static int
raw_flush(struct dclient *c, int64_t deadline)
{
	br_ssl_engine_context *eng = &c->sc.eng;
	int r;

	if (!c->use_tls)
		return 0;
	br_ssl_engine_flush(eng, 0);
	for (;;) {
		unsigned st = br_ssl_engine_current_state(eng);
		unsigned char *buf;
		size_t len;

		if (c->tls_broken || (st & BR_SSL_CLOSED))
			return -1;
		if (!(st & BR_SSL_SENDREC))
			return 0;
		buf = br_ssl_engine_sendrec_buf(eng, &len);
		r = sock_write_all(c->fd, buf, len, deadline);
		if (r < 0) {
			tls_write_failed(c, r);
			return -1;
		}
		br_ssl_engine_sendrec_ack(eng, len);
	}
}

static int ws_emit(struct dclient *c, int64_t deadline);

/* Write len bytes without flushing: used to build one write of several
 * parts.  In ws mode they are staged in ws_out, framed by write_flush (or
 * here when ws_out fills: a longer write is several messages).  0, -1
 * (closed or error), -2 (timeout). */
static int
write_part(struct dclient *c, const uint8_t *p, size_t len, int64_t deadline)
{
	if (!c->ws_on)
		return raw_write(c, p, len, deadline);
	while (len > 0) {
		size_t n = sizeof(c->ws_out) - c->ws_outlen;
		int r;

		if (n == 0) {
			if ((r = ws_emit(c, deadline)) < 0)
				return r;
			continue;
		}
		if (n > len)
			n = len;
		memcpy(c->ws_out + c->ws_outlen, p, n);
		c->ws_outlen += n;
		p += n;
		len -= n;
	}
	return 0;
}

/* End of one write: frame what is staged (ws mode), flush TLS.  0 or -1. */
static int
write_flush(struct dclient *c, int64_t deadline)
{
	if (c->ws_on && ws_emit(c, deadline) < 0)
		return -1;
	return raw_flush(c, deadline);
}

int
dc_write(struct dclient *c, const void *buf, size_t len)
{
	int64_t deadline = dc_now_ms() + c->write_timeout_ms;

	if (write_part(c, buf, len, deadline) < 0)
		return -1;
	return write_flush(c, deadline) < 0 ? -1 : 0;
}

/* Append more received transport bytes (rbuf, or ws_raw in ws mode):
 * >0, 0 closed, -1 error, -2 timeout. */
static int
raw_fill(struct dclient *c, int64_t deadline)
{
	size_t room = recv_room(c);
	br_ssl_engine_context *eng = &c->sc.eng;
	unsigned char *buf;
	size_t len;
	int r;

	if (c->fd < 0)
		return -1;
	if (room == 0)
		return -1;
	if (!c->use_tls) {
		uint8_t *dst = c->ws_on ? c->ws_raw + c->ws_rawlen :
		    c->rbuf + c->rlen;
		r = sock_read_some(c->fd, dst, room, deadline);
		if (r > 0) {
			if (c->ws_on)
				c->ws_rawlen += (size_t)r;
			else
				c->rlen += (size_t)r;
		}
		return r;
	}
	r = tls_run(c, BR_SSL_RECVAPP, deadline);
	if (r != 1)
		return r;
	buf = br_ssl_engine_recvapp_buf(eng, &len);
	if (len > room)
		len = room;
	recv_add(c, buf, len);
	br_ssl_engine_recvapp_ack(eng, len);
	return (int)len;
}

static int ws_deframe(struct dclient *c);

/* Append more received stream bytes to rbuf: >0, 0 closed (in ws mode also
 * the server's close frame), -1 error (in ws mode also a frame that breaks
 * RFC 6455: c->ws_err), -2 timeout. */
static int
fill(struct dclient *c, int64_t deadline)
{
	if (!c->ws_on)
		return raw_fill(c, deadline);
	for (;;) {
		size_t before = c->rlen;
		int r;

		if (ws_deframe(c) < 0)
			return -1;
		if (c->rlen > before)
			return (int)(c->rlen - before);
		if (c->ws_close_code != 0)
			return 0;
		if (c->rlen == sizeof(c->rbuf))
			return -1;
		r = raw_fill(c, deadline);
		if (r <= 0)
			return r;
	}
}

static void
consume(struct dclient *c, size_t n)
{
	memmove(c->rbuf, c->rbuf + n, c->rlen - n);
	c->rlen -= n;
}

/* Make rbuf hold at least n bytes: 1, 0, -1, -2. */
static int
need(struct dclient *c, size_t n, int64_t deadline)
{
	if (n > sizeof(c->rbuf))
		return -1;
	while (c->rlen < n) {
		int r = fill(c, deadline);
		if (r <= 0)
			return r;
	}
	return 1;
}

int
dc_read(struct dclient *c, void *buf, size_t cap, int timeout_ms)
{
	int64_t deadline = dc_now_ms() + timeout_ms;
	size_t n;

	if (c->rlen == 0) {
		int r = fill(c, deadline);
		if (r <= 0)
			return r;
	}
	n = c->rlen < cap ? c->rlen : cap;
	memcpy(buf, c->rbuf, n);
	consume(c, n);
	return (int)n;
}

int
dc_read_full(struct dclient *c, void *buf, size_t n, int timeout_ms)
{
	int64_t deadline = dc_now_ms() + timeout_ms;
	uint8_t *p = buf;

	while (n > 0) {
		int r = dc_read(c, p, n, dc_left_ms(deadline));
		if (r <= 0)
			return r;
		p += r;
		n -= (size_t)r;
	}
	return 1;
}

/* ---- HTTP --------------------------------------------------------------- */

/* Read a response head into head[cap]; the rest stays in rbuf.  0 or -1. */
static int
read_head(struct dclient *c, char *head, size_t cap, int64_t deadline)
{
	for (;;) {
		size_t i;

		for (i = 0; i + 3 < c->rlen; i++) {
			if (memcmp(c->rbuf + i, "\r\n\r\n", 4) == 0) {
				size_t n = i + 4;
				if (n + 1 > cap)
					return -1;
				memcpy(head, c->rbuf, n);
				head[n] = '\0';
				consume(c, n);
				return 0;
			}
		}
		if (c->rlen >= cap || fill(c, deadline) <= 0)
			return -1;
	}
}

int
dc_http_request(struct dclient *c, const char *request, char *head,
    size_t cap, int timeout_ms)
{
	int64_t deadline = dc_now_ms() + timeout_ms;

	if (cap > 0)
		head[0] = '\0';
	if (dc_write(c, request, strlen(request)) < 0)
		return -1;
	return read_head(c, head, cap, deadline);
}

int
dc_http_status(const char *head)
{
	int code;

	if (strncmp(head, "HTTP/1.", 7) != 0 || head[8] != ' ')
		return -1;
	if (sscanf(head + 9, "%3d", &code) != 1)
		return -1;
	return code;
}

int
dc_http_header(const char *head, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);
	const char *p = strstr(head, "\r\n");

	while (p != NULL && p[2] != '\r' && p[2] != '\0') {
		const char *line = p + 2, *end = strstr(line, "\r\n");
		if (end == NULL)
			break;
		if ((size_t)(end - line) > nl && line[nl] == ':' &&
		    strncasecmp(line, name, nl) == 0) {
			const char *v = line + nl + 1;
			size_t n;
			while (v < end && (*v == ' ' || *v == '\t'))
				v++;
			n = (size_t)(end - v);
			while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
				n--;
			if (cap > 0) {
				if (n >= cap)
					n = cap - 1;
				memcpy(out, v, n);
				out[n] = '\0';
			}
			return 1;
		}
		p = end;
	}
	return 0;
}

/* Read one CRLF-terminated line (chunked encoding) into line[cap]. */
static int
read_line(struct dclient *c, char *line, size_t cap, int64_t deadline)
{
	for (;;) {
		size_t i;
		for (i = 0; i + 1 < c->rlen; i++) {
			if (c->rbuf[i] == '\r' && c->rbuf[i + 1] == '\n') {
				if (i + 1 > cap)
					return -1;
				memcpy(line, c->rbuf, i);
				line[i] = '\0';
				consume(c, i + 2);
				return 0;
			}
		}
		if (c->rlen > cap || fill(c, deadline) <= 0)
			return -1;
	}
}

int
dc_http_body(struct dclient *c, const char *head, int head_request,
    char *body, size_t cap, size_t *len, int timeout_ms)
{
	int64_t deadline = dc_now_ms() + timeout_ms;
	int status = dc_http_status(head);
	char v[64];
	size_t got = 0;

	*len = 0;
	if (cap > 0)
		body[0] = '\0';
	if (status < 0)
		return -1;
	if (head_request || (status >= 100 && status < 200) || status == 204 ||
	    status == 304)
		return 0;
	if (dc_http_header(head, "Transfer-Encoding", v, sizeof(v)) &&
	    strcasecmp(v, "chunked") == 0) {
		for (;;) {
			char line[128];
			unsigned long n;
			if (read_line(c, line, sizeof(line), deadline) < 0)
				return -1;
			n = strtoul(line, NULL, 16);
			if (n == 0)
				return read_line(c, line, sizeof(line), deadline);
			if (got + n + 1 > cap)
				return -1;
			if (dc_read_full(c, body + got, n, dc_left_ms(deadline)) != 1)
				return -1;
			got += n;
			body[got] = '\0';
			*len = got;
			if (read_line(c, line, sizeof(line), deadline) < 0)
				return -1;
		}
	}
	if (dc_http_header(head, "Content-Length", v, sizeof(v))) {
		unsigned long n = strtoul(v, NULL, 10);
		if (n + 1 > cap)
			return -1;
		if (n > 0 && dc_read_full(c, body, n, dc_left_ms(deadline)) != 1)
			return -1;
		body[n] = '\0';
		*len = n;
		return 0;
	}
	/* Neither: the body runs to the end of the connection. */
	for (;;) {
		int r;
		if (got + 1 >= cap)
			return -1;
		r = dc_read(c, body + got, cap - 1 - got, dc_left_ms(deadline));
		if (r == 0)
			break;
		if (r < 0)
			return -1;
		got += (size_t)r;
	}
	body[got] = '\0';
	*len = got;
	return 0;
}

/* ---- WebSocket ------------------------------------------------------------ */

/*
 * Framing in ws mode (RFC 6455 section 5).  Sending: a write is staged in
 * ws_out and cut by ws_emit into messages and fragments as ws_msg_bytes and
 * ws_frag_bytes say, each frame masked with a fresh key.  Receiving: bytes
 * from the transport land in ws_raw; ws_deframe moves binary payload into
 * rbuf as it arrives (ws_in_left bytes of the current data frame remain,
 * ws_in_fin says whether it ends its message, ws_in_msg whether a
 * fragmented message is open), handles whole control frames (pong recorded,
 * ping counted, close ends the stream with ws_close_code) and records the
 * first violation in ws_err, which every later read reports as an error.
 */

/* Mask keys: xorshift32 seeded once from /dev/urandom (fresh per frame as
 * RFC 6455 5.3 wants; unpredictability against a test relay is not needed,
 * a system call per one-byte frame would slow the bytewise tests). */
static uint32_t ws_mask_state;

static void
ws_mask_key(uint8_t key[4])
{
	uint32_t x;

	while (ws_mask_state == 0)
		dc_random(&ws_mask_state, sizeof(ws_mask_state));
	x = ws_mask_state;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	ws_mask_state = x;
	dc_put_be32(key, x);
}

/* A frame header for b0 and len (the shortest length form), with key when
 * masked, into h: its length. */
static size_t
ws_header(uint8_t h[DC_WS_HEADER_MAX], uint8_t b0, int masked, uint64_t len,
    const uint8_t key[4])
{
	size_t n = 2, i;

	h[0] = b0;
	h[1] = masked ? 0x80 : 0;
	if (len < 126) {
		h[1] |= (uint8_t)len;
	} else if (len <= 0xffff) {
		h[1] |= 126;
		h[2] = (uint8_t)(len >> 8);
		h[3] = (uint8_t)len;
		n = 4;
	} else {
		h[1] |= 127;
		for (i = 0; i < 8; i++)
			h[2 + i] = (uint8_t)(len >> (56 - 8 * i));
		n = 10;
	}
	if (masked) {
		memcpy(h + n, key, 4);
		n += 4;
	}
	return n;
}

/* One frame to the transport (not flushed).  0, -1, -2. */
static int
ws_write_frame(struct dclient *c, uint8_t b0, int masked, const uint8_t *p,
    size_t len, int64_t deadline)
{
	uint8_t h[DC_WS_HEADER_MAX], key[4], chunk[WS_MASK_CHUNK];
	size_t off = 0;
	int r;

	ws_mask_key(key);
	r = raw_write(c, h, ws_header(h, b0, masked, len, key), deadline);
	if (r < 0)
		return r;
	if (!masked)
		return len > 0 ? raw_write(c, p, len, deadline) : 0;
	while (off < len) {
		size_t n = len - off < sizeof(chunk) ? len - off : sizeof(chunk);
		size_t i;

		for (i = 0; i < n; i++)
			chunk[i] = (uint8_t)(p[off + i] ^ key[(off + i) & 3]);
		if ((r = raw_write(c, chunk, n, deadline)) < 0)
			return r;
		off += n;
	}
	return 0;
}

/* What ws_out holds, as binary messages (see struct dclient's ws options),
 * to the transport; ws_out is empty afterwards.  0, -1, -2. */
static int
ws_emit(struct dclient *c, int64_t deadline)
{
	size_t off = 0, total = c->ws_outlen;
	int r = 0;

	c->ws_outlen = 0;
	while (off < total && r == 0) {
		size_t mlen = total - off, moff = 0;

		if (c->ws_msg_bytes > 0 && mlen > c->ws_msg_bytes)
			mlen = c->ws_msg_bytes;
		while (moff < mlen && r == 0) {
			size_t flen = mlen - moff;
			uint8_t b0;

			if (c->ws_frag_bytes > 0 && flen > c->ws_frag_bytes)
				flen = c->ws_frag_bytes;
			b0 = moff == 0 ? DC_WS_OP_BINARY : DC_WS_OP_CONT;
			if (moff + flen == mlen)
				b0 |= DC_WS_FIN;
			r = ws_write_frame(c, b0, 1, c->ws_out + off + moff, flen,
			    deadline);
			moff += flen;
		}
		off += mlen;
	}
	return r;
}

/*
 * The frame header at p[0..n): its length (2..14), or 0 when more bytes are
 * needed.  *len the payload length, *masked the mask bit, key the mask key.
 */
static size_t
ws_parse_header(const uint8_t *p, size_t n, uint64_t *len, int *masked,
    uint8_t key[4])
{
	size_t hl = 2, i;
	uint64_t l;

	if (n < 2)
		return 0;
	*masked = (p[1] & 0x80) != 0;
	l = p[1] & 0x7f;
	if (l == 126)
		hl += 2;
	else if (l == 127)
		hl += 8;
	if (*masked)
		hl += 4;
	if (n < hl)
		return 0;
	if (l == 126) {
		l = (uint64_t)p[2] << 8 | p[3];
	} else if (l == 127) {
		l = 0;
		for (i = 0; i < 8; i++)
			l = l << 8 | p[2 + i];
	}
	if (*masked)
		memcpy(key, p + hl - 4, 4);
	*len = l;
	return hl;
}

static void
ws_raw_consume(struct dclient *c, size_t n)
{
	memmove(c->ws_raw, c->ws_raw + n, c->ws_rawlen - n);
	c->ws_rawlen -= n;
}

static int
ws_fail(struct dclient *c, const char *why)
{
	if (c->ws_err == NULL)
		c->ws_err = why;
	return -1;
}

/*
 * Deframe what ws_raw holds: binary payload into rbuf (as much as it has
 * room for), control frames handled.  0 (done for now: more bytes needed,
 * rbuf full, or the close frame came), -1 at a violation (c->ws_err).
 */
static int
ws_deframe(struct dclient *c)
{
	for (;;) {
		uint8_t key[4], b0, op;
		uint64_t len;
		size_t hl, n;
		int masked, fin;

		if (c->ws_err != NULL)
			return -1;
		if (c->ws_close_code != 0)
			return 0;
		if (c->ws_in_left > 0) {
			n = sizeof(c->rbuf) - c->rlen;
			if (n > c->ws_rawlen)
				n = c->ws_rawlen;
			if (n > c->ws_in_left)
				n = (size_t)c->ws_in_left;
			if (n == 0)
				return 0;
			memcpy(c->rbuf + c->rlen, c->ws_raw, n);
			c->rlen += n;
			ws_raw_consume(c, n);
			c->ws_in_left -= n;
			if (c->ws_in_left == 0 && c->ws_in_fin)
				c->ws_msgs_in++;
			continue;
		}
		hl = ws_parse_header(c->ws_raw, c->ws_rawlen, &len, &masked, key);
		if (hl == 0)
			return 0;
		b0 = c->ws_raw[0];
		op = b0 & 0x0f;
		fin = (b0 & DC_WS_FIN) != 0;
		if (masked)
			return ws_fail(c, "a masked server frame");
		if (b0 & DC_WS_RSV)
			return ws_fail(c, "a server frame with RSV bits set");
		if (len >> 63)
			return ws_fail(c, "a 64-bit length with its top bit set");
		if (op >= DC_WS_OP_CLOSE) {
			const uint8_t *p = c->ws_raw + hl;

			if (!fin)
				return ws_fail(c, "a fragmented control frame");
			if (len > DC_WS_CONTROL_MAX)
				return ws_fail(c, "a control frame over 125 bytes");
			if (c->ws_rawlen < hl + len)
				return 0;
			n = (size_t)len;
			if (op == DC_WS_OP_CLOSE) {
				if (n == 1)
					return ws_fail(c, "a 1-byte close frame");
				/* 1005: "no status received" (RFC 6455 7.4.1),
				 * never sent on the wire; 0 is no status. */
				c->ws_close_code = n >= 2 ? p[0] << 8 | p[1] :
				    1005;
				if (c->ws_close_code == 0)
					return ws_fail(c, "a close with status 0");
				n = n >= 2 ? n - 2 : 0;
				memcpy(c->ws_close_reason, p + (len >= 2 ? 2 : 0),
				    n);
				c->ws_close_reason[n] = '\0';
			} else if (op == DC_WS_OP_PING) {
				c->ws_pings++;
			} else if (op == DC_WS_OP_PONG) {
				memcpy(c->ws_pong, p, n);
				c->ws_pong_len = n;
				c->ws_pongs++;
			} else {
				return ws_fail(c, "a reserved control opcode");
			}
			ws_raw_consume(c, hl + (size_t)len);
			continue;
		}
		if (op == DC_WS_OP_TEXT)
			return ws_fail(c, "a text message");
		if (op == DC_WS_OP_BINARY && c->ws_in_msg)
			return ws_fail(c, "a new message inside a fragmented one");
		if (op == DC_WS_OP_CONT && !c->ws_in_msg)
			return ws_fail(c, "a continuation with no message started");
		if (op != DC_WS_OP_BINARY && op != DC_WS_OP_CONT)
			return ws_fail(c, "a reserved data opcode");
		ws_raw_consume(c, hl);
		c->ws_frames_in++;
		if (!fin || op == DC_WS_OP_CONT)
			c->ws_frags_in++;
		c->ws_in_msg = !fin;
		c->ws_in_fin = fin;
		c->ws_in_left = len;
		if (len == 0 && fin)
			c->ws_msgs_in++;
	}
}

static void
base64_encode(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 |
		    p[i + 2];
		out[o++] = digits[v >> 18];
		out[o++] = digits[(v >> 12) & 63];
		out[o++] = digits[(v >> 6) & 63];
		out[o++] = digits[v & 63];
	}
	if (n - i == 1) {
		out[o++] = digits[p[i] >> 2];
		out[o++] = digits[(p[i] & 3) << 4];
		out[o++] = '=';
		out[o++] = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)p[i] << 8 | p[i + 1];
		out[o++] = digits[v >> 10];
		out[o++] = digits[(v >> 4) & 63];
		out[o++] = digits[(v & 15) << 2];
		out[o++] = '=';
	}
	out[o] = '\0';
}

void
dc_ws_accept(const char *key, char out[DC_WS_ACCEPT_LEN + 1])
{
	br_sha1_context sha;
	uint8_t h[br_sha1_SIZE];

	br_sha1_init(&sha);
	br_sha1_update(&sha, key, strlen(key));
	br_sha1_update(&sha, WS_GUID, sizeof(WS_GUID) - 1);
	br_sha1_out(&sha, h);
	base64_encode(h, sizeof(h), out);
}

int
dc_ws_upgrade_request(struct dclient *c, const char *key,
    const char *protocols, char *out, size_t cap)
{
	int n = snprintf(out, cap,
	    "GET /derp HTTP/1.1\r\n"
	    "Host: %s\r\n"
	    "User-Agent: Go-http-client/1.1\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Key: %s\r\n"
	    "%s%s%s"
	    "Sec-WebSocket-Version: 13\r\n"
	    "Upgrade: websocket\r\n"
	    "\r\n", c->host, key,
	    protocols != NULL ? "Sec-WebSocket-Protocol: " : "",
	    protocols != NULL ? protocols : "", protocols != NULL ? "\r\n" : "");

	return n < 0 || (size_t)n >= cap ? -1 : n;
}

int
dc_upgrade_ws(struct dclient *c, const char *key, const char *protocols,
    int timeout_ms)
{
	int64_t deadline = dc_now_ms() + timeout_ms;
	char req[1024], rnd[2 * WS_KEY_BYTES];
	uint8_t kb[WS_KEY_BYTES];
	int n;

	c->head[0] = '\0';
	if (c->ws_on)
		return -1;
	if (key == NULL) {
		dc_random(kb, sizeof(kb));
		base64_encode(kb, sizeof(kb), rnd);
		key = rnd;
	}
	n = dc_ws_upgrade_request(c, key, protocols, req, sizeof(req));
	if (n < 0 || dc_write(c, req, (size_t)n) < 0)
		return -1;
	return dc_ws_read_upgrade(c, key, dc_left_ms(deadline));
}

int
dc_ws_read_upgrade(struct dclient *c, const char *key, int timeout_ms)
{
	int64_t deadline = dc_now_ms() + timeout_ms;
	char want[DC_WS_ACCEPT_LEN + 1], got[DC_WS_ACCEPT_LEN + 2];

	c->head[0] = '\0';
	if (c->ws_on)
		return -1;
	if (read_head(c, c->head, sizeof(c->head), deadline) < 0 ||
	    dc_http_status(c->head) != 101)
		return -1;
	dc_ws_accept(key, want);
	if (!dc_http_header(c->head, "Sec-WebSocket-Accept", got, sizeof(got))
	    || strcmp(got, want) != 0)
		return -1;
	/* What came after the head is already WebSocket frames. */
	if (c->rlen > sizeof(c->ws_raw))
		return -1;
	memcpy(c->ws_raw, c->rbuf, c->rlen);
	c->ws_rawlen = c->rlen;
	c->rlen = 0;
	c->ws_on = 1;
	return 0;
}

int
dc_write_raw(struct dclient *c, const void *buf, size_t len)
{
	int64_t deadline = dc_now_ms() + c->write_timeout_ms;

	if (raw_write(c, buf, len, deadline) < 0)
		return -1;
	return raw_flush(c, deadline) < 0 ? -1 : 0;
}

int
dc_ws_send_frame(struct dclient *c, uint8_t b0, int masked,
    const void *payload, size_t len)
{
	int64_t deadline = dc_now_ms() + c->write_timeout_ms;

	if (ws_write_frame(c, b0, masked, payload, len, deadline) < 0)
		return -1;
	return raw_flush(c, deadline) < 0 ? -1 : 0;
}

int
dc_ws_recv_frame(struct dclient *c, uint8_t *b0, int *masked,
    uint8_t *payload, size_t cap, uint64_t *len, int timeout_ms)
{
	int64_t deadline = dc_now_ms() + timeout_ms;
	uint8_t key[4];
	uint64_t off = 0;
	size_t hl;
	int r;

	if (!c->ws_on || c->ws_in_left > 0)
		return -1;
	while ((hl = ws_parse_header(c->ws_raw, c->ws_rawlen, len, masked,
	    key)) == 0)
		if ((r = raw_fill(c, deadline)) <= 0)
			return r;
	*b0 = c->ws_raw[0];
	ws_raw_consume(c, hl);
	while (off < *len) {
		size_t n = c->ws_rawlen, i;

		if (n == 0) {
			if ((r = raw_fill(c, deadline)) <= 0)
				return r;
			continue;
		}
		if (n > *len - off)
			n = (size_t)(*len - off);
		for (i = 0; i < n && off + i < cap; i++)
			payload[off + i] = (uint8_t)(c->ws_raw[i] ^
			    (*masked ? key[(off + i) & 3] : 0));
		ws_raw_consume(c, n);
		off += n;
	}
	return 1;
}

/* ---- DERP --------------------------------------------------------------- */

void
dc_genkey(struct dclient *c)
{
	dc_random(c->sk, 32);
	c->sk[0] &= 248;
	c->sk[31] = (uint8_t)((c->sk[31] & 127) | 64);
	nacl_x25519_base(c->pk, c->sk);
}

int
dc_send_frame(struct dclient *c, uint8_t type, const void *payload,
    size_t len)
{
	int64_t deadline = dc_now_ms() + c->write_timeout_ms;
	uint8_t h[FRAME_HEADER_BYTES];

	h[0] = type;
	dc_put_be32(h + 1, (uint32_t)len);
	if (write_part(c, h, sizeof(h), deadline) < 0)
		return -1;
	if (len > 0 && write_part(c, payload, len, deadline) < 0)
		return -1;
	return write_flush(c, deadline) < 0 ? -1 : 0;
}

int
dc_recv_frame(struct dclient *c, uint8_t *type, uint8_t *payload,
    size_t cap, size_t *len, int timeout_ms)
{
	int64_t deadline = dc_now_ms() + timeout_ms;
	uint32_t n;
	int r;

	r = need(c, FRAME_HEADER_BYTES, deadline);
	if (r != 1)
		return r;
	/* Length read byte by byte, big-endian (derp-protocol.md section 1). */
	n = dc_get_be32(c->rbuf + 1);
	if (n > cap || n > sizeof(c->rbuf) - FRAME_HEADER_BYTES)
		return -1;
	r = need(c, FRAME_HEADER_BYTES + (size_t)n, deadline);
	if (r != 1)
		return r;
	*type = c->rbuf[0];
	if (n > 0)
		memcpy(payload, c->rbuf + FRAME_HEADER_BYTES, n);
	*len = n;
	consume(c, FRAME_HEADER_BYTES + (size_t)n);
	return 1;
}

int
dc_send_packet(struct dclient *c, const uint8_t dst[32], const void *pkt,
    size_t len)
{
	int64_t deadline = dc_now_ms() + c->write_timeout_ms;
	uint8_t h[FRAME_HEADER_BYTES + 32];

	h[0] = FT_SEND_PACKET;
	dc_put_be32(h + 1, (uint32_t)(32 + len));
	memcpy(h + FRAME_HEADER_BYTES, dst, 32);
	if (write_part(c, h, sizeof(h), deadline) < 0)
		return -1;
	if (len > 0 && write_part(c, pkt, len, deadline) < 0)
		return -1;
	return write_flush(c, deadline) < 0 ? -1 : 0;
}

int
dc_recv_packet(struct dclient *c, uint8_t src[32], uint8_t *pkt,
    size_t cap, size_t *len, int timeout_ms)
{
	int64_t deadline = dc_now_ms() + timeout_ms;
	static uint8_t scratch[DC_MAX_FRAME];	/* frames we skip */

	for (;;) {
		uint8_t type;
		size_t n;
		int r;

		/* Peek at the header so a RecvPacket lands in pkt directly. */
		r = need(c, FRAME_HEADER_BYTES, deadline);
		if (r != 1)
			return r;
		if (c->rbuf[0] != FT_RECV_PACKET) {
			r = dc_recv_frame(c, &type, scratch, sizeof(scratch), &n,
			    dc_left_ms(deadline));
			if (r != 1)
				return r;
			continue;
		}
		n = dc_get_be32(c->rbuf + 1);
		if (n < 32 || n - 32 > cap ||
		    n > sizeof(c->rbuf) - FRAME_HEADER_BYTES)
			return -1;
		r = need(c, FRAME_HEADER_BYTES + n, deadline);
		if (r != 1)
			return r;
		memcpy(src, c->rbuf + FRAME_HEADER_BYTES, 32);
		if (n > 32)
			memcpy(pkt, c->rbuf + FRAME_HEADER_BYTES + 32, n - 32);
		*len = n - 32;
		consume(c, FRAME_HEADER_BYTES + n);
		return 1;
	}
}

/*
 * A close is EOF, a reset, a TLS close_notify, or a fatal alert from the
 * server (how a TLS server refuses what it cannot parse).  Anything else that
 * ends the stream (a record that fails our MAC check, a socket error) is not
 * the server closing cleanly, and counts as "still open": the caller's check
 * fails rather than passing on a broken exchange.
 */
int
dc_expect_close(struct dclient *c, int timeout_ms)
{
	int64_t deadline = dc_now_ms() + timeout_ms;

	for (;;) {
		int r;

		c->rlen = 0;	/* discard whatever came before the close */
		r = fill(c, deadline);
		if (r == 0)
			return 1;
		if (r == -1)
			return c->use_tls &&
			    c->tls_err >= BR_ERR_RECV_FATAL_ALERT &&
			    c->tls_err < BR_ERR_SEND_FATAL_ALERT;
		if (r < 0)
			return 0;
	}
}

static int
read_server_key(struct dclient *c, int64_t deadline)
{
	uint8_t p[SERVER_KEY_MAX_BYTES];
	uint8_t type;
	size_t n;

	if (dc_recv_frame(c, &type, p, sizeof(p), &n, dc_left_ms(deadline)) != 1)
		return -1;
	if (type != FT_SERVER_KEY || n < SERVER_KEY_MAGIC_BYTES + 32 ||
	    memcmp(p, server_key_magic, SERVER_KEY_MAGIC_BYTES) != 0)
		return -1;
	if (c->got_server_key &&
	    memcmp(c->server_pk, p + SERVER_KEY_MAGIC_BYTES, 32) != 0)
		return -1;
	memcpy(c->server_pk, p + SERVER_KEY_MAGIC_BYTES, 32);
	c->got_server_key = 1;
	return 0;
}

/* The upgrade request, byte for byte as the Go client writes it
 * (derp-protocol.md 5.1: headers after User-Agent sorted by name). */
static int
upgrade_request(struct dclient *c, int fast_start, char *out, size_t cap)
{
	int n = snprintf(out, cap,
	    "GET /derp HTTP/1.1\r\n"
	    "Host: %s\r\n"
	    "User-Agent: Go-http-client/1.1\r\n"
	    "Connection: Upgrade\r\n"
	    "%s"
	    "Upgrade: DERP\r\n"
	    "\r\n", c->host, fast_start ? "Derp-Fast-Start: 1\r\n" : "");

	return n < 0 || (size_t)n >= cap ? -1 : n;
}

int
dc_upgrade_request(struct dclient *c, int fast_start, char *out, size_t cap)
{
	return upgrade_request(c, fast_start, out, cap);
}

int
dc_upgrade(struct dclient *c, int fast_start, int timeout_ms)
{
	int64_t deadline = dc_now_ms() + timeout_ms;
	char req[512];
	int n = upgrade_request(c, fast_start, req, sizeof(req));

	if (c->ws) {
		if (fast_start || dc_upgrade_ws(c, NULL, "derp", timeout_ms) < 0)
			return -1;
		return read_server_key(c, deadline);
	}
	c->head[0] = '\0';
	if (n < 0 || dc_write(c, req, (size_t)n) < 0)
		return -1;
	if (!fast_start) {
		if (read_head(c, c->head, sizeof(c->head), deadline) < 0)
			return -1;
		if (dc_http_status(c->head) != 101)
			return -1;
	}
	return read_server_key(c, deadline);
}

size_t
dc_client_info_frame(struct dclient *c, const char *json, uint8_t *out,
    size_t cap)
{
	const uint8_t *k;
	size_t jl, plen;
	uint8_t *nonce;

	if (json == NULL)
		json = DEFAULT_JSON;
	jl = strlen(json);
	plen = 32 + NACL_NONCE_BYTES + NACL_TAG_BYTES + jl;
	if (FRAME_HEADER_BYTES + plen > cap)
		return 0;
	out[0] = FT_CLIENT_INFO;
	dc_put_be32(out + 1, (uint32_t)plen);
	memcpy(out + FRAME_HEADER_BYTES, c->pk, 32);
	nonce = out + FRAME_HEADER_BYTES + 32;
	dc_random(nonce, NACL_NONCE_BYTES);
	if ((k = dc_box_key(c)) == NULL)
		return 0;
	nacl_box_seal_afternm(nonce + NACL_NONCE_BYTES, (const uint8_t *)json,
	    jl, nonce, k);
	return FRAME_HEADER_BYTES + plen;
}

const uint8_t *
dc_box_key(struct dclient *c)
{
	if (!c->box_ok || memcmp(c->box_for, c->sk, 32) != 0 ||
	    memcmp(c->box_for + 32, c->server_pk, 32) != 0) {
		c->box_ok = 0;
		if (nacl_box_beforenm(c->box_k, c->server_pk, c->sk) < 0)
			return NULL;
		memcpy(c->box_for, c->sk, 32);
		memcpy(c->box_for + 32, c->server_pk, 32);
		c->box_ok = 1;
	}
	return c->box_k;
}

int
dc_recv_server_info(struct dclient *c, int timeout_ms)
{
	static const char want[] = "{\"version\":2}";
	uint8_t p[1024], msg[1024];
	const uint8_t *k;
	uint8_t type;
	size_t n;

	if (dc_recv_frame(c, &type, p, sizeof(p), &n, timeout_ms) != 1)
		return -1;
	if (type != FT_SERVER_INFO || n < NACL_NONCE_BYTES + NACL_TAG_BYTES)
		return -1;
	if ((k = dc_box_key(c)) == NULL || nacl_box_open_afternm(msg, p +
	    NACL_NONCE_BYTES, n - NACL_NONCE_BYTES, p, k) < 0)
		return -1;
	n -= NACL_NONCE_BYTES + NACL_TAG_BYTES;
	if (n != sizeof(want) - 1 || memcmp(msg, want, n) != 0)
		return -1;
	return 0;
}

int
dc_handshake(struct dclient *c, int fast_start, const char *json,
    int timeout_ms)
{
	int64_t deadline = dc_now_ms() + timeout_ms;
	uint8_t ci[FRAME_HEADER_BYTES + 32 + NACL_NONCE_BYTES + NACL_TAG_BYTES +
	    CLIENT_INFO_MAX_JSON];
	size_t cilen;

	if (c->ws && fast_start)
		return -1;	/* fast start has no WebSocket form */
	if (fast_start && c->got_server_key) {
		/* Request and ClientInfo in one write, as the Go client after a
		 * TLS 1.3 meta certificate; then skip (check) the ServerKey. */
		char req[512];
		int n = upgrade_request(c, 1, req, sizeof(req));
		int64_t wd = dc_now_ms() + c->write_timeout_ms;

		cilen = dc_client_info_frame(c, json, ci, sizeof(ci));
		if (n < 0 || cilen == 0)
			return -1;
		c->head[0] = '\0';
		if (write_part(c, (const uint8_t *)req, (size_t)n, wd) < 0 ||
		    write_part(c, ci, cilen, wd) < 0 || write_flush(c, wd) < 0)
			return -1;
		if (read_server_key(c, deadline) < 0)
			return -1;
	} else {
		if (dc_upgrade(c, fast_start, dc_left_ms(deadline)) < 0)
			return -1;
		cilen = dc_client_info_frame(c, json, ci, sizeof(ci));
		if (cilen == 0 || dc_write(c, ci, cilen) < 0)
			return -1;
	}
	return dc_recv_server_info(c, dc_left_ms(deadline));
}

static int
hex_value(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

long
dc_unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;

	while (hex_value((unsigned char)s[0]) >= 0) {
		if (hex_value((unsigned char)s[1]) < 0 || n >= cap)
			return -1;
		out[n++] = (uint8_t)(hex_value((unsigned char)s[0]) << 4 |
		    hex_value((unsigned char)s[1]));
		s += 2;
	}
	return (long)n;
}

void
dc_tohex(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

char *
dc_read_text(const char *path, size_t max, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;

	if (f == NULL)
		return NULL;
	buf = malloc(max + 1);
	if (buf == NULL) {
		fclose(f);
		return NULL;
	}
	n = fread(buf, 1, max, f);
	fclose(f);
	buf[n] = '\0';
	if (len != NULL)
		*len = n;
	return buf;
}

void
dc_sleep_ms(int ms)
{
	struct timespec ts;

	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int
dc_can_bind(const char *ip)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), r;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	if (fd < 0 || inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	r = bind(fd, (struct sockaddr *)&a, sizeof(a));
	close(fd);
	return r == 0;
}

/* ---- check reporting ---------------------------------------------------- */

volatile sig_atomic_t dc_n_pass, dc_n_fail, dc_n_skip;
const char *dc_report_mode;
void (*dc_report_hook)(const char *name);

/* "KIND [MODE ]NAME" (the line's end is the caller's). */
static void
report_head(const char *kind, const char *name)
{
	if (dc_report_hook != NULL)
		dc_report_hook(name);
	printf("%s %s%s%s", kind, dc_report_mode != NULL ? dc_report_mode : "",
	    dc_report_mode != NULL ? " " : "", name);
}

/* ": DETAIL" and the end of the line. */
static void
report_tail(const char *fmt, va_list ap)
{
	fputs(": ", stdout);
	vprintf(fmt, ap);
	putchar('\n');
	fflush(stdout);
}

void
dc_ok(const char *name)
{
	report_head("ok", name);
	putchar('\n');
	fflush(stdout);
	dc_n_pass++;
}

void
dc_fail(const char *name, const char *fmt, ...)
{
	va_list ap;

	report_head("FAIL", name);
	va_start(ap, fmt);
	report_tail(fmt, ap);
	va_end(ap);
	dc_n_fail++;
}

void
dc_skip(const char *name, const char *fmt, ...)
{
	va_list ap;

	report_head("skip", name);
	va_start(ap, fmt);
	report_tail(fmt, ap);
	va_end(ap);
	dc_n_skip++;
}

void
dc_note(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

void
dc_verdict(const char *name, const char *why)
{
	if (why == NULL)
		dc_ok(name);
	else
		dc_fail(name, "%s", why);
}

void
dc_fail_all(const char *const *names, size_t n, const char *why)
{
	size_t i;

	for (i = 0; i < n; i++)
		dc_fail(names[i], "%s", why);
}

const char *
dc_why(const char *fmt, ...)
{
	static char bufs[4][1200];
	static unsigned k;
	char *b = bufs[k++ & 3];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b, sizeof(bufs[0]), fmt, ap);
	va_end(ap);
	return b;
}

int
dc_summary(void)
{
	printf("%d passed, %d failed, %d skipped\n", (int)dc_n_pass,
	    (int)dc_n_fail, (int)dc_n_skip);
	return dc_n_fail == 0 ? 0 : 1;
}

/* Async-signal-safe decimal: v into out (room for 20), its length. */
static size_t
fmt_uint(char *out, unsigned long v)
{
	char tmp[24];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0 && n < sizeof(tmp));
	for (i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	return n;
}

int
dc_write_counts(int extra_fail)
{
	char line[96];
	size_t n = 0;

	n += fmt_uint(line + n, (unsigned long)dc_n_pass);
	memcpy(line + n, " passed, ", 9);
	n += 9;
	n += fmt_uint(line + n, (unsigned long)dc_n_fail +
	    (unsigned long)extra_fail);
	memcpy(line + n, " failed, ", 9);
	n += 9;
	n += fmt_uint(line + n, (unsigned long)dc_n_skip);
	memcpy(line + n, " skipped\n", 9);
	n += 9;
	return write(STDOUT_FILENO, line, n) < 0 ? -1 : 0;
}

int
dc_test_setup(const char *derp_path, const char *scratch,
    void (*on_alarm)(int), unsigned watchdog_s)
{
	struct sigaction sa;
	const char *m = dc_report_mode != NULL ? dc_report_mode : "";
	const char *sp = dc_report_mode != NULL ? " " : "";

	setvbuf(stdout, NULL, _IOLBF, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	alarm(watchdog_s);
	/* A permissive umask, so the relay's own file modes (0600 key and
	 * certificate key) are what the checks see, not the caller's. */
	umask(022);
	if (access(derp_path, X_OK) < 0) {
		printf("FAIL %s%ssetup: %s is not executable\n", m, sp,
		    derp_path);
		printf("0 passed, 1 failed, 0 skipped\n");
		return -1;
	}
	if (mkdir(scratch, 0700) < 0 && errno != EEXIST) {
		printf("FAIL %s%ssetup: mkdir %s: %s\n", m, sp, scratch,
		    strerror(errno));
		printf("0 passed, 1 failed, 0 skipped\n");
		return -1;
	}
	return 0;
}

/* ---- ports, child processes, logs --------------------------------------- */

int
dc_free_port(const char *ip, int type)
{
	struct sockaddr_storage ss;
	socklen_t al = sizeof(ss);
	int v6 = strchr(ip, ':') != NULL;
	int fd = socket(v6 ? AF_INET6 : AF_INET, type, 0), port = -1;

	if (fd < 0)
		return -1;
	memset(&ss, 0, sizeof(ss));
	if (v6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		if (inet_pton(AF_INET6, ip, &s6->sin6_addr) != 1)
			goto out;
		al = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		if (inet_pton(AF_INET, ip, &s4->sin_addr) != 1)
			goto out;
		al = sizeof(*s4);
	}
	if (bind(fd, (struct sockaddr *)&ss, al) == 0 &&
	    getsockname(fd, (struct sockaddr *)&ss, &al) == 0)
		port = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port :
		    ((struct sockaddr_in *)&ss)->sin_port);
out:
	close(fd);
	return port;
}

pid_t
dc_spawn_logged(char *const argv[], const char *log_path,
    void (*in_child)(void *), void *arg)
{
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);

		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
			close(fd);
		}
		if (in_child != NULL)
			in_child(arg);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

int
dc_wait_serving(pid_t pid, const char *ip, const int *ports, int nports,
    int ms, int poll_ms, int *status)
{
	int64_t deadline = dc_now_ms() + ms;

	while (dc_now_ms() < deadline) {
		int st, i, up = 1;

		if (waitpid(pid, &st, WNOHANG) == pid) {
			if (status != NULL)
				*status = st;
			return 0;
		}
		for (i = 0; i < nports && up; i++) {
			struct dclient *c = dc_new();

			if (c == NULL)
				return -1;
			up = dc_connect(c, ip, ports[i], 0, NULL, 200) == 0;
			dc_free(c);
		}
		if (up)
			return 1;
		dc_sleep_ms(poll_ms);
	}
	return -1;
}

int
dc_wait_exit(pid_t pid, int ms, int poll_ms, int *status)
{
	int64_t deadline = dc_now_ms() + ms;
	int st = 0;

	for (;;) {
		if (waitpid(pid, &st, WNOHANG) == pid) {
			if (status != NULL)
				*status = st;
			return 1;
		}
		if (dc_left_ms(deadline) == 0)
			return 0;
		dc_sleep_ms(poll_ms);
	}
}

void
dc_kill_reap(pid_t pid, int *status)
{
	int st = 0;

	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	if (status != NULL)
		*status = st;
}

int
dc_stop_child(pid_t pid, int sig, int ms, int *status)
{
	kill(pid, sig);
	if (dc_wait_exit(pid, ms, 10, status))
		return 1;
	dc_kill_reap(pid, status);
	return 0;
}

const char *
dc_status_str(int status)
{
	if (WIFEXITED(status))
		return dc_why("exit %d", WEXITSTATUS(status));
	if (WIFSIGNALED(status))
		return dc_why("signal %d", WTERMSIG(status));
	return "unknown status";
}

int
dc_log_has(const char *path, size_t max, const char *want, int ms)
{
	int64_t deadline = dc_now_ms() + ms;
	char *text;
	int found;

	for (;;) {
		text = dc_read_text(path, max, NULL);
		found = text != NULL && strstr(text, want) != NULL;
		free(text);
		if (found || dc_left_ms(deadline) == 0)
			return found;
		dc_sleep_ms(50);
	}
}

void
dc_show_log_tail(const char *path, size_t max, size_t tail)
{
	size_t len;
	char *text = dc_read_text(path, max, &len);

	if (text == NULL)
		return;
	printf("# --- last lines of %s ---\n%s%s# ---\n", path,
	    len > tail ? text + len - tail : text,
	    len > 0 && text[len - 1] != '\n' ? "\n" : "");
	free(text);
}
