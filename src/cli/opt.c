#include "opt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const opt_spec_t *opt_find(const opt_spec_t *specs, const char *name, size_t len)
{
    for (const opt_spec_t *s = specs; s->name; s++) {
        if (strlen(s->name) == len && strncmp(s->name, name, len) == 0)
            return s;
    }
    return NULL;
}

static int opt_store(const opt_spec_t *s, const char *val, char *err, size_t errlen)
{
    char *end;
    switch (s->kind) {
    case OPT_FLAG:
        *(int *)s->dst = 1;
        return 0;
    case OPT_STR:
        *(const char **)s->dst = val;
        return 0;
    case OPT_INT: {
        errno = 0;
        long v = strtol(val, &end, 10);
        if (*val == '\0' || *end != '\0' || errno || v < s->min || v > s->max) {
            snprintf(err, errlen, "invalid value '%s' for --%s (expected an integer in [%ld, %ld])",
                     val, s->name, s->min, s->max);
            return -1;
        }
        *(int *)s->dst = (int)v;
        return 0;
    }
    case OPT_NUM: {
        errno = 0;
        double v = strtod(val, &end);
        if (*val == '\0' || *end != '\0' || errno) {
            snprintf(err, errlen, "invalid value '%s' for --%s (expected a number)", val, s->name);
            return -1;
        }
        *(double *)s->dst = v;
        return 0;
    }
    }
    return -1;
}

int opt_parse(const opt_spec_t *specs, int argc, char **argv, char **pos, int maxpos, int *npos,
              char *err, size_t errlen)
{
    int n = 0;
    int only_pos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (n >= maxpos) {
                snprintf(err, errlen, "unexpected argument '%s'", a);
                return -1;
            }
            pos[n++] = argv[i];
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return OPT_PARSE_HELP;
        if (a[1] != '-') {
            snprintf(err, errlen, "unknown option '%s'", a);
            return -1;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const opt_spec_t *s = opt_find(specs, name, len);
        if (!s) {
            snprintf(err, errlen, "unknown option '--%.*s'", (int)len, name);
            return -1;
        }
        const char *val = NULL;
        if (s->kind == OPT_FLAG) {
            if (eq) {
                snprintf(err, errlen, "option '--%s' takes no value", s->name);
                return -1;
            }
        } else if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            snprintf(err, errlen, "option '--%s' needs a value", s->name);
            return -1;
        }
        if (opt_store(s, val, err, errlen) < 0)
            return -1;
    }
    if (npos)
        *npos = n;
    return 0;
}

void opt_usage(FILE *fp, const char *cmd, const char *args, const char *summary,
               const opt_spec_t *specs)
{
    fprintf(fp, "usage: tvmrpc %s [options]%s%s\n\n%s\n\noptions:\n", cmd, args ? " " : "",
            args ? args : "", summary);
    for (const opt_spec_t *s = specs; s->name; s++) {
        char left[64];
        snprintf(left, sizeof(left), "--%s%s%s", s->name, s->metavar ? " " : "",
                 s->metavar ? s->metavar : "");
        fprintf(fp, "  %-26s %s\n", left, s->help);
    }
    fprintf(fp, "  %-26s %s\n", "-h, --help", "show this help and exit");
}
