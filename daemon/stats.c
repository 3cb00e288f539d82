#include "stats.h"

stats stats_counters;

static const uint64_t bounds_us[STATS_LAT_BUCKETS] = {50,    100,   250,    500,    1000,    2500,    5000,
                                                      10000, 25000, 50000, 100000, 250000, 1000000, 10000000};

uint64_t stats_lat_bound_us(unsigned i)
{
    return i < STATS_LAT_BUCKETS ? bounds_us[i] : UINT64_MAX;
}

void stats_transfer_done(bool failed, uint64_t us)
{
    unsigned i = 0;
    while (i < STATS_LAT_BUCKETS && us > bounds_us[i])
        i++;
    atomic_fetch_add_explicit(&stats_counters.lat_buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&stats_counters.lat_sum_us, us, memory_order_relaxed);
    atomic_fetch_add_explicit(failed ? &stats_counters.transfers_failed : &stats_counters.transfers_completed, 1,
                              memory_order_relaxed);
}

void stats_copied(uint64_t bytes)
{
    atomic_fetch_add_explicit(&stats_counters.bytes_copied, bytes, memory_order_relaxed);
}

void stats_protocol_error(void)
{
    atomic_fetch_add_explicit(&stats_counters.protocol_errors, 1, memory_order_relaxed);
}

uint64_t stats_get(const _Atomic uint64_t *counter)
{
    return atomic_load_explicit(counter, memory_order_relaxed);
}
