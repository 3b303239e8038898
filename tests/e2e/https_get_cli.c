/*
 * https_get_cli: one proxy/net/https_get fetch from the command line, for
 * tests/e2e/test_https_get.py (and by hand against a policy host):
 *
 *   https_get_cli --ca FILE --host NAME [--connect IP:PORT] [--port N]
 *                 [--path PATH] [--connect-ms N] [--handshake-ms N]
 *                 [--total-ms N] [--body-max N]
 *
 * Without --connect, NAME is looked up through the nameservers of
 * /etc/resolv.conf (no DNSSEC). Prints one line
 *   status=ok http_status=200 body_len=67 ms=12 why="ok"
 * then, for a success, an empty line and the body. Exit 0 for ok, 1 for any
 * failure of the fetch, 2 for bad usage or setup.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "proxy/net/https_get.h"
#include "proxy/net/resolver.h"
#include "proxy/tls/tls.h"

static uint64_t started;
static int exit_code = 2;

static void on_done(struct https_get *g, const struct https_get_result *r)
{
    uv_loop_t *loop = g->data;

    printf("status=%s http_status=%d body_len=%zu ms=%llu why=\"%s\"\n",
           https_get_status_str(r->status), r->http_status, r->body_len,
           (unsigned long long)(uv_now(loop) - started), r->why);
    if (r->status == HTTPS_GET_OK) {
        printf("\n");
        fwrite(r->body, 1, r->body_len, stdout);
    }
    fflush(stdout);
    exit_code = r->status == HTTPS_GET_OK ? 0 : 1;
}

/* "IP:PORT" or "[IPv6]:PORT". */
static int parse_addr(const char *s, struct sockaddr_storage *ss)
{
    char ip[64];
    const char *colon = strrchr(s, ':');

    if (colon == NULL || (size_t)(colon - s) >= sizeof(ip))
        return -1;
    memcpy(ip, s, (size_t)(colon - s));
    ip[colon - s] = '\0';
    long port = strtol(colon + 1, NULL, 10);
    if (port <= 0 || port > 65535)
        return -1;
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    size_t n = strlen(ip);
    if (n > 2 && ip[0] == '[' && ip[n - 1] == ']') {
        ip[n - 1] = '\0';
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        return inet_pton(AF_INET6, ip + 1, &sin6->sin6_addr) == 1 ? 0 : -1;
    }
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, ip, &sin->sin_addr) == 1 ? 0 : -1;
}

static void usage(void)
{
    fprintf(stderr, "usage: https_get_cli --ca FILE --host NAME [--connect IP:PORT] [--port N]\n"
                    "                     [--path PATH] [--connect-ms N] [--handshake-ms N]\n"
                    "                     [--total-ms N] [--body-max N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"ca", required_argument, NULL, 'a'},
        {"host", required_argument, NULL, 'h'},
        {"connect", required_argument, NULL, 'c'},
        {"port", required_argument, NULL, 'p'},
        {"path", required_argument, NULL, 'P'},
        {"connect-ms", required_argument, NULL, '1'},
        {"handshake-ms", required_argument, NULL, '2'},
        {"total-ms", required_argument, NULL, '3'},
        {"body-max", required_argument, NULL, '4'},
        {NULL, 0, NULL, 0},
    };
    struct https_get_limits lim = https_get_default_limits;
    const char *ca = NULL, *host = NULL, *connect = NULL, *path = "/.well-known/mta-sts.txt";
    long port = 443;
    int c;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            ca = optarg;
            break;
        case 'h':
            host = optarg;
            break;
        case 'c':
            connect = optarg;
            break;
        case 'p':
            port = strtol(optarg, NULL, 10);
            break;
        case 'P':
            path = optarg;
            break;
        case '1':
            lim.connect_ms = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case '2':
            lim.handshake_ms = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case '3':
            lim.total_ms = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case '4':
            lim.body_max = (size_t)strtoul(optarg, NULL, 10);
            break;
        default:
            usage();
        }
    }
    if (ca == NULL || host == NULL || optind != argc || port <= 0 || port > 65535)
        usage();

    struct sockaddr_storage ss;
    if (connect != NULL && parse_addr(connect, &ss) != 0) {
        fprintf(stderr, "https_get_cli: bad --connect %s\n", connect);
        return 2;
    }
    struct tls_options o;
    char err[512] = "";
    memset(&o, 0, sizeof(o));
    o.min_version = 12;
    o.ca_file = (char *)ca;
    struct tls_ctx *ctx = tls_ctx_client_new(&o, err, sizeof(err));
    if (ctx == NULL) {
        fprintf(stderr, "https_get_cli: %s\n", err);
        return 2;
    }
    uv_loop_t *loop = uv_default_loop();
    struct resolver *r = NULL;
    if (connect == NULL) {
        struct resolver_options ro;
        memset(&ro, 0, sizeof(ro));
        ro.dnssec = RESOLVER_DNSSEC_OFF;
        if ((r = resolver_new(loop, &ro, err, sizeof(err))) == NULL) {
            fprintf(stderr, "https_get_cli: %s\n", err);
            return 2;
        }
    }
    struct https_get g = {.data = loop};
    started = uv_now(loop);
    int rc = https_get_start(&g, loop, r, ctx, host, (uint16_t)port, path,
                             connect != NULL ? (const struct sockaddr *)&ss : NULL, &lim, on_done);
    if (rc != 0) {
        fprintf(stderr, "https_get_cli: %s\n", uv_strerror(rc));
        return 2;
    }
    while (https_get_active(&g) && uv_run(loop, UV_RUN_ONCE) != 0)
        ;
    resolver_close(r);
    uv_run(loop, UV_RUN_DEFAULT);
    tls_ctx_unref(ctx);
    if (uv_loop_close(loop) != 0) {
        fprintf(stderr, "https_get_cli: handles left on the loop\n");
        return 2;
    }
    return exit_code;
}
