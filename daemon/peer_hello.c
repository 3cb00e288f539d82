#include "peer_hello.h"

#include <errno.h>
#include <inttypes.h>
#include <rdma/fi_domain.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ident.h"
#include "log.h"
#include "peer_auth.h"
#include "peer_hello_check.h"
#include "peer_link.h"
#include "staging.h"
#include "wire.h"

static const char *provider;

/* The fabric all local NICs are on, "" when they are on several. */
static const char *host_fabric(void)
{
    unsigned nn = nic_count();
    for (unsigned i = 1; i < nn; i++)
        if (strcmp(nic_get(i)->fabric, nic_get(0)->fabric) != 0)
            return "";
    return nn ? nic_get(0)->fabric : "";
}

/* Our hello; nv/np have room for every local NIC. */
static void fill_hello(Mcefa__PeerHello *h, Mcefa__PeerNic *nv, Mcefa__PeerNic **np)
{
    unsigned nn = nic_count();
    mcefa__peer_hello__init(h);
    h->protocol_version = MCEFA_PROTOCOL_VERSION;
    h->hostname = (char *)ident_hostname();
    h->epoch = ident_epoch();
    h->provider = (char *)provider;
    h->libfabric_version = fi_version();
    h->fabric = (char *)host_fabric();
    h->staging_slot_bytes = staging_slots() ? staging_slot_bytes() : 0;
    h->n_nics = nn;
    h->nics = np;
    for (unsigned i = 0; i < nn; i++) {
        nic *n = nic_get(i);
        mcefa__peer_nic__init(&nv[i]);
        nv[i].name = n->name;
        nv[i].fabric = n->fabric;
        nv[i].address.data = n->addr;
        nv[i].address.len = n->addrlen;
        nv[i].warmup_addr = n->warmup.rma_base;
        nv[i].warmup_key = n->warmup.key;
        np[i] = &nv[i];
    }
}

/* Every remote NIC address into each local NIC's AV, one insert per NIC. */
static int insert_addresses(peer *p, err *e)
{
    for (unsigned i = 0; i < nic_count(); i++) {
        nic *n = nic_get(i);
        uint8_t all[NIC_MAX * NIC_ADDR_MAX];
        unsigned idx[NIC_MAX], cnt = 0;
        size_t off = 0;
        for (unsigned j = 0; j < p->nrnics; j++)
            if (!strcmp(p->rnic[j].fabric, n->fabric) && p->rnic[j].addrlen == n->addrlen) {
                memcpy(all + off, p->rnic[j].addr, p->rnic[j].addrlen);
                off += p->rnic[j].addrlen;
                idx[cnt++] = j;
            }
        if (!cnt)
            continue;
        fi_addr_t out[NIC_MAX];
        int rc = fi_av_insert(n->av, all, cnt, out, 0, NULL);
        if (rc != (int)cnt)
            return err_set(e, -EIO, "NIC %s: inserting %u addresses of peer %s failed (%d)", n->name, cnt,
                           p->remote_hostname, rc);
        for (unsigned k = 0; k < cnt; k++)
            *peer_pair_slot(p, i, idx[k]) = out[k];
    }
    return 0;
}

/* peer_hello_check and the fabric check against this host's NICs. */
static int check_hello(const Mcefa__PeerHello *h, err *e)
{
    size_t lens[NIC_MAX];
    const char *fabrics[NIC_MAX];
    unsigned nn = nic_count();
    for (unsigned i = 0; i < nn; i++) {
        lens[i] = nic_get(i)->addrlen;
        fabrics[i] = nic_get(i)->fabric;
    }
    peer_hello_local me = {.hostname = ident_hostname(),
                           .provider = provider,
                           .fabric = host_fabric(),
                           .libfabric_version = fi_version(),
                           .nic_fabrics = fabrics,
                           .nnics = nn};
    int rc = peer_hello_check(h, provider, lens, nn, e);
    return rc < 0 ? rc : peer_hello_fabric_check(h, &me, e);
}

/* Takes in a peer's hello: version and provider checks, then its NICs. */
static int apply_hello(peer *p, const Mcefa__PeerHello *h, err *e)
{
    if (check_hello(h, e) < 0)
        return e->code;
    if (h->protocol_version != MCEFA_PROTOCOL_VERSION)
        return err_set(e, -EPROTONOSUPPORT,
                       "peer %s speaks protocol %u, this daemon %u; run the same mcefad version on both", h->hostname,
                       h->protocol_version, MCEFA_PROTOCOL_VERSION);
    if (strcmp(h->provider, provider) != 0)
        return err_set(e, -EPROTO, "peer %s uses provider '%s', this daemon '%s'; configure the same provider on both",
                       h->hostname, h->provider, provider);
    p->staging_slot = h->staging_slot_bytes;
    if (p->epoch == h->epoch && p->nrnics == h->n_nics)
        return 0; /* a reconnect to the same incarnation: entries stand */
    if (p->epoch && p->epoch != h->epoch)
        log_info("peer %s restarted (epoch %016" PRIx64 " -> %016" PRIx64 "): replacing its address entries", p->host,
                 p->epoch, h->epoch);
    peer_forget_av(p);
    p->layout_gen++;
    p->epoch = 0; /* set once every entry is in: a half-applied hello is redone */
    snprintf(p->remote_hostname, sizeof(p->remote_hostname), "%s", h->hostname);
    if (peer_resize(p, (unsigned)h->n_nics) < 0)
        return err_set(e, -ENOMEM, "out of memory taking in peer %s's NICs", h->hostname);
    for (unsigned j = 0; j < p->nrnics; j++) {
        const Mcefa__PeerNic *n = h->nics[j];
        remote_nic *r = &p->rnic[j];
        snprintf(r->name, sizeof(r->name), "%s", n->name);
        snprintf(r->fabric, sizeof(r->fabric), "%s", n->fabric);
        if (n->address.len)
            memcpy(r->addr, n->address.data, n->address.len);
        r->addrlen = n->address.len;
        r->warmup_addr = n->warmup_addr;
        r->warmup_key = n->warmup_key;
    }
    if (insert_addresses(p, e) < 0) {
        peer_forget_av(p);
        return e->code;
    }
    p->epoch = h->epoch;
    log_info("peer %s (%s): epoch %016" PRIx64 ", %u NICs, fabric %s, libfabric %u.%u", p->host, p->address, p->epoch,
             p->nrnics, *h->fabric ? h->fabric : "(several)", FI_MAJOR(h->libfabric_version),
             FI_MINOR(h->libfabric_version));
    return 0;
}

/* With peer_auth=psk the hello must come from the host that proved itself:
 * only it may set that host's epoch and addresses. */
static int check_identity(peer_conn *c, const Mcefa__PeerHello *h, err *e)
{
    uint64_t epoch;
    const char *who = peer_link_auth_host(c, &epoch);
    if (who && (strcmp(who, h->hostname) != 0 || epoch != h->epoch))
        return err_set(e, -EACCES, "a peer authenticated as host %s said hello as another host or epoch", who);
    return 0;
}

static void on_hello_reply(peer_conn *c, void *arg, const Mcefa__PeerFrame *f)
{
    (void)arg;
    peer *p = peer_link_peer(c);
    if (peer_link_closing(c))
        return; /* closing ended the attempt already */
    err e = {0};
    int rc = f->status;
    if (rc < 0) {
        char theirs[300];
        peer_text_clean(theirs, sizeof(theirs), f->error);
        err_set(&e, rc, "peer %s refused the handshake: %s", p->host, theirs);
    } else if (f->body_case != MCEFA__PEER_FRAME__BODY_HELLO) {
        rc = err_set(&e, -EPROTO, "peer %s answered the handshake without a hello", p->host);
    } else if ((rc = check_identity(c, f->hello, &e)) == 0) {
        rc = apply_hello(p, f->hello, &e);
    }
    if (rc < 0) {
        snprintf(p->last_error, sizeof(p->last_error), "%s", e.text);
        log_warn("%s", e.text);
        peer_link_attempt_done(p, c, rc, e.text);
        peer_link_close(c, e.text);
        return;
    }
    peer_link_bind(c, p);
    if (p->conn && p->conn != c && !peer_link_closing(p->conn)) {
        /* The peer connected to us meanwhile: one connection is enough. */
        peer_link_attempt_done(p, c, 0, NULL);
        peer_link_close(c, "a connection to this peer is already up");
        return;
    }
    p->conn = c;
    p->last_error[0] = 0;
    peer_link_attempt_done(p, c, 0, NULL);
}

static void send_hello(peer_conn *c)
{
    Mcefa__PeerHello h;
    Mcefa__PeerNic nv[NIC_MAX], *np[NIC_MAX];
    fill_hello(&h, nv, np);
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.body_case = MCEFA__PEER_FRAME__BODY_HELLO;
    f.hello = &h;
    if (peer_link_request(c, &f, on_hello_reply, NULL) < 0)
        peer_link_close(c, "cannot send the handshake");
}

static void serve_hello(peer_conn *c, uint64_t seq, const Mcefa__PeerFrame *fr)
{
    const Mcefa__PeerHello *h = fr->hello;
    err e = {0};
    peer *p = NULL;
    if (peer_link_peer(c)) {
        peer_link_reply_error(c, seq, -EPROTO, "hello sent twice on one connection");
        peer_link_close(c, "a second hello on one connection");
        return;
    }
    /* Checked before the table is touched: a bad hello adds no peer and
     * replaces nothing. */
    int rc = check_hello(h, &e);
    if (rc == 0)
        rc = check_identity(c, h, &e);
    char name[300];
    snprintf(name, sizeof(name), "%s:0", rc == 0 ? h->hostname : "?");
    if (rc == 0)
        rc = peer_for_name(name, &p, &e);
    if (rc == 0 && p->epoch && p->epoch != h->epoch)
        /* The host restarted and reached us before we noticed: its old
         * connections are dead. */
        peer_link_close_others(p, c, "the peer came back with a new epoch");
    if (rc == 0 && peer_link_count(p) >= PEER_CONNS_PER_PEER)
        rc = err_set(&e, -EMFILE, "host %s has %d connections to this daemon already; it should need one", h->hostname,
                     PEER_CONNS_PER_PEER);
    if (rc == 0)
        rc = apply_hello(p, h, &e);
    if (rc < 0) {
        log_warn("refusing a peer handshake: %s", e.text);
        peer_link_reply_error(c, seq, rc, "%s", e.text);
        peer_link_close(c, "its hello was refused");
        return;
    }
    peer_link_bind(c, p);
    if (!p->conn) {
        p->conn = c; /* one connection serves both directions */
        peer_link_run_waiters(p, 0, NULL);
    }
    Mcefa__PeerHello mine;
    Mcefa__PeerNic nv[NIC_MAX], *np[NIC_MAX];
    fill_hello(&mine, nv, np);
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.seq = seq;
    f.reply = true;
    f.body_case = MCEFA__PEER_FRAME__BODY_HELLO;
    f.hello = &mine;
    peer_link_send(c, &f);
}

void peer_hello_init(const char *prov)
{
    provider = prov;
    peer_link_serve(MCEFA__PEER_FRAME__BODY_HELLO, serve_hello, true);
    peer_link_on_connect(send_hello);
}
