/*
 * inbound: the XCLIENT handshake with the backend and what the session
 * is told about it (io.on_event).
 */
#include "tests/unit/core/inbound_fixture.c.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_xclient_not_offered, teardown),
        cmocka_unit_test_teardown(test_xclient_refused_reported, teardown),
        cmocka_unit_test_teardown(test_xclient_keyword_match, teardown),
        cmocka_unit_test_teardown(test_xclient_handshake, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
