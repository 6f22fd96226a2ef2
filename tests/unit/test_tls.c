/* Unit tests for the tls module: building server contexts from a tls
 * group (certificates generated at test time), every way that fails,
 * cipher list checks, the options a context carries, real handshakes over
 * memory BIOs (ALPN, minimum version, client certificates), reference
 * counting, and telling plain HTTP from a TLS record. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "tls.h"

/* ---- fixtures: keys and self-signed certificates in a temporary directory ---- */

struct pki {
    char directory[64];
    char cert[128];          /* server certificate, key "key" */
    char key[128];
    char other_key[128];     /* an RSA key of no certificate */
    char ec_key[128];        /* a P-256 key: another type */
    char encrypted_key[128]; /* "key", encrypted with a passphrase */
    char garbage[128];       /* no PEM at all */
    char client_cert[128];   /* client certificate, its own CA */
    char client_key[128];
};

static EVP_PKEY *rsa_key(void)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    assert_non_null(key);
    return key;
}

static X509 *self_signed(EVP_PKEY *key, const char *common_name)
{
    X509 *certificate = X509_new();
    assert_non_null(certificate);
    assert_int_equal(X509_set_version(certificate, 2), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(certificate), 1), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(certificate), -3600));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(certificate), 86400));
    assert_int_equal(X509_set_pubkey(certificate, key), 1);
    X509_NAME *name = X509_get_subject_name(certificate);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                (const unsigned char *)common_name, -1, -1, 0),
                     1);
    assert_int_equal(X509_set_issuer_name(certificate, name), 1);
    assert_true(X509_sign(certificate, key, EVP_sha256()) > 0);
    return certificate;
}

static void pki_path(char *out, const struct pki *pki, const char *name)
{
    snprintf(out, 128, "%s/%s", pki->directory, name);
}

static void write_key(const char *path, EVP_PKEY *key, const char *passphrase)
{
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    if (passphrase == NULL)
        assert_int_equal(PEM_write_PrivateKey(file, key, NULL, NULL, 0, NULL, NULL), 1);
    else
        assert_int_equal(PEM_write_PrivateKey(file, key, EVP_aes_128_cbc(),
                                              (const unsigned char *)passphrase,
                                              (int)strlen(passphrase), NULL, NULL),
                         1);
    assert_int_equal(fclose(file), 0);
}

static void write_certificate(const char *path, X509 *certificate)
{
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    assert_int_equal(PEM_write_X509(file, certificate), 1);
    assert_int_equal(fclose(file), 0);
}

static void write_text(const char *path, const char *text)
{
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    assert_int_equal(fputs(text, file) >= 0, 1);
    assert_int_equal(fclose(file), 0);
}

static int pki_setup(void **state)
{
    struct pki *pki = calloc(1, sizeof(*pki));
    assert_non_null(pki);
    strcpy(pki->directory, "/tmp/wsbroker-tls-XXXXXX");
    assert_non_null(mkdtemp(pki->directory));
    pki_path(pki->cert, pki, "cert.pem");
    pki_path(pki->key, pki, "key.pem");
    pki_path(pki->other_key, pki, "other.pem");
    pki_path(pki->ec_key, pki, "ec.pem");
    pki_path(pki->encrypted_key, pki, "encrypted.pem");
    pki_path(pki->garbage, pki, "garbage.pem");
    pki_path(pki->client_cert, pki, "client-cert.pem");
    pki_path(pki->client_key, pki, "client-key.pem");

    EVP_PKEY *key = rsa_key();
    X509 *certificate = self_signed(key, "localhost");
    write_key(pki->key, key, NULL);
    write_key(pki->encrypted_key, key, "secret");
    write_certificate(pki->cert, certificate);
    X509_free(certificate);
    EVP_PKEY_free(key);

    key = rsa_key();
    write_key(pki->other_key, key, NULL);
    EVP_PKEY_free(key);
    key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(key);
    write_key(pki->ec_key, key, NULL);
    certificate = self_signed(key, "client");
    write_key(pki->client_key, key, NULL);
    write_certificate(pki->client_cert, certificate);
    X509_free(certificate);
    EVP_PKEY_free(key);
    write_text(pki->garbage, "not a PEM file\n");
    *state = pki;
    return 0;
}

static int pki_teardown(void **state)
{
    struct pki *pki = *state;
    const char *files[] = { pki->cert, pki->key, pki->other_key, pki->ec_key,
                            pki->encrypted_key, pki->garbage, pki->client_cert, pki->client_key };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        assert_int_equal(unlink(files[i]), 0);
    assert_int_equal(rmdir(pki->directory), 0);
    free(pki);
    return 0;
}

/* The defaults config.c gives a tls group with only cert and key. */
static struct tls_config tls_config_of(const struct pki *pki)
{
    struct tls_config config = {
        .cert_file = (char *)pki->cert,
        .key_file = (char *)pki->key,
        .min_version = TLS1_2_VERSION,
    };
    return config;
}

static struct tls_context *context_ok(const struct tls_config *config)
{
    char error[TLS_ERROR_SIZE];
    struct tls_context *context = tls_context_new(config, error, sizeof(error));
    if (context == NULL)
        fail_msg("rejected: %s", error);
    assert_int_equal(ERR_peek_error(), 0);
    return context;
}

/* Exact message, or with prefix_only its start and some reason after it. */
static void context_fails(const struct tls_config *config, const char *expected, bool prefix_only)
{
    char error[TLS_ERROR_SIZE];
    struct tls_context *context = tls_context_new(config, error, sizeof(error));
    if (context != NULL) {
        tls_context_release(context);
        fail_msg("accepted, wanted \"%s\"", expected);
    }
    assert_int_equal(ERR_peek_error(), 0);   /* the queue is left clean */
    if (!prefix_only)
        assert_string_equal(error, expected);
    else if (strncmp(error, expected, strlen(expected)) != 0 || strlen(error) <= strlen(expected))
        fail_msg("\"%s\" does not start with \"%s\" and a reason", error, expected);
}

/* ---- contexts ---- */

static void test_context_defaults(void **state)
{
    const struct pki *pki = *state;
    struct tls_config config = tls_config_of(pki);
    struct tls_context *context = context_ok(&config);
    SSL_CTX *ctx = tls_context_ssl_ctx(context);

    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
    uint64_t options = SSL_CTX_get_options(ctx);
    assert_true((options & SSL_OP_NO_RENEGOTIATION) != 0);
    assert_true((options & SSL_OP_NO_COMPRESSION) != 0);
    assert_true((options & SSL_OP_CIPHER_SERVER_PREFERENCE) != 0);
    assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_NONE);
    assert_non_null(SSL_CTX_get0_certificate(ctx));
    assert_non_null(SSL_CTX_get0_privatekey(ctx));
    tls_context_release(context);
}

static void test_context_min_version(void **state)
{
    const struct pki *pki = *state;
    struct tls_config config = tls_config_of(pki);
    config.min_version = TLS1_3_VERSION;
    struct tls_context *context = context_ok(&config);
    assert_int_equal(SSL_CTX_get_min_proto_version(tls_context_ssl_ctx(context)), TLS1_3_VERSION);
    tls_context_release(context);

    /* 0 would let OpenSSL pick its lowest version: refused, as are others */
    const int bad[] = { 0, TLS1_VERSION, TLS1_1_VERSION, 0x0305 };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        config.min_version = bad[i];
        context_fails(&config, "minimum version must be TLS 1.2 or TLS 1.3", false);
    }
}

static void test_context_ciphers(void **state)
{
    const struct pki *pki = *state;
    struct tls_config config = tls_config_of(pki);
    config.ciphers = "ECDHE+AESGCM:!aNULL";
    config.ciphersuites = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
    struct tls_context *context = context_ok(&config);
    STACK_OF(SSL_CIPHER) *ciphers = SSL_CTX_get_ciphers(tls_context_ssl_ctx(context));
    bool aes128_suite = false, aes256_suite = false;
    for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); i++) {
        const char *name = SSL_CIPHER_get_name(sk_SSL_CIPHER_value(ciphers, i));
        aes128_suite |= strcmp(name, "TLS_AES_128_GCM_SHA256") == 0;
        aes256_suite |= strcmp(name, "TLS_AES_256_GCM_SHA384") == 0;
        assert_null(strstr(name, "CBC"));
    }
    assert_false(aes128_suite);
    assert_true(aes256_suite);
    tls_context_release(context);

    config.ciphersuites = NULL;
    config.ciphers = "NOTHING-KNOWN";
    context_fails(&config, "cipher list \"NOTHING-KNOWN\" selects no cipher: no cipher match",
                  false);
    config.ciphers = NULL;
    config.ciphersuites = "TLS_BOGUS";
    context_fails(&config, "bad ciphersuites \"TLS_BOGUS\": no cipher match", false);
}

static void test_context_file_errors(void **state)
{
    const struct pki *pki = *state;
    struct tls_config config = tls_config_of(pki);
    char missing[160];
    snprintf(missing, sizeof(missing), "%s/missing.pem", pki->directory);
    char expected[TLS_ERROR_SIZE];

    config.cert_file = missing;
    snprintf(expected, sizeof(expected),
             "cannot load certificate chain %s: No such file or directory", missing);
    context_fails(&config, expected, false);
    config.cert_file = (char *)pki->garbage;
    snprintf(expected, sizeof(expected), "cannot load certificate chain %s: no start line",
             pki->garbage);
    context_fails(&config, expected, false);
    /* a private key is no certificate */
    config.cert_file = (char *)pki->key;
    snprintf(expected, sizeof(expected), "cannot load certificate chain %s", pki->key);
    context_fails(&config, expected, true);

    config = tls_config_of(pki);
    config.key_file = missing;
    snprintf(expected, sizeof(expected), "cannot load private key %s: No such file or directory",
             missing);
    context_fails(&config, expected, false);
    config.key_file = (char *)pki->garbage;
    snprintf(expected, sizeof(expected), "cannot load private key %s: no PEM private key in it (",
             pki->garbage);
    context_fails(&config, expected, true);
    /* an encrypted key fails at once instead of prompting on a terminal */
    config.key_file = (char *)pki->encrypted_key;
    snprintf(expected, sizeof(expected), "cannot load private key %s: it is encrypted; only "
             "unencrypted keys can be loaded unattended", pki->encrypted_key);
    context_fails(&config, expected, false);
    config.key_file = (char *)pki->cert;
    snprintf(expected, sizeof(expected), "cannot load private key %s: no PEM private key in it (",
             pki->cert);
    context_fails(&config, expected, true);

    config = tls_config_of(pki);
    config.cert_file = NULL;
    context_fails(&config, "certificate and key files are required", false);
    context_fails(NULL, "no TLS configuration", false);
}

static void test_context_mismatch(void **state)
{
    const struct pki *pki = *state;
    struct tls_config config = tls_config_of(pki);

    config.key_file = (char *)pki->other_key;
    context_fails(&config, "certificate and key do not match", false);
    config.key_file = (char *)pki->ec_key;   /* another type altogether */
    context_fails(&config, "certificate and key do not match", false);
    config.cert_file = (char *)pki->client_cert;
    config.key_file = (char *)pki->key;
    context_fails(&config, "certificate and key do not match", false);
    config.key_file = (char *)pki->client_key;   /* the EC pair matches */
    tls_context_release(context_ok(&config));
}

static void test_context_verify_client(void **state)
{
    const struct pki *pki = *state;
    struct tls_config config = tls_config_of(pki);
    config.verify_client = true;
    config.ca_file = (char *)pki->client_cert;
    struct tls_context *context = context_ok(&config);
    SSL_CTX *ctx = tls_context_ssl_ctx(context);
    assert_int_equal(SSL_CTX_get_verify_mode(ctx),
                     SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
    STACK_OF(X509_NAME) *names = SSL_CTX_get_client_CA_list(ctx);
    assert_int_equal(sk_X509_NAME_num(names), 1);
    tls_context_release(context);

    char expected[TLS_ERROR_SIZE];
    config.ca_file = (char *)pki->garbage;
    snprintf(expected, sizeof(expected), "cannot load CA file %s: no certificate or crl found",
             pki->garbage);
    context_fails(&config, expected, false);
    config.ca_file = (char *)pki->key;   /* a key holds no certificate */
    snprintf(expected, sizeof(expected), "cannot load CA file %s: no certificate or crl found",
             pki->key);
    context_fails(&config, expected, false);
    config.ca_file = NULL;
    context_fails(&config, "verify_client needs a CA file", false);
}

static void test_context_error_buffer(void **state)
{
    const struct pki *pki = *state;
    struct tls_config config = tls_config_of(pki);
    config.key_file = (char *)pki->other_key;
    char small[10];
    memset(small, 'x', sizeof(small));
    assert_null(tls_context_new(&config, small, sizeof(small)));
    assert_string_equal(small, "certifica");
    assert_null(tls_context_new(&config, NULL, 0));
    config.key_file = (char *)pki->garbage;
    assert_null(tls_context_new(&config, small, sizeof(small)));
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_context_refcount(void **state)
{
    const struct pki *pki = *state;
    struct tls_config config = tls_config_of(pki);
    struct tls_context *context = context_ok(&config);
    assert_ptr_equal(tls_context_retain(context), context);
    tls_context_release(context);
    assert_non_null(tls_context_ssl_ctx(context));   /* still held once */
    tls_context_release(context);   /* freed: ASan reports a leak or double free */
    tls_context_release(NULL);
    assert_null(tls_context_retain(NULL));
}

/* ---- cipher list checks ---- */

static void test_check_ciphers(void **state)
{
    char error[TLS_ERROR_SIZE];

    assert_int_equal(tls_check_ciphers("HIGH:!aNULL:!MD5", error, sizeof(error)), 0);
    assert_int_equal(tls_check_ciphers("ECDHE-RSA-AES128-GCM-SHA256", error, sizeof(error)), 0);
    assert_int_equal(tls_check_ciphers("NOPE:ECDHE-RSA-AES128-GCM-SHA256", error, sizeof(error)),
                     0);   /* OpenSSL's rule language skips unknown words */
    assert_int_equal(tls_check_ciphers("NOPE", error, sizeof(error)), -1);
    assert_string_equal(error, "\"NOPE\" selects no cipher: no cipher match");
    assert_int_equal(tls_check_ciphers("", error, sizeof(error)), -1);
    assert_string_equal(error, "\"\" selects no cipher: no cipher match");
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_check_ciphersuites(void **state)
{
    char error[TLS_ERROR_SIZE];

    assert_int_equal(tls_check_ciphersuites("TLS_AES_128_GCM_SHA256", error, sizeof(error)), 0);
    assert_int_equal(tls_check_ciphersuites("TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256",
                                            error, sizeof(error)),
                     0);
    assert_int_equal(tls_check_ciphersuites("", error, sizeof(error)), 0);   /* TLS 1.3 off */

    static const struct {
        const char *list;
        const char *error;
    } bad[] = {
        { "TLS_AES_128_GCM_SHA256:TLS_TYPO", "unknown TLS 1.3 ciphersuite \"TLS_TYPO\"" },
        { "BOGUS", "unknown TLS 1.3 ciphersuite \"BOGUS\"" },
        { "ECDHE-RSA-AES128-GCM-SHA256", "unknown TLS 1.3 ciphersuite "
                                          "\"ECDHE-RSA-AES128-GCM-SHA256\"" },
        { "TLS_AES_128_GCM_SHA256:", "empty name in the list" },
        { ":TLS_AES_128_GCM_SHA256", "empty name in the list" },
        { "TLS_AES_128_GCM_SHA256::TLS_AES_256_GCM_SHA384", "empty name in the list" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(tls_check_ciphersuites(bad[i].list, error, sizeof(error)), -1);
        assert_string_equal(error, bad[i].error);
    }
    char long_name[300];
    memset(long_name, 'A', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    assert_int_equal(tls_check_ciphersuites(long_name, error, sizeof(error)), -1);
    assert_int_equal(strncmp(error, "unknown TLS 1.3 ciphersuite \"AAA", 32), 0);
    assert_int_equal(ERR_peek_error(), 0);
}

/* ---- ALPN ---- */

static int alpn(const char *offer, size_t offer_length, const unsigned char **out,
                unsigned char *out_length)
{
    return tls_alpn_select(NULL, out, out_length, (const unsigned char *)offer,
                           (unsigned int)offer_length, NULL);
}

#define OFFER(literal) (literal), sizeof(literal) - 1

static void test_alpn_select(void **state)
{
    const unsigned char *out = NULL;
    unsigned char out_length = 0;

    static const char both[] = "\x02h2\x08http/1.1";
    assert_int_equal(alpn(OFFER(both), &out, &out_length), SSL_TLSEXT_ERR_OK);
    assert_int_equal(out_length, 8);
    assert_memory_equal(out, "http/1.1", 8);
    assert_ptr_equal(out, (const unsigned char *)both + 4);   /* points into the offer */

    assert_int_equal(alpn(OFFER("\x08http/1.1"), &out, &out_length), SSL_TLSEXT_ERR_OK);
    assert_int_equal(alpn(OFFER("\x08http/1.1\x02h2"), &out, &out_length), SSL_TLSEXT_ERR_OK);
    assert_memory_equal(out, "http/1.1", 8);

    out = NULL;
    assert_int_equal(alpn(OFFER("\x02h2"), &out, &out_length), SSL_TLSEXT_ERR_NOACK);
    assert_int_equal(alpn(OFFER("\x08http/1.0\x02h3"), &out, &out_length), SSL_TLSEXT_ERR_NOACK);
    assert_int_equal(alpn(OFFER("\x08HTTP/1.1"), &out, &out_length), SSL_TLSEXT_ERR_NOACK);
    assert_int_equal(alpn(OFFER("\x09http/1.1x"), &out, &out_length), SSL_TLSEXT_ERR_NOACK);
    assert_int_equal(alpn(OFFER("\x07http/1.1"), &out, &out_length), SSL_TLSEXT_ERR_NOACK);
    assert_int_equal(alpn("", 0, &out, &out_length), SSL_TLSEXT_ERR_NOACK);
    /* malformed: a length running past the end, a zero length */
    assert_int_equal(alpn(OFFER("\x09http/1.1"), &out, &out_length), SSL_TLSEXT_ERR_NOACK);
    assert_int_equal(alpn(OFFER("\x00\x08http/1.1"), &out, &out_length), SSL_TLSEXT_ERR_NOACK);
    assert_int_equal(alpn(OFFER("\x02h2\x30http/1.1"), &out, &out_length), SSL_TLSEXT_ERR_NOACK);
    assert_null(out);
}

/* ---- handshakes over memory ---- */

struct client_options {
    const unsigned char *alpn;   /* wire format, NULL for none */
    unsigned alpn_length;
    int max_version;             /* 0: any */
    const char *cert;            /* client certificate and key, or NULL */
    const char *key;
};

/* Runs both sides of a handshake through a BIO pair. Returns true when
 * both completed; *client_out keeps the client for inspection. */
static bool handshake(SSL *server, const struct client_options *options, SSL **client_out)
{
    SSL_CTX *client_ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(client_ctx);
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);   /* self-signed server */
    if (options->max_version != 0)
        assert_int_equal(SSL_CTX_set_max_proto_version(client_ctx, options->max_version), 1);
    if (options->alpn != NULL)
        assert_int_equal(SSL_CTX_set_alpn_protos(client_ctx, options->alpn, options->alpn_length),
                         0);
    if (options->cert != NULL) {
        assert_int_equal(SSL_CTX_use_certificate_chain_file(client_ctx, options->cert), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(client_ctx, options->key, SSL_FILETYPE_PEM),
                         1);
    }
    SSL *client = SSL_new(client_ctx);
    assert_non_null(client);
    SSL_CTX_free(client_ctx);   /* the SSL holds its own reference */
    SSL_set_connect_state(client);

    BIO *client_bio, *server_bio;
    assert_int_equal(BIO_new_bio_pair(&client_bio, 0, &server_bio, 0), 1);
    SSL_set_bio(client, client_bio, client_bio);
    SSL_set_bio(server, server_bio, server_bio);

    bool client_done = false, server_done = false, failed = false;
    for (int round = 0; round < 20 && !failed && !(client_done && server_done); round++) {
        int result = SSL_do_handshake(client);
        client_done = result == 1;
        failed |= result <= 0 && SSL_get_error(client, result) != SSL_ERROR_WANT_READ;
        result = SSL_do_handshake(server);
        server_done = result == 1;
        failed |= result <= 0 && SSL_get_error(server, result) != SSL_ERROR_WANT_READ;
    }
    /* TLS 1.3 client certificates are only judged once the server has read
     * the client's Finished: a read on the client then sees the alert */
    if (!failed && client_done && server_done) {
        char byte;
        int result = SSL_read(client, &byte, 1);
        failed = result <= 0 && SSL_get_error(client, result) != SSL_ERROR_WANT_READ;
    }
    ERR_clear_error();
    *client_out = client;
    return client_done && server_done && !failed;
}

static const unsigned char alpn_h2_http11[] = "\x02h2\x08http/1.1";
static const unsigned char alpn_h2[] = "\x02h2";

static void test_handshake_alpn(void **state)
{
    const struct pki *pki = *state;
    struct tls_config config = tls_config_of(pki);
    struct tls_context *context = context_ok(&config);
    const unsigned char *selected;
    unsigned selected_length;
    SSL *client;

    SSL *server = tls_context_new_ssl(context);
    assert_non_null(server);
    assert_int_equal(SSL_is_server(server), 1);
    struct client_options options = { alpn_h2_http11, sizeof(alpn_h2_http11) - 1, 0, NULL, NULL };
    assert_true(handshake(server, &options, &client));
    SSL_get0_alpn_selected(client, &selected, &selected_length);
    assert_int_equal(selected_length, 8);
    assert_memory_equal(selected, "http/1.1", 8);
    assert_int_equal(SSL_version(client), TLS1_3_VERSION);
    SSL_free(client);
    SSL_free(server);

    /* only h2 offered: the handshake goes on without ALPN */
    server = tls_context_new_ssl(context);
    assert_non_null(server);
    options = (struct client_options){ alpn_h2, sizeof(alpn_h2) - 1, 0, NULL, NULL };
    assert_true(handshake(server, &options, &client));
    SSL_get0_alpn_selected(client, &selected, &selected_length);
    assert_int_equal(selected_length, 0);
    SSL_free(client);
    SSL_free(server);

    /* no ALPN at all */
    server = tls_context_new_ssl(context);
    assert_non_null(server);
    options = (struct client_options){ NULL, 0, 0, NULL, NULL };
    assert_true(handshake(server, &options, &client));
    SSL_free(client);
    SSL_free(server);
    tls_context_release(context);
}

static void test_handshake_min_version(void **state)
{
    const struct pki *pki = *state;
    struct tls_config config = tls_config_of(pki);
    struct tls_context *context = context_ok(&config);
    SSL *client;

    SSL *server = tls_context_new_ssl(context);
    struct client_options options = { NULL, 0, TLS1_2_VERSION, NULL, NULL };
    assert_true(handshake(server, &options, &client));
    assert_int_equal(SSL_version(client), TLS1_2_VERSION);
    SSL_free(client);
    SSL_free(server);

    server = tls_context_new_ssl(context);
    options.max_version = TLS1_1_VERSION;
    assert_false(handshake(server, &options, &client));
    SSL_free(client);
    SSL_free(server);
    tls_context_release(context);

    config.min_version = TLS1_3_VERSION;
    context = context_ok(&config);
    server = tls_context_new_ssl(context);
    options.max_version = TLS1_2_VERSION;
    assert_false(handshake(server, &options, &client));
    SSL_free(client);
    SSL_free(server);
    tls_context_release(context);
}

static void test_handshake_client_certificate(void **state)
{
    const struct pki *pki = *state;
    struct tls_config config = tls_config_of(pki);
    config.verify_client = true;
    config.ca_file = (char *)pki->client_cert;
    struct tls_context *context = context_ok(&config);
    SSL *client;

    SSL *server = tls_context_new_ssl(context);
    struct client_options options = { NULL, 0, 0, pki->client_cert, pki->client_key };
    assert_true(handshake(server, &options, &client));
    X509 *peer = SSL_get1_peer_certificate(server);
    assert_non_null(peer);
    X509_free(peer);
    SSL_free(client);
    SSL_free(server);

    /* no certificate, on TLS 1.3 and on TLS 1.2 */
    for (int i = 0; i < 2; i++) {
        server = tls_context_new_ssl(context);
        options = (struct client_options){ NULL, 0, i == 0 ? 0 : TLS1_2_VERSION, NULL, NULL };
        assert_false(handshake(server, &options, &client));
        SSL_free(client);
        SSL_free(server);
    }
    /* a certificate no listed CA signed */
    server = tls_context_new_ssl(context);
    options = (struct client_options){ NULL, 0, 0, pki->cert, pki->key };
    assert_false(handshake(server, &options, &client));
    SSL_free(client);
    SSL_free(server);
    tls_context_release(context);
}

/* A connection keeps working on the context it started with after the
 * listener has let go of it (SIGHUP swapped in another). */
static void test_ssl_outlives_context(void **state)
{
    const struct pki *pki = *state;
    struct tls_config config = tls_config_of(pki);
    struct tls_context *context = context_ok(&config);
    SSL *server = tls_context_new_ssl(context);
    assert_non_null(server);
    tls_context_release(context);

    SSL *client;
    struct client_options options = { alpn_h2_http11, sizeof(alpn_h2_http11) - 1, 0, NULL, NULL };
    assert_true(handshake(server, &options, &client));
    SSL_free(client);
    SSL_free(server);
}

/* ---- plain HTTP on a TLS port ---- */

static bool looks(const char *text)
{
    return tls_looks_like_http((const uint8_t *)text, strlen(text));
}

static void test_looks_like_http(void **state)
{
    static const char *const http[] = {
        "GET / HTTP/1.1\r\n", "POST /api/publish HTTP/1.1\r\n", "HEAD / HTTP/1.0\r\n",
        "PUT ", "DELETE ", "OPTIONS * HTTP/1.1", "PATCH ", "CONNECT a:443 HTTP/1.1",
        "TRACE ", "PRI * HTTP/2.0\r\n", "G", "GE", "GET", "GET ", "ABCDEFGHIJKLMNOPQRST ",
        "ABCDEFGHIJKLMNOPQRST",
    };
    for (size_t i = 0; i < sizeof(http) / sizeof(http[0]); i++) {
        if (!looks(http[i]))
            fail_msg("\"%s\" is not taken for HTTP", http[i]);
    }
    static const char *const not_http[] = {
        "", " GET", "get / HTTP/1.1", "GET/ HTTP/1.1", "G\tET", "ABCDEFGHIJKLMNOPQRSTU ",
        "ABCDEFGHIJKLMNOPQRSTU", "GE1 ", "\r\nGET", "1GET ",
    };
    for (size_t i = 0; i < sizeof(not_http) / sizeof(not_http[0]); i++) {
        if (looks(not_http[i]))
            fail_msg("\"%s\" is taken for HTTP", not_http[i]);
    }
    /* TLS records: a ClientHello (TLS 1.0 record version as sent by
     * clients), TLS 1.2, an alert, and an SSLv2-style hello */
    static const uint8_t hello[] = { 0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc };
    static const uint8_t hello12[] = { 0x16, 0x03, 0x03, 0x00, 0x40 };
    static const uint8_t alert[] = { 0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28 };
    static const uint8_t sslv2[] = { 0x80, 0x2e, 0x01, 0x03, 0x01 };
    assert_false(tls_looks_like_http(hello, sizeof(hello)));
    assert_false(tls_looks_like_http(hello, 1));
    assert_false(tls_looks_like_http(hello12, sizeof(hello12)));
    assert_false(tls_looks_like_http(alert, sizeof(alert)));
    assert_false(tls_looks_like_http(sslv2, sizeof(sslv2)));
    assert_false(tls_looks_like_http(NULL, 0));
    assert_false(tls_looks_like_http((const uint8_t *)"GET ", 0));
    /* only the first length bytes count */
    assert_true(tls_looks_like_http((const uint8_t *)"GET\x16", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_context_defaults),
        cmocka_unit_test(test_context_min_version),
        cmocka_unit_test(test_context_ciphers),
        cmocka_unit_test(test_context_file_errors),
        cmocka_unit_test(test_context_mismatch),
        cmocka_unit_test(test_context_verify_client),
        cmocka_unit_test(test_context_error_buffer),
        cmocka_unit_test(test_context_refcount),
        cmocka_unit_test(test_check_ciphers),
        cmocka_unit_test(test_check_ciphersuites),
        cmocka_unit_test(test_alpn_select),
        cmocka_unit_test(test_handshake_alpn),
        cmocka_unit_test(test_handshake_min_version),
        cmocka_unit_test(test_handshake_client_certificate),
        cmocka_unit_test(test_ssl_outlives_context),
        cmocka_unit_test(test_looks_like_http),
    };
    return cmocka_run_group_tests(tests, pki_setup, pki_teardown);
}
