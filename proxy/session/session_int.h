/*
 * The inside of a session, shared by the files of the session module only
 * (session.c: lifecycle and the legs' callbacks; dial.c: the server leg;
 * accept.c: accepting and the session set). Not part of the module's API.
 */
#ifndef SMTP_TLS_PROXY_SESSION_INT_H
#define SMTP_TLS_PROXY_SESSION_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <netinet/in.h>

#include <uv.h>

#include "proxy/core/engine.h"
#include "proxy/core/inbound.h"
#include "proxy/core/outbound.h"
#include "proxy/core/xclient.h"
#include "proxy/net/conn.h"
#include "proxy/policy/tlsa.h"
#include "proxy/policy/tlsrpt_result.h"
#include "proxy/session/destination.h"
#include "proxy/session/session.h"

enum session_phase {
    PHASE_PREFACE,            /* reading a load balancer's PROXY header */
    PHASE_HANDSHAKE_IMPLICIT, /* implicit TLS before the backend is dialled */
    PHASE_CONNECTING,         /* resolving or dialling the server */
    PHASE_RUNNING,
    PHASE_HANDSHAKE,          /* STARTTLS handshake, either leg */
    PHASE_CLOSING,            /* flushing the last words to the client */
};

/* The proxy's own replies for what happens around the engine, per direction. */
struct direction {
    const char *server_down;
};

extern const struct direction session_dir_in, session_dir_out;

/* Who the backend is told the client is (inbound, allocated with the engine
 * when backend_client_info = "xclient" or received_header is on). */
struct session_client {
    char xclient[XCLIENT_LINE_MAX];
    /* The client's forward-confirmed reverse name (dial.c), for XCLIENT and
     * the Received: line: "" when none. */
    char name[256];
};

/* A TCP peer's address: IPv4 or IPv6 only (28 bytes, not the 128 of a
 * sockaddr_storage). */
union session_addr {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
};

extern const struct conn_cb session_conn_cb;

/* TLS-RPT (tlsrpt.c): what the TLS of an outbound session's first
 * connection came to, from the engine's states and the TLS layer's
 * results (a fallback reconnect is the same session, not another). */
struct session_rpt {
    enum tlsrpt_tls tls;             /* UNKNOWN until known */
    enum tlsrpt_cert cert;           /* the PKIX check, once there was a chain */
    enum tlsrpt_dane dane;           /* the handshake's DANE check; NA: none made */
    bool dns_failed;                 /* the TLSA lookup was bogus or failed */
    enum outbound_state last;        /* the engine's state as last seen */
    enum outbound_state closed_from; /* the state it closed from (GREETING: not closed) */
    bool local_known;
    union session_addr local; /* the server leg's own address (first connection) */
};


/* DANE for a fixed destination (dane.c): allocated when the TLSA lookup
 * starts, kept only when the records apply, freed with the session. */
struct session_dane {
    struct resolver_query q;
    enum tlsa_verdict verdict;
    struct tlsa_set set; /* usable records; their data points into data */
    uint8_t *data;       /* owned copy of the usable records' data */
    bool logged;         /* enforce = false: a refusal was logged instead */
    char name[300];      /* "_25._tcp.mx.example.net" */
    char reply[420];     /* a refusal naming it (lives as long as the session) */
};

struct session {
    struct session_set *set;
    const struct session_profile *p;  /* held until the session is freed */
    const struct session_timeouts *timeouts;
    const struct direction *dir;
    const struct engine_ops *ops;
    void *eng;                        /* &d.in.engine or &engine.out */
    struct conn client, server;
    uv_timer_t timer;
    struct session *prev, *next;      /* in set: only this file touches them */
    enum session_phase phase;
    unsigned handles;                 /* open handles + outstanding requests */
    bool counted;                     /* holds a max_connections slot */
    bool client_paused, server_paused; /* by backpressure */
    bool closing;
    unsigned resolving;               /* destination lookups outstanding (in handles) */
    bool reconnecting;
    bool pp_wait;                     /* a PROXY header is still expected */
    bool tls_deferred;                /* STARTTLS accepted; waits for the 220 to be written */
    bool client_eof;                  /* the client half-closed; owed replies still go out */
    bool content;                     /* the client is sending message content */
    uint64_t content_deadline;        /* loop time (ms) when content must have arrived */
    enum reason reason;
    const char *action;               /* what the proxy was doing, for warnings */
    uint64_t start_ms;
    uint64_t progress;
    char id[12];
    const char *tls_version;          /* static strings from BoringSSL */
    const char *tls_cipher;
    union session_addr peer;          /* the client, as the PROXY header says */
    union session_addr local;         /* where it connected to */
    /* What only one direction needs shares the memory of the other's. It
     * comes after all that both use: an inbound session is allocated only
     * up to the end of d.in (session_alloc_size), so inbound code never
     * touches d.out or what follows d. */
    union {
        struct {                      /* inbound */
            struct inbound engine;
            char *sni;                /* the client's SNI, NULL when none */
            struct session_client *client; /* XCLIENT or received_header only */
            bool name_tempfail;      /* the lookup failed temporarily */
            bool name_known;         /* the lookup is over (or not wanted) */
        } in;
        struct {                      /* outbound */
            struct destination dest;
            struct destination_lookup lookup; /* a fixed destination's name */
            enum outbound_policy policy;
            struct session_dane *dane; /* NULL unless DANE applies (or is being looked up) */
            bool verified;
            const char *verify_note;  /* static, from the TLS layer */
            char tls_error[256];      /* why the handshake failed (copied) */
            struct session_rpt rpt;   /* TLS-RPT, when the profile records (tlsrpt.c) */
        } out;
    } d;
    /* Outbound only, beyond an inbound session's end: the engine, and the
     * legs' peers as logged (common code names them with
     * session_client_name() and session_server_name()). */
    union {
        struct outbound out;
    } engine;
    char client_addr[ADDR_STRLEN];
    char server_addr[300];
};

/* session.c */
void session_enter_phase(struct session *s, enum session_phase p);
void session_arm_phase(struct session *s, enum session_phase p, unsigned seconds);
void session_run_actions(struct session *s);
void session_close(struct session *s, enum reason reason);
void session_close_handles(struct session *s);
void session_drop_handle(struct session *s);
int session_init_engine(struct session *s);
/* The client for logs: an outbound session's client_addr, or an inbound
 * session's peer (as the PROXY header says) formatted into a per-thread
 * buffer (valid until the next call on the thread); "-" before it is known. */
const char *session_client_name(const struct session *s);
/* The server leg's peer for logs: an outbound session's server_addr, or an
 * inbound session's backend formatted into a per-thread buffer (valid until
 * the next call on the thread). */
const char *session_server_name(const struct session *s);
/* How much of a struct session a session of profile p uses (NULL: all). */
size_t session_alloc_size(const struct session_profile *p);

/* dial.c */
void session_dial(struct session *s);
void session_start_outbound(struct session *s);
void session_start_implicit_tls(struct session *s, const uint8_t *early, size_t n);
int session_set_received(struct session *s);

/* dane.c */
bool session_dane_wanted(const struct session *s);
void session_dane_lookup(struct session *s);
unsigned session_dane_cancel(struct session *s);
void session_dane_free(struct session *s);
struct tls *session_dane_client(struct session *s, bool lenient);
void session_dane_tls_ready(struct session *s, struct tls *t);
void session_dane_refusal_logged(void *arg, const char *why);
/* For the end line: auth= ("none", "dane", "mta-sts", "policy") and the
 * outbound_auth_total result to count then ("ok", "fail"), or NULL. */
const char *session_auth(const struct session *s, const char **result);

/* dane.c: the usable records of a TLSA answer into set (borrowing its
 * RDATA: valid during the answer's callback only), and their verdict. */
enum tlsa_verdict session_tlsa_set(const struct resolver_result *res, struct tlsa_set *set);

/* rcpt_auth.c: per-recipient authentication of a transparent session.
 * wanted: destination = "original" with dane. init: the heap block, its
 * deadline timer (a handle) and the relay's recipient hook (0 or
 * UV_ENOMEM). close: the timer, with the session's handles; free: the
 * block, with the session. cancel: the lookups under way, their count.
 * tls_ready: keeps the destination's chain. auth: the end line's auth=.
 * of: the block of an outbound session, or NULL (it is found through the
 * engine's hooks, so that struct session grows by no pointer of its own). */
struct session_rcpt;
struct session_rcpt *session_rcpt_of(const struct session *s);
bool session_rcpt_wanted(const struct session *s);
int session_rcpt_init(struct session *s);
void session_rcpt_close(struct session *s);
void session_rcpt_free(struct session *s);
unsigned session_rcpt_cancel(struct session *s);
void session_rcpt_tls_ready(struct session *s, struct tls *t);
const char *session_rcpt_auth(const struct session *s);
enum relay_rcpt_verdict session_rcpt_hook(void *arg, const char *domain, const char **reply);

/* tlsrpt.c: TLS-RPT results of a profile with tls_rpt (each a no-op
 * otherwise). state: after each engine state change. tls_ready, tls_failed:
 * the server leg's handshake, with its engine (cert: it failed on the
 * certificate). end: a fixed destination's one record, at the session's
 * end. rcpt: a transparent session's record for a recipient domain, when
 * its decision is made (the first per domain; set: the TLSA records,
 * borrowed, or NULL; mx: the MX host reached, or ""). */
void session_tlsrpt_state(struct session *s);
void session_tlsrpt_tls_ready(struct session *s, struct tls *t);
void session_tlsrpt_tls_failed(struct session *s, struct tls *t, bool cert);
void session_tlsrpt_end(struct session *s);
/* A recipient domain's result: under DANE (set: its TLSA records), else
 * under MTA-STS (sts, may be NULL; policy: its text and mx patterns, may
 * be NULL; cert: tlsrpt_sts_cert's), else no-policy-found. */
struct mta_sts_snapshot;
struct session_rpt_sts {
    enum tlsrpt_sts sts;
    enum tlsrpt_cert cert;
    const struct mta_sts_snapshot *policy;
};
void session_tlsrpt_rcpt(struct session *s, const char *domain, const char *mx,
                         enum tlsrpt_dane dane, const struct tlsa_set *set,
                         const struct session_rpt_sts *sts);
/* tlsrpt.c: an enum tls_dane_result (or -1: no check) as TLS-RPT sees it. */
enum tlsrpt_dane session_tlsrpt_dane(int result);

/* session.c: a decision let the relay read on: the client's unread bytes
 * are offered again (and the half-closed client's end is looked at). */
void session_client_resumed(struct session *s);

/* session.c: the proxy's host name (EHLO to the backend, Received: lines). */
const char *session_host_name(void);

#endif
