/*
 * buf: append / reserve / commit / consume / move / free, and the promise
 * that an emptied buffer holds no memory.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/core/buf.h"

static void test_empty_holds_nothing(void **state)
{
    struct buf b = {0};

    assert_int_equal(buf_len(&b), 0);
    assert_null(b.data);
    /* Appending nothing allocates nothing. */
    assert_int_equal(buf_append(&b, "x", 0), 0);
    assert_null(b.data);
    assert_int_equal(buf_len(&b), 0);
    buf_free(&b);
    assert_null(b.data);
}

static void test_append_and_read(void **state)
{
    struct buf b = {0};

    assert_int_equal(buf_append(&b, "hello ", 6), 0);
    assert_non_null(b.data);
    assert_int_equal(buf_append(&b, "world", 5), 0);
    assert_int_equal(buf_len(&b), 11);
    assert_memory_equal(buf_head(&b), "hello world", 11);
    assert_true(b.off <= b.len && b.len <= b.cap);
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(buf_len(&b), 0);
    assert_int_equal(b.cap, 0);
}

static void test_append_grows_past_initial_capacity(void **state)
{
    struct buf b = {0};
    uint8_t chunk[1000];

    for (size_t i = 0; i < sizeof(chunk); i++)
        chunk[i] = (uint8_t)i;
    for (int i = 0; i < 100; i++)
        assert_int_equal(buf_append(&b, chunk, sizeof(chunk)), 0);
    assert_int_equal(buf_len(&b), 100 * sizeof(chunk));
    assert_true(b.cap >= b.len);
    for (int i = 0; i < 100; i++)
        assert_memory_equal(buf_head(&b) + (size_t)i * sizeof(chunk), chunk, sizeof(chunk));
    buf_free(&b);
}

static void test_consume_partial_then_all_releases_memory(void **state)
{
    struct buf b = {0};

    assert_int_equal(buf_append(&b, "abcdef", 6), 0);
    buf_consume(&b, 2);
    assert_int_equal(buf_len(&b), 4);
    assert_memory_equal(buf_head(&b), "cdef", 4);
    assert_non_null(b.data);
    buf_consume(&b, 4);
    assert_int_equal(buf_len(&b), 0);
    /* Emptied: the memory is gone, the buffer is reusable. */
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.off, 0);
    assert_int_equal(buf_append(&b, "z", 1), 0);
    assert_memory_equal(buf_head(&b), "z", 1);
    buf_free(&b);
}

static void test_consume_zero_keeps_contents(void **state)
{
    struct buf b = {0};

    assert_int_equal(buf_append(&b, "ab", 2), 0);
    buf_consume(&b, 0);
    assert_int_equal(buf_len(&b), 2);
    assert_memory_equal(buf_head(&b), "ab", 2);
    buf_free(&b);
}

static void test_reserve_commit(void **state)
{
    struct buf b = {0};

    uint8_t *p = buf_reserve(&b, 64);
    assert_non_null(p);
    assert_true(b.cap - b.len >= 64);
    memcpy(p, "0123456789", 10);
    buf_commit(&b, 10);
    assert_int_equal(buf_len(&b), 10);
    assert_memory_equal(buf_head(&b), "0123456789", 10);

    /* A second reserve continues at the tail. */
    p = buf_reserve(&b, 5);
    assert_non_null(p);
    assert_ptr_equal(p, b.data + b.len);
    memcpy(p, "abcde", 5);
    buf_commit(&b, 3); /* fewer than reserved */
    assert_int_equal(buf_len(&b), 13);
    assert_memory_equal(buf_head(&b), "0123456789abc", 13);
    buf_free(&b);
}

static void test_reserve_reclaims_consumed_head(void **state)
{
    struct buf b = {0};
    uint8_t *p = buf_reserve(&b, 1);

    assert_non_null(p);
    size_t cap = b.cap;
    /* Fill to capacity, consume most of it, then ask for what only fits
     * once the consumed head has been reclaimed: no growth. */
    memset(p, 'a', cap);
    buf_commit(&b, cap);
    buf_consume(&b, cap - 4);
    p = buf_reserve(&b, cap - 8);
    assert_non_null(p);
    assert_int_equal(b.cap, cap);
    assert_int_equal(b.off, 0);
    assert_int_equal(buf_len(&b), 4);
    assert_memory_equal(buf_head(&b), "aaaa", 4);
    buf_free(&b);
}

static void test_reserve_large_grows(void **state)
{
    struct buf b = {0};

    assert_int_equal(buf_append(&b, "xy", 2), 0);
    uint8_t *p = buf_reserve(&b, 100000);
    assert_non_null(p);
    assert_true(b.cap - b.len >= 100000);
    memset(p, 'q', 100000);
    buf_commit(&b, 100000);
    assert_int_equal(buf_len(&b), 100002);
    assert_memory_equal(buf_head(&b), "xyqq", 4);
    buf_free(&b);
}

/* A size that cannot be honoured must fail, not wrap: len + n overflowing
 * size_t must not yield a pointer with "room" for n bytes. */
static struct buf overflow_buf;

static int free_overflow_buf(void **state)
{
    buf_free(&overflow_buf);
    return 0;
}

static void test_reserve_overflow_fails(void **state)
{
    struct buf *b = &overflow_buf; /* freed by the teardown if we fail */

    assert_int_equal(buf_append(b, "0123456789", 10), 0);
    uint8_t *p = buf_reserve(b, SIZE_MAX - 5);
    assert_null(p);
    /* Unchanged contents. */
    assert_int_equal(buf_len(b), 10);
    assert_memory_equal(buf_head(b), "0123456789", 10);
    assert_int_equal(buf_append(b, "x", SIZE_MAX - 5), -ENOMEM);
    assert_int_equal(buf_len(b), 10);
    buf_free(b);
}

static void test_move(void **state)
{
    struct buf src = {0}, dst = {0};

    assert_int_equal(buf_append(&src, "payload", 7), 0);
    buf_consume(&src, 3);
    buf_move(&dst, &src);
    assert_int_equal(buf_len(&dst), 4);
    assert_memory_equal(buf_head(&dst), "load", 4);
    assert_int_equal(buf_len(&src), 0);
    assert_null(src.data);
    assert_int_equal(src.cap, 0);
    /* src is reusable and independent. */
    assert_int_equal(buf_append(&src, "new", 3), 0);
    assert_memory_equal(buf_head(&dst), "load", 4);
    assert_memory_equal(buf_head(&src), "new", 3);
    buf_free(&src);
    buf_free(&dst);
}

static void test_move_empty(void **state)
{
    struct buf src = {0}, dst = {0};

    buf_move(&dst, &src);
    assert_null(dst.data);
    assert_int_equal(buf_len(&dst), 0);
    assert_null(src.data);
}

static void test_free_then_reuse(void **state)
{
    struct buf b = {0};

    assert_int_equal(buf_append(&b, "abc", 3), 0);
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(buf_len(&b), 0);
    assert_int_equal(b.off + b.len + b.cap, 0);
    buf_free(&b); /* twice is fine */
    assert_int_equal(buf_append(&b, "def", 3), 0);
    assert_memory_equal(buf_head(&b), "def", 3);
    buf_free(&b);
}

/* Interleaved appends and consumes keep FIFO order (a model check). */
static void test_fifo_model(void **state)
{
    struct buf b = {0};
    uint8_t model[4096];
    size_t mhead = 0, mtail = 0;
    uint32_t x = 12345;
    uint8_t next = 0;

    for (int round = 0; round < 2000; round++) {
        x = x * 1103515245u + 12345u;
        size_t n = (x >> 16) % 17;
        if ((x >> 8) & 1) {
            uint8_t tmp[17];
            for (size_t i = 0; i < n; i++)
                tmp[i] = next++;
            if (mtail + n > sizeof(model)) {
                memmove(model, model + mhead, mtail - mhead);
                mtail -= mhead;
                mhead = 0;
            }
            if (mtail + n > sizeof(model))
                continue;
            memcpy(model + mtail, tmp, n);
            mtail += n;
            assert_int_equal(buf_append(&b, tmp, n), 0);
        } else {
            if (n > mtail - mhead)
                n = mtail - mhead;
            buf_consume(&b, n);
            mhead += n;
        }
        assert_int_equal(buf_len(&b), mtail - mhead);
        if (buf_len(&b) == 0)
            assert_null(b.data);
        else
            assert_memory_equal(buf_head(&b), model + mhead, mtail - mhead);
    }
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_holds_nothing),
        cmocka_unit_test(test_append_and_read),
        cmocka_unit_test(test_append_grows_past_initial_capacity),
        cmocka_unit_test(test_consume_partial_then_all_releases_memory),
        cmocka_unit_test(test_consume_zero_keeps_contents),
        cmocka_unit_test(test_reserve_commit),
        cmocka_unit_test(test_reserve_reclaims_consumed_head),
        cmocka_unit_test(test_reserve_large_grows),
        cmocka_unit_test_teardown(test_reserve_overflow_fails, free_overflow_buf),
        cmocka_unit_test(test_move),
        cmocka_unit_test(test_move_empty),
        cmocka_unit_test(test_free_then_reuse),
        cmocka_unit_test(test_fifo_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
