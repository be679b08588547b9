/* cli_dataset.h - `ponder export --format dpo|step-dpo|kto`: which records a preference
 * dataset gets, drawn from the database (cli_dataset.c; formats in store/store_dataset.h,
 * the rules in docs/export.md). cli_store.c parses the options and calls it.
 *
 * Ownership: everything borrowed for the call. Threads: the caller's. */
#ifndef PD_CLI_DATASET_H
#define PD_CLI_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pairs.h"
#include "store.h"
#include "store_dataset.h"

/* Where records may come from (--sources). */
enum {
    PD_CLI_SRC_MARKED = 1u << 0,    /* dpo, step-dpo: preferences and chosen/rejected tags */
    PD_CLI_SRC_PRUNED = 1u << 1,    /* dpo: verified prunes; step-dpo: step checks */
    PD_CLI_SRC_SAMPLES = 1u << 2,   /* dpo: graded samples of one question */
    PD_CLI_SRC_REFERENCE = 1u << 3, /* kto: graded samples */
    PD_CLI_SRC_VERIFIED = 1u << 4,  /* kto: verified prunes */
};

/* Parses --sources for a format ("marked,pruned", ...; "all"): false with a usage message
 * printed when a name is unknown or does not apply to the format. */
bool pd_cli_dataset_sources_parse(enum pd_dataset_format f, const char *s, unsigned *out);
/* Every source the format has. */
unsigned pd_cli_dataset_sources_all(enum pd_dataset_format f);

struct pd_cli_dataset_opts {
    struct pd_dataset_params dp;    /* format, variant, filters, card, generator, command */
    unsigned sources;
    unsigned pair_modes;            /* PD_PAIRS_* for dpo samples */
    double min_saving;              /* dpo pruned and length pairs */
    struct pd_verify_rule rule;     /* pruned sources */
    const char *out;                /* NULL: stdout */
    bool json;                      /* summary on stdout (needs out) */
};

/* Writes the dataset and prints the summary (stderr, or JSON on stdout). Returns the exit
 * status: 0, or 1 after printing the error. */
int pd_cli_dataset_export(struct pd_store *st, const struct pd_cli_dataset_opts *o);

#endif
