/* Writes the seed corpus of the fuzz targets: a few valid frames of each
 * kind, packed by the real code (make fuzz-seeds; the output is committed
 * under tests/fuzz/corpus/<target>/). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

static const char *dir;

static void put(const char *target, const char *name, uint8_t prefix, int use_prefix, const uint8_t *b, size_t n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s/%s", dir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || (use_prefix && fwrite(&prefix, 1, 1, f) != 1) || (n && fwrite(b, 1, n, f) != n) || fclose(f)) {
        perror(path);
        exit(1);
    }
}

static void put_msg(const char *target, const char *name, int prefix, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(n + 1);
    protobuf_c_message_pack(m, b);
    put(target, name, (uint8_t)prefix, prefix >= 0, b, n);
    free(b);
}

/* A stream of two frames for the wire target (prefix: the read size). */
static void put_stream(const char *name, const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    uint8_t *x, *y;
    size_t xl, yl;
    if (wire_pack(a, &x, &xl) < 0 || wire_pack(b, &y, &yl) < 0)
        exit(1);
    uint8_t *s = malloc(xl + yl);
    memcpy(s, x, xl);
    memcpy(s + xl, y, yl);
    put("wire", name, 3, 1, s, xl + yl);
    free(x), free(y), free(s);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_seeds DIR\n");
        return 2;
    }
    dir = argv[1];

    Mcefa__Hello hi = MCEFA__HELLO__INIT;
    hi.protocol_version = MCEFA_PROTOCOL_VERSION;
    Mcefa__Request rq = MCEFA__REQUEST__INIT;
    rq.seq = 1;
    rq.body_case = MCEFA__REQUEST__BODY_HELLO;
    rq.hello = &hi;
    Mcefa__Response rs = MCEFA__RESPONSE__INIT;
    rs.seq = 1;
    rs.status = -5;
    rs.error = "no";
    put_stream("hello", &rq.base, &rs.base);

    uint8_t addr[16] = {2, 0, 0x1f, 0x90, 127, 0, 0, 1};
    Mcefa__PeerNic nic = MCEFA__PEER_NIC__INIT, *nics[1] = {&nic};
    nic.name = "eth0";
    nic.fabric = "127.0.0.0/8";
    nic.address.data = addr;
    nic.address.len = sizeof(addr);
    Mcefa__PeerHello ph = MCEFA__PEER_HELLO__INIT;
    ph.protocol_version = MCEFA_PROTOCOL_VERSION;
    ph.hostname = "hostA";
    ph.epoch = 7;
    ph.provider = "tcp";
    ph.n_nics = 1;
    ph.nics = nics;
    Mcefa__PeerFrame pf = MCEFA__PEER_FRAME__INIT;
    pf.seq = 3;
    pf.body_case = MCEFA__PEER_FRAME__BODY_HELLO;
    pf.hello = &ph;
    put_msg("peer", "hello", -1, &pf.base);

    uint64_t ra[2] = {0x1000, 0x2000}, rk[2] = {11, 12};
    Mcefa__RemoteRegion rr[2] = {MCEFA__REMOTE_REGION__INIT, MCEFA__REMOTE_REGION__INIT}, *rp[2] = {&rr[0], &rr[1]};
    for (int i = 0; i < 2; i++) {
        rr[i].addr = 0x10000 * (uint64_t)(i + 1);
        rr[i].length = 0x8000;
        rr[i].n_rma_addr = rr[i].n_rma_key = 2;
        rr[i].rma_addr = ra;
        rr[i].rma_key = rk;
    }
    Mcefa__SegmentDescriptor sd = MCEFA__SEGMENT_DESCRIPTOR__INIT;
    sd.name = "seg";
    sd.n_regions = 2;
    sd.regions = rp;
    pf.seq = 2; /* the target's peer has seq % 5 NICs */
    pf.body_case = MCEFA__PEER_FRAME__BODY_SEGMENT;
    pf.segment = &sd;
    put_msg("peer", "segment", -1, &pf.base);

    uint8_t nonce[32] = {1}, proof[32] = {3};
    Mcefa__PeerAuth au = MCEFA__PEER_AUTH__INIT;
    au.step = 2;
    au.hostname = "them";
    au.epoch = 7;
    au.nonce.data = nonce;
    au.nonce.len = sizeof(nonce);
    au.proof.data = proof;
    au.proof.len = sizeof(proof);
    pf.seq = 0;
    pf.body_case = MCEFA__PEER_FRAME__BODY_AUTH;
    pf.auth = &au;
    put_msg("peer", "auth", -1, &pf.base);
    put_msg("auth", "step2", 0, &pf.base);
    pf.body_case = MCEFA__PEER_FRAME__BODY_HELLO;
    pf.hello = &ph;
    put_msg("auth", "sealed-hello", 2, &pf.base);
    put("auth", "open-short", 1, 1, proof, sizeof(proof));
    return 0;
}
