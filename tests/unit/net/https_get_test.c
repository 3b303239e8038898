/*
 * Tests of proxy/net/https_get.c over real sockets on 127.0.0.1 and real
 * TLS: the client runs on a libuv loop in the test's thread; each case's
 * server is a thread with blocking sockets and a BoringSSL server engine
 * (proxy/tls) that follows a small script (certificate, response bytes,
 * how they are cut, how the connection ends). Certificates: the fixtures
 * of tests/unit/tls/testdata (SAN localhost, mx.test, 127.0.0.1).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "proxy/net/https_get.h"
#include "proxy/net/resolver.h"
#include "proxy/tls/tls.h"

#define TD "tests/unit/tls/testdata/"
#define PATH "/.well-known/mta-sts.txt"
#define POLICY "version: STSv1\r\nmode: enforce\r\nmx: mx.example.net\r\nmax_age: 86400\r\n"

/* --- the scripted server ------------------------------------------------- */

struct script {
    const char *cert; /* testdata name; NULL: "server-ecdsa" */
    bool silent; /* accept, then never speak (no TLS at all) */
    const char *response; /* written once the request is in; NULL: nothing */
    size_t response_len; /* 0: strlen(response) */
    size_t piece; /* one TLS record per piece bytes (0: one write) */
    bool stall; /* then wait for the client to close */
    bool close_notify; /* then end with a close_notify */
};

struct server {
    struct script s;
    int lfd;
    uint16_t port;
    pthread_t th;
    struct tls_ctx *ctx;
    char request[4096];
    size_t request_len;
    bool handshake_ok;
};

static bool send_out(int fd, struct tls *t)
{
    struct buf *o = tls_out(t);

    while (buf_len(o) > 0) {
        ssize_t n = send(fd, buf_head(o), buf_len(o), MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        buf_consume(o, (size_t)n);
    }
    return true;
}

static bool recv_in(int fd, struct tls *t)
{
    uint8_t b[16384];
    ssize_t n = recv(fd, b, sizeof(b), 0);

    return n > 0 && tls_feed(t, b, (size_t)n) == 0;
}

/* Until the peer closes (or the socket's timeout). */
static void drain(int fd)
{
    uint8_t b[4096];
    while (recv(fd, b, sizeof(b), 0) > 0)
        ;
}

static void *serve(void *arg)
{
    struct server *sv = arg;
    struct pollfd pfd = {.fd = sv->lfd, .events = POLLIN};

    if (poll(&pfd, 1, 10000) != 1)
        return NULL;
    int fd = accept(sv->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (sv->s.silent) {
        drain(fd);
        close(fd);
        return NULL;
    }
    struct tls *t = tls_new_server(sv->ctx);
    int rc;
    while ((rc = tls_handshake(t)) == TLS_AGAIN)
        if (!send_out(fd, t) || !recv_in(fd, t))
            goto out;
    send_out(fd, t);
    if (rc != TLS_OK)
        goto out;
    sv->handshake_ok = true;
    while (strstr(sv->request, "\r\n\r\n") == NULL) {
        size_t n = 0;
        rc = tls_read(t, (uint8_t *)sv->request + sv->request_len,
                      sizeof(sv->request) - 1 - sv->request_len, &n);
        sv->request_len += n;
        sv->request[sv->request_len] = '\0';
        if (rc == TLS_AGAIN && !recv_in(fd, t))
            goto out;
        if (rc != TLS_OK && rc != TLS_AGAIN)
            goto out;
    }
    if (sv->s.response != NULL) {
        size_t len = sv->s.response_len ? sv->s.response_len : strlen(sv->s.response);
        size_t piece = sv->s.piece ? sv->s.piece : len;
        for (size_t off = 0; off < len; off += piece) {
            size_t k = len - off < piece ? len - off : piece;
            if (tls_write(t, (const uint8_t *)sv->s.response + off, k) != TLS_OK ||
                !send_out(fd, t))
                goto out;
        }
    }
    if (sv->s.stall)
        drain(fd);
    if (sv->s.close_notify) {
        tls_shutdown(t);
        send_out(fd, t);
    }
out:
    tls_free(t);
    close(fd);
    return NULL;
}

static struct tls_ctx *server_ctx(const char *name)
{
    struct tls_options o;
    char cert[128], key[128], err[256] = "";
    char *certs[1] = {cert}, *keys[1] = {key};

    memset(&o, 0, sizeof(o));
    snprintf(cert, sizeof(cert), TD "%s.pem", name);
    snprintf(key, sizeof(key), TD "%s.key", name);
    o.certificates = certs;
    o.ncertificates = 1;
    o.keys = keys;
    o.nkeys = 1;
    o.min_version = 12;
    struct tls_ctx *ctx = tls_ctx_server_new(&o, err, sizeof(err));
    if (ctx == NULL)
        fail_msg("server ctx %s: %s", name, err);
    return ctx;
}

static void server_start(struct server *sv, const struct script *s)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);

    memset(sv, 0, sizeof(*sv));
    sv->s = *s;
    sv->ctx = server_ctx(s->cert != NULL ? s->cert : "server-ecdsa");
    sv->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(sv->lfd >= 0);
    assert_int_equal(bind(sv->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(sv->lfd, 4), 0);
    assert_int_equal(getsockname(sv->lfd, (struct sockaddr *)&sin, &len), 0);
    sv->port = ntohs(sin.sin_port);
    assert_int_equal(pthread_create(&sv->th, NULL, serve, sv), 0);
}

static void server_stop(struct server *sv)
{
    /* A server still waiting in poll() gives up after its timeout; shut
     * the listener so that it does so at once. */
    shutdown(sv->lfd, SHUT_RDWR);
    pthread_join(sv->th, NULL);
    close(sv->lfd);
    tls_ctx_unref(sv->ctx);
}

/* --- the client ---------------------------------------------------------- */

struct got {
    int calls;
    enum https_get_status status;
    int http_status;
    char why[512];
    char body[HTTPS_GET_BODY_MAX + 1];
    size_t body_len;
    uint64_t ms;
};

static struct got got;
static struct tls_ctx *client;
static uv_loop_t *cb_loop;
static uint64_t t0;

static void on_done(struct https_get *g, const struct https_get_result *r)
{
    struct got *o = g->data;

    o->calls++;
    o->status = r->status;
    o->http_status = r->http_status;
    o->ms = uv_now(cb_loop) - t0;
    assert_non_null(r->why);
    snprintf(o->why, sizeof(o->why), "%s", r->why);
    /* Still reachable from the callback: the fetch is over. */
    assert_false(https_get_active(g));
    if (r->status == HTTPS_GET_OK) {
        assert_true(r->body_len <= HTTPS_GET_BODY_MAX);
        memcpy(o->body, r->body, r->body_len);
        o->body_len = r->body_len;
        o->body[o->body_len] = '\0';
    } else {
        assert_int_equal(r->body_len, 0);
    }
}

static struct https_get_limits test_limits(void)
{
    struct https_get_limits lim = https_get_default_limits;
    lim.connect_ms = lim.handshake_ms = lim.total_ms = 10000;
    return lim;
}

/* Fetches https://host PATH from 127.0.0.1:port on a loop of its own and
 * runs it until nothing is left on it. */
static void fetch_at(const char *host, uint16_t port, const struct https_get_limits *lim)
{
    uv_loop_t loop;
    struct https_get g = {.data = &got};
    struct sockaddr_in sin = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

    memset(&got, 0, sizeof(got));
    assert_int_equal(uv_loop_init(&loop), 0);
    cb_loop = &loop;
    t0 = uv_now(&loop);
    assert_int_equal(https_get_start(&g, &loop, NULL, client, host, 443, PATH,
                                     (const struct sockaddr *)&sin, lim, on_done),
                     0);
    assert_true(https_get_active(&g));
    assert_int_equal(got.calls, 0); /* never from inside the start */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(got.calls, 1);
    /* Every handle of the fetch is closed. */
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void run_script(const struct script *s, const char *host, const struct https_get_limits *lim,
                       struct server *sv)
{
    struct https_get_limits l = test_limits();

    server_start(sv, s);
    fetch_at(host, sv->port, lim != NULL ? lim : &l);
    server_stop(sv);
}

static void expect(const struct script *s, const char *host, enum https_get_status want)
{
    struct server sv;

    run_script(s, host, NULL, &sv);
    if (got.status != want)
        fail_msg("%s, expected %s (%s)", https_get_status_str(got.status),
                 https_get_status_str(want), got.why);
}

static int setup(void **state)
{
    struct tls_options o;
    char err[256] = "";

    (void)state;
    memset(&o, 0, sizeof(o));
    o.min_version = 12;
    o.ca_file = TD "ca.pem";
    client = tls_ctx_client_new(&o, err, sizeof(err));
    if (client == NULL)
        fail_msg("client ctx: %s", err);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tls_ctx_unref(client);
    return 0;
}

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
        "",         "mx.test\r\nX-Injected: 1", "mx test",        "mx..test", ".mx.test",
        "mx.test.", "mx_test.example",          "m\xc3\xa9.test", longname};
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

/* Through the resolver: "localhost" from /etc/hosts (libunbound reads it),
 * the URL's port, and the Host header naming it. */
static void test_resolver_path(void **state)
{
    (void)state;
    struct script s = {.response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                   "Content-Length: 67\r\n\r\n" POLICY};
    struct resolver_options ro;
    struct server sv;
    uv_loop_t loop;
    char err[256] = "", host[64];
    struct https_get g = {.data = &got};

    /* A forwarder that is never asked: /etc/hosts answers first. */
    memset(&ro, 0, sizeof(ro));
    ro.dnssec = RESOLVER_DNSSEC_OFF;
    struct sockaddr_in *fwd = (struct sockaddr_in *)&ro.servers[0].sa;
    fwd->sin_family = AF_INET;
    fwd->sin_port = htons(9);
    fwd->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ro.servers[0].salen = sizeof(*fwd);
    ro.servers[0].port = 9;
    snprintf(ro.servers[0].host, sizeof(ro.servers[0].host), "127.0.0.1");
    ro.nservers = 1;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct resolver *r = resolver_new(&loop, &ro, err, sizeof(err));
    if (r == NULL)
        fail_msg("resolver: %s", err);
    server_start(&sv, &s);
    memset(&got, 0, sizeof(got));
    cb_loop = &loop;
    struct https_get_limits lim = test_limits();
    assert_int_equal(
        https_get_start(&g, &loop, r, client, "localhost", sv.port, PATH, NULL, &lim, on_done), 0);
    while (got.calls == 0 && uv_run(&loop, UV_RUN_ONCE) != 0)
        ;
    resolver_close(r);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    server_stop(&sv);
    assert_int_equal(got.calls, 1);
    if (got.status != HTTPS_GET_OK)
        fail_msg("%s: %s", https_get_status_str(got.status), got.why);
    snprintf(host, sizeof(host), "Host: localhost:%u\r\n", (unsigned)sv.port);
    assert_non_null(strstr(sv.request, host));
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
        cmocka_unit_test(test_resolver_path),
        cmocka_unit_test(test_status_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
