/* A NIC worker's per-destination bookkeeping (nic_dest.c), without a NIC:
 * ops keep their order, destinations with waiting ops take turns, and a
 * destination goes away only once it holds nothing. */
#include <check.h>
#include <stdlib.h>

#include "nic_dest.h"
#include "suite.h"

START_TEST(lists_keep_order)
{
    net_op ops[3] = {0};
    nic_op_list q = {0};
    for (int i = 0; i < 3; i++)
        nic_dest_list_push(&q, &ops[i]);
    ck_assert_ptr_eq(q.head, &ops[0]);
    ck_assert_ptr_eq(q.tail, &ops[2]);
    nic_dest_list_advance(&q, q.head->next);
    ck_assert_ptr_eq(q.head, &ops[1]);
    nic_dest_list_advance(&q, q.head->next);
    nic_dest_list_advance(&q, q.head->next);
    ck_assert_ptr_null(q.head);
    ck_assert_ptr_null(q.tail);
    nic_dest_list_push(&q, &ops[1]);
    ck_assert_ptr_eq(q.head, &ops[1]);
    ck_assert_ptr_eq(q.tail, &ops[1]);
}
END_TEST

START_TEST(freed_only_when_idle)
{
    nic_dests t = {0};
    ck_assert_ptr_null(nic_dest_find(&t, 7));
    nic_dest *d = nic_dest_get(&t, 7);
    ck_assert_ptr_nonnull(d);
    ck_assert_ptr_eq(nic_dest_get(&t, 7), d);
    ck_assert_ptr_eq(nic_dest_find(&t, 7), d);
    d->posted = 1;
    nic_dest_put(&t, d);
    ck_assert_ptr_eq(nic_dest_find(&t, 7), d); /* holds a posted op */
    d->posted = 0;
    net_op op = {0};
    nic_dest_wait(&t, d, &op);
    nic_dest_put(&t, d);
    ck_assert_ptr_eq(nic_dest_find(&t, 7), d); /* holds a waiting op */
    ck_assert_uint_eq(nic_dest_blocked_count(&t), 1);
    ck_assert_ptr_eq(nic_dest_next_blocked(&t), d);
    nic_dest_list_advance(&d->wait, NULL);
    nic_dest_requeue(&t, d); /* nothing waits, nothing posted: gone */
    ck_assert_ptr_null(nic_dest_find(&t, 7));
    ck_assert_uint_eq(nic_dest_blocked_count(&t), 0);
    nic_dest_put(&t, NULL);
}
END_TEST

START_TEST(blocked_take_turns)
{
    nic_dests t = {0};
    nic_dest *a = nic_dest_get(&t, 1), *b = nic_dest_get(&t, 2);
    net_op oa[2] = {0}, ob = {0};
    nic_dest_wait(&t, a, &oa[0]);
    nic_dest_wait(&t, b, &ob);
    nic_dest_wait(&t, a, &oa[1]); /* a is on the list once */
    ck_assert_uint_eq(nic_dest_blocked_count(&t), 2);
    ck_assert_ptr_eq(a->wait.head, &oa[0]);
    ck_assert_ptr_eq(a->wait.tail, &oa[1]);
    /* a still waits: back at the end, behind b. */
    ck_assert_ptr_eq(nic_dest_next_blocked(&t), a);
    ck_assert_uint_eq(nic_dest_blocked_count(&t), 1);
    nic_dest_requeue(&t, a);
    ck_assert_ptr_eq(nic_dest_next_blocked(&t), b);
    b->posted = 1; /* its op went out */
    nic_dest_list_advance(&b->wait, NULL);
    nic_dest_requeue(&t, b);
    ck_assert_ptr_eq(nic_dest_find(&t, 2), b); /* still holds it posted */
    ck_assert(!b->blocked);
    ck_assert_ptr_eq(nic_dest_next_blocked(&t), a);
    ck_assert_ptr_null(nic_dest_next_blocked(&t));
    nic_dest_requeue(&t, a);
    ck_assert_uint_eq(nic_dest_blocked_count(&t), 1);
    nic_dests_free(&t);
    ck_assert_ptr_null(nic_dest_find(&t, 1));
    ck_assert_uint_eq(nic_dest_blocked_count(&t), 0);
}
END_TEST

START_TEST(many_destinations)
{
    /* AV table addresses are small integers; other AV types are not. */
    nic_dests t = {0};
    enum { N = 2000 };
    for (uint64_t i = 0; i < N; i++)
        ck_assert_ptr_nonnull(nic_dest_get(&t, i * (i & 1 ? 1 : 0x100000001ull)));
    for (uint64_t i = 0; i < N; i++) {
        nic_dest *d = nic_dest_find(&t, i * (i & 1 ? 1 : 0x100000001ull));
        ck_assert_ptr_nonnull(d);
        ck_assert_uint_eq(d->addr, i * (i & 1 ? 1 : 0x100000001ull));
    }
    for (uint64_t i = 0; i < N; i += 2)
        nic_dest_put(&t, nic_dest_find(&t, i * 0x100000001ull));
    for (uint64_t i = 0; i < N; i++)
        ck_assert(!nic_dest_find(&t, i * (i & 1 ? 1 : 0x100000001ull)) == !(i & 1));
    nic_dests_free(&t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nic_dest");
    TCase *tc = tcase_create("nic_dest");
    tcase_add_test(tc, lists_keep_order);
    tcase_add_test(tc, freed_only_when_idle);
    tcase_add_test(tc, blocked_take_turns);
    tcase_add_test(tc, many_destinations);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
