/* tvmrpc: one binary for the whole TVM RPC system (tracker, proxy, server,
 * query tool). Dispatches to the subcommand named by argv[1]. */
#include <stdio.h>
#include <string.h>

#include "cli/chain.h"
#include "cli/commands.h"

#define PROTOCOL_VERSION "0.8.0"

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command_t;

static const command_t commands[] = {
    {"tracker", cmd_tracker, "run an RPC tracker (python -m tvm.exec.rpc_tracker)"},
    {"proxy", cmd_proxy, "run an RPC proxy (python -m tvm.exec.rpc_proxy)"},
    {"server", cmd_server, "run an RPC server on this device (python -m tvm.exec.rpc_server)"},
    {"query", cmd_query,
     "print a tracker's servers and queues (python -m tvm.exec.query_rpc_tracker)"},
    {"call", chain_main, "call a global function on a remote server and print the result"},
    {"run", chain_main,
     "upload a compiled library to a server, load it, call (and time) a function"},
    {"ls", chain_main, "list the files in a server's session workspace"},
    {"put", chain_main, "upload local files into a server's session workspace"},
    {"get", chain_main, "download files from a server's session workspace"},
    {"rm", chain_main, "remove files from a server's session workspace"},
    {"bench", cmd_bench, "measure a server, proxy and tracker against raw loopback TCP"},
    {NULL, NULL, NULL},
};

static void usage(FILE *fp)
{
    fprintf(fp, "usage: tvmrpc COMMAND [options]\n\n"
                "The Apache TVM RPC system in one binary; flags match TVM's tools.\n\n"
                "commands:\n");
    for (const command_t *c = commands; c->name; c++)
        fprintf(fp, "  %-10s %s\n", c->name, c->summary);
    fprintf(fp, "\ncall, run, ls, put, get and rm chain with '+' into one session, whose\n"
                "workspace the steps share (each session starts with an empty one):\n"
                "  tvmrpc put --host 10.0.0.7:9090 in.bin + run model.so main + get out.bin\n");
    fprintf(fp, "\n  tvmrpc COMMAND --help   options of one command\n"
                "  tvmrpc --version        version and protocol\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("tvmrpc %s (TVM RPC protocol %s)\n", TVMRPC_VERSION, PROTOCOL_VERSION);
        return 0;
    }
    for (const command_t *c = commands; c->name; c++) {
        if (strcmp(name, c->name) == 0)
            return c->fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "tvmrpc: unknown command '%s'\n", name);
    usage(stderr);
    return EXIT_USAGE;
}
