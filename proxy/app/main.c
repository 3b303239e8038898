/*
 * smtp-tls-proxy: command line, start-up, signals. See DESIGN.md for the
 * contract: exit codes 0 clean stop, 1 bad configuration, 2 bad usage,
 * 3 runtime failure.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "proxy/app/config.h"
#include "proxy/app/runtime.h"
#include "proxy/obs/log.h"
#include "proxy/net/metrics_server.h"
#include "proxy/tls/tls.h"
#include "proxy/app/version.h"
#include "proxy/app/worker.h"

#define EXIT_CONFIG 1
#define EXIT_USAGE 2
#define EXIT_RUNTIME 3

static const char *config_file;
static uv_signal_t sig_hup, sig_term, sig_int;
static unsigned shutdown_timeout = 30;
/* The configuration in force, for the main thread (workers hold their own). */
static struct runtime *current;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: smtp-tls-proxy [-c FILE] [-t] [-f] [-V] [-h]\n"
            "  -c, --config FILE   libconfig file (default: built-in inbound\n"
            "                      127.0.0.1:2525 -> 127.0.0.1:25 with STARTTLS and a\n"
            "                      self-signed certificate)\n"
            "  -t, --test-config   validate the configuration and exit\n"
            "  -f, --foreground    run in the foreground (always the case; for init\n"
            "                      systems that pass it)\n"
            "  -V, --version       print versions and exit\n"
            "  -h, --help          this text\n");
}

/* Whether msg already starts with its place, "FILE:LINE: " (the tls
 * layer's messages about a file the configuration names do), so that it is
 * printed as it is rather than under the config file's name once more. */
static bool located(const char *msg)
{
    const char *p = strstr(msg, ": "), *d = p;

    while (d != NULL && d > msg && d[-1] >= '0' && d[-1] <= '9')
        d--;
    return d != NULL && d < p && d > msg + 1 && d[-1] == ':';
}

/* Loads the file (or the built-in default) and builds its TLS contexts.
 * Problems go to stderr when start-up, to the log on reload. */
static struct runtime *load(bool startup)
{
    char err[8192] = "";
    struct config *cfg = NULL;

    if (config_file != NULL) {
        if (config_load(config_file, &cfg, err, sizeof(err)) != 0) {
            if (startup) {
                fprintf(stderr, "%s%s", err, err[0] && err[strlen(err) - 1] == '\n' ? "" : "\n");
            } else {
                /* One log line per problem. */
                for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n")) {
                    char q[1024];
                    log_error("event=reload_failed error=%s", log_quote(line, q, sizeof(q)));
                }
            }
            return NULL;
        }
    } else {
        cfg = config_default();
        if (cfg == NULL) {
            fprintf(stderr, "out of memory\n");
            return NULL;
        }
    }
    struct runtime *rt = runtime_new(cfg, err, sizeof(err));
    if (rt == NULL) {
        const char *file = config_file ? config_file : "(built-in)";
        if (startup) {
            if (located(err))
                fprintf(stderr, "%s\n", err);
            else
                fprintf(stderr, "%s: %s\n", file, err);
        } else {
            char q[1024];
            log_error("event=reload_failed file=%s error=%s", file, log_quote(err, q, sizeof(q)));
        }
        config_free(cfg);
    }
    return rt;
}

static void on_hup(uv_signal_t *h, int sig)
{
    (void)h;
    (void)sig;
    log_info("event=reload file=%s", config_file ? config_file : "(built-in)");
    struct runtime *rt = load(false);
    if (rt == NULL) {
        log_error("event=reload_failed msg=\"keeping the running configuration\"");
        return;
    }
    log_set_level(rt->cfg->log_level);
    shutdown_timeout = rt->cfg->shutdown_timeout;
    /* Listening sockets stay as they are: new connections pick up the new
     * settings and certificates by listener name; live sessions keep theirs. */
    workers_install(rt);
    runtime_unref(current);
    current = rt;
    log_info("event=reloaded");
}

static void on_term(uv_signal_t *h, int sig)
{
    log_info("event=stopping signal=%s shutdown_timeout=%u", sig == SIGINT ? "INT" : "TERM",
             shutdown_timeout);
    uv_stop(h->loop);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test-config", no_argument, NULL, 't'},
        {"foreground", no_argument, NULL, 'f'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool test_only = false;
    int c;

    while ((c = getopt_long(argc, argv, "c:tfVh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_file = optarg;
            break;
        case 't':
            test_only = true;
            break;
        case 'f':
            break;
        case 'V':
            printf("smtp-tls-proxy %s (libuv %s, %s)\n", SMTP_TLS_PROXY_VERSION,
                   uv_version_string(), tls_library_version());
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "smtp-tls-proxy: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return EXIT_USAGE;
    }

    signal(SIGPIPE, SIG_IGN);
    log_init(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    struct runtime *rt = load(true);
    if (rt == NULL)
        return EXIT_CONFIG;
    if (test_only) {
        printf("configuration OK\n");
        runtime_unref(rt);
        return 0;
    }
    const struct config *cfg = rt->cfg;
    log_init(cfg->log_level, cfg->log_format);
    shutdown_timeout = cfg->shutdown_timeout;
    unsigned nworkers = cfg->workers ? cfg->workers : uv_available_parallelism();
    current = rt;

    /* Signals are caught before any socket listens: a SIGTERM sent as soon
     * as the port answers must mean a clean stop, not the default death. */
    uv_loop_t *loop = uv_default_loop();
    uv_signal_init(loop, &sig_hup);
    uv_signal_start(&sig_hup, on_hup, SIGHUP);
    uv_signal_init(loop, &sig_term);
    uv_signal_start(&sig_term, on_term, SIGTERM);
    uv_signal_init(loop, &sig_int);
    uv_signal_start(&sig_int, on_term, SIGINT);

    char msg[512];
    if (workers_start(rt, nworkers, msg, sizeof(msg)) != 0) {
        log_error("event=start_failed error=\"%s\"", msg);
        return EXIT_RUNTIME;
    }
    if (rt->cfg->metrics_enabled) {
        int rc = metrics_server_start(loop, &rt->cfg->metrics_listen);
        if (rc != 0) {
            log_error("event=start_failed error=\"metrics: cannot listen on %s:%u: %s\"",
                      rt->cfg->metrics_listen.host, rt->cfg->metrics_listen.port,
                      uv_strerror(rc));
            return EXIT_RUNTIME;
        }
    }
    for (size_t i = 0; i < rt->cfg->ninbound; i++)
        log_info("event=listening listener=%s dir=in listen=%s:%u backend=%s:%u tls_mode=%s",
                 rt->cfg->inbound[i].name, rt->cfg->inbound[i].listen.host,
                 rt->cfg->inbound[i].listen.port, rt->cfg->inbound[i].opts.backend.host,
                 rt->cfg->inbound[i].opts.backend.port,
                 rt->cfg->inbound[i].opts.tls_mode == SESSION_TLS_IMPLICIT ? "implicit" : "starttls");
    for (size_t i = 0; i < rt->cfg->noutbound; i++)
        log_info("event=listening listener=%s dir=out listen=%s:%u", rt->cfg->outbound[i].name,
                 rt->cfg->outbound[i].listen.host, rt->cfg->outbound[i].listen.port);
    log_info("event=started version=%s workers=%u", SMTP_TLS_PROXY_VERSION, nworkers);

    uv_run(loop, UV_RUN_DEFAULT);

    metrics_server_stop();
    workers_stop_and_join(shutdown_timeout);
    uv_close((uv_handle_t *)&sig_hup, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    runtime_unref(current);
    log_info("event=stopped");
    return 0;
}
