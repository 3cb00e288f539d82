#include "ident.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

static char hostname[256];
static uint64_t epoch;
static uint64_t start_ms;

void ident_init(const char *name)
{
    if (name && *name)
        snprintf(hostname, sizeof(hostname), "%s", name);
    else if (gethostname(hostname, sizeof(hostname) - 1) < 0)
        strcpy(hostname, "localhost");
    /* The epoch tells peers this is a new incarnation of the daemon. */
    if (getrandom(&epoch, sizeof(epoch), 0) != sizeof(epoch))
        epoch = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    epoch |= 1;
    start_ms = clock_now_ms();
}

const char *ident_hostname(void)
{
    return hostname;
}

uint64_t ident_epoch(void)
{
    return epoch;
}

uint64_t ident_uptime_ms(void)
{
    return clock_now_ms() - start_ms;
}

size_t ident_host_len(const char *name)
{
    const char *colon = strrchr(name, ':');
    return colon ? (size_t)(colon - name) : strlen(name);
}

/* This host's interface addresses, read once: a segment named by one of
 * them is local. */
static char local_addrs[64][INET6_ADDRSTRLEN];
static int nlocal_addrs = -1;

static void load_local_addrs(void)
{
    struct ifaddrs *ifa, *i;
    nlocal_addrs = 0;
    if (getifaddrs(&ifa) < 0)
        return;
    for (i = ifa; i && nlocal_addrs < 64; i = i->ifa_next) {
        if (!i->ifa_addr)
            continue;
        const void *a = NULL;
        if (i->ifa_addr->sa_family == AF_INET)
            a = &((struct sockaddr_in *)i->ifa_addr)->sin_addr;
        else if (i->ifa_addr->sa_family == AF_INET6)
            a = &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
        if (a && inet_ntop(i->ifa_addr->sa_family, a, local_addrs[nlocal_addrs], INET6_ADDRSTRLEN))
            nlocal_addrs++;
    }
    freeifaddrs(ifa);
}

bool ident_is_local_name(const char *name)
{
    size_t hl = ident_host_len(name);
    if (hl == 0 || (hl == strlen(hostname) && strncmp(name, hostname, hl) == 0))
        return true;
    /* Loopback names always mean this host. */
    if ((hl == 9 && strncmp(name, "localhost", 9) == 0) || strncmp(name, "127.", 4) == 0)
        return true;
    if (nlocal_addrs < 0)
        load_local_addrs();
    for (int k = 0; k < nlocal_addrs; k++)
        if (strlen(local_addrs[k]) == hl && strncmp(name, local_addrs[k], hl) == 0)
            return true;
    return false;
}
