/* Unit tests for proxy/core/http_response.c: responses as a server (or an
 * attacker in its place) sends them, fed whole, one byte at a time and cut
 * in two at every offset; the outcome must never depend on the cut.
 * tests/unit/net/https_get_test.c covers the wire. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/core/http_response.h"

#define HEAD_MAX 16384
#define BODY_MAX 65536

struct outcome {
    enum http_response_event ev; /* DONE or the error */
    int status;
    enum http_response_framing framing;
    char media_type[HTTP_RESPONSE_MEDIA_TYPE_MAX + 1];
    unsigned heads;
    char *body; /* malloc'd, NUL-terminated */
    size_t body_len;
};

static void outcome_free(struct outcome *o)
{
    free(o->body);
    o->body = NULL;
}

/* Feeds text[0..n) in pieces of the sizes in cuts (the last one repeated),
 * each an exactly sized heap copy so that a read past it shows under ASan;
 * then, unless the message ended, the connection's end (clean or not). */
static void run(const char *text, size_t n, const size_t *cuts, size_t ncuts, bool clean,
                size_t body_max, struct outcome *o)
{
    struct http_response_parser *p = malloc(sizeof(*p));
    size_t off = 0, ci = 0;

    assert_non_null(p);
    memset(o, 0, sizeof(*o));
    o->body = calloc(1, body_max + 1);
    assert_non_null(o->body);
    http_response_init(p, HEAD_MAX, body_max);
    o->ev = HTTP_RESPONSE_AGAIN;
    while (o->ev == HTTP_RESPONSE_AGAIN && off < n) {
        size_t piece = cuts[ci < ncuts ? ci : ncuts - 1];
        ci++;
        if (piece > n - off)
            piece = n - off;
        uint8_t *copy = malloc(piece ? piece : 1);
        assert_non_null(copy);
        memcpy(copy, text + off, piece);
        size_t at = 0;
        for (;;) {
            size_t used, bl;
            const uint8_t *b;
            enum http_response_event e =
                http_response_feed(p, copy + at, piece - at, &used, &b, &bl);
            assert_true(used <= piece - at);
            at += used;
            if (e == HTTP_RESPONSE_HEAD) {
                o->heads++;
                assert_int_equal(o->body_len, 0);
                continue;
            }
            if (e == HTTP_RESPONSE_BODY) {
                assert_true(bl > 0);
                assert_true(b >= copy && b + bl <= copy + piece);
                assert_true(o->body_len + bl <= body_max);
                memcpy(o->body + o->body_len, b, bl);
                o->body_len += bl;
                continue;
            }
            if (e == HTTP_RESPONSE_AGAIN)
                assert_int_equal(at, piece);
            else
                o->ev = e;
            break;
        }
        free(copy);
        off += piece;
    }
    if (o->ev == HTTP_RESPONSE_AGAIN)
        o->ev = http_response_eof(p, clean);
    /* The outcome is final. */
    size_t used, bl;
    const uint8_t *b;
    assert_int_equal(http_response_feed(p, (const uint8_t *)"x", 1, &used, &b, &bl), o->ev);
    assert_int_equal(used, 0);
    assert_int_equal(http_response_eof(p, true), o->ev);
    assert_int_equal(p->body_len, o->body_len);
    if (o->heads > 0) {
        o->status = p->status;
        o->framing = p->framing;
        memcpy(o->media_type, p->media_type, sizeof(o->media_type));
    }
    free(p);
}

/* The same outcome; after an error, how much body came before it may
 * depend on where the input was cut (a caller drops it). */
static void same(const struct outcome *a, const struct outcome *b, const char *what, size_t at)
{
    bool body = a->ev == HTTP_RESPONSE_DONE;

    if (a->ev != b->ev || a->status != b->status || a->heads != b->heads ||
        (body && (a->body_len != b->body_len || memcmp(a->body, b->body, a->body_len) != 0)) ||
        strcmp(a->media_type, b->media_type) != 0)
        fail_msg("%s %zu: %s/%d/%zu bytes, whole: %s/%d/%zu bytes", what, at,
                 http_response_event_str(b->ev), b->status, b->body_len,
                 http_response_event_str(a->ev), a->status, a->body_len);
}

/* Parses text every way (whole, byte by byte, in two at every offset) and
 * checks the outcome is the same each time; returns the whole one. */
static struct outcome parse_n(const char *text, size_t n, bool clean, size_t body_max)
{
    struct outcome whole, o;
    size_t one = 1, all = n ? n : 1;

    run(text, n, &all, 1, clean, body_max, &whole);
    assert_true(whole.heads <= 1);
    run(text, n, &one, 1, clean, body_max, &o);
    same(&whole, &o, "byte by byte", 0);
    outcome_free(&o);
    for (size_t i = 1; i < n && n <= 4096; i++) {
        size_t cuts[2] = {i, n};
        run(text, n, cuts, 2, clean, body_max, &o);
        same(&whole, &o, "cut at", i);
        outcome_free(&o);
    }
    return whole;
}

static struct outcome parse(const char *text)
{
    return parse_n(text, strlen(text), false, BODY_MAX);
}

static void expect_body(const char *text, int status, const char *body)
{
    struct outcome o = parse(text);
    if (o.ev != HTTP_RESPONSE_DONE)
        fail_msg("\"%s\": %s, expected done", text, http_response_event_str(o.ev));
    assert_int_equal(o.status, status);
    assert_int_equal(o.body_len, strlen(body));
    assert_memory_equal(o.body, body, o.body_len);
    outcome_free(&o);
}

static void expect_error(const char *text, enum http_response_event want)
{
    struct outcome o = parse(text);
    if (o.ev != want)
        fail_msg("\"%s\": %s, expected %s", text, http_response_event_str(o.ev),
                 http_response_event_str(want));
    outcome_free(&o);
}

static void test_content_length(void **state)
{
    (void)state;
    expect_body("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                "5\r\n\r\nhello",
                200, "hello");
    /* Bytes after the body are not part of it (Connection: close). */
    expect_body("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiEXTRA", 200, "hi");
    expect_body("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 200, "");
    /* Equal values, in one field or two, are one length. */
    expect_body("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc", 200, "abc");
    expect_body("HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length:3\r\n\r\nabc", 200, "abc");
    /* Different values, also in one field: no length can be trusted. */
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
                 HTTP_RESPONSE_ERR_FRAMING);
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabcd", HTTP_RESPONSE_ERR_FRAMING);
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc", HTTP_RESPONSE_ERR_FRAMING);
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", HTTP_RESPONSE_ERR_FRAMING);
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", HTTP_RESPONSE_ERR_FRAMING);
    expect_error("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", HTTP_RESPONSE_ERR_FRAMING);
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 3 3\r\n\r\nabc", HTTP_RESPONSE_ERR_FRAMING);
    /* Cut short: the connection ended first, whether cleanly or not. */
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", HTTP_RESPONSE_ERR_TRUNCATED);
    struct outcome o =
        parse_n("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", 45, true, BODY_MAX);
    assert_int_equal(o.ev, HTTP_RESPONSE_ERR_TRUNCATED);
    outcome_free(&o);
}

static void test_huge_lengths(void **state)
{
    (void)state;
    /* Refused from the head alone, before any body byte. */
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 65537\r\n\r\n", HTTP_RESPONSE_ERR_TOO_LARGE);
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n",
                 HTTP_RESPONSE_ERR_TOO_LARGE);
    /* Past 2^64: saturates, never wraps to something small. */
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551617\r\n\r\n",
                 HTTP_RESPONSE_ERR_TOO_LARGE);
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: "
                 "99999999999999999999999999999999\r\n\r\n",
                 HTTP_RESPONSE_ERR_TOO_LARGE);
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10001\r\n",
                 HTTP_RESPONSE_ERR_TOO_LARGE);
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "10000000000000001\r\n",
                 HTTP_RESPONSE_ERR_TOO_LARGE);
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "ffffffffffffffffffffffff\r\n",
                 HTTP_RESPONSE_ERR_TOO_LARGE);
}

/* A body of exactly the limit passes, one byte more does not, whichever the
 * framing. */
static void test_body_limit(void **state)
{
    (void)state;
    char text[512];
    struct outcome o;

    snprintf(text, sizeof(text), "HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n0123456789abcdef");
    o = parse_n(text, strlen(text), false, 16);
    assert_int_equal(o.ev, HTTP_RESPONSE_DONE);
    outcome_free(&o);
    o = parse_n(text, strlen(text), false, 15);
    assert_int_equal(o.ev, HTTP_RESPONSE_ERR_TOO_LARGE);
    outcome_free(&o);

    snprintf(text, sizeof(text), "HTTP/1.1 200 OK\r\n\r\n0123456789abcdef");
    o = parse_n(text, strlen(text), true, 16);
    assert_int_equal(o.ev, HTTP_RESPONSE_DONE);
    outcome_free(&o);
    o = parse_n(text, strlen(text), true, 15);
    assert_int_equal(o.ev, HTTP_RESPONSE_ERR_TOO_LARGE);
    outcome_free(&o);

    snprintf(text, sizeof(text),
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             "8\r\n01234567\r\n8\r\n89abcdef\r\n0\r\n\r\n");
    o = parse_n(text, strlen(text), false, 16);
    assert_int_equal(o.ev, HTTP_RESPONSE_DONE);
    assert_int_equal(o.body_len, 16);
    outcome_free(&o);
    o = parse_n(text, strlen(text), false, 15);
    assert_int_equal(o.ev, HTTP_RESPONSE_ERR_TOO_LARGE);
    assert_true(o.body_len <= 8); /* refused at the second chunk's size */
    outcome_free(&o);
}

static void test_close_delimited(void **state)
{
    (void)state;
    const char *text = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nversion: STSv1\r\n";
    struct outcome o = parse_n(text, strlen(text), true, BODY_MAX);

    assert_int_equal(o.ev, HTTP_RESPONSE_DONE);
    assert_int_equal(o.framing, HTTP_RESPONSE_CLOSE);
    assert_string_equal(o.body, "version: STSv1\r\n");
    outcome_free(&o);
    /* Without close_notify the end of the connection proves nothing: an
     * attacker may have cut the body (RFC 9112 §9.8). */
    o = parse_n(text, strlen(text), false, BODY_MAX);
    assert_int_equal(o.ev, HTTP_RESPONSE_ERR_TRUNCATED);
    outcome_free(&o);
}

static void test_chunked(void **state)
{
    (void)state;
    expect_body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                "5\r\nhello\r\n1;name=value;x\r\n \r\nA\r\n0123456789\r\n0\r\n\r\n",
                200, "hello 0123456789");
    /* Upper-case hex, leading zeros, a bare LF, BWS before an extension,
     * trailer fields (ignored). */
    expect_body("HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n"
                "0000B\r\nhello world\n3 ;ext\r\nabc\r\n0\r\nX-Trailer: yes\r\n\r\n",
                200, "hello worldabc");
    /* Not hex, a sign, 0x, a space before the size, a space with no
     * extension after it, nothing at all. */
    const char *bad[] = {"g\r\n",  "-1\r\n", "+1\r\n",   "0x5\r\n",   " 5\r\n",
                         "5 \r\n", "\r\n",   "5\rx\r\n", "5;\x01\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text),
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: "
                 "chunked\r\n\r\n%shello\r\n0\r\n\r\n",
                 bad[i]);
        expect_error(text, HTTP_RESPONSE_ERR_CHUNK);
    }
    /* Chunk data must be followed by exactly CRLF. */
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: "
                 "chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n",
                 HTTP_RESPONSE_ERR_CHUNK);
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: "
                 "chunked\r\n\r\n5\r\nhello\r\r\n0\r\n\r\n",
                 HTTP_RESPONSE_ERR_CHUNK);
    /* A chunk-size line longer than the limit. */
    char text[2048];
    int n = snprintf(text, sizeof(text), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;");
    memset(text + n, 'e', HTTP_RESPONSE_CHUNK_LINE_MAX);
    strcpy(text + n + HTTP_RESPONSE_CHUNK_LINE_MAX, "\r\nx\r\n0\r\n\r\n");
    expect_error(text, HTTP_RESPONSE_ERR_CHUNK);
    /* Cut before the last chunk or inside the trailer. */
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
                 HTTP_RESPONSE_ERR_TRUNCATED);
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: "
                 "chunked\r\n\r\n5\r\nhello\r\n0\r\nX: y\r\n",
                 HTTP_RESPONSE_ERR_TRUNCATED);
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad "
                 "trailer\r\n\r\n",
                 HTTP_RESPONSE_ERR_HEADER);
}

/* RFC 9112 §6.1: both framings at once is an error, as is any coding this
 * client cannot undo, and chunked in an HTTP/1.0 response. */
static void test_framing_conflicts(void **state)
{
    (void)state;
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: "
                 "chunked\r\n\r\n"
                 "5\r\nhello\r\n0\r\n\r\n",
                 HTTP_RESPONSE_ERR_FRAMING);
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: "
                 "chunked\r\nContent-Length: 5\r\n\r\n"
                 "5\r\nhello\r\n0\r\n\r\n",
                 HTTP_RESPONSE_ERR_FRAMING);
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                 HTTP_RESPONSE_ERR_FRAMING);
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: "
                 "chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                 HTTP_RESPONSE_ERR_FRAMING);
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n",
                 HTTP_RESPONSE_ERR_FRAMING);
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunkedx\r\n\r\n",
                 HTTP_RESPONSE_ERR_FRAMING);
    expect_error("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                 HTTP_RESPONSE_ERR_FRAMING);
}

static void test_status_line(void **state)
{
    (void)state;
    expect_body("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 404, "");
    expect_body("HTTP/1.1 301 Moved\r\nLocation: "
                "https://evil.example/\r\nContent-Length: 0\r\n\r\n",
                301, "");
    /* No reason phrase, with or without its space; a bare LF. */
    expect_body("HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx", 200, "x");
    expect_body("HTTP/1.1 200 \nContent-Length: 1\n\nx", 200, "x");
    expect_body("HTTP/1.1 204 No Content\r\n\r\n", 204, "");
    const char *bad[] = {
        "HTTP/2 200 OK\r\n",       "HTTP/1.1 20 OK\r\n",
        "HTTP/1.1  200 OK\r\n",    "HTTP/1.1 2000 OK\r\n",
        "http/1.1 200 OK\r\n",     "HTTP/1.1 099 OK\r\n",
        "HTTP/1.1 600 OK\r\n",     "HTTP/1.1 2x0 OK\r\n",
        "HTTP/1.1 200 O\rK\r\n",   "HTTP/1.1 200 \x01\r\n",
        "ICY 200 OK\r\n",          "HTTP/1.1 200OK\r\n",
        "\r\nHTTP/1.1 200 OK\r\n", "HTTP/1.1 101 Switching Protocols\r\n",
        "HTTP/1.x 200 OK\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "%sContent-Length: 0\r\n\r\n", bad[i]);
        expect_error(text, HTTP_RESPONSE_ERR_STATUS_LINE);
    }
    /* Nothing at all, or a status line cut off. */
    expect_error("", HTTP_RESPONSE_ERR_TRUNCATED);
    expect_error("HTTP/1.1 200 OK\r\nContent-", HTTP_RESPONSE_ERR_TRUNCATED);
}

static void test_interim_responses(void **state)
{
    (void)state;
    /* 1xx heads are skipped, their fields forgotten; HEAD comes once. */
    expect_body("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early "
                "Hints\r\nContent-Length: 99\r\n"
                "Content-Type: text/html\r\n\r\nHTTP/1.1 200 "
                "OK\r\nContent-Length: 2\r\n\r\nok",
                200, "ok");
    struct outcome o = parse("HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\n"
                             "Content-Type: text/plain\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(o.heads, 1);
    assert_string_equal(o.media_type, "text/plain");
    outcome_free(&o);
}

static void test_header_fields(void **state)
{
    (void)state;
    const char *bad[] = {
        "Content-Length : 5\r\n", /* space before the colon (RFC 9112 §5.1) */
        " folded\r\n", /* obs-fold (§5.2) */
        "\tfolded\r\n",
        "No-Colon\r\n",
        ": no name\r\n",
        "Bad Name: x\r\n",
        "X: a\rb\r\n", /* a bare CR */
        "X: \x7f\r\n",
        "Content-Type: text/plain\r\nContent-Type: text/html\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "HTTP/1.1 200 OK\r\n%sContent-Length: 5\r\n\r\nhello", bad[i]);
        struct outcome o = parse(text);
        if (o.ev != HTTP_RESPONSE_ERR_HEADER)
            fail_msg("case %zu: %s", i, http_response_event_str(o.ev));
        outcome_free(&o);
    }
    /* A NUL inside a value. */
    static const char nul[] = "HTTP/1.1 200 OK\r\nX: a\0b\r\nContent-Length: 0\r\n\r\n";
    struct outcome o = parse_n(nul, sizeof(nul) - 1, false, BODY_MAX);
    assert_int_equal(o.ev, HTTP_RESPONSE_ERR_HEADER);
    outcome_free(&o);
    /* Obs-text and odd but valid names pass; unknown fields are ignored. */
    expect_body("HTTP/1.1 200 OK\r\nX-Cafe: caf\xe9\r\n!#$%&'*+-.^_`|~: x\r\n"
                "Location: /elsewhere\r\nContent-Length: 1\r\n\r\nx",
                200, "x");
}

static void test_media_type(void **state)
{
    (void)state;
    struct {
        const char *field, *want;
    } cases[] = {
        {"Content-Type: text/plain\r\n", "text/plain"},
        {"Content-Type: Text/PLAIN; charset=utf-8\r\n", "text/plain"},
        {"Content-Type:text/plain ;charset=\"utf-8\"\r\n", "text/plain"},
        {"Content-Type: text/html\r\n", "text/html"},
        {"", ""},
        {"Content-Type: text\r\n", ""},
        {"Content-Type: /plain\r\n", ""},
        {"Content-Type: text/\r\n", ""},
        {"Content-Type: text/plain/x\r\n", ""},
        {"Content-Type: text/plain x\r\n", ""},
        {"Content-Type: text /plain\r\n", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "HTTP/1.1 200 OK\r\n%sContent-Length: 0\r\n\r\n",
                 cases[i].field);
        struct outcome o = parse(text);
        assert_int_equal(o.ev, HTTP_RESPONSE_DONE);
        if (strcmp(o.media_type, cases[i].want) != 0)
            fail_msg("%s: \"%s\"", cases[i].field, o.media_type);
        outcome_free(&o);
    }
    struct http_response_parser p;
    http_response_init(&p, HEAD_MAX, BODY_MAX);
    strcpy(p.media_type, "text/plain");
    assert_true(http_response_media_type_is(&p, "text/plain"));
    assert_true(http_response_media_type_is(&p, "TEXT/Plain"));
    assert_false(http_response_media_type_is(&p, "text/plai"));
    assert_false(http_response_media_type_is(&p, "text/plainx"));
    p.media_type[0] = '\0';
    assert_false(http_response_media_type_is(&p, ""));
}

static void test_head_limits(void **state)
{
    (void)state;
    /* One line longer than a line may be. */
    size_t n = HTTP_RESPONSE_LINE_MAX + 64;
    char *text = malloc(n + 64);
    assert_non_null(text);
    strcpy(text, "HTTP/1.1 200 OK\r\nX: ");
    size_t at = strlen(text);
    memset(text + at, 'a', HTTP_RESPONSE_LINE_MAX);
    strcpy(text + at + HTTP_RESPONSE_LINE_MAX, "\r\n\r\n");
    struct outcome o = parse_n(text, strlen(text), false, BODY_MAX);
    assert_int_equal(o.ev, HTTP_RESPONSE_ERR_HEAD_TOO_LARGE);
    outcome_free(&o);
    free(text);

    /* Many short lines: the head as a whole is bounded. */
    text = malloc(HEAD_MAX + 256);
    assert_non_null(text);
    strcpy(text, "HTTP/1.1 200 OK\r\n");
    while (strlen(text) < HEAD_MAX)
        strcat(text, "X-Padding: 0123456789\r\n");
    strcat(text, "\r\n");
    o = parse_n(text, strlen(text), false, BODY_MAX);
    assert_int_equal(o.ev, HTTP_RESPONSE_ERR_HEAD_TOO_LARGE);
    outcome_free(&o);
    /* Endless interim responses too. */
    strcpy(text, "");
    while (strlen(text) < HEAD_MAX)
        strcat(text, "HTTP/1.1 100 Continue\r\n\r\n");
    o = parse_n(text, strlen(text), false, BODY_MAX);
    assert_int_equal(o.ev, HTTP_RESPONSE_ERR_HEAD_TOO_LARGE);
    outcome_free(&o);
    free(text);
}

static void test_event_names(void **state)
{
    (void)state;
    for (int e = HTTP_RESPONSE_AGAIN; e <= HTTP_RESPONSE_ERR_TRUNCATED; e++)
        assert_string_not_equal(http_response_event_str((enum http_response_event)e), "unknown");
    assert_string_equal(http_response_event_str((enum http_response_event)99), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length), cmocka_unit_test(test_huge_lengths),
        cmocka_unit_test(test_body_limit),     cmocka_unit_test(test_close_delimited),
        cmocka_unit_test(test_chunked),        cmocka_unit_test(test_framing_conflicts),
        cmocka_unit_test(test_status_line),    cmocka_unit_test(test_interim_responses),
        cmocka_unit_test(test_header_fields),  cmocka_unit_test(test_media_type),
        cmocka_unit_test(test_head_limits),    cmocka_unit_test(test_event_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
