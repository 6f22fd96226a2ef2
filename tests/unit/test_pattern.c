/* Unit tests for glob-style name patterns.
 *
 * Besides hand-picked cases, the matcher is compared with an obviously
 * correct (and exponential) recursive reference on every short pattern and
 * name over a small alphabet, so a wrong backtracking step cannot hide. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pattern.h"

static bool reference_match(const char *pattern, const char *name)
{
    if (*pattern == '\0')
        return *name == '\0';
    if (*pattern == '*')
        return reference_match(pattern + 1, name) ||
               (*name != '\0' && reference_match(pattern, name + 1));
    return *pattern == *name && reference_match(pattern + 1, name + 1);
}

static void test_empty_pattern(void **state)
{
    (void)state;
    assert_true(pattern_match("", ""));
    assert_false(pattern_match("", "a"));
    assert_false(pattern_match("", "*"));
}

static void test_star_alone(void **state)
{
    (void)state;
    assert_true(pattern_match("*", ""));
    assert_true(pattern_match("*", "a"));
    assert_true(pattern_match("*", "room:lobby"));
    assert_true(pattern_match("**", ""));
    assert_true(pattern_match("***", "abc"));
}

static void test_literal(void **state)
{
    (void)state;
    assert_true(pattern_match("news", "news"));
    assert_false(pattern_match("news", "new"));
    assert_false(pattern_match("news", "newss"));
    assert_false(pattern_match("news", "News"));
    assert_false(pattern_match("news", ""));
    assert_false(pattern_match("a", "b"));
}

static void test_prefix_star(void **state)
{
    (void)state;
    assert_true(pattern_match("a*", "a"));
    assert_true(pattern_match("a*", "abc"));
    assert_false(pattern_match("a*", "ba"));
    assert_false(pattern_match("a*", ""));
    assert_true(pattern_match("room:*", "room:"));
    assert_true(pattern_match("room:*", "room:lobby"));
    assert_false(pattern_match("room:*", "room"));
    assert_false(pattern_match("room:*", "xroom:lobby"));
}

static void test_suffix_star(void **state)
{
    (void)state;
    assert_true(pattern_match("*b", "b"));
    assert_true(pattern_match("*b", "aab"));
    assert_true(pattern_match("*b", "bbb"));
    assert_false(pattern_match("*b", "ba"));
    assert_false(pattern_match("*b", ""));
    assert_true(pattern_match("*.log", "a.b.log"));
    assert_false(pattern_match("*.log", "a.log.x"));
}

static void test_inner_stars(void **state)
{
    (void)state;
    assert_true(pattern_match("a*b*c", "abc"));
    assert_true(pattern_match("a*b*c", "aXbYc"));
    assert_true(pattern_match("a*b*c", "abbbcc"));
    assert_true(pattern_match("a*b*c", "acbc"));
    assert_false(pattern_match("a*b*c", "acb"));
    assert_false(pattern_match("a*b*c", "ab"));
    assert_false(pattern_match("a*b*c", "abcd"));
    assert_true(pattern_match("a*a", "aa"));
    assert_false(pattern_match("a*a", "a"));
    assert_true(pattern_match("*a*", "bab"));
    assert_false(pattern_match("*a*", "bbb"));
    assert_true(pattern_match("a**b", "ab"));
    /* The second star's first attempt fails late; a matcher that gave up
     * instead of letting that star absorb more would answer false. */
    assert_true(pattern_match("*ab*cd", "xabyabcabcd"));
    assert_true(pattern_match("*abc", "ababc"));
}

static void test_star_is_the_only_special(void **state)
{
    (void)state;
    assert_false(pattern_match("a?c", "abc"));
    assert_true(pattern_match("a?c", "a?c"));
    assert_false(pattern_match("[ab]", "a"));
    assert_true(pattern_match("a.c", "a.c"));
    assert_false(pattern_match("a.c", "abc"));
    assert_true(pattern_match("a\\*", "a\\xyz"));
}

static void test_null_arguments(void **state)
{
    (void)state;
    assert_false(pattern_match(NULL, "a"));
    assert_false(pattern_match("*", NULL));
}

/* Every pattern over {a, b, *} and every name over {a, b} up to these
 * lengths: 3^7 * 2^7 comparisons. */
static void enumerate(char *buffer, size_t length, const char *alphabet, size_t count,
                      void (*visit)(const char *, void *), void *context)
{
    size_t total = 1;
    for (size_t i = 0; i < length; i++)
        total *= count;
    for (size_t n = 0; n < total; n++) {
        size_t value = n;
        for (size_t i = 0; i < length; i++) {
            buffer[i] = alphabet[value % count];
            value /= count;
        }
        buffer[length] = '\0';
        visit(buffer, context);
    }
}

static void compare_with_names(const char *pattern, void *context)
{
    (void)context;
    char name[8];
    for (size_t length = 0; length <= 7; length++) {
        size_t total = (size_t)1 << length;
        for (size_t n = 0; n < total; n++) {
            for (size_t i = 0; i < length; i++)
                name[i] = (n >> i) & 1 ? 'b' : 'a';
            name[length] = '\0';
            if (pattern_match(pattern, name) != reference_match(pattern, name))
                fail_msg("pattern \"%s\" name \"%s\": expected %d", pattern, name,
                         reference_match(pattern, name));
        }
    }
}

static void test_agrees_with_reference(void **state)
{
    (void)state;
    char pattern[8];
    for (size_t length = 0; length <= 7; length++)
        enumerate(pattern, length, "ab*", 3, compare_with_names, NULL);
}

static double seconds_since(clock_t start)
{
    return (double)(clock() - start) / CLOCKS_PER_SEC;
}

/* A recursive or naively backtracking matcher needs time exponential in
 * the number of stars here; this one is done in milliseconds. The bound
 * is generous for slow (sanitized) builds. */
static void test_pathological_patterns_are_fast(void **state)
{
    (void)state;
    /* An exponential matcher would never return: let the alarm end the
     * run as a failure instead of hanging it. */
    alarm(60);
    size_t length = 100000;
    char *name = malloc(length + 1);
    assert_non_null(name);
    memset(name, 'a', length);
    name[length] = '\0';

    char pattern[2 * 40 + 2];
    size_t p = 0;
    for (int i = 0; i < 40; i++) {
        pattern[p++] = 'a';
        pattern[p++] = '*';
    }
    pattern[p++] = 'b';
    pattern[p] = '\0';

    clock_t start = clock();
    assert_false(pattern_match(pattern, name));
    assert_false(pattern_match("a*a*a*a*b", name));
    assert_false(pattern_match("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", name));
    name[length - 1] = 'b';
    assert_true(pattern_match(pattern, name));
    assert_true(pattern_match("a*a*a*a*b", name));
    assert_true(pattern_match("*b", name));
    assert_false(pattern_match("*bb", name));
    assert_true(seconds_since(start) < 2.0);
    alarm(0);
    free(name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_pattern),
        cmocka_unit_test(test_star_alone),
        cmocka_unit_test(test_literal),
        cmocka_unit_test(test_prefix_star),
        cmocka_unit_test(test_suffix_star),
        cmocka_unit_test(test_inner_stars),
        cmocka_unit_test(test_star_is_the_only_special),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_agrees_with_reference),
        cmocka_unit_test(test_pathological_patterns_are_fast),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
