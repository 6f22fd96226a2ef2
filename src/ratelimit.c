#include "ratelimit.h"

#define RATELIMIT_UNIT 1000     /* millitokens per message */

void ratelimit_init(struct ratelimit *bucket, unsigned burst, int64_t now)
{
    bucket->millitokens = (uint64_t)burst * RATELIMIT_UNIT;
    bucket->refilled_at = now;
}

bool ratelimit_take(struct ratelimit *bucket, unsigned rate, unsigned burst, int64_t now)
{
    uint64_t capacity = (uint64_t)burst * RATELIMIT_UNIT;
    if (now > bucket->refilled_at) {
        /* rate messages per second is rate millitokens per millisecond;
         * a long quiet spell only fills the bucket, so cap the product. */
        uint64_t elapsed = (uint64_t)(now - bucket->refilled_at);
        uint64_t refill = elapsed >= capacity ? capacity : elapsed * rate;
        bucket->millitokens = capacity - bucket->millitokens <= refill ? capacity
                                                                       : bucket->millitokens + refill;
        bucket->refilled_at = now;
    }
    if (bucket->millitokens < RATELIMIT_UNIT)
        return false;
    bucket->millitokens -= RATELIMIT_UNIT;
    return true;
}
