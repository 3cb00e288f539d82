#include "topo.h"

#include <errno.h>
#include <stdbool.h>
#include <hwloc.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static topo_dev *add(topo *t)
{
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 32;
        topo_dev *nd = realloc(t->devs, ncap * sizeof(*nd));
        if (!nd)
            return NULL;
        t->devs = nd;
        t->cap = ncap;
    }
    topo_dev *d = &t->devs[t->n++];
    memset(d, 0, sizeof(*d));
    d->numa = -1;
    return d;
}

void topo_free(topo *t)
{
    free(t->devs);
    memset(t, 0, sizeof(*t));
}

/* Keeps the node list sorted and without repeats. */
static void add_numa(topo *t, int node)
{
    int i = 0;
    while (i < t->nnuma && t->numa_nodes[i] < node)
        i++;
    if (node < 0 || (i < t->nnuma && t->numa_nodes[i] == node) || t->nnuma == TOPO_NUMA_MAX)
        return;
    memmove(&t->numa_nodes[i + 1], &t->numa_nodes[i], (size_t)(t->nnuma - i) * sizeof(int));
    t->numa_nodes[i] = node;
    t->nnuma++;
}

/* ---- From hwloc ------------------------------------------------------------ */

/* The NUMA node of the CPU-side object a device's PCI tree hangs from,
 * where that object holds exactly one (a PCI tree attached to the whole
 * machine of a two-node host has none). */
static int dev_numa(hwloc_topology_t h, hwloc_obj_t pci)
{
    hwloc_obj_t a = hwloc_get_non_io_ancestor_obj(h, pci);
    if (!a || !a->nodeset || hwloc_bitmap_weight(a->nodeset) != 1)
        return -1;
    return hwloc_bitmap_first(a->nodeset);
}

static int add_dev(hwloc_topology_t h, topo *t, hwloc_obj_t pci, int gpu, const char *name)
{
    topo_dev *d = add(t);
    if (!d)
        return -ENOMEM;
    const struct hwloc_pcidev_attr_s *a = &pci->attr->pcidev;
    snprintf(d->busid, sizeof(d->busid), "%04x:%02x:%02x.%01x", a->domain, a->bus, a->dev, a->func);
    snprintf(d->name, sizeof(d->name), "%s", name ? name : d->busid);
    d->gpu = gpu;
    d->numa = dev_numa(h, pci);
    /* The bridges above, root first; past TOPO_DEPTH (no real tree is that
     * deep) only the top ones are compared. */
    int k = 0;
    for (hwloc_obj_t b = pci->parent; b && b->type == HWLOC_OBJ_BRIDGE; b = b->parent)
        k++;
    d->depth = k < TOPO_DEPTH ? k : TOPO_DEPTH;
    for (hwloc_obj_t b = pci->parent; b && b->type == HWLOC_OBJ_BRIDGE; b = b->parent)
        if (--k < TOPO_DEPTH)
            d->path[k] = b->gp_index;
    return 0;
}

static int by_busid(const void *a, const void *b)
{
    const topo_dev *x = a, *y = b;
    int c = strcmp(x->busid, y->busid);
    return c ? c : strcmp(x->name, y->name);
}

static int from_hwloc(hwloc_topology_t h, topo *t)
{
    for (hwloc_obj_t n = NULL; (n = hwloc_get_next_obj_by_type(h, HWLOC_OBJ_NUMANODE, n));)
        add_numa(t, (int)n->os_index);
    for (hwloc_obj_t p = NULL; (p = hwloc_get_next_pcidev(h, p));) {
        const struct hwloc_pcidev_attr_s *a = &p->attr->pcidev;
        int rc = 0;
        if (a->vendor_id == 0x10de && (a->class_id == 0x0300 || a->class_id == 0x0302))
            rc = add_dev(h, t, p, 1, NULL);
        for (hwloc_obj_t o = p->io_first_child; o && rc == 0; o = o->next_sibling)
            if (o->type == HWLOC_OBJ_OS_DEVICE && o->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS && o->name)
                rc = add_dev(h, t, p, 0, o->name);
        if (rc < 0)
            return rc;
    }
    if (t->n)
        qsort(t->devs, t->n, sizeof(*t->devs), by_busid);
    return 0;
}

/* GPU libraries' discovery would create a CUDA context in the daemon (and
 * take seconds); the PCI tree says where GPUs are. */
static const char *const no_components[] = {"cuda", "nvml", "opencl", "rsmi", "levelzero", "gl"};

/* This host (or HWLOC_FSROOT's) when xml is NULL, else that export. */
static int load_hwloc(const char *xml, topo *t)
{
    hwloc_topology_t h;
    if (hwloc_topology_init(&h) < 0)
        return errno ? -errno : -ENOMEM;
    /* Every NUMA node, not only those the daemon's cgroup may use. */
    int rc = hwloc_topology_set_flags(h, HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED);
    /* hwloc drops the I/O tree by default; its important part holds the
     * GPUs, the NICs, their OpenFabrics devices and every bridge above. */
    if (rc == 0)
        rc = hwloc_topology_set_io_types_filter(h, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
    if (rc == 0)
        rc = hwloc_topology_set_cache_types_filter(h, HWLOC_TYPE_FILTER_KEEP_NONE);
    /* Refused (EINVAL) for a component this hwloc lacks, which needs no
     * excluding. */
    for (size_t i = 0; rc == 0 && i < sizeof(no_components) / sizeof(no_components[0]); i++)
        hwloc_topology_set_components(h, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, no_components[i]);
    /* errno tells why (ENOENT for a missing file, EINVAL for one hwloc
     * cannot parse). */
    errno = 0;
    if (rc == 0 && xml)
        rc = hwloc_topology_set_xml(h, xml);
    if (rc == 0)
        rc = hwloc_topology_load(h);
    rc = rc < 0 ? (errno ? -errno : -EINVAL) : from_hwloc(h, t);
    hwloc_topology_destroy(h);
    return rc;
}

int topo_load_hwloc_xml(const char *file, topo *t)
{
    return load_hwloc(file, t);
}

/* hwloc reads another Linux root through HWLOC_FSROOT (the sys/ beneath
 * it), and root is a sysfs tree: a scratch root whose sys links to it
 * stands in. The variable is set only around that load, a test and
 * development mode the daemon uses while it starts, when none of its
 * threads reads the environment. */
static int load_sysfs_tree(const char *root, topo *t)
{
    char abs[PATH_MAX], dir[PATH_MAX], link[PATH_MAX + 8];
    if (!realpath(root, abs))
        return -errno;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/mcefad-fsroot-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        return -errno;
    snprintf(link, sizeof(link), "%s/sys", dir);
    int rc = symlink(abs, link) < 0 ? -errno : 0;
    if (rc == 0) {
        const char *was = getenv("HWLOC_FSROOT");
        char *old = was ? strdup(was) : NULL;
        if (was && !old)
            rc = -ENOMEM;
        else if (setenv("HWLOC_FSROOT", dir, 1) < 0)
            rc = -errno;
        else {
            rc = load_hwloc(NULL, t);
            if (old)
                setenv("HWLOC_FSROOT", old, 1);
            else
                unsetenv("HWLOC_FSROOT");
        }
        free(old);
        unlink(link);
    }
    rmdir(dir);
    return rc;
}

int topo_load_sysfs(const char *root, topo *t)
{
    return strcmp(root, "/sys") ? load_sysfs_tree(root, t) : load_hwloc(NULL, t);
}

int topo_load_setting(const char *setting, topo *t, char *sysroot, size_t sysroot_len)
{
    struct stat st;
    snprintf(sysroot, sysroot_len, "%s", *setting ? setting : "/sys");
    if (*setting && stat(setting, &st) != 0)
        return -errno;
    if (*setting && !S_ISDIR(st.st_mode)) {
        snprintf(sysroot, sysroot_len, "/sys");
        return topo_load_hwloc_xml(setting, t);
    }
    return topo_load_sysfs(sysroot, t);
}

static void keep_nics(topo *t, const char *const *names, int n, bool exact)
{
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++) {
        int keep = t->devs[i].gpu == 1;
        for (int j = 0; j < n && !keep; j++)
            keep = exact ? !strcmp(t->devs[i].name, names[j]) : !strncmp(t->devs[i].name, names[j], strlen(names[j]));
        if (keep)
            t->devs[k++] = t->devs[i];
    }
    t->n = k;
}

void topo_keep_nics(topo *t, const char *const *prefixes, int n)
{
    keep_nics(t, prefixes, n, false);
}

void topo_keep_named(topo *t, const char *const *names, int n)
{
    keep_nics(t, names, n, true);
}

/* ---- Choice --------------------------------------------------------------- */

int topo_same_bus(const char *a, const char *b)
{
    /* Accept "59:00.0" for "0000:59:00.0". */
    size_t la = strlen(a), lb = strlen(b);
    if (la > lb)
        return !strcmp(a + (la - lb), b) && a[la - lb - 1] == ':';
    if (lb > la)
        return !strcmp(b + (lb - la), a) && b[lb - la - 1] == ':';
    return !strcmp(a, b);
}

static int common(const topo_dev *a, const topo_dev *b)
{
    int k = 0;
    while (k < a->depth && k < b->depth && a->path[k] == b->path[k])
        k++;
    return k;
}

static int hops(const topo_dev *g, const topo_dev *d)
{
    int c = common(g, d);
    return (g->depth - c) + (d->depth - c);
}

static const topo_dev *find_gpu(const topo *t, const char *busid)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->devs[i].gpu == 1 && topo_same_bus(t->devs[i].busid, busid))
            return &t->devs[i];
    return NULL;
}

static topo_tier tier(const topo_dev *g, const topo_dev *d)
{
    if (common(g, d) > 0)
        return TOPO_PCIE;
    return g->numa >= 0 && d->numa == g->numa ? TOPO_NUMA : TOPO_REMOTE;
}

int topo_gpu_nic_order(const topo *t, const char *gpu_busid, topo_choice *out, int max)
{
    const topo_dev *g = find_gpu(t, gpu_busid);
    if (!g)
        return -ENOENT;
    int n = 0;
    for (size_t i = 0; i < t->n; i++) {
        const topo_dev *d = &t->devs[i];
        if (d->gpu != 0)
            continue;
        topo_choice c = {d->name, tier(g, d), hops(g, d)};
        n++;
        if (!out || max <= 0)
            continue;
        /* Insertion behind every entry not farther: stable, and a host
         * has a few dozen NICs at most. */
        int k = n - 1 < max ? n - 1 : max;
        while (k > 0 && (out[k - 1].tier > c.tier || (out[k - 1].tier == c.tier && out[k - 1].hops > c.hops)))
            k--;
        if (k == max)
            continue;
        int last = n - 1 < max ? n - 1 : max - 1;
        memmove(&out[k + 1], &out[k], (size_t)(last - k) * sizeof(*out));
        out[k] = c;
    }
    return n;
}

int topo_gpu_nics(const topo *t, const char *gpu_busid, const char **out, int max)
{
    int all = topo_gpu_nic_order(t, gpu_busid, NULL, 0);
    if (all <= 0)
        return all;
    topo_choice *o = malloc((size_t)all * sizeof(*o));
    if (!o)
        return -ENOMEM;
    topo_gpu_nic_order(t, gpu_busid, o, all);
    int n = 0;
    for (; n < all && o[n].tier == o[0].tier && o[n].hops == o[0].hops; n++)
        if (n < max)
            out[n] = o[n].nic;
    free(o);
    return n;
}

/* A GPU's nearest NICs (as topo_gpu_nics, at most TOPO_NICS_MAX) with
 * their tier and hops; <= 0 as topo_gpu_nic_order. */
static int near_set(const topo *t, const char *busid, const char **out, topo_tier *tier, int *hops)
{
    topo_choice o[TOPO_NICS_MAX];
    int all = topo_gpu_nic_order(t, busid, o, TOPO_NICS_MAX);
    if (all <= 0)
        return all;
    int n = 0;
    for (; n < all && n < TOPO_NICS_MAX && o[n].tier == o[0].tier && o[n].hops == o[0].hops; n++)
        out[n] = o[n].nic;
    *tier = o[0].tier;
    *hops = o[0].hops;
    return n;
}

int topo_gpu_own_nics(const topo *t, const char *gpu_busid, const char **out, int max)
{
    const char *mine[TOPO_NICS_MAX], *theirs[TOPO_NICS_MAX];
    topo_tier tier, ttier;
    int hops, thops;
    int n = near_set(t, gpu_busid, mine, &tier, &hops);
    if (n <= 0)
        return n;
    const topo_dev *me = find_gpu(t, gpu_busid);
    /* The GPUs for which the same NICs are nearest in the same way (the
     * same tier and hops: a switch's GPUs, not GPUs that reach those NICs
     * only across the host), in bus id order (t's), and my rank. */
    int g = 0, rank = 0;
    for (size_t i = 0; i < t->n; i++) {
        const topo_dev *d = &t->devs[i];
        if (d->gpu != 1)
            continue;
        int m = near_set(t, d->busid, theirs, &ttier, &thops);
        bool same = m == n && ttier == tier && thops == hops;
        for (int k = 0; same && k < n; k++)
            same = !strcmp(mine[k], theirs[k]);
        if (!same)
            continue;
        if (d == me)
            rank = g;
        g++;
    }
    /* n >= g: a share each, as even as integers allow; n < g: the GPUs
     * take turns on the n NICs, one each. */
    int first = rank * n / g, last = n >= g ? (rank + 1) * n / g : first + 1;
    int k = 0;
    for (int i = first; i < last; i++, k++)
        if (k < max)
            out[k] = mine[i];
    return k;
}

int topo_distance(const topo *t, const char *gpu_busid, const char *nic)
{
    const topo_dev *g = find_gpu(t, gpu_busid);
    if (!g)
        return -ENOENT;
    for (size_t i = 0; i < t->n; i++) {
        const topo_dev *d = &t->devs[i];
        if (d->gpu == 0 && !strcmp(d->name, nic))
            return hops(g, d);
    }
    return -ENOENT;
}
