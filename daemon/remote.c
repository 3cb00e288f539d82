#include "remote.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void remote_free(remote_segment *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nregions; i++)
        free(r->regions[i].rma_addr);
    free(r->regions);
    free(r->name);
    free(r);
}

remote_segment *remote_from_descriptor(peer *p, const Mcefa__SegmentDescriptor *d, err *e)
{
    remote_segment *r = calloc(1, sizeof(*r));
    if (!r || !(r->name = strdup(d->name)) || !(r->regions = calloc(d->n_regions + 1, sizeof(*r->regions)))) {
        remote_free(r);
        err_set(e, -ENOMEM, "out of memory");
        return NULL;
    }
    unsigned nr = peer_nrnics(p);
    r->peer = p;
    r->epoch = peer_epoch(p);
    r->layout_gen = peer_layout_gen(p);
    r->nrnics = nr;
    uint64_t prev_end = 0;
    for (size_t i = 0; i < d->n_regions; i++) {
        const Mcefa__RemoteRegion *x = d->regions[i];
        remote_region *rr = &r->regions[i];
        size_t want = x->staged ? 0 : nr;
        if (x->n_rma_addr != want || x->n_rma_key != want || x->length == 0 || x->addr + x->length < x->addr ||
            (i && x->addr < prev_end)) {
            err_set(e, -EPROTO, "peer %s sent an inconsistent description of segment '%s' (region %zu)",
                    peer_host(p), d->name, i);
            remote_free(r);
            return NULL;
        }
        prev_end = x->addr + x->length;
        rr->addr = x->addr;
        rr->length = x->length;
        rr->numa_node = x->numa_node;
        rr->absent = x->staged ? ~UINT64_C(0) : x->nics_absent;
        rr->preferred = x->nics_preferred; /* only ever chooses among NICs that hold it */
        rr->staged = x->staged;
        rr->region_id = x->region_id;
        rr->rma_addr = calloc(2 * ((size_t)nr + 1), sizeof(uint64_t));
        if (!rr->rma_addr) {
            err_set(e, -ENOMEM, "out of memory");
            remote_free(r);
            return NULL;
        }
        rr->rma_key = rr->rma_addr + nr + 1;
        if (want) {
            memcpy(rr->rma_addr, x->rma_addr, nr * sizeof(uint64_t));
            memcpy(rr->rma_key, x->rma_key, nr * sizeof(uint64_t));
        }
        r->nregions++;
    }
    return r;
}

remote_region *remote_find(const remote_segment *rs, uint64_t addr, uint64_t len)
{
    if (addr + len < addr)
        return NULL;
    size_t lo = 0, hi = rs->nregions;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (rs->regions[mid].addr <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    remote_region *r = &rs->regions[lo - 1];
    if (addr - r->addr >= r->length || len > r->length - (addr - r->addr))
        return NULL;
    return r;
}
