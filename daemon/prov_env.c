#include "prov_env.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* ofi_rxm layered on a core provider ("tcp;ofi_rxm") or named alone. */
static bool is_rxm(const char *prov)
{
    return prov && strstr(prov, "ofi_rxm") != NULL;
}

static void add(prov_env_var *out, size_t *n, const char *name, const char *setting, uint64_t v)
{
    prov_env_var *e = &out[(*n)++];
    e->name = name;
    e->setting = setting;
    snprintf(e->value, sizeof(e->value), "%" PRIu64, v);
}

size_t prov_env_plan(const char *prov, const prov_env_settings *s, prov_env_var *out)
{
    size_t n = 0;
    if (!is_rxm(prov))
        return 0;
    /* rxm takes one bounce buffer of this size from its tx pool for every
     * RMA op (its context only: the data of our reads and writes never
     * passes through it) and posts receive buffers of it for messages we
     * never send; its pools grow 1024 buffers at a time. */
    add(out, &n, "FI_OFI_RXM_BUFFER_SIZE", "rxm_buffer_size", s->rxm_buffer_size);
    /* Receive buffers posted per NIC (4096 by default over tcp's shared
     * receive context): four pool chunks where one does. */
    add(out, &n, "FI_OFI_RXM_MSG_RX_SIZE", "rxm_msg_rx_size", s->rxm_msg_rx_size);
    /* rxm connects a NIC pair on its first op, and its polling looks at
     * connection events only this often: 10 ms by default, about two of
     * them per connection. */
    add(out, &n, "FI_OFI_RXM_CM_PROGRESS_INTERVAL", "rxm_cm_progress_interval_us", s->rxm_cm_progress_interval_us);
    return n;
}

void prov_env_apply(const prov_env_var *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *was = getenv(v[i].name);
        if (was) {
            log_info("%s=%s from the environment (the %s setting, %s, is not applied)", v[i].name, was, v[i].setting,
                     v[i].value);
        } else if (setenv(v[i].name, v[i].value, 0) == 0) {
            log_info("%s=%s set for libfabric (the %s setting)", v[i].name, v[i].value, v[i].setting);
        } else {
            log_warn("cannot set %s=%s for libfabric (the %s setting): the provider keeps its default", v[i].name,
                     v[i].value, v[i].setting);
        }
    }
}
