/*
 * fuzz_session: what the dialogue-engine fuzz drivers (inbound, outbound,
 * relay) share. A session harness that cuts the input into segments and
 * offers unconsumed bytes again after every step, as the session does; and
 * the invariants on what a relay sends each side.
 *
 * Input layout after the driver's configuration byte(s): segments separated
 * by 0xff, each starting with a tag: 'C' client bytes in one chunk, 'c'
 * client bytes one at a time, 'S' / 's' the same for the server; the driver
 * gives other tags a meaning of its own (events), and a tag it does not know
 * sends the whole segment to the client (even tag) or the server (odd tag).
 */
#ifndef SMTP_TLS_PROXY_FUZZ_SESSION_H
#define SMTP_TLS_PROXY_FUZZ_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "proxy/core/relay.h"
#include "tests/fuzz/fuzz_check.h"

#define FUZZ_PEND_CAP 65536

struct fuzz_session {
    void *arg;
    size_t (*client)(void *arg, const uint8_t *p, size_t n);
    size_t (*server)(void *arg, const uint8_t *p, size_t n);
    /* A segment whose tag is an event of the driver's: returns false when
     * the tag means nothing to it (the segment is then fed as bytes). */
    bool (*event)(void *arg, uint8_t tag, const uint8_t *rest, size_t n);
    uint8_t cpend[FUZZ_PEND_CAP];
    size_t ncpend;
    uint8_t spend[FUZZ_PEND_CAP];
    size_t nspend;
};

/* Offers pending bytes until neither side makes progress. */
void fuzz_pump(struct fuzz_session *s);

/* Plays the segments of data[0, size). */
void fuzz_play(struct fuzz_session *s, const uint8_t *data, size_t size);

/* ---- invariants ---- */

#define FUZZ_TAIL 32

/* What one side receives, and what must hold for it. */
struct fuzz_check {
    const struct relay *relay; /* the relay whose state says what a byte is, or NULL */
    bool require_tls;          /* transaction verbs only over TLS */
    bool lenient;              /* check verbs the way Postfix reads them */
    bool server_blocked;       /* no byte may reach the server now */
    bool closed;               /* CLOSE was raised: nothing more to the client */
    /* The client stream, checked reply line by reply line. */
    uint8_t line[4096];
    size_t n;
    bool in_multi;
    uint8_t code[3];
    uint8_t tail[FUZZ_TAIL]; /* last bytes written to the client */
    size_t ntail;
    /* Message content as the server receives it, from the 354 on. */
    bool data_active;
    bool data_ended;     /* CRLF.CRLF went out */
    uint8_t data_win[5]; /* the last bytes, "\r\n" before the first */
};

/* The client receives only well-formed replies and nothing after close. */
void fuzz_check_client(struct fuzz_check *c, const uint8_t *p, size_t n);
/* While c->relay runs: every command line relayed is CRLF-terminated, has
 * no bare CR/LF, fits the limit and is never a verb the proxy intercepts
 * (the verb a lenient server would read included); content keeps one end
 * of data; AUTH only over TLS. */
void fuzz_check_relayed(struct fuzz_check *c, const uint8_t *p, size_t n);
/* After every call: only whole replies were written; DATA content ended
 * properly when the relay left RELAY_DATA. */
void fuzz_check_after(struct fuzz_check *c);
/* The client's stream ends with s. */
bool fuzz_check_tail_is(const struct fuzz_check *c, const char *s);
/* INBOUND_FUZZ_STRICT_ONLY (or FUZZ_STRICT_ONLY) in the environment turns
 * the lenient-verb check off while hunting for other bugs. */
bool fuzz_lenient(void);

#endif
