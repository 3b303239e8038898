/*
 * Unit tests for proxy/policy/decide.c: the precedence of DESIGN.md for one
 * recipient domain, one table row per case, and enforce = false turning
 * every refusal into "logged".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/policy/decide.h"

#define TLS .tls = true
#define NO_RULE .rule = false
#define FB(p) .fallback = OUTBOUND_##p

struct row {
    const char *name;
    struct decide_input in;
    enum decide_result result;
    enum decide_auth auth;
    enum decide_why why;
};

static const struct row rows[] = {
    /* Nothing applies: the fallback, met by the session. */
    {"plain opportunistic", {FB(OPPORTUNISTIC)}, DECIDE_PASS, DECIDE_AUTH_NONE, DECIDE_WHY_NONE},
    {"tls opportunistic", {FB(OPPORTUNISTIC), TLS}, DECIDE_PASS, DECIDE_AUTH_NONE, 0},
    {"plain required",
     {FB(REQUIRED)},
     DECIDE_REFUSE_TEMP,
     DECIDE_AUTH_POLICY,
     DECIDE_WHY_FALLBACK_NO_TLS},
    {"verify unverified",
     {FB(VERIFY), TLS},
     DECIDE_REFUSE_TEMP,
     DECIDE_AUTH_POLICY,
     DECIDE_WHY_FALLBACK_VERIFY},
    {"verify verified",
     {FB(VERIFY), TLS, .pkix_session = true},
     DECIDE_PASS,
     DECIDE_AUTH_POLICY,
     0},
    /* DANE. */
    {"dane match",
     {FB(OPPORTUNISTIC), TLS, .dane = DECIDE_DANE_MATCH},
     DECIDE_PASS,
     DECIDE_AUTH_DANE,
     0},
    {"dane mismatch",
     {FB(OPPORTUNISTIC), TLS, .dane = DECIDE_DANE_MISMATCH},
     DECIDE_REFUSE_TEMP,
     DECIDE_AUTH_DANE,
     DECIDE_WHY_DANE_MISMATCH},
    {"dane plaintext",
     {FB(OPPORTUNISTIC), .dane = DECIDE_DANE_MISMATCH},
     DECIDE_REFUSE_TEMP,
     DECIDE_AUTH_DANE,
     DECIDE_WHY_DANE_NO_TLS},
    {"dane match without tls is a bug, strict",
     {FB(NONE), .dane = DECIDE_DANE_MATCH},
     DECIDE_REFUSE_TEMP,
     DECIDE_AUTH_DANE,
     DECIDE_WHY_DANE_NO_TLS},
    {"dane bogus",
     {FB(OPPORTUNISTIC), TLS, .dane = DECIDE_DANE_BOGUS},
     DECIDE_REFUSE_TEMP,
     DECIDE_AUTH_DANE,
     DECIDE_WHY_DNSSEC_BOGUS},
    {"dane servfail",
     {FB(OPPORTUNISTIC), TLS, .dane = DECIDE_DANE_TEMPFAIL},
     DECIDE_REFUSE_TEMP,
     DECIDE_AUTH_DANE,
     DECIDE_WHY_DNS_FAILED},
    {"dane unusable tls",
     {FB(OPPORTUNISTIC), TLS, .dane = DECIDE_DANE_UNUSABLE},
     DECIDE_PASS,
     DECIDE_AUTH_NONE,
     0},
    {"dane unusable plain",
     {FB(OPPORTUNISTIC), .dane = DECIDE_DANE_UNUSABLE},
     DECIDE_REFUSE_TEMP,
     DECIDE_AUTH_DANE,
     DECIDE_WHY_DANE_UNUSABLE_NO_TLS},
    /* DANE before MTA-STS: a matching TLSA wins over a failing policy. */
    {"dane over sts",
     {FB(OPPORTUNISTIC), TLS, .dane = DECIDE_DANE_MATCH, .sts = {.mode = DECIDE_STS_ENFORCE}},
     DECIDE_PASS,
     DECIDE_AUTH_DANE,
     0},
    {"dane unusable over sts",
     {FB(OPPORTUNISTIC), TLS, .dane = DECIDE_DANE_UNUSABLE, .sts = {.mode = DECIDE_STS_ENFORCE}},
     DECIDE_PASS,
     DECIDE_AUTH_NONE,
     0},
    /* MTA-STS. */
    {"sts ok",
     {FB(OPPORTUNISTIC), TLS, .sts = {.mode = DECIDE_STS_ENFORCE, .name_ok = true, .mx_ok = true}},
     DECIDE_PASS,
     DECIDE_AUTH_MTA_STS,
     0},
    {"sts plain",
     {FB(OPPORTUNISTIC), .sts = {.mode = DECIDE_STS_ENFORCE, .name_ok = true, .mx_ok = true}},
     DECIDE_REFUSE_TEMP,
     DECIDE_AUTH_MTA_STS,
     DECIDE_WHY_STS_NO_TLS},
    {"sts name",
     {FB(OPPORTUNISTIC), TLS,
      .sts = {.mode = DECIDE_STS_ENFORCE, .name_ok = false, .mx_ok = true, .trusted = true}},
     DECIDE_REFUSE_TEMP,
     DECIDE_AUTH_MTA_STS,
     DECIDE_WHY_STS_NAME},
    {"sts untrusted",
     {FB(OPPORTUNISTIC), TLS, .sts = {.mode = DECIDE_STS_ENFORCE, .name_ok = false, .mx_ok = true}},
     DECIDE_REFUSE_TEMP,
     DECIDE_AUTH_MTA_STS,
     DECIDE_WHY_STS_UNTRUSTED},
    {"sts mx before the certificate",
     {FB(OPPORTUNISTIC), TLS,
      .sts = {.mode = DECIDE_STS_ENFORCE, .name_ok = false, .mx_ok = false}},
     DECIDE_REFUSE_TEMP,
     DECIDE_AUTH_MTA_STS,
     DECIDE_WHY_STS_MX},
    {"sts over a failing fallback",
     {FB(VERIFY), TLS, .sts = {.mode = DECIDE_STS_ENFORCE, .name_ok = true, .mx_ok = true}},
     DECIDE_PASS,
     DECIDE_AUTH_MTA_STS,
     0},
    {"sts mx",
     {FB(OPPORTUNISTIC), TLS, .sts = {.mode = DECIDE_STS_ENFORCE, .name_ok = true, .mx_ok = false}},
     DECIDE_REFUSE_TEMP,
     DECIDE_AUTH_MTA_STS,
     DECIDE_WHY_STS_MX},
    /* Testing mode: never refused for MTA-STS, a failure logged. */
    {"sts testing plain",
     {FB(OPPORTUNISTIC), .sts = {.mode = DECIDE_STS_TESTING, .name_ok = false, .mx_ok = false}},
     DECIDE_LOGGED,
     DECIDE_AUTH_MTA_STS,
     DECIDE_WHY_STS_NO_TLS},
    {"sts testing mx",
     {FB(OPPORTUNISTIC), TLS, .sts = {.mode = DECIDE_STS_TESTING, .name_ok = true, .mx_ok = false}},
     DECIDE_LOGGED,
     DECIDE_AUTH_MTA_STS,
     DECIDE_WHY_STS_MX},
    {"sts testing name",
     {FB(OPPORTUNISTIC), TLS,
      .sts = {.mode = DECIDE_STS_TESTING, .name_ok = false, .mx_ok = true, .trusted = true}},
     DECIDE_LOGGED,
     DECIDE_AUTH_MTA_STS,
     DECIDE_WHY_STS_NAME},
    {"sts testing ok is the fallback's",
     {FB(OPPORTUNISTIC), TLS, .sts = {.mode = DECIDE_STS_TESTING, .name_ok = true, .mx_ok = true}},
     DECIDE_PASS,
     DECIDE_AUTH_NONE,
     0},
    {"sts testing ok, verify fallback still refuses",
     {FB(VERIFY), TLS, .sts = {.mode = DECIDE_STS_TESTING, .name_ok = true, .mx_ok = true}},
     DECIDE_REFUSE_TEMP,
     DECIDE_AUTH_POLICY,
     DECIDE_WHY_FALLBACK_VERIFY},
    {"sts testing failing, fallback's refusal wins",
     {FB(REQUIRED), .sts = {.mode = DECIDE_STS_TESTING, .name_ok = false, .mx_ok = false}},
     DECIDE_REFUSE_TEMP,
     DECIDE_AUTH_POLICY,
     DECIDE_WHY_FALLBACK_NO_TLS},
    {"sts testing verified fallback",
     {FB(VERIFY), TLS, .pkix_session = true,
      .sts = {.mode = DECIDE_STS_TESTING, .name_ok = false, .mx_ok = true}},
     DECIDE_LOGGED,
     DECIDE_AUTH_MTA_STS,
     DECIDE_WHY_STS_UNTRUSTED},
    {"sts mode none",
     {FB(OPPORTUNISTIC), .sts = {.mode = DECIDE_STS_MODE_NONE, .name_ok = false, .mx_ok = false}},
     DECIDE_PASS,
     DECIDE_AUTH_NONE,
     0},
    /* An explicit rule first, even over DANE and a DNSSEC failure. */
    {"rule none over bogus",
     {.rule = true, .rule_policy = OUTBOUND_NONE, FB(VERIFY), .dane = DECIDE_DANE_BOGUS},
     DECIDE_PASS,
     DECIDE_AUTH_NONE,
     0},
    {"rule opportunistic over dane mismatch",
     {.rule = true,
      .rule_policy = OUTBOUND_OPPORTUNISTIC,
      FB(OPPORTUNISTIC),
      TLS,
      .dane = DECIDE_DANE_MISMATCH},
     DECIDE_PASS,
     DECIDE_AUTH_NONE,
     0},
    {"rule required plain",
     {.rule = true, .rule_policy = OUTBOUND_REQUIRED, FB(NONE)},
     DECIDE_REFUSE_TEMP,
     DECIDE_AUTH_POLICY,
     DECIDE_WHY_RULE_NO_TLS},
    {"rule required tls",
     {.rule = true, .rule_policy = OUTBOUND_REQUIRED, FB(NONE), TLS},
     DECIDE_PASS,
     DECIDE_AUTH_NONE,
     0},
    {"rule verify, session verified is not enough",
     {.rule = true, .rule_policy = OUTBOUND_VERIFY, FB(NONE), TLS, .pkix_session = true},
     DECIDE_REFUSE_TEMP,
     DECIDE_AUTH_POLICY,
     DECIDE_WHY_RULE_NAME},
    {"rule verify domain",
     {.rule = true, .rule_policy = OUTBOUND_VERIFY, FB(NONE), TLS, .pkix_domain = true},
     DECIDE_PASS,
     DECIDE_AUTH_POLICY,
     0},
};

static void test_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct decide_input in = rows[i].in;
        in.enforce = true;
        struct decide_verdict v = decide_rcpt(&in);
        print_message("%s\n", rows[i].name);
        assert_int_equal(v.result, rows[i].result);
        assert_int_equal(v.auth, rows[i].auth);
        assert_int_equal(v.why, rows[i].why);
        /* enforce = false: the same verdict, logged instead of refused. */
        in.enforce = false;
        struct decide_verdict l = decide_rcpt(&in);
        print_message("%s, enforce = false\n", rows[i].name);
        assert_int_equal(l.result, v.result == DECIDE_PASS ? DECIDE_PASS : DECIDE_LOGGED);
        assert_int_equal(l.auth, v.auth);
        assert_int_equal(l.why, v.why);
    }
}

static void test_replies(void **state)
{
    (void)state;
    assert_null(decide_reply(DECIDE_WHY_NONE));
    assert_null(decide_reply(DECIDE_WHY_COUNT));
    for (int w = 1; w < DECIDE_WHY_COUNT; w++) {
        const char *r = decide_reply((enum decide_why)w);
        assert_non_null(r);
        size_t n = strlen(r);
        /* One line, a 450 with an enhanced code, CRLF once at the end. */
        assert_true(n < 512);
        assert_memory_equal(r, "450 4.", 6);
        assert_string_equal(r + n - 2, "\r\n");
        assert_null(memchr(r, '\n', n - 1));
        assert_null(memchr(r, '\r', n - 2));
        assert_true(strcmp(decide_why_str((enum decide_why)w), "?") != 0);
    }
    /* DNS trouble is 4.4.3, certificate and TLS trouble 4.7.5. */
    assert_memory_equal(decide_reply(DECIDE_WHY_DNSSEC_BOGUS), "450 4.4.3 ", 10);
    assert_memory_equal(decide_reply(DECIDE_WHY_DNS_FAILED), "450 4.4.3 ", 10);
    assert_memory_equal(decide_reply(DECIDE_WHY_TIMEOUT), "450 4.4.3 ", 10);
    assert_memory_equal(decide_reply(DECIDE_WHY_DANE_MISMATCH), "450 4.7.5 ", 10);
    assert_memory_equal(decide_reply(DECIDE_WHY_STS_MX), "450 4.7.5 ", 10);
    assert_memory_equal(decide_reply(DECIDE_WHY_STS_UNTRUSTED), "450 4.7.5 ", 10);
    assert_memory_equal(decide_reply(DECIDE_WHY_STS_NAME), "450 4.7.5 ", 10);
    assert_string_equal(decide_auth_str(DECIDE_AUTH_MTA_STS), "mta-sts");
    assert_string_equal(decide_auth_str(DECIDE_AUTH_DANE), "dane");
    assert_string_equal(decide_result_str(DECIDE_LOGGED), "logged");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_replies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
