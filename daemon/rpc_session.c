/* hello: protocol check, the client's name, its completion area. */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "ident.h"
#include "log.h"
#include "rpc.h"
#include "shm/completion.h"
#include "shm/memfd.h"

void rpc_hello(reply *r, const Mcefa__Request *req)
{
    const Mcefa__Hello *m = req->hello;
    session *s = r->s;
    if (m->protocol_version != MCEFA_PROTOCOL_VERSION) {
        reply_fail(r, -EPROTONOSUPPORT,
                   "protocol version %u is not supported: mcefad %s speaks version %u; use the libmcefa that "
                   "matches the installed daemon",
                   m->protocol_version, MCEFA_VERSION, MCEFA_PROTOCOL_VERSION);
        r->close_after = true;
        return;
    }
    size_t k = 0;
    for (const char *p = m->client_name; *p && k + 1 < sizeof(s->name); p++)
        s->name[k++] = isgraph((unsigned char)*p) ? *p : '_';
    if (k)
        s->name[k] = 0;

    uint32_t slots = (uint32_t)config.completion_slots;
    size_t size;
    int fd = shm_memfd_create("mcefad-completion", shm_cq_size(slots), 0, &size);
    if (fd < 0) {
        reply_fail(r, fd, "cannot create the completion area: %s", strerror(-fd));
        r->close_after = true;
        return;
    }
    void *area = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (area == MAP_FAILED) {
        int e = -errno;
        close(fd);
        reply_fail(r, e, "cannot map the completion area: %s", strerror(-e));
        r->close_after = true;
        return;
    }
    shm_cq_init(area, slots);
    s->cq = area;
    s->cq_len = size;
    batch_set_init(&s->batches, area, slots);
    s->hello_done = true;
    r->fds[r->nfds++] = fd;

    Mcefa__Welcome *w = reply_alloc(r, sizeof(*w));
    mcefa__welcome__init(w);
    w->protocol_version = MCEFA_PROTOCOL_VERSION;
    w->daemon_version = MCEFA_VERSION;
    w->session_id = s->id;
    w->hostname = (char *)ident_hostname();
    w->epoch = ident_epoch();
    w->completion_slots = slots;
    w->fd_count = 1;
    w->features = config.submit_ring_entries ? MCEFA_FEATURE_SUBMIT_RING : 0;
    r->resp.body_case = MCEFA__RESPONSE__BODY_WELCOME;
    r->resp.welcome = w;
    log_info("client %s connected (session %llu, pid %d, uid %d)", s->name, (unsigned long long)s->id, (int)s->pid,
             (int)s->uid);
}
