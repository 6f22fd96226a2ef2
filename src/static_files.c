/* static_files — request path to file under the static root, and its
 * Content-Type. See static_files.h for the contract. */
#include "static_files.h"

#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "http.h"

#define STATIC_FILES_INDEX "index.html"

/* Segments are checked after decoding, so "%2e%2e" and "..%2f" are caught
 * like their plain spellings. Hidden names are refused along with "." and
 * "..": editor swap files and VCS metadata are never meant to be served. */
static bool static_files_path_safe(const char *path)
{
    if (path[0] != '/' || strchr(path, '\\') != NULL)
        return false;
    for (const char *segment = path; segment != NULL; segment = strchr(segment + 1, '/')) {
        if (segment[1] == '.')
            return false;
    }
    return true;
}

/* True when path is root itself or lies below it (a '/' boundary, so
 * "/srv/www2" is not inside "/srv/www"). */
static bool static_files_inside(const char *root, const char *path)
{
    size_t length = strlen(root);
    if (strcmp(root, "/") == 0)
        return path[0] == '/';
    return strncmp(path, root, length) == 0 && (path[length] == '/' || path[length] == '\0');
}

static bool static_files_join(char *out, size_t out_size, const char *a, const char *b,
                              const char *c)
{
    size_t a_length = strlen(a);
    size_t b_length = strlen(b);
    size_t c_length = strlen(c);
    if (a_length + b_length + c_length >= out_size)
        return false;
    memcpy(out, a, a_length);
    memcpy(out + a_length, b, b_length);
    memcpy(out + a_length + b_length, c, c_length + 1);
    return true;
}

/* realpath() of candidate, accepted only inside real_root. *st describes it. */
static bool static_files_real(const char *real_root, const char *candidate, char *real,
                              struct stat *st)
{
    if (realpath(candidate, real) == NULL)
        return false;
    if (!static_files_inside(real_root, real))
        return false;
    return stat(real, st) == 0;
}

/* Maps the real path of what the URL named to a regular file: a directory
 * stands for its index.html, which is resolved and checked again because it
 * may itself be a symlink leading out. */
static int static_files_pick(const char *real_root, char *real, struct stat *st, char *out,
                             size_t out_size)
{
    if (S_ISDIR(st->st_mode)) {
        char index[PATH_MAX];
        if (!static_files_join(index, sizeof index, real, "/", STATIC_FILES_INDEX) ||
            !static_files_real(real_root, index, real, st))
            return STATIC_FILES_NOT_FOUND;
    }
    if (!S_ISREG(st->st_mode) || strlen(real) >= out_size)
        return STATIC_FILES_NOT_FOUND;
    memcpy(out, real, strlen(real) + 1);
    return STATIC_FILES_OK;
}

int static_files_resolve(const char *root, const char *url_path, size_t url_path_length,
                         char *out, size_t out_size)
{
    char decoded[PATH_MAX];
    char real_root[PATH_MAX];
    char candidate[PATH_MAX];
    char real[PATH_MAX];
    struct stat st;

    if (out == NULL || out_size == 0 || root == NULL || url_path == NULL)
        return STATIC_FILES_NOT_FOUND;
    out[0] = '\0';
    /* Decoding never lengthens, so a path that fits cannot fail for room. */
    if (url_path_length >= sizeof decoded)
        return STATIC_FILES_NOT_FOUND;
    if (http_percent_decode(url_path, url_path_length, decoded, sizeof decoded) < 0)
        return STATIC_FILES_BAD_REQUEST;
    if (!static_files_path_safe(decoded))
        return STATIC_FILES_NOT_FOUND;
    if (realpath(root, real_root) == NULL)
        return STATIC_FILES_NOT_FOUND;

    size_t length = strlen(decoded);
    const char *index = decoded[length - 1] == '/' ? STATIC_FILES_INDEX : "";
    if (!static_files_join(candidate, sizeof candidate, real_root, decoded, index) ||
        !static_files_real(real_root, candidate, real, &st))
        return STATIC_FILES_NOT_FOUND;
    return static_files_pick(real_root, real, &st, out, out_size);
}

struct static_files_type {
    const char *extension;
    const char *content_type;
};

static const struct static_files_type static_files_types[] = {
    { "html", "text/html; charset=utf-8" },
    { "htm", "text/html; charset=utf-8" },
    { "css", "text/css; charset=utf-8" },
    { "js", "text/javascript; charset=utf-8" },
    { "mjs", "text/javascript; charset=utf-8" },
    { "json", "application/json" },
    { "svg", "image/svg+xml" },
    { "png", "image/png" },
    { "jpg", "image/jpeg" },
    { "jpeg", "image/jpeg" },
    { "gif", "image/gif" },
    { "ico", "image/x-icon" },
    { "webp", "image/webp" },
    { "txt", "text/plain; charset=utf-8" },
    { "wasm", "application/wasm" },
    { "woff2", "font/woff2" },
};

static bool static_files_equal_nocase(const char *a, const char *b)
{
    for (; *a != '\0' && *b != '\0'; a++, b++) {
        char x = (*a >= 'A' && *a <= 'Z') ? (char)(*a - 'A' + 'a') : *a;
        if (x != *b)
            return false;
    }
    return *a == '\0' && *b == '\0';
}

const char *static_files_content_type(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *name = slash != NULL ? slash + 1 : path;
    const char *dot = strrchr(name, '.');
    if (dot != NULL && dot != name) {
        for (size_t i = 0; i < sizeof static_files_types / sizeof static_files_types[0]; i++) {
            if (static_files_equal_nocase(dot + 1, static_files_types[i].extension))
                return static_files_types[i].content_type;
        }
    }
    return "application/octet-stream";
}
