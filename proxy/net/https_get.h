/*
 * https_get: one bounded HTTPS GET on an event loop, for MTA-STS policy
 * fetches (RFC 8461 §3.3: "https://mta-sts.<domain>/.well-known/mta-sts.txt"),
 * and its POST variant for TLS-RPT reports (RFC 8460 §5.4).
 * HTTPS only, HTTP/1.1 with "Connection: close", one request per connection.
 * The server's certificate must chain to the context's CA file and be valid
 * for host. Only a 200 with media type text/plain and a body of at most
 * body_max bytes is a success; a 3xx is a failure (redirects are never
 * followed), as is any other status. Connect, handshake and total time are
 * bounded, and so is every buffer (head, body, TLS records).
 *
 * The caller owns struct https_get; the fetch's own state (socket, timer,
 * TLS engine, buffers) lives apart and frees itself. The callback comes
 * exactly once, on the loop, never from inside https_get_start(), and only
 * when nothing of the fetch is left on the loop (its handles are closed,
 * its lookups answered or cancelled): inside it, g may be freed or started
 * again. After https_get_cancel() it never comes.
 */
#ifndef SMTP_TLS_PROXY_HTTPS_GET_H
#define SMTP_TLS_PROXY_HTTPS_GET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "proxy/net/resolver.h"
#include "proxy/tls/tls.h"

/* RFC 8461 §3.2 suggests that senders limit the policy body to 64 KiB. */
#define HTTPS_GET_BODY_MAX (64 * 1024)
#define HTTPS_GET_HEAD_MAX (16 * 1024)
/* RFC 8461 §3.3: "A suggested timeout is one minute". */
#define HTTPS_GET_TOTAL_MS (60 * 1000)
#define HTTPS_GET_CONNECT_MS (20 * 1000)
#define HTTPS_GET_HANDSHAKE_MS (20 * 1000)
/* Addresses of the host tried in turn (A records first, then AAAA). */
#define HTTPS_GET_ADDRS_MAX 4
#define HTTPS_GET_HOST_MAX 253
#define HTTPS_GET_PATH_MAX 1024

struct https_get_limits {
    unsigned connect_ms; /* start to connected: DNS and every TCP connect */
    unsigned handshake_ms; /* connected to the end of the TLS handshake */
    unsigned total_ms; /* start to the end of the body */
    size_t head_max; /* status line and header fields, bytes */
    size_t body_max; /* body, bytes (decoded from chunked) */
};

/* The defaults above. */
extern const struct https_get_limits https_get_default_limits;

enum https_get_status {
    HTTPS_GET_OK = 0,
    HTTPS_GET_DNS, /* no address: NXDOMAIN, no A/AAAA, SERVFAIL, bogus */
    HTTPS_GET_CONNECT, /* no address accepted the TCP connection */
    HTTPS_GET_TLS, /* the handshake failed (other than the certificate) */
    HTTPS_GET_CERTIFICATE, /* the certificate is untrusted, expired or for another name */
    HTTPS_GET_REDIRECT, /* a 3xx (RFC 8461 §3.3: never followed) */
    HTTPS_GET_HTTP_STATUS, /* any other status than 200 */
    HTTPS_GET_MEDIA_TYPE, /* a 200 that is not text/plain (RFC 8461 §3.2) */
    HTTPS_GET_TOO_LARGE, /* the body is, or is announced as, over body_max */
    HTTPS_GET_MALFORMED, /* a response that is not valid HTTP/1.1 */
    HTTPS_GET_CLOSED, /* the connection ended or failed before the response did */
    HTTPS_GET_TIMEOUT, /* a limit of struct https_get_limits passed */
    HTTPS_GET_CANCELLED, /* the resolver is shutting down */
    HTTPS_GET_INTERNAL, /* out of memory, or the loop refused a handle */
};

/* "ok", "dns", "connect", "tls", "certificate", "redirect", "http status",
 * "media type", "too large", "malformed", "closed", "timeout",
 * "cancelled", "internal": static, for logs and metric labels. */
const char *https_get_status_str(enum https_get_status s);

/* What the callback gets; every pointer is valid only during the call. */
struct https_get_result {
    enum https_get_status status;
    int http_status; /* the final response's status code, 0 if none was read */
    const char *why; /* a detail for the log ("certificate verify failed: ...",
                      * "handshake timed out", "body too large"); never NULL */
    const uint8_t *body; /* HTTPS_GET_OK: body_len bytes (not NUL-terminated) */
    size_t body_len;
};

struct https_get;
typedef void (*https_get_cb)(struct https_get *g, const struct https_get_result *res);

/* Zero it before its first use (struct https_get g = {0}). */
struct https_get {
    void *data; /* the caller's */
    struct https_fetch *f; /* private: the fetch in progress, or NULL */
};

/*
 * Starts GET https://host[:port]path on loop. host (a DNS name, at most
 * HTTPS_GET_HOST_MAX bytes of letters, digits, '-' and '.', no empty label,
 * not an IPv4 literal)
 * is the name sent as SNI and Host and the name the certificate must be
 * valid for; path starts with '/' and is at most HTTPS_GET_PATH_MAX visible
 * ASCII characters. ctx is a client context (tls_ctx_client_new) whose CA
 * file decides trust; it is referenced for the fetch's lifetime. addr NULL:
 * host is looked up (A and AAAA) through r and port is connected to on each
 * address in turn; otherwise addr, with its own port, is where host:port is
 * (tests, a fixed next hop) and r may be NULL. lim NULL means the defaults.
 * All strings are copied.
 * Returns 0 (cb follows exactly once, unless cancelled), or a negative code
 * and cb never comes: UV_EINVAL for an invalid host or path, or no resolver
 * and no address; UV_EBUSY if g is already fetching; UV_ENOMEM.
 */
int https_get_start(struct https_get *g, uv_loop_t *loop, struct resolver *r, struct tls_ctx *ctx,
                    const char *host, uint16_t port, const char *path, const struct sockaddr *addr,
                    const struct https_get_limits *lim, https_get_cb cb);

/* A POST's request body (RFC 8460 §5.4: a TLS-RPT report, Content-Type
 * application/tlsrpt+gzip). Header values are visible ASCII and spaces, at
 * most HTTPS_POST_VALUE_MAX bytes; content_encoding NULL sends none. */
#define HTTPS_POST_BODY_MAX (4 * 1024 * 1024)
#define HTTPS_POST_VALUE_MAX 128

struct https_post_body {
    const char *content_type;
    const char *content_encoding;
    const uint8_t *data;
    size_t len; /* at most HTTPS_POST_BODY_MAX */
};

/*
 * As https_get_start(), but POST body (copied, with its headers) to
 * https://host[:port]path. Success is any 2xx of any media type, its body
 * (at most lim->body_max bytes) in the result; a 3xx is HTTPS_GET_REDIRECT,
 * any other status HTTPS_GET_HTTP_STATUS. UV_EINVAL also for a body or
 * header value out of bounds.
 */
int https_post_start(struct https_get *g, uv_loop_t *loop, struct resolver *r, struct tls_ctx *ctx,
                     const char *host, uint16_t port, const char *path, const struct sockaddr *addr,
                     const struct https_get_limits *lim, const struct https_post_body *body,
                     https_get_cb cb);

/* Whether g has a fetch whose callback is still to come. */
bool https_get_active(const struct https_get *g);

/* Abandons g's fetch, if any: its callback will not come, and g may be
 * freed or started again at once (the fetch closes its handles and frees
 * itself on the loop). */
void https_get_cancel(struct https_get *g);

#endif
