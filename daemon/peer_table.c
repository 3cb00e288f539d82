#include "peer_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ident.h"

static LIST_HEAD(, peer) peers = LIST_HEAD_INITIALIZER(peers);
static unsigned npeers, max_peers, nlocal;
static void (*address_of)(const char *host, char *out, size_t outlen);

void peer_table_init(unsigned nl, unsigned maxp)
{
    nlocal = nl;
    max_peers = maxp;
}

void peer_table_set_resolver(void (*fn)(const char *host, char *out, size_t outlen))
{
    address_of = fn;
}

static void peer_destroy(peer *p)
{
    free(p->rnic);
    free(p->fiaddr);
    free(p->warm);
    free(p);
}

void peer_table_free(void)
{
    while (!LIST_EMPTY(&peers)) {
        peer *p = LIST_FIRST(&peers);
        LIST_REMOVE(p, link);
        peer_destroy(p);
    }
    npeers = 0;
}

int peer_resize(peer *p, unsigned n)
{
    size_t pairs = (size_t)p->nlocal * n;
    remote_nic *rn = calloc(n + 1, sizeof(*rn));
    fi_addr_t *fa = malloc((pairs + 1) * sizeof(*fa));
    bool *w = calloc(pairs + 1, sizeof(*w));
    if (!rn || !fa || !w) {
        free(rn);
        free(fa);
        free(w);
        return -ENOMEM;
    }
    for (size_t k = 0; k < pairs; k++)
        fa[k] = FI_ADDR_NOTAVAIL;
    free(p->rnic);
    free(p->fiaddr);
    free(p->warm);
    p->rnic = rn;
    p->fiaddr = fa;
    p->warm = w;
    p->nrnics = n;
    return 0;
}

void peer_forget_av(peer *p)
{
    /* The entries stay in the AVs: a NIC worker may be posting to one right
     * now, and an op that slips through fails at the peer (its new
     * incarnation's keys differ). */
    atomic_fetch_add(&p->gen, 1);
    for (size_t k = 0; k < (size_t)p->nlocal * p->nrnics; k++) {
        p->fiaddr[k] = FI_ADDR_NOTAVAIL;
        p->warm[k] = false;
    }
}

/* A peer that never completed a handshake (no AV entries, no remote
 * segment refers to it), is not connected or connecting, and that no
 * request holds: dropping it loses nothing. The oldest such goes. */
static bool evict_one(void)
{
    peer *p, *victim = NULL;
    LIST_FOREACH(p, &peers, link)
        if (!p->layout_gen && !p->conn && !p->connecting && !p->users && STAILQ_EMPTY(&p->waiters) &&
            !p->release_queued)
            victim = p; /* the list is newest first: the last match is the oldest */
    if (!victim)
        return false;
    LIST_REMOVE(victim, link);
    npeers--;
    peer_destroy(victim);
    return true;
}

int peer_for_name(const char *name, peer **out, err *e)
{
    size_t hl = ident_host_len(name);
    char host[256];
    if (hl == 0 || hl >= sizeof(host))
        return err_set(e, -EINVAL, "segment name '%.200s' has no host part (expected host:port)", name);
    for (size_t i = 0; i < hl; i++)
        if (!isgraph((unsigned char)name[i]))
            return err_set(e, -EINVAL, "the host part of segment name '%.200s' is not a printable ASCII host name",
                           name);
    memcpy(host, name, hl);
    host[hl] = 0;
    peer *p;
    LIST_FOREACH(p, &peers, link)
        if (!strcmp(p->host, host)) {
            *out = p;
            return 0;
        }
    if (!nlocal)
        return err_set(e, -ENETUNREACH,
                       "segment '%s' is on host %s, but this daemon has no NIC (provider setting 'none', or no NIC "
                       "found); configure a provider to reach other hosts",
                       name, host);
    if (npeers >= max_peers && !evict_one())
        return err_set(e, -ENOSPC,
                       "too many peer hosts (%u, max_peers) known to this daemon, each connected or in use; raise "
                       "max_peers",
                       max_peers);
    p = calloc(1, sizeof(*p));
    if (!p)
        return err_set(e, -ENOMEM, "out of memory adding peer host %s", host);
    p->nlocal = nlocal;
    if (peer_resize(p, 0) < 0) {
        free(p);
        return err_set(e, -ENOMEM, "out of memory adding peer host %s", host);
    }
    STAILQ_INIT(&p->waiters);
    snprintf(p->host, sizeof(p->host), "%s", host);
    if (address_of)
        address_of(host, p->address, sizeof(p->address));
    else
        snprintf(p->address, sizeof(p->address), "%s", host);
    npeers++;
    LIST_INSERT_HEAD(&peers, p, link);
    *out = p;
    return 0;
}

void peer_ask_rehandshake(peer *p, uint64_t gen, int code)
{
    /* The generation first: the loop reads the code, then checks it. */
    atomic_store(&p->rehandshake_gen, gen);
    atomic_store(&p->rehandshake_code, code ? code : -EIO);
}

int peer_take_rehandshake(peer *p)
{
    int code = atomic_exchange(&p->rehandshake_code, 0);
    if (!code || atomic_load(&p->rehandshake_gen) != atomic_load(&p->gen))
        return 0;
    return code;
}

uint64_t peer_rehandshakes(const peer *p)
{
    return atomic_load_explicit(&p->rehandshakes, memory_order_relaxed);
}

peer *peer_first(void)
{
    return LIST_FIRST(&peers);
}

peer *peer_next(const peer *p)
{
    return LIST_NEXT(p, link);
}

const char *peer_host(const peer *p)
{
    return p->host;
}

const char *peer_address(const peer *p)
{
    return p->address;
}

uint64_t peer_epoch(const peer *p)
{
    return p->epoch;
}

uint64_t peer_layout_gen(const peer *p)
{
    return p->layout_gen;
}

const _Atomic uint64_t *peer_gen(const peer *p)
{
    return &p->gen;
}

bool peer_connected(const peer *p)
{
    return p->conn != NULL;
}

const char *peer_last_error(const peer *p)
{
    return p->last_error;
}

unsigned peer_nrnics(const peer *p)
{
    return p->nrnics;
}

fi_addr_t peer_pair(const peer *p, unsigned i, unsigned j)
{
    return i < p->nlocal && j < p->nrnics ? p->fiaddr[i * p->nrnics + j] : FI_ADDR_NOTAVAIL;
}

bool peer_pair_warm(const peer *p, unsigned i, unsigned j)
{
    return i < p->nlocal && j < p->nrnics && p->warm[i * p->nrnics + j];
}

unsigned peer_pairs(const peer *p)
{
    unsigned n = 0;
    for (size_t k = 0; k < (size_t)p->nlocal * p->nrnics; k++)
        n += p->fiaddr[k] != FI_ADDR_NOTAVAIL;
    return n;
}

unsigned peer_pairs_warm(const peer *p)
{
    unsigned n = 0;
    for (size_t k = 0; k < (size_t)p->nlocal * p->nrnics; k++)
        n += p->warm[k];
    return n;
}

uint64_t peer_staging_slot(const peer *p)
{
    return p->staging_slot;
}

unsigned *peer_stage_window(peer *p)
{
    return &p->stage_window;
}

unsigned *peer_rr(peer *p)
{
    return &p->rr;
}

void peer_count_op(peer *p, uint64_t bytes, bool failed)
{
    atomic_fetch_add_explicit(&p->ops, 1, memory_order_relaxed);
    if (failed)
        atomic_fetch_add_explicit(&p->errors, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&p->bytes, bytes, memory_order_relaxed);
}

uint64_t peer_bytes(const peer *p)
{
    return atomic_load_explicit(&p->bytes, memory_order_relaxed);
}

uint64_t peer_ops(const peer *p)
{
    return atomic_load_explicit(&p->ops, memory_order_relaxed);
}

uint64_t peer_errors(const peer *p)
{
    return atomic_load_explicit(&p->errors, memory_order_relaxed);
}
