/*
 * outbound: transcripts of the negotiation engine, one policy after the
 * other, through outbound_engine_ops. The driver is transcript.c.h.
 */
#include "proxy/core/outbound.h"

#define OPS outbound_engine_ops
#define TRANSCRIPT_ENGINE struct outbound
#define TRANSCRIPT_CLIENT(e, p, n) OPS.client(e, p, n)
#define TRANSCRIPT_SERVER(e, p, n) OPS.server(e, p, n)
#define TRANSCRIPT_TAKE_ACTIONS(e) OPS.take_actions(e)
#define TRANSCRIPT_FREE(e) relay_free(&(e)->relay)
#include "tests/unit/core/transcript.c.h"

#define R_NO_STARTTLS                                                                        \
    "421 4.7.5 TLS required by policy, but the destination does not offer STARTTLS\r\n"
#define R_TLS_FAILED                                                                         \
    "421 4.7.5 TLS required by policy, but STARTTLS with the destination failed\r\n"
#define R_CERT                                                                               \
    "421 4.7.5 TLS required by policy, but the destination's certificate did not verify\r\n"
#define R_GREETING                                                                           \
    "421 4.7.5 TLS required by policy, but the destination refused the session\r\n"
#define R_EHLO_FIRST "503 5.5.1 Send EHLO first\r\n"
#define R_BYE "221 2.0.0 Bye\r\n"
#define R_LOST "421 4.4.2 Destination connection lost\r\n"
#define R_FALLBACK_FAILED                                                                    \
    "421 4.4.2 Destination unavailable after TLS fallback, try again later\r\n"
#define R_DEST_TIMEOUT "421 4.4.2 Destination timeout, closing connection\r\n"
#define R_IDLE "421 4.4.2 Idle timeout exceeded, closing connection\r\n"
#define R_NEED_TLS "530 5.7.0 Must issue a STARTTLS command first\r\n"

#define GREETING "220 mx.dest.example ESMTP\r\n"
#define EHLO "EHLO legacy.example\r\n"
#define EHLO_STARTTLS                                                                        \
    "250-mx.dest.example\r\n"                                                                \
    "250-PIPELINING\r\n"                                                                     \
    "250-STARTTLS\r\n"                                                                       \
    "250 8BITMIME\r\n"
#define EHLO_PLAIN                                                                           \
    "250-mx.dest.example\r\n"                                                                \
    "250-PIPELINING\r\n"                                                                     \
    "250 8BITMIME\r\n"
#define EHLO_TLS                                                                             \
    "250-mx.dest.example\r\n"                                                                \
    "250-PIPELINING\r\n"                                                                     \
    "250-AUTH PLAIN\r\n"                                                                     \
    "250-CHUNKING\r\n"                                                                       \
    "250 8BITMIME\r\n"

/* ---------- the driver's outbound part ---------- */

static struct t *start(enum outbound_policy policy)
{
    struct outbound_cfg cfg = {.policy = policy};
    struct t *t = alloc_t();
    struct engine_io io = transcript_io(t);

    outbound_init(&t->e, &cfg, &io);
    return t;
}

static void event(struct t *t)
{
    collect(t);
    pump(t);
}

/* The greeting passes through; the client's EHLO goes on as sent. */
static struct t *start_ehlo(enum outbound_policy policy, const char *ehlo)
{
    struct t *t = start(policy);

    assert_true(OPS.awaiting_server(&t->e));
    server(t, GREETING);
    expect_cli(t, GREETING);
    assert_int_equal(t->e.state, OUTBOUND_CLIENT_EHLO);
    assert_false(OPS.awaiting_server(&t->e));
    client(t, ehlo);
    expect_srv(t, EHLO);
    expect_cli(t, "");
    return t;
}

/* Up to the handshake: STARTTLS offered and accepted. */
static struct t *start_handshake(enum outbound_policy policy)
{
    struct t *t = start_ehlo(policy, EHLO);

    server(t, EHLO_STARTTLS);
    expect_srv(t, "STARTTLS\r\n");
    expect_cli(t, "");
    assert_int_equal(t->e.state, OUTBOUND_STARTTLS);
    server(t, "220 2.0.0 go ahead\r\n");
    assert_int_equal(actions(t), ENGINE_ACT_START_TLS_SERVER);
    assert_int_equal(t->e.state, OUTBOUND_HANDSHAKE);
    expect_cli(t, "");
    return t;
}

/* The client's mail after the negotiation, relayed. */
static void relay_mail(struct t *t)
{
    client(t, "MAIL FROM:<a@legacy.example>\r\n");
    expect_srv(t, "MAIL FROM:<a@legacy.example>\r\n");
    server(t, "250 ok\r\n");
    expect_cli(t, "250 ok\r\n");
}

static void expect_refusal(struct t *t, const char *reply)
{
    expect_cli(t, reply);
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_int_equal(t->e.state, OUTBOUND_CLOSED);
    assert_int_equal(OPS.reason(&t->e), REASON_POLICY_REFUSAL);
    /* Nothing of the mail reaches the destination. */
    client(t, "MAIL FROM:<a>\r\n");
    expect_srv(t, "");
}

/* ---------- policy none ---------- */

static void test_none_never_tries(void **state)
{
    struct t *t = start_ehlo(OUTBOUND_NONE, EHLO);

    server(t, EHLO_STARTTLS);
    expect_srv(t, "");
    expect_cli(t, EHLO_PLAIN);
    assert_int_equal(t->e.state, OUTBOUND_RELAY);
    assert_string_equal(t->e.tls_note, "policy none");
    assert_false(t->e.server_tls);
    relay_mail(t);
    assert_int_equal(actions(t), 0);
    release(t);
}

/* ---------- opportunistic ---------- */

static void test_opportunistic_upgrades(void **state)
{
    struct t *t = start_handshake(OUTBOUND_OPPORTUNISTIC);

    OPS.tls_ready(&t->e);
    event(t);
    /* RFC 3207 §4.2: the EHLO again, over TLS. */
    expect_srv(t, EHLO);
    assert_int_equal(t->e.state, OUTBOUND_EHLO_TLS);
    server(t, EHLO_TLS);
    expect_cli(t, EHLO_TLS); /* over TLS AUTH stays */
    assert_int_equal(t->e.state, OUTBOUND_RELAY);
    assert_true(t->e.server_tls);
    assert_null(t->e.tls_note);
    /* AUTH may go to an encrypted destination; BDAT with CHUNKING. */
    client(t, "AUTH PLAIN AGEAYg==\r\n");
    expect_srv(t, "AUTH PLAIN AGEAYg==\r\n");
    server(t, "235 ok\r\n");
    expect_cli(t, "235 ok\r\n");
    client(t, "MAIL FROM:<a>\r\nBDAT 2 LAST\r\nhi");
    expect_srv(t, "MAIL FROM:<a>\r\nBDAT 2 LAST\r\nhi");
    release(t);
}

static void test_opportunistic_not_offered(void **state)
{
    struct t *t = start_ehlo(OUTBOUND_OPPORTUNISTIC, EHLO);

    server(t, EHLO_PLAIN);
    expect_srv(t, "");
    expect_cli(t, EHLO_PLAIN);
    assert_string_equal(t->e.tls_note, "STARTTLS not offered");
    relay_mail(t);
    /* No credentials to a plaintext destination. */
    client(t, "AUTH PLAIN AGEAYg==\r\n");
    expect_cli(t, R_NEED_TLS);
    expect_srv(t, "");
    release(t);
}

/* A failed handshake: a fresh plaintext connection, no second STARTTLS. */
static void reconnect_in_plaintext(struct t *t, const char *note)
{
    assert_int_equal(actions(t), ENGINE_ACT_RECONNECT);
    assert_int_equal(t->e.state, OUTBOUND_RECONNECT);
    assert_string_equal(t->e.tls_note, note);
    expect_cli(t, "");
    /* Whatever the old connection still says is not heard. */
    server(t, "250 stale\r\n");
    OPS.reconnected(&t->e);
    event(t);
    assert_int_equal(t->e.state, OUTBOUND_RE_GREETING);
    server(t, GREETING);
    expect_cli(t, ""); /* the client has had its greeting */
    expect_srv(t, EHLO);
    server(t, EHLO_STARTTLS);
    expect_srv(t, "");
    expect_cli(t, EHLO_PLAIN);
    assert_int_equal(t->e.state, OUTBOUND_RELAY);
    relay_mail(t);
}

static void test_opportunistic_handshake_failure_reconnects(void **state)
{
    struct t *t = start_handshake(OUTBOUND_OPPORTUNISTIC);

    OPS.tls_failed(&t->e, ENGINE_TLS_HANDSHAKE, "alert handshake failure");
    event(t);
    reconnect_in_plaintext(t, "alert handshake failure");
    release(t);
}

static void test_opportunistic_starttls_refused(void **state)
{
    struct t *t = start_ehlo(OUTBOUND_OPPORTUNISTIC, EHLO);

    server(t, EHLO_STARTTLS);
    expect_srv(t, "STARTTLS\r\n");
    server(t, "454 4.7.0 TLS not available\r\n");
    reconnect_in_plaintext(t, "STARTTLS refused");
    release(t);
}

static void test_opportunistic_no_reply_to_starttls(void **state)
{
    struct t *t = start_ehlo(OUTBOUND_OPPORTUNISTIC, EHLO);

    server(t, EHLO_STARTTLS);
    expect_srv(t, "STARTTLS\r\n");
    assert_true(OPS.awaiting_server(&t->e));
    OPS.deadline(&t->e);
    event(t);
    reconnect_in_plaintext(t, "no reply to STARTTLS");
    release(t);
}

static void test_opportunistic_fallback_refused(void **state)
{
    struct t *t = start_handshake(OUTBOUND_OPPORTUNISTIC);

    OPS.tls_failed(&t->e, ENGINE_TLS_TIMEOUT, "handshake timeout");
    event(t);
    assert_int_equal(actions(t), ENGINE_ACT_RECONNECT);
    OPS.reconnected(&t->e);
    event(t);
    server(t, "554 5.3.2 busy\r\n");
    expect_cli(t, R_FALLBACK_FAILED);
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_int_equal(OPS.reason(&t->e), REASON_DESTINATION_REFUSED);
    release(t);
}

/* CVE-2021-38371: bytes behind the 220 would be read as if over TLS. */
static void test_response_injection(void **state)
{
    struct t *t = start_ehlo(OUTBOUND_REQUIRED, EHLO);

    server(t, EHLO_STARTTLS);
    expect_srv(t, "STARTTLS\r\n");
    server(t, "220 go ahead\r\n250 injected\r\n");
    expect_refusal(t, R_TLS_FAILED);
    assert_string_equal(t->e.tls_note, "data after the 220 reply to STARTTLS");
    release(t);
}

/* ---------- required and verify ---------- */

static void test_required_not_offered(void **state)
{
    struct t *t = start_ehlo(OUTBOUND_REQUIRED, EHLO);

    server(t, EHLO_PLAIN);
    expect_srv(t, "");
    expect_refusal(t, R_NO_STARTTLS);
    assert_string_equal(t->e.tls_note, "STARTTLS not offered");
    release(t);
}

static void test_required_handshake_failure(void **state)
{
    struct t *t = start_handshake(OUTBOUND_REQUIRED);

    /* Under required a certificate is not checked: no certificate reply. */
    OPS.tls_failed(&t->e, ENGINE_TLS_CERTIFICATE, "certificate verify failed");
    event(t);
    expect_refusal(t, R_TLS_FAILED);
    release(t);
}

static void test_required_no_reply_to_starttls(void **state)
{
    struct t *t = start_ehlo(OUTBOUND_REQUIRED, EHLO);

    server(t, EHLO_STARTTLS);
    expect_srv(t, "STARTTLS\r\n");
    OPS.deadline(&t->e);
    event(t);
    expect_refusal(t, R_TLS_FAILED);
    assert_string_equal(t->e.tls_note, "no reply to STARTTLS");
    release(t);
}

static void test_required_ehlo_refused(void **state)
{
    struct t *t = start_ehlo(OUTBOUND_REQUIRED, EHLO);

    server(t, "502 5.5.1 no EHLO here\r\n");
    expect_refusal(t, R_NO_STARTTLS);
    assert_string_equal(t->e.tls_note, "EHLO refused");
    release(t);
}

static void test_verify_certificate_failure(void **state)
{
    struct t *t = start_handshake(OUTBOUND_VERIFY);

    OPS.tls_failed(&t->e, ENGINE_TLS_CERTIFICATE, "unable to get local issuer certificate");
    event(t);
    expect_refusal(t, R_CERT);
    assert_string_equal(t->e.tls_note, "unable to get local issuer certificate");
    release(t);
}

static void test_verify_handshake_failure(void **state)
{
    struct t *t = start_handshake(OUTBOUND_VERIFY);

    /* A message that mentions certificates is not a certificate failure:
     * the kind decides, not the wording. */
    OPS.tls_failed(&t->e, ENGINE_TLS_HANDSHAKE, "certificate unknown (alert)");
    event(t);
    expect_refusal(t, R_TLS_FAILED);
    release(t);
}

static void test_verify_handshake_timeout(void **state)
{
    struct t *t = start_handshake(OUTBOUND_VERIFY);

    OPS.deadline(&t->e); /* a deadline in the handshake is its timeout */
    event(t);
    expect_refusal(t, R_TLS_FAILED);
    assert_string_equal(t->e.tls_note, "handshake timeout");
    release(t);
}

static void test_verify_upgrades(void **state)
{
    struct t *t = start_handshake(OUTBOUND_VERIFY);

    OPS.tls_ready(&t->e);
    event(t);
    expect_srv(t, EHLO);
    server(t, EHLO_TLS);
    expect_cli(t, EHLO_TLS);
    relay_mail(t);
    release(t);
}

static void test_strict_greeting_refused(void **state)
{
    struct t *t = start(OUTBOUND_REQUIRED);

    server(t, "554 5.3.2 not now\r\n");
    expect_cli(t, "554 5.3.2 not now\r\n");
    assert_int_equal(t->e.state, OUTBOUND_REFUSED);
    client(t, EHLO);
    expect_refusal(t, R_GREETING);
    release(t);

    t = start(OUTBOUND_VERIFY);
    server(t, "554 5.3.2 not now\r\n");
    expect_cli(t, "554 5.3.2 not now\r\n");
    client(t, "QUIT\r\n");
    expect_cli(t, R_BYE);
    assert_int_equal(OPS.reason(&t->e), REASON_QUIT);
    release(t);
}

static void test_opportunistic_greeting_refused_relayed(void **state)
{
    struct t *t = start(OUTBOUND_OPPORTUNISTIC);

    server(t, "554 5.3.2 not now\r\n");
    expect_cli(t, "554 5.3.2 not now\r\n");
    assert_int_equal(t->e.state, OUTBOUND_RELAY);
    client(t, "QUIT\r\n");
    expect_srv(t, "QUIT\r\n");
    release(t);
}

/* ---------- HELO clients ---------- */

static void test_helo_client(void **state)
{
    struct t *t = start(OUTBOUND_OPPORTUNISTIC);

    server(t, GREETING);
    expect_cli(t, GREETING);
    /* Sent on as EHLO, so STARTTLS can be seen. */
    client(t, "HELO legacy.example\r\n");
    expect_srv(t, EHLO);
    server(t, EHLO_STARTTLS);
    server(t, "220 go\r\n");
    expect_srv(t, "STARTTLS\r\n");
    assert_int_equal(actions(t), ENGINE_ACT_START_TLS_SERVER);
    OPS.tls_ready(&t->e);
    event(t);
    expect_srv(t, EHLO);
    server(t, EHLO_TLS);
    /* A HELO client gets a HELO reply, and no extensions. */
    expect_cli(t, "250 mx.dest.example\r\n");
    client(t, "BDAT 1 LAST\r\nx");
    expect_cli(t, "503 5.5.1 BDAT without CHUNKING\r\n");
    expect_srv(t, "");
    release(t);
}

static void test_helo_client_ehlo_refused(void **state)
{
    struct t *t = start(OUTBOUND_OPPORTUNISTIC);

    server(t, GREETING);
    client(t, "HELO legacy.example\r\n");
    expect_srv(t, EHLO);
    server(t, "500 5.5.1 what?\r\n");
    expect_srv(t, "HELO legacy.example\r\n");
    server(t, "250 mx.dest.example\r\n");
    expect_cli(t, GREETING "250 mx.dest.example\r\n");
    assert_string_equal(t->e.tls_note, "EHLO refused");
    relay_mail(t);
    release(t);
}

/* A reply line with no domain gives the HELO client one without either
 * (found by outbound_fuzz: no empty write for the missing domain). */
static void test_helo_reply_without_domain(void **state)
{
    struct t *t = start(OUTBOUND_NONE);

    server(t, GREETING);
    client(t, "HELO legacy.example\r\n");
    server(t, "250\r\n");
    expect_cli(t, GREETING "250 \r\n");
    assert_int_equal(t->e.state, OUTBOUND_RELAY);
    release(t);
}

/* ---------- before EHLO, deadlines, the destination going away ---------- */

static void test_commands_before_ehlo(void **state)
{
    struct t *t = start(OUTBOUND_OPPORTUNISTIC);

    client(t, "NOOP\r\n"); /* held until the greeting */
    expect_cli(t, "");
    server(t, GREETING);
    expect_cli(t, GREETING "250 2.0.0 OK\r\n");
    client(t, "MAIL FROM:<a>\r\n");
    expect_cli(t, R_EHLO_FIRST);
    client(t, "QUIT\r\n");
    expect_cli(t, R_BYE);
    expect_srv(t, "");
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_int_equal(OPS.reason(&t->e), REASON_QUIT);
    release(t);
}

static void test_deadlines(void **state)
{
    struct t *t = start(OUTBOUND_OPPORTUNISTIC);

    OPS.deadline(&t->e); /* the greeting is owed */
    event(t);
    expect_cli(t, R_DEST_TIMEOUT);
    assert_int_equal(OPS.reason(&t->e), REASON_BACKEND_TIMEOUT);
    release(t);

    t = start_ehlo(OUTBOUND_NONE, EHLO);
    server(t, EHLO_PLAIN);
    expect_cli(t, EHLO_PLAIN);
    OPS.deadline(&t->e); /* nothing owed: the client is idle */
    event(t);
    expect_cli(t, R_IDLE);
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_int_equal(OPS.reason(&t->e), REASON_TIMEOUT);
    release(t);

    t = start_ehlo(OUTBOUND_NONE, EHLO);
    server(t, EHLO_PLAIN);
    expect_cli(t, EHLO_PLAIN);
    client(t, "NOOP\r\n");
    OPS.deadline(&t->e); /* the relay owes a reply */
    event(t);
    expect_cli(t, R_DEST_TIMEOUT);
    assert_int_equal(OPS.reason(&t->e), REASON_BACKEND_TIMEOUT);
    release(t);
}

static void test_destination_eof(void **state)
{
    struct t *t = start_ehlo(OUTBOUND_OPPORTUNISTIC, EHLO);

    OPS.server_eof(&t->e);
    event(t);
    expect_cli(t, R_LOST);
    assert_int_equal(OPS.reason(&t->e), REASON_DESTINATION_CLOSED);
    release(t);

    /* In the relay phase the relay says it (in its words). */
    t = start_ehlo(OUTBOUND_NONE, EHLO);
    server(t, EHLO_PLAIN);
    expect_cli(t, EHLO_PLAIN);
    OPS.server_eof(&t->e);
    event(t);
    expect_cli(t, "421 4.4.2 Backend connection lost\r\n");
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_int_equal(OPS.reason(&t->e), REASON_BACKEND_CLOSED);
    release(t);

    /* During STARTTLS: a failed STARTTLS, policy decides. */
    t = start_handshake(OUTBOUND_REQUIRED);
    OPS.server_eof(&t->e);
    event(t);
    expect_refusal(t, R_TLS_FAILED);
    release(t);
}

static void test_relay_close_and_quit(void **state)
{
    struct t *t = start_ehlo(OUTBOUND_NONE, EHLO);

    server(t, EHLO_PLAIN);
    client(t, "QUIT\r\n");
    expect_srv(t, "QUIT\r\n");
    server(t, "221 bye\r\n");
    expect_cli(t, EHLO_PLAIN "221 bye\r\n");
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_int_equal(t->e.state, OUTBOUND_CLOSED);
    assert_int_equal(OPS.reason(&t->e), REASON_QUIT);
    /* Closed is final. */
    client(t, "NOOP\r\n");
    server(t, "250 late\r\n");
    expect_cli(t, "");
    expect_srv(t, "");
    release(t);
}

static void test_abort_and_progress(void **state)
{
    struct t *t = start_ehlo(OUTBOUND_NONE, EHLO);
    uint64_t before = OPS.progress(&t->e);

    server(t, EHLO_PLAIN);
    client(t, "NOOP\r\n");
    assert_true(OPS.progress(&t->e) > before);
    OPS.abort(&t->e, "421 4.3.2 Shutting down\r\n", REASON_SHUTDOWN);
    event(t);
    expect_cli(t, EHLO_PLAIN "421 4.3.2 Shutting down\r\n");
    assert_int_equal(OPS.reason(&t->e), REASON_SHUTDOWN);
    OPS.abort(&t->e, "421 again\r\n", REASON_TIMEOUT); /* idempotent */
    expect_cli(t, "");
    assert_int_equal(OPS.reason(&t->e), REASON_SHUTDOWN);
    release(t);
}

static void test_state_names_and_log(void **state)
{
    assert_string_equal(outbound_state_str(OUTBOUND_GREETING), "GREETING");
    assert_string_equal(outbound_state_str(OUTBOUND_RELAY), "RELAY");
    assert_string_equal(outbound_state_str(OUTBOUND_CLOSED), "CLOSED");
    assert_string_equal(outbound_state_str((enum outbound_state)99), "?");
    assert_string_equal(OPS.name, "outbound");

    struct t *t = start_handshake(OUTBOUND_OPPORTUNISTIC);
    assert_string_equal(t->states, "outbound:GREETING>CLIENT_EHLO outbound:CLIENT_EHLO>EHLO "
                                   "outbound:EHLO>STARTTLS outbound:STARTTLS>HANDSHAKE ");
    release(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_none_never_tries, teardown),
        cmocka_unit_test_teardown(test_opportunistic_upgrades, teardown),
        cmocka_unit_test_teardown(test_opportunistic_not_offered, teardown),
        cmocka_unit_test_teardown(test_opportunistic_handshake_failure_reconnects, teardown),
        cmocka_unit_test_teardown(test_opportunistic_starttls_refused, teardown),
        cmocka_unit_test_teardown(test_opportunistic_no_reply_to_starttls, teardown),
        cmocka_unit_test_teardown(test_opportunistic_fallback_refused, teardown),
        cmocka_unit_test_teardown(test_response_injection, teardown),
        cmocka_unit_test_teardown(test_required_not_offered, teardown),
        cmocka_unit_test_teardown(test_required_handshake_failure, teardown),
        cmocka_unit_test_teardown(test_required_no_reply_to_starttls, teardown),
        cmocka_unit_test_teardown(test_required_ehlo_refused, teardown),
        cmocka_unit_test_teardown(test_verify_certificate_failure, teardown),
        cmocka_unit_test_teardown(test_verify_handshake_failure, teardown),
        cmocka_unit_test_teardown(test_verify_handshake_timeout, teardown),
        cmocka_unit_test_teardown(test_verify_upgrades, teardown),
        cmocka_unit_test_teardown(test_strict_greeting_refused, teardown),
        cmocka_unit_test_teardown(test_opportunistic_greeting_refused_relayed, teardown),
        cmocka_unit_test_teardown(test_helo_client, teardown),
        cmocka_unit_test_teardown(test_helo_client_ehlo_refused, teardown),
        cmocka_unit_test_teardown(test_helo_reply_without_domain, teardown),
        cmocka_unit_test_teardown(test_commands_before_ehlo, teardown),
        cmocka_unit_test_teardown(test_deadlines, teardown),
        cmocka_unit_test_teardown(test_destination_eof, teardown),
        cmocka_unit_test_teardown(test_relay_close_and_quit, teardown),
        cmocka_unit_test_teardown(test_abort_and_progress, teardown),
        cmocka_unit_test_teardown(test_state_names_and_log, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
