/*
 * Fuzz target for proxy/core/outbound.c: a whole outbound session, the
 * negotiation and the relay phase, driven through outbound_engine_ops by
 * fuzz-chosen, interleaved client and server chunks and TLS events. Input:
 *   byte 0   configuration: bits 0-1 policy (none, opportunistic,
 *            required, verify), bit 2 reject_bare_newline, bit 3 policy
 *            dane instead, bit 4 dane_audit (DANE with enforce = false)
 *   then     segments (fuzz_session.h); events: 'T' the server leg's
 *            handshake completes (only after START_TLS_SERVER), 'F' it
 *            fails (the next byte picks the engine_tls_failure), 'R' the
 *            new connection is up (only after RECONNECT), 'D' the
 *            deadline, 'E' the destination closes, 'A' abort.
 *
 * Invariants (abort on violation), beyond fuzz_session.h's (which apply
 * in the relay phase):
 *   - consumed <= given; in CLOSED all is consumed;
 *   - before the relay phase only the proxy's EHLO, HELO and STARTTLS lines
 *     reach the destination, well-formed; STARTTLS never under policy none,
 *     never twice on a connection, never after a fallback;
 *   - nothing reaches the destination during the handshake, while a new
 *     connection is awaited, or after close;
 *   - under required, verify and dane nothing is relayed unless the server
 *     leg is TLS; a refusal is logged (dane_audit) only then, and only once;
 *   - actions fit the policy: START_TLS_SERVER only from STARTTLS with the
 *     handshake next, RECONNECT only under opportunistic, CLOSE once and
 *     with a reason.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proxy/core/outbound.h"
#include "tests/fuzz/fuzz_session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OPS outbound_engine_ops

struct drv {
    struct outbound o;
    enum outbound_policy policy;
    bool tls_pending;       /* START_TLS_SERVER raised, handshake not done */
    bool reconnect_pending; /* RECONNECT raised, not yet reconnected */
    bool fell_back;         /* a plaintext reconnection happened */
    bool starttls_sent;     /* on this connection */
    bool logged;            /* on_refusal_logged was called */
    uint8_t line[512];      /* a negotiation line being written */
    size_t nline;
    struct fuzz_check check;
    struct fuzz_session s;
};

static bool strict(const struct drv *d)
{
    return d->policy == OUTBOUND_REQUIRED || d->policy == OUTBOUND_VERIFY ||
           d->policy == OUTBOUND_DANE;
}

static void on_refusal_logged(void *arg, const char *why)
{
    struct drv *d = arg;

    CHECK(d->o.cfg.dane_audit && why != NULL && !d->logged);
    CHECK(!d->o.server_tls && !strict(d));
    d->logged = true;
}

static void on_client(void *arg, const uint8_t *p, size_t n)
{
    struct drv *d = arg;

    fuzz_check_client(&d->check, p, n);
}

static bool starts_with(const uint8_t *p, size_t n, const char *s)
{
    size_t k = strlen(s);

    return n >= k && memcmp(p, s, k) == 0;
}

/* A line of the proxy's own during the negotiation. */
static void check_negotiation_line(struct drv *d, const uint8_t *p, size_t n)
{
    CHECK(n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n');
    CHECK(memchr(p, '\r', n - 2) == NULL && memchr(p, '\n', n - 2) == NULL);
    CHECK(n <= SMTP_CMD_LINE_MAX);
    if (n == 10 && memcmp(p, "STARTTLS\r\n", 10) == 0) {
        CHECK(d->policy != OUTBOUND_NONE);
        CHECK(!d->starttls_sent && !d->fell_back && !d->o.server_tls);
        d->starttls_sent = true;
        return;
    }
    CHECK(starts_with(p, n, "EHLO") || starts_with(p, n, "HELO"));
    CHECK(n == 6 || p[4] == ' ');
}

static void on_server(void *arg, const uint8_t *p, size_t n)
{
    struct drv *d = arg;

    CHECK(n > 0);
    CHECK(!d->check.closed && !d->tls_pending && !d->reconnect_pending);
    if (d->o.state != OUTBOUND_RELAY) {
        /* Check each line whole, however it is written. */
        CHECK(d->nline + n <= sizeof(d->line));
        memcpy(d->line + d->nline, p, n);
        d->nline += n;
        if (d->line[d->nline - 1] != '\n')
            return;
        check_negotiation_line(d, d->line, d->nline);
        d->nline = 0;
        return;
    }
    CHECK(d->nline == 0);
    CHECK(!strict(d) || d->o.server_tls);
    fuzz_check_relayed(&d->check, p, n);
}

static void after_call(struct drv *d, bool from_client, size_t given, size_t consumed)
{
    CHECK(consumed <= given);
    if (d->o.state == OUTBOUND_RELAY)
        d->check.relay = &d->o.relay;
    fuzz_check_after(&d->check);

    unsigned a = OPS.take_actions(&d->o);
    CHECK((a & ~(unsigned)(ENGINE_ACT_START_TLS_SERVER | ENGINE_ACT_RECONNECT |
                           ENGINE_ACT_CLOSE)) == 0);
    if (a & ENGINE_ACT_START_TLS_SERVER) {
        CHECK(!from_client && consumed == given);
        CHECK(d->starttls_sent && !d->tls_pending && !d->o.server_tls);
        CHECK(d->o.state == OUTBOUND_HANDSHAKE);
        d->tls_pending = true;
    }
    if (a & ENGINE_ACT_RECONNECT) {
        CHECK(d->policy == OUTBOUND_OPPORTUNISTIC && !d->fell_back);
        CHECK(d->o.state == OUTBOUND_RECONNECT);
        d->tls_pending = false;
        d->reconnect_pending = true; /* the old server leg is dropped */
    }
    if (a & ENGINE_ACT_CLOSE) {
        CHECK(!d->check.closed);
        CHECK(d->o.state == OUTBOUND_CLOSED && OPS.reason(&d->o) != REASON_NONE);
        d->check.closed = true;
    }
    if (d->o.state == OUTBOUND_CLOSED)
        CHECK(d->check.closed);
    if (d->o.state == OUTBOUND_RELAY && strict(d))
        CHECK(d->o.server_tls);
}

static size_t client(void *arg, const uint8_t *p, size_t n)
{
    struct drv *d = arg;
    size_t c = OPS.client(&d->o, p, n);

    after_call(d, true, n, c);
    if (d->o.state == OUTBOUND_CLOSED)
        CHECK(c == n);
    return c;
}

static size_t server(void *arg, const uint8_t *p, size_t n)
{
    struct drv *d = arg;

    if (d->tls_pending || d->reconnect_pending)
        return n; /* no plaintext leg to read from meanwhile */
    size_t c = OPS.server(&d->o, p, n);
    after_call(d, false, n, c);
    if (d->o.state == OUTBOUND_CLOSED)
        CHECK(c == n);
    return c;
}

static bool event(void *arg, uint8_t tag, const uint8_t *rest, size_t n)
{
    struct drv *d = arg;

    switch (tag) {
    case 'T':
        if (d->tls_pending) {
            d->tls_pending = false;
            OPS.tls_ready(&d->o);
            CHECK(d->o.server_tls || d->check.closed); /* ignored once closed */
            after_call(d, false, 0, 0);
            fuzz_pump(&d->s);
        }
        return true;
    case 'F':
        if (d->tls_pending) {
            d->tls_pending = false;
            OPS.tls_failed(&d->o, (enum engine_tls_failure)(n > 0 ? rest[0] % 4 : 0), "fuzz");
            after_call(d, false, 0, 0);
            CHECK(d->check.closed || d->reconnect_pending);
        }
        return true;
    case 'R':
        if (d->reconnect_pending) {
            d->reconnect_pending = false;
            d->fell_back = true;
            d->starttls_sent = false;
            OPS.reconnected(&d->o);
            after_call(d, false, 0, 0);
            fuzz_pump(&d->s);
        }
        return true;
    case 'D':
        if (!d->reconnect_pending && !d->check.closed) {
            OPS.deadline(&d->o);
            d->tls_pending = false;
            after_call(d, false, 0, 0);
            CHECK(d->check.closed || d->reconnect_pending);
        }
        return true;
    case 'E':
        if (!d->reconnect_pending) {
            OPS.server_eof(&d->o);
            d->tls_pending = false;
            after_call(d, false, 0, 0);
            CHECK(d->check.closed || d->reconnect_pending);
        }
        return true;
    case 'A':
        OPS.abort(&d->o, "421 4.3.2 Shutting down\r\n", REASON_SHUTDOWN);
        after_call(d, false, 0, 0);
        CHECK(d->check.closed);
        return true;
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
    d->policy = (data[0] >> 3) & 1 ? OUTBOUND_DANE : (enum outbound_policy)(data[0] & 3);
    d->check.lenient = fuzz_lenient();
    struct outbound_cfg cfg = {.policy = d->policy,
                               .reject_bare_newline = (data[0] >> 2) & 1,
                               .dane_audit = (data[0] >> 4) & 1};
    struct engine_io io = {.arg = d,
                           .to_client = on_client,
                           .to_server = on_server,
                           .on_refusal_logged = on_refusal_logged};
    outbound_init(&d->o, &cfg, &io);
    d->s = (struct fuzz_session){.arg = d, .client = client, .server = server, .event = event};
    fuzz_play(&d->s, data + 1, size - 1);
    relay_free(&d->o.relay); /* what the relay allocated for this input */
    return 0;
}
