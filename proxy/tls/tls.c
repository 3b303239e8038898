/*
 * tls: BoringSSL over our own buffers, h2o style. A custom BIO reads
 * ciphertext from the engine's input buffer (filled by tls_feed) and appends
 * what BoringSSL writes to the output buffer (drained by the caller through
 * tls_out). Nothing here touches a socket or logs: failures come back as
 * TLS_ERR plus a string from tls_error(), and the caller decides what to say.
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
 * - the server keeps no session cache (tickets are stateless).
 * Measured (tls_test's test_idle_memory, TLS 1.3, P-256): about 6.5 KB of
 * heap per idle handshaked client+server pair, 3.5 KB server and 3.0 KB
 * client; without the configuration shedding it was 7.6 KB.
 */
#include "proxy/tls/tls.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bytestring.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pool.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* One certificate chain with its key, kept as DER buffers so that every
 * handshake shares them by reference. */
struct tls_cert {
    CRYPTO_BUFFER **chain; /* leaf first */
    size_t nchain;
    EVP_PKEY *key;
    int type;              /* EVP_PKEY_RSA, EVP_PKEY_EC or EVP_PKEY_ED25519 */
    uint16_t tls13_sigalg; /* EC keys: the one TLS 1.3 signature scheme of its curve */
};

struct tls_ctx {
    SSL_CTX *ssl_ctx;
    BIO_METHOD *bio_method;   /* per context, so there is no global state to set up */
    atomic_int refs;          /* contexts are shared by the worker threads */
    X509_STORE *store;        /* client: trust anchors from ca_file */
    CRYPTO_BUFFER_POOL *pool; /* client: one copy of each peer certificate */
    size_t ncerts;
    struct tls_cert certs[];  /* server: certs[0] is also the SSL_CTX default */
};

struct tls {
    SSL *ssl;
    struct tls_ctx *ctx;
    struct buf in;         /* ciphertext fed by the caller, read by the BIO */
    struct buf out;        /* ciphertext written by BoringSSL through the BIO */
    char *verify_name;     /* client: name to match, until the handshake is done */
    char *errbuf;          /* allocated only for a composed error message */
    const char *err;       /* static, or errbuf */
    int verify_err;        /* client: X509_V_* of the peer's chain, -1 before */
    bool cert_failed;      /* the last TLS_ERR was the peer certificate failing verification */
    bool verify;           /* client: a failed verification fails the handshake */
};

/* ---- helpers ---------------------------------------------------------- */

__attribute__((format(printf, 3, 4)))
static void say(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* The first (oldest) entry of BoringSSL's error queue as a static string, or
 * fallback when the queue is empty. The queue is thread-local, so callers
 * clear it before each BoringSSL call that can fail. */
static const char *first_error(const char *fallback)
{
    uint32_t e = ERR_get_error();
    ERR_clear_error();
    if (e == 0)
        return fallback;
    const char *r = ERR_reason_error_string(e);
    return r != NULL ? r : fallback;
}

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

static bool is_ip_literal(const char *s)
{
    unsigned char tmp[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, tmp) == 1 || inet_pton(AF_INET6, s, tmp) == 1;
}

static uint16_t min_version(const struct tls_options *cfg)
{
    return cfg->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION;
}

/* ---- the BIO over our buffers ------------------------------------------ */

static int bio_read(BIO *b, char *out, int len)
{
    struct tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    size_t n = buf_len(&t->in);
    if (n == 0) {
        /* Not an end of file: the caller has not fed more yet. */
        BIO_set_retry_read(b);
        return -1;
    }
    if (len < 0)
        return -1;
    if (n > (size_t)len)
        n = (size_t)len;
    memcpy(out, buf_head(&t->in), n);
    buf_consume(&t->in, n);
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
        return (long)buf_len(&t->in);
    case BIO_CTRL_WPENDING:
        return (long)buf_len(&t->out);
    default:
        return 0;
    }
}

static BIO_METHOD *make_bio_method(void)
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

/* ---- contexts ----------------------------------------------------------- */

static struct tls_ctx *ctx_alloc(size_t ncerts)
{
    struct tls_ctx *c = calloc(1, sizeof *c + ncerts * sizeof c->certs[0]);
    if (c == NULL)
        return NULL;
    atomic_init(&c->refs, 1);
    c->bio_method = make_bio_method();
    if (c->bio_method == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

static void cert_free(struct tls_cert *cert)
{
    for (size_t i = 0; i < cert->nchain; i++)
        CRYPTO_BUFFER_free(cert->chain[i]);
    free(cert->chain);
    EVP_PKEY_free(cert->key);
}

static void ctx_free(struct tls_ctx *c)
{
    /* The SSL_CTX goes first: the pool must outlive every buffer in it. */
    SSL_CTX_free(c->ssl_ctx);
    for (size_t i = 0; i < c->ncerts; i++)
        cert_free(&c->certs[i]);
    X509_STORE_free(c->store);
    CRYPTO_BUFFER_POOL_free(c->pool);
    BIO_meth_free(c->bio_method);
    free(c);
}

void tls_ctx_ref(struct tls_ctx *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void tls_ctx_unref(struct tls_ctx *c)
{
    if (c == NULL)
        return;
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        ctx_free(c);
}

/* Settings both sides share: versions, TLS 1.2 cipher list. */
static int ctx_common(struct tls_ctx *c, const struct tls_options *cfg, const char *ciphers,
                      char *err, size_t errlen)
{
    c->ssl_ctx = SSL_CTX_new(TLS_with_buffers_method());
    if (c->ssl_ctx == NULL) {
        say(err, errlen, "tls: cannot create context: %s", first_error("out of memory"));
        return -1;
    }
    SSL_CTX_set_app_data(c->ssl_ctx, c);
    if (!SSL_CTX_set_min_proto_version(c->ssl_ctx, min_version(cfg)) ||
        !SSL_CTX_set_max_proto_version(c->ssl_ctx, TLS1_3_VERSION)) {
        say(err, errlen, "tls.min_version: %s", first_error("unsupported version"));
        return -1;
    }
    ERR_clear_error();
    if (ciphers != NULL && !SSL_CTX_set_strict_cipher_list(c->ssl_ctx, ciphers)) {
        uint32_t e = ERR_peek_error();
        say(err, errlen, "tls.ciphers: invalid cipher list \"%s\": %s", ciphers,
            ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_INVALID_COMMAND
                ? "unknown cipher name or rule (BoringSSL syntax, TLS 1.2 suites)"
                : first_error("no usable cipher"));
        ERR_clear_error();
        return -1;
    }
    return 0;
}

/* Appends one DER certificate to cert's chain. */
static int chain_push(struct tls_cert *cert, X509 *x)
{
    uint8_t *der = NULL;
    int len = i2d_X509(x, &der);
    if (len <= 0)
        return -1;
    CRYPTO_BUFFER *b = CRYPTO_BUFFER_new(der, (size_t)len, NULL);
    OPENSSL_free(der);
    if (b == NULL)
        return -1;
    CRYPTO_BUFFER **chain = realloc(cert->chain, (cert->nchain + 1) * sizeof *chain);
    if (chain == NULL) {
        CRYPTO_BUFFER_free(b);
        return -1;
    }
    cert->chain = chain;
    cert->chain[cert->nchain++] = b;
    return 0;
}

/* Takes key into cert with what the selection callback needs to know about
 * it; fails, leaving cert and key alone, for keys TLS cannot use. */
static int cert_set_key(struct tls_cert *cert, EVP_PKEY *key)
{
    int type = EVP_PKEY_id(key);
    uint16_t sigalg = 0;
    switch (type) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_ED25519:
        break;
    case EVP_PKEY_EC:
        switch (EC_GROUP_get_curve_name(EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(key)))) {
        case NID_X9_62_prime256v1:
            sigalg = SSL_SIGN_ECDSA_SECP256R1_SHA256;
            break;
        case NID_secp384r1:
            sigalg = SSL_SIGN_ECDSA_SECP384R1_SHA384;
            break;
        case NID_secp521r1:
            sigalg = SSL_SIGN_ECDSA_SECP521R1_SHA512;
            break;
        default:
            return -1;
        }
        break;
    default:
        return -1;
    }
    cert->key = key;
    cert->type = type;
    cert->tls13_sigalg = sigalg;
    return 0;
}

/* Whether the PEM reader stopped because there was no further PEM block
 * (the normal end of a file) rather than at a damaged one. */
static bool pem_at_end(void)
{
    uint32_t e = ERR_peek_last_error();
    return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
}

/* Reads certfile (PEM chain, leaf first) and keyfile into cert and checks
 * that they belong together. Messages name the file and the config key. */
static int load_cert(struct tls_cert *cert, const char *certfile, const char *keyfile,
                     char *err, size_t errlen)
{
    X509 *leaf = NULL, *x;
    EVP_PKEY *key = NULL;
    BIO *bio = NULL;
    FILE *f;

    /* fopen ourselves: errno gives "No such file or directory", where the
     * error queue would only say "system library". */
    f = fopen(certfile, "r");
    if (f == NULL) {
        say(err, errlen, "tls.certificate: cannot load \"%s\": %s", certfile, strerror(errno));
        goto err;
    }
    bio = BIO_new_fp(f, BIO_CLOSE);
    if (bio == NULL) {
        fclose(f);
        say(err, errlen, "tls.certificate: cannot load \"%s\": out of memory", certfile);
        goto err;
    }
    ERR_clear_error();
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        int rc = chain_push(cert, x);
        if (leaf == NULL)
            leaf = x;
        else
            X509_free(x);
        if (rc < 0) {
            say(err, errlen, "tls.certificate: cannot load \"%s\": out of memory", certfile);
            goto err;
        }
    }
    /* The loop ends at the first block that is not a certificate. Running
     * out of PEM blocks after at least one certificate is the normal end. */
    if (leaf == NULL || !pem_at_end()) {
        say(err, errlen, "tls.certificate: cannot load \"%s\": %s", certfile,
            leaf == NULL && pem_at_end() ? "no PEM certificate found" : "invalid PEM certificate");
        ERR_clear_error();
        goto err;
    }
    ERR_clear_error();
    BIO_free(bio);
    bio = NULL;

    f = fopen(keyfile, "r");
    if (f == NULL) {
        say(err, errlen, "tls.key: cannot load \"%s\": %s", keyfile, strerror(errno));
        goto err;
    }
    bio = BIO_new_fp(f, BIO_CLOSE);
    if (bio == NULL) {
        fclose(f);
        say(err, errlen, "tls.key: cannot load \"%s\": out of memory", keyfile);
        goto err;
    }
    /* A NULL password callback makes an encrypted key fail, not prompt. */
    key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    if (key == NULL) {
        say(err, errlen, "tls.key: cannot load \"%s\": %s", keyfile,
            pem_at_end() ? "no PEM private key found" : "invalid or encrypted PEM private key");
        ERR_clear_error();
        goto err;
    }
    if (!X509_check_private_key(leaf, key)) {
        ERR_clear_error();
        say(err, errlen, "tls.key: \"%s\" does not match tls.certificate \"%s\"", keyfile, certfile);
        goto err;
    }
    if (cert_set_key(cert, key) < 0) {
        say(err, errlen, "tls.key: \"%s\": unsupported key type (RSA, ECDSA P-256/384/521 or Ed25519)",
            keyfile);
        goto err;
    }
    BIO_free(bio);
    X509_free(leaf);
    return 0;

err:
    EVP_PKEY_free(key);
    BIO_free(bio);
    X509_free(leaf);
    return -1;
}

/* The stand-in certificate when none is configured: ECDSA P-256, CN and SAN
 * "localhost", valid for a year from now. Clients that verify will refuse
 * it, which is the point of the warning the caller logs. */
static int make_self_signed(struct tls_cert *cert, char *err, size_t errlen)
{
    EC_KEY *ec = NULL;
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    GENERAL_NAMES *sans = NULL;
    GENERAL_NAME *gn = NULL;
    ASN1_IA5STRING *dns = NULL;
    uint64_t serial;

    ERR_clear_error();
    ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
    if (ec == NULL || !EC_KEY_generate_key(ec))
        goto err;
    key = EVP_PKEY_new();
    if (key == NULL || !EVP_PKEY_assign_EC_KEY(key, ec))
        goto err;
    ec = NULL; /* owned by key now */

    x = X509_new();
    if (x == NULL || !X509_set_version(x, X509_VERSION_3))
        goto err;
    RAND_bytes((uint8_t *)&serial, sizeof serial);
    serial = (serial >> 1) | 1; /* a positive, non-zero INTEGER */
    if (!ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), 0) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600))
        goto err;
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const uint8_t *)"localhost", -1, -1, 0) ||
        !X509_set_issuer_name(x, name) || !X509_set_pubkey(x, key))
        goto err;

    sans = sk_GENERAL_NAME_new_null();
    gn = GENERAL_NAME_new();
    dns = ASN1_IA5STRING_new();
    if (sans == NULL || gn == NULL || dns == NULL || !ASN1_STRING_set(dns, "localhost", -1))
        goto err;
    GENERAL_NAME_set0_value(gn, GEN_DNS, dns);
    dns = NULL;
    if (!sk_GENERAL_NAME_push(sans, gn))
        goto err;
    gn = NULL;
    if (!X509_add1_ext_i2d(x, NID_subject_alt_name, sans, 0, X509V3_ADD_DEFAULT) ||
        !X509_sign(x, key, EVP_sha256()) || chain_push(cert, x) < 0 || cert_set_key(cert, key) < 0)
        goto err;
    key = NULL; /* owned by cert now */

    sk_GENERAL_NAME_pop_free(sans, GENERAL_NAME_free);
    X509_free(x);
    return 0;

err:
    say(err, errlen, "tls: cannot make a self-signed certificate: %s", first_error("out of memory"));
    ASN1_IA5STRING_free(dns);
    GENERAL_NAME_free(gn);
    sk_GENERAL_NAME_pop_free(sans, GENERAL_NAME_free);
    X509_free(x);
    EVP_PKEY_free(key);
    EC_KEY_free(ec);
    return -1;
}

/* ---- choosing a certificate per handshake --------------------------------- */

/* What the client's ClientHello says it can handle. */
struct hello_caps {
    bool tls13;            /* offers TLS 1.3, which we always prefer */
    bool has_sigalgs;      /* sent signature_algorithms at all */
    CBS sigalgs;           /* the list, 2 bytes per scheme */
};

static void hello_parse(const SSL_CLIENT_HELLO *hello, struct hello_caps *caps)
{
    const uint8_t *data;
    size_t len;
    CBS ext, list;

    memset(caps, 0, sizeof *caps);
    if (SSL_early_callback_ctx_extension_get(hello, TLSEXT_TYPE_supported_versions, &data, &len)) {
        CBS_init(&ext, data, len);
        uint16_t v;
        if (CBS_get_u8_length_prefixed(&ext, &list)) {
            while (CBS_get_u16(&list, &v))
                if (v == TLS1_3_VERSION)
                    caps->tls13 = true;
        }
    }
    if (SSL_early_callback_ctx_extension_get(hello, TLSEXT_TYPE_signature_algorithms, &data, &len)) {
        CBS_init(&ext, data, len);
        if (CBS_get_u16_length_prefixed(&ext, &list)) {
            caps->has_sigalgs = true;
            caps->sigalgs = list;
        }
    }
}

/* Whether cert can sign with the scheme sigalg in the given version
 * (RFC 8446 §4.2.3: TLS 1.3 drops PKCS#1 v1.5 and ties ECDSA to a curve). */
static bool sigalg_fits(const struct tls_cert *cert, uint16_t sigalg, bool tls13)
{
    switch (cert->type) {
    case EVP_PKEY_RSA:
        if (sigalg == SSL_SIGN_RSA_PSS_RSAE_SHA256 || sigalg == SSL_SIGN_RSA_PSS_RSAE_SHA384 ||
            sigalg == SSL_SIGN_RSA_PSS_RSAE_SHA512)
            return true;
        return !tls13 && (sigalg == SSL_SIGN_RSA_PKCS1_SHA256 || sigalg == SSL_SIGN_RSA_PKCS1_SHA384 ||
                          sigalg == SSL_SIGN_RSA_PKCS1_SHA512 || sigalg == SSL_SIGN_RSA_PKCS1_SHA1);
    case EVP_PKEY_EC:
        if (tls13)
            return sigalg == cert->tls13_sigalg;
        return sigalg == SSL_SIGN_ECDSA_SECP256R1_SHA256 || sigalg == SSL_SIGN_ECDSA_SECP384R1_SHA384 ||
               sigalg == SSL_SIGN_ECDSA_SECP521R1_SHA512 || sigalg == SSL_SIGN_ECDSA_SHA1;
    case EVP_PKEY_ED25519:
        return sigalg == SSL_SIGN_ED25519;
    default:
        return false;
    }
}

/* Whether the client offers a TLS 1.2 suite that we enable and that
 * authenticates with a key like cert's. */
static bool cipher_fits(SSL *ssl, const SSL_CLIENT_HELLO *hello, const struct tls_cert *cert)
{
    int want = cert->type == EVP_PKEY_RSA ? NID_auth_rsa : NID_auth_ecdsa;
    STACK_OF(SSL_CIPHER) *ours = SSL_get_ciphers(ssl);
    CBS suites;
    uint16_t v;

    CBS_init(&suites, hello->cipher_suites, hello->cipher_suites_len);
    while (CBS_get_u16(&suites, &v)) {
        const SSL_CIPHER *c = SSL_get_cipher_by_value(v);
        if (c == NULL || SSL_CIPHER_get_auth_nid(c) != want)
            continue;
        for (size_t i = 0; i < sk_SSL_CIPHER_num(ours); i++)
            if (sk_SSL_CIPHER_value(ours, i) == c)
                return true;
    }
    return false;
}

static bool cert_fits(SSL *ssl, const SSL_CLIENT_HELLO *hello, const struct hello_caps *caps,
                      const struct tls_cert *cert)
{
    if (!caps->tls13 && !cipher_fits(ssl, hello, cert))
        return false;
    if (!caps->has_sigalgs) /* TLS 1.2 defaults (RFC 5246 §7.4.1.4.1): SHA-1 with RSA or ECDSA */
        return !caps->tls13 && cert->type != EVP_PKEY_ED25519;
    CBS list = caps->sigalgs;
    uint16_t sigalg;
    while (CBS_get_u16(&list, &sigalg))
        if (sigalg_fits(cert, sigalg, caps->tls13))
            return true;
    return false;
}

/*
 * Runs for each ClientHello when several certificates are configured: picks
 * the first one the client can use, preferring ECDSA/Ed25519 (smaller and
 * cheaper) over RSA, else the first one listed. The SSL starts with certs[0]
 * (copied from the SSL_CTX), so only another choice needs work. When nothing
 * fits, certs[0] stays and BoringSSL fails the handshake with its own reason.
 */
static enum ssl_select_cert_result_t on_select_certificate(const SSL_CLIENT_HELLO *hello)
{
    SSL *ssl = hello->ssl;
    struct tls_ctx *c = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    struct hello_caps caps;
    const struct tls_cert *best = NULL;

    hello_parse(hello, &caps);
    for (size_t i = 0; i < c->ncerts; i++) {
        const struct tls_cert *cert = &c->certs[i];
        if (!cert_fits(ssl, hello, &caps, cert))
            continue;
        if (best == NULL || (best->type == EVP_PKEY_RSA && cert->type != EVP_PKEY_RSA))
            best = cert;
    }
    if (best == NULL || best == &c->certs[0])
        return ssl_select_cert_success;
    if (!SSL_set_chain_and_key(ssl, best->chain, best->nchain, best->key, NULL))
        return ssl_select_cert_error;
    return ssl_select_cert_success;
}

struct tls_ctx *tls_ctx_server_new(const struct tls_options *cfg, char *err, size_t errlen)
{
    size_t n = cfg->ncertificates;
    const char *ciphers = cfg->ciphers != NULL && cfg->ciphers[0] != '\0' ? cfg->ciphers
                                                                            : TLS_DEFAULT_CIPHERS;

    if (cfg->nkeys != n) {
        say(err, errlen, "tls.key: %zu certificate file(s) but %zu key file(s)", n, cfg->nkeys);
        return NULL;
    }
    struct tls_ctx *c = ctx_alloc(n > 0 ? n : 1);
    if (c == NULL) {
        say(err, errlen, "tls: out of memory");
        return NULL;
    }
    if (ctx_common(c, cfg, ciphers, err, errlen) < 0)
        goto err;

    if (n == 0) {
        c->ncerts = 1;
        if (make_self_signed(&c->certs[0], err, errlen) < 0)
            goto err;
    }
    for (size_t i = 0; i < n; i++) {
        c->ncerts = i + 1;
        if (load_cert(&c->certs[i], cfg->certificates[i], cfg->keys[i], err, errlen) < 0)
            goto err;
    }
    /* Installing each chain once also has BoringSSL check it (key usable
     * for TLS, matching the leaf). Last to first, so certs[0] remains as
     * the default every SSL starts with. */
    for (size_t i = c->ncerts; i-- > 0;) {
        const struct tls_cert *cert = &c->certs[i];
        ERR_clear_error();
        if (!SSL_CTX_set_chain_and_key(c->ssl_ctx, cert->chain, cert->nchain, cert->key, NULL)) {
            say(err, errlen, "tls.certificate: cannot use \"%s\": %s",
                n > 0 ? cfg->certificates[i] : "(self-signed)", first_error("rejected by BoringSSL"));
            goto err;
        }
    }
    if (c->ncerts > 1)
        SSL_CTX_set_select_certificate_cb(c->ssl_ctx, on_select_certificate);

    /* Our choice of suite, not the client's: the list is ordered by
     * preference. Resumption works with tickets only, so there is no
     * per-session state on the server. BoringSSL servers never accept
     * renegotiation, and 0-RTT stays off (the default), because SMTP
     * commands are not replay-safe. */
    SSL_CTX_set_options(c->ssl_ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_session_cache_mode(c->ssl_ctx, SSL_SESS_CACHE_OFF);
    return c;

err:
    tls_ctx_unref(c);
    return NULL;
}

struct tls_ctx *tls_ctx_client_new(const struct tls_options *cfg, char *err, size_t errlen)
{
    struct tls_ctx *c = ctx_alloc(0);
    if (c == NULL) {
        say(err, errlen, "tls: out of memory");
        return NULL;
    }
    /* Without a configured list the client keeps BoringSSL's default, which
     * is wider than the server's: an old destination that only has CBC
     * suites is better served encrypted than in plaintext. */
    const char *ciphers = cfg->ciphers != NULL && cfg->ciphers[0] != '\0' ? cfg->ciphers : NULL;
    if (ctx_common(c, cfg, ciphers, err, errlen) < 0)
        goto err;

    c->store = X509_STORE_new();
    c->pool = CRYPTO_BUFFER_POOL_new();
    if (c->store == NULL || c->pool == NULL) {
        say(err, errlen, "tls: out of memory");
        goto err;
    }
    SSL_CTX_set0_buffer_pool(c->ssl_ctx, c->pool);
    if (cfg->ca_file != NULL && cfg->ca_file[0] != '\0') {
        FILE *f = fopen(cfg->ca_file, "r");
        if (f == NULL) {
            say(err, errlen, "tls.ca_file: cannot load \"%s\": %s", cfg->ca_file, strerror(errno));
            goto err;
        }
        fclose(f);
        ERR_clear_error();
        if (!X509_STORE_load_locations(c->store, cfg->ca_file, NULL)) {
            uint32_t e = ERR_peek_last_error();
            say(err, errlen, "tls.ca_file: cannot load \"%s\": %s", cfg->ca_file,
                ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_NO_CERTIFICATE_OR_CRL_FOUND
                    ? "no PEM certificate found"
                    : "invalid PEM certificate");
            ERR_clear_error();
            goto err;
        }
    }
    /* No tickets in TLS 1.2: the client keeps no session cache, so a ticket
     * would be sent for nothing. Renegotiation stays at the default,
     * ssl_renegotiate_never. */
    SSL_CTX_set_options(c->ssl_ctx, SSL_OP_NO_TICKET);
    return c;

err:
    tls_ctx_unref(c);
    return NULL;
}

/* ---- engines ------------------------------------------------------------ */

static const char *verify_why(int e)
{
    switch (e) {
    case X509_V_OK:
        return "ok";
    case -1:
        return "no certificate verified";
    case X509_V_ERR_HOSTNAME_MISMATCH:
        return "hostname mismatch";
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return "IP address mismatch";
    default:
        return X509_verify_cert_error_string(e);
    }
}

static uint8_t verify_alert(int e)
{
    switch (e) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return SSL_AD_CERTIFICATE_EXPIRED;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
        return SSL_AD_UNKNOWN_CA;
    default:
        return SSL_AD_BAD_CERTIFICATE;
    }
}

/* Verifies the peer's chain against the context's store and the name, with
 * the parsed certificates living only as long as this call. */
static int verify_chain(struct tls *t)
{
    const STACK_OF(CRYPTO_BUFFER) *ders = SSL_get0_peer_certificates(t->ssl);
    STACK_OF(X509) *chain = NULL;
    X509_STORE_CTX *sc = NULL;
    int result = X509_V_ERR_OUT_OF_MEM;

    if (ders == NULL || sk_CRYPTO_BUFFER_num(ders) == 0)
        return X509_V_ERR_UNSPECIFIED;
    chain = sk_X509_new_null();
    if (chain == NULL)
        goto out;
    for (size_t i = 0; i < sk_CRYPTO_BUFFER_num(ders); i++) {
        X509 *x = X509_parse_from_buffer(sk_CRYPTO_BUFFER_value(ders, i));
        if (x == NULL) {
            result = X509_V_ERR_UNSPECIFIED;
            goto out;
        }
        if (!sk_X509_push(chain, x)) {
            X509_free(x);
            goto out;
        }
    }
    sc = X509_STORE_CTX_new();
    if (sc == NULL || !X509_STORE_CTX_init(sc, t->ctx->store, sk_X509_value(chain, 0), chain) ||
        !X509_STORE_CTX_set_default(sc, "ssl_server"))
        goto out;
    if (t->verify_name != NULL) {
        X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(sc);
        int ok = is_ip_literal(t->verify_name)
                     ? X509_VERIFY_PARAM_set1_ip_asc(param, t->verify_name)
                     : X509_VERIFY_PARAM_set1_host(param, t->verify_name, strlen(t->verify_name));
        if (!ok)
            goto out;
    }
    if (X509_verify_cert(sc) > 0) {
        result = X509_V_OK;
    } else {
        result = X509_STORE_CTX_get_error(sc);
        if (result == X509_V_OK)
            result = X509_V_ERR_UNSPECIFIED;
    }

out:
    X509_STORE_CTX_free(sc);
    sk_X509_pop_free(chain, X509_free);
    /* Verification failures are reported through verify_err, not the
     * queue, which the handshake would otherwise report first. */
    ERR_clear_error();
    return result;
}

static enum ssl_verify_result_t on_verify(SSL *ssl, uint8_t *alert)
{
    struct tls *t = SSL_get_app_data(ssl);
    t->verify_err = verify_chain(t);
    if (t->verify_err == X509_V_OK || !t->verify)
        return ssl_verify_ok;
    *alert = verify_alert(t->verify_err);
    return ssl_verify_invalid;
}

/* The part of an engine both sides share; tls_free accepts what it leaves
 * behind on failure. */
static struct tls *engine_new(struct tls_ctx *ctx)
{
    struct tls *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->verify_err = -1;
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
    if (!SSL_set_app_data(t->ssl, t))
        goto err;
    SSL_set_shed_handshake_config(t->ssl, 1);
    return t;

err:
    ERR_clear_error();
    tls_free(t);
    return NULL;
}

struct tls *tls_new_server(struct tls_ctx *ctx)
{
    struct tls *t = engine_new(ctx);
    if (t != NULL)
        SSL_set_accept_state(t->ssl);
    return t;
}

struct tls *tls_new_client(struct tls_ctx *ctx, const char *sni, bool verify,
                           const char *verify_name)
{
    struct tls *t = engine_new(ctx);
    if (t == NULL)
        return NULL;
    SSL_set_connect_state(t->ssl);
    t->verify = verify;
    /* RFC 6066 §3: SNI carries DNS names only, never address literals. */
    if (sni != NULL && sni[0] != '\0' && !is_ip_literal(sni) && !SSL_set_tlsext_host_name(t->ssl, sni))
        goto err;
    if (verify_name != NULL && verify_name[0] != '\0') {
        t->verify_name = strdup(verify_name);
        if (t->verify_name == NULL)
            goto err;
    }
    SSL_set_custom_verify(t->ssl, SSL_VERIFY_PEER, on_verify);
    return t;

err:
    ERR_clear_error();
    tls_free(t);
    return NULL;
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
    return buf_append(&t->in, data, len);
}

size_t tls_pending_in(const struct tls *t)
{
    return buf_len(&t->in);
}

struct buf *tls_out(struct tls *t)
{
    return &t->out;
}

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
                t->errbuf = malloc(128);
            if (t->errbuf == NULL) {
                t->err = "certificate verify failed";
                return TLS_ERR;
            }
            snprintf(t->errbuf, 128, "certificate verify failed: %s", verify_why(t->verify_err));
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
        free(t->verify_name); /* needed by on_verify only */
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

bool tls_verify_result(const struct tls *t, const char **why)
{
    if (t->verify_err == X509_V_OK) {
        if (why != NULL)
            *why = "ok";
        return true;
    }
    if (why != NULL)
        *why = verify_why(t->verify_err);
    return false;
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
