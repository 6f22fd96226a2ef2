#include "addrcount.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "seeded_hash.h"

struct addrcount_entry {
    struct addrcount_entry *next;
    struct addrcount_key key;
    unsigned count;
};

struct addrcount {
    struct addrcount_entry **buckets;
    size_t bucket_count;            /* a power of two */
    size_t entry_count;
    uint64_t seed;
};

#define ADDRCOUNT_INITIAL_BUCKETS 256

_Static_assert(sizeof(struct addrcount_key) == 1 + 8, "addrcount_key is hashed as plain bytes");

struct addrcount *addrcount_new(void)
{
    struct addrcount *table = calloc(1, sizeof(*table));
    if (table == NULL)
        return NULL;
    table->buckets = calloc(ADDRCOUNT_INITIAL_BUCKETS, sizeof(*table->buckets));
    if (table->buckets == NULL) {
        free(table);
        return NULL;
    }
    table->bucket_count = ADDRCOUNT_INITIAL_BUCKETS;
    seeded_hash_random(&table->seed, sizeof(table->seed));
    return table;
}

void addrcount_free(struct addrcount *table)
{
    if (table == NULL)
        return;
    for (size_t i = 0; i < table->bucket_count; i++) {
        struct addrcount_entry *entry = table->buckets[i];
        while (entry != NULL) {
            struct addrcount_entry *next = entry->next;
            free(entry);
            entry = next;
        }
    }
    free(table->buckets);
    free(table);
}

bool addrcount_key_of(const struct sockaddr *address, struct addrcount_key *key)
{
    memset(key, 0, sizeof(*key));
    if (address->sa_family == AF_INET) {
        key->family = AF_INET;
        memcpy(key->bytes, &((const struct sockaddr_in *)address)->sin_addr, 4);
        return true;
    }
    if (address->sa_family != AF_INET6)
        return false;
    const struct in6_addr *in6 = &((const struct sockaddr_in6 *)address)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(in6)) {
        key->family = AF_INET;
        memcpy(key->bytes, &in6->s6_addr[12], 4);
        return true;
    }
    key->family = AF_INET6;
    memcpy(key->bytes, in6->s6_addr, 8);
    return true;
}

static uint64_t addrcount_hash(const struct addrcount *table, const struct addrcount_key *key)
{
    /* The key is bytes only (no padding), so it is hashed whole. */
    return seeded_hash_bytes(table->seed, key, sizeof(*key));
}

static bool addrcount_key_equal(const struct addrcount_key *a, const struct addrcount_key *b)
{
    return a->family == b->family && memcmp(a->bytes, b->bytes, sizeof(a->bytes)) == 0;
}

static struct addrcount_entry **addrcount_slot(const struct addrcount *table,
                                               const struct addrcount_key *key)
{
    size_t index = addrcount_hash(table, key) & (table->bucket_count - 1);
    struct addrcount_entry **link = &table->buckets[index];
    while (*link != NULL && !addrcount_key_equal(&(*link)->key, key))
        link = &(*link)->next;
    return link;
}

/* Doubles the bucket array when entries outnumber buckets; a failed
 * allocation just keeps the longer chains. */
static void addrcount_grow(struct addrcount *table)
{
    if (table->entry_count < table->bucket_count)
        return;
    size_t count = table->bucket_count * 2;
    struct addrcount_entry **buckets = calloc(count, sizeof(*buckets));
    if (buckets == NULL)
        return;
    for (size_t i = 0; i < table->bucket_count; i++) {
        struct addrcount_entry *entry = table->buckets[i];
        while (entry != NULL) {
            struct addrcount_entry *next = entry->next;
            size_t index = addrcount_hash(table, &entry->key) & (count - 1);
            entry->next = buckets[index];
            buckets[index] = entry;
            entry = next;
        }
    }
    free(table->buckets);
    table->buckets = buckets;
    table->bucket_count = count;
}

unsigned addrcount_add(struct addrcount *table, const struct addrcount_key *key)
{
    struct addrcount_entry **link = addrcount_slot(table, key);
    if (*link != NULL)
        return ++(*link)->count;
    struct addrcount_entry *entry = calloc(1, sizeof(*entry));
    if (entry == NULL)
        return 0;
    entry->key = *key;
    entry->count = 1;
    *link = entry;
    table->entry_count++;
    addrcount_grow(table);
    return 1;
}

bool addrcount_admit(struct addrcount *table, const struct addrcount_key *key, unsigned limit,
                     bool *counted)
{
    unsigned count = addrcount_add(table, key);
    *counted = count > 0;
    return count > 0 && (limit == 0 || count <= limit);
}

void addrcount_remove(struct addrcount *table, const struct addrcount_key *key)
{
    struct addrcount_entry **link = addrcount_slot(table, key);
    struct addrcount_entry *entry = *link;
    if (entry == NULL)
        return;
    if (--entry->count > 0)
        return;
    *link = entry->next;
    free(entry);
    table->entry_count--;
}

unsigned addrcount_get(const struct addrcount *table, const struct addrcount_key *key)
{
    struct addrcount_entry *entry = *addrcount_slot(table, key);
    return entry != NULL ? entry->count : 0;
}

size_t addrcount_addresses(const struct addrcount *table)
{
    return table->entry_count;
}
