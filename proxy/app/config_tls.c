/*
 * config_tls: the tls blocks of the file. The global block starts from the
 * built-in defaults; each listener starts from a deep copy of the global
 * block and applies its own block on top.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libconfig.h>

#include "proxy/app/config_int.h"
#include "proxy/tls/tls.h"

#define DEFAULT_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

/* ------------------------------------------------------------------------ */
/* TLS blocks                                                               */

void cfg_tls_clear(struct tls_options *t)
{
    cfg_free_strings(t->certificates, t->ncertificates);
    cfg_free_strings(t->keys, t->nkeys);
    free(t->ciphers);
    free(t->ca_file);
    free(t->ticket_keys);
    cfg_free_strings(t->certificate_at, t->ncertificates);
    cfg_free_strings(t->key_at, t->nkeys);
    free(t->ticket_keys_at);
    memset(t, 0, sizeof *t);
}

int cfg_tls_defaults(struct tls_options *t)
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
            cfg_free_strings(d, i);
            return NULL;
        }
    }
    return d;
}

/* Deep copy, so that every listener owns its struct tls_options outright and
 * nobody has to know which strings are shared with the global block. */
int cfg_tls_copy(struct tls_options *dst, const struct tls_options *src)
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
    dst->ticket_keys = src->ticket_keys ? strdup(src->ticket_keys) : NULL;
    dst->ticket_keys_at = src->ticket_keys_at ? strdup(src->ticket_keys_at) : NULL;
    if ((src->ticket_keys && !dst->ticket_keys) || (src->ticket_keys_at && !dst->ticket_keys_at))
        goto err;
    if (src->certificate_at) {
        dst->certificate_at = dup_strings(src->certificate_at, src->ncertificates);
        if (src->ncertificates && !dst->certificate_at)
            goto err;
    }
    if (src->key_at) {
        dst->key_at = dup_strings(src->key_at, src->nkeys);
        if (src->nkeys && !dst->key_at)
            goto err;
    }
    return 0;
err:
    cfg_tls_clear(dst);
    return -ENOMEM;
}

/* A string key that must not be empty, replacing *field when present and
 * valid; as a path (is_path) it is resolved against the config's directory. */
static void set_nonempty(struct loader *ld, const config_setting_t *blk, const char *prefix,
                         const char *key, bool is_path, char **field)
{
    const char *v;
    char kp[PATH_LEN];
    char *d;

    if (cfg_get_string(ld, blk, prefix, key, &v) <= 0)
        return;
    if (!*v) {
        cfg_fail(ld, cfg_member(blk, key), "%s: must not be empty",
                 cfg_keypath(kp, sizeof kp, prefix, key));
        return;
    }
    d = is_path ? cfg_resolve_path(ld, v) : cfg_strdup(ld, v);
    if (d) {
        free(*field);
        *field = d;
    }
}

/* "FILE:LINE" of setting s, for the messages of the tls layer, which loads
 * the files only when the runtime is built; NULL when out of memory
 * (recorded). */
static char *where(struct loader *ld, const config_setting_t *s)
{
    const char *file = config_setting_source_file(s) ? config_setting_source_file(s) : ld->name;
    size_t len = strlen(file) + 16;
    char *w = malloc(len);

    if (!w) {
        ld->oom = true;
        return NULL;
    }
    snprintf(w, len, "%s:%u", file, config_setting_source_line(s));
    return w;
}

/* The places of the n file names at s (one string, or a list). */
static char **where_files(struct loader *ld, const config_setting_t *s, size_t n)
{
    bool single = config_setting_type(s) == CONFIG_TYPE_STRING;
    char **v = calloc(n, sizeof *v);

    if (!v) {
        ld->oom = true;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        v[i] = where(ld, single ? s : config_setting_get_elem(s, (unsigned)i));
        if (!v[i]) {
            cfg_free_strings(v, i);
            return NULL;
        }
    }
    return v;
}

/* tls.ticket_keys: a readable file, resolved, with its place. */
static void set_ticket_keys(struct loader *ld, const config_setting_t *blk, const char *prefix,
                            struct tls_options *t)
{
    const config_setting_t *s = cfg_member(blk, "ticket_keys");
    char kp[PATH_LEN];
    char *path = NULL, *at = NULL;
    const char *v;
    int rc;

    if (cfg_get_string(ld, blk, prefix, "ticket_keys", &v) <= 0)
        return;
    cfg_keypath(kp, sizeof kp, prefix, "ticket_keys");
    if (!*v) {
        cfg_fail(ld, s, "%s: must not be empty", kp);
        return;
    }
    path = cfg_resolve_path(ld, v);
    if (!path)
        return;
    rc = cfg_check_readable(path);
    if (rc < 0) {
        cfg_fail_unreadable(ld, s, kp, v, path, rc, NULL);
        free(path);
        return;
    }
    at = where(ld, s);
    if (!at) {
        free(path);
        return;
    }
    free(t->ticket_keys);
    free(t->ticket_keys_at);
    t->ticket_keys = path;
    t->ticket_keys_at = at;
}

/* Applies the keys of one tls block over t (the defaults, or a listener's copy
 * of the global block). certificate and key are one unit: overriding only one
 * of them would pair a listener's certificate with the global block's key. */
void cfg_apply_tls(struct loader *ld, const config_setting_t *blk, const char *prefix,
                   struct tls_options *t)
{
    static const char *const keys[] = {"certificate", "key", "min_version", "ciphers", "ca_file",
                                       "ticket_keys", NULL};
    static const char *const versions[] = {"1.2", "1.3", NULL};
    const config_setting_t *cert = cfg_member(blk, "certificate"), *key = cfg_member(blk, "key");
    char kp[PATH_LEN], kp2[PATH_LEN];
    int ver;

    cfg_check_keys(ld, blk, prefix, keys);

    if (cert && !key) {
        cfg_fail(ld, cert, "%s: a certificate needs its key: set %s too",
                 cfg_keypath(kp, sizeof kp, prefix, "certificate"),
                 cfg_keypath(kp2, sizeof kp2, prefix, "key"));
    } else if (key && !cert) {
        cfg_fail(ld, key, "%s: a key needs its certificate: set %s too",
                 cfg_keypath(kp, sizeof kp, prefix, "key"),
                 cfg_keypath(kp2, sizeof kp2, prefix, "certificate"));
    } else if (cert && key) {
        char **certs = NULL, **keyv = NULL;
        size_t ncerts = 0, nkeys = 0;
        int rc1 = cfg_get_files(ld, cert, cfg_keypath(kp, sizeof kp, prefix, "certificate"), &certs,
                                &ncerts);
        int rc2 = cfg_get_files(ld, key, cfg_keypath(kp2, sizeof kp2, prefix, "key"), &keyv, &nkeys);

        if (rc1 == 0 && rc2 == 0 && ncerts != nkeys) {
            cfg_fail(ld, key, "%s: %zu key file%s for %zu certificate%s (they pair up in order)", kp2,
                     nkeys, nkeys == 1 ? "" : "s", ncerts, ncerts == 1 ? "" : "s");
            rc1 = -1;
        }
        if (rc1 == 0 && rc2 == 0) {
            cfg_free_strings(t->certificates, t->ncertificates);
            cfg_free_strings(t->keys, t->nkeys);
            cfg_free_strings(t->certificate_at, t->ncertificates);
            cfg_free_strings(t->key_at, t->nkeys);
            t->certificates = certs;
            t->ncertificates = ncerts;
            t->keys = keyv;
            t->nkeys = nkeys;
            /* Where each file is named, so that the tls layer's messages
             * about a file (a key that does not match its certificate) carry
             * FILE:LINE too. */
            t->certificate_at = where_files(ld, cert, ncerts);
            t->key_at = where_files(ld, key, nkeys);
        } else {
            cfg_free_strings(certs, ncerts);
            cfg_free_strings(keyv, nkeys);
        }
    }

    if (cfg_get_enum(ld, blk, prefix, "min_version", versions, &ver) > 0)
        t->min_version = ver == 0 ? 12 : 13;

    set_nonempty(ld, blk, prefix, "ciphers", false, &t->ciphers);
    /* Only named here; whether it is readable matters only to an outbound
     * listener that verifies, see check_ca_file(). */
    set_nonempty(ld, blk, prefix, "ca_file", true, &t->ca_file);
    set_ticket_keys(ld, blk, prefix, t);
}

/* The listener's copy of the global block, with its own overrides on top. */
void cfg_listener_tls(struct loader *ld, const config_setting_t *g, const char *prefix,
                      struct tls_options *t)
{
    const config_setting_t *blk = cfg_get_group(ld, g, prefix, "tls");
    char kp[PATH_LEN];

    if (blk)
        cfg_apply_tls(ld, blk, cfg_keypath(kp, sizeof kp, prefix, "tls"), t);
}
