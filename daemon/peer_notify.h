/* Notifications between daemons: queueing a peer's PeerNotify for the
 * local owner of the segment it names, and sending one of our clients'
 * notifications to the daemon that holds the segment. */
#ifndef MCEFAD_PEER_NOTIFY_H
#define MCEFAD_PEER_NOTIFY_H

#include <stddef.h>
#include <stdint.h>

#include "peer_table.h"

void peer_notify_init(void);

/* Asks p to queue (name, msg) for the owner of its segment `segment`
 * (connecting first if needed); epoch: p's epoch when the segment was
 * opened (p refuses if it restarted since). cb runs on the loop thread,
 * never before this returns, with 0 once p queued it, or a negative errno
 * and why (the peer's text, cleaned). */
typedef void (*peer_notify_cb)(void *arg, int status, const char *why);
void peer_notify(peer *p, uint64_t epoch, const char *segment, const void *name, size_t name_len, const void *msg,
                 size_t msg_len, peer_notify_cb cb, void *arg);

#endif
