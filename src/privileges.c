/* privileges — dropping root after binding, and the open-file limit. */
#include "privileges.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

/* getpwnam_r wants a caller buffer of unknown size; grow it up to this. */
#define PRIVILEGES_PWBUF_MAX (1024 * 1024)

static void privileges_error(char *error, size_t error_size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void privileges_error(char *error, size_t error_size, const char *format, ...)
{
    if (error == NULL || error_size == 0)
        return;
    va_list args;
    va_start(args, format);
    vsnprintf(error, error_size, format, args);
    va_end(args);
}

/* Looks user up; fills uid and gid. Returns 0, or -1 with a message. */
static int privileges_lookup(const char *user, uid_t *uid, gid_t *gid, char *error,
                             size_t error_size)
{
    long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
    size_t size = hint > 0 ? (size_t)hint : 16384;
    struct passwd entry;
    struct passwd *found = NULL;
    char *buffer = NULL;
    int status;

    for (;;) {
        char *grown = realloc(buffer, size);
        if (grown == NULL) {
            free(buffer);
            privileges_error(error, error_size, "user '%s': out of memory", user);
            return -1;
        }
        buffer = grown;
        status = getpwnam_r(user, &entry, buffer, size, &found);
        if (status != ERANGE || size >= PRIVILEGES_PWBUF_MAX)
            break;
        size *= 2;
    }
    if (found != NULL) {
        *uid = found->pw_uid;
        *gid = found->pw_gid;
    }
    free(buffer);

    if (status != 0) {
        privileges_error(error, error_size, "user '%s': lookup failed: %s", user,
                         strerror(status));
        return -1;
    }
    if (found == NULL) {
        privileges_error(error, error_size, "user '%s' does not exist", user);
        return -1;
    }
    return 0;
}

/* Groups first: once the uid changes we may no longer change them. */
static int privileges_switch(const char *user, uid_t uid, gid_t gid, char *error,
                             size_t error_size)
{
    if (initgroups(user, gid) != 0) {
        privileges_error(error, error_size, "user '%s': cannot set groups: %s", user,
                         strerror(errno));
        return -1;
    }
    if (setresgid(gid, gid, gid) != 0) {
        privileges_error(error, error_size, "user '%s': cannot set group id %lu: %s", user,
                         (unsigned long)gid, strerror(errno));
        return -1;
    }
    if (setresuid(uid, uid, uid) != 0) {
        privileges_error(error, error_size, "user '%s': cannot set user id %lu: %s", user,
                         (unsigned long)uid, strerror(errno));
        return -1;
    }
    return 0;
}

/* Trust but verify: every id is the target one, and root is out of reach
 * (setuid(0) succeeding would mean a saved id or capability survived). */
static int privileges_verify(const char *user, uid_t uid, gid_t gid, char *error,
                             size_t error_size)
{
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;

    if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0 ||
        ruid != uid || euid != uid || suid != uid || rgid != gid || egid != gid ||
        sgid != gid) {
        privileges_error(error, error_size, "user '%s': ids did not change as asked", user);
        return -1;
    }
    if (setuid(0) == 0 || seteuid(0) == 0) {
        privileges_error(error, error_size, "user '%s': root could be regained", user);
        return -1;
    }
    if (gid != 0 && (setgid(0) == 0 || setegid(0) == 0)) {
        privileges_error(error, error_size, "user '%s': group root could be regained", user);
        return -1;
    }
    return 0;
}

int privileges_drop(const char *user, char *error, size_t error_size)
{
    if (user == NULL || user[0] == '\0' || geteuid() != 0)
        return 0;

    uid_t uid;
    gid_t gid;
    if (privileges_lookup(user, &uid, &gid, error, error_size) != 0)
        return -1;
    /* "Dropping" to root would silently keep every privilege. */
    if (uid == 0) {
        privileges_error(error, error_size, "user '%s' has uid 0; refusing to run as root",
                         user);
        return -1;
    }
    if (privileges_switch(user, uid, gid, error, error_size) != 0)
        return -1;
    return privileges_verify(user, uid, gid, error, error_size);
}

static unsigned long privileges_limit_value(rlim_t limit)
{
    if (limit == RLIM_INFINITY || limit > (rlim_t)ULONG_MAX)
        return ULONG_MAX;
    return (unsigned long)limit;
}

int privileges_raise_nofile(unsigned long wanted, unsigned long *got)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0)
        return -1;

    unsigned long soft = privileges_limit_value(limit.rlim_cur);
    if (soft < wanted) {
        unsigned long hard = privileges_limit_value(limit.rlim_max);
        unsigned long target = wanted < hard ? wanted : hard;
        if (target > soft) {
            limit.rlim_cur = (rlim_t)target;
            if (setrlimit(RLIMIT_NOFILE, &limit) != 0)
                return -1;
            soft = target;
        }
    }
    if (got != NULL)
        *got = soft;
    return soft >= wanted ? 0 : 1;
}
