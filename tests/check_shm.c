/* Shared memory: sealed memfds, unaligned mappings, and the completion
 * area's wake-up across processes. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shm/completion.h"
#include "shm/memfd.h"
#include "suite.h"

START_TEST(memfd_is_sealed_and_checked)
{
    size_t real;
    int fd = shm_memfd_create("t", 10000, 0, &real);
    ck_assert_int_ge(fd, 0);
    ck_assert_uint_eq(real % 4096, 0);
    ck_assert_uint_ge(real, 10000);
    /* The owner cannot shrink it. */
    ck_assert_int_eq(ftruncate(fd, 0), -1);
    ck_assert_int_eq(errno, EPERM);
    const char *why;
    ck_assert_int_eq(shm_memfd_check(fd, 0, real, &why), 0);
    ck_assert_int_eq(shm_memfd_check(fd, 4096, real, &why), -ERANGE);
    ck_assert_int_eq(shm_memfd_check(fd, UINT64_MAX, 2, &why), -ERANGE);
    ck_assert_int_eq(shm_memfd_check(fd, 0, 0, &why), -ERANGE);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    ck_assert_int_eq(shm_memfd_check(p[0], 0, 1, &why), -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "memfd"));
    close(p[0]);
    close(p[1]);
    close(fd);
}
END_TEST

START_TEST(unaligned_mapping_sees_the_same_bytes)
{
    size_t real;
    int fd = shm_memfd_create("t", 3 * 4096, 0, &real);
    char *a = mmap(NULL, real, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert_ptr_ne(a, MAP_FAILED);
    void *base;
    size_t blen;
    char *b = shm_map(fd, 5000, 3000, 1, &base, &blen);
    ck_assert_ptr_nonnull(b);
    strcpy(a + 5000, "shared bytes");
    ck_assert_str_eq(b, "shared bytes");
    b[2999] = 'z';
    ck_assert_int_eq(a[7999], 'z');
    ck_assert_uint_eq(blen, 4096);
    munmap(base, blen);
    munmap(a, real);
    close(fd);
}
END_TEST

START_TEST(completion_wakes_another_process)
{
    size_t real;
    int fd = shm_memfd_create("cq", shm_cq_size(64), 0, &real);
    void *area = mmap(NULL, real, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    shm_cq_init(area, 64);
    shm_cq_slot *s = shm_cq_slots(area);
    pid_t kid = fork();
    if (kid == 0) {
        /* The "client": waits for 2 completions of batch at slot 10. */
        shm_cq_header *h = area;
        while (atomic_load(&s[10].done) < 2) {
            uint32_t seq = atomic_load(&h->wake_seq);
            if (atomic_load(&s[10].done) >= 2)
                break;
            shm_cq_wait(area, seq, 5000);
        }
        _exit(s[11].state == MCEFA_STATE_COMPLETED && s[12].state == MCEFA_STATE_FAILED && s[12].error == -EIO &&
                      atomic_load(&s[10].failed) == 1
                  ? 0
                  : 1);
    }
    usleep(50000);
    shm_cq_complete(area, 10, 11, 0);
    usleep(20000);
    shm_cq_complete(area, 10, 12, -EIO);
    int st;
    ck_assert_int_eq(waitpid(kid, &st, 0), kid);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 0);
    munmap(area, real);
    close(fd);
}
END_TEST

START_TEST(wait_times_out)
{
    size_t real;
    int fd = shm_memfd_create("cq", shm_cq_size(4), 0, &real);
    void *area = mmap(NULL, real, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    shm_cq_init(area, 4);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    ck_assert_int_eq(shm_cq_wait(area, 0, 50), -ETIMEDOUT);
    clock_gettime(CLOCK_MONOTONIC, &b);
    ck_assert_int_ge((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000, 40);
    /* A stale sequence number returns at once. */
    ck_assert_int_eq(shm_cq_wait(area, 12345, 5000), 0);
    ck_assert_uint_eq(((shm_cq_header *)area)->waiters, 0);
    munmap(area, real);
    close(fd);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("shm");
    TCase *tc = tcase_create("shm");
    tcase_add_test(tc, memfd_is_sealed_and_checked);
    tcase_add_test(tc, unaligned_mapping_sees_the_same_bytes);
    tcase_add_test(tc, completion_wakes_another_process);
    tcase_add_test(tc, wait_times_out);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
