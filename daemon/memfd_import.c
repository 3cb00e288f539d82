#include "memfd_import.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "shm/memfd.h"

/* A mapping of [start, start+len) of one memfd. */
typedef struct memfd_map {
    struct memfd_map *next;
    memfd_maps *set;
    dev_t dev;
    ino_t ino;
    uint64_t start;
    size_t len;
    char *base;
    bool whole; /* counted in whole_va */
    unsigned refs; /* regions using it; under set->lock */
} memfd_map;

struct memfd_maps {
    pthread_mutex_t lock;
    memfd_map *head;
    unsigned refs;
};

static uint64_t whole_max;
/* Address space taken by whole-file mappings: a client could make memfds
 * huge (they are sparse) and register a page of each; past this budget
 * memfds are mapped a range at a time, as their regions need. */
#define WHOLE_VA_BUDGET ((uint64_t)1 << 43)
static _Atomic uint64_t whole_va;
static _Atomic size_t nmappings;

void memfd_import_init(uint64_t max)
{
    whole_max = max;
}

size_t memfd_mappings(void)
{
    return atomic_load(&nmappings);
}

memfd_maps *memfd_maps_new(void)
{
    memfd_maps *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    pthread_mutex_init(&m->lock, NULL);
    m->refs = 1;
    return m;
}

void memfd_maps_ref(memfd_maps *m)
{
    pthread_mutex_lock(&m->lock);
    m->refs++;
    pthread_mutex_unlock(&m->lock);
}

void memfd_maps_unref(memfd_maps *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    unsigned left = --m->refs;
    pthread_mutex_unlock(&m->lock);
    if (left)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static void map_unref(memfd_map *mp)
{
    memfd_maps *set = mp->set;
    pthread_mutex_lock(&set->lock);
    bool last = --mp->refs == 0;
    if (last)
        for (memfd_map **pp = &set->head; *pp; pp = &(*pp)->next)
            if (*pp == mp) {
                *pp = mp->next;
                break;
            }
    pthread_mutex_unlock(&set->lock);
    if (!last)
        return;
    munmap(mp->base, mp->len);
    atomic_fetch_sub(&nmappings, 1);
    if (mp->whole)
        atomic_fetch_sub(&whole_va, mp->len);
    free(mp);
    memfd_maps_unref(set);
}

static void memfd_release(region *r)
{
    if (r->map_base)
        map_unref(r->map_base);
}

static const region_ops memfd_ops = {.kind = REGION_HOST_MEMFD, .release = memfd_release};

/* With set->lock held: a mapping of this file holding [offset, offset+len). */
static memfd_map *find_map(memfd_maps *set, const struct stat *st, uint64_t offset, uint64_t len)
{
    for (memfd_map *mp = set->head; mp; mp = mp->next)
        if (mp->dev == st->st_dev && mp->ino == st->st_ino && offset >= mp->start &&
            offset + len <= mp->start + mp->len)
            return mp;
    return NULL;
}

/* Maps the whole file when it is small enough (and the budget allows),
 * else the pages that hold [offset, offset+len). */
static memfd_map *new_map(int fd, const struct stat *st, uint64_t offset, uint64_t len, size_t ps)
{
    memfd_map *mp = calloc(1, sizeof(*mp));
    if (!mp) {
        errno = ENOMEM;
        return NULL;
    }
    uint64_t size = ((uint64_t)st->st_size + ps - 1) / ps * ps;
    if (size <= whole_max && atomic_fetch_add(&whole_va, size) + size <= WHOLE_VA_BUDGET) {
        mp->whole = true;
        mp->start = 0;
        mp->len = size;
    } else {
        if (size <= whole_max)
            atomic_fetch_sub(&whole_va, size);
        mp->start = offset / ps * ps;
        mp->len = (offset + len + ps - 1) / ps * ps - mp->start;
    }
    mp->base = mmap(NULL, mp->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)mp->start);
    if (mp->base == MAP_FAILED) {
        int saved = errno;
        if (mp->whole)
            atomic_fetch_sub(&whole_va, mp->len);
        free(mp);
        errno = saved;
        return NULL;
    }
    mp->dev = st->st_dev;
    mp->ino = st->st_ino;
    mp->refs = 1;
    atomic_fetch_add(&nmappings, 1);
    return mp;
}

int memfd_import(memfd_maps *set, int fd, uint64_t offset, uint64_t addr, uint64_t length, int numa_node,
                 bool populate, region **out, err *e)
{
    int rc;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        return err_set(e, rc, "cannot register 0x%" PRIx64 " + %" PRIu64 ": fstat of its memfd failed: %s", addr,
                       length, strerror(-rc));
    }
    size_t ps = shm_fd_page_size(fd);
    pthread_mutex_lock(&set->lock);
    memfd_map *mp = find_map(set, &st, offset, length);
    if (mp)
        mp->refs++;
    pthread_mutex_unlock(&set->lock);
    if (!mp) {
        /* Mapped outside the lock (slow); two threads mapping the same
         * file at once just make two mappings. */
        if (!(mp = new_map(fd, &st, offset, length, ps))) {
            rc = -errno;
            return err_set(e, rc, "cannot map 0x%" PRIx64 " + %" PRIu64 " into the daemon: %s", addr, length,
                           strerror(-rc));
        }
        mp->set = set;
        pthread_mutex_lock(&set->lock);
        mp->next = set->head;
        set->head = mp;
        set->refs++;
        pthread_mutex_unlock(&set->lock);
    }
    char *ptr = mp->base + (offset - mp->start);
    if (populate) {
        /* Only this region's pages: the rest of a whole mapping may be
         * sparse and is not this registration's to pay for. */
        uint64_t from = offset / ps * ps, to = (offset + length + ps - 1) / ps * ps;
        if (to > mp->start + mp->len)
            to = mp->start + mp->len;
        shm_populate(mp->base + (from - mp->start), (size_t)(to - from), ps);
    }
    region *r = region_create(&memfd_ops, addr, length, ptr, numa_node);
    if (!r) {
        map_unref(mp);
        return err_set(e, -ENOMEM, "out of memory registering a region");
    }
    r->map_base = mp;
    r->map_len = mp->len;
    *out = r;
    return 0;
}
