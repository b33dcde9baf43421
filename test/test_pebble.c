/*
 * test_pebble.c -- the relay's ACME client (-certmode letsencrypt) against a
 * real ACME server: Debian's pebble, Let's Encrypt's test CA, with
 * pebble-challtestsrv as its DNS server (every name is 127.0.0.1), all on
 * loopback.  Nothing is contacted outside 127.0.0.1.
 *
 * Usage: test_pebble DERP_BINARY SCRATCH_DIR
 *   DERP_BINARY  the relay to test, e.g. build/derp
 *   SCRATCH_DIR  created if missing; holds everything the run makes, all of it
 *                generated here (pebble's listener key and certificate, the
 *                relays' certificate directories, the logs: pebble.log,
 *                pebble-eab.log, dns.log, relay-<step>.log, openssl.out)
 *
 * Steps, in order; each later one uses what the earlier ones left:
 *   pebble_setup          challtestsrv, pebble (3600 s certificates), its root
 *   dns_*                 -hostname derp.test orders a certificate: the
 *                         autocert cache files, openssl verifies the chain
 *                         against pebble's root, a DERP pair relays
 *   renew_*               the same certificate directory with the renewal due a
 *                         few seconds after start: a DERP pair exchanging in a
 *                         tight loop sees no gap over MAX_GAP_MS while the new
 *                         certificate goes into service; a new connection gets
 *                         the new leaf
 *   restart_*             a restart with a valid stored certificate: served at
 *                         once, no new order
 *   ip_*                  -hostname 127.0.0.1 -acme-ip-certs (RFC 8738)
 *   eab_*                 a second pebble requiring External Account Binding:
 *                         the right key gets a certificate, a wrong one fails
 *                         and the relay keeps serving
 *   fail_*                a stored valid certificate that is due, and an order
 *                         that fails (CA down; the HTTP-01 challenge
 *                         unreachable, pebble's httpPort being a closed port;
 *                         a CA that requires EAB and none configured):
 *                         logged, and the old leaf stays in service
 *   relays_exit_clean     every relay exited 0 on SIGTERM within STOP_MS and
 *                         left no process (its ACME child) behind
 *
 * Output: "ok NAME", "FAIL NAME: DETAIL" or "skip NAME: WHY" once per check
 * (always the same names, so the counts are stable), "# " lines with
 * measurements, then "N passed, N failed, N skipped".  Exit status 0 iff
 * nothing failed.  Without /usr/bin/pebble or /usr/bin/pebble-challtestsrv
 * every check is skipped; without the openssl command the three *_verified
 * checks are.
 *
 * Every wait is bounded; every process started here is the leader of its own
 * process group (the relay's ACME child joins the relay's), and the whole
 * group is killed on every way out, including alarm(), the global watchdog.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pwd.h>
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

#include <bearssl.h>

#include "client.h"
#include "../cert.h"

/* ---- limits and timeouts ------------------------------------------------ */

#define WATCHDOG_S 420		/* the whole run: about 30 s when all goes well;
				 * the sum of the bounded waits below when
				 * every order times out */
#define START_MS 10000		/* a process listens within this */
#define STOP_MS 3000		/* SIGTERM to exit (the relay waits for its
				 * ACME child, which dies on SIGTERM at once) */
#define CONNECT_MS 3000
#define IO_MS 3000		/* one request/response on loopback */
#define ISSUE_MS 60000		/* an order to "cert: serving"; pebble with
				 * PEBBLE_VA_NOSLEEP takes about a second */
#define FAIL_MS 30000		/* an order that must fail ("attempt failed");
				 * pebble's HTTP-01 validation gives up after
				 * about 10 s at worst */
#define RENEW_LEAD_S 5		/* the renewal falls due this long after the
				 * relay starts, with the pair running */
#define RENEW_MS 60000		/* the pair loop waits this long for it */
#define AFTER_RENEW_MS 1000	/* the pair keeps exchanging after the swap */
#define MAX_GAP_MS 100		/* longest pause allowed in the pair's traffic */
#define PAIR_READ_MS 2000	/* one packet through the relay */
#define LOG_POLL_MS 100		/* how often the renewal loop reads the log */
#define QUIET_ORDER_MS 3000	/* restart: no order within this */
#define OPENSSL_MS 10000	/* one openssl s_client run */
#define VALIDITY_S 3600		/* pebble's certificateValidityPeriod */
#define RENEW_DUE_NOW "86400"	/* DERP_ACME_RENEW_BEFORE > VALIDITY_S: due */
#define FILE_MAX (1024 * 1024)	/* largest log or PEM file we read */
#define BODY_MAX 16384		/* pebble's root: one PEM certificate, ~1.2 KB */
#define PACKET_BYTES 32		/* the pair's packets: small, as the brief says */
#define EAB_KEY_BYTES 48	/* HMAC key; pebble's examples use 48 bytes */
#define PORT_TRIES 20		/* attempts to find a free port */
#define MAX_PORTS 32		/* ports handed out in one run */

/* ---- checks ------------------------------------------------------------- */

/* Every check the program reports, in order; an entry not reported by the
 * end (an earlier step failed) is reported as a failure, so the counts never
 * depend on how far a run got.  needs_openssl: skipped without openssl. */
static const struct check {
	const char *name;
	int needs_openssl;
} checks[] = {
	{ "pebble_setup", 0 },
	{ "dns_issued", 0 },
	{ "dns_files", 0 },
	{ "dns_verified", 1 },
	{ "dns_derp", 0 },
	{ "renew_no_gap", 0 },
	{ "renew_new_leaf", 0 },
	{ "renew_verified", 1 },
	{ "restart_stored", 0 },
	{ "restart_no_new_order", 0 },
	{ "restart_tls", 0 },
	{ "ip_issued", 0 },
	{ "ip_verified", 1 },
	{ "ip_derp_no_sni", 0 },
	{ "mixed_both_issued", 0 },
	{ "mixed_verified", 1 },
	{ "mixed_derp_both", 0 },
	{ "user_nobody_issued", 0 },
	{ "eab_issued", 0 },
	{ "eab_wrong_key", 0 },
	{ "fail_ca_down", 0 },
	{ "fail_challenge", 0 },
	{ "fail_no_eab", 0 },
	{ "relays_exit_clean", 0 },
};
#define N_CHECKS (sizeof(checks) / sizeof(checks[0]))

static int reported[N_CHECKS];
static int n_pass, n_fail, n_skip;

/* ---- state -------------------------------------------------------------- */

static const char *derp_path;
static char scratch[512];	/* absolute; checked to fit */
static int have_openssl;

/* Processes we start, each the leader of its own process group. */
enum { P_DNS, P_PEBBLE, P_PEBBLE_EAB, P_RELAY, P_OPENSSL, P_N };
static volatile pid_t procs[P_N] = { -1, -1, -1, -1, -1 };
/* A leader alive() found dead (reaped there): its wait status, for stop(). */
static int exited[P_N], exited_status[P_N];

static int ports_used[MAX_PORTS];
static int n_ports_used;

/* Pebble and its DNS server. */
static int dns_port, dns_mgmt_port;
static int acme_port, mgmt_port, eab_acme_port, eab_mgmt_port;
static int http_port;		/* pebble's httpPort = the relays' -http-port */
static int tls_alpn_port;	/* pebble's tlsPort: nothing listens there */
static char listener_crt[600], listener_key[600];
static char root_pem[600];
static char pebble_log[600], pebble_eab_log[600];
static char dir_url[128], eab_dir_url[128];
static char eab_key[128];	/* base64url, no padding */
static char relay_key_file[600];

/* Problems seen when stopping relays (for relays_exit_clean). */
static char exit_problems[4096];

/* Timings for the summary, ms (-1: not measured). */
static int64_t t_mixed = -1;
static int64_t t_pebble = -1, t_dns = -1, t_renew = -1, t_restart_tls = -1,
    t_ip = -1, t_eab = -1, t_eab_bad = -1, t_ca_down = -1, t_challenge = -1,
    t_no_eab = -1;
static int64_t t_run0;

/* ---- reporting ---------------------------------------------------------- */

static int
check_index(const char *name)
{
	size_t i;

	for (i = 0; i < N_CHECKS; i++)
		if (strcmp(checks[i].name, name) == 0)
			return (int)i;
	fprintf(stderr, "test_pebble: unknown check %s\n", name);
	abort();
}

#ifdef __GNUC__
static void fail(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void skip(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
#endif

static void
ok(const char *name)
{
	reported[check_index(name)] = 1;
	printf("ok %s\n", name);
	fflush(stdout);
	n_pass++;
}

static void
fail(const char *name, const char *fmt, ...)
{
	va_list ap;

	reported[check_index(name)] = 1;
	printf("FAIL %s: ", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	n_fail++;
}

static void
skip(const char *name, const char *fmt, ...)
{
	va_list ap;

	reported[check_index(name)] = 1;
	printf("skip %s: ", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	n_skip++;
}

static void
note(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* detail == NULL means success. */
static void
verdict(const char *name, const char *detail)
{
	if (detail == NULL)
		ok(name);
	else
		fail(name, "%s", detail);
}

/* An openssl check: skipped without openssl, else as verdict. */
static void
verdict_openssl(const char *name, const char *detail)
{
	if (!have_openssl)
		skip(name, "no openssl command");
	else
		verdict(name, detail);
}

/* Every check not reported yet fails with why (skipped if it needs the
 * missing openssl). */
static void
fail_unreported(const char *why)
{
	size_t i;

	for (i = 0; i < N_CHECKS; i++) {
		if (reported[i])
			continue;
		if (checks[i].needs_openssl && !have_openssl)
			skip(checks[i].name, "no openssl command");
		else
			fail(checks[i].name, "not run: %s", why);
	}
}

/* ---- processes ---------------------------------------------------------- */

/* SIGKILL every group we started (async-signal-safe). */
static void
kill_all(void)
{
	int i;

	for (i = 0; i < P_N; i++) {
		pid_t p = procs[i];
		if (p > 0) {
			kill(-p, SIGKILL);
			kill(p, SIGKILL);
		}
	}
}

static void
on_fatal_signal(int sig)
{
	static const char msg_alarm[] = "FAIL watchdog: the run exceeded its"
	    " time budget; every process killed\n";
	static const char msg_sig[] = "FAIL interrupted: every process killed\n";

	kill_all();
	if (sig == SIGALRM) {
		if (write(STDOUT_FILENO, msg_alarm, sizeof(msg_alarm) - 1) < 0)
			_exit(2);
	} else if (write(STDOUT_FILENO, msg_sig, sizeof(msg_sig) - 1) < 0)
		_exit(2);
	_exit(1);
}

/*
 * Start argv[0] (a path) as slot's process, the leader of a new process group,
 * stdin /dev/null, stdout and stderr into log_file (truncated), with the
 * environment changed by env: "NAME=VALUE" sets, "NAME" unsets.  0 or -1.
 */
static int
spawn(int slot, char *const argv[], char *const env[], const char *log_file)
{
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd, i;

		setpgid(0, 0);
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0) {
			dup2(fd, STDIN_FILENO);
			close(fd);
		}
		fd = open(log_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
			close(fd);
		}
		for (i = 0; env != NULL && env[i] != NULL; i++) {
			const char *eq = strchr(env[i], '=');
			char name[64];

			if (eq == NULL)
				unsetenv(env[i]);
			else if ((size_t)(eq - env[i]) < sizeof(name)) {
				snprintf(name, sizeof(name), "%.*s",
				    (int)(eq - env[i]), env[i]);
				setenv(name, eq + 1, 1);
			}
		}
		signal(SIGPIPE, SIG_DFL);
		execv(argv[0], argv);
		_exit(127);
	}
	setpgid(pid, pid);	/* also here: no window where it has none */
	exited[slot] = 0;
	procs[slot] = pid;
	return 0;
}

static int
alive(int slot)
{
	int status;

	if (procs[slot] <= 0 || exited[slot])
		return 0;
	if (waitpid(procs[slot], &status, WNOHANG) != procs[slot])
		return 1;
	exited[slot] = 1;
	exited_status[slot] = status;
	return 0;
}

/*
 * SIGTERM, then up to ms for the leader to exit; SIGKILL to the group after
 * that, and to whatever is left in the group (a leader's orphans) in any
 * case.  *status gets the leader's wait status (or -1 when it had to be
 * killed); returns 1 when the leader exited in time and the group was empty,
 * 0 otherwise.  Safe when nothing runs in the slot.
 */
static int
stop(int slot, int ms, int *status)
{
	pid_t p = procs[slot];
	int64_t deadline = dc_now_ms() + ms;
	int st = -1, clean = 1;

	if (status != NULL)
		*status = -1;
	if (p <= 0)
		return 1;
	if (exited[slot]) {	/* it exited by itself, before any SIGTERM */
		st = exited_status[slot];
		clean = 0;
		goto group;
	}
	kill(p, SIGTERM);
	for (;;) {
		pid_t r = waitpid(p, &st, WNOHANG);
		if (r == p || (r < 0 && errno == ECHILD))
			break;
		if (dc_now_ms() > deadline) {
			kill(-p, SIGKILL);
			kill(p, SIGKILL);
			waitpid(p, NULL, 0);
			st = -1;
			clean = 0;
			break;
		}
		dc_sleep_ms(10);
	}
	/* The leader is gone; anything still in its group was left behind. */
group:
	if (kill(-p, 0) == 0) {
		clean = 0;
		kill(-p, SIGKILL);
	}
	procs[slot] = -1;
	exited[slot] = 0;
	if (status != NULL)
		*status = st;
	return clean;
}

static int
tcp_listening(int port)
{
	struct dclient *c = dc_new();
	int r;

	if (c == NULL)
		return 0;
	r = dc_connect(c, "127.0.0.1", port, 0, NULL, 200);
	dc_free(c);
	return r == 0;
}

/* 0 when every port in ports[n] accepts TCP within START_MS while slot's
 * process lives; -1 otherwise. */
static int
wait_listening(int slot, const int *ports, int n)
{
	int64_t deadline = dc_now_ms() + START_MS;
	int i = 0;

	while (dc_now_ms() < deadline) {
		if (!alive(slot))
			return -1;
		while (i < n && tcp_listening(ports[i]))
			i++;
		if (i == n)
			return 0;
		dc_sleep_ms(50);
	}
	return -1;
}

/* A loopback port nobody listens on now (bound and released); with udp, free
 * for UDP too.  Never the same port twice in a run.  -1 if none found. */
static int
free_port(int udp)
{
	int t, i;

	for (t = 0; t < PORT_TRIES; t++) {
		struct sockaddr_in sa;
		socklen_t sl = sizeof(sa);
		int fd = socket(AF_INET, SOCK_STREAM, 0), ufd = -1, port, dup = 0;

		if (fd < 0)
			return -1;
		memset(&sa, 0, sizeof(sa));
		sa.sin_family = AF_INET;
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
			close(fd);
			return -1;
		}
		port = ntohs(sa.sin_port);
		if (udp) {
			ufd = socket(AF_INET, SOCK_DGRAM, 0);
			if (ufd < 0 || bind(ufd, (struct sockaddr *)&sa,
			    sizeof(sa)) < 0)
				dup = 1;
			if (ufd >= 0)
				close(ufd);
		}
		close(fd);
		for (i = 0; i < n_ports_used; i++)
			if (ports_used[i] == port)
				dup = 1;
		if (dup)
			continue;
		if (n_ports_used < MAX_PORTS)
			ports_used[n_ports_used++] = port;
		return port;
	}
	return -1;
}

/* ---- files -------------------------------------------------------------- */

static int
write_text(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	size_t n = strlen(text), off = 0;

	if (fd < 0)
		return -1;
	while (off < n) {
		ssize_t w = write(fd, text + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	return close(fd) == 0 && off == n ? 0 : -1;
}

static int
count_sub(const char *text, const char *needle)
{
	int n = 0;
	size_t nl = strlen(needle);

	if (text == NULL)
		return 0;
	while ((text = strstr(text, needle)) != NULL) {
		n++;
		text += nl;
	}
	return n;
}

static int
file_count(const char *path, const char *needle)
{
	char *t = dc_read_text(path, FILE_MAX, NULL);
	int n = count_sub(t, needle);

	free(t);
	return n;
}

/* The first line of path containing needle, into out (without newline);
 * 1 found, 0 not. */
static int
file_line(const char *path, const char *needle, char *out, size_t cap)
{
	char *t = dc_read_text(path, FILE_MAX, NULL), *p, *b, *e;

	out[0] = '\0';
	if (t == NULL)
		return 0;
	p = strstr(t, needle);
	if (p == NULL) {
		free(t);
		return 0;
	}
	for (b = p; b > t && b[-1] != '\n'; b--)
		;
	e = strchr(p, '\n');
	if (e == NULL)
		e = p + strlen(p);
	snprintf(out, cap, "%.*s", (int)(e - b), b);
	free(t);
	return 1;
}

/* Print every line of path containing needle as a "# " note. */
static void
note_lines(const char *path, const char *needle, const char *prefix)
{
	char *t = dc_read_text(path, FILE_MAX, NULL), *line, *save = NULL;

	if (t == NULL)
		return;
	for (line = strtok_r(t, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save))
		if (strstr(line, needle) != NULL)
			note("%s%s", prefix, line);
	free(t);
}

/* The last lines of path as "# " notes (after a failure). */
static void
note_tail(const char *path, size_t bytes)
{
	size_t n;
	char *t = dc_read_text(path, FILE_MAX, &n), *p, *line, *save = NULL;

	if (t == NULL)
		return;
	p = n > bytes ? t + n - bytes : t;
	note("--- end of %s ---", path);
	for (line = strtok_r(p, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save))
		note("  %s", line);
	free(t);
}

static int
mode_is(const char *path, unsigned mode, char *why, size_t cap)
{
	struct stat sb;

	if (stat(path, &sb) != 0) {
		snprintf(why, cap, "stat %s: %s", path, strerror(errno));
		return 0;
	}
	if ((sb.st_mode & 07777) != mode) {
		snprintf(why, cap, "%s has mode %04o, want %04o", path,
		    (unsigned)(sb.st_mode & 07777), mode);
		return 0;
	}
	return 1;
}

/*
 * The PEM blocks of path: "-----BEGIN LABEL-----" lines in order.  first_key:
 * the first block must be an EC PRIVATE KEY at the very start of the file and
 * every other block a CERTIFICATE (autocert's format); else every block must
 * be a CERTIFICATE.  *ncerts gets the certificate count.  1 good, 0 (why).
 */
static int
pem_shape(const char *path, int first_key, int *ncerts, char *why, size_t cap)
{
	static const char key_begin[] = "-----BEGIN EC PRIVATE KEY-----";
	static const char cert_begin[] = "-----BEGIN CERTIFICATE-----";
	char *t = dc_read_text(path, FILE_MAX, NULL), *p;
	int n = 0, good = 1;

	*ncerts = 0;
	if (t == NULL) {
		snprintf(why, cap, "cannot read %s", path);
		return 0;
	}
	p = t;
	if (first_key) {
		if (strncmp(t, key_begin, sizeof(key_begin) - 1) != 0) {
			snprintf(why, cap, "%s does not start with %s", path,
			    key_begin);
			free(t);
			return 0;
		}
		p = t + 1;
	}
	while ((p = strstr(p, "-----BEGIN ")) != NULL) {
		if (strncmp(p, cert_begin, sizeof(cert_begin) - 1) != 0) {
			snprintf(why, cap, "%s: unexpected block %.40s", path, p);
			good = 0;
			break;
		}
		n++;
		p++;
	}
	free(t);
	*ncerts = n;
	if (good && n == 0) {
		snprintf(why, cap, "%s holds no certificate", path);
		good = 0;
	}
	return good;
}

/* Leaf hash and notAfter of the stored certificate: combined (key_path NULL)
 * or separate files.  0 or -1 with why. */
static int
stored_leaf(const char *crt_path, const char *key_path, const char *host,
    uint8_t hash[32], int64_t *not_after, char *why, size_t cap)
{
	struct cert_store cs;
	char err[300];
	int64_t nb, na;
	int r;

	memset(&cs, 0, sizeof(cs));
	if (key_path == NULL)
		r = cert_load_combined(&cs, crt_path, err, sizeof(err));
	else
		r = cert_load_files(&cs, crt_path, key_path, err, sizeof(err));
	if (r != 0) {
		snprintf(why, cap, "stored certificate: %s", err);
		return -1;
	}
	if (host != NULL && !cert_matches_host(&cs, host)) {
		snprintf(why, cap, "stored certificate %s is not valid for %s",
		    crt_path, host);
		cert_free(&cs);
		return -1;
	}
	if (cert_leaf_validity(&cs, &nb, &na) != 0) {
		snprintf(why, cap, "stored certificate %s: no validity", crt_path);
		cert_free(&cs);
		return -1;
	}
	memcpy(hash, cs.leaf_sha256, 32);
	if (not_after != NULL)
		*not_after = na;
	cert_free(&cs);
	return 0;
}

/* Copy src to dst with mode 0600. */
static int
copy_file(const char *src, const char *dst)
{
	size_t n;
	char *t = dc_read_text(src, FILE_MAX, &n);
	int fd, r = -1;

	if (t == NULL)
		return -1;
	fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		r = write(fd, t, n) == (ssize_t)n ? 0 : -1;
		if (close(fd) != 0)
			r = -1;
	}
	free(t);
	return r;
}

static void
base64url(const uint8_t *p, size_t n, char *out)
{
	static const char a[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i;
	int o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 |
		    p[i + 2];
		out[o++] = a[v >> 18];
		out[o++] = a[(v >> 12) & 63];
		out[o++] = a[(v >> 6) & 63];
		out[o++] = a[v & 63];
	}
	if (n - i == 1) {
		out[o++] = a[p[i] >> 2];
		out[o++] = a[(p[i] & 3) << 4];
	} else if (n - i == 2) {
		out[o++] = a[p[i] >> 2];
		out[o++] = a[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
		out[o++] = a[(p[i + 1] & 15) << 2];
	}
	out[o] = '\0';
}

static void
hex8(const uint8_t *h, char *out)
{
	static const char d[] = "0123456789abcdef";
	int i;

	for (i = 0; i < 8; i++) {
		out[2 * i] = d[h[i] >> 4];
		out[2 * i + 1] = d[h[i] & 15];
	}
	out[16] = '\0';
}

static int
on_path(const char *prog)
{
	const char *path = getenv("PATH"), *p, *e;
	char buf[1024];

	if (path == NULL)
		path = "/usr/bin:/bin";
	for (p = path; *p != '\0'; p = *e ? e + 1 : e) {
		e = strchr(p, ':');
		if (e == NULL)
			e = p + strlen(p);
		if ((size_t)snprintf(buf, sizeof(buf), "%.*s/%s", (int)(e - p),
		    p, prog) < sizeof(buf) && access(buf, X_OK) == 0)
			return 1;
	}
	return 0;
}

/* ---- pebble ------------------------------------------------------------- */

static int
write_pebble_config(const char *path, int acme, int mgmt, int eab)
{
	char text[4096];	/* two paths of < 1100 bytes, the rest < 600 */

	snprintf(text, sizeof(text),
	    "{\n  \"pebble\": {\n"
	    "    \"listenAddress\": \"127.0.0.1:%d\",\n"
	    "    \"managementListenAddress\": \"127.0.0.1:%d\",\n"
	    "    \"certificate\": \"%s\",\n"
	    "    \"privateKey\": \"%s\",\n"
	    "    \"httpPort\": %d,\n"
	    "    \"tlsPort\": %d,\n"
	    "    \"ocspResponderURL\": \"\",\n"
	    "    \"certificateValidityPeriod\": %d,\n"
	    "    \"externalAccountBindingRequired\": %s%s%s%s\n"
	    "  }\n}\n",
	    acme, mgmt, listener_crt, listener_key, http_port, tls_alpn_port,
	    VALIDITY_S, eab ? "true" : "false",
	    eab ? ",\n    \"externalAccountMACKeys\": {\n      \"kid-1\": \"" : "",
	    eab ? eab_key : "", eab ? "\"\n    }" : "");
	return write_text(path, text, 0600);
}

static int
start_pebble(int slot, const char *cfg, const char *log_file, int acme,
    int mgmt, char *why, size_t cap)
{
	char dns[64];
	char *argv[] = { "/usr/bin/pebble", "-config", (char *)cfg,
	    "-dnsserver", dns, NULL };
	/* Repeatable runs (pebble.md): no validation sleep, no nonces
	 * rejected on purpose, no authorization reuse. */
	char *env[] = { "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0",
	    "PEBBLE_AUTHZREUSE=0", NULL };
	int ports[2];

	snprintf(dns, sizeof(dns), "127.0.0.1:%d", dns_port);
	ports[0] = acme;
	ports[1] = mgmt;
	if (spawn(slot, argv, env, log_file) < 0) {
		snprintf(why, cap, "fork: %s", strerror(errno));
		return -1;
	}
	if (wait_listening(slot, ports, 2) < 0) {
		snprintf(why, cap, "pebble not listening on %d and %d within %d"
		    " ms; log %s", acme, mgmt, START_MS, log_file);
		note_tail(log_file, 1500);
		return -1;
	}
	return 0;
}

/* Pebble's root (GET /roots/0 on the management listener) into path. */
static int
fetch_root(int mgmt, const char *path, char *why, size_t cap)
{
	struct dclient *c = dc_new();
	static char body[BODY_MAX];
	char req[256], head[DC_HEAD_MAX];
	size_t n;
	int r = -1;

	if (c == NULL)
		return -1;
	snprintf(req, sizeof(req), "GET /roots/0 HTTP/1.1\r\nHost: "
	    "127.0.0.1:%d\r\nConnection: close\r\n\r\n", mgmt);
	if (dc_connect(c, "127.0.0.1", mgmt, 1, NULL, CONNECT_MS) < 0)
		snprintf(why, cap, "TLS connect to pebble's management port %d"
		    " failed", mgmt);
	else if (dc_http_request(c, req, head, sizeof(head), IO_MS) < 0)
		snprintf(why, cap, "GET /roots/0: no response");
	else if (dc_http_status(head) != 200)
		snprintf(why, cap, "GET /roots/0: status %d", dc_http_status(head));
	else if (dc_http_body(c, head, 0, body, sizeof(body), &n, IO_MS) < 0)
		snprintf(why, cap, "GET /roots/0: body unreadable");
	else if (strstr(body, "-----BEGIN CERTIFICATE-----") == NULL)
		snprintf(why, cap, "GET /roots/0: no PEM certificate");
	else if (write_text(path, body, 0644) < 0)
		snprintf(why, cap, "write %s: %s", path, strerror(errno));
	else
		r = 0;
	dc_free(c);
	return r;
}

static int
setup(char *why, size_t cap)
{
	char err[300], cfg[600], dns_addr[64], mgmt_addr[64];
	uint8_t k[EAB_KEY_BYTES];
	char *dns_argv[] = { "/usr/bin/pebble-challtestsrv", "-dns01", dns_addr,
	    "-http01", "", "-https01", "", "-tlsalpn01", "", "-management",
	    mgmt_addr, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", NULL };
	int ports[2];
	int64_t t0 = dc_now_ms();

	dns_port = free_port(1);
	dns_mgmt_port = free_port(0);
	acme_port = free_port(0);
	mgmt_port = free_port(0);
	eab_acme_port = free_port(0);
	eab_mgmt_port = free_port(0);
	http_port = free_port(0);
	tls_alpn_port = free_port(0);
	if (dns_port < 0 || dns_mgmt_port < 0 || acme_port < 0 ||
	    mgmt_port < 0 || eab_acme_port < 0 || eab_mgmt_port < 0 ||
	    http_port < 0 || tls_alpn_port < 0) {
		snprintf(why, cap, "no free loopback ports");
		return -1;
	}
	snprintf(dir_url, sizeof(dir_url), "https://127.0.0.1:%d/dir",
	    acme_port);
	snprintf(eab_dir_url, sizeof(eab_dir_url), "https://127.0.0.1:%d/dir",
	    eab_acme_port);

	/* Pebble's own HTTPS listeners: a self-signed certificate for
	 * 127.0.0.1, which is also the relays' -acme-ca-file. */
	snprintf(listener_crt, sizeof(listener_crt), "%s/pebble-listener.crt",
	    scratch);
	snprintf(listener_key, sizeof(listener_key), "%s/pebble-listener.key",
	    scratch);
	if (cert_generate_ip(listener_crt, listener_key, "127.0.0.1",
	    time(NULL), err, sizeof(err)) != 0) {
		snprintf(why, cap, "listener certificate: %s", err);
		return -1;
	}
	dc_random(k, sizeof(k));
	base64url(k, sizeof(k), eab_key);

	snprintf(dns_addr, sizeof(dns_addr), "127.0.0.1:%d", dns_port);
	snprintf(mgmt_addr, sizeof(mgmt_addr), "127.0.0.1:%d", dns_mgmt_port);
	snprintf(cfg, sizeof(cfg), "%s/dns.log", scratch);
	if (spawn(P_DNS, dns_argv, NULL, cfg) < 0) {
		snprintf(why, cap, "fork: %s", strerror(errno));
		return -1;
	}
	ports[0] = dns_port;
	ports[1] = dns_mgmt_port;
	if (wait_listening(P_DNS, ports, 2) < 0) {
		snprintf(why, cap, "pebble-challtestsrv not listening within %d"
		    " ms; log %s", START_MS, cfg);
		note_tail(cfg, 1500);
		return -1;
	}

	snprintf(cfg, sizeof(cfg), "%s/pebble.json", scratch);
	snprintf(pebble_log, sizeof(pebble_log), "%s/pebble.log", scratch);
	if (write_pebble_config(cfg, acme_port, mgmt_port, 0) < 0) {
		snprintf(why, cap, "write %s: %s", cfg, strerror(errno));
		return -1;
	}
	if (start_pebble(P_PEBBLE, cfg, pebble_log, acme_port, mgmt_port, why,
	    cap) < 0)
		return -1;
	snprintf(root_pem, sizeof(root_pem), "%s/root.pem", scratch);
	if (fetch_root(mgmt_port, root_pem, why, cap) < 0)
		return -1;
	t_pebble = dc_now_ms() - t0;
	return 0;
}

/* The EAB pebble, started when its step comes. */
static int
setup_eab(char *why, size_t cap)
{
	char cfg[600];

	snprintf(cfg, sizeof(cfg), "%s/pebble-eab.json", scratch);
	snprintf(pebble_eab_log, sizeof(pebble_eab_log), "%s/pebble-eab.log",
	    scratch);
	if (write_pebble_config(cfg, eab_acme_port, eab_mgmt_port, 1) < 0) {
		snprintf(why, cap, "write %s: %s", cfg, strerror(errno));
		return -1;
	}
	return start_pebble(P_PEBBLE_EAB, cfg, pebble_eab_log, eab_acme_port,
	    eab_mgmt_port, why, cap);
}

/* ---- the relay ---------------------------------------------------------- */

struct relay {
	const char *step;	/* log: relay-<step>.log */
	const char *host;	/* -hostname */
	char certdir[600];
	const char *directory;	/* -acme-directory */
	int http_port;		/* -http-port */
	const char *eab_kid, *eab_key;
	int ip_certs;
	const char *user;	/* -user instead of -allow-root; NULL none */
	const char *ca_file;	/* -acme-ca-file; NULL: listener_crt */
	char renew_before[32];	/* DERP_ACME_RENEW_BEFORE; "" = unset */
	/* Set by relay_start: */
	int port;
	char log[640];
	int64_t started_ms;
};

static void
relay_init(struct relay *r, const char *step, const char *host,
    const char *certdir_name, const char *directory)
{
	memset(r, 0, sizeof(*r));
	r->step = step;
	r->host = host;
	snprintf(r->certdir, sizeof(r->certdir), "%s/%s", scratch,
	    certdir_name);
	r->directory = directory;
	r->http_port = http_port;
}

/* Start it; 0 when it accepts TCP on its port (a certificate or not). */
static int
relay_start(struct relay *r, char *why, size_t cap)
{
	char a[64], hp[32], env_rb[64];
	char *argv[32], *env[4];
	int i = 0, e = 0;

	r->port = free_port(0);
	if (r->port < 0) {
		snprintf(why, cap, "no free port");
		return -1;
	}
	snprintf(r->log, sizeof(r->log), "%s/relay-%s.log", scratch, r->step);
	snprintf(a, sizeof(a), "127.0.0.1:%d", r->port);
	snprintf(hp, sizeof(hp), "%d", r->http_port);
	argv[i++] = (char *)derp_path;
	if (r->user != NULL) {
		argv[i++] = "-user";
		argv[i++] = (char *)r->user;
	} else if (geteuid() == 0)
		argv[i++] = "-allow-root";	/* derp.c refuses root otherwise */
	argv[i++] = "-a";
	argv[i++] = a;
	argv[i++] = "-hostname";
	argv[i++] = (char *)r->host;
	argv[i++] = "-certmode";
	argv[i++] = "letsencrypt";
	argv[i++] = "-certdir";
	argv[i++] = r->certdir;
	argv[i++] = "-acme-directory";
	argv[i++] = (char *)r->directory;
	argv[i++] = "-acme-ca-file";
	argv[i++] = r->ca_file != NULL ? (char *)r->ca_file : listener_crt;
	argv[i++] = "-http-port";
	argv[i++] = hp;
	argv[i++] = "-c";
	argv[i++] = relay_key_file;
	argv[i++] = "-stun=false";
	if (r->eab_kid != NULL) {
		argv[i++] = "-acme-eab-kid";
		argv[i++] = (char *)r->eab_kid;
		argv[i++] = "-acme-eab-key";
		argv[i++] = (char *)r->eab_key;
	}
	if (r->ip_certs)
		argv[i++] = "-acme-ip-certs";
	argv[i] = NULL;
	env[e++] = "DERP_TEST_TLS=1";	/* TLS on a port other than 443 */
	if (r->renew_before[0] != '\0') {
		snprintf(env_rb, sizeof(env_rb), "DERP_ACME_RENEW_BEFORE=%s",
		    r->renew_before);
		env[e++] = env_rb;
	} else
		env[e++] = "DERP_ACME_RENEW_BEFORE";
	env[e] = NULL;

	r->started_ms = dc_now_ms();
	if (spawn(P_RELAY, argv, env, r->log) < 0) {
		snprintf(why, cap, "fork: %s", strerror(errno));
		return -1;
	}
	if (wait_listening(P_RELAY, &r->port, 1) < 0) {
		if (exited[P_RELAY])
			snprintf(why, cap, "relay (%s) exited at start-up (wait "
			    "status %#x); log %s", r->step,
			    (unsigned)exited_status[P_RELAY], r->log);
		else
			snprintf(why, cap, "relay (%s) not accepting connections"
			    " on port %d within %d ms; log %s", r->step, r->port,
			    START_MS, r->log);
		note_tail(r->log, 1500);
		stop(P_RELAY, STOP_MS, NULL);
		return -1;
	}
	return 0;
}

/* SIGTERM; records problems for relays_exit_clean. */
static void
relay_stop(struct relay *r)
{
	int status, clean, early;
	char *t;
	size_t n = strlen(exit_problems);

	if (procs[P_RELAY] <= 0)
		return;
	early = exited[P_RELAY];
	clean = stop(P_RELAY, STOP_MS, &status);
	if (!clean || status == -1 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		snprintf(exit_problems + n, sizeof(exit_problems) - n,
		    "%s%s: %s (wait status %#x)", n ? "; " : "", r->step,
		    early ? "exited before it was told to" :
		    status == -1 ? "killed after the SIGTERM grace" :
		    WIFSIGNALED(status) ? "died of a signal" :
		    WEXITSTATUS(status) != 0 ? "exit status not 0" :
		    "a process of its group outlived it", (unsigned)status);
	t = dc_read_text(r->log, FILE_MAX, NULL);
	n = strlen(exit_problems);
	if (t != NULL && (strstr(t, "AddressSanitizer") != NULL ||
	    strstr(t, "LeakSanitizer") != NULL ||
	    strstr(t, "runtime error:") != NULL))
		snprintf(exit_problems + n, sizeof(exit_problems) - n,
		    "%s%s: sanitizer report in %s", n ? "; " : "", r->step,
		    r->log);
	free(t);
}

static int file_line(const char *path, const char *needle, char *out,
    size_t cap);

/*
 * Wait until the relay's log holds needle at least count times; the ms it
 * took since the relay started, or -1 (timeout, or the log says
 * give_up (may be NULL): why says so) or -2 (the relay exited).
 */
static int64_t
relay_wait_log(const struct relay *r, const char *needle, int count,
    const char *give_up, int ms, char *why, size_t cap)
{
	int64_t deadline = dc_now_ms() + ms;
	char line[600];

	for (;;) {
		if (file_count(r->log, needle) >= count)
			return dc_now_ms() - r->started_ms;
		if (give_up != NULL && file_line(r->log, give_up, line,
		    sizeof(line))) {
			snprintf(why, cap, "no \"%s\" but \"%s\"; log %s", needle,
			    line, r->log);
			return -1;
		}
		if (!alive(P_RELAY)) {
			snprintf(why, cap, "the relay exited before its log said"
			    " \"%s\"; log %s", needle, r->log);
			return -2;
		}
		if (dc_now_ms() > deadline) {
			snprintf(why, cap, "no \"%s\" in %s within %d ms", needle,
			    r->log, ms);
			return -1;
		}
		dc_sleep_ms(50);
	}
}

#define ATTEMPT_FAILED "acme: attempt failed"

/* "cert: serving <path>" lines: a certificate that went into service after
 * start (the stored one at start says "cert: serving the stored ...").  The
 * certificate directories are absolute paths, so the text after "serving "
 * is a '/'. */
#define SERVING_NEW "cert: serving /"
#define SERVING_STORED "cert: serving the stored"
#define NO_CERT "acme: no certificate for"
#define CA_ERROR "acme: CA error"

/* ---- clients ------------------------------------------------------------ */

/* TLS connect (no upgrade); c->x509 has the leaf's hash.  NULL on failure. */
static struct dclient *
tls_client(int port, const char *sni)
{
	struct dclient *c = dc_new();

	if (c == NULL)
		return NULL;
	if (dc_connect(c, "127.0.0.1", port, 1, sni, CONNECT_MS) < 0) {
		dc_free(c);
		return NULL;
	}
	return c;
}

static struct dclient *
derp_client(int port, const char *sni)
{
	struct dclient *c = dc_new();

	if (c == NULL)
		return NULL;
	dc_genkey(c);
	if (dc_connect(c, "127.0.0.1", port, 1, sni, CONNECT_MS) < 0 ||
	    dc_handshake(c, 0, NULL, IO_MS) < 0) {
		dc_free(c);
		return NULL;
	}
	return c;
}

/* a sends len random bytes to b, b must get them from a; NULL or why. */
static const char *
relay_packet(struct dclient *a, struct dclient *b, size_t len, int ms)
{
	static uint8_t out[1024], in[DC_MAX_FRAME];
	static char why[120];
	uint8_t src[32];
	size_t n;
	int r;

	dc_random(out, len);
	if (dc_send_packet(a, b->pk, out, len) < 0)
		return "send failed";
	r = dc_recv_packet(b, src, in, sizeof(in), &n, ms);
	if (r != 1) {
		snprintf(why, sizeof(why), "no packet arrived (%s)",
		    r == -2 ? "timeout" : r == 0 ? "closed" : "error");
		return why;
	}
	if (memcmp(src, a->pk, 32) != 0)
		return "wrong source key";
	if (n != len || memcmp(in, out, len) != 0)
		return "content differs";
	return NULL;
}

/* A fresh DERP pair on port (sni) relays a packet each way; NULL or why.
 * The leaf of the first connection into leaf (may be NULL). */
static const char *
pair_check(int port, const char *sni, uint8_t leaf[32], int *ncerts)
{
	static char why[200];
	struct dclient *a = derp_client(port, sni), *b = NULL;
	const char *e = NULL;

	if (a == NULL)
		e = "TLS + DERP handshake failed";
	else if ((b = derp_client(port, sni)) == NULL)
		e = "second TLS + DERP handshake failed";
	else if ((e = relay_packet(a, b, 100, IO_MS)) == NULL)
		e = relay_packet(b, a, 100, IO_MS);
	if (e == NULL) {
		if (leaf != NULL)
			memcpy(leaf, a->x509.leaf_sha256, 32);
		if (ncerts != NULL)
			*ncerts = a->x509.ncerts;
	} else {
		snprintf(why, sizeof(why), "DERP pair (SNI %s): %s",
		    sni ? sni : "none", e);
		e = why;
	}
	dc_free(a);
	dc_free(b);
	return e;
}

static int
get_204(int port)
{
	struct dclient *c = dc_new();
	char req[256], head[DC_HEAD_MAX];
	int st = -1;

	if (c == NULL)
		return -1;
	snprintf(req, sizeof(req), "GET /generate_204 HTTP/1.1\r\nHost: "
	    "127.0.0.1:%d\r\nConnection: close\r\n\r\n", port);
	if (dc_connect(c, "127.0.0.1", port, 0, NULL, CONNECT_MS) == 0 &&
	    dc_http_request(c, req, head, sizeof(head), IO_MS) == 0)
		st = dc_http_status(head);
	dc_free(c);
	return st;
}

/*
 * openssl s_client against port, verifying against root.pem: sni (NULL:
 * none) and either -verify_hostname name or -verify_ip ip.  NULL when it says
 * "Verify return code: 0 (ok)", else why (its verdict line, or what went
 * wrong).
 */
static const char *
openssl_verify(int port, const char *sni, const char *vflag,
    const char *vname)
{
	static char why[1024];
	char connect[64], out_path[600], line[256];
	char *argv[16];
	int i = 0, status = -1;
	int64_t deadline;

	snprintf(connect, sizeof(connect), "127.0.0.1:%d", port);
	snprintf(out_path, sizeof(out_path), "%s/openssl.out", scratch);
	argv[i++] = "/usr/bin/env";	/* openssl from PATH */
	argv[i++] = "openssl";
	argv[i++] = "s_client";
	argv[i++] = "-connect";
	argv[i++] = connect;
	if (sni != NULL) {
		argv[i++] = "-servername";
		argv[i++] = (char *)sni;
	}
	argv[i++] = "-CAfile";
	argv[i++] = root_pem;
	argv[i++] = "-verify_return_error";
	argv[i++] = (char *)vflag;
	argv[i++] = (char *)vname;
	argv[i] = NULL;
	if (spawn(P_OPENSSL, argv, NULL, out_path) < 0)
		return "fork failed";
	deadline = dc_now_ms() + OPENSSL_MS;
	for (;;) {
		pid_t r = waitpid(procs[P_OPENSSL], &status, WNOHANG);
		if (r == procs[P_OPENSSL])
			break;
		if (dc_now_ms() > deadline) {
			stop(P_OPENSSL, 0, NULL);
			snprintf(why, sizeof(why), "openssl s_client still running"
			    " after %d ms", OPENSSL_MS);
			return why;
		}
		dc_sleep_ms(20);
	}
	procs[P_OPENSSL] = -1;
	if (file_line(out_path, "Verify return code: 0 (ok)", line,
	    sizeof(line)))
		return NULL;
	if (file_line(out_path, "Verify return code:", line, sizeof(line)) ||
	    file_line(out_path, "verify error", line, sizeof(line)) ||
	    file_line(out_path, "error", line, sizeof(line)))
		snprintf(why, sizeof(why), "openssl s_client %s %s: %s (%s)",
		    vflag, vname, line, out_path);
	else
		snprintf(why, sizeof(why), "openssl s_client %s %s: no verdict"
		    " (exit status %d; %s)", vflag, vname,
		    WIFEXITED(status) ? WEXITSTATUS(status) : -1, out_path);
	return why;
}

/* ---- steps -------------------------------------------------------------- */

static struct relay rl;		/* the relay running now (one at a time) */
static uint8_t dns_leaf[32];	/* derp.test's leaf after dns_issued */
static int dns_ok;		/* dns_issued passed: the certdir holds one */

static void
step_dns(void)
{
	char why[2048], path[700], acct[700];
	int64_t t;
	int orders0, issued0, n;
	int ncerts = 0;
	const char *e;

	relay_init(&rl, "dns", "derp.test", "certs-dns", dir_url);
	orders0 = file_count(pebble_log, "Added order");
	issued0 = file_count(pebble_log, "Issued certificate");
	if (relay_start(&rl, why, sizeof(why)) < 0) {
		fail("dns_issued", "%s", why);
		return;
	}
	t = relay_wait_log(&rl, SERVING_NEW, 1, NO_CERT, ISSUE_MS, why,
	    sizeof(why));
	if (t < 0) {
		fail("dns_issued", "%s", why);
		note_tail(rl.log, 2000);
		note_tail(pebble_log, 1500);
		relay_stop(&rl);
		return;
	}
	t_dns = t;
	snprintf(path, sizeof(path), "%s/derp.test", rl.certdir);
	snprintf(acct, sizeof(acct), "%s/acme_account+key", rl.certdir);
	if (file_count(rl.log, "acme: no certificate stored at") < 1)
		fail("dns_issued", "no \"acme: no certificate stored at\" line "
		    "at start; log %s", rl.log);
	else if (file_count(rl.log, "acme: ordering a certificate for "
	    "derp.test from ") != 1)
		fail("dns_issued", "want exactly one \"acme: ordering a "
		    "certificate for derp.test\" line; log %s", rl.log);
	else if ((n = file_count(pebble_log, "Issued certificate")) !=
	    issued0 + 1)
		fail("dns_issued", "pebble issued %d certificates, want 1 (%d"
		    " orders)", n - issued0,
		    file_count(pebble_log, "Added order") - orders0);
	else if (stored_leaf(path, NULL, "derp.test", dns_leaf, NULL, why,
	    sizeof(why)) < 0)
		fail("dns_issued", "%s", why);
	else {
		dns_ok = 1;
		ok("dns_issued");
	}
	note("dns: certificate in service %lld ms after the relay started",
	    (long long)t);

	/* dns_files: autocert's cache files and modes. */
	why[0] = '\0';
	if (mode_is(rl.certdir, 0700, why, sizeof(why)) &&
	    mode_is(path, 0600, why, sizeof(why)) &&
	    mode_is(acct, 0600, why, sizeof(why)) &&
	    pem_shape(path, 1, &ncerts, why, sizeof(why))) {
		if (ncerts < 2)
			snprintf(why, sizeof(why), "%s holds %d certificate(s);"
			    " pebble's chain is a leaf and an intermediate",
			    path, ncerts);
		else if (file_count(acct, "-----BEGIN EC PRIVATE KEY-----") != 1)
			snprintf(why, sizeof(why), "%s is not one PEM EC PRIVATE"
			    " KEY", acct);
	}
	verdict("dns_files", why[0] ? why : NULL);

	if (!dns_ok) {
		relay_stop(&rl);
		return;
	}
	verdict_openssl("dns_verified", have_openssl ? openssl_verify(rl.port,
	    "derp.test", "-verify_hostname", "derp.test") : NULL);
	{
		uint8_t leaf[32];

		e = pair_check(rl.port, "derp.test", leaf, &ncerts);
		if (e == NULL && memcmp(leaf, dns_leaf, 32) != 0)
			e = "the leaf served is not the one in the certdir";
		else if (e == NULL && ncerts < 2) {
			snprintf(why, sizeof(why), "the relay sent %d "
			    "certificate(s); pebble's chain needs the "
			    "intermediate too", ncerts);
			e = why;
		}
		verdict("dns_derp", e);
	}
	relay_stop(&rl);
}

/* The pair loop of renew_no_gap. */
struct pair_run {
	long exchanges;
	int64_t max_gap_ms, max_gap_at_ms;	/* since the loop started */
	int64_t renewed_at_ms;			/* -1: not seen */
	int64_t ordered_at_ms;			/* "acme: ordering" seen; -1 */
	const char *broken;			/* NULL: the pair kept working */
};

static void
pair_loop(struct dclient *a, struct dclient *b, const char *log, int serving0,
    struct pair_run *pr)
{
	static uint8_t out[PACKET_BYTES], in[DC_MAX_FRAME];
	static char why[800];
	int64_t t0 = dc_now_ms(), t_prev = t0, t_log = t0, t;
	int orders0 = file_count(log, "acme: ordering");
	uint32_t seq = 0;

	pr->exchanges = 0;
	pr->max_gap_ms = pr->max_gap_at_ms = 0;
	pr->renewed_at_ms = pr->ordered_at_ms = -1;
	pr->broken = NULL;
	for (;;) {
		struct dclient *from = seq & 1 ? b : a, *to = seq & 1 ? a : b;
		uint8_t src[32];
		size_t n;
		int r;

		memset(out, 0, sizeof(out));
		out[0] = (uint8_t)(seq >> 24);
		out[1] = (uint8_t)(seq >> 16);
		out[2] = (uint8_t)(seq >> 8);
		out[3] = (uint8_t)seq;
		if (dc_send_packet(from, to->pk, out, sizeof(out)) < 0) {
			snprintf(why, sizeof(why), "send %s failed after %ld "
			    "exchanges", seq & 1 ? "B->A" : "A->B",
			    pr->exchanges);
			pr->broken = why;
			return;
		}
		r = dc_recv_packet(to, src, in, sizeof(in), &n, PAIR_READ_MS);
		if (r != 1 || n != sizeof(out) || memcmp(in, out, n) != 0 ||
		    memcmp(src, from->pk, 32) != 0) {
			snprintf(why, sizeof(why), "%s: %s after %ld exchanges",
			    seq & 1 ? "B->A" : "A->B", r == -2 ? "timeout" :
			    r == 0 ? "connection closed" : r < 0 ? "error" :
			    "wrong packet", pr->exchanges);
			pr->broken = why;
			return;
		}
		t = dc_now_ms();
		if (t - t_prev > pr->max_gap_ms) {
			pr->max_gap_ms = t - t_prev;
			pr->max_gap_at_ms = t - t0;
		}
		t_prev = t;
		pr->exchanges++;
		seq++;
		if (t - t_log >= LOG_POLL_MS) {
			char *text = dc_read_text(log, FILE_MAX, NULL);

			t_log = t;
			if (pr->ordered_at_ms < 0 &&
			    count_sub(text, "acme: ordering") > orders0)
				pr->ordered_at_ms = t - t0;
			if (pr->renewed_at_ms < 0 &&
			    count_sub(text, SERVING_NEW) > serving0)
				pr->renewed_at_ms = t - t0;
			if (pr->renewed_at_ms < 0 &&
			    count_sub(text, NO_CERT) > 0) {
				free(text);
				snprintf(why, sizeof(why), "the renewal failed "
				    "(\"%s\" in %s)", NO_CERT, log);
				pr->broken = why;
				return;
			}
			free(text);
			t_prev = dc_now_ms();	/* the read is ours, not a gap */
		}
		if (pr->renewed_at_ms >= 0 &&
		    t - t0 - pr->renewed_at_ms >= AFTER_RENEW_MS)
			return;
		if (t - t0 > RENEW_MS)
			return;
	}
}

static void
step_renew(void)
{
	char why[2048], path[700];
	uint8_t old_leaf[32], new_leaf[32], file_leaf[32];
	int64_t not_after, rb;
	struct dclient *a = NULL, *b = NULL, *c = NULL;
	struct pair_run pr;
	const char *e;

	if (!dns_ok)
		return;
	relay_init(&rl, "renew", "derp.test", "certs-dns", dir_url);
	snprintf(path, sizeof(path), "%s/derp.test", rl.certdir);
	if (stored_leaf(path, NULL, "derp.test", old_leaf, &not_after, why,
	    sizeof(why)) < 0) {
		fail("renew_no_gap", "%s", why);
		return;
	}
	/* Due RENEW_LEAD_S after the start, while the pair runs. */
	rb = not_after - (int64_t)time(NULL) - RENEW_LEAD_S;
	if (rb < 1) {
		fail("renew_no_gap", "the stored certificate expires too soon "
		    "(%lld s)", (long long)(not_after - (int64_t)time(NULL)));
		return;
	}
	snprintf(rl.renew_before, sizeof(rl.renew_before), "%lld",
	    (long long)rb);
	if (relay_start(&rl, why, sizeof(why)) < 0) {
		fail("renew_no_gap", "%s", why);
		return;
	}
	a = derp_client(rl.port, "derp.test");
	b = derp_client(rl.port, "derp.test");
	if (a == NULL || b == NULL) {
		fail("renew_no_gap", "DERP pair: TLS + handshake failed");
		goto out;
	}
	if (memcmp(a->x509.leaf_sha256, old_leaf, 32) != 0) {
		fail("renew_no_gap", "at start the relay serves a leaf that is "
		    "not the stored one");
		goto out;
	}
	if (file_count(rl.log, SERVING_NEW) != 0) {
		fail("renew_no_gap", "a new certificate was in service before "
		    "the pair started; log %s", rl.log);
		goto out;
	}
	pair_loop(a, b, rl.log, 0, &pr);
	note("renew_no_gap: DERP_ACME_RENEW_BEFORE=%s; %ld exchanges in the "
	    "loop, longest gap %lld ms (at %lld ms), order seen at %lld ms, new"
	    " certificate in service at %lld ms", rl.renew_before, pr.exchanges,
	    (long long)pr.max_gap_ms, (long long)pr.max_gap_at_ms,
	    (long long)pr.ordered_at_ms, (long long)pr.renewed_at_ms);
	if (pr.broken != NULL)
		snprintf(why, sizeof(why), "the pair stopped: %s", pr.broken);
	else if (pr.renewed_at_ms < 0)
		snprintf(why, sizeof(why), "no new \"%s\" within %d ms; log %s",
		    SERVING_NEW, RENEW_MS, rl.log);
	else if (pr.max_gap_ms > MAX_GAP_MS)
		snprintf(why, sizeof(why), "the pair's longest gap was %lld ms "
		    "(at %lld ms; renewal seen at %lld ms), over %d ms",
		    (long long)pr.max_gap_ms, (long long)pr.max_gap_at_ms,
		    (long long)pr.renewed_at_ms, MAX_GAP_MS);
	else
		why[0] = '\0';
	if (pr.renewed_at_ms >= 0)
		t_renew = pr.renewed_at_ms - (pr.ordered_at_ms >= 0 ?
		    pr.ordered_at_ms : 0);
	verdict("renew_no_gap", why[0] ? why : NULL);
	if (pr.renewed_at_ms < 0) {
		note_tail(rl.log, 2000);
		goto out;
	}

	/* A new connection gets the new leaf, the one now in the certdir;
	 * it and the old pair relay to each other. */
	e = NULL;
	if (stored_leaf(path, NULL, "derp.test", file_leaf, NULL, why,
	    sizeof(why)) < 0)
		e = why;
	else if ((c = derp_client(rl.port, "derp.test")) == NULL)
		e = "TLS + DERP handshake on a new connection failed";
	else {
		memcpy(new_leaf, c->x509.leaf_sha256, 32);
		if (memcmp(new_leaf, old_leaf, 32) == 0)
			e = "a new connection still gets the old leaf";
		else if (memcmp(new_leaf, file_leaf, 32) != 0)
			e = "the new leaf is not the one in the certdir";
		else if ((e = relay_packet(c, a, 100, IO_MS)) == NULL)
			e = relay_packet(b, c, 100, IO_MS);
		if (e == NULL && memcmp(a->x509.leaf_sha256, old_leaf, 32))
			e = "?";	/* cannot happen: recorded at connect */
	}
	verdict("renew_new_leaf", e);
	if (e == NULL) {
		char h1[17], h2[17];

		hex8(old_leaf, h1);
		hex8(new_leaf, h2);
		note("renew: leaf %s... replaced by %s...", h1, h2);
		memcpy(dns_leaf, new_leaf, 32);
	}
	verdict_openssl("renew_verified", have_openssl ?
	    openssl_verify(rl.port, "derp.test", "-verify_hostname",
	    "derp.test") : NULL);
out:
	dc_free(a);
	dc_free(b);
	dc_free(c);
	relay_stop(&rl);
}

static void
step_restart(void)
{
	char why[2048];
	int orders0, issued0;
	int64_t t;
	struct dclient *c;
	const char *e = NULL;

	if (!dns_ok)
		return;
	relay_init(&rl, "restart", "derp.test", "certs-dns", dir_url);
	orders0 = file_count(pebble_log, "Added order");
	issued0 = file_count(pebble_log, "Issued certificate");
	if (relay_start(&rl, why, sizeof(why)) < 0) {
		fail("restart_stored", "%s", why);
		return;
	}
	/* TLS at once: the first DERP handshake after the port opens. */
	c = derp_client(rl.port, "derp.test");
	t = dc_now_ms() - rl.started_ms;
	if (c == NULL)
		e = "TLS + DERP handshake right after start failed";
	else if (memcmp(c->x509.leaf_sha256, dns_leaf, 32) != 0)
		e = "the leaf served is not the stored one";
	dc_free(c);
	if (e == NULL) {
		t_restart_tls = t;
		e = pair_check(rl.port, "derp.test", NULL, NULL);
	}
	verdict("restart_tls", e);

	if (relay_wait_log(&rl, SERVING_STORED, 1, NULL, IO_MS, why,
	    sizeof(why)) < 0)
		fail("restart_stored", "%s", why);
	else
		ok("restart_stored");

	dc_sleep_ms(QUIET_ORDER_MS);
	if (file_count(pebble_log, "Added order") != orders0 ||
	    file_count(pebble_log, "Issued certificate") != issued0)
		fail("restart_no_new_order", "pebble's log has %d new order(s)"
		    " within %d ms of the restart", file_count(pebble_log,
		    "Added order") - orders0, QUIET_ORDER_MS);
	else if (file_count(rl.log, "acme: ordering") != 0)
		fail("restart_no_new_order", "the relay logged an order; log %s",
		    rl.log);
	else if (!alive(P_RELAY))
		fail("restart_no_new_order", "the relay exited; log %s", rl.log);
	else
		ok("restart_no_new_order");
	relay_stop(&rl);
}

static void
step_ip(void)
{
	char why[2048], crt[700], key[700], acct[700];
	uint8_t leaf[32], served[32];
	int64_t t;
	int ncerts = 0, issued = 0;
	const char *e;

	relay_init(&rl, "ip", "127.0.0.1", "certs-ip", dir_url);
	rl.ip_certs = 1;
	if (relay_start(&rl, why, sizeof(why)) < 0) {
		fail("ip_issued", "%s", why);
		return;
	}
	t = relay_wait_log(&rl, SERVING_NEW, 1, NO_CERT, ISSUE_MS, why,
	    sizeof(why));
	snprintf(crt, sizeof(crt), "%s/127.0.0.1.crt", rl.certdir);
	snprintf(key, sizeof(key), "%s/127.0.0.1.key", rl.certdir);
	snprintf(acct, sizeof(acct), "%s/acme-account.key", rl.certdir);
	if (t >= 0)
		t_ip = t;
	if (t < 0) {
		note_tail(rl.log, 2000);
	} else if (!mode_is(rl.certdir, 0700, why, sizeof(why)) ||
	    !mode_is(crt, 0600, why, sizeof(why)) ||
	    !mode_is(key, 0600, why, sizeof(why)) ||
	    !mode_is(acct, 0600, why, sizeof(why)) ||
	    !pem_shape(crt, 0, &ncerts, why, sizeof(why))) {
		/* why says it */
	} else if (ncerts < 2) {
		snprintf(why, sizeof(why), "%s holds %d certificate(s); want "
		    "the leaf and pebble's intermediate", crt, ncerts);
	} else if (file_count(key, "-----BEGIN EC PRIVATE KEY-----") != 1) {
		snprintf(why, sizeof(why), "%s is not one PEM EC PRIVATE KEY",
		    key);
	} else if (file_count(acct, "-----BEGIN EC PRIVATE KEY-----") != 1) {
		snprintf(why, sizeof(why), "%s is not one PEM EC PRIVATE KEY",
		    acct);
	} else if (stored_leaf(crt, key, "127.0.0.1", leaf, NULL, why,
	    sizeof(why)) == 0)
		issued = 1;
	verdict("ip_issued", issued ? NULL : why);
	if (!issued) {
		relay_stop(&rl);
		return;
	}
	note("ip: certificate in service %lld ms after the relay started",
	    (long long)t);
	verdict_openssl("ip_verified", have_openssl ? openssl_verify(rl.port,
	    NULL, "-verify_ip", "127.0.0.1") : NULL);
	e = pair_check(rl.port, NULL, served, NULL);
	if (e == NULL && memcmp(served, leaf, 32) != 0)
		e = "the leaf served (no SNI) is not the one in the certdir";
	verdict("ip_derp_no_sni", e);
	relay_stop(&rl);
}

/*
 * -acme-ip-certs beside a DNS -hostname (derper-compat.md 7.4): the relay
 * orders derp.test at start; a client without SNI is refused while there is
 * no certificate for the local address it reached, which the relay then
 * orders (after derp.test's: one order at a time); afterwards each kind of
 * client gets its own certificate, from the files autocert and ipcert.go
 * would have written.
 */
static void
step_mixed(void)
{
	char why[2048], path[700], crt[700], key[700];
	uint8_t dns[32], ip[32], got[32];
	struct dclient *c;
	const char *e;
	int64_t t0;
	int issued0 = file_count(pebble_log, "Issued certificate"), n;

	relay_init(&rl, "mixed", "derp.test", "certs-mixed", dir_url);
	rl.ip_certs = 1;
	if (relay_start(&rl, why, sizeof(why)) < 0) {
		fail("mixed_both_issued", "%s", why);
		return;
	}
	if (relay_wait_log(&rl, SERVING_NEW, 1, NO_CERT, ISSUE_MS, why,
	    sizeof(why)) < 0) {
		fail("mixed_both_issued", "derp.test: %s", why);
		note_tail(rl.log, 2000);
		relay_stop(&rl);
		return;
	}
	t0 = dc_now_ms();
	c = tls_client(rl.port, NULL);
	e = c != NULL ? "a client without SNI got a certificate before one for"
	    " 127.0.0.1 was ordered" : NULL;
	dc_free(c);
	if (e == NULL && relay_wait_log(&rl, SERVING_NEW, 2, NO_CERT, ISSUE_MS,
	    why, sizeof(why)) < 0)
		e = why;
	snprintf(path, sizeof(path), "%s/derp.test", rl.certdir);
	snprintf(crt, sizeof(crt), "%s/127.0.0.1.crt", rl.certdir);
	snprintf(key, sizeof(key), "%s/127.0.0.1.key", rl.certdir);
	if (e == NULL && stored_leaf(path, NULL, "derp.test", dns, NULL, why,
	    sizeof(why)) < 0)
		e = why;
	if (e == NULL && stored_leaf(crt, key, "127.0.0.1", ip, NULL, why,
	    sizeof(why)) < 0)
		e = why;
	if (e == NULL && (n = file_count(pebble_log, "Issued certificate")) !=
	    issued0 + 2) {
		snprintf(why, sizeof(why), "pebble issued %d certificates, want "
		    "2", n - issued0);
		e = why;
	}
	if (e == NULL && (file_count(rl.log, "acme: ordering a certificate for "
	    "127.0.0.1 from") != 1 || file_count(rl.log, "acme: ordering a "
	    "certificate for derp.test from") != 1)) {
		snprintf(why, sizeof(why), "want one order each for derp.test "
		    "and 127.0.0.1; log %s", rl.log);
		e = why;
	}
	if (e == NULL) {
		snprintf(path, sizeof(path), "%s/acme_account+key", rl.certdir);
		snprintf(crt, sizeof(crt), "%s/acme-account.key", rl.certdir);
		if (file_count(path, "-----BEGIN EC PRIVATE KEY-----") != 1 ||
		    file_count(crt, "-----BEGIN EC PRIVATE KEY-----") != 1)
			e = "want both account keys, autocert's acme_account+key "
			    "and ipcert.go's acme-account.key";
	}
	if (e == NULL)
		t_mixed = dc_now_ms() - t0;
	else
		note_tail(rl.log, 2000);
	verdict("mixed_both_issued", e);
	if (e != NULL) {
		relay_stop(&rl);
		return;
	}
	e = have_openssl ? openssl_verify(rl.port, NULL, "-verify_ip",
	    "127.0.0.1") : NULL;
	if (e == NULL && have_openssl)
		e = openssl_verify(rl.port, "derp.test", "-verify_hostname",
		    "derp.test");
	verdict_openssl("mixed_verified", e);
	e = pair_check(rl.port, NULL, got, NULL);
	if (e == NULL && memcmp(got, ip, 32) != 0)
		e = "without SNI: the leaf is not 127.0.0.1.crt's";
	if (e == NULL && (e = pair_check(rl.port, "derp.test", got, NULL)) ==
	    NULL && memcmp(got, dns, 32) != 0)
		e = "SNI derp.test: the leaf is not derp.test's";
	if (e == NULL && (e = pair_check(rl.port, "127.0.0.1", got, NULL)) ==
	    NULL && memcmp(got, ip, 32) != 0)
		e = "SNI 127.0.0.1: the leaf is not 127.0.0.1.crt's";
	verdict("mixed_derp_both", e);
	relay_stop(&rl);
}

/*
 * As root with -user nobody, the way README deploys it: the ACME child runs
 * as nobody, so it makes the answer directory and writes the certificate as
 * nobody, in a certdir nobody owns (reached through directories it may
 * traverse; the scratch directory is 0700), with a CA file it may read.
 */
static void
step_user(void)
{
	char why[2048], base[] = "/tmp/derp-pebble-user.XXXXXX", ca[700];
	char *text;
	size_t len;
	struct passwd *pw = getpwnam("nobody");
	int64_t t;

	if (geteuid() != 0 || pw == NULL) {
		skip("user_nobody_issued", "%s", geteuid() != 0 ? "not root" :
		    "no user nobody");
		return;
	}
	if (mkdtemp(base) == NULL || chmod(base, 0711) != 0) {
		fail("user_nobody_issued", "mkdtemp: %s", strerror(errno));
		return;
	}
	relay_init(&rl, "user", "derp.test", "unused", dir_url);
	snprintf(rl.certdir, sizeof(rl.certdir), "%s/certs", base);
	snprintf(ca, sizeof(ca), "%s/ca.pem", base);
	text = dc_read_text(listener_crt, FILE_MAX, &len);
	if (text == NULL || write_text(ca, text, 0644) != 0 ||
	    mkdir(rl.certdir, 0700) != 0 ||
	    chown(rl.certdir, pw->pw_uid, pw->pw_gid) != 0) {
		fail("user_nobody_issued", "setting up %s: %s", base,
		    strerror(errno));
		free(text);
		return;
	}
	free(text);
	rl.user = "nobody";
	rl.ca_file = ca;
	if (relay_start(&rl, why, sizeof(why)) < 0) {
		fail("user_nobody_issued", "%s", why);
		return;
	}
	t = relay_wait_log(&rl, SERVING_NEW, 1, NO_CERT, ISSUE_MS, why,
	    sizeof(why));
	if (t < 0)
		note_tail(rl.log, 2000);
	else
		note("user: certificate in service %lld ms after the relay "
		    "started (-user nobody)", (long long)t);
	verdict("user_nobody_issued", t >= 0 ? NULL : why);
	relay_stop(&rl);
	/* What the relay makes there, then the directories. */
	{
		static const char *const files[] = { "certs/derp.test",
		    "certs/acme_account+key", "certs/.acme-challenge",
		    "certs", "ca.pem" };
		char p[800];
		size_t i;

		for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			snprintf(p, sizeof(p), "%s/%s", base, files[i]);
			if (unlink(p) != 0)
				rmdir(p);
		}
		rmdir(base);
	}
}

static void
step_eab(void)
{
	char why[2048], path[700], line[512], bad_key[128];
	uint8_t k[EAB_KEY_BYTES], leaf[32];
	int64_t t;
	int st;
	const char *e = NULL;

	if (setup_eab(why, sizeof(why)) < 0) {
		fail("eab_issued", "%s", why);
		return;
	}
	relay_init(&rl, "eab", "derp.test", "certs-eab", eab_dir_url);
	rl.eab_kid = "kid-1";
	rl.eab_key = eab_key;
	if (relay_start(&rl, why, sizeof(why)) < 0) {
		fail("eab_issued", "%s", why);
	} else if ((t = relay_wait_log(&rl, SERVING_NEW, 1, NO_CERT,
	    ISSUE_MS, why, sizeof(why))) < 0) {
		fail("eab_issued", "%s", why);
		note_tail(rl.log, 2000);
		note_tail(pebble_eab_log, 1500);
	} else {
		t_eab = t;
		snprintf(path, sizeof(path), "%s/derp.test", rl.certdir);
		if (file_count(pebble_eab_log, "Issued certificate") != 1)
			e = "pebble (EAB) did not log one issued certificate";
		else if (stored_leaf(path, NULL, "derp.test", leaf, NULL, why,
		    sizeof(why)) < 0)
			e = why;
		else
			e = pair_check(rl.port, "derp.test", NULL, NULL);
		verdict("eab_issued", e);
	}
	relay_stop(&rl);

	/* A wrong key: the order fails, the relay runs on. */
	dc_random(k, sizeof(k));
	base64url(k, sizeof(k), bad_key);
	relay_init(&rl, "eab-wrong-key", "derp.test", "certs-eab-bad",
	    eab_dir_url);
	rl.eab_kid = "kid-1";
	rl.eab_key = bad_key;
	if (relay_start(&rl, why, sizeof(why)) < 0) {
		fail("eab_wrong_key", "%s", why);
		return;
	}
	t = relay_wait_log(&rl, ATTEMPT_FAILED, 1, NULL, FAIL_MS, why,
	    sizeof(why));
	e = NULL;
	if (t >= 0)
		t_eab_bad = t;
	if (t < 0) {
		e = why;
		note_tail(rl.log, 2000);
	} else if (file_count(rl.log, NO_CERT " derp.test") < 1)
		e = "no \"acme: no certificate for derp.test\" line";
	else if (file_count(rl.log, SERVING_NEW) != 0)
		e = "a certificate went into service with a wrong EAB key";
	else if (!alive(P_RELAY))
		e = "the relay exited";
	else if ((st = get_204(rl.http_port)) != 204) {
		snprintf(why, sizeof(why), "GET /generate_204 on the -http-port"
		    " after the failure: status %d", st);
		e = why;
	}
	if (file_line(rl.log, NO_CERT, line, sizeof(line)))
		note("eab_wrong_key: %s", line);
	note_lines(rl.log, CA_ERROR, "eab_wrong_key: ");
	verdict("eab_wrong_key", e);
	relay_stop(&rl);
}

/*
 * One fail_* case: a copy of derp.test's valid certificate directory, the
 * renewal due at once (DERP_ACME_RENEW_BEFORE > the lifetime), an order that
 * must fail.  want_ca_error: the log must name the CA's error.  *ms: the time
 * to "attempt failed".
 */
static void
fail_case(const char *name, const char *certdir_name, const char *directory,
    int relay_http_port, int want_ca_error, int64_t *ms)
{
	char why[2048], src[700], dst[700], line[512];
	uint8_t leaf[32], after[32];
	int64_t t;
	int st;
	const char *e = NULL;
	struct dclient *c = NULL;

	relay_init(&rl, name, "derp.test", certdir_name, directory);
	rl.http_port = relay_http_port;
	snprintf(rl.renew_before, sizeof(rl.renew_before), "%s", RENEW_DUE_NOW);
	if (mkdir(rl.certdir, 0700) != 0 && errno != EEXIST) {
		fail(name, "mkdir %s: %s", rl.certdir, strerror(errno));
		return;
	}
	snprintf(src, sizeof(src), "%s/certs-dns/derp.test", scratch);
	snprintf(dst, sizeof(dst), "%s/derp.test", rl.certdir);
	if (copy_file(src, dst) < 0) {
		fail(name, "copy %s: failed", src);
		return;
	}
	snprintf(src, sizeof(src), "%s/certs-dns/acme_account+key", scratch);
	snprintf(dst, sizeof(dst), "%s/acme_account+key", rl.certdir);
	if (copy_file(src, dst) < 0) {
		fail(name, "copy %s: failed", src);
		return;
	}
	snprintf(dst, sizeof(dst), "%s/derp.test", rl.certdir);
	if (stored_leaf(dst, NULL, "derp.test", leaf, NULL, why,
	    sizeof(why)) < 0) {
		fail(name, "%s", why);
		return;
	}
	if (relay_start(&rl, why, sizeof(why)) < 0) {
		fail(name, "%s", why);
		return;
	}
	t = relay_wait_log(&rl, ATTEMPT_FAILED, 1, NULL, FAIL_MS, why,
	    sizeof(why));
	if (t >= 0)
		*ms = t;
	if (t < 0) {
		e = why;
		note_tail(rl.log, 2000);
	} else if (file_count(rl.log, SERVING_STORED) < 1)
		e = "no \"cert: serving the stored\" line at start";
	else if (file_count(rl.log, "acme: ordering a certificate for "
	    "derp.test") < 1)
		e = "the due certificate was not renewed (no order logged)";
	else if (file_count(rl.log, NO_CERT " derp.test") < 1)
		e = "no \"acme: no certificate for derp.test\" line";
	else if (want_ca_error && file_count(rl.log, CA_ERROR) < 1)
		e = "no \"acme: CA error\" line naming the CA's error";
	else if (file_count(rl.log, SERVING_NEW) != 0)
		e = "a new certificate went into service";
	else if (stored_leaf(dst, NULL, "derp.test", after, NULL, why,
	    sizeof(why)) < 0)
		e = why;
	else if (memcmp(after, leaf, 32) != 0)
		e = "the stored certificate changed after a failed order";
	else if ((c = tls_client(rl.port, "derp.test")) == NULL)
		e = "TLS connect after the failure failed";
	else if (memcmp(c->x509.leaf_sha256, leaf, 32) != 0)
		e = "the leaf served after the failure is not the old one";
	else if ((e = pair_check(rl.port, "derp.test", NULL, NULL)) != NULL)
		;
	else if ((st = get_204(rl.http_port)) != 204) {
		snprintf(why, sizeof(why), "GET /generate_204: status %d", st);
		e = why;
	} else if (!alive(P_RELAY))
		e = "the relay exited";
	dc_free(c);
	if (file_line(rl.log, NO_CERT, line, sizeof(line)))
		note("%s: %s", name, line);
	note_lines(rl.log, CA_ERROR, "");
	verdict(name, e);
	relay_stop(&rl);
}

static void
step_failures(void)
{
	int closed = free_port(0), other_http = free_port(0);
	char url[128];

	if (!dns_ok)
		return;
	if (closed < 0 || other_http < 0) {
		fail_unreported("no free ports");
		return;
	}
	/* (a) The CA is down: nothing listens at the directory's port. */
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/dir", closed);
	fail_case("fail_ca_down", "certs-fail-ca-down", url, other_http, 0,
	    &t_ca_down);
	/* (b) The HTTP-01 challenge is unreachable: pebble validates at its
	 * httpPort, where no relay listens now (this one has another
	 * -http-port), so the authorization becomes invalid. */
	fail_case("fail_challenge", "certs-fail-challenge", dir_url, other_http,
	    1, &t_challenge);
	/* (c) No account: the EAB pebble, and no binding configured.  The
	 * directory's meta says externalAccountRequired, so a client may stop
	 * there without asking the CA (no "CA error" line required). */
	if (procs[P_PEBBLE_EAB] > 0)
		fail_case("fail_no_eab", "certs-fail-no-eab", eab_dir_url,
		    other_http, 0, &t_no_eab);
}

/* ---- main --------------------------------------------------------------- */

static void
timing(const char *what, int64_t ms)
{
	if (ms >= 0)
		printf(" %s %lld ms,", what, (long long)ms);
}

int
main(int argc, char **argv)
{
	struct sigaction sa;
	char why[2048];
	size_t i;

	if (argc != 3) {
		fprintf(stderr, "usage: test_pebble DERP_BINARY SCRATCH_DIR\n");
		return 2;
	}
	derp_path = argv[1];
	setvbuf(stdout, NULL, _IOLBF, 0);
	t_run0 = dc_now_ms();

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fatal_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	alarm(WATCHDOG_S);

	have_openssl = on_path("openssl");
	if (access("/usr/bin/pebble", X_OK) != 0 ||
	    access("/usr/bin/pebble-challtestsrv", X_OK) != 0) {
		for (i = 0; i < N_CHECKS; i++)
			skip(checks[i].name, "no /usr/bin/pebble or "
			    "/usr/bin/pebble-challtestsrv (Debian package pebble)");
		goto summary;
	}
	if (access(derp_path, X_OK) != 0) {
		snprintf(why, sizeof(why), "relay %s: %s", derp_path,
		    strerror(errno));
		fail("pebble_setup", "%s", why);
		fail_unreported(why);
		goto summary;
	}
	if (mkdir(argv[2], 0700) != 0 && errno != EEXIST) {
		snprintf(why, sizeof(why), "mkdir %s: %s", argv[2],
		    strerror(errno));
		fail("pebble_setup", "%s", why);
		fail_unreported(why);
		goto summary;
	}
	/* Absolute, so "cert: serving /" tells a new certificate from the
	 * stored one, and pebble finds its files whatever its directory. */
	if (strlen(argv[2]) > 90) {
		snprintf(why, sizeof(why), "SCRATCH_DIR longer than 90 bytes");
		fail("pebble_setup", "%s", why);
		fail_unreported(why);
		goto summary;
	}
	if (argv[2][0] == '/')
		snprintf(scratch, sizeof(scratch), "%s", argv[2]);
	else if (getcwd(scratch, sizeof(scratch) - 100) != NULL) {
		size_t n = strlen(scratch);
		snprintf(scratch + n, sizeof(scratch) - n, "/%s", argv[2]);
	} else {
		snprintf(why, sizeof(why), "getcwd: %s", strerror(errno));
		fail("pebble_setup", "%s", why);
		fail_unreported(why);
		goto summary;
	}
	/* Left from an earlier run: start clean (all inside SCRATCH_DIR). */
	{
		static const char *const dirs[] = { "certs-dns", "certs-ip", "certs-mixed",
		    "certs-eab", "certs-eab-bad", "certs-fail-ca-down",
		    "certs-fail-challenge", "certs-fail-no-eab" };
		static const char *const files[] = { "derp.test",
		    "acme_account+key", "127.0.0.1.crt", "127.0.0.1.key",
		    "acme-account.key" };
		char p[1400];
		size_t d, f;

		for (d = 0; d < sizeof(dirs) / sizeof(dirs[0]); d++) {
			for (f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
				snprintf(p, sizeof(p), "%s/%s/%s", scratch,
				    dirs[d], files[f]);
				unlink(p);
			}
		}
	}
	snprintf(relay_key_file, sizeof(relay_key_file), "%s/derp.key",
	    scratch);
	if (!have_openssl)
		note("no openssl command: the *_verified checks are skipped");

	if (setup(why, sizeof(why)) < 0) {
		fail("pebble_setup", "%s", why);
		fail_unreported("pebble_setup failed");
		goto done;
	}
	ok("pebble_setup");
	note("pebble up in %lld ms: ACME %s, EAB %s, HTTP-01 port %d, DNS "
	    "127.0.0.1:%d", (long long)t_pebble, dir_url, eab_dir_url, http_port,
	    dns_port);

	step_dns();
	step_renew();
	step_restart();
	step_ip();
	step_mixed();
	step_user();
	step_eab();
	step_failures();
	verdict("relays_exit_clean", exit_problems[0] ? exit_problems : NULL);
	note("pebble: %d orders, %d certificates issued; EAB pebble: %d, %d",
	    file_count(pebble_log, "Added order"),
	    file_count(pebble_log, "Issued certificate"),
	    file_count(pebble_eab_log, "Added order"),
	    file_count(pebble_eab_log, "Issued certificate"));
	fail_unreported("an earlier step it depends on failed (see above)");
done:
	stop(P_RELAY, STOP_MS, NULL);
	stop(P_OPENSSL, 0, NULL);
	stop(P_PEBBLE_EAB, STOP_MS, NULL);
	stop(P_PEBBLE, STOP_MS, NULL);
	stop(P_DNS, STOP_MS, NULL);
	printf("# timings:");
	timing("pebble start", t_pebble);
	timing("dns issuance", t_dns);
	timing("renewal (order to service)", t_renew);
	timing("restart to first DERP handshake", t_restart_tls);
	timing("ip issuance", t_ip);
	timing("mixed: no-SNI refusal to ip certificate", t_mixed);
	timing("eab issuance", t_eab);
	timing("eab wrong key to failure", t_eab_bad);
	timing("ca down to failure", t_ca_down);
	timing("unreachable challenge to failure", t_challenge);
	timing("no eab to failure", t_no_eab);
	printf(" total %lld ms\n", (long long)(dc_now_ms() - t_run0));
summary:
	alarm(0);
	printf("%d passed, %d failed, %d skipped\n", n_pass, n_fail, n_skip);
	return n_fail == 0 ? 0 : 1;
}
