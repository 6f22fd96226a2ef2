/* auth — verifies the JSON Web Tokens that name a connection's user and
 * what it may do (libjwt does the cryptography). */
#ifndef WSBROKER_AUTH_H
#define WSBROKER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

enum auth_algorithm {
    AUTH_HS256,
    AUTH_RS256,
    AUTH_ES256,
};

struct auth;   /* a verifier: algorithm and key */

/* Creates a verifier. HS256 takes the shared secret in key; RS256 and ES256
 * a PEM public key. Returns NULL with a message in error when the key is
 * unusable (empty secret, unreadable or wrong-type PEM). */
struct auth *auth_new(enum auth_algorithm algorithm, const void *key, size_t key_length,
                      char *error, size_t error_size);
void auth_free(struct auth *auth);   /* NULL ok */

struct auth_identity {
    char *user;              /* claim "sub": 1-64 bytes, no control characters */
    time_t expires;          /* claim "exp", 0 when absent */
    char **channels;         /* claim "channels": patterns, NULL when absent
                                (no restriction) */
    size_t channel_count;
};

/* Verifies token at time now: the signature with the verifier's algorithm
 * (a token naming another algorithm, including "none", is rejected), "exp"
 * in the future when present, "nbf" not in the future when present, "sub" a
 * valid user name, "channels" when present an array of strings. Returns 0
 * and fills identity, or -1 with a static reason in *reason. */
int auth_verify(const struct auth *auth, const char *token, time_t now,
                struct auth_identity *identity, const char **reason);
void auth_identity_clear(struct auth_identity *identity);

/* True when identity may use channel: no "channels" claim, or one of its
 * patterns matches ('*' matches any run of characters). */
bool auth_identity_allows(const struct auth_identity *identity, const char *channel);

/* True when name is an acceptable user name: 1-64 bytes of valid UTF-8
 * without control characters, not starting or ending with a space. */
bool auth_user_name_valid(const char *name, size_t length);

#endif
