/* app.h - the workbench's state (view model) and its pure action handling.
 *
 * DESIGN
 * Model vs. drawing.  struct pd_app holds everything the panes show: the tokens of the
 *   trace with their metrics, the steps, tags, KV-cache events, the run's status, and
 *   the view state (cursor, scroll, focus, overlays, search, command line). Key handlers
 *   and event handlers mutate it and set dirty bits; they never draw and never do I/O.
 *   The draw pass (draw_*.c) reads it. The model is app.c; its handlers are split by
 *   what drives them: session events (app_events.c), key actions (app_actions.c) and
 *   `:` commands (app_commands.c).
 * Effects.  What an action asks of the outside world (a command for the generation
 *   session, a save, quitting, opening the command line) is queued in the app's outbox
 *   (pd_app_fx); the front end's loop executes the queue after each input. So the app
 *   links without curses, the engine session or SQLite, and tests drive it directly.
 * Live and replay.  In live mode tokens arrive from the session; in replay all tokens of
 *   a saved session are loaded and n_visible (the playhead) says how many are shown;
 *   pd_app_tick advances it while playing. Every view uses [0, n_visible).
 * Saving.  Prunes and tags made in the UI are kept here with a `saved` mark; a save
 *   effect writes the differences and the loop calls pd_app_mark_saved. "Unsaved" means
 *   such differences exist (tokens stream into the database on their own).
 * Steps.  Live tokens go through an incremental segmenter (analysis/steps.h); the open
 *   step is shown as the last entry. Step metrics (mean/first-token surprisal, mean
 *   entropy) come from the tokens; importance is the attention the step's tokens receive
 *   from tokens of later steps (summary blobs, mean over layers), attributed as tokens
 *   arrive.
 *
 * Ownership: the app owns its token records (text and attention blobs), steps, tags and
 * events; records passed to the pd_app_push_* functions named _take are taken over.
 * Thread-safety: one thread (the UI thread). */
#ifndef PD_APP_H
#define PD_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "trace.h"
#include "session.h"
#include "steps.h"
#include "wrap.h"

enum pd_app_kind {
    PD_APP_LIVE,   /* a generation streams from the engine session */
    PD_APP_REPLAY, /* a saved session, no model needed */
    PD_APP_KIND_COUNT
};

enum pd_pane {
    PD_PANE_TRACE,
    PD_PANE_STEPS,
    PD_PANE_INSPECT,
    PD_PANE_KV,
    PD_PANE_COUNT
};

/* Short pane names ("trace", "steps", "inspector", "kv"). */
const char *pd_pane_name(enum pd_pane p);

/* Dirty bits: which panes the next draw pass repaints. */
enum {
    PD_DIRTY_TRACE = 1u << 0,
    PD_DIRTY_STEPS = 1u << 1,
    PD_DIRTY_INSPECT = 1u << 2,
    PD_DIRTY_KV = 1u << 3,
    PD_DIRTY_STATUS = 1u << 4,
    PD_DIRTY_CMDLINE = 1u << 5,
    PD_DIRTY_HELP = 1u << 6,
    PD_DIRTY_LAYOUT = 1u << 7, /* sizes changed: clear and repaint everything */
    PD_DIRTY_ALL = 0xffu,
};

/* Everything a key can do. The key table (keys.c) maps keys to these. */
enum pd_action {
    PD_ACT_NONE,
    PD_ACT_PAUSE,          /* live: pause/resume generation; replay: play/pause */
    PD_ACT_ANSWER_NOW,     /* live: close the thinking span now */
    PD_ACT_CONTINUE,       /* live, after the end: generate more (continue_n tokens) */
    PD_ACT_MODE_CYCLE,     /* live: long -> short -> none -> long */
    PD_ACT_INJECT,         /* live: open ":inject " */
    PD_ACT_ASK,            /* live, after the answer: open ":ask " (another user turn) */
    PD_ACT_BRANCH,         /* live: branch after the cursor token */
    PD_ACT_PRUNE,          /* prune/unprune the cursor's step */
    PD_ACT_PRUNE_CONTINUE, /* live: prune the step and drop it from the model's cache */
    PD_ACT_TAG,            /* open ":tag " for the cursor's step */
    PD_ACT_PREFER,         /* mark this session chosen over its parent (:prefer [ID]) */
    PD_ACT_KV_BUDGET,      /* live: open ":budget " */
    PD_ACT_DIVERGENCE,     /* live: measure shadow divergence now */
    PD_ACT_COLOUR,         /* colour the trace by the next mode (surprisal, entropy, ...) */
    PD_ACT_BRANCHES,       /* the branch tree of this session (:branches) */
    PD_ACT_SEARCH,         /* open "/" */
    PD_ACT_SEARCH_NEXT,
    PD_ACT_SEARCH_PREV,
    PD_ACT_STEP_PREV,
    PD_ACT_STEP_NEXT,
    PD_ACT_LEFT,
    PD_ACT_RIGHT,
    PD_ACT_UP,
    PD_ACT_DOWN,
    PD_ACT_PAGE_UP,
    PD_ACT_PAGE_DOWN,
    PD_ACT_HOME,
    PD_ACT_END,            /* last token, and follow new tokens */
    PD_ACT_FOCUS_NEXT,
    PD_ACT_SELECT,         /* inspector: steer by the chosen alternative (live) */
    PD_ACT_PLAY_STEP,      /* replay: one token forward (pauses) */
    PD_ACT_PLAY_BACK,      /* replay: one token back (pauses) */
    PD_ACT_FASTER,         /* replay speed x2 */
    PD_ACT_SLOWER,         /* replay speed /2 */
    PD_ACT_SAVE,
    PD_ACT_COMMAND,        /* open ":" */
    PD_ACT_HELP,           /* toggle the help overlay */
    PD_ACT_CANCEL,         /* close the overlay / clear the message */
    PD_ACT_QUIT,           /* asks when unsaved: a second q quits */
    PD_ACT_INTERRUPT,      /* Ctrl-C: as q; quitting unsaved exits 130 */
    PD_ACT_REDRAW,         /* repaint everything (Ctrl-L, resize) */
    PD_ACT_COUNT
};

/* Stable lowercase name of an action ("pause", "answer-now", ...), used by :map-free
 * commands, docs and tests. NULL when out of range. */
const char *pd_action_name(enum pd_action a);
/* Whether an action does anything in this kind of app (live-only ones do not replay). */
bool pd_action_allowed(enum pd_action a, enum pd_app_kind kind);

/* An effect the loop executes. */
enum pd_fx_kind {
    PD_FX_SESSION,   /* send cmd to the generation session */
    PD_FX_SAVE,      /* write unsaved prunes and tags, flush the recording */
    PD_FX_QUIT,
    PD_FX_CMDLINE,   /* open the command line: kind (':' or '/') and initial text */
    PD_FX_BRANCHES,  /* load the session's branch tree (pd_app_set_tree) */
    PD_FX_DIFF,      /* load session id against its parent from the fork (pd_app_set_diff) */
    PD_FX_OPEN,      /* show session id instead (replay) */
    PD_FX_RERUN,     /* end this run and start rerun_question / rerun_system as a new
                      * session with the same model and settings (live) */
    PD_FX_KIND_COUNT
};

struct pd_app_fx {
    enum pd_fx_kind kind;
    struct pd_cmd cmd;       /* PD_FX_SESSION */
    char cmdline_kind;       /* PD_FX_CMDLINE */
    char text[512];          /* PD_FX_CMDLINE: initial text */
    int64_t id;              /* PD_FX_DIFF, PD_FX_OPEN: the session */
};

/* One session of a branch tree, in depth-first order. */
struct pd_app_branch {
    int64_t id;
    int64_t parent;          /* 0: the root */
    int64_t fork_pos;
    int64_t n_tokens;
    int depth;
    bool finished;
    bool preferred;          /* chosen over its parent (a saved preference) */
    char tags[48];
    char title[64];          /* the user message, shortened */
};

/* What the overlay box shows when one is open (a->help). */
enum pd_overlay {
    PD_OVERLAY_HELP,
    PD_OVERLAY_BRANCHES,     /* the branch tree: j/k select, Enter opens, d diffs */
    PD_OVERLAY_DIFF,         /* parent vs branch from the fork, side by side */
};

#define PD_APP_FX_MAX 32

#define MSG_TTL_S 8.0     /* seconds a message (not an error) stays on the bottom line */

/* What the trace is coloured by (colour.c). */
enum pd_colour {
    PD_COLOUR_SURPRISAL,  /* bits, the default */
    PD_COLOUR_ENTROPY,    /* of the next-token distribution, bits */
    PD_COLOUR_ATTN_FROM,  /* the cursor token's attention to each earlier token */
    PD_COLOUR_ATTN_RECV,  /* attention each token receives from all later tokens */
    PD_COLOUR_STEP,       /* the kind of the token's step */
    PD_COLOUR_COUNT
};
#define PD_APP_LEVELS 8   /* colour levels, 0 = none; term.c has a style for each */

/* One step as shown: the record plus UI state. */
struct pd_app_step {
    struct pd_step_rec rec;  /* metrics filled by the app */
    bool open;               /* still growing (live) */
    bool pruned_saved;       /* what the database holds */
    bool in_db;              /* the store has this step row */
    float recv;              /* importance: attention received from the tokens of later
                              * steps (analysis/metrics.h attn_received; attention mass,
                              * NAN until a later step's token carries a summary) */
    double sum_s, sum_h;     /* running sums of surprisal / entropy (bits) */
    uint32_t n_s, n_h;       /* tokens with a surprisal / an entropy */
    int32_t n_tags;          /* tags on this step's span */
};

struct pd_app_tag {
    int64_t id;              /* database id once saved, 0 before */
    int64_t pos_begin;
    int64_t pos_end;
    bool whole;              /* tags the session */
    bool saved;
    char tag[64];
    char note[192];
};

/* Measured by the loop (key to frame latency, draw cost), shown by :stats. */
struct pd_app_stats {
    uint64_t frames;
    uint64_t keys;
    uint64_t key_frames;         /* frames that showed at least one new key */
    double key_lat_ms_sum;
    double key_lat_ms_max;
    double draw_ms_sum;
    double draw_ms_max;
    double draw_ms_last;
};

struct pd_app {
    enum pd_app_kind kind;
    unsigned dirty;

    /* ---- the trace ---- */
    struct pd_token_rec *toks;   /* owned [n_toks]; each owns text/attn */
    size_t n_toks;
    size_t cap_toks;
    int32_t *tok_step;           /* owned [cap_toks]: step index of each token, -1 none */
    size_t n_visible;            /* tokens shown: == n_toks live; the playhead in replay */
    size_t n_prompt;             /* leading prompt tokens */

    /* ---- steps ---- */
    struct pd_app_step *steps;   /* owned [n_steps] */
    int32_t recv_last;           /* latest step with a token carrying a summary (-1) */
    double *recv_acc;            /* owned [cap_recv]: running importance sums per step */
    struct pd_step_rec *recv_recs; /* owned scratch [cap_recv]: the steps' records */
    size_t cap_recv;
    uint64_t recv_gen;           /* counts full recomputations */
    size_t n_steps;
    size_t cap_steps;
    struct pd_steps_seg *seg;    /* owned; live segmentation (NULL in replay) */
    struct pd_steps_list seg_out;/* scratch for the segmenter */
    bool seg_failed;

    /* ---- tags ---- */
    struct pd_app_tag *tags;     /* owned [n_tags] */
    size_t n_tags;
    size_t cap_tags;

    /* ---- KV cache ---- */
    int32_t n_layer;             /* 0 until known */
    struct pd_kv_event_rec *kv;  /* owned [n_kv] in arrival order */
    size_t n_kv;
    size_t cap_kv;
    char kv_policy[96];          /* spec text, "full" when none */
    bool kv_shadow;
    int64_t kv_sinks;            /* protected first slots */
    int64_t kv_recent;           /* protected last slots (0: none / unknown) */
    int64_t kv_budget;           /* slots, 0: none */
    uint32_t kv_used, kv_cap;
    uint8_t *kv_map;             /* owned [kv_map_cap][kv_map_layers]: 1 = evicted */
    size_t kv_map_cap;
    int32_t kv_map_layers;
    size_t kv_map_applied;       /* events applied to the map */
    size_t kv_map_visible;       /* playhead the map was built for */
    struct pd_app_drop {         /* a span P dropped from the model's cache */
        int64_t begin, end;      /* positions [begin, end) */
        int64_t at_pos;          /* sequence length when it was dropped */
    } *drops;                    /* owned [n_drops] */
    size_t n_drops;
    size_t cap_drops;
    bool has_div;
    double div_kl_bits;
    bool div_top1;

    /* ---- run status ---- */
    char model[96];
    char backend[16];
    bool remote;                 /* a remote engine runs the model: no KV cache or attention
                                  * unless it is ponder serve; entropy may be estimated */
    enum pd_think_mode mode;     /* as shown; the session has it once mode_pending clears */
    uint32_t short_budget;       /* budget used when cycling to short */
    bool mode_pending;           /* m chose a mode the session has not been told yet: it
                                  * goes when the keys settle (MODE_SETTLE_S) or on resume */
    double mode_chosen_at;       /* clock of the last m */
    double clock;                /* seconds, advanced by pd_app_tick */
    double tok_per_s;
    uint32_t continue_n;         /* tokens c asks for (the run's -n; 0: until the end) */
    struct pd_sampler_params sampling; /* what the session samples with (:temp, ...) */
    char *question;              /* owned: the user's question this run asked, NULL when
                                  * not known (a re-opened session); :question edits it */
    char *system;                /* owned: its system message, NULL: none */
    bool rerun;                  /* the loop ended to run rerun_question as a new session */
    char *rerun_question;        /* owned, set by :question / :system */
    char *rerun_system;          /* owned, NULL: none */

    /* ---- trace colour (colour.c) ---- */
    enum pd_colour colour;
    int32_t colour_layer;        /* attention modes: one layer, or -1 for the mean */
    float *tok_recv;             /* owned [tok_recv_cap]: attention received per token */
    size_t tok_recv_cap;
    size_t tok_recv_for;         /* tokens [0, tok_recv_for) are summed; SIZE_MAX: stale */
    int32_t tok_recv_layer;      /* the layer they were summed for */
    int32_t colour_head;         /* attention from the cursor: one head (:head), -1 the mean */
    struct pd_attn_rows *heads;  /* owned: every head's attention rows of one token (PD_EV_ATTN
                                  * on request, or a token event under --capture full) */
    int64_t heads_pos;           /* the position they belong to */
    uint64_t heads_gen;          /* counts rows taken */
    bool heads_pending;          /* a PD_CMD_ATTN is out (one at a time) */
    bool heads_refused;          /* said why rows cannot come (once per :head) */
    float *head_w;               /* owned [head_w_cap]: the selected head's weight by position,
                                  * [0, head_w_n) valid; built by pd_app_colour_prepare */
    size_t head_w_cap, head_w_n;
    uint64_t head_w_gen;         /* heads_gen, head and layer it was built for */
    int32_t head_w_head, head_w_layer;
    int64_t prefill_done;        /* prompt encoding progress: tokens done of total, rate */
    int64_t prefill_total;       /* (0: none shown) */
    double prefill_rate;
    bool paused;
    bool pause_pending;          /* sent, not yet confirmed by the session */
    bool finished;
    char finish_reason[32];
    char error[256];
    int64_t session_id;          /* store id, 0: not recorded */
    int64_t parent_id;           /* the session this one branched from, 0: a root */
    int64_t pref_over;           /* :prefer - this session is chosen over that one, 0: none */
    bool pref_saved;             /* pref_over is in the database */
    int64_t n_committed;         /* tokens the store has committed */
    bool recording;              /* a store writer is attached */
    bool rec_failed;             /* the recording's last commit failed (status bar) */
    uint64_t rec_unsaved;        /* tokens the recording holds in memory, not committed */
    int64_t n_branches;

    /* ---- view ---- */
    size_t cursor;               /* token index (< n_visible when n_visible > 0) */
    bool follow;                 /* the cursor follows new tokens */
    enum pd_pane focus;
    size_t trace_top;            /* first trace line shown */
    int trace_rows, trace_cols;  /* the trace pane's size (set by pd_app_resize) */
    size_t steps_top;
    int steps_rows;
    int alt_sel;                 /* inspector: selected top-k alternative, -1 none */
    bool narrow;                 /* the layout shares one slot between steps and KV */
    bool help;
    int help_top;
    enum pd_overlay overlay;     /* what the open overlay shows */
    struct pd_app_branch *tree;  /* owned [n_tree] */
    size_t n_tree;
    size_t tree_sel;
    char *diff_text[2];          /* owned: the parent's and the branch's text from the fork */
    int64_t diff_id[2];          /* the parent and the branch */
    int64_t diff_fork;
    struct pd_wrap wrap;         /* trace line layout */

    /* ---- search ---- */
    char search[128];
    size_t *matches;             /* owned [n_matches]: token index of each match start */
    size_t n_matches;
    size_t cap_matches;
    size_t match_i;

    /* ---- command line / messages ---- */
    bool cmd_active;
    char cmd_kind;               /* ':' or '/' */
    char cmd_text[512];          /* the line being edited (mirrored from readline) */
    int cmd_point;               /* cursor byte offset in cmd_text */
    char msg[256];               /* last message for the message line */
    bool msg_error;
    double msg_at;               /* clock when it was set: others than errors fade after
                                  * MSG_TTL_S, and the hint bar shows again */

    /* ---- replay ---- */
    bool playing;
    double speed;                /* tokens per second */
    double play_acc;             /* fractional tokens owed */

    /* ---- quitting ---- */
    bool quit_armed;             /* one q pressed with unsaved work */
    bool quit;                   /* the loop ends */
    bool quit_discarded;         /* it ended with unsaved edits (they are lost) */
    bool interrupted;            /* it ended by Ctrl-C */

    /* ---- outbox ---- */
    struct pd_app_fx fx[PD_APP_FX_MAX];
    size_t n_fx;

    /* ---- vocabulary for alternatives (optional) ---- */
    const char *(*piece)(void *ud, int32_t id, size_t *len);
    void *piece_ud;              /* borrowed */

    struct pd_app_stats stats;
};

/* Initialises an empty app of the given kind (live: with a step segmenter). */
enum pd_status pd_app_init(struct pd_app *a, enum pd_app_kind kind, struct pd_err *err);
void pd_app_deinit(struct pd_app *a);

/* ---- feeding data ---- */

/* Appends a token, taking ownership of t->text and t->attn (NULLed in *t, also on
 * failure). Positions must increase by one from the previous token. Live: feeds the
 * segmenter and updates steps. */
enum pd_status pd_app_push_token_take(struct pd_app *a, struct pd_token_rec *t,
                                      struct pd_err *err);
/* Records a KV event. */
enum pd_status pd_app_push_kv(struct pd_app *a, const struct pd_kv_event_rec *ev,
                              struct pd_err *err);
/* Adds a step read from a store (replay): rec->pruned is the saved state. Steps must
 * come in index order without gaps. */
enum pd_status pd_app_push_step(struct pd_app *a, const struct pd_step_rec *rec,
                                struct pd_err *err);
/* Adds a tag read from a store (already saved). */
enum pd_status pd_app_push_tag(struct pd_app *a, const struct pd_app_tag *t,
                               struct pd_err *err);
/* Replay: segments the loaded tokens when the session had no stored steps (they are
 * then not in the database until a save), computes step metrics and importance. */
enum pd_status pd_app_finish_load(struct pd_app *a, struct pd_err *err);

/* Sets the KV policy shown (spec as for --kv): canonical text, shadow mode, budget, the
 * protected sink and recent sets. PD_EINVAL with the parser's message. */
enum pd_status pd_app_set_policy(struct pd_app *a, const char *spec, struct pd_err *err);
/* The session took a new budget (K or :budget): the policy text and the protected windows
 * follow it. */
enum pd_status pd_app_set_policy_budget(struct pd_app *a, int64_t slots, struct pd_err *err);

/* Handles one session event (live). Takes ownership of ev->tok's text and blob. */
enum pd_status pd_app_on_event(struct pd_app *a, struct pd_event *ev, struct pd_err *err);

/* ---- input ---- */

/* Performs an action: mutates state, sets dirty bits, may queue effects. */
void pd_app_do(struct pd_app *a, enum pd_action act);

/* Runs a `:` command line ("budget 64", "temp 0.8", ...; the table in app_commands.c,
 * pd_app_commands, lists them with usage). Unknown commands and bad arguments leave an
 * error message. */
void pd_app_command(struct pd_app *a, const char *line);

/* Command names for completion (NULL-terminated, static). */
const char *const *pd_app_command_names(void);
/* The `:` commands: name, handler, usage and one line of help (usage and help NULL for an
 * alias); the array ends with a NULL name. */
struct pd_app_command_info {
    const char *name;
    void (*fn)(struct pd_app *a, const char *arg);
    const char *usage;
    const char *help;
};
const struct pd_app_command_info *pd_app_commands(void);

/* Searches the visible text for `query` (ASCII case-insensitive, may span tokens) and
 * moves the cursor to the first match at or after it. Empty query clears. */
void pd_app_search(struct pd_app *a, const char *query);

/* The trace pane's size changed (also on start). Re-wraps the trace. */
void pd_app_resize(struct pd_app *a, int trace_rows, int trace_cols, int steps_rows,
                   bool narrow);

/* Replay clock: advances the playhead by speed * dt while playing. */
void pd_app_tick(struct pd_app *a, double dt_s);

/* Moves the playhead to n tokens (replay) and clamps the cursor. */
void pd_app_seek(struct pd_app *a, size_t n);

/* Sets the message line (printf-style). */
void pd_app_msg(struct pd_app *a, bool error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- effects ---- */

/* Takes the oldest queued effect; false when none. */
bool pd_app_fx_pop(struct pd_app *a, struct pd_app_fx *out);

/* The trace now records into a new session (a branch): its steps are not in the
 * database, and prune marks and tags start empty (the parent keeps its own). */
void pd_app_new_session(struct pd_app *a);

/* The question and system message this live run asked (copied; system NULL: none;
 * question NULL: not known). PD_ENOMEM on failure. */
enum pd_status pd_app_set_question(struct pd_app *a, const char *question, const char *system,
                                   struct pd_err *err);

/* The loop saved successfully: marks steps and tags saved. */
void pd_app_mark_saved(struct pd_app *a);

/* ---- queries for the panes ---- */

/* True when prunes or tags differ from the database (the streamed recording is committed
 * on exit in any case, so its lag does not count). */
bool pd_app_unsaved(const struct pd_app *a);
/* What is unsaved: steps whose prune mark differs, tags, and a preference mark (0/1). */
void pd_app_unsaved_counts(const struct pd_app *a, size_t *prunes, size_t *tags,
                           size_t *prefs);

/* The step holding token index i, or -1. */
int32_t pd_app_step_of(const struct pd_app *a, size_t i);

/* The trace as a wrap source over the visible tokens (markers at step starts and role
 * changes). */
struct pd_wrap_src pd_app_wrap_src(const struct pd_app *a);

/* Surprisal in bits of token i (NAN when not scored). */
float pd_app_surprisal(const struct pd_app *a, size_t i);

/* Token text for an id through the vocabulary callback, or NULL. */
const char *pd_app_piece(const struct pd_app *a, int32_t id, size_t *len);

/* KV state of (layer, position) as of the playhead. */
/* Branch tree and diff overlays. pd_app_set_tree takes the owned array of n entries
 * (depth-first from the family's root) and opens the tree; pd_app_set_diff takes the two
 * owned texts and opens the diff (panes.h: pd_draw_overlay_lines sizes the box). */
void pd_app_set_tree(struct pd_app *a, struct pd_app_branch *tree, size_t n);
void pd_app_set_diff(struct pd_app *a, int64_t parent, int64_t branch, int64_t fork,
                     char *parent_text, char *branch_text);

/* Trace colour (colour.c). pd_app_colour_prepare brings derived data up to date (call it
 * before drawing); pd_app_colour_level maps token i to a level in [0, PD_APP_LEVELS);
 * pd_app_colour_legend writes the legend's title and the label of each level (NULL: a
 * level the mode does not use). */
const char *pd_colour_name(enum pd_colour c);
enum pd_colour pd_colour_parse(const char *s); /* PD_COLOUR_COUNT if unknown */
void pd_app_set_colour(struct pd_app *a, enum pd_colour c);
void pd_app_colour_prepare(struct pd_app *a);
int pd_app_colour_level(const struct pd_app *a, size_t i);
void pd_app_colour_legend(const struct pd_app *a, char *title, size_t n,
                          const char *labels[PD_APP_LEVELS]);

enum pd_kv_cell {
    PD_KV_CELL_NONE,      /* position not reached */
    PD_KV_CELL_KEPT,
    PD_KV_CELL_EVICTED,
    PD_KV_CELL_SINK,      /* protected at the start */
    PD_KV_CELL_PROTECTED, /* protected recent window */
    PD_KV_CELL_PRUNED,    /* dropped with its step by prune-and-continue, not evicted */
    PD_KV_CELL_COUNT
};
enum pd_kv_cell pd_app_kv_cell(const struct pd_app *a, int32_t layer, int64_t pos);

/* Per-head attention (colour.c). pd_app_heads_want asks the session for the cursor
 * token's rows when the head view needs them and they are not here (one request at a
 * time; not while following a running generation, whose newest rows come with its tokens
 * under --capture full); pd_app_heads_take takes rows for position pos. */
void pd_app_heads_want(struct pd_app *a);
void pd_app_heads_take(struct pd_app *a, struct pd_attn_rows *rows, int64_t pos);
/* Whether the rows held belong to the cursor token. */
bool pd_app_heads_ready(const struct pd_app *a);

/* Mode name for the status bar ("long", "short:256", "none"). */
void pd_app_mode_text(const struct pd_app *a, char *buf, size_t n);

/* Attention summary of token i: per layer top entries. Returns false when the token has
 * no (valid) blob. *n_layer, *n_top from the blob header; entry (l, k) via
 * pd_app_attn_entry. */
bool pd_app_attn_dims(const struct pd_app *a, size_t i, int *n_layer, int *n_top);
bool pd_app_attn_entry(const struct pd_app *a, size_t i, int layer, int k, uint32_t *pos,
                       float *w);

#endif
