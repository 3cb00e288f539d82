/* Defaults the client library and the daemon must agree on, declared once.
 * Installed next to mcefa.h, so it includes nothing and holds only plain
 * #defines. MCEFA_DEFAULT_MAX_FRAME stays a bare decimal literal: the
 * daemon's settings table stringifies it into its default and docs. */
#ifndef MCEFA_DEFAULTS_H
#define MCEFA_DEFAULTS_H

/* Unix socket of mcefad, and the environment variable that overrides it
 * (for the daemon's socket_path and for clients that pass NULL). */
#define MCEFA_DEFAULT_SOCKET "/run/mcefad/mcefad.sock"
#define MCEFA_SOCKET_ENV "MCEFAD_SOCKET"

/* Largest frame either side accepts by default (8 MiB): a batch of 65536
 * transfers packs to about 3 MiB. */
#define MCEFA_DEFAULT_MAX_FRAME 8388608

/* Largest notification (Mooncake's TransferNotify): name and message
 * bytes. Mooncake's own senders put a request id or a short JSON text
 * there; the bounds keep one notification far below a frame. */
#define MCEFA_NOTIFY_NAME_MAX 256
#define MCEFA_NOTIFY_MSG_MAX 65536

#endif
