/* register_memory / unregister_memory. Importing and registering memory
 * (mapping, pre-faulting, NIC registration) is slow for large buffers, so
 * it runs on libuv's worker threads; the loop keeps serving everyone and
 * the reply goes out when the work is done. */
#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "defer.h"
#include "log.h"
#include "memfd_import.h"
#include "nic.h"
#include "rpc.h"
#include "shm/memfd.h"

static uv_loop_t *loop;
/* Caps on registered bytes (resolved defaults), and what all pending
 * registrations add up to. */
static uint64_t cap_total, cap_client, pending_total;
/* Registrations under way (each may add a mapping), and how many mappings
 * of client memory the daemon may hold: vm.max_map_count less room for
 * everything else (completion areas, threads, libraries). */
static size_t pending_count, map_limit;

static size_t read_max_map_count(void)
{
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    unsigned long long n = 0;
    if (f) {
        if (fscanf(f, "%llu", &n) != 1)
            n = 0;
        fclose(f);
    }
    return n ? (size_t)n : 65530; /* the kernel's default */
}

void rpc_memory_init(uv_loop_t *l)
{
    loop = l;
    cap_total = config.max_registered_bytes;
    if (!cap_total) {
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        cap_total = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : UINT64_MAX;
    }
    cap_client = config.max_registered_bytes_per_client ? config.max_registered_bytes_per_client : cap_total;
    memfd_import_init(cap_client);
    size_t max_maps = read_max_map_count(), reserve = (size_t)config.max_clients * 2 + 4096;
    map_limit = max_maps > reserve + 1024 ? max_maps - reserve : 1024;
    log_info("client memory may use %zu mappings (vm.max_map_count %zu)", map_limit, max_maps);
}

typedef struct reg_job {
    uv_work_t work;
    defer_item later; /* answers a job that could not be queued */
    reply *r;
    memfd_maps *maps; /* a reference: the session may go meanwhile */
    pending_range *range;
    int fd;
    uint64_t offset, addr, length;
    int numa_node;
    bool populate;
    region *region;
    err e;
} reg_job;

/* Worker thread: touches nothing the loop owns. */
static void reg_work(uv_work_t *w)
{
    reg_job *j = w->data;
    if (memfd_import(j->maps, j->fd, j->offset, j->addr, j->length, j->numa_node, j->populate, &j->region, &j->e) == 0 &&
        nic_register_region(j->region, &j->e) < 0) {
        err_prefix(&j->e, "cannot register 0x%" PRIx64 " + %" PRIu64, j->addr, j->length);
        region_unref(j->region);
        j->region = NULL;
    }
    close(j->fd);
}

static void reg_done(uv_work_t *w, int status)
{
    reg_job *j = w->data;
    reply *r = j->r;
    session *s = r->s;
    LIST_REMOVE(j->range, link);
    free(j->range);
    s->nregistering--;
    s->registering_bytes -= j->length;
    pending_total -= j->length;
    pending_count--;
    memfd_maps_unref(j->maps);
    if (status < 0) {
        /* Cancelled before it ran: the work did not close the memfd. */
        close(j->fd);
        if (!j->e.code)
            err_set(&j->e, -ECANCELED, "registration of 0x%" PRIx64 " cancelled: the daemon is stopping", j->addr);
    }
    if (!j->region) {
        reply_err(r, &j->e);
    } else if (s->closing) {
        region_unref(j->region); /* the client left meanwhile */
    } else {
        int rc = region_table_insert(&s->regions, j->region);
        if (rc < 0) {
            region_unref(j->region);
            reply_fail(r, rc, "cannot register 0x%" PRIx64 " + %" PRIu64 ": %s", j->addr, j->length, strerror(-rc));
        } else {
            log_debug("client %s registered 0x%" PRIx64 " + %" PRIu64, s->name, j->addr, j->length);
        }
    }
    free(j);
    reply_send(r);
}

static void reg_not_queued(defer_item *it)
{
    reg_job *j = (reg_job *)((char *)it - offsetof(reg_job, later));
    reg_done(&j->work, 0);
}

void rpc_register(reply *r, const Mcefa__Request *req)
{
    const Mcefa__RegisterMemory *m = req->register_memory;
    session *s = r->s;
    if (m->fd_count != 1) {
        /* Whatever came with it must not be taken by the next request. */
        for (uint32_t i = 0; i < m->fd_count && i < WIRE_MAX_FDS; i++) {
            int extra = wire_reader_take_fd(&s->rd);
            if (extra >= 0)
                close(extra);
        }
        reply_fail(r, -EINVAL, "register_memory needs exactly one memfd (fd_count %u)", m->fd_count);
        return;
    }
    int fd = wire_reader_take_fd(&s->rd);
    if (fd < 0) {
        reply_fail(r, -EBADF,
                   "register_memory of 0x%" PRIx64 " arrived without its memfd; send the descriptor with SCM_RIGHTS",
                   m->addr);
        return;
    }
    if (m->length == 0 || m->addr + m->length < m->addr) {
        reply_fail(r, -EINVAL, "cannot register 0x%" PRIx64 " + %" PRIu64 ": empty or wrapping range", m->addr,
                   m->length);
        goto out;
    }
    /* Cheap, so on the loop: a wrong descriptor is refused before any
     * other check, as it always was. */
    const char *why;
    int rc = shm_memfd_check(fd, m->fd_offset, m->length, &why);
    if (rc < 0) {
        reply_fail(r, rc, "cannot register 0x%" PRIx64 " + %" PRIu64 ": %s", m->addr, m->length, why);
        goto out;
    }
    if (s->regions.n + s->nregistering >= config.max_regions_per_client) {
        reply_fail(r, -ENOSPC,
                   "client already has %zu regions registered (max_regions_per_client); unregister some or "
                   "register larger buffers",
                   s->regions.n + s->nregistering);
        goto out;
    }
    /* Checked before any work is queued, counting registrations under way:
     * each mapped and pre-faulted byte is charged to the daemon. */
    uint64_t mine = s->regions.bytes + s->registering_bytes;
    if (m->length > cap_client || mine > cap_client - m->length) {
        reply_fail(r, -ENOSPC,
                   "cannot register 0x%" PRIx64 " + %" PRIu64 ": this client already has %" PRIu64
                   " bytes registered or being registered and may have at most %" PRIu64
                   " (max_registered_bytes_per_client); unregister some first",
                   m->addr, m->length, mine, cap_client);
        goto out;
    }
    uint64_t all = region_tables_bytes() + pending_total;
    if (m->length > cap_total || all > cap_total - m->length) {
        reply_fail(r, -ENOSPC,
                   "cannot register 0x%" PRIx64 " + %" PRIu64 ": clients of this daemon together have %" PRIu64
                   " bytes registered and the daemon takes at most %" PRIu64
                   " (max_registered_bytes); unregister memory or ask the operator to raise it",
                   m->addr, m->length, all, cap_total);
        goto out;
    }
    if (memfd_mappings() + pending_count >= map_limit) {
        reply_fail(r, -ENOSPC,
                   "cannot register 0x%" PRIx64 " + %" PRIu64 ": the daemon holds %zu mappings of client memory, "
                   "its share of vm.max_map_count; register larger buffers (regions of one memfd share a mapping)",
                   m->addr, m->length, memfd_mappings());
        goto out;
    }
    if (!s->maps && !(s->maps = memfd_maps_new())) {
        reply_fail(r, -ENOMEM, "out of memory registering a region");
        goto out;
    }
    region *clash = region_table_overlap(&s->regions, m->addr, m->length);
    if (clash) {
        reply_fail(r, -EEXIST,
                   "cannot register 0x%" PRIx64 " + %" PRIu64 ": it overlaps the registered region 0x%" PRIx64
                   " + %" PRIu64 "; unregister that first",
                   m->addr, m->length, clash->addr, clash->length);
        goto out;
    }
    pending_range *pr;
    LIST_FOREACH(pr, &s->registering, link)
        if (m->addr < pr->addr + pr->len && pr->addr < m->addr + m->length) {
            reply_fail(r, -EEXIST,
                       "cannot register 0x%" PRIx64 " + %" PRIu64 ": it overlaps 0x%" PRIx64 " + %" PRIu64
                       ", whose registration is still under way",
                       m->addr, m->length, pr->addr, pr->len);
            goto out;
        }
    reg_job *j = calloc(1, sizeof(*j));
    pr = calloc(1, sizeof(*pr));
    reply *d = j && pr ? reply_defer(r) : NULL;
    if (!d) {
        free(j);
        free(pr);
        reply_fail(r, -ENOMEM, "out of memory registering a region");
        goto out;
    }
    pr->addr = m->addr;
    pr->len = m->length;
    LIST_INSERT_HEAD(&s->registering, pr, link);
    s->nregistering++;
    s->registering_bytes += m->length;
    pending_total += m->length;
    pending_count++;
    memfd_maps_ref(s->maps);
    j->maps = s->maps;
    j->r = d;
    j->range = pr;
    j->fd = fd;
    j->offset = m->fd_offset;
    j->addr = m->addr;
    j->length = m->length;
    j->numa_node = m->numa_node;
    j->populate = config.populate;
    j->work.data = j;
    rc = uv_queue_work(loop, &j->work, reg_work, reg_done);
    if (rc < 0) {
        /* Not queued: answered on the next turn like any deferred reply. */
        err_set(&j->e, -EAGAIN, "cannot queue the registration: %s", uv_strerror(rc));
        close(fd);
        defer_call(&j->later, reg_not_queued);
    }
    return;
out:
    close(fd);
}

void rpc_unregister(reply *r, const Mcefa__Request *req)
{
    const Mcefa__UnregisterMemory *m = req->unregister_memory;
    session *s = r->s;
    region *reg = region_table_remove(&s->regions, m->addr);
    if (!reg) {
        reply_fail(r, -ENOENT,
                   "no region is registered at 0x%" PRIx64 " (unregistered twice, or not the start address of a "
                   "region?)",
                   m->addr);
        return;
    }
    log_debug("client %s unregistered 0x%" PRIx64 " + %" PRIu64, s->name, reg->addr, reg->length);
    region_unref(reg); /* transfers in flight keep their own references */
}
