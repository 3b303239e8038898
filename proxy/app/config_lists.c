/*
 * Listener keys whose values are lists: ehlo_keywords and
 * proxy_protocol_from. Part of the configuration loader (config_int.h).
 */
#include "proxy/app/config_int.h"

#include <stdlib.h>
#include <string.h>

#include "proxy/core/smtp.h"
#include "proxy/policy/rules.h"

/* One list of EHLO keywords, "pass" or "discard" in an ehlo_keywords block:
 * a new array of new strings in *out (freed by config_free). */
static void load_keyword_list(struct loader *ld, const config_setting_t *blk, const char *kp,
                              const char *key, const char *const **out, size_t *nout)
{
    const config_setting_t *s = cfg_member(blk, key);
    char path[PATH_LEN];

    if (s == NULL)
        return;
    cfg_keypath(path, sizeof path, kp, key);
    if (config_setting_type(s) != CONFIG_TYPE_ARRAY && config_setting_type(s) != CONFIG_TYPE_LIST) {
        cfg_fail(ld, s, "%s: expected a list of keywords, e.g. [ \"DELIVERBY\" ]", path);
        return;
    }
    size_t n = (size_t)config_setting_length(s);
    char **v = calloc(n + 1, sizeof(*v));
    if (v == NULL) {
        ld->oom = true;
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const char *w = config_setting_get_string(e);
        char q[96];

        if (w == NULL) {
            cfg_fail(ld, e, "%s[%zu]: expected a string", path, i);
        } else if (!smtp_ehlo_keyword_configurable(w)) {
            cfg_fail(ld, e,
                     "%s: \"%s\" is not an EHLO keyword the configuration may change (the "
                     "proxy owns STARTTLS, AUTH, REQUIRETLS, XCLIENT and XFORWARD)",
                     path, cfg_shown(w, q, sizeof q));
        } else if ((v[k] = cfg_strdup(ld, w)) != NULL) {
            k++;
        }
    }
    *out = (const char *const *)v;
    *nout = k;
}

/* ehlo_keywords = { pass = [ ... ]; discard = [ ... ]; }: changes to the
 * built-in allowlist of EHLO keywords relayed to the client. */
void cfg_load_ehlo_keywords(struct loader *ld, const config_setting_t *g, const char *prefix,
                               struct smtp_ehlo_policy *pol)
{
    static const char *const keys[] = {"pass", "discard", NULL};
    const config_setting_t *blk = cfg_get_group(ld, g, prefix, "ehlo_keywords");
    char kp[PATH_LEN];

    if (!blk)
        return;
    cfg_keypath(kp, sizeof kp, prefix, "ehlo_keywords");
    cfg_check_keys(ld, blk, kp, keys);
    load_keyword_list(ld, blk, kp, "pass", &pol->pass, &pol->npass);
    load_keyword_list(ld, blk, kp, "discard", &pol->discard, &pol->ndiscard);
}

void cfg_free_keywords(struct smtp_ehlo_policy *pol)
{
    cfg_free_strings((char **)pol->pass, pol->npass);
    cfg_free_strings((char **)pol->discard, pol->ndiscard);
}

/* proxy_protocol_from: one address/CIDR or a list of them, the load
 * balancers allowed to send PROXY headers. */
void cfg_load_proxy_from(struct loader *ld, const config_setting_t *g, const char *prefix,
                            struct session_inbound_opts *o)
{
    const config_setting_t *s = cfg_member(g, "proxy_protocol_from");
    char kp[PATH_LEN];

    if (s == NULL)
        return;
    cfg_keypath(kp, sizeof kp, prefix, "proxy_protocol_from");
    bool single = config_setting_type(s) == CONFIG_TYPE_STRING;
    if (!single && (config_setting_type(s) != CONFIG_TYPE_ARRAY && config_setting_type(s) != CONFIG_TYPE_LIST)) {
        cfg_fail(ld, s, "%s: expected an address or network, or a list of them, e.g. "
                 "[ \"10.0.0.0/8\", \"192.0.2.1\" ]", kp);
        return;
    }
    size_t n = single ? 1 : (size_t)config_setting_length(s);
    if (n == 0) {
        cfg_fail(ld, s, "%s: must not be empty (leave it out to accept PROXY headers from any peer)", kp);
        return;
    }
    o->proxy_from = calloc(n, sizeof(*o->proxy_from));
    if (o->proxy_from == NULL) {
        ld->oom = true;
        return;
    }
    for (size_t k = 0; k < n; k++) {
        const config_setting_t *e = single ? s : config_setting_get_elem(s, (unsigned)k);
        const char *text = e ? config_setting_get_string(e) : NULL;
        char why[256], q[96];
        struct policy_rule r;

        memset(&r, 0, sizeof r);
        if (text == NULL) {
            cfg_fail(ld, e ? e : s, "%s[%zu]: expected a string", kp, k);
            continue;
        }
        if (policy_rule_parse(text, cfg_shown(text, q, sizeof q), &r, why, sizeof why) < 0) {
            cfg_fail(ld, e, "%s: %s", kp, why);
            continue;
        }
        if (!r.is_net) {
            cfg_fail(ld, e, "%s: \"%s\" is not an IP address or CIDR network", kp, q);
            continue;
        }
        o->proxy_from[o->nproxy_from++] = r;
    }
}
