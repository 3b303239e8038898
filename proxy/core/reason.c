#include "proxy/core/reason.h"

#include <stddef.h>

static const char *const names[REASON_COUNT] = {
    [REASON_NONE] = "unknown",
    [REASON_QUIT] = "quit",
    [REASON_CLIENT_CLOSED] = "client_closed",
    [REASON_BACKEND_CLOSED] = "backend_closed",
    [REASON_DESTINATION_CLOSED] = "destination_closed",
    [REASON_DESTINATION_REFUSED] = "destination_refused",
    [REASON_BACKEND_UNREACHABLE] = "backend_unreachable",
    [REASON_BACKEND_TIMEOUT] = "backend_timeout",
    [REASON_TIMEOUT] = "timeout",
    [REASON_TLS_FAILED] = "tls_failed",
    [REASON_TLS_TIMEOUT] = "tls_timeout",
    [REASON_PROTOCOL_ERROR] = "protocol_error",
    [REASON_BARE_NEWLINE] = "bare_newline",
    [REASON_POLICY_REFUSAL] = "policy_refusal",
    [REASON_MAX_CONNECTIONS] = "max_connections",
    [REASON_SHUTDOWN] = "shutdown",
    [REASON_XCLIENT_REFUSED] = "xclient_refused",
    [REASON_PROXY_HEADER_INVALID] = "proxy_header_invalid",
    [REASON_PROXY_HEADER_TIMEOUT] = "proxy_header_timeout",
    [REASON_PROXY_HEADER_UNTRUSTED] = "proxy_header_untrusted",
    [REASON_NO_DESTINATION] = "no_destination",
    [REASON_INTERNAL_ERROR] = "internal_error",
    [REASON_ACCEPT_FAILED] = "accept_failed",
    [REASON_LISTENER_REMOVED] = "listener_removed",
    [REASON_DESTINATION_NOT_FOUND] = "destination_not_found",
    [REASON_DNS_FAILED] = "dns_failed",
    [REASON_DNSSEC_BOGUS] = "dnssec_bogus",
};

const char *reason_str(enum reason r)
{
    if ((unsigned)r >= REASON_COUNT || names[r] == NULL)
        return "unknown";
    return names[r];
}
