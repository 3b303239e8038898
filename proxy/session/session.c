/*
 * A session's lifecycle:
 *
 *   accept -> [PROXY header: PREFACE] -> [implicit TLS: HANDSHAKE_IMPLICIT]
 *          -> CONNECTING (backend or destination) -> RUNNING
 *          -> [STARTTLS, either leg: HANDSHAKE -> RUNNING] -> CLOSING -> freed
 *
 * Everything the dialogue engine emits is queued on the legs and written
 * after the engine returns; its actions (start TLS, close) are run here.
 * Deadlines: connect and handshake timeouts for those phases; otherwise the
 * idle timeout is a deadline per command or reply, re-armed only when the
 * engine makes progress (a whole line, chunk or reply), not by every byte,
 * so a client dribbling a byte a second cannot hold a session forever.
 */
#include "proxy/session/session.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "proxy/net/conn.h"
#include "proxy/core/inbound.h"
#include "proxy/core/outbound.h"
#include "proxy/core/proxyproto.h"
#include "proxy/net/listener.h"
#include "proxy/obs/log.h"
#include "proxy/obs/metrics.h"
#include "proxy/tls/tls.h"
#include "proxy/app/worker.h"

enum session_phase {
    PHASE_PREFACE,            /* reading a load balancer's PROXY header */
    PHASE_HANDSHAKE_IMPLICIT, /* implicit TLS before the backend is dialled */
    PHASE_CONNECTING,         /* dialling the backend */
    PHASE_RUNNING,
    PHASE_HANDSHAKE,          /* STARTTLS handshake */
    PHASE_CLOSING,            /* flushing the last words to the client */
};

static const char *const phase_names[] = {
    [PHASE_PREFACE] = "PREFACE",
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
    const struct config_inbound *cfg; /* inside rt; NULL for outbound */
    const struct config_outbound *ocfg; /* inside rt; NULL for inbound */
    const struct config_timeouts *timeouts;
    struct tls_ctx *tls_ctx;          /* inside rt */
    struct conn client, server;
    uv_timer_t timer;
    bool outbound;
    bool resolving;
    bool reconnecting;
    enum config_policy policy;
    const char *verified;             /* "yes", "no" or why not */
    /* What only one direction needs shares the memory of the other's. */
    union {
        struct {                      /* inbound sessions */
            struct inbound engine;
            char sni[128];
            char xclient[200];        /* the XCLIENT line for the backend */
        };
        struct {                      /* outbound sessions */
            struct outbound out;
            struct sockaddr_storage dest; /* where to dial */
            uv_getaddrinfo_t resolver;
            char dest_host[256];
            char tls_error[256];      /* why the handshake failed */
        };
    };
    struct session *prev, *next;
    enum session_phase phase;
    unsigned handles;                 /* open libuv handles */
    bool counted;                     /* holds a max_connections slot */
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
    bool pp_wait;                     /* a PROXY header is still expected */
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

static const char R_BACKEND_DOWN[] = "421 4.4.1 Backend not available, try again later\r\n";
static const char R_DEST_DOWN[] = "421 4.4.1 Destination not reachable, try again later\r\n";
static const char R_NO_DEST[] =
    "421 4.3.0 No original destination: connection was not redirected to the proxy\r\n";
static const char R_BACKEND_TIMEOUT[] = "421 4.4.2 Backend timeout, closing connection\r\n";
static const char R_DEST_TIMEOUT[] = "421 4.4.2 Destination timeout, closing connection\r\n";
static const char R_IDLE[] = "421 4.4.2 Idle timeout exceeded, closing connection\r\n";
static const char R_SHUTDOWN[] = "421 4.3.2 Service shutting down, closing connection\r\n";
static const char R_TOO_MANY[] = "421 4.3.2 Too many connections, try again later\r\n";
static const char R_INTERNAL[] = "421 4.3.0 Internal error, closing connection\r\n";

/* Linux netfilter: the address a REDIRECTed connection was headed for. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

static void set_phase(struct session *s, enum session_phase p)
{
    if (s->phase == p)
        return;
    log_debug("session=%s event=phase from=%s to=%s", s->id, phase_names[s->phase],
              phase_names[p]);
    s->phase = p;
}

static void arm(struct session *s, uint64_t ms);
static void session_close(struct session *s, const char *reason);
static void run_actions(struct session *s);
static void dial(struct session *s);

/* ---- the engine of either direction, behind one face ---- */

enum {
    ACT_START_TLS_CLIENT = 1u << 0,
    ACT_START_TLS_SERVER = 1u << 1,
    ACT_RECONNECT = 1u << 2,
    ACT_CLOSE = 1u << 3,
};

static size_t eng_client(struct session *s, const uint8_t *p, size_t n)
{
    return s->outbound ? outbound_client(&s->out, p, n) : inbound_client(&s->engine, p, n);
}

static size_t eng_server(struct session *s, const uint8_t *p, size_t n)
{
    return s->outbound ? outbound_server(&s->out, p, n) : inbound_server(&s->engine, p, n);
}

static void eng_server_eof(struct session *s)
{
    if (s->outbound)
        outbound_server_eof(&s->out);
    else
        inbound_server_eof(&s->engine);
}

static void eng_abort(struct session *s, const char *reply, const char *reason)
{
    if (s->outbound)
        outbound_abort(&s->out, reply, reason);
    else
        inbound_abort(&s->engine, reply, reason);
}

static bool eng_awaiting_server(const struct session *s)
{
    return s->outbound ? outbound_awaiting_server(&s->out)
                       : inbound_awaiting_server(&s->engine);
}

static uint64_t eng_progress(const struct session *s)
{
    return s->outbound ? outbound_progress(&s->out) : s->engine.progress;
}

static const char *eng_reason(const struct session *s)
{
    return s->outbound ? s->out.reason : s->engine.reason;
}

static unsigned eng_take_actions(struct session *s)
{
    unsigned a = 0;

    if (s->outbound) {
        unsigned o = outbound_take_actions(&s->out);
        if (o & OUTBOUND_ACT_START_TLS)
            a |= ACT_START_TLS_SERVER;
        if (o & OUTBOUND_ACT_RECONNECT)
            a |= ACT_RECONNECT;
        if (o & OUTBOUND_ACT_CLOSE)
            a |= ACT_CLOSE;
    } else {
        unsigned i = inbound_take_actions(&s->engine);
        if (i & INBOUND_ACT_START_TLS)
            a |= ACT_START_TLS_CLIENT;
        if (i & INBOUND_ACT_CLOSE)
            a |= ACT_CLOSE;
    }
    return a;
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

/* ---- lifecycle ---- */

static void log_end(struct session *s)
{
    char sni[300], note[300];
    uint64_t ms = uv_now(&s->w->loop) - s->start_ms;

    if (!s->outbound) {
        log_quote(s->sni[0] ? s->sni : "-", sni, sizeof(sni));
        log_info("session=%s listener=%s dir=in client=%s backend=%s tls=%s cipher=%s sni=%s "
                 "bytes_in=%" PRIu64 " bytes_out=%" PRIu64 " ms=%" PRIu64 " end=%s",
                 s->id, s->shared->name, s->client_addr, s->backend_addr,
                 s->tls_version ? s->tls_version : "none", s->tls_cipher ? s->tls_cipher : "-",
                 sni, s->client.bytes_read, s->client.bytes_written, ms,
                 s->reason ? s->reason : "unknown");
        return;
    }
    /* RFC 7435 §3: plaintext, encrypted-unverified and verified are told
     * apart; the line never claims more than was achieved. */
    const char *security = s->tls_version == NULL        ? "plaintext"
                           : strcmp(s->verified, "yes") == 0 ? "tls-verified"
                                                         : "tls-unverified";
    char verified[300];
    log_quote(s->tls_version ? s->verified : "-", verified, sizeof(verified));
    log_quote(s->out.tls_note ? s->out.tls_note : "-", note, sizeof(note));
    log_info("session=%s listener=%s dir=out client=%s destination=%s policy=%s security=%s "
             "tls=%s cipher=%s verified=%s tls_note=%s bytes_in=%" PRIu64 " bytes_out=%" PRIu64
             " ms=%" PRIu64 " end=%s",
             s->id, s->shared->name, s->client_addr, s->backend_addr,
             config_policy_str(s->policy), security, s->tls_version ? s->tls_version : "none",
             s->tls_cipher ? s->tls_cipher : "-", verified, note, s->client.bytes_read,
             s->client.bytes_written, ms, s->reason ? s->reason : "unknown");
}

static void free_session(struct session *s)
{
    log_end(s);
    metrics_bytes(s->shared->metrics, s->client.bytes_read, s->client.bytes_written);
    if (s->reason != NULL && strcmp(s->reason, "policy_refusal") == 0)
        metrics_policy_refusal(s->shared->metrics, config_policy_str(s->policy));
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
    if (s->resolving)
        uv_cancel((uv_req_t *)&s->resolver);
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
                 s->shared->name, s->client_addr);
        session_close(s, "proxy_header_timeout");
        return;
    case PHASE_HANDSHAKE_IMPLICIT:
    case PHASE_HANDSHAKE:
        log_warn("session=%s listener=%s event=tls_failed reason=\"handshake timeout\" "
                 "peer=%s",
                 s->id, s->shared->name, s->outbound ? s->backend_addr : s->client_addr);
        metrics_tls_failure(s->shared->metrics, "handshake timeout");
        if (s->outbound) {
            /* The client leg is plaintext: policy decides what it hears. */
            outbound_tls_failed(&s->out, "handshake timeout");
            break;
        }
        /* Nothing can be said in plaintext in the middle of a handshake. */
        session_close(s, "tls_timeout");
        return;
    case PHASE_CONNECTING:
        log_warn("session=%s listener=%s event=connect_timeout peer=%s action=\"%s\"", s->id,
                 s->shared->name, s->backend_addr, s->action);
        eng_abort(s, s->outbound ? R_DEST_DOWN : R_BACKEND_DOWN, "backend_unreachable");
        break;
    case PHASE_RUNNING:
        if (s->outbound && s->out.state == OUTBOUND_STARTTLS) {
            /* No answer to STARTTLS is a failed STARTTLS: policy decides. */
            outbound_tls_failed(&s->out, "no reply to STARTTLS");
            break;
        }
        if (eng_awaiting_server(s)) {
            log_warn("session=%s listener=%s event=server_timeout peer=%s "
                     "action=\"waiting for a reply\"",
                     s->id, s->shared->name, s->backend_addr);
            eng_abort(s, s->outbound ? R_DEST_TIMEOUT : R_BACKEND_TIMEOUT, "backend_timeout");
        } else {
            eng_abort(s, R_IDLE, "timeout");
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
    s->progress = eng_progress(s);
    arm(s, (uint64_t)s->timeouts->idle * 1000);
}

/* ---- running the engine ---- */

static void kick_client(struct session *s)
{
    if (!s->closing && !s->client_paused && s->phase != PHASE_HANDSHAKE_IMPLICIT &&
        s->phase != PHASE_PREFACE &&
        !(s->phase == PHASE_HANDSHAKE && !s->outbound))
        conn_resume(&s->client);
}

static void start_tls_server_leg(struct session *s)
{
    bool verify = s->policy == CONFIG_POLICY_VERIFY;
    /* SNI carries a name, never an address (RFC 6066 §3). */
    const char *sni = s->dest_host[0] && !strchr(s->dest_host, ':') &&
                              strspn(s->dest_host, "0123456789.") != strlen(s->dest_host)
                          ? s->dest_host
                          : NULL;
    struct tls *t = tls_new_client(s->tls_ctx, sni, verify, s->dest_host);
    if (t == NULL) {
        eng_abort(s, R_INTERNAL, "internal_error");
        return;
    }
    conn_discard_input(&s->server);
    conn_start_tls(&s->server, t);
    s->action = "TLS handshake with the destination";
    set_phase(s, PHASE_HANDSHAKE);
    arm(s, (uint64_t)s->timeouts->handshake * 1000);
    conn_handshake(&s->server);
}

static void run_actions(struct session *s)
{
    unsigned acts = eng_take_actions(s);

    if (s->closing)
        return;
    conn_flush(&s->server);
    if (s->closing)
        return;
    conn_flush(&s->client);
    if (s->closing)
        return;
    if (acts & ACT_CLOSE) {
        session_close(s, eng_reason(s));
        return;
    }
    if (acts & ACT_START_TLS_CLIENT) {
        struct tls *t = tls_new_server(s->tls_ctx);
        if (t == NULL) {
            session_close(s, "internal_error");
            return;
        }
        /* RFC 3207 §4.2: plaintext that arrived behind STARTTLS is dropped. */
        conn_discard_input(&s->client);
        conn_start_tls(&s->client, t);
        s->action = "TLS handshake with the client";
        set_phase(s, PHASE_HANDSHAKE);
        arm(s, (uint64_t)s->timeouts->handshake * 1000);
        return;
    }
    if (acts & ACT_START_TLS_SERVER) {
        start_tls_server_leg(s);
        if (!s->closing)
            run_actions(s);
        return;
    }
    if (acts & ACT_RECONNECT) {
        /* Opportunistic fallback: a fresh plaintext connection. The new
         * leg is set up once the old handle has closed. */
        log_info("session=%s listener=%s event=tls_fallback destination=%s reason=\"%s\"",
                 s->id, s->shared->name, s->backend_addr,
                 s->out.tls_note ? s->out.tls_note : "-");
        s->reconnecting = true;
        s->tls_version = NULL;
        s->tls_cipher = NULL;
        s->action = "reconnecting to the destination in plaintext";
        conn_close(&s->server);
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
    if (s->phase == PHASE_RUNNING && eng_progress(s) != s->progress)
        arm_idle(s);
}

static void start_implicit_tls(struct session *s, const uint8_t *early, size_t n);

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
                 s->shared->name, s->client_addr);
        session_close(s, "proxy_header_invalid");
        return n;
    }
    s->pp_wait = false;
    if (src.ss_family != AF_UNSPEC) {
        s->peer = src;
        s->local = dst;
        addr_format((const struct sockaddr *)&s->peer, s->client_addr, sizeof(s->client_addr));
    }
    if (s->cfg->tls_mode == CONFIG_TLS_IMPLICIT) {
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
        used = eng_client(s, p, n);
        run_actions(s);
    } else {
        used = eng_server(s, p, n);
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
        session_close(s, "client_closed");
        return;
    }
    if (s->reconnecting)
        return;
    if (err != UV_EOF)
        log_warn("session=%s listener=%s event=server_error peer=%s error=\"%s\"", s->id,
                 s->shared->name, s->backend_addr, uv_strerror(err));
    eng_server_eof(s);
    run_actions(s);
}

static void on_connect(struct conn *c, int status)
{
    struct session *s = c->owner;

    if (s->closing)
        return;
    if (status != 0) {
        log_warn("session=%s listener=%s event=connect_failed peer=%s error=\"%s\"", s->id,
                 s->shared->name, s->backend_addr, uv_strerror(status));
        eng_abort(s, s->outbound ? R_DEST_DOWN : R_BACKEND_DOWN, "backend_unreachable");
        run_actions(s);
        return;
    }
    if (s->outbound && s->reconnecting) {
        s->reconnecting = false;
        outbound_reconnected(&s->out);
    }
    s->action = "waiting for the server's greeting";
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
    metrics_handshake(s->shared->metrics, s->tls_version, s->tls_cipher);
    log_debug("session=%s event=tls_established version=%s cipher=%s", s->id, s->tls_version,
              s->tls_cipher);
    if (c == &s->server) {
        const char *why = NULL;
        s->verified = tls_verify_result(c->tls, &why) ? "yes" : (why ? why : "no");
        metrics_starttls(s->shared->metrics, "ok");
        s->action = "repeating EHLO over TLS";
        set_phase(s, PHASE_RUNNING);
        arm_idle(s);
        outbound_tls_ready(&s->out);
        run_actions(s);
        return;
    }
    const char *sni = tls_sni(c->tls);
    snprintf(s->sni, sizeof(s->sni), "%s", sni ? sni : "");
    inbound_tls_ready(&s->engine);
    if (s->phase == PHASE_HANDSHAKE_IMPLICIT) {
        dial(s);
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
    log_warn("session=%s listener=%s event=tls_failed peer=%s reason=%s action=\"%s\"", s->id,
             s->shared->name, c == &s->client ? s->client_addr : s->backend_addr, q,
             s->action);
    metrics_tls_failure(s->shared->metrics, why ? why : "unknown");
    if (s->phase == PHASE_HANDSHAKE)
        metrics_starttls(s->shared->metrics, "failed");
    if (c == &s->server) {
        /* The reason is copied: the engine is freed with the leg. */
        snprintf(s->tls_error, sizeof(s->tls_error), "%s", why ? why : "unknown");
        s->tls_version = NULL;
        s->tls_cipher = NULL;
        outbound_tls_failed(&s->out, s->tls_error);
        if (!s->closing && !(s->out.actions & OUTBOUND_ACT_RECONNECT)) {
            /* A refusal: nothing more goes to the destination. */
            conn_pause(&s->server);
        }
        run_actions(s);
        return;
    }
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

static const struct conn_cb session_conn_cb;

static void on_conn_closed(struct conn *c)
{
    struct session *s = c->owner;

    if (c == &s->server && s->reconnecting && !s->closing) {
        /* The old leg is gone; dial the same destination afresh. */
        if (conn_init(&s->server, &s->w->loop, &session_conn_cb, s) != 0) {
            s->reconnecting = false;
            eng_abort(s, R_DEST_DOWN, "backend_unreachable");
            on_handle_closed(s);
            run_actions(s);
            return;
        }
        dial(s);
        return; /* the handle count is unchanged: one leg out, one in */
    }
    on_handle_closed(s);
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

static void dial(struct session *s)
{
    const struct sockaddr *sa =
        s->outbound ? (const struct sockaddr *)&s->dest : (const struct sockaddr *)&s->cfg->backend.sa;

    if (!s->outbound && !s->reconnecting) {
        uint8_t hdr[128];
        size_t hlen = 0;
        char host[INET6_ADDRSTRLEN] = "";
        switch (s->cfg->backend_client_info) {
        case CONFIG_CLIENT_INFO_PROXY_V1:
            hlen = proxyproto_v1((char *)hdr, sizeof(hdr), (struct sockaddr *)&s->peer,
                                 (struct sockaddr *)&s->local);
            break;
        case CONFIG_CLIENT_INFO_PROXY_V2:
            hlen = proxyproto_v2(hdr, sizeof(hdr), (struct sockaddr *)&s->peer,
                                 (struct sockaddr *)&s->local);
            break;
        case CONFIG_CLIENT_INFO_XCLIENT:
            /* Postfix's XCLIENT; IPv6 addresses carry the "IPV6:" tag. */
            if (s->peer.ss_family == AF_INET6) {
                uv_ip6_name((struct sockaddr_in6 *)&s->peer, host, sizeof(host));
                snprintf(s->xclient, sizeof(s->xclient),
                         "XCLIENT ADDR=IPV6:%s PORT=%u NAME=[UNAVAILABLE]\r\n", host,
                         ntohs(((struct sockaddr_in6 *)&s->peer)->sin6_port));
            } else {
                uv_ip4_name((struct sockaddr_in *)&s->peer, host, sizeof(host));
                snprintf(s->xclient, sizeof(s->xclient),
                         "XCLIENT ADDR=%s PORT=%u NAME=[UNAVAILABLE]\r\n", host,
                         ntohs(((struct sockaddr_in *)&s->peer)->sin_port));
            }
            break;
        case CONFIG_CLIENT_INFO_NONE:
            break;
        }
        if (hlen > 0)
            conn_emit(&s->server, hdr, hlen);
    }
    s->action = s->outbound ? "connecting to the destination" : "connecting to the backend";
    set_phase(s, PHASE_CONNECTING);
    arm(s, (uint64_t)s->timeouts->connect * 1000);
    int rc = conn_connect(&s->server, sa);
    if (rc != 0) {
        log_warn("session=%s listener=%s event=connect_failed peer=%s error=\"%s\"", s->id,
                 s->shared->name, s->backend_addr, uv_strerror(rc));
        eng_abort(s, s->outbound ? R_DEST_DOWN : R_BACKEND_DOWN, "backend_unreachable");
        run_actions(s);
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct session *s = req->data;

    s->resolving = false;
    if (status == UV_ECANCELED || s->closing) {
        uv_freeaddrinfo(res);
        return;
    }
    if (status != 0 || res == NULL) {
        log_warn("session=%s listener=%s event=resolve_failed destination=%s error=\"%s\"",
                 s->id, s->shared->name, s->backend_addr, uv_strerror(status));
        uv_freeaddrinfo(res);
        eng_abort(s, R_DEST_DOWN, "backend_unreachable");
        run_actions(s);
        return;
    }
    memcpy(&s->dest, res->ai_addr, res->ai_addrlen);
    uv_freeaddrinfo(res);
    /* Policies may name addresses: decide with both name and address. */
    s->policy = config_policy_for(s->ocfg, s->dest_host, (const struct sockaddr *)&s->dest);
    s->out.cfg.policy = (enum outbound_policy)s->policy;
    dial(s);
}

/* Where an outbound session goes: the fixed next hop, or the address the
 * client was heading for before iptables REDIRECTed it to us. */
static int find_destination(struct session *s)
{
    const struct config_outbound *o = s->ocfg;

    if (!o->original_dst) {
        snprintf(s->dest_host, sizeof(s->dest_host), "%s", o->destination.host);
        snprintf(s->backend_addr, sizeof(s->backend_addr), "%s:%u", o->destination.host,
                 o->destination.port);
        if (o->destination.salen > 0) {
            memcpy(&s->dest, &o->destination.sa, o->destination.salen);
            return 0;
        }
        char port[8];
        snprintf(port, sizeof(port), "%u", o->destination.port);
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
        s->resolver.data = s;
        int rc = uv_getaddrinfo(&s->w->loop, &s->resolver, on_resolved, o->destination.host,
                                port, &hints);
        if (rc == 0)
            s->resolving = true;
        return rc == 0 ? 1 : rc;
    }
    uv_os_fd_t fd;
    struct sockaddr_storage dst, local;
    socklen_t len = sizeof(dst);
    int llen = sizeof(local);
    if (uv_fileno((uv_handle_t *)&s->client.tcp, &fd) != 0 ||
        uv_tcp_getsockname(&s->client.tcp, (struct sockaddr *)&local, &llen) != 0)
        return UV_EINVAL;
    int rc = local.ss_family == AF_INET6
                 ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &len)
                 : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len);
    if (rc != 0)
        return UV_ENOENT;
    /* Without a REDIRECT the "original" destination is the proxy itself:
     * dialling it would loop. */
    char here[80], there[80];
    addr_format((const struct sockaddr *)&local, here, sizeof(here));
    addr_format((const struct sockaddr *)&dst, there, sizeof(there));
    if (strcmp(here, there) == 0)
        return UV_ENOENT;
    s->dest = dst;
    snprintf(s->backend_addr, sizeof(s->backend_addr), "%s", there);
    uv_ip_name((const struct sockaddr *)&dst, s->dest_host, sizeof(s->dest_host));
    return 0;
}

/* ---- accept ---- */

static bool find_listener(struct session *s, const char *name)
{
    const struct runtime *rt = s->rt;

    for (size_t i = 0; i < rt->cfg->ninbound; i++) {
        if (strcmp(rt->cfg->inbound[i].name, name) == 0) {
            s->cfg = &rt->cfg->inbound[i];
            s->tls_ctx = rt->inbound_tls[i];
            s->timeouts = &s->cfg->timeouts;
            return true;
        }
    }
    for (size_t i = 0; i < rt->cfg->noutbound; i++) {
        if (strcmp(rt->cfg->outbound[i].name, name) == 0) {
            s->ocfg = &rt->cfg->outbound[i];
            s->tls_ctx = rt->outbound_tls[i];
            s->timeouts = &s->ocfg->timeouts;
            s->outbound = true;
            return true;
        }
    }
    return false;
}

static void start_outbound(struct session *s)
{
    struct outbound_cfg ocfg = {
        .policy = OUTBOUND_OPPORTUNISTIC,
        .reject_bare_newline = false,
    };
    struct inbound_io io = {.arg = s, .to_client = emit_client, .to_server = emit_server};

    s->verified = "no";
    s->policy = s->ocfg->policy; /* until the destination is known */
    snprintf(s->backend_addr, sizeof(s->backend_addr), "-");
    outbound_init(&s->out, &ocfg, &io);
    int rc = find_destination(s);
    if (rc < 0) {
        log_warn("session=%s listener=%s event=no_destination client=%s error=\"%s\"", s->id,
                 s->shared->name, s->client_addr,
                 rc == UV_ENOENT ? "no SO_ORIGINAL_DST (not redirected?)" : uv_strerror(rc));
        eng_abort(s, rc == UV_ENOENT ? R_NO_DEST : R_DEST_DOWN, "no_destination");
        run_actions(s);
        return;
    }
    conn_resume(&s->client);
    if (s->closing)
        return;
    if (rc == 1) {
        s->action = "resolving the destination";
        set_phase(s, PHASE_CONNECTING);
        arm(s, (uint64_t)s->timeouts->connect * 1000);
        return;
    }
    s->policy = config_policy_for(s->ocfg, s->dest_host, (const struct sockaddr *)&s->dest);
    s->out.cfg.policy = (enum outbound_policy)s->policy;
    dial(s);
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
    uv_once(&salt_once, init_salt);
    uint32_t n = (uint32_t)atomic_fetch_add(&session_counter, 1);
    snprintf(s->id, sizeof(s->id), "%08" PRIx32, (n * 2654435761u) ^ session_salt);
    s->w = w;
    s->shared = l->shared;
    s->start_ms = uv_now(&w->loop);
    s->action = "accepting";
    s->rt = runtime_acquire();
    bool found = find_listener(s, l->shared->name);

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
    if (conn_accept(&s->client, (uv_stream_t *)&l->tcp) != 0 || !found) {
        s->reason = found ? "accept_failed" : "listener_removed";
        s->closing = true;
        close_handles(s);
        return;
    }
    int alen = sizeof(s->peer);
    uv_tcp_getpeername(&s->client.tcp, (struct sockaddr *)&s->peer, &alen);
    alen = sizeof(s->local);
    uv_tcp_getsockname(&s->client.tcp, (struct sockaddr *)&s->local, &alen);
    addr_format((const struct sockaddr *)&s->peer, s->client_addr, sizeof(s->client_addr));
    metrics_connection_open(s->shared->metrics);
    s->counted = true;
    unsigned active = atomic_fetch_add(&s->shared->active, 1) + 1;
    bool implicit = !s->outbound && s->cfg->tls_mode == CONFIG_TLS_IMPLICIT;

    if (!s->outbound) {
        snprintf(s->backend_addr, sizeof(s->backend_addr), "%s:%u", s->cfg->backend.host,
                 s->cfg->backend.port);
        struct inbound_cfg ecfg = {
            .implicit_tls = implicit,
            .require_tls = s->cfg->require_tls,
            .reject_bare_newline = s->cfg->bare_newline == CONFIG_BARE_NEWLINE_REJECT,
        };
        if (s->cfg->backend_client_info == CONFIG_CLIENT_INFO_XCLIENT) {
            uv_once(&helo_once, init_helo_name);
            ecfg.xclient = s->xclient; /* filled in when dialling */
            ecfg.helo_name = helo_name;
        }
        struct inbound_io io = {.arg = s, .to_client = emit_client, .to_server = emit_server};
        inbound_init(&s->engine, &ecfg, &io);
    }

    if (conn_init(&s->server, &w->loop, &session_conn_cb, s) == 0)
        s->handles++;
    else {
        session_close(s, "internal_error");
        return;
    }

    unsigned max = s->outbound ? s->ocfg->max_connections : s->cfg->max_connections;
    if (active > max || w->stopping) {
        log_warn("session=%s listener=%s event=refused reason=%s client=%s", s->id,
                 s->shared->name, w->stopping ? "shutting_down" : "max_connections",
                 s->client_addr);
        if (!implicit)
            conn_emit(&s->client, (const uint8_t *)R_TOO_MANY, sizeof(R_TOO_MANY) - 1);
        session_close(s, "max_connections");
        return;
    }
    log_debug("session=%s listener=%s event=connect client=%s", s->id, s->shared->name,
              s->client_addr);
    if (s->outbound) {
        start_outbound(s);
        return;
    }
    if (s->cfg->proxy_protocol) {
        s->pp_wait = true;
        s->action = "reading the PROXY header";
        set_phase(s, PHASE_PREFACE);
        arm(s, (uint64_t)s->timeouts->handshake * 1000);
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

/* Implicit TLS: the handshake comes first, the backend is dialled after.
 * early holds bytes that followed a PROXY header. */
static void start_implicit_tls(struct session *s, const uint8_t *early, size_t n)
{
    struct tls *t = tls_new_server(s->tls_ctx);

    if (t == NULL || (n > 0 && tls_feed(t, early, n) != 0)) {
        tls_free(t);
        session_close(s, "internal_error");
        return;
    }
    conn_start_tls(&s->client, t);
    s->action = "TLS handshake with the client";
    set_phase(s, PHASE_HANDSHAKE_IMPLICIT);
    arm(s, (uint64_t)s->timeouts->handshake * 1000);
    if (n > 0)
        conn_handshake(&s->client);
    else
        conn_resume(&s->client);
}

void session_shutdown(struct session *s)
{
    if (s->closing)
        return;
    if (!s->outbound && (s->phase == PHASE_HANDSHAKE || s->phase == PHASE_HANDSHAKE_IMPLICIT)) {
        session_close(s, "shutdown");
        return;
    }
    eng_abort(s, R_SHUTDOWN, "shutdown");
    run_actions(s);
}

struct session *session_next(const struct session *s)
{
    return s->next;
}
