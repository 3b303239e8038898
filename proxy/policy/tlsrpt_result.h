/*
 * tlsrpt_result: what one outbound session's outcome counts as in a TLS-RPT
 * report (RFC 8460 §4.3, §4.4): its policy type (tlsa | sts |
 * no-policy-found), success, or the result type of its failure. Pure: the
 * session layer describes what happened in the terms below, and this file
 * alone decides how that is reported, so that every choice is in one place
 * and unit-tested.
 *
 * Precedence follows the one of the delivery decision (DESIGN.md): DANE
 * when secure TLSA records (or a DNSSEC failure on the way to them) decide,
 * then an MTA-STS policy in enforce or testing mode (the sts fields, and
 * tlsrpt_sts_cert for the certificate), else no-policy-found.
 *
 * The result types, each from the RFC's text (§4.3.1, §4.3.2.1, §4.3.2.2):
 *
 *   starttls-not-supported     the EHLO reply offered no STARTTLS, or STARTTLS
 *                              was not answered with 220 ("the recipient MX
 *                              did not support STARTTLS")
 *   validation-failure         the handshake after the 220 failed for a reason
 *                              that is not the certificate, or a DANE check
 *                              that could not be made ("a general failure for
 *                              a reason not matching a category above")
 *   tlsa-invalid               usable TLSA records, none matched the chain;
 *                              or secure TLSA records of which none is usable
 *                              (RFC 7672 §2.2): "a validation error in the
 *                              TLSA record ... None of the records in the
 *                              RRset were found to be valid"
 *   certificate-host-mismatch  DANE-TA matched but the leaf names none of the
 *                              reference identifiers, or a PKIX name mismatch
 *                              ("did not adhere to the constraints specified
 *                              in the MTA-STS or DANE policy, e.g., ... the MX
 *                              hostname does not match")
 *   certificate-not-trusted    DANE-TA matched but the chain to it does not
 *                              verify; PKIX: unknown CA, self-signed, chain
 *                              or name-constraint errors, not yet valid ("a
 *                              label that covers multiple certificate-related
 *                              failures ... certificate chain errors")
 *   certificate-expired        PKIX: a certificate of the chain has expired
 *   dnssec-invalid             the TLSA (or, per recipient, MX or address)
 *                              lookup was bogus or failed: "no valid records
 *                              were returned from the recursive resolver"
 *   dane-required              never: no configuration makes DANE mandatory
 *                              for a destination without TLSA records
 *                              (RFC 7672 §6)
 *   sts-policy-fetch-error, sts-policy-invalid, sts-webpki-invalid
 *                              the MTA-STS policy could not be fetched, did
 *                              not parse, or its HTTPS server's certificate
 *                              did not verify
 *
 * A certificate problem counts under no-policy-found only when it failed
 * the handshake (policy = "verify"): without a published policy, TLS that
 * was established is a success. Under sts it counts when TLS was
 * established too (testing mode delivers anyway; the report says why it
 * would not have).
 */
#ifndef SMTP_TLS_PROXY_TLSRPT_RESULT_H
#define SMTP_TLS_PROXY_TLSRPT_RESULT_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy/policy/tlsa.h"
#include "proxy/policy/tlsrpt.h"

/* How the TLS negotiation of the session's first connection ended. */
enum tlsrpt_tls {
    TLSRPT_TLS_UNKNOWN,     /* it never got to the EHLO reply: nothing to report */
    TLSRPT_TLS_NO_STARTTLS, /* the EHLO reply offered no STARTTLS (or EHLO was
                               refused) */
    TLSRPT_TLS_REFUSED,     /* STARTTLS not answered with 220 (refused, no reply) */
    TLSRPT_TLS_FAILED,      /* after the 220: the handshake (or EHLO over TLS) failed
                             */
    TLSRPT_TLS_CERT_FAILED, /* the handshake failed on the certificate check */
    TLSRPT_TLS_OK,          /* established */
};

/* What a PKIX check of the destination's chain found. */
enum tlsrpt_cert {
    TLSRPT_CERT_OK,
    TLSRPT_CERT_UNCHECKED,     /* no chain was checked */
    TLSRPT_CERT_NAME_MISMATCH, /* no name of the leaf matches */
    TLSRPT_CERT_EXPIRED,
    TLSRPT_CERT_NOT_TRUSTED, /* CA, chain, constraints, not yet valid */
    TLSRPT_CERT_OTHER,       /* unparsable, out of memory, ... */
};

/* What DANE came to for the policy domain. */
enum tlsrpt_dane {
    TLSRPT_DANE_NA,            /* DANE does not apply (no secure TLSA records) */
    TLSRPT_DANE_DNS_FAILED,    /* a lookup on the way was bogus or failed */
    TLSRPT_DANE_UNUSABLE,      /* secure TLSA records, none usable */
    TLSRPT_DANE_MATCH,         /* usable records, the chain matched */
    TLSRPT_DANE_NO_MATCH,      /* usable records, none matched the chain */
    TLSRPT_DANE_NAME_MISMATCH, /* a DANE-TA matched, the leaf has none of the
                                  names */
    TLSRPT_DANE_CHAIN_INVALID, /* a DANE-TA matched, the chain to it does not
                                  verify */
    TLSRPT_DANE_ERROR,         /* usable records, no chain could be checked */
};

/* What MTA-STS came to for the policy domain (rcpt_auth.c: a transparent
 * session's recipient domain, from the service's answer and its
 * fetch_error). */
enum tlsrpt_sts {
    TLSRPT_MTASTS_NA,             /* no policy: MTA-STS does not apply */
    TLSRPT_MTASTS_FETCH_ERROR,    /* a policy is announced, none could be fetched */
    TLSRPT_MTASTS_INVALID,        /* the fetched policy did not parse */
    TLSRPT_MTASTS_WEBPKI_INVALID, /* the policy server's certificate did not verify
                                   */
    TLSRPT_MTASTS_APPLIED,        /* a policy (enforce or testing) applies; cert is the
                                  PKIX check against its mx patterns */
};

struct tlsrpt_outcome {
    enum tlsrpt_tls tls;
    enum tlsrpt_cert cert; /* the PKIX check of the chain (TLS_OK or CERT_FAILED) */
    enum tlsrpt_dane dane;
    enum tlsrpt_sts sts;
    bool tls_off; /* policy "none": TLS was never tried, nothing to report without
                     DANE */
};

struct tlsrpt_verdict {
    bool record; /* false: nothing is reported for this session */
    enum tlsrpt_policy_type type;
    bool success;
    enum tlsrpt_result result; /* when !success */
};

/*
 * MTA-STS's check of the kept chain (policy/decide.h's struct decide_sts)
 * as the cert of an outcome with TLSRPT_MTASTS_APPLIED:
 *
 *   name_ok            PKIX-valid for an MX host matching a pattern: OK
 *   !mx_ok             no MX host holding the connected address matches
 *                      an mx pattern: OTHER, i.e. validation-failure
 *                      (§4.3.1 has no type for it; "a general failure for
 *                      a reason not matching a category above")
 *   trusted            PKIX-valid, not for that host: NAME_MISMATCH
 *                      (certificate-host-mismatch, "the MX hostname does
 *                      not match any identities listed in the SAN")
 *   otherwise          untrusted: EXPIRED when the handshake's own PKIX
 *                      class (tls_verify_problem) says expired, which the
 *                      kept-chain check does not tell; else NOT_TRUSTED
 */
enum tlsrpt_cert tlsrpt_sts_cert(bool mx_ok, bool name_ok, bool trusted,
                                 enum tlsrpt_cert handshake);

/* The report entry of one session's outcome for one policy domain. */
struct tlsrpt_verdict tlsrpt_classify(const struct tlsrpt_outcome *o);

/* One TLSA record in presentation form, "3 1 1 <hex>" (RFC 6698 §2.2, the
 * §4.4 policy-string of a tlsa policy), into buf (cap bytes, NUL-terminated).
 * Returns the length, or TLSRPT_ERR_SPACE when it does not fit (a full
 * certificate is longer than any policy-string line is allowed to be). */
int tlsrpt_tlsa_string(const struct tlsa_record *r, char *buf, size_t cap);

#endif
