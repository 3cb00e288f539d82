/* Process-wide counters and the transfer latency histogram. Any thread
 * updates them (relaxed atomics); status and metrics read them. */
#ifndef MCEFAD_STATS_H
#define MCEFAD_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define STATS_LAT_BUCKETS 14

typedef struct stats {
    _Atomic uint64_t bytes_copied;
    _Atomic uint64_t transfers_completed;
    _Atomic uint64_t transfers_failed;
    _Atomic uint64_t protocol_errors;
    _Atomic uint64_t lat_buckets[STATS_LAT_BUCKETS + 1]; /* last: +Inf */
    _Atomic uint64_t lat_sum_us;
} stats;

extern stats stats_counters;

/* Upper bound (µs) of latency bucket i (< STATS_LAT_BUCKETS). */
uint64_t stats_lat_bound_us(unsigned i);
/* A transfer finished after `us` microseconds. */
void stats_transfer_done(bool failed, uint64_t us);
void stats_copied(uint64_t bytes);
void stats_protocol_error(void);
uint64_t stats_get(const _Atomic uint64_t *counter);

#endif
