/*
 * What a session's outcome counts as in a TLS-RPT report; see
 * tlsrpt_result.h for each choice and the RFC text behind it.
 */
#include "proxy/policy/tlsrpt_result.h"

#include <stdio.h>

static struct tlsrpt_verdict fail(enum tlsrpt_policy_type type, enum tlsrpt_result r)
{
    return (struct tlsrpt_verdict){.record = true, .type = type, .success = false, .result = r};
}

static struct tlsrpt_verdict ok(enum tlsrpt_policy_type type)
{
    return (struct tlsrpt_verdict){.record = true, .type = type, .success = true};
}

static const struct tlsrpt_verdict none = {.record = false};

/* A PKIX certificate problem as a result type. */
static enum tlsrpt_result cert_result(enum tlsrpt_cert c)
{
    switch (c) {
    case TLSRPT_CERT_NAME_MISMATCH:
        return TLSRPT_CERTIFICATE_HOST_MISMATCH;
    case TLSRPT_CERT_EXPIRED:
        return TLSRPT_CERTIFICATE_EXPIRED;
    case TLSRPT_CERT_NOT_TRUSTED:
        return TLSRPT_CERTIFICATE_NOT_TRUSTED;
    default:
        return TLSRPT_VALIDATION_FAILURE;
    }
}

/* TLS that never came about, as a result type; false when it did (or the
 * session never got as far). */
static bool tls_missing(enum tlsrpt_tls t, enum tlsrpt_cert c, enum tlsrpt_result *r)
{
    switch (t) {
    case TLSRPT_TLS_NO_STARTTLS:
    case TLSRPT_TLS_REFUSED:
        *r = TLSRPT_STARTTLS_NOT_SUPPORTED;
        return true;
    case TLSRPT_TLS_FAILED:
        *r = TLSRPT_VALIDATION_FAILURE;
        return true;
    case TLSRPT_TLS_CERT_FAILED:
        *r = cert_result(c);
        return true;
    case TLSRPT_TLS_UNKNOWN:
    case TLSRPT_TLS_OK:
        break;
    }
    return false;
}

static struct tlsrpt_verdict dane(const struct tlsrpt_outcome *o)
{
    const enum tlsrpt_policy_type T = TLSRPT_POLICY_TLSA;
    enum tlsrpt_result r;

    /* A DNSSEC failure refuses the session before it connects: that is
     * the attempt's end, whatever else happened. */
    if (o->dane == TLSRPT_DANE_DNS_FAILED)
        return fail(T, TLSRPT_DNSSEC_INVALID);
    if (o->tls == TLSRPT_TLS_UNKNOWN)
        return none;
    if (o->dane == TLSRPT_DANE_UNUSABLE)
        return fail(T, TLSRPT_TLSA_INVALID);
    /* Under DANE a failed certificate check is the DANE match's, which
     * o->dane names; other missing TLS is the negotiation's. */
    if (o->tls != TLSRPT_TLS_CERT_FAILED && tls_missing(o->tls, o->cert, &r))
        return fail(T, r);
    switch (o->dane) {
    case TLSRPT_DANE_MATCH:
        return o->tls == TLSRPT_TLS_OK ? ok(T) : fail(T, TLSRPT_VALIDATION_FAILURE);
    case TLSRPT_DANE_NO_MATCH:
        return fail(T, TLSRPT_TLSA_INVALID);
    case TLSRPT_DANE_NAME_MISMATCH:
        return fail(T, TLSRPT_CERTIFICATE_HOST_MISMATCH);
    case TLSRPT_DANE_CHAIN_INVALID:
        return fail(T, TLSRPT_CERTIFICATE_NOT_TRUSTED);
    default:
        return fail(T, TLSRPT_VALIDATION_FAILURE);
    }
}

static struct tlsrpt_verdict sts(const struct tlsrpt_outcome *o)
{
    const enum tlsrpt_policy_type T = TLSRPT_POLICY_STS;
    enum tlsrpt_result r;

    switch (o->sts) {
    case TLSRPT_MTASTS_FETCH_ERROR:
        return fail(T, TLSRPT_STS_POLICY_FETCH_ERROR);
    case TLSRPT_MTASTS_INVALID:
        return fail(T, TLSRPT_STS_POLICY_INVALID);
    case TLSRPT_MTASTS_WEBPKI_INVALID:
        return fail(T, TLSRPT_STS_WEBPKI_INVALID);
    default:
        break;
    }
    if (o->tls == TLSRPT_TLS_UNKNOWN)
        return none;
    if (tls_missing(o->tls, o->cert, &r))
        return fail(T, r);
    /* RFC 8461 §4.2: the chain must be PKIX-valid for an mx pattern. */
    return o->cert == TLSRPT_CERT_OK ? ok(T) : fail(T, cert_result(o->cert));
}

struct tlsrpt_verdict tlsrpt_classify(const struct tlsrpt_outcome *o)
{
    enum tlsrpt_result r;

    if (o->dane != TLSRPT_DANE_NA)
        return dane(o);
    if (o->sts != TLSRPT_MTASTS_NA)
        return sts(o);
    /* §4.4 "no-policy-found": what TLS itself came to. */
    if (o->tls_off || o->tls == TLSRPT_TLS_UNKNOWN)
        return none;
    if (tls_missing(o->tls, o->cert, &r))
        return fail(TLSRPT_POLICY_NONE, r);
    return ok(TLSRPT_POLICY_NONE);
}

enum tlsrpt_cert tlsrpt_sts_cert(bool mx_ok, bool name_ok, bool trusted, enum tlsrpt_cert handshake)
{
    if (name_ok)
        return TLSRPT_CERT_OK;
    if (!mx_ok)
        return TLSRPT_CERT_OTHER;
    if (trusted)
        return TLSRPT_CERT_NAME_MISMATCH;
    return handshake == TLSRPT_CERT_EXPIRED ? TLSRPT_CERT_EXPIRED : TLSRPT_CERT_NOT_TRUSTED;
}

int tlsrpt_tlsa_string(const struct tlsa_record *r, char *buf, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    int n = snprintf(buf, cap, "%u %u %u ", r->usage, r->selector, r->mtype);

    if (n < 0 || (size_t)n >= cap || r->len > (cap - (size_t)n - 1) / 2) {
        if (cap > 0)
            buf[0] = '\0';
        return TLSRPT_ERR_SPACE;
    }
    for (size_t i = 0; i < r->len; i++) {
        buf[n++] = hex[r->data[i] >> 4];
        buf[n++] = hex[r->data[i] & 15];
    }
    buf[n] = '\0';
    return n;
}
