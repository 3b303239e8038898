/*
 * Unit tests for proxy/policy/tlsrpt_report.c: day-file lines written and
 * read back, per-policy counts with their bound on failure-details rows,
 * and the report JSON (RFC 8460 §4.4) byte for byte, escaped, and bounded
 * by its buffer.
 *
 * `tlsrpt_report_test --sample` prints a sample report instead of testing:
 * tlsrpt_report_schema_test.py checks it against §4.4's structure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/policy/tlsrpt.h"

#define APR1_2016 16892 /* 2016-04-01, the day of §4.4's example */

static struct tlsrpt_attempt attempt(int64_t t, const char *domain, const char *result,
                                     const char *sip, const char *mx, const char *rip)
{
    struct tlsrpt_attempt a;

    memset(&a, 0, sizeof(a));
    a.time = t;
    a.type = TLSRPT_POLICY_STS;
    strcpy(a.domain, domain);
    if (result == NULL) {
        a.success = true;
    } else {
        int r = tlsrpt_result_parse(result, strlen(result));
        assert_true(r >= 0);
        a.result = (enum tlsrpt_result)r;
    }
    strcpy(a.sending_ip, sip);
    strcpy(a.mx_host, mx);
    strcpy(a.receiving_ip, rip);
    return a;
}

static void test_day(void **state)
{
    assert_int_equal(tlsrpt_day(0), 0);
    assert_int_equal(tlsrpt_day(86399), 0);
    assert_int_equal(tlsrpt_day(86400), 1);
    assert_int_equal(tlsrpt_day(1459468800), APR1_2016);
    assert_int_equal(tlsrpt_day(1459468800 + 86399), APR1_2016);
    assert_int_equal(tlsrpt_day(-1), -1);
    assert_int_equal(tlsrpt_day(-86400), -1);
    assert_int_equal(tlsrpt_day(-86401), -2);
}

static void test_line_roundtrip(void **state)
{
    char buf[TLSRPT_LINE_MAX + 1];
    struct tlsrpt_attempt a, b;
    size_t used;
    const char *why = NULL;
    int n;

    a = attempt(1459468800, "company-y.example", "certificate-expired", "2001:db8:abcd:12::1",
                "mx1.mail.company-y.example", "203.0.113.56");
    n = tlsrpt_line_format(&a, buf, sizeof(buf));
    assert_string_equal(buf, "tlsrpt1 1459468800 sts company-y.example certificate-expired "
                             "2001:db8:abcd:12::1 mx1.mail.company-y.example 203.0.113.56\n");
    assert_int_equal(n, strlen(buf));
    if (tlsrpt_line_parse(buf, (size_t)n, &b, &used, &why) != TLSRPT_OK)
        fail_msg("%s", why);
    assert_int_equal(used, (size_t)n);
    assert_memory_equal(&a, &b, sizeof(a));

    /* Success, unknown fields as "-", another policy type. */
    a = attempt(0, "x.example", NULL, "", "", "");
    a.type = TLSRPT_POLICY_NONE;
    n = tlsrpt_line_format(&a, buf, sizeof(buf));
    assert_string_equal(buf, "tlsrpt1 0 no-policy-found x.example success - - -\n");
    assert_int_equal(tlsrpt_line_parse(buf, (size_t)n, &b, &used, NULL), TLSRPT_OK);
    assert_memory_equal(&a, &b, sizeof(a));
    assert_int_equal(tlsrpt_line_format(&a, buf, (size_t)n), TLSRPT_ERR_SPACE);
    assert_int_equal(tlsrpt_line_format(&a, buf, (size_t)n + 1), n);

    /* The longest line fits TLSRPT_LINE_MAX. */
    a = attempt(999999999999999999, "", "certificate-host-mismatch",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    for (int i = 0; i < 3; i++) {
        memset(a.domain + i * 64, 'd', 63), a.domain[i * 64 + 63] = '.';
        memset(a.mx_host + i * 64, 'm', 63), a.mx_host[i * 64 + 63] = '.';
    }
    memset(a.domain + 192, 'd', 61), memset(a.mx_host + 192, 'm', 61); /* 253 in all */
    a.domain[253] = a.mx_host[253] = '\0';
    a.type = TLSRPT_POLICY_NONE;
    n = tlsrpt_line_format(&a, buf, sizeof(buf));
    assert_true(n > 640 && n <= TLSRPT_LINE_MAX);
    assert_int_equal(tlsrpt_line_parse(buf, (size_t)n, &b, &used, NULL), TLSRPT_OK);
    assert_memory_equal(&a, &b, sizeof(a));

    /* What would not read back is not written. */
    a = attempt(5, "Upper.example", NULL, "", "", "");
    assert_int_equal(tlsrpt_line_format(&a, buf, sizeof(buf)), TLSRPT_ERR);
    a = attempt(5, "x.example", NULL, "192.0.2.300", "", "");
    assert_int_equal(tlsrpt_line_format(&a, buf, sizeof(buf)), TLSRPT_ERR);
    a = attempt(5, "x.example", NULL, "", "mx x", "");
    assert_int_equal(tlsrpt_line_format(&a, buf, sizeof(buf)), TLSRPT_ERR);
    a = attempt(-5, "x.example", NULL, "", "", "");
    assert_int_equal(tlsrpt_line_format(&a, buf, sizeof(buf)), TLSRPT_ERR);
}

static void test_line_rejects(void **state)
{
    static const char *const bad[] = {
        "",
        "tlsrpt1 5 sts x.example success - - -", /* no LF: cut short */
        "tlsrpt2 5 sts x.example success - - -\n",
        "tlsrpt1 5 sts x.example success - -\n", /* seven fields */
        "tlsrpt1 5 sts x.example success - - - -\n",
        "tlsrpt1  5 sts x.example success - - -\n", /* empty field */
        "tlsrpt1 5 sts x.example success - - - \n",
        "tlsrpt1 05 sts x.example success - - -\n",
        "tlsrpt1 -5 sts x.example success - - -\n",
        "tlsrpt1 1234567890123456789 sts x.example success - - -\n",
        "tlsrpt1 5 STS x.example success - - -\n",
        "tlsrpt1 5 dane x.example success - - -\n",
        "tlsrpt1 5 sts X.example success - - -\n",
        "tlsrpt1 5 sts *.example success - - -\n",
        "tlsrpt1 5 sts - success - - -\n",
        "tlsrpt1 5 sts x.example failure - - -\n",
        "tlsrpt1 5 sts x.example Success - - -\n",
        "tlsrpt1 5 sts x.example success 1.2.3 - -\n",
        "tlsrpt1 5 sts x.example success - mx..x -\n",
        "tlsrpt1 5 sts x.example success - - ::g\n",
        "tlsrpt1 5 sts x.example success - - -\r\n",
        /* addresses only in canonical text (RFC 5952 for IPv6) */
        "tlsrpt1 5 sts x.example success 2001:db8:abcd:0012::1 - -\n",
        "tlsrpt1 5 sts x.example success 2001:DB8::1 - -\n",
        "tlsrpt1 5 sts x.example success 2001:db8:0:0:0:0:0:1 - -\n",
        "tlsrpt1 5 sts x.example success 192.0.2.01 - -\n",
        "tlsrpt1 5 sts x.example success - - ::ffff:c000:201\n",
        "tlsrpt1\t5 sts x.example success - - -\n",
    };
    struct tlsrpt_attempt a;
    size_t used;
    const char *why;
    static char longline[TLSRPT_LINE_MAX + 20];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        if (tlsrpt_line_parse(bad[i], strlen(bad[i]), &a, &used, &why) != TLSRPT_ERR)
            fail_msg("row %zu accepted: %s", i, bad[i]);
        assert_non_null(why);
        assert_int_equal(used, 0);
    }
    /* No LF within TLSRPT_LINE_MAX octets: refused without reading on. */
    memset(longline, 'a', sizeof(longline));
    longline[sizeof(longline) - 1] = '\n';
    assert_int_equal(tlsrpt_line_parse(longline, sizeof(longline), &a, &used, NULL), TLSRPT_ERR);
    /* A NUL inside an address is not its end (found by tlsrpt_fuzz). */
    static const char nul[] = "tlsrpt1 5 sts x.example success - - 192.0.2.1\0\n";
    assert_int_equal(tlsrpt_line_parse(nul, sizeof(nul) - 1, &a, &used, NULL), TLSRPT_ERR);
    /* Two lines: the first is read, the rest left. */
    const char two[] = "tlsrpt1 5 sts x.example success - - -\ntlsrpt1 6";
    assert_int_equal(tlsrpt_line_parse(two, sizeof(two) - 1, &a, &used, NULL), TLSRPT_OK);
    assert_int_equal(used, 38);
    assert_int_equal(tlsrpt_line_parse(two + used, sizeof(two) - 1 - used, &a, &used, NULL),
                     TLSRPT_ERR);
}

static void test_stats(void **state)
{
    static struct tlsrpt_stats s;
    struct tlsrpt_attempt a;
    int64_t t = 1459468800;

    tlsrpt_stats_init(&s, "Company-Y.example", TLSRPT_POLICY_STS, APR1_2016);
    assert_string_equal(s.domain, "company-y.example");
    a = attempt(t, "company-y.example", NULL, "", "", "");
    for (int i = 0; i < 1000; i++)
        assert_int_equal(tlsrpt_stats_add(&s, &a), TLSRPT_OK);
    a = attempt(t + 5, "company-y.example", "certificate-expired", "2001:db8::1", "mx1.example",
                "203.0.113.56");
    assert_int_equal(tlsrpt_stats_add(&s, &a), TLSRPT_OK);
    assert_int_equal(tlsrpt_stats_add(&s, &a), TLSRPT_OK);
    strcpy(a.receiving_ip, "203.0.113.57"); /* another row */
    assert_int_equal(tlsrpt_stats_add(&s, &a), TLSRPT_OK);
    a.result = TLSRPT_STARTTLS_NOT_SUPPORTED; /* and another */
    assert_int_equal(tlsrpt_stats_add(&s, &a), TLSRPT_OK);
    assert_int_equal(s.success, 1000);
    assert_int_equal(s.failure, 4);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.detail[0].count, 2);
    assert_int_equal(s.detail[1].count, 1);
    assert_int_equal(s.detail[2].result, TLSRPT_STARTTLS_NOT_SUPPORTED);

    /* Another domain, type or day is not counted here. */
    a = attempt(t, "other.example", NULL, "", "", "");
    assert_int_equal(tlsrpt_stats_add(&s, &a), TLSRPT_ERR);
    a = attempt(t + 86400, "company-y.example", NULL, "", "", "");
    assert_int_equal(tlsrpt_stats_add(&s, &a), TLSRPT_ERR);
    a = attempt(t - 1, "company-y.example", NULL, "", "", "");
    assert_int_equal(tlsrpt_stats_add(&s, &a), TLSRPT_ERR);
    a = attempt(t, "company-y.example", NULL, "", "", "");
    a.type = TLSRPT_POLICY_TLSA;
    assert_int_equal(tlsrpt_stats_add(&s, &a), TLSRPT_ERR);
    assert_int_equal(s.success + s.failure, 1004);

    /* Past TLSRPT_DETAILS_MAX rows: totals still exact, the rest dropped. */
    for (int i = 0; i < 150; i++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "198.51.100.%d", i);
        a = attempt(t, "company-y.example", "validation-failure", ip, "mx1.example", "");
        assert_int_equal(tlsrpt_stats_add(&s, &a), TLSRPT_OK);
    }
    assert_int_equal(s.n, TLSRPT_DETAILS_MAX);
    assert_int_equal(s.failure, 154);
    assert_int_equal(s.details_dropped, 150 - (TLSRPT_DETAILS_MAX - 3));
    /* A failure matching a kept row still adds to it. */
    a = attempt(t, "company-y.example", "validation-failure", "198.51.100.0", "mx1.example", "");
    assert_int_equal(tlsrpt_stats_add(&s, &a), TLSRPT_OK);
    assert_int_equal(s.detail[3].count, 2);
    uint64_t sum = s.details_dropped;
    for (size_t i = 0; i < s.n; i++)
        sum += s.detail[i].count;
    assert_int_equal(sum, s.failure);
}

/* The sample of §4.4's example, shortened: one STS policy, two rows. */
static long sample(char *buf, size_t cap, const char *org)
{
    static struct tlsrpt_stats s;
    static const char *const strings[] = {"version: STSv1", "mode: testing",
                                          "mx: *.mail.company-y.example", "max_age: 86400"};
    static const char *const mx[] = {"*.mail.company-y.example"};
    struct tlsrpt_attempt a;
    int64_t t = 1459468800;

    tlsrpt_stats_init(&s, "company-y.example", TLSRPT_POLICY_STS, APR1_2016);
    a = attempt(t, "company-y.example", NULL, "", "", "");
    for (int i = 0; i < 5326; i++)
        tlsrpt_stats_add(&s, &a);
    a = attempt(t, "company-y.example", "certificate-expired", "2001:db8:abcd:12::1",
                "mx1.mail.company-y.example", "203.0.113.56");
    for (int i = 0; i < 100; i++)
        tlsrpt_stats_add(&s, &a);
    a = attempt(t, "company-y.example", "starttls-not-supported", "", "", "");
    tlsrpt_stats_add(&s, &a);

    struct tlsrpt_report r = {org, "tlsrpt@company-x.example",
                              "5065427c-23d3-47ca-b6e0-946ea0e8c4be", APR1_2016};
    struct tlsrpt_report_policy p = {&s, strings, 4, mx, 1};
    return tlsrpt_report_json(buf, cap, &r, &p, 1);
}

static void test_json(void **state)
{
    static char buf[4096];
    long n = sample(buf, sizeof(buf), "Company-X");

    assert_true(n > 0);
    assert_string_equal(
        buf,
        "{\"organization-name\":\"Company-X\",\"date-range\":{\"start-datetime\":"
        "\"2016-04-01T00:00:00Z\",\"end-datetime\":\"2016-04-01T23:59:59Z\"},\"contact-info\":"
        "\"tlsrpt@company-x.example\",\"report-id\":\"5065427c-23d3-47ca-b6e0-946ea0e8c4be\","
        "\"policies\":[{\"policy\":{\"policy-type\":\"sts\",\"policy-string\":[\"version: "
        "STSv1\",\"mode: testing\",\"mx: *.mail.company-y.example\",\"max_age: 86400\"],"
        "\"policy-domain\":\"company-y.example\",\"mx-host\":[\"*.mail.company-y.example\"]},"
        "\"summary\":{\"total-successful-session-count\":5326,\"total-failure-session-count\":"
        "101},\"failure-details\":[{\"result-type\":\"certificate-expired\",\"sending-mta-ip\":"
        "\"2001:db8:abcd:12::1\",\"receiving-mx-hostname\":\"mx1.mail.company-y.example\","
        "\"receiving-ip\":\"203.0.113.56\",\"failed-session-count\":100},{\"result-type\":"
        "\"starttls-not-supported\",\"failed-session-count\":1}]}]}");
    assert_int_equal(n, strlen(buf));

    /* Every buffer too small says so, and never writes past its end. */
    static char small[4096];
    for (size_t cap = 0; cap <= (size_t)n; cap++) {
        memset(small, 'Z', sizeof(small));
        assert_int_equal(sample(small, cap, "Company-X"), TLSRPT_ERR_SPACE);
        assert_int_equal(small[cap], 'Z');
    }
    assert_int_equal(sample(small, (size_t)n + 1, "Company-X"), n);

    /* No policies, other dates: 1970-01-01, a leap day, a day before 1970. */
    struct tlsrpt_report r = {"o", "c", "i", 0};
    assert_true(tlsrpt_report_json(buf, sizeof(buf), &r, NULL, 0) > 0);
    assert_non_null(strstr(buf, "\"1970-01-01T00:00:00Z\""));
    assert_non_null(strstr(buf, "\"policies\":[]"));
    r.day = 11016; /* 2000-02-29 */
    assert_true(tlsrpt_report_json(buf, sizeof(buf), &r, NULL, 0) > 0);
    assert_non_null(strstr(buf, "\"2000-02-29T23:59:59Z\""));
    r.day = -1;
    assert_true(tlsrpt_report_json(buf, sizeof(buf), &r, NULL, 0) > 0);
    assert_non_null(strstr(buf, "\"1969-12-31T00:00:00Z\""));
}

static void test_json_escaping(void **state)
{
    static char buf[4096];

    /* Quote, backslash, control characters, valid UTF-8 kept, invalid
     * bytes (a lone continuation, an overlong "/", a surrogate, a cut
     * sequence) replaced. */
    assert_true(sample(buf, sizeof(buf),
                       "A \"B\" \\ C\n\x01\x7f \xc3\xa9 \x80 \xc0\xaf \xed\xa0\x80 \xe2\x82") > 0);
    assert_non_null(strstr(buf, "\"organization-name\":\"A \\\"B\\\" \\\\ C\\u000a\\u0001\\u007f "
                                "\xc3\xa9 \\ufffd \\ufffd\\ufffd \\ufffd\\ufffd\\ufffd "
                                "\\ufffd\\ufffd\","));
}

/* --sample: a report for tlsrpt_report_schema_test.py, with every kind of
 * row and a name that needs escaping. */
static int print_sample(void)
{
    static struct tlsrpt_stats sts, none;
    static char buf[16384];
    static const char *const strings[] = {"version: STSv1", "mode: enforce", "mx: mx.example.net",
                                          "max_age: 604800"};
    static const char *const mx[] = {"mx.example.net", "*.backup.example.net"};
    struct tlsrpt_attempt a;
    int64_t t = 1764547200; /* 2025-12-01 */

    tlsrpt_stats_init(&sts, "example.net", TLSRPT_POLICY_STS, tlsrpt_day(t));
    a = attempt(t, "example.net", NULL, "", "", "");
    tlsrpt_stats_add(&sts, &a);
    tlsrpt_stats_add(&sts, &a);
    a = attempt(t + 60, "example.net", "sts-webpki-invalid", "192.0.2.1", "mx.example.net",
                "198.51.100.25");
    tlsrpt_stats_add(&sts, &a);
    a = attempt(t + 61, "example.net", "certificate-host-mismatch", "2001:db8::25", "", "");
    tlsrpt_stats_add(&sts, &a);
    tlsrpt_stats_init(&none, "plain.example", TLSRPT_POLICY_NONE, tlsrpt_day(t));
    a = attempt(t + 62, "plain.example", "starttls-not-supported", "", "mx.plain.example",
                "203.0.113.9");
    a.type = TLSRPT_POLICY_NONE;
    tlsrpt_stats_add(&none, &a);

    struct tlsrpt_report r = {"Example \"Mail\" Inc\\\t\xc3\xa9\xff", "postmaster@example.org",
                              "2025-12-01T00:00:00Z_example.net", tlsrpt_day(t)};
    struct tlsrpt_report_policy p[2] = {{&sts, strings, 4, mx, 2}, {&none, NULL, 0, NULL, 0}};
    long n = tlsrpt_report_json(buf, sizeof(buf), &r, p, 2);
    if (n < 0)
        return 1;
    fwrite(buf, 1, (size_t)n, stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--sample") == 0)
        return print_sample();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_day),          cmocka_unit_test(test_line_roundtrip),
        cmocka_unit_test(test_line_rejects), cmocka_unit_test(test_stats),
        cmocka_unit_test(test_json),         cmocka_unit_test(test_json_escaping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
