/* gguf.c - the GGUF v2/v3 reader: maps a file, validates every byte it will use, and
 * indexes the metadata and the tensor table.
 *
 * DESIGN
 * Parsing is a single forward pass over the mapping with a cursor (struct rd) whose every
 * read first checks the bytes remaining, so nothing is read out of bounds however the
 * counts are forged. Each count is also bounded before anything is allocated from it: by
 * a hard maximum and by the smallest number of bytes its items can occupy, so a 100-byte
 * file cannot make the reader allocate gigabytes. Sizes and offsets go through
 * pd_mul/pd_add. After the pass, duplicates (keys, tensor names) and tensor overlaps are
 * found by sorting index arrays, O(n log n), so hostile files cannot make open quadratic.
 * Metadata strings, array payloads and tensor data stay in the mapping; only the kv and
 * tensor arrays and the index of each string array are allocated. See docs/gguf.md for
 * the layout and the full list of rules. */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mem.h"
#include "utf8.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian u32 */
#define GGUF_HEADER_SIZE 24u
#define GGUF_ALIGNMENT_DEFAULT 32u
#define GGUF_N_KV_MAX (1u << 20)
#define GGUF_N_TENSORS_MAX (1u << 20)
#define GGUF_STR_MAX (1u << 30)
#define GGUF_ARR_MAX (1u << 30)
/* Smallest encodings, used to bound counts by the bytes remaining. */
#define GGUF_KV_MIN_BYTES (8u + 1u + 4u + 1u)                 /* key len, 1-byte key, type, u8 */
#define GGUF_TENSOR_INFO_MIN_BYTES (8u + 1u + 4u + 8u + 4u + 8u) /* name, n_dims, ne, type, off */
#define NAME_SHOWN_MAX 80

struct vtype_info {
    const char *name;
    uint8_t size; /* bytes of a scalar; 0 for string and array */
};

static const struct vtype_info vtypes[PD_GGUF_VTYPE_COUNT] = {
    [PD_GGUF_UINT8] = {"uint8", 1},     [PD_GGUF_INT8] = {"int8", 1},
    [PD_GGUF_UINT16] = {"uint16", 2},   [PD_GGUF_INT16] = {"int16", 2},
    [PD_GGUF_UINT32] = {"uint32", 4},   [PD_GGUF_INT32] = {"int32", 4},
    [PD_GGUF_FLOAT32] = {"float32", 4}, [PD_GGUF_BOOL] = {"bool", 1},
    [PD_GGUF_STRING] = {"string", 0},   [PD_GGUF_ARRAY] = {"array", 0},
    [PD_GGUF_UINT64] = {"uint64", 8},   [PD_GGUF_INT64] = {"int64", 8},
    [PD_GGUF_FLOAT64] = {"float64", 8},
};
_Static_assert(sizeof vtypes / sizeof vtypes[0] == PD_GGUF_VTYPE_COUNT, "value type table");

/* Names of GGUF tensor type ids ponder does not read, so a rejection can say what the file
 * holds ("q4_1") rather than only a number. Gaps are ids that were never assigned. */
static const char *const ggml_type_names[] = {
    [0] = "f32",     [1] = "f16",     [2] = "q4_0",    [3] = "q4_1",    [6] = "q5_0",
    [7] = "q5_1",    [8] = "q8_0",    [9] = "q8_1",    [10] = "q2_K",   [11] = "q3_K",
    [12] = "q4_K",   [13] = "q5_K",   [14] = "q6_K",   [15] = "q8_K",   [16] = "iq2_xxs",
    [17] = "iq2_xs", [18] = "iq3_xxs", [19] = "iq1_s", [20] = "iq4_nl", [21] = "iq3_s",
    [22] = "iq2_s",  [23] = "iq4_xs", [24] = "i8",     [25] = "i16",    [26] = "i32",
    [27] = "i64",    [28] = "f64",    [29] = "iq1_m",  [30] = "bf16",
};

/* ---- the cursor ---- */

struct rd {
    const uint8_t *p;
    uint64_t size;
    uint64_t pos;
    const char *name; /* file name for messages */
    struct pd_err *err;
};

/* Formats "<name>: <message>" into err and returns st. */
static enum pd_status fail(struct rd *r, enum pd_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum pd_status fail(struct rd *r, enum pd_status st, const char *fmt, ...)
{
    if (r->err) {
        char msg[PD_ERR_MSG_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        pd_err_set(r->err, st, "%s: %s", r->name, msg);
    }
    return st;
}

static uint64_t left(const struct rd *r)
{
    return r->size - r->pos;
}

static uint64_t le(const uint8_t *p, unsigned width)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < width; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

/* Checks that n bytes remain for `field`. */
static enum pd_status need(struct rd *r, uint64_t n, const char *field)
{
    if (n > left(r)) {
        return fail(r, PD_EFORMAT, "%s: truncated at offset %llu (needs %llu bytes, %llu left)",
                    field, (unsigned long long)r->pos, (unsigned long long)n,
                    (unsigned long long)left(r));
    }
    return PD_OK;
}

static enum pd_status rd_u32(struct rd *r, uint32_t *v, const char *field)
{
    enum pd_status rc = need(r, 4, field);
    if (rc == PD_OK) {
        *v = (uint32_t)le(r->p + r->pos, 4);
        r->pos += 4;
    }
    return rc;
}

static enum pd_status rd_u64(struct rd *r, uint64_t *v, const char *field)
{
    enum pd_status rc = need(r, 8, field);
    if (rc == PD_OK) {
        *v = le(r->p + r->pos, 8);
        r->pos += 8;
    }
    return rc;
}

/* Reads a string (u64 length + bytes) that stays in the mapping. */
static enum pd_status rd_str(struct rd *r, struct pd_gguf_str *s, const char *field)
{
    uint64_t n;
    enum pd_status rc = rd_u64(r, &n, field);
    if (rc != PD_OK) {
        return rc;
    }
    if (n > GGUF_STR_MAX) {
        return fail(r, PD_EFORMAT, "%s: string length %llu exceeds the maximum %u", field,
                    (unsigned long long)n, GGUF_STR_MAX);
    }
    if (n > left(r)) {
        return fail(r, PD_EFORMAT, "%s: string length %llu runs past end of file (%llu left)",
                    field, (unsigned long long)n, (unsigned long long)left(r));
    }
    s->s = (const char *)r->p + r->pos;
    s->n = n;
    r->pos += n;
    return PD_OK;
}

/* Copies a name from the file into out for a message: at most NAME_SHOWN_MAX bytes,
 * non-printable bytes as '?', "..." when cut. */
static const char *shown(char out[NAME_SHOWN_MAX + 4], struct pd_gguf_str s)
{
    size_t n = s.n < NAME_SHOWN_MAX ? (size_t)s.n : NAME_SHOWN_MAX;
    /* Non-ASCII bytes are kept only when they form valid UTF-8 (cut at a whole char). */
    bool utf8_ok = pd_utf8_valid(s.s, (size_t)s.n);
    if (utf8_ok) {
        n -= pd_utf8_incomplete_tail(s.s, n);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.s[i];
        bool bad = c < 0x20 || c == 0x7F || c == '\'' || (c >= 0x80 && !utf8_ok);
        out[i] = bad ? '?' : (char)c;
    }
    if (s.n > NAME_SHOWN_MAX) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}

/* Reads a key or tensor name: non-empty, valid UTF-8, no NUL (lookups use C strings). */
static enum pd_status rd_name(struct rd *r, struct pd_gguf_str *out, const char *field)
{
    enum pd_status rc = rd_str(r, out, field);
    if (rc != PD_OK) {
        return rc;
    }
    struct pd_gguf_str s = *out;
    char buf[NAME_SHOWN_MAX + 4];
    if (s.n == 0) {
        return fail(r, PD_EFORMAT, "%s: empty", field);
    }
    if (memchr(s.s, '\0', (size_t)s.n)) {
        return fail(r, PD_EFORMAT, "%s '%s': contains a NUL byte", field, shown(buf, s));
    }
    if (!pd_utf8_valid(s.s, (size_t)s.n)) {
        return fail(r, PD_EFORMAT, "%s '%s': not valid UTF-8", field, shown(buf, s));
    }
    return PD_OK;
}

/* ---- metadata ---- */

static uint64_t sign_extend(uint64_t v, unsigned width)
{
    unsigned shift = 64 - 8 * width;
    return (uint64_t)((int64_t)(v << shift) >> shift);
}

/* Reads one scalar of type t (not string/array) into kv->v. */
static enum pd_status rd_scalar(struct rd *r, enum pd_gguf_vtype t, struct pd_gguf_kv *kv,
                                const char *field)
{
    unsigned width = vtypes[t].size;
    enum pd_status rc = need(r, width, field);
    if (rc != PD_OK) {
        return rc;
    }
    uint64_t bits = le(r->p + r->pos, width);
    switch (t) {
    case PD_GGUF_INT8:
    case PD_GGUF_INT16:
    case PD_GGUF_INT32:
    case PD_GGUF_INT64:
        kv->v.i = (int64_t)sign_extend(bits, width);
        break;
    case PD_GGUF_FLOAT32: {
        uint32_t b32 = (uint32_t)bits;
        float f;
        memcpy(&f, &b32, 4);
        kv->v.f = f;
        break;
    }
    case PD_GGUF_FLOAT64:
        memcpy(&kv->v.f, &bits, 8);
        break;
    case PD_GGUF_BOOL:
        if (bits > 1) {
            return fail(r, PD_EFORMAT, "%s: bool value %llu is not 0 or 1", field,
                        (unsigned long long)bits);
        }
        kv->v.u = bits;
        break;
    default:
        kv->v.u = bits;
        break;
    }
    r->pos += width;
    return PD_OK;
}

static enum pd_status rd_vtype(struct rd *r, enum pd_gguf_vtype *t, const char *field)
{
    uint32_t raw;
    enum pd_status rc = rd_u32(r, &raw, field);
    if (rc != PD_OK) {
        return rc;
    }
    if (raw >= PD_GGUF_VTYPE_COUNT) {
        return fail(r, PD_EFORMAT, "%s: unknown value type %u", field, raw);
    }
    *t = (enum pd_gguf_vtype)raw;
    return PD_OK;
}

static enum pd_status rd_array(struct rd *r, struct pd_gguf_kv *kv, const char *field)
{
    char f[PD_ERR_MSG_MAX / 2];
    snprintf(f, sizeof f, "%s: array element type", field);
    enum pd_status rc = rd_vtype(r, &kv->v.arr.elem, f);
    if (rc != PD_OK) {
        return rc;
    }
    enum pd_gguf_vtype elem = kv->v.arr.elem;
    if (elem == PD_GGUF_ARRAY) {
        return fail(r, PD_EUNSUPPORTED, "%s: nested arrays are not supported", field);
    }
    snprintf(f, sizeof f, "%s: array count", field);
    uint64_t n;
    rc = rd_u64(r, &n, f);
    if (rc != PD_OK) {
        return rc;
    }
    /* Each element takes its scalar size, or at least the 8-byte length of a string. */
    uint64_t min_elem = elem == PD_GGUF_STRING ? 8 : vtypes[elem].size;
    if (n > GGUF_ARR_MAX) {
        return fail(r, PD_EFORMAT, "%s: count %llu exceeds the maximum %u", f,
                    (unsigned long long)n, GGUF_ARR_MAX);
    }
    if (n > left(r) / min_elem) {
        return fail(r, PD_EFORMAT,
                    "%s: %llu elements of %s run past end of file (%llu bytes left)", f,
                    (unsigned long long)n, vtypes[elem].name, (unsigned long long)left(r));
    }
    kv->v.arr.n = n;
    kv->v.arr.data = r->p + r->pos;
    if (elem != PD_GGUF_STRING) {
        if (elem == PD_GGUF_BOOL) {
            for (uint64_t i = 0; i < n; i++) {
                if (r->p[r->pos + i] > 1) {
                    return fail(r, PD_EFORMAT, "%s: element %llu: bool value %u is not 0 or 1",
                                field, (unsigned long long)i, r->p[r->pos + i]);
                }
            }
        }
        r->pos += n * min_elem; /* bounded by left(r) above */
        return PD_OK;
    }
    struct pd_gguf_str *strs = pd_calloc(n ? (size_t)n : 1, sizeof *strs);
    if (!strs) {
        return fail(r, PD_ENOMEM, "%s: out of memory for %llu strings", field,
                    (unsigned long long)n);
    }
    kv->v.arr.strs = strs; /* owned by kv from here on; freed with the object */
    for (uint64_t i = 0; i < n; i++) {
        /* Fast path for the common case; the field name is only built for a message. */
        if (left(r) >= 8) {
            uint64_t len = le(r->p + r->pos, 8);
            if (len <= GGUF_STR_MAX && len <= left(r) - 8) {
                strs[i].s = (const char *)r->p + r->pos + 8;
                strs[i].n = len;
                r->pos += 8 + len;
                continue;
            }
        }
        snprintf(f, sizeof f, "%s: element %llu", field, (unsigned long long)i);
        return rd_str(r, &strs[i], f); /* fails with the precise reason */
    }
    return PD_OK;
}

static enum pd_status rd_kv(struct rd *r, uint64_t index, struct pd_gguf_kv *kv)
{
    char f[PD_ERR_MSG_MAX / 2];
    char buf[NAME_SHOWN_MAX + 4];
    snprintf(f, sizeof f, "kv[%llu]: key", (unsigned long long)index);
    enum pd_status rc = rd_name(r, &kv->key, f);
    if (rc != PD_OK) {
        return rc;
    }
    snprintf(f, sizeof f, "key '%s'", shown(buf, kv->key));
    char ft[PD_ERR_MSG_MAX / 2];
    snprintf(ft, sizeof ft, "%s: value type", f);
    rc = rd_vtype(r, &kv->type, ft);
    if (rc != PD_OK) {
        return rc;
    }
    switch (kv->type) {
    case PD_GGUF_STRING:
        snprintf(ft, sizeof ft, "%s: value", f);
        return rd_str(r, &kv->v.str, ft);
    case PD_GGUF_ARRAY:
        return rd_array(r, kv, f);
    default:
        snprintf(ft, sizeof ft, "%s: value", f);
        return rd_scalar(r, kv->type, kv, ft);
    }
}

/* ---- sorting helpers for duplicate and overlap checks ---- */

static int str_cmp(struct pd_gguf_str a, struct pd_gguf_str b)
{
    size_t n = a.n < b.n ? (size_t)a.n : (size_t)b.n;
    int c = memcmp(a.s, b.s, n);
    if (c != 0) {
        return c;
    }
    return a.n < b.n ? -1 : a.n > b.n;
}

static int kv_ptr_cmp(const void *a, const void *b)
{
    const struct pd_gguf_kv *x = *(const struct pd_gguf_kv *const *)a;
    const struct pd_gguf_kv *y = *(const struct pd_gguf_kv *const *)b;
    return str_cmp(x->key, y->key);
}

static int tensor_name_cmp(const void *a, const void *b)
{
    const struct pd_gguf_tensor *x = *(const struct pd_gguf_tensor *const *)a;
    const struct pd_gguf_tensor *y = *(const struct pd_gguf_tensor *const *)b;
    return str_cmp(x->name, y->name);
}

static int tensor_offset_cmp(const void *a, const void *b)
{
    const struct pd_gguf_tensor *x = *(const struct pd_gguf_tensor *const *)a;
    const struct pd_gguf_tensor *y = *(const struct pd_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static enum pd_status check_duplicate_keys(struct rd *r, struct pd_gguf *g)
{
    if (g->n_kv < 2) {
        return PD_OK;
    }
    const struct pd_gguf_kv **idx = pd_malloc_array((size_t)g->n_kv, sizeof *idx);
    if (!idx) {
        return fail(r, PD_ENOMEM, "metadata: out of memory");
    }
    for (uint64_t i = 0; i < g->n_kv; i++) {
        idx[i] = &g->kv[i];
    }
    qsort(idx, (size_t)g->n_kv, sizeof *idx, kv_ptr_cmp);
    enum pd_status rc = PD_OK;
    for (uint64_t i = 1; i < g->n_kv; i++) {
        if (str_cmp(idx[i - 1]->key, idx[i]->key) == 0) {
            char buf[NAME_SHOWN_MAX + 4];
            ptrdiff_t a = idx[i - 1] - g->kv;
            ptrdiff_t b = idx[i] - g->kv;
            rc = fail(r, PD_EFORMAT, "key '%s': duplicate key (kv[%td] and kv[%td])",
                      shown(buf, idx[i]->key), a < b ? a : b, a < b ? b : a);
            break;
        }
    }
    free(idx);
    return rc;
}

static enum pd_status check_duplicate_tensors(struct rd *r, struct pd_gguf *g,
                                              const struct pd_gguf_tensor **idx)
{
    qsort(idx, (size_t)g->n_tensors, sizeof *idx, tensor_name_cmp);
    for (uint64_t i = 1; i < g->n_tensors; i++) {
        if (str_cmp(idx[i - 1]->name, idx[i]->name) == 0) {
            char buf[NAME_SHOWN_MAX + 4];
            return fail(r, PD_EFORMAT, "tensor '%s': duplicate tensor name",
                        shown(buf, idx[i]->name));
        }
    }
    return PD_OK;
}

static enum pd_status check_overlaps(struct rd *r, struct pd_gguf *g,
                                     const struct pd_gguf_tensor **idx)
{
    qsort(idx, (size_t)g->n_tensors, sizeof *idx, tensor_offset_cmp);
    for (uint64_t i = 1; i < g->n_tensors; i++) {
        const struct pd_gguf_tensor *a = idx[i - 1];
        const struct pd_gguf_tensor *b = idx[i];
        /* a->offset + a->size cannot overflow: both were checked against the file size. */
        if (a->offset + a->size > b->offset) {
            char na[NAME_SHOWN_MAX + 4];
            char nb[NAME_SHOWN_MAX + 4];
            return fail(r, PD_EFORMAT,
                        "tensor '%s': offset %llu: overlaps tensor '%s' (offset %llu, "
                        "%llu bytes)",
                        shown(nb, b->name), (unsigned long long)b->offset, shown(na, a->name),
                        (unsigned long long)a->offset, (unsigned long long)a->size);
        }
    }
    return PD_OK;
}

/* ---- tensor infos ---- */

static const char *ggml_type_name(uint32_t id)
{
    size_t n = sizeof ggml_type_names / sizeof ggml_type_names[0];
    return id < n && ggml_type_names[id] ? ggml_type_names[id] : "unknown";
}

/* Reads the info of tensor `index`: name, dims, type, offset; computes its size. */
static enum pd_status rd_tensor_info(struct rd *r, uint64_t index, struct pd_gguf_tensor *t,
                                     uint64_t alignment)
{
    char f[PD_ERR_MSG_MAX / 2];
    char buf[NAME_SHOWN_MAX + 4];
    snprintf(f, sizeof f, "tensor[%llu]: name", (unsigned long long)index);
    enum pd_status rc = rd_name(r, &t->name, f);
    if (rc != PD_OK) {
        return rc;
    }
    snprintf(f, sizeof f, "tensor '%s'", shown(buf, t->name));
    char ff[PD_ERR_MSG_MAX / 2];
    snprintf(ff, sizeof ff, "%s: n_dims", f);
    rc = rd_u32(r, &t->n_dims, ff);
    if (rc != PD_OK) {
        return rc;
    }
    if (t->n_dims < 1 || t->n_dims > PD_GGUF_MAX_DIMS) {
        return fail(r, PD_EFORMAT, "%s: %u is not in 1..%d", ff, t->n_dims, PD_GGUF_MAX_DIMS);
    }
    uint64_t n_elems = 1;
    for (uint32_t d = 0; d < PD_GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
    }
    for (uint32_t d = 0; d < t->n_dims; d++) {
        snprintf(ff, sizeof ff, "%s: ne[%u]", f, d);
        rc = rd_u64(r, &t->ne[d], ff);
        if (rc != PD_OK) {
            return rc;
        }
        if (t->ne[d] == 0) {
            return fail(r, PD_EFORMAT, "%s: is 0", ff);
        }
        if (!pd_mul(n_elems, t->ne[d], &n_elems) || n_elems > INT64_MAX) {
            return fail(r, PD_EFORMAT, "%s: element count overflows", ff);
        }
    }
    snprintf(ff, sizeof ff, "%s: type", f);
    uint32_t type_id;
    rc = rd_u32(r, &type_id, ff);
    if (rc != PD_OK) {
        return rc;
    }
    if (pd_dtype_from_ggml(type_id, &t->type) != 0) {
        return fail(r, PD_EUNSUPPORTED,
                    "%s: type id %u (%s) is not supported (ponder reads f32, f16, bf16, q8_0, "
                    "q4_0, q5_0, q4_1, q5_1, q4_K, q5_K, q6_K)", ff, type_id,
                    ggml_type_name(type_id));
    }
    snprintf(ff, sizeof ff, "%s: offset", f);
    rc = rd_u64(r, &t->offset, ff);
    if (rc != PD_OK) {
        return rc;
    }
    if (t->offset % alignment != 0) {
        return fail(r, PD_EFORMAT, "%s: %llu is not a multiple of the alignment %llu", ff,
                    (unsigned long long)t->offset, (unsigned long long)alignment);
    }
    const struct pd_dtype_traits *tr = pd_dtype_traits(t->type);
    if (t->ne[0] % tr->block_size != 0) {
        return fail(r, PD_EFORMAT, "%s: ne[0] %llu is not a multiple of the %s block size %u",
                    f, (unsigned long long)t->ne[0], tr->name, tr->block_size);
    }
    uint64_t row = pd_dtype_row_size(t->type, t->ne[0]);
    if (row == 0) {
        return fail(r, PD_EFORMAT, "%s: size in bytes overflows", f);
    }
    uint64_t size = row;
    for (uint32_t d = 1; d < t->n_dims; d++) {
        if (!pd_mul(size, t->ne[d], &size)) {
            return fail(r, PD_EFORMAT, "%s: size in bytes overflows", f);
        }
    }
    t->size = size;
    return PD_OK;
}

/* general.alignment: optional uint32, a non-zero power of two. */
static enum pd_status find_alignment(struct rd *r, const struct pd_gguf *g, uint64_t *out)
{
    *out = GGUF_ALIGNMENT_DEFAULT;
    const struct pd_gguf_kv *kv = pd_gguf_find(g, "general.alignment");
    if (!kv) {
        return PD_OK;
    }
    if (kv->type != PD_GGUF_UINT32) {
        return fail(r, PD_EFORMAT, "key 'general.alignment': type %s, expected uint32",
                    vtypes[kv->type].name);
    }
    if (kv->v.u == 0 || (kv->v.u & (kv->v.u - 1)) != 0) {
        return fail(r, PD_EFORMAT, "key 'general.alignment': %llu is not a power of two",
                    (unsigned long long)kv->v.u);
    }
    *out = kv->v.u;
    return PD_OK;
}

/* ---- open / close ---- */

static void free_parts(struct pd_gguf *g)
{
    if (g->kv) {
        for (uint64_t i = 0; i < g->n_kv; i++) {
            if (g->kv[i].type == PD_GGUF_ARRAY) {
                free((void *)g->kv[i].v.arr.strs);
            }
        }
    }
    free(g->kv);
    free(g->tensors);
    if (g->owns_map && g->base) {
        munmap((void *)g->base, (size_t)g->size);
    }
    free(g->path);
    free(g);
}

static enum pd_status parse_header(struct rd *r, struct pd_gguf *g)
{
    if (r->size < GGUF_HEADER_SIZE) {
        uint32_t magic = r->size >= 4 ? (uint32_t)le(r->p, 4) : 0;
        if (r->size >= 4 && magic != GGUF_MAGIC) {
            return fail(r, PD_EFORMAT, "magic: not a GGUF file (first bytes %02x %02x %02x %02x)",
                        r->p[0], r->p[1], r->p[2], r->p[3]);
        }
        return fail(r, PD_EFORMAT, "header: truncated (%llu bytes, a GGUF header needs %u)",
                    (unsigned long long)r->size, GGUF_HEADER_SIZE);
    }
    uint32_t magic = 0;
    rd_u32(r, &magic, "magic"); /* cannot fail: 24 bytes are present */
    if (magic != GGUF_MAGIC) {
        return fail(r, PD_EFORMAT, "magic: not a GGUF file (first bytes %02x %02x %02x %02x)",
                    r->p[0], r->p[1], r->p[2], r->p[3]);
    }
    rd_u32(r, &g->version, "version");
    if (g->version != 2 && g->version != 3) {
        uint32_t swapped = __builtin_bswap32(g->version);
        if (swapped == 2 || swapped == 3) {
            return fail(r, PD_EUNSUPPORTED, "version: big-endian GGUF files are not supported");
        }
        if (g->version == 1) {
            return fail(r, PD_EUNSUPPORTED,
                        "version: 1 is not supported (GGUF v1 used 32-bit counts; ponder "
                        "reads versions 2 and 3)");
        }
        return fail(r, PD_EUNSUPPORTED, "version: %u is not supported (ponder reads versions "
                    "2 and 3)", g->version);
    }
    rd_u64(r, &g->n_tensors, "n_tensors");
    rd_u64(r, &g->n_kv, "n_kv");
    if (g->n_tensors > GGUF_N_TENSORS_MAX) {
        return fail(r, PD_EFORMAT, "n_tensors: %llu exceeds the maximum %u",
                    (unsigned long long)g->n_tensors, GGUF_N_TENSORS_MAX);
    }
    if (g->n_kv > GGUF_N_KV_MAX) {
        return fail(r, PD_EFORMAT, "n_kv: %llu exceeds the maximum %u",
                    (unsigned long long)g->n_kv, GGUF_N_KV_MAX);
    }
    if (g->n_kv > left(r) / GGUF_KV_MIN_BYTES) {
        return fail(r, PD_EFORMAT, "n_kv: %llu pairs cannot fit in the %llu bytes left",
                    (unsigned long long)g->n_kv, (unsigned long long)left(r));
    }
    if (g->n_tensors > left(r) / GGUF_TENSOR_INFO_MIN_BYTES) {
        return fail(r, PD_EFORMAT, "n_tensors: %llu tensor infos cannot fit in the %llu bytes "
                    "left", (unsigned long long)g->n_tensors, (unsigned long long)left(r));
    }
    return PD_OK;
}

static enum pd_status parse(struct rd *r, struct pd_gguf *g)
{
    enum pd_status rc = parse_header(r, g);
    if (rc != PD_OK) {
        return rc;
    }
    g->kv = pd_calloc(g->n_kv ? (size_t)g->n_kv : 1, sizeof *g->kv);
    if (!g->kv) {
        return fail(r, PD_ENOMEM, "n_kv: out of memory for %llu pairs",
                    (unsigned long long)g->n_kv);
    }
    uint64_t n_kv = g->n_kv;
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = i + 1; /* free_parts sees exactly the pairs read so far */
        rc = rd_kv(r, i, &g->kv[i]);
        if (rc != PD_OK) {
            return rc;
        }
    }
    rc = check_duplicate_keys(r, g);
    if (rc == PD_OK) {
        rc = find_alignment(r, g, &g->alignment);
    }
    if (rc != PD_OK) {
        return rc;
    }
    /* Re-check against what is left now that the metadata has been consumed. */
    if (g->n_tensors > left(r) / GGUF_TENSOR_INFO_MIN_BYTES) {
        return fail(r, PD_EFORMAT, "n_tensors: %llu tensor infos cannot fit in the %llu bytes "
                    "left after the metadata", (unsigned long long)g->n_tensors,
                    (unsigned long long)left(r));
    }
    g->tensors = pd_calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *g->tensors);
    if (!g->tensors) {
        return fail(r, PD_ENOMEM, "n_tensors: out of memory for %llu tensors",
                    (unsigned long long)g->n_tensors);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        rc = rd_tensor_info(r, i, &g->tensors[i], g->alignment);
        if (rc != PD_OK) {
            return rc;
        }
    }
    /* Data section: starts at the next multiple of the alignment. */
    uint64_t data_offset;
    if (!pd_add(r->pos, g->alignment - 1, &data_offset)) {
        return fail(r, PD_EFORMAT, "data section: start offset overflows");
    }
    data_offset -= data_offset % g->alignment;
    if (data_offset > r->size) {
        if (g->n_tensors > 0) {
            return fail(r, PD_EFORMAT, "data section: starts at %llu, past end of file (%llu "
                        "bytes)", (unsigned long long)data_offset,
                        (unsigned long long)r->size);
        }
        data_offset = r->pos; /* no tensors: the padding may be left out */
    }
    g->data_offset = data_offset;
    uint64_t data_size = r->size - data_offset;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        struct pd_gguf_tensor *t = &g->tensors[i];
        if (t->offset > data_size || t->size > data_size - t->offset) {
            char buf[NAME_SHOWN_MAX + 4];
            uint64_t avail = t->offset > data_size ? 0 : data_size - t->offset;
            return fail(r, PD_EFORMAT, "tensor '%s': offset %llu: data runs past end of file "
                        "(needs %llu bytes, %llu left)", shown(buf, t->name),
                        (unsigned long long)t->offset, (unsigned long long)t->size,
                        (unsigned long long)avail);
        }
        t->data = r->p + data_offset + t->offset;
    }
    if (g->n_tensors < 2) {
        return PD_OK;
    }
    const struct pd_gguf_tensor **idx = pd_malloc_array((size_t)g->n_tensors, sizeof *idx);
    if (!idx) {
        return fail(r, PD_ENOMEM, "tensors: out of memory");
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        idx[i] = &g->tensors[i];
    }
    rc = check_duplicate_tensors(r, g, idx);
    if (rc == PD_OK) {
        rc = check_overlaps(r, g, idx);
    }
    free(idx);
    return rc;
}

static enum pd_status open_common(const uint8_t *base, uint64_t size, bool owns_map,
                                  const char *name, struct pd_gguf **out, struct pd_err *err)
{
    struct pd_gguf *g = calloc(1, sizeof *g);
    char *path = pd_strdup(name);
    if (!g || !path) {
        free(g);
        free(path);
        if (owns_map) {
            munmap((void *)base, (size_t)size);
        }
        return pd_err_set(err, PD_ENOMEM, "%s: out of memory", name);
    }
    g->path = path;
    g->base = base;
    g->size = size;
    g->owns_map = owns_map;
    struct rd r = {.p = base, .size = size, .name = name, .err = err};
    enum pd_status rc = parse(&r, g);
    if (rc != PD_OK) {
        free_parts(g);
        return rc;
    }
    *out = g;
    return PD_OK;
}

enum pd_status pd_gguf_open(const char *path, struct pd_gguf **out, struct pd_err *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return pd_err_set(err, PD_EIO, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return pd_err_set(err, PD_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return pd_err_set(err, PD_EIO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) { /* mmap cannot map nothing */
        close(fd);
        return pd_err_set(err, PD_EFORMAT, "%s: header: truncated (0 bytes, a GGUF header "
                          "needs %u)", path, GGUF_HEADER_SIZE);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return pd_err_set(err, PD_EUNSUPPORTED, "%s: too large to map", path);
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file referenced */
    if (m == MAP_FAILED) {
        return pd_err_set(err, PD_EIO, "%s: cannot map: %s", path, strerror(e));
    }
    return open_common(m, (uint64_t)st.st_size, true, path, out, err);
}

enum pd_status pd_gguf_open_mem(const void *buf, size_t len, const char *name,
                                struct pd_gguf **out, struct pd_err *err)
{
    *out = NULL;
    if (!buf && len > 0) {
        return pd_err_set(err, PD_EINVAL, "%s: NULL buffer", name ? name : "(memory)");
    }
    static const uint8_t empty[1];
    return open_common(buf ? buf : empty, len, false, name ? name : "(memory)", out, err);
}

void pd_gguf_close(struct pd_gguf **g)
{
    if (g && *g) {
        free_parts(*g);
        *g = NULL;
    }
}

void pd_gguf_release(const struct pd_gguf *g, const void *p, uint64_t n)
{
    if (!g->owns_map || n == 0) {
        return;
    }
    long ps = sysconf(_SC_PAGESIZE);
    uintptr_t page = ps > 0 ? (uintptr_t)ps : 4096u;
    uintptr_t a = ((uintptr_t)p + page - 1) / page * page;
    uintptr_t b = ((uintptr_t)p + n) / page * page;
    if (b > a) {
        /* a private read-only file mapping: the pages come back from the file */
        (void)madvise((void *)a, b - a, MADV_DONTNEED);
    }
}

/* ---- lookups and typed getters ---- */

bool pd_gguf_str_eq(struct pd_gguf_str a, const char *s)
{
    size_t n = strlen(s);
    return a.n == n && memcmp(a.s, s, n) == 0;
}

const struct pd_gguf_kv *pd_gguf_find(const struct pd_gguf *g, const char *key)
{
    for (uint64_t i = 0; i < g->n_kv; i++) {
        if (pd_gguf_str_eq(g->kv[i].key, key)) {
            return &g->kv[i];
        }
    }
    return NULL;
}

const struct pd_gguf_tensor *pd_gguf_find_tensor(const struct pd_gguf *g, const char *name)
{
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        if (pd_gguf_str_eq(g->tensors[i].name, name)) {
            return &g->tensors[i];
        }
    }
    return NULL;
}

const char *pd_gguf_vtype_name(enum pd_gguf_vtype t)
{
    return (unsigned)t < PD_GGUF_VTYPE_COUNT ? vtypes[t].name : "?";
}

static bool is_signed(enum pd_gguf_vtype t)
{
    return t == PD_GGUF_INT8 || t == PD_GGUF_INT16 || t == PD_GGUF_INT32 || t == PD_GGUF_INT64;
}

static bool is_unsigned(enum pd_gguf_vtype t)
{
    return t == PD_GGUF_UINT8 || t == PD_GGUF_UINT16 || t == PD_GGUF_UINT32 ||
           t == PD_GGUF_UINT64;
}

/* Finds key and checks it holds an integer >= 0 and <= max. */
static enum pd_status get_uint(const struct pd_gguf *g, const char *key, uint64_t max,
                               const char *want, uint64_t *out, struct pd_err *err)
{
    const struct pd_gguf_kv *kv = pd_gguf_find(g, key);
    if (!kv) {
        return PD_EINVAL;
    }
    uint64_t v = 0;
    if (is_unsigned(kv->type)) {
        v = kv->v.u;
    } else if (is_signed(kv->type)) {
        if (kv->v.i < 0) {
            return pd_err_set(err, PD_EFORMAT, "%s: key '%s': value %lld does not fit %s",
                              g->path, key, (long long)kv->v.i, want);
        }
        v = (uint64_t)kv->v.i;
    } else {
        return pd_err_set(err, PD_EFORMAT, "%s: key '%s': type %s, expected an integer (%s)",
                          g->path, key, vtypes[kv->type].name, want);
    }
    if (v > max) {
        return pd_err_set(err, PD_EFORMAT, "%s: key '%s': value %llu does not fit %s", g->path,
                          key, (unsigned long long)v, want);
    }
    *out = v;
    return PD_OK;
}

enum pd_status pd_gguf_get_u32(const struct pd_gguf *g, const char *key, uint32_t *out,
                               struct pd_err *err)
{
    uint64_t v = 0;
    enum pd_status rc = get_uint(g, key, UINT32_MAX, "uint32", &v, err);
    if (rc == PD_OK) {
        *out = (uint32_t)v;
    }
    return rc;
}

enum pd_status pd_gguf_get_u64(const struct pd_gguf *g, const char *key, uint64_t *out,
                               struct pd_err *err)
{
    return get_uint(g, key, UINT64_MAX, "uint64", out, err);
}

enum pd_status pd_gguf_get_f32(const struct pd_gguf *g, const char *key, float *out,
                               struct pd_err *err)
{
    const struct pd_gguf_kv *kv = pd_gguf_find(g, key);
    if (!kv) {
        return PD_EINVAL;
    }
    double v;
    if (kv->type == PD_GGUF_FLOAT32 || kv->type == PD_GGUF_FLOAT64) {
        v = kv->v.f;
    } else if (is_unsigned(kv->type)) {
        v = (double)kv->v.u;
    } else if (is_signed(kv->type)) {
        v = (double)kv->v.i;
    } else {
        return pd_err_set(err, PD_EFORMAT, "%s: key '%s': type %s, expected a number", g->path,
                          key, vtypes[kv->type].name);
    }
    if (isfinite(v) && fabs(v) > FLT_MAX) {
        return pd_err_set(err, PD_EFORMAT, "%s: key '%s': value %g does not fit float32",
                          g->path, key, v);
    }
    *out = (float)v;
    return PD_OK;
}

enum pd_status pd_gguf_get_bool(const struct pd_gguf *g, const char *key, bool *out,
                                struct pd_err *err)
{
    const struct pd_gguf_kv *kv = pd_gguf_find(g, key);
    if (!kv) {
        return PD_EINVAL;
    }
    if (kv->type != PD_GGUF_BOOL) {
        return pd_err_set(err, PD_EFORMAT, "%s: key '%s': type %s, expected bool", g->path, key,
                          vtypes[kv->type].name);
    }
    *out = kv->v.u != 0;
    return PD_OK;
}

enum pd_status pd_gguf_get_str(const struct pd_gguf *g, const char *key,
                               struct pd_gguf_str *out, struct pd_err *err)
{
    const struct pd_gguf_kv *kv = pd_gguf_find(g, key);
    if (!kv) {
        return PD_EINVAL;
    }
    if (kv->type != PD_GGUF_STRING) {
        return pd_err_set(err, PD_EFORMAT, "%s: key '%s': type %s, expected string", g->path,
                          key, vtypes[kv->type].name);
    }
    *out = kv->v.str;
    return PD_OK;
}

enum pd_status pd_gguf_get_arr(const struct pd_gguf *g, const char *key,
                               enum pd_gguf_vtype elem, const struct pd_gguf_kv **out,
                               struct pd_err *err)
{
    const struct pd_gguf_kv *kv = pd_gguf_find(g, key);
    if (!kv) {
        return PD_EINVAL;
    }
    if (kv->type != PD_GGUF_ARRAY) {
        return pd_err_set(err, PD_EFORMAT, "%s: key '%s': type %s, expected array of %s",
                          g->path, key, vtypes[kv->type].name, pd_gguf_vtype_name(elem));
    }
    if (kv->v.arr.elem != elem) {
        return pd_err_set(err, PD_EFORMAT, "%s: key '%s': array of %s, expected array of %s",
                          g->path, key, vtypes[kv->v.arr.elem].name, pd_gguf_vtype_name(elem));
    }
    *out = kv;
    return PD_OK;
}

/* ---- array elements ---- */

static uint64_t arr_bits(const struct pd_gguf_kv *kv, uint64_t i, unsigned *width)
{
    *width = vtypes[kv->v.arr.elem].size;
    return le((const uint8_t *)kv->v.arr.data + i * *width, *width);
}

uint64_t pd_gguf_arr_u64(const struct pd_gguf_kv *kv, uint64_t i)
{
    unsigned width;
    uint64_t bits = arr_bits(kv, i, &width);
    return is_signed(kv->v.arr.elem) ? sign_extend(bits, width) : bits;
}

int64_t pd_gguf_arr_i64(const struct pd_gguf_kv *kv, uint64_t i)
{
    return (int64_t)pd_gguf_arr_u64(kv, i);
}

double pd_gguf_arr_f64(const struct pd_gguf_kv *kv, uint64_t i)
{
    unsigned width;
    uint64_t bits = arr_bits(kv, i, &width);
    if (kv->v.arr.elem == PD_GGUF_FLOAT32) {
        uint32_t b32 = (uint32_t)bits;
        float f;
        memcpy(&f, &b32, 4);
        return f;
    }
    if (kv->v.arr.elem == PD_GGUF_FLOAT64) {
        double d;
        memcpy(&d, &bits, 8);
        return d;
    }
    if (is_signed(kv->v.arr.elem)) {
        return (double)(int64_t)sign_extend(bits, width);
    }
    return (double)bits;
}
