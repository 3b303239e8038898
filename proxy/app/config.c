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
 *
 * This file is the root of the loader: load(), the defaults, config_free and
 * the sections (top level, inbound, outbound and its policies). The error
 * collection, typed getters and file checks are in config_values.c, the tls
 * blocks in config_tls.c; config_int.h holds what they share.
 */
#include "proxy/app/config.h"
#include "proxy/core/smtp.h"
#include "proxy/policy/rules.h"

#include <errno.h>
#include <grp.h>
#include <libgen.h>
#include <pwd.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libconfig.h>

#include "proxy/app/config_int.h"

#define MAX_WORKERS 1024
/* RFC 5321's 512 at least; at most what a leg buffers of one line. */
#define MIN_COMMAND_LINE 512
#define MAX_COMMAND_LINE 32768
#define MAX_TIMEOUT 86400 /* a day: anything longer is a typo, not a policy */
#define MAX_SHUTDOWN 86400
#define MAX_CONNECTIONS 1000000
#define MAX_NAME 64

static const char *const log_level_names[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_format_names[] = {"text", "json", NULL};
static const char *const tls_mode_names[] = {"starttls", "implicit", NULL};
static const char *const client_info_names[] = {"none", "xclient", "proxy-v1", "proxy-v2",
                                                NULL};
static const char *const bare_newline_names[] = {"normalize", "reject", NULL};
static const char *const policy_names[] = {"none", "opportunistic", "required", "verify", NULL};

/* ------------------------------------------------------------------------ */
/* Listeners                                                                */

static void timeouts_set(struct session_timeouts *t, unsigned connect, unsigned handshake,
                         unsigned idle)
{
    t->connect = connect;
    t->handshake = handshake;
    t->idle = idle;
    t->min_data_rate = 500; /* Postfix's smtpd_min_data_rate default */
}

static void load_timeouts(struct loader *ld, const config_setting_t *g, const char *prefix,
                          struct session_timeouts *t)
{
    static const char *const keys[] = {"connect", "handshake", "idle", "min_data_rate", NULL};
    const config_setting_t *blk = cfg_get_group(ld, g, prefix, "timeouts");
    char kp[PATH_LEN];

    if (!blk)
        return;
    cfg_keypath(kp, sizeof kp, prefix, "timeouts");
    cfg_check_keys(ld, blk, kp, keys);
    cfg_get_uint(ld, blk, kp, "connect", 1, MAX_TIMEOUT, &t->connect);
    cfg_get_uint(ld, blk, kp, "handshake", 1, MAX_TIMEOUT, &t->handshake);
    cfg_get_uint(ld, blk, kp, "idle", 1, MAX_TIMEOUT, &t->idle);
    cfg_get_uint(ld, blk, kp, "min_data_rate", 0, 1000000000, &t->min_data_rate);
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
    const config_setting_t *s = cfg_member(g, "name");
    const char *v;
    char kp[PATH_LEN], q[96];
    struct listener_ref ref;

    if (cfg_get_string(ld, g, prefix, "name", &v) <= 0)
        return;
    cfg_keypath(kp, sizeof kp, prefix, "name");
    if (!*v || strlen(v) > MAX_NAME) {
        cfg_fail(ld, s, "%s: must be 1 to %d characters long", kp, MAX_NAME);
        return;
    }
    if (strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
        strlen(v)) {
        cfg_fail(ld, s,
                 "%s: \"%s\" may contain only letters, digits, '.', '_' and '-' "
                 "(it appears in logs and metric labels)",
                 kp, cfg_shown(v, q, sizeof q));
        return;
    }
    for (size_t k = 0; k < ld->c->ninbound + ld->c->noutbound; k++) {
        if (!find_ref(ld->c, what, self, k, &ref) || !ref.name)
            continue;
        if (strcmp(ref.name, v) == 0) {
            cfg_fail(ld, s, "%s: \"%s\" is already used by %s[%zu] (line %d)", kp, v, ref.what,
                     ref.index, ref.line);
            return;
        }
    }
    *out = cfg_strdup(ld, v);
}

/* listen: an IP literal, and no two listeners (nor the metrics endpoint) may
 * bind overlapping sockets. */
static void load_listen(struct loader *ld, const config_setting_t *g, const char *what,
                        size_t self, const char *prefix, struct addr *out)
{
    struct addr a;
    struct listener_ref ref;
    char kp[PATH_LEN], t1[300], t2[300];

    if (cfg_get_addr(ld, g, prefix, "listen", false, &a) <= 0)
        return;
    cfg_keypath(kp, sizeof kp, prefix, "listen");
    for (size_t k = 0; k < ld->c->ninbound + ld->c->noutbound; k++) {
        int clash;

        if (!find_ref(ld->c, what, self, k, &ref))
            continue;
        clash = cfg_addr_clash(&a, ref.listen);
        if (clash == 1) {
            cfg_fail(ld, cfg_member(g, "listen"), "%s: \"%s\" is already used by %s[%zu] (line %d)", kp,
                     addr_format_spec(&a, a.port, t1, sizeof t1), ref.what, ref.index, ref.line);
            return;
        }
        if (clash == 2) {
            cfg_fail(ld, cfg_member(g, "listen"), "%s: \"%s\" overlaps \"%s\" of %s[%zu] (line %d)", kp,
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

    if (cfg_addr_clash(listen, target) == 1)
        cfg_fail(ld, cfg_member(g, key), "%s: same address as listen: the proxy would connect to itself",
                 cfg_keypath(kp, sizeof kp, prefix, key));
}

static void inbound_defaults(struct config_inbound *in)
{
    in->opts.tls_mode = SESSION_TLS_STARTTLS;
    in->opts.backend_client_info = SESSION_CLIENT_INFO_NONE;
    in->opts.bare_newline = SESSION_BARE_NEWLINE_NORMALIZE;
    in->opts.max_connections = 10000;
    in->opts.max_command_line = SMTP_CMD_LINE_MAX;
    timeouts_set(&in->opts.timeouts, 10, 30, 300);
}

/* What every listener entry starts with, inbound or outbound: its key path
 * ("inbound[2]") in prefix (PATH_LEN), its line, a copy of the global tls
 * block, the key checks, its name and its listen address. false when the
 * entry is not even a group (reported). */
static bool load_listener_common(struct loader *ld, const config_setting_t *g, const char *what,
                                 size_t i, const char *const *keys, const char *const *required,
                                 char *prefix, int *line, struct tls_options *tls, char **name,
                                 struct addr *listen)
{
    snprintf(prefix, PATH_LEN, "%s[%zu]", what, i);
    *line = (int)config_setting_source_line(g);
    if (cfg_tls_copy(tls, &ld->c->tls) < 0)
        ld->oom = true;
    if (!config_setting_is_group(g)) {
        cfg_fail(ld, g, "%s: expected a group { ... }", prefix);
        return false;
    }
    cfg_check_keys(ld, g, prefix, keys);
    cfg_check_required(ld, g, prefix, required);
    load_name(ld, g, what, i, prefix, name);
    load_listen(ld, g, what, i, prefix, listen);
    return true;
}

static void load_inbound(struct loader *ld, const config_setting_t *g, size_t i)
{
    static const char *const keys[] = {"name", "listen", "backend", "tls_mode", "require_tls",
                                       "proxy_protocol", "proxy_protocol_from",
                                       "backend_client_info", "bare_newline",
                                       "received_header", "max_connections", "max_command_line",
                                       "ehlo_keywords",
                                       "timeouts", "tls", NULL};
    static const char *const required[] = {"name", "listen", "backend", NULL};
    struct config_inbound *in = &ld->c->inbound[i];
    char prefix[PATH_LEN];
    int v;

    inbound_defaults(in);
    if (!load_listener_common(ld, g, "inbound", i, keys, required, prefix, &in->line, &in->tls,
                              &in->name, &in->listen))
        return;
    if (cfg_get_addr(ld, g, prefix, "backend", false, &in->opts.backend) > 0)
        check_not_self(ld, g, prefix, "backend", &in->listen, &in->opts.backend);
    if (cfg_get_enum(ld, g, prefix, "tls_mode", tls_mode_names, &v) > 0)
        in->opts.tls_mode = (enum session_tls_mode)v;
    cfg_get_bool(ld, g, prefix, "require_tls", &in->opts.require_tls);
    cfg_get_bool(ld, g, prefix, "proxy_protocol", &in->opts.proxy_protocol);
    cfg_load_proxy_from(ld, g, prefix, &in->opts);
    if (cfg_get_enum(ld, g, prefix, "backend_client_info", client_info_names, &v) > 0)
        in->opts.backend_client_info = (enum session_client_info)v;
    if (cfg_get_enum(ld, g, prefix, "bare_newline", bare_newline_names, &v) > 0)
        in->opts.bare_newline = (enum session_bare_newline)v;
    cfg_get_bool(ld, g, prefix, "received_header", &in->opts.received_header);
    cfg_get_uint(ld, g, prefix, "max_connections", 1, MAX_CONNECTIONS, &in->opts.max_connections);
    cfg_get_uint(ld, g, prefix, "max_command_line", MIN_COMMAND_LINE, MAX_COMMAND_LINE,
                 &in->opts.max_command_line);
    cfg_load_ehlo_keywords(ld, g, prefix, &in->opts.ehlo_keywords);
    load_timeouts(ld, g, prefix, &in->opts.timeouts);
    cfg_listener_tls(ld, g, prefix, &in->tls);
}

/* ------------------------------------------------------------------------ */
/* Outbound policy rules                                                    */

static void load_policies(struct loader *ld, const config_setting_t *g, const char *prefix,
                          struct config_outbound *o)
{
    static const char *const keys[] = {"match", "policy", NULL};
    bool bad;
    const config_setting_t *list = cfg_get_list(ld, g, prefix, "policies", &bad);
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
            cfg_fail(ld, e, "%s: expected a group { match = ...; policy = ...; }", rp);
            continue;
        }
        cfg_check_keys(ld, e, rp, keys);
        cfg_check_required(ld, e, rp, (const char *const[]){"match", "policy", NULL});
        /* Both looked at before giving up, so both can be reported. */
        bool policy_ok = cfg_get_enum(ld, e, rp, "policy", policy_names, &v) > 0;
        bool match_ok = cfg_get_string(ld, e, rp, "match", &match) > 0;

        if (!policy_ok || !match_ok)
            continue;
        cfg_keypath(kp, sizeof kp, rp, "match");
        char shown_match[96];
        if (policy_rule_parse(match, cfg_shown(match, shown_match, sizeof shown_match), &r, why,
                              sizeof why) < 0) {
            cfg_fail(ld, cfg_member(e, "match"), "%s: %s", kp, why);
            continue;
        }
        r.policy = (enum outbound_policy)v;
        r.match = cfg_strdup(ld, match);
        if (!r.match)
            continue;
        for (size_t k = 0; k < o->opts.policy.nrules; k++) {
            if (policy_rule_same(&o->opts.policy.rules[k], &r)) {
                cfg_fail(ld, cfg_member(e, "match"), "%s: \"%s\" repeats %s.policies[%zu] (\"%s\")", kp,
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
    const config_setting_t *own = cfg_member(cfg_member(g, "tls"), "ca_file");
    const config_setting_t *global = cfg_member(ld->global_tls, "ca_file");
    char kp[PATH_LEN], extra[PATH_LEN + 64];
    int rc;

    if (!policy_table_verifies(&o->opts.policy))
        return;
    rc = cfg_check_readable(o->tls.ca_file);
    if (rc == 0)
        return;
    snprintf(extra, sizeof extra, " (needed by policy \"verify\" in %s)", prefix);
    if (own) {
        if (config_setting_type(own) == CONFIG_TYPE_STRING && *config_setting_get_string(own))
            cfg_fail_unreadable(ld, own, cfg_keypath(kp, sizeof kp, prefix, "tls.ca_file"),
                                config_setting_get_string(own), o->tls.ca_file, rc, extra);
    } else if (global) {
        if (!ld->global_ca_checked && config_setting_type(global) == CONFIG_TYPE_STRING &&
            *config_setting_get_string(global))
            cfg_fail_unreadable(ld, global, "tls.ca_file", config_setting_get_string(global),
                                o->tls.ca_file, rc, extra);
        ld->global_ca_checked = true;
    } else if (!ld->default_ca_checked) {
        cfg_fail(ld, g,
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
    o->opts.enforce = true;
    o->opts.max_connections = 10000;
    o->opts.max_command_line = SMTP_CMD_LINE_MAX;
    timeouts_set(&o->opts.timeouts, 30, 30, 300);
}

static void load_outbound(struct loader *ld, const config_setting_t *g, size_t i)
{
    static const char *const keys[] = {"name",     "listen",          "destination",
                                       "policy",   "policies",        "max_connections",
                                       "max_command_line", "ehlo_keywords", "timeouts", "tls",
                                       "dane",     "enforce",         "tls_rpt",
                                       "mta_sts", NULL};
    static const char *const required[] = {"name", "listen", NULL};
    struct config_outbound *o = &ld->c->outbound[i];
    char prefix[PATH_LEN];
    const char *dest;
    int v;

    outbound_defaults(o);
    if (!load_listener_common(ld, g, "outbound", i, keys, required, prefix, &o->line, &o->tls,
                              &o->name, &o->listen))
        return;
    if (cfg_get_string(ld, g, prefix, "destination", &dest) > 0 && strcmp(dest, "original") != 0) {
        char why[256], kp[PATH_LEN];

        if (cfg_parse_addr(dest, true, &o->opts.destination, why, sizeof why) < 0) {
            cfg_fail(ld, cfg_member(g, "destination"), "%s: expected \"original\" or \"host:port\": %s",
                     cfg_keypath(kp, sizeof kp, prefix, "destination"), why);
        } else {
            o->opts.original_dst = false;
            check_not_self(ld, g, prefix, "destination", &o->listen, &o->opts.destination);
        }
    }
    if (cfg_get_enum(ld, g, prefix, "policy", policy_names, &v) > 0)
        o->opts.policy.fallback = (enum outbound_policy)v;
    load_policies(ld, g, prefix, o);
    cfg_get_bool(ld, g, prefix, "dane", &o->opts.dane);
    cfg_get_bool(ld, g, prefix, "mta_sts", &o->opts.mta_sts);
    cfg_get_bool(ld, g, prefix, "enforce", &o->opts.enforce);
    cfg_get_bool(ld, g, prefix, "tls_rpt", &o->tls_rpt);
    cfg_get_uint(ld, g, prefix, "max_connections", 1, MAX_CONNECTIONS, &o->opts.max_connections);
    cfg_get_uint(ld, g, prefix, "max_command_line", MIN_COMMAND_LINE, MAX_COMMAND_LINE,
                 &o->opts.max_command_line);
    cfg_load_ehlo_keywords(ld, g, prefix, &o->opts.ehlo_keywords);
    load_timeouts(ld, g, prefix, &o->opts.timeouts);
    cfg_listener_tls(ld, g, prefix, &o->tls);
    check_ca_file(ld, g, prefix, o);
}

/* DANE without DNSSEC validation would trust any forged TLSA record: an
 * error at the dane key, once the resolver block is known. */
static void check_dane(struct loader *ld, const config_setting_t *out)
{
    for (size_t i = 0; out != NULL && i < ld->c->noutbound; i++) {
        const config_setting_t *at = cfg_member(config_setting_get_elem(out, (unsigned)i), "dane");

        if (ld->c->outbound[i].opts.dane && ld->c->resolver.dnssec == RESOLVER_DNSSEC_OFF)
            cfg_fail(ld, at,
                     "outbound[%zu].dane: DANE needs DNSSEC-validated TLSA records, "
                     "but resolver.dnssec is \"off\": set it to \"validate\"",
                     i);
    }
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
    cfg_resolver_defaults(&c->resolver);
    return cfg_tls_defaults(&c->tls);
}

/* user and group (DESIGN.md "Contract, second part"), looked up now so that
 * a typo is a FILE:LINE error at `-t` and not a failure after binding. */
static void load_identity(struct loader *ld, const config_setting_t *root)
{
    struct config *c = ld->c;
    const char *user = NULL, *group = NULL;
    int hu = cfg_get_string(ld, root, "", "user", &user);
    int hg = cfg_get_string(ld, root, "", "group", &group);
    char buf[16384], shown[128];
    struct passwd pw, *pwp = NULL;
    struct group gr, *grp = NULL;

    if (hu < 0 || hg < 0)
        return;
    if (hg > 0 && hu == 0) {
        cfg_fail(ld, cfg_member(root, "group"), "group: \"%s\" is set without user: set user "
                 "too (the account to run as after binding)", cfg_shown(group, shown, sizeof shown));
        return;
    }
    if (hu == 0)
        return;
    if (user[0] == '\0' || getpwnam_r(user, &pw, buf, sizeof buf, &pwp) != 0 || pwp == NULL) {
        cfg_fail(ld, cfg_member(root, "user"), "user: unknown user \"%s\"",
                 cfg_shown(user, shown, sizeof shown));
        return;
    }
    c->uid = pw.pw_uid;
    c->gid = pw.pw_gid;
    if (hg > 0) {
        if (group[0] == '\0' || getgrnam_r(group, &gr, buf, sizeof buf, &grp) != 0 ||
            grp == NULL) {
            cfg_fail(ld, cfg_member(root, "group"), "group: unknown group \"%s\"",
                     cfg_shown(group, shown, sizeof shown));
            return;
        }
        c->gid = gr.gr_gid;
    } else if (getgrgid_r(c->gid, &gr, buf, sizeof buf, &grp) == 0 && grp != NULL) {
        group = gr.gr_name;
    } else {
        snprintf(shown, sizeof shown, "%u", (unsigned)c->gid);
        group = shown;
    }
    c->user = cfg_strdup(ld, user);
    c->group = cfg_strdup(ld, group);
    c->drop_privileges = true;
}

static void load_root(struct loader *ld, const config_setting_t *root)
{
    static const char *const keys[] = {"workers",          "log_level", "log_format",
                                       "metrics_listen",   "tls",       "inbound",
                                       "outbound",         "shutdown_timeout", "user",
                                       "group",            "resolver", "tls_rpt",
                                       "mta_sts", NULL};
    struct config *c = ld->c;
    const config_setting_t *in, *out;
    bool bad_in, bad_out;
    struct listener_ref ref;
    int v;

    cfg_check_keys(ld, root, "", keys);
    cfg_get_uint(ld, root, "", "workers", 0, MAX_WORKERS, &c->workers);
    if (cfg_get_enum(ld, root, "", "log_level", log_level_names, &v) > 0)
        c->log_level = (enum log_level)v;
    if (cfg_get_enum(ld, root, "", "log_format", log_format_names, &v) > 0)
        c->log_format = (enum log_format)v;
    if (cfg_get_addr(ld, root, "", "metrics_listen", false, &c->metrics_listen) > 0)
        c->metrics_enabled = true;
    cfg_get_uint(ld, root, "", "shutdown_timeout", 0, MAX_SHUTDOWN, &c->shutdown_timeout);
    load_identity(ld, root);

    /* Before the listeners: each of them starts from a copy of this block. */
    ld->global_tls = cfg_get_group(ld, root, "", "tls");
    if (ld->global_tls)
        cfg_apply_tls(ld, ld->global_tls, "tls", &c->tls);

    in = cfg_get_list(ld, root, "", "inbound", &bad_in);
    out = cfg_get_list(ld, root, "", "outbound", &bad_out);
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
    cfg_load_tls_rpt(ld, root); /* before the resolver: its lookups need a trust anchor */
    cfg_load_resolver(ld, root);
    check_dane(ld, out);
    cfg_check_tls_rpt(ld, out);
    cfg_load_mta_sts(ld, root, out);

    /* A proxy with nothing to listen on would start and do nothing, which is
     * never what the file meant. Not said again when a broken inbound or
     * outbound key has already been reported. */
    if (c->ninbound + c->noutbound == 0 && !bad_in && !bad_out) {
        const char *msg = "no listeners: define at least one inbound or outbound listener";

        /* At the empty list if there is one, else at the top of the file. */
        if (in || out)
            cfg_fail(ld, in ? in : out, "%s", msg);
        else
            cfg_fail_line(ld, NULL, 1, "%s", msg);
    }

    if (c->metrics_enabled) {
        for (size_t k = 0; k < c->ninbound + c->noutbound; k++) {
            char t1[300], t2[300];

            if (find_ref(c, "", 0, k, &ref) && cfg_addr_clash(&c->metrics_listen, ref.listen)) {
                cfg_fail(ld, cfg_member(root, "metrics_listen"),
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
        cfg_fail_line(&ld, config_error_file(&lc), config_error_line(&lc), "%s",
                      config_error_text(&lc));
    } else {
        load_root(&ld, config_root_setting(&lc));
    }
    /* The messages borrow libconfig's file names: write them out first. */
    rc = ld.oom ? -ENOMEM : ld.nerrors ? -EINVAL : 0;
    cfg_flush_errors(&ld, err, errlen);
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
    cfg_flush_errors(&ld, err, errlen);
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
    if (config_defaults(c) < 0 || !(c->file = strdup("(built-in)")) ||
        !(c->resolver.trust_anchor = strdup(RESOLVER_DEFAULT_TRUST_ANCHOR)))
        goto err;
    c->inbound = calloc(1, sizeof *c->inbound);
    if (!c->inbound)
        goto err;
    c->ninbound = 1;
    in = &c->inbound[0];
    inbound_defaults(in);
    in->line = 0;
    if (!(in->name = strdup("default")) || cfg_tls_copy(&in->tls, &c->tls) < 0)
        goto err;
    if (cfg_parse_addr("127.0.0.1:2525", false, &in->listen, why, sizeof why) < 0 ||
        cfg_parse_addr("127.0.0.1:25", false, &in->opts.backend, why, sizeof why) < 0)
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
        free(c->inbound[i].opts.proxy_from);
        cfg_free_keywords(&c->inbound[i].opts.ehlo_keywords);
        cfg_tls_clear(&c->inbound[i].tls);
    }
    for (size_t i = 0; c->outbound && i < c->noutbound; i++) {
        struct config_outbound *o = &c->outbound[i];

        free(o->name);
        for (size_t k = 0; k < o->opts.policy.nrules; k++)
            free(o->opts.policy.rules[k].match);
        free(o->opts.policy.rules);
        cfg_free_keywords(&o->opts.ehlo_keywords);
        cfg_tls_clear(&o->tls);
    }
    free(c->inbound);
    free(c->outbound);
    cfg_tls_clear(&c->tls);
    cfg_resolver_clear(&c->resolver);
    cfg_tls_rpt_clear(&c->tls_rpt);
    cfg_mta_sts_clear(&c->mta_sts);
    free(c->user);
    free(c->group);
    free(c->file);
    free(c);
}
