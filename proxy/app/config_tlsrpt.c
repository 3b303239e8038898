/*
 * The tls_rpt block (DESIGN.md "Contract, second part"): RFC 8460 aggregate
 * reports about the proxy's outbound TLS, and the outbound listeners'
 * tls_rpt switch that records their results.
 *
 *     tls_rpt = { organization = "Example Inc"; contact = "postmaster@example.org";
 *                 directory = "/var/lib/smtp-tls-proxy/tls-rpt"; submit = "127.0.0.1:25"; };
 *
 * contact (required) is the report's contact-info and the sender of mailed
 * reports; its domain is the report's submitter. directory (required) must
 * be writable, or be missing from a writable directory (the runtime makes
 * it): the results are appended there by every worker. submit (default 127.0.0.1:25) is the SMTP
 * server that mailto: reports are handed to. organization defaults to the contact's domain.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy/app/config_int.h"

#define TLS_RPT_ORG_MAX 256
#define TLS_RPT_CONTACT_MAX 254

/* An addr-spec simple enough to go into MAIL FROM, a From field and the
 * JSON as it is: dot-atom local part, "@", a host name (RFC 5322 §3.4.1). */
static bool contact_ok(const char *s)
{
    const char *at = strchr(s, '@');
    size_t n = strlen(s);

    if (n == 0 || n > TLS_RPT_CONTACT_MAX || at == NULL || at == s || strchr(at + 1, '@'))
        return false;
    for (const char *p = s; p < at; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || strchr("()<>[]:;@\\,\"", *p))
            return false;
    for (const char *p = at + 1; *p != '\0'; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
            return false; /* lower case: it names the submitter and files */
    return addr_valid_hostname(at + 1) && at[1] != '\0' && s[n - 1] != '.';
}

static bool org_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > TLS_RPT_ORG_MAX)
        return false;
    for (const char *p = s; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

/* 0 when path is a directory this process can write into, or is missing
 * from one it can (the runtime makes it: loading a configuration changes
 * nothing on disk), else -errno. (Started as root with user set, the check
 * is root's: the directory's owner then decides.) */
static int usable_dir(const char *path)
{
    struct stat st;
    char parent[4096];

    if (stat(path, &st) != 0) {
        if (errno != ENOENT)
            return -errno;
        const char *slash = strrchr(path, '/');
        if (slash == NULL || (size_t)(slash - path) >= sizeof(parent))
            return -ENOENT;
        snprintf(parent, sizeof(parent), "%.*s", slash == path ? 1 : (int)(slash - path), path);
        if (stat(parent, &st) != 0)
            return -errno;
        path = parent;
    }
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    return access(path, W_OK | X_OK) == 0 ? 0 : -errno;
}

void cfg_load_tls_rpt(struct loader *ld, const config_setting_t *root)
{
    static const char *const keys[] = {"organization", "contact", "directory", "submit", NULL};
    static const char *const required[] = {"contact", "directory", NULL};
    struct config_tls_rpt *t = &ld->c->tls_rpt;
    const config_setting_t *blk = cfg_get_group(ld, root, "", "tls_rpt");
    const char *org = NULL, *contact = NULL, *dir = NULL;
    char why[256], shown[300];
    int rc;

    if (blk == NULL)
        return;
    t->line = (int)config_setting_source_line(blk);
    cfg_check_keys(ld, blk, "tls_rpt", keys);
    cfg_check_required(ld, blk, "tls_rpt", required);
    if (cfg_get_string(ld, blk, "tls_rpt", "contact", &contact) > 0) {
        if (!contact_ok(contact))
            cfg_fail(ld, cfg_member(blk, "contact"),
                     "tls_rpt.contact: \"%s\" is not an address of the form local@domain "
                     "(lower-case host name, no spaces, quotes or angle brackets)",
                     cfg_shown(contact, shown, sizeof shown));
        else
            t->contact = cfg_strdup(ld, contact);
    }
    if (cfg_get_string(ld, blk, "tls_rpt", "organization", &org) > 0) {
        if (!org_ok(org))
            cfg_fail(ld, cfg_member(blk, "organization"),
                     "tls_rpt.organization: expected 1 to %d characters, no control characters",
                     TLS_RPT_ORG_MAX);
        else
            t->organization = cfg_strdup(ld, org);
    } else if (t->contact != NULL) {
        t->organization = cfg_strdup(ld, strchr(t->contact, '@') + 1);
    }
    if (cfg_get_string(ld, blk, "tls_rpt", "directory", &dir) > 0) {
        t->directory = cfg_resolve_path(ld, dir);
        if (t->directory != NULL && (rc = usable_dir(t->directory)) < 0)
            cfg_fail(ld, cfg_member(blk, "directory"),
                     "tls_rpt.directory: \"%s\" cannot be used for the day's results: %s "
                     "(it must be a directory this process can create and write)",
                     cfg_shown(t->directory, shown, sizeof shown), strerror(-rc));
    }
    if (cfg_get_addr(ld, blk, "tls_rpt", "submit", false, &t->submit) == 0 &&
        cfg_parse_addr("127.0.0.1:25", false, &t->submit, why, sizeof why) < 0)
        ld->oom = true;
    t->enabled = true;
}

/* outbound[i].tls_rpt = true records into the tls_rpt block's directory:
 * an error at that key when there is no block. */
void cfg_check_tls_rpt(struct loader *ld, const config_setting_t *out)
{
    for (size_t i = 0; i < ld->c->noutbound; i++) {
        const config_setting_t *at =
            cfg_member(config_setting_get_elem(out, (unsigned)i), "tls_rpt");
        if (ld->c->outbound[i].tls_rpt && !ld->c->tls_rpt.enabled)
            cfg_fail(ld, at,
                     "outbound[%zu].tls_rpt: results are recorded into tls_rpt.directory, "
                     "but there is no tls_rpt block: add tls_rpt = { contact = \"...\"; "
                     "directory = \"...\"; }",
                     i);
    }
}

void cfg_tls_rpt_clear(struct config_tls_rpt *t)
{
    free(t->organization);
    free(t->contact);
    free(t->directory);
    memset(t, 0, sizeof(*t));
}
