#include "wire.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void wire_reader_init(wire_reader *r, size_t max_frame)
{
    memset(r, 0, sizeof(*r));
    r->max_frame = max_frame ? max_frame : WIRE_MAX_FRAME_DEFAULT;
}

void wire_reader_free(wire_reader *r)
{
    free(r->buf);
    for (unsigned i = 0; i < r->nfds; i++)
        close(r->fds[i]);
    r->buf = NULL;
    r->len = r->cap = 0;
    r->nfds = 0;
}

static void queue_fds(wire_reader *r, struct msghdr *mh)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *p = CMSG_DATA(c);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, p + i * sizeof(int), sizeof(int));
            if (r->nfds < WIRE_MAX_FDS) {
                r->fds[r->nfds++] = fd;
            } else {
                close(fd);
                r->fds_dropped++;
            }
        }
    }
}

uint8_t *wire_reader_space(wire_reader *r, size_t *avail)
{
    /* Read in large chunks but never buffer more than one oversize frame's
     * worth: the frame check in wire_reader_next stops the stream first. */
    size_t want = 64 * 1024;
    if (r->cap - r->len < want) {
        size_t ncap = r->cap ? r->cap : want;
        while (ncap - r->len < want)
            ncap *= 2;
        uint8_t *nb = realloc(r->buf, ncap);
        if (!nb)
            return NULL;
        r->buf = nb;
        r->cap = ncap;
    }
    *avail = r->cap - r->len;
    return r->buf + r->len;
}

void wire_reader_commit(wire_reader *r, size_t n)
{
    r->len += n;
}

ssize_t wire_reader_fill(wire_reader *r, int sock)
{
    size_t avail;
    if (!wire_reader_space(r, &avail))
        return -ENOMEM;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * WIRE_MAX_FDS)];
    } cbuf;
    struct iovec iov = {.iov_base = r->buf + r->len, .iov_len = avail};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf, .msg_controllen = sizeof(cbuf.buf)};
    ssize_t n;
    do
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    queue_fds(r, &mh);
    /* MSG_CTRUNC: more descriptors than we accept in one message; the kernel
     * closed the rest. Count it so the caller can complain. */
    if (mh.msg_flags & MSG_CTRUNC)
        r->fds_dropped++;
    r->len += (size_t)n;
    return n;
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int wire_reader_next(const wire_reader *r, const uint8_t **payload, size_t *len)
{
    if (r->len < WIRE_HDR_LEN)
        return 0;
    uint32_t n = get_le32(r->buf);
    if (n > r->max_frame)
        return -EMSGSIZE;
    if (r->len - WIRE_HDR_LEN < n)
        return 0;
    *payload = r->buf + WIRE_HDR_LEN;
    *len = n;
    return 1;
}

void wire_reader_consume(wire_reader *r)
{
    if (r->len < WIRE_HDR_LEN)
        return;
    size_t n = (size_t)get_le32(r->buf) + WIRE_HDR_LEN;
    if (n > r->len)
        n = r->len;
    memmove(r->buf, r->buf + n, r->len - n);
    r->len -= n;
}

int wire_reader_take_fd(wire_reader *r)
{
    if (r->nfds == 0)
        return -EBADF;
    int fd = r->fds[0];
    memmove(r->fds, r->fds + 1, (r->nfds - 1) * sizeof(int));
    r->nfds--;
    return fd;
}

int wire_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *out_len)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n > UINT32_MAX)
        return -EMSGSIZE;
    uint8_t *b = malloc(WIRE_HDR_LEN + n);
    if (!b)
        return -ENOMEM;
    b[0] = (uint8_t)n;
    b[1] = (uint8_t)(n >> 8);
    b[2] = (uint8_t)(n >> 16);
    b[3] = (uint8_t)(n >> 24);
    protobuf_c_message_pack(msg, b + WIRE_HDR_LEN);
    *out = b;
    *out_len = WIRE_HDR_LEN + n;
    return 0;
}

ssize_t wire_send_some(int sock, const void *buf, size_t len, const int *fds, unsigned nfds)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * WIRE_MAX_FDS)];
    } cbuf;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > WIRE_MAX_FDS)
        return -EINVAL;
    if (nfds) {
        memset(&cbuf, 0, sizeof(cbuf));
        mh.msg_control = cbuf.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    ssize_t n;
    do
        n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

int wire_send_all(int sock, const void *buf, size_t len, const int *fds, unsigned nfds)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = wire_send_some(sock, p, len, fds, nfds);
        if (n == -EAGAIN) {
            struct pollfd pfd = {.fd = sock, .events = POLLOUT};
            if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
                return -errno;
            continue;
        }
        if (n < 0)
            return (int)n;
        p += n;
        len -= (size_t)n;
        nfds = 0; /* descriptors went with the first chunk */
        fds = NULL;
    }
    return 0;
}
