/*
 * The /metrics and /healthz HTTP endpoint: a tiny HTTP/1.0-style server on
 * metrics_listen that answers one request per connection with the
 * registry's exposition (obs/metrics.h). Bounded in clients, head size and
 * time; runs on the main loop.
 */
#include "proxy/net/metrics_server.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/http.h"
#include "proxy/obs/log.h"
#include "proxy/obs/metrics.h"

/* HTTP endpoint limits: a request head larger than this is refused, a
 * client that has not sent one in time is closed, and no more than this
 * many clients are served at once (Prometheus needs one). */
#define HTTP_HEAD_MAX 4096
#define HTTP_READ_TIMEOUT_MS 3000
#define HTTP_WRITE_TIMEOUT_MS 10000
#define HTTP_LINGER_MS 1000
#define HTTP_CLIENTS_MAX 16
#define HTTP_BACKLOG 64

/* --- HTTP endpoint ---------------------------------------------------- */

/*
 * One HTTP client: read one request head, write one response, close.
 * Both handles are closed together and the memory is freed when the last
 * close callback has run.
 */
struct metrics_client {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    struct metrics_client *prev;
    struct metrics_client *next;
    int open_handles;
    bool responded; /* from then on input is read and dropped */
    bool closing;
    char *body;     /* owned response body, or NULL */
    char head[HTTP_HEAD_MAX];
    size_t len;
    char response_head[256];
};

/* State of the endpoint; touched only on the loop's thread. */
static uv_tcp_t *server;
static struct metrics_client *clients;
static size_t nclients;
static atomic_int server_port = -1;
/* Set when the proxy drains after SIGTERM: /healthz then answers 503 so
 * that a load balancer stops sending new connections. */
static atomic_bool draining;

static void on_server_close(uv_handle_t *h)
{
    free(h);
}

static void on_client_close(uv_handle_t *h)
{
    struct metrics_client *c = h->data;

    if (--c->open_handles > 0)
        return;
    free(c->body);
    free(c);
}

static void client_close(struct metrics_client *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    nclients--;
    uv_close((uv_handle_t *)&c->timer, on_client_close);
    uv_close((uv_handle_t *)&c->tcp, on_client_close);
}

static void on_timeout(uv_timer_t *timer)
{
    client_close(timer->data);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct metrics_client *c = req->data;

    /* After our FIN the client closes its side; its EOF ends the
     * connection in on_read, the linger timer otherwise. */
    if (status < 0)
        client_close(c);
}

static void on_write(uv_write_t *req, int status)
{
    struct metrics_client *c = req->data;

    if (status < 0 || c->closing) {
        client_close(c);
        return;
    }
    /*
     * Closing right away would reset the connection if the client sent
     * anything we have not read (a body, a pipelined request), and a reset
     * may destroy the response before the client reads it. So half-close,
     * keep reading and dropping, and close on the client's EOF.
     */
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        client_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_timeout, HTTP_LINGER_MS, 0);
}

/* Queues the response and stops treating input as a request. body is
 * either static (owned == false) or the client's to free. */
static void respond(struct metrics_client *c, int status, const char *reason,
                    const char *content_type, const char *extra_headers, char *body,
                    size_t bodylen, bool owned, bool head_only)
{
    uv_buf_t bufs[2];
    unsigned nbufs = 1;

    c->responded = true;
    if (owned)
        c->body = body;
    int n = snprintf(c->response_head, sizeof(c->response_head),
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "%s"
                     "Connection: close\r\n"
                     "\r\n",
                     status, reason, content_type, bodylen, extra_headers);
    if (n < 0 || (size_t)n >= sizeof(c->response_head)) {
        client_close(c); /* cannot happen with the fixed texts below */
        return;
    }
    bufs[0] = uv_buf_init(c->response_head, (unsigned)n);
    if (!head_only && bodylen > 0)
        bufs[nbufs++] = uv_buf_init(body, (unsigned)bodylen);

    c->write_req.data = c;
    if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, bufs, nbufs, on_write) < 0) {
        client_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_timeout, HTTP_WRITE_TIMEOUT_MS, 0);
}

static void respond_text(struct metrics_client *c, int status, const char *reason,
                         const char *extra_headers, const char *body, bool head_only)
{
    respond(c, status, reason, "text/plain; charset=utf-8", extra_headers, (char *)body,
            strlen(body), false, head_only);
}

/*
 * Answers a complete request head; which answer comes from http.h (the
 * request line only: header fields are read, to keep the connection clean,
 * and ignored).
 */
static void handle_request(struct metrics_client *c, enum http_response r, bool head_only)
{
    switch (r) {
    case HTTP_AGAIN:
        return;
    case HTTP_TOO_LARGE:
        respond_text(c, 431, "Request Header Fields Too Large", "", "request too large\n",
                     false);
        return;
    case HTTP_BAD_REQUEST:
        respond_text(c, 400, "Bad Request", "", "bad request\n", false);
        return;
    case HTTP_NOT_FOUND:
        respond_text(c, 404, "Not Found", "", "not found\n", head_only);
        return;
    case HTTP_METHOD_NOT_ALLOWED:
        respond_text(c, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n",
                     "method not allowed\n", false);
        return;
    case HTTP_HEALTH:
        if (atomic_load(&draining))
            respond_text(c, 503, "Service Unavailable", "", "draining\n", head_only);
        else
            respond_text(c, 200, "OK", "", "ok\n", head_only);
        return;
    case HTTP_METRICS:
        break;
    }

    size_t len;
    char *body = metrics_render(&len);
    if (body == NULL) {
        respond_text(c, 500, "Internal Server Error", "", "out of memory\n", head_only);
        return;
    }
    respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", "", body, len, true,
            head_only);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct metrics_client *c = h->data;

    /* Once answered, the head buffer is free to take the dropped input. */
    if (c->responded)
        *buf = uv_buf_init(c->head, sizeof(c->head));
    else
        *buf = uv_buf_init(c->head + c->len, (unsigned)(sizeof(c->head) - c->len));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct metrics_client *c = stream->data;

    if (nread == 0)
        return;
    if (nread < 0) {
        /* EOF or error: nothing more to answer, or the answer is out. */
        client_close(c);
        return;
    }
    if (c->responded)
        return;
    c->len += (size_t)nread;
    bool head_only;
    enum http_response r = http_request_parse(c->head, c->len, sizeof(c->head), &head_only);
    handle_request(c, r, head_only);
}

static void on_connection(uv_stream_t *srv, int status)
{
    struct metrics_client *c;
    int err;

    if (status < 0) {
        log_warn("metrics accept error=\"%s\"", uv_strerror(status));
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        /* Without a handle the connection cannot even be refused; it stays
         * queued and libuv retries on the next connection. */
        log_error("metrics accept error=\"out of memory\"");
        return;
    }
    err = uv_tcp_init(srv->loop, &c->tcp);
    if (err < 0) {
        free(c);
        log_error("metrics accept error=\"%s\"", uv_strerror(err));
        return;
    }
    uv_timer_init(srv->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    c->next = clients;
    if (clients != NULL)
        clients->prev = c;
    clients = c;
    nclients++;

    err = uv_accept(srv, (uv_stream_t *)&c->tcp);
    if (err < 0) {
        log_warn("metrics accept error=\"%s\"", uv_strerror(err));
        goto err;
    }
    if (nclients > HTTP_CLIENTS_MAX) {
        /* Shed load rather than queue: a scraper retries. */
        log_warn("metrics error=\"too many clients\" limit=%d", HTTP_CLIENTS_MAX);
        goto err;
    }
    err = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (err < 0)
        goto err;
    uv_timer_start(&c->timer, on_timeout, HTTP_READ_TIMEOUT_MS, 0);
    return;

err:
    client_close(c);
}

/* A new listening handle on addr in *out, and the port it got. */
static int listen_on(uv_loop_t *loop, const struct addr *addr, uv_tcp_t **out, int *port)
{
    struct sockaddr_storage bound;
    int boundlen = sizeof(bound);
    char where[300];
    uv_tcp_t *tcp;
    int err;

    tcp = malloc(sizeof(*tcp));
    if (tcp == NULL)
        return UV_ENOMEM;
    err = uv_tcp_init(loop, tcp);
    if (err < 0) {
        free(tcp); /* never initialised: no close callback to wait for */
        goto fail_init;
    }
    err = uv_tcp_bind(tcp, (const struct sockaddr *)&addr->sa, 0);
    if (err < 0)
        goto fail_listen;
    /* libuv may report a bind error only here, e.g. EADDRINUSE. */
    err = uv_listen((uv_stream_t *)tcp, HTTP_BACKLOG, on_connection);
    if (err < 0)
        goto fail_listen;
    err = uv_tcp_getsockname(tcp, (struct sockaddr *)&bound, &boundlen);
    if (err < 0)
        goto fail_listen;

    *port = ntohs(bound.ss_family == AF_INET6
                      ? ((const struct sockaddr_in6 *)&bound)->sin6_port
                      : ((const struct sockaddr_in *)&bound)->sin_port);
    *out = tcp;
    addr_format_spec(addr, (unsigned)*port, where, sizeof(where));
    log_info("metrics listen=%s", where);
    return 0;

fail_listen:
    uv_close((uv_handle_t *)tcp, on_server_close);
fail_init:
    addr_format_spec(addr, (unsigned)addr->port, where, sizeof(where));
    log_error("metrics listen=%s error=\"%s\"", where, uv_strerror(err));
    return err;
}

int metrics_server_start(uv_loop_t *loop, const struct addr *addr)
{
    uv_tcp_t *tcp;
    int port, err;

    if (server != NULL)
        return UV_EALREADY;
    if ((err = listen_on(loop, addr, &tcp, &port)) != 0)
        return err;
    server = tcp;
    atomic_store(&server_port, port);
    return 0;
}

int metrics_server_move(uv_loop_t *loop, const struct addr *addr)
{
    uv_tcp_t *tcp, *old = server;
    int port, err;

    if (old == NULL)
        return metrics_server_start(loop, addr);
    err = listen_on(loop, addr, &tcp, &port);
    if (err == UV_EADDRINUSE) {
        /* Perhaps with our own socket, the new address overlapping the old
         * one ("0.0.0.0:9925" for "127.0.0.1:9925"): uv_close() closes the
         * socket at once, so the old one can be let go first, and taken
         * back if the new address still fails. */
        struct sockaddr_storage was;
        int waslen = sizeof(was);
        if (uv_tcp_getsockname(old, (struct sockaddr *)&was, &waslen) != 0)
            return err;
        uv_close((uv_handle_t *)old, on_server_close);
        server = NULL;
        atomic_store(&server_port, -1);
        err = listen_on(loop, addr, &tcp, &port);
        if (err != 0) {
            struct addr back;
            int rc;

            memset(&back, 0, sizeof(back));
            memcpy(&back.sa, &was, sizeof(was));
            back.salen = (socklen_t)waslen;
            addr_format_ip((const struct sockaddr *)&was, back.host, sizeof(back.host));
            back.port = (unsigned short)addr_port((const struct sockaddr *)&was);
            if ((rc = listen_on(loop, &back, &tcp, &port)) == 0) {
                server = tcp;
                atomic_store(&server_port, port);
            }
            return err;
        }
        old = NULL;
    } else if (err != 0) {
        return err;
    }
    if (old != NULL)
        uv_close((uv_handle_t *)old, on_server_close);
    server = tcp;
    atomic_store(&server_port, port);
    return 0;
}

void metrics_server_set_draining(bool on)
{
    atomic_store(&draining, on);
}

int metrics_server_port(void)
{
    int port = atomic_load(&server_port);
    return port >= 0 ? port : UV_ENOTCONN;
}

void metrics_server_stop(void)
{
    if (server == NULL)
        return;
    uv_close((uv_handle_t *)server, on_server_close);
    server = NULL;
    atomic_store(&server_port, -1);
    while (clients != NULL)
        client_close(clients);
}
