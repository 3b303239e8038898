/*
 * The mta_sts block (DESIGN.md "Contract, second part"):
 *
 *     mta_sts = { cache = "/var/lib/smtp-tls-proxy/mta-sts.cache";
 *                 ca_file = "/etc/ssl/certs/ca-certificates.crt";
 *                 redis = "127.0.0.1:6379"; };    (the fleet's shared cache)
 *
 * and the outbound listeners' `mta_sts = true` that use it. Without the
 * block the cache lives in memory and policy hosts are verified against
 * tls.ca_file (the global one), else the system bundle.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/app/config_int.h"

#define MTA_STS_DEFAULT_CA "/etc/ssl/certs/ca-certificates.crt"

/* The directory of path (absolute) can take the temporary file a crash-safe
 * write needs: 0, or -errno. */
static int check_dir(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t n = slash == NULL || slash == path ? 1 : (size_t)(slash - path);

    if (n >= sizeof(dir))
        return -ENAMETOOLONG;
    memcpy(dir, slash == NULL ? "." : path, n);
    dir[n] = '\0';
    return access(dir, W_OK | X_OK) == 0 ? 0 : -errno;
}

void cfg_load_mta_sts(struct loader *ld, const config_setting_t *root, const config_setting_t *out)
{
    static const char *const keys[] = {"cache", "ca_file", "redis", NULL};
    struct config_mta_sts *m = &ld->c->mta_sts;
    const config_setting_t *blk = cfg_get_group(ld, root, "", "mta_sts");
    const char *s;
    int user = 0, rc;

    for (size_t i = 0; out != NULL && i < ld->c->noutbound; i++)
        if (ld->c->outbound[i].opts.mta_sts && user == 0) {
            const config_setting_t *at =
                cfg_member(config_setting_get_elem(out, (unsigned)i), "mta_sts");
            user = at != NULL ? (int)config_setting_source_line(at) : ld->c->outbound[i].line;
        }
    m->enabled = user > 0;
    if (blk != NULL) {
        m->line = (int)config_setting_source_line(blk);
        cfg_check_keys(ld, blk, "mta_sts", keys);
        if (cfg_get_string(ld, blk, "mta_sts", "cache", &s) > 0) {
            if (*s == '\0') {
                cfg_fail(ld, cfg_member(blk, "cache"),
                         "mta_sts.cache: empty file name (leave "
                         "the key out to keep the cache in memory)");
            } else if ((m->cache = cfg_resolve_path(ld, s)) != NULL &&
                       (rc = check_dir(m->cache)) < 0) {
                cfg_fail(ld, cfg_member(blk, "cache"),
                         "mta_sts.cache: \"%s\": its directory is not writable: %s", m->cache,
                         strerror(-rc));
            }
        }
        if (cfg_get_string(ld, blk, "mta_sts", "ca_file", &s) > 0) {
            if ((m->ca_file = cfg_resolve_path(ld, s)) != NULL &&
                (rc = cfg_check_readable(m->ca_file)) < 0)
                cfg_fail_unreadable(ld, cfg_member(blk, "ca_file"), "mta_sts.ca_file", s,
                                    m->ca_file, rc, NULL);
        }
        if (cfg_get_string(ld, blk, "mta_sts", "redis", &s) > 0) {
            char why[256] = "";

            /* An address, never a name: hiredis would look it up with a
             * blocking getaddrinfo on a worker's loop. */
            if (cfg_parse_addr(s, false, &m->redis, why, sizeof(why)) < 0 || m->redis.port == 0)
                cfg_fail(ld, cfg_member(blk, "redis"),
                         "mta_sts.redis: expected \"address:port\" (an IP address): %s",
                         m->redis.port == 0 && why[0] == '\0' ? "port 0" : why);
            else
                m->has_redis = true;
        }
    }
    if (m->ca_file == NULL && !(blk != NULL && cfg_member(blk, "ca_file") != NULL)) {
        const char *dflt = ld->c->tls.ca_file != NULL ? ld->c->tls.ca_file : MTA_STS_DEFAULT_CA;

        if ((m->ca_file = cfg_strdup(ld, dflt)) != NULL && user > 0 &&
            (rc = cfg_check_readable(m->ca_file)) < 0)
            cfg_fail_line(ld, NULL, user,
                          "mta_sts: the policy fetch needs a CA file, and \"%s\" cannot be read: "
                          "%s (set mta_sts.ca_file)",
                          m->ca_file, strerror(-rc));
    }
}

void cfg_mta_sts_clear(struct config_mta_sts *m)
{
    free(m->cache);
    free(m->ca_file);
    memset(m, 0, sizeof(*m));
}
