/* Batches without a daemon: slot allocation in a completion area, the
 * transfer states and errors, freeing with transfers in flight. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "shm/completion.h"
#include "suite.h"

static void *area;
static batch_set bs;
#define SLOTS 64

static void setup(void)
{
    area = calloc(1, shm_cq_size(SLOTS));
    shm_cq_init(area, SLOTS);
    batch_set_init(&bs, area, SLOTS);
}

static void teardown(void)
{
    batch_destroy_all(&bs);
    free(area);
}

START_TEST(first_fit_and_reuse)
{
    batch *a, *b, *c;
    err e;
    ck_assert_int_eq(batch_alloc(&bs, 10, &a, &e), 0);
    ck_assert_int_eq(batch_alloc(&bs, 20, &b, &e), 0);
    ck_assert_uint_eq(a->first_slot, 0);
    ck_assert_uint_eq(b->first_slot, 11); /* header + 10 */
    uint64_t a_id = a->id;
    ck_assert_int_eq(batch_free(&bs, a_id, false, &e), 0);
    ck_assert_ptr_null(batch_find(&bs, a_id));
    /* The hole at the start fits 10 again. */
    ck_assert_int_eq(batch_alloc(&bs, 10, &c, &e), 0);
    ck_assert_uint_eq(c->first_slot, 0);
    ck_assert_uint_ne(c->id, a_id);
    ck_assert_uint_eq(batch_count(&bs), 2);
}
END_TEST

START_TEST(bounds_and_exhaustion)
{
    batch *a;
    err e;
    ck_assert_int_eq(batch_alloc(&bs, 0, &a, &e), -EINVAL);
    ck_assert_int_eq(batch_alloc(&bs, SLOTS, &a, &e), -EINVAL);
    ck_assert_ptr_nonnull(strstr(e.text, "completion_slots"));
    ck_assert_int_eq(batch_alloc(&bs, SLOTS - 1, &a, &e), 0);
    batch *b;
    ck_assert_int_eq(batch_alloc(&bs, 1, &b, &e), -ENOSPC);
    ck_assert_ptr_nonnull(strstr(e.text, "free finished batches"));
    ck_assert_int_eq(batch_free(&bs, 999, false, &e), -ENOENT);
}
END_TEST

START_TEST(states_errors_and_shared_area)
{
    batch *b;
    err e;
    ck_assert_int_eq(batch_alloc(&bs, 4, &b, &e), 0);
    b->count = 2;
    batch_begin(b, 0, 0);
    batch_begin(b, 1, 0);
    ck_assert_uint_eq(atomic_load(&bs.inflight), 2);
    /* Transfer 1 in two pieces: the first error wins, the last piece
     * finishes it. */
    atomic_store(&b->reqs[1].remaining, 2);
    batch_piece_done(b, 1, -EIO, "first");
    ck_assert_uint_eq(atomic_load(&b->state[1]), MCEFA_STATE_PENDING);
    batch_piece_done(b, 1, -ETIMEDOUT, "second");
    ck_assert_uint_eq(atomic_load(&b->state[1]), MCEFA_STATE_FAILED);
    ck_assert_int_eq(atomic_load(&b->err[1]), -EIO);
    ck_assert_str_eq(b->err_text[1], "first");
    batch_finish(b, 0, 0, NULL);
    ck_assert_uint_eq(atomic_load(&b->state[0]), MCEFA_STATE_COMPLETED);
    ck_assert_uint_eq(atomic_load(&bs.inflight), 0);
    /* The client's view in shared memory. */
    shm_cq_slot *h = shm_cq_slots(area) + b->first_slot;
    ck_assert_uint_eq(atomic_load(&h->done), 2);
    ck_assert_uint_eq(atomic_load(&h->failed), 1);
    ck_assert_uint_eq(atomic_load(&h[2].state), MCEFA_STATE_FAILED);
}
END_TEST

START_TEST(free_in_flight)
{
    batch *b, *c;
    err e;
    ck_assert_int_eq(batch_alloc(&bs, SLOTS - 1, &b, &e), 0);
    b->count = 1;
    batch_begin(b, 0, 0);
    ck_assert_int_eq(batch_free(&bs, b->id, false, &e), -EBUSY);
    ck_assert_ptr_nonnull(strstr(e.text, "in flight"));
    /* Released for the client at once, but its slots stay taken until the
     * last completion has written them. */
    ck_assert_int_eq(batch_free(&bs, b->id, true, &e), 0);
    ck_assert_ptr_null(batch_find(&bs, b->id));
    ck_assert_uint_eq(batch_count(&bs), 0);
    ck_assert_int_eq(batch_alloc(&bs, 1, &c, &e), -ENOSPC);
    batch_finish(b, 0, 0, NULL);
    ck_assert_int_eq(batch_alloc(&bs, SLOTS - 1, &c, &e), 0);
    ck_assert_uint_eq(c->first_slot, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("batch");
    TCase *tc = tcase_create("batch");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, first_fit_and_reuse);
    tcase_add_test(tc, bounds_and_exhaustion);
    tcase_add_test(tc, states_errors_and_shared_area);
    tcase_add_test(tc, free_in_flight);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
