/*
 * Fuzz target for the configuration loader (proxy/app/config*.c):
 * config_load_string on arbitrary text, so libconfig's grammar and our
 * validation of every key (tests/fuzz/config.dict names them). The file is
 * named FUZZ_DIR/fuzz.conf, a temporary directory holding readable
 * server.pem, server.key and ca.pem, so that relative certificate paths
 * resolve and validation goes past the readability checks. Invariants
 * (abort on violation; hangs are libFuzzer's to report, leaks
 * LeakSanitizer's at exit, see LLVMFuzzerInitialize):
 *   - the status is 0 (with a config and no message), -EINVAL or -ENOMEM
 *     (without a config);
 *   - every line of the message is "FILE:LINE: message" with this file's
 *     name, a line number >= 1 and a non-empty message: one line per
 *     problem, so no message may carry a raw newline;
 *   - a smaller message buffer gives the same status and a NUL-terminated
 *     prefix of the same text.
 * Inputs that mention "include" are skipped: @include reads any file the
 * text names (a FIFO, /dev/zero), and the configuration is the operator's,
 * trusted to name files.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/app/config.h"
#include "tests/fuzz/fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

int LLVMFuzzerInitialize(int *argc, char ***argv);

/*
 * libFuzzer calls this before it reads its flags. Every input that loses
 * memory makes it stop the world and scan the heap for leaks; with
 * libconfig losing a little on most syntax errors (below) that scan ran for
 * nearly every input, and the target managed a few inputs a second. So
 * -detect_leaks=0 is added unless the command line sets it: leaks are then
 * reported by LeakSanitizer once, at exit, with their stacks (the run
 * fails), not per input.
 */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static char flag[] = "-detect_leaks=0";
    static char *args[256];

    for (int i = 1; i < *argc; i++)
        if (strncmp((*argv)[i], "-detect_leaks=", 14) == 0)
            return 0;
    if (*argc + 2 > (int)(sizeof(args) / sizeof(args[0])))
        return 0;
    memcpy(args, *argv, (size_t)*argc * sizeof(char *));
    args[(*argc)++] = flag;
    args[*argc] = NULL;
    *argv = args;
    return 0;
}

/* LeakSanitizer's built-in suppressions (used only in sanitizer builds).
 * Debian's libconfig 1.5 loses its lexer's string buffer when a string
 * literal stands where a setting name belongs ('a = 1; "x"', or '""'):
 * the lexer's allocations (strbuf_append, yylex) are not freed. Found by
 * config_fuzz, a few bytes per refused file (a reload of a broken
 * configuration), and not ours to fix. */
const char *__lsan_default_suppressions(void)
{
    return "leak:strbuf_append\n"
           "leak:libconfig_yylex\n";
}

#define ERR_MAX 8192

static char name[PATH_MAX];

static void touch(const char *dir, const char *file)
{
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/%s", dir, file);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs("not parsed by the loader\n", f);
    fclose(f);
}

/* The temporary directory, made once per process (and left behind: it is
 * under $TEST_TMPDIR in a test, and tiny). */
static void setup(void)
{
    static char dir[PATH_MAX / 2];
    const char *tmp = getenv("TEST_TMPDIR");

    if (name[0])
        return;
    if (tmp == NULL)
        tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/config_fuzz.XXXXXX", tmp ? tmp : "/tmp");
    CHECK(mkdtemp(dir) != NULL);
    touch(dir, "server.pem");
    touch(dir, "server.key");
    touch(dir, "ca.pem");
    snprintf(name, sizeof(name), "%s/fuzz.conf", dir);
}

static bool mentions_include(const char *text, size_t n)
{
    for (size_t i = 0; i + 7 <= n; i++)
        if (strncasecmp(text + i, "include", 7) == 0)
            return true;
    return false;
}

static void check_messages(const char *err)
{
    size_t nlen = strlen(name);

    CHECK(err[0] != '\0');
    for (const char *line = err; line != NULL;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);

        CHECK(len > nlen + 1 && memcmp(line, name, nlen) == 0 && line[nlen] == ':');
        const char *p = line + nlen + 1;
        CHECK(*p >= '1' && *p <= '9');
        while (*p >= '0' && *p <= '9')
            p++;
        CHECK(p[0] == ':' && p[1] == ' ' && p + 2 < line + len);
        line = nl ? nl + 1 : NULL;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char err[ERR_MAX], small[ERR_MAX];
    struct config *c = (struct config *)1;

    setup();
    char *text = malloc(size + 1);
    CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    if (mentions_include(text, size)) {
        free(text);
        return 0;
    }

    int rc = config_load_string(text, name, &c, err, sizeof(err));
    CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
    CHECK(memchr(err, '\0', sizeof(err)) != NULL);
    if (rc == 0) {
        CHECK(c != NULL && err[0] == '\0');
        config_free(c);
    } else {
        CHECK(c == NULL);
        if (strlen(err) < sizeof(err) - 1) /* not truncated */
            check_messages(err);
    }

    /* A buffer that may be too small: the same answer, cut short. */
    size_t smalllen = 1 + size % 97;
    memset(small, 'x', sizeof(small));
    c = (struct config *)1;
    CHECK(config_load_string(text, name, &c, small, smalllen) == rc);
    CHECK(memchr(small, '\0', smalllen) != NULL);
    CHECK(strncmp(small, err, strlen(small)) == 0);
    CHECK(small[smalllen] == 'x');
    config_free(c);
    free(text);
    return 0;
}
