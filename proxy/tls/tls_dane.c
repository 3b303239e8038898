/*
 * DANE verification; see tls_dane.h.
 */
#include "proxy/tls/tls_dane.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

const char *tls_dane_result_str(enum tls_dane_result r)
{
    switch (r) {
    case TLS_DANE_MATCH_EE:
        return "match-ee";
    case TLS_DANE_MATCH_TA:
        return "match-ta";
    case TLS_DANE_NO_MATCH:
        return "no-match";
    case TLS_DANE_TA_INVALID:
        return "ta-chain-invalid";
    case TLS_DANE_NAME_MISMATCH:
        return "name-mismatch";
    case TLS_DANE_ERROR:
        break;
    }
    return "error";
}

/* Whether record r matches certificate x (whose DER is der/len). */
static bool matches(const struct tlsa_record *r, X509 *x, const uint8_t *der, size_t len)
{
    uint8_t *spki = NULL, md[SHA512_DIGEST_LENGTH];
    const uint8_t *sel = der;
    size_t sel_len = len;
    bool ok = false;

    if (r->selector == TLSA_SELECTOR_SPKI) {
        int l = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &spki);
        if (l <= 0)
            return false;
        sel = spki;
        sel_len = (size_t)l;
    }
    switch (r->mtype) {
    case TLSA_MTYPE_FULL:
        ok = r->len == sel_len && memcmp(r->data, sel, sel_len) == 0;
        break;
    case TLSA_MTYPE_SHA256:
        SHA256(sel, sel_len, md);
        ok = r->len == SHA256_DIGEST_LENGTH && memcmp(r->data, md, SHA256_DIGEST_LENGTH) == 0;
        break;
    case TLSA_MTYPE_SHA512:
        SHA512(sel, sel_len, md);
        ok = r->len == SHA512_DIGEST_LENGTH && memcmp(r->data, md, SHA512_DIGEST_LENGTH) == 0;
        break;
    default:
        break;
    }
    OPENSSL_free(spki);
    return ok;
}

/* The leaf verified with ta as the only trust anchor (a partial chain),
 * the other presented certificates as untrusted intermediates, and names as
 * the acceptable host names. */
static enum tls_dane_result verify_to_anchor(X509 *ta, STACK_OF(X509) *chain,
                                             const char *const *names, size_t nnames,
                                             int64_t now, const char **why)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *sc = X509_STORE_CTX_new();
    enum tls_dane_result res = TLS_DANE_ERROR;

    if (store == NULL || sc == NULL || !X509_STORE_add_cert(store, ta) ||
        !X509_STORE_CTX_init(sc, store, sk_X509_value(chain, 0), chain) ||
        !X509_STORE_CTX_set_default(sc, "ssl_server"))
        goto out;
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(sc);
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
    if (now != 0)
        X509_VERIFY_PARAM_set_time(param, (time_t)now);
    /* RFC 7672 §3.2.3: wildcards match one whole leftmost label only. */
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (nnames == 0) {
        res = TLS_DANE_NAME_MISMATCH;
        if (why)
            *why = "no reference identifier for DANE-TA";
        goto out;
    }
    for (size_t i = 0; i < nnames; i++) {
        int ok = i == 0 ? X509_VERIFY_PARAM_set1_host(param, names[i], strlen(names[i]))
                        : X509_VERIFY_PARAM_add1_host(param, names[i], strlen(names[i]));
        if (!ok)
            goto out;
    }
    if (X509_verify_cert(sc) > 0) {
        res = TLS_DANE_MATCH_TA;
    } else {
        int e = X509_STORE_CTX_get_error(sc);
        res = e == X509_V_ERR_HOSTNAME_MISMATCH ? TLS_DANE_NAME_MISMATCH : TLS_DANE_TA_INVALID;
        if (why)
            *why = X509_verify_cert_error_string(e);
    }
out:
    X509_STORE_CTX_free(sc);
    X509_STORE_free(store);
    ERR_clear_error();
    return res;
}

enum tls_dane_result tls_dane_verify(const struct tlsa_set *set, const uint8_t *const *der,
                                     const size_t *len, size_t n, const char *const *names,
                                     size_t nnames, int64_t now, const char **why)
{
    STACK_OF(X509) *chain = NULL;
    enum tls_dane_result res = TLS_DANE_ERROR, ta_res = TLS_DANE_NO_MATCH;
    const char *ta_why = NULL;

    if (why)
        *why = NULL;
    if (n == 0) {
        if (why)
            *why = "no certificate";
        return TLS_DANE_ERROR;
    }
    if ((chain = sk_X509_new_null()) == NULL)
        goto out;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = der[i];
        X509 *x = d2i_X509(NULL, &p, (long)len[i]);

        if (x == NULL || p != der[i] + len[i] || !sk_X509_push(chain, x)) {
            X509_free(x);
            if (why)
                *why = "unparsable certificate";
            goto out;
        }
    }
    /* DANE-EE first: it needs no chain at all (§3.1.1). */
    for (size_t k = 0; k < set->n; k++) {
        if (set->rec[k].usage == TLSA_USAGE_DANE_EE &&
            matches(&set->rec[k], sk_X509_value(chain, 0), der[0], len[0])) {
            res = TLS_DANE_MATCH_EE;
            goto out;
        }
    }
    /* DANE-TA: each presented certificate that a record matches is tried
     * as the one anchor; the first that verifies wins. A match that fails
     * is reported only if nothing else succeeds. */
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < set->n; k++) {
            if (set->rec[k].usage != TLSA_USAGE_DANE_TA ||
                !matches(&set->rec[k], sk_X509_value(chain, i), der[i], len[i]))
                continue;
            const char *w = NULL;
            enum tls_dane_result r =
                verify_to_anchor(sk_X509_value(chain, i), chain, names, nnames, now, &w);
            if (r == TLS_DANE_MATCH_TA) {
                res = r;
                goto out;
            }
            if (ta_res == TLS_DANE_NO_MATCH || r == TLS_DANE_NAME_MISMATCH) {
                ta_res = r;
                ta_why = w;
            }
            break; /* the next certificate */
        }
    }
    res = ta_res;
    if (why)
        *why = res == TLS_DANE_NO_MATCH ? "no TLSA record matches the certificate chain" : ta_why;
out:
    sk_X509_pop_free(chain, X509_free);
    ERR_clear_error();
    return res;
}
