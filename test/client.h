/*
 * client.h -- a blocking DERP client for the tests (and later the benchmark):
 * TCP, optional TLS (BearSSL client; any certificate chain is accepted, and the
 * leaf's SHA-256, public key and the chain length are recorded in x509 so the
 * caller can pin the sha256-raw: way), the /derp upgrade, the handshake, and
 * frames.  Every call that waits takes a timeout; nothing waits forever.
 *
 * A struct dclient is large (it holds a full TLS I/O buffer and one maximal frame),
 * so get one from dc_new() rather than the stack.
 *
 * WebSocket (RFC 6455, derp-protocol.md 5.4): after dc_upgrade_ws (or
 * dc_upgrade / dc_handshake with the ws option set) the client is in ws mode:
 * what it writes goes out in masked binary frames (ws_msg_bytes and
 * ws_frag_bytes choose how a write is cut), and every read path (dc_read,
 * dc_read_full, dc_recv_frame, dc_recv_packet, dc_expect_close) sees the
 * payload of the server's binary messages as one byte stream, pongs recorded
 * and a close frame (its status in ws_close_code) read as the end of the
 * stream.  The DERP functions work unchanged over it.
 */
#ifndef TEST_CLIENT_H
#define TEST_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/types.h>
#include <bearssl.h>

/* Largest frame we expect to read: header 5 + the biggest legal payload, a
 * RecvPacket of key 32 + packet 65536, with room to spare (ForwardPacket 64). */
#define DC_MAX_FRAME (5 + 65536 + 64)
/* Largest HTTP response head we keep: derper's heads are under 1 KB; 8 KB is
 * Go's and most servers' own header-line budget. */
#define DC_HEAD_MAX 8192

/* WebSocket frames (RFC 6455 section 5.2): byte 0 is FIN | RSV1-3 | opcode. */
#define DC_WS_FIN 0x80
#define DC_WS_RSV 0x70			/* RSV1 0x40, RSV2 0x20, RSV3 0x10 */
#define DC_WS_OP_CONT 0x0
#define DC_WS_OP_TEXT 0x1
#define DC_WS_OP_BINARY 0x2
#define DC_WS_OP_CLOSE 0x8
#define DC_WS_OP_PING 0x9
#define DC_WS_OP_PONG 0xa
/* A frame header: 2 bytes, then 2 or 8 of extended length, then the 4-byte
 * mask key of a client frame: at most 2 + 8 + 4. */
#define DC_WS_HEADER_MAX 14
/* Control frames carry at most 125 payload bytes (RFC 6455 5.5). */
#define DC_WS_CONTROL_MAX 125
/* derper's WebSocket library refuses received messages over 32768 bytes
 * (close 1009): the default cut of what we write. */
#define DC_WS_MSG_MAX 32768
/* Received frame bytes not yet deframed: a frame header plus one full TLS
 * record (16384) of what follows; binary payload moves on to rbuf as it
 * comes, so a frame need never fit whole. */
#define DC_WS_RAW_BYTES (DC_WS_HEADER_MAX + 16384)
/* Sec-WebSocket-Accept: base64 of a 20-byte SHA-1, 28 characters. */
#define DC_WS_ACCEPT_LEN 28

struct dclient {
	/* Options: dc_new() sets the defaults, dc_connect() keeps them. */
	int rcvbuf;			/* SO_RCVBUF before connect; 0 = system default */
	/* Source address to bind before connect (numeric, the family of the
	 * server's); "" = none, the system chooses.  Loopback tests use
	 * 127.0.0.2 to be a second client machine. */
	char src_addr[48];
	unsigned tls_min, tls_max;	/* BR_TLS10..BR_TLS12; default TLS 1.2 only */
	int write_timeout_ms;		/* bound for one dc_write (default 5000) */
	/* ALPN names to offer (TLS); alpn_count 0 = no ALPN extension. After
	 * the handshake br_ssl_engine_get_selected_protocol(&sc.eng) says
	 * what the server chose. */
	const char *alpn[4];
	size_t alpn_count;
	/* 1: take the server's ServerKeyExchange signature unchecked (load
	 * generators only: a handshake then costs this side no ECDSA
	 * verification, the most of its CPU; the chain is never checked). */
	int no_sig_check;
	/* 1: offer the TLS 1.2 suites a Tailscale client offers (Go's
	 * defaults, derp-protocol.md 4.1: 10) instead of BearSSL's full
	 * list (46), so the relay's ClientHello work is what it is with
	 * real clients (load generators). */
	int go_suites;
	/* WebSocket: ws set makes dc_upgrade (and so dc_handshake) upgrade
	 * with dc_upgrade_ws (subprotocol "derp") instead of Upgrade: DERP.
	 * In ws mode each write (dc_write, dc_send_frame, dc_send_packet) is
	 * cut into binary messages of at most ws_msg_bytes payload bytes
	 * (default DC_WS_MSG_MAX; 0 = no cut), and, when ws_frag_bytes is
	 * not 0, each message into fragments of at most ws_frag_bytes
	 * (binary FIN=0, continuations, the last with FIN).  Each frame gets
	 * a fresh random mask key. */
	int ws;
	size_t ws_msg_bytes;
	size_t ws_frag_bytes;

	int fd;
	int use_tls;
	int tls_err;			/* BearSSL error when the engine failed, else 0 */
	int tls_broken;			/* the socket under the engine failed ... */
	int tls_broken_eof;		/* ... by EOF or reset (a close, not an error) */
	char host[80];			/* Host header: "127.0.0.1:443", "[::1]:3340" */
	br_ssl_client_context sc;
	/* x509 state for "accept any certificate, remember the chain's leaf hash" */
	struct dc_x509 {
		const br_x509_class *vtable;
		br_sha256_context sha;
		int cert_index;
		uint8_t leaf_sha256[32];
		int ncerts;			/* certificates the server presented */
		br_x509_decoder_context dec;
		br_x509_pkey pkey;
		uint8_t keybuf[600];		/* 4096-bit RSA modulus 512 + exponent */
		int pkey_ok;
	} x509;
	uint8_t iobuf[BR_SSL_BUFSIZE_BIDI];
	/* Received, not yet consumed plaintext: one maximal frame plus one full
	 * TLS record (16384) of whatever follows it. */
	uint8_t rbuf[DC_MAX_FRAME + 16384];
	size_t rlen;
	uint8_t sk[32], pk[32];		/* our key pair */
	uint8_t server_pk[32];		/* from ServerKey (or preset for fast start) */
	int got_server_key;
	uint8_t box_k[32];		/* dc_box_key's: the box key of box_for */
	uint8_t box_for[64];		/* sk || server_pk it was derived from */
	int box_ok;
	char head[DC_HEAD_MAX];		/* last HTTP response head (dc_upgrade) */

	/* WebSocket state, reset by dc_connect and dc_start. */
	int ws_on;			/* in ws mode: a 101 with the right Accept came */
	const char *ws_err;		/* first violation in the server's frames
					 * (the reads then fail), or NULL */
	int ws_close_code;		/* the server's close frame: its status,
					 * 1005 when it had none; 0 = none yet */
	char ws_close_reason[DC_WS_CONTROL_MAX + 1];
	uint8_t ws_pong[DC_WS_CONTROL_MAX];	/* the last pong's payload */
	size_t ws_pong_len;
	unsigned long ws_pongs, ws_pings;	/* control frames received */
	unsigned long ws_frames_in;	/* data frames received */
	unsigned long ws_msgs_in;	/* binary messages received whole */
	unsigned long ws_frags_in;	/* data frames part of a fragmented one */
	uint64_t ws_in_left;		/* payload of the current data frame not
					 * yet moved to rbuf */
	int ws_in_fin;			/* the current data frame has FIN */
	int ws_in_msg;			/* a fragmented message is unfinished */
	uint8_t ws_raw[DC_WS_RAW_BYTES];	/* received, not yet deframed */
	size_t ws_rawlen;
	uint8_t ws_out[DC_MAX_FRAME];	/* one write, staged until it is framed */
	size_t ws_outlen;
};

/* Helpers the test programs share.  dc_tohex: n bytes as 2n lowercase hex
 * digits and a NUL into out.  dc_read_text: the first max bytes of a file
 * (a log, a data file), malloc'd and NUL-terminated, its length in *len
 * (if not NULL); NULL when it cannot be read. */
void dc_tohex(const uint8_t *p, size_t n, char *out);
/* The monotonic clock in milliseconds; a sleep that resumes after signals. */
int64_t dc_now_ms(void);
void dc_sleep_ms(int ms);
/* Is the IPv4 address ip local (can a socket be bound to it)?  Loopback
 * tests use 127.0.0.2 and up as other machines where they can. */
int dc_can_bind(const char *ip);
char *dc_read_text(const char *path, size_t max, size_t *len);
/* Milliseconds left until deadline (a dc_now_ms() time): 0 once it has
 * passed, capped at 1000000 for poll().  dc_wait_fd: poll fd for events
 * until deadline: 1 ready (or POLLERR/POLLHUP), -2 timeout, -1 error. */
int dc_left_ms(int64_t deadline);
int dc_wait_fd(int fd, short events, int64_t deadline);
/* Big-endian 32-bit values, as DERP frame headers carry them. */
void dc_put_be32(uint8_t *p, uint32_t v);
uint32_t dc_get_be32(const uint8_t *p);

/*
 * Check reporting, one line a check on stdout (flushed): "ok NAME", "FAIL
 * NAME: DETAIL", "skip NAME: WHY"; with dc_report_mode set (the current
 * mode of test_integration) it stands between the word and NAME.  The
 * counters are for the summary (dc_summary: "N passed, N failed, N
 * skipped", then the exit status, 0 iff nothing failed) and for a watchdog
 * (dc_write_counts: that line, async-signal-safe, extra_fail added to the
 * failures; 0 or -1).  dc_report_hook, when set, sees every reported name
 * first (test_pebble marks its checks done).  dc_note: a "# " line.
 * dc_verdict: ok when why is NULL, else FAIL with why.  dc_fail_all: FAIL
 * each of names[0..n) with why (a group that cannot run).  dc_why: a
 * formatted reason in one of 4 rotating static buffers (a verdict may take
 * one while another is built).
 */
extern volatile sig_atomic_t dc_n_pass, dc_n_fail, dc_n_skip;
extern const char *dc_report_mode;
extern void (*dc_report_hook)(const char *name);
#ifdef __GNUC__
void dc_fail(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void dc_skip(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void dc_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *dc_why(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
#else
void dc_fail(const char *name, const char *fmt, ...);
void dc_skip(const char *name, const char *fmt, ...);
void dc_note(const char *fmt, ...);
const char *dc_why(const char *fmt, ...);
#endif
void dc_ok(const char *name);
void dc_verdict(const char *name, const char *why);
void dc_fail_all(const char *const *names, size_t n, const char *why);
int dc_summary(void);
int dc_write_counts(int extra_fail);
/* A test program's start: stdout line-buffered, on_alarm for SIGALRM with
 * alarm(watchdog_s) armed, SIGPIPE ignored, umask 022, derp_path must be
 * executable and scratch exist (made 0700 if missing).  0, or -1 after
 * printing "FAIL setup: WHY" and a 0 passed, 1 failed summary. */
int dc_test_setup(const char *derp_path, const char *scratch,
    void (*on_alarm)(int), unsigned watchdog_s);

/*
 * Relays as child processes.  dc_free_port: a port of type (SOCK_STREAM,
 * SOCK_DGRAM) free on ip (numeric IPv4 or IPv6) right now, the kernel's
 * choice, or -1; another program may take it before the child binds it.
 * dc_spawn_logged: fork and execv(argv[0], argv) with stdout and stderr
 * appended to log_path (created 0644); in_child(arg), when set, runs in the
 * child just before exec.  The pid, or -1.  dc_wait_serving: until ms
 * pass, poll every poll_ms for each of ports[0..nports) on ip to accept a
 * TCP connection: 1 they all do, 0 the child exited (reaped, its wait
 * status in *status if not NULL), -1 not serving in time.  dc_wait_exit:
 * up to ms (polled every poll_ms) for the child to exit: 1 reaped (*status
 * if not NULL), 0 still running.  dc_kill_reap: SIGKILL and reap (bounded:
 * SIGKILL cannot be caught).  dc_stop_child: sig, then up to ms for the
 * exit: 1 it exited (*status), 0 it was then killed and reaped.
 * dc_status_str: a wait status as "exit N", "signal N" (a dc_why buffer).
 */
int dc_free_port(const char *ip, int type);
pid_t dc_spawn_logged(char *const argv[], const char *log_path,
    void (*in_child)(void *), void *arg);
int dc_wait_serving(pid_t pid, const char *ip, const int *ports, int nports,
    int ms, int poll_ms, int *status);
int dc_wait_exit(pid_t pid, int ms, int poll_ms, int *status);
void dc_kill_reap(pid_t pid, int *status);
int dc_stop_child(pid_t pid, int sig, int ms, int *status);
const char *dc_status_str(int status);
/* Logs.  dc_log_has: 1 when the first max bytes of the file at path hold
 * want within ms (polled every 50 ms: the line may be written after the
 * event the caller waited for), else 0.  dc_show_log_tail: its last tail
 * bytes (of the first max) as "# --- last lines of PATH ---" ... "# ---". */
int dc_log_has(const char *path, size_t max, const char *want, int ms);
void dc_show_log_tail(const char *path, size_t max, size_t tail);

/* A zeroed client with default options and no connection; NULL if out of
 * memory.  dc_free() closes and frees (NULL is fine). */
struct dclient *dc_new(void);
void dc_free(struct dclient *c);

/* Connect to host:port (numeric IPv4 or IPv6).  tls: 0 plain, 1 TLS.  sni: server
 * name to send, or NULL for none.  Returns 0 or -1. */
int dc_connect(struct dclient *c, const char *host, int port, int tls,
    const char *sni, int timeout_ms);
void dc_close(struct dclient *c);

/* For programs that drive many connections at once without blocking (the
 * benchmark).  dc_start: as dc_connect, but it returns at once: c->fd is a
 * non-blocking socket whose connect may still be in progress (*pending = 1:
 * wait until it is writable, then check SO_ERROR), and with tls the engine
 * c->sc.eng is reset with this client's accept-any validator, its ClientHello
 * waiting to be sent; the caller pumps engine and socket itself.  0 or -1.
 * dc_upgrade_request: the /derp upgrade request as dc_upgrade sends it, into
 * out[cap] (NUL-terminated); its length, or -1 if it does not fit. */
int dc_start(struct dclient *c, const char *host, int port, int tls,
    const char *sni, int *pending);
int dc_upgrade_request(struct dclient *c, int fast_start, char *out,
    size_t cap);

/* Raw bytes (after TLS).  dc_write: 0 or -1.  dc_read: >0 bytes, 0 EOF/closed,
 * -1 error, -2 timeout.  dc_read_full: exactly n bytes: 1, 0, -1, -2. */
int dc_write(struct dclient *c, const void *buf, size_t len);
int dc_read(struct dclient *c, void *buf, size_t cap, int timeout_ms);
int dc_read_full(struct dclient *c, void *buf, size_t n, int timeout_ms);

/* HTTP: send a request, read the response head (up to the blank line) into
 * head[cap] (NUL-terminated); extra bytes stay buffered for frames. 0 or -1. */
int dc_http_request(struct dclient *c, const char *request, char *head,
    size_t cap, int timeout_ms);
/* The body of the response whose head is `head` (Content-Length, chunked, or up
 * to EOF; none for HEAD requests and 1xx/204/304).  NUL-terminated when room.
 * 0 or -1. */
int dc_http_body(struct dclient *c, const char *head, int head_request,
    char *body, size_t cap, size_t *len, int timeout_ms);
/* Value of header `name` in a response head (case-insensitive name), copied
 * into out[cap] with surrounding blanks removed; 1 found, 0 not. */
int dc_http_header(const char *head, const char *name, char *out, size_t cap);
/* Status code of a response head, or -1. */
int dc_http_status(const char *head);

/* Decode hex digits up to the first non-hex character into out[cap]: the
 * byte count, or -1 (an odd digit count, or more than cap bytes). */
long dc_unhex(const char *s, uint8_t *out, size_t cap);

/* n random bytes from /dev/urandom (aborts if it cannot be read). */
void dc_random(void *buf, size_t n);
/* A TLS record holding one complete ClientHello (so a server awaits nothing
 * more) whose session ID length, 255, is impossible (at most 32); the rest
 * random.  DC_BAD_HELLO_BYTES bytes into out. */
#define DC_BAD_HELLO_BYTES 200
void dc_bad_client_hello(uint8_t out[DC_BAD_HELLO_BYTES]);
/* Fresh random key pair in c->sk / c->pk. */
void dc_genkey(struct dclient *c);

/* Full handshake: upgrade (fast_start: send Derp-Fast-Start: 1 and expect no HTTP
 * response), read ServerKey, send ClientInfo with json (NULL: the tailscaled
 * default {"version":2,"CanAckPings":true}), read and open ServerInfo.  0 or -1.
 * With fast_start and c->got_server_key already set (the caller knows the key,
 * as a Go client does after a TLS 1.3 meta certificate) the request and the
 * ClientInfo go out in one write, as the Go client sends them, and the
 * ServerKey that arrives is checked against the known key. */
int dc_handshake(struct dclient *c, int fast_start, const char *json,
    int timeout_ms);
/* The steps of dc_handshake, for tests that break one of them.
 * dc_upgrade: request (+ 101 unless fast start) + ServerKey; 0 or -1.
 * dc_client_info_frame: the ClientInfo frame (5-byte header included) for json
 *   into out[cap]; returns its length, or 0 if it does not fit.
 * dc_recv_server_info: next frame must be ServerInfo holding {"version":2}.
 * With c->ws set, dc_upgrade is dc_upgrade_ws(c, NULL, "derp", ...) plus
 * ServerKey, and fast_start (no WebSocket form) fails. */
int dc_upgrade(struct dclient *c, int fast_start, int timeout_ms);
size_t dc_client_info_frame(struct dclient *c, const char *json, uint8_t *out,
    size_t cap);
int dc_recv_server_info(struct dclient *c, int timeout_ms);
/* The box key between c->sk and c->server_pk (one X25519 however many
 * boxes a connection seals and opens), or NULL for a low-order server key. */
const uint8_t *dc_box_key(struct dclient *c);

/* Frames.  dc_recv_frame: 1 frame read, 0 EOF/closed, -1 error, -2 timeout. */
int dc_send_frame(struct dclient *c, uint8_t type, const void *payload,
    size_t len);
int dc_recv_frame(struct dclient *c, uint8_t *type, uint8_t *payload,
    size_t cap, size_t *len, int timeout_ms);
int dc_send_packet(struct dclient *c, const uint8_t dst[32], const void *pkt,
    size_t len);
/* Read frames until a RecvPacket arrives (KeepAlive etc. skipped).  Fills src and
 * the packet.  1, 0, -1, -2 as dc_recv_frame. */
int dc_recv_packet(struct dclient *c, uint8_t src[32], uint8_t *pkt,
    size_t cap, size_t *len, int timeout_ms);
/* 1 if the server closes the connection within timeout_ms (frames before the
 * close are discarded): EOF, reset, close_notify or a fatal alert it sent; 0
 * if it stays open or the stream breaks otherwise (a bad record, an error). */
int dc_expect_close(struct dclient *c, int timeout_ms);

/* ---- WebSocket ---- */

/* Sec-WebSocket-Accept for key: base64(SHA-1(key "258EAFA5-E914-47DA-95CA-
 * C5AB0DC85B11")) into out (NUL-terminated). */
void dc_ws_accept(const char *key, char out[DC_WS_ACCEPT_LEN + 1]);
/* The upgrade request as a Go client writes it (the vector's bytes: headers
 * after User-Agent sorted by name), for key (base64) and protocols (the
 * Sec-WebSocket-Protocol value; NULL = no such header), into out[cap]
 * (NUL-terminated): its length, or -1 if it does not fit. */
int dc_ws_upgrade_request(struct dclient *c, const char *key,
    const char *protocols, char *out, size_t cap);
/* Send that request (key NULL: 16 random bytes), read the response head
 * into c->head; when it is a 101 whose Sec-WebSocket-Accept matches, enter
 * ws mode and return 0 (the subprotocol is not checked: see c->head).
 * -1 otherwise (c->head holds what came, if anything).  Nothing after the
 * head is read: ServerKey is the caller's (dc_upgrade reads it). */
int dc_upgrade_ws(struct dclient *c, const char *key, const char *protocols,
    int timeout_ms);
/* The second half of dc_upgrade_ws, for a request the caller wrote itself
 * (dc_write) with Sec-WebSocket-Key key: read the head, check the 101 and
 * its Accept, enter ws mode.  0 or -1. */
int dc_ws_read_upgrade(struct dclient *c, const char *key, int timeout_ms);
/* Bytes straight to the transport (under the WebSocket framing, after TLS),
 * flushed: already-framed input such as the vectors' masked frames.  0/-1. */
int dc_write_raw(struct dclient *c, const void *buf, size_t len);
/* One frame of any shape, flushed: b0 is FIN | RSV | opcode as sent, the
 * length field says len (the shortest encoding), masked with a random key
 * when masked.  0 or -1. */
int dc_ws_send_frame(struct dclient *c, uint8_t b0, int masked,
    const void *payload, size_t len);
/* The next server frame as it is, bypassing the deframer (call it between
 * messages: before any DERP read, or when everything read so far was
 * consumed): *b0 its first byte, *masked its mask bit, *len its payload
 * length; the payload (unmasked when masked) into payload[cap], the rest of
 * a longer one read and dropped.  1, 0 EOF/closed, -1 error, -2 timeout. */
int dc_ws_recv_frame(struct dclient *c, uint8_t *b0, int *masked,
    uint8_t *payload, size_t cap, uint64_t *len, int timeout_ms);

#endif
