/*
 * The relay's reply FIFO; see relay_fifo.h.
 */
#include "proxy/core/relay_fifo.h"
#include "proxy/core/relay_int.h"

#include <assert.h>
#include <stdlib.h>

static bool has_text(uint8_t kind)
{
    return kind == PEND_LOCAL || kind == PEND_CLOSE;
}

bool relay_fifo_head(const struct relay *r, struct relay_entry *x)
{
    if (r->count == 0)
        return false;
    x->kind = r->fifo_kind[r->head];
    x->text = has_text(x->kind) ? r->fifo_text[r->head] : NULL;
    return true;
}

void relay_fifo_pop(struct relay *r)
{
    assert(r->count > 0);
    if (has_text(r->fifo_kind[r->head]) && --r->ntext == 0)
        relay_fifo_free(r);
    r->head = (r->head + 1) % RELAY_FIFO_MAX;
    r->count--;
}

int relay_fifo_push(struct relay *r, enum relay_pending kind, const char *text)
{
    assert(r->count < RELAY_FIFO_MAX);
    unsigned i = (r->head + r->count) % RELAY_FIFO_MAX;
    if (has_text((uint8_t)kind)) {
        if (r->fifo_text == NULL &&
            (r->fifo_text = malloc(RELAY_FIFO_MAX * sizeof(*r->fifo_text))) == NULL)
            return -1;
        r->fifo_text[i] = text;
        r->ntext++;
    }
    r->fifo_kind[i] = (uint8_t)kind;
    r->count++;
    return 0;
}

void relay_fifo_free(struct relay *r)
{
    free(r->fifo_text);
    r->fifo_text = NULL;
}

/* Whether a reply of the server is owed: a command forwarded and not yet
 * answered, or a recipient decision pending (it stands for one). */
bool relay_awaiting_server(const struct relay *r)
{
    if (r->rcpt == RELAY_RCPT_WAITING)
        return true;
    for (unsigned i = 0; i < r->count; i++) {
        uint8_t k = r->fifo_kind[(r->head + i) % RELAY_FIFO_MAX];
        if (k != PEND_LOCAL && k != PEND_TURN && k != PEND_CLOSE)
            return true;
    }
    return false;
}
