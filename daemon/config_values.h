/* Value formats of the settings (config_values.c), for config.c's
 * validation. The helpers other modules use are declared in config.h. */
#ifndef MCEFAD_CONFIG_VALUES_H
#define MCEFAD_CONFIG_VALUES_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* Each returns 0 or -EINVAL with why saying what is wrong and what to do.
 * hostport also splits "address:port" (host points into spec). */
int config_values_hostport(const char *spec, const char **host, size_t *hostlen, int *port, char *why,
                           size_t whylen);
int config_values_hostmap(const char *map, char *why, size_t whylen);
int config_values_names(const char *list, char *why, size_t whylen);
/* Whether [p, p+len) is a dotted-quad IPv4 address. */
bool config_values_ipv4(const char *p, size_t len);

#endif
