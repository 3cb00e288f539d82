#include "session.h"

#include "copypool.h"
#include "gpu_desc.h"
#include "memfd_import.h"
#include "plain_import.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "ident.h"
#include "log.h"

static struct session_list sessions = TAILQ_HEAD_INITIALIZER(sessions);
static unsigned nsessions;
static uint64_t next_id;
static int admin_gid = -1;

void session_init(int gid)
{
    admin_gid = gid;
}

struct session_list *session_all(void)
{
    return &sessions;
}

unsigned session_count(void)
{
    return nsessions;
}

session *session_new(int fd)
{
    session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    atomic_init(&s->refs, 1); /* the event loop's reference */
    s->fd = fd;
    s->id = ++next_id;
    STAILQ_INIT(&s->out);
    LIST_INIT(&s->registering);
    open_set_init(&s->opens);
    inbox_init(&s->inbox);
    batch_set_init(&s->batches, NULL, 0);
    struct ucred cred;
    socklen_t cl = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0) {
        s->pid = cred.pid;
        s->uid = cred.uid;
        s->gid = cred.gid;
    }
    snprintf(s->name, sizeof(s->name), "pid%d", (int)s->pid);
    /* The process that connected, for plain host memory: now, while the
     * connection proves it is alive, not when it first registers some. */
    err pe = {0};
    if (config.plain_memory && plain_proc_open(fd, s->pid, s->uid, &s->proc, &pe) < 0)
        log_info("client pid %d: no plain host memory for it: %s", (int)s->pid, pe.text);
    s->admin = s->uid == 0 || s->uid == geteuid();
    if (!s->admin && admin_gid >= 0) {
        gid_t groups[256];
        socklen_t gl = sizeof(groups);
        s->admin = s->gid == (gid_t)admin_gid;
        if (!s->admin && getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &gl) == 0)
            for (size_t i = 0; i < gl / sizeof(gid_t); i++)
                s->admin |= groups[i] == (gid_t)admin_gid;
    }
    wire_reader_init(&s->rd, config.max_frame_bytes);
    TAILQ_INSERT_HEAD(&sessions, s, link);
    nsessions++;
    return s;
}

void session_ref(session *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

/* Reply bytes queued for all sessions (max_outbound_bytes_total). */
static size_t all_out_bytes;

void session_sent(session *s, size_t n)
{
    s->out_bytes -= n;
    all_out_bytes -= n;
}

static void drop_output(session *s)
{
    while (!STAILQ_EMPTY(&s->out)) {
        outbuf *o = STAILQ_FIRST(&s->out);
        STAILQ_REMOVE_HEAD(&s->out, link);
        for (unsigned i = 0; i < o->nfds; i++)
            close(o->fds[i]);
        free(o->data);
        free(o);
    }
    all_out_bytes -= s->out_bytes;
    s->out_bytes = 0;
}

static void session_free(session *s)
{
    batch_destroy_all(&s->batches);
    if (s->cq)
        munmap(s->cq, s->cq_len);
    drop_output(s);
    while (!LIST_EMPTY(&s->registering)) {
        pending_range *pr = LIST_FIRST(&s->registering);
        LIST_REMOVE(pr, link);
        free(pr);
    }
    free(s);
}

/* May run on a copy or NIC thread: by then the loop has let go of it. */
void session_unref(session *s)
{
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        session_free(s);
}

uint64_t session_inflight(const session *s)
{
    return atomic_load_explicit(&s->batches.inflight, memory_order_relaxed);
}

void session_teardown(session *s)
{
    TAILQ_REMOVE(&sessions, s, link);
    nsessions--;
    atomic_store(&s->gone, true);
    uint64_t inflight = session_inflight(s);
    log_info("client %s (session %llu, pid %d) disconnected: releasing %zu regions (%llu bytes)%s", s->name,
             (unsigned long long)s->id, (int)s->pid, s->regions.n, (unsigned long long)s->regions.bytes,
             inflight ? ", waiting for transfers in flight" : "");
    /* Copies it queued and that have not started are dropped (they fail
     * with -ECANCELED): nobody is left to wait for them. */
    size_t cancelled = copypool_cancel(s);
    if (cancelled)
        log_info("client %s: %zu queued copies cancelled", s->name, cancelled);
    segment_unexport(s->exported);
    s->exported = NULL;
    segment_close_all(&s->opens);
    /* Nobody else may take them; a new owner of the name starts empty. */
    if (s->inbox.n)
        log_info("client %s: %zu notifications it did not take are dropped with it", s->name, s->inbox.n);
    inbox_clear(&s->inbox);
    region_table_clear(&s->regions);
    memfd_maps_unref(s->maps); /* mappings stay while regions in flight use them */
    plain_proc_unref(s->proc);  /* likewise its pidfd */
    s->proc = NULL;
    gpu_desc_free(s->vmm_pending);
    s->vmm_pending = NULL;
    s->maps = NULL;
    wire_reader_free(&s->rd);
    drop_output(s);
}

int session_notify(session *s, const char *segment, const void *name, size_t name_len, const void *msg,
                   size_t msg_len, err *e)
{
    int rc = inbox_push(&s->inbox, config.notify_queue_bytes, name, name_len, msg, msg_len);
    if (rc == -ENOMEM)
        return err_set(e, rc, "host %s is out of memory queueing it", ident_hostname());
    if (rc < 0) {
        /* Once per filling: a sender retrying in a loop must not flood the log. */
        if (!s->inbox.full_logged)
            log_warn("client %s (pid %d) does not take its notifications: %zu (%zu bytes) queued for segment %s, "
                     "notify_queue_bytes %llu; refusing more",
                     s->name, (int)s->pid, s->inbox.n, s->inbox.bytes, segment,
                     (unsigned long long)config.notify_queue_bytes);
        s->inbox.full_logged = true;
        return err_set(e, rc,
                       "the segment's owner (client %s, pid %d, on host %s) is not draining its notifications "
                       "(get_notifies): %zu (%zu bytes) queued, notify_queue_bytes %llu; retry once it has taken them",
                       s->name, (int)s->pid, ident_hostname(), s->inbox.n, s->inbox.bytes,
                       (unsigned long long)config.notify_queue_bytes);
    }
    return 0;
}

static void on_evict(defer_item *it)
{
    session *s = (session *)((char *)it - offsetof(session, evict));
    s->evict_queued = false;
    if (s->on_output)
        s->on_output(s); /* broken: the server closes it */
    session_unref(s);
}

/* Many clients that each stay under max_outbound_bytes can still hold a
 * lot together: the one holding the most goes. */
static void evict_worst(void)
{
    session *w = NULL, *i;
    TAILQ_FOREACH(i, &sessions, link)
        if (!i->broken && !i->closing && (!w || i->out_bytes > w->out_bytes))
            w = i;
    if (!w || w->evict_queued)
        return;
    log_warn("clients have %zu bytes of replies queued together (max_outbound_bytes_total %llu); disconnecting "
             "client %s, which does not read its %zu",
             all_out_bytes, (unsigned long long)config.max_outbound_bytes_total, w->name, w->out_bytes);
    w->broken = true;
    w->evict_queued = true;
    session_ref(w);
    defer_call(&w->evict, on_evict);
}

int session_queue_response(session *s, const Mcefa__Response *resp, int *fds, unsigned nfds)
{
    outbuf *o = calloc(1, sizeof(*o));
    if (!o || wire_pack(&resp->base, &o->data, &o->len) < 0) {
        free(o);
        for (unsigned i = 0; i < nfds; i++)
            close(fds[i]);
        log_error("client %s: out of memory packing a reply; disconnecting it", s->name);
        s->broken = true;
        if (s->on_output)
            s->on_output(s);
        return -ENOMEM;
    }
    /* The descriptors now belong to the queued message. */
    memcpy(o->fds, fds, sizeof(int) * nfds);
    o->nfds = nfds;
    STAILQ_INSERT_TAIL(&s->out, o, link);
    s->out_bytes += o->len;
    all_out_bytes += o->len;
    if (s->out_bytes > config.max_outbound_bytes) {
        log_warn("client %s does not read its replies (%zu bytes queued); disconnecting it", s->name, s->out_bytes);
        s->broken = true;
    } else if (all_out_bytes > config.max_outbound_bytes_total) {
        evict_worst();
    }
    if (s->on_output)
        s->on_output(s);
    return s->broken ? -ENOBUFS : 0;
}
