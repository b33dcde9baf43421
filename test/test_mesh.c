/*
 * test_mesh.c -- a region of real ./derp processes meshed on loopback, and
 * clients on its nodes talking across it (derp-protocol.md section 15, with
 * 10.3 forwarded delivery and 10.5 PeerGone across nodes).
 *
 * Usage: test_mesh DERP_BINARY SCRATCH_DIR
 *   DERP_BINARY  the server to test, e.g. ./derp
 *   SCRATCH_DIR  created if missing; holds each node's directory (its key
 *                file, certificate and key: node-A/ ...), the mesh key
 *                files and each node's log (node-A.log: stdout and stderr)
 *
 * The region: nodes A, B and C, each
 *   derp -a IP:PORT -certmode manual -certdir DIR -hostname IP -c KEYFILE
 *        -stun=false -http-port -1 -mesh-psk-file MESHKEY -mesh-with LIST
 * on 127.0.0.1, .2 and .3 where the host has every 127/8 address (Linux),
 * else (or with DERP_TEST_MESH_ONE_IP set in the environment) all on
 * 127.0.0.1 with three ports.  The test makes each node's
 * self-signed IP certificate (cert.c), so it knows every pin before the
 * first start; LIST names all three nodes, the node itself included (a node
 * finds itself by the server key), each entry IP:PORT=sha256-raw:<leaf hash>,
 * C's entry for A in the host/dialhost form.  A fourth node, D, with another
 * mesh key and -mesh-with naming A, is started near the end.
 *
 * When the region does not start with -mesh-with (a relay without meshing
 * refuses the flag), region_start fails and the nodes are started without
 * it, so that the checks of one node (WatchConns, mesh frames from clients
 * with and without the key) still judge the relay; every check that needs
 * two nodes then fails at once, saying why.  The count of checks never
 * changes (run.sh's floor).
 *
 * Output: one line per check, "ok NAME" or "FAIL NAME: DETAIL", lines
 * starting "# " with the configuration and timings, then "N passed, N
 * failed, N skipped".  Exit status 0 iff nothing failed.
 *
 * Nothing waits without a bound: every read has a timeout, polls for the
 * mesh to form have deadlines, and alarm() is a watchdog that kills every
 * node and fails the run.  Every node is stopped and reaped at the end.
 * Only loopback addresses are contacted.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
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

/* The whole run: about 40 s when everything passes (two 5 s mesh retries
 * at most), a few minutes when every mesh check waits out its deadline. */
#define WATCHDOG_S 480
#define START_MS 10000		/* a node up: key file, certificate read */
#define STOP_MS 2000		/* SIGTERM to exit 0, as test_integration */
#define CONNECT_MS 3000		/* TCP + TLS handshake on loopback */
#define IO_MS 3000		/* one frame across the region on loopback */
#define CLOSE_MS 3000		/* a violating connection closed within this */
#define QUIET_MS 500		/* "nothing more arrives" windows */
#define POLL_MS 250		/* resend interval while a mesh forms */
/* derper's mesh client retries every 5 s (spec 15.4; ours backs off from
 * 5 s, doubling, each +-25%): nodes started at the same moment find a peer
 * not yet listening and wait one retry, a restarted node is found on its
 * peers' next retry.  Room for two missed retries (6.25 + 12.5 s) and a
 * sanitizer build on a busy machine. */
#define MESH_FORM_MS 30000
#define MOVE_MS 10000		/* a key's PeerGone and PeerPresent, two hops */
#define GONE_MS 6000		/* PeerGone after a node's death or a leave */
#define ISOLATION_MS 2000	/* the foreign node: nothing gets through */
#define FOREIGN_DIAL_MS 8000	/* D's mesh client dials A: once, plus a retry */
#define PORT_TRIES 3		/* fresh ports when a node dies at start */
#define RESTART_TRIES 5		/* a killed node's port: TIME_WAIT and the like */
#define LOG_MAX (256 * 1024)	/* most of a node's log we read */
#define LOG_TAIL 1500		/* printed for a node that failed to start */

#define REGION 3		/* A, B, C: the meshed region */
#define NODES 4			/* ... and D, the foreign node */
#define SMALL_BYTES 100		/* a small packet: tag 9 bytes + filler */
#define MAX_PACKET_BYTES 65536	/* the largest packet (spec 9) */
#define EVENT_MAX 256		/* PeerPresent/PeerGone frames one client keeps */
/* A PeerPresent: key 32 + IPv6 address 16 + port 2 + flags 1 (spec 8). */
#define PEER_PRESENT_BYTES 51
#define PEER_GONE_BYTES 33	/* key 32 + reason 1 */
#define SERVER_KEY_MAGIC_BYTES 8

#define FT_SERVER_KEY 0x01
#define FT_RECV_PACKET 0x05
#define FT_PEER_GONE 0x08
#define FT_PEER_PRESENT 0x09
#define FT_FORWARD_PACKET 0x0a
#define FT_WATCH_CONNS 0x10
#define FT_CLOSE_PEER 0x11
#define FT_PING 0x12
#define FT_PONG 0x13

#define FLAG_REGULAR 0x01
#define FLAG_MESH 0x02
#define FLAG_PROBER 0x04
#define FLAG_NOT_IDEAL 0x08

/* ---- state -------------------------------------------------------------- */

struct node {
	char name;			/* 'A' .. 'D' */
	char ip[24];			/* 127.0.0.N */
	int port;
	char dir[400];			/* -certdir; the key file lives here too */
	char key_path[450], log_path[450];
	const char *mesh_key_path;	/* -mesh-psk-file */
	char pin_hex[65];		/* SHA-256 of the leaf DER, hex */
	uint8_t server_pk[32];		/* from ServerKey, first start */
	int have_pk;
	char mesh_with[700];		/* -mesh-with, built by region_plan */
	volatile pid_t pid;
};

/* One test client: the blocking client of client.h, plus the PeerPresent
 * and PeerGone frames it has read, in order (events), so that a check can
 * ask "did X arrive after mark" whatever other frames were read first. */
struct event {
	uint8_t type;
	size_t len;			/* the frame's payload length */
	uint8_t p[PEER_PRESENT_BYTES];	/* its first bytes */
};
/* A client's key pair, kept to connect again with it (a move, a duplicate). */
struct keypair {
	uint8_t sk[32], pk[32];
};
struct cl {
	struct dclient *dc;
	const struct node *node;
	char name[32];
	int closed;			/* a read saw EOF or an error */
	int nev;
	struct event ev[EVENT_MAX];
};

static const char *derp_path, *scratch;
static struct node nodes[NODES];
static char mesh_hex[65], other_hex[65];
static char mesh_path[450], other_path[450];
static char mesh_json[128];
static int distinct_ips;

/* The region as it runs: region_up (its three nodes answer), meshed (they
 * were given -mesh-with) and mesh_why (NULL while checks across nodes can
 * be judged; else why not, for their FAIL lines). */
static int region_up, meshed;
static const char *mesh_why = "region not started";
/* received[i][j]: node i's long-lived client has had a packet from node
 * j's (pairs), so losing j's client owes it a PeerGone (kill_peer_gone). */
static int received[REGION][REGION];
static struct cl *peer[REGION];		/* a1, b1, c1: one per node */

/* Frames are read here (one test runs at a time). */
static uint8_t fbuf[DC_MAX_FRAME];
static uint8_t pay[MAX_PACKET_BYTES], pay2[MAX_PACKET_BYTES];
static uint64_t tag_seq, tag_salt;

/* ---- watchdog and processes --------------------------------------------- */

static void
kill_nodes_now(void)
{
	int i;

	for (i = 0; i < NODES; i++)
		if (nodes[i].pid > 0)
			kill(nodes[i].pid, SIGKILL);
}

static void
on_alarm(int sig)
{
	static const char msg[] = "FAIL watchdog: the run exceeded its time"
	    " budget; nodes killed\n";

	(void)sig;
	kill_nodes_now();
	if (write(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(2);
	if (dc_write_counts(1) < 0)
		_exit(2);
	_exit(1);
}

/* The node's command line into argv (room for cap pointers, NULL last);
 * with_mesh adds -mesh-with.  The strings live in static buffers per node. */
static void
node_argv(struct node *n, int with_mesh, char **argv, size_t cap)
{
	static char addr[NODES][32];
	int k = (int)(n - nodes);
	size_t i = 0;

	snprintf(addr[k], sizeof(addr[k]), "%s:%d", n->ip, n->port);
	argv[i++] = (char *)derp_path;
	/* As root the relay wants -user or -allow-root (README). */
	if (geteuid() == 0)
		argv[i++] = "-allow-root";
	argv[i++] = "-a";
	argv[i++] = addr[k];
	argv[i++] = "-certmode";
	argv[i++] = "manual";
	argv[i++] = "-certdir";
	argv[i++] = n->dir;
	argv[i++] = "-hostname";
	argv[i++] = n->ip;
	argv[i++] = "-c";
	argv[i++] = n->key_path;
	argv[i++] = "-stun=false";
	argv[i++] = "-http-port";
	argv[i++] = "-1";
	argv[i++] = "-mesh-psk-file";
	argv[i++] = (char *)n->mesh_key_path;
	if (with_mesh) {
		argv[i++] = "-mesh-with";
		argv[i++] = n->mesh_with;
	}
	argv[i] = NULL;
	(void)cap;
}

static int
node_spawn(struct node *n, int with_mesh)
{
	char *argv[24];

	node_argv(n, with_mesh, argv, sizeof(argv) / sizeof(argv[0]));
	n->pid = dc_spawn_logged(argv, n->log_path, NULL, NULL);
	return n->pid < 0 ? -1 : 0;
}

/* 1 when the node accepts TCP connections, 0 when it exited at start (pid
 * reaped), -1 when it runs but does not listen within START_MS. */
static int
node_wait_ready(struct node *n)
{
	int r = dc_wait_serving(n->pid, n->ip, &n->port, 1, START_MS, 50, NULL);

	if (r == 0)
		n->pid = -1;
	return r;
}

/* SIGKILL and reap (bounded: SIGKILL cannot be caught). */
static void
node_kill(struct node *n)
{
	if (n->pid <= 0)
		return;
	dc_kill_reap(n->pid, NULL);
	n->pid = -1;
}

/* SIGTERM; NULL when it exits with status 0 within STOP_MS, else why (it
 * is then killed and reaped). */
static const char *
node_stop(struct node *n)
{
	static char why[120];
	int status = 0, exited;

	if (n->pid <= 0)
		return NULL;
	exited = dc_stop_child(n->pid, SIGTERM, STOP_MS, &status);
	n->pid = -1;
	if (!exited) {
		snprintf(why, sizeof(why), "node %c still running %d ms"
		    " after SIGTERM; killed", n->name, STOP_MS);
		return why;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return NULL;
	if (WIFEXITED(status))
		snprintf(why, sizeof(why), "node %c exit status %d", n->name,
		    WEXITSTATUS(status));
	else
		snprintf(why, sizeof(why), "node %c killed by signal %d",
		    n->name, WTERMSIG(status));
	return why;
}

/* Is the node still running?  (Reaps it if not.) */
static int
node_alive(struct node *n)
{
	int status;

	if (n->pid <= 0)
		return 0;
	if (waitpid(n->pid, &status, WNOHANG) == n->pid) {
		n->pid = -1;
		return 0;
	}
	return 1;
}

/* ---- payloads ----------------------------------------------------------- */

/*
 * A fresh packet of len bytes (len >= 9) into buf: a zero byte (so never
 * the disco magic "TS", spec 10.6: no NotHere, the "other" queue), a
 * sequence number unique in the run (8 bytes), then filler from it.  Every
 * exchange has its own packet, so an old copy arriving late never passes.
 */
static void
make_payload(uint8_t *buf, size_t len)
{
	uint64_t x;
	size_t i;

	tag_seq++;
	buf[0] = 0;
	for (i = 0; i < 8; i++)
		buf[1 + i] = (uint8_t)(tag_seq >> (56 - 8 * i));
	x = tag_seq * 0x9E3779B97F4A7C15ULL ^ tag_salt;
	for (i = 9; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (uint8_t)(x >> 24);
	}
}

/* ---- clients ------------------------------------------------------------ */

static void
cl_free(struct cl *c)
{
	if (c == NULL)
		return;
	dc_free(c->dc);
	free(c);
}

static void
key_of(const struct cl *c, struct keypair *kp)
{
	memcpy(kp->sk, c->dc->sk, 32);
	memcpy(kp->pk, c->dc->pk, 32);
}

static struct cl *
cl_alloc(const struct node *n, const char *name, const struct keypair *kp)
{
	struct cl *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->dc = dc_new();
	if (c->dc == NULL) {
		free(c);
		return NULL;
	}
	c->node = n;
	snprintf(c->name, sizeof(c->name), "%s", name);
	if (kp != NULL) {
		memcpy(c->dc->sk, kp->sk, 32);
		memcpy(c->dc->pk, kp->pk, 32);
	} else {
		dc_genkey(c->dc);
	}
	return c;
}

/*
 * A client of node n, TLS and handshaken, whose ClientInfo is json (NULL:
 * tailscaled's); with the key pair kp when given (a reconnection, a
 * duplicate), else a fresh one.  NULL on failure.
 */
static struct cl *
cl_open(const struct node *n, const char *name, const char *json,
    const struct keypair *kp)
{
	struct cl *c = cl_alloc(n, name, kp);

	if (c == NULL)
		return NULL;
	if (dc_connect(c->dc, n->ip, n->port, 1, NULL, CONNECT_MS) < 0 ||
	    dc_handshake(c->dc, 0, json, IO_MS) < 0) {
		cl_free(c);
		return NULL;
	}
	return c;
}

/*
 * A client whose upgrade request carries "Ideal-Node:" (spec 5.1: sent
 * when connected to a node other than the region's first; the relay flags
 * it not-ideal, PeerPresent 0x08): the handshake by hand, with client.h's
 * pieces.
 */
static struct cl *
cl_open_not_ideal(const struct node *n, const char *name)
{
	static const uint8_t magic[SERVER_KEY_MAGIC_BYTES] = { 0x44, 0x45, 0x52,
	    0x50, 0xF0, 0x9F, 0x94, 0x91 };
	static char head[DC_HEAD_MAX];
	struct cl *c = cl_alloc(n, name, NULL);
	char req[600], req2[700];
	uint8_t ci[512], type;
	const char *u;
	size_t len, cil;

	if (c == NULL)
		return NULL;
	if (dc_connect(c->dc, n->ip, n->port, 1, NULL, CONNECT_MS) < 0 ||
	    dc_upgrade_request(c->dc, 0, req, sizeof(req)) < 0 ||
	    (u = strstr(req, "Upgrade: DERP\r\n")) == NULL)
		goto fail;
	/* Go writes the headers after User-Agent sorted by name: Connection,
	 * Ideal-Node, Upgrade. */
	snprintf(req2, sizeof(req2), "%.*sIdeal-Node: derp2\r\n%s",
	    (int)(u - req), req, u);
	if (dc_http_request(c->dc, req2, head, sizeof(head), IO_MS) < 0 ||
	    dc_http_status(head) != 101)
		goto fail;
	if (dc_recv_frame(c->dc, &type, fbuf, sizeof(fbuf), &len, IO_MS) != 1 ||
	    type != FT_SERVER_KEY || len < SERVER_KEY_MAGIC_BYTES + 32 ||
	    memcmp(fbuf, magic, SERVER_KEY_MAGIC_BYTES) != 0)
		goto fail;
	memcpy(c->dc->server_pk, fbuf + SERVER_KEY_MAGIC_BYTES, 32);
	c->dc->got_server_key = 1;
	cil = dc_client_info_frame(c->dc, NULL, ci, sizeof(ci));
	if (cil == 0 || dc_write(c->dc, ci, cil) < 0 ||
	    dc_recv_server_info(c->dc, IO_MS) < 0)
		goto fail;
	return c;
fail:
	cl_free(c);
	return NULL;
}

/* One frame into fbuf; PeerPresent and PeerGone are also kept in c->ev.
 * 1, 0 (closed), -1, -2 (timeout) as dc_recv_frame. */
static int
read_frame(struct cl *c, uint8_t *type, size_t *len, int ms)
{
	int r = dc_recv_frame(c->dc, type, fbuf, sizeof(fbuf), len, ms);

	if (r == 0 || r == -1)
		c->closed = 1;
	if (r == 1 && (*type == FT_PEER_PRESENT || *type == FT_PEER_GONE) &&
	    c->nev < EVENT_MAX) {
		struct event *e = &c->ev[c->nev++];
		e->type = *type;
		e->len = *len;
		memcpy(e->p, fbuf, *len < sizeof(e->p) ? *len : sizeof(e->p));
	}
	return r;
}

/* The index of the first event of type for key at or after from, or -1. */
static int
find_event(const struct cl *c, uint8_t type, const uint8_t key[32], int from)
{
	int i;

	for (i = from; i < c->nev; i++)
		if (c->ev[i].type == type && c->ev[i].len >= 32 &&
		    memcmp(c->ev[i].p, key, 32) == 0)
			return i;
	return -1;
}

/* As find_event, reading frames for up to ms until one comes; -1. */
static int
wait_event(struct cl *c, uint8_t type, const uint8_t key[32], int from,
    int ms)
{
	int64_t deadline = dc_now_ms() + ms;

	for (;;) {
		uint8_t t;
		size_t n;
		int i = find_event(c, type, key, from);

		if (i >= 0)
			return i;
		if (dc_left_ms(deadline) == 0 ||
		    read_frame(c, &t, &n, dc_left_ms(deadline)) != 1)
			return -1;
	}
}

/* Read (and keep events of) whatever arrives for ms; 0, or -1 closed. */
static int
drain(struct cl *c, int ms)
{
	int64_t deadline = dc_now_ms() + ms;

	while (dc_left_ms(deadline) > 0) {
		uint8_t t;
		size_t n;
		int r = read_frame(c, &t, &n, dc_left_ms(deadline));

		if (r == 0 || r == -1)
			return -1;
	}
	return 0;
}

/* 1 when a RecvPacket from src (NULL: any source) holding exactly
 * pkt[len] arrives on c within ms (other frames and other packets are
 * read past), else 0.  A check that nothing gets through passes NULL: a
 * packet relayed under another source key got through all the same. */
static int
expect_packet(struct cl *c, const uint8_t src[32], const uint8_t *pkt,
    size_t len, int ms)
{
	int64_t deadline = dc_now_ms() + ms;

	while (dc_left_ms(deadline) > 0) {
		uint8_t t;
		size_t n;

		if (read_frame(c, &t, &n, dc_left_ms(deadline)) != 1)
			return 0;
		if (t == FT_RECV_PACKET && n == 32 + len &&
		    (src == NULL || memcmp(fbuf, src, 32) == 0) &&
		    memcmp(fbuf + 32, pkt, len) == 0)
			return 1;
	}
	return 0;
}

/* One packet of len bytes from a to b, which must get it within IO_MS with
 * a's key as source; NULL or why. */
static const char *
send_once(struct cl *a, struct cl *b, size_t len)
{
	make_payload(pay, len);
	if (dc_send_packet(a->dc, b->dc->pk, pay, len) < 0)
		return "SendPacket write failed";
	if (!expect_packet(b, a->dc->pk, pay, len, IO_MS))
		return "not delivered (or wrong source or content)";
	return NULL;
}

/* The same packet from a to b every POLL_MS until b gets it or deadline
 * (a mesh forming); 1 delivered, 0 not. */
static int
send_poll(struct cl *a, struct cl *b, size_t len, int64_t deadline)
{
	make_payload(pay, len);
	while (dc_left_ms(deadline) > 0) {
		int wait = dc_left_ms(deadline) < POLL_MS ? dc_left_ms(deadline) :
		    POLL_MS;

		if (dc_send_packet(a->dc, b->dc->pk, pay, len) < 0)
			return 0;
		if (expect_packet(b, a->dc->pk, pay, len, wait))
			return 1;
	}
	return 0;
}

/* Ping; 1 when the matching Pong comes within IO_MS. */
static int
cl_ping(struct cl *c)
{
	int64_t deadline = dc_now_ms() + IO_MS;
	uint8_t data[8];

	dc_random(data, sizeof(data));
	if (dc_send_frame(c->dc, FT_PING, data, sizeof(data)) < 0)
		return 0;
	while (dc_left_ms(deadline) > 0) {
		uint8_t t;
		size_t n;

		if (read_frame(c, &t, &n, dc_left_ms(deadline)) != 1)
			return 0;
		if (t == FT_PONG && n == 8 && memcmp(fbuf, data, 8) == 0)
			return 1;
	}
	return 0;
}

/* c's local address as PeerPresent carries it: 16 bytes (IPv4 mapped) and
 * the port; -1 if unknown. */
static int
local_addr(const struct cl *c, uint8_t ip[16], int *port)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(c->dc->fd, (struct sockaddr *)&ss, &sl) < 0)
		return -1;
	memset(ip, 0, 16);
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
		ip[10] = 0xff;
		ip[11] = 0xff;
		memcpy(ip + 12, &s4->sin_addr, 4);
		*port = ntohs(s4->sin_port);
	} else {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
		memcpy(ip, &s6->sin6_addr, 16);
		*port = ntohs(s6->sin6_port);
	}
	return 0;
}

/* Judge watcher event i as c's PeerPresent: 51 bytes, c's address (when
 * c is given) and flags; NULL or why. */
static const char *
present_check(const struct cl *w, int i, const struct cl *c, uint8_t flags)
{
	static char why[2 * INET6_ADDRSTRLEN + 80];
	const struct event *e;
	uint8_t ip[16];
	int port;

	if (i < 0)
		return w->closed ? "no PeerPresent: the relay closed the"
		    " watcher's connection" : "no PeerPresent for the key";
	e = &w->ev[i];
	if (e->len != PEER_PRESENT_BYTES) {
		snprintf(why, sizeof(why), "PeerPresent of %zu bytes, not %d",
		    e->len, PEER_PRESENT_BYTES);
		return why;
	}
	if (c != NULL) {
		char got[INET6_ADDRSTRLEN], want[INET6_ADDRSTRLEN];
		if (local_addr(c, ip, &port) < 0)
			return "getsockname failed";
		if (memcmp(e->p + 32, ip, 16) != 0 ||
		    (e->p[48] << 8 | e->p[49]) != port) {
			if (inet_ntop(AF_INET6, e->p + 32, got, sizeof(got)) ==
			    NULL || inet_ntop(AF_INET6, ip, want,
			    sizeof(want)) == NULL)
				return "PeerPresent address is not the client's";
			snprintf(why, sizeof(why), "PeerPresent address [%s]:%d,"
			    " the client's is [%s]:%d", got,
			    e->p[48] << 8 | e->p[49], want, port);
			return why;
		}
	}
	if (e->p[50] != flags) {
		snprintf(why, sizeof(why), "PeerPresent flags 0x%02x, expected"
		    " 0x%02x", e->p[50], flags);
		return why;
	}
	return NULL;
}

/* Judge event i as a PeerGone(Disconnected): 33 bytes, reason 0. */
static const char *
gone_check(const struct cl *c, int i, const char *none)
{
	static char why[300];
	const struct event *e;

	if (i < 0) {
		if (!c->closed)
			return none;
		snprintf(why, sizeof(why), "%s (the relay closed this"
		    " connection)", none);
		return why;
	}
	e = &c->ev[i];
	if (e->len != PEER_GONE_BYTES || e->p[32] != 0) {
		snprintf(why, sizeof(why), "PeerGone of %zu bytes, reason 0x%02x;"
		    " expected %d bytes, reason 0x00 (Disconnected)", e->len,
		    e->len > 32 ? e->p[32] : 0, PEER_GONE_BYTES);
		return why;
	}
	return NULL;
}

/* A frame of type with payload p[len] from c; 0 or -1. */
static int
send_raw(struct cl *c, uint8_t type, const void *p, size_t len)
{
	return dc_send_frame(c->dc, type, p, len);
}

static uint8_t fwd_frame[64 + MAX_PACKET_BYTES];

/* ForwardPacket(src, dst, pkt) from c, pkt fresh in pay (len bytes). */
static int
forward(struct cl *c, const uint8_t src[32], const uint8_t dst[32],
    size_t len)
{
	make_payload(pay, len);
	memcpy(fwd_frame, src, 32);
	memcpy(fwd_frame + 32, dst, 32);
	memcpy(fwd_frame + 64, pay, len);
	return send_raw(c, FT_FORWARD_PACKET, fwd_frame, 64 + len);
}

/* ---- setup: keys, certificates, the plan -------------------------------- */

static int
write_key_file(const char *path, char hex[65])
{
	uint8_t k[32];
	int fd;

	dc_random(k, sizeof(k));
	dc_tohex(k, 32, hex);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -1;
	if (write(fd, hex, 64) != 64 || write(fd, "\n", 1) != 1) {
		close(fd);
		return -1;
	}
	return close(fd);
}

/* Each node's directory, log and certificate (cert.c: as derp would make
 * it for an IP -hostname), and its pin.  NULL or why. */
static const char *
setup_nodes(void)
{
	static char why[400];
	int i;

	/* DERP_TEST_MESH_ONE_IP=1: the layout of a host with only 127.0.0.1. */
	distinct_ips = dc_can_bind("127.0.0.2") && dc_can_bind("127.0.0.3") &&
	    dc_can_bind("127.0.0.4") && getenv("DERP_TEST_MESH_ONE_IP") == NULL;
	for (i = 0; i < NODES; i++) {
		struct node *n = &nodes[i];
		char crt[500], key[500], err[200];
		struct cert_store cs;

		n->name = (char)('A' + i);
		n->pid = -1;
		snprintf(n->ip, sizeof(n->ip), "127.0.0.%d",
		    distinct_ips ? i + 1 : 1);
		snprintf(n->dir, sizeof(n->dir), "%s/node-%c", scratch, n->name);
		snprintf(n->key_path, sizeof(n->key_path),
		    "%s/node-%c/derper.key", scratch, n->name);
		snprintf(n->log_path, sizeof(n->log_path), "%s/node-%c.log",
		    scratch, n->name);
		n->mesh_key_path = i < REGION ? mesh_path : other_path;
		unlink(n->log_path);
		if (mkdir(n->dir, 0700) < 0 && errno != EEXIST) {
			snprintf(why, sizeof(why), "mkdir %s: %s", n->dir,
			    strerror(errno));
			return why;
		}
		snprintf(crt, sizeof(crt), "%s/%s.crt", n->dir, n->ip);
		snprintf(key, sizeof(key), "%s/%s.key", n->dir, n->ip);
		if (cert_generate_ip(crt, key, n->ip, time(NULL), err,
		    sizeof(err)) != 0 ||
		    cert_load_files(&cs, crt, key, err, sizeof(err)) != 0) {
			snprintf(why, sizeof(why), "certificate for node %c: %s",
			    n->name, err);
			return why;
		}
		dc_tohex(cs.leaf_sha256, 32, n->pin_hex);
		cert_free(&cs);
	}
	return NULL;
}

/* One -mesh-with entry naming node t: IP:PORT=sha256-raw:PIN, or with
 * dialhost, IP:PORT/IP=sha256-raw:PIN. */
static void
entry(char *out, size_t cap, const struct node *t, int dialhost)
{
	if (dialhost)
		snprintf(out, cap, "%s:%d/%s=sha256-raw:%s", t->ip, t->port,
		    t->ip, t->pin_hex);
	else
		snprintf(out, cap, "%s:%d=sha256-raw:%s", t->ip, t->port,
		    t->pin_hex);
}

/* Fresh ports for the region (and D) and the -mesh-with lists. */
static void
region_plan(void)
{
	char e[REGION][200], da[200];
	int i;

	for (i = 0; i < NODES; i++)
		nodes[i].port = dc_free_port(nodes[i].ip, SOCK_STREAM);
	for (i = 0; i < REGION; i++) {
		/* C reaches A through the host/dialhost form. */
		entry(e[0], sizeof(e[0]), &nodes[0], i == 2);
		entry(e[1], sizeof(e[1]), &nodes[1], 0);
		entry(e[2], sizeof(e[2]), &nodes[2], 0);
		snprintf(nodes[i].mesh_with, sizeof(nodes[i].mesh_with),
		    "%s,%s,%s", e[0], e[1], e[2]);
	}
	entry(da, sizeof(da), &nodes[0], 0);
	/* D also names B with a pin that is not B's leaf: that link must
	 * never come up (the certificate is not trusted). */
	entry(e[1], sizeof(e[1]), &nodes[1], 0);
	e[1][strlen(e[1]) - 1] = e[1][strlen(e[1]) - 1] == '0' ? '1' : '0';
	snprintf(nodes[3].mesh_with, sizeof(nodes[3].mesh_with), "%s,%s", da,
	    e[1]);
}

/* A TLS client to node n: its certificate must be the pinned one; the
 * server key is recorded (first start) or compared (a restart).  NULL or
 * why. */
static const char *
node_probe(struct node *n)
{
	static char why[200];
	struct cl *c = cl_open(n, "probe", NULL, NULL);
	char got[65];

	if (c == NULL) {
		snprintf(why, sizeof(why), "node %c: TLS or DERP handshake"
		    " failed", n->name);
		return why;
	}
	dc_tohex(c->dc->x509.leaf_sha256, 32, got);
	if (c->dc->x509.ncerts != 1 || strcmp(got, n->pin_hex) != 0) {
		snprintf(why, sizeof(why), "node %c presents %d certificate(s),"
		    " leaf %.16s.., not the pinned %.16s..", n->name,
		    c->dc->x509.ncerts, got, n->pin_hex);
		cl_free(c);
		return why;
	}
	if (n->have_pk && memcmp(n->server_pk, c->dc->server_pk, 32) != 0) {
		snprintf(why, sizeof(why), "node %c came back with another"
		    " server key (its -c file not reused)", n->name);
		cl_free(c);
		return why;
	}
	memcpy(n->server_pk, c->dc->server_pk, 32);
	n->have_pk = 1;
	cl_free(c);
	return NULL;
}

/* Start nodes[first..first+count) together (with_mesh: -mesh-with), with
 * fresh ports while one dies at start.  NULL or why. */
static const char *
nodes_start(int first, int count, int with_mesh)
{
	static char why[300];
	int t, i, r = 0;

	for (t = 1; t <= PORT_TRIES; t++) {
		int died = -1, stuck = -1;

		if (first == 0)
			region_plan();
		else
			for (i = first; i < first + count; i++)
				nodes[i].port = dc_free_port(nodes[i].ip, SOCK_STREAM);
		for (i = first; i < first + count; i++)
			if (node_spawn(&nodes[i], with_mesh) < 0) {
				snprintf(why, sizeof(why), "fork: %s",
				    strerror(errno));
				return why;
			}
		for (i = first; i < first + count; i++) {
			r = node_wait_ready(&nodes[i]);
			if (r == 0 && died < 0)
				died = i;
			if (r < 0 && stuck < 0)
				stuck = i;
		}
		if (died < 0 && stuck < 0)
			return NULL;
		for (i = first; i < first + count; i++)
			node_kill(&nodes[i]);
		if (stuck >= 0) {
			/* Alive but not listening: fresh ports will not help. */
			dc_show_log_tail(nodes[stuck].log_path, LOG_MAX, LOG_TAIL);
			snprintf(why, sizeof(why), "node %c not accepting"
			    " connections on %s:%d after %d ms; log %s",
			    nodes[stuck].name, nodes[stuck].ip,
			    nodes[stuck].port, START_MS, nodes[stuck].log_path);
			return why;
		}
		if (t == PORT_TRIES) {
			dc_show_log_tail(nodes[died].log_path, LOG_MAX, LOG_TAIL);
			snprintf(why, sizeof(why), "node %c exited at start-up %d"
			    " times (last port %d); log %s", nodes[died].name,
			    PORT_TRIES, nodes[died].port, nodes[died].log_path);
			return why;
		}
	}
	return "not started";
}

/* ---- the checks --------------------------------------------------------- */

static const char *const pair_size_name[2] = { "small", "64k" };

/* region_start: A, B and C meshed, each serving its pinned certificate;
 * else (reported) the same nodes without -mesh-with. */
static void
t_region_start(void)
{
	static char why[400];
	const char *e;
	int i;

	e = nodes_start(0, REGION, 1);
	for (i = 0; e == NULL && i < REGION; i++)
		e = node_probe(&nodes[i]);
	if (e == NULL) {
		dc_note("region: A %s:%d, B %s:%d, C %s:%d (%s)", nodes[0].ip,
		    nodes[0].port, nodes[1].ip, nodes[1].port, nodes[2].ip,
		    nodes[2].port, distinct_ips ? "one address each" :
		    "one address, three ports");
		dc_note("A -mesh-with %s", nodes[0].mesh_with);
		dc_note("C -mesh-with %s", nodes[2].mesh_with);
		dc_ok("region_start");
		region_up = meshed = 1;
		mesh_why = NULL;
		return;
	}
	snprintf(why, sizeof(why), "%s", e);
	dc_fail("region_start", "with -mesh-with: %s", why);
	for (i = 0; i < REGION; i++)
		node_kill(&nodes[i]);
	e = nodes_start(0, REGION, 0);
	for (i = 0; e == NULL && i < REGION; i++)
		e = node_probe(&nodes[i]);
	if (e != NULL) {
		dc_note("without -mesh-with the nodes do not start either: %s", e);
		mesh_why = "region not running (see region_start)";
		return;
	}
	dc_note("the nodes run without -mesh-with: one-node checks are judged,"
	    " checks across nodes fail");
	region_up = 1;
	mesh_why = "no mesh: the nodes run without -mesh-with (see"
	    " region_start)";
}

/* mesh_forms and pair_X_Y_SIZE: one long-lived client per node, and
 * packets between every ordered pair of nodes. */
static void
t_pairs(void)
{
	static const char *const region_names[] = { "mesh_forms" };
	char name[40];
	int i, j, s, formed = 1;
	int64_t t0, deadline;

	if (region_up)
		for (i = 0; i < REGION; i++) {
			char nm[8];
			snprintf(nm, sizeof(nm), "%c1", 'a' + i);
			peer[i] = cl_open(&nodes[i], nm, NULL, NULL);
			if (peer[i] == NULL) {
				region_up = 0;
				mesh_why = "a client could not connect to every"
				    " node";
			}
		}
	if (mesh_why != NULL) {
		dc_fail_all(region_names, 1, mesh_why);
		for (i = 0; i < REGION; i++)
			for (j = 0; j < REGION; j++)
				for (s = 0; s < 2 && i != j; s++) {
					snprintf(name, sizeof(name), "pair_%c_%c_%s",
					    'A' + i, 'A' + j, pair_size_name[s]);
					dc_fail(name, "%s", mesh_why);
				}
		return;
	}
	/* Until every ordered pair has had one small packet through. */
	t0 = dc_now_ms();
	deadline = t0 + MESH_FORM_MS;
	for (i = 0; i < REGION; i++)
		for (j = 0; j < REGION; j++) {
			if (i == j)
				continue;
			if (send_poll(peer[i], peer[j], SMALL_BYTES, deadline))
				received[j][i] = 1;
			else {
				formed = 0;
				dc_note("%c -> %c: nothing delivered within %d ms"
				    " of the start of mesh_forms", 'A' + i,
				    'A' + j, MESH_FORM_MS);
			}
		}
	if (formed) {
		dc_note("mesh formed: every pair delivered after %d ms",
		    (int)(dc_now_ms() - t0));
		dc_ok("mesh_forms");
	} else {
		dc_fail("mesh_forms", "not every ordered pair of nodes delivered a"
		    " packet within %d ms (lines above)", MESH_FORM_MS);
	}
	/* Once formed, one packet each, delivered at once. */
	for (i = 0; i < REGION; i++)
		for (j = 0; j < REGION; j++)
			for (s = 0; s < 2 && i != j; s++) {
				const char *e = send_once(peer[i], peer[j],
				    s == 0 ? SMALL_BYTES : MAX_PACKET_BYTES);
				snprintf(name, sizeof(name), "pair_%c_%c_%s",
				    'A' + i, 'A' + j, pair_size_name[s]);
				if (e == NULL)
					received[j][i] = 1;
				dc_verdict(name, e);
			}
	if (!formed)
		mesh_why = "the mesh did not form (see mesh_forms)";
}

/*
 * The watch stream of node A (spec 15.3), seen by a test client with the
 * mesh key: the initial flood (regular client, the watcher itself, B's and
 * C's mesh clients; no client of another node), then a PeerPresent per new
 * registration (regular, prober, not-ideal, a duplicate key) and a PeerGone
 * when a key's last connection leaves (not when a duplicate does).
 */
static void
t_watch(void)
{
	static const char *const names[] = { "watch_initial_regular",
	    "watch_initial_self", "watch_initial_mesh_peers",
	    "watch_local_only", "watch_new_regular", "watch_new_prober",
	    "watch_new_not_ideal", "watch_gone", "watch_duplicate_present",
	    "watch_duplicate_close_silent" };
	static const char prober_json[] =
	    "{\"version\":2,\"CanAckPings\":true,\"IsProber\":true}";
	struct cl *w, *n = NULL, *p = NULL, *q = NULL, *d = NULL, *z = NULL;
	struct node *a = &nodes[0];
	struct keypair kp;
	const char *e;
	uint8_t key[32];
	int mark, i;

	if (!region_up) {
		dc_fail_all(names, sizeof(names) / sizeof(names[0]), mesh_why);
		return;
	}
	w = cl_open(a, "watcher", mesh_json, NULL);
	if (w == NULL || send_raw(w, FT_WATCH_CONNS, NULL, 0) < 0) {
		dc_fail_all(names, sizeof(names) / sizeof(names[0]),
		    "a client with the mesh key could not connect to A or"
		    " send WatchConns");
		cl_free(w);
		return;
	}
	dc_verdict("watch_initial_regular", present_check(w,
	    wait_event(w, FT_PEER_PRESENT, peer[0]->dc->pk, 0, IO_MS), peer[0],
	    FLAG_REGULAR));
	dc_verdict("watch_initial_self", present_check(w,
	    wait_event(w, FT_PEER_PRESENT, w->dc->pk, 0, IO_MS), w, FLAG_MESH));
	/* B's and C's mesh clients are connected to A with their servers'
	 * keys (spec 15.4) and the mesh key. */
	if (mesh_why != NULL) {
		dc_fail("watch_initial_mesh_peers", "%s", mesh_why);
	} else {
		e = NULL;
		for (i = 1; i < REGION && e == NULL; i++) {
			e = present_check(w, wait_event(w, FT_PEER_PRESENT,
			    nodes[i].server_pk, 0, IO_MS), NULL, FLAG_MESH);
			if (e != NULL) {
				static char why[200];
				snprintf(why, sizeof(why), "node %c's mesh"
				    " client (its server key): %s", 'A' + i, e);
				e = why;
			}
		}
		dc_verdict("watch_initial_mesh_peers", e);
	}
	/* The flood names local connections only, never what A learned from
	 * its peers (that would loop through the region). */
	(void)drain(w, QUIET_MS);
	if (mesh_why != NULL)
		dc_fail("watch_local_only", "%s", mesh_why);
	else
		dc_verdict("watch_local_only",
		    find_event(w, FT_PEER_PRESENT, peer[1]->dc->pk, 0) >= 0 ||
		    find_event(w, FT_PEER_PRESENT, peer[2]->dc->pk, 0) >= 0 ?
		    "A announced a client of B or C to its watcher" : NULL);

	mark = w->nev;
	n = cl_open(a, "new", NULL, NULL);
	dc_verdict("watch_new_regular", n == NULL ? "new client refused" :
	    present_check(w, wait_event(w, FT_PEER_PRESENT, n->dc->pk, mark,
	    IO_MS), n, FLAG_REGULAR));
	mark = w->nev;
	p = cl_open(a, "prober", prober_json, NULL);
	dc_verdict("watch_new_prober", p == NULL ? "prober refused" :
	    present_check(w, wait_event(w, FT_PEER_PRESENT, p->dc->pk, mark,
	    IO_MS), p, FLAG_PROBER));
	mark = w->nev;
	q = cl_open_not_ideal(a, "not-ideal");
	dc_verdict("watch_new_not_ideal", q == NULL ? "client with Ideal-Node"
	    " refused" : present_check(w, wait_event(w, FT_PEER_PRESENT,
	    q->dc->pk, mark, IO_MS), q, FLAG_NOT_IDEAL));
	if (n == NULL) {
		dc_fail("watch_gone", "no client to leave");
	} else {
		memcpy(key, n->dc->pk, 32);
		mark = w->nev;
		cl_free(n);
		n = NULL;
		dc_verdict("watch_gone", gone_check(w, wait_event(w, FT_PEER_GONE,
		    key, mark, IO_MS), "no PeerGone when the client left"));
	}
	/* A second connection of a1's key: announced (with its own address);
	 * its leaving, a1 staying, is not a PeerGone. */
	mark = w->nev;
	key_of(peer[0], &kp);
	d = cl_open(a, "a1-dup", NULL, &kp);
	dc_verdict("watch_duplicate_present", d == NULL ? "duplicate refused" :
	    present_check(w, wait_event(w, FT_PEER_PRESENT, peer[0]->dc->pk,
	    mark, IO_MS), d, FLAG_REGULAR));
	mark = w->nev;
	cl_free(d);
	d = NULL;
	(void)drain(w, QUIET_MS);
	/* The stream is ordered: once z's PeerPresent is in, a PeerGone for
	 * a1 queued at d's leaving would be too. */
	z = cl_open(a, "z", NULL, NULL);
	if (z == NULL || wait_event(w, FT_PEER_PRESENT, z->dc->pk, mark,
	    IO_MS) < 0)
		dc_fail("watch_duplicate_close_silent", "the watch stream went"
		    " quiet (no PeerPresent for a later client)");
	else
		dc_verdict("watch_duplicate_close_silent",
		    find_event(w, FT_PEER_GONE, peer[0]->dc->pk, mark) >= 0 ?
		    "PeerGone for a1 when only its duplicate left" : NULL);
	cl_free(n);
	cl_free(p);
	cl_free(q);
	cl_free(z);
	cl_free(w);
}

/* Mesh frames from clients without the key (spec 9: "mesh peer" is a
 * condition of WatchConns, ForwardPacket and ClosePeer; a violation
 * closes, as derper): each closes that client only. */
static void
t_not_mesh(void)
{
	static const char *const names[] = { "wrong_mesh_key_watch_closed",
	    "not_mesh_watch_conns_closed", "not_mesh_forward_packet_closed",
	    "not_mesh_close_peer_closed", "not_mesh_node_still_serves" };
	struct node *a = &nodes[0];
	struct cl *r, *t;
	char json[128];
	uint8_t src[32];
	const char *e;

	if (!region_up) {
		dc_fail_all(names, sizeof(names) / sizeof(names[0]), mesh_why);
		return;
	}
	/* Well-formed but wrong: a regular client (spec 7.2). */
	snprintf(json, sizeof(json), "{\"version\":2,\"meshKey\":\"%s\"}",
	    mesh_hex);
	json[24] = json[24] == '0' ? '1' : '0';
	r = cl_open(a, "wrong-key", json, NULL);
	if (r == NULL)
		e = "handshake with a wrong mesh key refused (it is a regular"
		    " client)";
	else if (send_raw(r, FT_WATCH_CONNS, NULL, 0) < 0)
		e = "WatchConns write failed";
	else
		e = dc_expect_close(r->dc, CLOSE_MS) ? NULL :
		    "WatchConns from a wrong mesh key did not close";
	dc_verdict("wrong_mesh_key_watch_closed", e);
	cl_free(r);

	r = cl_open(a, "regular", NULL, NULL);
	e = r == NULL ? "connect failed" :
	    send_raw(r, FT_WATCH_CONNS, NULL, 0) < 0 ? "write failed" :
	    dc_expect_close(r->dc, CLOSE_MS) ? NULL :
	    "WatchConns from a regular client did not close";
	dc_verdict("not_mesh_watch_conns_closed", e);
	cl_free(r);

	/* t: the target of the ForwardPacket and the ClosePeer. */
	t = cl_open(a, "target", NULL, NULL);
	r = cl_open(a, "regular", NULL, NULL);
	dc_random(src, 32);
	if (t == NULL || r == NULL)
		e = "connect failed";
	else if (forward(r, src, t->dc->pk, SMALL_BYTES) < 0)
		e = "write failed";
	else if (!dc_expect_close(r->dc, CLOSE_MS))
		e = "ForwardPacket from a regular client did not close";
	else if (expect_packet(t, NULL, pay, SMALL_BYTES, QUIET_MS))
		e = "closed, but the packet was delivered";
	else
		e = NULL;
	dc_verdict("not_mesh_forward_packet_closed", e);
	cl_free(r);

	r = cl_open(a, "regular", NULL, NULL);
	if (t == NULL || r == NULL)
		e = "connect failed";
	else if (send_raw(r, FT_CLOSE_PEER, t->dc->pk, 32) < 0)
		e = "write failed";
	else if (!dc_expect_close(r->dc, CLOSE_MS))
		e = "ClosePeer from a regular client did not close";
	else if (!cl_ping(t))
		e = "closed, but so was its target";
	else
		e = NULL;
	dc_verdict("not_mesh_close_peer_closed", e);
	cl_free(r);

	e = !node_alive(a) ? "node A exited" :
	    t == NULL ? "connect failed" : send_once(peer[0], t, SMALL_BYTES);
	if (e == NULL && !cl_ping(peer[0]))
		e = "a1 got no Pong";
	dc_verdict("not_mesh_node_still_serves", e);
	cl_free(t);
}

/* A test client with the mesh key on B (spec 9, 10.3, 15.6): its
 * ForwardPacket is delivered to B's client with the frame's source, never
 * forwarded on to another node; its ClosePeer closes B's connection of
 * that key, and nothing of another node's. */
static void
t_mesh_frames(void)
{
	static const char *const names[] = { "mesh_forward_packet",
	    "mesh_forward_packet_64k", "mesh_forward_not_reforwarded",
	    "mesh_close_peer", "mesh_close_peer_local_only" };
	struct node *b = &nodes[1];
	struct cl *m, *t = NULL;
	uint8_t src[32];
	const char *e;
	int s;

	if (!region_up) {
		dc_fail_all(names, sizeof(names) / sizeof(names[0]), mesh_why);
		return;
	}
	m = cl_open(b, "mesh", mesh_json, NULL);
	if (m == NULL) {
		dc_fail_all(names, sizeof(names) / sizeof(names[0]),
		    "a client with the mesh key could not connect to B");
		return;
	}
	for (s = 0; s < 2; s++) {
		size_t len = s == 0 ? SMALL_BYTES : MAX_PACKET_BYTES;
		dc_random(src, 32);
		if (forward(m, src, peer[1]->dc->pk, len) < 0)
			e = "write failed (connection closed)";
		else if (!expect_packet(peer[1], src, pay, len, IO_MS))
			e = "b1 got no RecvPacket with the forwarded source and"
			    " content";
		else
			e = NULL;
		dc_verdict(s == 0 ? "mesh_forward_packet" :
		    "mesh_forward_packet_64k", e);
	}

	/* a1 lives on A, which B knows through the mesh: one hop only. */
	if (mesh_why != NULL) {
		dc_fail("mesh_forward_not_reforwarded", "%s", mesh_why);
	} else {
		dc_random(src, 32);
		if (forward(m, src, peer[0]->dc->pk, SMALL_BYTES) < 0)
			e = "write failed";
		else if (expect_packet(peer[0], NULL, pay, SMALL_BYTES,
		    2 * QUIET_MS))
			e = "a ForwardPacket to a key of node A, sent to B, was"
			    " forwarded again and reached A's client";
		else
			e = send_once(peer[1], peer[0], SMALL_BYTES);
		dc_verdict("mesh_forward_not_reforwarded", e);
	}

	t = cl_open(b, "b2", NULL, NULL);
	if (t == NULL)
		e = "connect failed";
	else if (send_raw(m, FT_CLOSE_PEER, t->dc->pk, 32) < 0)
		e = "write failed (connection closed)";
	else if (!dc_expect_close(t->dc, CLOSE_MS))
		e = "the target of ClosePeer stayed open";
	else if (!cl_ping(m))
		e = "the mesh client got no Pong after its ClosePeer";
	else if (!cl_ping(peer[1]))
		e = "b1 (not the target) got no Pong";
	else
		e = NULL;
	dc_verdict("mesh_close_peer", e);
	cl_free(t);

	/* ClosePeer on B for a key connected to A (known to B through the
	 * mesh): "close every local connection", of which there is none. */
	if (mesh_why != NULL) {
		dc_fail("mesh_close_peer_local_only", "%s", mesh_why);
	} else {
		t = cl_open(&nodes[0], "a3", NULL, NULL);
		if (t == NULL)
			e = "connect failed";
		else if (!send_poll(peer[1], t, SMALL_BYTES, dc_now_ms() + MOVE_MS))
			e = "b1 -> a3 not delivered";
		else if (send_raw(m, FT_CLOSE_PEER, t->dc->pk, 32) < 0)
			e = "write failed";
		else if (drain(t, QUIET_MS) < 0 || !cl_ping(t))
			e = "ClosePeer sent to B closed a client of A";
		else
			e = NULL;
		dc_verdict("mesh_close_peer_local_only", e);
		cl_free(t);
	}
	cl_free(m);
}

/* PeerGone across nodes (spec 10.5, 15.4): X on A received from Y on B, Z
 * on A only sent to Y; Y leaves: X is told, Z is not. */
static void
t_cross_peer_gone(void)
{
	static const char *const names[] = { "cross_peer_gone",
	    "cross_peer_gone_only_recipients" };
	struct cl *x, *y, *z;
	uint8_t ykey[32];
	const char *e;

	if (mesh_why != NULL) {
		dc_fail_all(names, 2, mesh_why);
		return;
	}
	x = cl_open(&nodes[0], "x", NULL, NULL);
	z = cl_open(&nodes[0], "z", NULL, NULL);
	y = cl_open(&nodes[1], "y", NULL, NULL);
	if (x == NULL || y == NULL || z == NULL) {
		dc_fail_all(names, 2, "connect failed");
		goto out;
	}
	if (!send_poll(y, x, SMALL_BYTES, dc_now_ms() + MOVE_MS) ||
	    !send_poll(z, y, SMALL_BYTES, dc_now_ms() + MOVE_MS)) {
		dc_fail_all(names, 2, "y -> x or z -> y not delivered");
		goto out;
	}
	memcpy(ykey, y->dc->pk, 32);
	cl_free(y);
	y = NULL;
	e = gone_check(x, wait_event(x, FT_PEER_GONE, ykey, 0, GONE_MS),
	    "x (on A) got no PeerGone after y (on B), which had sent to it,"
	    " left");
	dc_verdict("cross_peer_gone", e);
	/* Z's notice, if any, was queued with X's: before this packet, or
	 * (control frames written apart from packets) just after it. */
	if (e != NULL)
		dc_fail("cross_peer_gone_only_recipients", "no PeerGone to X"
		    " either (cross_peer_gone)");
	else if (send_once(x, z, SMALL_BYTES) != NULL || drain(z, QUIET_MS) < 0)
		dc_fail("cross_peer_gone_only_recipients", "x -> z not delivered");
	else
		dc_verdict("cross_peer_gone_only_recipients",
		    find_event(z, FT_PEER_GONE, ykey, 0) >= 0 ? "PeerGone(y) to"
		    " z, which never received from y" : NULL);
out:
	cl_free(x);
	cl_free(y);
	cl_free(z);
}

/*
 * A client moving from A to B with its key, c1 on C sending to it.  A
 * clean move (leave A, then join B): c1's packets find it at B.  An
 * overlapping one (join B, then leave A, after it sent to c1): the key
 * never leaves the region, so c1 is owed no PeerGone (spec 10.5, 15.4:
 * C keeps B's forwarder when A's goes).
 */
static void
t_move(void)
{
	static const char *const names[] = { "move_client_reached",
	    "move_client_sends", "move_overlap_reached",
	    "move_overlap_no_peer_gone" };
	struct cl *c1 = peer[2], *m, *m2 = NULL;
	struct keypair kp;
	int mark;

	if (mesh_why != NULL) {
		dc_fail_all(names, 4, mesh_why);
		return;
	}
	m = cl_open(&nodes[0], "k-at-A", NULL, NULL);
	if (m == NULL || !send_poll(c1, m, SMALL_BYTES, dc_now_ms() + MOVE_MS)) {
		dc_fail_all(names, 2, "before the move: c1 (on C) -> a client on A"
		    " not delivered");
		cl_free(m);
	} else {
		key_of(m, &kp);
		cl_free(m);
		m = cl_open(&nodes[1], "k-at-B", NULL, &kp);
		if (m == NULL) {
			dc_fail_all(names, 2, "the same key refused at B");
		} else {
			dc_verdict("move_client_reached", send_poll(c1, m,
			    SMALL_BYTES, dc_now_ms() + MOVE_MS) ? NULL : "c1 (on"
			    " C) -> the key moved from A to B: not delivered"
			    " within 10 s");
			dc_verdict("move_client_sends", send_once(m, c1,
			    SMALL_BYTES));
		}
		cl_free(m);
	}

	m = cl_open(&nodes[0], "k2-at-A", NULL, NULL);
	if (m == NULL || !send_poll(c1, m, SMALL_BYTES, dc_now_ms() + MOVE_MS) ||
	    send_once(m, c1, SMALL_BYTES) != NULL) {
		dc_fail_all(names + 2, 2, "before the move: c1 (on C) and a"
		    " client on A could not exchange packets");
		cl_free(m);
		return;
	}
	key_of(m, &kp);
	m2 = cl_open(&nodes[1], "k2-at-B", NULL, &kp);
	if (m2 == NULL) {
		dc_fail_all(names + 2, 2, "the same key refused at B");
		cl_free(m);
		return;
	}
	/* B's PeerPresent reaches C before A's PeerGone. */
	(void)drain(c1, QUIET_MS);
	mark = c1->nev;
	cl_free(m);
	if (!send_poll(c1, m2, SMALL_BYTES, dc_now_ms() + MOVE_MS)) {
		dc_fail_all(names + 2, 2, "c1 (on C) -> the key, now only at B: not"
		    " delivered within 10 s");
	} else {
		dc_ok("move_overlap_reached");
		/* A PeerGone would have been queued when C dropped A's
		 * forwarder, which it did before routing to B (A's was
		 * first), or at the latest just after: a Pong and a quiet
		 * spell later it is in. */
		(void)cl_ping(c1);
		(void)drain(c1, QUIET_MS);
		dc_verdict("move_overlap_no_peer_gone", find_event(c1, FT_PEER_GONE,
		    kp.pk, mark) >= 0 ? "c1 got PeerGone for a key that"
		    " never left the region (it joined B before leaving A)" :
		    NULL);
	}
	cl_free(m2);
}

/*
 * Node B killed (SIGKILL) and started again on its port with its key file:
 * a1 and c1, which received from b1, get PeerGone(b1) once A's and C's
 * mesh connections to B break (spec 15.4); then a new client of B and the
 * clients of A and C reach each other both ways (the peers' 5 s retry, and
 * B's own mesh clients at its start).
 */
static void
t_restart(void)
{
	static const char *const names[] = { "kill_peer_gone", "restart_start",
	    "restart_reach_restarted", "restart_reach_from_restarted" };
	struct node *b = &nodes[1];
	struct cl *a1 = peer[0], *c1 = peer[2], *b1;
	uint8_t bkey[32];
	const char *e;
	int64_t deadline;
	int t, r = 0, mark_a, mark_c;

	if (mesh_why != NULL) {
		dc_fail_all(names, 4, mesh_why);
		return;
	}
	memcpy(bkey, peer[1]->dc->pk, 32);
	mark_a = a1->nev;
	mark_c = c1->nev;
	node_kill(b);
	if (!received[0][1] || !received[2][1])
		e = "a1 or c1 never received a packet from b1 (pairs), so is"
		    " owed no PeerGone";
	else {
		e = gone_check(a1, wait_event(a1, FT_PEER_GONE, bkey, mark_a,
		    GONE_MS), "a1 (on A) got no PeerGone(b1) after node B was"
		    " killed");
		if (e == NULL)
			e = gone_check(c1, wait_event(c1, FT_PEER_GONE, bkey,
			    mark_c, GONE_MS), "c1 (on C) got no PeerGone(b1) after"
			    " node B was killed");
	}
	dc_verdict("kill_peer_gone", e);
	cl_free(peer[1]);
	peer[1] = NULL;

	for (t = 0; t < RESTART_TRIES; t++) {
		if (node_spawn(b, 1) < 0)
			break;
		r = node_wait_ready(b);
		if (r != 0)
			break;
		dc_sleep_ms(500);		/* died at start: the port, again */
	}
	if (r != 1) {
		node_kill(b);
		dc_show_log_tail(b->log_path, LOG_MAX, LOG_TAIL);
		e = "node B did not start again on its port";
	} else {
		e = node_probe(b);
	}
	dc_verdict("restart_start", e);
	if (e != NULL) {
		dc_fail_all(names + 2, 2, "node B not running (restart_start)");
		return;
	}
	b1 = peer[1] = cl_open(b, "b1", NULL, NULL);
	deadline = dc_now_ms() + MESH_FORM_MS;
	e = b1 == NULL ? "connect to the restarted B failed" :
	    !send_poll(a1, b1, SMALL_BYTES, deadline) ? "a1 (on A) -> b1 (on"
	    " the restarted B): not delivered within 30 s" :
	    !send_poll(c1, b1, SMALL_BYTES, deadline) ? "c1 (on C) -> b1 (on"
	    " the restarted B): not delivered within 30 s" : NULL;
	dc_verdict("restart_reach_restarted", e);
	e = b1 == NULL ? "connect to the restarted B failed" :
	    !send_poll(b1, a1, SMALL_BYTES, deadline) ? "b1 (on the restarted"
	    " B) -> a1 (on A): not delivered within 30 s" :
	    !send_poll(b1, c1, SMALL_BYTES, deadline) ? "b1 (on the restarted"
	    " B) -> c1 (on C): not delivered within 30 s" : NULL;
	dc_verdict("restart_reach_from_restarted", e);
}

/* Neither way: d1 -> a1 and a1 -> d1, resent for ISOLATION_MS; NULL or
 * why. */
static const char *
isolated(struct cl *d1, struct cl *a1)
{
	int64_t deadline = dc_now_ms() + ISOLATION_MS;

	make_payload(pay, SMALL_BYTES);
	make_payload(pay2, SMALL_BYTES);
	while (dc_left_ms(deadline) > 0) {
		if (dc_send_packet(d1->dc, a1->dc->pk, pay, SMALL_BYTES) < 0 ||
		    dc_send_packet(a1->dc, d1->dc->pk, pay2, SMALL_BYTES) < 0)
			return "a client was closed";
		if (expect_packet(a1, NULL, pay, SMALL_BYTES, POLL_MS / 2))
			return "d1 (on D, another mesh key) reached a1 (on A)";
		if (expect_packet(d1, NULL, pay2, SMALL_BYTES, POLL_MS / 2))
			return "a1 (on A) reached d1 (on D, another mesh key)";
	}
	return NULL;
}

/*
 * Node D: another mesh key, -mesh-with naming A.  A's watcher sees D's
 * mesh client arrive as a regular client (flags 0x01: its key is wrong)
 * and leave (A closes it at its WatchConns); nothing crosses between D's
 * and A's clients; A serves on.
 */
static void
t_foreign(void)
{
	static const char *const names[] = { "foreign_node_start",
	    "foreign_node_dials_as_regular", "foreign_node_wrong_pin_refused",
	    "foreign_node_isolated", "foreign_node_A_serves" };
	struct node *a = &nodes[0], *d = &nodes[3];
	struct cl *w, *d1 = NULL, *n = NULL;
	const char *e;
	int i, mark;

	if (mesh_why != NULL) {
		dc_fail_all(names, 5, mesh_why);
		return;
	}
	w = cl_open(a, "watcher", mesh_json, NULL);
	if (w == NULL || send_raw(w, FT_WATCH_CONNS, NULL, 0) < 0) {
		dc_fail_all(names, 5, "a client with the mesh key could not watch"
		    " A");
		cl_free(w);
		return;
	}
	(void)drain(w, QUIET_MS);
	mark = w->nev;
	e = nodes_start(3, 1, 1);
	if (e == NULL)
		e = node_probe(d);
	dc_verdict("foreign_node_start", e);
	if (e != NULL) {
		dc_fail_all(names + 1, 4, "node D not running (foreign_node_start)");
		cl_free(w);
		return;
	}
	dc_note("D %s:%d -mesh-with %s (another mesh key)", d->ip, d->port,
	    d->mesh_with);
	i = wait_event(w, FT_PEER_PRESENT, d->server_pk, mark, FOREIGN_DIAL_MS);
	if (i < 0)
		e = "A's watcher saw no connection with D's server key: D's mesh"
		    " client did not reach A";
	else
		e = present_check(w, i, NULL, FLAG_REGULAR);
	if (e == NULL)
		e = gone_check(w, wait_event(w, FT_PEER_GONE, d->server_pk, i,
		    IO_MS), "A did not close D's mesh client (no PeerGone for"
		    " its key; it sends WatchConns with a wrong key)");
	dc_verdict("foreign_node_dials_as_regular", e);
	{
		char want[120];

		snprintf(want, sizeof(want), "mesh: cannot reach %s:%d: "
		    "certificate not trusted", nodes[1].ip, nodes[1].port);
		dc_verdict("foreign_node_wrong_pin_refused",
		    dc_log_has(d->log_path, LOG_MAX, want, FOREIGN_DIAL_MS) ?
		    NULL : "D's log does not say its link"
		    " to B (a wrong pin) was refused for the certificate");
	}

	d1 = cl_open(d, "d1", NULL, NULL);
	dc_verdict("foreign_node_isolated", d1 == NULL ? "connect to D failed" :
	    isolated(d1, peer[0]));

	n = cl_open(a, "new", NULL, NULL);
	e = !node_alive(a) ? "node A exited" :
	    n == NULL ? "a new client could not connect to A" :
	    !cl_ping(n) ? "a new client of A got no Pong" :
	    peer[1] == NULL ? "no client on B (restart_reach_restarted)" :
	    send_once(peer[0], peer[1], SMALL_BYTES) != NULL ? "a1 -> b1 not"
	    " delivered" : send_once(peer[1], peer[0], SMALL_BYTES) != NULL ?
	    "b1 -> a1 not delivered" : NULL;
	dc_verdict("foreign_node_A_serves", e);
	cl_free(n);
	cl_free(d1);
	cl_free(w);
}

/* Every node: SIGTERM, exit 0; no sanitizer report in any log. */
static void
t_stop(void)
{
	const char *e = NULL, *e1;
	int i, dirty = -1;

	for (i = 0; i < REGION; i++) {
		cl_free(peer[i]);
		peer[i] = NULL;
	}
	for (i = 0; i < NODES; i++) {
		if (nodes[i].pid <= 0)
			continue;
		e1 = node_stop(&nodes[i]);
		if (e1 != NULL && e == NULL)
			e = e1;
	}
	if (!region_up && e == NULL)
		e = "region not running (see region_start)";
	dc_verdict("region_sigterm_exit", e);
	for (i = 0; i < NODES; i++) {
		char *text = dc_read_text(nodes[i].log_path, LOG_MAX, NULL);
		if (text == NULL)
			continue;
		if (strstr(text, "AddressSanitizer") != NULL ||
		    strstr(text, "LeakSanitizer") != NULL ||
		    strstr(text, "runtime error:") != NULL)
			dirty = i;
		free(text);
	}
	if (dirty >= 0)
		dc_fail("region_logs_clean", "sanitizer report in %s",
		    nodes[dirty].log_path);
	else
		dc_ok("region_logs_clean");
	/* Every node lists itself in -mesh-with: it must find that entry by
	 * the server key it meets there and skip it (derp-protocol.md 15.4),
	 * not keep a link to itself. */
	for (i = 0, dirty = -1; i < REGION; i++) {
		char *text = dc_read_text(nodes[i].log_path, LOG_MAX, NULL);

		if (text == NULL || strstr(text, "is this server: skipped") ==
		    NULL)
			dirty = i;
		free(text);
	}
	if (dirty >= 0)
		dc_fail("region_self_entry_skipped", "no \"is this server: "
		    "skipped\" in %s", nodes[dirty].log_path);
	else
		dc_ok("region_self_entry_skipped");
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
	for (i = 0; i < NODES; i++)
		nodes[i].pid = -1;
	if (dc_test_setup(derp_path, scratch, on_alarm, WATCHDOG_S) < 0)
		return 1;
	dc_random(&tag_salt, sizeof(tag_salt));
	snprintf(mesh_path, sizeof(mesh_path), "%s/mesh.key", scratch);
	snprintf(other_path, sizeof(other_path), "%s/mesh-other.key", scratch);
	if (write_key_file(mesh_path, mesh_hex) < 0 ||
	    write_key_file(other_path, other_hex) < 0) {
		printf("FAIL setup: cannot write the mesh key files in %s\n",
		    scratch);
		printf("0 passed, 1 failed, 0 skipped\n");
		return 1;
	}
	snprintf(mesh_json, sizeof(mesh_json),
	    "{\"version\":2,\"meshKey\":\"%s\"}", mesh_hex);
	e = setup_nodes();
	if (e != NULL) {
		printf("FAIL setup: %s\n", e);
		printf("0 passed, 1 failed, 0 skipped\n");
		return 1;
	}

	t_region_start();
	t_pairs();
	t_watch();
	t_not_mesh();
	t_mesh_frames();
	t_cross_peer_gone();
	t_move();
	t_restart();
	t_foreign();
	t_stop();

	for (i = 0; i < NODES; i++)
		node_kill(&nodes[i]);
	return dc_summary();
}
