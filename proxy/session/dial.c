/*
 * The server leg of a session: who the backend is told the client is, where
 * an outbound session goes and with which policy, dialling, and implicit
 * TLS before the backend is dialled.
 */
#include "proxy/session/session_int.h"

#include <stdio.h>
#include <string.h>

#include "proxy/core/proxyproto.h"
#include "proxy/obs/log.h"
#include "proxy/policy/rules.h"

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
        xclient_line(s->d.in.xclient, sizeof(s->d.in.xclient), peer);
        break;
    case SESSION_CLIENT_INFO_NONE:
        break;
    }
    if (hlen > 0)
        conn_emit(&s->server, hdr, hlen);
}

void session_dial(struct session *s)
{
    const struct sockaddr *sa = s->p->outbound ? (const struct sockaddr *)&s->d.out.dest.sa
                                               : (const struct sockaddr *)&s->p->in->backend.sa;

    if (!s->p->outbound)
        client_info_for_backend(s);
    s->action = s->p->outbound ? "connecting to the destination" : "connecting to the backend";
    session_arm_phase(s, PHASE_CONNECTING, s->timeouts->connect);
    int rc = conn_connect(&s->server, sa);
    if (rc != 0) {
        log_warn("session=%s listener=%s event=connect_failed peer=%s error=\"%s\"", s->id,
                 s->p->name, s->server_addr, uv_strerror(rc));
        s->ops->abort(s->eng, s->dir->server_down, REASON_BACKEND_UNREACHABLE);
        session_run_actions(s);
    }
}

/* The destination is known: the policy for it (rules may name addresses,
 * so both name and address count), then dial. */
static void dial_destination(struct session *s)
{
    struct destination *d = &s->d.out.dest;

    s->d.out.policy = policy_for(&s->p->out->policy, d->host, (const struct sockaddr *)&d->sa);
    s->engine.out.cfg.policy = s->d.out.policy; /* before the greeting arrives (outbound.h) */
    session_dial(s);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct session *s = req->data;

    s->resolving = false;
    status = destination_resolved(&s->d.out.dest, status, res);
    if (s->closing) {
        session_drop_handle(s); /* the request no longer calls back: it may be freed */
        return;
    }
    s->handles--; /* never the last: the legs and the timer are open */
    if (status != 0) {
        log_warn("session=%s listener=%s event=resolve_failed destination=%s error=\"%s\"",
                 s->id, s->p->name, s->server_addr, uv_strerror(status));
        s->ops->abort(s->eng, s->dir->server_down, REASON_BACKEND_UNREACHABLE);
        session_run_actions(s);
        return;
    }
    dial_destination(s);
}

void session_start_outbound(struct session *s)
{
    const struct session_outbound_opts *o = s->p->out;
    struct destination *d = &s->d.out.dest;
    int rc;

    s->d.out.policy = o->policy.fallback; /* until the destination is known */
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
    s->d.out.resolver.data = s;
    rc = destination_resolve(d, &o->destination, s->set->loop, &s->d.out.resolver, on_resolved);
    if (rc != 0) {
        log_warn("session=%s listener=%s event=resolve_failed destination=%s error=\"%s\"", s->id,
                 s->p->name, s->server_addr, uv_strerror(rc));
        s->ops->abort(s->eng, s->dir->server_down, REASON_BACKEND_UNREACHABLE);
        session_run_actions(s);
        return;
    }
    s->resolving = true;
    s->handles++; /* the request calls back even when cancelled */
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

