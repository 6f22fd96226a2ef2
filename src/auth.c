/* auth — verifies the JSON Web Tokens that name a connection's user and
 * what it may do. libjwt checks the signature; this module decides which
 * algorithm is acceptable and checks the claims.
 *
 * libjwt 1.10 needs a guard around it:
 * - jwt_decode() with a NULL or zero-length key skips the signature check
 *   entirely, so a verifier never exists without a key.
 * - It verifies with whatever algorithm the token's header names: an HS256
 *   token MACed with an RSA public key PEM as the secret, or an RS384 token,
 *   passes a decode meant for RS256. The algorithm it reports is therefore
 *   compared with the configured one after every successful decode.
 * - jwt_get_grant_int() turns a claim of the wrong type into 0 without an
 *   error, and a payload that is a JSON array decodes successfully. The
 *   claims are therefore read as one JSON document and type-checked here.
 * - It ignores the "crit" header, which RFC 7515 says a recipient must
 *   reject when it does not understand the listed extensions (it never
 *   does here).
 * - It refuses a "typ" header other than "JWT" (RFC 9068's "at+jwt", for
 *   one); such tokens are reported as malformed.
 * - Upstream releases before 1.15.3 compare the HS256 MAC with strcmp(),
 *   whose timing tells an attacker how much of a forged MAC is right
 *   (CVE-2024-25189). Distributions patch their 1.10 builds, but the build
 *   accepts any 1.10, so the MAC is checked here in constant time first. */
#include "auth.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

#include "pattern.h"
#include "utf8.h"

/* Longest token accepted. Tokens travel in a query string, a header or a
 * cookie; a few KiB covers any sensible claim set and bounds the work an
 * unauthenticated peer can ask for. */
#define AUTH_TOKEN_MAX 8192

#define AUTH_USER_NAME_MAX 64

/* RFC 7518 §3.3: RS256 keys must be 2048 bits or larger. */
#define AUTH_RSA_MIN_BITS 2048

struct auth {
    enum auth_algorithm algorithm;
    jwt_alg_t jwt_algorithm;
    unsigned char *key;          /* a private copy, NUL-terminated */
    int key_length;              /* libjwt takes an int */
};

static void auth_error(char *error, size_t error_size, const char *message)
{
    if (error != NULL && error_size > 0)
        snprintf(error, error_size, "%s", message);
}

static bool auth_algorithm_known(enum auth_algorithm algorithm)
{
    return algorithm == AUTH_HS256 || algorithm == AUTH_RS256 || algorithm == AUTH_ES256;
}

static jwt_alg_t auth_jwt_algorithm(enum auth_algorithm algorithm)
{
    switch (algorithm) {
    case AUTH_HS256:
        return JWT_ALG_HS256;
    case AUTH_RS256:
        return JWT_ALG_RS256;
    case AUTH_ES256:
        return JWT_ALG_ES256;
    }
    return JWT_ALG_INVAL;
}

/* Checks that a parsed public key fits the algorithm: RSA of a size RFC
 * 7518 allows for RS256, EC on P-256 for ES256 (another curve would verify
 * nothing an ES256 issuer signs). Returns NULL or the problem. */
static const char *auth_key_type_problem(enum auth_algorithm algorithm, const EVP_PKEY *pkey)
{
    if (algorithm == AUTH_RS256) {
        if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA)
            return "RS256 needs an RSA public key";
        if (EVP_PKEY_get_bits(pkey) < AUTH_RSA_MIN_BITS)
            return "RS256 needs an RSA key of at least 2048 bits";
        return NULL;
    }
    if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC)
        return "ES256 needs an EC public key";
    char group[64];
    size_t group_length = 0;
    if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &group_length) != 1 ||
        OBJ_txt2nid(group) != NID_X9_62_prime256v1)
        return "ES256 needs an EC key on curve P-256";
    return NULL;
}

/* Parses key as a PEM public key so that a bad key file is a startup error
 * rather than every token failing later. */
static bool auth_check_public_key(enum auth_algorithm algorithm, const void *key,
                                  int key_length, char *error, size_t error_size)
{
    BIO *bio = BIO_new_mem_buf(key, key_length);
    if (bio == NULL) {
        auth_error(error, error_size, "cannot read public key: out of memory");
        return false;
    }
    EVP_PKEY *pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    /* A failed parse leaves errors queued; they are ours to discard, not
     * something for the next unrelated OpenSSL caller to trip over. */
    ERR_clear_error();
    if (pkey == NULL) {
        auth_error(error, error_size, "cannot read public key: not a PEM public key");
        return false;
    }
    const char *problem = auth_key_type_problem(algorithm, pkey);
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    if (problem != NULL) {
        auth_error(error, error_size, problem);
        return false;
    }
    return true;
}

struct auth *auth_new(enum auth_algorithm algorithm, const void *key, size_t key_length,
                      char *error, size_t error_size)
{
    if (!auth_algorithm_known(algorithm)) {
        auth_error(error, error_size, "unknown algorithm");
        return NULL;
    }
    /* An empty key would make libjwt skip verification altogether. */
    if (key == NULL || key_length == 0) {
        auth_error(error, error_size, algorithm == AUTH_HS256 ? "HS256 needs a non-empty secret"
                                                              : "cannot read public key: empty");
        return NULL;
    }
    if (key_length > INT_MAX - 1) {
        auth_error(error, error_size, "key too long");
        return NULL;
    }
    if (algorithm != AUTH_HS256 &&
        !auth_check_public_key(algorithm, key, (int)key_length, error, error_size))
        return NULL;

    struct auth *auth = calloc(1, sizeof(*auth));
    unsigned char *copy = malloc(key_length + 1);
    if (auth == NULL || copy == NULL) {
        free(auth);
        free(copy);
        auth_error(error, error_size, "out of memory");
        return NULL;
    }
    memcpy(copy, key, key_length);
    copy[key_length] = '\0';
    auth->algorithm = algorithm;
    auth->jwt_algorithm = auth_jwt_algorithm(algorithm);
    auth->key = copy;
    auth->key_length = (int)key_length;
    return auth;
}

void auth_free(struct auth *auth)
{
    if (auth == NULL)
        return;
    /* HS256 secrets should not linger in freed memory. */
    memset(auth->key, 0, (size_t)auth->key_length);
    free(auth->key);
    free(auth);
}

void auth_identity_clear(struct auth_identity *identity)
{
    if (identity == NULL)
        return;
    free(identity->user);
    for (size_t i = 0; i < identity->channel_count; i++)
        free(identity->channels[i]);
    free(identity->channels);
    memset(identity, 0, sizeof(*identity));
}

bool auth_identity_allows(const struct auth_identity *identity, const char *channel)
{
    if (identity == NULL || channel == NULL)
        return false;
    if (identity->channels == NULL)
        return true;
    for (size_t i = 0; i < identity->channel_count; i++) {
        if (pattern_match(identity->channels[i], channel))
            return true;
    }
    return false;
}

/* C0 controls, DEL, and the C1 controls U+0080..U+009F (encoded C2 80..C2
 * 9F): none of them belongs in a name shown to other users or in logs. */
static bool auth_has_control(const unsigned char *bytes, size_t length)
{
    for (size_t i = 0; i < length; i++) {
        if (bytes[i] < 0x20 || bytes[i] == 0x7f)
            return true;
        if (bytes[i] == 0xc2 && i + 1 < length && bytes[i + 1] >= 0x80 && bytes[i + 1] <= 0x9f)
            return true;
    }
    return false;
}

bool auth_user_name_valid(const char *name, size_t length)
{
    if (name == NULL || length == 0 || length > AUTH_USER_NAME_MAX)
        return false;
    const unsigned char *bytes = (const unsigned char *)name;
    if (!utf8_is_valid(bytes, length))
        return false;
    if (auth_has_control(bytes, length))
        return false;
    return bytes[0] != ' ' && bytes[length - 1] != ' ';
}

static bool auth_is_token_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

/* A compact JWS is three base64url parts joined by '.', the first two
 * non-empty (the signature is empty only for "none", which is refused
 * later anyway). Checking the shape first keeps obvious garbage away from
 * libjwt and gives it a precise reason. */
static bool auth_token_shape_valid(const char *token, size_t length)
{
    size_t dots = 0, part_length = 0;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)token[i];
        if (c == '.') {
            if (part_length == 0 || ++dots > 2)
                return false;
            part_length = 0;
        } else if (auth_is_token_char(c)) {
            part_length++;
        } else {
            return false;
        }
    }
    return dots == 2;
}

/* Names the reason a structurally plausible token failed verification.
 * The decision is already made; this only picks the words for the log.
 * Decoding without a key parses without checking any signature. */
static const char *auth_failure_reason(const struct auth *auth, const char *token)
{
    jwt_t *jwt = NULL;
    int status = jwt_decode(&jwt, token, NULL, 0);
    if (status == ENOMEM)
        return "out of memory";
    if (status != 0 || jwt == NULL) {
        if (jwt != NULL)
            jwt_free(jwt);
        return "malformed token";
    }
    const char *name = jwt_get_header(jwt, "alg");
    bool same = name != NULL && jwt_str_alg(name) == auth->jwt_algorithm;
    jwt_free(jwt);
    return same ? "bad signature" : "wrong algorithm";
}

/* Reads a JSON document libjwt serialized for us; NULL on failure. */
static json_t *auth_load_json(char *text)
{
    if (text == NULL)
        return NULL;
    json_t *value = json_loads(text, 0, NULL);
    free(text);
    return value;
}

/* Compares a NumericDate claim (RFC 7519 §2: seconds since the epoch, not
 * necessarily whole) with now: *order becomes -1, 0 or 1. False when the
 * claim is not a number. */
static bool auth_compare_date(const json_t *value, time_t now, int *order)
{
    if (json_is_integer(value)) {
        long long seconds = json_integer_value(value);
        long long current = (long long)now;
        *order = (seconds > current) - (seconds < current);
        return true;
    }
    if (json_is_real(value)) {
        double seconds = json_real_value(value);
        double current = (double)now;
        *order = (seconds > current) - (seconds < current);
        return true;
    }
    return false;
}

/* The largest time_t, for clamping far-future expiry times. time_t is a
 * signed integer type on every platform this daemon supports. */
static time_t auth_time_max(void)
{
    return (time_t)((((uintmax_t)1 << (sizeof(time_t) * CHAR_BIT - 2)) - 1) * 2 + 1);
}

/* exp as a time_t; only called for an exp already known to be after now,
 * so the value is positive. */
static time_t auth_expiry_time(const json_t *value)
{
    time_t max = auth_time_max();
    if (json_is_integer(value)) {
        json_int_t seconds = json_integer_value(value);
        return (uintmax_t)seconds > (uintmax_t)max ? max : (time_t)seconds;
    }
    double seconds = json_real_value(value);
    return seconds >= (double)max ? max : (time_t)seconds;
}

static const char *auth_check_times(const json_t *claims, time_t now,
                                    struct auth_identity *identity)
{
    int order;
    const json_t *exp = json_object_get(claims, "exp");
    if (exp != NULL) {
        if (!auth_compare_date(exp, now, &order))
            return "invalid exp claim";
        if (order <= 0)
            return "expired";
        identity->expires = auth_expiry_time(exp);
    }
    const json_t *nbf = json_object_get(claims, "nbf");
    if (nbf != NULL) {
        if (!auth_compare_date(nbf, now, &order))
            return "invalid nbf claim";
        if (order > 0)
            return "not yet valid";
    }
    return NULL;
}

static char *auth_copy_string(const json_t *string)
{
    size_t length = json_string_length(string);
    char *copy = malloc(length + 1);
    if (copy != NULL) {
        memcpy(copy, json_string_value(string), length);
        copy[length] = '\0';
    }
    return copy;
}

static const char *auth_take_user(const json_t *claims, struct auth_identity *identity)
{
    const json_t *sub = json_object_get(claims, "sub");
    if (sub == NULL)
        return "missing sub";
    if (!json_is_string(sub) || !auth_user_name_valid(json_string_value(sub),
                                                      json_string_length(sub)))
        return "invalid sub";
    identity->user = auth_copy_string(sub);
    return identity->user != NULL ? NULL : "out of memory";
}

/* An empty array is kept as a non-NULL list of zero patterns: the token
 * restricts the connection to no channel at all, which must not read as
 * "no restriction". */
static const char *auth_take_channels(const json_t *claims, struct auth_identity *identity)
{
    const json_t *channels = json_object_get(claims, "channels");
    if (channels == NULL)
        return NULL;
    if (!json_is_array(channels))
        return "invalid channels claim";
    size_t count = json_array_size(channels);
    for (size_t i = 0; i < count; i++) {
        if (!json_is_string(json_array_get(channels, i)))
            return "invalid channels claim";
    }
    identity->channels = calloc(count > 0 ? count : 1, sizeof(*identity->channels));
    if (identity->channels == NULL)
        return "out of memory";
    for (size_t i = 0; i < count; i++) {
        char *pattern = auth_copy_string(json_array_get(channels, i));
        if (pattern == NULL)
            return "out of memory";
        identity->channels[identity->channel_count++] = pattern;
    }
    return NULL;
}

/* The checks that follow a good signature, on the decoded token. */
static const char *auth_check_decoded(const struct auth *auth, jwt_t *jwt, time_t now,
                                      struct auth_identity *identity)
{
    if (jwt_get_alg(jwt) != auth->jwt_algorithm)
        return "wrong algorithm";

    json_t *header = auth_load_json(jwt_get_headers_json(jwt, NULL));
    if (header == NULL)
        return "malformed token";
    bool critical = !json_is_object(header) || json_object_get(header, "crit") != NULL;
    json_decref(header);
    if (critical)
        return "unsupported critical header";

    json_t *claims = auth_load_json(jwt_get_grants_json(jwt, NULL));
    if (claims == NULL)
        return "malformed token";
    const char *reason = NULL;
    if (!json_is_object(claims))
        reason = "malformed token";
    if (reason == NULL)
        reason = auth_check_times(claims, now, identity);
    if (reason == NULL)
        reason = auth_take_user(claims, identity);
    if (reason == NULL)
        reason = auth_take_channels(claims, identity);
    json_decref(claims);
    return reason;
}

/* base64url without padding (RFC 7515 §2) of data into out, which must
 * hold 4 * ((length + 2) / 3) + 1 bytes; returns the encoded length. */
static size_t auth_base64url(const unsigned char *data, size_t length, char *out)
{
    int n = EVP_EncodeBlock((unsigned char *)out, data, (int)length);
    size_t used = n > 0 ? (size_t)n : 0;
    while (used > 0 && out[used - 1] == '=')
        used--;
    for (size_t i = 0; i < used; i++) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
    out[used] = '\0';
    return used;
}

/* The HS256 MAC of a token of the verified shape, compared in constant
 * time: the time taken does not depend on how many leading characters of a
 * forged signature are right. Only the length is compared first, and the
 * length of a valid signature (43 characters) is no secret. */
static bool auth_hs256_mac_valid(const struct auth *auth, const char *token, size_t length)
{
    const char *dot = token + length;
    while (dot > token && dot[-1] != '.')
        dot--;
    size_t signed_length = (size_t)(dot - token) - 1;   /* the shape has two dots */
    const char *signature = dot;
    size_t signature_length = length - (size_t)(dot - token);

    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_length = 0;
    if (HMAC(EVP_sha256(), auth->key, auth->key_length, (const unsigned char *)token,
             signed_length, mac, &mac_length) == NULL)
        return false;
    char expected[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
    size_t expected_length = auth_base64url(mac, mac_length, expected);
    return signature_length == expected_length &&
           CRYPTO_memcmp(expected, signature, expected_length) == 0;
}

static const char *auth_verify_token(const struct auth *auth, const char *token, time_t now,
                                     struct auth_identity *identity)
{
    size_t length = strnlen(token, AUTH_TOKEN_MAX + 1);
    if (length > AUTH_TOKEN_MAX)
        return "token too long";
    if (!auth_token_shape_valid(token, length))
        return "malformed token";
    if (auth->algorithm == AUTH_HS256 && !auth_hs256_mac_valid(auth, token, length))
        return auth_failure_reason(auth, token);

    jwt_t *jwt = NULL;
    int status = jwt_decode(&jwt, token, auth->key, auth->key_length);
    if (status == ENOMEM)
        return "out of memory";
    if (status != 0 || jwt == NULL) {
        if (jwt != NULL)
            jwt_free(jwt);
        return auth_failure_reason(auth, token);
    }
    const char *reason = auth_check_decoded(auth, jwt, now, identity);
    jwt_free(jwt);
    return reason;
}

int auth_verify(const struct auth *auth, const char *token, time_t now,
                struct auth_identity *identity, const char **reason)
{
    const char *unused;
    if (reason == NULL)
        reason = &unused;
    if (identity == NULL) {
        *reason = "internal error";
        return -1;
    }
    memset(identity, 0, sizeof(*identity));
    if (auth == NULL || token == NULL) {
        *reason = auth == NULL ? "internal error" : "missing token";
        return -1;
    }
    const char *failure = auth_verify_token(auth, token, now, identity);
    /* libjwt and OpenSSL may leave errors queued on any path. */
    ERR_clear_error();
    if (failure != NULL) {
        auth_identity_clear(identity);
        *reason = failure;
        return -1;
    }
    return 0;
}
