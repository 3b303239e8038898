/*
 * The client engine in DANE mode (tls_new_client_dane), in a real
 * in-memory handshake against a server engine serving the fixtures of
 * testdata/ (see make-certs.sh there): TLSA records computed here from the
 * certificates, matching and not, enforced and not. The DANE matching
 * itself is tls_dane_test's; this is how its result decides a handshake.
 *
 *   server-ecdsa: CA-signed leaf for localhost, mx.test, 127.0.0.1
 *   selfsigned:   self-signed leaf for mx.test (no PKIX path at all)
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
#include "proxy/tls/tls.h"
#include "proxy/tls/tls_dane.h"

#include "tests/unit/tls/tls_handshake_fixture.c.h"

struct run {
    int cs, ss;
    bool verified;
    const char *verify_why;
    int dane;
    const char *dane_why;
    bool cert_failure;
    char error[256];
    char sni[64];
};

/* A handshake of a DANE client (name, enforce) against a server serving
 * cert/key, with set as it stands. */
static struct run run(const char *cert, const char *key, const char *name, bool enforce,
                      bool with_ca)
{
    struct tls_ctx *sc = server_ctx(cert, key), *cc = client_ctx(with_ca);
    struct tls *s = tls_new_server(sc);
    struct tls *c = tls_new_client_dane(cc, &set, name, enforce, false);
    struct run r;

    assert_non_null(s);
    assert_non_null(c);
    memset(&r, 0, sizeof r);
    handshake(c, s, &r.cs, &r.ss);
    r.verified = tls_verify_result(c, &r.verify_why);
    r.dane = tls_dane_status(c, &r.dane_why);
    r.cert_failure = tls_error_is_certificate(c);
    snprintf(r.error, sizeof r.error, "%s", tls_error(c));
    const char *sni = tls_sni(s);
    snprintf(r.sni, sizeof r.sni, "%s", sni ? sni : "");
    tls_free(c);
    tls_free(s);
    tls_ctx_unref(cc);
    tls_ctx_unref(sc);
    return r;
}

/* ---- tests ---- */

/* DANE-EE (3 1 1) of the server's key: authenticated, SNI is the name. */
static void test_ee_match(void **state)
{
    size_t len[1] = {record(rd[0], 3, 1, TD "server-ecdsa.pem")};
    set_of(1, len);

    struct run r = run(TD "server-ecdsa.pem", TD "server-ecdsa.key", "mx.test", true, false);
    assert_int_equal(r.cs, TLS_OK);
    assert_int_equal(r.ss, TLS_OK);
    assert_true(r.verified);
    assert_string_equal(r.verify_why, "ok");
    assert_int_equal(r.dane, TLS_DANE_MATCH_EE);
    assert_string_equal(r.sni, "mx.test");
}

/* PKIX is not consulted: a self-signed certificate that DNS vouches for is
 * authenticated, CA file or not, and whatever its names. */
static void test_ee_self_signed_without_ca(void **state)
{
    size_t len[1] = {record(rd[0], 3, 0, TD "selfsigned.pem")};
    set_of(1, len);

    for (int with_ca = 0; with_ca <= 1; with_ca++) {
        struct run r =
            run(TD "selfsigned.pem", TD "selfsigned.key", "other.example", true, with_ca);
        assert_int_equal(r.cs, TLS_OK);
        assert_true(r.verified);
        assert_int_equal(r.dane, TLS_DANE_MATCH_EE);
    }
}

/* No record matches: enforced, the handshake fails as a certificate
 * failure whose text names the DANE result; a CA-valid chain does not
 * help. */
static void test_mismatch_enforced(void **state)
{
    size_t len[1] = {record(rd[0], 3, 1, TD "selfsigned.pem")};
    set_of(1, len);

    struct run r = run(TD "server-ecdsa.pem", TD "server-ecdsa.key", "mx.test", true, true);
    assert_int_equal(r.cs, TLS_ERR);
    assert_int_not_equal(r.ss, TLS_OK);
    assert_true(r.cert_failure);
    assert_false(r.verified);
    assert_int_equal(r.dane, TLS_DANE_NO_MATCH);
    assert_non_null(strstr(r.error, "certificate verify failed: DANE no-match"));
}

/* Not enforced: the handshake completes and the result tells. */
static void test_mismatch_not_enforced(void **state)
{
    size_t len[1] = {record(rd[0], 3, 1, TD "selfsigned.pem")};
    set_of(1, len);

    struct run r = run(TD "server-ecdsa.pem", TD "server-ecdsa.key", "mx.test", false, true);
    assert_int_equal(r.cs, TLS_OK);
    assert_int_equal(r.ss, TLS_OK);
    assert_false(r.verified);
    assert_string_equal(r.verify_why, "no-match");
    assert_int_equal(r.dane, TLS_DANE_NO_MATCH);
    assert_non_null(r.dane_why);
}

/* DANE-TA (2 0 1) of the CA the server sends: the leaf chains to it and
 * names the reference identifier. */
static void test_ta_match(void **state)
{
    size_t len[1] = {record(rd[0], 2, 0, TD "ca.pem")};
    set_of(1, len);

    struct run r = run(chain_file, TD "server-ecdsa.key", "mx.test", true, false);
    assert_int_equal(r.cs, TLS_OK);
    assert_true(r.verified);
    assert_int_equal(r.dane, TLS_DANE_MATCH_TA);
}

/* DANE-TA with a name the certificate does not have: refused. */
static void test_ta_name_mismatch(void **state)
{
    size_t len[1] = {record(rd[0], 2, 0, TD "ca.pem")};
    set_of(1, len);

    struct run r = run(chain_file, TD "server-ecdsa.key", "mx.example.net", true, false);
    assert_int_equal(r.cs, TLS_ERR);
    assert_true(r.cert_failure);
    assert_int_equal(r.dane, TLS_DANE_NAME_MISMATCH);
    assert_non_null(strstr(r.error, "DANE name-mismatch"));
}

/* DANE-TA whose anchor the server does not send: no match (the proxy has
 * no other copy of it). */
static void test_ta_not_sent(void **state)
{
    size_t len[1] = {record(rd[0], 2, 0, TD "ca.pem")};
    set_of(1, len);

    struct run r = run(TD "server-ecdsa.pem", TD "server-ecdsa.key", "mx.test", true, true);
    assert_int_equal(r.cs, TLS_ERR);
    assert_true(r.cert_failure);
    assert_int_equal(r.dane, TLS_DANE_NO_MATCH);
}

/* One matching record among several is enough. */
static void test_one_of_two(void **state)
{
    size_t len[2] = {record(rd[0], 3, 1, TD "selfsigned.pem"),
                     record(rd[1], 3, 1, TD "server-ecdsa.pem")};
    set_of(2, len);

    struct run r = run(TD "server-ecdsa.pem", TD "server-ecdsa.key", "mx.test", true, false);
    assert_int_equal(r.cs, TLS_OK);
    assert_int_equal(r.dane, TLS_DANE_MATCH_EE);
}

/* A plain client engine is no DANE engine; a DANE one needs a name. */
static void test_api_edges(void **state)
{
    struct tls_ctx *cc = client_ctx(false);
    struct tls *c = tls_new_client(cc, "mx.test", false, "mx.test", false);
    const char *why = "unset";

    assert_int_equal(tls_dane_status(c, &why), -1);
    tls_free(c);
    size_t len[1] = {record(rd[0], 3, 1, TD "server-ecdsa.pem")};
    set_of(1, len);
    assert_null(tls_new_client_dane(cc, &set, NULL, true, false));
    assert_null(tls_new_client_dane(cc, &set, "", true, false));
    assert_null(tls_new_client_dane(cc, NULL, "mx.test", true, false));
    tls_ctx_unref(cc);
}

static int setup(void **state)
{
    make_chain_file();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ee_match),          cmocka_unit_test(test_ee_self_signed_without_ca),
        cmocka_unit_test(test_mismatch_enforced), cmocka_unit_test(test_mismatch_not_enforced),
        cmocka_unit_test(test_ta_match),          cmocka_unit_test(test_ta_name_mismatch),
        cmocka_unit_test(test_ta_not_sent),       cmocka_unit_test(test_one_of_two),
        cmocka_unit_test(test_api_edges),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
