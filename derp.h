/*
 * derp.h -- a DERP relay server (Tailscale's derper protocol v2) you can embed.
 *
 * A firmware build compiles derp.c, stun.c, nacl.c, x25519.c, p256.c, cert.c and
 * verify.c with -DDERP_NO_MAIN and drives the relay through this interface:
 *
 *	struct derp_config cfg;
 *	derp_config_defaults(&cfg);
 *	cfg.addr = ":443"; cfg.hostname = "203.0.113.7"; cfg.certmode = "manual";
 *	srv = derp_create(&cfg, err, sizeof err);   (binds, loads keys; may fail)
 *	derp_run(srv);                              (until derp_stop)
 *	derp_destroy(srv);
 *
 * A relay owns all its state (no file-level variables): several relays may run in
 * one process, each in its own thread, and be destroyed in any order.  The
 * embedding program must ignore SIGPIPE (derp's own main does): writes to a peer
 * that has gone would otherwise kill the process.  derp_config_defaults() keeps
 * the default -certdir in a static buffer: call it from one thread at a time.
 *
 * The relay is single-threaded.  derp_stop() only sets a flag and is safe to call
 * from a signal handler; derp_run() returns within one loop round (at most
 * LOOP_TICK_MS) after it.  All memory is reserved by derp_create() from the limits
 * in the config; derp_run() never allocates.
 */
#ifndef DERP_H
#define DERP_H

#include <stddef.h>
#include <stdint.h>

#define DERP_VERSION "0.1.0"

/*
 * The options of Tailscale's derper that this relay implements, with derper's
 * defaults (derp_config_defaults).  Strings are borrowed, not copied: they must
 * outlive the server.  Durations are in milliseconds.
 */
struct derp_config {
	const char *addr;		/* -a: ":443", "ip:port", "[v6]:port" */
	int http_port;			/* -http-port: 80; -1 disables */
	int stun_port;			/* -stun-port: 3478 */
	int stun;			/* -stun: run the STUN server */
	int derp;			/* -derp: serve DERP (else /derp is 404) */
	int tls;			/* TLS whatever the port of -a (not
					 * derper's rule; tests, DERP_TEST_TLS) */
	const char *config_path;	/* -c: key file ("" = derper's default rule) */
	int dev;			/* -dev: :3340, throw-away key */
	const char *hostname;		/* -hostname: "derp.tailscale.com" */
	const char *certmode;		/* -certmode: "letsencrypt" */
	const char *certdir;		/* -certdir: $XDG_CACHE_HOME/tailscale/derper-certs */
	const char *home;		/* -home: "", "blank" or an http(s) URL */
	const char *rate_config;	/* -rate-config: per-client limits JSON, or "" */
	int64_t tcp_keepalive_ms;	/* -tcp-keepalive-time: 10 min */
	int64_t tcp_user_timeout_ms;	/* -tcp-user-timeout: 15 s */
	int64_t tcp_write_timeout_ms;	/* -tcp-write-timeout: 2 s; 0 disables */
	double accept_limit_per_sec;	/* -accept-connection-limit: +Inf */
	int64_t accept_burst;		/* -accept-connection-burst: INT64_MAX */
	unsigned max_clients;		/* -max-clients (ours): connection slots */
	unsigned max_handshakes;	/* -max-handshakes (ours): connections not
					 * yet past ClientInfo at once: 256 */
	unsigned queue_depth;		/* per-client packets per queue: 32 */
	int64_t keepalive_ms;		/* KeepAlive interval: 60 s, plus a
					 * per-connection jitter of a twelfth;
					 * 1 s .. 1 h (tests shorten it) */
	/* ACME (-certmode letsencrypt or gcp, in TLS mode; not in a build
	 * with DERP_NO_ACME).  The exchange runs in a child process forked
	 * by derp_run(); "" or 0 for the defaults noted. */
	const char *acme_directory;	/* -acme-directory: Let's Encrypt's;
					 * Google's for gcp */
	const char *acme_ca_file;	/* -acme-ca-file: the system bundle */
	const char *acme_email;		/* -acme-email */
	const char *acme_eab_kid;	/* -acme-eab-kid */
	const char *acme_eab_key;	/* -acme-eab-key: base64url */
	int acme_ip_certs;		/* -acme-ip-certs: IP certificates, for an
					 * IP -hostname or per local address */
	int64_t acme_renew_before_s;	/* renew this long before expiry; 0 =
					 * 30 days, or a third of the lifetime
					 * when that is less */
	/* -acme-webroot: /.well-known/acme-challenge/<token> files served
	 * from DIR/.well-known/acme-challenge/ (certbot, acme.sh); "" none */
	const char *acme_webroot;
	/* Bootstrap DNS: comma-separated names whose addresses (A and AAAA)
	 * a child process forked by derp_run() looks up every 10 minutes;
	 * /bootstrap-dns publishes the first list, and answers a name of the
	 * second only to ?q=name.  NULL or "" for none. */
	const char *bootstrap_dns_names;	/* -bootstrap-dns-names */
	const char *unpublished_bootstrap_dns_names;
	int64_t cert_check_ms;		/* how often the certificate files'
					 * stamps are compared: 0 = 60 s */
	/* Client admission (derp-protocol.md 14): a client that is not a
	 * mesh peer gets ServerInfo only once the local tailscaled knows its
	 * key (verify_clients, over socket_path: NULL or "" for
	 * /var/run/tailscale/tailscaled.sock) and the webhook allows it
	 * (verify_client_url: http:// or https://, NULL or "" for none;
	 * verify_client_ca_file: PEM roots for https, NULL or "" for the
	 * system bundle).  An unreachable webhook admits when fail_open. */
	int verify_clients;
	const char *socket_path;
	const char *verify_client_url;
	int verify_client_url_fail_open;
	const char *verify_client_ca_file;
	/* The region's mesh key: 64 hex digits ("" or NULL none).  A client
	 * whose ClientInfo carries it skips admission. */
	const char *mesh_key_hex;
	/* The region's other servers, dialled and watched (-mesh-with):
	 * comma-separated host[:port][/dialhost][=sha256-raw:HEX]; NULL or
	 * "" none.  Their certificates are checked against mesh_ca_file's
	 * PEM roots (NULL or "" for the system bundle) unless pinned. */
	const char *mesh_with;
	const char *mesh_ca_file;
	/* Who may read /debug/ (ours, -debug-allow): comma-separated
	 * keywords loopback, private, tailscale, any, none and CIDR
	 * prefixes; NULL or "" for loopback,private,tailscale.  A request
	 * with X-Forwarded-For never may (derper's rule). */
	const char *debug_allow;
	/* Ours, -verbose: a log line for each connection accepted,
	 * registered and closed (those are not rate limited). */
	int verbose;
};

/* Where every relay of the process writes its log lines (one call per
 * line, no newline, no time stamp): by default stderr, each line after the
 * local time as Go's log package writes it.  Set it before derp_create(),
 * not while relays run.  NULL restores the default. */
void derp_set_log(void (*fn)(void *ctx, const char *line), void *ctx);

struct derp_server;

void derp_config_defaults(struct derp_config *cfg);

/* Validate cfg, bind every socket, load or create the key and certificates,
 * reserve all memory.  NULL with a one-line reason in err on failure. */
struct derp_server *derp_create(const struct derp_config *cfg, char *err,
    size_t errlen);

/* Serve until derp_stop().  Returns 0 after a stop, -1 on a fatal loop error. */
int derp_run(struct derp_server *srv);

/* Ask derp_run() to return (or derp_step() to report the stop): listeners
 * close at once, queued packets are written out for at most a second, then
 * every connection is closed with a FIN.  Async-signal-safe. */
void derp_stop(struct derp_server *srv);

/*
 * Your own loop instead of derp_run() (a firmware daemon's poll() loop):
 *
 *	struct derp_pollfd fds[8];
 *	for (;;) {
 *		n = derp_pollfds(srv, fds, 8);        (n <= 8 here, see below)
 *		... poll() them with your own, for at most
 *		    derp_next_timeout_ms(srv) ms ...
 *		if (derp_step(srv) != 0)              (1: stopped, -1: error)
 *			break;
 *	}
 *
 * The relay keeps its own readiness set (epoll on Linux), so it asks you to
 * watch few descriptors: with epoll one (the epoll descriptor, POLLIN),
 * with the poll(2) back-end its whole set.  Ask again after every
 * derp_step(): the set may change.  derp_step() does whatever is ready
 * without waiting, and the timers that are due.  Calling it more often than
 * needed is harmless.  derp_run() is this loop with the relay's own wait.
 */
struct derp_pollfd {
	int fd;
	short events;			/* POLLIN and/or POLLOUT (<poll.h>) */
};

/* The descriptors to watch now: up to cap of them in fds.  Returns how many
 * there are; more than cap means call again with room for that many
 * (fds NULL and cap 0 just count).  With epoll always 1; with poll(2) at
 * most max_clients + 52 (listeners, admission checks, mesh links). */
size_t derp_pollfds(struct derp_server *srv, struct derp_pollfd *fds,
    size_t cap);

/* The longest wait before derp_step() is due even if nothing is ready:
 * 0 to 250 ms. */
int derp_next_timeout_ms(struct derp_server *srv);

/* One round without blocking.  0: call again; 1: stopped (derp_stop() and
 * its drain are done; then derp_destroy()); -1: a fatal loop error. */
int derp_step(struct derp_server *srv);

/* Ask derp_run() to reload -rate-config and, in TLS mode, the certificate
 * files.  Async-signal-safe. */
void derp_reload(struct derp_server *srv);

/* Close every socket and free everything derp_create() reserved. */
void derp_destroy(struct derp_server *srv);

/* Bytes derp_create() reserved for these limits (what start-up prints). */
size_t derp_memory_bytes(const struct derp_config *cfg);

#endif
