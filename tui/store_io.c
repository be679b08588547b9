/* store_io.c - replay loading and saving the workbench's edits (see store_io.h). */
#include "store_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "store_labels.h"
#include "store_replay.h"

#define READ_CHUNK 256

enum pd_status pd_io_load(struct pd_store *st, int64_t id, struct pd_app *a,
                          struct pd_err *err)
{
    struct pd_replay *r = NULL;
    struct pd_kv_event_rec *ev = NULL;
    size_t n_ev = 0;
    struct pd_token_rec buf[READ_CHUNK];
    enum pd_status rc = pd_replay_open(st, id, &r, err);
    if (rc) {
        return rc;
    }
    const struct pd_store_session_info *info = pd_replay_info(r);
    a->session_id = id;
    a->parent_id = info->parent_id;
    snprintf(a->model, sizeof a->model, "%s", info->model_name ? info->model_name : "");
    if (info->has_settings && info->settings.kv_policy && *info->settings.kv_policy) {
        struct pd_err e2;
        if (pd_app_set_policy(a, info->settings.kv_policy, &e2) != PD_OK) {
            snprintf(a->kv_policy, sizeof a->kv_policy, "%s", info->settings.kv_policy);
        }
    }
    if (info->has_settings && info->settings.mode) {
        enum pd_think_mode m;
        uint32_t b = 0;
        if (pd_think_mode_parse(info->settings.mode, &m, &b, NULL) == PD_OK) {
            a->mode = m;
            if (m == PD_MODE_SHORT && b) {
                a->short_budget = b;
            }
        }
    }
    for (;;) {
        size_t got = 0;
        memset(buf, 0, sizeof buf);
        rc = pd_replay_read(r, buf, READ_CHUNK, &got, err);
        for (size_t i = 0; i < got; i++) {
            if (rc == PD_OK) {
                rc = pd_app_push_token_take(a, &buf[i], err);
            }
            pd_token_rec_free(&buf[i]);
        }
        if (rc || got == 0) {
            break;
        }
    }
    if (rc == PD_OK) {
        rc = pd_replay_kv_events(r, 0, pd_replay_length(r) + 1, &ev, &n_ev, err);
    }
    for (size_t i = 0; rc == PD_OK && i < n_ev; i++) {
        rc = pd_app_push_kv(a, &ev[i], err);
    }
    size_t n_steps = 0, n_ann = 0;
    const struct pd_step_rec *steps = pd_replay_steps(r, &n_steps);
    for (size_t i = 0; rc == PD_OK && i < n_steps; i++) {
        rc = pd_app_push_step(a, &steps[i], err);
    }
    const struct pd_annotation *ann = pd_replay_annotations(r, &n_ann);
    for (size_t i = 0; rc == PD_OK && i < n_ann; i++) {
        struct pd_app_tag t;
        memset(&t, 0, sizeof t);
        t.id = ann[i].id;
        t.whole = ann[i].whole_session;
        t.pos_begin = ann[i].pos_begin;
        t.pos_end = ann[i].pos_end;
        t.saved = true;
        snprintf(t.tag, sizeof t.tag, "%s", ann[i].tag ? ann[i].tag : "");
        snprintf(t.note, sizeof t.note, "%s", ann[i].note ? ann[i].note : "");
        rc = pd_app_push_tag(a, &t, err);
    }
    struct pd_pref *prefs = NULL;
    size_t n_prefs = 0;
    if (rc == PD_OK) {
        rc = pd_store_prefs_get(st, id, &prefs, &n_prefs, err);
    }
    for (size_t i = 0; rc == PD_OK && i < n_prefs && !a->pref_over; i++) {
        if (prefs[i].chosen_id == id) {
            a->pref_over = prefs[i].rejected_id;
            a->pref_saved = true;
        }
    }
    pd_store_prefs_free(prefs, n_prefs);
    if (rc == PD_OK) {
        rc = pd_app_finish_load(a, err);
    }
    if (rc == PD_OK) {
        pd_app_seek(a, a->n_toks);
        a->follow = false;
        a->cursor = 0;
    }
    free(ev);
    pd_replay_close(&r);
    if (rc) {
        pd_err_prefix(err, "%s: session %lld", pd_store_path(st), (long long)id);
    }
    return rc;
}

enum pd_status pd_io_load_prefix(struct pd_store *st, int64_t id, int64_t upto,
                                 struct pd_app *a, int32_t **ids, uint8_t **roles, size_t *n,
                                 struct pd_err *err)
{
    *ids = NULL;
    *roles = NULL;
    *n = 0;
    struct pd_replay *r = NULL;
    enum pd_status rc = pd_replay_open(st, id, &r, err); /* its errors name the database */
    if (rc) {
        return rc;
    }
    int64_t len = pd_replay_length(r);
    size_t want = (size_t)(upto > 0 && upto < len ? upto : len);
    if (want == 0) {
        pd_replay_close(&r);
        return pd_err_set(err, PD_EINVAL, "%s: session %lld has no tokens", pd_store_path(st),
                          (long long)id);
    }
    int32_t *iv = pd_malloc_array(want, sizeof *iv);
    uint8_t *rv = pd_malloc_array(want, 1);
    if (!iv || !rv) {
        rc = pd_err_set(err, PD_ENOMEM, "out of memory (%zu tokens)", want);
    }
    struct pd_token_rec buf[READ_CHUNK];
    size_t have = 0;
    while (rc == PD_OK && have < want) {
        size_t got = 0;
        size_t ask = want - have < READ_CHUNK ? want - have : READ_CHUNK;
        memset(buf, 0, sizeof buf);
        rc = pd_replay_read(r, buf, ask, &got, err);
        for (size_t i = 0; i < got; i++) {
            if (rc == PD_OK) {
                iv[have] = buf[i].id;
                rv[have] = (uint8_t)buf[i].role;
                buf[i].flags &= ~(uint32_t)PD_TOKF_PRUNED; /* marks stay with the session */
                rc = pd_app_push_token_take(a, &buf[i], err);
                have++;
            }
            pd_token_rec_free(&buf[i]);
        }
        if (rc == PD_OK && got == 0) {
            rc = pd_err_set(err, PD_EFORMAT, "ends at %zu of %zu tokens", have, want);
        }
    }
    pd_replay_close(&r);
    if (rc) {
        free(iv);
        free(rv);
        pd_err_prefix(err, "%s: session %lld", pd_store_path(st), (long long)id);
        return rc;
    }
    *ids = iv;
    *roles = rv;
    *n = want;
    return PD_OK;
}

enum pd_status pd_io_save(struct pd_store *st, int64_t id, struct pd_app *a,
                          struct pd_err *err)
{
    enum pd_status rc = pd_store_begin(st, err);
    if (rc) {
        return rc;
    }
    for (size_t k = 0; rc == PD_OK && k < a->n_steps; k++) {
        if (!a->steps[k].open) {
            rc = pd_store_steps_put(st, id, &a->steps[k].rec, 1, err);
        }
    }
    for (size_t k = 0; rc == PD_OK && k < a->n_steps; k++) {
        const struct pd_app_step *s = &a->steps[k];
        if (s->open || s->rec.pruned == s->pruned_saved) {
            continue;
        }
        rc = s->rec.pruned ? pd_store_prune(st, id, s->rec.index, "manual", "user", err)
                           : pd_store_unprune(st, id, s->rec.index, err);
    }
    for (size_t k = 0; rc == PD_OK && k < a->n_tags; k++) {
        struct pd_app_tag *t = &a->tags[k];
        if (t->saved) {
            continue;
        }
        struct pd_annotation an;
        memset(&an, 0, sizeof an);
        an.whole_session = t->whole;
        an.pos_begin = t->pos_begin;
        an.pos_end = t->pos_end;
        an.tag = t->tag;
        an.note = t->note;
        rc = pd_store_annotate(st, id, &an, &t->id, err);
    }
    if (rc == PD_OK && a->pref_over && !a->pref_saved) {
        rc = pd_store_prefer(st, id, a->pref_over, NULL, NULL, err);
    }
    if (rc == PD_OK) {
        rc = pd_store_commit(st, err);
    }
    if (rc) {
        pd_store_rollback(st);
        for (size_t k = 0; k < a->n_tags; k++) {
            if (!a->tags[k].saved) {
                a->tags[k].id = 0;
            }
        }
        return rc;
    }
    pd_app_mark_saved(a);
    return PD_OK;
}

/* ---- branch tree and diff ------------------------------------------------------------- */

static void tree_add(const struct pd_store_session_info *all, size_t n, size_t at, int depth,
                     const struct pd_pref *prefs, size_t n_prefs, struct pd_app_branch *out,
                     size_t *k)
{
    if (*k >= n || depth > 1000) {
        return;
    }
    const struct pd_store_session_info *s = &all[at];
    struct pd_app_branch *b = &out[(*k)++];
    memset(b, 0, sizeof *b);
    b->id = s->id;
    b->parent = s->parent_id;
    b->fork_pos = s->fork_pos;
    b->n_tokens = s->n_tokens;
    b->depth = depth;
    b->finished = s->finished;
    for (size_t i = 0; i < n_prefs; i++) {
        b->preferred |= prefs[i].chosen_id == s->id && prefs[i].rejected_id == s->parent_id;
    }
    snprintf(b->tags, sizeof b->tags, "%s", s->tags ? s->tags : "");
    snprintf(b->title, sizeof b->title, "%s", s->title ? s->title : "");
    for (char *c = b->title; *c; c++) {
        if ((unsigned char)*c < 0x20) {
            *c = ' ';
        }
    }
    for (size_t i = 0; i < n; i++) { /* the list is by id: children come in id order */
        if (all[i].parent_id == s->id && all[i].id != s->id) {
            tree_add(all, n, i, depth + 1, prefs, n_prefs, out, k);
        }
    }
}

enum pd_status pd_io_load_tree(struct pd_store *st, int64_t id, struct pd_app_branch **out,
                               size_t *n_out, struct pd_err *err)
{
    *out = NULL;
    *n_out = 0;
    struct pd_store_session_info *all = NULL;
    size_t n = 0;
    struct pd_pref *prefs = NULL;
    size_t n_prefs = 0;
    enum pd_status rc = pd_store_session_list(st, &all, &n, err);
    if (!rc) {
        rc = pd_store_prefs_get(st, 0, &prefs, &n_prefs, err);
    }
    size_t root = n;
    for (size_t i = 0; !rc && i < n; i++) {
        if (all[i].id == id) {
            root = i;
        }
    }
    if (!rc && root == n) {
        rc = pd_err_set(err, PD_EINVAL, "no session %lld", (long long)id);
    }
    /* Up to the root (a chain can be no longer than the list). */
    for (size_t hops = 0; !rc && all[root].parent_id != 0 && hops < n; hops++) {
        size_t p = n;
        for (size_t i = 0; i < n; i++) {
            if (all[i].id == all[root].parent_id) {
                p = i;
            }
        }
        if (p == n) {
            break;
        }
        root = p;
    }
    struct pd_app_branch *tree = NULL;
    if (!rc && !(tree = pd_malloc_array(n, sizeof *tree))) {
        rc = pd_err_set(err, PD_ENOMEM, "out of memory (branch tree)");
    }
    if (!rc) {
        size_t k = 0;
        tree_add(all, n, root, 0, prefs, n_prefs, tree, &k);
        *out = tree;
        *n_out = k;
    }
    for (size_t i = 0; i < n; i++) {
        pd_store_session_info_free(&all[i]);
    }
    free(all);
    pd_store_prefs_free(prefs, n_prefs);
    if (rc) {
        pd_err_prefix(err, "%s", pd_store_path(st));
    }
    return rc;
}

/* The text of session id's tokens from pos on, at most max bytes (cut between tokens). */
static enum pd_status text_from(struct pd_store *st, int64_t id, int64_t pos, size_t max,
                                char **out, struct pd_err *err)
{
    *out = NULL;
    struct pd_replay *r = NULL;
    struct pd_buf b;
    pd_buf_init(&b);
    enum pd_status rc = pd_replay_open(st, id, &r, err);
    if (!rc) {
        rc = pd_replay_seek(r, pos, err);
    }
    struct pd_token_rec buf[READ_CHUNK];
    bool cut = false;
    while (!rc && !cut) {
        size_t got = 0;
        rc = pd_replay_read(r, buf, READ_CHUNK, &got, err);
        for (size_t i = 0; i < got; i++) {
            if (!cut && b.len + buf[i].text_len > max) {
                cut = true;
            }
            if (!cut && !pd_buf_append(&b, buf[i].text, buf[i].text_len)) {
                rc = pd_err_set(err, PD_ENOMEM, "out of memory (diff)");
            }
            pd_token_rec_free(&buf[i]);
        }
        if (got == 0) {
            break;
        }
    }
    pd_replay_close(&r);
    if (!rc && cut && !pd_buf_puts(&b, "...")) {
        rc = pd_err_set(err, PD_ENOMEM, "out of memory (diff)");
    }
    if (rc) {
        pd_buf_deinit(&b);
        return rc;
    }
    *out = b.data ? pd_buf_take(&b) : pd_strdup("");
    return *out ? PD_OK : pd_err_set(err, PD_ENOMEM, "out of memory (diff)");
}

enum pd_status pd_io_load_diff(struct pd_store *st, int64_t id, size_t max_bytes,
                               int64_t *parent, int64_t *fork, char **parent_text,
                               char **branch_text, struct pd_err *err)
{
    *parent_text = *branch_text = NULL;
    struct pd_store_session_info info;
    memset(&info, 0, sizeof info);
    enum pd_status rc = pd_store_session_get(st, id, &info, err);
    if (!rc && info.parent_id == 0) {
        rc = pd_err_set(err, PD_EINVAL, "session %lld is not a branch: no parent to compare "
                        "with", (long long)id);
    }
    if (!rc) {
        *parent = info.parent_id;
        *fork = info.fork_pos;
        rc = text_from(st, info.parent_id, info.fork_pos, max_bytes, parent_text, err);
    }
    if (!rc) {
        rc = text_from(st, id, info.fork_pos, max_bytes, branch_text, err);
    }
    pd_store_session_info_free(&info);
    if (rc) {
        free(*parent_text);
        *parent_text = NULL;
        pd_err_prefix(err, "%s", pd_store_path(st));
    }
    return rc;
}

#define DIFF_MAX_BYTES 16384

void pd_io_fx(struct pd_store *st, struct pd_app *a, const struct pd_app_fx *fx)
{
    struct pd_err err;
    pd_err_clear(&err);
    if (!st) {
        pd_app_msg(a, true, "%s: this session is not recorded (started with --no-record)",
                   fx->kind == PD_FX_DIFF ? "diff" : "branches");
        return;
    }
    if (fx->kind == PD_FX_BRANCHES) {
        struct pd_app_branch *tree;
        size_t n;
        if (pd_io_load_tree(st, a->session_id, &tree, &n, &err)) {
            pd_app_msg(a, true, "branches: %s", err.msg);
            return;
        }
        pd_app_set_tree(a, tree, n);
        pd_app_msg(a, false, "%zu session%s in this family", n, n == 1 ? "" : "s");
    } else if (fx->kind == PD_FX_DIFF) {
        int64_t parent = 0, fork = 0;
        char *pt, *bt;
        if (pd_io_load_diff(st, fx->id, DIFF_MAX_BYTES, &parent, &fork, &pt, &bt, &err)) {
            pd_app_msg(a, true, "diff: %s", err.msg);
            return;
        }
        pd_app_set_diff(a, parent, fx->id, fork, pt, bt);
    }
}
