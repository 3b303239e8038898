/*
 * inbound: STARTTLS from the client (RFC 3207: ordering, plaintext
 * behind it, repeated EHLO), implicit TLS.
 */
#include "tests/unit/core/inbound_fixture.c.h"

/* ---------- STARTTLS ---------- */

static void test_starttls(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    upgrade(t);
    assert_true(t->e.tls_active);
    client(t, "MAIL FROM:<a>\r\n");
    expect_srv(t, "MAIL FROM:<a>\r\n");
    release(t);
}

static void test_starttls_discards_plaintext_behind(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    /* CVE-2011-0411: commands injected behind STARTTLS in the same packet. */
    client(t, "STARTTLS\r\nMAIL FROM:<evil>\r\nRCPT TO:<evil>\r\n");
    expect_cli(t, R_STARTTLS);
    expect_srv(t, "");
    assert_int_equal(actions(t), ENGINE_ACT_START_TLS_CLIENT);
    assert_int_equal(t->ncpend, 0); /* consumed, i.e. dropped */
    /* And whatever plaintext still arrives before the handshake completes. */
    client(t, "DATA\r\n");
    expect_cli(t, "");
    expect_srv(t, "");
    tls_ready(t);
    expect_cli(t, "");
    expect_srv(t, "");
    /* Everything learnt before TLS is forgotten: EHLO first. */
    client(t, "MAIL FROM:<a>\r\n");
    expect_cli(t, R_EHLO_AFTER_TLS);
    expect_srv(t, "");
    client(t, "RCPT TO:<a>\r\nDATA\r\nVRFY x\r\nAUTH PLAIN\r\nBDAT 3\r\nabc");
    expect_cli(t, R_EHLO_AFTER_TLS R_EHLO_AFTER_TLS R_EHLO_AFTER_TLS R_EHLO_AFTER_TLS
                      R_EHLO_AFTER_TLS);
    expect_srv(t, "");
    ehlo_with(t, EHLO_REPLY, EHLO_REPLY_TLS);
    client(t, "MAIL FROM:<a>\r\n");
    expect_srv(t, "MAIL FROM:<a>\r\n");
    assert_false(contains(t->srv, t->nsrv, "evil"));
    release(t);
}

static void test_starttls_waits_for_earlier_replies(void **state)
{
    struct t *t = start(NULL);

    greet(t);
    client(t, EHLO "STARTTLS\r\nMAIL FROM:<evil>\r\n");
    expect_srv(t, EHLO);
    expect_cli(t, "");
    assert_int_equal(actions(t), 0);
    assert_int_equal(t->e.state, INBOUND_STARTTLS);
    /* Plaintext that arrives while the 220 waits is dropped too. */
    client(t, "RCPT TO:<evil>\r\n");
    server(t, EHLO_REPLY);
    expect_cli(t, EHLO_REPLY_PLAIN R_STARTTLS);
    assert_int_equal(actions(t), ENGINE_ACT_START_TLS_CLIENT);
    /* START_TLS was raised only once the 220 had been written. */
    assert_int_equal(t->ev[t->nev - 1].at_client, t->ncli);
    expect_srv(t, "");
    assert_false(OPS.awaiting_server(&t->e));
    release(t);
}

static void test_starttls_after_noop(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    client(t, "NOOP\r\nSTARTTLS\r\n");
    expect_srv(t, "NOOP\r\n");
    expect_cli(t, "");
    assert_int_equal(actions(t), 0);
    server(t, "250 2.0.0 ok\r\n");
    expect_cli(t, "250 2.0.0 ok\r\n" R_STARTTLS);
    assert_int_equal(actions(t), ENGINE_ACT_START_TLS_CLIENT);
    release(t);
}

static void test_starttls_with_args(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    client(t, "STARTTLS now\r\n");
    expect_cli(t, R_STARTTLS_ARGS);
    expect_srv(t, "");
    assert_int_equal(actions(t), 0);
    /* Still possible properly. */
    client(t, "STARTTLS\r\n");
    expect_cli(t, R_STARTTLS);
    assert_int_equal(actions(t), ENGINE_ACT_START_TLS_CLIENT);
    release(t);
}

static void test_starttls_before_ehlo(void **state)
{
    struct t *t = start(NULL);

    greet(t);
    client(t, "STARTTLS\r\n");
    expect_cli(t, R_EHLO_FIRST);
    expect_srv(t, "");
    assert_int_equal(actions(t), 0);
    release(t);
}

static void test_starttls_in_transaction(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    client(t, "MAIL FROM:<a>\r\n");
    server(t, "250 ok\r\n");
    client(t, "STARTTLS\r\n");
    expect_cli(t, "250 ok\r\n" R_IN_TXN);
    expect_srv(t, "MAIL FROM:<a>\r\n");
    assert_int_equal(actions(t), 0);
    /* RSET ends the transaction; then it is allowed. */
    client(t, "RSET\r\n");
    server(t, "250 reset\r\n");
    client(t, "STARTTLS\r\n");
    expect_cli(t, "250 reset\r\n" R_STARTTLS);
    assert_int_equal(actions(t), ENGINE_ACT_START_TLS_CLIENT);
    release(t);
}

static void test_starttls_after_refused_mail(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    client(t, "MAIL FROM:<a>\r\n");
    server(t, "550 no\r\n");
    client(t, "STARTTLS\r\n");
    expect_cli(t, "550 no\r\n" R_STARTTLS);
    release(t);
}

static void test_starttls_inside_tls(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    upgrade(t);
    client(t, "STARTTLS\r\n");
    expect_cli(t, R_TLS_ACTIVE);
    expect_srv(t, "");
    assert_int_equal(actions(t), 0);
    release(t);
}

static void test_starttls_inside_tls_before_ehlo(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    client(t, "STARTTLS\r\n");
    tls_ready(t);
    expect_cli(t, R_STARTTLS);
    actions(t);
    client(t, "STARTTLS\r\n");
    expect_cli(t, R_TLS_ACTIVE);
    expect_srv(t, "");
    assert_int_equal(actions(t), 0);
    release(t);
}

/* ---------- implicit TLS ---------- */

static void test_implicit_tls(void **state)
{
    struct inbound_cfg cfg = {.implicit_tls = true, .require_tls = true};
    struct t *t = start(&cfg);

    /* The session reports the handshake before dialling the backend. */
    tls_ready(t);
    greet(t);
    ehlo_with(t, EHLO_REPLY, EHLO_REPLY_TLS);
    client(t, "STARTTLS\r\n");
    expect_cli(t, R_TLS_ACTIVE);
    assert_int_equal(actions(t), 0);
    client(t, "AUTH PLAIN AGEAYg==\r\n");
    expect_srv(t, "AUTH PLAIN AGEAYg==\r\n");
    server(t, "235 ok\r\n");
    expect_cli(t, "235 ok\r\n");
    client(t, "MAIL FROM:<a>\r\n");
    expect_srv(t, "MAIL FROM:<a>\r\n");
    release(t);
}

static void test_implicit_tls_commands_before_ehlo(void **state)
{
    struct inbound_cfg cfg = {.implicit_tls = true};
    struct t *t = start(&cfg);

    tls_ready(t);
    greet(t);
    /* No STARTTLS happened, so there is nothing to say EHLO again for. */
    client(t, "MAIL FROM:<a>\r\n");
    expect_srv(t, "MAIL FROM:<a>\r\n");
    release(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_starttls, teardown),
        cmocka_unit_test_teardown(test_starttls_discards_plaintext_behind, teardown),
        cmocka_unit_test_teardown(test_starttls_waits_for_earlier_replies, teardown),
        cmocka_unit_test_teardown(test_starttls_after_noop, teardown),
        cmocka_unit_test_teardown(test_starttls_with_args, teardown),
        cmocka_unit_test_teardown(test_starttls_before_ehlo, teardown),
        cmocka_unit_test_teardown(test_starttls_in_transaction, teardown),
        cmocka_unit_test_teardown(test_starttls_after_refused_mail, teardown),
        cmocka_unit_test_teardown(test_starttls_inside_tls, teardown),
        cmocka_unit_test_teardown(test_starttls_inside_tls_before_ehlo, teardown),
        cmocka_unit_test_teardown(test_implicit_tls, teardown),
        cmocka_unit_test_teardown(test_implicit_tls_commands_before_ehlo, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
