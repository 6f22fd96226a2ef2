/* Unit tests for log lines under the journal: stderr is pointed at a
 * temporary file and JOURNAL_STREAM at that file's device and inode, as
 * systemd does for the stream it connects to a service. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <regex.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

struct capture {
    char path[32];
    int fd;
    int saved_stderr;
};

static int setup(void **state)
{
    struct capture *capture = calloc(1, sizeof(*capture));
    if (capture == NULL)
        return -1;
    snprintf(capture->path, sizeof(capture->path), "/tmp/wsbroker-log-XXXXXX");
    capture->fd = mkstemp(capture->path);
    if (capture->fd < 0)
        return -1;
    fflush(stderr);
    capture->saved_stderr = dup(STDERR_FILENO);
    if (capture->saved_stderr < 0 || dup2(capture->fd, STDERR_FILENO) < 0)
        return -1;
    *state = capture;
    return 0;
}

static int teardown(void **state)
{
    struct capture *capture = *state;
    unsetenv("JOURNAL_STREAM");
    if (capture == NULL)
        return 0;
    if (dup2(capture->saved_stderr, STDERR_FILENO) < 0)
        return -1;
    close(capture->saved_stderr);
    close(capture->fd);
    unlink(capture->path);
    free(capture);
    return 0;
}

/* Points JOURNAL_STREAM at what fd is, the way systemd formats it. */
static void set_journal_stream(int fd)
{
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    char value[64];
    snprintf(value, sizeof(value), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    assert_int_equal(setenv("JOURNAL_STREAM", value, 1), 0);
}

/* Everything written to stderr since setup; the caller frees it. */
static char *captured(struct capture *capture)
{
    off_t size = lseek(capture->fd, 0, SEEK_END);
    assert_true(size >= 0);
    char *text = calloc(1, (size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(pread(capture->fd, text, (size_t)size, 0), size);
    return text;
}

static void assert_captured(struct capture *capture, const char *expected)
{
    char *text = captured(capture);
    assert_string_equal(text, expected);
    free(text);
}

static void assert_plain(struct capture *capture)
{
    char *text = captured(capture);
    regex_t regex;
    assert_int_equal(regcomp(&regex,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z "
                             "info plain line\n$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    int result = regexec(&regex, text, 0, NULL, 0);
    regfree(&regex);
    if (result != 0)
        fail_msg("not a plain line: \"%s\"", text);
    free(text);
}

static void test_journal_prefixes(void **state)
{
    struct capture *capture = *state;
    set_journal_stream(capture->fd);
    struct log log;
    log_init(&log, LOG_LEVEL_DEBUG);
    assert_true(log.journal);
    assert_int_equal(log.level, LOG_LEVEL_DEBUG);

    errno = EAGAIN;
    log_error(&log, "failed %d", 1);
    log_warn(&log, "careful");
    log_info(&log, "open %s", "127.0.0.1:5000 /chat/x");
    log_debug(&log, "detail");
    assert_int_equal(errno, EAGAIN);
    assert_captured(capture, "<3>failed 1\n<4>careful\n<6>open 127.0.0.1:5000 /chat/x\n"
                             "<7>detail\n");
}

static void test_journal_level_and_escaping(void **state)
{
    struct capture *capture = *state;
    set_journal_stream(capture->fd);
    struct log log;
    log_init(&log, LOG_LEVEL_INFO);
    assert_true(log.journal);

    log_debug(&log, "not shown");
    /* A peer's newline must not start a line with a forged priority. */
    log_info(&log, "path /a\n<3>forged");
    log.level = LOG_LEVEL_ERROR;   /* a reload changes only the level */
    log_warn(&log, "not shown either");
    log_error(&log, "still journal");
    assert_captured(capture, "<6>path /a\\x0a<3>forged\n<3>still journal\n");
}

static void test_journal_long_line(void **state)
{
    struct capture *capture = *state;
    set_journal_stream(capture->fd);
    struct log log;
    log_init(&log, LOG_LEVEL_INFO);

    char message[5000];
    memset(message, 'a', sizeof(message) - 1);
    message[sizeof(message) - 1] = '\0';
    log_info(&log, "%s", message);
    char *text = captured(capture);
    size_t length = strlen(text);
    assert_int_equal(length, 3 + 2047 + 3 + 1);
    assert_memory_equal(text, "<6>aaa", 6);
    assert_string_equal(text + length - 5, "a...\n");
    free(text);
}

static void test_plain_without_variable(void **state)
{
    struct capture *capture = *state;
    assert_int_equal(unsetenv("JOURNAL_STREAM"), 0);
    assert_false(log_stderr_is_journal());
    struct log log;
    log_init(&log, LOG_LEVEL_INFO);
    assert_false(log.journal);
    log_info(&log, "plain line");
    assert_plain(capture);
}

/* The variable is inherited by children whose stderr was redirected: a
 * stream that is not the named one gets plain lines. */
static void test_plain_when_redirected(void **state)
{
    struct capture *capture = *state;
    set_journal_stream(capture->saved_stderr);
    struct stat ours, theirs;
    assert_int_equal(fstat(capture->fd, &ours), 0);
    assert_int_equal(fstat(capture->saved_stderr, &theirs), 0);
    if (ours.st_dev == theirs.st_dev && ours.st_ino == theirs.st_ino)
        skip();
    struct log log;
    log_init(&log, LOG_LEVEL_INFO);
    assert_false(log.journal);
    log_info(&log, "plain line");
    assert_plain(capture);
}

static void test_malformed_variable(void **state)
{
    struct capture *capture = *state;
    struct stat st;
    assert_int_equal(fstat(capture->fd, &st), 0);
    unsigned long long device = (unsigned long long)st.st_dev;
    unsigned long long inode = (unsigned long long)st.st_ino;

    char good[64];
    snprintf(good, sizeof(good), "%llu:%llu", device, inode);
    assert_int_equal(setenv("JOURNAL_STREAM", good, 1), 0);
    assert_true(log_stderr_is_journal());

    char bad[7][80];
    snprintf(bad[0], sizeof(bad[0]), "%llu:%llux", device, inode);
    snprintf(bad[1], sizeof(bad[1]), "%llu:", device);
    snprintf(bad[2], sizeof(bad[2]), ":%llu", inode);
    snprintf(bad[3], sizeof(bad[3]), "%llu %llu", device, inode);
    snprintf(bad[4], sizeof(bad[4]), "%llu: %llu", device, inode);
    snprintf(bad[5], sizeof(bad[5]), "%llu:%llu0", device, inode);
    snprintf(bad[6], sizeof(bad[6]), "%s", "");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(setenv("JOURNAL_STREAM", bad[i], 1), 0);
        if (log_stderr_is_journal())
            fail_msg("JOURNAL_STREAM=\"%s\" accepted", bad[i]);
    }
    assert_int_equal(setenv("JOURNAL_STREAM", "99999999999999999999999:1", 1), 0);
    assert_false(log_stderr_is_journal());
    assert_int_equal(setenv("JOURNAL_STREAM", "-1:-1", 1), 0);
    assert_false(log_stderr_is_journal());
}

/* A struct log nobody initialised with log_init keeps the plain format. */
static void test_zero_initialised_is_plain(void **state)
{
    struct capture *capture = *state;
    set_journal_stream(capture->fd);
    struct log log = { .level = LOG_LEVEL_INFO };
    log_info(&log, "plain line");
    assert_plain(capture);
}

static void test_null_log_is_plain(void **state)
{
    struct capture *capture = *state;
    set_journal_stream(capture->fd);
    log_info(NULL, "plain line");
    assert_plain(capture);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_journal_prefixes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_level_and_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_long_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_without_variable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_when_redirected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_variable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_initialised_is_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_log_is_plain, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
