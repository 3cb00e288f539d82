/* The client command table: each message with its handler and what it
 * needs (hello first, admin rights). One request in, one reply out, in
 * whatever order requests finish. */
#ifndef MCEFAD_DISPATCH_H
#define MCEFAD_DISPATCH_H

#include "mcefa.pb-c.h"
#include "session.h"

/* Handles one decoded request of s. */
void dispatch_request(session *s, const Mcefa__Request *req);
/* Answers a frame that is not a request (status < 0, seq 0). */
void dispatch_error(session *s, int status, bool fatal, const char *msg);

#endif
