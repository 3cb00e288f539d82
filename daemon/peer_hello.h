/* The peer handshake: who the other daemon is (host, epoch, protocol,
 * provider), its NIC addresses into every local NIC's address vector, and
 * ours back. The one seam where peers are admitted: authentication goes
 * here. */
#ifndef MCEFAD_PEER_HELLO_H
#define MCEFAD_PEER_HELLO_H

/* Registers the handshake with the peer links (both directions). */
void peer_hello_init(const char *provider);

#endif
