/* One entry point per subcommand; argv[0] is the subcommand name. Each
 * returns the process exit status (2 for usage errors, as argparse does). */
#ifndef TVMRPC_COMMANDS_H
#define TVMRPC_COMMANDS_H

int cmd_tracker(int argc, char **argv);
int cmd_query(int argc, char **argv);
int cmd_server(int argc, char **argv);
int cmd_proxy(int argc, char **argv);
/* call, run, ls, put, get, rm: chain_main (cli/chain.h), one entry for all
 * the client verbs, since any of them may start a "+" chain. */
int cmd_bench(int argc, char **argv);

#define EXIT_USAGE 2

#endif
