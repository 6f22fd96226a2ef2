/* Unit tests for the incremental UTF-8 validator.
 *
 * Besides hand-picked vectors, the validator is checked exhaustively against
 * a reference written the slow, obvious way (decode the code point and look
 * at its range), so a wrong table entry cannot hide. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "utf8.h"

/* ---- helpers ---- */

/* Encodes cp in exactly n bytes (1..6), overlong or not; returns n. */
static size_t encode_forced(uint32_t cp, size_t n, uint8_t *out)
{
    static const uint8_t lead_marks[7] = { 0, 0x00, 0xC0, 0xE0, 0xF0, 0xF8, 0xFC };
    for (size_t i = n - 1; i > 0; i--) {
        out[i] = (uint8_t)(0x80 | (cp & 0x3F));
        cp >>= 6;
    }
    out[0] = (uint8_t)(lead_marks[n] | cp);
    return n;
}

/* Shortest encoding of a code point up to U+1FFFFF. */
static size_t encode(uint32_t cp, uint8_t *out)
{
    if (cp < 0x80)
        return encode_forced(cp, 1, out);
    if (cp < 0x800)
        return encode_forced(cp, 2, out);
    if (cp < 0x10000)
        return encode_forced(cp, 3, out);
    return encode_forced(cp, 4, out);
}

static enum utf8_status feed_all(const uint8_t *data, size_t len)
{
    struct utf8_validator v;
    utf8_validator_init(&v);
    return utf8_validator_feed(&v, data, len);
}

static enum utf8_status feed_str(const char *s)
{
    return feed_all((const uint8_t *)s, strlen(s));
}

/* Reference: index of the first byte after which data can no longer be a
 * prefix of valid UTF-8, or -1; *partial tells whether a valid input ends
 * inside a character. A sequence prefix is viable when completing it with
 * the smallest or largest continuation bytes gives an allowed scalar value:
 * every forbidden set (overlongs, surrogates, above U+10FFFF) is an interval
 * at one end of what a prefix can still become, so checking both ends is
 * enough. */
static int sequence_length(uint8_t lead)
{
    if (lead < 0x80)
        return 1;
    if ((lead & 0xE0) == 0xC0)
        return 2;
    if ((lead & 0xF0) == 0xE0)
        return 3;
    if ((lead & 0xF8) == 0xF0)
        return 4;
    return 0;
}

static bool scalar_allowed(uint32_t cp, int n)
{
    static const uint32_t minimum[5] = { 0, 0, 0x80, 0x800, 0x10000 };
    if (cp < minimum[n] || cp > 0x10FFFF)
        return false;
    return cp < 0xD800 || cp > 0xDFFF;
}

static bool prefix_viable(const uint8_t *seq, int have, int n)
{
    for (int fill = 0; fill < 2; fill++) {
        uint32_t cp = seq[0] & (0x7Fu >> n);
        for (int i = 1; i < n; i++) {
            uint8_t b = i < have ? seq[i] : (fill ? 0xBF : 0x80);
            cp = (cp << 6) | (b & 0x3F);
        }
        if (scalar_allowed(cp, n))
            return true;
    }
    return false;
}

static long reference_first_bad(const uint8_t *data, size_t len, bool *partial)
{
    size_t i = 0;
    *partial = false;
    while (i < len) {
        int n = sequence_length(data[i]);
        if (n == 0)
            return (long)i;
        if (n == 1) {
            i++;
            continue;
        }
        for (int have = 1; have <= n; have++) {
            if (have > 1) {
                if (i + (size_t)have - 1 >= len) {
                    *partial = true;
                    return -1;
                }
                if ((data[i + (size_t)have - 1] & 0xC0) != 0x80)
                    return (long)(i + (size_t)have - 1);
            }
            if (!prefix_viable(data + i, have, n))
                return (long)(i + (size_t)have - 1);
        }
        i += (size_t)n;
    }
    return -1;
}

static enum utf8_status reference_status(const uint8_t *data, size_t len)
{
    bool partial;
    if (reference_first_bad(data, len, &partial) >= 0)
        return UTF8_INVALID;
    return partial ? UTF8_PARTIAL : UTF8_COMPLETE;
}

/* Feeding byte by byte must turn INVALID exactly at the first bad byte. */
static void assert_fails_at(const uint8_t *data, size_t len, long bad)
{
    struct utf8_validator v;
    utf8_validator_init(&v);
    for (size_t i = 0; i < len; i++) {
        enum utf8_status status = utf8_validator_feed(&v, data + i, 1);
        if (bad >= 0 && (long)i >= bad)
            assert_int_equal(status, UTF8_INVALID);
        else
            assert_int_not_equal(status, UTF8_INVALID);
    }
}

/* Every two-piece split gives the same verdict as one feed. */
static void assert_split_invariant(const uint8_t *data, size_t len)
{
    enum utf8_status whole = feed_all(data, len);
    for (size_t cut = 0; cut <= len; cut++) {
        struct utf8_validator v;
        utf8_validator_init(&v);
        utf8_validator_feed(&v, data, cut);
        assert_int_equal(utf8_validator_feed(&v, data + cut, len - cut), whole);
    }
}

/* ---- hand-picked cases ---- */

static void test_empty_is_complete(void **state)
{
    struct utf8_validator v;
    utf8_validator_init(&v);
    assert_int_equal(utf8_validator_feed(&v, NULL, 0), UTF8_COMPLETE);
    assert_true(utf8_is_valid((const uint8_t *)"", 0));
}

static void test_ascii(void **state)
{
    uint8_t all[128];
    for (size_t i = 0; i < sizeof all; i++)
        all[i] = (uint8_t)i;
    assert_int_equal(feed_all(all, sizeof all), UTF8_COMPLETE);
    assert_int_equal(feed_str("Hello, world! The quick brown fox."), UTF8_COMPLETE);
    assert_true(utf8_is_valid(all, sizeof all));
}

static void test_multibyte_valid(void **state)
{
    assert_int_equal(feed_str("\xC3\xA9"), UTF8_COMPLETE);             /* é */
    assert_int_equal(feed_str("\xE2\x82\xAC"), UTF8_COMPLETE);         /* € */
    assert_int_equal(feed_str("\xF0\x9F\x98\x80"), UTF8_COMPLETE);     /* 😀 */
    assert_int_equal(feed_str("a\xC3\xA9z\xE2\x82\xAC\xF0\x9F\x98\x80!"), UTF8_COMPLETE);
    assert_int_equal(feed_str("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5"), UTF8_COMPLETE);
}

static void test_boundaries_valid(void **state)
{
    static const uint32_t edges[] = {
        0x0000, 0x007F, 0x0080, 0x07FF, 0x0800, 0x0FFF, 0x1000, 0xCFFF, 0xD000,
        0xD7FF, 0xE000, 0xFFFD, 0xFFFE, 0xFFFF, 0x10000, 0x3FFFF, 0x40000,
        0xFFFFF, 0x100000, 0x10FFFF,
    };
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        uint8_t buf[4];
        size_t n = encode(edges[i], buf);
        assert_int_equal(feed_all(buf, n), UTF8_COMPLETE);
        assert_true(utf8_is_valid(buf, n));
    }
    /* exact bytes, so encode() itself is not trusted blindly */
    assert_int_equal(feed_str("\x7F"), UTF8_COMPLETE);
    assert_int_equal(feed_str("\xC2\x80"), UTF8_COMPLETE);
    assert_int_equal(feed_str("\xDF\xBF"), UTF8_COMPLETE);
    assert_int_equal(feed_str("\xE0\xA0\x80"), UTF8_COMPLETE);
    assert_int_equal(feed_str("\xEF\xBF\xBF"), UTF8_COMPLETE);
    assert_int_equal(feed_str("\xF0\x90\x80\x80"), UTF8_COMPLETE);
    assert_int_equal(feed_str("\xF4\x8F\xBF\xBF"), UTF8_COMPLETE);
}

static void test_every_scalar_value(void **state)
{
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        uint8_t buf[4];
        size_t n = encode(cp, buf);
        enum utf8_status expected =
            (cp >= 0xD800 && cp <= 0xDFFF) ? UTF8_INVALID : UTF8_COMPLETE;
        assert_int_equal(feed_all(buf, n), expected);
    }
}

static void test_overlong_exact(void **state)
{
    /* '/' and NUL in every overlong width, and the largest overlongs */
    static const char *const cases[] = {
        "\xC0\xAF", "\xE0\x80\xAF", "\xF0\x80\x80\xAF", "\xF8\x80\x80\x80\xAF",
        "\xFC\x80\x80\x80\x80\xAF", "\xC0\x80", "\xE0\x80\x80", "\xF0\x80\x80\x80",
        "\xC1\xBF", "\xE0\x9F\xBF", "\xF0\x8F\xBF\xBF",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(feed_str(cases[i]), UTF8_INVALID);
}

static void test_every_overlong_form(void **state)
{
    /* each code point below a width's minimum, in that width */
    static const struct { size_t width; uint32_t limit; } widths[] = {
        { 2, 0x80 }, { 3, 0x800 }, { 4, 0x10000 },
    };
    for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
        for (uint32_t cp = 0; cp < widths[w].limit; cp++) {
            uint8_t buf[4];
            size_t n = encode_forced(cp, widths[w].width, buf);
            assert_int_equal(feed_all(buf, n), UTF8_INVALID);
            /* fail-fast: C0/C1 fail on the lead, E0/F0 on the second byte */
            assert_fails_at(buf, n, widths[w].width == 2 ? 0 : 1);
        }
    }
}

static void test_surrogates(void **state)
{
    assert_int_equal(feed_str("\xED\xA0\x80"), UTF8_INVALID);  /* U+D800 */
    assert_int_equal(feed_str("\xED\xAD\xBF"), UTF8_INVALID);  /* U+DB7F */
    assert_int_equal(feed_str("\xED\xAE\x80"), UTF8_INVALID);  /* U+DB80 */
    assert_int_equal(feed_str("\xED\xBF\xBF"), UTF8_INVALID);  /* U+DFFF */
    /* CESU-8 style pair for U+10000 */
    assert_int_equal(feed_str("\xED\xA0\x80\xED\xB0\x80"), UTF8_INVALID);
    assert_int_equal(feed_str("\xED\x9F\xBF"), UTF8_COMPLETE); /* U+D7FF */
    assert_int_equal(feed_str("\xEE\x80\x80"), UTF8_COMPLETE); /* U+E000 */
    /* known as soon as the second byte is seen */
    assert_int_equal(feed_str("\xED\xA0"), UTF8_INVALID);
    assert_int_equal(feed_str("\xED\x9F"), UTF8_PARTIAL);
}

static void test_above_max(void **state)
{
    assert_int_equal(feed_str("\xF4\x90\x80\x80"), UTF8_INVALID); /* U+110000 */
    assert_int_equal(feed_str("\xF4\x90"), UTF8_INVALID);
    assert_int_equal(feed_str("\xF7\xBF\xBF\xBF"), UTF8_INVALID); /* U+1FFFFF */
    assert_int_equal(feed_str("\xF8\x88\x80\x80\x80"), UTF8_INVALID);
    assert_int_equal(feed_str("\xFC\x84\x80\x80\x80\x80"), UTF8_INVALID);
    for (uint32_t cp = 0x110000; cp <= 0x1FFFFF; cp += 0x111) {
        uint8_t buf[4];
        size_t n = encode(cp, buf);
        assert_int_equal(feed_all(buf, n), UTF8_INVALID);
    }
}

static void test_bad_single_bytes(void **state)
{
    for (unsigned b = 0; b < 256; b++) {
        uint8_t byte = (uint8_t)b;
        enum utf8_status expected;
        if (b < 0x80)
            expected = UTF8_COMPLETE;
        else if (b < 0xC2 || b > 0xF4)
            expected = UTF8_INVALID; /* continuation, C0, C1, F5..FF */
        else
            expected = UTF8_PARTIAL;
        assert_int_equal(feed_all(&byte, 1), expected);
    }
}

static void test_stray_continuation(void **state)
{
    assert_int_equal(feed_str("\x80"), UTF8_INVALID);
    assert_int_equal(feed_str("\xBF"), UTF8_INVALID);
    assert_int_equal(feed_str("abc\x80"), UTF8_INVALID);
    assert_int_equal(feed_str("\xC3\xA9\xA9"), UTF8_INVALID);
    assert_int_equal(feed_str("\xF0\x9F\x98\x80\x80"), UTF8_INVALID);
}

static void test_truncated(void **state)
{
    assert_int_equal(feed_str("\xC3"), UTF8_PARTIAL);
    assert_int_equal(feed_str("\xE2\x82"), UTF8_PARTIAL);
    assert_int_equal(feed_str("\xF0\x9F\x98"), UTF8_PARTIAL);
    assert_false(utf8_is_valid((const uint8_t *)"\xE2\x82", 2));
    assert_false(utf8_is_valid((const uint8_t *)"ok\xF0\x9F\x98", 5));
    /* truncated and followed by something that is not a continuation */
    assert_int_equal(feed_str("\xC3" "A"), UTF8_INVALID);
    assert_int_equal(feed_str("\xE2\x82" "A"), UTF8_INVALID);
    assert_int_equal(feed_str("\xF0\x9F\x98" "A"), UTF8_INVALID);
    assert_int_equal(feed_str("\xE2\x82\xC3\xA9"), UTF8_INVALID);
}

static void test_partial_then_complete(void **state)
{
    static const uint8_t euro[] = { 0xE2, 0x82, 0xAC };
    struct utf8_validator v;
    utf8_validator_init(&v);
    assert_int_equal(utf8_validator_feed(&v, euro, 1), UTF8_PARTIAL);
    assert_int_equal(utf8_validator_feed(&v, NULL, 0), UTF8_PARTIAL);
    assert_int_equal(utf8_validator_feed(&v, euro + 1, 1), UTF8_PARTIAL);
    assert_int_equal(utf8_validator_feed(&v, euro + 2, 1), UTF8_COMPLETE);
    assert_int_equal(utf8_validator_feed(&v, NULL, 0), UTF8_COMPLETE);
}

static void test_invalid_is_sticky(void **state)
{
    struct utf8_validator v;
    utf8_validator_init(&v);
    assert_int_equal(utf8_validator_feed(&v, (const uint8_t *)"\xFF", 1), UTF8_INVALID);
    assert_int_equal(utf8_validator_feed(&v, (const uint8_t *)"abc", 3), UTF8_INVALID);
    assert_int_equal(utf8_validator_feed(&v, NULL, 0), UTF8_INVALID);
    utf8_validator_init(&v);
    assert_int_equal(utf8_validator_feed(&v, (const uint8_t *)"abc", 3), UTF8_COMPLETE);
}

static void test_fail_position_bytewise(void **state)
{
    static const struct { const char *bytes; long bad; } cases[] = {
        { "ab\xC3" "Acd", 3 },
        { "\xE2\x82" "A", 2 },
        { "\xE0\x80\x80", 1 },
        { "\xE0\x9F\x80", 1 },
        { "\xED\xA0\x80", 1 },
        { "\xF0\x80\x80\x80", 1 },
        { "\xF0\x8F\xBF\xBF", 1 },
        { "\xF4\x90\x80\x80", 1 },
        { "\xF4\x8F\xBF\xBF" "\xF5", 4 },
        { "\xC0\xAF", 0 },
        { "\xC1\x81", 0 },
        { "xyz\x80", 3 },
        { "\xF0\x9F\x98" "\xF0", 3 },
        { "\xC3\xA9\xFE", 2 },
        { "\xFF\xFF", 0 },
        { "0123456789abcdef0123\xFF" "0123456789", 20 },
        { "0123456789abcdef\xC3\xA9" "0123456\x80" "89", 25 },
        /* ASCII inside a sequence must not ride the ASCII fast path */
        { "\xC3" "ABCDEFGHIJKLMNOP", 1 },
        { "\xE2\x82" "ABCDEFGHIJKLMNOP", 2 },
        { "\xF0\x9F\x98" "ABCDEFGHIJKLMNOP\xA9", 3 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const uint8_t *data = (const uint8_t *)cases[i].bytes;
        size_t len = strlen(cases[i].bytes);
        bool partial;
        assert_int_equal(reference_first_bad(data, len, &partial), cases[i].bad);
        assert_fails_at(data, len, cases[i].bad);
        assert_split_invariant(data, len);
    }
}

static void test_ascii_fast_path_positions(void **state)
{
    /* a bad byte at every offset of a long ASCII run, so each lane of the
     * word-at-a-time skip is exercised */
    uint8_t buf[40];
    for (size_t bad = 0; bad < sizeof buf; bad++) {
        memset(buf, 'a', sizeof buf);
        buf[bad] = 0x80;
        assert_int_equal(feed_all(buf, sizeof buf), UTF8_INVALID);
        assert_int_equal(feed_all(buf, bad), UTF8_COMPLETE);
        assert_fails_at(buf, sizeof buf, (long)bad);
        assert_split_invariant(buf, sizeof buf);
        /* a valid two-byte character there instead, then a truncated one */
        memset(buf, 'a', sizeof buf);
        if (bad + 1 < sizeof buf) {
            buf[bad] = 0xC3;
            buf[bad + 1] = 0xA9;
            assert_int_equal(feed_all(buf, sizeof buf), UTF8_COMPLETE);
            assert_int_equal(feed_all(buf, bad + 1), UTF8_PARTIAL);
        }
    }
}

/* ---- exhaustive and randomized comparison with the reference ---- */

static void test_exhaustive_short_sequences(void **state)
{
    uint8_t buf[3];
    for (unsigned a = 0; a < 256; a++) {
        buf[0] = (uint8_t)a;
        assert_int_equal(feed_all(buf, 1), reference_status(buf, 1));
        for (unsigned b = 0; b < 256; b++) {
            buf[1] = (uint8_t)b;
            assert_int_equal(feed_all(buf, 2), reference_status(buf, 2));
            for (unsigned c = 0; c < 256; c++) {
                buf[2] = (uint8_t)c;
                enum utf8_status got = feed_all(buf, 3);
                enum utf8_status want = reference_status(buf, 3);
                if (got != want)
                    fail_msg("%02X %02X %02X: got %d want %d", a, b, c, got, want);
            }
        }
    }
}

static void test_exhaustive_four_byte_leads(void **state)
{
    /* every lead F0..F7 with every second and third byte, fourth 80 or BF
     * or ASCII */
    static const uint8_t fourth[] = { 0x80, 0xBF, 0x41 };
    uint8_t buf[4];
    for (unsigned a = 0xF0; a <= 0xF7; a++) {
        for (unsigned b = 0; b < 256; b++) {
            for (unsigned c = 0; c < 256; c++) {
                for (size_t d = 0; d < sizeof fourth; d++) {
                    buf[0] = (uint8_t)a;
                    buf[1] = (uint8_t)b;
                    buf[2] = (uint8_t)c;
                    buf[3] = fourth[d];
                    enum utf8_status got = feed_all(buf, 4);
                    if (got != reference_status(buf, 4))
                        fail_msg("%02X %02X %02X %02X: got %d", a, b, c, fourth[d], got);
                }
            }
        }
    }
}

static uint32_t test_random_state = 0x12345678;

static uint32_t test_random(void)
{
    /* xorshift32: reproducible across runs and platforms */
    uint32_t x = test_random_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    test_random_state = x;
    return x;
}

static uint8_t random_interesting_byte(void)
{
    static const uint8_t picks[] = {
        0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2,
        0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF,
    };
    uint32_t r = test_random();
    if (r & 1)
        return picks[(r >> 1) % sizeof picks];
    /* long ASCII runs reach the word-at-a-time path from every state */
    if (r & 2)
        return 'a';
    return (uint8_t)(r >> 8);
}

static void test_random_against_reference(void **state)
{
    uint8_t buf[40];
    for (int round = 0; round < 300000; round++) {
        size_t len = test_random() % sizeof buf + 1;
        for (size_t i = 0; i < len; i++)
            buf[i] = random_interesting_byte();
        bool partial;
        long bad = reference_first_bad(buf, len, &partial);
        enum utf8_status want = bad >= 0 ? UTF8_INVALID
                                         : (partial ? UTF8_PARTIAL : UTF8_COMPLETE);
        assert_int_equal(feed_all(buf, len), want);
        assert_int_equal(utf8_is_valid(buf, len), want == UTF8_COMPLETE);
        if (round % 16 == 0) {
            assert_fails_at(buf, len, bad);
            assert_split_invariant(buf, len);
        }
    }
}

static void test_random_valid_text(void **state)
{
    /* long valid strings of mixed widths must pass however they are cut */
    uint8_t buf[512];
    for (int round = 0; round < 2000; round++) {
        size_t len = 0;
        while (len + 4 <= sizeof buf) {
            uint32_t cp;
            switch (test_random() % 4) {
            case 0: cp = test_random() % 0x80; break;
            case 1: cp = 0x80 + test_random() % (0x800 - 0x80); break;
            case 2: cp = 0x800 + test_random() % (0x10000 - 0x800); break;
            default: cp = 0x10000 + test_random() % (0x110000 - 0x10000); break;
            }
            if (cp >= 0xD800 && cp <= 0xDFFF)
                continue;
            len += encode(cp, buf + len);
        }
        assert_int_equal(feed_all(buf, len), UTF8_COMPLETE);
        if (round % 50 == 0)
            assert_split_invariant(buf, len);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_is_complete),
        cmocka_unit_test(test_ascii),
        cmocka_unit_test(test_multibyte_valid),
        cmocka_unit_test(test_boundaries_valid),
        cmocka_unit_test(test_every_scalar_value),
        cmocka_unit_test(test_overlong_exact),
        cmocka_unit_test(test_every_overlong_form),
        cmocka_unit_test(test_surrogates),
        cmocka_unit_test(test_above_max),
        cmocka_unit_test(test_bad_single_bytes),
        cmocka_unit_test(test_stray_continuation),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_partial_then_complete),
        cmocka_unit_test(test_invalid_is_sticky),
        cmocka_unit_test(test_fail_position_bytewise),
        cmocka_unit_test(test_ascii_fast_path_positions),
        cmocka_unit_test(test_exhaustive_short_sequences),
        cmocka_unit_test(test_exhaustive_four_byte_leads),
        cmocka_unit_test(test_random_against_reference),
        cmocka_unit_test(test_random_valid_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
