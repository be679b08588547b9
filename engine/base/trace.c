/* trace.c - names and cleanup for the trace records. */
#include "trace.h"

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
