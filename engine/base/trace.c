/* trace.c - names and cleanup for the trace records. */
#include "trace.h"

#include <stdlib.h>
#include <string.h>

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
