/*
 * Tests of proxy/service/tlsrpt_redis.c where it is pure: the detail field
 * of a failure, and the fields of a counts hash merged back into a day's
 * statistics (several instances' fields summed, out-of-form fields
 * refused, the row bound, a field a foreign writer put there). The Redis
 * parts run against a real redis-server in tests/e2e/test_tls_rpt_fleet.py;
 * here only the counter's behaviour with Redis unreachable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/service/tlsrpt_redis.h"

static struct tlsrpt_attempt failure(const char *rip)
{
    struct tlsrpt_attempt a = {.time = 1796126400, .type = TLSRPT_POLICY_STS, .success = false};

    a.result = (enum tlsrpt_result)tlsrpt_result_parse("certificate-expired", 19);
    snprintf(a.domain, sizeof(a.domain), "example.net");
    snprintf(a.sending_ip, sizeof(a.sending_ip), "192.0.2.1");
    snprintf(a.receiving_ip, sizeof(a.receiving_ip), "%s", rip);
    return a;
}

static bool merge(struct tlsrpt_stats *s, const char *name, const char *value)
{
    return tlsrpt_redis_merge_field(s, name, strlen(name), value);
}

static void test_detail_field(void **state)
{
    char f[TLSRPT_REDIS_FIELD_MAX];
    struct tlsrpt_attempt a = failure("203.0.113.5");

    (void)state;
    assert_true(tlsrpt_redis_detail_field(&a, f));
    assert_string_equal(f, "d certificate-expired 192.0.2.1 - 203.0.113.5");
    a.success = true;
    assert_false(tlsrpt_redis_detail_field(&a, f));
    /* The longest: every field at its bound still fits. */
    a = failure("2001:db8:1:2:3:4:5:6");
    memset(a.mx_host, 'a', TLSRPT_NAME_MAX);
    a.mx_host[TLSRPT_NAME_MAX] = '\0';
    assert_true(tlsrpt_redis_detail_field(&a, f));
}

static void test_merge_sums(void **state)
{
    static struct tlsrpt_stats s;

    (void)state;
    tlsrpt_stats_init(&s, "example.net", TLSRPT_POLICY_STS, 20423);
    assert_true(merge(&s, "s", "3"));
    assert_true(merge(&s, "f", "4"));
    assert_true(merge(&s, "d certificate-expired 192.0.2.1 mx.example.net 203.0.113.5", "3"));
    assert_true(merge(&s, "d starttls-not-supported 2001:db8::1 - -", "1"));
    /* The same detail again (another hash read): one row. */
    assert_true(merge(&s, "d certificate-expired 192.0.2.1 mx.example.net 203.0.113.5", "2"));
    assert_true(merge(&s, "x", "5"));
    assert_int_equal(s.success, 3);
    assert_int_equal(s.failure, 4);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.detail[0].count, 5);
    assert_string_equal(s.detail[0].mx_host, "mx.example.net");
    assert_string_equal(s.detail[1].mx_host, "");
    assert_string_equal(s.detail[1].receiving_ip, "");
    assert_string_equal(s.detail[1].sending_ip, "2001:db8::1");
    assert_int_equal(s.details_dropped, 5);
}

static void test_merge_refuses(void **state)
{
    static struct tlsrpt_stats s;
    static const char *const bad[] = {
        "",
        "d",
        "d ",
        "s2",
        "ss",
        "d no-such-result 192.0.2.1 - -",
        "d certificate-expired 192.0.2.1 - -  ",
        "d certificate-expired 192.0.2.1 -",
        "d certificate-expired 192.0.2.1 - - extra",
        "d certificate-expired 192.0.2.1 \x01 -",
        "d certificate-expired  192.0.2.1 - -",
    };

    (void)state;
    tlsrpt_stats_init(&s, "example.net", TLSRPT_POLICY_STS, 20423);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(merge(&s, bad[i], "1"));
    assert_false(merge(&s, "s", ""));
    assert_false(merge(&s, "s", "-1"));
    assert_false(merge(&s, "s", "1x"));
    assert_false(merge(&s, "s", "99999999999999999999999"));
    assert_false(merge(&s, "s", NULL));
    /* A name no longer than the field: not read past len. */
    assert_false(tlsrpt_redis_merge_field(&s, "sx", 2, "1"));
    assert_true(tlsrpt_redis_merge_field(&s, "sx", 1, "1"));
    assert_int_equal(s.success, 1);
    assert_int_equal(s.n, 0);
    assert_int_equal(s.failure, 0);
}

static void test_merge_row_bound(void **state)
{
    static struct tlsrpt_stats s;
    char name[TLSRPT_REDIS_FIELD_MAX];

    (void)state;
    tlsrpt_stats_init(&s, "example.net", TLSRPT_POLICY_STS, 20423);
    for (int i = 0; i < TLSRPT_DETAILS_MAX + 7; i++) {
        snprintf(name, sizeof(name), "d validation-failure - - 198.51.100.%d", i + 1);
        assert_true(merge(&s, name, "2"));
    }
    assert_int_equal(s.n, TLSRPT_DETAILS_MAX);
    assert_int_equal(s.details_dropped, 14);
}

static void test_counter_redis_down(void **state)
{
    struct tlsrpt_attempt a = failure("203.0.113.5");
    /* Port 1 of loopback: nothing listens, the connect is refused at once. */
    struct tlsrpt_redis_counter *c = tlsrpt_redis_counter_start("127.0.0.1", 1);

    (void)state;
    assert_non_null(c);
    for (int i = 0; i < 5; i++)
        assert_true(tlsrpt_redis_counter_add(c, &a));
    /* Each counted as dropped: none is lost silently, none waits. */
    assert_int_equal(tlsrpt_redis_counter_stop(c, 5000), 5);
    assert_int_equal(tlsrpt_redis_counter_stop(NULL, 0), 0);
}

static void test_queue_bound(void **state)
{
    struct tlsrpt_attempt a = failure("203.0.113.5");
    struct tlsrpt_redis_counter *c = tlsrpt_redis_counter_start("127.0.0.1", 1);
    unsigned refused = 0;

    (void)state;
    assert_non_null(c);
    for (int i = 0; i < 3 * TLSRPT_REDIS_QUEUE_MAX; i++)
        refused += !tlsrpt_redis_counter_add(c, &a);
    /* Whatever the thread took meanwhile, all are dropped in the end. */
    assert_int_equal(tlsrpt_redis_counter_stop(c, 5000), 3 * TLSRPT_REDIS_QUEUE_MAX);
    (void)refused;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detail_field),       cmocka_unit_test(test_merge_sums),
        cmocka_unit_test(test_merge_refuses),      cmocka_unit_test(test_merge_row_bound),
        cmocka_unit_test(test_counter_redis_down), cmocka_unit_test(test_queue_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
