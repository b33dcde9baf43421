/*
 * bootdns.c -- derper's bootstrap DNS: names, lookups, JSON.  See bootdns.h.
 */
#define _POSIX_C_SOURCE 200809L	/* getaddrinfo, inet_ntop */

#include "bootdns.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int
name_char_ok(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	    (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_' ||
	    ch == ':';
}

static struct bootdns_name *
name_find(struct bootdns *b, const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < b->count; i++)
		if (strlen(b->n[i].name) == len &&
		    memcmp(b->n[i].name, name, len) == 0)
			return &b->n[i];
	return NULL;
}

/* Add the entries of one comma-separated list.  0 or -1 with err. */
static int
names_add(struct bootdns *b, const char *list, int unpublished, char *err,
    size_t errlen)
{
	const char *p = list, *end;
	size_t len, i, total;

	while (p != NULL && *p != '\0') {
		end = strchr(p, ',');
		len = end != NULL ? (size_t)(end - p) : strlen(p);
		for (i = 0; i < len && name_char_ok(p[i]); i++)
			continue;
		if (len > BOOTDNS_NAME_MAX || i < len) {
			snprintf(err, errlen, "bootstrap DNS name \"%.*s\": "
			    "want 1..%d of A-Z a-z 0-9 . - _ :%s", (int)(len >
			    60 ? 60 : len), p, BOOTDNS_NAME_MAX, unpublished &&
			    memchr(p, '/', len) != NULL ? " (a rollout "
			    "percentage from a TXT record, name/txtname, is not "
			    "supported)" : "");
			return -1;
		}
		if (len > 0 && name_find(b, p, len) == NULL) {
			for (i = 0, total = 0; i < b->count; i++)
				total += strlen(b->n[i].name);
			if (b->count == BOOTDNS_NAMES_MAX ||
			    total + len > BOOTDNS_NAMES_BYTES) {
				snprintf(err, errlen, "more than %d bootstrap "
				    "DNS names, or more than %d bytes of them",
				    BOOTDNS_NAMES_MAX, BOOTDNS_NAMES_BYTES);
				return -1;
			}
			memcpy(b->n[b->count].name, p, len);
			b->n[b->count].name[len] = '\0';
			b->n[b->count].unpublished = (uint8_t)unpublished;
			b->count++;
		}
		p = end != NULL ? end + 1 : NULL;
	}
	return 0;
}

int
bootdns_parse_names(struct bootdns *b, const char *published,
    const char *unpublished, char *err, size_t errlen)
{
	memset(b, 0, sizeof *b);
	if (names_add(b, published, 0, err, errlen) != 0 ||
	    names_add(b, unpublished, 1, err, errlen) != 0) {
		memset(b, 0, sizeof *b);
		return -1;
	}
	return 0;
}

void
bootdns_clear(struct bootdns *b)
{
	size_t i;

	for (i = 0; i < b->count; i++) {
		b->n[i].found = 0;
		b->n[i].naddr = 0;
	}
}

int
bootdns_take_line(struct bootdns *b, const char *line, size_t len)
{
	struct bootdns_name *n;
	const char *p, *end = line + len;
	char text[BOOTDNS_ADDR_TEXT];
	unsigned char bin[16];
	size_t wl;

	p = memchr(line, ' ', len);
	if (p == NULL)
		p = end;
	if ((n = name_find(b, line, (size_t)(p - line))) == NULL)
		return -1;
	n->naddr = 0;
	n->found = 0;
	while (p < end) {
		const char *sp;

		p++;
		sp = memchr(p, ' ', (size_t)(end - p));
		wl = (size_t)((sp != NULL ? sp : end) - p);
		if (wl == 0 || wl >= sizeof text)
			return -1;
		memcpy(text, p, wl);
		text[wl] = '\0';
		/* Only addresses, in their canonical text. */
		if (inet_pton(AF_INET, text, bin) != 1 &&
		    inet_pton(AF_INET6, text, bin) != 1)
			return -1;
		if (n->naddr < BOOTDNS_ADDRS_MAX)
			memcpy(n->addr[n->naddr++], text, wl + 1);
		p += wl;
	}
	n->found = n->naddr > 0;
	return 0;
}

/* Append s (len bytes) to out; 0 or -1 when it does not fit. */
static int
put(char *out, size_t cap, size_t *at, const char *s, size_t len)
{
	if (len > cap - *at)
		return -1;
	memcpy(out + *at, s, len);
	*at += len;
	return 0;
}

static int
put_str(char *out, size_t cap, size_t *at, const char *s)
{
	return put(out, cap, at, s, strlen(s));
}

#define PUTS(str) put_str(out, cap, &at, (str))

size_t
bootdns_json(const struct bootdns *b, const char *only, size_t maxaddr,
    char *out, size_t cap)
{
	const struct bootdns_name *next, *prev = NULL;
	size_t at = 0, i, k, shown = 0;

	if (PUTS("{") != 0)
		return 0;
	/* Go sorts a map's keys by their bytes: the smallest name greater
	 * than the previous one, each round (at most 16 names). */
	for (;;) {
		next = NULL;
		for (i = 0; i < b->count; i++) {
			const struct bootdns_name *n = &b->n[i];

			if (!n->found || (only != NULL ? !n->unpublished ||
			    strcmp(n->name, only) != 0 : n->unpublished))
				continue;
			if (prev != NULL && strcmp(n->name, prev->name) <= 0)
				continue;
			if (next == NULL || strcmp(n->name, next->name) < 0)
				next = n;
		}
		if (next == NULL)
			break;
		if (PUTS(shown > 0 ? ",\n\t\"" : "\n\t\"") != 0 ||
		    PUTS(next->name) != 0 || PUTS("\": [") != 0)
			return 0;
		for (k = 0; k < next->naddr && k < maxaddr; k++)
			if (PUTS(k > 0 ? ",\n\t\t\"" : "\n\t\t\"") != 0 ||
			    PUTS(next->addr[k]) != 0 || PUTS("\"") != 0)
				return 0;
		if (PUTS("\n\t]") != 0)
			return 0;
		shown++;
		prev = next;
	}
	if (PUTS(shown > 0 ? "\n}" : "}") != 0)
		return 0;
	return at;
}

/* write(2) all of buf; a short pipe write is continued. */
static void
write_all(int fd, const char *buf, size_t len)
{
	ssize_t w;

	while (len > 0) {
		w = write(fd, buf, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		buf += w;
		len -= (size_t)w;
	}
}

void
bootdns_lookup_all(const struct bootdns *b, int fd)
{
	char line[BOOTDNS_LINE_MAX], text[BOOTDNS_ADDR_TEXT];
	struct addrinfo hints, *res, *ai;
	const void *a;
	size_t i, at, naddr;

	for (i = 0; i < b->count; i++) {
		memset(&hints, 0, sizeof hints);
		hints.ai_family = AF_UNSPEC;	/* A and AAAA */
		hints.ai_socktype = SOCK_STREAM;	/* each address once */
		at = strlen(b->n[i].name);
		memcpy(line, b->n[i].name, at);
		naddr = 0;
		if (getaddrinfo(b->n[i].name, NULL, &hints, &res) == 0) {
			for (ai = res; ai != NULL && naddr < BOOTDNS_ADDRS_MAX;
			    ai = ai->ai_next) {
				if (ai->ai_family == AF_INET)
					a = &((const struct sockaddr_in *)(const
					    void *)ai->ai_addr)->sin_addr;
				else if (ai->ai_family == AF_INET6)
					a = &((const struct sockaddr_in6 *)(const
					    void *)ai->ai_addr)->sin6_addr;
				else
					continue;
				if (inet_ntop(ai->ai_family, a, text,
				    sizeof text) == NULL)
					continue;
				line[at++] = ' ';
				memcpy(line + at, text, strlen(text));
				at += strlen(text);
				naddr++;
			}
			freeaddrinfo(res);
		}
		line[at++] = '\n';
		write_all(fd, line, at);
	}
}
