#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int err_set(err *e, int code, const char *fmt, ...)
{
    if (!e)
        return code;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->text, sizeof(e->text), fmt, ap);
    va_end(ap);
    return code;
}

int err_prefix(err *e, const char *fmt, ...)
{
    char ctx[ERR_TEXT_MAX], old[ERR_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof(ctx), fmt, ap);
    va_end(ap);
    snprintf(old, sizeof(old), "%s", e->text);
    snprintf(e->text, sizeof(e->text), "%s: %s", ctx, old);
    return e->code;
}
