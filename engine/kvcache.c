/* kvcache.c - slot storage, append, eviction with compaction, and the K/V row kernels. */
#include "kvcache.h"

#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "dtype.h"
#include "simd.h"

static const char *const kv_type_names[PD_KV_TYPE_COUNT] = {"f16", "f32"};
static const size_t kv_type_size[PD_KV_TYPE_COUNT] = {2, 4};

enum pd_kv_type pd_kv_type_parse(const char *s)
{
    for (int i = 0; i < PD_KV_TYPE_COUNT; i++) {
        if (strcmp(s, kv_type_names[i]) == 0) {
            return (enum pd_kv_type)i;
        }
    }
    return PD_KV_TYPE_COUNT;
}

const char *pd_kv_type_name(enum pd_kv_type t)
{
    return (unsigned)t < PD_KV_TYPE_COUNT ? kv_type_names[t] : "?";
}

static enum pd_status kv_open(uint32_t n_layer, uint32_t cap, uint32_t dim_k, uint32_t dim_v,
                              enum pd_kv_type type, bool mirror, struct pd_kvcache **out,
                              struct pd_err *err)
{
    *out = NULL;
    if (n_layer == 0 || cap == 0 || dim_k == 0 || dim_v == 0 || type >= PD_KV_TYPE_COUNT) {
        return pd_err_set(err, PD_EINVAL, "kv cache: %u layers of %u slots with %u/%u key/value "
                          "values each (none may be 0)", n_layer, cap, dim_k, dim_v);
    }
    struct pd_kvcache *c = calloc(1, sizeof *c);
    if (!c) {
        return pd_err_set(err, PD_ENOMEM, "out of memory (kv cache)");
    }
    c->n_layer = n_layer;
    c->cap = cap;
    c->dim_k = dim_k;
    c->dim_v = dim_v;
    c->type = type;
    c->mirror = mirror;
    c->layers = pd_calloc(n_layer, sizeof *c->layers);
    if (!c->layers) {
        goto nomem;
    }
    size_t es = kv_type_size[type];
    uint64_t k_bytes = 0, v_bytes = 0, all = 0;
    if (!mirror) {
        /* one mapping with huge pages: decode reads one head's slice of every slot, a
         * strided walk that would miss the TLB every few slots on 4 KiB pages */
        if (!pd_mul((uint64_t)cap * es, dim_k, &k_bytes) ||
            !pd_mul((uint64_t)cap * es, dim_v, &v_bytes) ||
            !pd_mul(k_bytes + v_bytes, n_layer, &all) || all > SIZE_MAX ||
            !(c->rows = pd_big_alloc((size_t)all))) {
            goto nomem;
        }
        c->rows_bytes = (size_t)all;
    }
    for (uint32_t il = 0; il < n_layer; il++) {
        struct pd_kv_layer *L = &c->layers[il];
        L->pos = pd_malloc_array(cap, sizeof *L->pos);
        if (!mirror) {
            L->k = (char *)c->rows + (size_t)k_bytes * il;
            L->v = (char *)c->rows + (size_t)k_bytes * n_layer + (size_t)v_bytes * il;
        }
        if (!L->pos) {
            goto nomem;
        }
    }
    *out = c;
    return PD_OK;
nomem:
    pd_kvcache_close(&c);
    return pd_err_set(err, PD_ENOMEM, "out of memory (kv cache: %u layers x %u slots)", n_layer,
                      cap);
}

enum pd_status pd_kvcache_open(uint32_t n_layer, uint32_t cap, uint32_t dim_k, uint32_t dim_v,
                               enum pd_kv_type type, struct pd_kvcache **out,
                               struct pd_err *err)
{
    return kv_open(n_layer, cap, dim_k, dim_v, type, false, out, err);
}

enum pd_status pd_kvcache_open_mirror(uint32_t n_layer, uint32_t cap, uint32_t dim_k,
                                      uint32_t dim_v, struct pd_kvcache **out,
                                      struct pd_err *err)
{
    return kv_open(n_layer, cap, dim_k, dim_v, PD_KV_F16, true, out, err);
}

void pd_kvcache_close(struct pd_kvcache **cp)
{
    if (!cp || !*cp) {
        return;
    }
    struct pd_kvcache *c = *cp;
    if (c->layers) {
        for (uint32_t il = 0; il < c->n_layer; il++) {
            free(c->layers[il].pos);
        }
    }
    pd_big_free(c->rows, c->rows_bytes);
    free(c->layers);
    free(c);
    *cp = NULL;
}

void pd_kvcache_clear(struct pd_kvcache *c)
{
    if (c->listener.clear) {
        c->listener.clear(c->listener.ud);
    }
    for (uint32_t il = 0; il < c->n_layer; il++) {
        c->layers[il].n = 0;
    }
}

static void store_row(enum pd_kv_type t, void *dst, const float *src, uint32_t n)
{
    if (t == PD_KV_F32) {
        memcpy(dst, src, n * sizeof(float));
    } else {
        /* the level's f16 conversion: the same bits as pd_f32_to_f16 (simd.h) */
        pd_simd_traits(PD_DTYPE_F16)->from_f32(src, dst, n);
    }
}

enum pd_status pd_kvcache_reserve(struct pd_kvcache *c, uint32_t il, int64_t pos0, uint32_t n,
                                  uint32_t *slot0, struct pd_err *err)
{
    struct pd_kv_layer *L = &c->layers[il];
    if (n > c->cap - L->n) {
        return pd_err_set(err, PD_EINVAL, "kv cache: layer %u is full (%u slots)", il, c->cap);
    }
    if (L->n > 0 && L->pos[L->n - 1] >= pos0) {
        return pd_err_set(err, PD_EINVAL, "kv cache: position %lld not after %lld",
                          (long long)pos0, (long long)L->pos[L->n - 1]);
    }
    *slot0 = L->n;
    for (uint32_t i = 0; i < n; i++) {
        L->pos[L->n++] = pos0 + i;
    }
    return PD_OK;
}

void pd_kvcache_put(struct pd_kvcache *c, uint32_t il, uint32_t slot, const float *k,
                    const float *v)
{
    if (c->mirror) {
        return;
    }
    struct pd_kv_layer *L = &c->layers[il];
    size_t es = kv_type_size[c->type];
    store_row(c->type, (char *)L->k + (size_t)slot * c->dim_k * es, k, c->dim_k);
    store_row(c->type, (char *)L->v + (size_t)slot * c->dim_v * es, v, c->dim_v);
}

enum pd_status pd_kvcache_append(struct pd_kvcache *c, uint32_t il, int64_t pos,
                                 const float *k, const float *v, struct pd_err *err)
{
    uint32_t slot;
    enum pd_status st = pd_kvcache_reserve(c, il, pos, 1, &slot, err);
    if (!st) {
        pd_kvcache_put(c, il, slot, k, v);
    }
    return st;
}

uint32_t pd_kvcache_evict(struct pd_kvcache *c, uint32_t il, const uint8_t *evict)
{
    struct pd_kv_layer *L = &c->layers[il];
    if (c->listener.evict) {
        c->listener.evict(c->listener.ud, il, evict, L->n);
    }
    size_t es = kv_type_size[c->type];
    size_t kb = c->dim_k * es, vb = c->dim_v * es;
    uint32_t w = 0;
    for (uint32_t s = 0; s < L->n; s++) {
        if (evict[s]) {
            continue;
        }
        if (w != s) {
            L->pos[w] = L->pos[s];
            if (!c->mirror) {
                memcpy((char *)L->k + w * kb, (char *)L->k + s * kb, kb);
                memcpy((char *)L->v + w * vb, (char *)L->v + s * vb, vb);
            }
        }
        w++;
    }
    uint32_t removed = L->n - w;
    L->n = w;
    return removed;
}

void pd_kvcache_truncate(struct pd_kvcache *c, int64_t pos)
{
    if (c->listener.truncate) {
        c->listener.truncate(c->listener.ud, pos);
    }
    for (uint32_t il = 0; il < c->n_layer; il++) {
        struct pd_kv_layer *L = &c->layers[il];
        while (L->n > 0 && L->pos[L->n - 1] >= pos) {
            L->n--;
        }
    }
}

uint32_t pd_kvcache_drop_range(struct pd_kvcache *c, int64_t begin, int64_t end)
{
    uint32_t total = 0;
    uint8_t *mask = malloc(c->cap ? c->cap : 1);
    if (!mask) {
        return 0;
    }
    for (uint32_t il = 0; il < c->n_layer; il++) {
        struct pd_kv_layer *L = &c->layers[il];
        for (uint32_t s = 0; s < L->n; s++) {
            mask[s] = L->pos[s] >= begin && L->pos[s] < end;
        }
        total += pd_kvcache_evict(c, il, mask);
    }
    free(mask);
    return total;
}

bool pd_kvcache_has_pos(const struct pd_kvcache *c, uint32_t il, int64_t pos)
{
    const struct pd_kv_layer *L = &c->layers[il];
    uint32_t lo = 0, hi = L->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (L->pos[mid] < pos) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < L->n && L->pos[lo] == pos;
}
