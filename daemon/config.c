#include "config.h"

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

/* ---- Value formats, shared by config_validate and the helpers ---------- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Decimal TCP port of len bytes at p, 1-65535. */
static int parse_port(const char *p, size_t len, int *port)
{
    if (len == 0 || len > 5)
        return -EINVAL;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)p[i]))
            return -EINVAL;
        v = v * 10 + (p[i] - '0');
    }
    if (v < 1 || v > 65535)
        return -EINVAL;
    *port = v;
    return 0;
}

/* Whether the len bytes at p are a dotted-quad IPv4 address, as libuv's
 * uv_ip4_addr (inet_pton) reads them. */
static bool is_ipv4(const char *p, size_t len)
{
    char buf[INET_ADDRSTRLEN];
    struct in_addr a;
    if (len >= sizeof(buf))
        return false;
    memcpy(buf, p, len);
    buf[len] = 0;
    return inet_pton(AF_INET, buf, &a) == 1;
}

/* A DNS name or an IPv4 address: letters, digits, '.', '-', '_'. */
static bool is_host_name(const char *p, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)p[i]) && p[i] != '.' && p[i] != '-' && p[i] != '_')
            return false;
    return true;
}

/* Checks an IPv4 address:port; why says what is wrong. */
static int check_hostport(const char *spec, const char **host, size_t *hostlen, int *port, char *why,
                          size_t whylen)
{
    const char *colon = strrchr(spec, ':');
    if (!colon) {
        if (is_ipv4(spec, strlen(spec)))
            snprintf(why, whylen, "'%s' has no port; write address:port, such as %s:9465", spec, spec);
        else
            snprintf(why, whylen, "'%s' is not an IPv4 address:port; write one such as 127.0.0.1:9465", spec);
        return -EINVAL;
    }
    size_t hl = (size_t)(colon - spec);
    if (!is_ipv4(spec, hl)) {
        snprintf(why, whylen, "'%.*s' in '%s' is not an IPv4 address; write address:port, such as 127.0.0.1:9465",
                 (int)hl, spec, spec);
        return -EINVAL;
    }
    if (parse_port(colon + 1, strlen(colon + 1), port) < 0) {
        snprintf(why, whylen, "port '%s' in '%s' is not a TCP port; give one from 1 to 65535", colon + 1, spec);
        return -EINVAL;
    }
    *host = spec;
    *hostlen = hl;
    return 0;
}

/* One "name=address[:port]" of a host map, spaces around each part dropped. */
typedef struct hostmap_entry {
    const char *name, *addr; /* addr includes ":port" when given */
    size_t namelen, addrlen;
    bool has_port;
} hostmap_entry;

/* Reads the entry at *pos and advances past it. Returns 0, -ENOENT at the
 * end of the map, or -EINVAL (why says what is wrong). */
static int hostmap_next(const char **pos, hostmap_entry *e, char *why, size_t whylen)
{
    const char *p = *pos;
    if (!p || !*p)
        return -ENOENT;
    const char *comma = strchr(p, ',');
    size_t l = comma ? (size_t)(comma - p) : strlen(p);
    *pos = comma ? comma + 1 : p + l;
    while (l && is_space(*p))
        p++, l--;
    while (l && is_space(p[l - 1]))
        l--;
    if (l == 0) {
        snprintf(why, whylen, "has an empty entry; separate name=address[:port] entries with single commas");
        return -EINVAL;
    }
    const char *eq = memchr(p, '=', l);
    if (!eq) {
        snprintf(why, whylen, "entry '%.*s' has no '='; write name=address[:port], such as hostb=10.0.0.7:17650",
                 (int)l, p);
        return -EINVAL;
    }
    e->name = p;
    e->namelen = (size_t)(eq - p);
    while (e->namelen && is_space(e->name[e->namelen - 1]))
        e->namelen--;
    e->addr = eq + 1;
    e->addrlen = l - (size_t)(eq + 1 - p);
    while (e->addrlen && is_space(*e->addr))
        e->addr++, e->addrlen--;
    if (e->namelen == 0) {
        snprintf(why, whylen, "entry '%.*s' has no host name before '='; write name=address[:port]", (int)l, p);
        return -EINVAL;
    }
    if (e->addrlen == 0) {
        snprintf(why, whylen, "entry '%.*s' has no address after '='; write name=address[:port], such as hostb=10.0.0.7",
                 (int)l, p);
        return -EINVAL;
    }
    if (!is_host_name(e->name, e->namelen)) {
        snprintf(why, whylen,
                 "entry '%.*s': '%.*s' is not a host name (letters, digits, '.', '-', '_'); write "
                 "name=address[:port]",
                 (int)l, p, (int)e->namelen, e->name);
        return -EINVAL;
    }
    const char *colon = memchr(e->addr, ':', e->addrlen);
    size_t hl = colon ? (size_t)(colon - e->addr) : e->addrlen;
    if (!is_host_name(e->addr, hl)) {
        snprintf(why, whylen,
                 "entry '%.*s': '%.*s' is not an IPv4 address or host name (IPv6 is not supported); write "
                 "name=address[:port], such as hostb=10.0.0.7",
                 (int)l, p, (int)e->addrlen, e->addr);
        return -EINVAL;
    }
    int port;
    e->has_port = colon != NULL;
    if (colon && parse_port(colon + 1, e->addrlen - hl - 1, &port) < 0) {
        snprintf(why, whylen, "entry '%.*s': port '%.*s' is not a TCP port; give one from 1 to 65535", (int)l, p,
                 (int)(e->addrlen - hl - 1), colon + 1);
        return -EINVAL;
    }
    return 0;
}

static int check_hostmap(const char *map, char *why, size_t whylen)
{
    /* hostmap_next stops at the end, so a trailing comma would pass. */
    size_t n = strlen(map);
    while (n && is_space(map[n - 1]))
        n--;
    if (n && map[n - 1] == ',') {
        snprintf(why, whylen, "'%s' ends with a comma; drop it", map);
        return -EINVAL;
    }
    const char *pos = map;
    hostmap_entry e;
    int rc;
    while ((rc = hostmap_next(&pos, &e, why, whylen)) == 0) {
        /* A second entry for a host would never be used. */
        const char *pos2 = pos;
        hostmap_entry f;
        char ignored[8];
        while (hostmap_next(&pos2, &f, ignored, sizeof(ignored)) == 0)
            if (f.namelen == e.namelen && !strncmp(f.name, e.name, e.namelen)) {
                snprintf(why, whylen, "names host '%.*s' twice; keep one entry per host", (int)e.namelen, e.name);
                return -EINVAL;
            }
    }
    return rc == -ENOENT ? 0 : rc;
}

static int check_names(const char *list, char *why, size_t whylen)
{
    unsigned item = 0;
    for (const char *p = list;;) {
        const char *comma = strchr(p, ',');
        size_t l = comma ? (size_t)(comma - p) : strlen(p);
        item++;
        while (l && is_space(*p))
            p++, l--;
        while (l && is_space(p[l - 1]))
            l--;
        if (l == 0) {
            snprintf(why, whylen, "item %u of '%s' is empty; separate names with single commas, such as a,b", item,
                     list);
            return -EINVAL;
        }
        for (size_t i = 0; i < l; i++)
            if (!isgraph((unsigned char)p[i])) {
                snprintf(why, whylen, "name '%.*s' in '%s' has a space or control character; separate names with "
                                      "commas",
                         (int)l, p, list);
                return -EINVAL;
            }
        if (!comma)
            break;
        p = comma + 1;
    }
    return 0;
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
        int rc = check_hostport(v, &h, &hl, &port, why, whylen);
        if (rc < 0 && s->min == 0) {
            size_t n = strlen(why);
            snprintf(why + n, whylen - n, ", or leave it empty to turn this off");
        }
        return rc;
    }
    case K_IPV4:
        if (is_ipv4(v, len))
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
        return check_names(v, why, whylen);
    case K_HOSTMAP:
        return check_hostmap(v, why, whylen);
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
    if (strcmp(cfg->peer_auth, "psk") != 0 && strcmp(cfg->peer_auth, "none") != 0) {
        fprintf(stderr, "mcefad: setting peer_auth: '%s' is unknown; give psk (a shared secret) or none\n",
                cfg->peer_auth);
        bad = -EINVAL;
    }
    return bad;
}

/* ---- Helpers ------------------------------------------------------------ */

int config_parse_hostport(const char *spec, char *host, size_t hostlen, int *port)
{
    const char *h;
    size_t hl;
    int p;
    char why[8]; /* callers get the errno; the text is for config_validate */
    if (!spec || check_hostport(spec, &h, &hl, &p, why, sizeof(why)) < 0)
        return -EINVAL;
    if (hl >= hostlen)
        return -ENOSPC;
    memcpy(host, h, hl);
    host[hl] = 0;
    *port = p;
    return 0;
}

int config_check_ipv4(const char *addr)
{
    return addr && is_ipv4(addr, strlen(addr)) ? 0 : -EINVAL;
}

int config_log_level(const char *name)
{
    /* log.h's levels, by the names log_parse_level takes. */
    static const struct {
        const char *name;
        int level;
    } levels[] = {{"error", LOG_ERROR}, {"warn", LOG_WARN}, {"warning", LOG_WARN}, {"info", LOG_INFO},
                  {"debug", LOG_DEBUG}};
    for (size_t i = 0; name && i < sizeof(levels) / sizeof(levels[0]); i++)
        if (!strcasecmp(name, levels[i].name))
            return levels[i].level;
    return -EINVAL;
}

int config_list_next(const char **pos, const char **name, size_t *len)
{
    const char *p = *pos;
    while (p && *p) {
        const char *comma = strchr(p, ',');
        size_t l = comma ? (size_t)(comma - p) : strlen(p);
        const char *next = comma ? comma + 1 : p + l;
        while (l && is_space(*p))
            p++, l--;
        while (l && is_space(p[l - 1]))
            l--;
        if (l) {
            *name = p;
            *len = l;
            *pos = next;
            return 0;
        }
        p = next;
    }
    *pos = p;
    return -ENOENT;
}

bool config_list_contains(const char *list, const char *name)
{
    const char *pos = list, *item;
    size_t len, n = strlen(name);
    while (config_list_next(&pos, &item, &len) == 0)
        if (len == n && !strncmp(item, name, n))
            return true;
    return false;
}

int config_hostmap_lookup(const char *map, const char *host, uint64_t default_port, char *out, size_t outlen)
{
    const char *pos = map;
    size_t hl = strlen(host);
    hostmap_entry e;
    char why[8];
    int rc;
    while ((rc = hostmap_next(&pos, &e, why, sizeof(why))) == 0) {
        if (e.namelen != hl || strncmp(e.name, host, hl) != 0)
            continue;
        int n = e.has_port ? snprintf(out, outlen, "%.*s", (int)e.addrlen, e.addr)
                           : snprintf(out, outlen, "%.*s:%llu", (int)e.addrlen, e.addr,
                                      (unsigned long long)default_port);
        return n < 0 || (size_t)n >= outlen ? -ENOSPC : 0;
    }
    return rc;
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
    fprintf(out, "usage: mcefad [--version] [--config=PATH] [--check-config] [--print-topology[=HWLOC_XML]]\n"
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
