/* tvmrpc proxy: not built yet; tracked in the project's issues. */
#include <stdio.h>

#include "cli/commands.h"

int cmd_proxy(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "tvmrpc proxy: not implemented in this version yet\n");
    return 1;
}
