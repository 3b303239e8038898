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
#include "proxy/session/session.h"

#include <inttypes.h>
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

enum session_phase {
    PHASE_PREFACE,            /* reading a load balancer's PROXY header */
    PHASE_HANDSHAKE_IMPLICIT, /* implicit TLS before the backend is dialled */
    PHASE_CONNECTING,         /* resolving or dialling the server */
    PHASE_RUNNING,
    PHASE_HANDSHAKE,          /* STARTTLS handshake, either leg */
    PHASE_CLOSING,            /* flushing the last words to the client */
};

static const char *const phase_names[] = {
    [PHASE_PREFACE] = "PREFACE",     [PHASE_HANDSHAKE_IMPLICIT] = "HANDSHAKE_IMPLICIT",
    [PHASE_CONNECTING] = "CONNECTING", [PHASE_RUNNING] = "RUNNING",
    [PHASE_HANDSHAKE] = "HANDSHAKE", [PHASE_CLOSING] = "CLOSING",
};

/* How long the last reply (421, 221, ...) may take to reach the client. */
#define SESSION_LINGER_MS 5000

/* The proxy's own replies for what happens around the engine, per direction. */
struct direction {
    const char *server_down;
    const char *server_word; /* for actions in logs */
};

static const struct direction dir_in = {
    .server_down = "421 4.4.1 Backend not available, try again later\r\n",
    .server_word = "backend",
};
static const struct direction dir_out = {
    .server_down = "421 4.4.1 Destination not reachable, try again later\r\n",
    .server_word = "destination",
};
static const char R_NO_DEST[] =
    "421 4.3.0 No original destination: connection was not redirected to the proxy\r\n";
static const char R_SHUTDOWN[] = "421 4.3.2 Service shutting down, closing connection\r\n";
static const char R_TOO_MANY[] = "421 4.3.2 Too many connections, try again later\r\n";
static const char R_INTERNAL[] = "421 4.3.0 Internal error, closing connection\r\n";

struct session {
    struct session_set *set;
    const struct session_profile *p;  /* held until the session is freed */
    const struct session_timeouts *timeouts;
    const struct direction *dir;
    const struct engine_ops *ops;
    void *eng;                        /* &engine.in or &engine.out */
    struct conn client, server;
    uv_timer_t timer;
    union {
        struct inbound in;
        struct outbound out;
    } engine;
    /* What only one direction needs shares the memory of the other's. */
    union {
        struct {                      /* inbound */
            char sni[128];
            char xclient[XCLIENT_LINE_MAX];
        } in;
        struct {                      /* outbound */
            struct destination dest;
            uv_getaddrinfo_t resolver;
            enum outbound_policy policy;
            bool verified;
            const char *verify_note;  /* static, from the TLS layer */
            char tls_error[256];      /* why the handshake failed (copied) */
        } out;
    } d;
    struct session *prev, *next;      /* in set: only this file touches them */
    enum session_phase phase;
    unsigned handles;                 /* open handles + outstanding requests */
    bool counted;                     /* holds a max_connections slot */
    bool client_paused, server_paused; /* by backpressure */
    bool closing;
    bool resolving;
    bool reconnecting;
    bool pp_wait;                     /* a PROXY header is still expected */
    bool tls_deferred;                /* STARTTLS accepted; waits for the 220 to be written */
    enum reason reason;
    const char *action;               /* what the proxy was doing, for warnings */
    uint64_t start_ms;
    uint64_t progress;
    char id[12];
    char client_addr[ADDR_STRLEN];
    char server_addr[300];
    const char *tls_version;          /* static strings from BoringSSL */
    const char *tls_cipher;
    struct sockaddr_storage peer;     /* the client, as the PROXY header says */
    struct sockaddr_storage local;    /* where it connected to */
};

static char helo_name[256];
static uv_once_t helo_once = UV_ONCE_INIT;

static void init_helo_name(void)
{
    if (gethostname(helo_name, sizeof(helo_name) - 1) != 0 || helo_name[0] == '\0')
        snprintf(helo_name, sizeof(helo_name), "smtp-tls-proxy");
}

static atomic_uint_fast32_t session_counter;
static uint32_t session_salt;
static uv_once_t salt_once = UV_ONCE_INIT;

/* Session ids are a counter scrambled by a per-process salt: unique within
 * a run, and not guessable across runs. */
static void init_salt(void)
{
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != sizeof(r))
        r = (uint32_t)uv_hrtime();
    session_salt = r | 1;
}

static void arm(struct session *s, uint64_t ms);
static void session_close(struct session *s, enum reason reason);
static void run_actions(struct session *s);
static void dial(struct session *s);
static void start_implicit_tls(struct session *s, const uint8_t *early, size_t n);

static void enter_phase(struct session *s, enum session_phase p)
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
    const struct session *s = arg;
    log_debug("session=%s event=state engine=%s from=%s to=%s", s->id, engine, from, to);
}

/* ---- lifecycle ---- */

static void report_end(struct session *s)
{
    bool out = s->p != NULL && s->p->outbound;
    struct session_report r = {
        .id = s->id,
        .listener = s->p ? s->p->name : "-",
        .outbound = out,
        .client = s->client_addr[0] ? s->client_addr : "-",
        .server = s->server_addr[0] ? s->server_addr : "-",
        .tls_version = s->tls_version,
        .tls_cipher = s->tls_cipher,
        .sni = out ? "" : s->d.in.sni,
        .policy = out ? s->d.out.policy : OUTBOUND_NONE,
        .verified = out && s->d.out.verified,
        .verify_note = out && s->d.out.verify_note ? s->d.out.verify_note : "no",
        .tls_note = out ? s->engine.out.tls_note : NULL,
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

static void drop_handle(struct session *s)
{
    if (--s->handles == 0)
        free_session(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    drop_handle(h->data);
}

static void close_handles(struct session *s)
{
    conn_close(&s->client);
    conn_close(&s->server);
    if (!uv_is_closing((uv_handle_t *)&s->timer))
        uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

/*
 * Idempotent. Stops reading both legs at once; the server leg is closed
 * without another byte (a half-sent message never gets its end-of-data);
 * what is queued for the client (a 421, the 221) is flushed for up to
 * SESSION_LINGER_MS first.
 */
static void session_close(struct session *s, enum reason reason)
{
    if (s->closing)
        return;
    s->closing = true;
    if (s->reason == REASON_NONE)
        s->reason = reason;
    enter_phase(s, PHASE_CLOSING);
    if (s->resolving)
        uv_cancel((uv_req_t *)&s->d.out.resolver); /* its callback still comes */
    conn_pause(&s->client);
    conn_pause(&s->server);
    conn_close(&s->server);
    if (s->client.open && !s->client.eof && s->client.connected) {
        conn_tls_shutdown(&s->client);
        conn_flush(&s->client);
        if (conn_backlog(&s->client) > 0) {
            arm(s, SESSION_LINGER_MS);
            return;
        }
    }
    close_handles(s);
}

/* ---- timers ---- */

static void on_timer(uv_timer_t *t)
{
    struct session *s = t->data;

    switch (s->phase) {
    case PHASE_CLOSING:
        close_handles(s);
        return;
    case PHASE_PREFACE:
        log_warn("session=%s listener=%s event=proxy_header_timeout client=%s", s->id,
                 s->p->name, s->client_addr);
        session_close(s, REASON_PROXY_HEADER_TIMEOUT);
        return;
    case PHASE_HANDSHAKE_IMPLICIT:
    case PHASE_HANDSHAKE:
        log_warn("session=%s listener=%s event=tls_failed reason=\"handshake timeout\" "
                 "peer=%s",
                 s->id, s->p->name, s->p->outbound ? s->server_addr : s->client_addr);
        metrics_tls_failure(s->p->metrics, "handshake timeout");
        /* Inbound: nothing can be said in plaintext mid-handshake; outbound:
         * the client leg is plaintext and policy decides what it hears. */
        s->ops->tls_failed(s->eng, ENGINE_TLS_TIMEOUT, "handshake timeout");
        break;
    case PHASE_CONNECTING:
        log_warn("session=%s listener=%s event=connect_timeout peer=%s action=\"%s\"", s->id,
                 s->p->name, s->server_addr, s->action);
        s->ops->abort(s->eng, s->dir->server_down, REASON_BACKEND_UNREACHABLE);
        break;
    case PHASE_RUNNING:
        if (s->ops->awaiting_server(s->eng))
            log_warn("session=%s listener=%s event=server_timeout peer=%s "
                     "action=\"waiting for a reply\"",
                     s->id, s->p->name, s->server_addr);
        s->ops->deadline(s->eng);
        break;
    }
    run_actions(s);
}

static void arm(struct session *s, uint64_t ms)
{
    uv_timer_start(&s->timer, on_timer, ms, 0);
}

static void arm_phase(struct session *s, enum session_phase p, unsigned seconds)
{
    enter_phase(s, p);
    arm(s, (uint64_t)seconds * 1000);
}

static void arm_idle(struct session *s)
{
    s->progress = s->ops->progress(s->eng);
    arm(s, (uint64_t)s->timeouts->idle * 1000);
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
    arm_phase(s, PHASE_HANDSHAKE, s->timeouts->handshake);
    conn_resume(&s->client);
}

static void start_tls_server_leg(struct session *s)
{
    const struct destination *d = &s->d.out.dest;
    bool verify = s->d.out.policy == OUTBOUND_VERIFY;
    struct tls *t = tls_new_client(s->p->tls, destination_sni(d), verify, d->host);

    if (t == NULL) {
        s->ops->abort(s->eng, R_INTERNAL, REASON_INTERNAL_ERROR);
        return;
    }
    conn_discard_input(&s->server);
    conn_start_tls(&s->server, t);
    s->action = "TLS handshake with the destination";
    arm_phase(s, PHASE_HANDSHAKE, s->timeouts->handshake);
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

static void run_actions(struct session *s)
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
            run_actions(s);
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
    if (s->phase == PHASE_RUNNING && s->ops->progress(s->eng) != s->progress)
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
        log_warn("session=%s listener=%s event=proxy_header_invalid client=%s", s->id,
                 s->p->name, s->client_addr);
        session_close(s, REASON_PROXY_HEADER_INVALID);
        return n;
    }
    s->pp_wait = false;
    if (src.ss_family != AF_UNSPEC) {
        s->peer = src;
        s->local = dst;
        addr_format((const struct sockaddr *)&s->peer, s->client_addr, sizeof(s->client_addr));
    }
    if (s->p->in->tls_mode == SESSION_TLS_IMPLICIT) {
        start_implicit_tls(s, p + used, n - used);
        return n;
    }
    dial(s);
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
        used = s->ops->client(s->eng, p, n);
        run_actions(s);
    } else {
        used = s->ops->server(s->eng, p, n);
        run_actions(s);
        /* A reply may have released bytes the client sent ahead. */
        if (!s->closing && buf_len(&s->client.in) > 0)
            kick_client(s);
    }
    return used;
}

static void on_eof(struct conn *c, int err)
{
    struct session *s = c->owner;

    if (s->closing)
        return;
    if (c == &s->client) {
        if (err != UV_EOF)
            log_debug("session=%s event=client_error error=\"%s\"", s->id, uv_strerror(err));
        /* A reset is a close too: the client is gone either way. */
        session_close(s, REASON_CLIENT_CLOSED);
        return;
    }
    if (s->reconnecting)
        return;
    if (err != UV_EOF)
        log_warn("session=%s listener=%s event=server_error peer=%s error=\"%s\"", s->id,
                 s->p->name, s->server_addr, uv_strerror(err));
    s->ops->server_eof(s->eng);
    run_actions(s);
}

static void on_connect(struct conn *c, int status)
{
    struct session *s = c->owner;

    if (s->closing)
        return;
    if (status != 0) {
        log_warn("session=%s listener=%s event=connect_failed peer=%s error=\"%s\"", s->id,
                 s->p->name, s->server_addr, uv_strerror(status));
        s->ops->abort(s->eng, s->dir->server_down, REASON_BACKEND_UNREACHABLE);
        run_actions(s);
        return;
    }
    if (s->reconnecting) {
        s->reconnecting = false;
        s->ops->reconnected(s->eng);
    }
    s->action = "waiting for the server's greeting";
    enter_phase(s, PHASE_RUNNING);
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
        metrics_starttls(s->p->metrics, "ok");
        s->action = "repeating EHLO over TLS";
        enter_phase(s, PHASE_RUNNING);
        arm_idle(s);
        s->ops->tls_ready(s->eng);
        run_actions(s);
        return;
    }
    const char *sni = tls_sni(c->tls);
    snprintf(s->d.in.sni, sizeof(s->d.in.sni), "%s", sni ? sni : "");
    s->ops->tls_ready(s->eng);
    if (s->phase == PHASE_HANDSHAKE_IMPLICIT) {
        dial(s);
        return;
    }
    metrics_starttls(s->p->metrics, "ok");
    s->action = "reading commands";
    enter_phase(s, PHASE_RUNNING);
    arm_idle(s);
    run_actions(s);
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
             s->p->name, c == &s->client ? s->client_addr : s->server_addr, q, s->action);
    metrics_tls_failure(s->p->metrics, why);
    if (s->phase == PHASE_HANDSHAKE)
        metrics_starttls(s->p->metrics, "failed");
    enum engine_tls_failure kind =
        tls_error_is_certificate(c->tls) ? ENGINE_TLS_CERTIFICATE : ENGINE_TLS_HANDSHAKE;
    if (c == &s->server) {
        /* The reason is copied: the engine is freed with the leg. */
        snprintf(s->d.out.tls_error, sizeof(s->d.out.tls_error), "%s", why);
        s->tls_version = NULL;
        s->tls_cipher = NULL;
        /* Nothing more is read from there: a refusal leaves it alone, a
         * fallback closes it. */
        conn_pause(&s->server);
        s->ops->tls_failed(s->eng, kind, s->d.out.tls_error);
        run_actions(s);
        return;
    }
    s->ops->tls_failed(s->eng, kind, why);
    run_actions(s);
}

static void on_drain(struct conn *c)
{
    struct session *s = c->owner;

    if (s->closing) {
        if (c == &s->client && conn_backlog(c) == 0)
            close_handles(s);
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

static const struct conn_cb session_conn_cb;

static void on_conn_closed(struct conn *c)
{
    struct session *s = c->owner;

    if (c == &s->server && s->reconnecting && !s->closing) {
        /* The old leg is gone; dial the same destination afresh. */
        if (conn_init(&s->server, s->set->loop, &session_conn_cb, s) != 0) {
            s->reconnecting = false;
            s->ops->abort(s->eng, s->dir->server_down, REASON_BACKEND_UNREACHABLE);
            drop_handle(s);
            run_actions(s);
            return;
        }
        dial(s);
        return; /* the handle count is unchanged: one leg out, one in */
    }
    drop_handle(s);
}

static const struct conn_cb session_conn_cb = {
    .on_data = on_data,
    .on_eof = on_eof,
    .on_connect = on_connect,
    .on_tls_ready = on_tls_ready,
    .on_tls_error = on_tls_error,
    .on_drain = on_drain,
    .on_close = on_conn_closed,
};

/* ---- the server leg ---- */

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

static void dial(struct session *s)
{
    const struct sockaddr *sa = s->p->outbound ? (const struct sockaddr *)&s->d.out.dest.sa
                                               : (const struct sockaddr *)&s->p->in->backend.sa;

    if (!s->p->outbound)
        client_info_for_backend(s);
    s->action = s->p->outbound ? "connecting to the destination" : "connecting to the backend";
    arm_phase(s, PHASE_CONNECTING, s->timeouts->connect);
    int rc = conn_connect(&s->server, sa);
    if (rc != 0) {
        log_warn("session=%s listener=%s event=connect_failed peer=%s error=\"%s\"", s->id,
                 s->p->name, s->server_addr, uv_strerror(rc));
        s->ops->abort(s->eng, s->dir->server_down, REASON_BACKEND_UNREACHABLE);
        run_actions(s);
    }
}

/* The destination is known: the policy for it (rules may name addresses,
 * so both name and address count), then dial. */
static void dial_destination(struct session *s)
{
    struct destination *d = &s->d.out.dest;

    s->d.out.policy = policy_for(&s->p->out->policy, d->host, (const struct sockaddr *)&d->sa);
    outbound_set_policy(&s->engine.out, s->d.out.policy);
    dial(s);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct session *s = req->data;

    s->resolving = false;
    status = destination_resolved(&s->d.out.dest, status, res);
    if (s->closing) {
        drop_handle(s); /* the request no longer calls back: it may be freed */
        return;
    }
    s->handles--; /* never the last: the legs and the timer are open */
    if (status != 0) {
        log_warn("session=%s listener=%s event=resolve_failed destination=%s error=\"%s\"",
                 s->id, s->p->name, s->server_addr, uv_strerror(status));
        s->ops->abort(s->eng, s->dir->server_down, REASON_BACKEND_UNREACHABLE);
        run_actions(s);
        return;
    }
    dial_destination(s);
}

static void start_outbound(struct session *s)
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
            run_actions(s);
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
        run_actions(s);
        return;
    }
    s->resolving = true;
    s->handles++; /* the request calls back even when cancelled */
    s->action = "resolving the destination";
    arm_phase(s, PHASE_CONNECTING, s->timeouts->connect);
}

/* Implicit TLS: the handshake comes first, the backend is dialled after.
 * early holds bytes that followed a PROXY header. */
static void start_implicit_tls(struct session *s, const uint8_t *early, size_t n)
{
    struct tls *t = tls_new_server(s->p->tls);

    if (t == NULL || (n > 0 && tls_feed(t, early, n) != 0)) {
        tls_free(t);
        session_close(s, REASON_INTERNAL_ERROR);
        return;
    }
    conn_start_tls(&s->client, t);
    s->action = "TLS handshake with the client";
    arm_phase(s, PHASE_HANDSHAKE_IMPLICIT, s->timeouts->handshake);
    if (n > 0)
        conn_handshake(&s->client);
    else
        conn_resume(&s->client);
}

/* ---- accept ---- */

static void init_engine(struct session *s)
{
    struct engine_io io = {
        .arg = s,
        .to_client = emit_client,
        .to_server = emit_server,
        .on_state = on_engine_state,
    };

    if (s->p->outbound) {
        struct outbound_cfg ocfg = {.policy = s->p->out->policy.fallback};
        s->dir = &dir_out;
        s->timeouts = &s->p->out->timeouts;
        s->ops = &outbound_engine_ops;
        s->eng = &s->engine.out;
        outbound_init(&s->engine.out, &ocfg, &io);
        return;
    }
    const struct session_inbound_opts *in = s->p->in;
    struct inbound_cfg icfg = {
        .implicit_tls = in->tls_mode == SESSION_TLS_IMPLICIT,
        .require_tls = in->require_tls,
        .reject_bare_newline = in->bare_newline == SESSION_BARE_NEWLINE_REJECT,
    };
    if (in->backend_client_info == SESSION_CLIENT_INFO_XCLIENT) {
        uv_once(&helo_once, init_helo_name);
        icfg.xclient = s->d.in.xclient; /* filled in when dialling */
        icfg.helo_name = helo_name;
    }
    s->dir = &dir_in;
    s->timeouts = &in->timeouts;
    s->ops = &inbound_engine_ops;
    s->eng = &s->engine.in;
    addr_format_spec(&in->backend, in->backend.port, s->server_addr, sizeof(s->server_addr));
    inbound_init(&s->engine.in, &icfg, &io);
}

void session_accept(struct session_set *set, uv_stream_t *server,
                    const struct session_profile *profile)
{
    struct session *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        /* Not accepting leaves the connection queued; libuv stops polling
         * the listener until the next accept, so nothing spins. */
        log_error("listener=%s event=accept_failed error=\"out of memory\"",
                  profile ? profile->name : "-");
        return;
    }
    uv_once(&salt_once, init_salt);
    uint32_t n = (uint32_t)atomic_fetch_add(&session_counter, 1);
    snprintf(s->id, sizeof(s->id), "%08" PRIx32, (n * 2654435761u) ^ session_salt);
    s->set = set;
    s->p = profile;
    s->start_ms = uv_now(set->loop);
    s->action = "accepting";
    if (profile)
        profile->hold(profile);

    /* Linked first: from here on the set can see and shut it down. */
    s->next = set->head;
    if (set->head)
        set->head->prev = s;
    set->head = s;
    set->count++;

    uv_timer_init(set->loop, &s->timer);
    s->timer.data = s;
    s->handles = 1;
    if (conn_init(&s->client, set->loop, &session_conn_cb, s) == 0)
        s->handles++;
    if (conn_accept(&s->client, server) != 0 || profile == NULL) {
        s->reason = profile ? REASON_ACCEPT_FAILED : REASON_LISTENER_REMOVED;
        s->closing = true;
        close_handles(s);
        return;
    }
    int alen = sizeof(s->peer);
    uv_tcp_getpeername(&s->client.tcp, (struct sockaddr *)&s->peer, &alen);
    alen = sizeof(s->local);
    uv_tcp_getsockname(&s->client.tcp, (struct sockaddr *)&s->local, &alen);
    addr_format((const struct sockaddr *)&s->peer, s->client_addr, sizeof(s->client_addr));
    metrics_connection_open(profile->metrics);
    s->counted = true;
    unsigned active = atomic_fetch_add(profile->active, 1) + 1;
    init_engine(s);
    bool implicit = !profile->outbound && profile->in->tls_mode == SESSION_TLS_IMPLICIT;

    if (conn_init(&s->server, set->loop, &session_conn_cb, s) == 0) {
        s->handles++;
    } else {
        session_close(s, REASON_INTERNAL_ERROR);
        return;
    }
    unsigned max = profile->outbound ? profile->out->max_connections : profile->in->max_connections;
    if (active > max || set->stopping) {
        log_warn("session=%s listener=%s event=refused reason=%s client=%s", s->id,
                 profile->name, set->stopping ? "shutting_down" : "max_connections",
                 s->client_addr);
        if (!implicit)
            conn_emit(&s->client, (const uint8_t *)R_TOO_MANY, sizeof(R_TOO_MANY) - 1);
        session_close(s, REASON_MAX_CONNECTIONS);
        return;
    }
    log_debug("session=%s listener=%s event=connect client=%s", s->id, profile->name,
              s->client_addr);
    if (profile->outbound) {
        start_outbound(s);
        return;
    }
    if (profile->in->proxy_protocol) {
        s->pp_wait = true;
        s->action = "reading the PROXY header";
        arm_phase(s, PHASE_PREFACE, s->timeouts->handshake);
        conn_resume(&s->client);
        return;
    }
    if (implicit) {
        start_implicit_tls(s, NULL, 0);
        return;
    }
    s->phase = PHASE_CONNECTING;
    conn_resume(&s->client);
    if (!s->closing)
        dial(s);
}

/* ---- the set ---- */

void session_set_init(struct session_set *set, uv_loop_t *loop,
                      void (*on_empty)(struct session_set *set), void *owner)
{
    memset(set, 0, sizeof(*set));
    set->loop = loop;
    set->on_empty = on_empty;
    set->owner = owner;
}

void session_set_stop(struct session_set *set)
{
    set->stopping = true;
    if (set->count == 0 && set->on_empty)
        set->on_empty(set);
}

static void session_shutdown(struct session *s)
{
    if (s->closing)
        return;
    if (!s->p->outbound && (s->phase == PHASE_HANDSHAKE || s->phase == PHASE_HANDSHAKE_IMPLICIT)) {
        session_close(s, REASON_SHUTDOWN);
        return;
    }
    s->ops->abort(s->eng, R_SHUTDOWN, REASON_SHUTDOWN);
    run_actions(s);
}

void session_set_shutdown(struct session_set *set)
{
    /* Sessions unlink themselves only when their handles have closed (in a
     * later close callback), so walking the list here is safe. */
    for (struct session *s = set->head; s != NULL; s = s->next)
        session_shutdown(s);
}
