/*
 * Tests of proxy/service/tlsrpt_reporter.c: the thread started on a real
 * directory looks at yesterday soon after start and handles it (here a
 * domain whose file has no result that parses: done without any lookup,
 * marked sent), leaves today alone, prunes a folder past keeping, and stops
 * cleanly; settings compare as they should for a reload.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "proxy/policy/tlsrpt.h"
#include "proxy/service/tlsrpt_reporter.h"
#include "proxy/service/tlsrpt_store.h"

static char dir[512];

static void put(int64_t day, const char *rel, const char *text)
{
    char d[TLSRPT_DAY_TEXT], p[1024];

    assert_true(tlsrpt_day_text(day, d));
    snprintf(p, sizeof(p), "%s/%s", dir, d);
    mkdir(p, 0750);
    snprintf(p, sizeof(p), "%s/%s/%s", dir, d, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static bool exists(int64_t day, const char *rel)
{
    char d[TLSRPT_DAY_TEXT], p[1024];

    tlsrpt_day_text(day, d);
    snprintf(p, sizeof(p), "%s/%s%s%s", dir, d, rel[0] ? "/" : "", rel);
    return access(p, F_OK) == 0;
}

static void test_schedule(void **state)
{
    const char *t = getenv("TEST_TMPDIR");
    struct resolver_options ro = {.dnssec = RESOLVER_DNSSEC_OFF};
    struct tlsrpt_reporter_options o = {.organization = "Example",
                                        .contact = "tlsrpt@example.org",
                                        .resolver = &ro,
                                        .interval_s = 1,
                                        .max_delay_s = 1,
                                        .first_ms = 50};
    char err[256] = "";
    int64_t today = tlsrpt_day((int64_t)time(NULL));

    (void)state;
    snprintf(dir, sizeof(dir), "%s/reporter", t != NULL ? t : "/tmp");
    mkdir(dir, 0750);
    o.directory = dir;
    /* Results that do not parse: nothing to report, no lookup needed. */
    put(today - 1, "example.net", "not a result line\n");
    put(today, "example.net", "not a result line\n");
    put(today - 30, "example.net", "old\n");

    struct tlsrpt_reporter *r = tlsrpt_reporter_start(&o, err, sizeof(err));
    if (r == NULL)
        fail_msg("start: %s", err);
    assert_true(tlsrpt_reporter_same(r, &o));
    struct tlsrpt_reporter_options other = o;
    other.contact = "other@example.org";
    assert_false(tlsrpt_reporter_same(r, &other));

    /* Within 1 s of start (plus the random delay of at most a second past
     * midnight, which has long passed unless this runs at 00:00:01). */
    bool done = false;
    for (int i = 0; i < 100 && !done; i++) {
        usleep(50 * 1000);
        done = exists(today - 1, ".sent/example.net");
    }
    tlsrpt_reporter_stop(r);
    assert_true(done);
    assert_false(exists(today, ".sent/example.net")); /* today is not over */
    assert_false(exists(today - 30, ""));             /* past keeping */
    assert_true(exists(today - 1, "example.net"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
