/* Unit tests for the static_files module: path resolution under a temporary
 * root (index mapping, traversal in every spelling, symlinks leading out,
 * non-regular files) and Content-Type by extension. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "static_files.h"

/* The layout built under a fresh temporary directory:
 *   www/index.html  www/app.js  www/a b.txt  www/.hidden  www/back\slash.txt  www/fifo
 *   www/sub/index.html  www/sub/page.txt  www/noindex/  www/trap/index.html -> ../../secret.txt
 *   www/inside -> index.html          (stays inside: served)
 *   www/escape -> ../secret.txt       (leads out: not found)
 *   www/outdir -> ../outside          (directory leading out)
 *   www/sibling -> ../www2/file.txt   (same-prefix sibling of the root)
 *   www/subdir -> sub                 (directory link inside)
 *   secret.txt  outside/file.txt  outside/index.html  www2/file.txt  wwwlink -> www */
struct tree {
    char base[PATH_MAX];
    char root[PATH_MAX];      /* as given to the module */
    char real_root[PATH_MAX]; /* realpath of root, for expected results */
};

static struct tree tree;

/* out = a + b, out being PATH_MAX bytes. */
static void path_join(char *out, const char *a, const char *b)
{
    int n = snprintf(out, PATH_MAX, "%s%s", a, b);
    assert_true(n > 0 && n < PATH_MAX);
}

static void tree_path(char *out, const char *relative)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", tree.base, relative);
    assert_true(n > 0 && n < PATH_MAX);
}

static void tree_file(const char *relative, const char *content)
{
    char path[PATH_MAX];
    tree_path(path, relative);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(content, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void tree_dir(const char *relative)
{
    char path[PATH_MAX];
    tree_path(path, relative);
    assert_int_equal(mkdir(path, 0755), 0);
}

static void tree_link(const char *target, const char *relative)
{
    char path[PATH_MAX];
    tree_path(path, relative);
    assert_int_equal(symlink(target, path), 0);
}

static int tree_setup(void **state)
{
    snprintf(tree.base, sizeof tree.base, "%s/wsbroker-static-XXXXXX",
             getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(tree.base) == NULL)
        return -1;
    tree_dir("www");
    tree_dir("www/sub");
    tree_dir("www/noindex");
    tree_dir("www/trap");
    tree_dir("outside");
    tree_dir("www2");
    tree_file("www/index.html", "<h1>home</h1>");
    tree_file("www/app.js", "1");
    tree_file("www/a b.txt", "space");
    tree_file("www/.hidden", "hidden");
    tree_file("www/back\\slash.txt", "backslash");
    tree_file("www/sub/index.html", "sub");
    tree_file("www/sub/page.txt", "page");
    tree_file("secret.txt", "secret");
    tree_file("outside/file.txt", "outside");
    tree_file("outside/index.html", "outside index");
    tree_file("www2/file.txt", "sibling");
    tree_link("index.html", "www/inside");
    tree_link("../secret.txt", "www/escape");
    tree_link("../outside", "www/outdir");
    tree_link("../www2/file.txt", "www/sibling");
    tree_link("sub", "www/subdir");
    tree_link("../../secret.txt", "www/trap/index.html");
    tree_link("www", "wwwlink");
    char fifo[PATH_MAX];
    tree_path(fifo, "www/fifo");
    assert_int_equal(mkfifo(fifo, 0644), 0);
    tree_path(tree.root, "www");
    assert_non_null(realpath(tree.root, tree.real_root));
    return 0;
}

static int tree_remove(const char *relative)
{
    char path[PATH_MAX];
    tree_path(path, relative);
    return remove(path);
}

static int tree_teardown(void **state)
{
    static const char *const entries[] = {
        "www/index.html", "www/app.js", "www/a b.txt", "www/.hidden", "www/back\\slash.txt",
        "www/sub/index.html", "www/sub/page.txt", "secret.txt", "outside/file.txt",
        "outside/index.html", "www2/file.txt", "www/inside", "www/escape", "www/outdir",
        "www/sibling", "www/subdir", "www/trap/index.html", "wwwlink", "www/fifo", "www/sub",
        "www/noindex", "www/trap", "outside", "www2", "www",
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++)
        failures += tree_remove(entries[i]) != 0;
    failures += rmdir(tree.base) != 0;
    return failures == 0 ? 0 : -1;
}

static int resolve(const char *url, char *out, size_t out_size)
{
    return static_files_resolve(tree.root, url, strlen(url), out, out_size);
}

/* url resolves to relative (inside the real root). */
static void assert_resolves(const char *url, const char *relative)
{
    char out[PATH_MAX];
    char expected[PATH_MAX];
    char prefix[PATH_MAX];
    path_join(prefix, tree.real_root, "/");
    path_join(expected, prefix, relative);
    int r = resolve(url, out, sizeof out);
    if (r != STATIC_FILES_OK)
        fail_msg("\"%s\": got %d, expected %s", url, r, relative);
    assert_string_equal(out, expected);
}

static void assert_not_found(const char *url)
{
    char out[PATH_MAX];
    int r = resolve(url, out, sizeof out);
    if (r != STATIC_FILES_NOT_FOUND)
        fail_msg("\"%s\": got %d (%s), expected not found", url, r, r == 0 ? out : "");
}

static void test_resolve_files(void **state)
{
    assert_resolves("/index.html", "index.html");
    assert_resolves("/app.js", "app.js");
    assert_resolves("/sub/page.txt", "sub/page.txt");
    assert_resolves("/a%20b.txt", "a b.txt");
    assert_resolves("/%61pp.js", "app.js");
    assert_resolves("//app.js", "app.js");
    assert_not_found("/missing.html");
    assert_not_found("/sub/missing.txt");
    assert_not_found("/a+b.txt"); /* '+' is not a space in a path */
}

static void test_resolve_index(void **state)
{
    assert_resolves("/", "index.html");
    assert_resolves("/sub/", "sub/index.html");
    assert_resolves("/sub", "sub/index.html");
    assert_resolves("/subdir/", "sub/index.html");
    assert_resolves("/subdir/page.txt", "sub/page.txt");
    assert_not_found("/noindex/");
    assert_not_found("/noindex");
    assert_not_found("/app.js/");
    assert_not_found("/sub/page.txt/");
}

static void test_resolve_traversal(void **state)
{
    static const char *const attempts[] = {
        "/../secret.txt",
        "/..",
        "/../",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/%2e./secret.txt",
        "/..%2fsecret.txt",
        "/..%2Fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/sub/..%2f..%2fsecret.txt",
        "/a/../../etc/passwd",
        "/sub/../../secret.txt",
        "/sub/../index.html",       /* stays inside, still refused */
        "/./index.html",
        "/.",
        "/sub/.",
        "/sub/./page.txt",
        "/%2e/index.html",
        "/..\\secret.txt",
        "/%5c..%5csecret.txt",
        "/sub\\page.txt",
        "/back\\slash.txt",         /* exists, still refused */
        "/back%5cslash.txt",
        "/.hidden",
        "/%2ehidden",
        "/../www2/file.txt",
        "/../outside/file.txt",
        "/etc/passwd",
        "//etc/passwd",
        "index.html",               /* not origin-form */
        "",
    };
    for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++)
        assert_not_found(attempts[i]);
}

static void test_resolve_symlinks(void **state)
{
    assert_resolves("/inside", "index.html"); /* a link inside the root is fine */
    assert_not_found("/escape");
    assert_not_found("/outdir/file.txt");
    assert_not_found("/outdir/");
    assert_not_found("/outdir");
    assert_not_found("/sibling"); /* "<root>2/..." shares the root's prefix */
    assert_not_found("/trap/");   /* the index itself leads out */
    assert_not_found("/trap");
}

static void test_resolve_not_regular(void **state)
{
    assert_not_found("/fifo");
}

static void test_resolve_bad_request(void **state)
{
    char out[PATH_MAX];
    static const char *const bad[] = { "/%zz", "/%", "/a%4", "/a%00.html", "/%g0" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(resolve(bad[i], out, sizeof out), STATIC_FILES_BAD_REQUEST);
    assert_int_equal(static_files_resolve(tree.root, "/index.html\0x", 13, out, sizeof out),
                     STATIC_FILES_BAD_REQUEST);
}

static void test_resolve_lengths_and_roots(void **state)
{
    char out[PATH_MAX];
    /* only url_path_length bytes are the path */
    assert_int_equal(static_files_resolve(tree.root, "/app.js?v=1", 7, out, sizeof out),
                     STATIC_FILES_OK);
    /* out must hold the whole path and its NUL */
    char expected[PATH_MAX];
    path_join(expected, tree.real_root, "/app.js");
    size_t need = strlen(expected) + 1;
    assert_int_equal(resolve("/app.js", out, need), STATIC_FILES_OK);
    assert_string_equal(out, expected);
    assert_int_equal(resolve("/app.js", out, need - 1), STATIC_FILES_NOT_FOUND);
    assert_int_equal(resolve("/app.js", out, 0), STATIC_FILES_NOT_FOUND);

    /* a root reached through a symlink works; results are real paths */
    char linked[PATH_MAX];
    tree_path(linked, "wwwlink");
    assert_int_equal(static_files_resolve(linked, "/", 1, out, sizeof out), STATIC_FILES_OK);
    path_join(expected, tree.real_root, "/index.html");
    assert_string_equal(out, expected);
    /* a root with a trailing slash works too */
    char slashed[PATH_MAX];
    path_join(slashed, tree.root, "/");
    assert_int_equal(static_files_resolve(slashed, "/app.js", 7, out, sizeof out),
                     STATIC_FILES_OK);

    char missing[PATH_MAX];
    tree_path(missing, "nowhere");
    assert_int_equal(static_files_resolve(missing, "/", 1, out, sizeof out),
                     STATIC_FILES_NOT_FOUND);

    /* a path longer than any file name is simply not found */
    size_t long_length = PATH_MAX + 10;
    char *long_path = malloc(long_length);
    assert_non_null(long_path);
    memset(long_path, 'a', long_length);
    long_path[0] = '/';
    assert_int_equal(static_files_resolve(tree.root, long_path, long_length, out, sizeof out),
                     STATIC_FILES_NOT_FOUND);
    assert_int_equal(static_files_resolve(tree.root, long_path, PATH_MAX - 10, out, sizeof out),
                     STATIC_FILES_NOT_FOUND);
    free(long_path);
}

static void test_content_type(void **state)
{
    static const char *const cases[][2] = {
        { "/www/index.html", "text/html; charset=utf-8" },
        { "page.htm", "text/html; charset=utf-8" },
        { "INDEX.HTML", "text/html; charset=utf-8" },
        { "chat.css", "text/css; charset=utf-8" },
        { "chat.js", "text/javascript; charset=utf-8" },
        { "mod.mjs", "text/javascript; charset=utf-8" },
        { "a.JS", "text/javascript; charset=utf-8" },
        { "data.json", "application/json" },
        { "logo.svg", "image/svg+xml" },
        { "logo.png", "image/png" },
        { "photo.jpg", "image/jpeg" },
        { "photo.jpeg", "image/jpeg" },
        { "anim.gif", "image/gif" },
        { "favicon.ico", "image/x-icon" },
        { "pic.webp", "image/webp" },
        { "notes.txt", "text/plain; charset=utf-8" },
        { "app.wasm", "application/wasm" },
        { "font.woff2", "font/woff2" },
        { "archive.tar.gz", "application/octet-stream" },
        { "font.woff", "application/octet-stream" },
        { "README", "application/octet-stream" },
        { "file.", "application/octet-stream" },
        { ".html", "application/octet-stream" },
        { "/www/.html", "application/octet-stream" },
        { "/dir.html/file", "application/octet-stream" },
        { "x.htmlx", "application/octet-stream" },
        { "x.htm.bak", "application/octet-stream" },
        { "", "application/octet-stream" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = static_files_content_type(cases[i][0]);
        if (strcmp(got, cases[i][1]) != 0)
            fail_msg("\"%s\": got \"%s\", expected \"%s\"", cases[i][0], got, cases[i][1]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve_files),
        cmocka_unit_test(test_resolve_index),
        cmocka_unit_test(test_resolve_traversal),
        cmocka_unit_test(test_resolve_symlinks),
        cmocka_unit_test(test_resolve_not_regular),
        cmocka_unit_test(test_resolve_bad_request),
        cmocka_unit_test(test_resolve_lengths_and_roots),
        cmocka_unit_test(test_content_type),
    };
    return cmocka_run_group_tests(tests, tree_setup, tree_teardown);
}
