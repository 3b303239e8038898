/*
 * Listening sockets; see listener.h.
 */
#include "proxy/net/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/obs/log.h"

static const char *const event_names[LISTENER_EV_COUNT] = {
    [LISTENER_EV_PAUSED] = "accept_paused",
    [LISTENER_EV_DROPPED] = "connection_dropped",
    [LISTENER_EV_FAILED] = "accept_failed",
};

/* ---- binding (main thread) ---- */

void listener_error(char *msg, size_t msglen, const char *name, const struct addr *addr, int rc)
{
    char where[ADDR_STRLEN + 8];

    addr_format_spec(addr, addr->port, where, sizeof(where));
    snprintf(msg, msglen, "listener %s: cannot listen on %s: %s%s", name, where,
             uv_strerror(rc),
             rc == UV_EADDRINUSE ? " (another process, or another instance, holds it)" : "");
}

static int bound_socket(const struct addr *addr, bool reuseport, bool listening, int *out)
{
    int one = 1, rc;
    int fd = socket(addr->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
        goto fail;
    if (addr->sa.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&addr->sa, addr->salen) != 0)
        goto fail;
    if (listening && listen(fd, LISTENER_BACKLOG) != 0)
        goto fail;
    *out = fd;
    return 0;

fail:
    rc = -errno;
    close(fd);
    return rc;
}

int listener_probe(const char *name, const struct addr *addr, char *msg, size_t msglen)
{
    int fd = -1;
    /* Bound but not listening: nobody can connect to it in between. */
    int rc = bound_socket(addr, false, false, &fd);

    if (rc != 0) {
        listener_error(msg, msglen, name, addr, rc);
        return rc;
    }
    close(fd);
    return 0;
}

int listener_socket(const char *name, const struct addr *addr, int *fd, char *msg,
                    size_t msglen)
{
    int rc = bound_socket(addr, true, true, fd);

    if (rc != 0)
        listener_error(msg, msglen, name, addr, rc);
    return rc;
}

int listener_reserve_open(void)
{
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* ---- serving (loop thread) ---- */

/* Whether a line of kind ev may be logged now; *suppressed gets how many
 * were held back since the last one. */
static bool rate_ok(struct listener *l, enum listener_event ev, unsigned *suppressed)
{
    struct listener_rate *r = &l->rate[ev];
    uint64_t now = uv_now(l->loop);

    if (r->last_ms != 0 && now - r->last_ms < 1000) {
        r->suppressed++;
        return false;
    }
    r->last_ms = now ? now : 1;
    *suppressed = r->suppressed;
    r->suppressed = 0;
    return true;
}

static void on_poll(uv_poll_t *p, int status, int events);

static void on_backoff(uv_timer_t *t)
{
    struct listener *l = t->data;

    if (!l->closing)
        uv_poll_start(&l->poll, UV_READABLE, on_poll);
}

/* Accepts the connection at the head of the queue with the reserve
 * descriptor and closes it: the client gets a clean close instead of
 * waiting in a queue nobody serves. */
static void drop_one(struct listener *l)
{
    unsigned n;

    if (l->reserve == NULL || *l->reserve < 0) {
        if (l->reserve != NULL)
            *l->reserve = listener_reserve_open();
        return;
    }
    close(*l->reserve);
    *l->reserve = -1;
    int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
        close(fd);
        if (rate_ok(l, LISTENER_EV_DROPPED, &n))
            log_warn("listener=%s event=%s reason=out_of_descriptors suppressed=%u "
                     "msg=\"a pending connection was accepted and closed at once\"",
                     l->name, event_names[LISTENER_EV_DROPPED], n);
    }
    /* Another thread may have taken the descriptor just freed; then there
     * is no reserve until one can be opened again. */
    *l->reserve = listener_reserve_open();
}

/* Out of descriptors or memory: stop watching the socket for a while. */
static void pause_accepting(struct listener *l, int err)
{
    unsigned n;

    drop_one(l);
    if (l->backoff_ms == 0) {
        l->backoff_ms = LISTENER_BACKOFF_MIN_MS;
        l->paused_since_ms = uv_now(l->loop);
    } else if ((l->backoff_ms *= 2) > LISTENER_BACKOFF_MAX_MS) {
        l->backoff_ms = LISTENER_BACKOFF_MAX_MS;
    }
    uv_poll_stop(&l->poll);
    uv_timer_start(&l->backoff, on_backoff, l->backoff_ms, 0);
    if (rate_ok(l, LISTENER_EV_PAUSED, &n))
        log_warn("listener=%s event=%s error=\"%s\" retry_ms=%u suppressed=%u "
                 "msg=\"not accepting until descriptors are free again\"",
                 l->name, event_names[LISTENER_EV_PAUSED], uv_strerror(err), l->backoff_ms, n);
}

static void resumed(struct listener *l)
{
    unsigned total = 0;

    for (int i = 0; i < LISTENER_EV_COUNT; i++) {
        total += l->rate[i].suppressed;
        l->rate[i].suppressed = 0;
    }
    log_info("listener=%s event=accept_resumed paused_ms=%llu suppressed=%u", l->name,
             (unsigned long long)(uv_now(l->loop) - l->paused_since_ms), total);
    l->backoff_ms = 0;
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct listener *l = p->data;
    unsigned n;

    (void)events;
    if (status < 0) {
        if (rate_ok(l, LISTENER_EV_FAILED, &n))
            log_warn("listener=%s event=%s error=\"%s\" suppressed=%u", l->name,
                     event_names[LISTENER_EV_FAILED], uv_strerror(status), n);
        return;
    }
    for (int i = 0; i < LISTENER_ACCEPT_BATCH && !l->closing; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

        if (fd >= 0) {
            if (l->backoff_ms != 0)
                resumed(l);
            l->on_accept(l, fd);
            continue;
        }
        int e = errno;
        switch (e) {
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
            return;
        case EINTR:
        /* The peer is gone already, or a network error that accept(2)
         * passes on for the new connection: nothing to do with us. */
        case ECONNABORTED:
        case EPROTO:
        case ENETDOWN:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case EOPNOTSUPP:
        case ENETUNREACH:
            continue;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
            pause_accepting(l, -e);
            return;
        default:
            /* Unknown and likely to repeat: log, and back off too, rather
             * than spin on it. */
            if (rate_ok(l, LISTENER_EV_FAILED, &n))
                log_warn("listener=%s event=%s error=\"%s\" suppressed=%u", l->name,
                         event_names[LISTENER_EV_FAILED], uv_strerror(-e), n);
            pause_accepting(l, -e);
            return;
        }
    }
}

static void on_close(uv_handle_t *h)
{
    struct listener *l = h->data;

    if (--l->handles > 0)
        return;
    /* Only now: libuv must not watch a descriptor that was closed. */
    close(l->fd);
    free(l);
}

struct listener *listener_start(uv_loop_t *loop, int fd, int *reserve, const char *name,
                                listener_accept_cb on_accept, void *owner, int *err)
{
    struct listener *l = calloc(1, sizeof(*l));
    int rc;

    if (l == NULL) {
        rc = UV_ENOMEM;
        goto fail;
    }
    l->loop = loop;
    l->fd = fd;
    l->reserve = reserve;
    l->on_accept = on_accept;
    l->owner = owner;
    snprintf(l->name, sizeof(l->name), "%s", name);
    if ((rc = uv_poll_init_socket(loop, &l->poll, fd)) != 0)
        goto fail;
    l->poll.data = l;
    l->handles++;
    uv_timer_init(loop, &l->backoff);
    l->backoff.data = l;
    l->handles++;
    if ((rc = uv_poll_start(&l->poll, UV_READABLE, on_poll)) != 0) {
        listener_close(l); /* closes fd */
        *err = rc;
        return NULL;
    }
    return l;

fail:
    free(l);
    close(fd);
    *err = rc;
    return NULL;
}

void listener_close(struct listener *l)
{
    if (l == NULL || l->closing)
        return;
    l->closing = true;
    uv_close((uv_handle_t *)&l->poll, on_close);
    uv_close((uv_handle_t *)&l->backoff, on_close);
}
