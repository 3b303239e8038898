/*
 * Tests of proxy/net/https_get.c over real sockets on 127.0.0.1 and real
 * TLS: the client runs on a libuv loop in the test's thread; each case's
 * server is a thread with blocking sockets and a BoringSSL server engine
 * (proxy/tls) that follows a small script (certificate, response bytes,
 * how they are cut, how the connection ends); see https_get_fixture.c.h.
 * The resolver's side is in https_get_dns_test.c.
 */
#include "tests/unit/net/https_get_fixture.c.h"

/* --- cases --------------------------------------------------------------- */

static void test_ok_content_length(void **state)
{
    (void)state;
    struct script s = {.response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                   "Content-Length: 67\r\n\r\n" POLICY,
                       .close_notify = true};
    struct server sv;

    run_script(&s, "mx.test", NULL, &sv);
    if (got.status != HTTPS_GET_OK)
        fail_msg("%s: %s", https_get_status_str(got.status), got.why);
    assert_int_equal(got.http_status, 200);
    assert_string_equal(got.body, POLICY);
    /* The request: origin form, Host without the default port, one
     * request per connection. */
    assert_string_equal(sv.request, "GET " PATH " HTTP/1.1\r\n"
                                    "Host: mx.test\r\n"
                                    "User-Agent: smtp-tls-proxy\r\n"
                                    "Accept: text/plain\r\n"
                                    "Connection: close\r\n\r\n");
}

/* The response's end is known from Content-Length: the client does not
 * wait for the server to close. */
static void test_ok_server_keeps_connection(void **state)
{
    (void)state;
    struct script s = {.response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                   "Content-Length: 67\r\n\r\n" POLICY,
                       .stall = true};
    expect(&s, "mx.test", HTTPS_GET_OK);
    assert_true(got.ms < 5000);
}

/* Chunked, each byte in a TLS record of its own. */
static void test_ok_chunked(void **state)
{
    (void)state;
    struct script s = {.response =
                           "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n"
                           "10\r\nversion: STSv1\r\n\r\n"
                           "33;x=y\r\nmode: enforce\r\nmx: mx.example.net\r\nmax_age: 86400\r\n\r\n"
                           "0\r\n\r\n",
                       .piece = 1};
    expect(&s, "mx.test", HTTPS_GET_OK);
    assert_string_equal(got.body, POLICY);
}

/* A body delimited by the close is complete only with a close_notify
 * (RFC 9112 §9.8); a bare FIN may be an attacker cutting it short. */
static void test_close_delimited(void **state)
{
    (void)state;
    struct script s = {.response = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" POLICY,
                       .close_notify = true};
    expect(&s, "mx.test", HTTPS_GET_OK);
    assert_string_equal(got.body, POLICY);
    s.close_notify = false;
    expect(&s, "mx.test", HTTPS_GET_CLOSED);
}

static void test_wrong_name(void **state)
{
    (void)state;
    struct script s = {.response = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"};
    struct server sv;

    run_script(&s, "mta-sts.example.net", NULL, &sv);
    if (got.status != HTTPS_GET_CERTIFICATE)
        fail_msg("%s: %s", https_get_status_str(got.status), got.why);
    assert_non_null(strstr(got.why, "certificate"));
    /* Nothing was asked of a server that could not prove its name. */
    assert_false(sv.handshake_ok);
    assert_int_equal(sv.request_len, 0);
}

static void test_untrusted_and_expired(void **state)
{
    (void)state;
    struct script s = {.cert = "selfsigned",
                       .response = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"};
    expect(&s, "mx.test", HTTPS_GET_CERTIFICATE);
    s.cert = "expired";
    expect(&s, "mx.test", HTTPS_GET_CERTIFICATE);
    /* The control: the same name with a good certificate. */
    s.cert = "server-rsa";
    s.response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n";
    expect(&s, "mx.test", HTTPS_GET_OK);
}

static void test_redirect_and_status(void **state)
{
    (void)state;
    struct script s = {.response = "HTTP/1.1 301 Moved Permanently\r\n"
                                   "Location: https://mx.test/elsewhere\r\n"
                                   "Content-Type: text/plain\r\nContent-Length: 0\r\n\r\n"};
    expect(&s, "mx.test", HTTPS_GET_REDIRECT);
    assert_int_equal(got.http_status, 301);
    s.response = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\n"
                 "not found";
    expect(&s, "mx.test", HTTPS_GET_HTTP_STATUS);
    assert_int_equal(got.http_status, 404);
    s.response = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 67\r\n\r\n" POLICY;
    expect(&s, "mx.test", HTTPS_GET_MEDIA_TYPE);
    s.response = "HTTP/1.1 200 OK\r\nContent-Length: 67\r\n\r\n" POLICY;
    expect(&s, "mx.test", HTTPS_GET_MEDIA_TYPE);
    s.response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    expect(&s, "mx.test", HTTPS_GET_MALFORMED);
    s.response = "SSH-2.0-OpenSSH_9.2\r\n";
    s.close_notify = true;
    expect(&s, "mx.test", HTTPS_GET_MALFORMED);
}

/* 64 KiB is the most; one byte more fails, announced or streamed. */
static void test_body_limit(void **state)
{
    (void)state;
    size_t big = HTTPS_GET_BODY_MAX + 1;
    char *text = malloc(big + 256);
    assert_non_null(text);

    int n = snprintf(text, 256,
                     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %d\r\n\r\n",
                     HTTPS_GET_BODY_MAX);
    memset(text + n, 'a', HTTPS_GET_BODY_MAX);
    struct script s = {.response = text, .response_len = (size_t)n + HTTPS_GET_BODY_MAX};
    expect(&s, "mx.test", HTTPS_GET_OK);
    assert_int_equal(got.body_len, HTTPS_GET_BODY_MAX);

    n = snprintf(text, 256,
                 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                 "Content-Length: %zu\r\n\r\n",
                 big);
    memset(text + n, 'a', big);
    s.response_len = (size_t)n + big;
    expect(&s, "mx.test", HTTPS_GET_TOO_LARGE);

    /* No length, and the server never stops: refused at the limit. */
    n = snprintf(text, 256, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
    memset(text + n, 'a', big);
    s.response_len = (size_t)n + big;
    s.stall = true;
    expect(&s, "mx.test", HTTPS_GET_TOO_LARGE);
    free(text);
}

static void test_timeouts(void **state)
{
    (void)state;
    struct https_get_limits lim = test_limits();
    struct server sv;

    /* A server that accepts and never answers the ClientHello. */
    struct script silent = {.silent = true};
    lim.handshake_ms = 300;
    run_script(&silent, "mx.test", &lim, &sv);
    assert_int_equal(got.status, HTTPS_GET_TIMEOUT);
    assert_string_equal(got.why, "TLS handshake timed out");
    assert_true(got.ms >= 290 && got.ms < 5000);

    /* One that sends the head and part of the body, then stalls: the total
     * time is what bounds it. */
    struct script stall = {.response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                       "Content-Length: 67\r\n\r\nversion: STSv1\r\n",
                           .stall = true};
    lim = test_limits();
    lim.total_ms = 500;
    run_script(&stall, "mx.test", &lim, &sv);
    assert_int_equal(got.status, HTTPS_GET_TIMEOUT);
    assert_string_equal(got.why, "response timed out");
    assert_true(got.ms >= 490 && got.ms < 5000);
}

/* The server closes mid-body: never a success, with or without TLS's
 * goodbye. */
static void test_closed_mid_body(void **state)
{
    (void)state;
    struct script s = {.response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                   "Content-Length: 67\r\n\r\nversion: STSv1\r\n"};
    expect(&s, "mx.test", HTTPS_GET_CLOSED);
    s.close_notify = true;
    expect(&s, "mx.test", HTTPS_GET_CLOSED);
    s.response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                 "\r\n10\r\nversion: STSv1\r\n\r\n";
    expect(&s, "mx.test", HTTPS_GET_CLOSED);
    /* Closed right after the request. */
    s.response = NULL;
    expect(&s, "mx.test", HTTPS_GET_CLOSED);
    assert_string_equal(got.why, "connection closed before a response");
}

static void test_connect_refused(void **state)
{
    (void)state;
    /* A port nobody listens on: bind one, then close it. */
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);

    struct https_get_limits lim = test_limits();
    fetch_at("mx.test", ntohs(sin.sin_port), &lim);
    assert_int_equal(got.status, HTTPS_GET_CONNECT);
    assert_non_null(strstr(got.why, "127.0.0.1"));
}

static void on_cancel_timer(uv_timer_t *t)
{
    https_get_cancel(t->data);
    uv_close((uv_handle_t *)t, NULL);
}

/* Cancelled mid-handshake and mid-response: no callback, nothing left on
 * the loop, and the struct is reusable at once. */
static void test_cancel(void **state)
{
    (void)state;
    for (int round = 0; round < 2; round++) {
        struct script s = {.silent = round == 0,
                           .response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                       "Content-Length: 67\r\n\r\nversion",
                           .stall = true};
        struct server sv;
        uv_loop_t loop;
        uv_timer_t timer;
        struct https_get g = {.data = &got};
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

        server_start(&sv, &s);
        sin.sin_port = htons(sv.port);
        memset(&got, 0, sizeof(got));
        assert_int_equal(uv_loop_init(&loop), 0);
        cb_loop = &loop;
        assert_int_equal(https_get_start(&g, &loop, NULL, client, "mx.test", 443, PATH,
                                         (const struct sockaddr *)&sin, NULL, on_done),
                         0);
        /* A second start on a busy struct is refused. */
        assert_int_equal(https_get_start(&g, &loop, NULL, client, "mx.test", 443, PATH,
                                         (const struct sockaddr *)&sin, NULL, on_done),
                         UV_EBUSY);
        uv_timer_init(&loop, &timer);
        timer.data = &g;
        uv_timer_start(&timer, on_cancel_timer, 200, 0);
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(got.calls, 0);
        assert_false(https_get_active(&g));
        https_get_cancel(&g); /* idempotent */
        assert_int_equal(uv_loop_close(&loop), 0);
        server_stop(&sv);
    }
}

static void test_invalid_arguments(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct https_get g = {0};
    struct sockaddr_in sin = {
        .sin_family = AF_INET, .sin_port = htons(443), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    const struct sockaddr *sa = (const struct sockaddr *)&sin;
    char longname[300];

    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(uv_loop_init(&loop), 0);
    const char *hosts[] = {
        "",         "mx.test\r\nX-Injected: 1", "mx test",        "mx..test",  ".mx.test",
        "mx.test.", "mx_test.example",          "m\xc3\xa9.test", "127.0.0.1", "mx.1",
        longname};
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++)
        assert_int_equal(
            https_get_start(&g, &loop, NULL, client, hosts[i], 443, PATH, sa, NULL, on_done),
            UV_EINVAL);
    const char *paths[] = {"", "relative", "/a b", "/a\r\nHost: evil", "/\x7f"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        assert_int_equal(
            https_get_start(&g, &loop, NULL, client, "mx.test", 443, paths[i], sa, NULL, on_done),
            UV_EINVAL);
    /* Neither a resolver nor an address. */
    assert_int_equal(
        https_get_start(&g, &loop, NULL, client, "mx.test", 443, PATH, NULL, NULL, on_done),
        UV_EINVAL);
    assert_false(https_get_active(&g));
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_status_names(void **state)
{
    (void)state;
    for (int s = HTTPS_GET_OK; s <= HTTPS_GET_INTERNAL; s++)
        assert_string_not_equal(https_get_status_str((enum https_get_status)s), "unknown");
    assert_string_equal(https_get_status_str(HTTPS_GET_REDIRECT), "redirect");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok_content_length),
        cmocka_unit_test(test_ok_server_keeps_connection),
        cmocka_unit_test(test_ok_chunked),
        cmocka_unit_test(test_close_delimited),
        cmocka_unit_test(test_wrong_name),
        cmocka_unit_test(test_untrusted_and_expired),
        cmocka_unit_test(test_redirect_and_status),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_closed_mid_body),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_status_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
