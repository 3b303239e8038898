/*
 * inbound: BDAT (CHUNKING) and the Received: line the proxy adds to
 * DATA and BDAT content.
 */
#include "tests/unit/core/inbound_fixture.c.h"

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
    assert_int_equal(inbound_set_received(&t->e, &RECEIVED), 0);
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
    assert_int_equal(inbound_set_received(&t->e, &RECEIVED), 0);
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
    assert_int_equal(inbound_set_received(&t->e, &RECEIVED), 0);
    client(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n");
    server(t, "250 ok\r\n250 ok\r\n354 go\r\n");
    client(t, "hi\r\n.\r\n");
    expect_srv(t, "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\nhi\r\n.\r\n");
    release(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_bdat_with_chunking, teardown),
        cmocka_unit_test_teardown(test_bdat_chunk_split, teardown),
        cmocka_unit_test_teardown(test_bdat_without_chunking, teardown),
        cmocka_unit_test_teardown(test_bdat_after_helo, teardown),
        cmocka_unit_test_teardown(test_bdat_syntax, teardown),
        cmocka_unit_test_teardown(test_received_format, teardown),
        cmocka_unit_test_teardown(test_received_data_and_bdat, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
