/* kvcache.h - the key/value cache: per-layer slots, eviction with compaction.
 *
 * Each layer holds up to `cap` slots; slot s stores (original position, K row, V row).
 * RoPE is applied to K before it is cached, so removing a slot never re-rotates the
 * others and the survivors keep their original positions. Slots stay sorted by position.
 * Layers may hold different numbers of slots (policies evict per layer).
 *
 * Storage type is f16 (default, half the memory) or f32.
 *
 * Mirror mode (pd_kvcache_open_mirror): the K/V rows live elsewhere (the device engine,
 * engine/backend_cuda.c); the cache keeps only the positions, in the same order and under
 * the same operations, so everything that reads `n` and `pos` (sessions, policies,
 * scoring) works unchanged. A listener, when set, hears every removal before it happens
 * and mirrors it in the real storage.
 *
 * Ownership: the cache owns its arrays. Thread-safety: owned by the engine worker; the
 * forward pass reads slots from its pool threads while nothing mutates the cache. */
#ifndef PD_KVCACHE_H
#define PD_KVCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "dtype.h"
#include "simd.h"

enum pd_kv_type {
    PD_KV_F16,
    PD_KV_F32,
    PD_KV_TYPE_COUNT
};

/* "f16"/"f32"; PD_KV_TYPE_COUNT if unknown. */
enum pd_kv_type pd_kv_type_parse(const char *s);
const char *pd_kv_type_name(enum pd_kv_type t);

struct pd_kv_layer {
    uint32_t n;      /* slots in use */
    int64_t *pos;    /* [cap] original positions, ascending */
    void *k;         /* [cap][dim_k] in `type` */
    void *v;         /* [cap][dim_v] in `type` */
};

/* Told about removals before the cache applies them (all callbacks required). */
struct pd_kv_listener {
    /* Slots s < n of layer il with mask[s] != 0 are about to be removed (view order). */
    void (*evict)(void *ud, uint32_t il, const uint8_t *mask, uint32_t n);
    /* Every slot with position >= pos is about to be removed from every layer. */
    void (*truncate)(void *ud, int64_t pos);
    /* Every layer is about to be emptied. */
    void (*clear)(void *ud);
    void *ud; /* borrowed */
};

struct pd_kvcache {
    uint32_t n_layer;
    uint32_t cap;
    uint32_t dim_k;  /* n_head_kv * head_dim */
    uint32_t dim_v;  /* n_head_kv * head_dim_v */
    enum pd_kv_type type;
    struct pd_kv_layer *layers; /* [n_layer] */
    bool mirror;     /* positions only: k and v are NULL */
    void *rows;      /* every layer's K then V rows, one pd_big_alloc mapping */
    size_t rows_bytes;
    struct pd_kv_listener listener; /* optional (evict == NULL: none) */
};

enum pd_status pd_kvcache_open(uint32_t n_layer, uint32_t cap, uint32_t dim_k, uint32_t dim_v,
                               enum pd_kv_type type, struct pd_kvcache **out,
                               struct pd_err *err);
void pd_kvcache_close(struct pd_kvcache **c);

/* A positions-only cache (see mirror mode above); pd_kvcache_append takes NULL rows. */
enum pd_status pd_kvcache_open_mirror(uint32_t n_layer, uint32_t cap, uint32_t dim_k,
                                      uint32_t dim_v, struct pd_kvcache **out,
                                      struct pd_err *err);

/* Empties every layer. */
void pd_kvcache_clear(struct pd_kvcache *c);

/* Appends (pos, k, v) to layer il. pos must exceed the layer's last position. Returns
 * PD_EINVAL when the layer is full or the position is not increasing. */
enum pd_status pd_kvcache_append(struct pd_kvcache *c, uint32_t il, int64_t pos,
                                 const float *k, const float *v, struct pd_err *err);

/* Appends n slots at positions pos0 .. pos0 + n - 1 to layer il and sets *slot0 to the
 * first; their rows are stored afterwards with pd_kvcache_put (the forward pass fills them
 * from its pool threads, one slot each). Errors as pd_kvcache_append; nothing changes on
 * error. */
enum pd_status pd_kvcache_reserve(struct pd_kvcache *c, uint32_t il, int64_t pos0, uint32_t n,
                                  uint32_t *slot0, struct pd_err *err);

/* Stores the K and V rows of a reserved slot (nothing in mirror mode). Calls for distinct
 * slots may run concurrently. */
void pd_kvcache_put(struct pd_kvcache *c, uint32_t il, uint32_t slot, const float *k,
                    const float *v);

/* Removes the slots of layer il whose evict[s] is non-zero, compacting the rest in order.
 * Returns the number removed. */
uint32_t pd_kvcache_evict(struct pd_kvcache *c, uint32_t il, const uint8_t *evict);

/* Removes every slot with position >= pos in all layers (rewind for branching). */
void pd_kvcache_truncate(struct pd_kvcache *c, int64_t pos);

/* Removes every slot whose position lies in [begin, end) in all layers (pruning a step). */
uint32_t pd_kvcache_drop_range(struct pd_kvcache *c, int64_t begin, int64_t end);

/* Dot product of q[dim] with the K row (head offset `off`, `dim` entries) of slot s.
 * Inline: the attention inner loop calls it once per slot. Both kernels run at the
 * SIMD level chosen at run time (simd.h). */
static inline float pd_kvcache_k_dot(const struct pd_kvcache *c, uint32_t il, uint32_t s,
                                     uint32_t off, const float *q, uint32_t dim);
/* acc[dim] += w * V row (head offset `off`) of slot s. */
static inline void pd_kvcache_v_axpy(const struct pd_kvcache *c, uint32_t il, uint32_t s,
                                     uint32_t off, float w, float *acc, uint32_t dim);

/* True when layer il holds a slot for position pos. */
bool pd_kvcache_has_pos(const struct pd_kvcache *c, uint32_t il, int64_t pos);

static inline float pd_kvcache_k_dot(const struct pd_kvcache *c, uint32_t il, uint32_t s,
                                     uint32_t off, const float *q, uint32_t dim)
{
    const struct pd_kv_layer *L = &c->layers[il];
    const struct pd_simd_ops *ops = pd_simd_ops();
    if (c->type == PD_KV_F32) {
        return ops->kv_dot_f32(q, (const float *)L->k + (size_t)s * c->dim_k + off, dim);
    }
    return ops->kv_dot_f16(q, (const uint16_t *)L->k + (size_t)s * c->dim_k + off, dim);
}

static inline void pd_kvcache_v_axpy(const struct pd_kvcache *c, uint32_t il, uint32_t s,
                                     uint32_t off, float w, float *acc, uint32_t dim)
{
    const struct pd_kv_layer *L = &c->layers[il];
    const struct pd_simd_ops *ops = pd_simd_ops();
    if (c->type == PD_KV_F32) {
        ops->kv_axpy_f32(w, (const float *)L->v + (size_t)s * c->dim_v + off, acc, dim);
    } else {
        ops->kv_axpy_f16(w, (const uint16_t *)L->v + (size_t)s * c->dim_v + off, acc, dim);
    }
}

#endif
