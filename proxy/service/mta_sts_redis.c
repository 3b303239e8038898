/*
 * One loop's Redis connection; see mta_sts_redis.h. The only user of
 * <hiredis/...>. hiredis runs asynchronously on the loop through the
 * event hooks below (its own adapters/libuv.h is not used: it leaks on
 * failure and names its helpers generically); hiredis 0.14 (Debian 12) has
 * no command timeout, so the requests in flight are timed here, and a late
 * connection is dropped, which answers each of them with no reply.
 */
#include "proxy/service/mta_sts_redis.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "proxy/obs/log.h"

struct mta_sts_redis_req {
    struct mta_sts_redis *r;
    mta_sts_redis_cb cb; /* NULL: cancelled */
    void *arg;
    uint64_t deadline; /* uv_now() ms */
    struct mta_sts_redis_req *prev, *next;
};

/* The poll handle of one hiredis context; freed in its close callback. */
struct poll_ev {
    uv_poll_t h;
    redisAsyncContext *ac; /* NULL once hiredis cleaned up */
    int events;
};

struct mta_sts_redis {
    uv_loop_t *loop;
    struct sockaddr_storage addr;
    char ip[INET6_ADDRSTRLEN];
    int port;
    redisAsyncContext *ac;                 /* NULL: not connected */
    uint64_t retry_at;                     /* no new connection before (uv_now() ms) */
    struct mta_sts_redis_req *head, *tail; /* GETs in flight, oldest first */
    uv_timer_t timer;                      /* their deadlines; r is freed when it closes */
    bool closing, closed;                  /* mta_sts_redis_free() was called / timer closed */
    uint64_t close_deadline;               /* a graceful close waits until then */
};

static void finish_close(struct mta_sts_redis *r);

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct poll_ev *p = h->data;

    /* An error on the socket: let hiredis read it and fail. */
    if (status < 0)
        events = UV_READABLE | UV_WRITABLE;
    if (p->ac != NULL && (events & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac != NULL && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void poll_update(struct poll_ev *p, int events)
{
    p->events = events;
    if (events != 0)
        uv_poll_start(&p->h, events, on_poll);
    else
        uv_poll_stop(&p->h);
}

static void add_read(void *d)
{
    struct poll_ev *p = d;
    poll_update(p, p->events | UV_READABLE);
}

static void del_read(void *d)
{
    struct poll_ev *p = d;
    poll_update(p, p->events & ~UV_READABLE);
}

static void add_write(void *d)
{
    struct poll_ev *p = d;
    poll_update(p, p->events | UV_WRITABLE);
}

static void del_write(void *d)
{
    struct poll_ev *p = d;
    poll_update(p, p->events & ~UV_WRITABLE);
}

static void on_poll_closed(uv_handle_t *h)
{
    free(h->data);
}

static void cleanup(void *d)
{
    struct poll_ev *p = d;

    p->ac = NULL;
    uv_close((uv_handle_t *)&p->h, on_poll_closed);
}

static void unlink_req(struct mta_sts_redis *r, struct mta_sts_redis_req *q)
{
    if (q->prev != NULL)
        q->prev->next = q->next;
    else
        r->head = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    else
        r->tail = q->prev;
    q->prev = q->next = NULL;
}

/* The connection failed or was dropped: hiredis answers what is pending
 * with no reply, and frees the context. */
static void lost(struct mta_sts_redis *r, const char *why)
{
    log_warn("event=mta_sts_redis_failed redis=%s:%d error=\"%s\" msg=\"policies are fetched "
             "over HTTPS; Redis is tried again in %d s\"",
             r->ip, r->port, why, MTA_STS_REDIS_RETRY_MS / 1000);
    r->ac = NULL;
    r->retry_at = uv_now(r->loop) + MTA_STS_REDIS_RETRY_MS;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct mta_sts_redis *r = ac->data;

    if (status == REDIS_OK || r == NULL)
        return;
    lost(r, ac->errstr[0] != '\0' ? ac->errstr : "connect failed");
    if (r->closing) /* hiredis frees ac after this, without on_disconnect */
        finish_close(r);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct mta_sts_redis *r = ac->data;

    if (r == NULL || r->ac != ac)
        return;
    if (status != REDIS_OK)
        lost(r, ac->errstr[0] != '\0' ? ac->errstr : "connection lost");
    else
        r->ac = NULL;
    if (r->closing)
        finish_close(r);
}

/* The connection, made if there is none and none failed lately. */
static bool connected(struct mta_sts_redis *r)
{
    struct poll_ev *p;
    redisAsyncContext *ac;

    if (r->ac != NULL)
        return true;
    if (uv_now(r->loop) < r->retry_at)
        return false;
    /* An IP address: hiredis looks nothing up, the connect does not block. */
    if ((ac = redisAsyncConnect(r->ip, r->port)) == NULL) {
        lost(r, "out of memory");
        return false;
    }
    if (ac->err != 0 || (p = calloc(1, sizeof(*p))) == NULL) {
        lost(r, ac->err != 0 ? ac->errstr : "out of memory");
        redisAsyncFree(ac);
        return false;
    }
    if (uv_poll_init(r->loop, &p->h, ac->c.fd) != 0) {
        free(p);
        lost(r, "cannot watch the socket");
        redisAsyncFree(ac);
        return false;
    }
    p->h.data = p;
    p->ac = ac;
    ac->ev.data = p;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    ac->data = r;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    return true;
}

/* Drops a connection whose oldest request is late. */
static void on_timer(uv_timer_t *t)
{
    struct mta_sts_redis *r = t->data;

    if (r->closing) {
        if (uv_now(r->loop) >= r->close_deadline && r->ac != NULL) {
            redisAsyncContext *ac = r->ac;
            r->ac = NULL;
            ac->data = NULL;
            redisAsyncFree(ac);
        }
        if (r->ac == NULL)
            finish_close(r);
        return;
    }
    if (r->head == NULL) {
        uv_timer_stop(t);
        return;
    }
    if (uv_now(r->loop) >= r->head->deadline && r->ac != NULL) {
        redisAsyncContext *ac = r->ac;
        lost(r, "timeout");
        ac->data = NULL; /* its callbacks below must not report again */
        redisAsyncFree(ac);
    }
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct mta_sts_redis_req *q = priv;
    const redisReply *rep = reply;

    unlink_req(q->r, q);
    if (q->cb != NULL) {
        if (rep != NULL && rep->type == REDIS_REPLY_STRING && rep->len <= MTA_STS_REDIS_VALUE_MAX)
            q->cb(q->arg, rep->str, rep->len);
        else
            q->cb(q->arg, NULL, 0);
    }
    free(q);
}

struct mta_sts_redis *mta_sts_redis_new(uv_loop_t *loop, const struct sockaddr *addr)
{
    struct mta_sts_redis *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->loop = loop;
    if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)addr;
        memcpy(&r->addr, s6, sizeof(*s6));
        inet_ntop(AF_INET6, &s6->sin6_addr, r->ip, sizeof(r->ip));
        r->port = ntohs(s6->sin6_port);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)addr;
        memcpy(&r->addr, s4, sizeof(*s4));
        inet_ntop(AF_INET, &s4->sin_addr, r->ip, sizeof(r->ip));
        r->port = ntohs(s4->sin_port);
    }
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    return r;
}

bool mta_sts_redis_is(const struct mta_sts_redis *r, const struct sockaddr *addr)
{
    size_t n =
        addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    return r->addr.ss_family == addr->sa_family && memcmp(&r->addr, addr, n) == 0;
}

struct mta_sts_redis_req *mta_sts_redis_get(struct mta_sts_redis *r, const char *key,
                                            mta_sts_redis_cb cb, void *arg)
{
    struct mta_sts_redis_req *q;

    if (r->closing || !connected(r) || (q = calloc(1, sizeof(*q))) == NULL)
        return NULL;
    q->r = r;
    q->cb = cb;
    q->arg = arg;
    q->deadline = uv_now(r->loop) + MTA_STS_REDIS_TIMEOUT_MS;
    if (redisAsyncCommand(r->ac, on_reply, q, "GET %b", key, strlen(key)) != REDIS_OK) {
        free(q);
        return NULL;
    }
    /* Appended: deadlines grow along the list. */
    q->prev = r->tail;
    if (r->tail != NULL)
        r->tail->next = q;
    else
        r->head = q;
    r->tail = q;
    if (!uv_is_active((uv_handle_t *)&r->timer))
        uv_timer_start(&r->timer, on_timer, 100, 100);
    return q;
}

void mta_sts_redis_cancel(struct mta_sts_redis_req *q)
{
    if (q != NULL)
        q->cb = NULL;
}

void mta_sts_redis_set(struct mta_sts_redis *r, const char *key, const char *value, size_t len,
                       unsigned ttl)
{
    if (ttl == 0 || r->closing || !connected(r))
        return;
    /* NULL callback: hiredis drops the reply. */
    redisAsyncCommand(r->ac, NULL, NULL, "SET %b %b EX %u", key, strlen(key), value, len, ttl);
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void finish_close(struct mta_sts_redis *r)
{
    if (r->closed)
        return;
    r->closed = true;
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);
}

void mta_sts_redis_free(struct mta_sts_redis *r)
{
    if (r == NULL)
        return;
    for (struct mta_sts_redis_req *q = r->head; q != NULL; q = q->next)
        q->cb = NULL;
    r->closing = true;
    if (r->ac == NULL) {
        finish_close(r);
        return;
    }
    /* Gracefully: what was sent (a SET of a policy just fetched) is
     * written and answered first, for at most the timeout. */
    r->close_deadline = uv_now(r->loop) + MTA_STS_REDIS_TIMEOUT_MS;
    uv_timer_start(&r->timer, on_timer, 100, 100);
    redisAsyncDisconnect(r->ac); /* may call on_disconnect at once */
}
