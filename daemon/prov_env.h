/* Environment defaults for libfabric providers: variables that bound a
 * provider's memory, set from settings before the first fi_getinfo
 * (providers read them once, when libfabric loads them) unless the
 * environment already sets them, so a user's own FI_* value wins. Today
 * only ofi_rxm's (tcp;ofi_rxm): its bounce-buffer pools are allocated per
 * NIC whatever the daemon uses (docs/tuning.md, "Memory per NIC"). */
#ifndef MCEFAD_PROV_ENV_H
#define MCEFAD_PROV_ENV_H

#include <stddef.h>
#include <stdint.h>

#define PROV_ENV_MAX 4

typedef struct prov_env_var {
    const char *name;    /* FI_OFI_RXM_BUFFER_SIZE */
    const char *setting; /* the mcefad setting it comes from */
    char value[24];
} prov_env_var;

/* What the ofi_rxm settings are, as prov_env_plan needs them. */
typedef struct prov_env_settings {
    uint64_t rxm_buffer_size;
    uint64_t rxm_msg_rx_size;
    uint64_t rxm_cm_progress_interval_us;
} prov_env_settings;

/* The variables provider prov (a provider setting: "tcp;ofi_rxm",
 * "ofi_rxm", "efa") gets from s, into out (PROV_ENV_MAX); returns how
 * many. Pure. */
size_t prov_env_plan(const char *prov, const prov_env_settings *s, prov_env_var *out);

/* Sets each variable not set already (setenv(..., 0)) and logs what it
 * set and what the environment kept. Before anything calls libfabric. */
void prov_env_apply(const prov_env_var *v, size_t n);

#endif
