/*
 * Tests of proxy/service/tlsrpt_store.c on a real directory (under
 * TEST_TMPDIR): what a record writes, counts rebuilt at open after a torn
 * last line, the bound on policy domains, the day rollover, refusals, and
 * appends from several threads at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "proxy/service/tlsrpt_store.h"

/* 2026-12-01 12:00:00 UTC */
#define NOON 1796126400
#define DAY (NOON / 86400)

static char dir[512];

static int setup(void **state)
{
    static int n;
    const char *t = getenv("TEST_TMPDIR");

    (void)state;
    snprintf(dir, sizeof(dir), "%s/store%d", t != NULL ? t : "/tmp", n++);
    return 0;
}

static struct tlsrpt_attempt attempt(const char *domain, int64_t time, bool success,
                                     enum tlsrpt_result result)
{
    struct tlsrpt_attempt a;

    memset(&a, 0, sizeof(a));
    a.time = time;
    a.type = TLSRPT_POLICY_STS;
    snprintf(a.domain, sizeof(a.domain), "%s", domain);
    a.success = success;
    a.result = result;
    snprintf(a.sending_ip, sizeof(a.sending_ip), "192.0.2.1");
    snprintf(a.mx_host, sizeof(a.mx_host), "mx.%s", domain);
    snprintf(a.receiving_ip, sizeof(a.receiving_ip), "2001:db8::25");
    return a;
}

static char *slurp(const char *path, size_t *len)
{
    static char buf[1 << 20];
    int fd = open(path, O_RDONLY);
    ssize_t n;

    assert_true(fd >= 0);
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n >= 0);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

static void file_of(char *out, size_t cap, int64_t day, const char *domain)
{
    char d[TLSRPT_DAY_TEXT];

    assert_true(tlsrpt_day_text(day, d));
    snprintf(out, cap, "%s/%s/%s", dir, d, domain);
}

static struct tlsrpt_store *open_store(size_t max, int64_t now)
{
    char err[256] = "";
    struct tlsrpt_store *s = tlsrpt_store_open(dir, max, now, err, sizeof(err));

    if (s == NULL)
        fail_msg("open %s: %s", dir, err);
    return s;
}

static void test_day_text(void **state)
{
    char d[TLSRPT_DAY_TEXT];

    (void)state;
    assert_true(tlsrpt_day_text(DAY, d));
    assert_string_equal(d, "2026-12-01");
    assert_true(tlsrpt_day_text(0, d));
    assert_string_equal(d, "1970-01-01");
    assert_true(tlsrpt_day_text(-1, d));
    assert_string_equal(d, "1969-12-31");
    assert_false(tlsrpt_day_text(INT64_MAX / 86400, d));
    assert_string_equal(d, "");
}

/* One record, one line in <dir>/<day>/<domain>; counts per type. */
static void test_record_and_counts(void **state)
{
    struct tlsrpt_store *s;
    struct tlsrpt_attempt a = attempt("example.net", NOON, true, 0);
    struct tlsrpt_attempt b = attempt("example.net", NOON + 1, false, TLSRPT_CERTIFICATE_EXPIRED);
    char path[1024], want[2 * TLSRPT_LINE_MAX];
    uint64_t ok, bad;
    size_t len;

    (void)state;
    s = open_store(0, NOON);
    assert_int_equal(tlsrpt_store_day(s), DAY);
    assert_int_equal(tlsrpt_record(s, &a), 0);
    assert_int_equal(tlsrpt_record(s, &b), 0);
    assert_int_equal(tlsrpt_record(s, &b), 0);
    assert_true(tlsrpt_store_counts(s, "example.net", TLSRPT_POLICY_STS, &ok, &bad));
    assert_int_equal(ok, 1);
    assert_int_equal(bad, 2);
    assert_false(tlsrpt_store_counts(s, "example.net", TLSRPT_POLICY_TLSA, &ok, &bad));
    assert_false(tlsrpt_store_counts(s, "example.org", TLSRPT_POLICY_STS, &ok, &bad));
    assert_int_equal(tlsrpt_store_domains(s), 1);

    file_of(path, sizeof(path), DAY, "example.net");
    int n = tlsrpt_line_format(&a, want, sizeof(want));
    assert_true(n > 0);
    n += tlsrpt_line_format(&b, want + n, sizeof(want) - (size_t)n);
    tlsrpt_line_format(&b, want + n, sizeof(want) - (size_t)n);
    assert_string_equal(slurp(path, &len), want);
    tlsrpt_store_close(s);

    /* Read back as the reporter does: one policy, the failure in one row. */
    struct tlsrpt_stats *st = calloc(TLSRPT_POLICY_TYPES, sizeof(*st));
    size_t np;
    uint64_t skipped;
    assert_int_equal(tlsrpt_store_load(dir, DAY, "example.net", st, &np, &skipped), 0);
    assert_int_equal(np, 1);
    assert_int_equal(skipped, 0);
    assert_int_equal(st[0].type, TLSRPT_POLICY_STS);
    assert_int_equal(st[0].success, 1);
    assert_int_equal(st[0].failure, 2);
    assert_int_equal(st[0].n, 1);
    assert_int_equal(st[0].detail[0].count, 2);
    assert_int_equal(st[0].detail[0].result, TLSRPT_CERTIFICATE_EXPIRED);
    assert_int_equal(tlsrpt_store_load(dir, DAY, "example.org", st, &np, &skipped), -ENOENT);
    assert_int_equal(tlsrpt_store_load(dir, DAY, "../x", st, &np, &skipped), -EINVAL);
    free(st);
}

/* A crash cut the last line short: open counts what parses, ends the cut
 * line so that the next record stands on its own, and the reader skips
 * exactly the cut one. */
static void test_reload_after_torn_line(void **state)
{
    struct tlsrpt_store *s;
    struct tlsrpt_attempt a = attempt("example.net", NOON, true, 0);
    struct tlsrpt_attempt b = attempt("example.net", NOON, false, TLSRPT_STARTTLS_NOT_SUPPORTED);
    char path[1024], line[TLSRPT_LINE_MAX + 1];
    uint64_t ok, bad;

    (void)state;
    s = open_store(0, NOON);
    assert_int_equal(tlsrpt_record(s, &a), 0);
    assert_int_equal(tlsrpt_record(s, &b), 0);
    tlsrpt_store_close(s);
    file_of(path, sizeof(path), DAY, "example.net");
    int n = tlsrpt_line_format(&a, line, sizeof(line));
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_int_equal(write(fd, line, (size_t)n - 9), n - 9); /* torn */
    close(fd);

    s = open_store(0, NOON + 60);
    assert_true(tlsrpt_store_counts(s, "example.net", TLSRPT_POLICY_STS, &ok, &bad));
    assert_int_equal(ok, 1);
    assert_int_equal(bad, 1);
    assert_int_equal(tlsrpt_record(s, &a), 0);
    assert_true(tlsrpt_store_counts(s, "example.net", TLSRPT_POLICY_STS, &ok, &bad));
    assert_int_equal(ok, 2);
    tlsrpt_store_close(s);

    struct tlsrpt_stats *st = calloc(TLSRPT_POLICY_TYPES, sizeof(*st));
    size_t np;
    uint64_t skipped;
    assert_int_equal(tlsrpt_store_load(dir, DAY, "example.net", st, &np, &skipped), 0);
    assert_int_equal(np, 1);
    assert_int_equal(skipped, 1);
    assert_int_equal(st[0].success, 2);
    assert_int_equal(st[0].failure, 1);
    free(st);

    /* A torn line at the very end is skipped by the reader too. */
    fd = open(path, O_WRONLY | O_APPEND);
    assert_int_equal(write(fd, "tlsrpt1 17961", 13), 13);
    close(fd);
    st = calloc(TLSRPT_POLICY_TYPES, sizeof(*st));
    assert_int_equal(tlsrpt_store_load(dir, DAY, "example.net", st, &np, &skipped), 0);
    assert_int_equal(skipped, 2);
    assert_int_equal(st[0].success + st[0].failure, 3);
    free(st);
}

static bool collect(const char *domain, void *arg)
{
    char *out = arg;

    strcat(out, domain);
    strcat(out, ";");
    return true;
}

/* At most max_domains a day: the next is dropped, counted, not written;
 * the known ones go on. The bound also holds for a reload. */
static void test_bounded_domains(void **state)
{
    struct tlsrpt_store *s;
    char name[64], path[1024], seen[512] = "";
    uint64_t ok, bad;

    (void)state;
    s = open_store(3, NOON);
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "d%d.example", i);
        struct tlsrpt_attempt a = attempt(name, NOON, true, 0);
        assert_int_equal(tlsrpt_record(s, &a), 0);
    }
    struct tlsrpt_attempt x = attempt("d3.example", NOON, true, 0);
    assert_int_equal(tlsrpt_record(s, &x), -ENOSPC);
    assert_int_equal(tlsrpt_record(s, &x), -ENOSPC);
    assert_int_equal(tlsrpt_store_dropped(s), 2);
    file_of(path, sizeof(path), DAY, "d3.example");
    assert_int_equal(access(path, F_OK), -1);
    struct tlsrpt_attempt y = attempt("d1.example", NOON, true, 0);
    assert_int_equal(tlsrpt_record(s, &y), 0);
    assert_true(tlsrpt_store_counts(s, "d1.example", TLSRPT_POLICY_STS, &ok, &bad));
    assert_int_equal(ok, 2);
    assert_int_equal(tlsrpt_store_domains(s), 3);
    tlsrpt_store_close(s);

    assert_int_equal(tlsrpt_store_walk(dir, DAY, collect, seen), 3);
    assert_non_null(strstr(seen, "d0.example;"));
    assert_non_null(strstr(seen, "d2.example;"));
    assert_null(strstr(seen, "d3.example"));

    s = open_store(2, NOON);
    assert_int_equal(tlsrpt_store_domains(s), 2);
    assert_int_equal(tlsrpt_store_dropped(s), 1);
    tlsrpt_store_close(s);
}

/* A later day starts afresh in memory; the previous day's file stays and
 * late results of it (a session that began before midnight) still go there. */
static void test_day_rollover(void **state)
{
    struct tlsrpt_store *s;
    struct tlsrpt_attempt a = attempt("example.net", NOON, true, 0);
    struct tlsrpt_attempt b = attempt("example.net", NOON + 86400, false, TLSRPT_DANE_REQUIRED);
    struct tlsrpt_attempt late = attempt("example.net", NOON + 43199, true, 0); /* 23:59:59 */
    uint64_t ok, bad;
    size_t np;
    uint64_t skipped;

    (void)state;
    s = open_store(0, NOON);
    assert_int_equal(tlsrpt_record(s, &a), 0);
    assert_int_equal(tlsrpt_record(s, &b), 0);
    assert_int_equal(tlsrpt_store_day(s), DAY + 1);
    assert_true(tlsrpt_store_counts(s, "example.net", TLSRPT_POLICY_STS, &ok, &bad));
    assert_int_equal(ok, 0);
    assert_int_equal(bad, 1);
    assert_int_equal(tlsrpt_record(s, &late), 0);
    assert_true(tlsrpt_store_counts(s, "example.net", TLSRPT_POLICY_STS, &ok, &bad));
    assert_int_equal(ok, 0);
    tlsrpt_store_close(s);

    struct tlsrpt_stats *st = calloc(TLSRPT_POLICY_TYPES, sizeof(*st));
    assert_int_equal(tlsrpt_store_load(dir, DAY, "example.net", st, &np, &skipped), 0);
    assert_int_equal(np, 1);
    assert_int_equal(st[0].success, 2);
    assert_int_equal(st[0].failure, 0);
    assert_int_equal(tlsrpt_store_load(dir, DAY + 1, "example.net", st, &np, &skipped), 0);
    assert_int_equal(st[0].failure, 1);
    assert_int_equal(st[0].detail[0].result, TLSRPT_DANE_REQUIRED);
    free(st);

    /* Opened on the next day, the store counts that day only. */
    s = open_store(0, NOON + 86400);
    assert_true(tlsrpt_store_counts(s, "example.net", TLSRPT_POLICY_STS, &ok, &bad));
    assert_int_equal(ok + bad, 1);
    tlsrpt_store_close(s);
}

/* What would not parse back, or would name another file, is not written. */
static void test_refused(void **state)
{
    struct tlsrpt_store *s;
    const char *bad[] = {"Example.NET", "../etc", ".sent", "a..b", "", "a/b", "x_y.example"};
    char err[256] = "";

    (void)state;
    s = open_store(0, NOON);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct tlsrpt_attempt a = attempt("example.net", NOON, true, 0);
        snprintf(a.domain, sizeof(a.domain), "%s", bad[i]);
        assert_int_equal(tlsrpt_record(s, &a), -EINVAL);
    }
    struct tlsrpt_attempt a = attempt("example.net", NOON, true, 0);
    snprintf(a.sending_ip, sizeof(a.sending_ip), "2001:DB8::1"); /* not canonical */
    assert_int_equal(tlsrpt_record(s, &a), -EINVAL);
    assert_int_equal(tlsrpt_store_domains(s), 0);
    assert_int_equal(tlsrpt_store_walk(dir, DAY, collect, err), 0);
    tlsrpt_store_close(s);

    /* A directory that is a file, or cannot be made. */
    char path[600];
    snprintf(path, sizeof(path), "%s/file", dir);
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    close(fd);
    assert_null(tlsrpt_store_open(path, 0, NOON, err, sizeof(err)));
    assert_non_null(strstr(err, "not a directory"));
    snprintf(path, sizeof(path), "%s/file/sub", dir);
    assert_null(tlsrpt_store_open(path, 0, NOON, err, sizeof(err)));
    assert_non_null(strstr(err, "cannot create"));
}

/* The policy's text: written when it changes (a whole new file each time),
 * read back line by line; a text out of bounds records nothing. */
static void test_policy_text(void **state)
{
    struct tlsrpt_store *s;
    struct tlsrpt_attempt a = attempt("example.net", NOON, true, 0);
    const char *lines[] = {"version: STSv1", "mode: enforce", "mx: *.example.net"};
    const char *mx[] = {"*.example.net"};
    struct tlsrpt_policy_text p = {.strings = lines, .n_strings = 3, .mx = mx, .n_mx = 1};
    struct tlsrpt_policy_loaded *got = calloc(1, sizeof(*got));
    char path[1024], d[TLSRPT_DAY_TEXT];
    struct stat st1, st2, st3;

    (void)state;
    s = open_store(0, NOON);
    assert_int_equal(tlsrpt_store_load_policy(dir, DAY, "example.net", TLSRPT_POLICY_STS, got),
                     -ENOENT);
    assert_int_equal(tlsrpt_record_policy(s, &a, &p), 0);
    tlsrpt_day_text(DAY, d);
    snprintf(path, sizeof(path), "%s/%s/.policy/example.net.sts", dir, d);
    assert_int_equal(stat(path, &st1), 0);
    /* The same text again: the file stays as it is. */
    assert_int_equal(tlsrpt_record_policy(s, &a, &p), 0);
    assert_int_equal(stat(path, &st2), 0);
    assert_int_equal(st1.st_ino, st2.st_ino);
    assert_int_equal(tlsrpt_store_load_policy(dir, DAY, "example.net", TLSRPT_POLICY_STS, got), 0);
    assert_int_equal(got->n_strings, 3);
    assert_string_equal(got->strings[2], "mx: *.example.net");
    assert_int_equal(got->n_mx, 1);
    assert_string_equal(got->mx[0], "*.example.net");
    /* A new text replaces the old one whole. */
    p.n_strings = 1;
    p.n_mx = 0;
    assert_int_equal(tlsrpt_record_policy(s, &a, &p), 0);
    assert_int_equal(stat(path, &st3), 0);
    assert_true(st3.st_ino != st1.st_ino);
    assert_int_equal(tlsrpt_store_load_policy(dir, DAY, "example.net", TLSRPT_POLICY_STS, got), 0);
    assert_int_equal(got->n_strings, 1);
    assert_int_equal(got->n_mx, 0);
    /* Not for another type; and never listed as a domain. */
    assert_int_equal(tlsrpt_store_load_policy(dir, DAY, "example.net", TLSRPT_POLICY_TLSA, got),
                     -ENOENT);
    char seen[256] = "";
    assert_int_equal(tlsrpt_store_walk(dir, DAY, collect, seen), 1);
    assert_string_equal(seen, "example.net;");
    /* A line that would forge another: refused, nothing recorded. */
    const char *bad[] = {"mode: enforce\nm evil.example"};
    struct tlsrpt_policy_text pb = {.strings = bad, .n_strings = 1};
    uint64_t ok, fail;
    assert_true(tlsrpt_store_counts(s, "example.net", TLSRPT_POLICY_STS, &ok, &fail));
    assert_int_equal(ok, 3);
    assert_int_equal(tlsrpt_record_policy(s, &a, &pb), -EINVAL);
    assert_true(tlsrpt_store_counts(s, "example.net", TLSRPT_POLICY_STS, &ok, &fail));
    assert_int_equal(ok, 3);
    pb.n_strings = TLSRPT_POLICY_LINES + 1;
    assert_int_equal(tlsrpt_record_policy(s, &a, &pb), -EINVAL);
    tlsrpt_store_close(s);
    free(got);
}

/* Creates the empty file <dir>/rel. */
static void touch(const char *rel)
{
    char p[1024];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    int fd = open(p, O_WRONLY | O_CREAT, 0640);
    assert_true(fd >= 0);
    close(fd);
}

static bool exists(const char *name)
{
    char p[1024];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* Old day folders go, with what a store and reporter put there; a folder
 * holding anything else, a recent day and names not of days stay. */
static void test_prune(void **state)
{
    char err[256];
    struct tlsrpt_store *s;

    (void)state;
    s = open_store(0, NOON);
    struct tlsrpt_attempt a = attempt("example.net", NOON - 20 * 86400, true, 0);
    const char *l[] = {"mode: testing"};
    struct tlsrpt_policy_text p = {.strings = l, .n_strings = 1};
    assert_int_equal(tlsrpt_record_policy(s, &a, &p), 0);
    a.time = NOON - 19 * 86400;
    assert_int_equal(tlsrpt_record(s, &a), 0);
    a.time = NOON - 2 * 86400;
    assert_int_equal(tlsrpt_record(s, &a), 0);
    tlsrpt_store_close(s);
    char sent[600];
    snprintf(sent, sizeof(sent), "%s/2026-11-11/.sent", dir);
    assert_int_equal(mkdir(sent, 0750), 0);
    touch("2026-11-11/.sent/example.net");
    touch("2026-11-12/README");
    snprintf(sent, sizeof(sent), "%s/2025-13-40", dir);
    assert_int_equal(mkdir(sent, 0750), 0);
    snprintf(sent, sizeof(sent), "%s/2026-1-1", dir);
    assert_int_equal(mkdir(sent, 0750), 0);

    assert_int_equal(tlsrpt_store_prune(dir, DAY - 14), 1);
    assert_false(exists("2026-11-11"));
    assert_true(exists("2026-11-12/README")); /* not ours: kept */
    assert_false(exists("2026-11-12/example.net")); /* ours: gone */
    assert_true(exists("2026-11-29/example.net"));
    assert_true(exists("2025-13-40"));
    assert_true(exists("2026-1-1"));
    assert_int_equal(tlsrpt_store_prune("/nonexistent/x", DAY), -ENOENT);
    (void)err;
}

#define THREADS 4
#define PER_THREAD 500

static void *writer(void *arg)
{
    struct tlsrpt_store *s = arg;

    for (int i = 0; i < PER_THREAD; i++) {
        struct tlsrpt_attempt a = attempt(i % 2 ? "example.net" : "example.org", NOON + i,
                                          i % 3 != 0, TLSRPT_VALIDATION_FAILURE);
        if (tlsrpt_record(s, &a) != 0)
            return (void *)1;
    }
    return NULL;
}

/* Appends of several threads never interleave within a line. */
static void test_threads(void **state)
{
    struct tlsrpt_store *s;
    pthread_t th[THREADS];
    uint64_t ok, bad, total = 0;

    (void)state;
    s = open_store(0, NOON);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, writer, s), 0);
    for (int i = 0; i < THREADS; i++) {
        void *rv;
        pthread_join(th[i], &rv);
        assert_null(rv);
    }
    for (int d = 0; d < 2; d++) {
        assert_true(tlsrpt_store_counts(s, d ? "example.net" : "example.org", TLSRPT_POLICY_STS,
                                        &ok, &bad));
        total += ok + bad;
    }
    assert_int_equal(total, THREADS * PER_THREAD);
    tlsrpt_store_close(s);

    struct tlsrpt_stats *st = calloc(TLSRPT_POLICY_TYPES, sizeof(*st));
    size_t np;
    uint64_t skipped;
    total = 0;
    for (int d = 0; d < 2; d++) {
        assert_int_equal(
            tlsrpt_store_load(dir, DAY, d ? "example.net" : "example.org", st, &np, &skipped), 0);
        assert_int_equal(skipped, 0);
        total += st[0].success + st[0].failure;
    }
    assert_int_equal(total, THREADS * PER_THREAD);
    free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_day_text, setup),
        cmocka_unit_test_setup(test_record_and_counts, setup),
        cmocka_unit_test_setup(test_reload_after_torn_line, setup),
        cmocka_unit_test_setup(test_bounded_domains, setup),
        cmocka_unit_test_setup(test_day_rollover, setup),
        cmocka_unit_test_setup(test_refused, setup),
        cmocka_unit_test_setup(test_policy_text, setup),
        cmocka_unit_test_setup(test_prune, setup),
        cmocka_unit_test_setup(test_threads, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
