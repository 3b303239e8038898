/*
 * mta_sts_cli: the MTA-STS policy service (proxy/service) from the command
 * line, for tests/e2e/test_mta_sts_svc.py:
 *
 *   mta_sts_cli --config FILE --domain NAME [--count N] [--rounds R]
 *               [--cancel K] [--port N] [--connect IP:PORT]
 *               [--sweep] [--clock-offset SECONDS] [--loops L]
 *
 * Loads FILE (its resolver and mta_sts blocks), then R times asks for the
 * policy of NAME N times at once on one loop, waits for every answer and
 * for any background refresh (--cancel: the first K requests of each round
 * are cancelled right after they start), and prints one line per answer:
 *   round=1 req=0 sync=0 result=policy fetch_failed=0 why="fetched" id=ID mode=enforce mx=a,b
 * and at the end
 *   txt_queries=1 fetches=1 refreshes=0
 * --sweep first runs the proactive refresh (mta_sts_loop_sweep) for half a
 * second and waits for what it started; --clock-offset moves the service's
 * clock (the cache file's times are absolute) forward. --loops: L threads,
 * each with its own loop and resolver (as the workers), make the same
 * lookups at once on one service; lines then start with loop=K and the
 * counts are summed.
 * Freeing the service writes its cache file. Exit 0, or 2 for bad usage
 * or setup.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "proxy/app/config.h"
#include "proxy/net/resolver.h"
#include "proxy/obs/log.h"
#include "proxy/service/mta_sts_get.h"

#define MAX_COUNT 1000
#define MAX_LOOPS 8

static long clock_offset;

static int64_t offset_clock(void *arg)
{
    return (int64_t)time(NULL) + clock_offset;
}

static void on_sweep_over(uv_timer_t *t)
{
    mta_sts_loop_sweep(t->data, NULL, 0);
}

/* One thread's loop and its lookups. */
struct worker {
    int index;
    bool tagged; /* several loops: lines start with loop=K */
    uv_loop_t loop;
    struct resolver *r;
    struct mta_sts_loop l;
    struct mta_sts_req reqs[MAX_COUNT];
    unsigned pending;
    int round_no;
    uv_thread_t thread;
};

/* Shared, read-only once the threads run. */
static struct mta_sts_svc *svc;
static const char *domain;
static long count = 1, rounds = 1, cancel;
static bool sweep;
static uv_barrier_t start;

static void print(struct worker *w, int req, bool sync, struct mta_sts_answer *a)
{
    char line[4096];
    int n = 0;

    if (w->tagged)
        n += snprintf(line + n, sizeof(line) - (size_t)n, "loop=%d ", w->index);
    n += snprintf(line + n, sizeof(line) - (size_t)n,
                  "round=%d req=%d sync=%d result=%s fetch_failed=%d why=\"%s\"", w->round_no, req,
                  sync, mta_sts_result_str(a->result), a->fetch_error != MTA_STS_FETCH_OK, a->why ? a->why : "");
    if (a->policy != NULL) {
        const struct mta_sts_snapshot *s = a->policy;
        n += snprintf(line + n, sizeof(line) - (size_t)n, " id=%s mode=%s mx=", s->id,
                      mta_sts_mode_str(s->mode));
        for (size_t i = 0; i < s->n_mx && n < (int)sizeof(line) - 1; i++)
            n += snprintf(line + n, sizeof(line) - (size_t)n, "%s%s", i ? "," : "", s->mx[i]);
    }
    /* One write per line: the loops' threads print side by side. */
    printf("%s\n", line);
    fflush(stdout);
    mta_sts_answer_release(a);
}

static void on_answer(struct mta_sts_req *req, struct mta_sts_answer *a)
{
    struct worker *w = req->data;

    print(w, (int)(req - w->reqs), false, a);
    w->pending--;
}

static void run(void *arg)
{
    struct worker *w = arg;

    if (sweep) {
        uv_timer_t over;
        uv_timer_init(&w->loop, &over);
        over.data = &w->l;
        uv_timer_start(&over, on_sweep_over, 500, 0);
        mta_sts_loop_sweep(&w->l, svc, 20);
        while ((uv_is_active((uv_handle_t *)&over) || w->l.jobs != NULL) &&
               uv_run(&w->loop, UV_RUN_ONCE) != 0)
            ;
        uv_close((uv_handle_t *)&over, NULL);
    }
    uv_barrier_wait(&start);
    for (w->round_no = 1; w->round_no <= rounds; w->round_no++) {
        for (long i = 0; i < count; i++) {
            struct mta_sts_answer a;
            w->reqs[i].data = w;
            int rc = mta_sts_get(svc, &w->l, domain, strlen(domain), &w->reqs[i], on_answer, &a);
            if (rc == MTA_STS_GET_DONE)
                print(w, (int)i, true, &a);
            else if (rc == 0)
                w->pending++;
            else
                fprintf(stderr, "mta_sts_cli: %s\n", uv_strerror(rc));
        }
        for (long i = 0; i < cancel && i < count; i++)
            if (mta_sts_req_active(&w->reqs[i])) {
                mta_sts_cancel(&w->reqs[i]);
                w->pending--;
            }
        /* Every answer, then whatever refresh they left running. */
        while ((w->pending > 0 || w->l.jobs != NULL) && uv_run(&w->loop, UV_RUN_ONCE) != 0)
            ;
    }
    mta_sts_loop_close(&w->l);
    resolver_close(w->r);
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

static int parse_addr(const char *s, struct sockaddr_in *sin)
{
    char ip[64];
    const char *colon = strrchr(s, ':');

    if (colon == NULL || (size_t)(colon - s) >= sizeof(ip))
        return -1;
    memcpy(ip, s, (size_t)(colon - s));
    ip[colon - s] = '\0';
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)strtol(colon + 1, NULL, 10));
    return inet_pton(AF_INET, ip, &sin->sin_addr) == 1 ? 0 : -1;
}

static void usage(void)
{
    fprintf(stderr, "usage: mta_sts_cli --config FILE --domain NAME [--count N] [--rounds R]\n"
                    "                   [--cancel K] [--port N] [--connect IP:PORT]\n"
                    "                   [--sweep] [--clock-offset SECONDS] [--loops L]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"domain", required_argument, NULL, 'd'},
        {"count", required_argument, NULL, 'n'},
        {"rounds", required_argument, NULL, 'r'},
        {"port", required_argument, NULL, 'p'},
        {"connect", required_argument, NULL, 'a'},
        {"cancel", required_argument, NULL, 'x'},
        {"sweep", no_argument, NULL, 's'},
        {"clock-offset", required_argument, NULL, 'o'},
        {"loops", required_argument, NULL, 'L'},
        {NULL, 0, NULL, 0},
    };
    const char *file = NULL, *connect = NULL;
    long port = 443, loops = 1;
    int c;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            file = optarg;
            break;
        case 'd':
            domain = optarg;
            break;
        case 'n':
            count = strtol(optarg, NULL, 10);
            break;
        case 'r':
            rounds = strtol(optarg, NULL, 10);
            break;
        case 'p':
            port = strtol(optarg, NULL, 10);
            break;
        case 'a':
            connect = optarg;
            break;
        case 's':
            sweep = true;
            break;
        case 'o':
            clock_offset = strtol(optarg, NULL, 10);
            break;
        case 'L':
            loops = strtol(optarg, NULL, 10);
            break;
        case 'x':
            cancel = strtol(optarg, NULL, 10);
            break;
        default:
            usage();
        }
    }
    if (file == NULL || domain == NULL || optind != argc || count < 1 || count > MAX_COUNT ||
        rounds < 0 || port < 1 || port > 65535 || loops < 1 || loops > MAX_LOOPS)
        usage();
    log_init(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);

    struct config *cfg;
    static char err[8192];
    if (config_load(file, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    struct mta_sts_svc_options so = {
        .clock = offset_clock,
        .cache_file = cfg->mta_sts.cache,
        .ca_file = cfg->mta_sts.ca_file,
        .redis = cfg->mta_sts.has_redis ? (const struct sockaddr *)&cfg->mta_sts.redis.sa : NULL};
    svc = mta_sts_svc_new(&so, err, sizeof(err));
    if (svc == NULL) {
        fprintf(stderr, "mta_sts_cli: %s\n", err);
        return 2;
    }
    struct sockaddr_in sin;
    if (connect != NULL && parse_addr(connect, &sin) != 0)
        usage();
    static struct worker ws[MAX_LOOPS];
    uv_barrier_init(&start, (unsigned)loops);
    for (long k = 0; k < loops; k++) {
        struct worker *w = &ws[k];
        w->index = (int)k;
        w->tagged = loops > 1;
        uv_loop_init(&w->loop);
        if ((w->r = resolver_new(&w->loop, &cfg->resolver, err, sizeof(err))) == NULL) {
            fprintf(stderr, "mta_sts_cli: %s\n", err);
            return 2;
        }
        mta_sts_loop_init(&w->l, &w->loop, w->r);
        mta_sts_loop_set_target(&w->l, (uint16_t)port,
                                connect ? (const struct sockaddr *)&sin : NULL);
    }
    for (long k = 0; k < loops; k++)
        uv_thread_create(&ws[k].thread, run, &ws[k]);
    unsigned long long txt = 0, fetches = 0, refreshes = 0;
    int rc = 0;
    for (long k = 0; k < loops; k++) {
        uv_thread_join(&ws[k].thread);
        txt += ws[k].l.txt_queries;
        fetches += ws[k].l.fetches;
        refreshes += ws[k].l.refreshes;
        if (uv_loop_close(&ws[k].loop) != 0)
            rc = 2;
    }
    printf("txt_queries=%llu fetches=%llu refreshes=%llu\n", txt, fetches, refreshes);
    fflush(stdout);
    mta_sts_svc_unref(svc);
    config_free(cfg);
    return rc;
}
