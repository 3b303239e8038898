/*
 * Fuzz target for proxy/core/dns.c. Input layout: octet 0 picks the asked
 * type, octet 1 the asked name (from small tables, so that the corpus can
 * echo the question and reach the answer section), the rest is the response,
 * whose own first two octets are taken as the query's ID. The response is an
 * exactly sized heap copy, so a read past its end is caught by ASan.
 * Invariants (abort on violation):
 *   - dns_response_parse returns one of enum dns_status, the same twice;
 *   - OK or TRUNCATED only for a response of at least a header with QR set
 *     and opcode 0; OK never with TC set;
 *   - on OK: count <= DNS_MAX_RECORDS, every record inside the store's used
 *     part, used <= DNS_STORE; A is 4 octets, AAAA 16, an MX is a preference
 *     and one uncompressed name that ends exactly at its end; ttl 0 without
 *     records;
 *   - the name encoder never writes more than 255 octets, labels <= 63;
 *   - a query built for the name, with QR set, parses as an empty answer
 *     with AD, and as a query (QR clear) is refused.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/dns.h"
#include "tests/fuzz/fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint16_t types[] = {1, 28, 15, 16, 52, 5};
static const char *const names[] = {"a.example", "example", "x.y.example.", "_25._tcp.mx.example"};

static struct dns_answer a1, a2;

static bool valid_wire_name(const uint8_t *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint8_t l = p[i];
        if (l > 63)
            return false;
        if (l == 0)
            return i + 1 == n;
        i += 1 + (size_t)l;
    }
    return false;
}

static void check_answer(const struct dns_answer *a, uint16_t qtype)
{
    CHECK(a->count <= DNS_MAX_RECORDS);
    CHECK(a->used <= DNS_STORE);
    CHECK(a->count > 0 || a->ttl == 0);
    for (size_t i = 0; i < a->count; i++) {
        const uint8_t *d = (const uint8_t *)a->data[i];
        CHECK(a->len[i] >= 0);
        CHECK(d >= a->store && d + a->len[i] <= a->store + a->used);
        if (qtype == 1)
            CHECK(a->len[i] == 4);
        if (qtype == 28)
            CHECK(a->len[i] == 16);
        if (qtype == 15) {
            CHECK(a->len[i] >= 3);
            CHECK(a->len[i] <= 2 + DNS_MAX_NAME);
            CHECK(valid_wire_name(d + 2, (size_t)a->len[i] - 2));
        }
    }
}

static void check_encoder(const uint8_t *data, size_t size)
{
    char s[300];
    uint8_t w[DNS_MAX_NAME + 1];
    size_t n = size < sizeof s - 1 ? size : sizeof s - 1;

    memcpy(s, data, n);
    s[n] = '\0';
    w[DNS_MAX_NAME] = 0xA5;
    size_t l = dns_name_encode(w, s);
    CHECK(w[DNS_MAX_NAME] == 0xA5);
    CHECK(l <= DNS_MAX_NAME);
    if (l > 0)
        CHECK(valid_wire_name(w, l));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint16_t qtype = types[data[0] % (sizeof types / sizeof types[0])];
    const char *name = names[data[1] % (sizeof names / sizeof names[0])];
    const uint8_t *in = data + 2;
    size_t n = size - 2;
    uint16_t id = n >= 2 ? (uint16_t)(in[0] << 8 | in[1]) : 0;

    check_encoder(in, n);
    uint8_t *msg = malloc(n ? n : 1);
    CHECK(msg != NULL);
    memcpy(msg, in, n);

    int rc = dns_response_parse(msg, n, id, name, qtype, &a1);
    CHECK(rc == DNS_OK || rc == DNS_TRUNCATED || rc == DNS_ERR_NOT_OURS ||
          rc == DNS_ERR_MALFORMED || rc == DNS_ERR_TOO_MANY);
    if (rc == DNS_OK || rc == DNS_TRUNCATED) {
        CHECK(n >= DNS_HEADER_LEN && (msg[2] & 0x80) && ((msg[2] >> 3) & 0x0F) == 0);
        CHECK((rc == DNS_TRUNCATED) == ((msg[2] & 0x02) != 0));
    }
    if (rc == DNS_OK)
        check_answer(&a1, qtype);
    int rc2 = dns_response_parse(msg, n, id, name, qtype, &a2);
    CHECK(rc2 == rc);
    if (rc == DNS_OK) {
        CHECK(a1.count == a2.count && a1.ttl == a2.ttl && a1.ad == a2.ad);
        for (size_t i = 0; i < a1.count; i++)
            CHECK(a1.len[i] == a2.len[i] && memcmp(a1.data[i], a2.data[i], a1.len[i]) == 0);
    }
    free(msg);

    uint8_t q[DNS_MAX_QUERY];
    int ql = dns_query_build(q, sizeof q, id, name, qtype);
    CHECK(ql > DNS_HEADER_LEN && (size_t)ql <= sizeof q);
    CHECK(dns_response_parse(q, (size_t)ql, id, name, qtype, &a1) == DNS_ERR_NOT_OURS);
    q[2] |= 0x80;
    CHECK(dns_response_parse(q, (size_t)ql, id, name, qtype, &a1) == DNS_OK);
    CHECK(a1.count == 0 && a1.ad && a1.rcode == 0);
    return 0;
}
