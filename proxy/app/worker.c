/*
 * Workers; see worker.h.
 */
#include "proxy/app/worker.h"

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/net/listener.h"
#include "proxy/net/resolver.h"
#include "proxy/service/mta_sts_get.h"
#include "proxy/obs/log.h"

/* One listener of a configuration as handed to one worker. */
struct spec {
    char name[128];
    struct addr addr;
    int fd; /* a new socket for this worker, or -1: keep the one on addr */
};

/* A runtime and its listeners, posted by the main thread. */
struct update {
    struct runtime *rt; /* a reference */
    struct spec *specs;
    size_t nspecs;
    struct update *next;
};

/* One listener of one worker. */
struct slot {
    struct listener *l;
    struct addr addr;
};

struct worker {
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wake;            /* updates, or "stop", from the main thread */
    uv_timer_t grace;           /* shutdown_timeout after stop */
    /* Touched only on this worker's thread: */
    struct runtime *rt;
    struct slot *slots;
    size_t nslots;
    struct session_set sessions;
    struct resolver *resolver;  /* the loop's; sessions borrow it */
    struct mta_sts_loop mta_sts; /* the loop's MTA-STS lookups; sessions borrow it */
    int reserve;                /* a spare descriptor; see listener.h */
    bool stopping, aborted;
    /* Posted by the main thread, under lock (never taken on the accept path): */
    uv_mutex_t lock;
    struct update *queue, **queue_tail;
    bool stop_requested, abort_requested;
    bool closed;                /* wake is closed: nothing more may be sent */
    unsigned shutdown_timeout;
};

/* What a reload binds, before it is committed. */
struct workers_plan {
    struct spec *specs;  /* per listener of the new configuration */
    int *fds;            /* nspecs x nworkers; -1 where the address is kept */
    size_t nspecs;
};

static struct worker *workers;
static unsigned nworkers;
static uv_async_t done_async; /* on the main loop: a worker has finished */
static atomic_uint nfinished;
static void (*on_all_done)(void);
/* The listeners the workers serve (main thread): the last committed plan. */
static struct spec *current;
static size_t ncurrent;

static bool same_addr(const struct addr *x, const struct addr *y)
{
    if (x->sa.ss_family != y->sa.ss_family)
        return false;
    if (x->sa.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)&x->sa, *b = (const void *)&y->sa;
        return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *a = (const void *)&x->sa, *b = (const void *)&y->sa;
    return a->sin6_port == b->sin6_port && IN6_ARE_ADDR_EQUAL(&a->sin6_addr, &b->sin6_addr) &&
           a->sin6_scope_id == b->sin6_scope_id;
}

static void post(struct worker *w, struct update *u)
{
    uv_mutex_lock(&w->lock);
    if (u != NULL) {
        *w->queue_tail = u;
        w->queue_tail = &u->next;
    }
    if (!w->closed)
        uv_async_send(&w->wake);
    uv_mutex_unlock(&w->lock);
}

static void update_free(struct update *u)
{
    for (size_t i = 0; i < u->nspecs; i++)
        if (u->specs[i].fd >= 0)
            close(u->specs[i].fd);
    runtime_unref(u->rt);
    free(u->specs);
    free(u);
}

/* ---- on the worker's thread ---- */

static void on_accept(struct listener *l, int fd)
{
    struct worker *w = l->owner;

    session_accept(&w->sessions, fd, l->data);
}

/* The resolver of cfg: the current one if cfg did not change its settings,
 * else a new one; the old one frees itself once its last lookup is over
 * (sessions under way keep theirs). If the new one cannot be made, the old
 * one stays. */
static void adopt_resolver(struct worker *w, const struct config *cfg)
{
    char err[256];
    struct resolver *r;

    if (w->resolver != NULL && resolver_built_from(w->resolver, &cfg->resolver))
        return;
    if ((r = resolver_new(&w->loop, &cfg->resolver, err, sizeof(err))) == NULL) {
        log_error("event=resolver_failed error=\"%s\" msg=\"%s\"", err,
                  w->resolver ? "the previous resolver settings stay"
                              : "destinations that are names cannot be looked up");
        return;
    }
    resolver_close(w->resolver);
    w->resolver = r;
    session_set_resolver(&w->sessions, r);
    mta_sts_loop_set_resolver(&w->mta_sts, r);
}

/* The listeners of u: kept ones (same address) move to their new slot and
 * name, new sockets start, the rest close. Then the runtime is swapped;
 * sessions keep the profile they started with. */
static void adopt(struct worker *w, struct update *u)
{
    struct slot *slots = calloc(u->nspecs + 1, sizeof(*slots));
    size_t n = 0;

    if (slots == NULL) {
        log_error("event=reload_failed error=\"out of memory\" msg=\"a worker keeps its "
                  "listeners\"");
        goto done;
    }
    for (size_t i = 0; i < u->nspecs; i++) {
        struct spec *sp = &u->specs[i];
        struct listener *l = NULL;

        if (sp->fd < 0) {
            for (size_t j = 0; j < w->nslots && l == NULL; j++) {
                if (w->slots[j].l != NULL && same_addr(&w->slots[j].addr, &sp->addr)) {
                    l = w->slots[j].l;
                    w->slots[j].l = NULL;
                }
            }
        } else if (!w->stopping) {
            int err;
            l = listener_start(&w->loop, sp->fd, &w->reserve, sp->name, on_accept, w, &err);
            sp->fd = -1; /* the listener's now, even on failure */
            if (l == NULL)
                log_error("listener=%s event=listen_failed error=\"%s\"", sp->name,
                          uv_strerror(err));
        }
        if (l == NULL)
            continue;
        snprintf(l->name, sizeof(l->name), "%s", sp->name);
        l->data = runtime_profile(u->rt, sp->name);
        slots[n].l = l;
        slots[n].addr = sp->addr;
        n++;
    }
    for (size_t j = 0; j < w->nslots; j++)
        listener_close(w->slots[j].l);
    free(w->slots);
    w->slots = slots;
    w->nslots = n;
done:
    if (!w->stopping)
        adopt_resolver(w, u->rt->cfg);
    runtime_unref(w->rt);
    w->rt = u->rt;
    u->rt = NULL;
    /* The first worker refreshes cached MTA-STS policies before they
     * expire, for the whole process. */
    if (w == &workers[0] && !w->stopping)
        mta_sts_loop_sweep(&w->mta_sts, runtime_mta_sts(w->rt), MTA_STS_SWEEP_MS);
    update_free(u);
}

static void on_sessions_done(struct session_set *set)
{
    struct worker *w = set->owner;

    uv_mutex_lock(&w->lock);
    w->closed = true;
    uv_close((uv_handle_t *)&w->wake, NULL);
    uv_mutex_unlock(&w->lock);
    uv_close((uv_handle_t *)&w->grace, NULL);
    session_set_resolver(&w->sessions, NULL);
    session_set_mta_sts(&w->sessions, NULL);
    /* Background policy refreshes are abandoned (their TXT queries and
     * fetches cancelled) before the resolver they use closes. */
    mta_sts_loop_close(&w->mta_sts);
    resolver_close(w->resolver); /* no session is left to use it */
    w->resolver = NULL;
}

static void on_grace(uv_timer_t *t)
{
    struct worker *w = t->data;

    session_set_shutdown(&w->sessions);
}

static void on_wake(uv_async_t *a)
{
    struct worker *w = a->data;
    struct update *q;
    bool stop, abort_now;
    unsigned timeout;

    uv_mutex_lock(&w->lock);
    q = w->queue;
    w->queue = NULL;
    w->queue_tail = &w->queue;
    stop = w->stop_requested;
    abort_now = w->abort_requested;
    timeout = w->shutdown_timeout;
    uv_mutex_unlock(&w->lock);

    while (q != NULL) {
        struct update *next = q->next;
        adopt(w, q);
        q = next;
    }
    if (stop && !w->stopping) {
        w->stopping = true;
        for (size_t i = 0; i < w->nslots; i++)
            listener_close(w->slots[i].l);
        w->nslots = 0;
        if (w->sessions.count > 0 && !abort_now)
            uv_timer_start(&w->grace, on_grace, (uint64_t)timeout * 1000, 0);
        session_set_stop(&w->sessions);
    }
    if (abort_now && w->stopping && !w->aborted && !w->closed) {
        w->aborted = true;
        uv_timer_stop(&w->grace);
        session_set_shutdown(&w->sessions);
    }
}

static void worker_main(void *arg)
{
    struct worker *w = arg;

    uv_run(&w->loop, UV_RUN_DEFAULT);
    atomic_fetch_add(&nfinished, 1);
    uv_async_send(&done_async);
}

/* ---- on the main thread ---- */

static void on_worker_done(uv_async_t *a)
{
    (void)a;
    if (atomic_load(&nfinished) == nworkers && on_all_done != NULL) {
        void (*cb)(void) = on_all_done;
        on_all_done = NULL;
        cb();
    }
}

static struct spec *config_specs(const struct config *cfg, size_t *n)
{
    struct spec *s = calloc(cfg->ninbound + cfg->noutbound + 1, sizeof(*s));

    *n = 0;
    if (s == NULL)
        return NULL;
    for (size_t i = 0; i < cfg->ninbound; i++, (*n)++) {
        snprintf(s[*n].name, sizeof(s[*n].name), "%s", cfg->inbound[i].name);
        s[*n].addr = cfg->inbound[i].listen;
        s[*n].fd = -1;
    }
    for (size_t i = 0; i < cfg->noutbound; i++, (*n)++) {
        snprintf(s[*n].name, sizeof(s[*n].name), "%s", cfg->outbound[i].name);
        s[*n].addr = cfg->outbound[i].listen;
        s[*n].fd = -1;
    }
    return s;
}

static const struct spec *find_current(const struct addr *a)
{
    for (size_t i = 0; i < ncurrent; i++)
        if (same_addr(&current[i].addr, a))
            return &current[i];
    return NULL;
}

void workers_abandon(struct workers_plan *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->nspecs * nworkers; i++)
        if (p->fds[i] >= 0)
            close(p->fds[i]);
    free(p->fds);
    free(p->specs);
    free(p);
}

/* Binds n sockets for every listener of rt not already served. */
static int prepare(const struct runtime *rt, unsigned n, struct workers_plan **out, char *msg,
                   size_t msglen)
{
    struct workers_plan *p = calloc(1, sizeof(*p));
    int rc = UV_ENOMEM;

    *out = NULL;
    if (p == NULL || (p->specs = config_specs(rt->cfg, &p->nspecs)) == NULL ||
        (p->fds = malloc((p->nspecs * n + 1) * sizeof(*p->fds))) == NULL) {
        snprintf(msg, msglen, "out of memory");
        if (p != NULL)
            free(p->specs);
        free(p);
        return rc;
    }
    for (size_t i = 0; i < p->nspecs * n; i++)
        p->fds[i] = -1;
    for (size_t i = 0; i < p->nspecs; i++) {
        const struct spec *sp = &p->specs[i];

        if (find_current(&sp->addr) != NULL)
            continue;
        /* Before our own sockets exist, or the probe would find them. */
        if ((rc = listener_probe(sp->name, &sp->addr, msg, msglen)) != 0)
            goto fail;
        for (unsigned w = 0; w < n; w++)
            if ((rc = listener_socket(sp->name, &sp->addr, &p->fds[i * n + w], msg, msglen)) != 0)
                goto fail;
    }
    *out = p;
    return 0;

fail:
    workers_abandon(p);
    return rc;
}

int workers_prepare(const struct runtime *rt, struct workers_plan **plan, char *msg,
                    size_t msglen)
{
    return prepare(rt, nworkers, plan, msg, msglen);
}

static void log_changes(const struct workers_plan *p)
{
    char a1[ADDR_STRLEN + 8], a2[ADDR_STRLEN + 8];

    for (size_t i = 0; i < p->nspecs; i++) {
        const struct spec *sp = &p->specs[i];
        const struct spec *was = NULL;

        if (find_current(&sp->addr) != NULL)
            continue;
        addr_format_spec(&sp->addr, sp->addr.port, a1, sizeof(a1));
        for (size_t j = 0; j < ncurrent && was == NULL; j++)
            if (strcmp(current[j].name, sp->name) == 0)
                was = &current[j];
        if (was != NULL)
            log_info("listener=%s event=listener_moved listen=%s was=%s", sp->name, a1,
                     addr_format_spec(&was->addr, was->addr.port, a2, sizeof(a2)));
        else
            log_info("listener=%s event=listener_added listen=%s", sp->name, a1);
    }
    for (size_t j = 0; j < ncurrent; j++) {
        const struct spec *was = &current[j];
        bool kept = false, moved = false;

        for (size_t i = 0; i < p->nspecs; i++) {
            kept |= same_addr(&p->specs[i].addr, &was->addr);
            moved |= strcmp(p->specs[i].name, was->name) == 0;
        }
        if (!kept && !moved)
            log_info("listener=%s event=listener_removed listen=%s msg=\"socket closed; its "
                     "sessions finish normally\"",
                     was->name, addr_format_spec(&was->addr, was->addr.port, a1, sizeof(a1)));
    }
}

void workers_commit(struct workers_plan *p, struct runtime *rt)
{
    log_changes(p);
    for (unsigned w = 0; w < nworkers; w++) {
        struct update *u = calloc(1, sizeof(*u));
        if (u != NULL && (u->specs = calloc(p->nspecs + 1, sizeof(*u->specs))) == NULL) {
            free(u);
            u = NULL;
        }
        if (u == NULL) {
            log_error("event=reload_failed error=\"out of memory\" worker=%u", w);
            continue;
        }
        u->nspecs = p->nspecs;
        for (size_t i = 0; i < p->nspecs; i++) {
            u->specs[i] = p->specs[i];
            u->specs[i].fd = p->fds[i * nworkers + w];
            p->fds[i * nworkers + w] = -1;
        }
        runtime_ref(rt);
        u->rt = rt;
        post(&workers[w], u);
    }
    for (size_t i = 0; i < p->nspecs; i++)
        p->specs[i].fd = -1;
    free(current);
    current = p->specs;
    ncurrent = p->nspecs;
    p->specs = NULL;
    workers_abandon(p);
}

static int worker_init(struct worker *w)
{
    uv_loop_init(&w->loop);
    uv_async_init(&w->loop, &w->wake, on_wake);
    w->wake.data = w;
    uv_timer_init(&w->loop, &w->grace);
    w->grace.data = w;
    uv_mutex_init(&w->lock);
    w->queue_tail = &w->queue;
    w->reserve = listener_reserve_open();
    session_set_init(&w->sessions, &w->loop, on_sessions_done, w);
    mta_sts_loop_init(&w->mta_sts, &w->loop, NULL);
    session_set_mta_sts(&w->sessions, &w->mta_sts);
    return 0;
}

/* Frees what the loop left: call once it has stopped. */
static void worker_free(struct worker *w)
{
    struct update *q = w->queue;

    while (q != NULL) {
        struct update *next = q->next;
        update_free(q);
        q = next;
    }
    uv_loop_close(&w->loop);
    uv_mutex_destroy(&w->lock);
    runtime_unref(w->rt);
    free(w->slots);
    if (w->reserve >= 0)
        close(w->reserve);
}

int workers_start(uv_loop_t *main_loop, struct runtime *rt, unsigned n, void (*on_done)(void),
                  char *msg, size_t msglen)
{
    struct workers_plan *p;
    int rc;

    if ((rc = prepare(rt, n, &p, msg, msglen)) != 0)
        return rc;
    workers = calloc(n, sizeof(*workers));
    if (workers == NULL) {
        snprintf(msg, msglen, "out of memory");
        workers_abandon(p);
        return UV_ENOMEM;
    }
    nworkers = n;
    for (unsigned i = 0; i < n; i++)
        worker_init(&workers[i]);
    uv_async_init(main_loop, &done_async, on_worker_done);
    on_all_done = on_done;
    /* The first update is adopted here, before the threads run. */
    workers_commit(p, rt);
    for (unsigned i = 0; i < n; i++)
        on_wake(&workers[i].wake);
    return 0;
}

void workers_run(void)
{
    for (unsigned i = 0; i < nworkers; i++)
        uv_thread_create(&workers[i].thread, worker_main, &workers[i]);
}

unsigned workers_count(void)
{
    return nworkers;
}

void workers_stop(unsigned shutdown_timeout)
{
    for (unsigned i = 0; i < nworkers; i++) {
        struct worker *w = &workers[i];
        uv_mutex_lock(&w->lock);
        w->shutdown_timeout = shutdown_timeout;
        w->stop_requested = true;
        uv_mutex_unlock(&w->lock);
        post(w, NULL);
    }
}

void workers_stop_now(void)
{
    for (unsigned i = 0; i < nworkers; i++) {
        struct worker *w = &workers[i];
        uv_mutex_lock(&w->lock);
        w->abort_requested = true;
        uv_mutex_unlock(&w->lock);
        post(w, NULL);
    }
}

void workers_join(void)
{
    for (unsigned i = 0; i < nworkers; i++) {
        uv_thread_join(&workers[i].thread);
        worker_free(&workers[i]);
    }
    uv_close((uv_handle_t *)&done_async, NULL);
    free(workers);
    free(current);
    workers = NULL;
    current = NULL;
    ncurrent = 0;
    nworkers = 0;
}
