/*
 * relay_fifo: the relay's reply FIFO (RFC 2920: replies come in command
 * order), for relay.c only. Entries are kinds (enum relay_pending); the
 * proxy's own replies (PEND_LOCAL, PEND_CLOSE) also carry their static
 * text, in an array allocated only while such an entry is queued, so a
 * relay that owes no reply of its own holds none.
 */
#ifndef SMTP_TLS_PROXY_RELAY_FIFO_H
#define SMTP_TLS_PROXY_RELAY_FIFO_H

#include <stdbool.h>

#include "proxy/core/relay.h"

/* Copies the head entry to x; false when the FIFO is empty. */
bool relay_fifo_head(const struct relay *r, struct relay_entry *x);

/* Drops the head entry (the FIFO is not empty). */
void relay_fifo_pop(struct relay *r);

/* Appends an entry (the FIFO is not full); text only with PEND_LOCAL and
 * PEND_CLOSE. 0, or -1 when out of memory (nothing appended). */
int relay_fifo_push(struct relay *r, enum relay_pending kind, const char *text);

/* Frees the text array. */
void relay_fifo_free(struct relay *r);

#endif
