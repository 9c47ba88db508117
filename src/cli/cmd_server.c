/* tvmrpc server: not built yet; tracked in the project's issues. */
#include <stdio.h>

#include "cli/commands.h"

int cmd_server(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "tvmrpc server: not implemented in this version yet\n");
    return 1;
}
