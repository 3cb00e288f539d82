/* libmcefa: Mooncake's local topology matrix (topology.h). */
#include "topology.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Output that goes on counting past the end of the buffer, as snprintf. */
typedef struct jbuf {
    char *p;
    size_t len, at;
} jbuf;

static void jputc(jbuf *j, char c)
{
    if (j->at + 1 < j->len)
        j->p[j->at] = c;
    j->at++;
}

static void jputs(jbuf *j, const char *s)
{
    for (; *s; s++)
        jputc(j, *s);
}

static void jstr(jbuf *j, const char *s)
{
    jputc(j, '"');
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            jputc(j, '\\');
            jputc(j, (char)c);
        } else if (c < 0x20) {
            char esc[8];
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            jputs(j, esc);
        } else {
            jputc(j, (char)c);
        }
    }
    jputc(j, '"');
}

/* "dddd:bb:dd.f" or "bb:dd.f", any case (the driver and sysfs differ). */
static bool parse_bus(const char *s, unsigned v[4])
{
    char tail;
    v[0] = 0;
    if (sscanf(s, "%x:%x:%x.%x%c", &v[0], &v[1], &v[2], &v[3], &tail) == 4)
        return true;
    v[0] = 0;
    return sscanf(s, "%x:%x.%x%c", &v[1], &v[2], &v[3], &tail) == 3;
}

static bool same_bus(const char *a, const char *b)
{
    unsigned x[4], y[4];
    return parse_bus(a, x) && parse_bus(b, y) && !memcmp(x, y, sizeof(x));
}

static bool named(const char *filter, const char *name)
{
    size_t l = strlen(name);
    for (const char *p = filter; *p;) {
        const char *e = strchr(p, ',');
        size_t tl = e ? (size_t)(e - p) : strlen(p);
        if (tl == l && !strncmp(p, name, l))
            return true;
        p += tl + (e ? 1 : 0);
    }
    return false;
}

/* One entry: "key":[[NICs with pref set],[the other NICs shown]]. */
static void entry(jbuf *j, const char *key, const Mcefa__DaemonStatus *st, const bool *shown, const bool *pref,
                  bool *first)
{
    if (!*first)
        jputc(j, ',');
    *first = false;
    jstr(j, key);
    jputs(j, ":[");
    for (int want = 1; want >= 0; want--) {
        jputc(j, '[');
        bool f = true;
        for (size_t i = 0; i < st->n_nics; i++) {
            if (!shown[i] || pref[i] != (want == 1))
                continue;
            if (!f)
                jputc(j, ',');
            f = false;
            jstr(j, st->nics[i]->name);
        }
        jputc(j, ']');
        if (want)
            jputc(j, ',');
    }
    jputc(j, ']');
}

static const Mcefa__PciGpu *pci_gpu(const Mcefa__DaemonStatus *st, const char *bus)
{
    for (size_t i = 0; i < st->n_pci_gpus; i++)
        if (st->pci_gpus[i]->bus_id && same_bus(st->pci_gpus[i]->bus_id, bus))
            return st->pci_gpus[i];
    return NULL;
}

/* Mooncake's rule for a GPU: candidates are the shown NICs on its NUMA
 * node, or every shown NIC when none is; the nearest candidates on PCI are
 * preferred. */
static void gpu_prefer(const Mcefa__DaemonStatus *st, const Mcefa__PciGpu *g, const bool *shown, bool *pref)
{
    size_t n = st->n_nics;
    bool local = false;
    for (size_t i = 0; i < n; i++)
        local |= shown[i] && g && g->numa_node >= 0 && st->nics[i]->numa_node == g->numa_node;
    int best = -1;
    for (size_t i = 0; i < n; i++) {
        int d = g && i < g->n_nic_distance ? g->nic_distance[i] : -1;
        bool cand = shown[i] && (!local || st->nics[i]->numa_node == g->numa_node);
        pref[i] = cand && d >= 0; /* narrowed to the nearest below */
        if (pref[i] && (best < 0 || d < best))
            best = d;
    }
    for (size_t i = 0; i < n; i++)
        pref[i] = pref[i] && g->nic_distance[i] == best; /* pref[i] set: g and its distance are there */
}

int client_topology_json(const Mcefa__DaemonStatus *st, const char (*gpus)[CLIENT_BUS_ID_LEN], int ngpus,
                         const char *filter, char *buf, size_t len)
{
    jbuf j = {buf, len, 0};
    size_t n = st->n_nics;
    bool *shown = calloc(n ? n : 1, sizeof(bool)), *pref = calloc(n ? n : 1, sizeof(bool));
    if (!shown || !pref) {
        free(shown);
        free(pref);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        shown[i] = !filter || !*filter || named(filter, st->nics[i]->name) ||
                   (st->nics[i]->domain && named(filter, st->nics[i]->domain));
    bool first = true;
    char key[32];
    jputc(&j, '{');
    for (size_t k = 0; k < st->n_numa_nodes; k++) {
        for (size_t i = 0; i < n; i++)
            pref[i] = st->nics[i]->numa_node == st->numa_nodes[k];
        snprintf(key, sizeof(key), "cpu:%d", st->numa_nodes[k]);
        entry(&j, key, st, shown, pref, &first);
    }
    for (int k = 0; k < ngpus; k++) {
        gpu_prefer(st, pci_gpu(st, gpus[k]), shown, pref);
        snprintf(key, sizeof(key), "cuda:%d", k);
        entry(&j, key, st, shown, pref, &first);
    }
    jputc(&j, '}');
    if (len)
        buf[j.at < len ? j.at : len - 1] = 0;
    free(shown);
    free(pref);
    return j.at > INT_MAX ? -EOVERFLOW : (int)j.at;
}

#define LOCAL_GPUS_MAX 64

int mcefa_local_topology(mcefa_client *c, const char *device_filter, char *buf, size_t len)
{
    if (!c || (!buf && len))
        return client_error(-EINVAL, "mcefa_local_topology: client is NULL, or buf is NULL with len > 0");
    Mcefa__Response *resp;
    int rc = client_status_call(c, &resp);
    if (rc < 0)
        return rc;
    /* This process's ordinals, not the daemon's: cuda:K is what K means here. */
    char ids[LOCAL_GPUS_MAX][CLIENT_BUS_ID_LEN];
    int n = client_gpu_bus_ids(ids, LOCAL_GPUS_MAX);
    rc = client_topology_json(resp->daemon_status, (const char(*)[CLIENT_BUS_ID_LEN])ids,
                              n < LOCAL_GPUS_MAX ? n : LOCAL_GPUS_MAX, device_filter, buf, len);
    mcefa__response__free_unpacked(resp, NULL);
    return rc < 0 ? client_error(rc, "mcefa_local_topology: out of memory") : rc;
}
