/*
 * Fuzz target for proxy/core/relay.c: the relay engine on its own, with or
 * without a hook, driven by fuzz-chosen, interleaved client and server
 * chunks. Input layout:
 *   byte 0   configuration: bit 0 a hook that yields on STARTTLS (and
 *            offer_starttls), 1 a hook that refuses transaction verbs
 *            while !tls (require_tls), 2 reject_bare_newline, 4 tls,
 *            5 CHUNKING already offered, 3 a recipient hook that waits
 *            for domains starting a-m, refuses n-p, passes the others
 *   then     segments (fuzz_session.h); events: 'T' TLS starts after a
 *            yield (relay_tls_started; the next byte's bit 0: EHLO again),
 *            'E' the server closes, 'R' a waiting recipient is decided
 *            (the next byte's bit 0: refused, else forwarded).
 *
 * Invariants (abort on violation), beyond fuzz_session.h's:
 *   - consumed <= given; in RELAY_CLOSED all is consumed; yielded, nothing;
 *   - the turn comes once per yield, with no reply owed, and nothing
 *     reaches the server between the yield and TLS;
 *   - a close comes with a reason and nothing is written after it;
 *   - the recipient hook gets a lower-case LDH domain of at most 253
 *     octets, never while a decision is pending; while one is, no client
 *     byte is taken (unless closed) and nothing reaches the server.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proxy/core/relay.h"
#include "tests/fuzz/fuzz_session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct drv {
    struct relay r;
    bool yield_starttls;
    bool yielded; /* the hook yielded */
    bool turned;  /* ... and its turn came */
    bool waiting; /* the recipient hook said WAIT, not yet resumed */
    struct fuzz_check check;
    struct fuzz_session s;
};

static void on_client(void *arg, const uint8_t *p, size_t n)
{
    struct drv *d = arg;

    fuzz_check_client(&d->check, p, n);
}

static void on_server(void *arg, const uint8_t *p, size_t n)
{
    struct drv *d = arg;

    CHECK(!d->yielded && !d->waiting);
    fuzz_check_relayed(&d->check, p, n);
}

static enum relay_verdict on_command(void *arg, const struct relay_command *c, const char **reply)
{
    struct drv *d = arg;

    CHECK(!d->yielded && d->r.state == RELAY_COMMAND);
    CHECK(c->len >= 2 && c->arg <= c->len);
    if (c->verb == SMTP_VERB_STARTTLS && d->yield_starttls) {
        d->yielded = true;
        return RELAY_YIELD;
    }
    if (d->check.require_tls && !d->r.cfg.tls &&
        (c->verb == SMTP_VERB_MAIL || c->verb == SMTP_VERB_RCPT || c->verb == SMTP_VERB_DATA ||
         c->verb == SMTP_VERB_BDAT)) {
        *reply = RELAY_R_NEED_TLS;
        return RELAY_REFUSE;
    }
    return RELAY_PASS;
}

static enum relay_rcpt_verdict on_rcpt(void *arg, const char *domain, const char **reply)
{
    struct drv *d = arg;
    size_t n = strlen(domain);

    CHECK(!d->waiting && n <= 253);
    for (size_t i = 0; i < n; i++)
        CHECK((domain[i] >= 'a' && domain[i] <= 'z') || (domain[i] >= '0' && domain[i] <= '9') ||
              domain[i] == '-' || domain[i] == '.');
    CHECK(n == 0 || (domain[0] != '.' && domain[n - 1] != '.'));
    if (n > 0 && domain[0] >= 'n' && domain[0] <= 'p') {
        *reply = "450 4.7.5 refused\r\n";
        return RELAY_RCPT_REFUSE;
    }
    if (n > 0 && domain[0] >= 'a' && domain[0] <= 'm') {
        d->waiting = true;
        return RELAY_RCPT_WAIT;
    }
    return RELAY_RCPT_PASS;
}

static void on_turn(void *arg)
{
    struct drv *d = arg;

    CHECK(d->yielded && !d->turned);
    CHECK(d->r.state == RELAY_YIELDED);
    CHECK(!relay_awaiting_server(&d->r));
    d->turned = true;
}

static void after_call(struct drv *d, size_t given, size_t consumed)
{
    CHECK(consumed <= given);
    fuzz_check_after(&d->check);
    if (d->r.state == RELAY_CLOSED)
        d->check.closed = true;
    if (d->yielded)
        CHECK(d->r.state == RELAY_YIELDED || d->r.state == RELAY_CLOSED);
}

static size_t client(void *arg, const uint8_t *p, size_t n)
{
    struct drv *d = arg;
    bool yielded = d->yielded;
    size_t c = relay_client(&d->r, p, n);

    after_call(d, n, c);
    if (yielded && d->r.state == RELAY_YIELDED)
        CHECK(c == 0);
    if (d->r.state == RELAY_CLOSED)
        CHECK(c == n);
    if (d->waiting) {
        CHECK(relay_rcpt_waiting(&d->r) || d->r.state == RELAY_CLOSED);
        if (d->r.state != RELAY_CLOSED && !yielded)
            CHECK(c < n);
    }
    /* The user drops the plaintext behind its command (RFC 3207 §4.2). */
    return d->yielded ? n : c;
}

static size_t server(void *arg, const uint8_t *p, size_t n)
{
    struct drv *d = arg;
    size_t c = relay_server(&d->r, p, n);

    after_call(d, n, c);
    if (d->r.state == RELAY_CLOSED)
        CHECK(c == n);
    return c;
}

static bool event(void *arg, uint8_t tag, const uint8_t *rest, size_t n)
{
    struct drv *d = arg;

    switch (tag) {
    case 'T':
        if (d->turned && d->r.state == RELAY_YIELDED) {
            d->yielded = d->turned = false;
            relay_tls_started(&d->r, n > 0 && (rest[0] & 1));
            CHECK(d->r.state == RELAY_COMMAND || d->r.state == RELAY_SKIP);
            CHECK(!d->r.in_txn && d->r.caps == 0 && d->r.cfg.tls);
            fuzz_pump(&d->s);
        }
        return true;
    case 'R':
        if (d->waiting) {
            d->waiting = false;
            relay_rcpt_resume(&d->r, n > 0 && (rest[0] & 1) ? "450 4.7.5 refused\r\n" : NULL);
            CHECK(!relay_rcpt_waiting(&d->r));
            fuzz_pump(&d->s);
        }
        return true;
    case 'E': {
        bool was_closed = d->r.state == RELAY_CLOSED;
        relay_server_eof(&d->r);
        after_call(d, 0, 0);
        CHECK(d->r.state == RELAY_CLOSED);
        CHECK(was_closed || d->r.reason == REASON_BACKEND_CLOSED);
        return true;
    }
    default:
        return false;
    }
}

static struct drv drv;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct drv *d = &drv;
    if (size < 1)
        return 0;
    memset(d, 0, sizeof(*d));
    bool hooked = data[0] & 3;
    d->yield_starttls = data[0] & 1;
    d->check.require_tls = (data[0] >> 1) & 1;
    d->check.lenient = fuzz_lenient();
    d->check.relay = &d->r;
    struct relay_cfg cfg = {
        .tls = (data[0] >> 4) & 1,
        .offer_starttls = d->yield_starttls,
        .reject_bare_newline = (data[0] >> 2) & 1,
        .caps =
            ((data[0] >> 5) & 1) ? SMTP_CAP_CHUNKING | SMTP_CAP_PIPELINING : SMTP_CAP_PIPELINING,
    };
    struct engine_io io = {.arg = d, .to_client = on_client, .to_server = on_server};
    struct relay_hooks hooks = {.arg = d, .command = on_command, .turn = on_turn};
    if (!hooked)
        hooks = (struct relay_hooks){.arg = d};
    if ((data[0] >> 3) & 1)
        hooks.rcpt = on_rcpt;
    relay_init(&d->r, &cfg, &io, &hooks);
    d->s = (struct fuzz_session){.arg = d, .client = client, .server = server, .event = event};
    fuzz_play(&d->s, data + 1, size - 1);
    relay_free(&d->r);
    return 0;
}
