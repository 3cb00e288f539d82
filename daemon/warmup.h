/* NIC-pair warmup: an 8-byte RMA read on every local/remote NIC pair of a
 * peer not yet warm, so the provider's connection setup is paid before the
 * first transfer. */
#ifndef MCEFAD_WARMUP_H
#define MCEFAD_WARMUP_H

#include <stdint.h>
#include <uv.h>

#include "peer_table.h"

void warmup_init(uv_loop_t *loop, uint64_t request_timeout_ms);
/* cb gets the number of pairs now warm; never runs before this returns. */
typedef void (*peer_warmup_cb)(void *arg, int status, const char *why, unsigned pairs);
void peer_warmup(peer *p, peer_warmup_cb cb, void *arg);

#endif
