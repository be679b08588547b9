/* cli_table.c - the subcommand table; the workbench's entries only when it is built
 * (`ponder` with no arguments: tui/run.c, or the usage in a headless build). */
#include "config.h"

#include "cli.h"
#include "cli_remote.h"

#include <stdio.h>

#if HAVE_TUI
#include "tui.h"
#endif

const struct pd_subcmd pd_subcmds[] = {
#if HAVE_TUI
    {"run", "open the workbench on a model and stream a generation live", pd_cli_run},
    {"replay", "open the workbench on a saved session", pd_cli_replay},
    {"keys", "print the workbench key bindings (--markdown: docs/keys.md)", pd_cli_keys},
#endif
    {"info", "describe a GGUF model (architecture, sizes, types, tokenizer)", pd_cli_info},
    {"tokenize", "turn text into token ids", pd_cli_tokenize},
    {"score", "per-token logprob, entropy and top-k of a text under a model", pd_cli_score},
    {"generate", "generate text headless, optionally as JSON lines with metrics", pd_cli_generate},
    {"bench", "measure prefill and decode speed and peak memory", pd_cli_bench},
    {"serve", "serve a model over the OpenAI-compatible HTTP API (docs/remote.md)",
     pd_cli_serve},
    {"import", "import JSONL reasoning traces as sessions", pd_cli_import},
    {"export", "export sessions as JSONL training data", pd_cli_export},
    {"ls", "list saved sessions (filters: --tag, --model, --source, --since, --limit)",
     pd_cli_ls},
    {"show", "print a saved session", pd_cli_show},
    {"search", "full-text search over the saved sessions' conversations and traces",
     pd_cli_search},
    {"tag", "tag a saved session (--rm: untag)", pd_cli_tag},
    {"rm", "delete saved sessions", pd_cli_rm},
    {"analyze", "reasoning steps and their metrics for stored or JSONL traces", pd_cli_analyze},
    {"prune", "prune reasoning steps by a strategy, verify, export", pd_cli_prune},
    {"eval", "accuracy, thinking, KV slots and speed on a problem set under a grid of "
             "settings", pd_cli_eval},
    {"plot", "write an SVG of a session: surprisal, entropy, steps, prunes, evictions",
     pd_cli_plot},
    {NULL, NULL, NULL},
};
