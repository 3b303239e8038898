/*
 * Fuzz target for proxy/core/inbound.c: a whole session driven by
 * fuzz-chosen, interleaved client and server chunks. Input layout:
 *   byte 0   configuration: bit 0 implicit_tls, 1 require_tls,
 *            2 reject_bare_newline (bits 3-5, once relay mode, are unused:
 *            relay_fuzz drives the relay on its own)
 *   then     segments (fuzz_session.h); events: 'T' the client's TLS
 *            handshake completes (only after START_TLS_CLIENT), 'F' it
 *            fails, 'E' the server closes, 'A' abort, 'D' the deadline.
 * The driver behaves like the session: unconsumed bytes are kept and
 * offered again after every step.
 *
 * Invariants (abort on violation), beyond fuzz_session.h's:
 *   - consumed <= given; in STARTTLS, HANDSHAKE and CLOSED all is consumed
 *     (kept plaintext would be replayed after the handshake);
 *   - no byte reaches the server before the greeting, between an accepted
 *     STARTTLS and tls_ready, nor after close;
 *   - START_TLS_CLIENT comes right after the 220 with no reply owed;
 *   - CLOSE comes with a reason, and only once.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proxy/core/inbound.h"
#include "tests/fuzz/fuzz_session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OPS inbound_engine_ops
#define STARTTLS_REPLY "220 2.0.0 Ready to start TLS\r\n"

struct drv {
    struct inbound e;
    struct inbound_cfg cfg;
    bool tls_pending; /* START_TLS raised, handshake not done */
    struct fuzz_check check;
    struct fuzz_session s;
};

static void on_client(void *arg, const uint8_t *p, size_t n)
{
    struct drv *d = arg;

    CHECK(d->e.state != INBOUND_CLOSED);
    fuzz_check_client(&d->check, p, n);
}

static void on_server(void *arg, const uint8_t *p, size_t n)
{
    struct drv *d = arg;

    CHECK(!d->tls_pending);
    CHECK(d->e.state == INBOUND_RELAY);
    fuzz_check_relayed(&d->check, p, n);
}

static void after_call(struct drv *d, bool from_client, size_t given, size_t consumed)
{
    CHECK(consumed <= given);
    fuzz_check_after(&d->check);

    unsigned a = OPS.take_actions(&d->e);
    CHECK((a & ~(unsigned)(ENGINE_ACT_START_TLS_CLIENT | ENGINE_ACT_CLOSE)) == 0);
    if (a & ENGINE_ACT_START_TLS_CLIENT) {
        CHECK(!d->e.tls_active && !d->tls_pending);
        CHECK(!d->check.closed);
        CHECK(d->e.state == INBOUND_HANDSHAKE || d->e.state == INBOUND_CLOSED);
        /* The 220 is the last thing written, unless the same call also
         * closed the session (a server talking out of turn behind the reply
         * before STARTTLS): then the close wins and no handshake starts. */
        if (!(a & ENGINE_ACT_CLOSE))
            CHECK(fuzz_check_tail_is(&d->check, STARTTLS_REPLY));
        CHECK(!OPS.awaiting_server(&d->e));
        d->tls_pending = true;
        /* From here on the client leg carries TLS: no plaintext may be
         * left over for the session to offer again after the handshake. */
        if (from_client)
            CHECK(consumed == given);
        else
            CHECK(d->s.ncpend == 0);
    }
    if (a & ENGINE_ACT_CLOSE) {
        CHECK(!d->check.closed);
        CHECK(d->e.state == INBOUND_CLOSED && OPS.reason(&d->e) != REASON_NONE);
        d->check.closed = true;
    }
    if (d->e.state == INBOUND_CLOSED)
        CHECK(d->check.closed);
}

static size_t client(void *arg, const uint8_t *p, size_t n)
{
    struct drv *d = arg;
    enum inbound_state before = d->e.state;
    size_t c = OPS.client(&d->e, p, n);

    after_call(d, true, n, c);
    if (before == INBOUND_STARTTLS || before == INBOUND_HANDSHAKE ||
        before == INBOUND_CLOSED || d->e.state == INBOUND_STARTTLS ||
        d->e.state == INBOUND_HANDSHAKE || d->e.state == INBOUND_CLOSED)
        CHECK(c == n);
    return c;
}

static size_t server(void *arg, const uint8_t *p, size_t n)
{
    struct drv *d = arg;
    size_t c = OPS.server(&d->e, p, n);

    after_call(d, false, n, c);
    if (d->e.state == INBOUND_CLOSED)
        CHECK(c == n);
    return c;
}

static bool event(void *arg, uint8_t tag, const uint8_t *rest, size_t n)
{
    struct drv *d = arg;

    (void)rest, (void)n;
    switch (tag) {
    case 'T':
        if (d->tls_pending) {
            d->tls_pending = false;
            OPS.tls_ready(&d->e);
            after_call(d, false, 0, 0);
            fuzz_pump(&d->s);
        }
        return true;
    case 'F':
        if (d->tls_pending) {
            d->tls_pending = false;
            OPS.tls_failed(&d->e, ENGINE_TLS_HANDSHAKE, "fuzz");
            after_call(d, false, 0, 0);
            CHECK(d->check.closed);
        }
        return true;
    case 'E':
        OPS.server_eof(&d->e);
        after_call(d, false, 0, 0);
        CHECK(d->check.closed);
        return true;
    case 'A':
        OPS.abort(&d->e, "421 4.3.2 Shutting down\r\n", REASON_SHUTDOWN);
        after_call(d, false, 0, 0);
        CHECK(d->check.closed);
        return true;
    case 'D':
        if (!d->tls_pending) {
            OPS.deadline(&d->e);
            after_call(d, false, 0, 0);
            CHECK(d->check.closed);
        }
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
    d->cfg.implicit_tls = data[0] & 1;
    d->cfg.require_tls = (data[0] >> 1) & 1;
    d->cfg.reject_bare_newline = (data[0] >> 2) & 1;
    d->check.lenient = fuzz_lenient();
    d->check.require_tls = d->cfg.require_tls;
    d->check.relay = &d->e.relay;
    d->s = (struct fuzz_session){.arg = d, .client = client, .server = server, .event = event};
    struct engine_io io = {.arg = d, .to_client = on_client, .to_server = on_server};
    inbound_init(&d->e, &d->cfg, &io);
    if (d->cfg.implicit_tls) {
        /* The handshake completes before the backend is dialled. */
        OPS.tls_ready(&d->e);
        after_call(d, false, 0, 0);
    }
    fuzz_play(&d->s, data + 1, size - 1);
    inbound_free(&d->e);
    return 0;
}
