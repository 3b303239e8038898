/* Unit tests for proxy/core/proxyproto.c: PROXY v1/v2 headers from load
 * balancers (parsing, TLV framing, the protocol's maximum) and the ones the
 * proxy writes for backends (round trip). */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/core/proxyproto.h"

static const uint8_t SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* A v2 PROXY/TCP4 header for 192.0.2.7:40000 -> 198.51.100.1:25 followed
 * by tlv_len octets of TLVs from tlvs. Returns its length. */
static size_t v2_tcp4(uint8_t *out, const uint8_t *tlvs, size_t tlv_len)
{
    size_t len = 12 + tlv_len;

    memcpy(out, SIG, 12);
    out[12] = 0x21;
    out[13] = 0x11;
    out[14] = (uint8_t)(len >> 8);
    out[15] = (uint8_t)len;
    uint8_t *a = out + 16;
    inet_pton(AF_INET, "192.0.2.7", a);
    inet_pton(AF_INET, "198.51.100.1", a + 4);
    a[8] = 40000 >> 8, a[9] = 40000 & 0xff, a[10] = 0, a[11] = 25;
    if (tlv_len)
        memcpy(a + 12, tlvs, tlv_len);
    return 16 + len;
}

static void test_v1(void **state)
{
    static const char h[] = "PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\nEHLO x\r\n";
    struct sockaddr_storage src, dst;
    size_t used = 0;

    (void)state;
    assert_int_equal(proxyproto_parse((const uint8_t *)h, strlen(h), &used, &src, &dst),
                     PROXYPROTO_OK);
    assert_int_equal(used, strlen("PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n"));
    assert_int_equal(src.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&src)->sin_port), 40000);
    assert_int_equal(proxyproto_parse((const uint8_t *)h, 10, &used, &src, &dst),
                     PROXYPROTO_AGAIN);
    assert_int_equal(proxyproto_parse((const uint8_t *)"EHLO x\r\n", 8, &used, &src, &dst),
                     PROXYPROTO_ERR);
}

static void test_v2_tlvs(void **state)
{
    uint8_t buf[64];
    struct sockaddr_storage src, dst;
    size_t used = 0;
    /* ALPN "h2" and a NOOP TLV of length 0: well formed. */
    static const uint8_t good[] = {0x01, 0x00, 0x02, 'h', '2', 0x04, 0x00, 0x00};
    /* A TLV whose length runs past the header, and a stray octet. */
    static const uint8_t past[] = {0x01, 0x00, 0x09, 'h', '2'};
    static const uint8_t stray[] = {0x01, 0x00, 0x00, 0x04};

    (void)state;
    size_t n = v2_tcp4(buf, good, sizeof(good));
    assert_int_equal(proxyproto_parse(buf, n, &used, &src, &dst), PROXYPROTO_OK);
    assert_int_equal(used, n);
    assert_int_equal(src.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&dst)->sin_port), 25);
    n = v2_tcp4(buf, past, sizeof(past));
    assert_int_equal(proxyproto_parse(buf, n, &used, &src, &dst), PROXYPROTO_ERR);
    n = v2_tcp4(buf, stray, sizeof(stray));
    assert_int_equal(proxyproto_parse(buf, n, &used, &src, &dst), PROXYPROTO_ERR);
}

static void test_v2_largest(void **state)
{
    /* The protocol's maximum: a 65535-octet address and TLV block. */
    size_t tlv_len = 65535 - 12;
    uint8_t *tlvs = calloc(1, tlv_len), *buf = malloc(16 + 65535 + 8);
    struct sockaddr_storage src, dst;
    size_t used = 0;

    (void)state;
    assert_non_null(tlvs);
    assert_non_null(buf);
    tlvs[0] = 0xEE; /* one custom TLV filling it all */
    tlvs[1] = (uint8_t)((tlv_len - 3) >> 8);
    tlvs[2] = (uint8_t)(tlv_len - 3);
    size_t n = v2_tcp4(buf, tlvs, tlv_len);
    assert_int_equal(n, PROXYPROTO_MAX);
    assert_int_equal(proxyproto_parse(buf, n - 1, &used, &src, &dst), PROXYPROTO_AGAIN);
    assert_int_equal(proxyproto_parse(buf, n, &used, &src, &dst), PROXYPROTO_OK);
    assert_int_equal(used, PROXYPROTO_MAX);
    free(tlvs);
    free(buf);
}

static void test_round_trip(void **state)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(4711)};
    struct sockaddr_in6 b = {.sin6_family = AF_INET6, .sin6_port = htons(25)};
    uint8_t out[128];
    struct sockaddr_storage src, dst;
    size_t used = 0;

    (void)state;
    inet_pton(AF_INET6, "2001:db8::7", &a.sin6_addr);
    inet_pton(AF_INET6, "2001:db8::1", &b.sin6_addr);
    size_t n = proxyproto_v2(out, sizeof(out), (struct sockaddr *)&a, (struct sockaddr *)&b);
    assert_true(n > 16);
    assert_int_equal(proxyproto_parse(out, n, &used, &src, &dst), PROXYPROTO_OK);
    assert_int_equal(used, n);
    assert_memory_equal(&((struct sockaddr_in6 *)&src)->sin6_addr, &a.sin6_addr, 16);
    n = proxyproto_v1((char *)out, sizeof(out), (struct sockaddr *)&a, (struct sockaddr *)&b);
    assert_int_equal(proxyproto_parse(out, n, &used, &src, &dst), PROXYPROTO_OK);
    assert_int_equal(ntohs(((struct sockaddr_in6 *)&src)->sin6_port), 4711);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1),
        cmocka_unit_test(test_v2_tlvs),
        cmocka_unit_test(test_v2_largest),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
