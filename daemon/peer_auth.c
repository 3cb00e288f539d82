#include "peer_auth.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static bool enabled;
static uint8_t master[crypto_kdf_KEYBYTES];

/* Sub-key ids of crypto_kdf; the context names the protocol version, so a
 * later handshake cannot be confused with this one. */
#define KDF_CONTEXT "mcefapr1"
enum { KDF_PROOF_I = 1, KDF_PROOF_R, KDF_KEY_I2R, KDF_KEY_R2I };

_Static_assert(PEER_AUTH_OVERHEAD == crypto_aead_xchacha20poly1305_ietf_ABYTES, "AEAD tag size");
_Static_assert(PEER_AUTH_KEY_LEN == crypto_aead_xchacha20poly1305_ietf_KEYBYTES, "AEAD key size");

static int load_secret(const char *path, err *e)
{
    if (!path || !*path)
        return err_set(e, -ENOENT,
                       "peer_auth=psk needs a cluster secret, and peer_secret_file is not set: create one with "
                       "'mcefactl gen-secret /etc/mcefad/peer.secret', copy it to every host, and set "
                       "peer_secret_file (or peer_auth=none to run without authentication)");
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return err_set(e, -errno,
                       "peer_secret_file %s: %s; create it with 'mcefactl gen-secret %s' (the same file on every "
                       "host)",
                       path, strerror(errno), path);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(e, -EINVAL, "peer_secret_file %s is not a regular file; create it with 'mcefactl gen-secret'",
                       path);
    }
    if (st.st_mode & 077) {
        close(fd);
        return err_set(e, -EPERM,
                       "peer_secret_file %s may be read by group or others (mode %04o): run 'chmod 600 %s' (and "
                       "make the daemon's user its owner)",
                       path, (unsigned)(st.st_mode & 07777), path);
    }
    uint8_t buf[4096];
    ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    if (n < 0)
        return err_set(e, -errno, "peer_secret_file %s: %s", path, strerror(errno));
    size_t a = 0, b = (size_t)n;
    while (a < b && (buf[a] == ' ' || buf[a] == '\n' || buf[a] == '\r' || buf[a] == '\t'))
        a++;
    while (b > a && (buf[b - 1] == ' ' || buf[b - 1] == '\n' || buf[b - 1] == '\r' || buf[b - 1] == '\t'))
        b--;
    if (b - a < PEER_SECRET_MIN) {
        sodium_memzero(buf, sizeof(buf));
        return err_set(e, -EINVAL,
                       "peer_secret_file %s holds %zu bytes, fewer than %u: make a new one with 'mcefactl "
                       "gen-secret %s'",
                       path, b - a, PEER_SECRET_MIN, path);
    }
    /* Any text of enough entropy works: the key is its hash. */
    crypto_generichash(master, sizeof(master), buf + a, b - a, NULL, 0);
    sodium_memzero(buf, sizeof(buf));
    return 0;
}

int peer_auth_init(const char *mode, const char *path, err *e)
{
    if (sodium_init() < 0)
        return err_set(e, -EIO, "libsodium failed to initialise; check the installation of libsodium");
    if (!strcmp(mode, "none")) {
        enabled = false;
        log_warn("*** peer_auth=none: ANY host that reaches peer_port can read and write the memory this daemon "
                 "exports; use only on a network you fully trust (set peer_auth=psk and peer_secret_file) ***");
        return 0;
    }
    if (strcmp(mode, "psk") != 0)
        return err_set(e, -EINVAL, "peer_auth '%s' is unknown; give psk or none", mode);
    int rc = load_secret(path, e);
    if (rc < 0)
        return rc;
    enabled = true;
    log_info("peers authenticate with the secret in %s", path);
    return 0;
}

bool peer_auth_enabled(void)
{
    return enabled;
}

void peer_auth_shutdown(void)
{
    sodium_memzero(master, sizeof(master));
}

void peer_auth_new_nonce(peer_session *s)
{
    randombytes_buf(s->my_nonce, sizeof(s->my_nonce));
}

/* Host names go in with their length, so no two transcripts hash alike. */
static void absorb_side(crypto_generichash_state *st, const char *host, uint64_t epoch, const uint8_t *nonce)
{
    uint8_t len[2] = {(uint8_t)(strlen(host) & 0xff), (uint8_t)(strlen(host) >> 8)};
    uint8_t ep[8];
    for (int k = 0; k < 8; k++)
        ep[k] = (uint8_t)(epoch >> (8 * k));
    crypto_generichash_update(st, len, sizeof(len));
    crypto_generichash_update(st, (const uint8_t *)host, strlen(host));
    crypto_generichash_update(st, ep, sizeof(ep));
    crypto_generichash_update(st, nonce, PEER_AUTH_NONCE_LEN);
}

int peer_auth_derive(peer_session *s, bool initiator, const char *host_i, uint64_t epoch_i, const uint8_t *nonce_i,
                     const char *host_r, uint64_t epoch_r, const uint8_t *nonce_r)
{
    /* The transcript hash, keyed with the secret: only holders of the
     * secret can compute it, and each new nonce makes it new. */
    static const char label[] = "mcefa peer auth v1";
    uint8_t th[crypto_kdf_KEYBYTES];
    crypto_generichash_state st;
    crypto_generichash_init(&st, master, sizeof(master), sizeof(th));
    crypto_generichash_update(&st, (const uint8_t *)label, sizeof(label));
    absorb_side(&st, host_i, epoch_i, nonce_i);
    absorb_side(&st, host_r, epoch_r, nonce_r);
    crypto_generichash_final(&st, th, sizeof(th));
    uint8_t pi[PEER_AUTH_PROOF_LEN], pr[PEER_AUTH_PROOF_LEN], ki[PEER_AUTH_KEY_LEN], kr[PEER_AUTH_KEY_LEN];
    crypto_kdf_derive_from_key(pi, sizeof(pi), KDF_PROOF_I, KDF_CONTEXT, th);
    crypto_kdf_derive_from_key(pr, sizeof(pr), KDF_PROOF_R, KDF_CONTEXT, th);
    crypto_kdf_derive_from_key(ki, sizeof(ki), KDF_KEY_I2R, KDF_CONTEXT, th);
    crypto_kdf_derive_from_key(kr, sizeof(kr), KDF_KEY_R2I, KDF_CONTEXT, th);
    memcpy(s->my_proof, initiator ? pi : pr, sizeof(pi));
    memcpy(s->their_proof, initiator ? pr : pi, sizeof(pi));
    memcpy(s->tx_key, initiator ? ki : kr, sizeof(ki));
    memcpy(s->rx_key, initiator ? kr : ki, sizeof(ki));
    s->tx_ctr = s->rx_ctr = 0;
    sodium_memzero(th, sizeof(th));
    sodium_memzero(ki, sizeof(ki));
    sodium_memzero(kr, sizeof(kr));
    return 0;
}

bool peer_auth_proof_ok(const peer_session *s, const uint8_t *proof, size_t len)
{
    return len == PEER_AUTH_PROOF_LEN && sodium_memcmp(proof, s->their_proof, PEER_AUTH_PROOF_LEN) == 0;
}

/* The AEAD nonce is the frame's position in its direction: keys are new
 * per connection, so a counter never repeats under one key. */
static void ctr_nonce(uint8_t n[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES], uint64_t ctr)
{
    memset(n, 0, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    for (int k = 0; k < 8; k++)
        n[k] = (uint8_t)(ctr >> (8 * k));
}

int peer_auth_seal(peer_session *s, const uint8_t *in, size_t len, uint8_t **out, size_t *outlen)
{
    uint8_t *o = malloc(len + PEER_AUTH_OVERHEAD);
    if (!o)
        return -ENOMEM;
    uint8_t n[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    ctr_nonce(n, s->tx_ctr++);
    unsigned long long ol;
    crypto_aead_xchacha20poly1305_ietf_encrypt(o, &ol, in, len, NULL, 0, NULL, n, s->tx_key);
    *out = o;
    *outlen = (size_t)ol;
    return 0;
}

int peer_auth_open(peer_session *s, const uint8_t *in, size_t len, uint8_t **out, size_t *outlen)
{
    if (len < PEER_AUTH_OVERHEAD)
        return -EBADMSG;
    uint8_t *o = malloc(len - PEER_AUTH_OVERHEAD + 1);
    if (!o)
        return -ENOMEM;
    uint8_t n[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    ctr_nonce(n, s->rx_ctr);
    unsigned long long ol;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(o, &ol, NULL, in, len, NULL, 0, n, s->rx_key) < 0) {
        free(o);
        return -EBADMSG;
    }
    s->rx_ctr++;
    *out = o;
    *outlen = (size_t)ol;
    return 0;
}

void peer_auth_wipe(peer_session *s)
{
    sodium_memzero(s, sizeof(*s));
}

bool peer_auth_step_ok(const Mcefa__PeerAuth *a, uint32_t step, size_t host_max)
{
    return a->step == step && peer_name_ok(a->hostname, host_max) && a->nonce.len == PEER_AUTH_NONCE_LEN && a->epoch;
}

bool peer_name_ok(const char *s, size_t max)
{
    if (!s)
        return false;
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= max || s[n] <= ' ' || s[n] > '~')
            return false;
    return n > 0;
}

void peer_text_clean(char *dst, size_t cap, const char *src)
{
    size_t n = 0;
    for (; src && src[n] && n + 1 < cap; n++)
        dst[n] = (src[n] >= ' ' && src[n] <= '~') ? src[n] : '?';
    dst[n] = 0;
}
