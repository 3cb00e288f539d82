/* Framing of the client <-> daemon socket: a 4-byte little-endian length,
 * then a protobuf-c message. File descriptors ride beside the bytes with
 * SCM_RIGHTS. Used by both the daemon (non-blocking) and the client library
 * (blocking); knows nothing about either. */
#ifndef MCEFA_WIRE_H
#define MCEFA_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mcefa.pb-c.h"
#include "mcefa_defaults.h"

/* 2: replies may come out of order (matched by seq); FreeBatch.when_done. */
#define MCEFA_PROTOCOL_VERSION 2u
/* Welcome.features bits: what a daemon offers without a new protocol
 * version, so older clients and daemons keep talking protocol 2. */
#define MCEFA_FEATURE_SUBMIT_RING 0x1u /* OpenRing: submission through shared memory */
#define WIRE_HDR_LEN 4u
/* Default largest frame either side accepts; a batch of 65536 transfers
 * packs to about 3 MiB. */
#define WIRE_MAX_FRAME_DEFAULT ((unsigned)MCEFA_DEFAULT_MAX_FRAME)
/* Most descriptors one sendmsg carries, and most a reader holds unclaimed:
 * a peer that sends more is misbehaving and its extras are closed. */
#define WIRE_MAX_FDS 16

typedef struct wire_reader {
    uint8_t *buf;
    size_t len;       /* bytes buffered */
    size_t cap;
    size_t max_frame; /* payload bytes, header excluded */
    int fds[WIRE_MAX_FDS];
    unsigned nfds;
    unsigned fds_dropped; /* descriptors closed because the queue was full */
} wire_reader;

void wire_reader_init(wire_reader *r, size_t max_frame);
/* Frees the buffer and closes every descriptor nobody claimed. */
void wire_reader_free(wire_reader *r);

/* One recvmsg: appends bytes, queues descriptors. Returns bytes read (> 0),
 * 0 at end of stream, or a negative errno (-EAGAIN when nothing is ready). */
ssize_t wire_reader_fill(wire_reader *r, int sock);

/* For readers that get bytes some other way (libuv streams): room for at
 * least 64 KiB more (NULL when out of memory), then how many arrived. */
uint8_t *wire_reader_space(wire_reader *r, size_t *avail);
void wire_reader_commit(wire_reader *r, size_t n);

/* Returns 1 with *payload and *len set when a whole frame is buffered, 0 when
 * more bytes are needed, -EMSGSIZE when the announced frame is larger than
 * max_frame (the stream cannot be resynchronised after that). */
int wire_reader_next(const wire_reader *r, const uint8_t **payload, size_t *len);

/* Drops the frame wire_reader_next returned. */
void wire_reader_consume(wire_reader *r);

/* Oldest unclaimed descriptor (ownership passes to the caller), or -EBADF. */
int wire_reader_take_fd(wire_reader *r);

/* Packs msg behind a length header into a malloc'd buffer. */
int wire_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *out_len);

/* One sendmsg of buf (fds attached to its first byte). Returns bytes sent or
 * a negative errno; never raises SIGPIPE. */
ssize_t wire_send_some(int sock, const void *buf, size_t len, const int *fds, unsigned nfds);

/* Blocking: sends all of buf, fds with the first chunk. */
int wire_send_all(int sock, const void *buf, size_t len, const int *fds, unsigned nfds);

#endif
