/*
 * fuzz_server.h -- a real relay (derp_create, plain HTTP on loopback) driven
 * in memory, for fuzz_derp.c and fuzz_http.c.  Include after derp.c and fuzz.h.
 * fuzz_tls.c sets fz_tls before fz_server_init for the relay in TLS mode on the
 * same listener, and fz_drain_hook to read what the relay sends (ciphertext)
 * with its own client engines.
 *
 * Connections come through the relay's own conn_accept, from a Unix-domain
 * listener the harness owns (no TCP port, no TIME_WAIT per input).  The
 * harness keeps the client end ("remote"): it writes the client's bytes there
 * and reads (drains) what the relay sends.  fz_round is one round of
 * derp_run's loop with the harness's clock (keep the two in step):
 * poller_wait(0), every ready connection serviced (conn_service -> conn_pump
 * -> conn_consume), paused input resumed, dirty output flushed, and the timer
 * sweep when a tick is due.  So every byte goes through the relay's own read,
 * parse, route, fill and write code, split wherever the harness splits its
 * writes.
 *
 * The clock only moves when the harness says (fz_tick); the random generator
 * and the key-table seed are set per input, so an input always does the same.
 *
 * After every step fz_check verifies the invariants derp.c states: each pool
 * chunk is on exactly one list (free, a byte chain, a packet, a queue, or the
 * harness's hold), byte chains' lengths add up, queues count right, the dirty
 * and paused rings hold each slot at most once, every registered connection is
 * in the key table with the right duplicate flags, and the gauges match the
 * connections.  fz_end checks that no complete packet is left unrouted, closes
 * everything and checks that the pool, the slots, the key table, the rings and
 * the descriptors are back to empty: a single leaked chunk aborts.
 *
 * Connections the harness registers itself (fz_register: what
 * derp_client_info does after the box opened, without the X25519; keep the
 * two in step) get a stream checker on what the relay sends them: ServerInfo
 * first, then only RecvPacket (from one of the harness's keys), KeepAlive,
 * PeerGone and Pong, each with its exact length.
 */
#ifndef FUZZ_SERVER_H
#define FUZZ_SERVER_H

#include <sys/socket.h>
#include <sys/un.h>

#define FZ_MAX		6	/* -max-clients of the fuzzed relay */
#define FZ_NKEYS	5	/* fz_keys[] */
#define FZ_T0		1000000	/* the clock at the start of every input, ms */
#define FZ_SNDBUF	8192	/* relay end's send buffer: small, so output backs up */

/* Keys.  The server key is the one of test/data/derp/keys_and_config.txt, so
 * the [derp-client-info] frame of nacl_box_vectors.txt (client 64b101...)
 * opens.  fz_keys[0] is the transcript's peer (883186...; private key
 * unknown: only registered by the harness), [1] the vector's client, [2..4]
 * made-up clients whose ClientInfo the harness can seal (fz_client_info). */
static const char fz_keyfile[] = "{\n\t\"PrivateKey\": \"privkey:"
    "0002030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f60\"\n}";
static const char fz_server_pub_hex[] =
    "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c";
static const char fz_peer_pub_hex[] =
    "883186b800b41d5cf0429695da9b3cc4f328ebcd184a6e482fa578c103f06c77";
static const char fz_client_priv_hex[] =
    "4042434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60";

static uint8_t fz_keys[FZ_NKEYS][KEY_BYTES];
static uint8_t fz_privs[FZ_NKEYS][KEY_BYTES];	/* [0] unknown (zero) */
static uint8_t fz_boxkeys[FZ_NKEYS][KEY_BYTES];	/* client <-> server box keys */

struct fz_handle {
	int open;
	uint32_t idx;		/* the relay's slot */
	int remote;		/* the client's socket; -1 once closed */
	int stalled;		/* remote not drained: the client stops reading */
	int checked;		/* registered by the harness: output is checked */
	int reset_pending;	/* resets after the next round's poll */
	/* stream checker */
	uint8_t hdr[FRAME_HEADER_BYTES];
	uint32_t hdr_len, left, frames;
	uint8_t type, src[KEY_BYTES];
	uint32_t src_got;
};

static struct derp_server *fz_s;
static struct fz_handle fz_h[FZ_MAX];
static uint32_t fz_hold = NIL, fz_hold_n;	/* chunks taken by the harness */
static uint8_t *fz_seen;			/* fz_check's chunk marks */
static uint8_t fz_drain_buf[65536];
static int fz_fds[64], fz_nfds;		/* accepted by the relay */
static int fz_tracing;				/* FUZZ_TRACE set: fz_trace prints */
/* TLS mode (fuzz_tls.c): -certmode manual with the IP -hostname FZ_TLS_IP, so
 * the relay makes its own self-signed certificate on first start. */
#define FZ_TLS_IP	"192.0.2.1"
static int fz_tls;
static char fz_certdir[240];	/* where that certificate is */
/* Set: reads (and checks) what the relay sent to a client, in fz_drain's
 * place.  Called only for clients that read. */
static void (*fz_drain_hook)(struct fz_handle *h);

/* FUZZ_TRACE=1: the handles' states and the relay's counters after every
 * round, to see what an input does (replay it with the replay driver). */
FUZZ_HELPER FUZZ_NOCOV static void
fz_trace(const char *what)
{
	static const char *const states[] = { "free", "head", "body", "drain",
	    "info", "derp" };
	const struct stats *st = &fz_s->st;
	char line[512];
	size_t n;
	ssize_t w;
	int i;

	if (!fz_tracing)
		return;
	n = (size_t)snprintf(line, sizeof line, "%-8s t+%-6lld", what,
	    (long long)(fz_s->now - FZ_T0));
	for (i = 0; i < FZ_MAX && n < sizeof line; i++)
		n += (size_t)snprintf(line + n, sizeof line - n, " %d:%s", i,
		    !fz_h[i].open ? "-" :
		    states[fz_s->conns[fz_h[i].idx].state % 6]);
	if (n < sizeof line)
		n += (size_t)snprintf(line + n, sizeof line - n, " | free %u "
		    "keys %u http %llu upg %llu rx %llu tx %llu drop %llu/%llu "
		    "pong %llu pg %llu/%llu\n", fz_s->pool.free_count,
		    fz_s->nkeys, (unsigned long long)st->http_requests,
		    (unsigned long long)st->accepts,
		    (unsigned long long)st->packets_received,
		    (unsigned long long)st->packets_sent,
		    (unsigned long long)(st->drop_pkts[DROP_UNKNOWN_DEST][0] +
		    st->drop_pkts[DROP_UNKNOWN_DEST][1]),
		    (unsigned long long)(st->drop_pkts[DROP_QUEUE_HEAD][0] +
		    st->drop_pkts[DROP_QUEUE_HEAD][1]),
		    (unsigned long long)st->sent_pong,
		    (unsigned long long)st->peer_gone_disconnected,
		    (unsigned long long)st->peer_gone_not_here);
	if (n > sizeof line)
		n = sizeof line;
	w = write(fuzz_errfd, line, n);
	(void)w;
}

/* ---- set-up, once per process ---- */

static int fz_lfd = -1;			/* Unix listener for fz_open */
static struct sockaddr_un fz_addr;
static char fz_dir[200];
static pid_t fz_pid;

FUZZ_HELPER static void
fz_cleanup(void)
{
	char path[256];

	if (getpid() != fz_pid)
		return;		/* a replay child: the parent cleans up */
	snprintf(path, sizeof path, "%s/listen", fz_dir);
	unlink(path);
	if (strcmp(fz_certdir, fz_dir) == 0) {
		snprintf(path, sizeof path, "%s/" FZ_TLS_IP ".crt", fz_dir);
		unlink(path);
		snprintf(path, sizeof path, "%s/" FZ_TLS_IP ".key", fz_dir);
		unlink(path);
	}
	rmdir(fz_dir);
}

FUZZ_HELPER FUZZ_NOCOV static void
fz_server_init(void)
{
	static char dir[] = "/dev/shm/derp-fuzz.XXXXXX";
	static char tdir[] = "/tmp/derp-fuzz.XXXXXX";
	static char edir[160];
	const char *parent = getenv("FUZZ_TMPDIR");
	char path[256], err[256];
	struct derp_config cfg;
	uint8_t want[KEY_BYTES];
	char *d = NULL;
	FILE *f;
	int i;

	/* A directory for the key file and the listener's socket: under
	 * $FUZZ_TMPDIR when set (make fuzz removes it even after a crash),
	 * else on tmpfs, else in /tmp; removed at exit. */
	if (parent != NULL && parent[0] != '\0' && strlen(parent) < 100) {
		snprintf(edir, sizeof edir, "%s/derp-fuzz.XXXXXX", parent);
		d = mkdtemp(edir);
	}
	if (d == NULL)
		d = mkdtemp(dir);
	if (d == NULL)
		d = mkdtemp(tdir);
	FUZZ_CHECK(d != NULL, "mkdtemp: %s", strerror(errno));
	snprintf(path, sizeof path, "%s/derper.key", d);
	f = fopen(path, "w");
	FUZZ_CHECK(f != NULL && fputs(fz_keyfile, f) >= 0 && fclose(f) == 0,
	    "write %s", path);
	derp_config_defaults(&cfg);
	cfg.addr = "127.0.0.1:0";	/* plain HTTP: not 443, certmode not manual */
	cfg.stun = 0;
	cfg.config_path = path;
	cfg.max_clients = FZ_MAX;
	cfg.tcp_keepalive_ms = 0;	/* no TCP options to set on Unix sockets */
	cfg.tcp_user_timeout_ms = 0;
	if (fz_tls) {
		/* The certificate in $FUZZ_CERT_DIR/tls when set (made once,
		 * shared by every process of a run), else in the scratch
		 * directory (removed at exit).  No port-80 listener. */
		parent = getenv("FUZZ_CERT_DIR");
		if (parent != NULL && parent[0] != '\0' && strlen(parent) < 200)
			snprintf(fz_certdir, sizeof fz_certdir, "%s/tls", parent);
		else
			snprintf(fz_certdir, sizeof fz_certdir, "%s", d);
		cfg.certmode = "manual";
		cfg.hostname = FZ_TLS_IP;
		cfg.certdir = fz_certdir;
		cfg.http_port = -1;
	}
	fz_s = derp_create(&cfg, err, sizeof err);
	unlink(path);
	FUZZ_CHECK(fz_s != NULL, "derp_create: %s", err);
	FUZZ_CHECK(fz_s->tls_mode == fz_tls, "TLS mode %d", fz_s->tls_mode);

	/* The listener conn_accept takes the harness's connections from. */
	memset(&fz_addr, 0, sizeof fz_addr);
	fz_addr.sun_family = AF_UNIX;
	snprintf(fz_addr.sun_path, sizeof fz_addr.sun_path, "%s/listen", d);
	fz_lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	FUZZ_CHECK(fz_lfd >= 0 && bind(fz_lfd, (const struct sockaddr *)&fz_addr,
	    sizeof fz_addr) == 0 && listen(fz_lfd, 8) == 0 &&
	    sock_nonblock(fz_lfd) == 0, "listen %s: %s", fz_addr.sun_path,
	    strerror(errno));
	snprintf(fz_dir, sizeof fz_dir, "%s", d);
	fz_pid = getpid();
	atexit(fz_cleanup);
	FUZZ_CHECK(fz_s->max == FZ_MAX, "max_clients %u", fz_s->max);
	fuzz_unhex(fz_server_pub_hex, want, sizeof want);
	FUZZ_CHECK(memcmp(fz_s->pub, want, KEY_BYTES) == 0,
	    "server key is not the test key");
	fz_seen = malloc(fz_s->pool.count + 1);
	FUZZ_CHECK(fz_seen != NULL, "malloc");

	fuzz_unhex(fz_peer_pub_hex, fz_keys[0], KEY_BYTES);
	fuzz_unhex(fz_client_priv_hex, fz_privs[1], KEY_BYTES);
	for (i = 2; i < FZ_NKEYS; i++) {
		memcpy(fz_privs[i], fz_privs[1], KEY_BYTES);
		fz_privs[i][0] = (uint8_t)(0x30 + 0x10 * i);	/* [1] has 0x40 */
	}
	for (i = 1; i < FZ_NKEYS; i++) {
		nacl_x25519_base(fz_keys[i], fz_privs[i]);
		FUZZ_CHECK(nacl_box_beforenm(fz_boxkeys[i], fz_s->pub,
		    fz_privs[i]) == 0, "beforenm");
	}
	for (i = 0; i < FZ_MAX; i++)
		fz_h[i].remote = -1;
	fz_tracing = getenv("FUZZ_TRACE") != NULL;
}

/* ---- the checks ---- */

FUZZ_HELPER FUZZ_NOCOV static void
fz_mark(uint32_t i, const char *what, uint32_t slot)
{
	FUZZ_CHECK(i >= 1 && i <= fz_s->pool.count, "chunk %u out of range "
	    "(%s of slot %u)", i, what, slot);
	FUZZ_CHECK(!fz_seen[i], "chunk %u is on two lists (again as %s of "
	    "slot %u)", i, what, slot);
	fz_seen[i] = 1;
}

FUZZ_HELPER FUZZ_NOCOV static uint32_t
fz_mark_chain(uint32_t i, const char *what, uint32_t slot, uint32_t *bytes)
{
	uint32_t last = NIL, n = 0;

	for (; i != NIL; i = fz_s->pool.chunks[i].next) {
		fz_mark(i, what, slot);
		FUZZ_CHECK(fz_s->pool.chunks[i].len <= CHUNK_DATA_BYTES,
		    "chunk %u len %u", i, fz_s->pool.chunks[i].len);
		n += fz_s->pool.chunks[i].len;
		last = i;
	}
	if (bytes != NULL)
		*bytes = n;
	return last;
}

FUZZ_HELPER FUZZ_NOCOV static void
fz_check_cbuf(const struct cbuf *b, const char *what, uint32_t slot)
{
	uint32_t bytes, last;

	if (b->head == NIL) {
		FUZZ_CHECK(b->tail == NIL && b->len == 0 && b->off == 0,
		    "slot %u %s: empty chain with tail %u len %u off %u", slot,
		    what, b->tail, b->len, b->off);
		return;
	}
	last = fz_mark_chain(b->head, what, slot, &bytes);
	FUZZ_CHECK(last == b->tail, "slot %u %s: tail %u, last chunk %u",
	    slot, what, b->tail, last);
	FUZZ_CHECK(b->off <= fz_s->pool.chunks[b->head].len &&
	    bytes - b->off == b->len, "slot %u %s: len %u but chunks hold %u "
	    "from offset %u", slot, what, b->len, bytes, b->off);
}

/* The dirty and paused lists: each slot at most once, as on[] says. */
FUZZ_HELPER FUZZ_NOCOV static void
fz_check_ring(const struct slot_ring *r, const char *what)
{
	uint32_t i, k, on = 0;

	FUZZ_CHECK(r->cap == fz_s->max && r->count <= r->cap && r->head < r->cap,
	    "%s ring: count %u head %u cap %u", what, r->count, r->head, r->cap);
	for (i = 0; i < r->cap; i++)
		on += r->on[i] != 0;
	FUZZ_CHECK(on == r->count, "%s ring: %u entries, %u flagged", what,
	    r->count, on);
	for (i = 0; i < r->count; i++) {
		k = r->slot[(r->head + i) % r->cap];
		FUZZ_CHECK(k < r->cap && r->on[k], "%s ring: entry %u is slot %u",
		    what, i, k);
	}
}

/* P2, P3, P5 for one connection; adds its unused budgets to *unused. */
FUZZ_HELPER FUZZ_NOCOV static void
fz_check_budgets(const struct conn *c, uint32_t i, uint32_t *unused)
{
	const struct pool *p = &fz_s->pool;
	uint32_t in, k, q, n;

	in = chain_count(p, c->head.head) + chain_count(p, c->info.head) +
	    chain_count(p, c->fpkt) + c->fpkt_lent +
	    (c->out_held ? chain_count(p, c->out_pkt) : 0);
	FUZZ_CHECK(c->fpkt_chunks == chain_count(p, c->fpkt), "slot %u: "
	    "fpkt_chunks %u, chain %u", i, c->fpkt_chunks,
	    chain_count(p, c->fpkt));
	FUZZ_CHECK(c->state == CS_DERP || hold_over(c) == 0, "slot %u: "
	    "borrows %u from the spare before registering", i, hold_over(c));
	FUZZ_CHECK(!c->spare_wait || fz_s->spare_q.on[i], "slot %u waits for "
	    "the spare but is not in line", i);
	FUZZ_CHECK(c->hold[HOLD_CTRL] == chain_count(p, c->raw.head) &&
	    c->hold[HOLD_RAWIN] == chain_count(p, c->rawin.head) &&
	    c->hold[HOLD_IN] == in, "slot %u holds %u/%u/%u, chains %u/%u/%u",
	    i, c->hold[HOLD_CTRL], c->hold[HOLD_RAWIN], c->hold[HOLD_IN],
	    chain_count(p, c->raw.head), chain_count(p, c->rawin.head), in);
	FUZZ_CHECK(c->out_pkt == NIL || c->out_held, "slot %u: a packet that "
	    "fits one write is held between rounds", i);
	FUZZ_CHECK(c->hold[HOLD_CTRL] <= CHUNKS_CTRL &&
	    c->hold[HOLD_RAWIN] <= CHUNKS_RAWIN, "slot %u: control %u or "
	    "read-ahead %u chunks beyond its budget", i, c->hold[HOLD_CTRL],
	    c->hold[HOLD_RAWIN]);
	FUZZ_CHECK((c->spare_since != 0) == (hold_over(c) > 0) &&
	    c->spare_since <= fz_s->now && (c->spare_since == 0 ||
	    fz_s->now - c->spare_since < SPARE_HOLD_MS + LOOP_TICK_MS),
	    "slot %u: spare_since %lld with %u borrowed", i,
	    (long long)c->spare_since, hold_over(c));
	for (k = HOLD_CTRL; k <= HOLD_IN; k++)
		*unused += c->hold[k] < hold_limit[k] ? hold_limit[k] - c->hold[k] : 0;
	n = 0;
	for (k = Q_DISCO; k <= Q_OTHER; k++)
		for (q = c->q[k].head; q != NIL; q = p->chunks[q].qnext)
			n += pkt_chunks(p, q);
	FUZZ_CHECK(n == c->q_chunks, "slot %u: q_chunks %u, queued %u", i,
	    c->q_chunks, n);
}

/* P6: the reclaim heap holds exactly the slots with queued chunks. */
FUZZ_HELPER FUZZ_NOCOV static void
fz_check_qheap(void)
{
	const struct derp_server *s = fz_s;
	uint32_t i, n = 0;

	for (i = 0; i < s->max; i++) {
		const struct conn *c = &s->conns[i];

		if (c->state == CS_FREE)
			continue;
		if (c->q_chunks == 0) {
			FUZZ_CHECK(c->qheap_pos == -1, "slot %u in the heap "
			    "with nothing queued", i);
			continue;
		}
		n++;
		FUZZ_CHECK(c->qheap_pos >= 0 && (uint32_t)c->qheap_pos <
		    s->nqheap && s->qheap[c->qheap_pos] == i, "slot %u: heap "
		    "position %d", i, c->qheap_pos);
	}
	FUZZ_CHECK(n == s->nqheap, "heap of %u, %u slots queue", s->nqheap, n);
	for (i = 1; i < s->nqheap; i++)
		FUZZ_CHECK(s->conns[s->qheap[(i - 1) / 2]].q_chunks >=
		    s->conns[s->qheap[i]].q_chunks, "heap order at %u", i);
}

/* The unfinished connections: each in its source's FIFO in its set, oldest
 * first; sources counted and bucketed right, the largest known. */
FUZZ_HELPER FUZZ_NOCOV static void
fz_check_pending(uint32_t unregistered, uint32_t registered)
{
	const struct derp_server *s = fz_s;
	const struct pend_set *ps;
	const struct source *x;
	const struct conn *c;
	uint32_t e, n, total = 0, cnt, top, set, entries, b;
	uint8_t addr[16];
	int32_t j;

	for (set = PEND_MAIN; set < NSETS; set++) {
		ps = &s->pend[set];
		n = 0;
		top = 0;
		entries = 0;
		for (b = 0; b <= ps->hmask; b++)
			for (e = ps->hash[b]; e != NIL; e = x->hnext) {
				x = &ps->src[e];
				FUZZ_CHECK(entries++ <= ps->cap, "source hash loops");
				cnt = 0;
				for (j = x->head; j >= 0; j = c->pend.next) {
					c = &s->conns[j];
					FUZZ_CHECK(cnt++ < s->max, "source list loops");
					FUZZ_CHECK(c->state != CS_FREE &&
					    (c->state == CS_DERP) == (set == SET_REG) &&
					    c->pend.src == e && c->pend.set == set,
					    "slot %d on a list of set %u in state %u",
					    j, set, c->state);
					source_addr(c->peer_ip, addr);
					FUZZ_CHECK(memcmp(addr, x->addr, 16) == 0,
					    "slot %d on another source's list", j);
					FUZZ_CHECK(c->pend.prev < 0 ||
					    (s->conns[c->pend.prev].pend.next == j &&
					    s->conns[c->pend.prev].accepted_ms <=
					    c->accepted_ms), "source list broken "
					    "at slot %d", j);
					FUZZ_CHECK(c->pend.next >= 0 || x->tail == j,
					    "source list tail");
				}
				FUZZ_CHECK(cnt == x->count && cnt > 0, "source of "
				    "%u connections says %u", cnt, x->count);
				FUZZ_CHECK(source_find(s, ps, x->addr) == e,
				    "source not found by its address");
				n += cnt;
				if (cnt > top)
					top = cnt;
			}
		for (b = 1; b <= ps->cap && b <= s->max; b++) {
			uint32_t prev = NIL;

			for (e = ps->bucket[b].head; e != NIL;
			    e = ps->src[e].bnext) {
				FUZZ_CHECK(ps->src[e].count == b &&
				    ps->src[e].bprev == prev, "bucket %u holds a "
				    "source of %u (or is broken)", b,
				    ps->src[e].count);
				prev = e;
			}
			FUZZ_CHECK(ps->bucket[b].tail == prev, "bucket %u: tail "
			    "%u, ends at %u", b, ps->bucket[b].tail, prev);
		}
		FUZZ_CHECK(n == ps->n && n <= ps->cap && top == ps->top,
		    "set %u: %u connections (n %u, cap %u), largest %u (top %u)",
		    set, n, ps->n, ps->cap, top, ps->top);
		if (set != SET_REG)
			total += n;
		else
			FUZZ_CHECK(n == registered, "%u registered on source "
			    "lists, %u registered slots", n, registered);
	}
	FUZZ_CHECK(total == unregistered, "%u unfinished on source lists, %u "
	    "unregistered slots", total, unregistered);
}

/* PeerGone records: every record in use is on exactly one recipient's live
 * list (and then on its source key's list, and hashed) or FIFO of notices;
 * each payer's count is right. */
FUZZ_HELPER FUZZ_NOCOV static void
fz_check_senders(void)
{
	const struct derp_server *s = fz_s;
	const struct conn *c;
	const struct keyent *ke;
	uint32_t i, e, prev, live = 0, gone = 0, inkeys = 0, nfree = 0, spare = 0;
	static uint32_t paid[FZ_MAX];

	memset(paid, 0, sizeof paid);
	for (i = 0; i < s->max; i++) {
		c = &s->conns[i];
		if (c->state == CS_FREE)
			continue;
		prev = NIL;
		for (e = c->snd.live; e != NIL; e = s->snd[e].dnext) {
			FUZZ_CHECK(live++ < s->nsnd, "live list loops");
			FUZZ_CHECK(s->snd[e].dst == i && !s->snd[e].gone &&
			    s->snd[e].dprev == prev, "slot %u: live record %u "
			    "for %u", i, e, s->snd[e].dst);
			FUZZ_CHECK(snd_find(s, i, s->snd[e].key) == e,
			    "live record %u not hashed", e);
			FUZZ_CHECK(keytab_find((struct derp_server *)s,
			    s->snd[e].key) != NULL, "live record %u of a key "
			    "not registered", e);
			prev = e;
		}
		for (e = c->snd.gone_head; e != NIL; e = s->snd[e].dnext) {
			FUZZ_CHECK(gone++ < s->nsnd, "notice list loops");
			FUZZ_CHECK(s->snd[e].dst == i && s->snd[e].gone &&
			    (s->snd[e].dnext != NIL || c->snd.gone_tail == e),
			    "slot %u: notice %u", i, e);
		}
		FUZZ_CHECK(c->snd.last == NIL || (s->snd[c->snd.last].dst == i &&
		    !s->snd[c->snd.last].gone), "slot %u: last record %u", i,
		    c->snd.last);
	}
	for (i = 0; i <= s->keytab_mask; i++) {
		ke = &s->keytab[i];
		if (ke->nconns == 0)
			continue;
		prev = NIL;
		for (e = ke->senders; e != NIL; e = s->snd[e].knext) {
			FUZZ_CHECK(inkeys++ < s->nsnd, "key list loops");
			FUZZ_CHECK(!s->snd[e].gone && s->snd[e].kprev == prev &&
			    memcmp(s->snd[e].key, ke->key, KEY_BYTES) == 0,
			    "key entry %u: record %u", i, e);
			prev = e;
		}
	}
	FUZZ_CHECK(inkeys == live, "%u records on key lists, %u live", inkeys,
	    live);
	for (e = s->snd_free; e != NIL; e = s->snd[e].hnext)
		FUZZ_CHECK(nfree++ < s->nsnd, "record free list loops");
	FUZZ_CHECK(s->snd_fresh >= 1 && s->snd_fresh <= s->nsnd + 1 &&
	    nfree + (s->nsnd + 1 - s->snd_fresh) + live + gone == s->nsnd,
	    "records: %u free, %u never used, %u live, %u notices of %u",
	    nfree, s->nsnd + 1 - s->snd_fresh, live, gone, s->nsnd);
	/* Payers: walk every record in use once more. */
	for (i = 0; i < s->max; i++) {
		c = &s->conns[i];
		if (c->state == CS_FREE)
			continue;
		for (e = c->snd.live; e != NIL; e = s->snd[e].dnext)
			s->snd[e].payer == 0 ? spare++ : paid[(s->snd[e].payer - 1) % FZ_MAX]++;
		for (e = c->snd.gone_head; e != NIL; e = s->snd[e].dnext)
			s->snd[e].payer == 0 ? spare++ : paid[(s->snd[e].payer - 1) % FZ_MAX]++;
	}
	FUZZ_CHECK(spare == s->snd_spare_used, "spare records %u, counted %u",
	    spare, s->snd_spare_used);
	for (i = 0; i < s->max && i < FZ_MAX; i++)
		FUZZ_CHECK(s->conns[i].state != CS_FREE ? paid[i] ==
		    s->conns[i].snd.paid : paid[i] == 0, "slot %u pays for %u "
		    "records, counted %u", i, paid[i], s->conns[i].snd.paid);
}

FUZZ_HELPER FUZZ_NOCOV static void
fz_check(void)
{
	struct derp_server *s = fz_s;
	struct pool *p = &s->pool;
	struct conn *c;
	struct keyent *e;
	uint32_t i, n, nfree = 0, used = 0, derp = 0, home = 0, notideal = 0;
	uint32_t keys = 0, last, bytes, q, unused = 0, queued = 0;
	int32_t j;
	int k, member;

	/* Chunks: each exactly once.  Those from lazy_next on were never
	 * handed out, and are marked as a block. */
	FUZZ_CHECK(p->lazy_next >= 1 && p->lazy_next <= p->count + 1,
	    "lazy_next %u", p->lazy_next);
	memset(fz_seen, 0, p->lazy_next);
	memset(fz_seen + p->lazy_next, 1, p->count + 1 - p->lazy_next);
	nfree = p->count + 1 - p->lazy_next;
	for (i = p->free_head; i != NIL; i = p->chunks[i].next) {
		fz_mark(i, "free list", 0);
		nfree++;
	}
	FUZZ_CHECK(nfree == p->free_count, "free_count %u, free chunks %u",
	    p->free_count, nfree);
	fz_mark_chain(fz_hold, "harness hold", 0, NULL);
	for (i = 0; i < s->max; i++) {
		c = &s->conns[i];
		if (c->state == CS_FREE)
			continue;
		used++;
		fz_check_cbuf(&c->head, "head", i);
		fz_check_cbuf(&c->info, "info", i);
		fz_check_cbuf(&c->raw, "raw", i);
		fz_check_cbuf(&c->rawin, "rawin", i);
		if (c->fpkt != NIL)
			fz_mark_chain(c->fpkt, "packet being read", i, NULL);
		if (c->out_pkt != NIL)
			fz_mark_chain(c->out_pkt, "packet being written", i, NULL);
		for (k = Q_DISCO; k <= Q_OTHER; k++) {
			n = 0;
			last = NIL;
			for (q = c->q[k].head; q != NIL; q = p->chunks[q].qnext) {
				fz_mark_chain(q, "queued packet", i, &bytes);
				FUZZ_CHECK(bytes == RECV_PREFIX_BYTES +
				    pkt_len(p, q), "slot %u: queued packet of %u "
				    "bytes says %u", i, bytes, pkt_len(p, q));
				last = q;
				n++;
			}
			FUZZ_CHECK(n == c->q[k].count && last == c->q[k].tail,
			    "slot %u queue %d: count %u, walked %u", i, k,
			    c->q[k].count, n);
			FUZZ_CHECK(n <= s->cfg.queue_depth, "slot %u queue %d "
			    "holds %u > depth %u", i, k, n, s->cfg.queue_depth);
		}
		fz_check_budgets(c, i, &unused);
		queued += c->q_chunks;
		if (c->state != CS_DERP)
			continue;
		derp++;
		home += c->preferred;
		notideal += c->notideal;
		/* Registered: in the table, exactly once, flags right. */
		e = keytab_find(s, c->key);
		FUZZ_CHECK(e != NULL, "slot %u registered but its key is not "
		    "in the table", i);
		n = 0;
		member = 0;
		for (j = e->first; j >= 0; j = s->conns[j].key_next) {
			FUZZ_CHECK(n++ < s->max, "key list loops");
			member += j == (int32_t)i;
		}
		FUZZ_CHECK(member == 1 && n == e->nconns, "slot %u: in its key "
		    "list %d times, list of %u, nconns %u", i, member, n,
		    e->nconns);
		FUZZ_CHECK(c->dup == (e->nconns > 1), "slot %u: dup %u with %u "
		    "connections", i, c->dup, e->nconns);
	}
	for (i = 1; i < p->lazy_next; i++)
		FUZZ_CHECK(fz_seen[i], "chunk %u leaked (on no list)", i);
	/* Slots: returned ones on the stack, [fresh, max) never used. */
	FUZZ_CHECK(s->fresh <= s->max && s->nfree + used == s->fresh,
	    "free slots %u + used %u != slots handed out %u", s->nfree, used,
	    s->fresh);

	/* P3, P4: what the budgets borrow is the spare in use (the harness's
	 * own hold counts as a borrower), and free plus queued chunks cover
	 * every slot's unused budgets, slots never used included. */
	n = fz_hold_n;
	for (i = 0; i < s->max; i++)
		n += s->conns[i].state != CS_FREE ? hold_over(&s->conns[i]) : 0;
	FUZZ_CHECK(n == s->spare_used && s->spare_used <= s->spare_cap,
	    "spare: borrowed %u, spare_used %u of %u", n, s->spare_used,
	    s->spare_cap);
	unused += (s->max - used) * CHUNKS_PER_CONN;
	FUZZ_CHECK(p->free_count + queued >= unused + (s->spare_cap -
	    s->spare_used), "P4: free %u + queued %u < unused budgets %u + "
	    "spare left %u", p->free_count, queued, unused,
	    s->spare_cap - s->spare_used);
	fz_check_qheap();
	fz_check_pending(used - derp, derp);
	fz_check_senders();

	/* The key table holds exactly the registered connections. */
	for (i = 0; i <= s->keytab_mask; i++) {
		e = &s->keytab[i];
		if (e->nconns == 0)
			continue;
		keys++;
		member = 0;
		for (j = e->first; j >= 0; j = s->conns[j].key_next) {
			c = &s->conns[j];
			FUZZ_CHECK(c->state == CS_DERP && memcmp(c->key, e->key,
			    KEY_BYTES) == 0, "key table entry %u lists slot %d "
			    "in state %u", i, j, c->state);
			member += j == e->active;
		}
		FUZZ_CHECK(member == 1, "key table entry %u: active slot %d not "
		    "in its list", i, e->active);
		FUZZ_CHECK(keytab_find(s, e->key) == e, "entry %u not found "
		    "by its key", i);
	}
	FUZZ_CHECK(keys == s->nkeys, "nkeys %u, table holds %u", s->nkeys, keys);
	FUZZ_CHECK(s->st.current_connections == derp, "current_connections %u, "
	    "registered %u", s->st.current_connections, derp);
	FUZZ_CHECK(s->st.current_home == home, "current_home %u, preferred %u",
	    s->st.current_home, home);
	FUZZ_CHECK(s->st.current_notideal == notideal, "current_notideal %u, "
	    "not ideal %u", s->st.current_notideal, notideal);
	fz_check_ring(&s->dirty, "dirty");
	fz_check_ring(&s->paused, "paused");
	fz_check_ring(&s->spare_q, "spare line");
}

/* What the relay sent to a connection the harness registered. */
FUZZ_HELPER FUZZ_NOCOV static void
fz_check_stream(struct fz_handle *h, const uint8_t *p, size_t n)
{
	size_t k;
	uint32_t len;
	int i, known;

	while (n > 0) {
		if (h->hdr_len < FRAME_HEADER_BYTES) {
			h->hdr[h->hdr_len++] = *p++;
			n--;
			if (h->hdr_len < FRAME_HEADER_BYTES)
				continue;
			h->type = h->hdr[0];
			len = get_be32(h->hdr + 1);
			h->left = len;
			h->src_got = 0;
			if (h->frames++ == 0)
				FUZZ_CHECK(h->type == FRAME_SERVER_INFO && len ==
				    NACL_NONCE_BYTES + NACL_TAG_BYTES + 13,
				    "first frame: type %u len %u", h->type, len);
			else
				FUZZ_CHECK((h->type == FRAME_RECV_PACKET &&
				    len >= KEY_BYTES &&
				    len <= KEY_BYTES + MAX_PACKET_BYTES) ||
				    (h->type == FRAME_KEEP_ALIVE && len == 0) ||
				    (h->type == FRAME_PEER_GONE &&
				    len == PEERGONE_BYTES) ||
				    (h->type == FRAME_PONG && len == PING_MIN_BYTES),
				    "relay sent frame type %u len %u", h->type, len);
		} else {
			k = n < h->left ? n : h->left;
			if (h->type == FRAME_RECV_PACKET && h->src_got < KEY_BYTES) {
				if (k > KEY_BYTES - h->src_got)
					k = KEY_BYTES - h->src_got;
				memcpy(h->src + h->src_got, p, k);
				h->src_got += (uint32_t)k;
				if (h->src_got == KEY_BYTES) {
					for (i = 0, known = 0; i < FZ_NKEYS; i++)
						known |= !memcmp(h->src, fz_keys[i],
						    KEY_BYTES);
					FUZZ_CHECK(known, "RecvPacket from a key "
					    "nobody registered");
				}
			}
			if (h->type == FRAME_PEER_GONE && h->left == 1)
				FUZZ_CHECK(*p == PEER_GONE_DISCONNECTED ||
				    *p == PEER_GONE_NOT_HERE, "PeerGone reason %u",
				    *p);
			h->left -= (uint32_t)k;
			p += k;
			n -= k;
		}
		if (h->hdr_len == FRAME_HEADER_BYTES && h->left == 0)
			h->hdr_len = 0;
	}
}

/* ---- driving ---- */

/* Forget handles whose slot the relay closed. */
FUZZ_HELPER FUZZ_NOCOV static void
fz_sync(void)
{
	int i;

	for (i = 0; i < FZ_MAX; i++)
		if (fz_h[i].open && fz_s->conns[fz_h[i].idx].state == CS_FREE)
			fz_h[i].open = 0;
}

/* Read what the relay sent, unless the client is stalled. */
FUZZ_HELPER FUZZ_NOCOV static void
fz_drain(struct fz_handle *h, int even_stalled)
{
	ssize_t n;

	if (h->remote < 0 || (h->stalled && !even_stalled))
		return;
	if (fz_drain_hook != NULL) {
		fz_drain_hook(h);
		return;
	}
	while ((n = read(h->remote, fz_drain_buf, sizeof fz_drain_buf)) > 0 ||
	    (n < 0 && errno == EINTR))
		if (n > 0 && h->checked)
			fz_check_stream(h, fz_drain_buf, (size_t)n);
}

/* derp_run admits handshake steps by time (hs_admit); the harness, which must
 * replay an input identically, admits a fixed number per round instead. */
#define FZ_HANDSHAKES_PER_ROUND	8

/* One round of derp_run's loop (keep in step with it). */
FUZZ_HELPER static void
fz_round(void)
{
	struct derp_server *s = fz_s;
	struct conn *c;
	int n, hs_budget = FZ_HANDSHAKES_PER_ROUND, i;
	uint32_t r;
	int32_t tag;

	do	/* EINTR: libFuzzer's timeout timer (SIGALRM) */
		n = poller_wait(&s->pl, 0);
	while (n < 0 && errno == EINTR);
	FUZZ_CHECK(n >= 0, "poller_wait: %s", strerror(errno));
	for (r = 0; r < (uint32_t)n; r++) {
		tag = s->pl.ready[r].tag;
		if (tag < 0)
			continue;	/* the listener: nobody connects to it */
		c = &s->conns[tag];
		if (c->state == CS_FREE)
			continue;
		if (conn_in_handshake(c) && hs_budget-- <= 0)
			continue;
		conn_service(s, c, s->pl.ready[r].revents);
	}
	/* A reset that arrives after poll: the flush finds it. */
	for (i = 0; i < FZ_MAX; i++)
		if (fz_h[i].reset_pending && fz_h[i].remote >= 0) {
			close(fz_h[i].remote);
			fz_h[i].remote = -1;
			fz_h[i].reset_pending = 0;
		}
	input_resume_paused(s);
	output_flush_dirty(s);
	if (s->now >= s->next_sweep_ms) {
		timers_sweep(s);
		output_flush_dirty(s);
		s->next_sweep_ms = s->now + LOOP_TICK_MS;
	}
	fz_sync();
	for (i = 0; i < FZ_MAX; i++)
		fz_drain(&fz_h[i], 0);
	fz_check();
	fz_trace("round");
}

FUZZ_HELPER static void
fz_tick(int64_t ms)
{
	fz_s->now += ms;
	fz_round();
}

/* Borrow spare chunks until at most `left` are left in the spare (the pool
 * under pressure from other clients holding what they may: POOLS, P3);
 * fz_release gives them back. */
FUZZ_HELPER FUZZ_NOCOV static void
fz_hold_chunks(uint32_t left)
{
	uint32_t i;

	while (fz_s->spare_used + left < fz_s->spare_cap) {
		if (fz_s->pool.free_count == 0 && pool_reclaim(fz_s, 1) != 0)
			break;
		i = pool_take(&fz_s->pool);
		fz_s->pool.chunks[i].next = fz_hold;
		fz_hold = i;
		fz_hold_n++;
		fz_s->spare_used++;
	}
}

FUZZ_HELPER FUZZ_NOCOV static void
fz_release(void)
{
	pool_give_chain(&fz_s->pool, fz_hold);
	fz_s->spare_used -= fz_hold_n;
	fz_hold = NIL;
	fz_hold_n = 0;
}

/* Per input: the clock, the random generator and the knobs. */
FUZZ_HELPER static void
fz_begin(int derp_on, const char *home, unsigned queue_depth, uint64_t rate,
    uint64_t burst, unsigned hash_variant)
{
	static const uint8_t seed[] = "derp fuzz: same input, same run";
	struct derp_server *s = fz_s;

	/* The key table is empty between inputs, so its hash seed may change:
	 * other seeds, other collisions among the harness's five keys. */
	s->hash_seed[0] = 0x0123456789abcdefULL * (hash_variant + 1);
	s->hash_seed[1] = 0xfedcba9876543210ULL ^ hash_variant;

	s->now = FZ_T0;
	s->next_sweep_ms = FZ_T0 + LOOP_TICK_MS;
	s->accept_last_ms = FZ_T0;
	br_hmac_drbg_init(&s->rng.drbg, &br_sha256_vtable, seed, sizeof seed);
	s->rng.uses = 0;
	s->cfg.derp = derp_on;
	s->cfg.home = home;
	s->cfg.queue_depth = queue_depth;
	s->rate.rate = rate;
	s->rate.burst = burst;
	/* -max-handshakes below the slot count in some runs, so newcomers
	 * meet the cap (refused, or evicting the oldest) with slots free. */
	s->pend[PEND_MAIN].cap = FZ_MAX - (hash_variant & 3);
	fz_check();
	FUZZ_CHECK(s->nfree == s->fresh && s->pool.free_count == s->pool.count,
	    "previous input left state behind");
}

/* Client addresses (IPv4 mapped): loopback, public, Tailscale's CGNAT range
 * and IPv6 ULA (both have debug access), IPv6 loopback. */
#define FZ_NADDRS	5
static const uint8_t fz_addrs[FZ_NADDRS][16] = {
	{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1 },
	{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 9 },
	{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 100, 101, 102, 103 },
	{ 0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53 },
	{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 },
};

/*
 * A new connection, accepted by the relay's own conn_accept from a
 * Unix-domain listener the harness owns (so no TCP port or TIME_WAIT per
 * input), then the rest of the accept round.  The peer address, which a Unix
 * socket does not have, is set afterwards: fz_addrs[addr].  A handle whose
 * connection the relay closed is reused (its client hangs up first).
 * Returns the handle index, or -1 when every slot is taken: the relay then
 * accepts and closes, as it does over -max-clients.
 */
FUZZ_HELPER static int
fz_open(int port80, int addr)
{
	struct derp_server *s = fz_s;
	struct fz_handle *h = NULL;
	struct conn *c;
	uint8_t before[FZ_MAX];
	uint32_t i, idx = UINT32_MAX;
	int fd, rc, v = FZ_SNDBUF;

	fz_sync();
	for (i = 0; i < FZ_MAX && h == NULL; i++)
		if (!fz_h[i].open)
			h = &fz_h[i];
	if (h != NULL && h->remote >= 0) {
		close(h->remote);
		h->remote = -1;
	}
	for (i = 0; i < FZ_MAX; i++)
		before[i] = s->conns[i].state != CS_FREE;
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	FUZZ_CHECK(fd >= 0, "socket: %s", strerror(errno));
	while ((rc = connect(fd, (const struct sockaddr *)&fz_addr,
	    sizeof fz_addr)) != 0 && errno == EINTR)
		;
	FUZZ_CHECK(rc == 0 && sock_nonblock(fd) == 0, "connect %s: %s",
	    fz_addr.sun_path, strerror(errno));
	conn_accept(s, fz_lfd, port80);
	for (i = 0; i < FZ_MAX; i++)
		if (!before[i] && s->conns[i].state != CS_FREE)
			idx = i;
	if (idx == UINT32_MAX || h == NULL) {	/* refused: no free slot */
		FUZZ_CHECK(idx == UINT32_MAX, "a slot with no handle");
		close(fd);
		return -1;
	}
	c = &s->conns[idx];
	if (fz_nfds < (int)(sizeof fz_fds / sizeof fz_fds[0]))
		fz_fds[fz_nfds++] = c->fd;
	(void)setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
	/* A Unix socket has no address: the relay filed the connection under
	 * the empty one; file it under the harness's choice instead. */
	pending_remove(s, c);
	memcpy(c->peer_ip, fz_addrs[addr % FZ_NADDRS], 16);
	c->peer_port = (uint16_t)(40000 + idx);
	pending_append(s, c, port80 ? PEND_PORT80 : PEND_MAIN);
	memset(h, 0, sizeof *h);
	h->open = 1;
	h->idx = idx;
	h->remote = fd;
	input_resume_paused(s);		/* the rest of the accept round */
	output_flush_dirty(s);
	fz_check();
	return (int)(h - fz_h);
}

/*
 * What derp_client_info does once the box has opened: register under
 * fz_keys[k] (derp.c's conn_register).  The harness then checks every frame
 * the relay sends this connection.
 */
FUZZ_HELPER static void
fz_register(int hi, int k)
{
	struct derp_server *s = fz_s;
	struct fz_handle *h = &fz_h[hi];
	struct conn *c = &s->conns[h->idx];

	memcpy(c->key, fz_keys[k], KEY_BYTES);
	memcpy(c->boxkey, fz_boxkeys[k], KEY_BYTES);
	c->can_ack_pings = 1;
	conn_register(s, c);
	mark_dirty(s, c);	/* closes it if the pool was exhausted */
	h->checked = 1;
	fz_round();
}

/* The client's bytes: as much as the socket takes (the rest is dropped, as
 * if the client gave up).  The relay reads them in the next fz_round. */
FUZZ_HELPER static void
fz_send(int hi, const uint8_t *p, size_t n)
{
	struct fz_handle *h = &fz_h[hi];
	ssize_t w;

	while (h->remote >= 0 && n > 0) {
		w = write(h->remote, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		p += w;
		n -= (size_t)w;
	}
}

/* A ClientInfo frame for fz_keys[k] (k >= 1) around the JSON text. */
FUZZ_HELPER static size_t
fz_client_info(uint8_t *out, size_t cap, int k, const uint8_t *json,
    size_t jlen)
{
	static const uint8_t nonce[NACL_NONCE_BYTES] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	size_t plen = KEY_BYTES + NACL_NONCE_BYTES + NACL_TAG_BYTES + jlen;

	if (k < 1 || k >= FZ_NKEYS || FRAME_HEADER_BYTES + plen > cap)
		return 0;
	frame_put_header(out, FRAME_CLIENT_INFO, (uint32_t)plen);
	memcpy(out + FRAME_HEADER_BYTES, fz_keys[k], KEY_BYTES);
	memcpy(out + FRAME_HEADER_BYTES + KEY_BYTES, nonce, NACL_NONCE_BYTES);
	nacl_box_seal_afternm(out + FRAME_HEADER_BYTES + KEY_BYTES +
	    NACL_NONCE_BYTES, json, jlen, nonce, fz_boxkeys[k]);
	return FRAME_HEADER_BYTES + plen;
}

/* The client hangs up: half (no more requests) or whole (reset). */
FUZZ_HELPER static void
fz_hangup(int hi, int whole)
{
	struct fz_handle *h = &fz_h[hi];

	if (h->remote < 0)
		return;
	if (whole) {
		close(h->remote);
		h->remote = -1;
	} else {
		(void)shutdown(h->remote, SHUT_WR);
	}
}

/*
 * The operations on the current client that fuzz_derp.c's and fuzz_tls.c's
 * inputs share (same byte, same meaning): EE the client stops / resumes
 * reading, EF resets, F0 half-closes, F1 n pool pressure (hold chunks until
 * n are free; FF releases), F2 the relay closes it (as a deadline would), F3
 * it resets after the next round's poll.  1 if b is one of them (its operand
 * consumed from data at *off).
 */
FUZZ_HELPER static int
fz_client_op(uint8_t b, int cur, const uint8_t *data, size_t size, size_t *off)
{
	switch (b) {
	case 0xEE:
		if (cur >= 0)
			fz_h[cur].stalled ^= 1;
		return 1;
	case 0xEF:
	case 0xF0:
		if (cur >= 0)
			fz_hangup(cur, b == 0xEF);
		return 1;
	case 0xF1:
		if (*off < size && data[*off] == 0xFF)
			fz_release();
		else if (*off < size)
			fz_hold_chunks(data[*off]);
		(*off)++;
		return 1;
	case 0xF2:
		if (cur >= 0 && fz_h[cur].open)
			conn_close(fz_s, &fz_s->conns[fz_h[cur].idx]);
		fz_sync();
		fz_check();
		return 1;
	case 0xF3:
		if (cur >= 0)
			fz_h[cur].reset_pending = 1;
		return 1;
	default:
		return 0;
	}
}

/*
 * End of an input: let output settle and a second pass, check that no packet
 * is stuck, hang up every client and let the relay notice, close what is
 * left, and check that everything came back: pool, slots, key table, gauges,
 * dirty and paused lists, descriptors.
 */
FUZZ_HELPER static void
fz_end(void)
{
	struct derp_server *s = fz_s;
	struct conn *c;
	uint32_t i;
	int k;

	fz_release();
	for (k = 0; k < 3; k++)
		fz_round();
	/* A second later (holds expire, the pool is free), no connection
	 * may still sit on a complete SendPacket: it would wait for the
	 * client's next bytes, which may never come. */
	fz_tick(1000);
	fz_round();
	for (i = 0; i < s->max; i++) {
		c = &s->conns[i];
		FUZZ_CHECK(!(c->state == CS_DERP && !c->dead &&
		    c->fhdr_len == FRAME_HEADER_BYTES &&
		    c->ftype == FRAME_SEND_PACKET && c->fgot == c->flen),
		    "slot %u: a complete SendPacket (%u bytes) was never routed "
		    "(held or paused, then not retried)", i, c->flen);
	}
	for (k = 0; k < FZ_MAX; k++) {
		fz_drain(&fz_h[k], 1);
		fz_hangup(k, 1);
	}
	for (k = 0; k < 3; k++)
		fz_round();
	for (i = 0; i < s->max; i++)
		if (s->conns[i].state != CS_FREE)
			conn_close(s, &s->conns[i]);
	output_flush_dirty(s);
	input_resume_paused(s);
	fz_sync();
	fz_check();
	for (k = 0; k < FZ_MAX; k++)
		FUZZ_CHECK(!fz_h[k].open && fz_h[k].remote < 0, "handle %d", k);
	/* Every descriptor the relay accepted is closed. */
	for (k = 0; k < fz_nfds; k++)
		FUZZ_CHECK(fcntl(fz_fds[k], F_GETFD) < 0 && errno == EBADF,
		    "descriptor %d of a closed connection still open",
		    fz_fds[k]);
	fz_nfds = 0;
	FUZZ_CHECK(s->pool.free_count == s->pool.count, "pool: %u of %u chunks "
	    "free after every connection closed", s->pool.free_count,
	    s->pool.count);
	FUZZ_CHECK(s->nfree == s->fresh && s->nkeys == 0 &&
	    s->dirty.count == 0 && s->paused.count == 0, "after closing all: "
	    "%u free slots, %u keys, %u dirty, %u paused", s->nfree, s->nkeys,
	    s->dirty.count, s->paused.count);
	FUZZ_CHECK(s->spare_used == 0 && s->nqheap == 0 &&
	    s->snd_spare_used == 0 && s->pend[PEND_MAIN].n == 0 &&
	    s->pend[PEND_PORT80].n == 0 && s->pend[SET_REG].n == 0,
	    "after closing all: spare %u, heap %u, spare records %u, sets %u + "
	    "%u + %u", s->spare_used, s->nqheap, s->snd_spare_used,
	    s->pend[PEND_MAIN].n, s->pend[PEND_PORT80].n, s->pend[SET_REG].n);
#ifndef POLLER_EPOLL
	FUZZ_CHECK(s->pl.n == 1, "poller still holds %u descriptors", s->pl.n);
#endif
}

#endif
