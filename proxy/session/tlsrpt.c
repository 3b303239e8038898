/*
 * TLS-RPT in the session (RFC 8460 §4): what an outbound session of a
 * listener with `tls_rpt = true` leaves in the store (service/tlsrpt_store),
 * once per session and policy domain. What counts as which result is
 * policy/tlsrpt_result.h's; this file only observes.
 *
 *   fixed destination, DANE applied    policy type tlsa, policy domain and
 *   (or its TLSA lookup failed)        mx host = the host, policy-string =
 *                                      its usable TLSA records; at the end
 *   fixed destination named by a       no-policy-found for the host; at the
 *   host name, DANE not applying       end (an IP literal names no domain:
 *                                      nothing is recorded)
 *   transparent, per recipient         the recipient domain: tlsa where its
 *   (rcpt_auth.c)                      DANE decided, sts where an MTA-STS
 *                                      policy (enforce, testing) did or its
 *                                      fetch failed with nothing cached,
 *                                      no-policy-found where neither
 *                                      applies; when the first recipient
 *                                      of the domain is decided
 *
 * The TLS outcome is the first connection's: an opportunistic fallback in
 * plaintext is the same session, reported as the failure that caused it.
 * It is read off the engine's state changes (EHLO -> RELAY without
 * STARTTLS, STARTTLS -> RECONNECT, ...) and the TLS layer's results for the
 * handshake, never from the text of a note. A session that never got the
 * EHLO reply is not counted (no TLS was negotiated or refused), except
 * when a DNSSEC failure of the TLSA lookup is what ended it.
 *
 * sending-mta-ip is the server leg's own address, receiving-ip the
 * destination's. One write(2) per record (tlsrpt_record), at the session's
 * end or at a recipient's decision; nothing on the accept path.
 */
#include "proxy/session/session_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "proxy/core/addr.h"
#include "proxy/obs/log.h"
#include "proxy/policy/mta_sts.h"
#include "proxy/policy/tlsrpt_result.h"
#include "proxy/service/mta_sts_svc.h"
#include "proxy/service/tlsrpt_store.h"
#include "proxy/tls/tls.h"
#include "proxy/tls/tls_dane.h"

static bool recording(const struct session *s)
{
    return s->p != NULL && s->p->outbound && s->p->tls_rpt != NULL;
}

static enum tlsrpt_cert cert_class(enum tls_cert_problem p)
{
    switch (p) {
    case TLS_CERT_OK:
        return TLSRPT_CERT_OK;
    case TLS_CERT_UNCHECKED:
        return TLSRPT_CERT_UNCHECKED;
    case TLS_CERT_NAME_MISMATCH:
        return TLSRPT_CERT_NAME_MISMATCH;
    case TLS_CERT_EXPIRED:
        return TLSRPT_CERT_EXPIRED;
    case TLS_CERT_NOT_TRUSTED:
        return TLSRPT_CERT_NOT_TRUSTED;
    case TLS_CERT_OTHER:
        break;
    }
    return TLSRPT_CERT_OTHER;
}

enum tlsrpt_dane session_tlsrpt_dane(int result)
{
    switch (result) {
    case -1:
        return TLSRPT_DANE_NA;
    case TLS_DANE_MATCH_EE:
    case TLS_DANE_MATCH_TA:
        return TLSRPT_DANE_MATCH;
    case TLS_DANE_NO_MATCH:
        return TLSRPT_DANE_NO_MATCH;
    case TLS_DANE_TA_INVALID:
        return TLSRPT_DANE_CHAIN_INVALID;
    case TLS_DANE_NAME_MISMATCH:
        return TLSRPT_DANE_NAME_MISMATCH;
    default:
        return TLSRPT_DANE_ERROR;
    }
}

static void checks(struct session_rpt *r, const struct tls *t)
{
    r->cert = cert_class(tls_verify_problem(t));
    r->dane = session_tlsrpt_dane(tls_dane_status(t, NULL));
}

void session_tlsrpt_tls_ready(struct session *s, struct tls *t)
{
    if (recording(s) && s->d.out.rpt.tls == TLSRPT_TLS_UNKNOWN)
        checks(&s->d.out.rpt, t);
}

void session_tlsrpt_tls_failed(struct session *s, struct tls *t, bool cert)
{
    struct session_rpt *r = &s->d.out.rpt;

    if (!recording(s) || r->tls != TLSRPT_TLS_UNKNOWN)
        return;
    checks(r, t);
    r->tls = cert ? TLSRPT_TLS_CERT_FAILED : TLSRPT_TLS_FAILED;
}

void session_tlsrpt_state(struct session *s)
{
    struct session_rpt *r = &s->d.out.rpt;
    enum outbound_state prev = r->last, now = s->engine.out.state;

    if (!recording(s))
        return;
    r->last = now;
    if (prev == OUTBOUND_GREETING && !r->local_known) {
        /* The first connection is up (its greeting came): its own address. */
        int len = sizeof(r->local);
        r->local_known = uv_tcp_getsockname(&s->server.tcp, &r->local.sa, &len) == 0;
    }
    if (r->tls != TLSRPT_TLS_UNKNOWN)
        return;
    if (now == OUTBOUND_CLOSED) {
        /* Whether it was a refusal for TLS shows only in the reason, which
         * is set after this change: session_tlsrpt_end looks. */
        r->closed_from = prev;
        return;
    }
    switch (prev) {
    case OUTBOUND_EHLO:
    case OUTBOUND_HELO:
        if (now == OUTBOUND_RELAY)
            r->tls = TLSRPT_TLS_NO_STARTTLS;
        break;
    case OUTBOUND_STARTTLS:
        if (now == OUTBOUND_RECONNECT)
            r->tls = TLSRPT_TLS_REFUSED;
        break;
    case OUTBOUND_HANDSHAKE:
    case OUTBOUND_EHLO_TLS:
        if (now == OUTBOUND_RECONNECT)
            r->tls = TLSRPT_TLS_FAILED;
        else if (now == OUTBOUND_RELAY)
            r->tls = TLSRPT_TLS_OK;
        break;
    default:
        break;
    }
}

/* The outcome as far as TLS goes, the refusals at close included. */
static enum tlsrpt_tls tls_outcome(const struct session *s)
{
    const struct session_rpt *r = &s->d.out.rpt;

    if (r->tls != TLSRPT_TLS_UNKNOWN || s->engine.out.reason != REASON_POLICY_REFUSAL)
        return r->tls;
    switch (r->closed_from) {
    case OUTBOUND_EHLO:
    case OUTBOUND_HELO:
        return TLSRPT_TLS_NO_STARTTLS;
    case OUTBOUND_STARTTLS:
        return TLSRPT_TLS_REFUSED;
    case OUTBOUND_HANDSHAKE:
    case OUTBOUND_EHLO_TLS:
        return TLSRPT_TLS_FAILED;
    default:
        return TLSRPT_TLS_UNKNOWN;
    }
}

/* A name as a policy domain or mx host: lower case, no root dot; false
 * for an IP literal or anything that is not a host name. */
static bool domain_of(const char *name, char out[TLSRPT_NAME_MAX + 1])
{
    size_t n = strlen(name);
    struct in6_addr tmp;

    if (n > 0 && name[n - 1] == '.')
        n--;
    if (n == 0 || n > TLSRPT_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        out[i] = name[i] >= 'A' && name[i] <= 'Z' ? (char)(name[i] + ('a' - 'A')) : name[i];
    out[n] = '\0';
    return inet_pton(AF_INET, out, &tmp) != 1 && inet_pton(AF_INET6, out, &tmp) != 1 &&
           addr_valid_hostname(out);
}

/* One record: the attempt v of s for domain, with the TLSA records of set
 * (may be NULL) as its policy-string, or sts's text (may be NULL). */
static void record(struct session *s, const struct tlsrpt_verdict *v, const char *domain,
                   const char *mx, const struct tlsa_set *set, const struct tlsrpt_policy_text *sts)
{
    const struct session_rpt *r = &s->d.out.rpt;
    struct tlsrpt_attempt a = {
        .time = (int64_t)time(NULL), .type = v->type, .success = v->success, .result = v->result};
    char lines[TLSA_MAX_RECORDS][TLSRPT_POLICY_LINE_MAX + 1];
    const char *strings[TLSA_MAX_RECORDS];
    struct tlsrpt_policy_text text = {.strings = strings};
    int rc;

    if (!domain_of(domain, a.domain))
        return;
    if (mx[0] != '\0' && !domain_of(mx, a.mx_host))
        a.mx_host[0] = '\0';
    if (r->local_known)
        addr_format_ip(&r->local.sa, a.sending_ip, sizeof(a.sending_ip));
    if (s->d.out.dest.sa.ss_family != AF_UNSPEC)
        addr_format_ip((const struct sockaddr *)&s->d.out.dest.sa, a.receiving_ip,
                       sizeof(a.receiving_ip));
    /* §4.4 policy-string: the records in presentation form; one too long
     * for a line (a full certificate) is left out rather than cut. */
    for (size_t i = 0; set != NULL && i < set->n; i++)
        if (tlsrpt_tlsa_string(&set->rec[i], lines[text.n_strings], sizeof(lines[0])) > 0)
            strings[text.n_strings] = lines[text.n_strings], text.n_strings++;
    if (sts != NULL)
        rc = tlsrpt_record_policy(s->p->tls_rpt, &a, sts);
    else if (text.n_strings > 0)
        rc = tlsrpt_record_policy(s->p->tls_rpt, &a, &text);
    else
        rc = tlsrpt_record(s->p->tls_rpt, &a);
    log_debug("session=%s event=tls_rpt domain=%s type=%s result=%s rc=%d", s->id, a.domain,
              tlsrpt_policy_type_str(a.type), a.success ? "success" : tlsrpt_result_str(a.result),
              rc);
}

/* An sts record: policy-string = the policy's lines (RFC 8460 §4.4, in
 * RFC 8461 §3.2's order: version, mode, each mx, max_age), mx-host = its
 * mx patterns. A policy whose lines do not fit the store's bounds (more
 * than TLSRPT_POLICY_LINES - 3 patterns) is recorded without its text
 * rather than cut; so is a fetch error, which has no policy. */
static void record_sts(struct session *s, const struct tlsrpt_verdict *v, const char *domain,
                       const char *mx, const struct mta_sts_snapshot *p)
{
    char head[2][32], tail[32];
    const char *strings[TLSRPT_POLICY_LINES], *pats[TLSRPT_POLICY_LINES];
    char lines[TLSRPT_POLICY_LINES - 3][sizeof("mx: ") + MTA_STS_NAME_MAX];
    struct tlsrpt_policy_text text = {.strings = strings, .mx = pats};

    if (p == NULL || p->n_mx > TLSRPT_POLICY_LINES - 3) {
        record(s, v, domain, mx, NULL, NULL);
        return;
    }
    snprintf(head[0], sizeof(head[0]), "version: STSv1");
    snprintf(head[1], sizeof(head[1]), "mode: %s", mta_sts_mode_str(p->mode));
    snprintf(tail, sizeof(tail), "max_age: %u", (unsigned)p->max_age);
    strings[text.n_strings++] = head[0];
    strings[text.n_strings++] = head[1];
    for (size_t i = 0; i < p->n_mx; i++) {
        snprintf(lines[i], sizeof(lines[i]), "mx: %s", p->mx[i]);
        strings[text.n_strings++] = lines[i];
        pats[text.n_mx++] = p->mx[i];
    }
    strings[text.n_strings++] = tail;
    record(s, v, domain, mx, NULL, &text);
}

void session_tlsrpt_end(struct session *s)
{
    const struct session_rpt *r = &s->d.out.rpt;
    const struct session_dane *dn = s->d.out.dane;
    struct tlsrpt_outcome o = {
        .tls = tls_outcome(s),
        .cert = r->cert,
        .tls_off = s->d.out.policy == OUTBOUND_NONE,
    };

    /* Transparent sessions record per recipient domain (rcpt_auth.c). */
    if (!recording(s) || s->p->out->original_dst)
        return;
    /* Policy "none" never tries TLS (DANE without enforce leaves it so):
     * only a failed TLSA lookup is a result then. */
    if (o.tls_off && !r->dns_failed)
        return;
    if (r->dns_failed)
        o.dane = TLSRPT_DANE_DNS_FAILED;
    else if (dn != NULL && dn->verdict == TLSA_VERDICT_UNUSABLE)
        o.dane = TLSRPT_DANE_UNUSABLE;
    else if (dn != NULL && dn->verdict == TLSA_VERDICT_AUTHENTICATE)
        o.dane = r->dane != TLSRPT_DANE_NA ? r->dane : TLSRPT_DANE_ERROR;
    struct tlsrpt_verdict v = tlsrpt_classify(&o);
    if (v.record)
        record(s, &v, s->d.out.dest.host, s->d.out.dest.host,
               dn != NULL && v.type == TLSRPT_POLICY_TLSA ? &dn->set : NULL, NULL);
}

void session_tlsrpt_rcpt(struct session *s, const char *domain, const char *mx,
                         enum tlsrpt_dane dane, const struct tlsa_set *set,
                         const struct session_rpt_sts *sts)
{
    struct tlsrpt_outcome o = {.tls = tls_outcome(s), .cert = s->d.out.rpt.cert, .dane = dane};

    if (!recording(s))
        return;
    if (sts != NULL && dane == TLSRPT_DANE_NA && sts->sts != TLSRPT_MTASTS_NA) {
        o.sts = sts->sts;
        o.cert = sts->cert; /* the chain against the policy's MX hosts */
    }
    struct tlsrpt_verdict v = tlsrpt_classify(&o);
    if (!v.record)
        return;
    if (v.type == TLSRPT_POLICY_STS)
        record_sts(s, &v, domain, mx, sts->policy);
    else
        record(s, &v, domain, mx, v.type == TLSRPT_POLICY_TLSA ? set : NULL, NULL);
}
