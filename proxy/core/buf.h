/*
 * buf: a linear byte buffer with a read offset (OpenSMTPD's rpos/wpos).
 * Pure: no I/O. Memory is allocated on first use and released as soon as the
 * buffer is empty again, so an idle session holds no buffer memory at all.
 */
#ifndef SMTP_TLS_PROXY_BUF_H
#define SMTP_TLS_PROXY_BUF_H

#include <stddef.h>
#include <stdint.h>

/* Offsets are 32 bits (a buffer holds less than BUF_MAX bytes: every user
 * bounds its buffers far below that), so that each buffer of every idle
 * session takes 24 bytes, not 32. */
struct buf {
    uint8_t *data; /* NULL until first append */
    uint32_t off;  /* first unread byte */
    uint32_t len;  /* end of valid bytes (off <= len <= cap) */
    uint32_t cap;
};

#define BUF_MAX ((size_t)1 << 31)

/* Unread bytes. */
static inline size_t buf_len(const struct buf *b) { return b->len - b->off; }
static inline const uint8_t *buf_head(const struct buf *b) { return b->data + b->off; }

/* Appends n bytes; 0 or -ENOMEM (b unchanged then; also when the buffer
 * would grow beyond BUF_MAX). */
int buf_append(struct buf *b, const void *p, size_t n);

/* Makes room for at least n more bytes at the tail and returns a pointer to
 * it (NULL on -ENOMEM); buf_commit(b, k) then adds k <= n bytes written there. */
uint8_t *buf_reserve(struct buf *b, size_t n);
void buf_commit(struct buf *b, size_t n);

/* Drops n <= buf_len(b) bytes from the head; frees the memory when empty. */
void buf_consume(struct buf *b, size_t n);

/* Moves src's contents into dst (dst must be empty); src becomes empty. */
void buf_move(struct buf *dst, struct buf *src);

/* Frees the memory; the buffer is empty and reusable afterwards. */
void buf_free(struct buf *b);

#endif
