/*
 * relay: transcripts of the relay engine on its own, as the outbound
 * engine runs it after its negotiation (no hooks) and as a front end runs
 * it with a hook that refuses or takes commands. The driver is
 * transcript.c.h; the relay raises no actions, so the hook's turn is
 * recorded as one (TURN) to check its place in the reply order.
 */
#include "proxy/core/relay.h"

#define TURN (1u << 8)

static unsigned relay_actions(struct relay *r);

#define TRANSCRIPT_ENGINE struct relay
#define TRANSCRIPT_CLIENT(e, p, n) relay_client(e, p, n)
#define TRANSCRIPT_SERVER(e, p, n) relay_server(e, p, n)
#define TRANSCRIPT_TAKE_ACTIONS(e) relay_actions(e)
#define TRANSCRIPT_FREE(e) relay_free(e)
#include "tests/unit/core/transcript.c.h"
#include "tests/unit/core/relay_fixture.c.h"

#define R_NO_STARTTLS "502 5.5.1 STARTTLS not offered\r\n"
#define R_REFUSED "550 5.7.1 refused by the hook\r\n"


/* ---------- the driver's relay part ---------- */

/* What the test hook does: refuse one verb, yield on another. */
static enum smtp_verb hook_refuse = SMTP_VERB_UNKNOWN;
static enum smtp_verb hook_yield = SMTP_VERB_UNKNOWN;
static unsigned turns, turns_taken;

static unsigned relay_actions(struct relay *r)
{
    unsigned a = turns > turns_taken ? TURN : 0;

    (void)r;
    turns_taken = turns;
    return a;
}

static enum relay_verdict on_command(void *arg, const struct relay_command *c,
                                     const char **reply)
{
    (void)arg;
    if (c->verb == hook_yield)
        return RELAY_YIELD;
    if (c->verb == hook_refuse) {
        *reply = R_REFUSED;
        return RELAY_REFUSE;
    }
    return RELAY_PASS;
}

static void on_turn(void *arg)
{
    (void)arg;
    turns++;
}

static struct t *start_with(const struct relay_cfg *cfg, bool hooked)
{
    struct t *t = alloc_t();
    struct engine_io io = transcript_io(t);
    struct relay_hooks hooks = {.arg = t, .command = on_command, .turn = on_turn};

    hook_refuse = hook_yield = SMTP_VERB_UNKNOWN;
    turns = turns_taken = 0;
    relay_init(&t->e, cfg, &io, hooked ? &hooks : NULL);
    return t;
}

/* Outbound's relay phase: no hooks. */
static struct t *start_relay(bool server_tls, unsigned caps)
{
    struct relay_cfg cfg = {.tls = server_tls, .caps = caps};

    return start_with(&cfg, false);
}

/* ---------- relay mode (the outbound engine's relay phase) ---------- */

static void test_relay_plaintext_server(void **state)
{
    struct t *t = start_relay(false, SMTP_CAP_PIPELINING);

    /* Greeting and EHLO are done: nothing is owed, mail flows at once. */
    assert_false(relay_awaiting_server(&t->e));
    client(t, "MAIL FROM:<a>\r\nSTARTTLS\r\n");
    expect_srv(t, "MAIL FROM:<a>\r\n");
    server(t, "250 ok\r\n");
    expect_cli(t, "250 ok\r\n" R_NO_STARTTLS);
    assert_int_equal(actions(t), 0);
    /* No credentials to a plaintext server. */
    client(t, "AUTH PLAIN AGEAYg==\r\n");
    expect_cli(t, R_NEED_TLS);
    /* The server offered no CHUNKING. */
    client(t, "BDAT 3 LAST\r\nabc");
    expect_cli(t, R_BDAT_NO_CHUNKING);
    expect_srv(t, "");
    /* A repeated EHLO: the reply loses STARTTLS and AUTH, gains nothing. */
    client(t, EHLO);
    expect_srv(t, EHLO);
    server(t, EHLO_REPLY);
    expect_cli(t, "250-mx.example Hello client.example\r\n"
                  "250-PIPELINING\r\n"
                  "250-SIZE 10240000\r\n"
                  "250-8BITMIME\r\n"
                  "250 ENHANCEDSTATUSCODES\r\n");
    release(t);
}

static void test_relay_tls_server(void **state)
{
    struct t *t = start_relay(true, SMTP_CAP_CHUNKING);

    client(t, "AUTH PLAIN AGEAYg==\r\n");
    expect_srv(t, "AUTH PLAIN AGEAYg==\r\n");
    server(t, "235 ok\r\n");
    expect_cli(t, "235 ok\r\n");
    client(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nBDAT 3 LAST\r\nabc");
    expect_srv(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nBDAT 3 LAST\r\nabc");
    server(t, "250 ok\r\n250 ok\r\n250 queued\r\n");
    expect_cli(t, "250 ok\r\n250 ok\r\n250 queued\r\n");
    client(t, "STARTTLS\r\n");
    expect_cli(t, R_NO_STARTTLS);
    assert_int_equal(actions(t), 0);
    client(t, EHLO);
    server(t, EHLO_REPLY);
    expect_cli(t, EHLO_REPLY_TLS);
    release(t);
}

/* ---------- pipelining ---------- */

static void test_fifo_order(void **state)
{
    struct t *t = start_relay(false, SMTP_CAP_PIPELINING);

    /* Replies the relay owns wait for the server's replies before them. */
    client(t, "MAIL FROM:<a>\r\nXFORWARD NAME=x\r\nRCPT TO:<b>\r\nTURN\r\nRCPT TO:<c>\r\n");
    expect_srv(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nRCPT TO:<c>\r\n");
    expect_cli(t, "");
    assert_true(relay_awaiting_server(&t->e));
    assert_int_equal(t->e.count, 5);
    server(t, "250 mail\r\n");
    expect_cli(t, "250 mail\r\n550 5.7.0 Command reserved for the proxy\r\n");
    server(t, "250 b\r\n250 c\r\n");
    expect_cli(t, "250 b\r\n502 5.5.1 Command not implemented\r\n250 c\r\n");
    assert_false(relay_awaiting_server(&t->e));
    assert_true(t->e.in_txn);
    /* A reply to nothing is a protocol error. */
    server(t, "250 extra\r\n");
    expect_cli(t, R_PROTOCOL);
    assert_int_equal(t->e.state, RELAY_CLOSED);
    assert_int_equal(t->e.reason, REASON_PROTOCOL_ERROR);
    release(t);
}

static void test_fifo_depth_bound(void **state)
{
    struct t *t = start_relay(false, 0);
    char many[50 * 6 + 1];

    for (int i = 0; i < 50; i++)
        memcpy(many + i * 6, "RSET\r\n", 6);
    many[300] = '\0';
    client(t, many);
    assert_int_equal(t->e.count, RELAY_FIFO_MAX - 1);
    assert_int_equal(t->nsrv, (RELAY_FIFO_MAX - 1) * 6);
    for (int i = 0; i < 50; i++)
        server(t, "250 ok\r\n");
    assert_int_equal(t->nsrv, 300);
    assert_int_equal(t->ncpend, 0);
    release(t);
}

/* ---------- DATA ---------- */

static void test_data(void **state)
{
    struct t *t = start_relay(false, 0);

    client(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n");
    expect_srv(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n");
    assert_int_equal(t->e.state, RELAY_HOLD);
    server(t, "250 ok\r\n250 ok\r\n354 go\r\n");
    expect_srv(t, "Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n");
    assert_int_equal(t->e.state, RELAY_HOLD); /* behind QUIT */
    assert_true(t->e.quit);
    server(t, "250 queued\r\n221 bye\r\n");
    expect_cli(t, "250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n221 bye\r\n");
    assert_int_equal(t->e.state, RELAY_CLOSED);
    assert_string_equal(reason_str(t->e.reason), "quit");
    release(t);
}

static void test_data_refused(void **state)
{
    struct t *t = start_relay(false, 0);

    client(t, "DATA\r\nNOOP\r\n");
    expect_srv(t, "DATA\r\n");
    server(t, "503 need MAIL\r\n");
    expect_srv(t, "NOOP\r\n");
    assert_int_equal(t->e.state, RELAY_COMMAND);
    release(t);
}

static void test_bare_newline_normalised(void **state)
{
    struct t *t = start_relay(false, 0);

    client(t, "DATA\r\n");
    server(t, "354 go\r\n");
    client(t, "a\n.\r\nb\rc\r\n.\r\n");
    expect_srv(t, "DATA\r\na\r\n..\r\nb\r\nc\r\n.\r\n");
    assert_int_equal(t->e.state, RELAY_COMMAND);
    release(t);
}

static void test_bare_newline_rejected(void **state)
{
    struct relay_cfg cfg = {.reject_bare_newline = true};
    struct t *t = start_with(&cfg, false);

    client(t, "DATA\r\n");
    server(t, "354 go\r\n");
    expect_cli(t, "354 go\r\n");
    client(t, "ok\r\nsmuggle\n.\r\nMAIL FROM:<evil>\r\n");
    expect_cli(t, R_BARE_NL_DATA);
    assert_int_equal(t->e.state, RELAY_CLOSED);
    assert_int_equal(t->e.reason, REASON_BARE_NEWLINE);
    assert_false(contains(t->srv, t->nsrv, "evil"));
    assert_false(contains(t->srv, t->nsrv, "\r\n.\r\n"));
    release(t);
}

static void test_bare_newline_in_command(void **state)
{
    struct t *t = start_relay(false, 0);

    client(t, "NOOP\nRSET\r\n");
    expect_cli(t, "500 5.5.2 Bare CR or LF in command not allowed\r\n");
    expect_srv(t, "RSET\r\n");
    release(t);
}

/* ---------- BDAT ---------- */

static void test_bdat_chunking(void **state)
{
    struct t *t = start_relay(false, SMTP_CAP_CHUNKING);

    client(t, "MAIL FROM:<a>\r\nBDAT 6\r\nRSET\r\nBDAT 0 LAST\r\n");
    expect_srv(t, "MAIL FROM:<a>\r\nBDAT 6\r\nRSET\r\nBDAT 0 LAST\r\n");
    server(t, "250 ok\r\n250 6 octets\r\n250 queued\r\n");
    expect_cli(t, "250 ok\r\n250 6 octets\r\n250 queued\r\n");
    assert_false(t->e.in_txn);
    client(t, "BDAT x\r\n");
    expect_cli(t, R_BDAT_SYNTAX);
    release(t);
}

static void test_bdat_without_chunking(void **state)
{
    struct t *t = start_relay(false, SMTP_CAP_PIPELINING);

    client(t, "BDAT 6 LAST\r\nRSET\r\nNOOP\r\n");
    expect_cli(t, R_BDAT_NO_CHUNKING);
    expect_srv(t, "NOOP\r\n");
    assert_false(contains(t->srv, t->nsrv, "RSET"));
    release(t);
}

static void test_helo_drops_chunking(void **state)
{
    struct t *t = start_relay(false, SMTP_CAP_CHUNKING);

    client(t, "HELO c\r\n");
    server(t, "250 mx\r\n");
    client(t, "BDAT 1 LAST\r\nx");
    expect_cli(t, "250 mx\r\n" R_BDAT_NO_CHUNKING);
    expect_srv(t, "HELO c\r\n");
    release(t);
}

/* ---------- AUTH ---------- */

static void test_auth_over_tls(void **state)
{
    struct t *t = start_relay(true, 0);

    client(t, "AUTH LOGIN\r\n");
    assert_int_equal(t->e.state, RELAY_HOLD);
    server(t, "334 VXNlcm5hbWU6\r\n");
    assert_int_equal(t->e.state, RELAY_AUTH);
    client(t, "QUIT\r\n"); /* a user name, not a command */
    expect_srv(t, "AUTH LOGIN\r\nQUIT\r\n");
    assert_false(t->e.quit);
    server(t, "535 no\r\n");
    expect_cli(t, "334 VXNlcm5hbWU6\r\n535 no\r\n");
    assert_int_equal(t->e.state, RELAY_COMMAND);
    release(t);
}

/* RFC 4954 §4: an AUTH command with an initial response may be 12288
 * octets (XOAUTH2 tokens are over 1 KB), other commands only the command
 * line limit. */
static void test_auth_initial_response_long(void **state)
{
    static char line[SMTP_AUTH_LINE_MAX + 1];
    static char mail[SMTP_CMD_LINE_MAX + 3];
    struct t *t = start_relay(true, 0);

    memcpy(line, "AUTH XOAUTH2 ", 13);
    memset(line + 13, 'A', SMTP_AUTH_LINE_MAX - 13 - 2);
    memcpy(line + SMTP_AUTH_LINE_MAX - 2, "\r\n", 3);
    client(t, line);
    expect_srv(t, line);
    server(t, "235 2.7.0 ok\r\n");
    expect_cli(t, "235 2.7.0 ok\r\n");
    /* Anything else just over the command line limit is too long. */
    memcpy(mail, "MAIL FROM:<", 11);
    memset(mail + 11, 'm', SMTP_CMD_LINE_MAX - 11 - 1);
    memcpy(mail + SMTP_CMD_LINE_MAX - 1, ">\r\n", 4);
    client(t, mail);
    expect_cli(t, SMTP_R_TOO_LONG);
    expect_srv(t, "");
    release(t);
}

/* A listener's max_command_line replaces SMTP_CMD_LINE_MAX. */
static void test_max_line_configured(void **state)
{
    struct relay_cfg cfg = {.tls = true, .max_line = 600};
    struct t *t = start_with(&cfg, false);
    static char noop[604];

    memcpy(noop, "NOOP ", 5);
    memset(noop + 5, 'n', 600 - 5 - 2);
    memcpy(noop + 598, "\r\n", 3);
    client(t, noop);
    expect_srv(t, noop);
    server(t, "250 ok\r\n");
    expect_cli(t, "250 ok\r\n");
    memcpy(noop + 598, "n\r\n", 4); /* 601 octets: one too many */
    client(t, noop);
    expect_cli(t, SMTP_R_TOO_LONG);
    release(t);
}

static void test_auth_plaintext_refused(void **state)
{
    struct t *t = start_relay(false, 0);

    client(t, "AUTH PLAIN AGEAYg==\r\nauth login\r\n");
    expect_cli(t, R_NEED_TLS R_NEED_TLS);
    expect_srv(t, "");
    release(t);
}

/* ---------- hooks and TLS start ---------- */

static void test_hook_refuses(void **state)
{
    struct relay_cfg cfg = {.caps = SMTP_CAP_CHUNKING};
    struct t *t = start_with(&cfg, true);

    hook_refuse = SMTP_VERB_BDAT;
    /* A refused chunk is dropped; a malformed BDAT keeps its own reply. */
    client(t, "BDAT 6\r\nRSET\r\nBDAT\r\nNOOP\r\n");
    expect_cli(t, R_REFUSED R_BDAT_SYNTAX);
    expect_srv(t, "NOOP\r\n");
    hook_refuse = SMTP_VERB_STARTTLS;
    client(t, "STARTTLS\r\n");
    server(t, "250 ok\r\n");
    expect_cli(t, "250 ok\r\n" R_REFUSED);
    release(t);
}

static void test_hook_yields(void **state)
{
    struct relay_cfg cfg = {.offer_starttls = true};
    struct t *t = start_with(&cfg, true);

    hook_yield = SMTP_VERB_STARTTLS;
    client(t, EHLO);
    server(t, EHLO_REPLY);
    /* Plaintext: STARTTLS offered, AUTH not. */
    expect_cli(t, "250-mx.example Hello client.example\r\n"
                  "250-STARTTLS\r\n"
                  "250-PIPELINING\r\n"
                  "250-SIZE 10240000\r\n"
                  "250-8BITMIME\r\n"
                  "250 ENHANCEDSTATUSCODES\r\n");
    client(t, "NOOP\r\nSTARTTLS\r\nMAIL FROM:<evil>\r\n");
    expect_srv(t, EHLO "NOOP\r\n");
    assert_int_equal(t->e.state, RELAY_YIELDED);
    assert_int_equal(actions(t), 0); /* the NOOP's reply comes first */
    /* Yielded: nothing is read; the rest is the user's. */
    assert_int_equal(t->ncpend, strlen("MAIL FROM:<evil>\r\n"));
    server(t, "250 ok\r\n");
    expect_cli(t, "250 ok\r\n");
    assert_int_equal(actions(t), TURN);
    assert_int_equal(t->ev[t->nev - 1].at_client, t->ncli);
    assert_false(relay_awaiting_server(&t->e));
    t->ncpend = 0; /* the user drops it */
    relay_tls_started(&t->e, true);
    assert_int_equal(t->e.state, RELAY_COMMAND);
    client(t, "MAIL FROM:<a>\r\nAUTH PLAIN x\r\nNOOP\r\n");
    expect_cli(t, R_EHLO_AFTER_TLS R_EHLO_AFTER_TLS);
    expect_srv(t, "NOOP\r\n");
    client(t, EHLO);
    server(t, "250 ok\r\n" EHLO_REPLY);
    expect_cli(t, "250 ok\r\n" EHLO_REPLY_TLS);
    client(t, "AUTH PLAIN x\r\n");
    expect_srv(t, EHLO "AUTH PLAIN x\r\n");
    assert_false(contains(t->srv, t->nsrv, "evil"));
    release(t);
}

static void test_server_eof(void **state)
{
    struct t *t = start_relay(false, 0);

    client(t, "NOOP\r\n");
    relay_server_eof(&t->e);
    expect_cli(t, R_LOST);
    assert_int_equal(t->e.reason, REASON_BACKEND_CLOSED);
    /* Closed is final. */
    client(t, "NOOP\r\n");
    assert_int_equal(t->ncpend, 0);
    expect_srv(t, "NOOP\r\n");
    release(t);

    t = start_relay(false, 0);
    client(t, "QUIT\r\n");
    relay_server_eof(&t->e);
    expect_cli(t, ""); /* QUIT was relayed: leaving anyway */
    release(t);
}

static void test_unsolicited_421(void **state)
{
    struct t *t = start_relay(false, 0);

    server(t, "421 4.3.2 shutting down\r\n");
    expect_cli(t, "421 4.3.2 shutting down\r\n");
    assert_int_equal(t->e.reason, REASON_BACKEND_CLOSED);
    release(t);
}

static void test_state_names(void **state)
{
    assert_string_equal(relay_state_str(RELAY_COMMAND), "COMMAND");
    assert_string_equal(relay_state_str(RELAY_YIELDED), "YIELDED");
    assert_string_equal(relay_state_str(RELAY_CLOSED), "CLOSED");
    assert_string_equal(relay_state_str((enum relay_state)99), "?");
}

static void test_state_log(void **state)
{
    struct t *t = start_relay(false, 0);

    client(t, "DATA\r\n");
    server(t, "354 go\r\n");
    client(t, ".\r\n");
    assert_string_equal(t->states, "relay:COMMAND>HOLD relay:HOLD>DATA relay:DATA>COMMAND ");
    release(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_relay_plaintext_server, teardown),
        cmocka_unit_test_teardown(test_relay_tls_server, teardown),
        cmocka_unit_test_teardown(test_fifo_order, teardown),
        cmocka_unit_test_teardown(test_fifo_depth_bound, teardown),
        cmocka_unit_test_teardown(test_data, teardown),
        cmocka_unit_test_teardown(test_data_refused, teardown),
        cmocka_unit_test_teardown(test_bare_newline_normalised, teardown),
        cmocka_unit_test_teardown(test_bare_newline_rejected, teardown),
        cmocka_unit_test_teardown(test_bare_newline_in_command, teardown),
        cmocka_unit_test_teardown(test_bdat_chunking, teardown),
        cmocka_unit_test_teardown(test_bdat_without_chunking, teardown),
        cmocka_unit_test_teardown(test_helo_drops_chunking, teardown),
        cmocka_unit_test_teardown(test_auth_over_tls, teardown),
        cmocka_unit_test_teardown(test_auth_initial_response_long, teardown),
        cmocka_unit_test_teardown(test_max_line_configured, teardown),
        cmocka_unit_test_teardown(test_auth_plaintext_refused, teardown),
        cmocka_unit_test_teardown(test_hook_refuses, teardown),
        cmocka_unit_test_teardown(test_hook_yields, teardown),
        cmocka_unit_test_teardown(test_server_eof, teardown),
        cmocka_unit_test_teardown(test_unsolicited_421, teardown),
        cmocka_unit_test_teardown(test_state_names, teardown),
        cmocka_unit_test_teardown(test_state_log, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
