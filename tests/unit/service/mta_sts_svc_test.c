/*
 * Unit tests for proxy/service/mta_sts_svc.c: the shared cache's answers
 * over time (a fake clock), its bound, and its file (written, read back,
 * corrupt entries skipped with FILE:LINE warnings, the debounced writer).
 * The loop side (mta_sts_get.c, coalescing) runs against real DNS and
 * HTTPS in tests/e2e/test_mta_sts_svc.py.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <pthread.h>

#include "proxy/obs/log.h"
#include "proxy/service/mta_sts_svc.h"

#define T0 1700000000
#define RECHECK 300

static int64_t fake_now;

static int64_t fake_clock(void *arg)
{
    return fake_now;
}

static struct mta_sts_policy *policy(const char *text)
{
    static struct mta_sts_policy p;
    const char *why = NULL;

    if (mta_sts_policy_parse(text, strlen(text), &p, &why) != MTA_STS_OK)
        fail_msg("%s: %s", text, why);
    return &p;
}

static const char week[] = "version: STSv1\nmode: enforce\nmx: mx.example.net\nmax_age: 604800\n";
static const char week2[] = "version: STSv1\nmode: testing\nmx: mx2.example.net\nmax_age: 604800\n";

static char tmpdir[512];

static const char *path(const char *name)
{
    static char p[600];
    const char *base = getenv("TEST_TMPDIR");

    snprintf(tmpdir, sizeof(tmpdir), "%s", base != NULL ? base : "/tmp");
    snprintf(p, sizeof(p), "%s/%s", tmpdir, name);
    return p;
}

static struct mta_sts_svc *svc_new(const char *file, size_t max, unsigned delay_ms)
{
    struct mta_sts_svc_options o = {
        .cache_file = file,
        .max_entries = max,
        .txt_recheck = RECHECK,
        .save_delay_ms = delay_ms,
        .clock = fake_clock,
    };
    char err[512] = "";
    struct mta_sts_svc *svc = mta_sts_svc_new(&o, err, sizeof(err));

    if (svc == NULL)
        fail_msg("mta_sts_svc_new: %s", err);
    return svc;
}

/* One delivery's slow path: the TXT lookup says (lookup, id); a fetch, when
 * asked for, returns body (NULL: fails). Returns the answer; *fetched says
 * whether a fetch was asked for. */
static struct mta_sts_answer deliver(struct mta_sts_svc *svc, const char *domain,
                                     enum mta_sts_lookup lookup, const char *id, const char *body,
                                     bool *fetched)
{
    struct mta_sts_answer a;
    enum mta_sts_next next = mta_sts_svc_txt(svc, domain, lookup, id, fake_now, &a);

    *fetched = next != MTA_STS_NEXT_DONE;
    if (next == MTA_STS_NEXT_REFRESH)
        mta_sts_answer_release(&a); /* the cached policy applied meanwhile */
    if (next != MTA_STS_NEXT_DONE)
        mta_sts_svc_fetched(svc, domain, id, body != NULL ? policy(body) : NULL,
                            body != NULL ? MTA_STS_FETCH_OK : MTA_STS_FETCH_ERROR,
                            body != NULL ? "fetched" : "connect", fake_now, &a);
    return a;
}

static const char *mx_of(const struct mta_sts_answer *a)
{
    assert_non_null(a->policy);
    return a->policy->mx[0];
}

static void test_first_contact_then_warm(void **state)
{
    struct mta_sts_svc *svc = svc_new(NULL, 0, 0);
    struct mta_sts_answer a;
    bool fetched;

    fake_now = T0;
    assert_false(mta_sts_svc_peek(svc, "example.net", fake_now, &a));
    a = deliver(svc, "example.net", MTA_STS_LOOKUP_FOUND, "id1", week, &fetched);
    assert_true(fetched);
    assert_int_equal(a.result, MTA_STS_RESULT_POLICY);
    assert_int_equal(a.fetch_error, MTA_STS_FETCH_OK);
    assert_string_equal(mx_of(&a), "mx.example.net");
    mta_sts_answer_release(&a);

    /* Warm: answered from memory within the grace period. */
    fake_now = T0 + RECHECK - 1;
    assert_true(mta_sts_svc_peek(svc, "example.net", fake_now, &a));
    assert_int_equal(a.result, MTA_STS_RESULT_POLICY);
    assert_string_equal(a.why, "cached");
    mta_sts_answer_release(&a);

    /* After it the TXT id is checked; unchanged, no fetch, and the grace
     * starts again. */
    fake_now = T0 + RECHECK;
    assert_false(mta_sts_svc_peek(svc, "example.net", fake_now, &a));
    a = deliver(svc, "example.net", MTA_STS_LOOKUP_FOUND, "id1", week, &fetched);
    assert_false(fetched);
    assert_int_equal(a.result, MTA_STS_RESULT_POLICY);
    mta_sts_answer_release(&a);
    assert_true(mta_sts_svc_peek(svc, "example.net", fake_now + RECHECK - 1, &a));
    mta_sts_answer_release(&a);
    mta_sts_svc_unref(svc);
}

static void test_id_change_and_refresh(void **state)
{
    struct mta_sts_svc *svc = svc_new(NULL, 0, 0);
    struct mta_sts_answer a;
    bool fetched;

    fake_now = T0;
    a = deliver(svc, "example.net", MTA_STS_LOOKUP_FOUND, "id1", week, &fetched);
    mta_sts_answer_release(&a);

    /* A new id: the cached policy applies to this delivery and the new
     * one is fetched. */
    fake_now += RECHECK;
    enum mta_sts_next next =
        mta_sts_svc_txt(svc, "example.net", MTA_STS_LOOKUP_FOUND, "id2", fake_now, &a);
    assert_int_equal(next, MTA_STS_NEXT_REFRESH);
    assert_string_equal(mx_of(&a), "mx.example.net");
    struct mta_sts_snapshot *old = a.policy; /* held across the swap */
    /* While the new policy is being fetched, deliveries take the fast path
     * with the old one rather than wait for the fetch. */
    assert_true(mta_sts_svc_peek(svc, "example.net", fake_now + 1, &a));
    assert_string_equal(mx_of(&a), "mx.example.net");
    mta_sts_answer_release(&a);
    mta_sts_svc_fetched(svc, "example.net", "id2", policy(week2), MTA_STS_FETCH_OK, "fetched",
                        fake_now, &a);
    assert_string_equal(mx_of(&a), "mx2.example.net");
    assert_string_equal(old->mx[0], "mx.example.net");
    mta_sts_snapshot_unref(old);
    mta_sts_answer_release(&a);

    /* The proactive refresh, once a day, with the id unchanged. */
    fake_now += 86400;
    a = deliver(svc, "example.net", MTA_STS_LOOKUP_FOUND, "id2", week2, &fetched);
    assert_true(fetched);
    mta_sts_answer_release(&a);
    mta_sts_svc_unref(svc);
}

static void test_failed_refresh_keeps_policy(void **state)
{
    struct mta_sts_svc *svc = svc_new(NULL, 0, 0);
    struct mta_sts_answer a;
    bool fetched;

    fake_now = T0;
    a = deliver(svc, "example.net", MTA_STS_LOOKUP_FOUND, "id1", week, &fetched);
    mta_sts_answer_release(&a);
    fake_now += RECHECK;
    a = deliver(svc, "example.net", MTA_STS_LOOKUP_FOUND, "id2", NULL, &fetched);
    assert_true(fetched);
    assert_int_equal(a.result, MTA_STS_RESULT_POLICY);
    assert_int_equal(a.fetch_error, MTA_STS_FETCH_ERROR);
    assert_string_equal(mx_of(&a), "mx.example.net");
    mta_sts_answer_release(&a);

    /* §3.3: no new attempt for id2 within five minutes. */
    fake_now += 60;
    a = deliver(svc, "example.net", MTA_STS_LOOKUP_FOUND, "id2", week2, &fetched);
    assert_false(fetched);
    assert_string_equal(mx_of(&a), "mx.example.net");
    mta_sts_answer_release(&a);
    fake_now += MTA_STS_RETRY_SECS;
    a = deliver(svc, "example.net", MTA_STS_LOOKUP_FOUND, "id2", week2, &fetched);
    assert_true(fetched);
    assert_string_equal(mx_of(&a), "mx2.example.net");
    mta_sts_answer_release(&a);

    /* DNS failing or the record gone: the valid policy still applies. */
    fake_now += RECHECK;
    a = deliver(svc, "example.net", MTA_STS_LOOKUP_FAILED, NULL, NULL, &fetched);
    assert_int_equal(a.result, MTA_STS_RESULT_POLICY);
    mta_sts_answer_release(&a);
    assert_false(mta_sts_svc_peek(svc, "example.net", fake_now, &a)); /* asks again */
    a = deliver(svc, "example.net", MTA_STS_LOOKUP_NONE, NULL, NULL, &fetched);
    assert_int_equal(a.result, MTA_STS_RESULT_POLICY);
    mta_sts_answer_release(&a);

    /* Expired: the record gone means no policy at last. */
    fake_now += 604800;
    a = deliver(svc, "example.net", MTA_STS_LOOKUP_NONE, NULL, NULL, &fetched);
    assert_int_equal(a.result, MTA_STS_RESULT_NONE);
    assert_null(a.policy);
    mta_sts_svc_unref(svc);
}

static void test_first_fetch_fails(void **state)
{
    struct mta_sts_svc *svc = svc_new(NULL, 0, 0);
    struct mta_sts_answer a;
    bool fetched;

    fake_now = T0;
    a = deliver(svc, "example.net", MTA_STS_LOOKUP_FOUND, "id1", NULL, &fetched);
    assert_true(fetched);
    assert_int_equal(a.result, MTA_STS_RESULT_TEMPFAIL);
    assert_int_equal(a.fetch_error, MTA_STS_FETCH_ERROR);
    assert_null(a.policy);
    assert_string_equal(a.why, "connect");
    fake_now += 10;
    a = deliver(svc, "example.net", MTA_STS_LOOKUP_FOUND, "id1", week, &fetched);
    assert_false(fetched);
    assert_int_equal(a.result, MTA_STS_RESULT_TEMPFAIL);
    assert_int_equal(a.fetch_error, MTA_STS_FETCH_ERROR);
    /* A new id may be tried at once. */
    a = deliver(svc, "example.net", MTA_STS_LOOKUP_FOUND, "id2", week, &fetched);
    assert_true(fetched);
    assert_int_equal(a.result, MTA_STS_RESULT_POLICY);
    assert_int_equal(a.fetch_error, MTA_STS_FETCH_OK);
    mta_sts_answer_release(&a);
    mta_sts_svc_unref(svc);
}

/* How a fetch failed is kept with the failure: the retry spacing's answers
 * say it too (TLS-RPT's sts-policy-invalid, sts-webpki-invalid), and a
 * failed refresh under a valid policy as well. */
static void test_fetch_error_kinds(void **state)
{
    struct mta_sts_svc *svc = svc_new(NULL, 0, 0);
    struct mta_sts_answer a;
    bool fetched;

    fake_now = T0;
    assert_int_equal(mta_sts_svc_txt(svc, "bad.example", MTA_STS_LOOKUP_FOUND, "id1", fake_now, &a),
                     MTA_STS_NEXT_FETCH);
    mta_sts_svc_fetched(svc, "bad.example", "id1", NULL, MTA_STS_FETCH_INVALID, "no version",
                        fake_now, &a);
    assert_int_equal(a.result, MTA_STS_RESULT_TEMPFAIL);
    assert_int_equal(a.fetch_error, MTA_STS_FETCH_INVALID);
    fake_now += 10;
    a = deliver(svc, "bad.example", MTA_STS_LOOKUP_FOUND, "id1", week, &fetched);
    assert_false(fetched);
    assert_int_equal(a.result, MTA_STS_RESULT_TEMPFAIL);
    assert_int_equal(a.fetch_error, MTA_STS_FETCH_INVALID);
    assert_string_equal(a.why, "fetch failed recently");

    /* A policy with no failure behind it says OK; its refresh failing on
     * the certificate keeps it, and says so. */
    a = deliver(svc, "good.example", MTA_STS_LOOKUP_FOUND, "id1", week, &fetched);
    assert_int_equal(a.fetch_error, MTA_STS_FETCH_OK);
    mta_sts_answer_release(&a);
    fake_now += RECHECK;
    assert_int_equal(mta_sts_svc_txt(svc, "good.example", MTA_STS_LOOKUP_FOUND, "id2", fake_now, &a),
                     MTA_STS_NEXT_REFRESH);
    mta_sts_answer_release(&a);
    mta_sts_svc_fetched(svc, "good.example", "id2", NULL, MTA_STS_FETCH_WEBPKI, "certificate",
                        fake_now, &a);
    assert_int_equal(a.result, MTA_STS_RESULT_POLICY);
    assert_int_equal(a.fetch_error, MTA_STS_FETCH_WEBPKI);
    mta_sts_answer_release(&a);

    /* A failure with no kind given is a fetch error. */
    assert_int_equal(mta_sts_svc_txt(svc, "odd.example", MTA_STS_LOOKUP_FOUND, "id1", fake_now, &a),
                     MTA_STS_NEXT_FETCH);
    mta_sts_svc_fetched(svc, "odd.example", "id1", NULL, MTA_STS_FETCH_OK, "connect", fake_now, &a);
    assert_int_equal(a.fetch_error, MTA_STS_FETCH_ERROR);
    mta_sts_svc_unref(svc);
}

static void test_one_fetch_across_loops(void **state)
{
    struct mta_sts_svc *svc = svc_new(NULL, 0, 0);
    struct mta_sts_answer a;

    fake_now = T0;
    /* Loop A fetches; loop B, asking meanwhile, waits for it. */
    assert_int_equal(mta_sts_svc_txt(svc, "example.net", MTA_STS_LOOKUP_FOUND, "id1", fake_now, &a),
                     MTA_STS_NEXT_FETCH);
    assert_int_equal(mta_sts_svc_txt(svc, "example.net", MTA_STS_LOOKUP_FOUND, "id1", fake_now, &a),
                     MTA_STS_NEXT_WAIT);
    assert_int_equal(mta_sts_svc_poll(svc, "example.net", fake_now + 1, &a), MTA_STS_NEXT_WAIT);
    mta_sts_svc_fetched(svc, "example.net", "id1", policy(week), MTA_STS_FETCH_OK, "fetched",
                        fake_now + 2, &a);
    mta_sts_answer_release(&a);
    assert_int_equal(mta_sts_svc_poll(svc, "example.net", fake_now + 2, &a), MTA_STS_NEXT_DONE);
    assert_int_equal(a.result, MTA_STS_RESULT_POLICY);
    assert_int_equal(a.fetch_error, MTA_STS_FETCH_OK);
    mta_sts_answer_release(&a);

    /* A refresh under way elsewhere: the cached policy, no second fetch. */
    fake_now += RECHECK;
    assert_int_equal(mta_sts_svc_txt(svc, "example.net", MTA_STS_LOOKUP_FOUND, "id2", fake_now, &a),
                     MTA_STS_NEXT_REFRESH);
    mta_sts_answer_release(&a);
    assert_int_equal(mta_sts_svc_txt(svc, "example.net", MTA_STS_LOOKUP_FOUND, "id2", fake_now, &a),
                     MTA_STS_NEXT_DONE);
    assert_string_equal(mx_of(&a), "mx.example.net");
    mta_sts_answer_release(&a);

    /* A first fetch that fails is the waiters' failure too. */
    assert_int_equal(mta_sts_svc_txt(svc, "new.example", MTA_STS_LOOKUP_FOUND, "id1", fake_now, &a),
                     MTA_STS_NEXT_FETCH);
    assert_int_equal(mta_sts_svc_txt(svc, "new.example", MTA_STS_LOOKUP_FOUND, "id1", fake_now, &a),
                     MTA_STS_NEXT_WAIT);
    mta_sts_svc_fetched(svc, "new.example", "id1", NULL, MTA_STS_FETCH_WEBPKI, "certificate",
                        fake_now, &a);
    assert_int_equal(mta_sts_svc_poll(svc, "new.example", fake_now, &a), MTA_STS_NEXT_DONE);
    assert_int_equal(a.result, MTA_STS_RESULT_TEMPFAIL);
    assert_int_equal(a.fetch_error, MTA_STS_FETCH_WEBPKI); /* as it failed, for TLS-RPT */

    /* A fetch abandoned (its loop closed), or one that overran its hold:
     * the waiter fetches itself. */
    assert_int_equal(mta_sts_svc_txt(svc, "b.example", MTA_STS_LOOKUP_FOUND, "id1", fake_now, &a),
                     MTA_STS_NEXT_FETCH);
    mta_sts_svc_abandon(svc, "b.example");
    assert_int_equal(mta_sts_svc_poll(svc, "b.example", fake_now, &a), MTA_STS_NEXT_FETCH);
    assert_int_equal(mta_sts_svc_poll(svc, "b.example", fake_now + 1, &a), MTA_STS_NEXT_WAIT);
    assert_int_equal(mta_sts_svc_poll(svc, "b.example", fake_now + 1 + MTA_STS_SVC_FETCH_HOLD, &a),
                     MTA_STS_NEXT_FETCH);
    mta_sts_svc_unref(svc);
}

static void test_no_record_cached_negatively(void **state)
{
    struct mta_sts_svc *svc = svc_new(NULL, 0, 0);
    struct mta_sts_answer a;
    bool fetched;

    fake_now = T0;
    a = deliver(svc, "plain.example", MTA_STS_LOOKUP_NONE, NULL, NULL, &fetched);
    assert_false(fetched);
    assert_int_equal(a.result, MTA_STS_RESULT_NONE);
    assert_true(mta_sts_svc_peek(svc, "plain.example", fake_now + RECHECK - 1, &a));
    assert_int_equal(a.result, MTA_STS_RESULT_NONE);
    assert_false(mta_sts_svc_peek(svc, "plain.example", fake_now + RECHECK, &a));
    /* A failed lookup is not cached at all. */
    a = deliver(svc, "dark.example", MTA_STS_LOOKUP_FAILED, NULL, NULL, &fetched);
    assert_int_equal(a.result, MTA_STS_RESULT_TEMPFAIL);
    assert_int_equal(a.fetch_error, MTA_STS_FETCH_OK);
    assert_false(mta_sts_svc_peek(svc, "dark.example", fake_now, &a));
    mta_sts_svc_unref(svc);
}

static void test_bounded_lru(void **state)
{
    struct mta_sts_svc *svc = svc_new(NULL, 3, 0);
    struct mta_sts_answer a;
    struct mta_sts_svc_stats st;
    bool fetched;
    const char *d[] = {"a.example", "b.example", "c.example", "d.example"};

    fake_now = T0;
    for (int i = 0; i < 3; i++) {
        a = deliver(svc, d[i], MTA_STS_LOOKUP_FOUND, "id1", week, &fetched);
        mta_sts_answer_release(&a);
    }
    /* a is used again, so b is the least recently used. */
    assert_true(mta_sts_svc_peek(svc, "a.example", fake_now, &a));
    mta_sts_answer_release(&a);
    a = deliver(svc, d[3], MTA_STS_LOOKUP_FOUND, "id1", week, &fetched);
    mta_sts_answer_release(&a);
    mta_sts_svc_stats(svc, &st);
    assert_int_equal(st.entries, 3);
    assert_int_equal(st.policies, 3);
    assert_int_equal(st.evictions, 1);
    assert_true(mta_sts_svc_peek(svc, "a.example", fake_now, &a));
    mta_sts_answer_release(&a);
    assert_false(mta_sts_svc_peek(svc, "b.example", fake_now, &a));
    mta_sts_svc_unref(svc);
}

static void test_snapshot_matching(void **state)
{
    struct mta_sts_svc *svc = svc_new(NULL, 0, 0);
    struct mta_sts_answer a;
    bool fetched;

    fake_now = T0;
    a = deliver(svc, "example.net", MTA_STS_LOOKUP_FOUND, "id1",
                "version: STSv1\nmode: enforce\nmx: mx.example.net\nmx: *.backup.example\n"
                "max_age: 604800\n",
                &fetched);
    assert_int_equal(a.policy->n_mx, 2);
    assert_int_equal(a.policy->mode, MTA_STS_MODE_ENFORCE);
    assert_int_equal(a.policy->max_age, 604800);
    assert_string_equal(a.policy->domain, "example.net");
    assert_string_equal(a.policy->id, "id1");
    assert_true(mta_sts_snapshot_allows(a.policy, "MX.example.net.", 15));
    assert_true(mta_sts_snapshot_allows(a.policy, "b1.backup.example", 17));
    assert_false(mta_sts_snapshot_allows(a.policy, "a.b1.backup.example", 19));
    assert_false(mta_sts_snapshot_allows(a.policy, "mx.example.org", 14));
    mta_sts_answer_release(&a);
    mta_sts_svc_unref(svc);
}

static void test_due_for_refresh(void **state)
{
    struct mta_sts_svc *svc = svc_new(NULL, 0, 0);
    struct mta_sts_answer a;
    char due[4][MTA_STS_NAME_MAX + 1];
    bool fetched;

    fake_now = T0;
    a = deliver(svc, "week.example", MTA_STS_LOOKUP_FOUND, "id1", week, &fetched);
    mta_sts_answer_release(&a);
    a = deliver(svc, "hour.example", MTA_STS_LOOKUP_FOUND, "id1",
                "version: STSv1\nmode: enforce\nmx: mx.hour.example\nmax_age: 3600\n", &fetched);
    mta_sts_answer_release(&a);
    a = deliver(svc, "plain.example", MTA_STS_LOOKUP_NONE, NULL, NULL, &fetched);
    assert_int_equal(mta_sts_svc_due(svc, T0 + 1799, due, 4), 0);
    /* Half of an hour: the short policy; a day: the week-long one too. */
    assert_int_equal(mta_sts_svc_due(svc, T0 + 1800, due, 4), 1);
    assert_string_equal(due[0], "hour.example");
    assert_int_equal(mta_sts_svc_due(svc, T0 + 86400 - 1, due, 4), 0); /* hour.example expired */
    assert_int_equal(mta_sts_svc_due(svc, T0 + 86400, due, 4), 1);
    assert_string_equal(due[0], "week.example");
    assert_int_equal(mta_sts_svc_due(svc, T0 + 86400, due, 0), 0);
    /* A failed refresh is held back for five minutes (§3.3). */
    fake_now = T0 + 86400;
    a = deliver(svc, "week.example", MTA_STS_LOOKUP_FOUND, "id1", NULL, &fetched);
    assert_true(fetched);
    mta_sts_answer_release(&a);
    assert_int_equal(mta_sts_svc_due(svc, fake_now + MTA_STS_RETRY_SECS - 1, due, 4), 0);
    assert_int_equal(mta_sts_svc_due(svc, fake_now + MTA_STS_RETRY_SECS, due, 4), 1);
    mta_sts_svc_unref(svc);
}

static void test_domain_names(void **state)
{
    char out[MTA_STS_NAME_MAX + 1];
    char longname[300];

    assert_true(mta_sts_svc_domain("Example.NET.", 12, out));
    assert_string_equal(out, "example.net");
    assert_false(mta_sts_svc_domain("192.0.2.1", 9, out));
    assert_false(mta_sts_svc_domain("*.example.net", 13, out));
    assert_false(mta_sts_svc_domain("", 0, out));
    assert_false(mta_sts_svc_domain("a..b", 4, out));
    assert_false(mta_sts_svc_domain("[192.0.2.1]", 11, out));
    memset(longname, 'a', sizeof(longname));
    assert_false(mta_sts_svc_domain(longname, sizeof(longname), out));
}

static void test_file_round_trip(void **state)
{
    const char *file = path("round.cache");
    struct mta_sts_answer a;
    struct mta_sts_svc_stats st;
    bool fetched;

    unlink(file);
    fake_now = T0;
    struct mta_sts_svc *svc = svc_new(file, 0, 60000);
    a = deliver(svc, "example.net", MTA_STS_LOOKUP_FOUND, "id1", week, &fetched);
    mta_sts_answer_release(&a);
    a = deliver(svc, "short.example", MTA_STS_LOOKUP_FOUND, "id9",
                "version: STSv1\nmode: enforce\nmx: mx.short.example\nmax_age: 600\n", &fetched);
    mta_sts_answer_release(&a);
    a = deliver(svc, "plain.example", MTA_STS_LOOKUP_NONE, NULL, NULL, &fetched);
    mta_sts_svc_unref(svc); /* writes at exit, the delay notwithstanding */

    /* A restart after short.example's policy expired. */
    fake_now = T0 + 3600;
    svc = svc_new(file, 0, 60000);
    mta_sts_svc_stats(svc, &st);
    assert_int_equal(st.loaded, 1);
    assert_int_equal(st.load_skipped, 0);
    assert_int_equal(st.entries, 1);
    /* Not warm (the TXT id is checked once), but no fetch: the first
     * contact window stays closed. */
    assert_false(mta_sts_svc_peek(svc, "example.net", fake_now, &a));
    a = deliver(svc, "example.net", MTA_STS_LOOKUP_FOUND, "id1", NULL, &fetched);
    assert_false(fetched);
    assert_int_equal(a.result, MTA_STS_RESULT_POLICY);
    assert_int_equal(a.policy->fetched, T0);
    assert_int_equal(a.policy->expires, T0 + 604800);
    mta_sts_answer_release(&a);
    mta_sts_svc_unref(svc);
    unlink(file);
}

static void test_save_does_not_follow_links(void **state)
{
    char file[600], tmp[700], victim[600];
    struct mta_sts_answer a;
    bool fetched;

    snprintf(file, sizeof(file), "%s", path("link.cache"));
    snprintf(victim, sizeof(victim), "%s", path("victim"));
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", file, (long)getpid());
    unlink(file);
    unlink(victim);
    FILE *f = fopen(victim, "w");
    assert_non_null(f);
    fputs("precious\n", f);
    fclose(f);
    unlink(tmp);
    assert_int_equal(symlink(victim, tmp), 0);
    fake_now = T0;
    struct mta_sts_svc *svc = svc_new(file, 0, 60000);
    a = deliver(svc, "example.net", MTA_STS_LOOKUP_FOUND, "id1", week, &fetched);
    mta_sts_answer_release(&a);
    assert_int_equal(mta_sts_svc_save(svc), 0);
    mta_sts_svc_unref(svc);
    char buf[64] = "";
    f = fopen(victim, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof(buf), f));
    fclose(f);
    assert_string_equal(buf, "precious\n");
    assert_int_equal(access(file, R_OK), 0);
    assert_int_equal(access(tmp, F_OK), -1);
    unlink(file);
    unlink(victim);
}

/* Reads what the log wrote to fd since the start. */
static void read_log(int fd, char *buf, size_t cap)
{
    ssize_t n = pread(fd, buf, cap - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
}

static void test_corrupt_file(void **state)
{
    char file[600];
    char good[MTA_STS_CACHE_TEXT_MAX], good2[MTA_STS_CACHE_TEXT_MAX],
        text[4 * MTA_STS_CACHE_TEXT_MAX];
    struct mta_sts_cache_entry e;
    struct mta_sts_svc_stats st;

    snprintf(file, sizeof(file), "%s", path("corrupt.cache"));
    fake_now = T0;
    assert_int_equal(mta_sts_cache_store(&e, "a.example", 9, "id1", policy(week), T0), MTA_STS_OK);
    assert_true(mta_sts_cache_format(&e, good, sizeof(good)) > 0);
    assert_int_equal(mta_sts_cache_store(&e, "c.example", 9, "id3", policy(week), T0), MTA_STS_OK);
    assert_true(mta_sts_cache_format(&e, good2, sizeof(good2)) > 0);
    /* Line 1: a good entry (9 lines); line 10: a bad mode; line 19: good;
     * line 28: cut short by a crash. */
    char *bad = strdup(good);
    char *m = strstr(bad, "mode enforce");
    memcpy(m, "mode enfarce", 12);
    snprintf(text, sizeof(text), "%s%s%s%.40s", good, bad, good2, good);
    free(bad);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);

    char logpath[600];
    snprintf(logpath, sizeof(logpath), "%s", path("corrupt.log"));
    int fd = open(logpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    log_set_fd(fd);
    struct mta_sts_svc *svc = svc_new(file, 0, 60000);
    log_set_fd(2);
    mta_sts_svc_stats(svc, &st);
    assert_int_equal(st.loaded, 2);
    assert_int_equal(st.load_skipped, 2);
    char logbuf[4096], want[700];
    read_log(fd, logbuf, sizeof(logbuf));
    close(fd);
    snprintf(want, sizeof(want), "%s:10: mta_sts cache entry skipped", file);
    assert_non_null(strstr(logbuf, want));
    snprintf(want, sizeof(want), "%s:28: mta_sts cache entry skipped", file);
    assert_non_null(strstr(logbuf, want));
    mta_sts_svc_unref(svc);
    unlink(file);
    unlink(logpath);
}

static void test_debounced_writer(void **state)
{
    const char *file = path("debounce.cache");
    struct mta_sts_answer a;
    struct mta_sts_svc_stats st;
    bool fetched;
    char name[32];

    unlink(file);
    fake_now = T0;
    struct mta_sts_svc *svc = svc_new(file, 0, 300);
    /* Ten changes in a burst make one write, after the delay. */
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "d%d.example", i);
        a = deliver(svc, name, MTA_STS_LOOKUP_FOUND, "id1", week, &fetched);
        mta_sts_answer_release(&a);
    }
    mta_sts_svc_stats(svc, &st);
    assert_int_equal(st.saves, 0);
    for (int i = 0; i < 200 && st.saves == 0; i++) { /* up to 10 s on a loaded machine */
        usleep(50000);
        mta_sts_svc_stats(svc, &st);
    }
    assert_int_equal(st.saves, 1);
    assert_int_equal(st.save_errors, 0);
    assert_int_equal(access(file, R_OK), 0);
    /* Nothing changed since: exit writes nothing more. */
    mta_sts_svc_unref(svc);
    svc = svc_new(file, 0, 60000);
    mta_sts_svc_stats(svc, &st);
    assert_int_equal(st.loaded, 10);
    mta_sts_svc_unref(svc);
    unlink(file);
}

/* Worker threads and the save thread on one table: every answer holds a
 * policy that stays readable after its entry was replaced or evicted
 * (under ASan or TSan this is where a locking mistake shows). */
struct stress {
    struct mta_sts_svc *svc;
    int seed;
    unsigned policies_seen;
};

static void *stress_thread(void *arg)
{
    struct stress *st = arg;
    unsigned r = (unsigned)st->seed;
    char name[32], id[8];
    struct mta_sts_answer a;
    char due[4][MTA_STS_NAME_MAX + 1];
    struct mta_sts_policy p;
    const char *why;

    if (mta_sts_policy_parse(week, strlen(week), &p, &why) != MTA_STS_OK)
        return NULL;
    for (int i = 0; i < 20000; i++) {
        r = r * 1103515245u + 12345u;
        int64_t now = T0 + (int64_t)(r >> 8) % 1000000;
        snprintf(name, sizeof(name), "d%u.example", (r >> 4) % 40);
        snprintf(id, sizeof(id), "id%u", (r >> 12) % 3);
        switch ((r >> 16) % 5) {
        case 0:
            if (mta_sts_svc_peek(st->svc, name, now, &a) && a.policy != NULL) {
                st->policies_seen += a.policy->n_mx == 1 && a.policy->mx[0][0] == 'm';
                mta_sts_answer_release(&a);
            }
            break;
        case 1:
            if (mta_sts_svc_txt(st->svc, name,
                                (r >> 20) % 2 ? MTA_STS_LOOKUP_FOUND : MTA_STS_LOOKUP_NONE, id, now,
                                &a) != MTA_STS_NEXT_FETCH)
                mta_sts_answer_release(&a);
            break;
        case 2:
            mta_sts_svc_fetched(st->svc, name, id, (r >> 20) % 4 ? &p : NULL,
                                (r >> 20) % 4 ? MTA_STS_FETCH_OK : MTA_STS_FETCH_ERROR,
                                "connect", now, &a);
            if (a.policy != NULL)
                st->policies_seen += a.policy->n_mx == 1;
            mta_sts_answer_release(&a);
            break;
        case 3:
            if (mta_sts_svc_poll(st->svc, name, now, &a) == MTA_STS_NEXT_DONE)
                mta_sts_answer_release(&a);
            else if ((r >> 20) % 2)
                mta_sts_svc_abandon(st->svc, name);
            break;
        default:
            mta_sts_svc_due(st->svc, now, due, 4);
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    char file[600];
    struct stress st[4];
    pthread_t t[4];
    struct mta_sts_svc_stats s;

    snprintf(file, sizeof(file), "%s", path("threads.cache"));
    unlink(file);
    fake_now = T0;
    struct mta_sts_svc *svc = svc_new(file, 30, 1);
    for (int i = 0; i < 4; i++) {
        st[i] = (struct stress){.svc = svc, .seed = i + 1};
        assert_int_equal(pthread_create(&t[i], NULL, stress_thread, &st[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    mta_sts_svc_stats(svc, &s);
    assert_true(s.entries <= 30);
    assert_true(s.evictions > 0);
    assert_int_equal(s.save_errors, 0);
    for (int i = 0; i < 4; i++)
        assert_true(st[i].policies_seen > 0);
    mta_sts_svc_unref(svc);
    unlink(file);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_contact_then_warm),
        cmocka_unit_test(test_id_change_and_refresh),
        cmocka_unit_test(test_failed_refresh_keeps_policy),
        cmocka_unit_test(test_first_fetch_fails),
        cmocka_unit_test(test_fetch_error_kinds),
        cmocka_unit_test(test_one_fetch_across_loops),
        cmocka_unit_test(test_no_record_cached_negatively),
        cmocka_unit_test(test_bounded_lru),
        cmocka_unit_test(test_snapshot_matching),
        cmocka_unit_test(test_due_for_refresh),
        cmocka_unit_test(test_domain_names),
        cmocka_unit_test(test_file_round_trip),
        cmocka_unit_test(test_save_does_not_follow_links),
        cmocka_unit_test(test_corrupt_file),
        cmocka_unit_test(test_debounced_writer),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
