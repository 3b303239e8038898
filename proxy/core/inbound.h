/*
 * inbound: the front end of an inbound session (internet client -> proxy ->
 * plaintext backend). Pure: the session feeds it the bytes each side sent
 * and it answers through engine_io plus actions (start TLS on the client
 * leg, close). Whole transcripts are unit tests without a socket.
 *
 * It owns what is the proxy's own: the backend's greeting (and the Postfix
 * XCLIENT handshake behind it), STARTTLS (offered in the EHLO reply while
 * the client leg is plaintext, answered by the proxy, RFC 3207), the TLS
 * handshake and require_tls. Everything else is the relay engine's (see
 * relay.h), which it runs from the start: the greeting and the XCLIENT
 * replies take their place in the relay's reply order and come back to the
 * front end through a hook.
 *
 * The session drives it through inbound_engine_ops (engine.h), whose
 * functions take a struct inbound *.
 */
#ifndef SMTP_TLS_PROXY_INBOUND_H
#define SMTP_TLS_PROXY_INBOUND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/core/engine.h"
#include "proxy/core/reason.h"
#include "proxy/core/relay.h"

struct inbound_cfg {
    bool implicit_tls;        /* the client leg is TLS from the first byte */
    bool require_tls;         /* no mail transaction before STARTTLS (530) */
    bool reject_bare_newline; /* bare CR/LF in content: 521 and close */
    /* backend_client_info = "xclient": after the backend's 220 the engine
     * sends "EHLO <helo_name>", and after its reply this line (CRLF
     * included; both borrowed, they must outlive the engine) -- never both
     * at once: Postfix >= 3.9 refuses unauthorised pipelining. The XCLIENT
     * 220 becomes the client's greeting. A backend whose EHLO reply does
     * not offer XCLIENT is reported (io.on_event "xclient_not_offered") and
     * the session goes on without it, the client getting the first
     * greeting; a refused XCLIENT is reported ("xclient_refused") and closes
     * the session with 421 4.3.0. NULL: off. */
    const char *xclient;
    const char *helo_name;
    size_t max_line;          /* longest command line (0: SMTP_CMD_LINE_MAX) */
    const struct smtp_ehlo_policy *ehlo; /* ehlo_keywords (borrowed), or NULL */
};

/* What the Received: line of a message relayed over TLS names (copied by
 * inbound_set_received; every field NUL-terminated). */
struct inbound_received {
    char by[256];          /* the proxy's host name */
    char id[32];           /* the session id */
    char client_name[256]; /* the client's forward-confirmed name, "" when none */
    char client_ip[64];
    char tls_version[32];  /* "TLSv1.3" */
    char tls_cipher[96];   /* "TLS_AES_256_GCM_SHA384" */
    int64_t when;          /* seconds since the epoch, for the date */
};

/* Writes the Received: line (RFC 5321 §4.4, folded as RFC 5322 §2.2.3 so
 * that lines stay under 78 characters where words allow) for a message
 * from a client that said EHLO helo ("unknown" when helo is empty or not a
 * domain or address literal), e.g.
 *   Received: from mail.example.org (mail.example.org [192.0.2.7])
 *   \tby mx.example.net (smtp-tls-proxy) with ESMTPS id 3f2a
 *   \t(version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384);
 *   \tTue, 2 Jan 2024 10:00:00 +0000
 * each line ending in CRLF, the date in UTC. Pure (the time is an
 * argument). Returns the length, or 0 when it does not fit in cap. */
size_t inbound_received_format(char *out, size_t cap, const struct inbound_received *ri,
                               const char *helo);

enum inbound_state {
    INBOUND_GREETING,  /* the backend's greeting is owed; the client waits */
    INBOUND_XEHLO,     /* EHLO sent for XCLIENT: its reply is owed */
    INBOUND_XCLIENT,   /* ... then the XCLIENT reply, the client's greeting */
    INBOUND_RELAY,     /* the relay engine runs the session */
    INBOUND_STARTTLS,  /* STARTTLS accepted, its 220 waits for earlier replies */
    INBOUND_HANDSHAKE, /* 220 sent, the TLS handshake runs */
    INBOUND_CLOSED,
};

const char *inbound_state_str(enum inbound_state s);

/* The session may read the fields marked (ro); the rest is private. */
struct inbound {
    struct inbound_cfg cfg;
    enum inbound_state state; /* (ro) */
    bool tls_active;          /* (ro) the client leg is encrypted */
    uint16_t greeting_len;    /* of greeting (below), <= SMTP_REPLY_LINE_MAX */
    struct relay relay;       /* (ro) its state, caps, FIFO; relay.io is the engine's too */
    unsigned actions;         /* ENGINE_ACT_*, taken by take_actions */
    enum reason reason;       /* (ro) why it closed; REASON_NONE while it runs */
    /* The backend's first greeting, kept while XCLIENT is negotiated: the
     * client gets it when XCLIENT is not offered (a greeting longer than
     * SMTP_REPLY_LINE_MAX becomes its first line). Allocated for that
     * exchange only: an idle session holds neither block. */
    uint8_t *greeting;
    struct inbound_received *received; /* set by inbound_set_received() */
};

/* Sets up e for a new session; the backend's greeting is the first reply
 * awaited. cfg and io are copied (cfg's strings are borrowed). */
void inbound_init(struct inbound *e, const struct inbound_cfg *cfg, const struct engine_io *io);

/* received_header = true: from now on (the session calls it when the client
 * leg's TLS is up) every message relayed starts with the Received: line of
 * ri and the client's latest EHLO. ri is copied (into a block allocated on
 * the first call). Plaintext sessions never get one: the prefix is only
 * written while tls_active. Returns 0, or -1 when out of memory (nothing
 * changed; the caller closes the session). */
int inbound_set_received(struct inbound *e, const struct inbound_received *ri);

/* Frees what the engine allocated for one phase (the XCLIENT greeting, the
 * Received: fields). Idempotent; the engine is not used afterwards. Also
 * inbound_engine_ops.release. */
void inbound_free(struct inbound *e);

/* The engine operations; e is a struct inbound *. tls_failed closes
 * without a reply (nothing can be said in plaintext mid-handshake), with
 * REASON_TLS_TIMEOUT for ENGINE_TLS_TIMEOUT and REASON_TLS_FAILED
 * otherwise. deadline: during the handshake a TLS timeout; with a backend
 * reply owed "421 4.4.2 Backend timeout" (REASON_BACKEND_TIMEOUT); else
 * "421 4.4.2 Idle timeout exceeded" (REASON_TIMEOUT). */
extern const struct engine_ops inbound_engine_ops;

#endif
