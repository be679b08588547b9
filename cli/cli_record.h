/* cli_record.h - recording a headless generation into the store as the workbench records
 * a live one: a session row (model, settings, conversation, source), a streaming writer
 * (store_writer.h: small transactions, so a killed process leaves every committed batch
 * and contiguous tokens) fed with the session's token and KV events, and at the end the
 * trace's reasoning steps with their metrics. `generate` and `generate --in` use it.
 *
 * Ownership: the store is borrowed and must outlive the recorder; pd_session_new's
 * strings are borrowed for pd_cli_rec_open only. Thread-safety: the store's owner thread;
 * events are pushed from the thread that reads them from the engine session. */
#ifndef PD_CLI_RECORD_H
#define PD_CLI_RECORD_H

#include <stdbool.h>
#include <stdint.h>

#include "session.h"
#include "status.h"
#include "store.h"

struct pd_cli_rec;

/* Creates the session described by sn in st and starts its writer. *out is owned
 * (pd_cli_rec_close). */
enum pd_status pd_cli_rec_open(struct pd_store *st, const struct pd_session_new *sn,
                               struct pd_cli_rec **out, struct pd_err *err);

/* The new session's id. */
int64_t pd_cli_rec_session(const struct pd_cli_rec *r);

/* Queues what an engine event carries for the store: a token (PD_EV_TOKEN) or an eviction
 * (PD_EV_EVICT); other events are ignored. Never waits on SQLite. */
enum pd_status pd_cli_rec_push(struct pd_cli_rec *r, const struct pd_event *ev,
                               struct pd_err *err);

/* Commits what is queued, marks the session finished when `finished` (the generation
 * ended normally), closes the writer, then segments the recorded trace and stores its
 * steps with their metrics. The first error is returned (what was committed stays).
 * Accepts NULL and *r == NULL; NULLs *r. */
enum pd_status pd_cli_rec_close(struct pd_cli_rec **r, bool finished, struct pd_err *err);

/* "eog", "length", "context" or "stopped" for a PD_EV_FINISHED event's text. */
const char *pd_cli_stop_name(const char *finish_text);

#endif
