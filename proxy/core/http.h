/*
 * http: the request side of the /metrics and /healthz endpoint, without the
 * sockets. Decides from the bytes read so far which response the endpoint
 * gives; net/metrics_server.c does the I/O. Pure: no I/O, no allocation.
 */
#ifndef SMTP_TLS_PROXY_HTTP_H
#define SMTP_TLS_PROXY_HTTP_H

#include <stdbool.h>
#include <stddef.h>

/* What to answer a request head with. */
enum http_response {
    HTTP_AGAIN = 0,              /* no complete head yet: read more */
    HTTP_TOO_LARGE,              /* 431: cap bytes and still no end of head */
    HTTP_BAD_REQUEST,            /* 400: malformed request line */
    HTTP_NOT_FOUND,              /* 404: neither /metrics nor /healthz */
    HTTP_METHOD_NOT_ALLOWED,     /* 405: a known path, a method not GET/HEAD */
    HTTP_METRICS,                /* 200 with the exposition */
    HTTP_HEALTH,                 /* 200 "ok", or 503 while draining */
};

/*
 * Looks at the first len bytes read from a client (head, borrowed; need not
 * be NUL-terminated; never read past len), of at most cap bytes the endpoint
 * buffers. A head is complete at its first empty line (CRLF, or leniently a
 * bare LF); only the request line (RFC 9112 §3: method SP target SP
 * HTTP-version) matters, header fields are ignored, a query string is
 * ignored. An unknown path is HTTP_NOT_FOUND whatever the method. *head_only
 * is set when the method is HEAD (the response then has no body), false
 * otherwise. Never calls back.
 */
enum http_response http_request_parse(const char *head, size_t len, size_t cap,
                                      bool *head_only);

/* "again" | "too large" | "bad request" | ... for logs and tests. */
const char *http_response_str(enum http_response r);

#endif
