/* The Unix-socket server: accepts clients, reads frames (partial reads,
 * oversize frames, garbage), dispatches them to rpc.c and queues replies. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"

/* A client that sends this many undecodable messages is cut off. */
#define MAX_PROTOCOL_ERRORS 8

static int listen_fd = -1;
static uv_poll_t listen_poll;
static char *socket_path;

static void on_client_io(uv_poll_t *h, int status, int events);

static void set_events(session *s)
{
    if (s->closing)
        return;
    /* No reading while a request waits on the network: its successors
     * wait in the socket, not in our memory. */
    int ev = s->close_after_flush || s->busy ? 0 : UV_READABLE;
    if (s->out_head)
        ev |= UV_WRITABLE;
    if (ev == s->poll_events)
        return;
    s->poll_events = ev;
    if (ev)
        uv_poll_start(&s->poll, ev, on_client_io);
    else
        uv_poll_stop(&s->poll);
}

static void on_closed(uv_handle_t *h)
{
    session *s = h->data;
    close(s->fd);
    s->fd = -1;
    session_unref(s);
}

static void close_session(session *s)
{
    if (s->closing)
        return;
    s->closing = true;
    uv_poll_stop(&s->poll);
    session_teardown(s);
    uv_close((uv_handle_t *)&s->poll, on_closed);
}

/* Sends what the socket takes now. Returns -1 if the session was closed. */
static int flush(session *s)
{
    while (s->out_head) {
        outbuf *o = s->out_head;
        ssize_t n = wire_send_some(s->fd, o->data + o->off, o->len - o->off, o->fds, o->nfds);
        if (n == -EAGAIN)
            break;
        if (n < 0) {
            log_info("client %s: send failed: %s", s->name, strerror((int)-n));
            close_session(s);
            return -1;
        }
        for (unsigned i = 0; i < o->nfds; i++)
            close(o->fds[i]);
        o->nfds = 0;
        o->off += (size_t)n;
        s->out_bytes -= (size_t)n;
        if (o->off < o->len)
            continue;
        s->out_head = o->next;
        if (!s->out_head)
            s->out_tail = NULL;
        free(o->data);
        free(o);
    }
    if (!s->out_head && s->close_after_flush) {
        close_session(s);
        return -1;
    }
    set_events(s);
    return 0;
}

static void queue_reply(session *s, Mcefa__Response *resp, rpc_ctx *ctx)
{
    outbuf *o = calloc(1, sizeof(*o));
    if (!o || wire_pack(&resp->base, &o->data, &o->len) < 0) {
        free(o);
        log_error("client %s: out of memory packing a reply; disconnecting it", s->name);
        close_session(s);
        return;
    }
    /* The descriptors now belong to the queued message. */
    memcpy(o->fds, ctx->fds, sizeof(int) * ctx->nfds);
    o->nfds = ctx->nfds;
    ctx->nfds = 0;
    if (s->out_tail)
        s->out_tail->next = o;
    else
        s->out_head = o;
    s->out_tail = o;
    s->out_bytes += o->len;
    if (ctx->close_after_reply)
        s->close_after_flush = true;
    if (s->out_bytes > mcefad.cfg.max_outbound_bytes) {
        log_warn("client %s does not read its replies (%zu bytes queued); disconnecting it", s->name,
                 s->out_bytes);
        close_session(s);
    }
}

static void reply_error(session *s, int status, bool fatal, const char *msg)
{
    Mcefa__Response resp = MCEFA__RESPONSE__INIT;
    rpc_ctx ctx = {0};
    rpc_fail(&ctx, &resp, status, "%s", msg);
    ctx.close_after_reply = fatal;
    queue_reply(s, &resp, &ctx);
    rpc_ctx_free(&ctx);
}

/* Handles every whole frame buffered. */
static void process_frames(session *s)
{
    const uint8_t *payload;
    size_t len;
    int rc;
    while (!s->closing && !s->close_after_flush && !s->busy &&
           (rc = wire_reader_next(&s->rd, &payload, &len)) != 0) {
        if (rc < 0) {
            uint32_t announced = (uint32_t)s->rd.buf[0] | (uint32_t)s->rd.buf[1] << 8 |
                                 (uint32_t)s->rd.buf[2] << 16 | (uint32_t)s->rd.buf[3] << 24;
            atomic_fetch_add(&mcefad.protocol_errors, 1);
            log_warn("client %s sent a frame of %u bytes, over max_frame_bytes (%llu); disconnecting it", s->name,
                     announced, (unsigned long long)mcefad.cfg.max_frame_bytes);
            char msg[200];
            snprintf(msg, sizeof(msg),
                     "frame of %u bytes exceeds the daemon's max_frame_bytes (%llu); split the batch (or this is not "
                     "an mcefa client)",
                     announced, (unsigned long long)mcefad.cfg.max_frame_bytes);
            reply_error(s, -EMSGSIZE, true, msg);
            return;
        }
        Mcefa__Request *req = mcefa__request__unpack(NULL, len, payload);
        if (!req) {
            atomic_fetch_add(&mcefad.protocol_errors, 1);
            bool fatal = ++s->protocol_errors >= MAX_PROTOCOL_ERRORS;
            log_warn("client %s sent %zu bytes that are not an mcefa request%s", s->name, len,
                     fatal ? "; too many, disconnecting it" : "");
            char msg[200];
            snprintf(msg, sizeof(msg),
                     "malformed message: %zu bytes that do not decode as an mcefa Request (wrong protocol or "
                     "corrupted stream)",
                     len);
            reply_error(s, -EBADMSG, fatal, msg);
            wire_reader_consume(&s->rd);
            continue;
        }
        /* The frame is decoded: drop it before dispatching, so nothing a
         * handler triggers can see it again. */
        wire_reader_consume(&s->rd);
        Mcefa__Response resp = MCEFA__RESPONSE__INIT;
        rpc_ctx ctx = {0};
        resp.seq = req->seq;
        s->dispatching = true;
        s->answered_inline = false;
        rpc_handle(s, req, &resp, &ctx);
        s->dispatching = false;
        if (resp.status < 0)
            log_debug("client %s: request failed: %s", s->name, resp.error);
        if (!ctx.deferred)
            queue_reply(s, &resp, &ctx);
        else if (!s->answered_inline)
            s->busy = true; /* answered later by server_reply_later */
        rpc_ctx_free(&ctx);
        mcefa__request__free_unpacked(req, NULL);
    }
    set_events(s);
}

void server_reply_later(session *s, Mcefa__Response *resp, rpc_ctx *ctx)
{
    if (s->closing)
        return;
    if (resp->status < 0)
        log_debug("client %s: request failed: %s", s->name, resp->error);
    queue_reply(s, resp, ctx);
    if (s->dispatching) {
        /* The "deferred" answer came at once (a failure before any network
         * round trip): process_frames carries on by itself. */
        s->answered_inline = true;
        return;
    }
    s->busy = false;
    process_frames(s); /* requests that arrived meanwhile */
    if (!s->closing)
        flush(s);
}

static void on_client_io(uv_poll_t *h, int status, int events)
{
    session *s = h->data;
    if (status < 0) {
        log_info("client %s: socket error: %s", s->name, uv_strerror(status));
        close_session(s);
        return;
    }
    if (events & UV_WRITABLE && flush(s) < 0)
        return;
    if (!(events & UV_READABLE) || s->close_after_flush)
        return;
    /* Bounded so one busy client cannot starve the others. */
    for (int round = 0; round < 16 && !s->closing && !s->close_after_flush && !s->busy; round++) {
        ssize_t n = wire_reader_fill(&s->rd, s->fd);
        if (n == -EAGAIN)
            break;
        if (n <= 0) {
            if (n < 0)
                log_info("client %s: read failed: %s", s->name, strerror((int)-n));
            else if (s->rd.len)
                log_warn("client %s disconnected in the middle of a frame (%zu bytes buffered)", s->name,
                         s->rd.len);
            close_session(s);
            return;
        }
        if (s->rd.fds_dropped) {
            log_warn("client %s sent more file descriptors than it used; %u closed", s->name, s->rd.fds_dropped);
            s->rd.fds_dropped = 0;
        }
        process_frames(s);
    }
    if (!s->closing)
        flush(s);
}

static void on_accept(uv_poll_t *h, int status, int events)
{
    (void)h;
    (void)events;
    if (status < 0)
        return;
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                log_warn("accept on %s failed: %s", socket_path, strerror(errno));
            return;
        }
        if (mcefad.nsessions >= mcefad.cfg.max_clients) {
            log_warn("refusing a client: %u clients connected (max_clients)", mcefad.nsessions);
            close(fd);
            continue;
        }
        session *s = session_new(fd);
        if (!s) {
            log_error("out of memory accepting a client");
            close(fd);
            continue;
        }
        uv_poll_init(mcefad.loop, &s->poll, fd);
        s->poll.data = s;
        set_events(s);
    }
}

static int mkdir_parent(const char *path)
{
    char *dup = strdup(path);
    if (!dup)
        return -ENOMEM;
    char *dir = dirname(dup);
    int rc = 0;
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        rc = -errno;
    free(dup);
    return rc;
}

static void on_listen_closed(uv_handle_t *h)
{
    (void)h;
    close(listen_fd);
    listen_fd = -1;
}

int server_start(void)
{
    const char *path = mcefad.cfg.socket_path;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        log_error("socket_path '%s' is too long (at most %zu bytes)", path, sizeof(sa.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    int rc = mkdir_parent(path);
    if (rc < 0) {
        log_error("cannot create the directory of socket_path '%s': %s", path, strerror(-rc));
        return rc;
    }
    listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd < 0)
        return -errno;
    /* A socket file left by a crashed daemon is removed; a live one is not. */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        close(probe);
        log_error("another mcefad is already serving %s; stop it first or pick another socket_path", path);
        close(listen_fd);
        return -EADDRINUSE;
    }
    if (probe >= 0)
        close(probe);
    unlink(path);
    if (bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(listen_fd, 128) < 0) {
        rc = -errno;
        log_error("cannot listen on %s: %s", path, strerror(-rc));
        close(listen_fd);
        return rc;
    }
    if (chmod(path, (mode_t)mcefad.cfg.socket_mode) < 0)
        log_warn("cannot set mode %llo on %s: %s", (unsigned long long)mcefad.cfg.socket_mode, path,
                 strerror(errno));
    socket_path = strdup(path);
    uv_poll_init(mcefad.loop, &listen_poll, listen_fd);
    uv_poll_start(&listen_poll, UV_READABLE, on_accept);
    log_info("listening on %s", path);
    return 0;
}

void server_stop(void)
{
    if (listen_fd >= 0) {
        uv_poll_stop(&listen_poll);
        uv_close((uv_handle_t *)&listen_poll, on_listen_closed);
    }
    while (mcefad.sessions)
        close_session(mcefad.sessions);
    if (socket_path) {
        unlink(socket_path);
        free(socket_path);
        socket_path = NULL;
    }
}
