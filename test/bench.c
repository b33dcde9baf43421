/*
 * bench.c -- `make bench`: the relay's load generator (issue 3).
 *
 * Usage: bench [--quick | --smoke | --one tls|plain PAIRS SIZE] [DERP_BINARY]
 *        (default ./derp)
 *
 * It starts the relay on 127.0.0.1 itself (a fresh port, a scratch directory
 * under /tmp) and measures, over TLS and over plain HTTP:
 *
 *   windowed   lossless throughput: each sender keeps at most W packets in
 *              flight to its receiver (both ends live in this process, so "in
 *              flight" is simply sent - received for the pair), so the relay
 *              never has a reason to drop.  Delivered packets/s, Mbit/s, and the
 *              relay's CPU per relayed packet from /proc/PID/stat: the main
 *              figure, because this generator shares the two cores with the
 *              relay and packets/s alone would measure both of them.
 *   overload   senders paced at about 3x the windowed rate: delivered packets/s,
 *              loss, and the spread of per-pair delivery (fairness); what the
 *              pacing could not send is split into TCP backpressure from the
 *              relay and lateness of this process.
 *   latency    A -> relay -> B -> relay -> A round trips at about half capacity
 *              (half the smaller of the windowed and the overload rate).
 *   memory     relay RSS with 0, 1,000 and 10,000 idle TLS clients; the idle
 *              clients live in four forked children (20,000 files per process),
 *              then 100 busy pairs on top of the 10,000 idle ones.
 *   ceiling    BearSSL's record layer sealing and opening one record per packet
 *              on one core: what a TLS relay cannot go below.  Efficiency ratio
 *              = ceiling / relay CPU per packet.
 *
 * Integrity: every packet carries epoch, pair, sequence number, send time,
 * length, kind and a header check, and its body is a fixed pseudo-random
 * pattern at an offset chosen by pair and sequence number, so loss, reordering,
 * misrouting and corruption are all detected and reported as errors (loss only
 * where the run is lossless by construction: windowed runs; latency runs report
 * theirs).  When nothing arrives for 100 ms while packets are in flight, a probe
 * reports where they are: our buffers, the kernel's queues, or the relay.
 *
 * --quick   a subset (10 and 100 pairs, 1200 bytes, 1,000 idle clients): seconds
 * --smoke   a few hundred packets and some round trips through one pair in each
 *           mode, all checked; prints "N passed, N failed", exit status 0 or 1
 * --one     windowed, overload and latency for one transport, pair count, size
 *
 * Efficiency of the generator itself (it shares two cores with the relay): one
 * process and one thread for all traffic, non-blocking sockets under epoll,
 * BearSSL engines driven directly (handshakes too, 64 at a time, from
 * client.c's dc_start), socket input and output batched in per-connection
 * buffers so a syscall moves many records, one TLS record per packet (as the Go
 * client writes: one flush per packet).  Other processes on the machine are
 * measured too (/proc/stat) and shown as "other".  Every run is bounded: fixed warm-up and measurement intervals, a
 * drain with a timeout, a soft time budget that skips what no longer fits, and
 * alarm() as a watchdog that kills the relay and the children.
 *
 * Sections: constants; clock, files and reports; the relay process;
 * connections; packets; phases; scenarios; crypto ceiling; idle clients;
 * smoke; main.
 */
#include "client.h"
#include "../nacl.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>	/* SIOCOUTQNSD: bytes not yet sent */
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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
#define BUDGET_MS 280000		/* soft: no scenario starts that would end later */
#define WATCHDOG_S 295			/* hard: kill everything */

/* Idle clients are opened by 4 children, 2,500 each for 10,000 (well within
 * 20,000 files per process), each with HS_INFLIGHT_CHILD handshakes in
 * flight, so the clients' share of the handshake crypto uses both cores. */
#define IDLE_CHILDREN 4
#define IDLE_SMALL 1000
#define IDLE_LARGE 10000
#define IDLE_MAX_CLIENTS 12000		/* relay slots for the memory scenario */

/* ---- clock, files and reports ------------------------------------------- */

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t t_program;		/* now_ns() at start */

static double
elapsed_s(void)
{
	return (double)(now_ns() - t_program) / 1e9;
}

static void
sleep_ms(int ms)
{
	struct timespec ts;

	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (long)(ms % 1000) * 1000000;
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
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
put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

static uint64_t
get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

/* Whole small file (under /proc) into buf, NUL-terminated; length or -1. */
static long
read_text(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY);
	size_t n = 0;

	if (fd < 0)
		return -1;
	while (n + 1 < cap) {
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	return (long)n;
}

/* utime + stime of a process in ns (/proc/PID/stat, fields 14 and 15). */
static int64_t
proc_cpu_ns(pid_t pid)
{
	char path[64], buf[2048], *p;
	unsigned long ut = 0, st = 0;
	long tck = sysconf(_SC_CLK_TCK);
	int i;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if (read_text(path, buf, sizeof(buf)) <= 0)
		return -1;
	p = strrchr(buf, ')');		/* the command name may hold spaces */
	if (p == NULL || tck <= 0)
		return -1;
	p++;
	/* After ")": field 3 (state) onwards; utime is field 14. */
	for (i = 3; i < 14 && p != NULL; i++)
		p = strchr(p + 1, ' ');
	if (p == NULL || sscanf(p, " %lu %lu", &ut, &st) != 2)
		return -1;
	return (int64_t)(ut + st) * (1000000000 / tck);
}

/* VmRSS of a process in bytes, or -1. */
static long
proc_rss_bytes(pid_t pid)
{
	char path[64], buf[4096], *p;
	long kb;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if (read_text(path, buf, sizeof(buf)) <= 0)
		return -1;
	p = strstr(buf, "VmRSS:");
	if (p == NULL || sscanf(p + 6, "%ld", &kb) != 1)
		return -1;
	return kb * 1024;
}

/* CPU time all processes of the machine spent busy (/proc/stat: user, nice,
 * system, irq, softirq, steal), in ns; -1 if unknown.  Minus the relay and
 * us, it is what other processes took from the two cores during a phase. */
static int64_t
machine_busy_ns(void)
{
	char buf[512];
	unsigned long long v[8];
	long tck = sysconf(_SC_CLK_TCK);

	if (read_text("/proc/stat", buf, sizeof(buf)) <= 0 || tck <= 0 ||
	    sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
	    &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) != 8)
		return -1;
	return (int64_t)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) *
	    (1000000000 / tck);
}

static int64_t
self_cpu_ns(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
	    ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

/* Anomalies: things the relay did that it should not (or that we could not
 * check).  Printed when they happen (a bounded number) and listed at the end. */
static char anomalies[ANOMALY_MAX][440];
static int nanomalies;
static long anomalies_total;
static const char *phase_name = "setup";

static void
anomaly(const char *fmt, ...)
{
	char line[380];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	anomalies_total++;
	if (nanomalies < ANOMALY_MAX) {
		snprintf(anomalies[nanomalies], sizeof(anomalies[0]),
		    "[%6.1f s %.20s] %s", elapsed_s(), phase_name, line);
		printf("  ! %s\n", anomalies[nanomalies]);
		fflush(stdout);
		nanomalies++;
	}
}

/* ---- the relay process --------------------------------------------------- */

static const char *derp_path = "./derp";
static char scratch[128];		/* mkdtemp: key file, certificates, logs */

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

static struct server srv = { -1, 0, 0, 0, 0, 0, 0, "" };
static pid_t idle_pids[IDLE_CHILDREN];	/* for the watchdog */

static void
kill_all(void)
{
	int i;

	if (srv.pid > 0)
		kill(srv.pid, SIGKILL);
	for (i = 0; i < IDLE_CHILDREN; i++)
		if (idle_pids[i] > 0)
			kill(idle_pids[i], SIGKILL);
}

static void
on_fatal_signal(int sig)
{
	static const char msg[] = "\nbench: watchdog or signal: killing the relay"
	    " and the idle clients\n";

	kill_all();
	if (write(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(3);
	_exit(sig == SIGALRM ? 3 : 130);
}

/* A port nobody is listening on right now (the kernel picks it). */
static int
free_port(void)
{
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	if (fd < 0)
		return -1;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &al) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* 1 if something accepts TCP on the port. */
static int
port_open(int port)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

	if (fd < 0)
		return 0;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

static int
server_alive(void)
{
	int st;

	if (srv.pid <= 0)
		return 0;
	if (waitpid(srv.pid, &st, WNOHANG) == srv.pid) {
		anomaly("the relay died: %s %d (log %s)",
		    WIFSIGNALED(st) ? "signal" : "exit status",
		    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), srv.log);
		srv.pid = -1;
		return 0;
	}
	return 1;
}

/* The pool size from the relay's start-up line, "reserved N bytes for
 * -max-clients M (C packet chunks of B bytes)"; the README's formula if absent. */
static void
server_read_pool(void)
{
	static char text[65536];
	int fd = open(srv.log, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, text, sizeof(text) - 1);
	const char *p;
	long c, b;

	if (fd >= 0)
		close(fd);
	srv.pool_chunks = (long)srv.max_clients * POOL_CHUNKS_PER_SLOT +
	    POOL_CHUNKS_SPARE;
	srv.chunk_bytes = POOL_CHUNK_BYTES;
	if (n <= 0)
		return;
	text[n] = '\0';
	p = strstr(text, " packet chunks of ");
	if (p == NULL)
		return;
	while (p > text && p[-1] != '(')
		p--;
	if (sscanf(p, "%ld packet chunks of %ld bytes", &c, &b) == 2 && c > 0 &&
	    b > 64) {
		srv.pool_chunks = c;
		srv.chunk_bytes = b;
	}
}

/* Start the relay: TLS (self-signed IP certificate) or plain; max_clients 0 =
 * its default (4096).  0 or -1. */
static int
server_start(int tls, int max_clients)
{
	char addr[64], key[200], certdir[200], mc[32];
	char *argv[24];
	int t, a;

	snprintf(key, sizeof(key), "%s/derp.key", scratch);
	snprintf(certdir, sizeof(certdir), "%s/certs", scratch);
	for (t = 0; t < 3; t++) {
		int64_t deadline;
		int ready = 0;

		srv.port = free_port();
		srv.tls = tls;
		srv.max_clients = max_clients > 0 ? max_clients : 4096;
		snprintf(srv.log, sizeof(srv.log), "%s/derp-%d.log", scratch,
		    ++srv.nlog);
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", srv.port);
		snprintf(mc, sizeof(mc), "%d", srv.max_clients);
		a = 0;
		argv[a++] = (char *)derp_path;
		argv[a++] = "-a";
		argv[a++] = addr;
		argv[a++] = "-c";
		argv[a++] = key;
		argv[a++] = "-stun=false";
		if (tls) {
			argv[a++] = "-certmode";
			argv[a++] = "manual";
			argv[a++] = "-hostname";
			argv[a++] = "127.0.0.1";
			argv[a++] = "-certdir";
			argv[a++] = certdir;
			argv[a++] = "-http-port";
			argv[a++] = "-1";
		}
		if (max_clients > 0) {
			argv[a++] = "-max-clients";
			argv[a++] = mc;
		}
		argv[a] = NULL;
		fflush(stdout);
		srv.pid = fork();
		if (srv.pid < 0) {
			perror("bench: fork");
			return -1;
		}
		if (srv.pid == 0) {
			int fd = open(srv.log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (fd >= 0) {
				dup2(fd, STDOUT_FILENO);
				dup2(fd, STDERR_FILENO);
				close(fd);
			}
			execv(derp_path, argv);
			_exit(127);
		}
		deadline = now_ns() + (int64_t)START_MS * 1000000;
		while (now_ns() < deadline) {
			int st;
			if (waitpid(srv.pid, &st, WNOHANG) == srv.pid) {
				srv.pid = -1;
				break;
			}
			if (port_open(srv.port)) {
				ready = 1;
				break;
			}
			sleep_ms(20);
		}
		if (ready) {
			server_read_pool();
			return 0;
		}
		if (srv.pid > 0) {
			kill(srv.pid, SIGKILL);
			waitpid(srv.pid, NULL, 0);
			srv.pid = -1;
		}
	}
	fprintf(stderr, "bench: %s did not start (log %s)\n", derp_path, srv.log);
	return -1;
}

/* SIGTERM and wait; the exit status is reported if it is not 0. */
static void
server_stop(void)
{
	int64_t deadline = now_ns() + (int64_t)STOP_MS * 1000000;
	int st = 0;

	if (srv.pid <= 0)
		return;
	kill(srv.pid, SIGTERM);
	for (;;) {
		if (waitpid(srv.pid, &st, WNOHANG) == srv.pid)
			break;
		if (now_ns() > deadline) {
			anomaly("the relay did not exit within %d ms of SIGTERM;"
			    " killed", STOP_MS);
			kill(srv.pid, SIGKILL);
			waitpid(srv.pid, &st, 0);
			srv.pid = -1;
			return;
		}
		sleep_ms(10);
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		anomaly("the relay ended with %s %d after SIGTERM (log %s)",
		    WIFSIGNALED(st) ? "signal" : "exit status",
		    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), srv.log);
	srv.pid = -1;
}

/* ---- connections --------------------------------------------------------- */

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
static const char *const mode_names[] = { "windowed", "overload", "latency" };

static struct {
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
} B;

static struct pair idle_pair;		/* owner of idle clients (idx -1) */
static const uint8_t server_key_magic[SERVER_KEY_MAGIC_BYTES] = {
	0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91
};

static uint8_t pattern[PATTERN_BYTES];

static void
conn_fail(struct conn *c, const char *what)
{
	if (c->dead)
		return;
	c->dead = 1;
	c->p->dead = 1;
	(void)epoll_ctl(B.epfd, EPOLL_CTL_DEL, c->fd, NULL);
	if (c->hs != HS_DONE) {
		B.hs_pending--;
		B.hs_failed++;
		anomaly("%s %d side %c: handshake failed in state %d: %s (TLS"
		    " error %d)", c->p == &idle_pair ? "idle client" : "pair",
		    c->p->idx, c->side, c->hs, what,
		    c->tls ? br_ssl_engine_last_error(&c->dc->sc.eng) : 0);
		return;
	}
	B.err.disconnects++;
	anomaly("pair %d side %c: %s (TLS error %d; %.3f s into the phase)",
	    c->p->idx, c->side, what,
	    c->tls ? br_ssl_engine_last_error(&c->dc->sc.eng) : 0,
	    (double)(now_ns() - B.t_phase) / 1e9);
}

static void
conn_mark(struct conn *c)
{
	if (!c->queued && !c->dead) {
		c->queued = 1;
		B.flushq[B.nflush++] = c;
	}
}

static void
conn_arm(struct conn *c, int out)
{
	struct epoll_event ev;

	if (c->out_armed == out || c->dead)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | (out ? EPOLLOUT : 0);
	ev.data.ptr = c;
	if (epoll_ctl(B.epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->out_armed = out;
}

/* Free space at the end of wbuf, moving pending bytes to the front first. */
static size_t
wbuf_room(struct conn *c, size_t want)
{
	if (c->woff == c->wlen) {
		c->woff = c->wlen = 0;
	} else if (c->woff > 0 && WBUF_BYTES - c->wlen < want) {
		memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
		c->wlen -= c->woff;
		c->woff = 0;
	}
	return WBUF_BYTES - c->wlen;
}

/* Move finished TLS records from the engine into wbuf. */
static void
tls_drain_out(struct conn *c)
{
	br_ssl_engine_context *eng = &c->dc->sc.eng;

	for (;;) {
		unsigned char *buf;
		size_t len, room;

		if (!(br_ssl_engine_current_state(eng) & BR_SSL_SENDREC))
			return;
		buf = br_ssl_engine_sendrec_buf(eng, &len);
		room = wbuf_room(c, len);
		if (room == 0)
			return;
		if (len > room)
			len = room;
		memcpy(c->wbuf + c->wlen, buf, len);
		c->wlen += len;
		br_ssl_engine_sendrec_ack(eng, len);
	}
}

/* Put plaintext into the engine (the caller checked wbuf room). */
static int
tls_put(struct conn *c, const uint8_t *p, size_t n)
{
	br_ssl_engine_context *eng = &c->dc->sc.eng;

	while (n > 0) {
		size_t alen;
		unsigned char *buf = br_ssl_engine_sendapp_buf(eng, &alen);

		if (alen == 0) {
			tls_drain_out(c);
			buf = br_ssl_engine_sendapp_buf(eng, &alen);
			if (alen == 0) {
				conn_fail(c, "TLS engine refuses application data");
				return -1;
			}
		}
		if (alen > n)
			alen = n;
		memcpy(buf, p, alen);
		br_ssl_engine_sendapp_ack(eng, alen);
		p += alen;
		n -= alen;
	}
	return 0;
}

/*
 * Append one frame: type, optional 32-byte key, then two payload parts.  For
 * TLS it is flushed as its own record (the Go client flushes per packet).
 * 0, or -1 when wbuf has no room (the caller retries later) or on failure.
 */
static int
conn_frame(struct conn *c, uint8_t type, const uint8_t *key,
    const uint8_t *p1, size_t n1, const uint8_t *p2, size_t n2)
{
	uint8_t h[FRAME_HDR_BYTES];
	size_t klen = key != NULL ? KEY_BYTES : 0;
	size_t flen = FRAME_HDR_BYTES + klen + n1 + n2;
	size_t need = flen + (c->tls ? TLS_RECORD_OVERHEAD : 0);

	if (c->dead)
		return -1;
	if (c->tls && (br_ssl_engine_current_state(&c->dc->sc.eng) &
	    BR_SSL_SENDREC))
		tls_drain_out(c);	/* a record left over from a full wbuf */
	if (wbuf_room(c, need) < need || (c->tls &&
	    (br_ssl_engine_current_state(&c->dc->sc.eng) & BR_SSL_SENDREC)))
		return -1;
	h[0] = type;
	put_be32(h + 1, (uint32_t)(flen - FRAME_HDR_BYTES));
	if (!c->tls) {
		uint8_t *w = c->wbuf + c->wlen;
		memcpy(w, h, FRAME_HDR_BYTES);
		w += FRAME_HDR_BYTES;
		if (klen > 0)
			memcpy(w, key, klen);
		w += klen;
		if (n1 > 0)
			memcpy(w, p1, n1);
		w += n1;
		if (n2 > 0)
			memcpy(w, p2, n2);
		c->wlen += flen;
	} else {
		if (tls_put(c, h, FRAME_HDR_BYTES) < 0 ||
		    (klen > 0 && tls_put(c, key, klen) < 0) ||
		    (n1 > 0 && tls_put(c, p1, n1) < 0) ||
		    (n2 > 0 && tls_put(c, p2, n2) < 0))
			return -1;
		br_ssl_engine_flush(&c->dc->sc.eng, 0);
		tls_drain_out(c);
	}
	conn_mark(c);
	return 0;
}

/* Append raw bytes (handshake): 0 or -1. */
static int
conn_raw(struct conn *c, const uint8_t *p, size_t n)
{
	size_t need = n + (c->tls ? TLS_RECORD_OVERHEAD : 0);

	if (c->dead)
		return -1;
	if (wbuf_room(c, need) < need) {
		conn_fail(c, "no room for handshake bytes");
		return -1;
	}
	if (!c->tls) {
		memcpy(c->wbuf + c->wlen, p, n);
		c->wlen += n;
	} else {
		if (tls_put(c, p, n) < 0)
			return -1;
		br_ssl_engine_flush(&c->dc->sc.eng, 0);
		tls_drain_out(c);
	}
	conn_mark(c);
	return 0;
}

/* Write wbuf to the socket until it is empty or the socket is full. */
static void
conn_flush(struct conn *c)
{
	for (;;) {
		ssize_t r;

		if (c->dead)
			return;
		if (c->tls)
			tls_drain_out(c);
		if (c->woff == c->wlen)
			break;
		r = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff,
		    MSG_NOSIGNAL);
		if (r > 0) {
			c->woff += (size_t)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			conn_arm(c, 1);
			return;
		}
		conn_fail(c, r < 0 ? strerror(errno) : "send returned 0");
		return;
	}
	conn_arm(c, 0);
}

static void on_packet(struct conn *c, const uint8_t *src, const uint8_t *pkt,
    size_t len);

/* The socket connected (or failed to). */
static void
hs_connected(struct conn *c)
{
	int err = 0;
	socklen_t el = sizeof(err);
	char req[512];
	int n;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0) {
		conn_fail(c, err != 0 ? strerror(err) : "connect failed");
		return;
	}
	if (c->tls) {
		c->hs = HS_TLS;
		conn_mark(c);		/* the ClientHello */
		return;
	}
	n = dc_upgrade_request(c->dc, 0, req, sizeof(req));
	if (n > 0 && conn_raw(c, (const uint8_t *)req, (size_t)n) == 0)
		c->hs = HS_HEAD;
}

/* TLS is up: send the upgrade request. */
static void
hs_tls_up(struct conn *c)
{
	char req[512];
	int n = dc_upgrade_request(c->dc, 0, req, sizeof(req));

	if (B.cipher_suite == 0 && c->p != &idle_pair) {
		br_ssl_session_parameters sp;
		br_ssl_engine_get_session_parameters(&c->dc->sc.eng, &sp);
		B.cipher_suite = sp.cipher_suite;
	}
	if (n > 0 && conn_raw(c, (const uint8_t *)req, (size_t)n) == 0)
		c->hs = HS_HEAD;
}

/* HS_HEAD: the response head in dc->rbuf; 1 consumed (now HS_KEY), 0 need
 * more, -1 failed. */
static int
hs_head(struct conn *c)
{
	struct dclient *dc = c->dc;
	size_t i;

	for (i = 0; i + 3 < dc->rlen; i++) {
		if (memcmp(dc->rbuf + i, "\r\n\r\n", 4) == 0) {
			size_t n = i + 4;
			if (n >= sizeof(dc->head)) {
				conn_fail(c, "response head too long");
				return -1;
			}
			memcpy(dc->head, dc->rbuf, n);
			dc->head[n] = '\0';
			memmove(dc->rbuf, dc->rbuf + n, dc->rlen - n);
			dc->rlen -= n;
			if (dc_http_status(dc->head) != 101) {
				conn_fail(c, "the upgrade was refused");
				return -1;
			}
			c->hs = HS_KEY;
			return 1;
		}
	}
	if (dc->rlen >= sizeof(dc->head)) {
		conn_fail(c, "response head too long");
		return -1;
	}
	return 0;
}

/* A handshake frame (HS_KEY or HS_INFO). */
static void
hs_frame(struct conn *c, uint8_t type, const uint8_t *f, size_t n)
{
	struct dclient *dc = c->dc;

	if (c->hs == HS_KEY) {
		uint8_t ci[CLIENT_INFO_MAX_BYTES];
		size_t cl;
		if (type != FT_SERVER_KEY || n < SERVER_KEY_MAGIC_BYTES + KEY_BYTES ||
		    memcmp(f, server_key_magic, SERVER_KEY_MAGIC_BYTES) != 0) {
			conn_fail(c, "bad ServerKey frame");
			return;
		}
		memcpy(dc->server_pk, f + SERVER_KEY_MAGIC_BYTES, KEY_BYTES);
		dc->got_server_key = 1;
		cl = dc_client_info_frame(dc, NULL, ci, sizeof(ci));
		if (cl == 0) {
			conn_fail(c, "could not build ClientInfo");
			return;
		}
		if (conn_raw(c, ci, cl) == 0)
			c->hs = HS_INFO;
		return;
	}
	{
		static const char want[] = "{\"version\":2}";
		uint8_t msg[256];
		if (type != FT_SERVER_INFO || n < NACL_NONCE_BYTES +
		    NACL_TAG_BYTES || n - NACL_NONCE_BYTES - NACL_TAG_BYTES >
		    sizeof(msg) || nacl_box_open(msg, f + NACL_NONCE_BYTES,
		    n - NACL_NONCE_BYTES, f, dc->server_pk, dc->sk) < 0 ||
		    n - NACL_NONCE_BYTES - NACL_TAG_BYTES != sizeof(want) - 1 ||
		    memcmp(msg, want, sizeof(want) - 1) != 0) {
			conn_fail(c, "bad ServerInfo");
			return;
		}
		c->hs = HS_DONE;
		B.hs_pending--;
	}
}

/* Parse and handle every whole frame in dc->rbuf. */
static void
conn_parse(struct conn *c)
{
	struct dclient *dc = c->dc;
	size_t off = 0;

	if (c->hs == HS_HEAD && hs_head(c) <= 0)
		return;
	while (!c->dead && dc->rlen - off >= FRAME_HDR_BYTES) {
		const uint8_t *f = dc->rbuf + off;
		uint32_t n = get_be32(f + 1);

		if (n > DC_MAX_FRAME - FRAME_HDR_BYTES) {
			conn_fail(c, "frame longer than any legal frame");
			return;
		}
		if (dc->rlen - off < FRAME_HDR_BYTES + (size_t)n)
			break;
		if (c->hs != HS_DONE) {
			hs_frame(c, f[0], f + FRAME_HDR_BYTES, n);
			off += FRAME_HDR_BYTES + (size_t)n;
			continue;
		}
		switch (f[0]) {
		case FT_RECV_PACKET:
			if (n < KEY_BYTES) {
				B.err.corrupt++;
				anomaly("pair %d side %c: RecvPacket of %lu bytes",
				    c->p->idx, c->side, (unsigned long)n);
			} else {
				on_packet(c, f + FRAME_HDR_BYTES,
				    f + FRAME_HDR_BYTES + KEY_BYTES, n - KEY_BYTES);
			}
			break;
		case FT_KEEP_ALIVE:
			B.err.keepalives++;
			break;
		case FT_PING:
			/* Answer as tailscaled does (we said CanAckPings). */
			B.err.pings++;
			if (n == PING_BYTES)
				(void)conn_frame(c, FT_PONG, NULL,
				    f + FRAME_HDR_BYTES, PING_BYTES, NULL, 0);
			break;
		case FT_PEER_GONE:
			B.err.peer_gone++;
			break;
		default:
			B.err.unexpected++;
			anomaly("pair %d side %c: unexpected frame type 0x%02x"
			    " (%lu bytes)", c->p->idx, c->side, f[0],
			    (unsigned long)n);
			break;
		}
		off += FRAME_HDR_BYTES + (size_t)n;
	}
	if (off > 0) {
		memmove(dc->rbuf, dc->rbuf + off, dc->rlen - off);
		dc->rlen -= off;
	}
}

static void
conn_read_plain(struct conn *c)
{
	struct dclient *dc = c->dc;
	int i;

	for (i = 0; i < RECVS_PER_EVENT && !c->dead; i++) {
		size_t room = sizeof(dc->rbuf) - dc->rlen;
		ssize_t r = recv(c->fd, dc->rbuf + dc->rlen, room, 0);

		if (r > 0) {
			dc->rlen += (size_t)r;
			conn_parse(c);
			if ((size_t)r < room)
				return;		/* the socket is most likely empty */
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		conn_fail(c, r == 0 ? "closed by the relay" : strerror(errno));
		return;
	}
}

static void
conn_read_tls(struct conn *c)
{
	br_ssl_engine_context *eng = &c->dc->sc.eng;
	struct dclient *dc = c->dc;
	int recvs = 0, drained = 0;

	while (!c->dead) {
		unsigned st = br_ssl_engine_current_state(eng);
		unsigned char *buf;
		size_t len, n;
		ssize_t r;

		if (st & BR_SSL_CLOSED) {
			conn_fail(c, br_ssl_engine_last_error(eng) == BR_ERR_OK ?
			    "TLS closed by the relay" : "TLS failure");
			return;
		}
		if (c->hs == HS_TLS && (st & BR_SSL_SENDAPP)) {
			hs_tls_up(c);
			continue;
		}
		if (st & BR_SSL_SENDREC)
			conn_mark(c);
		if (st & BR_SSL_RECVAPP) {
			buf = br_ssl_engine_recvapp_buf(eng, &len);
			n = sizeof(dc->rbuf) - dc->rlen;
			if (n > len)
				n = len;
			memcpy(dc->rbuf + dc->rlen, buf, n);
			dc->rlen += n;
			br_ssl_engine_recvapp_ack(eng, n);
			conn_parse(c);
			continue;
		}
		if (!(st & BR_SSL_RECVREC))
			return;
		if (c->soff < c->slen) {
			buf = br_ssl_engine_recvrec_buf(eng, &len);
			n = c->slen - c->soff;
			if (n > len)
				n = len;
			memcpy(buf, c->sin + c->soff, n);
			c->soff += n;
			br_ssl_engine_recvrec_ack(eng, n);
			continue;
		}
		if (drained || recvs >= RECVS_PER_EVENT)
			return;
		r = recv(c->fd, c->sin, SIN_BYTES, 0);
		recvs++;
		if (r > 0) {
			c->soff = 0;
			c->slen = (size_t)r;
			drained = (size_t)r < SIN_BYTES;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		conn_fail(c, r == 0 ? "closed by the relay" : strerror(errno));
		return;
	}
}

static void
conn_close(struct conn *c)
{
	if (c->dc == NULL)
		return;
	if (!c->dead && c->fd >= 0)
		(void)epoll_ctl(B.epfd, EPOLL_CTL_DEL, c->fd, NULL);
	dc_free(c->dc);			/* closes the socket */
	free(c->wbuf);
	free(c->sin);
	c->dc = NULL;
	c->wbuf = NULL;
	c->sin = NULL;
	c->fd = -1;
}

static void loop_once(int timeout_ms);

/* Start connecting; the handshake then runs from the event loop (hs). */
static int
conn_begin(struct conn *c, struct pair *p, int side)
{
	struct epoll_event ev;
	int pending;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->p = p;
	c->side = side;
	c->tls = B.tls;
	c->hs = HS_CONNECT;
	c->dc = dc_new();
	c->wbuf = malloc(WBUF_BYTES);
	c->sin = B.tls ? malloc(SIN_BYTES) : NULL;
	if (c->dc == NULL || c->wbuf == NULL || (B.tls && c->sin == NULL)) {
		fprintf(stderr, "bench: out of memory\n");
		conn_close(c);
		return -1;
	}
	dc_genkey(c->dc);
	if (dc_start(c->dc, "127.0.0.1", srv.port, B.tls, NULL, &pending) < 0) {
		anomaly("side %c: cannot start a connection: %s", side,
		    strerror(errno));
		conn_close(c);
		return -1;
	}
	c->fd = c->dc->fd;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | EPOLLOUT;
	ev.data.ptr = c;
	if (epoll_ctl(B.epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
		perror("bench: epoll_ctl");
		conn_close(c);
		return -1;
	}
	c->out_armed = 1;
	B.hs_pending++;
	return 0;
}

/* After the handshake, keep only the socket (idle clients): the relay does
 * not care that our TLS state is gone while we stay silent. */
static int
conn_detach(struct conn *c)
{
	int fd = c->fd;

	(void)epoll_ctl(B.epfd, EPOLL_CTL_DEL, fd, NULL);
	c->dc->fd = -1;
	c->dead = 1;			/* conn_close: no epoll_ctl again */
	conn_close(c);
	return fd;
}

static void
pair_close(struct pair *p)
{
	conn_close(&p->a);
	conn_close(&p->b);
	p->open = 0;
	p->dead = 0;
}

/* Make pairs [0, n) open and alive (reopening dead ones), close the rest;
 * up to HS_INFLIGHT handshakes at once.  0, or -1 if any failed. */
static int
ensure_pairs(int n)
{
	int64_t deadline = now_ns() + (int64_t)HS_TOTAL_MS * 1000000;
	int i, next = 0, rc = 0;

	for (i = 0; i < MAX_PAIRS; i++) {
		struct pair *p = &B.pairs[i];
		if (i >= n || (p->open && p->dead))
			pair_close(p);
	}
	B.generate = 0;
	B.hs_pending = B.hs_failed = 0;
	B.nactive = n;
	for (;;) {
		while (rc == 0 && next < n && B.hs_pending < HS_INFLIGHT) {
			struct pair *p = &B.pairs[next];
			if (!p->open) {
				p->idx = next;
				p->dead = 0;
				p->open = 1;
				if (conn_begin(&p->b, p, 'B') < 0 ||
				    conn_begin(&p->a, p, 'A') < 0)
					rc = -1;
			}
			next++;
		}
		if (B.hs_pending <= 0 && (next >= n || rc < 0))
			break;
		if (now_ns() > deadline) {
			anomaly("%d handshakes unfinished after %d s",
			    B.hs_pending, HS_TOTAL_MS / 1000);
			rc = -1;
			break;
		}
		if (!server_alive())
			return -1;
		loop_once(10);
	}
	return rc < 0 || B.hs_failed > 0 ? -1 : 0;
}

static void
close_all_pairs(void)
{
	int i;

	for (i = 0; i < MAX_PAIRS; i++)
		pair_close(&B.pairs[i]);
	B.nactive = 0;
}

/* ---- packets ------------------------------------------------------------- */

/* Packet sizes of the smoke run, cycled by sequence number. */
static const size_t smoke_sizes[] = { 100, 1200, 16000, PKT_HDR_BYTES, 555 };
#define NSMOKE_SIZES (sizeof(smoke_sizes) / sizeof(smoke_sizes[0]))

static size_t
pkt_size(uint64_t seq)
{
	return B.size != 0 ? B.size : smoke_sizes[seq % NSMOKE_SIZES];
}

static size_t
body_off(uint32_t pair, uint64_t seq)
{
	return (size_t)((seq * 7 + (uint64_t)pair * 13) % PATTERN_SPAN);
}

static uint32_t
hdr_check(const uint8_t *h)
{
	uint32_t x = 2166136261u;
	int i;

	for (i = 0; i < 32; i++)
		x = (x ^ h[i]) * 16777619u;
	return x;
}

/* Packet seq of pair p (sent at ts) from `from` to `to`.  0, or -1 when the
 * sender's output is full. */
static int
send_pkt(struct pair *p, struct conn *from, struct conn *to, uint64_t seq,
    int64_t ts, uint32_t kind)
{
	uint8_t h[PKT_HDR_BYTES];
	size_t size = pkt_size(seq);

	put_be32(h, B.epoch);
	put_be32(h + 4, (uint32_t)p->idx);
	put_be64(h + 8, seq);
	put_be64(h + 16, (uint64_t)ts);
	put_be32(h + 24, (uint32_t)size);
	put_be32(h + 28, kind);
	put_be32(h + 32, hdr_check(h));
	put_be32(h + 36, 0);
	return conn_frame(from, FT_SEND_PACKET, to->dc->pk, h, PKT_HDR_BYTES,
	    pattern + body_off((uint32_t)p->idx, seq) + PKT_HDR_BYTES,
	    size - PKT_HDR_BYTES);
}

/* A's next packet to B.  0, or -1 when A's output is full. */
static int
send_one(struct pair *p, uint32_t kind)
{
	if (send_pkt(p, &p->a, &p->b, p->sent, now_ns(), kind) < 0)
		return -1;
	p->sent++;
	return 0;
}

/* B sends a ping back to A, after any echoes still waiting. */
static void
echo(struct pair *p, uint64_t seq, int64_t ts)
{
	if (p->eb_n == 0 && send_pkt(p, &p->b, &p->a, seq, ts, KIND_PING) == 0)
		return;
	if (p->eb_n == ECHO_BACKLOG) {
		B.err.echo_drops++;
		return;
	}
	p->eb_seq[(p->eb_head + p->eb_n) % ECHO_BACKLOG] = seq;
	p->eb_ts[(p->eb_head + p->eb_n) % ECHO_BACKLOG] = ts;
	p->eb_n++;
}

static void
echo_backlog(struct pair *p)
{
	while (p->eb_n > 0 && send_pkt(p, &p->b, &p->a, p->eb_seq[p->eb_head],
	    p->eb_ts[p->eb_head], KIND_PING) == 0) {
		p->eb_head = (p->eb_head + 1) % ECHO_BACKLOG;
		p->eb_n--;
	}
}

static void
bad_packet(struct conn *c, const char *why, uint64_t *counter)
{
	(*counter)++;
	anomaly("pair %d side %c: %s", c->p->idx, c->side, why);
}

static void
on_packet(struct conn *c, const uint8_t *src, const uint8_t *pkt, size_t len)
{
	int64_t now = now_ns();
	uint32_t pi, kind;
	uint64_t seq;
	struct pair *p;

	if (len < PKT_HDR_BYTES) {
		bad_packet(c, "packet shorter than our header", &B.err.corrupt);
		return;
	}
	if (get_be32(pkt) != B.epoch) {
		B.err.stale++;			/* from an earlier phase */
		return;
	}
	pi = get_be32(pkt + 4);
	seq = get_be64(pkt + 8);
	kind = get_be32(pkt + 28);
	if (pi >= (uint32_t)B.nactive || get_be32(pkt + 24) != len ||
	    get_be32(pkt + 32) != hdr_check(pkt) ||
	    (kind != KIND_DATA && kind != KIND_PING)) {
		bad_packet(c, "packet header corrupt or truncated",
		    &B.err.corrupt);
		return;
	}
	if (memcmp(pkt + PKT_HDR_BYTES, pattern + body_off(pi, seq) +
	    PKT_HDR_BYTES, len - PKT_HDR_BYTES) != 0) {
		bad_packet(c, "packet body corrupt", &B.err.corrupt);
		return;
	}
	p = &B.pairs[pi];
	B.last_any_rx_ns = now;
	if (c == &p->b) {
		if (memcmp(src, p->a.dc->pk, KEY_BYTES) != 0) {
			bad_packet(c, "packet with a wrong source key",
			    &B.err.misrouted);
			return;
		}
		if (seq < p->next) {
			bad_packet(c, "packet duplicated or reordered",
			    &B.err.reordered);
			return;
		}
		if (seq > p->next) {
			p->lost += seq - p->next;
			if (B.mode == M_WINDOW) {
				char why[96];
				snprintf(why, sizeof(why), "%llu packets lost"
				    " before seq %llu (lossless run)",
				    (unsigned long long)(seq - p->next),
				    (unsigned long long)seq);
				bad_packet(c, why, &B.err.lost);
			}
		}
		p->next = seq + 1;
		p->delivered++;
		B.relayed++;
		if (B.measuring) {
			if (now - B.last_rx_ns > B.max_stall_ns)
				B.max_stall_ns = now - B.last_rx_ns;
			B.last_rx_ns = now;
		}
		if (kind == KIND_PING)
			echo(p, seq, (int64_t)get_be64(pkt + 16));
		return;
	}
	if (c == &p->a && kind == KIND_PING) {
		int64_t rtt = now - (int64_t)get_be64(pkt + 16);
		if (memcmp(src, p->b.dc->pk, KEY_BYTES) != 0) {
			bad_packet(c, "echo with a wrong source key",
			    &B.err.misrouted);
			return;
		}
		if (seq < p->echo_next) {
			bad_packet(c, "echo duplicated or reordered",
			    &B.err.reordered);
			return;
		}
		p->echo_lost += seq - p->echo_next;
		p->echo_next = seq + 1;
		p->echo_got++;
		B.relayed++;
		if (B.measuring) {
			if (now - B.last_rx_ns > B.max_stall_ns)
				B.max_stall_ns = now - B.last_rx_ns;
			B.last_rx_ns = now;
			if (B.nrtt < RTT_MAX_SAMPLES)
				B.rtt[B.nrtt++] = rtt < 0 ? 0 : rtt > (int64_t)
				    UINT32_MAX ? UINT32_MAX : (uint32_t)rtt;
		}
		return;
	}
	bad_packet(c, "packet arrived at the wrong connection", &B.err.misrouted);
}

/* ---- phases -------------------------------------------------------------- */

/* Let every sender produce what its window, its pacing and its output room
 * allow. */
static void
generate(void)
{
	int64_t now = now_ns();
	double dt = (double)(now - B.t_tokens) / 1e9;
	int i;

	B.t_tokens = now;
	for (i = 0; i < B.nactive; i++) {
		struct pair *p = &B.pairs[i];

		if (p->dead)
			continue;
		if (p->eb_n > 0)
			echo_backlog(p);
		if (!B.generate)
			continue;
		if (B.mode == M_WINDOW) {
			while (p->sent - p->next < (uint64_t)B.window &&
			    (B.limit == 0 || p->sent < B.limit) &&
			    send_one(p, KIND_DATA) == 0)
				;
			continue;
		}
		p->tokens += B.rate * dt;
		B.tok_total += B.rate * dt;
		if (p->tokens > B.burst) {	/* unused time is not saved up */
			if (p->was_blocked)
				B.tok_blocked += p->tokens - B.burst;
			else
				B.tok_late += p->tokens - B.burst;
			p->tokens = B.burst;
		}
		p->was_blocked = 0;
		while (p->tokens >= 1.0 && (B.limit == 0 || p->sent < B.limit)) {
			if (send_one(p, B.mode == M_ECHO ? KIND_PING :
			    KIND_DATA) < 0) {
				p->was_blocked = 1;
				break;
			}
			p->tokens -= 1.0;
		}
	}
}

static void
flush_all(void)
{
	size_t i;

	for (i = 0; i < B.nflush; i++) {
		struct conn *c = B.flushq[i];
		c->queued = 0;
		conn_flush(c);
	}
	B.nflush = 0;
}

/* One round: readiness, reads (which open windows and queue echoes), new
 * packets, writes. */
static void
loop_once(int timeout_ms)
{
	struct epoll_event ev[MAX_EVENTS];
	int n = epoll_wait(B.epfd, ev, MAX_EVENTS, timeout_ms), i;

	for (i = 0; i < n; i++) {
		struct conn *c = ev[i].data.ptr;

		if (c->dead)
			continue;
		if (c->hs == HS_CONNECT) {
			hs_connected(c);
			continue;
		}
		if (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
			if (c->tls)
				conn_read_tls(c);
			else
				conn_read_plain(c);
		}
		if (!c->dead && (ev[i].events & EPOLLOUT))
			conn_flush(c);
	}
	generate();
	flush_all();
}

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

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* 1 when a bounded (smoke) phase has everything back. */
static int
all_done(void)
{
	int i;

	for (i = 0; i < B.nactive; i++) {
		const struct pair *p = &B.pairs[i];
		if (p->dead)
			continue;
		if (p->sent < B.limit)
			return 0;
		if (B.mode == M_ECHO ? p->echo_next < p->sent : p->next < p->sent)
			return 0;
	}
	return 1;
}

static void
snapshot(int end)
{
	int i;

	for (i = 0; i < B.nactive; i++) {
		struct pair *p = &B.pairs[i];
		uint64_t d = B.mode == M_ECHO ? p->echo_got : p->delivered;
		if (end) {
			p->sent1 = p->sent;
			p->dl1 = d;
		} else {
			p->sent0 = p->sent;
			p->dl0 = d;
		}
	}
}

/* Bytes of the active pairs waiting in our output buffers (*ours), in the
 * kernel's send queues toward the relay (*outq: not sent at all, because the
 * relay's receive window is closed; SIOCOUTQNSD, unlike SIOCOUTQ, leaves out
 * bytes sent and merely not acknowledged yet) and in the receive queues from
 * it (*inq: not read by us yet). */
static void
queued_bytes(uint64_t *ours, uint64_t *outq, uint64_t *inq)
{
	int i, k;

	*ours = *outq = *inq = 0;
	for (i = 0; i < B.nactive; i++) {
		struct pair *pr = &B.pairs[i];
		if (pr->dead)
			continue;
		for (k = 0; k < 2; k++) {
			struct conn *c = k ? &pr->b : &pr->a;
			int v;
			*ours += c->wlen - c->woff;
			if (ioctl(c->fd, SIOCOUTQNSD, &v) == 0 && v > 0)
				*outq += (uint64_t)v;
			if (ioctl(c->fd, FIONREAD, &v) == 0 && v > 0)
				*inq += (uint64_t)v;
		}
	}
}

static uint64_t
in_flight(void)
{
	uint64_t n = 0;
	int i;

	for (i = 0; i < B.nactive; i++)
		if (!B.pairs[i].dead)
			n += B.pairs[i].sent - (B.mode == M_ECHO ?
			    B.pairs[i].echo_next : B.pairs[i].next);
	return n;
}

/* The drain ended with pairs whose last packet never came back: what is
 * still on its way would leak into the next phase (as stale packets, and as
 * load), so say where it is and give the next phase fresh connections. */
static void
drain_failed(int waiting, int64_t waited_ns, uint64_t got)
{
	uint64_t ours, outq, inq;

	queued_bytes(&ours, &outq, &inq);
	anomaly("drain: after %.1f s (%llu packets arrived meanwhile), %d of %d"
	    " pairs still wait for their last packet (%llu in flight, %.1f s"
	    " since anything arrived); bytes in"
	    " our buffers %llu, unsent toward the relay %llu, unread from it"
	    " %llu; the rest is inside the relay (its buffers or its sockets'"
	    " receive queues); the next phase gets fresh connections",
	    (double)waited_ns / 1e9, (unsigned long long)got, waiting,
	    B.nactive,
	    (unsigned long long)in_flight(),
	    (double)(now_ns() - B.last_any_rx_ns) / 1e9,
	    (unsigned long long)ours, (unsigned long long)outq,
	    (unsigned long long)inq);
	B.reconnect = 1;
}


/*
 * Nothing has arrived for STALL_PROBE_MS while we keep sending: find where the
 * packets in flight are.  Our own buffers, the kernel's queues toward the
 * relay (SIOCOUTQ on A's sockets: sent by us, not yet taken by the relay)
 * and from it (FIONREAD on B's sockets: delivered, not yet read by us); what
 * is in flight and in none of them sits inside the relay.  Also the relay's
 * scheduler state and wait channel.
 */
static void
stall_probe(int64_t now)
{
	uint64_t inflight = 0, ours, outq, inq;
	int full = 0, i;
	char path[64], st[2048], wchan[64] = "?", state = '?', *p;
	const char *verdict;

	for (i = 0; i < B.nactive; i++) {
		struct pair *pr = &B.pairs[i];
		if (pr->dead)
			continue;
		inflight += pr->sent - pr->next;
		if (B.mode == M_WINDOW && pr->sent - pr->next >= (uint64_t)B.window)
			full++;
	}
	queued_bytes(&ours, &outq, &inq);
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)srv.pid);
	if (read_text(path, st, sizeof(st)) > 0 && (p = strrchr(st, ')')) &&
	    p[1] == ' ')
		state = p[2];
	snprintf(path, sizeof(path), "/proc/%ld/wchan", (long)srv.pid);
	(void)read_text(path, wchan, sizeof(wchan));
	if (inq > 0)
		verdict = "we are behind reading (load generator short of CPU)";
	else if (outq > 0 && state == 'S')
		verdict = "RELAY ASLEEP while a sender's bytes wait for it";
	else if (outq > 0)
		verdict = "the relay is busy and not reading";
	else if (ours == 0)
		verdict = "the packets are inside the relay (its buffers or its"
		    " sockets' receive queues)";
	else
		verdict = "our output is waiting";
	anomaly("stall: nothing delivered for %.0f ms (%.2f s into the phase);"
	    " %llu packets in flight, %d of %d pairs at their window; bytes in"
	    " our output buffers %llu, unsent toward the relay %llu, unread from"
	    " the relay %llu; relay state %c wchan %s: %s",
	    (double)(now - B.last_any_rx_ns) / 1e6,
	    (double)(now - B.t_phase) / 1e9, (unsigned long long)inflight,
	    full, B.nactive, (unsigned long long)ours,
	    (unsigned long long)outq, (unsigned long long)inq, state,
	    wchan[0] == '0' || wchan[0] == '\0' ? "-" : wchan, verdict);
}

/* Run one phase on pairs [0, B.nactive).  0, or -1 if the relay died. */
static int
run_phase(const struct spec *sp, struct result *r)
{
	int64_t t0, t1, tm0 = 0, tm1 = 0, srv0 = 0, srv1 = 0, me0 = 0, me1 = 0;
	int64_t all0 = 0, all1 = 0, probed = 0;
	int nprobes = 0;
	uint64_t rel0 = 0, rel1 = 0, sent = 0, dl = 0, lost_out = 0;
	double *frac, *share;
	int i, n = 0;

	memset(r, 0, sizeof(*r));
	r->mode = sp->mode;
	r->tls = B.tls;
	r->pairs = B.nactive;
	r->window = sp->window;
	r->size = sp->size;
	phase_name = mode_names[sp->mode];
	B.epoch++;
	for (i = 0; i < B.nactive; i++) {
		struct pair *p = &B.pairs[i];
		p->sent = p->next = p->delivered = p->lost = 0;
		p->echo_next = p->echo_got = p->echo_lost = 0;
		p->tokens = 0;
		p->was_blocked = 0;
		p->eb_head = p->eb_n = 0;
	}
	memset(&B.err, 0, sizeof(B.err));
	B.mode = sp->mode;
	B.size = sp->size;
	B.window = sp->window;
	B.limit = sp->limit;
	B.rate = B.nactive > 0 ? sp->rate / B.nactive : 0;
	/* At most 2 ms of packets at once, so pacing stays smooth; at least one.
	 * Latency runs also stay well under a queue (32): a burst the size of a
	 * queue would measure our burst, not the relay. */
	B.burst = B.rate * 0.002 > 1.0 ? B.rate * 0.002 : 1.0;
	if (sp->mode == M_ECHO && B.burst > QUEUE_DEPTH / 4)
		B.burst = QUEUE_DEPTH / 4;
	B.nrtt = 0;
	B.relayed = 0;
	B.tok_total = B.tok_blocked = B.tok_late = 0;
	B.measuring = 0;
	B.max_stall_ns = 0;
	B.generate = 1;
	B.t_phase = B.t_tokens = B.last_any_rx_ns = now_ns();
	t0 = B.t_phase + (int64_t)sp->warm_ms * 1000000;
	t1 = t0 + (int64_t)sp->measure_ms * 1000000;
	for (;;) {
		int64_t now = now_ns();

		if (!B.measuring && (now >= t0 || (sp->limit && all_done()))) {
			tm0 = now;
			srv0 = proc_cpu_ns(srv.pid);
			me0 = self_cpu_ns();
			all0 = machine_busy_ns();
			rel0 = B.relayed;
			snapshot(0);
			B.measuring = 1;
			B.last_rx_ns = now;
		}
		if (B.measuring && (now >= t1 || (sp->limit && all_done()))) {
			tm1 = now;
			srv1 = proc_cpu_ns(srv.pid);
			me1 = self_cpu_ns();
			all1 = machine_busy_ns();
			rel1 = B.relayed;
			snapshot(1);
			if (now - B.last_rx_ns > B.max_stall_ns)
				B.max_stall_ns = now - B.last_rx_ns;
			B.measuring = 0;
			break;
		}
		if (!server_alive())
			return -1;
		if (B.measuring && now - B.last_any_rx_ns > (int64_t)STALL_PROBE_MS *
		    1000000 && probed != B.last_any_rx_ns &&
		    nprobes < STALL_PROBES && in_flight() > 0) {
			probed = B.last_any_rx_ns;
			nprobes++;
			stall_probe(now);
		}
		loop_once(B.mode == M_WINDOW ? 5 : 1);
	}
	/* Drain: no new packets; wait for what is in flight. */
	B.generate = 0;
	{
		int64_t start = now_ns();
		uint64_t rel_start = B.relayed;
		int waiting;
		for (;;) {
			int64_t now = now_ns();
			waiting = 0;
			for (i = 0; i < B.nactive; i++) {
				const struct pair *p = &B.pairs[i];
				if (!p->dead && (B.mode == M_ECHO ?
				    p->echo_next < p->sent : p->next < p->sent))
					waiting++;
			}
			if (waiting == 0)
				break;
			if (B.mode == M_WINDOW ? now - start >
			    (int64_t)DRAIN_WINDOW_MS * 1000000 :
			    (now - B.last_any_rx_ns > (int64_t)DRAIN_QUIET_MS *
			    1000000 || now - start > (int64_t)DRAIN_MAX_MS *
			    1000000))
				break;
			if (!server_alive())
				return -1;
			loop_once(5);
		}
		if (waiting > 0)
			drain_failed(waiting, now_ns() - start,
			    B.relayed - rel_start);
	}
	/* Results. */
	frac = calloc((size_t)B.nactive + 1, sizeof(double));
	share = calloc((size_t)B.nactive + 1, sizeof(double));
	if (frac == NULL || share == NULL) {
		free(frac);
		free(share);
		return -1;
	}
	for (i = 0; i < B.nactive; i++) {
		struct pair *p = &B.pairs[i];
		lost_out += p->sent - p->delivered;
	}
	for (i = 0; i < B.nactive; i++) {
		struct pair *p = &B.pairs[i];
		uint64_t got = B.mode == M_ECHO ? p->echo_got : p->delivered;
		r->sent_total += p->sent;
		r->delivered_total += got;
		sent += p->sent1 - p->sent0;
		dl += p->dl1 - p->dl0;
		if (B.mode == M_WINDOW && p->sent > p->next && !p->dead) {
			char why[96];
			snprintf(why, sizeof(why), "the last %llu of %llu packets"
			    " never arrived (lossless run)",
			    (unsigned long long)(p->sent - p->next),
			    (unsigned long long)p->sent);
			bad_packet(&p->b, why, &B.err.lost);
		}
		if (p->dead)
			continue;
		frac[n] = p->sent > 0 ? (double)got / (double)p->sent : 1.0;
		share[n] = (double)(p->dl1 - p->dl0);
		n++;
	}
	r->secs = (double)(tm1 - tm0) / 1e9;
	if (r->secs <= 0)
		r->secs = 1e-9;
	r->pps = (double)(rel1 - rel0) / r->secs;
	r->offered_pps = (double)sent / r->secs;
	r->mbps = (double)(dl) * (double)(sp->size ? sp->size : 1) * 8 /
	    r->secs / 1e6;
	if (B.mode == M_ECHO)
		r->mbps *= 2;
	r->srv_util = srv0 >= 0 && srv1 >= 0 ? (double)(srv1 - srv0) /
	    (double)(tm1 - tm0) : -1;
	r->bench_util = (double)(me1 - me0) / (double)(tm1 - tm0);
	r->other_util = all0 >= 0 && all1 >= 0 && r->srv_util >= 0 ?
	    (double)(all1 - all0) / (double)(tm1 - tm0) - r->srv_util -
	    r->bench_util : -1;
	if (r->other_util < 0 && all0 >= 0)
		r->other_util = 0;	/* tick rounding */
	r->srv_ns = rel1 > rel0 && r->srv_util >= 0 ? (double)(srv1 - srv0) /
	    (double)(rel1 - rel0) : -1;
	r->loss = r->sent_total > 0 ? 1.0 - (double)r->delivered_total /
	    (double)r->sent_total : 0;
	if (n > 0) {
		double mean = 0;
		qsort(frac, (size_t)n, sizeof(double), cmp_double);
		r->frac_min = frac[0];
		r->frac_med = frac[n / 2];
		r->frac_max = frac[n - 1];
		for (i = 0; i < n; i++)
			mean += share[i];
		mean /= n;
		qsort(share, (size_t)n, sizeof(double), cmp_double);
		r->share_min = mean > 0 ? share[0] / mean : 0;
		r->share_max = mean > 0 ? share[n - 1] / mean : 0;
	}
	free(frac);
	free(share);
	r->stall_ms = (double)B.max_stall_ns / 1e6;
	r->nrtt = B.nrtt;
	if (B.nrtt > 0) {
		qsort(B.rtt, B.nrtt, sizeof(uint32_t), cmp_u32);
		r->p50_us = B.rtt[B.nrtt / 2] / 1e3;
		r->p99_us = B.rtt[B.nrtt * 99 / 100] / 1e3;
		r->max_us = B.rtt[B.nrtt - 1] / 1e3;
	}
	r->target_pps = sp->rate;
	r->blocked = B.tok_total > 0 ? B.tok_blocked / B.tok_total : 0;
	r->late = B.tok_total > 0 ? B.tok_late / B.tok_total : 0;
	r->err = B.err;
	r->errors = (int)(B.err.corrupt + B.err.misrouted + B.err.reordered +
	    B.err.disconnects + (B.mode == M_WINDOW ? B.err.lost : 0));
	if (B.mode == M_ECHO && r->sent_total > r->delivered_total)
		anomaly("%d pairs: %llu of %llu round trips lost at half the"
		    " windowed rate (%llu on the way out, the rest on the way"
		    " back)", B.nactive, (unsigned long long)(r->sent_total -
		    r->delivered_total), (unsigned long long)r->sent_total,
		    (unsigned long long)lost_out);
	r->ran = 1;
	if (B.reconnect) {
		for (i = 0; i < B.nactive; i++)
			B.pairs[i].dead = 1;
		B.reconnect = 0;
	}
	phase_name = "between phases";
	return 0;
}

/* ---- scenarios ----------------------------------------------------------- */

#define MAX_RESULTS 128
static struct result results[MAX_RESULTS];
static int nresults;

/* Crypto ceiling (ns per packet: one record sealed + one opened), by size. */
struct ceiling {
	size_t size;
	double gcm_ns, chapol_ns;
};
static struct ceiling ceilings[8];
static int nceilings;

static double
ceiling_for(size_t size)
{
	int i;
	int chacha = B.cipher_suite ==
	    BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 ||
	    B.cipher_suite == BR_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256;

	for (i = 0; i < nceilings; i++)
		if (ceilings[i].size == size)
			return chacha ? ceilings[i].chapol_ns : ceilings[i].gcm_ns;
	return -1;
}

static const char *
suite_name(uint16_t s)
{
	switch (s) {
	case BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:
		return "ECDHE-ECDSA-AES128-GCM-SHA256";
	case BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384:
		return "ECDHE-ECDSA-AES256-GCM-SHA384";
	case BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256:
		return "ECDHE-ECDSA-CHACHA20-POLY1305";
	case BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:
		return "ECDHE-RSA-AES128-GCM-SHA256";
	case BR_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:
		return "ECDHE-RSA-CHACHA20-POLY1305";
	default:
		return "other";
	}
}

static const char *
tname(int tls)
{
	return tls ? "tls" : "plain";
}

static void
print_result(const struct result *r)
{
	char errs[200] = "";
	char cpu[80];

	if (r->errors > 0 || r->err.stale > 0 || r->err.unexpected > 0 ||
	    r->err.echo_drops > 0 || (r->mode == M_WINDOW && r->err.lost > 0))
		snprintf(errs, sizeof(errs), " [lost %llu corrupt %llu misrouted"
		    " %llu reordered %llu disconnects %llu stale %llu unexpected"
		    " %llu echoes we could not send %llu]",
		    (unsigned long long)(r->mode == M_WINDOW ? r->err.lost : 0),
		    (unsigned long long)r->err.corrupt,
		    (unsigned long long)r->err.misrouted,
		    (unsigned long long)r->err.reordered,
		    (unsigned long long)r->err.disconnects,
		    (unsigned long long)r->err.stale,
		    (unsigned long long)r->err.unexpected,
		    (unsigned long long)r->err.echo_drops);
	snprintf(cpu, sizeof(cpu), "bench %.0f%% other %.0f%%",
	    r->bench_util * 100, r->other_util * 100);
	printf("%-8s %-5s %4d pairs %5zu B", mode_names[r->mode], tname(r->tls),
	    r->pairs, r->size);
	switch (r->mode) {
	case M_WINDOW: {
		double c = r->tls ? ceiling_for(r->size) : -1;
		printf(" W=%-2d: %7.0f pkt/s %7.1f Mbit/s | relay %3.0f%% CPU"
		    " %6.2f us/pkt", r->window, r->pps, r->mbps,
		    r->srv_util * 100, r->srv_ns / 1e3);
		if (c > 0 && r->srv_ns > 0)
			printf(" ratio %.3f", c / r->srv_ns);
		printf(" | %s | share %.2f-%.2f stall %.0f ms | %s%s\n", cpu,
		    r->share_min, r->share_max, r->stall_ms,
		    r->errors ? "ERRORS" : "ok", errs);
		break;
	}
	case M_RATE:
		printf(": offered %7.0f of %7.0f pkt/s (not sent: %.0f%% TCP"
		    " backpressure, %.0f%% our lag), delivered %7.0f pkt/s, loss"
		    " %4.1f%%, per-pair delivery min/med/max %.2f/%.2f/%.2f | relay"
		    " %3.0f%% CPU %6.2f us/pkt | %s | %s%s\n", r->offered_pps,
		    r->target_pps, r->blocked * 100, r->late * 100, r->pps,
		    r->loss * 100, r->frac_min, r->frac_med, r->frac_max,
		    r->srv_util * 100, r->srv_ns / 1e3, cpu,
		    r->errors ? "ERRORS" : "ok", errs);
		break;
	case M_ECHO:
		printf(": %7.0f of %7.0f relayed pkt/s, rtt p50 %.0f us p99 %.0f us"
		    " max %.0f us (%llu samples), loss %.2f%% | relay %3.0f%% CPU"
		    " %6.2f us/pkt | %s | %s%s\n", r->pps, 2 * r->target_pps,
		    r->p50_us, r->p99_us, r->max_us, (unsigned long long)r->nrtt,
		    r->loss * 100, r->srv_util * 100, r->srv_ns / 1e3, cpu,
		    r->errors ? "ERRORS" : "ok", errs);
		break;
	}
	fflush(stdout);
}

static int
time_left_for(int ms)
{
	return (now_ns() - t_program) / 1000000 + ms < BUDGET_MS;
}

/* The window for a pair count and size: at most the queue depth, and all
 * windows together within a share of the relay's packet pool (a packet of S
 * bytes takes ceil((S + 37) / (chunk - 16)) chunks, 16 bytes of chunk header
 * rounded up). */
static int
window_for(int pairs, size_t size)
{
	long per = (long)((size + FRAME_PREFIX_BYTES + srv.chunk_bytes - 17) /
	    (size_t)(srv.chunk_bytes - 16));
	long w = srv.pool_chunks / POOL_SHARE_DIV / ((long)pairs * per);

	if (w > WINDOW_MAX)
		w = WINDOW_MAX;
	if (w < 1)
		w = 1;
	return (int)w;
}

struct timing {
	int warm_ms, measure_ms;	/* windowed */
	int o_warm_ms, o_measure_ms;	/* overload */
	int l_warm_ms, l_measure_ms;	/* latency */
};

static struct result *
add_result(void)
{
	if (nresults >= MAX_RESULTS)
		return NULL;
	return &results[nresults++];
}

/* Windowed, then overload at 3x and latency at half of what windowed found. */
static int
run_config(size_t size, const struct timing *tm)
{
	struct spec sp;
	struct result *w, *r;
	int est = tm->warm_ms + tm->measure_ms + tm->o_warm_ms + tm->o_measure_ms +
	    tm->l_warm_ms + tm->l_measure_ms + 2000;

	if (!time_left_for(est)) {
		printf("(skipped %s %d pairs %zu B: time budget)\n", tname(B.tls),
		    B.nactive, size);
		return 0;
	}
	if (ensure_pairs(B.nactive) < 0)
		return -1;
	memset(&sp, 0, sizeof(sp));
	sp.mode = M_WINDOW;
	sp.size = size;
	sp.window = window_for(B.nactive, size);
	sp.warm_ms = tm->warm_ms;
	sp.measure_ms = tm->measure_ms;
	if ((w = add_result()) == NULL || run_phase(&sp, w) < 0)
		return -1;
	print_result(w);
	if (w->pps <= 0)
		return 0;
	if (ensure_pairs(B.nactive) < 0)
		return -1;
	sp.mode = M_RATE;
	sp.rate = 3 * w->pps;
	sp.warm_ms = tm->o_warm_ms;
	sp.measure_ms = tm->o_measure_ms;
	if ((r = add_result()) == NULL || run_phase(&sp, r) < 0)
		return -1;
	print_result(r);
	if (ensure_pairs(B.nactive) < 0)
		return -1;
	/* Half of capacity: of the smaller of the windowed rate and what paced
	 * senders got through (paced packets arrive one by one, without the
	 * batching a window gives the relay, and cost it more).  Each round
	 * trip is two relayed packets. */
	sp.mode = M_ECHO;
	sp.rate = (r->pps > 0 && r->pps < w->pps ? r->pps : w->pps) / 4;
	sp.warm_ms = tm->l_warm_ms;
	sp.measure_ms = tm->l_measure_ms;
	if ((r = add_result()) == NULL || run_phase(&sp, r) < 0)
		return -1;
	print_result(r);
	return 0;
}

/* One transport: start the relay, then each pair count and size. */
static int
run_transport(int tls, const int *pairs, int npairs, const size_t *sizes,
    int nsizes, const struct timing *tm)
{
	int i, j, rc = 0;

	B.tls = tls;
	printf("\n== %s ==\n", tls ? "TLS (self-signed IP certificate)" :
	    "plain HTTP");
	if (server_start(tls, 0) < 0)
		return -1;
	printf("relay pid %ld on 127.0.0.1:%d, pool %ld chunks of %ld bytes,"
	    " log %s\n", (long)srv.pid, srv.port, srv.pool_chunks,
	    srv.chunk_bytes, srv.log);
	for (i = 0; i < npairs && rc == 0; i++) {
		int64_t t = now_ns(), s0 = proc_cpu_ns(srv.pid), m0 = self_cpu_ns();
		int before = B.nactive;
		phase_name = "connect";
		if (!time_left_for(5000)) {
			printf("(skipped %d pairs: time budget)\n", pairs[i]);
			break;
		}
		if (ensure_pairs(pairs[i]) < 0) {
			rc = -1;
			break;
		}
		printf("-- %d pairs: %d new connections in %.2f s, relay CPU %.2f ms"
		    " and ours %.2f ms per connection%s%s\n", pairs[i],
		    2 * (pairs[i] - before), (double)(now_ns() - t) / 1e9,
		    (double)(proc_cpu_ns(srv.pid) - s0) / 1e6 / (2 * (pairs[i] -
		    before)), (double)(self_cpu_ns() - m0) / 1e6 / (2 * (pairs[i] -
		    before)), tls ? "; suite " : "", tls ?
		    suite_name(B.cipher_suite) : "");
		fflush(stdout);
		for (j = 0; j < nsizes && rc == 0; j++)
			rc = run_config(sizes[j], tm);
	}
	close_all_pairs();
	server_stop();
	return rc;
}

/* ---- crypto ceiling ------------------------------------------------------ */

/*
 * One relayed packet costs a TLS relay one record opened (the SendPacket) and
 * one sealed (the RecvPacket), each of packet + 37 bytes.  Run BearSSL's own
 * record layer (the classes the engine uses, with the implementations its
 * defaults pick on this CPU) on one buffer: seal, open in place, repeat, for
 * budget_ns of this thread's CPU.  ns per seal+open, or -1 on a failure
 * (which also fails the smoke run).
 */
static double
aead_ns(int chacha, size_t plain, int64_t budget_ns)
{
	static uint8_t rec[16 + 16384 + 64], ref[16384];
	uint8_t key[32], iv[12];
	br_sslrec_gcm_context og, ig;
	br_sslrec_chapol_context oc, ic;
	const br_sslrec_out_class **out;
	const br_sslrec_in_class **in;
	struct timespec a, b;
	int64_t used = 0;
	long iters = 0;
	uint8_t *pt = NULL;

	dc_random(key, sizeof(key));
	dc_random(iv, sizeof(iv));
	dc_random(ref, plain);
	if (chacha) {
		br_chacha20_run cc = br_chacha20_sse2_get();
		br_poly1305_run pp = br_poly1305_ctmulq_get();
		if (cc == 0)
			cc = br_chacha20_ct_run;
		if (pp == 0)
			pp = br_poly1305_ctmul_run;
		br_sslrec_out_chapol_vtable.init(&oc.vtable.out, cc, pp, key, iv);
		br_sslrec_in_chapol_vtable.init(&ic.vtable.in, cc, pp, key, iv);
		out = (const br_sslrec_out_class **)(void *)&oc.vtable;
		in = (const br_sslrec_in_class **)(void *)&ic.vtable;
	} else {
		const br_block_ctr_class *aes = br_aes_x86ni_ctr_get_vtable();
		br_ghash gh = br_ghash_pclmul_get();
		if (aes == NULL)
			aes = &br_aes_ct64_ctr_vtable;
		if (gh == 0)
			gh = br_ghash_ctmul64;
		br_sslrec_out_gcm_vtable.init(&og.vtable.out, aes, key, 16, gh, iv);
		br_sslrec_in_gcm_vtable.init(&ig.vtable.in, aes, key, 16, gh, iv);
		out = (const br_sslrec_out_class **)(void *)&og.vtable;
		in = (const br_sslrec_in_class **)(void *)&ig.vtable;
	}
	memcpy(rec + 16, ref, plain);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
	while (used < budget_ns) {
		int k;
		for (k = 0; k < 64; k++) {
			size_t len = plain, blen;
			uint8_t *r = (*out)->encrypt(out, TLS_APPLICATION_DATA,
			    BR_TLS12, rec + 16, &len);
			blen = len - 5;
			if (!(*in)->check_length(in, blen))
				return -1;
			pt = (*in)->decrypt(in, TLS_APPLICATION_DATA, BR_TLS12,
			    r + 5, &blen);
			if (pt == NULL || blen != plain || pt != rec + 16)
				return -1;
		}
		iters += 64;
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
		used = (int64_t)(b.tv_sec - a.tv_sec) * 1000000000 +
		    (b.tv_nsec - a.tv_nsec);
	}
	if (memcmp(pt, ref, plain) != 0)
		return -1;
	/* A flipped ciphertext bit must be refused. */
	{
		size_t len = plain, blen;
		uint8_t *r = (*out)->encrypt(out, TLS_APPLICATION_DATA,
		    BR_TLS12, rec + 16, &len);
		r[len / 2] ^= 0x20;
		blen = len - 5;
		if ((*in)->decrypt(in, TLS_APPLICATION_DATA, BR_TLS12, r + 5,
		    &blen) != NULL)
			return -1;
	}
	return (double)used / (double)iters;
}

static int
run_ceiling(const size_t *sizes, int nsizes, int64_t budget_ns)
{
	int i, bad = 0;

	printf("\n== crypto ceiling: BearSSL record layer, one core, one record"
	    " opened + one sealed per packet (packet + 37 bytes) ==\n");
	printf("AES-GCM: %s CTR, %s GHASH; ChaCha20: %s, Poly1305: %s\n",
	    br_aes_x86ni_ctr_get_vtable() ? "AES-NI" : "portable",
	    br_ghash_pclmul_get() ? "PCLMUL" : "portable",
	    br_chacha20_sse2_get() ? "SSE2" : "portable",
	    br_poly1305_ctmulq_get() ? "ctmulq" : "portable");
	printf("%8s %18s %18s\n", "size", "AES-128-GCM ns", "ChaCha20-Poly ns");
	nceilings = 0;
	for (i = 0; i < nsizes && i < 8; i++) {
		struct ceiling *c = &ceilings[nceilings++];
		c->size = sizes[i];
		c->gcm_ns = aead_ns(0, sizes[i] + FRAME_PREFIX_BYTES, budget_ns);
		c->chapol_ns = aead_ns(1, sizes[i] + FRAME_PREFIX_BYTES,
		    budget_ns);
		if (c->gcm_ns < 0 || c->chapol_ns < 0)
			bad = 1;
		printf("%8zu %18.0f %18.0f   (%.2f / %.2f GB/s of packet bytes"
		    " each way)\n", c->size, c->gcm_ns, c->chapol_ns,
		    (double)c->size * 2 / c->gcm_ns,
		    (double)c->size * 2 / c->chapol_ns);
	}
	fflush(stdout);
	if (bad)
		anomaly("crypto ceiling: a record failed to round-trip");
	return bad ? -1 : 0;
}

/* ---- idle clients -------------------------------------------------------- */

/*
 * Idle TLS clients live in forked children, each with its own 20,000-file
 * budget.  A child reads a count on its command pipe, opens that many more
 * clients (TLS + DERP handshake with one reused dclient; after the handshake
 * only the socket is kept: the relay does not care that the client's TLS state
 * is gone while it stays silent), and answers ok/failed counts.  EOF on the
 * command pipe: exit (the kernel closes the sockets).
 */
struct idle_child {
	pid_t pid;
	int cmd, rep;
	long open;
};

struct idle_reply {
	uint32_t ok, failed, first_tls_err;
};

static int
read_full_fd(int fd, void *buf, size_t n, int timeout_ms)
{
	uint8_t *p = buf;
	int64_t deadline = now_ns() + (int64_t)timeout_ms * 1000000;

	while (n > 0) {
		struct pollfd pf;
		ssize_t r;
		int left = (int)((deadline - now_ns()) / 1000000);

		if (left <= 0)
			return -1;
		pf.fd = fd;
		pf.events = POLLIN;
		if (poll(&pf, 1, left) <= 0)
			continue;
		r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static void
idle_child_main(int cmd, int rep, int port)
{
	struct conn *slot = calloc(HS_INFLIGHT_CHILD, sizeof(struct conn));
	int *fds = malloc(sizeof(int) * IDLE_MAX_CLIENTS);
	long nfds = 0;

	signal(SIGALRM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	alarm(0);
	B.epfd = epoll_create1(0);
	if (slot == NULL || fds == NULL || B.epfd < 0)
		_exit(1);
	srv.port = port;
	srv.pid = -1;
	B.tls = 1;
	B.generate = 0;
	B.nactive = 0;
	idle_pair.idx = -1;
	for (;;) {
		struct idle_reply rp;
		uint32_t n, started = 0;
		int64_t deadline;
		int i, busy = 0;

		if (read_full_fd(cmd, &n, sizeof(n), 3600 * 1000) < 0)
			_exit(0);
		memset(&rp, 0, sizeof(rp));
		deadline = now_ns() + (int64_t)HS_TOTAL_MS * 1000000;
		B.hs_pending = B.hs_failed = 0;
		while ((started < n || busy > 0) && now_ns() < deadline) {
			for (i = 0; i < HS_INFLIGHT_CHILD; i++) {
				struct conn *c = &slot[i];
				if (c->dc != NULL || started >= n ||
				    nfds + busy >= IDLE_MAX_CLIENTS)
					continue;
				started++;
				if (conn_begin(c, &idle_pair, 'I') < 0)
					rp.failed++;
				else
					busy++;
			}
			loop_once(10);
			for (i = 0; i < HS_INFLIGHT_CHILD; i++) {
				struct conn *c = &slot[i];
				if (c->dc == NULL)
					continue;
				if (c->dead) {
					if (rp.failed++ == 0 && c->tls)
						rp.first_tls_err = (uint32_t)
						    br_ssl_engine_last_error(
						    &c->dc->sc.eng);
					conn_close(c);
					busy--;
				} else if (c->hs == HS_DONE) {
					fds[nfds++] = conn_detach(c);
					rp.ok++;
					busy--;
				}
			}
		}
		rp.failed += n - rp.ok - rp.failed;	/* timed out */
		if (write(rep, &rp, sizeof(rp)) != (ssize_t)sizeof(rp))
			_exit(1);
	}
}

static int
idle_spawn(struct idle_child *chs, int idx)
{
	struct idle_child *ch = &chs[idx];
	int c[2], r[2], j;

	if (pipe(c) < 0 || pipe(r) < 0)
		return -1;
	fflush(stdout);
	ch->pid = fork();
	if (ch->pid < 0)
		return -1;
	if (ch->pid == 0) {
		close(c[1]);
		close(r[0]);
		close(B.epfd);
		/* The earlier children's pipes: kept open here, they would hide
		 * the EOF that tells those children to exit. */
		for (j = 0; j < idx; j++) {
			close(chs[j].cmd);
			close(chs[j].rep);
		}
		idle_child_main(c[0], r[1], srv.port);
		_exit(0);
	}
	idle_pids[idx] = ch->pid;
	close(c[0]);
	close(r[1]);
	ch->cmd = c[1];
	ch->rep = r[0];
	ch->open = 0;
	return 0;
}

/* Open `each` more clients in every child, in parallel.  Total failures. */
static long
idle_grow(struct idle_child *ch, int nch, uint32_t each)
{
	long failed = 0;
	int i;

	for (i = 0; i < nch; i++)
		if (write(ch[i].cmd, &each, sizeof(each)) != (ssize_t)sizeof(each))
			return -1;
	for (i = 0; i < nch; i++) {
		struct idle_reply rp;
		if (read_full_fd(ch[i].rep, &rp, sizeof(rp), 120000) < 0)
			return -1;
		ch[i].open += rp.ok;
		failed += rp.failed;
		if (rp.failed > 0)
			anomaly("idle clients: %lu of %lu handshakes failed in"
			    " child %d (first TLS error %lu)",
			    (unsigned long)rp.failed, (unsigned long)each, i,
			    (unsigned long)rp.first_tls_err);
	}
	return failed;
}

static long
idle_total(const struct idle_child *ch)
{
	long n = 0;
	int i;

	for (i = 0; i < IDLE_CHILDREN; i++)
		n += ch[i].open;
	return n;
}

struct memres {
	int ran;
	long rss0, rss_small, rss_large;
	long n_small, n_large;
	double idle_cpu;		/* relay CPU over 1 s with the large set */
	double idle_vsz;
};
static struct memres mem;

static long
rss_settled(void)
{
	sleep_ms(SETTLE_MS);
	return proc_rss_bytes(srv.pid);
}

/* Grow the idle set to `total` clients, print what it took and the RSS. */
static long
idle_step(struct idle_child *ch, long total, long *n, long *rss)
{
	int64_t t = now_ns(), s0 = proc_cpu_ns(srv.pid), k0 = 0, k1 = 0;
	long before = idle_total(ch), failed, added;
	double secs;
	int i;

	for (i = 0; i < IDLE_CHILDREN; i++)
		k0 += proc_cpu_ns(ch[i].pid);
	failed = idle_grow(ch, IDLE_CHILDREN, (uint32_t)((total - before) /
	    IDLE_CHILDREN));
	secs = (double)(now_ns() - t) / 1e9;
	for (i = 0; i < IDLE_CHILDREN; i++)
		k1 += proc_cpu_ns(ch[i].pid);
	*n = idle_total(ch);
	added = *n - before;
	printf("%ld idle clients (%ld failed): %ld handshakes (TLS + DERP) in"
	    " %.1f s = %.0f/s, relay CPU %.2f ms and client CPU %.2f ms per"
	    " handshake\n", *n, failed, added, secs, added / secs,
	    added > 0 ? (double)(proc_cpu_ns(srv.pid) - s0) / 1e6 / added : 0,
	    added > 0 ? (double)(k1 - k0) / 1e6 / added : 0);
	*rss = rss_settled();
	printf("  relay RSS %.1f MB: %.0f bytes per client over the 0-client"
	    " figure\n", *rss / 1e6, *n > 0 ? (double)(*rss - mem.rss0) /
	    (double)*n : 0);
	fflush(stdout);
	return failed;
}

static int
run_memory(int large, const struct timing *tm)
{
	struct idle_child ch[IDLE_CHILDREN];
	int i, rc = 0;
	long failed;
	int64_t t;
	int est_ms;

	printf("\n== memory: relay RSS with idle TLS clients (-max-clients %d;"
	    " clients in %d child processes) ==\n", IDLE_MAX_CLIENTS,
	    IDLE_CHILDREN);
	if (!time_left_for(large ? 40000 : 8000)) {
		printf("(skipped: time budget)\n");
		return 0;
	}
	phase_name = "memory";
	B.tls = 1;
	if (server_start(1, IDLE_MAX_CLIENTS) < 0)
		return -1;
	printf("relay pid %ld on 127.0.0.1:%d, log %s\n", (long)srv.pid,
	    srv.port, srv.log);
	memset(&mem, 0, sizeof(mem));
	mem.ran = 1;
	mem.rss0 = rss_settled();
	printf("idle relay, 0 clients: RSS %.1f MB\n", mem.rss0 / 1e6);
	for (i = 0; i < IDLE_CHILDREN; i++)
		if (idle_spawn(ch, i) < 0) {
			perror("bench: idle child");
			server_stop();
			return -1;
		}
	t = now_ns();
	failed = idle_step(ch, IDLE_SMALL, &mem.n_small, &mem.rss_small);
	/* The large step at the small step's pace, plus the busy pairs. */
	est_ms = (int)((double)(now_ns() - t) / 1e6 * (IDLE_LARGE - IDLE_SMALL) /
	    IDLE_SMALL) + tm->warm_ms + tm->measure_ms + 10000;
	if (large && !time_left_for(est_ms)) {
		printf("(skipped %d idle clients: about %d s more would not fit the"
		    " time budget)\n", IDLE_LARGE, est_ms / 1000);
		large = 0;
	}
	if (large && failed >= 0 && server_alive()) {
		failed = idle_step(ch, IDLE_LARGE, &mem.n_large, &mem.rss_large);
		{
			int64_t c0 = proc_cpu_ns(srv.pid), t0 = now_ns();
			sleep_ms(1000);
			mem.idle_cpu = (double)(proc_cpu_ns(srv.pid) - c0) /
			    (double)(now_ns() - t0);
			printf("relay CPU while %ld clients sit idle: %.1f%% of"
			    " a core\n", mem.n_large, mem.idle_cpu * 100);
		}
		fflush(stdout);
		/* The VPS case: busy pairs among many idle clients. */
		if (server_alive() && time_left_for(tm->warm_ms +
		    tm->measure_ms + 8000)) {
			struct spec sp;
			struct result *r;
			phase_name = "connect";
			if (ensure_pairs(100) == 0) {
				memset(&sp, 0, sizeof(sp));
				sp.mode = M_WINDOW;
				sp.size = 1200;
				sp.window = window_for(100, 1200);
				sp.warm_ms = tm->warm_ms;
				sp.measure_ms = tm->measure_ms;
				if ((r = add_result()) != NULL &&
				    run_phase(&sp, r) == 0) {
					printf("with %ld idle clients: ", mem.n_large);
					print_result(r);
				}
			} else {
				rc = -1;
			}
			close_all_pairs();
		}
	}
	for (i = 0; i < IDLE_CHILDREN; i++)
		close(ch[i].cmd);	/* EOF: the child exits */
	for (i = 0; i < IDLE_CHILDREN; i++) {
		int64_t deadline = now_ns() + (int64_t)STOP_MS * 1000000;
		while (waitpid(ch[i].pid, NULL, WNOHANG) != ch[i].pid) {
			if (now_ns() > deadline) {
				kill(ch[i].pid, SIGKILL);
				waitpid(ch[i].pid, NULL, 0);
				break;
			}
			sleep_ms(10);
		}
		close(ch[i].rep);
		idle_pids[i] = 0;
	}
	server_stop();
	return rc;
}

/* ---- smoke --------------------------------------------------------------- */

static int npass, nfail;

static void
check(int ok, const char *name, const char *detail)
{
	if (ok) {
		npass++;
		printf("ok %s\n", name);
	} else {
		nfail++;
		printf("FAIL %s%s%s\n", name, detail ? ": " : "",
		    detail ? detail : "");
	}
	fflush(stdout);
}

static void
smoke_transport(int tls)
{
	struct spec sp;
	struct result r;
	char name[64], why[160];
	const char *t = tname(tls);

	B.tls = tls;
	snprintf(name, sizeof(name), "%s start", t);
	check(server_start(tls, 0) == 0, name, srv.log);
	if (srv.pid <= 0)
		return;
	snprintf(name, sizeof(name), "%s connect one pair", t);
	check(ensure_pairs(1) == 0, name, NULL);
	if (B.nactive == 1) {
		memset(&sp, 0, sizeof(sp));
		sp.mode = M_WINDOW;
		sp.size = 0;		/* 100, 1200, 16000, 40, 555 cycled */
		sp.window = 8;
		sp.limit = 300;
		sp.measure_ms = 10000;
		snprintf(name, sizeof(name), "%s 300 packets intact, in order", t);
		if (run_phase(&sp, &r) < 0) {
			check(0, name, "the relay died");
		} else {
			snprintf(why, sizeof(why), "sent %llu delivered %llu corrupt"
			    " %llu misrouted %llu reordered %llu lost %llu"
			    " disconnects %llu",
			    (unsigned long long)r.sent_total,
			    (unsigned long long)r.delivered_total,
			    (unsigned long long)r.err.corrupt,
			    (unsigned long long)r.err.misrouted,
			    (unsigned long long)r.err.reordered,
			    (unsigned long long)r.err.lost,
			    (unsigned long long)r.err.disconnects);
			check(r.sent_total == 300 && r.delivered_total == 300 &&
			    r.errors == 0 && r.err.lost == 0, name, why);
		}
		ensure_pairs(1);
		sp.mode = M_ECHO;
		sp.size = 1200;
		sp.rate = 500;
		sp.limit = 50;
		snprintf(name, sizeof(name), "%s 50 round trips intact", t);
		if (run_phase(&sp, &r) < 0) {
			check(0, name, "the relay died");
		} else {
			snprintf(why, sizeof(why), "sent %llu echoed %llu errors %d"
			    " rtt samples %llu", (unsigned long long)r.sent_total,
			    (unsigned long long)r.delivered_total, r.errors,
			    (unsigned long long)r.nrtt);
			check(r.sent_total == 50 && r.delivered_total == 50 &&
			    r.errors == 0 && r.err.lost == 0, name, why);
		}
	}
	close_all_pairs();
	snprintf(name, sizeof(name), "%s relay alive after the traffic", t);
	check(server_alive(), name, srv.log);
	server_stop();
}

static int
run_smoke(void)
{
	static const size_t sz[] = { 100, 1200, 16000 };
	int i;

	for (i = 0; i < 3; i++) {
		double g = aead_ns(0, sz[i] + FRAME_PREFIX_BYTES, 1000000);
		double c = aead_ns(1, sz[i] + FRAME_PREFIX_BYTES, 1000000);
		char name[64];
		snprintf(name, sizeof(name), "crypto ceiling round trip %zu B",
		    sz[i]);
		check(g > 0 && c > 0, name, "record did not round-trip");
	}
	smoke_transport(0);
	smoke_transport(1);
	printf("%d passed, %d failed\n", npass, nfail);
	return nfail == 0 ? 0 : 1;
}

/* ---- main ---------------------------------------------------------------- */

/* Remove a directory we made (two levels: logs, key, certs/). */
static void
rm_tree(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	char sub[400];
	struct stat st;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
		if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
			rm_tree(sub);
		else
			(void)unlink(sub);
	}
	closedir(d);
	(void)rmdir(path);
}

static void
print_machine(void)
{
	static char buf[1 << 16];
	char model[128] = "unknown", *p;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	struct rlimit rl;

	if (read_text("/proc/cpuinfo", buf, sizeof(buf)) > 0 &&
	    (p = strstr(buf, "model name")) != NULL &&
	    (p = strchr(p, ':')) != NULL) {
		size_t n = strcspn(p + 2, "\n");
		if (n >= sizeof(model))
			n = sizeof(model) - 1;
		memcpy(model, p + 2, n);
		model[n] = '\0';
	}
	getrlimit(RLIMIT_NOFILE, &rl);
	printf("machine: %s, %ld cores online; open files %lu per process\n",
	    model, ncpu, (unsigned long)rl.rlim_cur);
	printf("relay: %s; load generator: this process (epoll, BearSSL engines"
	    " driven directly), idle clients in %d children\n", derp_path,
	    IDLE_CHILDREN);
	{
		/* Other processes share the cores too: say so, the figures
		 * below (except CPU per packet) depend on it. */
		int64_t b0 = machine_busy_ns(), t0 = now_ns(), b1;
		double other;
		sleep_ms(500);
		b1 = machine_busy_ns();
		other = b0 >= 0 && b1 >= 0 ? (double)(b1 - b0) /
		    (double)(now_ns() - t0) : 0;
		printf("other load before the run: %.0f%% of a core%s\n",
		    other * 100, other > 0.1 ? "  (WARNING: the machine is not"
		    " idle; throughput and latency figures suffer, see the"
		    " 'other' column)" : "");
	}
}

static void
print_tables(void)
{
	int i;

	printf("\n== windowed (lossless) throughput ==\n");
	printf("%-5s %5s %6s %3s %10s %9s %6s %11s %9s %7s %6s %6s %10s %7s %s\n",
	    "mode", "pairs", "size", "W", "pkt/s", "Mbit/s", "relay",
	    "relay ns/pk", "ceil ns", "ratio", "bench", "other", "share",
	    "stall", "errors");
	for (i = 0; i < nresults; i++) {
		const struct result *r = &results[i];
		double c;
		if (r->mode != M_WINDOW)
			continue;
		c = r->tls ? ceiling_for(r->size) : -1;
		printf("%-5s %5d %6zu %3d %10.0f %9.1f %5.0f%% %11.0f",
		    tname(r->tls), r->pairs, r->size, r->window, r->pps, r->mbps,
		    r->srv_util * 100, r->srv_ns);
		if (c > 0 && r->srv_ns > 0)
			printf(" %9.0f %7.3f", c, c / r->srv_ns);
		else
			printf(" %9s %7s", "-", "-");
		printf(" %5.0f%% %5.0f%% %4.2f-%4.2f %5.0fms %d\n",
		    r->bench_util * 100, r->other_util * 100, r->share_min,
		    r->share_max, r->stall_ms, r->errors);
	}
	printf("\n== overload (senders paced at 3x the windowed rate; offered ="
	    " what TCP let them send) ==\n");
	printf("%-5s %5s %6s %10s %10s %10s %7s %16s %6s %11s %s\n", "mode",
	    "pairs", "size", "target/s", "offered/s", "deliv/s", "loss",
	    "pair deliv frac", "relay", "relay ns/pk", "errors");
	for (i = 0; i < nresults; i++) {
		const struct result *r = &results[i];
		if (r->mode != M_RATE)
			continue;
		printf("%-5s %5d %6zu %10.0f %10.0f %10.0f %6.1f%% %4.2f/%4.2f/%4.2f"
		    " %5.0f%% %11.0f %d\n", tname(r->tls), r->pairs, r->size,
		    r->target_pps, r->offered_pps, r->pps, r->loss * 100, r->frac_min,
		    r->frac_med, r->frac_max, r->srv_util * 100, r->srv_ns,
		    r->errors);
	}
	printf("\n== latency (round trips A->B->A at half capacity: half the"
	    " smaller of the windowed and overload rates) ==\n");
	printf("%-5s %5s %6s %11s %11s %9s %9s %9s %8s %6s %s\n", "mode",
	    "pairs", "size", "target/s", "relayed/s", "p50 us", "p99 us",
	    "max us", "samples", "loss", "errors");
	for (i = 0; i < nresults; i++) {
		const struct result *r = &results[i];
		if (r->mode != M_ECHO)
			continue;
		printf("%-5s %5d %6zu %11.0f %11.0f %9.1f %9.1f %9.1f %8llu %5.2f%%"
		    " %d\n", tname(r->tls), r->pairs, r->size, 2 * r->target_pps,
		    r->pps, r->p50_us,
		    r->p99_us, r->max_us, (unsigned long long)r->nrtt,
		    r->loss * 100, r->errors);
	}
	if (mem.ran) {
		printf("\n== memory (relay VmRSS, TLS, idle clients) ==\n");
		printf("0 clients: %.1f MB\n", mem.rss0 / 1e6);
		if (mem.n_small > 0)
			printf("%ld clients: %.1f MB (%.0f bytes per client)\n",
			    mem.n_small, mem.rss_small / 1e6,
			    (double)(mem.rss_small - mem.rss0) / mem.n_small);
		if (mem.n_large > 0)
			printf("%ld clients: %.1f MB (%.0f bytes per client);"
			    " relay CPU while idle %.1f%%\n", mem.n_large,
			    mem.rss_large / 1e6,
			    (double)(mem.rss_large - mem.rss0) / mem.n_large,
			    mem.idle_cpu * 100);
	}
}

static void
usage(void)
{
	fprintf(stderr, "usage: bench [--quick | --smoke | --one tls|plain PAIRS"
	    " SIZE] [DERP_BINARY]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const int pairs_full[] = { 1, 10, 100, 1000 };
	static const size_t sizes_full[] = { 100, 1200, 16000 };
	static const int pairs_quick[] = { 10, 100 };
	static const size_t sizes_quick[] = { 1200 };
	static const struct timing t_full = { 500, 2000, 500, 1500, 300, 1200 };
	static const struct timing t_quick = { 300, 1000, 300, 1000, 200, 800 };
	int quick = 0, smoke = 0, i, rc = 0, errors = 0;
	int one_tls = -1, one_pairs = 0;
	size_t one_size = 0;
	struct rlimit rl;
	struct sigaction sa;
	uint32_t x = 0x9e3779b9u;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0)
			quick = 1;
		else if (strcmp(argv[i], "--smoke") == 0)
			smoke = 1;
		else if (strcmp(argv[i], "--one") == 0 && i + 3 < argc) {
			one_tls = strcmp(argv[i + 1], "tls") == 0;
			one_pairs = atoi(argv[i + 2]);
			one_size = (size_t)atol(argv[i + 3]);
			i += 3;
			if (one_pairs < 1 || one_pairs > MAX_PAIRS ||
			    one_size < PKT_HDR_BYTES || one_size > PKT_MAX_BYTES)
				usage();
		}
		else if (argv[i][0] == '-')
			usage();
		else
			derp_path = argv[i];
	}
	if (quick && smoke)
		usage();
	t_program = now_ns();
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (access(derp_path, X_OK) != 0) {
		fprintf(stderr, "bench: %s: not executable (make derp)\n",
		    derp_path);
		return 2;
	}
	/* 2,000 sockets here, 12,000 in the relay, 2,500 in each child. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fatal_signal;
	sigaction(SIGALRM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	alarm(WATCHDOG_S);

	snprintf(scratch, sizeof(scratch), "/tmp/derp-bench.XXXXXX");
	if (mkdtemp(scratch) == NULL) {
		perror("bench: mkdtemp");
		return 2;
	}
	for (i = 0; i < PATTERN_BYTES; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		pattern[i] = (uint8_t)(x >> 24);
	}
	B.epfd = epoll_create1(0);
	B.pairs = calloc(MAX_PAIRS, sizeof(struct pair));
	B.flushq = calloc(2 * MAX_PAIRS, sizeof(struct conn *));
	B.rtt = malloc(sizeof(uint32_t) * RTT_MAX_SAMPLES);
	if (B.epfd < 0 || B.pairs == NULL || B.flushq == NULL || B.rtt == NULL) {
		perror("bench: setup");
		return 2;
	}

	if (smoke) {
		rc = run_smoke();
		if (rc == 0)
			rm_tree(scratch);	/* keep the logs only of a failure */
		else
			printf("(relay logs in %s)\n", scratch);
		return rc;
	}

	printf("derp bench%s\n", quick ? " --quick" : "");
	print_machine();
	printf("each phase: warm-up, then a fixed measurement interval; relay CPU"
	    " = utime+stime of its process over the interval\n");
	if (run_ceiling(sizes_full, 3, quick ? 50000000 : 200000000) < 0)
		errors++;
	if (one_tls >= 0)
		rc = run_transport(one_tls, &one_pairs, 1, &one_size, 1, &t_full);
	for (i = 1; i >= 0 && rc == 0 && one_tls < 0; i--)
		rc = quick ? run_transport(i, pairs_quick, 2, sizes_quick, 1,
		    &t_quick) : run_transport(i, pairs_full, 4, sizes_full, 3,
		    &t_full);
	if (rc == 0 && one_tls < 0)
		rc = run_memory(!quick, quick ? &t_quick : &t_full);
	kill_all();
	print_tables();
	for (i = 0; i < nresults; i++)
		errors += results[i].errors;
	printf("\n== anomalies: %ld ==\n", anomalies_total);
	for (i = 0; i < nanomalies; i++)
		printf("%s\n", anomalies[i]);
	if (anomalies_total > nanomalies)
		printf("(%ld more not listed)\n", anomalies_total - nanomalies);
	printf("\nbench %s in %.0f s: %d integrity errors or disconnects;"
	    " relay logs in %s\n", rc == 0 ? "done" : "ABORTED", elapsed_s(),
	    errors, scratch);
	return rc != 0 || errors > 0 ? 1 : 0;
}
