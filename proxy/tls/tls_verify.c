/*
 * tls_verify: the client's verification of the peer's chain. BoringSSL
 * hands over DER buffers only (TLS_with_buffers_method); they are parsed
 * for the length of one verification against the context's store and the
 * name to match (a host name, or an IP literal matched against IP SANs),
 * and only the X509_V_* result is kept in the engine.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "proxy/tls/tls.h"
#include "proxy/tls/tls_int.h"

bool tls_is_ip_literal(const char *s)
{
    unsigned char tmp[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, tmp) == 1 || inet_pton(AF_INET6, s, tmp) == 1;
}

const char *tls_verify_why(int e)
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
    case X509_V_ERR_APPLICATION_VERIFICATION:
        return "no name to verify";
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
        /* RFC 9525 §6.3 (and RFC 7672 §3.2.3 for SMTP): names come from the
         * subjectAltName only; a certificate without DNS names does not
         * match through its subject CN. */
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
        int ok = tls_is_ip_literal(t->verify_name)
                     ? X509_VERIFY_PARAM_set1_ip_asc(param, t->verify_name)
                     : X509_VERIFY_PARAM_set1_host(param, t->verify_name, strlen(t->verify_name));
        if (!ok)
            goto out;
    }
    if (X509_verify_cert(sc) > 0) {
        /* Fail closed: a chain that validates proves nothing about a peer
         * whose name we do not know, so without one there is no match. */
        result = t->verify_name != NULL ? X509_V_OK : X509_V_ERR_APPLICATION_VERIFICATION;
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

/* Longest chain matched against TLSA records: each certificate costs a
 * parse and a digest per record, and no real server sends more. */
#define DANE_MAX_CHAIN 16

/* DANE (RFC 7672 §3.1): the presented chain against the TLSA records, with
 * the TLSA base domain as the reference identifier; PKIX is not consulted.
 * Returns an X509_V_* result like verify_chain, so that the handshake's
 * failure path is the same. */
static int verify_dane(struct tls *t)
{
    const STACK_OF(CRYPTO_BUFFER) *ders = SSL_get0_peer_certificates(t->ssl);
    const uint8_t *der[DANE_MAX_CHAIN];
    size_t len[DANE_MAX_CHAIN], n = ders ? sk_CRYPTO_BUFFER_num(ders) : 0;
    const char *names[1] = {t->verify_name};

    if (n > DANE_MAX_CHAIN)
        n = DANE_MAX_CHAIN; /* the leaf and its nearest issuers */
    for (size_t i = 0; i < n; i++) {
        const CRYPTO_BUFFER *b = sk_CRYPTO_BUFFER_value(ders, i);
        der[i] = CRYPTO_BUFFER_data(b);
        len[i] = CRYPTO_BUFFER_len(b);
    }
    t->dane_why = NULL;
    enum tls_dane_result r =
        tls_dane_verify(t->dane, der, len, n, names, t->verify_name ? 1 : 0, 0, &t->dane_why);
    t->dane_result = (int)r;
    ERR_clear_error();
    return r == TLS_DANE_MATCH_EE || r == TLS_DANE_MATCH_TA ? X509_V_OK
                                                            : X509_V_ERR_APPLICATION_VERIFICATION;
}

void tls_dane_describe(const struct tls *t, char *buf, size_t len)
{
    snprintf(buf, len, "DANE %s%s%s",
             t->dane_result < 0 ? "not checked"
                                : tls_dane_result_str((enum tls_dane_result)t->dane_result),
             t->dane_why ? ": " : "", t->dane_why ? t->dane_why : "");
}

enum ssl_verify_result_t tls_on_verify(SSL *ssl, uint8_t *alert)
{
    struct tls *t = SSL_get_app_data(ssl);
    t->verify_err = t->dane != NULL ? verify_dane(t) : verify_chain(t);
    if (t->verify_err == X509_V_OK || !t->verify)
        return ssl_verify_ok;
    *alert = verify_alert(t->verify_err);
    return ssl_verify_invalid;
}

bool tls_verify_result(const struct tls *t, const char **why)
{
    if (t->verify_err == X509_V_OK) {
        if (why != NULL)
            *why = "ok";
        return true;
    }
    if (why != NULL)
        *why = t->dane != NULL && t->dane_result >= 0
                   ? tls_dane_result_str((enum tls_dane_result)t->dane_result)
                   : tls_verify_why(t->verify_err);
    return false;
}

enum tls_cert_problem tls_verify_problem(const struct tls *t)
{
    if (t->dane != NULL || t->verify_err == -1)
        return TLS_CERT_UNCHECKED;
    switch (t->verify_err) {
    case X509_V_OK:
        return TLS_CERT_OK;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
    case X509_V_ERR_APPLICATION_VERIFICATION: /* no name: nothing can match */
        return TLS_CERT_NAME_MISMATCH;
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return TLS_CERT_EXPIRED;
    case X509_V_ERR_CERT_NOT_YET_VALID:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_CERT_CHAIN_TOO_LONG:
    case X509_V_ERR_CERT_REVOKED:
    case X509_V_ERR_INVALID_CA:
    case X509_V_ERR_INVALID_NON_CA:
    case X509_V_ERR_PATH_LENGTH_EXCEEDED:
    case X509_V_ERR_INVALID_PURPOSE:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_REJECTED:
    case X509_V_ERR_KEYUSAGE_NO_CERTSIGN:
    case X509_V_ERR_PERMITTED_VIOLATION:
    case X509_V_ERR_EXCLUDED_VIOLATION:
    case X509_V_ERR_UNSUPPORTED_NAME_SYNTAX:
    case X509_V_ERR_NAME_CONSTRAINTS_WITHOUT_SANS:
        return TLS_CERT_NOT_TRUSTED;
    default:
        return TLS_CERT_OTHER;
    }
}

int tls_peer_chain(const struct tls *t, size_t max, size_t max_bytes, uint8_t **block,
                   const uint8_t **der, size_t *len)
{
    const STACK_OF(CRYPTO_BUFFER) *ders = SSL_get0_peer_certificates(t->ssl);
    size_t n = ders ? sk_CRYPTO_BUFFER_num(ders) : 0, total = 0, k = 0;

    *block = NULL;
    for (; k < n && k < max; k++) {
        size_t l = CRYPTO_BUFFER_len(sk_CRYPTO_BUFFER_value(ders, k));
        if (l > max_bytes - total)
            break; /* the nearest issuers that fit, never a gap */
        total += l;
    }
    if (k == 0)
        return 0;
    *block = malloc(total);
    if (*block == NULL)
        return -ENOMEM;
    for (size_t i = 0, off = 0; i < k; i++) {
        const CRYPTO_BUFFER *b = sk_CRYPTO_BUFFER_value(ders, i);
        memcpy(*block + off, CRYPTO_BUFFER_data(b), CRYPTO_BUFFER_len(b));
        der[i] = *block + off;
        len[i] = CRYPTO_BUFFER_len(b);
        off += len[i];
    }
    return (int)k;
}

/* name (n octets, from a certificate) is domain or below it; "*.D" counts
 * when D is. */
static bool name_under(const char *name, size_t n, const char *domain)
{
    size_t d = strlen(domain);

    if (d > 0 && domain[d - 1] == '.')
        d--;
    if (n >= 2 && name[0] == '*' && name[1] == '.') {
        name += 2;
        n -= 2;
    }
    if (n == 0 || d == 0 || memchr(name, '\0', n) != NULL || memchr(name, '*', n) != NULL)
        return false;
    if (n == d)
        return strncasecmp(name, domain, d) == 0;
    return n > d + 1 && name[n - d - 1] == '.' && strncasecmp(name + n - d, domain, d) == 0;
}

/* Parses a kept chain (n DER certificates, leaf first) into *chain and
 * checks it against ctx's trust store as a TLS server's; the leaf when it
 * verifies, else NULL. *chain is the caller's to free either way (it may be
 * NULL). */
static X509 *verify_kept_chain(struct tls_ctx *ctx, const uint8_t *const *der, const size_t *len,
                               size_t n, STACK_OF(X509) **chain)
{
    X509_STORE_CTX *sc = NULL;
    X509 *leaf = NULL;

    *chain = NULL;
    if (ctx == NULL || ctx->store == NULL || n == 0 || (*chain = sk_X509_new_null()) == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = der[i];
        X509 *x = d2i_X509(NULL, &p, (long)len[i]);
        if (x == NULL || !sk_X509_push(*chain, x)) {
            X509_free(x);
            return NULL;
        }
    }
    sc = X509_STORE_CTX_new();
    if (sc != NULL && X509_STORE_CTX_init(sc, ctx->store, sk_X509_value(*chain, 0), *chain) &&
        X509_STORE_CTX_set_default(sc, "ssl_server") && X509_verify_cert(sc) > 0)
        leaf = sk_X509_value(*chain, 0);
    X509_STORE_CTX_free(sc);
    return leaf;
}

bool tls_chain_valid_for_domain(struct tls_ctx *ctx, const uint8_t *const *der, const size_t *len,
                                size_t n, const char *domain)
{
    STACK_OF(X509) *chain;
    X509 *leaf = verify_kept_chain(ctx, der, len, n, &chain);
    GENERAL_NAMES *names = leaf ? X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL) : NULL;
    bool ok = false;

    for (size_t i = 0; names != NULL && i < sk_GENERAL_NAME_num(names) && !ok; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        if (g->type == GEN_DNS)
            ok = name_under((const char *)ASN1_STRING_get0_data(g->d.dNSName),
                            (size_t)ASN1_STRING_length(g->d.dNSName), domain);
    }
    GENERAL_NAMES_free(names);
    sk_X509_pop_free(chain, X509_free);
    ERR_clear_error();
    return ok;
}

enum tls_chain_check tls_chain_check_host(struct tls_ctx *ctx, const uint8_t *const *der,
                                          const size_t *len, size_t n, const char *host)
{
    STACK_OF(X509) *chain;
    X509 *leaf = verify_kept_chain(ctx, der, len, n, &chain);
    enum tls_chain_check r = TLS_CHAIN_UNTRUSTED;
    size_t h = host != NULL ? strlen(host) : 0;

    if (leaf != NULL) {
        /* The name apart from the path: a trusted chain for another name
         * is a different failure (RFC 8460 certificate-host-mismatch). */
        r = TLS_CHAIN_NAME;
        if (h > 0 && h < 254 && memchr(host, '*', h) == NULL && !tls_is_ip_literal(host) &&
            X509_check_host(leaf, host, h,
                            X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
                                X509_CHECK_FLAG_NEVER_CHECK_SUBJECT,
                            NULL) == 1)
            r = TLS_CHAIN_VALID;
    }
    sk_X509_pop_free(chain, X509_free);
    ERR_clear_error();
    return r;
}
