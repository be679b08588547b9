/* main.c - ponder's entry point: global options and subcommand dispatch, nothing else. */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "afile.h"
#include "log.h"
#include "cli.h"
#if HAVE_TUI
#include "tui.h"
#endif

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ponder [-v] [--version] [--help] <command> [args]\n"
            "\n"
            "ponder is a terminal workbench for the reasoning traces of language models.\n"
            "\n"
            "commands:\n");
    for (const struct pd_subcmd *c = pd_subcmds; c->name; c++) {
        fprintf(f, "  %-10s %s\n", c->name, c->summary);
    }
    fprintf(f,
            "\n"
            "global options:\n"
            "  -v, --verbose  more log output (repeat for debug)\n"
            "  --version      print the version and exit\n"
            "  --help         print this help and exit\n"
            "\n"
            "Run 'ponder <command> --help' for a command's options.\n");
}

/* A --help (or -h) anywhere after the command moves to the front as --help, so that every command
 * prints its usage and exits 0 even after an option that takes a value ("score --in
 * --help") or a bad one ("generate --kv bogus --help"); the other arguments keep their
 * order, so modes chosen by an option (score --in, generate --in) still pick their usage. */
static void help_first(int argc, char **argv)
{
    static char help[] = "--help"; /* -h reads as --help: every command knows that one */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            memmove(argv + 2, argv + 1, (size_t)(i - 1) * sizeof *argv);
            argv[1] = help;
            return;
        }
    }
}

/* SIGINT/SIGTERM during a headless command: remove the temporary files of outputs being
 * written (an export, a plot), then end as the signal would (the workbench installs its
 * own handling when it starts). */
static void on_terminate(int sig)
{
    pd_afile_unlink_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_terminate;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int i = 1;
    int verbose = 0;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            printf("ponder %s (cuda backend: %s, workbench: %s)\n", PONDER_VERSION,
                   HAVE_CUDA ? "built" : "not built", HAVE_TUI ? "built" : "not built");
            return 0;
        }
        if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            verbose++;
            continue;
        }
        if (strcmp(a, "-vv") == 0) {
            verbose += 2;
            continue;
        }
        return pd_cli_fail(2, "unknown option '%s' (see 'ponder --help')", a);
    }
    pd_log_set_level(verbose >= 2 ? PD_LOG_DEBUG : verbose == 1 ? PD_LOG_INFO : PD_LOG_WARN);
    if (i >= argc) {
#if HAVE_TUI
        return pd_cli_default(argc - i, argv + i);
#else
        usage(stderr);
        fprintf(stderr, "\nThis ponder was built without the workbench (-Dtui=disabled).\n");
        return 2;
#endif
    }
    for (const struct pd_subcmd *c = pd_subcmds; c->name; c++) {
        if (strcmp(argv[i], c->name) == 0) {
            pd_cli_set_command(c->name);
            help_first(argc - i, argv + i);
            return c->run(argc - i, argv + i);
        }
    }
    return pd_cli_fail(2, "unknown command '%s' (see 'ponder --help')", argv[i]);
}
