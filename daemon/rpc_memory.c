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

#include "affinity.h"
#include "config.h"
#include "defer.h"
#include "gpu.h"
#include "log.h"
#include "memfd_import.h"
#include "nic.h"
#include "plain_import.h"
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
    memfd_maps *maps; /* host memory: a reference, the session may go meanwhile */
    gpu_desc *gpu;    /* GPU memory: what the client sent (its fds are the job's) */
    plain_proc *proc; /* plain host memory: the client process (a reference) */
    pending_range *range;
    int fd;
    uint64_t offset, addr, length;
    uint64_t charged; /* bytes counted against the host memory caps meanwhile */
    int numa_node;
    bool populate;
    region *region;
    err e;
} reg_job;

/* GPU memory goes to the NICs whose plan takes it (FI_HMEM: dmabuf, else
 * the CUDA iface), its GPU's own NICs first; where none does, or the
 * registration fails, it stays staged memory: other hosts reach it
 * through the staging buffers, slower but whole. A failure is logged, not
 * the client's: its memory is usable either way. */
static void register_gpu_with_nics(region *r)
{
    int dev = gpu_region_device(r), fd = -1;
    uint64_t off = 0;
    r->near = affinity_near_nics(gpu_bus_id(dev), r->numa_node);
    gpu_pin_host_area(dev);
    gpu_region_dmabuf(r, &fd, &off);
    err e = {0};
    int k = nic_register_gpu_region(r, fd, off, dev, &e);
    if (k < 0)
        log_warn("GPU memory 0x%" PRIx64 " + %" PRIu64 " on GPU %s stays staged (other hosts reach it through "
                 "staging buffers): %s",
                 r->addr, r->length, gpu_bus_id(dev), e.text);
}

/* Worker thread: touches nothing the loop owns. */
static void reg_work(uv_work_t *w)
{
    reg_job *j = w->data;
    if (j->gpu) {
        if (gpu_import(j->gpu, j->addr, j->length, &j->region, &j->e) == 0)
            register_gpu_with_nics(j->region);
        return;
    }
    if (j->proc) {
        /* No NIC can register another process's memory: it travels to
         * other hosts through the staging buffers. */
        if (plain_import(j->proc, j->addr, j->length, j->numa_node, &j->region, &j->e) == 0)
            j->region->near = affinity_near_nics(NULL, j->region->numa_node);
        return;
    }
    if (memfd_import(j->maps, j->fd, j->offset, j->addr, j->length, j->numa_node, j->populate, &j->region, &j->e) == 0)
        j->region->near = affinity_near_nics(NULL, j->region->numa_node);
    if (j->region && nic_register_region(j->region, &j->e) < 0) {
        err_prefix(&j->e, "cannot register 0x%" PRIx64 " + %" PRIu64, j->addr, j->length);
        region_unref(j->region);
        j->region = NULL;
    }
    close(j->fd);
    j->fd = -1;
}

static void reg_done(uv_work_t *w, int status)
{
    reg_job *j = w->data;
    reply *r = j->r;
    session *s = r->s;
    LIST_REMOVE(j->range, link);
    free(j->range);
    s->nregistering--;
    s->registering_bytes -= j->charged;
    pending_total -= j->charged;
    if (j->maps)
        pending_count--;
    memfd_maps_unref(j->maps);
    if (status < 0) {
        /* Cancelled before it ran: the work closed nothing. */
        if (j->fd >= 0)
            close(j->fd);
        if (j->gpu)
            gpu_desc_close(j->gpu);
        if (!j->e.code)
            err_set(&j->e, -ECANCELED, "registration of 0x%" PRIx64 " cancelled: the daemon is stopping", j->addr);
    }
    gpu_desc_free(j->gpu);
    plain_proc_unref(j->proc);
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
            log_debug("client %s registered 0x%" PRIx64 " + %" PRIu64 " (%s)", s->name, j->addr, j->length,
                      region_kind_name(j->region->ops->kind));
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

/* Closes the descriptors that came with a refused request, so the next
 * request does not take them. */
static void drop_fds(session *s, uint32_t n)
{
    for (uint32_t i = 0; i < n && i < WIRE_MAX_FDS; i++) {
        int extra = wire_reader_take_fd(&s->rd);
        if (extra >= 0)
            close(extra);
    }
}

/* The checks every registration passes before work is queued; 0, or -1
 * when r was answered. host: the bytes are charged to the daemon (mapped,
 * pre-faulted), so the byte and mapping caps apply. */
static int admit(reply *r, session *s, uint64_t addr, uint64_t length, bool host)
{
    if (s->regions.n + s->nregistering >= config.max_regions_per_client) {
        reply_fail(r, -ENOSPC,
                   "client already has %zu regions registered (max_regions_per_client); unregister some or "
                   "register larger buffers",
                   s->regions.n + s->nregistering);
        return -1;
    }
    if (host) {
        /* Counting registrations under way: each mapped and pre-faulted
         * byte is charged to the daemon. */
        uint64_t mine = s->regions.bytes + s->registering_bytes;
        if (length > cap_client || mine > cap_client - length) {
            reply_fail(r, -ENOSPC,
                       "cannot register 0x%" PRIx64 " + %" PRIu64 ": this client already has %" PRIu64
                       " bytes registered or being registered and may have at most %" PRIu64
                       " (max_registered_bytes_per_client); unregister some first",
                       addr, length, mine, cap_client);
            return -1;
        }
        uint64_t all = region_tables_bytes() + pending_total;
        if (length > cap_total || all > cap_total - length) {
            reply_fail(r, -ENOSPC,
                       "cannot register 0x%" PRIx64 " + %" PRIu64 ": clients of this daemon together have %" PRIu64
                       " bytes registered and the daemon takes at most %" PRIu64
                       " (max_registered_bytes); unregister memory or ask the operator to raise it",
                       addr, length, all, cap_total);
            return -1;
        }
        if (memfd_mappings() + pending_count >= map_limit) {
            reply_fail(r, -ENOSPC,
                       "cannot register 0x%" PRIx64 " + %" PRIu64 ": the daemon holds %zu mappings of client memory, "
                       "its share of vm.max_map_count; register larger buffers (regions of one memfd share a mapping)",
                       addr, length, memfd_mappings());
            return -1;
        }
    }
    region *clash = region_table_overlap(&s->regions, addr, length);
    if (clash) {
        reply_fail(r, -EEXIST,
                   "cannot register 0x%" PRIx64 " + %" PRIu64 ": it overlaps the registered region 0x%" PRIx64
                   " + %" PRIu64 "; unregister that first",
                   addr, length, clash->addr, clash->length);
        return -1;
    }
    pending_range *pr;
    LIST_FOREACH(pr, &s->registering, link)
        if (addr < pr->addr + pr->len && pr->addr < addr + length) {
            reply_fail(r, -EEXIST,
                       "cannot register 0x%" PRIx64 " + %" PRIu64 ": it overlaps 0x%" PRIx64 " + %" PRIu64
                       ", whose registration is still under way",
                       addr, length, pr->addr, pr->len);
            return -1;
        }
    return 0;
}

/* Queues j (its fields set) on a worker thread, answering r when done.
 * On failure j's resources are the caller's. */
static int queue(reply *r, session *s, reg_job *j)
{
    pending_range *pr = calloc(1, sizeof(*pr));
    reply *d = pr ? reply_defer(r) : NULL;
    if (!d) {
        free(pr);
        reply_fail(r, -ENOMEM, "out of memory registering a region");
        return -1;
    }
    pr->addr = j->addr;
    pr->len = j->length;
    LIST_INSERT_HEAD(&s->registering, pr, link);
    s->nregistering++;
    s->registering_bytes += j->charged;
    pending_total += j->charged;
    if (j->maps)
        pending_count++;
    j->r = d;
    j->range = pr;
    j->work.data = j;
    int rc = uv_queue_work(loop, &j->work, reg_work, reg_done);
    if (rc < 0) {
        /* Not queued: answered on the next turn like any deferred reply. */
        err_set(&j->e, -EAGAIN, "cannot queue the registration: %s", uv_strerror(rc));
        if (j->fd >= 0)
            close(j->fd);
        j->fd = -1;
        if (j->gpu)
            gpu_desc_close(j->gpu);
        defer_call(&j->later, reg_not_queued);
    }
    return 0;
}

/* GPU memory: one descriptor per VMM chunk, then the dmabuf if any. A VMM
 * range spanning more than GPU_MSG_CHUNKS allocations comes in several
 * messages for the same range, all but the last marked `more`; their
 * chunks wait in the session meanwhile (gpu.c bounds the descriptors all
 * waiting descriptions hold). */
static void register_gpu(reply *r, session *s, const Mcefa__RegisterMemory *m)
{
    const Mcefa__GpuMemory *g = m->gpu;
    bool vmm = g->share == MCEFA__GPU_SHARE__GPU_SHARE_VMM;
    uint32_t want = (vmm ? (uint32_t)g->n_chunks : 0) + (g->dmabuf ? 1 : 0);
    if (m->fd_count != want || want > WIRE_MAX_FDS || g->n_chunks > GPU_MSG_CHUNKS ||
        (!vmm && (g->n_chunks || g->more)) || (g->more && g->dmabuf)) {
        drop_fds(s, m->fd_count);
        reply_fail(r, -EINVAL,
                   "register_memory of GPU memory 0x%" PRIx64 " needs one descriptor per VMM chunk (at most %d a "
                   "message; none for IPC shares) and one for the dmabuf (in the last message): %u expected, %u "
                   "came with %zu chunks",
                   m->addr, GPU_MSG_CHUNKS, want, m->fd_count, g->n_chunks);
        return;
    }
    /* A description left waiting continues only with the same range. */
    gpu_desc *d = s->vmm_pending;
    s->vmm_pending = NULL;
    if (d && (!vmm || s->vmm_pending_addr != m->addr || s->vmm_pending_len != m->length)) {
        gpu_desc_free(d);
        d = NULL;
    }
    if (!d && !(d = gpu_desc_new())) {
        drop_fds(s, m->fd_count);
        reply_fail(r, -ENOMEM, "out of memory registering a region");
        return;
    }
    d->share = g->share;
    int missing = 0, added = 0;
    for (size_t i = 0; i < g->n_chunks; i++) {
        int fd = wire_reader_take_fd(&s->rd);
        if (fd < 0)
            missing = 1;
        else if (added < 0)
            close(fd);
        else
            added = gpu_desc_add_chunk(d, g->chunks[i]->addr, g->chunks[i]->size, fd);
    }
    if (g->dmabuf) {
        int fd = wire_reader_take_fd(&s->rd);
        if (fd < 0)
            missing = 1;
        else if (d->dmabuf_fd >= 0)
            close(fd);
        else
            d->dmabuf_fd = fd;
    }
    err e = {0};
    if (missing)
        err_set(&e, -EBADF, "register_memory of GPU memory 0x%" PRIx64 " arrived without its descriptors; send them "
                            "with SCM_RIGHTS", m->addr);
    else if (added == -E2BIG)
        err_set(&e, -E2BIG, "cannot register 0x%" PRIx64 " + %" PRIu64 ": it spans more than %d VMM allocations; "
                            "register it in parts", m->addr, m->length, GPU_MAX_CHUNKS);
    else if (added == -EMFILE)
        err_set(&e, -EMFILE, "cannot register 0x%" PRIx64 ": the daemon holds too many VMM descriptors of "
                             "registrations under way; retry later", m->addr);
    else if (added < 0)
        err_set(&e, added, "out of memory registering a region");
    else if (!g->bus_id || strlen(g->bus_id) >= sizeof(d->bus_id))
        err_set(&e, -EINVAL, "register_memory of GPU memory 0x%" PRIx64 ": bus_id missing or too long", m->addr);
    else if (g->uuid.len != 0 && g->uuid.len != 16)
        err_set(&e, -EINVAL, "register_memory of GPU memory 0x%" PRIx64 ": uuid must be 16 bytes (got %zu)", m->addr,
                g->uuid.len);
    else if (g->share == MCEFA__GPU_SHARE__GPU_SHARE_IPC && g->ipc_handle.len != sizeof(d->ipc))
        err_set(&e, -EINVAL, "register_memory of GPU memory 0x%" PRIx64 ": the IPC handle must be %zu bytes (got %zu)",
                m->addr, sizeof(d->ipc), g->ipc_handle.len);
    else if (m->length == 0 || m->addr + m->length < m->addr)
        err_set(&e, -EINVAL, "cannot register 0x%" PRIx64 " + %" PRIu64 ": empty or wrapping range", m->addr,
                m->length);
    if (!e.code && g->more) {
        /* Answered now; the range is checked once all its chunks came. */
        s->vmm_pending = d;
        s->vmm_pending_addr = m->addr;
        s->vmm_pending_len = m->length;
        return;
    }
    reg_job *j = NULL;
    if (!e.code) {
        snprintf(d->bus_id, sizeof(d->bus_id), "%s", g->bus_id);
        if ((d->has_uuid = g->uuid.len == 16))
            memcpy(d->uuid, g->uuid.data, 16);
        if (g->ipc_handle.len == sizeof(d->ipc))
            memcpy(d->ipc, g->ipc_handle.data, sizeof(d->ipc));
        d->alloc_base = g->alloc_base;
        d->alloc_size = g->alloc_size;
        gpu_desc_check(d, m->addr, m->length, &e);
    }
    if (!e.code && !(j = calloc(1, sizeof(*j))))
        err_set(&e, -ENOMEM, "out of memory registering a region");
    if (e.code) {
        reply_err(r, &e);
        goto fail;
    }
    if (admit(r, s, m->addr, m->length, false) < 0)
        goto fail;
    j->gpu = d;
    j->fd = -1;
    j->addr = m->addr;
    j->length = m->length;
    if (queue(r, s, j) == 0)
        return;
fail:
    gpu_desc_free(d);
    free(j);
}

/* Plain host memory: nothing to map; the worker checks the daemon can
 * read the client's range (a first touch may fault in the client). */
static void register_plain(reply *r, session *s, const Mcefa__RegisterMemory *m)
{
    if (m->fd_count || m->gpu) {
        drop_fds(s, m->fd_count);
        reply_fail(r, -EINVAL, "register_memory of plain host memory 0x%" PRIx64 " takes no descriptor and no GPU "
                               "description (fd_count %u)", m->addr, m->fd_count);
        return;
    }
    if (!config.plain_memory) {
        reply_fail(r, -EPERM, "cannot register 0x%" PRIx64 " + %" PRIu64 ": this daemon refuses plain host memory "
                              "(plain_memory=false); register memory from mcefa_alloc / allocate_managed_buffer",
                   m->addr, m->length);
        return;
    }
    if (m->length == 0 || m->addr + m->length < m->addr || m->addr + m->length > (UINT64_C(1) << 57)) {
        reply_fail(r, -EINVAL, "cannot register 0x%" PRIx64 " + %" PRIu64 ": empty, wrapping or not a user-space range",
                   m->addr, m->length);
        return;
    }
    if (!s->proc) {
        /* Taken only when it connected: later its pid may name another. */
        reply_fail(r, -ESRCH, "cannot register plain host memory 0x%" PRIx64 ": the daemon could not take a pidfd "
                              "for this client when it connected (see the daemon's log)", m->addr);
        return;
    }
    if (admit(r, s, m->addr, m->length, false) < 0)
        return;
    reg_job *j = calloc(1, sizeof(*j));
    if (!j) {
        reply_fail(r, -ENOMEM, "out of memory registering a region");
        return;
    }
    plain_proc_ref(s->proc);
    j->proc = s->proc;
    j->fd = -1;
    j->addr = m->addr;
    j->length = m->length;
    j->numa_node = m->numa_node;
    if (queue(r, s, j) == 0)
        return;
    plain_proc_unref(j->proc);
    free(j);
}

void rpc_register(reply *r, const Mcefa__Request *req)
{
    const Mcefa__RegisterMemory *m = req->register_memory;
    session *s = r->s;
    if (m->plain) {
        register_plain(r, s, m);
        return;
    }
    if (m->gpu) {
        register_gpu(r, s, m);
        return;
    }
    if (m->fd_count != 1) {
        drop_fds(s, m->fd_count);
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
    if (admit(r, s, m->addr, m->length, true) < 0)
        goto out;
    if (!s->maps && !(s->maps = memfd_maps_new())) {
        reply_fail(r, -ENOMEM, "out of memory registering a region");
        goto out;
    }
    reg_job *j = calloc(1, sizeof(*j));
    if (!j) {
        reply_fail(r, -ENOMEM, "out of memory registering a region");
        goto out;
    }
    memfd_maps_ref(s->maps);
    j->maps = s->maps;
    j->fd = fd;
    j->offset = m->fd_offset;
    j->addr = m->addr;
    j->length = m->length;
    j->charged = m->length;
    j->numa_node = m->numa_node;
    j->populate = config.populate;
    if (queue(r, s, j) == 0)
        return;
    memfd_maps_unref(j->maps);
    free(j);
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
