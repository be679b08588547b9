/* bpe.c - byte-level BPE training and GGUF tokenizer metadata for the reasoner (bpe.h). */
#include "bpe.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "gguf_writer.h"

static const char *const k_special[RZ_N_SPECIAL] = {
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>",
};
/* tokenizer.ggml.token_type: NORMAL 1, CONTROL 3, USER_DEFINED 4 */
static const int32_t k_special_type[RZ_N_SPECIAL] = {3, 3, 3, 4, 4};

void rz_vocab_deinit(struct rz_vocab *v)
{
    for (size_t i = 0; v->tokens && i < v->n_tokens; i++) {
        free(v->tokens[i]);
    }
    for (size_t i = 0; v->merges && i < v->n_merges; i++) {
        free(v->merges[i]);
    }
    free(v->tokens);
    free(v->types);
    free(v->merges);
    memset(v, 0, sizeof *v);
}

/* ---- GPT-2 byte alphabet ------------------------------------------------------------------ */

/* Code point that stands for byte b in the GPT-2 alphabet. */
static uint32_t byte_cp(int b)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) {
        return (uint32_t)b;
    }
    int n = 0;
    for (int c = 0; c < b; c++) {
        n += !((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255));
    }
    return 256u + (uint32_t)n;
}

static size_t put_utf8(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2; /* the alphabet stays below U+0800 */
}

/* ---- Qwen2 pre-tokenizer, ASCII rendering --------------------------------------------------- */

static bool is_nl(char c)
{
    return c == '\r' || c == '\n';
}

static bool is_sp(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool is_letter(char c)
{
    return isalpha((unsigned char)c) || (unsigned char)c >= 0x80;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* End of the piece starting at s[i] (i < n), following the alternatives of
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+ in order. */
static size_t piece_end(const char *s, size_t n, size_t i)
{
    if (s[i] == '\'' && i + 1 < n) {
        static const char *const cont[] = {"s", "t", "re", "ve", "m", "ll", "d"};
        for (size_t k = 0; k < 7; k++) {
            size_t m = strlen(cont[k]);
            if (i + 1 + m <= n && strncasecmp(s + i + 1, cont[k], m) == 0) {
                return i + 1 + m;
            }
        }
    }
    size_t j = i;
    if (!is_nl(s[j]) && !is_letter(s[j]) && !is_digit(s[j]) && j + 1 < n && is_letter(s[j + 1])) {
        j++;
    }
    if (is_letter(s[j])) {
        while (j < n && is_letter(s[j])) {
            j++;
        }
        return j;
    }
    if (is_digit(s[i])) {
        return i + 1;
    }
    j = i + (s[i] == ' ' ? 1 : 0);
    if (j < n && !is_sp(s[j]) && !is_letter(s[j]) && !is_digit(s[j])) {
        while (j < n && !is_sp(s[j]) && !is_letter(s[j]) && !is_digit(s[j])) {
            j++;
        }
        while (j < n && is_nl(s[j])) {
            j++;
        }
        return j;
    }
    /* whitespace run [i, e) */
    size_t e = i;
    while (e < n && is_sp(s[e])) {
        e++;
    }
    for (size_t k = e; k > i; k--) {
        if (is_nl(s[k - 1])) {
            return k; /* \s*[\r\n]+ ends at the last newline of the run */
        }
    }
    if (e == n || e - i == 1) {
        return e;
    }
    return e - 1; /* \s+(?!\S): leave the last space to the next piece */
}

/* ---- word table --------------------------------------------------------------------------- */

struct word {
    int32_t *sym;
    size_t n;
    int64_t count;
    char *key; /* the word's bytes, for lookup */
    size_t key_len;
};

struct words {
    struct word *w;
    size_t n, cap;
    size_t *slot; /* open addressing: index + 1, 0 = empty */
    size_t n_slot;
};

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    }
    return h;
}

static bool words_grow(struct words *ws)
{
    size_t ns = ws->n_slot ? ws->n_slot * 2 : 1024;
    size_t *slot = pd_calloc(ns, sizeof *slot);
    if (!slot) {
        return false;
    }
    for (size_t i = 0; i < ws->n; i++) {
        size_t h = hash_bytes(ws->w[i].key, ws->w[i].key_len) & (ns - 1);
        while (slot[h]) {
            h = (h + 1) & (ns - 1);
        }
        slot[h] = i + 1;
    }
    free(ws->slot);
    ws->slot = slot;
    ws->n_slot = ns;
    return true;
}

static bool words_add(struct words *ws, const char *p, size_t n)
{
    if ((ws->n + 1) * 2 > ws->n_slot && !words_grow(ws)) {
        return false;
    }
    size_t h = hash_bytes(p, n) & (ws->n_slot - 1);
    while (ws->slot[h]) {
        struct word *w = &ws->w[ws->slot[h] - 1];
        if (w->key_len == n && memcmp(w->key, p, n) == 0) {
            w->count++;
            return true;
        }
        h = (h + 1) & (ws->n_slot - 1);
    }
    struct word *grown = pd_grow_array(ws->w, &ws->cap, ws->n + 1, sizeof *ws->w);
    if (!grown) {
        return false;
    }
    ws->w = grown;
    struct word *w = &ws->w[ws->n];
    w->key = pd_strndup(p, n);
    w->sym = pd_malloc_array(n, sizeof *w->sym);
    if (!w->key || !w->sym) {
        free(w->key);
        free(w->sym);
        return false;
    }
    w->key_len = n;
    w->n = n;
    w->count = 1;
    for (size_t i = 0; i < n; i++) {
        w->sym[i] = (unsigned char)p[i];
    }
    ws->slot[h] = ++ws->n;
    return true;
}

static void words_free(struct words *ws)
{
    for (size_t i = 0; i < ws->n; i++) {
        free(ws->w[i].sym);
        free(ws->w[i].key);
    }
    free(ws->w);
    free(ws->slot);
}

/* Splits text into words (skipping special token texts) and counts them. */
static bool add_text(struct words *ws, const char *t)
{
    size_t n = strlen(t), i = 0, run = 0;
    while (i <= n) {
        size_t sp_len = 0;
        for (int k = 0; i < n && k < RZ_N_SPECIAL; k++) {
            size_t m = strlen(k_special[k]);
            if (strncmp(t + i, k_special[k], m) == 0) {
                sp_len = m;
            }
        }
        if (i == n || sp_len) {
            for (size_t j = run; j < i;) {
                size_t e = piece_end(t, i, j);
                if (!words_add(ws, t + j, e - j)) {
                    return false;
                }
                j = e;
            }
            i += sp_len ? sp_len : 1;
            run = i;
        } else {
            i++;
        }
    }
    return true;
}

/* ---- pair counts ------------------------------------------------------------------------ */

struct pair_count {
    uint64_t key; /* left << 32 | right, + 1 so that 0 marks an empty slot */
    int64_t count;
};

static bool count_pairs(const struct words *ws, struct pair_count **tab, size_t *n_tab,
                        uint64_t *best, int64_t *best_count)
{
    size_t need = 64;
    for (size_t i = 0; i < ws->n; i++) {
        need += ws->w[i].n;
    }
    size_t ns = 1;
    while (ns < need * 2) {
        ns *= 2;
    }
    if (ns > *n_tab) {
        free(*tab);
        *tab = pd_calloc(ns, sizeof **tab);
        if (!*tab) {
            return false;
        }
        *n_tab = ns;
    } else {
        memset(*tab, 0, *n_tab * sizeof **tab);
        ns = *n_tab;
    }
    *best = 0;
    *best_count = 0;
    for (size_t i = 0; i < ws->n; i++) {
        const struct word *w = &ws->w[i];
        for (size_t j = 0; j + 1 < w->n; j++) {
            uint64_t key = ((uint64_t)(uint32_t)w->sym[j] << 32 | (uint32_t)w->sym[j + 1]) + 1;
            size_t h = (size_t)(key * 0x9E3779B97F4A7C15ull) & (ns - 1);
            while ((*tab)[h].key && (*tab)[h].key != key) {
                h = (h + 1) & (ns - 1);
            }
            (*tab)[h].key = key;
            int64_t c = ((*tab)[h].count += w->count);
            if (c > *best_count || (c == *best_count && key < *best)) {
                *best = key;
                *best_count = c;
            }
        }
    }
    return true;
}

/* ---- training ----------------------------------------------------------------------------- */

static int32_t find_token(const struct rz_vocab *v, const char *s)
{
    for (size_t i = 0; i < v->n_tokens; i++) {
        if (strcmp(v->tokens[i], s) == 0) {
            return (int32_t)i;
        }
    }
    return -1;
}

enum pd_status rz_bpe_train(const char *const *texts, size_t n, uint32_t n_vocab,
                            struct rz_vocab *v, struct pd_err *err)
{
    memset(v, 0, sizeof *v);
    if (n_vocab < 256 + RZ_N_SPECIAL || n_vocab > (1u << 16)) {
        return pd_err_set(err, PD_EINVAL, "vocabulary size %u: expected %d to 65536", n_vocab,
                          256 + RZ_N_SPECIAL);
    }
    enum pd_status rc = PD_ENOMEM;
    struct words ws = {0};
    struct pair_count *tab = NULL;
    size_t n_tab = 0;
    v->tokens = pd_calloc(n_vocab, sizeof *v->tokens);
    v->types = pd_calloc(n_vocab, sizeof *v->types);
    v->merges = pd_calloc(n_vocab, sizeof *v->merges);
    if (!v->tokens || !v->types || !v->merges) {
        goto fail;
    }
    for (int b = 0; b < 256; b++) {
        char buf[4] = {0};
        put_utf8(byte_cp(b), buf);
        if (!(v->tokens[b] = pd_strdup(buf))) {
            goto fail;
        }
        v->types[b] = 1;
        v->n_tokens++;
    }
    for (size_t i = 0; i < n; i++) {
        if (!add_text(&ws, texts[i])) {
            goto fail;
        }
    }
    while (v->n_tokens < n_vocab - RZ_N_SPECIAL) {
        uint64_t best;
        int64_t best_count;
        if (!count_pairs(&ws, &tab, &n_tab, &best, &best_count)) {
            goto fail;
        }
        if (best_count < 2) {
            break;
        }
        int32_t l = (int32_t)((best - 1) >> 32), r = (int32_t)((best - 1) & 0xFFFFFFFFu);
        size_t ll = strlen(v->tokens[l]), rl = strlen(v->tokens[r]);
        char *cat = pd_malloc_array(ll + rl + 1, 1);
        char *merge = pd_malloc_array(ll + rl + 2, 1);
        if (!cat || !merge) {
            free(cat);
            free(merge);
            goto fail;
        }
        memcpy(cat, v->tokens[l], ll);
        memcpy(cat + ll, v->tokens[r], rl + 1);
        memcpy(merge, v->tokens[l], ll);
        merge[ll] = ' ';
        memcpy(merge + ll + 1, v->tokens[r], rl + 1);
        v->merges[v->n_merges++] = merge;
        int32_t id = find_token(v, cat);
        if (id < 0) {
            id = (int32_t)v->n_tokens;
            v->tokens[v->n_tokens] = cat;
            v->types[v->n_tokens++] = 1;
        } else {
            free(cat);
        }
        for (size_t i = 0; i < ws.n; i++) {
            struct word *w = &ws.w[i];
            size_t o = 0;
            for (size_t j = 0; j < w->n; j++) {
                if (j + 1 < w->n && w->sym[j] == l && w->sym[j + 1] == r) {
                    w->sym[o++] = id;
                    j++;
                } else {
                    w->sym[o++] = w->sym[j];
                }
            }
            w->n = o;
        }
    }
    for (int k = 0; k < RZ_N_SPECIAL; k++) {
        if (!(v->tokens[v->n_tokens] = pd_strdup(k_special[k]))) {
            goto fail;
        }
        v->types[v->n_tokens++] = k_special_type[k];
    }
    size_t s0 = v->n_tokens - RZ_N_SPECIAL;
    v->id_endoftext = (int32_t)s0;
    v->id_im_start = (int32_t)s0 + 1;
    v->id_im_end = (int32_t)s0 + 2;
    v->id_think = (int32_t)s0 + 3;
    v->id_think_end = (int32_t)s0 + 4;
    rc = PD_OK;
fail:
    words_free(&ws);
    free(tab);
    if (rc != PD_OK) {
        rz_vocab_deinit(v);
        return pd_err_set(err, rc, "BPE training: out of memory");
    }
    return PD_OK;
}

enum pd_status rz_vocab_write_meta(const struct rz_vocab *v, const char *chat_template,
                                   struct pd_gguf_writer *w, struct pd_err *err)
{
    enum pd_status rc;
    if ((rc = pd_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2", err)) ||
        (rc = pd_gguf_writer_add_str(w, "tokenizer.ggml.pre", "qwen2", err)) ||
        (rc = pd_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens",
                                         (const char *const *)v->tokens, NULL, v->n_tokens,
                                         err)) ||
        (rc = pd_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", PD_GGUF_INT32, v->types,
                                     v->n_tokens, err)) ||
        (rc = pd_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges",
                                         (const char *const *)v->merges, NULL, v->n_merges,
                                         err)) ||
        (rc = pd_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id",
                                     (uint32_t)v->id_endoftext, err)) ||
        (rc = pd_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->id_im_end,
                                     err)) ||
        (rc = pd_gguf_writer_add_u32(w, "tokenizer.ggml.padding_token_id",
                                     (uint32_t)v->id_endoftext, err)) ||
        (rc = pd_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", false, err)) ||
        (rc = pd_gguf_writer_add_str(w, "tokenizer.chat_template", chat_template, err))) {
        return rc;
    }
    return PD_OK;
}
