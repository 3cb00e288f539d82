/* StagedOp between daemons (docs/protocol.md, "Staged memory"): sending
 * this host's requests for xfer_stage.c, and serving other hosts' requests
 * on the plain memory of our segments after checking every field. */
#ifndef MCEFAD_PEER_STAGE_H
#define MCEFAD_PEER_STAGE_H

void peer_stage_init(void);

#endif
