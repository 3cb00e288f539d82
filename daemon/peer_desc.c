#include "peer_desc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ident.h"
#include "log.h"
#include "peer_auth.h"
#include "peer_link.h"
#include "segment.h"
#include "xfer_stage.h"

static void serve_get_segment(peer_conn *c, uint64_t seq, const Mcefa__PeerFrame *fr)
{
    const Mcefa__GetSegment *g = fr->get_segment;
    segment_entry *e = segment_find(g->name);
    if (!e) {
        peer_link_reply_error(c, seq, -ENOENT, "segment '%s' not found on host %s: no client there exports it",
                              g->name, ident_hostname());
        return;
    }
    const region_table *t = e->regions;
    unsigned nn = nic_count();
    Mcefa__SegmentDescriptor d = MCEFA__SEGMENT_DESCRIPTOR__INIT;
    d.name = e->name;
    d.regions = calloc(t->n + 1, sizeof(*d.regions));
    Mcefa__RemoteRegion *rv = calloc(t->n + 1, sizeof(*rv));
    uint64_t *vals = calloc(2 * (t->n + 1) * (nn + 1), sizeof(uint64_t));
    if (!d.regions || !rv || !vals) {
        free(d.regions);
        free(rv);
        free(vals);
        peer_link_reply_error(c, seq, -ENOMEM, "host %s is out of memory describing segment '%s'", ident_hostname(),
                              g->name);
        return;
    }
    /* Plain host memory, and GPU memory no NIC registered, go in as
     * staged: other hosts reach them through this daemon's staging buffers
     * (StagedOp). */
    size_t i = 0;
    for (size_t k = 0; k < t->n; k++) {
        region *r = t->v[k];
        mcefa__remote_region__init(&rv[i]);
        rv[i].addr = r->addr;
        rv[i].length = r->length;
        rv[i].numa_node = r->numa_node;
        rv[i].nics_preferred = r->near;
        if (region_is_staged(r)) {
            rv[i].staged = true;
            rv[i].region_id = r->id;
            d.regions[i] = &rv[i];
            i++;
            continue;
        }
        rv[i].n_rma_addr = rv[i].n_rma_key = r->nmrs;
        rv[i].rma_addr = vals + 2 * i * (nn + 1);
        rv[i].rma_key = rv[i].rma_addr + nn + 1;
        for (unsigned k = 0; k < r->nmrs; k++) {
            rv[i].rma_addr[k] = r->mrs[k].rma_base;
            rv[i].rma_key[k] = r->mrs[k].key;
            if (!region_on_nic(r, k))
                rv[i].nics_absent |= 1ull << k; /* registered with the NICs of its NUMA node only */
        }
        d.regions[i] = &rv[i];
        i++;
    }
    d.n_regions = i;
    Mcefa__PeerFrame f = MCEFA__PEER_FRAME__INIT;
    f.seq = seq;
    f.reply = true;
    f.body_case = MCEFA__PEER_FRAME__BODY_SEGMENT;
    f.segment = &d;
    peer_link_send(c, &f);
    free(vals);
    free(rv);
    free(d.regions);
}

typedef struct seg_req {
    peer *p;
    peer_segment_cb cb;
    void *arg;
    char name[300];
    Mcefa__GetSegment g;
    Mcefa__PeerFrame f;
} seg_req;

static void on_segment_reply(peer_conn *c, void *arg, const Mcefa__PeerFrame *f)
{
    (void)c;
    seg_req *r = arg;
    char theirs[400];
    if (f->status < 0) {
        peer_text_clean(theirs, sizeof(theirs), f->error); /* bound for a log or a client's reply */
        r->cb(r->arg, r->p, f->status, theirs, NULL);
    } else if (f->body_case != MCEFA__PEER_FRAME__BODY_SEGMENT || !f->segment->name ||
               strcmp(f->segment->name, r->name) != 0)
        r->cb(r->arg, r->p, -EPROTO, "peer answered without a segment descriptor", NULL);
    else
        r->cb(r->arg, r->p, 0, NULL, f->segment);
    peer_release(r->p);
    free(r);
}

void peer_get_segment(peer *p, const char *name, peer_segment_cb cb, void *arg)
{
    seg_req *r = calloc(1, sizeof(*r));
    if (!r) {
        log_error("out of memory fetching a segment descriptor; exiting");
        abort();
    }
    r->p = p;
    r->cb = cb;
    r->arg = arg;
    snprintf(r->name, sizeof(r->name), "%s", name);
    mcefa__get_segment__init(&r->g);
    r->g.name = r->name;
    mcefa__peer_frame__init(&r->f);
    r->f.body_case = MCEFA__PEER_FRAME__BODY_GET_SEGMENT;
    r->f.get_segment = &r->g;
    peer_hold(p);
    peer_request_when_up(p, &r->f, on_segment_reply, r);
}

void peer_desc_init(void)
{
    peer_link_serve(MCEFA__PEER_FRAME__BODY_GET_SEGMENT, serve_get_segment, false);
}
