/*
 * conn: the lending window (conn_lend_begin / conn_emit / conn_flush /
 * conn_lend_end) between two real TCP legs on 127.0.0.1, the second one's
 * peer not reading at first, so the kernel takes only part of what is
 * written: what it did not take must be a copy, since the next read
 * refills the slab it came from.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "proxy/net/conn.h"

#define BIG (8u << 20) /* far more than loopback buffers hold unread */

static size_t relay_data(struct conn *c, const uint8_t *p, size_t n);

static void cb_eof(struct conn *c, int err)
{
    (void)c;
    fail_msg("unexpected eof/error %d", err);
}
static void cb_connect(struct conn *c, int status)
{
    (void)c;
    (void)status;
}
static void cb_tls_ready(struct conn *c)
{
    (void)c;
}
static void cb_tls_error(struct conn *c, const char *why)
{
    (void)c;
    (void)why;
}
static void cb_drain(struct conn *c)
{
    (void)c;
}
static void cb_close(struct conn *c)
{
    (void)c;
}

static const struct conn_cb cbs = {
    .on_data = relay_data,
    .on_eof = cb_eof,
    .on_connect = cb_connect,
    .on_tls_ready = cb_tls_ready,
    .on_tls_error = cb_tls_error,
    .on_drain = cb_drain,
    .on_close = cb_close,
};

struct pair {
    struct conn c;
    int peer; /* the other end, non-blocking, used by the test */
};

static uv_loop_t loop;
static struct pair src, dst; /* src's input is relayed to dst, as a session does */
static size_t relayed, lent_windows;

/* The owner's side, as session.c does it: what src delivers from its read
 * slab is emitted to dst inside a window and flushed there. */
static size_t relay_data(struct conn *c, const uint8_t *p, size_t n)
{
    static uint8_t elsewhere[4096];

    assert_ptr_equal(c, &src.c);
    assert_false(conn_lend_begin(&dst.c, elsewhere, sizeof(elsewhere))); /* not a slab */
    bool lent = conn_lend_begin(&dst.c, p, n);
    assert_true(lent);
    lent_windows++;
    assert_false(conn_lend_begin(&dst.c, p, n)); /* one window per thread */
    conn_emit(&dst.c, p, n / 2);
    conn_emit(&dst.c, p + n / 2, n - n / 2); /* the next bytes: one span */
    assert_int_equal(conn_flush(&dst.c), 0);
    conn_lend_end(&dst.c);
    relayed += n;
    return n;
}

static void pair_open(struct pair *p)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int l = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(l >= 0);
    assert_int_equal(bind(l, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&sin, &len), 0);
    p->peer = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(p->peer, (struct sockaddr *)&sin, sizeof(sin)), 0);
    int fd = accept(l, NULL, NULL);
    assert_true(fd >= 0);
    close(l);
    assert_int_equal(fcntl(p->peer, F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(conn_init(&p->c, &loop, &cbs, p), 0);
    assert_int_equal(conn_open(&p->c, fd), 0);
}

static void fill(uint8_t *b, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        b[i] = (uint8_t)(seed >> 16);
    }
}

/* BIG bytes through src to dst, whose peer reads nothing until src has
 * delivered them all: the kernel takes only part of each write, so the
 * tails must be copies, since every read refills the slab they came from.
 * The peer still gets every byte, in order. */
static void test_lent_tails_are_copies(void **state)
{
    uint8_t *in = malloc(BIG), *got = malloc(BIG + 1);
    size_t sent = 0, n = 0;
    time_t end = time(NULL) + 20;

    (void)state;
    assert_non_null(in);
    assert_non_null(got);
    fill(in, BIG, 7);
    assert_int_equal(uv_loop_init(&loop), 0);
    pair_open(&src);
    pair_open(&dst);
    conn_resume(&src.c);
    while (relayed < BIG && time(NULL) < end) {
        if (sent < BIG) {
            ssize_t k = write(src.peer, in + sent, BIG - sent);
            if (k > 0)
                sent += (size_t)k;
        }
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(relayed, BIG);
    assert_true(lent_windows > 1);
    assert_true(conn_backlog(&dst.c) > 0); /* the kernel could not take it all */
    while (n < BIG && time(NULL) < end) {
        uv_run(&loop, UV_RUN_NOWAIT);
        ssize_t k = read(dst.peer, got + n, BIG + 1 - n);
        if (k > 0)
            n += (size_t)k;
        else
            assert_true(k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    }
    assert_int_equal(n, BIG);
    assert_memory_equal(got, in, BIG);
    conn_close(&src.c);
    conn_close(&dst.c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    close(src.peer);
    close(dst.peer);
    free(in);
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lent_tails_are_copies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
