/*
 * Corpus replay for the fuzz targets, for builds without libFuzzer (the
 * default gcc configuration): runs LLVMFuzzerTestOneInput over every file
 * named on the command line (directories are walked one level deep), then
 * over a fixed number of deterministic mutations of each, so that a plain
 * `bazel test` exercises the invariants on more than the seeds.
 *
 * Exit status 0 when every input ran; a violated invariant aborts.
 */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MUTATIONS 200
#define REPLAY_MAX_INPUT (1u << 20)

static unsigned files, runs;

/* The input being run, for the report when an invariant aborts. */
static const uint8_t *current;
static size_t current_size;
static const char *current_file;

static void run_one(const uint8_t *data, size_t size)
{
    current = data;
    current_size = size;
    LLVMFuzzerTestOneInput(data, size);
    current = NULL;
}

/* On abort: print the failing input escaped, and save it where Bazel keeps
 * undeclared test outputs (or the working directory), so it can be added
 * to the corpus as a reproducer. */
static void on_abort(int sig)
{
    const char *dir = getenv("TEST_UNDECLARED_OUTPUTS_DIR");
    char path[4096];

    if (current == NULL)
        return;
    fprintf(stderr, "failing input (from %s, %zu bytes): \"", current_file ? current_file : "?",
            current_size);
    for (size_t i = 0; i < current_size && i < 4096; i++) {
        uint8_t c = current[i];
        if (c == '\\' || c == '"')
            fprintf(stderr, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"\n");
    snprintf(path, sizeof(path), "%s/crash-replay", dir ? dir : ".");
    FILE *f = fopen(path, "wb");
    if (f != NULL) {
        fwrite(current, 1, current_size, f);
        fclose(f);
        fprintf(stderr, "saved to %s\n", path);
    }
    signal(sig, SIG_DFL);
}

static uint32_t next(uint32_t *s)
{
    /* xorshift32: deterministic across platforms and runs. */
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Runs data as is, then mutated: byte flips, CR/LF/NUL/TAB/space/dot
 * insertions, deletions, truncations and duplications of a span. */
static void run_with_mutations(const uint8_t *data, size_t size, uint32_t seed)
{
    static const uint8_t interesting[] = {'\r', '\n', '\0', '\t', ' ', '.', ':', '-', 0xff};
    size_t cap = size * 2 + 64;
    uint8_t *buf = malloc(cap);
    uint8_t *exact;

    if (buf == NULL) {
        perror("malloc");
        exit(2);
    }
    /* An exactly sized copy, so that a read past the end is caught by
     * sanitizers and valgrind. */
    exact = malloc(size ? size : 1);
    if (exact == NULL) {
        perror("malloc");
        exit(2);
    }
    memcpy(exact, data, size);
    run_one(exact, size);
    free(exact);
    runs++;

    for (int m = 0; m < MUTATIONS; m++) {
        size_t n = size;
        memcpy(buf, data, size);
        int edits = 1 + (int)(next(&seed) % 4);
        for (int k = 0; k < edits; k++) {
            size_t at = n ? next(&seed) % n : 0;
            switch (next(&seed) % 6) {
            case 0: /* flip */
                if (n)
                    buf[at] ^= (uint8_t)(1u << (next(&seed) % 8));
                break;
            case 1: /* insert an interesting byte */
                if (n + 1 <= cap) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = interesting[next(&seed) % sizeof(interesting)];
                    n++;
                }
                break;
            case 2: /* delete */
                if (n) {
                    memmove(buf + at, buf + at + 1, n - at - 1);
                    n--;
                }
                break;
            case 3: /* truncate */
                n = at;
                break;
            case 4: /* overwrite with an interesting byte */
                if (n)
                    buf[at] = interesting[next(&seed) % sizeof(interesting)];
                break;
            case 5: { /* duplicate a span */
                size_t len = n - at < 32 ? n - at : 32;
                if (n + len <= cap) {
                    memmove(buf + at + len, buf + at, n - at);
                    n += len;
                }
                break;
            }
            }
        }
        exact = malloc(n ? n : 1);
        if (exact == NULL) {
            perror("malloc");
            exit(2);
        }
        memcpy(exact, buf, n);
        run_one(exact, n);
        free(exact);
        runs++;
    }
    free(buf);
}

static void run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data;
    size_t n;
    uint32_t seed = 2166136261u;

    if (f == NULL) {
        perror(path);
        exit(2);
    }
    data = malloc(REPLAY_MAX_INPUT);
    if (data == NULL) {
        perror("malloc");
        exit(2);
    }
    n = fread(data, 1, REPLAY_MAX_INPUT, f);
    fclose(f);
    for (const char *p = path; *p; p++)
        seed = (seed ^ (uint8_t)*p) * 16777619u;
    if (seed == 0)
        seed = 1;
    fprintf(stderr, "replay %s (%zu bytes)\n", path, n);
    current_file = path;
    run_with_mutations(data, n, seed);
    free(data);
    files++;
}

static void run_path(const char *path)
{
    struct stat st;

    if (stat(path, &st) != 0) {
        perror(path);
        exit(2);
    }
    if (!S_ISDIR(st.st_mode)) {
        run_file(path);
        return;
    }
    DIR *d = opendir(path);
    if (d == NULL) {
        perror(path);
        exit(2);
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char sub[4096];
        snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
        run_file(sub);
    }
    closedir(d);
}

int main(int argc, char **argv)
{
    signal(SIGABRT, on_abort);
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-')
            continue; /* libFuzzer-style flags are accepted and ignored */
        run_path(argv[i]);
    }
    if (files == 0) {
        fprintf(stderr, "no corpus files given: nothing was tested\n");
        return 1;
    }
    fprintf(stderr, "%u files, %u runs, all invariants held\n", files, runs);
    return 0;
}
