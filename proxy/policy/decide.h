/*
 * decide: the per-recipient authentication decision of a transparent
 * outbound session (`destination = "original"`), DESIGN.md's precedence
 * made one pure function. The session has one TLS session with the
 * connected host already; for each recipient domain it gathers what DNS
 * (DANE), MTA-STS and the rule table say, and this decides whether that
 * recipient may go over this session. Pure: no I/O, no allocation.
 *
 * Precedence for one recipient domain (DESIGN.md, "Contract, second part"):
 *   1. an explicit `policies` rule matching the domain:
 *        none, opportunistic   pass (auth=none)
 *        required              TLS, any certificate (auth=none)
 *        verify                a PKIX-valid chain for the domain itself or a
 *                              name under it (Postfix's "nexthop,
 *                              dot-nexthop", smtp_tls_secure_cert_match):
 *                              auth=policy
 *   2. DANE (RFC 7672), when the domain's MX set is DNSSEC-secure and holds
 *      a host whose addresses include the connected one, and that host has
 *      secure TLSA records:
 *        usable records        TLS and a TLSA match of the kept chain
 *                              (auth=dane)
 *        none usable (§2.2)    TLS, unauthenticated (auth=none)
 *      A DNSSEC failure (bogus, SERVFAIL, timeout) on the way is temporary:
 *      never a downgrade to the next rule.
 *   3. an MTA-STS policy (RFC 8461) in enforce mode: TLS, the connected
 *      host one of the domain's MX hosts whose name matches one of the
 *      policy's mx patterns (§4.1), and the kept chain PKIX-valid for that
 *      MX host's name (§4.2) (auth=mta-sts). A policy in "testing" mode is
 *      checked the same way but never refuses (§5: report only): a failure
 *      is DECIDE_LOGGED (auth=mta-sts, its why) when the fallback would
 *      pass, and a success falls through to the fallback (a check that
 *      cannot stop a delivery does not authenticate it). "none" mode, no
 *      policy, and a failed fetch with no cached policy (§5: deliver as if
 *      there were none) fall through.
 *   4. `policy`, the listener's fallback: the session itself already meets
 *      it for the connection as a whole (outbound engine); here required
 *      wants TLS and verify the session's own PKIX verification
 *      (auth=policy).
 *
 * Enhanced status codes (RFC 3463): a requirement the TLS session does not
 * meet is 450 4.7.5 ("cryptographic failure": the certificate or the lack
 * of TLS), a DNS or DNSSEC failure on the way to the decision is 450 4.4.3
 * ("directory server failure", as RFC 7672 §2.1.1 wants it temporary), a
 * decision that did not finish in time 450 4.4.3 too. All are 450: the
 * recipient is refused for now, the client keeps it queued, and the other
 * recipients of the session go on (RFC 5321 §4.2.5: RCPT's 450).
 */
#ifndef SMTP_TLS_PROXY_DECIDE_H
#define SMTP_TLS_PROXY_DECIDE_H

#include <stdbool.h>

#include "proxy/core/outbound.h"

/* What DNS says about DANE for the domain and the connected host. */
enum decide_dane {
    DECIDE_DANE_NA,       /* not applicable: insecure or no MX set, connected host
                             not in it, insecure or no TLSA records */
    DECIDE_DANE_TEMPFAIL, /* a lookup failed temporarily (SERVFAIL, error, timeout) */
    DECIDE_DANE_BOGUS,    /* a DNSSEC validation failure */
    DECIDE_DANE_MATCH,    /* usable TLSA records, the kept chain matched */
    DECIDE_DANE_MISMATCH, /* usable TLSA records, the kept chain did not match */
    DECIDE_DANE_UNUSABLE, /* secure TLSA records, none usable (RFC 7672 §2.2) */
};

/* What MTA-STS says about the domain (filled by the session once policies
 * are fetched; DECIDE_STS_NO_POLICY until then). */
enum decide_sts_mode {
    DECIDE_STS_NO_POLICY, /* none published, or a failed fetch with nothing cached */
    DECIDE_STS_ENFORCE,
    DECIDE_STS_TESTING,
    DECIDE_STS_MODE_NONE,
};

struct decide_sts {
    enum decide_sts_mode mode;
    /* The chain is PKIX-valid for the name of the MX host below (one that
     * matches an mx pattern and holds the connected address). */
    bool name_ok;
    bool mx_ok; /* the connected address belongs to an MX host matching a pattern */
    /* When !name_ok, which way: the chain is PKIX-valid, only not for that
     * name (DECIDE_WHY_STS_NAME), or not trusted at all (_STS_UNTRUSTED). */
    bool trusted;
};

struct decide_input {
    /* An explicit `policies` rule matched the recipient domain. */
    bool rule;
    enum outbound_policy rule_policy; /* when rule */
    enum outbound_policy fallback;    /* `policy` */
    enum decide_dane dane;
    struct decide_sts sts;
    /* The session's TLS: encrypted or plaintext; pkix_domain: the chain is
     * PKIX-valid for the recipient domain or a name under it; pkix_session:
     * the session's own verification (policy verify) succeeded. */
    bool tls;
    bool pkix_domain;
    bool pkix_session;
    bool enforce; /* false: refusals are logged, not made */
};

enum decide_result {
    DECIDE_PASS,        /* forward the RCPT */
    DECIDE_REFUSE_TEMP, /* the proxy answers verdict.reply, the RCPT is not forwarded */
    DECIDE_LOGGED,      /* enforce = false: it would have been refused, it passes */
};

enum decide_auth {
    DECIDE_AUTH_NONE,
    DECIDE_AUTH_POLICY,
    DECIDE_AUTH_MTA_STS,
    DECIDE_AUTH_DANE, /* the order is strength: DANE is the strongest */
};

/* Why a recipient is (or would be) refused; the log's why=, never parsed. */
enum decide_why {
    DECIDE_WHY_NONE,
    DECIDE_WHY_RULE_NO_TLS,          /* policies rule required/verify, no TLS */
    DECIDE_WHY_RULE_NAME,            /* policies rule verify, chain not valid for the domain */
    DECIDE_WHY_DANE_NO_TLS,          /* DANE requires TLS: STARTTLS not offered or failed */
    DECIDE_WHY_DANE_MISMATCH,        /* usable TLSA records, no match */
    DECIDE_WHY_DANE_UNUSABLE_NO_TLS, /* secure unusable TLSA: TLS still mandatory */
    DECIDE_WHY_DNSSEC_BOGUS,
    DECIDE_WHY_DNS_FAILED,
    DECIDE_WHY_STS_NO_TLS,
    DECIDE_WHY_STS_NAME,        /* chain trusted, but not valid for the MX host's name */
    DECIDE_WHY_STS_MX,          /* connected host not among the policy's MX hosts */
    DECIDE_WHY_FALLBACK_NO_TLS, /* policy = required/verify, no TLS */
    DECIDE_WHY_FALLBACK_VERIFY, /* policy = verify, the session's chain not verified */
    DECIDE_WHY_TIMEOUT,         /* the decision did not finish in time (the session's) */
    DECIDE_WHY_STS_UNTRUSTED,   /* MTA-STS: the chain is not PKIX-valid (ca_file) */
    DECIDE_WHY_COUNT,
};

struct decide_verdict {
    enum decide_result result;
    /* PASS: the authentication this recipient got; REFUSE_TEMP/LOGGED: the
     * one that was required and not met. */
    enum decide_auth auth;
    enum decide_why why;
};

/* The decision for one recipient domain; in is read only. */
struct decide_verdict decide_rcpt(const struct decide_input *in);

/* The refusal for why (static, one line with CRLF: "450 4.7.5 ..."), or
 * NULL for DECIDE_WHY_NONE. */
const char *decide_reply(enum decide_why why);

/* Short text for logs (static): "DANE TLSA records do not match ...". */
const char *decide_why_str(enum decide_why why);

/* "none" | "policy" | "mta-sts" | "dane"; "pass" | "refused" | "logged". */
const char *decide_auth_str(enum decide_auth a);
const char *decide_result_str(enum decide_result r);

#endif
