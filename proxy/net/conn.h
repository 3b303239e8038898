/*
 * conn: one TCP leg of a session. A libuv TCP handle, an optional TLS
 * engine, and the buffers between them:
 *   in   plaintext the owner has not consumed yet (a partial line, or bytes
 *        held while a reply is awaited) — capped: when full, reading stops;
 *   out  plaintext emitted for the peer, encrypted (if TLS) and written at
 *        the next conn_flush();
 *   inflight  bytes of the one uv_write in progress.
 * Reads land in a per-thread slab (no allocation per read) and are handed to
 * the owner in place; only what the owner leaves behind is copied into `in`.
 * Writes try uv_try_write first; only the remainder is kept for uv_write.
 * Inside a lending window (conn_lend_begin) emitted bytes of the owner's
 * input are written from where they are, and only the unsent tail copied.
 * All buffers are empty, hence unallocated, on an idle connection.
 */
#ifndef SMTP_TLS_PROXY_CONN_H
#define SMTP_TLS_PROXY_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "proxy/core/buf.h"
#include "proxy/tls/tls.h"

/* When the bytes queued towards a peer pass CONN_HIGH_WATER the source leg
 * stops reading; it resumes once they fall under CONN_LOW_WATER. */
#define CONN_HIGH_WATER (256 * 1024)
#define CONN_LOW_WATER (64 * 1024)
/* Unconsumed input kept at most (a command line is far shorter; this is
 * what a client may pipeline behind a DATA while its reply is awaited). */
#define CONN_IN_CAP (96 * 1024) /* > the longest PROXY v2 header, 16 + 65535 */
#define CONN_SLAB (64 * 1024)

struct conn;

/* What a leg tells its owner. None of these may free the conn; closing is
 * asynchronous (on_close). */
struct conn_cb {
    /* Plaintext arrived; returns how much was consumed. */
    size_t (*on_data)(struct conn *c, const uint8_t *p, size_t n);
    /* The peer closed (UV_EOF) or the socket failed (other libuv code). */
    void (*on_eof)(struct conn *c, int err);
    void (*on_connect)(struct conn *c, int status);
    void (*on_tls_ready)(struct conn *c);
    void (*on_tls_error)(struct conn *c, const char *why);
    /* Everything queued was written, or the backlog fell under the low
     * water mark. */
    void (*on_drain)(struct conn *c);
    void (*on_close)(struct conn *c);
};

struct conn {
    uv_tcp_t tcp;
    /* Requests exist only while they are outstanding (an idle leg holds
     * neither): allocated by conn_flush / conn_connect, freed in their
     * callbacks, which libuv also runs (UV_ECANCELED) when the handle closes. */
    uv_write_t *wreq;
    uv_connect_t *creq;
    const struct conn_cb *cb;
    void *owner;
    struct tls *tls;
    struct buf in, out, inflight;
    uint64_t bytes_read, bytes_written; /* on the wire */
    bool open;        /* handle initialised, not yet closed */
    bool connected;
    bool reading;     /* wants to read */
    bool writing;     /* a uv_write is in flight */
    bool tls_ready;
    bool eof;
    bool write_failed; /* a write failed: nothing more reaches the peer */
    bool closing;
    int8_t held;      /* a TLS status met behind bytes not yet delivered (pump_tls) */
};

/* Initialises the handle on loop; 0 or a libuv code. */
int conn_init(struct conn *c, uv_loop_t *loop, const struct conn_cb *cb, void *owner);
/* The leg takes over fd, a connected socket the listener accepted (closed
 * here on failure). 0 or a libuv code. */
int conn_open(struct conn *c, int fd);
int conn_connect(struct conn *c, const struct sockaddr *sa);

/* Start or stop delivering input. conn_resume also re-offers the input
 * left in `in` and decrypts what TLS still holds. */
void conn_resume(struct conn *c);
void conn_pause(struct conn *c);

/* Queues plaintext for the peer: copied, except bytes lent (below). */
void conn_emit(struct conn *c, const uint8_t *p, size_t n);
/* Opens a lending window for out, a leg without TLS: until
 * conn_lend_end(out), what conn_emit(out, ...) is given from inside
 * [p, p + n) while nothing else is queued on out is kept by reference, and
 * conn_flush(out) hands it to the kernel straight from there, copying only
 * what the kernel did not take. p must stay valid and unchanged until
 * conn_lend_end. Only input delivered from the leg's read or plaintext
 * slab (the on_data of a read) is lent; false (and nothing lent) for any
 * other, or if this thread has a window open already. */
bool conn_lend_begin(struct conn *out, const uint8_t *p, size_t n);
/* Copies what is still lent into out's queue and closes the window. */
void conn_lend_end(struct conn *out);
/* Encrypts and writes what is queued. 0 or a negative code (the error has
 * then been reported through on_eof). */
int conn_flush(struct conn *c);
/* Bytes queued towards the peer and not yet accepted by the kernel. */
size_t conn_backlog(const struct conn *c);

/* Drops unconsumed input (RFC 3207 §4.2 after STARTTLS). */
void conn_discard_input(struct conn *c);

/* Puts TLS under the leg. The engine is owned by the conn from then on. */
void conn_start_tls(struct conn *c, struct tls *t);

/* Drives the handshake now (a TLS client speaks first), then as data
 * arrives. */
void conn_handshake(struct conn *c);

/* Queues close_notify if TLS is up. */
void conn_tls_shutdown(struct conn *c);

/* Closes the handle (idempotent); on_close follows. */
void conn_close(struct conn *c);

#endif
