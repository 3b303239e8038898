/*
 * The relay's recipient decisions (relay.h, hooks.rcpt): the strict parse
 * of a RCPT's forward-path and the resumption of a waiting RCPT. Apart from
 * relay.c to keep both short; it touches only the rcpt_* fields.
 *
 * RFC 5321 §4.1.2:
 *   Forward-path = "<" [ A-d-l ":" ] Mailbox ">"
 *   Mailbox      = Local-part "@" ( Domain / address-literal )
 *   Local-part   = Dot-string / Quoted-string
 * and §4.5.1 lets "<Postmaster>" go without a domain. The domain is what
 * follows the '@' that ends the local part, so a quoted local part holding
 * '@' ("a@b"@c.example) names c.example, as any server reads it: the proxy
 * must decide for the domain the destination will deliver to, never for a
 * different reading of the same bytes. Anything the grammar does not allow
 * is refused rather than guessed at (a lenient server accepting a bare
 * "TO:a@b" would otherwise get a recipient nobody decided about).
 */
#include "proxy/core/relay.h"
#include "proxy/core/relay_int.h"

#include <string.h>

const char RELAY_R_RCPT_SYNTAX[] = "501 5.1.3 Bad recipient address syntax\r\n";
const char RELAY_R_RCPT_NOT_ALABEL[] =
    "450 4.7.5 Recipient domain not in A-label form, its TLS policy cannot be decided\r\n";

/* RFC 5322 atext, plus octets beyond ASCII (RFC 6531 local parts). */
static bool atext(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c >= 0x80 || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static bool ldh(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

/* A domain at p[i..): LDH labels separated by dots, up to '>'. Writes it
 * lower-cased into out; returns the index of the '>' or a negative status. */
static long domain(const uint8_t *p, size_t n, size_t i, char *out, size_t cap)
{
    size_t o = 0, label = 0;
    bool beyond_ascii = false;

    for (; i < n && p[i] != '>'; i++) {
        uint8_t c = p[i];
        if (c == '.') {
            if (label == 0)
                return RELAY_RCPT_SYNTAX; /* an empty label */
            label = 0;
        } else if (c >= 0x80) {
            beyond_ascii = true;
            label++;
        } else if (ldh(c)) {
            label++;
        } else {
            return RELAY_RCPT_SYNTAX;
        }
        if (label > 63 || o + 1 >= cap || o >= 254)
            return RELAY_RCPT_SYNTAX;
        out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    }
    if (i >= n || o == 0)
        return RELAY_RCPT_SYNTAX;
    if (out[o - 1] == '.')
        o--; /* the root's dot; ".." was refused above */
    out[o] = '\0';
    if (o == 0 || o > 253)
        return RELAY_RCPT_SYNTAX;
    return beyond_ascii ? RELAY_RCPT_NOT_ALABEL : (long)i;
}

int relay_rcpt_domain(const uint8_t *arg, size_t len, char *out, size_t cap)
{
    size_t i = 0;

    if (cap < 2)
        return RELAY_RCPT_SYNTAX;
    out[0] = '\0';
    while (len > 0 && (arg[len - 1] == '\n' || arg[len - 1] == '\r'))
        len--;
    if (len < 3 || (arg[0] | 0x20) != 't' || (arg[1] | 0x20) != 'o' || arg[2] != ':')
        return RELAY_RCPT_SYNTAX;
    i = 3;
    while (i < len && arg[i] == ' ')
        i++; /* "TO: <...>": not RFC 5321, but what clients send and servers take */
    if (i >= len || arg[i++] != '<')
        return RELAY_RCPT_SYNTAX;
    if (i < len && arg[i] == '@') {
        /* A source route (§4.1.2, §C: to be ignored): "@a,@b:" */
        while (i < len && arg[i] != ':') {
            if (!ldh(arg[i]) && arg[i] != '.' && arg[i] != ',' && arg[i] != '@' && arg[i] != '[' &&
                arg[i] != ']')
                return RELAY_RCPT_SYNTAX;
            i++;
        }
        if (i >= len)
            return RELAY_RCPT_SYNTAX;
        i++;
    }
    /* The local part. */
    size_t start = i;
    if (i < len && arg[i] == '"') {
        for (i++; i < len && arg[i] != '"'; i++) {
            if (arg[i] == '\\')
                i++; /* quoted-pair: the next octet, whatever it is */
            if (i < len && (arg[i] < 0x20 || arg[i] == 0x7f))
                return RELAY_RCPT_SYNTAX;
        }
        if (i >= len)
            return RELAY_RCPT_SYNTAX;
        i++;
    } else {
        bool dot = true; /* no leading, trailing or double dot */
        for (; i < len && arg[i] != '@' && arg[i] != '>'; i++) {
            if (arg[i] == '.') {
                if (dot)
                    return RELAY_RCPT_SYNTAX;
                dot = true;
            } else if (atext(arg[i])) {
                dot = false;
            } else {
                return RELAY_RCPT_SYNTAX;
            }
        }
        if (dot && i > start)
            return RELAY_RCPT_SYNTAX;
    }
    if (i == start || i >= len)
        return RELAY_RCPT_SYNTAX; /* "<>" is no recipient */
    long end;
    if (arg[i] == '>') {
        end = (long)i; /* <postmaster>: no domain */
    } else if (arg[i] != '@') {
        return RELAY_RCPT_SYNTAX;
    } else if (i + 1 < len && arg[i + 1] == '[') {
        /* An address literal: no domain's policy applies. */
        const uint8_t *close = memchr(arg + i + 1, ']', len - i - 1);
        if (close == NULL || close + 1 >= arg + len || close[1] != '>' || close == arg + i + 2)
            return RELAY_RCPT_SYNTAX;
        for (const uint8_t *q = arg + i + 2; q < close; q++)
            if (*q <= ' ' || *q >= 0x7f || *q == '[' || *q == '\\')
                return RELAY_RCPT_SYNTAX;
        end = (long)(close + 1 - arg);
    } else {
        end = domain(arg, len, i + 1, out, cap);
        if (end < 0) {
            if (end == RELAY_RCPT_SYNTAX)
                out[0] = '\0';
            return (int)end;
        }
    }
    /* After the path: nothing, or parameters after one space. */
    if ((size_t)end + 1 < len && arg[end + 1] != ' ') {
        out[0] = '\0';
        return RELAY_RCPT_SYNTAX;
    }
    return RELAY_RCPT_OK;
}

int relay_rcpt_ask(struct relay *r, const struct relay_command *c, const char **reply)
{
    char domain[256];
    int rc;
    enum relay_rcpt_state st = (enum relay_rcpt_state)r->rcpt;

    r->rcpt = RELAY_RCPT_IDLE;
    if (st == RELAY_RCPT_FORWARD)
        return RELAY_RCPT_PASS;
    if (st == RELAY_RCPT_ANSWERED)
        return RELAY_RCPT_DONE;
    if (r->hooks.rcpt == NULL)
        return RELAY_RCPT_PASS;
    rc = relay_rcpt_domain(c->line + c->arg, c->len - c->arg, domain, sizeof(domain));
    if (rc < 0)
        return rc;
    *reply = NULL;
    rc = (int)r->hooks.rcpt(r->hooks.arg, domain, reply);
    if (rc == RELAY_RCPT_REFUSE && *reply == NULL)
        rc = RELAY_RCPT_PASS; /* a refusal without words is the user's bug: forward */
    return rc;
}

void relay_rcpt_resume(struct relay *r, const char *reply)
{
    if (r->rcpt != RELAY_RCPT_WAITING)
        return;
    if (r->state == RELAY_CLOSED) {
        r->rcpt = RELAY_RCPT_IDLE; /* nothing more is read: the decision is moot */
        return;
    }
    /* Nothing was read after the RCPT: its answer goes in now, in its
     * place, and the line is dropped when read again. */
    r->rcpt = reply != NULL ? RELAY_RCPT_ANSWERED : RELAY_RCPT_FORWARD;
    if (reply != NULL)
        relay_reply_own(r, reply);
}

bool relay_rcpt_waiting(const struct relay *r)
{
    return r->rcpt == RELAY_RCPT_WAITING;
}
