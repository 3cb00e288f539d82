/* libmcefa: connection to the daemon, the request/response exchange,
 * segments and status. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"
#include "shm/completion.h"

/* The exchange. Any number of threads may have a request outstanding on one
 * client: each registers a client_pending under c->lock, sends its frame
 * under c->send_lock alone, and waits. One waiter at a time reads frames
 * from the socket (the reader, c->reading) and hands every reply to the
 * waiter whose seq it carries; when its own reply came, it passes the
 * reading on to another waiter. The only lock held while blocked on the
 * socket is send_lock, by a sender waiting for room; the reader holds none.
 *
 * When the connection breaks every waiter fails with the reason, and so does
 * every later call. A reply with seq 0 is a protocol error the daemon could
 * not tie to a request: it consumed a frame of ours without answering it,
 * and which waiter's it was is unknown. Rather than leave that waiter
 * blocked for ever (or fail a guess), every waiter gets the daemon's error
 * and the connection is closed; replies of requests that may have taken
 * effect cannot reach their callers then, so only a new connection is in
 * a known state. */

#define CONN_CLOSED_TEXT "mcefad closed the connection (daemon stopped or restarted?)"

/* Reads until one whole frame is buffered and decodes it, with the
 * descriptors it declares. Only the reader calls it, without c->lock. On
 * failure why gets the text. */
static int read_response(mcefa_client *c, Mcefa__Response **out, int *fds, unsigned *nfds, char *why, size_t why_len)
{
    const uint8_t *payload;
    size_t len;
    for (;;) {
        int rc = wire_reader_next(&c->rd, &payload, &len);
        if (rc == 1)
            break;
        if (rc < 0) {
            snprintf(why, why_len, "mcefad sent an oversize frame; is the socket really mcefad's?");
            return -EBADMSG;
        }
        ssize_t n = wire_reader_fill(&c->rd, c->sock);
        if (n == -EAGAIN) {
            struct pollfd p = {.fd = c->sock, .events = POLLIN};
            if (poll(&p, 1, -1) < 0 && errno != EINTR) {
                int e = errno;
                snprintf(why, why_len, "poll on the mcefad socket failed: %s", strerror(e));
                return -e;
            }
            continue;
        }
        if (n == 0 || n == -ECONNRESET) {
            snprintf(why, why_len, CONN_CLOSED_TEXT);
            return -ECONNRESET;
        }
        if (n < 0) {
            snprintf(why, why_len, "reading from mcefad failed: %s", strerror((int)-n));
            return (int)n;
        }
    }
    Mcefa__Response *resp = mcefa__response__unpack(NULL, len, payload);
    wire_reader_consume(&c->rd);
    if (!resp) {
        snprintf(why, why_len, "mcefad sent a reply that does not decode (client and daemon versions mismatched?)");
        return -EBADMSG;
    }
    /* A frame's descriptors came with its first byte, so they are queued by
     * now, after those of every earlier frame. */
    unsigned want = resp->body_case == MCEFA__RESPONSE__BODY_WELCOME       ? resp->welcome->fd_count
                    : resp->body_case == MCEFA__RESPONSE__BODY_RING_OPENED ? resp->ring_opened->fd_count
                                                                           : 0;
    *nfds = 0;
    while (*nfds < want && *nfds < WIRE_MAX_FDS) {
        int fd = wire_reader_take_fd(&c->rd);
        if (fd < 0)
            break;
        fds[(*nfds)++] = fd;
    }
    *out = resp;
    return 0;
}

static void close_fds(const int *fds, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        close(fds[i]);
}

/* With c->lock: fails every unanswered request with err; later calls fail
 * with -ECONNRESET. The first reason is the one kept. */
static void break_connection(mcefa_client *c, int err, const char *text)
{
    if (!c->broken) {
        c->broken = true;
        snprintf(c->broken_text, sizeof(c->broken_text), "%s", text);
        /* Wakes a reader blocked in poll, fails senders blocked for room,
         * and lets the daemon release the session at once. */
        shutdown(c->sock, SHUT_RDWR);
    }
    for (client_pending *p = c->pending; p; p = p->next)
        if (!p->done) {
            p->done = true;
            p->err = err;
            pthread_cond_signal(&p->cond);
        }
}

/* With c->lock: hands a reply to its waiter. */
static void deliver(mcefa_client *c, Mcefa__Response *resp, const int *fds, unsigned nfds)
{
    if (resp->seq == 0) {
        char text[600];
        snprintf(text, sizeof(text),
                 "mcefad reported a protocol error it could not tie to a request: %s; this connection is closed, "
                 "reconnect",
                 resp->error && *resp->error ? resp->error : mcefa_strerror(resp->status));
        break_connection(c, resp->status < 0 ? resp->status : -EPROTO, text);
        mcefa__response__free_unpacked(resp, NULL);
        close_fds(fds, nfds);
        return;
    }
    for (client_pending *p = c->pending; p; p = p->next)
        if (p->seq == resp->seq && !p->done) {
            p->resp = resp;
            memcpy(p->fds, fds, nfds * sizeof(int));
            p->nfds = nfds;
            p->done = true;
            pthread_cond_signal(&p->cond);
            return;
        }
    /* Nobody asked (every caller waits for its reply, so this is a daemon
     * bug): drop it. */
    mcefa__response__free_unpacked(resp, NULL);
    close_fds(fds, nfds);
}

/* With c->lock, while nobody reads: asks one blocked waiter to. */
static void wake_next_reader(mcefa_client *c)
{
    for (client_pending *p = c->pending; p; p = p->next)
        if (p->waiting && !p->done) {
            pthread_cond_signal(&p->cond);
            return;
        }
}

static void unlink_pending(mcefa_client *c, client_pending *p)
{
    client_pending **pp = &c->pending;
    while (*pp != p)
        pp = &(*pp)->next;
    *pp = p->next;
}

int client_call_fds(mcefa_client *c, Mcefa__Request *req, const int *fds, unsigned nfds, Mcefa__Response **out,
                    int *rfds, unsigned want)
{
    for (unsigned i = 0; i < want; i++)
        rfds[i] = -1;
    client_pending p = {.err = 0};
    pthread_mutex_lock(&c->lock);
    if (c->broken) {
        char text[sizeof(c->broken_text)];
        snprintf(text, sizeof(text), "%s", c->broken_text);
        pthread_mutex_unlock(&c->lock);
        return client_error(-ECONNRESET, "%s", text);
    }
    /* Registered before the frame goes out: its reply may come before the
     * sender gets c->lock again. */
    p.seq = req->seq = ++c->seq;
    pthread_cond_init(&p.cond, NULL);
    p.next = c->pending;
    c->pending = &p;
    pthread_mutex_unlock(&c->lock);

    uint8_t *buf;
    size_t len;
    int rc = wire_pack(&req->base, &buf, &len);
    if (rc < 0) {
        pthread_mutex_lock(&c->lock);
        unlink_pending(c, &p);
        pthread_mutex_unlock(&c->lock);
        pthread_cond_destroy(&p.cond);
        return client_error(rc, "cannot encode the request: %s", strerror(-rc));
    }
    pthread_mutex_lock(&c->send_lock);
    rc = wire_send_all(c->sock, buf, len, fds, nfds);
    pthread_mutex_unlock(&c->send_lock);
    free(buf);

    pthread_mutex_lock(&c->lock);
    if (rc < 0) {
        /* Part of the frame may be out: the stream is lost either way. */
        char text[300];
        if (rc == -EPIPE || rc == -ECONNRESET)
            snprintf(text, sizeof(text), CONN_CLOSED_TEXT);
        else
            snprintf(text, sizeof(text), "sending to mcefad failed: %s", mcefa_strerror(rc));
        break_connection(c, rc == -EPIPE ? -ECONNRESET : rc, text);
    }
    p.waiting = true;
    while (!p.done) {
        if (c->reading) {
            pthread_cond_wait(&p.cond, &c->lock);
            continue;
        }
        c->reading = true;
        pthread_mutex_unlock(&c->lock);
        Mcefa__Response *resp = NULL;
        int rfds[WIRE_MAX_FDS];
        unsigned rn = 0;
        char why[300];
        rc = read_response(c, &resp, rfds, &rn, why, sizeof(why));
        pthread_mutex_lock(&c->lock);
        c->reading = false;
        if (rc < 0)
            break_connection(c, rc, why);
        else
            deliver(c, resp, rfds, rn);
    }
    unlink_pending(c, &p);
    wake_next_reader(c);
    char text[sizeof(c->broken_text)] = "";
    if (p.err)
        snprintf(text, sizeof(text), "%s", c->broken_text);
    pthread_mutex_unlock(&c->lock);
    pthread_cond_destroy(&p.cond);

    if (p.err)
        return client_error(p.err, "%s", text);
    Mcefa__Response *resp = p.resp;
    unsigned first = p.nfds < want ? p.nfds : want;
    memcpy(rfds, p.fds, first * sizeof(int));
    close_fds(p.fds + first, p.nfds - first);
    if (resp->status < 0) {
        rc = client_error(resp->status, "%s", resp->error && *resp->error ? resp->error : mcefa_strerror(resp->status));
        mcefa__response__free_unpacked(resp, NULL);
        close_fds(rfds, first);
        for (unsigned i = 0; i < want; i++)
            rfds[i] = -1;
        return rc;
    }
    client_error(0, "%s", "");
    *out = resp;
    return 0;
}

int client_call_fd(mcefa_client *c, Mcefa__Request *req, const int *fds, unsigned nfds, Mcefa__Response **out,
                   int *rfd)
{
    int dummy;
    return client_call_fds(c, req, fds, nfds, out, rfd ? rfd : &dummy, rfd ? 1 : 0);
}

bool client_daemon_gone(mcefa_client *c)
{
    struct pollfd p = {.fd = c->sock, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

int client_call(mcefa_client *c, Mcefa__Request *req, const int *fds, unsigned nfds, Mcefa__Response **out)
{
    return client_call_fd(c, req, fds, nfds, out, NULL);
}

int client_call_simple(mcefa_client *c, Mcefa__Request *req)
{
    Mcefa__Response *resp;
    int rc = client_call(c, req, NULL, 0, &resp);
    if (rc == 0)
        mcefa__response__free_unpacked(resp, NULL);
    return rc;
}

static int hello(mcefa_client *c, const char *name)
{
    Mcefa__Hello h = MCEFA__HELLO__INIT;
    h.protocol_version = MCEFA_PROTOCOL_VERSION;
    h.pid = (uint32_t)getpid();
    h.client_name = (char *)(name ? name : "");
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.body_case = MCEFA__REQUEST__BODY_HELLO;
    req.hello = &h;
    Mcefa__Response *resp;
    int fd;
    int rc = client_call_fd(c, &req, NULL, 0, &resp, &fd);
    if (rc < 0)
        return rc;
    if (resp->body_case != MCEFA__RESPONSE__BODY_WELCOME) {
        mcefa__response__free_unpacked(resp, NULL);
        if (fd >= 0)
            close(fd);
        return client_error(-EPROTO, "mcefad answered hello without a welcome");
    }
    Mcefa__Welcome *w = resp->welcome;
    if (fd < 0) {
        mcefa__response__free_unpacked(resp, NULL);
        return client_error(-EPROTO, "mcefad's welcome came without the completion area descriptor");
    }
    c->session_id = w->session_id;
    c->features = w->features;
    c->cq_slots = w->completion_slots;
    c->cq_len = shm_cq_size(w->completion_slots);
    snprintf(c->hostname, sizeof(c->hostname), "%s", w->hostname);
    snprintf(c->version, sizeof(c->version), "%s", w->daemon_version);
    mcefa__response__free_unpacked(resp, NULL);
    c->cq = mmap(NULL, c->cq_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (c->cq == MAP_FAILED) {
        c->cq = NULL;
        return client_error(-e, "cannot map mcefad's completion area: %s", strerror(e));
    }
    const shm_cq_header *h2 = c->cq;
    if (h2->magic != SHM_CQ_MAGIC || h2->version != SHM_CQ_VERSION || h2->nslots != c->cq_slots)
        return client_error(-EPROTO, "mcefad's completion area has an unexpected layout (version mismatch?)");
    return 0;
}

int mcefa_connect(const char *socket_path, const char *name, mcefa_client **out)
{
    if (!out)
        return client_error(-EINVAL, "mcefa_connect: out is NULL");
    if (!socket_path || !*socket_path)
        socket_path = getenv(MCEFA_SOCKET_ENV);
    if (!socket_path || !*socket_path)
        socket_path = MCEFA_DEFAULT_SOCKET;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(socket_path) >= sizeof(sa.sun_path))
        return client_error(-ENAMETOOLONG, "socket path '%s' is too long", socket_path);
    strcpy(sa.sun_path, socket_path);

    mcefa_client *c = calloc(1, sizeof(*c));
    if (!c)
        return client_error(-ENOMEM, "out of memory");
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->send_lock, NULL);
    pthread_mutex_init(&c->alloc_lock, NULL);
    wire_reader_init(&c->rd, WIRE_MAX_FRAME_DEFAULT);
    c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->sock < 0) {
        int e = -errno;
        mcefa_disconnect(c);
        return client_error(e, "cannot create a Unix socket: %s", strerror(-e));
    }
    if (connect(c->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = -errno;
        mcefa_disconnect(c);
        if (e == -ENOENT || e == -ECONNREFUSED)
            return client_error(-ECONNREFUSED,
                                "no mcefad listens on %s: start the daemon (systemctl start mcefad) or set %s",
                                socket_path, MCEFA_SOCKET_ENV);
        if (e == -EACCES)
            return client_error(e, "permission denied on %s: join the daemon's group (mcefa)", socket_path);
        return client_error(e, "cannot connect to %s: %s", socket_path, strerror(-e));
    }
    int rc = hello(c, name);
    if (rc == 0)
        rc = client_ring_open(c);
    if (rc < 0) {
        mcefa_disconnect(c);
        return rc;
    }
    *out = c;
    return 0;
}

void mcefa_disconnect(mcefa_client *c)
{
    if (!c)
        return;
    /* Before anything goes: a host function may be using the client. */
    client_streams_detach(c);
    if (c->sock >= 0)
        close(c->sock);
    if (c->cq)
        munmap(c->cq, c->cq_len);
    client_ring_close(c);
    wire_reader_free(&c->rd);
    pthread_mutex_lock(&c->alloc_lock);
    for (alloc_rec *a = c->allocs, *n; a; a = n) {
        n = a->next;
        /* Buffers stay mapped: the caller may still use them; only our
         * bookkeeping and descriptor go. */
        close(a->fd);
        free(a);
    }
    pthread_mutex_unlock(&c->alloc_lock);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->send_lock);
    pthread_mutex_destroy(&c->alloc_lock);
    free(c);
}

const char *mcefa_daemon_hostname(const mcefa_client *c)
{
    return c->hostname;
}

const char *mcefa_daemon_version(const mcefa_client *c)
{
    return c->version;
}

int mcefa_segment_export(mcefa_client *c, const char *name, char *name_out, size_t name_out_len)
{
    Mcefa__ExportSegment m = MCEFA__EXPORT_SEGMENT__INIT;
    m.name = (char *)(name ? name : "");
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.body_case = MCEFA__REQUEST__BODY_EXPORT_SEGMENT;
    req.export_segment = &m;
    Mcefa__Response *resp;
    int rc = client_call(c, &req, NULL, 0, &resp);
    if (rc < 0)
        return rc;
    if (name_out && name_out_len)
        snprintf(name_out, name_out_len, "%s",
                 resp->body_case == MCEFA__RESPONSE__BODY_SEGMENT_EXPORTED ? resp->segment_exported->name : "");
    mcefa__response__free_unpacked(resp, NULL);
    return 0;
}

int mcefa_segment_open(mcefa_client *c, const char *name, mcefa_segment *out)
{
    if (!name || !out)
        return client_error(-EINVAL, "mcefa_segment_open: name and out must not be NULL");
    Mcefa__OpenSegment m = MCEFA__OPEN_SEGMENT__INIT;
    m.name = (char *)name;
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.body_case = MCEFA__REQUEST__BODY_OPEN_SEGMENT;
    req.open_segment = &m;
    Mcefa__Response *resp;
    int rc = client_call(c, &req, NULL, 0, &resp);
    if (rc < 0)
        return rc;
    *out = resp->segment_info->handle;
    mcefa__response__free_unpacked(resp, NULL);
    return 0;
}

/* Larger than any version of a library struct will be: a struct_size past
 * it was never set. */
#define STRUCT_SIZE_MAX 65536

int client_check_struct_size(size_t struct_size, size_t min, const char *type, const char *init)
{
    if (struct_size < min || struct_size > STRUCT_SIZE_MAX)
        return client_error(-EINVAL, "%s.struct_size is %zu, not a size of %s: initialise the struct with %s", type,
                            struct_size, type, init);
    return 0;
}

int mcefa_segment_regions(mcefa_client *c, mcefa_segment seg, mcefa_region_info *regions, size_t max)
{
    if (max && !regions)
        return client_error(-EINVAL, "mcefa_segment_regions: regions is NULL but max is %zu", max);
    /* The first element's struct_size is the stride of the whole array. */
    size_t stride = max ? regions[0].struct_size : 0;
    int rc;
    if (max && (rc = CLIENT_CHECK_SIZE(stride, mcefa_region_info, numa_node, "MCEFA_REGION_INFO_INIT")) < 0)
        return rc;
    Mcefa__QuerySegment m = MCEFA__QUERY_SEGMENT__INIT;
    m.handle = seg;
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.body_case = MCEFA__REQUEST__BODY_QUERY_SEGMENT;
    req.query_segment = &m;
    Mcefa__Response *resp;
    rc = client_call(c, &req, NULL, 0, &resp);
    if (rc < 0)
        return rc;
    Mcefa__SegmentInfo *si = resp->segment_info;
    for (size_t i = 0; i < si->n_regions && i < max; i++) {
        mcefa_region_info r = {
            .struct_size = stride,
            .addr = si->regions[i]->addr,
            .length = si->regions[i]->length,
            .numa_node = si->regions[i]->numa_node,
        };
        /* Fields past the caller's size stay out; those it has that this
         * library does not know read 0. */
        char *e = (char *)regions + i * stride;
        memset(e, 0, stride);
        memcpy(e, &r, stride < sizeof(r) ? stride : sizeof(r));
    }
    rc = (int)si->n_regions;
    mcefa__response__free_unpacked(resp, NULL);
    return rc;
}

int mcefa_segment_close(mcefa_client *c, mcefa_segment seg)
{
    Mcefa__CloseSegment m = MCEFA__CLOSE_SEGMENT__INIT;
    m.handle = seg;
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.body_case = MCEFA__REQUEST__BODY_CLOSE_SEGMENT;
    req.close_segment = &m;
    return client_call_simple(c, &req);
}

int mcefa_segment_warmup(mcefa_client *c, const char *name, unsigned *pairs)
{
    if (!name)
        return client_error(-EINVAL, "mcefa_segment_warmup: name must not be NULL");
    Mcefa__WarmupSegment m = MCEFA__WARMUP_SEGMENT__INIT;
    m.name = (char *)name;
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.body_case = MCEFA__REQUEST__BODY_WARMUP;
    req.warmup = &m;
    Mcefa__Response *resp;
    int rc = client_call(c, &req, NULL, 0, &resp);
    if (rc < 0)
        return rc;
    if (pairs)
        *pairs = resp->body_case == MCEFA__RESPONSE__BODY_WARMUP ? resp->warmup->nic_pairs : 0;
    mcefa__response__free_unpacked(resp, NULL);
    return 0;
}

int client_status_call(mcefa_client *c, Mcefa__Response **resp)
{
    Mcefa__StatusQuery m = MCEFA__STATUS_QUERY__INIT;
    Mcefa__Request req = MCEFA__REQUEST__INIT;
    req.body_case = MCEFA__REQUEST__BODY_STATUS;
    req.status = &m;
    int rc = client_call(c, &req, NULL, 0, resp);
    if (rc == 0 && (*resp)->body_case != MCEFA__RESPONSE__BODY_DAEMON_STATUS) {
        mcefa__response__free_unpacked(*resp, NULL);
        return client_error(-EPROTO, "mcefad answered a status request with something else");
    }
    return rc;
}

int mcefa_status(mcefa_client *c, mcefa_daemon_status *st)
{
    if (!st)
        return client_error(-EINVAL, "mcefa_status: st is NULL");
    size_t size = st->struct_size;
    int rc = CLIENT_CHECK_SIZE(size, mcefa_daemon_status, protocol_errors, "MCEFA_DAEMON_STATUS_INIT");
    if (rc < 0)
        return rc;
    Mcefa__Response *resp;
    if ((rc = client_status_call(c, &resp)) < 0)
        return rc;
    Mcefa__DaemonStatus *d = resp->daemon_status;
    mcefa_daemon_status r = {.struct_size = size};
    snprintf(r.version, sizeof(r.version), "%s", d->daemon_version);
    snprintf(r.hostname, sizeof(r.hostname), "%s", d->hostname);
    r.epoch = d->epoch;
    r.uptime_ms = d->uptime_ms;
    r.clients = (uint32_t)d->n_clients;
    r.bytes_copied = d->bytes_copied;
    r.transfers_completed = d->transfers_completed;
    r.transfers_failed = d->transfers_failed;
    r.protocol_errors = d->protocol_errors;
    r.staging_slots = d->staging_slots;
    r.staging_in_use = d->staging_in_use;
    r.staging_waiting = d->staging_waiting;
    r.staging_gpu_pinned = d->staging_gpu_pinned;
    mcefa__response__free_unpacked(resp, NULL);
    /* As in mcefa_segment_regions: nothing past the caller's size. */
    memset(st, 0, size);
    memcpy(st, &r, size < sizeof(r) ? size : sizeof(r));
    return 0;
}
