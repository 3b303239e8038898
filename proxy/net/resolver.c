/*
 * The resolver; see resolver.h.
 *
 * libunbound runs its lookups in a thread of its own (ub_ctx_async(ctx, 1):
 * a thread rather than a forked process, which would copy the daemon and its
 * descriptors) and writes each answer to a pipe whose reading end is ub_fd.
 * ub_process() reads what is there and calls the callbacks, on the loop's
 * thread. A lookup cancelled with ub_cancel() is forgotten by libunbound:
 * its callback never comes, even when its answer is already in the pipe.
 */
#include "proxy/net/resolver.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unbound.h>

#include "proxy/net/resolver_stub.h"
#include "proxy/obs/log.h"

struct resolver {
    uv_loop_t *loop;
    struct ub_ctx *ctx;            /* NULL with dnssec = "trust-ad" */
    struct resolver_stub *stub;    /* the trust-ad backend, else NULL */
    uv_poll_t poll;
    struct resolver_options opts;  /* trust_anchor: our own copy */
    unsigned active;               /* lookups that may still call back */
    bool closing;                  /* no new lookups; free when active == 0 */
    bool freeing;                  /* the poll handle is closing */
};

const char *resolver_security_str(enum resolver_security s)
{
    switch (s) {
    case RESOLVER_SECURE:
        return "secure";
    case RESOLVER_BOGUS:
        return "bogus";
    case RESOLVER_INSECURE:
        break;
    }
    return "insecure";
}

static void on_poll_closed(uv_handle_t *h)
{
    struct resolver *r = h->data;

    ub_ctx_delete(r->ctx); /* joins libunbound's thread */
    free(r->opts.trust_anchor);
    free(r);
}

static void on_stub_closed(void *arg)
{
    struct resolver *r = arg;

    free(r->opts.trust_anchor);
    free(r);
}

static void maybe_free(struct resolver *r)
{
    if (!r->closing || r->active > 0 || r->freeing)
        return;
    r->freeing = true;
    if (r->stub != NULL) {
        resolver_stub_close(r->stub, on_stub_closed, r);
        return;
    }
    uv_poll_stop(&r->poll);
    uv_close((uv_handle_t *)&r->poll, on_poll_closed);
}

static void on_readable(uv_poll_t *p, int status, int events)
{
    struct resolver *r = p->data;

    (void)events;
    if (status < 0) {
        log_error("event=resolver_failed error=\"%s\"", uv_strerror(status));
        return;
    }
    /* Callbacks run in here; they may start or cancel lookups, and close r
     * (it is freed only from the poll's close callback, later). */
    int rc = ub_process(r->ctx);
    if (rc != 0)
        log_error("event=resolver_failed error=\"%s\"", ub_strerror(rc));
}

/* The stub's answer: counted as libunbound's are. */
static void on_stub_answer(struct resolver_query *q, const struct resolver_result *res)
{
    struct resolver *r = q->r;

    q->active = false;
    r->active--;
    q->cb(q, res);
    maybe_free(r);
}

static void on_answer(void *arg, int err, struct ub_result *ub)
{
    struct resolver_query *q = arg;
    struct resolver *r = q->r;
    struct resolver_result res = {.rcode = RESOLVER_RCODE_SERVFAIL};

    q->active = false;
    r->active--;
    if (err != 0 || ub == NULL) {
        res.err = err != 0 ? -EIO : -ENOMEM;
        res.errstr = err != 0 ? ub_strerror(err) : "no result";
    } else {
        res.rcode = ub->rcode;
        res.security = ub->bogus    ? RESOLVER_BOGUS
                       : ub->secure ? RESOLVER_SECURE
                                    : RESOLVER_INSECURE;
        res.why_bogus = ub->why_bogus;
        res.ttl = ub->ttl;
        if (ub->havedata) {
            while (ub->data[res.count] != NULL)
                res.count++;
            res.data = ub->data;
            res.len = ub->len;
        }
    }
    q->cb(q, &res);
    ub_resolve_free(ub);
    maybe_free(r);
}

static int set(struct ub_ctx *ctx, const char *opt, const char *val, char *err, size_t errlen)
{
    int rc = ub_ctx_set_option(ctx, opt, val);

    if (rc != 0)
        snprintf(err, errlen, "resolver: %s %s: %s", opt, val, ub_strerror(rc));
    return rc;
}

/* The context for o: forwarders, validation, and no fork. */
static struct ub_ctx *make_ctx(const struct resolver_options *o, char *err, size_t errlen)
{
    struct ub_ctx *ctx = ub_ctx_create();
    int rc;

    if (ctx == NULL) {
        snprintf(err, errlen, "resolver: cannot create a libunbound context");
        return NULL;
    }
    if ((rc = ub_ctx_async(ctx, 1)) != 0) {
        snprintf(err, errlen, "resolver: threads: %s", ub_strerror(rc));
        goto fail;
    }
    /* Loopback servers (a local validating resolver, the tests' nsd) are the
     * usual case, and libunbound refuses to query them by default. */
    if (set(ctx, "do-not-query-localhost:", "no", err, errlen) != 0)
        goto fail;
    /* Names in /etc/hosts keep resolving as they did with getaddrinfo (such
     * answers are insecure: nothing signs them). */
    if ((rc = ub_ctx_hosts(ctx, NULL)) != 0 && rc != UB_READFILE) {
        snprintf(err, errlen, "resolver: /etc/hosts: %s", ub_strerror(rc));
        goto fail;
    }
    if (o->nservers == 0) {
        if ((rc = ub_ctx_resolvconf(ctx, NULL)) != 0) {
            snprintf(err, errlen, "resolver: /etc/resolv.conf: %s", ub_strerror(rc));
            goto fail;
        }
    }
    for (size_t i = 0; i < o->nservers; i++) {
        char ip[ADDR_STRLEN], fwd[ADDR_STRLEN + 8];

        addr_format_ip((const struct sockaddr *)&o->servers[i].sa, ip, sizeof(ip));
        snprintf(fwd, sizeof(fwd), "%s@%u", ip, o->servers[i].port);
        if ((rc = ub_ctx_set_fwd(ctx, fwd)) != 0) {
            snprintf(err, errlen, "resolver: server %s: %s", fwd, ub_strerror(rc));
            goto fail;
        }
    }
    switch (o->dnssec) {
    case RESOLVER_DNSSEC_VALIDATE:
        if (o->trust_anchor == NULL || (rc = ub_ctx_add_ta_file(ctx, o->trust_anchor)) != 0) {
            snprintf(err, errlen, "resolver: trust_anchor %s: %s",
                     o->trust_anchor ? o->trust_anchor : "(none)",
                     o->trust_anchor ? ub_strerror(rc) : "required by dnssec = \"validate\"");
            goto fail;
        }
        break;
    case RESOLVER_DNSSEC_OFF:
        /* Without the validator every answer is insecure, bogus ones too. */
        if (set(ctx, "module-config:", "iterator", err, errlen) != 0)
            goto fail;
        break;
    case RESOLVER_DNSSEC_TRUST_AD:
        /* libunbound does not pass a forwarder's AD bit through: the stub
         * backend (resolver_new) serves trust-ad. */
        snprintf(err, errlen, "resolver: dnssec = \"trust-ad\" has no libunbound context");
        goto fail;
    }
    return ctx;
fail:
    ub_ctx_delete(ctx);
    return NULL;
}

struct resolver *resolver_new(uv_loop_t *loop, const struct resolver_options *opts, char *err,
                              size_t errlen)
{
    struct resolver *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        snprintf(err, errlen, "resolver: out of memory");
        return NULL;
    }
    r->loop = loop;
    r->opts = *opts;
    r->opts.trust_anchor = NULL;
    if (opts->trust_anchor != NULL && (r->opts.trust_anchor = strdup(opts->trust_anchor)) == NULL) {
        snprintf(err, errlen, "resolver: out of memory");
        goto fail_alloc;
    }
    if (opts->dnssec == RESOLVER_DNSSEC_TRUST_AD) {
        if ((r->stub = resolver_stub_new(loop, opts, err, errlen)) == NULL)
            goto fail_alloc;
        return r;
    }
    if ((r->ctx = make_ctx(opts, err, errlen)) == NULL)
        goto fail_alloc;
    int fd = ub_fd(r->ctx), rc;
    if (fd < 0) {
        snprintf(err, errlen, "resolver: no file descriptor from libunbound");
        goto fail_ctx;
    }
    if ((rc = uv_poll_init(loop, &r->poll, fd)) != 0) {
        snprintf(err, errlen, "resolver: poll: %s", uv_strerror(rc));
        goto fail_ctx;
    }
    r->poll.data = r;
    if ((rc = uv_poll_start(&r->poll, UV_READABLE, on_readable)) != 0) {
        snprintf(err, errlen, "resolver: poll: %s", uv_strerror(rc));
        r->closing = true;
        maybe_free(r); /* the handle is initialised: free through its close */
        return NULL;
    }
    return r;
fail_ctx:
    ub_ctx_delete(r->ctx);
fail_alloc:
    free(r->opts.trust_anchor);
    free(r);
    return NULL;
}

int resolver_query(struct resolver *r, struct resolver_query *q, const char *name, int rrtype,
                   resolver_cb cb)
{
    q->r = r;
    q->cb = cb;
    q->active = false;
    q->stub = NULL;
    if (r == NULL || r->closing)
        return UV_ESHUTDOWN;
    if (r->stub != NULL) {
        int src = resolver_stub_query(r->stub, q, name, rrtype, on_stub_answer);
        if (src != 0)
            return src;
        q->active = true;
        r->active++;
        return 0;
    }
    int rc = ub_resolve_async(r->ctx, name, rrtype, 1 /* IN */, q, on_answer, &q->id);
    if (rc != 0)
        return rc == UB_NOMEM ? UV_ENOMEM : UV_EINVAL;
    q->active = true;
    r->active++;
    return 0;
}

bool resolver_cancel(struct resolver_query *q)
{
    if (!q->active)
        return false;
    /* UB_NOID: the answer is being delivered right now (we are inside
     * ub_process, in another query's callback); libunbound has already
     * dropped it from its table, and so its callback will not come either. */
    if (q->r->stub != NULL)
        resolver_stub_cancel(q);
    else
        (void)ub_cancel(q->r->ctx, q->id);
    q->active = false;
    q->r->active--;
    maybe_free(q->r);
    return true;
}

bool resolver_active(const struct resolver_query *q)
{
    return q->active;
}

void resolver_close(struct resolver *r)
{
    if (r == NULL || r->closing)
        return;
    r->closing = true;
    maybe_free(r);
}

bool resolver_built_from(const struct resolver *r, const struct resolver_options *b)
{
    const struct resolver_options *a = &r->opts;

    if (a->nservers != b->nservers || a->dnssec != b->dnssec)
        return false;
    for (size_t i = 0; i < a->nservers; i++)
        if (a->servers[i].port != b->servers[i].port || a->servers[i].salen != b->servers[i].salen ||
            memcmp(&a->servers[i].sa, &b->servers[i].sa, a->servers[i].salen) != 0)
            return false;
    if ((a->trust_anchor == NULL) != (b->trust_anchor == NULL))
        return false;
    return a->trust_anchor == NULL || strcmp(a->trust_anchor, b->trust_anchor) == 0;
}
