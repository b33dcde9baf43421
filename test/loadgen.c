/*
 * loadgen.c -- the load generator's engine, shared by bench.c (`make bench`)
 * and soak.c (`make soak`): the relay process (start, stop, /proc figures),
 * non-blocking DERP clients over TLS or plain HTTP driven by one epoll loop
 * (handshakes included), pairs with checked packets, measured phases, idle
 * clients in forked children, and pass/fail checks.  The engine's design is
 * described at the top of bench.c.
 *
 * Sections: clock, files and reports; the relay process; connections;
 * packets; phases; idle clients; checks.
 */
#include "loadgen.h"


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



/* ---- clock, files and reports ------------------------------------------- */

int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t t_program;		/* now_ns() at start */

double
elapsed_s(void)
{
	return (double)(now_ns() - t_program) / 1e9;
}

void
sleep_ms(int ms)
{
	struct timespec ts;

	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (long)(ms % 1000) * 1000000;
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

uint32_t
get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

void
put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

uint64_t
get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

/* Whole small file (under /proc) into buf, NUL-terminated; length or -1. */
long
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
int64_t
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
long
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
int64_t
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

int64_t
self_cpu_ns(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
	    ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

/* Anomalies: things the relay did that it should not (or that we could not
 * check).  Printed when they happen (a bounded number) and listed at the end. */
char anomalies[ANOMALY_MAX][440];
int nanomalies;
long anomalies_total;
const char *phase_name = "setup";

void
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

const char *derp_path = "./derp";
char scratch[128];		/* mkdtemp: key file, certificates, logs */


struct server srv = { -1, 0, 0, 0, 0, 0, 0, "" };
struct server srv_peer = { -1, 0, 0, 0, 0, 0, 0, "" };
const char *const *srv_extra_args;
int srv_stun_port;
int srv_http_port;
pid_t idle_pids[IDLE_CHILDREN];	/* for the watchdog */

void
kill_all(void)
{
	int i;

	if (srv.pid > 0)
		kill(srv.pid, SIGKILL);
	if (srv_peer.pid > 0)
		kill(srv_peer.pid, SIGKILL);
	for (i = 0; i < IDLE_CHILDREN; i++)
		if (idle_pids[i] > 0)
			kill(idle_pids[i], SIGKILL);
}

void
on_fatal_signal(int sig)
{
	static const char msg[] = "\nbench: watchdog or signal: killing the relay"
	    " and the idle clients\n";

	kill_all();
	if (write(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(3);
	_exit(sig == SIGALRM ? 3 : 130);
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

int
server_alive_as(struct server *s)
{
	int st;

	if (s->pid <= 0)
		return 0;
	if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
		anomaly("the relay%s died: %s %d (log %s)",
		    s == &srv ? "" : " (second node)",
		    WIFSIGNALED(st) ? "signal" : "exit status",
		    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), s->log);
		s->pid = -1;
		return 0;
	}
	return 1;
}

int
server_alive(void)
{
	return server_alive_as(&srv);
}

/* The pool size from the relay's start-up line, "reserved N bytes for
 * -max-clients M (C packet chunks of B bytes)"; the README's formula if absent. */
static void
server_read_pool(struct server *s)
{
	static char text[65536];
	int fd = open(s->log, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, text, sizeof(text) - 1);
	const char *p;
	long c, b;

	if (fd >= 0)
		close(fd);
	s->pool_chunks = (long)s->max_clients * POOL_CHUNKS_PER_SLOT +
	    POOL_CHUNKS_SPARE;
	s->chunk_bytes = POOL_CHUNK_BYTES;
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
		s->pool_chunks = c;
		s->chunk_bytes = b;
	}
}

/* Start the relay: TLS (self-signed IP certificate) or plain; max_clients 0 =
 * its default (4096).  0 or -1. */
int
server_start(int tls, int max_clients)
{
	return server_start_as(&srv, NULL, tls, max_clients, 0);
}

/*
 * Start a relay into *s.  tag NULL: server_start's files (derp.key, certs/,
 * derp-N.log under scratch); else the relay's own (TAG.key, TAG-certs/,
 * TAG-N.log), so two relays have two server keys and two certificates, as a
 * mesh needs.  port > 0: that port, one try (a -mesh-with list already names
 * it); else a free one, up to three tries.  0 or -1.
 */
int
server_start_as(struct server *s, const char *tag, int tls, int max_clients,
    int port)
{
	char addr[64], key[200], certdir[200], mc[32], stun[16], http[16];
	char *argv[40];
	int t, a, k;

	if (tag == NULL) {
		snprintf(key, sizeof(key), "%s/derp.key", scratch);
		snprintf(certdir, sizeof(certdir), "%s/certs", scratch);
	} else {
		snprintf(key, sizeof(key), "%s/%s.key", scratch, tag);
		snprintf(certdir, sizeof(certdir), "%s/%s-certs", scratch, tag);
	}
	for (t = 0; t < (port > 0 ? 1 : 3); t++) {
		int64_t deadline;
		int ready = 0;

		s->port = port > 0 ? port :
		    dc_free_port("127.0.0.1", SOCK_STREAM);
		s->tls = tls;
		s->max_clients = max_clients > 0 ? max_clients : 4096;
		snprintf(s->log, sizeof(s->log), "%s/%s-%d.log", scratch,
		    tag != NULL ? tag : "derp", ++s->nlog);
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", s->port);
		snprintf(mc, sizeof(mc), "%d", s->max_clients);
		a = 0;
		argv[a++] = (char *)derp_path;
		/* The relay refuses to run as root without -user or -allow-root
		 * (CI and test machines run as root). */
		if (geteuid() == 0)
			argv[a++] = "-allow-root";
		argv[a++] = "-a";
		argv[a++] = addr;
		argv[a++] = "-c";
		argv[a++] = key;
		for (k = 0; srv_extra_args != NULL && srv_extra_args[k] != NULL &&
		    a < 30; k++)
			argv[a++] = (char *)srv_extra_args[k];
		if (srv_stun_port <= 0)
			argv[a++] = "-stun=false";
		else {
			snprintf(stun, sizeof(stun), "%d", srv_stun_port);
			argv[a++] = "-stun-port";
			argv[a++] = stun;
		}
		if (tls) {
			argv[a++] = "-certmode";
			argv[a++] = "manual";
			argv[a++] = "-hostname";
			argv[a++] = "127.0.0.1";
			argv[a++] = "-certdir";
			argv[a++] = certdir;
			/* The port-80 listener only where a test asks for it:
			 * port 80 itself is not ours to take. */
			snprintf(http, sizeof(http), "%d", srv_http_port > 0 ?
			    srv_http_port : -1);
			argv[a++] = "-http-port";
			argv[a++] = http;
		}
		if (max_clients > 0) {
			argv[a++] = "-max-clients";
			argv[a++] = mc;
		}
		argv[a] = NULL;
		fflush(stdout);
		s->pid = fork();
		if (s->pid < 0) {
			perror("bench: fork");
			return -1;
		}
		if (s->pid == 0) {
			int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
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
			if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
				s->pid = -1;
				break;
			}
			if (port_open(s->port)) {
				ready = 1;
				break;
			}
			sleep_ms(20);
		}
		if (ready) {
			server_read_pool(s);
			return 0;
		}
		if (s->pid > 0) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, NULL, 0);
			s->pid = -1;
		}
	}
	fprintf(stderr, "bench: %s did not start (log %s)\n", derp_path, s->log);
	return -1;
}

/* SIGTERM and wait; the exit status is reported if it is not 0. */
void
server_stop(void)
{
	server_stop_as(&srv);
}

void
server_stop_as(struct server *s)
{
	int64_t deadline = now_ns() + (int64_t)STOP_MS * 1000000;
	int st = 0;

	if (s->pid <= 0)
		return;
	kill(s->pid, SIGTERM);
	for (;;) {
		if (waitpid(s->pid, &st, WNOHANG) == s->pid)
			break;
		if (now_ns() > deadline) {
			anomaly("the relay did not exit within %d ms of SIGTERM;"
			    " killed (log %s)", STOP_MS, s->log);
			kill(s->pid, SIGKILL);
			waitpid(s->pid, &st, 0);
			s->pid = -1;
			return;
		}
		sleep_ms(10);
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		anomaly("the relay ended with %s %d after SIGTERM (log %s)",
		    WIFSIGNALED(st) ? "signal" : "exit status",
		    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), s->log);
	s->pid = -1;
}

/* ---- connections --------------------------------------------------------- */

const char *const mode_names[] = { "windowed", "overload", "latency" };

struct loadgen B;


struct pair idle_pair;		/* owner of idle clients (idx -1) */
static const uint8_t server_key_magic[SERVER_KEY_MAGIC_BYTES] = {
	0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91
};

uint8_t pattern[PATTERN_BYTES];

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
		if (B.first_fail[0] == '\0')
			snprintf(B.first_fail, sizeof(B.first_fail), "in state %d:"
			    " %s (TLS error %d)", c->hs, what, c->tls ?
			    br_ssl_engine_last_error(&c->dc->sc.eng) : 0);
		if (B.quiet_hs)
			return;
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
 * Append k parts (empty ones allowed) for which wbuf has room: copied in plain
 * mode, sealed as one TLS record (flushed) in TLS mode.  0 or -1.
 */
static int
conn_append(struct conn *c, const uint8_t *const *p, const size_t *n, int k)
{
	int i;

	for (i = 0; i < k; i++) {
		if (n[i] == 0)
			continue;
		if (!c->tls) {
			memcpy(c->wbuf + c->wlen, p[i], n[i]);
			c->wlen += n[i];
		} else if (tls_put(c, p[i], n[i]) < 0) {
			return -1;
		}
	}
	if (c->tls) {
		br_ssl_engine_flush(&c->dc->sc.eng, 0);
		tls_drain_out(c);
	}
	conn_mark(c);
	return 0;
}

/*
 * Append one frame: type, optional 32-byte key, then two payload parts.  For
 * TLS it is flushed as its own record (the Go client flushes per packet).
 * 0, or -1 when wbuf has no room (the caller retries later) or on failure.
 */
/* Room for need more bytes of output (sealed, when TLS), after moving out a
 * record left over from a full wbuf: 0, or -1 (retry later, or dead). */
static int
wbuf_ready(struct conn *c, size_t need)
{
	if (c->dead)
		return -1;
	if (c->tls && (br_ssl_engine_current_state(&c->dc->sc.eng) &
	    BR_SSL_SENDREC))
		tls_drain_out(c);
	if (wbuf_room(c, need) < need || (c->tls &&
	    (br_ssl_engine_current_state(&c->dc->sc.eng) & BR_SSL_SENDREC)))
		return -1;
	return 0;
}

int
conn_frame(struct conn *c, uint8_t type, const uint8_t *key,
    const uint8_t *p1, size_t n1, const uint8_t *p2, size_t n2)
{
	uint8_t h[FRAME_HDR_BYTES];
	size_t klen = key != NULL ? KEY_BYTES : 0;
	size_t flen = FRAME_HDR_BYTES + klen + n1 + n2;
	size_t need = flen + (c->tls ? TLS_RECORD_OVERHEAD : 0);
	const uint8_t *parts[4];
	size_t lens[4];

	if (wbuf_ready(c, need) != 0)
		return -1;
	h[0] = type;
	put_be32(h + 1, (uint32_t)(flen - FRAME_HDR_BYTES));
	parts[0] = h;
	lens[0] = FRAME_HDR_BYTES;
	parts[1] = key;
	lens[1] = klen;
	parts[2] = p1;
	lens[2] = n1;
	parts[3] = p2;
	lens[3] = n2;
	return conn_append(c, parts, lens, 4);
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
	return conn_append(c, &p, &n, 1);
}

int
conn_write(struct conn *c, const uint8_t *p, size_t n)
{
	/* Sealed, n takes a record per 16 KiB of plaintext (TLS's most). */
	size_t need = n + (c->tls ? TLS_RECORD_OVERHEAD * (n / 16384 + 1) : 0);

	if (wbuf_ready(c, need) != 0)
		return -1;
	return conn_append(c, &p, &n, 1);
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
		if (c->withhold_info) {
			/* The caller sends its own (unfinished) ClientInfo. */
			c->hs = HS_INFO;
			c->t_mark = now_ns();
			return;
		}
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
		const uint8_t *k;
		if (type != FT_SERVER_INFO || n < NACL_NONCE_BYTES +
		    NACL_TAG_BYTES || n - NACL_NONCE_BYTES - NACL_TAG_BYTES >
		    sizeof(msg) || (k = dc_box_key(dc)) == NULL ||
		    nacl_box_open_afternm(msg, f + NACL_NONCE_BYTES,
		    n - NACL_NONCE_BYTES, f, k) < 0 ||
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
		case FT_PONG:
			/* The answer to our conn_ping. */
			if (c->ping_state == 1 && n == PING_BYTES &&
			    memcmp(f + FRAME_HDR_BYTES, c->ping, PING_BYTES) == 0) {
				c->ping_state = 2;
				B.pongs++;
			} else {
				B.err.unexpected++;
				anomaly("%s %d side %c: Pong that answers no Ping"
				    " of ours", c->p == &idle_pair ? "idle client" :
				    "pair", c->p->idx, c->side);
			}
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

void
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


const char *conn_src_addr;
const uint8_t *conn_sk, *conn_pk;
int conn_b_port;

/* Start connecting; the handshake then runs from the event loop (hs). */
int
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
	if (conn_sk != NULL) {
		memcpy(c->dc->sk, conn_sk, 32);
		if (conn_pk != NULL)
			memcpy(c->dc->pk, conn_pk, 32);
		else
			nacl_x25519_base(c->dc->pk, c->dc->sk);
	} else {
		dc_genkey(c->dc);
	}
	if (conn_src_addr != NULL)
		snprintf(c->dc->src_addr, sizeof(c->dc->src_addr), "%s",
		    conn_src_addr);
	/* A generator shares the cores with the relay: it spends none on
	 * checking the relay's signature (it checks no certificate either). */
	c->dc->no_sig_check = 1;
	c->dc->go_suites = 1;
	if (dc_start(c->dc, "127.0.0.1", side == 'B' && conn_b_port > 0 ?
	    conn_b_port : srv.port, B.tls, NULL, &pending) < 0) {
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
int
conn_detach(struct conn *c)
{
	int fd = c->fd;

	(void)epoll_ctl(B.epfd, EPOLL_CTL_DEL, fd, NULL);
	c->dc->fd = -1;
	c->dead = 1;			/* conn_close: no epoll_ctl again */
	conn_close(c);
	return fd;
}

/* Send a Ping carrying tag; its Pong sets c->ping_state to 2 (B.pongs++).
 * 0, or -1 when the output is full. */
int
conn_ping(struct conn *c, uint64_t tag)
{
	put_be64(c->ping, tag);
	if (conn_frame(c, FT_PING, NULL, c->ping, PING_BYTES, NULL, 0) < 0)
		return -1;
	c->ping_state = 1;
	return 0;
}

/* Move a connection to another place (epoll holds its address).  Only
 * between rounds: the flush list is empty then. */
static void
conn_move(struct conn *dst, struct conn *src)
{
	struct epoll_event ev;

	*dst = *src;
	memset(src, 0, sizeof(*src));
	src->fd = -1;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | (dst->out_armed ? EPOLLOUT : 0);
	ev.data.ptr = dst;
	if (!dst->dead && epoll_ctl(B.epfd, EPOLL_CTL_MOD, dst->fd, &ev) < 0)
		conn_fail(dst, "epoll_ctl");
}

void
pair_close(struct pair *p)
{
	conn_close(&p->a);
	conn_close(&p->b);
	p->open = 0;
	p->dead = 0;
}

/* Make pairs [0, n) open and alive (reopening dead ones), close the rest;
 * up to HS_INFLIGHT handshakes at once.  0, or -1 if any failed. */
int
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
		if (!server_alive() || (srv_peer.pid > 0 &&
		    !server_alive_as(&srv_peer)))
			return -1;
		loop_once(10);
	}
	return rc < 0 || B.hs_failed > 0 ? -1 : 0;
}

void
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
void
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
	if (B.tick != NULL)
		B.tick();
	flush_all();
}

int
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
int
run_phase(const struct spec *sp, struct result *r)
{
	int64_t t0, t1, tm0 = 0, tm1 = 0, srv0 = 0, srv1 = 0, me0 = 0, me1 = 0;
	int64_t all0 = 0, all1 = 0, probed = 0, peer0 = -1, peer1 = -1;
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
			if (srv_peer.pid > 0)
				peer0 = proc_cpu_ns(srv_peer.pid);
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
			if (srv_peer.pid > 0)
				peer1 = proc_cpu_ns(srv_peer.pid);
			me1 = self_cpu_ns();
			all1 = machine_busy_ns();
			rel1 = B.relayed;
			snapshot(1);
			if (now - B.last_rx_ns > B.max_stall_ns)
				B.max_stall_ns = now - B.last_rx_ns;
			B.measuring = 0;
			break;
		}
		if (!server_alive() || (srv_peer.pid > 0 &&
		    !server_alive_as(&srv_peer)))
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
			if (!server_alive() || (srv_peer.pid > 0 &&
			    !server_alive_as(&srv_peer)))
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
	r->peer_util = peer0 >= 0 && peer1 >= 0 ? (double)(peer1 - peer0) /
	    (double)(tm1 - tm0) : -1;
	r->bench_util = (double)(me1 - me0) / (double)(tm1 - tm0);
	r->other_util = all0 >= 0 && all1 >= 0 && r->srv_util >= 0 ?
	    (double)(all1 - all0) / (double)(tm1 - tm0) - r->srv_util -
	    r->bench_util - (r->peer_util > 0 ? r->peer_util : 0) : -1;
	if (r->other_util < 0 && all0 >= 0)
		r->other_util = 0;	/* tick rounding */
	r->srv_ns = rel1 > rel0 && r->srv_util >= 0 ? (double)(srv1 - srv0) /
	    (double)(rel1 - rel0) : -1;
	r->peer_ns = rel1 > rel0 && r->peer_util >= 0 ? (double)(peer1 -
	    peer0) / (double)(rel1 - rel0) : -1;
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

/* ---- idle clients -------------------------------------------------------- */

/*
 * Idle TLS clients live in forked children, each with its own 20,000-file
 * budget, and so do handshake cycles (the handshake crypto of the clients then
 * uses both cores).  A child reads a struct idle_cmd on its command pipe, does
 * it, and answers a struct idle_reply.  EOF on the command pipe: exit (the
 * kernel closes the sockets).
 *   IDLE_OPEN   n more clients (TLS + DERP handshake); after the handshake
 *               only the socket is kept: the relay does not care that the
 *               client's TLS state is gone while it stays silent.
 *   IDLE_KEEP   the same, keeping the TLS state, for IDLE_PING later.
 *   IDLE_CYCLE  n connect / handshake / close cycles (or until ms pass);
 *               every abort_every-th one closes at an earlier handshake
 *               state instead, the states taken in turn.
 *   IDLE_PING   every kept client sends a Ping and must get its Pong.
 *   IDLE_HOLD   as IDLE_OPEN, then each client sends the start of a
 *               SendPacket: a header declaring frame_len bytes, a random
 *               destination key and send_bytes of the packet, and stops
 *               there (the socket kept, with the time the bytes left).
 *   IDLE_WATCH  wait (at most ms after the last IDLE_HOLD tail left; 0: look
 *               once) until the relay has closed every kept socket, reading
 *               and dropping whatever it sends.
 * IDLE_CYCLE, IDLE_OPEN and IDLE_HOLD start at most one handshake per gap_ms
 * (when not 0), from src_ip4 (when not 0).
 */
int
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

/* Sockets kept after the handshake (IDLE_OPEN, IDLE_HOLD), each with the
 * time its last bytes left (IDLE_HOLD) or its handshake ended. */
struct idle_held {
	int *fds;			/* [IDLE_MAX_CLIENTS]; -1: closed */
	int64_t *t;
	uint8_t (*sk)[32];		/* each client's key pair (IDLE_STORM) */
	uint8_t (*pk)[32];
	long n;
};

/* A source address for src_spread clients: 127.0.0.0/8 holds 2^24 of them,
 * each a source of its own for the relay's per-source handshake budget. */
static const char *
spread_addr(uint32_t ip4)
{
	static char buf[INET_ADDRSTRLEN];
	struct in_addr ia;

	ia.s_addr = htonl(0x7f000000u | (ip4 & 0x00ffffffu));
	return inet_ntop(AF_INET, &ia, buf, sizeof(buf));
}

/* Packet bytes an IDLE_HOLD tail carries at most: with the frame prefix and
 * a record's overhead per 16 KiB it fits an empty wbuf (WBUF_BYTES). */
#define HOLD_SEND_MAX 49152

/* IDLE_HOLD: the start of a SendPacket that declares ic->frame_len bytes
 * (key included), with ic->send_bytes of the packet after the key. */
static int
hold_send(struct conn *c, const struct idle_cmd *ic)
{
	static uint8_t tail[FRAME_PREFIX_BYTES + HOLD_SEND_MAX];
	size_t n = ic->send_bytes;

	if (n > HOLD_SEND_MAX)
		n = HOLD_SEND_MAX;
	tail[0] = FT_SEND_PACKET;
	put_be32(tail + 1, ic->frame_len);
	dc_random(tail + FRAME_HDR_BYTES, KEY_BYTES);
	memset(tail + FRAME_PREFIX_BYTES, 0x5a, n);
	return conn_write(c, tail, FRAME_PREFIX_BYTES + n);
}

/* The handshake commands.  Connections start in slot[] (at most `inflight`
 * at once) and, finished, move to kept[] or held or are closed. */
static void
idle_open(const struct idle_cmd *ic, struct idle_reply *rp, struct conn *slot,
    struct conn *kept, long *nkept, struct idle_held *held)
{
	int64_t now, t_last = 0, deadline = now_ns() + (int64_t)(ic->ms > 0 ?
	    ic->ms : HS_TOTAL_MS) * 1000000;
	int inflight = ic->inflight > 0 && ic->inflight <= HS_INFLIGHT ?
	    (int)ic->inflight : HS_INFLIGHT_CHILD;
	long *nheld = ic->op == IDLE_OPEN || ic->op == IDLE_HOLD ? &held->n :
	    ic->op == IDLE_KEEP ? nkept : NULL;
	uint32_t started = 0;
	int i, busy = 0;

	B.hs_pending = B.hs_failed = 0;
	B.first_fail[0] = '\0';
	while ((started < ic->n || busy > 0) && (now = now_ns()) < deadline) {
		for (i = 0; i < inflight; i++) {
			struct conn *c = &slot[i];
			if (c->dc != NULL || started >= ic->n || (nheld != NULL &&
			    *nheld + busy >= IDLE_MAX_CLIENTS) || (ic->gap_ms > 0 &&
			    started > 0 && now - t_last < (int64_t)ic->gap_ms *
			    1000000))
				continue;
			started++;
			t_last = now;
			if (ic->src_spread)
				conn_src_addr = spread_addr(ic->src_ip4 +
				    started - 1);
			if (conn_begin(c, &idle_pair, 'I') < 0) {
				rp->failed++;
				continue;
			}
			c->t_mark = now;
			c->stop_at = HS_DONE;
			if (ic->op == IDLE_CYCLE && ic->abort_every > 0 &&
			    started % ic->abort_every == 0)
				c->stop_at = HS_TLS + (int)(started /
				    ic->abort_every % (HS_DONE - HS_TLS));
			busy++;
		}
		loop_once(10);
		now = now_ns();
		for (i = 0; i < inflight; i++) {
			struct conn *c = &slot[i];
			if (c->dc == NULL)
				continue;
			if (c->dead) {
				if (rp->failed++ == 0 && c->tls)
					rp->first_tls_err = (uint32_t)
					    br_ssl_engine_last_error(&c->dc->sc.eng);
				conn_close(c);
				busy--;
				continue;
			}
			if (c->hs < c->stop_at)
				continue;
			if (ic->op == IDLE_HOLD && !c->tail_sent) {
				/* The handshake is done: the tail next, and
				 * the socket kept once it has gone out. */
				if (hold_send(c, ic) == 0)
					c->tail_sent = 1;
				if ((now - c->t_mark) / 1000000 > rp->max_ms)
					rp->max_ms = (uint32_t)((now - c->t_mark) /
					    1000000);
				continue;
			}
			if (ic->op == IDLE_HOLD && (c->woff < c->wlen ||
			    (br_ssl_engine_current_state(&c->dc->sc.eng) &
			    BR_SSL_SENDREC)))
				continue;
			if (c->stop_at < HS_DONE)
				rp->aborted++;
			else
				rp->ok++;
			if (ic->op != IDLE_HOLD && (now - c->t_mark) / 1000000 >
			    rp->max_ms)
				rp->max_ms = (uint32_t)((now - c->t_mark) / 1000000);
			if (ic->op == IDLE_OPEN || ic->op == IDLE_HOLD) {
				held->t[held->n] = now;
				memcpy(held->sk[held->n], c->dc->sk, 32);
				memcpy(held->pk[held->n], c->dc->pk, 32);
				held->fds[held->n++] = conn_detach(c);
			} else if (ic->op == IDLE_KEEP) {
				conn_move(&kept[(*nkept)++], c);
			} else {
				conn_close(c);
			}
			busy--;
		}
	}
	/* Out of time: what is still handshaking is closed; for a count it
	 * failed, for a time-bounded cycle run it is just the end. */
	rp->unfinished = (uint32_t)busy;
	for (i = 0; i < inflight; i++)
		conn_close(&slot[i]);
	if (ic->op != IDLE_CYCLE || ic->ms == 0)
		rp->failed += ic->n - rp->ok - rp->aborted - rp->failed;
	snprintf(rp->why, sizeof(rp->why), "%s", B.first_fail);
}

/* IDLE_WATCH: read the kept sockets (and drop what arrives) until the relay
 * has closed them all, or ms after the last one's tail left. */
static void
idle_watch(const struct idle_cmd *ic, struct idle_reply *rp,
    struct idle_held *held)
{
	static uint8_t sink[16384];
	struct pollfd *pf = calloc((size_t)held->n + 1, sizeof(*pf));
	long *at = calloc((size_t)held->n + 1, sizeof(*at));
	int64_t last = 0, deadline;
	long i, k, open;

	if (pf == NULL || at == NULL) {
		free(pf);
		free(at);
		rp->failed = (uint32_t)held->n;
		return;
	}
	for (i = 0; i < held->n; i++)
		if (held->t[i] > last)
			last = held->t[i];
	deadline = last + (int64_t)ic->ms * 1000000;
	do {
		for (i = k = 0; i < held->n; i++) {
			if (held->fds[i] < 0)
				continue;
			pf[k].fd = held->fds[i];
			pf[k].events = POLLIN;
			pf[k].revents = 0;
			at[k++] = i;
		}
		open = k;
		if (k == 0 || poll(pf, (nfds_t)k, ic->ms > 0 ? 20 : 0) <= 0)
			continue;
		for (i = 0; i < k; i++) {
			ssize_t r;
			long j = at[i];
			if (pf[i].revents == 0)
				continue;
			while ((r = recv(pf[i].fd, sink, sizeof(sink),
			    MSG_DONTWAIT)) > 0)
				;
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			/* EOF or reset: the relay closed it. */
			if ((now_ns() - held->t[j]) / 1000000 > rp->max_ms)
				rp->max_ms = (uint32_t)((now_ns() - held->t[j]) /
				    1000000);
			close(held->fds[j]);
			held->fds[j] = -1;
			rp->ok++;
			open--;
		}
	} while (open > 0 && now_ns() < deadline);
	rp->failed = (uint32_t)open;
	free(pf);
	free(at);
}

/* IDLE_PING: a Ping from every kept client, PING_BATCH per round (the flush
 * list holds 2 * MAX_PAIRS), then wait for the Pongs. */
static void
idle_ping(const struct idle_cmd *ic, struct idle_reply *rp, struct conn *kept,
    long nkept)
{
	int64_t deadline = now_ns() + (int64_t)(ic->ms > 0 ? ic->ms :
	    HS_TOTAL_MS) * 1000000;
	long i, next = 0, live = 0;

	B.pongs = 0;
	while (now_ns() < deadline) {
		int k;
		for (k = 0; k < PING_BATCH && next < nkept; next++) {
			struct conn *c = &kept[next];
			if (c->dead || c->dc == NULL)
				continue;
			live++;
			if (conn_ping(c, (uint64_t)getpid() << 32 | (uint64_t)next)
			    == 0)
				k++;
		}
		loop_once(next < nkept ? 0 : 10);
		if (next >= nkept && B.pongs >= (uint64_t)live)
			break;
	}
	for (i = 0; i < nkept; i++) {
		if (kept[i].ping_state == 2)
			rp->ok++;
		else
			rp->failed++;
	}
}

/*
 * IDLE_STORM: every held client (IDLE_OPEN) drops at once, as a relay
 * restart or a network blip looks from the clients' side, and reconnects
 * with its own key: all sockets closed first, then every handshake started
 * together (a real storm has no one pacing it).  A client the relay closes
 * before its ServerInfo starts again at once, as many times as it takes
 * within ms; the reply says how often (retries, max_retries) and when each
 * client was back (p50, p99, max: ms from the drop).
 */
static void
idle_storm(const struct idle_cmd *ic, struct idle_reply *rp,
    struct idle_held *held)
{
	long n = held->n, i, left;
	size_t m = (size_t)(n > 0 ? n : 1);
	struct conn *cs = calloc(m, sizeof(*cs));
	uint32_t *tries = calloc(m, sizeof(*tries));
	uint32_t *back = calloc(m, sizeof(*back));
	int64_t t0, deadline;

	if (cs == NULL || tries == NULL || back == NULL) {
		rp->failed = (uint32_t)n;
		snprintf(rp->why, sizeof(rp->why), "out of memory");
		goto out;
	}
	B.hs_pending = B.hs_failed = 0;
	B.first_fail[0] = '\0';
	t0 = now_ns();
	deadline = t0 + (int64_t)(ic->ms > 0 ? ic->ms : HS_TOTAL_MS) * 1000000;
	for (i = 0; i < n; i++) {
		if (held->fds[i] >= 0)
			close(held->fds[i]);
		held->fds[i] = -1;
		cs[i].fd = -1;
	}
	left = n;
	while (left > 0 && now_ns() < deadline) {
		for (i = 0; i < n; i++) {
			struct conn *c = &cs[i];

			if (c->dc != NULL || back[i] != 0)
				continue;
			if (ic->src_spread)
				conn_src_addr = spread_addr(ic->src_ip4 +
				    (uint32_t)i);
			conn_sk = held->sk[i];
			conn_pk = held->pk[i];
			if (conn_begin(c, &idle_pair, 'I') == 0)
				c->stop_at = HS_DONE;
			else
				tries[i]++;
			conn_sk = conn_pk = NULL;
		}
		loop_once(10);
		for (i = 0; i < n; i++) {
			struct conn *c = &cs[i];

			if (c->dc == NULL)
				continue;
			if (c->dead) {
				conn_close(c);
				tries[i]++;
				continue;
			}
			if (c->hs < HS_DONE)
				continue;
			back[i] = (uint32_t)((now_ns() - t0) / 1000000) + 1;
			held->fds[i] = conn_detach(c);
			left--;
		}
	}
	for (i = 0; i < n; i++) {
		conn_close(&cs[i]);
		rp->retries += tries[i];
		if (tries[i] > rp->max_retries)
			rp->max_retries = tries[i];
		if (back[i] == 0)
			back[i] = UINT32_MAX;
	}
	rp->ok = (uint32_t)(n - left);
	rp->failed = (uint32_t)left;
	qsort(back, m, sizeof(*back), cmp_u32);
	if (n > 0) {
		rp->p50_ms = back[n / 2];
		rp->p99_ms = back[n * 99 / 100];
		rp->max_ms = back[n - 1];
	}
	snprintf(rp->why, sizeof(rp->why), "%s", B.first_fail);
out:
	free(cs);
	free(tries);
	free(back);
}

static void
idle_child_main(int cmd, int rep, int port)
{
	struct conn *slot = calloc(HS_INFLIGHT, sizeof(struct conn));
	struct conn *kept = calloc(IDLE_MAX_CLIENTS, sizeof(struct conn));
	struct idle_held held;
	long nkept = 0;

	signal(SIGALRM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	alarm(0);
	B.epfd = epoll_create1(0);
	held.fds = malloc(sizeof(int) * IDLE_MAX_CLIENTS);
	held.t = malloc(sizeof(int64_t) * IDLE_MAX_CLIENTS);
	held.sk = malloc(sizeof(*held.sk) * IDLE_MAX_CLIENTS);
	held.pk = malloc(sizeof(*held.pk) * IDLE_MAX_CLIENTS);
	held.n = 0;
	if (slot == NULL || kept == NULL || held.fds == NULL || held.t == NULL ||
	    held.sk == NULL || held.pk == NULL || B.epfd < 0)
		_exit(1);
	srv.port = port;
	srv.pid = -1;
	B.tls = 1;
	B.generate = 0;
	B.nactive = 0;
	B.tick = NULL;
	idle_pair.idx = -1;
	for (;;) {
		struct idle_cmd ic;
		struct idle_reply rp;
		char src[INET_ADDRSTRLEN];
		struct in_addr ia;

		if (read_full_fd(cmd, &ic, sizeof(ic), 3600 * 1000) < 0)
			_exit(0);
		memset(&rp, 0, sizeof(rp));
		/* Handshakes the relay may refuse on purpose (cycles, holders,
		 * clients from a second address) are counted, not anomalies. */
		B.quiet_hs = ic.op == IDLE_CYCLE || ic.op == IDLE_HOLD ||
		    ic.op == IDLE_STORM;
		ia.s_addr = htonl(ic.src_ip4);
		conn_src_addr = ic.src_ip4 != 0 && inet_ntop(AF_INET, &ia, src,
		    sizeof(src)) != NULL ? src : NULL;
		if (ic.op == IDLE_PING)
			idle_ping(&ic, &rp, kept, nkept);
		else if (ic.op == IDLE_WATCH)
			idle_watch(&ic, &rp, &held);
		else if (ic.op == IDLE_STORM)
			idle_storm(&ic, &rp, &held);
		else
			idle_open(&ic, &rp, slot, kept, &nkept, &held);
		conn_src_addr = NULL;
		if (write(rep, &rp, sizeof(rp)) != (ssize_t)sizeof(rp))
			_exit(1);
	}
}

int
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

/* Give every child the same command (they work in parallel). 0 or -1. */
int
idle_send(struct idle_child *ch, int nch, const struct idle_cmd *ic)
{
	int i;

	for (i = 0; i < nch; i++)
		if (write(ch[i].cmd, ic, sizeof(*ic)) != (ssize_t)sizeof(*ic))
			return -1;
	return 0;
}

/* Their replies, added up in *sum (per child in per[] when not NULL); clients
 * kept count in ch[i].open.  0, or -1 if a child did not answer in time. */
int
idle_collect(struct idle_child *ch, int nch, const struct idle_cmd *ic,
    int timeout_ms, struct idle_reply *sum)
{
	int i;

	memset(sum, 0, sizeof(*sum));
	for (i = 0; i < nch; i++) {
		struct idle_reply rp;
		if (read_full_fd(ch[i].rep, &rp, sizeof(rp), timeout_ms) < 0)
			return -1;
		if (ic->op == IDLE_OPEN || ic->op == IDLE_KEEP ||
		    ic->op == IDLE_HOLD)
			ch[i].open += rp.ok;
		if (ic->op == IDLE_WATCH)
			ch[i].open -= rp.ok;
		if (sum->first_tls_err == 0)
			sum->first_tls_err = rp.first_tls_err;
		if (sum->why[0] == '\0')
			memcpy(sum->why, rp.why, sizeof(sum->why));
		if (rp.max_ms > sum->max_ms)
			sum->max_ms = rp.max_ms;
		sum->ok += rp.ok;
		sum->failed += rp.failed;
		sum->aborted += rp.aborted;
		sum->unfinished += rp.unfinished;
		/* IDLE_STORM: the children are alike, so the worst child's
		 * quantiles stand for all of them. */
		sum->retries += rp.retries;
		if (rp.max_retries > sum->max_retries)
			sum->max_retries = rp.max_retries;
		if (rp.p50_ms > sum->p50_ms)
			sum->p50_ms = rp.p50_ms;
		if (rp.p99_ms > sum->p99_ms)
			sum->p99_ms = rp.p99_ms;
	}
	return 0;
}

/* Open `each` more clients (sockets only) in every child, in parallel.
 * Total failures, or -1. */
long
idle_grow(struct idle_child *ch, int nch, uint32_t each)
{
	struct idle_cmd ic;
	struct idle_reply sum;

	memset(&ic, 0, sizeof(ic));
	ic.op = IDLE_OPEN;
	ic.n = each;
	if (idle_send(ch, nch, &ic) < 0 ||
	    idle_collect(ch, nch, &ic, 120000, &sum) < 0)
		return -1;
	if (sum.failed > 0)
		anomaly("idle clients: %lu of %lu handshakes failed (first TLS"
		    " error %lu)", (unsigned long)sum.failed,
		    (unsigned long)each * (unsigned long)nch,
		    (unsigned long)sum.first_tls_err);
	return (long)sum.failed;
}

/*
 * A reconnect storm in three steps.  storm_open: `each` clients per child
 * (from distinct 127/8 sources when spread, child i's from 127.(i+1).0.0
 * on, else all from 127.0.0.1).  storm_begin: all of them drop and
 * reconnect at once (IDLE_STORM), within ms; the caller may run traffic
 * meanwhile.  storm_end: the children's replies, the wall time from the
 * drop until every client was back (or the bound) and the CPU over it.
 * Each 0, or -1.
 */
static int
storm_send(struct idle_child *ch, int nch, struct idle_cmd *ic, int spread)
{
	int i;

	for (i = 0; i < nch; i++) {
		ic->src_ip4 = spread ? (uint32_t)(i + 1) << 16 : 0;
		if (write(ch[i].cmd, ic, sizeof(*ic)) != (ssize_t)sizeof(*ic))
			return -1;
	}
	return 0;
}

int
storm_open(struct idle_child *ch, int nch, uint32_t each, int spread,
    struct storm_result *r)
{
	struct idle_cmd ic;

	memset(r, 0, sizeof(*r));
	memset(&ic, 0, sizeof(ic));
	ic.op = IDLE_OPEN;
	ic.n = each;
	ic.src_spread = (uint32_t)(spread != 0);
	if (storm_send(ch, nch, &ic, spread) < 0 ||
	    idle_collect(ch, nch, &ic, HS_TOTAL_MS + 10000, &r->open) < 0)
		return -1;
	sleep_ms(SETTLE_MS);
	return 0;
}

int
storm_begin(struct idle_child *ch, int nch, int spread, int ms,
    struct storm_result *r)
{
	struct idle_cmd ic;
	int i;

	memset(&ic, 0, sizeof(ic));
	ic.op = IDLE_STORM;
	ic.ms = (uint32_t)ms;
	ic.src_spread = (uint32_t)(spread != 0);
	r->ms = ms;
	r->t0 = now_ns();
	r->relay_cpu_ns = -proc_cpu_ns(srv.pid);
	for (i = 0, r->clients_cpu_ns = 0; i < nch; i++)
		r->clients_cpu_ns -= proc_cpu_ns(ch[i].pid);
	return storm_send(ch, nch, &ic, spread);
}

int
storm_end(struct idle_child *ch, int nch, struct storm_result *r)
{
	struct idle_cmd ic;
	int i;

	memset(&ic, 0, sizeof(ic));
	ic.op = IDLE_STORM;
	if (idle_collect(ch, nch, &ic, r->ms + 10000, &r->storm) < 0)
		return -1;
	r->secs = (double)(now_ns() - r->t0) / 1e9;
	r->relay_cpu_ns += proc_cpu_ns(srv.pid);
	for (i = 0; i < nch; i++)
		r->clients_cpu_ns += proc_cpu_ns(ch[i].pid);
	return 0;
}

/* EOF on the command pipes: the children exit (the kernel closes their
 * sockets); one that does not within STOP_MS is killed. */
void
idle_stop(struct idle_child *ch, int n)
{
	int i;

	for (i = 0; i < n; i++)
		close(ch[i].cmd);
	for (i = 0; i < n; i++) {
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
}

long
idle_total(const struct idle_child *ch)
{
	long n = 0;
	int i;

	for (i = 0; i < IDLE_CHILDREN; i++)
		n += ch[i].open;
	return n;
}

/* ---- checks -------------------------------------------------------------- */

/* A program's start: open files raised (as root the hard limit too, to
 * 65,536: the relay holds 10,000 clients and more), the watchdog and the
 * signals that kill the relay and the children, the scratch directory
 * /tmp/derp-NAME.XXXXXX, the packet pattern, the loop's tables.  0 or -1. */
int
loadgen_init(const char *name, unsigned watchdog_s)
{
	struct rlimit rl;
	struct sigaction sa;
	uint32_t x = 0x9e3779b9u;
	int i;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		struct rlimit want = rl;
		if (geteuid() == 0 && want.rlim_max < 65536)
			want.rlim_max = 65536;
		want.rlim_cur = want.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &want) < 0) {
			rl.rlim_cur = rl.rlim_max;
			(void)setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fatal_signal;
	sigaction(SIGALRM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	alarm(watchdog_s);
	snprintf(scratch, sizeof(scratch), "/tmp/derp-%s.XXXXXX", name);
	if (mkdtemp(scratch) == NULL) {
		fprintf(stderr, "%s: mkdtemp: %s\n", name, strerror(errno));
		return -1;
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
		fprintf(stderr, "%s: setup: %s\n", name, strerror(errno));
		return -1;
	}
	return 0;
}

int npass, nfail;

void
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

/* Remove a directory we made (two levels: logs, key, certs/). */
void
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
