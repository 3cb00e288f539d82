/* Configuration: defaults, file, environment (with Mooncake's names),
 * flags, the checks of config_validate, and the errors that name what was
 * wrong. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "harness.h" /* build_dir() */
#include "log.h"
#include "suite.h"
#include "wire.h"

static char path[64];

static void write_conf(const char *text)
{
    snprintf(path, sizeof(path), "/tmp/mcefad-conf-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* stderr goes to a temporary file between capture_begin and capture_end. */
static int saved_stderr = -1, capture_fd = -1;
static char capture_path[32];

static void capture_begin(void)
{
    fflush(stderr);
    saved_stderr = dup(2);
    snprintf(capture_path, sizeof(capture_path), "/tmp/mcefad-err-XXXXXX");
    capture_fd = mkstemp(capture_path);
    ck_assert_int_ge(capture_fd, 0);
    dup2(capture_fd, 2);
}

static void capture_end(char *err, size_t errlen)
{
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    lseek(capture_fd, 0, SEEK_SET);
    ssize_t n = read(capture_fd, err, errlen - 1);
    err[n > 0 ? n : 0] = 0;
    close(capture_fd);
    unlink(capture_path);
}

/* Runs config_load with stderr captured into err. */
static int load(mcefad_config *c, int argc, char **argv, char *err, size_t errlen)
{
    capture_begin();
    int rc = config_load(c, argc, argv);
    capture_end(err, errlen);
    return rc;
}

static int validate(const mcefad_config *c, char *err, size_t errlen)
{
    capture_begin();
    int rc = config_validate(c);
    capture_end(err, errlen);
    return rc;
}

/* Loads the defaults and one flag, then validates, as --check-config does.
 * Returns config_load's error, else config_validate's result. */
static int check_flag(const char *flag, char *err, size_t errlen)
{
    mcefad_config c;
    char *argv[] = {"mcefad", (char *)flag, NULL};
    int rc = load(&c, 2, argv, err, errlen);
    if (rc == 0)
        rc = validate(&c, err, errlen);
    config_free(&c);
    return rc;
}

/* flag must be refused with a message that names setting. */
static void assert_refused(const char *flag, const char *setting)
{
    char err[2048], want[96];
    ck_assert_msg(check_flag(flag, err, sizeof(err)) == -EINVAL, "%s was accepted", flag);
    snprintf(want, sizeof(want), "mcefad: setting %s: ", setting);
    ck_assert_msg(strstr(err, want) != NULL, "%s: message does not name the setting: %s", flag, err);
}

static void assert_accepted(const char *flag)
{
    char err[2048];
    ck_assert_msg(check_flag(flag, err, sizeof(err)) == 0, "%s was refused: %s", flag, err);
    ck_assert_msg(err[0] == 0, "%s printed: %s", flag, err);
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

START_TEST(defaults_validate)
{
    mcefad_config c;
    char err[2048];
    char *argv[] = {"mcefad", NULL};
    ck_assert_int_eq(load(&c, 1, argv, err, sizeof(err)), 0);
    ck_assert_msg(validate(&c, err, sizeof(err)) == 0, "the defaults fail their own checks: %s", err);
    ck_assert_str_eq(err, "");
    config_free(&c);
}
END_TEST

/* The client library and the daemon take these from mcefa_defaults.h. */
START_TEST(shared_defaults)
{
    mcefad_config c;
    char err[1024];
    char *argv[] = {"mcefad", NULL};
    ck_assert_int_eq(load(&c, 1, argv, err, sizeof(err)), 0);
    ck_assert_str_eq(c.socket_path, MCEFA_DEFAULT_SOCKET);
    ck_assert_uint_eq(c.max_frame_bytes, MCEFA_DEFAULT_MAX_FRAME);
    ck_assert_uint_eq(c.max_frame_bytes, WIRE_MAX_FRAME_DEFAULT);
    config_free(&c);
    setenv(MCEFA_SOCKET_ENV, "/tmp/from-env.sock", 1);
    ck_assert_int_eq(load(&c, 1, argv, err, sizeof(err)), 0);
    ck_assert_str_eq(c.socket_path, "/tmp/from-env.sock");
    unsetenv(MCEFA_SOCKET_ENV);
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

/* Values that are not of their kind: refused at load, naming the setting. */
START_TEST(kind_parse_rejections)
{
    assert_refused("--copy_threads=lots", "copy_threads");       /* UINT */
    assert_refused("--copy_threads= 3", "copy_threads");         /* strtoull would skip the space */
    assert_refused("--copy_threads=99999999999999999999999", "copy_threads");
    assert_refused("--populate=maybe", "populate");              /* BOOL */
    assert_refused("--socket_mode=rw", "socket_mode");           /* MODE */
    assert_refused("--socket_mode=0668", "socket_mode");         /* not octal */
    assert_refused("--peer_port=0x44ea", "peer_port");           /* PORT: decimal */
    assert_refused("--peer_port=port", "peer_port");
    char err[1024];
    ck_assert_int_eq(check_flag("--copy_threads=lots", err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "'lots'"));
    ck_assert_ptr_nonnull(strstr(err, "flag --copy_threads"));
}
END_TEST

/* Values of the right form that a start would refuse: config_validate's. */
START_TEST(kind_validate_rejections)
{
    /* STR: length bounds; socket_path may not be empty. */
    assert_refused("--socket_path=", "socket_path");
    char longpath[200] = "--socket_path=/tmp/";
    while (strlen(longpath) < 14 + CFG_SOCKET_PATH_MAX + 1)
        strcat(longpath, "x");
    assert_refused(longpath, "socket_path");
    longpath[strlen(longpath) - 1] = 0; /* exactly CFG_SOCKET_PATH_MAX bytes */
    assert_accepted(longpath);
    char longhost[300] = "--hostname=";
    while (strlen(longhost) < 11 + 256)
        strcat(longhost, "h");
    assert_refused(longhost, "hostname");
    assert_accepted("--hostname=");
    /* MODE */
    assert_refused("--socket_mode=1000", "socket_mode");
    assert_accepted("--socket_mode=0777");
    assert_accepted("--socket_mode=660"); /* octal without the 0 */
    assert_accepted("--socket_mode=0");
    /* PORT */
    assert_refused("--peer_port=0", "peer_port");
    assert_refused("--peer_port=65536", "peer_port");
    assert_accepted("--peer_port=65535");
    assert_accepted("--segment_port_base=0");
    assert_refused("--segment_port_base=65536", "segment_port_base");
    /* LOGLEVEL */
    assert_refused("--log_level=loud", "log_level");
    assert_refused("--log_level=", "log_level");
    assert_accepted("--log_level=WARNING");
    assert_accepted("--log_level=debug");
    /* NAMES */
    assert_refused("--nics=a,,b", "nics");
    assert_refused("--nics=a,", "nics");
    assert_refused("--nics=,a", "nics");
    assert_refused("--nics_exclude=rdmap0 rdmap1", "nics_exclude");
    assert_accepted("--nics=rdmap16s27, rdmap32s27");
    assert_accepted("--nics=");
    /* HOSTMAP */
    assert_refused("--peer_hosts=hostb", "peer_hosts");
    assert_refused("--peer_hosts==10.0.0.1", "peer_hosts");
    assert_refused("--peer_hosts=hostb=", "peer_hosts");
    assert_refused("--peer_hosts=hostb=10.0.0.1:0", "peer_hosts");
    assert_refused("--peer_hosts=hostb=10.0.0.1:70000", "peer_hosts");
    assert_refused("--peer_hosts=hostb=10.0.0.1:", "peer_hosts");
    assert_refused("--peer_hosts=hostb=10.0.0.1:x", "peer_hosts");
    assert_refused("--peer_hosts=hostb=[::1]:17650", "peer_hosts");
    assert_refused("--peer_hosts=hostb=10.0.0.1,,hostc=10.0.0.2", "peer_hosts");
    assert_refused("--peer_hosts=hostb=10.0.0.1,", "peer_hosts");
    assert_refused("--peer_hosts=hostb=10.0.0.1,hostb=10.0.0.2", "peer_hosts");
    assert_accepted("--peer_hosts=hostb=10.0.0.1:17651,hostc=nodec.internal, hostd = 10.0.0.4");
    assert_accepted("--peer_hosts=");
    /* Each problem is reported, not just the first. */
    mcefad_config c;
    char err[2048];
    char *argv[] = {"mcefad", "--copy_threads=0", "--peer_listen=x", "--metrics_listen=y", NULL};
    ck_assert_int_eq(load(&c, 4, argv, err, sizeof(err)), 0);
    ck_assert_int_eq(validate(&c, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "mcefad: setting copy_threads: "));
    ck_assert_ptr_nonnull(strstr(err, "mcefad: setting peer_listen: "));
    ck_assert_ptr_nonnull(strstr(err, "mcefad: setting metrics_listen: "));
    config_free(&c);
}
END_TEST

/* The numeric rules main.c's config_validate enforced, pinned here so the
 * table cannot loosen them unnoticed. */
START_TEST(bounds)
{
    static const struct {
        const char *name;
        unsigned long long min, max; /* max 0: unbounded */
    } rules[] = {
        {"copy_threads", 1, 256},          {"completion_slots", 2, 1u << 24}, {"max_frame_bytes", 4096, 1u << 30},
        {"copy_chunk_bytes", 4096, 0},     {"max_clients", 1, 0},             {"max_regions_per_client", 1, 0},
        {"max_wr", 0, 0},                  {"request_timeout_ms", 1, 0},      {"peer_port", 1, 65535},
        {"nic_workers", 0, 64},            {"segment_port_base", 0, 65535},
        {"rxm_buffer_size", 256, 1048576}, {"rxm_msg_rx_size", 16, 65536},
        {"rxm_cm_progress_interval_us", 1, 10000000},
    };
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        char flag[128];
        snprintf(flag, sizeof(flag), "--%s=%llu", rules[i].name, rules[i].min);
        assert_accepted(flag);
        if (rules[i].min > 0) {
            snprintf(flag, sizeof(flag), "--%s=%llu", rules[i].name, rules[i].min - 1);
            assert_refused(flag, rules[i].name);
        }
        if (rules[i].max) {
            snprintf(flag, sizeof(flag), "--%s=%llu", rules[i].name, rules[i].max);
            assert_accepted(flag);
            snprintf(flag, sizeof(flag), "--%s=%llu", rules[i].name, rules[i].max + 1);
            assert_refused(flag, rules[i].name);
        } else {
            snprintf(flag, sizeof(flag), "--%s=18446744073709551615", rules[i].name);
            assert_accepted(flag);
        }
    }
    /* socket_mode: a permission mask. */
    assert_accepted("--socket_mode=0777");
    assert_refused("--socket_mode=01000", "socket_mode");
}
END_TEST

/* Every numeric row's own bounds hold at their edges. */
#define IS_NUM_STR 0
#define IS_NUM_UINT 1
#define IS_NUM_BOOL 0
#define IS_NUM_MODE 1
#define IS_NUM_PORT 1
#define IS_NUM_HOSTPORT 0
#define IS_NUM_IPV4 0
#define IS_NUM_LOGLEVEL 0
#define IS_NUM_NAMES 0
#define IS_NUM_HOSTMAP 0

static void table_edges(const char *name, size_t off, uint64_t min, uint64_t max)
{
    mcefad_config c;
    char err[2048], want[96];
    char *argv[] = {"mcefad", NULL};
    ck_assert_int_eq(load(&c, 1, argv, err, sizeof(err)), 0);
    uint64_t *field = (uint64_t *)((char *)&c + off);
    snprintf(want, sizeof(want), "mcefad: setting %s: ", name);
    *field = min;
    ck_assert_msg(validate(&c, err, sizeof(err)) == 0, "%s at its min: %s", name, err);
    *field = max;
    ck_assert_msg(validate(&c, err, sizeof(err)) == 0, "%s at its max: %s", name, err);
    if (min > 0) {
        *field = min - 1;
        ck_assert_int_eq(validate(&c, err, sizeof(err)), -EINVAL);
        ck_assert_msg(strstr(err, want) != NULL, "%s below its min: %s", name, err);
    }
    if (max < UINT64_MAX) {
        *field = max + 1;
        ck_assert_int_eq(validate(&c, err, sizeof(err)), -EINVAL);
        ck_assert_msg(strstr(err, want) != NULL, "%s above its max: %s", name, err);
    }
    config_free(&c);
}

START_TEST(table_bounds)
{
#define X_EDGES(kind, name, def, min, max, env, mc_env, help) \
    if (IS_NUM_##kind)                                        \
        table_edges(#name, offsetof(mcefad_config, name), min, max);
    MCEFAD_SETTINGS(X_EDGES)
#undef X_EDGES
}
END_TEST

/* What --check-config must refuse because metrics_start and peer_start would. */
START_TEST(listen_addresses)
{
    assert_refused("--metrics_listen=garbage", "metrics_listen");
    assert_refused("--metrics_listen=127.0.0.1:0", "metrics_listen");
    assert_refused("--metrics_listen=127.0.0.1:70000", "metrics_listen");
    assert_refused("--metrics_listen=127.0.0.1", "metrics_listen");
    assert_refused("--metrics_listen=127.0.0.1:", "metrics_listen");
    assert_refused("--metrics_listen=:9465", "metrics_listen");
    assert_refused("--metrics_listen=localhost:9465", "metrics_listen");
    assert_refused("--metrics_listen=127.0.0.1:94x5", "metrics_listen");
    assert_refused("--metrics_listen=300.0.0.1:9465", "metrics_listen");
    assert_accepted("--metrics_listen=");
    assert_accepted("--metrics_listen=0.0.0.0:9100");
    assert_refused("--peer_listen=nonsense", "peer_listen");
    assert_refused("--peer_listen=", "peer_listen");
    assert_refused("--peer_listen=10.0.0.1:17650", "peer_listen");
    assert_refused("--peer_listen=10.0.0", "peer_listen");
    assert_refused("--peer_listen=256.0.0.1", "peer_listen");
    assert_accepted("--peer_listen=10.0.0.1");
    /* The message says what to do. */
    char err[1024];
    ck_assert_int_eq(check_flag("--metrics_listen=garbage", err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "'garbage'"));
    ck_assert_ptr_nonnull(strstr(err, "empty"));
}
END_TEST

/* Mooncake's MC_* name applies only when the MCEFAD_* one is unset. */
START_TEST(mooncake_aliases)
{
    mcefad_config c;
    char err[1024];
    char *argv[] = {"mcefad", NULL};
    unsetenv("MCEFAD_MAX_WR");
    unsetenv("MCEFAD_NICS");
    unsetenv("MCEFAD_NIC_WORKERS");
    setenv("MC_MAX_WR", "77", 1);
    setenv("MC_EFA_NIC_SELECTION", "rdmap0,rdmap1", 1);
    setenv("MC_EFA_CQ_THREADS", "3", 1);
    ck_assert_int_eq(load(&c, 1, argv, err, sizeof(err)), 0);
    ck_assert_uint_eq(c.max_wr, 77);
    ck_assert_str_eq(c.nics, "rdmap0,rdmap1");
    ck_assert_uint_eq(c.nic_workers, 3);
    config_free(&c);

    setenv("MCEFAD_MAX_WR", "88", 1);
    setenv("MCEFAD_NICS", "", 1); /* set, if empty: still ours */
    ck_assert_int_eq(load(&c, 1, argv, err, sizeof(err)), 0);
    ck_assert_uint_eq(c.max_wr, 88);
    ck_assert_str_eq(c.nics, "");
    ck_assert_uint_eq(c.nic_workers, 3);
    config_free(&c);
    unsetenv("MCEFAD_MAX_WR");
    unsetenv("MCEFAD_NICS");

    /* Flags still beat the alias; the alias beats the file. */
    write_conf("max_wr = 5\nnic_workers = 9\n");
    char flag[80];
    snprintf(flag, sizeof(flag), "--config=%s", path);
    char *a2[] = {"mcefad", flag, "--max_wr=99", NULL};
    ck_assert_int_eq(load(&c, 3, a2, err, sizeof(err)), 0);
    ck_assert_uint_eq(c.max_wr, 99);
    ck_assert_uint_eq(c.nic_workers, 3);
    config_free(&c);
    unlink(path);

    /* A bad alias value is blamed on the variable it came from. */
    setenv("MC_MAX_WR", "lots", 1);
    ck_assert_int_lt(load(&c, 1, argv, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "setting max_wr"));
    ck_assert_ptr_nonnull(strstr(err, "MC_MAX_WR"));
    config_free(&c);
    unsetenv("MC_MAX_WR");
    setenv("MC_EFA_CQ_THREADS", "65", 1);
    ck_assert_int_eq(load(&c, 1, argv, err, sizeof(err)), 0);
    ck_assert_int_eq(validate(&c, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "mcefad: setting nic_workers: "));
    config_free(&c);
    unsetenv("MC_EFA_NIC_SELECTION");
    unsetenv("MC_EFA_CQ_THREADS");
}
END_TEST

START_TEST(helpers)
{
    char host[16];
    int port = 0;
    ck_assert_int_eq(config_parse_hostport("127.0.0.1:9465", host, sizeof(host), &port), 0);
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_int_eq(port, 9465);
    ck_assert_int_eq(config_parse_hostport("255.255.255.255:65535", host, sizeof(host), &port), 0);
    ck_assert_str_eq(host, "255.255.255.255");
    ck_assert_int_eq(config_parse_hostport("", host, sizeof(host), &port), -EINVAL);
    ck_assert_int_eq(config_parse_hostport("garbage", host, sizeof(host), &port), -EINVAL);
    ck_assert_int_eq(config_parse_hostport("1.2.3.4:0", host, sizeof(host), &port), -EINVAL);
    ck_assert_int_eq(config_parse_hostport("1.2.3.4:70000", host, sizeof(host), &port), -EINVAL);
    ck_assert_int_eq(config_parse_hostport("1.2.3.4", host, sizeof(host), &port), -EINVAL);
    char tiny[4];
    ck_assert_int_eq(config_parse_hostport("1.2.3.4:5", tiny, sizeof(tiny), &port), -ENOSPC);

    ck_assert_int_eq(config_check_ipv4("0.0.0.0"), 0);
    ck_assert_int_eq(config_check_ipv4("10.0.0.1:1"), -EINVAL);
    ck_assert_int_eq(config_check_ipv4("nonsense"), -EINVAL);

    ck_assert_int_eq(config_log_level("error"), LOG_ERROR);
    ck_assert_int_eq(config_log_level("Warning"), LOG_WARN);
    ck_assert_int_eq(config_log_level("info"), LOG_INFO);
    ck_assert_int_eq(config_log_level("DEBUG"), LOG_DEBUG);
    ck_assert_int_eq(config_log_level("loud"), -EINVAL);

    const char *pos = " a , b,,c ", *name;
    size_t len;
    ck_assert_int_eq(config_list_next(&pos, &name, &len), 0);
    ck_assert_int_eq((int)len, 1);
    ck_assert_int_eq(name[0], 'a');
    ck_assert_int_eq(config_list_next(&pos, &name, &len), 0);
    ck_assert(len == 1 && name[0] == 'b');
    ck_assert_int_eq(config_list_next(&pos, &name, &len), 0);
    ck_assert(len == 1 && name[0] == 'c');
    ck_assert_int_eq(config_list_next(&pos, &name, &len), -ENOENT);
    ck_assert(config_list_contains("rdmap0, rdmap1", "rdmap1"));
    ck_assert(!config_list_contains("rdmap0,rdmap1", "rdmap"));
    ck_assert(!config_list_contains("", "lo"));

    char out[64];
    const char *map = "hostb=10.0.0.2:17651, hostc = nodec";
    ck_assert_int_eq(config_hostmap_lookup(map, "hostb", 17650, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "10.0.0.2:17651");
    ck_assert_int_eq(config_hostmap_lookup(map, "hostc", 17650, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "nodec:17650");
    ck_assert_int_eq(config_hostmap_lookup(map, "host", 17650, out, sizeof(out)), -ENOENT);
    ck_assert_int_eq(config_hostmap_lookup("", "hostb", 17650, out, sizeof(out)), -ENOENT);
    ck_assert_int_eq(config_hostmap_lookup("hostb", "hostb", 17650, out, sizeof(out)), -EINVAL);
    ck_assert_int_eq(config_hostmap_lookup(map, "hostb", 17650, out, 5), -ENOSPC);
}
END_TEST

/* Runs the built daemon; returns its exit status, output in out. */
static int run_daemon(char *out, size_t outlen, const char *args)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s/mcefad %s 2>&1", build_dir(), args);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(out, 1, outlen - 1, f);
    out[n] = 0;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* --check-config exits 2 (a configuration error: systemd does not restart)
 * for values only the start used to refuse. */
START_TEST(check_config_binary)
{
    char out[4096];
    ck_assert_int_eq(run_daemon(out, sizeof(out), "--check-config"), 0);
    ck_assert_ptr_nonnull(strstr(out, "configuration OK"));
    ck_assert_int_eq(run_daemon(out, sizeof(out), "--check-config --metrics_listen=garbage"), 2);
    ck_assert_ptr_nonnull(strstr(out, "mcefad: setting metrics_listen: "));
    ck_assert_int_eq(run_daemon(out, sizeof(out), "--check-config --peer_listen=nonsense"), 2);
    ck_assert_ptr_nonnull(strstr(out, "mcefad: setting peer_listen: "));
    ck_assert_int_eq(run_daemon(out, sizeof(out), "--check-config --metrics_listen=127.0.0.1:0"), 2);
    ck_assert_int_eq(run_daemon(out, sizeof(out), "--check-config --peer_hosts=hostb"), 2);
    ck_assert_int_eq(run_daemon(out, sizeof(out), "--check-config --metrics_listen="), 0);
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
    /* The precedence of Mooncake's names is documented. */
    ck_assert_ptr_nonnull(strstr(buf, "only when the"));
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
    tcase_add_test(tc, defaults_validate);
    tcase_add_test(tc, shared_defaults);
    tcase_add_test(tc, file_env_flags_precedence);
    tcase_add_test(tc, unknown_key_in_file);
    tcase_add_test(tc, bad_values);
    tcase_add_test(tc, kind_parse_rejections);
    tcase_add_test(tc, kind_validate_rejections);
    tcase_add_test(tc, bounds);
    tcase_add_test(tc, table_bounds);
    tcase_add_test(tc, listen_addresses);
    tcase_add_test(tc, mooncake_aliases);
    tcase_add_test(tc, helpers);
    tcase_add_test(tc, check_config_binary);
    tcase_add_test(tc, reference_lists_every_setting);
    tcase_add_test(tc, docs_match_the_table);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
