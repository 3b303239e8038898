/*
 * config_int.h: what the files of the config loader share and nobody else
 * sees (in the srcs of //proxy/app:config, not its hdrs). config.c walks the
 * file section by section; config_values.c holds the error collection, the
 * typed getters and the file checks every section uses; config_tls.c the
 * tls blocks. The helpers carry the cfg_ prefix rather than config_, which
 * is libconfig's own (config_setting_*, config_read...): a reader can tell
 * ours from the library's at a glance.
 *
 * Every getter takes the group g to look in (NULL is an absent group), the
 * key path prefix of g for messages ("inbound[0]", "" at the top level) and
 * the key. Problems are recorded in the loader with the FILE:LINE of the
 * setting, never returned as text.
 */
#ifndef SMTP_TLS_PROXY_CONFIG_INT_H
#define SMTP_TLS_PROXY_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <libconfig.h>

#include "proxy/app/config.h"

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

/* ---- config_values.c: error collection ---------------------------------- */

/* Records a problem at setting s (its file and line; the loader's name and
 * no line when s is NULL). */
__attribute__((format(printf, 3, 4))) void
cfg_fail(struct loader *ld, const config_setting_t *s, const char *fmt, ...);

/* Records a problem at file:line (file NULL: the loader's name; line 0: the
 * whole file). */
__attribute__((format(printf, 4, 5))) void
cfg_fail_line(struct loader *ld, const char *file, int line, const char *fmt, ...);

/* Writes the recorded problems to err in file order, one per line, and
 * forgets them. */
void cfg_flush_errors(struct loader *ld, char *err, size_t errlen);

/* strdup that records running out of memory in ld. */
char *cfg_strdup(struct loader *ld, const char *s);

/* ---- config_values.c: text -------------------------------------------- */

/* prefix + "." + key into buf, which it returns. */
const char *cfg_keypath(char *buf, size_t len, const char *prefix, const char *key);

/* s made safe to quote in a message, in buf, which it returns. */
const char *cfg_shown(const char *s, char *buf, size_t len);

/* ---- config_values.c: addresses ---------------------------------------- */

/* "host:port" or "[v6]:port" into a, without DNS; host names are accepted
 * (left unresolved) only when names is true. -1 with a reason in why. */
int cfg_parse_addr(const char *text, bool names, struct addr *a, char *why, size_t whylen);

/* 1 when binds to x and y would use the same address and port, 2 when they
 * overlap through a wildcard address, else 0. */
int cfg_addr_clash(const struct addr *x, const struct addr *y);

/* ---- config_values.c: typed getters --------------------------------------
 * Each returns 1 when the key is present and valid, 0 when it is absent and
 * -1 when it is present but wrong (already reported). */

const config_setting_t *cfg_member(const config_setting_t *g, const char *key);
int cfg_get_string(struct loader *ld, const config_setting_t *g, const char *prefix,
                   const char *key, const char **out);
int cfg_get_uint(struct loader *ld, const config_setting_t *g, const char *prefix,
                 const char *key, long long min, long long max, unsigned *out);
int cfg_get_bool(struct loader *ld, const config_setting_t *g, const char *prefix,
                 const char *key, bool *out);
/* names: NULL-terminated, in the order of the enum's values. */
int cfg_get_enum(struct loader *ld, const config_setting_t *g, const char *prefix,
                 const char *key, const char *const *names, int *out);
int cfg_get_addr(struct loader *ld, const config_setting_t *g, const char *prefix,
                 const char *key, bool names, struct addr *out);
/* A nested group; NULL if absent or not a group (reported). */
const config_setting_t *cfg_get_group(struct loader *ld, const config_setting_t *g,
                                      const char *prefix, const char *key);
/* A list of groups; NULL if absent, or not a list (reported, *bad set). */
const config_setting_t *cfg_get_list(struct loader *ld, const config_setting_t *g,
                                     const char *prefix, const char *key, bool *bad);

/* Reports every key of g not in allowed (NULL-terminated). */
void cfg_check_keys(struct loader *ld, const config_setting_t *g, const char *prefix,
                    const char *const *allowed);
/* Reports every key of required (NULL-terminated) missing from g. */
void cfg_check_required(struct loader *ld, const config_setting_t *g, const char *prefix,
                        const char *const *required);

/* ---- config_values.c: files -------------------------------------------- */

/* path made absolute against the config file's directory; a new string,
 * NULL when out of memory (recorded). */
char *cfg_resolve_path(struct loader *ld, const char *path);

/* 0 if path can be opened for reading and is not a directory, else -errno. */
int cfg_check_readable(const char *path);

/* Reports that kp's file (as written, and as resolved) cannot be read: rc
 * is what cfg_check_readable returned; extra, if not NULL, is appended. */
void cfg_fail_unreadable(struct loader *ld, const config_setting_t *s, const char *kp,
                         const char *written, const char *resolved, int rc, const char *extra);

/* Frees n strings and the array; accepts NULL. */
void cfg_free_strings(char **v, size_t n);

/* One file name or a non-empty list of them at s, resolved and readable;
 * 0 with a new array in *out, or -1 (reported). */
int cfg_get_files(struct loader *ld, const config_setting_t *s, const char *kp, char ***out,
                  size_t *nout);

/* ---- config_lists.c ---------------------------------------------------- */

/* ehlo_keywords = { pass = [...]; discard = [...]; } of listener g into pol
 * (new strings, freed by cfg_free_keywords). */
void cfg_load_ehlo_keywords(struct loader *ld, const config_setting_t *g, const char *prefix,
                            struct smtp_ehlo_policy *pol);
void cfg_free_keywords(struct smtp_ehlo_policy *pol);

/* proxy_protocol_from of listener g into o (a new array, freed with free). */
void cfg_load_proxy_from(struct loader *ld, const config_setting_t *g, const char *prefix,
                         struct session_inbound_opts *o);

/* ---- config_tls.c ------------------------------------------------------ */

/* Frees what t owns and zeroes it. */
void cfg_tls_clear(struct tls_options *t);

/* The built-in tls defaults into t; -ENOMEM (t then for cfg_tls_clear). */
int cfg_tls_defaults(struct tls_options *t);

/* A deep copy of src into dst; -ENOMEM leaves dst cleared. */
int cfg_tls_copy(struct tls_options *dst, const struct tls_options *src);

/* Applies the keys of the tls block blk (at key path prefix) over t. */
void cfg_apply_tls(struct loader *ld, const config_setting_t *blk, const char *prefix,
                   struct tls_options *t);

/* Applies listener g's own tls block, if any, over t. */
void cfg_listener_tls(struct loader *ld, const config_setting_t *g, const char *prefix,
                      struct tls_options *t);

/* ---- config_resolver.c -------------------------------------------------- */

/* The built-in resolver settings: /etc/resolv.conf, dnssec = "validate". */
void cfg_resolver_defaults(struct resolver_options *r);

/* The top-level resolver block, after the listeners (whether the trust
 * anchor must be readable depends on their destinations). */
void cfg_load_resolver(struct loader *ld, const config_setting_t *root);

/* Frees what r owns. */
void cfg_resolver_clear(struct resolver_options *r);

/* ---- config_tlsrpt.c ---------------------------------------------------- */

/* The tls_rpt block of root into ld->c->tls_rpt (its directory made if
 * missing and checked writable); cfg_check_tls_rpt then reports outbound
 * tls_rpt = true without the block. */
void cfg_load_tls_rpt(struct loader *ld, const config_setting_t *root);
void cfg_check_tls_rpt(struct loader *ld, const config_setting_t *out);
void cfg_tls_rpt_clear(struct config_tls_rpt *t);

/* ---- config_mta_sts.c --------------------------------------------------- */

/* The top-level mta_sts block, after the listeners (out: their list) whose
 * `mta_sts = true` decides whether the CA file must be readable. */
void cfg_load_mta_sts(struct loader *ld, const config_setting_t *root,
                      const config_setting_t *out);

/* Frees what m owns. */
void cfg_mta_sts_clear(struct config_mta_sts *m);

#endif
