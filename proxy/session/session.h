/*
 * session: one proxied SMTP session. It owns both legs (client and server
 * conn), the session timer and one dialogue engine; it runs the engine's
 * actions, the deadlines and the lifecycle, and writes the one log line
 * per session end. A session is freed when its last handle has closed.
 */
#ifndef SMTP_TLS_PROXY_SESSION_H
#define SMTP_TLS_PROXY_SESSION_H

struct worker;
struct listener;
struct session;

/* Accepts a pending connection on l; never fails visibly (a failure is
 * logged and the connection dropped). */
void session_accept(struct worker *w, struct listener *l);

/* Graceful shutdown is over: 421 4.3.2 to the client and close. */
void session_shutdown(struct session *s);

/* Links for the worker's list. */
struct session *session_next(const struct session *s);

#endif
