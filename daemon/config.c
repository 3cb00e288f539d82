#include "config.h"
#include "config_values.h"

#include "log.h"
#include "wire.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

_Static_assert(CFG_SOCKET_PATH_MAX == sizeof(((struct sockaddr_un *)0)->sun_path) - 1,
               "CFG_SOCKET_PATH_MAX must follow sun_path");

mcefad_config config;

enum kind { K_STR, K_UINT, K_BOOL, K_MODE, K_PORT, K_HOSTPORT, K_IPV4, K_LOGLEVEL, K_NAMES, K_HOSTMAP };
/* How a kind is stored in mcefad_config. */
enum storage { S_TEXT, S_NUM, S_BOOL };

typedef struct setting {
    const char *name;
    enum kind kind;
    const char *def;
    uint64_t min, max;
    const char *env;
    const char *mc_env; /* "" when none */
    const char *help;
    size_t offset;
} setting;

static const setting settings[] = {
#define X_ROW(kind, name, def, min, max, env, mc_env, help) \
    {#name, K_##kind, def, min, max, env, mc_env, help, offsetof(mcefad_config, name)},
    MCEFAD_SETTINGS(X_ROW)
#undef X_ROW
};
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

static enum storage storage_of(enum kind k)
{
    switch (k) {
    case K_UINT:
    case K_MODE:
    case K_PORT:
        return S_NUM;
    case K_BOOL:
        return S_BOOL;
    default:
        return S_TEXT;
    }
}

/* Placeholder of the value in --help. */
static const char *metavar(enum kind k)
{
    static const char *const names[] = {
        [K_STR] = "STR",
        [K_UINT] = "N",
        [K_BOOL] = "BOOL",
        [K_MODE] = "OCTAL",
        [K_PORT] = "PORT",
        [K_HOSTPORT] = "ADDR:PORT",
        [K_IPV4] = "ADDR",
        [K_LOGLEVEL] = "LEVEL",
        [K_NAMES] = "NAME,...",
        [K_HOSTMAP] = "NAME=ADDR[:PORT],...",
    };
    return names[k];
}

/* What values a setting takes, for --help and the reference. */
static void describe(const setting *s, char *buf, size_t len)
{
    const char *empty = s->min == 0 ? ", or empty" : "";
    switch (s->kind) {
    case K_STR:
        if (s->max != CFG_UNBOUNDED)
            snprintf(buf, len, "text of at most %llu bytes%s", (unsigned long long)s->max,
                     s->min ? ", not empty" : "");
        else
            snprintf(buf, len, "text%s", s->min ? ", not empty" : "");
        return;
    case K_UINT:
        if (s->max != CFG_UNBOUNDED)
            snprintf(buf, len, "%llu to %llu", (unsigned long long)s->min, (unsigned long long)s->max);
        else if (s->min)
            snprintf(buf, len, "at least %llu", (unsigned long long)s->min);
        else
            snprintf(buf, len, "0 or more");
        return;
    case K_BOOL:
        snprintf(buf, len, "true or false (yes/no, on/off, 1/0)");
        return;
    case K_MODE:
        snprintf(buf, len, "octal 0000 to %04llo", (unsigned long long)s->max);
        return;
    case K_PORT:
        snprintf(buf, len, "port %llu to %llu", (unsigned long long)s->min, (unsigned long long)s->max);
        return;
    case K_HOSTPORT:
        snprintf(buf, len, "IPv4 address:port%s", empty);
        return;
    case K_IPV4:
        snprintf(buf, len, "IPv4 address%s", empty);
        return;
    case K_LOGLEVEL:
        snprintf(buf, len, "error, warn, info or debug");
        return;
    case K_NAMES:
        snprintf(buf, len, "comma-separated names%s", empty);
        return;
    case K_HOSTMAP:
        snprintf(buf, len, "name=address[:port],...%s", empty);
        return;
    }
    snprintf(buf, len, "?");
}

static const setting *find(const char *name, size_t len)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strlen(settings[i].name) == len && strncmp(settings[i].name, name, len) == 0)
            return &settings[i];
    /* Accept dashes for underscores on the command line and in files. */
    char tmp[64];
    if (len >= sizeof(tmp))
        return NULL;
    for (size_t i = 0; i < len; i++)
        tmp[i] = name[i] == '-' ? '_' : name[i];
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strlen(settings[i].name) == len && strncmp(settings[i].name, tmp, len) == 0)
            return &settings[i];
    return NULL;
}

/* What the user should write instead of a value that is not a number. */
static void number_hint(const setting *s, char *buf, size_t len)
{
    char vals[128];
    describe(s, vals, sizeof(vals));
    if (s->kind == K_MODE)
        snprintf(buf, len, "give octal permission bits such as 0660");
    else
        snprintf(buf, len, "give a whole number (%s)", vals);
}

/* Parses value into the field of s; origin names where it came from. Only
 * the form is checked here; bounds and formats are config_validate's, so a
 * value a later source overrides is never judged. */
static int apply(mcefad_config *cfg, const setting *s, const char *value, const char *origin)
{
    char *field = (char *)cfg + s->offset;
    switch (storage_of(s->kind)) {
    case S_TEXT: {
        char *dup = strdup(value);
        if (!dup)
            return -ENOMEM;
        free(*(char **)field);
        *(char **)field = dup;
        return 0;
    }
    case S_NUM: {
        /* Modes are octal even without the leading 0; ports are decimal;
         * other numbers take C's prefixes (0x..., 0...). */
        int base = s->kind == K_MODE ? 8 : s->kind == K_PORT ? 10 : 0;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(value, &end, base);
        /* strtoull skips spaces and negates "-1"; refuse both. */
        if (!isdigit((unsigned char)value[0]) || errno || end == value || *end) {
            char hint[160];
            number_hint(s, hint, sizeof(hint));
            fprintf(stderr, "mcefad: setting %s: '%s' from %s is %s; %s\n", s->name, value, origin,
                    errno == ERANGE     ? "too large"
                    : s->kind == K_MODE ? "not an octal number"
                    : s->kind == K_PORT ? "not a decimal number"
                                        : "not a non-negative integer",
                    hint);
            return -EINVAL;
        }
        *(uint64_t *)field = v;
        return 0;
    }
    case S_BOOL:
        if (!strcasecmp(value, "true") || !strcmp(value, "1") || !strcasecmp(value, "yes") ||
            !strcasecmp(value, "on")) {
            *(bool *)field = true;
        } else if (!strcasecmp(value, "false") || !strcmp(value, "0") || !strcasecmp(value, "no") ||
                   !strcasecmp(value, "off")) {
            *(bool *)field = false;
        } else {
            fprintf(stderr, "mcefad: setting %s: '%s' from %s is not a yes/no value; give true or false\n",
                    s->name, value, origin);
            return -EINVAL;
        }
        return 0;
    }
    return -EINVAL;
}

/* Judges one setting's value; why says what is wrong and what to do. */
static int check_setting(const mcefad_config *cfg, const setting *s, char *why, size_t whylen)
{
    const char *field = (const char *)cfg + s->offset;
    if (storage_of(s->kind) == S_NUM) {
        uint64_t v = *(const uint64_t *)field;
        if (v >= s->min && v <= s->max)
            return 0;
        if (s->kind == K_MODE)
            snprintf(why, whylen, "%#llo is not a permission mask; give octal bits from 0000 to %04llo, such as 0660",
                     (unsigned long long)v, (unsigned long long)s->max);
        else if (s->kind == K_PORT)
            snprintf(why, whylen, "%llu is not a TCP port; give one from %llu to %llu", (unsigned long long)v,
                     (unsigned long long)s->min, (unsigned long long)s->max);
        else if (s->max == CFG_UNBOUNDED)
            snprintf(why, whylen, "%llu is too small; give at least %llu", (unsigned long long)v,
                     (unsigned long long)s->min);
        else
            snprintf(why, whylen, "%llu is out of range; give a value from %llu to %llu", (unsigned long long)v,
                     (unsigned long long)s->min, (unsigned long long)s->max);
        return -EINVAL;
    }
    if (storage_of(s->kind) == S_BOOL)
        return 0;

    const char *v = *(char *const *)field;
    if (!v) {
        snprintf(why, whylen, "has no value; give one (mcefad --help describes it)");
        return -EINVAL;
    }
    size_t len = strlen(v);
    if (len == 0 && s->min == 0)
        return 0; /* empty means none or off */
    if (len < s->min) {
        if (len == 0)
            snprintf(why, whylen, "must not be empty; give a value (the default is '%s')", s->def);
        else
            snprintf(why, whylen, "'%s' is shorter than %llu bytes", v, (unsigned long long)s->min);
        return -EINVAL;
    }
    if (len > s->max) {
        snprintf(why, whylen, "'%.60s...' is %zu bytes, longer than the %llu allowed; shorten it", v, len,
                 (unsigned long long)s->max);
        return -EINVAL;
    }
    switch (s->kind) {
    case K_HOSTPORT: {
        const char *h;
        size_t hl;
        int port;
        int rc = config_values_hostport(v, &h, &hl, &port, why, whylen);
        if (rc < 0 && s->min == 0) {
            size_t n = strlen(why);
            snprintf(why + n, whylen - n, ", or leave it empty to turn this off");
        }
        return rc;
    }
    case K_IPV4:
        if (config_values_ipv4(v, len))
            return 0;
        snprintf(why, whylen, "'%s' is not an IPv4 address; give a dotted quad such as 0.0.0.0 (every address) or "
                              "10.0.0.5",
                 v);
        return -EINVAL;
    case K_LOGLEVEL:
        if (config_log_level(v) >= 0)
            return 0;
        snprintf(why, whylen, "'%s' is not a log level; give error, warn, info or debug", v);
        return -EINVAL;
    case K_NAMES:
        return config_values_names(v, why, whylen);
    case K_HOSTMAP:
        return config_values_hostmap(v, why, whylen);
    default:
        return 0;
    }
}

int config_validate(const mcefad_config *cfg)
{
    int bad = 0;
    for (size_t i = 0; i < NSETTINGS; i++) {
        char why[600];
        if (check_setting(cfg, &settings[i], why, sizeof(why)) < 0) {
            fprintf(stderr, "mcefad: setting %s: %s\n", settings[i].name, why);
            bad = -EINVAL;
        }
    }
    if (cfg->submit_ring_entries & (cfg->submit_ring_entries - 1)) {
        fprintf(stderr, "mcefad: setting submit_ring_entries: %llu is not a power of two; give 0 (off) or a power "
                "of two up to 65536 (1024 by default)\n", (unsigned long long)cfg->submit_ring_entries);
        bad = -EINVAL;
    }
    if (strcmp(cfg->peer_auth, "psk") != 0 && strcmp(cfg->peer_auth, "none") != 0) {
        fprintf(stderr, "mcefad: setting peer_auth: '%s' is unknown; give psk (a shared secret) or none\n",
                cfg->peer_auth);
        bad = -EINVAL;
    }
    return bad;
}

/* ---- Loading ------------------------------------------------------------ */

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
        *--e = 0;
    return s;
}

/* "name = value" lines; '#' starts a comment. */
static int load_file(mcefad_config *cfg, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        fprintf(stderr, "mcefad: cannot open config file %s: %s\n", path, strerror(e));
        return -e;
    }
    char line[4096];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char *l = trim(line);
        if (!*l)
            continue;
        char *eq = strchr(l, '=');
        char origin[512];
        snprintf(origin, sizeof(origin), "%s:%d", path, lineno);
        if (!eq) {
            fprintf(stderr, "mcefad: %s: expected 'name = value', got '%s'\n", origin, l);
            rc = -EINVAL;
            break;
        }
        *eq = 0;
        char *name = trim(l), *value = trim(eq + 1);
        size_t vl = strlen(value);
        if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
            value[vl - 1] = 0;
            value++;
        }
        const setting *s = find(name, strlen(name));
        if (!s) {
            fprintf(stderr, "mcefad: %s: unknown setting '%s' (mcefad --help lists them)\n", origin, name);
            rc = -EINVAL;
            break;
        }
        rc = apply(cfg, s, value, origin);
    }
    fclose(f);
    return rc;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: mcefad [--version] [--config=PATH] [--check-config] [--print-topology[=XML|DIR]]\n"
                 "              [--NAME=VALUE ...]\n\n"
                 "Per-host transfer daemon. Settings (flag, environment, default, values):\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting *s = &settings[i];
        char vals[160];
        describe(s, vals, sizeof(vals));
        fprintf(out, "  --%s=%s  (env %s%s%s, default '%s')\n      %s\n      Values: %s.\n", s->name,
                metavar(s->kind), s->env, *s->mc_env ? ", else " : "", s->mc_env, s->def, s->help, vals);
    }
    fprintf(out, "\nThe config file holds 'name = value' lines; flags override the environment,\n"
                 "which overrides the file. A Mooncake name (MC_*) is read only when the\n"
                 "MCEFAD_* variable is not set.\n");
}

void config_print_reference(FILE *out)
{
    fprintf(out, "# mcefad configuration reference\n\n"
                 "Generated by `mcefad --print-config-reference`; do not edit by hand.\n\n"
                 "Each setting can be given in the config file (`name = value`), in the\n"
                 "environment, or as a flag `--name=value`. Flags override the environment,\n"
                 "which overrides the file (`--config=PATH` or `MCEFAD_CONFIG`).\n\n"
                 "Some settings also answer to the environment variable Mooncake uses for\n"
                 "the same thing (`MC_*`, shown after \"else\"). It is read only when the\n"
                 "`MCEFAD_*` variable is not set at all (set to an empty value counts as set),\n"
                 "so the order is: flag, then `MCEFAD_*`, then `MC_*`, then the file, then the\n"
                 "default.\n\n"
                 "`mcefad --check-config` checks every value against the \"values\" column and\n"
                 "exits with status 2 when one is wrong, as a start with the same settings\n"
                 "would (the systemd unit does not restart on status 2).\n\n"
                 "| setting | environment | default | values | meaning |\n|---|---|---|---|---|\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting *s = &settings[i];
        char vals[160], env[128];
        describe(s, vals, sizeof(vals));
        if (*s->mc_env)
            snprintf(env, sizeof(env), "`%s`, else `%s`", s->env, s->mc_env);
        else
            snprintf(env, sizeof(env), "`%s`", s->env);
        fprintf(out, "| `%s` | %s | `%s` | %s | %s |\n", s->name, env, s->def, vals, s->help);
    }
}

void config_free(mcefad_config *cfg)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (storage_of(settings[i].kind) == S_TEXT) {
            char **p = (char **)((char *)cfg + settings[i].offset);
            free(*p);
            *p = NULL;
        }
    free(cfg->config_file);
    cfg->config_file = NULL;
    free(cfg->print_topology);
    cfg->print_topology = NULL;
}

int config_load(mcefad_config *cfg, int argc, char **argv)
{
    memset(cfg, 0, sizeof(*cfg));
    int rc;
    for (size_t i = 0; i < NSETTINGS; i++)
        if ((rc = apply(cfg, &settings[i], settings[i].def, "built-in default")) < 0)
            return rc;

    /* The config file is named first, so find it before anything else. */
    const char *file = getenv("MCEFAD_CONFIG");
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--config=", 9))
            file = argv[i] + 9;
        else if (!strcmp(argv[i], "--config") && i + 1 < argc)
            file = argv[i + 1];
    }
    if (file && *file) {
        if (!(cfg->config_file = strdup(file)))
            return -ENOMEM;
        if ((rc = load_file(cfg, file)) < 0)
            return rc;
    }
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting *s = &settings[i];
        /* Mooncake's name stands in only when ours is absent, so a
         * deployment can set both for different processes. */
        const char *name = s->env, *v = getenv(s->env);
        if (!v && *s->mc_env)
            v = getenv(name = s->mc_env);
        if (v) {
            char origin[128];
            snprintf(origin, sizeof(origin), "environment %s", name);
            if ((rc = apply(cfg, s, v, origin)) < 0)
                return rc;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(a, "--version")) {
            printf("mcefad %s (protocol %u)\n", MCEFA_VERSION, MCEFA_PROTOCOL_VERSION);
            return 1;
        }
        if (!strcmp(a, "--print-config-reference")) {
            config_print_reference(stdout);
            return 1;
        }
        if (!strcmp(a, "--check-config")) {
            cfg->check_only = true;
            continue;
        }
        if (!strcmp(a, "--print-topology") || !strncmp(a, "--print-topology=", 17)) {
            free(cfg->print_topology);
            cfg->print_topology = strdup(a[16] == '=' ? a + 17 : "");
            continue;
        }
        if (!strncmp(a, "--config=", 9))
            continue;
        if (!strcmp(a, "--config")) {
            i++;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "mcefad: unexpected argument '%s' (flags look like --name=value; see --help)\n", a);
            return -EINVAL;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        const char *value;
        size_t nlen;
        if (eq) {
            nlen = (size_t)(eq - name);
            value = eq + 1;
        } else {
            nlen = strlen(name);
            value = NULL;
        }
        const setting *s = find(name, nlen);
        if (!s) {
            fprintf(stderr, "mcefad: unknown flag '%s' (mcefad --help lists them)\n", a);
            return -EINVAL;
        }
        if (!value) {
            if (s->kind == K_BOOL) {
                value = "true";
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                fprintf(stderr, "mcefad: setting %s: flag --%s needs a value; write --%s=VALUE\n", s->name, s->name,
                        s->name);
                return -EINVAL;
            }
        }
        char origin[128];
        snprintf(origin, sizeof(origin), "flag --%s", s->name);
        if ((rc = apply(cfg, s, value, origin)) < 0)
            return rc;
    }
    return 0;
}
