/*
 * Fuzz target for proxy/core/proxyproto.c. The whole input is a header as a
 * load balancer (or an attacker in front of it) would send it; its first 37
 * bytes are also read as a pair of addresses to write and read back.
 * proxyproto_parse sees exactly sized heap copies, so a read past n shows
 * under ASan. Invariants (abort on violation):
 *   - the status is OK, AGAIN or ERR; on OK 0 < *used <= n, and *used is
 *     what the format says: the line up to CRLF (at most 107 octets) for
 *     v1, 16 + the length field for v2;
 *   - every strict prefix of an accepted header is AGAIN, and every longer
 *     input accepts the same header (the reader may stop at any byte);
 *   - addresses: both AF_UNSPEC, or both AF_INET / both AF_INET6, and a v1
 *     TCP4/TCP6 line is exactly "PROXY TCP4 src dst sport dport\r\n" with
 *     single spaces and ports without leading zeros;
 *   - what proxyproto_v1 / proxyproto_v2 write for the parsed addresses (and
 *     for arbitrary ones) parses back to the same addresses and length.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/proxyproto.h"
#include "tests/fuzz/fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t v2sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

struct result {
    int rc;
    size_t used;
    struct sockaddr_storage src, dst;
};

/* Parses p[0..n) from an exactly sized copy. */
static struct result parse(const uint8_t *p, size_t n)
{
    struct result r;
    uint8_t *copy = malloc(n ? n : 1);

    CHECK(copy != NULL);
    if (n)
        memcpy(copy, p, n);
    memset(&r, 0xA5, sizeof(r)); /* garbage the parser must overwrite */
    r.used = (size_t)-1;
    r.rc = proxyproto_parse(copy, n, &r.used, &r.src, &r.dst);
    free(copy);
    CHECK(r.rc == PROXYPROTO_OK || r.rc == PROXYPROTO_AGAIN || r.rc == PROXYPROTO_ERR);
    return r;
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port &&
               memcmp(&x->sin_addr, &y->sin_addr, sizeof(x->sin_addr)) == 0;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return a->ss_family == AF_UNSPEC;
}

/* Both addresses of an accepted header are of one known family. */
static void check_families(const struct result *r)
{
    int f = r->src.ss_family;

    CHECK(f == AF_UNSPEC || f == AF_INET || f == AF_INET6);
    CHECK(r->dst.ss_family == f);
}

/* Writes src -> dst both ways and reads the headers back. */
static void check_round_trip(const struct sockaddr_storage *src,
                             const struct sockaddr_storage *dst)
{
    char v1[108];
    uint8_t v2[52];
    bool known = src->ss_family == dst->ss_family &&
                 (src->ss_family == AF_INET || src->ss_family == AF_INET6);

    size_t n1 = proxyproto_v1(v1, sizeof(v1), (const void *)src, (const void *)dst);
    CHECK(n1 > 0 && n1 <= 107);
    struct result r = parse((const uint8_t *)v1, n1);
    CHECK(r.rc == PROXYPROTO_OK && r.used == n1);
    if (known) {
        CHECK(same_addr(&r.src, src) && same_addr(&r.dst, dst));
    } else {
        CHECK(r.src.ss_family == AF_UNSPEC && r.dst.ss_family == AF_UNSPEC);
    }
    /* Too small a buffer is 0, never a truncated header. */
    CHECK(proxyproto_v1(v1, n1, (const void *)src, (const void *)dst) == 0);

    size_t n2 = proxyproto_v2(v2, sizeof(v2), (const void *)src, (const void *)dst);
    CHECK(n2 >= 16 && n2 <= sizeof(v2));
    r = parse(v2, n2);
    CHECK(r.rc == PROXYPROTO_OK && r.used == n2);
    if (known) {
        CHECK(same_addr(&r.src, src) && same_addr(&r.dst, dst));
    } else {
        CHECK(r.src.ss_family == AF_UNSPEC && r.dst.ss_family == AF_UNSPEC);
    }
    CHECK(proxyproto_v2(v2, n2 - 1, (const void *)src, (const void *)dst) == 0);
}

/* A v1 TCP4/TCP6 line as the specification spells it: six fields separated
 * by single spaces, decimal ports without leading zeros, then CRLF. */
static void check_v1_shape(const uint8_t *p, size_t used)
{
    size_t fields = 1;

    CHECK(used >= 8 && used <= 107 && p[used - 2] == '\r' && p[used - 1] == '\n');
    CHECK(memcmp(p, "PROXY ", 6) == 0);
    for (size_t i = 0; i < used - 2; i++) {
        CHECK(p[i] > ' ' || (p[i] == ' ' && i > 0 && p[i - 1] != ' '));
        if (p[i] == ' ')
            fields++;
    }
    CHECK(p[used - 3] != ' ');
    CHECK(fields == 6);
}

static void check_header(const uint8_t *data, size_t size)
{
    struct result r = parse(data, size);

    if (r.rc != PROXYPROTO_OK) {
        /* Nothing shorter can be a header either: a prefix is at best AGAIN,
         * and never accepted. */
        for (size_t k = 0; k < size && k < 256; k++)
            CHECK(parse(data, k).rc != PROXYPROTO_OK);
        return;
    }
    CHECK(r.used > 0 && r.used <= size && r.used <= PROXYPROTO_MAX);
    check_families(&r);
    if (size >= sizeof(v2sig) && memcmp(data, v2sig, sizeof(v2sig)) == 0) {
        CHECK(r.used == 16 + (((size_t)data[14] << 8) | data[15]));
    } else {
        const uint8_t *lf = memchr(data, '\n', size);
        CHECK(lf != NULL && r.used == (size_t)(lf - data) + 1 && r.used <= 107);
        if (r.src.ss_family != AF_UNSPEC)
            check_v1_shape(data, r.used);
    }
    for (size_t k = 0; k < r.used; k++)
        CHECK(parse(data, k).rc == PROXYPROTO_AGAIN);
    for (size_t k = r.used; k <= size; k++) {
        struct result longer = parse(data, k);
        CHECK(longer.rc == PROXYPROTO_OK && longer.used == r.used);
        CHECK(same_addr(&longer.src, &r.src) && same_addr(&longer.dst, &r.dst));
    }
    check_round_trip(&r.src, &r.dst);
}

/* Addresses from raw bytes: byte 0 picks the families (bit 0: IPv6, bit 1:
 * the other family for dst, bit 2: AF_UNSPEC src), then 2 x 16 address
 * bytes and 2 x 2 port bytes. */
static void check_written(const uint8_t *data, size_t size)
{
    struct sockaddr_storage src, dst;

    if (size < 37)
        return;
    memset(&src, 0, sizeof(src));
    memset(&dst, 0, sizeof(dst));
    int f1 = data[0] & 1 ? AF_INET6 : AF_INET;
    int f2 = data[0] & 2 ? (f1 == AF_INET ? AF_INET6 : AF_INET) : f1;
    struct sockaddr_storage *ss[2] = {&src, &dst};
    int fam[2] = {data[0] & 4 ? AF_UNSPEC : f1, f2};
    for (int i = 0; i < 2; i++) {
        const uint8_t *a = data + 1 + 16 * i, *port = data + 33 + 2 * i;
        ss[i]->ss_family = (sa_family_t)fam[i];
        if (fam[i] == AF_INET) {
            struct sockaddr_in *s4 = (void *)ss[i];
            memcpy(&s4->sin_addr, a, 4);
            memcpy(&s4->sin_port, port, 2);
        } else if (fam[i] == AF_INET6) {
            struct sockaddr_in6 *s6 = (void *)ss[i];
            memcpy(&s6->sin6_addr, a, 16);
            memcpy(&s6->sin6_port, port, 2);
        }
    }
    check_round_trip(&src, &dst);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_header(data, size);
    check_written(data, size);
    return 0;
}
