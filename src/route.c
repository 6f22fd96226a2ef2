/* route — maps a request path to a configured route and expands the
 * route's channel template. Pure code. */
#include "route.h"

#include <string.h>

/* One path segment: the bytes between two '/' (or the end). */
struct route_segment {
    const char *start;
    size_t length;
};

/* Walks "/a/b/c" one segment at a time. *cursor points at a '/'; returns
 * false when the path is used up. "/" yields one empty segment and "/a/"
 * yields "a" then "", so a trailing slash is a segment of its own. */
static bool route_next_segment(const char **cursor, const char *end, struct route_segment *segment)
{
    const char *p = *cursor;
    if (p >= end || *p != '/')
        return false;
    p++;
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *stop = slash != NULL ? slash : end;
    segment->start = p;
    segment->length = (size_t)(stop - p);
    *cursor = stop;
    return true;
}

static bool route_is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool route_is_channel_char(unsigned char c)
{
    return route_is_alnum(c) || c == '_' || c == '.' || c == ':' || c == '@' || c == '/' ||
           c == '-';
}

/* Unreserved URI characters plus '@' and ':', which browsers send as is. */
static bool route_is_literal_char(unsigned char c)
{
    return route_is_alnum(c) || c == '_' || c == '.' || c == '~' || c == '@' || c == ':' ||
           c == '-';
}

static bool route_is_param_char(unsigned char c)
{
    return route_is_alnum(c) || c == '_';
}

static bool route_segment_is_param(const struct route_segment *segment)
{
    return segment->length > 0 && segment->start[0] == ':';
}

bool route_channel_name_valid(const char *name, size_t length)
{
    if (name == NULL || length == 0 || length > CHANNEL_NAME_MAX)
        return false;
    for (size_t i = 0; i < length; i++) {
        if (!route_is_channel_char((unsigned char)name[i]))
            return false;
    }
    return true;
}

/* Finds the segment index of parameter name[0..length) in pattern. */
static bool route_param_index(const char *pattern, const char *name, size_t length,
                              size_t *index)
{
    const char *cursor = pattern;
    const char *end = pattern + strlen(pattern);
    struct route_segment segment;

    for (size_t i = 0; route_next_segment(&cursor, end, &segment); i++) {
        if (route_segment_is_param(&segment) && segment.length - 1 == length &&
            memcmp(segment.start + 1, name, length) == 0) {
            *index = i;
            return true;
        }
    }
    return false;
}

static const char *route_segment_check(const char *path, const struct route_segment *segment,
                                       size_t index, bool last)
{
    if (segment->length == 0)
        return last ? NULL : "empty path segment";
    if (route_segment_is_param(segment)) {
        if (segment->length == 1)
            return "empty parameter name";
        for (size_t i = 1; i < segment->length; i++) {
            if (!route_is_param_char((unsigned char)segment->start[i]))
                return "invalid character in parameter name";
        }
        /* Lookup finds the first segment of that name: another one came
         * earlier unless that is this one. */
        size_t first;
        if (!route_param_index(path, segment->start + 1, segment->length - 1, &first) ||
            first != index)
            return "duplicate parameter name";
        return NULL;
    }
    for (size_t i = 0; i < segment->length; i++) {
        if (!route_is_literal_char((unsigned char)segment->start[i]))
            return "invalid character in path segment";
    }
    /* Clients resolve dot segments before sending, so these never match. */
    if ((segment->length == 1 && segment->start[0] == '.') ||
        (segment->length == 2 && memcmp(segment->start, "..", 2) == 0))
        return "'.' or '..' path segment";
    return NULL;
}

static const char *route_path_check(const char *path)
{
    if (path == NULL || path[0] != '/')
        return "path must start with '/'";
    const char *cursor = path;
    const char *end = path + strlen(path);
    struct route_segment segment;
    for (size_t i = 0; route_next_segment(&cursor, end, &segment); i++) {
        const char *problem = route_segment_check(path, &segment, i, cursor == end);
        if (problem != NULL)
            return problem;
    }
    return NULL;
}

static const char *route_template_check(const char *path, const char *template)
{
    size_t minimum = 0;   /* every placeholder expands to at least one byte */

    if (template[0] == '\0')
        return "empty channel template";
    for (const char *p = template; *p != '\0'; p++) {
        if (*p == '{') {
            const char *close = strchr(p + 1, '}');
            size_t index;
            if (close == NULL)
                return "unclosed '{' in channel template";
            if (!route_param_index(path, p + 1, (size_t)(close - p - 1), &index))
                return "channel template names a parameter the path does not have";
            p = close;
        } else if (!route_is_channel_char((unsigned char)*p)) {
            return "invalid character in channel template";
        }
        minimum++;
    }
    if (minimum > CHANNEL_NAME_MAX)
        return "channel template always expands to more than 128 bytes";
    return NULL;
}

const char *route_pattern_check(const char *path, const char *channel_template)
{
    const char *problem = route_path_check(path);
    if (problem != NULL || channel_template == NULL)
        return problem;
    return route_template_check(path, channel_template);
}

static bool route_path_matches(const char *pattern, const char *path, size_t path_length)
{
    const char *pattern_cursor = pattern;
    const char *pattern_end = pattern + strlen(pattern);
    const char *path_cursor = path;
    const char *path_end = path + path_length;
    struct route_segment want, got;

    for (;;) {
        bool more_want = route_next_segment(&pattern_cursor, pattern_end, &want);
        bool more_got = route_next_segment(&path_cursor, path_end, &got);
        if (!more_want || !more_got)
            return !more_want && !more_got;
        if (route_segment_is_param(&want)) {
            if (got.length == 0)
                return false;
        } else if (want.length != got.length || memcmp(want.start, got.start, got.length) != 0) {
            return false;
        }
    }
}

static int route_hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes %XX escapes of in[0..length) into out (not NUL-terminated).
 * Returns the decoded length, or -1 for a malformed escape, a NUL byte or
 * an out too small. '+' stays '+': in a path it is not a space. */
static long route_percent_decode(const char *in, size_t length, char *out, size_t out_size)
{
    size_t n = 0;

    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '%') {
            if (length - i < 3)
                return -1;
            int high = route_hex_value((unsigned char)in[i + 1]);
            int low = route_hex_value((unsigned char)in[i + 2]);
            if (high < 0 || low < 0)
                return -1;
            c = (unsigned char)(high << 4 | low);
            i += 2;
        }
        if (c == '\0' || n >= out_size)
            return -1;
        out[n++] = (char)c;
    }
    return (long)n;
}

static bool route_nth_segment(const char *path, size_t path_length, size_t index,
                              struct route_segment *segment)
{
    const char *cursor = path;
    const char *end = path + path_length;

    for (size_t i = 0; route_next_segment(&cursor, end, segment); i++) {
        if (i == index)
            return true;
    }
    return false;
}

/* Expands route->channel for a path route_path_matches() accepted. */
static bool route_expand(const struct route_config *route, const char *path, size_t path_length,
                         char *channel, size_t channel_size)
{
    char expanded[CHANNEL_NAME_MAX + 1];
    size_t n = 0;

    if (route->channel == NULL)
        return false;
    for (const char *p = route->channel; *p != '\0'; p++) {
        if (*p != '{') {
            if (n >= CHANNEL_NAME_MAX)
                return false;
            expanded[n++] = *p;
            continue;
        }
        const char *close = strchr(p + 1, '}');
        size_t index;
        struct route_segment value;
        if (close == NULL ||
            !route_param_index(route->path, p + 1, (size_t)(close - p - 1), &index) ||
            !route_nth_segment(path, path_length, index, &value))
            return false;
        long decoded = route_percent_decode(value.start, value.length, expanded + n,
                                            CHANNEL_NAME_MAX - n);
        if (decoded < 0)
            return false;
        n += (size_t)decoded;
        p = close;
    }
    if (!route_channel_name_valid(expanded, n) || channel_size <= n)
        return false;
    memcpy(channel, expanded, n);
    channel[n] = '\0';
    return true;
}

enum route_match_result route_match(const struct config *config, const char *path,
                                    size_t path_length, const struct route_config **route,
                                    char *channel, size_t channel_size)
{
    if (config == NULL || path == NULL)
        return ROUTE_NOT_FOUND;
    for (size_t i = 0; i < config->route_count; i++) {
        const struct route_config *candidate = &config->routes[i];
        if (!route_path_matches(candidate->path, path, path_length))
            continue;
        /* Set on a bad channel too, so the caller can say which route. */
        *route = candidate;
        /* Only broadcast routes take a channel from the path: echo has
         * none and pubsub names its channels in each message. */
        if (candidate->mode != ROUTE_MODE_BROADCAST) {
            if (channel_size > 0)
                channel[0] = '\0';
            return ROUTE_MATCHED;
        }
        if (!route_expand(candidate, path, path_length, channel, channel_size))
            return ROUTE_BAD_CHANNEL;
        return ROUTE_MATCHED;
    }
    return ROUTE_NOT_FOUND;
}
