/*
 * tlsrpt_submit: hands one message to an SMTP server (tls_rpt.submit, the
 * local MTA, which queues it) on an event loop: greeting, EHLO, MAIL FROM,
 * RCPT TO, DATA, the dot-stuffed message, QUIT. Plaintext: RFC 8460 §3,
 * reports never require TLS for their own delivery, and the submit server
 * is local. Every reply is bounded (TLSRPT_SUBMIT_LINE_MAX bytes a line,
 * TLSRPT_SUBMIT_LINES lines), and so is the whole exchange (timeout_ms).
 */
#ifndef SMTP_TLS_PROXY_TLSRPT_SUBMIT_H
#define SMTP_TLS_PROXY_TLSRPT_SUBMIT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define TLSRPT_SUBMIT_LINE_MAX 1024
#define TLSRPT_SUBMIT_LINES 100
#define TLSRPT_SUBMIT_ADDR_MAX 254
#define TLSRPT_SUBMIT_MSG_MAX (8 * 1024 * 1024)

/* err 0 when the server took the message (250 after the final dot), else
 * negative; why (static or valid during the call) says what went wrong,
 * with the server's reply when there was one. */
typedef void (*tlsrpt_submit_cb)(void *arg, int err, const char *why);

/*
 * Connects to addr and submits msg (len bytes with CRLF line ends, copied
 * and dot-stuffed here) from the envelope sender from to rcpt (addresses
 * without "<>": printable ASCII, no space, at most TLSRPT_SUBMIT_ADDR_MAX
 * bytes), saying EHLO helo. cb comes exactly once, on the loop, never from
 * inside this call, when nothing of the submission is left on the loop.
 * 0, or UV_EINVAL (a bad argument) / UV_ENOMEM, and then cb never comes.
 */
int tlsrpt_submit_start(uv_loop_t *loop, const struct sockaddr *addr, const char *helo,
                        const char *from, const char *rcpt, const uint8_t *msg, size_t len,
                        unsigned timeout_ms, tlsrpt_submit_cb cb, void *arg);

#endif
