/* GPU <-> NIC affinity on the real AWS instance topologies
 * (../shared/topologies, hwloc XML), from made-up sysfs trees read the way
 * hwloc reads a host's, and from this host; and the
 * Mooncake topology matrix libmcefa builds from what the daemon reports
 * (client/topology.c), on those topologies and on made-up ones. */
#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
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

/* The named topology with only the NICs whose names start with keep (all
 * when NULL); false, and said, when the shared folder is absent. */
static bool load_or_skip(topo *t, const char *name, const char *keep, const char *who)
{
    int rc = load(t, name);
    if (rc == -ENOENT) {
        printf("%s %s: skipped: %s is not there (shared/ folder absent)\n", who, name, file);
        return false;
    }
    ck_assert_int_eq(rc, 0);
    if (keep)
        topo_keep_nics(t, &keep, 1);
    return true;
}

/* expect: "gpu=nic,nic;gpu=nic..." */
static void check_map(const char *name, int gpus, int nics, const char *keep, const char *expect)
{
    topo t = {0};
    if (!load_or_skip(&t, name, keep, "topology"))
        return;
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

/* A GPU's whole NIC order, tiers (PCIe-local, NUMA-local, the rest)
 * parted by " | ", each a run of "HOPS: nic nic" per hop count. */
static const char *order_of(const topo *t, const char *gpu)
{
    static char s[4096];
    topo_choice c[64];
    int n = topo_gpu_nic_order(t, gpu, c, 64);
    ck_assert_msg(n >= 0 && n <= 64, "GPU %s: %d NICs", gpu, n);
    s[0] = 0;
    int k = 0;
    for (int tier = TOPO_PCIE; tier <= TOPO_REMOTE; tier++) {
        if (tier != TOPO_PCIE)
            snprintf(s + strlen(s), sizeof(s) - strlen(s), " |");
        for (int first = k; k < n && (int)c[k].tier == tier; k++) {
            if (k == first || c[k].hops != c[k - 1].hops)
                snprintf(s + strlen(s), sizeof(s) - strlen(s), " %d:", c[k].hops);
            snprintf(s + strlen(s), sizeof(s) - strlen(s), " %s", c[k].nic);
        }
    }
    ck_assert_int_eq(k, n); /* tiers ascending */
    return s[0] == ' ' ? s + 1 : s;
}

/* expect: "gpu=order;gpu=order" (order as order_of writes it). */
static void check_orders(const char *name, const char *keep, const char *expect)
{
    topo t = {0};
    if (!load_or_skip(&t, name, keep, "order"))
        return;
    char buf[8192];
    snprintf(buf, sizeof(buf), "%s", expect);
    int gpus = 0;
    for (char *save = NULL, *item = strtok_r(buf, ";", &save); item; item = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(item, '=');
        *eq = 0;
        ck_assert_msg(!strcmp(order_of(&t, item), eq + 1), "%s GPU %s:\n got  %s\n want %s", name, item,
                      order_of(&t, item), eq + 1);
        gpus++;
    }
    /* Every GPU of the topology is asserted. */
    for (size_t i = 0; i < t.n; i++)
        gpus -= t.devs[i].gpu;
    ck_assert_int_eq(gpus, 0);
    ck_assert_int_eq(topo_gpu_nic_order(&t, "ff:00.0", NULL, 0), -ENOENT);
    topo_free(&t);
}

/* p5en's four PCIe switches, each holding two GPUs and four EFAs. */
#define P5EN_45 "rdmap85s0 rdmap86s0 rdmap87s0 rdmap88s0"
#define P5EN_5E "rdmap110s0 rdmap111s0 rdmap112s0 rdmap113s0"
#define P5EN_77 "rdmap135s0 rdmap136s0 rdmap137s0 rdmap138s0"
#define P5EN_90 "rdmap160s0 rdmap161s0 rdmap162s0 rdmap163s0"

START_TEST(p5en)
{
    check_map("p5en.48xlarge.xml", 8, 16, NULL,
              "59:00.0=rdmap85s0,rdmap86s0,rdmap87s0,rdmap88s0;5a:00.0=rdmap85s0,rdmap86s0,rdmap87s0,rdmap88s0;"
              "72:00.0=rdmap110s0,rdmap111s0,rdmap112s0,rdmap113s0;73:00.0=rdmap110s0,rdmap111s0,rdmap112s0,rdmap113s0;"
              "8b:00.0=rdmap135s0,rdmap136s0,rdmap137s0,rdmap138s0;8c:00.0=rdmap135s0,rdmap136s0,rdmap137s0,rdmap138s0;"
              "a4:00.0=rdmap160s0,rdmap161s0,rdmap162s0,rdmap163s0;0000:a5:00.0=rdmap160s0,rdmap161s0,rdmap162s0,rdmap163s0");
    /* Every GPU's own NICs are its switch's four, each on its own
     * downstream port: two hops (up to the switch, down to the NIC) from
     * either of the switch's two GPUs. PCI does not split the four
     * between the two GPUs, so both get all four, in the same order (a
     * split would be a policy on top, not a fact of the topology). Next
     * the NUMA node's other switch, then the other node's NICs: eight
     * hops across the host bridges either way. */
    check_orders("p5en.48xlarge.xml", NULL,
                 "59:00.0=2: " P5EN_45 " | 8: " P5EN_5E " | 8: " P5EN_77 " " P5EN_90 ";"
                 "5a:00.0=2: " P5EN_45 " | 8: " P5EN_5E " | 8: " P5EN_77 " " P5EN_90 ";"
                 "72:00.0=2: " P5EN_5E " | 8: " P5EN_45 " | 8: " P5EN_77 " " P5EN_90 ";"
                 "73:00.0=2: " P5EN_5E " | 8: " P5EN_45 " | 8: " P5EN_77 " " P5EN_90 ";"
                 "8b:00.0=2: " P5EN_77 " | 8: " P5EN_90 " | 8: " P5EN_45 " " P5EN_5E ";"
                 "8c:00.0=2: " P5EN_77 " | 8: " P5EN_90 " | 8: " P5EN_45 " " P5EN_5E ";"
                 "a4:00.0=2: " P5EN_90 " | 8: " P5EN_77 " | 8: " P5EN_45 " " P5EN_5E ";"
                 "a5:00.0=2: " P5EN_90 " | 8: " P5EN_77 " | 8: " P5EN_45 " " P5EN_5E);
}
END_TEST

#define B200_45 "rdmap79s0 rdmap80s0"
#define B200_56 "rdmap96s0 rdmap97s0"
#define B200_67 "rdmap113s0 rdmap114s0"
#define B200_7A "rdmap132s0 rdmap133s0"
#define B200_IB "ibp115s0f0 ibp116s0f0"

START_TEST(p6_b200)
{
    /* The two ConnectX-7 IB functions are OpenFabrics devices too (ibp*),
     * under the same switch as GPUs 75/76, as near as the EFAs there... */
    check_map("p6-b200.48xlarge.xml", 8, 10, NULL, "75:00.0=ibp115s0f0,ibp116s0f0,rdmap113s0,rdmap114s0");
    check_orders("p6-b200.48xlarge.xml", NULL,
                 "51:00.0=2: " B200_45 " | 8: " B200_56 " | 8: " B200_67 " " B200_IB " " B200_7A ";"
                 "52:00.0=2: " B200_45 " | 8: " B200_56 " | 8: " B200_67 " " B200_IB " " B200_7A ";"
                 "62:00.0=2: " B200_56 " | 8: " B200_45 " | 8: " B200_67 " " B200_IB " " B200_7A ";"
                 "63:00.0=2: " B200_56 " | 8: " B200_45 " | 8: " B200_67 " " B200_IB " " B200_7A ";"
                 "75:00.0=2: " B200_67 " " B200_IB " | 8: " B200_7A " | 8: " B200_45 " " B200_56 ";"
                 "76:00.0=2: " B200_67 " " B200_IB " | 8: " B200_7A " | 8: " B200_45 " " B200_56 ";"
                 "86:00.0=2: " B200_7A " | 8: " B200_67 " " B200_IB " | 8: " B200_45 " " B200_56 ";"
                 "87:00.0=2: " B200_7A " | 8: " B200_67 " " B200_IB " | 8: " B200_45 " " B200_56);
    /* ...but the daemon keeps only its EFA NICs: two per switch, two GPUs
     * per switch, as on p5en. */
    check_map("p6-b200.48xlarge.xml", 8, 8, "rdmap",
              "51:00.0=rdmap79s0,rdmap80s0;52:00.0=rdmap79s0,rdmap80s0;62:00.0=rdmap96s0,rdmap97s0;"
              "63:00.0=rdmap96s0,rdmap97s0;75:00.0=rdmap113s0,rdmap114s0;76:00.0=rdmap113s0,rdmap114s0;"
              "86:00.0=rdmap132s0,rdmap133s0;87:00.0=rdmap132s0,rdmap133s0");
    check_orders("p6-b200.48xlarge.xml", "rdmap",
                 "51:00.0=2: " B200_45 " | 8: " B200_56 " | 8: " B200_67 " " B200_7A ";"
                 "52:00.0=2: " B200_45 " | 8: " B200_56 " | 8: " B200_67 " " B200_7A ";"
                 "62:00.0=2: " B200_56 " | 8: " B200_45 " | 8: " B200_67 " " B200_7A ";"
                 "63:00.0=2: " B200_56 " | 8: " B200_45 " | 8: " B200_67 " " B200_7A ";"
                 "75:00.0=2: " B200_67 " | 8: " B200_7A " | 8: " B200_45 " " B200_56 ";"
                 "76:00.0=2: " B200_67 " | 8: " B200_7A " | 8: " B200_45 " " B200_56 ";"
                 "86:00.0=2: " B200_7A " | 8: " B200_67 " | 8: " B200_45 " " B200_56 ";"
                 "87:00.0=2: " B200_7A " | 8: " B200_67 " | 8: " B200_45 " " B200_56);
}
END_TEST

/* p6-b300: a switch per GPU, with two EFAs; four switches per node. */
#define B300_4C "rdmap86s0 rdmap87s0"
#define B300_5B "rdmap101s0 rdmap102s0"
#define B300_6A "rdmap116s0 rdmap117s0"
#define B300_79 "rdmap131s0 rdmap132s0"
#define B300_88 "rdmap146s0 rdmap147s0"
#define B300_97 "rdmap161s0 rdmap162s0"
#define B300_A6 "rdmap176s0 rdmap177s0"
#define B300_B5 "rdmap191s0 rdmap192s0"
#define B300_N0 B300_4C " " B300_5B " " B300_6A " " B300_79
#define B300_N1 B300_88 " " B300_97 " " B300_A6 " " B300_B5

START_TEST(p6_b300)
{
    check_map("p6-b300.48xlarge.xml", 8, 16, "rdmap",
              "58:00.0=rdmap86s0,rdmap87s0;67:00.0=rdmap101s0,rdmap102s0;76:00.0=rdmap116s0,rdmap117s0;"
              "85:00.0=rdmap131s0,rdmap132s0;94:00.0=rdmap146s0,rdmap147s0;a3:00.0=rdmap161s0,rdmap162s0;"
              "b2:00.0=rdmap176s0,rdmap177s0;c1:00.0=rdmap191s0,rdmap192s0");
    check_orders("p6-b300.48xlarge.xml", "rdmap",
                 "58:00.0=2: " B300_4C " | 8: " B300_5B " " B300_6A " " B300_79 " | 8: " B300_N1 ";"
                 "67:00.0=2: " B300_5B " | 8: " B300_4C " " B300_6A " " B300_79 " | 8: " B300_N1 ";"
                 "76:00.0=2: " B300_6A " | 8: " B300_4C " " B300_5B " " B300_79 " | 8: " B300_N1 ";"
                 "85:00.0=2: " B300_79 " | 8: " B300_4C " " B300_5B " " B300_6A " | 8: " B300_N1 ";"
                 "94:00.0=2: " B300_88 " | 8: " B300_97 " " B300_A6 " " B300_B5 " | 8: " B300_N0 ";"
                 "a3:00.0=2: " B300_97 " | 8: " B300_88 " " B300_A6 " " B300_B5 " | 8: " B300_N0 ";"
                 "b2:00.0=2: " B300_A6 " | 8: " B300_88 " " B300_97 " " B300_B5 " | 8: " B300_N0 ";"
                 "c1:00.0=2: " B300_B5 " | 8: " B300_88 " " B300_97 " " B300_A6 " | 8: " B300_N0);
    /* The IB pair has a switch of its own on node 1: NUMA-local there. */
    check_orders("p6-b300.48xlarge.xml", "ibp",
                 "58:00.0=| | 8: ibp198s0f0 ibp199s0f0;67:00.0=| | 8: ibp198s0f0 ibp199s0f0;"
                 "76:00.0=| | 8: ibp198s0f0 ibp199s0f0;85:00.0=| | 8: ibp198s0f0 ibp199s0f0;"
                 "94:00.0=| 8: ibp198s0f0 ibp199s0f0 |;a3:00.0=| 8: ibp198s0f0 ibp199s0f0 |;"
                 "b2:00.0=| 8: ibp198s0f0 ibp199s0f0 |;c1:00.0=| 8: ibp198s0f0 ibp199s0f0 |");
}
END_TEST

/* expect: "gpu=nic,nic;gpu=nic..." in order: the NICs each GPU's memory
 * is placed on (topo_gpu_own_nics), every GPU of the topology named; and
 * no NIC serves two GPUs unless there are more GPUs than NICs. */
static void check_own(const char *name, const char *keep, const char *expect)
{
    topo t = {0};
    if (!load_or_skip(&t, name, keep, "own NICs"))
        return;
    char buf[2048];
    snprintf(buf, sizeof(buf), "%s", expect);
    int gpus = 0;
    for (char *save = NULL, *item = strtok_r(buf, ";", &save); item; item = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(item, '=');
        *eq = 0;
        const char *got[16];
        int n = topo_gpu_own_nics(&t, item, got, 16);
        char list[512] = "";
        for (int k = 0; k < n && k < 16; k++)
            snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", k ? "," : "", got[k]);
        ck_assert_msg(!strcmp(list, eq + 1), "%s GPU %s: own NICs %s, expected %s", name, item, list, eq + 1);
        gpus++;
    }
    for (size_t i = 0; i < t.n; i++)
        gpus -= t.devs[i].gpu;
    ck_assert_int_eq(gpus, 0);
    ck_assert_int_eq(topo_gpu_own_nics(&t, "ff:00.0", NULL, 0), -ENOENT);
    /* max bounds what is written, not what is counted. */
    const char *one[1];
    ck_assert_int_ge(topo_gpu_own_nics(&t, t.devs[0].busid, one, t.devs[0].gpu ? 1 : 0), t.devs[0].gpu ? 1 : -ENOENT);
    topo_free(&t);
}

/* Where GPU memory goes (nic registration, transfers' local NIC): on p5en
 * and p6-b200 a switch's two GPUs split its NICs, two each (the GPU with
 * the lower bus id the first two); p6-b300 has a switch per GPU already;
 * p4d's two GPUs per host bridge share its one EFA. */
START_TEST(own_nics)
{
    check_own("p5en.48xlarge.xml", NULL,
              "59:00.0=rdmap85s0,rdmap86s0;5a:00.0=rdmap87s0,rdmap88s0;72:00.0=rdmap110s0,rdmap111s0;"
              "73:00.0=rdmap112s0,rdmap113s0;8b:00.0=rdmap135s0,rdmap136s0;8c:00.0=rdmap137s0,rdmap138s0;"
              "a4:00.0=rdmap160s0,rdmap161s0;a5:00.0=rdmap162s0,rdmap163s0");
    check_own("p6-b200.48xlarge.xml", "rdmap",
              "51:00.0=rdmap79s0;52:00.0=rdmap80s0;62:00.0=rdmap96s0;63:00.0=rdmap97s0;75:00.0=rdmap113s0;"
              "76:00.0=rdmap114s0;86:00.0=rdmap132s0;87:00.0=rdmap133s0");
    check_own("p6-b300.48xlarge.xml", "rdmap",
              "58:00.0=rdmap86s0,rdmap87s0;67:00.0=rdmap101s0,rdmap102s0;76:00.0=rdmap116s0,rdmap117s0;"
              "85:00.0=rdmap131s0,rdmap132s0;94:00.0=rdmap146s0,rdmap147s0;a3:00.0=rdmap161s0,rdmap162s0;"
              "b2:00.0=rdmap176s0,rdmap177s0;c1:00.0=rdmap191s0,rdmap192s0");
    check_own("p4d.24xlarge.xml", NULL,
              "10:1c.0=rdmap16s27;10:1d.0=rdmap16s27;20:1c.0=rdmap32s27;20:1d.0=rdmap32s27;"
              "90:1c.0=rdmap144s27;90:1d.0=rdmap144s27;a0:1c.0=rdmap160s27;a0:1d.0=rdmap160s27");
}
END_TEST

/* The daemon's own NICs by exact name: a prefix keeps its namesakes
 * (rdmap8 would keep rdmap85s0..rdmap88s0), a name only itself; and the
 * GPUs of a switch then share what is left of it. */
START_TEST(keep_named)
{
    topo t = {0};
    if (!load_or_skip(&t, "p5en.48xlarge.xml", NULL, "keep_named"))
        return;
    const char *names[] = {"rdmap8", "rdmap86s0", "rdmap87s0"};
    topo_keep_named(&t, names, 3);
    int nics = 0;
    for (size_t i = 0; i < t.n; i++)
        nics += !t.devs[i].gpu;
    ck_assert_int_eq(nics, 2);
    const char *got[4];
    ck_assert_int_eq(topo_gpu_own_nics(&t, "59:00.0", got, 4), 1);
    ck_assert_str_eq(got[0], "rdmap86s0");
    ck_assert_int_eq(topo_gpu_own_nics(&t, "5a:00.0", got, 4), 1);
    ck_assert_str_eq(got[0], "rdmap87s0");
    topo_free(&t);
}
END_TEST

START_TEST(p4d)
{
    check_map("p4d.24xlarge.xml", 8, 4, NULL,
              "10:1c.0=rdmap16s27;10:1d.0=rdmap16s27;20:1c.0=rdmap32s27;20:1d.0=rdmap32s27;"
              "90:1c.0=rdmap144s27;90:1d.0=rdmap144s27;a0:1c.0=rdmap160s27;a0:1d.0=rdmap160s27");
    /* No switch is visible: GPUs and EFA sit right under their host
     * bridge (no hop), the node's other host bridge is one up and one
     * down. */
    check_orders("p4d.24xlarge.xml", NULL,
                 "10:1c.0=0: rdmap16s27 | 2: rdmap32s27 | 2: rdmap144s27 rdmap160s27;"
                 "10:1d.0=0: rdmap16s27 | 2: rdmap32s27 | 2: rdmap144s27 rdmap160s27;"
                 "20:1c.0=0: rdmap32s27 | 2: rdmap16s27 | 2: rdmap144s27 rdmap160s27;"
                 "20:1d.0=0: rdmap32s27 | 2: rdmap16s27 | 2: rdmap144s27 rdmap160s27;"
                 "90:1c.0=0: rdmap144s27 | 2: rdmap160s27 | 2: rdmap16s27 rdmap32s27;"
                 "90:1d.0=0: rdmap144s27 | 2: rdmap160s27 | 2: rdmap16s27 rdmap32s27;"
                 "a0:1c.0=0: rdmap160s27 | 2: rdmap144s27 | 2: rdmap16s27 rdmap32s27;"
                 "a0:1d.0=0: rdmap160s27 | 2: rdmap144s27 | 2: rdmap16s27 rdmap32s27");
}
END_TEST

/* Fewer places than NICs: the nearest ones, the whole count told. */
START_TEST(order_truncated)
{
    topo t = {0};
    if (!load_or_skip(&t, "p5en.48xlarge.xml", NULL, "order_truncated"))
        return;
    ck_assert_int_eq(topo_gpu_nic_order(&t, "8c:00.0", NULL, 0), 16);
    topo_choice c[5];
    ck_assert_int_eq(topo_gpu_nic_order(&t, "0000:8c:00.0", c, 5), 16);
    const char *want[5] = {"rdmap135s0", "rdmap136s0", "rdmap137s0", "rdmap138s0", "rdmap160s0"};
    for (int k = 0; k < 5; k++) {
        ck_assert_str_eq(c[k].nic, want[k]);
        ck_assert_int_eq(c[k].tier, k < 4 ? TOPO_PCIE : TOPO_NUMA);
        ck_assert_int_eq(c[k].hops, k < 4 ? 2 : 8);
    }
    topo_free(&t);
}
END_TEST

/* ---- Made-up sysfs trees, in the files hwloc's Linux backend reads ------ */

/* root/rel with its parent directories. */
static void put(const char *root, const char *rel, const void *data, size_t len)
{
    char p[1024];
    snprintf(p, sizeof(p), "%s/%s", root, rel);
    for (char *s = strchr(p + strlen(root) + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = 0;
        ck_assert_msg(mkdir(p, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", p, strerror(errno));
        *s = '/';
    }
    if (!data) {
        ck_assert_msg(mkdir(p, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", p, strerror(errno));
        return;
    }
    FILE *f = fopen(p, "w");
    ck_assert_msg(f != NULL, "%s: %s", p, strerror(errno));
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

static void putf(const char *root, const char *rel, const char *fmt, ...)
{
    char v[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof(v), fmt, ap);
    va_end(ap);
    put(root, rel, v, strlen(v));
}

/* root/rel, a symbolic link to target, with rel's parent directories. */
static void link_at(const char *root, const char *rel, const char *target)
{
    char p[1024];
    put(root, rel, NULL, 0); /* the parents, and rel as a directory... */
    snprintf(p, sizeof(p), "%s/%s", root, rel);
    ck_assert_int_eq(rmdir(p), 0); /* ...which the link replaces */
    ck_assert_msg(symlink(target, p) == 0, "%s: %s", p, strerror(errno));
}

/* CPU k alone in package k and on NUMA node nodes[k]. */
static void sysfs_cpus(const char *root, const int *nodes, int n)
{
    char rel[256];
    for (int k = 0; k < n; k++) {
        static const char *const masks[] = {"physical_package_id", "core_id", "core_cpus", "package_cpus",
                                            "thread_siblings", "core_siblings"};
        for (int m = 0; m < 6; m++) {
            snprintf(rel, sizeof(rel), "devices/system/cpu/cpu%d/topology/%s", k, masks[m]);
            putf(root, rel, "%x\n", m == 0 ? k : m == 1 ? 0 : 1 << k);
        }
        snprintf(rel, sizeof(rel), "devices/system/node/node%d/cpumap", nodes[k]);
        putf(root, rel, "%x\n", 1 << k);
    }
    putf(root, "devices/system/cpu/online", "0-%d\n", n - 1);
    putf(root, "devices/system/cpu/possible", "0-%d\n", n - 1);
}

/* A PCI function at devices/<path> (its bus id the last component), near
 * the CPUs in mask cpus; a bridge to buses [sec-sub] when sec > 0. */
static void sysfs_pci(const char *root, const char *path, unsigned cls, unsigned vendor, unsigned cpus, int sec,
                      int sub)
{
    const char *id = strrchr(path, '/') + 1;
    char rel[512], target[512];
    snprintf(rel, sizeof(rel), "devices/%s/class", path);
    putf(root, rel, "0x%06x\n", cls);
    snprintf(rel, sizeof(rel), "devices/%s/vendor", path);
    putf(root, rel, "0x%04x\n", vendor);
    snprintf(rel, sizeof(rel), "devices/%s/local_cpus", path);
    putf(root, rel, "%x\n", cpus);
    if (sec > 0) {
        /* Type 1 header: what hwloc takes a bridge's bus range from. */
        unsigned char cfg[256] = {0};
        unsigned bus = 0;
        sscanf(id, "%*x:%x", &bus);
        cfg[0x0e] = 1;
        cfg[0x18] = (unsigned char)bus;
        cfg[0x19] = (unsigned char)sec;
        cfg[0x1a] = (unsigned char)sub;
        snprintf(rel, sizeof(rel), "devices/%s/config", path);
        put(root, rel, cfg, sizeof(cfg));
    }
    snprintf(rel, sizeof(rel), "bus/pci/devices/%s", id);
    snprintf(target, sizeof(target), "../../../devices/%s", path);
    link_at(root, rel, target);
}

#define BRIDGE 0x060400
#define GPU3D 0x030200

/* An EFA at devices/<path> with RDMA device name. */
static void sysfs_nic(const char *root, const char *path, unsigned cpus, const char *name)
{
    char rel[512], target[512];
    sysfs_pci(root, path, 0x020000, 0x1d0f, cpus, 0, 0);
    snprintf(rel, sizeof(rel), "devices/%s/infiniband/%s", path, name);
    put(root, rel, NULL, 0);
    snprintf(rel, sizeof(rel), "class/infiniband/%s", name);
    snprintf(target, sizeof(target), "../../devices/%s/infiniband/%s", path, name);
    link_at(root, rel, target);
}

static void rm_tree(const char *root)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    ck_assert_int_eq(system(cmd), 0);
}

/* A made-up host of two NUMA nodes. Node 0: root complex 00 with a switch
 * holding a GPU and an EFA, a second GPU alone on a root port, an EFA on
 * a third port; root complex 80 with an EFA. Node 1: root complex 40 with
 * an EFA (hwloc lists node 0's devices first: 81 before 41). */
START_TEST(sysfs_tree)
{
    char root[] = "/tmp/mcefa-sysfs-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(root));
    sysfs_cpus(root, (const int[]){0, 1}, 2);
    sysfs_pci(root, "pci0000:00/0000:00:01.0", BRIDGE, 0x8086, 1, 0x01, 0x03);
    sysfs_pci(root, "pci0000:00/0000:00:01.0/0000:01:00.0", BRIDGE, 0x1000, 1, 0x02, 0x03);
    sysfs_pci(root, "pci0000:00/0000:00:01.0/0000:01:00.0/0000:02:00.0", GPU3D, 0x10de, 1, 0, 0);
    sysfs_nic(root, "pci0000:00/0000:00:01.0/0000:01:00.0/0000:03:00.0", 1, "rdmap3s0");
    sysfs_pci(root, "pci0000:00/0000:00:02.0", BRIDGE, 0x8086, 1, 0x04, 0x04);
    sysfs_pci(root, "pci0000:00/0000:00:02.0/0000:04:00.0", GPU3D, 0x10de, 1, 0, 0);
    sysfs_pci(root, "pci0000:00/0000:00:03.0", BRIDGE, 0x8086, 1, 0x05, 0x05);
    sysfs_nic(root, "pci0000:00/0000:00:03.0/0000:05:00.0", 1, "rdmap5s0");
    sysfs_pci(root, "pci0000:40/0000:40:01.0", BRIDGE, 0x8086, 2, 0x41, 0x41);
    sysfs_nic(root, "pci0000:40/0000:40:01.0/0000:41:00.0", 2, "rdmap65s0");
    sysfs_pci(root, "pci0000:80/0000:80:01.0", BRIDGE, 0x8086, 1, 0x81, 0x81);
    sysfs_nic(root, "pci0000:80/0000:80:01.0/0000:81:00.0", 1, "rdmap129s0");
    /* Not a GPU: another vendor's display, NVIDIA's non-display function. */
    sysfs_pci(root, "pci0000:00/0000:00:1f.0", 0x030000, 0x1234, 1, 0, 0);
    sysfs_pci(root, "pci0000:00/0000:00:1e.0", 0x068000, 0x10de, 1, 0, 0);

    topo t = {0};
    ck_assert_int_eq(topo_load_sysfs(root, &t), 0);
    ck_assert_int_eq(t.nnuma, 2);
    ck_assert_int_eq(t.numa_nodes[0], 0);
    ck_assert_int_eq(t.numa_nodes[1], 1);
    /* Bus id order, NUMA nodes from the CPUs each root complex is near. */
    const char *want[] = {"0000:02:00.0=0000:02:00.0/0", "0000:03:00.0=rdmap3s0/0", "0000:04:00.0=0000:04:00.0/0",
                          "0000:05:00.0=rdmap5s0/0",     "0000:41:00.0=rdmap65s0/1", "0000:81:00.0=rdmap129s0/0"};
    ck_assert_uint_eq(t.n, 6);
    for (size_t i = 0; i < t.n; i++) {
        char got[128];
        snprintf(got, sizeof(got), "%s=%s/%d", t.devs[i].busid, t.devs[i].name, t.devs[i].numa);
        ck_assert_str_eq(got, want[i]);
        ck_assert_int_eq(t.devs[i].gpu, t.devs[i].name[0] == '0');
    }
    /* The switch's GPU: its sibling EFA, then the root complex's other
     * one (one up from the NIC, two from the GPU), then the node's other
     * root complex, then the other node. */
    ck_assert_str_eq(order_of(&t, "02:00.0"), "0: rdmap3s0 3: rdmap5s0 | 5: rdmap129s0 | 5: rdmap65s0");
    /* The lone GPU: the EFA on the next root port beats the one inside
     * the switch (two hops against three). */
    ck_assert_str_eq(order_of(&t, "0000:04:00.0"), "2: rdmap5s0 3: rdmap3s0 | 4: rdmap129s0 | 4: rdmap65s0");
    const char *got[4];
    ck_assert_int_eq(topo_gpu_nics(&t, "0000:02:00.0", got, 4), 1);
    ck_assert_str_eq(got[0], "rdmap3s0");
    ck_assert_int_eq(topo_gpu_nics(&t, "04:00.0", got, 4), 1);
    ck_assert_str_eq(got[0], "rdmap5s0");
    ck_assert_int_eq(topo_distance(&t, "0000:02:00.0", "rdmap3s0"), 0);
    ck_assert_int_eq(topo_distance(&t, "04:00.0", "rdmap3s0"), 3);
    ck_assert_int_eq(topo_distance(&t, "04:00.0", "rdmap65s0"), 4);
    /* Only the node's other root complex and the other node left: the
     * NUMA-local one is nearest though no hop count says so. */
    const char *keep = "rdmap6";
    topo_keep_nics(&t, (const char *const[]){"rdmap65", "rdmap129"}, 2);
    ck_assert_int_eq(topo_gpu_nics(&t, "02:00.0", got, 4), 1);
    ck_assert_str_eq(got[0], "rdmap129s0");
    topo_keep_nics(&t, &keep, 1);
    ck_assert_str_eq(order_of(&t, "02:00.0"), "| | 5: rdmap65s0");
    topo_free(&t);
    rm_tree(root);
}
END_TEST

START_TEST(bad_files)
{
    topo t = {0};
    ck_assert_int_eq(topo_load_hwloc_xml("/nonexistent.xml", &t), -ENOENT);
    char f[] = "/tmp/mcefa-topo-XXXXXX";
    int fd = mkstemp(f);
    const char *junk = "<topology></object></object><object type=\"Bridge\"";
    ck_assert_int_eq(write(fd, junk, strlen(junk)), (ssize_t)strlen(junk));
    ck_assert_int_lt(topo_load_hwloc_xml(f, &t), 0);
    ck_assert_uint_eq(t.n, 0);
    /* A real export cut short. */
    const char *src = getenv("MCEFA_SRCDIR");
    char xml[512];
    snprintf(xml, sizeof(xml), "%s/../shared/topologies/p4d.24xlarge.xml", src && *src ? src : ".");
    if (access(xml, R_OK) != 0) {
        printf("bad_files: the rest skipped: %s is not there (shared/ folder absent)\n", xml);
        close(fd);
        unlink(f);
        return;
    }
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "head -c 50000 %s > %s", xml, f);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_lt(topo_load_hwloc_xml(f, &t), 0);
    topo_free(&t);
    close(fd);
    unlink(f);
    /* From a pipe, as `--print-topology=<(lstopo --of xml)` gives it. */
    char path[64];
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    snprintf(cmd, sizeof(cmd), "cat %s >&%d; exec %d>&-", xml, pfd[1], pfd[1]);
    snprintf(path, sizeof(path), "/dev/fd/%d", pfd[0]);
    if (fork() == 0) {
        close(pfd[0]);
        _exit(system(cmd) ? 1 : 0);
    }
    close(pfd[1]);
    int rc = topo_load_hwloc_xml(path, &t);
    close(pfd[0]);
    wait(NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(t.n, 12); /* 8 GPUs, 4 NICs */
    topo_free(&t);
}
END_TEST

/* This host, as the daemon reads it by default: it loads whatever it has
 * (no PCI at all in a container), NUMA nodes at least one. */
START_TEST(this_host)
{
    topo t = {0};
    char sys[64];
    ck_assert_int_eq(topo_load_setting("", &t, sys, sizeof(sys)), 0);
    ck_assert_str_eq(sys, "/sys");
    ck_assert_int_ge(t.nnuma, 1);
    for (size_t i = 0; i < t.n; i++) {
        unsigned d, b, s, fn;
        ck_assert_int_eq(sscanf(t.devs[i].busid, "%4x:%2x:%2x.%1x", &d, &b, &s, &fn), 4);
        if (t.devs[i].gpu)
            ck_assert_int_ge(topo_gpu_nic_order(&t, t.devs[i].busid, NULL, 0), 0);
    }
    printf("this host: %zu GPU(s) and NIC(s), %d NUMA node(s)\n", t.n, t.nnuma);
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
    if (!load_or_skip(&t, name, keep, "matrix"))
        return;
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
    if (!load_or_skip(&t, "p5en.48xlarge.xml", NULL, "matrix_p5en_filter"))
        return;
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
    sysfs_cpus(root, (const int[]){0, 3}, 2);
    topo t = {0};
    ck_assert_int_eq(topo_load_setting(root, &t, sys, sizeof(sys)), 0); /* no PCI devices: no error */
    ck_assert_str_eq(sys, root);
    ck_assert_int_eq(t.nnuma, 2);
    ck_assert_int_eq(t.numa_nodes[0], 0);
    ck_assert_int_eq(t.numa_nodes[1], 3);
    ck_assert_uint_eq(t.n, 0);
    topo_free(&t);
    rm_tree(root);
    /* A tree of NIC files only (check_efa_setup's): hwloc finds no CPUs
     * there (and says so on stderr), the NICs' NUMA nodes are read from
     * the files (nic.c). */
    ck_assert_ptr_nonnull(mkdtemp(strcpy(root, "/tmp/mcefa-sysfs-XXXXXX")));
    putf(root, "class/net/veth0/device/numa_node", "1\n");
    ck_assert_int_eq(topo_load_setting(root, &t, sys, sizeof(sys)), 0);
    ck_assert_str_eq(sys, root);
    ck_assert_uint_eq(t.n, 0);
    topo_free(&t);
    rm_tree(root);
    ck_assert_ptr_null(getenv("HWLOC_FSROOT")); /* set only around the load */
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
    tcase_add_test(tc, own_nics);
    tcase_add_test(tc, keep_named);
    tcase_add_test(tc, order_truncated);
    tcase_add_test(tc, sysfs_tree);
    tcase_add_test(tc, bad_files);
    tcase_add_test(tc, this_host);
    tcase_add_test(tc, load_setting);
    suite_add_tcase(s, tc);
    TCase *mm = tcase_create("mooncake-matrix");
    tcase_add_test(mm, matrix_on_aws_topologies);
    tcase_add_test(mm, matrix_p5en_filter);
    tcase_add_test(mm, matrix_edges);
    suite_add_tcase(s, mm);
    return run_suite(s);
}
