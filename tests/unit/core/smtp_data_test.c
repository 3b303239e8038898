/*
 * smtp: the DATA scanner (smtp_data_scan): end of data, dot-stuffing,
 * bare CR/LF, and the split property. The header comments of
 * proxy/smtp.h are the spec.
 */
#include "tests/unit/core/smtp_fixture.c.h"

/* ---------- smtp_data_scan ---------- */

struct sink {
    uint8_t b[8192];
    size_t n;
    unsigned calls;
};

static void on_emit(void *arg, const uint8_t *p, size_t n)
{
    struct sink *s = arg;

    assert_true(n > 0);
    assert_true(s->n + n <= sizeof(s->b));
    memcpy(s->b + s->n, p, n);
    s->n += n;
    s->calls++;
}

struct scan_result {
    int rc;
    size_t used; /* over the whole input */
    struct sink out;
};

/* Scans in (len bytes) in pieces of `step` bytes (0 = one go), stopping at
 * the first non-AGAIN status. */
static void scan(const uint8_t *in, size_t len, bool reject, size_t step, struct scan_result *r)
{
    struct smtp_data d;
    size_t off = 0;

    memset(r, 0, sizeof(*r));
    smtp_data_init(&d, reject);
    r->rc = SMTP_AGAIN;
    if (step == 0)
        step = len ? len : 1;
    while (off < len) {
        size_t n = len - off < step ? len - off : step;
        size_t used = 999999;
        r->rc = smtp_data_scan(&d, in + off, n, &used, on_emit, &r->out);
        assert_true(used <= n);
        if (r->rc != SMTP_AGAIN) {
            r->used = off + used;
            return;
        }
        assert_int_equal(used, n);
        off += n;
    }
    r->used = off;
}

static void expect_scan(const char *in, bool reject, int rc, size_t used, const char *out)
{
    struct scan_result r;

    scan(U(in), strlen(in), reject, 0, &r);
    assert_int_equal(r.rc, rc);
    assert_int_equal(r.used, used);
    if (out != NULL) {
        assert_int_equal(r.out.n, strlen(out));
        assert_memory_equal(r.out.b, out, r.out.n);
    }
}

static void test_data_end(void **state)
{
    expect_scan("Subject: x\r\n\r\nbody\r\n.\r\n", false, SMTP_OK, 23,
                "Subject: x\r\n\r\nbody\r\n.\r\n");
    /* Bytes after the end are not consumed. */
    expect_scan("a\r\n.\r\nQUIT\r\n", false, SMTP_OK, 6, "a\r\n.\r\n");
    /* The data starts at a line start: an empty message. */
    expect_scan(".\r\n", false, SMTP_OK, 3, ".\r\n");
    expect_scan(".\r\nMAIL FROM:<>\r\n", true, SMTP_OK, 3, ".\r\n");
    expect_scan("\r\n.\r\n", false, SMTP_OK, 5, "\r\n.\r\n");
}

static void test_data_goes_on(void **state)
{
    expect_scan("", false, SMTP_AGAIN, 0, "");
    expect_scan("a\r\nb\r\n", false, SMTP_AGAIN, 6, "a\r\nb\r\n");
    expect_scan("a\r\n.", false, SMTP_AGAIN, 4, "a\r\n.");
    expect_scan("a.\r\n", false, SMTP_AGAIN, 4, "a.\r\n");
    expect_scan("a\r\n .\r\n", false, SMTP_AGAIN, 7, "a\r\n .\r\n");
    expect_scan("a\r\n.x\r\n", false, SMTP_AGAIN, 7, "a\r\n.x\r\n");
}

static void test_data_dot_stuffed_untouched(void **state)
{
    expect_scan("..\r\n", false, SMTP_AGAIN, 4, "..\r\n");
    expect_scan("a\r\n..\r\n.\r\n", false, SMTP_OK, 10, "a\r\n..\r\n.\r\n");
    expect_scan("a\r\n...x\r\n", true, SMTP_AGAIN, 9, "a\r\n...x\r\n");
}

static void test_data_trailing_cr_held(void **state)
{
    /* The final CR of "\r\n.\r" is not emitted until its successor is seen. */
    expect_scan("a\r\n.\r", false, SMTP_AGAIN, 5, "a\r\n.");
    expect_scan("a\r", false, SMTP_AGAIN, 2, "a");
    expect_scan("a\r", true, SMTP_AGAIN, 2, "a");
    expect_scan("\r", false, SMTP_AGAIN, 1, "");

    /* Then completed. */
    struct smtp_data d;
    struct sink s = {0};
    size_t used;
    smtp_data_init(&d, false);
    assert_int_equal(smtp_data_scan(&d, SL("a\r\n.\r"), &used, on_emit, &s), SMTP_AGAIN);
    assert_int_equal(s.n, 4);
    assert_int_equal(smtp_data_scan(&d, SL("\nQUIT\r\n"), &used, on_emit, &s), SMTP_OK);
    assert_int_equal(used, 1);
    assert_int_equal(s.n, 6);
    assert_memory_equal(s.b, "a\r\n.\r\n", 6);
}

static void test_data_bare_lf_normalised(void **state)
{
    expect_scan("a\nb", false, SMTP_AGAIN, 3, "a\r\nb");
    expect_scan("a\nb\n", false, SMTP_AGAIN, 4, "a\r\nb\r\n");
    expect_scan("\n", false, SMTP_AGAIN, 1, "\r\n");
    /* Not an end under RFC 5321, so it must not become one. */
    expect_scan("a\n.\r\n", false, SMTP_AGAIN, 5, "a\r\n..\r\n");
    expect_scan("a\n.\n", false, SMTP_AGAIN, 4, "a\r\n..\r\n");
    expect_scan("a\r\n\n.\r\n", false, SMTP_AGAIN, 7, "a\r\n\r\n..\r\n");
    /* A real CRLF.CRLF after a repaired line still ends the message. */
    expect_scan("a\nb\r\n.\r\n", false, SMTP_OK, 8, "a\r\nb\r\n.\r\n");
    expect_scan("a\n\r\n.\r\n", false, SMTP_OK, 7, "a\r\n\r\n.\r\n");
    /* A bare LF ends a line for dot-stuffing too (Postfix's "normalize"):
     * smtplib.sendmail(bytes) sends LF lines stuffed after each LF, so the
     * stuffing dot is relayed as it is and the backend removes it. */
    expect_scan("a\n..x\r\n", false, SMTP_AGAIN, 7, "a\r\n..x\r\n");
    expect_scan("a\n.x\r\n", false, SMTP_AGAIN, 6, "a\r\n.x\r\n");
    expect_scan("a\n..\n.\r\n", false, SMTP_AGAIN, 8, "a\r\n..\r\n..\r\n");
}

static void test_data_bare_cr_normalised(void **state)
{
    expect_scan("a\rb", false, SMTP_AGAIN, 3, "a\r\nb");
    expect_scan("a\r.\r\n", false, SMTP_AGAIN, 5, "a\r\n..\r\n");
    expect_scan("a\r\r\n", false, SMTP_AGAIN, 4, "a\r\n\r\n");
    expect_scan("a\r\r\n.\r\n", false, SMTP_OK, 7, "a\r\n\r\n.\r\n");
    expect_scan("\r.\r\n", false, SMTP_AGAIN, 4, "\r\n..\r\n");
}

static void test_data_dot_bare_at_line_start(void **state)
{
    /* ".\n", ".\rX" at a line start: a lenient server would end here, so
     * the dot is doubled. */
    expect_scan(".\n", false, SMTP_AGAIN, 2, "..\r\n");
    expect_scan("a\r\n.\n", false, SMTP_AGAIN, 5, "a\r\n..\r\n");
    expect_scan("a\r\n.\nb\r\n.\r\n", false, SMTP_OK, 11, "a\r\n..\r\nb\r\n.\r\n");
    expect_scan("a\r\n.\rX", false, SMTP_AGAIN, 6, "a\r\n..\r\nX");
    expect_scan("a\r\n.\r.\r\n", false, SMTP_AGAIN, 8, "a\r\n..\r\n..\r\n");
}

static void test_data_reject_mode(void **state)
{
    struct scan_result r;

    scan(SL("a\nb\r\n.\r\n"), true, 0, &r);
    assert_int_equal(r.rc, SMTP_ERR_BARE_NL);
    assert_int_equal(r.used, 1);
    assert_int_equal(r.out.n, 1);
    assert_memory_equal(r.out.b, "a", 1);

    scan(SL("a\r\n.\n"), true, 0, &r);
    assert_int_equal(r.rc, SMTP_ERR_BARE_NL);
    /* Nothing that could complete an end reaches the server. */
    assert_true(r.out.n <= 4);

    scan(SL("abc\rdef\r\n.\r\n"), true, 0, &r);
    assert_int_equal(r.rc, SMTP_ERR_BARE_NL);
    assert_true(r.used == 3 || r.used == 4);
    assert_int_equal(r.out.n, 3);
    assert_memory_equal(r.out.b, "abc", 3);

    /* A held CR turns out bare in the next call. */
    struct smtp_data d;
    struct sink s = {0};
    size_t used;
    smtp_data_init(&d, true);
    assert_int_equal(smtp_data_scan(&d, SL("x\r"), &used, on_emit, &s), SMTP_AGAIN);
    assert_int_equal(used, 2);
    assert_int_equal(smtp_data_scan(&d, SL("y"), &used, on_emit, &s), SMTP_ERR_BARE_NL);
    assert_int_equal(used, 0);
    assert_int_equal(s.n, 1);

    /* Clean content passes verbatim in reject mode. */
    expect_scan("a\r\n..\r\nb\r\n.\r\n", true, SMTP_OK, 13, "a\r\n..\r\nb\r\n.\r\n");
}

static void test_data_emit_batches(void **state)
{
    /* A plain message goes out as one verbatim span, not byte by byte. */
    struct scan_result r;

    scan(SL("Subject: hi\r\n\r\nline one\r\nline two\r\n.\r\n"), false, 0, &r);
    assert_int_equal(r.rc, SMTP_OK);
    assert_int_equal(r.out.calls, 1);
}

/* Messages for the split property: clean, stuffed, bare LF/CR in every
 * position relative to dots and line starts, ends at every place. */
static const char *const messages[] = {
    "",
    ".\r\n",
    "\r\n.\r\n",
    "a\r\n.\r\n",
    "a\r\n.\r\nafter",
    "Subject: x\r\n\r\nbody\r\n..\r\n...\r\n.\r\n",
    "a\nb\n.\n",
    "a\n.\r\n",
    "a\r.\r\n",
    "a\r\r\n.\r\n",
    "\r\r\n.\r\n",
    ".\n",
    ".\r",
    ".\r.",
    ".\rX\r\n.\r\n",
    "a\r\n.\r",
    "a\r\n.",
    "a\r\n.\rx",
    "\n\n\n.\r\n",
    "\r\r\r\r",
    "\r\n\r\n\r\n..\r\n.\r\n",
    "x\r\n.\n.\r\n",
    "x\r\n.\r\r\n.\r\n",
    "a\rb\rc\nd\r\n.\r\n",
    "line\r\n.x\r\n. \r\n.\r\n",
    "\n.\n.\r\n.\r\n",
    "a\r\n\r.\r\n",
    "a\r\n\n.\r\n\r\n.\r\n",
};

static void check_split_property(bool reject)
{
    for (size_t m = 0; m < sizeof(messages) / sizeof(messages[0]); m++) {
        const uint8_t *in = U(messages[m]);
        size_t len = strlen(messages[m]);
        struct scan_result whole, part;

        scan(in, len, reject, 0, &whole);
        for (size_t step = 1; step <= len; step++) {
            scan(in, len, reject, step, &part);
            if (part.rc != whole.rc || part.used != whole.used || part.out.n != whole.out.n ||
                memcmp(part.out.b, whole.out.b, whole.out.n) != 0)
                fail_msg("message %zu (reject=%d) differs in steps of %zu", m, reject, step);
        }
        /* Every two-piece split, too. */
        for (size_t cut = 0; cut <= len; cut++) {
            struct smtp_data d;
            struct sink s = {0};
            size_t used = 0, total;
            int rc;
            smtp_data_init(&d, reject);
            rc = smtp_data_scan(&d, in, cut, &used, on_emit, &s);
            total = used;
            if (rc == SMTP_AGAIN) {
                rc = smtp_data_scan(&d, in + cut, len - cut, &used, on_emit, &s);
                total += used;
            }
            if (rc != whole.rc || total != whole.used || s.n != whole.out.n ||
                memcmp(s.b, whole.out.b, s.n) != 0)
                fail_msg("message %zu (reject=%d) differs when cut at %zu", m, reject, cut);
        }
    }
}

static void test_data_split_property_normalise(void **state)
{
    check_split_property(false);
}

static void test_data_split_property_reject(void **state)
{
    check_split_property(true);
}

/* In normalise mode the output is well formed (no bare CR/LF) and holds no
 * CRLF.CRLF (or a leading .CRLF) before the end, which itself sits exactly
 * where RFC 5321 puts it in the input. */
static void test_data_output_invariants(void **state)
{
    for (size_t m = 0; m < sizeof(messages) / sizeof(messages[0]); m++) {
        const char *in = messages[m];
        size_t len = strlen(in);
        struct scan_result r;
        scan(U(in), len, false, 0, &r);

        uint8_t o[8200];
        memcpy(o, "\r\n", 2);
        memcpy(o + 2, r.out.b, r.out.n);
        size_t on = r.out.n + 2;
        for (size_t i = 2; i < on; i++) {
            if (o[i] == '\n')
                assert_true(o[i - 1] == '\r');
            if (o[i] == '\r')
                assert_true(i + 1 < on && o[i + 1] == '\n');
        }
        for (size_t i = 0; i + 5 <= on; i++) {
            if (memcmp(o + i, "\r\n.\r\n", 5) == 0) {
                assert_int_equal(r.rc, SMTP_OK);
                assert_int_equal(i + 5, on);
            }
        }
        /* The strict end in the input. */
        char strict[256];
        snprintf(strict, sizeof(strict), "\r\n%s", in);
        const char *e = strstr(strict, "\r\n.\r\n");
        if (e != NULL) {
            assert_int_equal(r.rc, SMTP_OK);
            assert_int_equal(r.used, (size_t)(e - strict) + 5 - 2);
        } else {
            assert_int_equal(r.rc, SMTP_AGAIN);
        }
    }
}

/* Lines of w letters after a first line of `shift`: so that over the
 * (w, shift) pairs, line ends, a stuffed line and the end of data fall at
 * every offset of the scanner's 64-byte blocks. Returns the length. */
static size_t block_text(uint8_t *in, size_t w, size_t shift)
{
    size_t n = shift;

    memset(in, 'a', shift);
    in[n++] = '\r';
    in[n++] = '\n';
    while (n < 1200) {
        if (n > 600 && n < 700) {
            memcpy(in + n, "..x\r\n", 5); /* a stuffed line, relayed as it is */
            n += 5;
        }
        memset(in + n, 'b', w);
        n += w;
        in[n++] = '\r';
        in[n++] = '\n';
    }
    return n;
}

static void test_data_block_offsets(void **state)
{
    static uint8_t in[2048];
    static const size_t steps[] = {0, 7, 64, 100};
    struct scan_result r;

    (void)state;
    for (size_t w = 1; w <= 70; w += 3) {
        for (size_t shift = 0; shift < 64; shift++) {
            size_t body = block_text(in, w, shift);
            memcpy(in + body, ".\r\n", 3);
            for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
                scan(in, body + 3, true, steps[k], &r);
                assert_int_equal(r.rc, SMTP_OK);
                assert_int_equal(r.used, body + 3);
                assert_int_equal(r.out.n, body + 3);
                assert_memory_equal(r.out.b, in, body + 3);
            }
            /* A bare LF, then a bare CR, in place of a letter of a line
             * that starts anywhere in a block. */
            size_t q = 1200 - 2 - w / 2 - 1;
            if (q <= shift + 1 || in[q] != 'b')
                continue;
            in[q] = '\n';
            scan(in, body, true, 0, &r);
            assert_int_equal(r.rc, SMTP_ERR_BARE_NL);
            assert_int_equal(r.used, q);
            assert_int_equal(r.out.n, q);
            in[q] = '\r';
            scan(in, body, true, 0, &r);
            assert_int_equal(r.rc, SMTP_ERR_BARE_NL);
            assert_int_equal(r.out.n, q);
            assert_memory_equal(r.out.b, in, q);
        }
    }
}

static void test_data_reinit_after_end(void **state)
{
    struct smtp_data d;
    struct sink s = {0};
    size_t used;

    smtp_data_init(&d, false);
    assert_int_equal(smtp_data_scan(&d, SL("a\r\n.\r\n"), &used, on_emit, &s), SMTP_OK);
    smtp_data_init(&d, false);
    assert_int_equal(smtp_data_scan(&d, SL(".\r\n"), &used, on_emit, &s), SMTP_OK);
    assert_int_equal(used, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_end),
        cmocka_unit_test(test_data_goes_on),
        cmocka_unit_test(test_data_dot_stuffed_untouched),
        cmocka_unit_test(test_data_trailing_cr_held),
        cmocka_unit_test(test_data_bare_lf_normalised),
        cmocka_unit_test(test_data_bare_cr_normalised),
        cmocka_unit_test(test_data_dot_bare_at_line_start),
        cmocka_unit_test(test_data_reject_mode),
        cmocka_unit_test(test_data_emit_batches),
        cmocka_unit_test(test_data_split_property_normalise),
        cmocka_unit_test(test_data_split_property_reject),
        cmocka_unit_test(test_data_output_invariants),
        cmocka_unit_test(test_data_block_offsets),
        cmocka_unit_test(test_data_reinit_after_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
