/* store.h - ponder's SQLite store: open/migrate, models, sessions and their records.
 *
 * One SQLite file holds every saved session (schema: docs/schema.md). A session is the
 * conversation it was given (messages), the token sequence the model saw and produced
 * (tokens, with per-token metrics), the reasoning steps over that sequence, KV-cache
 * events, annotations (tags and notes), prunes, and the model and settings of the run.
 * A branch is a session whose first fork_pos tokens are its parent's.
 *
 * Threads: a struct pd_store is one SQLite connection with one owner; do not share it
 * between threads. Several connections (in threads or processes) may open the same file:
 * WAL mode lets readers run beside one writer, and every connection waits up to
 * PD_STORE_BUSY_MS for a lock before it fails with PD_EDB. The streaming writer
 * (store_writer.h) opens its own connection.
 *
 * Errors: every function returns enum pd_status and fills the optional struct pd_err with
 * a message naming the database file and what failed. Database contents are untrusted:
 * blobs and enum codes read back are validated.
 *
 * Ownership: strings passed in are borrowed for the call. Records returned are owned by
 * the caller and freed with the matching *_free function. */
#ifndef PD_STORE_H
#define PD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "trace.h"

/* Newest schema version this build creates and reads (PRAGMA user_version). */
#define PD_STORE_SCHEMA_VERSION 4
/* PRAGMA application_id of a ponder database: "pndr". */
#define PD_STORE_APPLICATION_ID 0x706e6472
/* How long a connection waits for another one's lock before failing. */
#define PD_STORE_BUSY_MS 5000

struct pd_store;

struct pd_store_params {
    bool create;            /* create the file when missing (default true) */
    bool create_parent_dirs;/* mkdir -p the folder of the file (default false) */
    bool read_only;         /* open read-only (the file must exist and be at the current
                             * schema version; nothing is written, not even the journal
                             * mode; writes fail naming the read-only open) */
    int target_version;     /* migrate up to this version; 0 = PD_STORE_SCHEMA_VERSION.
                             * Lower values exist for the migration tests. */
    int busy_ms;            /* how long a locked database is waited for (0 = the default,
                             * PD_STORE_BUSY_MS) */
};

/* Defaults: create = true, everything else off/0. */
struct pd_store_params pd_store_default_params(void);

/* Opens (creating if allowed) the database at path, sets WAL, foreign keys and the busy
 * timeout, checks it is a ponder database (application_id) no newer than this build, and
 * applies the forward migrations up to params->target_version, each in its own
 * transaction. params may be NULL for the defaults. On success *out is an owned handle
 * (pd_store_close). Errors: PD_EIO (cannot open/create; "no such database" when it does
 * not exist and may not be created; a WAL database read-only in a folder that refuses its
 * -shm file, explained), PD_EFORMAT (not a SQLite or not a ponder database),
 * PD_EUNSUPPORTED (schema newer than this build; older than it when read-only), PD_EDB. */
enum pd_status pd_store_open(const char *path, const struct pd_store_params *params,
                             struct pd_store **out, struct pd_err *err);

/* Closes the connection and frees the handle; accepts NULL and *st == NULL; sets *st to
 * NULL. */
void pd_store_close(struct pd_store **st);

/* True when opened with params.read_only. */
bool pd_store_read_only(const struct pd_store *st);

/* The file this handle was opened on (borrowed, valid until close). */
const char *pd_store_path(const struct pd_store *st);

/* The schema version of the open database (PRAGMA user_version). */
int pd_store_schema_version(const struct pd_store *st);

/* Writes the default database path into buf: $XDG_DATA_HOME/ponder/ponder.db, or
 * $HOME/.local/share/ponder/ponder.db when XDG_DATA_HOME is unset or not absolute.
 * PD_EINVAL when neither variable is usable or buf is too small. Creates nothing. */
enum pd_status pd_store_default_path(char *buf, size_t n, struct pd_err *err);

/* Runs PRAGMA integrity_check and foreign_key_check. PD_OK when both are clean;
 * PD_EFORMAT with the first problem otherwise. Cost grows with the file size. */
enum pd_status pd_store_check(struct pd_store *st, struct pd_err *err);

/* ---- transactions ----------------------------------------------------------------- */

/* Groups several calls below into one transaction (BEGIN IMMEDIATE ... COMMIT). Calls made
 * between begin and commit do not open their own transactions. rollback discards
 * everything since begin. Nesting is an error (PD_EINVAL). */
enum pd_status pd_store_begin(struct pd_store *st, struct pd_err *err);
enum pd_status pd_store_commit(struct pd_store *st, struct pd_err *err);
void pd_store_rollback(struct pd_store *st);

/* ---- models ----------------------------------------------------------------------- */

/* A model's identity. sha256 is the lowercase hex digest (64 chars) of the GGUF header
 * and tensor table, computed by the caller. All strings borrowed. */
struct pd_model_ident {
    const char *file_name;  /* base name of the GGUF file */
    uint64_t file_size;
    const char *sha256;
    const char *arch;       /* general.architecture */
};

/* Returns in *id the row of the model with this sha256, inserting it (or refreshing
 * its file name, size and arch) as needed. PD_EINVAL for an empty name/arch or a sha256
 * that is not 64 hex digits. */
enum pd_status pd_store_model_put(struct pd_store *st, const struct pd_model_ident *m,
                                  int64_t *id, struct pd_err *err);

/* ---- sessions --------------------------------------------------------------------- */

/* Who spoke a message of the conversation a session was given. */
enum pd_store_msg_role {
    PD_STORE_MSG_SYSTEM,
    PD_STORE_MSG_USER,
    PD_STORE_MSG_ASSISTANT,
    PD_STORE_MSG_ROLE_COUNT
};

/* "system", "user", "assistant"; NULL when out of range. */
const char *pd_store_msg_role_name(enum pd_store_msg_role r);
/* Parses those names; PD_STORE_MSG_ROLE_COUNT when unknown. */
enum pd_store_msg_role pd_store_msg_role_parse(const char *s);

struct pd_message {
    enum pd_store_msg_role role;
    char *content;          /* owned by whoever owns the array (see each function) */
};

/* Frees each content and the array; accepts NULL. */
void pd_store_messages_free(struct pd_message *msgs, size_t n);

/* What a new session starts with. All pointers borrowed for the call. */
struct pd_session_new {
    int64_t model_id;                       /* 0: unknown model */
    const struct pd_run_settings *settings; /* NULL: unknown (imported) */
    const struct pd_message *messages;      /* the conversation given to the model */
    size_t n_messages;
    const char *source;     /* where it came from: "live", "import:FILE:LINE"; NULL = "" */
    const char *meta;       /* a JSON object text of extra fields, or NULL */
    int64_t parent_id;      /* 0: not a branch */
    int64_t fork_pos;       /* branch only: tokens [0, fork_pos) are the parent's */
    const char *reference;  /* the reference answer (non-empty UTF-8), or NULL */
};

/* Creates a session (and its messages) in one transaction; *id receives its id.
 * A branch (parent_id != 0) needs an existing parent and 0 <= fork_pos <= the parent's
 * n_tokens; its own tokens start at fork_pos; given no messages, it gets a copy of the
 * parent's. PD_EINVAL for bad ids/positions, meta that
 * is not a JSON object, messages with an out-of-range role, or a reference that is empty,
 * not UTF-8 or longer than PD_REFERENCE_MAX (store_labels.h). */
enum pd_status pd_store_session_create(struct pd_store *st, const struct pd_session_new *p,
                                       int64_t *id, struct pd_err *err);

struct pd_store_session_info {
    int64_t id;
    int64_t model_id;           /* 0: none */
    char *model_name;           /* owned; NULL when no model */
    char *model_arch;           /* owned; NULL when no model */
    char *model_sha256;         /* owned; NULL when no model */
    uint64_t model_size;
    bool has_settings;
    struct pd_run_settings settings;  /* strings owned (NULL when unknown) */
    char *source;               /* owned, never NULL */
    char *meta;                 /* owned JSON object text, or NULL */
    char *title;                /* owned: the last user message, first 200 bytes */
    int64_t parent_id;          /* 0: not a branch */
    int64_t fork_pos;           /* 0 when not a branch */
    int64_t created_ms;         /* unix time, milliseconds */
    int64_t updated_ms;
    int64_t n_tokens;           /* length of the whole sequence, inherited prefix included */
    bool finished;              /* pd_store_session_finish was called */
    int64_t n_steps;
    int64_t n_pruned;           /* pruned steps */
    char *tags;                 /* owned: distinct annotation tags joined by ",", or "" */
    char *reference;            /* owned: the reference answer, or NULL (schema v4) */
};

void pd_store_session_info_free(struct pd_store_session_info *s);

/* Reads one session. PD_EINVAL when no session has this id. */
enum pd_status pd_store_session_get(struct pd_store *st, int64_t id,
                                    struct pd_store_session_info *out, struct pd_err *err);

/* Reads all sessions, oldest first. *out is an owned array of *n entries; free each entry
 * with pd_store_session_info_free and the array with free(). */
enum pd_status pd_store_session_list(struct pd_store *st, struct pd_store_session_info **out,
                                     size_t *n, struct pd_err *err);

/* Marks a session finished (generation ended normally) and bumps updated_ms. */
enum pd_status pd_store_session_finish(struct pd_store *st, int64_t id, struct pd_err *err);

/* Deletes a session with everything it owns. PD_EINVAL when it does not exist or when
 * branches still hang off it (delete those first). */
enum pd_status pd_store_session_delete(struct pd_store *st, int64_t id, struct pd_err *err);

/* Records which model a session's metrics come from (model_id from pd_store_model_put; 0
 * clears it), e.g. after an imported trace was scored. PD_EINVAL for an unknown session
 * or model. */
enum pd_status pd_store_session_set_model(struct pd_store *st, int64_t id, int64_t model_id,
                                          struct pd_err *err);

/* The session's conversation in order. *out is owned (pd_store_messages_free). */
enum pd_status pd_store_messages_get(struct pd_store *st, int64_t session_id,
                                     struct pd_message **out, size_t *n, struct pd_err *err);

/* ---- tokens ----------------------------------------------------------------------- */

/* Appends n tokens in one transaction. Positions must be strictly increasing, not yet
 * present, and >= fork_pos for a branch. Text is stored as bytes (partial UTF-8 allowed);
 * NAN metrics are stored as NULL; the top-k entries and the attention blob are stored as
 * the blobs described in store_blob.h / trace.h (the attention blob is validated).
 * Updates the session's n_tokens. */
enum pd_status pd_store_tokens_append(struct pd_store *st, int64_t session_id,
                                      const struct pd_token_rec *t, size_t n,
                                      struct pd_err *err);

/* Replaces all of a session's own tokens with t[0..n) in one transaction, for a scoring
 * pass that turns imported text segments into real tokens. Steps (and their prunes) and
 * span annotations are deleted because their positions no longer apply; session-level
 * annotations stay. PD_EINVAL when the session has branches. */
enum pd_status pd_store_tokens_replace(struct pd_store *st, int64_t session_id,
                                       const struct pd_token_rec *t, size_t n,
                                       struct pd_err *err);

/* ---- steps and prunes ------------------------------------------------------------- */

/* Inserts or updates steps by (session, index). pos_end >= pos_begin >= 0 required.
 * s->pruned is ignored here: prunes are recorded with pd_store_prune. */
enum pd_status pd_store_steps_put(struct pd_store *st, int64_t session_id,
                                  const struct pd_step_rec *s, size_t n, struct pd_err *err);

/* Deletes all steps of a session (and their prunes), then inserts s[0..n); one
 * transaction. Used when a trace is segmented again. */
enum pd_status pd_store_steps_replace(struct pd_store *st, int64_t session_id,
                                      const struct pd_step_rec *s, size_t n,
                                      struct pd_err *err);

/* All steps of a session ordered by index, pruned set from the prunes table. *out owned
 * (free()). */
enum pd_status pd_store_steps_get(struct pd_store *st, int64_t session_id,
                                  struct pd_step_rec **out, size_t *n, struct pd_err *err);

struct pd_prune {
    int32_t step_index;
    int64_t pos_begin;      /* the step's span when read back */
    int64_t pos_end;
    char *strategy;         /* owned when read back: "manual", "asap:budget=512", ... */
    char *by;               /* owned when read back: "user" or "auto" */
    int64_t created_ms;
};

void pd_store_prunes_free(struct pd_prune *p, size_t n);

/* Marks a step pruned (idempotent: a second call updates strategy/by) and sets
 * PD_TOKF_PRUNED on the session's own tokens in the step's span. strategy and by are
 * borrowed, non-empty. PD_EINVAL when the step does not exist. */
enum pd_status pd_store_prune(struct pd_store *st, int64_t session_id, int32_t step_index,
                              const char *strategy, const char *by, struct pd_err *err);

/* Undoes pd_store_prune (no-op when the step is not pruned). */
enum pd_status pd_store_unprune(struct pd_store *st, int64_t session_id, int32_t step_index,
                                struct pd_err *err);

/* The session's prunes ordered by step index; *out owned (pd_store_prunes_free). */
enum pd_status pd_store_prunes_get(struct pd_store *st, int64_t session_id,
                                   struct pd_prune **out, size_t *n, struct pd_err *err);

/* ---- KV events -------------------------------------------------------------------- */

/* Appends KV-cache events in one transaction, in the order given. */
enum pd_status pd_store_kv_append(struct pd_store *st, int64_t session_id,
                                  const struct pd_kv_event_rec *ev, size_t n,
                                  struct pd_err *err);

/* ---- annotations ------------------------------------------------------------------ */

struct pd_annotation {
    int64_t id;             /* set when read back or inserted */
    bool whole_session;     /* true: tags the session, the span is ignored */
    int64_t pos_begin;      /* span [pos_begin, pos_end) */
    int64_t pos_end;
    char *tag;              /* owned when read back; non-empty, no ',' or control chars */
    char *note;             /* owned when read back; may be "" */
    int64_t created_ms;
};

void pd_store_annotations_free(struct pd_annotation *a, size_t n);

/* Adds an annotation (tag and note borrowed; note may be NULL = ""). *id may be NULL.
 * PD_EINVAL for an empty or malformed tag or a bad span. */
enum pd_status pd_store_annotate(struct pd_store *st, int64_t session_id,
                                 const struct pd_annotation *a, int64_t *id,
                                 struct pd_err *err);

/* Deletes annotation id of the session. PD_EINVAL when there is none. */
enum pd_status pd_store_annotation_delete(struct pd_store *st, int64_t session_id, int64_t id,
                                          struct pd_err *err);

/* A session's annotations, session-level ones first, then by span start. *out owned
 * (pd_store_annotations_free). */
enum pd_status pd_store_annotations_get(struct pd_store *st, int64_t session_id,
                                        struct pd_annotation **out, size_t *n,
                                        struct pd_err *err);

#endif
