/* Prometheus text-format metrics over HTTP (GET /metrics) on
 * metrics_listen, 127.0.0.1 only by default. */
#ifndef MCEFAD_METRICS_H
#define MCEFAD_METRICS_H

#include <stdio.h>
#include <uv.h>

/* spec: metrics_listen ("address:port"; empty: off). */
int metrics_start(uv_loop_t *loop, const char *spec);
void metrics_stop(void);
/* Writes the whole exposition (also used by tests and mcefactl). */
void metrics_render(FILE *out);

#endif
