/*
 * fuzz.h -- what every fuzz target of test/fuzz/ shares: the libFuzzer entry
 * points, failing loudly, and the seed writer.
 *
 * A target is one .c file that defines fuzz_init() (once per process) and
 * fuzz_seeds() (writes its seed inputs with seed_emit), then includes this
 * header and defines LLVMFuzzerTestOneInput.  The same file builds two ways:
 * with clang -fsanitize=fuzzer (make fuzz: libFuzzer's main), and with any C
 * compiler plus test/fuzz/replay.c (make test: replays the corpus and the
 * regression inputs, no libFuzzer needed).
 *
 * Environment:
 *   FUZZ_WRITE_SEEDS=DIR  write the target's seeds into DIR and exit
 *   FUZZ_ALL_SEEDS=1      ... also those not for the repository (large ones,
 *                         and any holding a key or certificate made now)
 *   FUZZ_DATA=DIR         the project's test/data (seeds read from it)
 *   FUZZ_TMPDIR=DIR       where the relay harness makes its scratch directory
 *   FUZZ_CERT_DIR=DIR     fuzz_cert's work directory (its own key is kept)
 *   FUZZ_TRACE=1          fuzz_server.h prints every round (debugging)
 *
 * A harness check that fails (a leaked chunk, a broken invariant, a reply
 * that does not parse back) calls fuzz_die: one line on the real stderr, then
 * abort(), which libFuzzer and the replay driver both report as a crash.
 */
#ifndef FUZZ_H
#define FUZZ_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Harness code that only checks (walks lists, compares) is left out of
 * libFuzzer's coverage: it would cost more than the code under test, and its
 * branches are not what the fuzzer should explore. */
#if defined(__clang__) && __clang_major__ >= 13
#define FUZZ_NOCOV __attribute__((no_sanitize("coverage")))
#else
#define FUZZ_NOCOV
#endif
/* Helpers of the shared headers that a target may not use. */
#if defined(__GNUC__)
#define FUZZ_HELPER __attribute__((unused))
#else
#define FUZZ_HELPER
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static void fuzz_init(void);
static void fuzz_seeds(const char *datadir);

/* stderr as it was at start-up: libFuzzer's -close_fd_mask=2 later points
 * descriptor 2 at /dev/null to silence the relay's log lines. */
static int fuzz_errfd = 2;
static const char *fuzz_seed_dir;
static unsigned fuzz_seed_count;

FUZZ_NOCOV static void
fuzz_die(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;
	ssize_t w;

	memcpy(msg, "fuzz: ", 6);
	va_start(ap, fmt);
	n = vsnprintf(msg + 6, sizeof msg - 7, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	n += 6;
	if ((size_t)n > sizeof msg - 2)
		n = (int)sizeof msg - 2;
	msg[n++] = '\n';
	w = write(fuzz_errfd, msg, (size_t)n);
	(void)w;
	abort();
}

#define FUZZ_CHECK(cond, ...) \
	do { if (!(cond)) fuzz_die(__VA_ARGS__); } while (0)

/* Write one seed input as DIR/name. */
FUZZ_HELPER FUZZ_NOCOV static void
seed_emit(const char *name, const void *p, size_t n)
{
	char path[1024];
	const uint8_t *b = p;
	ssize_t w;
	int fd;

	snprintf(path, sizeof path, "%s/%s", fuzz_seed_dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	FUZZ_CHECK(fd >= 0, "seed %s: %s", path, strerror(errno));
	while (n > 0) {
		w = write(fd, b, n);
		FUZZ_CHECK(w > 0, "seed %s: %s", path, strerror(errno));
		b += w;
		n -= (size_t)w;
	}
	close(fd);
	fuzz_seed_count++;
}

/* Hex text (whitespace ignored) to bytes; returns the byte count. */
FUZZ_HELPER FUZZ_NOCOV static size_t
fuzz_unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;
	int hi = -1, v;

	for (; *hex != '\0'; hex++) {
		if (*hex >= '0' && *hex <= '9')
			v = *hex - '0';
		else if (*hex >= 'a' && *hex <= 'f')
			v = *hex - 'a' + 10;
		else if (*hex >= 'A' && *hex <= 'F')
			v = *hex - 'A' + 10;
		else
			continue;
		if (hi < 0) {
			hi = v;
			continue;
		}
		FUZZ_CHECK(n < cap, "hex longer than %zu bytes", cap);
		out[n++] = (uint8_t)(hi << 4 | v);
		hi = -1;
	}
	return n;
}

/* A whole file, NUL-terminated, or NULL. */
FUZZ_HELPER FUZZ_NOCOV static char *
fuzz_slurp(const char *dir, const char *name, size_t *len)
{
	char path[1024];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		fclose(f);
		return NULL;
	}
	buf = malloc((size_t)n + 1);
	if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		fclose(f);
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("FUZZ_WRITE_SEEDS"), *data = getenv("FUZZ_DATA");
	int fd;

	(void)argc;
	(void)argv;
	fd = dup(2);
	if (fd >= 0)
		fuzz_errfd = fd;
	signal(SIGPIPE, SIG_IGN);	/* the relay's writes to a closed peer */
	fuzz_init();
	if (dir != NULL && dir[0] != '\0') {
		char path[1024];
		size_t i;

		snprintf(path, sizeof path, "%s", dir);	/* mkdir -p */
		for (i = 1; path[i] != '\0'; i++) {
			if (path[i] != '/')
				continue;
			path[i] = '\0';
			(void)mkdir(path, 0755);
			path[i] = '/';
		}
		if (mkdir(dir, 0755) != 0 && errno != EEXIST)
			fuzz_die("mkdir %s: %s", dir, strerror(errno));
		fuzz_seed_dir = dir;
		fuzz_seeds(data != NULL && data[0] != '\0' ? data : "test/data");
		printf("%u seeds written to %s\n", fuzz_seed_count, dir);
		exit(0);
	}
	return 0;
}

#endif
