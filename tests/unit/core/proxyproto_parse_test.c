/* Unit tests for proxy/core/proxyproto.c: PROXY v1/v2 headers parsed and
 * written; the strict v1 grammar (found by proxyproto_fuzz). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/core/addr.h"
#include "proxy/core/proxyproto.h"

static int parse(const void *p, size_t n, size_t *used, struct sockaddr_storage *src,
                 struct sockaddr_storage *dst)
{
    *used = 0;
    return proxyproto_parse(p, n, used, src, dst);
}

static int parse_text(const char *text, size_t *used, struct sockaddr_storage *src,
                      struct sockaddr_storage *dst)
{
    return parse(text, strlen(text), used, src, dst);
}

static void expect_peer(const struct sockaddr_storage *ss, const char *want)
{
    char got[ADDR_STRLEN];

    assert_string_equal(addr_format((const struct sockaddr *)ss, got, sizeof(got)), want);
}

static void test_v1(void **state)
{
    struct sockaddr_storage src, dst;
    size_t used;
    const char *h = "PROXY TCP4 192.0.2.7 198.51.100.1 40512 25\r\nEHLO x\r\n";

    (void)state;
    assert_int_equal(parse_text(h, &used, &src, &dst), PROXYPROTO_OK);
    assert_int_equal(used, strlen(h) - strlen("EHLO x\r\n"));
    expect_peer(&src, "192.0.2.7:40512");
    expect_peer(&dst, "198.51.100.1:25");

    assert_int_equal(parse_text("PROXY TCP6 2001:db8::7 ::1 1 65535\r\n", &used, &src, &dst),
                     PROXYPROTO_OK);
    expect_peer(&src, "[2001:db8::7]:1");
    expect_peer(&dst, "[::1]:65535");

    /* UNKNOWN: keep the real peer; the rest of the line is ignored. */
    assert_int_equal(parse_text("PROXY UNKNOWN ff::1 whatever\r\n", &used, &src, &dst),
                     PROXYPROTO_OK);
    assert_int_equal(src.ss_family, AF_UNSPEC);
    assert_int_equal(dst.ss_family, AF_UNSPEC);

    assert_int_equal(parse_text("PROXY TCP4 192.0.2.7", &used, &src, &dst), PROXYPROTO_AGAIN);
    assert_int_equal(parse_text("PRO", &used, &src, &dst), PROXYPROTO_AGAIN);
    assert_int_equal(parse_text("EHLO x\r\n", &used, &src, &dst), PROXYPROTO_ERR);
}

/* Lines that a lenient reader accepted: the NUL one checked only the text
 * before the NUL (port "2" of "2\0 5"), the others are not the grammar. */
static void test_v1_strict(void **state)
{
    static const char nul[] = "PROXY TCP4 192.0.2.7 198.51.100.1 40512 2\0 5\r\n";
    static const char *bad[] = {
        "PROXY TCP4 192.0.2.7 198.51.100.1 40512 25 extra\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 40512 25 \r\n",
        "PROXY TCP4  192.0.2.7 198.51.100.1 40512 25\r\n",
        "PROXY  TCP4 192.0.2.7 198.51.100.1 40512 25\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 040512 25\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 65536 25\r\n",
        "PROXY TCP4 192.0.2.7\t198.51.100.1 40512 25\r\n",
        "PROXY TCP4 2001:db8::7 198.51.100.1 40512 25\r\n",
        "PROXY TCP6 192.0.2.7 198.51.100.1 40512 25\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 40512 25\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 40512\r\n",
        "PROXY UDP4 192.0.2.7 198.51.100.1 40512 25\r\n",
    };
    struct sockaddr_storage src, dst;
    size_t used;

    (void)state;
    assert_int_equal(parse(nul, sizeof(nul) - 1, &used, &src, &dst), PROXYPROTO_ERR);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse_text(bad[i], &used, &src, &dst) != PROXYPROTO_ERR)
            fail_msg("accepted: %s", bad[i]);
    }
}

static void test_v2(void **state)
{
    static const uint8_t local[16] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
                                      0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00};
    uint8_t big[16];
    struct sockaddr_storage src, dst;
    size_t used;

    (void)state;
    assert_int_equal(parse(local, sizeof(local), &used, &src, &dst), PROXYPROTO_OK);
    assert_int_equal(used, 16);
    assert_int_equal(src.ss_family, AF_UNSPEC);
    assert_int_equal(parse(local, 15, &used, &src, &dst), PROXYPROTO_AGAIN);
    assert_int_equal(parse(local, 5, &used, &src, &dst), PROXYPROTO_AGAIN);

    /* Every 16-bit length is within PROXYPROTO_MAX (16 + 65535): a long
     * header is waited for, not refused. */
    memcpy(big, local, sizeof(big));
    big[12] = 0x21;
    big[14] = 0x01;
    assert_int_equal(parse(big, sizeof(big), &used, &src, &dst), PROXYPROTO_AGAIN);
    big[14] = 0x00;
    big[12] = 0x11; /* version 1 in the binary form */
    assert_int_equal(parse(big, sizeof(big), &used, &src, &dst), PROXYPROTO_ERR);
}

static void round_trip(const char *s, const char *d)
{
    struct sockaddr_storage a, b, src, dst;
    char v1[108];
    uint8_t v2[52];
    size_t used;
    char got[ADDR_STRLEN];

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    struct sockaddr_in6 *a6 = (void *)&a, *b6 = (void *)&b;
    struct sockaddr_in *a4 = (void *)&a, *b4 = (void *)&b;
    if (inet_pton(AF_INET, s, &a4->sin_addr) == 1) {
        a4->sin_family = b4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, d, &b4->sin_addr), 1);
        a4->sin_port = htons(1);
        b4->sin_port = htons(65535);
    } else {
        assert_int_equal(inet_pton(AF_INET6, s, &a6->sin6_addr), 1);
        assert_int_equal(inet_pton(AF_INET6, d, &b6->sin6_addr), 1);
        a6->sin6_family = b6->sin6_family = AF_INET6;
        a6->sin6_port = htons(1);
        b6->sin6_port = htons(65535);
    }

    size_t n = proxyproto_v1(v1, sizeof(v1), (void *)&a, (void *)&b);
    assert_true(n > 0);
    assert_int_equal(parse(v1, n, &used, &src, &dst), PROXYPROTO_OK);
    assert_int_equal(used, n);
    assert_string_equal(addr_format((void *)&src, got, sizeof(got)),
                        addr_format((void *)&a, v1, sizeof(v1)));
    n = proxyproto_v2(v2, sizeof(v2), (void *)&a, (void *)&b);
    assert_true(n > 0);
    assert_int_equal(parse(v2, n, &used, &src, &dst), PROXYPROTO_OK);
    assert_int_equal(used, n);
    assert_memory_equal(&src, &a, sizeof(a));
    assert_memory_equal(&dst, &b, sizeof(b));
}

static void test_round_trip(void **state)
{
    (void)state;
    round_trip("192.0.2.7", "255.255.255.255");
    round_trip("0.0.0.0", "10.0.0.1");
    round_trip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::");
    round_trip("::ffff:192.0.2.1", "2001:db8::1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1),
        cmocka_unit_test(test_v1_strict),
        cmocka_unit_test(test_v2),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
