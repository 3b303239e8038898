/*
 * inbound: the verbs the proxy keeps for itself or refuses (AUTH before
 * TLS, XCLIENT, XFORWARD, TURN), lines that only look harmless, and
 * require_tls.
 */
#include "tests/unit/core/inbound_fixture.c.h"

/* ---------- AUTH, XCLIENT, XFORWARD, TURN ---------- */

static void test_auth_before_tls(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    client(t, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    expect_cli(t, R_NEED_TLS);
    expect_srv(t, "");
    client(t, "auth login\r\n");
    expect_cli(t, R_NEED_TLS);
    expect_srv(t, "");
    /* The session goes on. */
    client(t, "NOOP\r\n");
    expect_srv(t, "NOOP\r\n");
    release(t);
}

static void test_auth_after_tls(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    upgrade(t);
    client(t, "AUTH LOGIN\r\n");
    expect_srv(t, "AUTH LOGIN\r\n");
    assert_int_equal(t->e.relay.state, RELAY_HOLD);
    server(t, "334 VXNlcm5hbWU6\r\n");
    expect_cli(t, "334 VXNlcm5hbWU6\r\n");
    assert_int_equal(t->e.relay.state, RELAY_AUTH);
    /* The continuation line is not a command: "MAIL" here is a user name. */
    client(t, "MAIL\r\n");
    expect_srv(t, "MAIL\r\n");
    expect_cli(t, "");
    server(t, "334 UGFzc3dvcmQ6\r\n");
    expect_cli(t, "334 UGFzc3dvcmQ6\r\n");
    client(t, "c2VjcmV0\r\n");
    expect_srv(t, "c2VjcmV0\r\n");
    server(t, "235 2.7.0 Authentication successful\r\n");
    expect_cli(t, "235 2.7.0 Authentication successful\r\n");
    assert_int_equal(t->e.relay.state, RELAY_COMMAND);
    client(t, "MAIL FROM:<a>\r\n");
    expect_srv(t, "MAIL FROM:<a>\r\n");
    release(t);
}

static void test_auth_long_response_line(void **state)
{
    struct t *t = session_after_ehlo(NULL);
    static char line[5002];

    upgrade(t);
    client(t, "AUTH GSSAPI\r\n");
    server(t, "334 \r\n");
    expect_srv(t, "AUTH GSSAPI\r\n");
    expect_cli(t, "334 \r\n");
    /* AUTH responses may be far longer than a command line. */
    memset(line, 'Q', 5000);
    memcpy(line + 5000, "\r\n", 2);
    client_n(t, line, sizeof(line));
    assert_int_equal(t->nsrv - t->rsrv, sizeof(line));
    t->rsrv = t->nsrv;
    server(t, "235 ok\r\n");
    expect_cli(t, "235 ok\r\n");
    release(t);
}

static void test_auth_bad_response_cancels(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    upgrade(t);
    client(t, "AUTH LOGIN\r\n");
    server(t, "334 VXNlcm5hbWU6\r\n");
    expect_srv(t, "AUTH LOGIN\r\n");
    expect_cli(t, "334 VXNlcm5hbWU6\r\n");
    client(t, "bad\nline\r\n");
    expect_srv(t, "*\r\n");
    server(t, "501 5.0.0 cancelled\r\n");
    expect_cli(t, "501 5.0.0 cancelled\r\n");
    expect_srv(t, "line\r\n"); /* a command again (unknown, relayed) */
    release(t);
}

static void test_xclient_xforward_refused(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    client(t, "XCLIENT ADDR=192.0.2.1 NAME=trusted.example\r\n");
    expect_cli(t, R_RESERVED);
    client(t, "xforward ADDR=192.0.2.1\r\n");
    expect_cli(t, R_RESERVED);
    client(t, "TURN\r\n");
    expect_cli(t, R_NOT_IMPL);
    client(t, "ATRN example.org\r\n");
    expect_cli(t, R_NOT_IMPL);
    expect_srv(t, "");
    /* Also over TLS. */
    upgrade(t);
    client(t, "XCLIENT ADDR=192.0.2.1\r\n");
    expect_cli(t, R_RESERVED);
    expect_srv(t, "");
    release(t);
}

/*
 * A verb the proxy must intercept, written so that the proxy does not
 * recognise it but the backend does: Postfix's smtpd_token.c splits
 * commands on any white space and skips leading white space. Such a line
 * must never be relayed (recognise it, or refuse it).
 */
static void expect_intercepted(struct t *t, const char *line)
{
    size_t before = t->ncli;

    client(t, line);
    expect_srv(t, "");
    assert_true(t->ncli > before);
    assert_int_equal(t->cli[before], '5');
    t->rcli = t->ncli;
}

static void test_xclient_tab_not_relayed(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    expect_intercepted(t, "XCLIENT\tADDR=192.0.2.1\r\n");
    release(t);
}

static void test_xclient_leading_space_not_relayed(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    expect_intercepted(t, " XCLIENT ADDR=192.0.2.1\r\n");
    release(t);
}

static void test_require_tls_mail_tab_not_relayed(void **state)
{
    struct inbound_cfg cfg = {.require_tls = true};
    struct t *t = session_after_ehlo(&cfg);

    expect_intercepted(t, "MAIL\tFROM:<a@example.org>\r\n");
    release(t);
}

/* ---------- require_tls ---------- */

static void test_require_tls(void **state)
{
    struct inbound_cfg cfg = {.require_tls = true};
    struct t *t = session_after_ehlo(&cfg);

    client(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\nmail from:<a>\r\n");
    expect_cli(t, R_NEED_TLS R_NEED_TLS R_NEED_TLS R_NEED_TLS);
    expect_srv(t, "");
    /* BDAT too, and its chunk is dropped. */
    client(t, "BDAT 13 LAST\r\nRCPT TO:<x>\r\nNOOP\r\n");
    expect_cli(t, R_NEED_TLS);
    expect_srv(t, "NOOP\r\n");
    server(t, "250 ok\r\n");
    expect_cli(t, "250 ok\r\n");
    /* Harmless commands go through. */
    client(t, "HELP\r\n");
    expect_srv(t, "HELP\r\n");
    server(t, "214 help\r\n");
    expect_cli(t, "214 help\r\n");
    upgrade(t);
    client(t, "MAIL FROM:<a>\r\n");
    expect_srv(t, "MAIL FROM:<a>\r\n");
    release(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_auth_before_tls, teardown),
        cmocka_unit_test_teardown(test_auth_after_tls, teardown),
        cmocka_unit_test_teardown(test_auth_long_response_line, teardown),
        cmocka_unit_test_teardown(test_auth_bad_response_cancels, teardown),
        cmocka_unit_test_teardown(test_xclient_xforward_refused, teardown),
        cmocka_unit_test_teardown(test_xclient_tab_not_relayed, teardown),
        cmocka_unit_test_teardown(test_xclient_leading_space_not_relayed, teardown),
        cmocka_unit_test_teardown(test_require_tls_mail_tab_not_relayed, teardown),
        cmocka_unit_test_teardown(test_require_tls, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
