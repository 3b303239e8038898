/*
 * Fuzz target for the server side of proxy/tls: arbitrary bytes as a
 * client's ClientHello and the rest of its TLS stream, into a server
 * engine (tls_new_server) via tls_feed + tls_handshake, then tls_read and
 * tls_write once the handshake is done. The contexts are made once and kept
 * across runs, as the daemon keeps them across sessions. Input layout:
 *   byte 0   bits 0-1 the context: 0 the in-memory self-signed certificate,
 *            1 the same with TLS 1.3 minimum, 2-3 RSA and ECDSA side by side
 *            (tests/unit/tls/testdata: certificate choice from the
 *            ClientHello; the self-signed one if those cannot be read)
 *   byte 1   seed for how the stream is cut into feeds
 *   rest     what the client sends
 * BoringSSL itself is Debian's build, not instrumented: coverage guides
 * only through our code (tls.c, and the ClientHello parsing of
 * certificate choice in tls_ctx.c). Invariants (abort on violation):
 *   - every status is one the header names, and TLS_ERR comes with a
 *     reason; after TLS_ERR or TLS_CLOSED nothing more is fed;
 *   - once the handshake is done, version and cipher are named;
 *   - ciphertext out is drained after every call and never unbounded.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "proxy/core/buf.h"
#include "proxy/tls/tls.h"
#include "tests/fuzz/fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TD "tests/unit/tls/testdata/"
#define OUT_MAX (1u << 20)

static struct tls_ctx *ctxs[3];

static struct tls_ctx *make_ctx(int which)
{
    char *certs[2] = {TD "server-rsa.pem", TD "server-ecdsa.pem"};
    char *keys[2] = {TD "server-rsa.key", TD "server-ecdsa.key"};
    struct tls_options o;
    char err[512] = "";

    memset(&o, 0, sizeof(o));
    o.min_version = which == 1 ? 13 : 12;
    if (which == 2) {
        o.certificates = certs;
        o.keys = keys;
        o.ncertificates = o.nkeys = 2;
    }
    struct tls_ctx *c = tls_ctx_server_new(&o, err, sizeof(err));
    if (c == NULL && which == 2) {
        fprintf(stderr, "tls_fuzz: %s; using the self-signed certificate\n", err);
        return make_ctx(0);
    }
    if (c == NULL)
        fprintf(stderr, "tls_fuzz: %s\n", err);
    CHECK(c != NULL);
    return c;
}

static struct tls_ctx *ctx(int which)
{
    if (ctxs[which] == NULL)
        ctxs[which] = make_ctx(which);
    return ctxs[which];
}

static void drain(struct tls *t)
{
    struct buf *out = tls_out(t);

    CHECK(out != NULL && buf_len(out) <= OUT_MAX);
    buf_consume(out, buf_len(out));
}

static bool status_ok(int rc)
{
    return rc == TLS_OK || rc == TLS_AGAIN || rc == TLS_CLOSED || rc == TLS_ERR;
}

/* After the handshake: read what there is, answer once. False when the
 * engine is finished (closed or failed). */
static bool exchange(struct tls *t, bool *answered)
{
    uint8_t plain[4096];

    for (;;) {
        size_t n = 12345;
        int rc = tls_read(t, plain, sizeof(plain), &n);
        drain(t);
        CHECK(status_ok(rc));
        if (rc == TLS_OK) {
            CHECK(n > 0 && n <= sizeof(plain));
            if (!*answered) {
                static const uint8_t reply[] = "250 ok\r\n";
                *answered = true;
                int w = tls_write(t, reply, sizeof(reply) - 1);
                CHECK(w == TLS_OK || w == TLS_ERR);
                drain(t);
                if (w == TLS_ERR)
                    return false;
            }
            continue;
        }
        if (rc == TLS_AGAIN) {
            CHECK(n == 0);
            return true;
        }
        if (rc == TLS_ERR)
            CHECK(tls_error(t) != NULL && tls_error(t)[0] != '\0');
        return false;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int which = data[0] & 3;
    uint32_t seed = data[1] | 1u;
    struct tls *t = tls_new_server(ctx(which > 2 ? 2 : which));
    bool done = false, answered = false, alive = true;

    CHECK(t != NULL);
    CHECK(tls_version(t) == NULL || tls_version(t)[0] != '\0');
    data += 2;
    size -= 2;
    while (size > 0 && alive) {
        /* Feeds of 1 to 256 bytes, or everything at once (seed 0xff). */
        seed = seed * 1103515245u + 12345u;
        size_t n = (data[-1] == 0xff) ? size : 1 + ((seed >> 16) & 0xff);
        if (n > size)
            n = size;
        CHECK(tls_feed(t, data, n) == 0);
        data += n;
        size -= n;
        if (!done) {
            int rc = tls_handshake(t);
            drain(t);
            CHECK(rc == TLS_OK || rc == TLS_AGAIN || rc == TLS_ERR);
            if (rc == TLS_ERR) {
                CHECK(tls_error(t) != NULL && tls_error(t)[0] != '\0');
                alive = false;
                break;
            }
            if (rc == TLS_AGAIN)
                continue;
            done = true;
            CHECK(tls_version(t) != NULL && tls_cipher(t) != NULL);
            (void)tls_sni(t);
        }
        alive = exchange(t, &answered);
    }
    if (alive && done) {
        tls_shutdown(t);
        drain(t);
    }
    tls_free(t);
    return 0;
}
