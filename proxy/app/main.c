/*
 * smtp-tls-proxy: command line, start-up, signals. See DESIGN.md for the
 * contract: exit codes 0 clean stop, 1 bad configuration, 2 bad usage,
 * 3 runtime failure.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
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
static bool stopping;
static bool privileges_dropped;

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

/* Whether two addresses name the same socket address (as bound, not as
 * written: "localhost:25" is "127.0.0.1:25"). */
static bool same_listen(const struct addr *x, const struct addr *y)
{
    char a[ADDR_STRLEN], b[ADDR_STRLEN];

    return strcmp(addr_format((const struct sockaddr *)&x->sa, a, sizeof(a)),
                  addr_format((const struct sockaddr *)&y->sa, b, sizeof(b))) == 0;
}

static bool same_string(const char *x, const char *y)
{
    return (x == NULL && y == NULL) || (x != NULL && y != NULL && strcmp(x, y) == 0);
}

/* What a reload cannot change in a running process is said, never dropped
 * in silence; everything else applies. */
static void log_ignored(const struct config *was, const struct config *now)
{
    static const char why[] = "msg=\"needs a restart\"";

    if (was->workers != now->workers)
        log_warn("event=reload_ignored key=workers value=%u running=%u %s", now->workers,
                 workers_count(), why);
    if (was->log_format != now->log_format)
        log_warn("event=reload_ignored key=log_format %s", why);
    if (!same_string(was->user, now->user) || was->uid != now->uid)
        log_warn("event=reload_ignored key=user %s", why);
    if (!same_string(was->group, now->group) || was->gid != now->gid)
        log_warn("event=reload_ignored key=group %s", why);
}

/* The reload's last fallible step: metrics_listen added, moved or removed.
 * Removal happens after the commit (stop_metrics). */
static int apply_metrics(uv_loop_t *loop, const struct config *was, const struct config *now,
                         bool *stop_metrics)
{
    *stop_metrics = was->metrics_enabled && !now->metrics_enabled;
    if (!now->metrics_enabled ||
        (was->metrics_enabled && same_listen(&was->metrics_listen, &now->metrics_listen)))
        return 0;
    return metrics_server_move(loop, &now->metrics_listen);
}

static void on_hup(uv_signal_t *h, int sig)
{
    char msg[512], q[600];
    struct workers_plan *plan;
    bool stop_metrics;
    int rc;

    (void)sig;
    if (stopping) {
        log_warn("event=reload_ignored msg=\"stopping: SIGHUP ignored\"");
        return;
    }
    log_info("event=reload file=%s", config_file ? config_file : "(built-in)");
    struct runtime *rt = load(false);
    if (rt == NULL) {
        log_error("event=reload_failed msg=\"keeping the running configuration\"");
        return;
    }
    /* Every new address is bound here, on the main thread, before any
     * worker is told: a failure refuses the whole reload. */
    if ((rc = workers_prepare(rt, &plan, msg, sizeof(msg))) == 0 &&
        (rc = apply_metrics(h->loop, current->cfg, rt->cfg, &stop_metrics)) != 0) {
        char where[ADDR_STRLEN + 8];
        snprintf(msg, sizeof(msg), "metrics: cannot listen on %s: %s",
                 addr_format_spec(&rt->cfg->metrics_listen, rt->cfg->metrics_listen.port, where,
                                  sizeof(where)),
                 uv_strerror(rc));
        workers_abandon(plan);
    }
    if (rc != 0) {
        if (rc == UV_EACCES && privileges_dropped)
            log_error("event=reload_failed error=%s msg=\"privileges were dropped to user %s at "
                      "start: a new address on a port below 1024 needs a restart; keeping the "
                      "running configuration\"",
                      log_quote(msg, q, sizeof(q)), current->cfg->user);
        else
            log_error("event=reload_failed error=%s msg=\"keeping the running configuration\"",
                      log_quote(msg, q, sizeof(q)));
        runtime_unref(rt);
        return;
    }
    log_ignored(current->cfg, rt->cfg);
    log_set_level(rt->cfg->log_level);
    shutdown_timeout = rt->cfg->shutdown_timeout;
    /* New connections pick up the new settings and certificates by
     * listener name; live sessions keep theirs. */
    workers_commit(plan, rt);
    if (stop_metrics)
        metrics_server_stop();
    runtime_unref(current);
    current = rt;
    runtime_services(current);
    log_info("event=reloaded");
}

/* The first SIGTERM/SIGINT drains (listeners closed, /healthz 503,
 * sessions given shutdown_timeout); a second one ends every session now. */
static void on_term(uv_signal_t *h, int sig)
{
    const char *name = sig == SIGINT ? "INT" : "TERM";

    (void)h;
    if (!stopping) {
        stopping = true;
        log_info("event=stopping signal=%s shutdown_timeout=%u", name, shutdown_timeout);
        metrics_server_set_draining(true);
        workers_stop(shutdown_timeout);
        return;
    }
    log_info("event=stopping_now signal=%s msg=\"second signal: closing every session now\"",
             name);
    workers_stop_now();
}

/* Every worker has finished: the main loop may end. */
static void on_workers_done(void)
{
    metrics_server_stop();
    uv_stop(uv_default_loop());
}

/*
 * Started as root with user (and group) set: give up root for good, after
 * every socket is bound and every certificate read, before any thread runs.
 * setgroups leaves only the target group; setresgid/setresuid set the real,
 * effective and saved ids, and the checks after them make sure none of the
 * three still says root and that root cannot be regained.
 */
static int drop_privileges(const struct config *cfg, char *msg, size_t msglen)
{
    uid_t ru, eu, su;
    gid_t rg, eg, sg, g = cfg->gid;

    if (!cfg->drop_privileges) {
        if (geteuid() == 0)
            log_warn("event=running_as_root msg=\"user and group are not set: the proxy keeps "
                     "running as root; set user = \\\"...\\\"; group = \\\"...\\\"; to "
                     "drop privileges after binding\"");
        return 0;
    }
    if (geteuid() != 0) {
        if (geteuid() != cfg->uid)
            log_warn("event=privileges_kept user=%s uid=%u msg=\"not started as root: cannot "
                     "change user, running as uid %u\"",
                     cfg->user, (unsigned)cfg->uid, (unsigned)geteuid());
        return 0;
    }
    if (setgroups(1, &g) != 0) {
        snprintf(msg, msglen, "setgroups(%u): %s", (unsigned)g, strerror(errno));
        return -1;
    }
    if (setresgid(g, g, g) != 0) {
        snprintf(msg, msglen, "setresgid(%u): %s", (unsigned)g, strerror(errno));
        return -1;
    }
    if (setresuid(cfg->uid, cfg->uid, cfg->uid) != 0) {
        snprintf(msg, msglen, "setresuid(%u): %s", (unsigned)cfg->uid, strerror(errno));
        return -1;
    }
    if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0 || ru != cfg->uid ||
        eu != cfg->uid || su != cfg->uid || rg != g || eg != g || sg != g) {
        snprintf(msg, msglen, "user %s: the user and group ids did not all change", cfg->user);
        return -1;
    }
    if (cfg->uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        snprintf(msg, msglen, "user %s: root could be regained after dropping it", cfg->user);
        return -1;
    }
    privileges_dropped = true;
    log_info("event=privileges_dropped user=%s uid=%u group=%s gid=%u", cfg->user,
             (unsigned)cfg->uid, cfg->group, (unsigned)g);
    return 0;
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
    if (workers_start(loop, rt, nworkers, on_workers_done, msg, sizeof(msg)) != 0) {
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
    if (drop_privileges(rt->cfg, msg, sizeof(msg)) != 0) {
        log_error("event=start_failed error=\"%s\"", msg);
        return EXIT_RUNTIME;
    }
    workers_run();
    runtime_services(rt);
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

    workers_join();
    runtime_services_stop();
    uv_close((uv_handle_t *)&sig_hup, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    runtime_unref(current);
    runtime_release_services();
    log_info("event=stopped");
    return 0;
}
