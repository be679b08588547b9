/* cli_remote.h - remote engines on the command line: the options every model command
 * shares for them (--engine URL, --api-key, --remote-model, --server, --timeout), the
 * local vocabulary a remote engine is driven with, the scorer over a remote engine, the
 * identity a remote model gets in the store, and the `serve` and `bench --engine`
 * commands.
 *
 * The options parse in every build; in a build without remote engines (-Dremote=disabled)
 * using them fails with a message saying so.
 *
 * Ownership: option strings are borrowed from argv. Thread-safety: main thread, except
 * that a scorer engine belongs to the thread that uses its client. */
#ifndef PD_CLI_REMOTE_H
#define PD_CLI_REMOTE_H

#include "config.h"

#include <stdbool.h>
#include <stdint.h>

#include "cli.h"
#include "chat.h"
#include "gguf.h"
#include "tokenizer.h"
#if HAVE_REMOTE
#include "remote.h"
#include "score.h"
#include "store.h"
#endif

struct pd_cli_engine {
    const char *url;        /* --engine URL; NULL: the model runs in this process */
    const char *api_key;    /* --api-key, else $PONDER_API_KEY, else none */
    const char *model;      /* --remote-model NAME; NULL: the server's first model */
    const char *server;     /* --server KIND; NULL: detected */
    long timeout_s;         /* --timeout S: a request silent this long fails (default 120) */
};

void pd_cli_engine_init(struct pd_cli_engine *e);

/* Parses one engine option at a->i: 1 consumed, 0 not one, -1 usage error (printed). */
int pd_cli_engine_opt(struct pd_argv *a, struct pd_cli_engine *e);

/* The options' help lines. */
extern const char pd_cli_engine_help[];

/* True when this ponder was built with remote engines. */
bool pd_cli_remote_built(void);

/* A tokenizer and chat format from a GGUF file, for driving a remote engine: only the
 * metadata is used, so a vocabulary-only GGUF of a large model will do. chat_family NULL
 * detects the format from the file. */
struct pd_cli_vocab {
    struct pd_gguf *gguf;   /* owned */
    struct pd_tok *tok;     /* owned */
    struct pd_chat_format chat;
};

enum pd_status pd_cli_vocab_open(const char *path, const char *chat_family,
                                 struct pd_cli_vocab *v, struct pd_err *err);
void pd_cli_vocab_close(struct pd_cli_vocab *v);

#if HAVE_REMOTE
/* Connects to e->url (retries: extra attempts for transient failures) and, when tok is
 * given, checks that the server tokenizes like it. Errors name the engine. */
enum pd_status pd_cli_engine_open(const struct pd_cli_engine *e, uint32_t retries,
                                  const struct pd_tok *tok, struct pd_remote **out,
                                  struct pd_err *err);

/* A scorer engine (analysis/score.h) whose callbacks use client r (borrowed). */
struct pd_score_engine pd_cli_score_engine(struct pd_remote *r, uint32_t n_vocab);

/* The store identity of a remote model: name "<model>@<base URL>", architecture
 * "remote:<server>", sha256 of the engine URL and model name. */
enum pd_status pd_cli_remote_model_put(struct pd_store *st, const struct pd_remote_info *info,
                                       int64_t *id, struct pd_err *err);

/* The session meta JSON of a recording made with a remote engine:
 * {"engine": {"url", "server", "model"}}; written into out (cap bytes). */
void pd_cli_remote_meta(const struct pd_remote_info *info, char *out, size_t cap);
#endif

/* `ponder serve` and `ponder bench --engine`. */
int pd_cli_serve(int argc, char **argv);
int pd_cli_bench_remote(int argc, char **argv);

#endif
