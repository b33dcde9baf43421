/*
 * soak.c -- `make soak`: the relay's correctness under load (issue 5), on
 * loopback only, bounded in time.  Checks are on correctness, never on speed
 * (the relay and this generator share two cores); the one ratio asserted is
 * the 80% the issue asks for.  Figures are printed along the way.
 *
 * Usage: soak [--short | --tiny] [--only SCENARIO] [DERP_BINARY]
 *        (default ./derp; --short: seconds, as make test runs it; --tiny:
 *        smaller still, for the relay built with sanitizers)
 *
 *   idle       10,000 concurrent idle TLS clients (500 with --short), opened by
 *              four children (each keeps its clients' TLS state), then every
 *              client sends a Ping and must get its Pong.
 *   cycles     100,000 connect / TLS handshake / ClientInfo / ServerInfo /
 *              close cycles (2,000), one in ten closed early at a handshake
 *              state instead (each state in turn).  The relay's descriptors
 *              (/proc/PID/fd) after the run equal those after a warm-up of
 *              5,000 cycles (500); its VmRSS is within RSS_SLACK_BYTES of
 *              the warm-up figure.
 *   nonreader  K pairs (windowed, lossless) measured alone, then while a
 *              flooder (paced at a pair's mean rate) sends to a client that
 *              never reads, then alone again.  The pairs keep at least 80% of
 *              the mean of the two undisturbed rates; the non-reader is cut
 *              off (derper: -tcp-write-timeout 2 s; here: no output progress
 *              for 2 s, checked every 250 ms), between WRITE_TIMEOUT_MS and
 *              CUTOFF_MAX_MS after the flood began, and sees a close; the
 *              flooder stays connected.
 *   hsflood    K pairs measured alone, then while two children run
 *              handshake cycles (100 in flight, a quarter of them abandoned
 *              mid-handshake): the pairs keep flowing, lossless, every pair
 *              delivers.  Handshakes the relay closes (its cap on unfinished
 *              handshakes) are an expected outcome, counted, not failures.
 *   garbage    garbage, truncated and oversized input at every stage (before
 *              and inside the TLS handshake, HTTP request line and headers,
 *              the /derp upgrade, ClientInfo, DERP frames after registration,
 *              STUN), 20 rounds (2) with fresh random bytes: each bad
 *              connection sees a clean close (EOF or reset) or an HTTP 4xx,
 *              a bad STUN datagram no answer; after every case a sentinel
 *              pair still exchanges packets and STUN answers a good request.
 *
 * Each scenario has its own relay, started as bench does (TLS with a
 * self-signed IP certificate), so a failure stays in its scenario.  The
 * engine (connections, pairs, phases, idle children) is test/loadgen.c.
 * The output ends with "N passed, N failed, N skipped"; exit status 0 or
 * 1.  The 80% ratio is skipped (reported, not judged) when other processes
 * took more than OTHER_LOAD_MAX of a core during its phases, and with
 * --tiny (a relay built with sanitizers), as is the RSS figure.
 *
 * Sections: settings; relay figures; idle; cycles; nonreader; hsflood;
 * garbage; main.
 */
#include "loadgen.h"
#include "../stun.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- settings ------------------------------------------------------------ */

struct settings {
	int idle;			/* idle clients */
	int warm_cycles;		/* before the figures cycles compares */
	int cycles;			/* handshake cycles after the warm-up */
	int cycle_chunks;		/* printed steps of the cycle run */
	int phase_ms;			/* each measured traffic phase */
	int rounds;			/* of the garbage table */
	int sanitized;			/* the relay is built with sanitizers: its
					 * RSS (a quarantine holds freed memory)
					 * and the 80% ratio are reported, not
					 * judged */
};
static const struct settings full = { 10000, 5000, 100000, 10, 5000, 20, 0 };
static const struct settings brief = { 500, 500, 2000, 2, 2500, 2, 0 };
/* For a relay built with sanitizers (several times slower handshakes). */
static const struct settings tiny = { 200, 40, 400, 1, 2500, 1, 1 };
static const struct settings *S = &full;

#define K_PAIRS 8		/* the flooder's fair share of the relay: 1/9 */
#define PAIR_PKT_BYTES 1200
#define PAIR_WINDOW 16		/* 8 x 16 packets: far below the relay's pool */
#define WARM_MS 500
#define HS_AT_ONCE 25		/* per child: 4 x 25 = 100, under the relay's
				 * default cap of 256 unfinished handshakes */
#define CYCLE_ABORT_EVERY 10
#define FLOOD_CHILDREN 2
#define FLOOD_AT_ONCE 50	/* per child: 100 handshakes in flight */
#define FLOOD_ABORT_EVERY 4
/* The flooder sends as fast as one pair's sender did undisturbed (paced at
 * the mean per-pair rate, bursts of a window): far more than the non-reader
 * takes (nothing), so its queue and socket buffers fill within a second, but
 * no more than a pair costs this generator.  Unpaced, it would take a share
 * of the two shared cores from the generator's own encryption, and the ratio
 * would measure that split rather than the relay. */
#define FLOOD_BURST PAIR_WINDOW
/* RSS after the cycles may exceed the warm-up figure by this much.  The
 * relay's slots are reserved at start and touched on first use, lowest free
 * first, so its RSS follows the peak of concurrent connections (about 100
 * handshaking plus those whose close it has not seen yet), and a peak a few
 * connections above the warm-up's touches a few more slots of 38 KB (README:
 * 1.3 + 4 + 16.7 + 16.5 KB): measured +16 KB to +300 KB over 100,000 cycles.
 * A leak of 11 bytes per cycle would exceed it. */
#define RSS_SLACK_BYTES (1024 * 1024)
/* derper's write timeout and our relay's sweep; the cut-off must come after
 * WRITE_TIMEOUT_MS and within CUTOFF_MAX_MS of the flood's start (sweep 250
 * ms, filling the socket buffers, scheduling on two busy cores). */
#define WRITE_TIMEOUT_MS 2000
#define CUTOFF_MAX_MS 4500
#define CLOSE_MS 3000		/* a bad connection must be closed by then */
#define IO_MS 3000
#define FDS_SETTLE_MS 10000		/* descriptors back to their figure */
#define WATCHDOG_S 1500		/* whole run, hard */
#define WATCHDOG_SHORT_S 120

/* Other processes' CPU above which throughput ratios are not judged. */
#define OTHER_LOAD_MAX 0.25

static int nskip;

/* A check that could not be judged here: "skip NAME: why". */
static void
skip(const char *name, const char *fmt, ...)
{
	va_list ap;

	nskip++;
	printf("skip %s: ", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static double
secs_since(int64_t t)
{
	return (double)(now_ns() - t) / 1e9;
}

/* ---- relay figures ------------------------------------------------------- */

/* Open descriptors of the relay (/proc/PID/fd), or -1. */
static long
relay_fds(void)
{
	char path[64];
	DIR *d;
	struct dirent *e;
	long n = 0;

	snprintf(path, sizeof(path), "/proc/%ld/fd", (long)srv.pid);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Wait until the relay's descriptor count is `want` (bounded); the count. */
static long
relay_fds_settle(long want, int timeout_ms)
{
	int64_t deadline = now_ns() + (int64_t)timeout_ms * 1000000;
	long n;

	while ((n = relay_fds()) != want && now_ns() < deadline)
		sleep_ms(20);
	return n;
}

/* Wait until the count stops changing for 200 ms (bounded); the count. */
static long
relay_fds_stable(int timeout_ms)
{
	int64_t deadline = now_ns() + (int64_t)timeout_ms * 1000000;
	long n = relay_fds(), m;
	int same = 0;

	while (same < 10 && now_ns() < deadline) {
		sleep_ms(20);
		m = relay_fds();
		same = m == n ? same + 1 : 0;
		n = m;
	}
	return n;
}

static int
start_relay(const char *scenario, int max_clients)
{
	char name[80];

	phase_name = scenario;
	B.tls = 1;
	snprintf(name, sizeof(name), "%s: relay starts", scenario);
	check(server_start(1, max_clients) == 0, name, srv.log);
	if (srv.pid <= 0)
		return -1;
	printf("relay pid %ld on 127.0.0.1:%d (TLS), log %s\n", (long)srv.pid,
	    srv.port, srv.log);
	/* The readiness probe's connection may still be open in the relay
	 * until it reads the close: descriptor baselines start after it. */
	(void)relay_fds_stable(FDS_SETTLE_MS);
	return 0;
}

static void
stop_relay(const char *scenario)
{
	char name[80];

	long before;

	snprintf(name, sizeof(name), "%s: relay alive at the end", scenario);
	check(server_alive(), name, srv.log);
	/* server_stop reports an exit status other than 0 as an anomaly (with
	 * sanitizers: a leak or an error found at exit). */
	before = anomalies_total;
	server_stop();
	snprintf(name, sizeof(name), "%s: relay exits with status 0 on SIGTERM",
	    scenario);
	check(anomalies_total == before, name, srv.log);
}

static int
spawn_children(struct idle_child *ch, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (idle_spawn(ch, i) < 0) {
			perror("soak: fork");
			return -1;
		}
	return 0;
}

/* The same command to n children, and their summed replies.  0 or -1. */
static int
children_do(struct idle_child *ch, int n, const struct idle_cmd *ic,
    int timeout_ms, struct idle_reply *sum)
{
	if (idle_send(ch, n, ic) < 0 || idle_collect(ch, n, ic, timeout_ms,
	    sum) < 0) {
		anomaly("a child did not answer within %d ms", timeout_ms);
		return -1;
	}
	return 0;
}

/* ---- idle ---------------------------------------------------------------- */

static void
scenario_idle(void)
{
	struct idle_child ch[IDLE_CHILDREN];
	struct idle_cmd ic;
	struct idle_reply rp;
	char why[200];
	int64_t t = now_ns(), t1;
	long fds0, fds1, rss0, rss1;
	int64_t cpu0;
	uint32_t each = (uint32_t)(S->idle / IDLE_CHILDREN);
	int ok;

	printf("\n== idle: %d idle TLS clients, then a Ping from each ==\n",
	    S->idle);
	if (start_relay("idle", IDLE_MAX_CLIENTS) < 0 ||
	    spawn_children(ch, IDLE_CHILDREN) < 0)
		return;
	fds0 = relay_fds();
	rss0 = proc_rss_bytes(srv.pid);
	cpu0 = proc_cpu_ns(srv.pid);
	memset(&ic, 0, sizeof(ic));
	ic.op = IDLE_KEEP;
	ic.n = each;
	ic.inflight = HS_AT_ONCE;
	ic.ms = 600000;
	t1 = now_ns();
	ok = children_do(ch, IDLE_CHILDREN, &ic, 660000, &rp) == 0;
	fds1 = relay_fds();
	rss1 = proc_rss_bytes(srv.pid);
	printf("%lu clients connected (%lu failed) in %.1f s = %.0f handshakes/s,"
	    " relay CPU %.2f ms each; relay descriptors %ld -> %ld, RSS %.1f ->"
	    " %.1f MB\n", (unsigned long)rp.ok, (unsigned long)rp.failed,
	    secs_since(t1), rp.ok / secs_since(t1),
	    rp.ok ? (double)(proc_cpu_ns(srv.pid) - cpu0) / 1e6 / rp.ok : 0,
	    fds0, fds1, rss0 / 1e6, rss1 / 1e6);
	snprintf(why, sizeof(why), "%lu of %lu connected, %lu failed (first TLS"
	    " error %lu)", (unsigned long)rp.ok, (unsigned long)each *
	    IDLE_CHILDREN, (unsigned long)rp.failed,
	    (unsigned long)rp.first_tls_err);
	check(ok && rp.ok == each * IDLE_CHILDREN && rp.failed == 0,
	    "idle: all clients connected", why);
	snprintf(why, sizeof(why), "relay has %ld descriptors for %lu clients"
	    " (%ld before)", fds1, (unsigned long)rp.ok, fds0);
	check(fds1 - fds0 == (long)rp.ok, "idle: one relay descriptor per client",
	    why);
	memset(&ic, 0, sizeof(ic));
	ic.op = IDLE_PING;
	ic.ms = 60000;
	t1 = now_ns();
	ok = children_do(ch, IDLE_CHILDREN, &ic, 90000, &rp) == 0;
	printf("Ping from all %lu clients: %lu Pongs right in %.2f s\n",
	    (unsigned long)(rp.ok + rp.failed), (unsigned long)rp.ok,
	    secs_since(t1));
	snprintf(why, sizeof(why), "%lu Pongs, %lu clients without one",
	    (unsigned long)rp.ok, (unsigned long)rp.failed);
	check(ok && rp.ok == each * IDLE_CHILDREN && rp.failed == 0,
	    "idle: every client answered (Ping -> Pong)", why);
	idle_stop(ch, IDLE_CHILDREN);
	snprintf(why, sizeof(why), "%ld descriptors, %ld before the clients",
	    relay_fds_settle(fds0, FDS_SETTLE_MS), fds0);
	check(relay_fds() == fds0, "idle: relay descriptors back after the"
	    " clients left", why);
	stop_relay("idle");
	printf("idle: %.1f s\n", secs_since(t));
}

/* ---- cycles -------------------------------------------------------------- */

/* n cycles spread over the children; figures printed.  0 or -1. */
static int
cycles_run(struct idle_child *ch, long n, const char *what,
    struct idle_reply *total)
{
	struct idle_cmd ic;
	struct idle_reply rp;
	int64_t t = now_ns(), cpu0 = proc_cpu_ns(srv.pid);
	double s;

	memset(&ic, 0, sizeof(ic));
	ic.op = IDLE_CYCLE;
	ic.n = (uint32_t)(n / IDLE_CHILDREN);
	ic.inflight = HS_AT_ONCE;
	ic.ms = 600000;
	ic.abort_every = CYCLE_ABORT_EVERY;
	if (children_do(ch, IDLE_CHILDREN, &ic, 660000, &rp) < 0)
		return -1;
	s = secs_since(t);
	printf("  %-9s %6lu full + %5lu closed early, %lu failed, in %5.1f s ="
	    " %4.0f/s, relay CPU %.2f ms each | relay descriptors %ld, RSS"
	    " %.2f MB\n", what, (unsigned long)rp.ok, (unsigned long)rp.aborted,
	    (unsigned long)rp.failed, s, (rp.ok + rp.aborted) / s,
	    (double)(proc_cpu_ns(srv.pid) - cpu0) / 1e6 / (double)
	    (rp.ok + rp.aborted > 0 ? rp.ok + rp.aborted : 1), relay_fds(),
	    proc_rss_bytes(srv.pid) / 1e6);
	total->ok += rp.ok;
	total->aborted += rp.aborted;
	total->failed += rp.failed;
	if (total->first_tls_err == 0)
		total->first_tls_err = rp.first_tls_err;
	return 0;
}

static void
scenario_cycles(void)
{
	struct idle_child ch[IDLE_CHILDREN];
	struct idle_reply warm, all;
	char why[240];
	int64_t t = now_ns();
	long fds_start, fds_warm, fds_end, rss_warm, rss_end;
	long per = S->cycles / S->cycle_chunks;
	int i, ok = 1;

	printf("\n== cycles: %d connect / TLS / ClientInfo / ServerInfo / close"
	    " cycles, 1 in %d closed early at a handshake state ==\n", S->cycles,
	    CYCLE_ABORT_EVERY);
	if (start_relay("cycles", 0) < 0 ||
	    spawn_children(ch, IDLE_CHILDREN) < 0)
		return;
	fds_start = relay_fds();
	memset(&warm, 0, sizeof(warm));
	memset(&all, 0, sizeof(all));
	ok = cycles_run(ch, S->warm_cycles, "warm-up", &warm) == 0;
	fds_warm = relay_fds_stable(FDS_SETTLE_MS);
	rss_warm = proc_rss_bytes(srv.pid);
	printf("  after the warm-up: %ld descriptors (%ld at start), RSS %.2f MB\n",
	    fds_warm, fds_start, rss_warm / 1e6);
	for (i = 0; ok && i < S->cycle_chunks; i++) {
		char what[32];
		snprintf(what, sizeof(what), "%ld", per * (i + 1));
		ok = cycles_run(ch, per, what, &all) == 0 && server_alive();
	}
	fds_end = relay_fds_settle(fds_warm, FDS_SETTLE_MS);
	rss_end = proc_rss_bytes(srv.pid);
	printf("  at the end: %ld descriptors, RSS %.2f MB (%+ld bytes over the"
	    " warm-up; allowed %d)\n", fds_end, rss_end / 1e6, rss_end - rss_warm,
	    RSS_SLACK_BYTES);
	snprintf(why, sizeof(why), "%lu full + %lu early of %ld, %lu failed"
	    " (first TLS error %lu); warm-up %lu failed",
	    (unsigned long)all.ok, (unsigned long)all.aborted,
	    per * S->cycle_chunks, (unsigned long)all.failed,
	    (unsigned long)all.first_tls_err, (unsigned long)warm.failed);
	check(ok && all.failed == 0 && warm.failed == 0 && (long)(all.ok +
	    all.aborted) == per * S->cycle_chunks, "cycles: every cycle"
	    " completed", why);
	snprintf(why, sizeof(why), "%ld after the warm-up, %ld at the end",
	    fds_warm, fds_end);
	check(fds_end == fds_warm && fds_warm == fds_start,
	    "cycles: relay descriptors back to their start value", why);
	snprintf(why, sizeof(why), "RSS %ld after the warm-up, %ld at the end",
	    rss_warm, rss_end);
	if (S->sanitized)
		skip("cycles: relay RSS back to its warm-up value", "%s (not"
		    " judged: a sanitizer's quarantine holds freed memory)", why);
	else
		check(rss_warm > 0 && rss_end > 0 && rss_end - rss_warm <=
		    RSS_SLACK_BYTES, "cycles: relay RSS back to its warm-up"
		    " value", why);
	idle_stop(ch, IDLE_CHILDREN);
	stop_relay("cycles");
	printf("cycles: %.1f s\n", secs_since(t));
}

/* ---- traffic phases (nonreader, hsflood) --------------------------------- */

/* One windowed phase on the K pairs; 0 or -1 (relay died). */
static int
pairs_phase(const char *what, struct result *r)
{
	struct spec sp;

	memset(&sp, 0, sizeof(sp));
	sp.mode = M_WINDOW;
	sp.size = PAIR_PKT_BYTES;
	sp.window = PAIR_WINDOW;
	sp.warm_ms = WARM_MS;
	sp.measure_ms = S->phase_ms;
	if (run_phase(&sp, r) < 0)
		return -1;
	printf("  %-22s %8.0f pkt/s, relay %3.0f%% CPU, soak %3.0f%%, other"
	    " %3.0f%% | per pair %.2f-%.2f of the mean | longest gap %.0f ms |"
	    " errors %d\n", what, r->pps, r->srv_util * 100, r->bench_util * 100,
	    r->other_util * 100, r->share_min, r->share_max, r->stall_ms,
	    r->errors);
	return 0;
}

/* The pairs' integrity over a phase: nothing lost, corrupt, misrouted,
 * reordered, no disconnect, and every pair delivered. */
static void
check_pairs(const char *name, const struct result *r)
{
	char why[240];

	snprintf(why, sizeof(why), "lost %llu corrupt %llu misrouted %llu"
	    " reordered %llu disconnects %llu; slowest pair %.2f of the mean",
	    (unsigned long long)r->err.lost, (unsigned long long)r->err.corrupt,
	    (unsigned long long)r->err.misrouted,
	    (unsigned long long)r->err.reordered,
	    (unsigned long long)r->err.disconnects, r->share_min);
	check(r->ran && r->errors == 0 && r->err.lost == 0 && r->share_min > 0,
	    name, why);
}

/* ---- nonreader ----------------------------------------------------------- */

static struct {
	struct pair fp;			/* a: the flooder F, b: the non-reader N */
	uint8_t n_pk[KEY_BYTES];
	int n_fd;			/* N's socket, never read until the end */
	long fds;			/* relay descriptors with N connected */
	int64_t t_start, t_cut, t_fd_check, t_tokens;
	double rate, tokens;		/* packets/s, and what may go now */
	uint64_t frames;
} fl;

/* B.tick during the disturbed phase: keep F's output full of packets for N,
 * and watch for the relay's descriptor count to drop (N cut off). */
static void
flood_tick(void)
{
	int64_t now = now_ns();
	int k;

	if (!B.generate || fl.fp.a.dead)
		return;
	if (fl.t_start == 0)
		fl.t_start = fl.t_tokens = now;
	fl.tokens += fl.rate * (double)(now - fl.t_tokens) / 1e9;
	fl.t_tokens = now;
	if (fl.tokens > FLOOD_BURST)
		fl.tokens = FLOOD_BURST;
	for (k = 0; k < FLOOD_BURST && fl.tokens >= 1.0; k++) {
		if (conn_frame(&fl.fp.a, FT_SEND_PACKET, fl.n_pk, pattern,
		    PAIR_PKT_BYTES, NULL, 0) < 0)
			break;
		fl.tokens -= 1.0;
		fl.frames++;
	}
	if (fl.t_cut == 0 && now - fl.t_fd_check > 20000000) {
		fl.t_fd_check = now;
		if (relay_fds() < fl.fds)
			fl.t_cut = now;
	}
}

/* Open F and N (N's TLS state dropped: it will never read).  0 or -1. */
static int
flood_pair_open(void)
{
	int64_t deadline = now_ns() + (int64_t)IO_MS * 1000000;

	memset(&fl, 0, sizeof(fl));
	fl.n_fd = -1;
	fl.fp.idx = K_PAIRS;
	if (conn_begin(&fl.fp.a, &fl.fp, 'F') < 0 ||
	    conn_begin(&fl.fp.b, &fl.fp, 'N') < 0)
		return -1;
	while ((fl.fp.a.hs != HS_DONE || fl.fp.b.hs != HS_DONE) &&
	    !fl.fp.dead && now_ns() < deadline)
		loop_once(10);
	if (fl.fp.a.hs != HS_DONE || fl.fp.b.hs != HS_DONE || fl.fp.dead)
		return -1;
	memcpy(fl.n_pk, fl.fp.b.dc->pk, KEY_BYTES);
	fl.n_fd = conn_detach(&fl.fp.b);
	return 0;
}

/* Read N's socket (raw bytes, TLS undecoded) until EOF or reset: 1 if it
 * ends within timeout_ms, 0 if it stays open. */
static int
raw_drained_to_close(int fd, int timeout_ms)
{
	static uint8_t buf[65536];
	int64_t deadline = now_ns() + (int64_t)timeout_ms * 1000000;

	while (now_ns() < deadline) {
		struct pollfd pf;
		ssize_t r;

		pf.fd = fd;
		pf.events = POLLIN;
		if (poll(&pf, 1, 50) <= 0)
			continue;
		r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
			return 1;
	}
	return 0;
}

/* Ping on c; 1 if its Pong comes within timeout_ms. */
static int
ping_answered(struct conn *c, int timeout_ms)
{
	int64_t deadline = now_ns() + (int64_t)timeout_ms * 1000000;

	c->ping_state = 0;
	if (c->dead || conn_ping(c, 0x50494e47u) < 0)
		return 0;
	while (c->ping_state != 2 && !c->dead && now_ns() < deadline)
		loop_once(10);
	return c->ping_state == 2;
}

static void
scenario_nonreader(void)
{
	struct result u1, d, u2;
	char why[240];
	int64_t t = now_ns();
	double base, ratio, cut_s, other;
	int closed;

	printf("\n== nonreader: %d pairs alone, then with a flooder sending to a"
	    " client that never reads, then alone (%d ms phases) ==\n", K_PAIRS,
	    S->phase_ms);
	if (start_relay("nonreader", 0) < 0)
		return;
	if (ensure_pairs(K_PAIRS) < 0 || flood_pair_open() < 0) {
		check(0, "nonreader: connect", "pairs or flooder could not connect");
		close_all_pairs();
		stop_relay("nonreader");
		return;
	}
	fl.fds = relay_fds();
	memset(&u1, 0, sizeof(u1));
	memset(&d, 0, sizeof(d));
	memset(&u2, 0, sizeof(u2));
	if (pairs_phase("undisturbed", &u1) < 0)
		goto out;
	fl.rate = u1.pps / K_PAIRS;
	B.tick = flood_tick;
	if (pairs_phase("flooder -> non-reader", &d) < 0)
		goto out;
	B.tick = NULL;
	if (pairs_phase("undisturbed again", &u2) < 0)
		goto out;
	base = (u1.pps + u2.pps) / 2;
	ratio = base > 0 ? d.pps / base : 0;
	cut_s = fl.t_cut > 0 ? (double)(fl.t_cut - fl.t_start) / 1e9 : -1;
	printf("  flooder: %llu packets of %d bytes at %.0f/s (a pair's rate);"
	    " non-reader cut off %.2f s after the flood began; pairs' throughput"
	    " with the flood %.3f of undisturbed (%.0f / %.0f pkt/s)\n",
	    (unsigned long long)fl.frames, PAIR_PKT_BYTES, fl.rate, cut_s, ratio,
	    d.pps, base);
	check_pairs("nonreader: pairs intact while flooded", &d);
	check_pairs("nonreader: pairs intact after the flood", &u2);
	snprintf(why, sizeof(why), "%.3f (%.0f pkt/s flooded, %.0f and %.0f"
	    " undisturbed)", ratio, d.pps, u1.pps, u2.pps);
	other = u1.other_util > d.other_util ? u1.other_util : d.other_util;
	if (u2.other_util > other)
		other = u2.other_util;
	/* Other processes on the two cores change what the relay and this
	 * generator get between the phases: a ratio taken then says nothing
	 * about the relay, so it is reported and not judged. */
	if (other > OTHER_LOAD_MAX)
		skip("nonreader: pairs keep at least 80% of their throughput",
		    "other processes took up to %.0f%% of a core: %s", other *
		    100, why);
	else if (S->sanitized)
		/* Instrumented, the relay is the bottleneck (100% CPU), and
		 * its 2.5 s phases varied by up to 30% (measured): the ratio
		 * is judged on the shipped build (--short, make soak). */
		skip("nonreader: pairs keep at least 80% of their throughput",
		    "%s (not judged: relay built with sanitizers)", why);
	else
		check(ratio >= 0.8, "nonreader: pairs keep at least 80% of their"
		    " throughput", why);
	snprintf(why, sizeof(why), "cut off %.2f s after the flood began"
	    " (allowed %.1f-%.1f s)", cut_s, WRITE_TIMEOUT_MS / 1e3,
	    CUTOFF_MAX_MS / 1e3);
	check(cut_s >= WRITE_TIMEOUT_MS / 1e3 && cut_s <= CUTOFF_MAX_MS / 1e3,
	    "nonreader: non-reader cut off after the write timeout", why);
	closed = raw_drained_to_close(fl.n_fd, CLOSE_MS);
	check(closed, "nonreader: non-reader sees its connection closed",
	    "still open after its queued bytes were read");
	check(!fl.fp.a.dead && ping_answered(&fl.fp.a, IO_MS),
	    "nonreader: flooder still connected (Ping -> Pong)", NULL);
out:
	B.tick = NULL;
	if (fl.n_fd >= 0)
		close(fl.n_fd);
	pair_close(&fl.fp);
	close_all_pairs();
	stop_relay("nonreader");
	printf("nonreader: %.1f s\n", secs_since(t));
}

/* ---- hsflood ------------------------------------------------------------- */

static void
scenario_hsflood(void)
{
	struct idle_child ch[FLOOD_CHILDREN];
	struct idle_cmd ic;
	struct idle_reply rp;
	struct result u, d;
	char why[240];
	int64_t t = now_ns(), t1;
	int ok;

	printf("\n== hsflood: %d pairs alone, then during a TLS handshake flood"
	    " (%d children x %d in flight, 1 in %d abandoned mid-handshake) ==\n",
	    K_PAIRS, FLOOD_CHILDREN, FLOOD_AT_ONCE, FLOOD_ABORT_EVERY);
	/* Children before the pairs: forked later they would hold the pairs'
	 * sockets. */
	if (start_relay("hsflood", 0) < 0 ||
	    spawn_children(ch, FLOOD_CHILDREN) < 0)
		return;
	memset(&u, 0, sizeof(u));
	memset(&d, 0, sizeof(d));
	if (ensure_pairs(K_PAIRS) < 0) {
		check(0, "hsflood: connect", "pairs could not connect");
		goto out;
	}
	if (pairs_phase("undisturbed", &u) < 0)
		goto out;
	memset(&ic, 0, sizeof(ic));
	ic.op = IDLE_CYCLE;
	ic.n = UINT32_MAX;
	ic.inflight = FLOOD_AT_ONCE;
	ic.ms = (uint32_t)(WARM_MS + S->phase_ms);
	ic.abort_every = FLOOD_ABORT_EVERY;
	t1 = now_ns();
	if (idle_send(ch, FLOOD_CHILDREN, &ic) < 0)
		goto out;
	if (pairs_phase("during the flood", &d) < 0)
		goto out;
	ok = idle_collect(ch, FLOOD_CHILDREN, &ic, 30000, &rp) == 0;
	printf("  flood: %lu handshakes completed, %lu abandoned by us, %lu closed"
	    " by the relay or failed, %lu unfinished at the end, in %.1f s;"
	    " pairs at %.3f of undisturbed\n", (unsigned long)rp.ok,
	    (unsigned long)rp.aborted, (unsigned long)rp.failed,
	    (unsigned long)rp.unfinished, secs_since(t1),
	    u.pps > 0 ? d.pps / u.pps : 0);
	check(ok && rp.ok > 0, "hsflood: the flood ran (handshakes completed)",
	    NULL);
	check_pairs("hsflood: pairs intact and flowing during the flood", &d);
	snprintf(why, sizeof(why), "longest gap between deliveries %.0f ms",
	    d.stall_ms);
	check(d.stall_ms < 1000, "hsflood: no pause of a second in the pairs'"
	    " traffic", why);
out:
	close_all_pairs();
	idle_stop(ch, FLOOD_CHILDREN);
	stop_relay("hsflood");
	printf("hsflood: %.1f s\n", secs_since(t));
}

/* ---- garbage ------------------------------------------------------------- */

/*
 * Each case opens its own connection, brings it to its stage with the real
 * client (client.c), sends what is bad there and returns NULL if the relay
 * ended that connection as it should (a close; or an HTTP 4xx where the
 * stage is HTTP), else why not.  "Truncated" cases send part of a message and
 * then shut our write side: the relay must close on that EOF.
 */
#define GARBAGE_BYTES 600
#define FT_CLIENT_INFO 0x02
#define FT_NOTE_PREFERRED 0x07

static uint8_t junk[300 * 1024];

static struct dclient *
g_open(int tls)
{
	struct dclient *c = dc_new();

	if (c == NULL)
		return NULL;
	dc_genkey(c);
	c->write_timeout_ms = 2000;
	if (dc_connect(c, "127.0.0.1", srv.port, tls, NULL, IO_MS) < 0) {
		dc_free(c);
		return NULL;
	}
	return c;
}

/* At a stage: 0 TCP only, 1 TLS, 2 upgraded (101 and ServerKey read),
 * 3 registered (ServerInfo read). */
static struct dclient *
g_at(int stage)
{
	struct dclient *c = g_open(stage > 0);

	if (c == NULL)
		return NULL;
	if ((stage == 2 && dc_upgrade(c, 0, IO_MS) < 0) ||
	    (stage == 3 && dc_handshake(c, 0, NULL, IO_MS) < 0)) {
		dc_free(c);
		return NULL;
	}
	return c;
}

/* How connection c ended: NULL if closed (EOF, reset, TLS failure) within
 * CLOSE_MS, or answered with an HTTP 4xx where allow_4xx. */
static const char *
g_outcome(struct dclient *c, int allow_4xx)
{
	char head[64];
	int n;

	if (c == NULL)
		return "could not reach the stage";
	if (allow_4xx) {
		n = dc_read(c, head, sizeof(head) - 1, CLOSE_MS);
		if (n == 0 || n == -1)
			return NULL;
		if (n == -2)
			return "neither answered nor closed";
		head[n] = '\0';
		if (strncmp(head, "HTTP/1.1 4", 10) == 0 ||
		    strncmp(head, "HTTP/1.0 4", 10) == 0)
			return NULL;
		return "answered, but not with a 4xx";
	}
	return dc_expect_close(c, CLOSE_MS) ? NULL : "connection left open";
}

/* Send, optionally shut our write side, judge, free. */
static const char *
g_send(struct dclient *c, const void *p, size_t n, int shut, int allow_4xx)
{
	const char *why;

	if (c != NULL) {
		(void)dc_write(c, p, n);
		if (shut)
			(void)shutdown(c->fd, SHUT_WR);
	}
	why = g_outcome(c, allow_4xx);
	dc_free(c);
	return why;
}

static const char *
g_frame(int stage, uint8_t type, uint32_t len, const uint8_t *p, size_t n,
    int shut)
{
	static uint8_t f[300 * 1024 + 5];

	f[0] = type;
	put_be32(f + 1, len);
	memcpy(f + 5, p, n);
	return g_send(g_at(stage), f, n + 5, shut, 0);
}

/* TLS: the ClientHello out, the server's first flight in, and stop with the
 * client's second flight (ClientKeyExchange ...) waiting in the engine. */
static struct dclient *
g_mid_tls(void)
{
	struct dclient *c = dc_new();
	int64_t deadline = now_ns() + (int64_t)IO_MS * 1000000;
	int pending, got = 0;

	if (c == NULL || dc_start(c, "127.0.0.1", srv.port, 1, NULL,
	    &pending) < 0)
		goto fail;
	while (now_ns() < deadline) {
		br_ssl_engine_context *eng = &c->sc.eng;
		unsigned st = br_ssl_engine_current_state(eng);
		struct pollfd pf;
		unsigned char *buf;
		size_t len;
		ssize_t r;

		if (st & BR_SSL_CLOSED)
			goto fail;
		pf.fd = c->fd;
		if (st & BR_SSL_SENDREC) {
			if (got)
				return c;
			buf = br_ssl_engine_sendrec_buf(eng, &len);
			r = send(c->fd, buf, len, MSG_NOSIGNAL);
			if (r > 0)
				br_ssl_engine_sendrec_ack(eng, (size_t)r);
			pf.events = POLLOUT;
		} else if (st & BR_SSL_RECVREC) {
			buf = br_ssl_engine_recvrec_buf(eng, &len);
			r = recv(c->fd, buf, len, 0);
			if (r == 0)
				goto fail;
			if (r > 0) {
				br_ssl_engine_recvrec_ack(eng, (size_t)r);
				got = 1;
			}
			pf.events = POLLIN;
		} else {
			goto fail;
		}
		if (r < 0 && errno != EAGAIN && errno != EINTR)
			goto fail;
		if (r < 0)
			(void)poll(&pf, 1, 50);
	}
fail:
	dc_free(c);
	return NULL;
}

/* Raw bytes on a socket dc_start made (non-blocking), bounded in time. */
static const char *
g_raw(struct dclient *c, const uint8_t *p, size_t n, int shut)
{
	int64_t deadline = now_ns() + (int64_t)IO_MS * 1000000;
	const char *why;

	while (c != NULL && n > 0 && now_ns() < deadline) {
		ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
		if (r > 0) {
			p += r;
			n -= (size_t)r;
		} else if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
			struct pollfd pf;
			pf.fd = c->fd;
			pf.events = POLLOUT;
			(void)poll(&pf, 1, 50);
		} else {
			break;		/* closed already: what we want */
		}
	}
	if (c != NULL && shut)
		(void)shutdown(c->fd, SHUT_WR);
	if (c == NULL)
		return "could not reach the stage";
	/* The engine is mid-handshake: look at the socket itself. */
	why = raw_drained_to_close(c->fd, CLOSE_MS) ? NULL :
	    "connection left open";
	dc_free(c);
	return why;
}

/* A TLS record header (type, TLS 1.2, length) and random bytes after it. */
static size_t
g_record(uint8_t type, unsigned len, size_t send_bytes)
{
	dc_random(junk, send_bytes);
	junk[0] = type;
	junk[1] = 3;
	junk[2] = 3;
	junk[3] = (uint8_t)(len >> 8);
	junk[4] = (uint8_t)len;
	return send_bytes;
}

/* ... before TLS */
static const char *
c_pre_garbage(void)
{
	dc_random(junk, GARBAGE_BYTES);
	junk[0] = 0;		/* no TLS content type: nothing to wait for */
	return g_send(g_at(0), junk, GARBAGE_BYTES, 0, 0);
}

static const char *
c_pre_http(void)
{
	static const char r[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	return g_send(g_at(0), r, sizeof(r) - 1, 0, 0);
}

static const char *
c_pre_truncated(void)
{
	return g_send(g_at(0), junk, g_record(0x16, 200, 60), 1, 0);
}

static const char *
c_pre_oversized(void)
{
	return g_send(g_at(0), junk, g_record(0x16, 0xffff, 4000), 0, 0);
}

static const char *
c_pre_bad_hello(void)
{
	dc_bad_client_hello(junk);
	return g_send(g_at(0), junk, DC_BAD_HELLO_BYTES, 0, 0);
}

/* ... inside the TLS handshake */
static const char *
c_tls_garbage_record(void)
{
	return g_raw(g_mid_tls(), junk, g_record(0x16, 300, 305), 0);
}

static const char *
c_tls_truncated(void)
{
	struct dclient *c = g_mid_tls();
	unsigned char *buf;
	size_t len;

	if (c == NULL)
		return "could not reach the stage";
	buf = br_ssl_engine_sendrec_buf(&c->sc.eng, &len);
	memcpy(junk, buf, len / 2);
	return g_raw(c, junk, len / 2, 1);
}

static const char *
c_tls_oversized(void)
{
	return g_raw(g_mid_tls(), junk, g_record(0x16, 0xffff, 6000), 0);
}

static const char *
c_tls_early_data(void)
{
	return g_raw(g_mid_tls(), junk, g_record(0x17, 100, 105), 0);
}

/* ... HTTP request line and headers (over TLS) */
static const char *
c_http_garbage(void)
{
	dc_random(junk, GARBAGE_BYTES);
	memcpy(junk + GARBAGE_BYTES - 4, "\r\n\r\n", 4);
	return g_send(g_at(1), junk, GARBAGE_BYTES, 0, 1);
}

static const char *
c_http_long_line(void)
{
	memcpy(junk, "GET /", 5);
	memset(junk + 5, 'a', 20000);
	return g_send(g_at(1), junk, 20005, 0, 1);
}

static const char *
c_http_big_headers(void)
{
	size_t n = (size_t)snprintf((char *)junk, sizeof(junk), "GET /derp"
	    " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: DERP\r\nConnection:"
	    " Upgrade\r\n");
	while (n < 100 * 1024)
		n += (size_t)snprintf((char *)junk + n, sizeof(junk) - n,
		    "X-Pad-%06zu: %080d\r\n", n, 0);
	memcpy(junk + n, "\r\n", 2);
	return g_send(g_at(1), junk, n + 2, 0, 1);
}

static const char *
c_http_many_lines(void)
{
	size_t n = (size_t)snprintf((char *)junk, sizeof(junk), "GET /"
	    " HTTP/1.1\r\nHost: 127.0.0.1\r\n");
	int i;

	for (i = 0; i < 100; i++)
		n += (size_t)snprintf((char *)junk + n, sizeof(junk) - n,
		    "X-%d: y\r\n", i);
	memcpy(junk + n, "\r\n", 2);
	return g_send(g_at(1), junk, n + 2, 0, 1);
}

static const char *
c_http_nul_value(void)
{
	/* Go's net/textproto answers a control byte in a value with 400. */
	static const char r[] = "GET /generate_204 HTTP/1.1\r\n"
	    "Host: 127.0.0.1\r\nX-A: a\0b\r\n\r\n";
	return g_send(g_at(1), r, sizeof(r) - 1, 0, 1);
}

static const char *
c_http_truncated(void)
{
	static const char r[] = "GET /derp HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgr";
	return g_send(g_at(1), r, sizeof(r) - 1, 1, 1);
}

/* ... the /derp upgrade */
static const char *
c_up_no_upgrade(void)
{
	static const char r[] = "GET /derp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
	return g_send(g_at(1), r, sizeof(r) - 1, 0, 1);
}

static const char *
c_up_list(void)
{
	static const char r[] = "GET /derp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	    "Connection: Upgrade\r\nUpgrade: DERP, websocket\r\n\r\n";
	return g_send(g_at(1), r, sizeof(r) - 1, 0, 1);
}

static const char *
c_up_garbage_after(void)
{
	/* Upgraded: a frame header claiming exactly the random bytes sent. */
	dc_random(junk, GARBAGE_BYTES);
	return g_frame(2, junk[0] == FT_CLIENT_INFO ? 0x55 : junk[0],
	    GARBAGE_BYTES, junk, GARBAGE_BYTES, 0);
}

/* ... ClientInfo */
static const char *
c_ci_not_first(void)
{
	return g_frame(2, FT_PING, PING_BYTES, junk, PING_BYTES, 0);
}

static const char *
c_ci_short(void)
{
	dc_random(junk, 55);
	return g_frame(2, FT_CLIENT_INFO, 55, junk, 55, 0);
}

static const char *
c_ci_oversized(void)
{
	memset(junk, 0x41, 262145);
	return g_frame(2, FT_CLIENT_INFO, 262145, junk, 262145, 0);
}

static const char *
c_ci_garbage(void)
{
	dc_random(junk, GARBAGE_BYTES);
	return g_frame(2, FT_CLIENT_INFO, GARBAGE_BYTES, junk, GARBAGE_BYTES, 0);
}

static const char *
c_ci_truncated(void)
{
	dc_random(junk, 40);
	return g_frame(2, FT_CLIENT_INFO, 100, junk, 40, 1);
}

static const char *
c_ci_box(void)
{
	struct dclient *c = g_at(2);
	size_t n;

	if (c == NULL)
		return "could not reach the stage";
	n = dc_client_info_frame(c, NULL, junk, sizeof(junk));
	junk[n - 1] ^= 1;	/* the box no longer opens */
	return g_send(c, junk, n, 0, 0);
}

/* ... DERP frames after registration */
static const char *
c_f_send_short(void)
{
	return g_frame(3, FT_SEND_PACKET, 31, junk, 31, 0);
}

static const char *
c_f_send_oversized(void)
{
	return g_frame(3, FT_SEND_PACKET, KEY_BYTES + 65537, junk,
	    KEY_BYTES + 65537, 0);
}

static const char *
c_f_huge_length(void)
{
	return g_frame(3, FT_SEND_PACKET, 0xffffffffu, junk, 100, 0);
}

static const char *
c_f_truncated(void)
{
	dc_random(junk, 100);
	return g_frame(3, FT_SEND_PACKET, KEY_BYTES + 1200, junk, 100, 1);
}

static const char *
c_f_ping7(void)
{
	return g_frame(3, FT_PING, 7, junk, 7, 0);
}

static const char *
c_f_preferred(void)
{
	return g_frame(3, FT_NOTE_PREFERRED, 2, junk, 2, 0);
}

/* ... STUN: a bad datagram, then a good one; the first answer must be the
 * good one's (loopback keeps the order, the relay answers in order). */
static int stun_fd = -1;

/* Send pkt (if any), then a good request; NULL if only the good one is
 * answered. */
static const char *
stun_after(const uint8_t *pkt, size_t n)
{
	struct sockaddr_in a;
	uint8_t req[STUN_REQUEST_BYTES], txid[STUN_TXID_BYTES], got[600];
	uint8_t rtx[STUN_TXID_BYTES], addr[16];
	size_t alen;
	uint16_t port;
	struct pollfd pf;
	ssize_t r;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)srv_stun_port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	dc_random(txid, sizeof(txid));
	stun_build_request(req, txid);
	if (pkt != NULL)
		(void)sendto(stun_fd, pkt, n, 0, (struct sockaddr *)&a,
		    sizeof(a));
	(void)sendto(stun_fd, req, sizeof(req), 0, (struct sockaddr *)&a,
	    sizeof(a));
	pf.fd = stun_fd;
	pf.events = POLLIN;
	if (poll(&pf, 1, IO_MS) <= 0)
		return "no answer to a good request";
	r = recv(stun_fd, got, sizeof(got), 0);
	if (r <= 0 || stun_parse_response(got, (size_t)r, rtx, addr, &alen,
	    &port) < 0)
		return "an answer that does not parse";
	if (memcmp(rtx, txid, sizeof(txid)) != 0)
		return "the bad datagram was answered";
	return NULL;
}

static const char *
c_stun_garbage(void)
{
	dc_random(junk, 100);
	return stun_after(junk, 100);
}

static const char *
c_stun_truncated(void)
{
	uint8_t txid[STUN_TXID_BYTES];

	dc_random(txid, sizeof(txid));
	stun_build_request(junk, txid);
	return stun_after(junk, 30);
}

static const char *
c_stun_oversized(void)
{
	uint8_t txid[STUN_TXID_BYTES];

	dc_random(txid, sizeof(txid));
	dc_random(junk, 1400);
	stun_build_request(junk, txid);
	return stun_after(junk, 1400);
}

static const char *
c_stun_fingerprint(void)
{
	uint8_t txid[STUN_TXID_BYTES];

	dc_random(txid, sizeof(txid));
	stun_build_request(junk, txid);
	junk[STUN_REQUEST_BYTES - 1] ^= 1;
	return stun_after(junk, STUN_REQUEST_BYTES);
}

struct gcase {
	const char *name;
	const char *(*run)(void);
	int fails;
	const char *why;
};

static struct gcase gcases[] = {
	{ "before TLS: random bytes", c_pre_garbage, 0, NULL },
	{ "before TLS: plain HTTP", c_pre_http, 0, NULL },
	{ "before TLS: truncated ClientHello", c_pre_truncated, 0, NULL },
	{ "before TLS: 64 KiB record", c_pre_oversized, 0, NULL },
	{ "before TLS: malformed ClientHello", c_pre_bad_hello, 0, NULL },
	{ "TLS handshake: garbage record", c_tls_garbage_record, 0, NULL },
	{ "TLS handshake: truncated second flight", c_tls_truncated, 0, NULL },
	{ "TLS handshake: 64 KiB record", c_tls_oversized, 0, NULL },
	{ "TLS handshake: application data early", c_tls_early_data, 0, NULL },
	{ "HTTP: random request", c_http_garbage, 0, NULL },
	{ "HTTP: 20 KB request line", c_http_long_line, 0, NULL },
	{ "HTTP: 100 KB of headers", c_http_big_headers, 0, NULL },
	{ "HTTP: 100 header lines", c_http_many_lines, 0, NULL },
	{ "HTTP: NUL in a header value", c_http_nul_value, 0, NULL },
	{ "HTTP: truncated headers", c_http_truncated, 0, NULL },
	{ "upgrade: /derp without Upgrade", c_up_no_upgrade, 0, NULL },
	{ "upgrade: Upgrade list", c_up_list, 0, NULL },
	{ "upgrade: random frame after ServerKey", c_up_garbage_after, 0, NULL },
	{ "ClientInfo: not the first frame", c_ci_not_first, 0, NULL },
	{ "ClientInfo: 55 bytes", c_ci_short, 0, NULL },
	{ "ClientInfo: 256 KiB + 1", c_ci_oversized, 0, NULL },
	{ "ClientInfo: random bytes", c_ci_garbage, 0, NULL },
	{ "ClientInfo: truncated", c_ci_truncated, 0, NULL },
	{ "ClientInfo: box does not open", c_ci_box, 0, NULL },
	{ "frames: SendPacket of 31 bytes", c_f_send_short, 0, NULL },
	{ "frames: SendPacket of 64 KiB + 1", c_f_send_oversized, 0, NULL },
	{ "frames: length 2^32-1", c_f_huge_length, 0, NULL },
	{ "frames: truncated SendPacket", c_f_truncated, 0, NULL },
	{ "frames: Ping of 7 bytes", c_f_ping7, 0, NULL },
	{ "frames: NotePreferred of 2 bytes", c_f_preferred, 0, NULL },
	{ "STUN: random datagram", c_stun_garbage, 0, NULL },
	{ "STUN: truncated request", c_stun_truncated, 0, NULL },
	{ "STUN: 1400-byte datagram", c_stun_oversized, 0, NULL },
	{ "STUN: bad fingerprint", c_stun_fingerprint, 0, NULL },
};
#define NGCASES (sizeof(gcases) / sizeof(gcases[0]))

/* The sentinel pair: a packet each way, intact.  NULL or why not. */
static const char *
sentinel_ok(struct dclient *a, struct dclient *b, uint32_t n)
{
	uint8_t pkt[64], got[128], src[KEY_BYTES];
	size_t len;
	int k;

	for (k = 0; k < 2; k++) {
		struct dclient *from = k ? b : a, *to = k ? a : b;
		memcpy(pkt, pattern, sizeof(pkt));
		put_be32(pkt, n * 2 + (uint32_t)k);
		if (dc_send_packet(from, to->pk, pkt, sizeof(pkt)) < 0)
			return "could not send";
		if (dc_recv_packet(to, src, got, sizeof(got), &len, IO_MS) != 1)
			return "packet did not arrive";
		if (len != sizeof(pkt) || memcmp(got, pkt, len) != 0 ||
		    memcmp(src, from->pk, KEY_BYTES) != 0)
			return "packet arrived altered or from the wrong key";
	}
	return NULL;
}

static void
scenario_garbage(void)
{
	struct dclient *a = NULL, *b = NULL;
	struct sockaddr_in me;
	char why[300];
	int64_t t = now_ns();
	long fds0, fds1;
	int round, sent_bad = 0, sent_stun = 0;
	uint32_t n = 0;
	size_t i;

	printf("\n== garbage: %d bad inputs at every stage, %d rounds, a sentinel"
	    " pair and STUN checked after each ==\n", (int)NGCASES, S->rounds);
	srv_stun_port = free_port();
	if (start_relay("garbage", 0) < 0) {
		srv_stun_port = 0;
		return;
	}
	stun_fd = socket(AF_INET, SOCK_DGRAM, 0);
	memset(&me, 0, sizeof(me));
	me.sin_family = AF_INET;
	me.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a = g_at(3);
	b = g_at(3);
	if (stun_fd < 0 || bind(stun_fd, (struct sockaddr *)&me,
	    sizeof(me)) < 0 || a == NULL || b == NULL ||
	    sentinel_ok(a, b, n++) != NULL || stun_after(NULL, 0) != NULL) {
		check(0, "garbage: sentinel pair and STUN work", NULL);
		goto out;
	}
	fds0 = relay_fds();
	for (round = 0; round < S->rounds && server_alive(); round++) {
		for (i = 0; i < NGCASES; i++) {
			const char *w = gcases[i].run(), *s;
			if (w != NULL && gcases[i].fails++ == 0)
				gcases[i].why = w;
			if ((s = sentinel_ok(a, b, n++)) != NULL &&
			    sent_bad++ == 0)
				printf("  sentinel failed after \"%s\": %s\n",
				    gcases[i].name, s);
			if ((s = stun_after(NULL, 0)) != NULL && sent_stun++ == 0)
				printf("  STUN failed after \"%s\": %s\n",
				    gcases[i].name, s);
		}
	}
	for (i = 0; i < NGCASES; i++) {
		char name[120];
		snprintf(name, sizeof(name), "garbage: %s", gcases[i].name);
		snprintf(why, sizeof(why), "%d of %d rounds: %s", gcases[i].fails,
		    round, gcases[i].why ? gcases[i].why : "");
		check(gcases[i].fails == 0 && round == S->rounds, name, why);
	}
	snprintf(why, sizeof(why), "failed after %d of %d cases", sent_bad,
	    round * (int)NGCASES);
	check(sent_bad == 0, "garbage: sentinel pair exchanged packets after"
	    " every case", why);
	snprintf(why, sizeof(why), "failed after %d of %d cases", sent_stun,
	    round * (int)NGCASES);
	check(sent_stun == 0, "garbage: STUN answered a good request after every"
	    " case", why);
	fds1 = relay_fds_settle(fds0, FDS_SETTLE_MS);
	snprintf(why, sizeof(why), "%ld descriptors, %ld before the cases", fds1,
	    fds0);
	check(fds1 == fds0, "garbage: relay closed every bad connection"
	    " (descriptors back)", why);
	printf("  %d bad connections and datagrams, %u sentinel packets\n",
	    round * (int)NGCASES, 2 * n);
out:
	dc_free(a);
	dc_free(b);
	if (stun_fd >= 0)
		close(stun_fd);
	stun_fd = -1;
	stop_relay("garbage");
	srv_stun_port = 0;
	printf("garbage: %.1f s\n", secs_since(t));
}

/* ---- main ---------------------------------------------------------------- */

static void
usage(void)
{
	fprintf(stderr, "usage: soak [--short | --tiny] [--only idle|cycles|nonreader|"
	    "hsflood|garbage] [DERP_BINARY]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const char *const names[] = { "idle", "cycles", "nonreader",
	    "hsflood", "garbage" };
	static void (*const run[])(void) = { scenario_idle, scenario_cycles,
	    scenario_nonreader, scenario_hsflood, scenario_garbage };
	const char *only = NULL;
	struct rlimit rl;
	int i, shortrun = 0;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--short") == 0)
			shortrun = 1;
		else if (strcmp(argv[i], "--tiny") == 0)
			shortrun = 2;
		else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
			only = argv[++i];
		else if (argv[i][0] == '-')
			usage();
		else
			derp_path = argv[i];
	}
	S = shortrun == 2 ? &tiny : shortrun ? &brief : &full;
	t_program = now_ns();
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (access(derp_path, X_OK) != 0) {
		fprintf(stderr, "soak: %s: not executable (make derp)\n",
		    derp_path);
		return 2;
	}
	if (loadgen_init("soak", shortrun ? WATCHDOG_SHORT_S : WATCHDOG_S) < 0)
		return 2;
	(void)getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < (rlim_t)S->idle + 1000) {
		printf("FAIL setup: open-file limit %lu, %d needed\n",
		    (unsigned long)rl.rlim_cur, S->idle + 1000);
		printf("0 passed, 1 failed, 0 skipped\n");
		return 1;
	}
	printf("derp soak%s: relay %s, open files %lu, %ld cores\n",
	    shortrun == 2 ? " --tiny" : shortrun ? " --short" : "", derp_path, (unsigned long)rl.rlim_cur,
	    sysconf(_SC_NPROCESSORS_ONLN));
	for (i = 0; i < 5; i++)
		if (only == NULL || strcmp(only, names[i]) == 0)
			run[i]();
	kill_all();
	if (anomalies_total > 0) {
		printf("\n== anomalies: %ld ==\n", anomalies_total);
		for (i = 0; i < nanomalies; i++)
			printf("%s\n", anomalies[i]);
	}
	printf("\nsoak done in %.0f s\n", elapsed_s());
	if (nfail == 0)
		rm_tree(scratch);	/* keep the relay logs only of a failure */
	else
		printf("(relay logs in %s)\n", scratch);
	printf("%d passed, %d failed, %d skipped\n", npass, nfail, nskip);
	return nfail == 0 ? 0 : 1;
}
