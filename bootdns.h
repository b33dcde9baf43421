/*
 * bootdns.h -- derper's bootstrap DNS (-bootstrap-dns-names and
 * -unpublished-bootstrap-dns-names, derper-compat.md 4.5 and 10): the names,
 * their addresses as a lookup found them, and the JSON that /bootstrap-dns
 * answers.  Pure functions on caller-owned tables, plus bootdns_lookup_all,
 * the blocking lookups that derp.c runs in a short-lived child process so that
 * a resolver that hangs costs the relay nothing.  See README "Files".
 */
#ifndef BOOTDNS_H
#define BOOTDNS_H

#include <stddef.h>
#include <stdint.h>

#define BOOTDNS_NAMES_MAX 8		/* both lists together */
#define BOOTDNS_NAMES_BYTES 1024	/* their lengths together */
#define BOOTDNS_NAME_MAX 253		/* a DNS name's text, without NUL */
#define BOOTDNS_ADDRS_MAX 8		/* addresses kept per name */
#define BOOTDNS_ADDR_TEXT 46		/* INET6_ADDRSTRLEN */
/* One result line, "name addr addr ...\n", at most this long: more than
 * PIPE_BUF may be, so the relay reassembles lines from what it reads. */
#define BOOTDNS_LINE_MAX (BOOTDNS_NAME_MAX + 1 + \
	BOOTDNS_ADDRS_MAX * BOOTDNS_ADDR_TEXT + 2)
/* The body /bootstrap-dns answers fits one HTTP response of the relay (4
 * KiB with its head): every name with at least one address always does
 * (BOOTDNS_NAMES_BYTES + BOOTDNS_NAMES_MAX * (10 + 52) + 4 bytes), and
 * bootdns_json's maxaddr lets the relay keep fewer addresses when all of
 * them would not. */
#define BOOTDNS_JSON_MAX 3072

struct bootdns_name {
	char name[BOOTDNS_NAME_MAX + 1];
	uint8_t unpublished;		/* answered only to ?q=name */
	uint8_t found;			/* the last lookup succeeded */
	uint8_t naddr;
	char addr[BOOTDNS_ADDRS_MAX][BOOTDNS_ADDR_TEXT];
};

struct bootdns {
	struct bootdns_name n[BOOTDNS_NAMES_MAX];
	size_t count;
};

/* Fill b's names from the two comma-separated flag values (empty entries
 * skipped, duplicates kept once, published winning).  A name must be 1..253
 * bytes of A-Z a-z 0-9 . - _ : (host names and IP literals); at most
 * BOOTDNS_NAMES_MAX names of BOOTDNS_NAMES_BYTES together.  0, or -1 with a
 * one-line message in err. */
int bootdns_parse_names(struct bootdns *b, const char *published,
    const char *unpublished, char *err, size_t errlen);

/* Forget every name's addresses (a new lookup round begins). */
void bootdns_clear(struct bootdns *b);

/* One result line (without its '\n'): "name" then its addresses separated
 * by spaces; a name with no address failed.  A line for a name b does not
 * hold, or that is malformed, is ignored: 0 taken, -1 ignored. */
int bootdns_take_line(struct bootdns *b, const char *line, size_t len);

/* The JSON derper answers, as Go's json.MarshalIndent(map, "", "\t") writes
 * it: the names found (the published ones, or when only is not NULL the
 * unpublished name only), sorted, each with its first maxaddr addresses in
 * the order held.  Its length; 0 when cap is too small (with maxaddr 1,
 * BOOTDNS_JSON_MAX always suffices). */
size_t bootdns_json(const struct bootdns *b, const char *only, size_t maxaddr,
    char *out, size_t cap);

/* Look up every name (A and AAAA, getaddrinfo) and write one result line
 * per name to fd as it finishes.  Blocking: for a child process. */
void bootdns_lookup_all(const struct bootdns *b, int fd);

#endif
