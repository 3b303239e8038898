/*
 * DANE for a fixed destination (RFC 7672), in the session: the TLSA lookup
 * after the destination's addresses, what its answer decides, the client
 * TLS engine in DANE mode, and the auth= outcome of the end line.
 *
 * The host of `destination = "host:port"` is treated as the MX host
 * (Postfix's relayhost rule): its TLSA base domain is the host itself and
 * the records are at _port._tcp.host (§3.2.2; CNAMEs of the host are not
 * expanded for the base domain). DANE applies only when the addresses were
 * DNSSEC-validated (§2.2.2: insecure address records, no DANE) and no
 * explicit `policies` rule matches the destination (DESIGN.md precedence).
 *
 *   TLSA answer                      decision
 *   bogus, SERVFAIL, lookup error    421 4.4.3, temporary (never a downgrade)
 *   insecure, NXDOMAIN, no records   DANE does not apply: `policy` as set
 *   secure, none usable              mandatory TLS, unauthenticated (§2.2),
 *                                    unless `policy` is "verify"
 *   secure, usable records           policy dane: a DANE match or 421 4.7.5
 *
 * With enforce = false nothing is refused for DANE: the session runs under
 * `policy`, and each refusal DANE would have made is logged
 * (event=auth_refusal_logged) and counted (outbound_auth_total, "logged").
 */
#include "proxy/session/session_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/obs/log.h"
#include "proxy/policy/rules.h"
#include "proxy/tls/tls.h"
#include "proxy/tls/tls_dane.h"

/* RDATAs looked at per RRset; tlsa_set keeps at most TLSA_MAX_RECORDS
 * usable ones of them. */
#define DANE_MAX_RDATA 64

bool session_dane_wanted(const struct session *s)
{
    const struct session_outbound_opts *o = s->p->out;
    const struct destination *d = &s->d.out.dest;

    if (!o->dane || o->original_dst || destination_sni(d) == NULL ||
        d->addr_security != RESOLVER_SECURE)
        return false;
    /* An explicit rule comes first. */
    return policy_rule_for(&o->policy, d->host, (const struct sockaddr *)&d->sa) == NULL;
}

void session_dane_free(struct session *s)
{
    struct session_dane *dn = s->d.out.dane;

    if (dn == NULL)
        return;
    free(dn->data);
    free(dn);
    s->d.out.dane = NULL;
}

unsigned session_dane_cancel(struct session *s)
{
    return s->d.out.dane != NULL && resolver_cancel(&s->d.out.dane->q) ? 1 : 0;
}

/* A refusal that enforce = false turned into a log line and a count. */
static void refusal_logged(struct session *s, const char *why)
{
    char q[300];

    log_warn("session=%s listener=%s event=auth_refusal_logged destination=%s auth=dane why=%s",
             s->id, s->p->name, s->server_addr, log_quote(why, q, sizeof(q)));
    metrics_outbound_auth(s->p->metrics, "dane", "logged");
    if (s->d.out.dane != NULL)
        s->d.out.dane->logged = true;
}

void session_dane_refusal_logged(void *arg, const char *why)
{
    refusal_logged(arg, why);
}

/* Keeps the usable records: their data is copied into one block that the
 * session owns, so that the answer can go. 0 or -1 (out of memory). */
static int keep_records(struct session_dane *dn)
{
    size_t total = 0, off = 0;

    for (size_t i = 0; i < dn->set.n; i++)
        total += dn->set.rec[i].len;
    dn->data = malloc(total > 0 ? total : 1);
    if (dn->data == NULL)
        return -1;
    for (size_t i = 0; i < dn->set.n; i++) {
        memcpy(dn->data + off, dn->set.rec[i].data, dn->set.rec[i].len);
        dn->set.rec[i].data = dn->data + off;
        off += dn->set.rec[i].len;
    }
    return 0;
}

/* The TLSA lookup failed or was bogus: a temporary refusal naming it. */
static void lookup_failed(struct session *s, const struct resolver_result *res)
{
    struct session_dane *dn = s->d.out.dane;
    bool bogus = res->err == 0 && res->security == RESOLVER_BOGUS;
    char why[200], q[260];

    s->d.out.rpt.dns_failed = true; /* TLS-RPT: dnssec-invalid */
    if (res->err != 0)
        snprintf(why, sizeof(why), "%s", res->errstr ? res->errstr : "error");
    else if (bogus)
        snprintf(why, sizeof(why), "%s", res->why_bogus ? res->why_bogus : "bogus");
    else
        snprintf(why, sizeof(why), "rcode %d%s", res->rcode,
                 res->rcode == RESOLVER_RCODE_SERVFAIL ? " (SERVFAIL)" : "");
    log_warn("session=%s listener=%s event=tlsa_failed destination=%s name=%s dns=%s error=%s",
             s->id, s->p->name, s->server_addr, dn->name, bogus ? "dnssec_bogus" : "dns_failed",
             log_quote(why, q, sizeof(q)));
    if (!s->p->out->enforce) {
        refusal_logged(s, bogus ? "TLSA records failed DNSSEC validation" : "TLSA lookup failed");
        session_dane_free(s);
        session_dial(s);
        return;
    }
    /* RFC 7672 §2.1.1: a failed TLSA lookup is not "no records"; the
     * message waits for the DNS to be fixed (RFC 3463 4.4.3). */
    snprintf(dn->reply, sizeof(dn->reply),
             bogus ? "421 4.4.3 DNSSEC validation of the TLSA records at %s failed, try again "
                     "later\r\n"
                   : "421 4.4.3 TLSA lookup at %s failed, DNSSEC validation could not be "
                     "completed, try again later\r\n",
             dn->name);
    s->ops->abort(s->eng, dn->reply, bogus ? REASON_DNSSEC_BOGUS : REASON_DNS_FAILED);
    session_run_actions(s);
}

enum tlsa_verdict session_tlsa_set(const struct resolver_result *res, struct tlsa_set *set)
{
    const uint8_t *rd[DANE_MAX_RDATA];
    size_t len[DANE_MAX_RDATA], n = res->count < DANE_MAX_RDATA ? res->count : DANE_MAX_RDATA;

    for (size_t i = 0; i < n; i++) {
        rd[i] = (const uint8_t *)res->data[i];
        len[i] = res->len[i] > 0 ? (size_t)res->len[i] : 0;
    }
    return tlsa_set_build(set, rd, len, n);
}

static void on_tlsa(struct resolver_query *q, const struct resolver_result *res)
{
    struct session *s = q->data;
    struct session_dane *dn = s->d.out.dane;
    const struct session_outbound_opts *o = s->p->out;

    /* As on_address: only a live session gets an answer. */
    s->resolving--;
    s->handles--;
    if (res->err != 0 || res->security == RESOLVER_BOGUS ||
        (res->rcode != RESOLVER_RCODE_NOERROR && res->rcode != RESOLVER_RCODE_NXDOMAIN)) {
        lookup_failed(s, res);
        return;
    }
    if (res->security != RESOLVER_SECURE || res->count == 0) {
        log_debug("session=%s event=tlsa name=%s dnssec=%s verdict=none records=%zu", s->id,
                  dn->name, resolver_security_str(res->security), res->count);
        session_dane_free(s);
        session_dial(s);
        return;
    }
    dn->verdict = session_tlsa_set(res, &dn->set);
    log_debug("session=%s event=tlsa name=%s dnssec=secure verdict=%s records=%zu usable=%zu",
              s->id, dn->name, tlsa_verdict_str(dn->verdict), res->count, dn->set.n);
    if (keep_records(dn) < 0) {
        s->ops->abort(s->eng, s->dir->server_down, REASON_INTERNAL_ERROR);
        session_run_actions(s);
        return;
    }
    if (dn->verdict == TLSA_VERDICT_UNUSABLE) {
        /* §2.2: secure records, none usable: still no plaintext, and no
         * authentication either. */
        log_info("session=%s listener=%s event=dane_unusable destination=%s name=%s "
                 "records=%zu msg=\"no usable TLSA record: TLS required, not authenticated\"",
                 s->id, s->p->name, s->server_addr, dn->name, res->count);
        /* A configured "verify" is stricter still and stays. */
        if (o->enforce && s->d.out.policy != OUTBOUND_VERIFY)
            s->d.out.policy = OUTBOUND_REQUIRED;
    } else if (o->enforce) {
        s->d.out.policy = OUTBOUND_DANE;
    }
    s->engine.out.cfg.policy = s->d.out.policy;
    s->engine.out.cfg.dane_audit = !o->enforce;
    session_dial(s);
}

void session_dane_lookup(struct session *s)
{
    struct session_dane *dn = calloc(1, sizeof(*dn));
    const struct destination *d = &s->d.out.dest;
    int rc = UV_ENOMEM;

    if (dn != NULL) {
        s->d.out.dane = dn;
        dn->q.data = s;
        snprintf(dn->name, sizeof(dn->name), "_%u._tcp.%s", (unsigned)s->p->out->destination.port,
                 d->host);
        rc = resolver_query(s->set->resolver, &dn->q, dn->name, RESOLVER_TYPE_TLSA, on_tlsa);
    }
    if (rc != 0) {
        struct resolver_result res = {
            .err = rc, .errstr = rc == UV_ESHUTDOWN ? "no resolver" : uv_strerror(rc)};
        if (dn == NULL) {
            s->ops->abort(s->eng, s->dir->server_down, REASON_INTERNAL_ERROR);
            session_run_actions(s);
            return;
        }
        lookup_failed(s, &res);
        return;
    }
    s->resolving++;
    s->handles++; /* until on_tlsa or its cancel in session_close */
    s->action = "looking up the destination's TLSA records";
}

struct tls *session_dane_client(struct session *s, bool lenient)
{
    const struct session_dane *dn = s->d.out.dane;
    char name[sizeof(s->d.out.dest.host)];

    if (dn == NULL || dn->verdict != TLSA_VERDICT_AUTHENTICATE)
        return NULL;
    /* The base domain as SNI and reference identifier, without the root's
     * dot (certificates never carry it); the engine copies it. */
    snprintf(name, sizeof(name), "%s", s->d.out.dest.host);
    size_t n = strlen(name);
    if (n > 1 && name[n - 1] == '.')
        name[n - 1] = '\0';
    return tls_new_client_dane(s->p->tls, &dn->set, name, s->p->out->enforce, lenient);
}

void session_dane_tls_ready(struct session *s, struct tls *t)
{
    const char *why;
    int r = tls_dane_status(t, &why);
    char msg[300];

    if (r < 0)
        return;
    log_debug("session=%s event=dane result=%s", s->id,
              tls_dane_result_str((enum tls_dane_result)r));
    if (s->d.out.verified)
        return;
    /* Only without enforcement does a mismatch get this far. */
    snprintf(msg, sizeof(msg), "DANE %s: %s", tls_dane_result_str((enum tls_dane_result)r),
             why ? why : "-");
    refusal_logged(s, msg);
}

const char *session_auth(const struct session *s, const char **result)
{
    const struct session_dane *dn = s->d.out.dane;
    bool refused = s->reason == REASON_POLICY_REFUSAL;

    *result = NULL;
    if (session_rcpt_of(s) != NULL)
        return session_rcpt_auth(s); /* each recipient was counted when decided */
    if (dn != NULL && dn->verdict == TLSA_VERDICT_AUTHENTICATE) {
        if (s->d.out.verified)
            *result = "ok";
        else if (refused && !dn->logged)
            *result = "fail";
        return "dane";
    }
    if (s->d.out.policy == OUTBOUND_VERIFY) {
        *result = s->d.out.verified ? "ok" : refused ? "fail" : NULL;
        return "policy";
    }
    return "none";
}
