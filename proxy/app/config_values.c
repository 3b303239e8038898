/*
 * config_values: what every section of the loader uses. Problems are
 * collected with their FILE:LINE and sorted into file order at the end; the
 * typed getters check one key each and report a wrong value without
 * stopping; file names are resolved against the config's directory and
 * checked for readability. No message is composed anywhere else than at the
 * check that finds the problem.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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

#include "proxy/app/config_int.h"
#include "proxy/core/addr.h"

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
__attribute__((format(printf, 3, 4))) void
cfg_fail(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
{
    va_list ap;
    const char *file = s && config_setting_source_file(s) ? config_setting_source_file(s)
                                                           : ld->name;

    va_start(ap, fmt);
    vfail_at(ld, file, s ? (int)config_setting_source_line(s) : 0, fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 4, 5))) void
cfg_fail_line(struct loader *ld, const char *file, int line, const char *fmt, ...)
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
void cfg_flush_errors(struct loader *ld, char *err, size_t errlen)
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

char *cfg_strdup(struct loader *ld, const char *s)
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
const char *cfg_keypath(char *buf, size_t len, const char *prefix, const char *key)
{
    /* Key paths are short; a cut one still names the place well enough. */
    if (snprintf(buf, len, "%s%s%s", prefix, *prefix ? "." : "", key) >= (int)len)
        buf[len - 1] = '\0';
    return buf;
}

/* A user's string made safe to quote in a message: control characters
 * replaced, so a stray binary value cannot garble a terminal, and cut to fit
 * buf by dropping the middle, so a long path still ends in its file name. */
const char *cfg_shown(const char *s, char *buf, size_t len)
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
int cfg_parse_addr(const char *text, bool names, struct addr *a, char *why,
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
                     cfg_shown(text, q, sizeof q));
            return -1;
        }
        start = text + 1;
        hlen = (size_t)(end - start);
        colon = end + 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon) {
            snprintf(why, whylen, "expected \"host:port\", got \"%s\"", cfg_shown(text, q, sizeof q));
            return -1;
        }
        hlen = (size_t)(colon - text);
        if (memchr(text, ':', hlen)) {
            snprintf(why, whylen,
                     "\"%s\": an IPv6 address needs brackets, e.g. \"[::1]:25\"",
                     cfg_shown(text, q, sizeof q));
            return -1;
        }
    }
    if (hlen == 0 || hlen >= sizeof host) {
        snprintf(why, whylen, "\"%s\": %s", cfg_shown(text, q, sizeof q),
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
                 cfg_shown(text, q, sizeof q));
        return -1;
    }

    if (bracketed) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&r.sa;

        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) {
            snprintf(why, whylen, "\"%s\": \"%s\" is not an IPv6 address",
                     cfg_shown(text, q, sizeof q), cfg_shown(host, qh, sizeof qh));
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
                     cfg_shown(text, q, sizeof q));
            return -1;
        } else if (!addr_valid_hostname(host)) {
            snprintf(why, whylen, "\"%s\": \"%s\" is neither an IP address nor a valid host name",
                     cfg_shown(text, q, sizeof q), cfg_shown(host, qh, sizeof qh));
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
int cfg_addr_clash(const struct addr *x, const struct addr *y)
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

const config_setting_t *cfg_member(const config_setting_t *g, const char *key)
{
    return g ? config_setting_get_member(g, key) : NULL;
}

int cfg_get_string(struct loader *ld, const config_setting_t *g, const char *prefix,
                   const char *key, const char **out)
{
    const config_setting_t *s = cfg_member(g, key);
    char kp[PATH_LEN];

    if (!s)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        cfg_fail(ld, s, "%s: expected a string", cfg_keypath(kp, sizeof kp, prefix, key));
        return -1;
    }
    *out = config_setting_get_string(s);
    return 1;
}

/* libconfig 1.5 silently wraps integers beyond 32 bits unless they carry an
 * L suffix; such values still land outside every range checked here. */
int cfg_get_uint(struct loader *ld, const config_setting_t *g, const char *prefix,
                 const char *key, long long min, long long max, unsigned *out)
{
    const config_setting_t *s = cfg_member(g, key);
    char kp[PATH_LEN];
    long long v;

    if (!s)
        return 0;
    cfg_keypath(kp, sizeof kp, prefix, key);
    if (config_setting_type(s) != CONFIG_TYPE_INT && config_setting_type(s) != CONFIG_TYPE_INT64) {
        cfg_fail(ld, s, "%s: expected an integer", kp);
        return -1;
    }
    v = config_setting_get_int64(s);
    if (v < min || v > max) {
        cfg_fail(ld, s, "%s: must be between %lld and %lld, got %lld", kp, min, max, v);
        return -1;
    }
    *out = (unsigned)v;
    return 1;
}

int cfg_get_bool(struct loader *ld, const config_setting_t *g, const char *prefix,
                 const char *key, bool *out)
{
    const config_setting_t *s = cfg_member(g, key);
    char kp[PATH_LEN];

    if (!s)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
        cfg_fail(ld, s, "%s: expected true or false", cfg_keypath(kp, sizeof kp, prefix, key));
        return -1;
    }
    *out = config_setting_get_bool(s) != 0;
    return 1;
}

/* names is NULL-terminated and in the order of the enum's values. Matching is
 * exact: the file documents the spelling, and one spelling keeps configs
 * greppable. */
int cfg_get_enum(struct loader *ld, const config_setting_t *g, const char *prefix,
                 const char *key, const char *const *names, int *out)
{
    const char *v;
    char kp[PATH_LEN], choices[128], q[96];
    int r = cfg_get_string(ld, g, prefix, key, &v);

    if (r <= 0)
        return r;
    for (int i = 0; names[i]; i++) {
        if (strcmp(v, names[i]) == 0) {
            *out = i;
            return 1;
        }
    }
    list_choices(names, choices, sizeof choices);
    cfg_fail(ld, cfg_member(g, key), "%s: expected %s, got \"%s\"", cfg_keypath(kp, sizeof kp, prefix, key),
             choices, cfg_shown(v, q, sizeof q));
    return -1;
}

int cfg_get_addr(struct loader *ld, const config_setting_t *g, const char *prefix,
                 const char *key, bool names, struct addr *out)
{
    const char *v;
    char kp[PATH_LEN], why[256];
    int r = cfg_get_string(ld, g, prefix, key, &v);

    if (r <= 0)
        return r;
    if (cfg_parse_addr(v, names, out, why, sizeof why) < 0) {
        cfg_fail(ld, cfg_member(g, key), "%s: %s", cfg_keypath(kp, sizeof kp, prefix, key), why);
        return -1;
    }
    return 1;
}

/* A nested group such as timeouts or tls; NULL if absent or wrong. */
const config_setting_t *cfg_get_group(struct loader *ld, const config_setting_t *g,
                                      const char *prefix, const char *key)
{
    const config_setting_t *s = cfg_member(g, key);
    char kp[PATH_LEN];

    if (s && !config_setting_is_group(s)) {
        cfg_fail(ld, s, "%s: expected a group { ... }", cfg_keypath(kp, sizeof kp, prefix, key));
        return NULL;
    }
    return s;
}

/* A list of groups such as inbound or policies. An empty array "[]" is
 * accepted too, since libconfig cannot tell it from an empty list. *bad says
 * whether the key was present but not a list. */
const config_setting_t *cfg_get_list(struct loader *ld, const config_setting_t *g,
                                     const char *prefix, const char *key, bool *bad)
{
    const config_setting_t *s = cfg_member(g, key);
    char kp[PATH_LEN];

    *bad = false;
    if (!s)
        return NULL;
    if (config_setting_is_list(s) || (config_setting_is_array(s) && config_setting_length(s) == 0))
        return s;
    cfg_fail(ld, s, "%s: expected a list of groups, e.g. %s = ( { ... }, { ... } );",
             cfg_keypath(kp, sizeof kp, prefix, key), key);
    *bad = true;
    return NULL;
}

/* Reports every key of g not in allowed: a misspelt key silently ignored
 * would leave a default in force that the user believes they changed. */
void cfg_check_keys(struct loader *ld, const config_setting_t *g, const char *prefix,
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
        cfg_fail(ld, s, "unknown key \"%s\"%s%s%s%s%s", name, *prefix ? " in " : "", prefix,
                 hint ? " (did you mean \"" : "", hint ? hint : "", hint ? "\"?)" : "");
    }
}

void cfg_check_required(struct loader *ld, const config_setting_t *g, const char *prefix,
                        const char *const *required)
{
    for (size_t k = 0; required[k]; k++)
        if (!cfg_member(g, required[k]))
            cfg_fail(ld, g, "%s: missing required key \"%s\"", prefix, required[k]);
}

/* ------------------------------------------------------------------------ */
/* Files                                                                    */

/* Relative paths are taken relative to the config file's directory, made
 * absolute, so that neither the daemon's working directory nor a later
 * chdir changes which file a SIGHUP reload reads. */
char *cfg_resolve_path(struct loader *ld, const char *path)
{
    char *r;

    if (path[0] == '/' || !ld->basedir)
        return cfg_strdup(ld, path);
    if (asprintf(&r, "%s/%s", ld->basedir, path) < 0) {
        ld->oom = true;
        return NULL;
    }
    return r;
}

/* 0 if path can be opened for reading and is not a directory, else -errno.
 * Opening (rather than access(2)) checks with the effective ids the daemon
 * really reads with. */
int cfg_check_readable(const char *path)
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

void cfg_fail_unreadable(struct loader *ld, const config_setting_t *s, const char *kp,
                         const char *written, const char *resolved, int rc, const char *extra)
{
    char q[1024], qr[1024];
    bool relative = strcmp(written, resolved) != 0;

    /* Both names made safe: the resolved one repeats the written one, and a
     * raw newline in it would split the message into two "problems". */
    cfg_fail(ld, s, "%s: cannot read \"%s\": %s%s%s%s%s", kp, cfg_shown(written, q, sizeof q),
             strerror(-rc), relative ? " (resolved to \"" : "",
             relative ? cfg_shown(resolved, qr, sizeof qr) : "", relative ? "\")" : "",
             extra ? extra : "");
}

void cfg_free_strings(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* certificate and key: one file name or a non-empty list of them. Each is
 * resolved and must be readable now, so that -t catches a wrong path before
 * a reload does. Returns 0 with a new array in *out, or -1 (reported). */
int cfg_get_files(struct loader *ld, const config_setting_t *s, const char *kp, char ***out,
                  size_t *nout)
{
    bool single = config_setting_type(s) == CONFIG_TYPE_STRING;
    size_t n = single ? 1 : (size_t)config_setting_length(s);
    char **v;
    int rc = 0;

    if (!single && !config_setting_is_list(s) && !config_setting_is_array(s)) {
        cfg_fail(ld, s, "%s: expected a file name or a list of file names", kp);
        return -1;
    }
    if (n == 0) {
        cfg_fail(ld, s, "%s: the list of files is empty", kp);
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
            cfg_fail(ld, e, "%s: expected a file name", ekp);
            rc = -1;
            continue;
        }
        v[i] = cfg_resolve_path(ld, config_setting_get_string(e));
        if (!v[i]) {
            rc = -1;
            continue;
        }
        r = cfg_check_readable(v[i]);
        if (r < 0) {
            cfg_fail_unreadable(ld, e, ekp, config_setting_get_string(e), v[i], r, NULL);
            rc = -1;
        }
    }
    if (rc < 0) {
        cfg_free_strings(v, n);
        return -1;
    }
    *out = v;
    *nout = n;
    return 0;
}
