/*
 * A session's lifecycle:
 *
 *   accept -> [PROXY header: PREFACE] -> [implicit TLS: HANDSHAKE_IMPLICIT]
 *          -> CONNECTING (backend or destination) -> RUNNING
 *          -> [STARTTLS, either leg: HANDSHAKE -> RUNNING] -> CLOSING -> freed
 *
 * Everything the dialogue engine emits is queued on the legs and written
 * after the engine returns; its actions (start TLS, reconnect, close) are
 * run here. Deadlines: connect and handshake timeouts for those phases;
 * otherwise the idle timeout is a deadline per command or reply, re-armed
 * only when the engine makes progress (a whole line, chunk or reply), not by
 * every byte, so a client dribbling a byte a second cannot hold a session.
 *
 * Lifetime: `handles` counts every libuv handle of the session and every
 * request that will still call back (a name lookup: uv_cancel cannot stop
 * one that has started). The session is freed when it drops to zero, never
 * inside a callback stack that still uses it.
 */
#include "proxy/session/session_int.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "proxy/core/engine.h"
#include "proxy/core/inbound.h"
#include "proxy/core/outbound.h"
#include "proxy/core/proxyproto.h"
#include "proxy/core/xclient.h"
#include "proxy/net/conn.h"
#include "proxy/obs/log.h"
#include "proxy/session/destination.h"
#include "proxy/session/report.h"

static const char *const phase_names[] = {
    [PHASE_PREFACE] = "PREFACE",     [PHASE_HANDSHAKE_IMPLICIT] = "HANDSHAKE_IMPLICIT",
    [PHASE_CONNECTING] = "CONNECTING", [PHASE_RUNNING] = "RUNNING",
    [PHASE_HANDSHAKE] = "HANDSHAKE", [PHASE_CLOSING] = "CLOSING",
};

/* How long the last reply (421, 221, ...) may take to reach the client. */
#define SESSION_LINGER_MS 5000

static const char R_INTERNAL[] = "421 4.3.0 Internal error, closing connection\r\n";
static const char R_SLOW_DATA[] =
    "421 4.4.2 Message content arrived too slowly, closing connection\r\n";

const struct direction session_dir_in = {
    .server_down = "421 4.4.1 Backend not available, try again later\r\n",
};
const struct direction session_dir_out = {
    .server_down = "421 4.4.1 Destination not reachable, try again later\r\n",
};

static void arm(struct session *s, uint64_t ms);

void session_enter_phase(struct session *s, enum session_phase p)
{
    if (s->phase == p)
        return;
    log_debug("session=%s event=phase from=%s to=%s", s->id, phase_names[s->phase],
              phase_names[p]);
    s->phase = p;
}

/* ---- engine output ---- */

static void emit_client(void *arg, const uint8_t *p, size_t n)
{
    struct session *s = arg;
    conn_emit(&s->client, p, n);
}

static void emit_server(void *arg, const uint8_t *p, size_t n)
{
    struct session *s = arg;
    conn_emit(&s->server, p, n);
}

static void on_engine_state(void *arg, const char *engine, const char *from, const char *to)
{
    struct session *s = arg;
    log_debug("session=%s event=state engine=%s from=%s to=%s", s->id, engine, from, to);
    if (s->p->outbound)
        session_tlsrpt_state(s);
}

/* What only the engine sees and an operator must (a backend refusing
 * XCLIENT): one warning, with the backend's reply. */
static void on_engine_event(void *arg, const char *event, const char *detail)
{
    const struct session *s = arg;
    char q[600];

    log_quote(detail, q, sizeof(q));
    log_warn("session=%s listener=%s event=%s backend=%s reply=%s", s->id, s->p->name, event,
             session_server_name(s), q);
}

static void on_engine_debug(void *arg, const char *event, const char *detail)
{
    const struct session *s = arg;
    char q[200];

    log_debug("session=%s event=%s detail=%s", s->id, event, log_quote(detail, q, sizeof(q)));
}

size_t session_alloc_size(const struct session_profile *p)
{
    if (p == NULL || p->outbound)
        return sizeof(struct session);
    return offsetof(struct session, d) + sizeof(((struct session *)NULL)->d.in);
}

int session_init_engine(struct session *s)
{
    struct engine_io io = {
        .arg = s,
        .to_client = emit_client,
        .to_server = emit_server,
        .on_state = on_engine_state,
        .on_event = on_engine_event,
        .on_debug = on_engine_debug,
        .on_refusal_logged = session_dane_refusal_logged,
    };

    if (s->p->outbound) {
        struct outbound_cfg ocfg = {
            .policy = s->p->out->policy.fallback,
            .max_line = s->p->out->max_command_line,
            .ehlo = &s->p->out->ehlo_keywords,
        };
        s->dir = &session_dir_out;
        s->timeouts = &s->p->out->timeouts;
        s->ops = &outbound_engine_ops;
        s->eng = &s->engine.out;
        outbound_init(&s->engine.out, &ocfg, &io);
        return 0;
    }
    const struct session_inbound_opts *in = s->p->in;
    struct inbound_cfg icfg = {
        .implicit_tls = in->tls_mode == SESSION_TLS_IMPLICIT,
        .require_tls = in->require_tls,
        .reject_bare_newline = in->bare_newline == SESSION_BARE_NEWLINE_REJECT,
        .max_line = in->max_command_line,
        .ehlo = &in->ehlo_keywords,
    };
    if (in->backend_client_info == SESSION_CLIENT_INFO_XCLIENT || in->received_header) {
        s->d.in.client = calloc(1, sizeof(*s->d.in.client));
        if (s->d.in.client == NULL)
            return -1;
    }
    if (in->backend_client_info == SESSION_CLIENT_INFO_XCLIENT) {
        icfg.xclient = s->d.in.client->xclient; /* filled in when dialling */
        icfg.helo_name = session_host_name();
    }
    s->dir = &session_dir_in;
    s->timeouts = &in->timeouts;
    s->ops = &inbound_engine_ops;
    s->eng = &s->d.in.engine;
    inbound_init(&s->d.in.engine, &icfg, &io);
    return 0;
}

/* ---- lifecycle ---- */

static void report_end(struct session *s)
{
    bool out = s->p != NULL && s->p->outbound;
    const char *auth_result = NULL;
    const char *auth = out ? session_auth(s, &auth_result) : NULL;
    struct session_report r = {
        .id = s->id,
        .listener = s->p ? s->p->name : "-",
        .outbound = out,
        .client = session_client_name(s),
        .server = session_server_name(s),
        .tls_version = s->tls_version,
        .tls_cipher = s->tls_cipher,
        .sni = out || s->d.in.sni == NULL ? "" : s->d.in.sni,
        .policy = out ? s->d.out.policy : OUTBOUND_NONE,
        .verified = out && s->d.out.verified,
        .verify_note = out && s->d.out.verify_note ? s->d.out.verify_note : "no",
        .tls_note = out ? s->engine.out.tls_note : NULL,
        .auth = auth,
        .auth_result = auth_result,
        .bytes_in = s->client.bytes_read,
        .bytes_out = s->client.bytes_written,
        .ms = uv_now(s->set->loop) - s->start_ms,
        .reason = s->reason,
    };
    report_session_end(&r, s->p ? s->p->metrics : NULL);
}

static void free_session(struct session *s)
{
    struct session_set *set = s->set;

    report_end(s);
    if (s->p != NULL && s->p->outbound) {
        session_tlsrpt_end(s);
        session_dane_free(s);
        session_rcpt_free(s);
    }
    if (s->ops != NULL && s->ops->release != NULL)
        s->ops->release(s->eng);
    else if (s->ops != NULL && s->p->outbound)
        relay_free(&s->engine.out.relay); /* the outbound engine has no release op */
    if (s->p != NULL && !s->p->outbound) {
        free(s->d.in.sni);
        free(s->d.in.client);
    }
    if (s->counted) {
        atomic_fetch_sub(s->p->active, 1);
        metrics_connection_close(s->p->metrics);
    }
    if (s->prev)
        s->prev->next = s->next;
    else
        set->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    set->count--;
    if (s->p)
        s->p->release(s->p);
    free(s);
    if (set->stopping && set->count == 0 && set->on_empty)
        set->on_empty(set);
}

void session_drop_handle(struct session *s)
{
    if (--s->handles == 0)
        free_session(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    session_drop_handle(h->data);
}

void session_close_handles(struct session *s)
{
    conn_close(&s->client);
    conn_close(&s->server);
    if (s->p != NULL && s->p->outbound)
        session_rcpt_close(s);
    if (!uv_is_closing((uv_handle_t *)&s->timer))
        uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

/*
 * Idempotent. Stops reading both legs at once; the server leg is closed
 * without another byte (a half-sent message never gets its end-of-data);
 * what is queued for the client (a 421, the 221) is flushed for up to
 * SESSION_LINGER_MS first.
 */
void session_close(struct session *s, enum reason reason)
{
    if (s->closing)
        return;
    s->closing = true;
    if (s->reason == REASON_NONE)
        s->reason = reason;
    session_enter_phase(s, PHASE_CLOSING);
    if (s->resolving > 0) {
        /* Cancelled lookups never call back: they stop counting now (never
         * the last handles: the legs and the timer are still open). */
        unsigned n = destination_lookup_cancel(&s->d.out.lookup) + session_dane_cancel(s) +
                     session_rcpt_cancel(s);
        s->resolving -= n;
        s->handles -= n;
    }
    conn_pause(&s->client);
    conn_pause(&s->server);
    conn_close(&s->server);
    /* A client that only half-closed still reads: its last replies go out. */
    if (s->client.open && s->client.connected && (!s->client.eof || s->client_eof)) {
        conn_tls_shutdown(&s->client);
        conn_flush(&s->client);
        if (conn_backlog(&s->client) > 0) {
            arm(s, SESSION_LINGER_MS);
            return;
        }
    }
    session_close_handles(s);
}

/* ---- timers ---- */

static void on_timer(uv_timer_t *t)
{
    struct session *s = t->data;

    switch (s->phase) {
    case PHASE_CLOSING:
        session_close_handles(s);
        return;
    case PHASE_PREFACE:
        log_warn("session=%s listener=%s event=proxy_header_timeout client=%s", s->id, s->p->name,
                 session_client_name(s));
        session_close(s, REASON_PROXY_HEADER_TIMEOUT);
        return;
    case PHASE_HANDSHAKE_IMPLICIT:
    case PHASE_HANDSHAKE:
        log_warn("session=%s listener=%s event=tls_failed reason=\"handshake timeout\" "
                 "peer=%s",
                 s->id, s->p->name,
                 s->p->outbound ? session_server_name(s) : session_client_name(s));
        metrics_tls_failure(s->p->metrics, "handshake timeout");
        /* Inbound: nothing can be said in plaintext mid-handshake; outbound:
         * the client leg is plaintext and policy decides what it hears. */
        s->ops->tls_failed(s->eng, ENGINE_TLS_TIMEOUT, "handshake timeout");
        break;
    case PHASE_CONNECTING:
        log_warn("session=%s listener=%s event=connect_timeout peer=%s action=\"%s\"", s->id,
                 s->p->name, session_server_name(s), s->action);
        s->ops->abort(s->eng, s->dir->server_down, REASON_BACKEND_UNREACHABLE);
        break;
    case PHASE_RUNNING:
        if (s->content) {
            /* Below min_data_rate: a dribbler, not a slow backend. */
            log_warn("session=%s listener=%s event=data_rate_timeout client=%s min_data_rate=%u",
                     s->id, s->p->name, session_client_name(s), s->timeouts->min_data_rate);
            s->ops->abort(s->eng, R_SLOW_DATA, REASON_TIMEOUT);
            break;
        }
        if (s->ops->awaiting_server(s->eng))
            log_warn("session=%s listener=%s event=server_timeout peer=%s "
                     "action=\"waiting for a reply\"",
                     s->id, s->p->name, session_server_name(s));
        s->ops->deadline(s->eng);
        break;
    }
    session_run_actions(s);
}

static void arm(struct session *s, uint64_t ms)
{
    uv_timer_start(&s->timer, on_timer, ms, 0);
}

void session_arm_phase(struct session *s, enum session_phase p, unsigned seconds)
{
    session_enter_phase(s, p);
    arm(s, (uint64_t)seconds * 1000);
}

static void arm_idle(struct session *s)
{
    s->progress = s->ops->progress(s->eng);
    arm(s, (uint64_t)s->timeouts->idle * 1000);
}

/*
 * Inside message content the client is timed by data rate, as Postfix's
 * smtpd_min_data_rate: on entering content the deadline is `idle` away,
 * and every read moves it on by the time its bytes take at min_data_rate,
 * never further than `idle` from now. A client sending at least that rate
 * is never cut, however large the message; one dribbling a byte every few
 * seconds is, even though every byte "progresses". With min_data_rate = 0
 * any read re-arms the idle timeout.
 */
static void track_content(struct session *s, size_t n)
{
    uint64_t now = uv_now(s->set->loop), idle = (uint64_t)s->timeouts->idle * 1000;
    bool content = s->phase == PHASE_RUNNING && s->ops->in_content(s->eng);

    if (!content) {
        if (s->content) {
            s->content = false;
            arm_idle(s);
        }
        return;
    }
    if (!s->content) {
        s->content = true;
        s->content_deadline = now + idle;
    } else if (s->timeouts->min_data_rate == 0) {
        s->content_deadline = now + idle;
    } else {
        s->content_deadline += (uint64_t)n * 1000 / s->timeouts->min_data_rate;
        if (s->content_deadline > now + idle)
            s->content_deadline = now + idle;
    }
    arm(s, s->content_deadline > now ? s->content_deadline - now : 0);
}

/* A client that half-closed after its last command (".", QUIT) still gets
 * every reply owed to it: the sender must see the 250 for its message, or
 * it retries and the mail arrives twice. Once nothing is owed (and nothing
 * it sent can still be relayed), the session ends. */
static void finish_half_closed(struct session *s)
{
    /* A client that never sent a byte is owed nothing (a greeting is not
     * an answer to it). */
    if (s->client_eof && !s->closing &&
        (s->client.bytes_read == 0 || !s->ops->awaiting_server(s->eng)))
        session_close(s, REASON_CLIENT_CLOSED);
}

/* ---- running the engine ---- */

static bool client_may_read(const struct session *s)
{
    return !s->closing && !s->client_paused && !s->tls_deferred &&
           s->phase != PHASE_HANDSHAKE_IMPLICIT && s->phase != PHASE_PREFACE &&
           !(s->phase == PHASE_HANDSHAKE && !s->p->outbound);
}

static void kick_client(struct session *s)
{
    if (client_may_read(s))
        conn_resume(&s->client);
}

void session_client_resumed(struct session *s)
{
    session_run_actions(s);
    kick_client(s);
    finish_half_closed(s);
}

/* RFC 3207 §4.2: plaintext that arrived behind STARTTLS is dropped, and TLS
 * starts only once the 220 (and every reply owed before it) is written. */
static void start_tls_client_leg(struct session *s)
{
    struct tls *t = tls_new_server(s->p->tls);

    s->tls_deferred = false;
    if (t == NULL) {
        session_close(s, REASON_INTERNAL_ERROR);
        return;
    }
    conn_discard_input(&s->client);
    conn_start_tls(&s->client, t);
    s->action = "TLS handshake with the client";
    session_arm_phase(s, PHASE_HANDSHAKE, s->timeouts->handshake);
    conn_resume(&s->client);
}

static void start_tls_server_leg(struct session *s)
{
    const struct destination *d = &s->d.out.dest;
    bool verify = s->d.out.policy == OUTBOUND_VERIFY;
    bool lenient = s->d.out.policy == OUTBOUND_OPPORTUNISTIC; /* RFC 7435: TLS 1.0+ and CBC too */
    bool dane = s->d.out.dane != NULL && s->d.out.dane->verdict == TLSA_VERDICT_AUTHENTICATE;
    struct tls *t = dane ? session_dane_client(s, lenient)
                         : tls_new_client(s->p->tls, destination_sni(d), verify, d->host, lenient);

    if (t == NULL) {
        s->ops->abort(s->eng, R_INTERNAL, REASON_INTERNAL_ERROR);
        return;
    }
    conn_discard_input(&s->server);
    conn_start_tls(&s->server, t);
    s->action = "TLS handshake with the destination";
    session_arm_phase(s, PHASE_HANDSHAKE, s->timeouts->handshake);
    conn_handshake(&s->server);
}

/* Backpressure: whoever fills a leg's output (the other peer, or the
 * proxy's own replies), above high water the peer that causes it stops
 * being read. The client causes output on both legs (relayed commands and
 * the proxy's own replies), the server only on the client leg. */
static void apply_backpressure(struct session *s)
{
    size_t to_client = conn_backlog(&s->client), to_server = conn_backlog(&s->server);

    if (!s->client_paused && (to_client > CONN_HIGH_WATER || to_server > CONN_HIGH_WATER)) {
        s->client_paused = true;
        conn_pause(&s->client);
    }
    if (!s->server_paused && to_client > CONN_HIGH_WATER) {
        s->server_paused = true;
        conn_pause(&s->server);
    }
}

void session_run_actions(struct session *s)
{
    unsigned acts = s->ops->take_actions(s->eng);

    if (s->closing)
        return;
    conn_flush(&s->server);
    if (s->closing)
        return;
    conn_flush(&s->client);
    if (s->closing)
        return;
    if (acts & ENGINE_ACT_CLOSE) {
        session_close(s, s->ops->reason(s->eng));
        return;
    }
    if (acts & ENGINE_ACT_START_TLS_CLIENT) {
        if (conn_backlog(&s->client) == 0) {
            start_tls_client_leg(s);
        } else {
            s->tls_deferred = true; /* on_drain starts it */
            conn_pause(&s->client);
        }
        return;
    }
    if (acts & ENGINE_ACT_START_TLS_SERVER) {
        start_tls_server_leg(s);
        if (!s->closing)
            session_run_actions(s);
        return;
    }
    if (acts & ENGINE_ACT_RECONNECT) {
        /* Opportunistic fallback: a fresh plaintext connection. The new
         * leg is set up once the old handle has closed. */
        char note[300];
        log_quote(s->engine.out.tls_note ? s->engine.out.tls_note : "-", note, sizeof(note));
        log_info("session=%s listener=%s event=tls_fallback destination=%s reason=%s", s->id,
                 s->p->name, s->server_addr, note);
        s->reconnecting = true;
        s->tls_version = NULL;
        s->tls_cipher = NULL;
        s->action = "reconnecting to the destination in plaintext";
        conn_close(&s->server);
        return;
    }
    apply_backpressure(s);
    if (s->phase == PHASE_RUNNING && !s->content && s->ops->progress(s->eng) != s->progress)
        arm_idle(s);
}

/*
 * The PROXY header a load balancer sends first (proxy_protocol = true):
 * from it come the client's real address for logs, XCLIENT and a PROXY
 * header towards the backend. Anything else first is refused.
 */
static size_t read_preface(struct session *s, const uint8_t *p, size_t n)
{
    struct sockaddr_storage src, dst;
    size_t used = 0;
    int rc = proxyproto_parse(p, n, &used, &src, &dst);

    if (rc == PROXYPROTO_AGAIN && n < PROXYPROTO_MAX)
        return 0;
    if (rc != PROXYPROTO_OK) {
        log_warn("session=%s listener=%s event=proxy_header_invalid client=%s", s->id, s->p->name,
                 session_client_name(s));
        session_close(s, REASON_PROXY_HEADER_INVALID);
        return n;
    }
    s->pp_wait = false;
    if (src.ss_family != AF_UNSPEC) {
        /* TCP4 or TCP6 (proxyproto_parse), so they fit. */
        memcpy(&s->peer, &src, sizeof(s->peer));
        memcpy(&s->local, &dst, sizeof(s->local));
    }
    if (s->p->in->tls_mode == SESSION_TLS_IMPLICIT) {
        session_start_implicit_tls(s, p + used, n - used);
        return n;
    }
    session_dial(s);
    return used;
}

static size_t on_data(struct conn *c, const uint8_t *p, size_t n)
{
    struct session *s = c->owner;
    size_t used;

    if (s->closing)
        return n;
    if (c == &s->client && s->pp_wait)
        return read_preface(s, p, n);
    if (c == &s->client) {
        /* What the client sends the server (message content, above all)
         * is written from where it was read or decrypted, not copied. */
        bool lent = conn_lend_begin(&s->server, p, n);
        used = s->ops->client(s->eng, p, n);
        session_run_actions(s);
        if (lent)
            conn_lend_end(&s->server);
        if (!s->closing)
            track_content(s, used);
    } else {
        used = s->ops->server(s->eng, p, n);
        session_run_actions(s);
        if (!s->closing)
            track_content(s, 0);
        /* A reply may have released bytes the client sent ahead. */
        if (!s->closing && buf_len(&s->client.in) > 0)
            kick_client(s);
        finish_half_closed(s);
    }
    return used;
}

static void on_eof(struct conn *c, int err)
{
    struct session *s = c->owner;

    if (s->closing) {
        /* The client is gone: nothing queued for it can arrive any more,
         * so there is no reason to linger. */
        if (c == &s->client)
            session_close_handles(s);
        return;
    }
    if (c == &s->client) {
        if (err != UV_EOF) {
            log_debug("session=%s event=client_error error=\"%s\"", s->id, uv_strerror(err));
            /* A reset: the client is gone and can hear nothing more. */
            session_close(s, REASON_CLIENT_CLOSED);
            return;
        }
        s->client_eof = true;
        finish_half_closed(s);
        return;
    }
    if (s->reconnecting)
        return;
    if (err != UV_EOF)
        log_warn("session=%s listener=%s event=server_error peer=%s error=\"%s\"", s->id,
                 s->p->name, session_server_name(s), uv_strerror(err));
    s->ops->server_eof(s->eng);
    session_run_actions(s);
}

static void on_connect(struct conn *c, int status)
{
    struct session *s = c->owner;

    if (s->closing)
        return;
    if (status != 0) {
        log_warn("session=%s listener=%s event=connect_failed peer=%s error=\"%s\"", s->id,
                 s->p->name, session_server_name(s), uv_strerror(status));
        s->ops->abort(s->eng, s->dir->server_down, REASON_BACKEND_UNREACHABLE);
        session_run_actions(s);
        return;
    }
    if (s->reconnecting) {
        s->reconnecting = false;
        s->ops->reconnected(s->eng);
    }
    s->action = "waiting for the server's greeting";
    session_enter_phase(s, PHASE_RUNNING);
    arm_idle(s);
    conn_resume(&s->server);
    if (!s->closing)
        conn_flush(&s->server);
}

static void on_tls_ready(struct conn *c)
{
    struct session *s = c->owner;

    s->tls_version = tls_version(c->tls);
    s->tls_cipher = tls_cipher(c->tls);
    metrics_handshake(s->p->metrics, s->tls_version, s->tls_cipher);
    log_debug("session=%s event=tls_established version=%s cipher=%s", s->id, s->tls_version,
              s->tls_cipher);
    if (c == &s->server) {
        s->d.out.verified = tls_verify_result(c->tls, &s->d.out.verify_note);
        session_dane_tls_ready(s, c->tls);
        session_rcpt_tls_ready(s, c->tls);
        session_tlsrpt_tls_ready(s, c->tls);
        metrics_starttls(s->p->metrics, "ok");
        s->action = "repeating EHLO over TLS";
        session_enter_phase(s, PHASE_RUNNING);
        arm_idle(s);
        s->ops->tls_ready(s->eng);
        session_run_actions(s);
        return;
    }
    const char *sni = tls_sni(c->tls);
    if (sni != NULL && sni[0] != '\0' && s->d.in.sni == NULL &&
        (s->d.in.sni = strdup(sni)) == NULL) {
        log_error("session=%s listener=%s event=out_of_memory action=\"%s\"", s->id, s->p->name,
                  s->action);
        s->ops->abort(s->eng, R_INTERNAL, REASON_INTERNAL_ERROR);
        session_run_actions(s);
        return;
    }
    s->ops->tls_ready(s->eng);
    if (session_set_received(s) != 0) { /* received_header: dial.c */
        session_run_actions(s);
        return;
    }
    if (s->phase == PHASE_HANDSHAKE_IMPLICIT) {
        session_dial(s);
        return;
    }
    metrics_starttls(s->p->metrics, "ok");
    s->action = "reading commands";
    session_enter_phase(s, PHASE_RUNNING);
    arm_idle(s);
    session_run_actions(s);
}

static void on_tls_error(struct conn *c, const char *why)
{
    struct session *s = c->owner;
    char q[300];

    if (s->closing)
        return;
    why = why ? why : "unknown";
    log_quote(why, q, sizeof(q));
    log_warn("session=%s listener=%s event=tls_failed peer=%s reason=%s action=\"%s\"", s->id,
             s->p->name, c == &s->client ? session_client_name(s) : session_server_name(s), q,
             s->action);
    metrics_tls_failure(s->p->metrics, why);
    if (s->phase == PHASE_HANDSHAKE)
        metrics_starttls(s->p->metrics, "failed");
    enum engine_tls_failure kind =
        tls_error_is_certificate(c->tls) ? ENGINE_TLS_CERTIFICATE : ENGINE_TLS_HANDSHAKE;
    if (c == &s->server) {
        session_tlsrpt_tls_failed(s, c->tls, kind == ENGINE_TLS_CERTIFICATE);
        /* The reason is copied: the engine is freed with the leg. */
        snprintf(s->d.out.tls_error, sizeof(s->d.out.tls_error), "%s", why);
        s->tls_version = NULL;
        s->tls_cipher = NULL;
        /* Nothing more is read from there: a refusal leaves it alone, a
         * fallback closes it. */
        conn_pause(&s->server);
        s->ops->tls_failed(s->eng, kind, s->d.out.tls_error);
        session_run_actions(s);
        return;
    }
    s->ops->tls_failed(s->eng, kind, why);
    session_run_actions(s);
}

static void on_drain(struct conn *c)
{
    struct session *s = c->owner;

    if (s->closing) {
        if (c == &s->client && conn_backlog(c) == 0)
            session_close_handles(s);
        return;
    }
    if (c == &s->client && s->tls_deferred) {
        if (conn_backlog(c) == 0)
            start_tls_client_leg(s);
        return;
    }
    if (conn_backlog(&s->client) >= CONN_LOW_WATER || conn_backlog(&s->server) >= CONN_LOW_WATER)
        return;
    if (s->server_paused) {
        s->server_paused = false;
        conn_resume(&s->server);
    }
    if (s->client_paused) {
        s->client_paused = false;
        kick_client(s);
    }
}


static void on_conn_closed(struct conn *c)
{
    struct session *s = c->owner;

    if (c == &s->server && s->reconnecting && !s->closing) {
        /* The old leg is gone; dial the same destination afresh. */
        if (conn_init(&s->server, s->set->loop, &session_conn_cb, s) != 0) {
            s->reconnecting = false;
            s->ops->abort(s->eng, s->dir->server_down, REASON_BACKEND_UNREACHABLE);
            session_drop_handle(s);
            session_run_actions(s);
            return;
        }
        session_dial(s);
        return; /* the handle count is unchanged: one leg out, one in */
    }
    session_drop_handle(s);
}

const struct conn_cb session_conn_cb = {
    .on_data = on_data,
    .on_eof = on_eof,
    .on_connect = on_connect,
    .on_tls_ready = on_tls_ready,
    .on_tls_error = on_tls_error,
    .on_drain = on_drain,
    .on_close = on_conn_closed,
};

