/* What a failed RMA completion means for the user: a CQ error entry (its
 * FI_E* code, the provider's own code and text) becomes a negative POSIX
 * errno, a text that says what to do, and whether the peer should be
 * handshaken again. A pure function of its input (no libfabric calls), so
 * it is unit-tested against the provider's documented codes. */
#ifndef MCEFAD_NIC_ERRORS_H
#define MCEFAD_NIC_ERRORS_H

#include <stdbool.h>
#include <stddef.h>

/* What went wrong, as far as the daemon acts on it. */
typedef enum nic_errors_kind {
    NIC_ERRORS_OTHER,        /* only the provider's text says more */
    NIC_ERRORS_REMOTE_MR,    /* remote key or address not registered there */
    NIC_ERRORS_LOCAL,        /* our own registration or request was refused */
    NIC_ERRORS_UNRESPONSIVE, /* the peer answered before and stopped */
    NIC_ERRORS_UNREACHABLE,  /* the peer never answered */
    NIC_ERRORS_UNKNOWN_PEER, /* the peer has no address entry for us, or our entry for it is bad */
    NIC_ERRORS_RESET,        /* the peer's endpoint went away (closed, restarted) */
    NIC_ERRORS_NOT_READY,    /* receiver not ready: worth retrying */
    NIC_ERRORS_CANCELED,
    NIC_ERRORS_TOO_LONG,
    NIC_ERRORS_NO_MEMORY,
} nic_errors_kind;

/* One CQ error entry, as fi_cq_readerr and fi_cq_strerror gave it. */
typedef struct nic_errors_cq {
    int err;               /* fi_cq_err_entry.err: a positive FI_E* value */
    int prov_errno;        /* provider-specific; read only for providers we know */
    const char *provider;  /* fabric_attr->prov_name: "efa", "tcp;ofi_rxm" */
    const char *prov_text; /* fi_cq_strerror's text; NULL or "" if none */
} nic_errors_cq;

typedef struct nic_errors_verdict {
    int code; /* negative errno for the transfer */
    nic_errors_kind kind;
    bool rehandshake; /* the peer looks gone or no longer knows us: handshake again */
} nic_errors_verdict;

/* Maps one error entry; writes the user's text (what happened, what to do,
 * then the provider's own words and codes) into text. Returns v.code. */
int nic_errors_map(const nic_errors_cq *in, nic_errors_verdict *v, char *text, size_t len);

/* "FI_EINVAL", "FI_ENORX", ... for a positive FI_E* value; NULL if unknown. */
const char *nic_errors_fi_name(int err);

#endif
