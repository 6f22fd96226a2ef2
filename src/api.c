#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "addrcount.h"
#include "cluster.h"
#include "config.h"
#include "conn.h"
#include "hub.h"
#include "memory.h"
#include "message.h"
#include "netaddr.h"
#include "route.h"
#include "server.h"
#include "worker.h"
#include "utf8.h"
#include "wsframe.h"

#define API_PREFIX "/api/"
#define API_PUBLISH_PREFIX "/api/publish/"
#define API_CHANNELS "/api/channels"
#define API_CONNECTIONS "/api/connections"
#define API_JSON "application/json"
#define API_TEXT "text/plain; charset=utf-8"

/* ------------------------------------------------------------ helpers */

static bool api_path_is(const struct api_request *request, const char *path)
{
    return request->path_length == strlen(path) &&
           memcmp(request->path, path, request->path_length) == 0;
}

static bool api_path_starts(const char *path, size_t length, const char *prefix)
{
    size_t prefix_length = strlen(prefix);
    return length >= prefix_length && memcmp(path, prefix, prefix_length) == 0;
}

static void api_text(struct api_response *response, int status, const char *text)
{
    response->status = status;
    response->content_type = API_TEXT;
    response->body = strdup(text);
    response->body_length = response->body != NULL ? strlen(text) : 0;
}

/* value is consumed. */
static void api_json(struct api_response *response, int status, json_t *value)
{
    char *text = value != NULL ? json_dumps(value, JSON_COMPACT) : NULL;
    json_decref(value);
    if (text == NULL) {
        api_text(response, 500, "out of memory\n");
        return;
    }
    response->status = status;
    response->content_type = API_JSON;
    response->body = text;
    response->body_length = strlen(text);
}

void api_refuse(struct api_response *response, int status, const char *text)
{
    memset(response, 0, sizeof(*response));
    api_json(response, status, json_pack("{s:s}", "error", text));
}

static void api_method_not_allowed(struct api_response *response, const char *allow)
{
    api_refuse(response, 405, "method not allowed");
    response->extra_headers = allow;
}

/* Compares digests, so neither the token's bytes nor its length show in
 * the time an answer takes. */
static bool api_token_matches(const char *expected, const char *given, size_t given_length)
{
    unsigned char a[SHA256_DIGEST_LENGTH];
    unsigned char b[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)expected, strlen(expected), a);
    SHA256((const unsigned char *)given, given_length, b);
    return CRYPTO_memcmp(a, b, sizeof(a)) == 0;
}

static bool api_authorized(const struct config *config, const struct http_request *http)
{
    const char *token;
    size_t length;
    return http_request_bearer(http, &token, &length) &&
           api_token_matches(config->http.api_token, token, length);
}

/* Decodes the channel at the end of the path; false when it is not a
 * valid channel name. */
static bool api_channel_from_path(const char *rest, size_t length, char *channel, size_t size)
{
    int decoded = http_percent_decode(rest, length, channel, size);
    return decoded > 0 && route_channel_name_valid(channel, (size_t)decoded);
}

/* ------------------------------------------------------------ /healthz, /metrics */

static void api_healthz(struct server *server, const struct api_request *request,
                        struct api_response *response)
{
    if (!http_request_method_is(request->http, "GET") && !http_request_method_is(request->http, "HEAD")) {
        api_method_not_allowed(response, "Allow: GET, HEAD\r\n");
        return;
    }
    /* A node cut off from its cluster takes no new clients: they would
     * miss what other nodes publish. */
    if (server_is_shutting_down(server))
        api_text(response, 503, "shutting down\n");
    else if (server->cluster != NULL && !cluster_is_up(server->cluster))
        api_text(response, 503, "cluster down: Redis unavailable\n");
    else if (server->cluster != NULL)
        api_text(response, 200, "ok\ncluster up\n");
    else
        api_text(response, 200, "ok\n");
}

static void api_metric(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP wsbroker_%s %s\n# TYPE wsbroker_%s %s\n", name, help, name, type);
}

/* Label values are route patterns: escape what the text format requires. */
static void api_label_value(FILE *out, const char *value)
{
    for (const char *p = value; *p != '\0'; p++) {
        if (*p == '\\' || *p == '"')
            fputc('\\', out);
        if (*p == '\n')
            fputs("\\n", out);
        else
            fputc(*p, out);
    }
}

static void api_metrics_routes(FILE *out, const struct stats *stats)
{
    api_metric(out, "connections_open", "gauge", "WebSocket connections open, by route.");
    for (size_t i = 0; i < stats->route_count; i++) {
        fputs("wsbroker_connections_open{route=\"", out);
        api_label_value(out, stats->routes[i].path);
        fprintf(out, "\"} %llu\n", (unsigned long long)stats->routes[i].open);
    }
    api_metric(out, "connections_total", "counter", "WebSocket connections opened, by route.");
    for (size_t i = 0; i < stats->route_count; i++) {
        fputs("wsbroker_connections_total{route=\"", out);
        api_label_value(out, stats->routes[i].path);
        fprintf(out, "\"} %llu\n", (unsigned long long)stats->routes[i].total);
    }
}

static void api_metrics_counter(FILE *out, const char *name, const char *type,
                                const char *help, unsigned long long value)
{
    api_metric(out, name, type, help);
    fprintf(out, "wsbroker_%s %llu\n", name, value);
}

/* What one worker reports, read on its own thread (worker_call_all). */
struct api_figures {
    struct stats stats;
    struct conn_memory memory;
};

static void api_collect_worker(struct worker *worker, void *arg)
{
    struct api_figures *mine = &((struct api_figures *)arg)[worker->index];
    (void)stats_merge(&mine->stats, &worker->stats);
    conn_memory_usage(worker, &mine->memory);
}

/* Every worker's figures summed into total; the per-worker ones are kept
 * in figures (worker_count of them) for the per-worker gauges. NULL when
 * out of memory. */
static struct api_figures *api_collect(struct worker *self, struct api_figures *total)
{
    unsigned count = self->server->worker_count;
    struct api_figures *figures = calloc(count, sizeof(*figures));
    if (figures == NULL)
        return NULL;
    worker_call_all(self, api_collect_worker, figures);
    memset(total, 0, sizeof(*total));
    for (unsigned i = 0; i < count; i++) {
        (void)stats_merge(&total->stats, &figures[i].stats);
        total->memory.connections += figures[i].memory.connections;
        total->memory.connection_bytes += figures[i].memory.connection_bytes;
        total->memory.queued_bytes += figures[i].memory.queued_bytes;
    }
    return figures;
}

static void api_free_figures(struct api_figures *figures, unsigned count)
{
    for (unsigned i = 0; figures != NULL && i < count; i++)
        stats_free(&figures[i].stats);
    free(figures);
}

static void api_metrics_workers(FILE *out, const struct api_figures *figures, unsigned count)
{
    api_metric(out, "worker_connections", "gauge",
               "Client connections of any kind, by worker thread.");
    for (unsigned i = 0; i < count; i++)
        fprintf(out, "wsbroker_worker_connections{worker=\"%u\"} %zu\n", i,
                figures[i].memory.connections);
    api_metric(out, "worker_deliveries_total", "counter",
               "Message frames queued to receivers, by worker thread.");
    for (unsigned i = 0; i < count; i++)
        fprintf(out, "wsbroker_worker_deliveries_total{worker=\"%u\"} %llu\n", i,
                (unsigned long long)figures[i].stats.deliveries);
}

static void api_metrics_memory(FILE *out, struct server *server, const struct config *config,
                               const struct api_figures *total, const struct hub_stats *hub)
{
    const struct conn_memory connections = total->memory;
    api_metrics_counter(out, "client_connections", "gauge",
                        "Client connections of any kind, closing ones included.",
                        connections.connections);
    api_metrics_counter(out, "client_addresses", "gauge",
                        "Client addresses (IPv6: /64 networks) with a connection.",
                        server_address_count(server));
    api_metrics_counter(out, "outbound_queued_bytes", "gauge",
                        "Bytes queued to clients and not yet written.", connections.queued_bytes);
    api_metric(out, "memory_bytes", "gauge",
               "Memory accounted to connections, subscriptions and channels (history included).");
    fprintf(out, "wsbroker_memory_bytes{area=\"connections\"} %llu\n",
            (unsigned long long)connections.connection_bytes);
    fprintf(out, "wsbroker_memory_bytes{area=\"subscriptions\"} %llu\n",
            (unsigned long long)total->stats.subscription_bytes);
    fprintf(out, "wsbroker_memory_bytes{area=\"channels\"} %llu\n",
            (unsigned long long)hub->channel_bytes);
    api_metrics_counter(out, "memory_heap_bytes", "gauge",
                        "Heap in use, every library included; what max_memory limits.",
                        memory_heap_in_use());
    api_metrics_counter(out, "memory_resident_bytes", "gauge", "Resident set size.",
                        memory_resident());
    api_metrics_counter(out, "memory_limit_bytes", "gauge", "limits.max_memory (0: no limit).",
                        config->limits.max_memory);
}

static void api_metrics_cluster(FILE *out, const struct cluster *cluster)
{
    struct cluster_stats stats;
    cluster_get_stats(cluster, &stats);
    api_metrics_counter(out, "cluster_up", "gauge", "1 while connected to the cluster's Redis.",
                        stats.up ? 1 : 0);
    api_metrics_counter(out, "cluster_reconnects_total", "counter",
                        "Connections to Redis made again after one was lost.", stats.reconnects);
    api_metric(out, "cluster_publish_failures_total", "counter",
               "Publishes refused or failed for want of Redis, by reason.");
    fprintf(out, "wsbroker_cluster_publish_failures_total{reason=\"unavailable\"} %llu\n",
            (unsigned long long)(stats.publish_failures - stats.publish_queue_full));
    fprintf(out, "wsbroker_cluster_publish_failures_total{reason=\"queue_full\"} %llu\n",
            (unsigned long long)stats.publish_queue_full);
    api_metrics_counter(out, "cluster_messages_received_total", "counter",
                        "Messages and presence events received from Redis.",
                        stats.messages_received);
    api_metric(out, "cluster_messages_dropped_total", "counter",
               "Messages from Redis not delivered, by reason.");
    fprintf(out, "wsbroker_cluster_messages_dropped_total{reason=\"no_subscribers\"} %llu\n",
            (unsigned long long)stats.dropped_unsubscribed);
    fprintf(out, "wsbroker_cluster_messages_dropped_total{reason=\"malformed\"} %llu\n",
            (unsigned long long)stats.dropped_malformed);
}

static void api_metrics_render(FILE *out, struct server *server, const struct config *config,
                               const struct api_figures *total)
{
    const struct stats *stats = &total->stats;
    struct hub_stats hub;
    hub_stats(server->hub, &hub);
    api_metrics_routes(out, stats);
    api_metrics_counter(out, "http_requests_total", "counter",
                        "HTTP requests answered without an upgrade.", stats->http_requests);
    api_metric(out, "handshakes_rejected_total", "counter", "Requests refused, by reason.");
    for (int reason = 0; reason < STATS_REJECT_COUNT; reason++)
        fprintf(out, "wsbroker_handshakes_rejected_total{reason=\"%s\"} %llu\n",
                stats_reject_name((enum stats_reject)reason),
                (unsigned long long)stats->rejected[reason]);
    api_metrics_counter(out, "messages_received_total", "counter",
                        "Data messages received from clients.", stats->messages_received);
    api_metrics_counter(out, "bytes_received_total", "counter",
                        "Payload bytes of data messages received from clients.",
                        stats->bytes_received);
    api_metrics_counter(out, "messages_published_total", "counter",
                        "Messages published to channels (WebSocket and API).",
                        stats->messages_published);
    api_metrics_counter(out, "deliveries_total", "counter",
                        "Message frames queued to receivers, replays included.",
                        stats->deliveries);
    api_metrics_counter(out, "bytes_sent_total", "counter", "Bytes of delivered message frames.",
                        stats->bytes_sent);
    api_metrics_counter(out, "slow_reader_drops_total", "counter",
                        "Connections dropped for falling behind outbound_queue_max.",
                        stats->slow_reader_drops);
    api_metrics_counter(out, "rate_limited_total", "counter",
                        "Connections closed for exceeding messages_per_second.",
                        stats->rate_limited);
    api_metrics_counter(out, "memory_refusals_total", "counter",
                        "Subscriptions and publishes refused at max_memory.",
                        stats->memory_refusals);
    api_metrics_counter(out, "channels", "gauge", "Channels that exist.", hub.channels);
    api_metrics_counter(out, "subscriptions", "gauge", "Subscriptions to channels.",
                        hub.subscriptions);
    api_metrics_counter(out, "history_messages", "gauge", "Messages held in channel history.",
                        hub.history_messages);
    api_metrics_memory(out, server, config, total, &hub);
    if (server->cluster != NULL)
        api_metrics_cluster(out, server->cluster);
}

static bool api_metrics_allowed(const struct config *config, const struct sockaddr *peer)
{
    /* A Unix socket peer without forwarding headers is a local process. */
    if (peer->sa_family == AF_UNIX)
        return true;
    for (size_t i = 0; i < config->http.metrics_allow_count; i++) {
        if (netaddr_range_contains(&config->http.metrics_allow[i], peer))
            return true;
    }
    return false;
}

static void api_metrics(struct worker *worker, const struct config *config,
                        const struct api_request *request, struct api_response *response)
{
    if (!http_request_method_is(request->http, "GET") && !http_request_method_is(request->http, "HEAD")) {
        api_method_not_allowed(response, "Allow: GET, HEAD\r\n");
        return;
    }
    if (request->peer == NULL || !api_metrics_allowed(config, request->peer)) {
        api_text(response, 403, "metrics are not available to this address\n");
        return;
    }
    char *text = NULL;
    size_t length = 0;
    struct api_figures total;
    struct api_figures *figures = api_collect(worker, &total);
    FILE *out = figures != NULL ? open_memstream(&text, &length) : NULL;
    if (out == NULL) {
        api_free_figures(figures, worker->server->worker_count);
        api_text(response, 500, "out of memory\n");
        return;
    }
    api_metrics_render(out, worker->server, config, &total);
    api_metrics_workers(out, figures, worker->server->worker_count);
    api_free_figures(figures, worker->server->worker_count);
    stats_free(&total.stats);
    if (fclose(out) != 0 || text == NULL) {
        free(text);
        api_text(response, 500, "out of memory\n");
        return;
    }
    response->status = 200;
    response->content_type = "text/plain; version=0.0.4; charset=utf-8";
    response->body = text;
    response->body_length = length;
}

/* ------------------------------------------------------------ /api/publish */

static bool api_is_json(const struct http_request *http)
{
    const struct http_header *type = http_request_header(http, "Content-Type");
    if (type == NULL)
        return false;
    size_t length = 0;
    while (length < type->value_length && type->value[length] != ';' && type->value[length] != ' ')
        length++;
    return http_equal_nocase(type->value, length, API_JSON, strlen(API_JSON));
}

static struct message *api_message_from_body(const struct api_request *request,
                                             const char *channel, const char **problem)
{
    const char *body = request->body != NULL ? request->body : "";
    if (!api_is_json(request->http)) {
        if (!utf8_is_valid((const uint8_t *)body, request->body_length)) {
            *problem = "body is not UTF-8 text";
            return NULL;
        }
        return message_new(MESSAGE_TEXT, channel, NULL, body, request->body_length);
    }
    json_error_t error;
    json_t *value = json_loadb(body, request->body_length, JSON_DECODE_ANY, &error);
    if (value == NULL) {
        *problem = "body is not valid JSON";
        return NULL;
    }
    char *compact = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(value);
    struct message *message =
        compact != NULL ? message_new(MESSAGE_JSON, channel, NULL, compact, strlen(compact)) : NULL;
    free(compact);
    return message;
}

static void api_cluster_published(struct worker *worker, void *owner, void *tag,
                                  const struct cluster_reply *reply)
{
    if (owner == NULL)
        return;
    struct api_response response = { 0 };
    if (reply->ok)
        api_json(&response, 202, json_pack("{s:I, s:s}", "seq", (json_int_t)reply->seq, "epoch",
                                           reply->epoch));
    else
        api_refuse(&response, 503, "cluster unavailable: publish failed");
    conn_api_answer(owner, &response);
    free(response.body);
}

/* Cluster mode: answered once Redis has numbered the message (status 0
 * now), or at once with 503 when Redis is down. */
static void api_cluster_publish(struct worker *worker, const struct config *config,
                                const struct api_request *request, struct message *message,
                                struct api_response *response)
{
    const struct channel_rule *rule = config_channel_rule(config, message->channel);
    if (request->waiter == NULL ||
        !cluster_publish(worker->server->cluster, worker, message, rule, 0, request->waiter,
                         api_cluster_published, NULL)) {
        api_refuse(response, 503, "cluster unavailable: Redis is down or too many publishes are pending");
        return;
    }
    worker->stats.messages_published++;
    memset(response, 0, sizeof(*response));
}

static void api_publish(struct worker *worker, const struct config *config,
                        const struct api_request *request, struct api_response *response)
{
    if (!http_request_method_is(request->http, "POST")) {
        api_method_not_allowed(response, "Allow: POST\r\n");
        return;
    }
    size_t prefix = strlen(API_PUBLISH_PREFIX);
    char channel[CHANNEL_NAME_MAX + 1];
    if (!api_channel_from_path(request->path + prefix, request->path_length - prefix, channel,
                               sizeof(channel))) {
        api_refuse(response, 400, "invalid channel name");
        return;
    }
    if (request->body == NULL && http_request_header(request->http, "Content-Length") == NULL) {
        api_refuse(response, 411, "Content-Length required");
        return;
    }
    if (request->body_length > config->websocket.max_message_size) {
        api_refuse(response, 413, "body larger than max_message_size");
        return;
    }
    const char *problem = "out of memory";
    struct message *message = api_message_from_body(request, channel, &problem);
    if (message == NULL) {
        api_refuse(response, strcmp(problem, "out of memory") == 0 ? 500 : 400, problem);
        return;
    }
    if (worker->server->cluster != NULL) {
        api_cluster_publish(worker, config, request, message, response);
        message_release(message);
        return;
    }
    char epoch[HUB_EPOCH_SIZE];
    if (server_publish(worker, message, NULL, epoch) < 0) {
        message_release(message);
        api_refuse(response, 500, "out of memory");
        return;
    }
    api_json(response, 202, json_pack("{s:I, s:s}", "seq", (json_int_t)message->seq, "epoch", epoch));
    message_release(message);
}

/* ------------------------------------------------------------ /api/channels */

static int api_compare_names(const void *a, const void *b)
{
    return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "name")),
                  json_string_value(json_object_get(*(json_t *const *)b, "name")));
}

static void api_collect_channel(const struct hub_channel_info *info, void *arg)
{
    json_array_append_new(arg, json_pack("{s:s, s:I, s:I}", "name", info->name, "subscribers",
                                         (json_int_t)info->subscribers, "seq",
                                         (json_int_t)info->seq));
}

static json_t *api_sorted(json_t *array)
{
    size_t count = json_array_size(array);
    json_t **items = calloc(count ? count : 1, sizeof(*items));
    json_t *sorted = json_array();
    if (items == NULL || sorted == NULL) {
        free(items);
        json_decref(sorted);
        return NULL;
    }
    for (size_t i = 0; i < count; i++)
        items[i] = json_array_get(array, i);
    qsort(items, count, sizeof(*items), api_compare_names);
    for (size_t i = 0; i < count; i++)
        json_array_append(sorted, items[i]);
    free(items);
    return sorted;
}

static void api_channels(struct server *server, struct api_response *response)
{
    json_t *channels = json_array();
    if (channels == NULL) {
        api_refuse(response, 500, "out of memory");
        return;
    }
    hub_each_channel(server->hub, api_collect_channel, channels);
    json_t *sorted = api_sorted(channels);
    json_decref(channels);
    api_json(response, 200, sorted != NULL ? json_pack("{s:o}", "channels", sorted) : NULL);
}

static void api_collect_user(const char *user, void *arg)
{
    json_array_append_new(arg, json_string(user));
}

static void api_channel(struct server *server, const struct api_request *request,
                        struct api_response *response)
{
    size_t prefix = strlen(API_CHANNELS "/");
    char name[CHANNEL_NAME_MAX + 1];
    if (!api_channel_from_path(request->path + prefix, request->path_length - prefix, name,
                               sizeof(name))) {
        api_refuse(response, 400, "invalid channel name");
        return;
    }
    struct hub_channel_info info;
    if (!hub_channel_info(server->hub, name, &info)) {
        api_refuse(response, 404, "no such channel");
        return;
    }
    json_t *value = json_pack("{s:s, s:I, s:I, s:s}", "name", info.name, "subscribers",
                              (json_int_t)info.subscribers, "seq", (json_int_t)info.seq, "epoch",
                              info.epoch);
    if (value != NULL && info.presence) {
        json_t *users = json_array();
        hub_each_user(server->hub, name, api_collect_user, users);
        json_object_set_new(value, "presence", users);
    }
    api_json(response, 200, value);
}

/* ------------------------------------------------------------ /api/connections */

/* Closes the user's WebSockets on the worker's own thread; counts go to
 * the caller's slot for that worker. */
struct api_disconnect {
    const char *user;
    size_t *counts;
};

static void api_disconnect_on(struct worker *worker, void *arg)
{
    struct api_disconnect *disconnect = arg;
    disconnect->counts[worker->index] = conn_disconnect_user(
        worker, disconnect->user, WS_CLOSE_POLICY, "disconnected by API");
}

static void api_connections(struct worker *worker, const struct api_request *request,
                            struct api_response *response)
{
    if (!http_request_method_is(request->http, "DELETE")) {
        api_method_not_allowed(response, "Allow: DELETE\r\n");
        return;
    }
    char user[256];
    if (request->query == NULL ||
        http_query_param(request->query, request->query_length, "user", user, sizeof(user)) <= 0) {
        api_refuse(response, 400, "the user parameter is required");
        return;
    }
    struct api_disconnect disconnect = {
        .user = user, .counts = calloc(worker->server->worker_count, sizeof(size_t)),
    };
    if (disconnect.counts == NULL) {
        api_text(response, 500, "out of memory\n");
        return;
    }
    worker_call_all(worker, api_disconnect_on, &disconnect);
    size_t count = 0;
    for (unsigned i = 0; i < worker->server->worker_count; i++)
        count += disconnect.counts[i];
    free(disconnect.counts);
    api_json(response, 200, json_pack("{s:I}", "disconnected", (json_int_t)count));
}

/* ------------------------------------------------------------ dispatch */

bool api_is_endpoint(const char *path, size_t path_length)
{
    return api_is_monitoring(path, path_length) ||
           (path_length == strlen("/api") && memcmp(path, "/api", path_length) == 0) ||
           api_path_starts(path, path_length, API_PREFIX);
}

bool api_is_monitoring(const char *path, size_t path_length)
{
    return (path_length == strlen("/healthz") && memcmp(path, "/healthz", path_length) == 0) ||
           (path_length == strlen("/metrics") && memcmp(path, "/metrics", path_length) == 0);
}

size_t api_body_limit(const struct config *config, const char *path, size_t path_length)
{
    /* The whole /api/ tree reads bounded bodies, so a wrong method gets its
     * 405 rather than a 413. */
    return api_path_starts(path, path_length, API_PREFIX) ? (size_t)config->websocket.max_message_size
                                                          : 0;
}

bool api_refuse_early(const struct config *config, const struct http_request *http,
                      size_t path_length, struct api_response *response)
{
    memset(response, 0, sizeof(*response));
    if (api_is_monitoring(http->target, path_length))
        return false;
    if (config->http.api_token == NULL) {
        api_refuse(response, 404, "the API is off (http.api_token is not set)");
        return true;
    }
    if (!api_authorized(config, http)) {
        api_refuse(response, 401, "a valid bearer token is required");
        response->extra_headers = "WWW-Authenticate: Bearer\r\n";
        return true;
    }
    return false;
}

static void api_handle_tree(struct worker *worker, const struct config *config,
                            const struct api_request *request, struct api_response *response)
{
    if (api_refuse_early(config, request->http, request->path_length, response))
        return;
    if (api_path_starts(request->path, request->path_length, API_PUBLISH_PREFIX)) {
        api_publish(worker, config, request, response);
    } else if (api_path_is(request, API_CHANNELS)) {
        if (http_request_method_is(request->http, "GET"))
            api_channels(worker->server, response);
        else
            api_method_not_allowed(response, "Allow: GET\r\n");
    } else if (api_path_starts(request->path, request->path_length, API_CHANNELS "/")) {
        if (http_request_method_is(request->http, "GET"))
            api_channel(worker->server, request, response);
        else
            api_method_not_allowed(response, "Allow: GET\r\n");
    } else if (api_path_is(request, API_CONNECTIONS)) {
        api_connections(worker, request, response);
    } else {
        api_refuse(response, 404, "no such endpoint");
    }
}

void api_handle(struct worker *worker, const struct config *config,
                const struct api_request *request, struct api_response *response)
{
    memset(response, 0, sizeof(*response));
    if (api_path_is(request, "/healthz"))
        api_healthz(worker->server, request, response);
    else if (api_path_is(request, "/metrics"))
        api_metrics(worker, config, request, response);
    else
        api_handle_tree(worker, config, request, response);
}
