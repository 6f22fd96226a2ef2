/* utf8 — incremental UTF-8 validator as a table-driven DFA.
 *
 * Every byte maps to one of twelve classes; the state after a byte is one
 * table lookup. The classes split the continuation range 80..BF in three so
 * that the second byte after E0, ED, F0 and F4 can be range-checked by the
 * DFA itself: that is what rejects overlongs, surrogates and code points above
 * U+10FFFF at the first byte that makes them certain, rather than at the end
 * of the sequence. */
#include "utf8.h"

#include <string.h>

enum utf8_class {
    UTF8_C_ASCII,     /* 00..7F */
    UTF8_C_CONT_LOW,  /* 80..8F */
    UTF8_C_CONT_MID,  /* 90..9F */
    UTF8_C_CONT_HIGH, /* A0..BF */
    UTF8_C_LEAD2,     /* C2..DF */
    UTF8_C_E0,        /* E0: next byte A0..BF, else overlong */
    UTF8_C_LEAD3,     /* E1..EC, EE, EF */
    UTF8_C_ED,        /* ED: next byte 80..9F, else surrogate */
    UTF8_C_F0,        /* F0: next byte 90..BF, else overlong */
    UTF8_C_LEAD4,     /* F1..F3 */
    UTF8_C_F4,        /* F4: next byte 80..8F, else above U+10FFFF */
    UTF8_C_BAD,       /* C0, C1 (always overlong), F5..FF */
    UTF8_CLASS_COUNT
};

/* States are stored pre-multiplied by the class count so the hot loop does
 * one addition and one load per byte. */
#define UTF8_S(n) ((n) * UTF8_CLASS_COUNT)
enum utf8_state {
    UTF8_S_ACCEPT = UTF8_S(0),
    UTF8_S_REJECT = UTF8_S(1),
    UTF8_S_NEED1 = UTF8_S(2),     /* one continuation byte of any value left */
    UTF8_S_NEED2 = UTF8_S(3),
    UTF8_S_NEED3 = UTF8_S(4),
    UTF8_S_AFTER_E0 = UTF8_S(5),
    UTF8_S_AFTER_ED = UTF8_S(6),
    UTF8_S_AFTER_F0 = UTF8_S(7),
    UTF8_S_AFTER_F4 = UTF8_S(8),
    UTF8_STATE_COUNT = 9
};

#define A UTF8_C_ASCII
#define L UTF8_C_CONT_LOW
#define M UTF8_C_CONT_MID
#define H UTF8_C_CONT_HIGH
#define T UTF8_C_LEAD2
#define X UTF8_C_BAD
static const uint8_t utf8_class_of[256] = {
    A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, /* 00 */
    A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, /* 10 */
    A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, /* 20 */
    A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, /* 30 */
    A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, /* 40 */
    A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, /* 50 */
    A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, /* 60 */
    A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, /* 70 */
    L, L, L, L, L, L, L, L, L, L, L, L, L, L, L, L, /* 80 */
    M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, /* 90 */
    H, H, H, H, H, H, H, H, H, H, H, H, H, H, H, H, /* A0 */
    H, H, H, H, H, H, H, H, H, H, H, H, H, H, H, H, /* B0 */
    X, X, T, T, T, T, T, T, T, T, T, T, T, T, T, T, /* C0 */
    T, T, T, T, T, T, T, T, T, T, T, T, T, T, T, T, /* D0 */
    UTF8_C_E0, UTF8_C_LEAD3, UTF8_C_LEAD3, UTF8_C_LEAD3, /* E0 */
    UTF8_C_LEAD3, UTF8_C_LEAD3, UTF8_C_LEAD3, UTF8_C_LEAD3,
    UTF8_C_LEAD3, UTF8_C_LEAD3, UTF8_C_LEAD3, UTF8_C_LEAD3,
    UTF8_C_LEAD3, UTF8_C_ED, UTF8_C_LEAD3, UTF8_C_LEAD3,
    UTF8_C_F0, UTF8_C_LEAD4, UTF8_C_LEAD4, UTF8_C_LEAD4, /* F0 */
    UTF8_C_F4, X, X, X, X, X, X, X, X, X, X, X,
};
#undef A
#undef L
#undef M
#undef H
#undef T
#undef X

#define R UTF8_S_REJECT
/* Columns follow enum utf8_class: ASCII, 80-8F, 90-9F, A0-BF, C2-DF, E0,
 * E1-EF, ED, F0, F1-F3, F4, bad. */
static const uint8_t utf8_next_state[UTF8_STATE_COUNT * UTF8_CLASS_COUNT] = {
    /* ACCEPT */
    UTF8_S_ACCEPT, R, R, R, UTF8_S_NEED1, UTF8_S_AFTER_E0, UTF8_S_NEED2,
    UTF8_S_AFTER_ED, UTF8_S_AFTER_F0, UTF8_S_NEED3, UTF8_S_AFTER_F4, R,
    /* REJECT */
    R, R, R, R, R, R, R, R, R, R, R, R,
    /* NEED1 */
    R, UTF8_S_ACCEPT, UTF8_S_ACCEPT, UTF8_S_ACCEPT, R, R, R, R, R, R, R, R,
    /* NEED2 */
    R, UTF8_S_NEED1, UTF8_S_NEED1, UTF8_S_NEED1, R, R, R, R, R, R, R, R,
    /* NEED3 */
    R, UTF8_S_NEED2, UTF8_S_NEED2, UTF8_S_NEED2, R, R, R, R, R, R, R, R,
    /* AFTER_E0 */
    R, R, R, UTF8_S_NEED1, R, R, R, R, R, R, R, R,
    /* AFTER_ED */
    R, UTF8_S_NEED1, UTF8_S_NEED1, R, R, R, R, R, R, R, R, R,
    /* AFTER_F0 */
    R, R, UTF8_S_NEED2, UTF8_S_NEED2, R, R, R, R, R, R, R, R,
    /* AFTER_F4 */
    R, UTF8_S_NEED2, R, R, R, R, R, R, R, R, R, R,
};
#undef R

#define UTF8_HIGH_BITS UINT64_C(0x8080808080808080)

static enum utf8_status utf8_status_of(uint32_t state)
{
    if (state == UTF8_S_ACCEPT)
        return UTF8_COMPLETE;
    if (state == UTF8_S_REJECT)
        return UTF8_INVALID;
    return UTF8_PARTIAL;
}

/* Most text is ASCII: between characters, skip eight ASCII bytes at a time.
 * memcpy keeps the unaligned load well defined; compilers emit one move. */
static size_t utf8_skip_ascii(const uint8_t *data, size_t len)
{
    size_t i = 0;
    while (len - i >= sizeof(uint64_t)) {
        uint64_t word;
        memcpy(&word, data + i, sizeof word);
        if (word & UTF8_HIGH_BITS)
            break;
        i += sizeof word;
    }
    return i;
}

void utf8_validator_init(struct utf8_validator *validator)
{
    validator->state = UTF8_S_ACCEPT;
}

enum utf8_status utf8_validator_feed(struct utf8_validator *validator,
                                     const uint8_t *data, size_t len)
{
    uint32_t state = validator->state;
    size_t i = 0;

    while (i < len && state != UTF8_S_REJECT) {
        if (state == UTF8_S_ACCEPT && data[i] < 0x80) {
            i += utf8_skip_ascii(data + i, len - i);
            if (i == len)
                break;
        }
        state = utf8_next_state[state + utf8_class_of[data[i]]];
        i++;
    }
    validator->state = state;
    return utf8_status_of(state);
}

bool utf8_is_valid(const uint8_t *data, size_t len)
{
    struct utf8_validator validator;
    utf8_validator_init(&validator);
    return utf8_validator_feed(&validator, data, len) == UTF8_COMPLETE;
}
