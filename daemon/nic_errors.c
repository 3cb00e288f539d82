/* CQ error entries to POSIX errors and texts a user can act on. */
#include "nic_errors.h"

#include <errno.h>
#include <rdma/fi_errno.h>
#include <stdio.h>
#include <string.h>

typedef struct kind_info {
    int code;
    bool rehandshake;
    const char *what; /* what happened and what to do */
} kind_info;

static const kind_info kinds[] = {
    [NIC_ERRORS_OTHER] = {-EIO, false, "the provider reported an error (its text follows)"},
    [NIC_ERRORS_REMOTE_MR] = {-EFAULT, false,
                              "the remote region was unregistered or the peer restarted; reopen the segment"},
    [NIC_ERRORS_LOCAL] = {-EINVAL, false,
                          "the NIC refused this host's own buffer or request; unregister and register the local "
                          "memory again, and report it if it persists"},
    [NIC_ERRORS_UNRESPONSIVE] = {-ETIMEDOUT, true,
                                 "the peer stopped responding (its daemon hung, its host went down or the network "
                                 "was cut); this daemon handshakes with it again: retry, and check the peer host if "
                                 "it persists"},
    [NIC_ERRORS_UNREACHABLE] = {-EHOSTUNREACH, true,
                                "the peer cannot be reached over this NIC (it never answered); this daemon "
                                "handshakes with it again: check that the NICs of both hosts reach each other "
                                "(security groups, subnets)"},
    [NIC_ERRORS_UNKNOWN_PEER] = {-ENOTCONN, true,
                                 "the peer does not know this host's NIC address, or ours for it is stale (it "
                                 "restarted or dropped us); this daemon handshakes with it again: retry the "
                                 "transfer, or reopen the segment if the peer restarted"},
    [NIC_ERRORS_RESET] = {-ECONNRESET, true,
                          "the peer's endpoint went away (its daemon exited or restarted); this daemon handshakes "
                          "with it again: reopen the segment if the peer restarted"},
    [NIC_ERRORS_NOT_READY] = {-EAGAIN, false,
                              "the receiver was not ready (no resources at the peer); retry the transfer"},
    [NIC_ERRORS_CANCELED] = {-ECANCELED, false, "the operation was cancelled (the endpoint is shutting down)"},
    [NIC_ERRORS_TOO_LONG] = {-EMSGSIZE, false,
                             "the transfer is longer than the NIC or the remote buffer allows; split it"},
    [NIC_ERRORS_NO_MEMORY] = {-ENOMEM, false, "the NIC's provider ran out of memory; retry, or lower the load"},
};

/* The efa provider's prov_errno values: 0..15 are rdma-core's
 * efa_io_comp_status codes, 4096 and up the provider's own (FI_EFA_ERR_*).
 * Source: ofiwg/libfabric prov/efa/src/efa_errno.h (EFA_IO_COMP_STATUSES,
 * EFA_PROV_ERRNOS and to_fi_errno). Returns -1 for codes we leave to err. */
static int efa_kind(int prov_errno)
{
    switch (prov_errno) {
    case 1: /* FLUSHED: queue pair destroyed */
        return NIC_ERRORS_CANCELED;
    case 2: /* LOCAL_ERROR_QP_INTERNAL_ERROR */
    case 3: /* LOCAL_ERROR_UNSUPPORTED_OP */
    case 5: /* LOCAL_ERROR_INVALID_LKEY */
        return NIC_ERRORS_LOCAL;
    case 4:    /* LOCAL_ERROR_INVALID_AH: our address entry for the peer */
    case 9:    /* REMOTE_ERROR_BAD_DEST_QPN: its queue pair is gone */
    case 14:   /* REMOTE_ERROR_UNKNOWN_PEER: it has no entry for us */
    case 4110: /* FI_EFA_ERR_AV_INSERT */
        return NIC_ERRORS_UNKNOWN_PEER;
    case 6:  /* LOCAL_ERROR_BAD_LENGTH */
    case 11: /* REMOTE_ERROR_BAD_LENGTH */
        return NIC_ERRORS_TOO_LONG;
    case 7:    /* REMOTE_ERROR_BAD_ADDRESS: rkey not registered / IOVA mismatch */
    case 4111: /* FI_EFA_ERR_RMA_ADDR */
        return NIC_ERRORS_REMOTE_MR;
    case 8: /* REMOTE_ERROR_ABORT: reset by the remote peer */
        return NIC_ERRORS_RESET;
    case 10:   /* REMOTE_ERROR_RNR */
    case 4108: /* FI_EFA_ERR_RXE_POOL_EXHAUSTED */
    case 4109: /* FI_EFA_ERR_TXE_POOL_EXHAUSTED */
        return NIC_ERRORS_NOT_READY;
    case 13:   /* LOCAL_ERROR_UNRESP_REMOTE: answered before, not now */
    case 4124: /* FI_EFA_ERR_ESTABLISHED_RECV_UNRESP */
        return NIC_ERRORS_UNRESPONSIVE;
    case 15:   /* LOCAL_ERROR_UNREACH_REMOTE: never answered */
    case 4113: /* FI_EFA_ERR_PEER_HANDSHAKE */
    case 4126: /* FI_EFA_ERR_UNESTABLISHED_RECV_UNRESP */
        return NIC_ERRORS_UNREACHABLE;
    case 4105: /* FI_EFA_ERR_OOM */
        return NIC_ERRORS_NO_MEMORY;
    default:
        return -1;
    }
}

/* Socket providers (tcp, tcp;ofi_rxm, sockets) put the socket's errno in
 * prov_errno (their fi_cq_strerror is its strerror): a broken connection
 * to the peer's endpoint shows there, under FI_ECANCELED or FI_EIO.
 * Returns -1 for codes we leave to err. */
static int socket_kind(int prov_errno)
{
    switch (prov_errno) {
    case ENOTCONN:
    case ECONNRESET:
    case ECONNABORTED:
    case ECONNREFUSED:
    case EPIPE:
        return NIC_ERRORS_RESET;
    case ETIMEDOUT:
        return NIC_ERRORS_UNRESPONSIVE;
    case EHOSTUNREACH:
    case ENETUNREACH:
    case ENETDOWN:
    case EHOSTDOWN:
        return NIC_ERRORS_UNREACHABLE;
    default:
        return -1;
    }
}

/* The generic FI_E* codes (fi_errno(3)); values below 256 are errno's. */
static nic_errors_kind fi_kind(int err)
{
    switch (err) {
    case FI_EACCES:
    case FI_EKEYREJECTED:
    case FI_ENOKEY:
    case FI_EFAULT:
    case FI_EINVAL: /* efa: "Remote MR invalid" (a bad remote address) */
        return NIC_ERRORS_REMOTE_MR;
    case FI_ETIMEDOUT:
    case FI_ECONNABORTED: /* efa: unresponsive remote */
        return NIC_ERRORS_UNRESPONSIVE;
    case FI_EHOSTUNREACH:
    case FI_ENETUNREACH:
    case FI_ENETDOWN:
        return NIC_ERRORS_UNREACHABLE;
    case FI_ENOTCONN: /* efa: unknown peer, bad queue pair */
    case FI_ENOAV:
    case FI_EADDRNOTAVAIL:
        return NIC_ERRORS_UNKNOWN_PEER;
    case FI_ECONNRESET:
    case FI_ECONNREFUSED:
    case FI_ESHUTDOWN:
    case EPIPE: /* no FI_EPIPE in fi_errno.h; the value is errno's */
        return NIC_ERRORS_RESET;
    case FI_ENORX: /* efa: receiver not ready (RNR) */
    case FI_EAGAIN:
    case FI_EBUSY:
        return NIC_ERRORS_NOT_READY;
    case FI_ECANCELED:
        return NIC_ERRORS_CANCELED;
    case FI_EMSGSIZE:
    case FI_ETRUNC:
    case FI_ETOOSMALL:
    case FI_EOVERRUN:
        return NIC_ERRORS_TOO_LONG;
    case FI_ENOMEM:
    case FI_ENOSPC:
        return NIC_ERRORS_NO_MEMORY;
    case FI_EOPNOTSUPP:
    case FI_ENOSYS:
        return NIC_ERRORS_LOCAL;
    default:
        return NIC_ERRORS_OTHER;
    }
}

const char *nic_errors_fi_name(int err)
{
    static const struct {
        int v;
        const char *name;
    } names[] = {
        {FI_EPERM, "FI_EPERM"},
        {FI_ENOENT, "FI_ENOENT"},
        {FI_EINTR, "FI_EINTR"},
        {FI_EIO, "FI_EIO"},
        {FI_E2BIG, "FI_E2BIG"},
        {FI_EBADF, "FI_EBADF"},
        {FI_EAGAIN, "FI_EAGAIN"},
        {FI_ENOMEM, "FI_ENOMEM"},
        {FI_EACCES, "FI_EACCES"},
        {FI_EFAULT, "FI_EFAULT"},
        {FI_EBUSY, "FI_EBUSY"},
        {FI_ENODEV, "FI_ENODEV"},
        {FI_EINVAL, "FI_EINVAL"},
        {FI_EMFILE, "FI_EMFILE"},
        {FI_ENOSPC, "FI_ENOSPC"},
        {EPIPE, "EPIPE"},
        {FI_ENOSYS, "FI_ENOSYS"},
        {FI_EWOULDBLOCK, "FI_EWOULDBLOCK"},
        {FI_ENOMSG, "FI_ENOMSG"},
        {FI_ENODATA, "FI_ENODATA"},
        {FI_EOVERFLOW, "FI_EOVERFLOW"},
        {FI_EMSGSIZE, "FI_EMSGSIZE"},
        {FI_ENOPROTOOPT, "FI_ENOPROTOOPT"},
        {FI_EOPNOTSUPP, "FI_EOPNOTSUPP"},
        {FI_EADDRINUSE, "FI_EADDRINUSE"},
        {FI_EADDRNOTAVAIL, "FI_EADDRNOTAVAIL"},
        {FI_ENETDOWN, "FI_ENETDOWN"},
        {FI_ENETUNREACH, "FI_ENETUNREACH"},
        {FI_ECONNABORTED, "FI_ECONNABORTED"},
        {FI_ECONNRESET, "FI_ECONNRESET"},
        {FI_ENOBUFS, "FI_ENOBUFS"},
        {FI_EISCONN, "FI_EISCONN"},
        {FI_ENOTCONN, "FI_ENOTCONN"},
        {FI_ESHUTDOWN, "FI_ESHUTDOWN"},
        {FI_ETIMEDOUT, "FI_ETIMEDOUT"},
        {FI_ECONNREFUSED, "FI_ECONNREFUSED"},
        {FI_EHOSTDOWN, "FI_EHOSTDOWN"},
        {FI_EHOSTUNREACH, "FI_EHOSTUNREACH"},
        {FI_EALREADY, "FI_EALREADY"},
        {FI_EINPROGRESS, "FI_EINPROGRESS"},
        {FI_EREMOTEIO, "FI_EREMOTEIO"},
        {FI_ECANCELED, "FI_ECANCELED"},
        {FI_EKEYREJECTED, "FI_EKEYREJECTED"},
        {FI_EOTHER, "FI_EOTHER"},
        {FI_ETOOSMALL, "FI_ETOOSMALL"},
        {FI_EOPBADSTATE, "FI_EOPBADSTATE"},
        {FI_EAVAIL, "FI_EAVAIL"},
        {FI_EBADFLAGS, "FI_EBADFLAGS"},
        {FI_ENOEQ, "FI_ENOEQ"},
        {FI_EDOMAIN, "FI_EDOMAIN"},
        {FI_ENOCQ, "FI_ENOCQ"},
        {FI_ECRC, "FI_ECRC"},
        {FI_ETRUNC, "FI_ETRUNC"},
        {FI_ENOKEY, "FI_ENOKEY"},
        {FI_ENOAV, "FI_ENOAV"},
        {FI_EOVERRUN, "FI_EOVERRUN"},
        {FI_ENORX, "FI_ENORX"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].v == err)
            return names[i].name;
    return NULL;
}

/* provider is name, or a layering on it ("efa;ofi_rxd", "tcp;ofi_rxm"). */
static bool is_provider(const char *provider, const char *name)
{
    size_t l = strlen(name);
    return provider && !strncmp(provider, name, l) && (provider[l] == 0 || provider[l] == ';');
}

int nic_errors_map(const nic_errors_cq *in, nic_errors_verdict *v, char *text, size_t len)
{
    /* The provider's own code says more than err (efa reports several
     * distinct failures as FI_EINVAL or FI_EIO), but only for a provider
     * whose codes we know: elsewhere prov_errno means something else. */
    int k = -1;
    if (is_provider(in->provider, "efa"))
        k = efa_kind(in->prov_errno);
    else if (is_provider(in->provider, "tcp") || is_provider(in->provider, "sockets"))
        k = socket_kind(in->prov_errno);
    if (k < 0)
        k = (int)fi_kind(in->err);
    v->kind = (nic_errors_kind)k;
    v->code = kinds[k].code;
    v->rehandshake = kinds[k].rehandshake;
    if (k == NIC_ERRORS_OTHER) {
        /* FI_E* values below 256 are POSIX errnos; the rest are not. */
        if (in->err > 0 && in->err < FI_ERRNO_OFFSET)
            v->code = -in->err;
        if (in->err == FI_EREMOTEIO)
            v->code = -EREMOTEIO;
    }
    const char *name = nic_errors_fi_name(in->err);
    char num[24];
    if (!name) {
        snprintf(num, sizeof(num), "error %d", in->err);
        name = num;
    }
    const char *pt = in->prov_text && *in->prov_text ? in->prov_text : "no detail";
    snprintf(text, len, "%s (provider %s: %s; %s, prov_errno %d)", kinds[k].what,
             in->provider && *in->provider ? in->provider : "?", pt, name, in->prov_errno);
    return v->code;
}
