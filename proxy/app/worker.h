/*
 * worker: one event-loop thread. Each worker binds its own listening
 * sockets with SO_REUSEPORT, so the kernel spreads connections across
 * workers, and keeps its own reference to the runtime, so no lock is taken
 * on the accept path: a reload posts the new runtime to every worker, which
 * adopts it on its own thread. A worker owns the sessions it accepted (its
 * session_set) from start to end.
 */
#ifndef SMTP_TLS_PROXY_WORKER_H
#define SMTP_TLS_PROXY_WORKER_H

#include <stddef.h>

#include "proxy/app/runtime.h"

/* Creates n workers with listeners bound to the addresses of rt's
 * configuration, each holding a reference to rt, and starts their threads.
 * 0 or a negative code; on error msg says which address could not be
 * bound and nothing is left running. */
int workers_start(struct runtime *rt, unsigned n, char *msg, size_t msglen);

/* Every worker uses rt for the connections it accepts from now on. Any
 * thread; listening addresses stay as they are. */
void workers_install(struct runtime *rt);

/* Stops accepting, lets sessions finish for up to shutdown_timeout seconds,
 * then ends the rest; returns after every worker has finished. */
void workers_stop_and_join(unsigned shutdown_timeout);

#endif
