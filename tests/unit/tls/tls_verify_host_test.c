/*
 * tls_chain_check_host (tls_verify.c): a kept chain against the CA for an
 * MTA-STS MX host name (RFC 8461 §4.2): the exact name or a wildcard of
 * its parent, never a name below or above it, never the subject CN; and a
 * chain that does not verify told apart from one for another name.
 *
 *   server-ecdsa:   CA-signed, DNS:localhost, DNS:mx.test, IP:127.0.0.1
 *   sni-wild-ecdsa: CA-signed, DNS:*.w.test
 *   cn-only:        CA-signed, CN=mx.test, no subjectAltName
 *   expired:        CA-signed, DNS:mx.test, expired
 *   selfsigned:     DNS:mx.test, its own issuer
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "proxy/tls/tls.h"

#define TD "tests/unit/tls/testdata/"

static struct tls_ctx *client_ctx(bool with_ca)
{
    char err[256] = "";
    struct tls_options o = {.min_version = 12, .ca_file = with_ca ? TD "ca.pem" : NULL};
    struct tls_ctx *ctx = tls_ctx_client_new(&o, err, sizeof err);

    if (ctx == NULL)
        fail_msg("client ctx: %s", err);
    return ctx;
}

/* The first certificate of a PEM file as DER (OPENSSL_malloc'd). */
static size_t file_der(const char *file, uint8_t **der)
{
    FILE *f = fopen(file, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    *der = NULL;
    int n = i2d_X509(x, der);
    X509_free(x);
    assert_true(n > 0);
    return (size_t)n;
}

/* The leaf of file, alone or followed by the CA, checked for host. */
static enum tls_chain_check check(struct tls_ctx *ctx, const char *file, bool with_ca,
                                  const char *host)
{
    uint8_t *leaf, *ca;
    size_t len[2];
    len[0] = file_der(file, &leaf);
    len[1] = file_der(TD "ca.pem", &ca);
    const uint8_t *der[2] = {leaf, ca};
    enum tls_chain_check r = tls_chain_check_host(ctx, der, len, with_ca ? 2 : 1, host);
    OPENSSL_free(leaf);
    OPENSSL_free(ca);
    return r;
}

static void test_exact_name(void **state)
{
    (void)state;
    struct tls_ctx *ctx = client_ctx(true);
    const char *f = TD "server-ecdsa.pem";

    assert_int_equal(check(ctx, f, true, "mx.test"), TLS_CHAIN_VALID);
    assert_int_equal(check(ctx, f, false, "mx.test"), TLS_CHAIN_VALID); /* CA from the store */
    assert_int_equal(check(ctx, f, true, "MX.Test"), TLS_CHAIN_VALID);
    assert_int_equal(check(ctx, f, true, "localhost"), TLS_CHAIN_VALID);
    /* Not the policy domain above the host, nor a host below the name. */
    assert_int_equal(check(ctx, f, true, "test"), TLS_CHAIN_NAME);
    assert_int_equal(check(ctx, f, true, "a.mx.test"), TLS_CHAIN_NAME);
    assert_int_equal(check(ctx, f, true, "other.test"), TLS_CHAIN_NAME);
    /* An address is never an MX host name, even with an IP SAN. */
    assert_int_equal(check(ctx, f, true, "127.0.0.1"), TLS_CHAIN_NAME);
    assert_int_equal(check(ctx, f, true, ""), TLS_CHAIN_NAME);
    assert_int_equal(check(ctx, f, true, "*.test"), TLS_CHAIN_NAME);
    tls_ctx_unref(ctx);
}

static void test_wildcard(void **state)
{
    (void)state;
    struct tls_ctx *ctx = client_ctx(true);
    const char *f = TD "sni-wild-ecdsa.pem";

    assert_int_equal(check(ctx, f, true, "mx1.w.test"), TLS_CHAIN_VALID);
    assert_int_equal(check(ctx, f, true, "w.test"), TLS_CHAIN_NAME);
    assert_int_equal(check(ctx, f, true, "a.mx1.w.test"), TLS_CHAIN_NAME);
    tls_ctx_unref(ctx);
}

static void test_untrusted(void **state)
{
    (void)state;
    struct tls_ctx *with = client_ctx(true), *without = client_ctx(false);

    /* The subject CN does not count: trusted, but no name. */
    assert_int_equal(check(with, TD "cn-only.pem", true, "mx.test"), TLS_CHAIN_NAME);
    assert_int_equal(check(with, TD "expired.pem", true, "mx.test"), TLS_CHAIN_UNTRUSTED);
    assert_int_equal(check(with, TD "selfsigned.pem", false, "mx.test"), TLS_CHAIN_UNTRUSTED);
    assert_int_equal(check(without, TD "server-ecdsa.pem", true, "mx.test"), TLS_CHAIN_UNTRUSTED);
    uint8_t *leaf;
    size_t len = file_der(TD "server-ecdsa.pem", &leaf);
    const uint8_t *der[1] = {leaf};
    assert_int_equal(tls_chain_check_host(with, der, &len, 0, "mx.test"), TLS_CHAIN_UNTRUSTED);
    size_t cut = len / 2; /* a truncated certificate does not parse */
    assert_int_equal(tls_chain_check_host(with, der, &cut, 1, "mx.test"), TLS_CHAIN_UNTRUSTED);
    OPENSSL_free(leaf);
    tls_ctx_unref(with);
    tls_ctx_unref(without);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_name),
        cmocka_unit_test(test_wildcard),
        cmocka_unit_test(test_untrusted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
