/* store_dataset.h - preference datasets for distillation, written from stored sessions:
 *   dpo       TRL preference records {"prompt","chosen","rejected"}, strings (standard) or
 *             message lists (conversational);
 *   step-dpo  Step-DPO records {"prompt","initial_reason_steps","chosen","rejected"}: a
 *             shared prefix of reasoning steps, then two different next steps;
 *   kto       TRL unpaired records {"prompt","completion","label"}, standard or
 *             conversational;
 * each with a last member "metadata" (where the record came from, the sessions, token
 * counts, difficulty), and optionally a dataset card (README.md with the Hugging Face
 * YAML header). Field definitions and sources: docs/export.md.
 *
 * The caller decides WHICH records to write (the pairs: cli/cli_dataset.c with
 * analysis/pairs.h); this module turns each into JSON from the sessions' texts, applies
 * the session filters, counts what it wrote for the card, and writes the files atomically.
 * Records are written as they are added (memory holds one record, the selected session ids
 * and the card's counters), compact JSON with keys in the documented order, no time
 * stamps: the same database and the same calls give the same bytes.
 *
 * Completions: the session's final assistant message as every export builds it
 * ("<think>\n{thinking}\n</think>\n\n{answer}"), either the whole trace or with its pruned
 * steps left out (struct pd_dataset_side). Step texts: the thinking tokens of a position
 * range, pruned or not.
 *
 * Ownership: the writer borrows the store (it must outlive the writer) and copies what it
 * keeps of the params. Threads: one owner, like the store. */
#ifndef PD_STORE_DATASET_H
#define PD_STORE_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "status.h"
#include "store.h"

enum pd_dataset_format {
    PD_DATASET_DPO,
    PD_DATASET_STEP_DPO,
    PD_DATASET_KTO,
    PD_DATASET_FORMAT_COUNT
};

/* "dpo", "step-dpo", "kto"; NULL when out of range. */
const char *pd_dataset_format_name(enum pd_dataset_format f);
/* PD_DATASET_FORMAT_COUNT when unknown. */
enum pd_dataset_format pd_dataset_format_parse(const char *s);

/* Where a record came from: metadata.source and the card's counts. */
enum pd_dataset_source {
    PD_SRC_MARKED,       /* a preference between two traces of one prompt (:prefer, tags) */
    PD_SRC_PRUNED,       /* dpo: a pruned trace that passed verification, over its original */
    PD_SRC_CORRECTNESS,  /* dpo: a sample with the right answer over one with a wrong one */
    PD_SRC_LENGTH,       /* dpo: a shorter correct sample over a longer correct one */
    PD_SRC_PRUNED_STEP,  /* step-dpo: a step whose removal alone changed the answer, chosen
                          * over the step that follows it */
    PD_SRC_REFERENCE,    /* kto: a sample graded against its reference answer */
    PD_SRC_VERIFIED,     /* kto: a pruned trace labelled by its verification */
    PD_SRC_COUNT
};

/* "marked", "pruned", "correctness", "length", "pruned-step", "reference", "verified". */
const char *pd_dataset_source_name(enum pd_dataset_source s);

/* A completion: session_id's trace, whole or with its pruned steps left out. */
struct pd_dataset_side {
    int64_t session_id;
    bool pruned_out;
};

/* The thinking tokens of session_id at positions [pos_begin, pos_end) (a branch reads its
 * parent's positions below its fork), pruned steps included. */
struct pd_dataset_span {
    int64_t session_id;
    int64_t pos_begin;
    int64_t pos_end;
};

/* A step-dpo record: the prompt of session `prompt_of`, the shared steps `prefix`, and the
 * next step of the chosen and of the rejected continuation. step_index is the index of the
 * first differing step (metadata). */
struct pd_dataset_step {
    int64_t prompt_of;
    struct pd_dataset_span prefix;
    struct pd_dataset_span chosen;
    struct pd_dataset_span rejected;
    int32_t step_index;
};

struct pd_dataset_params {
    enum pd_dataset_format format;
    bool conversational;     /* dpo, kto: prompt and completions as message lists */
    /* which sessions may appear (a record is written only when every session it uses is
     * selected): as struct pd_export_params - tag, ids, sessions with prunes, difficulty */
    const char *tag;                 /* borrowed for open; NULL: any */
    const int64_t *session_ids;      /* borrowed for open; NULL: all */
    size_t n_session_ids;
    bool pruned_only;
    bool difficulty_filter;
    double difficulty_min;
    double difficulty_max;
    /* the card */
    bool card;               /* write README.md beside the output file (needs a path) */
    const char *generator;   /* "ponder 0.1.0" (copied) */
    const char *settings;    /* copied: "name: value" lines describing the selection (the
                              * command's sources, thresholds, filters), shown in the card */
    const char *command;     /* copied: the command line that made it, shown in the card */
};

/* Counts of what was written. */
struct pd_dataset_result {
    uint64_t n_written;
    uint64_t n_skipped;              /* records the format or the data cannot express */
    uint64_t n_filtered;             /* records left out by the session filters */
    uint64_t per_source[PD_SRC_COUNT];
    char skip_reason[160];           /* why the first skipped record was skipped */
};

struct pd_dataset;

/* Opens a writer. path NULL: records go to out (stdout, say) and no card is possible;
 * otherwise they go to a temporary file beside path (engine/base/afile.h), renamed over
 * path by pd_dataset_commit. PD_EINVAL for bad params (a card
 * without a path, conversational step-dpo, an unknown session id), PD_EIO when the
 * temporary file cannot be created. *d owned (pd_dataset_close). */
enum pd_status pd_dataset_open(struct pd_store *st, const char *path, FILE *out,
                               const struct pd_dataset_params *p, struct pd_dataset **d,
                               struct pd_err *err);

/* Adds a dpo record (format dpo only). A pair the format cannot express (no completion, a
 * conversation that is not [system] user in the standard variant, different
 * conversations, identical completions) is skipped and counted, not an error; so are pairs
 * with an unselected session. Errors: PD_EINVAL (wrong format), database and I/O errors. */
enum pd_status pd_dataset_add_pair(struct pd_dataset *d, enum pd_dataset_source src,
                                   struct pd_dataset_side chosen,
                                   struct pd_dataset_side rejected, struct pd_err *err);

/* Adds a kto record (format kto only); skipping as for pairs. */
enum pd_status pd_dataset_add_unpaired(struct pd_dataset *d, enum pd_dataset_source src,
                                       struct pd_dataset_side side, bool label,
                                       struct pd_err *err);

/* Adds a step-dpo record (format step-dpo only). Empty chosen or rejected steps, equal
 * steps and bad spans are skipped and counted. */
enum pd_status pd_dataset_add_step(struct pd_dataset *d, enum pd_dataset_source src,
                                   const struct pd_dataset_step *s, struct pd_err *err);

/* Counts so far (borrowed, valid until close). */
const struct pd_dataset_result *pd_dataset_result(const struct pd_dataset *d);

/* Finishes: flushes, fsyncs and renames the file over path; with a card, writes README.md
 * beside it the same way (after the data file); records the export in the exports table.
 * Out mode: flushes. After a failure nothing new is left behind (the data file may have
 * been renamed when only the card failed; the message says so). */
enum pd_status pd_dataset_commit(struct pd_dataset *d, struct pd_err *err);

/* The card's text for what was written so far, as commit writes it; data_file is the name
 * the YAML header lists. *out owned (free()). */
enum pd_status pd_dataset_card(const struct pd_dataset *d, const char *data_file, char **out,
                               struct pd_err *err);

/* Frees the writer; an uncommitted temporary file is removed. Accepts NULL; NULLs *d. */
void pd_dataset_close(struct pd_dataset **d);

#endif
