/* fuzz_config — the configuration loader on arbitrary text.
 *
 * The input (made NUL-terminated; libconfig stops at the first NUL anyway)
 * is parsed with config_parse as "fuzz.conf" relative to /tmp. Checked: a
 * failure writes a message starting with the file name; a success has at
 * least one listener, values inside their documented ranges, and answers
 * config_channel_rule; retain/release balance. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "fuzz_config: check failed at line %d: %s\n", __LINE__, #cond); \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

static void check_config(const struct config *config)
{
    CHECK(config->refcount == 1);
    CHECK(config->listener_count >= 1 && config->listeners != NULL);
    for (size_t i = 0; i < config->listener_count; i++) {
        const struct listen_config *l = &config->listeners[i];
        CHECK((l->address != NULL) != (l->path != NULL));
        if (l->address != NULL)
            CHECK(l->port >= 1 && l->port <= 65535);
        if (l->path != NULL)
            CHECK(l->path[0] == '/' && l->mode <= 0777);
        if (l->tls != NULL)
            CHECK(l->tls->cert_file != NULL && l->tls->key_file != NULL);
    }
    const struct websocket_config *ws = &config->websocket;
    CHECK(ws->max_message_size >= 1 && ws->max_message_size <= (UINT64_C(1) << 31));
    CHECK(ws->compression.level >= 0 && ws->compression.level <= 9);
    CHECK(ws->compression.memory_level >= 1 && ws->compression.memory_level <= 9);
    CHECK(ws->compression.max_window_bits >= 9 && ws->compression.max_window_bits <= 15);
    for (size_t i = 0; i < ws->allowed_origin_count; i++)
        CHECK(ws->allowed_origins[i] != NULL);
    for (size_t i = 0; i < ws->subprotocol_count; i++)
        CHECK(ws->subprotocols[i] != NULL);
    CHECK(config->limits.request_head_max >= 1024 && config->limits.request_head_max <= 1048576);
    for (size_t i = 0; i < config->route_count; i++)
        CHECK(config->routes[i].path != NULL);
    for (size_t i = 0; i < config->channel_rule_count; i++)
        CHECK(config->channel_rules[i].match != NULL);
    if (config->http.static_root != NULL)
        CHECK(config->http.static_root[0] == '/');
    CHECK(config->shutdown_timeout >= 1 && config->shutdown_timeout <= 3600);

    const char *names[] = { "room:1", "", "a", "news" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        CHECK(config_channel_rule(config, names[i]) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';

    char error[CONFIG_ERROR_SIZE];
    memset(error, 'x', sizeof error);
    struct config *config = config_parse(text, "fuzz.conf", "/tmp", error, sizeof error);
    free(text);
    CHECK(memchr(error, '\0', sizeof error) != NULL);
    if (config == NULL) {
        CHECK(strncmp(error, "fuzz.conf", 9) == 0);
        return 0;
    }
    check_config(config);
    CHECK(config_retain(config) == config);
    config_release(config);
    config_release(config);
    return 0;
}
