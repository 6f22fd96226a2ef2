/* tls — the OpenSSL server contexts of TLS listeners (wss:// and https://
 * on one port), built from a listener's tls group.
 *
 * A context is reference counted: a listener holds one, and SIGHUP builds a
 * new one from the re-read certificate and swaps it in; connections that
 * started with the old one keep it until they close. An SSL made from a
 * context also holds its own reference to the underlying SSL_CTX, so
 * releasing a context never pulls it from under a live connection. */
#ifndef WSBROKER_TLS_H
#define WSBROKER_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "config.h"

#define TLS_ERROR_SIZE 256

struct tls_context;

/* Builds a server context: TLS_server_method, the configured minimum
 * version (only TLS1_2_VERSION or TLS1_3_VERSION are accepted), no
 * renegotiation, no compression, the server's cipher preference, the
 * configured cipher lists (OpenSSL's defaults when NULL), the certificate
 * chain and private key (PEM, key unencrypted) checked against each other,
 * ALPN "http/1.1" and, with verify_client, a required client certificate
 * signed by a CA of ca_file. Returns NULL with a one-line message in error
 * ("certificate and key do not match", "cannot load private key FILE:
 * REASON", ...) and OpenSSL's error queue cleared. The result has
 * refcount 1. */
struct tls_context *tls_context_new(const struct tls_config *config, char *error,
                                    size_t error_size);

struct tls_context *tls_context_retain(struct tls_context *context);   /* NULL ok */
void tls_context_release(struct tls_context *context);   /* frees at refcount 0; NULL ok */

/* The context's SSL_CTX, owned by the context. */
SSL_CTX *tls_context_ssl_ctx(const struct tls_context *context);

/* A new server-side SSL for one accepted connection (in accept state, for
 * bufferevent_openssl_socket_new with BUFFEREVENT_SSL_ACCEPTING); NULL when
 * out of memory, with OpenSSL's error queue cleared. The caller frees it
 * (or hands it to the bufferevent, which does). */
SSL *tls_context_new_ssl(struct tls_context *context);

/* Checks a TLS 1.2 cipher list ("ECDHE+AESGCM:!aNULL") the way
 * tls_context_new will use it: 0 when it selects at least one cipher, else
 * -1 with OpenSSL's reason in error. */
int tls_check_ciphers(const char *ciphers, char *error, size_t error_size);

/* Checks a TLS 1.3 ciphersuites string ("TLS_AES_256_GCM_SHA384:..."):
 * every colon-separated name must be a suite OpenSSL knows (OpenSSL itself
 * skips unknown names in a list, so a typo would go unnoticed). "" is valid
 * and means no TLS 1.3 suite, which turns TLS 1.3 off. 0 or -1 with the
 * problem in error. */
int tls_check_ciphersuites(const char *ciphersuites, char *error, size_t error_size);

/* The ALPN select callback tls_context_new installs (public for tests).
 * Chooses "http/1.1" when the client offers it. A client offering only
 * other protocols (say "h2") gets SSL_TLSEXT_ERR_NOACK: the handshake goes
 * on without ALPN rather than failing with an alert, because a client that
 * also speaks HTTP/1.1 without announcing it can still be served, and one
 * that cannot will fail on the first response anyway. */
int tls_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *out_length,
                    const unsigned char *in, unsigned int in_length, void *arg);

/* True when the first bytes a client sent on a TLS port look like a plain
 * HTTP request rather than a TLS record: 1 to 20 upper-case ASCII letters
 * followed by a space ("GET ", "POST ", "PRI "), or, when fewer bytes have
 * arrived, a start of such. A TLS record starts with a content type byte
 * (0x14..0x18, a ClientHello 0x16) and an SSLv2 hello with a byte >= 0x80,
 * neither of which is a letter, so one byte already decides, and the
 * daemon can answer 400 "plain HTTP request to a TLS port" instead of
 * waiting for a handshake that never comes. False for no bytes. */
bool tls_looks_like_http(const uint8_t *data, size_t length);

#endif
