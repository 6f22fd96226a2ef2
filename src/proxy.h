/* proxy — who the client really is behind a reverse proxy: X-Forwarded-For
 * and X-Real-IP are believed only from trusted peers (proxy.trusted) and
 * from Unix socket peers, which only local processes with access to the
 * socket file can be. Pure code. */
#ifndef WSBROKER_PROXY_H
#define WSBROKER_PROXY_H

#include <stdbool.h>
#include <sys/socket.h>

#include "config.h"
#include "http.h"

/* Writes the believed client address into client: for a trusted peer, the
 * right-most X-Forwarded-For entry that is not itself trusted (the
 * left-most when all are), else X-Real-IP, else the peer; for any other
 * peer, the peer itself. An entry that is not an IP address ends the walk
 * and the peer is used. Returns true when a forwarded address was used. */
bool proxy_client_address(const struct http_request *request, const struct sockaddr *peer,
                          const struct proxy_config *proxy, struct sockaddr_storage *client);

/* True when peer's forwarded headers are believed. */
bool proxy_peer_trusted(const struct sockaddr *peer, const struct proxy_config *proxy);

#endif
