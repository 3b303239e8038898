/* Unit tests for proxy/policy/rules.c: parsing a rule's match and choosing
 * the rule for a destination, without the configuration loader. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/policy/rules.h"

static struct policy_rule rule(const char *match, enum outbound_policy p)
{
    struct policy_rule r;
    char why[256];

    memset(&r, 0, sizeof(r));
    assert_int_equal(policy_rule_parse(match, match, &r, why, sizeof(why)), 0);
    r.match = (char *)match;
    r.policy = p;
    return r;
}

static struct sockaddr_storage ip(const char *text)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, text, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
        ss.ss_family = AF_INET;
    else if (inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
        ss.ss_family = AF_INET6;
    else
        fail_msg("not an address: %s", text);
    return ss;
}

static void test_parse_kinds(void **state)
{
    struct policy_rule r;
    char why[256];

    (void)state;
    assert_int_equal(policy_rule_parse("192.0.2.0/24", "x", &r, why, sizeof(why)), 0);
    assert_true(r.is_net);
    assert_int_equal(r.prefix, 24);
    assert_int_equal(policy_rule_parse("::ffff:192.0.2.0/120", "x", &r, why, sizeof(why)), 0);
    assert_true(r.is_net);
    assert_int_equal(r.net.ss_family, AF_INET);
    assert_int_equal(r.prefix, 24);
    assert_int_equal(policy_rule_parse(".example.net", "x", &r, why, sizeof(why)), 0);
    assert_false(r.is_net);
    assert_int_equal(policy_rule_parse("192.0.2.1/24", "192.0.2.1/24", &r, why, sizeof(why)), -1);
    assert_string_equal(why, "\"192.0.2.1/24\": address has bits set beyond the /24 prefix");
    assert_int_equal(policy_rule_parse("*.example.net", "*.example.net", &r, why, sizeof(why)),
                     -1);
    assert_int_equal(policy_rule_parse("exa mple", "exa mple", &r, why, sizeof(why)), -1);
}

/* Every message quotes the text as the caller made it safe, the suggestion
 * for "*." too: a raw newline there split a config error in two
 * (config_fuzz). */
static void test_parse_messages_use_shown_text(void **state)
{
    struct policy_rule r;
    char why[256];

    (void)state;
    assert_int_equal(policy_rule_parse("*.example.net", "*.example.net", &r, why, sizeof(why)),
                     -1);
    assert_string_equal(why, "\"*.example.net\": write \".example.net\" to match every name "
                             "below a domain");
    assert_int_equal(policy_rule_parse("*.ex\nple.net", "*.ex?ple.net", &r, why, sizeof(why)),
                     -1);
    assert_string_equal(why, "\"*.ex?ple.net\": write \".ex?ple.net\" to match every name "
                             "below a domain");
    assert_int_equal(policy_rule_parse("a\nb", "a?b", &r, why, sizeof(why)), -1);
    assert_null(strchr(why, '\n'));
}

static void test_precedence(void **state)
{
    struct policy_rule rules[] = {
        rule(".example.net", OUTBOUND_REQUIRED),
        rule(".mail.example.net", OUTBOUND_NONE),
        rule("192.0.2.0/24", OUTBOUND_VERIFY),
        rule("mx.example.net", OUTBOUND_OPPORTUNISTIC),
    };
    struct policy_table t = {.fallback = OUTBOUND_NONE, .rules = rules, .nrules = 4};
    struct sockaddr_storage in24 = ip("192.0.2.9"), other = ip("198.51.100.1");

    (void)state;
    /* An exact name beats an address, an address beats a suffix, the
     * longest suffix wins, names are case-insensitive without a trailing dot. */
    assert_int_equal(policy_for(&t, "MX.example.net.", (struct sockaddr *)&in24),
                     OUTBOUND_OPPORTUNISTIC);
    assert_int_equal(policy_for(&t, "a.example.net", (struct sockaddr *)&in24), OUTBOUND_VERIFY);
    assert_int_equal(policy_for(&t, "a.example.net", (struct sockaddr *)&other),
                     OUTBOUND_REQUIRED);
    assert_int_equal(policy_for(&t, "in.mail.example.net", (struct sockaddr *)&other),
                     OUTBOUND_NONE);
    /* A suffix matches names below the domain only. */
    assert_int_equal(policy_for(&t, "example.net", NULL), OUTBOUND_NONE);
    /* An IP literal is matched as an address; mapped IPv6 as IPv4. */
    assert_int_equal(policy_for(&t, "192.0.2.200", NULL), OUTBOUND_VERIFY);
    struct sockaddr_storage mapped = ip("::ffff:192.0.2.7");
    assert_int_equal(policy_for(&t, NULL, (struct sockaddr *)&mapped), OUTBOUND_VERIFY);
    assert_int_equal(policy_for(&t, NULL, NULL), OUTBOUND_NONE);
}

static void test_same_and_verifies(void **state)
{
    struct policy_rule a = rule("MX.example.net.", OUTBOUND_NONE);
    struct policy_rule b = rule("mx.example.net", OUTBOUND_VERIFY);
    struct policy_rule c = rule("::ffff:192.0.2.0/120", OUTBOUND_NONE);
    struct policy_rule d = rule("192.0.2.0/24", OUTBOUND_NONE);
    struct policy_table t = {.fallback = OUTBOUND_REQUIRED, .rules = &a, .nrules = 1};

    (void)state;
    assert_true(policy_rule_same(&a, &b));
    assert_true(policy_rule_same(&c, &d));
    assert_false(policy_rule_same(&a, &d));
    assert_false(policy_table_verifies(&t));
    t.rules = &b;
    assert_true(policy_table_verifies(&t));
    assert_string_equal(policy_str(OUTBOUND_VERIFY), "verify");
    assert_string_equal(policy_str(OUTBOUND_OPPORTUNISTIC), "opportunistic");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_kinds),
        cmocka_unit_test(test_parse_messages_use_shown_text),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_same_and_verifies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
