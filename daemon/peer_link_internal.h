/* What the three peer link files share: the connection struct and the
 * functions each offers the others. Not for other modules. */
#ifndef MCEFAD_PEER_LINK_INTERNAL_H
#define MCEFAD_PEER_LINK_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "peer_auth.h"
#include "peer_link.h"
#include "wire.h"

typedef struct pending_req {
    LIST_ENTRY(pending_req) link;
    uint64_t seq;
    uint64_t deadline_ms;
    peer_reply_fn fn;
    void *arg;
} pending_req;

/* Where a connection stands. With peer_auth=psk nothing but PeerAuth
 * frames is read or sent before ST_OPEN; with none it starts open. */
enum conn_stage {
    ST_WAIT_AUTH1, /* incoming: the connector's nonce */
    ST_WAIT_AUTH2, /* outgoing: the listener's nonce and proof */
    ST_WAIT_AUTH3, /* incoming: the connector's proof */
    ST_OPEN,
};

struct peer_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;             /* request and handshake deadlines */
    uint64_t connect_deadline_ms; /* 0 once the handshake is done */
    unsigned open_handles;
    LIST_ENTRY(peer_conn) link;   /* every connection, for shutdown */
    peer *peer; /* NULL on an incoming connection until its hello */
    bool outgoing;
    /* The other side has our NIC addresses in its AVs: it answered our
     * hello (outgoing), or we answered its (incoming). No work queued for
     * the peer is released before: its RMA could reach the peer first. */
    bool av_ready;
    bool closing;
    wire_reader rd;
    enum conn_stage stage;
    peer_session *sess;  /* psk: this connection's keys; NULL with peer_auth=none */
    char auth_host[256]; /* the host name the other side proved (psk) */
    uint64_t auth_epoch;
    char remote[64];     /* "ip:port", for log lines before a hello */
    uint64_t last_rx_ms;
    uint64_t next_seq;
    LIST_HEAD(, pending_req) pending;
    uint64_t id; /* never reused: answers given later find the connection by it */
};


/* peer_link.c */
extern void (*peer_link_on_connect_fn)(peer_conn *c);
bool peer_link_stopping(void);
peer_conn *peer_link_conn_new(bool outgoing);
void peer_link_note_remote(peer_conn *c);
const char *peer_link_conn_name(const peer_conn *c);
int peer_link_send_plain(peer_conn *c, const Mcefa__PeerFrame *f);
/* Hands an open (authenticated or auth-less) frame to its handler. */
void peer_link_deliver(peer_conn *c, const Mcefa__PeerFrame *f);
/* Reading starts on an accepted or connected connection. */
void peer_link_start_reading(peer_conn *c);

/* peer_connect.c */
/* The NICs asked for a new handshake with p (peer_take_rehandshake): its
 * connection c is closed and a new one made. */
void peer_link_rehandshake(peer *p, peer_conn *c, int code);
/* c's handshake is answered (av_ready): its peer's waiters may go. */
void peer_link_answered(peer_conn *c);

/* peer_link_auth.c */
/* Every frame read: the handshake first, then (psk) the seal opened. */
void peer_link_receive(peer_conn *c, const Mcefa__PeerFrame *f);
/* An outgoing connection is up: the handshake's first step. */
void peer_link_auth_start(peer_conn *c);

#endif
