/* store_jsonl.h - JSONL import and export of reasoning traces.
 *
 * Import reads one trace per line and auto-detects its shape:
 *   - TRL conversational: {"messages": [{"role": ..., "content": ...}, ...]}; an assistant
 *     message may carry Qwen3's "reasoning_content";
 *   - ShareGPT: {"conversations": [{"from": human|user|gpt|assistant|system, "value": ...}]}
 *     with an optional top-level "system";
 *   - prompt/completion: one of "problem", "question", "prompt" plus one of "generation",
 *     "response", "completion", "solution", "answer" (first present wins, in that order),
 *     optional "system" and "reasoning_content";
 *   - ponder records ({"ponder": 1, ...}, as export writes them): restored with metrics,
 *     steps and annotations (store_jsonl_ponder.c).
 * When the conversation ends with an assistant message, that message is the trace: its
 * thinking is split off at <think>...</think> (or <|begin_of_thought|>...
 * <|end_of_thought|>, or taken from reasoning_content). Top-level fields not used are
 * kept as the session's meta. Each record becomes one session without metrics: its text
 * is stored as segment rows (token id -1, PD_TOKF_NO_METRICS) - one prompt row per
 * message before the trace, then the thinking and the answer cut after each blank-line
 * run - so that steps can be marked before scoring, and a scoring pass can replace the
 * rows with real tokens (pd_store_tokens_replace). Exact rules: docs/schema.md.
 *
 * Export writes one line per session in one of four formats. The final assistant message
 * is rebuilt from the session's think and answer tokens, pruned steps left out, in the
 * canonical form "<think>\n{thinking}\n</think>\n\n{answer}" (or "{answer}" without
 * thinking); bytes that are not UTF-8 are cleaned (a cut-off last character dropped,
 * others replaced by U+FFFD). JSON is written compact (no spaces), UTF-8 unescaped, keys
 * in the documented order. Import followed by export gives back the same bytes for files
 * in that form.
 *
 * Errors name "file:line: reason". Import never stores part of a record: each record is
 * one savepoint. Threads: as struct pd_store (one owner). */
#ifndef PD_STORE_JSONL_H
#define PD_STORE_JSONL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "status.h"
#include "store.h"

/* Longest line import accepts by default (a longer one is a per-line error). */
#define PD_JSONL_LINE_MAX_DEFAULT ((size_t)64 << 20)
/* The deepest nesting of arrays and objects an imported record may have. */
#define PD_JSONL_DEPTH_MAX 64

struct pd_import_params {
    bool strict;            /* stop at the first bad line and keep nothing of the file */
    size_t line_max;        /* 0: PD_JSONL_LINE_MAX_DEFAULT */
    size_t batch_records;   /* records per commit when not strict; 0: 256 */
    /* Called for each rejected line with "file:line: reason". Optional. */
    void (*on_error)(void *ud, const struct pd_err *e);
    /* Called now and then with bytes read and the file size (0 if unknown). Optional. */
    void (*on_progress)(void *ud, uint64_t done, uint64_t total);
    void *ud;               /* borrowed: passed to the callbacks */
};

struct pd_import_result {
    uint64_t n_lines;       /* lines read, blank ones included */
    uint64_t n_imported;    /* sessions created */
    uint64_t n_failed;      /* lines rejected */
    int64_t first_id;       /* first and last session created, 0 when none */
    int64_t last_id;
};

/* Imports every record of a JSONL file (see above). Non-strict: bad lines are reported
 * through on_error and skipped; returns PD_OK when the file could be read. Strict: the
 * first bad line's error is returned (PD_EFORMAT) and nothing from the file is stored.
 * PD_EIO when the file cannot be read. The store must not be inside pd_store_begin.
 * params may be NULL; res may be NULL. Empty files and blank lines are fine. */
enum pd_status pd_jsonl_import_file(struct pd_store *st, const char *path,
                                    const struct pd_import_params *params,
                                    struct pd_import_result *res, struct pd_err *err);

/* Parses one record (line[0..len), without the newline) and stores it as a session.
 * `where` ("file:line") prefixes error messages and becomes the session's source as
 * "import:<where>". *id (may be NULL) receives the session id. Atomic. */
enum pd_status pd_jsonl_import_record(struct pd_store *st, const char *line, size_t len,
                                      const char *where, int64_t *id, struct pd_err *err);

enum pd_jsonl_format {
    PD_JSONL_MESSAGES,          /* {"messages":[{"role":..,"content":..},...]} */
    PD_JSONL_SHAREGPT,          /* {"conversations":[{"from":..,"value":..},...]} */
    PD_JSONL_PROMPT_COMPLETION, /* {"system":..?,"prompt":..,"completion":..} */
    PD_JSONL_PONDER,            /* everything: session, tokens with metrics, steps, ... */
    PD_JSONL_FORMAT_COUNT
};

/* "messages", "sharegpt", "prompt-completion", "ponder"; NULL when out of range. */
const char *pd_jsonl_format_name(enum pd_jsonl_format f);
/* PD_JSONL_FORMAT_COUNT when unknown. */
enum pd_jsonl_format pd_jsonl_format_parse(const char *s);

struct pd_export_params {
    enum pd_jsonl_format format;
    const char *tag;                /* only sessions with this tag; NULL: any (borrowed) */
    const int64_t *session_ids;     /* only these sessions (borrowed); NULL: all */
    size_t n_session_ids;
    bool pruned_only;               /* only sessions with at least one pruned step */
    /* only sessions whose difficulty (store_labels.h: 1 - the pass rate of their question)
     * is known and inside [difficulty_min, difficulty_max] */
    bool difficulty_filter;
    double difficulty_min;
    double difficulty_max;
    /* Called after each session with (done, total). Optional. */
    void (*on_progress)(void *ud, uint64_t done, uint64_t total);
    void *ud;               /* borrowed: passed to the callbacks */
};

struct pd_export_result {
    uint64_t n_written;             /* lines written */
    uint64_t n_skipped;             /* sessions the format cannot express (see skip_reason) */
    uint64_t n_filtered;            /* sessions left out by the difficulty filter */
    char skip_reason[160];          /* why the first skipped session was skipped */
};

/* Writes the selected sessions to out, oldest first. Sessions the format cannot
 * express (nothing to export; prompt-completion with more than one user turn) are
 * counted in res->n_skipped. In the chat and prompt-completion formats a session whose
 * difficulty is known gets a last member "metadata":{"session","difficulty","pass_rate",
 * "graded"} (docs/export.md). PD_EINVAL for an unknown session id. */
enum pd_status pd_jsonl_export(struct pd_store *st, FILE *out,
                               const struct pd_export_params *params,
                               struct pd_export_result *res, struct pd_err *err);

/* Like pd_jsonl_export into path, through "<path>.tmp-<pid>" renamed over path on
 * success (fsync'd first); on failure the temporary file is removed and path is left as
 * it was. Records the export in the exports table. */
enum pd_status pd_jsonl_export_file(struct pd_store *st, const char *path,
                                    const struct pd_export_params *params,
                                    struct pd_export_result *res, struct pd_err *err);

/* A session's final assistant message as the exports write it, UTF-8 cleaned: the whole
 * trace with keep_pruned, otherwise with its pruned steps left out. *text owned (free()),
 * NULL (and *len 0) when the session has no think or answer tokens; *n_tokens counts the
 * think, answer and injected tokens it was made from; *scored says they all have token ids.
 * Any of len, n_tokens, scored may be NULL. */
enum pd_status pd_jsonl_session_final(struct pd_store *st, int64_t session_id, bool keep_pruned,
                                      char **text, size_t *len, size_t *n_tokens, bool *scored,
                                      struct pd_err *err);

/* One session written to out as one JSON text in the given format, without a newline;
 * the ponder record streams (memory independent of the session's length).
 * PD_EUNSUPPORTED (with the reason, nothing written) when the format cannot express it. */
enum pd_status pd_jsonl_session_write(struct pd_store *st, int64_t session_id,
                                      enum pd_jsonl_format format, FILE *out,
                                      struct pd_err *err);

/* The same as a string: *out is owned (free()). */
enum pd_status pd_jsonl_session_record(struct pd_store *st, int64_t session_id,
                                       enum pd_jsonl_format format, char **out,
                                       struct pd_err *err);

#endif
