/* workspace: one fresh directory per session; every client path is resolved
 * inside it. Unlike TVM, "..", absolute paths and symlinks that lead outside
 * are refused. */
#ifndef TVMRPC_WORKSPACE_H
#define TVMRPC_WORKSPACE_H

#include <limits.h>
#include <stddef.h>

typedef struct ws {
    char root[PATH_MAX]; /* realpath of the session directory */
} ws_t;

/* Create <base>/tvmrpc-XXXXXX (base NULL: $TMPDIR or /tmp). */
int ws_create(ws_t *ws, const char *base, char *err, size_t errlen);
/* Remove the directory and everything in it. */
void ws_destroy(ws_t *ws);
/* Remove path and everything below it, best effort (symlinks not followed). */
void ws_remove_tree(const char *path);
/* Map a client name to a path inside the workspace. "" is the root itself.
 * -1 with err for escapes. */
int ws_resolve(const ws_t *ws, const char *name, char *out, size_t outlen, char *err,
               size_t errlen);
/* Write data to name atomically (temporary file + rename). */
int ws_write_file(const ws_t *ws, const char *name, const void *data, size_t len, char *err,
                  size_t errlen);

#endif
