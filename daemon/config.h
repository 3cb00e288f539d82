/* Every setting of mcefad, declared once. The table drives the defaults,
 * the config file, the environment, the command-line flags, --help and the
 * generated configuration reference (docs/configuration.md). */
#ifndef MCEFAD_CONFIG_H
#define MCEFAD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* X(type, name, default, env, help) -- type is STR, UINT or BOOL. */
#define MCEFAD_SETTINGS(X)                                                                                    \
    X(STR, socket_path, "/run/mcefad/mcefad.sock", "MCEFAD_SOCKET",                                           \
      "Unix socket that clients (libmcefa, mcefactl) connect to.")                                            \
    X(UINT, socket_mode, "0660", "MCEFAD_SOCKET_MODE",                                                        \
      "Permission bits of the socket (octal); group members may connect.")                                    \
    X(STR, log_level, "info", "MCEFAD_LOG_LEVEL", "Least severe level logged: error, warn, info or debug.")   \
    X(STR, hostname, "", "MCEFAD_HOSTNAME",                                                                   \
      "Host name used in segment names chosen by the daemon; empty means gethostname().")                    \
    X(UINT, segment_port_base, "15000", "MCEFAD_SEGMENT_PORT_BASE",                                           \
      "First number used for daemon-chosen segment names (hostname:N), as Mooncake's rpc ports.")            \
    X(UINT, copy_threads, "2", "MCEFAD_COPY_THREADS", "Threads that perform same-host copies.")               \
    X(UINT, copy_chunk_bytes, "4194304", "MCEFAD_COPY_CHUNK",                                                 \
      "Same-host transfers larger than this are split so several copy threads share them.")                  \
    X(UINT, completion_slots, "65536", "MCEFAD_COMPLETION_SLOTS",                                             \
      "Transfer status slots in each client's completion area (limits transfers in allocated batches).")     \
    X(UINT, max_frame_bytes, "8388608", "MCEFAD_MAX_FRAME",                                                   \
      "Largest protocol message accepted from a client; larger ones close its connection.")                  \
    X(UINT, max_clients, "1024", "MCEFAD_MAX_CLIENTS", "Most client connections served at once.")            \
    X(UINT, max_regions_per_client, "65536", "MCEFAD_MAX_REGIONS", "Most registered regions per client.")    \
    X(UINT, max_outbound_bytes, "67108864", "MCEFAD_MAX_OUTBOUND",                                            \
      "Replies queued for a client that does not read them before it is disconnected.")                      \
    X(BOOL, populate, "true", "MCEFAD_POPULATE",                                                              \
      "Pre-fault registered memory when it is registered, so first transfers do not pay page faults.")        \
    X(STR, provider, "efa", "MCEFAD_PROVIDER",                                                                \
      "libfabric provider for the NICs: efa on AWS, tcp;ofi_rxm (or another RDM provider with RMA) elsewhere; " \
      "none runs same-host only.")                                                                            \
    X(STR, nics, "", "MC_EFA_NIC_SELECTION",                                                                  \
      "Comma-separated NIC (domain) names to use; empty means every NIC the provider lists.")                 \
    X(STR, nics_exclude, "", "MCEFAD_NICS_EXCLUDE", "Comma-separated NIC (domain) names never to use.")      \
    X(STR, peer_listen, "0.0.0.0", "MCEFAD_PEER_LISTEN", "Address the daemon-to-daemon port listens on.")    \
    X(UINT, peer_port, "17650", "MCEFAD_PEER_PORT", "TCP port of the daemon-to-daemon handshake.")           \
    X(STR, peer_hosts, "", "MCEFAD_PEER_HOSTS",                                                               \
      "Static host map, 'name=address[:port],...': how to reach a host named in segment names when DNS "     \
      "does not know it or its daemon listens on another port.")                                             \
    X(UINT, nic_workers, "0", "MC_EFA_CQ_THREADS",                                                            \
      "Threads that post to and poll the NICs; 0 means one per NIC.")                                        \
    X(UINT, max_wr, "256", "MC_MAX_WR",                                                                       \
      "Most work requests outstanding per NIC (capped by the provider's tx queue); more wait in the daemon.") \
    X(UINT, stripe_threshold, "4194304", "MCEFAD_STRIPE_THRESHOLD",                                           \
      "Remote transfers larger than this are split across the eligible NICs.")                              \
    X(UINT, request_timeout_ms, "10000", "MCEFAD_REQUEST_TIMEOUT_MS",                                         \
      "A remote transfer not finished this long after submission fails with a timeout.")                    \
    X(UINT, spin_us, "50", "MCEFAD_SPIN_US",                                                                  \
      "How long an idle NIC worker polls before it sleeps on the completion queue.")                         \
    X(STR, admin_group, "mcefa-admin", "MCEFAD_ADMIN_GROUP",                                                  \
      "Group whose members may use admin requests (mcefactl); root and the daemon's own user always may.")   \
    X(STR, metrics_listen, "127.0.0.1:9465", "MCEFAD_METRICS_LISTEN",                                         \
      "address:port of the Prometheus metrics endpoint (GET /metrics); empty turns it off.")

typedef struct mcefad_config {
#define X_FIELD_STR(name) char *name;
#define X_FIELD_UINT(name) uint64_t name;
#define X_FIELD_BOOL(name) bool name;
#define X_FIELD(type, name, def, env, help) X_FIELD_##type(name)
    MCEFAD_SETTINGS(X_FIELD)
#undef X_FIELD
    /* Not settings: what to do this run. */
    char *config_file;
    bool check_only;
    char *print_topology; /* "" for this host's sysfs, else an hwloc XML file */
} mcefad_config;

/* Fills cfg from defaults, the config file (--config=PATH or MCEFAD_CONFIG),
 * the environment and argv, in that order of increasing precedence.
 * Returns 0, 1 when the program should exit successfully (--help, ...), or
 * a negative errno after printing what was wrong to stderr. */
int config_load(mcefad_config *cfg, int argc, char **argv);
void config_free(mcefad_config *cfg);

/* The settings this daemon runs with: loaded by main before anything
 * starts, read-only afterwards (any thread may read it). */
extern mcefad_config config;

/* Writes the reference of every setting as Markdown. */
void config_print_reference(FILE *out);

#endif
