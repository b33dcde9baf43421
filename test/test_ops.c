/*
 * test_ops.c -- the operator's side of the real ./derp binary: debug pages
 * and their access rule, metrics (/debug/varz and /debug/vars), clean
 * restart on SIGTERM/SIGINT, and logging (format, rate limit, -verbose,
 * shortened keys, -syslog).  derper-compat.md sections 6, 11 and 12,
 * derp-protocol.md section 16, and the relay's own additions (-debug-allow,
 * relay_* metrics, the drain on shutdown, -verbose, -syslog).
 *
 * Usage: test_ops DERP_BINARY SCRATCH_DIR
 *   DERP_BINARY  the server to test, e.g. ./derp
 *   SCRATCH_DIR  created if missing; holds the key file, a certificate
 *                directory, each relay's log (NAME.log: stdout and stderr),
 *                the debug key file and the syslog socket
 *
 * Each case starts its own relay (or shares one where the checks are
 * independent):
 *   derp [-allow-root] -a 127.0.0.1:PORT -c KEYFILE -stun-port SPORT
 *        -http-port -1 [-certmode manual -certdir DIR -hostname 127.0.0.1]
 *        [case flags]
 *
 * Output: one line per check, "ok NAME" or "FAIL NAME: DETAIL" (or "skip
 * NAME: WHY" where the host lacks a tool: promtool), lines starting "# "
 * with notes (promtool's lint output, timings), then "N passed, N failed,
 * N skipped".  Exit status 0 iff nothing failed.  The number of checks
 * never depends on what fails: a case whose relay does not start fails
 * each of its checks by name (run.sh's floor).
 *
 * Environment, while developing: TEST_OPS_ONLY=plain,debug,tls,shutdown,
 * logs runs only those groups (fewer checks than run.sh's floor);
 * TEST_OPS_DEBUG=1 adds notes (the relay's counters at a drain's signal).
 *
 * Nothing waits without a bound: every read has a timeout, every poll of
 * a metric or a log a deadline, and alarm() is a watchdog that kills every
 * relay and fails the run.  Only 127.0.0.1 is bound or contacted.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bearssl.h>

#include "client.h"
#include "../cert.h"
#include "../stun.h"

/* ---- limits and timeouts ------------------------------------------------ */

/* The whole run takes 10 s here, 14 s with the sanitizer build (7 of it
 * the log flood's 5 s limiter wait); the watchdog is for a relay that
 * hangs everything. */
#define WATCHDOG_S 240
#define START_MS 10000		/* a relay up: key file, certificate read */
#define STOP_MS 3000		/* SIGTERM to exit: drain 1 s + slack */
#define CONNECT_MS 3000		/* TCP (+ TLS) on loopback */
#define IO_MS 3000		/* one request or frame on loopback */
#define METRIC_MS 2000		/* a gauge or counter to reach its value */
#define PORT_TRIES 3		/* fresh ports when a relay dies at start */
#define LOG_MAX (512 * 1024)	/* most of a relay's log we read */
#define LOG_TAIL 1500		/* printed for a relay that failed to start */
#define BODY_MAX (256 * 1024)	/* a debug page: varz is about 10 KB */
#define MAX_SAMPLES 1024	/* series in one varz page */
#define MAX_FLAT 2048		/* numbers in one vars page */
#define KEY_MAX 200		/* a series key: name,labelvalue,... */

/* Shutdown (spec item 3): packets queued for a reader that stalls. */
#define DRAIN_COUNT 30		/* under the queue depth of 32: none dropped */
/*
 * The stalled receiver (plain): SO_RCVBUF SMALL_RCVBUF and an MSS of
 * SMALL_MSS announced in its SYN.  The small MSS matters on loopback,
 * whose own MSS is 64 KB: a window under half an MSS stalls the sender
 * (sender-side silly-window avoidance) until persist probes, about one a
 * second, so a reader with a tiny buffer and loopback's MSS gets ~1 KB/s
 * (the relay gone long before).  With a 1 KB MSS the relay's send buffer
 * also starts small (2 x initial cwnd 10 x ~2 KB, about 40 KB) and the
 * window moves as fast as the reader reads.
 */
#define SMALL_RCVBUF 4096
#define SMALL_MSS 1024
#define DRAIN_BYTES 4000	/* 120 KB: most of it queued in the relay */
#define STUCK_BYTES 8000	/* 240 KB for a receiver that never reads */
/* TLS (client.c makes its own socket: no small MSS): 100 large packets,
 * 6.4 MB, since the relay's send buffer grows to tcp_wmem's 4 MB on
 * loopback and takes some 60 of them whole; the queue holds the newest 32
 * of the rest, a few are dropped (queue_head): the order and the last one
 * are judged. */
#define TLS_DRAIN_BYTES 64000
#define TLS_DRAIN_COUNT 100
/* The TLS receiver's SO_RCVBUF: far above loopback's 64 KB MSS (no
 * silly-window stall), far below what autotuning allows (tcp_rmem's
 * 32 MB here), so that the relay's queue holds some of the 3.8 MB. */
#define TLS_RCVBUF (256 * 1024)
#define SECOND_SIGNAL_MS 100	/* the second signal, after the first */
#define SECOND_EXIT_MS 800	/* ... the exit must follow it within this */
#define REFUSED_AFTER_MS 300	/* listeners closed "at once": by then */

/* Logging (spec item 4). */
#define FLOOD_CONNS 300		/* bad connections, each worth a log line */
#define FLOOD_LINES_MAX 25	/* burst 20 + 1 per 5 s + slack */
#define FLOOD_LINES_MIN 10	/* the burst is logged, not everything dropped */
#define SUPPRESSED_MS 7000	/* 1 per 5 s + the 250 ms sweep + slack */
#define VERBOSE_CONNS 30	/* more than the burst: not rate limited */

#define FT_SERVER_KEY 0x01
#define FT_CLIENT_INFO 0x02
#define FT_SEND_PACKET 0x04
#define FT_RECV_PACKET 0x05
#define FT_NOTE_PREFERRED 0x07
#define FT_PEER_GONE 0x08
#define FT_WATCH_CONNS 0x10
#define FT_PING 0x12
#define FT_PONG 0x13
#define PEER_GONE_DISCONNECTED 0x00
#define PEER_GONE_NOT_HERE 0x01

/* The disco magic "TS" U+1F4AC: a packet starting with it is disco (spec
 * 10.6); 6 magic + 32 sender key + sealed data, 38 bytes at least. */
static const uint8_t disco_magic[6] = { 0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac };
/* A real one: + nonce 24 + box overhead 16 + a payload: 100 bytes.  (Disco
 * needs at least 62 bytes: derp-protocol.md 10.6.) */
#define DISCO_BYTES 100

/* ---- state -------------------------------------------------------------- */

struct relay {
	char name[40];
	int tls;
	int stun;			/* STUN on (-stun-port) or -stun=false */
	int port, stun_port;
	char log_path[600];
	int64_t started_ms;		/* dc_now_ms() at spawn */
	time_t started_unix;
	volatile pid_t pid;
	int status;			/* waitpid status once reaped */
};

static const char *derp_path, *scratch;
static char key_path[600], cert_dir[600];
#define MAX_RELAYS 8
static struct relay *live[MAX_RELAYS];	/* for the watchdog */
static int64_t cert_not_after;		/* of the TLS relay's certificate */
static char priv_hex[65];		/* the relay's private key, hex */
#define MAX_LOGS 32
static char logs[MAX_LOGS][600];	/* every relay log written */
static int nlogs;
static uint8_t fbuf[DC_MAX_FRAME];

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- watchdog and processes --------------------------------------------- */

static void
on_alarm(int sig)
{
	static const char msg[] = "FAIL watchdog: the run exceeded its time"
	    " budget; relays killed\n";
	int i;

	(void)sig;
	for (i = 0; i < MAX_RELAYS; i++)
		if (live[i] != NULL && live[i]->pid > 0)
			kill(live[i]->pid, SIGKILL);
	if (write(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(2);
	if (dc_write_counts(1) < 0)
		_exit(2);
	_exit(1);
}

static void
live_add(struct relay *r)
{
	int i;

	for (i = 0; i < MAX_RELAYS; i++)
		if (live[i] == NULL || live[i] == r) {
			live[i] = r;
			return;
		}
}

static void
live_del(struct relay *r)
{
	int i;

	for (i = 0; i < MAX_RELAYS; i++)
		if (live[i] == r)
			live[i] = NULL;
}

/* Environment variables the relay reads that would change what a case
 * expects: cleared in every child, then the case's own set. */
static const char *const env_clear[] = { "TS_DEBUG_KEY_PATH",
    "TS_ALLOW_DEBUG_IP", "TS_DEBUG_TRUSTED_CIDRS", "DERP_SYSLOG_SOCKET",
    "DERP_DEBUG_LOGS", "DERP_PROBER_DEBUG_LOGS", "TS_DEBUG_VERBOSE_DROPS" };

/* In the child, before exec: env_clear cleared, then env ("NAME=VALUE"
 * each, a NULL-terminated list, or NULL) set; SIGPIPE to its default. */
static void
child_env(void *arg)
{
	const char *const *env = arg;
	size_t k;

	for (k = 0; k < NELEM(env_clear); k++)
		unsetenv(env_clear[k]);
	for (k = 0; env != NULL && env[k] != NULL; k++) {
		char kv[800], *eq;
		snprintf(kv, sizeof(kv), "%s", env[k]);
		if ((eq = strchr(kv, '=')) != NULL) {
			*eq = '\0';
			setenv(kv, eq + 1, 1);
		}
	}
	signal(SIGPIPE, SIG_DFL);
}

static int
relay_spawn(struct relay *r, const char *const *extra, const char *const *env)
{
	static char addr[40], sport[16], dir[620];
	char *argv[48];
	size_t i = 0, k;
	pid_t pid;

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", r->port);
	snprintf(sport, sizeof(sport), "%d", r->stun_port);
	argv[i++] = (char *)derp_path;
	/* As root the relay wants -user or -allow-root (README). */
	if (geteuid() == 0)
		argv[i++] = "-allow-root";
	argv[i++] = "-a";
	argv[i++] = addr;
	argv[i++] = "-c";
	argv[i++] = key_path;
	if (r->stun) {
		argv[i++] = "-stun-port";
		argv[i++] = sport;
	} else {
		argv[i++] = "-stun=false";
	}
	argv[i++] = "-http-port";
	argv[i++] = "-1";
	if (r->tls) {
		snprintf(dir, sizeof(dir), "%s", cert_dir);
		argv[i++] = "-certmode";
		argv[i++] = "manual";
		argv[i++] = "-certdir";
		argv[i++] = dir;
		argv[i++] = "-hostname";
		argv[i++] = "127.0.0.1";
	}
	for (k = 0; extra != NULL && extra[k] != NULL && i + 1 < NELEM(argv);
	    k++)
		argv[i++] = (char *)extra[k];
	argv[i] = NULL;
	for (k = 0; k < (size_t)nlogs; k++)
		if (strcmp(logs[k], r->log_path) == 0)
			break;
	if (k == (size_t)nlogs && nlogs < MAX_LOGS)
		snprintf(logs[nlogs++], sizeof(logs[0]), "%s", r->log_path);
	r->started_ms = dc_now_ms();
	r->started_unix = time(NULL);
	pid = dc_spawn_logged(argv, r->log_path, child_env, (void *)env);
	if (pid < 0)
		return -1;
	r->pid = pid;
	live_add(r);
	return 0;
}

/* 1 when the relay accepts TCP connections, 0 when it exited at start
 * (reaped, r->status set), -1 when it runs but does not listen. */
static int
relay_wait_ready(struct relay *r)
{
	int rc = dc_wait_serving(r->pid, "127.0.0.1", &r->port, 1, START_MS, 20,
	    &r->status);

	if (rc == 0) {
		r->pid = -1;
		live_del(r);
	}
	return rc;
}

static void
relay_kill(struct relay *r)
{
	if (r->pid > 0) {
		dc_kill_reap(r->pid, &r->status);
		r->pid = -1;
	}
	live_del(r);
}

/*
 * A relay named name (its log NAME.log, truncated), plain or TLS, with
 * STUN or not, the extra flags and environment given; started on fresh
 * ports and listening.  NULL, or why not (the relay is then not running).
 */
static const char *
relay_start(struct relay *r, const char *name, int tls, int stun,
    const char *const *extra, const char *const *env)
{
	int t, rc = 0;

	memset(r, 0, sizeof(*r));
	r->pid = -1;
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->tls = tls;
	r->stun = stun;
	snprintf(r->log_path, sizeof(r->log_path), "%s/%s.log", scratch, name);
	for (t = 0; t < PORT_TRIES; t++) {
		unlink(r->log_path);
		r->port = dc_free_port("127.0.0.1", SOCK_STREAM);
		r->stun_port = dc_free_port("127.0.0.1", SOCK_DGRAM);
		if (r->port < 0 || r->stun_port < 0)
			return "no free port on 127.0.0.1";
		if (relay_spawn(r, extra, env) < 0)
			return dc_why("fork: %s", strerror(errno));
		rc = relay_wait_ready(r);
		if (rc == 1)
			return NULL;
		if (rc < 0) {
			relay_kill(r);
			dc_show_log_tail(r->log_path, LOG_MAX, LOG_TAIL);
			return dc_why("relay %s not listening on port %d after"
			    " %d ms", name, r->port, START_MS);
		}
	}
	dc_show_log_tail(r->log_path, LOG_MAX, LOG_TAIL);
	return dc_why("relay %s exited at start-up %d times (status %d); log"
	    " %s", name, PORT_TRIES, WIFEXITED(r->status) ?
	    WEXITSTATUS(r->status) : -1, r->log_path);
}

/* Wait up to ms for the relay to exit: 1 reaped (r->status), 0 still up. */
static int
relay_wait_exit(struct relay *r, int ms)
{
	if (r->pid <= 0)
		return 1;
	if (!dc_wait_exit(r->pid, ms, 5, &r->status))
		return 0;
	r->pid = -1;
	live_del(r);
	return 1;
}

/* sig, then exit within ms with status 0: NULL, or why (killed then). */
static const char *
relay_stop(struct relay *r, int sig, int ms)
{
	if (r->pid <= 0)
		return "relay not running";
	kill(r->pid, sig);
	if (!relay_wait_exit(r, ms)) {
		relay_kill(r);
		return dc_why("still running %d ms after signal %d; killed", ms,
		    sig);
	}
	if (WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0)
		return NULL;
	return dc_why("%s after signal %d", dc_status_str(r->status), sig);
}

static int
log_has(const struct relay *r, const char *want, int ms)
{
	return dc_log_has(r->log_path, LOG_MAX, want, ms);
}

/* ---- small helpers ------------------------------------------------------ */

static void
base64_std(const uint8_t *p, size_t n, char *out, int url)
{
	const char *a = url ?
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" :
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 |
		    p[i + 2];
		out[o++] = a[v >> 18 & 63];
		out[o++] = a[v >> 12 & 63];
		out[o++] = a[v >> 6 & 63];
		out[o++] = a[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		out[o++] = a[v >> 18 & 63];
		out[o++] = a[v >> 12 & 63];
		out[o++] = '=';
		out[o++] = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		out[o++] = a[v >> 18 & 63];
		out[o++] = a[v >> 12 & 63];
		out[o++] = a[v >> 6 & 63];
		out[o++] = '=';
	}
	out[o] = '\0';
}

/* derper's key.NodePublic.ShortString: "[" + 5 chars of std base64 + "]". */
static void
short_key(const uint8_t pk[32], char out[8])
{
	char b[48];

	base64_std(pk, 32, b, 0);
	snprintf(out, 8, "[%.5s]", b);
}

static int
count_substr(const char *text, const char *s)
{
	int n = 0;
	size_t l = strlen(s);

	while (text != NULL && (text = strstr(text, s)) != NULL) {
		n++;
		text += l;
	}
	return n;
}

static int
write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	size_t n = strlen(text);

	if (fd < 0)
		return -1;
	if (write(fd, text, n) != (ssize_t)n) {
		close(fd);
		return -1;
	}
	return close(fd);
}

/* A connect refused.  qemu-user hands SO_ERROR's host errno to the target
 * untranslated (mips: "Unknown error 111"): under an emulator any failure
 * but a timeout counts. */
static int
conn_refused(int rc)
{
	const char *emu = getenv("TEST_EMULATOR");

	if (rc == ECONNREFUSED)
		return 1;
	return emu != NULL && emu[0] != '\0' && rc != 0 && rc != ETIMEDOUT;
}

/* A plain TCP connect to 127.0.0.1:port with a bound: 0 connected (fd in
 * *fdp), else the errno (ETIMEDOUT for the bound). */
static int
tcp_connect(int port, int ms, int *fdp)
{
	struct sockaddr_in a;
	struct pollfd p;
	int fd, err = 0, fl;
	socklen_t el = sizeof(err);

	*fdp = -1;
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return errno;
	fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		if (errno != EINPROGRESS) {
			err = errno;
			close(fd);
			return err;
		}
		p.fd = fd;
		p.events = POLLOUT;
		if (poll(&p, 1, ms) != 1) {
			close(fd);
			return ETIMEDOUT;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
		if (err != 0) {
			close(fd);
			return err;
		}
	}
	fcntl(fd, F_SETFL, fl);
	*fdp = fd;
	return 0;
}

/* ---- HTTP --------------------------------------------------------------- */

struct resp {
	int status;
	char ctype[200];
	char head[DC_HEAD_MAX];
	char *body;			/* malloc'd, NUL-terminated */
	size_t len;
};

static void
resp_free(struct resp *p)
{
	free(p->body);
	p->body = NULL;
}

/* GET path (with the extra header lines, each ending CRLF) from the relay
 * on a fresh connection.  NULL, or why (p->body NULL then). */
static const char *
http_get(const struct relay *r, const char *path, const char *extra,
    struct resp *p)
{
	struct dclient *c = dc_new();
	char req[1200];
	const char *why = NULL;

	memset(p, 0, sizeof(*p));
	p->status = -1;
	if (c == NULL)
		return "out of memory";
	p->body = malloc(BODY_MAX);
	if (p->body == NULL) {
		dc_free(c);
		return "out of memory";
	}
	p->body[0] = '\0';
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
	    "User-Agent: test_ops\r\nConnection: close\r\n%s\r\n", path,
	    r->port, extra != NULL ? extra : "");
	if (dc_connect(c, "127.0.0.1", r->port, r->tls, NULL, CONNECT_MS) < 0)
		why = dc_why("GET %s: cannot connect", path);
	else if (dc_http_request(c, req, p->head, sizeof(p->head), IO_MS) < 0)
		why = dc_why("GET %s: no response head", path);
	else if (dc_http_body(c, p->head, 0, p->body, BODY_MAX - 1, &p->len,
	    IO_MS) < 0)
		why = dc_why("GET %s: body not read", path);
	if (why == NULL) {
		p->body[p->len < BODY_MAX ? p->len : BODY_MAX - 1] = '\0';
		p->status = dc_http_status(p->head);
		if (!dc_http_header(p->head, "Content-Type", p->ctype,
		    sizeof(p->ctype)))
			p->ctype[0] = '\0';
	} else {
		resp_free(p);
	}
	dc_free(c);
	return why;
}

/* GET path, expecting status want (and, for 403, the body derper gives). */
static const char *
expect_status(const struct relay *r, const char *path, const char *extra,
    int want)
{
	struct resp p;
	const char *why = http_get(r, path, extra, &p);

	if (why != NULL)
		return why;
	if (p.status != want)
		why = dc_why("GET %s%s%s: status %d, want %d (body %.80s)",
		    path, extra != NULL ? " with " : "",
		    extra != NULL ? extra : "", p.status, want, p.body);
	else if (want == 403 && strstr(p.body, "debug access denied") == NULL)
		why = dc_why("GET %s: 403 without \"debug access denied\" "
		    "(body %.80s)", path, p.body);
	resp_free(&p);
	return why;
}

/* ---- metrics: the Prometheus text and the JSON -------------------------- */

struct sample {
	char key[KEY_MAX];		/* name,labelvalue,...  */
	char lnames[80];		/* label names in order, comma-separated */
	double v;
};
struct mtype {
	char name[96];
	char type[16];
};
struct snap {
	int n, nt;
	struct sample s[MAX_SAMPLES];
	struct mtype t[MAX_SAMPLES];
	char bad[200];			/* the first unparsable line, or "" */
};

/* Parse the Prometheus text body into s.  0, or -1 (s->bad says). */
static int
varz_parse(const char *body, struct snap *s)
{
	const char *line = body;

	s->n = s->nt = 0;
	s->bad[0] = '\0';
	while (*line != '\0') {
		const char *eol = strchr(line, '\n');
		size_t ll = eol != NULL ? (size_t)(eol - line) : strlen(line);
		char buf[600];

		if (ll >= sizeof(buf))
			ll = sizeof(buf) - 1;
		memcpy(buf, line, ll);
		buf[ll] = '\0';
		line = eol != NULL ? eol + 1 : line + strlen(line);
		if (buf[0] == '\0')
			continue;
		if (buf[0] == '#') {
			char nm[96], ty[16];
			if (sscanf(buf, "# TYPE %95s %15s", nm, ty) == 2 &&
			    s->nt < MAX_SAMPLES) {
				snprintf(s->t[s->nt].name, sizeof(s->t[0].name),
				    "%s", nm);
				snprintf(s->t[s->nt].type, sizeof(s->t[0].type),
				    "%s", ty);
				s->nt++;
			}
			continue;
		}
		{
			struct sample *x;
			char *p = buf, *end;
			size_t kl = 0, nl = 0;

			if (s->n >= MAX_SAMPLES)
				break;
			x = &s->s[s->n];
			x->lnames[0] = '\0';
			while (*p != '\0' && *p != '{' && *p != ' ' &&
			    kl + 1 < sizeof(x->key))
				x->key[kl++] = *p++;
			x->key[kl] = '\0';
			if (*p == '{') {
				p++;
				while (*p != '}' && *p != '\0') {
					char *eq = strchr(p, '='), *q;
					if (eq == NULL || eq[1] != '"')
						goto bad;
					if (nl > 0 && nl + 1 < sizeof(x->lnames))
						x->lnames[nl++] = ',';
					while (p < eq && nl + 1 <
					    sizeof(x->lnames))
						x->lnames[nl++] = *p++;
					x->lnames[nl] = '\0';
					q = eq + 2;
					if (kl + 1 < sizeof(x->key))
						x->key[kl++] = ',';
					while (*q != '"' && *q != '\0') {
						if (*q == '\\' && q[1] != '\0')
							q++;
						if (kl + 1 < sizeof(x->key))
							x->key[kl++] = *q;
						q++;
					}
					x->key[kl] = '\0';
					if (*q != '"')
						goto bad;
					p = q + 1;
					if (*p == ',')
						p++;
				}
				if (*p != '}')
					goto bad;
				p++;
			}
			if (*p != ' ')
				goto bad;
			x->v = strtod(p + 1, &end);
			if (end == p + 1)
				goto bad;
			s->n++;
			continue;
bad:
			if (s->bad[0] == '\0')
				snprintf(s->bad, sizeof(s->bad), "%.150s", buf);
		}
	}
	return s->bad[0] == '\0' ? 0 : -1;
}

static const struct sample *
snap_find(const struct snap *s, const char *key)
{
	int i;

	for (i = 0; i < s->n; i++)
		if (strcmp(s->s[i].key, key) == 0)
			return &s->s[i];
	return NULL;
}

/* The value of key, or NaN-free -1e300 when absent (*found 0). */
static double
sv(const struct snap *s, const char *key, int *found)
{
	const struct sample *x = snap_find(s, key);

	if (found != NULL)
		*found = x != NULL;
	return x != NULL ? x->v : -1e300;
}

static const char *
snap_type(const struct snap *s, const char *name)
{
	int i;

	for (i = 0; i < s->nt; i++)
		if (strcmp(s->t[i].name, name) == 0)
			return s->t[i].type;
	return NULL;
}

/* The varz page of r parsed into s.  NULL or why. */
static const char *
varz_snap(const struct relay *r, struct snap *s)
{
	struct resp p;
	const char *why = http_get(r, "/debug/varz", NULL, &p);

	if (why != NULL)
		return why;
	if (p.status != 200)
		why = dc_why("/debug/varz: status %d", p.status);
	else if (varz_parse(p.body, s) < 0)
		why = dc_why("/debug/varz: unparsable line \"%s\"", s->bad);
	resp_free(&p);
	return why;
}

/* The JSON of /debug/vars, flattened: each number under its dotted path. */
struct flat {
	int n;
	char path[MAX_FLAT][KEY_MAX];
	double v[MAX_FLAT];
	int top_object;
};

static void
js_ws(const char **p)
{
	while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r')
		(*p)++;
}

/* A JSON string at *p into out[cap] (escapes kept simple: \uXXXX as '?').
 * 0 or -1. */
static int
js_string(const char **p, char *out, size_t cap)
{
	size_t n = 0;

	if (**p != '"')
		return -1;
	(*p)++;
	while (**p != '"') {
		char ch = **p;
		if (ch == '\0' || (unsigned char)ch < 0x20)
			return -1;
		if (ch == '\\') {
			(*p)++;
			switch (**p) {
			case 'u':
				if (strlen(*p) < 5)
					return -1;
				*p += 4;
				ch = '?';
				break;
			case 'n': ch = '\n'; break;
			case 't': ch = '\t'; break;
			case 'r': ch = '\r'; break;
			case 'b': ch = '\b'; break;
			case 'f': ch = '\f'; break;
			case '"': case '\\': case '/': ch = **p; break;
			default: return -1;
			}
		}
		if (n + 1 < cap)
			out[n++] = ch;
		(*p)++;
	}
	(*p)++;
	out[n] = '\0';
	return 0;
}

static int
js_value(const char **p, const char *path, struct flat *f, int depth)
{
	char sub[KEY_MAX], key[KEY_MAX];

	if (depth > 16)
		return -1;
	js_ws(p);
	if (**p == '{') {
		(*p)++;
		js_ws(p);
		if (**p == '}') {
			(*p)++;
			return 0;
		}
		for (;;) {
			js_ws(p);
			if (js_string(p, key, sizeof(key)) < 0)
				return -1;
			js_ws(p);
			if (**p != ':')
				return -1;
			(*p)++;
			snprintf(sub, sizeof(sub), "%.120s%s%.70s", path,
			    path[0] != '\0' ? "." : "", key);
			if (js_value(p, sub, f, depth + 1) < 0)
				return -1;
			js_ws(p);
			if (**p == ',') {
				(*p)++;
				continue;
			}
			if (**p == '}') {
				(*p)++;
				return 0;
			}
			return -1;
		}
	}
	if (**p == '[') {
		int i = 0;
		(*p)++;
		js_ws(p);
		if (**p == ']') {
			(*p)++;
			return 0;
		}
		for (;;) {
			snprintf(sub, sizeof(sub), "%s.%d", path, i++);
			if (js_value(p, sub, f, depth + 1) < 0)
				return -1;
			js_ws(p);
			if (**p == ',') {
				(*p)++;
				continue;
			}
			if (**p == ']') {
				(*p)++;
				return 0;
			}
			return -1;
		}
	}
	if (**p == '"')
		return js_string(p, key, sizeof(key));
	if (strncmp(*p, "true", 4) == 0 || strncmp(*p, "null", 4) == 0) {
		*p += 4;
		return 0;
	}
	if (strncmp(*p, "false", 5) == 0) {
		*p += 5;
		return 0;
	}
	if (**p == '-' || (**p >= '0' && **p <= '9')) {
		char *end;
		double v = strtod(*p, &end);
		if (end == *p)
			return -1;
		*p = end;
		if (f->n < MAX_FLAT) {
			snprintf(f->path[f->n], KEY_MAX, "%s", path);
			f->v[f->n++] = v;
		}
		return 0;
	}
	return -1;
}

/* 0, or -1 when body is not one JSON object (with nothing after it). */
static int
vars_parse(const char *body, struct flat *f)
{
	const char *p = body;

	f->n = 0;
	js_ws(&p);
	f->top_object = *p == '{';
	if (!f->top_object || js_value(&p, "", f, 0) < 0)
		return -1;
	js_ws(&p);
	return *p == '\0' ? 0 : -1;
}

static const char *
vars_snap(const struct relay *r, struct flat *f)
{
	struct resp p;
	const char *why = http_get(r, "/debug/vars", NULL, &p);

	if (why != NULL)
		return why;
	if (p.status != 200)
		why = dc_why("/debug/vars: status %d", p.status);
	else if (vars_parse(p.body, f) < 0)
		why = "/debug/vars: not one JSON object";
	resp_free(&p);
	return why;
}

static int
flat_find(const struct flat *f, const char *path, double *v)
{
	int i;

	for (i = 0; i < f->n; i++)
		if (strcmp(f->path[i], path) == 0) {
			*v = f->v[i];
			return 1;
		}
	return 0;
}

/* Does any path of f start with prefix followed by '.' or end? */
static int
flat_has_prefix(const struct flat *f, const char *prefix)
{
	size_t l = strlen(prefix);
	int i;

	for (i = 0; i < f->n; i++)
		if (strncmp(f->path[i], prefix, l) == 0 &&
		    (f->path[i][l] == '.' || f->path[i][l] == '\0'))
			return 1;
	return 0;
}

static const char *const groups[] = { "derp_", "stun_", "tls_listener_",
    "relay_" };

/*
 * The JSON value for a varz series key (name,labelvalue,...): group.rest
 * [.labelvalue...], or group.gauge_rest for a gauge.  1 found (*v), 0
 * not, -1 when the name maps to no JSON path of the spec (skipped).
 */
static int
vars_lookup(const struct flat *f, const struct snap *s, const char *key,
    double *v)
{
	char name[KEY_MAX], path[2 * KEY_MAX], *comma, *q;
	const char *rest = NULL, *type;
	size_t gi, gl = 0;

	snprintf(name, sizeof(name), "%s", key);
	comma = strchr(name, ',');
	if (comma != NULL)
		*comma = '\0';
	if (strcmp(name, "uptime_sec") == 0 ||
	    strcmp(name, "process_start_unix_time") == 0)
		return flat_find(f, name, v);
	for (gi = 0; gi < NELEM(groups); gi++) {
		gl = strlen(groups[gi]);
		if (strncmp(name, groups[gi], gl) == 0) {
			rest = name + gl;
			break;
		}
	}
	if (rest == NULL)
		return -1;
	snprintf(path, sizeof(path), "%.*s.%s%s%s", (int)(gl - 1), name, rest,
	    comma != NULL ? "." : "", comma != NULL ? comma + 1 : "");
	for (q = path; *q != '\0'; q++)
		if (*q == ',')
			*q = '.';
	if (flat_find(f, path, v))
		return 1;
	type = snap_type(s, name);
	if (type != NULL && strcmp(type, "gauge") == 0) {
		snprintf(path, sizeof(path), "%.*s.gauge_%s%s%s", (int)(gl - 1),
		    name, rest, comma != NULL ? "." : "",
		    comma != NULL ? comma + 1 : "");
		for (q = path; *q != '\0'; q++)
			if (*q == ',')
				*q = '.';
		if (flat_find(f, path, v))
			return 1;
	}
	return 0;
}

/*
 * varz, vars, varz again: every series of the four groups (and uptime_sec,
 * process_start_unix_time) must be in vars with a value between its two
 * varz readings.  NULL, or why (the first few disagreements).  *checked:
 * how many series were compared.
 */
static const char *
vars_varz_agree(const struct relay *r, int *checked)
{
	static struct snap a, b;
	static struct flat f;
	char bad[900];
	size_t bl = 0;
	const char *why;
	int i, nbad = 0;

	*checked = 0;
	if ((why = varz_snap(r, &a)) != NULL ||
	    (why = vars_snap(r, &f)) != NULL ||
	    (why = varz_snap(r, &b)) != NULL)
		return why;
	bad[0] = '\0';
	for (i = 0; i < a.n; i++) {
		const struct sample *x = &a.s[i], *y = snap_find(&b, x->key);
		double v, lo, hi;
		int rc = vars_lookup(&f, &a, x->key, &v);

		if (rc < 0 || y == NULL)
			continue;
		(*checked)++;
		lo = x->v < y->v ? x->v : y->v;
		hi = x->v < y->v ? y->v : x->v;
		if (rc == 1 && v >= lo - 1e-6 * (lo < 0 ? -lo : lo) - 1e-9 &&
		    v <= hi + 1e-6 * (hi < 0 ? -hi : hi) + 1e-9)
			continue;
		nbad++;
		if (bl + 120 < sizeof(bad)) {
			if (rc == 1)
				bl += (size_t)snprintf(bad + bl, sizeof(bad) - bl,
				    "%s%s: vars %g, varz %g..%g", bl > 0 ? "; " :
				    "", x->key, v, lo, hi);
			else
				bl += (size_t)snprintf(bad + bl, sizeof(bad) - bl,
				    "%s%s: not in vars", bl > 0 ? "; " : "",
				    x->key);
		}
	}
	if (*checked == 0)
		return "no series of the derp/stun/tls_listener/relay groups in"
		    " varz";
	if (nbad > 0)
		return dc_why("%d of %d series disagree: %s", nbad, *checked, bad);
	return NULL;
}

/* Poll varz until key's value is want (exactly) or ms pass.  1 reached,
 * 0 not (*got: the last value, -1e300 when absent). */
static int
wait_value(const struct relay *r, const char *key, double want, int ms,
    double *got)
{
	static struct snap s;
	int64_t deadline = dc_now_ms() + ms;

	*got = -1e300;
	for (;;) {
		if (varz_snap(r, &s) == NULL) {
			int found;
			*got = sv(&s, key, &found);
			if (found && *got == want)
				return 1;
		}
		if (dc_left_ms(deadline) == 0)
			return 0;
		dc_sleep_ms(50);
	}
}

/* A value for a message: the number, or "absent". */
static const char *
val_str(double v)
{
	return v == -1e300 ? "absent" : dc_why("%g", v);
}

/* key's value in s into *v: NULL, or why not (absent from varz). */
static const char *
need_key(const struct snap *s, const char *key, double *v)
{
	int found;

	*v = sv(s, key, &found);
	return found ? NULL : dc_why("%s absent from /debug/varz", key);
}

/* The change of each of keys between two snapshots must be the given
 * delta.  NULL or why (all that differ). */
struct dwant {
	const char *key;
	double delta;
};

static const char *
check_deltas(const struct snap *s0, const struct snap *s1,
    const struct dwant *w, size_t n)
{
	char bad[900];
	size_t bl = 0, i;

	bad[0] = '\0';
	for (i = 0; i < n; i++) {
		int f0, f1;
		double a = sv(s0, w[i].key, &f0), b = sv(s1, w[i].key, &f1);

		if (f0 && f1 && b - a == w[i].delta)
			continue;
		if (bl + 100 >= sizeof(bad))
			break;
		if (!f0 || !f1)
			bl += (size_t)snprintf(bad + bl, sizeof(bad) - bl,
			    "%s%s missing", bl > 0 ? "; " : "", w[i].key);
		else
			bl += (size_t)snprintf(bad + bl, sizeof(bad) - bl,
			    "%s%s %+g, want %+g", bl > 0 ? "; " : "", w[i].key,
			    b - a, w[i].delta);
	}
	return bl == 0 ? NULL : dc_why("%s", bad);
}

/* ---- clients ------------------------------------------------------------ */

static struct dclient *
cl_open(const struct relay *r, const char *json, const uint8_t *sk,
    const uint8_t *pk, int rcvbuf)
{
	struct dclient *c = dc_new();

	if (c == NULL)
		return NULL;
	if (sk != NULL) {
		memcpy(c->sk, sk, 32);
		memcpy(c->pk, pk, 32);
	} else {
		dc_genkey(c);
	}
	c->rcvbuf = rcvbuf;
	if (dc_connect(c, "127.0.0.1", r->port, r->tls, NULL, CONNECT_MS) < 0 ||
	    dc_handshake(c, 0, json, IO_MS) < 0) {
		dc_free(c);
		return NULL;
	}
	return c;
}

/*
 * A plain client whose socket has SO_RCVBUF rcvbuf and announces MSS mss
 * (set before connect, which client.c cannot do), handshaken.  NULL on
 * failure.
 */
static struct dclient *
cl_open_small(const struct relay *r, int rcvbuf, int mss)
{
	struct sockaddr_in a;
	struct pollfd p;
	struct dclient *c;
	int fd, one = 1, err = 0;
	socklen_t el = sizeof(err);

	if (r->tls || (c = dc_new()) == NULL)
		return NULL;
	dc_genkey(c);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0) {
		dc_free(c);
		return NULL;
	}
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof(mss));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)r->port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		p.fd = fd;
		p.events = POLLOUT;
		if (errno != EINPROGRESS || poll(&p, 1, CONNECT_MS) != 1 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 ||
		    err != 0) {
			close(fd);
			dc_free(c);
			return NULL;
		}
	}
	/* What dc_connect leaves for a plain connection. */
	c->fd = fd;
	c->use_tls = 0;
	snprintf(c->host, sizeof(c->host), "127.0.0.1:%d", r->port);
	if (dc_handshake(c, 0, NULL, IO_MS) < 0) {
		dc_free(c);
		return NULL;
	}
	return c;
}

/* Counted PeerGone frames seen by barrier() and expect_pkt(), by reason. */
static int peer_gone_seen[2];

static void
saw_frame(uint8_t type, size_t len)
{
	if (type == FT_PEER_GONE && len >= 33 && fbuf[32] < 2)
		peer_gone_seen[fbuf[32]]++;
	else if (type == FT_PEER_GONE && len == 32)
		peer_gone_seen[0]++;
}

/* Ping and wait for its Pong (frames before it read and counted): every
 * frame c sent before is then processed by the relay.  0 or -1. */
static int
barrier(struct dclient *c)
{
	int64_t deadline = dc_now_ms() + IO_MS;
	uint8_t data[8];

	dc_random(data, sizeof(data));
	if (dc_send_frame(c, FT_PING, data, sizeof(data)) < 0)
		return -1;
	while (dc_left_ms(deadline) > 0) {
		uint8_t t;
		size_t n;

		if (dc_recv_frame(c, &t, fbuf, sizeof(fbuf), &n,
		    dc_left_ms(deadline)) != 1)
			return -1;
		saw_frame(t, n);
		if (t == FT_PONG && n == 8 && memcmp(fbuf, data, 8) == 0)
			return 0;
	}
	return -1;
}

/* A RecvPacket from src holding pkt[len] within IO_MS: 1, else 0. */
static int
expect_pkt(struct dclient *c, const uint8_t src[32], const uint8_t *pkt,
    size_t len)
{
	int64_t deadline = dc_now_ms() + IO_MS;

	while (dc_left_ms(deadline) > 0) {
		uint8_t t;
		size_t n;

		if (dc_recv_frame(c, &t, fbuf, sizeof(fbuf), &n,
		    dc_left_ms(deadline)) != 1)
			return 0;
		saw_frame(t, n);
		if (t == FT_RECV_PACKET && n == 32 + len &&
		    memcmp(fbuf, src, 32) == 0 && memcmp(fbuf + 32, pkt, len) == 0)
			return 1;
	}
	return 0;
}

/* Wait up to ms for a PeerGone of reason: 1 seen, 0 not. */
static int
expect_peer_gone(struct dclient *c, int reason, int ms)
{
	int64_t deadline = dc_now_ms() + ms;

	while (peer_gone_seen[reason] == 0 && dc_left_ms(deadline) > 0) {
		uint8_t t;
		size_t n;

		if (dc_recv_frame(c, &t, fbuf, sizeof(fbuf), &n,
		    dc_left_ms(deadline)) != 1)
			break;
		saw_frame(t, n);
	}
	return peer_gone_seen[reason] > 0;
}

/* A packet of len bytes, not disco (first byte 0), numbered seq. */
static void
make_pkt(uint8_t *p, size_t len, uint32_t seq)
{
	size_t i;

	memset(p, 0, len);
	if (len >= 5) {
		p[1] = (uint8_t)(seq >> 24);
		p[2] = (uint8_t)(seq >> 16);
		p[3] = (uint8_t)(seq >> 8);
		p[4] = (uint8_t)seq;
	}
	for (i = 5; i < len; i++)
		p[i] = (uint8_t)(i * 7 + seq);
}

static void
make_disco(uint8_t *p, size_t len, const uint8_t sender[32])
{
	memcpy(p, disco_magic, 6);
	memcpy(p + 6, sender, 32);
	dc_random(p + 38, len - 38);
}

/* A connection that upgrades and then sends a ClientInfo that cannot be
 * opened (random box): the relay must close it.  With wait, the close is
 * awaited (bounded).  0 sent, -1 not. */
static int
bad_client_info(const struct relay *r, int wait)
{
	struct dclient *c = dc_new();
	uint8_t frame[5 + 32 + 24 + 64];
	int rc = -1;

	if (c == NULL)
		return -1;
	frame[0] = FT_CLIENT_INFO;
	frame[1] = frame[2] = 0;
	frame[3] = 0;
	frame[4] = (uint8_t)(sizeof(frame) - 5);
	dc_random(frame + 5, sizeof(frame) - 5);
	if (dc_connect(c, "127.0.0.1", r->port, r->tls, NULL, CONNECT_MS) == 0 &&
	    dc_upgrade(c, 0, IO_MS) == 0 && dc_write(c, frame, sizeof(frame)) == 0) {
		rc = 0;
		if (wait)
			(void)dc_expect_close(c, IO_MS);
	}
	dc_free(c);
	return rc;
}

/* The same, fast: one write of a fast-start upgrade and the bad ClientInfo
 * on a plain socket, then wait for the close.  For the log flood. */
static int
bad_client_info_fast(const struct relay *r)
{
	char buf[600];
	uint8_t junk[32 + 24 + 64];
	int fd, n, i;
	struct pollfd p;

	if (tcp_connect(r->port, CONNECT_MS, &fd) != 0)
		return -1;
	n = snprintf(buf, sizeof(buf), "GET /derp HTTP/1.1\r\nHost: "
	    "127.0.0.1:%d\r\nConnection: Upgrade\r\nUpgrade: DERP\r\n"
	    "Derp-Fast-Start: 1\r\n\r\n", r->port);
	dc_random(junk, sizeof(junk));
	buf[n++] = FT_CLIENT_INFO;
	buf[n++] = 0;
	buf[n++] = 0;
	buf[n++] = 0;
	buf[n++] = (char)sizeof(junk);
	memcpy(buf + n, junk, sizeof(junk));
	n += (int)sizeof(junk);
	if (send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n) {
		close(fd);
		return -1;
	}
	/* Read (ServerKey) until the close, at most IO_MS. */
	for (i = 0; i < 100; i++) {
		char sink[512];
		ssize_t got;

		p.fd = fd;
		p.events = POLLIN;
		if (poll(&p, 1, IO_MS) != 1)
			break;
		got = recv(fd, sink, sizeof(sink), 0);
		if (got <= 0)
			break;
	}
	close(fd);
	return 0;
}

/* ---- plain frame reading that tells a FIN from a reset ----------------- */

/*
 * The next frame of plain client c, read straight from its socket (what
 * client.c buffered first): 1 frame (type, payload in fbuf, *len), 0 the
 * stream ended (*reset 1 if by ECONNRESET, 0 by a FIN), -1 error, -2
 * timeout.  A frame cut by the end counts as the end.
 */
static int
plain_frame(struct dclient *c, uint8_t *type, size_t *len, int ms, int *reset)
{
	int64_t deadline = dc_now_ms() + ms;

	*reset = 0;
	for (;;) {
		struct pollfd p;
		ssize_t r;

		if (c->rlen >= 5) {
			size_t fl = (size_t)c->rbuf[1] << 24 |
			    (size_t)c->rbuf[2] << 16 | (size_t)c->rbuf[3] << 8 |
			    c->rbuf[4];
			if (fl > sizeof(fbuf) || 5 + fl > sizeof(c->rbuf))
				return -1;
			if (c->rlen >= 5 + fl) {
				*type = c->rbuf[0];
				memcpy(fbuf, c->rbuf + 5, fl);
				*len = fl;
				memmove(c->rbuf, c->rbuf + 5 + fl,
				    c->rlen - 5 - fl);
				c->rlen -= 5 + fl;
				return 1;
			}
		}
		p.fd = c->fd;
		p.events = POLLIN;
		p.revents = 0;
		if (poll(&p, 1, dc_left_ms(deadline)) == 0)
			return -2;
		r = recv(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen,
		    MSG_DONTWAIT);
		if (r > 0) {
			c->rlen += (size_t)r;
			continue;
		}
		if (r == 0)
			return 0;
		if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
			continue;
		if (errno == ECONNRESET) {
			*reset = 1;
			return 0;
		}
		return -1;
	}
}

/* ---- debug pages -------------------------------------------------------- */

static struct relay r1;		/* plain, STUN on: pages and metrics */

/* The index must link to vars and varz: some href ending in each. */
static int
has_link(const char *body, const char *target)
{
	const char *p = body;
	size_t tl = strlen(target);

	while ((p = strstr(p, "href=")) != NULL) {
		const char *q;
		char quote;

		p += 5;
		quote = *p;
		if (quote != '"' && quote != '\'')
			continue;
		q = strchr(p + 1, quote);
		if (q == NULL)
			break;
		if ((size_t)(q - (p + 1)) >= tl &&
		    memcmp(q - tl, target, tl) == 0 &&
		    (q - tl == p + 1 || q[-(int)tl - 1] == '/'))
			return 1;
		p = q;
	}
	return 0;
}

static void
t_debug_pages(const struct relay *r)
{
	struct resp p;
	const char *why;

	why = http_get(r, "/debug/", NULL, &p);
	if (why == NULL) {
		why = p.status != 200 ? dc_why("status %d", p.status) :
		    strncmp(p.ctype, "text/html", 9) != 0 ?
		    dc_why("Content-Type \"%s\"", p.ctype) :
		    !has_link(p.body, "vars") || !has_link(p.body, "varz") ?
		    dc_why("no links to vars and varz in: %.200s", p.body) :
		    NULL;
		resp_free(&p);
	}
	dc_verdict("debug_index_links", why);

	why = http_get(r, "/debug/vars", NULL, &p);
	if (why == NULL) {
		why = p.status != 200 ? dc_why("status %d", p.status) :
		    strncmp(p.ctype, "application/json", 16) != 0 ?
		    dc_why("Content-Type \"%s\"", p.ctype) : NULL;
		resp_free(&p);
	}
	dc_verdict("debug_vars_200_json_type", why);

	why = http_get(r, "/debug/varz", NULL, &p);
	if (why == NULL) {
		why = p.status != 200 ? dc_why("status %d", p.status) :
		    strcmp(p.ctype, "text/plain; version=0.0.4; charset=utf-8")
		    != 0 ? dc_why("Content-Type \"%s\"", p.ctype) : NULL;
		resp_free(&p);
	}
	dc_verdict("debug_varz_200_prometheus_type", why);

	why = http_get(r, "/debug/check", NULL, &p);
	if (why == NULL) {
		why = p.status != 200 ? dc_why("status %d (%.80s)", p.status,
		    p.body) : strncmp(p.body,
		    "derp.Server ConsistencyCheck okay", 33) != 0 ?
		    dc_why("body \"%.80s\"", p.body) : strlen(p.body) != p.len ?
		    dc_why("the body holds a NUL byte: %zu bytes, text %zu",
		    p.len, strlen(p.body)) : NULL;
		resp_free(&p);
	}
	dc_verdict("debug_check_okay", why);

	dc_verdict("debug_unknown_404", expect_status(r, "/debug/nope", NULL,
	    404));
	dc_verdict("debug_xff_denied", expect_status(r, "/debug/vars",
	    "X-Forwarded-For: 127.0.0.1\r\n", 403));
	dc_verdict("debug_xff_denied_before_404", expect_status(r,
	    "/debug/nope", "X-Forwarded-For: 10.1.2.3\r\n", 403));
}

/* -debug-allow LIST from 127.0.0.1: each its own short-lived relay. */
static void
t_debug_allow(void)
{
	static const struct {
		const char *name, *list;
		int want;
	} cases[] = {
		{ "debug_allow_cidr_other_403", "10.0.0.0/8", 403 },
		{ "debug_allow_none_403", "none", 403 },
		{ "debug_allow_cidr_loopback8_200", "127.0.0.0/8", 200 },
		{ "debug_allow_any_200", "any", 200 },
		{ "debug_allow_loopback_200", "loopback", 200 },
		{ "debug_allow_list_host32_200", "10.0.0.0/8,127.0.0.1/32", 200 },
		/* Go's netip IsPrivate: RFC 1918 and fc00::/7, not loopback. */
		{ "debug_allow_private_tailscale_403", "private,tailscale", 403 },
		{ "debug_allow_v6_only_403", "::1/128", 403 },
	};
	static const char *const bad[] = { "bogus", "10.0.0.0/33" };
	size_t i;

	for (i = 0; i < NELEM(cases); i++) {
		struct relay r;
		const char *extra[] = { "-debug-allow", cases[i].list, NULL };
		const char *why = relay_start(&r, "allow", 0, 0, extra, NULL);

		if (why == NULL) {
			why = expect_status(&r, "/debug/vars", NULL,
			    cases[i].want);
			relay_kill(&r);
		}
		dc_verdict(cases[i].name, why == NULL ? NULL :
		    dc_why("-debug-allow %s: %s", cases[i].list, why));
	}
	/* A bad list: refused at start-up (fail early, one clear line). */
	for (i = 0; i < NELEM(bad); i++) {
		struct relay r;
		const char *extra[] = { "-debug-allow", bad[i], NULL };
		const char *why;

		memset(&r, 0, sizeof(r));
		snprintf(r.log_path, sizeof(r.log_path), "%s/allow-bad.log",
		    scratch);
		unlink(r.log_path);
		r.port = dc_free_port("127.0.0.1", SOCK_STREAM);
		r.stun = 0;
		if (relay_spawn(&r, extra, NULL) < 0) {
			why = "fork failed";
		} else if (!relay_wait_exit(&r, START_MS)) {
			relay_kill(&r);
			why = "still running: the bad list was accepted";
		} else {
			why = WIFEXITED(r.status) && WEXITSTATUS(r.status) != 0 ?
			    NULL : dc_why("%s", dc_status_str(r.status));
		}
		dc_verdict(i == 0 ? "debug_allow_bad_keyword_refused" :
		    "debug_allow_bad_prefix_refused", why);
	}
}

/* TS_DEBUG_KEY_PATH: ?debugkey= opens the pages whatever else holds.
 * The key is the file's content trimmed of white space at both ends, as
 * derper's bytes.TrimSpace (derper-compat.md 6). */
static void
t_debug_key(void)
{
	static const char *const names[] = { "debugkey_allowed_with_none",
	    "debugkey_allowed_with_xff", "debugkey_wrong_403",
	    "debugkey_absent_403", "debugkey_trimmed_both_ends" };
	static char env[700], env2[700];
	char path[600], path2[600];
	const char *extra[] = { "-debug-allow", "none", NULL };
	const char *envv[] = { env, NULL }, *envv2[] = { env2, NULL };
	struct relay r;
	const char *why;

	snprintf(path, sizeof(path), "%s/debug.key", scratch);
	snprintf(path2, sizeof(path2), "%s/debug-padded.key", scratch);
	if (write_file(path, "k3y-for-tests_9\n", 0600) < 0 ||
	    write_file(path2, " \tpadded-k3y \n", 0600) < 0) {
		dc_fail_all(names, NELEM(names), "cannot write the debug key files");
		return;
	}
	snprintf(env, sizeof(env), "TS_DEBUG_KEY_PATH=%s", path);
	snprintf(env2, sizeof(env2), "TS_DEBUG_KEY_PATH=%s", path2);
	why = relay_start(&r, "debugkey", 0, 0, extra, envv);
	if (why != NULL) {
		dc_fail_all(names, NELEM(names) - 1, why);
	} else {
		dc_verdict(names[0], expect_status(&r,
		    "/debug/vars?debugkey=k3y-for-tests_9", NULL, 200));
		dc_verdict(names[1], expect_status(&r,
		    "/debug/vars?debugkey=k3y-for-tests_9",
		    "X-Forwarded-For: 192.0.2.1\r\n", 200));
		dc_verdict(names[2], expect_status(&r,
		    "/debug/vars?debugkey=k3y-for-tests_8", NULL, 403));
		dc_verdict(names[3], expect_status(&r, "/debug/vars", NULL, 403));
		relay_kill(&r);
	}
	why = relay_start(&r, "debugkey2", 0, 0, extra, envv2);
	if (why == NULL) {
		why = expect_status(&r, "/debug/vars?debugkey=padded-k3y", NULL,
		    200);
		relay_kill(&r);
	}
	dc_verdict(names[4], why);
}

/* ---- metrics ------------------------------------------------------------ */

/* The series that must exist, as written in the text (label order). */
static const char *const series[] = {
	"derp_accepts", "derp_current_connections",
	"derp_current_home_connections", "derp_clients_total",
	"derp_clients_local", "derp_clients_remote", "derp_packets_received",
	"derp_bytes_received", "derp_packets_received_kind{kind=\"disco\"}",
	"derp_packets_received_kind{kind=\"other\"}", "derp_packets_sent",
	"derp_bytes_sent", "derp_packets_forwarded_in",
	"derp_packets_forwarded_out", "derp_got_ping", "derp_sent_pong",
	"derp_peer_gone_disconnected_frames", "derp_peer_gone_not_here_frames",
	"derp_home_moves_in", "derp_home_moves_out", "derp_watchers",
	"derp_sclient_write_timeouts", "derp_websocket_accepts",
	"derp_current_dup_client_keys", "derp_current_dup_client_conns",
	"derp_total_dup_client_conns",
	"stun_requests{disposition=\"success\"}",
	"stun_requests{disposition=\"not_stun\"}",
	"stun_requests{disposition=\"read_error\"}",
	"stun_requests{disposition=\"write_error\"}",
	"stun_addrfamily{family=\"ipv4\"}", "stun_addrfamily{family=\"ipv6\"}",
	"uptime_sec", "process_start_unix_time",
	"relay_slots_max", "relay_slots_in_use", "relay_slots_high_water",
	"relay_chunks_reserved", "relay_chunks_in_use", "relay_chunks_high_water",
	"relay_memory_reserved_bytes", "relay_handshakes_in_progress",
	"relay_handshakes_high_water",
	"relay_handshake_failures_total{stage=\"tls\"}",
	"relay_handshake_failures_total{stage=\"http\"}",
	"relay_handshake_failures_total{stage=\"derp\"}",
	"relay_admission_decisions_total{decision=\"allowed\"}",
	"relay_admission_decisions_total{decision=\"rejected\"}",
	"relay_admission_decisions_total{decision=\"fail_open\"}",
	"relay_log_lines_suppressed_total",
};
static const char *const tls_series[] = {
	"tls_listener_accepted_connections",
	"tls_listener_rejected_connections",
	"relay_cert_expiry_seconds{name=\"127.0.0.1\"}",
};

/* Types the spec fixes (derper-compat.md 11); NULL: any valid type. */
static const struct {
	const char *name, *type;
} types[] = {
	{ "derp_accepts", "counter" },
	{ "derp_current_connections", "gauge" },
	{ "derp_current_home_connections", "gauge" },
	{ "derp_clients_total", "gauge" }, { "derp_clients_local", "gauge" },
	{ "derp_clients_remote", "gauge" },
	{ "derp_current_dup_client_keys", "gauge" },
	{ "derp_current_dup_client_conns", "gauge" },
	{ "derp_total_dup_client_conns", "counter" },
	{ "derp_packets_received", "counter" },
	{ "derp_bytes_received", "counter" },
	{ "derp_packets_received_kind", "counter" },
	{ "derp_packets_sent", "counter" }, { "derp_bytes_sent", "counter" },
	{ "derp_packets_forwarded_in", "counter" },
	{ "derp_packets_forwarded_out", "counter" },
	{ "derp_packets_dropped", "counter" },
	{ "derp_bytes_dropped", "counter" },
	{ "derp_got_ping", "counter" }, { "derp_sent_pong", "counter" },
	{ "derp_peer_gone_disconnected_frames", "counter" },
	{ "derp_peer_gone_not_here_frames", "counter" },
	{ "derp_home_moves_in", "counter" }, { "derp_home_moves_out", "counter" },
	{ "derp_watchers", "gauge" },
	{ "derp_sclient_write_timeouts", "counter" },
	{ "derp_websocket_accepts", "counter" },
	{ "stun_requests", "counter" }, { "stun_addrfamily", "counter" },
	{ "tls_listener_accepted_connections", "counter" },
	{ "tls_listener_rejected_connections", "counter" },
	{ "relay_slots_max", "gauge" }, { "relay_slots_in_use", "gauge" },
	{ "relay_slots_high_water", "gauge" },
	{ "relay_chunks_reserved", "gauge" }, { "relay_chunks_in_use", "gauge" },
	{ "relay_chunks_high_water", "gauge" },
	{ "relay_memory_reserved_bytes", "gauge" },
	{ "relay_handshakes_in_progress", "gauge" },
	{ "relay_handshakes_high_water", "gauge" },
	{ "relay_handshake_failures_total", "counter" },
	{ "relay_admission_decisions_total", "counter" },
	{ "relay_log_lines_suppressed_total", "counter" },
	{ "relay_cert_expiry_seconds", "gauge" },
	{ "uptime_sec", NULL }, { "process_start_unix_time", NULL },
	{ "version", NULL },
};

static const char *const reasons[] = { "unknown_dest", "unknown_dest_on_fwd",
    "gone_disconnected", "queue_head", "queue_tail", "write_error",
    "dup_client" };
static const char *const kinds[] = { "disco", "other" };

/* Is there a line starting with s followed by a space? */
static int
has_series_line(const char *body, const char *s)
{
	size_t l = strlen(s);
	const char *p = body;

	while ((p = strstr(p, s)) != NULL) {
		if ((p == body || p[-1] == '\n') && p[l] == ' ')
			return 1;
		p += l;
	}
	return 0;
}

/* The value on the line starting "s " (0 and -1 when absent). */
static int
series_value(const char *body, const char *s, double *v)
{
	size_t l = strlen(s);
	const char *p = body;

	while ((p = strstr(p, s)) != NULL) {
		if ((p == body || p[-1] == '\n') && p[l] == ' ') {
			*v = strtod(p + l + 1, NULL);
			return 1;
		}
		p += l;
	}
	return 0;
}

static int
have_promtool(void)
{
	return access("/usr/bin/promtool", X_OK) == 0 ||
	    access("/usr/local/bin/promtool", X_OK) == 0;
}

/* promtool check metrics < body: NULL when it exits 0 (its output noted),
 * else why. */
static const char *
promtool_check(const char *body, const char *tag)
{
	char in[700], out[700];
	pid_t pid;
	int status = 0, i;
	char *text;

	snprintf(in, sizeof(in), "%s/varz-%s.txt", scratch, tag);
	snprintf(out, sizeof(out), "%s/promtool-%s.out", scratch, tag);
	if (write_file(in, body, 0644) < 0)
		return "cannot write the body to a file";
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return "fork failed";
	if (pid == 0) {
		int fi = open(in, O_RDONLY), fo = open(out, O_WRONLY | O_CREAT |
		    O_TRUNC, 0644);
		if (fi < 0 || fo < 0)
			_exit(126);
		dup2(fi, STDIN_FILENO);
		dup2(fo, STDOUT_FILENO);
		dup2(fo, STDERR_FILENO);
		execlp("promtool", "promtool", "check", "metrics", (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 2000; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		dc_sleep_ms(10);
	}
	if (i == 2000) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		return "promtool did not finish in 20 s";
	}
	/* Its lint problems as notes; the many "counter metrics should have
	 * _total suffix" ones (derper's counter names) counted, not listed. */
	text = dc_read_text(out, 65536, NULL);
	if (text != NULL && text[0] != '\0') {
		char *l, *save = NULL;
		int suffix = 0;

		for (l = strtok_r(text, "\n", &save); l != NULL;
		    l = strtok_r(NULL, "\n", &save)) {
			if (strstr(l, "counter metrics should have \"_total\" "
			    "suffix") != NULL && strncmp(l, "relay_", 6) != 0)
				suffix++;
			else
				dc_note("promtool (%s): %s", tag, l);
		}
		if (suffix > 0)
			dc_note("promtool (%s): and %d derper counters without a "
			    "_total suffix", tag, suffix);
	}
	free(text);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return NULL;
	/* Exit 3 is promtool's "lint problems only" (the text parsed; exit
	 * 1 is a parse error): derper's own names (derp_accepts, a counter
	 * without _total; uptime_sec) can never lint clean, so problems are
	 * reported above as notes, not failed. */
	if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
		dc_note("promtool (%s): exit 3: lint problems only (listed above)",
		    tag);
		return NULL;
	}
	return dc_why("promtool check metrics: %s (output above, body in %s)",
	    dc_status_str(status), in);
}

/* The static checks of one varz page (series, types, promtool) and vars
 * (groups).  tag: the relay ("plain", "tls"). */
static void
t_varz_static(const struct relay *r, const char *tag, int tls)
{
	static struct snap s;
	static struct flat f;
	struct resp p;
	char name[120], bad[1200];
	size_t bl, i, k;
	const char *why;
	double v;

	why = http_get(r, "/debug/varz", NULL, &p);
	if (why != NULL) {
		snprintf(name, sizeof(name), "%s_varz_promtool", tag);
		if (have_promtool())
			dc_fail(name, "%s", why);
		else
			dc_skip(name, "promtool not installed");
		snprintf(name, sizeof(name), "%s_varz_series_present", tag);
		dc_fail(name, "%s", why);
		snprintf(name, sizeof(name), "%s_varz_types", tag);
		dc_fail(name, "%s", why);
		snprintf(name, sizeof(name), "%s_varz_version_line", tag);
		dc_fail(name, "%s", why);
		snprintf(name, sizeof(name), "%s_vars_groups", tag);
		dc_fail(name, "%s", why);
		if (!tls) {
			dc_fail("plain_dropped_pairs_zero_at_start", "%s", why);
			dc_fail("plain_uptime_and_start_time", "%s", why);
		}
		return;
	}
	snprintf(name, sizeof(name), "%s_varz_promtool", tag);
	if (have_promtool())
		dc_verdict(name, promtool_check(p.body, tag));
	else
		dc_skip(name, "promtool not installed (/usr/bin/promtool)");

	bl = 0;
	bad[0] = '\0';
	for (i = 0; i < NELEM(series) + (tls ? NELEM(tls_series) : 0); i++) {
		const char *x = i < NELEM(series) ? series[i] :
		    tls_series[i - NELEM(series)];
		if (!has_series_line(p.body, x) && bl + 80 < sizeof(bad))
			bl += (size_t)snprintf(bad + bl, sizeof(bad) - bl, "%s%s",
			    bl > 0 ? " " : "", x);
	}
	for (i = 0; i < NELEM(reasons); i++)
		for (k = 0; k < NELEM(kinds); k++) {
			char x[120];
			snprintf(x, sizeof(x), "derp_packets_dropped{reason=\"%s\","
			    "kind=\"%s\"}", reasons[i], kinds[k]);
			if (!has_series_line(p.body, x) && bl + 80 < sizeof(bad))
				bl += (size_t)snprintf(bad + bl, sizeof(bad) - bl,
				    "%s%s", bl > 0 ? " " : "", x);
			snprintf(x, sizeof(x), "derp_bytes_dropped{reason=\"%s\","
			    "kind=\"%s\"}", reasons[i], kinds[k]);
			if (!has_series_line(p.body, x) && bl + 80 < sizeof(bad))
				bl += (size_t)snprintf(bad + bl, sizeof(bad) - bl,
				    "%s%s", bl > 0 ? " " : "", x);
		}
	snprintf(name, sizeof(name), "%s_varz_series_present", tag);
	dc_verdict(name, bl == 0 ? NULL : dc_why("missing: %s", bad));

	/* Every series has a # TYPE of its base name, of a valid kind, and
	 * the kind the spec gives where it gives one. */
	bl = 0;
	bad[0] = '\0';
	if (varz_parse(p.body, &s) < 0 && bl + 200 < sizeof(bad))
		bl += (size_t)snprintf(bad + bl, sizeof(bad) - bl,
		    "unparsable line \"%s\"", s.bad);
	for (i = 0; i < (size_t)s.n; i++) {
		char base[KEY_MAX], *c;
		const char *ty;

		snprintf(base, sizeof(base), "%s", s.s[i].key);
		if ((c = strchr(base, ',')) != NULL)
			*c = '\0';
		ty = snap_type(&s, base);
		if (ty == NULL || (strcmp(ty, "counter") != 0 &&
		    strcmp(ty, "gauge") != 0 && strcmp(ty, "untyped") != 0)) {
			if (bl + 80 < sizeof(bad) && (i == 0 || strncmp(
			    s.s[i - 1].key, base, strlen(base)) != 0))
				bl += (size_t)snprintf(bad + bl, sizeof(bad) - bl,
				    "%s%s: type %s", bl > 0 ? "; " : "", base,
				    ty != NULL ? ty : "none");
			continue;
		}
	}
	for (i = 0; i < NELEM(types); i++) {
		const char *ty = snap_type(&s, types[i].name);
		if (ty != NULL && types[i].type != NULL &&
		    strcmp(ty, types[i].type) != 0 && bl + 80 < sizeof(bad))
			bl += (size_t)snprintf(bad + bl, sizeof(bad) - bl,
			    "%s%s: %s, want %s", bl > 0 ? "; " : "",
			    types[i].name, ty, types[i].type);
	}
	snprintf(name, sizeof(name), "%s_varz_types", tag);
	dc_verdict(name, bl == 0 ? NULL : dc_why("%s", bad));

	{
		const char *q = p.body;
		int found = 0;
		while ((q = strstr(q, "version{")) != NULL) {
			const char *e = strchr(q, '\n');
			if ((q == p.body || q[-1] == '\n') && e != NULL &&
			    e - q > 3 && memcmp(e - 2, " 1", 2) == 0)
				found = 1;
			q += 8;
		}
		snprintf(name, sizeof(name), "%s_varz_version_line", tag);
		dc_verdict(name, found ? NULL : "no line \"version{...} 1\"");
	}

	if (!tls) {
		/* A relay just started: every dropped pair present at 0. */
		bl = 0;
		bad[0] = '\0';
		for (i = 0; i < NELEM(reasons); i++)
			for (k = 0; k < NELEM(kinds); k++) {
				char x[120];
				int w;
				for (w = 0; w < 2; w++) {
					snprintf(x, sizeof(x), "derp_%s_dropped{"
					    "reason=\"%s\",kind=\"%s\"}", w ?
					    "bytes" : "packets", reasons[i],
					    kinds[k]);
					if ((!series_value(p.body, x, &v) ||
					    v != 0) && bl + 90 < sizeof(bad))
						bl += (size_t)snprintf(bad + bl,
						    sizeof(bad) - bl, "%s%s",
						    bl > 0 ? " " : "", x);
				}
			}
		dc_verdict("plain_dropped_pairs_zero_at_start", bl == 0 ? NULL :
		    dc_why("absent or not 0: %s", bad));

		{
			double up = -1, st = -1, now = (double)time(NULL);
			double ran = (double)(dc_now_ms() - r->started_ms) / 1000;
			int fu = series_value(p.body, "uptime_sec", &up);
			int fs = series_value(p.body, "process_start_unix_time",
			    &st);
			why = !fu || !fs ? "uptime_sec or process_start_unix_time"
			    " missing" : up < 0 || up > ran + 2 ?
			    dc_why("uptime_sec %g, relay ran %.1f s", up, ran) :
			    st < (double)r->started_unix - 2 || st > now + 2 ?
			    dc_why("process_start_unix_time %.0f, started at %ld",
			    st, (long)r->started_unix) : NULL;
			dc_verdict("plain_uptime_and_start_time", why);
		}
	}
	resp_free(&p);

	/* vars: one object, the groups and the top-level values. */
	why = vars_snap(r, &f);
	if (why == NULL) {
		double d;
		why = !flat_has_prefix(&f, "derp") ? "no \"derp\" group" :
		    !flat_has_prefix(&f, "stun") ? "no \"stun\" group" :
		    !flat_has_prefix(&f, "relay") ? "no \"relay\" group" :
		    tls && !flat_has_prefix(&f, "tls_listener") ?
		    "no \"tls_listener\" group" :
		    !flat_find(&f, "uptime_sec", &d) ? "no top-level uptime_sec" :
		    !flat_find(&f, "process_start_unix_time", &d) ?
		    "no top-level process_start_unix_time" :
		    !flat_find(&f, "derp.accepts", &d) ? "no derp.accepts" :
		    !flat_find(&f, "derp.packets_dropped.unknown_dest.disco", &d)
		    ? "no derp.packets_dropped.unknown_dest.disco" :
		    !flat_find(&f, "derp.bytes_dropped.dup_client.other", &d) ?
		    "no derp.bytes_dropped.dup_client.other" :
		    !flat_find(&f, "stun.requests.not_stun", &d) ?
		    "no stun.requests.not_stun" :
		    !flat_find(&f, "relay.handshake_failures_total.derp", &d) ?
		    "no relay.handshake_failures_total.derp" : NULL;
	}
	snprintf(name, sizeof(name), "%s_vars_groups", tag);
	dc_verdict(name, why);
}

/* One STUN exchange with the relay's STUN port: a garbage datagram first
 * when garbage, then a binding request; 1 when the reply came. */
static int
stun_exchange(const struct relay *r, int garbage, int ms)
{
	struct sockaddr_in a;
	uint8_t req[STUN_REQUEST_BYTES], txid[STUN_TXID_BYTES], got[128];
	uint8_t rtx[STUN_TXID_BYTES], addr[16];
	size_t alen;
	uint16_t port;
	struct pollfd p;
	int fd = socket(AF_INET, SOCK_DGRAM, 0), okr = 0;
	int64_t deadline = dc_now_ms() + ms;

	if (fd < 0)
		return 0;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)r->stun_port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return 0;
	}
	if (garbage) {
		static const char junk[] = "definitely not a STUN message";
		(void)send(fd, junk, sizeof(junk) - 1, 0);
	}
	dc_random(txid, sizeof(txid));
	stun_build_request(req, txid);
	if (send(fd, req, sizeof(req), 0) != (ssize_t)sizeof(req)) {
		close(fd);
		return 0;
	}
	while (dc_left_ms(deadline) > 0) {
		ssize_t n;

		p.fd = fd;
		p.events = POLLIN;
		if (poll(&p, 1, dc_left_ms(deadline)) != 1)
			break;
		n = recv(fd, got, sizeof(got), 0);
		if (n <= 0)
			break;
		if (stun_parse_response(got, (size_t)n, rtx, addr, &alen,
		    &port) == 0 && memcmp(rtx, txid, sizeof(txid)) == 0) {
			okr = 1;
			break;
		}
	}
	close(fd);
	return okr;
}

/* Known traffic, and the counters that must follow it exactly. */
static void
t_traffic(const struct relay *r)
{
	static const char *const names[] = { "accepts_connections_up",
	    "packets_relayed_counted", "disco_counted", "unknown_dest_dropped",
	    "not_here_dropped_and_peer_gone", "ping_pong_counted",
	    "home_connections_gauge", "dup_client_gauges", "stun_counted",
	    "handshake_failure_http_counted", "handshake_failure_derp_counted",
	    "handshakes_in_progress_gauge", "relay_pool_gauges_sane",
	    "connections_down_peer_gone", "vars_varz_agree_after_traffic" };
	static struct snap s0, s1;
	static uint8_t pkt[2048];
	struct dclient *a = NULL, *b = NULL, *a2 = NULL;
	uint8_t unknown[32];
	const char *why;
	double got;
	int i, n = 0;

	if ((why = varz_snap(r, &s0)) != NULL) {
		dc_fail_all(names, NELEM(names), why);
		return;
	}
	a = cl_open(r, NULL, NULL, NULL, 0);
	b = cl_open(r, NULL, NULL, NULL, 0);
	if (a == NULL || b == NULL) {
		dc_fail_all(names, NELEM(names), "two clients could not connect");
		dc_free(a);
		dc_free(b);
		return;
	}
	/* 1: two registrations. */
	why = varz_snap(r, &s1);
	if (why == NULL) {
		static const struct dwant w[] = { { "derp_accepts", 2 },
		    { "derp_current_connections", 2 },
		    { "derp_clients_local", 2 }, { "derp_clients_total", 2 },
		    { "derp_clients_remote", 0 } };
		why = check_deltas(&s0, &s1, w, NELEM(w));
	}
	dc_verdict(names[0], why);

	/* 2: ten packets of 100 bytes A to B. */
	s0 = s1;
	why = NULL;
	for (i = 0; i < 10 && why == NULL; i++) {
		make_pkt(pkt, 100, (uint32_t)i + 1);
		if (dc_send_packet(a, b->pk, pkt, 100) < 0 ||
		    !expect_pkt(b, a->pk, pkt, 100))
			why = dc_why("packet %d not relayed", i + 1);
	}
	if (why == NULL && (why = varz_snap(r, &s1)) == NULL) {
		static const struct dwant w[] = { { "derp_packets_received", 10 },
		    { "derp_bytes_received", 1000 }, { "derp_packets_sent", 10 },
		    { "derp_bytes_sent", 1000 },
		    { "derp_packets_received_kind,other", 10 },
		    { "derp_packets_received_kind,disco", 0 } };
		why = check_deltas(&s0, &s1, w, NELEM(w));
	}
	dc_verdict(names[1], why);

	/* 3: one disco packet A to B. */
	s0 = s1;
	make_disco(pkt, DISCO_BYTES, a->pk);
	why = dc_send_packet(a, b->pk, pkt, DISCO_BYTES) < 0 ||
	    !expect_pkt(b, a->pk, pkt, DISCO_BYTES) ? "disco packet not relayed" :
	    varz_snap(r, &s1);
	if (why == NULL) {
		static const struct dwant w[] = {
		    { "derp_packets_received_kind,disco", 1 },
		    { "derp_packets_received_kind,other", 0 },
		    { "derp_packets_received", 1 },
		    { "derp_bytes_received", DISCO_BYTES },
		    { "derp_packets_sent", 1 } };
		why = check_deltas(&s0, &s1, w, NELEM(w));
	}
	dc_verdict(names[2], why);

	/* 4: a 50-byte packet to a key nobody has (not disco: no PeerGone).
	 * packets_received counts it too: SendPacket frames (spec 11). */
	s0 = s1;
	dc_random(unknown, sizeof(unknown));
	make_pkt(pkt, 50, 1000);
	why = dc_send_packet(a, unknown, pkt, 50) < 0 || barrier(a) < 0 ?
	    "send or barrier failed" : varz_snap(r, &s1);
	if (why == NULL) {
		static const struct dwant w[] = {
		    { "derp_packets_dropped,unknown_dest,other", 1 },
		    { "derp_bytes_dropped,unknown_dest,other", 50 },
		    { "derp_packets_dropped,unknown_dest,disco", 0 },
		    { "derp_packets_received", 1 },
		    { "derp_packets_sent", 0 } };
		why = check_deltas(&s0, &s1, w, NELEM(w));
	}
	dc_verdict(names[3], why);

	/* 5: a disco packet to an unknown key: dropped, and PeerGone NotHere. */
	s0 = s1;
	peer_gone_seen[1] = 0;
	make_disco(pkt, DISCO_BYTES, a->pk);
	why = dc_send_packet(a, unknown, pkt, DISCO_BYTES) < 0 ? "send failed" :
	    !expect_peer_gone(a, PEER_GONE_NOT_HERE, IO_MS) ?
	    "no PeerGone(NotHere) for the unknown key" : varz_snap(r, &s1);
	if (why == NULL) {
		static const struct dwant w[] = {
		    { "derp_packets_dropped,unknown_dest,disco", 1 },
		    { "derp_bytes_dropped,unknown_dest,disco", DISCO_BYTES },
		    { "derp_peer_gone_not_here_frames", 1 } };
		why = check_deltas(&s0, &s1, w, NELEM(w));
	}
	dc_verdict(names[4], why);

	/* 6: three pings. */
	if ((why = varz_snap(r, &s0)) == NULL) {
		for (i = 0; i < 3 && why == NULL; i++)
			if (barrier(a) < 0)
				why = "no Pong";
		if (why == NULL && (why = varz_snap(r, &s1)) == NULL) {
			static const struct dwant w[] = { { "derp_got_ping", 3 },
			    { "derp_sent_pong", 3 } };
			why = check_deltas(&s0, &s1, w, NELEM(w));
		}
	}
	dc_verdict(names[5], why);

	/* 7: A says this is its home relay. */
	{
		uint8_t one = 1;
		double base;
		why = need_key(&s1, "derp_current_home_connections", &base);
		if (why == NULL)
		why = dc_send_frame(a, FT_NOTE_PREFERRED, &one, 1) < 0 ||
		    barrier(a) < 0 ? "NotePreferred not sent" :
		    !wait_value(r, "derp_current_home_connections", base + 1,
		    METRIC_MS, &got) ? dc_why("derp_current_home_connections %s,"
		    " want %g", val_str(got), base + 1) : NULL;
	}
	dc_verdict(names[6], why);

	/* 8: a second connection with A's key. */
	if ((why = varz_snap(r, &s0)) == NULL) {
		a2 = cl_open(r, NULL, a->sk, a->pk, 0);
		if (a2 == NULL)
			why = "the duplicate could not connect";
		else if ((why = varz_snap(r, &s1)) == NULL) {
			static const struct dwant w[] = {
			    { "derp_current_dup_client_keys", 1 },
			    { "derp_current_dup_client_conns", 2 },
			    { "derp_total_dup_client_conns", 1 },
			    { "derp_current_connections", 1 },
			    { "derp_clients_local", 0 } };
			why = check_deltas(&s0, &s1, w, NELEM(w));
		}
		if (a2 != NULL) {
			dc_free(a2);
			if (why == NULL && !wait_value(r,
			    "derp_current_dup_client_keys", sv(&s0,
			    "derp_current_dup_client_keys", NULL), METRIC_MS,
			    &got))
				why = dc_why("derp_current_dup_client_keys %s "
				    "after the duplicate left", val_str(got));
		}
	}
	dc_verdict(names[7], why);

	/* 9: STUN: a garbage datagram, then a binding request. */
	if ((why = varz_snap(r, &s0)) == NULL) {
		why = !stun_exchange(r, 1, IO_MS) ? "no STUN reply" :
		    varz_snap(r, &s1);
		if (why == NULL) {
			static const struct dwant w[] = {
			    { "stun_requests,success", 1 },
			    { "stun_requests,not_stun", 1 },
			    { "stun_addrfamily,ipv4", 1 },
			    { "stun_addrfamily,ipv6", 0 } };
			why = check_deltas(&s0, &s1, w, NELEM(w));
		}
	}
	dc_verdict(names[8], why);

	/* 10: garbage instead of an HTTP request. */
	if ((why = varz_snap(r, &s0)) == NULL) {
		struct dclient *g = dc_new();
		double base;
		static const char junk[] = "\x16\x03garbage\r\n\r\n";

		why = need_key(&s0, "relay_handshake_failures_total,http", &base);
		if (why != NULL)
			;
		else if (g == NULL || dc_connect(g, "127.0.0.1", r->port, 0, NULL,
		    CONNECT_MS) < 0 || dc_write(g, junk, sizeof(junk) - 1) < 0)
			why = "cannot send the garbage";
		else
			(void)dc_expect_close(g, IO_MS);
		dc_free(g);
		if (why == NULL && !wait_value(r, "relay_handshake_failures_total,http",
		    base + 1, METRIC_MS, &got))
			why = dc_why("relay_handshake_failures_total{stage=\"http\"} "
			    "%s, want %g", val_str(got), base + 1);
	}
	dc_verdict(names[9], why);

	/* 11: a ClientInfo that does not open. */
	if ((why = varz_snap(r, &s0)) == NULL) {
		double base;

		if ((why = need_key(&s0, "relay_handshake_failures_total,derp",
		    &base)) != NULL)
			;
		else if (bad_client_info(r, 1) < 0)
			why = "cannot send the bad ClientInfo";
		else if (!wait_value(r, "relay_handshake_failures_total,derp",
		    base + 1, METRIC_MS, &got))
			why = dc_why("relay_handshake_failures_total{stage=\"derp\"} "
			    "%s, want %g", val_str(got), base + 1);
	}
	dc_verdict(names[10], why);

	/* 12: a connection that sent half a request is in progress. */
	if ((why = varz_snap(r, &s0)) == NULL) {
		double base;
		int fd = -1;

		if ((why = need_key(&s0, "relay_handshakes_in_progress", &base))
		    != NULL)
			;
		else if (tcp_connect(r->port, CONNECT_MS, &fd) != 0 ||
		    send(fd, "GET /derp HTTP/1.1\r\n", 20, MSG_NOSIGNAL) != 20)
			why = "cannot connect";
		else if (!wait_value(r, "relay_handshakes_in_progress",
		    base + 1, METRIC_MS, &got))
			why = dc_why("relay_handshakes_in_progress %s with a "
			    "half request open, want %g", val_str(got), base + 1);
		else if ((why = varz_snap(r, &s1)) == NULL &&
		    sv(&s1, "relay_handshakes_high_water", NULL) < base + 1)
			why = "relay_handshakes_high_water below in_progress";
		if (fd >= 0)
			close(fd);
		if (why == NULL && !wait_value(r, "relay_handshakes_in_progress",
		    base, METRIC_MS, &got))
			why = dc_why("relay_handshakes_in_progress %s after the"
			    " close, want %g", val_str(got), base);
	}
	dc_verdict(names[11], why);

	/* 13: the pools. */
	if ((why = varz_snap(r, &s1)) == NULL) {
		double smax = sv(&s1, "relay_slots_max", NULL),
		    suse = sv(&s1, "relay_slots_in_use", NULL),
		    shw = sv(&s1, "relay_slots_high_water", NULL),
		    ctot = sv(&s1, "relay_chunks_reserved", NULL),
		    cuse = sv(&s1, "relay_chunks_in_use", NULL),
		    chw = sv(&s1, "relay_chunks_high_water", NULL),
		    mem = sv(&s1, "relay_memory_reserved_bytes", NULL),
		    conns = sv(&s1, "derp_current_connections", NULL);
		why = smax <= 0 ? "relay_slots_max not > 0" :
		    suse < conns ? dc_why("relay_slots_in_use %g < "
		    "derp_current_connections %g", suse, conns) :
		    suse > smax ? "relay_slots_in_use > relay_slots_max" :
		    shw < suse ? "relay_slots_high_water < in_use" :
		    ctot <= 0 ? "relay_chunks_reserved not > 0" :
		    cuse < 0 || cuse > ctot ? "relay_chunks_in_use out of range" :
		    chw < cuse || chw > ctot ?
		    "relay_chunks_high_water out of range" :
		    mem <= 0 ? "relay_memory_reserved_bytes not > 0" : NULL;
	}
	dc_verdict(names[12], why);

	/* 14: A leaves: the gauges drop, and B, which received from A, hears
	 * PeerGone(disconnected) for it (derper's sentTo: src => dst). */
	if ((why = varz_snap(r, &s0)) == NULL) {
		double conns, gone;

		why = need_key(&s0, "derp_current_connections", &conns);
		if (why == NULL)
			why = need_key(&s0, "derp_peer_gone_disconnected_frames",
			    &gone);
		peer_gone_seen[0] = 0;
		dc_free(a);
		a = NULL;
		if (why == NULL)
			why = !expect_peer_gone(b, PEER_GONE_DISCONNECTED, IO_MS) ?
			    "B got no PeerGone(disconnected) for A" :
			    !wait_value(r, "derp_current_connections", conns - 1,
			    METRIC_MS, &got) ? dc_why("derp_current_connections "
			    "%s, want %g", val_str(got), conns - 1) :
			    varz_snap(r, &s1);
		if (why == NULL) {
			static const struct dwant w[] = {
			    { "derp_clients_local", -1 },
			    { "derp_clients_total", -1 },
			    { "derp_peer_gone_disconnected_frames", 1 } };
			why = check_deltas(&s0, &s1, w, NELEM(w));
		}
	}
	dc_verdict(names[13], why);

	why = vars_varz_agree(r, &n);
	dc_verdict(names[14], why);
	dc_note("vars_varz_agree_after_traffic compared %d series", n);
	dc_free(a);
	dc_free(b);
}

/* ---- the TLS relay ------------------------------------------------------ */

static const char *
make_cert(void)
{
	char crt[700], key[700], err[200];
	struct cert_store cs;
	int64_t nb;

	if (mkdir(cert_dir, 0700) < 0 && errno != EEXIST)
		return dc_why("mkdir %s: %s", cert_dir, strerror(errno));
	snprintf(crt, sizeof(crt), "%s/127.0.0.1.crt", cert_dir);
	snprintf(key, sizeof(key), "%s/127.0.0.1.key", cert_dir);
	if (cert_generate_ip(crt, key, "127.0.0.1", time(NULL), err,
	    sizeof(err)) != 0 ||
	    cert_load_files(&cs, crt, key, err, sizeof(err)) != 0)
		return dc_why("certificate: %s", err);
	if (cert_leaf_validity(&cs, &nb, &cert_not_after) != 0)
		cert_not_after = 0;
	cert_free(&cs);
	return NULL;
}

/* A shutdown drain with a reader that starts late: see t_drain. */
static void t_drain(const struct relay *r0, const char *tag, int tls, int sig);

static void
t_tls(void)
{
	static const char *const names[] = { "tls_debug_vars_200",
	    "tls_varz_promtool", "tls_varz_series_present", "tls_varz_types",
	    "tls_varz_version_line", "tls_vars_groups",
	    "tls_accepted_counted", "tls_cert_expiry_seconds",
	    "tls_handshake_failure_counted", "tls_vars_varz_agree" };
	static struct snap s0, s1;
	struct relay r;
	const char *why;
	double got;
	int n;

	why = make_cert();
	if (why == NULL)
		why = relay_start(&r, "tls", 1, 1, NULL, NULL);
	if (why != NULL) {
		dc_fail_all(names, NELEM(names), why);
		return;
	}
	dc_verdict(names[0], expect_status(&r, "/debug/vars", NULL, 200));
	t_varz_static(&r, "tls", 1);

	if ((why = varz_snap(&r, &s0)) == NULL) {
		struct dclient *c = cl_open(&r, NULL, NULL, NULL, 0);
		why = c == NULL ? "a TLS client could not connect" :
		    varz_snap(&r, &s1);
		dc_free(c);
		if (why == NULL && sv(&s1, "tls_listener_accepted_connections",
		    NULL) - sv(&s0, "tls_listener_accepted_connections", NULL) < 1)
			why = dc_why("tls_listener_accepted_connections %+g "
			    "after a TLS client", sv(&s1,
			    "tls_listener_accepted_connections", NULL) - sv(&s0,
			    "tls_listener_accepted_connections", NULL));
	}
	dc_verdict(names[6], why);

	if ((why = varz_snap(&r, &s1)) == NULL) {
		int f;
		double e = sv(&s1, "relay_cert_expiry_seconds,127.0.0.1", &f);
		double want = (double)(cert_not_after - (int64_t)time(NULL));
		why = !f ? "relay_cert_expiry_seconds missing" :
		    cert_not_after == 0 ? "cannot read the certificate's notAfter" :
		    e < want - 120 || e > want + 120 ?
		    dc_why("relay_cert_expiry_seconds %g, notAfter is %g s "
		    "away", e, want) : NULL;
	}
	dc_verdict(names[7], why);

	/* A ClientHello that cannot be parsed. */
	if ((why = varz_snap(&r, &s0)) == NULL) {
		double base;
		uint8_t hello[DC_BAD_HELLO_BYTES];
		int fd = -1;

		dc_bad_client_hello(hello);
		if ((why = need_key(&s0, "relay_handshake_failures_total,tls", &base))
		    != NULL)
			;
		else if (tcp_connect(r.port, CONNECT_MS, &fd) != 0 ||
		    send(fd, hello, sizeof(hello), MSG_NOSIGNAL) !=
		    (ssize_t)sizeof(hello))
			why = "cannot send the bad ClientHello";
		else if (!wait_value(&r, "relay_handshake_failures_total,tls",
		    base + 1, METRIC_MS, &got))
			why = dc_why("relay_handshake_failures_total{stage=\"tls\"} %s,"
			    " want %g", val_str(got), base + 1);
		if (fd >= 0)
			close(fd);
	}
	dc_verdict(names[8], why);

	why = vars_varz_agree(&r, &n);
	dc_verdict(names[9], why);

	t_drain(&r, "tls", 1, SIGTERM);
	relay_kill(&r);
}

/* ---- clean restart ------------------------------------------------------ */

/*
 * A and B on the relay; B with a small receive buffer reads nothing while
 * A sends DRAIN_COUNT packets of DRAIN_BYTES (TLS: TLS_DRAIN_COUNT of
 * TLS_DRAIN_BYTES), numbered, and a Ping whose Pong says the relay has
 * them all queued or written; relay_chunks_in_use must show some queued.
 * Then sig: new
 * connections are refused at once (and STUN is gone), B says one more
 * frame the relay must read and discard, then B reads: every packet in
 * order, then the end: a FIN (plain) or close_notify (TLS), never a reset;
 * A too sees the end; the relay exits 0 within STOP_MS, logging
 * "shutting down" and "stopped".  r0 is a running relay (TLS) or NULL
 * (a fresh plain relay is started).
 */
/* Note when the relay has exited (once): *t_exit = the time seen. */
static void
track_exit(struct relay *r, int64_t *t_exit)
{
	if (*t_exit == 0 && relay_wait_exit(r, 0))
		*t_exit = dc_now_ms();
}

/* The next frame of c, plain (FIN and reset told apart) or TLS. */
static int
any_frame(struct dclient *c, uint8_t *t, size_t *len, int ms, int *reset)
{
	*reset = 0;
	if (c->use_tls)
		return dc_recv_frame(c, t, fbuf, sizeof(fbuf), len, ms);
	return plain_frame(c, t, len, ms, reset);
}

/* Why the end of c's stream was not clean (r2: any_frame's last result),
 * or NULL: EOF by a FIN (plain), close_notify (TLS). */
static const char *
end_why(const struct dclient *c, int r2, int reset)
{
	if (r2 == -2)
		return "no end of stream";
	if (r2 != 0)
		return "read error";
	if (c->use_tls)
		return c->tls_broken ? "the stream ended without close_notify "
		    "(EOF or reset)" : c->tls_err != BR_ERR_OK ?
		    dc_why("TLS error %d", c->tls_err) : NULL;
	return reset ? "ECONNRESET instead of a FIN" : NULL;
}

static void
t_drain(const struct relay *r0, const char *tag, int tls, int sig)
{
	const char *names[7];
	static char nb[7][80];
	static const char *const suffix[] = { "queued_before_signal",
	    "refused_after_signal", "packets_in_order", "end_is_clean",
	    "idle_client_end_clean", "exit_0_in_time", "logs_shutting_down_stopped" };
	static uint8_t pkt[TLS_DRAIN_BYTES];
	size_t psize = tls ? TLS_DRAIN_BYTES : DRAIN_BYTES, len;
	struct relay rl, *r;
	struct dclient *a = NULL, *b = NULL;
	const char *why;
	int64_t t_sig, t_exit = 0, deadline;
	int i, got = 0, last = 0, inorder = 1, reset = 0, r2 = -2, rc, fd;
	int count = tls ? TLS_DRAIN_COUNT : DRAIN_COUNT;
	uint8_t t;

	for (i = 0; i < 7; i++) {
		snprintf(nb[i], sizeof(nb[i]), "drain_%s_%s", tag, suffix[i]);
		names[i] = nb[i];
	}
	if (r0 == NULL) {
		why = relay_start(&rl, sig == SIGINT ? "drain-int" : "drain", 0, 1,
		    NULL, NULL);
		if (why != NULL) {
			dc_fail_all(names, NELEM(names), why);
			return;
		}
		r = &rl;
	} else {
		r = (struct relay *)r0;
		if (r->pid <= 0) {
			dc_fail_all(names, NELEM(names), "relay not running");
			return;
		}
	}
	a = cl_open(r, NULL, NULL, NULL, 0);
	b = tls ? cl_open(r, NULL, NULL, NULL, TLS_RCVBUF) :
	    cl_open_small(r, SMALL_RCVBUF, SMALL_MSS);
	why = a == NULL || b == NULL ? "two clients could not connect" : NULL;
	for (i = 1; i <= count && why == NULL; i++) {
		make_pkt(pkt, psize, (uint32_t)i);
		if (dc_send_packet(a, b->pk, pkt, psize) < 0)
			why = dc_why("send %d failed", i);
	}
	if (why == NULL && barrier(a) < 0)
		why = "no Pong after the packets";
	/* The drain has work: packets wait in the relay's queue, beyond
	 * what the kernel took (relay_chunks_in_use counts them). */
	if (why == NULL) {
		static struct snap q;
		double inuse;

		why = varz_snap(r, &q);
		if (why == NULL)
			why = need_key(&q, "relay_chunks_in_use", &inuse);
		if (why == NULL)
			dc_note("drain_%s: relay_chunks_in_use %g at the signal", tag,
			    inuse);
		if (why == NULL && getenv("TEST_OPS_DEBUG") != NULL) {
			int j;
			for (j = 0; j < q.n; j++)
				if (q.s[j].v != 0 && (strstr(q.s[j].key, "drop") ||
				    strstr(q.s[j].key, "evict") ||
				    strstr(q.s[j].key, "spare") ||
				    strstr(q.s[j].key, "packets_")))
					dc_note("  %s %g", q.s[j].key, q.s[j].v);
		}
		if (why == NULL && inuse < 1)
			why = "relay_chunks_in_use 0: nothing queued in the relay";
	}
	dc_verdict(names[0], why);
	if (why != NULL) {
		dc_fail_all(names + 1, NELEM(names) - 1, "no traffic queued");
		dc_free(a);
		dc_free(b);
		relay_kill(r);
		return;
	}

	t_sig = dc_now_ms();
	deadline = t_sig + 2 * STOP_MS;
	kill(r->pid, sig);
	/* Listeners closed at once: a connect is refused within
	 * REFUSED_AFTER_MS (tried every 10 ms: the signal's delivery and
	 * the relay's wake-up take a moment, longer under sanitizers). */
	do {
		dc_sleep_ms(10);
		rc = tcp_connect(r->port, 1000, &fd);
		if (fd >= 0)
			close(fd);
	} while (!conn_refused(rc) && dc_now_ms() - t_sig < REFUSED_AFTER_MS);
	why = conn_refused(rc) ? NULL : rc == 0 ?
	    dc_why("new connections still accepted %lld ms after the signal",
	    (long long)(dc_now_ms() - t_sig)) : dc_why("connect: %s, want "
	    "ECONNREFUSED", strerror(rc));
	dc_note("drain_%s: connect refused %lld ms after the signal", tag,
	    (long long)(dc_now_ms() - t_sig));
	if (why == NULL && r->stun && stun_exchange(r, 0, 200))
		why = "STUN still answers after the signal";
	dc_verdict(names[1], why);

	/* Input the relay has not read when it closes: a NotePreferred.  It
	 * must be read and dropped, or the kernel answers the close with a
	 * reset. */
	{
		uint8_t zero = 0;
		(void)dc_send_frame(b, FT_NOTE_PREFERRED, &zero, 1);
	}
	for (i = 0; i < 4 * count && dc_left_ms(deadline) > 0; i++) {
		r2 = any_frame(b, &t, &len, dc_left_ms(deadline), &reset);
		track_exit(r, &t_exit);
		if (r2 != 1)
			break;
		if (t == FT_RECV_PACKET && len == 32 + psize) {
			int seq = fbuf[33] << 24 | fbuf[34] << 16 | fbuf[35] << 8 |
			    fbuf[36];
			if (seq <= last)
				inorder = 0;
			last = seq;
			got++;
		}
	}
	dc_note("drain_%s: B read %d packets, its end %lld ms after the signal",
	    tag, got, (long long)(dc_now_ms() - t_sig));
	dc_verdict(names[2], !inorder ? "packets out of order" :
	    last != count ? dc_why("the last packet B got is %d of %d"
	    " (%d received)", last, count, got) : !tls && got != count ?
	    dc_why("%d of %d packets arrived (none may be dropped: fewer "
	    "than the queue depth)", got, count) : NULL);
	dc_verdict(names[3], end_why(b, r2, reset));
	dc_close(b);	/* as a client does: the relay need not wait for it */

	/* A read nothing; its end too must be clean. */
	r2 = -2;
	for (i = 0; i < 100 && dc_left_ms(deadline) > 0; i++) {
		r2 = any_frame(a, &t, &len, dc_left_ms(deadline), &reset);
		track_exit(r, &t_exit);
		if (r2 != 1)
			break;
	}
	dc_verdict(names[4], end_why(a, r2, reset));
	dc_close(a);

	if (t_exit == 0 && relay_wait_exit(r, STOP_MS - (int)(dc_now_ms() -
	    t_sig)))
		t_exit = dc_now_ms();
	if (t_exit == 0) {
		relay_kill(r);
		why = dc_why("still running %d ms after the signal; killed",
		    STOP_MS);
	} else {
		why = !WIFEXITED(r->status) || WEXITSTATUS(r->status) != 0 ?
		    dc_status_str(r->status) : t_exit - t_sig > STOP_MS ?
		    dc_why("exit %lld ms after the signal", (long long)(t_exit -
		    t_sig)) : NULL;
		dc_note("drain_%s: exit %lld ms after signal %d", tag,
		    (long long)(t_exit - t_sig), sig);
	}
	dc_verdict(names[5], why);
	dc_verdict(names[6], !log_has(r, "shutting down", 0) ?
	    "no \"shutting down\" line" : !log_has(r, "stopped", 0) ?
	    "no \"stopped\" line" : NULL);
	dc_free(a);
	dc_free(b);
	if (r0 == NULL)
		relay_kill(r);
}

/*
 * B never reads: the drain cannot finish.  once: a single SIGTERM, the
 * relay must still exit 0 within 1 s + slack and B see a FIN after what
 * made it out.  Else a second SIGTERM SECOND_SIGNAL_MS later: exit status
 * 1 right away.
 */
static void
t_stuck(int twice)
{
	const char *names[2];
	static uint8_t pkt[STUCK_BYTES];
	struct relay r;
	struct dclient *a = NULL, *b = NULL;
	const char *why;
	int64_t t_sig, t_second = 0, t_exit;
	int i, alive = 0;

	names[0] = twice ? "second_signal_exit_1_at_once" :
	    "drain_bounded_exit_0";
	names[1] = twice ? "second_signal_before_drain_end" :
	    "drain_bounded_reader_sees_fin";
	why = relay_start(&r, twice ? "stuck2" : "stuck", 0, 0, NULL, NULL);
	if (why != NULL) {
		dc_fail_all(names, 2, why);
		return;
	}
	a = cl_open(&r, NULL, NULL, NULL, 0);
	b = cl_open_small(&r, SMALL_RCVBUF, SMALL_MSS);
	why = a == NULL || b == NULL ? "two clients could not connect" : NULL;
	for (i = 1; i <= DRAIN_COUNT && why == NULL; i++) {
		make_pkt(pkt, STUCK_BYTES, (uint32_t)i);
		if (dc_send_packet(a, b->pk, pkt, STUCK_BYTES) < 0)
			why = "send failed";
	}
	if (why == NULL && barrier(a) < 0)
		why = "no Pong after the packets";
	if (why != NULL) {
		dc_fail_all(names, 2, why);
		dc_free(a);
		dc_free(b);
		relay_kill(&r);
		return;
	}
	t_sig = dc_now_ms();
	kill(r.pid, SIGTERM);
	if (twice) {
		dc_sleep_ms(SECOND_SIGNAL_MS);
		t_second = dc_now_ms();
		alive = !relay_wait_exit(&r, 0);
		if (alive)
			kill(r.pid, SIGTERM);
	}
	if (!relay_wait_exit(&r, STOP_MS)) {
		relay_kill(&r);
		dc_fail_all(names, 2, dc_why("still running %d ms after SIGTERM;"
		    " killed", STOP_MS + (twice ? SECOND_SIGNAL_MS : 0)));
		dc_free(a);
		dc_free(b);
		return;
	}
	t_exit = dc_now_ms();
	dc_note("%s: exit %lld ms after the first SIGTERM (%s)", names[0],
	    (long long)(t_exit - t_sig), dc_status_str(r.status));
	if (twice) {
		dc_verdict(names[0], !WIFEXITED(r.status) || WEXITSTATUS(r.status)
		    != 1 ? dc_why("%s, want exit 1", dc_status_str(r.status)) :
		    t_exit - t_second > SECOND_EXIT_MS ? dc_why("exit %lld ms "
		    "after the second signal", (long long)(t_exit - t_second)) :
		    NULL);
		/* It was still draining when the second signal came: had it
		 * exited before, the second signal was not the cause. */
		dc_verdict(names[1], alive ? NULL : dc_why("exited within %d ms of"
		    " the first signal, with a receiver that reads nothing",
		    SECOND_SIGNAL_MS));
	} else {
		int reset = 0, r2 = 1, n;
		uint8_t t;
		size_t len;

		dc_verdict(names[0], WIFEXITED(r.status) && WEXITSTATUS(r.status)
		    == 0 ? NULL : dc_status_str(r.status));
		for (n = 0; n < 4 * DRAIN_COUNT && r2 == 1; n++)
			r2 = plain_frame(b, &t, &len, IO_MS, &reset);
		dc_verdict(names[1], r2 == 0 && !reset ? NULL : r2 == 0 ?
		    "ECONNRESET instead of a FIN" : r2 == -2 ?
		    "no end of stream" : "read error");
	}
	dc_free(a);
	dc_free(b);
}

/* ---- logs --------------------------------------------------------------- */

/* Every line "YYYY/MM/DD HH:MM:SS msg". NULL or why (the first bad line). */
static const char *
log_format(const struct relay *r)
{
	char *text = dc_read_text(r->log_path, LOG_MAX, NULL), *l, *save = NULL;
	const char *why = NULL;
	int lines = 0;

	if (text == NULL)
		return "log unreadable";
	for (l = strtok_r(text, "\n", &save); l != NULL && why == NULL;
	    l = strtok_r(NULL, "\n", &save)) {
		int i;
		static const char pat[] = "dddd/dd/dd dd:dd:dd ";

		lines++;
		for (i = 0; pat[i] != '\0'; i++) {
			if (l[i] == '\0' || (pat[i] == 'd' ? (l[i] < '0' ||
			    l[i] > '9') : l[i] != pat[i])) {
				why = dc_why("line \"%.120s\"", l);
				break;
			}
		}
	}
	free(text);
	if (why == NULL && lines == 0)
		why = "empty log";
	return why;
}

/* The relay's connection error lines are rate limited. */
static void
t_flood(void)
{
	static const char *const names[] = { "flood_lines_bounded",
	    "flood_burst_logged", "flood_suppressed_line",
	    "flood_suppressed_metric", "flood_then_client_relays" };
	struct relay r;
	const char *why;
	char *text;
	int i, lines = 0, sent = 0, nsup = 0;
	long sup = 0;
	int64_t t0, t1;
	double got = 0;

	why = relay_start(&r, "flood", 0, 0, NULL, NULL);
	if (why != NULL) {
		dc_fail_all(names, NELEM(names), why);
		return;
	}
	t0 = dc_now_ms();
	for (i = 0; i < FLOOD_CONNS; i++)
		if (bad_client_info_fast(&r) == 0)
			sent++;
	t1 = dc_now_ms();
	dc_note("flood: %d bad connections in %lld ms", sent,
	    (long long)(t1 - t0));
	/* The suppressed line: when the limiter has room again. */
	(void)log_has(&r, "suppressed", SUPPRESSED_MS);
	dc_note("flood: \"suppressed\" looked for %lld ms after the flood",
	    (long long)(dc_now_ms() - t1));
	text = dc_read_text(r.log_path, LOG_MAX, NULL);
	if (text != NULL) {
		const char *p = text;
		lines = count_substr(text, "derp: 127.0.0.1:");
		while ((p = strstr(p, "suppressed ")) != NULL) {
			long n = strtol(p + 11, NULL, 10);
			if (n > 0) {
				sup += n;
				nsup++;
			}
			p += 11;
		}
	}
	dc_verdict(names[0], sent < FLOOD_CONNS ? dc_why("only %d of %d "
	    "connections made", sent, FLOOD_CONNS) : lines > FLOOD_LINES_MAX ?
	    dc_why("%d \"derp: 127.0.0.1:\" lines for %d bad connections",
	    lines, sent) : NULL);
	dc_verdict(names[1], lines >= FLOOD_LINES_MIN ? NULL :
	    dc_why("only %d connection lines: the burst should be logged",
	    lines));
	dc_verdict(names[2], text == NULL ? "log unreadable" :
	    strstr(text, "derp: suppressed ") == NULL ?
	    dc_why("no \"derp: suppressed N connection log lines\" within "
	    "%d ms", SUPPRESSED_MS) : sup < sent / 2 ?
	    dc_why("suppressed %ld in %d lines, for %d bad connections and %d"
	    " logged", sup, nsup, sent, lines) : NULL);
	free(text);
	if (sup > 0 && !wait_value(&r, "relay_log_lines_suppressed_total", (double)sup,
	    METRIC_MS, &got) && got < (double)sup)
		why = dc_why("relay_log_lines_suppressed_total %s, the log says %ld",
		    val_str(got), sup);
	else
		why = sup > 0 ? NULL : "nothing suppressed to count";
	dc_verdict(names[3], why);
	{
		struct dclient *a = cl_open(&r, NULL, NULL, NULL, 0);
		struct dclient *b = cl_open(&r, NULL, NULL, NULL, 0);
		uint8_t pkt[100];

		make_pkt(pkt, sizeof(pkt), 7);
		why = a == NULL || b == NULL ? "a client could not handshake" :
		    dc_send_packet(a, b->pk, pkt, sizeof(pkt)) < 0 ||
		    !expect_pkt(b, a->pk, pkt, sizeof(pkt)) ?
		    "packet not relayed" : NULL;
		dc_free(a);
		dc_free(b);
	}
	dc_verdict(names[4], why);
	relay_kill(&r);
}

/* -verbose: connected/closed lines, not rate limited; keys only short. */
static void
t_verbose(void)
{
	static const char *const names[] = { "verbose_connected_line",
	    "verbose_closed_line", "verbose_not_rate_limited",
	    "verbose_watchers_gauge", "log_no_full_keys",
	    "log_no_mesh_key", "verbose_log_format" };
	static char mkpath[700], mesh_hex[65], other_hex[65];
	static char mjson[200], wjson[200];
	struct relay r;
	const char *extra[] = { "-verbose", "-mesh-psk-file", mkpath, NULL };
	struct dclient *c, *m, *w, *many[VERBOSE_CONNS];
	uint8_t mk[32], ok2[32], pk[32];
	char sk[8], want[200], line[300], *text;
	const char *why;
	int lport = -1, i, n, have_c;
	double got;

	dc_random(mk, sizeof(mk));
	dc_tohex(mk, 32, mesh_hex);
	dc_random(ok2, sizeof(ok2));
	dc_tohex(ok2, 32, other_hex);
	snprintf(mkpath, sizeof(mkpath), "%s/mesh.key", scratch);
	snprintf(line, sizeof(line), "%s\n", mesh_hex);
	if (write_file(mkpath, line, 0600) < 0) {
		dc_fail_all(names, NELEM(names), "cannot write the mesh key");
		return;
	}
	why = relay_start(&r, "verbose", 0, 0, extra, NULL);
	if (why != NULL) {
		dc_fail_all(names, NELEM(names), why);
		return;
	}
	snprintf(mjson, sizeof(mjson), "{\"version\":2,\"meshKey\":\"%s\"}",
	    mesh_hex);
	snprintf(wjson, sizeof(wjson), "{\"version\":2,\"meshKey\":\"%s\"}",
	    other_hex);

	c = cl_open(&r, NULL, NULL, NULL, 0);
	have_c = c != NULL;
	if (c != NULL) {
		struct sockaddr_in la;
		socklen_t ll = sizeof(la);
		if (getsockname(c->fd, (struct sockaddr *)&la, &ll) == 0)
			lport = ntohs(la.sin_port);
		memcpy(pk, c->pk, 32);
	}
	short_key(c != NULL ? c->pk : ok2, sk);
	snprintf(want, sizeof(want), "derp: 127.0.0.1:%d: %s connected", lport,
	    sk);
	dc_verdict(names[0], c == NULL ? "client could not connect" :
	    !log_has(&r, want, METRIC_MS) ? dc_why("no \"%s\"", want) : NULL);
	/* Traffic that a verbose relay may describe: a drop to an unknown
	 * key, a ping. */
	if (c != NULL) {
		uint8_t unknown[32], pkt[DISCO_BYTES];
		dc_random(unknown, sizeof(unknown));
		make_disco(pkt, sizeof(pkt), c->pk);
		(void)dc_send_packet(c, unknown, pkt, sizeof(pkt));
		(void)barrier(c);
	}
	dc_free(c);
	snprintf(want, sizeof(want), "derp: 127.0.0.1:%d: %s closed", lport,
	    sk);
	dc_verdict(names[1], !have_c ? "client could not connect" :
	    !log_has(&r, want, METRIC_MS) ? dc_why("no \"%s\"", want) : NULL);

	n = 0;
	for (i = 0; i < VERBOSE_CONNS; i++) {
		many[i] = cl_open(&r, NULL, NULL, NULL, 0);
		if (many[i] != NULL)
			n++;
	}
	for (i = 0; i < VERBOSE_CONNS; i++)
		dc_free(many[i]);
	why = n < VERBOSE_CONNS ? dc_why("%d of %d clients connected", n,
	    VERBOSE_CONNS) : NULL;
	if (why == NULL) {
		int64_t deadline = dc_now_ms() + METRIC_MS;
		int cn = 0, cl = 0;
		do {
			text = dc_read_text(r.log_path, LOG_MAX, NULL);
			cn = count_substr(text, "] connected");
			cl = count_substr(text, "] closed");
			free(text);
			if (cn >= VERBOSE_CONNS + 1 && cl >= VERBOSE_CONNS + 1)
				break;
			dc_sleep_ms(50);
		} while (dc_left_ms(deadline) > 0);
		if (cn < VERBOSE_CONNS + 1 || cl < VERBOSE_CONNS + 1)
			why = dc_why("%d \"connected\" and %d \"closed\" lines for"
			    " %d clients", cn, cl, VERBOSE_CONNS + 1);
	}
	dc_verdict(names[2], why);

	/* A mesh peer watching; a client with a wrong mesh key. */
	m = cl_open(&r, mjson, NULL, NULL, 0);
	why = m == NULL ? "the mesh client could not connect" :
	    dc_send_frame(m, FT_WATCH_CONNS, NULL, 0) < 0 ? "WatchConns failed" :
	    !wait_value(&r, "derp_watchers", 1, METRIC_MS, &got) ?
	    dc_why("derp_watchers %s with one watcher", val_str(got)) : NULL;
	dc_verdict(names[3], why);
	w = cl_open(&r, wjson, NULL, NULL, 0);
	dc_free(w);
	dc_free(m);
	(void)bad_client_info(&r, 1);
	dc_sleep_ms(300);
	why = relay_stop(&r, SIGTERM, STOP_MS);
	if (why != NULL)
		dc_note("verbose relay stop: %s", why);

	text = dc_read_text(r.log_path, LOG_MAX, NULL);
	{
		char hex[65], hexu[65], b64[48], b64u[48];
		dc_tohex(pk, 32, hex);
		for (i = 0; i < 64; i++)
			hexu[i] = (char)(hex[i] >= 'a' && hex[i] <= 'f' ?
			    hex[i] - 'a' + 'A' : hex[i]);
		hexu[64] = '\0';
		base64_std(pk, 32, b64, 0);
		base64_std(pk, 32, b64u, 1);
		b64[43] = b64u[43] = '\0';	/* no padding */
		/* Any 12 consecutive characters of a key is already too much. */
		why = text == NULL ? "log unreadable" : !have_c ?
		    "no client key to look for" : strstr(text, hex) != NULL ?
		    "a client's key in hex" : strstr(text, hexu) != NULL ?
		    "a client's key in upper-case hex" : strstr(text, b64) !=
		    NULL ? "a client's key in base64" : strstr(text, b64u) != NULL ?
		    "a client's key in URL-safe base64" : NULL;
		if (why == NULL && text != NULL) {
			char part[16];
			snprintf(part, sizeof(part), "%.12s", hex);
			if (strstr(text, part) != NULL)
				why = "12 hex digits of a client's key";
			snprintf(part, sizeof(part), "%.12s", b64);
			if (strstr(text, part) != NULL)
				why = "12 base64 characters of a client's key";
		}
	}
	dc_verdict(names[4], why);
	why = text == NULL ? "log unreadable" : strstr(text, mesh_hex) != NULL ?
	    "the mesh key (hex) is in the log" : strstr(text, other_hex) !=
	    NULL ? "a wrong mesh key a client sent is in the log" : NULL;
	if (why == NULL) {
		char part[16];
		snprintf(part, sizeof(part), "%.12s", mesh_hex);
		if (strstr(text, part) != NULL)
			why = "12 hex digits of the mesh key are in the log";
	}
	dc_verdict(names[5], why);
	free(text);
	dc_verdict(names[6], log_format(&r));
	relay_kill(&r);
}

/* -syslog with DERP_SYSLOG_SOCKET: RFC 3164 datagrams, stderr quiet. */
static const char *
syslog_line_ok(const char *d, pid_t pid, int *pri)
{
	static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr", "May",
	    "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	char tag[40];
	int i, p = 0, k;
	const char *q = d;

	if (*q++ != '<')
		return "no <PRI>";
	for (k = 0; k < 3 && *q >= '0' && *q <= '9'; k++)
		p = p * 10 + (*q++ - '0');
	if (k == 0 || *q++ != '>')
		return "bad <PRI>";
	*pri = p;
	if (p < 24 || p > 31)
		return dc_why("PRI %d is not facility daemon (24..31)", p);
	for (i = 0; i < 12; i++)
		if (strncmp(q, mon[i], 3) == 0)
			break;
	if (i == 12 || q[3] != ' ')
		return "no month";
	q += 4;
	/* dd: day, space-padded ("Jan  5") */
	if (!((q[0] == ' ' || (q[0] >= '1' && q[0] <= '3')) && q[1] >= '0' &&
	    q[1] <= '9' && q[2] == ' '))
		return "bad day (want space-padded dd)";
	q += 3;
	if (!(q[0] >= '0' && q[0] <= '2' && q[1] >= '0' && q[1] <= '9' &&
	    q[2] == ':' && q[3] >= '0' && q[3] <= '5' && q[4] >= '0' &&
	    q[4] <= '9' && q[5] == ':' && q[6] >= '0' && q[6] <= '5' &&
	    q[7] >= '0' && q[7] <= '9' && q[8] == ' '))
		return "bad hh:mm:ss";
	q += 9;
	snprintf(tag, sizeof(tag), "derp[%ld]: ", (long)pid);
	if (strncmp(q, tag, strlen(tag)) != 0)
		return dc_why("no \"%s\"", tag);
	return NULL;
}

static void
t_syslog(void)
{
	static const char *const names[] = { "syslog_startup_line",
	    "syslog_format", "syslog_info_priority", "syslog_stderr_quiet",
	    "syslog_connection_error_line", "syslog_stopped_line" };
	static char env[700];
	char path[600], d[2048], first_bad[400], serving[400];
	const char *extra[] = { "-syslog", NULL };
	const char *envv[] = { env, NULL };
	struct sockaddr_un sa;
	struct relay r;
	const char *why, *stop_why;
	int fd, nd = 0, nbad = 0, serving_pri = -1, conn_line = 0,
	    stopped = 0, pass;
	pid_t pid;
	char *text;

	snprintf(path, sizeof(path), "%s/syslog.sock", scratch);
	unlink(path);
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (fd < 0 || strlen(path) >= sizeof(sa.sun_path)) {
		dc_fail_all(names, NELEM(names), "no AF_UNIX socket (or the path "
		    "is too long)");
		if (fd >= 0)
			close(fd);
		return;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		dc_fail_all(names, NELEM(names), dc_why("bind %s: %s", path,
		    strerror(errno)));
		close(fd);
		return;
	}
	chmod(path, 0666);	/* a relay that dropped privileges may write */
	snprintf(env, sizeof(env), "DERP_SYSLOG_SOCKET=%s", path);
	why = relay_start(&r, "syslog", 0, 0, extra, envv);
	if (why != NULL) {
		dc_fail_all(names, NELEM(names), why);
		close(fd);
		unlink(path);
		return;
	}
	pid = r.pid;
	(void)bad_client_info(&r, 1);
	serving[0] = first_bad[0] = '\0';
	/* Two passes: until start-up and error lines came, then after the
	 * stop until "stopped" came. */
	stop_why = NULL;
	for (pass = 0; pass < 2; pass++) {
		int64_t deadline = dc_now_ms() + 3000;

		if (pass == 1)
			stop_why = relay_stop(&r, SIGTERM, STOP_MS);
		while (dc_left_ms(deadline) > 0) {
			struct pollfd p;
			ssize_t n;
			int pri = -1;
			const char *e;

			if (pass == 0 && serving[0] != '\0' && conn_line)
				break;
			if (pass == 1 && stopped)
				break;
			p.fd = fd;
			p.events = POLLIN;
			if (poll(&p, 1, dc_left_ms(deadline)) != 1)
				break;
			n = recv(fd, d, sizeof(d) - 1, 0);
			if (n <= 0)
				break;
			d[n] = '\0';
			if (n > 0 && d[n - 1] == '\n')
				d[n - 1] = '\0';
			nd++;
			e = syslog_line_ok(d, pid, &pri);
			if (e != NULL && nbad++ == 0)
				snprintf(first_bad, sizeof(first_bad), "%s: \"%.200s\"",
				    e, d);
			if (strstr(d, "serving on") != NULL && serving[0] == '\0') {
				snprintf(serving, sizeof(serving), "%.300s", d);
				serving_pri = pri;
			}
			if (strstr(d, "derp: 127.0.0.1:") != NULL)
				conn_line = 1;
			if (strstr(d, "stopped") != NULL)
				stopped = 1;
		}
	}
	close(fd);
	unlink(path);
	dc_verdict(names[0], serving[0] != '\0' ? NULL :
	    dc_why("no datagram with \"serving on\" (%d datagrams)", nd));
	dc_verdict(names[1], nd == 0 ? "no datagrams" : nbad > 0 ?
	    dc_why("%d of %d datagrams malformed, first: %s", nbad, nd,
	    first_bad) : NULL);
	dc_verdict(names[2], serving_pri == 30 ? NULL :
	    dc_why("the \"serving on\" line has PRI %d, want 30 (daemon.info)",
	    serving_pri));
	text = dc_read_text(r.log_path, LOG_MAX, NULL);
	{
		int lines = text == NULL ? 0 : count_substr(text, "\n");
		why = text == NULL ? "log unreadable" : lines > 2 ?
		    dc_why("%d lines on stderr: \"%.200s\"", lines, text) :
		    strstr(text, "serving on") != NULL ?
		    "\"serving on\" went to stderr too" : NULL;
	}
	free(text);
	dc_verdict(names[3], why);
	dc_verdict(names[4], conn_line ? NULL :
	    "no \"derp: 127.0.0.1:\" line for a bad ClientInfo");
	dc_verdict(names[5], stop_why != NULL ? stop_why : stopped ? NULL :
	    "no \"stopped\" datagram");
}

/* ---- main --------------------------------------------------------------- */

static void
t_plain(void)
{
	static const char *const names[] = { "debug_index_links",
	    "debug_vars_200_json_type", "debug_varz_200_prometheus_type",
	    "debug_check_okay", "debug_unknown_404", "debug_xff_denied",
	    "debug_xff_denied_before_404", "plain_varz_promtool",
	    "plain_varz_series_present", "plain_varz_types",
	    "plain_varz_version_line", "plain_dropped_pairs_zero_at_start",
	    "plain_uptime_and_start_time", "plain_vars_groups",
	    "vars_varz_agree_at_start", "accepts_connections_up",
	    "packets_relayed_counted", "disco_counted", "unknown_dest_dropped",
	    "not_here_dropped_and_peer_gone", "ping_pong_counted",
	    "home_connections_gauge", "dup_client_gauges", "stun_counted",
	    "handshake_failure_http_counted", "handshake_failure_derp_counted",
	    "handshakes_in_progress_gauge", "relay_pool_gauges_sane",
	    "connections_down_peer_gone", "vars_varz_agree_after_traffic",
	    "plain_sigterm_exit_0", "log_line_format", "log_no_verbose_lines",
	    "log_shutting_down_stopped" };
	const char *why;
	char *text;
	int n;

	why = relay_start(&r1, "plain", 0, 1, NULL, NULL);
	if (why != NULL) {
		dc_fail_all(names, NELEM(names), why);
		return;
	}
	t_debug_pages(&r1);
	t_varz_static(&r1, "plain", 0);
	why = vars_varz_agree(&r1, &n);
	dc_verdict("vars_varz_agree_at_start", why);
	t_traffic(&r1);
	dc_verdict("plain_sigterm_exit_0", relay_stop(&r1, SIGTERM, STOP_MS));
	dc_verdict("log_line_format", log_format(&r1));
	text = dc_read_text(r1.log_path, LOG_MAX, NULL);
	dc_verdict("log_no_verbose_lines", text == NULL ? "log unreadable" :
	    strstr(text, "] connected") != NULL || strstr(text, "] closed") !=
	    NULL ? "per-connection detail lines without -verbose" : NULL);
	dc_verdict("log_shutting_down_stopped", text == NULL ? "log unreadable" :
	    strstr(text, "shutting down") == NULL ? "no \"shutting down\"" :
	    strstr(text, "stopped") == NULL ? "no \"stopped\"" : NULL);
	free(text);
	relay_kill(&r1);
}

/* The relay's private key (hex, or its first 16 digits) in no log. */
static void
t_logs_no_private_key(void)
{
	char part[20];
	const char *why = nlogs == 0 ? "no logs written" : NULL;
	int i;

	snprintf(part, sizeof(part), "%.16s", priv_hex);
	for (i = 0; i < nlogs && why == NULL; i++) {
		char *text = dc_read_text(logs[i], LOG_MAX, NULL);
		if (text != NULL && strstr(text, part) != NULL)
			why = dc_why("the private key is in %s", logs[i]);
		free(text);
	}
	dc_verdict("logs_no_private_key", why);
}

/* Is group named in the comma-separated list (NULL: every group)? */
static int
group_on(const char *list, const char *group)
{
	size_t l = strlen(group);
	const char *p = list;

	if (list == NULL || list[0] == '\0')
		return 1;
	while ((p = strstr(p, group)) != NULL) {
		if ((p == list || p[-1] == ',') && (p[l] == '\0' || p[l] == ','))
			return 1;
		p += l;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	int64_t t0 = dc_now_ms(), t;
	char line[200];
	uint8_t k[32];
	char hex[65];
	const char *only;
	int i;

	if (argc != 3) {
		fprintf(stderr, "usage: %s DERP_BINARY SCRATCH_DIR\n", argv[0]);
		return 2;
	}
	derp_path = argv[1];
	scratch = argv[2];
	if (dc_test_setup(derp_path, scratch, on_alarm, WATCHDOG_S) < 0)
		return 1;
	/* derper's key file format (what derp writes when -c is missing). */
	snprintf(key_path, sizeof(key_path), "%s/derper.key", scratch);
	snprintf(cert_dir, sizeof(cert_dir), "%s/certs", scratch);
	dc_random(k, sizeof(k));
	dc_tohex(k, 32, hex);
	memcpy(priv_hex, hex, sizeof(priv_hex));
	snprintf(line, sizeof(line), "{\n\t\"PrivateKey\": \"privkey:%s\"\n}\n",
	    hex);
	if (write_file(key_path, line, 0600) < 0) {
		printf("FAIL setup: cannot write %s\n", key_path);
		printf("0 passed, 1 failed, 0 skipped\n");
		return 1;
	}
	dc_note("derp %s, scratch %s, promtool %s", derp_path, scratch,
	    have_promtool() ? "present" : "absent");

	/* TEST_OPS_ONLY=plain,debug,tls,shutdown,logs: those groups only
	 * (while developing; the count then falls below run.sh's floor). */
	only = getenv("TEST_OPS_ONLY");
	if (group_on(only, "plain")) {
		t = dc_now_ms();
		t_plain();
		dc_note("plain relay: %lld ms", (long long)(dc_now_ms() - t));
	}
	if (group_on(only, "debug")) {
		t = dc_now_ms();
		t_debug_allow();
		t_debug_key();
		dc_note("debug access: %lld ms", (long long)(dc_now_ms() - t));
	}
	if (group_on(only, "tls")) {
		t = dc_now_ms();
		t_tls();
		dc_note("TLS relay: %lld ms", (long long)(dc_now_ms() - t));
	}
	if (group_on(only, "shutdown")) {
		t = dc_now_ms();
		t_drain(NULL, "plain", 0, SIGTERM);
		t_drain(NULL, "sigint", 0, SIGINT);
		t_stuck(0);
		t_stuck(1);
		dc_note("shutdown: %lld ms", (long long)(dc_now_ms() - t));
	}
	if (group_on(only, "logs")) {
		t = dc_now_ms();
		t_flood();
		t_verbose();
		t_syslog();
		dc_note("logs: %lld ms", (long long)(dc_now_ms() - t));
	}

	for (i = 0; i < MAX_RELAYS; i++)
		if (live[i] != NULL)
			relay_kill(live[i]);
	t_logs_no_private_key();
	dc_note("total %lld ms", (long long)(dc_now_ms() - t0));
	return dc_summary();
}
