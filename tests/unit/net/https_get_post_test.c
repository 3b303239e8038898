/*
 * Tests of https_post_start() (proxy/net/https_get.c), the POST variant for
 * TLS-RPT reports (RFC 8460 §5.4), over real sockets on 127.0.0.1 and real
 * TLS against the scripted server of https_get_fixture.c.h: the request as
 * sent (head and body bytes), which statuses are a success, and the
 * arguments refused before anything is sent.
 */
#include "tests/unit/net/https_get_fixture.c.h"

#define RPT_PATH "/tlsrpt"

/* A body with bytes a string would stop at: gzip's magic, a NUL, 0xff. */
static uint8_t report[300];

static const struct https_post_body body = {
    .content_type = "application/tlsrpt+gzip",
    .data = report,
    .len = sizeof(report),
};

/* POSTs report to https://host RPT_PATH at 127.0.0.1:port, as fetch_at(). */
static void post_at(const char *host, uint16_t port, const struct https_post_body *pb)
{
    uv_loop_t loop;
    struct https_get g = {.data = &got};
    struct https_get_limits lim = test_limits();
    struct sockaddr_in sin = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

    memset(&got, 0, sizeof(got));
    assert_int_equal(uv_loop_init(&loop), 0);
    cb_loop = &loop;
    t0 = uv_now(&loop);
    assert_int_equal(https_post_start(&g, &loop, NULL, client, host, port, RPT_PATH,
                                      (const struct sockaddr *)&sin, &lim, pb, on_done),
                     0);
    assert_true(https_get_active(&g));
    assert_int_equal(got.calls, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(got.calls, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void post_script(const struct script *s, const struct https_post_body *pb, struct server *sv)
{
    server_start(sv, s);
    post_at("mx.test", sv->port, pb);
    server_stop(sv);
}

static void fill_report(void)
{
    for (size_t i = 0; i < sizeof(report); i++)
        report[i] = (uint8_t)(i * 7);
    report[0] = 0x1f;
    report[1] = 0x8b;
    report[2] = 0;
    report[3] = 0xff;
}

static void test_post_created(void **state)
{
    (void)state;
    struct script s = {.response = "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
                       .close_notify = true};
    struct server sv;
    char head[512];

    fill_report();
    post_script(&s, &body, &sv);
    if (got.status != HTTPS_GET_OK)
        fail_msg("%s: %s", https_get_status_str(got.status), got.why);
    assert_int_equal(got.http_status, 201);
    assert_int_equal(got.body_len, 0);
    /* The head, with the port since it is not 443, then the bytes as given. */
    snprintf(head, sizeof(head),
             "POST " RPT_PATH " HTTP/1.1\r\n"
             "Host: mx.test:%u\r\n"
             "User-Agent: smtp-tls-proxy\r\n"
             "Content-Type: application/tlsrpt+gzip\r\n"
             "Content-Length: 300\r\n"
             "Connection: close\r\n\r\n",
             (unsigned)sv.port);
    size_t hl = strlen(head);
    assert_int_equal(sv.request_len, hl + sizeof(report));
    assert_memory_equal(sv.request, head, hl);
    assert_memory_equal(sv.request + hl, report, sizeof(report));
}

/* Content-Encoding is sent when asked for; a 200 of any media type is a
 * success, and its body is handed over. */
static void test_post_encoding_and_body(void **state)
{
    (void)state;
    struct script s = {.response = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                                   "Content-Length: 6\r\n\r\nthanks",
                       .close_notify = true};
    struct https_post_body pb = {.content_type = "application/tlsrpt+json",
                                 .content_encoding = "gzip",
                                 .data = report,
                                 .len = 10};
    struct server sv;

    fill_report();
    post_script(&s, &pb, &sv);
    if (got.status != HTTPS_GET_OK)
        fail_msg("%s: %s", https_get_status_str(got.status), got.why);
    assert_string_equal(got.body, "thanks");
    assert_non_null(strstr(sv.request, "\r\nContent-Type: application/tlsrpt+json\r\n"
                                       "Content-Encoding: gzip\r\nContent-Length: 10\r\n"));
}

/* No body at all is a valid POST too. */
static void test_post_empty(void **state)
{
    (void)state;
    struct script s = {.response = "HTTP/1.1 204 No Content\r\n\r\n", .stall = true};
    struct https_post_body pb = {.content_type = "text/plain"};
    struct server sv;

    post_script(&s, &pb, &sv);
    if (got.status != HTTPS_GET_OK)
        fail_msg("%s: %s", https_get_status_str(got.status), got.why);
    assert_int_equal(got.http_status, 204);
    assert_non_null(strstr(sv.request, "Content-Length: 0\r\n"));
}

/* Not a success: a redirect (never followed) and any status outside 2xx. */
static void test_post_failures(void **state)
{
    (void)state;
    struct script redirect = {.response = "HTTP/1.1 307 Temporary Redirect\r\nLocation: "
                                          "https://elsewhere.test/\r\nContent-Length: 0\r\n\r\n",
                              .close_notify = true};
    struct script error = {.response =
                               "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n",
                           .close_notify = true};
    struct script cont = {.response = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Oops\r\n"
                                      "Content-Length: 0\r\n\r\n",
                          .close_notify = true};
    struct server sv;

    fill_report();
    post_script(&redirect, &body, &sv);
    assert_int_equal(got.status, HTTPS_GET_REDIRECT);
    post_script(&error, &body, &sv);
    assert_int_equal(got.status, HTTPS_GET_HTTP_STATUS);
    assert_int_equal(got.http_status, 413);
    post_script(&cont, &body, &sv);
    assert_int_equal(got.status, HTTPS_GET_HTTP_STATUS);
    assert_int_equal(got.http_status, 500);
}

/* Header values that would split the request, and bodies out of bounds,
 * are refused before anything starts. */
static void test_post_invalid_arguments(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct https_get g = {0};
    struct sockaddr_in sin = {
        .sin_family = AF_INET, .sin_port = htons(1), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    const struct sockaddr *a = (const struct sockaddr *)&sin;
    struct https_post_body pb;
    char longv[HTTPS_POST_VALUE_MAX + 2];

    memset(longv, 'a', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(
        https_post_start(&g, &loop, NULL, client, "mx.test", 443, "/", a, NULL, NULL, on_done),
        UV_EINVAL);
    const char *bad_types[] = {NULL, "", "text/plain\r\nX-Evil: 1", " text/plain", longv};
    for (size_t i = 0; i < sizeof(bad_types) / sizeof(bad_types[0]); i++) {
        pb = body;
        pb.content_type = bad_types[i];
        assert_int_equal(
            https_post_start(&g, &loop, NULL, client, "mx.test", 443, "/", a, NULL, &pb, on_done),
            UV_EINVAL);
    }
    pb = body;
    pb.content_encoding = "gzip\n";
    assert_int_equal(
        https_post_start(&g, &loop, NULL, client, "mx.test", 443, "/", a, NULL, &pb, on_done),
        UV_EINVAL);
    pb = body;
    pb.len = HTTPS_POST_BODY_MAX + 1;
    assert_int_equal(
        https_post_start(&g, &loop, NULL, client, "mx.test", 443, "/", a, NULL, &pb, on_done),
        UV_EINVAL);
    pb = body;
    pb.data = NULL;
    assert_int_equal(
        https_post_start(&g, &loop, NULL, client, "mx.test", 443, "/", a, NULL, &pb, on_done),
        UV_EINVAL);
    assert_false(https_get_active(&g));
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_post_created),
        cmocka_unit_test(test_post_encoding_and_body),
        cmocka_unit_test(test_post_empty),
        cmocka_unit_test(test_post_failures),
        cmocka_unit_test(test_post_invalid_arguments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
