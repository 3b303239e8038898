/*
 * listener: binding (probe without SO_REUSEPORT, SO_REUSEPORT sockets) and
 * the accept loop handing descriptors to the owner.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "proxy/net/listener.h"
#include "proxy/obs/log.h"

static void loopback(struct addr *a, int port)
{
    memset(a, 0, sizeof(*a));
    uv_ip4_addr("127.0.0.1", port, (struct sockaddr_in *)&a->sa);
    a->salen = sizeof(struct sockaddr_in);
    snprintf(a->host, sizeof(a->host), "127.0.0.1");
    a->port = (unsigned short)port;
}

static int bound_port(int fd)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);

    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    return ntohs(sin.sin_port);
}

/* A second SO_REUSEPORT socket binds the same address (as every worker
 * does), but the probe, without SO_REUSEPORT, finds it taken and says so. */
static void test_probe_finds_reuseport_holder(void **state)
{
    struct addr a;
    char msg[256];
    int fd1, fd2;

    (void)state;
    loopback(&a, 0);
    assert_int_equal(listener_socket("t", &a, &fd1, msg, sizeof(msg)), 0);
    loopback(&a, bound_port(fd1));
    assert_int_equal(listener_socket("t", &a, &fd2, msg, sizeof(msg)), 0);
    assert_int_equal(listener_probe("mx", &a, msg, sizeof(msg)), UV_EADDRINUSE);
    char want[64];
    snprintf(want, sizeof(want), "listener mx: cannot listen on 127.0.0.1:%u", a.port);
    assert_non_null(strstr(msg, want));
    assert_non_null(strstr(msg, "address already in use"));
    close(fd1);
    close(fd2);
    /* Free again: the probe succeeds and leaves nothing bound. */
    assert_int_equal(listener_probe("mx", &a, msg, sizeof(msg)), 0);
    assert_int_equal(listener_probe("mx", &a, msg, sizeof(msg)), 0);
}

struct accept_fixture {
    struct listener *l;
    int accepted;
};

static void on_accept(struct listener *l, int fd)
{
    struct accept_fixture *f = l->owner;

    f->accepted++;
    close(fd);
    if (f->accepted == 3)
        listener_close(l);
}

static void test_accepts_and_closes(void **state)
{
    struct accept_fixture f = {0};
    struct addr a;
    char msg[256];
    int fd, err, clients[3];
    uv_loop_t loop;

    (void)state;
    uv_loop_init(&loop);
    loopback(&a, 0);
    assert_int_equal(listener_socket("t", &a, &fd, msg, sizeof(msg)), 0);
    int port = bound_port(fd);
    f.l = listener_start(&loop, fd, NULL, "t", on_accept, &f, &err);
    assert_non_null(f.l);
    for (int i = 0; i < 3; i++) {
        struct sockaddr_in sin;
        uv_ip4_addr("127.0.0.1", port, &sin);
        clients[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(connect(clients[i], (struct sockaddr *)&sin, sizeof(sin)), 0);
    }
    /* Runs until the listener closed itself after the third connection
     * and its handles are gone. */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(f.accepted, 3);
    for (int i = 0; i < 3; i++)
        close(clients[i]);
    /* The socket was closed with the listener: the address is free. */
    loopback(&a, port);
    assert_int_equal(listener_probe("t", &a, msg, sizeof(msg)), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe_finds_reuseport_holder),
        cmocka_unit_test(test_accepts_and_closes),
    };
    log_init(LOG_LEVEL_ERROR, LOG_FORMAT_TEXT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
