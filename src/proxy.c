#include "proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "netaddr.h"

#define PROXY_ADDRESS_MAX 64

bool proxy_peer_trusted(const struct sockaddr *peer, const struct proxy_config *proxy)
{
    if (peer->sa_family == AF_UNIX)
        return true;
    for (size_t i = 0; i < proxy->trusted_count; i++) {
        if (netaddr_range_contains(&proxy->trusted[i], peer))
            return true;
    }
    return false;
}

/* Parses one address of a forwarding header: optional brackets around
 * IPv6, optional ":port" after IPv4 or "]". */
static bool proxy_parse_address(const char *text, size_t length, struct sockaddr_storage *out)
{
    char buffer[PROXY_ADDRESS_MAX];
    if (length == 0 || length >= sizeof(buffer))
        return false;
    memcpy(buffer, text, length);
    buffer[length] = '\0';
    char *address = buffer;
    if (address[0] == '[') {
        char *close = strchr(address, ']');
        if (close == NULL)
            return false;
        *close = '\0';
        address++;
    } else if (strchr(address, ':') == strrchr(address, ':') && strchr(address, ':') != NULL) {
        *strchr(address, ':') = '\0';   /* IPv4 with a port */
    }
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *in = (struct sockaddr_in *)out;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, address, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, address, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        return true;
    }
    return false;
}

static void proxy_trim(const char **start, const char **end)
{
    while (*start < *end && (**start == ' ' || **start == '\t'))
        (*start)++;
    while (*end > *start && ((*end)[-1] == ' ' || (*end)[-1] == '\t'))
        (*end)--;
}

/* Walks the X-Forwarded-For headers from the last entry backwards. Returns
 * 1 with client set, 0 when there are none, -1 on a malformed entry. */
static int proxy_from_forwarded_for(const struct http_request *request,
                                    const struct proxy_config *proxy,
                                    struct sockaddr_storage *client)
{
    bool found = false;
    for (size_t h = request->header_count; h-- > 0;) {
        const struct http_header *header = &request->headers[h];
        if (!http_equal_nocase(header->name, header->name_length, "X-Forwarded-For", 15))
            continue;
        const char *end = header->value + header->value_length;
        while (end > header->value) {
            const char *start = end;
            while (start > header->value && start[-1] != ',')
                start--;
            const char *entry_start = start;
            const char *entry_end = end;
            end = start > header->value ? start - 1 : header->value;
            proxy_trim(&entry_start, &entry_end);
            if (entry_start == entry_end)
                continue;
            if (!proxy_parse_address(entry_start, (size_t)(entry_end - entry_start), client))
                return -1;
            found = true;
            if (!proxy_peer_trusted((const struct sockaddr *)client, proxy))
                return 1;
        }
    }
    /* every hop was trusted: the left-most one is the client */
    return found ? 1 : 0;
}

bool proxy_client_address(const struct http_request *request, const struct sockaddr *peer,
                          const struct proxy_config *proxy, struct sockaddr_storage *client)
{
    memset(client, 0, sizeof(*client));
    if (proxy_peer_trusted(peer, proxy)) {
        int forwarded = proxy_from_forwarded_for(request, proxy, client);
        if (forwarded == 1)
            return true;
        const struct http_header *real = http_request_header(request, "X-Real-IP");
        if (forwarded == 0 && real != NULL &&
            proxy_parse_address(real->value, real->value_length, client))
            return true;
    }
    socklen_t length = peer->sa_family == AF_INET    ? sizeof(struct sockaddr_in)
                       : peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                     : sizeof(struct sockaddr_un);
    memcpy(client, peer, length);
    return false;
}
