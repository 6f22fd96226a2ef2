/* Unit tests for the cluster codec: the redis:// URL, the payload nodes
 * exchange through Redis, and where a resuming subscriber stands. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cluster_codec.h"

static void test_url_defaults(void **state)
{
    (void)state;
    struct cluster_url url;
    const char *problem = NULL;
    assert_int_equal(cluster_url_parse("redis://127.0.0.1", &url, &problem), 0);
    assert_string_equal(url.host, "127.0.0.1");
    assert_int_equal(url.port, 6379);
    assert_int_equal(url.db, 0);
    assert_null(url.user);
    assert_null(url.password);
    cluster_url_clear(&url);
}

static void test_url_every_part(void **state)
{
    (void)state;
    struct cluster_url url;
    const char *problem = NULL;
    assert_int_equal(cluster_url_parse("redis://alice:s3cret@redis.example:6380/4", &url, &problem), 0);
    assert_string_equal(url.host, "redis.example");
    assert_int_equal(url.port, 6380);
    assert_int_equal(url.db, 4);
    assert_string_equal(url.user, "alice");
    assert_string_equal(url.password, "s3cret");
    cluster_url_clear(&url);
    assert_int_equal(cluster_url_parse("redis://:pw@localhost/", &url, &problem), 0);
    assert_null(url.user);
    assert_string_equal(url.password, "pw");
    assert_int_equal(url.db, 0);
    cluster_url_clear(&url);
}

static void test_url_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "http://127.0.0.1", "redis://", "redis://:6379", "redis://host:0", "redis://host:65536",
        "redis://host:port", "redis://host/x", "redis://host/-1", "redis://user@host",
        "redis://ho st", "rediss://host", "redis://[::1]:6379",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cluster_url url;
        const char *problem = NULL;
        assert_int_equal(cluster_url_parse(bad[i], &url, &problem), -1);
        assert_non_null(problem);
    }
}

static void test_prefix(void **state)
{
    (void)state;
    assert_true(cluster_prefix_valid("wsbroker:"));
    assert_true(cluster_prefix_valid("a"));
    assert_false(cluster_prefix_valid(""));
    assert_false(cluster_prefix_valid("has space"));
    assert_false(cluster_prefix_valid("tab\there"));
    assert_false(cluster_prefix_valid("\xc3\xa9"));
}

static void test_message_round_trip(void **state)
{
    (void)state;
    static const uint8_t body[] = { 'h', 0, '\n', 0xff, ' ' };
    struct cluster_wire wire = {
        .type = CLUSTER_WIRE_MESSAGE, .kind = MESSAGE_BINARY, .seq = 42,
        .published_at = 1700000000123, .node = 0xabcdef0123456789ULL, .except = 7,
        .from = "bob", .from_length = 3, .body = body, .body_length = sizeof(body),
    };
    strcpy(wire.epoch, "5f3a-1b");
    size_t length = 0;
    char *text = cluster_wire_encode(&wire, &length);
    assert_non_null(text);
    struct cluster_wire back;
    assert_int_equal(cluster_wire_decode(text, length, &back), 0);
    assert_int_equal(back.type, CLUSTER_WIRE_MESSAGE);
    assert_int_equal(back.kind, MESSAGE_BINARY);
    assert_int_equal(back.seq, 42);
    assert_string_equal(back.epoch, "5f3a-1b");
    assert_int_equal(back.published_at, 1700000000123);
    assert_true(back.node == 0xabcdef0123456789ULL);
    assert_int_equal(back.except, 7);
    assert_int_equal(back.from_length, 3);
    assert_memory_equal(back.from, "bob", 3);
    assert_int_equal(back.body_length, sizeof(body));
    assert_memory_equal(back.body, body, sizeof(body));
    free(text);
}

/* What the publish script builds, byte for byte: the script and the
 * decoder must agree. */
static void test_script_format_decodes(void **state)
{
    (void)state;
    static const char payload[] = "m j 3 e1 1700000000001 1f 0 0\n{\"a\":1}";
    struct cluster_wire wire;
    assert_int_equal(cluster_wire_decode(payload, strlen(payload), &wire), 0);
    assert_int_equal(wire.kind, MESSAGE_JSON);
    assert_int_equal(wire.seq, 3);
    assert_null(wire.from);
    assert_int_equal(wire.node, 0x1f);
    assert_int_equal(wire.body_length, 7);
    assert_memory_equal(wire.body, "{\"a\":1}", 7);
}

static void test_presence_round_trip(void **state)
{
    (void)state;
    struct cluster_wire wire = { .type = CLUSTER_WIRE_PRESENCE, .join = false, .node = 9,
                                 .from = "carol", .from_length = 5 };
    size_t length = 0;
    char *text = cluster_wire_encode(&wire, &length);
    assert_string_equal(text, "p leave 9 5\ncarol");
    struct cluster_wire back;
    assert_int_equal(cluster_wire_decode(text, length, &back), 0);
    assert_int_equal(back.type, CLUSTER_WIRE_PRESENCE);
    assert_false(back.join);
    assert_int_equal(back.from_length, 5);
    free(text);
}

static void test_malformed_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "m", "m j 1 e 1 1 0 0", "m x 1 e 1 1 0 0\n", "m j 0 e 1 1 0 0\n",
        "m j 1 e 1 1 0 9\nab", "m j -1 e 1 1 0 0\n", "m j 1 e 1 zz 0 0\n",
        "m j 1 e 1 1 0 0 extra\n", "p join 1 0\n", "p hop 1 1\nx", "p join 1 1\nxy",
        "q j 1 e 1 1 0 0\n", "m j 1 012345678901234567890123 1 1 0 0\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cluster_wire wire;
        assert_int_equal(cluster_wire_decode(bad[i], strlen(bad[i]), &wire), -1);
    }
    static const char nul[] = "m j 1 e\0 1 1 0 0\n";
    struct cluster_wire wire;
    assert_int_equal(cluster_wire_decode(nul, sizeof(nul) - 1, &wire), -1);
}

static void test_resume_plan(void **state)
{
    (void)state;
    struct cluster_resume plan;
    cluster_resume_plan(false, 0, NULL, 10, "e", 5, &plan);
    assert_true(plan.recovered);
    assert_int_equal(plan.replay_after, 10);
    cluster_resume_plan(true, 7, "e", 10, "e", 5, &plan);     /* 8..10 held */
    assert_true(plan.recovered);
    assert_int_equal(plan.replay_after, 7);
    cluster_resume_plan(true, 4, NULL, 10, "e", 5, &plan);    /* 5 is the oldest held */
    assert_true(plan.recovered);
    assert_int_equal(plan.replay_after, 4);
    cluster_resume_plan(true, 3, "e", 10, "e", 5, &plan);     /* 4 is gone */
    assert_false(plan.recovered);
    assert_int_equal(plan.replay_after, 0);
    cluster_resume_plan(true, 10, "e", 10, "e", 0, &plan);    /* up to date */
    assert_true(plan.recovered);
    assert_int_equal(plan.replay_after, 10);
    cluster_resume_plan(true, 2, "old", 10, "e", 1, &plan);   /* numbering restarted */
    assert_false(plan.recovered);
    assert_int_equal(plan.replay_after, 0);
    cluster_resume_plan(true, 7, "e", 10, "e", 0, &plan);     /* nothing held */
    assert_false(plan.recovered);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_defaults),
        cmocka_unit_test(test_url_every_part),
        cmocka_unit_test(test_url_refused),
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_message_round_trip),
        cmocka_unit_test(test_script_format_decodes),
        cmocka_unit_test(test_presence_round_trip),
        cmocka_unit_test(test_malformed_refused),
        cmocka_unit_test(test_resume_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
