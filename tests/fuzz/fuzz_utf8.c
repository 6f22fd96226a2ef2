/* fuzz_utf8 — differential test of the UTF-8 validator.
 *
 * The reference below decodes one code point at a time the textbook way
 * (lead byte gives the length and the first bits, each continuation byte
 * must be 10xxxxxx, then the value is range-checked for overlongs,
 * surrogates and the U+10FFFF ceiling). It knows nothing of the DFA's byte
 * classes, so agreement between the two is evidence for both.
 *
 * For a buffer ending inside a sequence the reference asks whether any
 * completion could still be valid: the missing bits span [lo, hi], and a
 * completion exists when that interval meets the allowed values for the
 * sequence length outside the surrogate block. That is exactly the
 * validator's PARTIAL ("valid so far") versus INVALID ("can never be
 * valid"), so whole-buffer, two-piece and byte-by-byte feeding can all be
 * checked against it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"
#include "utf8.h"

#define REF_INVALID UTF8_INVALID
#define REF_COMPLETE UTF8_COMPLETE
#define REF_PARTIAL UTF8_PARTIAL

/* Sequence length announced by a lead byte, 0 when it cannot lead. */
static int ref_length(uint8_t b, uint32_t *bits)
{
    if (b < 0x80) {
        *bits = b;
        return 1;
    }
    if ((b & 0xE0) == 0xC0) {
        *bits = b & 0x1F;
        return 2;
    }
    if ((b & 0xF0) == 0xE0) {
        *bits = b & 0x0F;
        return 3;
    }
    if ((b & 0xF8) == 0xF0) {
        *bits = b & 0x07;
        return 4;
    }
    return 0;   /* a continuation byte or F8..FF */
}

/* Smallest code point that needs n bytes: anything below is overlong. */
static uint32_t ref_minimum(int n)
{
    switch (n) {
    case 1:
        return 0;
    case 2:
        return 0x80;
    case 3:
        return 0x800;
    default:
        return 0x10000;
    }
}

/* True when some code point in [lo, hi] is a valid scalar value that
 * needs exactly n bytes. */
static bool ref_range_has_valid(uint32_t lo, uint32_t hi, int n)
{
    uint32_t min = ref_minimum(n);
    if (lo < min)
        lo = min;
    if (hi > 0x10FFFF)
        hi = 0x10FFFF;
    if (lo > hi)
        return false;
    /* [lo, hi] minus the surrogates D800..DFFF */
    if (lo >= 0xD800 && hi <= 0xDFFF)
        return false;
    return true;
}

/* Status of data[0..len) as the validator should report it. */
static int ref_status(const uint8_t *data, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        int n = ref_length(data[i], &cp);
        if (n == 0)
            return REF_INVALID;
        int have = 1;
        while (have < n && i + (size_t)have < len) {
            uint8_t c = data[i + (size_t)have];
            if ((c & 0xC0) != 0x80)
                return REF_INVALID;
            cp = (cp << 6) | (c & 0x3F);
            have++;
        }
        if (have < n) {
            /* Truncated: could the missing continuation bytes still make
             * it valid? */
            int missing = n - have;
            uint32_t lo = cp << (6 * missing);
            uint32_t hi = lo | ((UINT32_C(1) << (6 * missing)) - 1);
            return ref_range_has_valid(lo, hi, n) ? REF_PARTIAL : REF_INVALID;
        }
        if (cp < ref_minimum(n))
            return REF_INVALID;             /* overlong */
        if (cp >= 0xD800 && cp <= 0xDFFF)
            return REF_INVALID;             /* surrogate */
        if (cp > 0x10FFFF)
            return REF_INVALID;             /* beyond Unicode */
        i += (size_t)n;
    }
    return REF_COMPLETE;
}

static void fail(const char *what, size_t size, size_t at, int expected, int got)
{
    fprintf(stderr, "fuzz_utf8: %s: size %zu, at %zu: expected %d, got %d\n", what, size, at,
            expected, got);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int whole = ref_status(data, size);

    /* Whole buffer. */
    bool valid = utf8_is_valid(data, size);
    if (valid != (whole == REF_COMPLETE))
        fail("utf8_is_valid", size, size, whole == REF_COMPLETE, valid);

    struct utf8_validator v;
    utf8_validator_init(&v);
    int got = utf8_validator_feed(&v, data, size);
    if (got != whole)
        fail("one feed", size, size, whole, got);
    got = utf8_validator_feed(&v, NULL, 0);
    if (got != whole)
        fail("empty feed keeps status", size, size, whole, got);

    /* Two pieces: the split comes from the first byte, and for short inputs
     * every split is tried. The piece boundary lands anywhere, including
     * inside a sequence and inside the 8-byte ASCII fast path. */
    size_t first = size > 0 ? data[0] % (size + 1) : 0;
    size_t from = size <= 64 ? 0 : first;
    size_t to = size <= 64 ? size : first;
    for (size_t split = from; split <= to; split++) {
        utf8_validator_init(&v);
        int head = utf8_validator_feed(&v, data, split);
        int expected_head = ref_status(data, split);
        if (head != expected_head)
            fail("first piece", size, split, expected_head, head);
        int tail = utf8_validator_feed(&v, data + split, size - split);
        if (tail != whole)
            fail("second piece", size, split, whole, tail);
    }

    /* Byte by byte: every prefix status, and INVALID stays INVALID. */
    if (size <= 256) {
        utf8_validator_init(&v);
        bool invalid_seen = false;
        for (size_t i = 0; i < size; i++) {
            int step = utf8_validator_feed(&v, data + i, 1);
            if (invalid_seen && step != UTF8_INVALID)
                fail("invalid is sticky", size, i, UTF8_INVALID, step);
            invalid_seen = step == UTF8_INVALID;
            /* After the first invalid prefix every longer one is invalid
             * too, so the reference agrees without a special case. */
            int expected = ref_status(data, i + 1);
            if (step != expected)
                fail("byte by byte", size, i, expected, step);
        }
    }
    return 0;
}
