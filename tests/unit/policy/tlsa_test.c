/*
 * Unit tests for proxy/policy/tlsa.c: RDATA parsing and RFC 7672 §3.1
 * usability, one table row per case, and the verdict of whole RRsets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/policy/tlsa.h"

static uint8_t buf[8][80];

/* RDATA for usage/selector/mtype with n data octets (0xab), in slot k. */
static const uint8_t *rdata(int k, uint8_t usage, uint8_t sel, uint8_t mtype, size_t n)
{
    buf[k][0] = usage;
    buf[k][1] = sel;
    buf[k][2] = mtype;
    memset(buf[k] + 3, 0xab, n);
    return buf[k];
}

static void test_parse(void **state)
{
    struct tlsa_record r;
    const uint8_t *p = rdata(0, 3, 1, 1, 32);

    assert_int_equal(tlsa_parse(p, 35, &r), TLSA_OK);
    assert_int_equal(r.usage, 3);
    assert_int_equal(r.selector, 1);
    assert_int_equal(r.mtype, 1);
    assert_ptr_equal(r.data, p + 3);
    assert_int_equal(r.len, 32);
    assert_int_equal(tlsa_parse(p, 3, &r), TLSA_OK);
    assert_int_equal(r.len, 0);
    assert_int_equal(tlsa_parse(p, 2, &r), TLSA_ERR_SHORT);
    assert_int_equal(tlsa_parse(p, 0, &r), TLSA_ERR_SHORT);
    assert_int_equal(tlsa_parse(NULL, 10, &r), TLSA_ERR_SHORT);
}

static void test_usability(void **state)
{
    static const struct {
        uint8_t usage, sel, mtype;
        size_t n;
        const char *why; /* NULL: usable; else a word of the reason */
    } rows[] = {
        {3, 1, 1, 32, NULL},        /* DANE-EE SPKI SHA-256: the common one */
        {3, 0, 1, 32, NULL},        /* DANE-EE cert SHA-256 */
        {3, 1, 2, 64, NULL},        /* SHA-512 */
        {3, 1, 0, 70, NULL},        /* full SPKI */
        {2, 0, 1, 32, NULL},        /* DANE-TA cert SHA-256 */
        {2, 1, 2, 64, NULL},
        {2, 0, 0, 1, NULL},         /* full data: any non-empty length */
        {0, 0, 1, 32, "PKIX-TA"},   /* RFC 7672 §3.1.3 */
        {1, 1, 1, 32, "PKIX-EE"},
        {4, 1, 1, 32, "usage"},
        {255, 1, 1, 32, "usage"},
        {3, 2, 1, 32, "selector"},
        {3, 1, 3, 32, "matching"},
        {3, 1, 255, 32, "matching"},
        {3, 1, 1, 31, "SHA-256"},
        {3, 1, 1, 33, "SHA-256"},
        {3, 1, 1, 64, "SHA-256"},
        {3, 1, 2, 32, "SHA-512"},
        {3, 1, 0, 0, "empty"},
    };

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct tlsa_record r;
        const char *why;

        assert_int_equal(tlsa_parse(rdata(0, rows[i].usage, rows[i].sel, rows[i].mtype, rows[i].n),
                                    3 + rows[i].n, &r),
                         TLSA_OK);
        why = tlsa_unusable_reason(&r);
        if (rows[i].why == NULL) {
            if (why != NULL)
                fail_msg("row %zu: unusable (%s)", i, why);
            assert_true(tlsa_usable(&r));
        } else {
            if (why == NULL || strstr(why, rows[i].why) == NULL)
                fail_msg("row %zu: want \"%s\" in the reason, got %s", i, rows[i].why,
                         why ? why : "usable");
            assert_false(tlsa_usable(&r));
        }
    }
}

static void test_set_verdicts(void **state)
{
    struct tlsa_set s;
    const uint8_t *rd[8] = {NULL};
    size_t len[8] = {0};

    assert_int_equal(tlsa_set_build(&s, rd, len, 0), TLSA_VERDICT_NONE);
    assert_int_equal(s.n, 0);

    /* All unusable: encrypt without authentication (RFC 7672 §2.2). */
    rd[0] = rdata(0, 0, 0, 1, 32), len[0] = 35;
    rd[1] = rdata(1, 1, 1, 1, 32), len[1] = 35;
    rd[2] = rdata(2, 3, 1, 1, 20), len[2] = 23;
    rd[3] = rdata(3, 3, 1, 1, 0), len[3] = 2; /* malformed */
    assert_int_equal(tlsa_set_build(&s, rd, len, 4), TLSA_VERDICT_UNUSABLE);
    assert_int_equal(s.n, 0);
    assert_int_equal(s.total, 4);
    assert_int_equal(s.malformed, 1);
    assert_false(s.has_ee || s.has_ta);

    /* One usable among unusable ones: it alone counts. */
    rd[4] = rdata(4, 2, 0, 1, 32), len[4] = 35;
    assert_int_equal(tlsa_set_build(&s, rd, len, 5), TLSA_VERDICT_AUTHENTICATE);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.rec[0].usage, TLSA_USAGE_DANE_TA);
    assert_true(s.has_ta);
    assert_false(s.has_ee);

    /* Duplicates are kept once; EE and TA both noted. */
    rd[5] = rdata(5, 3, 1, 1, 32), len[5] = 35;
    rd[6] = rdata(6, 3, 1, 1, 32), len[6] = 35;
    assert_int_equal(tlsa_set_build(&s, rd, len, 7), TLSA_VERDICT_AUTHENTICATE);
    assert_int_equal(s.n, 2);
    assert_true(s.has_ta && s.has_ee);
    assert_string_equal(tlsa_verdict_str(TLSA_VERDICT_UNUSABLE), "unusable");
}

static void test_set_bound(void **state)
{
    static uint8_t many[40][35];
    const uint8_t *rd[40];
    size_t len[40];
    struct tlsa_set s;

    for (int i = 0; i < 40; i++) {
        many[i][0] = 3, many[i][1] = 1, many[i][2] = 1;
        memset(many[i] + 3, i, 32);
        rd[i] = many[i];
        len[i] = 35;
    }
    assert_int_equal(tlsa_set_build(&s, rd, len, 40), TLSA_VERDICT_AUTHENTICATE);
    assert_int_equal(s.n, TLSA_MAX_RECORDS);
    assert_int_equal(s.total, 40);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_usability),
        cmocka_unit_test(test_set_verdicts),
        cmocka_unit_test(test_set_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
