/* log — leveled log lines on stderr. */
#ifndef WSBROKER_LOG_H
#define WSBROKER_LOG_H

#include <stdbool.h>

enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN = 1,
    LOG_LEVEL_INFO = 2,
    LOG_LEVEL_DEBUG = 3,
};

/* Zero-initialised (or { .level = ... }) it writes plain lines. */
struct log {
    _Atomic(enum log_level) level;   /* atomic: SIGHUP changes it while workers log */
    /* stderr is the systemd journal: lines carry "<N>" syslog priority
     * prefixes instead of a timestamp and level name. */
    bool journal;
};

/* Sets the level and detects once whether stderr is the journal: systemd
 * sets JOURNAL_STREAM to "DEV:INODE" of the stream it connects, and only
 * when stderr still is that stream (not redirected since) do the prefixes
 * apply. Later level changes may assign log->level directly. */
void log_init(struct log *log, enum log_level level);

/* Whether stderr is the stream named by $JOURNAL_STREAM. */
bool log_stderr_is_journal(void);

/* Parses "error" | "warn" | "info" | "debug". Returns 0, or -1 if unknown. */
int log_level_parse(const char *name, enum log_level *level);

/* Writes one line to stderr when level is enabled: "TIMESTAMP LEVEL message",
 * or "<PRIORITY>message" when log->journal is set. */
void log_write(const struct log *log, enum log_level level, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(log, ...) log_write((log), LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(log, ...) log_write((log), LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(log, ...) log_write((log), LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(log, ...) log_write((log), LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
