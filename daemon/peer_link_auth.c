/* The peer handshake's frames on a link (peer_auth=psk): three PeerAuth
 * steps in plaintext, then every frame sealed (peer_auth.c has the
 * crypto). Nothing else is read or sent before the other side proved it
 * holds the cluster secret. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ident.h"
#include "log.h"
#include "peer_link_internal.h"
#include "stats.h"

/* ---- Authentication (peer_auth=psk) ----------------------------------- */

/* Tells the other side in one plaintext frame why we refuse it (its log
 * and its clients then say so), then closes. */
static void refuse(peer_conn *c, uint64_t seq, int status, const char *to_them, const char *why)
{
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.seq = seq; /* answers the request refused, so its sender reports why */
    f.reply = true;
    f.status = status;
    f.error = (char *)to_them;
    peer_link_send_plain(c, &f);
    log_warn("peer connection %s (%s): %s", c->remote, peer_link_conn_name(c), why);
    peer_link_close(c, why);
}

static void send_auth(peer_conn *c, uint32_t step)
{
    Mcefa__PeerAuth a = MCEFA__PEER_AUTH__INIT;
    a.step = step;
    if (step < 3) {
        a.hostname = (char *)ident_hostname();
        a.epoch = ident_epoch();
        a.nonce.data = c->sess->my_nonce;
        a.nonce.len = PEER_AUTH_NONCE_LEN;
    }
    if (step > 1) {
        a.proof.data = c->sess->my_proof;
        a.proof.len = PEER_AUTH_PROOF_LEN;
    }
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.body_case = MCEFA__PEER_FRAME__BODY_AUTH;
    f.auth = &a;
    if (peer_link_send_plain(c, &f) < 0 && !c->closing)
        peer_link_close(c, "cannot send the peer authentication");
}

static bool auth_identity_ok(peer_conn *c, const Mcefa__PeerAuth *a, uint32_t step)
{
    if (!peer_auth_step_ok(a, step, sizeof(c->auth_host) - 1))
        return false;
    snprintf(c->auth_host, sizeof(c->auth_host), "%s", a->hostname);
    c->auth_epoch = a->epoch;
    return true;
}

static const char wrong_secret[] = "check both daemons use the same peer_secret_file (mcefactl gen-secret makes one)";

/* One frame before ST_OPEN: the three steps of the handshake. */
static void auth_frame(peer_conn *c, const Mcefa__PeerFrame *f)
{
    char txt[500];
    if (f->reply && f->status < 0) {
        char theirs[300];
        peer_text_clean(theirs, sizeof(theirs), f->error);
        snprintf(txt, sizeof(txt), "host %s rejected our peer authentication: %s", peer_link_conn_name(c), theirs);
        log_warn("%s", txt);
        peer_link_close(c, txt);
        return;
    }
    if (f->body_case != MCEFA__PEER_FRAME__BODY_AUTH) {
        snprintf(txt, sizeof(txt),
                 "host %s requires peer authentication (peer_auth=psk): give both daemons the same "
                 "peer_secret_file",
                 ident_hostname());
        refuse(c, f->seq, -EACCES, txt,
               "the peer did not authenticate (peer_auth=none there, or not an mcefad): give both daemons the same "
               "peer_secret_file");
        return;
    }
    const Mcefa__PeerAuth *a = f->auth;
    peer_session *x = c->sess;
    switch (c->stage) {
    case ST_WAIT_AUTH1:
        if (!auth_identity_ok(c, a, 1)) {
            refuse(c, 0, -EPROTO, "malformed peer authentication (step 1)", "malformed peer authentication (step 1)");
            return;
        }
        peer_auth_new_nonce(x);
        peer_auth_derive(x, false, a->hostname, a->epoch, a->nonce.data, ident_hostname(), ident_epoch(),
                         x->my_nonce);
        send_auth(c, 2);
        c->stage = ST_WAIT_AUTH3;
        return;
    case ST_WAIT_AUTH2:
        if (!auth_identity_ok(c, a, 2)) {
            refuse(c, 0, -EPROTO, "malformed peer authentication (step 2)", "malformed peer authentication (step 2)");
            return;
        }
        peer_auth_derive(x, true, ident_hostname(), ident_epoch(), x->my_nonce, a->hostname, a->epoch,
                         a->nonce.data);
        if (!peer_auth_proof_ok(x, a->proof.data, a->proof.len)) {
            snprintf(txt, sizeof(txt), "host %s could not verify your peer authentication: %s", ident_hostname(),
                     wrong_secret);
            char why[400];
            snprintf(why, sizeof(why), "host %s failed our peer authentication: %s", peer_link_conn_name(c), wrong_secret);
            refuse(c, 0, -EACCES, txt, why);
            return;
        }
        send_auth(c, 3);
        if (c->closing)
            return;
        c->stage = ST_OPEN;
        if (peer_link_on_connect_fn)
            peer_link_on_connect_fn(c);
        return;
    case ST_WAIT_AUTH3:
        if (a->step != 3 || !peer_auth_proof_ok(x, a->proof.data, a->proof.len)) {
            snprintf(txt, sizeof(txt), "host %s rejected your peer authentication: %s", ident_hostname(),
                     wrong_secret);
            char why[400];
            snprintf(why, sizeof(why), "a peer claiming host %s failed authentication: %s", c->auth_host,
                     wrong_secret);
            refuse(c, 0, -EACCES, txt, why);
            return;
        }
        c->stage = ST_OPEN;
        return;
    case ST_OPEN:
        break;
    }
}

/* Every frame read: the handshake, then (psk) opening the seal. */
void peer_link_receive(peer_conn *c, const Mcefa__PeerFrame *f)
{
    if (c->stage != ST_OPEN) {
        auth_frame(c, f);
        return;
    }
    if (!c->sess) {
        if (f->body_case == MCEFA__PEER_FRAME__BODY_AUTH || f->body_case == MCEFA__PEER_FRAME__BODY_SEALED) {
            char txt[300];
            snprintf(txt, sizeof(txt),
                     "host %s runs with peer_auth=none and cannot authenticate: set peer_auth=psk and the same "
                     "peer_secret_file on both daemons",
                     ident_hostname());
            refuse(c, f->seq, -EACCES, txt,
                   "the peer wants to authenticate (peer_auth=psk) and this daemon has peer_auth=none: set the "
                   "same peer_auth and peer_secret_file on both");
            return;
        }
        peer_link_deliver(c, f);
        return;
    }
    if (f->body_case != MCEFA__PEER_FRAME__BODY_SEALED) {
        if (f->reply && f->status < 0) {
            auth_frame(c, f); /* its refusal, after our proof went out */
            return;
        }
        stats_protocol_error();
        log_warn("peer connection %s (%s): a frame that is not sealed after authentication; closing", c->remote,
                 peer_link_conn_name(c));
        peer_link_close(c, "the peer sent a frame that is not sealed after authentication");
        return;
    }
    uint8_t *in;
    size_t len;
    Mcefa__PeerFrame *g = NULL;
    if (peer_auth_open(c->sess, f->sealed.data, f->sealed.len, &in, &len) == 0) {
        g = mcefa__peer_frame__unpack(NULL, len, in);
        free(in);
    }
    if (!g || g->body_case == MCEFA__PEER_FRAME__BODY_AUTH || g->body_case == MCEFA__PEER_FRAME__BODY_SEALED) {
        if (g)
            mcefa__peer_frame__free_unpacked(g, NULL);
        stats_protocol_error();
        log_warn("peer connection %s (%s): a sealed frame failed to open (tampered, replayed or reordered); "
                 "closing",
                 c->remote, peer_link_conn_name(c));
        peer_link_close(c, "a sealed frame from the peer failed to open (tampered, replayed or reordered)");
        return;
    }
    peer_link_deliver(c, g);
    mcefa__peer_frame__free_unpacked(g, NULL);
}

void peer_link_auth_start(peer_conn *c)
{
    peer_auth_new_nonce(c->sess);
    send_auth(c, 1); /* the hello follows once the listener proved itself */
}
