/* timerwheel — see timerwheel.h. */
#include "timerwheel.h"

#include <string.h>

static int64_t timer_wheel_tick_of(const struct timer_wheel *wheel, int64_t time)
{
    /* Floor division: the clock may read negative values. */
    int64_t tick = time / wheel->tick;
    if (time % wheel->tick != 0 && time < 0)
        tick--;
    return tick;
}

static struct timer_wheel_entry **timer_wheel_slot(struct timer_wheel *wheel, int64_t tick)
{
    return &wheel->slots[(uint64_t)tick % TIMER_WHEEL_SLOTS];
}

/* Lists are singly linked forward; each entry knows the pointer that
 * points to it (a slot, the due list or the entry before), so it unlinks
 * itself in constant time and is pending exactly while that is set. */
static void timer_wheel_push(struct timer_wheel_entry **list, struct timer_wheel_entry *entry)
{
    entry->next = *list;
    if (*list != NULL)
        (*list)->link = &entry->next;
    entry->link = list;
    *list = entry;
}

static void timer_wheel_unlink(struct timer_wheel_entry *entry)
{
    *entry->link = entry->next;
    if (entry->next != NULL)
        entry->next->link = entry->link;
    entry->link = NULL;
    entry->next = NULL;
}

void timer_wheel_init(struct timer_wheel *wheel, int64_t tick, int64_t now)
{
    memset(wheel, 0, sizeof(*wheel));
    wheel->tick = tick > 0 ? tick : 1;
    wheel->current = timer_wheel_tick_of(wheel, now);
}

bool timer_wheel_pending(const struct timer_wheel_entry *entry)
{
    return entry->link != NULL;
}

void timer_wheel_cancel(struct timer_wheel *wheel, struct timer_wheel_entry *entry)
{
    if (!timer_wheel_pending(entry))
        return;
    timer_wheel_unlink(entry);
    wheel->count--;
}

void timer_wheel_schedule(struct timer_wheel *wheel, struct timer_wheel_entry *entry,
                          int64_t deadline)
{
    timer_wheel_cancel(wheel, entry);
    entry->deadline = deadline;
    /* A tick already swept is never looked at again: a past deadline goes
     * into the first slot still to be swept. */
    int64_t tick = timer_wheel_tick_of(wheel, deadline);
    if (tick < wheel->current)
        tick = wheel->current;
    timer_wheel_push(timer_wheel_slot(wheel, tick), entry);
    wheel->count++;
}

/* Moves the due entries of one slot to the due list. */
static void timer_wheel_sweep(struct timer_wheel *wheel, int64_t tick, int64_t now)
{
    struct timer_wheel_entry *entry = *timer_wheel_slot(wheel, tick);
    while (entry != NULL) {
        struct timer_wheel_entry *next = entry->next;
        if (entry->deadline <= now) {
            timer_wheel_unlink(entry);
            timer_wheel_push(&wheel->due, entry);
        }
        entry = next;
    }
}

void timer_wheel_advance(struct timer_wheel *wheel, int64_t now)
{
    int64_t now_tick = timer_wheel_tick_of(wheel, now);
    if (now_tick < wheel->current)
        return;
    /* Every slot once at most, however far the clock jumped. */
    int64_t first = wheel->current;
    if (now_tick - first >= TIMER_WHEEL_SLOTS)
        first = now_tick - TIMER_WHEEL_SLOTS + 1;
    for (int64_t tick = first; tick <= now_tick; tick++)
        timer_wheel_sweep(wheel, tick, now);
    /* The current tick is not over: entries may still be added to it, and
     * some of its entries may not be due yet. It is swept again next time. */
    wheel->current = now_tick;
}

struct timer_wheel_entry *timer_wheel_pop(struct timer_wheel *wheel)
{
    struct timer_wheel_entry *entry = wheel->due;
    if (entry == NULL)
        return NULL;
    timer_wheel_unlink(entry);
    wheel->count--;
    return entry;
}
