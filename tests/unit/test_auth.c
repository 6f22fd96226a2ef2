/* Unit tests for the auth module: key checks at creation, HS256/RS256/ES256
 * verification, the algorithm guard ("none", HS/RS confusion, other RSA
 * hashes), exp/nbf/sub/channels claims, malformed and oversized tokens, and
 * user name rules.
 *
 * Keys are generated per run with OpenSSL. Most tokens come from libjwt's
 * encoder; tokens libjwt would not produce (odd headers, "none", signatures
 * made by plain OpenSSL as another issuer would) are assembled by hand. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth.h"

#define NOW ((time_t)1700000000)
#define SECRET "correct horse battery staple"
#define ALICE_CLAIMS "{\"sub\":\"alice\"}"

struct keys {
    EVP_PKEY *rsa;
    EVP_PKEY *ec;
    char *rsa_public;
    char *rsa_private;
    char *ec_public;
    char *ec_private;
    char *rsa1024_public;
    char *p384_public;
};

static struct keys keys;

/* ---- key material ---- */

static char *bio_to_string(BIO *bio)
{
    char *data = NULL;
    long length = BIO_get_mem_data(bio, &data);
    assert_true(length > 0);
    char *copy = malloc((size_t)length + 1);
    assert_non_null(copy);
    memcpy(copy, data, (size_t)length);
    copy[length] = '\0';
    BIO_free(bio);
    return copy;
}

static char *public_pem(EVP_PKEY *pkey)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PUBKEY(bio, pkey), 1);
    return bio_to_string(bio);
}

static char *private_pem(EVP_PKEY *pkey)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL), 1);
    return bio_to_string(bio);
}

static int keys_setup(void **state)
{
    keys.rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    keys.ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    if (keys.rsa == NULL || keys.ec == NULL || rsa1024 == NULL || p384 == NULL)
        return -1;
    keys.rsa_public = public_pem(keys.rsa);
    keys.rsa_private = private_pem(keys.rsa);
    keys.ec_public = public_pem(keys.ec);
    keys.ec_private = private_pem(keys.ec);
    keys.rsa1024_public = public_pem(rsa1024);
    keys.p384_public = public_pem(p384);
    EVP_PKEY_free(rsa1024);
    EVP_PKEY_free(p384);
    return 0;
}

static int keys_teardown(void **state)
{
    EVP_PKEY_free(keys.rsa);
    EVP_PKEY_free(keys.ec);
    free(keys.rsa_public);
    free(keys.rsa_private);
    free(keys.ec_public);
    free(keys.ec_private);
    free(keys.rsa1024_public);
    free(keys.p384_public);
    return 0;
}

static struct auth *new_verifier(enum auth_algorithm algorithm)
{
    char error[256] = "";
    const char *key = algorithm == AUTH_HS256 ? SECRET
                      : algorithm == AUTH_RS256 ? keys.rsa_public
                                                : keys.ec_public;
    struct auth *auth = auth_new(algorithm, key, strlen(key), error, sizeof(error));
    if (auth == NULL)
        fail_msg("auth_new: %s", error);
    return auth;
}

/* ---- tokens ---- */

/* A token made by libjwt's encoder; claims is a JSON object or NULL. */
static char *encode(jwt_alg_t alg, const char *key, const char *claims)
{
    jwt_t *jwt = NULL;
    assert_int_equal(jwt_new(&jwt), 0);
    if (claims != NULL)
        assert_int_equal(jwt_add_grants_json(jwt, claims), 0);
    int key_length = key != NULL ? (int)strlen(key) : 0;
    assert_int_equal(jwt_set_alg(jwt, alg, (const unsigned char *)key, key_length), 0);
    char *token = jwt_encode_str(jwt);
    assert_non_null(token);
    jwt_free(jwt);
    return token;
}

static char *encode_hs(const char *claims)
{
    return encode(JWT_ALG_HS256, SECRET, claims);
}

static char *base64url(const void *data, size_t length)
{
    char *out = malloc(4 * (length / 3 + 1) + 1);
    assert_non_null(out);
    int n = EVP_EncodeBlock((unsigned char *)out, data, (int)length);
    assert_true(n >= 0);
    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
    for (int i = 0; i < n; i++) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
    return out;
}

/* "base64url(header).base64url(payload)" */
static char *signing_input(const char *header, const char *payload)
{
    char *h = base64url(header, strlen(header));
    char *p = base64url(payload, strlen(payload));
    size_t length = strlen(h) + 1 + strlen(p);
    char *input = malloc(length + 1);
    assert_non_null(input);
    snprintf(input, length + 1, "%s.%s", h, p);
    free(h);
    free(p);
    return input;
}

static char *join(const char *input, const char *signature)
{
    size_t length = strlen(input) + 1 + strlen(signature);
    char *token = malloc(length + 1);
    assert_non_null(token);
    snprintf(token, length + 1, "%s.%s", input, signature);
    return token;
}

/* A token with the given header and payload and a literal signature part. */
static char *craft(const char *header, const char *payload, const char *signature)
{
    char *input = signing_input(header, payload);
    char *token = join(input, signature);
    free(input);
    return token;
}

/* A hand-made HS256 token, for headers libjwt's encoder will not write. */
static char *craft_hs(const char *header, const char *payload, const char *secret)
{
    char *input = signing_input(header, payload);
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_length = 0;
    assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, secret, strlen(secret),
                              (const unsigned char *)input, strlen(input), mac, sizeof(mac),
                              &mac_length));
    char *signature = base64url(mac, mac_length);
    char *token = join(input, signature);
    free(signature);
    free(input);
    return token;
}

/* JOSE wants an ECDSA signature as R || S, 32 bytes each for P-256. */
static size_t ecdsa_der_to_raw(const unsigned char *der, size_t der_length, unsigned char *raw)
{
    const unsigned char *cursor = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &cursor, (long)der_length);
    assert_non_null(sig);
    const BIGNUM *r = NULL, *s = NULL;
    ECDSA_SIG_get0(sig, &r, &s);
    assert_int_equal(BN_bn2binpad(r, raw, 32), 32);
    assert_int_equal(BN_bn2binpad(s, raw + 32, 32), 32);
    ECDSA_SIG_free(sig);
    return 64;
}

/* A token signed by plain OpenSSL, the way an independent issuer would:
 * RSA PKCS#1 v1.5 or ECDSA with SHA-256. raw_ecdsa false leaves an ECDSA
 * signature in DER, which JOSE does not allow. */
static char *craft_signed(EVP_PKEY *pkey, const char *header, const char *payload,
                          bool raw_ecdsa)
{
    char *input = signing_input(header, payload);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_non_null(ctx);
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey), 1);
    size_t length = 0;
    assert_int_equal(EVP_DigestSign(ctx, NULL, &length, (const unsigned char *)input,
                                    strlen(input)), 1);
    unsigned char *sig = malloc(length);
    assert_non_null(sig);
    assert_int_equal(EVP_DigestSign(ctx, sig, &length, (const unsigned char *)input,
                                    strlen(input)), 1);
    EVP_MD_CTX_free(ctx);
    unsigned char raw[64];
    char *signature = raw_ecdsa ? base64url(raw, ecdsa_der_to_raw(sig, length, raw))
                                : base64url(sig, length);
    char *token = join(input, signature);
    free(signature);
    free(sig);
    free(input);
    return token;
}

/* ---- verification helpers ---- */

static void expect_accept(const struct auth *auth, const char *token,
                          struct auth_identity *identity)
{
    const char *reason = NULL;
    if (auth_verify(auth, token, NOW, identity, &reason) != 0)
        fail_msg("token rejected (%s): %s", reason != NULL ? reason : "?", token);
    assert_non_null(identity->user);
}

static void expect_reject_at(const struct auth *auth, const char *token, time_t now,
                             const char *expected)
{
    struct auth_identity identity;
    memset(&identity, 0xa5, sizeof(identity));   /* must be reset on failure */
    const char *reason = NULL;
    if (auth_verify(auth, token, now, &identity, &reason) != -1) {
        auth_identity_clear(&identity);
        fail_msg("token accepted, expected \"%s\": %s", expected, token);
    }
    assert_non_null(reason);
    if (strcmp(reason, expected) != 0)
        fail_msg("reason \"%s\", expected \"%s\"", reason, expected);
    assert_null(identity.user);
    assert_null(identity.channels);
    assert_int_equal(identity.channel_count, 0);
    assert_int_equal(identity.expires, 0);
}

static void expect_reject(const struct auth *auth, const char *token, const char *expected)
{
    expect_reject_at(auth, token, NOW, expected);
}

/* Takes ownership of token. */
static void reject_owned(const struct auth *auth, char *token, const char *expected)
{
    expect_reject(auth, token, expected);
    free(token);
}

static void accept_owned(const struct auth *auth, char *token)
{
    struct auth_identity identity;
    expect_accept(auth, token, &identity);
    auth_identity_clear(&identity);
    free(token);
}

/* ---- auth_new ---- */

static void expect_new_error(enum auth_algorithm algorithm, const void *key, size_t length,
                             const char *expected)
{
    char error[256] = "";
    struct auth *auth = auth_new(algorithm, key, length, error, sizeof(error));
    if (auth != NULL) {
        auth_free(auth);
        fail_msg("key accepted, expected \"%s\"", expected);
    }
    assert_string_equal(error, expected);
    /* Nothing left queued for the next OpenSSL user to misread. */
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_new_rejects_empty_secret(void **state)
{
    expect_new_error(AUTH_HS256, "", 0, "HS256 needs a non-empty secret");
    expect_new_error(AUTH_HS256, NULL, 0, "HS256 needs a non-empty secret");
    expect_new_error(AUTH_HS256, NULL, 5, "HS256 needs a non-empty secret");
    expect_new_error(AUTH_RS256, "", 0, "cannot read public key: empty");
}

static void test_new_rejects_unreadable_pem(void **state)
{
    const char *garbage = "not a key at all";
    expect_new_error(AUTH_RS256, garbage, strlen(garbage),
                     "cannot read public key: not a PEM public key");
    expect_new_error(AUTH_ES256, garbage, strlen(garbage),
                     "cannot read public key: not a PEM public key");
    /* A private key where the public one belongs. */
    expect_new_error(AUTH_RS256, keys.rsa_private, strlen(keys.rsa_private),
                     "cannot read public key: not a PEM public key");
    /* A PEM cut short. */
    expect_new_error(AUTH_RS256, keys.rsa_public, strlen(keys.rsa_public) / 2,
                     "cannot read public key: not a PEM public key");
}

static void test_new_rejects_wrong_key_type(void **state)
{
    expect_new_error(AUTH_RS256, keys.ec_public, strlen(keys.ec_public),
                     "RS256 needs an RSA public key");
    expect_new_error(AUTH_ES256, keys.rsa_public, strlen(keys.rsa_public),
                     "ES256 needs an EC public key");
    expect_new_error(AUTH_ES256, keys.p384_public, strlen(keys.p384_public),
                     "ES256 needs an EC key on curve P-256");
    expect_new_error(AUTH_RS256, keys.rsa1024_public, strlen(keys.rsa1024_public),
                     "RS256 needs an RSA key of at least 2048 bits");
    expect_new_error((enum auth_algorithm)42, SECRET, strlen(SECRET), "unknown algorithm");
}

static void test_new_tolerates_missing_error_buffer(void **state)
{
    assert_null(auth_new(AUTH_HS256, "", 0, NULL, 0));
    char error[1] = { 'x' };
    assert_null(auth_new(AUTH_RS256, "junk", 4, error, 0));
    assert_int_equal(error[0], 'x');
    auth_free(NULL);
}

/* The verifier keeps its own copy: the caller may free or reuse the key,
 * and a key buffer without a terminating NUL is read only as far as its
 * length (AddressSanitizer watches the exact-size heap copies). */
static void test_new_copies_key(void **state)
{
    size_t length = strlen(SECRET);
    char *secret = malloc(length);
    assert_non_null(secret);
    memcpy(secret, SECRET, length);
    struct auth *hs = auth_new(AUTH_HS256, secret, length, NULL, 0);
    assert_non_null(hs);
    memset(secret, 'x', length);
    free(secret);

    length = strlen(keys.ec_public);
    char *pem = malloc(length);
    assert_non_null(pem);
    memcpy(pem, keys.ec_public, length);
    struct auth *es = auth_new(AUTH_ES256, pem, length, NULL, 0);
    assert_non_null(es);
    memset(pem, 'x', length);
    free(pem);

    accept_owned(hs, encode_hs("{\"sub\":\"alice\"}"));
    accept_owned(es, encode(JWT_ALG_ES256, keys.ec_private, "{\"sub\":\"alice\"}"));
    auth_free(hs);
    auth_free(es);
}

/* ---- accepting ---- */

static void test_hs256_accepts(void **state)
{
    struct auth *auth = new_verifier(AUTH_HS256);
    jwt_t *jwt = NULL;
    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(jwt_add_grant(jwt, "sub", "alice"), 0);
    assert_int_equal(jwt_add_grant_int(jwt, "exp", NOW + 3600), 0);
    assert_int_equal(jwt_add_grant_int(jwt, "nbf", NOW - 10), 0);
    assert_int_equal(jwt_add_grant_int(jwt, "iat", NOW - 10), 0);
    assert_int_equal(jwt_add_grant(jwt, "iss", "issuer"), 0);
    assert_int_equal(jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)SECRET,
                                 (int)strlen(SECRET)), 0);
    char *token = jwt_encode_str(jwt);
    assert_non_null(token);
    jwt_free(jwt);

    struct auth_identity identity;
    expect_accept(auth, token, &identity);
    assert_string_equal(identity.user, "alice");
    assert_int_equal(identity.expires, NOW + 3600);
    assert_null(identity.channels);
    assert_int_equal(identity.channel_count, 0);
    auth_identity_clear(&identity);
    assert_null(identity.user);
    auth_identity_clear(&identity);   /* clearing twice is harmless */
    auth_identity_clear(NULL);

    /* A NULL reason pointer is allowed. */
    assert_int_equal(auth_verify(auth, token, NOW, &identity, NULL), 0);
    auth_identity_clear(&identity);
    free(token);
    auth_free(auth);
}

static void test_hs256_accepts_token_without_typ(void **state)
{
    struct auth *auth = new_verifier(AUTH_HS256);
    accept_owned(auth, craft_hs("{\"alg\":\"HS256\"}", "{\"sub\":\"bob\"}", SECRET));
    auth_free(auth);
}

static void test_rs256_accepts(void **state)
{
    struct auth *auth = new_verifier(AUTH_RS256);
    char *token = encode(JWT_ALG_RS256, keys.rsa_private,
                         "{\"sub\":\"carol\",\"exp\":1700003600,\"channels\":[\"room:*\"]}");
    struct auth_identity identity;
    expect_accept(auth, token, &identity);
    assert_string_equal(identity.user, "carol");
    assert_int_equal(identity.expires, 1700003600);
    assert_int_equal(identity.channel_count, 1);
    assert_string_equal(identity.channels[0], "room:*");
    auth_identity_clear(&identity);
    free(token);

    /* Signed by OpenSSL directly, as another issuer would. */
    accept_owned(auth, craft_signed(keys.rsa, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}",
                                    "{\"sub\":\"dave\"}", false));
    auth_free(auth);
}

static void test_es256_accepts(void **state)
{
    struct auth *auth = new_verifier(AUTH_ES256);
    char *token = encode(JWT_ALG_ES256, keys.ec_private, "{\"sub\":\"erin\"}");
    struct auth_identity identity;
    expect_accept(auth, token, &identity);
    assert_string_equal(identity.user, "erin");
    assert_int_equal(identity.expires, 0);
    auth_identity_clear(&identity);
    free(token);

    /* Another issuer's R||S signature verifies; a DER signature (not JOSE)
     * does not. */
    const char *header = "{\"alg\":\"ES256\",\"typ\":\"JWT\"}";
    accept_owned(auth, craft_signed(keys.ec, header, "{\"sub\":\"frank\"}", true));
    reject_owned(auth, craft_signed(keys.ec, header, "{\"sub\":\"frank\"}", false),
                 "bad signature");
    auth_free(auth);
}

/* ---- signatures ---- */

static void test_wrong_secret(void **state)
{
    struct auth *auth = new_verifier(AUTH_HS256);
    reject_owned(auth, encode(JWT_ALG_HS256, "another secret", "{\"sub\":\"alice\"}"),
                 "bad signature");
    /* A prefix of the secret is a different secret. */
    reject_owned(auth, encode(JWT_ALG_HS256, "correct horse", "{\"sub\":\"alice\"}"),
                 "bad signature");
    auth_free(auth);
}

static void test_wrong_public_key(void **state)
{
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(other);
    char *other_private = private_pem(other);
    struct auth *auth = new_verifier(AUTH_ES256);
    reject_owned(auth, encode(JWT_ALG_ES256, other_private, "{\"sub\":\"alice\"}"),
                 "bad signature");
    auth_free(auth);
    free(other_private);
    EVP_PKEY_free(other);
}

/* Swaps the payload part of token for base64url(payload). */
static char *replace_payload(const char *token, const char *payload)
{
    const char *first = strchr(token, '.');
    const char *second = strrchr(token, '.');
    assert_non_null(first);
    assert_true(second > first);
    char *encoded = base64url(payload, strlen(payload));
    size_t length = (size_t)(first - token) + 1 + strlen(encoded) + strlen(second);
    char *out = malloc(length + 1);
    assert_non_null(out);
    snprintf(out, length + 1, "%.*s.%s%s", (int)(first - token), token, encoded, second);
    free(encoded);
    return out;
}

static void check_tampering(enum auth_algorithm algorithm, char *token)
{
    struct auth *auth = new_verifier(algorithm);
    accept_owned(auth, strdup(token));
    reject_owned(auth, replace_payload(token, "{\"sub\":\"admin\"}"), "bad signature");

    size_t length = strlen(token);
    char *flipped = strdup(token);
    assert_non_null(flipped);
    /* The first signature character carries six whole bits. */
    char *sig = strrchr(flipped, '.') + 1;
    sig[0] = sig[0] == 'A' ? 'B' : 'A';
    reject_owned(auth, flipped, "bad signature");

    char *cut = strdup(token);
    assert_non_null(cut);
    cut[length - 4] = '\0';
    reject_owned(auth, cut, "bad signature");
    free(token);
    auth_free(auth);
}

static void test_tampered_tokens(void **state)
{
    const char *claims = "{\"sub\":\"alice\"}";
    check_tampering(AUTH_HS256, encode_hs(claims));
    check_tampering(AUTH_RS256, encode(JWT_ALG_RS256, keys.rsa_private, claims));
    check_tampering(AUTH_ES256, encode(JWT_ALG_ES256, keys.ec_private, claims));
}

/* The HS256 MAC is compared by this module in constant time, whatever
 * libjwt does; timing is not testable here, correctness is: every
 * position of the signature counts, its length must be exact, and only the
 * canonical spelling of the MAC is accepted. */
static const char base64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static char *with_signature(const char *token, const char *signature)
{
    const char *last = strrchr(token, '.');
    assert_non_null(last);
    size_t head = (size_t)(last - token) + 1;
    char *out = malloc(head + strlen(signature) + 1);
    assert_non_null(out);
    memcpy(out, token, head);
    strcpy(out + head, signature);
    return out;
}

static void test_hs256_mac_compare(void **state)
{
    struct auth *auth = new_verifier(AUTH_HS256);
    char *token = encode_hs(ALICE_CLAIMS);
    accept_owned(auth, strdup(token));
    const char *signature = strrchr(token, '.') + 1;
    size_t length = strlen(signature);
    assert_int_equal(length, 43);   /* 32 bytes, unpadded */

    /* Each position, changed to any other character, is refused. */
    char *changed = strdup(signature);
    assert_non_null(changed);
    for (size_t i = 0; i < length; i++) {
        /* a spread of replacements, a different one at each position */
        for (size_t k = i % 7; k < sizeof(base64url_alphabet) - 1; k += 7) {
            if (base64url_alphabet[k] == signature[i])
                continue;
            changed[i] = base64url_alphabet[k];
            reject_owned(auth, with_signature(token, changed), "bad signature");
        }
        changed[i] = signature[i];
    }
    free(changed);

    /* The last character holds 4 bits of the MAC and 2 unused ones: a
     * spelling that differs only there decodes to the same bytes and is
     * still refused, so there is one valid token per claim set. */
    const char *at = strchr(base64url_alphabet, signature[length - 1]);
    assert_non_null(at);
    int value = (int)(at - base64url_alphabet);
    assert_int_equal(value & 3, 0);
    char *respelled = strdup(signature);
    assert_non_null(respelled);
    respelled[length - 1] = base64url_alphabet[value | 1];
    reject_owned(auth, with_signature(token, respelled), "bad signature");
    free(respelled);

    /* Shorter, longer, empty. */
    char *shorter = strdup(signature);
    assert_non_null(shorter);
    shorter[length - 1] = '\0';
    reject_owned(auth, with_signature(token, shorter), "bad signature");
    free(shorter);
    char *longer = malloc(length + 2);
    assert_non_null(longer);
    snprintf(longer, length + 2, "%sA", signature);
    reject_owned(auth, with_signature(token, longer), "bad signature");
    free(longer);
    reject_owned(auth, with_signature(token, ""), "bad signature");

    /* MACs made with a prefix or an extension of the secret. */
    reject_owned(auth, craft_hs("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", ALICE_CLAIMS,
                                "correct horse battery stapl"), "bad signature");
    reject_owned(auth, craft_hs("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", ALICE_CLAIMS,
                                SECRET "!"), "bad signature");
    free(token);
    auth_free(auth);
}

/* ---- the algorithm guard ---- */

#define NONE_HEADER "{\"alg\":\"none\",\"typ\":\"JWT\"}"
#define ALICE "{\"sub\":\"alice\"}"

static void check_none_rejected(enum auth_algorithm algorithm)
{
    struct auth *auth = new_verifier(algorithm);
    reject_owned(auth, craft(NONE_HEADER, ALICE, ""), "wrong algorithm");
    /* Only two parts. */
    char *input = signing_input(NONE_HEADER, ALICE);
    reject_owned(auth, input, "malformed token");
    /* Some signature that nobody checks. */
    reject_owned(auth, craft(NONE_HEADER, ALICE, "c2lnbmF0dXJl"), "wrong algorithm");
    reject_owned(auth, craft("{\"alg\":\"none\"}", ALICE, ""), "wrong algorithm");
    reject_owned(auth, craft("{\"alg\":\"NONE\",\"typ\":\"JWT\"}", ALICE, ""), "wrong algorithm");
    /* libjwt's own unsecured token. */
    reject_owned(auth, encode(JWT_ALG_NONE, NULL, ALICE), "wrong algorithm");
    auth_free(auth);
}

static void test_alg_none_rejected(void **state)
{
    check_none_rejected(AUTH_HS256);
    check_none_rejected(AUTH_RS256);
    check_none_rejected(AUTH_ES256);
}

/* The classic confusion: an HS256 token whose HMAC key is the server's
 * public key, presented to an RS256/ES256 verifier. libjwt verifies the
 * HMAC with the PEM as the secret and succeeds; the guard must refuse. */
static void test_alg_confusion_rejected(void **state)
{
    struct auth *rs = new_verifier(AUTH_RS256);
    struct auth *es = new_verifier(AUTH_ES256);
    struct auth *hs = new_verifier(AUTH_HS256);

    reject_owned(rs, encode(JWT_ALG_HS256, keys.rsa_public, ALICE), "wrong algorithm");
    reject_owned(es, encode(JWT_ALG_HS256, keys.ec_public, ALICE), "wrong algorithm");
    /* Hand-made, so that nothing about libjwt's encoder matters. */
    reject_owned(rs, craft_hs("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", ALICE, keys.rsa_public),
                 "wrong algorithm");

    /* Same key, other hash: libjwt would verify RS384 happily. */
    reject_owned(rs, encode(JWT_ALG_RS384, keys.rsa_private, ALICE), "wrong algorithm");
    reject_owned(rs, encode(JWT_ALG_RS512, keys.rsa_private, ALICE), "wrong algorithm");
    reject_owned(hs, encode(JWT_ALG_HS512, SECRET, ALICE), "wrong algorithm");
    reject_owned(es, encode(JWT_ALG_ES384, keys.ec_private, ALICE), "wrong algorithm");

    /* Asymmetric tokens at the wrong verifier. */
    reject_owned(hs, encode(JWT_ALG_RS256, keys.rsa_private, ALICE), "wrong algorithm");
    reject_owned(rs, encode(JWT_ALG_ES256, keys.ec_private, ALICE), "wrong algorithm");
    reject_owned(es, encode(JWT_ALG_RS256, keys.rsa_private, ALICE), "wrong algorithm");
    auth_free(rs);
    auth_free(es);
    auth_free(hs);
}

static void test_crit_header_rejected(void **state)
{
    struct auth *auth = new_verifier(AUTH_HS256);
    reject_owned(auth, craft_hs("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"crit\":[\"exp\"]}", ALICE,
                                SECRET),
                 "unsupported critical header");
    auth_free(auth);
}

/* ---- time claims ---- */

static void test_expiry(void **state)
{
    struct auth *auth = new_verifier(AUTH_HS256);
    char *token = encode_hs("{\"sub\":\"alice\",\"exp\":1700000001}");
    struct auth_identity identity;
    expect_accept(auth, token, &identity);
    assert_int_equal(identity.expires, NOW + 1);
    auth_identity_clear(&identity);
    /* exp is the first instant the token is no longer valid. */
    expect_reject_at(auth, token, NOW + 1, "expired");
    expect_reject_at(auth, token, NOW + 100000, "expired");
    free(token);

    reject_owned(auth, encode_hs("{\"sub\":\"alice\",\"exp\":0}"), "expired");
    reject_owned(auth, encode_hs("{\"sub\":\"alice\",\"exp\":-5}"), "expired");

    /* Non-integer NumericDate values are allowed by RFC 7519. */
    token = encode_hs("{\"sub\":\"alice\",\"exp\":1700000000.5}");
    expect_accept(auth, token, &identity);
    assert_int_equal(identity.expires, NOW);
    auth_identity_clear(&identity);
    expect_reject_at(auth, token, NOW + 1, "expired");
    free(token);

    /* Far future: clamped, not wrapped. */
    token = encode_hs("{\"sub\":\"alice\",\"exp\":9223372036854775807}");
    expect_accept(auth, token, &identity);
    assert_true(identity.expires > NOW);
    auth_identity_clear(&identity);
    free(token);
    token = encode_hs("{\"sub\":\"alice\",\"exp\":1e300}");
    expect_accept(auth, token, &identity);
    assert_true(identity.expires > NOW);
    auth_identity_clear(&identity);
    free(token);
    auth_free(auth);
}

static void test_not_before(void **state)
{
    struct auth *auth = new_verifier(AUTH_HS256);
    char *token = encode_hs("{\"sub\":\"alice\",\"nbf\":1700000001}");
    expect_reject(auth, token, "not yet valid");
    struct auth_identity identity;
    const char *reason = NULL;
    assert_int_equal(auth_verify(auth, token, NOW + 1, &identity, &reason), 0);
    auth_identity_clear(&identity);
    free(token);

    accept_owned(auth, encode_hs("{\"sub\":\"alice\",\"nbf\":1700000000}"));
    reject_owned(auth, encode_hs("{\"sub\":\"alice\",\"nbf\":1700000000.5}"), "not yet valid");
    /* Both present: a valid window. */
    accept_owned(auth, encode_hs("{\"sub\":\"alice\",\"nbf\":1699999000,\"exp\":1700001000}"));
    auth_free(auth);
}

static void test_time_claims_must_be_numbers(void **state)
{
    struct auth *auth = new_verifier(AUTH_HS256);
    /* libjwt's jwt_get_grant_int() would read these as 0 without an error. */
    reject_owned(auth, encode_hs("{\"sub\":\"alice\",\"exp\":\"1800000000\"}"),
                 "invalid exp claim");
    reject_owned(auth, encode_hs("{\"sub\":\"alice\",\"exp\":null}"), "invalid exp claim");
    reject_owned(auth, encode_hs("{\"sub\":\"alice\",\"exp\":true}"), "invalid exp claim");
    reject_owned(auth, encode_hs("{\"sub\":\"alice\",\"nbf\":\"0\"}"), "invalid nbf claim");
    reject_owned(auth, encode_hs("{\"sub\":\"alice\",\"nbf\":[0]}"), "invalid nbf claim");
    auth_free(auth);
}

/* ---- sub ---- */

static char *token_with_sub_json(const char *sub_json)
{
    char claims[512];
    snprintf(claims, sizeof(claims), "{\"sub\":%s}", sub_json);
    return encode_hs(claims);
}

static void test_sub(void **state)
{
    struct auth *auth = new_verifier(AUTH_HS256);
    reject_owned(auth, encode_hs("{\"name\":\"alice\"}"), "missing sub");
    reject_owned(auth, encode_hs(NULL), "missing sub");
    reject_owned(auth, encode_hs("{\"sub\":null}"), "invalid sub");
    reject_owned(auth, token_with_sub_json("42"), "invalid sub");
    reject_owned(auth, token_with_sub_json("[\"alice\"]"), "invalid sub");
    reject_owned(auth, token_with_sub_json("\"\""), "invalid sub");
    reject_owned(auth, token_with_sub_json("\"al\\u0001ice\""), "invalid sub");
    reject_owned(auth, token_with_sub_json("\"alice\\n\""), "invalid sub");
    reject_owned(auth, token_with_sub_json("\"al\\u007fice\""), "invalid sub");
    reject_owned(auth, token_with_sub_json("\" alice\""), "invalid sub");
    reject_owned(auth, token_with_sub_json("\"alice \""), "invalid sub");

    char long_name[80];
    memset(long_name, 'a', sizeof(long_name));
    long_name[0] = '"';
    long_name[65] = '"';
    long_name[66] = '\0';   /* 64 characters */
    struct auth_identity identity;
    char *token = token_with_sub_json(long_name);
    expect_accept(auth, token, &identity);
    assert_int_equal(strlen(identity.user), 64);
    auth_identity_clear(&identity);
    free(token);
    long_name[65] = 'a';
    long_name[66] = '"';
    long_name[67] = '\0';   /* 65 characters */
    reject_owned(auth, token_with_sub_json(long_name), "invalid sub");

    /* UTF-8 arrives escaped or raw; both are fine. */
    token = token_with_sub_json("\"Zo\\u00eb \\u540d\"");
    expect_accept(auth, token, &identity);
    assert_string_equal(identity.user, "Zo\xc3\xab \xe5\x90\x8d");
    auth_identity_clear(&identity);
    free(token);
    auth_free(auth);
}

/* ---- channels ---- */

static void test_channels_claim(void **state)
{
    struct auth *auth = new_verifier(AUTH_HS256);
    struct auth_identity identity;

    char *token = encode_hs("{\"sub\":\"alice\",\"channels\":[\"room:*\",\"news\"]}");
    expect_accept(auth, token, &identity);
    assert_int_equal(identity.channel_count, 2);
    assert_string_equal(identity.channels[0], "room:*");
    assert_string_equal(identity.channels[1], "news");
    assert_true(auth_identity_allows(&identity, "room:lobby"));
    assert_true(auth_identity_allows(&identity, "room:"));
    assert_true(auth_identity_allows(&identity, "news"));
    assert_false(auth_identity_allows(&identity, "news:2"));
    assert_false(auth_identity_allows(&identity, "rooms"));
    assert_false(auth_identity_allows(&identity, "private"));
    assert_false(auth_identity_allows(&identity, NULL));
    auth_identity_clear(&identity);
    free(token);

    /* Absent: no restriction. */
    token = encode_hs(ALICE);
    expect_accept(auth, token, &identity);
    assert_null(identity.channels);
    assert_true(auth_identity_allows(&identity, "anything"));
    auth_identity_clear(&identity);
    free(token);

    /* Empty: restricted to nothing, not unrestricted. */
    token = encode_hs("{\"sub\":\"alice\",\"channels\":[]}");
    expect_accept(auth, token, &identity);
    assert_non_null(identity.channels);
    assert_int_equal(identity.channel_count, 0);
    assert_false(auth_identity_allows(&identity, "room:lobby"));
    auth_identity_clear(&identity);
    free(token);

    token = encode_hs("{\"sub\":\"alice\",\"channels\":[\"*\"]}");
    expect_accept(auth, token, &identity);
    assert_true(auth_identity_allows(&identity, "x"));
    auth_identity_clear(&identity);
    free(token);

    assert_false(auth_identity_allows(NULL, "room:lobby"));
    auth_free(auth);
}

static void test_channels_claim_invalid(void **state)
{
    struct auth *auth = new_verifier(AUTH_HS256);
    static const char *const bad[] = {
        "\"room:*\"", "null", "{}", "{\"0\":\"room:*\"}", "42", "true",
        "[1]", "[\"room:*\",null]", "[[\"room:*\"]]", "[\"a\",{}]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char claims[256];
        snprintf(claims, sizeof(claims), "{\"sub\":\"alice\",\"channels\":%s}", bad[i]);
        reject_owned(auth, encode_hs(claims), "invalid channels claim");
    }
    auth_free(auth);
}

/* ---- malformed input ---- */

static void test_malformed_tokens(void **state)
{
    struct auth *auth = new_verifier(AUTH_HS256);
    static const char *const garbage[] = {
        "", ".", "..", "...", "abc", "a.b", "a.b.c.d", ".b.c", "a..c", "a.b.c.",
        "a b.c.d", "a.b.c\n", " a.b.c", "a.b.c=", "a+b.c/d.e", "\xc3\xa9.b.c",
        "YWJj.YWJj.YWJj", "e30.e30.e30", "Zm9v.YmFy.", "!!!.???.***",
    };
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++)
        expect_reject(auth, garbage[i], "malformed token");

    /* A payload that is JSON but not an object. */
    reject_owned(auth, craft_hs("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "[1,2]", SECRET),
                 "malformed token");
    reject_owned(auth, craft_hs("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "{\"sub\":", SECRET),
                 "malformed token");

    struct auth_identity identity;
    const char *reason = NULL;
    assert_int_equal(auth_verify(auth, NULL, NOW, &identity, &reason), -1);
    assert_string_equal(reason, "missing token");
    auth_free(auth);
}

/* Every proper prefix of a good token is refused (and none trips a
 * sanitizer inside or outside libjwt's parser). */
static void test_truncated_tokens(void **state)
{
    struct auth *auth = new_verifier(AUTH_HS256);
    char *token = encode_hs("{\"sub\":\"alice\",\"channels\":[\"room:*\"]}");
    size_t length = strlen(token);
    for (size_t n = 0; n < length; n++) {
        char *prefix = malloc(n + 1);
        assert_non_null(prefix);
        memcpy(prefix, token, n);
        prefix[n] = '\0';
        struct auth_identity identity;
        const char *reason = NULL;
        if (auth_verify(auth, prefix, NOW, &identity, &reason) != -1)
            fail_msg("prefix of %zu bytes accepted", n);
        assert_null(identity.user);
        free(prefix);
    }
    free(token);
    auth_free(auth);
}

/* Builds the longest token of at most limit bytes by growing a padding
 * claim, and the next one up. */
static void tokens_around(size_t limit, char **under, char **over)
{
    *under = NULL;
    *over = NULL;
    char *claims = malloc(limit + 64);
    assert_non_null(claims);
    for (size_t pad = limit / 2; *over == NULL; pad++) {
        int n = snprintf(claims, limit + 64, "{\"sub\":\"alice\",\"pad\":\"%*s\"}", (int)pad, "");
        assert_true(n > 0 && (size_t)n < limit + 64);
        char *token = encode_hs(claims);
        if (strlen(token) <= limit) {
            free(*under);
            *under = token;
        } else {
            *over = token;
        }
    }
    free(claims);
    assert_non_null(*under);
}

static void test_token_length_limit(void **state)
{
    struct auth *auth = new_verifier(AUTH_HS256);
    char *under = NULL, *over = NULL;
    tokens_around(8192, &under, &over);
    assert_true(strlen(under) > 8180);
    accept_owned(auth, under);
    reject_owned(auth, over, "token too long");

    /* Length is judged before anything else. */
    char *junk = malloc(100001);
    assert_non_null(junk);
    memset(junk, '.', 100000);
    junk[100000] = '\0';
    reject_owned(auth, junk, "token too long");
    auth_free(auth);
}

/* ---- user names ---- */

static bool name_valid(const char *bytes, size_t length)
{
    /* An exact-size heap copy, so reading past length is caught. */
    char *copy = malloc(length > 0 ? length : 1);
    assert_non_null(copy);
    memcpy(copy, bytes, length);
    bool valid = auth_user_name_valid(copy, length);
    free(copy);
    return valid;
}

#define NAME_OK(s) assert_true(name_valid(s, sizeof(s) - 1))
#define NAME_BAD(s) assert_false(name_valid(s, sizeof(s) - 1))

static void test_user_name_valid(void **state)
{
    NAME_OK("alice");
    NAME_OK("a");
    NAME_OK("a b");
    NAME_OK("anon-0123abcd");
    NAME_OK("Zo\xc3\xab");
    NAME_OK("\xe5\x90\x8d\xe5\x89\x8d");
    NAME_OK("\xf0\x9f\x98\x80");
    NAME_OK("~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./");

    NAME_BAD("");
    NAME_BAD(" alice");
    NAME_BAD("alice ");
    NAME_BAD(" ");
    NAME_BAD("a\tb");
    NAME_BAD("a\nb");
    NAME_BAD("\x1f");
    NAME_BAD("a\x7f");
    NAME_BAD("a\0b");
    NAME_BAD("a\xc2\x80");    /* U+0080, a C1 control */
    NAME_BAD("a\xc2\x9f");    /* U+009F */
    NAME_OK("a\xc2\xa0z");    /* U+00A0 is not a control */
    NAME_BAD("\xff");
    NAME_BAD("\xc0\xaf");     /* overlong '/' */
    NAME_BAD("\xed\xa0\x80"); /* surrogate */
    NAME_BAD("ab\xe2\x82");   /* truncated */
    NAME_BAD("\x80");

    char name[66];
    memset(name, 'x', sizeof(name));
    assert_true(name_valid(name, 64));
    assert_false(name_valid(name, 65));
    /* 64 bytes of two-byte characters is fine; the limit is bytes. */
    for (size_t i = 0; i + 1 < sizeof(name); i += 2) {
        name[i] = (char)0xc3;
        name[i + 1] = (char)0xa9;
    }
    assert_true(name_valid(name, 64));
    assert_false(name_valid(name, 66));

    assert_false(auth_user_name_valid(NULL, 0));
    assert_false(auth_user_name_valid(NULL, 5));
    /* Only length bytes count, not the string's terminator. */
    assert_true(auth_user_name_valid("alice \x01", 5));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_rejects_empty_secret),
        cmocka_unit_test(test_new_rejects_unreadable_pem),
        cmocka_unit_test(test_new_rejects_wrong_key_type),
        cmocka_unit_test(test_new_tolerates_missing_error_buffer),
        cmocka_unit_test(test_new_copies_key),
        cmocka_unit_test(test_hs256_accepts),
        cmocka_unit_test(test_hs256_accepts_token_without_typ),
        cmocka_unit_test(test_rs256_accepts),
        cmocka_unit_test(test_es256_accepts),
        cmocka_unit_test(test_wrong_secret),
        cmocka_unit_test(test_wrong_public_key),
        cmocka_unit_test(test_tampered_tokens),
        cmocka_unit_test(test_hs256_mac_compare),
        cmocka_unit_test(test_alg_none_rejected),
        cmocka_unit_test(test_alg_confusion_rejected),
        cmocka_unit_test(test_crit_header_rejected),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_not_before),
        cmocka_unit_test(test_time_claims_must_be_numbers),
        cmocka_unit_test(test_sub),
        cmocka_unit_test(test_channels_claim),
        cmocka_unit_test(test_channels_claim_invalid),
        cmocka_unit_test(test_malformed_tokens),
        cmocka_unit_test(test_truncated_tokens),
        cmocka_unit_test(test_token_length_limit),
        cmocka_unit_test(test_user_name_valid),
    };
    return cmocka_run_group_tests(tests, keys_setup, keys_teardown);
}
