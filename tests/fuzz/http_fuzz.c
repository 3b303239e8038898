/*
 * Fuzz target for proxy/core/http.c, the metrics endpoint's request head.
 * The input is what a client sends. http_request_parse sees exactly sized
 * heap copies of every prefix (the endpoint parses again after each read),
 * so a read past len shows under ASan. Invariants (abort on violation):
 *   - the answer is one of enum http_response;
 *   - AGAIN until the first empty line, and from then on the same answer
 *     whatever follows (the answer depends on the first head only);
 *   - with the buffer full and no empty line, TOO_LARGE, never AGAIN;
 *   - METRICS / HEALTH only for "GET " or "HEAD " with that path, then a
 *     space or '?'; head_only exactly for "HEAD ".
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/http.h"
#include "tests/fuzz/fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CAP 4096

static enum http_response parse(const uint8_t *p, size_t n, size_t cap, bool *head_only)
{
    char *copy = malloc(n ? n : 1);

    CHECK(copy != NULL);
    if (n)
        memcpy(copy, p, n);
    *head_only = (n & 1) != 0; /* garbage the parser must overwrite */
    enum http_response r = http_request_parse(copy, n, cap, head_only);
    free(copy);
    CHECK(r >= HTTP_AGAIN && r <= HTTP_HEALTH);
    CHECK(strcmp(http_response_str(r), "unknown") != 0);
    return r;
}

/* Where a straightforward reading ends the head: after "\n\n" or
 * "\n\r\n"; 0 if it does not end in p[0..n). */
static size_t head_end(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] == '\n' && p[i + 1] == '\n')
            return i + 2;
        if (p[i] == '\n' && i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

static bool starts(const uint8_t *p, size_t n, const char *s)
{
    size_t k = strlen(s);
    return n >= k && memcmp(p, s, k) == 0;
}

static void check_route(const uint8_t *p, size_t n, enum http_response r, bool head_only)
{
    bool get = starts(p, n, "GET "), head = starts(p, n, "HEAD ");

    CHECK(head_only == head || r == HTTP_BAD_REQUEST);
    if (r == HTTP_BAD_REQUEST)
        CHECK(!head_only);
    if (r != HTTP_METRICS && r != HTTP_HEALTH)
        return;
    CHECK(get || head);
    const uint8_t *path = p + (get ? 4 : 5);
    size_t rest = n - (get ? 4 : 5);
    const char *want = r == HTTP_METRICS ? "/metrics" : "/healthz";
    CHECK(starts(path, rest, want));
    CHECK(rest > 8 && (path[8] == ' ' || path[8] == '?'));
}

/* The answer once k bytes have been read. */
static void check_prefix(const uint8_t *data, size_t k, size_t end, enum http_response final)
{
    bool head_only;
    enum http_response r = parse(data, k, CAP, &head_only);

    if (end == 0 || k < end) {
        CHECK(r == HTTP_AGAIN || (r == HTTP_TOO_LARGE && k >= CAP));
        return;
    }
    CHECK(r == final);
    check_route(data, k, r, head_only);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t end = head_end(data, size);
    enum http_response final = HTTP_AGAIN;
    bool head_only;

    if (end) {
        final = parse(data, end, CAP, &head_only);
        CHECK(final != HTTP_AGAIN && final != HTTP_TOO_LARGE);
    }
    /* Every prefix of a short input, the edges of a long one (parsing is
     * linear, so all prefixes of a long one would be slow to fuzz). */
    for (size_t k = 0; k <= size && k <= 512; k++)
        check_prefix(data, k, end, final);
    if (end > 0 && end <= CAP) {
        check_prefix(data, end - 1, end, final);
        check_prefix(data, end, end, final);
    }
    check_prefix(data, size < CAP ? size : CAP, end, final);

    /* The whole input as a full buffer: answered if complete, else 431. */
    enum http_response r = parse(data, size, size, &head_only);
    CHECK(end ? r == final : r == HTTP_TOO_LARGE);
    return 0;
}
