/*
 * conn: the lending window (conn_lend_begin / conn_emit / conn_flush /
 * conn_lend_end) over a real TCP connection on 127.0.0.1 whose peer does
 * not read at first, so the kernel takes only part of what is written:
 * what it did not take must be a copy, since the owner reuses its input
 * once the window is closed; bytes from elsewhere keep their order.
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

static size_t cb_data(struct conn *c, const uint8_t *p, size_t n)
{
    (void)c;
    (void)p;
    return n;
}
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
    .on_data = cb_data,
    .on_eof = cb_eof,
    .on_connect = cb_connect,
    .on_tls_ready = cb_tls_ready,
    .on_tls_error = cb_tls_error,
    .on_drain = cb_drain,
    .on_close = cb_close,
};

struct pair {
    uv_loop_t loop;
    struct conn c;
    int peer; /* the other end, non-blocking, read by the test */
};

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
    assert_int_equal(uv_loop_init(&p->loop), 0);
    assert_int_equal(conn_init(&p->c, &p->loop, &cbs, p), 0);
    assert_int_equal(conn_open(&p->c, fd), 0);
}

/* Runs the loop and reads the peer until want bytes came (10 s at most). */
static uint8_t *pair_receive(struct pair *p, size_t want)
{
    uint8_t *got = malloc(want + 1);
    size_t n = 0;
    time_t end = time(NULL) + 10;

    assert_non_null(got);
    while (n < want && time(NULL) < end) {
        uv_run(&p->loop, UV_RUN_NOWAIT);
        ssize_t k = read(p->peer, got + n, want + 1 - n);
        if (k > 0)
            n += (size_t)k;
        else
            assert_true(k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    }
    assert_int_equal(n, want);
    for (int k = 0; k < 1000 && conn_backlog(&p->c) > 0; k++)
        uv_run(&p->loop, UV_RUN_NOWAIT); /* the last write's callback */
    assert_int_equal(conn_backlog(&p->c), 0);
    return got;
}

static void pair_close(struct pair *p)
{
    conn_close(&p->c);
    uv_run(&p->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&p->loop), 0);
    close(p->peer);
}

static void fill(uint8_t *b, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        b[i] = (uint8_t)(seed >> 16);
    }
}

/* Lent spans (two adjacent ones merge): the kernel takes part, the tail is
 * copied, bytes from elsewhere follow, and the input is then wiped as an
 * owner would reuse it; the peer still gets every byte, in order. */
static void test_lent_tail_is_copied(void **state)
{
    struct pair p;
    uint8_t *in = malloc(BIG), *want = malloc(BIG + 3);
    static const uint8_t extra[] = "end";

    (void)state;
    assert_non_null(in);
    assert_non_null(want);
    fill(in, BIG, 7);
    memcpy(want, in, BIG);
    memcpy(want + BIG, extra, 3);
    pair_open(&p);
    assert_true(conn_lend_begin(&p.c, in, BIG));
    assert_false(conn_lend_begin(&p.c, in, BIG)); /* one window per thread */
    conn_emit(&p.c, in, BIG / 2);
    conn_emit(&p.c, in + BIG / 2, BIG / 2);
    assert_int_equal(conn_backlog(&p.c), BIG);
    assert_int_equal(conn_flush(&p.c), 0);
    size_t left = conn_backlog(&p.c);
    assert_true(left > 0 && left < BIG); /* the kernel took some, not all */
    conn_emit(&p.c, extra, 3);
    assert_int_equal(conn_backlog(&p.c), left + 3);
    conn_lend_end(&p.c);
    memset(in, 0, BIG);
    uint8_t *got = pair_receive(&p, BIG + 3);
    assert_memory_equal(got, want, BIG + 3);
    free(got);
    pair_close(&p);
    free(in);
    free(want);
}

/* Lent bytes the kernel cannot take at all, and lent bytes never flushed
 * before the window closes: copies too. Bytes outside the window, or
 * behind copied ones, are never lent. */
static void test_unflushed_and_outside(void **state)
{
    struct pair p;
    uint8_t *in = malloc(BIG), *want = malloc(2 * BIG + 2);
    uint8_t outside[2] = {'o', 'k'};

    (void)state;
    assert_non_null(in);
    assert_non_null(want);
    fill(in, BIG, 11);
    memcpy(want, in, BIG);
    pair_open(&p);
    /* Fill the kernel's buffers first, so the next write gets nothing. */
    assert_true(conn_lend_begin(&p.c, in, BIG));
    conn_emit(&p.c, in, BIG);
    assert_int_equal(conn_flush(&p.c), 0);
    conn_lend_end(&p.c);
    fill(in, BIG, 13);
    memcpy(want + BIG, outside, 2);
    memcpy(want + BIG + 2, in, BIG);
    assert_true(conn_lend_begin(&p.c, in, BIG));
    conn_emit(&p.c, outside, 2); /* not in the window: copied */
    conn_emit(&p.c, in, BIG);    /* behind a copy: copied */
    conn_lend_end(&p.c);
    memset(in, 0, BIG);
    outside[0] = outside[1] = 0;
    uint8_t *got = pair_receive(&p, 2 * BIG + 2);
    assert_memory_equal(got, want, 2 * BIG + 2);
    free(got);
    /* A window closed before any flush: its bytes are copied as well. */
    fill(in, 4096, 17);
    memcpy(want, in, 4096);
    assert_true(conn_lend_begin(&p.c, in, 4096));
    conn_emit(&p.c, in, 1000);
    conn_emit(&p.c, in + 1000, 3096);
    conn_lend_end(&p.c);
    memset(in, 0, 4096);
    assert_int_equal(conn_backlog(&p.c), 4096);
    assert_int_equal(conn_flush(&p.c), 0);
    got = pair_receive(&p, 4096);
    assert_memory_equal(got, want, 4096);
    free(got);
    pair_close(&p);
    free(in);
    free(want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lent_tail_is_copied),
        cmocka_unit_test(test_unflushed_and_outside),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
