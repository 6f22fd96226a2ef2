/* pattern — glob-style name patterns for channel rules and token grants:
 * '*' matches any run of characters (including none); every other
 * character matches itself. Pure code. */
#ifndef WSBROKER_PATTERN_H
#define WSBROKER_PATTERN_H

#include <stdbool.h>
#include <stddef.h>

/* True when name matches pattern. Linear in practice (no backtracking
 * blow-up on patterns with many '*'). */
bool pattern_match(const char *pattern, const char *name);

#endif
