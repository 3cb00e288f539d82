/* libFuzzer target: every message a peer daemon sends. The input is one
 * PeerFrame as it comes off the link; its hello goes through the checks
 * the handshake applies (for a tcp and an efa provider), its segment
 * descriptor through remote_from_descriptor and lookups in the result,
 * its texts through the cleaning they get on the way to a log. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "peer_auth.h"
#include "peer_hello_check.h"
#include "remote.h"

/* remote.c asks the peer table about the peer; a fixed peer stands in. */
static unsigned fake_nrnics;
unsigned peer_nrnics(const peer *p)
{
    (void)p;
    return fake_nrnics;
}
uint64_t peer_epoch(const peer *p)
{
    (void)p;
    return 42;
}
uint64_t peer_layout_gen(const peer *p)
{
    (void)p;
    return 1;
}
const char *peer_host(const peer *p)
{
    (void)p;
    return "fuzz-peer";
}

static void check_hello(const Mcefa__PeerHello *h)
{
    /* sockaddr_in and sockaddr_in6 for tcp; efa's 32-byte addresses. */
    static const size_t tcp[] = {16, 28}, efa[] = {32};
    err e = {0};
    peer_hello_check(h, "tcp", tcp, 2, &e);
    if (peer_hello_check(h, "efa", efa, 1, &e) == 0) {
        /* Only a hello that passed the checks reaches the fabric check. */
        const char *fabrics[] = {"efa-direct", "efa"};
        peer_hello_local me = {"fuzz-host", "efa", "efa-direct", FI_VERSION(2, 4), fabrics, 2};
        peer_hello_fabric_check(h, &me, &e);
    }
}

static void check_segment(const Mcefa__SegmentDescriptor *d, uint64_t seq)
{
    err e = {0};
    fake_nrnics = (unsigned)(seq % 5); /* 0..4 remote NICs */
    remote_segment *r = remote_from_descriptor((peer *)&fake_nrnics, d, &e);
    if (!r)
        return;
    for (size_t i = 0; i < r->nregions; i++) {
        const remote_region *x = &r->regions[i];
        remote_find(r, x->addr, x->length);
        remote_find(r, x->addr + x->length - 1, 2);
        remote_find(r, x->addr - 1, 1);
    }
    remote_find(r, seq, 1);
    remote_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Mcefa__PeerFrame *f = mcefa__peer_frame__unpack(NULL, size, data);
    if (!f)
        return 0;
    char txt[300];
    peer_text_clean(txt, sizeof(txt), f->error);
    switch (f->body_case) {
    case MCEFA__PEER_FRAME__BODY_HELLO:
        check_hello(f->hello);
        break;
    case MCEFA__PEER_FRAME__BODY_SEGMENT:
        check_segment(f->segment, f->seq);
        break;
    case MCEFA__PEER_FRAME__BODY_GET_SEGMENT:
        peer_text_clean(txt, sizeof(txt), f->get_segment->name);
        break;
    case MCEFA__PEER_FRAME__BODY_AUTH:
        for (uint32_t step = 1; step <= 2; step++)
            peer_auth_step_ok(f->auth, step, 255);
        break;
    default:
        break;
    }
    mcefa__peer_frame__free_unpacked(f, NULL);
    return 0;
}
