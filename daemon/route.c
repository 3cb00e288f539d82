#include "route.h"

#include <stdatomic.h>

unsigned route_local(const route_nic *nics, unsigned n, unsigned *out)
{
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++)
        if (nics[i].near && nics[i].has_mr && nics[i].reaches)
            out[k++] = i;
    if (k == 0)
        for (unsigned i = 0; i < n; i++)
            if (nics[i].has_mr && nics[i].reaches)
                out[k++] = i;
    return k;
}

unsigned route_register(const int *nic_numa, unsigned n, int numa_node, bool all, bool *out)
{
    unsigned k = 0, on_node = 0;
    for (unsigned i = 0; i < n; i++)
        on_node += nic_numa[i] == numa_node;
    all |= numa_node < 0 || on_node == 0;
    for (unsigned i = 0; i < n; i++) {
        out[i] = all || nic_numa[i] == numa_node || nic_numa[i] < 0;
        k += out[i];
    }
    return k;
}

int route_remote(const bool *row, unsigned nremote, uint64_t preferred, unsigned *rr)
{
    /* Pass 0 takes preferred NICs only; pass 1 any (none preferred is
     * reachable, or the owner named none). */
    for (int pass = preferred ? 0 : 1; pass < 2; pass++)
        for (unsigned k = 0; k < nremote; k++) {
            unsigned j = (*rr + k) % nremote;
            if (row[j] && (pass || (j < 64 && preferred >> j & 1))) {
                *rr = j + 1;
                return (int)j;
            }
        }
    return -1;
}

unsigned route_stripes(uint64_t len, uint64_t threshold, unsigned nuse, uint64_t *piece)
{
    unsigned pieces = len > threshold && nuse > 1 ? nuse : 1;
    *piece = pieces > 1 ? ((len + pieces - 1) / pieces + 4095) / 4096 * 4096 : len;
    /* Rounding up can leave the last NICs nothing. */
    return *piece ? (unsigned)((len + *piece - 1) / *piece) : 1;
}

unsigned route_first(unsigned nuse)
{
    static _Atomic unsigned next;
    return nuse ? atomic_fetch_add_explicit(&next, 1, memory_order_relaxed) % nuse : 0;
}
