/* trace.c - names and cleanup for the trace records. */
#include "trace.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "le.h"

static const char *const role_names[PD_ROLE_COUNT] = {"prompt", "think", "answer", "injected"};
_Static_assert(sizeof role_names / sizeof role_names[0] == PD_ROLE_COUNT, "role table");

static const char *const step_kind_names[PD_STEP_KIND_COUNT] = {
    "plan", "compute", "check", "backtrack", "conclude"};
_Static_assert(sizeof step_kind_names / sizeof step_kind_names[0] == PD_STEP_KIND_COUNT,
               "step kind table");

const char *pd_role_name(enum pd_role r)
{
    return (unsigned)r < PD_ROLE_COUNT ? role_names[r] : NULL;
}

enum pd_role pd_role_parse(const char *s)
{
    for (int i = 0; i < PD_ROLE_COUNT; i++) {
        if (strcmp(s, role_names[i]) == 0) {
            return (enum pd_role)i;
        }
    }
    return PD_ROLE_COUNT;
}

const char *pd_step_kind_name(enum pd_step_kind k)
{
    return (unsigned)k < PD_STEP_KIND_COUNT ? step_kind_names[k] : NULL;
}

enum pd_step_kind pd_step_kind_parse(const char *s)
{
    for (int i = 0; i < PD_STEP_KIND_COUNT; i++) {
        if (strcmp(s, step_kind_names[i]) == 0) {
            return (enum pd_step_kind)i;
        }
    }
    return PD_STEP_KIND_COUNT;
}

bool pd_attn_blob_layout(const uint8_t *blob, size_t len, uint32_t *n_layer, uint32_t *n_top,
                         uint32_t *n_steps)
{
    if (!blob || len < 4 || (blob[0] != 1 && blob[0] != 2) || blob[1] == 0 || blob[2] == 0 ||
        blob[3] != 0) {
        return false;
    }
    size_t base = 4 + (size_t)blob[1] * blob[2] * 8; /* at most 4 + 255*255*8 */
    uint32_t ns = 0;
    if (blob[0] == 1) {
        if (len != base) {
            return false;
        }
    } else {
        if (len < base + 4) {
            return false;
        }
        ns = pd_le_get_u32(blob + base);
        if (ns > (1u << 20) || len != base + 4 + (size_t)ns * 8) {
            return false;
        }
    }
    *n_layer = blob[1];
    *n_top = blob[2];
    *n_steps = ns;
    return true;
}

enum pd_status pd_attn_blob_check(const uint8_t *blob, size_t len, struct pd_err *err)
{
    if (blob == NULL || len < PD_ATTN_BLOB_HEADER) {
        return pd_err_set(err, PD_EFORMAT, "attention blob: %zu bytes, need at least %d", len,
                          PD_ATTN_BLOB_HEADER);
    }
    if (blob[0] != 1 && blob[0] != 2) {
        return pd_err_set(err, PD_EFORMAT, "attention blob: version %u, expected 1 or 2",
                          blob[0]);
    }
    size_t n_layer = blob[1], n_top = blob[2];
    if (n_layer == 0 || n_top == 0) {
        return pd_err_set(err, PD_EFORMAT, "attention blob: %zu layers x %zu entries (both must "
                          "be >= 1)", n_layer, n_top);
    }
    if (blob[3] != 0) {
        return pd_err_set(err, PD_EFORMAT, "attention blob: reserved byte is %u, expected 0",
                          blob[3]);
    }
    uint32_t l32, t32, n_steps;
    if (!pd_attn_blob_layout(blob, len, &l32, &t32, &n_steps)) {
        size_t want = PD_ATTN_BLOB_HEADER + n_layer * n_top * PD_ATTN_BLOB_ENTRY;
        return pd_err_set(err, PD_EFORMAT, "attention blob: %zu bytes, but %zu layers x %zu "
                          "entries need %zu%s", len, n_layer, n_top, want,
                          blob[0] == 2 ? " plus the step section" : "");
    }
    const float slack = 1.001f;
    for (uint32_t k = 0; k < n_steps; k++) {
        float m = pd_attn_blob_step_mass(blob, k);
        if (!isfinite(m) || m < 0.0f || m > slack) {
            return pd_err_set(err, PD_EFORMAT, "attention blob: step %u mass %g outside [0, 1]",
                              k, (double)m);
        }
    }
    const uint8_t *e = blob + PD_ATTN_BLOB_HEADER;
    for (size_t i = 0; i < n_layer * n_top; i++) {
        uint32_t pos = pd_le_get_u32(e + i * PD_ATTN_BLOB_ENTRY);
        float w = pd_bits_f32(pd_le_get_u32(e + i * PD_ATTN_BLOB_ENTRY + 4));
        if (!isfinite(w) || w < 0.0f || w > slack) {
            return pd_err_set(err, PD_EFORMAT, "attention blob: layer %zu entry %zu: weight "
                              "%g outside [0, 1]", i / n_top, i % n_top, (double)w);
        }
        if (pos == PD_ATTN_POS_PAD && w != 0.0f) {
            return pd_err_set(err, PD_EFORMAT, "attention blob: layer %zu entry %zu: padding "
                              "entry with weight %g", i / n_top, i % n_top, (double)w);
        }
    }
    return PD_OK;
}

float pd_attn_blob_step_mass(const uint8_t *blob, uint32_t k)
{
    size_t base = 4 + (size_t)blob[1] * blob[2] * 8;
    return pd_bits_f32(pd_le_get_u32(blob + base + 4 + (size_t)k * 8 + 4));
}

int64_t pd_attn_blob_step_begin(const uint8_t *blob, uint32_t k)
{
    size_t base = 4 + (size_t)blob[1] * blob[2] * 8;
    return pd_le_get_u32(blob + base + 4 + (size_t)k * 8);
}

void pd_token_rec_free(struct pd_token_rec *t)
{
    if (!t) {
        return;
    }
    free(t->text);
    free(t->attn);
    t->text = NULL;
    t->attn = NULL;
    t->text_len = 0;
    t->attn_len = 0;
}

void pd_run_settings_free(struct pd_run_settings *s)
{
    if (!s) {
        return;
    }
    free(s->mode);
    free(s->kv_policy);
    free(s->chat_template);
    s->mode = s->kv_policy = s->chat_template = NULL;
}
