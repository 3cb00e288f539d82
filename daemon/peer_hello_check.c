#include "peer_hello_check.h"

#include <errno.h>
#include <netinet/in.h>
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
