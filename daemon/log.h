/* Leveled logging to stderr, one line per event. */
#ifndef MCEFAD_LOG_H
#define MCEFAD_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Set by the event loop (mcefactl loglevel), read by every thread. */
extern _Atomic int log_threshold;

/* Returns the level for "error|warn|info|debug", or -1. */
int log_parse_level(const char *s);
const char *log_level_name(int level);

void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_write(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                          \
    do {                                        \
        if (log_threshold >= LOG_DEBUG)         \
            log_write(LOG_DEBUG, __VA_ARGS__);  \
    } while (0)

#endif
