/*
 * tls_dane: DANE authentication of a server's certificate chain against
 * the usable TLSA records of its TLSA base domain (RFC 7672 §3.1, RFC 7671).
 * BoringSSL has no DANE API; this is the custom part of the verify path.
 *
 *   DANE-EE(3): the leaf certificate, or its SubjectPublicKeyInfo, matches
 *     (full, SHA-256 or SHA-512). Names and dates are not checked (§3.1.1):
 *     the DNS says which key is the server's.
 *   DANE-TA(2): some certificate of the chain the server presented matches;
 *     it becomes the only trust anchor (partial chain: it need not be
 *     self-signed), the leaf must chain up to it and be valid now, and its
 *     names must include one of the reference identifiers: the TLSA base
 *     domain, and for a fixed destination the MX host (§3.1.2, §3.2.2). The
 *     anchor must be one of the certificates sent: a published bare key
 *     ("2 1 0" without the certificate in the chain) does not match.
 *
 * The chain is given as DER buffers, leaf first, so that callers (and the
 * unit tests) need no BoringSSL types.
 */
#ifndef SMTP_TLS_PROXY_TLS_DANE_H
#define SMTP_TLS_PROXY_TLS_DANE_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/policy/tlsa.h"

enum tls_dane_result {
    TLS_DANE_MATCH_EE,       /* a DANE-EE record matched the leaf */
    TLS_DANE_MATCH_TA,       /* a DANE-TA record matched, chain and name check out */
    TLS_DANE_NO_MATCH,       /* no record matched any certificate */
    TLS_DANE_TA_INVALID,     /* a TA matched, but the chain to it does not verify */
    TLS_DANE_NAME_MISMATCH,  /* a TA matched, the leaf has none of the names */
    TLS_DANE_ERROR,          /* no certificate, unparsable DER, out of memory */
};

/* "match-ee", "match-ta", "no-match", "ta-chain-invalid", "name-mismatch",
 * "error": static, for logs. */
const char *tls_dane_result_str(enum tls_dane_result r);

/* Checks the chain (n DER certificates der[i] of len[i] octets, leaf first,
 * borrowed) against the usable records of set. names: the nnames reference
 * identifiers for DANE-TA (DNS names; a leading "*." in a certificate
 * matches one label). now: seconds since the epoch for DANE-TA date checks
 * (0: the current time). On a failure *why (may be NULL) gets a static
 * explanation or BoringSSL's verify error string. Never calls back. */
enum tls_dane_result tls_dane_verify(const struct tlsa_set *set, const uint8_t *const *der,
                                     const size_t *len, size_t n, const char *const *names,
                                     size_t nnames, int64_t now, const char **why);

#endif
