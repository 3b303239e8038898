/*
 * tls_ctx: the contexts engines are made from. A server context loads its
 * certificate chains and keys (or makes an in-memory self-signed one) and,
 * with several, picks one per ClientHello; a client context holds the trust
 * anchors and the pool that deduplicates peer certificates. Contexts are
 * reference-counted and shared by the worker threads. See tls.c for why
 * everything is kept as DER buffers.
 */
#include <errno.h>
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

#include "proxy/tls/tls.h"
#include "proxy/tls/tls_int.h"

/* ---- helpers ---------------------------------------------------------- */

void tls_say(char *err, size_t errlen, const char *at, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    int n = at != NULL ? snprintf(err, errlen, "%s: ", at) : 0;
    if (n < 0 || (size_t)n >= errlen)
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
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

static uint16_t min_version(const struct tls_options *cfg)
{
    return cfg->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION;
}

/* ---- contexts ----------------------------------------------------------- */

static struct tls_ctx *ctx_alloc(size_t ncerts)
{
    struct tls_ctx *c = calloc(1, sizeof *c + ncerts * sizeof c->certs[0]);
    if (c == NULL)
        return NULL;
    atomic_init(&c->refs, 1);
    c->bio_method = tls_bio_method_new();
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
    for (size_t i = 0; i < cert->nnames; i++)
        free(cert->names[i]);
    free(cert->names);
}

static void ctx_free(struct tls_ctx *c)
{
    /* The SSL_CTX goes first: the pool must outlive every buffer in it. */
    SSL_CTX_free(c->ssl_ctx);
    for (size_t i = 0; i < c->ncerts; i++)
        cert_free(&c->certs[i]);
    X509_STORE_free(c->store);
    CRYPTO_BUFFER_POOL_free(c->pool);
    free(c->lenient_ciphers);
    tls_ticket_keys_free(c);
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
        tls_say(err, errlen, NULL, "tls: cannot create context: %s", first_error("out of memory"));
        return -1;
    }
    SSL_CTX_set_app_data(c->ssl_ctx, c);
    if (!SSL_CTX_set_min_proto_version(c->ssl_ctx, min_version(cfg)) ||
        !SSL_CTX_set_max_proto_version(c->ssl_ctx, TLS1_3_VERSION)) {
        tls_say(err, errlen, NULL, "tls.min_version: %s", first_error("unsupported version"));
        return -1;
    }
    ERR_clear_error();
    if (ciphers != NULL && !SSL_CTX_set_strict_cipher_list(c->ssl_ctx, ciphers)) {
        uint32_t e = ERR_peek_error();
        tls_say(err, errlen, NULL, "tls.ciphers: invalid cipher list \"%s\": %s", ciphers,
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

/* Opens path for the PEM reader; key names the config key in messages.
 * fopen ourselves: errno gives "No such file or directory", where the
 * error queue would only say "system library". */
static BIO *open_pem(const char *path, const char *key, const char *at, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        tls_say(err, errlen, at, "%s: cannot load \"%s\": %s", key, path, strerror(errno));
        return NULL;
    }
    BIO *bio = BIO_new_fp(f, BIO_CLOSE);
    if (bio == NULL) {
        fclose(f);
        tls_say(err, errlen, at, "%s: cannot load \"%s\": out of memory", key, path);
    }
    return bio;
}

/* The leaf's subjectAltName dNSNames into cert->names, lower case, for
 * the choice by SNI. The subject CN is not a name (RFC 9525 §6.3). */
static int cert_set_names(struct tls_cert *cert, X509 *leaf)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    int rc = 0;

    ERR_clear_error();
    if (sans == NULL)
        return 0;
    cert->names = calloc(sk_GENERAL_NAME_num(sans) + 1, sizeof *cert->names);
    if (cert->names == NULL)
        rc = -1;
    for (size_t i = 0; rc == 0 && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type != GEN_DNS)
            continue;
        const unsigned char *d = ASN1_STRING_get0_data(gn->d.dNSName);
        size_t len = (size_t)ASN1_STRING_length(gn->d.dNSName);
        if (len == 0 || memchr(d, '\0', len) != NULL)
            continue; /* no name a client could send */
        char *name = malloc(len + 1);
        if (name == NULL) {
            rc = -1;
            break;
        }
        for (size_t j = 0; j < len; j++)
            name[j] = (char)(d[j] >= 'A' && d[j] <= 'Z' ? d[j] - 'A' + 'a' : d[j]);
        name[len] = '\0';
        cert->names[cert->nnames++] = name;
    }
    GENERAL_NAMES_free(sans);
    return rc;
}

/* Reads certfile (PEM chain, leaf first) and keyfile into cert and checks
 * that they belong together. Messages name the file and the config key,
 * prefixed by where the configuration names it (cert_at, key_at: "FILE:LINE"
 * or NULL). */
static int load_cert(struct tls_cert *cert, const char *certfile, const char *keyfile,
                     const char *cert_at, const char *key_at, char *err, size_t errlen)
{
    X509 *leaf = NULL, *x;
    EVP_PKEY *key = NULL;
    BIO *bio = open_pem(certfile, "tls.certificate", cert_at, err, errlen);

    if (bio == NULL)
        goto err;
    ERR_clear_error();
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        int rc = chain_push(cert, x);
        if (leaf == NULL)
            leaf = x;
        else
            X509_free(x);
        if (rc < 0) {
            tls_say(err, errlen, cert_at, "tls.certificate: cannot load \"%s\": out of memory", certfile);
            goto err;
        }
    }
    /* The loop ends at the first block that is not a certificate. Running
     * out of PEM blocks after at least one certificate is the normal end. */
    if (leaf == NULL || !pem_at_end()) {
        tls_say(err, errlen, cert_at, "tls.certificate: cannot load \"%s\": %s", certfile,
            leaf == NULL && pem_at_end() ? "no PEM certificate found" : "invalid PEM certificate");
        ERR_clear_error();
        goto err;
    }
    ERR_clear_error();
    BIO_free(bio);
    bio = NULL;
    if (cert_set_names(cert, leaf) < 0) {
        tls_say(err, errlen, cert_at, "tls.certificate: cannot load \"%s\": out of memory", certfile);
        goto err;
    }

    bio = open_pem(keyfile, "tls.key", key_at, err, errlen);
    if (bio == NULL)
        goto err;
    /* A NULL password callback makes an encrypted key fail, not prompt. */
    key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    if (key == NULL) {
        tls_say(err, errlen, key_at, "tls.key: cannot load \"%s\": %s", keyfile,
            pem_at_end() ? "no PEM private key found" : "invalid or encrypted PEM private key");
        ERR_clear_error();
        goto err;
    }
    if (!X509_check_private_key(leaf, key)) {
        ERR_clear_error();
        tls_say(err, errlen, key_at, "tls.key: \"%s\" does not match tls.certificate \"%s\"", keyfile,
                certfile);
        goto err;
    }
    if (cert_set_key(cert, key) < 0) {
        tls_say(err, errlen, key_at, "tls.key: \"%s\": unsupported key type (RSA, ECDSA P-256/384/521 or Ed25519)",
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
    tls_say(err, errlen, NULL, "tls: cannot make a self-signed certificate: %s", first_error("out of memory"));
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
    char sni[256];         /* the host_name of server_name, lower case, no final dot; "" if none */
};

/* The host_name of a server_name extension (RFC 6066 §3) into out, lower
 * case and without a final dot; out stays "" when there is none, or it is
 * not a name we could hold one of (too long, an embedded NUL). BoringSSL
 * parses it only after the certificate is chosen, so this reads it here. */
static void hello_sni(const SSL_CLIENT_HELLO *hello, char *out, size_t cap)
{
    const uint8_t *data;
    size_t len;
    CBS ext, list, name;
    uint8_t type;

    out[0] = '\0';
    if (!SSL_early_callback_ctx_extension_get(hello, TLSEXT_TYPE_server_name, &data, &len))
        return;
    CBS_init(&ext, data, len);
    if (!CBS_get_u16_length_prefixed(&ext, &list))
        return;
    while (CBS_get_u8(&list, &type) && CBS_get_u16_length_prefixed(&list, &name)) {
        if (type != TLSEXT_NAMETYPE_host_name)
            continue;
        size_t n = CBS_len(&name);
        const uint8_t *p = CBS_data(&name);
        if (n > 0 && p[n - 1] == '.')
            n--;
        if (n == 0 || n >= cap || memchr(p, '\0', n) != NULL)
            return;
        for (size_t i = 0; i < n; i++)
            out[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] - 'A' + 'a' : p[i]);
        out[n] = '\0';
        return;
    }
}

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
    hello_sni(hello, caps->sni, sizeof caps->sni);
}

enum name_match { NAME_NONE, NAME_WILDCARD, NAME_EXACT };

/* How well one of cert's names matches sni (lower case, not empty): exactly,
 * or by a wildcard "*.example.net", which stands for exactly one whole,
 * non-empty left-most label (RFC 9525 §6.3, RFC 6125 §6.4.3). */
static enum name_match cert_name_match(const struct tls_cert *cert, const char *sni)
{
    const char *rest = strchr(sni, '.');
    enum name_match best = NAME_NONE;

    for (size_t i = 0; i < cert->nnames; i++) {
        const char *n = cert->names[i];
        if (strcmp(n, sni) == 0)
            return NAME_EXACT;
        if (n[0] == '*' && n[1] == '.' && rest != NULL && rest != sni && strcmp(n + 1, rest) == 0)
            best = NAME_WILDCARD;
    }
    return best;
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

/* The first certificate the client can use among those whose names match
 * the SNI as well as want (NAME_NONE: all of them), ECDSA/Ed25519 (smaller
 * and cheaper) before RSA; NULL if none fits. */
static const struct tls_cert *pick(SSL *ssl, const SSL_CLIENT_HELLO *hello,
                                   const struct hello_caps *caps, const struct tls_ctx *c,
                                   enum name_match want)
{
    const struct tls_cert *best = NULL;

    for (size_t i = 0; i < c->ncerts; i++) {
        const struct tls_cert *cert = &c->certs[i];
        if (want != NAME_NONE && cert_name_match(cert, caps->sni) != want)
            continue;
        if (!cert_fits(ssl, hello, caps, cert))
            continue;
        if (best == NULL || (best->type == EVP_PKEY_RSA && cert->type != EVP_PKEY_RSA))
            best = cert;
    }
    return best;
}

/*
 * Runs for each ClientHello when several certificates are configured. With
 * an SNI: the certificates whose names match it exactly, else those whose
 * wildcard matches it; then, with no SNI or no usable certificate for it,
 * all of them (a certificate for another name is still better than no
 * encryption to a client that does not check). Within each group the key
 * type decides (pick). The SSL starts with certs[0] (copied from the
 * SSL_CTX), so only another choice needs work. When nothing fits, certs[0]
 * stays and BoringSSL fails the handshake with its own reason.
 */
static enum ssl_select_cert_result_t on_select_certificate(const SSL_CLIENT_HELLO *hello)
{
    SSL *ssl = hello->ssl;
    struct tls_ctx *c = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    struct hello_caps caps;
    const struct tls_cert *best = NULL;

    hello_parse(hello, &caps);
    if (caps.sni[0] != '\0') {
        best = pick(ssl, hello, &caps, c, NAME_EXACT);
        if (best == NULL)
            best = pick(ssl, hello, &caps, c, NAME_WILDCARD);
    }
    if (best == NULL)
        best = pick(ssl, hello, &caps, c, NAME_NONE);
    if (best == NULL || best == &c->certs[0])
        return ssl_select_cert_success;
    if (!SSL_set_chain_and_key(ssl, best->chain, best->nchain, best->key, NULL))
        return ssl_select_cert_error;
    return ssl_select_cert_success;
}

/*
 * Called only for a ClientHello with ALPN. SMTP has no ALPN identifier
 * (RFC 7301 §3.2: a server that supports none of the offered protocols
 * sends no_application_protocol), so a client offering any protocol wants
 * something else: an HTTPS client sent here by a network attacker is the
 * ALPACA cross-protocol attack. A client without ALPN is served.
 */
static int on_alpn(SSL *ssl, const uint8_t **out, uint8_t *out_len, const uint8_t *in,
                   unsigned in_len, void *arg)
{
    (void)ssl, (void)out, (void)out_len, (void)in, (void)in_len, (void)arg;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

struct tls_ctx *tls_ctx_server_new(const struct tls_options *cfg, char *err, size_t errlen)
{
    size_t n = cfg->ncertificates;
    const char *ciphers = cfg->ciphers != NULL && cfg->ciphers[0] != '\0' ? cfg->ciphers
                                                                            : TLS_DEFAULT_CIPHERS;

    if (cfg->nkeys != n) {
        tls_say(err, errlen, NULL, "tls.key: %zu certificate file(s) but %zu key file(s)", n, cfg->nkeys);
        return NULL;
    }
    struct tls_ctx *c = ctx_alloc(n > 0 ? n : 1);
    if (c == NULL) {
        tls_say(err, errlen, NULL, "tls: out of memory");
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
        if (load_cert(&c->certs[i], cfg->certificates[i], cfg->keys[i],
                      cfg->certificate_at != NULL ? cfg->certificate_at[i] : NULL,
                      cfg->key_at != NULL ? cfg->key_at[i] : NULL, err, errlen) < 0)
            goto err;
    }
    /* Installing each chain once also has BoringSSL check it (key usable
     * for TLS, matching the leaf). Last to first, so certs[0] remains as
     * the default every SSL starts with. */
    for (size_t i = c->ncerts; i-- > 0;) {
        const struct tls_cert *cert = &c->certs[i];
        ERR_clear_error();
        if (!SSL_CTX_set_chain_and_key(c->ssl_ctx, cert->chain, cert->nchain, cert->key, NULL)) {
            tls_say(err, errlen, n > 0 && cfg->certificate_at != NULL ? cfg->certificate_at[i] : NULL,
                    "tls.certificate: cannot use \"%s\": %s",
                n > 0 ? cfg->certificates[i] : "(self-signed)", first_error("rejected by BoringSSL"));
            goto err;
        }
    }
    if (c->ncerts > 1)
        SSL_CTX_set_select_certificate_cb(c->ssl_ctx, on_select_certificate);
    SSL_CTX_set_alpn_select_cb(c->ssl_ctx, on_alpn, NULL);
    if (cfg->ticket_keys != NULL && cfg->ticket_keys[0] != '\0' &&
        tls_ticket_keys_load(c, cfg->ticket_keys, cfg->ticket_keys_at, err, errlen) < 0)
        goto err;

    /* Our choice of suite, not the client's: the list is ordered by
     * preference. Resumption works with tickets only (TLS 1.2 and 1.3), so
     * there is no per-session state on the server; without a ticket key
     * file BoringSSL makes and rotates the keys itself (every 48 hours).
     * BoringSSL servers never accept renegotiation, and 0-RTT stays off
     * (the default), because SMTP commands are not replay-safe. */
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
        tls_say(err, errlen, NULL, "tls: out of memory");
        return NULL;
    }
    /* The strict list (forward-secret AEAD, TLS 1.2+) is the context's, for
     * required and verify; a lenient (opportunistic) connection widens it
     * to everything BoringSSL implements, our list first, and accepts TLS
     * 1.0 and 1.1: an old destination that only has CBC suites is better
     * served encrypted than in plaintext (RFC 7435). */
    const char *ciphers = cfg->ciphers != NULL && cfg->ciphers[0] != '\0' ? cfg->ciphers
                                                                            : TLS_DEFAULT_CIPHERS;
    if (ctx_common(c, cfg, ciphers, err, errlen) < 0)
        goto err;
    size_t clen = strlen(ciphers) + sizeof ":ALL";
    c->lenient_ciphers = malloc(clen);
    if (c->lenient_ciphers == NULL) {
        tls_say(err, errlen, NULL, "tls: out of memory");
        goto err;
    }
    snprintf(c->lenient_ciphers, clen, "%s:ALL", ciphers);

    c->store = X509_STORE_new();
    c->pool = CRYPTO_BUFFER_POOL_new();
    if (c->store == NULL || c->pool == NULL) {
        tls_say(err, errlen, NULL, "tls: out of memory");
        goto err;
    }
    SSL_CTX_set0_buffer_pool(c->ssl_ctx, c->pool);
    if (cfg->ca_file != NULL && cfg->ca_file[0] != '\0') {
        FILE *f = fopen(cfg->ca_file, "r");
        if (f == NULL) {
            tls_say(err, errlen, NULL, "tls.ca_file: cannot load \"%s\": %s", cfg->ca_file, strerror(errno));
            goto err;
        }
        fclose(f);
        ERR_clear_error();
        if (!X509_STORE_load_locations(c->store, cfg->ca_file, NULL)) {
            uint32_t e = ERR_peek_last_error();
            tls_say(err, errlen, NULL, "tls.ca_file: cannot load \"%s\": %s", cfg->ca_file,
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
