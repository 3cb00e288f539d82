#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

_Atomic int log_threshold = LOG_INFO;

static const char *const names[] = {"error", "warn", "info", "debug"};

int log_parse_level(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, names[i]) == 0)
            return i;
    if (strcasecmp(s, "warning") == 0)
        return LOG_WARN;
    return -1;
}

const char *log_level_name(int level)
{
    return level >= 0 && level < 4 ? names[level] : "?";
}

/* Repeats of one warning or error (same format) within a second are
 * counted, not printed; the count is reported with the next line. */
static pthread_mutex_t rl_lock = PTHREAD_MUTEX_INITIALIZER;
#define RL_SLOTS 16
static struct rl_slot {
    const char *fmt;
    time_t sec;
    unsigned long repeats;
} rl[RL_SLOTS];
static unsigned rl_next;

static void emit(int level, const char *fmt, va_list ap)
{
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ mcefad %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                     names[level]);
    if (n > 0 && (size_t)n < sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    /* One write per line so lines from threads never interleave. */
    size_t len = strnlen(line, sizeof(line) - 2);
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}

static void emit_fmt(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(level, fmt, ap);
    va_end(ap);
}

void log_write(int level, const char *fmt, ...)
{
    if (level > log_threshold)
        return;
    /* Only warnings and errors storm; info lines are all kept. Recent
     * formats are remembered so that interleaved storms are damped too. */
    if (level <= LOG_WARN) {
        struct rl_slot flush[RL_SLOTS];
        unsigned nflush = 0;
        bool suppress = false;
        pthread_mutex_lock(&rl_lock);
        time_t now = time(NULL); /* under the lock: seconds never go back */
        struct rl_slot *mine = NULL;
        for (unsigned i = 0; i < RL_SLOTS; i++) {
            struct rl_slot *r = &rl[i];
            if (r->fmt == fmt)
                mine = r;
            if (r->repeats && r->sec != now) {
                flush[nflush++] = *r; /* a finished run: report its count */
                r->repeats = 0;
            }
        }
        if (mine && mine->sec == now) {
            mine->repeats++;
            suppress = true;
        } else {
            if (!mine) {
                mine = &rl[rl_next++ % RL_SLOTS];
                if (mine->repeats)
                    flush[nflush++] = *mine;
            }
            mine->fmt = fmt;
            mine->sec = now;
            mine->repeats = 0;
        }
        pthread_mutex_unlock(&rl_lock);
        for (unsigned i = 0; i < nflush; i++)
            emit_fmt(LOG_WARN, "(a warning like \"%.60s\" repeated %lu more times)", flush[i].fmt,
                     flush[i].repeats);
        if (suppress)
            return;
    }
    va_list ap;
    va_start(ap, fmt);
    emit(level, fmt, ap);
    va_end(ap);
}
