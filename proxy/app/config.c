/*
 * config: the libconfig file of DESIGN.md "Configuration" turned into the
 * plain structs of config.h.
 *
 * The loader does not stop at the first problem. Each key is checked on its
 * own; a bad value leaves the default in place and records one
 * "FILE:LINE: message" line, so a single `smtp-tls-proxy -t` lists everything
 * that is wrong. The lines are sorted into file order before they are handed
 * back, because the keys are visited in dependency order (the global tls
 * block before the listeners that inherit from it), not in the order the
 * user wrote them. A config with any error is freed, never returned.
 */
#include "proxy/app/config.h"
#include "proxy/policy/rules.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libconfig.h>

#define DEFAULT_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

#define MAX_WORKERS 1024
#define MAX_TIMEOUT 86400 /* a day: anything longer is a typo, not a policy */
#define MAX_SHUTDOWN 86400
#define MAX_CONNECTIONS 1000000
#define MAX_NAME 64

/* Room for a key path such as "outbound[12].policies[3].match". */
#define PATH_LEN 192

/* One recorded problem, kept until the end so the lines can be sorted. */
struct load_error {
    unsigned file_rank; /* order in which its file first produced an error */
    int line;
    unsigned seq;       /* keeps equal lines in the order they were found */
    const char *file;   /* borrowed from libconfig or the caller */
    char *text;
};

struct loader {
    const char *name;   /* FILE in messages where libconfig records none */
    char *basedir;      /* absolute; relative paths in the file resolve here */
    struct config *c;
    struct load_error *errors;
    size_t nerrors, caperrors;
    bool oom;
    /* The global tls block and whether its ca_file was already checked, so
     * that a shared, unreadable CA file is reported once, not per listener. */
    const config_setting_t *global_tls;
    bool global_ca_checked;
    bool default_ca_checked;
};

static const char *const log_level_names[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_format_names[] = {"text", "json", NULL};
static const char *const tls_mode_names[] = {"starttls", "implicit", NULL};
static const char *const client_info_names[] = {"none", "xclient", "proxy-v1", "proxy-v2",
                                                NULL};
static const char *const bare_newline_names[] = {"normalize", "reject", NULL};
static const char *const policy_names[] = {"none", "opportunistic", "required", "verify", NULL};

/* ------------------------------------------------------------------------ */
/* Error collection                                                         */

__attribute__((format(printf, 4, 0))) static void
vfail_at(struct loader *ld, const char *file, int line, const char *fmt, va_list ap)
{
    struct load_error *e;
    unsigned rank = 0;
    size_t i;

    if (ld->nerrors == ld->caperrors) {
        size_t cap = ld->caperrors ? ld->caperrors * 2 : 16;
        struct load_error *n = realloc(ld->errors, cap * sizeof *n);

        if (!n) {
            ld->oom = true;
            return;
        }
        ld->errors = n;
        ld->caperrors = cap;
    }
    /* Errors from an @include'd file stay together, after those of the file
     * that was reported first. */
    for (i = 0; i < ld->nerrors; i++)
        if (strcmp(ld->errors[i].file, file) == 0)
            break;
    rank = i < ld->nerrors ? ld->errors[i].file_rank : (unsigned)ld->nerrors;

    e = &ld->errors[ld->nerrors];
    if (vasprintf(&e->text, fmt, ap) < 0) {
        ld->oom = true;
        return;
    }
    e->file = file;
    e->file_rank = rank;
    e->line = line;
    e->seq = (unsigned)ld->nerrors;
    ld->nerrors++;
}

/* Records a problem at setting s (its file and line). */
__attribute__((format(printf, 3, 4))) static void
fail(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
{
    va_list ap;
    const char *file = s && config_setting_source_file(s) ? config_setting_source_file(s)
                                                           : ld->name;

    va_start(ap, fmt);
    vfail_at(ld, file, s ? (int)config_setting_source_line(s) : 0, fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 4, 5))) static void
fail_line(struct loader *ld, const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfail_at(ld, file ? file : ld->name, line, fmt, ap);
    va_end(ap);
}

static int cmp_errors(const void *a, const void *b)
{
    const struct load_error *x = a, *y = b;

    if (x->file_rank != y->file_rank)
        return x->file_rank < y->file_rank ? -1 : 1;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sorts the errors into file order and writes them to err, one per line,
 * truncating (but always NUL-terminating) when err is too small. */
static void flush_errors(struct loader *ld, char *err, size_t errlen)
{
    size_t used = 0;

    if (errlen == 0)
        goto out;
    err[0] = '\0';
    if (ld->oom && ld->nerrors == 0) {
        snprintf(err, errlen, "%s: out of memory", ld->name);
        goto out;
    }
    if (ld->nerrors > 1)
        qsort(ld->errors, ld->nerrors, sizeof *ld->errors, cmp_errors);
    for (size_t i = 0; i < ld->nerrors && used < errlen - 1; i++) {
        const struct load_error *e = &ld->errors[i];
        int n;

        /* Line 0 means "the whole file" (it could not be opened): there is
         * no line to name. */
        if (e->line > 0)
            n = snprintf(err + used, errlen - used, "%s%s:%d: %s", used ? "\n" : "",
                         e->file, e->line, e->text);
        else
            n = snprintf(err + used, errlen - used, "%s%s: %s", used ? "\n" : "", e->file,
                         e->text);
        if (n < 0)
            break;
        used += (size_t)n < errlen - used ? (size_t)n : errlen - used - 1;
    }
out:
    for (size_t i = 0; i < ld->nerrors; i++)
        free(ld->errors[i].text);
    free(ld->errors);
    ld->errors = NULL;
    ld->nerrors = ld->caperrors = 0;
}

static char *xstrdup(struct loader *ld, const char *s)
{
    char *d = strdup(s);

    if (!d)
        ld->oom = true;
    return d;
}

/* ------------------------------------------------------------------------ */
/* Small text helpers                                                       */

/* "inbound[0]" + "tls_mode" -> "inbound[0].tls_mode"; top-level keys stand
 * alone. */
static const char *keypath(char *buf, size_t len, const char *prefix, const char *key)
{
    /* Key paths are short; a cut one still names the place well enough. */
    if (snprintf(buf, len, "%s%s%s", prefix, *prefix ? "." : "", key) >= (int)len)
        buf[len - 1] = '\0';
    return buf;
}

/* A user's string made safe to quote in a message: control characters
 * replaced, so a stray binary value cannot garble a terminal, and cut to fit
 * buf by dropping the middle, so a long path still ends in its file name. */
static const char *shown(const char *s, char *buf, size_t len)
{
    size_t n = strlen(s), o = 0;

    for (size_t i = 0; i < n && o + 1 < len; i++) {
        if (n >= len && o == len / 3) {
            /* Skip to where the tail that still fits begins. */
            size_t tail = len - 1 - o - 3;
            memcpy(buf + o, "...", 3);
            o += 3;
            i = n - tail;
        }
        buf[o++] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    }
    buf[o] = '\0';
    return buf;
}

/* "\"a\", \"b\" or \"c\"" for messages about enumerated values. */
static void list_choices(const char *const *names, char *buf, size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; names[i] && used < len; i++) {
        const char *sep = i == 0 ? "" : names[i + 1] ? ", " : " or ";
        int n = snprintf(buf + used, len - used, "%s\"%s\"", sep, names[i]);

        if (n < 0)
            return;
        used += (size_t)n;
    }
}

/* ------------------------------------------------------------------------ */
/* Addresses                                                                */

/* Parses "host:port" (IPv6 as "[addr]:port") into a. IP literals are filled
 * in numerically and "localhost" means 127.0.0.1: both are known without DNS,
 * which the loader never does (a config must not load differently because a
 * resolver was slow). When names is true any valid host name is accepted and
 * left unresolved (sa zeroed, salen 0) for the runtime. On error returns -1
 * and a reason in why. */
static int parse_addr(const char *text, bool names, struct addr *a, char *why,
                      size_t whylen)
{
    struct addr r;
    char host[sizeof r.host], q[96], qh[96];
    const char *start = text, *colon, *port;
    size_t hlen;
    unsigned long p = 0;
    bool bracketed = text[0] == '[';

    memset(&r, 0, sizeof r);
    if (bracketed) {
        const char *end = strchr(text, ']');

        if (!end || end[1] != ':') {
            snprintf(why, whylen, "expected \"[address]:port\", got \"%s\"",
                     shown(text, q, sizeof q));
            return -1;
        }
        start = text + 1;
        hlen = (size_t)(end - start);
        colon = end + 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon) {
            snprintf(why, whylen, "expected \"host:port\", got \"%s\"", shown(text, q, sizeof q));
            return -1;
        }
        hlen = (size_t)(colon - text);
        if (memchr(text, ':', hlen)) {
            snprintf(why, whylen,
                     "\"%s\": an IPv6 address needs brackets, e.g. \"[::1]:25\"",
                     shown(text, q, sizeof q));
            return -1;
        }
    }
    if (hlen == 0 || hlen >= sizeof host) {
        snprintf(why, whylen, "\"%s\": %s", shown(text, q, sizeof q),
                 hlen ? "host is too long" : "missing host");
        return -1;
    }
    memcpy(host, start, hlen);
    host[hlen] = '\0';

    port = colon + 1;
    for (const char *d = port; *d; d++) {
        if (*d < '0' || *d > '9' || p > 65535) {
            p = 0;
            break;
        }
        p = p * 10 + (unsigned long)(*d - '0');
    }
    if (p < 1 || p > 65535) {
        snprintf(why, whylen, "\"%s\": port must be a number between 1 and 65535",
                 shown(text, q, sizeof q));
        return -1;
    }

    if (bracketed) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&r.sa;

        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) {
            snprintf(why, whylen, "\"%s\": \"%s\" is not an IPv6 address",
                     shown(text, q, sizeof q), shown(host, qh, sizeof qh));
            return -1;
        }
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)p);
        r.salen = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&r.sa;
        bool literal = inet_pton(AF_INET, host, &s4->sin_addr) == 1;

        if (!literal && strcasecmp(host, "localhost") == 0) {
            /* Fixed rather than looked up: the hosts file could make it
             * ::1 on one machine and 127.0.0.1 on the next. */
            s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            literal = true;
        }
        if (literal) {
            s4->sin_family = AF_INET;
            s4->sin_port = htons((uint16_t)p);
            r.salen = sizeof *s4;
        } else if (!names) {
            snprintf(why, whylen,
                     "\"%s\": host must be an IP address or \"localhost\" "
                     "(host names are not resolved here)",
                     shown(text, q, sizeof q));
            return -1;
        } else if (!addr_valid_hostname(host)) {
            snprintf(why, whylen, "\"%s\": \"%s\" is neither an IP address nor a valid host name",
                     shown(text, q, sizeof q), shown(host, qh, sizeof qh));
            return -1;
        }
    }
    memcpy(r.host, host, hlen + 1);
    r.port = (unsigned short)p;
    *a = r;
    return 0;
}

/* Whether a bind to x and one to y would collide: same address and port, or
 * same port and family with either one the wildcard address. */
static int addr_clash(const struct addr *x, const struct addr *y)
{
    if (x->salen == 0 || y->salen == 0 || x->port != y->port || x->sa.ss_family != y->sa.ss_family)
        return 0;
    if (x->sa.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)&x->sa, *b = (const void *)&y->sa;

        if (a->sin_addr.s_addr == b->sin_addr.s_addr)
            return 1;
        return a->sin_addr.s_addr == INADDR_ANY || b->sin_addr.s_addr == INADDR_ANY ? 2 : 0;
    } else {
        const struct sockaddr_in6 *a = (const void *)&x->sa, *b = (const void *)&y->sa;

        if (IN6_ARE_ADDR_EQUAL(&a->sin6_addr, &b->sin6_addr))
            return 1;
        return IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr) || IN6_IS_ADDR_UNSPECIFIED(&b->sin6_addr)
                   ? 2
                   : 0;
    }
}

/* ------------------------------------------------------------------------ */
/* Typed getters. Each returns 1 when the key is present and valid, 0 when it
 * is absent (not an error: every key has a default or is checked by
 * check_required) and -1 when it is present but wrong (already reported).   */

static const config_setting_t *member(const config_setting_t *g, const char *key)
{
    return g ? config_setting_get_member(g, key) : NULL;
}

static int get_string(struct loader *ld, const config_setting_t *g, const char *prefix,
                      const char *key, const char **out)
{
    const config_setting_t *s = member(g, key);
    char kp[PATH_LEN];

    if (!s)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        fail(ld, s, "%s: expected a string", keypath(kp, sizeof kp, prefix, key));
        return -1;
    }
    *out = config_setting_get_string(s);
    return 1;
}

/* libconfig 1.5 silently wraps integers beyond 32 bits unless they carry an
 * L suffix; such values still land outside every range checked here. */
static int get_uint(struct loader *ld, const config_setting_t *g, const char *prefix,
                    const char *key, long long min, long long max, unsigned *out)
{
    const config_setting_t *s = member(g, key);
    char kp[PATH_LEN];
    long long v;

    if (!s)
        return 0;
    keypath(kp, sizeof kp, prefix, key);
    if (config_setting_type(s) != CONFIG_TYPE_INT && config_setting_type(s) != CONFIG_TYPE_INT64) {
        fail(ld, s, "%s: expected an integer", kp);
        return -1;
    }
    v = config_setting_get_int64(s);
    if (v < min || v > max) {
        fail(ld, s, "%s: must be between %lld and %lld, got %lld", kp, min, max, v);
        return -1;
    }
    *out = (unsigned)v;
    return 1;
}

static int get_bool(struct loader *ld, const config_setting_t *g, const char *prefix,
                    const char *key, bool *out)
{
    const config_setting_t *s = member(g, key);
    char kp[PATH_LEN];

    if (!s)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
        fail(ld, s, "%s: expected true or false", keypath(kp, sizeof kp, prefix, key));
        return -1;
    }
    *out = config_setting_get_bool(s) != 0;
    return 1;
}

/* names is NULL-terminated and in the order of the enum's values. Matching is
 * exact: the file documents the spelling, and one spelling keeps configs
 * greppable. */
static int get_enum(struct loader *ld, const config_setting_t *g, const char *prefix,
                    const char *key, const char *const *names, int *out)
{
    const char *v;
    char kp[PATH_LEN], choices[128], q[96];
    int r = get_string(ld, g, prefix, key, &v);

    if (r <= 0)
        return r;
    for (int i = 0; names[i]; i++) {
        if (strcmp(v, names[i]) == 0) {
            *out = i;
            return 1;
        }
    }
    list_choices(names, choices, sizeof choices);
    fail(ld, member(g, key), "%s: expected %s, got \"%s\"", keypath(kp, sizeof kp, prefix, key),
         choices, shown(v, q, sizeof q));
    return -1;
}

static int get_addr(struct loader *ld, const config_setting_t *g, const char *prefix,
                    const char *key, bool names, struct addr *out)
{
    const char *v;
    char kp[PATH_LEN], why[256];
    int r = get_string(ld, g, prefix, key, &v);

    if (r <= 0)
        return r;
    if (parse_addr(v, names, out, why, sizeof why) < 0) {
        fail(ld, member(g, key), "%s: %s", keypath(kp, sizeof kp, prefix, key), why);
        return -1;
    }
    return 1;
}

/* A nested group such as timeouts or tls; NULL if absent or wrong. */
static const config_setting_t *get_group(struct loader *ld, const config_setting_t *g,
                                         const char *prefix, const char *key)
{
    const config_setting_t *s = member(g, key);
    char kp[PATH_LEN];

    if (s && !config_setting_is_group(s)) {
        fail(ld, s, "%s: expected a group { ... }", keypath(kp, sizeof kp, prefix, key));
        return NULL;
    }
    return s;
}

/* A list of groups such as inbound or policies. An empty array "[]" is
 * accepted too, since libconfig cannot tell it from an empty list. *bad says
 * whether the key was present but not a list. */
static const config_setting_t *get_list(struct loader *ld, const config_setting_t *g,
                                        const char *prefix, const char *key, bool *bad)
{
    const config_setting_t *s = member(g, key);
    char kp[PATH_LEN];

    *bad = false;
    if (!s)
        return NULL;
    if (config_setting_is_list(s) || (config_setting_is_array(s) && config_setting_length(s) == 0))
        return s;
    fail(ld, s, "%s: expected a list of groups, e.g. %s = ( { ... }, { ... } );",
         keypath(kp, sizeof kp, prefix, key), key);
    *bad = true;
    return NULL;
}

/* Reports every key of g not in allowed: a misspelt key silently ignored
 * would leave a default in force that the user believes they changed. */
static void check_keys(struct loader *ld, const config_setting_t *g, const char *prefix,
                       const char *const *allowed)
{
    for (int i = 0; i < config_setting_length(g); i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(s);
        const char *hint = NULL;
        size_t k;

        for (k = 0; allowed[k]; k++) {
            if (strcmp(name, allowed[k]) == 0)
                break;
            if (strcasecmp(name, allowed[k]) == 0)
                hint = allowed[k];
        }
        if (allowed[k])
            continue;
        fail(ld, s, "unknown key \"%s\"%s%s%s%s%s", name, *prefix ? " in " : "", prefix,
             hint ? " (did you mean \"" : "", hint ? hint : "", hint ? "\"?)" : "");
    }
}

static void check_required(struct loader *ld, const config_setting_t *g, const char *prefix,
                           const char *const *required)
{
    for (size_t k = 0; required[k]; k++)
        if (!member(g, required[k]))
            fail(ld, g, "%s: missing required key \"%s\"", prefix, required[k]);
}

/* ------------------------------------------------------------------------ */
/* Files                                                                    */

/* Relative paths are taken relative to the config file's directory, made
 * absolute, so that neither the daemon's working directory nor a later
 * chdir changes which file a SIGHUP reload reads. */
static char *resolve_path(struct loader *ld, const char *path)
{
    char *r;

    if (path[0] == '/' || !ld->basedir)
        return xstrdup(ld, path);
    if (asprintf(&r, "%s/%s", ld->basedir, path) < 0) {
        ld->oom = true;
        return NULL;
    }
    return r;
}

/* 0 if path can be opened for reading and is not a directory, else -errno.
 * Opening (rather than access(2)) checks with the effective ids the daemon
 * really reads with. */
static int check_readable(const char *path)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    int rc = 0;

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0)
        rc = -errno;
    else if (S_ISDIR(st.st_mode))
        rc = -EISDIR;
    close(fd);
    return rc;
}

static void fail_unreadable(struct loader *ld, const config_setting_t *s, const char *kp,
                            const char *written, const char *resolved, int rc, const char *extra)
{
    char q[1024];
    bool relative = strcmp(written, resolved) != 0;

    fail(ld, s, "%s: cannot read \"%s\": %s%s%s%s%s", kp, shown(written, q, sizeof q),
         strerror(-rc), relative ? " (resolved to \"" : "", relative ? resolved : "",
         relative ? "\")" : "", extra ? extra : "");
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* certificate and key: one file name or a non-empty list of them. Each is
 * resolved and must be readable now, so that -t catches a wrong path before
 * a reload does. Returns 0 with a new array in *out, or -1 (reported). */
static int get_files(struct loader *ld, const config_setting_t *s, const char *kp, char ***out,
                     size_t *nout)
{
    bool single = config_setting_type(s) == CONFIG_TYPE_STRING;
    size_t n = single ? 1 : (size_t)config_setting_length(s);
    char **v;
    int rc = 0;

    if (!single && !config_setting_is_list(s) && !config_setting_is_array(s)) {
        fail(ld, s, "%s: expected a file name or a list of file names", kp);
        return -1;
    }
    if (n == 0) {
        fail(ld, s, "%s: the list of files is empty", kp);
        return -1;
    }
    v = calloc(n, sizeof *v);
    if (!v) {
        ld->oom = true;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const config_setting_t *e = single ? s : config_setting_get_elem(s, (unsigned)i);
        char ekp[PATH_LEN];
        int r;

        if (single)
            snprintf(ekp, sizeof ekp, "%s", kp);
        else
            snprintf(ekp, sizeof ekp, "%s[%zu]", kp, i);
        if (config_setting_type(e) != CONFIG_TYPE_STRING || !*config_setting_get_string(e)) {
            fail(ld, e, "%s: expected a file name", ekp);
            rc = -1;
            continue;
        }
        v[i] = resolve_path(ld, config_setting_get_string(e));
        if (!v[i]) {
            rc = -1;
            continue;
        }
        r = check_readable(v[i]);
        if (r < 0) {
            fail_unreadable(ld, e, ekp, config_setting_get_string(e), v[i], r, NULL);
            rc = -1;
        }
    }
    if (rc < 0) {
        free_strings(v, n);
        return -1;
    }
    *out = v;
    *nout = n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* TLS blocks                                                               */

static void tls_clear(struct tls_options *t)
{
    free_strings(t->certificates, t->ncertificates);
    free_strings(t->keys, t->nkeys);
    free(t->ciphers);
    free(t->ca_file);
    memset(t, 0, sizeof *t);
}

static int tls_defaults(struct tls_options *t)
{
    memset(t, 0, sizeof *t);
    t->min_version = 12;
    t->ciphers = strdup(TLS_DEFAULT_CIPHERS);
    t->ca_file = strdup(DEFAULT_CA_FILE);
    return t->ciphers && t->ca_file ? 0 : -ENOMEM;
}

static char **dup_strings(char *const *v, size_t n)
{
    char **d;

    if (n == 0)
        return NULL;
    d = calloc(n, sizeof *d);
    if (!d)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        d[i] = strdup(v[i]);
        if (!d[i]) {
            free_strings(d, i);
            return NULL;
        }
    }
    return d;
}

/* Deep copy, so that every listener owns its struct tls_options outright and
 * nobody has to know which strings are shared with the global block. */
static int tls_copy(struct tls_options *dst, const struct tls_options *src)
{
    memset(dst, 0, sizeof *dst);
    dst->min_version = src->min_version;
    dst->certificates = dup_strings(src->certificates, src->ncertificates);
    if (src->ncertificates && !dst->certificates)
        goto err;
    dst->ncertificates = src->ncertificates;
    dst->keys = dup_strings(src->keys, src->nkeys);
    if (src->nkeys && !dst->keys)
        goto err;
    dst->nkeys = src->nkeys;
    dst->ciphers = src->ciphers ? strdup(src->ciphers) : NULL;
    dst->ca_file = src->ca_file ? strdup(src->ca_file) : NULL;
    if ((src->ciphers && !dst->ciphers) || (src->ca_file && !dst->ca_file))
        goto err;
    return 0;
err:
    tls_clear(dst);
    return -ENOMEM;
}

/* Applies the keys of one tls block over t (the defaults, or a listener's copy
 * of the global block). certificate and key are one unit: overriding only one
 * of them would pair a listener's certificate with the global block's key. */
static void apply_tls(struct loader *ld, const config_setting_t *blk, const char *prefix,
                      struct tls_options *t)
{
    static const char *const keys[] = {"certificate", "key", "min_version", "ciphers", "ca_file",
                                       NULL};
    static const char *const versions[] = {"1.2", "1.3", NULL};
    const config_setting_t *cert = member(blk, "certificate"), *key = member(blk, "key");
    char kp[PATH_LEN], kp2[PATH_LEN];
    const char *v;
    int ver;

    check_keys(ld, blk, prefix, keys);

    if (cert && !key) {
        fail(ld, cert, "%s: a certificate needs its key: set %s too",
             keypath(kp, sizeof kp, prefix, "certificate"),
             keypath(kp2, sizeof kp2, prefix, "key"));
    } else if (key && !cert) {
        fail(ld, key, "%s: a key needs its certificate: set %s too",
             keypath(kp, sizeof kp, prefix, "key"),
             keypath(kp2, sizeof kp2, prefix, "certificate"));
    } else if (cert && key) {
        char **certs = NULL, **keyv = NULL;
        size_t ncerts = 0, nkeys = 0;
        int rc1 = get_files(ld, cert, keypath(kp, sizeof kp, prefix, "certificate"), &certs,
                            &ncerts);
        int rc2 = get_files(ld, key, keypath(kp2, sizeof kp2, prefix, "key"), &keyv, &nkeys);

        if (rc1 == 0 && rc2 == 0 && ncerts != nkeys) {
            fail(ld, key, "%s: %zu key file%s for %zu certificate%s (they pair up in order)", kp2,
                 nkeys, nkeys == 1 ? "" : "s", ncerts, ncerts == 1 ? "" : "s");
            rc1 = -1;
        }
        if (rc1 == 0 && rc2 == 0) {
            free_strings(t->certificates, t->ncertificates);
            free_strings(t->keys, t->nkeys);
            t->certificates = certs;
            t->ncertificates = ncerts;
            t->keys = keyv;
            t->nkeys = nkeys;
        } else {
            free_strings(certs, ncerts);
            free_strings(keyv, nkeys);
        }
    }

    if (get_enum(ld, blk, prefix, "min_version", versions, &ver) > 0)
        t->min_version = ver == 0 ? 12 : 13;

    if (get_string(ld, blk, prefix, "ciphers", &v) > 0) {
        if (!*v) {
            fail(ld, member(blk, "ciphers"), "%s: must not be empty",
                 keypath(kp, sizeof kp, prefix, "ciphers"));
        } else {
            char *d = xstrdup(ld, v);

            if (d) {
                free(t->ciphers);
                t->ciphers = d;
            }
        }
    }

    /* Only named here; whether it is readable matters only to an outbound
     * listener that verifies, see check_ca_file(). */
    if (get_string(ld, blk, prefix, "ca_file", &v) > 0) {
        if (!*v) {
            fail(ld, member(blk, "ca_file"), "%s: must not be empty",
                 keypath(kp, sizeof kp, prefix, "ca_file"));
        } else {
            char *d = resolve_path(ld, v);

            if (d) {
                free(t->ca_file);
                t->ca_file = d;
            }
        }
    }
}

/* The listener's copy of the global block, with its own overrides on top. */
static void listener_tls(struct loader *ld, const config_setting_t *g, const char *prefix,
                         struct tls_options *t)
{
    const config_setting_t *blk = get_group(ld, g, prefix, "tls");
    char kp[PATH_LEN];

    if (blk)
        apply_tls(ld, blk, keypath(kp, sizeof kp, prefix, "tls"), t);
}

/* ------------------------------------------------------------------------ */
/* Listeners                                                                */

static void timeouts_set(struct session_timeouts *t, unsigned connect, unsigned handshake,
                         unsigned idle)
{
    t->connect = connect;
    t->handshake = handshake;
    t->idle = idle;
}

static void load_timeouts(struct loader *ld, const config_setting_t *g, const char *prefix,
                          struct session_timeouts *t)
{
    static const char *const keys[] = {"connect", "handshake", "idle", NULL};
    const config_setting_t *blk = get_group(ld, g, prefix, "timeouts");
    char kp[PATH_LEN];

    if (!blk)
        return;
    keypath(kp, sizeof kp, prefix, "timeouts");
    check_keys(ld, blk, kp, keys);
    get_uint(ld, blk, kp, "connect", 1, MAX_TIMEOUT, &t->connect);
    get_uint(ld, blk, kp, "handshake", 1, MAX_TIMEOUT, &t->handshake);
    get_uint(ld, blk, kp, "idle", 1, MAX_TIMEOUT, &t->idle);
}

/* Name and position of another listener, for "already used by" messages. */
struct listener_ref {
    const char *what;   /* "inbound" or "outbound" */
    size_t index;
    int line;
    const char *name;
    const struct addr *listen;
};

/* Fills ref with listener number k, counting inbound then outbound; false
 * past the end and for (what, self), the listener asking. Listeners not yet
 * loaded have a NULL name and salen 0, so they never match anything. */
static bool find_ref(const struct config *c, const char *what, size_t self, size_t k,
                     struct listener_ref *ref)
{
    size_t nin = c->ninbound;

    if (k < nin) {
        if (strcmp(what, "inbound") == 0 && k == self)
            return false;
        *ref = (struct listener_ref){"inbound", k, c->inbound[k].line, c->inbound[k].name,
                                    &c->inbound[k].listen};
        return true;
    }
    k -= nin;
    if (k < c->noutbound) {
        if (strcmp(what, "outbound") == 0 && k == self)
            return false;
        *ref = (struct listener_ref){"outbound", k, c->outbound[k].line, c->outbound[k].name,
                                     &c->outbound[k].listen};
        return true;
    }
    return false;
}

/* name: required, unique across both directions (it labels metrics, so two
 * listeners of the same name would merge their counters), and restricted to
 * characters that need no quoting in logs or Prometheus labels. */
static void load_name(struct loader *ld, const config_setting_t *g, const char *what, size_t self,
                      const char *prefix, char **out)
{
    const config_setting_t *s = member(g, "name");
    const char *v;
    char kp[PATH_LEN], q[96];
    struct listener_ref ref;

    if (get_string(ld, g, prefix, "name", &v) <= 0)
        return;
    keypath(kp, sizeof kp, prefix, "name");
    if (!*v || strlen(v) > MAX_NAME) {
        fail(ld, s, "%s: must be 1 to %d characters long", kp, MAX_NAME);
        return;
    }
    if (strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
        strlen(v)) {
        fail(ld, s,
             "%s: \"%s\" may contain only letters, digits, '.', '_' and '-' "
             "(it appears in logs and metric labels)",
             kp, shown(v, q, sizeof q));
        return;
    }
    for (size_t k = 0; k < ld->c->ninbound + ld->c->noutbound; k++) {
        if (!find_ref(ld->c, what, self, k, &ref) || !ref.name)
            continue;
        if (strcmp(ref.name, v) == 0) {
            fail(ld, s, "%s: \"%s\" is already used by %s[%zu] (line %d)", kp, v, ref.what,
                 ref.index, ref.line);
            return;
        }
    }
    *out = xstrdup(ld, v);
}

/* listen: an IP literal, and no two listeners (nor the metrics endpoint) may
 * bind overlapping sockets. */
static void load_listen(struct loader *ld, const config_setting_t *g, const char *what,
                        size_t self, const char *prefix, struct addr *out)
{
    struct addr a;
    struct listener_ref ref;
    char kp[PATH_LEN], t1[300], t2[300];

    if (get_addr(ld, g, prefix, "listen", false, &a) <= 0)
        return;
    keypath(kp, sizeof kp, prefix, "listen");
    for (size_t k = 0; k < ld->c->ninbound + ld->c->noutbound; k++) {
        int clash;

        if (!find_ref(ld->c, what, self, k, &ref))
            continue;
        clash = addr_clash(&a, ref.listen);
        if (clash == 1) {
            fail(ld, member(g, "listen"), "%s: \"%s\" is already used by %s[%zu] (line %d)", kp,
                 addr_format_spec(&a, a.port, t1, sizeof t1), ref.what, ref.index, ref.line);
            return;
        }
        if (clash == 2) {
            fail(ld, member(g, "listen"), "%s: \"%s\" overlaps \"%s\" of %s[%zu] (line %d)", kp,
                 addr_format_spec(&a, a.port, t1, sizeof t1), addr_format_spec(ref.listen, ref.listen->port, t2, sizeof t2), ref.what,
                 ref.index, ref.line);
            return;
        }
    }
    *out = a;
}

/* A connection to our own listening socket would loop until the connection
 * limit is hit, so refuse the one case that is certain from the config. */
static void check_not_self(struct loader *ld, const config_setting_t *g, const char *prefix,
                           const char *key, const struct addr *listen,
                           const struct addr *target)
{
    char kp[PATH_LEN];

    if (addr_clash(listen, target) == 1)
        fail(ld, member(g, key), "%s: same address as listen: the proxy would connect to itself",
             keypath(kp, sizeof kp, prefix, key));
}

static void inbound_defaults(struct config_inbound *in)
{
    in->opts.tls_mode = SESSION_TLS_STARTTLS;
    in->opts.backend_client_info = SESSION_CLIENT_INFO_NONE;
    in->opts.bare_newline = SESSION_BARE_NEWLINE_NORMALIZE;
    in->opts.max_connections = 10000;
    timeouts_set(&in->opts.timeouts, 10, 30, 300);
}

static void load_inbound(struct loader *ld, const config_setting_t *g, size_t i)
{
    static const char *const keys[] = {"name", "listen", "backend", "tls_mode", "require_tls",
                                       "proxy_protocol", "backend_client_info", "bare_newline",
                                       "max_connections", "timeouts", "tls", NULL};
    static const char *const required[] = {"name", "listen", "backend", NULL};
    struct config_inbound *in = &ld->c->inbound[i];
    char prefix[PATH_LEN];
    int v;

    snprintf(prefix, sizeof prefix, "inbound[%zu]", i);
    in->line = (int)config_setting_source_line(g);
    inbound_defaults(in);
    if (tls_copy(&in->tls, &ld->c->tls) < 0)
        ld->oom = true;
    if (!config_setting_is_group(g)) {
        fail(ld, g, "%s: expected a group { ... }", prefix);
        return;
    }
    check_keys(ld, g, prefix, keys);
    check_required(ld, g, prefix, required);

    load_name(ld, g, "inbound", i, prefix, &in->name);
    load_listen(ld, g, "inbound", i, prefix, &in->listen);
    if (get_addr(ld, g, prefix, "backend", false, &in->opts.backend) > 0)
        check_not_self(ld, g, prefix, "backend", &in->listen, &in->opts.backend);
    if (get_enum(ld, g, prefix, "tls_mode", tls_mode_names, &v) > 0)
        in->opts.tls_mode = (enum session_tls_mode)v;
    get_bool(ld, g, prefix, "require_tls", &in->opts.require_tls);
    get_bool(ld, g, prefix, "proxy_protocol", &in->opts.proxy_protocol);
    if (get_enum(ld, g, prefix, "backend_client_info", client_info_names, &v) > 0)
        in->opts.backend_client_info = (enum session_client_info)v;
    if (get_enum(ld, g, prefix, "bare_newline", bare_newline_names, &v) > 0)
        in->opts.bare_newline = (enum session_bare_newline)v;
    get_uint(ld, g, prefix, "max_connections", 1, MAX_CONNECTIONS, &in->opts.max_connections);
    load_timeouts(ld, g, prefix, &in->opts.timeouts);
    listener_tls(ld, g, prefix, &in->tls);
}

/* ------------------------------------------------------------------------ */
/* Outbound policy rules                                                    */

static void load_policies(struct loader *ld, const config_setting_t *g, const char *prefix,
                          struct config_outbound *o)
{
    static const char *const keys[] = {"match", "policy", NULL};
    bool bad;
    const config_setting_t *list = get_list(ld, g, prefix, "policies", &bad);
    size_t n = list ? (size_t)config_setting_length(list) : 0;
    size_t *from; /* position in the file of each kept rule, for messages */

    if (n == 0)
        return;
    o->opts.policy.rules = calloc(n, sizeof *o->opts.policy.rules);
    from = calloc(n, sizeof *from);
    if (!o->opts.policy.rules || !from) {
        ld->oom = true;
        free(from);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        struct policy_rule r;
        char rp[PATH_LEN], kp[PATH_LEN], why[256];
        const char *match;
        int v;

        memset(&r, 0, sizeof r);
        if (snprintf(rp, sizeof rp, "%s.policies[%zu]", prefix, i) >= (int)sizeof rp)
            rp[sizeof rp - 1] = '\0';
        if (!config_setting_is_group(e)) {
            fail(ld, e, "%s: expected a group { match = ...; policy = ...; }", rp);
            continue;
        }
        check_keys(ld, e, rp, keys);
        check_required(ld, e, rp, (const char *const[]){"match", "policy", NULL});
        /* Both looked at before giving up, so both can be reported. */
        bool policy_ok = get_enum(ld, e, rp, "policy", policy_names, &v) > 0;
        bool match_ok = get_string(ld, e, rp, "match", &match) > 0;

        if (!policy_ok || !match_ok)
            continue;
        keypath(kp, sizeof kp, rp, "match");
        char shown_match[96];
        if (policy_rule_parse(match, shown(match, shown_match, sizeof shown_match), &r, why,
                              sizeof why) < 0) {
            fail(ld, member(e, "match"), "%s: %s", kp, why);
            continue;
        }
        r.policy = (enum outbound_policy)v;
        r.match = xstrdup(ld, match);
        if (!r.match)
            continue;
        for (size_t k = 0; k < o->opts.policy.nrules; k++) {
            if (policy_rule_same(&o->opts.policy.rules[k], &r)) {
                fail(ld, member(e, "match"), "%s: \"%s\" repeats %s.policies[%zu] (\"%s\")", kp,
                     match, prefix, from[k], o->opts.policy.rules[k].match);
                free(r.match);
                r.match = NULL;
                break;
            }
        }
        if (r.match) {
            from[o->opts.policy.nrules] = i;
            o->opts.policy.rules[o->opts.policy.nrules++] = r;
        }
    }
    free(from);
}

/* ca_file is only read when a certificate has to be verified, so a missing
 * one is an error only for an outbound listener that can verify. A CA file
 * from the global block (or the built-in default) is reported once. */
static void check_ca_file(struct loader *ld, const config_setting_t *g, const char *prefix,
                          const struct config_outbound *o)
{
    const config_setting_t *own = member(member(g, "tls"), "ca_file");
    const config_setting_t *global = member(ld->global_tls, "ca_file");
    char kp[PATH_LEN], extra[PATH_LEN + 64];
    int rc;

    if (!policy_table_verifies(&o->opts.policy))
        return;
    rc = check_readable(o->tls.ca_file);
    if (rc == 0)
        return;
    snprintf(extra, sizeof extra, " (needed by policy \"verify\" in %s)", prefix);
    if (own) {
        if (config_setting_type(own) == CONFIG_TYPE_STRING && *config_setting_get_string(own))
            fail_unreadable(ld, own, keypath(kp, sizeof kp, prefix, "tls.ca_file"),
                            config_setting_get_string(own), o->tls.ca_file, rc, extra);
    } else if (global) {
        if (!ld->global_ca_checked && config_setting_type(global) == CONFIG_TYPE_STRING &&
            *config_setting_get_string(global))
            fail_unreadable(ld, global, "tls.ca_file", config_setting_get_string(global),
                            o->tls.ca_file, rc, extra);
        ld->global_ca_checked = true;
    } else if (!ld->default_ca_checked) {
        fail(ld, g,
             "%s: policy \"verify\" needs tls.ca_file, and the default \"%s\" cannot be "
             "read: %s",
             prefix, o->tls.ca_file, strerror(-rc));
        ld->default_ca_checked = true;
    }
}

static void outbound_defaults(struct config_outbound *o)
{
    o->opts.original_dst = true;
    o->opts.policy.fallback = OUTBOUND_OPPORTUNISTIC;
    o->opts.max_connections = 10000;
    timeouts_set(&o->opts.timeouts, 30, 30, 300);
}

static void load_outbound(struct loader *ld, const config_setting_t *g, size_t i)
{
    static const char *const keys[] = {"name",     "listen",          "destination",
                                       "policy",   "policies",        "max_connections",
                                       "timeouts", "tls",             NULL};
    static const char *const required[] = {"name", "listen", NULL};
    struct config_outbound *o = &ld->c->outbound[i];
    char prefix[PATH_LEN];
    const char *dest;
    int v;

    snprintf(prefix, sizeof prefix, "outbound[%zu]", i);
    o->line = (int)config_setting_source_line(g);
    outbound_defaults(o);
    if (tls_copy(&o->tls, &ld->c->tls) < 0)
        ld->oom = true;
    if (!config_setting_is_group(g)) {
        fail(ld, g, "%s: expected a group { ... }", prefix);
        return;
    }
    check_keys(ld, g, prefix, keys);
    check_required(ld, g, prefix, required);

    load_name(ld, g, "outbound", i, prefix, &o->name);
    load_listen(ld, g, "outbound", i, prefix, &o->listen);
    if (get_string(ld, g, prefix, "destination", &dest) > 0 && strcmp(dest, "original") != 0) {
        char why[256], kp[PATH_LEN];

        if (parse_addr(dest, true, &o->opts.destination, why, sizeof why) < 0) {
            fail(ld, member(g, "destination"), "%s: expected \"original\" or \"host:port\": %s",
                 keypath(kp, sizeof kp, prefix, "destination"), why);
        } else {
            o->opts.original_dst = false;
            check_not_self(ld, g, prefix, "destination", &o->listen, &o->opts.destination);
        }
    }
    if (get_enum(ld, g, prefix, "policy", policy_names, &v) > 0)
        o->opts.policy.fallback = (enum outbound_policy)v;
    load_policies(ld, g, prefix, o);
    get_uint(ld, g, prefix, "max_connections", 1, MAX_CONNECTIONS, &o->opts.max_connections);
    load_timeouts(ld, g, prefix, &o->opts.timeouts);
    listener_tls(ld, g, prefix, &o->tls);
    check_ca_file(ld, g, prefix, o);
}

/* ------------------------------------------------------------------------ */
/* The whole file                                                           */

static int config_defaults(struct config *c)
{
    c->workers = 0;
    c->log_level = LOG_LEVEL_INFO;
    c->log_format = LOG_FORMAT_TEXT;
    c->metrics_enabled = false;
    c->shutdown_timeout = 30;
    return tls_defaults(&c->tls);
}

static void load_root(struct loader *ld, const config_setting_t *root)
{
    static const char *const keys[] = {"workers",          "log_level", "log_format",
                                       "metrics_listen",   "tls",       "inbound",
                                       "outbound",         "shutdown_timeout", NULL};
    struct config *c = ld->c;
    const config_setting_t *in, *out;
    bool bad_in, bad_out;
    struct listener_ref ref;
    int v;

    check_keys(ld, root, "", keys);
    get_uint(ld, root, "", "workers", 0, MAX_WORKERS, &c->workers);
    if (get_enum(ld, root, "", "log_level", log_level_names, &v) > 0)
        c->log_level = (enum log_level)v;
    if (get_enum(ld, root, "", "log_format", log_format_names, &v) > 0)
        c->log_format = (enum log_format)v;
    if (get_addr(ld, root, "", "metrics_listen", false, &c->metrics_listen) > 0)
        c->metrics_enabled = true;
    get_uint(ld, root, "", "shutdown_timeout", 0, MAX_SHUTDOWN, &c->shutdown_timeout);

    /* Before the listeners: each of them starts from a copy of this block. */
    ld->global_tls = get_group(ld, root, "", "tls");
    if (ld->global_tls)
        apply_tls(ld, ld->global_tls, "tls", &c->tls);

    in = get_list(ld, root, "", "inbound", &bad_in);
    out = get_list(ld, root, "", "outbound", &bad_out);
    c->ninbound = in ? (size_t)config_setting_length(in) : 0;
    c->noutbound = out ? (size_t)config_setting_length(out) : 0;
    if (c->ninbound && !(c->inbound = calloc(c->ninbound, sizeof *c->inbound)))
        c->ninbound = 0, ld->oom = true;
    if (c->noutbound && !(c->outbound = calloc(c->noutbound, sizeof *c->outbound)))
        c->noutbound = 0, ld->oom = true;
    if (ld->oom)
        return;
    for (size_t i = 0; i < c->ninbound; i++)
        load_inbound(ld, config_setting_get_elem(in, (unsigned)i), i);
    for (size_t i = 0; i < c->noutbound; i++)
        load_outbound(ld, config_setting_get_elem(out, (unsigned)i), i);

    /* A proxy with nothing to listen on would start and do nothing, which is
     * never what the file meant. Not said again when a broken inbound or
     * outbound key has already been reported. */
    if (c->ninbound + c->noutbound == 0 && !bad_in && !bad_out) {
        const char *msg = "no listeners: define at least one inbound or outbound listener";

        /* At the empty list if there is one, else at the top of the file. */
        if (in || out)
            fail(ld, in ? in : out, "%s", msg);
        else
            fail_line(ld, NULL, 1, "%s", msg);
    }

    if (c->metrics_enabled) {
        for (size_t k = 0; k < c->ninbound + c->noutbound; k++) {
            char t1[300], t2[300];

            if (find_ref(c, "", 0, k, &ref) && addr_clash(&c->metrics_listen, ref.listen)) {
                fail(ld, member(root, "metrics_listen"),
                     "metrics_listen: \"%s\" clashes with the listen address \"%s\" of %s[%zu] "
                     "(line %d)",
                     addr_format_spec(&c->metrics_listen, c->metrics_listen.port, t1, sizeof t1),
                     addr_format_spec(ref.listen, ref.listen->port, t2, sizeof t2), ref.what, ref.index, ref.line);
                break;
            }
        }
    }
}

/* The absolute directory relative paths in the file resolve against: the
 * directory of name, or the working directory when name has none. NULL only
 * when even that cannot be found; paths are then kept as written. */
static char *base_dir(const char *name)
{
    char *copy = strdup(name), *dir, *abs = NULL;

    if (!copy)
        return NULL;
    dir = dirname(copy);
    abs = realpath(dir, NULL);
    if (!abs && strcmp(dir, ".") != 0)
        abs = strdup(dir);
    free(copy);
    return abs;
}

/* The common part of config_load and config_load_string: exactly one of fp
 * and text is set. */
static int load(FILE *fp, const char *text, const char *name, struct config **out, char *err,
                size_t errlen)
{
    struct loader ld;
    config_t lc;
    int rc;

    memset(&ld, 0, sizeof ld);
    ld.name = name;
    ld.c = calloc(1, sizeof *ld.c);
    if (!ld.c || config_defaults(ld.c) < 0 || !(ld.c->file = strdup(name))) {
        ld.oom = true;
        goto fail_config;
    }
    ld.basedir = base_dir(name);

    config_init(&lc);
    /* @include "x.conf" is relative to the including file, like every other
     * path in it, not to the daemon's working directory. */
    config_set_include_dir(&lc, ld.basedir);
    if (!(fp ? config_read(&lc, fp) : config_read_string(&lc, text))) {
        fail_line(&ld, config_error_file(&lc), config_error_line(&lc), "%s",
                  config_error_text(&lc));
    } else {
        load_root(&ld, config_root_setting(&lc));
    }
    /* The messages borrow libconfig's file names: write them out first. */
    rc = ld.oom ? -ENOMEM : ld.nerrors ? -EINVAL : 0;
    flush_errors(&ld, err, errlen);
    config_destroy(&lc);
    free(ld.basedir);
    if (rc < 0) {
        config_free(ld.c);
        return rc;
    }
    *out = ld.c;
    return 0;

fail_config:
    config_free(ld.c);
    flush_errors(&ld, err, errlen);
    return -ENOMEM;
}

int config_load(const char *file, struct config **out, char *err, size_t errlen)
{
    struct stat st;
    FILE *fp;
    int rc;

    *out = NULL;
    if (errlen)
        err[0] = '\0';
    /* Opened here rather than by config_read_file so that the message can
     * say why (libconfig only reports "file I/O error"). There is no line to
     * name, so this one message is "FILE: ...". */
    fp = fopen(file, "re");
    if (!fp)
        rc = errno;
    else if (fstat(fileno(fp), &st) < 0)
        rc = errno;
    else
        rc = S_ISDIR(st.st_mode) ? EISDIR : 0;
    if (rc != 0) {
        if (fp)
            fclose(fp);
        if (errlen)
            snprintf(err, errlen, "%s: cannot read: %s", file, strerror(rc));
        return -rc;
    }
    rc = load(fp, NULL, file, out, err, errlen);
    fclose(fp);
    return rc;
}

int config_load_string(const char *text, const char *name, struct config **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    if (errlen)
        err[0] = '\0';
    return load(NULL, text, name, out, err, errlen);
}

struct config *config_default(void)
{
    struct config *c = calloc(1, sizeof *c);
    struct config_inbound *in;
    char why[128];

    if (!c)
        return NULL;
    if (config_defaults(c) < 0 || !(c->file = strdup("(built-in)")))
        goto err;
    c->inbound = calloc(1, sizeof *c->inbound);
    if (!c->inbound)
        goto err;
    c->ninbound = 1;
    in = &c->inbound[0];
    inbound_defaults(in);
    in->line = 0;
    if (!(in->name = strdup("default")) || tls_copy(&in->tls, &c->tls) < 0)
        goto err;
    if (parse_addr("127.0.0.1:2525", false, &in->listen, why, sizeof why) < 0 ||
        parse_addr("127.0.0.1:25", false, &in->opts.backend, why, sizeof why) < 0)
        goto err;
    return c;
err:
    config_free(c);
    return NULL;
}

void config_free(struct config *c)
{
    if (!c)
        return;
    for (size_t i = 0; c->inbound && i < c->ninbound; i++) {
        free(c->inbound[i].name);
        tls_clear(&c->inbound[i].tls);
    }
    for (size_t i = 0; c->outbound && i < c->noutbound; i++) {
        struct config_outbound *o = &c->outbound[i];

        free(o->name);
        for (size_t k = 0; k < o->opts.policy.nrules; k++)
            free(o->opts.policy.rules[k].match);
        free(o->opts.policy.rules);
        tls_clear(&o->tls);
    }
    free(c->inbound);
    free(c->outbound);
    tls_clear(&c->tls);
    free(c->file);
    free(c);
}
