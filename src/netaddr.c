#include "netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

/* Room for the longest IPv6 text (with an embedded IPv4 tail) and a NUL. */
#define NETADDR_TEXT_MAX INET6_ADDRSTRLEN

static const uint8_t netaddr_mapped_prefix[12] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
};

/* Decimal digits only: no sign, no spaces, no leading zeros (so "/08" is
 * not quietly read as 8), at most max. */
static int netaddr_parse_prefix(const char *text, unsigned max, unsigned *prefix)
{
    if (text[0] == '\0' || (text[0] == '0' && text[1] != '\0'))
        return -1;
    unsigned value = 0;
    for (const char *p = text; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        value = value * 10 + (unsigned)(*p - '0');
        if (value > max)
            return -1;
    }
    *prefix = value;
    return 0;
}

static int netaddr_parse_address(const char *text, size_t length, struct netaddr_range *range)
{
    char buffer[NETADDR_TEXT_MAX];
    if (length == 0 || length >= sizeof buffer)
        return -1;
    memcpy(buffer, text, length);
    buffer[length] = '\0';
    memset(range->address, 0, sizeof range->address);
    if (inet_pton(AF_INET, buffer, range->address) == 1) {
        range->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, buffer, range->address) == 1) {
        range->family = AF_INET6;
        return 0;
    }
    return -1;
}

static bool netaddr_bit_set(const uint8_t *address, unsigned bit)
{
    return (address[bit / 8] & (0x80u >> (bit % 8))) != 0;
}

static bool netaddr_host_bits_clear(const uint8_t *address, unsigned prefix, unsigned bits)
{
    for (unsigned bit = prefix; bit < bits; bit++)
        if (netaddr_bit_set(address, bit))
            return false;
    return true;
}

static unsigned netaddr_bits(int family)
{
    return family == AF_INET ? 32 : 128;
}

int netaddr_range_parse(const char *text, struct netaddr_range *range)
{
    if (text == NULL || range == NULL)
        return -1;
    struct netaddr_range parsed;
    const char *slash = strchr(text, '/');
    size_t address_length = slash != NULL ? (size_t)(slash - text) : strlen(text);
    if (netaddr_parse_address(text, address_length, &parsed) != 0)
        return -1;
    unsigned bits = netaddr_bits(parsed.family);
    parsed.prefix_length = bits;
    if (slash != NULL && netaddr_parse_prefix(slash + 1, bits, &parsed.prefix_length) != 0)
        return -1;
    if (!netaddr_host_bits_clear(parsed.address, parsed.prefix_length, bits))
        return -1;
    *range = parsed;
    return 0;
}

/* One comparable form for ranges and peers: an IPv4-mapped IPv6 address
 * (and a range inside ::ffff:0:0/96) becomes plain IPv4, because a
 * dual-stack listener reports IPv4 peers that way. */
struct netaddr_key {
    int family;
    uint8_t address[16];
    unsigned prefix_length;
};

static void netaddr_key_normalize(struct netaddr_key *key)
{
    if (key->family != AF_INET6 || key->prefix_length < 96)
        return;
    if (memcmp(key->address, netaddr_mapped_prefix, sizeof netaddr_mapped_prefix) != 0)
        return;
    uint8_t v4[4];
    memcpy(v4, key->address + 12, sizeof v4);
    memset(key->address, 0, sizeof key->address);
    memcpy(key->address, v4, sizeof v4);
    key->family = AF_INET;
    key->prefix_length -= 96;
}

static bool netaddr_key_from_sockaddr(const struct sockaddr *address, struct netaddr_key *key)
{
    memset(key, 0, sizeof *key);
    if (address->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)(const void *)address;
        memcpy(key->address, &in4->sin_addr, 4);
        key->family = AF_INET;
        key->prefix_length = 32;
    } else if (address->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)address;
        memcpy(key->address, &in6->sin6_addr, 16);
        key->family = AF_INET6;
        key->prefix_length = 128;
    } else {
        return false;
    }
    netaddr_key_normalize(key);
    return true;
}

static bool netaddr_prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned whole = prefix / 8;
    if (memcmp(a, b, whole) != 0)
        return false;
    unsigned rest = prefix % 8;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xFFu << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

bool netaddr_range_contains(const struct netaddr_range *range, const struct sockaddr *address)
{
    if (range == NULL || address == NULL)
        return false;
    if (range->family != AF_INET && range->family != AF_INET6)
        return false;
    if (range->prefix_length > netaddr_bits(range->family))
        return false;
    struct netaddr_key want = { .family = range->family, .prefix_length = range->prefix_length };
    memcpy(want.address, range->address, sizeof want.address);
    netaddr_key_normalize(&want);
    struct netaddr_key peer;
    if (!netaddr_key_from_sockaddr(address, &peer) || peer.family != want.family)
        return false;
    return netaddr_prefix_equal(want.address, peer.address, want.prefix_length);
}
