/*
 * inbound: framing errors (RFC 5321 4.5.3.1 line limits, bare CR/LF),
 * deadlines and TLS failures (engine_ops), and the error limit.
 */
#include "tests/unit/core/inbound_fixture.c.h"

/* ---------- framing errors ---------- */

static void test_overlong_line(void **state)
{
    struct t *t = session_after_ehlo(NULL);
    static char line[SMTP_CMD_LINE_MAX * 3 / 2];

    memset(line, 'A', sizeof(line));
    memcpy(line, "NOOP ", 5);
    client_n(t, line, sizeof(line));
    expect_cli(t, R_TOO_LONG);
    expect_srv(t, "");
    assert_true(t->ncpend < SMTP_CMD_LINE_MAX);
    /* The tail of that line is not a command. */
    client(t, "RSET\r\nNOOP\r\n");
    expect_srv(t, "NOOP\r\n");
    expect_cli(t, "");
    server(t, "250 ok\r\n");
    expect_cli(t, "250 ok\r\n");
    release(t);
}

static void test_overlong_line_in_pieces(void **state)
{
    struct t *t = session_after_ehlo(NULL);
    char piece[100];

    memset(piece, 'B', sizeof(piece));
    for (int i = 0; i < SMTP_CMD_LINE_MAX / 100 + 1; i++)
        client_n(t, piece, sizeof(piece));
    client(t, "XX\r\nNOOP\r\n");
    expect_cli(t, R_TOO_LONG);
    expect_srv(t, "NOOP\r\n");
    release(t);
}

static void test_line_at_limit(void **state)
{
    struct t *t = session_after_ehlo(NULL);
    char line[SMTP_CMD_LINE_MAX + 1];

    /* Exactly at the limit: a command; one more: too long. */
    memset(line, 'x', sizeof(line));
    memcpy(line, "RCPT TO:<", 9);
    memcpy(line + SMTP_CMD_LINE_MAX - 3, ">\r\n", 3);
    client_n(t, line, SMTP_CMD_LINE_MAX);
    assert_int_equal(t->nsrv - t->rsrv, SMTP_CMD_LINE_MAX);
    t->rsrv = t->nsrv;
    memcpy(line + SMTP_CMD_LINE_MAX - 3, "x>\r\n", 4);
    client_n(t, line, SMTP_CMD_LINE_MAX + 1);
    expect_srv(t, "");
    server(t, "250 ok\r\n");
    expect_cli(t, "250 ok\r\n" R_TOO_LONG);
    release(t);
}

static void test_overlong_line_while_waiting(void **state)
{
    struct t *t = session_after_ehlo(NULL);
    static char line[SMTP_CMD_LINE_MAX * 2];

    memset(line, 'C', sizeof(line));
    client(t, "NOOP\r\n");
    client_n(t, line, sizeof(line));
    /* Its 500 waits for the NOOP's reply. */
    expect_cli(t, "");
    server(t, "250 ok\r\n");
    expect_cli(t, "250 ok\r\n" R_TOO_LONG);
    client(t, "\r\nRSET\r\n");
    expect_srv(t, "NOOP\r\nRSET\r\n");
    release(t);
}

static void test_bare_lf_in_command(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    client(t, "NOOP\n");
    expect_cli(t, R_BARE_NL);
    expect_srv(t, "");
    client(t, "MAIL FROM:<a>\nRCPT TO:<b>\r\n");
    expect_cli(t, R_BARE_NL);
    expect_srv(t, "RCPT TO:<b>\r\n");
    release(t);
}

static void test_bare_cr_in_command(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    /* A server that ends lines at a bare CR would see two commands here;
     * the proxy refuses the whole line. */
    client(t, "NOOP\rXCLIENT ADDR=192.0.2.1\r\n");
    expect_cli(t, R_BARE_NL);
    expect_srv(t, "");
    client(t, "NOOP\r");
    client(t, "\n");
    expect_srv(t, "NOOP\r\n");
    release(t);
}

/* ---------- deadlines and TLS failures (engine_ops) ---------- */

#define R_BACKEND_TIMEOUT "421 4.4.2 Backend timeout, closing connection\r\n"
#define R_IDLE "421 4.4.2 Idle timeout exceeded, closing connection\r\n"

static void test_deadline_idle(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    OPS.deadline(&t->e);
    collect(t);
    expect_cli(t, R_IDLE);
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_int_equal(OPS.reason(&t->e), REASON_TIMEOUT);
    release(t);
}

static void test_deadline_backend(void **state)
{
    struct t *t = start(NULL);

    /* The greeting is owed from the start. */
    OPS.deadline(&t->e);
    collect(t);
    expect_cli(t, R_BACKEND_TIMEOUT);
    assert_int_equal(OPS.reason(&t->e), REASON_BACKEND_TIMEOUT);
    release(t);

    t = session_after_ehlo(NULL);
    client(t, "NOOP\r\n");
    OPS.deadline(&t->e);
    collect(t);
    expect_cli(t, R_BACKEND_TIMEOUT);
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_int_equal(OPS.reason(&t->e), REASON_BACKEND_TIMEOUT);
    release(t);
}

static void test_tls_failed_closes_silently(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    client(t, "STARTTLS\r\n");
    expect_cli(t, R_STARTTLS);
    actions(t);
    OPS.tls_failed(&t->e, ENGINE_TLS_HANDSHAKE, "alert");
    collect(t);
    expect_cli(t, "");
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_int_equal(OPS.reason(&t->e), REASON_TLS_FAILED);
    release(t);

    t = session_after_ehlo(NULL);
    client(t, "STARTTLS\r\n");
    expect_cli(t, R_STARTTLS);
    actions(t);
    /* A deadline in the handshake is a handshake timeout: no plaintext. */
    OPS.deadline(&t->e);
    collect(t);
    expect_cli(t, "");
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_int_equal(OPS.reason(&t->e), REASON_TLS_TIMEOUT);
    release(t);
}

/* ---------- the error limit ---------- */

#define R_TOO_MANY "421 4.7.0 Too many errors, closing connection\r\n"

static void test_error_limit(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    for (int i = 0; i < 19; i++) {
        client(t, "TURN\r\n");
        expect_cli(t, R_NOT_IMPL);
    }
    client(t, "NOOP\r\n"); /* relayed, answered by the backend: no error */
    server(t, "250 ok\r\n");
    expect_cli(t, "250 ok\r\n");
    assert_int_equal(actions(t), 0);
    /* The 20th: its error, then the 421; nothing more is read. */
    client(t, " NOOP\r\nMAIL FROM:<a>\r\n");
    expect_cli(t, "500 5.5.2 Syntax error in command\r\n" R_TOO_MANY);
    expect_srv(t, "NOOP\r\n");
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_int_equal(OPS.reason(&t->e), REASON_PROTOCOL_ERROR);
    release(t);

    /* Behind a reply still owed: the 421 waits for it. */
    t = session_after_ehlo(NULL);
    for (int i = 0; i < 19; i++)
        client(t, "XCLIENT x\r\n");
    t->rcli = t->ncli;
    client(t, "NOOP\r\nTURN\r\nRSET\r\n");
    expect_srv(t, "NOOP\r\n");
    expect_cli(t, "");
    assert_int_equal(actions(t), 0);
    server(t, "250 ok\r\n");
    expect_cli(t, "250 ok\r\n" R_NOT_IMPL R_TOO_MANY);
    expect_srv(t, "");
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    release(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_overlong_line, teardown),
        cmocka_unit_test_teardown(test_overlong_line_in_pieces, teardown),
        cmocka_unit_test_teardown(test_line_at_limit, teardown),
        cmocka_unit_test_teardown(test_overlong_line_while_waiting, teardown),
        cmocka_unit_test_teardown(test_bare_lf_in_command, teardown),
        cmocka_unit_test_teardown(test_bare_cr_in_command, teardown),
        cmocka_unit_test_teardown(test_deadline_idle, teardown),
        cmocka_unit_test_teardown(test_error_limit, teardown),
        cmocka_unit_test_teardown(test_deadline_backend, teardown),
        cmocka_unit_test_teardown(test_tls_failed_closes_silently, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
