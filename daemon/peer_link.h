/* Daemon-to-daemon links over TCP (libuv): connections, framing (the
 * client socket's frames, PeerFrame messages), request/reply matching with
 * deadlines, connecting on demand, the listener. What a frame means is
 * decided by the handlers registered with peer_link_serve (handshake,
 * descriptors); this file only moves frames. */
#ifndef MCEFAD_PEER_LINK_H
#define MCEFAD_PEER_LINK_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "mcefa.pb-c.h"
#include "peer_internal.h"

typedef void (*peer_reply_fn)(peer_conn *c, void *arg, const Mcefa__PeerFrame *f);
/* A request from the other side; answer with peer_link_reply*. */
typedef void (*peer_serve_fn)(peer_conn *c, uint64_t seq, const Mcefa__PeerFrame *f);

/* Connections beyond max_conns are refused (each holds frame buffers). */
int peer_link_start(uv_loop_t *loop, const char *listen_addr, unsigned port, unsigned max_conns);
/* Closes every connection and fails everyone waiting. */
void peer_link_stop(void);

/* Handlers by PeerFrame body. before_hello: allowed on a connection whose
 * peer has not identified itself (the handshake). */
void peer_link_serve(int body_case, peer_serve_fn fn, bool before_hello);
/* Runs on each outgoing connection once TCP is up (sends the handshake). */
void peer_link_on_connect(void (*fn)(peer_conn *c));

int peer_link_send(peer_conn *c, Mcefa__PeerFrame *f);
/* Sends a request; fn gets the reply, or a failure frame (status < 0) if
 * the connection closes or the deadline passes first. */
int peer_link_request(peer_conn *c, Mcefa__PeerFrame *f, peer_reply_fn fn, void *arg);
void peer_link_reply_error(peer_conn *c, uint64_t seq, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void peer_link_close(peer_conn *c, const char *why);
/* A connection's id, and the open connection with that id (NULL: gone):
 * for a request answered after the loop has run (its connection may have
 * closed meanwhile). */
uint64_t peer_link_id(const peer_conn *c);
peer_conn *peer_link_by_id(uint64_t id);

/* The peer a connection belongs to (NULL: incoming, before its hello). */
peer *peer_link_peer(const peer_conn *c);
bool peer_link_closing(const peer_conn *c);
/* The handshake on c succeeded for p: c serves p from now on. */
void peer_link_bind(peer_conn *c, peer *p);
/* Open connections that belong to p (its handshake done or under way). */
unsigned peer_link_count(const peer *p);
/* Closes every connection of p whose handshake is done, but keep (p
 * restarted: they are dead). */
void peer_link_close_others(peer *p, const peer_conn *keep, const char *why);
/* At most this many connections per peer: a host that opens more (a bug,
 * or someone holding the secret) cannot fill the connection cap. */
#define PEER_CONNS_PER_PEER 4
/* With peer_auth=psk: the host name and epoch the other side proved with
 * the secret (a hello must match them); NULL with peer_auth=none. */
const char *peer_link_auth_host(const peer_conn *c, uint64_t *epoch);
/* Ends p's outgoing attempt c (NULL: still resolving) and answers its
 * waiters; a stale attempt changes nothing. */
void peer_link_attempt_done(peer *p, peer_conn *c, int status, const char *why);
/* Answers those waiting for p's connection. A failure at once; success
 * (status 0) on a later loop turn and only once the connection's handshake
 * is answered (the hello reply sent, on the accepting side), so the peer
 * has inserted our NIC addresses before any work of ours reaches it. */
void peer_link_run_waiters(peer *p, int status, const char *why);

/* Calls fn once the peer's connection is up, connecting if needed; never
 * before returning. */
void peer_when_up(peer *p, void (*fn)(void *arg, int status, const char *why), void *arg);

/* Sends request f (its memory lives until fn runs) once p's connection is
 * up, connecting if needed and once more if it drops in between. fn gets
 * the reply, or a failure frame (status < 0, error; c NULL when no
 * connection came), never before this returns. */
void peer_request_when_up(peer *p, Mcefa__PeerFrame *f, peer_reply_fn fn, void *arg);

#endif
