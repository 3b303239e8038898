/*
 * The TLS-RPT result store; see tlsrpt_store.h.
 *
 * Memory: one open-addressing table of the current day's policy domains
 * (pointers to small entries with three pairs of counts), sized once at
 * open for max_domains, under one mutex that also serialises the appends
 * (so a rollover and the writes of its day never race).
 */
#include "proxy/service/tlsrpt_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proxy/obs/log.h"
#include "proxy/service/tlsrpt_redis.h"

/* Bytes of one day file read at a time; a line is at most TLSRPT_LINE_MAX. */
#define READ_CHUNK (64 * 1024)

struct entry {
    uint64_t success[TLSRPT_POLICY_TYPES], failure[TLSRPT_POLICY_TYPES];
    uint64_t policy_hash[TLSRPT_POLICY_TYPES]; /* of the text last written, 0: none */
    bool seen[TLSRPT_POLICY_TYPES];
    char domain[TLSRPT_NAME_MAX + 1];
};

struct tlsrpt_store {
    pthread_mutex_t mu;
    char *dir;
    size_t max_domains;
    int64_t day; /* the counted day */
    size_t n;    /* entries in table */
    size_t cap;  /* a power of two, at least twice max_domains */
    struct entry **table;
    uint64_t dropped;
    struct tlsrpt_redis_counter *counter; /* the fleet's counts; NULL: none */
};

bool tlsrpt_day_text(int64_t day, char out[TLSRPT_DAY_TEXT])
{
    time_t t = (time_t)(day * 86400);
    struct tm tm;

    out[0] = '\0';
    if (day < -719528 || day > 2932896 || gmtime_r(&t, &tm) == NULL)
        return false;
    unsigned y = (unsigned)(tm.tm_year + 1900) % 10000, m = (unsigned)(tm.tm_mon + 1) % 100,
             md = (unsigned)tm.tm_mday % 100;
    snprintf(out, TLSRPT_DAY_TEXT, "%04u-%02u-%02u", y, m, md);
    return true;
}

/* A policy domain usable as a file name: a host name as the day-file line
 * accepts it, which excludes '/', empty labels and a leading dot. */
static bool domain_ok(const char *d)
{
    size_t n = strnlen(d, TLSRPT_NAME_MAX + 1), label = 0;

    if (n == 0 || n > TLSRPT_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = d[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
        label++;
    }
    return label > 0;
}

static int day_path(char *out, size_t cap, const char *dir, int64_t day, const char *domain)
{
    char d[TLSRPT_DAY_TEXT];
    int n;

    if (!tlsrpt_day_text(day, d))
        return -EINVAL;
    if (domain != NULL)
        n = snprintf(out, cap, "%s/%s/%s", dir, d, domain);
    else
        n = snprintf(out, cap, "%s/%s", dir, d);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */

    while (*s != '\0')
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

/* The slot of domain: its entry, or the empty slot where it would go. */
static size_t slot(const struct tlsrpt_store *s, const char *domain)
{
    size_t i = (size_t)hash(domain) & (s->cap - 1);

    while (s->table[i] != NULL && strcmp(s->table[i]->domain, domain) != 0)
        i = (i + 1) & (s->cap - 1);
    return i;
}

static void clear(struct tlsrpt_store *s)
{
    for (size_t i = 0; i < s->cap; i++) {
        free(s->table[i]);
        s->table[i] = NULL;
    }
    s->n = 0;
}

/* The entry of domain, created while there is room; NULL when full. */
static struct entry *entry_for(struct tlsrpt_store *s, const char *domain)
{
    size_t i = slot(s, domain);
    struct entry *e;

    if (s->table[i] != NULL)
        return s->table[i];
    if (s->n >= s->max_domains || (e = calloc(1, sizeof(*e))) == NULL)
        return NULL;
    snprintf(e->domain, sizeof(e->domain), "%s", domain);
    s->table[i] = e;
    s->n++;
    return e;
}

static void count(struct entry *e, const struct tlsrpt_attempt *a)
{
    if ((unsigned)a->type >= TLSRPT_POLICY_TYPES)
        return;
    e->seen[a->type] = true;
    if (a->success)
        e->success[a->type]++;
    else
        e->failure[a->type]++;
}

/* Appends len bytes in one write(2); a short write is cut back so that no
 * torn line stays in the middle of the file. */
static int append(const char *path, const char *line, size_t len)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    struct stat st;
    int rc = 0;

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    ssize_t w = write(fd, line, len);
    if (w != (ssize_t)len) {
        rc = w < 0 ? -errno : -EIO;
        if (w > 0 && ftruncate(fd, st.st_size) != 0)
            log_warn("tls_rpt=store file=%s error=\"cannot cut a short write back: %s\"", path,
                     strerror(errno));
    }
out:
    close(fd);
    return rc;
}

/* Parses the lines of buf[0..len), calling each(a) for those in form;
 * returns the bytes consumed (a last line without its LF is left). */
static size_t parse_lines(const char *buf, size_t len, bool final,
                          void (*each)(const struct tlsrpt_attempt *, void *), void *arg,
                          uint64_t *skipped)
{
    size_t off = 0;

    while (off < len) {
        const char *lf = memchr(buf + off, '\n', len - off);
        if (lf == NULL) {
            if (final) {
                (*skipped)++; /* a write cut short by a crash */
                return len;
            }
            return off;
        }
        size_t linelen = (size_t)(lf - (buf + off)) + 1, used = 0;
        struct tlsrpt_attempt a;
        const char *why;
        if (tlsrpt_line_parse(buf + off, linelen, &a, &used, &why) == TLSRPT_OK && used == linelen)
            each(&a, arg);
        else
            (*skipped)++;
        off += linelen;
    }
    return off;
}

/* Reads path line by line into each(); with fix, a file whose last line has
 * no LF gets one, so that the next append starts a line of its own. */
static int read_file(const char *path, bool sync, bool fix,
                     void (*each)(const struct tlsrpt_attempt *, void *), void *arg,
                     uint64_t *skipped)
{
    int fd = open(path, (fix ? O_RDWR | O_APPEND : O_RDONLY) | O_CLOEXEC);
    char *buf;
    size_t have = 0;
    bool last_lf = true;
    int rc = 0;

    if (fd < 0)
        return -errno;
    if (sync)
        (void)fsync(fd);
    if ((buf = malloc(READ_CHUNK)) == NULL) {
        close(fd);
        return -ENOMEM;
    }
    for (;;) {
        ssize_t r = read(fd, buf + have, READ_CHUNK - have);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        if (r > 0)
            last_lf = buf[have + (size_t)r - 1] == '\n';
        have += (size_t)r;
        size_t used = parse_lines(buf, have, r == 0, each, arg, skipped);
        /* A buffer full of one unterminated line: no line is that long. */
        if (used == 0 && have == READ_CHUNK) {
            (*skipped)++;
            used = have;
        }
        memmove(buf, buf + used, have - used);
        have -= used;
        if (r == 0)
            break;
    }
    if (rc == 0 && fix && !last_lf && write(fd, "\n", 1) != 1)
        rc = -errno;
    free(buf);
    close(fd);
    return rc;
}

struct reload {
    struct tlsrpt_store *s;
    const char *domain;
};

static void reload_one(const struct tlsrpt_attempt *a, void *arg)
{
    struct reload *r = arg;
    struct entry *e;

    if (tlsrpt_day(a->time) != r->s->day || strcmp(a->domain, r->domain) != 0)
        return;
    if ((e = entry_for(r->s, a->domain)) != NULL)
        count(e, a);
}

static bool reload_domain(const char *domain, void *arg)
{
    struct tlsrpt_store *s = arg;
    char path[4096];
    uint64_t skipped = 0;
    struct reload r = {.s = s, .domain = domain};

    if (day_path(path, sizeof(path), s->dir, s->day, domain) != 0)
        return true;
    if (entry_for(s, domain) == NULL) {
        s->dropped++;
        return true;
    }
    int rc = read_file(path, false, true, reload_one, &r, &skipped);
    if (rc != 0)
        log_warn("tls_rpt=store file=%s error=\"%s\"", path, strerror(-rc));
    if (skipped > 0)
        log_warn("tls_rpt=store file=%s skipped_lines=%llu", path, (unsigned long long)skipped);
    return true;
}

struct tlsrpt_store *tlsrpt_store_open(const char *dir, size_t max_domains, int64_t now, char *err,
                                       size_t errlen)
{
    struct tlsrpt_store *s;

    if (dir == NULL || dir[0] == '\0' || strlen(dir) > 2048) {
        snprintf(err, errlen, "directory: empty or too long");
        return NULL;
    }
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s is not a directory", dir);
        return NULL;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        snprintf(err, errlen, "%s is not a writable directory: %s", dir, strerror(errno));
        return NULL;
    }
    if ((s = calloc(1, sizeof(*s))) == NULL)
        goto fail_nomem;
    s->max_domains = max_domains != 0 ? max_domains : TLSRPT_STORE_DOMAINS_MAX;
    s->cap = 16;
    while (s->cap < 2 * s->max_domains)
        s->cap *= 2;
    if ((s->dir = strdup(dir)) == NULL || (s->table = calloc(s->cap, sizeof(*s->table))) == NULL)
        goto fail_alloc;
    pthread_mutex_init(&s->mu, NULL);
    s->day = tlsrpt_day(now);
    int rc = tlsrpt_store_walk(s->dir, s->day, reload_domain, s);
    if (rc < 0)
        log_warn("tls_rpt=store dir=%s error=\"cannot read today's results: %s\"", s->dir,
                 strerror(-rc));
    return s;

fail_alloc:
    free(s->dir);
    free(s);
fail_nomem:
    snprintf(err, errlen, "out of memory");
    return NULL;
}

void tlsrpt_store_close(struct tlsrpt_store *s)
{
    if (s == NULL)
        return;
    clear(s);
    free(s->table);
    free(s->dir);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

const char *tlsrpt_store_dir(const struct tlsrpt_store *s)
{
    return s->dir;
}

static void dropped(struct tlsrpt_store *s, const char *domain, const char *why)
{
    if (s->dropped++ % 1000 == 0)
        log_warn("tls_rpt=store domain=%s dropped=%llu error=\"%s\"", domain,
                 (unsigned long long)s->dropped, why);
}

/* The policy file's text: "s LINE" per policy-string, "m LINE" per mx. */
static int policy_text(const struct tlsrpt_policy_text *p, char *out, size_t cap)
{
    size_t n = 0;

    if (p->n_strings > TLSRPT_POLICY_LINES || p->n_mx > TLSRPT_POLICY_LINES)
        return -EINVAL;
    for (int kind = 0; kind < 2; kind++) {
        const char *const *v = kind == 0 ? p->strings : p->mx;
        size_t count = kind == 0 ? p->n_strings : p->n_mx;
        for (size_t i = 0; i < count; i++) {
            size_t len = strnlen(v[i], TLSRPT_POLICY_LINE_MAX + 1);
            if (len > TLSRPT_POLICY_LINE_MAX || n + len + 4 > cap)
                return -EINVAL;
            for (size_t k = 0; k < len; k++)
                if ((unsigned char)v[i][k] < 0x20 || v[i][k] == 0x7f)
                    return -EINVAL;
            out[n++] = kind == 0 ? 's' : 'm';
            out[n++] = ' ';
            memcpy(out + n, v[i], len);
            n += len;
            out[n++] = '\n';
        }
    }
    out[n] = '\0';
    return (int)n;
}

static int policy_path(char *out, size_t cap, const char *dir, int64_t day, const char *domain,
                       enum tlsrpt_policy_type type, bool folder)
{
    char d[TLSRPT_DAY_TEXT];
    int n;

    if (!tlsrpt_day_text(day, d))
        return -EINVAL;
    if (folder)
        n = snprintf(out, cap, "%s/%s/.policy", dir, d);
    else
        n = snprintf(out, cap, "%s/%s/.policy/%s.%s", dir, d, domain, tlsrpt_policy_type_str(type));
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* Writes text as the policy file: a temporary file renamed over it. */
static int write_policy(const char *dir, int64_t day, const struct tlsrpt_attempt *a,
                        const char *text, size_t len)
{
    char path[4096], tmp[4200];
    int rc, fd;

    if ((rc = policy_path(path, sizeof(path), dir, day, a->domain, a->type, true)) != 0)
        return rc;
    if (mkdir(path, 0750) != 0 && errno != EEXIST)
        return -errno;
    if ((rc = policy_path(path, sizeof(path), dir, day, a->domain, a->type, false)) != 0)
        return rc;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640)) < 0)
        return -errno;
    if (write(fd, text, len) != (ssize_t)len) {
        rc = -EIO;
        close(fd);
        unlink(tmp);
        return rc;
    }
    close(fd);
    return rename(tmp, path) == 0 ? 0 : -errno;
}

int tlsrpt_record(struct tlsrpt_store *s, const struct tlsrpt_attempt *a)
{
    return tlsrpt_record_policy(s, a, NULL);
}

int tlsrpt_record_policy(struct tlsrpt_store *s, const struct tlsrpt_attempt *a,
                         const struct tlsrpt_policy_text *p)
{
    char ptext[TLSRPT_POLICY_LINES * 2 * (TLSRPT_POLICY_LINE_MAX + 4)];
    int plen = 0;
    char line[TLSRPT_LINE_MAX + 1], path[4096];
    int64_t day = tlsrpt_day(a->time);
    int len = tlsrpt_line_format(a, line, sizeof(line)), rc;

    if (len < 0 || !domain_ok(a->domain) || (unsigned)a->type >= TLSRPT_POLICY_TYPES)
        return -EINVAL;
    if (p != NULL && (plen = policy_text(p, ptext, sizeof(ptext))) < 0)
        return -EINVAL;
    pthread_mutex_lock(&s->mu);
    if (day > s->day) {
        /* A new day: its counts start from nothing; the previous day's are
         * in its files, for the reporter. */
        clear(s);
        s->day = day;
    }
    struct entry *e = NULL;
    if (day == s->day && (e = entry_for(s, a->domain)) == NULL) {
        dropped(s, a->domain, "too many policy domains today");
        rc = -ENOSPC;
        goto out;
    }
    if ((rc = day_path(path, sizeof(path), s->dir, day, NULL)) != 0)
        goto out;
    if (mkdir(path, 0750) != 0 && errno != EEXIST) {
        rc = -errno;
        dropped(s, a->domain, strerror(errno));
        goto out;
    }
    if ((rc = day_path(path, sizeof(path), s->dir, day, a->domain)) != 0)
        goto out;
    if ((rc = append(path, line, (size_t)len)) != 0) {
        dropped(s, a->domain, strerror(-rc));
        goto out;
    }
    if (e != NULL)
        count(e, a);
    if (s->counter != NULL) /* queued: a worker never waits on Redis */
        tlsrpt_redis_counter_add(s->counter, a);
    if (p != NULL) {
        /* Rarely changes: written when it does (0 is kept for "none"). */
        uint64_t h = hash(ptext) | 1;
        if (e == NULL || e->policy_hash[a->type] != h) {
            int prc = write_policy(s->dir, day, a, ptext, (size_t)plen);
            if (prc != 0)
                log_warn("tls_rpt=store domain=%s error=\"cannot write the policy text: %s\"",
                         a->domain, strerror(-prc));
            else if (e != NULL)
                e->policy_hash[a->type] = h;
        }
    }
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void tlsrpt_store_set_counter(struct tlsrpt_store *s, struct tlsrpt_redis_counter *c)
{
    pthread_mutex_lock(&s->mu);
    s->counter = c;
    pthread_mutex_unlock(&s->mu);
}

bool tlsrpt_store_counts(struct tlsrpt_store *s, const char *domain, enum tlsrpt_policy_type type,
                         uint64_t *success, uint64_t *failure)
{
    bool found = false;

    *success = *failure = 0;
    if ((unsigned)type >= TLSRPT_POLICY_TYPES)
        return false;
    pthread_mutex_lock(&s->mu);
    struct entry *e = s->table[slot(s, domain)];
    if (e != NULL && e->seen[type]) {
        *success = e->success[type];
        *failure = e->failure[type];
        found = true;
    }
    pthread_mutex_unlock(&s->mu);
    return found;
}

int64_t tlsrpt_store_day(struct tlsrpt_store *s)
{
    pthread_mutex_lock(&s->mu);
    int64_t d = s->day;
    pthread_mutex_unlock(&s->mu);
    return d;
}

size_t tlsrpt_store_domains(struct tlsrpt_store *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

uint64_t tlsrpt_store_dropped(struct tlsrpt_store *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t n = s->dropped;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int tlsrpt_store_walk(const char *dir, int64_t day, bool (*cb)(const char *domain, void *arg),
                      void *arg)
{
    char path[4096];
    int rc = day_path(path, sizeof(path), dir, day, NULL), n = 0;
    DIR *d;
    struct dirent *de;

    if (rc != 0)
        return rc;
    if ((d = opendir(path)) == NULL)
        return errno == ENOENT ? 0 : -errno;
    /* The day's file names, as the reporter reads them: durable from here. */
    (void)fsync(dirfd(d));
    while ((de = readdir(d)) != NULL && n < TLSRPT_STORE_DOMAINS_MAX) {
        if (!domain_ok(de->d_name))
            continue; /* ".", "..", ".sent", anything not ours */
        n++;
        if (!cb(de->d_name, arg))
            break;
    }
    closedir(d);
    return n;
}

struct load {
    struct tlsrpt_stats *out;
    size_t *n;
    int64_t day;
    const char *domain;
    uint64_t *skipped;
};

static void load_one(const struct tlsrpt_attempt *a, void *arg)
{
    struct load *l = arg;
    size_t i;

    if (tlsrpt_day(a->time) != l->day || strcmp(a->domain, l->domain) != 0) {
        (*l->skipped)++;
        return;
    }
    for (i = 0; i < *l->n; i++)
        if (l->out[i].type == a->type)
            break;
    if (i == *l->n) {
        if (*l->n >= TLSRPT_POLICY_TYPES) {
            (*l->skipped)++;
            return;
        }
        tlsrpt_stats_init(&l->out[i], l->domain, a->type, l->day);
        (*l->n)++;
    }
    if (tlsrpt_stats_add(&l->out[i], a) != TLSRPT_OK)
        (*l->skipped)++;
}

int tlsrpt_store_load(const char *dir, int64_t day, const char *domain,
                      struct tlsrpt_stats out[TLSRPT_POLICY_TYPES], size_t *n, uint64_t *skipped)
{
    char path[4096];
    struct load l = {.out = out, .n = n, .day = day, .domain = domain, .skipped = skipped};
    int rc;

    *n = 0;
    *skipped = 0;
    if (!domain_ok(domain))
        return -EINVAL;
    if ((rc = day_path(path, sizeof(path), dir, day, domain)) != 0)
        return rc;
    return read_file(path, true, false, load_one, &l, skipped);
}

int tlsrpt_store_load_policy(const char *dir, int64_t day, const char *domain,
                             enum tlsrpt_policy_type type, struct tlsrpt_policy_loaded *out)
{
    char path[4096];
    int rc, fd;
    ssize_t n;

    memset(out, 0, offsetof(struct tlsrpt_policy_loaded, text));
    out->text[0] = '\0';
    if (!domain_ok(domain) || (unsigned)type >= TLSRPT_POLICY_TYPES)
        return -EINVAL;
    if ((rc = policy_path(path, sizeof(path), dir, day, domain, type, false)) != 0)
        return rc;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return -errno;
    n = read(fd, out->text, sizeof(out->text) - 1);
    close(fd);
    if (n < 0)
        return -EIO;
    out->text[n] = '\0';
    for (char *p = out->text; *p != '\0';) {
        char *lf = strchr(p, '\n');
        if (lf == NULL || lf - p < 2 || p[1] != ' ' || (p[0] != 's' && p[0] != 'm'))
            goto bad;
        *lf = '\0';
        if (p[0] == 's' && out->n_strings < TLSRPT_POLICY_LINES)
            out->strings[out->n_strings++] = p + 2;
        else if (p[0] == 'm' && out->n_mx < TLSRPT_POLICY_LINES)
            out->mx[out->n_mx++] = p + 2;
        else
            goto bad;
        p = lf + 1;
    }
    return 0;
bad:
    out->n_strings = out->n_mx = 0;
    return -EINVAL;
}

/* The day of a folder name in exactly the form "YYYY-MM-DD", or false. */
static bool day_of_name(const char *name, int64_t *day)
{
    struct tm tm;
    char back[TLSRPT_DAY_TEXT];

    memset(&tm, 0, sizeof(tm));
    if (strlen(name) != 10)
        return false;
    const char *end = strptime(name, "%Y-%m-%d", &tm);
    if (end == NULL || *end != '\0')
        return false;
    *day = tlsrpt_day((int64_t)timegm(&tm));
    return tlsrpt_day_text(*day, back) && strcmp(back, name) == 0;
}

/* Empties and removes path when it holds only names ok() accepts: domain
 * files, and in .sent and .policy "<domain>" and "<domain>.<type>[.tmp]". */
static int prune_folder(const char *path, bool (*ok)(const char *))
{
    char p[4096];
    DIR *d = opendir(path);
    struct dirent *de;
    int rc = 0;

    if (d == NULL)
        return errno == ENOENT ? 0 : -errno;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (!ok(de->d_name) ||
            snprintf(p, sizeof(p), "%s/%s", path, de->d_name) >= (int)sizeof(p)) {
            rc = -ENOTEMPTY;
            continue;
        }
        if (unlink(p) != 0)
            rc = -errno;
    }
    closedir(d);
    if (rc == 0 && rmdir(path) != 0)
        rc = -errno;
    return rc;
}

int tlsrpt_store_prune(const char *dir, int64_t before_day)
{
    char path[4096], sub[4200];
    DIR *d = opendir(dir);
    struct dirent *de;
    int64_t day;
    int n = 0;

    if (d == NULL)
        return -errno;
    while ((de = readdir(d)) != NULL) {
        if (!day_of_name(de->d_name, &day) || day >= before_day)
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path))
            continue;
        bool ok = true;
        for (int i = 0; i < 2; i++) {
            snprintf(sub, sizeof(sub), "%s/%s", path, i == 0 ? ".sent" : ".policy");
            if (prune_folder(sub, domain_ok) != 0)
                ok = false;
        }
        if (ok && prune_folder(path, domain_ok) == 0)
            n++;
        else
            log_warn("tls_rpt=store dir=%s msg=\"an old day folder holds something else: kept\"",
                     path);
    }
    closedir(d);
    return n;
}
