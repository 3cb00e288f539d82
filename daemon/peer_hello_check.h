/* The checks of a peer's hello, apart from the handshake that applies it:
 * a pure function of the message, the provider and the local NICs' address
 * lengths, so it can be tested and fuzzed without libfabric. */
#ifndef MCEFAD_PEER_HELLO_CHECK_H
#define MCEFAD_PEER_HELLO_CHECK_H

#include <stddef.h>

#include "err.h"
#include "mcefa.pb-c.h"

/* Everything a hello carries, checked before any of it is used: names
 * printable (they go to logs and replies), counts bounded, each NIC
 * address as long as one of the nlocal local addresses (local_addrlen)
 * and of provider's format. Returns 0 or -EPROTO with e naming what was
 * wrong. */
int peer_hello_check(const Mcefa__PeerHello *h, const char *provider, const size_t *local_addrlen, unsigned nlocal,
                     err *e);

#endif
