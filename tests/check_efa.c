/* What mcefad asks of libfabric for EFA (efa.c, proto/fabric_version.h,
 * peer_hello_check.c), without EFA hardware: the fi_getinfo hints, which
 * API versions are asked of a library that refuses newer ones, which
 * fabric each setting picks from 2.0- and 2.1-style lists, which endpoint
 * options are set or read at each API version, whether RMA counts as
 * emulated, and the handshake error between hosts on different fabrics. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <rdma/fabric.h>
#include <rdma/fi_errno.h>
#include <string.h>

#include "efa.h"
#include "efa_dev.h"
#include "fabric_version.h"
#include "peer_hello_check.h"
#include "suite.h"

/* ---- Hints -------------------------------------------------------------- */

START_TEST(hints_ask_remote_rma_only)
{
    for (int delivery = 0; delivery <= 1; delivery++) {
        struct fi_info *h = fi_allocinfo();
        ck_assert_ptr_nonnull(h);
        ck_assert_int_eq(efa_fill_hints(h, "efa", delivery, false), 0);
        ck_assert_int_eq(h->ep_attr->type, FI_EP_RDM);
        uint64_t want = FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE | FI_REMOTE_COMM;
        ck_assert_uint_eq(h->caps & want, want);
        /* No local communication: efa would open an shm sub-provider. */
        ck_assert_uint_eq(h->caps & FI_LOCAL_COMM, 0);
        /* FI_HMEM only when asked (hints_ask_hmem_only_when_told). */
        ck_assert_uint_eq(h->caps & FI_HMEM, 0);
        ck_assert_uint_eq(h->mode & (FI_CONTEXT | FI_CONTEXT2), FI_CONTEXT | FI_CONTEXT2);
        ck_assert_uint_ne(h->domain_attr->mr_mode & FI_MR_PROV_KEY, 0);
        ck_assert_str_eq(h->fabric_attr->prov_name, "efa");
        ck_assert_uint_eq(h->tx_attr->op_flags & FI_DELIVERY_COMPLETE, delivery ? FI_DELIVERY_COMPLETE : 0);
        /* Filling again (the retry without delivery) replaces the name. */
        ck_assert_int_eq(efa_fill_hints(h, "tcp;ofi_rxm", false, false), 0);
        ck_assert_str_eq(h->fabric_attr->prov_name, "tcp;ofi_rxm");
        fi_freeinfo(h);
    }
}
END_TEST

START_TEST(hints_ask_hmem_only_when_told)
{
    for (int hmem = 0; hmem <= 1; hmem++) {
        struct fi_info *h = fi_allocinfo();
        ck_assert_ptr_nonnull(h);
        ck_assert_int_eq(efa_fill_hints(h, "efa", true, hmem), 0);
        ck_assert_uint_eq(h->caps & FI_HMEM, hmem ? FI_HMEM : 0);
        ck_assert_uint_eq(h->domain_attr->mr_mode & FI_MR_HMEM, hmem ? FI_MR_HMEM : 0);
        /* Everything else is as without. */
        ck_assert_uint_ne(h->caps & FI_RMA, 0);
        ck_assert_uint_eq(h->caps & FI_LOCAL_COMM, 0);
        ck_assert_uint_ne(h->domain_attr->mr_mode & FI_MR_PROV_KEY, 0);
        fi_freeinfo(h);
    }
}
END_TEST

/* ---- Version negotiation ------------------------------------------------ */

/* A library that answers -FI_ENOSYS above `newest` and records what it
 * was asked. */
typedef struct fake_lib {
    uint32_t newest;
    int answer; /* what it answers at or below newest */
    uint32_t asked[16];
    int nasked;
} fake_lib;

static int fake_getinfo(uint32_t version, void *arg)
{
    fake_lib *l = arg;
    l->asked[l->nasked++] = version;
    return version > l->newest ? -FI_ENOSYS : l->answer;
}

static void expect_asked(const fake_lib *l, const uint32_t *want, int n)
{
    ck_assert_int_eq(l->nasked, n);
    for (int i = 0; i < n; i++)
        ck_assert_msg(l->asked[i] == want[i], "ask %d: %u.%u, expected %u.%u", i, FI_MAJOR(l->asked[i]),
                      FI_MINOR(l->asked[i]), FI_MAJOR(want[i]), FI_MINOR(want[i]));
}

START_TEST(version_steps_down_on_enosys)
{
    uint32_t used;
    /* A library as new as the headers: one ask. */
    fake_lib same = {.newest = FI_VERSION(2, 6)};
    ck_assert_int_eq(fabric_version_negotiate(FI_VERSION(2, 6), FI_VERSION(2, 6), fake_getinfo, &same, &used), 0);
    expect_asked(&same, (uint32_t[]){FI_VERSION(2, 6)}, 1);
    ck_assert_uint_eq(used, FI_VERSION(2, 6));

    /* Built against 2.6, running on 1.22 that says so: straight to it. */
    fake_lib older = {.newest = FI_VERSION(1, 22)};
    ck_assert_int_eq(fabric_version_negotiate(FI_VERSION(2, 6), FI_VERSION(1, 22), fake_getinfo, &older, &used), 0);
    expect_asked(&older, (uint32_t[]){FI_VERSION(2, 6), FI_VERSION(1, 22)}, 2);
    ck_assert_uint_eq(used, FI_VERSION(1, 22));

    /* A library whose fi_version() says nothing useful, taking 1.20:
     * down the milestones, never below what works. */
    fake_lib quiet = {.newest = FI_VERSION(1, 20)};
    ck_assert_int_eq(fabric_version_negotiate(FI_VERSION(2, 6), 0, fake_getinfo, &quiet, &used), 0);
    expect_asked(&quiet,
                 (uint32_t[]){FI_VERSION(2, 6), FI_VERSION(1, 22), FI_VERSION(1, 21), FI_VERSION(1, 20)}, 4);
    ck_assert_uint_eq(used, FI_VERSION(1, 20));

    /* Debian's 1.17 headers: 1.17, and 1.9 only as a last resort. */
    fake_lib debian = {.newest = FI_VERSION(1, 17)};
    ck_assert_int_eq(fabric_version_negotiate(FI_VERSION(1, 17), FI_VERSION(1, 17), fake_getinfo, &debian, &used), 0);
    expect_asked(&debian, (uint32_t[]){FI_VERSION(1, 17)}, 1);
    fake_lib ancient = {.newest = FI_VERSION(1, 9)};
    ck_assert_int_eq(fabric_version_negotiate(FI_VERSION(1, 17), 0, fake_getinfo, &ancient, &used), 0);
    expect_asked(&ancient, (uint32_t[]){FI_VERSION(1, 17), FI_VERSION(1, 9)}, 2);
    ck_assert_uint_eq(used, FI_VERSION(1, 9));

    /* Any other answer ends the walk: no provider at 2.6 is not a reason to
     * ask older versions. */
    fake_lib nodata = {.newest = FI_VERSION(2, 6), .answer = -FI_ENODATA};
    ck_assert_int_eq(fabric_version_negotiate(FI_VERSION(2, 6), FI_VERSION(2, 6), fake_getinfo, &nodata, &used),
                     -FI_ENODATA);
    ck_assert_int_eq(nodata.nasked, 1);
    ck_assert_uint_eq(used, FI_VERSION(2, 6));

    /* Nothing accepted: the last -FI_ENOSYS comes back, no version used. */
    fake_lib none = {.newest = FI_VERSION(1, 0)};
    ck_assert_int_eq(fabric_version_negotiate(FI_VERSION(1, 18), 0, fake_getinfo, &none, &used), -FI_ENOSYS);
    expect_asked(&none, (uint32_t[]){FI_VERSION(1, 18), FI_VERSION(1, 9)}, 2);
    ck_assert_uint_eq(used, 0);
}
END_TEST

/* ---- Fabric choice ------------------------------------------------------ */

/* libfabric >= 2.1 on p5: efa-direct before efa for every device, and the
 * shm provider's entries beside them when local communication is asked. */
static const efa_offer list21[] = {
    {"efa", "rdmap79s0-rdm", "efa-direct", 1}, {"efa", "rdmap79s0-rdm", "efa", 1},
    {"efa", "rdmap80s0-rdm", "efa-direct", 1}, {"efa", "rdmap80s0-rdm", "efa", 1},
    {"shm", "shm", "shm", -1},
};

static void expect_chosen(const efa_offer *v, size_t n, const char *setting, const size_t *want, int nwant)
{
    size_t chosen[16];
    err e = {0};
    int k = efa_choose_fabric(v, n, "efa", setting, chosen, &e);
    ck_assert_msg(k == nwant, "setting '%s': %d chosen (%s)", setting, k, e.text);
    for (int i = 0; i < nwant; i++)
        ck_assert_uint_eq(chosen[i], want[i]);
}

START_TEST(fabric_choice_on_a_21_list)
{
    expect_chosen(list21, 5, "", (size_t[]){0, 2}, 2);
    expect_chosen(list21, 5, "efa-direct", (size_t[]){0, 2}, 2);
    expect_chosen(list21, 5, "efa", (size_t[]){1, 3}, 2);
    /* libefa says the second device lacks RDMA write: efa there. */
    efa_offer mixed[5];
    memcpy(mixed, list21, sizeof(mixed));
    mixed[2].device_rdma = mixed[3].device_rdma = 0;
    expect_chosen(mixed, 5, "", (size_t[]){0, 3}, 2);
    /* Unknown (no libefa) is no reason to refuse what the provider offers. */
    mixed[2].device_rdma = mixed[3].device_rdma = -1;
    expect_chosen(mixed, 5, "", (size_t[]){0, 2}, 2);
}
END_TEST

START_TEST(fabric_choice_on_an_efa_only_list)
{
    /* libfabric 2.0 (or p4d, where efa-direct is not offered). */
    static const efa_offer list20[] = {
        {"efa", "rdmap16s27-rdm", "efa", -1},
        {"efa", "rdmap32s27-rdm", "efa", -1},
    };
    expect_chosen(list20, 2, "", (size_t[]){0, 1}, 2);
    expect_chosen(list20, 2, "efa", (size_t[]){0, 1}, 2);
    size_t chosen[4];
    err e = {0};
    ck_assert_int_eq(efa_choose_fabric(list20, 2, "efa", "efa-direct", chosen, &e), -ENOENT);
    ck_assert_ptr_nonnull(strstr(e.text, "fabric 'efa-direct' is not offered by provider efa"));
    ck_assert_ptr_nonnull(strstr(e.text, "it offers: efa)"));
    ck_assert_ptr_nonnull(strstr(e.text, "set fabric to one of them"));
    /* No entry at all: nothing chosen, no error (the caller says "no NIC"). */
    ck_assert_int_eq(efa_choose_fabric(list20, 0, "efa", "efa", chosen, &e), 0);
}
END_TEST

START_TEST(fabric_choice_on_tcp)
{
    /* tcp lists a fabric per subnet, several per interface. */
    static const efa_offer tcp[] = {
        {"tcp;ofi_rxm", "eth0", "192.0.2.0/24", -1}, {"tcp;ofi_rxm", "eth0", "fe80::/64", -1},
        {"tcp;ofi_rxm", "lo", "127.0.0.1/32", -1},   {"tcp;ofi_rxm", "lo", "::1/128", -1},
        {"tcp;ofi_rxm", "eth0", "192.0.2.0/24", -1},
    };
    size_t chosen[8];
    err e = {0};
    ck_assert_int_eq(efa_choose_fabric(tcp, 5, "tcp;ofi_rxm", "", chosen, &e), 2);
    ck_assert_uint_eq(chosen[0], 0);
    ck_assert_uint_eq(chosen[1], 2);
    ck_assert_int_eq(efa_choose_fabric(tcp, 5, "tcp;ofi_rxm", "::1/128", chosen, &e), 1);
    ck_assert_uint_eq(chosen[0], 3);
    ck_assert_int_eq(efa_choose_fabric(tcp, 5, "tcp;ofi_rxm", "10.0.0.0/8", chosen, &e), -ENOENT);
    ck_assert_ptr_nonnull(strstr(e.text, "192.0.2.0/24, fe80::/64, 127.0.0.1/32, ::1/128"));
    /* What one NIC offered, for the log. */
    char offered[128];
    efa_fabrics_offered(tcp, 5, "tcp;ofi_rxm", "eth0", offered, sizeof(offered));
    ck_assert_str_eq(offered, "192.0.2.0/24, fe80::/64");
    efa_fabrics_offered(list21, 5, "efa", "rdmap80s0-rdm", offered, sizeof(offered));
    ck_assert_str_eq(offered, "efa-direct, efa");
}
END_TEST

/* ---- Endpoint options --------------------------------------------------- */

static size_t plan_hmem(uint32_t api, const char *prov, const char *fabric, bool hmem, efa_opt *ops, bool *before)
{
    efa_opt_step s[EFA_OPT_STEPS_MAX];
    size_t n = efa_opt_plan(api, prov, fabric, hmem, s);
    for (size_t i = 0; i < n; i++) {
        ops[i] = s[i].opt;
        before[i] = s[i].before_enable;
        ck_assert_ptr_nonnull(s[i].name);
    }
    return n;
}

static size_t plan(uint32_t api, const char *prov, const char *fabric, efa_opt *ops, bool *before)
{
    return plan_hmem(api, prov, fabric, false, ops, before);
}

START_TEST(option_plan_by_version)
{
    efa_opt op[EFA_OPT_STEPS_MAX];
    bool before[EFA_OPT_STEPS_MAX];
    /* 1.17: the provider takes none of them. */
    ck_assert_uint_eq(plan(FI_VERSION(1, 17), "efa", "efa", op, before), 0);
    /* 1.18: read whether RMA is emulated, after fi_enable. */
    ck_assert_uint_eq(plan(FI_VERSION(1, 18), "efa", "efa", op, before), 2);
    ck_assert_int_eq(op[0], EFA_OPT_EMULATED_READ);
    ck_assert_int_eq(op[1], EFA_OPT_EMULATED_WRITE);
    ck_assert(!before[0] && !before[1]);
    /* 1.21: shm off, before fi_enable, first. */
    ck_assert_uint_eq(plan(FI_VERSION(1, 21), "efa", "efa", op, before), 3);
    ck_assert_int_eq(op[0], EFA_OPT_SHM_OFF);
    ck_assert(before[0]);
    /* 1.22 and 2.x: the largest RMA too. */
    for (uint32_t v = FI_VERSION(1, 22); v <= FI_VERSION(2, 6); v = v == FI_VERSION(1, 22) ? FI_VERSION(2, 0) : v + 1) {
        ck_assert_uint_eq(plan(v, "efa", "efa", op, before), 4);
        ck_assert_int_eq(op[0], EFA_OPT_SHM_OFF);
        ck_assert_int_eq(op[3], EFA_OPT_MAX_RMA_SIZE);
        ck_assert(!before[3]);
    }
    /* efa-direct has no shm path to turn off. */
    ck_assert_uint_eq(plan(FI_VERSION(2, 4), "efa", "efa-direct", op, before), 3);
    ck_assert_int_eq(op[0], EFA_OPT_EMULATED_READ);
    ck_assert_int_eq(op[2], EFA_OPT_MAX_RMA_SIZE);
    /* Other providers: only the size, where the API has it. */
    ck_assert_uint_eq(plan(FI_VERSION(1, 17), "tcp;ofi_rxm", "127.0.0.1/32", op, before), 0);
    ck_assert_uint_eq(plan(FI_VERSION(2, 4), "tcp;ofi_rxm", "127.0.0.1/32", op, before), 1);
    ck_assert_int_eq(op[0], EFA_OPT_MAX_RMA_SIZE);
}
END_TEST

START_TEST(cuda_calls_are_turned_off_with_hmem)
{
    const char *provs[] = {"efa", "efa", "tcp;ofi_rxm"}, *fabrics[] = {"efa", "efa-direct", "127.0.0.1/32"};
    for (uint32_t v = FI_VERSION(1, 9); v <= FI_VERSION(2, 6); v = v == FI_VERSION(1, 22) ? FI_VERSION(2, 0) : v + 1)
        for (size_t p = 0; p < 3; p++) {
            efa_opt with[EFA_OPT_STEPS_MAX], without[EFA_OPT_STEPS_MAX];
            bool bw[EFA_OPT_STEPS_MAX], bo[EFA_OPT_STEPS_MAX];
            size_t nw = plan_hmem(v, provs[p], fabrics[p], true, with, bw);
            size_t no = plan_hmem(v, provs[p], fabrics[p], false, without, bo);
            /* Without FI_HMEM never; with it, on any provider, exactly once
             * from 1.18 on, before fi_enable (the provider reads it there). */
            size_t cuda = 0;
            for (size_t i = 0; i < nw; i++)
                if (with[i] == EFA_OPT_CUDA_API_OFF) {
                    cuda++;
                    ck_assert(bw[i]);
                }
            for (size_t i = 0; i < no; i++)
                ck_assert_int_ne(without[i], EFA_OPT_CUDA_API_OFF);
            ck_assert_uint_eq(cuda, v >= FI_VERSION(1, 18) ? 1 : 0);
            ck_assert_uint_eq(nw, no + cuda);
        }
}
END_TEST

START_TEST(shm_is_never_asked_for)
{
    /* At no version and on no fabric does a step do anything with shm
     * but turn it off, before the endpoint is enabled. */
    const char *fabrics[] = {"efa", "efa-direct", "127.0.0.1/32"};
    for (uint32_t minor = 9; minor <= 22; minor++)
        for (size_t f = 0; f < 3; f++) {
            efa_opt_step s[EFA_OPT_STEPS_MAX];
            size_t n = efa_opt_plan(FI_VERSION(1, minor), f == 2 ? "tcp;ofi_rxm" : "efa", fabrics[f], minor & 1, s);
            for (size_t i = 0; i < n; i++)
                if (s[i].opt == EFA_OPT_SHM_OFF)
                    ck_assert(s[i].before_enable && f == 0 && minor >= 21);
        }
    struct fi_info *h = fi_allocinfo();
    ck_assert_int_eq(efa_fill_hints(h, "efa", true, false), 0);
    ck_assert_uint_eq(h->caps & FI_LOCAL_COMM, 0);
    fi_freeinfo(h);
}
END_TEST

/* ---- Emulated RMA ------------------------------------------------------- */

static void resolve(const char *fabric, efa_rma_facts f, int want_read, int want_write)
{
    int r, w;
    efa_rma_resolve("efa", fabric, &f, &r, &w);
    ck_assert_msg(r == want_read && w == want_write, "%s: read %d write %d, expected %d %d", fabric, r, w, want_read,
                  want_write);
}

START_TEST(emulated_rma_is_resolved)
{
    const efa_rma_facts none = {-1, -1, -1, -1, -1, FI_VERSION(1, 18)};
    /* The provider's answer wins. */
    efa_rma_facts f = none;
    f.emulated_read = 0;
    f.emulated_write = 1;
    f.dev_write = 1;
    resolve("efa", f, 0, 1);
    /* efa-direct never emulates. */
    resolve("efa-direct", none, 0, 0);
    /* Nothing known: cannot tell. */
    resolve("efa", none, -1, -1);
    /* p4d at 1.18 (RDMA read, no write), by libefa. */
    f = none;
    f.dev_read = 1;
    f.dev_write = 0;
    resolve("efa", f, 0, 1);
    /* p5 at 1.18: both on the device. */
    f.dev_write = 1;
    resolve("efa", f, 0, 0);
    /* Below 1.18 device RDMA is off on the first generations, which libefa
     * cannot tell apart: unknown, unless FI_EFA_USE_DEVICE_RDMA=1. */
    f.api = FI_VERSION(1, 17);
    resolve("efa", f, -1, -1);
    f.env_device_rdma = 1;
    resolve("efa", f, 0, 0);
    /* Turned off by the environment: emulated whatever the device. */
    f.env_device_rdma = 0;
    resolve("efa", f, 1, 1);
    /* A device without RDMA (c5n): everything emulated. */
    f = none;
    f.dev_read = f.dev_write = 0;
    resolve("efa", f, 1, 1);
    /* Not efa: not applicable. */
    int r, w;
    efa_rma_resolve("tcp;ofi_rxm", "127.0.0.1/32", &none, &r, &w);
    ck_assert(r == -1 && w == -1);
    ck_assert_str_eq(efa_rma_emulated_name("tcp;ofi_rxm", r, w), "n/a");
    ck_assert_str_eq(efa_rma_emulated_name("efa", 0, 1), "write");
    ck_assert_str_eq(efa_rma_emulated_name("efa", 1, 1), "read+write");
    ck_assert_str_eq(efa_rma_emulated_name("efa", 0, 0), "no");
    ck_assert_str_eq(efa_rma_emulated_name("efa", -1, 0), "unknown");
}
END_TEST

START_TEST(emulated_rma_warns_or_refuses)
{
    err e = {0};
    ck_assert_int_eq(efa_rma_check("rdmap79s0", "efa", 0, 0, true, &e), 0);
    ck_assert_int_eq(efa_rma_check("lo", "tcp;ofi_rxm", -1, -1, true, &e), 0);
    ck_assert_int_eq(efa_rma_check("rdmap79s0", "efa", 0, 1, false, &e), 1);
    ck_assert_ptr_nonnull(strstr(e.text, "NIC rdmap79s0: RDMA write is emulated"));
    ck_assert_int_eq(efa_rma_check("rdmap79s0", "efa", 0, 1, true, &e), -EOPNOTSUPP);
    ck_assert_ptr_nonnull(strstr(e.text, "require_device_rdma is set"));
    ck_assert_ptr_nonnull(strstr(e.text, "set require_device_rdma=false"));
    ck_assert_int_eq(efa_rma_check("rdmap79s0", "efa", -1, -1, false, &e), 1);
    ck_assert_ptr_nonnull(strstr(e.text, "cannot tell"));
    ck_assert_int_eq(efa_rma_check("rdmap79s0", "efa", -1, -1, true, &e), -EOPNOTSUPP);
}
END_TEST

/* ---- Hosts on different fabrics ----------------------------------------- */

START_TEST(hosts_on_different_fabrics_are_told_why)
{
    Mcefa__PeerNic nic = MCEFA__PEER_NIC__INIT;
    nic.name = "rdmap79s0";
    nic.fabric = "efa";
    Mcefa__PeerNic *nics[] = {&nic};
    Mcefa__PeerHello h = MCEFA__PEER_HELLO__INIT;
    h.hostname = "host-b";
    h.provider = "efa";
    h.fabric = "efa";
    h.libfabric_version = FI_VERSION(2, 0);
    h.n_nics = 1;
    h.nics = nics;
    const char *mine[] = {"efa-direct", "efa-direct"};
    peer_hello_local me = {"host-a", "efa", "efa-direct", FI_VERSION(2, 4), mine, 2};
    err e = {0};
    ck_assert_int_eq(peer_hello_fabric_check(&h, &me, &e), -EPROTO);
    ck_assert_ptr_nonnull(strstr(e.text, "host host-b uses fabric efa (libfabric 2.0), host host-a uses efa-direct "
                                         "(libfabric 2.4)"));
    ck_assert_ptr_nonnull(strstr(e.text, "set fabric=efa on both"));
    /* The same fabric: fine. */
    me.fabric = "efa";
    mine[0] = mine[1] = "efa";
    ck_assert_int_eq(peer_hello_fabric_check(&h, &me, &e), 0);
    /* A host on several fabrics (tcp, a subnet per NIC), or an older
     * daemon that names none: NIC by NIC, as before. */
    h.fabric = "";
    me.fabric = "efa-direct";
    mine[0] = mine[1] = "efa-direct";
    ck_assert_int_eq(peer_hello_fabric_check(&h, &me, &e), 0);
    /* Another provider has its own error. */
    h.fabric = "efa";
    h.provider = "tcp;ofi_rxm";
    ck_assert_int_eq(peer_hello_fabric_check(&h, &me, &e), 0);
    /* tcp on two single-subnet hosts that share nothing. */
    me.provider = "tcp;ofi_rxm";
    h.provider = "tcp;ofi_rxm";
    h.fabric = nic.fabric = "10.0.1.0/24";
    me.fabric = mine[0] = mine[1] = "10.0.2.0/24";
    h.libfabric_version = 0;
    ck_assert_int_eq(peer_hello_fabric_check(&h, &me, &e), -EPROTO);
    ck_assert_ptr_nonnull(strstr(e.text, "(libfabric unknown)"));
    ck_assert_ptr_nonnull(strstr(e.text, "set the fabric setting to one name on both"));
}
END_TEST

/* ---- libefa ------------------------------------------------------------ */

/* An EFA device of this host (/sys/class/infiniband/rdmap*), or NULL. */
static const char *efa_device_here(char *buf, size_t len)
{
    DIR *d = opendir("/sys/class/infiniband");
    const char *found = NULL;
    for (struct dirent *e; d && !found && (e = readdir(d));)
        if (!strncmp(e->d_name, "rdmap", 5)) {
            snprintf(buf, len, "%s", e->d_name);
            found = buf;
        }
    if (d)
        closedir(d);
    return found;
}

START_TEST(libefa_describes_the_device_or_says_why_not)
{
    efa_dev_attr a;
    err e = {0};
    /* A name no device has: a clear error, nothing known. */
    int rc = efa_dev_query("rdmap-no-such-device", &a, &e);
    ck_assert_int_lt(rc, 0);
    ck_assert(!a.known);
    ck_assert_msg(strstr(e.text, "rdmap-no-such-device") || strstr(e.text, "libefa not loaded") ||
                      strstr(e.text, "lists no RDMA devices"),
                  "%s", e.text);
    char buf[64];
    const char *dev = efa_device_here(buf, sizeof(buf));
    if (!dev) {
        printf("libefa_describes_the_device: real device skipped: no EFA device here (/sys/class/infiniband)\n");
        efa_dev_unload();
        return;
    }
    rc = efa_dev_query(dev, &a, &e);
    ck_assert_msg(rc == 0, "%s: %s", dev, e.text);
    ck_assert(a.known);
    ck_assert_uint_gt(a.max_sq_wr, 0);
    ck_assert(!a.rdma_write || a.rdma_read); /* no EFA writes without reading */
    printf("libefa_describes_the_device: %s: RDMA read %d write %d, max RDMA %u, inline %u, SQ %u x %u\n", dev,
           a.rdma_read, a.rdma_write, a.max_rdma_size, a.inline_buf_size, a.max_sq_wr, a.max_sq_sge);
    efa_dev_unload();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("efa");
    TCase *tc = tcase_create("efa");
    tcase_add_test(tc, hints_ask_remote_rma_only);
    tcase_add_test(tc, hints_ask_hmem_only_when_told);
    tcase_add_test(tc, version_steps_down_on_enosys);
    tcase_add_test(tc, fabric_choice_on_a_21_list);
    tcase_add_test(tc, fabric_choice_on_an_efa_only_list);
    tcase_add_test(tc, fabric_choice_on_tcp);
    tcase_add_test(tc, option_plan_by_version);
    tcase_add_test(tc, shm_is_never_asked_for);
    tcase_add_test(tc, cuda_calls_are_turned_off_with_hmem);
    tcase_add_test(tc, emulated_rma_is_resolved);
    tcase_add_test(tc, emulated_rma_warns_or_refuses);
    tcase_add_test(tc, hosts_on_different_fabrics_are_told_why);
    tcase_add_test(tc, libefa_describes_the_device_or_says_why_not);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
