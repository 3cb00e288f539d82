/* Runs one Check suite and turns its result into an exit status. */
#ifndef MCEFA_TEST_SUITE_H
#define MCEFA_TEST_SUITE_H

#include <check.h>

static inline int run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

#endif
