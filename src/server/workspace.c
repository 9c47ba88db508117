#include "server/workspace.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ws_create(ws_t *ws, const char *base, char *err, size_t errlen)
{
    if (!base)
        base = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char tmpl[PATH_MAX];
    if (snprintf(tmpl, sizeof(tmpl), "%s/tvmrpc-XXXXXX", base) >= (int)sizeof(tmpl) ||
        !mkdtemp(tmpl) || !realpath(tmpl, ws->root)) {
        snprintf(err, errlen, "cannot create a workspace in %s: %s", base, strerror(errno));
        return -1;
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

void ws_remove_tree(const char *path)
{
    /* FTW_PHYS: a symlink is removed, never followed out of the tree. */
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void ws_destroy(ws_t *ws)
{
    if (ws->root[0])
        ws_remove_tree(ws->root);
    ws->root[0] = '\0';
}

/* Is path equal to root or below it? */
static int inside(const char *root, const char *path)
{
    size_t n = strlen(root);
    return strncmp(root, path, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

int ws_resolve(const ws_t *ws, const char *name, char *out, size_t outlen, char *err, size_t errlen)
{
    if (name[0] == '/') {
        snprintf(err, errlen, "absolute paths are not allowed: %s", name);
        return -1;
    }
    /* Refuse any ".." component before touching the file system. */
    for (const char *p = name; *p;) {
        size_t len = strcspn(p, "/");
        if (len == 2 && p[0] == '.' && p[1] == '.') {
            snprintf(err, errlen, "path leaves the workspace: %s", name);
            return -1;
        }
        p += len;
        while (*p == '/')
            p++;
    }
    if (snprintf(out, outlen, "%s%s%s", ws->root, *name ? "/" : "", name) >= (int)outlen) {
        snprintf(err, errlen, "path too long: %s", name);
        return -1;
    }
    /* Symlinks: the deepest existing ancestor must resolve inside the root. */
    char probe[PATH_MAX], real[PATH_MAX];
    snprintf(probe, sizeof(probe), "%s", out);
    while (!realpath(probe, real)) {
        char *slash = strrchr(probe, '/');
        if (!slash || slash == probe) {
            snprintf(err, errlen, "cannot resolve %s", name);
            return -1;
        }
        *slash = '\0';
    }
    if (!inside(ws->root, real)) {
        snprintf(err, errlen, "path leaves the workspace: %s", name);
        return -1;
    }
    return 0;
}

int ws_write_file(const ws_t *ws, const char *name, const void *data, size_t len, char *err,
                  size_t errlen)
{
    char path[PATH_MAX], tmp[PATH_MAX + 32];
    if (ws_resolve(ws, name, path, sizeof(path), err, errlen) < 0)
        return -1;
    snprintf(tmp, sizeof(tmp), "%s.part-%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "Cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
            goto fail;
        }
        p += w;
        left -= (size_t)w;
    }
    /* Rename only a complete file: a failed upload never leaves a truncated one. */
    if (close(fd) < 0 || rename(tmp, path) < 0) {
        fd = -1;
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        goto fail;
    }
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return -1;
}
