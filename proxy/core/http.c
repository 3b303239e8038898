/*
 * The request side of the metrics endpoint; see http.h.
 */
#include "proxy/core/http.h"

#include <string.h>

static bool span_eq(const char *p, size_t n, const char *s)
{
    return strlen(s) == n && memcmp(p, s, n) == 0;
}

/* Whether p[0..n) holds a complete request head: an empty line, CRLF or
 * (leniently) a bare LF. */
static bool head_complete(const char *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] != '\n')
            continue;
        if (p[i + 1] == '\n')
            return true;
        if (p[i + 1] == '\r' && i + 2 < n && p[i + 2] == '\n')
            return true;
    }
    return false;
}

enum http_response http_request_parse(const char *head, size_t len, size_t cap,
                                      bool *head_only)
{
    *head_only = false;
    if (!head_complete(head, len))
        return len >= cap ? HTTP_TOO_LARGE : HTTP_AGAIN;

    /* A complete head has a line feed, so the request line ends. */
    const char *line = head;
    const char *eol = memchr(line, '\n', len);
    size_t linelen = (size_t)(eol - line);

    if (linelen > 0 && line[linelen - 1] == '\r')
        linelen--;
    const char *sp1 = memchr(line, ' ', linelen);
    const char *sp2 = sp1 != NULL ? memchr(sp1 + 1, ' ', linelen - (size_t)(sp1 + 1 - line)) : NULL;
    if (sp1 == NULL || sp2 == NULL || sp1 == line || sp2 == sp1 + 1)
        return HTTP_BAD_REQUEST;
    const char *method = line;
    size_t methodlen = (size_t)(sp1 - line);
    const char *target = sp1 + 1;
    size_t targetlen = (size_t)(sp2 - target);
    const char *version = sp2 + 1;
    size_t versionlen = linelen - (size_t)(version - line);
    if (versionlen != 8 || memcmp(version, "HTTP/1.", 7) != 0 || version[7] < '0' ||
        version[7] > '9')
        return HTTP_BAD_REQUEST;

    const char *query = memchr(target, '?', targetlen);
    size_t pathlen = query != NULL ? (size_t)(query - target) : targetlen;
    bool is_metrics = span_eq(target, pathlen, "/metrics");
    bool is_health = span_eq(target, pathlen, "/healthz");
    bool is_head = span_eq(method, methodlen, "HEAD");
    bool get = span_eq(method, methodlen, "GET");

    *head_only = is_head;
    if (!is_metrics && !is_health)
        return HTTP_NOT_FOUND;
    if (!get && !is_head)
        return HTTP_METHOD_NOT_ALLOWED;
    return is_health ? HTTP_HEALTH : HTTP_METRICS;
}

const char *http_response_str(enum http_response r)
{
    switch (r) {
    case HTTP_AGAIN:
        return "again";
    case HTTP_TOO_LARGE:
        return "too large";
    case HTTP_BAD_REQUEST:
        return "bad request";
    case HTTP_NOT_FOUND:
        return "not found";
    case HTTP_METHOD_NOT_ALLOWED:
        return "method not allowed";
    case HTTP_METRICS:
        return "metrics";
    case HTTP_HEALTH:
        return "health";
    }
    return "unknown";
}
