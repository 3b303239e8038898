/*
 * The daily TLS-RPT reports of one day; see tlsrpt_send.h.
 *
 * One job walks the day's domains in turn: sent-file check, day-file load,
 * TXT lookup, JSON, gzip, then one delivery at a time (an https_get POST or
 * a tlsrpt_submit). Each asynchronous step has one completion function that
 * moves the job on; the job is freed from the last one, after its callback.
 */
#include "proxy/service/tlsrpt_send.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proxy/core/buf.h"
#include "proxy/net/https_get.h"
#include "proxy/obs/log.h"
#include "proxy/policy/tlsrpt.h"
#include "proxy/service/tlsrpt_message.h"
#include "proxy/service/tlsrpt_store.h"
#include "proxy/service/tlsrpt_submit.h"

#define SENT_MAX (64 * 1024) /* a sent file: at most TLSRPT_RUA_MAX lines */
#define JSON_START (64 * 1024)
#define JSON_MAX (8 * 1024 * 1024)
#define ADDR_MAX 254

struct tlsrpt_send {
    uv_loop_t *loop;
    char *dir, *organization, *contact;
    char submitter[TLSRPT_NAME_MAX + 1];
    struct sockaddr_storage submit;
    bool has_submit;
    struct resolver *resolver;
    struct tls_ctx *tls;
    unsigned timeout_ms;
    struct tlsrpt_redis *redis;
    bool held; /* the domain in progress is ours in Redis */
    int64_t day;
    char day_text[TLSRPT_DAY_TEXT];
    tlsrpt_send_cb cb;
    void *arg;
    struct tlsrpt_send_result res;
    bool stopping;
    uv_idle_t kick; /* runs the next step from the loop, never from a caller's stack */
    bool kicked;

    /* The domains of the day and the one in progress. */
    char (*names)[TLSRPT_NAME_MAX + 1];
    size_t n, i;
    struct tlsrpt_stats *stats; /* TLSRPT_POLICY_TYPES of them */
    size_t nstats;
    struct resolver_query q;
    struct tlsrpt_record rec;
    size_t ri;       /* the destination in progress */
    bool rua_failed; /* one destination of this domain failed */
    struct buf gz;   /* the gzip'd report of the domain */
    char report_id[TLSRPT_NAME_MAX * 2 + 32];
    struct https_get g;
    char *sent; /* the domain's sent file, NUL-terminated */
};

const char *tlsrpt_submitter(const char *contact)
{
    const char *at = strrchr(contact, '@');

    return at != NULL ? at + 1 : "";
}

static void next_domain(struct tlsrpt_send *j);
static void deliver_next(struct tlsrpt_send *j);

/* --- the sent file ------------------------------------------------------- */

static int sent_path(const struct tlsrpt_send *j, char *out, size_t cap, bool folder)
{
    int n = folder ? snprintf(out, cap, "%s/%s/.sent", j->dir, j->day_text)
                   : snprintf(out, cap, "%s/%s/.sent/%s", j->dir, j->day_text, j->names[j->i]);

    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static void sent_load(struct tlsrpt_send *j)
{
    char path[4096];
    int fd;
    ssize_t n = 0;

    free(j->sent);
    j->sent = calloc(1, SENT_MAX + 1);
    if (j->sent == NULL || sent_path(j, path, sizeof(path), false) != 0)
        return;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return;
    n = read(fd, j->sent, SENT_MAX);
    close(fd);
    j->sent[n > 0 ? n : 0] = '\0';
}

/* Whether the sent file has the line "line". */
static bool sent_has(const struct tlsrpt_send *j, const char *line)
{
    size_t len = strlen(line);

    for (const char *p = j->sent; p != NULL && *p != '\0';) {
        const char *lf = strchr(p, '\n');
        if (lf == NULL)
            break; /* a cut line counts as not written */
        if ((size_t)(lf - p) == len && memcmp(p, line, len) == 0)
            return true;
        p = lf + 1;
    }
    return false;
}

/* Appends "line\n" to the sent file and makes it durable (file and folder). */
static void sent_add(struct tlsrpt_send *j, const char *line)
{
    char path[4096], text[TLSRPT_URI_MAX + 16];
    int n = snprintf(text, sizeof(text), "%s\n", line), fd, dfd = -1;

    if (n < 0 || (size_t)n >= sizeof(text) || sent_path(j, path, sizeof(path), true) != 0)
        return;
    if (mkdir(path, 0750) != 0 && errno != EEXIST)
        goto fail;
    dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sent_path(j, path, sizeof(path), false) != 0)
        goto fail_dir;
    if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640)) < 0)
        goto fail_dir;
    if (write(fd, text, (size_t)n) != n || fsync(fd) != 0) {
        close(fd);
        goto fail_dir;
    }
    close(fd);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return;
fail_dir:
    if (dfd >= 0)
        close(dfd);
fail:
    log_error("tls_rpt=report file=%s error=\"cannot record a delivery: %s\"", path,
              strerror(errno));
}

/* --- building the report ------------------------------------------------- */

static int build(struct tlsrpt_send *j)
{
    struct tlsrpt_report r = {.organization = j->organization,
                              .contact = j->contact,
                              .report_id = j->report_id,
                              .day = j->day};
    struct tlsrpt_report_policy p[TLSRPT_POLICY_TYPES];
    struct tlsrpt_policy_loaded *text = calloc(TLSRPT_POLICY_TYPES, sizeof(*text));
    size_t cap = JSON_START;
    char *json = NULL;
    long len;

    if (text == NULL)
        return -ENOMEM;
    memset(p, 0, sizeof(p));
    for (size_t k = 0; k < j->nstats; k++) {
        p[k].stats = &j->stats[k];
        /* The policy's text when the sessions gave it; else left out. */
        if (tlsrpt_store_load_policy(j->dir, j->day, j->names[j->i], j->stats[k].type, &text[k]) ==
            0) {
            p[k].policy_string = text[k].strings;
            p[k].n_strings = text[k].n_strings;
            p[k].mx_host = text[k].mx;
            p[k].n_mx = text[k].n_mx;
        }
    }
    for (;;) {
        char *nj = realloc(json, cap);
        if (nj == NULL) {
            free(json);
            free(text);
            return -ENOMEM;
        }
        json = nj;
        len = tlsrpt_report_json(json, cap, &r, p, j->nstats);
        if (len >= 0)
            break;
        if (cap >= JSON_MAX) {
            free(json);
            free(text);
            return -ENOSPC;
        }
        cap *= 4;
    }
    buf_free(&j->gz);
    int rc = tlsrpt_gzip((const uint8_t *)json, (size_t)len, &j->gz);
    log_debug("tls_rpt=report domain=%s day=%s json_bytes=%ld gzip_bytes=%zu", j->names[j->i],
              j->day_text, len, buf_len(&j->gz));
    free(json);
    free(text);
    return rc;
}

/* --- one destination ----------------------------------------------------- */

static void delivered(struct tlsrpt_send *j, bool ok, const char *why)
{
    const struct tlsrpt_rua *u = &j->rec.rua[j->ri];
    char q[TLSRPT_URI_MAX * 2], w[600];

    if (ok) {
        char line[TLSRPT_URI_MAX + 8];
        snprintf(line, sizeof(line), "ok %s", u->uri);
        sent_add(j, line);
        log_info("tls_rpt=report domain=%s day=%s rua=%s result=delivered", j->names[j->i],
                 j->day_text, log_quote(u->uri, q, sizeof(q)));
    } else {
        j->rua_failed = true;
        log_warn("tls_rpt=report domain=%s day=%s rua=%s result=failed why=%s", j->names[j->i],
                 j->day_text, log_quote(u->uri, q, sizeof(q)), log_quote(why, w, sizeof(w)));
    }
    j->ri++;
    deliver_next(j);
}

static void on_post(struct https_get *g, const struct https_get_result *r)
{
    struct tlsrpt_send *j = g->data;
    char why[600];

    snprintf(why, sizeof(why), "%s: %s", https_get_status_str(r->status), r->why);
    delivered(j, r->status == HTTPS_GET_OK, why);
}

static void on_submitted(void *arg, int err, const char *why)
{
    delivered(arg, err == 0, why);
}

/* "https://host[:port][/path]" into its parts; false for anything else
 * (an IP literal included: the certificate must be for a name). */
static bool split_https(const char *uri, char *host, size_t hcap, uint16_t *port, char *path,
                        size_t pcap)
{
    const char *h = uri + strlen("https://"), *e = h;
    unsigned long p = 443;

    if (strncmp(uri, "https://", 8) != 0)
        return false;
    while (*e != '\0' && *e != '/' && *e != ':' && *e != '?' && *e != '#')
        e++;
    if (e == h || (size_t)(e - h) >= hcap)
        return false;
    memcpy(host, h, (size_t)(e - h));
    host[e - h] = '\0';
    if (*e == ':') {
        char *end;
        p = strtoul(e + 1, &end, 10);
        if (end == e + 1 || p == 0 || p > 65535)
            return false;
        e = end;
    }
    *port = (uint16_t)p;
    if (*e == '#' || strchr(e, '#') != NULL)
        return false;
    int n = snprintf(path, pcap, "%s%s", *e == '/' ? "" : "/", e);
    return n > 0 && (size_t)n < pcap;
}

static int post(struct tlsrpt_send *j, const char *uri)
{
    char host[TLSRPT_NAME_MAX + 1], path[TLSRPT_URI_MAX + 2];
    uint16_t port;
    struct https_get_limits lim = https_get_default_limits;
    struct https_post_body body = {.content_type = "application/tlsrpt+gzip",
                                   .data = buf_head(&j->gz),
                                   .len = buf_len(&j->gz)};

    if (!split_https(uri, host, sizeof(host), &port, path, sizeof(path)))
        return UV_EINVAL;
    lim.connect_ms = lim.handshake_ms = lim.total_ms = j->timeout_ms;
    lim.body_max = HTTPS_GET_BODY_MAX; /* the answer is not needed, but must fit */
    j->g.data = j;
    return https_post_start(&j->g, j->loop, j->resolver, j->tls, host, port, path, NULL, &lim,
                            &body, on_post);
}

static int mail(struct tlsrpt_send *j, const char *to)
{
    struct buf msg = {0};
    uint8_t rnd[12];
    char boundary[64], mid[TLSRPT_NAME_MAX + 64];
    int rc;

    if (!j->has_submit)
        return UV_EINVAL;
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        memset(rnd, 0x5a, sizeof(rnd)); /* only uniqueness suffers */
    snprintf(boundary, sizeof(boundary), "tlsrpt-%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
             rnd[3], rnd[4], rnd[5]);
    snprintf(mid, sizeof(mid), "tlsrpt.%s.%02x%02x%02x%02x%02x%02x@%s", j->day_text, rnd[6], rnd[7],
             rnd[8], rnd[9], rnd[10], rnd[11], j->submitter);
    struct tlsrpt_mail m = {.from = j->contact,
                            .to = to,
                            .organization = j->organization,
                            .submitter = j->submitter,
                            .domain = j->names[j->i],
                            .report_id = j->report_id,
                            .day = j->day,
                            .now = (int64_t)time(NULL),
                            .boundary = boundary,
                            .message_id = mid,
                            .gz = buf_head(&j->gz),
                            .gz_len = buf_len(&j->gz)};
    if ((rc = tlsrpt_mail_build(&msg, &m)) != 0) {
        buf_free(&msg);
        return UV_EINVAL;
    }
    rc = tlsrpt_submit_start(j->loop, (const struct sockaddr *)&j->submit, j->submitter, j->contact,
                             to, buf_head(&msg), buf_len(&msg), j->timeout_ms, on_submitted, j);
    buf_free(&msg);
    return rc;
}

static void on_kick(uv_idle_t *h);

/* Continues from the loop: a step that ends at once must not recurse. */
static void kick(struct tlsrpt_send *j)
{
    j->kicked = true;
    uv_idle_start(&j->kick, on_kick);
}

static void domain_done(struct tlsrpt_send *j)
{
    j->i++;
    kick(j);
}

/* The domain in progress is done for the whole fleet. */
static void fleet_sent(struct tlsrpt_send *j)
{
    if (j->held && tlsrpt_redis_mark_sent(j->redis, j->day_text, j->names[j->i]) != 0)
        log_warn("tls_rpt=report domain=%s day=%s msg=\"sent, but not marked in Redis: "
                 "another instance may send it too once the lock expires\"",
                 j->names[j->i], j->day_text);
    j->held = false;
}

/* Whether the domain in progress is this instance's to send, and if so
 * the fleet's counts in j->stats (its own when Redis does not answer). */
static bool fleet_claim(struct tlsrpt_send *j)
{
    struct tlsrpt_stats *fleet;
    size_t n;

    j->held = false;
    if (j->redis == NULL)
        return true;
    switch (tlsrpt_redis_claim(j->redis, j->day_text, j->names[j->i])) {
    case TLSRPT_REDIS_SENT:
        log_info("tls_rpt=report domain=%s day=%s result=already by=fleet", j->names[j->i],
                 j->day_text);
        sent_add(j, "done");
        j->res.already++;
        return false;
    case TLSRPT_REDIS_LOCKED:
        log_info("tls_rpt=report domain=%s day=%s result=locked msg=\"another "
                 "instance is sending it\"",
                 j->names[j->i], j->day_text);
        j->res.locked++;
        return false;
    case TLSRPT_REDIS_DOWN:
        log_warn("tls_rpt=report domain=%s day=%s msg=\"Redis down: this instance's own "
                 "counts\"",
                 j->names[j->i], j->day_text);
        return true;
    case TLSRPT_REDIS_HELD:
        break;
    }
    if ((fleet = calloc(TLSRPT_POLICY_TYPES, sizeof(*fleet))) == NULL ||
        tlsrpt_redis_load(j->redis, j->day, j->names[j->i], fleet, &n) != 0 || n == 0) {
        /* Held but unreadable: our own share, and the lock stays until
         * it expires (no sent mark), so the others do not send it too. */
        log_warn("tls_rpt=report domain=%s day=%s msg=\"the fleet's counts cannot "
                 "be read: this instance's own\"",
                 j->names[j->i], j->day_text);
        free(fleet);
        return true;
    }
    memcpy(j->stats, fleet, n * sizeof(*fleet));
    j->nstats = n;
    free(fleet);
    j->held = true;
    return true;
}

static void deliver_next(struct tlsrpt_send *j)
{
    char line[TLSRPT_URI_MAX + 8], q[TLSRPT_URI_MAX * 2];

    for (; j->ri < j->rec.n && !j->stopping; j->ri++) {
        const struct tlsrpt_rua *u = &j->rec.rua[j->ri];
        snprintf(line, sizeof(line), "ok %s", u->uri);
        if (sent_has(j, line))
            continue;
        int rc = u->kind == TLSRPT_URI_HTTPS ? post(j, u->uri) : mail(j, u->uri);
        if (rc == 0)
            return; /* on_post / on_submitted */
        j->rua_failed = true;
        log_warn("tls_rpt=report domain=%s day=%s rua=%s result=failed why=\"%s\"", j->names[j->i],
                 j->day_text, log_quote(u->uri, q, sizeof(q)),
                 u->kind == TLSRPT_URI_MAILTO && !j->has_submit ? "no tls_rpt.submit"
                                                                : uv_strerror(rc));
    }
    if (j->rua_failed || j->stopping) {
        j->res.failed++;
    } else {
        sent_add(j, "done");
        j->res.sent++;
        fleet_sent(j);
    }
    domain_done(j);
}

/* --- the record ---------------------------------------------------------- */

static void nothing(struct tlsrpt_send *j, const char *why)
{
    log_info("tls_rpt=report domain=%s day=%s result=none why=\"%s\"", j->names[j->i], j->day_text,
             why);
    sent_add(j, "done");
    j->res.nothing++;
    fleet_sent(j);
    domain_done(j);
}

static void on_txt(struct resolver_query *q, const struct resolver_result *res)
{
    struct tlsrpt_send *j = q->data;
    const uint8_t *rdata[64];
    size_t len[64], n = 0;
    const char *why = "";

    if (res->err != 0 || res->security == RESOLVER_BOGUS ||
        (res->rcode != RESOLVER_RCODE_NOERROR && res->rcode != RESOLVER_RCODE_NXDOMAIN)) {
        log_warn("tls_rpt=report domain=%s day=%s result=failed why=\"TXT lookup: %s\"",
                 j->names[j->i], j->day_text,
                 res->errstr != NULL               ? res->errstr
                 : res->security == RESOLVER_BOGUS ? "bogus"
                                                   : "SERVFAIL");
        j->res.failed++;
        domain_done(j);
        return;
    }
    for (; n < res->count && n < 64; n++) {
        rdata[n] = (const uint8_t *)res->data[n];
        len[n] = (size_t)res->len[n];
    }
    if (n == 0 || tlsrpt_txt_select(rdata, len, n, &j->rec, &why) != TLSRPT_OK) {
        nothing(j, n == 0 ? "no _smtp._tls record" : why);
        return;
    }
    snprintf(j->report_id, sizeof(j->report_id), "%s.%s@%s", j->day_text, j->names[j->i],
             j->submitter);
    int rc = build(j);
    if (rc != 0) {
        log_error("tls_rpt=report domain=%s day=%s result=failed why=\"building: %s\"",
                  j->names[j->i], j->day_text, strerror(-rc));
        j->res.failed++;
        domain_done(j);
        return;
    }
    j->ri = 0;
    j->rua_failed = false;
    deliver_next(j);
}

/* --- the walk ------------------------------------------------------------ */

static void on_closed(uv_handle_t *h)
{
    struct tlsrpt_send *j = h->data;

    j->cb(j->arg, &j->res);
    tls_ctx_unref(j->tls);
    buf_free(&j->gz);
    free(j->sent);
    free(j->stats);
    free(j->names);
    free(j->dir);
    free(j->organization);
    free(j->contact);
    free(j);
}

static void next_domain(struct tlsrpt_send *j)
{
    char name[TLSRPT_NAME_MAX + 32];
    uint64_t skipped;

    while (j->i < j->n && !j->stopping) {
        sent_load(j);
        if (sent_has(j, "done")) {
            j->res.already++;
            j->i++;
            continue;
        }
        int rc = tlsrpt_store_load(j->dir, j->day, j->names[j->i], j->stats, &j->nstats, &skipped);
        if (skipped > 0)
            log_warn("tls_rpt=report domain=%s day=%s skipped_lines=%llu", j->names[j->i],
                     j->day_text, (unsigned long long)skipped);
        if (rc != 0 || j->nstats == 0) {
            if (rc != 0 && rc != -ENOENT) {
                log_error("tls_rpt=report domain=%s day=%s error=\"%s\"", j->names[j->i],
                          j->day_text, strerror(-rc));
                j->res.failed++;
                j->i++;
                continue;
            }
            nothing(j, "no results");
            return;
        }
        if (!fleet_claim(j)) {
            j->i++;
            continue;
        }
        snprintf(name, sizeof(name), "_smtp._tls.%s", j->names[j->i]);
        j->q.data = j;
        rc = resolver_query(j->resolver, &j->q, name, RESOLVER_TYPE_TXT, on_txt);
        if (rc == 0)
            return;
        log_error("tls_rpt=report domain=%s day=%s error=\"TXT lookup: %s\"", j->names[j->i],
                  j->day_text, uv_strerror(rc));
        j->res.failed++;
        j->i++;
    }
    if (j->stopping)
        j->res.failed += (unsigned)(j->n - j->i);
    log_info("tls_rpt=day day=%s domains=%u sent=%u already=%u none=%u failed=%u locked=%u",
             j->day_text, j->res.domains, j->res.sent, j->res.already, j->res.nothing,
             j->res.failed, j->res.locked);
    uv_close((uv_handle_t *)&j->kick, on_closed);
}

static void on_kick(uv_idle_t *h)
{
    struct tlsrpt_send *j = h->data;

    uv_idle_stop(h);
    j->kicked = false;
    next_domain(j);
}

static bool add_name(const char *domain, void *arg)
{
    struct tlsrpt_send *j = arg;

    snprintf(j->names[j->n], sizeof(j->names[j->n]), "%s", domain);
    j->n++;
    return j->n < TLSRPT_STORE_DOMAINS_MAX;
}

struct tlsrpt_send *tlsrpt_send_day(uv_loop_t *loop, const struct tlsrpt_send_options *o,
                                    int64_t day, tlsrpt_send_cb cb, void *arg, int *err)
{
    struct tlsrpt_send *j;

    *err = UV_EINVAL;
    if (o->directory == NULL || o->contact == NULL || o->resolver == NULL || cb == NULL ||
        strlen(tlsrpt_submitter(o->contact)) == 0 ||
        strlen(tlsrpt_submitter(o->contact)) > TLSRPT_NAME_MAX)
        return NULL;
    *err = UV_ENOMEM;
    if ((j = calloc(1, sizeof(*j))) == NULL)
        return NULL;
    j->dir = strdup(o->directory);
    j->organization = strdup(o->organization != NULL ? o->organization : "");
    j->contact = strdup(o->contact);
    j->names = calloc(TLSRPT_STORE_DOMAINS_MAX, sizeof(*j->names));
    j->stats = calloc(TLSRPT_POLICY_TYPES, sizeof(*j->stats));
    if (j->dir == NULL || j->organization == NULL || j->contact == NULL || j->names == NULL ||
        j->stats == NULL)
        goto fail;
    *err = UV_EINVAL;
    if (!tlsrpt_day_text(day, j->day_text))
        goto fail;
    snprintf(j->submitter, sizeof(j->submitter), "%s", tlsrpt_submitter(o->contact));
    if (o->submit != NULL) {
        memcpy(&j->submit, o->submit,
               o->submit->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                : sizeof(struct sockaddr_in));
        j->has_submit = true;
    }
    j->loop = loop;
    j->resolver = o->resolver;
    if (o->tls != NULL)
        tls_ctx_ref(o->tls);
    j->tls = o->tls;
    j->timeout_ms = o->timeout_ms != 0 ? o->timeout_ms : 60000;
    j->redis = o->redis;
    j->day = day;
    j->cb = cb;
    j->arg = arg;
    int n = tlsrpt_store_walk(j->dir, day, add_name, j);
    if (n < 0) {
        *err = n;
        goto fail_ref;
    }
    j->res.domains = (unsigned)j->n;
    if ((*err = uv_idle_init(loop, &j->kick)) != 0)
        goto fail_ref;
    j->kick.data = j;
    kick(j);
    *err = 0;
    return j;

fail_ref:
    tls_ctx_unref(j->tls);
fail:
    free(j->stats);
    free(j->names);
    free(j->dir);
    free(j->organization);
    free(j->contact);
    free(j);
    return NULL;
}

void tlsrpt_send_stop(struct tlsrpt_send *j)
{
    j->stopping = true;
}
