/*
 * inbound: the blocks the front end and its relay allocate for a phase
 * only (the XCLIENT greeting, the Received: fields, the greeting's domain,
 * the client's EHLO word, the texts of the proxy's own replies): an idle
 * session holds none it does not need, and running out of memory for one
 * is a 421 4.3.0 and a close, never a crash.
 *
 * malloc is interposed: the n-th call after fail_in = n returns NULL.
 * Sanitizer builds bring their own malloc, so there the failures are not
 * injected and those tests are skipped.
 */
#include "tests/unit/core/inbound_fixture.c.h"

#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define NO_INJECTION 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define NO_INJECTION 1
#endif
#endif

#define R_INTERNAL "421 4.3.0 Internal error, closing connection\r\n"

static int fail_in; /* 0: off */

#ifndef NO_INJECTION
extern void *__libc_malloc(size_t n);

void *malloc(size_t n)
{
    if (fail_in > 0 && --fail_in == 0)
        return NULL;
    return __libc_malloc(n);
}
#endif

static void inject(int n)
{
#ifdef NO_INJECTION
    (void)n;
    skip();
#else
    fail_in = n;
#endif
}

static void expect_internal_close(struct t *t)
{
    expect_cli(t, R_INTERNAL);
    assert_int_equal(actions(t), ENGINE_ACT_CLOSE);
    assert_int_equal(OPS.reason(&t->e), REASON_INTERNAL_ERROR);
    assert_int_equal(t->e.state, INBOUND_CLOSED);
    fail_in = 0;
}

/* An idle session after EHLO holds only the two names it may still need
 * (a HELO fallback, a Received: line); the texts of the proxy's own
 * replies exist only while one is owed. */
static void test_idle_session_holds_no_phase_block(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    assert_null(t->e.greeting);
    assert_null(t->e.received);
    assert_null(t->e.relay.fifo_text);
    assert_string_equal(relay_client_helo(&t->e.relay), "client.example");
    assert_string_equal(t->e.relay.server_domain, "mx.example");
    client(t, "STARTTLS now\r\n");
    expect_cli(t, R_STARTTLS_ARGS);
    assert_null(t->e.relay.fifo_text); /* delivered: gone again */
    /* Behind a reply still owed, the text waits in the FIFO. */
    client(t, "NOOP\r\nSTARTTLS now\r\n");
    expect_srv(t, "NOOP\r\n");
    assert_non_null(t->e.relay.fifo_text);
    server(t, "250 ok\r\n");
    expect_cli(t, "250 ok\r\n" R_STARTTLS_ARGS);
    assert_null(t->e.relay.fifo_text);
    release(t);
}

static void test_xclient_greeting_freed_after_exchange(void **state)
{
    struct inbound_cfg cfg = {
        .xclient = "XCLIENT ADDR=192.0.2.7\r\n",
        .helo_name = "proxy.example",
    };
    struct t *t = start(&cfg);

    server(t, GREETING);
    assert_non_null(t->e.greeting);
    server(t, EHLO_REPLY_CHUNKING); /* no XCLIENT: the kept greeting goes out */
    expect_cli(t, GREETING);
    assert_null(t->e.greeting);
    release(t);

    t = start(&cfg);
    server(t, GREETING);
    server(t, EHLO_REPLY);
    assert_null(t->e.greeting); /* XCLIENT's 220 will be the greeting */
    release(t);
}

static void test_oom_greeting_domain(void **state)
{
    struct t *t = start(NULL);

    inject(1);
    server(t, GREETING);
    expect_internal_close(t);
    release(t);
}

static void test_oom_xclient_greeting(void **state)
{
    struct inbound_cfg cfg = {
        .xclient = "XCLIENT ADDR=192.0.2.7\r\n",
        .helo_name = "proxy.example",
    };
    struct t *t = start(&cfg);

    inject(2); /* the domain first, then the greeting */
    server(t, GREETING);
    expect_srv(t, ""); /* no EHLO for XCLIENT either */
    expect_internal_close(t);
    release(t);
}

static void test_oom_ehlo_word(void **state)
{
    struct t *t = start(NULL);

    greet(t);
    inject(1);
    client(t, EHLO);
    expect_srv(t, ""); /* not relayed */
    expect_internal_close(t);
    release(t);
}

static void test_oom_local_reply(void **state)
{
    struct t *t = session_after_ehlo(NULL);

    inject(1);
    client(t, "STARTTLS now\r\n");
    expect_internal_close(t);
    release(t);
}

static void test_oom_received(void **state)
{
    static const struct inbound_received ri = {.by = "mx.example", .id = "1"};
    struct t *t = session_after_ehlo(NULL);

    inject(1);
    assert_int_equal(inbound_set_received(&t->e, &ri), -1);
    fail_in = 0;
    assert_null(t->e.received);
    assert_int_equal(actions(t), 0); /* the session decides: it closes */
    assert_int_equal(inbound_set_received(&t->e, &ri), 0);
    assert_non_null(t->e.received);
    release(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_idle_session_holds_no_phase_block, teardown),
        cmocka_unit_test_teardown(test_xclient_greeting_freed_after_exchange, teardown),
        cmocka_unit_test_teardown(test_oom_greeting_domain, teardown),
        cmocka_unit_test_teardown(test_oom_xclient_greeting, teardown),
        cmocka_unit_test_teardown(test_oom_ehlo_word, teardown),
        cmocka_unit_test_teardown(test_oom_local_reply, teardown),
        cmocka_unit_test_teardown(test_oom_received, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
