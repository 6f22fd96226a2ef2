/* log — leveled log lines on stderr. */
#ifndef WSBROKER_LOG_H
#define WSBROKER_LOG_H

enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN = 1,
    LOG_LEVEL_INFO = 2,
    LOG_LEVEL_DEBUG = 3,
};

struct log {
    enum log_level level;
};

/* Parses "error" | "warn" | "info" | "debug". Returns 0, or -1 if unknown. */
int log_level_parse(const char *name, enum log_level *level);

/* Writes one line "LEVEL message" to stderr when level is enabled. */
void log_write(const struct log *log, enum log_level level, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(log, ...) log_write((log), LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(log, ...) log_write((log), LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(log, ...) log_write((log), LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(log, ...) log_write((log), LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
