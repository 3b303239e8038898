/*
 * Unit tests for proxy/policy/mta_sts_cache.c: the cache's decisions
 * (RFC 8461 §3.3, §5.1) against a fake clock, its bookkeeping, and the
 * cache file's entry form, written and read back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/policy/mta_sts.h"

#define T0 1700000000 /* the fake clock's start */
#define DAY 86400

static struct mta_sts_policy policy(const char *text)
{
    struct mta_sts_policy p;
    const char *why = NULL;

    if (mta_sts_policy_parse(text, strlen(text), &p, &why) != MTA_STS_OK)
        fail_msg("%s: %s", text, why);
    return p;
}

static const char week_policy[] = "version: STSv1\nmode: enforce\nmx: mail.example.com\n"
                                  "mx: *.example.net\nmax_age: 604800\n";

static void test_no_entry(void **state)
{
    /* Nothing cached: a record means fetch, anything else no policy. */
    assert_int_equal(mta_sts_cache_decide(NULL, MTA_STS_LOOKUP_FOUND, "id1", T0), MTA_STS_FETCH);
    assert_int_equal(mta_sts_cache_decide(NULL, MTA_STS_LOOKUP_NONE, NULL, T0), MTA_STS_NO_POLICY);
    assert_int_equal(mta_sts_cache_decide(NULL, MTA_STS_LOOKUP_FAILED, NULL, T0),
                     MTA_STS_NO_POLICY);
    assert_false(mta_sts_cache_valid(NULL, T0));
    /* FOUND without an id is a caller's slip: treated as no record. */
    assert_int_equal(mta_sts_cache_decide(NULL, MTA_STS_LOOKUP_FOUND, "", T0), MTA_STS_NO_POLICY);
}

static void test_lifecycle(void **state)
{
    struct mta_sts_cache_entry e;
    struct mta_sts_policy p = policy(week_policy);
    int64_t now = T0;

    assert_int_equal(mta_sts_cache_store(&e, "Example.COM.", 12, "id1", &p, now), MTA_STS_OK);
    assert_string_equal(e.domain, "example.com");
    assert_string_equal(e.id, "id1");
    assert_int_equal(e.fetched, T0);
    assert_int_equal(e.expires, T0 + 604800);
    assert_true(mta_sts_cache_valid(&e, now));

    /* Same id, fresh: use it, no fetch. */
    assert_int_equal(mta_sts_cache_decide(&e, MTA_STS_LOOKUP_FOUND, "id1", now + 60), MTA_STS_USE);
    /* DNS says nothing or fails: the cached policy still applies (§3.3). */
    assert_int_equal(mta_sts_cache_decide(&e, MTA_STS_LOOKUP_NONE, NULL, now + 60), MTA_STS_USE);
    assert_int_equal(mta_sts_cache_decide(&e, MTA_STS_LOOKUP_FAILED, NULL, now + 60), MTA_STS_USE);
    /* A new id: keep applying the old policy, fetch the new one. */
    assert_int_equal(mta_sts_cache_decide(&e, MTA_STS_LOOKUP_FOUND, "id2", now + 60),
                     MTA_STS_USE_AND_REFRESH);
    /* Once a day, a proactive refresh even for the same id. */
    assert_int_equal(mta_sts_cache_decide(&e, MTA_STS_LOOKUP_FOUND, "id1", now + DAY - 1),
                     MTA_STS_USE);
    assert_int_equal(mta_sts_cache_decide(&e, MTA_STS_LOOKUP_FOUND, "id1", now + DAY),
                     MTA_STS_USE_AND_REFRESH);

    /* The refresh fails: the policy is kept, the same id is not tried again
     * for five minutes (§3.3), another id may be. */
    now += DAY;
    mta_sts_cache_fetch_failed(&e, "id1", now);
    assert_true(mta_sts_cache_valid(&e, now));
    assert_int_equal(mta_sts_cache_decide(&e, MTA_STS_LOOKUP_FOUND, "id1", now + 299), MTA_STS_USE);
    assert_int_equal(mta_sts_cache_decide(&e, MTA_STS_LOOKUP_FOUND, "id3", now + 1),
                     MTA_STS_USE_AND_REFRESH);
    assert_int_equal(mta_sts_cache_decide(&e, MTA_STS_LOOKUP_FOUND, "id1", now + 300),
                     MTA_STS_USE_AND_REFRESH);

    /* Up to max_age after the last successful fetch, then gone. */
    assert_true(mta_sts_cache_valid(&e, T0 + 604799));
    assert_false(mta_sts_cache_valid(&e, T0 + 604800));
    assert_int_equal(mta_sts_cache_decide(&e, MTA_STS_LOOKUP_NONE, NULL, T0 + 604800),
                     MTA_STS_NO_POLICY);
    assert_int_equal(mta_sts_cache_decide(&e, MTA_STS_LOOKUP_FAILED, NULL, T0 + 604800),
                     MTA_STS_NO_POLICY);
    assert_int_equal(mta_sts_cache_decide(&e, MTA_STS_LOOKUP_FOUND, "id1", T0 + 604800),
                     MTA_STS_FETCH);
    /* Expired and the fetch just failed: no policy and no hammering. */
    mta_sts_cache_fetch_failed(&e, "id1", T0 + 604800);
    assert_int_equal(mta_sts_cache_decide(&e, MTA_STS_LOOKUP_FOUND, "id1", T0 + 604801),
                     MTA_STS_NO_POLICY);
    assert_int_equal(mta_sts_cache_decide(&e, MTA_STS_LOOKUP_FOUND, "id1", T0 + 604800 + 300),
                     MTA_STS_FETCH);

    /* A successful refetch restarts the lifetime and forgets the failure. */
    now = T0 + 604800 + 300;
    assert_int_equal(mta_sts_cache_store(&e, "example.com", 11, "id1", &p, now), MTA_STS_OK);
    assert_int_equal(e.failed_at, 0);
    assert_int_equal(e.expires, now + 604800);
    assert_int_equal(mta_sts_cache_decide(&e, MTA_STS_LOOKUP_FOUND, "id1", now + 1), MTA_STS_USE);
}

static void test_short_policy(void **state)
{
    struct mta_sts_cache_entry e;
    struct mta_sts_policy p = policy("version: STSv1\nmode: testing\nmx: a.example\nmax_age: 3600");

    /* Shorter than two days: refreshed at half its life. */
    assert_int_equal(mta_sts_cache_store(&e, "a.example", 9, "x", &p, T0), MTA_STS_OK);
    assert_int_equal(mta_sts_cache_decide(&e, MTA_STS_LOOKUP_FOUND, "x", T0 + 1799), MTA_STS_USE);
    assert_int_equal(mta_sts_cache_decide(&e, MTA_STS_LOOKUP_FOUND, "x", T0 + 1800),
                     MTA_STS_USE_AND_REFRESH);
    assert_int_equal(mta_sts_cache_decide(&e, MTA_STS_LOOKUP_FOUND, "x", T0 + 3600), MTA_STS_FETCH);

    /* max_age 0: never valid once stored (the policy asks not to be cached). */
    p = policy("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 0");
    assert_int_equal(mta_sts_cache_store(&e, "a.example", 9, "x", &p, T0), MTA_STS_OK);
    assert_false(mta_sts_cache_valid(&e, T0));

    /* A clock that went back does not expire a policy nor block retries. */
    p = policy(week_policy);
    assert_int_equal(mta_sts_cache_store(&e, "a.example", 9, "x", &p, T0), MTA_STS_OK);
    assert_int_equal(mta_sts_cache_decide(&e, MTA_STS_LOOKUP_FOUND, "x", T0 - 1000), MTA_STS_USE);
    mta_sts_cache_fetch_failed(&e, "y", T0);
    assert_int_equal(mta_sts_cache_decide(&e, MTA_STS_LOOKUP_FOUND, "y", T0 - 10),
                     MTA_STS_USE_AND_REFRESH);

    /* Store refuses what the file could not hold. */
    assert_int_equal(mta_sts_cache_store(&e, "*.a.example", 11, "x", &p, T0), MTA_STS_ERR);
    assert_int_equal(mta_sts_cache_store(&e, "a..example", 10, "x", &p, T0), MTA_STS_ERR);
    assert_int_equal(mta_sts_cache_store(&e, "a.example", 9, "x y", &p, T0), MTA_STS_ERR);
    assert_int_equal(mta_sts_cache_store(&e, "a.example", 9, "", &p, T0), MTA_STS_ERR);
    assert_string_equal(mta_sts_action_str(MTA_STS_USE_AND_REFRESH), "use-and-refresh");
}

static void test_file_roundtrip(void **state)
{
    static struct mta_sts_cache_entry e, back;
    static char buf[MTA_STS_CACHE_TEXT_MAX];
    struct mta_sts_policy p = policy(week_policy);
    size_t used;
    const char *why = NULL;
    int n;

    assert_int_equal(mta_sts_cache_store(&e, "example.com", 11, "20160831085700Z", &p, T0),
                     MTA_STS_OK);
    n = mta_sts_cache_format(&e, buf, sizeof(buf));
    assert_true(n > 0);
    assert_string_equal(buf, "mta-sts-cache 1\ndomain example.com\nid 20160831085700Z\n"
                             "fetched 1700000000\nexpires 1700604800\nmode enforce\n"
                             "max_age 604800\nmx mail.example.com\nmx *.example.net\nend\n");
    if (mta_sts_cache_parse(buf, (size_t)n, &back, &used, &why) != MTA_STS_OK)
        fail_msg("%s", why);
    assert_int_equal(used, (size_t)n);
    assert_string_equal(back.domain, e.domain);
    assert_string_equal(back.id, e.id);
    assert_int_equal(back.fetched, e.fetched);
    assert_int_equal(back.expires, e.expires);
    assert_int_equal(back.policy.mode, e.policy.mode);
    assert_int_equal(back.policy.max_age, e.policy.max_age);
    assert_int_equal(back.policy.n_mx, 2);
    assert_string_equal(back.policy.mx[1], "*.example.net");
    assert_true(back.has_policy);

    /* Exactly the buffer it needs, and one octet less. */
    assert_int_equal(mta_sts_cache_format(&e, buf, (size_t)n + 1), n);
    assert_int_equal(mta_sts_cache_format(&e, buf, (size_t)n), MTA_STS_ERR_SPACE);
    assert_int_equal(mta_sts_cache_format(&e, buf, 10), MTA_STS_ERR_SPACE);

    /* Two entries in one file read back one after the other. */
    static char two[2 * MTA_STS_CACHE_TEXT_MAX];
    struct mta_sts_policy none = policy("version: STSv1\nmode: none\nmax_age: 86400\n");
    n = mta_sts_cache_format(&e, two, sizeof(two));
    assert_int_equal(mta_sts_cache_store(&e, "b.example", 9, "n1", &none, T0 + 5), MTA_STS_OK);
    n += mta_sts_cache_format(&e, two + n, sizeof(two) - (size_t)n);
    assert_int_equal(mta_sts_cache_parse(two, (size_t)n, &back, &used, NULL), MTA_STS_OK);
    assert_string_equal(back.domain, "example.com");
    assert_int_equal(mta_sts_cache_parse(two + used, (size_t)n - used, &back, &used, NULL),
                     MTA_STS_OK);
    assert_string_equal(back.domain, "b.example");
    assert_int_equal(back.policy.mode, MTA_STS_MODE_NONE);
    assert_int_equal(back.policy.n_mx, 0);

    /* A cut-short entry (any prefix) never parses. */
    n = mta_sts_cache_format(&back, buf, sizeof(buf));
    for (int cut = 0; cut < n; cut++)
        assert_int_equal(mta_sts_cache_parse(buf, (size_t)cut, &back, &used, NULL), MTA_STS_ERR);

    e.has_policy = false;
    assert_int_equal(mta_sts_cache_format(&e, buf, sizeof(buf)), MTA_STS_ERR);
}

static void test_file_rejects(void **state)
{
#define HEAD "mta-sts-cache 1\ndomain a.example\nid x1\n"
#define TIMES "fetched 100\nexpires 200\n"
    static const char *const bad[] = {
        "mta-sts-cache 2\ndomain a.example\nid x1\n" TIMES
        "mode enforce\nmax_age 100\nmx a.example\nend\n",
        "mta-sts-cache 1\ndomain A.example\nid x1\n" TIMES
        "mode enforce\nmax_age 100\nmx a.example\nend\n",
        "mta-sts-cache 1\ndomain *.example\nid x1\n" TIMES
        "mode enforce\nmax_age 100\nmx a.example\nend\n",
        "mta-sts-cache 1\ndomain a.example\nid x-1\n" TIMES
        "mode enforce\nmax_age 100\nmx a.example\nend\n",
        "mta-sts-cache 1\ndomain a.example\nid \n" TIMES
        "mode enforce\nmax_age 100\nmx a.example\nend\n",
        HEAD "fetched 0100\nexpires 200\nmode enforce\nmax_age 100\nmx a.example\nend\n",
        HEAD "fetched -1\nexpires 200\nmode enforce\nmax_age 100\nmx a.example\nend\n",
        HEAD "fetched 100\nexpires 201\nmode enforce\nmax_age 100\nmx a.example\nend\n",
        HEAD "fetched 100\nexpires 99\nmode enforce\nmax_age 100\nmx a.example\nend\n",
        HEAD
        "fetched 100\nexpires 1234567890123456789\nmode enforce\nmax_age 100\nmx a.example\nend\n",
        HEAD TIMES "mode Enforce\nmax_age 100\nmx a.example\nend\n",
        HEAD TIMES "mode enforce\nmax_age 31557601\nmx a.example\nend\n",
        HEAD TIMES "mode enforce\nmax_age 100\nend\n", /* no mx */
        HEAD TIMES "mode enforce\nmax_age 100\nmx A.example\nend\n",
        HEAD TIMES "mode enforce\nmax_age 100\nmx a.example\nmx a.example\nend\n",
        HEAD TIMES "mode enforce\nmax_age 100\nmx a..example\nend\n",
        HEAD TIMES "mode enforce\nmax_age 100\nmx a.example\nextra 1\nend\n",
        HEAD TIMES "mode enforce\nmax_age 100\nmx a.example\nend", /* no LF */
        HEAD TIMES "mode enforce\nmax_age 100\nmx a.example\r\nend\n",
        HEAD TIMES "mode  enforce\nmax_age 100\nmx a.example\nend\n",
        HEAD TIMES "max_age 100\nmode enforce\nmx a.example\nend\n", /* order is fixed */
        "",
    };
    static const char good[] = HEAD TIMES "mode enforce\nmax_age 100\nmx a.example\nend\nmore";
    struct mta_sts_cache_entry e;
    size_t used;
    const char *why;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        if (mta_sts_cache_parse(bad[i], strlen(bad[i]), &e, &used, &why) != MTA_STS_ERR)
            fail_msg("row %zu accepted:\n%s", i, bad[i]);
        assert_non_null(why);
        assert_int_equal(used, 0);
    }
    /* A NUL inside the id is no end of it (found by mta_sts_fuzz). */
    static const char nul_id[] = "mta-sts-cache 1\ndomain a.example\nid x\0001\n" TIMES
                                 "mode enforce\nmax_age 100\nmx a.example\nend\n";
    assert_int_equal(mta_sts_cache_parse(nul_id, sizeof(nul_id) - 1, &e, &used, &why), MTA_STS_ERR);
    assert_int_equal(mta_sts_cache_parse(good, sizeof(good) - 1, &e, &used, &why), MTA_STS_OK);
    assert_int_equal(used, sizeof(good) - 1 - 4);
    assert_int_equal(e.failed_at, 0);
#undef HEAD
#undef TIMES
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_entry),     cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_short_policy), cmocka_unit_test(test_file_roundtrip),
        cmocka_unit_test(test_file_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
