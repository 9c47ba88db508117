/* Workspace verbs, built on the tvm.rpc.server.* functions every TVM server has:
 *   tvmrpc ls  [conn] [DIR]                  names in the session's workspace
 *   tvmrpc put [conn] FILE... [--as NAME]    upload local files
 *   tvmrpc get [conn] NAME... [--to PATH]    download into local files, never half-written
 *   tvmrpc rm  [conn] NAME...                remove; a missing file is not an error
 * The workspace lives as long as the session, so these are mostly useful
 * chained with "+" (chain.h): tvmrpc put in.bin + run m.so + get out.bin */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/chain.h"
#include "cli/commands.h"
#include "tvmrpc/client.h"

/* Transfers smaller than this finish before a progress line would help. */
#define PROGRESS_MIN ((uint64_t)1 << 20)
#define MIB(n) ((double)(n) / 1048576.0)

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* ---- progress on a terminal ---------------------------------------------------- */

typedef struct progress {
    const char *verb, *name;
    int on;    /* stderr is a terminal */
    int shown; /* a progress line is on screen */
    double start, last;
} progress_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void progress_begin(progress_t *p, const char *verb, const char *name)
{
    memset(p, 0, sizeof(*p));
    p->verb = verb;
    p->name = name;
    p->on = isatty(STDERR_FILENO);
    p->start = now_s();
}

/* tvmrpc_progress_fn: redraw at most ten times a second, and at the end. */
static void progress_cb(void *user, uint64_t done, uint64_t total)
{
    progress_t *p = user;
    double now = now_s();
    if (!p->on || total < PROGRESS_MIN || (done < total && now - p->last < 0.1))
        return;
    p->last = now;
    double el = now - p->start;
    fprintf(stderr, "\r%s %s  %.1f / %.1f MiB  %3d%%  %.1f MiB/s\033[K", p->verb, p->name,
            MIB(done), MIB(total), (int)(done * 100 / total), el > 0 ? MIB(done) / el : 0.0);
    p->shown = 1;
}

/* Replace the progress line by a summary (ok) or clear it for the error. */
static void progress_end(progress_t *p, size_t bytes, int ok)
{
    if (!p->shown)
        return;
    double el = now_s() - p->start;
    if (ok)
        fprintf(stderr, "\r%s %s: %.1f MiB in %.2f s (%.1f MiB/s)\033[K\n", p->verb, p->name,
                MIB(bytes), el, el > 0 ? MIB(bytes) / el : 0.0);
    else
        fprintf(stderr, "\r\033[K");
}

/* ---- ls ------------------------------------------------------------------------ */

static int ls_specs(step_t *st, opt_spec_t *out)
{
    const opt_spec_t specs[] = {
        {"long", OPT_FLAG, &st->longfmt, NULL,
         "also print sizes: DOWNLOADS every file to measure it", 0, 0},
    };
    memcpy(out, specs, sizeof(specs));
    return 1;
}

static int ls_check(step_t *st, char *err, size_t errlen)
{
    if (st->npos > 1) {
        snprintf(err, errlen, "ls takes at most one DIR");
        return CHECK_USAGE;
    }
    return CHECK_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "dir/a,dir/b," (full paths, as TVM's servers answer) -> sorted base names,
 * in place. Returns the count, or -1 when out of memory. */
static int split_listing(char *list, char ***names)
{
    int n = 0, cap = 0;
    char **v = NULL;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        if (n == cap) {
            char **nv = realloc(v, (size_t)(cap = cap ? cap * 2 : 16) * sizeof(*v));
            if (!nv) {
                free(v);
                return -1;
            }
            v = nv;
        }
        v[n++] = (char *)base_name(tok);
    }
    if (n)
        qsort(v, (size_t)n, sizeof(*v), cmp_str);
    *names = v;
    return n;
}

/* Size column of ls --long: the protocol has no stat, so a file is measured
 * by downloading it; what cannot be downloaded but listed is a directory. */
static void ls_size(tvmrpc_sess_t *s, const char *dir, const char *name, char *out, size_t outlen)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s%s%s", dir, *dir ? "/" : "", name);
    const void *data;
    size_t len;
    char *sub = NULL;
    if (tvmrpc_download_progress(s, path, &data, &len, NULL, NULL) == 0)
        snprintf(out, outlen, "%zu", len);
    else if (tvmrpc_listdir(s, path, &sub) == 0)
        snprintf(out, outlen, "dir");
    else
        snprintf(out, outlen, "?");
    free(sub);
}

static int ls_exec(tvmrpc_sess_t *s, step_t *st, char *err, size_t errlen)
{
    const char *dir = st->npos ? st->pos[0] : "";
    char *list = NULL, **names = NULL; /* names point into list */
    if (tvmrpc_listdir(s, dir, &list) < 0) {
        snprintf(err, errlen, "%s: %s", *dir ? dir : ".", tvmrpc_last_error(s));
        return -1;
    }
    int n = split_listing(list, &names);
    for (int i = 0; i < n; i++) {
        char size[32];
        if (!st->longfmt) {
            printf("%s\n", names[i]);
            continue;
        }
        ls_size(s, dir, names[i], size, sizeof(size));
        printf("%12s  %s\n", size, names[i]);
    }
    fflush(stdout);
    if (n == 0 && st->index == 0 && isatty(STDERR_FILENO))
        fprintf(stderr, "tvmrpc ls: empty: each session starts with a fresh workspace; chain "
                        "steps with '+' to see what they put there\n");
    free(names);
    free(list);
    if (n < 0)
        snprintf(err, errlen, "out of memory");
    return n < 0 ? -1 : 0;
}

const verb_t verb_ls = {
    "ls",
    "[DIR]",
    "List the names in the session's workspace (or in DIR inside it), sorted.\n"
    "Servers offer no stat: --long measures each file by downloading it.",
    ls_specs,
    ls_check,
    ls_exec,
};

/* ---- put ----------------------------------------------------------------------- */

static int put_specs(step_t *st, opt_spec_t *out)
{
    const opt_spec_t specs[] = {
        {"as", OPT_STR, &st->as, "NAME",
         "remote name of the (single) FILE (default: its base name)", 0, 0},
    };
    memcpy(out, specs, sizeof(specs));
    return 1;
}

static int put_check(step_t *st, char *err, size_t errlen)
{
    if (st->npos < 1 || (st->as && st->npos > 1)) {
        snprintf(err, errlen, st->npos < 1 ? "missing FILE" : "--as names a single FILE");
        return CHECK_USAGE;
    }
    for (int i = 0; i < st->npos; i++) {
        struct stat sb;
        errno = 0;
        if (stat(st->pos[i], &sb) < 0 || !S_ISREG(sb.st_mode) || access(st->pos[i], R_OK) < 0) {
            snprintf(err, errlen, "%s: %s", st->pos[i],
                     errno ? strerror(errno) : "not a regular file");
            return CHECK_LOCAL;
        }
    }
    return CHECK_OK;
}

/* The whole file, mapped (read-only, no copy); *map NULL for an empty file. */
static int map_file(const char *path, void **map, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    *map = NULL;
    if (fd < 0 || fstat(fd, &sb) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *len = (size_t)sb.st_size;
    if (*len && (*map = mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        *map = NULL;
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static int put_one(tvmrpc_sess_t *s, const char *path, const char *name, char *err, size_t errlen)
{
    void *map;
    size_t len;
    if (map_file(path, &map, &len, err, errlen) < 0)
        return -1;
    progress_t p;
    progress_begin(&p, "put", name);
    int rc = tvmrpc_upload_progress(s, map ? map : "", len, name, progress_cb, &p);
    progress_end(&p, len, rc == 0);
    if (map)
        munmap(map, len);
    if (rc < 0)
        snprintf(err, errlen, "%s: %s", path, tvmrpc_last_error(s));
    return rc < 0 ? -1 : 0;
}

static int put_exec(tvmrpc_sess_t *s, step_t *st, char *err, size_t errlen)
{
    for (int i = 0; i < st->npos; i++) {
        const char *name = st->as ? st->as : base_name(st->pos[i]);
        if (put_one(s, st->pos[i], name, err, errlen) < 0)
            return -1;
    }
    return 0;
}

const verb_t verb_put = {
    "put",
    "FILE...",
    "Upload local files into the session's workspace, each under its base name.\n"
    "The server writes each to a temporary name and renames it, so a failed upload\n"
    "leaves nothing behind; an existing remote file is replaced.",
    put_specs,
    put_check,
    put_exec,
};

/* ---- get ----------------------------------------------------------------------- */

static int get_specs(step_t *st, opt_spec_t *out)
{
    const opt_spec_t specs[] = {
        {"to", OPT_STR, &st->to, "PATH", "local file (one NAME) or existing directory (default .)",
         0, 0},
        {"force", OPT_FLAG, &st->force, NULL, "overwrite existing local files", 0, 0},
    };
    memcpy(out, specs, sizeof(specs));
    return 2;
}

/* Local path that remote NAME is saved to. */
static void get_dest(const step_t *st, const char *name, char *out, size_t outlen)
{
    struct stat sb;
    if (st->to && stat(st->to, &sb) == 0 && S_ISDIR(sb.st_mode))
        snprintf(out, outlen, "%s/%s", st->to, base_name(name));
    else
        snprintf(out, outlen, "%s", st->to ? st->to : base_name(name));
}

/* Can a temporary file be created next to path? */
static int dir_writable(const char *path)
{
    char dir[PATH_MAX];
    const char *base = base_name(path);
    snprintf(dir, sizeof(dir), "%.*s", (int)(base - path), path);
    return access(*dir ? dir : ".", W_OK | X_OK) == 0;
}

static int get_check(step_t *st, char *err, size_t errlen)
{
    struct stat sb;
    int to_dir = st->to && stat(st->to, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (st->npos < 1 || (st->to && st->npos > 1 && !to_dir)) {
        const char *why = "--to must be an existing directory for several NAMEs";
        snprintf(err, errlen, "%s", st->npos < 1 ? "missing NAME" : why);
        return CHECK_USAGE;
    }
    for (int i = 0; i < st->npos; i++) {
        char dest[PATH_MAX];
        get_dest(st, st->pos[i], dest, sizeof(dest));
        if (!*base_name(st->pos[i]) || (lstat(dest, &sb) == 0 && S_ISDIR(sb.st_mode))) {
            snprintf(err, errlen, "%s: give a file name (--to PATH)", st->pos[i]);
            return CHECK_USAGE;
        }
        if (!st->force && lstat(dest, &sb) == 0) {
            snprintf(err, errlen, "%s exists; use --force to overwrite it", dest);
            return CHECK_LOCAL;
        }
        if (!dir_writable(dest)) {
            snprintf(err, errlen, "%s: cannot write there: %s", dest, strerror(errno));
            return CHECK_LOCAL;
        }
    }
    return CHECK_OK;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Move the finished temporary file to dest. Without force, link() refuses
 * atomically if dest appeared meanwhile; file systems without hard links
 * fall back to a check then rename. */
static int publish(const char *tmp, const char *dest, int force)
{
    if (force)
        return rename(tmp, dest);
    if (link(tmp, dest) == 0)
        return unlink(tmp), 0;
    if (errno == EEXIST || access(dest, F_OK) == 0) {
        errno = EEXIST;
        return -1;
    }
    return rename(tmp, dest);
}

/* Write dest through a hidden temporary file next to it (same file system),
 * synced, then renamed: dest is either absent or complete, never partial. */
static int write_atomic(const char *dest, const void *data, size_t len, int force, char *err,
                        size_t errlen)
{
    char tmp[PATH_MAX + 32];
    const char *base = base_name(dest);
    snprintf(tmp, sizeof(tmp), "%.*s.%s.tvmrpc-XXXXXX", (int)(base - dest), dest, base);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", dest, strerror(errno));
        return -1;
    }
    mode_t mask = umask(0);
    umask(mask);
    int bad = fchmod(fd, 0666 & ~mask) < 0 || write_all(fd, data, len) < 0 || fsync(fd) < 0;
    bad = close(fd) < 0 || bad;
    if (bad || publish(tmp, dest, force) < 0) {
        snprintf(err, errlen, "%s: %s", dest, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int get_one(tvmrpc_sess_t *s, const step_t *st, const char *name, char *err, size_t errlen)
{
    char dest[PATH_MAX];
    get_dest(st, name, dest, sizeof(dest));
    progress_t p;
    progress_begin(&p, "get", name);
    const void *data;
    size_t len = 0;
    int rc = tvmrpc_download_progress(s, name, &data, &len, progress_cb, &p);
    progress_end(&p, len, rc == 0);
    if (rc < 0) {
        /* The usual surprise: the file was put by an earlier, separate command. */
        int hint = rc == TVMRPC_ERR_REMOTE && st->index == 0;
        snprintf(err, errlen, "%s: %s%s", name, tvmrpc_last_error(s),
                 hint ? "\nhint: each tvmrpc command is a new session with an empty workspace; "
                        "chain steps with '+' (tvmrpc put x + run m.so + get y)"
                      : "");
        return -1;
    }
    return write_atomic(dest, data, len, st->force, err, errlen);
}

static int get_exec(tvmrpc_sess_t *s, step_t *st, char *err, size_t errlen)
{
    for (int i = 0; i < st->npos; i++)
        if (get_one(s, st, st->pos[i], err, errlen) < 0)
            return -1;
    return 0;
}

const verb_t verb_get = {
    "get",
    "NAME...",
    "Download files from the session's workspace into local files (default: the base\n"
    "name in the current directory). An existing local file is kept unless --force;\n"
    "a file is written to a temporary name and renamed, so it is never partial.",
    get_specs,
    get_check,
    get_exec,
};

/* ---- rm ------------------------------------------------------------------------ */

static int rm_check(step_t *st, char *err, size_t errlen)
{
    if (st->npos < 1) {
        snprintf(err, errlen, "missing NAME");
        return CHECK_USAGE;
    }
    return CHECK_OK;
}

/* The server never fails a remove (missing files included), as TVM's. */
static int rm_exec(tvmrpc_sess_t *s, step_t *st, char *err, size_t errlen)
{
    for (int i = 0; i < st->npos; i++) {
        if (tvmrpc_remove(s, st->pos[i]) < 0) {
            snprintf(err, errlen, "%s: %s", st->pos[i], tvmrpc_last_error(s));
            return -1;
        }
    }
    return 0;
}

const verb_t verb_rm = {
    "rm",
    "NAME...",
    "Remove files from the session's workspace. A name that does not exist is not an\n"
    "error (the server's remove never fails, as TVM's).",
    NULL,
    rm_check,
    rm_exec,
};
