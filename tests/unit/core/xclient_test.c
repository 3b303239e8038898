/* xclient: the XCLIENT line and its NAME attribute. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "proxy/core/xclient.h"

static struct sockaddr_in v4(const char *ip, unsigned port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

static void test_names(void **state)
{
    char out[XCLIENT_LINE_MAX];
    struct sockaddr_in a = v4("192.0.2.7", 40512);
    const struct sockaddr *sa = (const struct sockaddr *)&a;

    (void)state;
    assert_int_equal(xclient_line(out, sizeof(out), sa, "mail.example.org"),
                     strlen("XCLIENT ADDR=192.0.2.7 PORT=40512 NAME=mail.example.org\r\n"));
    assert_string_equal(out, "XCLIENT ADDR=192.0.2.7 PORT=40512 NAME=mail.example.org\r\n");
    xclient_line(out, sizeof(out), sa, NULL);
    assert_string_equal(out, "XCLIENT ADDR=192.0.2.7 PORT=40512 NAME=[UNAVAILABLE]\r\n");
    xclient_line(out, sizeof(out), sa, XCLIENT_NAME_TEMPUNAVAIL);
    assert_string_equal(out, "XCLIENT ADDR=192.0.2.7 PORT=40512 NAME=[TEMPUNAVAIL]\r\n");
    /* Never anything that could be another attribute or command. */
    xclient_line(out, sizeof(out), sa, "evil.example LOGIN=root");
    assert_string_equal(out, "XCLIENT ADDR=192.0.2.7 PORT=40512 NAME=[UNAVAILABLE]\r\n");
    xclient_line(out, sizeof(out), sa, "x\r\nMAIL FROM:<a>");
    assert_string_equal(out, "XCLIENT ADDR=192.0.2.7 PORT=40512 NAME=[UNAVAILABLE]\r\n");
    xclient_line(out, sizeof(out), sa, "");
    assert_string_equal(out, "XCLIENT ADDR=192.0.2.7 PORT=40512 NAME=[UNAVAILABLE]\r\n");
    /* A full-length name fits. */
    char name[254];
    for (size_t i = 0; i < sizeof(name) - 1; i++)
        name[i] = (i % 64 == 63) ? '.' : 'a';
    name[sizeof(name) - 1] = '\0';
    assert_true(xclient_line(out, sizeof(out), sa, name) > 0);
    assert_int_equal(xclient_line(out, 20, sa, "mail.example.org"), 0);
}

static void test_ipv6(void **state)
{
    char out[XCLIENT_LINE_MAX];
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(25)};

    (void)state;
    inet_pton(AF_INET6, "2001:db8::1", &a.sin6_addr);
    xclient_line(out, sizeof(out), (const struct sockaddr *)&a, "mail.example.org");
    assert_string_equal(out, "XCLIENT ADDR=IPV6:2001:db8::1 PORT=25 NAME=mail.example.org\r\n");
    struct sockaddr other = {.sa_family = AF_UNIX};
    assert_int_equal(xclient_line(out, sizeof(out), &other, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_ipv6),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
