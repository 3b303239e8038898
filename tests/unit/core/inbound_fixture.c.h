/*
 * inbound_fixture.c.h: what the inbound_*_test.c files share: the driver
 * (transcript.c.h) bound to the front end, the proxy's own replies as the
 * client must see them, a legacy backend's greeting and EHLO replies, and
 * the steps most transcripts start with (greet, EHLO, STARTTLS).
 *
 * Included once by each inbound_*_test.c. The helpers are static inline so
 * that a file which does not use one of them still builds with -Werror.
 */
#include "proxy/core/inbound.h"

#define OPS inbound_engine_ops
#define TRANSCRIPT_ENGINE struct inbound
#define TRANSCRIPT_CLIENT(e, p, n) OPS.client(e, p, n)
#define TRANSCRIPT_SERVER(e, p, n) OPS.server(e, p, n)
#define TRANSCRIPT_TAKE_ACTIONS(e) OPS.take_actions(e)
#define TRANSCRIPT_FREE(e) inbound_free(e)
#include "tests/unit/core/transcript.c.h"
#include "tests/unit/core/relay_fixture.c.h"

/* The proxy's own replies, as the client must see them. */
#define R_STARTTLS "220 2.0.0 Ready to start TLS\r\n"
#define R_STARTTLS_ARGS "501 5.5.4 Syntax: STARTTLS takes no arguments\r\n"
#define R_TLS_ACTIVE "503 5.5.1 TLS already active\r\n"
#define R_EHLO_FIRST "503 5.5.1 Send EHLO first\r\n"
#define R_IN_TXN "503 5.5.1 STARTTLS not permitted during a mail transaction\r\n"
#define R_RESERVED "550 5.7.0 Command reserved for the proxy\r\n"
#define R_NOT_IMPL "502 5.5.1 Command not implemented\r\n"
#define R_TOO_LONG "500 5.5.2 Line too long\r\n"
#define R_BARE_NL "500 5.5.2 Bare CR or LF in command not allowed\r\n"

#define GREETING "220 mx.example ESMTP ready\r\n"
/* The client's view of EHLO_REPLY before TLS: STARTTLS the proxy's, AUTH
 * and XCLIENT dropped. */
#define EHLO_REPLY_PLAIN                                                                     \
    "250-mx.example Hello client.example\r\n"                                                \
    "250-STARTTLS\r\n"                                                                       \
    "250-PIPELINING\r\n"                                                                     \
    "250-SIZE 10240000\r\n"                                                                  \
    "250-8BITMIME\r\n"                                                                       \
    "250 ENHANCEDSTATUSCODES\r\n"
#define EHLO_REPLY_CHUNKING                                                                  \
    "250-mx.example\r\n"                                                                     \
    "250-PIPELINING\r\n"                                                                     \
    "250-CHUNKING\r\n"                                                                       \
    "250 8BITMIME\r\n"
#define EHLO_REPLY_CHUNKING_PLAIN                                                            \
    "250-mx.example\r\n"                                                                     \
    "250-STARTTLS\r\n"                                                                       \
    "250-PIPELINING\r\n"                                                                     \
    "250-CHUNKING\r\n"                                                                       \
    "250 8BITMIME\r\n"

/* ---------- the driver (transcript.c.h), inbound's part ---------- */

static inline struct t *start(const struct inbound_cfg *cfg)
{
    static const struct inbound_cfg def = {0};
    struct t *t = alloc_t();

    assert_non_null(t);
    struct engine_io io = transcript_io(t);
    inbound_init(&t->e, cfg ? cfg : &def, &io);
    return t;
}

static inline void tls_ready(struct t *t)
{
    OPS.tls_ready(&t->e);
    collect(t);
    pump(t);
}

static inline void server_eof(struct t *t)
{
    OPS.server_eof(&t->e);
    collect(t);
}

static inline void greet(struct t *t)
{
    server(t, GREETING);
    expect_cli(t, GREETING);
}

/* Greeting and a first EHLO answered by the given backend reply. */
static inline void ehlo_with(struct t *t, const char *reply, const char *shown)
{
    client(t, EHLO);
    expect_srv(t, EHLO);
    expect_cli(t, "");
    server(t, reply);
    expect_cli(t, shown);
}

static inline struct t *session_after_ehlo(const struct inbound_cfg *cfg)
{
    struct t *t = start(cfg);

    greet(t);
    ehlo_with(t, EHLO_REPLY, EHLO_REPLY_PLAIN);
    assert_int_equal(actions(t), 0);
    return t;
}

/* STARTTLS, the handshake, and a fresh EHLO over TLS. */
static inline void upgrade(struct t *t)
{
    client(t, "STARTTLS\r\n");
    expect_cli(t, R_STARTTLS);
    expect_srv(t, "");
    assert_int_equal(actions(t), ENGINE_ACT_START_TLS_CLIENT);
    assert_int_equal(t->e.state, INBOUND_HANDSHAKE);
    tls_ready(t);
    ehlo_with(t, EHLO_REPLY, EHLO_REPLY_TLS);
}
