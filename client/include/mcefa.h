/* libmcefa: the client library of the mcefad transfer daemon.
 *
 * A process connects to the daemon on its host, allocates shareable host
 * buffers (or registers ranges of them), exports a segment under a name
 * other processes can open, and submits batches of one-sided reads and
 * writes into segments it opened. Transfers complete asynchronously; their
 * status lives in shared memory and is polled without a system call.
 *
 * Every function returns 0 (or a count) on success and a negative errno on
 * failure. mcefa_strerror() turns the code into text; mcefa_last_error()
 * returns the daemon's explanation of the calling thread's last failure.
 *
 * A client handle may be used from several threads at once, each with its
 * own request outstanding (a slow request of one thread does not hold up the
 * others); a batch from one thread at a time. Do not disconnect while other
 * threads are still in calls on the client.
 *
 * Structs the library fills in (mcefa_region_info, mcefa_daemon_status)
 * begin with `size_t struct_size`, so later versions can add fields without
 * breaking programs built against this header:
 *  - the caller sets struct_size to the sizeof it was compiled with: declare
 *    the struct with its MCEFA_..._INIT initialiser (in C++ before C++20:
 *    `mcefa_daemon_status st{}; st.struct_size = sizeof st;`). For an array,
 *    the first element's struct_size gives the size of every element.
 *  - the library writes nothing past struct_size: it zeroes those bytes, puts
 *    struct_size back and fills the fields that fit. A field the library is
 *    too old to know therefore reads 0; new fields are defined so that 0
 *    means "not reported".
 *  - a struct_size smaller than the struct's first version (or absurdly
 *    large, i.e. never set) is refused with -EINVAL.
 * Fields are only ever added at the end, never moved or removed. Structs the
 * caller fills for the library (mcefa_transfer) keep their layout; an
 * extension of those comes as a new function.
 */
#ifndef MCEFA_H
#define MCEFA_H

#include <stddef.h>
#include <stdint.h>

/* MCEFA_DEFAULT_SOCKET and MCEFA_SOCKET_ENV (the environment variable naming
 * the daemon socket when the caller passes NULL), shared with mcefad. */
#include "mcefa_defaults.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mcefa_client mcefa_client;
typedef struct mcefa_batch mcefa_batch;
/* Handle of an opened segment, valid on the connection that opened it. */
typedef uint64_t mcefa_segment;

/* ---- Connection ------------------------------------------------------- */

/* Connects to mcefad. socket_path NULL: $MCEFAD_SOCKET, else
 * MCEFA_DEFAULT_SOCKET. name labels the client in logs and status. */
int mcefa_connect(const char *socket_path, const char *name, mcefa_client **out);

/* Closes the connection; the daemon releases its registrations, segment and
 * batches. Buffers from mcefa_alloc stay mapped until mcefa_free. */
void mcefa_disconnect(mcefa_client *c);

/* Host name the daemon uses in segment names, and its version. */
const char *mcefa_daemon_hostname(const mcefa_client *c);
const char *mcefa_daemon_version(const mcefa_client *c);

/* ---- Memory ----------------------------------------------------------- */

#define MCEFA_ALLOC_HUGE 0x1u /* back with huge pages (needs hugetlbfs pages) */

/* Allocates size bytes of host memory the daemon can share: a sealed memfd
 * mapped into this process. numa_node >= 0 binds the pages to that node
 * (-1: no binding). The memory is not yet registered. */
int mcefa_alloc(mcefa_client *c, size_t size, int numa_node, unsigned flags, void **out);

/* Frees memory from mcefa_alloc. Unregister ranges of it first: the daemon
 * keeps its own mapping of registered memory until they are unregistered. */
int mcefa_free(mcefa_client *c, void *ptr);

/* Registers [addr, addr+len): memory inside one mcefa_alloc buffer (the
 * daemon maps it: zero-copy), GPU memory (a cudaMalloc allocation, shared
 * by CUDA IPC, or VMM memory made with a POSIX-fd handle type; see
 * docs/gpu.md), or any other memory of this process (malloc, mmap, numpy,
 * torch CPU tensors), which the daemon copies by cross-memory attach: an
 * extra copy on every transfer, and it needs the daemon to run as this
 * process's user or with CAP_SYS_PTRACE (docs/python.md, "Memory"). Regions
 * may not overlap. Plain memory must stay allocated until unregistered. */
int mcefa_register(mcefa_client *c, void *addr, size_t len);

/* Registers [addr, addr+len), a mapping of memfd fd at offset that the
 * caller made itself. The memfd must be sealed with F_SEAL_SHRINK. */
int mcefa_register_fd(mcefa_client *c, void *addr, size_t len, int fd, uint64_t offset, int numa_node);

/* 1 if this library can register GPU memory (built with the CUDA headers;
 * the driver itself is loaded at the first GPU registration), else 0. */
int mcefa_have_cuda(void);

/* Unregisters the region that starts at addr. */
int mcefa_unregister(mcefa_client *c, void *addr);

/* ---- Segments --------------------------------------------------------- */

/* Exports this client's registered memory as a segment. name NULL or "":
 * the daemon picks "hostname:N" (unique on the host, Mooncake style). The
 * chosen name is copied to name_out (if not NULL). */
int mcefa_segment_export(mcefa_client *c, const char *name, char *name_out, size_t name_out_len);

typedef struct mcefa_region_info {
    size_t struct_size; /* set by the caller: see the top of this file */
    uint64_t addr;
    uint64_t length;
    int numa_node;
    /* Later fields go here. */
} mcefa_region_info;

#define MCEFA_REGION_INFO_INIT {.struct_size = sizeof(mcefa_region_info)}

/* Opens a segment by name. Opening the same segment again returns the same
 * handle (close it as many times). */
int mcefa_segment_open(mcefa_client *c, const char *name, mcefa_segment *out);

/* Copies up to max regions of the segment (as registered now) into regions;
 * returns how many it has in all (may exceed max). regions[0].struct_size
 * must be set (MCEFA_REGION_INFO_INIT) when max > 0. */
int mcefa_segment_regions(mcefa_client *c, mcefa_segment seg, mcefa_region_info *regions, size_t max);

int mcefa_segment_close(mcefa_client *c, mcefa_segment seg);

/* Connects every local/remote NIC pair towards the host of segment `name`
 * up front (with whatever first exchange the provider needs), so the first
 * transfer pays nothing. Idempotent; fails cleanly for an unknown segment.
 * *pairs (if not NULL) gets the number of NIC pairs now connected; 0 for a
 * segment on this host. */
int mcefa_segment_warmup(mcefa_client *c, const char *name, unsigned *pairs);

/* ---- Transfers -------------------------------------------------------- */

enum mcefa_opcode {
    MCEFA_READ = 0,  /* segment -> local memory */
    MCEFA_WRITE = 1, /* local memory -> segment */
};

typedef struct mcefa_transfer {
    int opcode;           /* enum mcefa_opcode */
    void *local;          /* inside a registered region of this client */
    mcefa_segment segment;
    uint64_t remote;      /* address inside the segment's registered regions */
    uint64_t length;
} mcefa_transfer;

enum mcefa_transfer_state {
    MCEFA_IDLE = 0,         /* not submitted */
    MCEFA_PENDING = 1,
    MCEFA_COMPLETED = 2,
    MCEFA_FAILED = 3,
};

/* A batch holds up to capacity transfers, submitted in one or more calls. */
int mcefa_batch_alloc(mcefa_client *c, uint32_t capacity, mcefa_batch **out);

/* Frees a batch; -EBUSY while transfers of it are in flight (the batch
 * stays allocated then). */
int mcefa_batch_free(mcefa_batch *b);

/* Frees a batch whose transfers may still be in flight, for a caller that
 * gave up waiting: the handle is gone whatever the result, and the daemon
 * returns the batch's completion slots once its last transfer finished.
 * Until then the transfers still read and write their buffers, so keep
 * those mapped and registered (or disconnect). Returns 0, or -EBUSY from a
 * daemon that does not honour FreeBatch.when_done yet (it keeps the slots
 * until the connection closes), or another error of the daemon's; the
 * handle is freed in every case. */
int mcefa_batch_free_when_done(mcefa_batch *b);

/* Submits n transfers (asynchronous). Every address is checked before any
 * byte moves: on error nothing of this call was started. Returns the batch
 * index of the first transfer. Where the daemon offers a submission ring
 * (docs/protocol.md) this, mcefa_batch_alloc and mcefa_batch_free go
 * through shared memory, without a system call while the daemon is awake;
 * a full ring makes the call wait for room. MCEFA_SUBMIT_RING=0 in the
 * environment (read at connect) keeps them on the socket. */
int mcefa_batch_submit(mcefa_batch *b, const mcefa_transfer *t, size_t n);

/* State of transfer idx (from shared memory, no system call); *err gets its
 * error (0 or a negative errno) when it failed. */
int mcefa_batch_state(const mcefa_batch *b, uint32_t idx, int *err);

/* Transfers submitted and finished so far (finished = completed or failed). */
void mcefa_batch_progress(const mcefa_batch *b, uint32_t *submitted, uint32_t *finished, uint32_t *failed);

/* Waits until every submitted transfer finished, up to timeout_ms (-1: no
 * limit). Returns 0 if all completed, the error of the first failed one,
 * -ETIMEDOUT, or -ECONNRESET if the daemon went away. */
int mcefa_batch_wait(mcefa_batch *b, int timeout_ms);

/* Fetches the daemon's explanation of transfer idx's failure into buf. */
int mcefa_batch_error_text(mcefa_batch *b, uint32_t idx, char *buf, size_t len);

/* Synchronous: submits n transfers in one batch and waits for them. On
 * -ETIMEDOUT the batch is released with mcefa_batch_free_when_done: its
 * transfers may still be moving data, so keep their buffers mapped and
 * registered (or disconnect). */
int mcefa_transfer_sync(mcefa_client *c, const mcefa_transfer *t, size_t n, int timeout_ms);

/* ---- Notifications ---------------------------------------------------- */

/* A notification (Mooncake's TransferNotify) is a name and a message, any
 * bytes, at most MCEFA_NOTIFY_NAME_MAX (256) and MCEFA_NOTIFY_MSG_MAX
 * (65536) bytes, for the client that exports a segment. The daemon of the
 * segment's host keeps a client's notifications in arrival order until it
 * takes them with mcefa_get_notifies; notifications from one thread arrive
 * in the order it sent them. */

/* Queues a notification for the owner of segment seg (this host or
 * another). Returns 0 once it is queued there, or -EMSGSIZE (too long),
 * -EBADF (seg not open), -ENOTCONN / -ENOENT (nobody exports the segment
 * any more), -ESTALE (its host's daemon restarted: open it again),
 * -ENOBUFS (the owner does not take its notifications: its queue is at the
 * daemon's notify_queue_bytes); the text says which. */
int mcefa_notify(mcefa_client *c, mcefa_segment seg, const void *name, size_t name_len, const void *msg,
                 size_t msg_len);

/* mcefa_transfer_sync of n >= 1 transfers that all go to one segment,
 * then, only if every one completed, mcefa_notify to that segment's owner:
 * by the time the owner can take the notification the data is there
 * (writes complete only once delivered). Returns 0, the transfers' error
 * (nothing is sent then), or the notification's error (the data moved;
 * the text says so). */
int mcefa_transfer_sync_notify(mcefa_client *c, const mcefa_transfer *t, size_t n, int timeout_ms, const void *name,
                               size_t name_len, const void *msg, size_t msg_len);

typedef struct mcefa_notification {
    size_t struct_size; /* set by the caller: see the top of this file */
    char *name;         /* name_len bytes and a NUL, owned by the library */
    size_t name_len;
    char *msg;          /* msg_len bytes and a NUL, in the same allocation */
    size_t msg_len;
    /* Later fields go here. */
} mcefa_notification;

#define MCEFA_NOTIFICATION_INIT {.struct_size = sizeof(mcefa_notification)}

/* Takes up to max of this client's notifications, oldest first, into v
 * (v[0].struct_size gives the size of every element, as for
 * mcefa_segment_regions); they leave the daemon's queue. Returns how many
 * (0: none queued). Release their memory with mcefa_notifications_free. */
int mcefa_get_notifies(mcefa_client *c, mcefa_notification *v, size_t max);

/* Frees the memory of n notifications from mcefa_get_notifies. */
void mcefa_notifications_free(mcefa_notification *v, size_t n);
/* ---- Transfers ordered on a CUDA stream --------------------------------- */

/* Queues the n transfers (copied; n may be 0) on CUDA stream `stream` (a
 * CUstream / cudaStream_t as an integer; 0: the legacy default stream of
 * the context current in the calling thread): they are submitted once all
 * work queued on the stream before has finished, and work queued on it
 * afterwards starts only once they have finished (or failed, or taken
 * timeout_ms; -1: no limit). The stream waits meanwhile: a host function
 * of the driver's (cuLaunchHostFunc) submits them and waits. Returns 0 once
 * queued, or a negative errno when nothing was queued (built without
 * CUDA: -ENOTSUP; no driver; the driver refused the stream). How they
 * ended comes later, from mcefa_stream_check. The buffers must stay
 * registered until the stream got past them. mcefa_disconnect waits for
 * such transfers in progress (failing them at once) and those the stream
 * has not reached then fail with -ECONNRESET without moving anything. */
int mcefa_transfer_on_stream(mcefa_client *c, const mcefa_transfer *t, size_t n, uint64_t stream, int timeout_ms);

/* Counts of the client's mcefa_transfer_on_stream calls so far: *queued,
 * *finished (the stream got past them), *failed (any pointer may be NULL).
 * Returns 0 if no failure is left unreported, else the error of the
 * earliest unreported one (the text, via mcefa_last_error, names the call
 * and the daemon's reason); each failure is reported once. */
int mcefa_stream_check(mcefa_client *c, uint64_t *queued, uint64_t *finished, uint64_t *failed);

/* ---- Status ----------------------------------------------------------- */

typedef struct mcefa_daemon_status {
    size_t struct_size; /* set by the caller: see the top of this file */
    char version[32];
    char hostname[256];
    uint64_t epoch;
    uint64_t uptime_ms;
    uint32_t clients;
    uint64_t bytes_copied;
    uint64_t transfers_completed;
    uint64_t transfers_failed;
    uint64_t protocol_errors;
    /* Staging buffers (plain host memory to and from other hosts): slots,
     * slots in use, pieces waiting for one. */
    uint32_t staging_slots;
    uint32_t staging_in_use;
    uint32_t staging_waiting;
    /* 1: the CUDA driver holds the slots page-locked (GPU copies to and
     * from other hosts skip a host copy); 0: not (yet: the driver loads
     * with the first GPU registration). */
    uint32_t staging_gpu_pinned;
    /* Later fields go here. */
} mcefa_daemon_status;

#define MCEFA_DAEMON_STATUS_INIT {.struct_size = sizeof(mcefa_daemon_status)}

/* Fills *st, whose struct_size must be set (MCEFA_DAEMON_STATUS_INIT). */
int mcefa_status(mcefa_client *c, mcefa_daemon_status *st);

/* ---- Topology --------------------------------------------------------- */

/* Mooncake's get_local_topology as JSON into buf (NUL-terminated, cut at
 * len): {"cpu:N": [[preferred NICs], [other NICs]], ..., "cuda:K": [...]}.
 * cpu:N for each NUMA node of the host: the NICs on node N preferred.
 * cuda:K for each GPU this process sees, K its CUDA ordinal here (as this
 * process's CUDA_VISIBLE_DEVICES numbers them; none without a CUDA driver
 * or when built without CUDA): among the NICs on the GPU's NUMA node (all
 * NICs when none is there) those nearest on PCI preferred. NIC names are
 * the daemon's (mcefactl nics); device_filter (comma-separated NIC names,
 * NULL or "": all) keeps only those, and preference is among them.
 * Returns the JSON's length without the NUL (>= len: call again with a
 * larger buf), or a negative errno. */
int mcefa_local_topology(mcefa_client *c, const char *device_filter, char *buf, size_t len);

/* ---- Errors ----------------------------------------------------------- */

/* Text for a negative errno returned by this library. */
const char *mcefa_strerror(int err);

/* The daemon's (or library's) explanation of the calling thread's last
 * failure; "" if there was none. */
const char *mcefa_last_error(void);

#ifdef __cplusplus
}
#endif

#endif
