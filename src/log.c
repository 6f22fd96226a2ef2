/* log — leveled log lines on stderr. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Long enough for any message the daemon writes; longer ones are cut and
 * marked so a hostile request path cannot make one line unbounded. */
#define LOG_MESSAGE_MAX 2048
#define LOG_TIMESTAMP_SIZE sizeof("2026-11-24T06:42:50Z")
#define LOG_LINE_MAX (LOG_TIMESTAMP_SIZE + 8 + LOG_MESSAGE_MAX * 4 + sizeof("...\n"))

static const char *const log_level_names[] = {
    [LOG_LEVEL_ERROR] = "error",
    [LOG_LEVEL_WARN] = "warn",
    [LOG_LEVEL_INFO] = "info",
    [LOG_LEVEL_DEBUG] = "debug",
};

#define LOG_LEVEL_COUNT (sizeof(log_level_names) / sizeof(log_level_names[0]))

/* syslog(3) priorities, as the journal reads them from a "<N>" prefix. */
static const char *const log_journal_prefixes[] = {
    [LOG_LEVEL_ERROR] = "<3>",
    [LOG_LEVEL_WARN] = "<4>",
    [LOG_LEVEL_INFO] = "<6>",
    [LOG_LEVEL_DEBUG] = "<7>",
};

int log_level_parse(const char *name, enum log_level *level)
{
    if (name == NULL)
        return -1;
    for (size_t i = 0; i < LOG_LEVEL_COUNT; i++) {
        if (strcmp(name, log_level_names[i]) == 0) {
            *level = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

/* Parses an unsigned decimal number ending at *end; digits only, so a
 * sign, blank or empty field cannot be mistaken for a device or inode. */
static bool log_parse_number(const char *text, char **end, unsigned long long *value)
{
    if (*text < '0' || *text > '9')
        return false;
    errno = 0;
    *value = strtoull(text, end, 10);
    return errno == 0;
}

bool log_stderr_is_journal(void)
{
    const char *stream = getenv("JOURNAL_STREAM");
    if (stream == NULL)
        return false;

    unsigned long long device, inode;
    char *end;
    if (!log_parse_number(stream, &end, &device) || *end != ':' ||
        !log_parse_number(end + 1, &end, &inode) || *end != '\0')
        return false;

    struct stat st;
    if (fstat(STDERR_FILENO, &st) != 0)
        return false;
    return (unsigned long long)st.st_dev == device && (unsigned long long)st.st_ino == inode;
}

void log_init(struct log *log, enum log_level level)
{
    log->level = level;
    log->journal = log_stderr_is_journal();
}

static size_t log_timestamp(char *out, size_t size)
{
    time_t now = time(NULL);
    struct tm tm;

    if (now == (time_t)-1 || gmtime_r(&now, &tm) == NULL)
        return (size_t)snprintf(out, size, "%s", "0000-00-00T00:00:00Z");
    return strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Messages carry peer-controlled text (paths, origins); control bytes are
 * escaped so a client can neither forge extra log lines nor send escape
 * sequences to an operator's terminal. */
static size_t log_escape(char *out, const char *message, size_t length)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;

    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)message[i];
        if (c < 0x20 || c == 0x7f) {
            out[n++] = '\\';
            out[n++] = 'x';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 0x0f];
        } else {
            out[n++] = (char)c;
        }
    }
    return n;
}

/* One write(2) per line: concurrent writers (workers, other processes
 * sharing the journal pipe) never interleave inside a line. */
static void log_emit(const char *line, size_t length)
{
    while (length > 0) {
        ssize_t written = write(STDERR_FILENO, line, length);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            return;   /* nowhere left to report a failing stderr */
        }
        line += written;
        length -= (size_t)written;
    }
}

/* The journal stamps each line with time and priority itself. */
static size_t log_write_prefix(const struct log *log, enum log_level level, char *line)
{
    if (log != NULL && log->journal) {
        memcpy(line, log_journal_prefixes[level], 3);
        return 3;
    }
    size_t n = log_timestamp(line, LOG_TIMESTAMP_SIZE);
    line[n++] = ' ';
    size_t name_length = strlen(log_level_names[level]);
    memcpy(line + n, log_level_names[level], name_length);
    n += name_length;
    line[n++] = ' ';
    return n;
}

void log_write(const struct log *log, enum log_level level, const char *format, ...)
{
    enum log_level enabled = log != NULL ? log->level : LOG_LEVEL_INFO;
    if ((unsigned)level >= LOG_LEVEL_COUNT || level > enabled)
        return;

    /* Callers log and then inspect errno for their own error paths. */
    int saved_errno = errno;

    char message[LOG_MESSAGE_MAX];
    va_list args;
    va_start(args, format);
    int formatted = vsnprintf(message, sizeof(message), format, args);
    va_end(args);
    if (formatted < 0) {
        errno = saved_errno;
        return;
    }
    bool truncated = (size_t)formatted >= sizeof(message);
    size_t message_length = truncated ? sizeof(message) - 1 : (size_t)formatted;

    char line[LOG_LINE_MAX];
    size_t n = log_write_prefix(log, level, line);
    n += log_escape(line + n, message, message_length);
    if (truncated) {
        memcpy(line + n, "...", 3);
        n += 3;
    }
    line[n++] = '\n';
    log_emit(line, n);
    errno = saved_errno;
}
