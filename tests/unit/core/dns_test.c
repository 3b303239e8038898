/* Unit tests for proxy/core/dns.c: the trust-ad stub's query (RD, AD, EDNS0
 * DO and size) and its strict response parser against hostile answers
 * (pointer loops and forward pointers, truncated RRs, a question that is
 * not ours, huge counts, CNAME chains and loops, trailing bytes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/core/dns.h"

/* A response under construction. */
struct msg {
    uint8_t b[DNS_MAX_MSG];
    size_t n;
};

static void put(struct msg *m, const void *p, size_t n)
{
    assert_true(m->n + n <= sizeof m->b);
    memcpy(m->b + m->n, p, n);
    m->n += n;
}

static void put16(struct msg *m, unsigned v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(m, b, 2);
}

static void put32(struct msg *m, uint32_t v)
{
    put16(m, v >> 16);
    put16(m, v & 0xffff);
}

static void name(struct msg *m, const char *s)
{
    uint8_t w[DNS_MAX_NAME];
    size_t n = dns_name_encode(w, s);
    assert_true(n > 0);
    put(m, w, n);
}

/* Header (id 0x1234, QR, RD, RA, flags3 extra) and the question. */
static void start(struct msg *m, uint8_t flags2, uint8_t flags3, unsigned an, unsigned ns,
                  unsigned ar, const char *qname, unsigned qtype)
{
    m->n = 0;
    put16(m, 0x1234);
    uint8_t f[2] = {(uint8_t)(0x81 | flags2), (uint8_t)(0x80 | flags3)};
    put(m, f, 2);
    put16(m, 1);
    put16(m, an);
    put16(m, ns);
    put16(m, ar);
    name(m, qname);
    put16(m, qtype);
    put16(m, 1);
}

/* An RR whose owner is a pointer to the question name (offset 12). */
static void rr_ptr(struct msg *m, unsigned type, uint32_t ttl, const void *rd, size_t rdlen)
{
    put16(m, 0xC00C);
    put16(m, type);
    put16(m, 1);
    put32(m, ttl);
    put16(m, (unsigned)rdlen);
    put(m, rd, rdlen);
}

static struct dns_answer *answer(void)
{
    struct dns_answer *a = malloc(sizeof *a);
    assert_non_null(a);
    return a;
}

static void test_query(void **state)
{
    uint8_t q[DNS_MAX_QUERY];
    (void)state;
    int n = dns_query_build(q, sizeof q, 0xBEEF, "MX.Example.COM.", 52);
    assert_int_equal(n, 12 + 16 + 4 + 11);
    static const uint8_t want[] = {0xBE, 0xEF, 0x01, 0x20, 0,   1,   0,    0,   0,   0,   0,
                                   1,    2,    'm',  'x',  7,   'e', 'x',  'a', 'm', 'p', 'l',
                                   'e',  3,    'c',  'o',  'm', 0,   0,    52,  0,   1,   0,
                                   0,    41,   0x04, 0xD0, 0,   0,   0x80, 0,   0,   0};
    assert_int_equal(sizeof want, (size_t)n);
    assert_memory_equal(q, want, sizeof want);
    assert_int_equal(dns_query_build(q, (size_t)n - 1, 1, "mx.example.com", 1), DNS_ERR_SPACE);
}

static void test_names(void **state)
{
    uint8_t w[DNS_MAX_NAME];
    char big[300];
    (void)state;
    assert_int_equal(dns_name_encode(w, "."), 1);
    assert_int_equal(dns_name_encode(w, ""), 0);
    assert_int_equal(dns_name_encode(w, "a..b"), 0);
    assert_int_equal(dns_name_encode(w, ".a"), 0);
    assert_int_equal(dns_name_encode(w, "a b"), 0);
    assert_int_equal(dns_name_encode(w, "a\\.b"), 0);
    assert_int_equal(dns_name_encode(w, "_25._tcp.mx"), 13);
    memset(big, 'a', 64);
    big[64] = '\0';
    assert_int_equal(dns_name_encode(w, big), 0); /* a 64-octet label */
    big[63] = '\0';
    assert_int_equal(dns_name_encode(w, big), 65);
    /* 4 labels of 63 = 4 * 64 + 1 = 257 octets: too long; 253 characters fit. */
    for (int i = 0; i < 4; i++) {
        memset(big + i * 64, 'b', 63);
        big[i * 64 + 63] = '.';
    }
    big[255] = '\0';
    assert_int_equal(dns_name_encode(w, big), 0);
    big[253] = '\0';
    assert_int_equal(dns_name_encode(w, big), 255);
}

static void test_a_secure(void **state)
{
    struct msg m;
    struct dns_answer *a = answer();
    (void)state;
    start(&m, 0, 0x20, 2, 0, 0, "Host.Example", 1);
    rr_ptr(&m, 1, 300, "\x7f\x00\x00\x01", 4);
    rr_ptr(&m, 1, 60, "\x7f\x00\x00\x02", 4);
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1234, "host.example.", 1, a), DNS_OK);
    assert_true(a->ad);
    assert_int_equal(a->rcode, 0);
    assert_int_equal(a->count, 2);
    assert_int_equal(a->len[1], 4);
    assert_memory_equal(a->data[1], "\x7f\x00\x00\x02", 4);
    assert_int_equal(a->ttl, 60);
    /* Without AD: insecure; another ID, another name or type: not ours. */
    m.b[3] &= (uint8_t)~0x20;
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1234, "host.example", 1, a), DNS_OK);
    assert_false(a->ad);
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1235, "host.example", 1, a), DNS_ERR_NOT_OURS);
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1234, "host.example.net", 1, a),
                     DNS_ERR_NOT_OURS);
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1234, "host.example", 28, a), DNS_ERR_NOT_OURS);
    /* A query (QR clear) is no answer. */
    m.b[2] &= 0x7f;
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1234, "host.example", 1, a), DNS_ERR_NOT_OURS);
    free(a);
}

static void test_rcodes_and_tc(void **state)
{
    struct msg m;
    struct dns_answer *a = answer();
    (void)state;
    start(&m, 0, 2, 0, 0, 0, "x.example", 52);
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1234, "x.example", 52, a), DNS_OK);
    assert_int_equal(a->rcode, DNS_RCODE_SERVFAIL);
    assert_int_equal(a->count, 0);
    assert_int_equal(a->ttl, 0);
    start(&m, 0, 0x23, 0, 0, 0, "x.example", 52);
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1234, "x.example", 52, a), DNS_OK);
    assert_int_equal(a->rcode, DNS_RCODE_NXDOMAIN);
    assert_true(a->ad);
    /* TC: ask over TCP, whatever follows (here: a count with nothing). */
    start(&m, 0x02, 0, 5, 0, 0, "x.example", 52);
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1234, "x.example", 52, a), DNS_TRUNCATED);
    free(a);
}

static void test_cname_chain(void **state)
{
    struct msg m;
    struct dns_answer *a = answer();
    (void)state;
    /* a.example CNAME b.example (ttl 30); b.example A; c.example A (ignored). */
    start(&m, 0, 0x20, 3, 0, 0, "a.example", 1);
    size_t bname = m.n + 12;
    rr_ptr(&m, 5, 30,
           "\x01"
           "b\x07"
           "example\x00",
           11);
    put16(&m, 0xC000 | (unsigned)bname);
    put16(&m, 1);
    put16(&m, 1);
    put32(&m, 100);
    put16(&m, 4);
    put(&m, "\x0a\x00\x00\x01", 4);
    name(&m, "c.example");
    put16(&m, 1);
    put16(&m, 1);
    put32(&m, 100);
    put16(&m, 4);
    put(&m, "\x0a\x00\x00\x02", 4);
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1234, "a.example", 1, a), DNS_OK);
    assert_int_equal(a->count, 1);
    assert_memory_equal(a->data[0], "\x0a\x00\x00\x01", 4);
    assert_int_equal(a->ttl, 30);
    free(a);
}

static void test_cname_loop(void **state)
{
    struct msg m;
    struct dns_answer *a = answer();
    (void)state;
    /* a CNAME a: the chain never ends. */
    start(&m, 0, 0, 1, 0, 0, "a.example", 1);
    uint8_t rd[2] = {0xC0, 0x0C};
    rr_ptr(&m, 5, 30, rd, 2);
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1234, "a.example", 1, a), DNS_ERR_TOO_MANY);
    free(a);
}

static void test_mx_decompressed(void **state)
{
    struct msg m;
    struct dns_answer *a = answer();
    (void)state;
    start(&m, 0, 0, 1, 0, 0, "example", 15);
    uint8_t rd[] = {0, 10, 2, 'm', 'x', 0xC0, 0x0C};
    rr_ptr(&m, 15, 30, rd, sizeof rd);
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1234, "example", 15, a), DNS_OK);
    assert_int_equal(a->count, 1);
    assert_int_equal(a->len[0], 2 + 12);
    assert_memory_equal(a->data[0],
                        "\x00\x0a\x02mx\x07"
                        "example\x00",
                        14);
    /* An MX whose name runs past its RDATA is malformed. */
    m.b[m.n - sizeof rd - 1] = 6;
    assert_int_equal(dns_response_parse(m.b, m.n - 1, 0x1234, "example", 15, a), DNS_ERR_MALFORMED);
    free(a);
}

static void test_pointer_loop_and_forward(void **state)
{
    struct msg m;
    struct dns_answer *a = answer();
    (void)state;
    /* An owner that points at itself. */
    start(&m, 0, 0, 1, 0, 0, "a.example", 1);
    size_t self = m.n;
    put16(&m, 0xC000 | (unsigned)self);
    put16(&m, 1);
    put16(&m, 1);
    put32(&m, 1);
    put16(&m, 4);
    put(&m, "\x01\x02\x03\x04", 4);
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1234, "a.example", 1, a), DNS_ERR_MALFORMED);
    /* Two pointers pointing at each other: 'x' then a pointer to the second. */
    start(&m, 0, 0, 2, 0, 0, "a.example", 1);
    size_t p1 = m.n;
    put(&m, "\x01x", 2);
    put16(&m, 0xC000 | (unsigned)(p1 + 14)); /* forward: to the next owner */
    put16(&m, 1);
    put16(&m, 1);
    put32(&m, 1);
    put16(&m, 0);
    put16(&m, 0xC000 | (unsigned)p1);
    put16(&m, 1);
    put16(&m, 1);
    put32(&m, 1);
    put16(&m, 0);
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1234, "a.example", 1, a), DNS_ERR_MALFORMED);
    /* A pointer into the header. */
    start(&m, 0, 0, 1, 0, 0, "a.example", 1);
    put16(&m, 0xC002);
    put16(&m, 1);
    put16(&m, 1);
    put32(&m, 1);
    put16(&m, 0);
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1234, "a.example", 1, a), DNS_ERR_MALFORMED);
    free(a);
}

static void test_truncated_and_counts(void **state)
{
    struct msg m;
    struct dns_answer *a = answer();
    (void)state;
    start(&m, 0, 0, 1, 0, 0, "a.example", 1);
    rr_ptr(&m, 1, 300, "\x7f\x00\x00\x01", 4);
    for (size_t cut = 0; cut < m.n; cut++)
        assert_true(dns_response_parse(m.b, cut, 0x1234, "a.example", 1, a) < 0);
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1234, "a.example", 1, a), DNS_OK);
    /* Trailing octets after the last RR. */
    m.b[m.n] = 0;
    assert_int_equal(dns_response_parse(m.b, m.n + 1, 0x1234, "a.example", 1, a),
                     DNS_ERR_MALFORMED);
    /* Huge counts with one RR. */
    m.b[6] = m.b[7] = m.b[8] = m.b[9] = m.b[10] = m.b[11] = 0xff;
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1234, "a.example", 1, a), DNS_ERR_MALFORMED);
    /* No question, two questions. */
    m.b[6] = m.b[8] = m.b[10] = 0;
    m.b[7] = 1, m.b[9] = m.b[11] = 0;
    m.b[5] = 0;
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1234, "a.example", 1, a), DNS_ERR_NOT_OURS);
    m.b[5] = 2;
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1234, "a.example", 1, a), DNS_ERR_NOT_OURS);
    /* An A of 5 octets. */
    start(&m, 0, 0, 1, 0, 0, "a.example", 1);
    rr_ptr(&m, 1, 300, "\x7f\x00\x00\x01\x00", 5);
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1234, "a.example", 1, a), DNS_ERR_MALFORMED);
    free(a);
}

static void test_too_many(void **state)
{
    struct msg m;
    struct dns_answer *a = answer();
    (void)state;
    start(&m, 0, 0, DNS_MAX_RECORDS + 1, 0, 0, "a.example", 16);
    for (int i = 0; i < DNS_MAX_RECORDS + 1; i++)
        rr_ptr(&m, 16, 300, "\x02hi", 3);
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1234, "a.example", 16, a), DNS_ERR_TOO_MANY);
    m.b[7] = DNS_MAX_RECORDS;
    assert_int_equal(dns_response_parse(m.b, m.n - 15, 0x1234, "a.example", 16, a), DNS_OK);
    assert_int_equal(a->count, DNS_MAX_RECORDS);
    free(a);
}

static void test_sections_and_ttl(void **state)
{
    struct msg m;
    struct dns_answer *a = answer();
    (void)state;
    /* An authority SOA and an additional OPT are framed, not kept; a TTL
     * with the top bit set counts as 0 (RFC 2181 §8). */
    start(&m, 0, 0x20, 1, 1, 1, "a.example", 52);
    rr_ptr(&m, 52, 0x80000000u, "\x03\x01\x01\xaa", 4);
    rr_ptr(&m, 6, 300,
           "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
           "\x00\x00\x00\x00\x00\x00",
           22);
    put(&m, "\x00\x00\x29\x04\xd0\x00\x00\x80\x00\x00\x00", 11);
    assert_int_equal(dns_response_parse(m.b, m.n, 0x1234, "a.example", 52, a), DNS_OK);
    assert_int_equal(a->count, 1);
    assert_int_equal(a->ttl, 0);
    free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_a_secure),
        cmocka_unit_test(test_rcodes_and_tc),
        cmocka_unit_test(test_cname_chain),
        cmocka_unit_test(test_cname_loop),
        cmocka_unit_test(test_mx_decompressed),
        cmocka_unit_test(test_pointer_loop_and_forward),
        cmocka_unit_test(test_truncated_and_counts),
        cmocka_unit_test(test_too_many),
        cmocka_unit_test(test_sections_and_ttl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
