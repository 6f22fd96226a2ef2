/* timerwheel — the deadlines of many connections on one loop timer.
 *
 * A libevent timer costs a connection a 128-byte struct event; an entry
 * here costs 24 bytes. Entries hang in one of TIMER_WHEEL_SLOTS lists by
 * the tick of their deadline (deadline / tick, modulo the slot count); the
 * caller advances the wheel every tick, which moves the entries that are
 * due to a list of their own, and then takes them one by one. A deadline
 * more than a revolution away waits in its slot and is skipped until it is
 * due. Entries fire late by up to a tick, never early. Pure code: the
 * caller passes the time (milliseconds on any monotonic clock). */
#ifndef WSBROKER_TIMERWHEEL_H
#define WSBROKER_TIMERWHEEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TIMER_WHEEL_SLOTS 512

/* Embed one in the object it times; all zero means not pending. */
struct timer_wheel_entry {
    struct timer_wheel_entry **link;     /* what points here: NULL when not pending */
    struct timer_wheel_entry *next;
    int64_t deadline;
};

struct timer_wheel {
    struct timer_wheel_entry *slots[TIMER_WHEEL_SLOTS];
    struct timer_wheel_entry *due;       /* taken out by timer_wheel_pop */
    int64_t tick;                        /* milliseconds per tick, > 0 */
    int64_t current;                     /* first tick not yet swept */
    size_t count;                        /* entries pending, due ones included */
};

/* An empty wheel whose clock reads now. */
void timer_wheel_init(struct timer_wheel *wheel, int64_t tick, int64_t now);

/* Makes entry due at deadline, whether or not it was pending. A deadline
 * already past is due at the next advance. */
void timer_wheel_schedule(struct timer_wheel *wheel, struct timer_wheel_entry *entry,
                          int64_t deadline);

/* Makes entry not pending (harmless when it is not). */
void timer_wheel_cancel(struct timer_wheel *wheel, struct timer_wheel_entry *entry);

bool timer_wheel_pending(const struct timer_wheel_entry *entry);

/* Moves every entry whose deadline is at or before now to the due list. */
void timer_wheel_advance(struct timer_wheel *wheel, int64_t now);

/* Takes one entry off the due list (no longer pending), or NULL when none
 * is left. Entries may be scheduled or cancelled between calls. */
struct timer_wheel_entry *timer_wheel_pop(struct timer_wheel *wheel);

static inline size_t timer_wheel_count(const struct timer_wheel *wheel)
{
    return wheel->count;
}

#endif
