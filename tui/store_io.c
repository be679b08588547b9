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
