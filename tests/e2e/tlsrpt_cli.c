/*
 * tlsrpt_cli: the TLS-RPT service (proxy/service/tlsrpt_store, tlsrpt_send)
 * from the command line, for tests/e2e/test_tls_rpt.py: records attempts as
 * the outbound sessions would, and sends the reports of a given day now
 * (the daemon's own schedule waits for the day to end).
 *
 *   tlsrpt_cli record DIR [--redis IP:PORT]
 *                                    day-file lines ("tlsrpt1 ...") on stdin,
 *                                    each recorded through tlsrpt_record();
 *                                    lines "policy s TEXT" / "policy m TEXT"
 *                                    before one give its policy-string / mx
 *   tlsrpt_cli send --dir DIR --day YYYY-MM-DD --contact ADDR [--org NAME]
 *                   [--submit IP:PORT] [--ca FILE] --dns IP:PORT
 *                   [--trust-anchor FILE] [--timeout-ms N] [--redis IP:PORT]
 *
 * --redis: as with mta_sts.redis, record also counts in Redis (the queue
 * drained before exit) and send reports the fleet's counts of the domains
 * whose lock it takes. record prints "recorded=N refused=M"; send prints
 * "domains=N sent=N already=N none=N failed=N locked=N". Exit 0, 1 when
 * something failed, 2 for bad usage or setup.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "proxy/net/resolver.h"
#include "proxy/obs/log.h"
#include "proxy/policy/tlsrpt.h"
#include "proxy/service/tlsrpt_redis.h"
#include "proxy/service/tlsrpt_send.h"
#include "proxy/service/tlsrpt_store.h"
#include "proxy/tls/tls.h"

static int exit_code = 2;

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
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, ip, &sin->sin_addr) == 1 ? 0 : -1;
}

/* "IP:PORT" into ip (cap bytes) and *port. */
static int split_redis(const char *s, char *ip, size_t cap, int *port)
{
    const char *colon = strrchr(s, ':');

    if (colon == NULL || (size_t)(colon - s) >= cap)
        return -1;
    memcpy(ip, s, (size_t)(colon - s));
    ip[colon - s] = '\0';
    *port = (int)strtol(colon + 1, NULL, 10);
    return *port > 0 && *port <= 65535 ? 0 : -1;
}

static int record(const char *dir, const char *redis)
{
    struct tlsrpt_redis_counter *counter = NULL;
    char err[256], line[TLSRPT_LINE_MAX + 2];
    struct tlsrpt_store *s = tlsrpt_store_open(dir, 0, (int64_t)time(NULL), err, sizeof(err));
    unsigned ok = 0, refused = 0;
    static char text[2][TLSRPT_POLICY_LINES][TLSRPT_POLICY_LINE_MAX + 1];
    const char *strings[TLSRPT_POLICY_LINES], *mx[TLSRPT_POLICY_LINES];
    struct tlsrpt_policy_text pol = {.strings = strings, .mx = mx};
    bool have_policy = false;

    if (s == NULL) {
        fprintf(stderr, "tlsrpt_cli: %s\n", err);
        return 2;
    }
    if (redis != NULL) {
        char ip[64];
        int port;
        if (split_redis(redis, ip, sizeof(ip), &port) != 0 ||
            (counter = tlsrpt_redis_counter_start(ip, port)) == NULL) {
            fprintf(stderr, "tlsrpt_cli: --redis %s\n", redis);
            return 2;
        }
        tlsrpt_store_set_counter(s, counter);
    }
    while (fgets(line, sizeof(line), stdin) != NULL) {
        if (strncmp(line, "policy ", 7) == 0 && (line[7] == 's' || line[7] == 'm') &&
            line[8] == ' ') {
            size_t *n = line[7] == 's' ? &pol.n_strings : &pol.n_mx;
            const char **v = line[7] == 's' ? strings : mx;
            if (*n < TLSRPT_POLICY_LINES) {
                char *t = text[line[7] == 's'][*n];
                snprintf(t, TLSRPT_POLICY_LINE_MAX + 1, "%s", line + 9);
                t[strcspn(t, "\n")] = '\0';
                v[(*n)++] = t;
                have_policy = true;
            }
            continue;
        }
        struct tlsrpt_attempt a;
        size_t used;
        const char *why;
        if (tlsrpt_line_parse(line, strlen(line), &a, &used, &why) != TLSRPT_OK) {
            fprintf(stderr, "tlsrpt_cli: %s: %s", why, line);
            refused++;
            continue;
        }
        if (tlsrpt_record_policy(s, &a, have_policy ? &pol : NULL) == 0)
            ok++;
        else
            refused++;
        have_policy = false;
        pol.n_strings = pol.n_mx = 0;
    }
    tlsrpt_store_close(s);
    uint64_t dropped = tlsrpt_redis_counter_stop(counter, 10000);
    if (counter != NULL)
        printf("redis_dropped=%llu\n", (unsigned long long)dropped);
    printf("recorded=%u refused=%u\n", ok, refused);
    return refused == 0 ? 0 : 1;
}

static void on_sent(void *arg, const struct tlsrpt_send_result *r)
{
    (void)arg;
    printf("domains=%u sent=%u already=%u none=%u failed=%u locked=%u\n", r->domains, r->sent,
           r->already, r->nothing, r->failed, r->locked);
    fflush(stdout);
    exit_code = r->failed == 0 ? 0 : 1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: tlsrpt_cli record DIR [--redis IP:PORT]\n"
            "       tlsrpt_cli send --dir DIR --day YYYY-MM-DD --contact ADDR [--org NAME]\n"
            "                       [--submit IP:PORT] [--ca FILE] --dns IP:PORT\n"
            "                       [--trust-anchor FILE] [--timeout-ms N] [--redis IP:PORT]\n");
    exit(2);
}

static int send_day(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"dir", required_argument, NULL, 'd'},
        {"day", required_argument, NULL, 'D'},
        {"contact", required_argument, NULL, 'c'},
        {"org", required_argument, NULL, 'o'},
        {"submit", required_argument, NULL, 's'},
        {"ca", required_argument, NULL, 'a'},
        {"dns", required_argument, NULL, 'n'},
        {"trust-anchor", required_argument, NULL, 't'},
        {"timeout-ms", required_argument, NULL, 'T'},
        {"redis", required_argument, NULL, 'R'},
        {NULL, 0, NULL, 0},
    };
    struct tlsrpt_send_options o = {0};
    struct resolver_options ro = {0};
    struct sockaddr_storage submit;
    const char *day_text = NULL, *ca = NULL;
    char err[256] = "";
    int c;

    ro.dnssec = RESOLVER_DNSSEC_OFF;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            o.directory = optarg;
            break;
        case 'D':
            day_text = optarg;
            break;
        case 'c':
            o.contact = optarg;
            break;
        case 'o':
            o.organization = optarg;
            break;
        case 's':
            if (parse_addr(optarg, &submit) != 0)
                usage();
            o.submit = (const struct sockaddr *)&submit;
            break;
        case 'a':
            ca = optarg;
            break;
        case 'n':
            if (ro.nservers >= RESOLVER_MAX_SERVERS ||
                parse_addr(optarg, &ro.servers[ro.nservers].sa) != 0)
                usage();
            ro.servers[ro.nservers].salen = sizeof(struct sockaddr_in);
            ro.servers[ro.nservers].port =
                ntohs(((struct sockaddr_in *)&ro.servers[ro.nservers].sa)->sin_port);
            ro.nservers++;
            break;
        case 't':
            ro.trust_anchor = optarg;
            ro.dnssec = RESOLVER_DNSSEC_VALIDATE;
            break;
        case 'T':
            o.timeout_ms = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'R': {
            char ip[64];
            int port;
            if (o.redis != NULL || split_redis(optarg, ip, sizeof(ip), &port) != 0 ||
                (o.redis = tlsrpt_redis_new(ip, port, NULL)) == NULL)
                usage();
            break;
        }
        default:
            usage();
        }
    }
    struct tm tm = {0};
    if (o.directory == NULL || o.contact == NULL || day_text == NULL || ro.nservers == 0 ||
        strptime(day_text, "%Y-%m-%d", &tm) == NULL)
        usage();
    int64_t day = tlsrpt_day((int64_t)timegm(&tm));

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct resolver *r = resolver_new(&loop, &ro, err, sizeof(err));
    if (r == NULL) {
        fprintf(stderr, "tlsrpt_cli: resolver: %s\n", err);
        return 2;
    }
    o.resolver = r;
    if (ca != NULL) {
        struct tls_options to = {.min_version = 12, .ca_file = (char *)ca};
        if ((o.tls = tls_ctx_client_new(&to, err, sizeof(err))) == NULL) {
            fprintf(stderr, "tlsrpt_cli: tls: %s\n", err);
            return 2;
        }
    }
    int rc;
    struct tlsrpt_send *j = tlsrpt_send_day(&loop, &o, day, on_sent, NULL, &rc);
    if (j == NULL) {
        fprintf(stderr, "tlsrpt_cli: send: %s\n", uv_strerror(rc));
        return 2;
    }
    /* The job holds its own reference to the context. */
    tls_ctx_unref(o.tls);
    /* The job's callback is its last use of the resolver. */
    while (exit_code == 2 && uv_run(&loop, UV_RUN_ONCE) != 0)
        ;
    resolver_close(r);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    tlsrpt_redis_free(o.redis);
    return exit_code;
}

int main(int argc, char **argv)
{
    log_init(LOG_LEVEL_DEBUG, LOG_FORMAT_TEXT);
    if (argc == 3 && strcmp(argv[1], "record") == 0)
        return record(argv[2], NULL);
    if (argc == 5 && strcmp(argv[1], "record") == 0 && strcmp(argv[3], "--redis") == 0)
        return record(argv[2], argv[4]);
    if (argc >= 2 && strcmp(argv[1], "send") == 0)
        return send_day(argc - 1, argv + 1);
    usage();
    return 2;
}
