/* The peer table without a daemon: names, bounds, per-peer address tables
 * sized to the real NIC counts. */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "ident.h"
#include "peer_internal.h"
#include "suite.h"

static void fake_resolver(const char *host, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s-addr:1", host);
}

static void setup(void)
{
    ident_init("self");
    peer_table_init(2, 3);
    peer_table_set_resolver(fake_resolver);
}

static void teardown(void)
{
    peer_table_free();
}

START_TEST(find_or_create)
{
    peer *a, *b;
    err e;
    ck_assert_int_eq(peer_for_name("hosta:15000", &a, &e), 0);
    ck_assert_int_eq(peer_for_name("hosta:15001", &b, &e), 0);
    ck_assert_ptr_eq(a, b);
    ck_assert_str_eq(peer_host(a), "hosta");
    ck_assert_str_eq(peer_address(a), "hosta-addr:1");
    ck_assert(!peer_connected(a));
    ck_assert_uint_eq(peer_epoch(a), 0);
    ck_assert_uint_eq(peer_nrnics(a), 0);
    ck_assert_ptr_eq(peer_first(), a);
    ck_assert_ptr_null(peer_next(a));
}
END_TEST

START_TEST(bad_names)
{
    peer *p;
    err e;
    ck_assert_int_eq(peer_for_name(":15000", &p, &e), -EINVAL);
    ck_assert_ptr_nonnull(strstr(e.text, "no host part"));
    ck_assert_int_eq(peer_for_name("bad host:1", &p, &e), -EINVAL);
    ck_assert_ptr_nonnull(strstr(e.text, "printable"));
    char longname[400];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    ck_assert_int_eq(peer_for_name(longname, &p, &e), -EINVAL);
}
END_TEST

START_TEST(bounded)
{
    peer *a, *b, *c, *p;
    err e;
    ck_assert_int_eq(peer_for_name("a:1", &a, &e), 0);
    ck_assert_int_eq(peer_for_name("b:1", &b, &e), 0);
    ck_assert_int_eq(peer_for_name("c:1", &c, &e), 0);
    /* Full, but none ever completed a handshake or is in use: the oldest
     * makes room. */
    ck_assert_int_eq(peer_for_name("d:1", &p, &e), 0);
    ck_assert_uint_eq(peer_nrnics(p), 0);
    for (peer *q = peer_first(); q; q = peer_next(q))
        ck_assert_str_ne(peer_host(q), "a");
    /* Peers in use, or that a handshake reached, stay. */
    peer_hold(b);
    c->layout_gen = 1;
    peer_hold(p);
    ck_assert_int_eq(peer_for_name("e:1", &p, &e), -ENOSPC);
    ck_assert_ptr_nonnull(strstr(e.text, "too many peer hosts"));
    ck_assert_ptr_nonnull(strstr(e.text, "max_peers"));
    /* Known ones are still found. */
    ck_assert_int_eq(peer_for_name("b:7", &p, &e), 0);
    ck_assert_ptr_eq(p, b);
    peer_release(b);
    ck_assert_int_eq(peer_for_name("e:1", &p, &e), 0);
}
END_TEST

START_TEST(pairs_sized_to_nic_counts)
{
    peer *p;
    err e;
    ck_assert_int_eq(peer_for_name("wide:1", &p, &e), 0);
    ck_assert_int_eq(peer_resize(p, 16), 0);
    ck_assert_uint_eq(peer_nrnics(p), 16);
    ck_assert_uint_eq(peer_pairs(p), 0);
    *peer_pair_slot(p, 1, 15) = 42;
    *peer_pair_slot(p, 0, 3) = 7;
    *peer_warm_slot(p, 0, 3) = true;
    ck_assert_uint_eq(peer_pair(p, 1, 15), 42);
    ck_assert_uint_eq(peer_pairs(p), 2);
    ck_assert_uint_eq(peer_pairs_warm(p), 1);
    ck_assert(peer_pair_warm(p, 0, 3));
    /* Outside the table is never a valid address. */
    ck_assert_uint_eq(peer_pair(p, 2, 0), FI_ADDR_NOTAVAIL);
    ck_assert_uint_eq(peer_pair(p, 0, 16), FI_ADDR_NOTAVAIL);
    uint64_t gen = atomic_load(peer_gen(p));
    peer_forget_av(p);
    ck_assert_uint_eq(peer_pairs(p), 0);
    ck_assert_uint_eq(peer_pairs_warm(p), 0);
    ck_assert_uint_eq(atomic_load(peer_gen(p)), gen + 1);
}
END_TEST

START_TEST(counters)
{
    peer *p;
    err e;
    ck_assert_int_eq(peer_for_name("count:1", &p, &e), 0);
    peer_count_op(p, 100, false);
    peer_count_op(p, 50, true);
    ck_assert_uint_eq(peer_ops(p), 2);
    ck_assert_uint_eq(peer_bytes(p), 100);
    ck_assert_uint_eq(peer_errors(p), 1);
}
END_TEST

START_TEST(no_nics_no_peers)
{
    peer_table_free();
    peer_table_init(0, 3);
    peer *p;
    err e;
    ck_assert_int_eq(peer_for_name("far:1", &p, &e), -ENETUNREACH);
    ck_assert_ptr_nonnull(strstr(e.text, "no NIC"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("peer_table");
    TCase *tc = tcase_create("peer_table");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, find_or_create);
    tcase_add_test(tc, bad_names);
    tcase_add_test(tc, bounded);
    tcase_add_test(tc, pairs_sized_to_nic_counts);
    tcase_add_test(tc, counters);
    tcase_add_test(tc, no_nics_no_peers);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
