/* Client sessions: identity, lifetime and teardown. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"

session *session_new(int fd)
{
    session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    atomic_init(&s->refs, 1); /* the event loop's reference */
    s->fd = fd;
    s->id = ++mcefad.next_session_id;
    s->next_batch_id = 1;
    s->next_handle = 1;
    struct ucred cred;
    socklen_t cl = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0) {
        s->pid = cred.pid;
        s->uid = cred.uid;
        s->gid = cred.gid;
    }
    snprintf(s->name, sizeof(s->name), "pid%d", (int)s->pid);
    s->admin = s->uid == 0 || s->uid == geteuid();
    if (!s->admin && mcefad.admin_gid >= 0) {
        gid_t groups[256];
        socklen_t gl = sizeof(groups);
        s->admin = s->gid == (gid_t)mcefad.admin_gid;
        if (!s->admin && getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &gl) == 0)
            for (size_t i = 0; i < gl / sizeof(gid_t); i++)
                s->admin |= groups[i] == (gid_t)mcefad.admin_gid;
    }
    wire_reader_init(&s->rd, mcefad.cfg.max_frame_bytes);
    s->next = mcefad.sessions;
    if (s->next)
        s->next->prev = s;
    mcefad.sessions = s;
    mcefad.nsessions++;
    return s;
}

void session_ref(session *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

static void session_free(session *s)
{
    xfer_destroy_batches(s);
    if (s->cq)
        munmap(s->cq, s->cq_len);
    for (outbuf *o = s->out_head, *no; o; o = no) {
        no = o->next;
        for (unsigned i = 0; i < o->nfds; i++)
            close(o->fds[i]);
        free(o->data);
        free(o);
    }
    free(s);
}

/* May run on a copy thread: by then the loop has let go of the session. */
void session_unref(session *s)
{
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        session_free(s);
}

void session_teardown(session *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        mcefad.sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    mcefad.nsessions--;
    uint64_t inflight = atomic_load(&s->inflight);
    log_info("client %s (session %llu, pid %d) disconnected: releasing %zu regions (%llu bytes)%s", s->name,
             (unsigned long long)s->id, (int)s->pid, s->regions.n, (unsigned long long)s->regions.bytes,
             inflight ? ", waiting for transfers in flight" : "");
    segment_unexport(s);
    segment_close_all(s);
    region_table_clear(&s->regions);
    wire_reader_free(&s->rd);
}
