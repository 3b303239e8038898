/*
 * A session's lifecycle:
 *
 *   accept -> [implicit TLS: HANDSHAKE] -> CONNECTING (backend) -> RUNNING
 *          -> [STARTTLS: HANDSHAKE -> RUNNING] -> CLOSING -> freed
 *
 * Everything the dialogue engine emits is queued on the legs and written
 * after the engine returns; its actions (start TLS, close) are run here.
 * Deadlines: connect and handshake timeouts for those phases; otherwise the
 * idle timeout is a deadline per command or reply, re-armed only when the
 * engine makes progress (a whole line, chunk or reply), not by every byte,
 * so a client dribbling a byte a second cannot hold a session forever.
 */
#include "session.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <arpa/inet.h>

#include "conn.h"
#include "inbound.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "tls.h"
#include "worker.h"

enum session_phase {
    PHASE_HANDSHAKE_IMPLICIT, /* implicit TLS before the backend is dialled */
    PHASE_CONNECTING,         /* dialling the backend */
    PHASE_RUNNING,
    PHASE_HANDSHAKE,          /* STARTTLS handshake */
    PHASE_CLOSING,            /* flushing the last words to the client */
};

static const char *const phase_names[] = {
    [PHASE_HANDSHAKE_IMPLICIT] = "HANDSHAKE_IMPLICIT",
    [PHASE_CONNECTING] = "CONNECTING",
    [PHASE_RUNNING] = "RUNNING",
    [PHASE_HANDSHAKE] = "HANDSHAKE",
    [PHASE_CLOSING] = "CLOSING",
};

/* How long the last reply (421, 221, ...) may take to reach the client. */
#define SESSION_LINGER_MS 5000

struct session {
    struct worker *w;
    struct listener_shared *shared;
    struct runtime *rt;
    const struct config_inbound *cfg; /* inside rt */
    struct tls_ctx *tls_ctx;          /* inside rt */
    struct conn client, server;
    uv_timer_t timer;
    struct inbound engine;
    struct session *prev, *next;
    enum session_phase phase;
    unsigned handles;                 /* open libuv handles */
    bool counted;                     /* holds a max_connections slot */
    bool server_dialled;
    bool client_paused, server_paused; /* by backpressure */
    bool closing;
    const char *reason;
    const char *action;               /* what the proxy was doing */
    uint64_t start_ms;
    uint64_t progress;
    char id[12];
    char client_addr[64];
    char backend_addr[300];
    const char *tls_version;          /* static strings from BoringSSL */
    const char *tls_cipher;
    char sni[128];
};

static atomic_uint_fast32_t session_counter;
static uint32_t session_salt;

static const char R_BACKEND_DOWN[] = "421 4.4.1 Backend not available, try again later\r\n";
static const char R_BACKEND_TIMEOUT[] = "421 4.4.2 Backend timeout, closing connection\r\n";
static const char R_IDLE[] = "421 4.4.2 Idle timeout exceeded, closing connection\r\n";
static const char R_SHUTDOWN[] = "421 4.3.2 Service shutting down, closing connection\r\n";
static const char R_TOO_MANY[] = "421 4.3.2 Too many connections, try again later\r\n";
static const char R_INTERNAL[] = "421 4.3.0 Internal error, closing connection\r\n";

static void set_phase(struct session *s, enum session_phase p)
{
    log_debug("session=%s event=phase from=%s to=%s", s->id, phase_names[s->phase],
              phase_names[p]);
    s->phase = p;
}

static void arm(struct session *s, uint64_t ms);
static void session_close(struct session *s, const char *reason);
static void run_actions(struct session *s);

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

/* ---- lifecycle ---- */

static void log_end(struct session *s)
{
    char sni[300];

    log_quote(s->sni[0] ? s->sni : "-", sni, sizeof(sni));
    log_info("session=%s listener=%s dir=in client=%s backend=%s tls=%s cipher=%s sni=%s "
             "bytes_in=%" PRIu64 " bytes_out=%" PRIu64 " ms=%" PRIu64 " end=%s",
             s->id, s->shared->name, s->client_addr, s->backend_addr,
             s->tls_version ? s->tls_version : "none", s->tls_cipher ? s->tls_cipher : "-", sni,
             s->client.bytes_read, s->client.bytes_written,
             uv_now(&s->w->loop) - s->start_ms, s->reason ? s->reason : "unknown");
}

static void free_session(struct session *s)
{
    log_end(s);
    metrics_bytes(s->shared->metrics, s->client.bytes_read, s->client.bytes_written);
    if (s->counted) {
        atomic_fetch_sub(&s->shared->active, 1);
        metrics_connection_close(s->shared->metrics);
    }
    if (s->prev)
        s->prev->next = s->next;
    else
        s->w->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    struct worker *w = s->w;
    runtime_unref(s->rt);
    free(s);
    worker_session_done(w);
}

static void on_handle_closed(struct session *s)
{
    if (--s->handles == 0)
        free_session(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    on_handle_closed(h->data);
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
static void session_close(struct session *s, const char *reason)
{
    if (s->closing)
        return;
    s->closing = true;
    if (s->reason == NULL)
        s->reason = reason;
    set_phase(s, PHASE_CLOSING);
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
    case PHASE_HANDSHAKE_IMPLICIT:
    case PHASE_HANDSHAKE:
        /* Nothing can be said in plaintext in the middle of a handshake. */
        log_warn("session=%s listener=%s event=tls_failed reason=\"handshake timeout\" "
                 "client=%s",
                 s->id, s->shared->name, s->client_addr);
        metrics_tls_failure(s->shared->metrics, "handshake timeout");
        session_close(s, "tls_timeout");
        return;
    case PHASE_CONNECTING:
        log_warn("session=%s listener=%s event=backend_timeout backend=%s action=\"%s\"",
                 s->id, s->shared->name, s->backend_addr, s->action);
        inbound_abort(&s->engine, R_BACKEND_DOWN, "backend_unreachable");
        break;
    case PHASE_RUNNING:
        if (inbound_awaiting_server(&s->engine)) {
            log_warn("session=%s listener=%s event=backend_timeout backend=%s "
                     "action=\"waiting for a backend reply\"",
                     s->id, s->shared->name, s->backend_addr);
            inbound_abort(&s->engine, R_BACKEND_TIMEOUT, "backend_timeout");
        } else {
            inbound_abort(&s->engine, R_IDLE, "timeout");
        }
        break;
    }
    run_actions(s);
}

static void arm(struct session *s, uint64_t ms)
{
    uv_timer_start(&s->timer, on_timer, ms, 0);
}

static void arm_idle(struct session *s)
{
    s->progress = s->engine.progress;
    arm(s, (uint64_t)s->cfg->timeouts.idle * 1000);
}

/* ---- the backend leg ---- */

static void dial_backend(struct session *s)
{
    s->server_dialled = true;
    s->action = "connecting to the backend";
    set_phase(s, PHASE_CONNECTING);
    arm(s, (uint64_t)s->cfg->timeouts.connect * 1000);
    int rc = conn_connect(&s->server, (const struct sockaddr *)&s->cfg->backend.sa);
    if (rc != 0) {
        log_warn("session=%s listener=%s event=backend_unreachable backend=%s error=\"%s\"",
                 s->id, s->shared->name, s->backend_addr, uv_strerror(rc));
        inbound_abort(&s->engine, R_BACKEND_DOWN, "backend_unreachable");
        run_actions(s);
    }
}

/* ---- running the engine ---- */

static void kick_client(struct session *s)
{
    if (!s->closing && !s->client_paused && s->phase != PHASE_HANDSHAKE &&
        s->phase != PHASE_HANDSHAKE_IMPLICIT)
        conn_resume(&s->client);
}

static void run_actions(struct session *s)
{
    unsigned acts = inbound_take_actions(&s->engine);

    if (s->closing)
        return;
    conn_flush(&s->server);
    if (s->closing)
        return;
    conn_flush(&s->client);
    if (s->closing)
        return;
    if (acts & INBOUND_ACT_CLOSE) {
        session_close(s, s->engine.reason);
        return;
    }
    if (acts & INBOUND_ACT_START_TLS) {
        struct tls *t = tls_new_server(s->tls_ctx);
        if (t == NULL) {
            inbound_abort(&s->engine, R_INTERNAL, "internal_error");
            session_close(s, "internal_error");
            return;
        }
        /* RFC 3207 §4.2: plaintext that arrived behind STARTTLS is dropped. */
        conn_discard_input(&s->client);
        conn_start_tls(&s->client, t);
        s->action = "TLS handshake with the client";
        set_phase(s, PHASE_HANDSHAKE);
        arm(s, (uint64_t)s->cfg->timeouts.handshake * 1000);
        return;
    }
    /* Backpressure: a leg whose peer is not draining stops the other. */
    if (conn_backlog(&s->server) > CONN_HIGH_WATER && !s->client_paused) {
        s->client_paused = true;
        conn_pause(&s->client);
    }
    if (conn_backlog(&s->client) > CONN_HIGH_WATER && !s->server_paused) {
        s->server_paused = true;
        conn_pause(&s->server);
    }
    if (s->phase == PHASE_RUNNING && s->engine.progress != s->progress)
        arm_idle(s);
}

static size_t on_data(struct conn *c, const uint8_t *p, size_t n)
{
    struct session *s = c->owner;
    size_t used;

    if (s->closing)
        return n;
    if (c == &s->client) {
        used = inbound_client(&s->engine, p, n);
        run_actions(s);
    } else {
        used = inbound_server(&s->engine, p, n);
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
        session_close(s, err == UV_EOF ? "client_closed" : "client_error");
        return;
    }
    if (err != UV_EOF)
        log_warn("session=%s listener=%s event=backend_error backend=%s error=\"%s\"", s->id,
                 s->shared->name, s->backend_addr, uv_strerror(err));
    inbound_server_eof(&s->engine);
    run_actions(s);
}

static void on_connect(struct conn *c, int status)
{
    struct session *s = c->owner;

    if (s->closing)
        return;
    if (status != 0) {
        log_warn("session=%s listener=%s event=backend_unreachable backend=%s error=\"%s\"",
                 s->id, s->shared->name, s->backend_addr, uv_strerror(status));
        inbound_abort(&s->engine, R_BACKEND_DOWN, "backend_unreachable");
        run_actions(s);
        return;
    }
    s->action = "waiting for the backend's greeting";
    set_phase(s, PHASE_RUNNING);
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
    const char *sni = tls_sni(c->tls);
    snprintf(s->sni, sizeof(s->sni), "%s", sni ? sni : "");
    metrics_handshake(s->shared->metrics, s->tls_version, s->tls_cipher);
    log_debug("session=%s event=tls_established version=%s cipher=%s", s->id, s->tls_version,
              s->tls_cipher);
    inbound_tls_ready(&s->engine);
    if (s->phase == PHASE_HANDSHAKE_IMPLICIT) {
        dial_backend(s);
        return;
    }
    metrics_starttls(s->shared->metrics, "ok");
    s->action = "reading commands";
    set_phase(s, PHASE_RUNNING);
    arm_idle(s);
}

static void on_tls_error(struct conn *c, const char *why)
{
    struct session *s = c->owner;
    char q[300];

    if (s->closing)
        return;
    log_quote(why ? why : "unknown", q, sizeof(q));
    log_warn("session=%s listener=%s event=tls_failed client=%s reason=%s action=\"%s\"", s->id,
             s->shared->name, s->client_addr, q, s->action);
    metrics_tls_failure(s->shared->metrics, why ? why : "unknown");
    if (s->phase == PHASE_HANDSHAKE)
        metrics_starttls(s->shared->metrics, "failed");
    session_close(s, "tls_failed");
}

static void on_drain(struct conn *c)
{
    struct session *s = c->owner;

    if (s->closing) {
        if (c == &s->client && conn_backlog(c) == 0)
            close_handles(s);
        return;
    }
    if (c == &s->server && s->client_paused) {
        s->client_paused = false;
        kick_client(s);
    } else if (c == &s->client && s->server_paused) {
        s->server_paused = false;
        conn_resume(&s->server);
    }
}

static void on_conn_closed(struct conn *c)
{
    on_handle_closed(c->owner);
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

/* ---- accept ---- */

static const struct config_inbound *find_inbound(const struct runtime *rt, const char *name,
                                                 struct tls_ctx **ctx)
{
    for (size_t i = 0; i < rt->cfg->ninbound; i++) {
        if (strcmp(rt->cfg->inbound[i].name, name) == 0) {
            *ctx = rt->inbound_tls[i];
            return &rt->cfg->inbound[i];
        }
    }
    return NULL;
}

void session_accept(struct worker *w, struct listener *l)
{
    struct session *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        /* Not accepting leaves the connection queued; libuv stops polling
         * the listener until the next accept, so nothing spins. */
        log_error("listener=%s event=accept_failed error=\"out of memory\"", l->shared->name);
        return;
    }
    if (session_salt == 0) {
        uint32_t r = 0;
        if (getrandom(&r, sizeof(r), 0) != sizeof(r))
            r = (uint32_t)uv_hrtime();
        session_salt = r | 1;
    }
    uint32_t n = (uint32_t)atomic_fetch_add(&session_counter, 1);
    snprintf(s->id, sizeof(s->id), "%08" PRIx32, (n * 2654435761u) ^ session_salt);
    s->w = w;
    s->shared = l->shared;
    s->start_ms = uv_now(&w->loop);
    s->action = "accepting";
    s->rt = runtime_acquire();
    s->cfg = find_inbound(s->rt, l->shared->name, &s->tls_ctx);

    /* Link first: from here on the worker can see and shut it down. */
    s->next = w->sessions;
    if (w->sessions)
        w->sessions->prev = s;
    w->sessions = s;
    w->nsessions++;

    uv_timer_init(&w->loop, &s->timer);
    s->timer.data = s;
    s->handles = 1;
    if (conn_init(&s->client, &w->loop, &session_conn_cb, s) == 0)
        s->handles++;
    if (conn_accept(&s->client, (uv_stream_t *)&l->tcp) != 0 || s->cfg == NULL) {
        s->reason = s->cfg == NULL ? "listener_removed" : "accept_failed";
        s->closing = true;
        close_handles(s);
        return;
    }
    conn_peer_str(&s->client, s->client_addr, sizeof(s->client_addr));
    snprintf(s->backend_addr, sizeof(s->backend_addr), "%s:%u", s->cfg->backend.host,
             s->cfg->backend.port);
    metrics_connection_open(s->shared->metrics);
    s->counted = true;
    unsigned active = atomic_fetch_add(&s->shared->active, 1) + 1;

    struct inbound_cfg ecfg = {
        .implicit_tls = s->cfg->tls_mode == CONFIG_TLS_IMPLICIT,
        .require_tls = s->cfg->require_tls,
        .reject_bare_newline = s->cfg->bare_newline == CONFIG_BARE_NEWLINE_REJECT,
    };
    struct inbound_io io = {.arg = s, .to_client = emit_client, .to_server = emit_server};
    inbound_init(&s->engine, &ecfg, &io);

    if (conn_init(&s->server, &w->loop, &session_conn_cb, s) == 0)
        s->handles++;
    else {
        session_close(s, "internal_error");
        return;
    }

    if (active > s->cfg->max_connections || w->stopping) {
        log_warn("session=%s listener=%s event=refused reason=%s client=%s", s->id,
                 s->shared->name, w->stopping ? "shutting_down" : "max_connections",
                 s->client_addr);
        if (!ecfg.implicit_tls)
            conn_emit(&s->client, (const uint8_t *)R_TOO_MANY, sizeof(R_TOO_MANY) - 1);
        session_close(s, "max_connections");
        return;
    }
    log_debug("session=%s listener=%s event=connect client=%s", s->id, s->shared->name,
              s->client_addr);
    if (ecfg.implicit_tls) {
        struct tls *t = tls_new_server(s->tls_ctx);
        if (t == NULL) {
            session_close(s, "internal_error");
            return;
        }
        conn_start_tls(&s->client, t);
        s->action = "TLS handshake with the client";
        set_phase(s, PHASE_HANDSHAKE_IMPLICIT);
        arm(s, (uint64_t)s->cfg->timeouts.handshake * 1000);
        conn_resume(&s->client);
        return;
    }
    s->phase = PHASE_CONNECTING;
    conn_resume(&s->client);
    if (!s->closing)
        dial_backend(s);
}

void session_shutdown(struct session *s)
{
    if (s->closing)
        return;
    if (s->phase == PHASE_HANDSHAKE || s->phase == PHASE_HANDSHAKE_IMPLICIT) {
        session_close(s, "shutdown");
        return;
    }
    inbound_abort(&s->engine, R_SHUTDOWN, "shutdown");
    run_actions(s);
}

struct session *session_next(const struct session *s)
{
    return s->next;
}
