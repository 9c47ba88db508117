/* opt: table-driven long-option parsing shared by every subcommand.
 * Accepts "--name value" and "--name=value" (TVM's C++ server uses the
 * latter), "--" to end options, and -h/--help. */
#ifndef TVMRPC_OPT_H
#define TVMRPC_OPT_H

#include <stddef.h>
#include <stdio.h>

typedef enum opt_kind {
    OPT_FLAG, /* int, set to 1; takes no value */
    OPT_STR,  /* const char *, points into argv */
    OPT_INT,  /* int, range-checked against [min, max] */
    OPT_NUM,  /* double */
} opt_kind_t;

typedef struct opt_spec {
    const char *name; /* without the leading "--" */
    opt_kind_t kind;
    void *dst;
    const char *metavar; /* shown in usage; NULL for flags */
    const char *help;
    long min, max; /* OPT_INT only */
} opt_spec_t;

#define OPT_PARSE_HELP 1

/* Parse argv[0..argc) (argv[0] is NOT skipped: pass argv+1 for a subcommand's
 * args). Positional arguments are collected into pos (up to maxpos).
 * Returns 0, OPT_PARSE_HELP when -h/--help was given, or -1 with a one-line
 * message in err naming the offending option. */
int opt_parse(const opt_spec_t *specs, int argc, char **argv, char **pos, int maxpos, int *npos,
              char *err, size_t errlen);
/* Print "usage: tvmrpc CMD [options] ARGS\n\nSUMMARY\n\noptions:\n..." */
void opt_usage(FILE *fp, const char *cmd, const char *args, const char *summary,
               const opt_spec_t *specs);

#endif
