/*
 * tls_peer_chain (tls_verify.c): the chain a client engine keeps after a
 * real in-memory handshake, bounded in count and size, and DANE matched
 * afterwards on those copies, as a transparent session does per recipient;
 * tls_chain_valid_for_domain on them (a `policies` verify rule); the class
 * of the PKIX result (tls_verify_problem).
 *
 *   server-ecdsa (+ ca): CA-signed leaf for localhost, mx.test, 127.0.0.1
 *   selfsigned:          self-signed leaf for mx.test
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

#include "proxy/core/buf.h"
#include "proxy/policy/tlsa.h"
#include "proxy/tls/tls.h"
#include "proxy/tls/tls_dane.h"

#include "tests/unit/tls/tls_handshake_fixture.c.h"

/* The DER of the certificate in file, into out (heap, caller frees). */
static size_t file_der(const char *file, uint8_t **out)
{
    FILE *f = fopen(file, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    *out = NULL;
    int n = i2d_X509(x, out);
    assert_true(n > 0);
    X509_free(x);
    return (size_t)n;
}

/* An opportunistic handshake against server-ecdsa with its CA behind it;
 * then the kept chain under max/max_bytes. */
static int keep(size_t max, size_t max_bytes, uint8_t **block, const uint8_t **der, size_t *len)
{
    struct tls_ctx *sc = server_ctx(chain_file, TD "server-ecdsa.key"), *cc = client_ctx(false);
    struct tls *s = tls_new_server(sc);
    struct tls *c = tls_new_client(cc, "mx.test", false, "mx.test", true);
    int cs, ss;

    handshake(c, s, &cs, &ss);
    assert_int_equal(cs, TLS_OK);
    int n = tls_peer_chain(c, max, max_bytes, block, der, len);
    tls_free(c);
    tls_free(s);
    tls_ctx_unref(cc);
    tls_ctx_unref(sc);
    return n; /* the copies outlive the engine */
}

static void test_chain_kept(void **state)
{
    uint8_t *block, *leaf, *ca;
    const uint8_t *der[8];
    size_t len[8];
    size_t nleaf = file_der(TD "server-ecdsa.pem", &leaf), nca = file_der(TD "ca.pem", &ca);

    make_chain_file();
    assert_int_equal(keep(8, 65536, &block, der, len), 2);
    assert_int_equal(len[0], nleaf);
    assert_memory_equal(der[0], leaf, nleaf);
    assert_int_equal(len[1], nca);
    assert_memory_equal(der[1], ca, nca);
    free(block);
    /* Bounded by count: the leaf first. */
    assert_int_equal(keep(1, 65536, &block, der, len), 1);
    assert_memory_equal(der[0], leaf, nleaf);
    free(block);
    /* Bounded by size: whole certificates only, never a gap. */
    assert_int_equal(keep(8, nleaf + nca - 1, &block, der, len), 1);
    free(block);
    assert_int_equal(keep(8, nleaf - 1, &block, der, len), 0);
    assert_null(block);
    OPENSSL_free(leaf);
    OPENSSL_free(ca);
}

/* DANE after the handshake, on the copies: the record of the server's key
 * matches, another certificate's does not. */
static void test_dane_on_kept_chain(void **state)
{
    uint8_t *block;
    const uint8_t *der[8];
    size_t len[8] = {0};
    const char *names[1] = {"mx.test"}, *why = NULL;
    size_t l[1] = {35};

    make_chain_file();
    int n = keep(8, 65536, &block, der, len);
    assert_int_equal(n, 2);
    record(rd[0], 3, 1, TD "server-ecdsa.pem");
    set_of(1, l);
    assert_int_equal(tls_dane_verify(&set, der, len, (size_t)n, names, 1, 0, &why),
                     TLS_DANE_MATCH_EE);
    record(rd[0], 3, 1, TD "selfsigned.pem");
    set_of(1, l);
    assert_int_equal(tls_dane_verify(&set, der, len, (size_t)n, names, 1, 0, &why),
                     TLS_DANE_NO_MATCH);
    /* DANE-TA of the CA the server sent, with the MX host as the name. */
    record(rd[0], 2, 0, TD "ca.pem");
    set_of(1, l);
    assert_int_equal(tls_dane_verify(&set, der, len, (size_t)n, names, 1, 0, &why),
                     TLS_DANE_MATCH_TA);
    free(block);
}

/* The kept chain against the CA for a recipient domain: the domain
 * itself, or a name below it; never without the CA or another name. */
static void test_valid_for_domain(void **state)
{
    uint8_t *block;
    const uint8_t *der[8];
    size_t len[8] = {0};

    make_chain_file();
    int n = keep(8, 65536, &block, der, len);
    assert_int_equal(n, 2);
    struct tls_ctx *with = client_ctx(true), *without = client_ctx(false);
    assert_true(tls_chain_valid_for_domain(with, der, len, 2, "mx.test"));
    assert_true(tls_chain_valid_for_domain(with, der, len, 2, "MX.Test."));
    assert_true(tls_chain_valid_for_domain(with, der, len, 2, "test"));    /* dot-nexthop */
    assert_true(tls_chain_valid_for_domain(with, der, len, 1, "mx.test")); /* CA from the store */
    assert_false(tls_chain_valid_for_domain(with, der, len, 2, "x.mx.test"));
    assert_false(tls_chain_valid_for_domain(with, der, len, 2, "other.test"));
    assert_false(tls_chain_valid_for_domain(with, der, len, 2, "st"));
    assert_false(tls_chain_valid_for_domain(with, der, len, 2, ""));
    assert_false(tls_chain_valid_for_domain(without, der, len, 2, "mx.test"));
    assert_false(tls_chain_valid_for_domain(with, der, len, 0, "mx.test"));
    /* A chain that does not verify: the self-signed leaf. */
    uint8_t *self;
    size_t nself = file_der(TD "selfsigned.pem", &self);
    const uint8_t *sder[1] = {self};
    assert_false(tls_chain_valid_for_domain(with, sder, &nself, 1, "mx.test"));
    OPENSSL_free(self);
    tls_ctx_unref(with);
    tls_ctx_unref(without);
    free(block);
}

/* tls_verify_problem: the class of an unverified client's PKIX result
 * against cert (the check runs without verify too), for name. */
static enum tls_cert_problem problem(const char *cert, const char *key, const char *name,
                                     bool with_ca)
{
    struct tls_ctx *sc = server_ctx(cert, key), *cc = client_ctx(with_ca);
    struct tls *s = tls_new_server(sc);
    struct tls *c = tls_new_client(cc, "mx.test", false, name, true);
    int cs, ss;

    assert_int_equal(tls_verify_problem(c), TLS_CERT_UNCHECKED);
    handshake(c, s, &cs, &ss);
    assert_int_equal(cs, TLS_OK);
    enum tls_cert_problem p = tls_verify_problem(c);
    tls_free(c);
    tls_free(s);
    tls_ctx_unref(cc);
    tls_ctx_unref(sc);
    return p;
}

static void test_verify_problem(void **state)
{
    const char *leaf = TD "server-ecdsa.pem", *key = TD "server-ecdsa.key";

    assert_int_equal(problem(leaf, key, "mx.test", true), TLS_CERT_OK);
    assert_int_equal(problem(leaf, key, "other.test", true), TLS_CERT_NAME_MISMATCH);
    assert_int_equal(problem(leaf, key, "127.0.0.2", true), TLS_CERT_NAME_MISMATCH);
    assert_int_equal(problem(leaf, key, NULL, true), TLS_CERT_NAME_MISMATCH);
    assert_int_equal(problem(leaf, key, "mx.test", false), TLS_CERT_NOT_TRUSTED);
    assert_int_equal(problem(TD "expired.pem", TD "expired.key", "mx.test", true),
                     TLS_CERT_EXPIRED);
    assert_int_equal(problem(TD "selfsigned.pem", TD "selfsigned.key", "mx.test", true),
                     TLS_CERT_NOT_TRUSTED);
    /* A DANE engine's result is tls_dane_status's, never a PKIX class. */
    uint8_t one[35];
    size_t len = record(one, 3, 1, leaf);
    const uint8_t *p[1] = {one};
    assert_int_equal(tlsa_set_build(&set, p, &len, 1), TLSA_VERDICT_AUTHENTICATE);
    struct tls_ctx *sc = server_ctx(leaf, key), *cc = client_ctx(true);
    struct tls *s = tls_new_server(sc);
    struct tls *c = tls_new_client_dane(cc, &set, "mx.test", true, false);
    int cs, ss;
    handshake(c, s, &cs, &ss);
    assert_int_equal(cs, TLS_OK);
    assert_int_equal(tls_dane_status(c, NULL), TLS_DANE_MATCH_EE);
    assert_int_equal(tls_verify_problem(c), TLS_CERT_UNCHECKED);
    tls_free(c);
    tls_free(s);
    tls_ctx_unref(cc);
    tls_ctx_unref(sc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_kept),
        cmocka_unit_test(test_dane_on_kept_chain),
        cmocka_unit_test(test_valid_for_domain),
        cmocka_unit_test(test_verify_problem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
