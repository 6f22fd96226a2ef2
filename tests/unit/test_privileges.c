/* Unit tests for dropping privileges and raising the open-file limit.
 *
 * Everything that changes process-wide state (ids, limits) runs in a forked
 * child, which reports through its exit status: 0 for success, otherwise
 * the number of the check that failed (printed on stderr as well). The
 * child leaves with _exit so no cmocka or sanitizer exit handler runs in a
 * process that is no longer root. CI runs these as root; not as root, the
 * real drops are skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "privileges.h"

#define CHECK(number, condition)                                               \
    do {                                                                       \
        if (!(condition)) {                                                    \
            fprintf(stderr, "child check %d failed: %s\n", number, #condition); \
            return number;                                                     \
        }                                                                      \
    } while (0)

static void run_in_child(int (*child)(void))
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child());

    int status;
    pid_t waited;
    do {
        waited = waitpid(pid, &status, 0);
    } while (waited < 0 && errno == EINTR);
    assert_int_equal(waited, pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void skip_unless_root(void)
{
    if (geteuid() != 0)
        skip();
}

static int set_nofile(rlim_t soft, rlim_t hard)
{
    struct rlimit limit = { .rlim_cur = soft, .rlim_max = hard };
    return setrlimit(RLIMIT_NOFILE, &limit);
}

static rlim_t current_soft(void)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0)
        return 0;
    return limit.rlim_cur;
}

/* ---- privileges_raise_nofile ---- */

static void test_nofile_already_enough(void **state)
{
    (void)state;
    rlim_t before = current_soft();
    unsigned long got = 0;
    assert_int_equal(privileges_raise_nofile(1, &got), 0);
    assert_int_equal(current_soft(), before);   /* never lowered */
    assert_true(before == RLIM_INFINITY || got == (unsigned long)before);
    assert_int_equal(privileges_raise_nofile(0, NULL), 0);
}

static int child_nofile_raised(void)
{
    struct rlimit limit;
    CHECK(1, getrlimit(RLIMIT_NOFILE, &limit) == 0);
    CHECK(2, limit.rlim_max == RLIM_INFINITY || limit.rlim_max >= 128);
    CHECK(3, set_nofile(64, limit.rlim_max) == 0);

    unsigned long got = 0;
    CHECK(4, privileges_raise_nofile(128, &got) == 0);
    CHECK(5, got == 128);
    CHECK(6, current_soft() == 128);
    CHECK(7, privileges_raise_nofile(100, &got) == 0);   /* no lowering */
    CHECK(8, got == 128 && current_soft() == 128);
    return 0;
}

static void test_nofile_raised(void **state)
{
    (void)state;
    run_in_child(child_nofile_raised);
}

static int child_nofile_hard_limit(void)
{
    /* Lowering the hard limit is for good in this child: fine. */
    CHECK(1, set_nofile(100, 200) == 0);
    unsigned long got = 0;
    CHECK(2, privileges_raise_nofile(1000, &got) == 1);
    CHECK(3, got == 200);
    CHECK(4, current_soft() == 200);
    CHECK(5, privileges_raise_nofile(200, &got) == 0);
    CHECK(6, privileges_raise_nofile(201, NULL) == 1);
    return 0;
}

static void test_nofile_hard_limit(void **state)
{
    (void)state;
    run_in_child(child_nofile_hard_limit);
}

/* ---- privileges_drop ---- */

static void test_drop_without_user(void **state)
{
    (void)state;
    uid_t uid = getuid();
    char error[256] = "";
    assert_int_equal(privileges_drop(NULL, error, sizeof(error)), 0);
    assert_int_equal(privileges_drop("", error, sizeof(error)), 0);
    assert_int_equal(getuid(), uid);
    assert_string_equal(error, "");
}

/* Not root: nothing to do, whatever the user (even a missing one). */
static int child_drop_not_root(void)
{
    if (geteuid() == 0) {
        struct passwd *nobody = getpwnam("nobody");
        CHECK(1, nobody != NULL);
        CHECK(2, setgroups(0, NULL) == 0);
        CHECK(3, setresgid(nobody->pw_gid, nobody->pw_gid, nobody->pw_gid) == 0);
        CHECK(4, setresuid(nobody->pw_uid, nobody->pw_uid, nobody->pw_uid) == 0);
    }
    uid_t uid = getuid();
    gid_t gid = getgid();
    char error[256] = "";
    CHECK(5, privileges_drop("root", error, sizeof(error)) == 0);
    CHECK(6, privileges_drop("no-such-user-wsbroker", error, sizeof(error)) == 0);
    CHECK(7, getuid() == uid && geteuid() == uid && getgid() == gid && getegid() == gid);
    CHECK(8, error[0] == '\0');
    return 0;
}

static void test_drop_not_root(void **state)
{
    (void)state;
    run_in_child(child_drop_not_root);
}

static int child_drop_to_nobody(void)
{
    struct passwd *entry = getpwnam("nobody");
    CHECK(1, entry != NULL && entry->pw_uid != 0);
    uid_t uid = entry->pw_uid;
    gid_t gid = entry->pw_gid;
    /* Give root supplementary groups (root, adm) that must not survive. */
    const gid_t root_groups[2] = { 0, 4 };
    CHECK(12, setgroups(2, root_groups) == 0);

    char error[256] = "";
    int result = privileges_drop("nobody", error, sizeof(error));
    if (result != 0)
        fprintf(stderr, "privileges_drop: %s\n", error);
    CHECK(2, result == 0);

    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;
    CHECK(3, getresuid(&ruid, &euid, &suid) == 0);
    CHECK(4, ruid == uid && euid == uid && suid == uid);
    CHECK(5, getresgid(&rgid, &egid, &sgid) == 0);
    CHECK(6, rgid == gid && egid == gid && sgid == gid);
    CHECK(7, setuid(0) == -1 && errno == EPERM);
    CHECK(8, seteuid(0) == -1);
    CHECK(9, setgid(0) == -1);

    /* Root's supplementary groups are gone. */
    gid_t groups[64];
    int count = getgroups(64, groups);
    CHECK(10, count >= 0);
    for (int i = 0; i < count; i++)
        CHECK(11, groups[i] != 0 && groups[i] != 4);
    return 0;
}

static void test_drop_to_nobody(void **state)
{
    (void)state;
    skip_unless_root();
    run_in_child(child_drop_to_nobody);
}

static int child_drop_unknown_user(void)
{
    char error[256] = "";
    CHECK(1, privileges_drop("no-such-user-wsbroker", error, sizeof(error)) == -1);
    CHECK(2, strstr(error, "no-such-user-wsbroker") != NULL);
    CHECK(3, strstr(error, "does not exist") != NULL);
    CHECK(4, getuid() == 0 && geteuid() == 0);
    return 0;
}

static void test_drop_unknown_user(void **state)
{
    (void)state;
    skip_unless_root();
    run_in_child(child_drop_unknown_user);
}

static int child_drop_to_root_refused(void)
{
    char error[256] = "";
    CHECK(1, privileges_drop("root", error, sizeof(error)) == -1);
    CHECK(2, strstr(error, "uid 0") != NULL);
    /* A small buffer is cut, not overrun; no buffer at all is fine too. */
    char small[8];
    CHECK(3, privileges_drop("root", small, sizeof(small)) == -1);
    CHECK(4, strlen(small) == sizeof(small) - 1);
    CHECK(5, privileges_drop("root", NULL, 0) == -1);
    return 0;
}

static void test_drop_to_root_refused(void **state)
{
    (void)state;
    skip_unless_root();
    run_in_child(child_drop_to_root_refused);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nofile_already_enough),
        cmocka_unit_test(test_nofile_raised),
        cmocka_unit_test(test_nofile_hard_limit),
        cmocka_unit_test(test_drop_without_user),
        cmocka_unit_test(test_drop_not_root),
        cmocka_unit_test(test_drop_to_nobody),
        cmocka_unit_test(test_drop_unknown_user),
        cmocka_unit_test(test_drop_to_root_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
