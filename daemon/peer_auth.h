/* Peer authentication and encryption (peer_auth=psk): the cluster secret,
 * the key schedule of the handshake, sealing and opening frames, and the
 * checks of text a peer sends. The handshake's order of frames is
 * peer_link.c's; what the frames prove is decided here. libsodium only: no
 * home-made primitives (docs/protocol.md, "Peer authentication"). */
#ifndef MCEFAD_PEER_AUTH_H
#define MCEFAD_PEER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "mcefa.pb-c.h"

#define PEER_AUTH_NONCE_LEN 32
#define PEER_AUTH_PROOF_LEN 32
#define PEER_AUTH_KEY_LEN 32
/* Largest frame accepted before the peer proved itself and said hello: a
 * hello with 32 NICs is about 10 KiB, so an unknown party cannot make us
 * buffer max_frame_bytes. */
#define PEER_PREAUTH_MAX_FRAME 65536u
/* How long a new connection may take to authenticate and say hello (capped
 * by request_timeout_ms): short, so silent connections cannot pile up. */
#define PEER_HANDSHAKE_MS 5000u
/* Shortest secret accepted (bytes of the file, spaces trimmed). */
#define PEER_SECRET_MIN 32u

/* Reads the setting pair: mode "psk" loads the secret from path (refusing a
 * missing file, a short one, or one group/others may read); "none" turns
 * authentication off with a loud warning. Returns 0 or a negative errno
 * with e saying what to do. */
int peer_auth_init(const char *mode, const char *path, err *e);
/* Whether peers must authenticate (psk). */
bool peer_auth_enabled(void);
/* Wipes the secret (at exit). */
void peer_auth_shutdown(void);

/* One connection's keys. The initiator is the side that connected. */
typedef struct peer_session {
    uint8_t my_nonce[PEER_AUTH_NONCE_LEN];
    uint8_t my_proof[PEER_AUTH_PROOF_LEN], their_proof[PEER_AUTH_PROOF_LEN];
    uint8_t tx_key[PEER_AUTH_KEY_LEN], rx_key[PEER_AUTH_KEY_LEN];
    uint64_t tx_ctr, rx_ctr; /* frames sealed / opened: the AEAD nonce */
} peer_session;

/* A fresh random nonce into s->my_nonce. */
void peer_auth_new_nonce(peer_session *s);
/* Derives both proofs and both directions' keys from the secret and the
 * transcript (both host names, epochs and nonces). */
int peer_auth_derive(peer_session *s, bool initiator, const char *host_i, uint64_t epoch_i, const uint8_t *nonce_i,
                     const char *host_r, uint64_t epoch_r, const uint8_t *nonce_r);
/* Constant-time check of the other side's proof. */
bool peer_auth_proof_ok(const peer_session *s, const uint8_t *proof, size_t len);
/* Seals len bytes into a malloc'd *out (len + PEER_AUTH_OVERHEAD bytes);
 * each call uses the next counter, so the receiver sees any replay,
 * reordering or reflection as a failure. */
#define PEER_AUTH_OVERHEAD 16u
int peer_auth_seal(peer_session *s, const uint8_t *in, size_t len, uint8_t **out, size_t *outlen);
/* Opens the next frame from the other side into a malloc'd *out. Returns
 * -EBADMSG when it was not sealed by the other side for this position. */
int peer_auth_open(peer_session *s, const uint8_t *in, size_t len, uint8_t **out, size_t *outlen);
void peer_auth_wipe(peer_session *s);

/* Whether a is a well-formed step 1 or 2 of the handshake (the step
 * expected, a host name of at most host_max bytes, a nonce, an epoch):
 * before anything of it is kept. */
bool peer_auth_step_ok(const Mcefa__PeerAuth *a, uint32_t step, size_t host_max);

/* Whether s is a host name a peer may use: 1..max bytes of printable ASCII
 * without spaces (nothing that forges log lines). */
bool peer_name_ok(const char *s, size_t max);
/* Copies src into dst (cap > 0) with every byte that is not printable ASCII
 * replaced by '?': for peer texts on their way to a log or a reply. */
void peer_text_clean(char *dst, size_t cap, const char *src);

#endif
