/*
 * soak.c -- `make soak`: the relay's correctness under load (issue 5) and
 * against one stranger locking everyone out (issue 9), on loopback only,
 * bounded in time.  Checks are on correctness, never on speed (the relay
 * and this generator share two cores); the one ratio asserted is the 80%
 * issue 5 asks for.  Figures are printed along the way.
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
 *   storm      5,000 connected clients (1,000; 400), each from its own 127/8
 *              address, drop and reconnect at once while K pairs run: every
 *              client is back within 60 s, none is turned away even once
 *              (they wait in line), the pairs stay lossless, no pause of a
 *              second.
 *   garbage    garbage, truncated and oversized input at every stage (before
 *              and inside the TLS handshake, HTTP request line and headers,
 *              the /derp upgrade, ClientInfo, DERP frames after registration,
 *              STUN), 20 rounds (2) with fresh random bytes: each bad
 *              connection sees a clean close (EOF or reset) or an HTTP 4xx,
 *              a bad STUN datagram no answer; after every case a sentinel
 *              pair still exchanges packets and STUN answers a good request.
 *
 * Issue 9: each of these has a legitimate side, and its checks are what
 * those clients see: a pair opened before the attack stays lossless
 * (windowed), fresh handshakes (TLS, upgrade, ClientInfo, ServerInfo) from a
 * helper child complete, and afterwards a new sentinel pair exchanges
 * packets.
 *   pinned     -max-clients 256 (OpenWrt's): 200 registered clients (130
 *              with --tiny) each send the first 38 bytes of a SendPacket
 *              declaring a 64 KiB packet (header, a random key, one byte)
 *              and stop.  Meanwhile 10 fresh handshakes complete, the pair
 *              loses nothing, and /derp/probe on a new connection answers
 *              200.  (A relay that takes the whole packet's memory at its
 *              first byte is out of memory after 128 of them.)
 *   pinned4k   the same at the default -max-clients 4096 with 1,990
 *              holders (150 with --tiny, which cannot reach the end of that
 *              pool: the sanitizer relay's handshakes are too slow).
 *   overhold   -max-clients 256: 12 holders (8) send 40 KiB of the 64 KiB
 *              packet and stop; each must see its connection closed within
 *              OVERHOLD_CLOSE_MS of its last byte (memory beyond a
 *              connection's reserve is lent for 5 s at most), while the pair
 *              stays lossless and fresh handshakes complete.
 *   stalledinfo  -max-clients 64: 10 connections do TLS and the upgrade,
 *              then trickle a 256 KiB ClientInfo (derper's largest; 16 KiB
 *              per 250 ms in 1,000-byte records) and never finish it.  Over
 *              the 10 s of derper's ClientInfo deadline, 10 fresh handshakes
 *              (one a second) complete and the pair loses nothing; each
 *              stream is closed within 11 s of its ServerKey.
 *   slowrecv   -max-clients 64: one sender floods 40 registered receivers
 *              round-robin with 1,200-byte packets, as fast as its socket
 *              takes them; each receiver reads one frame every 100 ms.  For
 *              8 s (4), 20 fresh handshakes spread over the run complete, no
 *              receiver is closed (they make progress), each gets packets,
 *              and the sender still answers a Ping.  Packets missing in
 *              what the receivers read (their queues drop the oldest) are
 *              counted, not judged.
 *   idleflood  500 idle TCP connections a second from 127.0.0.1 to the TLS
 *              port (default -max-handshakes 256); after 1 s, 10 handshakes
 *              from 127.0.0.2, 200 ms apart: at least 9 get in.  Then, on a
 *              new relay, the same flood to the -http-port listener, and 10
 *              handshakes on the TLS port from 127.0.0.1 itself: at least 9.
 *
 *   keepalive  (full run only: it takes 67 s, so it runs in a child process
 *              alongside the scenarios above, from the start, with its own
 *              relay; its lines are printed at the end.)  8 registered TLS
 *              clients, 4 of them silent and 4 sending a Ping every 5 s:
 *              each gets its first KeepAlive (zero-length) 60 s plus its
 *              jitter [0, 5 s) after its ServerInfo (59.8-66.5 s, see
 *              KA_EARLY_MS, KA_LATE_MS), exactly one, and nothing else but
 *              the Pongs it asked for; the eight are spread over at least
 *              0.5 s (the jitter is per connection); every Ping gets its
 *              Pong within 3 s, and every connection still answers one at
 *              the end.
 *
 * Each scenario has its own relay, started as bench does (TLS with a
 * self-signed IP certificate), so a failure stays in its scenario.  The
 * engine (connections, pairs, phases, idle children) is test/loadgen.c.
 * The output ends with "N passed, N failed, 0 skipped"; exit status 0 or 1.
 * Nothing is skipped: a figure that depends on the machine is judged against
 * a relaxed bound where the machine says it must be (the 80% ratio: 50%
 * when other processes took more than OTHER_LOAD_MAX of a core during its
 * phases, or for a relay built with sanitizers; the cycles' RSS: its own
 * bound for a sanitizer relay), and a check that cannot be judged fails,
 * with the reason.
 *
 * Sections: settings; relay figures; idle; cycles; nonreader; hsflood;
 * storm; garbage; issue 9 (pinned, pinned4k, overhold; stalledinfo; slowrecv;
 * idleflood); keepalive; main.
 */
#include "loadgen.h"
#include "../stun.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
	int sanitized;			/* the relay is built with sanitizers:
					 * the 80% ratio and the cycles' RSS
					 * have relaxed bounds */
	int pin_holders;		/* pinned, at -max-clients 256 */
	int wide_holders;		/* pinned4k, at the default 4096 */
	int over_holders;		/* overhold */
	int slow_ms;			/* slowrecv: the senders' run */
	int storm;			/* storm: clients that reconnect */
};
/* pinned: 128 holders of a 64 KiB packet take a 256-slot pool (4,224
 * chunks of which a 64 KiB packet takes 33); pinned4k: 1,990 the 65,664 of
 * 4,096 slots; --tiny takes fewer there (time).  overhold: few
 * enough that every holder can take its excess from the spare at once (384
 * chunks at 256 slots, 28 a holder: 13; more would wait in line, holding
 * nothing of the spare, and be lent it only as the first are closed). */
static const struct settings full = { 10000, 5000, 100000, 10, 5000, 20, 0,
    200, 1990, 12, 8000, 5000 };
static const struct settings brief = { 500, 500, 2000, 2, 2500, 2, 0,
    200, 1990, 12, 4000, 1000 };
/* For a relay built with sanitizers (several times slower handshakes).  Its
 * warm-up is as long as its cycle run is short: 200 cycles at 100 in flight
 * touch as many slots as the run will (RSS_SLACK_SAN_BYTES). */
static const struct settings tiny = { 200, 200, 400, 1, 2500, 1, 1,
    130, 150, 8, 4000, 400 };
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
/* The same for a relay built with ASan (--tiny: 400 cycles after a warm-up of
 * 200).  The relay allocates nothing per connection, so ASan's quarantine of
 * freed memory stays empty and its RSS follows the slots touched, as above
 * (shadow memory adds an eighth): measured +57 KB to +172 KB in ten runs,
 * four of them with two busy loops taking both cores.  A warm-up of 40
 * (before) gave +1.5 MB every time: 40 cycles do not reach the run's peak
 * of about 100 concurrent connections, and each slot more is 38 KB.  2 MB is
 * over ten times the largest figure, room for some 45 slots more than the
 * warm-up's peak (38 KB and an eighth of shadow each); it is exceeded by a
 * leak of 5.3 KB a cycle, and one connection's buffers a cycle (38 KB) would
 * add 15 MB.  A relay that malloc'ed and freed per connection would show
 * here too: ASan's quarantine (256 MB) keeps what is freed. */
#define RSS_SLACK_SAN_BYTES (2 * 1024 * 1024)
/* derper's write timeout and our relay's sweep; the cut-off must come after
 * WRITE_TIMEOUT_MS and within CUTOFF_MAX_MS of the flood's start (sweep 250
 * ms, filling the socket buffers, scheduling on two busy cores). */
#define WRITE_TIMEOUT_MS 2000
#define CUTOFF_MAX_MS 4500
#define CLOSE_MS 3000		/* a bad connection must be closed by then */
#define IO_MS 3000
#define FDS_SETTLE_MS 10000		/* descriptors back to their figure */
#define WATCHDOG_S 1500		/* whole run, hard */
#define WATCHDOG_SHORT_S 300

/*
 * The pairs' throughput with the flooder, as a share of undisturbed, is at
 * least FAIR_FLOOR (issue 5's 80%), or FAIR_FLOOR_RELAXED when other
 * processes took more than OTHER_LOAD_MAX of a core in one of the three
 * phases (they change what the relay and this generator get between the
 * phases) or when the relay is built with sanitizers (then it is the
 * bottleneck, at 100% CPU, and its 2.5 s phases vary by up to 30%: measured
 * 0.80 and 0.88 on a quiet machine, 0.71 to 0.87 on a busy one).  Half is
 * still far above what a relay that lets a non-reader hold up the others
 * gives: its writes to the non-reader stall everyone, or its pool drains
 * into the non-reader's queue, and the pairs stop.
 */
#define FAIR_FLOOR 0.8
#define FAIR_FLOOR_RELAXED 0.5
#define OTHER_LOAD_MAX 0.25

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
	long slack = S->sanitized ? RSS_SLACK_SAN_BYTES : RSS_SLACK_BYTES;
	char name[120];
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
	    " warm-up; allowed %ld)\n", fds_end, rss_end / 1e6, rss_end - rss_warm,
	    slack);
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
	snprintf(why, sizeof(why), "RSS %ld after the warm-up, %ld at the end:"
	    " %+ld, allowed %ld%s", rss_warm, rss_end, rss_end - rss_warm, slack,
	    rss_warm > 0 && rss_end > 0 ? "" : " (RSS unreadable)");
	snprintf(name, sizeof(name), "cycles: relay RSS back to its warm-up"
	    " value (within %ld KB%s)", slack / 1024, S->sanitized ?
	    ", sanitizer build" : "");
	check(rss_warm > 0 && rss_end > 0 && rss_end - rss_warm <= slack, name,
	    why);
	idle_stop(ch, IDLE_CHILDREN);
	stop_relay("cycles");
	printf("cycles: %.1f s\n", secs_since(t));
}

/* ---- traffic phases (nonreader, hsflood) --------------------------------- */

/* One windowed phase on the open pairs, measured for ms after WARM_MS;
 * 0 or -1 (relay died). */
static int
pairs_phase_ms(const char *what, int ms, struct result *r)
{
	struct spec sp;

	memset(&sp, 0, sizeof(sp));
	sp.mode = M_WINDOW;
	sp.size = PAIR_PKT_BYTES;
	sp.window = PAIR_WINDOW;
	sp.warm_ms = WARM_MS;
	sp.measure_ms = ms;
	if (run_phase(&sp, r) < 0)
		return -1;
	printf("  %-22s %8.0f pkt/s, relay %3.0f%% CPU, soak %3.0f%%, other"
	    " %3.0f%% | per pair %.2f-%.2f of the mean | longest gap %.0f ms |"
	    " errors %d\n", what, r->pps, r->srv_util * 100, r->bench_util * 100,
	    r->other_util * 100, r->share_min, r->share_max, r->stall_ms,
	    r->errors);
	return 0;
}

static int
pairs_phase(const char *what, struct result *r)
{
	return pairs_phase_ms(what, S->phase_ms, r);
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
	char why[240], name[200], min_why[64];
	int64_t t = now_ns();
	double base, ratio, cut_s, other, min_share;
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
	other = u1.other_util > d.other_util ? u1.other_util : d.other_util;
	if (u2.other_util > other)
		other = u2.other_util;
	min_share = FAIR_FLOOR;
	snprintf(min_why, sizeof(min_why), "quiet machine");
	if (other > OTHER_LOAD_MAX) {
		min_share = FAIR_FLOOR_RELAXED;
		snprintf(min_why, sizeof(min_why), "other processes took up"
		    " to %.0f%% of a core", other * 100);
	} else if (S->sanitized) {
		min_share = FAIR_FLOOR_RELAXED;
		snprintf(min_why, sizeof(min_why), "relay built with sanitizers");
	}
	snprintf(name, sizeof(name), "nonreader: pairs keep %.3f of their"
	    " throughput (floor %.2f: %s)", ratio, min_share, min_why);
	snprintf(why, sizeof(why), "%.0f pkt/s flooded, %.0f and %.0f"
	    " undisturbed", d.pps, u1.pps, u2.pps);
	check(base > 0 && ratio >= min_share, name, why);
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

/* ---- storm --------------------------------------------------------------- */

/*
 * A relay restart as its clients see it (issue 15): S->storm clients, each
 * from its own 127/8 address, all connected; K_PAIRS pairs measured alone;
 * then every client drops and reconnects at once while the pairs run.  What
 * must hold: every client is back within STORM_BOUND_MS, none is turned away
 * even once (a crowd waits in line at -max-handshakes instead of evicting
 * one another: a client closed mid-handshake would retry, and the same few
 * could be closed again and again while others finish), and the pairs stay
 * intact and flowing, without a pause of a second.
 */
#define STORM_CHILDREN 4
#define STORM_BOUND_MS 60000

static void
scenario_storm(void)
{
	struct idle_child ch[STORM_CHILDREN];
	struct storm_result sr;
	struct result u, d;
	char why[240];
	int64_t t = now_ns();
	uint32_t each = (uint32_t)(S->storm / STORM_CHILDREN);
	int ok;

	printf("\n== storm: %d pairs alone, then while %d clients (one address"
	    " each) drop and reconnect at once ==\n", K_PAIRS, S->storm);
	if (start_relay("storm", S->storm + 2 * K_PAIRS + 64) < 0 ||
	    spawn_children(ch, STORM_CHILDREN) < 0)
		return;
	memset(&u, 0, sizeof(u));
	memset(&d, 0, sizeof(d));
	ok = storm_open(ch, STORM_CHILDREN, each, 1, &sr) == 0 &&
	    sr.open.ok == each * STORM_CHILDREN;
	snprintf(why, sizeof(why), "%lu of %lu connected (%s)",
	    (unsigned long)sr.open.ok, (unsigned long)each * STORM_CHILDREN,
	    sr.open.why);
	check(ok, "storm: the clients connect", why);
	if (!ok)
		goto out;
	if (ensure_pairs(K_PAIRS) < 0) {
		check(0, "storm: connect", "pairs could not connect");
		goto out;
	}
	if (pairs_phase("undisturbed", &u) < 0 ||
	    storm_begin(ch, STORM_CHILDREN, 1, STORM_BOUND_MS, &sr) < 0 ||
	    pairs_phase("during the storm", &d) < 0)
		goto out;
	ok = storm_end(ch, STORM_CHILDREN, &sr) == 0;
	printf("  storm: %lu back (after p50 %.2f s, p99 %.2f s, the last"
	    " %.2f s), %lu not; turned away %lu times (at most %lu for one);"
	    " relay CPU %.2f ms a client; pairs at %.3f of undisturbed\n",
	    (unsigned long)sr.storm.ok, sr.storm.p50_ms / 1e3,
	    sr.storm.p99_ms / 1e3, sr.storm.max_ms / 1e3,
	    (unsigned long)sr.storm.failed, (unsigned long)sr.storm.retries,
	    (unsigned long)sr.storm.max_retries, sr.storm.ok > 0 ?
	    (double)sr.relay_cpu_ns / 1e6 / sr.storm.ok : 0,
	    u.pps > 0 ? d.pps / u.pps : 0);
	snprintf(why, sizeof(why), "%lu of %lu not back within %d s (%s)",
	    (unsigned long)sr.storm.failed, (unsigned long)each *
	    STORM_CHILDREN, STORM_BOUND_MS / 1000, sr.storm.why);
	check(ok && sr.storm.failed == 0 && sr.storm.ok == each *
	    STORM_CHILDREN, "storm: every client is back", why);
	snprintf(why, sizeof(why), "the relay closed clients mid-handshake %lu"
	    " times, one client %lu times", (unsigned long)sr.storm.retries,
	    (unsigned long)sr.storm.max_retries);
	check(ok && sr.storm.retries == 0, "storm: no client turned away (they"
	    " wait in line)", why);
	check_pairs("storm: pairs intact and flowing during the storm", &d);
	snprintf(why, sizeof(why), "longest gap between deliveries %.0f ms",
	    d.stall_ms);
	check(d.stall_ms < 1000, "storm: no pause of a second in the pairs'"
	    " traffic", why);
out:
	close_all_pairs();
	idle_stop(ch, STORM_CHILDREN);
	stop_relay("storm");
	printf("storm: %.1f s\n", secs_since(t));
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
	srv_stun_port = dc_free_port("127.0.0.1", SOCK_STREAM);
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

/* ---- issue 9: one stranger must not lock everyone out -------------------- */

/*
 * Each scenario below has a legitimate side (a pair opened before the
 * attack, fresh handshakes from a helper child, /derp/probe, a sentinel pair
 * afterwards) and a hostile side; the checks are on what the legitimate
 * clients see.  ch[0, HOLD_CHILDREN) hold connections, ch[HOLD_CHILDREN] makes
 * the fresh handshakes, so its crypto runs beside the pair's traffic.
 */
#define HOLD_CHILDREN (IDLE_CHILDREN - 1)
#define LEGIT_PAIRS 1
#define FRESH_HS 10			/* fresh handshakes per check */
#define PIN_MAX_CLIENTS 256		/* the OpenWrt package's default */
/* A SendPacket of the largest packet: key 32 + packet 65,536. */
#define BIG_FRAME_LEN (KEY_BYTES + 65536)
#define OVERHOLD_BYTES 40960		/* overhold: of the 65,536 declared */
/* The new relay closes a connection that holds more than its reserve for
 * SPARE_HOLD_MS = 5 s, found by its 250 ms sweep: 5.25 s, and slack for two
 * busy cores. */
#define OVERHOLD_CLOSE_MS 8000
/* The holders' handshakes end within HOLD_BASE_MS plus this per holder (a
 * relay here does 300-500 a second, 5 times fewer with sanitizers); those
 * still unfinished then (a relay out of memory stalls them until its 10 s
 * ClientInfo deadline) are given up. */
#define HOLD_BASE_MS 3000
#define HOLD_PER_MS 5
#define HOLD_PER_MS_SANITIZED 20
#define INFO_MAX_CLIENTS 64
#define INFO_STREAMS 10
#define INFO_FRAME_LEN (256 * 1024)	/* derper's largest ClientInfo */
/* Each stream trickles INFO_STEP_BYTES per INFO_STEP_MS (the whole 256 KiB
 * would take 4 s), one TLS record of INFO_RECORD_BYTES at a time: a relay
 * then reads each record alone, and one that buffers what it decrypts is
 * taken a little at a time, to its last free byte. */
#define INFO_STEP_BYTES 16384
#define INFO_STEP_MS 250
#define INFO_RECORD_BYTES 1000
#define INFO_DEADLINE_MS 10000		/* derper: ServerKey -> ClientInfo */
#define INFO_CLOSE_MS 11000		/* the deadline and its sweep, slack */
#define SLOW_MAX_CLIENTS 64
#define SLOW_RECEIVERS 40
#define SLOW_READ_MS 100		/* each receiver: one frame, then sleep */
#define SLOW_FRESH 20
#define SLOW_FRAME_MS 5			/* one receiver's wait for a frame */
#define FLOOD_RATE 500			/* idle connections per second */
#define FLOOD_HOLD_MAX 3000		/* beyond: the oldest is closed */
/* The handshakes start FLOOD_LEAD_MS into the flood, FLOOD_GAP_MS apart,
 * and must end by FLOOD_FRESH_MS later: all within 5 s of the flood's start,
 * the grace after which the relay's oldest unfinished connection gives way
 * to a newcomer (so later, the cap on unfinished connections alone would let
 * them in, flood or not). */
#define FLOOD_LEAD_MS 1000
#define FLOOD_GAP_MS 200
#define FLOOD_FRESH_MS 4000
#define FLOOD_FRESH_MIN 9		/* of FRESH_HS (issue 9's figure) */
#define SECOND_ADDR 0x7f000002u		/* 127.0.0.2: another client machine */

/* The sentinel: after the hostile part, a new pair exchanges packets. */
static void
sentinel_check(const char *scenario)
{
	struct dclient *a = g_at(3), *b = g_at(3);
	const char *w = a != NULL && b != NULL ? sentinel_ok(a, b, 0) :
	    "a client could not connect";
	char name[120];

	snprintf(name, sizeof(name), "%s: afterwards a new pair exchanges"
	    " packets", scenario);
	check(server_alive() && w == NULL, name, w);
	dc_free(a);
	dc_free(b);
}

/* GET /derp/probe on a new TLS connection: the status, or 0 (why in why). */
static int
probe_status(char *why, size_t cap)
{
	static const char req[] = "GET /derp/probe HTTP/1.1\r\nHost: 127.0.0.1"
	    "\r\nConnection: close\r\n\r\n";
	struct dclient *c = dc_new();
	char head[DC_HEAD_MAX];
	int st = 0;

	snprintf(why, cap, "no answer");
	if (c == NULL)
		return 0;
	if (dc_connect(c, "127.0.0.1", srv.port, 1, NULL, IO_MS) < 0)
		snprintf(why, cap, "TLS handshake failed (TLS error %d)",
		    c->tls_err);
	else if (dc_http_request(c, req, head, sizeof(head), IO_MS) < 0)
		snprintf(why, cap, "closed without an answer (empty reply)");
	else if ((st = dc_http_status(head)) != 200)
		snprintf(why, cap, "status %d", st);
	else
		snprintf(why, cap, "200");
	dc_free(c);
	return st;
}

/* Fresh handshakes from the helper child: n of them, one at a time, gap_ms
 * apart, from src (0: 127.0.0.1), all within ms. */
static int
fresh_begin(struct idle_child *pr, int n, int gap_ms, int ms, uint32_t src,
    struct idle_cmd *ic)
{
	memset(ic, 0, sizeof(*ic));
	ic->op = IDLE_CYCLE;
	ic->n = (uint32_t)n;
	ic->inflight = 1;
	ic->gap_ms = (uint32_t)gap_ms;
	ic->ms = (uint32_t)ms;
	ic->src_ip4 = src;
	return idle_send(pr, 1, ic);
}

/* Their outcome; the check line's detail in why.  0 or -1. */
static int
fresh_end(struct idle_child *pr, const struct idle_cmd *ic,
    struct idle_reply *rp, char *why, size_t cap)
{
	int rc = idle_collect(pr, 1, ic, (int)ic->ms + 10000, rp);

	if (rc < 0) {
		memset(rp, 0, sizeof(*rp));
		snprintf(why, cap, "the helper did not answer");
		return -1;
	}
	snprintf(why, cap, "%lu of %lu completed, %lu failed, %lu unfinished"
	    " and %lu not started after %.1f s; longest %lu ms%s%s",
	    (unsigned long)rp->ok, (unsigned long)ic->n,
	    (unsigned long)rp->failed, (unsigned long)rp->unfinished,
	    (unsigned long)(ic->n - rp->ok - rp->failed - rp->unfinished),
	    ic->ms / 1e3, (unsigned long)rp->max_ms, rp->why[0] ?
	    "; first failure " : "", rp->why);
	return 0;
}

/* ---- pinned, pinned4k, overhold ------------------------------------------ */

struct holdspec {
	const char *name;
	int max_clients;		/* 0: the relay's default */
	int holders;
	uint32_t send_bytes;		/* of the 65,536-byte packet */
	int close_ms;			/* > 0: each holder must be closed by then */
};

/* IDLE_HOLD spread over the holding children; the summed reply.  0 or -1. */
static int
holders_open(struct idle_child *ch, const struct holdspec *hs,
    struct idle_reply *rp)
{
	struct idle_cmd ic;
	int i;

	memset(&ic, 0, sizeof(ic));
	ic.op = IDLE_HOLD;
	ic.ms = (uint32_t)(HOLD_BASE_MS + hs->holders * (S->sanitized ?
	    HOLD_PER_MS_SANITIZED : HOLD_PER_MS));
	ic.frame_len = BIG_FRAME_LEN;
	ic.send_bytes = hs->send_bytes;
	for (i = 0; i < HOLD_CHILDREN; i++) {
		ic.n = (uint32_t)(hs->holders / HOLD_CHILDREN +
		    (i < hs->holders % HOLD_CHILDREN));
		if (idle_send(&ch[i], 1, &ic) < 0)
			return -1;
	}
	return idle_collect(ch, HOLD_CHILDREN, &ic, (int)ic.ms + 10000, rp);
}

static void
scenario_hold(const struct holdspec *hs)
{
	struct idle_child ch[IDLE_CHILDREN], *pr = &ch[HOLD_CHILDREN];
	struct idle_cmd fic, wic;
	struct idle_reply hrp, frp, wrp;
	struct result d;
	char why[300], fwhy[240], pwhy[80], name[160];
	int64_t t = now_ns(), t1;
	int ms = WARM_MS + S->phase_ms, st, watching = 0;

	printf("\n== %s: %d registered clients (-max-clients %d) each send a"
	    " SendPacket header for a %d-byte packet, a key and %lu bytes of"
	    " the packet, and stop; meanwhile a pair, %d fresh handshakes and"
	    " /derp/probe ==\n", hs->name, hs->holders, hs->max_clients > 0 ?
	    hs->max_clients : 4096, BIG_FRAME_LEN - KEY_BYTES,
	    (unsigned long)hs->send_bytes, FRESH_HS);
	memset(&d, 0, sizeof(d));
	memset(&wrp, 0, sizeof(wrp));
	if (start_relay(hs->name, hs->max_clients) < 0 ||
	    spawn_children(ch, IDLE_CHILDREN) < 0)
		return;
	snprintf(name, sizeof(name), "%s: connect", hs->name);
	if (ensure_pairs(LEGIT_PAIRS) < 0) {
		check(0, name, "the pair could not connect");
		goto out;
	}
	t1 = now_ns();
	if (holders_open(ch, hs, &hrp) < 0) {
		check(0, name, "a holding child did not answer");
		goto out;
	}
	printf("  holders: %lu holding, %lu refused or failed%s%s, in %.1f s"
	    " (longest handshake %lu ms)\n", (unsigned long)hrp.ok,
	    (unsigned long)hrp.failed, hrp.why[0] ? "; first: " : "", hrp.why,
	    secs_since(t1), (unsigned long)hrp.max_ms);
	if (hs->close_ms > 0) {
		memset(&wic, 0, sizeof(wic));
		wic.op = IDLE_WATCH;
		wic.ms = (uint32_t)hs->close_ms;
		watching = idle_send(ch, HOLD_CHILDREN, &wic) == 0;
	}
	if (fresh_begin(pr, FRESH_HS, ms / FRESH_HS, ms + IO_MS, 0, &fic) < 0 ||
	    pairs_phase_ms("pair while they hold", S->phase_ms, &d) < 0)
		goto out;
	(void)fresh_end(pr, &fic, &frp, fwhy, sizeof(fwhy));
	st = probe_status(pwhy, sizeof(pwhy));
	if (watching && idle_collect(ch, HOLD_CHILDREN, &wic, hs->close_ms +
	    10000, &wrp) < 0)
		watching = 0;
	if (!watching && hs->close_ms == 0) {
		/* How many holders the relay has let go so far: a figure. */
		memset(&wic, 0, sizeof(wic));
		wic.op = IDLE_WATCH;
		if (children_do(ch, HOLD_CHILDREN, &wic, 10000, &wrp) == 0)
			printf("  holders the relay has closed by now: %lu of"
			    " %lu\n", (unsigned long)wrp.ok,
			    (unsigned long)(wrp.ok + wrp.failed));
	}
	printf("  fresh handshakes: %s; /derp/probe: %s\n", fwhy, pwhy);
	snprintf(name, sizeof(name), "%s: new clients complete their handshake"
	    " while %lu clients hold partial packets", hs->name,
	    (unsigned long)hrp.ok);
	check(frp.ok == FRESH_HS, name, fwhy);
	snprintf(name, sizeof(name), "%s: /derp/probe answers 200 on a new"
	    " connection meanwhile", hs->name);
	check(st == 200, name, pwhy);
	snprintf(name, sizeof(name), "%s: the established pair loses no packet"
	    " meanwhile", hs->name);
	check_pairs(name, &d);
	if (hs->close_ms > 0) {
		snprintf(why, sizeof(why), "%lu of %lu holders closed, the last"
		    " %.1f s after its bytes (allowed %.1f s)%s",
		    (unsigned long)wrp.ok, (unsigned long)hrp.ok,
		    wrp.max_ms / 1e3, hs->close_ms / 1e3, watching ? "" :
		    "; the holding children did not answer");
		printf("  %s\n", why);
		snprintf(name, sizeof(name), "%s: each client holding %lu bytes"
		    " of a packet is closed within %.0f s", hs->name,
		    (unsigned long)hs->send_bytes, hs->close_ms / 1e3);
		check(watching && hrp.ok > 0 && wrp.ok == hrp.ok && wrp.failed ==
		    0 && wrp.max_ms <= (uint32_t)hs->close_ms, name, why);
	}
out:
	idle_stop(ch, IDLE_CHILDREN);
	if (srv.pid > 0)
		sentinel_check(hs->name);
	close_all_pairs();
	stop_relay(hs->name);
	printf("%s: %.1f s\n", hs->name, secs_since(t));
}

static void
scenario_pinned(void)
{
	struct holdspec hs = { "pinned", PIN_MAX_CLIENTS, 0, 1, 0 };

	hs.holders = S->pin_holders;
	scenario_hold(&hs);
}

static void
scenario_pinned4k(void)
{
	struct holdspec hs = { "pinned4k", 0, 0, 1, 0 };

	hs.holders = S->wide_holders;
	scenario_hold(&hs);
}

static void
scenario_overhold(void)
{
	struct holdspec hs = { "overhold", PIN_MAX_CLIENTS, 0, OVERHOLD_BYTES,
	    OVERHOLD_CLOSE_MS };

	hs.holders = S->over_holders;
	scenario_hold(&hs);
}

/* ---- stalledinfo --------------------------------------------------------- */

static struct {
	struct pair owner;
	struct conn c[INFO_STREAMS];
	size_t sent[INFO_STREAMS];	/* ClientInfo bytes, header included */
	int64_t t_closed[INFO_STREAMS];
	int64_t t_start;
} si;

/* B.tick: every stream is kept at INFO_STEP_BYTES per INFO_STEP_MS since
 * the start, in records of INFO_RECORD_BYTES, one byte short of the declared
 * length at most; closes are noted. */
static void
info_tick(void)
{
	static uint8_t rec[INFO_RECORD_BYTES];
	int64_t now = now_ns();
	size_t want = FRAME_HDR_BYTES + (size_t)((now - si.t_start) / 1000000 *
	    INFO_STEP_BYTES / INFO_STEP_MS);
	int i;

	if (want > FRAME_HDR_BYTES + INFO_FRAME_LEN - 1)
		want = FRAME_HDR_BYTES + INFO_FRAME_LEN - 1;
	for (i = 0; i < INFO_STREAMS; i++) {
		struct conn *c = &si.c[i];
		if (c->dc == NULL)
			continue;
		if (c->dead) {
			if (si.t_closed[i] == 0)
				si.t_closed[i] = now;
			continue;
		}
		if (si.sent[i] == 0) {
			rec[0] = FT_CLIENT_INFO;
			put_be32(rec + 1, INFO_FRAME_LEN);
			if (conn_write(c, rec, FRAME_HDR_BYTES) == 0)
				si.sent[i] = FRAME_HDR_BYTES;
			memset(rec, 0x41, sizeof(rec));
		}
		while (si.sent[i] > 0 && (want - si.sent[i] >= sizeof(rec) ||
		    (want > si.sent[i] && want == FRAME_HDR_BYTES +
		    INFO_FRAME_LEN - 1))) {
			size_t n = want - si.sent[i];
			if (n > sizeof(rec))
				n = sizeof(rec);
			if (conn_write(c, rec, n) < 0)
				break;		/* the relay reads no more now */
			si.sent[i] += n;
		}
	}
}

static void
scenario_stalledinfo(void)
{
	struct idle_child ch[1];
	struct idle_cmd fic;
	struct idle_reply frp;
	struct result d;
	char why[300], fwhy[240];
	int64_t t = now_ns(), deadline;
	double first = 0, last = 0;
	int i, ready = 0, closed = 0, in_time = 0;
	size_t bytes = 0;

	printf("\n== stalledinfo: %d connections stream a %d-byte ClientInfo"
	    " (%d bytes every %d ms) and never finish it (-max-clients %d);"
	    " meanwhile a pair and %d fresh handshakes ==\n", INFO_STREAMS,
	    INFO_FRAME_LEN, INFO_STEP_BYTES, INFO_STEP_MS, INFO_MAX_CLIENTS,
	    FRESH_HS);
	memset(&d, 0, sizeof(d));
	memset(&si, 0, sizeof(si));
	si.owner.idx = -2;
	if (start_relay("stalledinfo", INFO_MAX_CLIENTS) < 0 ||
	    spawn_children(ch, 1) < 0)
		return;
	if (ensure_pairs(LEGIT_PAIRS) < 0) {
		check(0, "stalledinfo: connect", "the pair could not connect");
		goto out;
	}
	/* The streams: TLS, the upgrade, ServerKey; no ClientInfo yet. */
	B.quiet_hs = 1;
	for (i = 0; i < INFO_STREAMS; i++) {
		if (conn_begin(&si.c[i], &si.owner, 'S') < 0)
			break;
		si.c[i].withhold_info = 1;
	}
	deadline = now_ns() + (int64_t)IO_MS * 1000000;
	while (now_ns() < deadline) {
		for (i = ready = 0; i < INFO_STREAMS; i++)
			ready += si.c[i].dc != NULL && !si.c[i].dead &&
			    si.c[i].hs == HS_INFO;
		if (ready == INFO_STREAMS)
			break;
		loop_once(10);
	}
	if (ready < INFO_STREAMS) {
		snprintf(why, sizeof(why), "%d of %d reached ServerKey", ready,
		    INFO_STREAMS);
		check(0, "stalledinfo: connect", why);
		goto out;
	}
	si.t_start = now_ns();
	B.tick = info_tick;
	if (fresh_begin(ch, FRESH_HS, INFO_DEADLINE_MS / FRESH_HS,
	    INFO_DEADLINE_MS + IO_MS, 0, &fic) < 0 ||
	    pairs_phase_ms("pair while they stream", INFO_DEADLINE_MS, &d) < 0)
		goto out;
	/* The rest of the streams' time: every one closed, or INFO_CLOSE_MS
	 * after its ServerKey (and a round of ours). */
	deadline = si.t_start + (int64_t)(INFO_CLOSE_MS + 100) * 1000000;
	for (;;) {
		for (i = closed = 0; i < INFO_STREAMS; i++)
			closed += si.t_closed[i] != 0;
		if (closed == INFO_STREAMS || now_ns() > deadline)
			break;
		loop_once(10);
	}
	B.tick = NULL;
	(void)fresh_end(ch, &fic, &frp, fwhy, sizeof(fwhy));
	for (i = 0; i < INFO_STREAMS; i++) {
		double s;
		bytes += si.sent[i];
		if (si.t_closed[i] == 0)
			continue;
		s = (double)(si.t_closed[i] - si.c[i].t_mark) / 1e9;
		if (s <= INFO_CLOSE_MS / 1e3)
			in_time++;
		if (first == 0 || s < first)
			first = s;
		if (s > last)
			last = s;
	}
	printf("  streams: %lu ClientInfo bytes sent in all; %d of %d closed by"
	    " the relay, %.2f to %.2f s after their ServerKey\n",
	    (unsigned long)bytes, closed, INFO_STREAMS, first, last);
	printf("  fresh handshakes: %s\n", fwhy);
	check(frp.ok == FRESH_HS, "stalledinfo: new clients complete their"
	    " handshake while ClientInfos stream unfinished", fwhy);
	check_pairs("stalledinfo: the established pair loses no packet while"
	    " they stream", &d);
	snprintf(why, sizeof(why), "%d of %d closed within %.0f s (closes %.2f"
	    " to %.2f s after ServerKey)", in_time, INFO_STREAMS,
	    INFO_CLOSE_MS / 1e3, first, last);
	check(in_time == INFO_STREAMS, "stalledinfo: each unfinished ClientInfo"
	    " is closed within 11 s of its ServerKey", why);
out:
	B.tick = NULL;
	for (i = 0; i < INFO_STREAMS; i++)
		conn_close(&si.c[i]);
	B.quiet_hs = 0;
	idle_stop(ch, 1);
	if (srv.pid > 0)
		sentinel_check("stalledinfo");
	close_all_pairs();
	stop_relay("stalledinfo");
	printf("stalledinfo: %.1f s\n", secs_since(t));
}

/* ---- slowrecv ------------------------------------------------------------ */

/*
 * The receivers live in a child of their own, as blocking clients: every
 * SLOW_READ_MS each reads one frame (waiting at most SLOW_FRAME_MS for it),
 * as a slow client's loop would.  Their keys are made before the fork, so
 * the sender (here) knows them.  Packets carry the receiver's index and a
 * sequence number of its own: a gap is a packet the relay dropped.
 */
struct slow_report {
	uint32_t ready;			/* receivers registered */
	uint32_t packets, lost, frames;	/* all receivers */
	uint32_t closed;		/* receivers the relay closed */
	uint32_t fewest;		/* packets of the receiver with fewest */
	uint32_t max_gap_ms;		/* longest wait between two frames of
					 * one receiver (after its first) */
};

static struct {
	struct dclient *rx[SLOW_RECEIVERS];
	struct pair owner;		/* its a: the sender */
	uint64_t seq[SLOW_RECEIVERS];
	uint64_t sent;
	int next;
} sl;

static void
slow_child(int cmd, int rep, int run_ms)
{
	static uint8_t f[DC_MAX_FRAME];
	struct slow_report r;
	uint64_t next[SLOW_RECEIVERS], got[SLOW_RECEIVERS];
	int64_t last[SLOW_RECEIVERS], t_end, tick;
	int open[SLOW_RECEIVERS], i;
	char go;

	/* Our own bound, whatever happens; the parent's watchdog handler
	 * (kill the relay) is not for us. */
	signal(SIGALRM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	alarm((unsigned)(run_ms / 1000 + 60));
	memset(&r, 0, sizeof(r));
	for (i = 0; i < SLOW_RECEIVERS; i++) {
		open[i] = dc_connect(sl.rx[i], "127.0.0.1", srv.port, 1, NULL,
		    IO_MS) == 0 && dc_handshake(sl.rx[i], 0, NULL, IO_MS) == 0;
		r.ready += (uint32_t)open[i];
		next[i] = got[i] = 0;
		last[i] = 0;
	}
	if (write(rep, &r, sizeof(r)) != (ssize_t)sizeof(r) ||
	    read_full_fd(cmd, &go, 1, 60000) < 0)
		_exit(1);
	t_end = now_ns() + (int64_t)run_ms * 1000000;
	for (tick = now_ns(); now_ns() < t_end; tick += (int64_t)SLOW_READ_MS *
	    1000000) {
		for (i = 0; i < SLOW_RECEIVERS; i++) {
			uint8_t type;
			size_t len;
			int k;
			if (!open[i])
				continue;
			k = dc_recv_frame(sl.rx[i], &type, f, sizeof(f), &len,
			    SLOW_FRAME_MS);
			if (k == -2)
				continue;
			if (k != 1) {
				open[i] = 0;
				r.closed++;
				continue;
			}
			r.frames++;
			if (last[i] != 0 && (now_ns() - last[i]) / 1000000 >
			    r.max_gap_ms)
				r.max_gap_ms = (uint32_t)((now_ns() - last[i]) /
				    1000000);
			last[i] = now_ns();
			if (type != FT_RECV_PACKET || len < KEY_BYTES + 12 ||
			    get_be32(f + KEY_BYTES) != (uint32_t)i)
				continue;
			{
				uint64_t seq = get_be64(f + KEY_BYTES + 4);
				if (seq > next[i])
					r.lost += (uint32_t)(seq - next[i]);
				next[i] = seq + 1;
			}
			got[i]++;
			r.packets++;
		}
		while (now_ns() < tick + (int64_t)SLOW_READ_MS * 1000000)
			sleep_ms(1);
	}
	r.fewest = UINT32_MAX;
	for (i = 0; i < SLOW_RECEIVERS; i++)
		if (got[i] < r.fewest)
			r.fewest = (uint32_t)got[i];
	if (write(rep, &r, sizeof(r)) != (ssize_t)sizeof(r))
		_exit(1);
	_exit(0);
}

/* B.tick: the sender fills its output with packets for the receivers in
 * turn, as fast as its socket takes them. */
static void
slow_tick(void)
{
	uint8_t h[12];
	struct conn *c = &sl.owner.a;

	while (!c->dead) {
		int i = sl.next;
		put_be32(h, (uint32_t)i);
		put_be64(h + 4, sl.seq[i]);
		if (conn_frame(c, FT_SEND_PACKET, sl.rx[i]->pk, h, sizeof(h),
		    pattern, PAIR_PKT_BYTES - sizeof(h)) < 0)
			break;
		sl.seq[i]++;
		sl.sent++;
		sl.next = (i + 1) % SLOW_RECEIVERS;
	}
}

static void
scenario_slowrecv(void)
{
	struct idle_child ch[1];
	struct idle_cmd fic;
	struct idle_reply frp;
	struct slow_report r0, r;
	char why[300], fwhy[240];
	int64_t t = now_ns(), t1, deadline;
	int cmd[2] = { -1, -1 }, rep[2] = { -1, -1 }, i, fresh_done = 0;
	pid_t kid = -1;

	printf("\n== slowrecv: a sender floods %d registered receivers that"
	    " read one packet every %d ms (-max-clients %d), %.1f s; meanwhile"
	    " %d fresh handshakes ==\n", SLOW_RECEIVERS, SLOW_READ_MS,
	    SLOW_MAX_CLIENTS, S->slow_ms / 1e3, SLOW_FRESH);
	memset(&sl, 0, sizeof(sl));
	memset(&r, 0, sizeof(r));
	memset(&frp, 0, sizeof(frp));
	snprintf(fwhy, sizeof(fwhy), "not run");
	sl.owner.idx = -3;
	if (start_relay("slowrecv", SLOW_MAX_CLIENTS) < 0 ||
	    spawn_children(ch, 1) < 0)
		return;
	for (i = 0; i < SLOW_RECEIVERS; i++) {
		if ((sl.rx[i] = dc_new()) == NULL)
			goto out;
		dc_genkey(sl.rx[i]);
	}
	if (pipe(cmd) < 0 || pipe(rep) < 0)
		goto out;
	fflush(stdout);
	if ((kid = fork()) < 0)
		goto out;
	if (kid == 0) {
		close(cmd[1]);
		close(rep[0]);
		close(B.epfd);
		close(ch[0].cmd);	/* its EOF must reach the helper */
		close(ch[0].rep);
		slow_child(cmd[0], rep[1], S->slow_ms);
	}
	close(cmd[0]);
	close(rep[1]);
	cmd[0] = rep[1] = -1;
	if (read_full_fd(rep[0], &r0, sizeof(r0), 60000) < 0 ||
	    r0.ready != SLOW_RECEIVERS) {
		check(0, "slowrecv: connect", "the receivers could not connect");
		goto out;
	}
	if (conn_begin(&sl.owner.a, &sl.owner, 'T') < 0)
		goto out;
	deadline = now_ns() + (int64_t)IO_MS * 1000000;
	while (sl.owner.a.hs != HS_DONE && !sl.owner.a.dead &&
	    now_ns() < deadline)
		loop_once(10);
	if (sl.owner.a.hs != HS_DONE || sl.owner.a.dead) {
		check(0, "slowrecv: connect", "the sender could not connect");
		goto out;
	}
	/* Go: receivers, sender, fresh handshakes spread over the run. */
	t1 = now_ns();
	if (write(cmd[1], "g", 1) != 1 || fresh_begin(ch, SLOW_FRESH,
	    S->slow_ms / SLOW_FRESH, S->slow_ms + IO_MS, 0, &fic) < 0)
		goto out;
	B.tick = slow_tick;
	deadline = t1 + (int64_t)(S->slow_ms + 10000) * 1000000;
	while (now_ns() < deadline && server_alive() && (!fresh_done ||
	    now_ns() < t1 + (int64_t)S->slow_ms * 1000000)) {
		struct pollfd pf;
		/* While the socket takes all we give it, no event would wake
		 * the loop: go round at once. */
		loop_once(sl.owner.a.out_armed ? 5 : 0);
		pf.fd = ch[0].rep;
		pf.events = POLLIN;
		if (!fresh_done && poll(&pf, 1, 0) > 0) {
			(void)fresh_end(ch, &fic, &frp, fwhy, sizeof(fwhy));
			fresh_done = 1;
		}
	}
	B.tick = NULL;
	if (!fresh_done)
		(void)fresh_end(ch, &fic, &frp, fwhy, sizeof(fwhy));
	if (read_full_fd(rep[0], &r, sizeof(r), S->slow_ms + 30000) < 0) {
		check(0, "slowrecv: receivers report", "the receivers' child did"
		    " not answer");
		goto out;
	}
	printf("  sender: %llu packets in %.1f s; receivers: %lu packets (the"
	    " fewest %lu), %lu missing in what they read (the socket buffers"
	    " hold seconds of packets before any queue drops), %lu closed,"
	    " longest wait between two frames %lu ms\n",
	    (unsigned long long)sl.sent, secs_since(t1),
	    (unsigned long)r.packets, (unsigned long)r.fewest,
	    (unsigned long)r.lost, (unsigned long)r.closed,
	    (unsigned long)r.max_gap_ms);
	printf("  fresh handshakes: %s\n", fwhy);
	check(frp.ok == SLOW_FRESH, "slowrecv: new clients complete their"
	    " handshake while slow receivers' queues are full", fwhy);
	snprintf(why, sizeof(why), "%lu of %d closed; longest wait between two"
	    " frames %lu ms", (unsigned long)r.closed, SLOW_RECEIVERS,
	    (unsigned long)r.max_gap_ms);
	check(r.closed == 0, "slowrecv: slow receivers that keep reading stay"
	    " connected", why);
	snprintf(why, sizeof(why), "the receiver with fewest got %lu",
	    (unsigned long)r.fewest);
	check(r.fewest > 0, "slowrecv: every slow receiver gets packets", why);
	check(!sl.owner.a.dead && ping_answered(&sl.owner.a, IO_MS),
	    "slowrecv: the sender stays connected (Ping -> Pong)", NULL);
out:
	B.tick = NULL;
	if (cmd[1] >= 0)
		close(cmd[1]);
	if (rep[0] >= 0)
		close(rep[0]);
	if (kid > 0) {
		deadline = now_ns() + (int64_t)STOP_MS * 1000000;
		while (waitpid(kid, NULL, WNOHANG) != kid) {
			if (now_ns() > deadline) {
				kill(kid, SIGKILL);
				waitpid(kid, NULL, 0);
				break;
			}
			sleep_ms(10);
		}
	}
	for (i = 0; i < SLOW_RECEIVERS; i++)
		dc_free(sl.rx[i]);
	pair_close(&sl.owner);
	idle_stop(ch, 1);
	if (srv.pid > 0)
		sentinel_check("slowrecv");
	stop_relay("slowrecv");
	printf("slowrecv: %.1f s\n", secs_since(t));
}

/* ---- idleflood ----------------------------------------------------------- */

/* One non-blocking TCP connection to 127.0.0.1:port that will send nothing;
 * its descriptor or -1. */
static int
idle_socket(int port)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return -1;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 &&
	    errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * FLOOD_RATE idle connections per second from 127.0.0.1 to the TLS port (or
 * the port-80 listener); after FLOOD_LEAD_MS, FRESH_HS handshakes on the TLS
 * port from src (0: 127.0.0.1) while the flood goes on.
 */
static void
idleflood_part(const char *name, int port80, uint32_t src, const char *what)
{
	static int fds[FLOOD_HOLD_MAX];
	struct idle_child ch[1];
	struct idle_cmd fic;
	struct idle_reply frp;
	char why[300], cname[200];
	int64_t t = now_ns(), t0, now, bound;
	long opened = 0, failed = 0, held = 0, first = 0, closed = 0;
	int port, sent = 0, done = 0, i;

	memset(&frp, 0, sizeof(frp));
	snprintf(why, sizeof(why), "not run");
	srv_http_port = dc_free_port("127.0.0.1", SOCK_STREAM);
	if (start_relay(name, 0) < 0 || spawn_children(ch, 1) < 0) {
		srv_http_port = 0;
		return;
	}
	port = port80 ? srv_http_port : srv.port;
	t0 = now_ns();
	bound = t0 + (int64_t)(FLOOD_LEAD_MS + FLOOD_FRESH_MS + 10000) * 1000000;
	while ((now = now_ns()) < bound && !done) {
		struct pollfd pf;
		while (opened < (now - t0) / 1000000 * FLOOD_RATE / 1000) {
			int fd = idle_socket(port);
			opened++;
			if (fd < 0) {
				failed++;
				continue;
			}
			if (held == FLOOD_HOLD_MAX) {
				close(fds[first]);
				fds[first] = fd;
				first = (first + 1) % FLOOD_HOLD_MAX;
			} else {
				fds[(first + held++) % FLOOD_HOLD_MAX] = fd;
			}
		}
		if (!sent && now - t0 >= (int64_t)FLOOD_LEAD_MS * 1000000) {
			if (fresh_begin(ch, FRESH_HS, FLOOD_GAP_MS, FLOOD_FRESH_MS,
			    src, &fic) < 0)
				break;
			sent = 1;
		}
		pf.fd = ch[0].rep;
		pf.events = POLLIN;
		if (poll(&pf, 1, 2) > 0 && sent) {
			(void)fresh_end(ch, &fic, &frp, why, sizeof(why));
			done = 1;
		}
	}
	if (sent && !done)
		(void)fresh_end(ch, &fic, &frp, why, sizeof(why));
	/* The flood's fate: connections the relay closed (refused or
	 * evicted), the rest still open and waiting. */
	for (i = 0; i < held; i++) {
		uint8_t b;
		ssize_t r = recv(fds[(first + i) % FLOOD_HOLD_MAX], &b, 1,
		    MSG_DONTWAIT);
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			closed++;
		close(fds[(first + i) % FLOOD_HOLD_MAX]);
	}
	printf("  flood: %ld idle connections to port %d in %.1f s (%ld failed"
	    " to start); of the last %ld, %ld closed by the relay\n", opened,
	    port, (double)(now_ns() - t0) / 1e9, failed, held, closed);
	printf("  fresh handshakes %s: %s\n", what, why);
	snprintf(cname, sizeof(cname), "%s: at least %d of %d new clients %s get"
	    " in", name, FLOOD_FRESH_MIN, FRESH_HS, what);
	check(frp.ok >= FLOOD_FRESH_MIN, cname, why);
	idle_stop(ch, 1);
	if (srv.pid > 0)
		sentinel_check(name);
	stop_relay(name);
	srv_http_port = 0;
	printf("%s: %.1f s\n", name, secs_since(t));
}

static void
scenario_idleflood(void)
{
	printf("\n== idleflood: %d idle connections per second from 127.0.0.1"
	    " (-max-handshakes 256), after %d ms %d handshakes ==\n", FLOOD_RATE,
	    FLOOD_LEAD_MS, FRESH_HS);
	idleflood_part("idleflood", 0, SECOND_ADDR,
	    "from 127.0.0.2 while 127.0.0.1 floods the TLS port");
	idleflood_part("idleflood80", 1, 0,
	    "on the TLS port while the same address floods port 80");
}

/* ---- keepalive ----------------------------------------------------------- */

/*
 * derp.c sends each registered client a KeepAlive KEEPALIVE_MS after it
 * registered plus a jitter in [0, KEEPALIVE_JITTER_MS) drawn per connection,
 * then every KEEPALIVE_MS, from its timers sweep (every 250 ms), whatever
 * else the connection does; derper's sendLoop ticker does the same (60 s
 * plus up to 5 s).  We time from our read of the ServerInfo, which the
 * relay writes just after it starts the clock, and that clock is its loop
 * round's time, taken before the round's work: by our watch the KeepAlive
 * may come before 60 s by a round's handshake work and a loopback write
 * (milliseconds; KA_EARLY_MS allows for a busy machine).  Late: the sweep's
 * 250 ms, scheduling on two busy cores and our poll round make KA_LATE_MS
 * past the 65 s.
 */
#define KEEPALIVE_MS 60000
#define KEEPALIVE_JITTER_MS 5000
#define KA_EARLY_MS 200
#define KA_LATE_MS 1500
/* Eight clients: were the jitter lost (every KeepAlive at 60 s plus the
 * sweep's phase, within 0.25 s), their first KeepAlives would lie within
 * KA_SPREAD_MIN_MS; eight draws of [0, 5 s) all within 0.5 s happen once in
 * 1.4 million runs. */
#define KA_CLIENTS 8
#define KA_SPREAD_MIN_MS 500
#define KA_PINGERS 4		/* the last four Ping every KA_PING_EVERY_MS */
#define KA_PING_EVERY_MS 5000
/* After the last first KeepAlive we watch this long: a relay that sends one
 * every sweep once the time has come (its timer never moved on) shows it. */
#define KA_AFTER_MS 1000
#define KA_ROUND_MS 100		/* poll round */
#define KA_ROUNDS_MAX 200000	/* count bound; the time bound comes first */
#define KA_FRAMES_PER_ROUND 64	/* per client */
#define KA_WATCHDOG_S 150	/* its child process (full run), hard */

static struct ka_client {
	struct dclient *dc;
	int64_t t_info;			/* our read of its ServerInfo */
	int64_t t_ka;			/* its first KeepAlive; 0 before */
	int nka;			/* KeepAlives */
	int nother;			/* frames not asked for, or malformed */
	int other_type;			/* the first of them */
	int closed;			/* EOF, reset or error */
	uint8_t ping[PING_BYTES];	/* the outstanding Ping's payload ... */
	int64_t t_ping;			/* ... sent then; 0 none */
	int64_t t_next_ping;
	int pings, pongs, late;		/* sent; answered within IO_MS; later */
	int64_t max_rtt_ns;
} ka[KA_CLIENTS];
static uint8_t ka_frame[DC_MAX_FRAME];

/* Every frame k has received so far (none waited for), counted. */
static void
ka_read(struct ka_client *k)
{
	int n;

	for (n = 0; n < KA_FRAMES_PER_ROUND && !k->closed; n++) {
		uint8_t type;
		size_t len;
		int64_t now;
		int r = dc_recv_frame(k->dc, &type, ka_frame, sizeof(ka_frame),
		    &len, 0);

		if (r == -2)
			return;
		if (r != 1) {
			k->closed = 1;
			return;
		}
		now = now_ns();
		if (type == FT_KEEP_ALIVE && len == 0) {
			if (k->nka++ == 0)
				k->t_ka = now;
		} else if (type == FT_PONG && len == PING_BYTES &&
		    k->t_ping != 0 && memcmp(ka_frame, k->ping,
		    PING_BYTES) == 0) {
			if (now - k->t_ping > (int64_t)IO_MS * 1000000)
				k->late++;
			else
				k->pongs++;
			if (now - k->t_ping > k->max_rtt_ns)
				k->max_rtt_ns = now - k->t_ping;
			k->t_ping = 0;
		} else if (k->nother++ == 0)
			k->other_type = type;
	}
}

static void
ka_ping(struct ka_client *k)
{
	put_be64(k->ping, (uint64_t)(k - ka) << 32 | (uint32_t)k->pings);
	if (dc_send_frame(k->dc, FT_PING, k->ping, PING_BYTES) < 0) {
		k->closed = 1;
		return;
	}
	k->pings++;
	k->t_ping = now_ns();
}

/* One round: wait up to KA_ROUND_MS for input, read every client. */
static void
ka_round(void)
{
	struct pollfd pf[KA_CLIENTS];
	int i;

	for (i = 0; i < KA_CLIENTS; i++) {
		pf[i].fd = ka[i].closed ? -1 : ka[i].dc->fd;
		pf[i].events = POLLIN;
		pf[i].revents = 0;
	}
	(void)poll(pf, KA_CLIENTS, KA_ROUND_MS);
	/* Every client, ready or not: a frame may wait in its TLS engine. */
	for (i = 0; i < KA_CLIENTS; i++)
		ka_read(&ka[i]);
}

/* Rounds until no open client has a Ping outstanding, or timeout_ms. */
static void
ka_wait_pongs(int timeout_ms)
{
	int64_t deadline = now_ns() + (int64_t)timeout_ms * 1000000;
	int i, n, waiting = 1;

	for (n = 0; waiting && n < KA_ROUNDS_MAX && now_ns() < deadline; n++) {
		ka_round();
		for (i = 0, waiting = 0; i < KA_CLIENTS; i++)
			waiting += !ka[i].closed && ka[i].t_ping != 0;
	}
}

static void
scenario_keepalive(void)
{
	char why[400], list[200];
	int64_t t = now_ns(), now, t_end, t_last = 0;
	int64_t lo = (int64_t)(KEEPALIVE_MS - KA_EARLY_MS) * 1000000;
	int64_t hi = (int64_t)(KEEPALIVE_MS + KEEPALIVE_JITTER_MS +
	    KA_LATE_MS) * 1000000;
	double off, off_min = 1e9, off_max = 0, spread;
	int i, n, got, opened = 0, in_window = 0, one_each = 0, open_end = 0;
	int pings = 0, pongs = 0, late = 0, pongs0[KA_CLIENTS];
	size_t used = 0;
	int64_t max_rtt = 0;

	printf("\n== keepalive: %d registered clients (%d silent, %d sending a"
	    " Ping every %d s) wait for their first KeepAlive ==\n", KA_CLIENTS,
	    KA_CLIENTS - KA_PINGERS, KA_PINGERS, KA_PING_EVERY_MS / 1000);
	memset(ka, 0, sizeof(ka));
	/* derp.c's test hook for a shorter ticker: this is the real one. */
	(void)unsetenv("DERP_TEST_KEEPALIVE_MS");
	if (start_relay("keepalive", 0) < 0)
		return;
	for (i = 0; i < KA_CLIENTS; i++) {
		ka[i].dc = g_at(3);
		ka[i].t_info = now_ns();
		ka[i].closed = ka[i].dc == NULL;
		opened += ka[i].dc != NULL;
		/* Pings spread over the period, the first after 1 s. */
		ka[i].t_next_ping = ka[i].t_info + (int64_t)(1000 + i *
		    KA_PING_EVERY_MS / KA_CLIENTS) * 1000000;
	}
	snprintf(why, sizeof(why), "%d of %d", opened, KA_CLIENTS);
	check(opened == KA_CLIENTS, "keepalive: clients registered", why);
	if (opened < KA_CLIENTS)
		goto out;
	/* Until every client's window has passed, or every client has its
	 * KeepAlive and KA_AFTER_MS more have gone by. */
	t_end = ka[KA_CLIENTS - 1].t_info + hi;
	for (n = 0; n < KA_ROUNDS_MAX && (now = now_ns()) < t_end; n++) {
		ka_round();
		now = now_ns();
		for (i = 0, got = 0; i < KA_CLIENTS; i++) {
			struct ka_client *k = &ka[i];
			if (k->nka > 0)
				got++;
			if (k->t_ka > t_last)
				t_last = k->t_ka;
			if (i >= KA_CLIENTS - KA_PINGERS && !k->closed &&
			    k->t_ping == 0 && now >= k->t_next_ping) {
				ka_ping(k);
				k->t_next_ping = now +
				    (int64_t)KA_PING_EVERY_MS * 1000000;
			}
		}
		if (got == KA_CLIENTS && now - t_last >=
		    (int64_t)KA_AFTER_MS * 1000000)
			break;
	}
	/* The Pings of the wait, then one more from every client. */
	ka_wait_pongs(IO_MS);
	for (i = 0; i < KA_CLIENTS; i++) {
		pings += ka[i].pings;
		pongs += ka[i].pongs;
		late += ka[i].late + (ka[i].t_ping != 0);
		if (ka[i].max_rtt_ns > max_rtt)
			max_rtt = ka[i].max_rtt_ns;
		pongs0[i] = ka[i].pongs;
		if (!ka[i].closed && ka[i].t_ping == 0)
			ka_ping(&ka[i]);
	}
	ka_wait_pongs(IO_MS);
	for (i = 0; i < KA_CLIENTS; i++) {
		struct ka_client *k = &ka[i];
		open_end += !k->closed && k->t_ping == 0 &&
		    k->pongs > pongs0[i];
		one_each += k->nka == 1 && k->nother == 0;
		if (k->t_ka == 0) {
			used += (size_t)snprintf(list + used, sizeof(list) -
			    used, " none");
		} else {
			off = (double)(k->t_ka - k->t_info) / 1e9;
			if (off < off_min)
				off_min = off;
			if (off > off_max)
				off_max = off;
			in_window += k->t_ka - k->t_info >= lo &&
			    k->t_ka - k->t_info <= hi;
			used += (size_t)snprintf(list + used, sizeof(list) -
			    used, " %.2f", off);
		}
		if (used >= sizeof(list))
			used = sizeof(list) - 1;
	}
	spread = off_max > off_min ? off_max - off_min : 0;
	printf("  first KeepAlive after ServerInfo, s:%s (spread %.2f s); %d"
	    " Pings, %d Pongs within %d ms, longest %.1f ms\n", list, spread,
	    pings, pongs, IO_MS, max_rtt / 1e6);
	snprintf(why, sizeof(why), "%d of %d in %.1f-%.1f s:%s", in_window,
	    KA_CLIENTS, lo / 1e9, hi / 1e9, list);
	check(in_window == KA_CLIENTS, "keepalive: each client's first"
	    " KeepAlive 60 s + [0, 5 s) after its ServerInfo", why);
	for (i = 0, used = 0, why[0] = '\0'; i < KA_CLIENTS; i++) {
		struct ka_client *k = &ka[i];
		char other[64] = "";

		if ((k->nka == 1 && k->nother == 0) || used >= sizeof(why))
			continue;
		if (k->nother > 0)
			snprintf(other, sizeof(other), ", %d other frames (the"
			    " first of type 0x%02x)", k->nother, k->other_type);
		used += (size_t)snprintf(why + used, sizeof(why) - used,
		    "%sclient %d: %d KeepAlives%s%s", used > 0 ? "; " : "", i,
		    k->nka, other, k->closed ? ", closed" : "");
	}
	check(one_each == KA_CLIENTS, "keepalive: one KeepAlive each, and no"
	    " frame but the Pongs asked for", why);
	snprintf(why, sizeof(why), "first KeepAlives within %.2f s of each"
	    " other, after their ServerInfo (%d of %d in the window)", spread,
	    in_window, KA_CLIENTS);
	check(in_window == KA_CLIENTS && spread >= KA_SPREAD_MIN_MS / 1e3,
	    "keepalive: first KeepAlives spread (a jitter per connection)",
	    why);
	snprintf(why, sizeof(why), "%d Pings: %d Pongs within %d ms, %d late"
	    " or missing", pings, pongs, IO_MS, late);
	check(pings > 0 && pongs == pings && late == 0, "keepalive: Pings"
	    " answered while waiting", why);
	snprintf(why, sizeof(why), "%d of %d answered", open_end, KA_CLIENTS);
	check(open_end == KA_CLIENTS, "keepalive: every connection still open"
	    " at the end (Ping -> Pong)", why);
out:
	for (i = 0; i < KA_CLIENTS; i++)
		dc_free(ka[i].dc);
	stop_relay("keepalive");
	printf("keepalive: %.1f s\n", secs_since(t));
}

/*
 * The full run's keepalive scenario runs in a child process started before
 * the others, since it spends 67 s waiting.  The child has its own scratch
 * directory (a relay starting at the same moment as the parent's must not
 * write the same key file and certificate), its own watchdog, and writes its
 * lines to a file that keepalive_collect prints at the end, adding its
 * counts, which come back through a pipe.
 */
static struct {
	pid_t pid;
	int fd;				/* the counts arrive here */
	char out[sizeof(scratch) + 32];	/* its lines */
	int64_t t_start;
} kab = { -1, -1, "", 0 };

static void
keepalive_spawn(void)
{
	int p[2], counts[2];

	snprintf(kab.out, sizeof(kab.out), "%s/keepalive.out", scratch);
	if (pipe(p) < 0) {
		check(0, "keepalive: child process started", strerror(errno));
		return;
	}
	/* Not for the relays and clients forked later. */
	(void)fcntl(p[0], F_SETFD, FD_CLOEXEC);
	(void)fcntl(p[1], F_SETFD, FD_CLOEXEC);
	(void)fcntl(p[0], F_SETFL, O_NONBLOCK);
	fflush(stdout);
	kab.t_start = now_ns();
	if ((kab.pid = fork()) < 0) {
		check(0, "keepalive: child process started", strerror(errno));
		close(p[0]);
		close(p[1]);
		return;
	}
	if (kab.pid == 0) {
		close(p[0]);
		alarm(KA_WATCHDOG_S);
		if (freopen(kab.out, "w", stdout) == NULL)
			_exit(2);
		setvbuf(stdout, NULL, _IOLBF, 0);
		npass = nfail = 0;
		if (strlen(scratch) + sizeof("/keepalive") > sizeof(scratch))
			_exit(2);
		strcat(scratch, "/keepalive");
		if (mkdir(scratch, 0700) < 0)
			_exit(2);
		scenario_keepalive();
		counts[0] = npass;
		counts[1] = nfail;
		if (nfail == 0)
			rm_tree(scratch);
		fflush(stdout);
		_exit(write(p[1], counts, sizeof(counts)) == sizeof(counts) ?
		    0 : 2);
	}
	close(p[1]);
	kab.fd = p[0];
}

static void
keepalive_collect(void)
{
	int64_t deadline = kab.t_start + (int64_t)(KA_WATCHDOG_S + 10) *
	    1000000000;
	int counts[2] = { 0, 0 }, st = 0, ended = 0, got;
	char line[600], why[120];
	FILE *f;

	if (kab.pid <= 0)
		return;
	/* Usually it ended minutes ago: the deadline only bounds a wait. */
	for (;;) {
		if (waitpid(kab.pid, &st, WNOHANG) == kab.pid) {
			ended = 1;
			break;
		}
		if (now_ns() >= deadline)
			break;
		sleep_ms(100);
	}
	if (!ended) {
		/* SIGTERM first: its handler (on_fatal_signal) kills its
		 * relay, which SIGKILL would leave running. */
		kill(kab.pid, SIGTERM);
		deadline = now_ns() + (int64_t)STOP_MS * 1000000;
		while (waitpid(kab.pid, &st, WNOHANG) != kab.pid) {
			if (now_ns() >= deadline) {
				kill(kab.pid, SIGKILL);
				(void)waitpid(kab.pid, &st, 0);
				break;
			}
			sleep_ms(20);
		}
	}
	printf("\n(keepalive ran in a child process alongside the scenarios"
	    " above)");
	if ((f = fopen(kab.out, "r")) != NULL) {
		while (fgets(line, sizeof(line), f) != NULL)
			fputs(line, stdout);
		fclose(f);
	}
	got = read(kab.fd, counts, sizeof(counts)) == (ssize_t)sizeof(counts);
	close(kab.fd);
	npass += counts[0];
	nfail += counts[1];
	snprintf(why, sizeof(why), "%s, exit status %d%s", ended ? "ended" :
	    "killed at its time bound", WIFEXITED(st) ? WEXITSTATUS(st) : -1,
	    got ? "" : ", no counts reported");
	check(ended && WIFEXITED(st) && WEXITSTATUS(st) == 0 && got,
	    "keepalive: its process ended and reported", why);
}

/* ---- main ---------------------------------------------------------------- */

static void
usage(void)
{
	fprintf(stderr, "usage: soak [--short | --tiny] [--only idle|cycles|"
	    "nonreader|hsflood|storm|garbage|pinned|pinned4k|overhold|stalledinfo|"
	    "slowrecv|idleflood|keepalive] [DERP_BINARY]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const char *const names[] = { "idle", "cycles", "nonreader",
	    "hsflood", "storm", "garbage", "pinned", "pinned4k", "overhold",
	    "stalledinfo", "slowrecv", "idleflood", "keepalive" };
	static void (*const run[])(void) = { scenario_idle, scenario_cycles,
	    scenario_nonreader, scenario_hsflood, scenario_storm,
	    scenario_garbage,
	    scenario_pinned, scenario_pinned4k, scenario_overhold,
	    scenario_stalledinfo, scenario_slowrecv, scenario_idleflood,
	    scenario_keepalive };
	const int nscen = (int)(sizeof(names) / sizeof(names[0]));
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
	for (i = 0; i < nscen && only != NULL; i++)
		if (strcmp(only, names[i]) == 0)
			break;
	if (i == nscen)
		usage();
	/* keepalive: by name alone, or in the full run beside the others. */
	if (only == NULL && S == &full)
		keepalive_spawn();
	for (i = 0; i < nscen; i++)
		if (only != NULL ? strcmp(only, names[i]) == 0 :
		    run[i] != scenario_keepalive)
			run[i]();
	keepalive_collect();
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
	printf("%d passed, %d failed, 0 skipped\n", npass, nfail);
	return nfail == 0 ? 0 : 1;
}
