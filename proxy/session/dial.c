/*
 * The server leg of a session: who the backend is told the client is, where
 * an outbound session goes and with which policy, dialling, and implicit
 * TLS before the backend is dialled.
 */
#include "proxy/session/session_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy/core/proxyproto.h"
#include "proxy/obs/log.h"
#include "proxy/policy/rules.h"

static const char R_INTERNAL[] = "421 4.3.0 Internal error, closing connection\r\n";
static const char R_NO_DEST[] =
    "421 4.3.0 No original destination: connection was not redirected to the proxy\r\n";

/* Tells an inbound backend who the client is, as configured: a PROXY header
 * before anything else, or the XCLIENT line the engine sends after the
 * backend's greeting. */
static void client_info_for_backend(struct session *s)
{
    uint8_t hdr[128];
    size_t hlen = 0;
    const struct sockaddr *peer = (const struct sockaddr *)&s->peer;
    const struct sockaddr *local = (const struct sockaddr *)&s->local;

    switch (s->p->in->backend_client_info) {
    case SESSION_CLIENT_INFO_PROXY_V1:
        hlen = proxyproto_v1((char *)hdr, sizeof(hdr), peer, local);
        break;
    case SESSION_CLIENT_INFO_PROXY_V2:
        hlen = proxyproto_v2(hdr, sizeof(hdr), peer, local);
        break;
    case SESSION_CLIENT_INFO_XCLIENT:
        xclient_line(s->d.in.client->xclient, sizeof(s->d.in.client->xclient), peer,
                     s->d.in.client->name[0] ? s->d.in.client->name
                     : s->d.in.name_tempfail ? XCLIENT_NAME_TEMPUNAVAIL
                                             : NULL);
        break;
    case SESSION_CLIENT_INFO_NONE:
        break;
    }
    if (hlen > 0)
        conn_emit(&s->server, hdr, hlen);
}

/*
 * The client's name, forward-confirmed (FCrDNS, as Postfix's
 * reject_unknown_client_hostname wants it): the PTR name of its address,
 * then that name's addresses, which must include the client's. Both are
 * thread-pool requests that cannot be cancelled once started, so each is
 * counted in s->handles until its callback; the connect timeout (armed
 * while they run) bounds the session meanwhile.
 */
struct name_lookup {
    uv_getnameinfo_t ni;
    uv_getaddrinfo_t ai;
    struct session *s;
};

static bool lookup_wanted(const struct session *s)
{
    const struct session_inbound_opts *in = s->p->in;

    return !s->p->outbound && !s->d.in.name_known &&
           (in->backend_client_info == SESSION_CLIENT_INFO_XCLIENT || in->received_header);
}

/* The lookup is over: name is the confirmed name or NULL. Dial. */
static void name_done(struct session *s, const char *name, bool tempfail)
{
    char *own = s->d.in.client->name; /* lookup_wanted: the block exists */

    if (name == NULL)
        own[0] = '\0';
    else if (name != own)
        snprintf(own, sizeof(s->d.in.client->name), "%s", name);
    s->d.in.name_tempfail = tempfail;
    s->d.in.name_known = true;
    log_debug("session=%s event=client_name client=%s name=%s", s->id, session_client_name(s),
              name       ? name
              : tempfail ? XCLIENT_NAME_TEMPUNAVAIL
                         : XCLIENT_NAME_UNAVAILABLE);
    /* implicit TLS: the handshake came first */
    if (s->d.in.engine.tls_active && session_set_received(s) != 0) {
        session_run_actions(s);
        return;
    }
    session_dial(s);
}

static bool has_address(const struct addrinfo *res, const struct sockaddr *peer)
{
    for (const struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        if (a->ai_family != peer->sa_family)
            continue;
        if (peer->sa_family == AF_INET &&
            memcmp(&((const struct sockaddr_in *)a->ai_addr)->sin_addr,
                   &((const struct sockaddr_in *)peer)->sin_addr, sizeof(struct in_addr)) == 0)
            return true;
        if (peer->sa_family == AF_INET6 &&
            memcmp(&((const struct sockaddr_in6 *)a->ai_addr)->sin6_addr,
                   &((const struct sockaddr_in6 *)peer)->sin6_addr,
                   sizeof(struct in6_addr)) == 0)
            return true;
    }
    return false;
}

static void on_forward(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct name_lookup *l = req->data;
    struct session *s = l->s;
    bool ok = status == 0 && has_address(res, (const struct sockaddr *)&s->peer);

    uv_freeaddrinfo(res);
    free(l);
    if (s->closing) {
        session_drop_handle(s); /* nothing calls back any more: it may be freed */
        return;
    }
    s->handles--; /* never the last: the legs and the timer are open */
    name_done(s, ok ? s->d.in.client->name : NULL, status == UV_EAI_AGAIN);
}

static void on_reverse(uv_getnameinfo_t *req, int status, const char *host, const char *service)
{
    struct name_lookup *l = req->data;
    struct session *s = l->s;

    (void)service;
    if (s->closing) {
        free(l);
        session_drop_handle(s);
        return;
    }
    if (status != 0 || host == NULL || !addr_valid_hostname(host)) {
        free(l);
        s->handles--;
        name_done(s, NULL, status == UV_EAI_AGAIN);
        return;
    }
    snprintf(s->d.in.client->name, sizeof(s->d.in.client->name), "%s", host);
    struct addrinfo hints = {.ai_family = s->peer.sa.sa_family, .ai_socktype = SOCK_STREAM};
    l->ai.data = l;
    int rc = uv_getaddrinfo(s->set->loop, &l->ai, on_forward, s->d.in.client->name, NULL, &hints);
    if (rc != 0) {
        free(l);
        s->handles--;
        name_done(s, NULL, rc == UV_EAI_AGAIN);
    }
    /* else the count stays: one request done, the next outstanding */
}

static void start_name_lookup(struct session *s)
{
    struct name_lookup *l = malloc(sizeof(*l));
    int rc = UV_ENOMEM;

    if (l != NULL) {
        l->s = s;
        l->ni.data = l;
        rc = uv_getnameinfo(s->set->loop, &l->ni, on_reverse, (const struct sockaddr *)&s->peer,
                            NI_NAMEREQD);
    }
    if (rc != 0) {
        free(l);
        name_done(s, NULL, true);
        return;
    }
    s->handles++; /* the request calls back even when the session is closing */
    s->action = "looking up the client's name";
    session_arm_phase(s, PHASE_CONNECTING, s->timeouts->connect);
}

/* received_header: what the Received: line of each message names, from
 * the client leg's TLS and the lookup above (see inbound_set_received).
 * Returns -1 when out of memory: the engine is then closing with a 421 and
 * the caller runs its actions. */
int session_set_received(struct session *s)
{
    struct inbound_received ri = {.when = (int64_t)time(NULL)};

    if (s->p->outbound || !s->p->in->received_header)
        return 0;
    snprintf(ri.by, sizeof(ri.by), "%s", session_host_name());
    snprintf(ri.id, sizeof(ri.id), "%s", s->id);
    snprintf(ri.client_name, sizeof(ri.client_name), "%s", s->d.in.client->name);
    addr_format_ip((const struct sockaddr *)&s->peer, ri.client_ip, sizeof(ri.client_ip));
    snprintf(ri.tls_version, sizeof(ri.tls_version), "%s", s->tls_version ? s->tls_version : "");
    snprintf(ri.tls_cipher, sizeof(ri.tls_cipher), "%s", s->tls_cipher ? s->tls_cipher : "");
    if (inbound_set_received(&s->d.in.engine, &ri) != 0) {
        log_error("session=%s listener=%s event=out_of_memory action=\"%s\"", s->id, s->p->name,
                  s->action);
        s->ops->abort(s->eng, R_INTERNAL, REASON_INTERNAL_ERROR);
        return -1;
    }
    return 0;
}

void session_dial(struct session *s)
{
    const struct sockaddr *sa = s->p->outbound ? (const struct sockaddr *)&s->d.out.dest.sa
                                               : (const struct sockaddr *)&s->p->in->backend.sa;

    if (lookup_wanted(s)) {
        start_name_lookup(s);
        return;
    }
    if (!s->p->outbound)
        client_info_for_backend(s);
    s->action = s->p->outbound ? "connecting to the destination" : "connecting to the backend";
    session_arm_phase(s, PHASE_CONNECTING, s->timeouts->connect);
    int rc = conn_connect(&s->server, sa);
    if (rc != 0) {
        log_warn("session=%s listener=%s event=connect_failed peer=%s error=\"%s\"", s->id,
                 s->p->name, session_server_name(s), uv_strerror(rc));
        s->ops->abort(s->eng, s->dir->server_down, REASON_BACKEND_UNREACHABLE);
        session_run_actions(s);
    }
}

/* The destination is known: the policy for it (rules may name addresses,
 * so both name and address count), then DANE's TLSA records if they may
 * apply, then dial. */
static void dial_destination(struct session *s)
{
    struct destination *d = &s->d.out.dest;

    s->d.out.policy = policy_for(&s->p->out->policy, d->host, (const struct sockaddr *)&d->sa);
    /* Per-recipient decisions need TLS wherever it can be had. */
    if (session_rcpt_of(s) != NULL && s->d.out.policy == OUTBOUND_NONE)
        s->d.out.policy = OUTBOUND_OPPORTUNISTIC;
    s->engine.out.cfg.policy = s->d.out.policy; /* before the greeting arrives (outbound.h) */
    if (session_dane_wanted(s)) {
        session_dane_lookup(s); /* dane.c: it dials once the TLSA answer has decided */
        return;
    }
    session_dial(s);
}

static void on_address(struct resolver_query *q, const struct resolver_result *res)
{
    struct session *s = q->data;
    const char *why;

    /* A closing session cancels its lookups: an answer comes only to a live
     * one, never as its last handle (the legs and the timer are open). */
    s->resolving--;
    s->handles--;
    if (!destination_lookup_answer(&s->d.out.lookup, q, res))
        return;
    enum destination_error e =
        destination_lookup_finish(&s->d.out.dest, &s->d.out.lookup, s->p->out->destination.port,
                                  &why);
    if (e != DESTINATION_OK) {
        static const enum reason reasons[] = {
            [DESTINATION_NOT_FOUND] = REASON_DESTINATION_NOT_FOUND,
            [DESTINATION_DNS_FAILED] = REASON_DNS_FAILED,
            [DESTINATION_DNSSEC_BOGUS] = REASON_DNSSEC_BOGUS,
        };
        log_warn("session=%s listener=%s event=resolve_failed destination=%s dns=%s "
                 "error=\"%s\"",
                 s->id, s->p->name, s->server_addr, destination_error_str(e), why ? why : "-");
        s->ops->abort(s->eng, destination_error_reply(e), reasons[e]);
        session_run_actions(s);
        return;
    }
    log_debug("session=%s event=resolved destination=%s dnssec=%s", s->id, s->server_addr,
              resolver_security_str(s->d.out.dest.addr_security));
    dial_destination(s);
}

void session_start_outbound(struct session *s)
{
    const struct session_outbound_opts *o = s->p->out;
    struct destination *d = &s->d.out.dest;
    int rc;

    s->d.out.policy = o->policy.fallback; /* until the destination is known */
    if (session_rcpt_wanted(s) && session_rcpt_init(s) != 0) {
        s->ops->abort(s->eng, s->dir->server_down, REASON_INTERNAL_ERROR);
        session_run_actions(s);
        return;
    }
    if (o->original_dst) {
        rc = destination_original(d, &s->client.tcp);
        if (rc < 0) {
            log_warn("session=%s listener=%s event=no_destination client=%s error=\"%s\"",
                     s->id, s->p->name, s->client_addr,
                     rc == UV_ENOENT ? "no SO_ORIGINAL_DST (not redirected?)" : uv_strerror(rc));
            s->ops->abort(s->eng, rc == UV_ENOENT ? R_NO_DEST : s->dir->server_down,
                          REASON_NO_DESTINATION);
            session_run_actions(s);
            return;
        }
    } else {
        rc = destination_fixed(d, &o->destination);
    }
    snprintf(s->server_addr, sizeof(s->server_addr), "%s", d->text);
    conn_resume(&s->client);
    if (s->closing)
        return;
    if (rc == 0) {
        dial_destination(s);
        return;
    }
    unsigned n = destination_lookup_start(&s->d.out.lookup, s->set->resolver, d->host,
                                          on_address, s);
    if (n == 0) {
        const char *why;
        enum destination_error e = destination_lookup_finish(d, &s->d.out.lookup, 0, &why);
        log_warn("session=%s listener=%s event=resolve_failed destination=%s dns=%s "
                 "error=\"%s\"",
                 s->id, s->p->name, s->server_addr, destination_error_str(e), why ? why : "-");
        s->ops->abort(s->eng, destination_error_reply(e), REASON_DNS_FAILED);
        session_run_actions(s);
        return;
    }
    s->resolving = n;
    s->handles += n; /* until their callbacks or their cancel in session_close */
    s->action = "resolving the destination";
    session_arm_phase(s, PHASE_CONNECTING, s->timeouts->connect);
}

/* Implicit TLS: the handshake comes first, the backend is dialled after.
 * early holds bytes that followed a PROXY header. */
void session_start_implicit_tls(struct session *s, const uint8_t *early, size_t n)
{
    struct tls *t = tls_new_server(s->p->tls);

    if (t == NULL || (n > 0 && tls_feed(t, early, n) != 0)) {
        tls_free(t);
        session_close(s, REASON_INTERNAL_ERROR);
        return;
    }
    conn_start_tls(&s->client, t);
    s->action = "TLS handshake with the client";
    session_arm_phase(s, PHASE_HANDSHAKE_IMPLICIT, s->timeouts->handshake);
    if (n > 0)
        conn_handshake(&s->client);
    else
        conn_resume(&s->client);
}

