/* chain: what the client verbs (call, run, ls, put, get, rm) share.
 *
 * One way to reach a server (--tracker/--key, --host/--port, a proxy), and
 * steps chained with "+" into ONE session:
 *     tvmrpc put in.bin + run model.so main + get out.bin
 * A server's workspace lives only as long as its session, so a file put by
 * one tvmrpc command is gone for the next; steps of one chain share it.
 * main.c dispatches every verb to chain_main. */
#ifndef TVMRPC_CLI_CHAIN_H
#define TVMRPC_CLI_CHAIN_H

#include <stddef.h>

#include "cli/opt.h"
#include "tvmrpc/client.h"

#define CHAIN_MAX_POS 64

typedef struct step step_t;

/* One verb. Every hook reads only the step fields it declared. */
typedef struct verb {
    const char *name;
    const char *args;    /* positional arguments in the usage line */
    const char *summary; /* --help text */
    /* Append the verb's own option specs; returns how many. */
    int (*specs)(step_t *st, opt_spec_t *out);
    /* Local checks before anything is sent: 0, CHECK_USAGE (usage printed,
     * exit 2) or CHECK_LOCAL (exit 1), with a message in err. */
    int (*check)(step_t *st, char *err, size_t errlen);
    /* Do it on the open session: 0, or -1 with a message in err. */
    int (*exec)(tvmrpc_sess_t *s, step_t *st, char *err, size_t errlen);
} verb_t;

enum { CHECK_OK = 0, CHECK_USAGE = -1, CHECK_LOCAL = -2 };

struct step {
    const verb_t *verb;
    int index; /* 0 = the session's first step */
    char *pos[CHAIN_MAX_POS];
    int npos;
    /* Verb options (each verb uses its own). */
    const char *to, *as;
    int force, longfmt, number, repeat;
};

extern const verb_t verb_call, verb_run, verb_ls, verb_put, verb_get, verb_rm;

/* argv[0] is the first step's verb name. Returns the exit status. */
int chain_main(int argc, char **argv);

#endif
