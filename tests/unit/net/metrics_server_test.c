#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "proxy/obs/log.h"
#include "proxy/obs/metrics.h"
#include "proxy/net/metrics_server.h"

/* The registry is process-wide and never shrinks, so every test uses
 * listener names of its own. */



/* --- HTTP ------------------------------------------------------------- */

struct http_fixture {
    uv_loop_t loop;
    uv_async_t stop;
    pthread_t thread;
    int port;
};

static void on_stop(uv_async_t *a)
{
    metrics_server_stop();
    uv_close((uv_handle_t *)a, NULL);
}

static void *run_loop(void *p)
{
    struct http_fixture *f = p;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void loopback_addr(struct addr *a, int port)
{
    memset(a, 0, sizeof(*a));
    uv_ip4_addr("127.0.0.1", port, (struct sockaddr_in *)&a->sa);
    a->salen = sizeof(struct sockaddr_in);
    snprintf(a->host, sizeof(a->host), "127.0.0.1");
    a->port = (unsigned short)port;
}

/* Static rather than allocated: a test that restarts the endpoint cannot
 * hand a new pointer back to cmocka's group teardown. */
static struct http_fixture fixture;

static int http_setup(void **state)
{
    struct http_fixture *f = &fixture;
    struct addr addr;

    log_init(LOG_LEVEL_ERROR, LOG_FORMAT_TEXT); /* quiet: "too many clients" etc. */
    memset(f, 0, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    loopback_addr(&addr, 0);
    assert_int_equal(metrics_server_start(&f->loop, &addr), 0);
    f->port = metrics_server_port();
    assert_true(f->port > 0);
    assert_int_equal(uv_async_init(&f->loop, &f->stop, on_stop), 0);
    assert_int_equal(pthread_create(&f->thread, NULL, run_loop, f), 0);
    *state = f;
    return 0;
}

static int http_teardown(void **state)
{
    struct http_fixture *f = *state;

    uv_async_send(&f->stop);
    pthread_join(f->thread, NULL);
    /* Every handle, clients included, was closed: the loop closes clean. */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    assert_true(metrics_server_port() < 0);
    return 0;
}

static int connect_to(int port)
{
    struct sockaddr_in sin;
    struct timeval tv = {.tv_sec = 10};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* the server may close on us: the caller checks the reply */
        p += w;
        n -= (size_t)w;
    }
}

/* Reads until EOF (or error); NUL-terminated; returns the length. */
static size_t recv_all(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    return len;
}

static size_t http(int port, const char *req, size_t reqlen, char *buf, size_t cap)
{
    int fd = connect_to(port);
    send_all(fd, req, reqlen);
    size_t n = recv_all(fd, buf, cap);
    close(fd);
    return n;
}

#define HTTP(f, req, buf) http((f)->port, (req), strlen(req), (buf), sizeof(buf))

static const char *body_of(const char *resp)
{
    const char *p = strstr(resp, "\r\n\r\n");
    assert_non_null(p);
    return p + 4;
}

static void test_http_metrics(void **state)
{
    struct http_fixture *f = *state;
    static char buf[1 << 20];

    metrics_connection_open(metrics_listener("http", "in"));
    size_t n = HTTP(f, "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", buf);
    assert_true(n > 0);
    assert_memory_equal(buf, "HTTP/1.1 200 OK\r\n", 17);
    assert_non_null(strstr(buf, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert_non_null(strstr(buf, "\r\nConnection: close\r\n"));
    const char *body = body_of(buf);
    const char *cl = strstr(buf, "Content-Length: ");
    assert_non_null(cl);
    assert_int_equal(strtoul(cl + 16, NULL, 10), strlen(body));
    assert_non_null(strstr(body, "# TYPE smtp_tls_proxy_connections_total counter\n"));
    assert_non_null(strstr(body, "smtp_tls_proxy_connections_total{listener=\"http\","
                                 "direction=\"in\"} 1\n"));

    /* HTTP/1.0, a query string and bare-LF line ends are fine too. */
    n = HTTP(f, "GET /metrics?name[]=x HTTP/1.0\n\n", buf);
    assert_memory_equal(buf, "HTTP/1.1 200 OK\r\n", 17);

    /* HEAD: the headers of GET, no body. */
    n = HTTP(f, "HEAD /metrics HTTP/1.1\r\n\r\n", buf);
    assert_memory_equal(buf, "HTTP/1.1 200 OK\r\n", 17);
    assert_string_equal(body_of(buf), "");
    cl = strstr(buf, "Content-Length: ");
    assert_non_null(cl);
    assert_true(strtoul(cl + 16, NULL, 10) > 100);
}

static void test_http_healthz(void **state)
{
    struct http_fixture *f = *state;
    char buf[4096];

    HTTP(f, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", buf);
    assert_memory_equal(buf, "HTTP/1.1 200 OK\r\n", 17);
    assert_non_null(strstr(buf, "Content-Length: 3\r\n"));
    assert_string_equal(body_of(buf), "ok\n");
}

/* After SIGTERM a load balancer must see the proxy as unavailable. */
static void test_http_healthz_draining(void **state)
{
    struct http_fixture *f = *state;
    char buf[4096];

    metrics_server_set_draining(true);
    HTTP(f, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", buf);
    metrics_server_set_draining(false);
    assert_memory_equal(buf, "HTTP/1.1 503 Service Unavailable\r\n", 34);
    assert_string_equal(body_of(buf), "draining\n");
    HTTP(f, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", buf);
    assert_memory_equal(buf, "HTTP/1.1 200 OK\r\n", 17);
}

static void test_http_errors(void **state)
{
    struct http_fixture *f = *state;
    char buf[4096];

    HTTP(f, "GET /nope HTTP/1.1\r\n\r\n", buf);
    assert_memory_equal(buf, "HTTP/1.1 404 Not Found\r\n", 24);
    HTTP(f, "GET /metricsx HTTP/1.1\r\n\r\n", buf);
    assert_memory_equal(buf, "HTTP/1.1 404 Not Found\r\n", 24);

    /* The body the server never reads must not reset the response away. */
    HTTP(f, "POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", buf);
    assert_memory_equal(buf, "HTTP/1.1 405 Method Not Allowed\r\n", 33);
    assert_non_null(strstr(buf, "\r\nAllow: GET, HEAD\r\n"));

    HTTP(f, "GET /metrics\r\n\r\n", buf); /* HTTP/0.9 */
    assert_memory_equal(buf, "HTTP/1.1 400 Bad Request\r\n", 26);
    HTTP(f, "GET /metrics HTTP/2.0\r\n\r\n", buf);
    assert_memory_equal(buf, "HTTP/1.1 400 Bad Request\r\n", 26);
    HTTP(f, "\r\n\r\n", buf);
    assert_memory_equal(buf, "HTTP/1.1 400 Bad Request\r\n", 26);
    static const char junk[] = "\x00\xff\xfe  \x01 garbage\r\n\r\n";
    http(f->port, junk, sizeof(junk) - 1, buf, sizeof(buf));
    assert_memory_equal(buf, "HTTP/1.1 400 Bad Request\r\n", 26);

    /* A head past the limit is refused, not buffered. */
    char *big = malloc(20000);
    memset(big, 'A', 20000);
    http(f->port, big, 20000, buf, sizeof(buf));
    assert_memory_equal(buf, "HTTP/1.1 431 ", 13);
    free(big);
}

static void test_http_split_request(void **state)
{
    struct http_fixture *f = *state;
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    struct timespec pause = {.tv_nsec = 20 * 1000 * 1000};
    char buf[4096];

    int fd = connect_to(f->port);
    for (size_t i = 0; i < sizeof(req) - 1; i++) {
        send_all(fd, req + i, 1);
        nanosleep(&pause, NULL);
    }
    recv_all(fd, buf, sizeof(buf));
    close(fd);
    assert_string_equal(body_of(buf), "ok\n");
}

static void test_http_garbage(void **state)
{
    struct http_fixture *f = *state;
    char req[700];
    char buf[4096];

    srand(42);
    for (int i = 0; i < 200; i++) {
        size_t n = (size_t)(rand() % 600);
        for (size_t k = 0; k < n; k++)
            req[k] = (char)(rand() % 256);
        if (i % 3 == 0 && n > 8)
            memcpy(req, "GET ", 4); /* sometimes almost a request */
        memcpy(req + n, "\r\n\r\n", 4);
        http(f->port, req, n + 4, buf, sizeof(buf));
        assert_memory_equal(buf, "HTTP/1.1 ", 9);
    }
    /* Clients that vanish early. */
    for (int i = 0; i < 20; i++) {
        int fd = connect_to(f->port);
        if (i % 2)
            send_all(fd, "GET /met", 8);
        close(fd);
    }
    /* A burst past the client cap is shed, so let the server see those
     * closes before asking again. */
    struct timespec settle = {.tv_nsec = 300 * 1000 * 1000};
    nanosleep(&settle, NULL);
    HTTP(f, "GET /healthz HTTP/1.1\r\n\r\n", buf);
    assert_string_equal(body_of(buf), "ok\n");
}

static void test_http_silent_client(void **state)
{
    struct http_fixture *f = *state;
    char buf[64];
    time_t start = time(NULL);

    int fd = connect_to(f->port);
    send_all(fd, "GET /metrics HTTP/1.1\r\n", 23); /* never finished */
    size_t n = recv_all(fd, buf, sizeof(buf));
    close(fd);
    assert_int_equal(n, 0); /* closed without an answer ... */
    assert_true(time(NULL) - start <= 6); /* ... after the read timeout */
}

static void test_http_client_cap(void **state)
{
    struct http_fixture *f = *state;
    struct timespec settle = {.tv_nsec = 300 * 1000 * 1000};
    int idle[16];
    char buf[4096];

    for (int i = 0; i < 16; i++)
        idle[i] = connect_to(f->port);
    nanosleep(&settle, NULL);
    /* One past the limit is closed at once, unanswered. */
    size_t n = HTTP(f, "GET /healthz HTTP/1.1\r\n\r\n", buf);
    assert_int_equal(n, 0);
    for (int i = 0; i < 16; i++)
        close(idle[i]);
    nanosleep(&settle, NULL);
    HTTP(f, "GET /healthz HTTP/1.1\r\n\r\n", buf);
    assert_string_equal(body_of(buf), "ok\n");
}

/* Runs last in its group: a client still connected when metrics_server_stop runs
 * is closed by it (teardown then checks the loop closes clean). */
static void test_http_stop_with_client(void **state)
{
    struct http_fixture *f = *state;
    struct timespec settle = {.tv_nsec = 100 * 1000 * 1000};
    int fd = connect_to(f->port);

    nanosleep(&settle, NULL);
    http_teardown(state);
    char buf[16];
    assert_int_equal(recv_all(fd, buf, sizeof(buf)), 0);
    close(fd);
    /* Serve again so the group teardown has something to stop. */
    http_setup(state);
}

static void test_serve_errors(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct addr addr;

    log_init(LOG_LEVEL_ERROR, LOG_FORMAT_TEXT);
    log_set_fd(-1); /* the expected errors are logged; keep them out of the output */
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_true(metrics_server_port() < 0);
    loopback_addr(&addr, 0);
    assert_int_equal(metrics_server_start(&loop, &addr), 0);
    int port = metrics_server_port();
    assert_true(port > 0);
    assert_int_equal(metrics_server_start(&loop, &addr), UV_EALREADY);
    metrics_server_stop();
    metrics_server_stop(); /* idempotent */
    assert_true(metrics_server_port() < 0);
    uv_run(&loop, UV_RUN_DEFAULT);

    /* A port in use: the error comes back and the handle is cleaned up. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    loopback_addr(&addr, ntohs(sin.sin_port));
    assert_int_equal(metrics_server_start(&loop, &addr), UV_EADDRINUSE);
    assert_true(metrics_server_port() < 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    close(fd);
    log_set_fd(2);
}

int main(void)
{
    const struct CMUnitTest serving[] = {
        cmocka_unit_test(test_serve_errors),
    };
    const struct CMUnitTest endpoint[] = {
        cmocka_unit_test(test_http_metrics),
        cmocka_unit_test(test_http_healthz),
        cmocka_unit_test(test_http_healthz_draining),
        cmocka_unit_test(test_http_errors),
        cmocka_unit_test(test_http_split_request),
        cmocka_unit_test(test_http_garbage),
        cmocka_unit_test(test_http_silent_client),
        cmocka_unit_test(test_http_client_cap),
        cmocka_unit_test(test_http_stop_with_client),
    };
    int failed = cmocka_run_group_tests_name("serving", serving, NULL, NULL);
    failed += cmocka_run_group_tests_name("endpoint", endpoint, http_setup, http_teardown);
    return failed != 0;
}
