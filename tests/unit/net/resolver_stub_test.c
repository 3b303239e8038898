/* Unit tests for proxy/net/resolver_stub.c through resolver.h (dnssec =
 * "trust-ad"), against a scripted DNS server on 127.0.0.1 in the same loop:
 * UDP and TCP on one port, answering each query as its mode says. Checked:
 * AD gives secure, no AD insecure, SERVFAIL bogus; a TC answer is asked
 * again over TCP; an answer with another ID is ignored and the right one
 * taken; a cancelled lookup never calls back and the resolver still frees
 * itself; no callback from inside resolver_query. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "proxy/net/resolver.h"
#include "proxy/obs/log.h"

enum mode { M_AD, M_NO_AD, M_SERVFAIL, M_TC, M_WRONG_ID_FIRST, M_SILENT };

struct server {
    uv_udp_t udp;
    uv_tcp_t tcp;
    uv_tcp_t conn;
    bool conn_open;
    uint8_t tbuf[600];
    size_t tgot;
    enum mode mode;
    int udp_queries, tcp_queries;
    unsigned short port;
};

static struct server srv;
static uv_loop_t loop;

/* The answer to query q (n octets): one A record 127.0.0.9, ttl 300. */
static size_t answer(const uint8_t *q, size_t n, bool tc, bool ad, int rcode, uint16_t id,
                     uint8_t *out)
{
    size_t qend = 12;

    while (qend < n && q[qend] != 0)
        qend += 1 + q[qend];
    qend += 1 + 4;
    assert_true(qend <= n);
    memcpy(out, q, qend);
    out[0] = (uint8_t)(id >> 8);
    out[1] = (uint8_t)id;
    out[2] = (uint8_t)(0x81 | (tc ? 0x02 : 0));
    out[3] = (uint8_t)(0x80 | (ad ? 0x20 : 0) | rcode);
    out[6] = 0, out[7] = (tc || rcode) ? 0 : 1, out[8] = out[9] = out[10] = out[11] = 0;
    size_t len = qend;
    if (!tc && rcode == 0) {
        static const uint8_t rr[] = {0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 127, 0, 0, 9};
        memcpy(out + len, rr, sizeof rr);
        len += sizeof rr;
    }
    return len;
}

static void on_srv_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    static char buf[600];
    (void)h, (void)s;
    *b = uv_buf_init(buf, sizeof buf);
}

static void on_srv_udp(uv_udp_t *h, ssize_t n, const uv_buf_t *b, const struct sockaddr *from,
                       unsigned flags)
{
    uint8_t out[700];
    const uint8_t *q = (const uint8_t *)b->base;
    (void)flags;
    if (n <= 12 || from == NULL)
        return;
    srv.udp_queries++;
    uint16_t id = (uint16_t)(q[0] << 8 | q[1]);
    /* The query itself: RD, AD, one question, one OPT with DO. */
    assert_int_equal(q[2], 0x01);
    assert_int_equal(q[3], 0x20);
    assert_int_equal(q[11], 1);
    assert_int_equal(q[n - 11 + 7], 0x80);
    size_t len;
    switch (srv.mode) {
    case M_SILENT:
        return;
    case M_WRONG_ID_FIRST: {
        len = answer(q, (size_t)n, false, true, 0, (uint16_t)(id + 1), out);
        out[len - 1] = 66; /* were it taken, the address would be 127.0.0.66 */
        uv_buf_t ob = uv_buf_init((char *)out, (unsigned)len);
        assert_true(uv_udp_try_send(h, &ob, 1, from) > 0);
        len = answer(q, (size_t)n, false, true, 0, id, out);
        break;
    }
    default:
        len = answer(q, (size_t)n, srv.mode == M_TC, srv.mode != M_NO_AD,
                     srv.mode == M_SERVFAIL ? 2 : 0, id, out);
    }
    uv_buf_t ob = uv_buf_init((char *)out, (unsigned)len);
    assert_true(uv_udp_try_send(h, &ob, 1, from) > 0);
}

static void on_conn_closed(uv_handle_t *h)
{
    (void)h;
    srv.conn_open = false;
}

static void on_srv_written(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void on_srv_tcp_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    (void)h, (void)s;
    *b = uv_buf_init((char *)srv.tbuf + srv.tgot, (unsigned)(sizeof srv.tbuf - srv.tgot));
}

static void on_srv_tcp_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    if (n < 0) {
        uv_close((uv_handle_t *)st, on_conn_closed);
        return;
    }
    srv.tgot += (size_t)n;
    if (srv.tgot < 2 || srv.tgot < 2 + (size_t)(srv.tbuf[0] << 8 | srv.tbuf[1]))
        return;
    srv.tcp_queries++;
    const uint8_t *q = srv.tbuf + 2;
    size_t qn = (size_t)(srv.tbuf[0] << 8 | srv.tbuf[1]);
    struct {
        uv_write_t w;
        uint8_t out[700];
    } *wr = malloc(sizeof *wr);
    assert_non_null(wr);
    size_t len = answer(q, qn, false, true, 0, (uint16_t)(q[0] << 8 | q[1]), wr->out + 2);
    wr->out[0] = (uint8_t)(len >> 8);
    wr->out[1] = (uint8_t)len;
    uv_buf_t ob = uv_buf_init((char *)wr->out, (unsigned)(len + 2));
    assert_int_equal(uv_write(&wr->w, st, &ob, 1, on_srv_written), 0);
}

static void on_srv_conn(uv_stream_t *l, int status)
{
    assert_int_equal(status, 0);
    assert_false(srv.conn_open);
    uv_tcp_init(&loop, &srv.conn);
    srv.conn_open = true;
    srv.tgot = 0;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&srv.conn), 0);
    uv_read_start((uv_stream_t *)&srv.conn, on_srv_tcp_alloc, on_srv_tcp_read);
}

static void server_start(enum mode mode)
{
    struct sockaddr_in sa;
    int salen = sizeof sa;

    memset(&srv, 0, sizeof srv);
    srv.mode = mode;
    assert_int_equal(uv_loop_init(&loop), 0);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_udp_init(&loop, &srv.udp), 0);
    assert_int_equal(uv_udp_bind(&srv.udp, (struct sockaddr *)&sa, 0), 0);
    uv_udp_getsockname(&srv.udp, (struct sockaddr *)&sa, &salen);
    srv.port = ntohs(sa.sin_port);
    assert_int_equal(uv_udp_recv_start(&srv.udp, on_srv_alloc, on_srv_udp), 0);
    assert_int_equal(uv_tcp_init(&loop, &srv.tcp), 0);
    assert_int_equal(uv_tcp_bind(&srv.tcp, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&srv.tcp, 4, on_srv_conn), 0);
}

static void server_stop(void)
{
    uv_close((uv_handle_t *)&srv.udp, NULL);
    uv_close((uv_handle_t *)&srv.tcp, NULL);
    if (srv.conn_open && !uv_is_closing((uv_handle_t *)&srv.conn))
        uv_close((uv_handle_t *)&srv.conn, on_conn_closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static struct resolver *new_resolver(void)
{
    struct resolver_options o = {.nservers = 1, .dnssec = RESOLVER_DNSSEC_TRUST_AD};
    struct sockaddr_in *sin = (struct sockaddr_in *)&o.servers[0].sa;
    char err[200];

    sin->sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &sin->sin_addr);
    o.servers[0].salen = sizeof *sin;
    o.servers[0].port = srv.port;
    struct resolver *r = resolver_new(&loop, &o, err, sizeof err);
    assert_non_null(r);
    return r;
}

struct got {
    int calls;
    bool in_query;
    struct resolver_result res;
    uint8_t a[4];
};

static bool in_query;

static void on_result(struct resolver_query *q, const struct resolver_result *res)
{
    struct got *g = q->data;

    g->calls++;
    g->in_query = in_query;
    g->res = *res;
    if (res->count > 0 && res->len[0] == 4)
        memcpy(g->a, res->data[0], 4);
    g->res.data = NULL;
    g->res.len = NULL;
}

/* One lookup of host.example A against the server in mode. */
static void lookup(enum mode mode, struct got *g)
{
    struct resolver_query q = {.data = g};

    server_start(mode);
    struct resolver *r = new_resolver();
    in_query = true;
    assert_int_equal(resolver_query(r, &q, "host.example", RESOLVER_TYPE_A, on_result), 0);
    in_query = false;
    assert_int_equal(g->calls, 0);
    resolver_close(r); /* frees itself once the lookup has called back */
    uint64_t t0 = uv_now(&loop);
    while (g->calls == 0 && uv_now(&loop) - t0 < 15000)
        uv_run(&loop, UV_RUN_ONCE);
    server_stop();
    assert_int_equal(g->calls, 1);
    assert_false(g->in_query);
    if (g->res.err != 0)
        print_error("lookup failed: %s\n", g->res.errstr);
}

static void test_ad_is_secure(void **state)
{
    struct got g = {0};
    (void)state;
    lookup(M_AD, &g);
    assert_int_equal(g.res.err, 0);
    assert_int_equal(g.res.rcode, 0);
    assert_int_equal(g.res.security, RESOLVER_SECURE);
    assert_int_equal(g.res.count, 1);
    assert_memory_equal(g.a, "\x7f\x00\x00\x09", 4);
    assert_int_equal(g.res.ttl, 300);
    assert_int_equal(srv.udp_queries, 1);
    assert_int_equal(srv.tcp_queries, 0);
}

static void test_no_ad_is_insecure(void **state)
{
    struct got g = {0};
    (void)state;
    lookup(M_NO_AD, &g);
    assert_int_equal(g.res.err, 0);
    assert_int_equal(g.res.security, RESOLVER_INSECURE);
    assert_int_equal(g.res.count, 1);
}

static void test_servfail_is_bogus(void **state)
{
    struct got g = {0};
    (void)state;
    lookup(M_SERVFAIL, &g);
    assert_int_equal(g.res.err, 0);
    assert_int_equal(g.res.rcode, RESOLVER_RCODE_SERVFAIL);
    assert_int_equal(g.res.security, RESOLVER_BOGUS);
    assert_int_equal(g.res.count, 0);
}

static void test_tc_goes_to_tcp(void **state)
{
    struct got g = {0};
    (void)state;
    lookup(M_TC, &g);
    assert_int_equal(g.res.err, 0);
    assert_int_equal(g.res.security, RESOLVER_SECURE);
    assert_int_equal(g.res.count, 1);
    assert_memory_equal(g.a, "\x7f\x00\x00\x09", 4);
    assert_int_equal(srv.udp_queries, 1);
    assert_int_equal(srv.tcp_queries, 1);
}

static void test_wrong_id_is_ignored(void **state)
{
    struct got g = {0};
    (void)state;
    lookup(M_WRONG_ID_FIRST, &g);
    assert_int_equal(g.res.err, 0);
    assert_int_equal(g.res.count, 1);
    assert_memory_equal(g.a, "\x7f\x00\x00\x09", 4);
}

static void test_cancel_never_calls_back(void **state)
{
    struct got g = {0};
    struct resolver_query q = {.data = &g};
    (void)state;

    server_start(M_SILENT);
    struct resolver *r = new_resolver();
    assert_int_equal(resolver_query(r, &q, "host.example", RESOLVER_TYPE_A, on_result), 0);
    assert_true(resolver_active(&q));
    uv_run(&loop, UV_RUN_NOWAIT); /* the datagram leaves */
    assert_true(resolver_cancel(&q));
    assert_false(resolver_cancel(&q));
    resolver_close(r);
    uint64_t t0 = uv_hrtime();
    server_stop();
    assert_int_equal(g.calls, 0);
    assert_true(uv_hrtime() - t0 < 1000000000u); /* no timer was left behind */
}

static void test_bad_name_and_closing_are_refused_at_once(void **state)
{
    struct got g = {0};
    struct resolver_query q = {.data = &g}, q2 = {.data = &g};
    (void)state;

    server_start(M_SILENT);
    struct resolver *r = new_resolver();
    assert_int_equal(resolver_query(r, &q2, "a..b", RESOLVER_TYPE_A, on_result), UV_EINVAL);
    assert_false(resolver_active(&q2));
    assert_int_equal(resolver_query(r, &q, "x.example", RESOLVER_TYPE_A, on_result), 0);
    resolver_close(r); /* waits for q */
    assert_int_equal(resolver_query(r, &q2, "x.example", RESOLVER_TYPE_A, on_result), UV_ESHUTDOWN);
    assert_true(resolver_cancel(&q)); /* the last one: r frees itself */
    server_stop();
    assert_int_equal(g.calls, 0);
}

int main(void)
{
    log_init(LOG_LEVEL_DEBUG, LOG_FORMAT_TEXT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ad_is_secure),
        cmocka_unit_test(test_no_ad_is_insecure),
        cmocka_unit_test(test_servfail_is_bogus),
        cmocka_unit_test(test_tc_goes_to_tcp),
        cmocka_unit_test(test_wrong_id_is_ignored),
        cmocka_unit_test(test_cancel_never_calls_back),
        cmocka_unit_test(test_bad_name_and_closing_are_refused_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
