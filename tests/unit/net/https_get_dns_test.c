/*
 * Tests of proxy/net/https_get.c through the resolver (proxy/net/resolver,
 * libunbound with validation off) against a scripted DNS server: a thread
 * answering UDP queries on 127.0.0.1 from a table (A records, NXDOMAIN,
 * SERVFAIL, no data, silence). Covers the name's failures, the addresses
 * tried in turn, the lookup's deadline and a cancel while it is out. The
 * TLS server is https_get_fixture.c.h's.
 */
#include "tests/unit/net/https_get_fixture.c.h"

#include <strings.h>

/* --- the scripted DNS server --------------------------------------------- */

struct zone_entry {
    const char *name;
    int rcode; /* 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN; -1: never answer */
    const char *a[4]; /* A records (AAAA queries get none) */
};

/* Not under .test: libunbound answers NXDOMAIN for it itself (a default
 * local zone, RFC 6761 §6.2), so these names never reach a server. */
static const struct zone_entry zone[] = {
    /* 127.0.0.2 and .3 have no listener: refused, then the next address. */
    {"mx.example", 0, {"127.0.0.2", "127.0.0.3", "127.0.0.1"}},
    {"refused.example", 0, {"127.0.0.2", "127.0.0.3"}},
    {"nodata.example", 0, {NULL}},
    {"fail.example", 2, {NULL}},
    {"silent.example", -1, {NULL}},
};

struct dns_server {
    int fd;
    uint16_t port;
    pthread_t th;
    volatile bool stop;
};

/* The question's name (dotted, no trailing dot) and where it ends. */
static size_t qname(const uint8_t *q, size_t n, char *out, size_t outlen)
{
    size_t i = 12, o = 0;

    while (i < n && q[i] != 0) {
        size_t l = q[i++];
        if (l > 63 || i + l > n || o + l + 1 >= outlen)
            return 0;
        if (o > 0)
            out[o++] = '.';
        memcpy(out + o, q + i, l);
        o += l;
        i += l;
    }
    out[o] = '\0';
    return i < n ? i + 1 : 0;
}

static void answer(struct dns_server *ds, const uint8_t *q, size_t n, struct sockaddr_in *from)
{
    char name[256];
    size_t qend = qname(q, n, name, sizeof(name));
    if (qend == 0 || qend + 4 > n)
        return;
    unsigned qtype = (unsigned)(q[qend] << 8 | q[qend + 1]);
    qend += 4;

    const struct zone_entry *e = NULL;
    for (size_t i = 0; i < sizeof(zone) / sizeof(zone[0]); i++)
        if (strcasecmp(zone[i].name, name) == 0)
            e = &zone[i];
    int rcode = e != NULL ? e->rcode : 3;
    if (rcode < 0)
        return;

    uint8_t r[512];
    size_t len = 0, an = 0;
    memcpy(r, q, qend); /* header and question */
    r[2] = (uint8_t)(0x80 | (q[2] & 0x01)); /* QR, RD as asked */
    r[3] = (uint8_t)(0x80 | rcode); /* RA */
    r[6] = r[7] = r[8] = r[9] = r[10] = r[11] = 0;
    len = qend;
    for (size_t i = 0; rcode == 0 && qtype == 1 && i < 4 && e->a[i] != NULL; i++) {
        static const uint8_t rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4};
        memcpy(r + len, rr, sizeof(rr));
        len += sizeof(rr);
        inet_pton(AF_INET, e->a[i], r + len);
        len += 4;
        an++;
    }
    r[7] = (uint8_t)an;
    sendto(ds->fd, r, len, 0, (struct sockaddr *)from, sizeof(*from));
}

static void *dns_serve(void *arg)
{
    struct dns_server *ds = arg;

    while (!ds->stop) {
        struct pollfd pfd = {.fd = ds->fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) != 1)
            continue;
        uint8_t q[512];
        struct sockaddr_in from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(ds->fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
        if (n >= 12)
            answer(ds, q, (size_t)n, &from);
    }
    return NULL;
}

static struct dns_server dns;
static struct resolver *resolver;
static uv_loop_t loop;

static int dns_setup(void **state)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    struct resolver_options ro;
    char err[256] = "";

    setup(state);
    dns.fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(dns.fd >= 0);
    assert_int_equal(bind(dns.fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(dns.fd, (struct sockaddr *)&sin, &len), 0);
    dns.port = ntohs(sin.sin_port);
    assert_int_equal(pthread_create(&dns.th, NULL, dns_serve, &dns), 0);

    memset(&ro, 0, sizeof(ro));
    ro.dnssec = RESOLVER_DNSSEC_OFF;
    memcpy(&ro.servers[0].sa, &sin, sizeof(sin));
    ro.servers[0].salen = sizeof(sin);
    ro.servers[0].port = dns.port;
    snprintf(ro.servers[0].host, sizeof(ro.servers[0].host), "127.0.0.1");
    ro.nservers = 1;
    assert_int_equal(uv_loop_init(&loop), 0);
    resolver = resolver_new(&loop, &ro, err, sizeof(err));
    if (resolver == NULL)
        fail_msg("resolver: %s", err);
    return 0;
}

static int dns_teardown(void **state)
{
    resolver_close(resolver);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    dns.stop = true;
    pthread_join(dns.th, NULL);
    close(dns.fd);
    return teardown(state);
}

/* Fetches https://host:port PATH through the resolver; the loop (shared
 * with the resolver) runs until the callback. */
static void fetch_name(const char *host, uint16_t port, const struct https_get_limits *lim)
{
    struct https_get g = {.data = &got};

    memset(&got, 0, sizeof(got));
    cb_loop = &loop;
    uv_update_time(&loop);
    t0 = uv_now(&loop);
    assert_int_equal(
        https_get_start(&g, &loop, resolver, client, host, port, PATH, NULL, lim, on_done), 0);
    while (got.calls == 0 && uv_run(&loop, UV_RUN_ONCE) != 0)
        ;
    assert_int_equal(got.calls, 1);
}

static void expect_name(const char *host, enum https_get_status want, const char *why)
{
    struct https_get_limits lim = test_limits();

    fetch_name(host, 443, &lim);
    if (got.status != want || strstr(got.why, why) == NULL)
        fail_msg("%s: %s (%s), expected %s (%s)", host, https_get_status_str(got.status), got.why,
                 https_get_status_str(want), why);
}

/* --- cases --------------------------------------------------------------- */

/* Addresses that refuse, then the server. Its certificate is for mx.test,
 * not mx.example (.test names never leave libunbound), so a fetch ends at
 * the certificate: which proves an address after a refusing one was
 * reached, over TLS, with the name looked up as SNI. libunbound hands out
 * the RRset in a random order (rrset-roundrobin), so a client that gave up
 * after the first refusal would pass one round in three: four rounds. */
static void test_addresses_in_turn(void **state)
{
    (void)state;
    struct script s = {.response = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"};
    struct https_get_limits lim = test_limits();
    struct server sv;

    for (int round = 0; round < 4; round++) {
        server_start(&sv, &s);
        fetch_name("mx.example", sv.port, &lim);
        server_stop(&sv);
        if (got.status != HTTPS_GET_CERTIFICATE)
            fail_msg("round %d: %s: %s", round, https_get_status_str(got.status), got.why);
        assert_false(sv.handshake_ok);
    }
}

/* "localhost" from /etc/hosts (libunbound reads it, as getaddrinfo would):
 * a success through the resolver, and Host names the URL's port. */
static void test_hosts_file(void **state)
{
    (void)state;
    struct script s = {.response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                   "Content-Length: 67\r\n\r\n" POLICY};
    struct https_get_limits lim = test_limits();
    struct server sv;
    char host[64];

    server_start(&sv, &s);
    fetch_name("localhost", sv.port, &lim);
    server_stop(&sv);
    if (got.status != HTTPS_GET_OK)
        fail_msg("%s: %s", https_get_status_str(got.status), got.why);
    assert_string_equal(got.body, POLICY);
    snprintf(host, sizeof(host), "Host: localhost:%u\r\n", (unsigned)sv.port);
    assert_non_null(strstr(sv.request, host));
}

static void test_name_failures(void **state)
{
    (void)state;
    expect_name("nx.example", HTTPS_GET_DNS, "NXDOMAIN");
    expect_name("nodata.example", HTTPS_GET_DNS, "no address");
    expect_name("fail.example", HTTPS_GET_DNS, "SERVFAIL");
    /* Every address refuses: the last one's error is the message. */
    expect_name("refused.example", HTTPS_GET_CONNECT, "connection refused");
    assert_non_null(strstr(got.why, "connect 127.0.0."));
}

/* A name server that never answers: the connect limit covers the lookup. */
static void test_lookup_timeout(void **state)
{
    (void)state;
    struct https_get_limits lim = test_limits();

    lim.connect_ms = 300;
    fetch_name("silent.example", 443, &lim);
    assert_int_equal(got.status, HTTPS_GET_TIMEOUT);
    assert_string_equal(got.why, "name lookup timed out");
    assert_true(got.ms >= 290 && got.ms < 5000);
}

static bool cancelled;

static void on_cancel_timer(uv_timer_t *t)
{
    https_get_cancel(t->data);
    cancelled = true;
    uv_close((uv_handle_t *)t, NULL);
}

/* Cancelled while both lookups are out: no callback, and the resolver is
 * left with nothing outstanding (teardown's uv_loop_close() fails unless
 * it has freed itself). The struct is reusable at once. */
static void test_cancel_during_lookup(void **state)
{
    (void)state;
    struct https_get g = {.data = &got};
    uv_timer_t timer;

    memset(&got, 0, sizeof(got));
    cb_loop = &loop;
    assert_int_equal(https_get_start(&g, &loop, resolver, client, "silent.example", 443, PATH, NULL,
                                     NULL, on_done),
                     0);
    uv_timer_init(&loop, &timer);
    timer.data = &g;
    uv_timer_start(&timer, on_cancel_timer, 100, 0);
    while (!cancelled)
        uv_run(&loop, UV_RUN_ONCE);
    assert_false(https_get_active(&g));
    assert_int_equal(
        https_get_start(&g, &loop, resolver, client, "nx.example", 443, PATH, NULL, NULL, on_done),
        0);
    while (got.calls == 0 && uv_run(&loop, UV_RUN_ONCE) != 0)
        ;
    assert_int_equal(got.calls, 1);
    assert_int_equal(got.status, HTTPS_GET_DNS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses_in_turn),    cmocka_unit_test(test_hosts_file),
        cmocka_unit_test(test_name_failures),        cmocka_unit_test(test_lookup_timeout),
        cmocka_unit_test(test_cancel_during_lookup),
    };
    return cmocka_run_group_tests(tests, dns_setup, dns_teardown);
}
