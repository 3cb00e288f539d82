#include "peer_hello_check.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <rdma/fabric.h>
#include <stdio.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

#include "nic.h"
#include "peer_auth.h"

/* Whether addr can be a NIC address of this provider. The one place that
 * knows address formats: tcp and sockets use a struct sockaddr_in/in6, and
 * an address of another family poisons the AV for every later insert.
 * Other providers (efa) get the length check only. */
static bool provider_addr_ok(const char *provider, const uint8_t *addr, size_t len)
{
    if (!strstr(provider, "tcp") && !strstr(provider, "sockets"))
        return true;
    sa_family_t fam;
    if (len < sizeof(fam))
        return false;
    memcpy(&fam, addr, sizeof(fam));
    if (fam == AF_INET && len == sizeof(struct sockaddr_in)) {
        struct sockaddr_in sa;
        memcpy(&sa, addr, sizeof(sa));
        return sa.sin_port != 0;
    }
    if (fam == AF_INET6 && len == sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 sa;
        memcpy(&sa, addr, sizeof(sa));
        return sa.sin6_port != 0;
    }
    return false;
}

int peer_hello_check(const Mcefa__PeerHello *h, const char *provider, const size_t *local_addrlen, unsigned nlocal,
                     err *e)
{
    if (!peer_name_ok(h->hostname, 255))
        return err_set(e, -EPROTO, "a peer hello with an invalid host name (1-255 printable ASCII bytes, no spaces)");
    if (!peer_name_ok(h->provider, 127))
        return err_set(e, -EPROTO, "peer %s: invalid provider name", h->hostname);
    if (h->fabric && *h->fabric && !peer_name_ok(h->fabric, 127))
        return err_set(e, -EPROTO, "peer %s: invalid fabric name", h->hostname);
    if (h->staging_slot_bytes && (h->staging_slot_bytes < 4096 || h->staging_slot_bytes > (UINT64_C(1) << 30)))
        return err_set(e, -EPROTO, "peer %s announced staging buffers of %" PRIu64 " bytes (0, or 4096 to 1 GiB)",
                       h->hostname, h->staging_slot_bytes);
    if (h->n_nics == 0 || h->n_nics > NIC_MAX)
        return err_set(e, -EPROTO, "peer %s announced %zu NICs (1 to %d)", h->hostname, h->n_nics, NIC_MAX);
    for (size_t j = 0; j < h->n_nics; j++) {
        const Mcefa__PeerNic *n = h->nics[j];
        if (!peer_name_ok(n->name, 63) || !peer_name_ok(n->fabric, 127))
            return err_set(e, -EPROTO, "peer %s: NIC %zu has an invalid name or fabric", h->hostname, j);
        bool len_ok = false;
        for (unsigned i = 0; i < nlocal && !len_ok; i++)
            len_ok = local_addrlen[i] == n->address.len;
        if (!len_ok || n->address.len > NIC_ADDR_MAX || !provider_addr_ok(provider, n->address.data, n->address.len))
            return err_set(e, -EPROTO, "peer %s: NIC %s has an address of %zu bytes that is not a %s address",
                           h->hostname, n->name, n->address.len, provider);
    }
    return 0;
}

/* "2.4", or "unknown" for a daemon that did not say. */
static const char *version_text(uint32_t v, char *buf, size_t len)
{
    if (!v)
        return "unknown";
    snprintf(buf, len, "%u.%u", FI_MAJOR(v), FI_MINOR(v));
    return buf;
}

int peer_hello_fabric_check(const Mcefa__PeerHello *h, const peer_hello_local *me, err *e)
{
    /* A provider mismatch has its own error (apply_hello). */
    if (!h->fabric || !*h->fabric || !me->fabric || !*me->fabric || !strcmp(h->fabric, me->fabric) ||
        strcmp(h->provider, me->provider) != 0)
        return 0;
    for (size_t j = 0; j < h->n_nics; j++)
        for (unsigned i = 0; i < me->nnics; i++)
            if (!strcmp(h->nics[j]->fabric, me->nic_fabrics[i]))
                return 0;
    char theirs[32], mine[32];
    bool efa = !strcmp(h->fabric, "efa") || !strcmp(me->fabric, "efa");
    return err_set(e, -EPROTO,
                   "host %s uses fabric %s (libfabric %s), host %s uses %s (libfabric %s): no NIC of one shares a "
                   "fabric with the other; %s",
                   h->hostname, h->fabric, version_text(h->libfabric_version, theirs, sizeof(theirs)), me->hostname,
                   me->fabric, version_text(me->libfabric_version, mine, sizeof(mine)),
                   efa ? "set fabric=efa on both (efa-direct needs libfabric 2.1 or later and device RDMA on both)"
                       : "set the fabric setting to one name on both");
}
