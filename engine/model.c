/* model.c - architecture table, hyperparameter parsing and tensor binding. */
#include "model.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "mem.h"
#include "simd.h"
#include "threadpool.h"

struct arch_info {
    const char *name;
    enum pd_rope_type rope_type;
    bool qkv_bias;  /* q/k/v biases required */
    bool qk_norm;   /* per-head q/k RMSNorm required */
};

static const struct arch_info archs[PD_ARCH_COUNT] = {
    [PD_ARCH_LLAMA] = {"llama", PD_ROPE_NORM, false, false},
    [PD_ARCH_QWEN2] = {"qwen2", PD_ROPE_NEOX, true, false},
    [PD_ARCH_QWEN3] = {"qwen3", PD_ROPE_NEOX, false, true},
};
_Static_assert(sizeof archs / sizeof archs[0] == PD_ARCH_COUNT, "arch table");

/* The packed copies of the weights: one anonymous mapping, written once. */
struct pd_model_pack {
    pthread_mutex_t lock;
    bool done;           /* pd_model_pack_cpu has run (packed or not) */
    void *map;           /* NULL when nothing was packed */
    size_t map_bytes;
};

/* Hard limits that keep arithmetic on hyperparameters far from overflow. */
#define MAX_DIM (1u << 20)
#define MAX_LAYERS 1024u
#define MAX_HEADS 4096u

const char *pd_arch_name(enum pd_arch a)
{
    return (unsigned)a < PD_ARCH_COUNT ? archs[a].name : "?";
}

/* Reads "<arch>.<suffix>" as u32; missing -> *out = dflt when has_dflt, else an error. */
static enum pd_status get_arch_u32(const struct pd_gguf *g, const char *arch, const char *suffix,
                                   bool required, uint32_t dflt, uint32_t *out,
                                   struct pd_err *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    enum pd_status st = pd_gguf_get_u32(g, key, out, err);
    if (st == PD_EINVAL) {
        if (required) {
            return pd_err_set(err, PD_EFORMAT, "%s: missing (required for %s)", key, arch);
        }
        *out = dflt;
        return PD_OK;
    }
    return st;
}

static enum pd_status get_arch_f32(const struct pd_gguf *g, const char *arch, const char *suffix,
                                   float dflt, float *out, struct pd_err *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    enum pd_status st = pd_gguf_get_f32(g, key, out, err);
    if (st == PD_EINVAL) {
        *out = dflt;
        return PD_OK;
    }
    if (st == PD_OK && !isfinite(*out)) {
        return pd_err_set(err, PD_EFORMAT, "%s: not a finite number", key);
    }
    return st;
}

static enum pd_status check_dim(const char *what, uint32_t v, uint32_t lo, uint32_t hi,
                                struct pd_err *err)
{
    if (v < lo || v > hi) {
        return pd_err_set(err, PD_EFORMAT, "%s: %u out of range [%u, %u]", what, v, lo, hi);
    }
    return PD_OK;
}

static enum pd_status read_hparams(const struct pd_gguf *g, struct pd_hparams *hp,
                                   struct pd_err *err)
{
    struct pd_gguf_str a;
    enum pd_status st = pd_gguf_get_str(g, "general.architecture", &a, err);
    if (st == PD_EINVAL) {
        return pd_err_set(err, PD_EFORMAT, "general.architecture: missing");
    }
    if (st) {
        return st;
    }
    int found = -1;
    for (int i = 0; i < PD_ARCH_COUNT; i++) {
        if (pd_gguf_str_eq(a, archs[i].name)) {
            found = i;
        }
    }
    if (found < 0) {
        return pd_err_set(err, PD_EUNSUPPORTED,
                          "general.architecture: '%.*s' is not supported (llama, qwen2, qwen3)",
                          (int)(a.n > 64 ? 64 : a.n), a.s);
    }
    const char *an = archs[found].name;
    memset(hp, 0, sizeof *hp);
    hp->arch = (enum pd_arch)found;
    hp->rope_type = archs[found].rope_type;
    if ((st = get_arch_u32(g, an, "embedding_length", true, 0, &hp->n_embd, err)) ||
        (st = get_arch_u32(g, an, "block_count", true, 0, &hp->n_layer, err)) ||
        (st = get_arch_u32(g, an, "feed_forward_length", true, 0, &hp->n_ff, err)) ||
        (st = get_arch_u32(g, an, "attention.head_count", true, 0, &hp->n_head, err)) ||
        (st = get_arch_u32(g, an, "context_length", false, 2048, &hp->n_ctx_train, err))) {
        return st;
    }
    if ((st = check_dim("embedding_length", hp->n_embd, 1, MAX_DIM, err)) ||
        (st = check_dim("block_count", hp->n_layer, 1, MAX_LAYERS, err)) ||
        (st = check_dim("feed_forward_length", hp->n_ff, 1, MAX_DIM, err)) ||
        (st = check_dim("attention.head_count", hp->n_head, 1, MAX_HEADS, err))) {
        return st;
    }
    if ((st = get_arch_u32(g, an, "attention.head_count_kv", false, hp->n_head, &hp->n_head_kv,
                           err)) ||
        (st = check_dim("attention.head_count_kv", hp->n_head_kv, 1, hp->n_head, err))) {
        return st;
    }
    if (hp->n_head % hp->n_head_kv) {
        return pd_err_set(err, PD_EFORMAT,
                          "attention.head_count_kv: %u does not divide head_count %u",
                          hp->n_head_kv, hp->n_head);
    }
    uint32_t dflt_hd = hp->n_embd / hp->n_head;
    if ((st = get_arch_u32(g, an, "attention.key_length", false, dflt_hd, &hp->head_dim, err)) ||
        (st = get_arch_u32(g, an, "attention.value_length", false, hp->head_dim,
                           &hp->head_dim_v, err)) ||
        (st = check_dim("attention.key_length", hp->head_dim, 2, 4096, err)) ||
        (st = check_dim("attention.value_length", hp->head_dim_v, 1, 4096, err))) {
        return st;
    }
    if (hp->arch != PD_ARCH_QWEN3 && hp->head_dim * hp->n_head != hp->n_embd) {
        return pd_err_set(err, PD_EFORMAT,
                          "%s.attention.key_length: %u * %u heads != embedding_length %u", an,
                          hp->head_dim, hp->n_head, hp->n_embd);
    }
    if ((st = get_arch_u32(g, an, "rope.dimension_count", false, hp->head_dim, &hp->n_rot, err)) ||
        (st = check_dim("rope.dimension_count", hp->n_rot, 2, hp->head_dim, err))) {
        return st;
    }
    if (hp->n_rot % 2) {
        return pd_err_set(err, PD_EFORMAT, "%s.rope.dimension_count: %u is odd", an, hp->n_rot);
    }
    if ((st = get_arch_f32(g, an, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->norm_eps, err)) ||
        (st = get_arch_f32(g, an, "rope.freq_base", 10000.0f, &hp->rope_base, err))) {
        return st;
    }
    if (!(hp->norm_eps > 0 && hp->norm_eps < 1)) {
        return pd_err_set(err, PD_EFORMAT, "%s.attention.layer_norm_rms_epsilon: %g out of range",
                          an, hp->norm_eps);
    }
    if (!(hp->rope_base > 1)) {
        return pd_err_set(err, PD_EFORMAT, "%s.rope.freq_base: %g out of range", an,
                          hp->rope_base);
    }
    hp->rope_freq_scale = 1.0f;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", an);
    struct pd_gguf_str stype;
    st = pd_gguf_get_str(g, key, &stype, err);
    if (st == PD_OK && !pd_gguf_str_eq(stype, "none")) {
        if (!pd_gguf_str_eq(stype, "linear")) {
            return pd_err_set(err, PD_EUNSUPPORTED, "%s: '%.*s' scaling is not supported", key,
                              (int)(stype.n > 32 ? 32 : stype.n), stype.s);
        }
        float factor;
        if ((st = get_arch_f32(g, an, "rope.scaling.factor", 1.0f, &factor, err))) {
            return st;
        }
        if (!(factor >= 1.0f && factor <= 1024.0f)) {
            return pd_err_set(err, PD_EFORMAT, "%s.rope.scaling.factor: %g out of range", an,
                              factor);
        }
        hp->rope_freq_scale = 1.0f / factor;
    } else if (st != PD_OK && st != PD_EINVAL) {
        return st;
    }
    hp->has_qkv_bias = archs[found].qkv_bias;
    hp->has_qk_norm = archs[found].qk_norm;
    return PD_OK;
}

/* Binds tensor `name` with the expected shape (cols, rows; rows 0 = 1-D). */
static enum pd_status bind(const struct pd_gguf *g, const char *name, uint64_t cols,
                           uint64_t rows, bool required, struct pd_weight *w,
                           struct pd_err *err)
{
    memset(w, 0, sizeof *w);
    const struct pd_gguf_tensor *t = pd_gguf_find_tensor(g, name);
    if (!t) {
        return required ? pd_err_set(err, PD_EFORMAT, "tensor '%s': missing", name) : PD_OK;
    }
    uint64_t want_rows = rows ? rows : 1;
    uint64_t got_rows = t->ne[1] * t->ne[2] * t->ne[3];
    if (t->ne[0] != cols || got_rows != want_rows || (rows == 0 && t->n_dims != 1)) {
        return pd_err_set(err, PD_EFORMAT,
                          "tensor '%s': shape [%llu x %llu], expected [%llu x %llu]", name,
                          (unsigned long long)t->ne[0], (unsigned long long)got_rows,
                          (unsigned long long)cols, (unsigned long long)want_rows);
    }
    if (rows == 0 && t->type != PD_DTYPE_F32) {
        return pd_err_set(err, PD_EUNSUPPORTED, "tensor '%s': norm/bias type %s (only f32)",
                          name, pd_dtype_traits(t->type)->name);
    }
    w->type = t->type;
    w->cols = cols;
    w->rows = want_rows;
    w->row_bytes = pd_dtype_row_size(t->type, cols);
    w->data = t->data;
    return PD_OK;
}

static enum pd_status bind_layer(const struct pd_gguf *g, const struct pd_hparams *hp,
                                 uint32_t il, struct pd_layer *L, struct pd_err *err)
{
    char n[96];
    enum pd_status st;
    uint64_t q_dim = (uint64_t)hp->n_head * hp->head_dim;
    uint64_t k_dim = (uint64_t)hp->n_head_kv * hp->head_dim;
    uint64_t v_dim = (uint64_t)hp->n_head_kv * hp->head_dim_v;
    uint64_t o_dim = (uint64_t)hp->n_head * hp->head_dim_v;
#define BIND(field, suffix, cols, rows, req)                                 \
    do {                                                                    \
        snprintf(n, sizeof n, "blk.%u.%s", il, suffix);                     \
        if ((st = bind(g, n, (cols), (rows), (req), &L->field, err))) {     \
            return st;                                                      \
        }                                                                   \
    } while (0)
    BIND(attn_norm, "attn_norm.weight", hp->n_embd, 0, true);
    BIND(wq, "attn_q.weight", hp->n_embd, q_dim, true);
    BIND(wk, "attn_k.weight", hp->n_embd, k_dim, true);
    BIND(wv, "attn_v.weight", hp->n_embd, v_dim, true);
    BIND(wo, "attn_output.weight", o_dim, hp->n_embd, true);
    BIND(bq, "attn_q.bias", q_dim, 0, hp->has_qkv_bias);
    BIND(bk, "attn_k.bias", k_dim, 0, hp->has_qkv_bias);
    BIND(bv, "attn_v.bias", v_dim, 0, hp->has_qkv_bias);
    BIND(q_norm, "attn_q_norm.weight", hp->head_dim, 0, hp->has_qk_norm);
    BIND(k_norm, "attn_k_norm.weight", hp->head_dim, 0, hp->has_qk_norm);
    BIND(ffn_norm, "ffn_norm.weight", hp->n_embd, 0, true);
    BIND(w_gate, "ffn_gate.weight", hp->n_embd, hp->n_ff, true);
    BIND(w_up, "ffn_up.weight", hp->n_embd, hp->n_ff, true);
    BIND(w_down, "ffn_down.weight", hp->n_ff, hp->n_embd, true);
#undef BIND
    return PD_OK;
}

enum pd_status pd_model_open_gguf_take(struct pd_gguf *g, struct pd_model **out,
                                       struct pd_err *err)
{
    *out = NULL;
    enum pd_status st = PD_OK;
    struct pd_model *m = calloc(1, sizeof *m);
    if (!m) {
        pd_gguf_close(&g);
        return pd_err_set(err, PD_ENOMEM, "out of memory");
    }
    m->gguf = g;
    m->pack = calloc(1, sizeof *m->pack);
    if (!m->pack || pthread_mutex_init(&m->pack->lock, NULL) != 0) {
        free(m->pack);
        m->pack = NULL;
        st = pd_err_set(err, PD_ENOMEM, "out of memory");
        goto fail;
    }
    struct pd_hparams *hp = &m->hp;
    if ((st = read_hparams(g, hp, err))) {
        goto fail;
    }
    /* The vocabulary size comes from the embedding's row count. */
    const struct pd_gguf_tensor *te = pd_gguf_find_tensor(g, "token_embd.weight");
    if (!te) {
        st = pd_err_set(err, PD_EFORMAT, "tensor 'token_embd.weight': missing");
        goto fail;
    }
    if (te->n_dims != 2 || te->ne[1] > (1u << 24)) {
        st = pd_err_set(err, PD_EFORMAT,
                        "tensor 'token_embd.weight': %u dims, %llu rows (expected 2 dims, "
                        "at most 2^24 rows)",
                        te->n_dims, (unsigned long long)te->ne[1]);
        goto fail;
    }
    hp->n_vocab = (uint32_t)te->ne[1];
    if ((st = bind(g, "token_embd.weight", hp->n_embd, hp->n_vocab, true, &m->tok_embd, err))) {
        goto fail;
    }
    uint32_t vocab_meta;
    char key[96];
    snprintf(key, sizeof key, "%s.vocab_size", pd_arch_name(hp->arch));
    if (pd_gguf_get_u32(g, key, &vocab_meta, NULL) == PD_OK && vocab_meta != hp->n_vocab) {
        st = pd_err_set(err, PD_EFORMAT, "%s: %u disagrees with token_embd rows %u", key,
                        vocab_meta, hp->n_vocab);
        goto fail;
    }
    if ((st = bind(g, "output_norm.weight", hp->n_embd, 0, true, &m->output_norm, err)) ||
        (st = bind(g, "output.weight", hp->n_embd, hp->n_vocab, false, &m->output, err))) {
        goto fail;
    }
    if (!m->output.data) {
        m->output = m->tok_embd;
        hp->tied_output = true;
    }
    if ((st = bind(g, "rope_freqs.weight", hp->n_rot / 2, 0, false, &m->rope_freqs, err))) {
        goto fail;
    }
    for (uint32_t i = 0; m->rope_freqs.data && i < hp->n_rot / 2; i++) {
        float f = ((const float *)m->rope_freqs.data)[i];
        if (!(f > 0.0f) || !isfinite(f)) {
            st = pd_err_set(err, PD_EFORMAT, "tensor 'rope_freqs.weight': entry %u is %g "
                            "(must be a positive number)", i, (double)f);
            goto fail;
        }
    }
    m->layers = pd_calloc(hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        st = pd_err_set(err, PD_ENOMEM, "out of memory (layers)");
        goto fail;
    }
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        if ((st = bind_layer(g, hp, il, &m->layers[il], err))) {
            goto fail;
        }
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct pd_gguf_tensor *t = &g->tensors[i];
        m->n_params += t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        m->weight_bytes += t->size;
    }
    *out = m;
    return PD_OK;
fail:
    pd_err_prefix(err, "%s", g->path ? g->path : "model");
    pd_model_close(&m);
    return st;
}

enum pd_status pd_model_open(const char *path, struct pd_model **out, struct pd_err *err)
{
    struct pd_gguf *g;
    *out = NULL;
    enum pd_status st = pd_gguf_open(path, &g, err);
    if (st) {
        return st;
    }
    return pd_model_open_gguf_take(g, out, err);
}

void pd_model_close(struct pd_model **mp)
{
    if (!mp || !*mp) {
        return;
    }
    struct pd_model *m = *mp;
    if (m->pack) {
        if (m->pack->map) {
            pd_big_free(m->pack->map, m->pack->map_bytes);
        }
        pthread_mutex_destroy(&m->pack->lock);
        free(m->pack);
    }
    free(m->layers);
    pd_gguf_close(&m->gguf);
    free(m);
    *mp = NULL;
}

size_t pd_model_n_matmul(const struct pd_model *m)
{
    return 1 + 7 * (size_t)m->hp.n_layer;
}

const struct pd_weight *pd_model_matmul(const struct pd_model *m, size_t i)
{
    if (i == 0) {
        return &m->output;
    }
    const struct pd_layer *L = &m->layers[(i - 1) / 7];
    const struct pd_weight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo,
                                     &L->w_gate, &L->w_up, &L->w_down};
    return ws[(i - 1) % 7];
}

/* Bytes of w's packed copy in the shared buffer (64-byte aligned starts). */
static uint64_t packed_bytes(const struct pd_weight *w)
{
    return (w->rows * w->row_bytes + 63) / 64 * 64;
}

bool pd_model_packs_type(enum pd_dtype t)
{
    const char *env = getenv("PONDER_PACK");
    return (unsigned)t < PD_DTYPE_COUNT && pd_simd_ops()->pack[t] && !(env && !strcmp(env, "0"));
}

struct pack_job {
    const struct pd_model *m;
    const struct pd_simd_ops *ops;
    const struct pd_weight **ws; /* the matrices to pack */
    uint8_t **at;          /* where each one's copy goes */
};

static void pack_items(void *ctx, size_t i0, size_t i1)
{
    const struct pack_job *j = ctx;
    for (size_t i = i0; i < i1; i++) {
        /* the model was allocated writable; see pd_model_pack_cpu */
        struct pd_weight *w = (struct pd_weight *)j->ws[i];
        j->ops->pack[w->type](w->data, w->rows, w->row_bytes, j->at[i]);
        w->packed = j->at[i];
        /* the file's pages of the matrix leave the process; a tied embedding's rows,
         * still read in the file's layout, come back from the file as they are read */
        pd_gguf_release(j->m->gguf, w->data, w->rows * w->row_bytes);
    }
}

enum pd_status pd_model_pack_cpu(const struct pd_model *cm, struct pd_pool *pool,
                                 struct pd_err *err)
{
    /* The packed pointers are the one thing written after open (pack_items), once, under
     * the lock, before any CPU context can read them; the model was allocated writable. */
    const struct pd_model *m = cm;
    struct pd_model_pack *pk = m->pack;
    enum pd_status st = PD_OK;
    if (!pk) { /* not from pd_model_open: the file's layout */
        return PD_OK;
    }
    pthread_mutex_lock(&pk->lock);
    if (pk->done) {
        pthread_mutex_unlock(&pk->lock);
        return PD_OK;
    }
    const struct pd_simd_ops *ops = pd_simd_ops();
    size_t n = pd_model_n_matmul(m);
    const struct pd_weight **ws = pd_malloc_array(n, sizeof *ws);
    uint8_t **at = pd_malloc_array(n, sizeof *at);
    if (!ws || !at) {
        st = pd_err_set(err, PD_ENOMEM, "out of memory (packing the weights)");
        goto out;
    }
    uint64_t total = 0;
    size_t n_pack = 0;
    for (size_t i = 0; i < n; i++) {
        const struct pd_weight *w = pd_model_matmul(m, i);
        if (pd_model_packs_type(w->type) && w->rows >= 16) {
            ws[n_pack++] = w;
            total += packed_bytes(w);
        }
    }
    if (total > 0) {
        void *map = pd_big_alloc(total); /* huge pages: fewer faults and TLB misses */
        if (!map) {
            st = pd_err_set(err, PD_ENOMEM, "out of memory (%.1f MB of packed weights)",
                            (double)total / 1e6);
            goto out;
        }
        uint8_t *next = map;
        for (size_t i = 0; i < n_pack; i++) {
            at[i] = next;
            next += packed_bytes(ws[i]);
        }
        /* on the context's threads: the first touch of new pages dominates on some
         * machines (virtual ones above all) */
        struct pack_job j = {m, ops, ws, at};
        pd_pool_run(pool, n_pack, 1, pack_items, &j);
        (void)mprotect(map, total, PROT_READ); /* read-only from here, like the file */
        pk->map = map;
        pk->map_bytes = total;
    }
    pk->done = true;
out:
    free(ws);
    free(at);
    pthread_mutex_unlock(&pk->lock);
    return st;
}

void pd_weight_row_f32(const struct pd_weight *w, uint64_t r, float *out)
{
    pd_simd_traits(w->type)->to_f32(w->data + r * w->row_bytes, out, w->cols);
}
