/* The Unix-socket server: accepts clients, reads frames (partial reads,
 * oversize frames, garbage), hands requests to the dispatcher and writes
 * the replies sessions queue. A session keeps being read while some of its
 * requests wait (up to a cap), so one slow request holds up no other. */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "dispatch.h"
#include "log.h"
#include "ring.h"
#include "session.h"
#include "stats.h"

/* A client that sends this many undecodable messages is cut off. */
#define MAX_PROTOCOL_ERRORS 8
/* Requests of one session waiting at once; past it reading pauses, so a
 * client cannot pile up unbounded work in the daemon. */
#define MAX_WAITING 64

static uv_loop_t *loop;
static int listen_fd = -1;
static uv_poll_t listen_poll;
static char *socket_path;

static void on_client_io(uv_poll_t *h, int status, int events);

static void set_events(session *s)
{
    if (s->closing)
        return;
    int ev = s->close_after_flush || s->waiting >= MAX_WAITING ? 0 : UV_READABLE;
    if (!STAILQ_EMPTY(&s->out))
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
    ring_close(s);
    session_teardown(s);
    uv_close((uv_handle_t *)&s->poll, on_closed);
}

/* Sends what the socket takes now. Returns -1 if the session was closed. */
static int flush(session *s)
{
    while (!STAILQ_EMPTY(&s->out)) {
        outbuf *o = STAILQ_FIRST(&s->out);
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
        session_sent(s, (size_t)n);
        if (o->off < o->len)
            continue;
        STAILQ_REMOVE_HEAD(&s->out, link);
        free(o->data);
        free(o);
    }
    if (STAILQ_EMPTY(&s->out) && s->close_after_flush) {
        close_session(s);
        return -1;
    }
    set_events(s);
    return 0;
}

static void process_frames(session *s);

static void on_resume(defer_item *it)
{
    session *s = (session *)((char *)it - offsetof(session, resume));
    s->resume_queued = false;
    if (!s->closing) {
        process_frames(s);
        if (!s->closing)
            flush(s);
    }
    session_unref(s);
}

/* Frames were queued on s: written when the socket takes them (at the end
 * of this read round, or on the next writable event); a session that
 * could not queue one is closed. A reply that ends a wait may let frames
 * that are already buffered go on: they run on the loop's next turn (the
 * socket may have nothing new to wake us). */
static void on_output(session *s)
{
    if (s->closing)
        return;
    if (s->broken) {
        close_session(s);
        return;
    }
    bool paused = !(s->poll_events & UV_READABLE);
    set_events(s);
    if (paused && s->waiting < MAX_WAITING && s->rd.len >= WIRE_HDR_LEN && !s->resume_queued) {
        s->resume_queued = true;
        session_ref(s);
        defer_call(&s->resume, on_resume);
    }
}

/* Handles every whole frame buffered. */
static void process_frames(session *s)
{
    const uint8_t *payload;
    size_t len;
    int rc;
    while (!s->closing && !s->close_after_flush && s->waiting < MAX_WAITING &&
           (rc = wire_reader_next(&s->rd, &payload, &len)) != 0) {
        if (rc < 0) {
            uint32_t announced = (uint32_t)s->rd.buf[0] | (uint32_t)s->rd.buf[1] << 8 |
                                 (uint32_t)s->rd.buf[2] << 16 | (uint32_t)s->rd.buf[3] << 24;
            stats_protocol_error();
            log_warn("client %s sent a frame of %u bytes, over max_frame_bytes (%llu); disconnecting it", s->name,
                     announced, (unsigned long long)config.max_frame_bytes);
            char msg[200];
            snprintf(msg, sizeof(msg),
                     "frame of %u bytes exceeds the daemon's max_frame_bytes (%llu); split the batch (or this is not "
                     "an mcefa client)",
                     announced, (unsigned long long)config.max_frame_bytes);
            dispatch_error(s, -EMSGSIZE, true, msg);
            return;
        }
        Mcefa__Request *req = mcefa__request__unpack(NULL, len, payload);
        /* The frame is decoded (or not): drop it before dispatching. */
        wire_reader_consume(&s->rd);
        if (!req) {
            stats_protocol_error();
            bool fatal = ++s->protocol_errors >= MAX_PROTOCOL_ERRORS;
            log_warn("client %s sent %zu bytes that are not an mcefa request%s", s->name, len,
                     fatal ? "; too many, disconnecting it" : "");
            char msg[200];
            snprintf(msg, sizeof(msg),
                     "malformed message: %zu bytes that do not decode as an mcefa Request (wrong protocol or "
                     "corrupted stream)",
                     len);
            dispatch_error(s, -EBADMSG, fatal, msg);
            continue;
        }
        dispatch_request(s, req);
        mcefa__request__free_unpacked(req, NULL);
    }
    set_events(s);
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
    for (int round = 0; round < 16 && !s->closing && !s->close_after_flush && s->waiting < MAX_WAITING; round++) {
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
        if (session_count() >= config.max_clients) {
            log_warn("refusing a client: %u clients connected (max_clients)", session_count());
            close(fd);
            continue;
        }
        session *s = session_new(fd);
        if (!s) {
            log_error("out of memory accepting a client");
            close(fd);
            continue;
        }
        uv_poll_init(loop, &s->poll, fd);
        s->poll.data = s;
        s->on_output = on_output;
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

int server_start(uv_loop_t *l, const char *path, unsigned mode)
{
    loop = l;
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
    /* Bound under a temporary name, given its mode, listening, and only
     * then renamed into place: whoever sees socket_path can connect (no
     * ECONNREFUSED between bind and listen), and nobody ever reaches it
     * with the umask's mode instead of socket_mode. */
    struct sockaddr_un tmp = {.sun_family = AF_UNIX};
    int n = snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%s.%d.new", path, (int)getpid());
    bool staged = n > 0 && (size_t)n < sizeof(tmp.sun_path);
    const char *bound = staged ? tmp.sun_path : path;
    unlink(bound);
    if (!staged)
        unlink(path);
    if (bind(listen_fd, (struct sockaddr *)(staged ? &tmp : &sa), sizeof(sa)) < 0) {
        rc = -errno;
        log_error("cannot listen on %s: %s", path, strerror(-rc));
        close(listen_fd);
        return rc;
    }
    if (chmod(bound, (mode_t)mode) < 0)
        log_warn("cannot set mode %llo on %s: %s", (unsigned long long)mode, path, strerror(errno));
    if (listen(listen_fd, 128) < 0 || (staged && rename(bound, path) < 0)) {
        rc = -errno;
        log_error("cannot listen on %s: %s", path, strerror(-rc));
        unlink(bound);
        close(listen_fd);
        return rc;
    }
    socket_path = strdup(path);
    uv_poll_init(loop, &listen_poll, listen_fd);
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
    while (!TAILQ_EMPTY(session_all()))
        close_session(TAILQ_FIRST(session_all()));
    if (socket_path) {
        unlink(socket_path);
        free(socket_path);
        socket_path = NULL;
    }
}
