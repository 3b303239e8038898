/*
 * tls: BoringSSL over our own buffers, h2o style. A custom BIO reads
 * ciphertext from the engine's input buffer (filled by tls_feed) and appends
 * what BoringSSL writes to the output buffer (drained by the caller through
 * tls_out). Nothing here touches a socket or logs: failures come back as
 * TLS_ERR plus a string from tls_error(), and the caller decides what to say.
 *
 * This file is the engine over memory buffers (feed, handshake, read, write,
 * out) and the BIO under it. Contexts, certificate loading and the choice of
 * a certificate per ClientHello are in tls_ctx.c; the client's verification
 * of the peer is in tls_verify.c. tls_int.h holds what they share.
 *
 * Memory per idle session is what this file is built around:
 * - struct buf releases its memory as soon as it is empty;
 * - BoringSSL always releases its record buffers between records;
 * - SSL_set_shed_handshake_config drops the per-connection copy of the
 *   configuration (certificate chain references, cipher list, verify
 *   parameters) once the handshake is over;
 * - both contexts use TLS_with_buffers_method, so no parsed X509 objects are
 *   kept: the server serves DER buffers, and the client parses the peer's
 *   chain only for the length of the verification and keeps just the
 *   X509_V_* result. Peer certificates kept in the client's session are
 *   deduplicated across sessions by a CRYPTO_BUFFER_POOL;
 * - the server keeps no session cache (tickets are stateless);
 * - only client engines carry SSL app data (an ex_data stack, 88 bytes).
 * Measured (tls_test's test_idle_memory, TLS 1.3, P-256): about 5.9 KB of
 * heap per idle handshaked client+server pair (6.5 KB with app data on
 * both, 7.6 KB without the configuration shedding); in the daemon an idle
 * server engine is about 2.7 KB.
 */
#include "proxy/tls/tls.h"

#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "proxy/tls/tls_int.h"

/* ---- helpers ---------------------------------------------------------- */

/* For a failed SSL call: the first error of BoringSSL's TLS library (e.g.
 * "DECRYPTION_FAILED_OR_BAD_RECORD_MAC", "TLSV1_ALERT_PROTOCOL_VERSION"),
 * which says what happened to the session, rather than an older entry from
 * the crypto library that only says how ("BAD_DECRYPT"); else the first. */
static const char *session_error(const char *fallback)
{
    uint32_t e, first = 0;
    while ((e = ERR_get_error()) != 0) {
        if (first == 0)
            first = e;
        if (ERR_GET_LIB(e) == ERR_LIB_SSL) {
            first = e;
            break;
        }
    }
    ERR_clear_error();
    const char *r = first != 0 ? ERR_reason_error_string(first) : NULL;
    return r != NULL ? r : fallback;
}

/* ---- the BIO over our buffers ------------------------------------------ */

static int bio_read(BIO *b, char *out, int len)
{
    struct tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    /* What was fed (a remainder kept from before) comes first, then what
     * is lent; BoringSSL asks again for the rest of a record. */
    bool fed = buf_len(&t->in) > 0;
    size_t n = fed ? buf_len(&t->in) : t->lent_len;
    if (n == 0) {
        /* Not an end of file: the caller has not fed more yet. */
        BIO_set_retry_read(b);
        return -1;
    }
    if (len < 0)
        return -1;
    if (n > (size_t)len)
        n = (size_t)len;
    if (fed) {
        memcpy(out, buf_head(&t->in), n);
        buf_consume(&t->in, n);
    } else {
        memcpy(out, t->lent, n);
        t->lent += n;
        t->lent_len -= n;
    }
    return (int)n;
}

static int bio_write(BIO *b, const char *data, int len)
{
    struct tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len < 0)
        return -1;
    /* The output buffer is unbounded here; backpressure is the caller's,
     * which stops feeding and writing while tls_out() is above its cap. A
     * failure without the retry flag surfaces as SSL_ERROR_SYSCALL. */
    if (buf_append(&t->out, data, (size_t)len) < 0)
        return -1;
    return len;
}

static long bio_ctrl(BIO *b, int cmd, long larg, void *parg)
{
    struct tls *t = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* everything written is already in t->out */
    case BIO_CTRL_PENDING:
        return (long)(buf_len(&t->in) + t->lent_len);
    case BIO_CTRL_WPENDING:
        return (long)buf_len(&t->out);
    default:
        return 0;
    }
}

BIO_METHOD *tls_bio_method_new(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_TYPE_SOURCE_SINK | (BIO_TYPE_START + 1), "smtp-tls-proxy");
    if (m == NULL)
        return NULL;
    if (!BIO_meth_set_read(m, bio_read) || !BIO_meth_set_write(m, bio_write) ||
        !BIO_meth_set_ctrl(m, bio_ctrl)) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}

/* ---- engines ------------------------------------------------------------ */

/* The part of an engine both sides share; tls_free accepts what it leaves
 * behind on failure. The BIO's data leads back to the engine; SSL app data
 * (an ex_data stack: two more allocations per connection, 88 bytes) is set
 * only where a callback has nothing but the SSL, the client's
 * verification. */
static struct tls *engine_base(struct tls_ctx *ctx)
{
    struct tls *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->verify_err = -1;
    t->dane_result = -1;
    tls_ctx_ref(ctx);
    t->ctx = ctx;
    t->ssl = SSL_new(ctx->ssl_ctx);
    if (t->ssl == NULL)
        goto err;
    BIO *bio = BIO_new(ctx->bio_method);
    if (bio == NULL)
        goto err;
    BIO_set_data(bio, t);
    BIO_set_init(bio, 1);
    SSL_set_bio(t->ssl, bio, bio); /* one reference, owned by ssl */
    SSL_set_shed_handshake_config(t->ssl, 1);
    return t;

err:
    ERR_clear_error();
    tls_free(t);
    return NULL;
}

static struct tls *engine_new(struct tls_ctx *ctx)
{
    struct tls *t = engine_base(ctx);
    if (t != NULL && !SSL_set_app_data(t->ssl, t)) {
        ERR_clear_error();
        tls_free(t);
        return NULL;
    }
    return t;
}

struct tls *tls_new_server(struct tls_ctx *ctx)
{
    struct tls *t = engine_base(ctx);
    if (t != NULL)
        SSL_set_accept_state(t->ssl);
    return t;
}

struct tls *tls_new_client(struct tls_ctx *ctx, const char *sni, bool verify,
                           const char *verify_name, bool lenient)
{
    struct tls *t = engine_new(ctx);
    if (t == NULL)
        return NULL;
    SSL_set_connect_state(t->ssl);
    t->verify = verify;
    /* RFC 6066 §3: SNI carries DNS names only, never address literals. */
    if (sni != NULL && sni[0] != '\0' && !tls_is_ip_literal(sni) && !SSL_set_tlsext_host_name(t->ssl, sni))
        goto err;
    if (verify_name != NULL && verify_name[0] != '\0') {
        t->verify_name = strdup(verify_name);
        if (t->verify_name == NULL)
            goto err;
    }
    /* Opportunistic delivery: the old versions and suites are still better
     * than plaintext (RFC 7435 §3; Postfix allows the same). Set on this
     * SSL only, and shed with the rest of its configuration after the
     * handshake. */
    if (lenient && (!SSL_set_min_proto_version(t->ssl, TLS1_VERSION) ||
                    !SSL_set_strict_cipher_list(t->ssl, ctx->lenient_ciphers)))
        goto err;
    SSL_set_custom_verify(t->ssl, SSL_VERIFY_PEER, tls_on_verify);
    return t;

err:
    ERR_clear_error();
    tls_free(t);
    return NULL;
}

struct tls *tls_new_client_dane(struct tls_ctx *ctx, const struct tlsa_set *set, const char *name,
                                bool enforce, bool lenient)
{
    if (set == NULL || name == NULL || name[0] == '\0')
        return NULL;
    /* RFC 7672 §8.1: the SNI is the TLSA base domain. */
    struct tls *t = tls_new_client(ctx, name, enforce, name, lenient);
    if (t != NULL)
        t->dane = set;
    return t;
}

int tls_dane_status(const struct tls *t, const char **why)
{
    if (why != NULL)
        *why = t->dane_why;
    return t->dane != NULL ? t->dane_result : -1;
}

void tls_free(struct tls *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl); /* and the BIO */
    buf_free(&t->in);
    buf_free(&t->out);
    free(t->verify_name);
    free(t->errbuf);
    tls_ctx_unref(t->ctx);
    free(t);
}

int tls_feed(struct tls *t, const uint8_t *data, size_t len)
{
    assert(t->lent_len == 0);
    return buf_append(&t->in, data, len);
}

void tls_lend(struct tls *t, const uint8_t *data, size_t len)
{
    assert(t->lent_len == 0);
    t->lent = data;
    t->lent_len = len;
}

int tls_unlend(struct tls *t)
{
    int rc = buf_append(&t->in, t->lent, t->lent_len);
    t->lent = NULL;
    t->lent_len = 0;
    return rc;
}

size_t tls_pending_in(const struct tls *t)
{
    return buf_len(&t->in) + t->lent_len;
}

struct buf *tls_out(struct tls *t)
{
    return &t->out;
}

#define ERRBUF_LEN 256

/* Turns a failed SSL call's return value into a tls_status and, for errors,
 * the reason tls_error() returns. */
static int fail(struct tls *t, int rc, bool in_handshake)
{
    switch (SSL_get_error(t->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        return TLS_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        t->err = "peer sent close_notify";
        if (in_handshake)
            return TLS_ERR; /* a handshake that ends in close_notify failed */
        return TLS_CLOSED;
    case SSL_ERROR_SSL:
        if (t->verify && t->verify_err > X509_V_OK) {
            ERR_clear_error();
            t->cert_failed = true;
            /* The reason names the certificate problem, not the alert. */
            if (t->errbuf == NULL)
                t->errbuf = malloc(ERRBUF_LEN);
            if (t->errbuf == NULL) {
                t->err = "certificate verify failed";
                return TLS_ERR;
            }
            if (t->dane != NULL) {
                char d[200];
                tls_dane_describe(t, d, sizeof(d));
                snprintf(t->errbuf, ERRBUF_LEN, "certificate verify failed: %s", d);
            } else {
                snprintf(t->errbuf, ERRBUF_LEN, "certificate verify failed: %s",
                         tls_verify_why(t->verify_err));
            }
            t->err = t->errbuf;
            return TLS_ERR;
        }
        t->err = session_error("TLS protocol error");
        return TLS_ERR;
    case SSL_ERROR_SYSCALL:
        /* Only our BIO can fail, and only when buf_append cannot grow. */
        t->err = session_error("out of memory");
        return TLS_ERR;
    default:
        t->err = session_error("unexpected TLS state");
        return TLS_ERR;
    }
}

int tls_handshake(struct tls *t)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1) {
        free(t->verify_name); /* needed by tls_on_verify only */
        t->verify_name = NULL;
        if (SSL_is_server(t->ssl) && SSL_version(t->ssl) >= TLS1_3_VERSION) {
            /* BoringSSL keeps a TLS 1.3 server's NewSessionTickets until the
             * first write. Sent now, they go out with the handshake's last
             * ACK instead of leaving a client's next command waiting on a
             * delayed ACK (40 ms with Nagle on). A zero-length write
             * carries no application data. */
            ERR_clear_error();
            if (SSL_write(t->ssl, "", 0) < 0 &&
                SSL_get_error(t->ssl, -1) != SSL_ERROR_WANT_WRITE)
                ERR_clear_error();
        }
        return TLS_OK;
    }
    return fail(t, rc, true);
}

int tls_read(struct tls *t, uint8_t *buf, size_t cap, size_t *n)
{
    *n = 0;
    assert(cap > 0);
    ERR_clear_error();
    int rc = SSL_read(t->ssl, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    if (rc > 0) {
        *n = (size_t)rc;
        return TLS_OK;
    }
    /* A HelloRequest from a server arrives here and fails with
     * NO_RENEGOTIATION (ssl_renegotiate_never); a client's renegotiating
     * ClientHello is refused by BoringSSL servers the same way. */
    return fail(t, rc, false);
}

int tls_write(struct tls *t, const uint8_t *data, size_t len)
{
    if (!SSL_is_init_finished(t->ssl)) {
        t->err = "write before the handshake completed";
        return TLS_ERR;
    }
    while (len > 0) {
        /* SSL_write writes all of a chunk unless the BIO fails, as ours
         * never asks to retry (no SSL_MODE_ENABLE_PARTIAL_WRITE). */
        int chunk = len > (1u << 30) ? (1 << 30) : (int)len;
        ERR_clear_error();
        int rc = SSL_write(t->ssl, data, chunk);
        if (rc <= 0) {
            int st = fail(t, rc, false);
            if (st != TLS_ERR)
                t->err = "TLS session is closed";
            return TLS_ERR;
        }
        data += rc;
        len -= (size_t)rc;
    }
    return TLS_OK;
}

void tls_shutdown(struct tls *t)
{
    /* The first call queues our close_notify; we do not wait for the peer's
     * (RFC 8446 §6.1 allows closing right after sending it). It fails
     * harmlessly before or after a failed handshake: nothing to send then. */
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    ERR_clear_error();
}

const char *tls_version(const struct tls *t)
{
    return SSL_get_version(t->ssl);
}

const char *tls_cipher(const struct tls *t)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
    return c != NULL ? SSL_CIPHER_standard_name(c) : NULL;
}

const char *tls_sni(const struct tls *t)
{
    return SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
}

bool tls_resumed(const struct tls *t)
{
    return SSL_session_reused(t->ssl) != 0;
}


bool tls_error_is_certificate(const struct tls *t)
{
    return t->cert_failed;
}

const char *tls_error(const struct tls *t)
{
    return t->err != NULL ? t->err : "no error";
}

#define STR_(x) #x
#define STR(x) STR_(x)

const char *tls_library_version(void)
{
    return "BoringSSL (API version " STR(BORINGSSL_API_VERSION) ")";
}
