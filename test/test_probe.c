/*
 * test_probe.c -- `derp probe` (probe.c) against real ./derp relays on
 * loopback: every step passes where it should, and where a relay is
 * missing a part the right step fails with a clear line.
 *
 * Usage: test_probe DERP_BINARY SCRATCH_DIR
 *   DERP_BINARY  the relay (with the probe subcommand), e.g. ./derp
 *   SCRATCH_DIR  created if missing; holds each relay's directory (key
 *                file, certificate and key), the mesh key files, the test
 *                CA (openssl) and each relay's log (relay-A.log ...)
 *
 * The relays, each `derp -a ADDR -c KEYFILE -stun-port SPORT ...`:
 *   A  plain HTTP on 127.0.0.1, STUN on, -mesh-psk-file (mesh_watch)
 *   B  TLS, -certmode manual -hostname 127.0.0.1, the self-signed IP
 *      certificate this test makes (cert.c) and so knows the pin of, and
 *      a port-80 listener on -http-port HPORT
 *   C  TLS as B but with a leaf issued by a test CA (openssl writes the
 *      CA: cert.c makes no CA certificate); skipped without openssl
 *   D  plain HTTP with -stun=false
 *   E  plain HTTP on [::1] (stun6); skipped where ::1 cannot be bound
 * and a dead port (one the kernel just gave and nobody listens on), and
 * two hostile fake relays this test forks on 127.0.0.1 (fake_start):
 *   flood  a real DERP handshake (ServerKey, ServerInfo sealed to the
 *          probe's key), then KeepAlive frames without end: packets and
 *          ping must fail on their 5 s deadlines, not hang
 *   c1     every answer's head carries UTF-8 C2 9B (U+009B, CSI): the
 *          probe's text lines must show it as \xc2\x9b, never the bytes
 *
 * The probe runs as a child process (DERP_BINARY probe ARGS), its stdout
 * captured; the checks compare its exit status and exact lines (the
 * milliseconds of ok lines aside).
 *
 * Output: one line per check, "ok NAME", "FAIL NAME: DETAIL" or "skip NAME:
 * WHY", lines starting "# " with context, then "N passed, N failed, N
 * skipped".  The count of checks never changes (run.sh's floor): a group
 * that cannot run fails or skips every check it holds.
 *
 * Under an emulator (TEST_EMULATOR set, as cross.sh runs the suite), the
 * dead port's reason text is not judged (qemu-user leaves SO_ERROR's errno
 * untranslated).
 *
 * Nothing waits without a bound: every probe run has PROBE_RUN_MS, relay
 * starts START_MS, and alarm() is a watchdog that kills every relay.  Only
 * 127.0.0.1 and ::1 are bound or contacted.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "../cert.h"
#include "../nacl.h"

/* ---- limits ------------------------------------------------------------- */

/* The run: about 30 s (one probe waits out its 5 s TLS step against a
 * plain relay, one its packets and ping steps against the flood); the
 * watchdog leaves room for a sanitizer build. */
#define WATCHDOG_S 240
#define START_MS 10000		/* a relay up: key file, certificate */
#define STOP_MS 3000		/* SIGTERM to exit */
/* One probe run: fourteen steps of at most 5 s each could take 70 s; the
 * runs here take at most one 5 s wait. */
#define PROBE_RUN_MS 60000
#define OUT_MAX 16384		/* a probe's stdout: 14 lines, or the JSON */
#define LOG_MAX (256 * 1024)
#define RELAYS 5
#define ARGS_MAX 24

/* ---- state -------------------------------------------------------------- */

struct relay {
	char name;
	const char *ip;			/* 127.0.0.1 or ::1 */
	int port, stun_port, http_port;	/* http_port: -1 none */
	int tls;			/* -certmode manual */
	int stun_off;
	int mesh;			/* -mesh-psk-file */
	char dir[400], key_path[450], log_path[450];
	char pin_hex[65];		/* B: the self-signed leaf's SHA-256 */
	int up;
	volatile pid_t pid;
};

static const char *derp_path, *scratch;
static struct relay relays[RELAYS];
static char mesh_path[450], mesh2_path[450], ca_path[480];
static int have_ca;

/* ---- watchdog and processes --------------------------------------------- */

static volatile pid_t fake_pid = -1;	/* a fake relay's process group */

static void
kill_relays_now(void)
{
	int i;

	if (fake_pid > 0)
		kill(-fake_pid, SIGKILL);

	for (i = 0; i < RELAYS; i++)
		if (relays[i].pid > 0)
			kill(relays[i].pid, SIGKILL);
}

static void
on_alarm(int sig)
{
	static const char msg[] = "FAIL watchdog: the run exceeded its time"
	    " budget; relays killed\n";

	(void)sig;
	kill_relays_now();
	if (write(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(2);
	_exit(1);
}

/* Can a socket be bound to ::1 here? */
static int
have_ipv6_loopback(void)
{
	return dc_free_port("::1", SOCK_STREAM) > 0;
}

static void
relay_argv(struct relay *r, char **argv)
{
	static char addr[RELAYS][64], sport[RELAYS][8], hport[RELAYS][8];
	int k = (int)(r - relays);
	size_t i = 0;

	snprintf(addr[k], sizeof(addr[k]), strchr(r->ip, ':') ? "[%s]:%d" :
	    "%s:%d", r->ip, r->port);
	snprintf(sport[k], sizeof(sport[k]), "%d", r->stun_port);
	snprintf(hport[k], sizeof(hport[k]), "%d", r->http_port);
	argv[i++] = (char *)derp_path;
	if (geteuid() == 0)
		argv[i++] = "-allow-root";
	argv[i++] = "-a";
	argv[i++] = addr[k];
	argv[i++] = "-c";
	argv[i++] = r->key_path;
	argv[i++] = "-http-port";
	argv[i++] = hport[k];
	argv[i++] = "-stun-port";
	argv[i++] = sport[k];
	if (r->stun_off)
		argv[i++] = "-stun=false";
	if (r->tls) {
		argv[i++] = "-certmode";
		argv[i++] = "manual";
		argv[i++] = "-hostname";
		argv[i++] = (char *)r->ip;
		argv[i++] = "-certdir";
		argv[i++] = r->dir;
	}
	if (r->mesh) {
		argv[i++] = "-mesh-psk-file";
		argv[i++] = mesh_path;
	}
	argv[i] = NULL;
}

/* Start r on fresh ports (three tries: a port may be taken meanwhile).
 * NULL, or why not. */
static const char *
relay_start(struct relay *r)
{
	static char why[200];
	int tries;

	for (tries = 0; tries < 3; tries++) {
		char *argv[ARGS_MAX];
		int ports[2], rd;

		r->port = dc_free_port(r->ip, SOCK_STREAM);
		r->stun_port = dc_free_port(r->ip, SOCK_DGRAM);
		if (r->http_port != -1)
			r->http_port = dc_free_port(r->ip, SOCK_STREAM);
		if (r->port < 0 || r->stun_port < 0 || r->http_port == 0 ||
		    r->http_port < -1) {
			snprintf(why, sizeof(why), "no free port on %s", r->ip);
			return why;
		}
		relay_argv(r, argv);
		r->pid = dc_spawn_logged(argv, r->log_path, NULL, NULL);
		if (r->pid < 0) {
			snprintf(why, sizeof(why), "fork: %s", strerror(errno));
			return why;
		}
		/* Its port, and its port-80 listener when it has one. */
		ports[0] = r->port;
		ports[1] = r->http_port;
		rd = dc_wait_serving(r->pid, r->ip, ports, r->http_port > 0 ?
		    2 : 1, START_MS, 50, NULL);
		if (rd == 1) {
			r->up = 1;
			return NULL;
		}
		if (rd < 0)
			dc_kill_reap(r->pid, NULL);
		r->pid = -1;
	}
	dc_show_log_tail(r->log_path, LOG_MAX, 1500);
	snprintf(why, sizeof(why), "relay %c did not start (see %s)", r->name,
	    r->log_path);
	return why;
}

static void
relay_stop(struct relay *r)
{
	if (r->pid <= 0)
		return;
	dc_stop_child(r->pid, SIGTERM, STOP_MS, NULL);
	r->pid = -1;
}

/* ---- running the probe -------------------------------------------------- */

struct run {
	int status;			/* exit status; -1 killed or not run */
	char out[OUT_MAX];		/* stdout, NUL-terminated */
	char err[1024];			/* stderr's start */
};

/* Read what fd has into buf (len so far, cap) until EOF or deadline:
 * 0 at EOF, -1 otherwise. */
static int
drain_fd(int fd, char *buf, size_t *len, size_t cap, int64_t deadline)
{
	for (;;) {
		char tmp[4096];
		ssize_t n;

		if (dc_wait_fd(fd, POLLIN, deadline) != 1)
			return -1;
		n = read(fd, tmp, sizeof(tmp));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == 0 ? 0 : -1;
		if ((size_t)n > cap - 1 - *len)
			n = (ssize_t)(cap - 1 - *len);
		memcpy(buf + *len, tmp, (size_t)n);
		*len += (size_t)n;
		buf[*len] = '\0';
	}
}

/*
 * DERP_BINARY probe ARGS... (a NULL-terminated list), its stdout in
 * run->out and the start of its stderr in run->err.  Bounded by
 * PROBE_RUN_MS (then killed: status -1).
 */
static void
run_probe(struct run *run, ...)
{
	char *argv[ARGS_MAX];
	char errpath[500];
	int fds[2], efd;
	size_t i = 0, len = 0;
	int64_t deadline = dc_now_ms() + PROBE_RUN_MS;
	va_list ap;
	pid_t pid;
	int st;
	char *e;

	run->status = -1;
	run->out[0] = run->err[0] = '\0';
	argv[i++] = (char *)derp_path;
	argv[i++] = "probe";
	va_start(ap, run);
	while (i < ARGS_MAX - 1 && (argv[i] = va_arg(ap, char *)) != NULL)
		i++;
	va_end(ap);
	argv[i] = NULL;
	snprintf(errpath, sizeof(errpath), "%s/probe.stderr", scratch);
	efd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (efd < 0 || pipe(fds) < 0) {
		snprintf(run->err, sizeof(run->err), "pipe or %s: %s", errpath,
		    strerror(errno));
		if (efd >= 0)
			close(efd);
		return;
	}
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		close(efd);
		return;
	}
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		dup2(efd, STDERR_FILENO);
		close(fds[0]);
		close(fds[1]);
		close(efd);
		execv(argv[0], argv);
		_exit(127);
	}
	close(fds[1]);
	close(efd);
	if (drain_fd(fds[0], run->out, &len, sizeof(run->out), deadline) < 0)
		kill(pid, SIGKILL);
	close(fds[0]);
	for (;;) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			break;
		if (dc_left_ms(deadline) == 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			break;
		}
		dc_sleep_ms(10);
	}
	if (WIFEXITED(st))
		run->status = WEXITSTATUS(st);
	e = dc_read_text(errpath, sizeof(run->err) - 1, &len);
	if (e != NULL) {
		memcpy(run->err, e, len);
		run->err[len] = '\0';
		free(e);
	}
}

/* The line of out that starts with prefix, copied into line (without its
 * newline); 1, or 0 when none. */
static int
find_line(const char *out, const char *prefix, char *line, size_t cap)
{
	const char *s = out;
	size_t pl = strlen(prefix);

	while (*s != '\0') {
		size_t n = strcspn(s, "\n");

		if (n >= pl && strncmp(s, prefix, pl) == 0) {
			if (n >= cap)
				n = cap - 1;
			memcpy(line, s, n);
			line[n] = '\0';
			return 1;
		}
		s += n;
		if (*s == '\n')
			s++;
	}
	return 0;
}

/* The ok line of step name without its " (N ms)" tail, in line. */
static int
ok_line(const char *out, const char *name, char *line, size_t cap)
{
	char prefix[64];
	char *t;

	snprintf(prefix, sizeof(prefix), "ok   %s: ", name);
	if (!find_line(out, prefix, line, cap))
		return 0;
	t = strrchr(line, '(');
	if (t != NULL && t > line && t[-1] == ' ' && strstr(t, " ms)") != NULL)
		t[-1] = '\0';
	return 1;
}

/* Why the run's output is not as wanted: the exit status, each of the
 * steps in oks with an ok line, each "NAME: TEXT" of exact (a skip or
 * FAIL line, "" when none) present word for word.  NULL when all hold. */
static const char *
expect(const struct run *run, int status, const char *const *oks,
    const char *const *exact)
{
	static char why[2048];
	char line[1024];
	size_t i;

	if (run->status != status) {
		snprintf(why, sizeof(why), "exit status %d, wanted %d; stderr"
		    " \"%.200s\"; stdout:\n%.1500s", run->status, status, run->err,
		    run->out);
		return why;
	}
	for (i = 0; oks != NULL && oks[i] != NULL; i++) {
		if (!ok_line(run->out, oks[i], line, sizeof(line))) {
			snprintf(why, sizeof(why), "no ok line for %s; stdout:"
			    "\n%.1500s", oks[i], run->out);
			return why;
		}
	}
	for (i = 0; exact != NULL && exact[i] != NULL; i++) {
		const char *s = run->out;
		size_t n = strlen(exact[i]);
		int found = 0;

		while (!found && (s = strstr(s, exact[i])) != NULL) {
			found = (s == run->out || s[-1] == '\n') &&
			    (s[n] == '\n' || s[n] == '\0');
			s++;
		}
		if (!found) {
			snprintf(why, sizeof(why), "no line \"%.300s\"; stdout:"
			    "\n%.1500s", exact[i], run->out);
			return why;
		}
	}
	return NULL;
}

/* ---- a small JSON checker (-json) --------------------------------------- */

static const char *jp;		/* the parse position */

static int json_value(int depth);

static void
json_ws(void)
{
	while (*jp == ' ' || *jp == '\t' || *jp == '\n' || *jp == '\r')
		jp++;
}

static int
json_str(void)
{
	if (*jp != '"')
		return -1;
	for (jp++; *jp != '"'; jp++) {
		if ((unsigned char)*jp < 0x20)
			return -1;
		if (*jp == '\\') {
			jp++;
			if (*jp == 'u') {
				int k;

				for (k = 1; k <= 4; k++)
					if (strchr("0123456789abcdefABCDEF",
					    jp[k]) == NULL || jp[k] == '\0')
						return -1;
				jp += 4;
			} else if (*jp == '\0' || strchr("\"\\/bfnrt", *jp) ==
			    NULL) {
				return -1;
			}
		}
	}
	jp++;
	return 0;
}

static int
json_value(int depth)
{
	if (depth > 16)
		return -1;
	json_ws();
	if (*jp == '{' || *jp == '[') {
		char close = *jp == '{' ? '}' : ']';
		int obj = *jp == '{';

		jp++;
		json_ws();
		if (*jp == close) {
			jp++;
			return 0;
		}
		for (;;) {
			if (obj) {
				json_ws();
				if (json_str() < 0)
					return -1;
				json_ws();
				if (*jp++ != ':')
					return -1;
			}
			if (json_value(depth + 1) < 0)
				return -1;
			json_ws();
			if (*jp == ',') {
				jp++;
				continue;
			}
			if (*jp++ != close)
				return -1;
			return 0;
		}
	}
	if (*jp == '"')
		return json_str();
	if (strncmp(jp, "true", 4) == 0 || strncmp(jp, "null", 4) == 0) {
		jp += 4;
		return 0;
	}
	if (strncmp(jp, "false", 5) == 0) {
		jp += 5;
		return 0;
	}
	if (*jp == '-' || (*jp >= '0' && *jp <= '9')) {
		jp++;
		while (*jp >= '0' && *jp <= '9')
			jp++;
		return 0;
	}
	return -1;
}

/* NULL when out is one JSON object on one line with the probe's keys and
 * the fourteen steps in order, ok as wanted; else why. */
static const char *
json_check(const char *out, const char *url, int want_ok)
{
	static const char *const names[] = { "dns", "tcp", "tls", "home",
	    "generate_204", "port80", "derp_upgrade", "handshake", "client2",
	    "packets", "ping", "mesh_watch", "stun4", "stun6" };
	static char why[400];
	char head[300], key[64];
	const char *s;
	size_t i;

	jp = out;
	if (json_value(0) < 0) {
		snprintf(why, sizeof(why), "not valid JSON near byte %ld",
		    (long)(jp - out));
		return why;
	}
	json_ws();
	if (*jp != '\0')
		return "more than one JSON value";
	if (strchr(out, '\n') != strrchr(out, '\n'))
		return "more than one line";
	snprintf(head, sizeof(head), "{\"url\":\"%s\",\"ok\":%s,", url,
	    want_ok ? "true" : "false");
	if (strncmp(out, head, strlen(head)) != 0) {
		snprintf(why, sizeof(why), "does not start %s", head);
		return why;
	}
	if (strstr(out, "\"steps\":[{") == NULL)
		return "no \"steps\" array";
	s = out;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(key, sizeof(key), "{\"name\":\"%s\",\"status\":\"",
		    names[i]);
		s = strstr(s, key);
		if (s == NULL) {
			snprintf(why, sizeof(why), "step %s missing or out of"
			    " order", names[i]);
			return why;
		}
		if (strstr(s, "\"ok\":") == NULL ||
		    strstr(s, "\"skipped\":") == NULL ||
		    strstr(s, "\"ms\":") == NULL ||
		    strstr(s, "\"detail\":\"") == NULL)
			return "a step lacks ok, skipped, ms or detail";
	}
	return NULL;
}


/* ---- hostile fake relays ------------------------------------------------ */

enum { FAKE_FLOOD, FAKE_C1 };

/* Each fake process ends by its own alarm at the latest. */
#define FAKE_LIFE_S 40
#define FAKE_HEAD_MAX 4096
#define KEEPALIVES 819			/* 4095 bytes of 5-byte frames */

static int
fake_write(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
fake_read_full(int fd, uint8_t *buf, size_t n)
{
	while (n > 0) {
		ssize_t r = read(fd, buf, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		buf += r;
		n -= (size_t)r;
	}
	return 0;
}

/* One connection of a fake relay (in its own process, blocking: the
 * alarm bounds it). */
static void
fake_conn(int fd, int mode, const uint8_t sk[32], const uint8_t pk[32])
{
	static const char c1_home[] = "HTTP/1.1 200 OK\r\nContent-Type:"
	    " text/html\xc2\x9b[31m\r\nContent-Length: 0\r\nConnection:"
	    " close\r\n\r\n";
	static const char c1_other[] = "HTTP/1.1 500 Bad\xc2\x9b[31m\r\n"
	    "Content-Length: 0\r\nConnection: close\r\n\r\n";
	static const char ok200[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
	    "Connection: close\r\n\r\n";
	static const char up[] = "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: DERP\r\nConnection: Upgrade\r\n\r\n";
	static const uint8_t magic[8] = { 0x44, 0x45, 0x52, 0x50, 0xF0, 0x9F,
	    0x94, 0x91 };
	char head[FAKE_HEAD_MAX + 1];
	uint8_t f[5 + 4096], si[5 + 24 + 16 + 2], ka[5 * KEEPALIVES];
	size_t n = 0;
	uint32_t len;

	/* The request head, a byte at a time (nothing follows it yet). */
	while (n < FAKE_HEAD_MAX) {
		if (fake_read_full(fd, (uint8_t *)head + n, 1) < 0)
			return;
		n++;
		if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0)
			break;
	}
	head[n] = '\0';
	if (mode == FAKE_C1) {
		if (strncmp(head, "GET / ", 6) == 0)
			(void)fake_write(fd, c1_home, sizeof(c1_home) - 1);
		else
			(void)fake_write(fd, c1_other, sizeof(c1_other) - 1);
		return;
	}
	if (strncmp(head, "GET /derp ", 10) != 0) {
		(void)fake_write(fd, ok200, sizeof(ok200) - 1);
		return;
	}
	/* 101 and ServerKey. */
	memcpy(f, up, sizeof(up) - 1);
	n = sizeof(up) - 1;
	f[n] = 0x01;
	f[n + 1] = f[n + 2] = f[n + 3] = 0;
	f[n + 4] = 40;
	memcpy(f + n + 5, magic, 8);
	memcpy(f + n + 13, pk, 32);
	if (fake_write(fd, f, n + 45) < 0)
		return;
	/* ClientInfo: its first 32 bytes are the client's key. */
	if (fake_read_full(fd, f, 5) < 0 || f[0] != 0x02)
		return;
	len = (uint32_t)f[1] << 24 | (uint32_t)f[2] << 16 |
	    (uint32_t)f[3] << 8 | f[4];
	if (len < 32 || len > 4096 || fake_read_full(fd, f, len) < 0)
		return;
	/* ServerInfo: a nonce, then "{}" sealed to the client's key. */
	si[0] = 0x03;
	si[1] = si[2] = si[3] = 0;
	si[4] = 24 + 16 + 2;
	dc_random(si + 5, 24);
	if (nacl_box_seal(si + 5 + 24, (const uint8_t *)"{}", 2, si + 5, f,
	    sk) != 0 || fake_write(fd, si, sizeof(si)) < 0)
		return;
	/* KeepAlive (0x06, empty) until the probe goes (EPIPE: SIGPIPE is
	 * ignored) or the alarm. */
	memset(ka, 0, sizeof(ka));
	for (n = 0; n < KEEPALIVES; n++)
		ka[5 * n] = 0x06;
	while (fake_write(fd, ka, sizeof(ka)) == 0)
		;
}

/* A fake relay of mode on 127.0.0.1 in a process group of its own
 * (fake_pid; one connection a child): its port, or -1. */
static int
fake_start(int mode)
{
	struct sockaddr_in sin;
	socklen_t al = sizeof(sin);
	uint8_t sk[32], pk[32];
	int lfd, one = 1;
	pid_t pid;

	dc_random(sk, sizeof(sk));
	sk[0] &= 248;
	sk[31] = (uint8_t)((sk[31] & 127) | 64);
	nacl_x25519_base(pk, sk);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0)
		return -1;
	(void)setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(lfd, 16) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &al) < 0) {
		close(lfd);
		return -1;
	}
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		close(lfd);
		return -1;
	}
	if (pid == 0) {
		/* Not this test's watchdog (it would kill the relays): the
		 * default action, the process's end. */
		(void)setpgid(0, 0);
		signal(SIGALRM, SIG_DFL);
		signal(SIGCHLD, SIG_IGN);	/* no zombies */
		alarm(FAKE_LIFE_S);
		for (;;) {
			int fd = accept(lfd, NULL, NULL);

			if (fd < 0) {
				if (errno == EINTR || errno == ECONNABORTED)
					continue;
				_exit(1);
			}
			if (fork() == 0) {
				close(lfd);
				alarm(FAKE_LIFE_S);
				fake_conn(fd, mode, sk, pk);
				close(fd);
				_exit(0);
			}
			close(fd);
		}
	}
	(void)setpgid(pid, pid);
	fake_pid = pid;
	close(lfd);
	return ntohs(sin.sin_port);
}

/* The fake relay and its connections, gone. */
static void
fake_stop(void)
{
	pid_t pid = fake_pid;

	if (pid <= 0)
		return;
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	fake_pid = -1;
}

/* ---- setup -------------------------------------------------------------- */

static int
write_mesh_key(const char *path)
{
	uint8_t k[32];
	char hex[65];
	FILE *f;

	dc_random(k, sizeof(k));
	dc_tohex(k, sizeof(k), hex);
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "%s\n", hex);
	return fclose(f) == 0 ? 0 : -1;
}

/* The test CA (ca.crt) and a leaf from it for 127.0.0.1 and localhost,
 * written as relay C's 127.0.0.1.crt / .key.  openssl writes them: cert.c
 * makes no CA certificate (basicConstraints).  0, or -1. */
static int
make_ca(const char *cadir, const char *certdir)
{
	static const char cnf[] = "[req]\ndistinguished_name = dn\n[dn]\n"
	    "[ca]\nbasicConstraints = critical,CA:TRUE\n"
	    "keyUsage = critical,keyCertSign,cRLSign\n"
	    "subjectKeyIdentifier = hash\n"
	    "[leaf]\nbasicConstraints = critical,CA:FALSE\n"
	    "keyUsage = critical,digitalSignature\n"
	    "extendedKeyUsage = serverAuth\n"
	    "subjectAltName = IP:127.0.0.1,DNS:localhost\n";
	char cmd[4096], p[600];
	FILE *f;
	int st;

	if (system("command -v openssl >/dev/null 2>&1") != 0)
		return -1;
	snprintf(p, sizeof(p), "%s/v.cnf", cadir);
	f = fopen(p, "w");
	if (f == NULL)
		return -1;
	if (fputs(cnf, f) < 0) {
		fclose(f);
		return -1;
	}
	if (fclose(f) != 0)
		return -1;
	snprintf(cmd, sizeof(cmd), "cd '%s' && ( umask 077 && openssl ecparam"
	    " -name prime256v1 -genkey -noout -out ca.key && openssl ecparam"
	    " -name prime256v1 -genkey -noout -out '%s/127.0.0.1.key' &&"
	    " openssl req -new -x509 -config v.cnf -extensions ca -key ca.key"
	    " -subj /CN=derp-probe-test-ca -days 2 -out ca.crt && openssl req"
	    " -new -config v.cnf -key '%s/127.0.0.1.key' -subj /CN=127.0.0.1"
	    " -out leaf.csr && openssl x509 -req -days 2 -extfile v.cnf"
	    " -extensions leaf -CAcreateserial -in leaf.csr -CA ca.crt -CAkey"
	    " ca.key -out '%s/127.0.0.1.crt' ) >openssl.log 2>&1", cadir,
	    certdir, certdir, certdir);
	st = system(cmd);
	return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* Directories, keys and certificates; NULL, or why the run cannot go on. */
static const char *
setup(void)
{
	static char why[600];
	int i;

	for (i = 0; i < RELAYS; i++) {
		struct relay *r = &relays[i];

		r->name = (char)('A' + i);
		r->pid = -1;
		r->ip = i == 4 ? "::1" : "127.0.0.1";
		r->http_port = -1;
		snprintf(r->dir, sizeof(r->dir), "%s/relay-%c", scratch,
		    r->name);
		snprintf(r->key_path, sizeof(r->key_path),
		    "%s/relay-%c/derper.key", scratch, r->name);
		snprintf(r->log_path, sizeof(r->log_path), "%s/relay-%c.log",
		    scratch, r->name);
		unlink(r->log_path);
		if (mkdir(r->dir, 0700) < 0 && errno != EEXIST) {
			snprintf(why, sizeof(why), "mkdir %s: %s", r->dir,
			    strerror(errno));
			return why;
		}
	}
	relays[0].mesh = 1;
	relays[1].tls = 1;
	relays[1].http_port = 0;	/* one is found at start */
	relays[2].tls = 1;
	relays[3].stun_off = 1;
	{
		struct relay *b = &relays[1];
		char crt[500], key[500], err[200];
		struct cert_store cs;

		snprintf(crt, sizeof(crt), "%s/127.0.0.1.crt", b->dir);
		snprintf(key, sizeof(key), "%s/127.0.0.1.key", b->dir);
		if (cert_generate_ip(crt, key, "127.0.0.1", time(NULL), err,
		    sizeof(err)) != 0 ||
		    cert_load_files(&cs, crt, key, err, sizeof(err)) != 0) {
			snprintf(why, sizeof(why), "relay B's certificate: %s",
			    err);
			return why;
		}
		dc_tohex(cs.leaf_sha256, 32, b->pin_hex);
		cert_free(&cs);
	}
	{
		char cadir[450];

		snprintf(cadir, sizeof(cadir), "%.400s/ca", scratch);
		snprintf(ca_path, sizeof(ca_path), "%s/ca.crt", cadir);
		if (mkdir(cadir, 0700) < 0 && errno != EEXIST) {
			snprintf(why, sizeof(why), "mkdir %s: %s", cadir,
			    strerror(errno));
			return why;
		}
		have_ca = make_ca(cadir, relays[2].dir) == 0;
		if (!have_ca)
			dc_note("no test CA (openssl missing or failed, see"
			    " %s/openssl.log): the -ca-file checks skip",
			    cadir);
	}
	snprintf(mesh_path, sizeof(mesh_path), "%s/mesh.key", scratch);
	snprintf(mesh2_path, sizeof(mesh2_path), "%s/mesh-wrong.key", scratch);
	if (write_mesh_key(mesh_path) < 0 || write_mesh_key(mesh2_path) < 0) {
		snprintf(why, sizeof(why), "cannot write the mesh key files in"
		    " %s", scratch);
		return why;
	}
	return NULL;
}

/* ---- the checks --------------------------------------------------------- */

static struct run run;		/* one probe run at a time */

/* Steps that pass on every healthy relay here. */
#define DERP_OKS "home", "generate_204", "derp_upgrade", "handshake", \
	"client2", "packets", "ping"

static void
t_plain(void)
{
	static const char *const oks[] = { "dns", "tcp", DERP_OKS, "stun4",
	    NULL };
	struct relay *a = &relays[0];
	char url[80], stun[80], s1[200], s2[200];
	const char *e;

	if (!a->up) {
		dc_fail("plain_all_ok", "relay A is not running");
		dc_fail("plain_skips_and_summary", "relay A is not running");
		dc_fail("plain_stun4_mapped_loopback", "relay A is not running");
		return;
	}
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", a->port);
	snprintf(stun, sizeof(stun), "127.0.0.1:%d", a->stun_port);
	run_probe(&run, url, "-stun", stun, "-http-port", "-1", (char *)NULL);
	dc_verdict("plain_all_ok", expect(&run, 0, oks, NULL));
	snprintf(s1, sizeof(s1), "skip port80: plain http:// URL: generate_204"
	    " was checked on its port %d", a->port);
	snprintf(s2, sizeof(s2), "derp probe: %s: 10 ok, 0 failed, 4 skipped",
	    url);
	{
		const char *const exact[] = { "skip tls: plain http:// URL", s1,
		    "skip mesh_watch: no -mesh-key",
		    "skip stun6: 127.0.0.1 has no IPv6 address", s2, NULL };

		dc_verdict("plain_skips_and_summary", expect(&run, 0, NULL,
		    exact));
	}
	{
		char line[300], want[120];

		snprintf(want, sizeof(want), "ok   stun4: %s mapped us to"
		    " 127.0.0.1:", stun);
		e = ok_line(run.out, "stun4", line, sizeof(line)) &&
		    strncmp(line, want, strlen(want)) == 0 ? NULL :
		    "the stun4 line does not name 127.0.0.1 as our address";
		dc_verdict("plain_stun4_mapped_loopback", e);
	}
}

static void
t_ipv6(void)
{
	static const char *const oks[] = { "dns", "tcp", DERP_OKS, "stun6",
	    NULL };
	static const char *const exact[] = {
	    "skip stun4: ::1 has no IPv4 address", NULL };
	struct relay *r = &relays[4];
	char url[80], stun[80];

	if (!have_ipv6_loopback()) {
		dc_skip("ipv6_stun6_ok", "::1 cannot be bound here");
		return;
	}
	if (!r->up) {
		dc_fail("ipv6_stun6_ok", "relay E is not running");
		return;
	}
	snprintf(url, sizeof(url), "http://[::1]:%d", r->port);
	snprintf(stun, sizeof(stun), "[::1]:%d", r->stun_port);
	run_probe(&run, url, "-stun", stun, (char *)NULL);
	dc_verdict("ipv6_stun6_ok", expect(&run, 0, oks, exact));
}

static void
t_tls_pin(void)
{
	static const char *const oks[] = { "dns", "tcp", "tls", DERP_OKS,
	    "port80", "stun4", NULL };
	struct relay *b = &relays[1];
	char url[80], stun[80], hp[16], pin[80], line[600], want[200];
	char wrong[80], s[800];
	const char *e;
	char *log;

	if (!b->up) {
		dc_fail("tls_pin_logged", "relay B is not running");
		dc_fail("tls_pin_all_ok", "relay B is not running");
		dc_fail("tls_pin_line", "relay B is not running");
		dc_fail("tls_wrong_pin_fails", "relay B is not running");
		dc_fail("tls_insecure_ok", "relay B is not running");
		dc_fail("tls_other_ca_not_trusted", "relay B is not running");
		return;
	}
	snprintf(pin, sizeof(pin), "sha256-raw:%s", b->pin_hex);
	log = dc_read_text(b->log_path, LOG_MAX, NULL);
	dc_verdict("tls_pin_logged", log != NULL && strstr(log, pin) != NULL ?
	    NULL : "the relay's log does not name the pin of its certificate");
	free(log);

	snprintf(url, sizeof(url), "https://127.0.0.1:%d", b->port);
	snprintf(stun, sizeof(stun), "127.0.0.1:%d", b->stun_port);
	snprintf(hp, sizeof(hp), "%d", b->http_port);
	run_probe(&run, url, "-pin", pin, "-stun", stun, "-http-port", hp,
	    (char *)NULL);
	dc_verdict("tls_pin_all_ok", expect(&run, 0, oks, NULL));
	snprintf(want, sizeof(want), "ok   tls: TLS 1.2 ECDHE-ECDSA-");
	e = !ok_line(run.out, "tls", line, sizeof(line)) ? "no ok tls line" :
	    strncmp(line, want, strlen(want)) != 0 ||
	    strstr(line, "; certificate: pin sha256-raw matched, name"
	    " 127.0.0.1; expires ") == NULL || strstr(line, " days)") == NULL ?
	    line : NULL;
	dc_verdict("tls_pin_line", e);

	/* A wrong pin: tls fails naming both pins; what needs TLS is
	 * skipped; port 80 and STUN do not need it. */
	snprintf(wrong, sizeof(wrong), "sha256-raw:%064d", 0);
	run_probe(&run, url, "-pin", wrong, "-stun", stun, "-http-port", hp,
	    (char *)NULL);
	snprintf(s, sizeof(s), "FAIL tls: certificate pin mismatch: the"
	    " server's leaf is %s, -pin wants %s", pin, wrong);
	{
		static const char *const oks2[] = { "dns", "tcp", "port80",
		    "stun4", NULL };
		const char *const exact[] = { s, "skip home: tls failed",
		    "skip derp_upgrade: tls failed", "skip packets: tls failed",
		    NULL };

		dc_verdict("tls_wrong_pin_fails", expect(&run, 1, oks2, exact));
	}

	run_probe(&run, url, "-insecure", "-stun", "none", "-http-port", "-1",
	    (char *)NULL);
	{
		static const char *const oks3[] = { "tls", DERP_OKS, NULL };

		e = expect(&run, 0, oks3, NULL);
		if (e == NULL && !ok_line(run.out, "tls", line, sizeof(line)))
			e = "no tls line";
		if (e == NULL && strstr(line, "NOT checked (-insecure), name"
		    " 127.0.0.1 matches") == NULL)
			e = line;
		dc_verdict("tls_insecure_ok", e);
	}

	/* The self-signed leaf against the test CA: not trusted, and the
	 * line gives its pin. */
	if (!have_ca) {
		dc_skip("tls_other_ca_not_trusted", "no test CA");
		return;
	}
	run_probe(&run, url, "-ca-file", ca_path, "-stun", "none",
	    "-http-port", "-1", (char *)NULL);
	snprintf(s, sizeof(s), "FAIL tls: certificate not trusted: no chain to"
	    " a root of %s (self-signed? its pin is %s)", ca_path, pin);
	{
		const char *const exact[] = { s, NULL };

		dc_verdict("tls_other_ca_not_trusted", expect(&run, 1, NULL,
		    exact));
	}
}

static void
t_tls_ca(void)
{
	static const char *const oks[] = { "dns", "tcp", "tls", DERP_OKS,
	    "stun4", NULL };
	static const char *const oks_dns[] = { "dns", "tcp", "tls", DERP_OKS,
	    NULL };
	struct relay *c = &relays[2];
	char url[80], stun[80], line[600], want[700];
	const char *e;

	if (!have_ca) {
		dc_skip("tls_ca_file_ok", "no test CA");
		dc_skip("tls_ca_file_dns_name_ok", "no test CA");
		return;
	}
	if (!c->up) {
		dc_fail("tls_ca_file_ok", "relay C is not running");
		dc_fail("tls_ca_file_dns_name_ok", "relay C is not running");
		return;
	}
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", c->port);
	snprintf(stun, sizeof(stun), "127.0.0.1:%d", c->stun_port);
	run_probe(&run, url, "-ca-file", ca_path, "-stun", stun, "-http-port",
	    "-1", (char *)NULL);
	e = expect(&run, 0, oks, NULL);
	snprintf(want, sizeof(want), "; certificate: chain to %s, name"
	    " 127.0.0.1; expires ", ca_path);
	if (e == NULL && (!ok_line(run.out, "tls", line, sizeof(line)) ||
	    strstr(line, want) == NULL))
		e = "the tls line does not name the CA file and the name";
	dc_verdict("tls_ca_file_ok", e);

	/* The DNS name of the leaf: SNI and BearSSL's name check. */
	snprintf(url, sizeof(url), "https://localhost:%d", c->port);
	run_probe(&run, url, "-ca-file", ca_path, "-stun", "none",
	    "-http-port", "-1", (char *)NULL);
	if (run.status == 1 && strstr(run.out, "FAIL dns: ") != NULL) {
		dc_skip("tls_ca_file_dns_name_ok", "localhost does not resolve"
		    " here");
		return;
	}
	dc_verdict("tls_ca_file_dns_name_ok", expect(&run, 0, oks_dns, NULL));
}

static void
t_stun_off(void)
{
	static const char *const oks[] = { "dns", "tcp", DERP_OKS, NULL };
	struct relay *d = &relays[3];
	char url[80], stun[80], line[300], want[200], want2[200];
	const char *e;

	if (!d->up) {
		dc_fail("stun_off_stun4_fails", "relay D is not running");
		return;
	}
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", d->port);
	snprintf(stun, sizeof(stun), "127.0.0.1:%d", d->stun_port);
	run_probe(&run, url, "-stun", stun, (char *)NULL);
	e = expect(&run, 1, oks, NULL);
	/* Loopback answers with ICMP port unreachable (refused); a host that
	 * drops it makes the probe wait its 5 s. */
	snprintf(want, sizeof(want), "FAIL stun4: no STUN server at %s"
	    " (Connection refused)", stun);
	snprintf(want2, sizeof(want2), "FAIL stun4: no STUN answer from %s",
	    stun);
	if (e == NULL && (!find_line(run.out, "FAIL stun4: ", line,
	    sizeof(line)) || (strcmp(line, want) != 0 &&
	    strncmp(line, want2, strlen(want2)) != 0)))
		e = "no clear FAIL stun4 line";
	if (e == NULL && strstr(run.out, ": 9 ok, 1 failed, 4 skipped\n") ==
	    NULL)
		e = "the summary is not 9 ok, 1 failed, 4 skipped";
	if (e != NULL)
		dc_note("stdout:\n%s", run.out);
	dc_verdict("stun_off_stun4_fails", e);
}

static void
t_dead_port(void)
{
	char url[80], s[200];
	int port = dc_free_port("127.0.0.1", SOCK_STREAM);
	const char *e;

	if (port < 0) {
		dc_fail("dead_port_tcp_fails", "no free port");
		dc_fail("dead_port_json", "no free port");
		return;
	}
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	run_probe(&run, url, "-stun", "none", (char *)NULL);
	snprintf(s, sizeof(s), "FAIL tcp: connect 127.0.0.1:%d: Connection"
	    " refused", port);
	/* qemu-user hands SO_ERROR's host errno to the target untranslated
	 * (mips: "Unknown error 111"): under an emulator the reason's text
	 * is not judged, only that tcp failed on that address. */
	if (getenv("TEST_EMULATOR") != NULL && getenv("TEST_EMULATOR")[0] !=
	    '\0' && find_line(run.out, "FAIL tcp: connect 127.0.0.1:", s,
	    sizeof(s)))
		dc_note("under %s: %s", getenv("TEST_EMULATOR"), s);
	{
		static const char *const oks[] = { "dns", NULL };
		const char *const exact[] = { s, "skip home: tcp failed",
		    "skip generate_204: tcp failed",
		    "skip derp_upgrade: tcp failed", "skip ping: tcp failed",
		    "skip stun4: -stun none", NULL };

		dc_verdict("dead_port_tcp_fails", expect(&run, 1, oks, exact));
	}
	run_probe(&run, "-json", url, "-stun", "none", (char *)NULL);
	e = run.status != 1 ? "exit status not 1" : json_check(run.out, url, 0);
	if (e == NULL && strstr(run.out, "{\"name\":\"tcp\",\"status\":"
	    "\"fail\",\"ok\":false,\"skipped\":false,\"ms\":0,\"detail\":"
	    "\"connect 127.0.0.1:") == NULL)
		e = "the tcp step is not a failure with its reason";
	if (e != NULL)
		dc_note("stdout:\n%s", run.out);
	dc_verdict("dead_port_json", e);
}

static void
t_json_and_mesh(void)
{
	struct relay *a = &relays[0];
	char url[80], stun[80], s[300];
	const char *e;

	if (!a->up) {
		dc_fail("json_ok", "relay A is not running");
		dc_fail("mesh_watch_ok", "relay A is not running");
		dc_fail("mesh_watch_wrong_key_fails", "relay A is not running");
		return;
	}
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", a->port);
	snprintf(stun, sizeof(stun), "127.0.0.1:%d", a->stun_port);
	run_probe(&run, url, "-stun", stun, "-http-port", "-1", "--json",
	    (char *)NULL);
	e = run.status != 0 ? "exit status not 0" : json_check(run.out, url, 1);
	if (e == NULL && strstr(run.out, "\"passed\":10,\"failed\":0,"
	    "\"skipped\":4,") == NULL)
		e = "the counts are not 10 passed, 0 failed, 4 skipped";
	if (e == NULL && strstr(run.out, "{\"name\":\"handshake\",\"status\":"
	    "\"ok\",\"ok\":true,\"skipped\":false,\"ms\":") == NULL)
		e = "the handshake step is not ok";
	if (e == NULL && strstr(run.out, "ServerInfo {\\\"version\\\":2}") ==
	    NULL)
		e = "the ServerInfo JSON is not escaped in the detail";
	if (e != NULL)
		dc_note("stdout:\n%s", run.out);
	dc_verdict("json_ok", e);

	run_probe(&run, url, "-stun", stun, "-mesh-key", mesh_path,
	    (char *)NULL);
	{
		static const char *const oks[] = { DERP_OKS, "mesh_watch",
		    NULL };

		dc_verdict("mesh_watch_ok", expect(&run, 0, oks, NULL));
	}
	run_probe(&run, url, "-stun", stun, "-mesh-key", mesh2_path,
	    (char *)NULL);
	snprintf(s, sizeof(s), "FAIL mesh_watch: the relay closed the"
	    " connection after WatchConns: it did not take -mesh-key as its"
	    " mesh key (wrong key, or none configured)");
	{
		static const char *const oks[] = { DERP_OKS, NULL };
		const char *const exact[] = { s, NULL };

		dc_verdict("mesh_watch_wrong_key_fails", expect(&run, 1, oks,
		    exact));
	}
}

/* https:// to a plain relay: the ClientHello gets no answer. */
static void
t_tls_to_plain(void)
{
	struct relay *a = &relays[0];
	char url[80], s[200];

	if (!a->up) {
		dc_fail("tls_to_plain_relay_fails", "relay A is not running");
		return;
	}
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", a->port);
	run_probe(&run, url, "-insecure", "-stun", "none", "-http-port", "-1",
	    (char *)NULL);
	snprintf(s, sizeof(s), "FAIL tls: TLS handshake with 127.0.0.1: no"
	    " answer within 5000 ms (a plain HTTP relay? try an http:// URL)");
	{
		const char *const exact[] = { s, NULL };

		dc_verdict("tls_to_plain_relay_fails", expect(&run, 1, NULL,
		    exact));
	}
}

/* A relay streaming KeepAlive frames after the handshake: the waits of
 * packets and ping end on their deadlines (the probe checks it before each
 * read and frame, not only when the socket is empty). */
static void
t_flood(void)
{
	static const char *const oks[] = { "home", "derp_upgrade", "handshake",
	    "client2", NULL };
	static const char *const exact[] = { "FAIL packets: 1 -> 2: no"
	    " RecvPacket with the packet within 5000 ms",
	    "FAIL ping: no Pong within 5000 ms", NULL };
	char url[80], why[200];
	int64_t t0, ms;
	int port = fake_start(FAKE_FLOOD);

	if (port < 0) {
		dc_fail("flood_steps_time_out", "cannot start the fake relay: %s",
		    strerror(errno));
		dc_fail("flood_run_bounded", "cannot start the fake relay");
		return;
	}
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	t0 = dc_now_ms();
	run_probe(&run, url, "-stun", "none", "-http-port", "-1",
	    (char *)NULL);
	ms = dc_now_ms() - t0;
	fake_stop();
	dc_verdict("flood_steps_time_out", expect(&run, 1, oks, exact));
	/* Two 5 s waits, and room for a sanitizer build. */
	snprintf(why, sizeof(why), "the run took %ld ms, wanted under 20000"
	    " (two 5 s steps)", (long)ms);
	dc_verdict("flood_run_bounded", ms < 20000 ? NULL : why);
}

/* A relay whose answers carry C2 9B (U+009B, CSI) in a header and a status
 * line: text lines print it as \xc2\x9b, -json as \u00c2\u009b. */
static void
t_c1_bytes(void)
{
	static const char *const exact[] = {
	    "FAIL derp_upgrade: GET /derp answered \"HTTP/1.1 500"
	    " Bad\\xc2\\x9b[31m\", wanted 101 Switching Protocols", NULL };
	char url[80], line[300];
	const char *e = NULL, *q;
	int port = fake_start(FAKE_C1);

	if (port < 0) {
		dc_fail("c1_bytes_escaped_text", "cannot start the fake relay");
		dc_fail("c1_bytes_escaped_json", "cannot start the fake relay");
		return;
	}
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	run_probe(&run, url, "-stun", "none", "-http-port", "-1",
	    (char *)NULL);
	for (q = run.out; *q != '\0' && e == NULL; q++)
		if ((unsigned char)*q >= 0x7f)
			e = "a byte over 0x7e in the text output";
	if (e == NULL && (!ok_line(run.out, "home", line, sizeof(line)) ||
	    strcmp(line, "ok   home: GET / 200 (text/html\\xc2\\x9b[31m)") !=
	    0))
		e = "the home line does not show the header's C2 9B as"
		    " \\xc2\\x9b";
	if (e == NULL)
		e = expect(&run, 1, NULL, exact);
	if (e != NULL)
		dc_note("stdout:\n%s", run.out);
	dc_verdict("c1_bytes_escaped_text", e);

	run_probe(&run, "-json", url, "-stun", "none", "-http-port", "-1",
	    (char *)NULL);
	e = run.status != 1 ? "exit status not 1" : json_check(run.out, url, 0);
	if (e == NULL && strstr(run.out, "GET / 200 (text/html\\u00c2\\u009b"
	    "[31m)") == NULL)
		e = "the home detail does not escape C2 9B as \\u00c2\\u009b";
	if (e != NULL)
		dc_note("stdout:\n%s", run.out);
	fake_stop();
	dc_verdict("c1_bytes_escaped_json", e);
}

static void
t_usage(void)
{
	char bad[450];
	const char *e = NULL;

	run_probe(&run, (char *)NULL);
	if (run.status != 2 || strstr(run.err, "no URL") == NULL)
		e = "no URL: not exit 2 with \"no URL\"";
	run_probe(&run, "http://127.0.0.1:1", "-pin", "sha256-raw:12",
	    (char *)NULL);
	if (e == NULL && (run.status != 2 || strstr(run.err, "-pin") == NULL))
		e = "a short pin: not exit 2";
	run_probe(&run, "http://127.0.0.1:1", "-insecure", "-pin",
	    "sha256-raw:0000000000000000000000000000000000000000000000000000000000000000",
	    (char *)NULL);
	if (e == NULL && run.status != 2)
		e = "-insecure with -pin: not exit 2";
	snprintf(bad, sizeof(bad), "%s/no-such-mesh.key", scratch);
	run_probe(&run, "http://127.0.0.1:1", "-mesh-key", bad, (char *)NULL);
	if (e == NULL && (run.status != 2 || strstr(run.err, bad) == NULL))
		e = "a missing -mesh-key file: not exit 2 naming it";
	run_probe(&run, "http://127.0.0.1:1", "-bogus", (char *)NULL);
	if (e == NULL && run.status != 2)
		e = "an unknown flag: not exit 2";
	run_probe(&run, "-h", (char *)NULL);
	if (e == NULL && (run.status != 0 || strstr(run.out, "usage:") ==
	    NULL))
		e = "-h: not exit 0 with the usage on stdout";
	dc_verdict("usage_errors_exit_2", e);
}

int
main(int argc, char **argv)
{
	const char *e;
	int i;

	if (argc != 3) {
		fprintf(stderr, "usage: %s DERP_BINARY SCRATCH_DIR\n", argv[0]);
		return 2;
	}
	derp_path = argv[1];
	scratch = argv[2];
	for (i = 0; i < RELAYS; i++)
		relays[i].pid = -1;
	if (dc_test_setup(derp_path, scratch, on_alarm, WATCHDOG_S) < 0)
		return 1;
	e = setup();
	if (e != NULL) {
		printf("FAIL setup: %s\n", e);
		printf("0 passed, 1 failed, 0 skipped\n");
		return 1;
	}
	for (i = 0; i < RELAYS; i++) {
		struct relay *r = &relays[i];

		if ((i == 2 && !have_ca) || (i == 4 && !have_ipv6_loopback()))
			continue;
		e = relay_start(r);
		if (e != NULL)
			dc_note("%s", e);
	}

	t_usage();
	t_plain();
	t_ipv6();
	t_tls_pin();
	t_tls_ca();
	t_stun_off();
	t_dead_port();
	t_json_and_mesh();
	t_tls_to_plain();
	t_flood();
	t_c1_bytes();

	for (i = 0; i < RELAYS; i++)
		relay_stop(&relays[i]);
	return dc_summary();
}
