/*
 * outbound under DANE: transcripts of the strict DANE policy (its own
 * replies for STARTTLS missing, a failed handshake and a failed DANE match)
 * and of dane_audit (enforce = false), where the refusal DANE would have
 * made is reported through io.on_refusal_logged and the session goes on
 * under the configured policy. The driver is transcript.c.h.
 */
#include "proxy/core/outbound.h"

#define OPS                        outbound_engine_ops
#define TRANSCRIPT_ENGINE          struct outbound
#define TRANSCRIPT_CLIENT(e, p, n) OPS.client(e, p, n)
#define TRANSCRIPT_SERVER(e, p, n) OPS.server(e, p, n)
#define TRANSCRIPT_TAKE_ACTIONS(e) OPS.take_actions(e)
#include "tests/unit/core/transcript.c.h"

#define R_DANE_NO_STARTTLS                                                                         \
    "421 4.7.5 STARTTLS not offered by the destination, which publishes DANE TLSA records\r\n"
#define R_DANE_TLS_FAILED                                                                          \
    "421 4.7.5 TLS with the destination failed, and its DANE TLSA records require it\r\n"
#define R_DANE_CERT "421 4.7.5 DANE authentication of the destination failed\r\n"
#define R_GREETING  "421 4.7.5 TLS required by policy, but the destination refused the session\r\n"

#define GREETING "220 mx.dest.example ESMTP\r\n"
#define EHLO     "EHLO legacy.example\r\n"
#define EHLO_STARTTLS                                                                              \
    "250-mx.dest.example\r\n"                                                                      \
    "250-STARTTLS\r\n"                                                                             \
    "250 8BITMIME\r\n"
#define EHLO_PLAIN                                                                                 \
    "250-mx.dest.example\r\n"                                                                      \
    "250 8BITMIME\r\n"

/* What on_refusal_logged was told, per engine (one transcript at a time). */
static char logged[256];
static int nlogged;

static void on_refusal_logged(void *arg, const char *why)
{
    (void)arg;
    snprintf(logged, sizeof(logged), "%s", why);
    nlogged++;
}

/* After a call into the engine from outside the transcript driver. */
static void event_pump(struct t *t)
{
    collect(t);
    pump(t);
}

static struct t *start(enum outbound_policy policy, bool audit)
{
    struct outbound_cfg cfg = {.policy = policy, .dane_audit = audit};
    struct t *t = alloc_t();
    struct engine_io io = transcript_io(t);

    io.on_refusal_logged = on_refusal_logged;
    logged[0] = '\0';
    nlogged = 0;
    outbound_init(&t->e, &cfg, &io);
    return t;
}

static struct t *start_ehlo(enum outbound_policy policy, bool audit)
{
    struct t *t = start(policy, audit);

    server(t, GREETING);
    expect_cli(t, GREETING);
    client(t, EHLO);
    expect_srv(t, EHLO);
    return t;
}

static struct t *start_handshake(enum outbound_policy policy, bool audit)
{
    struct t *t = start_ehlo(policy, audit);

    server(t, EHLO_STARTTLS);
    expect_srv(t, "STARTTLS\r\n");
    server(t, "220 2.0.0 go ahead\r\n");
    assert_int_equal(actions(t), ENGINE_ACT_START_TLS_SERVER);
    assert_int_equal(t->e.state, OUTBOUND_HANDSHAKE);
    return t;
}

static void expect_refusal(struct t *t, const char *reply)
{
    expect_cli(t, reply);
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_int_equal(t->e.state, OUTBOUND_CLOSED);
    assert_int_equal(OPS.reason(&t->e), REASON_POLICY_REFUSAL);
    client(t, "MAIL FROM:<a>\r\n");
    expect_srv(t, "");
    assert_int_equal(nlogged, 0); /* a refusal made is not also "logged" */
}

static void relay_mail(struct t *t)
{
    client(t, "MAIL FROM:<a@legacy.example>\r\n");
    expect_srv(t, "MAIL FROM:<a@legacy.example>\r\n");
    server(t, "250 ok\r\n");
    expect_cli(t, "250 ok\r\n");
}

/* ---------- enforced ---------- */

static void test_dane_not_offered(void **state)
{
    struct t *t = start_ehlo(OUTBOUND_DANE, false);

    server(t, EHLO_PLAIN);
    expect_srv(t, "");
    expect_refusal(t, R_DANE_NO_STARTTLS);
    assert_string_equal(t->e.tls_note, "STARTTLS not offered");
    release(t);
}

static void test_dane_ehlo_refused(void **state)
{
    struct t *t = start_ehlo(OUTBOUND_DANE, false);

    server(t, "502 5.5.1 no EHLO\r\n");
    expect_refusal(t, R_DANE_NO_STARTTLS);
    release(t);
}

static void test_dane_starttls_refused(void **state)
{
    struct t *t = start_ehlo(OUTBOUND_DANE, false);

    server(t, EHLO_STARTTLS);
    expect_srv(t, "STARTTLS\r\n");
    server(t, "454 4.7.0 not now\r\n");
    expect_refusal(t, R_DANE_TLS_FAILED);
    release(t);
}

static void test_dane_handshake_failure(void **state)
{
    struct t *t = start_handshake(OUTBOUND_DANE, false);

    OPS.tls_failed(&t->e, ENGINE_TLS_HANDSHAKE, "TLSV1_ALERT_PROTOCOL_VERSION");
    event_pump(t);
    expect_refusal(t, R_DANE_TLS_FAILED);
    release(t);
}

static void test_dane_mismatch(void **state)
{
    struct t *t = start_handshake(OUTBOUND_DANE, false);

    OPS.tls_failed(&t->e, ENGINE_TLS_CERTIFICATE, "certificate verify failed: DANE no-match");
    event_pump(t);
    expect_refusal(t, R_DANE_CERT);
    assert_string_equal(t->e.tls_note, "certificate verify failed: DANE no-match");
    release(t);
}

static void test_dane_handshake_timeout(void **state)
{
    struct t *t = start_handshake(OUTBOUND_DANE, false);

    OPS.deadline(&t->e);
    event_pump(t);
    expect_refusal(t, R_DANE_TLS_FAILED);
    release(t);
}

static void test_dane_greeting_refused(void **state)
{
    struct t *t = start(OUTBOUND_DANE, false);

    server(t, "554 5.3.2 go away\r\n");
    expect_cli(t, "554 5.3.2 go away\r\n");
    assert_int_equal(t->e.state, OUTBOUND_REFUSED);
    client(t, "MAIL FROM:<a>\r\n");
    expect_srv(t, "");
    expect_refusal(t, R_GREETING);
    release(t);
}

static void test_dane_authenticated(void **state)
{
    struct t *t = start_handshake(OUTBOUND_DANE, false);

    OPS.tls_ready(&t->e);
    event_pump(t);
    expect_srv(t, EHLO);
    server(t, EHLO_PLAIN);
    expect_cli(t, EHLO_PLAIN);
    assert_true(t->e.server_tls);
    relay_mail(t);
    assert_int_equal(nlogged, 0);
    release(t);
}

/* ---------- enforce = false: logged, not refused ---------- */

static void test_audit_not_offered_is_logged(void **state)
{
    struct t *t = start_ehlo(OUTBOUND_OPPORTUNISTIC, true);

    server(t, EHLO_PLAIN);
    expect_cli(t, EHLO_PLAIN);
    assert_int_equal(t->e.state, OUTBOUND_RELAY);
    assert_int_equal(nlogged, 1);
    assert_string_equal(logged, "STARTTLS not offered");
    relay_mail(t);
    release(t);
}

static void test_audit_fallback_is_logged_once(void **state)
{
    struct t *t = start_handshake(OUTBOUND_OPPORTUNISTIC, true);

    OPS.tls_failed(&t->e, ENGINE_TLS_HANDSHAKE, "NO_SHARED_CIPHER");
    event_pump(t);
    assert_int_equal(actions(t), ENGINE_ACT_RECONNECT);
    assert_int_equal(nlogged, 0); /* not yet: the fallback may still be refused */
    OPS.reconnected(&t->e);
    event_pump(t);
    server(t, GREETING);
    expect_srv(t, EHLO);
    server(t, EHLO_STARTTLS);
    expect_cli(t, EHLO_PLAIN);
    assert_int_equal(nlogged, 1);
    assert_string_equal(logged, "NO_SHARED_CIPHER");
    relay_mail(t);
    release(t);
}

static void test_audit_tls_is_not_logged(void **state)
{
    struct t *t = start_handshake(OUTBOUND_OPPORTUNISTIC, true);

    OPS.tls_ready(&t->e);
    event_pump(t);
    expect_srv(t, EHLO);
    server(t, EHLO_PLAIN);
    expect_cli(t, EHLO_PLAIN);
    /* A mismatch under enforce = false is the session's to log: the engine
     * sees a completed handshake. */
    assert_int_equal(nlogged, 0);
    release(t);
}

static void test_audit_under_required_still_refuses(void **state)
{
    /* Unusable records with enforce = false leave the configured policy in
     * charge; a configured "required" refuses on its own. */
    struct t *t = start_ehlo(OUTBOUND_REQUIRED, true);

    server(t, EHLO_PLAIN);
    expect_cli(t, "421 4.7.5 TLS required by policy, but the destination does not offer "
                  "STARTTLS\r\n");
    assert_int_equal(OPS.reason(&t->e), REASON_POLICY_REFUSAL);
    assert_int_equal(nlogged, 0);
    release(t);
}

static void test_without_audit_nothing_is_logged(void **state)
{
    struct t *t = start_ehlo(OUTBOUND_OPPORTUNISTIC, false);

    server(t, EHLO_PLAIN);
    expect_cli(t, EHLO_PLAIN);
    assert_int_equal(nlogged, 0);
    release(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_dane_not_offered, teardown),
        cmocka_unit_test_teardown(test_dane_ehlo_refused, teardown),
        cmocka_unit_test_teardown(test_dane_starttls_refused, teardown),
        cmocka_unit_test_teardown(test_dane_handshake_failure, teardown),
        cmocka_unit_test_teardown(test_dane_mismatch, teardown),
        cmocka_unit_test_teardown(test_dane_handshake_timeout, teardown),
        cmocka_unit_test_teardown(test_dane_greeting_refused, teardown),
        cmocka_unit_test_teardown(test_dane_authenticated, teardown),
        cmocka_unit_test_teardown(test_audit_not_offered_is_logged, teardown),
        cmocka_unit_test_teardown(test_audit_fallback_is_logged_once, teardown),
        cmocka_unit_test_teardown(test_audit_tls_is_not_logged, teardown),
        cmocka_unit_test_teardown(test_audit_under_required_still_refuses, teardown),
        cmocka_unit_test_teardown(test_without_audit_nothing_is_logged, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
