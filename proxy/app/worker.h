/*
 * worker: one event-loop thread. Each worker has its own listening socket
 * per address, all with SO_REUSEPORT, so the kernel spreads connections
 * across workers, and keeps its own reference to the runtime, so no lock is
 * taken on the accept path: a reload posts the new runtime (and the
 * listeners it adds, keeps or removes) to every worker, which adopts it on
 * its own thread. A worker owns the sessions it accepted (its session_set)
 * from start to end.
 *
 * Every socket is made and bound on the main thread (listener_probe,
 * listener_socket), at start and on reload, before any worker sees it: a
 * bind error refuses the start or the reload as a whole, and binding never
 * needs privileges the process may have given up by the time a worker
 * adopts the socket.
 */
#ifndef SMTP_TLS_PROXY_WORKER_H
#define SMTP_TLS_PROXY_WORKER_H

#include <stddef.h>

#include <uv.h>

#include "proxy/app/runtime.h"

/* Binds the addresses of rt's configuration (first probing each without
 * SO_REUSEPORT, so that an address another process holds is an error) and
 * creates n workers listening on them, each holding a reference to rt. The
 * threads start with workers_run(). on_done is called on main_loop once
 * every worker has finished after workers_stop(). 0 or a negative code; on
 * error msg names the address and nothing is left open. Main thread. */
int workers_start(uv_loop_t *main_loop, struct runtime *rt, unsigned n, void (*on_done)(void),
                  char *msg, size_t msglen);
void workers_run(void);

/* A reload in two steps, so that the caller can fail in between: prepare
 * binds the addresses rt's configuration adds (probe first, as at start);
 * commit hands every worker rt and its listeners (new sockets, kept ones,
 * and the closing of those no longer configured) and logs the changes;
 * abandon closes what prepare bound. prepare returns 0 or a negative code
 * with msg naming the address. Main thread. */
struct workers_plan;
int workers_prepare(const struct runtime *rt, struct workers_plan **plan, char *msg,
                    size_t msglen);
void workers_commit(struct workers_plan *plan, struct runtime *rt);
void workers_abandon(struct workers_plan *plan);

/* How many workers run (fixed at start). */
unsigned workers_count(void);

/* Stops accepting (every listener closed), lets sessions finish for up to
 * shutdown_timeout seconds, then ends the rest; returns at once. */
void workers_stop(unsigned shutdown_timeout);
/* After workers_stop: ends every session now (421 4.3.2). */
void workers_stop_now(void);
/* After on_done: joins the threads and frees everything. */
void workers_join(void);

#endif
