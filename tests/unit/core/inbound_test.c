/*
 * inbound: transcripts of the front end (and the relay engine under it):
 * greeting, EHLO, transactions, QUIT and abort, state names, and one whole
 * session fed in every chunk size. The other themes are in
 * inbound_<topic>_test.c; the driver is inbound_fixture.c.h over
 * transcript.c.h.
 */
#include "tests/unit/core/inbound_fixture.c.h"

/* ---------- greeting and EHLO ---------- */

static void test_greeting_passthrough(void **state)
{
    struct t *t = start(NULL);

    assert_true(OPS.awaiting_server(&t->e));
    server(t, "220-mx.example ESMTP\r\n220-");
    expect_cli(t, "");
    server(t, "no UCE\r\n220 ready\r\n");
    expect_cli(t, "220-mx.example ESMTP\r\n220-no UCE\r\n220 ready\r\n");
    assert_false(OPS.awaiting_server(&t->e));
    assert_int_equal(actions(t), 0);
    release(t);
}

static void test_greeting_refusal_passthrough(void **state)
{
    struct t *t = start(NULL);

    server(t, "554 5.3.2 go away\r\n");
    expect_cli(t, "554 5.3.2 go away\r\n");
    assert_int_equal(actions(t), 0);
    release(t);
}

static void test_ehlo_rewrite(void **state)
{
    struct t *t = start(NULL);

    greet(t);
    ehlo_with(t, EHLO_REPLY, EHLO_REPLY_PLAIN);
    assert_int_equal(t->e.relay.caps & SMTP_CAP_PIPELINING, SMTP_CAP_PIPELINING);
    release(t);
}

static void test_ehlo_single_line_reply(void **state)
{
    struct t *t = start(NULL);

    greet(t);
    ehlo_with(t, "250 mx.example\r\n", "250-mx.example\r\n250 STARTTLS\r\n");
    release(t);
}

static void test_ehlo_refused_passthrough(void **state)
{
    struct t *t = start(NULL);

    greet(t);
    /* A refusal other than "unknown command" (500/502: see
     * test_helo_fallback) is the backend's to make. */
    ehlo_with(t, "554 5.7.1 EHLO refused\r\n", "554 5.7.1 EHLO refused\r\n");
    client(t, "HELO client.example\r\n");
    expect_srv(t, "HELO client.example\r\n");
    server(t, "250 mx.example\r\n");
    expect_cli(t, "250 mx.example\r\n");
    release(t);
}

/* ---------- transactions ---------- */

static void test_pipelined_transaction(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    client(t, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
              "RCPT TO:<c@example.net>\r\nDATA\r\n");
    expect_srv(t, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
                  "RCPT TO:<c@example.net>\r\nDATA\r\n");
    expect_cli(t, "");
    /* Replies in order, some together, some apart. */
    server(t, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n");
    expect_cli(t, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n");
    server(t, "550 5.1.1 no such user\r\n354 go ahead\r\n");
    expect_cli(t, "550 5.1.1 no such user\r\n354 go ahead\r\n");
    assert_int_equal(t->e.relay.state, RELAY_DATA);
    client(t, "Subject: hi\r\n\r\nbody\r\n..dots\r\n.\r\n");
    expect_srv(t, "Subject: hi\r\n\r\nbody\r\n..dots\r\n.\r\n");
    assert_int_equal(t->e.relay.state, RELAY_COMMAND);
    assert_true(OPS.awaiting_server(&t->e));
    server(t, "250 2.0.0 queued as 1234\r\n");
    expect_cli(t, "250 2.0.0 queued as 1234\r\n");
    assert_false(OPS.awaiting_server(&t->e));
    assert_int_equal(actions(t), 0);
    release(t);
}

static void test_data_held_until_354(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    /* A client that does not wait for the 354 (or pipelines it all). */
    client(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n");
    expect_srv(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n");
    assert_int_equal(t->e.relay.state, RELAY_HOLD);
    server(t, "250 ok\r\n");
    expect_srv(t, "");
    server(t, "250 ok\r\n");
    expect_srv(t, "");
    server(t, "354 go ahead\r\n");
    expect_srv(t, "Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n");
    expect_cli(t, "250 ok\r\n250 ok\r\n354 go ahead\r\n");
    server(t, "250 queued\r\n221 bye\r\n");
    expect_cli(t, "250 queued\r\n221 bye\r\n");
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_string_equal(reason_str(t->e.reason), "quit");
    release(t);
}

static void test_data_refused_then_commands(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    client(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\nRSET\r\nNOOP\r\n");
    expect_srv(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n");
    server(t, "250 ok\r\n550 no\r\n");
    expect_srv(t, "");
    /* After a refusal the held bytes are commands, as any server reads them. */
    server(t, "554 5.5.1 no valid recipients\r\n");
    expect_srv(t, "RSET\r\nNOOP\r\n");
    assert_int_equal(t->e.relay.state, RELAY_COMMAND);
    server(t, "250 reset\r\n250 noop\r\n");
    expect_cli(t, "250 ok\r\n550 no\r\n554 5.5.1 no valid recipients\r\n250 reset\r\n250 noop\r\n");
    release(t);
}

static void test_data_bytes_byte_by_byte(void **state)
{
    struct t *t = session_after_ehlo(NULL);
    const char body[] = "a\r\n..b\r\n.\r\nNOOP\r\n";

    client(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n");
    server(t, "250 ok\r\n250 ok\r\n354 go\r\n");
    expect_srv(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n");
    for (size_t i = 0; i < sizeof(body) - 1; i++)
        client_n(t, body + i, 1);
    expect_srv(t, body);
    release(t);
}

static void test_data_bare_lf_normalised(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    client(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n");
    server(t, "250 ok\r\n250 ok\r\n354 go\r\n");
    expect_srv(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n");
    /* The classic smuggling attempt: <LF>.<CRLF> is not an end. */
    client(t, "a\n.\r\nMAIL FROM:<evil>\r\n");
    expect_srv(t, "a\r\n..\r\nMAIL FROM:<evil>\r\n");
    assert_int_equal(t->e.relay.state, RELAY_DATA);
    assert_int_equal(actions(t), 0);
    release(t);
}

static void test_data_bare_lf_rejected(void **state)
{
    struct inbound_cfg cfg = {.reject_bare_newline = true};
    struct t *t = session_after_ehlo(&cfg);

    client(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n");
    server(t, "250 ok\r\n250 ok\r\n354 go\r\n");
    expect_cli(t, "250 ok\r\n250 ok\r\n354 go\r\n");
    expect_srv(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n");
    client(t, "line\r\nsmuggle\n.\r\nMAIL FROM:<evil>\r\n");
    expect_cli(t, R_BARE_NL_DATA);
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_string_equal(reason_str(t->e.reason), "bare_newline");
    assert_int_equal(t->e.state, INBOUND_CLOSED);
    /* The server never sees an end of data, nor the command behind it. */
    assert_false(contains(t->srv, t->nsrv, "\r\n.\r\n"));
    assert_false(contains(t->srv, t->nsrv, "evil"));
    /* Nothing more is read or said. */
    client(t, "QUIT\r\n");
    expect_cli(t, "");
    release(t);
}

static void test_local_reply_in_order(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    client(t, "MAIL FROM:<a>\r\nXCLIENT ADDR=192.0.2.1\r\nRCPT TO:<b>\r\n");
    expect_srv(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\n");
    /* The 550 waits for the MAIL reply that precedes it. */
    expect_cli(t, "");
    server(t, "250 ok\r\n");
    expect_cli(t, "250 ok\r\n" R_RESERVED);
    server(t, "250 rcpt\r\n");
    expect_cli(t, "250 rcpt\r\n");
    release(t);
}

/* ---------- QUIT, abort ---------- */

static void test_quit(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    client(t, "QUIT\r\n");
    expect_srv(t, "QUIT\r\n");
    assert_int_equal(actions(t), 0);
    server(t, "221 2.0.0 bye\r\n");
    expect_cli(t, "221 2.0.0 bye\r\n");
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_string_equal(reason_str(t->e.reason), "quit");
    /* The backend closing after its 221 adds nothing. */
    server_eof(t);
    expect_cli(t, "");
    assert_string_equal(reason_str(t->e.reason), "quit");
    release(t);
}

static void test_quit_then_eof_without_reply(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    client(t, "QUIT\r\n");
    server_eof(t);
    /* No 421 after a QUIT: the client is leaving anyway. */
    expect_cli(t, "");
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    release(t);
}

static void test_abort(void **state)
{
    struct t *t = session_after_ehlo(NULL);
    static const char timeout[] = "421 4.4.2 Idle timeout\r\n";

    OPS.abort(&t->e, timeout, REASON_TIMEOUT);
    collect(t);
    expect_cli(t, timeout);
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_string_equal(reason_str(t->e.reason), "timeout");
    /* Idempotent. */
    OPS.abort(&t->e, timeout, REASON_SHUTDOWN);
    expect_cli(t, "");
    release(t);
}

/* ---------- bounds and helpers ---------- */

static void test_pipelining_depth_bound(void **state)
{
    struct t *t = session_after_ehlo(NULL);
    char many[40 * 6 + 1];

    for (int i = 0; i < 40; i++)
        memcpy(many + i * 6, "NOOP\r\n", 6);
    many[240] = '\0';
    client(t, many);
    size_t first = (t->nsrv - t->rsrv) / 6;
    assert_true(first >= 8 && first < RELAY_FIFO_MAX);
    assert_true(t->ncpend > 0);
    /* Replies let the rest through, in order. */
    for (int i = 0; i < 40; i++)
        server(t, "250 ok\r\n");
    assert_int_equal(t->nsrv - t->rsrv, 240);
    assert_int_equal(t->ncpend, 0);
    assert_int_equal(t->ncli - t->rcli, 40 * 8);
    assert_false(OPS.awaiting_server(&t->e));
    release(t);
}

static void test_state_names(void **state)
{
    /* The relay engine's states, which inbound's used to be. */
    assert_string_equal(relay_state_str(RELAY_COMMAND), "COMMAND");
    assert_string_equal(relay_state_str(RELAY_HOLD), "HOLD");
    assert_string_equal(relay_state_str(RELAY_SKIP), "SKIP");
    assert_string_equal(relay_state_str(RELAY_DATA), "DATA");
    assert_string_equal(relay_state_str(RELAY_BDAT), "BDAT");
    assert_string_equal(relay_state_str(RELAY_AUTH), "AUTH");
    assert_string_equal(inbound_state_str(INBOUND_STARTTLS), "STARTTLS");
    assert_string_equal(inbound_state_str(INBOUND_HANDSHAKE), "HANDSHAKE");
    assert_string_equal(inbound_state_str(INBOUND_CLOSED), "CLOSED");
    assert_string_equal(inbound_state_str((enum inbound_state)99), "?");
    assert_string_equal(inbound_state_str(INBOUND_GREETING), "GREETING");
    assert_string_equal(inbound_state_str(INBOUND_XEHLO), "XEHLO");
    assert_string_equal(inbound_state_str(INBOUND_XCLIENT), "XCLIENT");
    assert_string_equal(inbound_state_str(INBOUND_RELAY), "RELAY");
}

/* Every state change reaches io.on_state, front end and relay alike. */
static void test_state_log(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    client(t, "STARTTLS\r\n");
    tls_ready(t);
    assert_string_equal(t->states, "inbound:GREETING>RELAY inbound:RELAY>STARTTLS "
                                   "relay:COMMAND>YIELDED inbound:STARTTLS>HANDSHAKE "
                                   "relay:YIELDED>COMMAND inbound:HANDSHAKE>RELAY ");
    release(t);
}

static void test_awaiting_server(void **state)
{
    struct t *t = start(NULL);

    assert_true(OPS.awaiting_server(&t->e));
    greet(t);
    assert_false(OPS.awaiting_server(&t->e));
    client(t, "XCLIENT x\r\n");
    assert_false(OPS.awaiting_server(&t->e));
    client(t, EHLO);
    assert_true(OPS.awaiting_server(&t->e));
    release(t);
}

/* ---------- one session, every chunk size ---------- */

enum step_kind { S_CLIENT, S_SERVER, S_TLS_READY, S_EOF };

struct step {
    enum step_kind kind;
    const char *bytes;
};

static char long_line[SMTP_CMD_LINE_MAX + 600];

static const struct step session_steps[] = {
    {S_SERVER, GREETING},
    {S_CLIENT, EHLO},
    {S_SERVER, EHLO_REPLY_CHUNKING},
    /* Content sent before the 354, with a bare LF to repair. */
    {S_CLIENT, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
               "Subject: hi\r\n\r\nline\n.\r\n..dots\r\n.\r\n"},
    {S_SERVER, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n"},
    {S_SERVER, "250 2.0.0 queued as A\r\n"},
    {S_CLIENT, "RSET\r\nNOOP\r\nXFORWARD NAME=x\r\nNOOP\n"},
    {S_SERVER, "250 ok\r\n250 ok\r\n"},
    {S_CLIENT, long_line},
    {S_CLIENT, "\r\nNOOP\r\n"},
    {S_SERVER, "250 ok\r\n"},
    {S_CLIENT, "MAIL FROM:<c>\r\nRCPT TO:<d>\r\nBDAT 10\r\n0123456789BDAT 0 LAST\r\n"},
    {S_SERVER, "250 ok\r\n250 ok\r\n250 10 octets\r\n250 queued as B\r\n"},
    {S_CLIENT, "STARTTLS\r\nMAIL FROM:<evil>\r\n"},
    {S_TLS_READY, NULL},
    {S_CLIENT, "MAIL FROM:<early>\r\n" EHLO},
    {S_SERVER, EHLO_REPLY},
    {S_CLIENT, "AUTH LOGIN\r\n"},
    {S_SERVER, "334 VXNlcm5hbWU6\r\n"},
    {S_CLIENT, "dXNlcg==\r\n"},
    {S_SERVER, "334 UGFzc3dvcmQ6\r\n"},
    {S_CLIENT, "cGFzcw==\r\n"},
    {S_SERVER, "235 2.7.0 ok\r\n"},
    {S_CLIENT, "QUIT\r\n"},
    {S_SERVER, "221 2.0.0 bye\r\n"},
    {S_EOF, NULL},
};

static struct t *play(size_t chunk)
{
    struct t *t = start(NULL);

    for (size_t i = 0; i < sizeof(session_steps) / sizeof(session_steps[0]); i++) {
        const struct step *s = &session_steps[i];
        size_t len = s->bytes ? strlen(s->bytes) : 0;
        switch (s->kind) {
        case S_CLIENT:
        case S_SERVER:
            for (size_t off = 0; off < len; off += chunk) {
                size_t n = len - off < chunk ? len - off : chunk;
                if (s->kind == S_CLIENT)
                    client_n(t, s->bytes + off, n);
                else
                    server_n(t, s->bytes + off, n);
            }
            break;
        case S_TLS_READY:
            tls_ready(t);
            break;
        case S_EOF:
            server_eof(t);
            break;
        }
    }
    return t;
}

static void test_session_every_chunk_size(void **state)
{
    memset(long_line, 'L', sizeof(long_line) - 1);
    long_line[sizeof(long_line) - 1] = '\0';

    struct t *ref = play(SIZE_MAX);
    size_t longest = 0;

    /* The reference run itself is right. */
    assert_true(contains(ref->cli, ref->ncli, R_STARTTLS));
    assert_true(contains(ref->cli, ref->ncli, R_TOO_LONG));
    assert_true(contains(ref->cli, ref->ncli, R_BARE_NL));
    assert_true(contains(ref->cli, ref->ncli, R_RESERVED));
    assert_true(contains(ref->cli, ref->ncli, R_EHLO_AFTER_TLS));
    assert_true(contains(ref->cli, ref->ncli, "221 2.0.0 bye\r\n"));
    assert_true(contains(ref->srv, ref->nsrv, "line\r\n..\r\n..dots\r\n.\r\n"));
    assert_true(contains(ref->srv, ref->nsrv, "0123456789BDAT 0 LAST\r\n"));
    assert_true(contains(ref->srv, ref->nsrv, "cGFzcw==\r\n"));
    assert_false(contains(ref->srv, ref->nsrv, "evil"));
    assert_false(contains(ref->srv, ref->nsrv, "early"));
    assert_false(contains(ref->srv, ref->nsrv, "LLLL"));
    assert_false(contains(ref->srv, ref->nsrv, "XFORWARD"));
    assert_int_equal(ref->actions, ENGINE_ACT_START_TLS_CLIENT | ENGINE_ACT_CLOSE);
    assert_string_equal(reason_str(ref->e.reason), "quit");

    for (size_t i = 0; i < sizeof(session_steps) / sizeof(session_steps[0]); i++) {
        size_t len = session_steps[i].bytes ? strlen(session_steps[i].bytes) : 0;
        if (len > longest)
            longest = len;
    }
    for (size_t chunk = 1; chunk <= longest; chunk++) {
        struct t *t = play(chunk);
        if (t->ncli != ref->ncli || memcmp(t->cli, ref->cli, ref->ncli) != 0)
            fail_msg("chunk size %zu: client output differs", chunk);
        if (t->nsrv != ref->nsrv || memcmp(t->srv, ref->srv, ref->nsrv) != 0)
            fail_msg("chunk size %zu: server output differs", chunk);
        if (t->nev != ref->nev)
            fail_msg("chunk size %zu: %u action events, want %u", chunk, t->nev, ref->nev);
        for (unsigned k = 0; k < t->nev; k++) {
            if (t->ev[k].action != ref->ev[k].action ||
                t->ev[k].at_client != ref->ev[k].at_client ||
                t->ev[k].at_server != ref->ev[k].at_server)
                fail_msg("chunk size %zu: action %u differs", chunk, k);
        }
        if (t->e.reason != ref->e.reason)
            fail_msg("chunk size %zu: reason differs", chunk);
        release(t);
    }
    release(ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_greeting_passthrough, teardown),
        cmocka_unit_test_teardown(test_greeting_refusal_passthrough, teardown),
        cmocka_unit_test_teardown(test_ehlo_rewrite, teardown),
        cmocka_unit_test_teardown(test_ehlo_single_line_reply, teardown),
        cmocka_unit_test_teardown(test_ehlo_refused_passthrough, teardown),
        cmocka_unit_test_teardown(test_pipelined_transaction, teardown),
        cmocka_unit_test_teardown(test_data_held_until_354, teardown),
        cmocka_unit_test_teardown(test_data_refused_then_commands, teardown),
        cmocka_unit_test_teardown(test_data_bytes_byte_by_byte, teardown),
        cmocka_unit_test_teardown(test_data_bare_lf_normalised, teardown),
        cmocka_unit_test_teardown(test_data_bare_lf_rejected, teardown),
        cmocka_unit_test_teardown(test_local_reply_in_order, teardown),
        cmocka_unit_test_teardown(test_quit, teardown),
        cmocka_unit_test_teardown(test_quit_then_eof_without_reply, teardown),
        cmocka_unit_test_teardown(test_abort, teardown),
        cmocka_unit_test_teardown(test_pipelining_depth_bound, teardown),
        cmocka_unit_test_teardown(test_state_names, teardown),
        cmocka_unit_test_teardown(test_awaiting_server, teardown),
        cmocka_unit_test_teardown(test_state_log, teardown),
        cmocka_unit_test_teardown(test_session_every_chunk_size, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
