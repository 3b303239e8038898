/*
 * The SMTP submission of TLS-RPT reports; see tlsrpt_submit.h.
 *
 * One heap object per submission with a TCP handle and a timer; each step
 * writes one command and waits for its final reply line. Every way out
 * goes through finish(), which closes both handles; the callback runs from
 * the last close callback.
 */
#include "proxy/service/tlsrpt_submit.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/buf.h"

enum step {
    STEP_CONNECT,
    STEP_GREETING,
    STEP_EHLO,
    STEP_MAIL,
    STEP_RCPT,
    STEP_DATA,
    STEP_BODY,
    STEP_QUIT,
    STEP_DONE,
};

struct submit {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t creq;
    int handles;
    enum step step;
    tlsrpt_submit_cb cb;
    void *arg;
    int err;
    struct buf body; /* the dot-stuffed message with its final dot */
    size_t lines;    /* lines of the reply being read */
    char line[TLSRPT_SUBMIT_LINE_MAX + 1];
    size_t line_len;
    char helo[TLSRPT_SUBMIT_ADDR_MAX + 1];
    char from[TLSRPT_SUBMIT_ADDR_MAX + 1];
    char rcpt[TLSRPT_SUBMIT_ADDR_MAX + 1];
    char why[TLSRPT_SUBMIT_LINE_MAX + 64];
    char rbuf[4096];
};

static const char *const step_name[] = {
    [STEP_CONNECT] = "connect", [STEP_GREETING] = "greeting", [STEP_EHLO] = "EHLO",
    [STEP_MAIL] = "MAIL",       [STEP_RCPT] = "RCPT",         [STEP_DATA] = "DATA",
    [STEP_BODY] = "message",    [STEP_QUIT] = "QUIT",         [STEP_DONE] = "done",
};

static void on_closed(uv_handle_t *h)
{
    struct submit *s = h->data;

    if (--s->handles > 0)
        return;
    s->cb(s->arg, s->err, s->why);
    buf_free(&s->body);
    free(s);
}

/* Ends the submission with err (0: delivered) and why (copied). */
static void finish(struct submit *s, int err, const char *why)
{
    if (s->step == STEP_DONE)
        return;
    s->step = STEP_DONE;
    s->err = err;
    if (why != s->why)
        snprintf(s->why, sizeof(s->why), "%s", why);
    uv_close((uv_handle_t *)&s->tcp, on_closed);
    uv_close((uv_handle_t *)&s->timer, on_closed);
}

static void fail_uv(struct submit *s, const char *what, int err)
{
    char why[128];

    snprintf(why, sizeof(why), "%s: %s", what, uv_strerror(err));
    finish(s, err, why);
}

static void on_timer(uv_timer_t *t)
{
    struct submit *s = t->data;
    char why[64];

    if (s->step == STEP_QUIT) {
        finish(s, 0, "delivered");
        return;
    }
    snprintf(why, sizeof(why), "timed out at %s", step_name[s->step]);
    finish(s, UV_ETIMEDOUT, why);
}

/* One write in flight: its own bytes, freed by its callback (which comes
 * also for a write cancelled by the close, before the close callback). */
struct wr {
    uv_write_t req;
    struct submit *s;
    struct buf b;
};

static void on_write(uv_write_t *req, int status)
{
    struct wr *w = req->data;
    struct submit *s = w->s;

    buf_free(&w->b);
    free(w);
    if (status == 0 || s->step == STEP_DONE)
        return;
    if (s->step == STEP_QUIT)
        finish(s, 0, "delivered"); /* the message was taken already */
    else
        fail_uv(s, "write", status);
}

static void send_buf(struct submit *s, struct buf *b)
{
    struct wr *w = calloc(1, sizeof(*w));

    if (w == NULL) {
        buf_free(b);
        finish(s, UV_ENOMEM, "out of memory");
        return;
    }
    w->s = s;
    buf_move(&w->b, b);
    uv_buf_t ub = uv_buf_init((char *)buf_head(&w->b), (unsigned)buf_len(&w->b));
    w->req.data = w;
    int rc = uv_write(&w->req, (uv_stream_t *)&s->tcp, &ub, 1, on_write);
    if (rc != 0) {
        buf_free(&w->b);
        free(w);
        fail_uv(s, "write", rc);
    }
}

/* One command line: verb, then arg (an address, already checked), then end. */
static void send_cmd(struct submit *s, const char *verb, const char *arg, const char *end)
{
    struct buf b = {0};
    char line[TLSRPT_SUBMIT_ADDR_MAX + 32];
    int n = snprintf(line, sizeof(line), "%s%s%s\r\n", verb, arg, end);

    if (n < 0 || (size_t)n >= sizeof(line) || buf_append(&b, line, (size_t)n) != 0) {
        finish(s, UV_ENOMEM, "command too long");
        return;
    }
    send_buf(s, &b);
}

/* The final line of a reply is in s->line with code: the next step. */
static void on_reply(struct submit *s, int code)
{
    bool ok;

    switch (s->step) {
    case STEP_GREETING:
        ok = code == 220;
        break;
    case STEP_DATA:
        ok = code == 354;
        break;
    case STEP_RCPT:
        ok = code == 250 || code == 251;
        break;
    case STEP_QUIT:
        finish(s, 0, "delivered");
        return;
    default:
        ok = code == 250;
        break;
    }
    if (!ok) {
        snprintf(s->why, sizeof(s->why), "%s refused: %s", step_name[s->step], s->line);
        finish(s, UV_EPROTO, s->why);
        return;
    }
    switch (s->step) {
    case STEP_GREETING:
        s->step = STEP_EHLO;
        send_cmd(s, "EHLO ", s->helo, "");
        break;
    case STEP_EHLO:
        s->step = STEP_MAIL;
        send_cmd(s, "MAIL FROM:<", s->from, ">");
        break;
    case STEP_MAIL:
        s->step = STEP_RCPT;
        send_cmd(s, "RCPT TO:<", s->rcpt, ">");
        break;
    case STEP_RCPT:
        s->step = STEP_DATA;
        send_cmd(s, "DATA", "", "");
        break;
    case STEP_DATA:
        s->step = STEP_BODY;
        send_buf(s, &s->body);
        break;
    case STEP_BODY:
        /* Taken: the rest is courtesy, and its failure changes nothing. */
        s->step = STEP_QUIT;
        s->err = 0;
        send_cmd(s, "QUIT", "", "");
        break;
    default:
        break;
    }
}

/* One complete line (CRLF stripped): "NNN-text" continues, "NNN text" or
 * "NNN" ends a reply (RFC 5321 §4.2). */
static void on_line(struct submit *s)
{
    const char *l = s->line;

    if (s->line_len < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0' ||
        l[2] > '9' || (s->line_len > 3 && l[3] != ' ' && l[3] != '-')) {
        finish(s, UV_EPROTO, "a reply line out of form");
        return;
    }
    if (s->line_len > 3 && l[3] == '-') {
        if (++s->lines >= TLSRPT_SUBMIT_LINES)
            finish(s, UV_EPROTO, "a reply of too many lines");
        return;
    }
    s->lines = 0;
    on_reply(s, (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0'));
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct submit *s = h->data;

    (void)hint;
    *b = uv_buf_init(s->rbuf, sizeof(s->rbuf));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    struct submit *s = st->data;

    if (nread < 0) {
        if (s->step == STEP_QUIT)
            finish(s, 0, "delivered");
        else
            fail_uv(s, step_name[s->step], (int)nread);
        return;
    }
    for (ssize_t i = 0; i < nread && s->step != STEP_DONE; i++) {
        char c = b->base[i];
        if (c == '\n') {
            if (s->line_len > 0 && s->line[s->line_len - 1] == '\r')
                s->line_len--;
            s->line[s->line_len] = '\0';
            on_line(s);
            s->line_len = 0;
            continue;
        }
        if (s->line_len >= TLSRPT_SUBMIT_LINE_MAX) {
            finish(s, UV_EPROTO, "a reply line too long");
            return;
        }
        /* Kept printable for the log. */
        s->line[s->line_len++] = (c >= 0x20 && c < 0x7f) || c == '\r' ? c : '?';
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    struct submit *s = req->data;

    if (s->step == STEP_DONE)
        return;
    if (status != 0) {
        fail_uv(s, "connect", status);
        return;
    }
    s->step = STEP_GREETING;
    int rc = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
    if (rc != 0)
        fail_uv(s, "read", rc);
}

static bool addr_ok(const char *a, bool at)
{
    size_t n = strnlen(a, TLSRPT_SUBMIT_ADDR_MAX + 1);

    if (n == 0 || n > TLSRPT_SUBMIT_ADDR_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)a[i] <= 0x20 || (unsigned char)a[i] >= 0x7f || a[i] == '<' ||
            a[i] == '>')
            return false;
    return !at || strchr(a, '@') != NULL;
}

/* The message with lines that begin with '.' doubled (RFC 5321 §4.5.2),
 * a CRLF ensured at its end, and the final ".CRLF". */
static int stuff(struct buf *b, const uint8_t *msg, size_t len)
{
    bool bol = true;

    for (size_t i = 0; i < len; i++) {
        if (bol && msg[i] == '.' && buf_append(b, ".", 1) != 0)
            return UV_ENOMEM;
        if (buf_append(b, &msg[i], 1) != 0)
            return UV_ENOMEM;
        bol = msg[i] == '\n';
    }
    if (!bol && buf_append(b, "\r\n", 2) != 0)
        return UV_ENOMEM;
    return buf_append(b, ".\r\n", 3) != 0 ? UV_ENOMEM : 0;
}

int tlsrpt_submit_start(uv_loop_t *loop, const struct sockaddr *addr, const char *helo,
                        const char *from, const char *rcpt, const uint8_t *msg, size_t len,
                        unsigned timeout_ms, tlsrpt_submit_cb cb, void *arg)
{
    struct submit *s;
    int rc;

    if (addr == NULL || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) ||
        !addr_ok(helo, false) || !addr_ok(from, true) || !addr_ok(rcpt, true) || cb == NULL ||
        len > TLSRPT_SUBMIT_MSG_MAX || (len > 0 && msg == NULL))
        return UV_EINVAL;
    if ((s = calloc(1, sizeof(*s))) == NULL)
        return UV_ENOMEM;
    s->cb = cb;
    s->arg = arg;
    snprintf(s->helo, sizeof(s->helo), "%s", helo);
    snprintf(s->from, sizeof(s->from), "%s", from);
    snprintf(s->rcpt, sizeof(s->rcpt), "%s", rcpt);
    if ((rc = stuff(&s->body, msg, len)) != 0)
        goto fail_body;
    if ((rc = uv_timer_init(loop, &s->timer)) != 0)
        goto fail_body;
    s->timer.data = s;
    s->handles = 1;
    if ((rc = uv_tcp_init(loop, &s->tcp)) != 0) {
        /* The timer alone is closed; its close callback reports. */
        snprintf(s->why, sizeof(s->why), "socket: %s", uv_strerror(rc));
        s->step = STEP_DONE;
        s->err = rc;
        uv_close((uv_handle_t *)&s->timer, on_closed);
        return 0;
    }
    s->tcp.data = s;
    s->handles = 2;
    uv_timer_start(&s->timer, on_timer, timeout_ms, 0);
    s->creq.data = s;
    if ((rc = uv_tcp_connect(&s->creq, &s->tcp, addr, on_connect)) != 0)
        fail_uv(s, "connect", rc);
    return 0;

fail_body:
    buf_free(&s->body);
    free(s);
    return rc;
}
