/* addrcount — how many connections each client address holds, for
 * limits.max_connections_per_ip. An IPv6 client is counted by its /64
 * network: one subscriber line usually gets a whole /64, so counting single
 * addresses would let one client take as many places as it likes. Pure
 * code; the table is seeded per instance so addresses an attacker picks
 * cannot be aimed at one bucket. */
#ifndef WSBROKER_ADDRCOUNT_H
#define WSBROKER_ADDRCOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct addrcount;

/* The part of an address that is counted. */
struct addrcount_key {
    uint8_t family;             /* AF_INET or AF_INET6 */
    uint8_t bytes[8];           /* IPv4: the address; IPv6: the /64 prefix */
};

/* NULL when out of memory. */
struct addrcount *addrcount_new(void);
void addrcount_free(struct addrcount *table);   /* NULL ok */

/* Fills key for an AF_INET or AF_INET6 socket address (an IPv4-mapped IPv6
 * address counts as the IPv4 address). Returns false for anything else,
 * such as a Unix socket peer, which is not counted. */
bool addrcount_key_of(const struct sockaddr *address, struct addrcount_key *key);

/* Adds one connection for key. Returns the new count, or 0 when out of
 * memory (nothing was added). */
unsigned addrcount_add(struct addrcount *table, const struct addrcount_key *key);

/* Adds one connection for key under limit (0: no limit). Returns false
 * when key is now over limit, or when it could not be counted for lack of
 * memory (refusing is the safe answer then); *counted says whether it was
 * added, so the caller knows to remove it later. */
bool addrcount_admit(struct addrcount *table, const struct addrcount_key *key, unsigned limit,
                     bool *counted);

/* Removes one connection added for key; the entry goes at zero. */
void addrcount_remove(struct addrcount *table, const struct addrcount_key *key);

/* Connections counted for key. */
unsigned addrcount_get(const struct addrcount *table, const struct addrcount_key *key);

/* Addresses with at least one connection. */
size_t addrcount_addresses(const struct addrcount *table);

#endif
