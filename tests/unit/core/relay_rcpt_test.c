/*
 * relay_rcpt: the recipient hook of the relay (relay.h, hooks.rcpt), as a
 * transparent outbound session uses it: the strict parse of the recipient's
 * domain, one table row per case, and transcripts where a decision is
 * pending while the client pipelines behind it, the server answers, closes,
 * or the user refuses.
 */
#include "proxy/core/relay.h"

static unsigned relay_actions(struct relay *r);

#define TRANSCRIPT_ENGINE struct relay
#define TRANSCRIPT_CLIENT(e, p, n) relay_client(e, p, n)
#define TRANSCRIPT_SERVER(e, p, n) relay_server(e, p, n)
#define TRANSCRIPT_TAKE_ACTIONS(e) relay_actions(e)
#include "tests/unit/core/transcript.c.h"

#define R_REFUSED "450 4.7.5 refused by the test\r\n"
#define R_SYNTAX "501 5.1.3 Bad recipient address syntax\r\n"
#define R_NOT_ALABEL                                                                               \
    "450 4.7.5 Recipient domain not in A-label form, its TLS policy cannot be decided\r\n"

static unsigned relay_actions(struct relay *r)
{
    (void)r;
    return 0;
}

/* ---------- the parse ---------- */

static const struct {
    const char *arg;
    int rc;
    const char *domain;
} paths[] = {
    {"TO:<user@Example.NET>\r\n", RELAY_RCPT_OK, "example.net"},
    {"to:<user@a.example.net>", RELAY_RCPT_OK, "a.example.net"},
    {"TO: <user@a.example>\r\n", RELAY_RCPT_OK, "a.example"},
    {"TO:<user@a.example.> NOTIFY=NEVER\r\n", RELAY_RCPT_OK, "a.example"},
    {"TO:<@relay.example,@x.example:user@b.example>\r\n", RELAY_RCPT_OK, "b.example"},
    {"TO:<\"a@evil.example\"@good.example>\r\n", RELAY_RCPT_OK, "good.example"},
    {"TO:<\"a\\\"@evil.example\"@good.example>\r\n", RELAY_RCPT_OK, "good.example"},
    {"TO:<first.last@xn--bcher-kva.example>\r\n", RELAY_RCPT_OK, "xn--bcher-kva.example"},
    {"TO:<Postmaster>\r\n", RELAY_RCPT_OK, ""},
    {"TO:<user@[192.0.2.1]>\r\n", RELAY_RCPT_OK, ""},
    {"TO:<user@[IPv6:2001:db8::1]> ORCPT=rfc822;x@y\r\n", RELAY_RCPT_OK, ""},
    {"TO:<>\r\n", RELAY_RCPT_SYNTAX, ""},
    {"TO:user@a.example\r\n", RELAY_RCPT_SYNTAX, ""},
    {"TO:<user@a.example\r\n", RELAY_RCPT_SYNTAX, ""},
    {"TO:<user@a.example>x\r\n", RELAY_RCPT_SYNTAX, ""},
    {"TO:<user@a..example>\r\n", RELAY_RCPT_SYNTAX, ""},
    {"TO:<user@.a.example>\r\n", RELAY_RCPT_SYNTAX, ""},
    {"TO:<user@a_b.example>\r\n", RELAY_RCPT_SYNTAX, ""},
    {"TO:<user@a.example@b.example>\r\n", RELAY_RCPT_SYNTAX, ""},
    {"TO:<a@b@c.example>\r\n", RELAY_RCPT_SYNTAX, ""},
    {"TO:<.a@c.example>\r\n", RELAY_RCPT_SYNTAX, ""},
    {"TO:<a.@c.example>\r\n", RELAY_RCPT_SYNTAX, ""},
    {"TO:<user@>\r\n", RELAY_RCPT_SYNTAX, ""},
    {"TO:<@a.example>\r\n", RELAY_RCPT_SYNTAX, ""},
    {"TO:<\"unterminated@a.example>\r\n", RELAY_RCPT_SYNTAX, ""},
    {"TO:<user@[]>\r\n", RELAY_RCPT_SYNTAX, ""},
    {"TO:<user@[1.2.3.4>\r\n", RELAY_RCPT_SYNTAX, ""},
    {"FROM:<user@a.example>\r\n", RELAY_RCPT_SYNTAX, ""},
    {"TO:<user@b\xc3\xbc"
     "cher.example>\r\n",
     RELAY_RCPT_NOT_ALABEL, NULL},
    {"", RELAY_RCPT_SYNTAX, ""},
};

static void test_parse(void **state)
{
    char out[256];

    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        memset(out, 'x', sizeof(out));
        int rc = relay_rcpt_domain((const uint8_t *)paths[i].arg, strlen(paths[i].arg), out,
                                   sizeof(out));
        if (rc != paths[i].rc)
            fail_msg("%s: rc %d, want %d", paths[i].arg, rc, paths[i].rc);
        if (paths[i].domain != NULL)
            assert_string_equal(out, paths[i].domain);
    }
}

static void test_parse_bounds(void **state)
{
    char arg[600], out[256];
    size_t n;

    /* A 63-octet label is fine, 64 is not; 253 octets in all, not 254. */
    n = (size_t)snprintf(arg, sizeof(arg), "TO:<u@%.63s.example>",
                         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_int_equal(relay_rcpt_domain((const uint8_t *)arg, n, out, sizeof(out)), RELAY_RCPT_OK);
    n = (size_t)snprintf(arg, sizeof(arg), "TO:<u@%.64s.example>",
                         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_int_equal(relay_rcpt_domain((const uint8_t *)arg, n, out, sizeof(out)),
                     RELAY_RCPT_SYNTAX);
    char dom[300];
    size_t k = 0;
    while (k + 4 <= 253) {
        memcpy(dom + k, "abc.", 4);
        k += 4;
    }
    memcpy(dom + k, "x", 1); /* 252 + 1 = 253 */
    dom[k + 1] = '\0';
    n = (size_t)snprintf(arg, sizeof(arg), "TO:<u@%s>", dom);
    assert_int_equal(relay_rcpt_domain((const uint8_t *)arg, n, out, sizeof(out)), RELAY_RCPT_OK);
    assert_int_equal(strlen(out), 253);
    n = (size_t)snprintf(arg, sizeof(arg), "TO:<u@%sy>", dom);
    assert_int_equal(relay_rcpt_domain((const uint8_t *)arg, n, out, sizeof(out)),
                     RELAY_RCPT_SYNTAX);
    /* A short buffer is never overrun: the domain does not fit. */
    char tiny[8];
    n = (size_t)snprintf(arg, sizeof(arg), "TO:<u@a.example.net>");
    assert_int_equal(relay_rcpt_domain((const uint8_t *)arg, n, tiny, sizeof(tiny)),
                     RELAY_RCPT_SYNTAX);
    /* Every prefix of a good argument is read within its length. */
    const char *good = "TO:<\"q@x\"@a.example> NOTIFY=NEVER";
    for (size_t i = 0; i < strlen(good); i++) {
        uint8_t *copy = malloc(i ? i : 1);
        memcpy(copy, good, i);
        (void)relay_rcpt_domain(copy, i, out, sizeof(out));
        free(copy);
    }
}

/* ---------- transcripts ---------- */

/* The test hook: "wait.*" domains wait, "refuse.*" ones are refused at
 * once, others pass; every domain seen is
 * recorded. */
static char seen[512];

static enum relay_rcpt_verdict on_rcpt(void *arg, const char *domain, const char **reply)
{
    (void)arg;
    strncat(seen, "[", sizeof(seen) - strlen(seen) - 1);
    strncat(seen, domain, sizeof(seen) - strlen(seen) - 1);
    strncat(seen, "]", sizeof(seen) - strlen(seen) - 1);
    if (strncmp(domain, "refuse.", 7) == 0) {
        *reply = R_REFUSED;
        return RELAY_RCPT_REFUSE;
    }
    return strncmp(domain, "wait.", 5) == 0 ? RELAY_RCPT_WAIT : RELAY_RCPT_PASS;
}

static struct t *start(void)
{
    struct t *t = alloc_t();
    struct engine_io io = transcript_io(t);
    struct relay_cfg cfg = {.tls = true, .caps = SMTP_CAP_PIPELINING};
    struct relay_hooks hooks = {.arg = t, .rcpt = on_rcpt};

    seen[0] = '\0';
    relay_init(&t->e, &cfg, &io, &hooks);
    return t;
}

/* The user's decision, then the session offers the unread bytes again. */
static void resume(struct t *t, const char *reply)
{
    relay_rcpt_resume(&t->e, reply);
    pump(t);
}

static void test_pipelined_refused_and_passed(void **state)
{
    struct t *t = start();

    client(t, "MAIL FROM:<s@x.example>\r\nRCPT TO:<u@wait.a.example>\r\n"
              "RCPT TO:<v@b.example>\r\nDATA\r\n");
    /* MAIL went on; the first RCPT waits, and everything behind it too. */
    expect_srv(t, "MAIL FROM:<s@x.example>\r\n");
    assert_string_equal(seen, "[wait.a.example]");
    assert_true(relay_rcpt_waiting(&t->e));
    server(t, "250 2.1.0 sender ok\r\n");
    expect_cli(t, "250 2.1.0 sender ok\r\n");
    /* Refused: the proxy answers in its place, and b is asked about. */
    resume(t, R_REFUSED);
    expect_cli(t, R_REFUSED);
    assert_string_equal(seen, "[wait.a.example][b.example]");
    expect_srv(t, "RCPT TO:<v@b.example>\r\nDATA\r\n");
    server(t, "250 2.1.5 ok\r\n354 go ahead\r\n");
    expect_cli(t, "250 2.1.5 ok\r\n354 go ahead\r\n");
    client(t, "hello\r\n.\r\n");
    expect_srv(t, "hello\r\n.\r\n");
    server(t, "250 2.0.0 queued\r\n");
    expect_cli(t, "250 2.0.0 queued\r\n");
    release(t);
}

/* Decided before the earlier reply is in: the refusal keeps its place. */
static void test_decided_before_earlier_reply(void **state)
{
    struct t *t = start();

    client(t, "MAIL FROM:<s@x.example>\r\nRCPT TO:<u@wait.a.example>\r\n"
              "RCPT TO:<v@b.example>\r\nDATA\r\n");
    resume(t, R_REFUSED);
    expect_cli(t, "");
    expect_srv(t, "MAIL FROM:<s@x.example>\r\nRCPT TO:<v@b.example>\r\nDATA\r\n");
    server(t, "250 2.1.0 sender ok\r\n");
    expect_cli(t, "250 2.1.0 sender ok\r\n" R_REFUSED);
    server(t, "250 2.1.5 ok\r\n");
    expect_cli(t, "250 2.1.5 ok\r\n");
    release(t);
}

/* Forwarded after the wait: the server sees the RCPT once, in order. */
static void test_wait_then_forward(void **state)
{
    struct t *t = start();

    client(t, "MAIL FROM:<s@x.example>\r\nRCPT TO:<u@wait.a.example>\r\nNOOP\r\n");
    resume(t, NULL);
    expect_srv(t, "MAIL FROM:<s@x.example>\r\nRCPT TO:<u@wait.a.example>\r\nNOOP\r\n");
    assert_string_equal(seen, "[wait.a.example]");
    server(t, "250 a\r\n250 b\r\n250 c\r\n");
    expect_cli(t, "250 a\r\n250 b\r\n250 c\r\n");
    release(t);
}

/* Only refused recipients: DATA still goes to the server, whose answer
 * the client gets (nothing invented). */
static void test_data_after_only_refused(void **state)
{
    struct t *t = start();

    client(t, "MAIL FROM:<s@x.example>\r\nRCPT TO:<u@wait.a.example>\r\nDATA\r\n");
    resume(t, R_REFUSED);
    expect_srv(t, "MAIL FROM:<s@x.example>\r\nDATA\r\n");
    server(t, "250 ok\r\n554 5.5.1 Error: no valid recipients\r\n");
    expect_cli(t, "250 ok\r\n" R_REFUSED "554 5.5.1 Error: no valid recipients\r\n");
    assert_int_equal(t->e.state, RELAY_COMMAND);
    release(t);
}

/* A server 421 while a decision is pending: the relay closes, a late
 * decision changes nothing, and the RCPT never reaches the server. */
static void test_pending_server_421(void **state)
{
    struct t *t = start();

    client(t, "MAIL FROM:<s@x.example>\r\nRCPT TO:<u@wait.a.example>\r\n");
    server(t, "421 4.3.2 shutting down\r\n");
    expect_cli(t, "421 4.3.2 shutting down\r\n");
    assert_int_equal(t->e.state, RELAY_CLOSED);
    resume(t, NULL);
    expect_srv(t, "MAIL FROM:<s@x.example>\r\n");
    expect_cli(t, "");
    assert_int_equal(t->ncpend, 0); /* a closed relay takes everything */
    release(t);
}

/* The session closes (client EOF, deadline, shutdown) with one pending. */
static void test_pending_close(void **state)
{
    struct t *t = start();

    client(t, "RCPT TO:<u@wait.a.example>\r\nQUIT\r\n");
    relay_close(&t->e, "421 4.4.2 Idle timeout exceeded, closing connection\r\n", REASON_TIMEOUT);
    expect_cli(t, "421 4.4.2 Idle timeout exceeded, closing connection\r\n");
    resume(t, R_REFUSED);
    expect_cli(t, "");
    expect_srv(t, "");
    release(t);
}

/* A server's late reply while waiting is delivered at once. */
static void test_pending_earlier_reply(void **state)
{
    struct t *t = start();

    client(t, "NOOP\r\nRCPT TO:<u@wait.a.example>\r\n");
    expect_srv(t, "NOOP\r\n");
    server(t, "250 noop\r\n");
    expect_cli(t, "250 noop\r\n");
    assert_true(relay_rcpt_waiting(&t->e));
    /* The client waits for an answer: to the session that is "owed". */
    assert_true(relay_awaiting_server(&t->e));
    resume(t, R_REFUSED);
    expect_cli(t, R_REFUSED);
    assert_false(relay_rcpt_waiting(&t->e));
    assert_false(relay_awaiting_server(&t->e));
    release(t);
}

/* A decision already known (the session's cache): refused at once, in
 * its place after what is owed. */
static void test_refused_at_once(void **state)
{
    struct t *t = start();

    client(t, "MAIL FROM:<s@x.example>\r\nRCPT TO:<u@refuse.a.example>\r\n"
              "RCPT TO:<v@b.example>\r\n");
    expect_srv(t, "MAIL FROM:<s@x.example>\r\nRCPT TO:<v@b.example>\r\n");
    expect_cli(t, "");
    server(t, "250 mail\r\n250 rcpt\r\n");
    expect_cli(t, "250 mail\r\n" R_REFUSED "250 rcpt\r\n");
    assert_int_equal(t->e.errors, 0);
    release(t);
}

/* Policy refusals are not the client's errors: no 421 after twenty. */
static void test_refusals_do_not_count(void **state)
{
    struct t *t = start();

    for (int i = 0; i < RELAY_ERROR_LIMIT + 5; i++) {
        client(t, "RCPT TO:<u@wait.a.example>\r\n");
        resume(t, R_REFUSED);
        expect_cli(t, R_REFUSED);
    }
    assert_int_equal(t->e.state, RELAY_COMMAND);
    assert_int_equal(t->e.errors, 0);
    release(t);
}

/* What does not parse is answered by the proxy and never asked about. */
static void test_syntax(void **state)
{
    struct t *t = start();

    client(t, "RCPT TO:u@a.example\r\nRCPT TO:<u@b\xc3\xbc"
              "cher.example>\r\n"
              "RCPT TO:<u@[192.0.2.1]>\r\nRCPT TO:<Postmaster>\r\n");
    assert_string_equal(seen, "[][]");
    expect_srv(t, "RCPT TO:<u@[192.0.2.1]>\r\nRCPT TO:<Postmaster>\r\n");
    expect_cli(t, R_SYNTAX R_NOT_ALABEL);
    release(t);
}

/* Without the hook, RCPT is relayed as ever, whatever it looks like. */
static void test_no_hook(void **state)
{
    struct t *t = alloc_t();
    struct engine_io io = transcript_io(t);
    struct relay_cfg cfg = {.tls = true};

    relay_init(&t->e, &cfg, &io, NULL);
    client(t, "RCPT TO:u@a.example\r\n");
    expect_srv(t, "RCPT TO:u@a.example\r\n");
    release(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_bounds),
        cmocka_unit_test_teardown(test_pipelined_refused_and_passed, teardown),
        cmocka_unit_test_teardown(test_decided_before_earlier_reply, teardown),
        cmocka_unit_test_teardown(test_wait_then_forward, teardown),
        cmocka_unit_test_teardown(test_data_after_only_refused, teardown),
        cmocka_unit_test_teardown(test_pending_server_421, teardown),
        cmocka_unit_test_teardown(test_pending_close, teardown),
        cmocka_unit_test_teardown(test_pending_earlier_reply, teardown),
        cmocka_unit_test_teardown(test_refused_at_once, teardown),
        cmocka_unit_test_teardown(test_refusals_do_not_count, teardown),
        cmocka_unit_test_teardown(test_syntax, teardown),
        cmocka_unit_test_teardown(test_no_hook, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
