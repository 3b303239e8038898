/*
 * Unit tests for the outbound dane and enforce keys of proxy/app/config.c:
 * their defaults, their values, and the errors (FILE:LINE) for DANE without
 * DNSSEC validation and for values of the wrong type.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/app/config.h"

static struct config *load_ok(const char *text)
{
    struct config *c = NULL;
    char err[4096];

    if (config_load_string(text, "t.conf", &c, err, sizeof err) != 0)
        fail_msg("unexpected errors:\n%s", err);
    assert_non_null(c);
    return c;
}

static void expect_err(const char *text, const char *want)
{
    struct config *c = (struct config *)1;
    char err[4096];
    int rc = config_load_string(text, "t.conf", &c, err, sizeof err);

    if (rc == 0)
        fail_msg("loaded, but expected: %s", want);
    assert_null(c);
    if (strcmp(err, want) != 0)
        fail_msg("got:\n%s\nwant:\n%s", err, want);
}

/* An outbound listener whose destination needs no lookup (so no trust
 * anchor is read), with extra keys. */
#define OUT(extra)                                                                                 \
    "outbound = ( { name = \"relay\"; listen = \"127.0.0.1:10025\";\n"                             \
    "  destination = \"192.0.2.25:25\";\n" extra " } );\n"

static void test_defaults(void **state)
{
    struct config *c = load_ok(OUT(""));

    assert_false(c->outbound[0].opts.dane);
    assert_true(c->outbound[0].opts.enforce);
    config_free(c);
}

static void test_values(void **state)
{
    struct config *c = load_ok(OUT("  dane = true; enforce = false;"));

    assert_true(c->outbound[0].opts.dane);
    assert_false(c->outbound[0].opts.enforce);
    config_free(c);
    /* With the original destination: accepted (the runtime warns that DANE
     * applies to fixed destinations only for now). */
    c = load_ok("outbound = ( { name = \"relay\"; listen = \"127.0.0.1:10025\";\n"
                "  destination = \"original\"; dane = true; } );\n");
    assert_true(c->outbound[0].opts.dane);
    assert_true(c->outbound[0].opts.original_dst);
    config_free(c);
}

static void test_dane_needs_dnssec(void **state)
{
    expect_err(OUT("  dane = true;") "resolver = { dnssec = \"off\"; };\n",
               "t.conf:3: outbound[0].dane: DANE needs DNSSEC-validated TLSA records, but "
               "resolver.dnssec is \"off\": set it to \"validate\"");
    /* dane = false with dnssec off is fine. */
    config_free(load_ok(OUT("  dane = false;") "resolver = { dnssec = \"off\"; };\n"));
    /* The second listener, on its own line. */
    expect_err("outbound = ( { name = \"a\"; listen = \"127.0.0.1:10025\"; },\n"
               "  { name = \"b\"; listen = \"127.0.0.1:10026\";\n"
               "    destination = \"192.0.2.25:25\";\n"
               "    dane = true; } );\n"
               "resolver = { dnssec = \"off\"; };\n",
               "t.conf:4: outbound[1].dane: DANE needs DNSSEC-validated TLSA records, but "
               "resolver.dnssec is \"off\": set it to \"validate\"");
}

static void test_wrong_types(void **state)
{
    expect_err(OUT("  dane = \"yes\";"), "t.conf:3: outbound[0].dane: expected true or false");
    expect_err(OUT("  enforce = 1;"), "t.conf:3: outbound[0].enforce: expected true or false");
    /* Not keys of an inbound listener. */
    expect_err("inbound = ( { name = \"in\"; listen = \"127.0.0.1:2525\";\n"
               "  backend = \"127.0.0.1:25\"; dane = true; } );\n",
               "t.conf:2: unknown key \"dane\" in inbound[0]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_dane_needs_dnssec),
        cmocka_unit_test(test_wrong_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
