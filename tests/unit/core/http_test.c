/* Unit tests for proxy/core/http.c: which response a request head gets,
 * without sockets (tests/unit/net/metrics_server_test.c covers the wire). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/core/http.h"

#define CAP 4096

/* Parses text from an exactly sized heap copy, so that a read past its end
 * shows under ASan. */
static enum http_response parse(const char *text, bool *head_only)
{
    size_t n = strlen(text);
    char *copy = malloc(n ? n : 1);

    assert_non_null(copy);
    memcpy(copy, text, n);
    enum http_response r = http_request_parse(copy, n, CAP, head_only);
    free(copy);
    return r;
}

static void expect(const char *text, enum http_response want, bool want_head_only)
{
    bool head_only = !want_head_only;
    enum http_response r = parse(text, &head_only);

    if (r != want)
        fail_msg("\"%s\": %s, expected %s", text, http_response_str(r), http_response_str(want));
    assert_int_equal(head_only, want_head_only);
}

static void test_routes(void **state)
{
    (void)state;
    expect("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_METRICS, false);
    expect("GET /metrics?name[]=x HTTP/1.0\r\n\r\n", HTTP_METRICS, false);
    expect("HEAD /metrics HTTP/1.1\r\n\r\n", HTTP_METRICS, true);
    expect("GET /healthz HTTP/1.1\r\n\r\n", HTTP_HEALTH, false);
    expect("HEAD /healthz HTTP/1.9\r\n\r\n", HTTP_HEALTH, true);
    /* A bare LF ends lines and the head too (lenient). */
    expect("GET /healthz HTTP/1.1\n\n", HTTP_HEALTH, false);
    expect("GET /healthz HTTP/1.1\nHost: x\n\r\n", HTTP_HEALTH, false);
}

static void test_errors(void **state)
{
    (void)state;
    expect("GET / HTTP/1.1\r\n\r\n", HTTP_NOT_FOUND, false);
    expect("GET /metricsx HTTP/1.1\r\n\r\n", HTTP_NOT_FOUND, false);
    expect("HEAD /nope HTTP/1.1\r\n\r\n", HTTP_NOT_FOUND, true);
    /* An unknown path is 404 whatever the method; a known one is 405. */
    expect("POST /nope HTTP/1.1\r\n\r\n", HTTP_NOT_FOUND, false);
    expect("POST /metrics HTTP/1.1\r\n\r\n", HTTP_METHOD_NOT_ALLOWED, false);
    expect("get /healthz HTTP/1.1\r\n\r\n", HTTP_METHOD_NOT_ALLOWED, false);
    expect("\r\n", HTTP_AGAIN, false);
    expect("\r\n\r\n", HTTP_BAD_REQUEST, false); /* an empty request line */
    expect("\n\n", HTTP_BAD_REQUEST, false);
    expect("GET\r\n\r\n", HTTP_BAD_REQUEST, false);
    expect("GET /metrics\r\n\r\n", HTTP_BAD_REQUEST, false);
    expect(" /metrics HTTP/1.1\r\n\r\n", HTTP_BAD_REQUEST, false);
    expect("GET  /metrics HTTP/1.1\r\n\r\n", HTTP_BAD_REQUEST, false);
    expect("GET /metrics HTTP/2.0\r\n\r\n", HTTP_BAD_REQUEST, false);
    expect("GET /metrics HTTP/1.x\r\n\r\n", HTTP_BAD_REQUEST, false);
    expect("GET /metrics HTTP/1.1 \r\n\r\n", HTTP_BAD_REQUEST, false);
    expect("GET /metrics HTTP/1.10\r\n\r\n", HTTP_BAD_REQUEST, false);
}

static void test_incomplete_and_too_large(void **state)
{
    char big[CAP];
    bool head_only;

    (void)state;
    expect("", HTTP_AGAIN, false);
    expect("GET /metrics HTTP/1.1\r\n", HTTP_AGAIN, false);
    expect("GET /metrics HTTP/1.1\r\nHost: x\r\n\r", HTTP_AGAIN, false);

    /* Full buffer and no end of head: 431; a complete head that exactly
     * fills it is still answered. */
    memset(big, 'a', sizeof(big));
    assert_int_equal(http_request_parse(big, sizeof(big), sizeof(big), &head_only),
                     HTTP_TOO_LARGE);
    assert_int_equal(http_request_parse(big, sizeof(big) - 1, sizeof(big), &head_only),
                     HTTP_AGAIN);
    const char *line = "GET /healthz HTTP/1.1\r\nX: ";
    memcpy(big, line, strlen(line));
    memcpy(big + sizeof(big) - 4, "\r\n\r\n", 4);
    assert_int_equal(http_request_parse(big, sizeof(big), sizeof(big), &head_only),
                     HTTP_HEALTH);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(http_response_str(HTTP_AGAIN), "again");
    assert_string_equal(http_response_str(HTTP_HEALTH), "health");
    assert_string_equal(http_response_str((enum http_response)99), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_incomplete_and_too_large),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
