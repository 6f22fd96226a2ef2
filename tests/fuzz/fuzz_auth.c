/* fuzz_auth — JWT verification (HS256) and user-name validation.
 *
 * Each input is used three ways:
 *   1. as a token, NUL-terminated, given to auth_verify: random bytes
 *      mostly stop at the shape check or the signature;
 *   2. as claims signed here with the verifier's secret, so the claim
 *      checks behind a good signature (exp, nbf, sub, channels, crit) are
 *      reached too. An input with a newline is "header JSON\nclaims JSON";
 *      without one it is the claims under {"alg":"HS256","typ":"JWT"};
 *   3. as a user name for auth_user_name_valid, compared with a reference
 *      written from the header's wording.
 * Checked: a failure gives a reason and leaves an empty identity; a success
 * gives a user name that auth_user_name_valid accepts and the channels the
 * claim listed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "auth.h"
#include "fuzz.h"
#include "utf8.h"

#define NOW ((time_t)1700000000)
#define SECRET "fuzzing secret, not a real one"

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "fuzz_auth: check failed at line %d: %s\n", __LINE__, #cond); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

static struct auth *verifier(void)
{
    static struct auth *auth;
    if (auth == NULL) {
        char error[256];
        auth = auth_new(AUTH_HS256, SECRET, strlen(SECRET), error, sizeof error);
        if (auth == NULL) {
            fprintf(stderr, "fuzz_auth: auth_new: %s\n", error);
            abort();
        }
    }
    return auth;
}

/* base64url without padding; returns the characters written. */
static size_t base64url(const uint8_t *in, size_t length, char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = 0;
    size_t i = 0;
    for (; i + 3 <= length; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[n++] = alphabet[v >> 18];
        out[n++] = alphabet[(v >> 12) & 63];
        out[n++] = alphabet[(v >> 6) & 63];
        out[n++] = alphabet[v & 63];
    }
    if (length - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[n++] = alphabet[v >> 18];
        out[n++] = alphabet[(v >> 12) & 63];
    } else if (length - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[n++] = alphabet[v >> 18];
        out[n++] = alphabet[(v >> 12) & 63];
        out[n++] = alphabet[(v >> 6) & 63];
    }
    return n;
}

/* header.claims.signature, MACed with SECRET under digest ("SHA256" for
 * HS256); malloc'd. */
static char *sign(const char *digest, const uint8_t *header, size_t header_length,
                  const uint8_t *claims, size_t claims_length)
{
    size_t capacity = (header_length + claims_length + 32) / 3 * 4 + 64;
    char *token = malloc(capacity);
    CHECK(token != NULL);
    size_t n = base64url(header, header_length, token);
    token[n++] = '.';
    n += base64url(claims, claims_length, token + n);

    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_length = 0;
    CHECK(EVP_Q_mac(NULL, "HMAC", NULL, digest, NULL, SECRET, strlen(SECRET),
                    (const unsigned char *)token, n, mac, sizeof mac, &mac_length) != NULL);
    token[n++] = '.';
    n += base64url(mac, mac_length, token + n);
    CHECK(n < capacity);
    token[n] = '\0';
    return token;
}

/* The header's rule, restated: 1-64 bytes of valid UTF-8, no control
 * character (C0, DEL, C1), no space at either end. */
static bool reference_name_valid(const uint8_t *name, size_t length)
{
    if (length == 0 || length > 64 || !utf8_is_valid(name, length))
        return false;
    if (name[0] == ' ' || name[length - 1] == ' ')
        return false;
    for (size_t i = 0; i < length;) {
        uint32_t cp;
        size_t n;
        if (name[i] < 0x80) {
            cp = name[i];
            n = 1;
        } else if (name[i] < 0xE0) {
            cp = (uint32_t)(name[i] & 0x1F) << 6 | (name[i + 1] & 0x3F);
            n = 2;
        } else {
            cp = 0x800;   /* three and four bytes never encode a control */
            n = name[i] < 0xF0 ? 3 : 4;
        }
        if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F))
            return false;
        i += n;
    }
    return true;
}

/* Returns whether the token was accepted. */
static bool verify(const char *token)
{
    struct auth_identity identity;
    const char *reason = NULL;
    memset(&identity, 0x5a, sizeof identity);
    int rc = auth_verify(verifier(), token, NOW, &identity, &reason);
    if (rc != 0) {
        CHECK(rc == -1);
        CHECK(reason != NULL && reason[0] != '\0');
        CHECK(identity.user == NULL && identity.channels == NULL && identity.channel_count == 0);
        return false;
    }
    CHECK(identity.user != NULL);
    CHECK(auth_user_name_valid(identity.user, strlen(identity.user)));
    CHECK(identity.expires == 0 || identity.expires > NOW);
    if (identity.channels == NULL)
        CHECK(identity.channel_count == 0 && auth_identity_allows(&identity, "room:1"));
    for (size_t i = 0; i < identity.channel_count; i++)
        CHECK(identity.channels[i] != NULL);
    (void)auth_identity_allows(&identity, "room:1");
    (void)auth_identity_allows(&identity, identity.user);
    auth_identity_clear(&identity);
    CHECK(identity.user == NULL && identity.channels == NULL);
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* 1: the input as a token */
    char *token = malloc(size + 1);
    CHECK(token != NULL);
    memcpy(token, data, size);
    token[size] = '\0';
    verify(token);
    free(token);

    /* 2: the input as claims behind a good signature. A header naming
     * HS384 or HS512 gets a MAC of that kind, which libjwt accepts with
     * the same secret: the verifier must still refuse it (RS256/ES256 and
     * "none" are covered by the header alone). */
    static const char default_header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    const uint8_t *newline = memchr(data, '\n', size);
    if (newline != NULL) {
        size_t header_length = (size_t)(newline - data);
        const char *digest = "SHA256";
        if (memmem(data, header_length, "HS384", 5) != NULL)
            digest = "SHA384";
        else if (memmem(data, header_length, "HS512", 5) != NULL)
            digest = "SHA512";
        token = sign(digest, data, header_length, newline + 1, size - header_length - 1);
        bool accepted = verify(token);
        if (strcmp(digest, "SHA256") != 0)
            CHECK(!accepted);
    } else {
        token = sign("SHA256", (const uint8_t *)default_header, strlen(default_header), data,
                     size);
        verify(token);
    }
    free(token);

    /* 3: the input as a user name */
    bool valid = auth_user_name_valid((const char *)data, size);
    CHECK(valid == reference_name_valid(data, size));
    return 0;
}
