/* Configuration: defaults, file, environment, flags, and the errors that
 * name what was wrong. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "suite.h"

static char path[64];

static void write_conf(const char *text)
{
    snprintf(path, sizeof(path), "/tmp/mcefad-conf-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* Runs config_load with stderr captured into err. */
static int load(mcefad_config *c, int argc, char **argv, char *err, size_t errlen)
{
    fflush(stderr);
    int saved = dup(2);
    char ep[] = "/tmp/mcefad-err-XXXXXX";
    int efd = mkstemp(ep);
    dup2(efd, 2);
    int rc = config_load(c, argc, argv);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    lseek(efd, 0, SEEK_SET);
    ssize_t n = read(efd, err, errlen - 1);
    err[n > 0 ? n : 0] = 0;
    close(efd);
    unlink(ep);
    return rc;
}

START_TEST(defaults)
{
    mcefad_config c;
    char err[1024];
    char *argv[] = {"mcefad", NULL};
    ck_assert_int_eq(load(&c, 1, argv, err, sizeof(err)), 0);
    ck_assert_str_eq(c.socket_path, "/run/mcefad/mcefad.sock");
    ck_assert_uint_eq(c.socket_mode, 0660);
    ck_assert_uint_eq(c.copy_threads, 2);
    ck_assert(c.populate);
    config_free(&c);
}
END_TEST

START_TEST(file_env_flags_precedence)
{
    write_conf("# comment\n  socket_path = /tmp/from-file.sock \ncopy_threads=3\nlog_level = \"debug\"\n"
               "populate = no\n\n");
    setenv("MCEFAD_COPY_THREADS", "5", 1);
    char flag[80];
    snprintf(flag, sizeof(flag), "--config=%s", path);
    char *argv[] = {"mcefad", flag, "--log-level=warn", "--max_clients", "7", NULL};
    mcefad_config c;
    char err[1024];
    ck_assert_int_eq(load(&c, 5, argv, err, sizeof(err)), 0);
    ck_assert_str_eq(c.socket_path, "/tmp/from-file.sock");
    ck_assert_uint_eq(c.copy_threads, 5); /* env over file */
    ck_assert_str_eq(c.log_level, "warn"); /* flag over file */
    ck_assert_uint_eq(c.max_clients, 7);
    ck_assert(!c.populate);
    ck_assert_str_eq(c.config_file, path);
    config_free(&c);
    unsetenv("MCEFAD_COPY_THREADS");
    unlink(path);
}
END_TEST

START_TEST(unknown_key_in_file)
{
    write_conf("socket_path = /x\nsocket_pth = /y\n");
    char flag[80];
    snprintf(flag, sizeof(flag), "--config=%s", path);
    char *argv[] = {"mcefad", flag, NULL};
    mcefad_config c;
    char err[1024];
    ck_assert_int_lt(load(&c, 2, argv, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "socket_pth"));
    ck_assert_ptr_nonnull(strstr(err, ":2"));
    config_free(&c);
    unlink(path);
}
END_TEST

START_TEST(bad_values)
{
    mcefad_config c;
    char err[1024];
    char *a1[] = {"mcefad", "--copy_threads=lots", NULL};
    ck_assert_int_lt(load(&c, 2, a1, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "copy_threads"));
    ck_assert_ptr_nonnull(strstr(err, "lots"));
    config_free(&c);
    char *a2[] = {"mcefad", "--populate=maybe", NULL};
    ck_assert_int_lt(load(&c, 2, a2, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "populate"));
    config_free(&c);
    char *a3[] = {"mcefad", "--copy_threads=-1", NULL};
    ck_assert_int_lt(load(&c, 2, a3, err, sizeof(err)), 0);
    config_free(&c);
    char *a4[] = {"mcefad", "--no-such-flag=1", NULL};
    ck_assert_int_lt(load(&c, 2, a4, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "no-such-flag"));
    config_free(&c);
    setenv("MCEFAD_MAX_FRAME", "big", 1);
    char *a5[] = {"mcefad", NULL};
    ck_assert_int_lt(load(&c, 1, a5, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "MCEFAD_MAX_FRAME"));
    unsetenv("MCEFAD_MAX_FRAME");
    config_free(&c);
    write_conf("just words\n");
    char flag[80];
    snprintf(flag, sizeof(flag), "--config=%s", path);
    char *a6[] = {"mcefad", flag, NULL};
    ck_assert_int_lt(load(&c, 2, a6, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "name = value"));
    config_free(&c);
    unlink(path);
    char *a7[] = {"mcefad", "--config=/nonexistent/mcefad.conf", NULL};
    ck_assert_int_lt(load(&c, 2, a7, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/mcefad.conf"));
    config_free(&c);
}
END_TEST

START_TEST(reference_lists_every_setting)
{
    char buf[32768];
    FILE *f = fmemopen(buf, sizeof(buf), "w");
    config_print_reference(f);
    fclose(f);
#define X_CHECK(kind, name, def, min, max, env, mc_env, help) \
    ck_assert_ptr_nonnull(strstr(buf, "`" #name "`"));         \
    ck_assert_ptr_nonnull(strstr(buf, "`" env "`"));           \
    ck_assert(!*mc_env || strstr(buf, "else `" mc_env "`"));
    MCEFAD_SETTINGS(X_CHECK)
#undef X_CHECK
}
END_TEST

/* docs/configuration.md is generated from the table; it must not drift. */
START_TEST(docs_match_the_table)
{
    char want[32768], have[32768];
    FILE *f = fmemopen(want, sizeof(want), "w");
    config_print_reference(f);
    long wn = ftell(f);
    fclose(f);
    const char *src = getenv("MCEFA_SRCDIR");
    char p[512];
    snprintf(p, sizeof(p), "%s/docs/configuration.md", src && *src ? src : ".");
    FILE *d = fopen(p, "r");
    ck_assert_msg(d != NULL, "cannot open %s", p);
    size_t hn = fread(have, 1, sizeof(have) - 1, d);
    fclose(d);
    have[hn] = 0;
    want[wn] = 0;
    ck_assert_msg(strcmp(want, have) == 0, "docs/configuration.md is stale: run 'make docs-config'");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, file_env_flags_precedence);
    tcase_add_test(tc, unknown_key_in_file);
    tcase_add_test(tc, bad_values);
    tcase_add_test(tc, reference_lists_every_setting);
    tcase_add_test(tc, docs_match_the_table);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
