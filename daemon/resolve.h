/* Name resolution: from the host part of a segment name to the address
 * of that host's daemon. The static map (peer_hosts) first, then DNS with
 * the default peer_port. A metadata service (etcd) plugs in here. */
#ifndef MCEFAD_RESOLVE_H
#define MCEFAD_RESOLVE_H

#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/queue.h>
#include <uv.h>

#include "defer.h"

/* peer_hosts: "name=addr[:port],..."; default_port for names without. */
void resolve_init(uv_loop_t *loop, const char *peer_hosts, unsigned default_port);
/* "addr:port" to connect to for host, into out. */
void resolve_address(const char *host, char *out, size_t outlen);

/* An asynchronous lookup of "addr:port". cb runs on the loop with a libuv
 * status (< 0: failed, UV_ECANCELED at stop) and the result, which the
 * callback must free with uv_freeaddrinfo when not NULL. */
typedef struct resolve_req resolve_req;
typedef void (*resolve_cb)(resolve_req *r, int status, struct addrinfo *res);
struct resolve_req {
    uv_getaddrinfo_t gai; /* first */
    resolve_cb cb;
    bool active;
    LIST_ENTRY(resolve_req) link;
    struct addrinfo *numeric; /* a numeric address, answered deferred */
    defer_item later;
};
int resolve_start(resolve_req *r, const char *address, resolve_cb cb);
/* Cancels every lookup under way (their callbacks get UV_ECANCELED). */
void resolve_stop(void);

#endif
