/*
 * inbound: transcripts of the front end (and the relay engine under it).
 * The driver (transcript.c.h) plays the session: it records what the
 * engine sends to the client and to the server, collects actions, and
 * offers unconsumed bytes again after every step, as the session does.
 */
#include "proxy/core/inbound.h"

#define OPS inbound_engine_ops
#define TRANSCRIPT_ENGINE struct inbound
#define TRANSCRIPT_CLIENT(e, p, n) OPS.client(e, p, n)
#define TRANSCRIPT_SERVER(e, p, n) OPS.server(e, p, n)
#define TRANSCRIPT_TAKE_ACTIONS(e) OPS.take_actions(e)
#include "tests/unit/core/transcript.c.h"

/* The proxy's own replies, as the client must see them. */
#define R_STARTTLS "220 2.0.0 Ready to start TLS\r\n"
#define R_STARTTLS_ARGS "501 5.5.4 Syntax: STARTTLS takes no arguments\r\n"
#define R_TLS_ACTIVE "503 5.5.1 TLS already active\r\n"
#define R_EHLO_FIRST "503 5.5.1 Send EHLO first\r\n"
#define R_EHLO_AFTER_TLS "503 5.5.1 Send EHLO again after STARTTLS\r\n"
#define R_IN_TXN "503 5.5.1 STARTTLS not permitted during a mail transaction\r\n"
#define R_NEED_TLS "530 5.7.0 Must issue a STARTTLS command first\r\n"
#define R_RESERVED "550 5.7.0 Command reserved for the proxy\r\n"
#define R_NOT_IMPL "502 5.5.1 Command not implemented\r\n"
#define R_TOO_LONG "500 5.5.2 Line too long\r\n"
#define R_BARE_NL "500 5.5.2 Bare CR or LF in command not allowed\r\n"
#define R_BDAT_SYNTAX "501 5.5.4 Syntax: BDAT size [LAST]\r\n"
#define R_BDAT_NO_CHUNKING "503 5.5.1 BDAT without CHUNKING\r\n"
#define R_BARE_NL_DATA                                                                       \
    "521 5.5.2 Message contains bare CR or LF, refused (SMTP smuggling protection)\r\n"
#define R_PROTOCOL "421 4.5.0 Backend protocol error, closing connection\r\n"
#define R_LOST "421 4.4.2 Backend connection lost\r\n"

#define GREETING "220 mx.example ESMTP ready\r\n"
#define EHLO "EHLO client.example\r\n"
/* What a legacy backend offers, AUTH included, STARTTLS included (a server
 * that has it but is behind the proxy anyway). */
#define EHLO_REPLY                                                                           \
    "250-mx.example Hello client.example\r\n"                                                \
    "250-PIPELINING\r\n"                                                                     \
    "250-SIZE 10240000\r\n"                                                                  \
    "250-STARTTLS\r\n"                                                                       \
    "250-AUTH PLAIN LOGIN\r\n"                                                               \
    "250-XCLIENT NAME ADDR\r\n"                                                              \
    "250-8BITMIME\r\n"                                                                       \
    "250 ENHANCEDSTATUSCODES\r\n"
#define EHLO_REPLY_PLAIN                                                                     \
    "250-mx.example Hello client.example\r\n"                                                \
    "250-STARTTLS\r\n"                                                                       \
    "250-PIPELINING\r\n"                                                                     \
    "250-SIZE 10240000\r\n"                                                                  \
    "250-8BITMIME\r\n"                                                                       \
    "250 ENHANCEDSTATUSCODES\r\n"
#define EHLO_REPLY_TLS                                                                       \
    "250-mx.example Hello client.example\r\n"                                                \
    "250-PIPELINING\r\n"                                                                     \
    "250-SIZE 10240000\r\n"                                                                  \
    "250-AUTH PLAIN LOGIN\r\n"                                                               \
    "250-8BITMIME\r\n"                                                                       \
    "250 ENHANCEDSTATUSCODES\r\n"
#define EHLO_REPLY_CHUNKING                                                                  \
    "250-mx.example\r\n"                                                                     \
    "250-PIPELINING\r\n"                                                                     \
    "250-CHUNKING\r\n"                                                                       \
    "250 8BITMIME\r\n"
#define EHLO_REPLY_CHUNKING_PLAIN                                                            \
    "250-mx.example\r\n"                                                                     \
    "250-STARTTLS\r\n"                                                                       \
    "250-PIPELINING\r\n"                                                                     \
    "250-CHUNKING\r\n"                                                                       \
    "250 8BITMIME\r\n"

/* ---------- the driver (transcript.c.h), inbound's part ---------- */

static struct t *start(const struct inbound_cfg *cfg)
{
    static const struct inbound_cfg def = {0};
    struct t *t = alloc_t();

    assert_non_null(t);
    struct engine_io io = transcript_io(t);
    inbound_init(&t->e, cfg ? cfg : &def, &io);
    return t;
}

static void tls_ready(struct t *t)
{
    OPS.tls_ready(&t->e);
    collect(t);
    pump(t);
}

static void server_eof(struct t *t)
{
    OPS.server_eof(&t->e);
    collect(t);
}

static void greet(struct t *t)
{
    server(t, GREETING);
    expect_cli(t, GREETING);
}

/* Greeting and a first EHLO answered by the given backend reply. */
static void ehlo_with(struct t *t, const char *reply, const char *shown)
{
    client(t, EHLO);
    expect_srv(t, EHLO);
    expect_cli(t, "");
    server(t, reply);
    expect_cli(t, shown);
}

static struct t *session_after_ehlo(const struct inbound_cfg *cfg)
{
    struct t *t = start(cfg);

    greet(t);
    ehlo_with(t, EHLO_REPLY, EHLO_REPLY_PLAIN);
    assert_int_equal(actions(t), 0);
    return t;
}

/* STARTTLS, the handshake, and a fresh EHLO over TLS. */
static void upgrade(struct t *t)
{
    client(t, "STARTTLS\r\n");
    expect_cli(t, R_STARTTLS);
    expect_srv(t, "");
    assert_int_equal(actions(t), ENGINE_ACT_START_TLS_CLIENT);
    assert_int_equal(t->e.state, INBOUND_HANDSHAKE);
    tls_ready(t);
    ehlo_with(t, EHLO_REPLY, EHLO_REPLY_TLS);
}

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

/* ---------- BDAT ---------- */

static void test_bdat_with_chunking(void **state)
{
    struct t *t = start(NULL);

    greet(t);
    ehlo_with(t, EHLO_REPLY_CHUNKING, EHLO_REPLY_CHUNKING_PLAIN);
    client(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nBDAT 15\r\nMAIL FROM:<x>\r\nBDAT 3 LAST\r\nend");
    expect_srv(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nBDAT 15\r\nMAIL FROM:<x>\r\nBDAT 3 LAST\r\nend");
    assert_int_equal(t->e.relay.state, RELAY_COMMAND);
    server(t, "250 ok\r\n250 ok\r\n250 15 octets\r\n250 queued\r\n");
    expect_cli(t, "250 ok\r\n250 ok\r\n250 15 octets\r\n250 queued\r\n");
    /* The transaction is over: STARTTLS is allowed again. */
    client(t, "STARTTLS\r\n");
    expect_cli(t, R_STARTTLS);
    release(t);
}

static void test_bdat_chunk_split(void **state)
{
    struct t *t = start(NULL);

    greet(t);
    ehlo_with(t, EHLO_REPLY_CHUNKING, EHLO_REPLY_CHUNKING_PLAIN);
    client(t, "BDAT 10 LAST\r\n0123");
    expect_srv(t, "BDAT 10 LAST\r\n0123");
    assert_int_equal(t->e.relay.state, RELAY_BDAT);
    client(t, "4567");
    expect_srv(t, "4567");
    client(t, "89NOOP\r\n");
    expect_srv(t, "89NOOP\r\n");
    server(t, "250 queued\r\n250 ok\r\n");
    expect_cli(t, "250 queued\r\n250 ok\r\n");
    release(t);
}

static void test_bdat_without_chunking(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    client(t, "BDAT 15 LAST\r\nMAIL FROM:<x>\r\n");
    expect_cli(t, R_BDAT_NO_CHUNKING);
    expect_srv(t, "");
    /* Split chunk, also dropped. */
    client(t, "BDAT 15\r\nMAIL F");
    client(t, "ROM:<x>\r\nNOOP\r\n");
    expect_cli(t, R_BDAT_NO_CHUNKING);
    expect_srv(t, "NOOP\r\n");
    server(t, "250 ok\r\n");
    expect_cli(t, "250 ok\r\n");
    assert_false(contains(t->srv, t->nsrv, "MAIL FROM:<x>"));
    release(t);
}

static void test_bdat_after_helo(void **state)
{
    struct t *t = start(NULL);

    greet(t);
    /* The EHLO offered CHUNKING, a later HELO takes it back. */
    ehlo_with(t, EHLO_REPLY_CHUNKING, EHLO_REPLY_CHUNKING_PLAIN);
    client(t, "HELO c\r\n");
    server(t, "250 mx\r\n");
    expect_srv(t, "HELO c\r\n");
    expect_cli(t, "250 mx\r\n");
    client(t, "BDAT 4 LAST\r\nQUIT");
    expect_cli(t, R_BDAT_NO_CHUNKING);
    expect_srv(t, "");
    release(t);
}

static void test_bdat_syntax(void **state)
{
    struct t *t = start(NULL);

    greet(t);
    ehlo_with(t, EHLO_REPLY_CHUNKING, EHLO_REPLY_CHUNKING_PLAIN);
    client(t, "BDAT\r\nBDAT x\r\nBDAT 99999999999999999999\r\nNOOP\r\n");
    expect_cli(t, R_BDAT_SYNTAX R_BDAT_SYNTAX R_BDAT_SYNTAX);
    expect_srv(t, "NOOP\r\n");
    release(t);
}

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

static void test_xclient_handshake(void **state)
{
    struct inbound_cfg cfg = {
        .xclient = "XCLIENT ADDR=192.0.2.7 NAME=[UNAVAILABLE]\r\n",
        .helo_name = "proxy.example",
    };
    struct t *t = start(&cfg);

    client(t, EHLO); /* held until the XCLIENT greeting */
    server(t, GREETING);
    expect_cli(t, "");
    /* EHLO alone: Postfix >= 3.9 (smtpd_forbid_unauth_pipelining) answers
     * a pipelined XCLIENT with 554. */
    expect_srv(t, "EHLO proxy.example\r\n");
    assert_int_equal(t->e.state, INBOUND_XEHLO);
    assert_true(OPS.awaiting_server(&t->e));
    server(t, EHLO_REPLY);
    expect_cli(t, "");
    expect_srv(t, "XCLIENT ADDR=192.0.2.7 NAME=[UNAVAILABLE]\r\n");
    assert_int_equal(t->e.state, INBOUND_XCLIENT);
    server(t, "220 mx.example ESMTP as 192.0.2.7\r\n");
    expect_cli(t, "220 mx.example ESMTP as 192.0.2.7\r\n");
    expect_srv(t, EHLO);
    server(t, EHLO_REPLY);
    expect_cli(t, EHLO_REPLY_PLAIN);
    release(t);

    t = start(&cfg);
    server(t, GREETING);
    server(t, EHLO_REPLY "550 5.7.0 not authorized\r\n");
    expect_cli(t, "421 4.3.0 Backend refused XCLIENT, closing connection\r\n");
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_int_equal(OPS.reason(&t->e), REASON_XCLIENT_REFUSED);
    release(t);
}

/* ---------- XCLIENT: what the session is told (io.on_event) ---------- */

static char events[1024];

static void record_event(void *arg, const char *event, const char *detail)
{
    size_t n = strlen(events);

    (void)arg;
    snprintf(events + n, sizeof(events) - n, "%s:%s|", event, detail);
}

static struct t *start_xclient(void)
{
    static const struct inbound_cfg cfg = {
        .xclient = "XCLIENT ADDR=192.0.2.7 PORT=40512 NAME=mail.example.org\r\n",
        .helo_name = "proxy.example",
    };
    struct t *t = alloc_t();
    struct engine_io io = transcript_io(t);

    io.on_event = record_event;
    events[0] = '\0';
    inbound_init(&t->e, &cfg, &io);
    return t;
}

static void test_xclient_not_offered(void **state)
{
    struct t *t = start_xclient();

    server(t, "220-mx.example ESMTP\r\n220 no UCE\r\n");
    expect_srv(t, "EHLO proxy.example\r\n");
    client(t, EHLO);
    server(t, EHLO_REPLY_CHUNKING);
    /* No XCLIENT: reported once, the first greeting is the client's, and the session goes on without XCLIENT: the client's
     * EHLO, held until now, is relayed. */
    assert_string_equal(events, "xclient_not_offered:250-mx.example 250-PIPELINING "
                                "250-CHUNKING 250 8BITMIME|");
    expect_cli(t, "220-mx.example ESMTP\r\n220 no UCE\r\n");
    expect_srv(t, EHLO);
    server(t, EHLO_REPLY);
    expect_cli(t, EHLO_REPLY_PLAIN);
    assert_int_equal(actions(t), 0);
    release(t);

    /* An EHLO the backend refuses offers nothing either. */
    t = start_xclient();
    server(t, GREETING);
    server(t, "502 5.5.1 EHLO not implemented\r\n");
    expect_cli(t, GREETING);
    assert_string_equal(events, "xclient_not_offered:502 5.5.1 EHLO not implemented|");
    assert_int_equal(t->e.state, INBOUND_RELAY);
    release(t);
}

static void test_xclient_refused_reported(void **state)
{
    struct t *t = start_xclient();

    server(t, GREETING);
    server(t, EHLO_REPLY);
    expect_srv(t, "EHLO proxy.example\r\n"
                  "XCLIENT ADDR=192.0.2.7 PORT=40512 NAME=mail.example.org\r\n");
    server(t, "554 5.5.0 Error: SMTP protocol synchronization\r\n");
    expect_cli(t, "421 4.3.0 Backend refused XCLIENT, closing connection\r\n");
    assert_string_equal(events, "xclient_refused:554 5.5.0 Error: SMTP protocol synchronization|");
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_int_equal(OPS.reason(&t->e), REASON_XCLIENT_REFUSED);
    release(t);
}

static void test_xclient_keyword_match(void **state)
{
    struct t *t = start_xclient();

    /* XCLIENTX is another keyword; the domain line is not a keyword. */
    server(t, GREETING);
    server(t, "250-XCLIENT.example\r\n250-XCLIENTX NAME\r\n250 8BITMIME\r\n");
    assert_string_equal(events, "xclient_not_offered:250-XCLIENT.example 250-XCLIENTX NAME "
                                "250 8BITMIME|");
    release(t);

    t = start_xclient();
    server(t, GREETING);
    server(t, "250-mx.example\r\n250 xclient\r\n");
    assert_int_equal(t->e.state, INBOUND_XCLIENT);
    assert_string_equal(events, "");
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

/* ---------- the Received: line (received_header) ---------- */

static const struct inbound_received RECEIVED = {
    .by = "proxy.example.net",
    .id = "3f2a",
    .client_name = "mail.example.org",
    .client_ip = "192.0.2.7",
    .tls_version = "TLSv1.3",
    .tls_cipher = "TLS_AES_256_GCM_SHA384",
    .when = 1704189600, /* Tue, 2 Jan 2024 10:00:00 UTC */
};

#define RECEIVED_LINE                                                                        \
    "Received: from client.example (mail.example.org [192.0.2.7])\r\n"                       \
    "\tby proxy.example.net (smtp-tls-proxy) with ESMTPS id 3f2a\r\n"                        \
    "\t(version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384);\r\n"                                 \
    "\tTue, 2 Jan 2024 10:00:00 +0000\r\n"

static void test_received_format(void **state)
{
    char out[1024];
    struct inbound_received ri = RECEIVED;

    assert_int_equal(inbound_received_format(out, sizeof(out), &ri, "client.example"),
                     strlen(RECEIVED_LINE));
    assert_string_equal(out, RECEIVED_LINE);
    /* Unknown names; too small a buffer. */
    ri.client_name[0] = '\0';
    ri.when = 0;
    inbound_received_format(out, sizeof(out), &ri, "bad(name");
    assert_string_equal(out, "Received: from unknown (unknown [192.0.2.7])\r\n"
                             "\tby proxy.example.net (smtp-tls-proxy) with ESMTPS id 3f2a\r\n"
                             "\t(version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384);\r\n"
                             "\tThu, 1 Jan 1970 00:00:00 +0000\r\n");
    assert_int_equal(inbound_received_format(out, 40, &ri, "x"), 0);
    /* Long names fold: every line under 78 characters where words allow. */
    ri = RECEIVED;
    snprintf(ri.client_name, sizeof(ri.client_name), "%s",
             "a-rather-long-reverse-name.mail-servers.example.org");
    snprintf(ri.by, sizeof(ri.by), "%s", "a-long-proxy-host-name.relays.example.net");
    size_t n = inbound_received_format(out, sizeof(out), &ri, "helo-name.example.org");
    assert_true(n > 0);
    assert_string_equal(out, "Received: from helo-name.example.org\r\n"
                             "\t(a-rather-long-reverse-name.mail-servers.example.org [192.0.2.7])\r\n"
                             "\tby a-long-proxy-host-name.relays.example.net (smtp-tls-proxy) with ESMTPS id\r\n"
                             "\t3f2a\r\n"
                             "\t(version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384);\r\n"
                             "\tTue, 2 Jan 2024 10:00:00 +0000\r\n");
    for (const char *l = out; *l != '\0';) {
        const char *e = strstr(l, "\r\n");
        assert_non_null(e);
        assert_true(e - l < 78);
        l = e + 2;
    }
}

static void test_received_data_and_bdat(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    upgrade(t);
    inbound_set_received(&t->e, &RECEIVED);
    client(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n");
    expect_srv(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n");
    server(t, "250 ok\r\n250 ok\r\n354 go\r\n");
    /* First in the content, before the client's own header lines. */
    expect_srv(t, RECEIVED_LINE "Subject: x\r\n\r\nhi\r\n.\r\n");
    server(t, "250 queued\r\n");
    expect_cli(t, "250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n");
    release(t);

    /* BDAT: the first chunk carries it, and its size counts it. */
    t = start(NULL);
    greet(t);
    ehlo_with(t, EHLO_REPLY_CHUNKING, EHLO_REPLY_CHUNKING_PLAIN);
    client(t, "STARTTLS\r\n");
    expect_cli(t, R_STARTTLS);
    actions(t);
    tls_ready(t);
    ehlo_with(t, EHLO_REPLY_CHUNKING, EHLO_REPLY_CHUNKING);
    inbound_set_received(&t->e, &RECEIVED);
    char want[1024];
    client(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nBDAT 5\r\nhelloBDAT 3 LAST\r\nabc");
    snprintf(want, sizeof(want),
             "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nBDAT %zu\r\n" RECEIVED_LINE
             "helloBDAT 3 LAST\r\nabc",
             strlen(RECEIVED_LINE) + 5);
    expect_srv(t, want);
    server(t, "250 ok\r\n250 ok\r\n250 more\r\n250 queued\r\n");
    /* A second message gets its own line; BDAT 0 LAST counts it too. */
    client(t, "MAIL FROM:<c>\r\nBDAT 0 LAST\r\n");
    snprintf(want, sizeof(want), "MAIL FROM:<c>\r\nBDAT %zu LAST\r\n" RECEIVED_LINE,
             strlen(RECEIVED_LINE));
    expect_srv(t, want);
    release(t);

    /* Plaintext: never. */
    t = session_after_ehlo(NULL);
    inbound_set_received(&t->e, &RECEIVED);
    client(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n");
    server(t, "250 ok\r\n250 ok\r\n354 go\r\n");
    client(t, "hi\r\n.\r\n");
    expect_srv(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\nhi\r\n.\r\n");
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
        cmocka_unit_test_teardown(test_auth_before_tls, teardown),
        cmocka_unit_test_teardown(test_auth_after_tls, teardown),
        cmocka_unit_test_teardown(test_auth_long_response_line, teardown),
        cmocka_unit_test_teardown(test_auth_bad_response_cancels, teardown),
        cmocka_unit_test_teardown(test_xclient_xforward_refused, teardown),
        cmocka_unit_test_teardown(test_xclient_tab_not_relayed, teardown),
        cmocka_unit_test_teardown(test_xclient_leading_space_not_relayed, teardown),
        cmocka_unit_test_teardown(test_require_tls_mail_tab_not_relayed, teardown),
        cmocka_unit_test_teardown(test_require_tls, teardown),
        cmocka_unit_test_teardown(test_bdat_with_chunking, teardown),
        cmocka_unit_test_teardown(test_bdat_chunk_split, teardown),
        cmocka_unit_test_teardown(test_bdat_without_chunking, teardown),
        cmocka_unit_test_teardown(test_bdat_after_helo, teardown),
        cmocka_unit_test_teardown(test_bdat_syntax, teardown),
        cmocka_unit_test_teardown(test_overlong_line, teardown),
        cmocka_unit_test_teardown(test_overlong_line_in_pieces, teardown),
        cmocka_unit_test_teardown(test_line_at_limit, teardown),
        cmocka_unit_test_teardown(test_overlong_line_while_waiting, teardown),
        cmocka_unit_test_teardown(test_bare_lf_in_command, teardown),
        cmocka_unit_test_teardown(test_bare_cr_in_command, teardown),
        cmocka_unit_test_teardown(test_backend_eof, teardown),
        cmocka_unit_test_teardown(test_backend_eof_before_greeting, teardown),
        cmocka_unit_test_teardown(test_unsolicited_reply, teardown),
        cmocka_unit_test_teardown(test_extra_reply, teardown),
        cmocka_unit_test_teardown(test_unsolicited_421, teardown),
        cmocka_unit_test_teardown(test_421_reply_closes, teardown),
        cmocka_unit_test_teardown(test_malformed_reply, teardown),
        cmocka_unit_test_teardown(test_overlong_reply, teardown),
        cmocka_unit_test_teardown(test_quit, teardown),
        cmocka_unit_test_teardown(test_quit_then_eof_without_reply, teardown),
        cmocka_unit_test_teardown(test_abort, teardown),
        cmocka_unit_test_teardown(test_implicit_tls, teardown),
        cmocka_unit_test_teardown(test_implicit_tls_commands_before_ehlo, teardown),
        cmocka_unit_test_teardown(test_pipelining_depth_bound, teardown),
        cmocka_unit_test_teardown(test_state_names, teardown),
        cmocka_unit_test_teardown(test_awaiting_server, teardown),
        cmocka_unit_test_teardown(test_state_log, teardown),
        cmocka_unit_test_teardown(test_deadline_idle, teardown),
        cmocka_unit_test_teardown(test_xclient_not_offered, teardown),
        cmocka_unit_test_teardown(test_xclient_refused_reported, teardown),
        cmocka_unit_test_teardown(test_xclient_keyword_match, teardown),
        cmocka_unit_test_teardown(test_helo_fallback, teardown),
        cmocka_unit_test_teardown(test_helo_fallback_domain_from_greeting, teardown),
        cmocka_unit_test_teardown(test_helo_fallback_refused_or_pipelined, teardown),
        cmocka_unit_test_teardown(test_3xx_to_unknown_verb_closes, teardown),
        cmocka_unit_test_teardown(test_error_limit, teardown),
        cmocka_unit_test_teardown(test_received_format, teardown),
        cmocka_unit_test_teardown(test_received_data_and_bdat, teardown),
        cmocka_unit_test_teardown(test_deadline_backend, teardown),
        cmocka_unit_test_teardown(test_tls_failed_closes_silently, teardown),
        cmocka_unit_test_teardown(test_xclient_handshake, teardown),
        cmocka_unit_test_teardown(test_session_every_chunk_size, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
