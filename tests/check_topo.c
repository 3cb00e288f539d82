/* GPU <-> NIC affinity on the real AWS instance topologies
 * (../shared/topologies, hwloc XML), and from a sysfs tree. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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
    suite_add_tcase(s, tc);
    return run_suite(s);
}
