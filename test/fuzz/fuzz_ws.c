/*
 * fuzz_ws.c -- DERP over WebSocket (derp-protocol.md 5.4, RFC 6455): the
 * handshake (ws_upgrade), the client's frames (ws_feed, ws_frame_begin,
 * ws_frame_end) and the relay's framing of everything it sends (out_space,
 * out_commit, ws_out_control), with several connections at once, registered
 * by real ClientInfo frames carried in binary messages.  The relay is real
 * (fuzz_server.h); the input is a little program for it, as fuzz_derp's.
 *
 * What the relay sends a client is checked by a parser of its own
 * (drain_hook, below): the HTTP head first (a WebSocket 101 carries RFC
 * 6455's accept value for the harness's key); then every frame unmasked, FIN
 * set, RSV clear, opcode binary, pong or close only, its length in the
 * shortest form, control payloads of at most 125 bytes, no empty binary
 * message, nothing at all after a close frame, and the connection gone
 * within a round of it.  The binary payloads, concatenated, are a DERP
 * stream: ServerKey (magic and the relay's key), then what fuzz_server.h's
 * stream checker accepts (ServerInfo first, then only known frames with
 * their exact lengths).  Packets the harness sends (CA, below) carry a
 * marker and a pattern, so whoever receives one, WebSocket or raw client,
 * checks it arrived intact.
 *
 * Every byte a WebSocket client of the harness writes also goes through a
 * model of the relay's reader (struct mirror: RFC 6455 and derper's library,
 * written from the spec, not from derp.c), which predicts the close status
 * the relay must answer with: the first violation's code (1002, 1003 text,
 * 1009 over 32 KiB), the echo of the client's close status (none for none;
 * 1002 for a one-byte payload or a status no endpoint may send, as derper's
 * library answers), or 1008 when the 101 named no "derp" subprotocol.  A
 * close frame with another status, or one the model does not predict,
 * aborts; so does a status an endpoint may never send (RFC 6455 7.4:
 * 1004-1006, 1015, below 1000, 1016-2999, 5000 and up).  Pongs carry a
 * ping's payload, never more pongs than pings, and once the relay has read
 * everything a client wrote (its socket and input buffer empty) and sent
 * everything it had, the last ping is answered, a close was answered, and
 * the relay's reader state (header bytes, payload left, open message and its
 * length) equals the model's.
 *
 * Input: four header bytes, then operations.
 *
 *   h0  bit 0  the first client writes its own handshake (raw ops); else a
 *              WebSocket client with the handshake h2/h3 (below; 0/0: the
 *              standard one)
 *       bit 1  ... which then sends a ClientInfo for fz_keys[1]
 *       bit 2  clients connect to the -http-port listener (port80)
 *       bit 3  the peer client (below) does not read
 *       bit 4  rounds only on request (0xEC); else a round after every write
 *       bit 5  -derp=false
 *       bits 6-7  clients' address: 127.0.0.1, 203.0.113.9, 100.101.102.103,
 *              ::1
 *   h1  bits 0-2  queue depth (0: derper's 32)
 *       bits 3-4  pool pressure at the start: none, 40, 8 or 0 chunks free
 *       bits 5-6  -rate-config: off, 1 MB/s, 1000 B/s, 100 B/s burst 100
 *       bit 7  no peer client
 *   h2 h3  the first client's handshake variant (as CF v w)
 *
 * Unless h1 bit 7, handle 0 is a raw DERP "peer" registered by the harness
 * under fz_keys[0], so SendPacket to that key is delivered.  The first client
 * is the current one.  Operations:
 *
 *   00-BF        write the next b+1 bytes to the current client as they are
 *   C0-C7        ... the next (b-BF)*512 bytes
 *   C8 b0 l f m0 m1 m2 m3 P...
 *                a frame: first byte b0 as given (FIN, RSV, opcode), masked
 *                with m0..m3 unless f bit 2, payload length L from l and
 *                f bits 3-4 (l, l*128, 32640+l, l*257), its length field in
 *                f bits 0-1's form (shortest, 16-bit, 64-bit, shortest);
 *                the payload the next input bytes (f bit 5: none), padded
 *                with a pattern to L.  f bit 6: the header alone, declaring
 *                L + l<<32 in the 64-bit form (what follows is its payload)
 *   C9 k         a binary message holding a ClientInfo sealed by
 *                fz_keys[1 + k%4] around JSON (k>>2)&3, in shape (k>>4)&7
 *   CA k n       SendPacket to fz_keys[(k&7)%5] of n*64 bytes (k bit 3:
 *                disco), in shape (k>>4)&7; k bit 7: n*256 bytes (up to
 *                65280), in binary messages of 16 KiB (32 KiB is the most
 *                one message may hold)
 *   CB n P...    a ping with the next n%126 bytes as payload
 *   CC n P...    a close frame, likewise (the first two bytes: the status)
 *   CD n P...    an unsolicited pong, likewise
 *   CE n P...    a binary message holding the next n+1 bytes (DERP bytes)
 *   CF v w       new WebSocket client (becomes current), handshake variant
 *                v/w (bits below; 0/0 the standard handshake)
 *   D0           new client that writes its own handshake (raw ops)
 *   D1 k         new raw DERP client registered by the harness (fz_keys[k%5])
 *   D2 n         the harness's frames (C8-CE) go out in writes of n bytes
 *                (0: whole; at most 64 writes, longer then), a round after
 *                each unless rounds are manual
 *   D3-DF        write all the remaining bytes
 *   E0-E7        current = handle (b-E0) mod 6
 *   E8-EB        nothing
 *   EC           one round of the relay's loop
 *   ED t         the clock moves t*256+1 ms, then a round (timers)
 *   EE-F3        fuzz_server.h's client operations (stop/resume reading,
 *                reset, half-close, pool pressure, relay closes, late reset)
 *   F4-FF        nothing
 *
 * Shapes of C9/CA (the DERP frame F in binary messages; a raw DERP client
 * gets F as it is): 0 one message; 1 two messages split in the middle; 2
 * fragmented (binary without FIN, then a continuation); 3 the same with a
 * ping between the fragments; 4 three fragments, the middle one empty; 5 two
 * messages split after F's 5-byte header; 6 F twice in one message; 7 one
 * message, then a ping.
 *
 * Handshake variants: v bits 0-1 request line (GET /derp HTTP/1.1, POST,
 * HTTP/1.0, GET /derp?x=1); bits 2-3 Connection (Upgrade, "keep-alive,
 * Upgrade", close, none); bits 4-5 Upgrade (websocket, WebSocket, none,
 * DERP); bits 6-7 Sec-WebSocket-Version (13, 8, none, "13, 8").  w bits 0-1
 * Sec-WebSocket-Key (RFC 6455's example, 23 characters, two keys, none);
 * bits 2-4 Sec-WebSocket-Protocol (derp, Derp, derpx, "foo, derp",
 * "derp , foo", none, xderp, "DERP, derpx"); bit 5 Derp-Fast-Start: 1; bit 6
 * Sec-WebSocket-Extensions: permessage-deflate; bit 7 no Host.
 */
#define main derp_main
#include "../../derp.c"
#undef main
#include "fuzz.h"
#include "fuzz_server.h"

#include <sys/ioctl.h>

/* RFC 6455 1.3's example: the key and the accept value it must produce. */
#define WS_KEY		"dGhlIHNhbXBsZSBub25jZQ=="
#define WS_KEY_ACCEPT	"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

#define PING_RING	32	/* pings remembered per client */
#define HEAD_MAX	1024	/* response head the checker keeps */
#define CODE_NONE	0x10000	/* a close frame without a status */

/* Client frames as the relay must read them: derp-protocol.md 5.4 and
 * RFC 6455 5.2-5.5, in the order derper's library checks them. */
struct mirror {
	uint8_t h[WS_HDR_MAX];
	unsigned hlen;		/* header bytes (kept until the frame ends) */
	uint64_t left;		/* payload left */
	uint32_t pos;		/* payload read: the mask's phase */
	uint8_t op, fin, mask[4];
	int in_msg;		/* a fragmented data message is open */
	uint32_t msg_len;
	uint8_t ctl[WS_CTL_MAX];
	unsigned ctl_len;
	int event;		/* a close is owed (the first one ends it) */
	unsigned code;		/* ... with this status (CODE_NONE: empty) */
	uint8_t ping[PING_RING][WS_CTL_MAX + 1];	/* [0]: length */
	unsigned npings;	/* complete pings before any event */
};

/*
 * The packets of CA carry a marker no input holds (PK_MAGIC, after the disco
 * magic for disco ones), the operation's k byte and a pattern from it, so
 * whoever receives one checks it arrived intact: through the relay's
 * unmasking (paused and resumed anywhere), its queues and its framing.
 * Except from a key whose client's socket once took less than it was given
 * (the rest is dropped, as fz_send drops it): its stream is cut, and what
 * follows the cut lands in the packet it cut short.
 */
static const uint8_t pk_magic[8] = { 0x9e, 0x37, 0x79, 0xb9, 0x7f, 0x4a,
    0x7c, 0x15 };
#define PK_HEAD		15	/* disco magic 6 + PK_MAGIC 8 + k */

/* Payload byte i of a CA packet whose k byte is at base. */
static uint8_t
pk_pattern(size_t base, uint8_t k, size_t i)
{
	return (uint8_t)((i - base - 1) * 13 + k);
}

/* A DERP stream's RecvPackets, for the check above. */
struct pkchk {
	uint8_t hdr[FRAME_HEADER_BYTES];
	unsigned hlen;
	uint32_t left, pos;	/* frame payload left, read */
	uint8_t src[KEY_BYTES];
	uint8_t head[PK_HEAD];
	int mode;		/* 0 deciding, 1 a CA packet, 2 another */
	unsigned base;		/* where its k byte is */
	uint8_t k;
	unsigned packets;	/* CA packets received whole */
};

enum { OUT_HEAD, OUT_WS, OUT_RAW, OUT_IGNORE, OUT_CLOSED };

/* One client's checker: what the relay sent it, and the model of what it
 * wrote.  Indexed like fz_h. */
struct wschk {
	int active;		/* a client of this file (not fz_register's) */
	int mode;		/* OUT_* */
	int std;		/* the standard handshake: a WebSocket 101 owed */
	int key_known;		/* the handshake sent WS_KEY (once) */
	int want_1008;		/* the 101 named no "derp": close 1008 first */
	char head[HEAD_MAX];
	size_t head_len;
	/* frames */
	uint8_t fh[10];
	unsigned fh_len, fh_need;
	uint64_t left;
	uint8_t op;
	uint8_t ctl[WS_CTL_MAX];
	unsigned ctl_len;
	unsigned frames, pongs, since_close;
	uint8_t last_pong[WS_CTL_MAX + 1];
	/* the DERP stream */
	uint8_t sk[FRAME_HEADER_BYTES + 8 + KEY_BYTES];
	unsigned sk_got;
	struct fz_handle derp;	/* fz_check_stream's state */
	struct pkchk pk;	/* RecvPacket contents (fz_register's too) */
	/* the client's side */
	int mir_on;
	struct mirror m;
};

static struct wschk chk[FZ_MAX];
static unsigned hkeys[FZ_MAX];	/* fz_keys a client registered (may have) */
static int hcut[FZ_MAX];	/* its socket once dropped bytes */
static unsigned cut_keys;	/* keys whose packets may arrive cut */
static size_t split_bytes;	/* D2: 0 whole */
static int rounds_manual;
static unsigned mask_ctr;
static uint8_t expect_sk[FRAME_HEADER_BYTES + 8 + KEY_BYTES];

static void
fuzz_init(void)
{
	static const uint8_t magic[8] = { 'D', 'E', 'R', 'P', 0xf0, 0x9f,
	    0x94, 0x91 };

	fz_server_init();
	expect_sk[0] = 0x01;
	put_be32(expect_sk + 1, 8 + KEY_BYTES);
	memcpy(expect_sk + FRAME_HEADER_BYTES, magic, 8);
	memcpy(expect_sk + FRAME_HEADER_BYTES + 8, fz_s->pub, KEY_BYTES);
}

/* ---- the model of the relay's reader ---- */

/* RFC 6455 7.4: may an endpoint put this status in a close frame?  As
 * derper's library (validWireCloseCode): 1000-1014 but 1004-1006 (reserved,
 * "no status", "abnormal"), and 3000-4999. */
FUZZ_NOCOV static int
code_sendable(unsigned code)
{
	return (code >= 1000 && code <= 1003) || (code >= 1007 &&
	    code <= 1014) || (code >= 3000 && code <= 4999);
}

FUZZ_NOCOV static unsigned
mir_need(const struct mirror *m)
{
	if (m->hlen < 2)
		return 2;
	return 2 + ((m->h[1] & 0x7f) == 126 ? 2 : (m->h[1] & 0x7f) == 127 ?
	    8 : 0) + 4;	/* the relay reads 4 mask bytes even when unmasked */
}

/* A frame's payload is complete. */
FUZZ_NOCOV static void
mir_frame_end(struct mirror *m)
{
	unsigned k;

	m->hlen = 0;
	if (m->op == WS_OP_PING) {
		k = m->npings++ % PING_RING;
		m->ping[k][0] = (uint8_t)m->ctl_len;
		memcpy(m->ping[k] + 1, m->ctl, m->ctl_len);
	} else if (m->op == WS_OP_CLOSE) {
		/* Echoed; a status no endpoint may send (or one byte, which
		 * cannot hold one) is a protocol error, as derper's library
		 * has it (parseClosePayload). */
		m->event = 1;
		m->code = m->ctl_len == 0 ? CODE_NONE : m->ctl_len == 1 ? 1002 :
		    (unsigned)(m->ctl[0] << 8 | m->ctl[1]);
		if (m->code != CODE_NONE && !code_sendable(m->code))
			m->code = 1002;
	}
}

static void
mir_violation(struct mirror *m, unsigned code)
{
	m->event = 1;
	m->code = code;
}

/* The header is complete: what derper's library decides. */
FUZZ_NOCOV static void
mir_frame_begin(struct mirror *m)
{
	uint64_t len = m->h[1] & 0x7f;
	unsigned i, at = 2;

	if (len == 126) {
		len = (uint64_t)m->h[2] << 8 | m->h[3];
		at = 4;
	} else if (len == 127) {
		for (len = 0, i = 0; i < 8; i++)
			len = len << 8 | m->h[2 + i];
		at = 10;
	}
	memcpy(m->mask, m->h + at, 4);
	m->op = m->h[0] & 0x0f;
	m->fin = m->h[0] >> 7;
	m->pos = 0;
	m->ctl_len = 0;
	if ((m->h[0] & 0x70) || !(m->h[1] & 0x80)) {
		mir_violation(m, 1002);
		return;
	}
	if (m->op >= 8) {
		if (m->op > WS_OP_PONG || !m->fin || len > WS_CTL_MAX) {
			mir_violation(m, 1002);
			return;
		}
	} else if (m->op == WS_OP_CONT) {
		if (!m->in_msg) {
			mir_violation(m, 1002);
			return;
		}
	} else if (m->op == WS_OP_TEXT || m->op == WS_OP_BINARY) {
		if (m->in_msg) {
			mir_violation(m, 1002);
			return;
		}
		if (m->op == WS_OP_TEXT) {
			mir_violation(m, 1003);
			return;
		}
		m->msg_len = 0;
	} else {
		mir_violation(m, 1002);
		return;
	}
	if (m->op == WS_OP_CONT || m->op == WS_OP_BINARY) {
		if (len > 32768 - (uint64_t)m->msg_len) {	/* derper's limit */
			mir_violation(m, 1009);
			return;
		}
		m->msg_len += (uint32_t)len;
		m->in_msg = !m->fin;
	}
	m->left = len;
	if (len == 0)
		mir_frame_end(m);
}

FUZZ_NOCOV static void
mir_feed(struct mirror *m, const uint8_t *p, size_t n)
{
	size_t k, i;

	while (n > 0 && m->event == 0) {
		if (m->hlen < mir_need(m)) {
			m->h[m->hlen++] = *p++;
			n--;
			if (m->hlen == mir_need(m))
				mir_frame_begin(m);
			continue;
		}
		k = m->left < n ? (size_t)m->left : n;
		if (m->op >= 8 && m->op != WS_OP_PONG)
			for (i = 0; i < k; i++)
				m->ctl[m->ctl_len++] = p[i] ^
				    m->mask[(m->pos + i) & 3];
		m->pos += (uint32_t)k;
		m->left -= k;
		p += k;
		n -= k;
		if (m->left == 0)
			mir_frame_end(m);
	}
}

/* ---- what the relay sends ---- */

FUZZ_NOCOV static const char *
resp_find(const struct wschk *w, const char *what)
{
	size_t n = strlen(what), i;

	for (i = 0; i + n <= w->head_len; i++)
		if (memcmp(w->head + i, what, n) == 0)
			return w->head + i;
	return NULL;
}

/* A complete response head. */
FUZZ_NOCOV static void
resp_head_done(struct wschk *w, int hi)
{
	static const char r101[] = "HTTP/1.1 101 Switching Protocols\r\n";

	if (w->head_len < sizeof r101 - 1 || memcmp(w->head, r101,
	    sizeof r101 - 1) != 0) {
		FUZZ_CHECK(!w->std || !fz_s->cfg.derp, "client %d: the "
		    "standard handshake was answered %.40s", hi, w->head);
		w->mode = OUT_IGNORE;
		return;
	}
	if (resp_find(w, "\r\nUpgrade: DERP\r\n") != NULL) {
		FUZZ_CHECK(!w->std, "client %d: a WebSocket handshake was "
		    "answered with raw DERP", hi);
		FUZZ_CHECK(resp_find(w, "\r\nSec-WebSocket") == NULL,
		    "client %d: a raw DERP 101 with WebSocket headers", hi);
		w->mode = OUT_RAW;
		return;
	}
	FUZZ_CHECK(resp_find(w, "\r\nUpgrade: websocket\r\n") != NULL &&
	    resp_find(w, "\r\nConnection: Upgrade\r\n") != NULL, "client %d: "
	    "a 101 neither DERP nor websocket: %.*s", hi, (int)w->head_len,
	    w->head);
	FUZZ_CHECK(!w->key_known || resp_find(w, "\r\nSec-WebSocket-Accept: "
	    WS_KEY_ACCEPT "\r\n") != NULL, "client %d: wrong or no "
	    "Sec-WebSocket-Accept: %.*s", hi, (int)w->head_len, w->head);
	FUZZ_CHECK(resp_find(w, "\r\nDerp-") == NULL, "client %d: the "
	    "WebSocket 101 has Derp- headers", hi);
	w->want_1008 = resp_find(w, "\r\nSec-WebSocket-Protocol: derp\r\n") ==
	    NULL;
	FUZZ_CHECK(!w->std || !w->want_1008, "client %d: the standard "
	    "handshake got no derp subprotocol", hi);
	w->mode = OUT_WS;
	w->fh_len = 0;
	w->fh_need = 2;
}

/* Is the packet seen so far (cnt payload bytes) one of CA's?  Checks what
 * it has of the pattern. */
FUZZ_NOCOV static void
pk_decide(struct pkchk *pk, int hi, unsigned cnt)
{
	unsigned i;
	int j;

	for (j = 0; j < FZ_NKEYS; j++)
		if ((cut_keys >> j & 1) && memcmp(pk->src, fz_keys[j],
		    KEY_BYTES) == 0) {
			pk->mode = 2;
			return;
		}
	if (cnt > 8 && memcmp(pk->head, pk_magic, 8) == 0)
		pk->base = 8;
	else if (cnt > 14 && memcmp(pk->head, disco_magic, 6) == 0 &&
	    memcmp(pk->head + 6, pk_magic, 8) == 0)
		pk->base = 14;
	else {
		pk->mode = 2;
		return;
	}
	pk->mode = 1;
	pk->k = pk->head[pk->base];
	for (i = pk->base + 1; i < cnt; i++)
		FUZZ_CHECK(pk->head[i] == pk_pattern(pk->base, pk->k, i),
		    "client %d: packet byte %u is %02x, sent as %02x", hi, i,
		    pk->head[i], pk_pattern(pk->base, pk->k, i));
}

FUZZ_NOCOV static void
pk_feed(struct pkchk *pk, int hi, const uint8_t *p, size_t n)
{
	size_t k, i;
	uint32_t q;

	while (n > 0) {
		if (pk->hlen < FRAME_HEADER_BYTES) {
			pk->hdr[pk->hlen++] = *p++;
			n--;
			if (pk->hlen < FRAME_HEADER_BYTES)
				continue;
			pk->left = get_be32(pk->hdr + 1);
			pk->pos = 0;
			pk->mode = 0;
			if (pk->left == 0)
				pk->hlen = 0;
			continue;
		}
		k = n < pk->left ? n : pk->left;
		if (pk->hdr[0] == FRAME_RECV_PACKET) {
			for (i = 0; i < k; i++) {
				q = pk->pos + (uint32_t)i;
				if (q < KEY_BYTES) {
					pk->src[q] = p[i];
					continue;
				}
				q -= KEY_BYTES;
				if (pk->mode == 0 && q < PK_HEAD) {
					pk->head[q] = p[i];
					if (q == PK_HEAD - 1)
						pk_decide(pk, hi, PK_HEAD);
				} else if (pk->mode == 1) {
					FUZZ_CHECK(p[i] == pk_pattern(pk->base,
					    pk->k, q), "client %d: byte %u of "
					    "packet %u (%u bytes) is %02x, sent as "
					    "%02x", hi, q, pk->packets + 1,
					    get_be32(pk->hdr + 1) - KEY_BYTES, p[i],
					    pk_pattern(pk->base, pk->k, q));
				}
			}
		}
		pk->pos += (uint32_t)k;
		pk->left -= (uint32_t)k;
		p += k;
		n -= k;
		if (pk->left > 0)
			continue;
		pk->hlen = 0;
		if (pk->hdr[0] != FRAME_RECV_PACKET)
			continue;
		if (pk->mode == 0 && pk->pos > KEY_BYTES)
			pk_decide(pk, hi, pk->pos - KEY_BYTES);
		pk->packets += pk->mode == 1;
	}
}

/* DERP bytes: ServerKey, then fuzz_server.h's stream checker. */
FUZZ_NOCOV static void
derp_bytes(struct wschk *w, int hi, const uint8_t *p, size_t n)
{
	while (n > 0 && w->sk_got < sizeof w->sk) {
		FUZZ_CHECK(*p == expect_sk[w->sk_got], "client %d: byte %u of "
		    "ServerKey is %02x, not %02x", hi, w->sk_got, *p,
		    expect_sk[w->sk_got]);
		w->sk[w->sk_got++] = *p++;
		n--;
	}
	if (n > 0) {
		fz_check_stream(&w->derp, p, n);
		pk_feed(&w->pk, hi, p, n);
	}
}

/* A whole frame from the relay. */
FUZZ_NOCOV static void
ws_frame_done(struct wschk *w, int hi)
{
	const struct mirror *m = &w->m;
	unsigned code, i, found;

	w->frames++;
	if (w->want_1008 && w->frames == 1)
		FUZZ_CHECK(w->op == WS_OP_CLOSE, "client %d: no derp "
		    "subprotocol, yet the relay sent opcode %u first", hi, w->op);
	if (w->op == WS_OP_PONG) {
		w->pongs++;
		w->last_pong[0] = (uint8_t)w->ctl_len;
		memcpy(w->last_pong + 1, w->ctl, w->ctl_len);
		if (!w->mir_on)
			return;
		FUZZ_CHECK(w->pongs <= m->npings, "client %d: %u pongs for %u "
		    "pings", hi, w->pongs, m->npings);
		for (i = 0, found = 0; i < PING_RING && i < m->npings; i++)
			found |= memcmp(m->ping[i], w->last_pong,
			    1 + w->ctl_len) == 0;
		FUZZ_CHECK(found || m->npings > PING_RING, "client %d: a pong "
		    "of %u bytes no ping carried", hi, w->ctl_len);
		return;
	}
	if (w->op != WS_OP_CLOSE)
		return;
	FUZZ_CHECK(w->ctl_len != 1, "client %d: close frame of one byte", hi);
	code = w->ctl_len == 0 ? CODE_NONE : (unsigned)(w->ctl[0] << 8 |
	    w->ctl[1]);
	FUZZ_CHECK(code == CODE_NONE || code_sendable(code), "client %d: "
	    "close status %u, which RFC 6455 7.4 forbids sending", hi, code);
	w->mode = OUT_CLOSED;
	w->since_close = 0;
	if (w->want_1008) {
		FUZZ_CHECK(code == 1008, "client %d: no derp subprotocol, yet "
		    "close %u", hi, code);
	} else if (w->mir_on) {
		FUZZ_CHECK(m->event, "client %d: close %u, but the client "
		    "sent nothing to close for", hi, code);
		FUZZ_CHECK(code == m->code, "client %d: close status %u, "
		    "expected %u (%u: none)", hi, code, m->code, CODE_NONE);
	}
}

/* The relay's frames. */
FUZZ_NOCOV static void
ws_bytes(struct wschk *w, int hi, const uint8_t *p, size_t n)
{
	size_t k;
	uint8_t b0, b1;
	unsigned l7;

	while (n > 0) {
		FUZZ_CHECK(w->mode == OUT_WS, "client %d: %zu bytes after the "
		    "close frame", hi, n);
		if (w->fh_len < w->fh_need) {
			w->fh[w->fh_len++] = *p++;
			n--;
			if (w->fh_len == 2) {
				b0 = w->fh[0];
				b1 = w->fh[1];
				w->op = b0 & 0x0f;
				l7 = b1 & 0x7f;
				FUZZ_CHECK(b0 & 0x80, "client %d: frame without "
				    "FIN (%02x)", hi, b0);
				FUZZ_CHECK(!(b0 & 0x70), "client %d: RSV bits "
				    "(%02x)", hi, b0);
				FUZZ_CHECK(w->op == WS_OP_BINARY || w->op ==
				    WS_OP_PONG || w->op == WS_OP_CLOSE,
				    "client %d: opcode %u", hi, w->op);
				FUZZ_CHECK(!(b1 & 0x80), "client %d: a masked "
				    "server frame", hi);
				FUZZ_CHECK(w->op == WS_OP_BINARY || l7 <=
				    WS_CTL_MAX, "client %d: control frame "
				    "length %u", hi, l7);
				w->fh_need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
				w->left = l7;
			}
			if (w->fh_len < w->fh_need)
				continue;
			l7 = w->fh[1] & 0x7f;
			if (l7 == 126) {
				w->left = (uint64_t)w->fh[2] << 8 | w->fh[3];
				FUZZ_CHECK(w->left >= 126, "client %d: length %u "
				    "in the 16-bit form", hi, (unsigned)w->left);
			} else if (l7 == 127) {
				unsigned i;

				for (w->left = 0, i = 2; i < 10; i++)
					w->left = w->left << 8 | w->fh[i];
				FUZZ_CHECK(w->left > 0xffff && w->left >> 63 == 0,
				    "client %d: length %llu in the 64-bit form",
				    hi, (unsigned long long)w->left);
			}
			FUZZ_CHECK(w->op != WS_OP_BINARY || w->left > 0,
			    "client %d: an empty binary message", hi);
			w->ctl_len = 0;
			if (w->left == 0) {
				w->fh_len = 0;
				w->fh_need = 2;
				ws_frame_done(w, hi);
			}
			continue;
		}
		k = w->left < n ? (size_t)w->left : n;
		if (w->op == WS_OP_BINARY) {
			derp_bytes(w, hi, p, k);
		} else {
			memcpy(w->ctl + w->ctl_len, p, k);
			w->ctl_len += (unsigned)k;
		}
		p += k;
		n -= k;
		w->left -= k;
		if (w->left == 0) {
			w->fh_len = 0;
			w->fh_need = 2;
			ws_frame_done(w, hi);
		}
	}
}

/* Everything the relay sent one client of this file. */
FUZZ_NOCOV static void
out_bytes(struct wschk *w, int hi, const uint8_t *p, size_t n)
{
	const char *e;

	while (n > 0) {
		switch (w->mode) {
		case OUT_HEAD:
			if (w->head_len == 0 && *p == 0x01) {
				/* fast start, raw: no response at all */
				FUZZ_CHECK(!w->std, "client %d: the standard "
				    "handshake got raw DERP", hi);
				w->mode = OUT_RAW;
				continue;
			}
			FUZZ_CHECK(w->head_len > 0 || *p == 'H', "client %d: "
			    "the relay's first byte is %02x", hi, *p);
			w->head[w->head_len++] = (char)*p++;
			n--;
			if (w->head_len >= 4 && memcmp(w->head + w->head_len - 4,
			    "\r\n\r\n", 4) == 0) {
				resp_head_done(w, hi);
			} else if (w->head_len == sizeof w->head) {
				e = "HTTP/1.1 101 ";
				FUZZ_CHECK(memcmp(w->head, e, strlen(e)) != 0,
				    "client %d: a 101 head over %zu bytes", hi,
				    sizeof w->head);
				w->mode = OUT_IGNORE;
			}
			break;
		case OUT_WS:
		case OUT_CLOSED:
			ws_bytes(w, hi, p, n);
			return;
		case OUT_RAW:
			derp_bytes(w, hi, p, n);
			return;
		default:
			return;
		}
	}
}

/* fz_drain's place: read everything, check it. */
FUZZ_NOCOV static void
drain_hook(struct fz_handle *h)
{
	int hi = (int)(h - fz_h);
	ssize_t n;

	while ((n = read(h->remote, fz_drain_buf, sizeof fz_drain_buf)) > 0 ||
	    (n < 0 && errno == EINTR)) {
		if (n <= 0)
			continue;
		if (chk[hi].active)
			out_bytes(&chk[hi], hi, fz_drain_buf, (size_t)n);
		else if (h->checked) {
			fz_check_stream(h, fz_drain_buf, (size_t)n);
			pk_feed(&chk[hi].pk, hi, fz_drain_buf, (size_t)n);
		}
	}
}

/*
 * After a round: the relay's WebSocket fields within their bounds; a client
 * that got a close frame is gone (the relay closes as soon as it is
 * written); and where the relay has read all a client wrote and sent all it
 * had, its reader agrees with the model, the last ping is answered, and a
 * close or a violation has been answered.
 */
FUZZ_NOCOV static void
check_relay(int after_round)
{
	struct conn *c;
	struct wschk *w;
	const struct mirror *m;
	uint32_t i;
	int hi, q, r, quiet;

	for (i = 0; i < fz_s->max; i++) {
		c = &fz_s->conns[i];
		if (c->state == CS_FREE)
			continue;
		if (!c->ws.on) {
			FUZZ_CHECK(c->ws.close == WS_CLOSE_NONE &&
			    c->ws.plain == 0 && c->ws.hdr_len == 0 &&
			    !c->ws.pong_pending, "slot %u: WebSocket state on "
			    "a plain connection", i);
			continue;
		}
		FUZZ_CHECK(c->ws.hdr_len <= WS_HDR_MAX && c->ws.ctl_len <=
		    WS_CTL_MAX && c->ws.msg_len <= WS_MESSAGE_MAX &&
		    c->ws.in_msg <= 1 && c->ws.close <= WS_CLOSE_SENT &&
		    c->ws.plain <= c->raw.len, "slot %u: WebSocket state: hdr "
		    "%u ctl %u msg %u in_msg %u close %u plain %u/%u", i,
		    c->ws.hdr_len, c->ws.ctl_len, c->ws.msg_len, c->ws.in_msg,
		    c->ws.close, c->ws.plain, c->raw.len);
		FUZZ_CHECK(c->ws.close != WS_CLOSE_SENT || c->close_after,
		    "slot %u: close frame sent, connection kept", i);
		FUZZ_CHECK(c->ws.close != WS_CLOSE_NONE || c->ws.left <=
		    WS_MESSAGE_MAX, "slot %u: %u payload bytes left", i,
		    c->ws.left);
	}
	for (hi = 0; hi < FZ_MAX; hi++) {
		w = &chk[hi];
		m = &w->m;
		if (!w->active)
			continue;
		if (w->mode == OUT_CLOSED && fz_h[hi].open && after_round)
			FUZZ_CHECK(w->since_close++ < 2, "client %d: close "
			    "frame sent, connection still open", hi);
		if (!fz_h[hi].open || fz_h[hi].remote < 0 ||
		    fz_h[hi].stalled || w->mode != OUT_WS || !w->mir_on)
			continue;
		c = &fz_s->conns[fz_h[hi].idx];
		/* Nothing in flight either way: the relay's socket and the
		 * client's both read. */
		q = r = 0;
		if (ioctl(c->fd, FIONREAD, &q) != 0 ||
		    ioctl(fz_h[hi].remote, FIONREAD, &r) != 0)
			continue;
		quiet = q == 0 && r == 0 && c->ilen == 0 && !c->in_paused &&
		    !conn_out_pending(c) && c->ws.plain == 0 &&
		    (c->state == CS_DERP_INFO || c->state == CS_DERP);
		if (!quiet)
			continue;
		/* Everything read, everything sent. */
		FUZZ_CHECK(!m->event && !w->want_1008, "client %d: owed "
		    "close %u, relay silent (close state %u)", hi,
		    m->event ? m->code : 1008, c->ws.close);
		FUZZ_CHECK(c->ws.close == WS_CLOSE_NONE, "client %d: the "
		    "relay closes (%u) for nothing the client sent", hi,
		    c->ws.close);
		FUZZ_CHECK(c->ws.hdr_len == m->hlen && c->ws.in_msg ==
		    m->in_msg, "client %d: relay reader at header %u in_msg "
		    "%u, model %u %d", hi, c->ws.hdr_len, c->ws.in_msg,
		    m->hlen, m->in_msg);
		if (m->hlen > 0 && m->hlen == mir_need(m))
			FUZZ_CHECK(c->ws.left == m->left && c->ws.op == m->op,
			    "client %d: relay has %u left of op %u, model "
			    "%llu of %u", hi, c->ws.left, c->ws.op,
			    (unsigned long long)m->left, m->op);
		if (m->in_msg)
			FUZZ_CHECK(c->ws.msg_len == m->msg_len, "client %d: "
			    "message of %u bytes, model %u", hi, c->ws.msg_len,
			    m->msg_len);
		if (m->hlen == 0 && m->npings > 0) {
			const uint8_t *last = m->ping[(m->npings - 1) %
			    PING_RING];

			FUZZ_CHECK(!c->ws.pong_pending && w->pongs > 0 &&
			    memcmp(w->last_pong, last, 1 + last[0]) == 0,
			    "client %d: the last of %u pings (%u bytes) not "
			    "answered (%u pongs, pending %u)", hi, m->npings,
			    last[0], w->pongs, c->ws.pong_pending);
		}
	}
}

static void
round_ws(void)
{
	fz_round();
	check_relay(1);
}

static void
step_done(void)
{
	if (!rounds_manual)
		round_ws();
}

/* ---- writing ---- */

/* As fz_send, and the model sees exactly what the socket took. */
static void
send_raw(int hi, const uint8_t *p, size_t n)
{
	struct fz_handle *h;
	ssize_t w;

	if (hi < 0)
		return;
	h = &fz_h[hi];
	while (h->remote >= 0 && n > 0) {
		w = write(h->remote, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			hcut[hi] = 1;
			cut_keys |= hkeys[hi];
			break;
		}
		if (chk[hi].mir_on)
			mir_feed(&chk[hi].m, p, (size_t)w);
		p += w;
		n -= (size_t)w;
	}
}

/* The harness's frames: whole, or in D2's pieces with rounds between (at
 * most SPLIT_MAX of them: a 64 KiB packet byte by byte would be 65536
 * rounds). */
#define SPLIT_MAX	64

static void
send_frames(int hi, const uint8_t *p, size_t n)
{
	size_t k, piece = (n + SPLIT_MAX - 1) / SPLIT_MAX;

	if (split_bytes == 0) {
		send_raw(hi, p, n);
		step_done();
		return;
	}
	if (piece < split_bytes)
		piece = split_bytes;
	while (n > 0) {
		k = n < piece ? n : piece;
		send_raw(hi, p, k);
		step_done();
		p += k;
		n -= k;
	}
}

/* The next masking key: varied, deterministic. */
static void
next_mask(uint8_t m[4])
{
	mask_ctr++;
	m[0] = (uint8_t)(0x37 ^ mask_ctr);
	m[1] = (uint8_t)(0xfa + 3 * mask_ctr);
	m[2] = 0x21;
	m[3] = (uint8_t)(0x3d ^ (mask_ctr >> 3));
}

/*
 * One client frame into out: header b0, the length in the given form (0
 * shortest, 1 16-bit, 2 64-bit) declaring `declared`, masked with m unless
 * !masked, then the n payload bytes at p (NULL: none).  Returns its size.
 */
static size_t
put_frame(uint8_t *out, uint8_t b0, uint64_t declared, int form, int masked,
    const uint8_t m[4], const uint8_t *p, size_t n)
{
	size_t at = 2, i;
	int b;

	out[0] = b0;
	if (form == 0 && declared < 126) {
		out[1] = (uint8_t)declared;
	} else if (form <= 1 && declared <= 0xffff) {
		out[1] = 126;
		out[2] = (uint8_t)(declared >> 8);
		out[3] = (uint8_t)declared;
		at = 4;
	} else {
		out[1] = 127;
		for (b = 0; b < 8; b++)
			out[2 + b] = (uint8_t)(declared >> (56 - 8 * b));
		at = 10;
	}
	if (masked) {
		out[1] |= 0x80;
		memcpy(out + at, m, 4);
		at += 4;
	}
	for (i = 0; i < n; i++)
		out[at + i] = masked ? p[i] ^ m[i & 3] : p[i];
	return at + n;
}

/* A well-formed masked frame (shortest length form). */
static size_t
put_simple(uint8_t *out, uint8_t b0, const uint8_t *p, size_t n)
{
	uint8_t m[4];

	next_mask(m);
	return put_frame(out, b0, n, 0, 1, m, p, n);
}

/* Frames are built here: the largest is C8's 65535 bytes and its header, a
 * 16 KiB packet twice over (shape 6), or a 64 KiB packet in five messages. */
static uint8_t fbuf[8 * WS_HDR_MAX + 65536 + 2 * (FRAME_HEADER_BYTES +
    KEY_BYTES + 16384)];
static uint8_t pbuf[65536 + 64];	/* payloads */

/* The DERP bytes p[0, n) (one frame, or two for shape 6) in binary
 * messages of the given shape (see the top). */
static void
send_shaped(int hi, int shape, const uint8_t *p, size_t n)
{
	static const uint8_t ping[2] = { 'a', 'b' };
	size_t o = 0, half = n / 2, cut = n < FRAME_HEADER_BYTES ? n :
	    FRAME_HEADER_BYTES;

	if (hi >= 0 && (!chk[hi].active || chk[hi].mode == OUT_RAW)) {
		send_frames(hi, p, n);	/* a raw DERP client: no framing */
		return;
	}
	switch (shape) {
	case 0:
		o += put_simple(fbuf + o, 0x82, p, n);
		break;
	case 1:
		o += put_simple(fbuf + o, 0x82, p, half);
		o += put_simple(fbuf + o, 0x82, p + half, n - half);
		break;
	case 2:
	case 3:
		o += put_simple(fbuf + o, 0x02, p, half);
		if (shape == 3)
			o += put_simple(fbuf + o, 0x89, ping, sizeof ping);
		o += put_simple(fbuf + o, 0x80, p + half, n - half);
		break;
	case 4:
		o += put_simple(fbuf + o, 0x02, p, half);
		o += put_simple(fbuf + o, 0x00, p, 0);
		o += put_simple(fbuf + o, 0x80, p + half, n - half);
		break;
	case 5:
		o += put_simple(fbuf + o, 0x82, p, cut);
		o += put_simple(fbuf + o, 0x82, p + cut, n - cut);
		break;
	case 6:
		memcpy(pbuf + n, p, n);	/* p is pbuf */
		o += put_simple(fbuf + o, 0x82, p, 2 * n);
		break;
	default:
		o += put_simple(fbuf + o, 0x82, p, n);
		o += put_simple(fbuf + o, 0x89, ping, sizeof ping);
		break;
	}
	send_frames(hi, fbuf, o);
}

static const char *const jsons[4] = {
	"{\"version\":2,\"CanAckPings\":true}",
	"{\"version\":2}",
	"{\"version\":2,\"IsProber\":true,\"CanAckPings\":true}",
	"{}",
};

/* The standard handshake, or a variant (see the top). */
static size_t
ws_request(char *out, size_t cap, uint8_t v, uint8_t w, int *key_known)
{
	static const char *const lines[4] = { "GET /derp HTTP/1.1",
	    "POST /derp HTTP/1.1", "GET /derp HTTP/1.0", "GET /derp?x=1 HTTP/1.1" };
	static const char *const conns[4] = { "Connection: Upgrade\r\n",
	    "Connection: keep-alive, Upgrade\r\n", "Connection: close\r\n", "" };
	static const char *const ups[4] = { "Upgrade: websocket\r\n",
	    "Upgrade: WebSocket\r\n", "", "Upgrade: DERP\r\n" };
	static const char *const vers[4] = { "Sec-WebSocket-Version: 13\r\n",
	    "Sec-WebSocket-Version: 8\r\n", "",
	    "Sec-WebSocket-Version: 13, 8\r\n" };
	static const char *const keys[4] = { "Sec-WebSocket-Key: " WS_KEY "\r\n",
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n",
	    "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Key: " WS_KEY "\r\n",
	    "" };
	static const char *const protos[8] = { "derp", "Derp", "derpx",
	    "foo, derp", "derp , foo", NULL, "xderp", "DERP, derpx" };
	int n;

	*key_known = (w & 3) == 0;
	n = snprintf(out, cap, "%s\r\n%s%s%s%s%s%s%s%s%s\r\n",
	    lines[v & 3], (w & 0x80) ? "" : "Host: derp.example.com\r\n",
	    conns[(v >> 2) & 3], ups[(v >> 4) & 3], vers[(v >> 6) & 3],
	    keys[w & 3], protos[(w >> 2) & 7] ? "Sec-WebSocket-Protocol: " : "",
	    protos[(w >> 2) & 7] ? protos[(w >> 2) & 7] : "",
	    protos[(w >> 2) & 7] ? "\r\n" : "",
	    (w & 0x20) ? "Derp-Fast-Start: 1\r\n" : "");
	FUZZ_CHECK(n > 0 && (size_t)n < cap, "handshake too long");
	if (w & 0x40) {	/* before the blank line */
		n -= 2;
		n += snprintf(out + n, cap - (size_t)n,
		    "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
	}
	return (size_t)n;
}

/* A new client of the given kind (0 WebSocket with variant v/w, 1 writes
 * its own handshake, 2 registered by the harness under key k).  Its handle,
 * or -1 when every slot is taken. */
static int
client_open(int kind, uint8_t v, uint8_t w, int k, int port80, int addr)
{
	char req[512];
	size_t n;
	int hi = fz_open(port80, addr), known;

	if (hi < 0)
		return -1;
	memset(&chk[hi], 0, sizeof chk[hi]);
	hkeys[hi] = 0;
	hcut[hi] = 0;
	if (kind == 2) {
		hkeys[hi] = 1u << k;
		fz_register(hi, k);
		check_relay(1);
		return hi;
	}
	chk[hi].active = 1;
	chk[hi].mode = OUT_HEAD;
	if (kind == 1)
		return hi;
	n = ws_request(req, sizeof req, v, w, &known);
	chk[hi].key_known = known;
	chk[hi].std = v == 0 && w == 0 && !port80;
	send_raw(hi, (const uint8_t *)req, n);
	chk[hi].mir_on = 1;	/* what follows the head is frames */
	step_done();
	return hi;
}

/* A ClientInfo for fz_keys[1 + k%4] in shape (k>>4)&7. */
static void
send_client_info(int hi, uint8_t k)
{
	const char *j = jsons[(k >> 2) & 3];
	size_t n = fz_client_info(pbuf, sizeof pbuf / 2, 1 + k % 4,
	    (const uint8_t *)j, strlen(j));

	if (hi >= 0) {
		hkeys[hi] |= 2u << (k % 4);
		if (hcut[hi])
			cut_keys |= hkeys[hi];
	}

	send_shaped(hi, (k >> 4) & 7, pbuf, n);
}

static void
send_packet(int hi, uint8_t k, uint8_t len8)
{
	size_t n = (size_t)len8 * ((k & 0x80) ? 256 : 64), i;
	size_t base = (k & 8) ? 6 : 0, o = 0, at, m;
	uint8_t *q = pbuf + FRAME_HEADER_BYTES + KEY_BYTES;

	frame_put_header(pbuf, FRAME_SEND_PACKET, (uint32_t)(KEY_BYTES + n));
	memcpy(pbuf + FRAME_HEADER_BYTES, fz_keys[(k & 7) % FZ_NKEYS], KEY_BYTES);
	if (n > 0) {	/* n >= 64: the disco magic, PK_MAGIC, k, the pattern */
		memcpy(q, disco_magic, 6);
		memcpy(q + base, pk_magic, sizeof pk_magic);
		base += sizeof pk_magic;
		q[base] = k;
		for (i = base + 1; i < n; i++)
			q[i] = pk_pattern(base, k, i);
	}
	n += FRAME_HEADER_BYTES + KEY_BYTES;
	if (!(k & 0x80) || (hi >= 0 && (!chk[hi].active ||
	    chk[hi].mode == OUT_RAW))) {
		send_shaped(hi, (k >> 4) & 7, pbuf, n);
		return;
	}
	for (at = 0; at < n; at += m) {
		m = n - at < 16384 ? n - at : 16384;
		o += put_simple(fbuf + o, 0x82, pbuf + at, m);
	}
	send_frames(hi, fbuf, o);
}

/* C8: returns the input bytes used after the opcode, 0 if too short. */
static size_t
op_frame(int hi, const uint8_t *d, size_t avail)
{
	uint8_t b0, l, f;
	const uint8_t *mk;
	size_t L, take, i, n;
	uint64_t declared;

	if (avail < 7)
		return 0;
	b0 = d[0];
	l = d[1];
	f = d[2];
	mk = d + 3;
	switch ((f >> 3) & 3) {
	case 0:
		L = l;
		break;
	case 1:
		L = (size_t)l * 128;
		break;
	case 2:
		L = 32768 - 128 + (size_t)l;
		break;
	default:
		L = (size_t)l * 257;
		break;
	}
	if (f & 0x40) {		/* the header alone */
		declared = L + ((uint64_t)l << 32);
		n = put_frame(fbuf, b0, declared, 2, !(f & 4), mk, NULL, 0);
		send_frames(hi, fbuf, n);
		return 7;
	}
	take = (f & 0x20) ? 0 : (L < avail - 7 ? L : avail - 7);
	memcpy(pbuf, d + 7, take);
	for (i = take; i < L; i++)
		pbuf[i] = (uint8_t)(i * 7 + 1);
	n = put_frame(fbuf, b0, L, (f & 3) == 3 ? 0 : f & 3, !(f & 4), mk,
	    pbuf, L);
	send_frames(hi, fbuf, n);
	return 7 + take;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t rates[4][2] = { { 0, 0 }, { 1000000, 0 },
	    { 1000, 0 }, { 100, 100 } };
	static const uint32_t pressure[4] = { UINT32_MAX, 40, 8, 0 };
	static const int addrs[4] = { 0, 1, 2, 4 };
	uint8_t h0 = size > 0 ? data[0] : 0, h1 = size > 1 ? data[1] : 0;
	uint8_t h2 = size > 2 ? data[2] : 0, h3 = size > 3 ? data[3] : 0, b;
	size_t off = 4, n, k;
	int port80 = (h0 >> 2) & 1, addr = addrs[h0 >> 6], cur, h, i;

	fz_drain_hook = drain_hook;
	memset(chk, 0, sizeof chk);
	memset(hkeys, 0, sizeof hkeys);
	memset(hcut, 0, sizeof hcut);
	cut_keys = 0;
	split_bytes = 0;
	mask_ctr = 0;
	rounds_manual = (h0 >> 4) & 1;
	fz_begin(!((h0 >> 5) & 1), "", (h1 & 7) ? (h1 & 7) : 32,
	    rates[(h1 >> 5) & 3][0], rates[(h1 >> 5) & 3][1], 0);
	if (!(h1 & 0x80)) {
		h = client_open(2, 0, 0, 0, 0, 0);
		if (h >= 0)
			fz_h[h].stalled = (h0 >> 3) & 1;
	}
	cur = client_open(h0 & 1, h2, h3, 0, port80, addr);
	if ((h0 & 3) == 2 && cur >= 0)
		send_client_info(cur, 0);
	if (pressure[(h1 >> 3) & 3] != UINT32_MAX)
		fz_hold_chunks(pressure[(h1 >> 3) & 3]);
	while (off < size) {
		b = data[off++];
		if (b < 0xC8 || (b >= 0xD3 && b < 0xE0)) {
			n = b < 0xC0 ? (size_t)b + 1 : b < 0xC8 ?
			    (size_t)(b - 0xBF) * 512 : size - off;
			if (n > size - off)
				n = size - off;
			send_raw(cur, data + off, n);
			off += n;
			step_done();
			continue;
		}
		switch (b) {
		case 0xC8:
			n = op_frame(cur, data + off, size - off);
			if (n == 0)
				goto done;
			off += n;
			break;
		case 0xC9:
			if (off >= size)
				goto done;
			send_client_info(cur, data[off++]);
			break;
		case 0xCA:
			if (size - off < 2)
				goto done;
			send_packet(cur, data[off], data[off + 1]);
			off += 2;
			break;
		case 0xCB:
		case 0xCC:
		case 0xCD:
		case 0xCE:
			if (off >= size)
				goto done;
			n = b == 0xCE ? (size_t)data[off] + 1 : data[off] % 126u;
			off++;
			if (n > size - off)
				n = size - off;
			k = put_simple(fbuf, b == 0xCB ? 0x89 : b == 0xCC ? 0x88 :
			    b == 0xCD ? 0x8a : 0x82, data + off, n);
			off += n;
			send_frames(cur, fbuf, k);
			break;
		case 0xCF:
			if (size - off < 2)
				goto done;
			h = client_open(0, data[off], data[off + 1], 0, port80,
			    addr);
			off += 2;
			if (h >= 0)
				cur = h;
			break;
		case 0xD0:
			h = client_open(1, 0, 0, 0, port80, addr);
			if (h >= 0)
				cur = h;
			break;
		case 0xD1:
			if (off >= size)
				goto done;
			h = client_open(2, 0, 0, data[off++] % FZ_NKEYS, 0, 0);
			if (h >= 0)
				cur = h;
			break;
		case 0xD2:
			if (off >= size)
				goto done;
			split_bytes = data[off++];
			break;
		case 0xEC:
			round_ws();
			break;
		case 0xED:
			fz_s->now += off < size ? (int64_t)data[off++] * 256 + 1 : 1;
			round_ws();
			break;
		default:
			/* EE-F3: the client operations fuzz_tls shares. */
			if (fz_client_op(b, cur, data, size, &off)) {
				check_relay(0);
				break;
			}
			if (b < 0xE8)
				cur = (b - 0xE0) % FZ_MAX;
			break;
		}
	}
done:
	/* Settle: pressure off, output flows, then the checks of a quiet
	 * relay once more before fz_end hangs up on everyone. */
	fz_release();
	for (i = 0; i < 3; i++)
		round_ws();
	fz_end();
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Seeds                                                                      */
/* ------------------------------------------------------------------------ */

struct seed {
	uint8_t b[65536];
	size_t n;
};

static struct seed sd;

static void
s_byte(uint8_t b)
{
	FUZZ_CHECK(sd.n < sizeof sd.b, "seed too big");
	sd.b[sd.n++] = b;
}

static void
s_start(uint8_t h0, uint8_t h1, uint8_t v, uint8_t w)
{
	sd.n = 0;
	s_byte(h0);
	s_byte(h1);
	s_byte(v);
	s_byte(w);
}

static void
s_bytes(const void *p, size_t n)
{
	FUZZ_CHECK(sd.n + n <= sizeof sd.b, "seed too big");
	memcpy(sd.b + sd.n, p, n);
	sd.n += n;
}

/* Raw bytes to the current client, in writes of at most `max` (<= 192). */
static void
s_write(const void *p, size_t n, size_t max)
{
	const uint8_t *q = p;
	size_t k;

	while (n > 0) {
		k = n < max ? n : max;
		s_byte((uint8_t)(k - 1));
		s_bytes(q, k);
		q += k;
		n -= k;
	}
}

static void
s_str(const char *t)
{
	s_write(t, strlen(t), 192);
}

/* CB/CC/CD/CE with a payload. */
static void
s_ctl(uint8_t op, const void *p, size_t n)
{
	s_byte(op);
	s_byte((uint8_t)(op == 0xCE ? n - 1 : n));
	s_bytes(p, n);
}

/* C8: a frame with every field given. */
static void
s_frame(uint8_t b0, uint8_t l, uint8_t f, const void *p, size_t n)
{
	static const uint8_t m[4] = { 0x37, 0xfa, 0x21, 0x3d };

	s_byte(0xC8);
	s_byte(b0);
	s_byte(l);
	s_byte(f);
	s_bytes(m, 4);
	s_bytes(p, n);
}

static void
s_emit(const char *name)
{
	seed_emit(name, sd.b, sd.n);
}

#define DERP_PING	"\x12\x00\x00\x00\x08" "12345678"

/*
 * The regression inputs of test/fuzz/regress/ws/ (FUZZ_WRITE_REGRESS=1 with
 * FUZZ_WRITE_SEEDS=DIR writes these instead of the seeds), so they follow any
 * change of the input format.
 */
static void
regress_inputs(void)
{
	/* A close frame with a status no endpoint may send (0, 1005 spelled
	 * out, 1006, 5000): the relay echoed it (or, for
	 * 1005, sent a close without a status), where derper's library
	 * (parseClosePayload) answers 1002 and RFC 6455 7.4.1 forbids
	 * sending 1005, 1006 and 1015. */
	static const uint16_t bad[] = { 0, 1005, 1006, 5000 };
	uint8_t p[2];
	char name[64];
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		s_start(0x00, 0x80, 0, 0);
		p[0] = (uint8_t)(bad[i] >> 8);
		p[1] = (uint8_t)bad[i];
		s_ctl(0xCC, p, 2);
		snprintf(name, sizeof name, "close-status-%u", (unsigned)bad[i]);
		s_emit(name);
	}
}

static void
fuzz_seeds(const char *datadir)
{
	static const char ws_req[] = "GET /derp HTTP/1.1\r\nHost: a\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " WS_KEY "\r\n"
	    "Sec-WebSocket-Protocol: derp\r\n\r\n";
	static const uint8_t close_norm[] = { 0x03, 0xe8, 'b', 'y', 'e' };
	static const uint8_t close_1002[] = { 0x03, 0xea, 'x' };
	static const uint8_t close_4000[] = { 0x0f, 0xa0 };
	static const char derp_ping[] = DERP_PING;
	static const uint8_t junk[64] = { 0 };
	static const char text[] = "The quick brown fox jumps over the lazy "
	    "dog; pack my box with five dozen liquor jugs.  How vexingly quick "
	    "daft zebras jump!  Sphinx of black quartz, judge my vow.";
	char name[64];
	unsigned i, k;
	uint8_t t;

	(void)datadir;
	if (getenv("FUZZ_WRITE_REGRESS") != NULL) {
		regress_inputs();
		return;
	}
	/* A session: ClientInfo, packets to the peer, pings of both kinds,
	 * an unsolicited pong, a clean close; whole, split in 1, 3 and 7
	 * byte writes, and with manual rounds. */
	for (k = 0; k < 5; k++) {
		static const uint8_t splits[5] = { 0, 1, 3, 7, 0 };

		s_start(k == 4 ? 0x12 : 0x02, 0, 0, 0);
		if (splits[k]) {
			s_byte(0xD2);
			s_byte(splits[k]);
		}
		s_byte(0xCA);		/* to the peer */
		s_byte(0x00);
		s_byte(2);
		s_ctl(0xCB, "ping", 4);
		s_ctl(0xCE, DERP_PING, 13);
		s_ctl(0xCD, "pong", 4);
		s_byte(0xCA);		/* disco, fragmented */
		s_byte(0x28);
		s_byte(1);
		if (k == 4)
			s_byte(0xEC);
		s_ctl(0xCC, close_norm, sizeof close_norm);
		if (k == 4)
			s_byte(0xEC);
		snprintf(name, sizeof name, "session-%u", k);
		s_emit(name);
	}
	/* Every shape, between two WebSocket clients. */
	for (k = 0; k < 8; k++) {
		s_start(0x00, 0x80, 0, 0);
		s_byte(0xC9);
		s_byte((uint8_t)(k << 4 | 0));	/* key 1 */
		s_byte(0xCF);
		s_byte(0);
		s_byte(0);
		s_byte(0xC9);
		s_byte((uint8_t)(k << 4 | 1));	/* key 2 */
		s_byte(0xCA);
		s_byte((uint8_t)(k << 4 | 1));
		s_byte(3);
		s_byte(0xE0);
		s_byte(0xCA);
		s_byte((uint8_t)(k << 4 | 2));
		s_byte(5);
		s_ctl(0xCB, "", 0);
		snprintf(name, sizeof name, "shape-%u", k);
		s_emit(name);
	}
	/* Each violation, after a ClientInfo: RSV bits, unmasked, text,
	 * unknown opcodes, a continuation out of a message, a new message
	 * inside one, a control frame without FIN or too long, a message
	 * too big (two ways), closes of every kind. */
	{
		static const struct { uint8_t b0, l, f; const char *name; } v[] = {
			{ 0xc2, 4, 0x00, "rsv1" },
			{ 0xa2, 4, 0x00, "rsv2" },
			{ 0x82, 4, 0x04, "unmasked" },
			{ 0x81, 4, 0x00, "text" },
			{ 0x83, 4, 0x00, "opcode-3" },
			{ 0x8b, 4, 0x00, "opcode-11" },
			{ 0x80, 4, 0x00, "continuation-alone" },
			{ 0x09, 4, 0x00, "ping-without-fin" },
			{ 0x89, 126, 0x00, "ping-126" },
			{ 0x82, 129, 0x30, "binary-32769" },
			{ 0x82, 255, 0x30, "binary-32895" },
			{ 0x82, 127, 0x31, "binary-32767-16bit" },
			{ 0x82, 128, 0x32, "binary-32768-64bit" },
			{ 0x82, 0, 0x22, "binary-empty-64bit" },
			{ 0x82, 1, 0x42, "binary-huge-64bit" },
			{ 0x88, 1, 0x00, "close-1-byte" },
			{ 0x88, 0, 0x00, "close-empty" },
			{ 0x8a, 125, 0x20, "pong-125" },
		};

		for (i = 0; i < sizeof v / sizeof v[0]; i++) {
			s_start(0x02, 0x80, 0, 0);
			s_frame(v[i].b0, v[i].l, v[i].f, text,
			    (v[i].f & 0x60) ? 0 : v[i].l);
			s_ctl(0xCE, DERP_PING, 13);
			snprintf(name, sizeof name, "violation-%s", v[i].name);
			s_emit(name);
		}
		/* A message inside a fragmented one; fragments over 32 KiB. */
		s_start(0x02, 0x80, 0, 0);
		s_frame(0x02, 4, 0x00, derp_ping, 4);
		s_frame(0x82, 4, 0x00, derp_ping + 4, 4);
		s_emit("violation-message-in-message");
		s_start(0x02, 0x80, 0, 0);
		s_frame(0x02, 200, 0x28, "", 0);
		s_frame(0x00, 0, 0x00, "", 0);
		s_frame(0x80, 100, 0x28, "", 0);
		s_emit("violation-fragments-too-big");
	}
	/* Closes with a status: normal, 1002, 4000 (statuses no endpoint may
	 * send: the regression inputs). */
	{
		static const struct { const uint8_t *p; size_t n; const char *name; } c[] = {
			{ close_norm, sizeof close_norm, "1000" },
			{ close_1002, sizeof close_1002, "1002" },
			{ close_4000, sizeof close_4000, "4000" },
		};

		for (i = 0; i < sizeof c / sizeof c[0]; i++) {
			s_start(0x00, 0x80, 0, 0);
			s_ctl(0xCC, c[i].p, c[i].n);
			snprintf(name, sizeof name, "close-%s", c[i].name);
			s_emit(name);
		}
	}
	/* Handshake variants: each field's values alone. */
	for (i = 1; i < 4; i++)
		for (k = 0; k < 4; k++) {
			s_start(0x00, 0x80, (uint8_t)(i << (2 * k)), 0);
			s_ctl(0xCB, "hi", 2);
			snprintf(name, sizeof name, "handshake-v%02x",
			    (unsigned)(i << (2 * k)));
			s_emit(name);
		}
	for (i = 1; i < 4; i++) {
		s_start(0x00, 0x80, 0, (uint8_t)i);
		snprintf(name, sizeof name, "handshake-key-%u", i);
		s_emit(name);
	}
	for (i = 1; i < 8; i++) {
		s_start(0x00, 0x80, 0, (uint8_t)(i << 2));
		s_ctl(0xCE, DERP_PING, 13);
		snprintf(name, sizeof name, "handshake-proto-%u", i);
		s_emit(name);
	}
	for (i = 5; i < 8; i++) {
		s_start(0x00, 0x80, 0, (uint8_t)(1 << i));
		s_byte(0xC9);
		s_byte(0x00);
		snprintf(name, sizeof name, "handshake-w%02x", 1u << i);
		s_emit(name);
	}
	/* A client writing its own handshake: the request and a ClientInfo-
	 * less ping in one write; another whose request has a body. */
	s_start(0x01, 0x80, 0, 0);
	s_str(ws_req);
	s_frame(0x89, 3, 0x00, "abc", 3);
	s_emit("raw-handshake");
	s_start(0x01, 0x80, 0, 0);
	s_str("GET /derp HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
	    "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
	    "Sec-WebSocket-Protocol: derp\r\nContent-Length: 6\r\n\r\n");
	s_frame(0x8a, 0, 0x00, "", 0);
	s_emit("raw-handshake-body");
	/* A stalled WebSocket reader: packets fill its output and queues
	 * while it pings; then it reads again. */
	s_start(0x02, 0x02, 0, 0);
	s_byte(0xD1);
	s_byte(3);
	for (i = 0; i < 20; i++) {
		s_byte(0xCA);
		s_byte(1);
		s_byte(20);
	}
	s_byte(0xE1);
	s_byte(0xEE);
	s_byte(0xE2);
	for (i = 0; i < 20; i++) {
		s_byte(0xCA);
		s_byte(1);
		s_byte(20);
	}
	s_byte(0xE1);
	for (t = 0; t < 3; t++)
		s_ctl(0xCB, &t, 1);
	s_byte(0xEE);
	s_byte(0xEC);
	s_emit("stalled-reader");
	/* A ping, and in the same read the next ping's header and half its
	 * payload: the first ping's pong, or none, never a half. */
	s_start(0x10, 0x80, 0, 0);
	s_ctl(0xCB, "first", 5);
	{
		static const uint8_t second[] = { 0x89, 0x86, 1, 2, 3, 4,
		    's' ^ 1, 'e' ^ 2 };	/* "second", masked, cut short */

		s_write(second, sizeof second, 192);
		s_byte(0xEC);
		s_byte(0xEC);
	}
	s_emit("ping-behind-ping");
	/* A stalled client that the relay closes (a text message) while its
	 * output is full; packets keep coming; then it reads. */
	s_start(0x02, 0x00, 0, 0);
	s_byte(0xE1);
	s_byte(0xEE);
	s_byte(0xE0);
	for (i = 0; i < 12; i++) {
		s_byte(0xCA);
		s_byte(1);
		s_byte(40);
	}
	s_byte(0xE1);
	s_frame(0x81, 2, 0x00, "hi", 2);
	s_byte(0xE0);
	for (i = 0; i < 4; i++) {
		s_byte(0xCA);
		s_byte(1);
		s_byte(4);
	}
	s_byte(0xE1);
	s_byte(0xEE);
	s_byte(0xEC);
	s_emit("close-while-stalled");
	/* 64 KiB packets both ways (over several writes, each framed); a
	 * stalled WebSocket reader pings while one waits. */
	s_start(0x02, 0x00, 0, 0);
	s_byte(0xCA);
	s_byte(0x80);
	s_byte(255);
	s_byte(0xE0);
	s_byte(0xCA);
	s_byte(0x81);
	s_byte(255);
	s_byte(0xE1);
	s_ctl(0xCB, "p", 1);
	s_byte(0xEE);
	s_byte(0xE0);
	s_byte(0xCA);
	s_byte(0x89);
	s_byte(255);
	s_byte(0xCA);
	s_byte(0x81);
	s_byte(200);
	s_byte(0xE1);
	s_ctl(0xCB, "q", 1);
	s_ctl(0xCB, "r", 1);
	s_byte(0xEE);
	s_byte(0xEC);
	s_byte(0xEC);
	s_emit("packets-64k");
	/* Pings in a burst with manual rounds: only the last answered. */
	s_start(0x12, 0x80, 0, 0);
	for (t = 0; t < 10; t++)
		s_ctl(0xCB, &t, 1);
	s_byte(0xEC);
	s_byte(0xEC);
	s_emit("ping-burst");
	/* A large packet in fragments of a message near 32 KiB; pressure. */
	s_start(0x02, 0x08, 0, 0);
	s_byte(0xCA);
	s_byte(0x20);
	s_byte(255);
	s_byte(0xF1);
	s_byte(0);
	s_byte(0xCA);
	s_byte(0x40);
	s_byte(200);
	s_byte(0xF1);
	s_byte(0xFF);
	s_emit("big-packets-pressure");
	/* Deadlines: the ClientInfo never comes; a header arrives alone. */
	s_start(0x00, 0x80, 0, 0);
	s_frame(0x82, 0, 0x50, "", 0);	/* 32640 bytes announced */
	s_write(junk, 10, 192);
	for (i = 0; i < 3; i++) {
		s_byte(0xED);
		s_byte(20);
	}
	s_emit("deadline");
	/* Hangups: half-close, reset, relay-side close of a WebSocket. */
	for (k = 0; k < 3; k++) {
		s_start(0x02, 0x00, 0, 0);
		s_byte(0xCA);
		s_byte(0);
		s_byte(1);
		s_byte((uint8_t)(0xEF + k));
		s_byte(0xEC);
		snprintf(name, sizeof name, "hangup-%u", k);
		s_emit(name);
	}
	/* -derp=false, port 80 and rate limits. */
	s_start(0x20, 0x80, 0, 0);
	s_emit("derp-disabled");
	s_start(0x04, 0x80, 0, 0);
	s_emit("port80");
	s_start(0x42, 0x60, 0, 0);
	for (i = 0; i < 4; i++) {
		s_byte(0xCA);
		s_byte(0);
		s_byte(16);
	}
	s_byte(0xED);
	s_byte(4);
	s_emit("rate-limit");
}
