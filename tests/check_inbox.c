/* The notification inbox (daemon/inbox.c): order, the byte cap, the size
 * bounds, and that nothing is lost or kept past a clear. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "inbox.h"
#include "mcefa_defaults.h"
#include "suite.h"

START_TEST(fifo_order_and_contents)
{
    inbox q;
    inbox_init(&q);
    char name[32], msg[32];
    for (int i = 0; i < 5000; i++) {
        int nl = snprintf(name, sizeof(name), "n%d", i), ml = snprintf(msg, sizeof(msg), "message %d", i * 7);
        ck_assert_int_eq(inbox_push(&q, 1 << 20, name, (size_t)nl, msg, (size_t)ml), 0);
    }
    ck_assert_uint_eq(q.n, 5000);
    for (int i = 0; i < 5000; i++) {
        const inbox_item *it = inbox_first(&q);
        ck_assert_ptr_nonnull(it);
        int nl = snprintf(name, sizeof(name), "n%d", i), ml = snprintf(msg, sizeof(msg), "message %d", i * 7);
        ck_assert_uint_eq(it->name_len, (size_t)nl);
        ck_assert_uint_eq(it->msg_len, (size_t)ml);
        ck_assert(memcmp(it->data, name, (size_t)nl) == 0);
        ck_assert(memcmp(it->data + nl, msg, (size_t)ml) == 0);
        inbox_pop(&q);
    }
    ck_assert_ptr_null(inbox_first(&q));
    ck_assert_uint_eq(q.n, 0);
    ck_assert_uint_eq(q.bytes, 0);
    inbox_pop(&q); /* popping an empty inbox changes nothing */
    ck_assert_uint_eq(q.n, 0);
}
END_TEST

START_TEST(cap_refuses_and_keeps_what_it_has)
{
    inbox q;
    inbox_init(&q);
    size_t one = inbox_cost(4, 10);
    size_t cap = 3 * one;
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(inbox_push(&q, cap, "name", 4, "0123456789", 10), 0);
    ck_assert_uint_eq(q.bytes, cap);
    /* Exactly full: the next one is refused, whatever its size. */
    ck_assert_int_eq(inbox_push(&q, cap, "name", 4, "0123456789", 10), -ENOBUFS);
    ck_assert_int_eq(inbox_push(&q, cap, "", 0, "", 0), -ENOBUFS);
    ck_assert_uint_eq(q.n, 3);
    /* Taking one makes room for exactly one. */
    inbox_pop(&q);
    ck_assert_int_eq(inbox_push(&q, cap, "name", 4, "0123456789", 10), 0);
    ck_assert_int_eq(inbox_push(&q, cap, "name", 4, "0123456789", 10), -ENOBUFS);
    inbox_clear(&q);
    ck_assert_uint_eq(q.n, 0);
    ck_assert_uint_eq(q.bytes, 0);
    ck_assert_ptr_null(inbox_first(&q));
    /* Empty name and message are a notification too, and cost something. */
    ck_assert_uint_gt(inbox_cost(0, 0), 0);
    ck_assert_int_eq(inbox_push(&q, cap, NULL, 0, NULL, 0), 0);
    ck_assert_uint_eq(inbox_first(&q)->name_len, 0);
    inbox_clear(&q);
}
END_TEST

START_TEST(size_bounds)
{
    err e = {0};
    ck_assert_int_eq(inbox_check_sizes(MCEFA_NOTIFY_NAME_MAX, MCEFA_NOTIFY_MSG_MAX, &e), 0);
    ck_assert_int_eq(inbox_check_sizes(0, 0, &e), 0);
    ck_assert_int_eq(inbox_check_sizes(MCEFA_NOTIFY_NAME_MAX + 1, 0, &e), -EMSGSIZE);
    ck_assert_ptr_nonnull(strstr(e.text, "MCEFA_NOTIFY_NAME_MAX"));
    ck_assert_int_eq(inbox_check_sizes(0, MCEFA_NOTIFY_MSG_MAX + 1, &e), -EMSGSIZE);
    ck_assert_ptr_nonnull(strstr(e.text, "MCEFA_NOTIFY_MSG_MAX"));
    /* The smallest notify_queue_bytes (128 KiB) holds one of the largest. */
    ck_assert_uint_le(inbox_cost(MCEFA_NOTIFY_NAME_MAX, MCEFA_NOTIFY_MSG_MAX), 131072);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("inbox");
    TCase *tc = tcase_create("inbox");
    tcase_add_test(tc, fifo_order_and_contents);
    tcase_add_test(tc, cap_refuses_and_keeps_what_it_has);
    tcase_add_test(tc, size_bounds);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
