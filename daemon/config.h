/* Every setting of mcefad, declared once. The table drives the defaults,
 * the config file, the environment, the command-line flags, --help, the
 * checks of config_validate and the generated configuration reference
 * (docs/configuration.md). */
#ifndef MCEFAD_CONFIG_H
#define MCEFAD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mcefa_defaults.h"

#define CFG_STRINGIFY_(x) #x
#define CFG_STRINGIFY(x) CFG_STRINGIFY_(x)
/* A bound that does not limit. */
#define CFG_UNBOUNDED UINT64_MAX
/* Longest Unix socket path: sizeof(sockaddr_un.sun_path) - 1 (asserted in
 * config.c), so a longer socket_path fails the check, not the bind. */
#define CFG_SOCKET_PATH_MAX 107

/* X(kind, name, default, min, max, env, mc_env, help)
 *
 * kind     how the value is read and checked:
 *   STR       text
 *   UINT      non-negative integer (decimal, 0x hex, 0 octal)
 *   BOOL      true/false, yes/no, on/off, 1/0
 *   MODE      permission bits, read as octal, at most 0777
 *   PORT      TCP port (decimal), at most 65535
 *   HOSTPORT  IPv4 address:port
 *   IPV4      IPv4 address (dotted quad)
 *   LOGLEVEL  error, warn (or warning), info or debug
 *   NAMES     comma-separated names
 *   HOSTMAP   name=address[:port],... (address: IPv4 or a host name)
 * min, max bounds of the value for UINT and PORT; of the length in bytes for
 *          the text kinds, where min 0 also allows the empty value (which
 *          then means "none" or "off", as help says); unused by BOOL, MODE.
 * env      the primary environment variable (MCEFAD_*).
 * mc_env   Mooncake's name for the same setting (MC_*), read only when env is
 *          not set at all; "" when there is none.
 *
 * The C type of a field follows from its kind: char * for text kinds,
 * uint64_t for UINT, MODE and PORT, bool for BOOL. */
#define MCEFAD_SETTINGS(X)                                                                                      \
    X(STR, socket_path, MCEFA_DEFAULT_SOCKET, 1, CFG_SOCKET_PATH_MAX, MCEFA_SOCKET_ENV, "",                      \
      "Unix socket that clients (libmcefa, mcefactl) connect to.")                                              \
    X(MODE, socket_mode, "0660", 0, 0777, "MCEFAD_SOCKET_MODE", "",                                              \
      "Permission bits of the socket (octal); group members may connect.")                                      \
    X(LOGLEVEL, log_level, "info", 1, CFG_UNBOUNDED, "MCEFAD_LOG_LEVEL", "",                                     \
      "Least severe level logged: error, warn, info or debug.")                                                 \
    X(STR, hostname, "", 0, 255, "MCEFAD_HOSTNAME", "",                                                          \
      "Host name used in segment names chosen by the daemon; empty means gethostname().")                      \
    X(PORT, segment_port_base, "15000", 0, 65535, "MCEFAD_SEGMENT_PORT_BASE", "",                                \
      "First number used for daemon-chosen segment names (hostname:N), as Mooncake's rpc ports.")              \
    X(UINT, copy_threads, "2", 1, 256, "MCEFAD_COPY_THREADS", "", "Threads that perform same-host copies.")     \
    X(UINT, copy_chunk_bytes, "4194304", 4096, CFG_UNBOUNDED, "MCEFAD_COPY_CHUNK", "",                           \
      "Same-host transfers larger than this are split so several copy threads share them.")                    \
    X(UINT, completion_slots, "65536", 2, 1u << 24, "MCEFAD_COMPLETION_SLOTS", "",                               \
      "Transfer status slots in each client's completion area (limits transfers in allocated batches).")       \
    X(UINT, submit_ring_entries, "1024", 0, 65536, "MCEFAD_SUBMIT_RING_ENTRIES", "",                             \
      "Transfer descriptors in each client's submission ring (shared memory; a power of two, 64 B each); "     \
      "larger submissions go over the socket. 0 turns the ring off: clients submit over the socket.")         \
    X(UINT, ring_spin_us, "50", 0, 1000000, "MCEFAD_RING_SPIN_US", "",                                          \
      "How long the event loop keeps polling the submission rings after their last descriptor before it "    \
      "sleeps; a client then wakes it with one system call.")                                                 \
    X(UINT, max_frame_bytes, CFG_STRINGIFY(MCEFA_DEFAULT_MAX_FRAME), 4096, 1u << 30, "MCEFAD_MAX_FRAME", "",     \
      "Largest protocol message accepted from a client; larger ones close its connection.")                    \
    X(UINT, max_clients, "1024", 1, CFG_UNBOUNDED, "MCEFAD_MAX_CLIENTS", "",                                     \
      "Most client connections served at once.")                                                                \
    X(UINT, max_regions_per_client, "16384", 1, CFG_UNBOUNDED, "MCEFAD_MAX_REGIONS", "",                         \
      "Most registered regions per client. Regions of one memfd share a mapping; all clients' mappings "       \
      "together stay below vm.max_map_count, read at start.")                                                  \
    X(UINT, max_outbound_bytes, "67108864", 0, CFG_UNBOUNDED, "MCEFAD_MAX_OUTBOUND", "",                         \
      "Replies queued for a client that does not read them before it is disconnected.")                        \
    X(UINT, max_outbound_bytes_total, "268435456", 0, CFG_UNBOUNDED, "MCEFAD_MAX_OUTBOUND_TOTAL", "",           \
      "Replies queued for all clients together; past it the client with the most queued is disconnected "      \
      "(many clients that do not read could otherwise hold max_clients x max_outbound_bytes).")                \
    X(UINT, notify_queue_bytes, "4194304", 131072, 1u << 30, "MCEFAD_NOTIFY_QUEUE_BYTES", "",                  \
      "Notifications (Mooncake's TransferNotify) held for one client until it takes them, in bytes (name, "    \
      "message and 24 bytes each); past it a sender gets an error naming the segment whose owner is "          \
      "not taking them. Nothing is ever dropped. At least 128 KiB: room for the largest one.")                 \
    X(UINT, max_registered_bytes, "0", 0, CFG_UNBOUNDED, "MCEFAD_MAX_REGISTERED", "",                            \
      "Bytes all clients together may register (counting registrations under way); 0 means the machine's "     \
      "physical memory, a bound no working setup exceeds: the daemon maps and pre-faults what is registered, " \
      "so more could only end in the OOM killer choosing the daemon.")                                          \
    X(UINT, max_registered_bytes_per_client, "0", 0, CFG_UNBOUNDED, "MCEFAD_MAX_REGISTERED_PER_CLIENT", "",      \
      "Bytes one client may register; 0 means max_registered_bytes (one process, such as an inference "        \
      "server's cache, may legitimately register most of the memory). Set it lower where users do not trust "  \
      "each other.")                                                                                            \
    X(BOOL, segment_group_access, "false", 0, 0, "MCEFAD_SEGMENT_GROUP_ACCESS", "",                              \
      "Let every client that may connect to the socket open every segment; by default a segment opens only "   \
      "for its owner's user, root and admin_group.")                                                          \
    X(STR, cuda_library, "", 0, 4095, "MCEFAD_CUDA_LIBRARY", "",                                                 \
      "CUDA driver library loaded (dlopen) at the first GPU registration, or at start where a NIC's GPU plan "   \
      "needs it (gpudirect); empty means libcuda.so.1 as the dynamic linker finds it. Tests point it at their " \
      "driver stand-in.")                                                                                       \
    X(BOOL, populate, "true", 0, 0, "MCEFAD_POPULATE", "",                                                       \
      "Pre-fault registered memory when it is registered, so first transfers do not pay page faults.")          \
    X(BOOL, plain_memory, "true", 0, 0, "MCEFAD_PLAIN_MEMORY", "",                                               \
      "Accept plain host memory (malloc, numpy, torch CPU tensors): the daemon copies it with "               \
      "/proc/<pid>/mem, which needs the client's uid or CAP_SYS_PTRACE. false refuses it: a client "          \
      "whose memory pages block (a FUSE file it serves) can hold a copy thread.")                             \
    X(UINT, staging_bytes, "33554432", 0, CFG_UNBOUNDED, "MCEFAD_STAGING_BYTES", "",                             \
      "Host buffers, registered with every NIC at start, through which plain host memory travels to and from " \
      "other hosts; 0: none (such transfers are refused).")                                                    \
    X(UINT, staging_slot_bytes, "1048576", 4096, 1073741824, "MCEFAD_STAGING_SLOT_BYTES", "",                   \
      "Size of one staging buffer: a transfer of plain memory to another host moves in pieces of this size, " \
      "several at once.")                                                                                       \
    X(STR, provider, "efa", 0, CFG_UNBOUNDED, "MCEFAD_PROVIDER", "",                                             \
      "libfabric provider for the NICs: efa on AWS, tcp;ofi_rxm (or another RDM provider with RMA) elsewhere; " \
      "none runs same-host only.")                                                                              \
    X(BOOL, allow_no_nics, "false", 0, 0, "MCEFAD_ALLOW_NO_NICS", "",                                            \
      "Start anyway, serving same-host transfers only, when the provider finds no usable NIC. By default a "   \
      "provider other than none that finds none fails the start with the reason (an EFA host whose driver "    \
      "is missing must not look healthy).")                                                                     \
    X(NAMES, nics, "", 0, CFG_UNBOUNDED, "MCEFAD_NICS", "MC_EFA_NIC_SELECTION",                                  \
      "Comma-separated NICs to use, by device name (rdmap79s0) or libfabric domain name (rdmap79s0-rdm, eth0); " \
      "empty means every NIC the provider lists.")                                                             \
    X(NAMES, nics_exclude, "", 0, CFG_UNBOUNDED, "MCEFAD_NICS_EXCLUDE", "",                                      \
      "Comma-separated NICs never to use, by device or domain name.")                                          \
    X(STR, fabric, "", 0, 127, "MCEFAD_FABRIC", "",                                                              \
      "libfabric fabric of the NICs. Empty: with provider efa, efa-direct where it is offered (libfabric 2.1 "  \
      "and later, devices with RDMA read and write), else efa; with other providers the first fabric each NIC " \
      "lists. Any other name: exactly that fabric. Hosts that talk to each other need the same fabric.")       \
    X(BOOL, require_device_rdma, "false", 0, 0, "MCEFAD_REQUIRE_DEVICE_RDMA", "",                                \
      "Refuse to start when an efa NIC's RDMA read or write is emulated with send/receive, or cannot be told; " \
      "by default that is logged as a warning.")                                                               \
    X(BOOL, gpudirect, "true", 0, 0, "MCEFAD_GPUDIRECT", "",                                                     \
      "Ask the provider for FI_HMEM, so GPU memory can be registered with NICs directly (dmabuf or CUDA "       \
      "iface) where the provider, libfabric (1.18 or later, dmabuf 1.20), the kernel and the CUDA driver "     \
      "allow it; the choice per NIC is logged and shown by mcefactl nics. false keeps FI_HMEM=system, so no "  \
      "provider touches a GPU at start (it may keep a context of ~600 MiB on GPU 0).")                         \
    X(BOOL, register_all_nics, "false", 0, 0, "MCEFAD_REGISTER_ALL_NICS", "",                                     \
      "Register every region with every NIC. By default a region of known NUMA node is registered only with "  \
      "the NICs on that node (and those of unknown node), which bounds pinned memory per NIC; memory of "      \
      "unknown node, or a node without NICs, goes to every NIC anyway.")                                        \
    X(STR, topology, "", 0, 4095, "MCEFAD_TOPOLOGY", "",                                                         \
      "Where NIC NUMA nodes are read from: empty means this host's /sys; a directory, a sysfs tree rooted "     \
      "there; a file, an hwloc XML export (lstopo --of xml) of the host.")                                     \
    X(IPV4, peer_listen, "0.0.0.0", 1, CFG_UNBOUNDED, "MCEFAD_PEER_LISTEN", "",                                  \
      "Address the daemon-to-daemon port listens on.")                                                          \
    X(PORT, peer_port, "17650", 1, 65535, "MCEFAD_PEER_PORT", "", "TCP port of the daemon-to-daemon handshake.") \
    X(STR, peer_auth, "psk", 1, CFG_UNBOUNDED, "MCEFAD_PEER_AUTH", "",                                          \
      "How peer daemons prove they belong to the cluster: psk (a shared secret, peer_secret_file; frames are "  \
      "encrypted) or none (anyone who reaches peer_port is trusted; logs a warning).")                         \
    X(STR, peer_secret_file, "", 0, 4095, "MCEFAD_PEER_SECRET_FILE", "",                                         \
      "File holding the cluster secret for peer_auth=psk, the same on every host, mode 0600 "                  \
      "(mcefactl gen-secret PATH makes one).")                                                                  \
    X(UINT, peer_max_outbound_bytes, "67108864", 65536, CFG_UNBOUNDED, "MCEFAD_PEER_MAX_OUTBOUND", "",           \
      "Bytes queued for one peer connection that does not read them before it is closed.")                     \
    X(UINT, max_peers, "4096", 1, 1048576, "MCEFAD_MAX_PEERS", "",                                                \
      "Most other hosts known at once. When full, a host that never completed a handshake and that no request "\
      "uses makes room (names opened by mistake cannot fill the table for good).")                             \
    X(UINT, peer_idle_timeout_ms, "0", 0, CFG_UNBOUNDED, "MCEFAD_PEER_IDLE_TIMEOUT_MS", "",                      \
      "A spare connection of a peer (not the one this side uses) idle this long is closed; 0 keeps them "      \
      "(the other side may be using it for open segments).")                                                   \
    X(HOSTMAP, peer_hosts, "", 0, CFG_UNBOUNDED, "MCEFAD_PEER_HOSTS", "",                                        \
      "Static host map, 'name=address[:port],...': how to reach a host named in segment names when DNS "       \
      "does not know it or its daemon listens on another port.")                                               \
    X(UINT, nic_workers, "0", 0, 64, "MCEFAD_NIC_WORKERS", "MC_EFA_CQ_THREADS",                                  \
      "Threads that post to and poll the NICs; 0 means one per NIC, at most one per CPU the daemon may run "  \
      "on.")                                                                                                    \
    X(UINT, max_wr, "0", 0, CFG_UNBOUNDED, "MCEFAD_MAX_WR", "MC_MAX_WR",                                         \
      "Most work requests outstanding per NIC; 0 means the provider's tx queue depth (4096 on p5), which also " \
      "caps any other value. More wait in the daemon.")                                                         \
    X(UINT, stripe_threshold, "4194304", 0, CFG_UNBOUNDED, "MCEFAD_STRIPE_THRESHOLD", "",                        \
      "Remote transfers larger than this are split across the eligible NICs.")                                \
    X(UINT, request_timeout_ms, "10000", 1, CFG_UNBOUNDED, "MCEFAD_REQUEST_TIMEOUT_MS", "",                      \
      "A remote transfer not finished this long after submission fails with a timeout.")                      \
    X(UINT, spin_us, "50", 0, CFG_UNBOUNDED, "MCEFAD_SPIN_US", "",                                               \
      "How long an idle NIC worker polls before it sleeps on the completion queue.")                           \
    X(UINT, rxm_buffer_size, "2048", 256, 1048576, "MCEFAD_RXM_BUFFER_SIZE", "",                              \
      "tcp;ofi_rxm only: FI_OFI_RXM_BUFFER_SIZE, set unless the environment sets it. rxm holds pools of 1024 " \
      "buffers of this size per NIC (one per RMA op in flight, and receive buffers), so it sets most of the "  \
      "daemon's memory per NIC; it is also rxm's eager and inject limit, which RMA without FI_INJECT does "    \
      "not use. The provider's default is 16384.")                                                              \
    X(UINT, rxm_msg_rx_size, "128", 16, 65536, "MCEFAD_RXM_MSG_RX_SIZE", "",                                     \
      "tcp;ofi_rxm only: FI_OFI_RXM_MSG_RX_SIZE, set unless the environment sets it: receive buffers rxm posts " \
      "per NIC for messages (the daemon sends none; RMA needs none). The provider's default over tcp is 4096.") \
    X(UINT, rxm_cm_progress_interval_us, "1000", 1, 10000000, "MCEFAD_RXM_CM_PROGRESS_INTERVAL_US", "",         \
      "tcp;ofi_rxm only: FI_OFI_RXM_CM_PROGRESS_INTERVAL, set unless the environment sets it: how often (in "  \
      "microseconds) rxm's completion polling also moves connection set-up on. A connection takes about two "  \
      "of these, and rxm connects each NIC pair on its first op (warmup). The provider's default is 10000.")   \
    X(STR, admin_group, "mcefa-admin", 0, CFG_UNBOUNDED, "MCEFAD_ADMIN_GROUP", "",                               \
      "Group whose members may use admin requests (mcefactl); root and the daemon's own user always may.")     \
    X(HOSTPORT, metrics_listen, "127.0.0.1:9465", 0, CFG_UNBOUNDED, "MCEFAD_METRICS_LISTEN", "",                 \
      "address:port of the Prometheus metrics endpoint (GET /metrics); empty turns it off.")

typedef struct mcefad_config {
#define X_FIELD_STR(name) char *name;
#define X_FIELD_UINT(name) uint64_t name;
#define X_FIELD_BOOL(name) bool name;
#define X_FIELD_MODE(name) uint64_t name;
#define X_FIELD_PORT(name) uint64_t name;
#define X_FIELD_HOSTPORT(name) char *name;
#define X_FIELD_IPV4(name) char *name;
#define X_FIELD_LOGLEVEL(name) char *name;
#define X_FIELD_NAMES(name) char *name;
#define X_FIELD_HOSTMAP(name) char *name;
#define X_FIELD(kind, name, def, min, max, env, mc_env, help) X_FIELD_##kind(name)
    MCEFAD_SETTINGS(X_FIELD)
#undef X_FIELD
    /* Not settings: what to do this run. */
    char *config_file;
    bool check_only;
    char *print_topology; /* read as the topology setting is: "" this host, else an hwloc XML file or a sysfs tree */
} mcefad_config;

/* Fills cfg from defaults, the config file (--config=PATH or MCEFAD_CONFIG),
 * the environment and argv, in that order of increasing precedence. A value
 * that is not of its setting's kind (a word for a number, ...) is refused
 * here; ranges and formats are config_validate's.
 * Returns 0, 1 when the program should exit successfully (--help, ...), or
 * a negative errno after printing what was wrong to stderr. */
int config_load(mcefad_config *cfg, int argc, char **argv);
void config_free(mcefad_config *cfg);

/* The settings this daemon runs with: loaded by main before anything
 * starts, read-only afterwards (any thread may read it). */
extern mcefad_config config;

/* Checks every setting against its kind and bounds: everything a start
 * would refuse, so --check-config and a start agree. Prints each problem
 * to stderr as "mcefad: setting NAME: ..." and returns -EINVAL if there
 * was any, else 0. After it passes, the helpers below cannot fail on cfg's
 * values (except -ENOSPC for a small buffer, and -ENOENT). */
int config_validate(const mcefad_config *cfg);

/* Writes the reference of every setting as Markdown. */
void config_print_reference(FILE *out);

/* ---- Helpers for the modules that use the values ----------------------- */

/* Splits an IPv4 "address:port" (metrics_listen) into host (the dotted
 * quad; hostlen of 16 always suffices) and *port (1-65535). Returns 0,
 * -EINVAL when spec is not such a value (the empty value included: check
 * for "off" first), or -ENOSPC when host is too small. */
int config_parse_hostport(const char *spec, char *host, size_t hostlen, int *port);

/* Returns 0 when addr is an IPv4 address in dotted-quad form (peer_listen),
 * else -EINVAL. */
int config_check_ipv4(const char *addr);

/* Returns the level of a log_level value: LOG_ERROR..LOG_DEBUG of log.h
 * (so 0-3), or -EINVAL for a name that is none of them. */
int config_log_level(const char *name);

/* Walks a comma-separated list (nics, nics_exclude). Start with *pos at the
 * list; each call sets *name and *len to the next name, without the spaces
 * around it, and advances *pos. Empty items are skipped. Returns 0, or
 * -ENOENT when no name is left. */
int config_list_next(const char **pos, const char **name, size_t *len);

/* Whether name is one of the names of a comma-separated list. */
bool config_list_contains(const char *list, const char *name);

/* Finds host in a peer_hosts map ("name=address[:port],...") and writes
 * "address:port" to out, with default_port (peer_port) when the entry names
 * no port. Returns 0, -ENOENT when the map has no entry for host, -EINVAL
 * when the map is malformed, or -ENOSPC when out is too small. */
int config_hostmap_lookup(const char *map, const char *host, uint64_t default_port, char *out, size_t outlen);

#endif
