/* NIC choice and striping (route.c), without NICs: which local NICs may
 * carry a transfer, which remote NIC each targets, how large transfers
 * split. */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>

#include "route.h"
#include "suite.h"

START_TEST(near_first)
{
    /* Memory near NICs 1 and 3 (its NUMA node's, or its GPU's). */
    route_nic n[4] = {{false, true, true}, {true, true, true}, {false, true, true}, {true, true, true}};
    unsigned out[4];
    ck_assert_uint_eq(route_local(n, 4, out), 2);
    ck_assert_uint_eq(out[0], 1);
    ck_assert_uint_eq(out[1], 3);
    /* Placement unknown: no NIC is near, every NIC. */
    for (int i = 0; i < 4; i++)
        n[i].near = false;
    ck_assert_uint_eq(route_local(n, 4, out), 4);
}
END_TEST

START_TEST(falls_back_to_any_nic_that_reaches)
{
    /* The near NIC does not reach the peer (another fabric). */
    route_nic n[3] = {{true, true, false}, {false, true, true}, {false, true, true}};
    unsigned out[3];
    ck_assert_uint_eq(route_local(n, 3, out), 2);
    ck_assert_uint_eq(out[0], 1);
    ck_assert_uint_eq(out[1], 2);
    /* Nothing reaches: nothing to use. */
    route_nic none[2] = {{true, true, false}, {false, true, false}};
    ck_assert_uint_eq(route_local(none, 2, out), 0);
}
END_TEST

START_TEST(only_nics_holding_the_region)
{
    /* A GPU region registered on NIC 2 only (its PCIe-local NIC), though
     * NICs 0 and 1 are on its NUMA node. */
    route_nic n[3] = {{true, false, true}, {true, false, true}, {false, true, true}};
    unsigned out[3];
    ck_assert_uint_eq(route_local(n, 3, out), 1);
    ck_assert_uint_eq(out[0], 2);
}
END_TEST

START_TEST(remote_round_robin_skips_unreachable)
{
    bool row[4] = {true, false, true, true};
    unsigned rr = 0;
    ck_assert_int_eq(route_remote(row, 4, 0, &rr), 0);
    ck_assert_int_eq(route_remote(row, 4, 0, &rr), 2);
    ck_assert_int_eq(route_remote(row, 4, 0, &rr), 3);
    ck_assert_int_eq(route_remote(row, 4, 0, &rr), 0);
    bool none[2] = {false, false};
    ck_assert_int_eq(route_remote(none, 2, 0, &rr), -1);
    ck_assert_int_eq(route_remote(none, 0, 0, &rr), -1);
}
END_TEST

/* The owner names the NICs nearest its memory (a p5en GPU's two): they
 * take every op while one of them is reachable; the others only when none
 * is. Bits past the peer's NICs, as a hostile peer may send, choose
 * nothing. */
START_TEST(remote_preferred_first)
{
    bool row[16];
    for (int j = 0; j < 16; j++)
        row[j] = true;
    uint64_t pref = 1u << 6 | 1u << 7;
    unsigned rr = 0;
    for (int k = 0; k < 8; k++)
        ck_assert_int_eq(route_remote(row, 16, pref, &rr), 6 + k % 2);
    row[7] = false;
    ck_assert_int_eq(route_remote(row, 16, pref, &rr), 6);
    ck_assert_int_eq(route_remote(row, 16, pref, &rr), 6);
    row[6] = false;
    int j = route_remote(row, 16, pref, &rr);
    ck_assert(j >= 0 && j != 6 && j != 7);
    rr = 0;
    ck_assert_int_eq(route_remote(row, 4, ~0ull << 4, &rr), 0);
    ck_assert_int_eq(route_remote(row, 4, ~0ull << 4, &rr), 1);
}
END_TEST

START_TEST(stripes)
{
    uint64_t piece;
    /* At or under the threshold, or one NIC: one piece. */
    ck_assert_uint_eq(route_stripes(4 << 20, 4 << 20, 4, &piece), 1);
    ck_assert_uint_eq(piece, 4 << 20);
    ck_assert_uint_eq(route_stripes(64 << 20, 4 << 20, 1, &piece), 1);
    /* Over it: one piece per NIC, 4 KiB aligned, covering everything. */
    ck_assert_uint_eq(route_stripes(64 << 20, 4 << 20, 4, &piece), 4);
    ck_assert_uint_eq(piece, 16 << 20);
    unsigned n = route_stripes((8 << 20) + 1, 4 << 20, 3, &piece);
    ck_assert_uint_eq(piece % 4096, 0);
    ck_assert_uint_ge((uint64_t)n * piece, (8 << 20) + 1);
    ck_assert_uint_le(n, 3);
    /* Rounding up may leave the last NIC nothing: fewer pieces, not an
     * empty one. */
    n = route_stripes(4097 + (4 << 20), 4 << 20, 16, &piece);
    ck_assert_uint_lt((uint64_t)(n - 1) * piece, 4097 + (4 << 20));
}
END_TEST

/* p5-like: 32 NICs, 16 per NUMA node; memory is registered with its
 * node's NICs only, so each pins half of what registering everywhere would. */
START_TEST(registration_follows_numa)
{
    int numa[32];
    bool use[32];
    for (int i = 0; i < 32; i++)
        numa[i] = i < 16 ? 0 : 1;
    ck_assert_uint_eq(route_register(numa, 32, 1, false, use), 16);
    for (int i = 0; i < 32; i++)
        ck_assert(use[i] == (i >= 16));
    /* The setting, unknown memory and a node without NICs: every NIC. */
    ck_assert_uint_eq(route_register(numa, 32, 1, true, use), 32);
    ck_assert_uint_eq(route_register(numa, 32, -1, false, use), 32);
    ck_assert_uint_eq(route_register(numa, 32, 3, false, use), 32);
    /* A NIC of unknown node may be local: it is kept. */
    numa[5] = -1;
    ck_assert_uint_eq(route_register(numa, 32, 1, false, use), 17);
    ck_assert(use[5] && !use[4]);
    /* No NIC knows its node (a VM): every NIC. */
    int unknown[4] = {-1, -1, -1, -1};
    ck_assert_uint_eq(route_register(unknown, 4, 0, false, use), 4);
}
END_TEST

START_TEST(first_rotates)
{
    unsigned a = route_first(4), b = route_first(4);
    ck_assert_uint_lt(a, 4);
    ck_assert_uint_eq(b, (a + 1) % 4);
    ck_assert_uint_eq(route_first(0), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("route");
    TCase *tc = tcase_create("route");
    tcase_add_test(tc, near_first);
    tcase_add_test(tc, falls_back_to_any_nic_that_reaches);
    tcase_add_test(tc, only_nics_holding_the_region);
    tcase_add_test(tc, remote_round_robin_skips_unreachable);
    tcase_add_test(tc, remote_preferred_first);
    tcase_add_test(tc, stripes);
    tcase_add_test(tc, registration_follows_numa);
    tcase_add_test(tc, first_rotates);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
