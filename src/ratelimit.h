/* ratelimit — a token bucket per connection for limits.messages_per_second
 * and limits.burst. Tokens are counted in thousandths so refills of a few
 * milliseconds are not lost to rounding. Pure code: the caller passes the
 * time. */
#ifndef WSBROKER_RATELIMIT_H
#define WSBROKER_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct ratelimit {
    uint64_t millitokens;       /* available, in thousandths of a message */
    int64_t refilled_at;        /* milliseconds, the caller's clock */
};

/* A full bucket: burst messages may come at once. */
void ratelimit_init(struct ratelimit *bucket, unsigned burst, int64_t now);

/* Takes one message's token. Returns false when the bucket is empty: the
 * sender is over rate messages per second sustained, after a burst of
 * burst. The bucket refills at rate per second up to burst. */
bool ratelimit_take(struct ratelimit *bucket, unsigned rate, unsigned burst, int64_t now);

#endif
