/* static_files — maps a request path onto a file under the static root, and
 * names the Content-Type for a file. Touches the filesystem (realpath, stat)
 * but no sockets. */
#ifndef WSBROKER_STATIC_FILES_H
#define WSBROKER_STATIC_FILES_H

#include <stddef.h>

#define STATIC_FILES_OK 0
#define STATIC_FILES_NOT_FOUND (-1)   /* answer 404 */
#define STATIC_FILES_BAD_REQUEST (-2) /* malformed percent escape or NUL: 400 */

/* Resolves url_path (the raw, still percent-encoded path part of the target)
 * under root. "." and ".." segments, any other segment starting with '.'
 * (hidden files) and backslashes are not found. A path ending in '/' and a
 * directory named without one both map to that directory's index.html. The
 * result must be a regular file whose real path (symlinks followed) lies
 * inside realpath(root). On STATIC_FILES_OK, out holds that absolute path. */
int static_files_resolve(const char *root, const char *url_path, size_t url_path_length,
                         char *out, size_t out_size);

/* Content-Type for path by its extension (case-insensitive);
 * "application/octet-stream" when unknown. */
const char *static_files_content_type(const char *path);

#endif
