/*
 * bench.c -- `make bench`: the relay's load generator (issue 3).
 *
 * Usage: bench [--quick | --smoke | --mesh | --handshakes |
 *        --one tls|plain PAIRS SIZE]
 *        [DERP_BINARY]
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
 *   mesh       two relays meshed (-mesh-with, pinned certificates): senders
 *              on node A, receivers on node B, every packet forwarded A -> B
 *              as ForwardPacket; against the same traffic with both ends on
 *              A.  CPU per delivered packet of A + B against A's alone, at
 *              the same offered rates, and the ratio; delivered/sent.
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
 * --mesh    the mesh scenario alone (1, 10 and 100 pairs; the full run has 10
 *           and 100, --quick 10)
 * --handshakes  the handshake scenario alone (floor, cycles, 10,000 clients
 *           connecting beside 100 pairs, reconnect storms; --quick: smaller)
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
 * The engine (the relay process, connections, packets, phases, idle clients
 * in children, checks) is test/loadgen.c, shared with test/soak.c.
 * Sections here: scenarios; crypto ceiling; memory; mesh; smoke; main.
 */
#include "loadgen.h"
#include "../p256.h"


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


#define BUDGET_MS 280000		/* soft: no scenario starts that would end later */
#define WATCHDOG_S 295			/* hard: kill everything */

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

/* ---- memory (idle clients: loadgen.c) ----------------------------------- */

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
	idle_stop(ch, IDLE_CHILDREN);
	server_stop();
	return rc;
}

/* ---- handshakes and reconnect storms (issue 15) -------------------------- */

/*
 * What a full handshake costs the relay and what a crowd of them does to
 * everyone else.  All TLS, with the relay's self-signed ECDSA P-256
 * certificate, clients in IDLE_CHILDREN children (their crypto uses both
 * cores, as the relay's does):
 *   floor     the handshake's cryptography measured here, in this process,
 *             with the code the relay uses: X25519 ECDHE (key and shared
 *             secret), the ECDSA P-256 signature over ServerKeyExchange,
 *             the X25519 of the ClientInfo box.
 *   cycles    connect / TLS / ClientInfo / ServerInfo / close, fresh keys:
 *             relay CPU per handshake against the floor.
 *   connect   IDLE_LARGE clients (each from its own 127/8 address) connect
 *             while 100 pairs run windowed: how long until all are in, and
 *             the pairs' rate meanwhile against their rate alone.
 *   storm     STORM_CLIENTS connected clients drop and reconnect at once
 *             (each from its own address, then all from one, as behind a
 *             NAT): until all are back, relay CPU, when each client was
 *             back, and how often the relay turned one away first.
 */
#define STORM_CLIENTS 5000
#define STORM_MS 60000
#define CYCLES_EACH 500

static double
floor_us(void (*fn)(void), int n)
{
	int64_t t = now_ns();
	int i;

	for (i = 0; i < n; i++)
		fn();
	return (double)(now_ns() - t) / 1e3 / n;
}

static uint8_t floor_sk[32] = { 0x70, 1, 2, 3 }, floor_pt[32] = { 9 };

static void
floor_x25519(void)
{
	uint8_t out[32];

	nacl_x25519_base(out, floor_sk);
	floor_sk[1] ^= out[0];
}

static void
floor_sign(br_ecdsa_sign sign)
{
	static const uint8_t d[32] = { 0x11, 0x22, 0x33, 0x44, 0x55, 7 };
	br_ec_private_key sk = { BR_EC_secp256r1, (unsigned char *)d, 32 };
	uint8_t sig[80];

	if (sign(br_ec_get_default(), &br_sha256_vtable, floor_pt, &sk,
	    sig) == 0)
		anomaly("floor: ECDSA signature failed");
	floor_pt[0]++;
}

static void
floor_ecdsa(void)
{
	floor_sign(p256_ecdsa_sign_asn1);	/* the relay's signer */
}

static void
floor_ecdsa_bearssl(void)
{
	floor_sign(br_ecdsa_i31_sign_asn1);
}

/* 100 pairs windowed for about 1 s: delivered packets/s, or -1; the
 * generator's (this process's) share of a core in *gen. */
static double
pairs_rate(const struct timing *tm, double *gen)
{
	struct spec sp;
	struct result r;

	memset(&sp, 0, sizeof(sp));
	memset(&r, 0, sizeof(r));
	sp.mode = M_WINDOW;
	sp.size = 1200;
	sp.window = window_for(100, 1200);
	sp.warm_ms = tm->warm_ms / 2;
	sp.measure_ms = 1000;
	if (run_phase(&sp, &r) != 0 || r.errors > 0)
		return -1;
	*gen = r.bench_util;
	return r.pps;
}

static void
print_storm(const char *what, const struct storm_result *sr, long n)
{
	const struct idle_reply *s = &sr->storm;

	printf("storm, %s: %ld clients dropped at once: %lu back in %.2f s"
	    " (%lu not), relay CPU %.2f s (%.2f ms per client), the clients'"
	    " %.2f s; back after"
	    " p50 %.2f s, p99 %.2f s, last %.2f s; turned away %lu times,"
	    " at most %lu times for one client\n", what, n,
	    (unsigned long)s->ok, sr->secs, (unsigned long)s->failed,
	    (double)sr->relay_cpu_ns / 1e9, s->ok > 0 ?
	    (double)sr->relay_cpu_ns / 1e6 / s->ok : 0,
	    (double)sr->clients_cpu_ns / 1e9, s->p50_ms / 1e3,
	    s->p99_ms / 1e3, s->max_ms / 1e3, (unsigned long)s->retries,
	    (unsigned long)s->max_retries);
	if (s->failed > 0)
		anomaly("storm (%s): %lu of %ld clients not back in %d s (%s)",
		    what, (unsigned long)s->failed, n, STORM_MS / 1000, s->why);
}

static int
run_handshakes(int quick, const struct timing *tm)
{
	struct idle_child ch[IDLE_CHILDREN];
	struct idle_cmd ic;
	struct idle_reply rp;
	struct storm_result sr;
	double x, e, alone, during_min = -1, during_sum = 0;
	double gen_alone = 0, gen_sum = 0, gen;
	int64_t t, c0;
	long n_during = 0;
	int i, rc = 0, nstorm = quick ? STORM_CLIENTS / 5 : STORM_CLIENTS;

	printf("\n== handshakes (TLS 1.2, ECDSA P-256 certificate, X25519;"
	    " clients in %d child processes) ==\n", IDLE_CHILDREN);
	(void)p256_init();
	x = floor_us(floor_x25519, 300);
	e = floor_us(floor_ecdsa, 300);
	printf("floor: X25519 %.1f us, ECDSA P-256 sign %.1f us (BearSSL's m31"
	    " code: %.1f us); a handshake's cryptography (3 X25519 + 1"
	    " signature) %.0f us\n", x, e, floor_us(floor_ecdsa_bearssl, 100),
	    3 * x + e);
	if (!time_left_for(quick ? 20000 : 60000)) {
		printf("(skipped: time budget)\n");
		return 0;
	}
	phase_name = "handshakes";
	B.tls = 1;
	if (server_start(1, IDLE_MAX_CLIENTS) < 0)
		return -1;
	for (i = 0; i < IDLE_CHILDREN; i++)
		if (idle_spawn(ch, i) < 0) {
			perror("bench: idle child");
			server_stop();
			return -1;
		}
	/* Cycles: relay CPU per full handshake, fresh keys each. */
	memset(&ic, 0, sizeof(ic));
	ic.op = IDLE_CYCLE;
	ic.n = quick ? CYCLES_EACH / 5 : CYCLES_EACH;
	t = now_ns();
	c0 = proc_cpu_ns(srv.pid);
	if (idle_send(ch, IDLE_CHILDREN, &ic) < 0 ||
	    idle_collect(ch, IDLE_CHILDREN, &ic, HS_TOTAL_MS + 10000, &rp) < 0) {
		rc = -1;
		goto out;
	}
	if (rp.ok > 0)
		printf("cycles: %lu handshakes (%lu failed) in %.2f s = %.0f/s,"
		    " relay CPU %.0f us each = %.2f x the floor\n",
		    (unsigned long)rp.ok, (unsigned long)rp.failed,
		    (double)(now_ns() - t) / 1e9, rp.ok / ((double)(now_ns() -
		    t) / 1e9), (double)(proc_cpu_ns(srv.pid) - c0) / 1e3 /
		    rp.ok, (double)(proc_cpu_ns(srv.pid) - c0) / 1e3 / rp.ok /
		    (3 * x + e));
	/* Connect: the large idle set joins while 100 pairs run. */
	if (!quick && ensure_pairs(100) == 0 &&
	    (alone = pairs_rate(tm, &gen_alone)) > 0) {
		uint32_t each = IDLE_LARGE / IDLE_CHILDREN;

		memset(&ic, 0, sizeof(ic));
		ic.op = IDLE_OPEN;
		ic.n = each;
		ic.src_spread = 1;
		t = now_ns();
		c0 = proc_cpu_ns(srv.pid);
		for (i = 0; i < IDLE_CHILDREN; i++) {
			ic.src_ip4 = (uint32_t)(i + 1) << 16;
			if (write(ch[i].cmd, &ic, sizeof(ic)) != sizeof(ic))
				rc = -1;
		}
		while (rc == 0 && now_ns() - t < (int64_t)HS_TOTAL_MS * 1000000) {
			struct pollfd pf[IDLE_CHILDREN];
			double r;
			int k, ready = 0;

			for (k = 0; k < IDLE_CHILDREN; k++) {
				pf[k].fd = ch[k].rep;
				pf[k].events = POLLIN;
			}
			if (poll(pf, IDLE_CHILDREN, 0) > 0)
				for (k = 0; k < IDLE_CHILDREN; k++)
					ready += (pf[k].revents & POLLIN) != 0;
			if (ready == IDLE_CHILDREN)
				break;
			if ((r = pairs_rate(tm, &gen)) < 0)
				break;
			gen_sum += gen;
			during_sum += r;
			n_during++;
			if (during_min < 0 || r < during_min)
				during_min = r;
		}
		if (idle_collect(ch, IDLE_CHILDREN, &ic, HS_TOTAL_MS, &rp) < 0) {
			rc = -1;
			goto out;
		}
		printf("connect: %lu clients (%lu failed) connected in %.1f s"
		    " while 100 pairs ran (relay CPU %.1f s); the pairs: %.0f"
		    " pkt/s alone, during the connect mean %.0f (%.2f), worst"
		    " second %.0f (%.2f); their generator (this process) had"
		    " %.0f%% of a core alone, %.0f%% during\n",
		    (unsigned long)rp.ok,
		    (unsigned long)rp.failed, (double)(now_ns() - t) / 1e9,
		    (double)(proc_cpu_ns(srv.pid) - c0) / 1e9, alone,
		    n_during > 0 ? during_sum / n_during : 0, n_during > 0 ?
		    during_sum / n_during / alone : 0, during_min,
		    during_min / alone, gen_alone * 100, n_during > 0 ?
		    gen_sum / n_during * 100 : 0);
		close_all_pairs();
	}
	idle_stop(ch, IDLE_CHILDREN);
	/* Storms, with fresh children (the connect set is gone). */
	for (i = 0; rc == 0 && i < 2 && server_alive(); i++) {
		int k;

		if (!time_left_for(quick ? 10000 : 30000)) {
			printf("(storm skipped: time budget)\n");
			break;
		}
		for (k = 0; k < IDLE_CHILDREN; k++)
			if (idle_spawn(ch, k) < 0) {
				rc = -1;
				break;
			}
		if (rc == 0 && storm_open(ch, IDLE_CHILDREN, (uint32_t)(nstorm /
		    IDLE_CHILDREN), i == 0, &sr) == 0 && storm_begin(ch,
		    IDLE_CHILDREN, i == 0, STORM_MS, &sr) == 0 &&
		    storm_end(ch, IDLE_CHILDREN, &sr) == 0)
			print_storm(i == 0 ? "one address each" :
			    "all from one address", &sr, nstorm);
		else
			rc = -1;
		idle_stop(ch, IDLE_CHILDREN);
	}
	server_stop();
	return rc;
out:
	idle_stop(ch, IDLE_CHILDREN);
	server_stop();
	return rc;
}

/* ---- mesh: CPU per forwarded packet, two nodes against one --------------- */

/*
 * Two relays meshed (derp-protocol.md 15): node A (srv) and node B
 * (srv_peer), each with its own server key and self-signed IP certificate,
 * started with one mesh key and one -mesh-with list naming both with their
 * sha256-raw: pins (each skips its own entry).  Senders on A, receivers on
 * B: every packet is read from a client and sealed onto the mesh link by A,
 * then read from the link and sealed to the client by B (ForwardPacket).
 * Against it, the same traffic with both clients of every pair on A.
 *
 * Each load runs local then meshed, back to back (fresh connections at each
 * switch), so a change in the machine's other load hits both alike:
 *   windowed  as fast as possible, lossless: both with the same window, one
 *             small enough that every packet in flight fits A's ring toward
 *             B (derp.c drops what does not fit: MESH_OUT_BYTES, 256 KiB),
 *             so the mesh cannot drop either and a loss is an error.
 *   paced     senders at fixed offered rates, the same for both: a half and
 *             all of local's windowed rate.  Nothing bounds what is in
 *             flight, so the mesh may drop: delivered/sent says how much.
 * CPU is utime+stime of each relay over the measurement interval per packet
 * delivered: CPU seconds per million packets, which is microseconds per
 * packet.  Local counts A (B idles, shown); mesh counts A + B.
 */
#define MESH_RATES 2
static const double mesh_rate_share[MESH_RATES] = { 0.5, 1.0 };
/* derp.c's ring of forwarded packets per link (MESH_OUT_BYTES: 256 KiB, or
 * more).  Windowed runs keep all windows together within 3/4 of 256 KiB and
 * one pair's within a quarter (the most one sender may hold in a ring where
 * derp.c caps senders' shares).  A packet there is a ForwardPacket: header
 * and two keys beside its bytes. */
#define MESH_RING_BYTES (256 * 1024)
#define MESH_RING_SHARE_BYTES (MESH_RING_BYTES / 4)
#define MESH_FWD_PREFIX_BYTES (FRAME_HDR_BYTES + 2 * KEY_BYTES)
#define MESH_LINK_MS 20000		/* both links up: a node that dialled
					 * the other before it listened retries
					 * after derper's 5 s (plus jitter) */
#define MESH_SETTLE_MS 200		/* B's PeerPresent reaches A */
#define MESH_PIN_SETTLE_MS 100		/* see mesh_read_pin */
#define MESH_MAX_ROWS 4
#define MESH_KEY_HEX 64			/* the mesh key: 32 bytes as hex */
#define PIN_HEX 64			/* a sha256-raw: pin: SHA-256 as hex */
#define MESH_LIST_BYTES 512		/* 2 x "127.0.0.1:65535=sha256-raw:" + 64 */

struct meshrow {
	int pairs;
	size_t size;
	int window;			/* both windowed runs; 0: none ran */
	struct result lwin, mwin;	/* windowed: local, meshed */
	struct result lo[MESH_RATES], me[MESH_RATES];	/* paced */
};
static struct meshrow meshrows[MESH_MAX_ROWS];
static int nmeshrows;

/* The pin a relay logs for its self-signed certificate, from its log
 * (within 2 s of start-up), once it also says it is serving: 0, or -1.
 * derp installs its SIGTERM handler just after that line, so a caller about
 * to stop it waits MESH_PIN_SETTLE_MS more (a SIGTERM before the handler
 * ends it with the signal, which server_stop_as reports). */
static int
mesh_read_pin(const struct server *s, char hex[static PIN_HEX + 1])
{
	static const char tag[] = "\"CertName\":\"sha256-raw:";
	static char text[65536];
	int tries;

	for (tries = 0; tries < 100; tries++) {
		const char *p;
		size_t n;
		if (read_text(s->log, text, sizeof(text)) > 0 &&
		    strstr(text, "derper: serving on ") != NULL &&
		    (p = strstr(text, tag)) != NULL) {
			p += sizeof(tag) - 1;
			n = strspn(p, "0123456789abcdefABCDEF");
			if (n == PIN_HEX) {
				memcpy(hex, p, PIN_HEX);
				hex[PIN_HEX] = '\0';
				return 0;
			}
		}
		sleep_ms(20);
	}
	return -1;
}

/* 1 once the log says "mesh: connected to" at least `want` times. */
static int
mesh_links_up(const struct server *s, int want)
{
	static char text[65536];
	const char *p = text;
	int n = 0;

	if (read_text(s->log, text, sizeof(text)) <= 0)
		return 0;
	while (n < want && (p = strstr(p, "mesh: connected to ")) != NULL) {
		n++;
		p++;
	}
	return n >= want;
}

/* A fresh mesh key file under scratch: 0 or -1. */
static int
mesh_write_key(const char *path)
{
	static const char digits[] = "0123456789abcdef";
	uint8_t k[MESH_KEY_HEX / 2];
	char hex[MESH_KEY_HEX + 1];
	int fd, i, rc = 0;

	dc_random(k, sizeof(k));
	for (i = 0; i < MESH_KEY_HEX / 2; i++) {
		hex[2 * i] = digits[k[i] >> 4];
		hex[2 * i + 1] = digits[k[i] & 15];
	}
	hex[MESH_KEY_HEX] = '\n';
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -1;
	if (write(fd, hex, sizeof(hex)) != (ssize_t)sizeof(hex))
		rc = -1;
	if (close(fd) < 0)
		rc = -1;
	return rc;
}

/* Both nodes up and meshed: srv (A) and srv_peer (B).  0, or -1 with every
 * node stopped. */
static int
mesh_start(void)
{
	static char keypath[200], list[MESH_LIST_BYTES];
	static const char *args[5];
	char pin_a[PIN_HEX + 1], pin_b[PIN_HEX + 1];
	int64_t t0, deadline;
	int t;

	snprintf(keypath, sizeof(keypath), "%s/meshkey", scratch);
	if (mesh_write_key(keypath) < 0) {
		fprintf(stderr, "bench: %s: %s\n", keypath, strerror(errno));
		return -1;
	}
	/* First starts, alone: each makes its certificate and logs its pin. */
	srv_extra_args = NULL;
	if (server_start_as(&srv, "node-a", 1, 0, 0) < 0)
		return -1;
	t = mesh_read_pin(&srv, pin_a);
	sleep_ms(MESH_PIN_SETTLE_MS);
	server_stop_as(&srv);
	if (t < 0) {
		fprintf(stderr, "bench: mesh: no pin in %s\n", srv.log);
		return -1;
	}
	if (server_start_as(&srv_peer, "node-b", 1, 0, 0) < 0)
		return -1;
	t = mesh_read_pin(&srv_peer, pin_b);
	sleep_ms(MESH_PIN_SETTLE_MS);
	server_stop_as(&srv_peer);
	if (t < 0) {
		fprintf(stderr, "bench: mesh: no pin in %s\n", srv_peer.log);
		return -1;
	}
	/* Meshed, on ports named in advance (another process may take one
	 * meanwhile: then fresh ones). */
	for (t = 0; t < 3; t++) {
		int pa = dc_free_port("127.0.0.1", SOCK_STREAM);
		int pb = dc_free_port("127.0.0.1", SOCK_STREAM);

		if (pa <= 0 || pb <= 0 || pa == pb)
			continue;
		snprintf(list, sizeof(list), "127.0.0.1:%d=sha256-raw:%s,"
		    "127.0.0.1:%d=sha256-raw:%s", pa, pin_a, pb, pin_b);
		args[0] = "-mesh-psk-file";
		args[1] = keypath;
		args[2] = "-mesh-with";
		args[3] = list;
		args[4] = NULL;
		srv_extra_args = args;
		if (server_start_as(&srv, "node-a", 1, 0, pa) == 0 &&
		    server_start_as(&srv_peer, "node-b", 1, 0, pb) == 0)
			break;
		server_stop_as(&srv);
		server_stop_as(&srv_peer);
	}
	srv_extra_args = NULL;
	if (srv.pid <= 0 || srv_peer.pid <= 0)
		return -1;
	t0 = now_ns();
	deadline = t0 + (int64_t)MESH_LINK_MS * 1000000;
	while (now_ns() < deadline && server_alive() &&
	    server_alive_as(&srv_peer) && !(mesh_links_up(&srv, 1) &&
	    mesh_links_up(&srv_peer, 1)))
		sleep_ms(50);
	if (!mesh_links_up(&srv, 1) || !mesh_links_up(&srv_peer, 1)) {
		anomaly("mesh: the links did not come up within %d s (logs %s,"
		    " %s)", MESH_LINK_MS / 1000, srv.log, srv_peer.log);
		server_stop_as(&srv);
		server_stop_as(&srv_peer);
		return -1;
	}
	printf("node A pid %ld on 127.0.0.1:%d, node B pid %ld on 127.0.0.1:%d,"
	    " both links up %.1f s after B started; -mesh-with %s\nlogs %s %s\n",
	    (long)srv.pid, srv.port, (long)srv_peer.pid, srv_peer.port,
	    (double)(now_ns() - t0) / 1e9, list, srv.log, srv_peer.log);
	return 0;
}

/* A+B CPU per delivered packet in ns (-1 unknown); B counts only meshed. */
static double
mesh_cpu_ns(const struct result *r, int meshed)
{
	if (r->srv_ns < 0 || (meshed && r->peer_ns < 0))
		return -1;
	return r->srv_ns + (meshed ? r->peer_ns : 0);
}

static double
deliv_frac(const struct result *r)
{
	return r->sent_total > 0 ? (double)r->delivered_total /
	    (double)r->sent_total : 0;
}

/* One phase: local counts A (B idles beside it, shown), mesh A + B. */
static void
mesh_print(const char *what, const struct result *r, int meshed)
{
	char cpu[96];

	if (meshed)
		snprintf(cpu, sizeof(cpu), "A %.2f + B %.2f = %.2f",
		    r->srv_ns / 1e3, r->peer_ns / 1e3, mesh_cpu_ns(r, 1) / 1e3);
	else
		snprintf(cpu, sizeof(cpu), "A %.2f (B idle: %.0f%% CPU)",
		    r->srv_ns / 1e3, r->peer_util * 100);
	printf("%-5s %4d pairs %5zu B %-10s: offered %7.0f of %7.0f pkt/s,"
	    " delivered %7.0f pkt/s, deliv/sent %.4f | A %3.0f%% B %3.0f%% CPU:"
	    " %s s per 1M delivered | bench %.0f%% other %.0f%% | %s\n",
	    meshed ? "mesh" : "local", r->pairs, r->size, what,
	    r->offered_pps, r->mode == M_WINDOW ? r->offered_pps : r->target_pps,
	    r->pps, deliv_frac(r), r->srv_util * 100, r->peer_util * 100, cpu,
	    r->bench_util * 100, r->other_util * 100, r->errors ? "ERRORS" :
	    "ok");
	fflush(stdout);
}

/* The window both windowed runs use: window_for's, at most what keeps every
 * packet in flight within A's ring (MESH_RING_BYTES above); 0 when even one
 * per pair is more. */
static int
mesh_window(int pairs, size_t size)
{
	long fwd = (long)(size + MESH_FWD_PREFIX_BYTES);
	long fit = MESH_RING_BYTES / 4 * 3 / fwd / pairs;
	long share = MESH_RING_SHARE_BYTES / fwd;
	int w = window_for(pairs, size);

	if (share < fit)
		fit = share;
	return fit < 1 ? 0 : fit < w ? (int)fit : w;
}

/* Pairs [0, n) open, B's ends on A (local) or on B (meshed): fresh
 * connections when the placement changes, dead ones reopened.  0 or -1. */
static int
mesh_place(int pairs, int meshed)
{
	int port = meshed ? srv_peer.port : 0;

	if (conn_b_port != port) {
		close_all_pairs();
		conn_b_port = port;
	}
	phase_name = "connect";
	if (ensure_pairs(pairs) < 0)
		return -1;
	if (meshed)
		sleep_ms(MESH_SETTLE_MS);
	return 0;
}

/* One phase local or meshed: 0 or -1. */
static int
mesh_phase(const struct spec *sp, struct result *r, int pairs, int meshed,
    const char *what)
{
	if (mesh_place(pairs, meshed) < 0 || run_phase(sp, r) < 0)
		return -1;
	mesh_print(what, r, meshed);
	return 0;
}

/* One pair count: windowed, then each rate, local then meshed each time. */
static int
mesh_row(struct meshrow *row, int pairs, size_t size, const struct timing *tm)
{
	struct spec sp;
	char what[16];
	int k;

	memset(row, 0, sizeof(*row));
	row->pairs = pairs;
	row->size = size;
	row->window = mesh_window(pairs, size);
	memset(&sp, 0, sizeof(sp));
	sp.mode = M_WINDOW;
	sp.size = size;
	sp.window = row->window > 0 ? row->window : window_for(pairs, size);
	sp.warm_ms = tm->warm_ms;
	sp.measure_ms = tm->measure_ms;
	snprintf(what, sizeof(what), "W=%d", sp.window);
	if (mesh_phase(&sp, &row->lwin, pairs, 0, what) < 0)
		return -1;
	if (row->window == 0)
		printf("(no meshed windowed run: %d pairs with one packet each"
		    " overfill A's ring)\n", pairs);
	else if (mesh_phase(&sp, &row->mwin, pairs, 1, what) < 0)
		return -1;
	if (row->lwin.pps <= 0)
		return -1;
	sp.mode = M_RATE;
	sp.warm_ms = tm->o_warm_ms;
	sp.measure_ms = tm->o_measure_ms;
	for (k = 0; k < MESH_RATES; k++) {
		sp.rate = mesh_rate_share[k] * row->lwin.pps;
		snprintf(what, sizeof(what), "paced %.2fx", mesh_rate_share[k]);
		if (mesh_phase(&sp, &row->lo[k], pairs, 0, what) < 0 ||
		    mesh_phase(&sp, &row->me[k], pairs, 1, what) < 0)
			return -1;
	}
	close_all_pairs();
	conn_b_port = 0;
	return 0;
}

static int
run_mesh(const int *pairs, int npairs, size_t size, const struct timing *tm)
{
	int i, rc = 0;
	/* Per pair count: two windowed phases and two per rate, each with
	 * its drain and its connections. */
	int est = 2 * (tm->warm_ms + tm->measure_ms + 1000) + MESH_RATES * 2 *
	    (tm->o_warm_ms + tm->o_measure_ms + 2000);

	printf("\n== mesh: CPU per forwarded packet, two meshed nodes (senders"
	    " on A, receivers on B) against one (both on A); TLS clients,"
	    " %zu B ==\n", size);
	if (!time_left_for(est + 5000)) {
		printf("(skipped: time budget)\n");
		return 0;
	}
	phase_name = "mesh start";
	B.tls = 1;
	if (mesh_start() < 0) {
		anomaly("mesh: the two nodes did not start meshed");
		return -1;
	}
	for (i = 0; i < npairs && rc == 0 && nmeshrows < MESH_MAX_ROWS; i++) {
		if (!time_left_for(est)) {
			printf("(skipped %d pairs: time budget)\n", pairs[i]);
			break;
		}
		rc = mesh_row(&meshrows[nmeshrows], pairs[i], size, tm);
		if (rc == 0)
			nmeshrows++;
	}
	close_all_pairs();
	conn_b_port = 0;
	server_stop_as(&srv_peer);
	server_stop();
	return rc;
}

/* One line of the mesh table: a load, local against meshed. */
static void
mesh_table_line(const struct meshrow *m, const char *load,
    const struct result *l, const struct result *x)
{
	double lc = mesh_cpu_ns(l, 0), xc = x->ran ? mesh_cpu_ns(x, 1) : -1;
	double other = l->other_util > x->other_util ? l->other_util :
	    x->other_util;

	printf("%5d %6zu %-12s %9.0f | %9.0f %7.4f %6.2f | ", m->pairs, m->size,
	    load, l->mode == M_WINDOW ? l->offered_pps : l->target_pps, l->pps,
	    deliv_frac(l), lc / 1e3);
	if (x->ran)
		printf("%9.0f %7.4f %6.2f %6.2f %6.2f | %5.2f", x->pps,
		    deliv_frac(x), x->srv_ns / 1e3, x->peer_ns / 1e3, xc / 1e3,
		    lc > 0 && xc > 0 ? xc / lc : 0);
	else
		printf("%9s %7s %6s %6s %6s | %5s", "-", "-", "-", "-", "-", "-");
	printf(" | %4.0f%%\n", other * 100);
}

static void
print_mesh_table(void)
{
	int i, k;

	if (nmeshrows == 0)
		return;
	printf("\n== mesh: TLS clients; CPU = relay utime+stime per delivered"
	    " packet in CPU s per 1M packets (= us/packet); local: node A, mesh:"
	    " A + B ==\n");
	printf("%5s %6s %-12s %9s | %9s %7s %6s | %9s %7s %6s %6s %6s | %5s |"
	    " %5s\n", "pairs", "size", "load", "offered", "local/s", "dl/sent",
	    "CPU", "mesh/s", "dl/sent", "A", "B", "A+B", "ratio", "other");
	for (i = 0; i < nmeshrows; i++) {
		const struct meshrow *m = &meshrows[i];
		char load[16];
		snprintf(load, sizeof(load), "windowed %d", m->lwin.window);
		mesh_table_line(m, load, &m->lwin, &m->mwin);
		for (k = 0; k < MESH_RATES; k++) {
			snprintf(load, sizeof(load), "paced %.2fx",
			    mesh_rate_share[k]);
			mesh_table_line(m, load, &m->lo[k], &m->me[k]);
		}
	}
	printf("offered: pkt/s (windowed: what local sent; paced: the target,"
	    " a share of local's windowed rate).  ratio = mesh A+B CPU / local"
	    " CPU per delivered packet.  other: the larger of the two phases'"
	    " share of a core taken by other processes.\nA meshed phase whose"
	    " drain reports pairs still waiting for their last packet lost its"
	    " newest packets: a full ring on A drops the newest, a client's"
	    " queue on B the oldest.\n");
}

/* ---- smoke --------------------------------------------------------------- */

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
	fprintf(stderr, "usage: bench [--quick | --smoke | --mesh | --handshakes | --one"
	    " tls|plain PAIRS SIZE] [DERP_BINARY]\n");
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
	static const int pairs_mesh[] = { 1, 10, 100 };
	int quick = 0, smoke = 0, mesh_only = 0, hs_only = 0, i, rc = 0;
	int errors = 0;
	int one_tls = -1, one_pairs = 0;
	size_t one_size = 0;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0)
			quick = 1;
		else if (strcmp(argv[i], "--smoke") == 0)
			smoke = 1;
		else if (strcmp(argv[i], "--mesh") == 0)
			mesh_only = 1;
		else if (strcmp(argv[i], "--handshakes") == 0)
			hs_only = 1;
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
	if (quick + smoke + mesh_only > 1 || (one_tls >= 0 && (smoke ||
	    mesh_only)))
		usage();
	t_program = now_ns();
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (access(derp_path, X_OK) != 0) {
		fprintf(stderr, "bench: %s: not executable (make derp)\n",
		    derp_path);
		return 2;
	}
	/* 2,000 sockets here, 12,000 in the relay, 2,500 in each child. */
	if (loadgen_init("bench", WATCHDOG_S) < 0)
		return 2;

	if (smoke) {
		rc = run_smoke();
		if (rc == 0)
			rm_tree(scratch);	/* keep the logs only of a failure */
		else
			printf("(relay logs in %s)\n", scratch);
		return rc;
	}

	printf("derp bench%s\n", quick ? " --quick" : mesh_only ? " --mesh" :
	    "");
	print_machine();
	printf("each phase: warm-up, then a fixed measurement interval; relay CPU"
	    " = utime+stime of its process over the interval\n");
	if (hs_only) {
		rc = run_handshakes(quick, quick ? &t_quick : &t_full);
		kill_all();
		printf("\n== anomalies: %ld ==\n", anomalies_total);
		for (i = 0; i < nanomalies; i++)
			printf("%s\n", anomalies[i]);
		return rc != 0 || anomalies_total > 0 ? 1 : 0;
	}
	if (!mesh_only && run_ceiling(sizes_full, 3, quick ? 50000000 :
	    200000000) < 0)
		errors++;
	if (one_tls >= 0)
		rc = run_transport(one_tls, &one_pairs, 1, &one_size, 1, &t_full);
	for (i = 1; i >= 0 && rc == 0 && one_tls < 0 && !mesh_only; i--)
		rc = quick ? run_transport(i, pairs_quick, 2, sizes_quick, 1,
		    &t_quick) : run_transport(i, pairs_full, 4, sizes_full, 3,
		    &t_full);
	if (rc == 0 && one_tls < 0)
		rc = quick ? run_mesh(pairs_quick, 1, 1200, &t_quick) :
		    run_mesh(pairs_mesh + (mesh_only ? 0 : 1), mesh_only ? 3 : 2,
		    1200, &t_full);
	if (rc == 0 && one_tls < 0 && !mesh_only)
		rc = run_memory(!quick, quick ? &t_quick : &t_full);
	if (rc == 0 && one_tls < 0 && !mesh_only)
		rc = run_handshakes(quick, quick ? &t_quick : &t_full);
	kill_all();
	if (!mesh_only)
		print_tables();
	print_mesh_table();
	for (i = 0; i < nresults; i++)
		errors += results[i].errors;
	for (i = 0; i < nmeshrows; i++) {
		int k;
		errors += meshrows[i].lwin.errors + meshrows[i].mwin.errors;
		for (k = 0; k < MESH_RATES; k++)
			errors += meshrows[i].lo[k].errors +
			    meshrows[i].me[k].errors;
	}
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
