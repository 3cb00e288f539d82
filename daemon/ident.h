/* Who this daemon is: its host name (as segment names spell it), its epoch
 * (a random number per start, so peers can tell a restart from a
 * reconnect), when it started, and which names mean this host. */
#ifndef MCEFAD_IDENT_H
#define MCEFAD_IDENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* hostname: the setting; empty means gethostname(). */
void ident_init(const char *hostname);
const char *ident_hostname(void);
uint64_t ident_epoch(void);
uint64_t ident_uptime_ms(void);

/* Length of the host part of a "host:port" name (all of it without ':'). */
size_t ident_host_len(const char *name);
/* Whether the host part of name means this host: empty, our host name,
 * localhost, 127.x or one of this host's interface addresses. */
bool ident_is_local_name(const char *name);

#endif
