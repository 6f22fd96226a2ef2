/* utf8 — incremental UTF-8 validator (RFC 3629), pure code, no I/O.
 *
 * Validates a byte stream fed in arbitrary pieces and fails at the first byte
 * that cannot be part of valid UTF-8 (overlong forms, surrogates U+D800..DFFF,
 * code points above U+10FFFF, stray continuation bytes, truncated sequences
 * followed by a non-continuation byte). This is what RFC 6455 needs for text
 * messages split over frames: a message is bad as soon as a prefix is bad. */
#ifndef WSBROKER_UTF8_H
#define WSBROKER_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum utf8_status {
    UTF8_INVALID = -1,  /* a byte fed so far can never be valid UTF-8 */
    UTF8_COMPLETE = 0,  /* valid so far and ends on a character boundary */
    UTF8_PARTIAL = 1,   /* valid so far but ends inside a multi-byte sequence */
};

/* Fields are private; embed the struct and use the functions. */
struct utf8_validator {
    uint32_t state;         /* private: DFA state; it alone decides validity */
};

void utf8_validator_init(struct utf8_validator *validator);

/* Feeds len more bytes. Once UTF8_INVALID is returned the validator stays
 * invalid until re-initialised. len == 0 returns the current status. */
enum utf8_status utf8_validator_feed(struct utf8_validator *validator,
                                     const uint8_t *data, size_t len);

/* Whole-buffer check: true when data is complete, valid UTF-8. */
bool utf8_is_valid(const uint8_t *data, size_t len);

#endif
