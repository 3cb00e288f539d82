/* GPU <-> NIC affinity on the real AWS instance topologies
 * (../shared/topologies, hwloc XML), and from a sysfs tree; and the
 * Mooncake topology matrix libmcefa builds from what the daemon reports
 * (client/topology.c), on those topologies and on made-up ones. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/topology.h"
#include "suite.h"
#include "topo.h"

static char file[512];

static int load(topo *t, const char *name)
{
    const char *src = getenv("MCEFA_SRCDIR");
    snprintf(file, sizeof(file), "%s/../shared/topologies/%s", src && *src ? src : ".", name);
    if (access(file, R_OK) != 0)
        return -ENOENT;
    return topo_load_hwloc_xml(file, t);
}

/* expect: "gpu=nic,nic;gpu=nic..." */
static void check_map(const char *name, int gpus, int nics, const char *keep, const char *expect)
{
    topo t = {0};
    int rc = load(&t, name);
    if (rc == -ENOENT) {
        printf("topology %s: skipped: %s is not there (shared/ folder absent)\n", name, file);
        return;
    }
    ck_assert_int_eq(rc, 0);
    if (keep)
        topo_keep_nics(&t, &keep, 1);
    int ng = 0, nn = 0;
    for (size_t i = 0; i < t.n; i++)
        t.devs[i].gpu ? ng++ : nn++;
    ck_assert_msg(ng == gpus && nn == nics, "%s: %d GPUs, %d NICs", name, ng, nn);
    char buf[2048];
    snprintf(buf, sizeof(buf), "%s", expect);
    for (char *save = NULL, *item = strtok_r(buf, ";", &save); item; item = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(item, '=');
        *eq = 0;
        const char *got[32];
        int n = topo_gpu_nics(&t, item, got, 32);
        int want = 1;
        for (const char *c = eq + 1; *c; c++)
            want += *c == ',';
        ck_assert_msg(n == want, "%s GPU %s: %d NICs, expected %s", name, item, n, eq + 1);
        for (int k = 0; k < n; k++) {
            char needle[80];
            snprintf(needle, sizeof(needle), ",%s,", got[k]);
            char hay[512];
            snprintf(hay, sizeof(hay), ",%s,", eq + 1);
            ck_assert_msg(strstr(hay, needle) != NULL, "%s GPU %s: NIC %s not in %s", name, item, got[k], eq + 1);
        }
    }
    ck_assert_int_eq(topo_gpu_nics(&t, "ff:00.0", NULL, 0), -ENOENT);
    topo_free(&t);
}

START_TEST(p5en)
{
    check_map("p5en.48xlarge.xml", 8, 16, NULL,
              "59:00.0=rdmap85s0,rdmap86s0,rdmap87s0,rdmap88s0;5a:00.0=rdmap85s0,rdmap86s0,rdmap87s0,rdmap88s0;"
              "72:00.0=rdmap110s0,rdmap111s0,rdmap112s0,rdmap113s0;73:00.0=rdmap110s0,rdmap111s0,rdmap112s0,rdmap113s0;"
              "8b:00.0=rdmap135s0,rdmap136s0,rdmap137s0,rdmap138s0;8c:00.0=rdmap135s0,rdmap136s0,rdmap137s0,rdmap138s0;"
              "a4:00.0=rdmap160s0,rdmap161s0,rdmap162s0,rdmap163s0;0000:a5:00.0=rdmap160s0,rdmap161s0,rdmap162s0,rdmap163s0");
}
END_TEST

START_TEST(p6_b200)
{
    /* The two ConnectX-7 IB functions are OpenFabrics devices too (ibp*),
     * under the same switch as GPUs 75/76, as near as the EFAs there... */
    check_map("p6-b200.48xlarge.xml", 8, 10, NULL, "75:00.0=ibp115s0f0,ibp116s0f0,rdmap113s0,rdmap114s0");
    /* ...but the daemon keeps only its EFA NICs. */
    check_map("p6-b200.48xlarge.xml", 8, 8, "rdmap",
              "51:00.0=rdmap79s0,rdmap80s0;52:00.0=rdmap79s0,rdmap80s0;62:00.0=rdmap96s0,rdmap97s0;"
              "63:00.0=rdmap96s0,rdmap97s0;75:00.0=rdmap113s0,rdmap114s0;76:00.0=rdmap113s0,rdmap114s0;"
              "86:00.0=rdmap132s0,rdmap133s0;87:00.0=rdmap132s0,rdmap133s0");
}
END_TEST

START_TEST(p6_b300)
{
    check_map("p6-b300.48xlarge.xml", 8, 16, "rdmap",
              "58:00.0=rdmap86s0,rdmap87s0;67:00.0=rdmap101s0,rdmap102s0;76:00.0=rdmap116s0,rdmap117s0;"
              "85:00.0=rdmap131s0,rdmap132s0;94:00.0=rdmap146s0,rdmap147s0;a3:00.0=rdmap161s0,rdmap162s0;"
              "b2:00.0=rdmap176s0,rdmap177s0;c1:00.0=rdmap191s0,rdmap192s0");
}
END_TEST

START_TEST(p4d)
{
    check_map("p4d.24xlarge.xml", 8, 4, NULL,
              "10:1c.0=rdmap16s27;10:1d.0=rdmap16s27;20:1c.0=rdmap32s27;20:1d.0=rdmap32s27;"
              "90:1c.0=rdmap144s27;90:1d.0=rdmap144s27;a0:1c.0=rdmap160s27;a0:1d.0=rdmap160s27");
}
END_TEST

static void mk(const char *root, const char *rel, const char *content)
{
    char p[1024], cmd[1200];
    snprintf(p, sizeof(p), "%s/%s", root, rel);
    snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname %s)\"", p);
    ck_assert_int_eq(system(cmd), 0);
    if (content) {
        FILE *f = fopen(p, "w");
        fputs(content, f);
        fclose(f);
    }
}

/* A made-up sysfs: one switch with a GPU and an EFA, a second GPU alone on
 * another root port of the same NUMA node, and a NIC on the other node. */
START_TEST(sysfs_tree)
{
    char root[] = "/tmp/mcefa-sysfs-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(root));
    const char *sw = "devices/pci0000:00/0000:00:01.0/0000:01:00.0";
    char p[512], t1[512];
    snprintf(p, sizeof(p), "%s/0000:02:00.0/vendor", sw);
    mk(root, p, "0x10de\n");
    snprintf(p, sizeof(p), "%s/0000:02:00.0/class", sw);
    mk(root, p, "0x030200\n");
    snprintf(p, sizeof(p), "%s/0000:02:00.0/numa_node", sw);
    mk(root, p, "0\n");
    snprintf(p, sizeof(p), "%s/0000:03:00.0/numa_node", sw);
    mk(root, p, "0\n");
    mk(root, "devices/pci0000:00/0000:00:02.0/0000:04:00.0/vendor", "0x10de\n");
    mk(root, "devices/pci0000:00/0000:00:02.0/0000:04:00.0/class", "0x030200\n");
    mk(root, "devices/pci0000:00/0000:00:02.0/0000:04:00.0/numa_node", "0\n");
    mk(root, "devices/pci0000:80/0000:80:01.0/0000:81:00.0/numa_node", "1\n");
    mk(root, "bus/pci/devices/x", NULL);
    mk(root, "class/infiniband/x", NULL);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "cd %s && "
             "ln -s ../../../%s/0000:02:00.0 bus/pci/devices/0000:02:00.0 && "
             "ln -s ../../../devices/pci0000:00/0000:00:02.0/0000:04:00.0 bus/pci/devices/0000:04:00.0 && "
             "mkdir -p class/infiniband/rdmap3s0 class/infiniband/rdmap129s0 && "
             "ln -s ../../../%s/0000:03:00.0 class/infiniband/rdmap3s0/device && "
             "ln -s ../../../devices/pci0000:80/0000:80:01.0/0000:81:00.0 class/infiniband/rdmap129s0/device",
             root, sw, sw);
    ck_assert_int_eq(system(cmd), 0);
    topo t = {0};
    ck_assert_int_eq(topo_load_sysfs(root, &t), 0);
    ck_assert_uint_eq(t.n, 4);
    const char *got[4];
    ck_assert_int_eq(topo_gpu_nics(&t, "0000:02:00.0", got, 4), 1);
    ck_assert_str_eq(got[0], "rdmap3s0"); /* same switch */
    /* The lone GPU shares only the root complex with rdmap3s0: still nearer
     * than the NIC on the other node. */
    ck_assert_int_eq(topo_gpu_nics(&t, "04:00.0", got, 4), 1);
    ck_assert_str_eq(got[0], "rdmap3s0");
    /* Hops up from both sides to the deepest shared bridge. */
    ck_assert_int_eq(topo_distance(&t, "0000:02:00.0", "rdmap3s0"), 0); /* siblings under the switch */
    ck_assert_int_eq(topo_distance(&t, "04:00.0", "rdmap3s0"), 3);      /* 1 up from the GPU, 2 from the NIC */
    ck_assert_int_eq(topo_distance(&t, "04:00.0", "rdmap129s0"), 4);    /* other root complex: all the way */
    ck_assert_int_eq(t.nnuma, 0); /* the tree has no devices/system/node */
    topo_free(&t);
    snprintf(t1, sizeof(t1), "rm -rf %s", root);
    ck_assert_int_eq(system(t1), 0);
}
END_TEST

START_TEST(bad_files)
{
    topo t = {0};
    ck_assert_int_lt(topo_load_hwloc_xml("/nonexistent.xml", &t), 0);
    char f[] = "/tmp/mcefa-topo-XXXXXX";
    int fd = mkstemp(f);
    const char *junk = "<topology></object></object><object type=\"Bridge\"";
    ck_assert_int_eq(write(fd, junk, strlen(junk)), (ssize_t)strlen(junk));
    close(fd);
    ck_assert_int_lt(topo_load_hwloc_xml(f, &t), 0);
    topo_free(&t);
    unlink(f);
    /* From a pipe, as `--print-topology=<(lstopo --of xml)` gives it. */
    const char *src = getenv("MCEFA_SRCDIR");
    char cmd[600], path[64];
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    snprintf(cmd, sizeof(cmd), "cat %s/../shared/topologies/p4d.24xlarge.xml >&%d; exec %d>&-", src ? src : ".",
             pfd[1], pfd[1]);
    snprintf(path, sizeof(path), "/dev/fd/%d", pfd[0]);
    if (fork() == 0) {
        close(pfd[0]);
        _exit(system(cmd) ? 1 : 0);
    }
    close(pfd[1]);
    int rc = topo_load_hwloc_xml(path, &t);
    close(pfd[0]);
    wait(NULL);
    if (rc == -ENOENT || t.n == 0) {
        printf("bad_files: pipe part skipped: shared topologies not present\n");
    } else {
        ck_assert_int_eq(rc, 0);
        ck_assert_uint_eq(t.n, 12); /* 8 GPUs, 4 NICs */
    }
    topo_free(&t);
}
END_TEST


/* ---- The Mooncake matrix ----------------------------------------------- */

/* What the daemon would report for topology t with its NICs named as in
 * t (affinity.c, rpc_admin.c): NICs, NUMA nodes, GPUs with distances.
 * gpus gets the GPUs' bus ids in t's order, as a process seeing them all
 * would number them. */
typedef struct fake_status {
    Mcefa__DaemonStatus st;
    Mcefa__NicInfo nic[64], *nicp[64];
    Mcefa__PciGpu gpu[64], *gpup[64];
    int32_t dist[64][64];
    int32_t numa[TOPO_NUMA_MAX];
    char ids[64][CLIENT_BUS_ID_LEN];
    int nids;
} fake_status;

static void fake_from_topo(fake_status *f, const topo *t)
{
    memset(f, 0, sizeof(*f));
    mcefa__daemon_status__init(&f->st);
    for (size_t i = 0; i < t->n; i++)
        if (!t->devs[i].gpu) {
            Mcefa__NicInfo *n = &f->nic[f->st.n_nics];
            mcefa__nic_info__init(n);
            n->name = (char *)t->devs[i].name;
            n->numa_node = t->devs[i].numa;
            f->nicp[f->st.n_nics++] = n;
        }
    for (size_t i = 0; i < t->n; i++)
        if (t->devs[i].gpu) {
            Mcefa__PciGpu *g = &f->gpu[f->st.n_pci_gpus];
            mcefa__pci_gpu__init(g);
            g->bus_id = (char *)t->devs[i].busid;
            g->numa_node = t->devs[i].numa;
            g->nic_distance = f->dist[f->st.n_pci_gpus];
            for (size_t k = 0; k < f->st.n_nics; k++) {
                int d = topo_distance(t, t->devs[i].busid, f->nic[k].name);
                ck_assert_int_ge(d, 0); /* every NIC of an hwloc export has a PCI place */
                g->nic_distance[g->n_nic_distance++] = d;
            }
            snprintf(f->ids[f->nids++], CLIENT_BUS_ID_LEN, "%s", t->devs[i].busid);
            f->gpup[f->st.n_pci_gpus++] = g;
        }
    for (int i = 0; i < t->nnuma; i++)
        f->numa[i] = t->numa_nodes[i];
    f->st.numa_nodes = f->numa;
    f->st.n_numa_nodes = (size_t)t->nnuma;
    f->st.nics = f->nicp;
    f->st.pci_gpus = f->gpup;
}

static char json[65536];

static const char *matrix(const fake_status *f, const char *filter)
{
    int n = client_topology_json(&f->st, (const char(*)[CLIENT_BUS_ID_LEN])f->ids, f->nids, filter, json,
                                 sizeof(json));
    ck_assert_int_ge(n, 0);
    ck_assert_int_lt(n, (int)sizeof(json));
    ck_assert_int_eq((int)strlen(json), n);
    return json;
}

/* The preferred (which=0) or other (which=1) list of key, as written:
 * "a","b". */
static const char *list_of(const char *js, const char *key, int which)
{
    static char out[4096];
    char needle[64];
    snprintf(needle, sizeof(needle), "\"%s\":[[", key);
    const char *p = strstr(js, needle);
    ck_assert_msg(p != NULL, "no %s in %s", key, js);
    p += strlen(needle);
    if (which == 1) {
        p = strstr(p, "],[");
        ck_assert_ptr_nonnull(p);
        p += 3;
    }
    const char *e = strchr(p, ']');
    ck_assert_ptr_nonnull(e);
    snprintf(out, sizeof(out), "%.*s", (int)(e - p), p);
    return out;
}

/* On each real topology every GPU prefers exactly the NICs topo_gpu_nics
 * calls nearest (the daemon's own placement), and each NUMA node its own
 * NICs. */
static void matrix_on(const char *name, const char *keep, int nodes)
{
    topo t = {0};
    int rc = load(&t, name);
    if (rc == -ENOENT) {
        printf("matrix %s: skipped: %s is not there (shared/ folder absent)\n", name, file);
        return;
    }
    ck_assert_int_eq(rc, 0);
    if (keep)
        topo_keep_nics(&t, &keep, 1);
    ck_assert_int_eq(t.nnuma, nodes);
    static fake_status f;
    fake_from_topo(&f, &t);
    const char *js = matrix(&f, NULL);
    for (int k = 0; k < f.nids; k++) {
        const char *near[64];
        int n = topo_gpu_nics(&t, f.ids[k], near, 64);
        char want[4096] = "", key[16];
        for (size_t i = 0; i < f.st.n_nics; i++)
            for (int j = 0; j < n; j++)
                if (!strcmp(near[j], f.nic[i].name))
                    snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s\"%s\"", *want ? "," : "",
                             f.nic[i].name);
        snprintf(key, sizeof(key), "cuda:%d", k);
        ck_assert_msg(!strcmp(list_of(js, key, 0), want), "%s %s (%s): prefers [%s], nearest [%s]", name, key,
                      f.ids[k], list_of(js, key, 0), want);
    }
    for (int k = 0; k < t.nnuma; k++) {
        char want[4096] = "", other[4096] = "", key[16];
        for (size_t i = 0; i < f.st.n_nics; i++) {
            char *w = f.nic[i].numa_node == t.numa_nodes[k] ? want : other;
            snprintf(w + strlen(w), 4096 - strlen(w), "%s\"%s\"", *w ? "," : "", f.nic[i].name);
        }
        snprintf(key, sizeof(key), "cpu:%d", t.numa_nodes[k]);
        ck_assert_str_eq(list_of(js, key, 0), want);
        ck_assert_str_eq(list_of(js, key, 1), other);
    }
    topo_free(&t);
}

START_TEST(matrix_on_aws_topologies)
{
    matrix_on("p5en.48xlarge.xml", NULL, 2);
    matrix_on("p6-b200.48xlarge.xml", "rdmap", 2);
    matrix_on("p6-b300.48xlarge.xml", "rdmap", 2);
    matrix_on("p4d.24xlarge.xml", NULL, 2);
}
END_TEST

/* p5en in detail: a GPU prefers the four EFAs of its PCIe switch (the
 * switch holds two GPUs and four EFAs: PCI does not split them further),
 * the NUMA node's other four come next among "others"; a filter narrows
 * both lists and preference is recomputed among what is left. */
START_TEST(matrix_p5en_filter)
{
    topo t = {0};
    int rc = load(&t, "p5en.48xlarge.xml");
    if (rc == -ENOENT) {
        printf("matrix_p5en_filter: skipped: %s is not there\n", file);
        return;
    }
    ck_assert_int_eq(rc, 0);
    static fake_status f;
    fake_from_topo(&f, &t);
    ck_assert_str_eq(f.ids[0], "0000:59:00.0");
    ck_assert_str_eq(f.ids[4], "0000:8b:00.0");
    const char *js = matrix(&f, NULL);
    ck_assert_str_eq(list_of(js, "cuda:0", 0), "\"rdmap85s0\",\"rdmap86s0\",\"rdmap87s0\",\"rdmap88s0\"");
    ck_assert_ptr_nonnull(strstr(list_of(js, "cuda:0", 1), "\"rdmap110s0\""));
    /* Farther on PCI across the host: the same switch beats the node's other switch. */
    ck_assert_int_eq(topo_distance(&t, "59:00.0", "rdmap85s0"), 2); /* one port up from each to the switch */
    ck_assert_int_lt(topo_distance(&t, "59:00.0", "rdmap85s0"), topo_distance(&t, "59:00.0", "rdmap110s0"));
    ck_assert_int_eq(topo_distance(&t, "59:00.0", "nosuch0"), -ENOENT);
    ck_assert_int_eq(topo_distance(&t, "ff:00.0", "rdmap85s0"), -ENOENT);
    /* One NIC per node left: each GPU prefers its node's. */
    js = matrix(&f, "rdmap85s0,rdmap135s0");
    ck_assert_str_eq(list_of(js, "cuda:0", 0), "\"rdmap85s0\"");
    ck_assert_str_eq(list_of(js, "cuda:0", 1), "\"rdmap135s0\"");
    ck_assert_str_eq(list_of(js, "cuda:4", 0), "\"rdmap135s0\"");
    ck_assert_str_eq(list_of(js, "cuda:4", 1), "\"rdmap85s0\"");
    ck_assert_str_eq(list_of(js, "cpu:1", 0), "\"rdmap135s0\"");
    ck_assert_ptr_null(strstr(js, "rdmap86s0"));
    /* Only NICs of the other node: the nearest of those, by PCI. */
    js = matrix(&f, "rdmap135s0,rdmap160s0");
    ck_assert_str_eq(list_of(js, "cuda:0", 0), "\"rdmap135s0\",\"rdmap160s0\"");
    ck_assert_str_eq(list_of(js, "cuda:0", 1), "");
    ck_assert_str_eq(list_of(js, "cpu:0", 0), "");
    /* A name that is no NIC: every list empty, every key still there. */
    js = matrix(&f, "mlx5_0");
    ck_assert_str_eq(list_of(js, "cuda:7", 0), "");
    ck_assert_str_eq(list_of(js, "cpu:1", 1), "");
    topo_free(&t);
}
END_TEST

/* The rules where facts are missing, the NIC names' escaping and a buffer
 * too small, on a made-up report. */
START_TEST(matrix_edges)
{
    Mcefa__NicInfo a = MCEFA__NIC_INFO__INIT, b = MCEFA__NIC_INFO__INIT, c = MCEFA__NIC_INFO__INIT;
    a.name = "lo";
    a.domain = "lo";
    a.numa_node = -1;
    b.name = "rdmap1s0";
    b.domain = "rdmap1s0-rdm";
    b.numa_node = 1;
    c.name = "we\"ird";
    c.domain = "";
    c.numa_node = 0;
    Mcefa__NicInfo *nics[] = {&a, &b, &c};
    int32_t d0[] = {-1, 5, 3}; /* a GPU on node 0 */
    int32_t d1[] = {2, -1, 4}; /* a GPU of unknown node */
    Mcefa__PciGpu g0 = MCEFA__PCI_GPU__INIT, g1 = MCEFA__PCI_GPU__INIT;
    g0.bus_id = "0000:18:00.0";
    g0.numa_node = 0;
    g0.nic_distance = d0;
    g0.n_nic_distance = 3;
    g1.bus_id = "0000:a8:00.0";
    g1.numa_node = -1;
    g1.nic_distance = d1;
    g1.n_nic_distance = 3;
    Mcefa__PciGpu *gpus[] = {&g0, &g1};
    int32_t nodes[] = {0, 1};
    Mcefa__DaemonStatus st = MCEFA__DAEMON_STATUS__INIT;
    st.nics = nics;
    st.n_nics = 3;
    st.pci_gpus = gpus;
    st.n_pci_gpus = 2;
    st.numa_nodes = nodes;
    st.n_numa_nodes = 2;
    /* This process sees the GPUs the other way round, one written in
     * capitals without a domain, and one the daemon does not list. */
    char ids[3][CLIENT_BUS_ID_LEN] = {"A8:00.0", "0000:18:00.0", "0000:99:00.0"};
    int n = client_topology_json(&st, (const char(*)[CLIENT_BUS_ID_LEN])ids, 3, NULL, json, sizeof(json));
    ck_assert_int_eq(n, (int)strlen(json));
    ck_assert_str_eq(json, "{\"cpu:0\":[[\"we\\\"ird\"],[\"lo\",\"rdmap1s0\"]],"
                           "\"cpu:1\":[[\"rdmap1s0\"],[\"lo\",\"we\\\"ird\"]],"
                           /* unknown node: every NIC a candidate, the nearest known one wins */
                           "\"cuda:0\":[[\"lo\"],[\"rdmap1s0\",\"we\\\"ird\"]],"
                           /* node 0 has a NIC: only it is a candidate */
                           "\"cuda:1\":[[\"we\\\"ird\"],[\"lo\",\"rdmap1s0\"]],"
                           /* not on the daemon's PCI bus: prefers none */
                           "\"cuda:2\":[[],[\"lo\",\"rdmap1s0\",\"we\\\"ird\"]]}");
    /* A local NIC of unknown distance is not preferred; and a filter by
     * domain name keeps the NIC under its device name. */
    d0[2] = -1;
    n = client_topology_json(&st, (const char(*)[CLIENT_BUS_ID_LEN])ids, 2, "rdmap1s0-rdm,we\"ird", json,
                             sizeof(json));
    ck_assert_str_eq(json, "{\"cpu:0\":[[\"we\\\"ird\"],[\"rdmap1s0\"]],\"cpu:1\":[[\"rdmap1s0\"],[\"we\\\"ird\"]],"
                           "\"cuda:0\":[[\"we\\\"ird\"],[\"rdmap1s0\"]],\"cuda:1\":[[],[\"rdmap1s0\",\"we\\\"ird\"]]}");
    /* Too small a buffer: cut and NUL-terminated, the whole length told. */
    int whole = client_topology_json(&st, NULL, 0, NULL, json, sizeof(json));
    ck_assert_int_eq(whole, (int)strlen(json));
    char small[10];
    ck_assert_int_eq(client_topology_json(&st, NULL, 0, NULL, small, sizeof(small)), whole);
    ck_assert_str_eq(small, "{\"cpu:0\":");
    /* No NUMA node, no GPU: an empty object, as Mooncake gives on a host
     * it cannot read. */
    st.n_numa_nodes = 0;
    ck_assert_int_eq(client_topology_json(&st, NULL, 0, NULL, json, sizeof(json)), 2);
    ck_assert_str_eq(json, "{}");
}
END_TEST

/* Where the setting points: a directory is a sysfs tree (its NUMA nodes
 * too), a file an hwloc export, a missing path an error. */
START_TEST(load_setting)
{
    char root[] = "/tmp/mcefa-sysfs-XXXXXX", sys[512];
    ck_assert_ptr_nonnull(mkdtemp(root));
    mk(root, "devices/system/node/node0/cpulist", "0-3\n");
    mk(root, "devices/system/node/node3/cpulist", "4-7\n");
    mk(root, "devices/system/node/possible", "0,3\n");
    mk(root, "devices/system/node/nodeX/junk", NULL);
    topo t = {0};
    ck_assert_int_eq(topo_load_setting(root, &t, sys, sizeof(sys)), 0); /* no PCI devices: no error */
    ck_assert_str_eq(sys, root);
    ck_assert_int_eq(t.nnuma, 2);
    ck_assert_int_eq(t.numa_nodes[0], 0);
    ck_assert_int_eq(t.numa_nodes[1], 3);
    ck_assert_uint_eq(t.n, 0);
    topo_free(&t);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(topo_load_setting("/nonexistent/topology", &t, sys, sizeof(sys)), -ENOENT);
    topo_free(&t);
    if (load(&t, "p4d.24xlarge.xml") == -ENOENT) {
        printf("load_setting: hwloc part skipped: shared topologies not present\n");
        return;
    }
    topo_free(&t);
    ck_assert_int_eq(topo_load_setting(file, &t, sys, sizeof(sys)), 0);
    ck_assert_str_eq(sys, "/sys");
    ck_assert_uint_eq(t.n, 12);
    ck_assert_int_eq(t.nnuma, 2);
    topo_free(&t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("topo");
    TCase *tc = tcase_create("affinity");
    tcase_add_test(tc, p5en);
    tcase_add_test(tc, p6_b200);
    tcase_add_test(tc, p6_b300);
    tcase_add_test(tc, p4d);
    tcase_add_test(tc, sysfs_tree);
    tcase_add_test(tc, bad_files);
    tcase_add_test(tc, load_setting);
    suite_add_tcase(s, tc);
    TCase *mm = tcase_create("mooncake-matrix");
    tcase_add_test(mm, matrix_on_aws_topologies);
    tcase_add_test(mm, matrix_p5en_filter);
    tcase_add_test(mm, matrix_edges);
    suite_add_tcase(s, mm);
    return run_suite(s);
}
