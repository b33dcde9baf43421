/*
 * loadgen.h -- the engine bench.c and soak.c share (see loadgen.c).
 */
#ifndef TEST_LOADGEN_H
#define TEST_LOADGEN_H

#include "client.h"
#include "../nacl.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- constants ----------------------------------------------------------- */

#define FT_SERVER_KEY 0x01
#define FT_SERVER_INFO 0x03
#define FT_SEND_PACKET 0x04
#define FT_RECV_PACKET 0x05
#define FT_KEEP_ALIVE 0x06
#define FT_PEER_GONE 0x08
#define FT_PING 0x12
#define FT_PONG 0x13

#define FRAME_HDR_BYTES 5		/* type 1 + big-endian length 4 */
#define KEY_BYTES 32
/* What the relay handles per packet besides the packet: the frame header and a
 * key (SendPacket in, RecvPacket out). */
#define FRAME_PREFIX_BYTES (FRAME_HDR_BYTES + KEY_BYTES)
#define PING_BYTES 8
#define SERVER_KEY_MAGIC_BYTES 8	/* "DERP" U+1F511, then the key */
#define CLIENT_INFO_MAX_BYTES 256	/* ours: header, key, nonce, box of 33 */
/* Handshakes in flight at once: enough to keep the relay's handshake work
 * (8 steps per loop round) busy, few enough that a slow one is not starved. */
#define HS_INFLIGHT 64
#define HS_INFLIGHT_CHILD 32
#define HS_TOTAL_MS 60000		/* all handshakes of one batch */

/*
 * Our header at the start of every packet:
 *   0 epoch u32 | 4 pair u32 | 8 seq u64 | 16 send time ns u64 |
 *   24 length u32 | 28 kind u32 | 32 check u32 (FNV-1a of bytes 0..32) | 36 0
 * The body [40, length) is pattern[off + i] with off from pair and seq.
 */
#define PKT_HDR_BYTES 40
#define KIND_DATA 1			/* forward only */
#define KIND_PING 2			/* B sends it back to A */
/* Largest packet benched: its frame (16,037 bytes) fits one TLS record (16,384
 * bytes of plaintext), so every packet is exactly one record, as from Go. */
#define PKT_MAX_BYTES 16000
#define PATTERN_SPAN 251		/* body offsets; prime, so neighbours differ */
#define PATTERN_BYTES (PATTERN_SPAN + PKT_MAX_BYTES)

/* Bytes a TLS 1.2 record adds: header 5 + explicit nonce 8 + tag 16 with
 * AES-GCM (ChaCha20-Poly1305: 5 + 16). */
#define TLS_RECORD_OVERHEAD 29
#define TLS_APPLICATION_DATA 23	/* record content type */
/* Socket output per connection.  64 KiB holds a full window of 32 frames of
 * 1,200-byte packets (32 x 1,266) or 4 of 16,000 bytes; the kernel's socket
 * buffer holds the rest of a window. */
#define WBUF_BYTES 65536
/* Socket input per TLS connection: BearSSL's recvrec buffer asks for one
 * record header or one record body at a time, so reading straight into it
 * would cost up to two recv() calls per record.  32 KiB = two full records. */
#define SIN_BYTES 32768
/* recv() calls per readiness event, so one busy connection cannot starve the
 * others; level-triggered epoll reports it again. */
#define RECVS_PER_EVENT 4
#define MAX_EVENTS 512

/* derper's per-client queue depth: a window above it could overflow a queue. */
#define QUEUE_DEPTH 32
#define WINDOW_MAX QUEUE_DEPTH
/* The relay's packet pool when its log does not say (README: 16 chunks of
 * 2 KiB per slot plus 128 spare). */
#define POOL_CHUNKS_PER_SLOT 16
#define POOL_CHUNKS_SPARE 128
#define POOL_CHUNK_BYTES 2048
/* Windows use at most half the pool, whatever the pair count: the rest is for
 * everything else the relay keeps in chunks. */
#define POOL_SHARE_DIV 2

#define MAX_PAIRS 1000
/* Echoes B could not send at once (its output full) wait here, in order. */
#define ECHO_BACKLOG 64
#define RTT_MAX_SAMPLES (4u << 20)
#define ANOMALY_MAX 60			/* kept for the final list */

#define CONNECT_MS 10000
#define START_MS 10000			/* relay start-up (certificate generation) */
#define STOP_MS 3000
#define DRAIN_WINDOW_MS 3000		/* windowed: every packet back by then */
/* Overload and latency runs are drained when every pair's last packet is
 * back (the relay drops the oldest, so the last one arrives), at most
 * DRAIN_MAX_MS, or after DRAIN_QUIET_MS without any arrival. */
#define DRAIN_QUIET_MS 1000
#define DRAIN_MAX_MS 5000
#define SETTLE_MS 500			/* before reading RSS */
/* Nothing delivered for this long while windows are full: look where the
 * packets are (at most STALL_PROBES times per phase). */
#define STALL_PROBE_MS 100
#define STALL_PROBES 3

/* Idle clients are opened by 4 children, 2,500 each for 10,000 (well within
 * 20,000 files per process), each with HS_INFLIGHT_CHILD handshakes in
 * flight, so the clients' share of the handshake crypto uses both cores. */
#define IDLE_CHILDREN 4
#define IDLE_SMALL 1000
#define IDLE_LARGE 10000
#define IDLE_MAX_CLIENTS 12000		/* relay slots for the memory scenario */

/* ---- the relay process ---- */

struct server {
	pid_t pid;
	int port;
	int tls;
	int max_clients;
	long pool_chunks;		/* from its start-up line */
	long chunk_bytes;
	int nlog;
	char log[200];
};

/* ---- connections and pairs ---- */

/*
 * A connection: client.c's dclient holds the keys, the BearSSL engine (reset by
 * dc_start) and the received plaintext, dc->rbuf/rlen, where whole DERP frames
 * are parsed in place; this file drives socket and engine, from the handshake
 * on.  wbuf[woff, wlen) is what the socket has not taken yet; for TLS every
 * record BearSSL produces is moved there at once, so the engine is always
 * ready for the next frame.  A dclient is large (about 120 KB, mostly buffers
 * that stay untouched here), fine for the 2,000 connections of 1,000 pairs;
 * idle clients give theirs back after the handshake (conn_detach).
 */
struct pair;

struct conn {
	struct dclient *dc;
	int fd;
	int tls;
	int side;			/* 'A' sender, 'B' receiver (and echoer) */
	struct pair *p;
	uint8_t *wbuf;
	size_t woff, wlen;
	uint8_t *sin;			/* TLS: socket bytes not yet in the engine */
	size_t soff, slen;
	int out_armed;			/* EPOLLOUT in the interest set */
	int queued;			/* on the flush list */
	int dead;
	int hs;				/* handshake state, HS_DONE after */
	int stop_at;			/* cycling children: close at this state */
	int withhold_info;		/* at ServerKey: send no ClientInfo, go to
					 * HS_INFO and stay (t_mark: when) */
	int tail_sent;			/* IDLE_HOLD: the SendPacket tail is out */
	int64_t t_mark;			/* now_ns() of the caller's event */
	uint8_t ping[PING_BYTES];	/* conn_ping: the Ping's payload ... */
	int ping_state;			/* ... 0 none, 1 sent, 2 answered */
};

/*
 * Handshake states, driven by readiness like everything else so that many
 * handshakes overlap: HS_CONNECT (connect in progress; EPOLLOUT) -> HS_TLS
 * (engine handshaking; done when it accepts application data) -> HS_HEAD
 * (upgrade request sent; waiting for the 101 head) -> HS_KEY (ServerKey frame;
 * ClientInfo sent in answer) -> HS_INFO (ServerInfo must open to
 * {"version":2}) -> HS_DONE.  Plain connections skip HS_TLS.
 */
enum { HS_CONNECT, HS_TLS, HS_HEAD, HS_KEY, HS_INFO, HS_DONE };

/* A pair: A sends to B; in latency runs B sends each packet back to A. */
struct pair {
	struct conn a, b;
	int idx;
	int open;
	int dead;
	/* this phase */
	uint64_t sent;			/* packets A produced */
	uint64_t next;			/* sequence number B expects next */
	uint64_t delivered;		/* A -> B packets that arrived intact */
	uint64_t lost;			/* sequence gaps seen by B */
	uint64_t echo_next, echo_got, echo_lost;
	uint64_t sent0, dl0;		/* at the start of the measurement */
	uint64_t sent1, dl1;		/* at its end */
	double tokens;
	int was_blocked;		/* A's output was full last time */
	uint64_t eb_seq[ECHO_BACKLOG];	/* echo backlog: ring of seq ... */
	int64_t eb_ts[ECHO_BACKLOG];	/* ... and the ping's send time */
	unsigned eb_head, eb_n;
};

struct counts {
	uint64_t corrupt, misrouted, reordered, lost, stale, unexpected;
	uint64_t disconnects, echo_drops, keepalives, pings, peer_gone;
};

enum mode { M_WINDOW, M_RATE, M_ECHO };

struct loadgen {
	int epfd;
	int tls;
	struct pair *pairs;		/* [MAX_PAIRS] */
	int nactive;
	struct conn **flushq;		/* [2 * MAX_PAIRS] */
	size_t nflush;
	/* the running phase */
	enum mode mode;
	int generate;			/* senders may produce */
	uint32_t epoch;
	size_t size;			/* packet bytes; 0: the smoke cycle */
	int window;
	uint64_t limit;			/* packets per pair; 0 = until time is up */
	double rate, burst;		/* per pair: packets/s, most tokens */
	int64_t t_tokens;
	int64_t t_phase;
	int measuring;
	int64_t last_rx_ns, max_stall_ns;
	int64_t last_any_rx_ns;		/* for quiet drains */
	uint64_t relayed;		/* RecvPackets intact, both directions */
	struct counts err;
	uint32_t *rtt;			/* [RTT_MAX_SAMPLES], ns */
	size_t nrtt;
	uint16_t cipher_suite;
	int hs_pending, hs_failed;	/* handshakes of the current batch */
	/* Pacing tokens: made, and thrown away because A's output was full
	 * (TCP backpressure from the relay) or because our loop was late. */
	double tok_total, tok_blocked, tok_late;
	int reconnect;			/* the drain failed: fresh connections */
	void (*tick)(void);		/* called by loop_once every round */
	int quiet_hs;			/* failed handshakes: counted, no anomaly */
	char first_fail[96];		/* the first failed handshake: state, why */
	uint64_t pongs;			/* Pongs that answered our conn_ping */
};

struct spec {
	enum mode mode;
	size_t size;			/* 0: smoke cycle */
	int window;
	double rate;			/* total packets/s the senders offer */
	uint64_t limit;			/* per pair; 0 = by time */
	int warm_ms, measure_ms;
};

struct result {
	int ran;
	enum mode mode;
	int tls, pairs, window;
	size_t size;
	double secs;
	double pps;			/* delivered (latency: relayed) per second */
	double offered_pps;		/* sent per second */
	double target_pps;		/* what the pacing asked for */
	double blocked, late;		/* shares of the pacing not sent */
	double mbps;
	double srv_util, bench_util;	/* of one core */
	double other_util;		/* other processes, of one core */
	double srv_ns;			/* relay CPU per delivered packet */
	double peer_util, peer_ns;	/* the same for srv_peer (-1: none) */
	double loss;			/* whole phase, after the drain (what
					 * the drain did not see is lost) */
	double frac_min, frac_med, frac_max;	/* per-pair delivered/sent */
	double share_min, share_max;	/* per-pair delivered / mean */
	double stall_ms;
	double p50_us, p99_us, max_us;
	uint64_t nrtt;
	uint64_t sent_total, delivered_total;
	int errors;			/* integrity errors + disconnects */
	struct counts err;
};


/* ---- idle clients ---- */

struct idle_child {
	pid_t pid;
	int cmd, rep;
	long open;
};

/* What a child is told to do (loadgen.c, idle clients) and what it says. */
enum { IDLE_OPEN, IDLE_KEEP, IDLE_CYCLE, IDLE_PING, IDLE_HOLD, IDLE_WATCH,
    IDLE_STORM };
struct idle_cmd {
	uint32_t op;
	uint32_t n;			/* clients or cycles */
	uint32_t inflight;		/* handshakes at once; 0: HS_INFLIGHT_CHILD */
	uint32_t ms;			/* time bound; 0: HS_TOTAL_MS */
	uint32_t abort_every;		/* IDLE_CYCLE: 0 = none closes early */
	uint32_t gap_ms;		/* at least this long between two starts */
	uint32_t src_ip4;		/* source address (host order); 0: none */
	uint32_t frame_len;		/* IDLE_HOLD: the SendPacket's declared
					 * length (key included) ... */
	uint32_t send_bytes;		/* ... and the packet bytes sent of it
					 * (at most 49,152: HOLD_SEND_MAX) */
	uint32_t src_spread;		/* 1: client i comes from src_ip4 + i */
};
struct idle_reply {
	uint32_t ok;			/* handshakes done, Pongs right, or
					 * (IDLE_WATCH) sockets the relay closed */
	uint32_t failed;		/* closed by the relay, errors, timeouts;
					 * IDLE_WATCH: sockets still open */
	uint32_t aborted;		/* IDLE_CYCLE: closed early on purpose */
	uint32_t unfinished;		/* still handshaking at the time bound */
	uint32_t first_tls_err;
	uint32_t max_ms;		/* longest handshake; IDLE_WATCH: longest
					 * time from a tail to its close */
	char why[96];			/* the first failed handshake */
	/* IDLE_STORM: when each client was back (ms after the drop), and
	 * how often the relay closed one before it was. */
	uint32_t p50_ms, p99_ms;
	uint32_t retries, max_retries;
};
/* Pings sent per round by IDLE_PING. */
#define PING_BATCH 256

/* ---- clock, files and reports (loadgen.c) ---- */

int64_t now_ns(void);			/* CLOCK_MONOTONIC */
extern int64_t t_program;		/* now_ns() at start (set by main) */
double elapsed_s(void);			/* since t_program */
void sleep_ms(int ms);
void put_be32(uint8_t *p, uint32_t v);
uint32_t get_be32(const uint8_t *p);
void put_be64(uint8_t *p, uint64_t v);
uint64_t get_be64(const uint8_t *p);
long read_text(const char *path, char *buf, size_t cap);
int64_t proc_cpu_ns(pid_t pid);		/* utime + stime, or -1 */
long proc_rss_bytes(pid_t pid);		/* VmRSS, or -1 */
int64_t machine_busy_ns(void);		/* all processes (/proc/stat), or -1 */
int64_t self_cpu_ns(void);
/* Something the relay did that it should not: printed (a bounded number),
 * kept in anomalies[] for a final list, always counted. */
void anomaly(const char *fmt, ...);
extern char anomalies[ANOMALY_MAX][440];
extern int nanomalies;
extern long anomalies_total;
extern const char *phase_name;		/* for anomaly lines */

/* ---- the relay process ---- */

extern const char *derp_path;		/* default ./derp */
extern char scratch[128];		/* mkdtemp by main: key, certificates, logs */
extern struct server srv;
/* A second relay (bench's mesh scenario); pid -1 when none.  kill_all kills
 * it too, and run_phase measures its CPU beside srv's. */
extern struct server srv_peer;
/* Flags added to every relay command line (NULL-terminated; NULL = none). */
extern const char *const *srv_extra_args;
extern int srv_stun_port;		/* > 0: STUN on it; else -stun=false */
extern int srv_http_port;		/* TLS: > 0: -http-port on it; else -1 */
extern pid_t idle_pids[IDLE_CHILDREN];	/* for the watchdog */
void kill_all(void);			/* SIGKILL the relays and idle children */
void on_fatal_signal(int sig);		/* kill_all, then exit */
int server_alive(void);			/* 0 (and an anomaly) if it died */
int server_start(int tls, int max_clients);	/* 0 or -1 */
void server_stop(void);			/* SIGTERM; an anomaly unless exit 0 */
/* The same for any relay: tag names its key, certificate directory and log
 * (NULL: srv's); port > 0 is taken as given (one try). */
int server_start_as(struct server *s, const char *tag, int tls,
    int max_clients, int port);
void server_stop_as(struct server *s);
int server_alive_as(struct server *s);

/* ---- connections, pairs and phases ---- */

extern const char *const mode_names[];
extern struct loadgen B;		/* main sets epfd, pairs, flushq, rtt */
extern struct pair idle_pair;		/* owner of idle clients (idx -1) */
extern uint8_t pattern[PATTERN_BYTES];	/* packet bodies (main fills it) */
/* Start connecting side `side` of p (B.tls decides TLS, conn_src_addr the
 * source address); the handshake runs from loop_once.  0 or -1. */
extern const char *conn_src_addr;	/* NULL: the system chooses */
extern const uint8_t *conn_sk;		/* NULL: a fresh key per client */
extern const uint8_t *conn_pk;		/* conn_sk's public key, or NULL */
extern int conn_b_port;			/* > 0: side B connects to this port
					 * (a second relay), A to srv.port */
int conn_begin(struct conn *c, struct pair *p, int side);
/* Queue one frame (type, optional key, two payload parts): 0, or -1 when
 * the output is full (retry later) or the connection failed. */
int conn_frame(struct conn *c, uint8_t type, const uint8_t *key,
    const uint8_t *p1, size_t n1, const uint8_t *p2, size_t n2);
/* Queue raw bytes (after TLS: sealed): 0, or -1 when the output has no room
 * (retry later) or the connection failed. */
int conn_write(struct conn *c, const uint8_t *p, size_t n);
void conn_close(struct conn *c);	/* frees everything, closes the socket */
int conn_detach(struct conn *c);	/* keep only the socket: its fd */
int conn_ping(struct conn *c, uint64_t tag);	/* see c->ping_state */
void pair_close(struct pair *p);
int ensure_pairs(int n);		/* pairs [0, n) open: 0 or -1 */
void close_all_pairs(void);
/* One round: readiness and reads, B.tick, packets, writes. */
void loop_once(int timeout_ms);
int cmp_double(const void *a, const void *b);
int run_phase(const struct spec *sp, struct result *r);	/* 0, -1 relay died */

/* ---- idle clients ---- */

int read_full_fd(int fd, void *buf, size_t n, int timeout_ms);
int idle_spawn(struct idle_child *chs, int idx);
int idle_send(struct idle_child *ch, int nch, const struct idle_cmd *ic);
int idle_collect(struct idle_child *ch, int nch, const struct idle_cmd *ic,
    int timeout_ms, struct idle_reply *sum);
long idle_grow(struct idle_child *ch, int nch, uint32_t each);
struct storm_result {
	struct idle_reply open, storm;	/* the children's replies, added */
	double secs;			/* the drop until all back (or the bound) */
	int64_t relay_cpu_ns;		/* over that time */
	int64_t clients_cpu_ns;		/* the children's, over that time */
	int64_t t0;			/* the drop (now_ns) */
	int ms;				/* the bound */
};
int storm_open(struct idle_child *ch, int nch, uint32_t each, int spread,
    struct storm_result *r);
int storm_begin(struct idle_child *ch, int nch, int spread, int ms,
    struct storm_result *r);
int storm_end(struct idle_child *ch, int nch, struct storm_result *r);
long idle_total(const struct idle_child *ch);
void idle_stop(struct idle_child *ch, int n);	/* children exit */

/* ---- checks ---- */

int loadgen_init(const char *name, unsigned watchdog_s);	/* 0 or -1 */
/* "ok NAME" or "FAIL NAME: detail", counted in npass / nfail. */
void check(int ok, const char *name, const char *detail);
extern int npass, nfail;
void rm_tree(const char *path);		/* a scratch directory, two levels */

#endif
