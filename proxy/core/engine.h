/*
 * engine: what every dialogue engine (inbound front end, outbound
 * negotiation) offers the session, as a table of operations. The session
 * owns one engine of either kind and drives it only through this table:
 * bytes in, emitted bytes and actions out. Engines are pure (no I/O): the
 * callbacks in engine_io are the only way out, and they must not call back
 * into the engine.
 */
#ifndef SMTP_TLS_PROXY_ENGINE_H
#define SMTP_TLS_PROXY_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/core/reason.h"

/* Where an engine's output goes. */
struct engine_io {
    void *arg;
    void (*to_client)(void *arg, const uint8_t *p, size_t n);
    void (*to_server)(void *arg, const uint8_t *p, size_t n);
    /* Optional (NULL: off): called by every enter_state() that changes the
     * state, for debug logs. engine is "inbound", "outbound" or "relay";
     * from and to are the *_state_str() names. */
    void (*on_state)(void *arg, const char *engine, const char *from, const char *to);
    /* Optional (NULL: off): something only the engine sees that the
     * session logs at warn, with the server leg's address. event is a
     * static name ("xclient_refused", "xclient_not_offered"); detail is the
     * server's reply on one line (CR/LF gone), valid for the call only. */
    void (*on_event)(void *arg, const char *event, const char *detail);
    /* Optional: events of interest at debug level only (e.g.
     * "ehlo_keyword_dropped" with the keyword). */
    void (*on_debug)(void *arg, const char *event, const char *detail);
    /* Optional: a refusal the policy would have made but was told only to
     * report (outbound DANE with enforce = false); why is static or lives
     * as long as the engine. */
    void (*on_refusal_logged)(void *arg, const char *why);
};

/* Actions for the session, read and cleared by take_actions(). */
enum engine_action {
    ENGINE_ACT_START_TLS_CLIENT = 1u << 0, /* TLS server handshake on the client leg,
                                              once everything emitted is written */
    ENGINE_ACT_START_TLS_SERVER = 1u << 1, /* TLS client handshake on the server leg */
    ENGINE_ACT_RECONNECT = 1u << 2,        /* drop the server leg, dial again (plaintext) */
    ENGINE_ACT_CLOSE = 1u << 3,            /* flush to the client, then close both */
};

/* Why TLS on a leg could not be had: the engine picks its reply from this,
 * never from the wording of a message. */
enum engine_tls_failure {
    ENGINE_TLS_HANDSHAKE,   /* the handshake failed (alert, protocol, version) */
    ENGINE_TLS_CERTIFICATE, /* the peer's certificate did not verify */
    ENGINE_TLS_TIMEOUT,     /* the handshake did not finish in time */
    ENGINE_TLS_NO_REPLY,    /* STARTTLS got no reply in time */
};

struct engine_ops {
    const char *name; /* "inbound" | "outbound" */
    /* Bytes from the client / the server (plaintext, after TLS if any).
     * Returns how many were consumed; the session keeps the rest and
     * offers them again with whatever arrives next. */
    size_t (*client)(void *e, const uint8_t *p, size_t n);
    size_t (*server)(void *e, const uint8_t *p, size_t n);
    /* The server leg closed. */
    void (*server_eof)(void *e);
    /* The TLS handshake the engine asked for (START_TLS_CLIENT or
     * START_TLS_SERVER, or implicit TLS) has completed. */
    void (*tls_ready)(void *e);
    /* It failed; detail is for the log (static or session-lived). */
    void (*tls_failed)(void *e, enum engine_tls_failure kind, const char *detail);
    /* After ENGINE_ACT_RECONNECT: the new plaintext server leg is up. */
    void (*reconnected)(void *e);
    /* The per-command deadline passed: the engine answers (an idle 421, a
     * server timeout, a failed STARTTLS) and usually closes. */
    void (*deadline)(void *e);
    /* reply (a static string with CRLF, or NULL) to the client at once,
     * then close: a lost backend, shutdown, internal errors. */
    void (*abort)(void *e, const char *reply, enum reason reason);
    /* True while a reply from the server is owed. */
    bool (*awaiting_server)(const void *e);
    /* True while client bytes are message content (DATA after the 354, a
     * BDAT chunk): the session then times the client by data rate. */
    bool (*in_content)(const void *e);
    /* Lines, chunks and replies seen so far (deadlines are re-armed when
     * this changes). */
    uint64_t (*progress)(const void *e);
    /* Why the engine closed (REASON_NONE while it runs). */
    enum reason (*reason)(const void *e);
    unsigned (*take_actions)(void *e);
    /* Optional (NULL: nothing to free): frees what the engine allocated
     * for a phase of the session. Called once, when the session is freed;
     * the engine is not used afterwards. */
    void (*release)(void *e);
};

#endif
