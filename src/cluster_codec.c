#include "cluster_codec.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLUSTER_PREFIX_MAX 64

/* ------------------------------------------------------------ URL */

static int cluster_url_number(const char *text, size_t length, unsigned max, unsigned *value)
{
    if (length == 0 || length > 10)
        return -1;
    uint64_t number = 0;
    for (size_t i = 0; i < length; i++) {
        if (!isdigit((unsigned char)text[i]))
            return -1;
        number = number * 10 + (uint64_t)(text[i] - '0');
    }
    if (number > max)
        return -1;
    *value = (unsigned)number;
    return 0;
}

/* user:password before the '@'; either may be empty. */
static int cluster_url_credentials(const char *text, size_t length, struct cluster_url *url)
{
    const char *colon = memchr(text, ':', length);
    if (colon == NULL)
        return -1;
    size_t user_length = (size_t)(colon - text);
    if (user_length > 0 && (url->user = strndup(text, user_length)) == NULL)
        return -1;
    size_t password_length = length - user_length - 1;
    if (password_length > 0 && (url->password = strndup(colon + 1, password_length)) == NULL)
        return -1;
    return 0;
}

static int cluster_url_host(const char *text, size_t length, struct cluster_url *url,
                            const char **problem)
{
    const char *colon = memchr(text, ':', length);
    size_t host_length = colon != NULL ? (size_t)(colon - text) : length;
    if (host_length == 0 || host_length > CLUSTER_HOST_MAX) {
        *problem = "the url needs a host";
        return -1;
    }
    for (size_t i = 0; i < host_length; i++) {
        if (!isalnum((unsigned char)text[i]) && strchr(".-_", text[i]) == NULL) {
            *problem = "the url's host must be a name or an IPv4 address";
            return -1;
        }
    }
    memcpy(url->host, text, host_length);
    url->host[host_length] = '\0';
    url->port = 6379;
    if (colon != NULL &&
        (cluster_url_number(colon + 1, length - host_length - 1, 65535, &url->port) != 0 ||
         url->port == 0)) {
        *problem = "the url's port must be 1 to 65535";
        return -1;
    }
    return 0;
}

int cluster_url_parse(const char *text, struct cluster_url *url, const char **problem)
{
    static const char scheme[] = "redis://";
    memset(url, 0, sizeof(*url));
    if (strncmp(text, scheme, strlen(scheme)) != 0) {
        *problem = "the url must start with redis://";
        return -1;
    }
    const char *rest = text + strlen(scheme);
    const char *slash = strchr(rest, '/');
    size_t authority = slash != NULL ? (size_t)(slash - rest) : strlen(rest);
    const char *at = memchr(rest, '@', authority);
    if (at != NULL && cluster_url_credentials(rest, (size_t)(at - rest), url) != 0) {
        *problem = "the url's credentials must be [user]:password@";
        cluster_url_clear(url);
        return -1;
    }
    const char *host = at != NULL ? at + 1 : rest;
    if (cluster_url_host(host, (size_t)(rest + authority - host), url, problem) != 0) {
        cluster_url_clear(url);
        return -1;
    }
    if (slash != NULL && slash[1] != '\0' &&
        cluster_url_number(slash + 1, strlen(slash + 1), 1000000, &url->db) != 0) {
        *problem = "the url's database must be a number";
        cluster_url_clear(url);
        return -1;
    }
    return 0;
}

void cluster_url_clear(struct cluster_url *url)
{
    free(url->user);
    free(url->password);
    url->user = url->password = NULL;
}

bool cluster_prefix_valid(const char *prefix)
{
    size_t length = strlen(prefix);
    if (length == 0 || length > CLUSTER_PREFIX_MAX)
        return false;
    for (size_t i = 0; i < length; i++) {
        if (prefix[i] <= ' ' || prefix[i] >= 0x7f)
            return false;
    }
    return true;
}

/* ------------------------------------------------------------ payload */

char cluster_kind_letter(enum message_kind kind)
{
    return kind == MESSAGE_TEXT ? 't' : kind == MESSAGE_BINARY ? 'b' : 'j';
}

static int cluster_kind_of(const char *word, enum message_kind *kind)
{
    if (strcmp(word, "t") == 0)
        *kind = MESSAGE_TEXT;
    else if (strcmp(word, "b") == 0)
        *kind = MESSAGE_BINARY;
    else if (strcmp(word, "j") == 0)
        *kind = MESSAGE_JSON;
    else
        return -1;
    return 0;
}

static int cluster_parse_u64(const char *word, int base, uint64_t *value)
{
    if (word[0] == '\0' || word[0] == '-' || word[0] == '+' || isspace((unsigned char)word[0]))
        return -1;
    char *end;
    unsigned long long number = strtoull(word, &end, base);
    if (*end != '\0')
        return -1;
    *value = number;
    return 0;
}

/* Splits the header line (a copy, NUL-terminated) into at most max words. */
static size_t cluster_words(char *line, char **words, size_t max)
{
    size_t count = 0;
    char *save = NULL;
    for (char *word = strtok_r(line, " ", &save); word != NULL; word = strtok_r(NULL, " ", &save)) {
        if (count == max)
            return max + 1;
        words[count++] = word;
    }
    return count;
}

static int cluster_decode_message(char **words, size_t count, struct cluster_wire *wire,
                                  uint64_t *from_length)
{
    uint64_t published_at;
    if (count != 8 || cluster_kind_of(words[1], &wire->kind) != 0 ||
        cluster_parse_u64(words[2], 10, &wire->seq) != 0 || wire->seq == 0 ||
        strlen(words[3]) == 0 || strlen(words[3]) > CLUSTER_EPOCH_MAX ||
        cluster_parse_u64(words[4], 10, &published_at) != 0 ||
        cluster_parse_u64(words[5], 16, &wire->node) != 0 ||
        cluster_parse_u64(words[6], 16, &wire->except) != 0 ||
        cluster_parse_u64(words[7], 10, from_length) != 0)
        return -1;
    wire->type = CLUSTER_WIRE_MESSAGE;
    strcpy(wire->epoch, words[3]);
    wire->published_at = (int64_t)published_at;
    return 0;
}

static int cluster_decode_presence(char **words, size_t count, struct cluster_wire *wire,
                                   uint64_t *user_length)
{
    if (count != 4 || (strcmp(words[1], "join") != 0 && strcmp(words[1], "leave") != 0) ||
        cluster_parse_u64(words[2], 16, &wire->node) != 0 ||
        cluster_parse_u64(words[3], 10, user_length) != 0 || *user_length == 0)
        return -1;
    wire->type = CLUSTER_WIRE_PRESENCE;
    wire->join = strcmp(words[1], "join") == 0;
    return 0;
}

int cluster_wire_decode(const void *data, size_t length, struct cluster_wire *wire)
{
    memset(wire, 0, sizeof(*wire));
    const char *text = data;
    const char *newline = memchr(text, '\n', length < 256 ? length : 256);
    if (newline == NULL)
        return -1;
    char line[256];
    size_t line_length = (size_t)(newline - text);
    memcpy(line, text, line_length);
    line[line_length] = '\0';
    if (strlen(line) != line_length)
        return -1;
    char *words[9];
    size_t count = cluster_words(line, words, 8);
    uint64_t from_length = 0;
    int status = -1;
    if (count >= 1 && strcmp(words[0], "m") == 0)
        status = cluster_decode_message(words, count, wire, &from_length);
    else if (count >= 1 && strcmp(words[0], "p") == 0)
        status = cluster_decode_presence(words, count, wire, &from_length);
    size_t rest = length - line_length - 1;
    if (status != 0 || from_length > rest)
        return -1;
    wire->from = from_length > 0 ? newline + 1 : NULL;
    wire->from_length = (size_t)from_length;
    wire->body = (const uint8_t *)newline + 1 + from_length;
    wire->body_length = rest - (size_t)from_length;
    if (wire->type == CLUSTER_WIRE_PRESENCE && wire->body_length != 0)
        return -1;
    return 0;
}

char *cluster_wire_encode(const struct cluster_wire *wire, size_t *length)
{
    char head[256];
    int n;
    if (wire->type == CLUSTER_WIRE_MESSAGE)
        n = snprintf(head, sizeof(head), "m %c %" PRIu64 " %s %" PRId64 " %" PRIx64 " %" PRIx64
                     " %zu\n", cluster_kind_letter(wire->kind), wire->seq, wire->epoch,
                     wire->published_at, wire->node, wire->except, wire->from_length);
    else
        n = snprintf(head, sizeof(head), "p %s %" PRIx64 " %zu\n", wire->join ? "join" : "leave",
                     wire->node, wire->from_length);
    if (n < 0 || (size_t)n >= sizeof(head))
        return NULL;
    size_t body = wire->type == CLUSTER_WIRE_MESSAGE ? wire->body_length : 0;
    char *out = malloc((size_t)n + wire->from_length + body + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, head, (size_t)n);
    if (wire->from_length > 0)
        memcpy(out + n, wire->from, wire->from_length);
    if (body > 0)
        memcpy(out + n + wire->from_length, wire->body, body);
    *length = (size_t)n + wire->from_length + body;
    out[*length] = '\0';
    return out;
}

/* ------------------------------------------------------------ scripts */

/* Redis's clock in milliseconds, as a string (Lua numbers would print
 * large values in exponent form). */
#define CLUSTER_LUA_NOW \
    "local t = redis.call('TIME')\n" \
    "local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))\n"

/* The epoch is made once per channel; the seq and epoch keys live while
 * the channel is used (idle expiry), like a single broker's channel. */
const char cluster_publish_script[] =
    CLUSTER_LUA_NOW
    "local seq = redis.call('INCR', KEYS[1])\n"
    "redis.call('SET', KEYS[2], ARGV[4], 'NX')\n"
    "local epoch = redis.call('GET', KEYS[2])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[10])\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[10])\n"
    "local payload = 'm ' .. ARGV[5] .. ' ' .. seq .. ' ' .. epoch .. ' ' .. now .. ' ' ..\n"
    "  ARGV[6] .. ' ' .. ARGV[7] .. ' ' .. #ARGV[8] .. '\\n' .. ARGV[8] .. ARGV[9]\n"
    "local history = tonumber(ARGV[2])\n"
    "local ttl = tonumber(ARGV[3])\n"
    "if history > 0 then\n"
    "  redis.call('XADD', KEYS[3], 'MAXLEN', history, '*', 'p', payload)\n"
    "  if ttl > 0 then\n"
    "    redis.call('XTRIM', KEYS[3], 'MINID', tonumber(now) - ttl * 1000)\n"
    "    redis.call('PEXPIRE', KEYS[3], ttl * 1000)\n"
    "  else\n"
    "    redis.call('EXPIRE', KEYS[3], ARGV[10])\n"
    "  end\n"
    "end\n"
    "redis.call('PUBLISH', ARGV[1], payload)\n"
    "return {seq, epoch}\n";

const char cluster_position_script[] =
    CLUSTER_LUA_NOW
    "redis.call('SET', KEYS[2], ARGV[1], 'NX')\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[4])\n"
    "local seq = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "local epoch = redis.call('GET', KEYS[2])\n"
    "local held = {}\n"
    "if ARGV[2] == '1' then\n"
    "  local start = '-'\n"
    "  local ttl = tonumber(ARGV[3])\n"
    "  if ttl > 0 then start = tostring(tonumber(now) - ttl * 1000) end\n"
    "  for _, entry in ipairs(redis.call('XRANGE', KEYS[3], start, '+')) do\n"
    "    held[#held + 1] = entry[2][2]\n"
    "  end\n"
    "end\n"
    "return {seq, epoch, held}\n";

/* Members are "user\tnode" scored by when they expire; a user is present
 * while any of its entries is unexpired. */
const char cluster_presence_add_script[] =
    CLUSTER_LUA_NOW
    "local user = string.match(ARGV[1], '^(.*)\\t')\n"
    "local others = 0\n"
    "for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do\n"
    "  if m ~= ARGV[1] and string.match(m, '^(.*)\\t') == user then others = others + 1 end\n"
    "end\n"
    "local fresh = redis.call('ZADD', KEYS[1], tonumber(now) + tonumber(ARGV[2]), ARGV[1])\n"
    "redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)\n"
    "if others == 0 and fresh == 1 and ARGV[3] ~= '' then\n"
    "  redis.call('PUBLISH', KEYS[2], ARGV[3])\n"
    "end\n"
    "return fresh\n";

const char cluster_presence_remove_script[] =
    CLUSTER_LUA_NOW
    "local user = string.match(ARGV[1], '^(.*)\\t')\n"
    "local removed = redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do\n"
    "  if string.match(m, '^(.*)\\t') == user then return 0 end\n"
    "end\n"
    "if removed == 1 then redis.call('PUBLISH', KEYS[2], ARGV[2]) end\n"
    "return removed\n";

/* A node's heartbeat: its members' entries get a new expiry, and entries
 * nobody refreshed (a node that died) go, with a leave for each user that
 * has no entry left. */
const char cluster_presence_refresh_script[] =
    CLUSTER_LUA_NOW
    "local expiry = tonumber(now) + tonumber(ARGV[2])\n"
    "for i = 3, #ARGV do redis.call('ZADD', KEYS[1], expiry, ARGV[i]) end\n"
    "local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)\n"
    "if #gone == 0 then return 0 end\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)\n"
    "local present = {}\n"
    "for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do\n"
    "  present[string.match(m, '^(.*)\\t')] = true\n"
    "end\n"
    "local told = {}\n"
    "for _, m in ipairs(gone) do\n"
    "  local user = string.match(m, '^(.*)\\t')\n"
    "  if user and not present[user] and not told[user] then\n"
    "    told[user] = true\n"
    "    redis.call('PUBLISH', KEYS[2], 'p leave ' .. ARGV[1] .. ' ' .. #user .. '\\n' .. user)\n"
    "  end\n"
    "end\n"
    "if #ARGV > 2 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2) end\n"
    "return #gone\n";

const char cluster_presence_list_script[] =
    CLUSTER_LUA_NOW
    "return redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')\n";

/* ------------------------------------------------------------ resume */

void cluster_resume_plan(bool has_since, uint64_t since, const char *client_epoch,
                         uint64_t seq, const char *epoch, uint64_t oldest_held,
                         struct cluster_resume *plan)
{
    plan->recovered = true;
    plan->replay_after = seq;
    if (!has_since)
        return;
    bool same_epoch = client_epoch == NULL || strcmp(client_epoch, epoch) == 0;
    if (same_epoch && since >= seq)
        return;   /* up to date (or ahead): nothing was missed */
    uint64_t first = oldest_held != 0 ? oldest_held : seq + 1;
    if (same_epoch && since + 1 >= first) {
        plan->replay_after = since;
        return;
    }
    plan->recovered = false;
    plan->replay_after = 0;
}
