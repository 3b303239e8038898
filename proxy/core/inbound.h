/*
 * inbound: the dialogue engine of an inbound session (internet client ->
 * proxy -> plaintext backend). Pure: the session feeds it the bytes each
 * side sent and it answers through two emit callbacks (bytes for the client,
 * bytes for the backend) plus actions (start TLS on the client leg, close).
 * Whole transcripts are unit tests without a socket.
 *
 * The engine matches every backend reply to the command it answers with a
 * FIFO (RFC 2920 keeps replies in command order), so only the EHLO reply is
 * ever rewritten, and replies the proxy owns (STARTTLS, refusals, errors)
 * take their place in that order too.
 */
#ifndef SMTP_TLS_PROXY_INBOUND_H
#define SMTP_TLS_PROXY_INBOUND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/core/smtp.h"

struct inbound_cfg {
    bool implicit_tls;        /* the client leg is TLS from the first byte */
    bool require_tls;         /* no mail transaction before STARTTLS */
    bool reject_bare_newline; /* bare CR/LF in content: 521 and close */
    bool relay_only;          /* outbound relay phase: the client leg never
                                 gets TLS, STARTTLS is not offered (502) */
    /* backend_client_info = "xclient": after the backend's 220 the engine
     * sends "EHLO <helo_name>" and this line (CRLF included; both borrowed,
     * they must outlive the engine), and the XCLIENT 220 becomes the
     * client's greeting. NULL: off. */
    const char *xclient;
    const char *helo_name;
};

/* Where the engine's output goes; the callbacks must not call back into
 * the engine. */
struct inbound_io {
    void *arg;
    void (*to_client)(void *arg, const uint8_t *p, size_t n);
    void (*to_server)(void *arg, const uint8_t *p, size_t n);
};

enum inbound_state {
    INBOUND_COMMAND,   /* reading command lines */
    INBOUND_HOLD,      /* a reply decides what the next bytes are */
    INBOUND_SKIP,      /* discarding the rest of an overlong line */
    INBOUND_DATA,      /* message content after 354 */
    INBOUND_BDAT,      /* counted BDAT chunk octets */
    INBOUND_AUTH,      /* the next line answers an AUTH challenge */
    INBOUND_STARTTLS,  /* STARTTLS accepted, 220 waits for earlier replies */
    INBOUND_HANDSHAKE, /* 220 sent, the TLS handshake runs */
    INBOUND_CLOSED,
};

const char *inbound_state_str(enum inbound_state s);

/* Actions for the session, read and cleared by inbound_take_actions(). */
enum inbound_action {
    INBOUND_ACT_START_TLS = 1u << 0, /* after writing what was emitted so far */
    INBOUND_ACT_CLOSE = 1u << 1,     /* flush to the client, then close both */
};

#define INBOUND_FIFO_MAX 32

enum inbound_pending {
    PEND_GREETING,
    PEND_EHLO,
    PEND_HELO,
    PEND_MAIL,
    PEND_RCPT,
    PEND_DATA,
    PEND_DOT,
    PEND_BDAT,
    PEND_BDAT_LAST,
    PEND_RSET,
    PEND_AUTH,
    PEND_QUIT,
    PEND_OTHER,
    PEND_XEHLO,    /* the proxy's own EHLO before XCLIENT */
    PEND_XCLIENT,  /* XCLIENT: its 220 is the client's greeting */
    PEND_LOCAL,    /* a reply of the proxy's own, text in the entry */
    PEND_STARTTLS, /* the proxy's 220 */
};

struct inbound_entry {
    uint8_t kind;       /* enum inbound_pending */
    const char *text;   /* PEND_LOCAL: static reply text with CRLF */
};

struct inbound {
    struct inbound_cfg cfg;
    struct inbound_io io;
    enum inbound_state state;
    bool tls_active;
    bool greeted;       /* the backend's greeting has reached the client */
    bool ehlo_sent;     /* EHLO/HELO sent in this TLS phase */
    bool need_ehlo;     /* after STARTTLS, until the client greets again */
    bool in_txn;        /* a MAIL was sent and not yet ended */
    bool bdat_discard;  /* INBOUND_BDAT chunk refused: drop, don't forward */
    bool quit;          /* QUIT forwarded */
    bool skip_pending;  /* an overlong line's tail is still to be dropped */
    unsigned caps;      /* SMTP_CAP_* of the backend's last EHLO reply */
    uint64_t bdat_left;
    struct smtp_data data;
    struct inbound_entry fifo[INBOUND_FIFO_MAX];
    unsigned head, count;
    unsigned actions;
    const char *reason; /* why it closed: a static string */
    uint64_t progress;  /* complete lines/chunks/replies seen (deadlines) */
};

/* Sets up e for a new session; the backend's greeting is the first reply
 * awaited. cfg and io are copied. */
void inbound_init(struct inbound *e, const struct inbound_cfg *cfg, const struct inbound_io *io);

/* For the outbound engine: greeting and EHLO are done; relay from here.
 * server_tls says whether the server leg is encrypted (AUTH is relayed
 * only then); caps are the SMTP_CAP_* the server's EHLO reply offered. */
void inbound_init_relay(struct inbound *e, const struct inbound_cfg *cfg,
                        const struct inbound_io *io, bool server_tls, unsigned caps);

/* Bytes from the client (plaintext, after TLS if any). Returns how many
 * were consumed; the session keeps the rest and offers them again, with
 * whatever arrives next, after the next backend reply (at most one command
 * line's worth is ever left when the engine is reading commands). */
size_t inbound_client(struct inbound *e, const uint8_t *p, size_t n);

/* Bytes from the backend; same contract as inbound_client. */
size_t inbound_server(struct inbound *e, const uint8_t *p, size_t n);

/* The backend closed its side. */
void inbound_server_eof(struct inbound *e);

/* The client's TLS handshake completed (STARTTLS or implicit): RFC 3207
 * §4.2, everything learnt before is forgotten. */
void inbound_tls_ready(struct inbound *e);

/* Sends reply (a static string with CRLF) to the client at once and closes:
 * timeouts, shutdown, a lost backend. */
void inbound_abort(struct inbound *e, const char *reply, const char *reason);

/* True while a reply from the backend is owed (deadline on the backend). */
bool inbound_awaiting_server(const struct inbound *e);

unsigned inbound_take_actions(struct inbound *e);

#endif
