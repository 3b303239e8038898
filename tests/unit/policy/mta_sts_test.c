/*
 * Unit tests for proxy/policy/mta_sts.c: TXT RDATA concatenation, the
 * _mta-sts record (RFC 8461 §3.1) and the choice among several, the policy
 * file (§3.2) and MX matching (§4.1), one table row per case.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/policy/mta_sts.h"

/* Wire RDATA for the character-strings given, NULL-terminated. */
static size_t rdata(uint8_t *out, size_t cap, const char *const *strings)
{
    size_t n = 0;

    for (; *strings != NULL; strings++) {
        size_t l = strlen(*strings);
        assert_true(l <= 255 && n + 1 + l <= cap);
        out[n++] = (uint8_t)l;
        memcpy(out + n, *strings, l);
        n += l;
    }
    return n;
}

static void test_txt_concat(void **state)
{
    uint8_t wire[600];
    char text[300];
    size_t n, len;
    static const char *two[] = {"v=STSv1; ", "id=abc;", NULL};
    static const char *with_empty[] = {"", "v=STSv1;", "", NULL};

    len = rdata(wire, sizeof(wire), two);
    assert_int_equal(mta_sts_txt_concat(wire, len, text, sizeof(text), &n), MTA_STS_OK);
    assert_string_equal(text, "v=STSv1; id=abc;");
    assert_int_equal(n, 16);
    len = rdata(wire, sizeof(wire), with_empty);
    assert_int_equal(mta_sts_txt_concat(wire, len, text, sizeof(text), &n), MTA_STS_OK);
    assert_string_equal(text, "v=STSv1;");

    /* A length octet past the end, empty RDATA, no room. */
    wire[0] = 10;
    memcpy(wire + 1, "short", 5);
    assert_int_equal(mta_sts_txt_concat(wire, 6, text, sizeof(text), &n), MTA_STS_ERR);
    assert_int_equal(mta_sts_txt_concat(wire, 0, text, sizeof(text), &n), MTA_STS_ERR);
    len = rdata(wire, sizeof(wire), two);
    assert_int_equal(mta_sts_txt_concat(wire, len, text, 16, &n), MTA_STS_ERR_SPACE);
    assert_string_equal(text, "v=STSv1; id=abc"); /* what fits, readable */
    assert_int_equal(n, 15);
    assert_int_equal(mta_sts_txt_concat(wire, len, text, 17, &n), MTA_STS_OK);
}

static void test_txt_parse(void **state)
{
    static const struct {
        const char *text;
        const char *id; /* NULL: invalid */
    } rows[] = {
        {"v=STSv1; id=20160831085700Z;", "20160831085700Z"}, /* §3.1's example */
        {"v=STSv1;id=a", "a"},
        {"v=STSv1; id=abc ; ", "abc"},
        {"v=STSv1 ;\tid=abc", "abc"}, /* *WSP ";" *WSP */
        {"v=STSv1; ext=1; id=x9", "x9"},
        {"v=STSv1; id=first; id=second", "first"}, /* first instance wins */
        {"v=STSv1; id=12345678901234567890123456789012", "12345678901234567890123456789012"},
        {"v=STSv1; id=123456789012345678901234567890123", NULL}, /* 33 */
        {"v=STSv1; id=", NULL},
        {"v=STSv1; id=ab-c", NULL},
        {"v=STSv1; id=ab c", NULL},
        {"v=STSv1", NULL}, /* no id */
        {"v=STSv1;", NULL},
        {"v=STSv1; ext=1", NULL},
        {"v=STSv2; id=abc", NULL},
        {"v=stsv1; id=abc", NULL}, /* %s: case-sensitive */
        {" v=STSv1; id=abc", NULL},
        {"id=abc; v=STSv1", NULL}, /* version first */
        {"v=STSv1 id=abc", NULL},  /* no delimiter */
        {"v=STSv1; id=abc;; x=1", NULL},
        {"v=STSv1; =abc; id=a", NULL},
        {"v=STSv1; _x=1; id=a", NULL}, /* ext-name starts with alnum */
        {"v=STSv1; x=a=b; id=a", NULL},
        {"v=STSv1; id=abc; ext=\x01", NULL},
        {"v=STSv1; ID=abc", NULL}, /* %s"id=" */
    };

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct mta_sts_txt t;
        const char *why = NULL;
        int rc = mta_sts_txt_parse(rows[i].text, strlen(rows[i].text), &t, &why);

        if (rows[i].id != NULL) {
            if (rc != MTA_STS_OK)
                fail_msg("row %zu \"%s\": %s", i, rows[i].text, why);
            assert_string_equal(t.id, rows[i].id);
        } else {
            if (rc != MTA_STS_ERR)
                fail_msg("row %zu \"%s\": accepted", i, rows[i].text);
            assert_non_null(why);
        }
    }
    /* On failure nothing of the record is handed out. */
    struct mta_sts_txt u;
    assert_int_equal(mta_sts_txt_parse("v=STSv1; id=abc; x", 18, &u, NULL), MTA_STS_ERR);
    assert_string_equal(u.id, "");
    /* The text is not NUL-terminated: the id ends where len says. */
    struct mta_sts_txt t;
    assert_int_equal(mta_sts_txt_parse("v=STSv1; id=abcdef", 15, &t, NULL), MTA_STS_OK);
    assert_string_equal(t.id, "abc");
}

static void test_txt_select(void **state)
{
    uint8_t w[4][300];
    const uint8_t *rd[4] = {w[0], w[1], w[2], w[3]};
    size_t len[4];
    struct mta_sts_txt t;
    const char *why;
    static const char *sts[] = {"v=STSv1; ", "id=one", NULL};
    static const char *spf[] = {"v=spf1 -all", NULL};
    static const char *sts2[] = {"v=STSv1; id=two", NULL};
    static const char *bad[] = {"v=STSv1; id=no good", NULL};
    static const char *prefix[] = {"v=STSv10; id=x", NULL};

    len[0] = rdata(w[0], 300, spf);
    len[1] = rdata(w[1], 300, sts);
    assert_int_equal(mta_sts_txt_select(rd, len, 2, &t, &why), MTA_STS_OK);
    assert_string_equal(t.id, "one");
    /* Two STSv1 records: no policy (§3.1), whichever is valid. */
    len[2] = rdata(w[2], 300, sts2);
    assert_int_equal(mta_sts_txt_select(rd, len, 3, &t, &why), MTA_STS_ERR);
    assert_non_null(strstr(why, "several"));
    /* None at all, or only non-STS ones. */
    assert_int_equal(mta_sts_txt_select(rd, len, 0, &t, &why), MTA_STS_ERR);
    assert_int_equal(mta_sts_txt_select(rd, len, 1, &t, &why), MTA_STS_ERR);
    /* "v=STSv10" does not begin with "v=STSv1;": discarded. */
    len[0] = rdata(w[0], 300, prefix);
    assert_int_equal(mta_sts_txt_select(rd, len, 2, &t, &why), MTA_STS_OK);
    assert_string_equal(t.id, "one");
    /* The single STSv1 record is invalid: no policy. */
    len[1] = rdata(w[1], 300, bad);
    assert_int_equal(mta_sts_txt_select(rd, len, 2, &t, &why), MTA_STS_ERR);
    /* A record longer than MTA_STS_TXT_MAX still counts: with another it
     * makes two, alone it is invalid. */
    static uint8_t big[5200];
    const uint8_t *rd2[2] = {big, w[1]};
    size_t len2[2] = {0, 0};
    memcpy(big, "\x08v=STSv1;", 9);
    for (len2[0] = 9; len2[0] + 256 <= sizeof(big); len2[0] += 256) {
        big[len2[0]] = 255;
        memset(big + len2[0] + 1, 'x', 255);
    }
    len2[1] = rdata(w[1], 300, sts);
    assert_int_equal(mta_sts_txt_select(rd2, len2, 2, &t, &why), MTA_STS_ERR);
    assert_non_null(strstr(why, "several"));
    assert_int_equal(mta_sts_txt_select(rd2, len2, 1, &t, &why), MTA_STS_ERR);
    assert_non_null(strstr(why, "longer"));
    /* A broken RDATA is discarded, not fatal. */
    w[3][0] = 200, w[3][1] = 'v', len[3] = 2;
    len[1] = rdata(w[1], 300, sts);
    rd[0] = w[3], len[0] = len[3];
    assert_int_equal(mta_sts_txt_select(rd, len, 2, &t, &why), MTA_STS_OK);
}

struct policy_row {
    const char *text;
    int mode; /* -1: invalid */
    uint32_t max_age;
    size_t n_mx;
    const char *mx0;
};

static void check_policy(const struct policy_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        static struct mta_sts_policy p;
        const char *why = NULL;
        int rc = mta_sts_policy_parse(rows[i].text, strlen(rows[i].text), &p, &why);

        if (rows[i].mode < 0) {
            if (rc != MTA_STS_ERR)
                fail_msg("row %zu: accepted:\n%s", i, rows[i].text);
            assert_non_null(why);
            continue;
        }
        if (rc != MTA_STS_OK)
            fail_msg("row %zu: %s:\n%s", i, why, rows[i].text);
        assert_int_equal(p.mode, rows[i].mode);
        assert_int_equal(p.max_age, rows[i].max_age);
        assert_int_equal(p.n_mx, rows[i].n_mx);
        if (rows[i].mx0 != NULL)
            assert_string_equal(p.mx[0], rows[i].mx0);
    }
}

static void test_policy_parse(void **state)
{
    static const struct policy_row rows[] = {
        /* §3.2's example, CRLF and LF */
        {"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
         "mx: backupmx.example.com\r\nmax_age: 604800\r\n",
         MTA_STS_MODE_ENFORCE, 604800, 3, "mail.example.com"},
        {"version: STSv1\nmode: testing\nmx: MX.Example.COM.\nmax_age: 86400", MTA_STS_MODE_TESTING,
         86400, 1, "mx.example.com"},
        /* any order; whitespace after ":" and at the end; blank lines */
        {"max_age:0\nmx:\t a.example  \n\nmode: enforce\nversion: STSv1 \n\n\n",
         MTA_STS_MODE_ENFORCE, 0, 1, "a.example"},
        /* mode none needs no mx */
        {"version: STSv1\nmode: none\nmax_age: 1\n", MTA_STS_MODE_NONE, 1, 0, NULL},
        /* repeated non-mx fields: the first wins, the rest are not read */
        {"version: STSv1\nmode: testing\nmode: bogus\nmax_age: 5\nmax_age: x\nversion: 9\n"
         "mx: a.example\n",
         MTA_STS_MODE_TESTING, 5, 1, "a.example"},
        /* duplicate mx kept once; unknown keys ignored */
        {"version: STSv1\nmode: enforce\nmx: a.example\nmx: A.EXAMPLE\nfoo_bar: anything at all\n"
         "x-1.y: \xc3\xa9t\xc3\xa9\nmax_age: 10\n",
         MTA_STS_MODE_ENFORCE, 10, 1, "a.example"},
        /* max_age: ten digits allowed, clamped to 31557600 */
        {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 9999999999\n",
         MTA_STS_MODE_ENFORCE, 31557600, 1, NULL},
        {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557600\n", MTA_STS_MODE_ENFORCE,
         31557600, 1, NULL},
        {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 0000000042\n",
         MTA_STS_MODE_ENFORCE, 42, 1, NULL},
        /* invalid */
        {"", -1, 0, 0, NULL},
        {"mode: enforce\nmx: a.example\nmax_age: 1\n", -1, 0, 0, NULL},     /* no version */
        {"version: STSv1\nmx: a.example\nmax_age: 1\n", -1, 0, 0, NULL},    /* no mode */
        {"version: STSv1\nmode: enforce\nmx: a.example\n", -1, 0, 0, NULL}, /* no max_age */
        {"version: STSv1\nmode: enforce\nmax_age: 1\n", -1, 0, 0, NULL},    /* no mx */
        {"version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", -1, 0, 0, NULL},
        {"version: stsv1\nmode: enforce\nmx: a.example\nmax_age: 1\n", -1, 0, 0, NULL},
        {"version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n", -1, 0, 0, NULL},
        {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n", -1, 0, 0, NULL},
        {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", -1, 0, 0, NULL},
        {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1 2\n", -1, 0, 0, NULL},
        {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age:\n", -1, 0, 0, NULL},
        {"version : STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n", -1, 0, 0, NULL},
        {" version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n", -1, 0, 0, NULL},
        {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\ngarbage\n", -1, 0, 0, NULL},
        {"version: STSv1\rmode: enforce\nmx: a.example\nmax_age: 1\n", -1, 0, 0, NULL},
        {"Version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n", -1, 0, 0, NULL},
        /* bad mx patterns */
        {"version: STSv1\nmode: enforce\nmx: a.*.example\nmax_age: 1\n", -1, 0, 0, NULL},
        {"version: STSv1\nmode: enforce\nmx: *example.com\nmax_age: 1\n", -1, 0, 0, NULL},
        {"version: STSv1\nmode: enforce\nmx: *.\nmax_age: 1\n", -1, 0, 0, NULL},
        {"version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n", -1, 0, 0, NULL},
        {"version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n", -1, 0, 0, NULL},
        {"version: STSv1\nmode: enforce\nmx: -a.example\nmax_age: 1\n", -1, 0, 0, NULL},
        {"version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1\n", -1, 0, 0, NULL},
        {"version: STSv1\nmode: enforce\nmx: a_b.example\nmax_age: 1\n", -1, 0, 0, NULL},
        {"version: STSv1\nmode: enforce\nmx: a b.example\nmax_age: 1\n", -1, 0, 0, NULL},
        {"version: STSv1\nmode: enforce\nmx:\nmax_age: 1\n", -1, 0, 0, NULL},
    };

    check_policy(rows, sizeof(rows) / sizeof(rows[0]));

    struct mta_sts_policy p;
    const char *t = "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999\n";
    assert_int_equal(mta_sts_policy_parse(t, strlen(t), &p, NULL), MTA_STS_OK);
    assert_true(p.max_age_clamped);
    t = "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557600\n";
    assert_int_equal(mta_sts_policy_parse(t, strlen(t), &p, NULL), MTA_STS_OK);
    assert_false(p.max_age_clamped);
    /* A NUL inside is a control character, not the end. */
    static const char nul[] = "version: STSv1\nmode: none\nmax_age: 1\nx: a\0b\n";
    assert_int_equal(mta_sts_policy_parse(nul, sizeof(nul) - 1, &p, NULL), MTA_STS_ERR);
}

static void test_policy_bounds(void **state)
{
    static char text[MTA_STS_POLICY_MAX + 64];
    struct mta_sts_policy p;
    size_t n;
    const char *why;

    /* 64 distinct mx patterns are kept; a 65th makes the policy invalid. */
    n = (size_t)sprintf(text, "version: STSv1\nmode: enforce\nmax_age: 1\n");
    for (int i = 0; i < MTA_STS_MX_MAX; i++)
        n += (size_t)sprintf(text + n, "mx: mx%d.example\n", i);
    assert_int_equal(mta_sts_policy_parse(text, n, &p, &why), MTA_STS_OK);
    assert_int_equal(p.n_mx, MTA_STS_MX_MAX);
    assert_string_equal(p.mx[63], "mx63.example");
    n += (size_t)sprintf(text + n, "mx: mx0.example\n"); /* a repeat takes no slot */
    assert_int_equal(mta_sts_policy_parse(text, n, &p, &why), MTA_STS_OK);
    n += (size_t)sprintf(text + n, "mx: one-more.example\n");
    assert_int_equal(mta_sts_policy_parse(text, n, &p, &why), MTA_STS_ERR);
    assert_non_null(strstr(why, "64"));

    /* A line of 1024 octets passes, 1025 does not; CR not counted. */
    n = (size_t)sprintf(text, "version: STSv1\nmode: none\nmax_age: 1\nx: ");
    memset(text + n, 'a', 1024 - 3);
    n += 1024 - 3;
    memcpy(text + n, "\r\n", 2);
    assert_int_equal(mta_sts_policy_parse(text, n + 2, &p, &why), MTA_STS_OK);
    text[n] = 'a';
    assert_int_equal(mta_sts_policy_parse(text, n + 1, &p, &why), MTA_STS_ERR);

    /* 64 KiB is the cap; more is refused before reading. */
    n = (size_t)sprintf(text, "version: STSv1\nmode: none\nmax_age: 1\n");
    memset(text + n, '\n', sizeof(text) - n);
    assert_int_equal(mta_sts_policy_parse(text, MTA_STS_POLICY_MAX, &p, &why), MTA_STS_OK);
    assert_int_equal(mta_sts_policy_parse(text, MTA_STS_POLICY_MAX + 1, &p, &why), MTA_STS_ERR);

    /* A 253-octet name is a valid pattern; 254 is not. */
    char name[300];
    for (int i = 0; i < 4; i++)
        memset(name + i * 64, 'a', 63), name[i * 64 + 63] = '.';
    name[253] = '\0'; /* 63.63.63.61 */
    assert_true(mta_sts_pattern_valid(name, 253));
    assert_false(mta_sts_pattern_valid(name, 254));
    memset(name, 'b', 64);
    assert_false(mta_sts_pattern_valid(name, 64)); /* a 64-octet label */
}

static void test_mx_match(void **state)
{
    static const struct {
        const char *pattern, *host;
        bool match;
    } rows[] = {
        {"mail.example.com", "mail.example.com", true},
        {"mail.example.com", "MAIL.Example.Com", true},
        {"mail.example.com", "mail.example.com.", true}, /* trailing dot ignored */
        {"mail.example.com", "mail.example.com..", false},
        {"mail.example.com", "mail.example.co", false},
        {"mail.example.com", "xmail.example.com", false},
        {"mail.example.com", "example.com", false},
        {"*.example.com", "mx1.example.com", true}, /* §4.1's example */
        {"*.example.com", "MX1.EXAMPLE.COM.", true},
        {"*.example.com", "example.com", false},     /* one label, not zero */
        {"*.example.com", "a.b.example.com", false}, /* nor two */
        {"*.example.com", ".example.com", false},
        {"*.example.com", "mx1.example.org", false},
        {"*.example.com", "mx1xexample.com", false},
        {"*.example.com", "*.example.com", false}, /* a host is no pattern */
        {"*.example.com", "-x.example.com", false},
        {"*.example.com", "", false},
    };

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        bool got = mta_sts_mx_match(rows[i].pattern, rows[i].host, strlen(rows[i].host));
        if (got != rows[i].match)
            fail_msg("row %zu: %s vs %s: %d", i, rows[i].pattern, rows[i].host, got);
    }
    /* Length, not NUL, ends the host; an embedded NUL never matches. */
    assert_true(mta_sts_mx_match("a.example", "a.examplezzz", 9));
    assert_false(mta_sts_mx_match("a.example", "a.example\0", 10));

    struct mta_sts_policy p;
    const char *t = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\n"
                    "max_age: 60\n";
    assert_int_equal(mta_sts_policy_parse(t, strlen(t), &p, NULL), MTA_STS_OK);
    assert_true(mta_sts_policy_allows(&p, "mail.example.com", 16));
    assert_true(mta_sts_policy_allows(&p, "mx2.example.net", 15));
    assert_false(mta_sts_policy_allows(&p, "example.net", 11));
    assert_false(mta_sts_policy_allows(&p, "evil.example.org", 16));
    t = "version: STSv1\nmode: none\nmax_age: 60\n";
    assert_int_equal(mta_sts_policy_parse(t, strlen(t), &p, NULL), MTA_STS_OK);
    assert_false(mta_sts_policy_allows(&p, "mail.example.com", 16));
}

static void test_names(void **state)
{
    assert_string_equal(mta_sts_mode_str(MTA_STS_MODE_ENFORCE), "enforce");
    assert_int_equal(mta_sts_mode_parse("testing", 7), MTA_STS_MODE_TESTING);
    assert_int_equal(mta_sts_mode_parse("none", 4), MTA_STS_MODE_NONE);
    assert_int_equal(mta_sts_mode_parse("nonex", 5), -1);
    assert_int_equal(mta_sts_mode_parse("non", 3), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_txt_concat),    cmocka_unit_test(test_txt_parse),
        cmocka_unit_test(test_txt_select),    cmocka_unit_test(test_policy_parse),
        cmocka_unit_test(test_policy_bounds), cmocka_unit_test(test_mx_match),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
