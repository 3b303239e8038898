/*
 * relay: the engine that relays an SMTP session once greeting (and, for
 * outbound, EHLO) are done. Pure: bytes in, bytes out through engine_io, no
 * I/O. Both negotiation engines use it: the inbound front end for the whole
 * session after the greeting, the outbound engine after its negotiation.
 *
 * It matches every server reply to the command it answers with a FIFO (RFC
 * 2920 keeps replies in command order), so only the EHLO reply is ever
 * rewritten, and replies the proxy owns (refusals, errors) take their place
 * in that order too. It tracks DATA (RFC 5321 §4.1.1.4, bare CR/LF repaired
 * or refused), BDAT (RFC 3030) and AUTH exchanges (RFC 4954: relayed only
 * when cfg.tls says the session is encrypted).
 *
 * What differs between its users is configuration and one hook: a user that
 * intercepts some verbs (the inbound front end owns STARTTLS and
 * require_tls) sees each command line first and says whether the relay
 * handles it, refuses it, or yields to the user. The relay itself never
 * offers STARTTLS: unless the hook takes it, it is refused with 502.
 */
#ifndef SMTP_TLS_PROXY_RELAY_H
#define SMTP_TLS_PROXY_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/core/engine.h"
#include "proxy/core/reason.h"
#include "proxy/core/smtp.h"

/* Replies the relay writes that its users write too (static, with CRLF). */
extern const char RELAY_R_NEED_TLS[]; /* 530 5.7.0 Must issue a STARTTLS command first */
extern const char RELAY_R_PROTOCOL[]; /* 421 4.5.0 Backend protocol error, ... */
extern const char RELAY_R_LOST[];     /* 421 4.4.2 Backend connection lost */
extern const char RELAY_R_IDLE[];     /* 421 4.4.2 Idle timeout exceeded, ... */

struct relay_cfg {
    /* The session is encrypted where it matters: AUTH is relayed and the
     * EHLO reply keeps AUTH (RFC 4954 §4). Inbound: the client leg; outbound:
     * the server leg. */
    bool tls;
    /* While !tls, the EHLO reply offers STARTTLS (SMTP_EHLO_ADD_STARTTLS):
     * the user answers STARTTLS itself through hooks.command. */
    bool offer_starttls;
    bool reject_bare_newline; /* bare CR/LF in content: 521 and close */
    /* A backend that answers EHLO with 500 or 502 (HELO only) gets the
     * client's HELO from the proxy, and the client an EHLO reply of the
     * proxy's own (see relay_server()). Inbound only. */
    bool helo_fallback;
    unsigned caps;            /* SMTP_CAP_* of an EHLO reply the user already read */
    /* Longest command line, CRLF included; 0: SMTP_CMD_LINE_MAX. An AUTH
     * line may always be SMTP_AUTH_LINE_MAX (initial response). */
    size_t max_line;
    /* ehlo_keywords of the listener (borrowed; its dropped/arg fields are
     * ignored: dropped keywords go to io.on_debug). NULL: the built-in
     * allowlist alone. */
    const struct smtp_ehlo_policy *ehlo;
};

enum relay_state {
    RELAY_COMMAND, /* reading command lines */
    RELAY_HOLD,    /* a reply decides what the next bytes are */
    RELAY_SKIP,    /* discarding the rest of an overlong line */
    RELAY_DATA,    /* message content after 354 */
    RELAY_BDAT,    /* counted BDAT chunk octets */
    RELAY_AUTH,    /* the next line answers an AUTH challenge */
    RELAY_YIELDED, /* the hook took over the client's bytes (STARTTLS) */
    RELAY_CLOSED,
};

const char *relay_state_str(enum relay_state s);

/* One complete command line, as the hook sees it (borrowed for the call). */
struct relay_command {
    enum smtp_verb verb;
    const uint8_t *line; /* CRLF included */
    size_t len;
    size_t arg;          /* offset of the arguments (len - 2 when none) */
};

/* What the hook decides about a command line. */
enum relay_verdict {
    RELAY_PASS,   /* the relay handles it as usual */
    RELAY_REFUSE, /* refused with *reply (static), in its place in the reply
                     order; a BDAT's chunk is skipped, a malformed BDAT still
                     gets its syntax error */
    RELAY_YIELD,  /* the user takes it: the relay reads no more client bytes
                     until relay_tls_started(), and calls hooks.turn once
                     every reply owed before this command is delivered */
};

/* What the recipient hook decides about one RCPT (hooks.rcpt). */
enum relay_rcpt_verdict {
    RELAY_RCPT_PASS,   /* forward it now */
    RELAY_RCPT_REFUSE, /* answered with *reply (static), not forwarded */
    RELAY_RCPT_WAIT,   /* decide later: relay_rcpt_resume() */
};

struct relay_hooks {
    void *arg;
    /* Optional: every command line before the relay acts on it. It may write
     * nothing itself; it must not call into the relay. */
    enum relay_verdict (*command)(void *arg, const struct relay_command *c, const char **reply);
    /* Required when command may yield: the user's turn to speak has come. */
    void (*turn)(void *arg);
    /* Required with relay_expect(): a reply the user awaits (p[0, len) one
     * whole reply, code its code). It may write, call relay_expect() and
     * relay_close(). A 421 closes the relay after the hook returns. */
    void (*reply)(void *arg, const uint8_t *p, size_t len, int code);
    /* Optional: bytes to put first in the content of each message (a
     * Received: line), asked once per message when its content starts (the
     * 354, or the first BDAT chunk, whose size then counts them). Writes at
     * most cap bytes to out and returns how many; 0: nothing. */
    size_t (*prefix)(void *arg, uint8_t *out, size_t cap);
    /* Optional (outbound, per-recipient authentication): each RCPT TO the
     * relay would forward, with its recipient's domain (relay_rcpt_domain():
     * lower-cased, no trailing dot; "" for an address literal or a path
     * without a domain, to which no domain's policy applies). A path that
     * does not parse never gets here: the proxy answers it (501 5.1.3, or
     * 450 4.7.5 for a domain not in A-label form). PASS: forwarded.
     * REFUSE (a decision already known): *reply answers it, as a resumed
     * refusal would (relay_rcpt_resume()). WAIT:
     * the relay reads nothing more of the client, this command included
     * (RFC 2920: later commands stay unread behind it, in order), until the
     * user calls relay_rcpt_resume() and offers the client's bytes again.
     * It must not call into the relay. */
    enum relay_rcpt_verdict (*rcpt)(void *arg, const char *domain, const char **reply);
};

/* Longest content prefix asked of hooks.prefix. */
#define RELAY_PREFIX_MAX 1024

/* After this many commands answered with an error by the proxy itself
 * (syntax, overlong lines, refused verbs), the client hears
 * RELAY_R_TOO_MANY_ERRORS once every earlier reply is delivered, and the
 * session closes (REASON_PROTOCOL_ERROR), as Postfix's smtpd_hard_error_limit. */
#define RELAY_ERROR_LIMIT 20
extern const char RELAY_R_TOO_MANY_ERRORS[]; /* 421 4.7.0 Too many errors, ... */

#define RELAY_FIFO_MAX 32

enum relay_pending {
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
    PEND_LOCAL, /* a reply of the proxy's own, text in the entry */
    PEND_TURN,  /* the place of a yielded command */
    PEND_USER,  /* a reply the user reads (relay_expect) */
    PEND_HELO_FALLBACK, /* the proxy's HELO after an EHLO the server refused */
    PEND_CLOSE, /* the error limit: text in the entry, then close */
};

struct relay_entry {
    uint8_t kind;     /* enum relay_pending */
    const char *text; /* PEND_LOCAL: static reply text with CRLF */
};

/* The session may read the fields marked (ro); the rest is private. */
struct relay {
    struct relay_cfg cfg;
    struct engine_io io;
    struct relay_hooks hooks;
    enum relay_state state; /* (ro) */
    bool ehlo_sent;         /* (ro) EHLO/HELO relayed since init or TLS start */
    bool need_ehlo;         /* (ro) after STARTTLS, until the client greets again */
    bool in_txn;            /* (ro) a MAIL was sent and not yet ended */
    bool bdat_discard;      /* (ro) the current BDAT chunk is dropped */
    bool quit;              /* (ro) QUIT relayed */
    bool skip_pending;      /* an overlong line's tail is still to be dropped */
    struct smtp_data data;  /* (two bytes: here, they fill what the bools leave) */
    uint8_t rcpt;           /* enum relay_rcpt_state (relay_int.h): hooks.rcpt's decision */
    unsigned caps;          /* (ro) SMTP_CAP_* of the server's last EHLO reply */
    uint64_t bdat_left;
    /* The FIFO (relay_fifo.c): entry i is fifo_kind[i] (enum
     * relay_pending) and, for the proxy's own replies, fifo_text[i], an
     * array of RELAY_FIFO_MAX allocated only while ntext > 0 of them are
     * queued. */
    uint8_t fifo_kind[RELAY_FIFO_MAX];
    uint8_t ntext;
    bool error_limit;       /* (ro) RELAY_ERROR_LIMIT reached: no more commands are read */
    bool prefix_done;       /* the current message has had its prefix */
    const char **fifo_text;
    unsigned head, count;   /* (ro) count: entries in the FIFO */
    enum reason reason;     /* (ro) why it closed; REASON_NONE while it runs */
    unsigned errors;        /* (ro) commands the proxy itself answered with an error */
    uint64_t progress;      /* (ro) complete lines/chunks/replies seen */
    /* The first word of the client's last EHLO/HELO argument, kept (in a
     * block of its own size) only with cfg.helo_fallback, the inbound
     * front end's, which also names it in Received: lines; NULL when none
     * or too long. Read it with relay_client_helo(). */
    char *client_helo;
    /* The server's domain from its greeting: the user (inbound) sets it
     * with relay_set_server_domain(), the HELO fallback names it when the
     * HELO reply does not. NULL when none. */
    char *server_domain;
};

/* Longest EHLO/HELO word and server domain kept (RFC 1035: 255 octets). */
#define RELAY_NAME_MAX 255

/* Sets up r to read commands with nothing owed. cfg, io and hooks are
 * copied (hooks may be NULL: no hook). */
void relay_init(struct relay *r, const struct relay_cfg *cfg, const struct engine_io *io,
                const struct relay_hooks *hooks);

/* Frees the names the relay keeps (client_helo, server_domain).
 * Idempotent; the relay is not used afterwards. */
void relay_free(struct relay *r);

/* The client's last EHLO/HELO word (see client_helo), "" when none. */
static inline const char *relay_client_helo(const struct relay *r)
{
    return r->client_helo != NULL ? r->client_helo : "";
}

/* Keeps p[0, n) as the server's domain ("" when n is 0 or above
 * RELAY_NAME_MAX). 0, or -1 when out of memory (the domain is then
 * forgotten). */
int relay_set_server_domain(struct relay *r, const uint8_t *p, size_t n);

/* Client bytes. Returns how many were consumed; the caller keeps the rest
 * and offers them again, with whatever arrives next, after the next server
 * reply (at most one command line's worth is left while reading commands).
 * In RELAY_YIELDED nothing is consumed; in RELAY_CLOSED everything is. May
 * call hooks.command and hooks.turn. */
size_t relay_client(struct relay *r, const uint8_t *p, size_t n);

/* Server bytes; same contract. May call hooks.turn. */
size_t relay_server(struct relay *r, const uint8_t *p, size_t n);

/* The server leg closed: 421 to the client unless QUIT was relayed. */
void relay_server_eof(struct relay *r);

/* TLS now protects the session (RFC 3207 §4.2): everything learnt before
 * (EHLO capabilities, the transaction) is forgotten, AUTH may be relayed,
 * and reading resumes after a yield. ehlo_again: until the client sends
 * EHLO or HELO, transaction and unknown verbs are refused with 503. */
void relay_tls_started(struct relay *r, bool ehlo_again);

/* The next reply owed (after those already owed) is the user's: it goes
 * to hooks.reply, not to the client (the inbound greeting, XCLIENT). */
void relay_expect(struct relay *r);

/* Closes the relay: reply (static, or NULL) to the client, then nothing
 * more is read or written. Idempotent. */
void relay_close(struct relay *r, const char *reply, enum reason reason);

/* True while a reply from the server is owed, or a recipient's decision
 * (hooks.rcpt) is: either way the client is waiting for an answer. */
bool relay_awaiting_server(const struct relay *r);

/* Into pol: the keyword policy cfg (NULL: none) with every dropped keyword
 * reported through io->on_debug as "ehlo_keyword_dropped" (io must outlive
 * pol's use). For the relay and any engine rewriting an EHLO reply. */
void relay_ehlo_policy(const struct smtp_ehlo_policy *cfg, const struct engine_io *io,
                       struct smtp_ehlo_policy *pol);

/* The decision hooks.rcpt waited for: reply NULL forwards the RCPT, else
 * reply (static, CRLF; lives as long as the relay) answers it in its place
 * in the reply order and the RCPT is not forwarded. A policy refusal is not
 * the client's error: it does not count towards RELAY_ERROR_LIMIT. The user
 * then offers the client's unread bytes again (relay_client()), this RCPT
 * first. Does nothing unless the relay waits (after a close, say). */
void relay_rcpt_resume(struct relay *r, const char *reply);

/* True while hooks.rcpt's decision is awaited (its RCPT still unread). */
bool relay_rcpt_waiting(const struct relay *r);

/* The recipient's domain of a RCPT argument (arg[0, len): "TO:<...>" and
 * any parameters, CRLF included or not), strictly by RFC 5321 §4.1.2: a
 * source route is ignored, a quoted local part may hold '@'. Into out
 * (cap >= 256): the domain lower-cased without a trailing dot, or "" for an
 * address literal ("[192.0.2.1]") or a path without domain ("<postmaster>").
 * Returns RELAY_RCPT_OK, RELAY_RCPT_SYNTAX, or RELAY_RCPT_NOT_ALABEL (a
 * domain with octets beyond ASCII: an SMTPUTF8 U-label). Never reads past
 * arg + len. */
enum relay_rcpt_parse {
    RELAY_RCPT_OK = 0,
    RELAY_RCPT_SYNTAX = -1,
    RELAY_RCPT_NOT_ALABEL = -2,
};
int relay_rcpt_domain(const uint8_t *arg, size_t len, char *out, size_t cap);
extern const char RELAY_R_RCPT_SYNTAX[];     /* 501 5.1.3 Bad recipient address syntax */
extern const char RELAY_R_RCPT_NOT_ALABEL[]; /* 450 4.7.5 ... A-label form ... */

/* True while the client's bytes are message content (DATA or a BDAT chunk). */
bool relay_in_content(const struct relay *r);

#endif
