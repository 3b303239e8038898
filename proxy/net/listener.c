#include "proxy/net/listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/obs/log.h"

static void on_connection(uv_stream_t *server, int status)
{
    struct listener *l = server->data;

    if (status < 0) {
        log_warn("listener=%s event=accept_failed error=\"%s\"", l->name, uv_strerror(status));
        return;
    }
    l->on_accept(l);
}

int listener_open(struct listener *l, uv_loop_t *loop, const char *name, const struct addr *addr,
                  listener_accept_cb on_accept, void *owner, size_t slot, char *msg,
                  size_t msglen)
{
    int one = 1, rc;
    int fd = socket(addr->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    memset(l, 0, sizeof(*l));
    l->on_accept = on_accept;
    l->owner = owner;
    l->slot = slot;
    snprintf(l->name, sizeof(l->name), "%s", name);
    if (fd < 0) {
        rc = -errno;
        goto fail;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* Every worker binds the same address; the kernel balances accepts. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        rc = -errno;
        goto fail_fd;
    }
    if (addr->sa.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&addr->sa, addr->salen) != 0 ||
        listen(fd, 1024) != 0) {
        rc = -errno;
        goto fail_fd;
    }
    if ((rc = uv_tcp_init(loop, &l->tcp)) != 0)
        goto fail_fd;
    l->tcp.data = l;
    l->open = true;
    if ((rc = uv_tcp_open(&l->tcp, fd)) != 0) {
        listener_close(l);
        goto fail_fd;
    }
    if ((rc = uv_listen((uv_stream_t *)&l->tcp, 1024, on_connection)) != 0) {
        listener_close(l);
        goto fail;
    }
    return 0;

fail_fd:
    close(fd);
fail:
    snprintf(msg, msglen, "listener %s: cannot listen on %s:%u: %s", name, addr->host,
             addr->port, uv_strerror(rc));
    return rc;
}

void listener_close(struct listener *l)
{
    if (l->open) {
        l->open = false;
        uv_close((uv_handle_t *)&l->tcp, NULL);
    }
}
