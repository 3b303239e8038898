/*
 * resolver_options: the settings of the resolver block (DESIGN.md "Contract,
 * second part"), apart from resolver.h so that the configuration loader and
 * its tests build without libunbound or the event loop.
 */
#ifndef SMTP_TLS_PROXY_RESOLVER_OPTIONS_H
#define SMTP_TLS_PROXY_RESOLVER_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy/core/addr.h"

#define RESOLVER_MAX_SERVERS 8
#define RESOLVER_DEFAULT_TRUST_ANCHOR "/usr/share/dns/root.key"

enum resolver_dnssec {
    RESOLVER_DNSSEC_VALIDATE, /* in-process validation from trust_anchor */
    RESOLVER_DNSSEC_TRUST_AD, /* believe the AD bit of loopback servers */
    RESOLVER_DNSSEC_OFF,      /* every answer is insecure */
};

struct resolver_options {
    struct addr servers[RESOLVER_MAX_SERVERS]; /* IP literals with their port */
    size_t nservers;                           /* 0: the nameservers of /etc/resolv.conf */
    enum resolver_dnssec dnssec;
    char *trust_anchor;  /* absolute path of DS/DNSKEY lines (zone file syntax); owned
                          * by whoever owns the struct (the config) */
};

#endif
