/* Reading what tests/fi_interpose.c recorded (MCEFA_FI_LOG), for the
 * suites that preload it. */
#ifndef MCEFA_TEST_FI_LOG_H
#define MCEFA_TEST_FI_LOG_H

#include <check.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* How many lines of the log at path contain every one of the words (a
 * NULL-ended list, first and then ap). */
static inline int fi_log_vcount(const char *path, const char *first, va_list ap)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "nothing recorded in %s", path);
    char line[600];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        va_list aq;
        va_copy(aq, ap);
        bool all = strstr(line, first) != NULL;
        for (const char *w = va_arg(aq, const char *); w && all; w = va_arg(aq, const char *))
            all = strstr(line, w) != NULL;
        va_end(aq);
        n += all;
    }
    fclose(f);
    return n;
}

static inline int fi_log_count(const char *path, const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    int n = fi_log_vcount(path, first, ap);
    va_end(ap);
    return n;
}

#endif
