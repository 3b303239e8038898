/*
 * Accepting a connection into a new session, and the session set of one
 * event loop.
 */
#include "proxy/session/session_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "proxy/obs/log.h"
#include "proxy/policy/rules.h"

static const char R_SHUTDOWN[] = "421 4.3.2 Service shutting down, closing connection\r\n";
static const char R_INTERNAL[] = "421 4.3.0 Internal error, closing connection\r\n";
static const char R_TOO_MANY[] = "421 4.3.2 Too many connections, try again later\r\n";

static atomic_uint_fast32_t session_counter;
static uint32_t session_salt;
static uv_once_t salt_once = UV_ONCE_INIT;

/* Session ids are a counter scrambled by a per-process salt: unique within
 * a run, and not guessable across runs. */
static void init_salt(void)
{
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != sizeof(r))
        r = (uint32_t)uv_hrtime();
    session_salt = r | 1;
}

void session_accept(struct session_set *set, int fd, const struct session_profile *profile)
{
    /* An inbound session has no room for the outbound part (session_int.h). */
    struct session *s = calloc(1, session_alloc_size(profile));

    if (s == NULL) {
        log_error("listener=%s event=accept_failed error=\"out of memory\"",
                  profile ? profile->name : "-");
        close(fd);
        return;
    }
    uv_once(&salt_once, init_salt);
    uint32_t n = (uint32_t)atomic_fetch_add(&session_counter, 1);
    snprintf(s->id, sizeof(s->id), "%08" PRIx32, (n * 2654435761u) ^ session_salt);
    s->set = set;
    s->p = profile;
    s->start_ms = uv_now(set->loop);
    s->action = "accepting";
    if (profile)
        profile->hold(profile);

    /* Linked first: from here on the set can see and shut it down. */
    s->next = set->head;
    if (set->head)
        set->head->prev = s;
    set->head = s;
    set->count++;

    uv_timer_init(set->loop, &s->timer);
    s->timer.data = s;
    s->handles = 1;
    if (conn_init(&s->client, set->loop, &session_conn_cb, s) == 0) {
        s->handles++;
    } else {
        close(fd);
        fd = -1;
    }
    if (fd < 0 || conn_open(&s->client, fd) != 0 || profile == NULL) {
        s->reason = profile ? REASON_ACCEPT_FAILED : REASON_LISTENER_REMOVED;
        s->closing = true;
        session_close_handles(s);
        return;
    }
    int alen = sizeof(s->peer);
    uv_tcp_getpeername(&s->client.tcp, (struct sockaddr *)&s->peer, &alen);
    alen = sizeof(s->local);
    uv_tcp_getsockname(&s->client.tcp, (struct sockaddr *)&s->local, &alen);
    if (profile->outbound) /* inbound sessions format it when logging */
        addr_format((const struct sockaddr *)&s->peer, s->client_addr, sizeof(s->client_addr));
    metrics_connection_open(profile->metrics);
    s->counted = true;
    unsigned active = atomic_fetch_add(profile->active, 1) + 1;
    if (session_init_engine(s) != 0) {
        log_error("session=%s listener=%s event=out_of_memory action=\"%s\"", s->id, profile->name,
                  s->action);
        conn_emit(&s->client, (const uint8_t *)R_INTERNAL, sizeof(R_INTERNAL) - 1);
        session_close(s, REASON_INTERNAL_ERROR);
        return;
    }
    bool implicit = !profile->outbound && profile->in->tls_mode == SESSION_TLS_IMPLICIT;

    if (conn_init(&s->server, set->loop, &session_conn_cb, s) == 0) {
        s->handles++;
    } else {
        session_close(s, REASON_INTERNAL_ERROR);
        return;
    }
    unsigned max = profile->outbound ? profile->out->max_connections : profile->in->max_connections;
    if (active > max || set->stopping) {
        log_warn("session=%s listener=%s event=refused reason=%s client=%s", s->id, profile->name,
                 set->stopping ? "shutting_down" : "max_connections", session_client_name(s));
        if (!implicit)
            conn_emit(&s->client, (const uint8_t *)R_TOO_MANY, sizeof(R_TOO_MANY) - 1);
        session_close(s, REASON_MAX_CONNECTIONS);
        return;
    }
    log_debug("session=%s listener=%s event=connect client=%s", s->id, profile->name,
              session_client_name(s));
    if (profile->outbound) {
        session_start_outbound(s);
        return;
    }
    if (profile->in->proxy_protocol && profile->in->nproxy_from > 0 &&
        !policy_nets_contain(profile->in->proxy_from, profile->in->nproxy_from,
                             (const struct sockaddr *)&s->peer)) {
        /* Only the load balancers named may say who the client is. */
        log_warn("session=%s listener=%s event=proxy_header_untrusted client=%s", s->id,
                 profile->name, session_client_name(s));
        session_close(s, REASON_PROXY_HEADER_UNTRUSTED);
        return;
    }
    if (profile->in->proxy_protocol) {
        s->pp_wait = true;
        s->action = "reading the PROXY header";
        session_arm_phase(s, PHASE_PREFACE, s->timeouts->handshake);
        conn_resume(&s->client);
        return;
    }
    if (implicit) {
        session_start_implicit_tls(s, NULL, 0);
        return;
    }
    s->phase = PHASE_CONNECTING;
    conn_resume(&s->client);
    if (!s->closing)
        session_dial(s);
}

/* ---- the set ---- */

void session_set_init(struct session_set *set, uv_loop_t *loop,
                      void (*on_empty)(struct session_set *set), void *owner)
{
    memset(set, 0, sizeof(*set));
    set->loop = loop;
    set->on_empty = on_empty;
    set->owner = owner;
}

void session_set_resolver(struct session_set *set, struct resolver *r)
{
    set->resolver = r;
}

void session_set_mta_sts(struct session_set *set, struct mta_sts_loop *l)
{
    set->mta_sts = l;
}

void session_set_stop(struct session_set *set)
{
    set->stopping = true;
    if (set->count == 0 && set->on_empty)
        set->on_empty(set);
}

static void session_shutdown(struct session *s)
{
    /* One still flushing its last words is cut short: shutdown means now. */
    if (s->closing) {
        session_close_handles(s);
        return;
    }
    if (!s->p->outbound && (s->phase == PHASE_HANDSHAKE || s->phase == PHASE_HANDSHAKE_IMPLICIT)) {
        session_close(s, REASON_SHUTDOWN);
        return;
    }
    s->ops->abort(s->eng, R_SHUTDOWN, REASON_SHUTDOWN);
    session_run_actions(s);
}

void session_set_shutdown(struct session_set *set)
{
    /* Sessions unlink themselves only when their handles have closed (in a
     * later close callback), so walking the list here is safe. */
    for (struct session *s = set->head; s != NULL; s = s->next)
        session_shutdown(s);
}
