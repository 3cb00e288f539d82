#include "topo.h"

#include <dirent.h>
#include <errno.h>
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

/* ---- hwloc XML ------------------------------------------------------------ */

/* Value of attribute `name` inside one tag, into out. */
static int attr(const char *tag, size_t taglen, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    for (const char *p = tag; p + nl + 2 < tag + taglen; p++) {
        if ((p == tag || p[-1] == ' ') && !strncmp(p, name, nl) && p[nl] == '=' && p[nl + 1] == '"') {
            const char *v = p + nl + 2, *e = memchr(v, '"', (size_t)(tag + taglen - v));
            if (!e)
                return -1;
            size_t l = (size_t)(e - v) < outlen - 1 ? (size_t)(e - v) : outlen - 1;
            memcpy(out, v, l);
            out[l] = 0;
            return 0;
        }
    }
    return -1;
}

typedef struct frame {
    char type[16];
    char id[32];    /* bridge id for Bridges */
    int container;  /* index into numa[] for Package/Group/Machine, else -1 */
    int dev;        /* index in t->devs of the PCIDev being read, else -1 */
    int is_gpu_pci; /* a GPU PCI function: becomes a device on its own */
} frame;

int topo_load_hwloc_xml(const char *file, topo *t)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return -errno;
    /* Read to the end, in chunks: the file may be a pipe (<(lstopo ...)). */
    size_t len = 0, cap = 1 << 16;
    char *x = malloc(cap);
    for (size_t got; x && (got = fread(x + len, 1, cap - len - 1, f)) > 0;) {
        len += got;
        if (cap - len - 1 == 0) {
            if (cap >= (64u << 20)) {
                free(x);
                x = NULL; /* no topology is this large */
                break;
            }
            char *nx = realloc(x, cap * 2);
            if (!nx) {
                free(x);
                x = NULL;
                break;
            }
            x = nx;
            cap *= 2;
        }
    }
    fclose(f);
    if (!x)
        return -EFBIG;
    x[len] = 0;

    frame st[64];
    int sp = 0;
    int numa[256], ncont = 0;
    int *dev_cont = calloc(4096, sizeof(int)); /* device -> container */
    if (!dev_cont) {
        free(x);
        return -ENOMEM;
    }
    char path[TOPO_DEPTH][32];
    int depth = 0;
    int rc = 0;
    for (char *p = x; (p = strchr(p, '<')) != NULL;) {
        char *e = strchr(p, '>');
        if (!e)
            break;
        size_t tl = (size_t)(e - p) + 1;
        if (!strncmp(p, "</object", 8)) {
            if (sp == 0) {
                rc = -EINVAL;
                break;
            }
            frame *fr = &st[--sp];
            if (!strcmp(fr->type, "Bridge") && depth > 0)
                depth--;
        } else if (!strncmp(p, "<object ", 8)) {
            int selfclose = e[-1] == '/';
            frame fr = {.container = -1, .dev = -1};
            attr(p, tl, "type", fr.type, sizeof(fr.type));
            int parent_cont = -1;
            for (int i = sp - 1; i >= 0 && parent_cont < 0; i--)
                parent_cont = st[i].container;
            if (!strcmp(fr.type, "Package") || !strcmp(fr.type, "Group") || !strcmp(fr.type, "Machine")) {
                if (ncont < 256) {
                    numa[ncont] = -1;
                    fr.container = ncont++;
                }
            } else if (!strcmp(fr.type, "NUMANode")) {
                char os[16];
                if (attr(p, tl, "os_index", os, sizeof(os)) == 0) {
                    add_numa(t, atoi(os));
                    if (parent_cont >= 0 && numa[parent_cont] < 0)
                        numa[parent_cont] = atoi(os);
                }
            } else if (!strcmp(fr.type, "Bridge")) {
                char b[32] = "", r[24] = "";
                if (attr(p, tl, "pci_busid", b, sizeof(b)) < 0) {
                    attr(p, tl, "bridge_pci", r, sizeof(r));
                    snprintf(b, sizeof(b), "host%s", r);
                }
                /* A bridge with nothing below it changes no path. */
                if (!selfclose) {
                    if (depth < TOPO_DEPTH)
                        snprintf(path[depth], sizeof(path[depth]), "%s", b);
                    depth++;
                }
            } else if (!strcmp(fr.type, "PCIDev")) {
                char ty[64] = "", bus[16] = "";
                attr(p, tl, "pci_type", ty, sizeof(ty));
                attr(p, tl, "pci_busid", bus, sizeof(bus));
                fr.is_gpu_pci = (!strncmp(ty, "0302", 4) || !strncmp(ty, "0300", 4)) && strstr(ty, "[10de:") == ty + 5;
                /* Remember the function; it becomes a NIC when an
                 * OpenFabrics OSDev shows up below it. */
                topo_dev *d = add(t);
                if (!d) {
                    rc = -ENOMEM;
                    break;
                }
                snprintf(d->busid, sizeof(d->busid), "%s", bus);
                d->depth = depth < TOPO_DEPTH ? depth : TOPO_DEPTH;
                memcpy(d->path, path, sizeof(path));
                d->gpu = fr.is_gpu_pci ? 1 : -1; /* -1: not (yet) interesting */
                if (fr.is_gpu_pci)
                    snprintf(d->name, sizeof(d->name), "%s", bus);
                fr.dev = (int)(t->n - 1);
                if (t->n <= 4096)
                    dev_cont[t->n - 1] = parent_cont;
            } else if (!strcmp(fr.type, "OSDev")) {
                char ot[8] = "", name[64] = "";
                attr(p, tl, "osdev_type", ot, sizeof(ot));
                attr(p, tl, "name", name, sizeof(name));
                int pdev = -1;
                for (int i = sp - 1; i >= 0 && pdev < 0; i--)
                    pdev = st[i].dev;
                if (pdev >= 0 && !strcmp(ot, "3") && t->devs[pdev].gpu == -1) {
                    t->devs[pdev].gpu = 0;
                    snprintf(t->devs[pdev].name, sizeof(t->devs[pdev].name), "%s", name);
                }
            }
            if (!selfclose) {
                if (sp == 64) {
                    rc = -E2BIG;
                    break;
                }
                st[sp++] = fr;
            }
        }
        p = e + 1;
    }
    /* Keep GPUs and NICs; give each its NUMA node. */
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (t->devs[i].gpu < 0)
            continue;
        int c = i < 4096 ? dev_cont[i] : -1;
        t->devs[i].numa = c >= 0 ? numa[c] : -1;
        t->devs[k++] = t->devs[i];
    }
    t->n = k;
    free(dev_cont);
    free(x);
    return rc;
}

/* ---- sysfs ---------------------------------------------------------------- */

static int read_int(const char *path, int dflt)
{
    FILE *f = fopen(path, "r");
    int v = dflt;
    if (f) {
        if (fscanf(f, "%i", &v) != 1)
            v = dflt;
        fclose(f);
    }
    return v;
}

/* The PCI bridges above a device, from its resolved sysfs path
 * (/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/...). */
static void fill_path(topo_dev *d, const char *real)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", real);
    d->depth = 0;
    for (char *tok = strtok(buf, "/"); tok; tok = strtok(NULL, "/")) {
        unsigned a, b, c, fn;
        int root = !strncmp(tok, "pci", 3);
        int pci = sscanf(tok, "%x:%x:%x.%x", &a, &b, &c, &fn) == 4;
        if (!root && !pci)
            continue;
        if (d->depth < TOPO_DEPTH)
            snprintf(d->path[d->depth++], sizeof(d->path[0]), "%s", tok);
    }
    /* The device itself is the last component, not a bridge. */
    if (d->depth > 0) {
        snprintf(d->busid, sizeof(d->busid), "%s", d->path[d->depth - 1]);
        d->depth--;
    }
}

int topo_load_sysfs(const char *root, topo *t)
{
    char dir[PATH_MAX], p[PATH_MAX * 2], real[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/devices/system/node", root);
    DIR *dd = opendir(dir);
    if (dd) {
        for (struct dirent *e; (e = readdir(dd));) {
            char *end;
            long node = strtol(e->d_name + 4, &end, 10);
            if (!strncmp(e->d_name, "node", 4) && end != e->d_name + 4 && !*end && node <= INT_MAX)
                add_numa(t, (int)node);
        }
        closedir(dd);
    }
    snprintf(dir, sizeof(dir), "%s/class/infiniband", root);
    dd = opendir(dir);
    if (dd) {
        for (struct dirent *e; (e = readdir(dd));) {
            if (e->d_name[0] == '.')
                continue;
            snprintf(p, sizeof(p), "%s/%s/device", dir, e->d_name);
            if (!realpath(p, real))
                continue;
            topo_dev *d = add(t);
            if (!d)
                break;
            snprintf(d->name, sizeof(d->name), "%s", e->d_name);
            fill_path(d, real);
            snprintf(p, sizeof(p), "%s/%s/device/numa_node", dir, e->d_name);
            d->numa = read_int(p, -1);
        }
        closedir(dd);
    }
    snprintf(dir, sizeof(dir), "%s/bus/pci/devices", root);
    dd = opendir(dir);
    if (!dd)
        return t->n ? 0 : -ENOENT;
    for (struct dirent *e; (e = readdir(dd));) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s/vendor", dir, e->d_name);
        int vendor = read_int(p, 0);
        snprintf(p, sizeof(p), "%s/%s/class", dir, e->d_name);
        int cls = read_int(p, 0) >> 8;
        if (vendor != 0x10de || (cls != 0x0302 && cls != 0x0300))
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (!realpath(p, real))
            continue;
        topo_dev *d = add(t);
        if (!d)
            break;
        d->gpu = 1;
        fill_path(d, real);
        snprintf(d->name, sizeof(d->name), "%s", d->busid);
        snprintf(p, sizeof(p), "%s/%s/numa_node", dir, e->d_name);
        d->numa = read_int(p, -1);
    }
    closedir(dd);
    return 0;
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
    int rc = topo_load_sysfs(sysroot, t);
    return rc == -ENOENT ? 0 : rc;
}

void topo_keep_nics(topo *t, const char *const *prefixes, int n)
{
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++) {
        int keep = t->devs[i].gpu == 1;
        for (int j = 0; j < n && !keep; j++)
            keep = !strncmp(t->devs[i].name, prefixes[j], strlen(prefixes[j]));
        if (keep)
            t->devs[k++] = t->devs[i];
    }
    t->n = k;
}

/* ---- Choice --------------------------------------------------------------- */

static int same_bus(const char *a, const char *b)
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
    while (k < a->depth && k < b->depth && k < TOPO_DEPTH && !strcmp(a->path[k], b->path[k]))
        k++;
    return k;
}

static const topo_dev *find_gpu(const topo *t, const char *busid)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->devs[i].gpu == 1 && same_bus(t->devs[i].busid, busid))
            return &t->devs[i];
    return NULL;
}

int topo_gpu_nics(const topo *t, const char *gpu_busid, const char **out, int max)
{
    const topo_dev *g = find_gpu(t, gpu_busid);
    if (!g)
        return -ENOENT;
    int best = 0;
    for (size_t i = 0; i < t->n; i++)
        if (t->devs[i].gpu == 0) {
            int c = common(g, &t->devs[i]);
            best = c > best ? c : best;
        }
    int n = 0;
    for (size_t i = 0; i < t->n; i++) {
        const topo_dev *d = &t->devs[i];
        if (d->gpu != 0)
            continue;
        /* No shared bridge at all: fall back to the GPU's NUMA node. */
        int match = best > 0 ? common(g, d) == best : (g->numa < 0 || d->numa == g->numa);
        if (match) {
            if (n < max)
                out[n] = d->name;
            n++;
        }
    }
    return n;
}

int topo_distance(const topo *t, const char *gpu_busid, const char *nic)
{
    const topo_dev *g = find_gpu(t, gpu_busid);
    if (!g)
        return -ENOENT;
    for (size_t i = 0; i < t->n; i++) {
        const topo_dev *d = &t->devs[i];
        if (d->gpu == 0 && !strcmp(d->name, nic)) {
            int c = common(g, d); /* depths never exceed TOPO_DEPTH */
            return (g->depth - c) + (d->depth - c);
        }
    }
    return -ENOENT;
}
