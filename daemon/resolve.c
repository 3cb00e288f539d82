#include "resolve.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "defer.h"

static uv_loop_t *loop;
static const char *static_map;
static unsigned port_default;
static bool stopping;
static LIST_HEAD(, resolve_req) active = LIST_HEAD_INITIALIZER(active);

void resolve_init(uv_loop_t *l, const char *peer_hosts, unsigned default_port)
{
    loop = l;
    static_map = peer_hosts;
    port_default = default_port;
}

void resolve_address(const char *host, char *out, size_t outlen)
{
    /* The static map first; a metadata service would come next. */
    if (config_hostmap_lookup(static_map, host, port_default, out, outlen) != 0)
        snprintf(out, outlen, "%s:%u", host, port_default);
}

static void on_resolved(uv_getaddrinfo_t *gai, int status, struct addrinfo *res)
{
    resolve_req *r = (resolve_req *)gai;
    if (r->active) {
        r->active = false;
        LIST_REMOVE(r, link);
    }
    if (stopping) {
        if (res)
            uv_freeaddrinfo(res);
        status = UV_ECANCELED;
        res = NULL;
    }
    r->cb(r, status < 0 ? status : (res ? 0 : UV_EAI_NONAME), res);
}

static void numeric_done(defer_item *it)
{
    resolve_req *r = (resolve_req *)((char *)it - offsetof(resolve_req, later));
    struct addrinfo *res = r->numeric;
    r->numeric = NULL;
    if (stopping) {
        freeaddrinfo(res);
        r->cb(r, UV_ECANCELED, NULL);
        return;
    }
    r->cb(r, 0, res);
}

int resolve_start(resolve_req *r, const char *address, resolve_cb cb)
{
    if (stopping)
        return UV_ECANCELED;
    char host[300];
    snprintf(host, sizeof(host), "%s", address);
    char *colon = strrchr(host, ':');
    const char *port = "0";
    if (colon) {
        *colon = 0;
        port = colon + 1;
    }
    r->cb = cb;
    /* A numeric address needs no lookup: answered on the loop's next turn,
     * never queued behind slow work on libuv's worker threads. */
    struct addrinfo num = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
    if (getaddrinfo(host, port, &num, &r->numeric) == 0) {
        defer_call(&r->later, numeric_done);
        return 0;
    }
    r->numeric = NULL;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    int rc = uv_getaddrinfo(loop, &r->gai, on_resolved, host, port, &hints);
    if (rc < 0)
        return rc;
    r->active = true;
    LIST_INSERT_HEAD(&active, r, link);
    return 0;
}

void resolve_stop(void)
{
    stopping = true;
    /* A slow resolver must not hold up the exit. */
    resolve_req *r;
    LIST_FOREACH(r, &active, link)
        uv_cancel((uv_req_t *)&r->gai);
}
