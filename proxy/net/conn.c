/*
 * One TCP leg; see conn.h. libuv handle memory lives inside struct conn and
 * is released only after on_close, which is when the owner may free it.
 */
#include "proxy/net/conn.h"

#include <unistd.h>

#include <stdlib.h>
#include <string.h>


/* One read slab and one plaintext slab per event-loop thread: a read is
 * processed to completion before the next one, so they are never shared. */
static _Thread_local uint8_t read_slab[CONN_SLAB];
static _Thread_local uint8_t plain_slab[CONN_SLAB];

/* The lending window of this thread (conn_lend_begin): the leg whose
 * output may refer to the owner's input instead of copying it, that input,
 * and the spans of it queued so far, all ahead of the leg's `out`. Per
 * thread rather than per conn, so an idle leg carries none of it. */
#define LEND_SPANS 8
static _Thread_local struct {
    struct conn *c;
    const uint8_t *lo, *hi;
    unsigned n;
    size_t bytes;
    uv_buf_t span[LEND_SPANS];
} lend;

/* The most plaintext one TLS record carries (RFC 8446 §5.1). */
#define RECORD_MAX 16384

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)h;
    (void)hint;
    b->base = (char *)read_slab;
    b->len = sizeof(read_slab);
}

static void fail_write(struct conn *c, int err);

static bool input_full(const struct conn *c)
{
    return buf_len(&c->in) >= CONN_IN_CAP;
}

/* Offers plaintext to the owner; keeps what it leaves. */
static void deliver(struct conn *c, const uint8_t *p, size_t n)
{
    if (buf_len(&c->in) > 0) {
        if (buf_append(&c->in, p, n) != 0) {
            c->cb->on_eof(c, UV_ENOMEM);
            return;
        }
        size_t used = c->cb->on_data(c, buf_head(&c->in), buf_len(&c->in));
        if (!c->closing)
            buf_consume(&c->in, used);
    } else {
        size_t used = c->cb->on_data(c, p, n);
        if (!c->closing && used < n && buf_append(&c->in, p + used, n - used) != 0)
            c->cb->on_eof(c, UV_ENOMEM);
    }
    if (!c->closing && input_full(c) && c->reading) {
        /* The owner cannot take more now (e.g. bytes behind DATA while its
         * reply is awaited): stop reading; conn_resume() restarts. */
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

/* Runs the handshake and decrypts whatever TLS can give now. */
static void pump_tls(struct conn *c)
{
    if (!c->tls_ready) {
        int rc = tls_handshake(c->tls);
        conn_flush(c);
        if (rc == TLS_AGAIN || c->closing)
            return;
        if (rc != TLS_OK) {
            c->cb->on_tls_error(c, tls_error(c->tls));
            return;
        }
        c->tls_ready = true;
        c->cb->on_tls_ready(c);
        if (c->closing)
            return;
        conn_flush(c);
    }
    while (!c->closing && !input_full(c) && c->reading) {
        /* Decrypt every record the last read completed, up to a slab, and
         * deliver them at once: the owner then writes the other leg once
         * per read instead of once per 16 KiB record. While the owner holds
         * unconsumed input, take no more than the cap leaves room for (at
         * least one record, as before). A status that ends the batch is
         * handled after the bytes before it have been delivered, and only
         * if the owner still reads; otherwise it is kept for conn_resume. */
        size_t room = sizeof(plain_slab), n = 0;
        if (buf_len(&c->in) > 0 && CONN_IN_CAP - buf_len(&c->in) < room)
            room = CONN_IN_CAP - buf_len(&c->in) < RECORD_MAX ? RECORD_MAX
                                                               : CONN_IN_CAP - buf_len(&c->in);
        int rc = c->held;
        c->held = TLS_OK;
        while (rc == TLS_OK && n < room) {
            size_t k = 0;
            rc = tls_read(c->tls, plain_slab + n, room - n, &k);
            n += k;
            if (rc == TLS_OK && k == 0)
                rc = TLS_AGAIN;
        }
        if (n > 0) {
            deliver(c, plain_slab, n);
            if (rc == TLS_OK)
                continue; /* the slab filled up: there may be more */
            if (c->closing || input_full(c) || !c->reading) {
                if (rc != TLS_AGAIN)
                    c->held = rc;
                break;
            }
        }
        if (rc == TLS_AGAIN || rc == TLS_OK)
            break;
        if (rc == TLS_CLOSED) {
            c->eof = true;
            c->cb->on_eof(c, UV_EOF);
        } else {
            c->cb->on_tls_error(c, tls_error(c->tls));
        }
        return;
    }
    if (!c->closing)
        conn_flush(c); /* TLS may owe the peer something (tickets, alerts) */
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct conn *c = s->data;

    if (c->closing)
        return;
    if (nread < 0) {
        c->eof = true;
        uv_read_stop(s);
        c->cb->on_eof(c, (int)nread);
        return;
    }
    if (nread == 0)
        return;
    c->bytes_read += (uint64_t)nread;
    if (c->tls != NULL) {
        /* BoringSSL reads the slab in place; only the tail of a record it
         * could not finish yet is copied, to be completed by the next read. */
        struct tls *t = c->tls;
        tls_lend(t, (const uint8_t *)b->base, (size_t)nread);
        pump_tls(c);
        if (tls_unlend(t) != 0 && !c->closing)
            c->cb->on_eof(c, UV_ENOMEM);
    } else {
        deliver(c, (const uint8_t *)b->base, (size_t)nread);
    }
}

int conn_init(struct conn *c, uv_loop_t *loop, const struct conn_cb *cb, void *owner)
{
    if (lend.c == c)
        conn_lend_end(c);
    memset(c, 0, sizeof(*c));
    c->cb = cb;
    c->owner = owner;
    int rc = uv_tcp_init(loop, &c->tcp);
    if (rc != 0)
        return rc;
    c->tcp.data = c;
    c->open = true;
    return 0;
}

int conn_open(struct conn *c, int fd)
{
    int rc = uv_tcp_open(&c->tcp, fd);

    if (rc != 0) {
        close(fd);
        return rc;
    }
    c->connected = true;
    uv_tcp_nodelay(&c->tcp, 1);
    return 0;
}

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->data;

    free(req);
    c->creq = NULL;
    if (c->closing)
        return;
    if (status == 0) {
        c->connected = true;
        uv_tcp_nodelay(&c->tcp, 1);
    }
    c->cb->on_connect(c, status);
}

int conn_connect(struct conn *c, const struct sockaddr *sa)
{
    uv_connect_t *req = malloc(sizeof(*req));
    if (req == NULL)
        return UV_ENOMEM;
    req->data = c;
    int rc = uv_tcp_connect(req, &c->tcp, sa, on_connect);
    if (rc != 0) {
        free(req);
        return rc;
    }
    c->creq = req;
    return 0;
}

void conn_resume(struct conn *c)
{
    if (c->closing || !c->connected)
        return;
    c->reading = true;
    if (buf_len(&c->in) > 0) {
        size_t used = c->cb->on_data(c, buf_head(&c->in), buf_len(&c->in));
        if (c->closing)
            return;
        buf_consume(&c->in, used);
    }
    if (c->tls != NULL && c->tls_ready)
        pump_tls(c);
    if (!c->closing && !c->eof && c->reading && !input_full(c))
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

void conn_pause(struct conn *c)
{
    if (c->reading && !c->closing)
        uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
}

/* Borrowed spans of the window become copies in c->out (they are ahead of
 * anything in it, which is therefore empty). */
static void lend_copy(struct conn *c)
{
    unsigned n = lend.n;

    lend.n = 0;
    lend.bytes = 0;
    for (unsigned k = 0; k < n; k++) {
        if (buf_append(&c->out, lend.span[k].base, lend.span[k].len) != 0) {
            c->cb->on_eof(c, UV_ENOMEM);
            return;
        }
    }
}

/* Keeps p by reference if the window allows; false if it must be copied. */
static bool lend_take(struct conn *c, const uint8_t *p, size_t n)
{
    if (p < lend.lo || p > lend.hi || n > (size_t)(lend.hi - p) || buf_len(&c->out) > 0 ||
        c->writing || n > UINT32_MAX - lend.bytes)
        return false;
    uv_buf_t *last = lend.n > 0 ? &lend.span[lend.n - 1] : NULL;
    if (last != NULL && (const uint8_t *)last->base + last->len == p) {
        last->len += n; /* the next bytes of the same input */
    } else if (lend.n < LEND_SPANS) {
        lend.span[lend.n++] = uv_buf_init((char *)p, (unsigned)n);
    } else {
        return false;
    }
    lend.bytes += n;
    return true;
}

void conn_emit(struct conn *c, const uint8_t *p, size_t n)
{
    if (!c->open || n == 0)
        return;
    if (lend.c == c) {
        if (lend_take(c, p, n))
            return;
        lend_copy(c); /* what was lent goes first */
    }
    if (buf_append(&c->out, p, n) != 0)
        c->cb->on_eof(c, UV_ENOMEM);
}

/* p, n lie in one of this thread's slabs. */
static bool in_slab(const uint8_t *p, size_t n)
{
    uintptr_t a = (uintptr_t)p, r = (uintptr_t)read_slab, q = (uintptr_t)plain_slab;

    return (a >= r && a - r <= sizeof(read_slab) && n <= sizeof(read_slab) - (a - r)) ||
           (a >= q && a - q <= sizeof(plain_slab) && n <= sizeof(plain_slab) - (a - q));
}

bool conn_lend_begin(struct conn *out, const uint8_t *p, size_t n)
{
    /* Only from the slabs: they are neither freed nor refilled while a
     * delivery is processed, where input kept in a leg's `in` may be
     * released inside it (conn_discard_input at STARTTLS). */
    if (lend.c != NULL || out->tls != NULL || !in_slab(p, n))
        return false;
    lend.c = out;
    lend.lo = p;
    lend.hi = p + n;
    lend.n = 0;
    lend.bytes = 0;
    return true;
}

void conn_lend_end(struct conn *out)
{
    if (lend.c != out)
        return;
    if (lend.n > 0 && out->open && !out->closing)
        lend_copy(out);
    lend.c = NULL;
    lend.n = 0;
    lend.bytes = 0;
}

/* Writes what the window lent, straight from the owner's input: one
 * writev for all spans; the kernel's unsent tail is copied into c->out. */
static int lend_flush(struct conn *c)
{
    int w = uv_try_write((uv_stream_t *)&c->tcp, lend.span, lend.n);

    if (w < 0 && w != UV_EAGAIN) {
        lend.n = 0;
        lend.bytes = 0;
        fail_write(c, w);
        return w;
    }
    size_t done = w > 0 ? (size_t)w : 0;
    c->bytes_written += done;
    for (unsigned k = 0; k < lend.n; k++) {
        size_t skip = done < lend.span[k].len ? done : lend.span[k].len;
        done -= skip;
        lend.span[k].base += skip;
        lend.span[k].len -= skip;
    }
    lend_copy(c);
    return 0;
}

size_t conn_backlog(const struct conn *c)
{
    size_t n = buf_len(&c->out) + buf_len(&c->inflight);
    if (lend.c == c)
        n += lend.bytes;
    if (c->tls != NULL)
        n += buf_len(tls_out(c->tls));
    return n;
}

/* A write failed: nothing more reaches the peer. Reported once, and even
 * after a read EOF: a peer that half-closed and then went away entirely
 * must not leave the owner waiting for a drain that never comes. */
static void fail_write(struct conn *c, int err)
{
    bool first = !c->write_failed;

    c->eof = true;
    c->write_failed = true;
    if (first)
        c->cb->on_eof(c, err);
}

static void on_write(uv_write_t *req, int status)
{
    struct conn *c = req->data;

    free(req);
    c->wreq = NULL;
    c->writing = false;
    c->bytes_written += buf_len(&c->inflight);
    buf_free(&c->inflight);
    if (status != 0) {
        fail_write(c, status);
        return;
    }
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    conn_flush(c);
    if (conn_backlog(c) < CONN_LOW_WATER)
        c->cb->on_drain(c);
}

int conn_flush(struct conn *c)
{
    if (!c->connected || c->writing || !c->open || uv_is_closing((uv_handle_t *)&c->tcp))
        return 0;
    struct buf *src = &c->out;
    if (lend.c == c && lend.n > 0) {
        int rc = lend_flush(c);
        if (rc != 0)
            return rc;
    }
    if (c->tls != NULL) {
        if (c->tls_ready && buf_len(&c->out) > 0) {
            /* One TLS write per flush: records are filled up to 16 KiB
             * rather than one per emitted line. */
            if (tls_write(c->tls, buf_head(&c->out), buf_len(&c->out)) != TLS_OK) {
                c->cb->on_tls_error(c, tls_error(c->tls));
                return UV_EPROTO;
            }
            buf_free(&c->out);
        }
        src = tls_out(c->tls);
    }
    if (buf_len(src) == 0)
        return 0;
    uv_buf_t b = uv_buf_init((char *)buf_head(src), (unsigned)buf_len(src));
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n < 0 && n != UV_EAGAIN) {
        buf_free(src); /* it can never be written */
        fail_write(c, n);
        return n;
    }
    if (n > 0) {
        c->bytes_written += (uint64_t)n;
        buf_consume(src, (size_t)n);
    }
    if (buf_len(src) == 0)
        return 0;
    /* The kernel took part of it: the rest must stay put until write_cb. */
    buf_move(&c->inflight, src);
    b = uv_buf_init((char *)buf_head(&c->inflight), (unsigned)buf_len(&c->inflight));
    uv_write_t *req = malloc(sizeof(*req));
    int rc = UV_ENOMEM;
    if (req != NULL) {
        req->data = c;
        rc = uv_write(req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    }
    if (rc != 0) {
        free(req);
        buf_free(&c->inflight);
        fail_write(c, rc);
        return rc;
    }
    c->wreq = req;
    c->writing = true;
    return 0;
}

void conn_discard_input(struct conn *c)
{
    buf_free(&c->in);
}

void conn_start_tls(struct conn *c, struct tls *t)
{
    if (lend.c == c) {
        /* Lent bytes were emitted before TLS: they go through it from
         * `out`, as they would have without the window. */
        lend_copy(c);
        lend.c = NULL;
    }
    c->tls = t;
    c->tls_ready = false;
}

void conn_handshake(struct conn *c)
{
    if (c->tls != NULL && !c->tls_ready && !c->closing) {
        c->reading = true;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        pump_tls(c);
    }
}

void conn_tls_shutdown(struct conn *c)
{
    if (c->tls != NULL && c->tls_ready && !c->eof) {
        tls_shutdown(c->tls);
        conn_flush(c);
    }
}

static void on_close(uv_handle_t *h)
{
    struct conn *c = h->data;

    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->inflight);
    tls_free(c->tls);
    c->tls = NULL;
    c->open = false;
    c->cb->on_close(c);
}

void conn_close(struct conn *c)
{
    if (!c->open || c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_close);
}
