/* tui.h - the workbench's subcommands (run.c), built when the `tui` feature is on.
 *
 * Same conventions as the headless subcommands (cli/cli.h): argv after the subcommand
 * name, the process exit status returned, errors printed once as "ponder: <message>". */
#ifndef PD_TUI_H
#define PD_TUI_H

/* `ponder run`: open the workbench on a model and stream a generation live. */
int pd_cli_run(int argc, char **argv);
/* `ponder replay`: open the workbench on a saved session. */
int pd_cli_replay(int argc, char **argv);
/* `ponder keys`: print the key bindings (--markdown: docs/keys.md). */
int pd_cli_keys(int argc, char **argv);
/* `ponder` with no arguments: the demo run on a model found, else the sample session. */
int pd_cli_default(int argc, char **argv);

#endif
