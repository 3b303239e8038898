/*
 * https_get_fixture.c.h: the scripted TLS server (a thread with blocking
 * sockets and the project's server engine) and the client helpers shared by
 * https_get_test.c and https_get_dns_test.c. Certificates: the fixtures of
 * tests/unit/tls/testdata (SAN localhost, mx.test, 127.0.0.1).
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

/* Helpers a test file may leave unused. */
#define FIXTURE static __attribute__((unused))

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

FIXTURE bool send_out(int fd, struct tls *t)
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

FIXTURE bool recv_in(int fd, struct tls *t)
{
    uint8_t b[16384];
    ssize_t n = recv(fd, b, sizeof(b), 0);

    return n > 0 && tls_feed(t, b, (size_t)n) == 0;
}

/* Until the peer closes (or the socket's timeout). */
FIXTURE void drain(int fd)
{
    uint8_t b[4096];
    while (recv(fd, b, sizeof(b), 0) > 0)
        ;
}

FIXTURE void *serve(void *arg)
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
    /* A POST: its body as well (Content-Length), as far as the buffer goes. */
    const char *cl = strstr(sv->request, "Content-Length: ");
    if (cl != NULL) {
        size_t head = (size_t)(strstr(sv->request, "\r\n\r\n") + 4 - sv->request);
        size_t want = head + strtoul(cl + 16, NULL, 10);
        while (sv->request_len < want && sv->request_len < sizeof(sv->request) - 1) {
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

FIXTURE struct tls_ctx *server_ctx(const char *name)
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

FIXTURE void server_start(struct server *sv, const struct script *s)
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

FIXTURE void server_stop(struct server *sv)
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

FIXTURE void on_done(struct https_get *g, const struct https_get_result *r)
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

FIXTURE struct https_get_limits test_limits(void)
{
    struct https_get_limits lim = https_get_default_limits;
    lim.connect_ms = lim.handshake_ms = lim.total_ms = 10000;
    return lim;
}

/* Fetches https://host PATH from 127.0.0.1:port on a loop of its own and
 * runs it until nothing is left on it. */
FIXTURE void fetch_at(const char *host, uint16_t port, const struct https_get_limits *lim)
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

FIXTURE void run_script(const struct script *s, const char *host,
                        const struct https_get_limits *lim, struct server *sv)
{
    struct https_get_limits l = test_limits();

    server_start(sv, s);
    fetch_at(host, sv->port, lim != NULL ? lim : &l);
    server_stop(sv);
}

FIXTURE void expect(const struct script *s, const char *host, enum https_get_status want)
{
    struct server sv;

    run_script(s, host, NULL, &sv);
    if (got.status != want)
        fail_msg("%s, expected %s (%s)", https_get_status_str(got.status),
                 https_get_status_str(want), got.why);
}

FIXTURE int setup(void **state)
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

FIXTURE int teardown(void **state)
{
    (void)state;
    tls_ctx_unref(client);
    return 0;
}
