/*
 * inbound: a backend that misbehaves (EOF, unsolicited or malformed
 * replies, 421, 3xx to commands without content) and HELO-only backends.
 */
#include "tests/unit/core/inbound_fixture.c.h"

/* ---------- backend trouble ---------- */

static void test_backend_eof(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    client(t, "MAIL FROM:<a>\r\n");
    server_eof(t);
    expect_cli(t, R_LOST);
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_string_equal(reason_str(t->e.reason), "backend_closed");
    assert_int_equal(t->e.state, INBOUND_CLOSED);
    /* Closed is final: no more output whatever arrives. */
    client(t, "RCPT TO:<b>\r\n");
    server(t, "250 late\r\n");
    server_eof(t);
    OPS.tls_ready(&t->e);
    expect_cli(t, "");
    expect_srv(t, "MAIL FROM:<a>\r\n");
    release(t);
}

static void test_backend_eof_before_greeting(void **state)
{
    struct t *t = start(NULL);

    server_eof(t);
    expect_cli(t, R_LOST);
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    release(t);
}

static void test_unsolicited_reply(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    server(t, "250 surprise\r\n");
    expect_cli(t, R_PROTOCOL);
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_string_equal(reason_str(t->e.reason), "protocol_error");
    release(t);
}

static void test_extra_reply(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    client(t, "NOOP\r\n");
    server(t, "250 ok\r\n250 extra\r\n");
    expect_cli(t, "250 ok\r\n" R_PROTOCOL);
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    release(t);
}

static void test_unsolicited_421(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    server(t, "421 4.3.2 shutting down\r\n");
    expect_cli(t, "421 4.3.2 shutting down\r\n");
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_string_equal(reason_str(t->e.reason), "backend_closed");
    release(t);
}

static void test_421_reply_closes(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    client(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\n");
    server(t, "421 4.7.0 too many errors\r\n");
    expect_cli(t, "421 4.7.0 too many errors\r\n");
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    release(t);
}

static void test_malformed_reply(void **state)
{
    static const char *const bad[] = {
        "hello\r\n", "250 ok\n", "250-a\r\n251 b\r\n", "199 x\r\n", "2500 x\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct t *t = start(NULL);
        server(t, bad[i]);
        expect_cli(t, R_PROTOCOL);
        assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
        assert_string_equal(reason_str(t->e.reason), "protocol_error");
        release(t);
    }
}

static void test_overlong_reply(void **state)
{
    struct t *t = start(NULL);
    static char big[SMTP_REPLY_MAX + 100];

    memset(big, 'x', sizeof(big));
    memcpy(big, "220 ", 4);
    server_n(t, big, sizeof(big));
    expect_cli(t, R_PROTOCOL);
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    release(t);
}

/* ---------- HELO-only backends ---------- */

static void test_helo_fallback(void **state)
{
    struct t *t = start(NULL);

    greet(t);
    client(t, EHLO);
    expect_srv(t, EHLO);
    server(t, "502 5.5.2 Error: command not recognized\r\n");
    /* The backend gets the client's HELO; the client an EHLO reply of the
     * proxy's own, with STARTTLS. */
    expect_cli(t, "");
    expect_srv(t, "HELO client.example\r\n");
    assert_true(OPS.awaiting_server(&t->e));
    server(t, "250 mx.example\r\n");
    expect_cli(t, "250-mx.example\r\n250 STARTTLS\r\n");
    assert_int_equal(t->e.relay.caps, 0);
    client(t, "STARTTLS\r\n");
    expect_cli(t, R_STARTTLS);
    assert_int_equal(actions(t), ENGINE_ACT_START_TLS_CLIENT);
    tls_ready(t);
    /* After TLS the same, without STARTTLS. */
    client(t, "EHLO again.example\r\n");
    server(t, "500 5.5.1 unknown command\r\n");
    expect_srv(t, "EHLO again.example\r\nHELO again.example\r\n");
    server(t, "250 mx.example Hello\r\n");
    expect_cli(t, "250 mx.example\r\n");
    client(t, "MAIL FROM:<a>\r\n");
    expect_srv(t, "MAIL FROM:<a>\r\n");
    server(t, "250 ok\r\n");
    expect_cli(t, "250 ok\r\n");
    client(t, "BDAT 3 LAST\r\nabc");
    expect_cli(t, R_BDAT_NO_CHUNKING);
    release(t);
}

static void test_helo_fallback_domain_from_greeting(void **state)
{
    struct t *t = start(NULL);

    greet(t);
    client(t, EHLO);
    server(t, "500 unknown\r\n");
    server(t, "250 \r\n"); /* no domain in the HELO reply */
    expect_cli(t, "250-mx.example\r\n250 STARTTLS\r\n");
    release(t);
}

static void test_helo_fallback_refused_or_pipelined(void **state)
{
    struct t *t = start(NULL);

    /* HELO refused too: the client's EHLO gets that answer. */
    greet(t);
    client(t, EHLO);
    server(t, "502 no\r\n");
    server(t, "550 5.7.1 go away\r\n");
    expect_cli(t, "550 5.7.1 go away\r\n");
    release(t);

    /* The client pipelined behind its EHLO: the server has read more than
     * the EHLO, its refusal goes through as it is. */
    t = start(NULL);
    greet(t);
    client(t, EHLO "NOOP\r\n");
    expect_srv(t, EHLO "NOOP\r\n");
    server(t, "502 no\r\n250 ok\r\n");
    expect_cli(t, "502 no\r\n250 ok\r\n");
    expect_srv(t, "");
    release(t);

    /* No argument, nothing to say in a HELO. */
    t = start(NULL);
    greet(t);
    client(t, "EHLO\r\n");
    server(t, "502 no\r\n");
    expect_cli(t, "502 no\r\n");
    expect_srv(t, "EHLO\r\n");
    release(t);
}

/* ---------- 3xx to commands that take no content ---------- */

static void test_3xx_to_unknown_verb_closes(void **state)
{
    static const char *const cases[][2] = {
        {"XEXCH50 2 2\r\n", "354 Send binary data\r\n"},
        {"RCPT TO:<b>\r\n", "354 go ahead\r\n"},
        {"NOOP\r\n", "334 VXNlcm5hbWU6\r\n"},
        {"DATA\r\n", "334 what\r\n"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct t *t = session_after_ehlo(NULL);
        client(t, cases[i][0]);
        expect_srv(t, cases[i][0]);
        server(t, cases[i][1]);
        /* Never the 3xx: the client would send what the backend reads as
         * content while the proxy reads commands. */
        expect_cli(t, R_PROTOCOL);
        assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
        assert_int_equal(OPS.reason(&t->e), REASON_PROTOCOL_ERROR);
        client(t, "MAIL FROM:<x>\r\n");
        expect_srv(t, "");
        release(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_backend_eof, teardown),
        cmocka_unit_test_teardown(test_backend_eof_before_greeting, teardown),
        cmocka_unit_test_teardown(test_unsolicited_reply, teardown),
        cmocka_unit_test_teardown(test_extra_reply, teardown),
        cmocka_unit_test_teardown(test_unsolicited_421, teardown),
        cmocka_unit_test_teardown(test_421_reply_closes, teardown),
        cmocka_unit_test_teardown(test_malformed_reply, teardown),
        cmocka_unit_test_teardown(test_overlong_reply, teardown),
        cmocka_unit_test_teardown(test_helo_fallback, teardown),
        cmocka_unit_test_teardown(test_helo_fallback_domain_from_greeting, teardown),
        cmocka_unit_test_teardown(test_helo_fallback_refused_or_pipelined, teardown),
        cmocka_unit_test_teardown(test_3xx_to_unknown_verb_closes, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
