/*
 * The HTTPS GET client; see https_get.h.
 *
 * One fetch is one heap object with one timer and (while connecting or
 * connected) one TCP handle. It drives the TLS engine itself rather than
 * through conn: it must tell a TLS close_notify from a bare TCP FIN, since
 * a body that ends with the connection is complete only after a closure
 * alert (RFC 9112 §9.8), and it needs none of conn's relaying machinery.
 * Every way out goes through finish(), which cancels the lookups and closes
 * the handles; the callback runs from the last close callback, so nothing
 * can call into the fetch after it.
 */
#include "proxy/net/https_get.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/addr.h"
#include "proxy/core/buf.h"
#include "proxy/core/http_response.h"

/* A read takes at most one full TLS record (16 KiB of plaintext plus
 * header, padding and tag); a larger read is simply several. */
#define READ_MAX (16384 + 2048)
#define PLAIN_MAX 16384

const struct https_get_limits https_get_default_limits = {
    .connect_ms = HTTPS_GET_CONNECT_MS,
    .handshake_ms = HTTPS_GET_HANDSHAKE_MS,
    .total_ms = HTTPS_GET_TOTAL_MS,
    .head_max = HTTPS_GET_HEAD_MAX,
    .body_max = HTTPS_GET_BODY_MAX,
};

enum phase {
    PHASE_DNS,
    PHASE_CONNECT,
    PHASE_HANDSHAKE,
    PHASE_RESPONSE, /* request sent (or queued), response being read */
    PHASE_DONE, /* finished: handles closing, callback pending */
};

struct https_fetch {
    struct https_get *g; /* NULL once cancelled */
    https_get_cb cb;
    uv_loop_t *loop;
    struct tls_ctx *ctx; /* referenced */
    struct https_get_limits lim;
    enum phase phase;
    uint64_t started, connected; /* uv_now() */
    uv_timer_t timer;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    int handles; /* initialised and not yet closed: the timer, the socket */
    bool tcp_open; /* the socket is initialised and not closing */
    bool writing; /* wreq is in flight with inflight's bytes */
    struct resolver_query q[2]; /* A, AAAA */
    struct sockaddr_storage addrs[HTTPS_GET_ADDRS_MAX];
    size_t naddrs, next_addr;
    struct sockaddr_in6 v6[HTTPS_GET_ADDRS_MAX]; /* AAAA answers until both are in */
    size_t nv6;
    int lookups; /* answers still to come */
    const char *no_addr; /* why a lookup gave nothing, for the message */
    uint16_t port;
    bool post; /* https_post_start(): any 2xx is a success, of any media type */
    struct tls *tls;
    struct buf inflight, request, body;
    struct http_response_parser resp;
    struct https_get_result res;
    char host[HTTPS_GET_HOST_MAX + 1];
    char why[512];
    uint8_t rbuf[READ_MAX];
    uint8_t plain[PLAIN_MAX];
};

const char *https_get_status_str(enum https_get_status s)
{
    switch (s) {
    case HTTPS_GET_OK:
        return "ok";
    case HTTPS_GET_DNS:
        return "dns";
    case HTTPS_GET_CONNECT:
        return "connect";
    case HTTPS_GET_TLS:
        return "tls";
    case HTTPS_GET_CERTIFICATE:
        return "certificate";
    case HTTPS_GET_REDIRECT:
        return "redirect";
    case HTTPS_GET_HTTP_STATUS:
        return "http status";
    case HTTPS_GET_MEDIA_TYPE:
        return "media type";
    case HTTPS_GET_TOO_LARGE:
        return "too large";
    case HTTPS_GET_MALFORMED:
        return "malformed";
    case HTTPS_GET_CLOSED:
        return "closed";
    case HTTPS_GET_TIMEOUT:
        return "timeout";
    case HTTPS_GET_CANCELLED:
        return "cancelled";
    case HTTPS_GET_INTERNAL:
        return "internal";
    }
    return "unknown";
}

/* --- the end of a fetch -------------------------------------------------- */

static void deliver(struct https_fetch *f)
{
    struct https_get *g = f->g;

    if (g != NULL) {
        g->f = NULL; /* g is the caller's again, also inside the callback */
        if (f->res.status == HTTPS_GET_OK) {
            f->res.body = buf_len(&f->body) > 0 ? buf_head(&f->body) : (const uint8_t *)"";
            f->res.body_len = buf_len(&f->body);
        }
        f->cb(g, &f->res);
    }
    tls_free(f->tls);
    tls_ctx_unref(f->ctx);
    buf_free(&f->inflight);
    buf_free(&f->request);
    buf_free(&f->body);
    free(f);
}

static void on_closed(uv_handle_t *h)
{
    struct https_fetch *f = h->data;

    if (--f->handles == 0)
        deliver(f);
}

static void connect_next(struct https_fetch *f);

/* The socket of a failed connect is closed before the next address gets a
 * new one. */
static void on_tcp_closed(uv_handle_t *h)
{
    struct https_fetch *f = h->data;

    if (f->phase == PHASE_DONE) {
        on_closed(h);
        return;
    }
    f->handles--;
    connect_next(f);
}

static void close_tcp(struct https_fetch *f)
{
    if (!f->tcp_open)
        return;
    f->tcp_open = false;
    uv_close((uv_handle_t *)&f->tcp, on_tcp_closed);
}

/* Ends the fetch with status (why: a detail, copied). Idempotent. */
static void finish(struct https_fetch *f, enum https_get_status status, const char *why)
{
    if (f->phase == PHASE_DONE)
        return;
    f->phase = PHASE_DONE;
    f->res.status = status;
    if (why != f->why)
        snprintf(f->why, sizeof(f->why), "%s", why);
    f->res.why = f->why;
    for (size_t i = 0; i < 2; i++)
        resolver_cancel(&f->q[i]);
    close_tcp(f);
    uv_timer_stop(&f->timer);
    uv_close((uv_handle_t *)&f->timer, on_closed);
}

static void finish_uv(struct https_fetch *f, enum https_get_status status, const char *what,
                      int err)
{
    char why[sizeof(f->why)];

    snprintf(why, sizeof(why), "%s: %s", what, uv_strerror(err));
    finish(f, status, why);
}

/* --- deadlines ----------------------------------------------------------- */

static uint64_t deadline(const struct https_fetch *f)
{
    uint64_t total = f->started + f->lim.total_ms, phase = total;

    if (f->phase == PHASE_DNS || f->phase == PHASE_CONNECT)
        phase = f->started + f->lim.connect_ms;
    else if (f->phase == PHASE_HANDSHAKE)
        phase = f->connected + f->lim.handshake_ms;
    return phase < total ? phase : total;
}

static void on_timer(uv_timer_t *t)
{
    struct https_fetch *f = t->data;
    static const char *const what[] = {
        [PHASE_DNS] = "name lookup timed out",
        [PHASE_CONNECT] = "connect timed out",
        [PHASE_HANDSHAKE] = "TLS handshake timed out",
        [PHASE_RESPONSE] = "response timed out",
    };

    if (f->phase != PHASE_DONE)
        finish(f, HTTPS_GET_TIMEOUT, what[f->phase]);
}

static void arm(struct https_fetch *f)
{
    uint64_t now = uv_now(f->loop), when = deadline(f);

    uv_timer_start(&f->timer, on_timer, when > now ? when - now : 0, 0);
}

/* --- the response -------------------------------------------------------- */

static void response_error(struct https_fetch *f, enum http_response_event ev)
{
    enum https_get_status st = HTTPS_GET_MALFORMED;

    if (ev == HTTP_RESPONSE_ERR_TOO_LARGE)
        st = HTTPS_GET_TOO_LARGE;
    else if (ev == HTTP_RESPONSE_ERR_TRUNCATED)
        st = HTTPS_GET_CLOSED;
    finish(f, st, http_response_event_str(ev));
}

/* The final head is in: only a 200 with text/plain goes on (RFC 8461
 * §3.3: "only valid if the HTTP response code is 200 (OK)"; §3.2: senders
 * SHOULD check the media type is text/plain, parameters aside). */
static bool check_head(struct https_fetch *f)
{
    const struct http_response_parser *p = &f->resp;

    f->res.http_status = p->status;
    if (p->status >= 300 && p->status < 400) {
        snprintf(f->why, sizeof(f->why), "status %d: redirects are not followed", p->status);
        finish(f, HTTPS_GET_REDIRECT, f->why);
        return false;
    }
    if (f->post && p->status >= 200 && p->status < 300)
        return true;
    if (p->status != 200 || f->post) {
        snprintf(f->why, sizeof(f->why), "status %d", p->status);
        finish(f, HTTPS_GET_HTTP_STATUS, f->why);
        return false;
    }
    if (!http_response_media_type_is(p, "text/plain")) {
        if (p->media_type[0] != '\0')
            snprintf(f->why, sizeof(f->why), "media type %s, not text/plain", p->media_type);
        else
            snprintf(f->why, sizeof(f->why), "no valid Content-Type, not text/plain");
        finish(f, HTTPS_GET_MEDIA_TYPE, f->why);
        return false;
    }
    return true;
}

/* Plaintext from the server. */
static void on_plain(struct https_fetch *f, const uint8_t *p, size_t n)
{
    while (f->phase != PHASE_DONE) {
        size_t used, bl;
        const uint8_t *b;
        enum http_response_event ev = http_response_feed(&f->resp, p, n, &used, &b, &bl);

        p += used;
        n -= used;
        switch (ev) {
        case HTTP_RESPONSE_AGAIN:
            return;
        case HTTP_RESPONSE_HEAD:
            if (!check_head(f))
                return;
            break;
        case HTTP_RESPONSE_BODY:
            /* The parser keeps the total under body_max. */
            if (buf_append(&f->body, b, bl) != 0)
                finish(f, HTTPS_GET_INTERNAL, "out of memory");
            break;
        case HTTP_RESPONSE_DONE:
            finish(f, HTTPS_GET_OK, "ok");
            return;
        default:
            response_error(f, ev);
            return;
        }
    }
}

/* The connection ended; clean: with a TLS close_notify. */
static void on_end(struct https_fetch *f, bool clean)
{
    if (f->phase == PHASE_HANDSHAKE) {
        finish(f, HTTPS_GET_TLS, "connection closed during the TLS handshake");
        return;
    }
    enum http_response_event ev = http_response_eof(&f->resp, clean);
    if (ev == HTTP_RESPONSE_DONE)
        finish(f, HTTPS_GET_OK, "ok");
    else if (ev == HTTP_RESPONSE_ERR_TRUNCATED && f->resp.head_len == 0)
        finish(f, HTTPS_GET_CLOSED, "connection closed before a response");
    else if (ev == HTTP_RESPONSE_ERR_TRUNCATED && !clean)
        finish(f, HTTPS_GET_CLOSED,
               "connection closed (no close_notify) before the response ended");
    else if (ev == HTTP_RESPONSE_ERR_TRUNCATED)
        finish(f, HTTPS_GET_CLOSED, "connection closed before the response ended");
    else
        response_error(f, ev);
}

/* --- TLS over the socket ------------------------------------------------- */

static void flush(struct https_fetch *f);

static void on_write(uv_write_t *req, int status)
{
    struct https_fetch *f = req->data;

    f->writing = false;
    buf_free(&f->inflight);
    if (f->phase == PHASE_DONE)
        return; /* UV_ECANCELED from the close, or a late completion */
    if (status < 0) {
        finish_uv(f, f->phase == PHASE_HANDSHAKE ? HTTPS_GET_TLS : HTTPS_GET_CLOSED, "write",
                  status);
        return;
    }
    flush(f);
}

/* Writes the ciphertext TLS has queued, one write at a time. */
static void flush(struct https_fetch *f)
{
    struct buf *out = tls_out(f->tls);

    if (f->writing || f->phase == PHASE_DONE || buf_len(out) == 0)
        return;
    buf_move(&f->inflight, out);
    uv_buf_t b = uv_buf_init((char *)buf_head(&f->inflight), (unsigned)buf_len(&f->inflight));
    f->wreq.data = f;
    int rc = uv_write(&f->wreq, (uv_stream_t *)&f->tcp, &b, 1, on_write);
    if (rc != 0) {
        buf_free(&f->inflight);
        finish_uv(f, HTTPS_GET_CLOSED, "write", rc);
        return;
    }
    f->writing = true;
}

static void tls_failed(struct https_fetch *f)
{
    bool cert = tls_error_is_certificate(f->tls);

    finish(f, cert ? HTTPS_GET_CERTIFICATE : HTTPS_GET_TLS, tls_error(f->tls));
}

/* Runs the handshake, sends the request once it is done, and reads what
 * TLS can decrypt now. */
static void pump(struct https_fetch *f)
{
    if (f->phase == PHASE_HANDSHAKE) {
        int rc = tls_handshake(f->tls);
        flush(f);
        if (rc == TLS_AGAIN || f->phase == PHASE_DONE)
            return;
        if (rc != TLS_OK) {
            tls_failed(f);
            return;
        }
        f->phase = PHASE_RESPONSE;
        arm(f);
        if (tls_write(f->tls, buf_head(&f->request), buf_len(&f->request)) != TLS_OK) {
            tls_failed(f);
            return;
        }
        buf_free(&f->request);
        flush(f);
    }
    while (f->phase == PHASE_RESPONSE) {
        size_t n = 0;
        int rc = tls_read(f->tls, f->plain, sizeof(f->plain), &n);
        if (rc == TLS_OK && n > 0) {
            on_plain(f, f->plain, n);
            continue;
        }
        if (rc == TLS_OK || rc == TLS_AGAIN)
            break;
        if (rc == TLS_CLOSED)
            on_end(f, true);
        else
            tls_failed(f);
        return;
    }
    flush(f); /* an alert or a KeyUpdate reply */
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct https_fetch *f = h->data;

    (void)hint;
    b->base = (char *)f->rbuf;
    b->len = sizeof(f->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct https_fetch *f = s->data;

    if (f->phase == PHASE_DONE || nread == 0)
        return;
    if (nread == UV_EOF) {
        on_end(f, false);
        return;
    }
    if (nread < 0) {
        finish_uv(f, f->phase == PHASE_HANDSHAKE ? HTTPS_GET_TLS : HTTPS_GET_CLOSED, "read",
                  (int)nread);
        return;
    }
    if (tls_feed(f->tls, (const uint8_t *)b->base, (size_t)nread) != 0) {
        finish(f, HTTPS_GET_INTERNAL, "out of memory");
        return;
    }
    pump(f);
}

/* --- connecting ---------------------------------------------------------- */

static void on_connect(uv_connect_t *req, int status)
{
    struct https_fetch *f = req->data;
    char where[ADDR_STRLEN], what[ADDR_STRLEN + 16];

    if (f->phase == PHASE_DONE)
        return; /* UV_ECANCELED: the socket is closing */
    if (status < 0) {
        addr_format((const struct sockaddr *)&f->addrs[f->next_addr], where, sizeof(where));
        snprintf(what, sizeof(what), "connect %s", where);
        snprintf(f->why, sizeof(f->why), "%s: %s", what, uv_strerror(status));
        f->next_addr++;
        close_tcp(f); /* on_tcp_closed tries the next address */
        return;
    }
    f->connected = uv_now(f->loop);
    f->phase = PHASE_HANDSHAKE;
    arm(f);
    uv_tcp_nodelay(&f->tcp, 1);
    f->tls = tls_new_client(f->ctx, f->host, true, f->host, false);
    if (f->tls == NULL) {
        finish(f, HTTPS_GET_INTERNAL, "out of memory");
        return;
    }
    int rc = uv_read_start((uv_stream_t *)&f->tcp, on_alloc, on_read);
    if (rc != 0) {
        finish_uv(f, HTTPS_GET_INTERNAL, "read", rc);
        return;
    }
    pump(f); /* the ClientHello */
}

static void connect_next(struct https_fetch *f)
{
    if (f->phase == PHASE_DONE)
        return;
    if (f->next_addr >= f->naddrs) {
        finish(f, HTTPS_GET_CONNECT, f->why[0] ? f->why : "no address");
        return;
    }
    int rc = uv_tcp_init(f->loop, &f->tcp);
    if (rc != 0) {
        finish_uv(f, HTTPS_GET_INTERNAL, "socket", rc);
        return;
    }
    f->tcp.data = f;
    f->handles++;
    f->tcp_open = true;
    f->creq.data = f;
    rc = uv_tcp_connect(&f->creq, &f->tcp, (const struct sockaddr *)&f->addrs[f->next_addr],
                        on_connect);
    if (rc != 0) {
        char where[ADDR_STRLEN];
        addr_format((const struct sockaddr *)&f->addrs[f->next_addr], where, sizeof(where));
        snprintf(f->why, sizeof(f->why), "connect %s: %s", where, uv_strerror(rc));
        f->next_addr++;
        close_tcp(f);
    }
}

/* --- the name ------------------------------------------------------------ */

static void on_answer(struct resolver_query *q, const struct resolver_result *res)
{
    struct https_fetch *f = q->data;
    bool v6 = q == &f->q[1];

    f->lookups--;
    if (f->phase != PHASE_DNS)
        return;
    if (res->security == RESOLVER_BOGUS) {
        snprintf(f->why, sizeof(f->why), "%s is bogus (DNSSEC): %s", f->host,
                 res->why_bogus != NULL ? res->why_bogus : "no reason given");
        finish(f, HTTPS_GET_DNS, f->why);
        return;
    }
    if (res->err != 0)
        f->no_addr = res->errstr != NULL ? res->errstr : "lookup failed";
    else if (res->rcode == RESOLVER_RCODE_NXDOMAIN)
        f->no_addr = "NXDOMAIN";
    else if (res->rcode != RESOLVER_RCODE_NOERROR)
        f->no_addr = "SERVFAIL";
    for (size_t i = 0; res->err == 0 && i < res->count; i++) {
        if (!v6 && res->len[i] == 4 && f->naddrs < HTTPS_GET_ADDRS_MAX) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&f->addrs[f->naddrs++];
            sin->sin_family = AF_INET;
            sin->sin_port = htons(f->port);
            memcpy(&sin->sin_addr, res->data[i], 4);
        } else if (v6 && res->len[i] == 16 && f->nv6 < HTTPS_GET_ADDRS_MAX) {
            struct sockaddr_in6 *sin6 = &f->v6[f->nv6++];
            sin6->sin6_family = AF_INET6;
            sin6->sin6_port = htons(f->port);
            memcpy(&sin6->sin6_addr, res->data[i], 16);
        }
    }
    if (f->lookups > 0)
        return;
    /* IPv4 first: a host without IPv6 routing would otherwise spend the
     * connect time on addresses it cannot reach. */
    for (size_t i = 0; i < f->nv6 && f->naddrs < HTTPS_GET_ADDRS_MAX; i++)
        memcpy(&f->addrs[f->naddrs++], &f->v6[i], sizeof(f->v6[i]));
    if (f->naddrs == 0) {
        snprintf(f->why, sizeof(f->why), "%s: %s", f->host,
                 f->no_addr != NULL ? f->no_addr : "no address");
        finish(f, HTTPS_GET_DNS, f->why);
        return;
    }
    f->phase = PHASE_CONNECT;
    connect_next(f);
}

/* --- starting ------------------------------------------------------------ */

/* A DNS name: LDH labels of 1..63 bytes joined by dots, no trailing dot
 * (it would go into SNI, RFC 6066 §3), at most HTTPS_GET_HOST_MAX bytes,
 * and not an IPv4 literal (an all-digit last label: SNI carries no
 * addresses). It becomes a header line and the SNI, so nothing else may
 * pass. */
static bool host_ok(const char *h)
{
    size_t n = strnlen(h, HTTPS_GET_HOST_MAX + 1), label = 0;
    bool digits = true;

    if (n == 0 || n > HTTPS_GET_HOST_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            digits = true;
            continue;
        }
        digits = digits && c >= '0' && c <= '9';
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0 && !digits;
}

/* An origin-form target (RFC 9112 §3.2.1) of visible ASCII. */
static bool path_ok(const char *p)
{
    size_t n = strnlen(p, HTTPS_GET_PATH_MAX + 1);

    if (n == 0 || n > HTTPS_GET_PATH_MAX || p[0] != '/')
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
            return false;
    return true;
}

/* A header field value of visible ASCII and spaces (RFC 9110 §5.5), none
 * leading: it goes into the request as it is. */
static bool value_ok(const char *v)
{
    size_t n = strnlen(v, HTTPS_POST_VALUE_MAX + 1);

    if (n == 0 || n > HTTPS_POST_VALUE_MAX || v[0] == ' ')
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] >= 0x7f)
            return false;
    return true;
}

static int build_request(struct https_fetch *f, const char *path, const struct https_post_body *pb)
{
    char port[8] = "";
    char *r;
    size_t cap = strlen(path) + strlen(f->host) + 128;
    int n;

    if (pb != NULL)
        cap += 2 * HTTPS_POST_VALUE_MAX + 96;
    if (f->port != 443)
        snprintf(port, sizeof(port), ":%u", (unsigned)f->port);
    if ((r = (char *)buf_reserve(&f->request, cap)) == NULL)
        return UV_ENOMEM;
    if (pb == NULL)
        /* No Accept-Encoding: the body comes as it is (identity). */
        n = snprintf(r, cap,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s%s\r\n"
                     "User-Agent: smtp-tls-proxy\r\n"
                     "Accept: text/plain\r\n"
                     "Connection: close\r\n"
                     "\r\n",
                     path, f->host, port);
    else
        n = snprintf(r, cap,
                     "POST %s HTTP/1.1\r\n"
                     "Host: %s%s\r\n"
                     "User-Agent: smtp-tls-proxy\r\n"
                     "Content-Type: %s\r\n"
                     "%s%s%s"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n"
                     "\r\n",
                     path, f->host, port, pb->content_type,
                     pb->content_encoding != NULL ? "Content-Encoding: " : "",
                     pb->content_encoding != NULL ? pb->content_encoding : "",
                     pb->content_encoding != NULL ? "\r\n" : "", pb->len);
    if (n < 0 || (size_t)n >= cap)
        return UV_EINVAL;
    buf_commit(&f->request, (size_t)n);
    if (pb != NULL && pb->len > 0 && buf_append(&f->request, pb->data, pb->len) != 0)
        return UV_ENOMEM;
    return 0;
}

static int lookup(struct https_fetch *f, struct resolver *r)
{
    static const int types[2] = {RESOLVER_TYPE_A, RESOLVER_TYPE_AAAA};

    for (size_t i = 0; i < 2; i++) {
        f->q[i].data = f;
        int rc = resolver_query(r, &f->q[i], f->host, types[i], on_answer);
        if (rc != 0) {
            finish_uv(f, rc == UV_ESHUTDOWN ? HTTPS_GET_CANCELLED : HTTPS_GET_INTERNAL, "lookup",
                      rc);
            return 0; /* the callback reports it */
        }
        f->lookups++;
    }
    return 0;
}

static int start(struct https_get *g, uv_loop_t *loop, struct resolver *r, struct tls_ctx *ctx,
                 const char *host, uint16_t port, const char *path, const struct sockaddr *addr,
                 const struct https_get_limits *lim, const struct https_post_body *pb,
                 https_get_cb cb)
{
    struct https_fetch *f;
    int rc;

    if (g->f != NULL)
        return UV_EBUSY;
    if (!host_ok(host) || !path_ok(path) || ctx == NULL || cb == NULL ||
        (addr == NULL && r == NULL) ||
        (addr != NULL && addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
        return UV_EINVAL;
    if (pb != NULL && (pb->content_type == NULL || !value_ok(pb->content_type) ||
                       (pb->content_encoding != NULL && !value_ok(pb->content_encoding)) ||
                       pb->len > HTTPS_POST_BODY_MAX || (pb->len > 0 && pb->data == NULL)))
        return UV_EINVAL;
    if ((f = calloc(1, sizeof(*f))) == NULL)
        return UV_ENOMEM;
    f->cb = cb;
    f->post = pb != NULL;
    f->loop = loop;
    f->lim = lim != NULL ? *lim : https_get_default_limits;
    f->port = port;
    snprintf(f->host, sizeof(f->host), "%s", host);
    http_response_init(&f->resp, f->lim.head_max, f->lim.body_max);
    if ((rc = build_request(f, path, pb)) != 0)
        goto fail_alloc;
    if ((rc = uv_timer_init(loop, &f->timer)) != 0)
        goto fail_alloc;
    f->timer.data = f;
    f->handles = 1;
    tls_ctx_ref(ctx);
    f->ctx = ctx;
    f->g = g;
    g->f = f;
    /* From here every failure is reported through the callback, which the
     * timer's close callback makes come after this call has returned. */
    uv_update_time(loop); /* the deadlines count from now, not from the loop's last wakeup */
    f->started = uv_now(loop);
    if (addr != NULL) {
        memcpy(&f->addrs[0], addr,
               addr->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                          : sizeof(struct sockaddr_in6));
        f->naddrs = 1;
        f->phase = PHASE_CONNECT;
        arm(f);
        connect_next(f);
        return 0;
    }
    f->phase = PHASE_DNS;
    arm(f);
    return lookup(f, r);

fail_alloc:
    buf_free(&f->request);
    free(f);
    return rc;
}

int https_get_start(struct https_get *g, uv_loop_t *loop, struct resolver *r, struct tls_ctx *ctx,
                    const char *host, uint16_t port, const char *path, const struct sockaddr *addr,
                    const struct https_get_limits *lim, https_get_cb cb)
{
    return start(g, loop, r, ctx, host, port, path, addr, lim, NULL, cb);
}

int https_post_start(struct https_get *g, uv_loop_t *loop, struct resolver *r, struct tls_ctx *ctx,
                     const char *host, uint16_t port, const char *path, const struct sockaddr *addr,
                     const struct https_get_limits *lim, const struct https_post_body *body,
                     https_get_cb cb)
{
    if (body == NULL)
        return UV_EINVAL;
    return start(g, loop, r, ctx, host, port, path, addr, lim, body, cb);
}

bool https_get_active(const struct https_get *g)
{
    return g->f != NULL;
}

void https_get_cancel(struct https_get *g)
{
    struct https_fetch *f = g->f;

    if (f == NULL)
        return;
    g->f = NULL;
    f->g = NULL;
    finish(f, HTTPS_GET_CANCELLED, "cancelled");
}
