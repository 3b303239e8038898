/*
 * tls engine tests: a client engine wired to a server engine in memory, plus
 * raw BoringSSL peers (over memory BIOs) where a test needs a client or
 * server that the engine API cannot produce: old protocol versions,
 * restricted signature algorithms or cipher suites.
 * Fixtures: tests/unit/tls/testdata (see make-certs.sh there).
 */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "proxy/tls/tls.h"

#define TD "tests/unit/tls/testdata/"

/* ---- fixtures and helpers ------------------------------------------------ */

/* A config_tls over static arrays; the strings are not owned. */
struct cfg {
    struct tls_options tls;
    char *certs[8];
    char *keys[8];
};

static void cfg_init(struct cfg *c, int min_version)
{
    memset(c, 0, sizeof *c);
    c->tls.certificates = c->certs;
    c->tls.keys = c->keys;
    c->tls.min_version = min_version;
}

static void cfg_add(struct cfg *c, const char *cert, const char *key)
{
    c->certs[c->tls.ncertificates++] = (char *)cert;
    c->keys[c->tls.nkeys++] = (char *)key;
}

static struct tls_ctx *server_ctx(const char *name, int min_version)
{
    struct cfg c;
    char cert[128], key[128], err[256] = "";
    cfg_init(&c, min_version);
    snprintf(cert, sizeof cert, TD "%s.pem", name);
    snprintf(key, sizeof key, TD "%s.key", name);
    cfg_add(&c, cert, key);
    struct tls_ctx *ctx = tls_ctx_server_new(&c.tls, err, sizeof err);
    if (ctx == NULL)
        fail_msg("server ctx %s: %s", name, err);
    return ctx;
}

static struct tls_ctx *client_ctx(void)
{
    struct cfg c;
    char err[256] = "";
    cfg_init(&c, 12);
    c.tls.ca_file = TD "ca.pem";
    struct tls_ctx *ctx = tls_ctx_client_new(&c.tls, err, sizeof err);
    if (ctx == NULL)
        fail_msg("client ctx: %s", err);
    return ctx;
}

/* Moves all of from's pending ciphertext into to. */
static void xfer(struct tls *from, struct tls *to)
{
    struct buf *o = tls_out(from);
    if (buf_len(o) == 0)
        return;
    assert_int_equal(tls_feed(to, buf_head(o), buf_len(o)), 0);
    buf_consume(o, buf_len(o));
}

/* Runs both handshakes until neither can progress. */
static void handshake(struct tls *c, struct tls *s, int *cst, int *sst)
{
    int cs = TLS_AGAIN, ss = TLS_AGAIN;
    for (int i = 0; i < 10 && (cs == TLS_AGAIN || ss == TLS_AGAIN); i++) {
        if (cs == TLS_AGAIN)
            cs = tls_handshake(c);
        xfer(c, s);
        if (ss == TLS_AGAIN)
            ss = tls_handshake(s);
        xfer(s, c);
    }
    *cst = cs;
    *sst = ss;
}

static void handshake_ok(struct tls *c, struct tls *s)
{
    int cs, ss;
    handshake(c, s, &cs, &ss);
    if (cs != TLS_OK || ss != TLS_OK)
        fail_msg("handshake: client %d (%s), server %d (%s)", cs, tls_error(c), ss, tls_error(s));
}

/* Reads everything t can decrypt now into out (cap bytes); returns the
 * count, and the last status in *st. */
static size_t drain(struct tls *t, uint8_t *out, size_t cap, int *st)
{
    size_t total = 0, n;
    uint8_t tmp[16384];
    for (;;) {
        *st = tls_read(t, tmp, sizeof tmp, &n);
        if (*st != TLS_OK)
            return total;
        assert_true(total + n <= cap);
        memcpy(out + total, tmp, n);
        total += n;
    }
}

/* A raw BoringSSL peer over two memory BIOs. */
struct raw {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *rbio; /* what the engine sent us */
    BIO *wbio; /* what we send the engine */
};

static void raw_init(struct raw *r, SSL_CTX *ctx, bool server)
{
    r->ctx = ctx;
    r->ssl = SSL_new(ctx);
    assert_non_null(r->ssl);
    r->rbio = BIO_new(BIO_s_mem());
    r->wbio = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(r->rbio, -1); /* empty means "retry", not EOF */
    SSL_set_bio(r->ssl, r->rbio, r->wbio);
    if (server)
        SSL_set_accept_state(r->ssl);
    else
        SSL_set_connect_state(r->ssl);
}

static void raw_free(struct raw *r)
{
    SSL_free(r->ssl);
    SSL_CTX_free(r->ctx);
}

static SSL_CTX *raw_client_ctx(uint16_t min, uint16_t max)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    assert_non_null(ctx);
    assert_true(SSL_CTX_set_min_proto_version(ctx, min));
    assert_true(SSL_CTX_set_max_proto_version(ctx, max));
    return ctx;
}

/* Handshakes engine t against raw peer r; returns t's last status and
 * leaves r's in *rst (1 = done). */
static int raw_handshake(struct tls *t, struct raw *r, int *rst)
{
    int ts = TLS_AGAIN, rs = -1;
    uint8_t tmp[65536];
    for (int i = 0; i < 10; i++) {
        if (ts == TLS_AGAIN)
            ts = tls_handshake(t);
        struct buf *o = tls_out(t);
        if (buf_len(o) > 0) {
            BIO_write(r->rbio, buf_head(o), (int)buf_len(o));
            buf_consume(o, buf_len(o));
        }
        if (rs != 1) {
            ERR_clear_error();
            rs = SSL_do_handshake(r->ssl);
        }
        int n;
        while ((n = BIO_read(r->wbio, tmp, sizeof tmp)) > 0)
            assert_int_equal(tls_feed(t, tmp, (size_t)n), 0);
        if (ts != TLS_AGAIN && rs == 1)
            break;
        if (ts == TLS_ERR)
            break;
    }
    *rst = rs;
    return ts;
}

/* The key type of the certificate a raw client was given. */
static int raw_peer_key_type(struct raw *r)
{
    X509 *x = SSL_get_peer_certificate(r->ssl);
    assert_non_null(x);
    EVP_PKEY *k = X509_get_pubkey(x);
    int type = EVP_PKEY_id(k);
    EVP_PKEY_free(k);
    X509_free(x);
    return type;
}

/* ---- handshakes, versions, data ------------------------------------------- */

static void test_tls13_handshake_and_names(void **state)
{
    struct tls_ctx *sctx = server_ctx("server-ecdsa", 12);
    struct tls_ctx *cctx = client_ctx();
    struct tls *s = tls_new_server(sctx);
    struct tls *c = tls_new_client(cctx, "mx.test", true, "mx.test", false);
    assert_non_null(s);
    assert_non_null(c);

    handshake_ok(c, s);
    assert_string_equal(tls_version(c), "TLSv1.3");
    assert_string_equal(tls_version(s), "TLSv1.3");
    assert_non_null(tls_cipher(s));
    assert_true(strncmp(tls_cipher(s), "TLS_AES_", 8) == 0 ||
                strcmp(tls_cipher(s), "TLS_CHACHA20_POLY1305_SHA256") == 0);
    assert_string_equal(tls_cipher(c), tls_cipher(s));
    assert_non_null(tls_sni(s));
    assert_string_equal(tls_sni(s), "mx.test");

    const char *why = "unset";
    assert_true(tls_verify_result(c, &why));
    assert_int_equal(tls_pending_in(s), 0);

    tls_free(c);
    tls_free(s);
    tls_ctx_unref(cctx);
    tls_ctx_unref(sctx);
}

/* RFC 6066 §3: an address literal is never sent as SNI. */
static void test_no_sni_for_ip_literal(void **state)
{
    static const char *const names[] = {"127.0.0.1", "::1", NULL};
    struct tls_ctx *sctx = server_ctx("server-ecdsa", 12);
    struct tls_ctx *cctx = client_ctx();
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        struct tls *s = tls_new_server(sctx);
        struct tls *c = tls_new_client(cctx, names[i], false, NULL, false);
        handshake_ok(c, s);
        assert_null(tls_sni(s));
        tls_free(c);
        tls_free(s);
    }
    tls_ctx_unref(cctx);
    tls_ctx_unref(sctx);
}

/* Our server against a client that stops at TLS 1.2. */
static void test_tls12_server(void **state)
{
    struct tls_ctx *sctx = server_ctx("server-ecdsa", 12);
    struct tls *s = tls_new_server(sctx);
    struct raw r;
    int rs;
    raw_init(&r, raw_client_ctx(TLS1_2_VERSION, TLS1_2_VERSION), false);
    assert_true(SSL_set_tlsext_host_name(r.ssl, "mx.test"));

    assert_int_equal(raw_handshake(s, &r, &rs), TLS_OK);
    assert_int_equal(rs, 1);
    assert_string_equal(tls_version(s), "TLSv1.2");
    assert_string_equal(tls_cipher(s), "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");
    assert_string_equal(tls_sni(s), "mx.test");

    raw_free(&r);
    tls_free(s);
    tls_ctx_unref(sctx);
}

/* Our client against a server that stops at TLS 1.2, verifying. */
static void test_tls12_client(void **state)
{
    SSL_CTX *sctx = SSL_CTX_new(TLS_method());
    assert_non_null(sctx);
    assert_true(SSL_CTX_set_max_proto_version(sctx, TLS1_2_VERSION));
    assert_true(SSL_CTX_use_certificate_chain_file(sctx, TD "server-rsa.pem"));
    assert_true(SSL_CTX_use_PrivateKey_file(sctx, TD "server-rsa.key", SSL_FILETYPE_PEM));
    struct raw r;
    raw_init(&r, sctx, true);
    struct tls_ctx *cctx = client_ctx();
    struct tls *c = tls_new_client(cctx, "mx.test", true, "mx.test", false);
    int rs;

    assert_int_equal(raw_handshake(c, &r, &rs), TLS_OK);
    assert_string_equal(tls_version(c), "TLSv1.2");
    assert_string_equal(tls_cipher(c), "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
    assert_true(tls_verify_result(c, NULL));

    tls_free(c);
    tls_ctx_unref(cctx);
    raw_free(&r);
}

static void test_data_both_ways(void **state)
{
    struct tls_ctx *sctx = server_ctx("server-rsa", 12);
    struct tls_ctx *cctx = client_ctx();
    struct tls *s = tls_new_server(sctx);
    struct tls *c = tls_new_client(cctx, "mx.test", false, NULL, false);
    uint8_t got[256];
    size_t n;
    int st;
    handshake_ok(c, s);

    assert_int_equal(tls_write(c, (const uint8_t *)"EHLO a.test\r\n", 13), TLS_OK);
    xfer(c, s);
    n = drain(s, got, sizeof got, &st);
    assert_int_equal(st, TLS_AGAIN);
    assert_int_equal(n, 13);
    assert_memory_equal(got, "EHLO a.test\r\n", 13);

    assert_int_equal(tls_write(s, (const uint8_t *)"250 ok\r\n", 8), TLS_OK);
    xfer(s, c);
    n = drain(c, got, sizeof got, &st); /* also swallows the TLS 1.3 tickets */
    assert_int_equal(st, TLS_AGAIN);
    assert_int_equal(n, 8);
    assert_memory_equal(got, "250 ok\r\n", 8);

    /* Nothing to read: AGAIN with n = 0. */
    assert_int_equal(tls_read(c, got, sizeof got, &n), TLS_AGAIN);
    assert_int_equal(n, 0);
    /* An idle engine keeps no buffer memory of ours. */
    assert_null(tls_out(c)->data);
    assert_null(tls_out(s)->data);

    tls_free(c);
    tls_free(s);
    tls_ctx_unref(cctx);
    tls_ctx_unref(sctx);
}

static void one_megabyte(struct tls *from, struct tls *to)
{
    const size_t len = 1 << 20;
    uint8_t *in = malloc(len), *out = malloc(len);
    int st;
    assert_non_null(in);
    assert_non_null(out);
    for (size_t i = 0; i < len; i++)
        in[i] = (uint8_t)(i * 7 + (i >> 13));

    assert_int_equal(tls_write(from, in, len), TLS_OK);
    assert_true(buf_len(tls_out(from)) > len); /* all of it, in records */
    xfer(from, to);
    size_t n = drain(to, out, len, &st);
    assert_int_equal(st, TLS_AGAIN);
    assert_int_equal(n, len);
    assert_memory_equal(in, out, len);
    assert_int_equal(tls_pending_in(to), 0);
    free(in);
    free(out);
}

static void test_one_megabyte(void **state)
{
    struct tls_ctx *sctx = server_ctx("server-ecdsa", 12);
    struct tls_ctx *cctx = client_ctx();
    struct tls *s = tls_new_server(sctx);
    struct tls *c = tls_new_client(cctx, NULL, false, NULL, false);
    handshake_ok(c, s);
    one_megabyte(c, s);
    one_megabyte(s, c);
    tls_free(c);
    tls_free(s);
    tls_ctx_unref(cctx);
    tls_ctx_unref(sctx);
}

/* Ciphertext trickling in one byte at a time still decrypts. */
static void test_byte_at_a_time(void **state)
{
    struct tls_ctx *sctx = server_ctx("server-ecdsa", 12);
    struct tls_ctx *cctx = client_ctx();
    struct tls *s = tls_new_server(sctx);
    struct tls *c = tls_new_client(cctx, NULL, false, NULL, false);
    uint8_t got[64];
    size_t n = 0, total = 0;
    handshake_ok(c, s);

    assert_int_equal(tls_write(c, (const uint8_t *)"QUIT\r\n", 6), TLS_OK);
    struct buf *o = tls_out(c);
    while (buf_len(o) > 0) {
        assert_int_equal(tls_feed(s, buf_head(o), 1), 0);
        buf_consume(o, 1);
        int st = tls_read(s, got + total, sizeof got - total, &n);
        assert_true(st == TLS_OK || st == TLS_AGAIN);
        total += n;
    }
    assert_int_equal(total, 6);
    assert_memory_equal(got, "QUIT\r\n", 6);

    tls_free(c);
    tls_free(s);
    tls_ctx_unref(cctx);
    tls_ctx_unref(sctx);
}

static void test_close_notify(void **state)
{
    struct tls_ctx *sctx = server_ctx("server-ecdsa", 12);
    struct tls_ctx *cctx = client_ctx();
    struct tls *s = tls_new_server(sctx);
    struct tls *c = tls_new_client(cctx, NULL, false, NULL, false);
    uint8_t got[64];
    int st;
    handshake_ok(c, s);

    assert_int_equal(tls_write(c, (const uint8_t *)"bye", 3), TLS_OK);
    tls_shutdown(c);
    xfer(c, s);
    /* Data before the alert is still delivered, then TLS_CLOSED. */
    assert_int_equal(drain(s, got, sizeof got, &st), 3);
    assert_int_equal(st, TLS_CLOSED);

    tls_shutdown(s);
    xfer(s, c);
    drain(c, got, sizeof got, &st);
    assert_int_equal(st, TLS_CLOSED);
    /* Writing after our own close_notify fails. */
    assert_int_equal(tls_write(s, (const uint8_t *)"x", 1), TLS_ERR);

    tls_free(c);
    tls_free(s);
    tls_ctx_unref(cctx);
    tls_ctx_unref(sctx);
}

static void test_tls11_client_refused(void **state)
{
    struct tls_ctx *sctx = server_ctx("server-rsa", 12);
    struct tls *s = tls_new_server(sctx);
    struct raw r;
    int rs;
    raw_init(&r, raw_client_ctx(TLS1_VERSION, TLS1_1_VERSION), false);

    assert_int_equal(raw_handshake(s, &r, &rs), TLS_ERR);
    assert_int_not_equal(rs, 1);
    assert_string_equal(tls_error(s), "UNSUPPORTED_PROTOCOL");

    raw_free(&r);
    tls_free(s);
    tls_ctx_unref(sctx);
}

static void test_min_version_13_refuses_12(void **state)
{
    struct tls_ctx *sctx = server_ctx("server-ecdsa", 13);
    struct tls *s = tls_new_server(sctx);
    struct raw r;
    int rs;
    raw_init(&r, raw_client_ctx(TLS1_2_VERSION, TLS1_2_VERSION), false);

    assert_int_equal(raw_handshake(s, &r, &rs), TLS_ERR);
    assert_string_equal(tls_error(s), "UNSUPPORTED_PROTOCOL");
    raw_free(&r);
    tls_free(s);

    /* The same server still speaks 1.3 to our client. */
    struct tls_ctx *cctx = client_ctx();
    struct tls *c = tls_new_client(cctx, NULL, false, NULL, false);
    s = tls_new_server(sctx);
    handshake_ok(c, s);
    assert_string_equal(tls_version(s), "TLSv1.3");
    tls_free(c);
    tls_free(s);
    tls_ctx_unref(cctx);
    tls_ctx_unref(sctx);
}

/* ---- verification ----------------------------------------------------------- */

/* Handshakes a client (verify, name) against a server using cert; returns
 * the client's status, with why from tls_verify_result. */
static int verify_case(const char *cert, bool verify, const char *name, const char **why,
                       char *err, size_t errlen)
{
    struct tls_ctx *sctx = server_ctx(cert, 12);
    struct tls_ctx *cctx = client_ctx();
    struct tls *s = tls_new_server(sctx);
    struct tls *c = tls_new_client(cctx, name, verify, name, false);
    int cs, ss;
    handshake(c, s, &cs, &ss);
    bool ok = tls_verify_result(c, why);
    assert_true(ok == (*why != NULL && strcmp(*why, "ok") == 0));
    snprintf(err, errlen, "%s", cs == TLS_ERR ? tls_error(c) : "");
    if (cs == TLS_ERR) {
        /* The server learns of it through our alert. */
        assert_int_equal(ss, TLS_ERR);
        assert_non_null(strstr(tls_error(s), "_ALERT_"));
    }
    tls_free(c);
    tls_free(s);
    tls_ctx_unref(cctx);
    tls_ctx_unref(sctx);
    return cs;
}

static void test_verify_ok(void **state)
{
    const char *why;
    char err[256];
    assert_int_equal(verify_case("server-rsa", true, "mx.test", &why, err, sizeof err), TLS_OK);
    assert_string_equal(why, "ok");
    assert_int_equal(verify_case("server-rsa", true, "localhost", &why, err, sizeof err), TLS_OK);
    /* An address is matched against the iPAddress SAN, and not sent as SNI. */
    assert_int_equal(verify_case("server-ecdsa", true, "127.0.0.1", &why, err, sizeof err), TLS_OK);
}

static void test_verify_wrong_name(void **state)
{
    const char *why;
    char err[256];
    assert_int_equal(verify_case("server-ecdsa", true, "other.test", &why, err, sizeof err), TLS_ERR);
    assert_string_equal(why, "hostname mismatch");
    assert_string_equal(err, "certificate verify failed: hostname mismatch");

    assert_int_equal(verify_case("server-ecdsa", true, "127.0.0.2", &why, err, sizeof err), TLS_ERR);
    assert_string_equal(why, "IP address mismatch");

    /* Without verify the handshake completes and the result is kept. */
    assert_int_equal(verify_case("server-ecdsa", false, "other.test", &why, err, sizeof err), TLS_OK);
    assert_string_equal(why, "hostname mismatch");
}

/* RFC 9525 §6.3: a name only in the subject CN is no name. */
static void test_verify_cn_only(void **state)
{
    const char *why;
    char err[256];
    assert_int_equal(verify_case("cn-only", true, "mx.test", &why, err, sizeof err), TLS_ERR);
    assert_string_equal(why, "hostname mismatch");
    assert_int_equal(verify_case("cn-only", false, "mx.test", &why, err, sizeof err), TLS_OK);
    assert_string_equal(why, "hostname mismatch");
}

/* Verifying with no name to match fails; it never skips the name check. */
static void test_verify_without_name(void **state)
{
    static const char *const names[] = {"", NULL};
    struct tls_ctx *sctx = server_ctx("server-ecdsa", 12);
    struct tls_ctx *cctx = client_ctx();
    const char *why;
    int cs, ss;

    for (size_t i = 0; i < 2; i++) {
        struct tls *s = tls_new_server(sctx);
        struct tls *c = tls_new_client(cctx, "mx.test", true, names[i], false);
        handshake(c, s, &cs, &ss);
        assert_int_equal(cs, TLS_ERR);
        assert_true(tls_error_is_certificate(c));
        assert_string_equal(tls_error(c), "certificate verify failed: no name to verify");
        assert_false(tls_verify_result(c, &why));
        assert_string_equal(why, "no name to verify");
        tls_free(c);
        tls_free(s);

        /* Unverified, the result says the same. */
        s = tls_new_server(sctx);
        c = tls_new_client(cctx, "mx.test", false, names[i], false);
        handshake_ok(c, s);
        assert_false(tls_verify_result(c, &why));
        assert_string_equal(why, "no name to verify");
        tls_free(c);
        tls_free(s);
    }
    tls_ctx_unref(cctx);
    tls_ctx_unref(sctx);
}

/* ---- lenient (opportunistic) clients --------------------------------------- */

/* A raw RSA server for versions min..max with the TLS 1.2 suites ciphers
 * (NULL: BoringSSL's default). */
static SSL_CTX *raw_server_ctx(uint16_t min, uint16_t max, const char *ciphers)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    assert_non_null(ctx);
    assert_true(SSL_CTX_set_min_proto_version(ctx, min));
    assert_true(SSL_CTX_set_max_proto_version(ctx, max));
    if (ciphers != NULL)
        assert_true(SSL_CTX_set_strict_cipher_list(ctx, ciphers));
    assert_true(SSL_CTX_use_certificate_chain_file(ctx, TD "server-rsa.pem"));
    assert_true(SSL_CTX_use_PrivateKey_file(ctx, TD "server-rsa.key", SSL_FILETYPE_PEM));
    return ctx;
}

/* Our client (lenient or not) against a raw server; returns its status. */
static int lenient_case(bool lenient, uint16_t min, uint16_t max, const char *ciphers,
                        char *version, char *cipher, size_t cap)
{
    struct raw r;
    int rs;
    raw_init(&r, raw_server_ctx(min, max, ciphers), true);
    struct tls_ctx *cctx = client_ctx();
    struct tls *c = tls_new_client(cctx, "mx.test", false, "mx.test", lenient);
    assert_non_null(c);
    int st = raw_handshake(c, &r, &rs);
    snprintf(version, cap, "%s", st == TLS_OK ? tls_version(c) : tls_error(c));
    snprintf(cipher, cap, "%s", st == TLS_OK ? tls_cipher(c) : "");
    tls_free(c);
    tls_ctx_unref(cctx);
    raw_free(&r);
    return st;
}

/* RFC 7435: opportunistic delivery takes any encryption over plaintext; a
 * strict client (required, verify) keeps TLS 1.2+ with forward-secret AEADs. */
static void test_lenient_client(void **state)
{
    char v[128], ciph[128];

    /* A TLS 1.0-only server. */
    assert_int_equal(lenient_case(false, TLS1_VERSION, TLS1_VERSION, NULL, v, ciph, sizeof v), TLS_ERR);
    assert_string_equal(v, "TLSV1_ALERT_PROTOCOL_VERSION");
    assert_int_equal(lenient_case(true, TLS1_VERSION, TLS1_VERSION, NULL, v, ciph, sizeof v), TLS_OK);
    assert_string_equal(v, "TLSv1");
    assert_string_equal(ciph, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA");
    /* TLS 1.1 only. */
    assert_int_equal(lenient_case(false, TLS1_1_VERSION, TLS1_1_VERSION, NULL, v, ciph, sizeof v), TLS_ERR);
    assert_int_equal(lenient_case(true, TLS1_1_VERSION, TLS1_1_VERSION, NULL, v, ciph, sizeof v), TLS_OK);
    assert_string_equal(v, "TLSv1.1");
    /* TLS 1.2 with CBC suites only, and with RSA key exchange only. */
    assert_int_equal(lenient_case(false, TLS1_2_VERSION, TLS1_2_VERSION, "ECDHE-RSA-AES128-SHA", v, ciph,
                                  sizeof v), TLS_ERR);
    assert_int_equal(lenient_case(true, TLS1_2_VERSION, TLS1_2_VERSION, "ECDHE-RSA-AES128-SHA", v, ciph,
                                  sizeof v), TLS_OK);
    assert_string_equal(ciph, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA");
    assert_int_equal(lenient_case(false, TLS1_2_VERSION, TLS1_2_VERSION, "AES128-GCM-SHA256", v, ciph,
                                  sizeof v), TLS_ERR);
    assert_int_equal(lenient_case(true, TLS1_2_VERSION, TLS1_2_VERSION, "AES128-GCM-SHA256", v, ciph,
                                  sizeof v), TLS_OK);
    assert_string_equal(ciph, "TLS_RSA_WITH_AES_128_GCM_SHA256");
    /* A modern server gets the same from both. */
    assert_int_equal(lenient_case(true, TLS1_VERSION, TLS1_3_VERSION, NULL, v, ciph, sizeof v), TLS_OK);
    assert_string_equal(v, "TLSv1.3");
    assert_int_equal(lenient_case(true, TLS1_2_VERSION, TLS1_2_VERSION, NULL, v, ciph, sizeof v), TLS_OK);
    assert_string_equal(ciph, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
}

static void test_verify_self_signed(void **state)
{
    const char *why;
    char err[256];
    assert_int_equal(verify_case("selfsigned", true, "mx.test", &why, err, sizeof err), TLS_ERR);
    assert_string_equal(why, X509_verify_cert_error_string(X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT));
    assert_true(strncmp(err, "certificate verify failed: self", 31) == 0);
    assert_non_null(strstr(why, "self"));

    assert_int_equal(verify_case("selfsigned", false, "mx.test", &why, err, sizeof err), TLS_OK);
    assert_non_null(strstr(why, "self"));
}

static void test_verify_expired(void **state)
{
    const char *why;
    char err[256];
    assert_int_equal(verify_case("expired", true, "mx.test", &why, err, sizeof err), TLS_ERR);
    assert_string_equal(why, "certificate has expired");
    assert_string_equal(err, "certificate verify failed: certificate has expired");

    assert_int_equal(verify_case("expired", false, "mx.test", &why, err, sizeof err), TLS_OK);
    assert_string_equal(why, "certificate has expired");
}

/* No ca_file: nothing is trusted, but an unverified handshake still works. */
static void test_client_without_ca(void **state)
{
    struct cfg cc;
    char err[256];
    cfg_init(&cc, 12);
    struct tls_ctx *cctx = tls_ctx_client_new(&cc.tls, err, sizeof err);
    assert_non_null(cctx);
    struct tls_ctx *sctx = server_ctx("server-rsa", 12);
    struct tls *s = tls_new_server(sctx);
    struct tls *c = tls_new_client(cctx, "mx.test", false, "mx.test", false);
    const char *why;
    handshake_ok(c, s);
    assert_false(tls_verify_result(c, &why));
    assert_string_equal(why, X509_verify_cert_error_string(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY));
    tls_free(c);
    tls_free(s);
    tls_ctx_unref(cctx);
    tls_ctx_unref(sctx);
}

/* ---- several certificates ------------------------------------------------- */

static struct tls_ctx *dual_ctx(void)
{
    struct cfg c;
    char err[256] = "";
    cfg_init(&c, 12);
    /* RSA listed first: ECDSA must still win with clients that take both. */
    cfg_add(&c, TD "server-rsa.pem", TD "server-rsa.key");
    cfg_add(&c, TD "server-ecdsa.pem", TD "server-ecdsa.key");
    struct tls_ctx *ctx = tls_ctx_server_new(&c.tls, err, sizeof err);
    if (ctx == NULL)
        fail_msg("dual ctx: %s", err);
    return ctx;
}

/* The certificate a raw client restricted as given (max version, sigalgs
 * and TLS 1.2 ciphers if not NULL) and sending sni (NULL: none) receives
 * from sctx: its key type, returned, and, if name is not NULL, its first
 * dNSName written there. */
static int served(struct tls_ctx *sctx, uint16_t max, const uint16_t *sigalgs, size_t nsigalgs,
                  const char *ciphers, const char *sni, char *name, size_t cap)
{
    SSL_CTX *cctx = raw_client_ctx(TLS1_2_VERSION, max);
    if (sigalgs != NULL)
        assert_true(SSL_CTX_set_verify_algorithm_prefs(cctx, sigalgs, nsigalgs));
    if (ciphers != NULL)
        assert_true(SSL_CTX_set_strict_cipher_list(cctx, ciphers));
    struct raw r;
    raw_init(&r, cctx, false);
    if (sni != NULL)
        assert_true(SSL_set_tlsext_host_name(r.ssl, sni));
    struct tls *s = tls_new_server(sctx);
    int rs;
    int st = raw_handshake(s, &r, &rs);
    if (st != TLS_OK || rs != 1)
        fail_msg("handshake with SNI %s: %d %s", sni ? sni : "-", st, tls_error(s));
    if (name != NULL) {
        X509 *x = SSL_get_peer_certificate(r.ssl);
        assert_non_null(x);
        GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
        assert_non_null(sans);
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, 0);
        assert_int_equal(gn->type, GEN_DNS);
        snprintf(name, cap, "%.*s", ASN1_STRING_length(gn->d.dNSName),
                 (const char *)ASN1_STRING_get0_data(gn->d.dNSName));
        GENERAL_NAMES_free(sans);
        X509_free(x);
    }
    int type = raw_peer_key_type(&r);
    tls_free(s);
    raw_free(&r);
    return type;
}

/* Which key type a raw client restricted as given receives from sctx. */
static int served_key(struct tls_ctx *sctx, uint16_t max, const uint16_t *sigalgs, size_t nsigalgs,
                      const char *ciphers)
{
    return served(sctx, max, sigalgs, nsigalgs, ciphers, NULL, NULL, 0);
}

static void test_rsa_and_ecdsa(void **state)
{
    static const uint16_t ecdsa[] = {SSL_SIGN_ECDSA_SECP256R1_SHA256};
    static const uint16_t rsa[] = {SSL_SIGN_RSA_PSS_RSAE_SHA256, SSL_SIGN_RSA_PKCS1_SHA256};
    struct tls_ctx *sctx = dual_ctx();

    /* Everything supported: ECDSA preferred, in 1.3 and 1.2. */
    assert_int_equal(served_key(sctx, TLS1_3_VERSION, NULL, 0, NULL), EVP_PKEY_EC);
    assert_int_equal(served_key(sctx, TLS1_2_VERSION, NULL, 0, NULL), EVP_PKEY_EC);
    /* TLS 1.3 decides by signature algorithms. */
    assert_int_equal(served_key(sctx, TLS1_3_VERSION, ecdsa, 1, NULL), EVP_PKEY_EC);
    assert_int_equal(served_key(sctx, TLS1_3_VERSION, rsa, 2, NULL), EVP_PKEY_RSA);
    /* TLS 1.2 also by cipher suite. */
    assert_int_equal(served_key(sctx, TLS1_2_VERSION, rsa, 2, NULL), EVP_PKEY_RSA);
    assert_int_equal(served_key(sctx, TLS1_2_VERSION, NULL, 0, "ECDHE-RSA-AES128-GCM-SHA256"),
                     EVP_PKEY_RSA);
    assert_int_equal(served_key(sctx, TLS1_2_VERSION, NULL, 0, "ECDHE-ECDSA-AES128-GCM-SHA256"),
                     EVP_PKEY_EC);

    /* And our own client gets ECDSA, verified. */
    struct tls_ctx *cctx = client_ctx();
    struct tls *s = tls_new_server(sctx);
    struct tls *c = tls_new_client(cctx, "mx.test", true, "mx.test", false);
    handshake_ok(c, s);
    tls_free(c);
    tls_free(s);
    tls_ctx_unref(cctx);
    tls_ctx_unref(sctx);
}

/* ---- certificates by SNI ---------------------------------------------------- */

/* Default RSA and ECDSA certificates for localhost/mx.test (RSA first, so
 * that the key type, not the order, decides), then ones for a.test (RSA
 * and ECDSA), b.w.test and *.w.test. */
static struct tls_ctx *sni_ctx(void)
{
    static const char *const names[] = {"server-rsa", "server-ecdsa", "sni-a-rsa", "sni-a-ecdsa",
                                        "sni-b-ecdsa", "sni-wild-ecdsa"};
    static char files[6][2][64];
    struct cfg c;
    char err[256] = "";
    cfg_init(&c, 12);
    for (size_t i = 0; i < 6; i++) {
        snprintf(files[i][0], sizeof files[i][0], TD "%s.pem", names[i]);
        snprintf(files[i][1], sizeof files[i][1], TD "%s.key", names[i]);
        cfg_add(&c, files[i][0], files[i][1]);
    }
    struct tls_ctx *ctx = tls_ctx_server_new(&c.tls, err, sizeof err);
    if (ctx == NULL)
        fail_msg("sni ctx: %s", err);
    return ctx;
}

/* The first dNSName of the certificate a raw TLS 1.3 client sending sni
 * (NULL: none), restricted to sigalgs if given, gets from sctx, written
 * to name; returns its key type. */
static int served_name(struct tls_ctx *sctx, const char *sni, const uint16_t *sigalgs,
                       size_t nsigalgs, char *name, size_t cap)
{
    return served(sctx, TLS1_3_VERSION, sigalgs, nsigalgs, NULL, sni, name, cap);
}

static void test_certificate_by_sni(void **state)
{
    static const uint16_t rsa[] = {SSL_SIGN_RSA_PSS_RSAE_SHA256};
    struct tls_ctx *sctx = sni_ctx();
    char name[64];

    /* An exact name, then the key type among its certificates. */
    assert_int_equal(served_name(sctx, "a.test", NULL, 0, name, sizeof name), EVP_PKEY_EC);
    assert_string_equal(name, "a.test");
    assert_int_equal(served_name(sctx, "a.test", rsa, 1, name, sizeof name), EVP_PKEY_RSA);
    assert_string_equal(name, "a.test");
    /* Case and a final dot do not matter. */
    assert_int_equal(served_name(sctx, "A.Test.", NULL, 0, name, sizeof name), EVP_PKEY_EC);
    assert_string_equal(name, "a.test");
    /* Exact beats wildcard; the wildcard covers one label, no more, no less. */
    served_name(sctx, "b.w.test", NULL, 0, name, sizeof name);
    assert_string_equal(name, "b.w.test");
    served_name(sctx, "c.w.test", NULL, 0, name, sizeof name);
    assert_string_equal(name, "*.w.test");
    served_name(sctx, "x.c.w.test", NULL, 0, name, sizeof name);
    assert_string_equal(name, "localhost");
    served_name(sctx, "w.test", NULL, 0, name, sizeof name);
    assert_string_equal(name, "localhost");
    /* No SNI, or an unknown name: by key type among all, as before. */
    assert_int_equal(served_name(sctx, NULL, NULL, 0, name, sizeof name), EVP_PKEY_EC);
    assert_string_equal(name, "localhost");
    assert_int_equal(served_name(sctx, "other.test", rsa, 1, name, sizeof name), EVP_PKEY_RSA);
    assert_string_equal(name, "localhost");
    /* The name's only certificates are ECDSA, the client takes RSA only:
     * a certificate it can use, for another name, rather than none. */
    assert_int_equal(served_name(sctx, "b.w.test", rsa, 1, name, sizeof name), EVP_PKEY_RSA);
    assert_string_equal(name, "localhost");

    /* Our verifying client accepts what it is served by name. */
    static const char *const verified[] = {"a.test", "b.w.test", "c.w.test", "mx.test"};
    struct tls_ctx *cctx = client_ctx();
    for (size_t i = 0; i < sizeof verified / sizeof verified[0]; i++) {
        struct tls *s = tls_new_server(sctx);
        struct tls *c = tls_new_client(cctx, verified[i], true, verified[i], false);
        handshake_ok(c, s);
        assert_string_equal(tls_sni(s), verified[i]);
        tls_free(c);
        tls_free(s);
    }
    tls_ctx_unref(cctx);
    tls_ctx_unref(sctx);
}

/* ---- ALPN ------------------------------------------------------------------ */

/* A raw client offering the ALPN list protos (wire format) to ctx; returns
 * the server engine's status, and the client's first error in *reason. */
static int alpn_case(struct tls_ctx *sctx, uint16_t max, const char *protos, size_t len,
                     uint32_t *reason)
{
    struct raw r;
    int rs;
    raw_init(&r, raw_client_ctx(TLS1_2_VERSION, max), false);
    if (protos != NULL)
        assert_int_equal(SSL_set_alpn_protos(r.ssl, (const uint8_t *)protos, len), 0);
    struct tls *s = tls_new_server(sctx);
    int st = raw_handshake(s, &r, &rs);
    *reason = rs == 1 ? 0 : ERR_GET_REASON(ERR_peek_error());
    ERR_clear_error();
    tls_free(s);
    raw_free(&r);
    return st;
}

/* RFC 7301 §3.2 and ALPACA: SMTP has no ALPN id, so an offer of any protocol
 * is refused with no_application_protocol (alert 120); no offer is served. */
static void test_alpn_refused(void **state)
{
    struct tls_ctx *sctx = server_ctx("server-ecdsa", 12);
    uint32_t reason;
    static const struct {
        const char *protos;
        size_t len;
    } offers[] = {{"\x08http/1.1", 9}, {"\x02h2\x08http/1.1", 12}, {"\x04smtp", 5}};

    for (size_t i = 0; i < sizeof offers / sizeof offers[0]; i++) {
        assert_int_equal(alpn_case(sctx, TLS1_3_VERSION, offers[i].protos, offers[i].len, &reason),
                         TLS_ERR);
        assert_int_equal(reason, SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL);
        assert_int_equal(alpn_case(sctx, TLS1_2_VERSION, offers[i].protos, offers[i].len, &reason),
                         TLS_ERR);
        assert_int_equal(reason, SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL);
    }
    assert_int_equal(alpn_case(sctx, TLS1_3_VERSION, NULL, 0, &reason), TLS_OK);
    assert_int_equal(alpn_case(sctx, TLS1_2_VERSION, NULL, 0, &reason), TLS_OK);
    tls_ctx_unref(sctx);

    /* With several certificates too (the choice runs before ALPN). */
    sctx = dual_ctx();
    assert_int_equal(alpn_case(sctx, TLS1_3_VERSION, "\x08http/1.1", 9, &reason), TLS_ERR);
    assert_int_equal(reason, SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL);
    tls_ctx_unref(sctx);
}

/* ---- session resumption ------------------------------------------------------ */

static SSL_SESSION *saved_session;

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    (void)ssl;
    SSL_SESSION_free(saved_session);
    saved_session = sess; /* ours now */
    return 1;
}

/* One handshake of a raw client (TLS 1.2..max) with a new engine of sctx,
 * offering offer (NULL: none). Returns whether the engine resumed it, and
 * leaves the ticket it was given in saved_session. */
static bool resume_once(struct tls_ctx *sctx, uint16_t max, SSL_SESSION *offer)
{
    SSL_CTX *cctx = raw_client_ctx(TLS1_2_VERSION, max);
    SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(cctx, on_new_session);
    struct raw r;
    int rs;
    uint8_t tmp[256];
    raw_init(&r, cctx, false);
    if (offer != NULL)
        assert_true(SSL_set_session(r.ssl, offer));
    struct tls *s = tls_new_server(sctx);
    int st = raw_handshake(s, &r, &rs);
    if (st != TLS_OK || rs != 1)
        fail_msg("handshake: %d %s", st, tls_error(s));
    /* TLS 1.3 tickets come after the handshake: let the client read them. */
    assert_true(SSL_read(r.ssl, tmp, sizeof tmp) <= 0);
    ERR_clear_error();
    bool resumed = tls_resumed(s);
    assert_int_equal(resumed, SSL_session_reused(r.ssl) != 0);
    tls_free(s);
    raw_free(&r);
    return resumed;
}

/* A fresh ticket from a, then whether b resumes it, in TLS 1.3 and 1.2. */
static void expect_resume(struct tls_ctx *a, struct tls_ctx *b, bool want)
{
    static const uint16_t versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};
    for (size_t i = 0; i < 2; i++) {
        SSL_SESSION_free(saved_session);
        saved_session = NULL;
        assert_false(resume_once(a, versions[i], NULL));
        assert_non_null(saved_session);
        SSL_SESSION *ticket = saved_session;
        saved_session = NULL;
        if (resume_once(b, versions[i], ticket) != want)
            fail_msg("TLS %s: resumed %s", versions[i] == TLS1_3_VERSION ? "1.3" : "1.2",
                     want ? "no" : "yes");
        SSL_SESSION_free(ticket);
    }
    SSL_SESSION_free(saved_session);
    saved_session = NULL;
}

/* Writes n bytes of keys (pattern-filled from seed) to a temporary file. */
static const char *key_file(const char *name, size_t n, uint8_t seed)
{
    static char path[4][512];
    static int next;
    const char *dir = getenv("TEST_TMPDIR");
    char *p = path[next++ % 4];
    snprintf(p, sizeof path[0], "%s/%s", dir != NULL ? dir : "/tmp", name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < n; i++)
        fputc((int)(uint8_t)(seed + i * 31 + (i / 80) * 7), f);
    assert_int_equal(fclose(f), 0);
    return p;
}

/* Concatenates files a and b into a new one (a key list in another order). */
static const char *key_cat(const char *name, const char *a, const char *b)
{
    static char path[512];
    const char *dir = getenv("TEST_TMPDIR");
    snprintf(path, sizeof path, "%s/%s", dir != NULL ? dir : "/tmp", name);
    FILE *out = fopen(path, "wb");
    assert_non_null(out);
    const char *in[] = {a, b};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(in[i], "rb");
        int ch;
        assert_non_null(f);
        while ((ch = fgetc(f)) != EOF)
            fputc(ch, out);
        fclose(f);
    }
    assert_int_equal(fclose(out), 0);
    return path;
}

static struct tls_ctx *ticket_ctx(const char *keys, char *err, size_t errlen)
{
    struct cfg c;
    cfg_init(&c, 12);
    cfg_add(&c, TD "server-ecdsa.pem", TD "server-ecdsa.key");
    c.tls.ticket_keys = (char *)keys;
    return tls_ctx_server_new(&c.tls, err, errlen);
}

/* Without a key file: BoringSSL's own keys, per context. */
static void test_resume_default_keys(void **state)
{
    struct tls_ctx *a = server_ctx("server-ecdsa", 12), *b = server_ctx("server-ecdsa", 12);
    expect_resume(a, a, true);
    expect_resume(a, b, false);
    tls_ctx_unref(a);
    tls_ctx_unref(b);
}

/* Two contexts (two instances of a fleet, or before and after SIGHUP) from
 * the same key file resume each other's sessions; the first key encrypts,
 * every key decrypts, and a key that is gone no longer resumes. */
static void test_resume_shared_keys(void **state)
{
    char err[512] = "";
    const char *one = key_file("one.keys", 80, 1), *two = key_file("two.keys", 160, 2);
    struct tls_ctx *a = ticket_ctx(two, err, sizeof err);
    if (a == NULL)
        fail_msg("%s", err);
    struct tls_ctx *b = ticket_ctx(two, err, sizeof err);
    assert_non_null(b);
    expect_resume(a, b, true);
    expect_resume(b, a, true);

    /* Rotation: a new key first, the old ones after it. */
    const char *rotated = key_cat("rotated.keys", one, two);
    struct tls_ctx *r = ticket_ctx(rotated, err, sizeof err);
    assert_non_null(r);
    expect_resume(a, r, true);  /* an old ticket, decrypted with a later key */
    expect_resume(r, r, true);
    expect_resume(r, a, false); /* a does not have the new key */
    struct tls_ctx *o = ticket_ctx(one, err, sizeof err);
    assert_non_null(o);
    expect_resume(a, o, false); /* the old keys dropped */
    expect_resume(r, o, true);

    /* nginx's 48-byte key. */
    const char *k48 = key_file("k48.keys", 48, 3);
    struct tls_ctx *x = ticket_ctx(k48, err, sizeof err), *y = ticket_ctx(k48, err, sizeof err);
    assert_non_null(x);
    assert_non_null(y);
    expect_resume(x, y, true);
    expect_resume(x, a, false);

    tls_ctx_unref(a);
    tls_ctx_unref(b);
    tls_ctx_unref(r);
    tls_ctx_unref(o);
    tls_ctx_unref(x);
    tls_ctx_unref(y);
}

static void test_ticket_key_errors(void **state)
{
    char err[512] = "", want[1024];
    const char *bad = key_file("bad.keys", 81, 1);
    assert_null(ticket_ctx(bad, err, sizeof err));
    snprintf(want, sizeof want,
             "tls.ticket_keys: \"%s\": 81 bytes: expected 1 to 64 records of 80 bytes, or one key of 48 bytes",
             bad);
    assert_string_equal(err, want);

    bad = key_file("empty.keys", 0, 1);
    assert_null(ticket_ctx(bad, err, sizeof err));
    snprintf(want, sizeof want,
             "tls.ticket_keys: \"%s\": 0 bytes: expected 1 to 64 records of 80 bytes, or one key of 48 bytes",
             bad);
    assert_string_equal(err, want);

    bad = key_file("big.keys", 65 * 80, 1);
    assert_null(ticket_ctx(bad, err, sizeof err));
    assert_non_null(strstr(err, "more than 5120 bytes"));

    /* 96 = two 48-byte keys: only 80-byte records come in lists. */
    bad = key_file("two48.keys", 96, 1);
    assert_null(ticket_ctx(bad, err, sizeof err));
    assert_non_null(strstr(err, "96 bytes"));

    assert_null(ticket_ctx(TD "missing.keys", err, sizeof err));
    assert_string_equal(err, "tls.ticket_keys: cannot load \"" TD "missing.keys\": No such file or directory");

    /* With the place in the configuration, the message starts with it. */
    struct cfg c;
    cfg_init(&c, 12);
    cfg_add(&c, TD "server-ecdsa.pem", TD "server-ecdsa.key");
    c.tls.ticket_keys = TD "missing.keys";
    c.tls.ticket_keys_at = "proxy.conf:9";
    assert_null(tls_ctx_server_new(&c.tls, err, sizeof err));
    assert_string_equal(err, "proxy.conf:9: tls.ticket_keys: cannot load \"" TD
                             "missing.keys\": No such file or directory");
}

/* ---- configuration errors -------------------------------------------------- */

static void expect_server_error(struct cfg *c, const char *want)
{
    char err[512] = "";
    struct tls_ctx *ctx = tls_ctx_server_new(&c->tls, err, sizeof err);
    assert_null(ctx);
    assert_string_equal(err, want);
}

static void test_config_errors(void **state)
{
    struct cfg c;

    cfg_init(&c, 12);
    cfg_add(&c, TD "missing.pem", TD "server-rsa.key");
    expect_server_error(&c, "tls.certificate: cannot load \"" TD "missing.pem\": No such file or directory");

    cfg_init(&c, 12);
    cfg_add(&c, TD "server-rsa.pem", TD "missing.key");
    expect_server_error(&c, "tls.key: cannot load \"" TD "missing.key\": No such file or directory");

    cfg_init(&c, 12);
    cfg_add(&c, TD "server-rsa.pem", TD "server-ecdsa.key");
    expect_server_error(&c, "tls.key: \"" TD "server-ecdsa.key\" does not match tls.certificate \"" TD
                            "server-rsa.pem\"");

    cfg_init(&c, 12);
    cfg_add(&c, TD "server-rsa.key", TD "server-rsa.key");
    expect_server_error(&c, "tls.certificate: cannot load \"" TD "server-rsa.key\": no PEM certificate found");

    /* A CERTIFICATE block that is not one. */
    cfg_init(&c, 12);
    cfg_add(&c, TD "broken.pem", TD "server-rsa.key");
    expect_server_error(&c, "tls.certificate: cannot load \"" TD "broken.pem\": invalid PEM certificate");

    cfg_init(&c, 12);
    cfg_add(&c, TD "server-rsa.pem", TD "server-rsa.pem");
    expect_server_error(&c, "tls.key: cannot load \"" TD "server-rsa.pem\": no PEM private key found");

    /* The second of two files is checked as well as the first. */
    cfg_init(&c, 12);
    cfg_add(&c, TD "server-rsa.pem", TD "server-rsa.key");
    cfg_add(&c, TD "server-ecdsa.pem", TD "expired.key");
    expect_server_error(&c, "tls.key: \"" TD "expired.key\" does not match tls.certificate \"" TD
                            "server-ecdsa.pem\"");

    /* Where the configuration names the files, messages start with it. */
    char *cert_at[] = {"p.conf:3", "p.conf:4"}, *key_at[] = {"p.conf:5", "p.conf:6"};
    cfg_init(&c, 12);
    cfg_add(&c, TD "server-rsa.pem", TD "server-rsa.key");
    cfg_add(&c, TD "server-ecdsa.pem", TD "expired.key");
    c.tls.certificate_at = cert_at;
    c.tls.key_at = key_at;
    expect_server_error(&c, "p.conf:6: tls.key: \"" TD "expired.key\" does not match tls.certificate \"" TD
                            "server-ecdsa.pem\"");
    cfg_init(&c, 12);
    cfg_add(&c, TD "server-rsa.pem", TD "server-rsa.key");
    cfg_add(&c, TD "broken.pem", TD "server-rsa.key");
    c.tls.certificate_at = cert_at;
    c.tls.key_at = key_at;
    expect_server_error(&c, "p.conf:4: tls.certificate: cannot load \"" TD "broken.pem\": invalid PEM certificate");

    cfg_init(&c, 12);
    cfg_add(&c, TD "server-rsa.pem", TD "server-rsa.key");
    c.tls.nkeys = 0;
    expect_server_error(&c, "tls.key: 1 certificate file(s) but 0 key file(s)");

    cfg_init(&c, 12);
    c.tls.ciphers = "ECDHE-RSA-AES128-GCM-SHA256:NO-SUCH-CIPHER";
    expect_server_error(&c, "tls.ciphers: invalid cipher list \"ECDHE-RSA-AES128-GCM-SHA256:NO-SUCH-CIPHER\": "
                            "unknown cipher name or rule (BoringSSL syntax, TLS 1.2 suites)");

    char err[512] = "";

    cfg_init(&c, 12);
    c.tls.ca_file = TD "missing-ca.pem";
    assert_null(tls_ctx_client_new(&c.tls, err, sizeof err));
    assert_string_equal(err, "tls.ca_file: cannot load \"" TD "missing-ca.pem\": No such file or directory");

    cfg_init(&c, 12);
    c.tls.ca_file = TD "broken.pem";
    assert_null(tls_ctx_client_new(&c.tls, err, sizeof err));
    assert_string_equal(err, "tls.ca_file: cannot load \"" TD "broken.pem\": invalid PEM certificate");

    cfg_init(&c, 12);
    c.tls.ca_file = TD "server-rsa.key";
    assert_null(tls_ctx_client_new(&c.tls, err, sizeof err));
    assert_string_equal(err, "tls.ca_file: cannot load \"" TD "server-rsa.key\": no PEM certificate found");
}

/* A configured TLS 1.2 cipher list is what the server negotiates. */
static void test_cipher_list(void **state)
{
    struct cfg c;
    char err[256] = "";
    cfg_init(&c, 12);
    cfg_add(&c, TD "server-rsa.pem", TD "server-rsa.key");
    c.tls.ciphers = "ECDHE-RSA-CHACHA20-POLY1305";
    struct tls_ctx *sctx = tls_ctx_server_new(&c.tls, err, sizeof err);
    assert_non_null(sctx);
    struct tls *s = tls_new_server(sctx);
    struct raw r;
    int rs;
    raw_init(&r, raw_client_ctx(TLS1_2_VERSION, TLS1_2_VERSION), false);
    assert_int_equal(raw_handshake(s, &r, &rs), TLS_OK);
    assert_string_equal(tls_cipher(s), "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256");
    raw_free(&r);
    tls_free(s);
    tls_ctx_unref(sctx);
}

/* ---- the built-in certificate, hostile input ----------------------------------- */

static void test_self_signed_default(void **state)
{
    struct cfg c;
    char err[256] = "";
    cfg_init(&c, 12);
    struct tls_ctx *sctx = tls_ctx_server_new(&c.tls, err, sizeof err);
    assert_non_null(sctx);
    struct tls_ctx *cctx = client_ctx();

    struct tls *s = tls_new_server(sctx);
    struct tls *c1 = tls_new_client(cctx, "localhost", false, "localhost", false);
    const char *why;
    handshake_ok(c1, s);
    /* Right name, but nobody vouches for it. */
    assert_false(tls_verify_result(c1, &why));
    assert_non_null(strstr(why, "self"));
    tls_free(c1);
    tls_free(s);

    /* The certificate is ECDSA P-256 for localhost. */
    SSL_CTX *rctx = raw_client_ctx(TLS1_2_VERSION, TLS1_3_VERSION);
    struct raw r;
    int rs;
    raw_init(&r, rctx, false);
    s = tls_new_server(sctx);
    assert_int_equal(raw_handshake(s, &r, &rs), TLS_OK);
    X509 *x = SSL_get_peer_certificate(r.ssl);
    assert_non_null(x);
    assert_int_equal(X509_check_host(x, "localhost", 9, 0, NULL), 1);
    EVP_PKEY *k = X509_get_pubkey(x);
    assert_int_equal(EVP_PKEY_id(k), EVP_PKEY_EC);
    EVP_PKEY_free(k);
    X509_free(x);
    raw_free(&r);
    tls_free(s);

    tls_ctx_unref(cctx);
    tls_ctx_unref(sctx);
}

static void test_garbage_to_server(void **state)
{
    struct tls_ctx *sctx = server_ctx("server-ecdsa", 12);
    struct tls *s = tls_new_server(sctx);
    static const char junk[] = "EHLO client.example\r\n";
    assert_int_equal(tls_feed(s, (const uint8_t *)junk, sizeof junk - 1), 0);
    assert_int_equal(tls_handshake(s), TLS_ERR);
    assert_string_equal(tls_error(s), "WRONG_VERSION_NUMBER");
    tls_free(s);

    /* Garbage after a good handshake fails tls_read. */
    struct tls_ctx *cctx = client_ctx();
    struct tls *c = tls_new_client(cctx, NULL, false, NULL, false);
    uint8_t got[64];
    size_t n;
    s = tls_new_server(sctx);
    handshake_ok(c, s);
    static const uint8_t bad_record[] = {0x17, 0x03, 0x03, 0x00, 0x20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                         11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
                                         25, 26, 27, 28, 29, 30, 31, 32};
    assert_int_equal(tls_feed(s, bad_record, sizeof bad_record), 0);
    assert_int_equal(tls_read(s, got, sizeof got, &n), TLS_ERR);
    assert_string_equal(tls_error(s), "DECRYPTION_FAILED_OR_BAD_RECORD_MAC");
    tls_free(c);
    tls_free(s);
    tls_ctx_unref(cctx);
    tls_ctx_unref(sctx);
}

static void test_write_before_handshake(void **state)
{
    struct tls_ctx *sctx = server_ctx("server-ecdsa", 12);
    struct tls *s = tls_new_server(sctx);
    assert_int_equal(tls_write(s, (const uint8_t *)"x", 1), TLS_ERR);
    assert_string_equal(tls_error(s), "write before the handshake completed");
    tls_shutdown(s); /* harmless */
    tls_free(s);
    tls_free(NULL);
    tls_ctx_unref(NULL);
    tls_ctx_unref(sctx);
    assert_non_null(strstr(tls_library_version(), "BoringSSL"));
}

/* ---- memory -------------------------------------------------------------------- */

/*
 * Heap held per idle, handshaked client+server pair (TLS 1.3, ECDSA,
 * verified client), measured with mallinfo2 over many pairs. Prints the
 * figure; the bound only catches gross regressions (e.g. record buffers
 * or parsed certificates kept after the handshake).
 */
static void test_idle_memory(void **state)
{
    enum { PAIRS = 1000 };
    struct tls_ctx *sctx = server_ctx("server-ecdsa", 12);
    struct tls_ctx *cctx = client_ctx();
    struct tls **cs = calloc(PAIRS, sizeof *cs), **ss = calloc(PAIRS, sizeof *ss);
    assert_non_null(cs);
    assert_non_null(ss);
    uint8_t got[64];
    int st;

    /* Warm up lazily allocated library state before measuring. */
    for (int i = 0; i < 2; i++) {
        struct tls *c = tls_new_client(cctx, "mx.test", true, "mx.test", false), *s = tls_new_server(sctx);
        handshake_ok(c, s);
        drain(c, got, sizeof got, &st);
        tls_free(c);
        tls_free(s);
    }
    malloc_trim(0);
    size_t before = mallinfo2().uordblks;
    for (int i = 0; i < PAIRS; i++) {
        cs[i] = tls_new_client(cctx, "mx.test", true, "mx.test", false);
        ss[i] = tls_new_server(sctx);
        handshake_ok(cs[i], ss[i]);
        drain(cs[i], got, sizeof got, &st); /* process the session tickets */
        assert_int_equal(st, TLS_AGAIN);
    }
    size_t after = mallinfo2().uordblks;
    if (after > before) {
        size_t per_pair = (after - before) / PAIRS;
        print_message("idle handshaked client+server pair: %zu bytes of heap\n", per_pair);
        assert_true(per_pair < 32 * 1024);
    } else {
        /* valgrind and the sanitizers replace malloc; mallinfo2 sees nothing. */
        print_message("idle memory not measurable with this allocator\n");
    }
    for (int i = 0; i < PAIRS; i++) {
        tls_free(cs[i]);
        tls_free(ss[i]);
    }
    free(cs);
    free(ss);
    tls_ctx_unref(cctx);
    tls_ctx_unref(sctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls13_handshake_and_names),
        cmocka_unit_test(test_no_sni_for_ip_literal),
        cmocka_unit_test(test_tls12_server),
        cmocka_unit_test(test_tls12_client),
        cmocka_unit_test(test_data_both_ways),
        cmocka_unit_test(test_one_megabyte),
        cmocka_unit_test(test_byte_at_a_time),
        cmocka_unit_test(test_close_notify),
        cmocka_unit_test(test_tls11_client_refused),
        cmocka_unit_test(test_min_version_13_refuses_12),
        cmocka_unit_test(test_verify_ok),
        cmocka_unit_test(test_verify_wrong_name),
        cmocka_unit_test(test_verify_cn_only),
        cmocka_unit_test(test_verify_without_name),
        cmocka_unit_test(test_lenient_client),
        cmocka_unit_test(test_verify_self_signed),
        cmocka_unit_test(test_verify_expired),
        cmocka_unit_test(test_client_without_ca),
        cmocka_unit_test(test_rsa_and_ecdsa),
        cmocka_unit_test(test_certificate_by_sni),
        cmocka_unit_test(test_alpn_refused),
        cmocka_unit_test(test_resume_default_keys),
        cmocka_unit_test(test_resume_shared_keys),
        cmocka_unit_test(test_ticket_key_errors),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_cipher_list),
        cmocka_unit_test(test_self_signed_default),
        cmocka_unit_test(test_garbage_to_server),
        cmocka_unit_test(test_write_before_handshake),
        cmocka_unit_test(test_idle_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
