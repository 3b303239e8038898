/*
 * Tests of proxy/service/tlsrpt_submit.c over real sockets on 127.0.0.1:
 * the client on a libuv loop in the test's thread, the server a thread with
 * blocking sockets that answers from a script (one reply per command) and
 * records what it read. Checks the dialogue and the dot-stuffed message,
 * refusals, a silent server, a refused connect, an over-long reply line and
 * the arguments refused before anything starts.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "proxy/service/tlsrpt_submit.h"

struct server {
    const char *const *replies; /* greeting first, then one per command; NULL ends */
    bool silent;
    int lfd;
    uint16_t port;
    pthread_t th;
    char got[65536];
    size_t got_len;
};

/* Reads until the buffer holds a line end past have (or the data's end). */
static bool read_more(int fd, struct server *sv, bool data)
{
    size_t start = sv->got_len;

    for (;;) {
        if (sv->got_len >= sizeof(sv->got) - 1)
            return false;
        ssize_t n = recv(fd, sv->got + sv->got_len, sizeof(sv->got) - 1 - sv->got_len, 0);
        if (n <= 0)
            return false;
        sv->got_len += (size_t)n;
        sv->got[sv->got_len] = '\0';
        const char *from = sv->got + (start > 5 ? start - 5 : 0);
        if (data ? strstr(from, "\r\n.\r\n") != NULL : strstr(sv->got + start, "\r\n") != NULL)
            return true;
    }
}

static void *serve(void *arg)
{
    struct server *sv = arg;
    struct pollfd pfd = {.fd = sv->lfd, .events = POLLIN};

    if (poll(&pfd, 1, 10000) != 1)
        return NULL;
    int fd = accept(sv->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (sv->silent) {
        char b[256];
        while (recv(fd, b, sizeof(b), 0) > 0)
            ;
        close(fd);
        return NULL;
    }
    bool data = false;
    for (size_t i = 0; sv->replies[i] != NULL; i++) {
        if (i > 0 && !read_more(fd, sv, data))
            break;
        const char *r = sv->replies[i];
        if (send(fd, r, strlen(r), MSG_NOSIGNAL) < 0)
            break;
        data = strncmp(r, "354", 3) == 0;
    }
    read_more(fd, sv, false); /* whatever follows, until the client closes */
    close(fd);
    return NULL;
}

static void server_start(struct server *sv)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);

    sv->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(sv->lfd >= 0);
    assert_int_equal(bind(sv->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(sv->lfd, 4), 0);
    assert_int_equal(getsockname(sv->lfd, (struct sockaddr *)&sin, &len), 0);
    sv->port = ntohs(sin.sin_port);
    assert_int_equal(pthread_create(&sv->th, NULL, serve, sv), 0);
}

static void server_stop(struct server *sv)
{
    shutdown(sv->lfd, SHUT_RDWR);
    pthread_join(sv->th, NULL);
    close(sv->lfd);
}

struct got {
    int calls;
    int err;
    char why[1200];
};

static void on_done(void *arg, int err, const char *why)
{
    struct got *g = arg;

    g->calls++;
    g->err = err;
    snprintf(g->why, sizeof(g->why), "%s", why);
}

static struct got submit_to(uint16_t port, const char *msg, unsigned timeout_ms)
{
    uv_loop_t loop;
    struct got g = {0};
    struct sockaddr_in sin = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(tlsrpt_submit_start(&loop, (const struct sockaddr *)&sin, "example.org",
                                         "tlsrpt@example.org", "rua@example.net",
                                         (const uint8_t *)msg, strlen(msg), timeout_ms, on_done,
                                         &g),
                     0);
    assert_int_equal(g.calls, 0); /* never from inside the start */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(g.calls, 1);
    assert_int_equal(uv_loop_close(&loop), 0); /* nothing left on the loop */
    return g;
}

static const char *const ok_replies[] = {
    "220 submit.test ESMTP\r\n", "250-submit.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
    "250 2.1.0 ok\r\n",          "250 2.1.5 ok\r\n",
    "354 go ahead\r\n",          "250 2.0.0 queued as 1234\r\n",
    "221 2.0.0 bye\r\n",         NULL,
};

static void test_delivered(void **state)
{
    struct server sv = {.replies = ok_replies};

    (void)state;
    server_start(&sv);
    struct got g = submit_to(sv.port, "Subject: x\r\n\r\n.hidden\r\nlast line", 5000);
    server_stop(&sv);
    if (g.err != 0)
        fail_msg("%s", g.why);
    assert_string_equal(sv.got, "EHLO example.org\r\n"
                                "MAIL FROM:<tlsrpt@example.org>\r\n"
                                "RCPT TO:<rua@example.net>\r\n"
                                "DATA\r\n"
                                "Subject: x\r\n\r\n..hidden\r\nlast line\r\n.\r\n"
                                "QUIT\r\n");
}

/* A refusal at any step ends it, with the server's words in why. */
static void test_refused(void **state)
{
    const char *const rcpt[] = {"220 s\r\n", "250 s\r\n", "250 ok\r\n",
                                "550 5.1.1 no such user\r\n", NULL};
    const char *const greeting[] = {"421 4.3.2 busy\r\n", NULL};
    const char *const data_end[] = {"220 s\r\n",  "250 s\r\n",          "250 ok\r\n", "250 ok\r\n",
                                    "354 go\r\n", "452 4.3.1 full\r\n", NULL};
    struct server sv = {.replies = rcpt};

    (void)state;
    server_start(&sv);
    struct got g = submit_to(sv.port, "x\r\n", 5000);
    server_stop(&sv);
    assert_int_equal(g.err, UV_EPROTO);
    assert_string_equal(g.why, "RCPT refused: 550 5.1.1 no such user");

    struct server s2 = {.replies = greeting};
    server_start(&s2);
    g = submit_to(s2.port, "x\r\n", 5000);
    server_stop(&s2);
    assert_int_equal(g.err, UV_EPROTO);
    assert_string_equal(g.why, "greeting refused: 421 4.3.2 busy");

    struct server s3 = {.replies = data_end};
    server_start(&s3);
    g = submit_to(s3.port, "x\r\n", 5000);
    server_stop(&s3);
    assert_int_equal(g.err, UV_EPROTO);
    assert_string_equal(g.why, "message refused: 452 4.3.1 full");
}

static void test_silent_and_closed(void **state)
{
    struct server sv = {.silent = true};
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);

    (void)state;
    server_start(&sv);
    struct got g = submit_to(sv.port, "x\r\n", 300);
    server_stop(&sv);
    assert_int_equal(g.err, UV_ETIMEDOUT);
    assert_string_equal(g.why, "timed out at greeting");

    /* A port nobody listens on: bound, never listened. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    g = submit_to(ntohs(sin.sin_port), "x\r\n", 5000);
    close(fd);
    assert_int_equal(g.err, UV_ECONNREFUSED);
}

static void test_bad_replies(void **state)
{
    static char longline[TLSRPT_SUBMIT_LINE_MAX + 16];
    const char *const garbage[] = {"220 s\r\n", "hello\r\n", NULL};
    const char *const toolong[] = {longline, NULL};
    struct server sv = {.replies = garbage};

    (void)state;
    server_start(&sv);
    struct got g = submit_to(sv.port, "x\r\n", 5000);
    server_stop(&sv);
    assert_int_equal(g.err, UV_EPROTO);
    assert_string_equal(g.why, "a reply line out of form");

    memset(longline, 'a', sizeof(longline) - 3);
    memcpy(longline, "220-", 4);
    memcpy(longline + sizeof(longline) - 3, "\r\n", 3);
    struct server s2 = {.replies = toolong};
    server_start(&s2);
    g = submit_to(s2.port, "x\r\n", 5000);
    server_stop(&s2);
    assert_int_equal(g.err, UV_EPROTO);
    assert_string_equal(g.why, "a reply line too long");
}

static void test_invalid_arguments(void **state)
{
    uv_loop_t loop;
    struct sockaddr_in sin = {
        .sin_family = AF_INET, .sin_port = htons(25), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    const struct sockaddr *a = (const struct sockaddr *)&sin;
    struct got g = {0};

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    const char *bad[] = {"a@b\r\nRCPT TO:<x@y>", "a b@c", "nobody", "<a@b>", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(tlsrpt_submit_start(&loop, a, "h", bad[i], "r@x", (const uint8_t *)"m", 1,
                                             100, on_done, &g),
                         UV_EINVAL);
        assert_int_equal(tlsrpt_submit_start(&loop, a, "h", "f@x", bad[i], (const uint8_t *)"m", 1,
                                             100, on_done, &g),
                         UV_EINVAL);
    }
    assert_int_equal(tlsrpt_submit_start(&loop, a, "h\r\n", "f@x", "r@x", (const uint8_t *)"m", 1,
                                         100, on_done, &g),
                     UV_EINVAL);
    assert_int_equal(tlsrpt_submit_start(&loop, a, "h", "f@x", "r@x", NULL,
                                         TLSRPT_SUBMIT_MSG_MAX + 1, 100, on_done, &g),
                     UV_EINVAL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(g.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delivered),         cmocka_unit_test(test_refused),
        cmocka_unit_test(test_silent_and_closed), cmocka_unit_test(test_bad_replies),
        cmocka_unit_test(test_invalid_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
