/* store_schema.c - the database schema as a list of forward migrations.
 *
 * A database at version v (PRAGMA user_version) is brought to the current version by
 * running migrations v+1 .. PD_STORE_SCHEMA_VERSION in order, each in its own
 * transaction together with the user_version bump (store.c). Migrations are never
 * edited once released: a schema change appends one. docs/schema.md describes the
 * resulting schema; the enum codes stored in integer columns are the values of the
 * enums in base/trace.h and must never be renumbered.
 *
 * History: 1 = models, sessions, messages, tokens; 2 = steps, prunes, KV events;
 * 3 = annotations, exports, session meta and finished flag; 4 = what distillation datasets
 * are drawn from: preferences, reference answers, questions with pass rates, sample
 * grades, and stored prune verifications. */
#include "store_internal.h"

static const char schema_v1[] =
    "CREATE TABLE models (\n"
    "    id        INTEGER PRIMARY KEY,\n"
    "    file_name TEXT NOT NULL CHECK (length(file_name) > 0),\n"
    "    file_size INTEGER NOT NULL CHECK (file_size >= 0),\n"
    "    sha256    TEXT NOT NULL UNIQUE CHECK (length(sha256) = 64),\n"
    "    arch      TEXT NOT NULL CHECK (length(arch) > 0)\n"
    ");\n"
    "CREATE TABLE sessions (\n"
    "    id            INTEGER PRIMARY KEY,\n"
    "    model_id      INTEGER REFERENCES models(id) ON DELETE SET NULL,\n"
    "    parent_id     INTEGER REFERENCES sessions(id),\n"
    "    fork_pos      INTEGER NOT NULL DEFAULT 0 CHECK (fork_pos >= 0),\n"
    "    source        TEXT NOT NULL DEFAULT '',\n"
    "    chat_template TEXT,\n"
    "    mode          TEXT,\n"
    "    kv_policy     TEXT,\n"
    "    temperature   REAL,\n"
    "    top_p         REAL,\n"
    "    top_k         INTEGER,\n"
    "    min_p         REAL,\n"
    "    seed          INTEGER,\n"
    "    n_tokens      INTEGER NOT NULL DEFAULT 0 CHECK (n_tokens >= 0),\n"
    "    created_ms    INTEGER NOT NULL,\n"
    "    updated_ms    INTEGER NOT NULL,\n"
    "    CHECK (parent_id IS NOT NULL OR fork_pos = 0)\n"
    ");\n"
    "CREATE INDEX sessions_parent ON sessions(parent_id);\n"
    "CREATE TABLE messages (\n"
    "    session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,\n"
    "    idx        INTEGER NOT NULL CHECK (idx >= 0),\n"
    "    role       TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),\n"
    "    content    TEXT NOT NULL,\n"
    "    PRIMARY KEY (session_id, idx)\n"
    ") WITHOUT ROWID;\n"
    "CREATE TABLE tokens (\n"
    "    session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,\n"
    "    pos        INTEGER NOT NULL CHECK (pos >= 0),\n"
    "    tok        INTEGER NOT NULL CHECK (tok >= -1),\n"
    "    role       INTEGER NOT NULL CHECK (role BETWEEN 0 AND 3),\n"
    "    flags      INTEGER NOT NULL DEFAULT 0,\n"
    "    text       BLOB NOT NULL,\n"
    "    logprob    REAL,\n"
    "    entropy    REAL,\n"
    "    topk       BLOB,\n"
    "    attn       BLOB,\n"
    "    UNIQUE (session_id, pos)\n"
    ");\n";

static const char schema_v2[] =
    "CREATE TABLE steps (\n"
    "    session_id      INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,\n"
    "    idx             INTEGER NOT NULL CHECK (idx >= 0),\n"
    "    pos_begin       INTEGER NOT NULL CHECK (pos_begin >= 0),\n"
    "    pos_end         INTEGER NOT NULL,\n"
    "    kind            INTEGER NOT NULL CHECK (kind BETWEEN 0 AND 4),\n"
    "    mean_surprisal  REAL,\n"
    "    first_surprisal REAL,\n"
    "    mean_entropy    REAL,\n"
    "    attn_received   REAL,\n"
    "    PRIMARY KEY (session_id, idx),\n"
    "    CHECK (pos_end >= pos_begin)\n"
    ") WITHOUT ROWID;\n"
    "CREATE TABLE prunes (\n"
    "    session_id INTEGER NOT NULL,\n"
    "    step_idx   INTEGER NOT NULL,\n"
    "    strategy   TEXT NOT NULL CHECK (length(strategy) > 0),\n"
    "    pruned_by  TEXT NOT NULL CHECK (pruned_by IN ('user', 'auto')),\n"
    "    created_ms INTEGER NOT NULL,\n"
    "    PRIMARY KEY (session_id, step_idx),\n"
    "    FOREIGN KEY (session_id, step_idx) REFERENCES steps(session_id, idx)\n"
    "        ON DELETE CASCADE\n"
    ") WITHOUT ROWID;\n"
    "CREATE TABLE kv_events (\n"
    "    id         INTEGER PRIMARY KEY,\n"
    "    session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,\n"
    "    at_pos     INTEGER NOT NULL CHECK (at_pos >= 0),\n"
    "    layer      INTEGER NOT NULL CHECK (layer >= -1),\n"
    "    slot_pos   INTEGER NOT NULL CHECK (slot_pos >= 0),\n"
    "    kind       INTEGER NOT NULL CHECK (kind BETWEEN 0 AND 1)\n"
    ");\n"
    "CREATE INDEX kv_events_session ON kv_events(session_id, at_pos);\n";

static const char schema_v3[] =
    "CREATE TABLE annotations (\n"
    "    id         INTEGER PRIMARY KEY,\n"
    "    session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,\n"
    "    pos_begin  INTEGER,\n"
    "    pos_end    INTEGER,\n"
    "    tag        TEXT NOT NULL CHECK (length(tag) > 0),\n"
    "    note       TEXT NOT NULL DEFAULT '',\n"
    "    created_ms INTEGER NOT NULL,\n"
    "    CHECK ((pos_begin IS NULL AND pos_end IS NULL)\n"
    "           OR (pos_begin >= 0 AND pos_end >= pos_begin))\n"
    ");\n"
    "CREATE INDEX annotations_session ON annotations(session_id, pos_begin);\n"
    "CREATE INDEX annotations_tag ON annotations(tag, session_id);\n"
    "CREATE TABLE exports (\n"
    "    id         INTEGER PRIMARY KEY,\n"
    "    created_ms INTEGER NOT NULL,\n"
    "    format     TEXT NOT NULL,\n"
    "    path       TEXT NOT NULL,\n"
    "    filter     TEXT NOT NULL DEFAULT '',\n"
    "    n_sessions INTEGER NOT NULL CHECK (n_sessions >= 0)\n"
    ");\n"
    "ALTER TABLE sessions ADD COLUMN meta TEXT;\n"
    "ALTER TABLE sessions ADD COLUMN finished INTEGER NOT NULL DEFAULT 0\n"
    "    CHECK (finished IN (0, 1));\n";

/* Version 4. A question is the conversation before a trace (its canonical JSON, the same
 * for every sample of it); sessions point at their question once graded. Prune checks are
 * tied to the prunes they verified through `pruned` (the pruned steps and their spans at
 * the time), so a later edit of the prunes makes the check stale rather than wrong. */
static const char schema_v4[] =
    "CREATE TABLE questions (\n"
    "    id         INTEGER PRIMARY KEY,\n"
    "    prompt     TEXT NOT NULL UNIQUE,\n"
    "    reference  TEXT,\n"
    "    n_samples  INTEGER NOT NULL CHECK (n_samples >= 0),\n"
    "    n_graded   INTEGER NOT NULL CHECK (n_graded BETWEEN 0 AND n_samples),\n"
    "    n_correct  INTEGER NOT NULL CHECK (n_correct BETWEEN 0 AND n_graded),\n"
    "    updated_ms INTEGER NOT NULL\n"
    ");\n"
    "ALTER TABLE sessions ADD COLUMN reference TEXT;\n"
    "ALTER TABLE sessions ADD COLUMN question_id INTEGER\n"
    "    REFERENCES questions(id) ON DELETE SET NULL;\n"
    "ALTER TABLE sessions ADD COLUMN answer TEXT;\n"
    "ALTER TABLE sessions ADD COLUMN correct INTEGER CHECK (correct IN (0, 1));\n"
    "CREATE INDEX sessions_question ON sessions(question_id);\n"
    "CREATE TABLE preferences (\n"
    "    id          INTEGER PRIMARY KEY,\n"
    "    chosen_id   INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,\n"
    "    rejected_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,\n"
    "    note        TEXT NOT NULL DEFAULT '',\n"
    "    created_ms  INTEGER NOT NULL,\n"
    "    UNIQUE (chosen_id, rejected_id),\n"
    "    CHECK (chosen_id <> rejected_id)\n"
    ");\n"
    "CREATE INDEX preferences_rejected ON preferences(rejected_id);\n"
    "CREATE TABLE prune_checks (\n"
    "    session_id      INTEGER PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,\n"
    "    pruned          TEXT NOT NULL,\n"
    "    strategy        TEXT NOT NULL,\n"
    "    answer_tokens   INTEGER NOT NULL CHECK (answer_tokens >= 0),\n"
    "    logprob_full    REAL,\n"
    "    logprob_pruned  REAL,\n"
    "    greedy_compared INTEGER NOT NULL CHECK (greedy_compared >= 0),\n"
    "    greedy_same     INTEGER NOT NULL CHECK (greedy_same IN (0, 1)),\n"
    "    created_ms      INTEGER NOT NULL\n"
    ");\n"
    "CREATE TABLE step_checks (\n"
    "    session_id      INTEGER NOT NULL,\n"
    "    step_idx        INTEGER NOT NULL,\n"
    "    logprob_full    REAL,\n"
    "    logprob_without REAL,\n"
    "    greedy_compared INTEGER NOT NULL CHECK (greedy_compared >= 0),\n"
    "    greedy_same     INTEGER NOT NULL CHECK (greedy_same IN (0, 1)),\n"
    "    created_ms      INTEGER NOT NULL,\n"
    "    PRIMARY KEY (session_id, step_idx),\n"
    "    FOREIGN KEY (session_id, step_idx) REFERENCES steps(session_id, idx)\n"
    "        ON DELETE CASCADE\n"
    ") WITHOUT ROWID;\n"
    /* references of records imported before version 4 are in their meta */
    "UPDATE sessions SET reference = (\n"
    "    SELECT CAST(json_extract(sessions.meta, '$.' || k.name) AS TEXT)\n"
    "      FROM (SELECT 'answer' AS name, 1 AS o UNION ALL SELECT 'solution', 2\n"
    "            UNION ALL SELECT 'gold', 3) k\n"
    "     WHERE json_type(sessions.meta, '$.' || k.name) IN ('text', 'integer', 'real')\n"
    "     ORDER BY k.o LIMIT 1)\n"
    "  WHERE meta IS NOT NULL AND json_valid(meta);\n";

const struct pd_store_migration pd_store_migrations[PD_STORE_SCHEMA_VERSION] = {
    {1, "models, sessions, messages, tokens", schema_v1},
    {2, "steps, prunes, KV events", schema_v2},
    {3, "annotations, exports, session meta and finished flag", schema_v3},
    {4, "preferences, reference answers, questions and pass rates, prune checks", schema_v4},
};
_Static_assert(sizeof pd_store_migrations / sizeof pd_store_migrations[0] ==
                   PD_STORE_SCHEMA_VERSION,
               "one migration per schema version");
