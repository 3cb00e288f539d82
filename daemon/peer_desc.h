/* Segment descriptors between daemons: serving a peer's GetSegment from
 * the local segment table, and fetching a remote one for a client. */
#ifndef MCEFAD_PEER_DESC_H
#define MCEFAD_PEER_DESC_H

#include "mcefa.pb-c.h"
#include "peer_table.h"

void peer_desc_init(void);

/* Fetches a segment descriptor from the peer (connecting first if
 * needed). cb runs on the loop thread, never before this returns, with
 * status 0 and the descriptor, or a negative errno and why. */
typedef void (*peer_segment_cb)(void *arg, peer *p, int status, const char *why, const Mcefa__SegmentDescriptor *d);
void peer_get_segment(peer *p, const char *name, peer_segment_cb cb, void *arg);

#endif
