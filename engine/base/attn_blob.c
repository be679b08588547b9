/* attn_blob.c - the attention summary blob codec (layout in attn_blob.h). */
#include "attn_blob.h"

#include <math.h>

#include "le.h"

/* Offset of the step section (or the end of a version-1 blob). */
static size_t entries_end(uint32_t n_layer, uint32_t n_top)
{
    return PD_ATTN_BLOB_HEADER + (size_t)n_layer * n_top * PD_ATTN_BLOB_ENTRY;
}

size_t pd_attn_blob_size(uint32_t n_layer, uint32_t n_top, uint32_t n_steps)
{
    if (n_layer == 0 || n_top == 0 || n_layer > 255 || n_top > 255 ||
        n_steps > PD_ATTN_STEPS_MAX) {
        return 0;
    }
    size_t n = entries_end(n_layer, n_top);
    return n_steps ? n + 12 + (size_t)n_steps * PD_ATTN_BLOB_STEP : n;
}

/* The token's own step: the last one beginning at or before pos; n_known when none. */
static uint32_t own_step(uint32_t n_known, const int64_t *begin, int64_t pos)
{
    uint32_t k = n_known;
    while (k > 0 && begin[k - 1] > pos) {
        k--;
    }
    return k > 0 ? k - 1 : n_known;
}

uint32_t pd_attn_blob_steps_listed(uint32_t n_known, const int64_t *begin, const float *mass,
                                   int64_t pos)
{
    uint32_t own = own_step(n_known, begin, pos);
    if (own == n_known) {
        return 0;
    }
    uint32_t n = 1;
    for (uint32_t k = 0; k < own; k++) {
        n += mass[k] > 0.0f;
    }
    return n;
}

void pd_attn_blob_init(uint8_t *blob, uint32_t n_layer, uint32_t n_top)
{
    blob[0] = 1;
    blob[1] = (uint8_t)n_layer;
    blob[2] = (uint8_t)n_top;
    blob[3] = 0;
    for (uint32_t l = 0; l < n_layer; l++) {
        for (uint32_t k = 0; k < n_top; k++) {
            pd_attn_blob_set(blob, l, k, PD_ATTN_POS_PAD, 0.0f);
        }
    }
}

void pd_attn_blob_set(uint8_t *blob, uint32_t l, uint32_t k, uint32_t pos, float weight)
{
    uint8_t *p = blob + PD_ATTN_BLOB_HEADER + ((size_t)l * blob[2] + k) * PD_ATTN_BLOB_ENTRY;
    pd_le_put_u32(p, pos);
    pd_le_put_u32(p + 4, pd_f32_bits(weight));
}

void pd_attn_blob_put_steps(uint8_t *blob, uint32_t n_known, const int64_t *begin,
                            const float *mass, int64_t pos)
{
    uint32_t own = own_step(n_known, begin, pos);
    if (own == n_known) {
        return;
    }
    uint8_t *t = blob + entries_end(blob[1], blob[2]);
    blob[0] = 3;
    pd_le_put_u32(t, n_known);
    pd_le_put_u32(t + 4, (uint32_t)begin[0]);
    uint8_t *e = t + 12;
    uint32_t n = 0;
    for (uint32_t k = 0; k <= own; k++) {
        if (k < own && !(mass[k] > 0.0f)) {
            continue;
        }
        float m = mass[k] > 1.0f ? 1.0f : mass[k];
        int64_t end = k < own ? begin[k + 1] : pos + 1;
        pd_le_put_u32(e, (uint32_t)begin[k]);
        pd_le_put_u32(e + 4, (uint32_t)end);
        pd_le_put_u32(e + 8, pd_f32_bits(m));
        e += PD_ATTN_BLOB_STEP;
        n++;
    }
    pd_le_put_u32(t + 8, n);
}

bool pd_attn_blob_layout(const uint8_t *blob, size_t len, struct pd_attn_view *v)
{
    if (!blob || len < PD_ATTN_BLOB_HEADER || blob[0] < 1 || blob[0] > 3 || blob[1] == 0 ||
        blob[2] == 0 || blob[3] != 0) {
        return false;
    }
    size_t base = entries_end(blob[1], blob[2]); /* at most 4 + 255*255*8 */
    uint32_t ns = 0, known = 0;
    if (blob[0] == 1) {
        if (len != base) {
            return false;
        }
    } else if (blob[0] == 2) {
        if (len < base + 4) {
            return false;
        }
        ns = pd_le_get_u32(blob + base);
        if (ns > PD_ATTN_STEPS_MAX || len != base + 4 + (size_t)ns * PD_ATTN_BLOB_STEP_V2) {
            return false;
        }
        known = ns;
    } else {
        if (len < base + 12) {
            return false;
        }
        known = pd_le_get_u32(blob + base);
        ns = pd_le_get_u32(blob + base + 8);
        if (known > PD_ATTN_STEPS_MAX || ns > known ||
            len != base + 12 + (size_t)ns * PD_ATTN_BLOB_STEP) {
            return false;
        }
    }
    v->blob = blob;
    v->n_layer = blob[1];
    v->n_top = blob[2];
    v->version = blob[0];
    v->n_steps = ns;
    v->n_known = known;
    return true;
}

enum pd_status pd_attn_blob_check(const uint8_t *blob, size_t len, struct pd_attn_view *out,
                                  struct pd_err *err)
{
    if (blob == NULL || len < PD_ATTN_BLOB_HEADER) {
        return pd_err_set(err, PD_EFORMAT, "attention blob: %zu bytes, need at least %d", len,
                          PD_ATTN_BLOB_HEADER);
    }
    if (blob[0] < 1 || blob[0] > 3) {
        return pd_err_set(err, PD_EFORMAT, "attention blob: version %u, expected 1, 2 or 3",
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
    struct pd_attn_view v;
    if (!pd_attn_blob_layout(blob, len, &v)) {
        return pd_err_set(err, PD_EFORMAT, "attention blob: %zu bytes, but %zu layers x %zu "
                          "entries need %zu%s", len, n_layer, n_top,
                          entries_end((uint32_t)n_layer, (uint32_t)n_top),
                          blob[0] > 1 ? " plus the step section" : "");
    }
    const float slack = 1.001f;
    int64_t prev_end = pd_attn_view_first_step(&v);
    for (uint32_t k = 0; k < v.n_steps; k++) {
        float m = pd_attn_view_step_mass(&v, k);
        if (!isfinite(m) || m < 0.0f || m > slack) {
            return pd_err_set(err, PD_EFORMAT, "attention blob: step %u mass %g outside [0, 1]",
                              k, (double)m);
        }
        int64_t b = pd_attn_view_step_begin(&v, k), e = pd_attn_view_step_end(&v, k);
        if (b < prev_end || (e >= 0 && e <= b)) {
            return pd_err_set(err, PD_EFORMAT, "attention blob: step %u (positions %lld..%lld) "
                              "out of order", k, (long long)b, (long long)e - 1);
        }
        prev_end = e >= 0 ? e : b + 1;
    }
    for (uint32_t l = 0; l < v.n_layer; l++) {
        for (uint32_t k = 0; k < v.n_top; k++) {
            uint32_t pos;
            float w;
            pd_attn_view_get(&v, l, k, &pos, &w);
            if (!isfinite(w) || w < 0.0f || w > slack) {
                return pd_err_set(err, PD_EFORMAT, "attention blob: layer %u entry %u: weight "
                                  "%g outside [0, 1]", l, k, (double)w);
            }
            if (pos == PD_ATTN_POS_PAD && w != 0.0f) {
                return pd_err_set(err, PD_EFORMAT, "attention blob: layer %u entry %u: padding "
                                  "entry with weight %g", l, k, (double)w);
            }
        }
    }
    if (out) {
        *out = v;
    }
    return PD_OK;
}

void pd_attn_view_get(const struct pd_attn_view *v, uint32_t l, uint32_t k, uint32_t *pos,
                      float *weight)
{
    const uint8_t *p =
        v->blob + PD_ATTN_BLOB_HEADER + ((size_t)l * v->n_top + k) * PD_ATTN_BLOB_ENTRY;
    *pos = pd_le_get_u32(p);
    *weight = pd_bits_f32(pd_le_get_u32(p + 4));
}

bool pd_attn_view_entry(const struct pd_attn_view *v, uint32_t l, uint32_t k, uint32_t *pos,
                        float *weight)
{
    if (l >= v->n_layer || k >= v->n_top) {
        return false;
    }
    uint32_t p;
    float w;
    pd_attn_view_get(v, l, k, &p, &w);
    if (p == PD_ATTN_POS_PAD || !isfinite(w)) {
        return false;
    }
    *pos = p;
    *weight = w;
    return true;
}

static const uint8_t *step_at(const struct pd_attn_view *v, uint32_t k)
{
    size_t base = entries_end(v->n_layer, v->n_top);
    if (v->version == 2) {
        return v->blob + base + 4 + (size_t)k * PD_ATTN_BLOB_STEP_V2;
    }
    return v->blob + base + 12 + (size_t)k * PD_ATTN_BLOB_STEP;
}

int64_t pd_attn_view_step_begin(const struct pd_attn_view *v, uint32_t k)
{
    return pd_le_get_u32(step_at(v, k));
}

int64_t pd_attn_view_step_end(const struct pd_attn_view *v, uint32_t k)
{
    if (v->version == 2) {
        return k + 1 < v->n_steps ? (int64_t)pd_le_get_u32(step_at(v, k + 1)) : -1;
    }
    return pd_le_get_u32(step_at(v, k) + 4);
}

float pd_attn_view_step_mass(const struct pd_attn_view *v, uint32_t k)
{
    return pd_bits_f32(pd_le_get_u32(step_at(v, k) + (v->version == 2 ? 4 : 8)));
}

int64_t pd_attn_view_first_step(const struct pd_attn_view *v)
{
    if (v->version == 3) {
        return pd_le_get_u32(v->blob + entries_end(v->n_layer, v->n_top) + 4);
    }
    return v->n_steps > 0 ? pd_attn_view_step_begin(v, 0) : -1;
}
