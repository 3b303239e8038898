/*
 * Unit tests for proxy/tls/tls_dane.c, on the fixtures of testdata/ (see
 * make-certs.sh there): TLSA records are computed here from the
 * certificates themselves (SHA-256 / SHA-512 / full, certificate / SPKI).
 *
 *   server-ecdsa: CA-signed leaf for localhost, mx.test, 127.0.0.1
 *   expired:      CA-signed leaf for mx.test, valid 2000-2001 only
 *   selfsigned:   self-signed leaf for mx.test
 *   cn-only:      CA-signed, CN mx.test, no subjectAltName
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "proxy/policy/tlsa.h"
#include "proxy/tls/tls_dane.h"

#define TD "tests/unit/tls/testdata/"

struct der {
    uint8_t *p;
    size_t n;
    uint8_t *spki;
    size_t nspki;
};

static struct der load(const char *file)
{
    struct der d = {0};
    FILE *f = fopen(file, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    int n = i2d_X509(x, &d.p);
    assert_true(n > 0);
    d.n = (size_t)n;
    n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &d.spki);
    assert_true(n > 0);
    d.nspki = (size_t)n;
    X509_free(x);
    return d;
}

static void unload(struct der *d)
{
    OPENSSL_free(d->p);
    OPENSSL_free(d->spki);
}

/* One TLSA RDATA for d into out (room for 3 + d's full length). */
static size_t record(uint8_t *out, uint8_t usage, uint8_t sel, uint8_t mtype,
                     const struct der *d)
{
    const uint8_t *data = sel == 0 ? d->p : d->spki;
    size_t n = sel == 0 ? d->n : d->nspki;

    out[0] = usage, out[1] = sel, out[2] = mtype;
    if (mtype == 1) {
        SHA256(data, n, out + 3);
        return 3 + 32;
    }
    if (mtype == 2) {
        SHA512(data, n, out + 3);
        return 3 + 64;
    }
    memcpy(out + 3, data, n);
    return 3 + n;
}

static uint8_t rbuf[4][4096];

/* The verdict of chain (leaf first) against one record. */
static enum tls_dane_result check1(size_t rlen, const struct der *const *chain, size_t n,
                                   const char *name, const char **why)
{
    const uint8_t *rd[1] = {rbuf[0]};
    size_t len[1] = {rlen};
    struct tlsa_set set;
    const uint8_t *der[4];
    size_t dlen[4];
    const char *names[1] = {name};

    assert_int_equal(tlsa_set_build(&set, rd, len, 1), TLSA_VERDICT_AUTHENTICATE);
    for (size_t i = 0; i < n; i++)
        der[i] = chain[i]->p, dlen[i] = chain[i]->n;
    return tls_dane_verify(&set, der, dlen, n, names, name ? 1 : 0, 0, why);
}

static struct der leaf, expired, selfsigned, ca, cnonly;

static int setup(void **state)
{
    leaf = load(TD "server-ecdsa.pem");
    expired = load(TD "expired.pem");
    selfsigned = load(TD "selfsigned.pem");
    ca = load(TD "ca.pem");
    cnonly = load(TD "cn-only.pem");
    return 0;
}

static int teardown(void **state)
{
    unload(&leaf), unload(&expired), unload(&selfsigned), unload(&ca), unload(&cnonly);
    return 0;
}

/* RFC 7672 §3.1.1: DANE-EE matches the leaf by certificate or SPKI, with
 * every matching type, and ignores names, dates and issuers. */
static void test_ee(void **state)
{
    const struct der *c1[] = {&leaf}, *c2[] = {&expired}, *c3[] = {&selfsigned},
                     *c4[] = {&leaf, &ca};
    const char *why;

    for (uint8_t sel = 0; sel <= 1; sel++)
        for (uint8_t mt = 0; mt <= 2; mt++) {
            size_t l = record(rbuf[0], 3, sel, mt, &leaf);
            assert_int_equal(check1(l, c1, 1, "unrelated.example", &why), TLS_DANE_MATCH_EE);
            assert_int_equal(check1(l, c4, 2, NULL, &why), TLS_DANE_MATCH_EE);
        }
    assert_int_equal(check1(record(rbuf[0], 3, 1, 1, &expired), c2, 1, "mx.test", &why),
                     TLS_DANE_MATCH_EE);
    assert_int_equal(check1(record(rbuf[0], 3, 0, 2, &selfsigned), c3, 1, NULL, &why),
                     TLS_DANE_MATCH_EE);
    /* Another key: no match. An EE record never matches a chain's CA. */
    assert_int_equal(check1(record(rbuf[0], 3, 1, 1, &selfsigned), c1, 1, "mx.test", &why),
                     TLS_DANE_NO_MATCH);
    assert_non_null(why);
    assert_int_equal(check1(record(rbuf[0], 3, 0, 1, &ca), c4, 2, "mx.test", &why),
                     TLS_DANE_NO_MATCH);
}

/* RFC 7672 §3.1.2: DANE-TA makes the matched certificate of the presented
 * chain the trust anchor, then checks the chain, the dates and the name. */
static void test_ta(void **state)
{
    const struct der *chain[] = {&leaf, &ca}, *alone[] = {&leaf},
                     *exp_chain[] = {&expired, &ca}, *ss[] = {&selfsigned, &ca},
                     *cn[] = {&cnonly, &ca};
    const char *why;

    for (uint8_t sel = 0; sel <= 1; sel++)
        for (uint8_t mt = 0; mt <= 2; mt++) {
            size_t l = record(rbuf[0], 2, sel, mt, &ca);
            assert_int_equal(check1(l, chain, 2, "mx.test", &why), TLS_DANE_MATCH_TA);
        }
    size_t l = record(rbuf[0], 2, 0, 1, &ca);
    /* The anchor must be presented. */
    assert_int_equal(check1(l, alone, 1, "mx.test", &why), TLS_DANE_NO_MATCH);
    /* The name: the TLSA base domain / MX host must be among the leaf's. */
    assert_int_equal(check1(l, chain, 2, "other.test", &why), TLS_DANE_NAME_MISMATCH);
    assert_int_equal(check1(l, chain, 2, NULL, &why), TLS_DANE_NAME_MISMATCH);
    /* Dates count under DANE-TA. */
    assert_int_equal(check1(l, exp_chain, 2, "mx.test", &why), TLS_DANE_TA_INVALID);
    assert_non_null(why);
    /* A leaf the anchor did not sign, with the anchor sent along. */
    assert_int_equal(check1(l, ss, 2, "mx.test", &why), TLS_DANE_TA_INVALID);
    /* No subjectAltName: the subject CN is the name (RFC 7672 §3.2.3). */
    assert_int_equal(check1(l, cn, 2, "mx.test", &why), TLS_DANE_MATCH_TA);
}

/* Several records and names: any usable match authenticates. */
static void test_sets(void **state)
{
    const uint8_t *rd[3];
    size_t len[3];
    struct tlsa_set set;
    const struct der *chain[] = {&leaf, &ca};
    const uint8_t *der[2] = {leaf.p, ca.p};
    size_t dlen[2] = {leaf.n, ca.n};
    const char *names[2] = {"example.net", "mx.test"};
    const char *why;

    len[0] = record(rbuf[0], 1, 1, 1, &leaf); /* PKIX-EE: unusable, ignored */
    len[1] = record(rbuf[1], 3, 1, 1, &selfsigned);
    len[2] = record(rbuf[2], 2, 1, 1, &ca);
    for (int i = 0; i < 3; i++)
        rd[i] = rbuf[i];
    assert_int_equal(tlsa_set_build(&set, rd, len, 3), TLSA_VERDICT_AUTHENTICATE);
    assert_int_equal(set.n, 2);
    assert_int_equal(tls_dane_verify(&set, der, dlen, 2, names, 2, 0, &why), TLS_DANE_MATCH_TA);
    assert_int_equal(tls_dane_verify(&set, der, dlen, 2, names, 1, 0, &why),
                     TLS_DANE_NAME_MISMATCH);
    /* The PKIX-EE record alone would have matched the leaf: it is unusable. */
    assert_int_equal(tlsa_set_build(&set, rd, len, 1), TLSA_VERDICT_UNUSABLE);
    (void)chain;

    /* Garbage DER and an empty chain are errors, not matches. */
    uint8_t junk[8] = {0x30, 0x03, 1, 2, 3, 4, 5, 6};
    const uint8_t *jd[1] = {junk};
    size_t jl[1] = {sizeof junk};
    assert_int_equal(tlsa_set_build(&set, rd + 1, len + 1, 2), TLSA_VERDICT_AUTHENTICATE);
    assert_int_equal(tls_dane_verify(&set, jd, jl, 1, names, 2, 0, &why), TLS_DANE_ERROR);
    assert_int_equal(tls_dane_verify(&set, jd, jl, 0, names, 2, 0, &why), TLS_DANE_ERROR);
    assert_string_equal(tls_dane_result_str(TLS_DANE_MATCH_EE), "match-ee");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ee),
        cmocka_unit_test(test_ta),
        cmocka_unit_test(test_sets),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
