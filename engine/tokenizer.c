/* tokenizer.c - SentencePiece-style and byte-level BPE tokenizers built from GGUF
 * metadata; see tokenizer.h for the contract.
 *
 * DESIGN
 * Load: token texts are copied into one pool (an empty text becomes "[EMPTY_<id>]", as
 * the reference loader does) and indexed by an open-addressing hash (text -> id).
 * Merges are parsed once into a second hash keyed by the (left id, right id) pair, which
 * holds the rank (first occurrence wins) and the merged token's id; because every merge
 * must name vocabulary tokens, BPE symbols can carry ids instead of strings. Each
 * token's decoded piece is computed at load into a third pool, so decoding is a lookup.
 *
 * Encode (one call, no shared state): 1) special-token partition: for each special token,
 * longest text first (ties by id), every raw fragment is split at each occurrence, left
 * to right; 2) each raw fragment is tokenized:
 *   SPM: optional leading space, ' ' -> U+2581, split into UTF-8 units by lead byte
 *        (no validation), then repeatedly merge the adjacent pair whose concatenation is a
 *        token with the highest score (ties: leftmost) from a binary heap with lazy
 *        invalidation (a popped pair is stale when either side changed length); units
 *        that are not tokens become <0xNN> byte tokens.
 *   BPE: decode code points leniently (unicode.h), classify them, split with the
 *        pre-tokenizer's passes, map each piece's bytes to the GPT-2 alphabet, then merge
 *        adjacent symbols lowest rank first (ties: leftmost) with the same heap scheme.
 * The splitter passes are hand-written matchers equivalent to the pre-tokenizer regular
 * expressions (quoted above each); they scan code points, never bytes.
 *
 * Invariants: ids stored anywhere are < n_vocab; pools are immutable after open. */
#include "tokenizer.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "unicode.h"

#define KEY_PREFIX "tokenizer.ggml."
#define NONE (-1)
#define SPM_SPACE "\xE2\x96\x81" /* U+2581 LOWER ONE EIGHTH BLOCK */
#define SPM_SPACE_LEN 3u
#define OUT_OF_RANGE 0xFFFFFFFFu

struct tok_entry {
    uint32_t text_off; /* into pd_tok.text */
    uint32_t text_len;
    uint32_t piece_off; /* into pd_tok.pieces */
    uint32_t piece_len;
    float score;
    uint8_t type; /* enum pd_tok_type */
};

struct merge_slot {
    uint64_t key;   /* (left id << 32) | right id; UINT64_MAX = empty */
    uint32_t rank;  /* position in tokenizer.ggml.merges */
    int32_t result; /* id of left+right */
};

struct pd_tok {
    enum pd_tok_model model;
    enum pd_tok_pre pre;
    uint32_t n_vocab;
    struct tok_entry *tok; /* owned [n_vocab] */
    char *text;            /* owned pool of token texts */
    char *pieces;          /* owned pool of decoded pieces */
    uint32_t *id_slots;    /* owned [id_mask + 1]: id + 1, 0 = empty */
    size_t id_mask;
    struct merge_slot *merge_slots; /* owned [merge_mask + 1]; NULL for SPM */
    size_t merge_mask;
    int32_t *specials; /* owned [n_specials]: longest text first */
    size_t n_specials;
    int32_t bos, eos, eot, eom, unk, pad;
    int32_t eog[16]; /* end-of-generation ids */
    size_t n_eog;
    bool add_bos;
    bool add_space_prefix;
    bool ignore_merges;
    int32_t byte_id[256]; /* token for a raw byte (SPM <0xNN>, BPE GPT-2 char), or NONE */
    uint8_t gpt2_utf8[256][2]; /* GPT-2 alphabet: byte -> UTF-8 of its stand-in char */
    uint8_t gpt2_len[256];
    int16_t gpt2_byte[324]; /* stand-in code point -> byte, or -1 */
};

/* ---- tables ---- */

static const char *const model_names[PD_TOK_MODEL_COUNT] = {
    [PD_TOK_MODEL_SPM] = "llama",
    [PD_TOK_MODEL_BPE] = "gpt2",
};
_Static_assert(sizeof model_names / sizeof model_names[0] == PD_TOK_MODEL_COUNT, "models");

static const char *const pre_names[PD_TOK_PRE_COUNT] = {
    [PD_TOK_PRE_NONE] = "none",     [PD_TOK_PRE_DEFAULT] = "default",
    [PD_TOK_PRE_GPT2] = "gpt-2",    [PD_TOK_PRE_LLAMA3] = "llama3",
    [PD_TOK_PRE_QWEN2] = "qwen2",
};
_Static_assert(sizeof pre_names / sizeof pre_names[0] == PD_TOK_PRE_COUNT, "pre names");

/* `tokenizer.ggml.pre` values and what they select. */
struct pre_alias {
    const char *name;
    enum pd_tok_pre pre;
    bool ignore_merges; /* a piece that is already a token skips merging */
    bool add_bos;       /* default for add_bos_token */
};

static const struct pre_alias pre_aliases[] = {
    {"default", PD_TOK_PRE_DEFAULT, false, false},
    {"gpt-2", PD_TOK_PRE_GPT2, false, false},
    {"llama3", PD_TOK_PRE_LLAMA3, true, true},
    {"llama-v3", PD_TOK_PRE_LLAMA3, true, true},
    {"llama-bpe", PD_TOK_PRE_LLAMA3, true, true},
    {"qwen2", PD_TOK_PRE_QWEN2, false, false},
    {"deepseek-r1-qwen", PD_TOK_PRE_QWEN2, false, false},
};

/* Token texts the reference loader re-types whatever the file says (older converters
 * left them NORMAL), which changes how input text is cut: */
enum text_role {
    ROLE_EOT,     /* CONTROL; end of generation; the first present is EOT when unset */
    ROLE_EOG,     /* CONTROL; end of generation */
    ROLE_FIM,     /* CONTROL (fill-in-the-middle markers; first present per group) */
    ROLE_VISIBLE, /* USER_DEFINED: always cut out, always rendered */
    ROLE_COUNT
};

struct text_rule {
    const char *text;
    uint8_t role;  /* enum text_role */
    uint8_t group; /* ROLE_FIM: prefix 1, suffix 2, middle 3, pad 4, repo 5, file 6 */
};

#define FW_BAR "\xEF\xBD\x9C" /* U+FF5C FULLWIDTH VERTICAL LINE */
#define SP_MARK "\xE2\x96\x81" /* U+2581 */
static const struct text_rule text_rules[] = {
    {"<|eot_id|>", ROLE_EOT, 0},
    {"<|im_end|>", ROLE_EOT, 0},
    {"<|end|>", ROLE_EOT, 0},
    {"<end_of_turn>", ROLE_EOT, 0},
    {"<|endoftext|>", ROLE_EOT, 0},
    {"<|end_of_text|>", ROLE_EOT, 0},
    {"<EOT>", ROLE_EOT, 0},
    {"_<EOT>", ROLE_EOT, 0},
    {"[EOT]", ROLE_EOT, 0},
    {"<" FW_BAR "end" SP_MARK "of" SP_MARK "sentence" FW_BAR ">", ROLE_EOT, 0},
    {"<end_of_utterance>", ROLE_EOT, 0},
    {"<|eom_id|>", ROLE_EOG, 0},
    {"<|return|>", ROLE_EOG, 0},
    {"<|call|>", ROLE_EOG, 0},
    {"<|flush|>", ROLE_EOG, 0},
    {"<|calls|>", ROLE_EOG, 0},
    {"</s>", ROLE_EOG, 0},
    {"[EOS]", ROLE_EOG, 0},
    {"<eos>", ROLE_EOG, 0},
    {"<turn|>", ROLE_EOG, 0},
    {"<|tool_response>", ROLE_EOG, 0},
    {"[e~[", ROLE_EOG, 0},
    {"<|fim_prefix|>", ROLE_FIM, 1},
    {"<fim-prefix>", ROLE_FIM, 1},
    {"<fim_prefix>", ROLE_FIM, 1},
    {"<" FW_BAR "fim" SP_MARK "begin" FW_BAR ">", ROLE_FIM, 1},
    {"<PRE>", ROLE_FIM, 1},
    {SP_MARK "<PRE>", ROLE_FIM, 1},
    {"<|code_prefix|>", ROLE_FIM, 1},
    {"<|prefix|>", ROLE_FIM, 1},
    {"<|fim_suffix|>", ROLE_FIM, 2},
    {"<fim-suffix>", ROLE_FIM, 2},
    {"<fim_suffix>", ROLE_FIM, 2},
    {"<" FW_BAR "fim" SP_MARK "hole" FW_BAR ">", ROLE_FIM, 2},
    {"<SUF>", ROLE_FIM, 2},
    {SP_MARK "<SUF>", ROLE_FIM, 2},
    {"<|code_suffix|>", ROLE_FIM, 2},
    {"<|suffix|>", ROLE_FIM, 2},
    {"<|fim_middle|>", ROLE_FIM, 3},
    {"<fim-middle>", ROLE_FIM, 3},
    {"<fim_middle>", ROLE_FIM, 3},
    {"<" FW_BAR "fim" SP_MARK "end" FW_BAR ">", ROLE_FIM, 3},
    {"<MID>", ROLE_FIM, 3},
    {SP_MARK "<MID>", ROLE_FIM, 3},
    {"<|code_middle|>", ROLE_FIM, 3},
    {"<|middle|>", ROLE_FIM, 3},
    {"<|fim_pad|>", ROLE_FIM, 4},
    {"<fim-pad>", ROLE_FIM, 4},
    {"<fim_pad>", ROLE_FIM, 4},
    {"<PAD>", ROLE_FIM, 4},
    {"[PAD]", ROLE_FIM, 4},
    {"<|fim_repo|>", ROLE_FIM, 5},
    {"<|repo_name|>", ROLE_FIM, 5},
    {"<fim-repo>", ROLE_FIM, 5},
    {"<REPO>", ROLE_FIM, 5},
    {"<reponame>", ROLE_FIM, 5},
    {"<|file_sep|>", ROLE_FIM, 6},
    {"<|channel|>", ROLE_VISIBLE, 0},
    {"<|message|>", ROLE_VISIBLE, 0},
    {"<|start|>", ROLE_VISIBLE, 0},
    {"<|constrain|>", ROLE_VISIBLE, 0},
};

/* Special-id keys: where each lands and its default per model (NONE = none). */
struct id_key {
    const char *key;
    size_t field; /* offsetof in struct pd_tok */
    int32_t def[PD_TOK_MODEL_COUNT];
};

#define ID_FIELD(f) offsetof(struct pd_tok, f)
static const struct id_key id_keys[] = {
    {KEY_PREFIX "bos_token_id", ID_FIELD(bos), {1, NONE}},
    {KEY_PREFIX "eos_token_id", ID_FIELD(eos), {2, NONE}},
    {KEY_PREFIX "eot_token_id", ID_FIELD(eot), {NONE, NONE}},
    {KEY_PREFIX "eom_token_id", ID_FIELD(eom), {NONE, NONE}},
    {KEY_PREFIX "unknown_token_id", ID_FIELD(unk), {0, NONE}},
    {KEY_PREFIX "padding_token_id", ID_FIELD(pad), {NONE, NONE}},
};

/* ---- small helpers ---- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static const char *tok_text(const struct pd_tok *t, uint32_t id)
{
    return t->text + t->tok[id].text_off;
}

static int32_t lookup(const struct pd_tok *t, const char *s, size_t n)
{
    size_t i = (size_t)hash_bytes(s, n) & t->id_mask;
    for (;;) {
        uint32_t v = t->id_slots[i];
        if (v == 0) {
            return NONE;
        }
        const struct tok_entry *e = &t->tok[v - 1];
        if (e->text_len == n && memcmp(t->text + e->text_off, s, n) == 0) {
            return (int32_t)(v - 1);
        }
        i = (i + 1) & t->id_mask;
    }
}

static const struct merge_slot *merge_find(const struct pd_tok *t, int32_t l, int32_t r)
{
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    size_t i = (size_t)hash_u64(key) & t->merge_mask;
    for (;;) {
        const struct merge_slot *s = &t->merge_slots[i];
        if (s->key == UINT64_MAX) {
            return NULL;
        }
        if (s->key == key) {
            return s;
        }
        i = (i + 1) & t->merge_mask;
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Byte value of a "<0xNN>" text, or -1. */
static int byte_token_value(const char *s, size_t n)
{
    if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') {
        return -1;
    }
    int hi = hexval(s[3]);
    int lo = hexval(s[4]);
    return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
}

/* The GPT-2 byte-level alphabet: printable Latin-1 bytes stand for themselves, the other
 * 68 bytes (controls, space, 0x7F-0xA0, 0xAD) map in order to U+0100.. */
static void gpt2_alphabet(struct pd_tok *t)
{
    int n = 0;
    for (size_t i = 0; i < sizeof t->gpt2_byte / sizeof t->gpt2_byte[0]; i++) {
        t->gpt2_byte[i] = -1;
    }
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        uint32_t cp = printable ? (uint32_t)b : (uint32_t)(256 + n++);
        char u[4];
        size_t len = pd_unicode_encode(cp, u);
        memcpy(t->gpt2_utf8[b], u, len);
        t->gpt2_len[b] = (uint8_t)len;
        t->gpt2_byte[cp] = (int16_t)b;
    }
}

/* ---- load ---- */

static enum pd_status fmt_err(struct pd_err *err, const struct pd_gguf *g, const char *fmt,
                              ...) __attribute__((format(printf, 3, 4)));

static enum pd_status fmt_err(struct pd_err *err, const struct pd_gguf *g, const char *fmt, ...)
{
    char msg[PD_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return pd_err_set(err, PD_EFORMAT, "%s: %s", g->path ? g->path : "gguf", msg);
}

/* Writes at most 40 bytes of s[0..n) into out, escaping non-printable bytes. */
static const char *shown(char out[200], const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && i < 40; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != 0x7F && c != '\'') {
            out[o++] = (char)c;
        } else {
            o += (size_t)snprintf(out + o, 5, "\\x%02X", c);
        }
    }
    if (n > 40) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

static enum pd_status load_tokens(struct pd_tok *t, const struct pd_gguf *g, struct pd_err *err)
{
    const struct pd_gguf_kv *kv;
    enum pd_status rc = pd_gguf_get_arr(g, KEY_PREFIX "tokens", PD_GGUF_STRING, &kv, err);
    if (rc == PD_EINVAL) {
        return fmt_err(err, g, KEY_PREFIX "tokens: missing (no vocabulary)");
    }
    if (rc != PD_OK) {
        return rc;
    }
    if (kv->v.arr.n == 0 || kv->v.arr.n > PD_TOK_VOCAB_MAX) {
        return fmt_err(err, g, KEY_PREFIX "tokens: %llu tokens (expected 1..%u)",
                       (unsigned long long)kv->v.arr.n, PD_TOK_VOCAB_MAX);
    }
    uint32_t n = (uint32_t)kv->v.arr.n;
    t->n_vocab = n;
    t->tok = pd_calloc(n, sizeof *t->tok);
    if (!t->tok) {
        return pd_err_set(err, PD_ENOMEM, "tokenizer: out of memory");
    }
    /* Pool size: every text plus room for "[EMPTY_<id>]" stand-ins. */
    uint64_t pool = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t len = kv->v.arr.strs[i].n;
        if (len > PD_TOK_TEXT_MAX) {
            return fmt_err(err, g, KEY_PREFIX "tokens[%u]: %llu bytes (max %u)", i,
                           (unsigned long long)len, PD_TOK_TEXT_MAX);
        }
        pool += len ? len : 20;
    }
    t->text = malloc(pool ? (size_t)pool : 1);
    if (!t->text) {
        return pd_err_set(err, PD_ENOMEM, "tokenizer: out of memory");
    }
    uint32_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct pd_gguf_str *s = &kv->v.arr.strs[i];
        uint32_t len = (uint32_t)s->n;
        if (len == 0) {
            len = (uint32_t)snprintf(t->text + off, 20, "[EMPTY_%u]", i);
        } else {
            memcpy(t->text + off, s->s, len);
        }
        t->tok[i].text_off = off;
        t->tok[i].text_len = len;
        t->tok[i].type = PD_TOK_TYPE_NORMAL;
        off += len;
    }
    /* Index, rejecting duplicates. */
    size_t cap = 16;
    while (cap < (size_t)n * 2) {
        cap *= 2;
    }
    t->id_slots = pd_calloc(cap, sizeof *t->id_slots);
    if (!t->id_slots) {
        return pd_err_set(err, PD_ENOMEM, "tokenizer: out of memory");
    }
    t->id_mask = cap - 1;
    for (uint32_t i = 0; i < n; i++) {
        const char *s = tok_text(t, i);
        uint32_t len = t->tok[i].text_len;
        int32_t dup = lookup(t, s, len);
        if (dup != NONE) {
            char buf[200];
            return fmt_err(err, g, KEY_PREFIX "tokens[%u]: '%s' duplicates token %d", i,
                           shown(buf, s, len), dup);
        }
        size_t j = (size_t)hash_bytes(s, len) & t->id_mask;
        while (t->id_slots[j] != 0) {
            j = (j + 1) & t->id_mask;
        }
        t->id_slots[j] = i + 1;
    }
    return PD_OK;
}

static enum pd_status load_scores_types(struct pd_tok *t, const struct pd_gguf *g,
                                        struct pd_err *err)
{
    const struct pd_gguf_kv *kv = pd_gguf_find(g, KEY_PREFIX "scores");
    if (kv) {
        if (kv->type != PD_GGUF_ARRAY ||
            (kv->v.arr.elem != PD_GGUF_FLOAT32 && kv->v.arr.elem != PD_GGUF_INT32)) {
            return fmt_err(err, g, KEY_PREFIX "scores: expected an array of float32");
        }
        if (kv->v.arr.n != t->n_vocab) {
            return fmt_err(err, g, KEY_PREFIX "scores: %llu scores for %u tokens",
                           (unsigned long long)kv->v.arr.n, t->n_vocab);
        }
        const unsigned char *p = kv->v.arr.data;
        for (uint32_t i = 0; i < t->n_vocab; i++) {
            uint32_t bits = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                            (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
            float f;
            if (kv->v.arr.elem == PD_GGUF_FLOAT32) {
                memcpy(&f, &bits, sizeof f);
            } else {
                f = (float)(int32_t)bits;
            }
            if (isnan(f)) {
                return fmt_err(err, g, KEY_PREFIX "scores[%u]: NaN", i);
            }
            t->tok[i].score = f;
        }
    }
    kv = pd_gguf_find(g, KEY_PREFIX "token_type");
    if (kv) {
        if (kv->type != PD_GGUF_ARRAY || kv->v.arr.elem != PD_GGUF_INT32) {
            return fmt_err(err, g, KEY_PREFIX "token_type: expected an array of int32");
        }
        if (kv->v.arr.n != t->n_vocab) {
            return fmt_err(err, g, KEY_PREFIX "token_type: %llu types for %u tokens",
                           (unsigned long long)kv->v.arr.n, t->n_vocab);
        }
        const unsigned char *p = kv->v.arr.data;
        for (uint32_t i = 0; i < t->n_vocab; i++) {
            int32_t v = (int32_t)((uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                                  (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24);
            if (v < 0 || v >= PD_TOK_TYPE_COUNT) {
                return fmt_err(err, g, KEY_PREFIX "token_type[%u]: %d is not a token type (0..%d)",
                               i, v, PD_TOK_TYPE_COUNT - 1);
            }
            t->tok[i].type = (uint8_t)v;
            if (v == PD_TOK_TYPE_BYTE &&
                byte_token_value(tok_text(t, i), t->tok[i].text_len) < 0) {
                char buf[200];
                return fmt_err(err, g, KEY_PREFIX "tokens[%u]: byte token '%s' is not <0xNN>",
                               i, shown(buf, tok_text(t, i), t->tok[i].text_len));
            }
        }
    }
    return PD_OK;
}

static enum pd_status load_merges(struct pd_tok *t, const struct pd_gguf *g, struct pd_err *err)
{
    const struct pd_gguf_kv *kv;
    enum pd_status rc = pd_gguf_get_arr(g, KEY_PREFIX "merges", PD_GGUF_STRING, &kv, err);
    if (rc == PD_EINVAL) {
        return fmt_err(err, g, KEY_PREFIX "merges: missing (required for model gpt2)");
    }
    if (rc != PD_OK) {
        return rc;
    }
    if (kv->v.arr.n > PD_TOK_MERGES_MAX) {
        return fmt_err(err, g, KEY_PREFIX "merges: %llu merges (max %u)",
                       (unsigned long long)kv->v.arr.n, PD_TOK_MERGES_MAX);
    }
    uint32_t n = (uint32_t)kv->v.arr.n;
    size_t cap = 16;
    while (cap < (size_t)n * 2) {
        cap *= 2;
    }
    t->merge_slots = pd_malloc_array(cap, sizeof *t->merge_slots);
    if (!t->merge_slots) {
        return pd_err_set(err, PD_ENOMEM, "tokenizer: out of memory");
    }
    for (size_t i = 0; i < cap; i++) {
        t->merge_slots[i].key = UINT64_MAX;
    }
    t->merge_mask = cap - 1;
    char *joined = NULL;
    size_t joined_cap = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct pd_gguf_str *s = &kv->v.arr.strs[i];
        char buf[200];
        /* "left right", split at the first space after the first byte. */
        const char *sp = s->n > 1 ? memchr(s->s + 1, ' ', (size_t)s->n - 1) : NULL;
        if (!sp) {
            free(joined);
            return fmt_err(err, g, KEY_PREFIX "merges[%u]: '%s' is not 'left right'", i,
                           shown(buf, s->s, (size_t)s->n));
        }
        size_t ln = (size_t)(sp - s->s);
        size_t rn = (size_t)s->n - ln - 1;
        int32_t l = lookup(t, s->s, ln);
        int32_t r = lookup(t, sp + 1, rn);
        if (l == NONE || r == NONE) {
            char part[200];
            free(joined);
            return fmt_err(err, g, KEY_PREFIX "merges[%u]: '%s': '%s' is not a token", i,
                           shown(buf, s->s, (size_t)s->n),
                           l == NONE ? shown(part, s->s, ln) : shown(part, sp + 1, rn));
        }
        char *nj = pd_grow_array(joined, &joined_cap, ln + rn, 1);
        if (!nj) {
            free(joined);
            return pd_err_set(err, PD_ENOMEM, "tokenizer: out of memory");
        }
        joined = nj;
        memcpy(joined, s->s, ln);
        memcpy(joined + ln, sp + 1, rn);
        int32_t res = lookup(t, joined, ln + rn);
        if (res == NONE) {
            free(joined);
            return fmt_err(err, g, KEY_PREFIX "merges[%u]: '%s': the merged text is not a token",
                           i, shown(buf, s->s, (size_t)s->n));
        }
        uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
        size_t j = (size_t)hash_u64(key) & t->merge_mask;
        while (t->merge_slots[j].key != UINT64_MAX && t->merge_slots[j].key != key) {
            j = (j + 1) & t->merge_mask;
        }
        if (t->merge_slots[j].key == UINT64_MAX) { /* a repeated pair keeps its first rank */
            t->merge_slots[j].key = key;
            t->merge_slots[j].rank = i;
            t->merge_slots[j].result = res;
        }
    }
    free(joined);
    return PD_OK;
}

/* Reads an optional token id key into *id: absent keeps *id; -1 / UINT32_MAX mean none. */
static enum pd_status load_id(const struct pd_tok *t, const struct pd_gguf *g, const char *key,
                              int32_t *id, struct pd_err *err)
{
    const struct pd_gguf_kv *kv = pd_gguf_find(g, key);
    if (!kv) {
        return PD_OK;
    }
    int64_t v;
    switch (kv->type) {
    case PD_GGUF_UINT8:
    case PD_GGUF_UINT16:
    case PD_GGUF_UINT32:
    case PD_GGUF_UINT64:
        v = kv->v.u == UINT32_MAX || kv->v.u == UINT64_MAX ? -1
            : kv->v.u > (uint64_t)INT64_MAX                ? INT64_MAX
                                                           : (int64_t)kv->v.u;
        break;
    case PD_GGUF_INT8:
    case PD_GGUF_INT16:
    case PD_GGUF_INT32:
    case PD_GGUF_INT64:
        v = kv->v.i;
        break;
    default:
        return fmt_err(err, g, "%s: type %s, expected an integer token id", key,
                       pd_gguf_vtype_name(kv->type));
    }
    if (v == -1) {
        *id = NONE;
        return PD_OK;
    }
    if (v < 0 || v >= (int64_t)t->n_vocab) {
        return fmt_err(err, g, "%s: %lld is out of range (the vocabulary has %u tokens)", key,
                       (long long)v, t->n_vocab);
    }
    *id = (int32_t)v;
    return PD_OK;
}

static enum pd_status load_bool(const struct pd_gguf *g, const char *key, bool *out,
                                struct pd_err *err)
{
    enum pd_status rc = pd_gguf_get_bool(g, key, out, err);
    return rc == PD_EINVAL ? PD_OK : rc; /* absent: keep the default */
}

static void add_eog(struct pd_tok *t, int32_t id)
{
    if (id == NONE) {
        return;
    }
    for (size_t i = 0; i < t->n_eog; i++) {
        if (t->eog[i] == id) {
            return;
        }
    }
    if (t->n_eog < sizeof t->eog / sizeof t->eog[0]) {
        t->eog[t->n_eog++] = id;
    }
}

static enum pd_status load_special(struct pd_tok *t, const struct pd_gguf *g, struct pd_err *err)
{
    for (size_t i = 0; i < sizeof id_keys / sizeof id_keys[0]; i++) {
        int32_t *field = (int32_t *)((char *)t + id_keys[i].field);
        int32_t def = id_keys[i].def[t->model];
        *field = (def != NONE && (uint32_t)def < t->n_vocab) ? def : NONE;
        enum pd_status rc = load_id(t, g, id_keys[i].key, field, err);
        if (rc != PD_OK) {
            return rc;
        }
    }
    enum pd_status rc = load_bool(g, KEY_PREFIX "add_bos_token", &t->add_bos, err);
    if (rc == PD_OK) {
        rc = load_bool(g, KEY_PREFIX "add_space_prefix", &t->add_space_prefix, err);
    }
    if (rc != PD_OK) {
        return rc;
    }
    if (t->add_bos && t->bos == NONE) {
        return fmt_err(err, g, KEY_PREFIX "add_bos_token is true but there is no BOS token");
    }
    /* Re-typing by text (see text_rules). */
    bool fim_seen[8] = {false};
    for (size_t i = 0; i < sizeof text_rules / sizeof text_rules[0]; i++) {
        const struct text_rule *r = &text_rules[i];
        int32_t id = lookup(t, r->text, strlen(r->text));
        if (id == NONE) {
            continue;
        }
        switch ((enum text_role)r->role) {
        case ROLE_EOT:
            if (t->eot == NONE) {
                t->eot = id;
            }
            t->tok[id].type = PD_TOK_TYPE_CONTROL;
            add_eog(t, id);
            break;
        case ROLE_EOG:
            t->tok[id].type = PD_TOK_TYPE_CONTROL;
            add_eog(t, id);
            break;
        case ROLE_FIM:
            if (!fim_seen[r->group]) {
                fim_seen[r->group] = true;
                t->tok[id].type = PD_TOK_TYPE_CONTROL;
            }
            break;
        case ROLE_VISIBLE:
        case ROLE_COUNT:
            t->tok[id].type = PD_TOK_TYPE_USER_DEFINED;
            break;
        }
    }
    add_eog(t, t->eos);
    add_eog(t, t->eot);
    add_eog(t, t->eom);
    /* Byte fallback ids. */
    for (int b = 0; b < 256; b++) {
        int32_t id = NONE;
        if (t->model == PD_TOK_MODEL_SPM) {
            char hex[7];
            snprintf(hex, sizeof hex, "<0x%02X>", b);
            id = lookup(t, hex, 6);
            if (id == NONE) {
                char c = (char)b;
                id = lookup(t, &c, 1);
            }
        } else {
            id = lookup(t, (const char *)t->gpt2_utf8[b], t->gpt2_len[b]);
        }
        t->byte_id[b] = id;
    }
    return PD_OK;
}

static bool is_special_type(uint8_t type)
{
    return type == PD_TOK_TYPE_CONTROL || type == PD_TOK_TYPE_USER_DEFINED ||
           type == PD_TOK_TYPE_UNKNOWN;
}

static int32_t *sort_by_length(const struct pd_tok *t, int32_t *ids, size_t n)
{
    /* Counting sort by length, longest first; stable, so ids stay ascending within a
     * length. */
    uint32_t max_len = 0;
    for (size_t i = 0; i < n; i++) {
        if (t->tok[ids[i]].text_len > max_len) {
            max_len = t->tok[ids[i]].text_len;
        }
    }
    size_t *count = pd_calloc((size_t)max_len + 2, sizeof *count);
    int32_t *out = pd_malloc_array(n, sizeof *out);
    if (!count || !out) {
        free(count);
        free(out);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        count[max_len - t->tok[ids[i]].text_len + 1]++;
    }
    for (size_t k = 1; k <= (size_t)max_len + 1; k++) {
        count[k] += count[k - 1];
    }
    for (size_t i = 0; i < n; i++) {
        out[count[max_len - t->tok[ids[i]].text_len]++] = ids[i];
    }
    free(count);
    return out;
}

static enum pd_status load_specials_list(struct pd_tok *t, struct pd_err *err)
{
    size_t n = 0;
    for (uint32_t i = 0; i < t->n_vocab; i++) {
        n += is_special_type(t->tok[i].type);
    }
    if (n == 0) {
        return PD_OK;
    }
    int32_t *ids = pd_malloc_array(n, sizeof *ids);
    if (!ids) {
        return pd_err_set(err, PD_ENOMEM, "tokenizer: out of memory");
    }
    size_t k = 0;
    for (uint32_t i = 0; i < t->n_vocab; i++) {
        if (is_special_type(t->tok[i].type)) {
            ids[k++] = (int32_t)i;
        }
    }
    t->specials = sort_by_length(t, ids, n);
    free(ids);
    if (!t->specials) {
        return pd_err_set(err, PD_ENOMEM, "tokenizer: out of memory");
    }
    t->n_specials = n;
    return PD_OK;
}

/* Appends the decoded piece of token id to b. */
static bool make_piece(const struct pd_tok *t, uint32_t id, struct pd_buf *b)
{
    const struct tok_entry *e = &t->tok[id];
    const char *s = tok_text(t, id);
    switch (e->type) {
    case PD_TOK_TYPE_CONTROL:
    case PD_TOK_TYPE_UNKNOWN:
    case PD_TOK_TYPE_USER_DEFINED:
        return pd_buf_append(b, s, e->text_len);
    case PD_TOK_TYPE_BYTE: {
        char c = (char)byte_token_value(s, e->text_len);
        return pd_buf_append(b, &c, 1);
    }
    case PD_TOK_TYPE_NORMAL:
        break;
    default:
        return true; /* UNUSED, UNDEFINED: nothing */
    }
    if (t->model == PD_TOK_MODEL_SPM) {
        size_t i = 0;
        while (i < e->text_len) {
            if (e->text_len - i >= SPM_SPACE_LEN && memcmp(s + i, SPM_SPACE, SPM_SPACE_LEN) == 0) {
                if (!pd_buf_append(b, " ", 1)) {
                    return false;
                }
                i += SPM_SPACE_LEN;
            } else {
                if (!pd_buf_append(b, s + i, 1)) {
                    return false;
                }
                i++;
            }
        }
        return true;
    }
    /* Byte-level: each code point stands for one byte; others are shown, not dropped. */
    size_t i = 0;
    while (i < e->text_len) {
        uint32_t cp;
        size_t l = pd_unicode_decode_lenient(s + i, e->text_len - i, &cp);
        i += l;
        if (cp < sizeof t->gpt2_byte / sizeof t->gpt2_byte[0] && t->gpt2_byte[cp] >= 0) {
            char c = (char)t->gpt2_byte[cp];
            if (!pd_buf_append(b, &c, 1)) {
                return false;
            }
            continue;
        }
        char u[4];
        size_t ul = pd_unicode_encode(cp, u);
        if (!pd_buf_puts(b, "[UNK_BYTE_0x")) {
            return false;
        }
        for (size_t k = 0; k < ul; k++) {
            if (!pd_buf_printf(b, "%02x", (unsigned char)u[k])) {
                return false;
            }
        }
        if (!pd_buf_append(b, s, e->text_len) || !pd_buf_puts(b, "]")) {
            return false;
        }
    }
    return true;
}

static enum pd_status load_pieces(struct pd_tok *t, struct pd_err *err)
{
    struct pd_buf b;
    pd_buf_init(&b);
    for (uint32_t i = 0; i < t->n_vocab; i++) {
        size_t start = b.len;
        if (!make_piece(t, i, &b) || b.len > UINT32_MAX) {
            pd_buf_deinit(&b);
            return pd_err_set(err, PD_ENOMEM, "tokenizer: out of memory");
        }
        t->tok[i].piece_off = (uint32_t)start;
        t->tok[i].piece_len = (uint32_t)(b.len - start);
    }
    t->pieces = b.data ? pd_buf_take(&b) : calloc(1, 1);
    pd_buf_deinit(&b);
    if (!t->pieces) {
        return pd_err_set(err, PD_ENOMEM, "tokenizer: out of memory");
    }
    return PD_OK;
}

enum pd_status pd_tok_open_gguf(const struct pd_gguf *g, struct pd_tok **out, struct pd_err *err)
{
    *out = NULL;
    struct pd_tok *t = calloc(1, sizeof *t);
    if (!t) {
        return pd_err_set(err, PD_ENOMEM, "tokenizer: out of memory");
    }
    gpt2_alphabet(t);
    enum pd_status rc;
    struct pd_gguf_str s;
    rc = pd_gguf_get_str(g, KEY_PREFIX "model", &s, err);
    if (rc == PD_EINVAL) {
        rc = fmt_err(err, g, KEY_PREFIX "model: missing (no tokenizer)");
        goto fail;
    }
    if (rc != PD_OK) {
        goto fail;
    }
    if (pd_gguf_str_eq(s, "llama")) {
        t->model = PD_TOK_MODEL_SPM;
        t->pre = PD_TOK_PRE_NONE;
        t->add_bos = true;
        t->add_space_prefix = true;
    } else if (pd_gguf_str_eq(s, "gpt2")) {
        t->model = PD_TOK_MODEL_BPE;
        t->pre = PD_TOK_PRE_DEFAULT;
        struct pd_gguf_str pre;
        rc = pd_gguf_get_str(g, KEY_PREFIX "pre", &pre, err);
        if (rc == PD_OK) {
            size_t k = 0;
            size_t n_alias = sizeof pre_aliases / sizeof pre_aliases[0];
            while (k < n_alias && !pd_gguf_str_eq(pre, pre_aliases[k].name)) {
                k++;
            }
            if (k == n_alias) {
                char buf[200];
                rc = pd_err_set(err, PD_EUNSUPPORTED,
                                "%s: " KEY_PREFIX "pre: '%s' is not supported (supported: "
                                "default, gpt-2, llama3, llama-bpe, qwen2, deepseek-r1-qwen)",
                                g->path, shown(buf, pre.s, (size_t)pre.n));
                goto fail;
            }
            t->pre = pre_aliases[k].pre;
            t->ignore_merges = pre_aliases[k].ignore_merges;
            t->add_bos = pre_aliases[k].add_bos;
        } else if (rc != PD_EINVAL) {
            goto fail;
        }
    } else {
        char buf[200];
        rc = pd_err_set(err, PD_EUNSUPPORTED,
                        "%s: " KEY_PREFIX "model: '%s' is not supported (llama, gpt2)", g->path,
                        shown(buf, s.s, (size_t)s.n));
        goto fail;
    }
    if ((rc = load_tokens(t, g, err)) != PD_OK || (rc = load_scores_types(t, g, err)) != PD_OK) {
        goto fail;
    }
    if (t->model == PD_TOK_MODEL_BPE && (rc = load_merges(t, g, err)) != PD_OK) {
        goto fail;
    }
    if ((rc = load_special(t, g, err)) != PD_OK || (rc = load_specials_list(t, err)) != PD_OK ||
        (rc = load_pieces(t, err)) != PD_OK) {
        goto fail;
    }
    *out = t;
    return PD_OK;
fail:
    pd_tok_close(&t);
    return rc;
}

void pd_tok_close(struct pd_tok **tp)
{
    if (!tp || !*tp) {
        return;
    }
    struct pd_tok *t = *tp;
    free(t->tok);
    free(t->text);
    free(t->pieces);
    free(t->id_slots);
    free(t->merge_slots);
    free(t->specials);
    free(t);
    *tp = NULL;
}

/* ---- encode: shared scratch ---- */

struct frag {
    size_t off; /* raw text: byte range in the input */
    size_t len;
    int32_t id; /* special token, or NONE for raw text */
};

struct sym {
    int32_t prev;
    int32_t next;
    uint32_t off; /* into enc.buf */
    uint32_t n;   /* bytes; 0 once merged into its left neighbour */
    int32_t id;   /* BPE: token of this symbol, or NONE */
};

struct bigram {
    double key; /* smaller pops first: -score (SPM) or rank (BPE) */
    int32_t left;
    int32_t right;
    uint32_t size; /* left.n + right.n when queued */
};

struct enc {
    const struct pd_tok *t;
    int32_t *out;
    size_t n_out, cap_out;
    struct frag *frags, *frags2;
    size_t n_frags, cap_frags, cap_frags2;
    char *buf; /* the escaped (SPM) or GPT-2 encoded (BPE) text being merged */
    size_t n_buf, cap_buf;
    struct sym *syms;
    size_t n_syms, cap_syms;
    struct bigram *heap;
    size_t n_heap, cap_heap;
    uint32_t *cps; /* BPE: code points of the fragment */
    uint8_t *cls;  /* their classes */
    size_t n_cps, cap_cps, cap_cls;
    size_t *offs, *offs2; /* BPE: piece lengths (code points) */
    size_t n_offs, n_offs2, cap_offs, cap_offs2;
};

static void enc_free(struct enc *e)
{
    free(e->out);
    free(e->frags);
    free(e->frags2);
    free(e->buf);
    free(e->syms);
    free(e->heap);
    free(e->cps);
    free(e->cls);
    free(e->offs);
    free(e->offs2);
}

static bool push_id(struct enc *e, int32_t id)
{
    int32_t *out = pd_grow_array(e->out, &e->cap_out, e->n_out + 1, sizeof *e->out);
    if (!out) {
        return false;
    }
    e->out = out;
    e->out[e->n_out++] = id;
    return true;
}

static bool buf_put(struct enc *e, const void *p, size_t n)
{
    char *buf = pd_grow_array(e->buf, &e->cap_buf, e->n_buf + n, 1);
    if (!buf) {
        return false;
    }
    e->buf = buf;
    memcpy(e->buf + e->n_buf, p, n);
    e->n_buf += n;
    return true;
}

static bool frag_push(struct frag **v, size_t *n, size_t *cap, struct frag f)
{
    struct frag *nv = pd_grow_array(*v, cap, *n + 1, sizeof **v);
    if (!nv) {
        return false;
    }
    *v = nv;
    (*v)[(*n)++] = f;
    return true;
}

/* Cuts special tokens out of text[0..len) into e->frags. */
static bool partition(struct enc *e, const char *text, size_t len, bool parse_special)
{
    const struct pd_tok *t = e->t;
    e->n_frags = 0;
    if (len == 0) {
        return true;
    }
    if (!frag_push(&e->frags, &e->n_frags, &e->cap_frags, (struct frag){0, len, NONE})) {
        return false;
    }
    for (size_t k = 0; k < t->n_specials; k++) {
        int32_t id = t->specials[k];
        uint8_t type = t->tok[id].type;
        if (!parse_special && type != PD_TOK_TYPE_USER_DEFINED) {
            continue;
        }
        const char *st = tok_text(t, (uint32_t)id);
        size_t sn = t->tok[id].text_len;
        size_t n2 = 0;
        bool hit_any = false;
        for (size_t f = 0; f < e->n_frags; f++) {
            struct frag fr = e->frags[f];
            if (fr.id != NONE) {
                if (!frag_push(&e->frags2, &n2, &e->cap_frags2, fr)) {
                    return false;
                }
                continue;
            }
            size_t p = fr.off;
            size_t end = fr.off + fr.len;
            const char *hit;
            while (p < end && (hit = memmem(text + p, end - p, st, sn)) != NULL) {
                size_t at = (size_t)(hit - text);
                hit_any = true;
                if (at > p && !frag_push(&e->frags2, &n2, &e->cap_frags2,
                                         (struct frag){p, at - p, NONE})) {
                    return false;
                }
                if (!frag_push(&e->frags2, &n2, &e->cap_frags2, (struct frag){0, 0, id})) {
                    return false;
                }
                p = at + sn;
            }
            if (p < end &&
                !frag_push(&e->frags2, &n2, &e->cap_frags2, (struct frag){p, end - p, NONE})) {
                return false;
            }
        }
        if (hit_any) { /* swap the lists */
            struct frag *tmp = e->frags;
            size_t tcap = e->cap_frags;
            e->frags = e->frags2;
            e->cap_frags = e->cap_frags2;
            e->frags2 = tmp;
            e->cap_frags2 = tcap;
            e->n_frags = n2;
        }
    }
    return true;
}

/* ---- the merge heap ---- */

static bool bigram_before(const struct bigram *a, const struct bigram *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static bool heap_push(struct enc *e, struct bigram b)
{
    struct bigram *heap = pd_grow_array(e->heap, &e->cap_heap, e->n_heap + 1, sizeof *e->heap);
    if (!heap) {
        return false;
    }
    e->heap = heap;
    size_t i = e->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_before(&b, &e->heap[parent])) {
            break;
        }
        e->heap[i] = e->heap[parent];
        i = parent;
    }
    e->heap[i] = b;
    return true;
}

static struct bigram heap_pop(struct enc *e)
{
    struct bigram top = e->heap[0];
    struct bigram last = e->heap[--e->n_heap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= e->n_heap) {
            break;
        }
        if (c + 1 < e->n_heap && bigram_before(&e->heap[c + 1], &e->heap[c])) {
            c++;
        }
        if (!bigram_before(&e->heap[c], &last)) {
            break;
        }
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (e->n_heap > 0) {
        e->heap[i] = last;
    }
    return top;
}

/* Splits e->buf into symbols by UTF-8 lead byte (continuation and invalid bytes count as
 * 1-byte units; the last unit is cut at the end). */
static bool make_symbols(struct enc *e, bool with_ids)
{
    static const uint8_t lead_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    e->n_syms = 0;
    size_t off = 0;
    while (off < e->n_buf) {
        size_t len = lead_len[(unsigned char)e->buf[off] >> 4];
        if (len > e->n_buf - off) {
            len = e->n_buf - off;
        }
        struct sym *syms = pd_grow_array(e->syms, &e->cap_syms, e->n_syms + 1, sizeof *e->syms);
        if (!syms) {
            return false;
        }
        e->syms = syms;
        int32_t idx = (int32_t)e->n_syms;
        struct sym s = {idx - 1, off + len == e->n_buf ? NONE : idx + 1, (uint32_t)off,
                        (uint32_t)len, NONE};
        if (with_ids) {
            s.id = lookup(e->t, e->buf + off, len);
        }
        e->syms[e->n_syms++] = s;
        off += len;
    }
    return true;
}

/* ---- SPM ---- */

static bool spm_try_pair(struct enc *e, int32_t left, int32_t right)
{
    if (left == NONE || right == NONE) {
        return true;
    }
    const struct sym *l = &e->syms[left];
    const struct sym *r = &e->syms[right];
    int32_t id = lookup(e->t, e->buf + l->off, (size_t)l->n + r->n);
    if (id == NONE) {
        return true;
    }
    struct bigram b = {-(double)e->t->tok[id].score, left, right, l->n + r->n};
    return heap_push(e, b);
}

static enum pd_status spm_fragment(struct enc *e, const char *text, size_t len, bool prefix,
                                   struct pd_err *err)
{
    const struct pd_tok *t = e->t;
    e->n_buf = 0;
    if (prefix && !buf_put(e, SPM_SPACE, SPM_SPACE_LEN)) {
        return PD_ENOMEM;
    }
    for (size_t i = 0; i < len; i++) {
        bool ok = text[i] == ' ' ? buf_put(e, SPM_SPACE, SPM_SPACE_LEN) : buf_put(e, text + i, 1);
        if (!ok) {
            return PD_ENOMEM;
        }
    }
    if (e->n_buf > UINT32_MAX / 2 || !make_symbols(e, false)) {
        return PD_ENOMEM;
    }
    e->n_heap = 0;
    for (size_t i = 1; i < e->n_syms; i++) {
        if (!spm_try_pair(e, (int32_t)i - 1, (int32_t)i)) {
            return PD_ENOMEM;
        }
    }
    while (e->n_heap > 0) {
        struct bigram b = heap_pop(e);
        struct sym *l = &e->syms[b.left];
        struct sym *r = &e->syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) {
            continue; /* stale */
        }
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next != NONE) {
            e->syms[r->next].prev = b.left;
        }
        if (!spm_try_pair(e, l->prev, b.left) || !spm_try_pair(e, b.left, l->next)) {
            return PD_ENOMEM;
        }
    }
    for (int32_t i = e->n_syms ? 0 : NONE; i != NONE; i = e->syms[i].next) {
        const struct sym *s = &e->syms[i];
        int32_t id = lookup(t, e->buf + s->off, s->n);
        if (id != NONE) {
            if (!push_id(e, id)) {
                return PD_ENOMEM;
            }
            continue;
        }
        for (uint32_t k = 0; k < s->n; k++) {
            unsigned char c = (unsigned char)e->buf[s->off + k];
            if (t->byte_id[c] == NONE) {
                return pd_err_set(err, PD_EFORMAT,
                                  "tokenizer: the vocabulary has no byte token <0x%02X> for "
                                  "a character it cannot spell",
                                  c);
            }
            if (!push_id(e, t->byte_id[c])) {
                return PD_ENOMEM;
            }
        }
    }
    return PD_OK;
}

/* ---- BPE pre-tokenizer passes ---- */

/* One segment [ini, end) of the fragment's code points, as the splitters see it: outside
 * the segment a position has no code point and no class. */
struct seg {
    const uint32_t *cp;
    const uint8_t *cls;
    size_t ini, end;
    size_t *out; /* piece lengths appended here */
    size_t n_out, cap_out;
};

static uint32_t seg_cp(const struct seg *s, size_t pos)
{
    return pos >= s->ini && pos < s->end ? s->cp[pos] : OUT_OF_RANGE;
}

static unsigned seg_cls(const struct seg *s, size_t pos)
{
    return pos >= s->ini && pos < s->end ? s->cls[pos] : 0;
}

static bool seg_in(const struct seg *s, size_t pos)
{
    return pos >= s->ini && pos < s->end;
}

static bool seg_emit(struct seg *s, size_t len)
{
    if (len == 0) {
        return true;
    }
    size_t *out = pd_grow_array(s->out, &s->cap_out, s->n_out + 1, sizeof *s->out);
    if (!out) {
        return false;
    }
    s->out = out;
    s->out[s->n_out++] = len;
    return true;
}

static uint32_t ascii_lower(uint32_t c)
{
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

/* Length of a contraction ('s 't 're 've 'm 'll 'd) at pos, 0 if none. The generator of
 * the class table checks that ASCII case folding is exact here. */
static size_t contraction(const struct seg *s, size_t pos, bool fold)
{
    if (seg_cp(s, pos) != '\'' || pos + 1 >= s->end) {
        return 0;
    }
    uint32_t a = seg_cp(s, pos + 1);
    a = fold ? ascii_lower(a) : a;
    if (a == 's' || a == 't' || a == 'm' || a == 'd') {
        return 2;
    }
    if (pos + 2 >= s->end) {
        return 0;
    }
    uint32_t b = seg_cp(s, pos + 2);
    b = fold ? ascii_lower(b) : b;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
        return 3;
    }
    return 0;
}

#define C_LNS (PD_UNICODE_LETTER | PD_UNICODE_NUMBER | PD_UNICODE_SPACE)

/* Runs of white space at pos: the count, and the end of the last \r or \n in it (0 when
 * there is none). */
static size_t space_run(const struct seg *s, size_t pos, size_t *last_rn_end)
{
    size_t n = 0;
    *last_rn_end = 0;
    while (seg_cls(s, pos + n) & PD_UNICODE_SPACE) {
        uint32_t c = seg_cp(s, pos + n);
        if (c == '\r' || c == '\n') {
            *last_rn_end = pos + n + 1;
        }
        n++;
    }
    return n;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static bool split_gpt2(struct seg *s)
{
    size_t pos = s->ini;
    while (pos < s->end) {
        uint32_t c = seg_cp(s, pos);
        size_t k = contraction(s, pos, false);
        if (k) {
            if (!seg_emit(s, k)) {
                return false;
            }
            pos += k;
            continue;
        }
        bool sp = c == ' ';
        unsigned f2 = sp ? seg_cls(s, pos + 1) : seg_cls(s, pos);
        bool in2 = sp ? seg_in(s, pos + 1) : true;
        size_t start = pos;
        if (f2 & PD_UNICODE_LETTER) {
            pos += sp;
            while (seg_cls(s, pos) & PD_UNICODE_LETTER) {
                pos++;
            }
        } else if (f2 & PD_UNICODE_NUMBER) {
            pos += sp;
            while (seg_cls(s, pos) & PD_UNICODE_NUMBER) {
                pos++;
            }
        } else if (!(f2 & C_LNS) && in2) {
            pos += sp;
            while (seg_in(s, pos) && !(seg_cls(s, pos) & C_LNS)) {
                pos++;
            }
        } else {
            size_t last_rn;
            size_t n_ws = space_run(s, pos, &last_rn);
            if (n_ws > 1 && seg_in(s, pos + n_ws)) {
                pos += n_ws - 1; /* \s+(?!\S): leave one space for the next piece */
            } else if (n_ws > 0) {
                pos += n_ws;
            } else {
                pos++;
            }
        }
        if (!seg_emit(s, pos - start)) {
            return false;
        }
    }
    return true;
}

/* Qwen2 (digits_max 1) and Llama 3 (digits_max 3):
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,digits_max}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static bool split_llama3(struct seg *s, size_t digits_max)
{
    size_t pos = s->ini;
    while (pos < s->end) {
        uint32_t c = seg_cp(s, pos);
        unsigned f = seg_cls(s, pos);
        size_t k = contraction(s, pos, true);
        if (k) {
            if (!seg_emit(s, k)) {
                return false;
            }
            pos += k;
            continue;
        }
        size_t start = pos;
        if (!(c == '\r' || c == '\n' || (f & PD_UNICODE_NUMBER)) &&
            ((f & PD_UNICODE_LETTER) || (seg_cls(s, pos + 1) & PD_UNICODE_LETTER))) {
            pos++; /* the optional lead character, or the first letter */
            while (seg_cls(s, pos) & PD_UNICODE_LETTER) {
                pos++;
            }
            if (!seg_emit(s, pos - start)) {
                return false;
            }
            continue;
        }
        if (f & PD_UNICODE_NUMBER) {
            while (seg_cls(s, pos) & PD_UNICODE_NUMBER) {
                pos++;
                if (pos - start >= digits_max) {
                    break;
                }
            }
            if (!seg_emit(s, pos - start)) {
                return false;
            }
            continue;
        }
        bool sp = c == ' ';
        unsigned f2 = sp ? seg_cls(s, pos + 1) : f;
        if (!(f2 & C_LNS)) {
            pos += sp;
            while (seg_in(s, pos) && !(seg_cls(s, pos) & C_LNS)) {
                pos++;
            }
            while (seg_cp(s, pos) == '\r' || seg_cp(s, pos) == '\n') {
                pos++;
            }
        } else {
            size_t last_rn;
            size_t n_ws = space_run(s, pos, &last_rn);
            if (last_rn > 0) {
                pos = last_rn; /* \s*[\r\n]+ */
            } else if (n_ws > 1 && seg_in(s, pos + n_ws)) {
                pos += n_ws - 1; /* \s+(?!\S) */
            } else if (n_ws > 0) {
                pos += n_ws;
            } else {
                pos++;
            }
        }
        if (!seg_emit(s, pos - start)) {
            return false;
        }
    }
    return true;
}

/* Membership in [\p{P}\$\+<=>\^~\|], the first pass of the default pre-tokenizer. */
static bool default_punct(uint32_t c, unsigned cls)
{
    if (c < 0x80) {
        return strchr("!\"#%&'()*,-./:;?@[\\]_{}$+<=>^~|", (int)c) != NULL && c != 0;
    }
    return (cls & PD_UNICODE_PUNCT) != 0;
}

/* Maximal runs of one class alternate with runs of the rest: [\p{P}...]+ (which 0) or
 * \p{N}+ (which 1). */
static bool split_runs(struct seg *s, int which)
{
    size_t pos = s->ini;
    while (pos < s->end) {
        size_t start = pos;
        bool in = which == 0 ? default_punct(s->cp[pos], s->cls[pos])
                             : (s->cls[pos] & PD_UNICODE_NUMBER) != 0;
        while (pos < s->end && in == (which == 0 ? default_punct(s->cp[pos], s->cls[pos])
                                                 : (s->cls[pos] & PD_UNICODE_NUMBER) != 0)) {
            pos++;
        }
        if (!seg_emit(s, pos - start)) {
            return false;
        }
    }
    return true;
}

/* [0-9][0-9][0-9]: ASCII digit triples from the left; what lies between stays whole. */
static bool split_digit3(struct seg *s)
{
    size_t gap = s->ini;
    size_t pos = s->ini;
    while (pos + 3 <= s->end) {
        bool d = true;
        for (size_t k = 0; k < 3; k++) {
            d = d && s->cp[pos + k] >= '0' && s->cp[pos + k] <= '9';
        }
        if (!d) {
            pos++;
            continue;
        }
        if (!seg_emit(s, pos - gap) || !seg_emit(s, 3)) {
            return false;
        }
        pos += 3;
        gap = pos;
    }
    return seg_emit(s, s->end - gap);
}

enum split_pass { PASS_GPT2, PASS_QWEN2, PASS_LLAMA3, PASS_PUNCT, PASS_NUMBERS, PASS_DIGIT3 };

struct pre_passes {
    enum split_pass pass[4];
    size_t n;
};

static const struct pre_passes pre_passes[PD_TOK_PRE_COUNT] = {
    [PD_TOK_PRE_NONE] = {{PASS_GPT2}, 0},
    [PD_TOK_PRE_DEFAULT] = {{PASS_PUNCT, PASS_GPT2, PASS_NUMBERS, PASS_DIGIT3}, 4},
    [PD_TOK_PRE_GPT2] = {{PASS_GPT2}, 1},
    [PD_TOK_PRE_LLAMA3] = {{PASS_LLAMA3}, 1},
    [PD_TOK_PRE_QWEN2] = {{PASS_QWEN2}, 1},
};
_Static_assert(sizeof pre_passes / sizeof pre_passes[0] == PD_TOK_PRE_COUNT, "pre passes");

static bool run_pass(struct seg *s, enum split_pass p)
{
    switch (p) {
    case PASS_GPT2:
        return split_gpt2(s);
    case PASS_QWEN2:
        return split_llama3(s, 1);
    case PASS_LLAMA3:
        return split_llama3(s, 3);
    case PASS_PUNCT:
        return split_runs(s, 0);
    case PASS_NUMBERS:
        return split_runs(s, 1);
    case PASS_DIGIT3:
        return split_digit3(s);
    }
    return false;
}

/* ---- BPE ---- */

static bool bpe_try_pair(struct enc *e, int32_t left, int32_t right)
{
    if (left == NONE || right == NONE) {
        return true;
    }
    const struct sym *l = &e->syms[left];
    const struct sym *r = &e->syms[right];
    if (l->id == NONE || r->id == NONE) {
        return true;
    }
    const struct merge_slot *m = merge_find(e->t, l->id, r->id);
    if (!m) {
        return true;
    }
    struct bigram b = {(double)m->rank, left, right, l->n + r->n};
    return heap_push(e, b);
}

/* Merges one pre-tokenized piece (code points cps[0..n)) and appends its ids. */
static enum pd_status bpe_piece(struct enc *e, const uint32_t *cps, size_t n)
{
    const struct pd_tok *t = e->t;
    e->n_buf = 0;
    for (size_t i = 0; i < n; i++) {
        char u[4];
        size_t ul = pd_unicode_encode(cps[i], u);
        for (size_t k = 0; k < ul; k++) {
            unsigned char b = (unsigned char)u[k];
            if (!buf_put(e, t->gpt2_utf8[b], t->gpt2_len[b])) {
                return PD_ENOMEM;
            }
        }
    }
    if (e->n_buf > UINT32_MAX / 2) {
        return PD_ENOMEM;
    }
    if (t->ignore_merges) {
        int32_t id = lookup(t, e->buf, e->n_buf);
        if (id != NONE) {
            return push_id(e, id) ? PD_OK : PD_ENOMEM;
        }
    }
    if (!make_symbols(e, true)) {
        return PD_ENOMEM;
    }
    e->n_heap = 0;
    for (size_t i = 1; i < e->n_syms; i++) {
        if (!bpe_try_pair(e, (int32_t)i - 1, (int32_t)i)) {
            return PD_ENOMEM;
        }
    }
    while (e->n_heap > 0) {
        struct bigram b = heap_pop(e);
        struct sym *l = &e->syms[b.left];
        struct sym *r = &e->syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) {
            continue; /* stale */
        }
        l->id = merge_find(t, l->id, r->id)->result;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next != NONE) {
            e->syms[r->next].prev = b.left;
        }
        if (!bpe_try_pair(e, l->prev, b.left) || !bpe_try_pair(e, b.left, l->next)) {
            return PD_ENOMEM;
        }
    }
    for (int32_t i = e->n_syms ? 0 : NONE; i != NONE; i = e->syms[i].next) {
        const struct sym *s = &e->syms[i];
        if (s->id != NONE) {
            if (!push_id(e, s->id)) {
                return PD_ENOMEM;
            }
            continue;
        }
        /* Not a token: each byte of the encoded text on its own, where that is a token. */
        for (uint32_t k = 0; k < s->n; k++) {
            int32_t id = lookup(t, e->buf + s->off + k, 1);
            if (id != NONE && !push_id(e, id)) {
                return PD_ENOMEM;
            }
        }
    }
    return PD_OK;
}

static enum pd_status bpe_fragment(struct enc *e, const char *text, size_t len)
{
    const struct pd_tok *t = e->t;
    uint32_t *cps = pd_grow_array(e->cps, &e->cap_cps, len, sizeof *e->cps);
    if (!cps) {
        return PD_ENOMEM;
    }
    e->cps = cps;
    uint8_t *cls = pd_grow_array(e->cls, &e->cap_cls, len, sizeof *e->cls);
    if (!cls) {
        return PD_ENOMEM;
    }
    e->cls = cls;
    e->n_cps = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += pd_unicode_decode_lenient(text + i, len - i, &cp);
        e->cps[e->n_cps] = cp;
        e->cls[e->n_cps] = (uint8_t)pd_unicode_class(cp);
        e->n_cps++;
    }
    /* Pieces, as code point counts, refined pass by pass. */
    e->n_offs = 0;
    size_t *offs = pd_grow_array(e->offs, &e->cap_offs, 1, sizeof *e->offs);
    if (!offs) {
        return PD_ENOMEM;
    }
    e->offs = offs;
    e->offs[e->n_offs++] = e->n_cps;
    const struct pre_passes *pp = &pre_passes[t->pre];
    for (size_t p = 0; p < pp->n; p++) {
        struct seg s = {e->cps, e->cls, 0, 0, e->offs2, 0, e->cap_offs2};
        size_t start = 0;
        bool ok = true;
        for (size_t i = 0; i < e->n_offs && ok; i++) {
            s.ini = start;
            s.end = start + e->offs[i];
            start = s.end;
            ok = run_pass(&s, pp->pass[p]);
        }
        e->offs2 = s.out;
        e->cap_offs2 = s.cap_out;
        if (!ok) {
            return PD_ENOMEM;
        }
        size_t *tmp = e->offs;
        size_t tcap = e->cap_offs;
        e->offs = e->offs2;
        e->cap_offs = e->cap_offs2;
        e->n_offs = s.n_out;
        e->offs2 = tmp;
        e->cap_offs2 = tcap;
    }
    size_t start = 0;
    for (size_t i = 0; i < e->n_offs; i++) {
        enum pd_status rc = bpe_piece(e, e->cps + start, e->offs[i]);
        if (rc != PD_OK) {
            return rc;
        }
        start += e->offs[i];
    }
    return PD_OK;
}

/* first_prefix: SPM's space prefix before the first text run (false for text that
 * continues a sequence). */
static enum pd_status encode(const struct pd_tok *t, const char *text, size_t len, bool add_bos,
                             bool parse_special, bool first_prefix, int32_t **ids, size_t *n,
                             struct pd_err *err)
{
    *ids = NULL;
    *n = 0;
    if (len > 0 && !text) {
        return pd_err_set(err, PD_EINVAL, "tokenizer: NULL text");
    }
    if (add_bos && t->bos == NONE) {
        return pd_err_set(err, PD_EINVAL, "tokenizer: BOS requested but the vocabulary has none");
    }
    struct enc e;
    memset(&e, 0, sizeof e);
    e.t = t;
    enum pd_status rc = PD_OK;
    if ((add_bos && !push_id(&e, t->bos)) || !partition(&e, text, len, parse_special)) {
        rc = PD_ENOMEM;
        goto done;
    }
    bool prev_special = first_prefix; /* SPM: a text run after a special token (or the
                                       * start) gets the space prefix */
    for (size_t f = 0; f < e.n_frags && rc == PD_OK; f++) {
        struct frag fr = e.frags[f];
        if (fr.id != NONE) {
            rc = push_id(&e, fr.id) ? PD_OK : PD_ENOMEM;
            prev_special = true;
        } else if (t->model == PD_TOK_MODEL_SPM) {
            rc = spm_fragment(&e, text + fr.off, fr.len, t->add_space_prefix && prev_special, err);
            prev_special = false;
        } else {
            rc = bpe_fragment(&e, text + fr.off, fr.len);
        }
    }
done:
    if (rc == PD_ENOMEM) {
        pd_err_set(err, PD_ENOMEM, "tokenizer: out of memory");
    }
    if (rc == PD_OK) {
        *ids = e.out;
        *n = e.n_out;
        e.out = NULL;
    }
    enc_free(&e);
    return rc;
}

enum pd_status pd_tok_encode(const struct pd_tok *t, const char *text, size_t len, bool add_bos,
                             bool parse_special, int32_t **ids, size_t *n, struct pd_err *err)
{
    return encode(t, text, len, add_bos, parse_special, true, ids, n, err);
}

enum pd_status pd_tok_encode_cont(const struct pd_tok *t, const char *text, size_t len,
                                  bool parse_special, int32_t **ids, size_t *n,
                                  struct pd_err *err)
{
    return encode(t, text, len, false, parse_special, false, ids, n, err);
}

/* ---- decode and accessors ---- */

static bool valid_id(const struct pd_tok *t, int32_t id)
{
    return id >= 0 && (uint32_t)id < t->n_vocab;
}

const char *pd_tok_piece(const struct pd_tok *t, int32_t id, size_t *len)
{
    if (!valid_id(t, id)) {
        *len = 0;
        return NULL;
    }
    *len = t->tok[id].piece_len;
    return t->pieces + t->tok[id].piece_off;
}

enum pd_status pd_tok_decode(const struct pd_tok *t, const int32_t *ids, size_t n,
                             struct pd_buf *out, struct pd_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!valid_id(t, ids[i])) {
            return pd_err_set(err, PD_EINVAL, "tokenizer: ids[%zu] = %d is not a token (0..%u)", i,
                              ids[i], t->n_vocab - 1);
        }
        const struct tok_entry *e = &t->tok[ids[i]];
        if (e->piece_len && !pd_buf_append(out, t->pieces + e->piece_off, e->piece_len)) {
            return pd_err_set(err, PD_ENOMEM, "tokenizer: out of memory");
        }
    }
    return PD_OK;
}

const char *pd_tok_text(const struct pd_tok *t, int32_t id, size_t *len)
{
    if (!valid_id(t, id)) {
        *len = 0;
        return NULL;
    }
    *len = t->tok[id].text_len;
    return tok_text(t, (uint32_t)id);
}

int32_t pd_tok_find(const struct pd_tok *t, const char *s, size_t len)
{
    return lookup(t, s, len);
}

uint32_t pd_tok_n_vocab(const struct pd_tok *t)
{
    return t->n_vocab;
}

enum pd_tok_model pd_tok_model(const struct pd_tok *t)
{
    return t->model;
}

enum pd_tok_pre pd_tok_pre(const struct pd_tok *t)
{
    return t->pre;
}

const char *pd_tok_model_name(enum pd_tok_model m)
{
    return (unsigned)m < PD_TOK_MODEL_COUNT ? model_names[m] : "?";
}

const char *pd_tok_pre_name(enum pd_tok_pre p)
{
    return (unsigned)p < PD_TOK_PRE_COUNT ? pre_names[p] : "?";
}

int32_t pd_tok_bos(const struct pd_tok *t)
{
    return t->bos;
}

int32_t pd_tok_eos(const struct pd_tok *t)
{
    return t->eos;
}

int32_t pd_tok_eot(const struct pd_tok *t)
{
    return t->eot;
}

int32_t pd_tok_unk(const struct pd_tok *t)
{
    return t->unk;
}

int32_t pd_tok_pad(const struct pd_tok *t)
{
    return t->pad;
}

bool pd_tok_add_bos(const struct pd_tok *t)
{
    return t->add_bos;
}

enum pd_tok_type pd_tok_type(const struct pd_tok *t, int32_t id)
{
    return valid_id(t, id) ? (enum pd_tok_type)t->tok[id].type : PD_TOK_TYPE_UNDEFINED;
}

bool pd_tok_is_control(const struct pd_tok *t, int32_t id)
{
    return pd_tok_type(t, id) == PD_TOK_TYPE_CONTROL;
}

bool pd_tok_is_special(const struct pd_tok *t, int32_t id)
{
    return valid_id(t, id) && is_special_type(t->tok[id].type);
}

bool pd_tok_is_eog(const struct pd_tok *t, int32_t id)
{
    for (size_t i = 0; i < t->n_eog; i++) {
        if (t->eog[i] == id) {
            return true;
        }
    }
    return false;
}

/* ---- streaming ---- */

void pd_tok_stream_init(struct pd_tok_stream *s)
{
    pd_buf_init(&s->scratch);
}

void pd_tok_stream_deinit(struct pd_tok_stream *s)
{
    pd_buf_deinit(&s->scratch);
}

/* Appends s[0..n) to out with every byte that does not start a valid sequence replaced by
 * U+FFFD. */
static bool append_sanitized(struct pd_buf *out, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        uint32_t cp;
        size_t l;
        while (run < n && (l = pd_utf8_decode(s + run, n - run, &cp)) > 0) {
            run += l;
        }
        if (run > i && !pd_buf_append(out, s + i, run - i)) {
            return false;
        }
        if (run < n) {
            if (!pd_buf_append(out, "\xEF\xBF\xBD", 3)) {
                return false;
            }
            run++;
        }
        i = run;
    }
    return true;
}

enum pd_status pd_tok_stream_push(struct pd_tok_stream *s, const struct pd_tok *t, int32_t id,
                                  struct pd_buf *out, struct pd_err *err)
{
    size_t len;
    const char *p = pd_tok_piece(t, id, &len);
    if (!p) {
        return pd_err_set(err, PD_EINVAL, "tokenizer: %d is not a token", id);
    }
    if (len && !pd_buf_append(&s->scratch, p, len)) {
        return pd_err_set(err, PD_ENOMEM, "tokenizer: out of memory");
    }
    size_t tail = pd_utf8_incomplete_tail(s->scratch.data, s->scratch.len);
    size_t done = s->scratch.len - tail;
    if (done && !append_sanitized(out, s->scratch.data, done)) {
        return pd_err_set(err, PD_ENOMEM, "tokenizer: out of memory");
    }
    memmove(s->scratch.data, s->scratch.data + done, tail);
    s->scratch.len = tail;
    return PD_OK;
}

enum pd_status pd_tok_stream_flush(struct pd_tok_stream *s, struct pd_buf *out,
                                   struct pd_err *err)
{
    if (s->scratch.len && !append_sanitized(out, s->scratch.data, s->scratch.len)) {
        return pd_err_set(err, PD_ENOMEM, "tokenizer: out of memory");
    }
    s->scratch.len = 0;
    return PD_OK;
}
