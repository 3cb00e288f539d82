/* A reply to one client request: the Response, the memory its fields
 * point to, descriptors to send with it. A handler fills it on the stack
 * and returns; one that must wait (on the network, on a worker thread)
 * calls reply_defer and answers later with reply_send, out of order with
 * the session's other replies (the client matches them by seq). */
#ifndef MCEFAD_REPLY_H
#define MCEFAD_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "mcefa.pb-c.h"
#include "session.h"

typedef struct reply {
    session *s;
    Mcefa__Response resp;
    void **allocs;
    size_t nallocs, cap;
    int fds[2];
    unsigned nfds;
    bool close_after; /* close the connection once this is sent */
    bool deferred;    /* taken over by reply_defer: the dispatcher drops it */
    bool heap;        /* the copy reply_defer made (freed by reply_send) */
    bool counted;     /* counted in the session's waiting requests */
    uint64_t t0_ms;   /* when the request arrived */
    char name[300];   /* what the request named, for deferred texts */
} reply;

void reply_init(reply *r, session *s, uint64_t seq);
/* Zeroed memory that lives as long as the reply. */
void *reply_alloc(reply *r, size_t size);
char *reply_strdup(reply *r, const char *s);
/* Makes the reply a failure: status is a negative errno, the text says
 * why. Returns status. */
int reply_fail(reply *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int reply_err(reply *r, const err *e);
/* Takes the reply over: the returned copy (holding a session reference)
 * must go to reply_send exactly once; the original is left for the
 * dispatcher to drop. NULL when out of memory (the original then carries
 * the failure). */
reply *reply_defer(reply *r);
/* Sends and frees a reply. Stack replies are freed by the dispatcher. */
void reply_send(reply *r);
void reply_free(reply *r);

#endif
