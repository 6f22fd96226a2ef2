/* netaddr — IPv4/IPv6 addresses and CIDR ranges for allow-lists
 * (http.metrics_allow, later proxy.trusted). Pure code. */
#ifndef WSBROKER_NETADDR_H
#define WSBROKER_NETADDR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct netaddr_range {
    int family;               /* AF_INET or AF_INET6 */
    uint8_t address[16];      /* network byte order; IPv4 uses the first 4 */
    unsigned prefix_length;   /* 0..32 or 0..128 */
};

/* Parses "127.0.0.0/8", "::1", "10.1.2.3" (a single address is a /32 or
 * /128). Host bits set under the prefix are an error. Returns 0 or -1. */
int netaddr_range_parse(const char *text, struct netaddr_range *range);

/* True when address (AF_INET or AF_INET6 sockaddr) lies in range. An
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d) is matched as IPv4. */
bool netaddr_range_contains(const struct netaddr_range *range, const struct sockaddr *address);

#endif
