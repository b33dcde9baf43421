/*
 * replay.c -- runs a fuzz target's LLVMFuzzerTestOneInput over files, without
 * libFuzzer, so `make test` exercises every harness (seed corpus and found
 * crashes) with any C compiler, sanitizers or not.
 *
 * usage: fuzz_replay_TARGET PATH...   (a PATH is a file or a directory of them)
 *        FUZZ_WRITE_SEEDS=DIR fuzz_replay_TARGET   (writes the target's seeds)
 *
 * Each input runs in a child process, so one that crashes (a sanitizer report,
 * a harness abort) is reported as "FAIL path: ..." and the others still run.
 * A PATH that does not exist or cannot be read, an entry of a directory that
 * is not a readable regular file, and a run that replayed no input at all
 * fail too: a corpus that went missing must not pass as an empty one.  Ends
 * with "N passed, N failed" and exits non-zero if any failed.
 */
#define _POSIX_C_SOURCE 200809L

#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static int passed, failed;

/* The file in an exactly sized buffer (so ASan sees a read past the end). */
static int
run_input(const char *path)
{
	struct stat sb;
	uint8_t *buf;
	size_t n = 0;
	FILE *f;

	if (stat(path, &sb) != 0 || (f = fopen(path, "rb")) == NULL)
		return -1;
	buf = malloc(sb.st_size > 0 ? (size_t)sb.st_size : 1);
	if (buf == NULL) {
		fclose(f);
		return -1;
	}
	if (sb.st_size > 0)
		n = fread(buf, 1, (size_t)sb.st_size, f);
	fclose(f);
	if (n != (size_t)sb.st_size) {
		free(buf);
		return -1;
	}
	LLVMFuzzerTestOneInput(buf, n);
	free(buf);
	return 0;
}

static void
replay(const char *path)
{
	pid_t pid;
	int status;

	fflush(NULL);
	pid = fork();
	if (pid == 0)	/* exit, not _exit: coverage and leak checks run */
		exit(run_input(path) == 0 ? 0 : 100);
	if (pid < 0) {
		/* No fork: run it here (a crash then ends the replay). */
		if (run_input(path) == 0) {
			passed++;
		} else {
			printf("FAIL %s: cannot read\n", path);
			failed++;
		}
		return;
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		passed++;
		return;
	}
	failed++;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 100)
		printf("FAIL %s: cannot read\n", path);
	else if (WIFEXITED(status))
		printf("FAIL %s: exit status %d\n", path, WEXITSTATUS(status));
	else
		printf("FAIL %s: signal %d\n", path,
		    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A path that could not be replayed at all: one failure, not a skip. */
static void
fail_path(const char *path, const char *why)
{
	printf("FAIL %s: %s\n", path, why);
	failed++;
}

/* The files of a directory, in name order (a stable order for reports). */
static void
replay_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	struct stat sb;
	char **names = NULL, **tmp, path[4096];
	size_t n = 0, cap = 0, i;
	int before = passed + failed;

	if (d == NULL) {
		fail_path(dir, strerror(errno));
		return;
	}
	/* readdir returns NULL at the end and on an error: errno tells. */
	for (errno = 0; (de = readdir(d)) != NULL; errno = 0) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			tmp = realloc(names, cap * sizeof *names);
			if (tmp == NULL)
				break;
			names = tmp;
		}
		if ((names[n] = strdup(de->d_name)) == NULL)
			break;
		n++;
	}
	/* A listing cut short would replay a part of the corpus as if it
	 * were all of it. */
	if (de != NULL || errno != 0)
		fail_path(dir, de != NULL ? "out of memory listing it" :
		    strerror(errno));
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof *names, cmp_names);
	for (i = 0; i < n; i++) {
		if ((size_t)snprintf(path, sizeof path, "%s/%s", dir,
		    names[i]) >= sizeof path)
			fail_path(names[i], "path too long");
		else if (stat(path, &sb) != 0)
			fail_path(path, strerror(errno));
		else if (!S_ISREG(sb.st_mode))
			fail_path(path, "not a regular file");
		else
			replay(path);
		free(names[i]);
	}
	free(names);
	printf("ok %s: %d inputs replayed\n", dir, passed + failed - before);
}

int
main(int argc, char **argv)
{
	struct stat sb;
	int i;

	LLVMFuzzerInitialize(&argc, &argv);	/* FUZZ_WRITE_SEEDS: exits */
	if (argc < 2) {
		fprintf(stderr, "usage: %s PATH...\n", argv[0]);
		return 2;
	}
	for (i = 1; i < argc; i++) {
		if (stat(argv[i], &sb) != 0)
			fail_path(argv[i], strerror(errno));
		else if (S_ISDIR(sb.st_mode))
			replay_dir(argv[i]);
		else
			replay(argv[i]);
	}
	/* Paths that all exist but hold nothing: the harness never ran. */
	if (passed + failed == 0)
		fail_path("replay", "no input replayed");
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
