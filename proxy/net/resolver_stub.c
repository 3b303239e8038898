/*
 * The trust-ad stub resolver; see resolver_stub.h.
 *
 * Each lookup owns a timer (its attempt's deadline; a zero timeout also
 * starts it, so that nothing calls back from inside resolver_stub_query) and
 * at most one UDP or TCP handle at a time, each in an allocation of its own:
 * a handle being closed for the next server cannot be reused before its
 * close callback, and a lookup is freed only when its last handle has
 * closed. A handle's callbacks check that it is still the lookup's current
 * one and that the lookup is not finished, so late datagrams, a connect
 * cancelled by uv_close, or a read after a cancel are ignored.
 */
#include "proxy/net/resolver_stub.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <netinet/in.h>

#include "proxy/core/dns.h"
#include "proxy/obs/log.h"

struct resolver_stub {
    uv_loop_t *loop;
    struct sockaddr_storage servers[RESOLVER_MAX_SERVERS]; /* with their ports */
    size_t nservers;
    unsigned live; /* lookups not yet freed (handles still open) */
    bool closing;
    void (*done)(void *arg);
    void *done_arg;
    struct dns_answer *ans; /* one parse at a time: the loop has one thread */
};

enum phase { PHASE_START, PHASE_UDP, PHASE_TCP };

struct sq;

struct udp_h {
    uv_udp_t h;
    struct sq *sq;
};

struct tcp_h {
    uv_tcp_t h;
    struct sq *sq;
    uv_connect_t conn;
    uv_write_t wr;
    uint8_t *buf; /* 2-octet length + at most DNS_MAX_MSG */
    size_t got;
};

struct sq {
    struct resolver_stub *s;
    struct resolver_query *q;
    resolver_cb deliver;
    bool finished; /* delivered or cancelled: only closing remains */
    char name[DNS_MAX_NAME + 1];
    uint16_t qtype, id;
    enum phase phase;
    size_t server;
    int tries;
    const char *why; /* static: the last server's failure */
    uv_timer_t timer;
    struct udp_h *udp;
    struct tcp_h *tcp;
    unsigned handles;
    size_t qlen;
    uint8_t qbuf[2 + DNS_MAX_QUERY]; /* TCP's length prefix, then the query */
    uint8_t rbuf[4096];              /* a UDP datagram (we advertise 1232) */
};

static void try_udp(struct sq *sq);

static void stub_maybe_free(struct resolver_stub *s)
{
    if (!s->closing || s->live > 0)
        return;
    void (*done)(void *) = s->done;
    void *arg = s->done_arg;
    free(s->ans);
    free(s);
    if (done != NULL)
        done(arg);
}

static void sq_release(struct sq *sq)
{
    if (!sq->finished || sq->handles > 0)
        return;
    struct resolver_stub *s = sq->s;
    free(sq);
    s->live--;
    stub_maybe_free(s);
}

static void on_udp_closed(uv_handle_t *h)
{
    struct udp_h *u = h->data;
    struct sq *sq = u->sq;

    free(u);
    sq->handles--;
    sq_release(sq);
}

static void on_tcp_closed(uv_handle_t *h)
{
    struct tcp_h *t = h->data;
    struct sq *sq = t->sq;

    free(t->buf);
    free(t);
    sq->handles--;
    sq_release(sq);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct sq *sq = h->data;

    sq->handles--;
    sq_release(sq);
}

static void close_legs(struct sq *sq)
{
    if (sq->udp != NULL) {
        uv_close((uv_handle_t *)&sq->udp->h, on_udp_closed);
        sq->udp = NULL;
    }
    if (sq->tcp != NULL) {
        uv_close((uv_handle_t *)&sq->tcp->h, on_tcp_closed);
        sq->tcp = NULL;
    }
}

static void finish(struct sq *sq)
{
    sq->finished = true;
    if (sq->q != NULL)
        sq->q->stub = NULL;
    sq->q = NULL;
    close_legs(sq);
    uv_close((uv_handle_t *)&sq->timer, on_timer_closed);
}

static void deliver(struct sq *sq, const struct resolver_result *res)
{
    struct resolver_query *q = sq->q;
    resolver_cb cb = sq->deliver;

    finish(sq);
    cb(q, res);
}

static void next_server(struct sq *sq, const char *why)
{
    char ip[ADDR_STRLEN], qn[2 * DNS_MAX_NAME + 3], qw[200];

    /* The name passed dns_name_encode (printable, no spaces) but may hold
     * quotes: quoted like every other field a peer can shape. */
    log_debug("event=resolver_server_failed server=%s name=%s error=%s",
              addr_format((const struct sockaddr *)&sq->s->servers[sq->server], ip, sizeof ip),
              log_quote(sq->name, qn, sizeof qn), log_quote(why, qw, sizeof qw));
    sq->why = why;
    close_legs(sq);
    uv_timer_stop(&sq->timer);
    sq->server++;
    sq->tries = 0;
    try_udp(sq);
}

static bool same_addr(const struct sockaddr *a, const struct sockaddr_storage *b)
{
    if (a->sa_family != b->ss_family)
        return false;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return false;
}

static void start_tcp(struct sq *sq);

/* An answer from the current server, over UDP or TCP. */
static void on_message(struct sq *sq, const uint8_t *msg, size_t len, bool tcp)
{
    struct dns_answer *a = sq->s->ans;
    int rc = dns_response_parse(msg, len, sq->id, sq->name, sq->qtype, a);

    switch (rc) {
    case DNS_OK: {
        /* RFC 6840 §5.7: the AD bit is the recursor's word that it validated
         * the data; we believe it only from a loopback recursor. */
        struct resolver_result res = {
            .rcode = a->rcode,
            .security = a->ad && (a->rcode == DNS_RCODE_NOERROR || a->rcode == DNS_RCODE_NXDOMAIN)
                            ? RESOLVER_SECURE
                            : RESOLVER_INSECURE,
            .count = a->count,
            .data = a->count > 0 ? a->data : NULL,
            .len = a->count > 0 ? a->len : NULL,
            .ttl = a->ttl > INT_MAX ? INT_MAX : (int)a->ttl,
        };
        /* A validating recursor answers a bogus lookup with SERVFAIL, and
         * without RFC 8914's extended errors nothing tells that from a
         * server that could not be reached: fail closed, as libunbound's
         * bogus (SERVFAIL with bogus set), so that no caller falls back to
         * another address family or to "no records" on it. */
        if (a->rcode == DNS_RCODE_SERVFAIL) {
            res.security = RESOLVER_BOGUS;
            res.why_bogus = "SERVFAIL from the validating resolver";
        }
        deliver(sq, &res);
        return;
    }
    case DNS_TRUNCATED:
        if (!tcp)
            start_tcp(sq);
        else
            next_server(sq, "truncated answer over TCP");
        return;
    case DNS_ERR_NOT_OURS:
        if (!tcp)
            return; /* not an answer to this query: keep waiting for one */
                    /* fall through */
    default:
        next_server(sq, dns_status_str(rc));
        return;
    }
}

static void on_udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct udp_h *u = h->data;

    (void)suggested;
    *buf = uv_buf_init((char *)u->sq->rbuf, sizeof u->sq->rbuf);
}

static void on_udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *addr, unsigned flags)
{
    struct udp_h *u = h->data;
    struct sq *sq = u->sq;

    (void)buf;
    if (sq->udp != u || sq->finished)
        return;
    if (nread < 0) {
        /* On a connected socket: ICMP port unreachable, say. */
        next_server(sq, uv_strerror((int)nread));
        return;
    }
    if (addr == NULL || !same_addr(addr, &sq->s->servers[sq->server]))
        return;
    if (flags & UV_UDP_PARTIAL) {
        start_tcp(sq); /* bigger than our buffer: TCP has room */
        return;
    }
    on_message(sq, sq->rbuf, (size_t)nread, false);
}

static void on_timer(uv_timer_t *t);

static void arm(struct sq *sq, uint64_t ms)
{
    uv_timer_start(&sq->timer, on_timer, ms, 0);
}

/* Sends the query and arms the try's deadline, or moves on. */
static void send_udp(struct sq *sq)
{
    uv_buf_t b = uv_buf_init((char *)sq->qbuf + 2, (unsigned)sq->qlen);
    int rc = uv_udp_try_send(&sq->udp->h, &b, 1, NULL);

    /* A full send buffer is a lost datagram: the timer retries. */
    if (rc < 0 && rc != UV_EAGAIN) {
        next_server(sq, uv_strerror(rc));
        return;
    }
    arm(sq, RESOLVER_STUB_UDP_MS);
}

static void try_udp(struct sq *sq)
{
    struct resolver_stub *s = sq->s;

    if (sq->server >= s->nservers) {
        struct resolver_result res = {
            .err = -EIO,
            .errstr = sq->why ? sq->why : "no server answered",
            .rcode = RESOLVER_RCODE_SERVFAIL,
        };
        deliver(sq, &res);
        return;
    }
    if (getrandom(&sq->id, sizeof sq->id, 0) != (ssize_t)sizeof sq->id)
        sq->id = (uint16_t)(uv_hrtime() ^ (uintptr_t)sq);
    int n = dns_query_build(sq->qbuf + 2, sizeof sq->qbuf - 2, sq->id, sq->name, sq->qtype);
    if (n < 0) {
        next_server(sq, dns_status_str(n));
        return;
    }
    sq->qlen = (size_t)n;
    struct udp_h *u = calloc(1, sizeof *u);
    if (u == NULL) {
        next_server(sq, "out of memory");
        return;
    }
    int rc = uv_udp_init(s->loop, &u->h);
    if (rc < 0) {
        free(u);
        next_server(sq, uv_strerror(rc));
        return;
    }
    u->h.data = u;
    u->sq = sq;
    sq->udp = u;
    sq->handles++;
    sq->phase = PHASE_UDP;
    /* A connected socket per server: a fresh random port, and the kernel
     * delivers only the server's datagrams (on_udp_recv checks again). */
    if ((rc = uv_udp_connect(&u->h, (const struct sockaddr *)&s->servers[sq->server])) < 0 ||
        (rc = uv_udp_recv_start(&u->h, on_udp_alloc, on_udp_recv)) < 0) {
        next_server(sq, uv_strerror(rc));
        return;
    }
    send_udp(sq);
}

static void on_write(uv_write_t *req, int status)
{
    struct tcp_h *t = req->data;
    struct sq *sq = t->sq;

    if (status < 0 && sq->tcp == t && !sq->finished)
        next_server(sq, uv_strerror(status));
}

static void on_tcp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct tcp_h *t = h->data;

    (void)suggested;
    *buf = uv_buf_init((char *)t->buf + t->got, (unsigned)(2 + DNS_MAX_MSG - t->got));
}

static void on_tcp_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    struct tcp_h *t = h->data;
    struct sq *sq = t->sq;

    (void)buf;
    if (sq->tcp != t || sq->finished)
        return;
    if (nread < 0) {
        next_server(sq, nread == UV_EOF ? "connection closed before the answer"
                                        : uv_strerror((int)nread));
        return;
    }
    t->got += (size_t)nread;
    if (t->got < 2)
        return;
    size_t need = 2 + ((size_t)t->buf[0] << 8 | t->buf[1]);
    if (need < 2 + DNS_HEADER_LEN) {
        next_server(sq, dns_status_str(DNS_ERR_MALFORMED));
        return;
    }
    if (t->got < need)
        return;
    uv_read_stop(h);
    on_message(sq, t->buf + 2, need - 2, true);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct tcp_h *t = req->data;
    struct sq *sq = t->sq;
    int rc;

    if (sq->tcp != t || sq->finished)
        return; /* UV_ECANCELED from uv_close, or a late result */
    if (status < 0) {
        next_server(sq, uv_strerror(status));
        return;
    }
    sq->qbuf[0] = (uint8_t)(sq->qlen >> 8);
    sq->qbuf[1] = (uint8_t)sq->qlen;
    uv_buf_t b = uv_buf_init((char *)sq->qbuf, (unsigned)(2 + sq->qlen));
    t->wr.data = t;
    if ((rc = uv_write(&t->wr, (uv_stream_t *)&t->h, &b, 1, on_write)) < 0 ||
        (rc = uv_read_start((uv_stream_t *)&t->h, on_tcp_alloc, on_tcp_read)) < 0)
        next_server(sq, uv_strerror(rc));
}

/* RFC 7766 §5: a truncated answer is asked again over TCP, same server. */
static void start_tcp(struct sq *sq)
{
    struct resolver_stub *s = sq->s;
    struct tcp_h *t = calloc(1, sizeof *t);
    int rc;

    close_legs(sq);
    uv_timer_stop(&sq->timer);
    if (t == NULL || (t->buf = malloc(2 + DNS_MAX_MSG)) == NULL) {
        free(t);
        next_server(sq, "out of memory");
        return;
    }
    if ((rc = uv_tcp_init(s->loop, &t->h)) < 0) {
        free(t->buf);
        free(t);
        next_server(sq, uv_strerror(rc));
        return;
    }
    t->h.data = t;
    t->sq = sq;
    t->conn.data = t;
    sq->tcp = t;
    sq->handles++;
    sq->phase = PHASE_TCP;
    rc = uv_tcp_connect(&t->conn, &t->h, (const struct sockaddr *)&s->servers[sq->server],
                        on_connect);
    if (rc < 0) {
        next_server(sq, uv_strerror(rc));
        return;
    }
    arm(sq, RESOLVER_STUB_TCP_MS);
}

static void on_timer(uv_timer_t *timer)
{
    struct sq *sq = timer->data;

    switch (sq->phase) {
    case PHASE_START:
        try_udp(sq);
        return;
    case PHASE_UDP:
        if (++sq->tries < 2) { /* one retry, same socket and ID */
            send_udp(sq);
            return;
        }
        next_server(sq, "timed out");
        return;
    case PHASE_TCP:
        next_server(sq, "timed out over TCP");
        return;
    }
}

struct resolver_stub *resolver_stub_new(uv_loop_t *loop, const struct resolver_options *o,
                                        char *err, size_t errlen)
{
    struct resolver_stub *s = calloc(1, sizeof *s);

    if (s == NULL || (s->ans = malloc(sizeof *s->ans)) == NULL) {
        free(s);
        snprintf(err, errlen, "resolver: out of memory");
        return NULL;
    }
    s->loop = loop;
    if (o->nservers == 0) {
        snprintf(err, errlen, "resolver: dnssec = \"trust-ad\" without servers");
        free(s->ans);
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < o->nservers && i < RESOLVER_MAX_SERVERS; i++) {
        struct sockaddr_storage *sa = &s->servers[i];

        memcpy(sa, &o->servers[i].sa, sizeof *sa);
        if (sa->ss_family == AF_INET)
            ((struct sockaddr_in *)sa)->sin_port = htons(o->servers[i].port);
        else
            ((struct sockaddr_in6 *)sa)->sin6_port = htons(o->servers[i].port);
        s->nservers++;
    }
    return s;
}

int resolver_stub_query(struct resolver_stub *s, struct resolver_query *q, const char *name,
                        int rrtype, resolver_cb cb)
{
    uint8_t w[DNS_MAX_NAME];

    if (rrtype < 0 || rrtype > 0xffff || strlen(name) >= DNS_MAX_NAME + 1 ||
        dns_name_encode(w, name) == 0)
        return UV_EINVAL;
    struct sq *sq = calloc(1, sizeof *sq);
    if (sq == NULL)
        return UV_ENOMEM;
    int rc = uv_timer_init(s->loop, &sq->timer);
    if (rc < 0) {
        free(sq);
        return rc;
    }
    sq->s = s;
    sq->q = q;
    sq->deliver = cb;
    strcpy(sq->name, name);
    sq->qtype = (uint16_t)rrtype;
    sq->phase = PHASE_START;
    sq->timer.data = sq;
    sq->handles = 1;
    s->live++;
    q->stub = sq;
    arm(sq, 0); /* the first datagram leaves from the loop */
    return 0;
}

void resolver_stub_cancel(struct resolver_query *q)
{
    struct sq *sq = q->stub;

    if (sq != NULL && !sq->finished)
        finish(sq);
}

void resolver_stub_close(struct resolver_stub *s, void (*done)(void *arg), void *arg)
{
    s->closing = true;
    s->done = done;
    s->done_arg = arg;
    stub_maybe_free(s);
}
