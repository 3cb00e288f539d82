#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static _Thread_local char last_error[512];

int client_error(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
    return err;
}

const char *mcefa_last_error(void)
{
    return last_error;
}

const char *mcefa_strerror(int err)
{
    if (err > 0)
        err = -err;
    switch (err) {
    case 0:
        return "success";
    case -ECONNREFUSED:
        return "mcefad is not running (no daemon listens on the socket)";
    case -ECONNRESET:
        return "connection to mcefad lost";
    case -EPROTONOSUPPORT:
        return "client and daemon speak different protocol versions";
    case -EFAULT:
        return "address range not inside registered memory";
    case -ETIMEDOUT:
        return "timed out";
    default:
        return strerror(-err);
    }
}
