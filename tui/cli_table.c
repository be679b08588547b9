/* cli_table.c - the subcommand table and what `ponder` does with no arguments. */
#include "cli.h"

#include <stdio.h>

const struct pd_subcmd pd_subcmds[] = {
    {"import", "import JSONL reasoning traces as sessions", pd_cli_import},
    {"export", "export sessions as JSONL training data", pd_cli_export},
    {"ls", "list saved sessions", pd_cli_ls},
    {"show", "print a saved session", pd_cli_show},
    {NULL, NULL, NULL},
};

int pd_cli_default(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "ponder: no command given (see 'ponder --help')\n");
    return 2;
}
