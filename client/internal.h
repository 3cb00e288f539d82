/* libmcefa internals shared by its source files. */
#ifndef MCEFA_CLIENT_INTERNAL_H
#define MCEFA_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>

#include "mcefa.h"
#include "wire.h"

typedef struct alloc_rec {
    struct alloc_rec *next;
    char *ptr;
    size_t len;
    int fd;
    int numa_node;
} alloc_rec;

struct mcefa_client {
    int sock;
    pthread_mutex_t lock; /* one request/response at a time on the socket */
    uint64_t seq;
    wire_reader rd;
    void *cq;
    size_t cq_len;
    uint32_t cq_slots;
    uint64_t session_id;
    char hostname[256];
    char version[32];
    pthread_mutex_t alloc_lock;
    alloc_rec *allocs;
};

struct mcefa_batch {
    mcefa_client *c;
    uint64_t id;
    uint32_t first_slot;
    uint32_t capacity;
    uint32_t submitted;
};

/* Sets the calling thread's last error text; returns err. */
int client_error(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sends req, waits for its response. On success *resp must be freed with
 * mcefa__response__free_unpacked; on a daemon error the text becomes the
 * thread's last error and the status is returned. */
int client_call(mcefa_client *c, Mcefa__Request *req, const int *fds, unsigned nfds, Mcefa__Response **resp);

/* Like client_call for requests whose reply carries nothing. */
int client_call_simple(mcefa_client *c, Mcefa__Request *req);

#endif
