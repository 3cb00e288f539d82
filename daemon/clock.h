/* The daemon's one clock: monotonic, in micro- or milliseconds. Deadlines,
 * latencies and uptime all read it, so they never disagree. */
#ifndef MCEFAD_CLOCK_H
#define MCEFAD_CLOCK_H

#include <stdint.h>

uint64_t clock_now_us(void);
uint64_t clock_now_ms(void);

#endif
