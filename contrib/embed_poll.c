/*
 * embed_poll.c -- the relay inside a daemon's own poll() loop.
 *
 * Usage: embed_poll ADDR KEYFILE    e.g. embed_poll 127.0.0.1:3340 /tmp/k.json
 *
 * Serves DERP over plain HTTP on ADDR with the key in KEYFILE (written there
 * when missing).  The daemon's own work stands for whatever a firmware daemon
 * does: it answers each line of stdin with "embed_poll: echo LINE", and the
 * line "quit" stops it, as SIGTERM and SIGINT do.
 *
 * Each round the relay names the descriptors it wants watched (derp_pollfds),
 * the daemon polls them beside its own for at most derp_next_timeout_ms(),
 * and derp_step() does the relay's share without blocking.  A stop is a
 * request: the loop keeps stepping until derp_step() returns 1 (the relay
 * has written out what it had queued and closed its clients).  A daemon with
 * timers of its own waits for the nearer of its deadline and the relay's.
 *
 * Build: make build/embed_poll, or by hand
 *	cc -DDERP_NO_MAIN contrib/embed_poll.c derp.c stun.c nacl.c x25519.c
 *	    p256.c cert.c verify.c bootdns.c tlsclient.c acme.c probe.c
 *	    -lbearssl -lm
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../derp.h"

#define MAX_CLIENTS 64		/* -max-clients: a small daemon's share */
#define FDS_START 8		/* relay descriptors room at first; grows */
#define LINE_BYTES 256		/* one stdin line, longer ones are cut */

/* Set before the handlers are installed, only read afterwards. */
static struct derp_server *relay;

/* The daemon's own work: lines of stdin. */
struct own {
	int fd;				/* STDIN_FILENO; -1 once it ended */
	char line[LINE_BYTES];
	size_t len;			/* bytes in line, no newline among them */
};

static void
on_signal(int sig)
{
	(void)sig;
	derp_stop(relay);		/* sets a flag: async-signal-safe */
}

/* Read what stdin has and act on each whole line.  -1 at its end. */
static int
own_read(struct own *o)
{
	char *nl;
	size_t l;
	ssize_t n;

	n = read(o->fd, o->line + o->len, sizeof o->line - 1 - o->len);
	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 0 : -1;
	if (n == 0)
		return -1;
	o->len += (size_t)n;
	while ((nl = memchr(o->line, '\n', o->len)) != NULL ||
	    o->len == sizeof o->line - 1) {
		l = nl != NULL ? (size_t)(nl - o->line) : o->len;
		o->line[l] = '\0';
		if (strcmp(o->line, "quit") == 0)
			derp_stop(relay);
		else
			printf("embed_poll: echo %s\n", o->line);
		l = nl != NULL ? l + 1 : l;
		memmove(o->line, o->line + l, o->len - l);
		o->len -= l;
	}
	return 0;
}

/* Room for n relay descriptors in dfds and for them plus ours in pfds. */
static int
grow(struct derp_pollfd **dfds, struct pollfd **pfds, size_t *cap, size_t n)
{
	void *p;

	if (n < 2 * *cap)
		n = 2 * *cap;
	if ((p = realloc(*dfds, n * sizeof **dfds)) == NULL)
		return -1;
	*dfds = p;
	if ((p = realloc(*pfds, (n + 1) * sizeof **pfds)) == NULL)
		return -1;
	*pfds = p;
	*cap = n;
	return 0;
}

int
main(int argc, char **argv)
{
	struct own own = { STDIN_FILENO, "", 0 };
	struct derp_config cfg;
	struct derp_pollfd *dfds = NULL;
	struct pollfd *pfds = NULL;
	struct sigaction sa;
	char err[256];
	size_t cap = 0, n, i;
	int r = -1;

	if (argc != 3) {
		fprintf(stderr, "usage: embed_poll ADDR KEYFILE\n");
		return 2;
	}
	if (setvbuf(stdout, NULL, _IOLBF, 0) != 0)
		return 1;
	/* Writes to a peer that has gone must not kill the daemon. */
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	if (sigemptyset(&sa.sa_mask) != 0 || sigaction(SIGPIPE, &sa, NULL) != 0) {
		perror("embed_poll: sigaction");
		return 1;
	}
	if (grow(&dfds, &pfds, &cap, FDS_START) != 0) {
		perror("embed_poll: malloc");
		return 1;
	}

	derp_config_defaults(&cfg);
	cfg.addr = argv[1];
	cfg.config_path = argv[2];
	cfg.http_port = -1;
	cfg.stun = 0;
	cfg.max_clients = MAX_CLIENTS;
	relay = derp_create(&cfg, err, sizeof err);
	if (relay == NULL) {
		fprintf(stderr, "embed_poll: %s\n", err);
		goto out;
	}
	/* No SA_RESTART: a signal ends poll() early, so the stop is seen at
	 * once rather than a timeout later. */
	sa.sa_handler = on_signal;
	if (sigaction(SIGTERM, &sa, NULL) != 0 ||
	    sigaction(SIGINT, &sa, NULL) != 0) {
		perror("embed_poll: sigaction");
		goto out;
	}
	printf("embed_poll: serving on %s\n", cfg.addr);

	for (;;) {
		n = derp_pollfds(relay, dfds, cap);
		if (n > cap) {
			if (grow(&dfds, &pfds, &cap, n) != 0) {
				perror("embed_poll: realloc");
				r = -1;
				break;
			}
			continue;		/* ask again with room */
		}
		pfds[0].fd = own.fd;		/* poll() skips a negative one */
		pfds[0].events = POLLIN;
		pfds[0].revents = 0;
		for (i = 0; i < n; i++) {
			pfds[i + 1].fd = dfds[i].fd;
			pfds[i + 1].events = dfds[i].events;
		}
		if (poll(pfds, (nfds_t)(n + 1), derp_next_timeout_ms(relay)) < 0) {
			if (errno != EINTR) {
				perror("embed_poll: poll");
				r = -1;
				break;
			}
		} else if (pfds[0].revents != 0 && own_read(&own) != 0)
			own.fd = -1;		/* stdin ended: relay on alone */
		/* The relay finds out itself what is ready. */
		if ((r = derp_step(relay)) != 0)
			break;
	}
	if (r == 1)
		printf("embed_poll: stopped\n");
	else
		fprintf(stderr, "embed_poll: the relay's loop failed\n");
out:
	derp_destroy(relay);
	free(dfds);
	free(pfds);
	return r == 1 ? 0 : 1;
}
