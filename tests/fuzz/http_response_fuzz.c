/*
 * Fuzz target for proxy/core/http_response.c, the HTTPS client's response
 * parser. The input's first byte picks the body limit and whether the
 * connection ends cleanly; the rest is what a server sends. It is parsed
 * twice: in one exactly sized heap copy, and in pieces whose sizes come from
 * the input itself (each its own heap copy, so a read past a piece shows
 * under ASan). Invariants (abort on violation):
 *   - every event is one of enum http_response_event and has a name;
 *   - *used never passes the input; AGAIN only once all of it is taken;
 *   - HEAD at most once and before any BODY; BODY spans lie inside the
 *     piece, are not empty, and never take the body past its limit;
 *   - an error or DONE is final;
 *   - DONE with Content-Length framing has exactly that many body bytes;
 *   - the outcome (event, status, media type, and the body when DONE) is the
 *     same however the input was cut.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/http_response.h"
#include "tests/fuzz/fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HEAD_MAX 16384

struct outcome {
    enum http_response_event ev;
    int status;
    char media_type[HTTP_RESPONSE_MEDIA_TYPE_MAX + 1];
    uint8_t *body;
    size_t body_len;
};

static struct http_response_parser parser;

static void run(const uint8_t *text, size_t n, const uint8_t *cuts, size_t ncuts, bool clean,
                size_t body_max, struct outcome *o)
{
    struct http_response_parser *p = &parser;
    size_t off = 0, ci = 0;
    unsigned heads = 0;

    memset(o, 0, sizeof(*o));
    o->body = malloc(body_max + 1);
    CHECK(o->body != NULL);
    http_response_init(p, HEAD_MAX, body_max);
    o->ev = HTTP_RESPONSE_AGAIN;
    while (o->ev == HTTP_RESPONSE_AGAIN && off < n) {
        size_t piece = ncuts ? (size_t)cuts[ci++ % ncuts] + 1 : n;
        if (piece > n - off)
            piece = n - off;
        uint8_t *copy = malloc(piece);
        CHECK(copy != NULL);
        memcpy(copy, text + off, piece);
        size_t at = 0;
        for (;;) {
            size_t used, bl;
            const uint8_t *b;
            enum http_response_event e =
                http_response_feed(p, copy + at, piece - at, &used, &b, &bl);
            CHECK(e >= HTTP_RESPONSE_AGAIN && e <= HTTP_RESPONSE_ERR_TRUNCATED);
            CHECK(strcmp(http_response_event_str(e), "unknown") != 0);
            CHECK(used <= piece - at);
            at += used;
            if (e == HTTP_RESPONSE_HEAD) {
                CHECK(heads++ == 0 && o->body_len == 0);
                CHECK(p->status >= 200 && p->status <= 599);
                continue;
            }
            if (e == HTTP_RESPONSE_BODY) {
                CHECK(heads == 1 && bl > 0);
                CHECK(b >= copy && b + bl <= copy + piece);
                CHECK(o->body_len + bl <= body_max);
                memcpy(o->body + o->body_len, b, bl);
                o->body_len += bl;
                CHECK(p->body_len == o->body_len);
                continue;
            }
            if (e == HTTP_RESPONSE_AGAIN)
                CHECK(at == piece);
            else
                o->ev = e;
            break;
        }
        free(copy);
        off += piece;
    }
    if (o->ev == HTTP_RESPONSE_AGAIN)
        o->ev = http_response_eof(p, clean);
    CHECK(o->ev != HTTP_RESPONSE_AGAIN && o->ev != HTTP_RESPONSE_HEAD &&
          o->ev != HTTP_RESPONSE_BODY);
    if (o->ev == HTTP_RESPONSE_DONE)
        CHECK(heads == 1);
    if (o->ev == HTTP_RESPONSE_DONE && p->framing == HTTP_RESPONSE_LENGTH)
        CHECK(o->body_len == p->content_length);
    /* Final: more input or another end changes nothing. */
    size_t used, bl;
    const uint8_t *b;
    CHECK(http_response_feed(p, (const uint8_t *)"HTTP", 4, &used, &b, &bl) == o->ev);
    CHECK(used == 0);
    CHECK(http_response_eof(p, !clean) == o->ev);
    if (heads) {
        o->status = p->status;
        memcpy(o->media_type, p->media_type, sizeof(o->media_type));
        CHECK(strlen(o->media_type) <= HTTP_RESPONSE_MEDIA_TYPE_MAX);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* Limits small enough to be reached: 0 .. 4 KiB, or the real 64 KiB. */
    size_t body_max = (data[0] & 0x7f) == 0x7f ? 65536 : (size_t)(data[0] & 0x7f) * 32;
    bool clean = (data[0] & 0x80) != 0;
    const uint8_t *text = data + 1;
    size_t n = size - 1;
    /* The cut sizes: the last bytes of the input, reused cyclically. */
    const uint8_t *cuts = n >= 8 ? text + n - 8 : text;
    size_t ncuts = n >= 8 ? 8 : n;

    struct outcome whole, cut;
    run(text, n, NULL, 0, clean, body_max, &whole);
    run(text, n, cuts, ncuts, clean, body_max, &cut);
    CHECK(whole.ev == cut.ev);
    CHECK(whole.status == cut.status);
    CHECK(strcmp(whole.media_type, cut.media_type) == 0);
    if (whole.ev == HTTP_RESPONSE_DONE) {
        CHECK(whole.body_len == cut.body_len);
        CHECK(memcmp(whole.body, cut.body, whole.body_len) == 0);
    }
    free(whole.body);
    free(cut.body);
    return 0;
}
