/* cli_table.c - the subcommand table and what `ponder` does with no arguments. */
#include "cli.h"

#include <stdio.h>

const struct pd_subcmd pd_subcmds[] = {
    {NULL, NULL, NULL},
};

int pd_cli_default(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "ponder: no command given (see 'ponder --help')\n");
    return 2;
}
