/* libFuzzer target: the peer handshake (peer_auth=psk) as far as it is a
 * function of received bytes. The first byte picks what the rest is:
 *   0: a plaintext PeerFrame, taken as the handshake takes it (step
 *      checks, key derivation from what it names, the proof check, and
 *      opening its sealed body);
 *   1: bytes given straight to peer_auth_open;
 *   2: a frame the other side seals properly, then opened and unpacked
 *      (so the code behind a good seal is reached too), and must not open
 *      a second time.
 * The secret is the one a daemon without peer_auth_init has: fixed. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "peer_auth.h"

static const uint8_t nonce_i[PEER_AUTH_NONCE_LEN] = {1}, nonce_r[PEER_AUTH_NONCE_LEN] = {2};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    if (sodium_init() < 0)
        abort();
    return 0;
}

/* The two ends of one connection: ours answered, theirs connected. */
static void pair(peer_session *ours, peer_session *theirs)
{
    peer_auth_derive(ours, false, "them", 7, nonce_i, "us", 9, nonce_r);
    peer_auth_derive(theirs, true, "them", 7, nonce_i, "us", 9, nonce_r);
}

static void open_and_unpack(peer_session *s, const uint8_t *in, size_t len)
{
    uint8_t *out;
    size_t outlen;
    if (peer_auth_open(s, in, len, &out, &outlen) < 0)
        return;
    Mcefa__PeerFrame *g = mcefa__peer_frame__unpack(NULL, outlen, out);
    if (g)
        mcefa__peer_frame__free_unpacked(g, NULL);
    free(out);
}

static void plaintext(peer_session *ours, const uint8_t *data, size_t size)
{
    Mcefa__PeerFrame *f = mcefa__peer_frame__unpack(NULL, size, data);
    if (!f)
        return;
    char txt[300];
    peer_text_clean(txt, sizeof(txt), f->error);
    if (f->body_case == MCEFA__PEER_FRAME__BODY_AUTH) {
        const Mcefa__PeerAuth *a = f->auth;
        peer_session s;
        if (peer_auth_step_ok(a, 1, 255)) /* we answer: derive from their step 1 */
            peer_auth_derive(&s, false, a->hostname, a->epoch, a->nonce.data, "us", 9, nonce_r);
        if (peer_auth_step_ok(a, 2, 255)) { /* we connected: their step 2 proves */
            peer_auth_derive(&s, true, "us", 9, nonce_r, a->hostname, a->epoch, a->nonce.data);
            peer_auth_proof_ok(&s, a->proof.data, a->proof.len);
        }
        peer_auth_proof_ok(ours, a->proof.data, a->proof.len); /* step 3 */
    } else if (f->body_case == MCEFA__PEER_FRAME__BODY_SEALED) {
        open_and_unpack(ours, f->sealed.data, f->sealed.len);
    }
    mcefa__peer_frame__free_unpacked(f, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0] % 3;
    data++, size--;
    peer_session ours, theirs;
    pair(&ours, &theirs);
    if (mode == 0) {
        plaintext(&ours, data, size);
    } else if (mode == 1) {
        open_and_unpack(&ours, data, size);
    } else {
        uint8_t *sealed;
        size_t slen;
        if (peer_auth_seal(&theirs, data, size, &sealed, &slen) < 0)
            return 0;
        open_and_unpack(&ours, sealed, slen);
        uint8_t *again;
        size_t alen;
        /* A replay is refused: the receive counter moved on. */
        if (peer_auth_open(&ours, sealed, slen, &again, &alen) == 0)
            abort();
        free(sealed);
    }
    peer_auth_wipe(&ours);
    peer_auth_wipe(&theirs);
    return 0;
}
