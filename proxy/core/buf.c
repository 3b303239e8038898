#include "proxy/core/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint8_t *buf_reserve(struct buf *b, size_t n)
{
    if (b->cap - b->len >= n)
        return b->data + b->len;
    /* Reclaim the consumed head before growing. */
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->cap - b->len >= n)
            return b->data + b->len;
    }
    if (n > BUF_MAX - b->len)
        return NULL;
    size_t want = b->len + n;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < want)
        cap *= 2; /* want <= BUF_MAX, a power of two: cap stays <= BUF_MAX */
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL)
        return NULL;
    b->data = p;
    b->cap = (uint32_t)cap;
    return b->data + b->len;
}

void buf_commit(struct buf *b, size_t n)
{
    b->len += (uint32_t)n; /* n <= what buf_reserve made room for */
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    uint8_t *dst = buf_reserve(b, n);
    if (dst == NULL)
        return -ENOMEM;
    memcpy(dst, p, n);
    b->len += (uint32_t)n;
    return 0;
}

void buf_consume(struct buf *b, size_t n)
{
    b->off += (uint32_t)n; /* n <= buf_len(b) */
    if (b->off >= b->len)
        buf_free(b);
}

void buf_move(struct buf *dst, struct buf *src)
{
    buf_free(dst);
    *dst = *src;
    src->data = NULL;
    src->off = src->len = src->cap = 0;
}

void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}
