/* The registration table: lookup, overlap, bounds and overflow. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "region.h"
#include "suite.h"

static region *mk(uint64_t addr, uint64_t len)
{
    /* No mapping behind it: translation is checked as arithmetic. */
    return region_create(NULL, addr, len, (char *)(uintptr_t)(0x100000 + addr), -1);
}

START_TEST(insert_find_remove)
{
    region_table t = {0};
    ck_assert_int_eq(region_table_insert(&t, mk(0x3000, 0x1000)), 0);
    ck_assert_int_eq(region_table_insert(&t, mk(0x1000, 0x1000)), 0);
    ck_assert_int_eq(region_table_insert(&t, mk(0x2000, 0x1000)), 0); /* touching both */
    ck_assert_uint_eq(t.n, 3);
    ck_assert_uint_eq(t.bytes, 0x3000);
    for (size_t i = 1; i < t.n; i++)
        ck_assert_uint_lt(t.v[i - 1]->addr, t.v[i]->addr);

    region *r = region_table_find(&t, 0x2800, 0x800);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->addr, 0x2000);
    ck_assert_ptr_eq(region_translate(r, 0x2800), (char *)(uintptr_t)(0x100000 + 0x2800));
    /* Exactly to the end is inside; one byte more is not, even though the
     * next region starts there (a transfer never spans two regions). */
    ck_assert_ptr_nonnull(region_table_find(&t, 0x2000, 0x1000));
    ck_assert_ptr_null(region_table_find(&t, 0x2000, 0x1001));
    ck_assert_ptr_null(region_table_find(&t, 0x0fff, 2));
    ck_assert_ptr_null(region_table_find(&t, 0x4000, 1));
    ck_assert_ptr_null(region_table_find(&t, 0, 1));
    ck_assert_ptr_nonnull(region_table_find_addr(&t, 0x3fff));
    ck_assert_ptr_null(region_table_find_addr(&t, 0x4000));

    r = region_table_remove(&t, 0x2000);
    ck_assert_ptr_nonnull(r);
    region_unref(r);
    ck_assert_ptr_null(region_table_remove(&t, 0x2000)); /* twice */
    ck_assert_ptr_null(region_table_remove(&t, 0x1800)); /* not a start */
    ck_assert_ptr_null(region_table_find(&t, 0x2000, 1));
    ck_assert_uint_eq(t.bytes, 0x2000);
    region_table_clear(&t);
    ck_assert_uint_eq(t.n, 0);
}
END_TEST

START_TEST(overlaps_rejected)
{
    region_table t = {0};
    ck_assert_int_eq(region_table_insert(&t, mk(0x10000, 0x10000)), 0);
    uint64_t cases[][2] = {
        {0x10000, 0x10000}, {0x8000, 0x8001}, {0x1ffff, 1}, {0x18000, 0x100000}, {0x0, 0x100000}, {0x12000, 0x10},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        region *r = mk(cases[i][0], cases[i][1]);
        ck_assert_msg(region_table_insert(&t, r) == -EEXIST, "case %zu accepted", i);
        region_unref(r);
    }
    region *z = mk(0x50000, 0);
    ck_assert_int_eq(region_table_insert(&t, z), -EINVAL);
    region_unref(z);
    region *w = mk(UINT64_MAX - 10, 100);
    ck_assert_int_eq(region_table_insert(&t, w), -EINVAL);
    region_unref(w);
    ck_assert_uint_eq(t.n, 1);
    region_table_clear(&t);
}
END_TEST

START_TEST(lookup_does_not_overflow)
{
    region_table t = {0};
    uint64_t top = UINT64_MAX - 0x1fff; /* ends one page below the top */
    ck_assert_int_eq(region_table_insert(&t, mk(top, 0x1000)), 0);
    ck_assert_ptr_nonnull(region_table_find(&t, top, 0x1000));
    ck_assert_ptr_null(region_table_find(&t, top, 0x1001));
    ck_assert_ptr_null(region_table_find(&t, top + 0x10, UINT64_MAX));
    ck_assert_ptr_null(region_table_find(&t, UINT64_MAX, UINT64_MAX));
    /* A range that would end exactly at 2^64 wraps to 0: refused. */
    region *w = mk(UINT64_MAX - 0xfff, 0x1000);
    ck_assert_int_eq(region_table_insert(&t, w), -EINVAL);
    region_unref(w);
    region_table_clear(&t);
}
END_TEST

START_TEST(many_regions_sorted)
{
    region_table t = {0};
    /* Inserted in a scrambled order. */
    for (uint64_t k = 0; k < 1000; k++) {
        uint64_t i = (k * 7919) % 1000;
        ck_assert_int_eq(region_table_insert(&t, mk(0x100000 + i * 0x2000, 0x1000)), 0);
    }
    for (uint64_t i = 0; i < 1000; i++) {
        region *r = region_table_find(&t, 0x100000 + i * 0x2000 + 0x10, 0x100);
        ck_assert_ptr_nonnull(r);
        ck_assert_uint_eq(r->addr, 0x100000 + i * 0x2000);
        ck_assert_ptr_null(region_table_find(&t, 0x100000 + i * 0x2000 + 0x1000, 1)); /* the gaps */
    }
    region_table_clear(&t);
}
END_TEST

START_TEST(references_outlive_the_table)
{
    region_table t = {0};
    region *r = mk(0x1000, 0x1000);
    ck_assert_int_eq(region_table_insert(&t, r), 0);
    region_ref(r); /* a transfer in flight */
    region *out = region_table_remove(&t, 0x1000);
    region_unref(out);
    /* Still valid for the transfer. */
    ck_assert_uint_eq(r->length, 0x1000);
    ck_assert_int_eq(atomic_load(&r->refs), 1);
    region_unref(r);
    region_table_clear(&t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("region");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, insert_find_remove);
    tcase_add_test(tc, overlaps_rejected);
    tcase_add_test(tc, lookup_does_not_overflow);
    tcase_add_test(tc, many_regions_sorted);
    tcase_add_test(tc, references_outlive_the_table);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
