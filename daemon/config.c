#include "config.h"

#include "wire.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


mcefad_config config;

enum setting_type { T_STR, T_UINT, T_BOOL };

typedef struct setting {
    const char *name;
    enum setting_type type;
    const char *def;
    const char *env;
    const char *help;
    size_t offset;
} setting;

static const setting settings[] = {
#define X_ROW(type, name, def, env, help) {#name, T_##type, def, env, help, offsetof(mcefad_config, name)},
    MCEFAD_SETTINGS(X_ROW)
#undef X_ROW
};
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

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

/* Parses value into the field of s; origin names where it came from. */
static int apply(mcefad_config *cfg, const setting *s, const char *value, const char *origin)
{
    char *field = (char *)cfg + s->offset;
    switch (s->type) {
    case T_STR: {
        char *dup = strdup(value);
        if (!dup)
            return -ENOMEM;
        free(*(char **)field);
        *(char **)field = dup;
        return 0;
    }
    case T_UINT: {
        char *end;
        errno = 0;
        /* socket_mode is octal by convention; base 0 reads "0660" as octal. */
        unsigned long long v = strtoull(value, &end, 0);
        if (errno || end == value || *end || value[0] == '-') {
            fprintf(stderr, "mcefad: %s: setting %s wants a non-negative integer, got '%s'\n", origin, s->name,
                    value);
            return -EINVAL;
        }
        *(uint64_t *)field = v;
        return 0;
    }
    case T_BOOL:
        if (!strcasecmp(value, "true") || !strcmp(value, "1") || !strcasecmp(value, "yes") ||
            !strcasecmp(value, "on")) {
            *(bool *)field = true;
        } else if (!strcasecmp(value, "false") || !strcmp(value, "0") || !strcasecmp(value, "no") ||
                   !strcasecmp(value, "off")) {
            *(bool *)field = false;
        } else {
            fprintf(stderr, "mcefad: %s: setting %s wants true or false, got '%s'\n", origin, s->name, value);
            return -EINVAL;
        }
        return 0;
    }
    return -EINVAL;
}

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
    fprintf(out, "usage: mcefad [--version] [--config=PATH] [--check-config] [--print-topology[=HWLOC_XML]]\n"
                 "              [--NAME=VALUE ...]\n\n"
                 "Per-host transfer daemon. Settings (flag, environment, default):\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting *s = &settings[i];
        fprintf(out, "  --%s=%s  (env %s, default '%s')\n      %s\n", s->name,
                s->type == T_STR ? "STR" : s->type == T_UINT ? "N" : "BOOL", s->env, s->def, s->help);
    }
    fprintf(out, "\nThe config file holds 'name = value' lines; flags override the environment,\n"
                 "which overrides the file.\n");
}

void config_print_reference(FILE *out)
{
    fprintf(out, "# mcefad configuration reference\n\n"
                 "Generated by `mcefad --print-config-reference`; do not edit by hand.\n\n"
                 "Each setting can be given in the config file (`name = value`), in the\n"
                 "environment, or as a flag `--name=value`. Flags override the environment,\n"
                 "which overrides the file (`--config=PATH` or `MCEFAD_CONFIG`).\n\n"
                 "| setting | environment | default | meaning |\n|---|---|---|---|\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting *s = &settings[i];
        fprintf(out, "| `%s` | `%s` | `%s` | %s |\n", s->name, s->env, s->def, s->help);
    }
}

void config_free(mcefad_config *cfg)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (settings[i].type == T_STR) {
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
        const char *v = getenv(settings[i].env);
        if (v) {
            char origin[128];
            snprintf(origin, sizeof(origin), "environment %s", settings[i].env);
            if ((rc = apply(cfg, &settings[i], v, origin)) < 0)
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
            if (s->type == T_BOOL) {
                value = "true";
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                fprintf(stderr, "mcefad: flag --%s needs a value\n", s->name);
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
