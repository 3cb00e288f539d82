/* GPU memory and the NICs (nic_hmem.c), without a GPU or EFA: whether
 * FI_HMEM is asked and FI_HMEM=system kept, the registration plan of a NIC
 * (dmabuf, iface or staging) for every combination of what the provider
 * granted, the API version, the headers, the FI_OPT_CUDA_API_PERMITTED
 * answer, the CUDA driver, the kernel and the peermem module, how one
 * region is registered under a plan, and the fi_mr_regattr arguments of
 * each way. Pure functions: nothing here proves anything about hardware. */
#include <check.h>
#include <errno.h>
#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_errno.h>
#include <stdio.h>
#include <string.h>

#include "fabric_version.h"
#include "nic_hmem.h"
#include "suite.h"

#define V(a, b) FI_VERSION(a, b)
#define K(a, b) ((uint32_t)(a) << 16 | (uint32_t)(b))

/* ---- Asking for FI_HMEM --------------------------------------------------- */

START_TEST(ask_follows_setting_build_headers_and_env)
{
    const uint32_t headers[] = {V(1, 17), V(1, 18), V(2, 6)};
    const char *envs[] = {NULL, "system", "cuda"};
    int asked = 0;
    for (int on = 0; on <= 1; on++)
        for (int cuda = 0; cuda <= 1; cuda++)
            for (size_t h = 0; h < 3; h++)
                for (size_t v = 0; v < 3; v++) {
                    nic_hmem_ask a;
                    nic_hmem_decide_ask(on, cuda, headers[h], envs[v], &a);
                    bool user_system = envs[v] && !strcmp(envs[v], "system");
                    bool want = on && cuda && !user_system && (envs[v] || headers[h] >= V(1, 18));
                    ck_assert_msg(a.ask == want, "on %d cuda %d headers %zu env %s: ask %d", on, cuda, h,
                                  envs[v] ? envs[v] : "-", a.ask);
                    /* A user's FI_HMEM is never replaced; ours only where
                     * nothing is asked. */
                    ck_assert(a.set_system == (!envs[v] && !want));
                    ck_assert(a.ask == (a.why[0] == 0));
                    asked += a.ask;
                }
    ck_assert_int_eq(asked, 5); /* unset at 1.18 and 2.6; FI_HMEM=cuda at any headers */

    nic_hmem_ask a;
    nic_hmem_decide_ask(false, true, V(2, 6), NULL, &a);
    ck_assert_str_eq(a.why, "gpudirect=false");
    nic_hmem_decide_ask(true, false, V(2, 6), NULL, &a);
    ck_assert_ptr_nonnull(strstr(a.why, "without CUDA"));
    nic_hmem_decide_ask(true, true, V(1, 17), NULL, &a);
    ck_assert_msg(strstr(a.why, "1.17 headers") && strstr(a.why, "FI_OPT_CUDA_API_PERMITTED"), "%s", a.why);
    nic_hmem_decide_ask(true, true, V(2, 6), "system", &a);
    ck_assert_ptr_nonnull(strstr(a.why, "FI_HMEM=system"));
    ck_assert(!a.set_system);
}
END_TEST

/* ---- The plan: named cases ----------------------------------------------- */

/* A NIC where everything allows dmabuf: efa on libfabric 2.6, a 6.1
 * kernel, a driver whose GPUs all take dmabuf. */
static nic_hmem_facts all_good(void)
{
    return (nic_hmem_facts){.prov = "efa",
                            .hmem_caps = FI_HMEM | FI_RMA,
                            .api = V(2, 6),
                            .lib = V(2, 6),
                            .headers = V(2, 6),
                            .cuda_api_rc = 0,
                            .driver = 1,
                            .dmabuf_attr = 1,
                            .kernel = K(6, 1),
                            .peermem = 0};
}

static void expect(const char *name, nic_hmem_facts f, gpu_reg reg, const char *why_has)
{
    nic_hmem_plan p;
    nic_hmem_plan_for(&f, &p);
    ck_assert_msg(p.reg == reg, "%s: %s, expected %s (%s)", name, nic_hmem_reg_name(p.reg), nic_hmem_reg_name(reg),
                  p.why);
    ck_assert_msg(strstr(p.why, why_has) != NULL, "%s: '%s' lacks '%s'", name, p.why, why_has);
}

START_TEST(plan_named_cases)
{
    nic_hmem_facts f = all_good();
    expect("all good", f, GPU_REG_DMABUF, "FI_MR_DMABUF");

    f = all_good();
    f.not_asked = "gpudirect=false";
    expect("not asked", f, GPU_REG_STAGING, "FI_HMEM not asked (gpudirect=false)");

    f = all_good();
    f.hmem_caps = 0;
    f.no_entry = "No data available";
    f.prov = "tcp;ofi_rxm";
    expect("refused", f, GPU_REG_STAGING,
           "provider tcp;ofi_rxm offers no FI_HMEM entry for this NIC (fi_getinfo: No data");

    f = all_good();
    f.api = f.headers = V(1, 17);
    expect("API 1.17", f, GPU_REG_STAGING, "API 1.17 is below 1.18");

    f = all_good();
    f.open_fail = "fi_domain: Operation not supported";
    expect("domain refused", f, GPU_REG_STAGING, "opening the NIC with FI_HMEM failed (fi_domain");

    f = all_good();
    f.cuda_api_rc = -FI_EOPNOTSUPP;
    expect("CUDA API option refused", f, GPU_REG_STAGING, "FI_OPT_CUDA_API_PERMITTED=false refused");

    f = all_good();
    f.driver = 0;
    f.driver_why = "cannot load libcuda.so.1";
    expect("no driver", f, GPU_REG_STAGING, "cannot load libcuda.so.1");

    f = all_good();
    f.kernel = K(5, 10);
    expect("old kernel", f, GPU_REG_IFACE, "kernel 5.10 below 5.12");

    f = all_good();
    f.dmabuf_attr = 0;
    expect("GPU without dmabuf", f, GPU_REG_IFACE, "does not report dmabuf support");

    f = all_good();
    f.api = V(1, 19);
    expect("API 1.19", f, GPU_REG_IFACE, "API 1.19 below 1.20");

    f = all_good();
    f.api = f.headers = V(1, 18);
    expect("headers 1.18", f, GPU_REG_IFACE, "1.18 headers");

    /* efa before 2.5 registers CUDA addresses only with peermem. */
    f = all_good();
    f.lib = f.api = V(2, 4);
    f.kernel = K(5, 10);
    expect("efa 2.4, no peermem, no dmabuf", f, GPU_REG_STAGING, "nvidia-peermem");
    f.peermem = 1;
    expect("efa 2.4 with peermem", f, GPU_REG_IFACE, "iface CUDA");
    /* Another provider decides at registration. */
    f.peermem = 0;
    f.prov = "verbs;ofi_rxm";
    expect("verbs, no dmabuf", f, GPU_REG_IFACE, "kernel 5.10");

    /* dmabuf NIC where iface does not work: regions without a dmabuf fd
     * stay host-staged, and the plan says so. */
    f = all_good();
    f.lib = f.api = V(2, 4);
    expect("efa 2.4 dmabuf", f, GPU_REG_DMABUF, "regions without one stay host-staged");
}
END_TEST

/* ---- The plan: every combination ----------------------------------------- */

typedef struct combo_count {
    unsigned n, dmabuf, iface, staging;
} combo_count;

/* What a combination must give, stated as the rules, and the reason that
 * must be named first. */
static void check_combo(const nic_hmem_facts *f, combo_count *c)
{
    nic_hmem_plan p;
    nic_hmem_plan_for(f, &p);
    bool asked = !f->not_asked, granted = (f->hmem_caps & FI_HMEM) != 0, api18 = f->api >= V(1, 18);
    bool open_with = asked && granted && api18;
    bool opened = open_with && !f->open_fail && f->cuda_api_rc == 0;
    bool usable = opened && f->driver == 1;
    bool dmabuf = f->headers >= V(1, 20) && f->api >= V(1, 20) && f->kernel >= K(5, 12) && f->dmabuf_attr == 1;
    bool efa = !strcmp(f->prov, "efa");
    bool iface = !efa || f->lib >= V(2, 5) || f->peermem == 1;
    gpu_reg want = !usable ? GPU_REG_STAGING : dmabuf ? GPU_REG_DMABUF : iface ? GPU_REG_IFACE : GPU_REG_STAGING;
    char ctx[200];
    snprintf(ctx, sizeof(ctx),
             "%s asked %d caps %d api %u.%u lib %u.%u headers %u.%u open_fail %d cuda %d driver %d attr %d "
             "kernel %u.%u peermem %d",
             f->prov, asked, granted, FI_MAJOR(f->api), FI_MINOR(f->api), FI_MAJOR(f->lib), FI_MINOR(f->lib),
             FI_MAJOR(f->headers), FI_MINOR(f->headers), f->open_fail != NULL, f->cuda_api_rc, f->driver,
             f->dmabuf_attr, f->kernel >> 16, f->kernel & 0xffff, f->peermem);
    ck_assert_msg(p.reg == want, "%s: %s, expected %s (%s)", ctx, nic_hmem_reg_name(p.reg), nic_hmem_reg_name(want),
                  p.why);
    ck_assert_msg(nic_hmem_open_with(f) == open_with, "%s: open_with", ctx);
    ck_assert_msg(nic_hmem_needs_driver(f) == opened, "%s: needs_driver", ctx);
    if (usable)
        ck_assert_msg(p.iface_ok == iface, "%s: iface_ok %d", ctx, p.iface_ok);
    else
        ck_assert_msg(!p.iface_ok, "%s: iface_ok on a staging NIC", ctx);
    /* The first thing missing is what the reason names. */
    const char *must = !asked                 ? "FI_HMEM not asked"
                       : !granted             ? "offers no FI_HMEM"
                       : !api18               ? "below 1.18"
                       : f->open_fail         ? "opening the NIC with FI_HMEM failed"
                       : f->cuda_api_rc != 0  ? "FI_OPT_CUDA_API_PERMITTED=false"
                       : f->driver != 1       ? "CUDA driver"
                       : dmabuf               ? "FI_MR_DMABUF"
                       : f->headers < V(1, 20) ? "headers"
                       : f->api < V(1, 20)    ? "below 1.20"
                       : f->kernel < K(5, 12) ? "kernel"
                                              : "dmabuf support";
    ck_assert_msg(strstr(p.why, must) != NULL, "%s: '%s' does not name '%s'", ctx, p.why, must);
    c->n++;
    c->dmabuf += p.reg == GPU_REG_DMABUF;
    c->iface += p.reg == GPU_REG_IFACE;
    c->staging += p.reg == GPU_REG_STAGING;
}

START_TEST(plan_every_combination)
{
    const char *provs[] = {"efa", "tcp;ofi_rxm"};
    const uint32_t apis[] = {V(1, 17), V(1, 18), V(1, 20), V(2, 6)};
    const uint32_t libs[] = {V(1, 20), V(2, 4), V(2, 5), V(2, 6)};
    const uint32_t hdrs[] = {V(1, 17), V(1, 18), V(1, 20), V(2, 6)};
    const int cuda_rcs[] = {0, -FI_EOPNOTSUPP, -FI_EINVAL, NIC_HMEM_NOT_TRIED};
    const int attrs[] = {1, 0, -1};
    const uint32_t kernels[] = {0, K(5, 11), K(5, 12), K(6, 1)};
    combo_count c = {0};
    for (size_t p = 0; p < 2; p++)
        for (int asked = 0; asked <= 1; asked++)
            for (int granted = 0; granted <= 1; granted++)
                for (size_t a = 0; a < 4; a++)
                    for (size_t l = 0; l < 4; l++)
                        for (size_t h = 0; h < 4; h++) {
                            /* The API asked never exceeds the headers or the library. */
                            if (apis[a] > hdrs[h] || apis[a] > libs[l])
                                continue;
                            for (int fail = 0; fail <= 1; fail++)
                                for (size_t r = 0; r < 4; r++)
                                    for (int driver = 0; driver <= 1; driver++)
                                        for (size_t at = 0; at < 3; at++)
                                            for (size_t k = 0; k < 4; k++)
                                                for (int pm = 0; pm <= 1; pm++) {
                                                    nic_hmem_facts f = {
                                                        .prov = provs[p],
                                                        .not_asked = asked ? NULL : "gpudirect=false",
                                                        .hmem_caps = granted ? FI_HMEM | FI_RMA : FI_RMA,
                                                        .no_entry = granted ? NULL : "No data available",
                                                        .api = apis[a],
                                                        .lib = libs[l],
                                                        .headers = hdrs[h],
                                                        .open_fail = fail ? "fi_domain: refused" : NULL,
                                                        .cuda_api_rc = cuda_rcs[r],
                                                        .driver = driver,
                                                        .driver_why = driver ? NULL : "no GPU",
                                                        .dmabuf_attr = attrs[at],
                                                        .kernel = kernels[k],
                                                        .peermem = pm};
                                                    check_combo(&f, &c);
                                                }
                        }
    printf("plan_every_combination: %u combinations: %u dmabuf, %u iface, %u staging\n", c.n, c.dmabuf, c.iface,
           c.staging);
    /* Each outcome is reached, so no rule is dead. */
    ck_assert_uint_gt(c.dmabuf, 0);
    ck_assert_uint_gt(c.iface, 0);
    ck_assert_uint_gt(c.staging, c.dmabuf + c.iface);
}
END_TEST

/* ---- Facts and one region ------------------------------------------------ */

START_TEST(kernel_versions_parse)
{
    ck_assert_uint_eq(nic_hmem_kernel_version("6.1.0-18-amd64"), K(6, 1));
    ck_assert_uint_eq(nic_hmem_kernel_version("5.12.0"), K(5, 12));
    ck_assert_uint_eq(nic_hmem_kernel_version("5.4.0-1103-aws"), K(5, 4));
    ck_assert_uint_eq(nic_hmem_kernel_version("6.18.44-fc-v1045"), K(6, 18));
    ck_assert_uint_eq(nic_hmem_kernel_version("10.0"), K(10, 0));
    ck_assert_uint_eq(nic_hmem_kernel_version(""), 0);
    ck_assert_uint_eq(nic_hmem_kernel_version("linux"), 0);
    ck_assert_uint_eq(nic_hmem_kernel_version("6"), 0);
    ck_assert_uint_eq(nic_hmem_kernel_version("6."), 0);
    ck_assert_uint_eq(nic_hmem_kernel_version("0.9"), 0);
    /* Ordered as versions: 5.9 < 5.12. */
    ck_assert_uint_lt(nic_hmem_kernel_version("5.9.1"), nic_hmem_kernel_version("5.12.1"));
}
END_TEST

START_TEST(one_region_follows_the_plan)
{
    const gpu_reg regs[] = {GPU_REG_STAGING, GPU_REG_IFACE, GPU_REG_DMABUF};
    for (size_t r = 0; r < 3; r++)
        for (int iface_ok = 0; iface_ok <= 1; iface_ok++)
            for (int fd = 0; fd <= 1; fd++) {
                nic_hmem_plan p = {.reg = regs[r], .iface_ok = iface_ok};
                gpu_reg got = nic_hmem_region_reg(&p, fd);
                gpu_reg want = regs[r] == GPU_REG_DMABUF && fd                 ? GPU_REG_DMABUF
                               : regs[r] != GPU_REG_STAGING && iface_ok ? GPU_REG_IFACE
                                                                        : GPU_REG_STAGING;
                ck_assert_msg(got == want, "plan %s iface_ok %d fd %d: %s", nic_hmem_reg_name(regs[r]), iface_ok, fd,
                              nic_hmem_reg_name(got));
            }
    ck_assert_str_eq(nic_hmem_reg_name(GPU_REG_STAGING), "staging");
    ck_assert_str_eq(nic_hmem_reg_name(GPU_REG_IFACE), "iface");
    ck_assert_str_eq(nic_hmem_reg_name(GPU_REG_DMABUF), "dmabuf");
}
END_TEST

/* ---- fi_mr_regattr's arguments ------------------------------------------- */

START_TEST(mr_args_for_each_way)
{
    static char buf[8192];
    nic_hmem_mr_args a;
    err e = {0};
    uint64_t acc = FI_READ | FI_REMOTE_WRITE;

    /* Host memory: a plain iov, iface system, no flags. */
    nic_mem host = {.addr = buf, .len = sizeof(buf)};
    ck_assert_int_eq(nic_hmem_mr_args_fill(&host, acc, 77, &a, &e), 0);
    ck_assert_int_eq(a.attr.iface, FI_HMEM_SYSTEM);
    ck_assert_uint_eq(a.attr.iov_count, 1);
    ck_assert_ptr_eq(a.attr.mr_iov, &a.iov);
    ck_assert_ptr_eq(a.iov.iov_base, buf);
    ck_assert_uint_eq(a.iov.iov_len, sizeof(buf));
    ck_assert_uint_eq(a.attr.access, acc);
    ck_assert_uint_eq(a.attr.requested_key, 77);
    ck_assert_uint_eq(a.flags, 0);

    /* iface: the same range as CUDA memory of the daemon's device 3. */
    nic_mem gpu = {.addr = buf + 4096, .len = 4096, .reg = GPU_REG_IFACE, .device = 3, .dmabuf_fd = -1};
    ck_assert_int_eq(nic_hmem_mr_args_fill(&gpu, acc, 0, &a, &e), 0);
    ck_assert_int_eq(a.attr.iface, FI_HMEM_CUDA);
    ck_assert_int_eq(a.attr.device.cuda, 3);
    ck_assert_ptr_eq(a.iov.iov_base, buf + 4096);
    ck_assert_uint_eq(a.flags, 0);
    gpu.device = -1;
    ck_assert_int_eq(nic_hmem_mr_args_fill(&gpu, acc, 0, &a, &e), -EINVAL);
    ck_assert_ptr_nonnull(strstr(e.text, "no CUDA device"));

    /* dmabuf: fd and offset, with the region's first byte at addr. */
    nic_mem db = {.addr = buf + 4096, .len = 4096, .reg = GPU_REG_DMABUF, .device = 1, .dmabuf_fd = 42,
                  .dmabuf_off = 4096};
    int rc = nic_hmem_mr_args_fill(&db, acc, 5, &a, &e);
#if FABRIC_VERSION_HEADERS >= FI_VERSION(1, 20)
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(a.flags, FI_MR_DMABUF);
    ck_assert_ptr_eq(a.attr.dmabuf, &a.dmabuf);
    ck_assert_int_eq(a.dmabuf.fd, 42);
    ck_assert_uint_eq(a.dmabuf.offset, 4096);
    ck_assert_uint_eq(a.dmabuf.len, 4096);
    ck_assert_ptr_eq((char *)a.dmabuf.base_addr + a.dmabuf.offset, buf + 4096);
    ck_assert_int_eq(a.attr.iface, FI_HMEM_CUDA);
    ck_assert_int_eq(a.attr.device.cuda, 1);
    ck_assert_uint_eq(a.attr.iov_count, 1);
#else
    /* These headers have no struct fi_mr_dmabuf: said, not attempted. */
    ck_assert_int_eq(rc, -EOPNOTSUPP);
    ck_assert_msg(strstr(e.text, "1.20") && strstr(e.text, "rebuild"), "%s", e.text);
#endif
    db.dmabuf_fd = -1;
    ck_assert_int_eq(nic_hmem_mr_args_fill(&db, acc, 5, &a, &e), -EINVAL);
    ck_assert_ptr_nonnull(strstr(e.text, "no dmabuf fd"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nic_hmem");
    TCase *tc = tcase_create("nic_hmem");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, ask_follows_setting_build_headers_and_env);
    tcase_add_test(tc, plan_named_cases);
    tcase_add_test(tc, plan_every_combination);
    tcase_add_test(tc, kernel_versions_parse);
    tcase_add_test(tc, one_region_follows_the_plan);
    tcase_add_test(tc, mr_args_for_each_way);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
