/* The formats of setting values (ports, host:port, IPv4 addresses, name
 * lists, host maps): the checks config_validate applies and the helpers
 * the rest of the daemon parses validated values with. */
#include "config_values.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

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
bool config_values_ipv4(const char *p, size_t len)
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
int config_values_hostport(const char *spec, const char **host, size_t *hostlen, int *port, char *why,
                          size_t whylen)
{
    const char *colon = strrchr(spec, ':');
    if (!colon) {
        if (config_values_ipv4(spec, strlen(spec)))
            snprintf(why, whylen, "'%s' has no port; write address:port, such as %s:9465", spec, spec);
        else
            snprintf(why, whylen, "'%s' is not an IPv4 address:port; write one such as 127.0.0.1:9465", spec);
        return -EINVAL;
    }
    size_t hl = (size_t)(colon - spec);
    if (!config_values_ipv4(spec, hl)) {
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

int config_values_hostmap(const char *map, char *why, size_t whylen)
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

int config_values_names(const char *list, char *why, size_t whylen)
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

/* ---- Helpers ------------------------------------------------------------ */

int config_parse_hostport(const char *spec, char *host, size_t hostlen, int *port)
{
    const char *h;
    size_t hl;
    int p;
    char why[8]; /* callers get the errno; the text is for config_validate */
    if (!spec || config_values_hostport(spec, &h, &hl, &p, why, sizeof(why)) < 0)
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
    return addr && config_values_ipv4(addr, strlen(addr)) ? 0 : -EINVAL;
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

