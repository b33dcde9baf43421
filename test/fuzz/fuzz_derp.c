/*
 * fuzz_derp.c -- the relay's client-facing byte stream, from the HTTP request
 * through the /derp upgrade, ClientInfo (box opening and JSON), and every DERP
 * frame, with several connections at once: routing, duplicates, queues,
 * PeerGone, NotHere, pool pressure, rate limits, deadlines and KeepAlives.
 * The relay is real (fuzz_server.h); the input is a little program for it.
 *
 * Input: three header bytes, then operations.
 *
 *   h0  bit 0  the first client has sent a fast-start upgrade (it starts in
 *              CS_DERP_INFO, the relay's ServerKey queued); else plain HTTP
 *       bit 1  clients connect to the -http-port listener (port80)
 *       bit 2  clients are on 203.0.113.9, not loopback (no debug access)
 *       bit 3  the peer client (below) does not read
 *       bit 4  rounds only on request (0xEC); else a round after every write
 *       bit 5  -derp=false
 *       bits 6-7  -home: "", "blank", a URL, ""
 *   h1  bits 0-2  queue depth (0: derper's 32)
 *       bits 3-4  pool pressure at the start: none, 40, 8 or 0 chunks free
 *       bits 5-6  -rate-config: off, 1 MB/s, 1000 B/s, 100 B/s burst 100
 *       bit 7  no peer client
 *   h2  bits 0-1  unused (were the overload flag of a removed feature)
 *       bits 2-3  clients' address instead of h0 bit 2: 100.101.102.103,
 *              fd7a:115c:a1e0::53 (Tailscale's: debug access), ::1
 *       bits 4-5  the key table's hash seed (one of four)
 *
 * Unless h1 bit 7, handle 0 is a "peer" client registered under fz_keys[0]
 * (the transcript's peer key), so SendPacket to that key is delivered.  The
 * first client (handle 1, or 0) is the current one.  Operations:
 *
 *   00-BF        write the next b+1 bytes to the current client's socket
 *   C0-CF        ... the next (b-BF)*512 bytes (512..8192)
 *   D0-D3        ... the next 16 KiB << (b-D0) bytes
 *   D4-DF        ... all the remaining bytes
 *   E0-E7        current = handle (b-E0) mod 6
 *   E8           new client, plain HTTP (becomes current)
 *   E9           new client that sent a fast-start upgrade
 *   EA k         new client registered under fz_keys[k mod 5]
 *   EB k n J...  write a ClientInfo sealed by fz_keys[1 + k mod 4] around
 *                the n bytes of JSON J (the box opens; the JSON is fuzzed)
 *   EC           one round of the relay's loop
 *   ED t         the clock moves t*256+1 ms, then a round (timers)
 *   EE           the current client stops / resumes reading
 *   EF           the current client resets (closes its socket)
 *   F0           the current client half-closes (shutdown SHUT_WR)
 *   F1 n         pool pressure: hold chunks until n are free (FF: release)
 *   F2           the relay closes the current client (as a deadline would)
 *   F3           the current client resets during the next round, after
 *                the relay's poll (so the flush, not the read, finds it)
 *   F4-FF        nothing
 *
 * Writes shorter than a frame split it anywhere; the relay reads whatever the
 * socket holds at the next round.
 */
#define main derp_main
#include "../../derp.c"
#undef main
#include "fuzz.h"
#include "fuzz_server.h"

static const char fast_upgrade[] = "GET /derp HTTP/1.1\r\nHost: derp.example.com\r\n"
    "Connection: Upgrade\r\nDerp-Fast-Start: 1\r\nUpgrade: DERP\r\n\r\n";

static void
fuzz_init(void)
{
	fz_server_init();
}

/* Open a client of the given kind; returns its handle or -1. */
static int
client_open(int kind, int key, int port80, int addr)
{
	int h = fz_open(port80, addr);

	if (h < 0)
		return -1;
	if (kind == 1) {
		fz_send(h, (const uint8_t *)fast_upgrade, sizeof fast_upgrade - 1);
		fz_round();
	} else if (kind == 2) {
		fz_register(h, key);
	}
	return h;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *homes[4] = { "", "blank",
	    "https://example.com/<a href=\"x\">&'", "" };
	static const uint64_t rates[4][2] = { { 0, 0 }, { 1000000, 0 },
	    { 1000, 0 }, { 100, 100 } };
	static const uint32_t pressure[4] = { UINT32_MAX, 40, 8, 0 };
	static uint8_t frame[FRAME_HEADER_BYTES + KEY_BYTES + NACL_NONCE_BYTES +
	    NACL_TAG_BYTES + 256];
	size_t off = 3, n, jlen;
	uint8_t h0 = size > 0 ? data[0] : 0, h1 = size > 1 ? data[1] : 0, b;
	uint8_t h2 = size > 2 ? data[2] : 0;
	int port80 = (h0 >> 1) & 1, addr = (h2 >> 2) & 3 ? 1 + ((h2 >> 2) & 3) :
	    (h0 >> 2) & 1;
	int manual = (h0 >> 4) & 1, cur, h;

	fz_begin(!((h0 >> 5) & 1), homes[h0 >> 6], (h1 & 7) ? (h1 & 7) : 32,
	    rates[(h1 >> 5) & 3][0], rates[(h1 >> 5) & 3][1], (h2 >> 4) & 3);
	if (!(h1 & 0x80)) {
		h = client_open(2, 0, 0, 0);
		if (h >= 0)
			fz_h[h].stalled = (h0 >> 3) & 1;
	}
	cur = client_open(h0 & 1, 0, port80, addr);
	if (pressure[(h1 >> 3) & 3] != UINT32_MAX)
		fz_hold_chunks(pressure[(h1 >> 3) & 3]);
	while (off < size) {
		b = data[off++];
		n = 0;
		if (b < 0xC0)
			n = (size_t)b + 1;
		else if (b < 0xD0)
			n = (size_t)(b - 0xBF) * 512;
		else if (b < 0xD4)
			n = (size_t)16384 << (b - 0xD0);
		else if (b < 0xE0)
			n = size - off;
		if (b < 0xE0) {
			if (n > size - off)
				n = size - off;
			if (cur >= 0)
				fz_send(cur, data + off, n);
			off += n;
			if (!manual)
				fz_round();
			continue;
		}
		switch (b) {
		case 0xE8:
		case 0xE9:
		case 0xEA:
			h = client_open(b - 0xE8, off < size ? data[off] % FZ_NKEYS : 0,
			    port80, addr);
			if (b == 0xEA && off < size)
				off++;
			if (h >= 0)
				cur = h;
			break;
		case 0xEB:
			if (size - off < 2)
				goto done;
			jlen = data[off + 1];
			if (jlen > size - off - 2)
				jlen = size - off - 2;
			n = fz_client_info(frame, sizeof frame, 1 + data[off] % 4,
			    data + off + 2, jlen);
			off += 2 + jlen;
			if (cur >= 0)
				fz_send(cur, frame, n);
			if (!manual)
				fz_round();
			break;
		case 0xEC:
			fz_round();
			break;
		case 0xED:
			fz_tick(off < size ? (int64_t)data[off++] * 256 + 1 : 1);
			break;
		default:
			/* EE-F3: the client operations fuzz_tls shares. */
			if (fz_client_op(b, cur, data, size, &off))
				break;
			if (b < 0xE8)
				cur = (b - 0xE0) % FZ_MAX;
			break;
		}
	}
done:
	fz_end();
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Seeds                                                                      */
/* ------------------------------------------------------------------------ */

struct seed {
	uint8_t b[200000];
	size_t n;
};

static struct seed sd;

static void
s_start3(uint8_t h0, uint8_t h1, uint8_t h2)
{
	sd.n = 0;
	sd.b[sd.n++] = h0;
	sd.b[sd.n++] = h1;
	sd.b[sd.n++] = h2;
}

static void
s_start(uint8_t h0, uint8_t h1)
{
	s_start3(h0, h1, 0);
}

static void
s_byte(uint8_t b)
{
	FUZZ_CHECK(sd.n < sizeof sd.b, "seed too big");
	sd.b[sd.n++] = b;
}

/* Bytes to the current client, in writes of at most `max` (<= 192). */
static void
s_write(const void *p, size_t n, size_t max)
{
	const uint8_t *q = p;
	size_t k;

	while (n > 0) {
		k = n < max ? n : max;
		s_byte((uint8_t)(k - 1));
		FUZZ_CHECK(sd.n + k <= sizeof sd.b, "seed too big");
		memcpy(sd.b + sd.n, q, k);
		sd.n += k;
		q += k;
		n -= k;
	}
}

static void
s_str(const char *t)
{
	s_write(t, strlen(t), 192);
}

static void
s_hex(const char *hex)
{
	uint8_t buf[4096];

	s_write(buf, fuzz_unhex(hex, buf, sizeof buf), 192);
}

/* SendPacket to fz_keys[k] with n bytes (disco: the magic first). */
static void
s_packet(int k, size_t n, int disco)
{
	static uint8_t f[FRAME_HEADER_BYTES + KEY_BYTES + MAX_PACKET_BYTES + 1];
	size_t i;

	frame_put_header(f, FRAME_SEND_PACKET, (uint32_t)(KEY_BYTES + n));
	memcpy(f + FRAME_HEADER_BYTES, fz_keys[k], KEY_BYTES);
	for (i = 0; i < n; i++)
		f[FRAME_HEADER_BYTES + KEY_BYTES + i] = (uint8_t)(i * 13);
	if (disco && n >= 6)
		memcpy(f + FRAME_HEADER_BYTES + KEY_BYTES, "TS\xf0\x9f\x92\xac", 6);
	s_write(f, FRAME_HEADER_BYTES + KEY_BYTES + n, 192);
}

static void
s_seal(int k, const char *json)
{
	size_t n = strlen(json);

	s_byte(0xEB);
	s_byte((uint8_t)(k - 1));
	s_byte((uint8_t)n);
	FUZZ_CHECK(n < 256 && sd.n + n <= sizeof sd.b, "json too long");
	memcpy(sd.b + sd.n, json, n);
	sd.n += n;
}

static void
s_emit(const char *name)
{
	seed_emit(name, sd.b, sd.n);
}

/* The wire bytes of the transcript and vectors (test/data/derp/). */
#define GO_UPGRADE "474554202f6465727020485454502f312e310d0a486f73743a20646572702e6578616d706c652e636f6d0d0a557365722d4167656e743a20476f2d687474702d636c69656e742f312e310d0a436f6e6e656374696f6e3a20557067726164650d0a557067726164653a20444552500d0a0d0a"
#define CLIENT_INFO "020000006864b101b1d0be5a8704bd078f9895001fc03e8e9f9522f188dd128d9846d48466000102030405060708090a0b0c0d0e0f1011121314151617adae4041b70fe715a2dcf63c8ac02df1e4e99f7e03896c0d8df02f11f38281e1fd9e1b60e2040edd9003eadd2e2a72bf"
#define CLIENT_INFO_MESH "02000000b664b101b1d0be5a8704bd078f9895001fc03e8e9f9522f188dd128d9846d48466303132333435363738393a3b3c3d3e3f4041424344454647bc5d67f78f1dd79a85e34604b7fc5677c01f8a8c40577627b938ef9b288d498f6c603fe276faa1620ee23dea556e1f1df02ad815be7a65d5ff1a88d1101350953289572d9179128574c2b4a167a77159f90f71b94f8458a30d0529dac41313065a8ae22e0c7ce3be1775e5541ea00d3d49cbbabcd62c44e15f9e31a5ea1f"
#define NOTE_PREFERRED "070000000101"
#define SEND_TO_PEER "0400000050883186b800b41d5cf0429695da9b3cc4f328ebcd184a6e482fa578c103f06c77040000000000000000000000000000006578616d706c652d7769726567756172642d7472616e73706f72742d64617461"
#define DISCO_TO_PEER "0400000070883186b800b41d5cf0429695da9b3cc4f328ebcd184a6e482fa578c103f06c775453f09f92acc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf000000000000000000000000000000000000000000000000000000000000000000000000000000000100"
#define PING "12000000080102030405060708"
#define KEEPALIVE "0600000000"
#define PONG "13000000080102030405060708"

/* Every C>S frame of the transcript, after a handshake. */
static void
seeds_transcript(const char *datadir)
{
	char *text, *line, *next, name[64];
	uint8_t buf[4096];
	size_t len, n;
	int cs = 0, i = 0;

	text = fuzz_slurp(datadir, "derp/handshake_transcript.txt", &len);
	if (text == NULL)
		return;
	for (line = text; line != NULL && *line != '\0'; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (strncmp(line, "## ", 3) == 0)
			cs = strncmp(line, "## C>S", 6) == 0;
		if (!cs || strncmp(line, "hex: ", 5) != 0)
			continue;
		n = fuzz_unhex(line + 5, buf, sizeof buf);
		if (n > 0 && buf[0] == 'G')
			continue;	/* the upgrade requests: seeded below */
		s_start(0x01, 0);
		s_hex(CLIENT_INFO);
		s_write(buf, n, 192);
		s_hex(PING);
		snprintf(name, sizeof name, "transcript-%02d", i++);
		s_emit(name);
		cs = 0;
	}
	free(text);
}

/* Each ClientInfo JSON row of client_info_json.tsv, sealed. */
static void
seeds_clientinfo(const char *datadir)
{
	char *text, *line, *next, *json, *end, name[64];
	size_t len;
	int i = 0;

	text = fuzz_slurp(datadir, "derp/client_info_json.tsv", &len);
	if (text == NULL)
		return;
	for (line = text; line != NULL && *line != '\0'; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (line[0] == '#' || strncmp(line, "verdict\t", 8) == 0)
			continue;
		json = strchr(line, '\t');
		json = json != NULL ? strchr(json + 1, '\t') : NULL;
		if (json == NULL)
			continue;
		json++;
		end = strchr(json, '\t');
		if (end != NULL)
			*end = '\0';
		if (strlen(json) > 255)
			continue;
		s_start(0x01, 0);
		s_seal(2, json);
		s_packet(0, 100, 0);
		s_hex(PING);
		snprintf(name, sizeof name, "clientinfo-%02d", i++);
		s_emit(name);
	}
	free(text);
}

/*
 * The regression inputs of test/fuzz/regress/derp/ (FUZZ_WRITE_REGRESS=1 with
 * FUZZ_WRITE_SEEDS=DIR writes these instead of the seeds), so they follow any
 * change of the input format.  Each once crashed or stuck the relay.
 */
static void
regress_inputs(void)
{
	static const char ping[] = PING;
	static const char get[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	int i;

	/* output_flush_dirty: six connections dirty in one round (all slots);
	 * K1's client resets after the poll, so K1 dies in the flush, and
	 * PeerGone re-marks P, already flushed: a seventh entry in the
	 * six-entry dirty list (heap-buffer-overflow in mark_dirty). */
	s_start3(0x10, 0, 0);
	for (i = 1; i <= 4; i++) {
		s_byte(0xEA);
		s_byte((uint8_t)i);
	}
	s_byte(0xE2);
	s_packet(0, 8, 0);
	s_byte(0xEC);
	s_byte(0xE0);
	s_hex(ping);
	s_byte(0xE1);
	s_str(get);
	s_byte(0xE2);
	s_hex(ping);
	s_byte(0xE3);
	s_packet(1, 8, 0);
	s_hex(ping);
	s_byte(0xE4);
	s_hex(ping);
	s_byte(0xE5);
	s_hex(ping);
	s_byte(0xE2);
	s_byte(0xF3);
	s_byte(0xEC);
	s_emit("dirty-list-overflow");

	/* Saturated, P not reading: A fills P's output and queues and is held;
	 * B's only bytes are one whole packet to P, held too.  P reads again,
	 * A's packets flow (A still has bytes to read, so it retries), but B's
	 * held frame is never retried: nothing reads B again. */
	s_start3(0x09, 0x02, 0x01);
	s_hex(CLIENT_INFO);
	for (i = 0; i < 30; i++)
		s_packet(0, 1200, 0);
	s_byte(0xEA);
	s_byte(2);
	s_packet(0, 150, 0);
	s_byte(0xE0);
	s_byte(0xEE);
	for (i = 0; i < 6; i++) {
		s_byte(0xED);
		s_byte(0);
	}
	s_byte(0xED);
	s_byte(4);
	s_emit("held-packet-never-retried");
}

static void
fuzz_seeds(const char *datadir)
{
	static const char *const reqs[] = {
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /robots.txt HTTP/1.1\r\nHost: a\r\n\r\nHEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /generate_204 HTTP/1.1\r\nHost: a\r\nX-Tailscale-Challenge: ts_192.0.2.1\r\n\r\n",
		"GET /derp/probe HTTP/1.1\r\nHost: a\r\n\r\nPOST /derp/latency-check HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /bootstrap-dns HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a/../derp?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /derp HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: derp\r\n\r\n",
		"GET /derp HTTP/1.1\r\nHost: a\r\nUpgrade: foo\r\n\r\nGET /debug/ HTTP/1.0\r\n\r\n",
		"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"GET /derp HTTP/1.1\r\nHost: a\r\nUpgrade: DERP\r\nContent-Length: 5\r\n\r\nhello",
		"GET http://a/%2e%2e/derp/probe HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
	};
	char name[64];
	size_t i, k;

	if (getenv("FUZZ_WRITE_REGRESS") != NULL) {
		regress_inputs();
		return;
	}
	/* Go's handshake, then a session: as one client writes it, and byte by byte. */
	for (k = 0; k < 2; k++) {
		s_start(k ? 0x10 : 0x00, 0);
		s_hex(GO_UPGRADE);
		if (k)
			s_byte(0xEC);
		s_hex(CLIENT_INFO);
		s_hex(NOTE_PREFERRED);
		s_hex(SEND_TO_PEER);
		s_hex(DISCO_TO_PEER);
		s_hex(PING);
		s_hex(KEEPALIVE);
		s_hex(PONG);
		s_emit(k ? "go-session-manual-rounds" : "go-session");
	}
	{
		uint8_t all[2048];
		size_t n = 0;

		n += fuzz_unhex(GO_UPGRADE, all + n, sizeof all - n);
		n += fuzz_unhex(CLIENT_INFO, all + n, sizeof all - n);
		n += fuzz_unhex(SEND_TO_PEER, all + n, sizeof all - n);
		n += fuzz_unhex(PING, all + n, sizeof all - n);
		s_start(0, 0);
		s_write(all, n, 1);
		s_emit("go-session-bytewise");
		s_start(0, 0);
		s_write(all, n, 7);
		s_emit("go-session-7s");
		s_start(0x10, 0);
		s_byte(0xD4);
		memcpy(sd.b + sd.n, all, n);
		sd.n += n;
		s_emit("go-session-one-write");
	}
	/* Fast start: request and ClientInfo in one write, as Go sends them. */
	s_start(0, 0);
	s_str(fast_upgrade);
	s_hex(CLIENT_INFO);
	s_packet(1, 10, 0);		/* to itself */
	s_hex(CLIENT_INFO_MESH);	/* a second ClientInfo is skipped */
	s_hex("1000000000");		/* WatchConns: mesh only, closes */
	s_emit("fast-start-mesh-frame");

	/* Two clients with the same key; one resets. */
	s_start(0x01, 0);
	s_hex(CLIENT_INFO);
	s_byte(0xE9);
	s_hex(CLIENT_INFO);
	s_packet(0, 1200, 0);
	s_packet(1, 64, 1);
	s_byte(0xE1);
	s_packet(1, 100, 0);
	s_byte(0xEF);
	s_byte(0xEC);
	s_byte(0xE2);
	s_packet(1, 100, 0);
	s_emit("duplicate-keys");

	/* Registered clients talking to each other, a stalled reader, PeerGone. */
	s_start(0x01, 0x02);
	s_hex(CLIENT_INFO);
	s_byte(0xEA);
	s_byte(2);
	s_packet(0, 200, 0);
	s_packet(1, 200, 0);
	s_byte(0xE0);
	s_packet(2, 300, 0);
	s_packet(1, 300, 1);
	s_byte(0xEE);
	for (i = 0; i < 6; i++) {
		s_byte(0xE2);
		s_packet(0, 1000, 0);
	}
	s_byte(0xED);
	s_byte(10);
	s_byte(0xE2);
	s_byte(0xEF);
	s_byte(0xEC);
	s_byte(0xED);
	s_byte(255);
	s_emit("registered-peergone-stall");

	/* A peer that does not read: its output buffer, then its queues fill
	 * (depth 2): the sender is held, then the oldest packets dropped. */
	for (k = 0; k < 2; k++) {
		s_start3(0x09, 0x02, (uint8_t)k);
		s_hex(CLIENT_INFO);
		for (i = 0; i < 40; i++)
			s_packet(0, 1200, i % 5 == 0);
		s_byte(0xED);
		s_byte(0);
		s_packet(0, 1200, 0);
		s_byte(0xED);
		s_byte(1);
		s_packet(0, 1200, 0);
		s_byte(0xE0);
		s_byte(0xEE);
		s_byte(0xEC);
		s_emit(k ? "queue-full-saturated" : "queue-full");
	}

	/* The pool runs dry while P's queues hold packets: the longest queue
	 * pays (pool_reclaim), not the sender. */
	s_start3(0x09, 0, 0);
	s_hex(CLIENT_INFO);
	for (i = 0; i < 40; i++)
		s_packet(0, 1000, 0);
	s_byte(0xF1);
	s_byte(0);
	s_packet(0, 3000, 0);
	s_emit("pool-reclaim");

	/* Every slot taken, then one more client (refused); clients from
	 * other addresses on the port-80 listener; a hash seed with
	 * collisions, keys registered and dropped in different orders. */
	for (k = 1; k < 4; k++) {
		s_start3(0x02, 0, (uint8_t)(k << 2 | k << 4));
		s_str("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
		for (i = 1; i < 5; i++) {
			s_byte(0xEA);
			s_byte((uint8_t)(5 - i));
		}
		s_byte(0xE8);
		s_byte(0xE3);
		s_byte(0xF2);
		s_byte(0xE8);
		s_str("GET /derp/probe HTTP/1.1\r\nHost: h\r\n\r\n");
		s_byte(0xE0);
		s_byte(0xEF);
		s_byte(0xE4);
		s_byte(0xEF);
		s_byte(0xEC);
		s_byte(0xEA);
		s_byte(0);
		snprintf(name, sizeof name, "full-house-%zu", k);
		s_emit(name);
	}

	/* NotHere: disco to an unknown key, past the limiter's burst. */
	s_start(0x01, 0x80);
	s_hex(CLIENT_INFO);
	for (i = 0; i < 5; i++)
		s_packet(3, 62, 1);
	s_byte(0xED);
	s_byte(8);
	s_packet(3, 62, 1);
	s_emit("nothere");

	/* Sealed ClientInfo from another key, then the largest packet and one
	 * too large (which closes).  130 KB: only with FUZZ_ALL_SEEDS. */
	if (getenv("FUZZ_ALL_SEEDS") != NULL) {
		s_start(0x01, 0);
		s_seal(3, "{\"version\":2,\"CanAckPings\":true,\"IsProber\":true}");
		s_packet(0, MAX_PACKET_BYTES, 0);
		s_packet(0, MAX_PACKET_BYTES + 1, 0);
		s_emit("sealed-big-packets");
	}
	s_start(0x01, 0);
	s_seal(4, "{\"version\":2,\"IsProber\":true,\"AppName\":\"x\\n\"}");
	s_packet(0, 1300, 0);
	s_packet(4, 10, 0);
	s_emit("sealed-other-key");

	/* The pool under pressure; a stalled peer; release. */
	s_start(0x09, 0x10);
	s_hex(CLIENT_INFO);
	for (i = 0; i < 8; i++)
		s_packet(0, 1500, i & 1);
	s_byte(0xF1);
	s_byte(0);
	s_packet(0, 4000, 0);
	s_byte(0xF1);
	s_byte(0xFF);
	s_byte(0xEC);
	s_emit("pool-pressure");

	/* Rate limit: 100 B/s, then time passes. */
	s_start(0x01, 0x60);
	s_hex(CLIENT_INFO);
	for (i = 0; i < 3; i++)
		s_packet(0, 1000, 0);
	for (i = 0; i < 4; i++) {
		s_byte(0xED);
		s_byte(200);
	}
	s_emit("rate-limit");

	/* Deadlines: ClientInfo never comes; an idle HTTP client. */
	s_start(0x01, 0);
	s_byte(0xE8);
	s_str("GET / HT");
	for (i = 0; i < 5; i++) {
		s_byte(0xED);
		s_byte(40);
	}
	s_emit("deadlines");

	/* HTTP: each request, in several settings. */
	for (i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
		static const uint8_t h0s[4] = { 0x00, 0x02, 0x46, 0xa4 };

		for (k = 0; k < 4; k++) {
			s_start(h0s[k], 0x80);
			s_str(reqs[i]);
			s_byte(0xF0);
			s_byte(0xEC);
			snprintf(name, sizeof name, "http-%02zu-%zu", i, k);
			s_emit(name);
		}
	}
	seeds_transcript(datadir);
	seeds_clientinfo(datadir);
}
