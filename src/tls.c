/* tls — OpenSSL server contexts for TLS listeners. */
#include "tls.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/* The only application protocol spoken on a TLS port: the page, the API
 * and the WebSocket upgrade are all HTTP/1.1. */
static const unsigned char tls_alpn_http11[] = "http/1.1";
#define TLS_ALPN_HTTP11_LENGTH (sizeof(tls_alpn_http11) - 1)

/* Sessions are only resumed by the context that made them; the name is
 * needed because OpenSSL refuses to resume without one when client
 * certificates are verified. */
static const unsigned char tls_session_id_context[] = "wsbroker";

/* Longest method tls_looks_like_http accepts ("OPTIONS" is 7, "PROPFIND" 8). */
#define TLS_METHOD_MAX 20

struct tls_context {
    unsigned refcount;
    SSL_CTX *ssl_ctx;
};

/* ---- errors ---- */

/* OpenSSL's reason for the oldest queued error: the oldest is the cause
 * ("No such file or directory", "no start line"), later ones only say which
 * layer passed it on. System errors carry errno, which OpenSSL 3 has no
 * reason string for. */
static void tls_reason(char *out, size_t size)
{
    unsigned long code = ERR_peek_error();
    const char *reason = code != 0 ? ERR_reason_error_string(code) : NULL;

    if (code == 0)
        snprintf(out, size, "unknown error");
    else if (ERR_SYSTEM_ERROR(code))
        snprintf(out, size, "%s", strerror(ERR_GET_REASON(code)));
    else if (reason != NULL)
        snprintf(out, size, "%s", reason);
    else
        ERR_error_string_n(code, out, size);
    ERR_clear_error();
}

/* Writes "MESSAGE: REASON" with OpenSSL's reason; returns -1. */
__attribute__((format(printf, 3, 4)))
static int tls_fail(char *error, size_t error_size, const char *format, ...)
{
    char reason[TLS_ERROR_SIZE];
    tls_reason(reason, sizeof(reason));
    if (error == NULL || error_size == 0)
        return -1;
    va_list args;
    va_start(args, format);
    int n = vsnprintf(error, error_size, format, args);
    va_end(args);
    if (n >= 0 && (size_t)n < error_size)
        snprintf(error + n, error_size - (size_t)n, ": %s", reason);
    return -1;
}

/* A message of our own, with nothing from OpenSSL's queue; returns -1. */
__attribute__((format(printf, 3, 4)))
static int tls_fail_plain(char *error, size_t error_size, const char *format, ...)
{
    ERR_clear_error();
    if (error == NULL || error_size == 0)
        return -1;
    va_list args;
    va_start(args, format);
    vsnprintf(error, error_size, format, args);
    va_end(args);
    return -1;
}

/* ---- cipher lists ---- */

int tls_check_ciphers(const char *ciphers, char *error, size_t error_size)
{
    SSL_CTX *scratch = SSL_CTX_new(TLS_server_method());
    if (scratch == NULL)
        return tls_fail(error, error_size, "cannot create an SSL context");
    int result = 0;
    if (SSL_CTX_set_cipher_list(scratch, ciphers) != 1)
        result = tls_fail(error, error_size, "\"%s\" selects no cipher", ciphers);
    SSL_CTX_free(scratch);
    return result;
}

/* One name of a ciphersuites list, tried alone: a list with an unknown
 * name still "succeeds" as long as some other name is known. */
static int tls_check_suite(SSL_CTX *scratch, const char *name, size_t length, char *error,
                           size_t error_size)
{
    char buffer[128];

    if (length == 0)
        return tls_fail_plain(error, error_size, "empty name in the list");
    if (length < sizeof(buffer)) {
        memcpy(buffer, name, length);
        buffer[length] = '\0';
        if (SSL_CTX_set_ciphersuites(scratch, buffer) == 1)
            return 0;
    }
    return tls_fail_plain(error, error_size, "unknown TLS 1.3 ciphersuite \"%.*s\"", (int)length,
                          name);
}

int tls_check_ciphersuites(const char *ciphersuites, char *error, size_t error_size)
{
    if (ciphersuites[0] == '\0')
        return 0;   /* no TLS 1.3 suite: TLS 1.3 is off */
    SSL_CTX *scratch = SSL_CTX_new(TLS_server_method());
    if (scratch == NULL)
        return tls_fail(error, error_size, "cannot create an SSL context");
    const char *p = ciphersuites;
    int result = 0;
    while (result == 0) {
        size_t length = strcspn(p, ":");
        result = tls_check_suite(scratch, p, length, error, error_size);
        if (p[length] == '\0')
            break;
        p += length + 1;
    }
    if (result == 0 && SSL_CTX_set_ciphersuites(scratch, ciphersuites) != 1)
        result = tls_fail(error, error_size, "\"%s\" is not a ciphersuite list", ciphersuites);
    SSL_CTX_free(scratch);
    return result;
}

/* ---- ALPN ---- */

int tls_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *out_length,
                    const unsigned char *in, unsigned int in_length, void *arg)
{
    /* in is the client's list: length-prefixed names, back to back */
    for (unsigned int i = 0; i < in_length;) {
        unsigned int length = in[i];
        if (length == 0 || length > in_length - i - 1)
            break;   /* malformed: OpenSSL checks, but never read past it */
        if (length == TLS_ALPN_HTTP11_LENGTH &&
            memcmp(in + i + 1, tls_alpn_http11, TLS_ALPN_HTTP11_LENGTH) == 0) {
            *out = in + i + 1;
            *out_length = (unsigned char)length;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + length;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* ---- contexts ---- */

/* An encrypted key would make OpenSSL's default callback prompt on the
 * terminal, stalling a daemon; no passphrase is ever given instead, so the
 * load fails with a message. userdata, when set, is a bool noting that a
 * passphrase was asked for. */
static int tls_no_passphrase(char *buffer, int size, int rwflag, void *userdata)
{
    if (userdata != NULL)
        *(bool *)userdata = true;
    return -1;
}

static int tls_set_protocol(SSL_CTX *ctx, const struct tls_config *config, char *error,
                            size_t error_size)
{
    /* 0 would mean "the lowest OpenSSL supports": fail closed instead */
    if (config->min_version != TLS1_2_VERSION && config->min_version != TLS1_3_VERSION)
        return tls_fail_plain(error, error_size, "minimum version must be TLS 1.2 or TLS 1.3");
    if (SSL_CTX_set_min_proto_version(ctx, config->min_version) != 1)
        return tls_fail(error, error_size, "cannot set the minimum TLS version");
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* idle connections give their buffers back: many stay open for hours */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(ctx, tls_no_passphrase);
    if (config->ciphers != NULL && SSL_CTX_set_cipher_list(ctx, config->ciphers) != 1)
        return tls_fail(error, error_size, "cipher list \"%s\" selects no cipher",
                        config->ciphers);
    if (config->ciphersuites != NULL && SSL_CTX_set_ciphersuites(ctx, config->ciphersuites) != 1)
        return tls_fail(error, error_size, "bad ciphersuites \"%s\"", config->ciphersuites);
    if (SSL_CTX_set_session_id_context(ctx, tls_session_id_context,
                                       sizeof(tls_session_id_context) - 1) != 1)
        return tls_fail(error, error_size, "cannot set the session id context");
    SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_select, NULL);
    return 0;
}

static EVP_PKEY *tls_read_key(const char *file, char *error, size_t error_size)
{
    BIO *bio = BIO_new_file(file, "r");
    if (bio == NULL) {
        tls_fail(error, error_size, "cannot load private key %s", file);
        return NULL;
    }
    bool encrypted = false;
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, tls_no_passphrase, &encrypted);
    BIO_free(bio);
    if (key != NULL)
        return key;
    /* OpenSSL's own reasons here ("unsupported", "interrupted or
     * cancelled") do not say what is wrong with the file */
    char reason[TLS_ERROR_SIZE];
    tls_reason(reason, sizeof(reason));
    if (encrypted)
        tls_fail_plain(error, error_size, "cannot load private key %s: it is encrypted; "
                       "only unencrypted keys can be loaded unattended", file);
    else
        tls_fail_plain(error, error_size, "cannot load private key %s: no PEM private key in "
                       "it (%s)", file, reason);
    return NULL;
}

/* The key is checked against the certificate before it is installed, so a
 * mismatch is told apart from an unreadable or unusable key. */
static int tls_set_identity(SSL_CTX *ctx, const struct tls_config *config, char *error,
                            size_t error_size)
{
    if (config->cert_file == NULL || config->key_file == NULL)
        return tls_fail_plain(error, error_size, "certificate and key files are required");
    if (SSL_CTX_use_certificate_chain_file(ctx, config->cert_file) != 1)
        return tls_fail(error, error_size, "cannot load certificate chain %s", config->cert_file);
    EVP_PKEY *key = tls_read_key(config->key_file, error, error_size);
    if (key == NULL)
        return -1;
    X509 *certificate = SSL_CTX_get0_certificate(ctx);
    int result = 0;
    if (certificate == NULL || X509_check_private_key(certificate, key) != 1)
        result = tls_fail_plain(error, error_size, "certificate and key do not match");
    else if (SSL_CTX_use_PrivateKey(ctx, key) != 1)
        result = tls_fail(error, error_size, "cannot use private key %s", config->key_file);
    else if (SSL_CTX_check_private_key(ctx) != 1)
        result = tls_fail_plain(error, error_size, "certificate and key do not match");
    EVP_PKEY_free(key);
    return result;
}

static int tls_set_client_verification(SSL_CTX *ctx, const struct tls_config *config,
                                       char *error, size_t error_size)
{
    if (!config->verify_client)
        return 0;
    if (config->ca_file == NULL)
        return tls_fail_plain(error, error_size, "verify_client needs a CA file");
    if (SSL_CTX_load_verify_locations(ctx, config->ca_file, NULL) != 1)
        return tls_fail(error, error_size, "cannot load CA file %s", config->ca_file);
    /* the names sent in the CertificateRequest let a browser pick the
     * right client certificate */
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(config->ca_file);
    if (names == NULL)
        return tls_fail(error, error_size, "no CA certificate in %s", config->ca_file);
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return 0;
}

struct tls_context *tls_context_new(const struct tls_config *config, char *error,
                                    size_t error_size)
{
    if (error != NULL && error_size > 0)
        error[0] = '\0';
    ERR_clear_error();   /* reasons reported below must be this call's */
    if (config == NULL) {
        tls_fail_plain(error, error_size, "no TLS configuration");
        return NULL;
    }
    struct tls_context *context = calloc(1, sizeof(*context));
    if (context == NULL) {
        tls_fail_plain(error, error_size, "out of memory");
        return NULL;
    }
    context->refcount = 1;
    context->ssl_ctx = SSL_CTX_new(TLS_server_method());
    if (context->ssl_ctx == NULL) {
        tls_fail(error, error_size, "cannot create an SSL context");
        free(context);
        return NULL;
    }
    if (tls_set_protocol(context->ssl_ctx, config, error, error_size) != 0 ||
        tls_set_identity(context->ssl_ctx, config, error, error_size) != 0 ||
        tls_set_client_verification(context->ssl_ctx, config, error, error_size) != 0) {
        tls_context_release(context);
        return NULL;
    }
    return context;
}

struct tls_context *tls_context_retain(struct tls_context *context)
{
    /* atomic: worker threads may hold contexts as they hold configs */
    if (context != NULL)
        __atomic_add_fetch(&context->refcount, 1, __ATOMIC_RELAXED);
    return context;
}

void tls_context_release(struct tls_context *context)
{
    if (context == NULL || __atomic_sub_fetch(&context->refcount, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    SSL_CTX_free(context->ssl_ctx);
    free(context);
}

SSL_CTX *tls_context_ssl_ctx(const struct tls_context *context)
{
    return context->ssl_ctx;
}

SSL *tls_context_new_ssl(struct tls_context *context)
{
    SSL *ssl = SSL_new(context->ssl_ctx);
    if (ssl == NULL) {
        ERR_clear_error();   /* the next connection must not see this one's error */
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

/* ---- plain HTTP on a TLS port ---- */

static bool tls_is_upper(uint8_t c)
{
    return c >= 'A' && c <= 'Z';
}

bool tls_looks_like_http(const uint8_t *data, size_t length)
{
    if (data == NULL || length == 0 || !tls_is_upper(data[0]))
        return false;
    for (size_t i = 1; i < length; i++) {
        if (data[i] == ' ')
            return true;
        if (!tls_is_upper(data[i]) || i == TLS_METHOD_MAX)
            return false;   /* a 21st letter: no method is that long */
    }
    return true;   /* letters so far: no TLS record starts like that */
}
