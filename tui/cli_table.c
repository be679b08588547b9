/* cli_table.c - the subcommand table and what `ponder` does with no arguments. */
#include "cli.h"

#include <stdio.h>

const struct pd_subcmd pd_subcmds[] = {
    {"info", "describe a GGUF model (architecture, sizes, types, tokenizer)", pd_cli_info},
    {"tokenize", "turn text into token ids", pd_cli_tokenize},
    {"score", "per-token logprob, entropy and top-k of a text under a model", pd_cli_score},
    {"generate", "generate text headless, optionally as JSON lines with metrics", pd_cli_generate},
    {"bench", "measure prefill and decode speed and peak memory", pd_cli_bench},
    {"import", "import JSONL reasoning traces as sessions", pd_cli_import},
    {"export", "export sessions as JSONL training data", pd_cli_export},
    {"ls", "list saved sessions", pd_cli_ls},
    {"show", "print a saved session", pd_cli_show},
    {"analyze", "reasoning steps and their metrics for stored or JSONL traces", pd_cli_analyze},
    {"prune", "prune reasoning steps by a strategy, verify, export", pd_cli_prune},
    {NULL, NULL, NULL},
};

int pd_cli_default(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "ponder: no command given (see 'ponder --help')\n");
    return 2;
}
