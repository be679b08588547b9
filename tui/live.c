/* live.c - live source: model + engine session + store writer (DESIGN in live.h). */
#include "config.h"

#include "live.h"
#include "loop.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policies.h"
#include "steps_live.h"
#include "log.h"
#include "mem.h"
#include "chat.h"
#include "lm.h"
#include "modes.h"
#include "session.h"
#include "model_id.h"
#include "store.h"
#include "store_io.h"
#include "store_labels.h"
#include "store_writer.h"
#include "tokenizer.h"
#if HAVE_REMOTE
#include "remote_session.h"
#endif

#define PUMP_MAX 2048        /* events moved per pump, so keys stay responsive */
#define PUMP_BUDGET_S 0.008  /* and at most this long */

struct pd_live {
    struct pd_lm lm;               /* owned: the model, tokenizer and chat format */
    struct pd_cli_vocab voc;       /* owned: a remote engine's local vocabulary/template */
    struct pd_session *sess;       /* owned; NULL with a remote engine */
#if HAVE_REMOTE
    struct pd_rsession *rsess;     /* owned: the remote session */
    size_t spans_written;          /* request spans already recorded as annotations */
#endif
    char meta[768];                /* the session meta of a remote run ("" otherwise) */
    struct pd_steps_live *steps; /* owned: step boundaries inside the session, so each
                                      * token's summary carries its mass per step */
    struct pd_store *st;           /* owned; NULL without recording or re-opening */
    bool record;                   /* st takes recordings (not --no-record) */
    bool record_pending;           /* re-opened: the first generated token starts one */
    struct pd_store_writer *w;     /* owned; NULL when not recording */
    bool rec_failed_shown;         /* the current failure was announced */
    int64_t last_saved;            /* committed length of the last closed recording */
    uint64_t n_lost;               /* tokens closed writers could not save */
    char lost_why[256];
    int64_t sid;
    size_t steps_pushed;
    char db[PATH_MAX];
    char mode_text[32];
    char policy_text[96];
    char chat_name[32];
    struct pd_sampler_params sampling;
    const struct pd_modes_texts *texts; /* static: the family's mode texts, or NULL */
};

void pd_live_opts_default(struct pd_live_opts *o)
{
    memset(o, 0, sizeof *o);
    o->capture = PD_CAPTURE_LEVEL_SUMMARY;
    o->topk = 5;
    o->sampling = pd_sampler_default_params();
}

const char *pd_live_db_path(const struct pd_live *l)
{
    return l->st && l->record ? l->db : "";
}

static const char *piece(void *ud, int32_t id, size_t *len)
{
    const struct pd_tok *t = ud;
    if (id < 0 || (uint32_t)id >= pd_tok_n_vocab(t)) {
        return NULL;
    }
    return pd_tok_piece(t, id, len);
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* ---- the session, local or remote ---------------------------------------------------- */

static bool src_poll(struct pd_live *l, struct pd_event *ev)
{
#if HAVE_REMOTE
    if (l->rsess) {
        return pd_rsession_poll(l->rsess, ev);
    }
#endif
    return l->sess && pd_session_poll(l->sess, ev);
}

static bool src_wait(struct pd_live *l, struct pd_event *ev, int ms)
{
#if HAVE_REMOTE
    if (l->rsess) {
        return pd_rsession_wait(l->rsess, ev, ms);
    }
#endif
    return l->sess && pd_session_wait(l->sess, ev, ms);
}

static bool src_running(const struct pd_live *l)
{
#if HAVE_REMOTE
    if (l->rsess) {
        return pd_rsession_running(l->rsess);
    }
#endif
    return l->sess && pd_session_running(l->sess);
}

static bool src_open(const struct pd_live *l)
{
#if HAVE_REMOTE
    if (l->rsess) {
        return true;
    }
#endif
    return l->sess != NULL;
}

static enum pd_status src_send(struct pd_live *l, const struct pd_cmd *c, struct pd_err *err)
{
#if HAVE_REMOTE
    if (l->rsess) {
        return pd_rsession_send(l->rsess, c, err);
    }
#endif
    return pd_session_send(l->sess, c, err);
}

/* Creates the session row (and its model) and starts a writer on it. */
static enum pd_status start_recording(struct pd_live *l, const struct pd_live_opts *o,
                                      int64_t parent, int64_t fork_pos, struct pd_err *err)
{
    int64_t model_id = 0;
    enum pd_status rc;
#if HAVE_REMOTE
    if (l->rsess) {
        rc = pd_cli_remote_model_put(l->st, pd_rsession_info(l->rsess), &model_id, err);
    } else
#endif
    {
        rc = pd_cli_model_put(l->st, l->lm.model, o->model_path, &model_id, err);
    }
    if (rc) {
        return rc;
    }
    struct pd_run_settings rs;
    memset(&rs, 0, sizeof rs);
    rs.temperature = l->sampling.temperature;
    rs.top_p = l->sampling.top_p;
    rs.top_k = l->sampling.top_k;
    rs.min_p = l->sampling.min_p;
    rs.seed = l->sampling.seed;
    rs.mode = l->mode_text;
    rs.kv_policy = l->policy_text;
    rs.chat_template = l->chat_name;
    struct pd_message msgs[2];
    size_t n = 0;
    if (o->system) {
        msgs[n++] = (struct pd_message){PD_STORE_MSG_SYSTEM, (char *)o->system};
    }
    msgs[n++] = (struct pd_message){PD_STORE_MSG_USER, (char *)o->prompt};
    struct pd_session_new sn = {model_id, &rs, msgs, n, "live", l->meta[0] ? l->meta : NULL,
                                parent, fork_pos};
    rc = pd_store_session_create(l->st, &sn, &l->sid, err);
    if (rc) {
        return rc;
    }
    l->steps_pushed = 0;
    return pd_store_writer_open(l->st, l->sid, NULL, &l->w, err);
}

/* Loads the saved trace into the app and has the engine re-encode it. The model must
 * have the vocabulary the trace was made with: every token's text is compared. */
static enum pd_status reopen(struct pd_live *l, const struct pd_live_opts *o, struct pd_app *a,
                             struct pd_err *err)
{
    int32_t *ids = NULL;
    uint8_t *roles = NULL;
    size_t n = 0;
    enum pd_status rc = pd_io_load_prefix(l->st, o->from_session, o->from_pos, a, &ids,
                                          &roles, &n, err);
    for (size_t i = 0; rc == PD_OK && i < n; i++) {
        size_t len = 0;
        const char *p = piece(l->lm.tok, ids[i], &len);
        const struct pd_token_rec *t = &a->toks[i];
        if (!p || len != t->text_len || (len && memcmp(p, t->text, len) != 0)) {
            rc = pd_err_set(err, PD_EINVAL,
                            "%s: the vocabulary differs from session %lld's at position %zu "
                            "(token %d): re-open it with the model it was made with",
                            o->model_path, (long long)o->from_session, i, ids[i]);
        }
    }
    if (rc == PD_OK) {
        rc = pd_session_start_history(l->sess, ids, roles, n, err);
    }
    if (rc == PD_OK) {
        a->session_id = o->from_session;
        a->follow = true;
        a->cursor = n - 1;
        a->prefill_total = (int64_t)n; /* encoding: the status bar shows it until done */
    }
    free(ids);
    free(roles);
    return rc;
}

enum pd_status pd_live_open(const struct pd_live_opts *o, struct pd_app *a,
                            struct pd_live **out, struct pd_err *err)
{
    *out = NULL;
    struct pd_live *l = calloc(1, sizeof *l);
    if (!l) {
        return pd_err_set(err, PD_ENOMEM, "out of memory");
    }
    struct pd_kv_policy *policy = NULL;
    enum pd_chat_family family = PD_CHAT_FAMILY_COUNT; /* detect */
    enum pd_status rc = PD_OK;
    bool remote = o->engine.url != NULL;
    struct pd_chat_format chat;
    if (o->chat && (rc = pd_chat_family_parse(o->chat, &family, err))) {
        goto fail;
    }
    if (remote) {
#if HAVE_REMOTE
        if (o->kv_spec) {
            rc = pd_err_set(err, PD_EINVAL, "--kv needs the model in this process (a remote "
                            "engine keeps its own KV cache; ponder serve takes --kv)");
            goto fail;
        }
        if (o->from_session) {
            rc = pd_err_set(err, PD_EUNSUPPORTED, "re-opening a saved session (--from, replay "
                            "-m) needs the model in this process: not available with --engine");
            goto fail;
        }
        if (o->model_path) {
            if ((rc = pd_cli_vocab_open(o->model_path, o->chat, &l->voc, err))) {
                goto fail;
            }
            chat = l->voc.chat;
        } else {
            pd_chat_format_default(family == PD_CHAT_FAMILY_COUNT ? PD_CHAT_FAMILY_RAW : family,
                                   &chat);
        }
#else
        rc = pd_err_set(err, PD_EUNSUPPORTED, "this ponder was built without remote engines");
        goto fail;
#endif
    } else {
        if ((rc = pd_lm_open(o->model_path, family, &l->lm, err))) {
            goto fail;
        }
        chat = l->lm.chat;
    }
    struct pd_session_params p = pd_session_default_params();
    p.ctx.n_threads = o->n_threads;
    p.ctx.backend = o->backend;
    if (o->n_ctx) {
        p.ctx.n_ctx = o->n_ctx;
    }
    p.sampling = o->sampling;
    l->sampling = o->sampling;
    p.n_predict = o->n_predict;
    p.topk = o->topk;
    p.capture = o->capture;
    p.throttle_ms = o->throttle_ms;
    p.keep_alive = true; /* after an end, c continues and every action still works */
    a->continue_n = o->n_predict;
    p.chat = chat;
    snprintf(l->chat_name, sizeof l->chat_name, "%s", pd_chat_family_name(p.chat.family));
    l->texts = pd_modes_texts(p.chat.family);
    uint32_t budget = 0;
    if (o->mode_spec && (rc = pd_think_mode_parse(o->mode_spec, &p.mode, &budget, err))) {
        pd_err_prefix(err, "--mode");
        goto fail;
    }
    if (p.mode == PD_MODE_SHORT) {
        p.think_budget = budget ? budget : 512;
        a->short_budget = p.think_budget;
    } else if (p.mode == PD_MODE_LONG) {
        p.min_think = budget;
    }
    a->mode = p.mode;
    pd_app_mode_text(a, l->mode_text, sizeof l->mode_text);
    snprintf(l->policy_text, sizeof l->policy_text, "full");
    if (o->kv_spec) {
        uint32_t nctx = p.ctx.n_ctx ? p.ctx.n_ctx : 4096;
        if ((rc = pd_app_set_policy(a, o->kv_spec, err)) ||
            (rc = pd_policy_create_str(o->kv_spec, (int32_t)l->lm.model->hp.n_layer, nctx,
                                         &policy, err))) {
            pd_err_prefix(err, "--kv");
            goto fail;
        }
        snprintf(l->policy_text, sizeof l->policy_text, "%s", a->kv_policy);
        p.policy = policy;
        policy = NULL;
    }
    if (o->capture != PD_CAPTURE_LEVEL_OFF) {
        if ((rc = pd_steps_live_open(NULL, &l->steps, err))) {
            goto fail;
        }
        p.steps = pd_steps_live_iface(l->steps);
    }
    if (remote) {
#if HAVE_REMOTE
        struct pd_remote *r = NULL;
        struct pd_rsession_params rp = pd_rsession_default_params();
        rp.sampling = p.sampling;
        rp.n_predict = p.n_predict;
        rp.topk = p.topk;
        rp.chat = p.chat;
        rp.mode = p.mode;
        rp.think_budget = p.think_budget;
        rp.min_think = p.min_think;
        rp.steps = p.steps;
        rp.attn = p.capture != PD_CAPTURE_LEVEL_OFF; /* ponder serve sends summaries */
        rp.throttle_ms = p.throttle_ms;
        rp.keep_alive = p.keep_alive;
        if ((rc = pd_cli_engine_open(&o->engine, 0, l->voc.tok, &r, err)) ||
            (rc = pd_rsession_open(r, l->voc.tok, &rp, &l->rsess, err))) {
            goto fail;
        }
        pd_cli_remote_meta(pd_rsession_info(l->rsess), l->meta, sizeof l->meta);
#endif
    } else {
        rc = pd_session_open(l->lm.model, l->lm.tok, &p, &l->sess, err); /* takes the policy */
        if (rc) {
            goto fail;
        }
    }
    l->record = !o->no_record;
    if (!o->no_record || o->from_session) {
        struct pd_store_params sp = pd_store_default_params();
        if (o->db_path) {
            snprintf(l->db, sizeof l->db, "%s", o->db_path);
        } else {
            if ((rc = pd_store_default_path(l->db, sizeof l->db, err))) {
                goto fail;
            }
            sp.create_parent_dirs = !o->from_session;
        }
        if (o->from_session) {
            sp.create = false; /* re-opening reads an existing database */
        }
        if ((rc = pd_store_open(l->db, &sp, &l->st, err))) {
            goto fail;
        }
        if (o->from_session) {
            l->sid = o->from_session;
            l->record_pending = l->record;
            a->parent_id = 0;
        } else if ((rc = start_recording(l, o, 0, 0, err))) {
            goto fail;
        }
    }
    a->sampling = o->sampling;
    a->session_id = l->sid;
    a->recording = l->w != NULL;
    if (remote) {
#if HAVE_REMOTE
        const struct pd_remote_info *info = pd_rsession_info(l->rsess);
        snprintf(a->model, sizeof a->model, "%s@%s", info->model, info->base);
        snprintf(a->backend, sizeof a->backend, "%s", pd_remote_server_name(info->server));
        a->remote = true;
        a->piece = l->voc.tok ? piece : NULL;
        a->piece_ud = (void *)l->voc.tok;
        rc = pd_rsession_start(l->rsess, o->system, o->prompt, err);
#endif
    } else {
        snprintf(a->model, sizeof a->model, "%s", base_name(o->model_path));
        snprintf(a->backend, sizeof a->backend, "cpu");
        a->n_layer = (int32_t)l->lm.model->hp.n_layer;
        a->piece = piece;
        a->piece_ud = l->lm.tok;
        if (o->from_session) {
            rc = reopen(l, o, a, err);
        } else {
            rc = pd_session_start(l->sess, o->system, o->prompt, err);
        }
    }
    if (rc) {
        goto fail;
    }
    *out = l;
    return PD_OK;
fail:
    pd_kv_policy_close(&policy);
    a->piece = NULL;
    a->recording = false;
    pd_live_close(&l, NULL, NULL);
    return rc;
}

/* The generation reached its natural end (end of generation or the length limit), as
 * opposed to being stopped, running out of context, or failing. */
static bool ended_normally(const struct pd_app *a)
{
    return a->finished && !a->error[0] &&
           (strcmp(a->finish_reason, "eog") == 0 || strcmp(a->finish_reason, "length") == 0);
}

/* Records the remote requests' spans not yet recorded as "engine" annotations: which
 * engine, model and settings produced each span (the tokens are committed by now). */
static void record_spans(struct pd_live *l, struct pd_app *a)
{
#if HAVE_REMOTE
    if (!l->rsess || !l->st) {
        return;
    }
    size_t n = pd_rsession_spans(l->rsess, NULL, 0);
    struct pd_rsession_span *sp = n > l->spans_written ? pd_malloc_array(n, sizeof *sp) : NULL;
    if (!sp) {
        if (n > l->spans_written && a) {
            pd_app_msg(a, true, "recording the engine spans: out of memory");
        }
        return;
    }
    size_t now = pd_rsession_spans(l->rsess, sp, n); /* more may have ended meanwhile */
    n = now < n ? now : n;
    const struct pd_remote_info *info = pd_rsession_info(l->rsess);
    for (size_t i = l->spans_written; i < n; i++) {
        if (sp[i].pos_end <= sp[i].pos_begin) {
            continue;
        }
        char note[512];
        snprintf(note, sizeof note, "%s %s model %s request %u seed %llu temp %.3g top_p %.3g "
                 "top_k %d min_p %.3g", pd_remote_server_name(info->server), info->base,
                 info->model, sp[i].request, (unsigned long long)sp[i].seed,
                 (double)sp[i].sampling.temperature, (double)sp[i].sampling.top_p,
                 sp[i].sampling.top_k, (double)sp[i].sampling.min_p);
        struct pd_annotation an = {0, false, sp[i].pos_begin, sp[i].pos_end, "engine", note, 0};
        struct pd_err e2;
        if (pd_store_annotate(l->st, l->sid, &an, NULL, &e2) && a) {
            pd_app_msg(a, true, "recording the engine span: %s", e2.msg);
        }
    }
    l->spans_written = n;
    free(sp);
#else
    (void)l, (void)a;
#endif
}

/* Pushes the steps the segmenter has closed since the last call. */
static void push_steps(struct pd_live *l, struct pd_app *a)
{
    if (!l->w) {
        return;
    }
    if (l->steps_pushed > a->n_steps) {
        l->steps_pushed = a->n_steps;
    }
    while (l->steps_pushed < a->n_steps && !a->steps[l->steps_pushed].open) {
        struct pd_err e2;
        if (pd_store_writer_push_step(l->w, &a->steps[l->steps_pushed].rec, &e2)) {
            pd_app_msg(a, true, "recording: %s", e2.msg);
            break;
        }
        l->steps_pushed++;
    }
}

/* Mirrors the writer's state into the app; announces a new failure once. */
static void rec_status(struct pd_live *l, struct pd_app *a)
{
    if (!l->w) {
        return;
    }
    struct pd_err e2;
    bool failed = pd_store_writer_status(l->w, &e2) != PD_OK;
    uint64_t unsaved = pd_store_writer_unsaved(l->w);
    if (failed && !l->rec_failed_shown) {
        pd_app_msg(a, true, "recording failed: %s; %llu tokens kept in memory, s retries",
                   e2.msg, (unsigned long long)unsaved);
        l->rec_failed_shown = true;
    }
    if (!failed) {
        l->rec_failed_shown = false;
    }
    int64_t committed = pd_store_writer_committed(l->w);
    if (failed != a->rec_failed || unsaved != a->rec_unsaved || committed != a->n_committed) {
        a->dirty |= PD_DIRTY_STATUS; /* the status bar shows all three */
    }
    a->rec_failed = failed;
    a->rec_unsaved = unsaved;
    a->n_committed = committed;
}

/* A failed recording tries again (on `s` and on resume). */
static void rec_retry(struct pd_live *l, struct pd_app *a)
{
    if (l->w && pd_store_writer_status(l->w, NULL) != PD_OK) {
        pd_store_writer_retry(l->w);
        l->rec_failed_shown = false;
        pd_app_msg(a, false, "recording: retrying");
    }
}

static void stop_recording(struct pd_live *l, struct pd_app *a, bool finished)
{
    if (!l->w) {
        return;
    }
    struct pd_err e2;
    pd_err_clear(&e2);
    /* one more try for a failed recording, then count what stays unsaved */
    pd_store_writer_retry(l->w);
    enum pd_status st = pd_store_writer_flush(l->w, &e2);
    uint64_t lost = st != PD_OK ? pd_store_writer_unsaved(l->w) : 0;
    int64_t saved = pd_store_writer_committed(l->w);
    if (pd_store_writer_close(&l->w, finished && st == PD_OK, &e2) && st == PD_OK) {
        st = e2.status ? e2.status : PD_EDB;
    }
    if (st != PD_OK) {
        l->n_lost += lost;
        snprintf(l->lost_why, sizeof l->lost_why, "%s", e2.msg);
        if (a) {
            pd_app_msg(a, true, "recording: %s (%llu tokens not saved)", e2.msg,
                       (unsigned long long)lost);
        }
    }
    l->last_saved = saved;
    record_spans(l, a);
    if (a) {
        a->recording = false;
        a->rec_failed = st != PD_OK;
        a->rec_unsaved = lost;
        a->n_committed = saved;
        a->dirty |= PD_DIRTY_STATUS;
    }
}

/* The session that holds position pos of the trace recorded as sid: sid itself, or the
 * ancestor whose sequence the position belongs to (a branch of sid before sid's own fork
 * point hangs off sid's parent). */
static int64_t owner_of(struct pd_live *l, int64_t sid, int64_t pos)
{
    for (int k = 0; k < 256 && sid; k++) {
        struct pd_store_session_info info;
        if (pd_store_session_get(l->st, sid, &info, NULL) != PD_OK) {
            break;
        }
        int64_t fork = info.fork_pos, parent = info.parent_id;
        pd_store_session_info_free(&info);
        if (pos >= fork || parent == 0) {
            break;
        }
        sid = parent;
    }
    return sid;
}

/* Starts recording a new session that shares the trace's first pos tokens with the
 * session holding them (a branch, or the continuation of a re-opened session). */
static bool record_new(struct pd_live *l, struct pd_app *a, int64_t pos)
{
    struct pd_err e2;
    int64_t parent = owner_of(l, l->sid, pos);
    struct pd_live_opts o;
    pd_live_opts_default(&o);
    /* The conversation is the parent's; read it back for the new row. */
    struct pd_message *msgs = NULL;
    size_t n = 0;
    if (pd_store_messages_get(l->st, parent, &msgs, &n, &e2) == PD_OK) {
        for (size_t i = 0; i < n; i++) {
            if (msgs[i].role == PD_STORE_MSG_SYSTEM) {
                o.system = msgs[i].content;
            } else if (msgs[i].role == PD_STORE_MSG_USER) {
                o.prompt = msgs[i].content;
            }
        }
    }
    o.model_path = a->model;
    bool ok = o.prompt && start_recording(l, &o, parent, pos, &e2) == PD_OK;
    if (!ok) {
        pd_app_msg(a, true, "not recorded: %s", o.prompt ? e2.msg : "the session has no prompt");
        l->w = NULL;
    } else {
        a->session_id = l->sid;
        a->parent_id = parent;
        a->recording = true;
    }
    l->record_pending = false;
    pd_store_messages_free(msgs, n);
    return ok;
}

/* A re-opened session records nothing until it changes: then (a new token, a save, a
 * branch) a new session starts at the trace's current end. */
static void record_if_pending(struct pd_live *l, struct pd_app *a, int64_t pos)
{
    if (l->record_pending && !l->w) {
        record_new(l, a, pos);
    }
}

/* Before a branch rewinds the trace: the parent's unsaved prunes, tags and preference
 * are saved to the parent (they belong to the session they were made on). */
static void save_before_branch(struct pd_live *l, struct pd_app *a)
{
    if (!l->st || !l->record || !pd_app_unsaved(a)) {
        return;
    }
    record_if_pending(l, a, (int64_t)a->n_toks);
    struct pd_err e2;
    push_steps(l, a);
    if ((l->w && pd_store_writer_flush(l->w, &e2)) || pd_io_save(l->st, l->sid, a, &e2)) {
        pd_app_msg(a, true, "branch: the parent's edits were not saved: %s", e2.msg);
    }
}

static void on_branch(struct pd_live *l, struct pd_app *a, int64_t pos)
{
    if (!l->st || !l->record) {
        return;
    }
    stop_recording(l, a, false);
    struct pd_err e2;
    if (a->pref_over && !a->pref_saved &&
        pd_store_prefer(l->st, l->sid, a->pref_over, NULL, NULL, &e2) != PD_OK) {
        pd_app_msg(a, true, "prefer: %s", e2.msg); /* the mark belonged to the parent */
    }
    a->pref_over = 0;
    a->pref_saved = false;
    if (record_new(l, a, pos)) {
        pd_app_new_session(a);
    }
}

int pd_live_fd(void *ud)
{
    struct pd_live *l = ud;
#if HAVE_REMOTE
    if (l->rsess) {
        return pd_rsession_fd(l->rsess);
    }
#endif
    return l->sess ? pd_session_fd(l->sess) : -1;
}

/* One event: to the recording first (a copy), then into the app. */
static void handle_event(struct pd_live *l, struct pd_app *a, struct pd_event *ev)
{
    struct pd_err e2;
    if (ev->kind == PD_EV_TOKEN) {
        record_if_pending(l, a, ev->tok.pos);
    }
    if (l->w && ev->kind == PD_EV_TOKEN && pd_store_writer_push_token(l->w, &ev->tok, &e2)) {
        pd_app_msg(a, true, "recording: %s", e2.msg);
    }
    if (l->w && ev->kind == PD_EV_EVICT && pd_store_writer_push_kv(l->w, &ev->kv, &e2)) {
        pd_app_msg(a, true, "recording: %s", e2.msg);
    }
    enum pd_event_kind kind = ev->kind;
    int64_t pos = ev->pos;
    bool leg = kind == PD_EV_RESUMED && strcmp(ev->text, "continue") == 0;
    if (kind == PD_EV_BRANCHED) {
        save_before_branch(l, a);
    }
    if (pd_app_on_event(a, ev, &e2)) {
        pd_app_msg(a, true, "%s", e2.msg);
    }
    pd_event_free(ev);
    if (kind == PD_EV_BRANCHED) {
        on_branch(l, a, pos);
    }
    if (leg && l->steps_pushed > 0 && l->steps_pushed >= a->n_steps) {
        l->steps_pushed = a->n_steps - 1; /* the reopened last step is pushed again */
    }
    if (kind == PD_EV_FINISHED || kind == PD_EV_ERROR) {
        /* The writer keeps committing in its thread; it is closed (and the session marked
         * finished) on exit, so the UI never waits for a backlog here. */
        push_steps(l, a);
    }
}

void pd_live_pump(void *ud, struct pd_app *a)
{
    struct pd_live *l = ud;
    struct pd_event ev;
    /* Bounded in count and time so keys stay responsive when tokens arrive faster than
     * the screen refreshes. */
    double t0 = pd_loop_now();
    for (int k = 0; k < PUMP_MAX && src_poll(l, &ev); k++) {
        handle_event(l, a, &ev);
        if ((k & 63) == 63 && pd_loop_now() - t0 > PUMP_BUDGET_S) {
            break;
        }
    }
    push_steps(l, a);
    rec_status(l, a);
}

/* :ask: the user's text becomes the turn the chat template puts after an answer; when
 * the answer already ended with the end-of-turn token, that is not added twice. */
static bool render_turn(struct pd_live *l, struct pd_app *a, struct pd_cmd *cmd)
{
    enum pd_chat_family f = l->lm.chat.family;
    enum pd_chat_think think = PD_CHAT_THINK_DEFAULT;
    if (a->mode == PD_MODE_NONE &&
        (f == PD_CHAT_FAMILY_QWEN3 || f == PD_CHAT_FAMILY_DEEPSEEK_R1)) {
        think = PD_CHAT_THINK_OFF;
    }
    struct pd_buf b;
    pd_buf_init(&b);
    struct pd_err e2;
    if (pd_chat_render_turn(&l->lm.chat, cmd->text, think, &b, &e2)) {
        pd_app_msg(a, true, "ask: %s", e2.msg);
        pd_buf_deinit(&b);
        return false;
    }
    const char *text = b.data ? b.data : "";
    const char *eot = pd_chat_eot_text(f);
    if (eot && a->n_toks > 0 && strncmp(text, eot, strlen(eot)) == 0) {
        const struct pd_token_rec *last = &a->toks[a->n_toks - 1];
        if (last->text && last->text_len == strlen(eot) &&
            memcmp(last->text, eot, last->text_len) == 0) {
            text += strlen(eot);
        }
    }
    bool fits = strlen(text) < sizeof cmd->text;
    if (fits) {
        snprintf(cmd->text, sizeof cmd->text, "%s", text);
    } else {
        pd_app_msg(a, true, "ask: the turn is %zu bytes; at most %zu fit", strlen(text),
                   sizeof cmd->text - 1);
    }
    pd_buf_deinit(&b);
    return fits;
}

void pd_live_exec(void *ud, struct pd_app *a, const struct pd_app_fx *fx)
{
    struct pd_live *l = ud;
    struct pd_err e2;
    pd_err_clear(&e2);
    if (fx->kind == PD_FX_SESSION) {
        if (!src_running(l)) {
            pd_app_msg(a, true, "the generation has ended");
            a->pause_pending = false;
            return;
        }
        struct pd_cmd cmd = fx->cmd;
        if (cmd.kind == PD_CMD_RESUME) {
            rec_retry(l, a);
        }
        if (cmd.kind == PD_CMD_ANSWER_NOW && !cmd.text[0] && l->texts) {
            /* The family's hard-interrupt text: a short lead-in, then the close marker. */
            snprintf(cmd.text, sizeof cmd.text, "%s", pd_modes_answer_now(l->texts, false));
        }
        if (cmd.kind == PD_CMD_NEW_TURN && !render_turn(l, a, &cmd)) {
            return;
        }
        if (cmd.kind == PD_CMD_SET_POLICY) {
            /* The app only checked the spec; the policy object is built here, where the
             * model is known. "full" means no policy. */
            if (!l->sess) {
                pd_app_msg(a, true, "policy: a remote engine does not expose its KV cache");
                return;
            }
            uint32_t nctx = l->sess ? 4096 : 0;
            if (strncmp(cmd.text, "full", 4) != 0 &&
                pd_policy_create_str(cmd.text, (int32_t)l->lm.model->hp.n_layer, nctx,
                                       &cmd.policy, &e2)) {
                pd_app_msg(a, true, "policy: %s", e2.msg);
                return;
            }
        }
        if (src_send(l, &cmd, &e2)) {
            pd_app_msg(a, true, "%s", e2.msg);
            a->pause_pending = false;
            pd_kv_policy_close(&cmd.policy);
            return;
        }
        if (cmd.kind == PD_CMD_SET_POLICY && pd_app_set_policy(a, cmd.text, &e2) == PD_OK) {
            snprintf(l->policy_text, sizeof l->policy_text, "%s", a->kv_policy);
        }
        if (cmd.kind == PD_CMD_SET_SAMPLING) {
            l->sampling = cmd.sampling; /* branches recorded from now on carry it */
            a->sampling = cmd.sampling;
        }
        return;
    }
    if (fx->kind == PD_FX_BRANCHES || fx->kind == PD_FX_DIFF) {
        pd_io_fx(l->st, a, fx);
        return;
    }
    if (fx->kind == PD_FX_OPEN) {
        pd_app_msg(a, true, "open #%lld: the model runs this session; to read or continue "
                            "another, quit and run 'ponder replay %lld' (with -m MODEL to "
                            "continue it)", (long long)fx->id, (long long)fx->id);
        return;
    }
    if (fx->kind == PD_FX_SAVE) {
        if (!l->st || !l->record) {
            pd_app_msg(a, true, "save: not recording (started with --no-record)");
            return;
        }
        record_if_pending(l, a, (int64_t)a->n_toks);
        rec_retry(l, a);
        if (l->w && pd_store_writer_flush(l->w, &e2)) {
            rec_status(l, a);
            return;
        }
        if (l->w) {
            a->n_committed = pd_store_writer_committed(l->w);
        }
        if (pd_io_save(l->st, l->sid, a, &e2)) {
            pd_app_msg(a, true, "save: %s", e2.msg);
            return;
        }
        pd_app_msg(a, false, "saved session %lld (%zu tokens) to %s", (long long)l->sid,
                   a->n_toks, l->db);
    }
}

void pd_live_close(struct pd_live **lp, struct pd_app *a, struct pd_live_report *report)
{
    if (report) {
        memset(report, 0, sizeof *report);
    }
    if (!lp || !*lp) {
        return;
    }
    struct pd_live *l = *lp;
    if (a && src_open(l) && src_running(l)) {
        /* Stop the worker and record what it produced up to the stop (the last events
         * are still queued), waiting at most ~2 s for its finished event. */
        struct pd_cmd stop;
        memset(&stop, 0, sizeof stop);
        stop.kind = PD_CMD_STOP;
        stop.token = -1;
        struct pd_event ev;
        if (src_send(l, &stop, NULL) == PD_OK) {
            for (int k = 0; k < 100000 && !a->finished; k++) {
                if (!src_wait(l, &ev, 2000)) {
                    break;
                }
                handle_event(l, a, &ev);
            }
        }
    }
    if (a && src_open(l)) {
        struct pd_event ev;
        while (src_poll(l, &ev)) {
            handle_event(l, a, &ev);
        }
    }
    pd_session_close(&l->sess);
    pd_steps_live_close(&l->steps);
    if (a) {
        push_steps(l, a);
    }
    stop_recording(l, a, a && ended_normally(a));
    if (report) {
        report->session_id = l->st ? l->sid : 0;
        report->n_saved = l->last_saved;
        report->n_lost = l->n_lost;
        snprintf(report->why, sizeof report->why, "%s", l->lost_why);
    }
#if HAVE_REMOTE
    pd_rsession_close(&l->rsess); /* after stop_recording: it lists the request spans */
#endif
    pd_store_close(&l->st);
    pd_lm_close(&l->lm);
    pd_cli_vocab_close(&l->voc);
    free(l);
    *lp = NULL;
}
