/*
 * fuzz_tls.c -- the relay's TLS glue: a real relay in TLS mode (fuzz_server.h,
 * fz_tls: -certmode manual with an IP -hostname, its own self-signed
 * certificate made at run time) driven by clients of two kinds:
 *
 *   raw     the input's bytes are the client's ciphertext: ClientHello
 *           mutations, garbage, plain HTTP on the TLS port
 *           (tls_first_bytes_are_http);
 *   engine  a BearSSL client per connection, handshaken with the relay, whose
 *           plaintext (upgrade, ClientInfo, frames), record boundaries (one
 *           record per write, or several writes coalesced, flushed on request)
 *           and ciphertext writes (whole, or split anywhere and coalesced
 *           across records) come from the input; close_notify, truncated
 *           records and garbage records injected into its stream.
 *
 * So tls_feed runs with its read batches and `rawin` leftovers, the SNI policy
 * (the relay's -hostname switches per input between a DNS name, checked
 * against SNI, and the IP, not checked), handshakes limited per round, and
 * DERP frames inside TLS records.  At most TLS_CLIENTS engines per input: a
 * full handshake costs two ECDSA operations and four ECDH ones.
 *
 * An input replays byte for byte: the relay's engines get their entropy from
 * its generator, seeded per input (fz_begin), the clients' from a fixed seed,
 * and the OS randomness BearSSL would mix in at every reset is replaced (see
 * br_prng_seeder_system below); ECDSA signatures are deterministic (RFC 6979).
 *
 * Checks, beyond fz_check and fz_end (pool, slots, key table, unfinished list):
 * an engine whose stream the input did not touch ends cleanly or on an alert
 * the relay sent, never on a record the relay broke; a handshake waited for
 * succeeds exactly when the SNI policy allows it; a client that upgraded
 * (first plaintext) gets the 101 response, ServerKey, then only ServerInfo
 * and the frames fz_check_stream allows; a raw client gets TLS records or
 * exactly the "HTTP request to an HTTPS server" answer.
 *
 * Input: three header bytes, then operations.
 *
 *   h0  bit 0  -hostname derp.example.com, SNI must equal it; else the IP
 *       bit 1  rounds only on request (EC); else a round after every step
 *       bit 2  no peer client
 *       bit 3  the peer does not read
 *       bits 4-5  pool pressure at the start: none, 40, 8 or 0 chunks free
 *       bits 6-7  queue depth: 32, 1, 2, 4
 *   h1  bits 0-1  key-table seed and -max-handshakes (fz_begin)
 *       bits 2-3  -rate-config: off, 1 MB/s, 1000 B/s, 100 B/s burst 100
 *       bits 4-6  clients' address (fz_addrs)
 *   h2  the first client: an open byte (E6 below); bit 6 raw, bit 7 raw on
 *       the port-80 listener
 *
 * Unless h0 bit 2, handle 0 is a peer: an engine client with the right SNI,
 * registered under fz_keys[0] once its handshake is done.  Operations on the
 * current client:
 *
 *   00-BF        write the next b+1 bytes: plaintext into an engine (a record
 *                per write unless coalescing), straight to a raw socket
 *   C0-CB        ... the next (b-BF) KiB
 *   CC-CF        ... the next 16 KiB << (b-CC)
 *   D0-DF        ... all the remaining bytes
 *   E0-E5        current = handle b-E0
 *   E6 k         new engine client: k bits 0-1 SNI (none, the IP,
 *                derp.example.com, other.example.com), bits 2-3 suites
 *                offered (all, ChaCha20, AES-256-GCM, AES-128-CBC then -GCM),
 *                bit 4 manual ciphertext (written only by F8; the handshake is
 *                not waited for), bit 5 coalesce writes; past TLS_CLIENTS
 *                engines, a raw client
 *   E7           new raw client
 *   E8           new raw client on the port-80 listener (plain HTTP)
 *   E9 k         the /derp upgrade (k bit 0: fast start) and a ClientInfo
 *                sealed by fz_keys[1 + (k >> 1) % 4], one record
 *   EA k         register under fz_keys[k % 5] (harness shortcut: the engine
 *                up, nothing sent yet)
 *   EB k n       SendPacket to fz_keys[k % 5] (k bit 7: disco), payload of
 *                n * 16 bytes (n >= F0: MAX_PACKET_BYTES - (FF - n))
 *   EC           one round of the relay's loop
 *   ED t         the clock moves t*256+1 ms, then a round
 *   EE-F3        as in fuzz_derp (fz_client_op): stop / resume reading,
 *                reset, half-close, pool pressure (F1 n), the relay closes
 *                the client, reset after the next poll
 *   F4           the engine closes a record (flush)
 *   F5           the engine sends close_notify
 *   F6           coalescing on / off
 *   F7           manual ciphertext on / off
 *   F8 k         write pending ciphertext: k+1 bytes (k < C0), (k-BF)*256
 *                bytes, FF: all
 *   F9 n         n+1 bytes of the input into the ciphertext stream
 *   FA k x       XOR x into pending ciphertext byte k (mod its length)
 *   FB           rounds until the handshake ends (manual or not)
 *   FC-FF        nothing
 */
#define main derp_main
#include "../../derp.c"
#undef main
#include "fuzz.h"
#include "fuzz_server.h"

#define TLS_CLIENTS	3	/* engines (full handshakes) per input */
/* A client's ciphertext not yet written: eight full records (8 x 16469), so
 * a 64 KiB packet (five records) fits behind what is already waiting. */
#define PEND_BYTES	(8 * BR_SSL_BUFSIZE_OUTPUT)
#define HS_ROUNDS	16	/* rounds a handshake may take: four flights,
				   two reads per round, slack */
#define SNI_HOST	"derp.example.com"

/* BearSSL mixes the OS's randomness into every engine at reset
 * (br_ssl_engine_init_rand calls br_prng_seeder_system).  This binary's own
 * definition takes the library's place (the call goes through the PLT, or the
 * archive member is never pulled in), so only the entropy injected into each
 * engine counts: an input replays byte for byte. */
static int
seed_nothing(const br_prng_class **ctx)
{
	(void)ctx;
	return 1;
}

br_prng_seeder
br_prng_seeder_system(const char **name)
{
	if (name != NULL)
		*name = "fuzz: injected entropy only";
	return &seed_nothing;
}

/* Everything before iobuf is cleared for each new client. */
struct tls_client {
	br_ssl_client_context cc;
	br_x509_minimal_context xm;	/* what init_full wants; replaced by xc */
	br_x509_knownkey_context xc;	/* the relay's key, nothing else checked */
	size_t npend;
	int manual;		/* pend reaches the socket only by F8 */
	int coalesce;		/* no record flush after each write */
	int tampered;		/* bytes not from the engine in its stream */
	int sent_app;		/* plaintext given to the engine */
	int sni_ok;		/* the relay's SNI policy accepts this client */
	int ended;		/* engine closed (and checked) */
	/* The upgrade's answer, checked byte for byte before the frames. */
	uint8_t expect[256];
	size_t expect_len, expect_off;
	uint8_t iobuf[BR_SSL_BUFSIZE_BIDI];
	uint8_t pend[PEND_BYTES];	/* ciphertext not yet written */
};

static struct tls_client tc[TLS_CLIENTS];
static struct tls_client *tc_of[FZ_MAX];	/* a handle's engine, or NULL */
static int tc_used;				/* engines handed out this input */
/* Raw clients: what the relay sent so far (the 400 answer is checked). */
static size_t raw_seen[FZ_MAX];
static uint8_t raw_port80[FZ_MAX];
static int rounds_manual;

static const char https_400[] = "HTTP/1.0 400 Bad Request\r\n\r\n"
    "Client sent an HTTP request to an HTTPS server.\n";
static uint8_t srv_pub_buf[BR_EC_KBUF_PUB_MAX_SIZE];
static br_ec_public_key srv_pub;

static void
fuzz_init(void)
{
	const struct cert_store *cs;

	fz_tls = 1;
	fz_server_init();
	cs = &fz_s->ident[0].bank[fz_s->ident[0].cur].cs;
	FUZZ_CHECK(cs->key_type == BR_KEYTYPE_EC, "relay key type %d",
	    cs->key_type);
	FUZZ_CHECK(br_ec_compute_pub(br_ec_get_default(), &srv_pub, srv_pub_buf,
	    &cs->ec) > 0, "relay public key");
}

/* ---- one client's ciphertext ---- */

/* Write up to n bytes of pend; what the socket does not take stays. */
static void
pend_write(struct fz_handle *h, struct tls_client *t, size_t n)
{
	ssize_t w;
	size_t done = 0;

	if (n > t->npend)
		n = t->npend;
	while (h->remote >= 0 && done < n) {
		w = write(h->remote, t->pend + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		done += (size_t)w;
	}
	memmove(t->pend, t->pend + done, t->npend - done);
	t->npend -= done;
}

static void
pend_add(struct tls_client *t, const uint8_t *p, size_t n)
{
	if (n > PEND_BYTES - t->npend)
		n = PEND_BYTES - t->npend;
	memcpy(t->pend + t->npend, p, n);
	t->npend += n;
}

/* An engine that closed: on its own, or on an alert from the relay, unless
 * the input put bytes of its own into the stream. */
FUZZ_NOCOV static void
tls_check_end(int hi, struct tls_client *t)
{
	int err = br_ssl_engine_last_error(&t->cc.eng);

	if (t->ended)
		return;
	t->ended = 1;
	FUZZ_CHECK(t->tampered || err == BR_ERR_OK ||
	    (err >= BR_ERR_RECV_FATAL_ALERT && err < BR_ERR_SEND_FATAL_ALERT),
	    "client %d: TLS error %d on an untouched stream (the relay sent a "
	    "bad record)", hi, err);
}

/* Plaintext from the relay to a checked client: the expected prefix, then
 * frames. */
FUZZ_NOCOV static void
tls_check_plain(struct fz_handle *h, struct tls_client *t, const uint8_t *p,
    size_t n)
{
	size_t k;

	if (!h->checked)
		return;
	k = t->expect_len - t->expect_off;
	if (k > n)
		k = n;
	FUZZ_CHECK(memcmp(p, t->expect + t->expect_off, k) == 0, "client %d: "
	    "upgrade answer differs at byte %zu", (int)(h - fz_h),
	    t->expect_off);
	t->expect_off += k;
	fz_check_stream(h, p + k, n - k);
}

/*
 * Move one engine's bytes: its records into pend (written unless manual),
 * and, if it reads, the socket into the engine and its plaintext to the
 * checker.  Stops when nothing moves.
 */
static void
tls_pump(struct fz_handle *h, struct tls_client *t, int may_read)
{
	br_ssl_engine_context *e = &t->cc.eng;
	unsigned st;
	uint8_t *buf;
	size_t len;
	ssize_t n;
	int progress;

	do {
		progress = 0;
		st = br_ssl_engine_current_state(e);
		if (st & BR_SSL_CLOSED) {
			tls_check_end((int)(h - fz_h), t);
			while (may_read && h->remote >= 0 && (n = read(h->remote,
			    fz_drain_buf, sizeof fz_drain_buf)) != 0 &&
			    (n > 0 || errno == EINTR))
				;	/* after the end: discarded */
			break;
		}
		if ((st & BR_SSL_SENDREC) && t->npend < PEND_BYTES) {
			buf = br_ssl_engine_sendrec_buf(e, &len);
			if (len > PEND_BYTES - t->npend)
				len = PEND_BYTES - t->npend;
			pend_add(t, buf, len);
			br_ssl_engine_sendrec_ack(e, len);
			progress = 1;
		}
		if (!t->manual && t->npend > 0) {
			len = t->npend;
			pend_write(h, t, len);
			progress |= t->npend < len;
		}
		if (!may_read || h->remote < 0)
			continue;
		if (st & BR_SSL_RECVAPP) {
			buf = br_ssl_engine_recvapp_buf(e, &len);
			tls_check_plain(h, t, buf, len);
			br_ssl_engine_recvapp_ack(e, len);
			progress = 1;
		} else if (st & BR_SSL_RECVREC) {
			buf = br_ssl_engine_recvrec_buf(e, &len);
			n = read(h->remote, buf, len);
			if (n > 0) {
				br_ssl_engine_recvrec_ack(e, (size_t)n);
				progress = 1;
			}
		}
	} while (progress);
}

/* What a raw client gets from the TLS port: records, or the 400 answer. */
FUZZ_NOCOV static void
raw_drain(struct fz_handle *h)
{
	int hi = (int)(h - fz_h);
	size_t k;
	ssize_t n;

	while ((n = read(h->remote, fz_drain_buf, sizeof fz_drain_buf)) > 0 ||
	    (n < 0 && errno == EINTR)) {
		if (n <= 0 || raw_port80[hi])
			continue;
		if (raw_seen[hi] == 0)
			FUZZ_CHECK(fz_drain_buf[0] == 0x15 ||
			    fz_drain_buf[0] == 0x16 || fz_drain_buf[0] == 'H',
			    "raw client %d got first byte %#x", hi,
			    fz_drain_buf[0]);
		if (raw_seen[hi] < sizeof https_400 - 1 && (raw_seen[hi] > 0 ||
		    fz_drain_buf[0] == 'H')) {
			k = (size_t)n;
			FUZZ_CHECK(raw_seen[hi] + k <= sizeof https_400 - 1 &&
			    memcmp(fz_drain_buf, https_400 + raw_seen[hi], k) ==
			    0, "raw client %d: not the HTTPS 400 answer", hi);
		}
		raw_seen[hi] += (size_t)n;
	}
}

/* fz_drain's hook: every handle that reads. */
static void
drain_hook(struct fz_handle *h)
{
	struct tls_client *t = tc_of[h - fz_h];

	if (t != NULL)
		tls_pump(h, t, 1);
	else
		raw_drain(h);
}

/* A round, after the engines' new records went out (as far as allowed). */
static void
round_all(void)
{
	int i;

	for (i = 0; i < FZ_MAX; i++)
		if (tc_of[i] != NULL && fz_h[i].remote >= 0)
			tls_pump(&fz_h[i], tc_of[i], 0);
	fz_round();
}

static void
step_done(void)
{
	if (!rounds_manual)
		round_all();
}

static int
engine_up(int hi)
{
	return hi >= 0 && tc_of[hi] != NULL &&
	    (br_ssl_engine_current_state(&tc_of[hi]->cc.eng) & BR_SSL_SENDAPP);
}

static int
engine_closed(int hi)
{
	return tc_of[hi] == NULL ||
	    (br_ssl_engine_current_state(&tc_of[hi]->cc.eng) & BR_SSL_CLOSED);
}

/* Rounds until the handshake is over: the client up or closed, or the relay
 * closed the connection.  A manual client's ciphertext is written whole. */
static void
tls_handshake(int hi)
{
	struct tls_client *t = tc_of[hi];
	int i;

	for (i = 0; t != NULL && i < HS_ROUNDS && fz_h[hi].open &&
	    !engine_up(hi) && !engine_closed(hi); i++) {
		if (t->manual)
			pend_write(&fz_h[hi], t, t->npend);
		round_all();
	}
}

/* ---- opening clients ---- */

static const char *const snis[4] = { NULL, FZ_TLS_IP, SNI_HOST,
    "other.example.com" };

/* A raw client (port80: on the port-80 listener). */
static int
open_raw(int port80, int addr)
{
	int hi = fz_open(port80, addr);

	if (hi < 0)
		return -1;
	tc_of[hi] = NULL;
	raw_seen[hi] = 0;
	raw_port80[hi] = (uint8_t)port80;
	return hi;
}

/* An engine client, its handshake started (and waited for unless manual). */
static int
open_engine(uint8_t k, int addr)
{
	static const uint16_t suites[4][2] = {
		{ 0, 0 },
		{ BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, 0 },
		{ BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, 0 },
		{ BR_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
		  BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 },
	};
	static const uint8_t seed[] = "fuzz_tls client";
	const char *sni = snis[k & 3];
	struct tls_client *t;
	size_t ns;
	int hi;

	if (tc_used >= TLS_CLIENTS)
		return open_raw(0, addr);
	hi = fz_open(0, addr);
	if (hi < 0)
		return -1;
	t = &tc[tc_used++];
	memset(t, 0, offsetof(struct tls_client, iobuf));
	br_ssl_client_init_full(&t->cc, &t->xm, NULL, 0);
	br_x509_knownkey_init_ec(&t->xc, &srv_pub, BR_KEYTYPE_SIGN);
	br_ssl_engine_set_x509(&t->cc.eng, &t->xc.vtable);
	if ((k >> 2) & 3) {
		ns = suites[(k >> 2) & 3][1] != 0 ? 2 : 1;
		br_ssl_engine_set_suites(&t->cc.eng, suites[(k >> 2) & 3], ns);
	}
	br_ssl_engine_set_buffer(&t->cc.eng, t->iobuf, sizeof t->iobuf, 1);
	br_ssl_engine_inject_entropy(&t->cc.eng, seed, sizeof seed);
	br_ssl_engine_inject_entropy(&t->cc.eng, &tc_used, sizeof tc_used);
	FUZZ_CHECK(br_ssl_client_reset(&t->cc, sni, 0), "client reset: %d",
	    br_ssl_engine_last_error(&t->cc.eng));
	t->manual = (k >> 4) & 1;
	t->coalesce = (k >> 5) & 1;
	t->sni_ok = !fz_s->sni_strict ||
	    (sni != NULL && strcmp(sni, fz_s->cfg.hostname) == 0);
	tc_of[hi] = t;
	tls_pump(&fz_h[hi], t, 0);	/* the ClientHello */
	if (t->manual)
		return hi;
	/* Nothing else happens meanwhile (no clock, no other client's bytes,
	 * the handshake needs no chunks): it must succeed exactly when the
	 * SNI policy allows. */
	tls_handshake(hi);
	FUZZ_CHECK(engine_up(hi) == t->sni_ok, "client %d: handshake %s with "
	    "SNI %s (relay's -hostname %s%s)", hi, engine_up(hi) ? "succeeded" :
	    "failed", sni != NULL ? sni : "(none)", fz_s->cfg.hostname,
	    fz_s->sni_strict ? ", checked" : "");
	return hi;
}

/* ---- the client's plaintext ---- */

/* Plaintext into the engine, as much as it takes (with pend full and
 * nothing written, the rest is dropped), then a record unless coalescing.
 * Returns the bytes taken. */
static size_t
app_write(int hi, const uint8_t *p, size_t n)
{
	struct tls_client *t = tc_of[hi];
	br_ssl_engine_context *e = &t->cc.eng;
	size_t avail, k, done = 0;
	uint8_t *buf;
	unsigned st;

	if (n > 0)
		t->sent_app = 1;
	while (done < n) {
		st = br_ssl_engine_current_state(e);
		if (st & BR_SSL_SENDREC) {	/* stuck: pend full, unwritten */
			tls_pump(&fz_h[hi], t, 0);
			if (br_ssl_engine_current_state(e) & BR_SSL_SENDREC)
				break;
			continue;
		}
		if (!(st & BR_SSL_SENDAPP))
			break;
		buf = br_ssl_engine_sendapp_buf(e, &avail);
		k = n - done < avail ? n - done : avail;
		memcpy(buf, p + done, k);
		br_ssl_engine_sendapp_ack(e, k);
		done += k;
	}
	if (!t->coalesce)
		br_ssl_engine_flush(e, 0);
	tls_pump(&fz_h[hi], t, 0);
	return done;
}

/* The client's bytes: plaintext for an engine, ciphertext for a raw one. */
static void
client_write(int hi, const uint8_t *p, size_t n)
{
	if (hi < 0)
		return;
	if (tc_of[hi] != NULL)
		(void)app_write(hi, p, n);
	else
		fz_send(hi, p, n);
}

/* The /derp upgrade and a ClientInfo in one write; as the first plaintext,
 * the relay's answer is checked from then on. */
static void
client_upgrade(int hi, uint8_t k)
{
	static const char json[] = "{\"version\":2}";
	static uint8_t msg[512];
	struct tls_client *t;
	char hex[2 * KEY_BYTES + 1];
	size_t n, m;
	int first;

	if (hi < 0 || tc_of[hi] == NULL)
		return;
	t = tc_of[hi];
	n = (size_t)snprintf((char *)msg, sizeof msg, "GET /derp HTTP/1.1\r\n"
	    "Host: " SNI_HOST "\r\nConnection: Upgrade\r\nUpgrade: DERP\r\n%s"
	    "\r\n", k & 1 ? "Derp-Fast-Start: 1\r\n" : "");
	n += fz_client_info(msg + n, sizeof msg - n, 1 + (k >> 1) % 4,
	    (const uint8_t *)json, sizeof json - 1);
	first = !t->sent_app && !fz_h[hi].checked && engine_up(hi);
	if (app_write(hi, msg, n) != n || !first)
		return;
	hex_encode(hex, fz_s->pub, KEY_BYTES);
	m = k & 1 ? 0 : (size_t)snprintf((char *)t->expect, sizeof t->expect,
	    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\n"
	    "Connection: Upgrade\r\nDerp-Version: 2\r\nDerp-Public-Key: %s"
	    "\r\n\r\n", hex);
	frame_put_header(t->expect + m, FRAME_SERVER_KEY, 8 + KEY_BYTES);
	memcpy(t->expect + m + FRAME_HEADER_BYTES, server_key_magic, 8);
	memcpy(t->expect + m + FRAME_HEADER_BYTES + 8, fz_s->pub, KEY_BYTES);
	t->expect_len = m + FRAME_HEADER_BYTES + 8 + KEY_BYTES;
	t->expect_off = 0;
	fz_h[hi].checked = 1;
}

/* SendPacket to fz_keys[k % 5], n bytes (disco: the magic first). */
static void
client_packet(int hi, uint8_t k, size_t n)
{
	static uint8_t f[FRAME_HEADER_BYTES + KEY_BYTES + MAX_PACKET_BYTES];
	size_t i;

	frame_put_header(f, FRAME_SEND_PACKET, (uint32_t)(KEY_BYTES + n));
	memcpy(f + FRAME_HEADER_BYTES, fz_keys[k % FZ_NKEYS], KEY_BYTES);
	for (i = 0; i < n; i++)
		f[FRAME_HEADER_BYTES + KEY_BYTES + i] = (uint8_t)(i * 13);
	if ((k & 0x80) && n >= sizeof disco_magic)
		memcpy(f + FRAME_HEADER_BYTES + KEY_BYTES, disco_magic,
		    sizeof disco_magic);
	client_write(hi, f, FRAME_HEADER_BYTES + KEY_BYTES + n);
}

/* Bytes of the input into an engine's ciphertext stream. */
static void
client_inject(int hi, const uint8_t *p, size_t n)
{
	struct tls_client *t;

	if (hi < 0)
		return;
	t = tc_of[hi];
	if (t == NULL) {
		fz_send(hi, p, n);
		return;
	}
	t->tampered = 1;
	pend_add(t, p, n);
	tls_pump(&fz_h[hi], t, 0);
}

/*
 * After the input and a second of rounds with the pool free: a TLS
 * connection that is not paused and has no record waiting for the socket has
 * taken all the ciphertext it read ahead (`rawin`, the shared batch) and
 * handed on all the plaintext BearSSL decrypted.  Bytes left there would wait
 * for the client's next bytes, which may never come: the socket is empty, so
 * poll does not wake the connection.
 */
FUZZ_NOCOV static void
check_input_taken(void)
{
	struct derp_server *s = fz_s;
	struct conn *c;
	unsigned st;
	uint32_t i;
	int k;

	fz_release();
	for (k = 0; k < 3; k++)
		round_all();
	s->now += 1000;
	for (k = 0; k < 2; k++)
		round_all();
	FUZZ_CHECK(s->rb_owner == NULL, "a read batch still has an owner");
	for (i = 0; i < s->max; i++) {
		c = &s->conns[i];
		if (c->state == CS_FREE || !c->tls || c->dead || c->in_paused)
			continue;
		st = br_ssl_engine_current_state(&c->ssl->eng);
		if (st & (BR_SSL_SENDREC | BR_SSL_CLOSED))
			continue;
		FUZZ_CHECK(c->rawin.len == 0 && !(st & BR_SSL_RECVAPP),
		    "slot %u (state %u): %u bytes of ciphertext and %s left "
		    "unread with nothing to wake it", i, c->state, c->rawin.len,
		    st & BR_SSL_RECVAPP ? "plaintext" : "no plaintext");
	}
}

/* ---- the input ---- */

/* Write ops' lengths (00-DF); 0 for other ops. */
static size_t
op_len(uint8_t b, size_t left)
{
	size_t n;

	if (b < 0xC0)
		n = (size_t)b + 1;
	else if (b < 0xCC)
		n = (size_t)(b - 0xBF) * 1024;
	else if (b < 0xD0)
		n = (size_t)16384 << (b - 0xCC);
	else if (b < 0xE0)
		n = left;
	else
		return 0;
	return n < left ? n : left;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t rates[4][2] = { { 0, 0 }, { 1000000, 0 },
	    { 1000, 0 }, { 100, 100 } };
	static const uint32_t pressure[4] = { UINT32_MAX, 40, 8, 0 };
	uint8_t h0 = size > 0 ? data[0] : 0, h1 = size > 1 ? data[1] : 0;
	uint8_t h2 = size > 2 ? data[2] : 0, b, k;
	size_t off = 3, n;
	int addr = ((h1 >> 4) & 7) % FZ_NADDRS, cur, hi, i;
	struct tls_client *t;

	fz_drain_hook = drain_hook;
	fz_begin(1, "", (h0 >> 6) ? 1u << ((h0 >> 6) - 1) : QUEUE_DEPTH_DEFAULT,
	    rates[(h1 >> 2) & 3][0], rates[(h1 >> 2) & 3][1], h1 & 3);
	fz_s->sni_strict = h0 & 1;
	fz_s->cfg.hostname = h0 & 1 ? SNI_HOST : FZ_TLS_IP;
	rounds_manual = (h0 >> 1) & 1;
	tc_used = 0;
	for (i = 0; i < FZ_MAX; i++)
		tc_of[i] = NULL;

	if (!((h0 >> 2) & 1)) {
		hi = open_engine(h0 & 1 ? 2 : 0, 0);
		if (engine_up(hi)) {
			tc_of[hi]->sent_app = 1;
			fz_register(hi, 0);
			fz_h[hi].stalled = (h0 >> 3) & 1;
		}
	}
	if (h2 & 0xC0)
		cur = open_raw(h2 >> 7, addr);
	else
		cur = open_engine(h2, addr);
	if (pressure[(h0 >> 4) & 3] != UINT32_MAX)
		fz_hold_chunks(pressure[(h0 >> 4) & 3]);

	while (off < size) {
		b = data[off++];
		if (b < 0xE0) {
			n = op_len(b, size - off);
			client_write(cur, data + off, n);
			off += n;
			step_done();
			continue;
		}
		if (fz_client_op(b, cur, data, size, &off))
			continue;
		if ((b == 0xE6 || b == 0xE9 || b == 0xEA || b == 0xED ||
		    b == 0xF8 || b == 0xF9) && off >= size)
			break;		/* the operand is missing */
		k = off < size ? data[off] : 0;
		t = cur >= 0 ? tc_of[cur] : NULL;
		switch (b) {
		case 0xE6:
		case 0xE7:
		case 0xE8:
			if (b == 0xE6)
				off++;
			hi = b == 0xE6 ? open_engine(k, addr) :
			    open_raw(b == 0xE8, addr);
			if (hi >= 0)
				cur = hi;
			break;
		case 0xE9:
			off++;
			client_upgrade(cur, k);
			step_done();
			break;
		case 0xEA:
			off++;
			/* As fz_register expects: a fresh connection (here
			 * one whose handshake is done, nothing sent yet). */
			if (engine_up(cur) && fz_h[cur].open && !t->sent_app &&
			    fz_s->conns[fz_h[cur].idx].state == CS_HTTP_HEAD) {
				t->sent_app = 1;
				fz_register(cur, k % FZ_NKEYS);
			}
			break;
		case 0xEB:
			if (size - off < 2)
				goto done;
			n = data[off + 1];
			n = n < 0xF0 ? n * 16 : MAX_PACKET_BYTES - (0xFF - n);
			off += 2;
			client_packet(cur, k, n);
			step_done();
			break;
		case 0xEC:
			round_all();
			break;
		case 0xED:
			off++;
			fz_s->now += (int64_t)k * 256 + 1;
			round_all();
			break;
		case 0xF4:
		case 0xF5:
			if (t == NULL)
				break;
			if (b == 0xF4)
				br_ssl_engine_flush(&t->cc.eng, 0);
			else
				br_ssl_engine_close(&t->cc.eng);
			tls_pump(&fz_h[cur], t, 0);
			step_done();
			break;
		case 0xF6:
			if (t != NULL)
				t->coalesce ^= 1;
			break;
		case 0xF7:
			if (t != NULL)
				t->manual ^= 1;
			break;
		case 0xF8:
			off++;
			if (t == NULL)
				break;
			pend_write(&fz_h[cur], t, k < 0xC0 ? (size_t)k + 1 :
			    k < 0xFF ? (size_t)(k - 0xBF) * 256 : t->npend);
			step_done();
			break;
		case 0xF9:
			off++;
			n = (size_t)k + 1 < size - off ? (size_t)k + 1 : size - off;
			client_inject(cur, data + off, n);
			off += n;
			step_done();
			break;
		case 0xFA:
			if (size - off < 2)
				goto done;
			off += 2;
			if (t == NULL || t->npend == 0)
				break;
			t->pend[k % t->npend] ^= data[off - 1];
			t->tampered = 1;
			break;
		case 0xFB:
			if (cur >= 0)
				tls_handshake(cur);
			break;
		default:
			if (b < 0xE6)
				cur = b - 0xE0;
			break;
		}
	}
done:
	check_input_taken();
	fz_end();
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Seeds                                                                      */
/* ------------------------------------------------------------------------ */

static uint8_t seed_buf[1 << 17];
static size_t seed_len;

/* Append bytes to the seed being built. */
static void
sd(const void *p, size_t n)
{
	FUZZ_CHECK(seed_len + n <= sizeof seed_buf, "seed too big");
	memcpy(seed_buf + seed_len, p, n);
	seed_len += n;
}

/* The operation bytes of a seed, as a hex string (spaces ignored). */
static void
sd_ops(const char *hex)
{
	uint8_t b[256];

	sd(b, fuzz_unhex(hex, b, sizeof b));
}

/* A write op (00-BF) per at most 192 bytes of p. */
static void
sd_write(const void *p, size_t n)
{
	const uint8_t *q = p;
	uint8_t op;
	size_t k;

	for (; n > 0; q += k, n -= k) {
		k = n < 192 ? n : 192;
		op = (uint8_t)(k - 1);
		sd(&op, 1);
		sd(q, k);
	}
}

static void
sd_str(const char *s)
{
	sd_write(s, strlen(s));
}

static void
sd_emit(const char *name)
{
	seed_emit(name, seed_buf, seed_len);
	seed_len = 0;
}

/* The ClientHello a BearSSL client sends for this SNI (the same bytes in
 * every run: injected entropy only). */
static size_t
client_hello(uint8_t *out, size_t cap, const char *sni)
{
	static const uint8_t seed[] = "fuzz_tls seed";
	struct tls_client *t = &tc[0];
	const uint8_t *rec;
	size_t len;

	br_ssl_client_init_full(&t->cc, &t->xm, NULL, 0);
	br_ssl_engine_set_buffer(&t->cc.eng, t->iobuf, sizeof t->iobuf, 1);
	br_ssl_engine_inject_entropy(&t->cc.eng, seed, sizeof seed);
	FUZZ_CHECK(br_ssl_client_reset(&t->cc, sni, 0), "client reset");
	rec = br_ssl_engine_sendrec_buf(&t->cc.eng, &len);
	FUZZ_CHECK(rec != NULL && len <= cap, "ClientHello of %zu bytes", len);
	memcpy(out, rec, len);
	return len;
}

/*
 * The regression inputs of test/fuzz/regress/tls/ (FUZZ_WRITE_REGRESS=1 with
 * FUZZ_WRITE_SEEDS=DIR writes these instead of the seeds), so they follow any
 * change of the input format.
 */
static void
regress_inputs(void)
{
	/* conn_pump tests RECVREC in the state it read before conn_write: the
	 * ClientHello (no SNI, the DNS -hostname) and a close_notify arrive
	 * in one read; the relay refuses, and once its alert is written the
	 * engine is closed, yet tls_feed runs with 7 bytes of the batch left:
	 * br_ssl_engine_recvrec_buf gives NULL, memcpy(NULL, ..., 0). */
	sd_ops("05 00 10  F5 FB");
	sd_emit("feed-after-close-null-memcpy");
}

static void
fuzz_seeds(const char *datadir)
{
	static const uint8_t ping[] = { FRAME_PING, 0, 0, 0, 8, 1, 2, 3, 4, 5,
	    6, 7, 8 };
	static const uint8_t garbage[] = { 0x17, 0x03, 0x03, 0x00, 0x18,
	    'n', 'o', 't', ' ', 'a', ' ', 'r', 'e', 'c', 'o', 'r', 'd', ' ',
	    'o', 'f', ' ', 't', 'h', 'i', 's', ' ', 'k', 'e', 'y' };
	uint8_t hello[1024];
	size_t n;

	(void)datadir;
	if (getenv("FUZZ_WRITE_REGRESS") != NULL) {
		regress_inputs();
		return;
	}
	/* A session: upgrade, ClientInfo, packets to the peer (one disco),
	 * to nobody, a Ping; close_notify. */
	sd_ops("00 00 00  E9 00  EB 00 40  EB 80 04  EB 03 10");
	sd_write(ping, sizeof ping);
	sd_ops("F5 EC");
	sd_emit("session");
	/* The same with the DNS -hostname and its SNI, fast start, one
	 * 64 KiB packet to a peer that does not read, coalesced. */
	sd_ops("09 00 22  E9 01  F6  EB 00 FF  EB 00 FF  F4  ED 00  E0 EE  EC");
	sd_emit("sni-fast-start-big");
	/* SNI refused: the IP's name to the DNS -hostname, and none. */
	sd_ops("01 00 01  E6 00");
	sd_emit("sni-refused");
	/* Plain HTTP to the TLS port; to the port-80 listener. */
	sd_ops("04 00 40");
	sd_str("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
	sd_emit("http-to-tls-port");
	sd_ops("04 00 80");
	sd_str("GET /generate_204 HTTP/1.1\r\nHost: a\r\n"
	    "X-Tailscale-Challenge: ts_192.0.2.1\r\n\r\n");
	sd_emit("port80");
	/* HTTP inside TLS: answered, then close_notify from the relay. */
	sd_ops("04 00 00");
	sd_str("GET /derp/probe HTTP/1.1\r\nHost: a\r\n\r\n"
	    "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
	sd_emit("http-in-tls");
	/* A garbage record after the upgrade. */
	sd_ops("00 00 00  E9 02  EB 00 02  F9");
	n = sizeof garbage - 1;
	sd(&(uint8_t){ (uint8_t)n }, 1);
	sd(garbage, sizeof garbage);
	sd_ops("EC");
	sd_emit("garbage-record");
	/* Manual ciphertext: the handshake, then the upgrade's record split
	 * inside its header and body, then coalesced records written at once,
	 * then a record cut short and a reset. */
	sd_ops("00 00 10  FB  E9 00  F8 01 EC  F8 02 EC  F8 FF EC  F6");
	sd_write(ping, sizeof ping);
	sd_ops("F4");
	sd_write(ping, sizeof ping);
	sd_ops("F4 EB 00 10 F4 F8 FF EC  EB 00 20  F4 F8 20 EF EC");
	sd_emit("split-coalesce-truncate");
	/* A BearSSL ClientHello from a raw client, whole and split. */
	n = client_hello(hello, sizeof hello, SNI_HOST);
	sd_ops("05 00 40");
	sd_write(hello, n);
	sd_emit("clienthello");
	sd_ops("07 00 40");
	sd_write(hello, 3);
	sd_ops("EC");
	sd_write(hello + 3, n - 3);
	sd_ops("EC EC EC");
	sd_emit("clienthello-split");
	/* Records that arrive together (rounds on request) behind a packet
	 * that pauses the client: over -rate-config 1000 B/s, or with the pool
	 * drained; the rest of the read batch waits in `rawin`. */
	sd_ops("02 08 00  E9 00  EB 00 FF  EB 00 FF  EB 80 01  EC EC EC EC"
	    "  ED FF EC  ED FF EC EC");
	sd_emit("rate-paused-batch");
	sd_ops("02 00 00  E9 00  EC  F1 00  EB 00 30  EB 00 30  EB 00 30  EC EC"
	    "  F1 FF EC EC");
	sd_emit("pool-paused-batch");
	/* close_notify before the handshake is over; three clients at once. */
	sd_ops("04 00 10  F5 FB  E6 04  E6 08  E9 00 E0 E9 02 EB 01 08 EC");
	sd_emit("close-early-three");
}
