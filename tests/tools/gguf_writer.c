/* gguf_writer.c - the in-memory GGUF builder used by tests and tools.
 *
 * Values are encoded to little-endian bytes when added, so serialising is a matter of
 * appending headers and payloads in order; the serialiser records the position of every
 * numeric header field it emits (pd_gguf_writer_fields) for fuzz and corrupt-input tests.
 * This file keeps its own value-size table on purpose: it is an independent
 * implementation of the format, so round-trip tests check the reader against it. */
#include "gguf_writer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mem.h"

#define ALIGNMENT_KEY "general.alignment"

/* Bytes per scalar value type; 0 for STRING and ARRAY. */
static const uint8_t vtype_size[PD_GGUF_VTYPE_COUNT] = {
    [PD_GGUF_UINT8] = 1,  [PD_GGUF_INT8] = 1,    [PD_GGUF_UINT16] = 2, [PD_GGUF_INT16] = 2,
    [PD_GGUF_UINT32] = 4, [PD_GGUF_INT32] = 4,   [PD_GGUF_FLOAT32] = 4, [PD_GGUF_BOOL] = 1,
    [PD_GGUF_STRING] = 0, [PD_GGUF_ARRAY] = 0,   [PD_GGUF_UINT64] = 8, [PD_GGUF_INT64] = 8,
    [PD_GGUF_FLOAT64] = 8,
};
_Static_assert(sizeof vtype_size / sizeof vtype_size[0] == PD_GGUF_VTYPE_COUNT,
               "value size table");
_Static_assert(sizeof(bool) == 1, "GGUF bools are one byte; arrays of bool are copied as such");

struct wstr {
    char *s; /* owned */
    size_t n;
};

struct wkv {
    struct wstr key;
    uint32_t type;     /* written as-is */
    bool raw;          /* bytes is the whole serialised value */
    uint32_t elem;     /* ARRAY: element type */
    uint64_t n;        /* ARRAY: element count */
    uint8_t *bytes;    /* owned: scalar / string / array elements (little-endian) / raw */
    size_t n_bytes;
    struct wstr *strs; /* owned [n], STRING arrays only */
};

struct wtensor {
    struct wstr name;
    uint32_t n_dims;
    uint64_t ne[PD_GGUF_WRITER_DIMS_MAX];
    uint32_t ggml_type;
    uint8_t *data; /* owned [size] */
    size_t size;
    bool offset_set;
    uint64_t offset_override;
};

struct pd_gguf_writer {
    uint32_t version;
    uint32_t alignment;
    struct wkv *kv; /* owned [n_kv] */
    size_t n_kv, cap_kv;
    struct wtensor *tensors; /* owned [n_tensors] */
    size_t n_tensors, cap_tensors;
    struct pd_gguf_writer_layout layout;
    struct pd_gguf_writer_field *fields; /* owned [n_fields], from the last write */
    size_t n_fields, cap_fields;
};

/* ---- small helpers ---- */

static void put_le(uint8_t *dst, uint64_t v, size_t width)
{
    for (size_t i = 0; i < width; i++) {
        dst[i] = (uint8_t)(v >> (8 * i));
    }
}

/* Reads a host-order value of `width` bytes. */
static uint64_t host_value(const uint8_t *src, size_t width)
{
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    switch (width) {
    case 1: memcpy(&u8, src, 1); return u8;
    case 2: memcpy(&u16, src, 2); return u16;
    case 4: memcpy(&u32, src, 4); return u32;
    default: memcpy(&u64, src, 8); return u64;
    }
}

static bool wstr_set(struct wstr *d, const char *s, size_t n)
{
    d->s = pd_strndup(s ? s : "", s ? n : 0);
    d->n = s ? n : 0;
    return d->s != NULL;
}

static void wkv_free(struct wkv *kv)
{
    free(kv->key.s);
    free(kv->bytes);
    if (kv->strs) {
        for (uint64_t i = 0; i < kv->n; i++) {
            free(kv->strs[i].s);
        }
        free(kv->strs);
    }
    memset(kv, 0, sizeof *kv);
}

static struct wkv *find_kv(struct pd_gguf_writer *w, const char *key)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < w->n_kv; i++) {
        if (!w->kv[i].raw && w->kv[i].key.n == n && memcmp(w->kv[i].key.s, key, n) == 0) {
            return &w->kv[i];
        }
    }
    return NULL;
}

/* A zeroed slot after the last key/value (not yet counted in n_kv); NULL when out of
 * memory. */
static struct wkv *kv_slot(struct pd_gguf_writer *w)
{
    struct wkv *nk = pd_grow_array(w->kv, &w->cap_kv, w->n_kv + 1, sizeof *w->kv);
    if (!nk) {
        return NULL;
    }
    w->kv = nk;
    memset(&w->kv[w->n_kv], 0, sizeof *w->kv);
    return &w->kv[w->n_kv];
}

/* Validates a new checked key and reserves a zeroed slot for it. */
static enum pd_status new_kv(struct pd_gguf_writer *w, const char *key, uint32_t type,
                             struct wkv **out, struct pd_err *err)
{
    if (!key || !key[0]) {
        return pd_err_set(err, PD_EINVAL, "gguf writer: empty metadata key");
    }
    if (find_kv(w, key)) {
        return pd_err_set(err, PD_EINVAL, "gguf writer: key '%s': already present", key);
    }
    if (strcmp(key, ALIGNMENT_KEY) == 0 && type != PD_GGUF_UINT32) {
        return pd_err_set(err, PD_EINVAL, "gguf writer: key '%s': must be uint32", key);
    }
    struct wkv *kv = kv_slot(w);
    if (!kv) {
        return pd_err_set(err, PD_ENOMEM, "gguf writer: out of memory");
    }
    if (!wstr_set(&kv->key, key, strlen(key))) {
        return pd_err_set(err, PD_ENOMEM, "gguf writer: out of memory");
    }
    kv->type = type;
    *out = kv;
    return PD_OK;
}

static enum pd_status add_scalar(struct pd_gguf_writer *w, const char *key,
                                 enum pd_gguf_vtype type, uint64_t bits, struct pd_err *err)
{
    if (key && type == PD_GGUF_UINT32 && strcmp(key, ALIGNMENT_KEY) == 0) {
        if (find_kv(w, key)) {
            return pd_err_set(err, PD_EINVAL, "gguf writer: key '%s': already present", key);
        }
        return pd_gguf_writer_set_alignment(w, (uint32_t)bits, err);
    }
    struct wkv *kv;
    enum pd_status rc = new_kv(w, key, type, &kv, err);
    if (rc != PD_OK) {
        return rc;
    }
    kv->n_bytes = vtype_size[type];
    kv->bytes = malloc(kv->n_bytes);
    if (!kv->bytes) {
        wkv_free(kv);
        return pd_err_set(err, PD_ENOMEM, "gguf writer: out of memory");
    }
    put_le(kv->bytes, bits, kv->n_bytes);
    w->n_kv++;
    return PD_OK;
}

/* ---- public: lifetime and settings ---- */

enum pd_status pd_gguf_writer_open(struct pd_gguf_writer **out, struct pd_err *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out) {
        return pd_err_set(err, PD_ENOMEM, "gguf writer: out of memory");
    }
    (*out)->version = 3;
    (*out)->alignment = PD_GGUF_WRITER_ALIGNMENT_DEFAULT;
    return PD_OK;
}

void pd_gguf_writer_close(struct pd_gguf_writer **pw)
{
    if (!pw || !*pw) {
        return;
    }
    struct pd_gguf_writer *w = *pw;
    for (size_t i = 0; i < w->n_kv; i++) {
        wkv_free(&w->kv[i]);
    }
    free(w->kv);
    for (size_t i = 0; i < w->n_tensors; i++) {
        free(w->tensors[i].name.s);
        free(w->tensors[i].data);
    }
    free(w->tensors);
    free(w->fields);
    free(w);
    *pw = NULL;
}

void pd_gguf_writer_set_version(struct pd_gguf_writer *w, uint32_t version)
{
    w->version = version;
}

enum pd_status pd_gguf_writer_set_alignment(struct pd_gguf_writer *w, uint32_t alignment,
                                            struct pd_err *err)
{
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
        return pd_err_set(err, PD_EINVAL,
                          "gguf writer: alignment %u: not a power of two", alignment);
    }
    struct wkv *kv = find_kv(w, ALIGNMENT_KEY);
    if (!kv) {
        enum pd_status rc = new_kv(w, ALIGNMENT_KEY, PD_GGUF_UINT32, &kv, err);
        if (rc != PD_OK) {
            return rc;
        }
        kv->bytes = malloc(4);
        if (!kv->bytes) {
            wkv_free(kv);
            return pd_err_set(err, PD_ENOMEM, "gguf writer: out of memory");
        }
        kv->n_bytes = 4;
        w->n_kv++;
    }
    put_le(kv->bytes, alignment, 4);
    w->alignment = alignment;
    return PD_OK;
}

/* ---- public: metadata ---- */

enum pd_status pd_gguf_writer_add_u8(struct pd_gguf_writer *w, const char *key, uint8_t v,
                                     struct pd_err *err)
{
    return add_scalar(w, key, PD_GGUF_UINT8, v, err);
}

enum pd_status pd_gguf_writer_add_i8(struct pd_gguf_writer *w, const char *key, int8_t v,
                                     struct pd_err *err)
{
    return add_scalar(w, key, PD_GGUF_INT8, (uint64_t)(uint8_t)v, err);
}

enum pd_status pd_gguf_writer_add_u16(struct pd_gguf_writer *w, const char *key, uint16_t v,
                                      struct pd_err *err)
{
    return add_scalar(w, key, PD_GGUF_UINT16, v, err);
}

enum pd_status pd_gguf_writer_add_i16(struct pd_gguf_writer *w, const char *key, int16_t v,
                                      struct pd_err *err)
{
    return add_scalar(w, key, PD_GGUF_INT16, (uint64_t)(uint16_t)v, err);
}

enum pd_status pd_gguf_writer_add_u32(struct pd_gguf_writer *w, const char *key, uint32_t v,
                                      struct pd_err *err)
{
    return add_scalar(w, key, PD_GGUF_UINT32, v, err);
}

enum pd_status pd_gguf_writer_add_i32(struct pd_gguf_writer *w, const char *key, int32_t v,
                                      struct pd_err *err)
{
    return add_scalar(w, key, PD_GGUF_INT32, (uint64_t)(uint32_t)v, err);
}

enum pd_status pd_gguf_writer_add_u64(struct pd_gguf_writer *w, const char *key, uint64_t v,
                                      struct pd_err *err)
{
    return add_scalar(w, key, PD_GGUF_UINT64, v, err);
}

enum pd_status pd_gguf_writer_add_i64(struct pd_gguf_writer *w, const char *key, int64_t v,
                                      struct pd_err *err)
{
    return add_scalar(w, key, PD_GGUF_INT64, (uint64_t)v, err);
}

enum pd_status pd_gguf_writer_add_f32(struct pd_gguf_writer *w, const char *key, float v,
                                      struct pd_err *err)
{
    uint32_t bits;
    memcpy(&bits, &v, 4);
    return add_scalar(w, key, PD_GGUF_FLOAT32, bits, err);
}

enum pd_status pd_gguf_writer_add_f64(struct pd_gguf_writer *w, const char *key, double v,
                                      struct pd_err *err)
{
    uint64_t bits;
    memcpy(&bits, &v, 8);
    return add_scalar(w, key, PD_GGUF_FLOAT64, bits, err);
}

enum pd_status pd_gguf_writer_add_bool(struct pd_gguf_writer *w, const char *key, bool v,
                                       struct pd_err *err)
{
    return add_scalar(w, key, PD_GGUF_BOOL, v ? 1 : 0, err);
}

enum pd_status pd_gguf_writer_add_str(struct pd_gguf_writer *w, const char *key,
                                      const char *s, struct pd_err *err)
{
    return pd_gguf_writer_add_str_n(w, key, s, s ? strlen(s) : 0, err);
}

enum pd_status pd_gguf_writer_add_str_n(struct pd_gguf_writer *w, const char *key,
                                        const char *s, size_t n, struct pd_err *err)
{
    struct wkv *kv;
    enum pd_status rc = new_kv(w, key, PD_GGUF_STRING, &kv, err);
    if (rc != PD_OK) {
        return rc;
    }
    kv->bytes = (uint8_t *)pd_strndup(s ? s : "", s ? n : 0);
    if (!kv->bytes) {
        wkv_free(kv);
        return pd_err_set(err, PD_ENOMEM, "gguf writer: out of memory");
    }
    kv->n_bytes = s ? n : 0;
    w->n_kv++;
    return PD_OK;
}

enum pd_status pd_gguf_writer_add_arr(struct pd_gguf_writer *w, const char *key,
                                      enum pd_gguf_vtype elem, const void *data, size_t n,
                                      struct pd_err *err)
{
    if ((unsigned)elem >= PD_GGUF_VTYPE_COUNT || vtype_size[elem] == 0) {
        return pd_err_set(err, PD_EINVAL, "gguf writer: key '%s': bad array element type %d",
                          key ? key : "", (int)elem);
    }
    if (n > 0 && !data) {
        return pd_err_set(err, PD_EINVAL, "gguf writer: key '%s': NULL array data",
                          key ? key : "");
    }
    struct wkv *kv;
    enum pd_status rc = new_kv(w, key, PD_GGUF_ARRAY, &kv, err);
    if (rc != PD_OK) {
        return rc;
    }
    size_t width = vtype_size[elem];
    kv->elem = (uint32_t)elem;
    kv->n = n;
    kv->n_bytes = n * width; /* cannot overflow: data holds that many bytes */
    kv->bytes = malloc(kv->n_bytes ? kv->n_bytes : 1);
    if (!kv->bytes) {
        wkv_free(kv);
        return pd_err_set(err, PD_ENOMEM, "gguf writer: out of memory");
    }
    const uint8_t *src = data;
    for (size_t i = 0; i < n; i++) {
        put_le(kv->bytes + i * width, host_value(src + i * width, width), width);
    }
    w->n_kv++;
    return PD_OK;
}

enum pd_status pd_gguf_writer_add_arr_str(struct pd_gguf_writer *w, const char *key,
                                          const char *const *strs, const size_t *lens,
                                          size_t n, struct pd_err *err)
{
    if (n > 0 && !strs) {
        return pd_err_set(err, PD_EINVAL, "gguf writer: key '%s': NULL string array",
                          key ? key : "");
    }
    struct wkv *kv;
    enum pd_status rc = new_kv(w, key, PD_GGUF_ARRAY, &kv, err);
    if (rc != PD_OK) {
        return rc;
    }
    kv->elem = PD_GGUF_STRING;
    kv->strs = pd_calloc(n ? n : 1, sizeof *kv->strs);
    if (!kv->strs) {
        wkv_free(kv);
        return pd_err_set(err, PD_ENOMEM, "gguf writer: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const char *s = strs[i] ? strs[i] : "";
        size_t len = lens ? lens[i] : strlen(s);
        kv->n = i; /* wkv_free frees the strings stored so far */
        if (!wstr_set(&kv->strs[i], s, len)) {
            wkv_free(kv);
            return pd_err_set(err, PD_ENOMEM, "gguf writer: out of memory");
        }
    }
    kv->n = n;
    w->n_kv++;
    return PD_OK;
}

enum pd_status pd_gguf_writer_add_kv_raw(struct pd_gguf_writer *w, const char *key,
                                         size_t key_len, uint32_t type, const void *value,
                                         size_t n, struct pd_err *err)
{
    struct wkv *kv = kv_slot(w);
    if (!kv) {
        return pd_err_set(err, PD_ENOMEM, "gguf writer: out of memory");
    }
    kv->raw = true;
    kv->type = type;
    kv->bytes = malloc(n ? n : 1);
    if (!kv->bytes || !wstr_set(&kv->key, key, key_len)) {
        wkv_free(kv);
        return pd_err_set(err, PD_ENOMEM, "gguf writer: out of memory");
    }
    if (n) {
        memcpy(kv->bytes, value, n);
    }
    kv->n_bytes = n;
    w->n_kv++;
    return PD_OK;
}

/* ---- public: tensors ---- */

static enum pd_status push_tensor(struct pd_gguf_writer *w, const char *name, size_t name_len,
                                  uint32_t n_dims, const uint64_t *ne, uint32_t ggml_type,
                                  uint8_t *data_take, size_t size, struct pd_err *err)
{
    struct wtensor *nt = pd_grow_array(w->tensors, &w->cap_tensors, w->n_tensors + 1,
                                       sizeof *w->tensors);
    if (!nt) {
        free(data_take);
        return pd_err_set(err, PD_ENOMEM, "gguf writer: out of memory");
    }
    w->tensors = nt;
    struct wtensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    if (!wstr_set(&t->name, name, name_len)) {
        free(data_take);
        return pd_err_set(err, PD_ENOMEM, "gguf writer: out of memory");
    }
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < n_dims; d++) {
        t->ne[d] = ne[d];
    }
    t->ggml_type = ggml_type;
    t->data = data_take;
    t->size = size;
    w->n_tensors++;
    return PD_OK;
}

/* Checks a tensor for the checked adders; *bytes gets the size its data must have. */
static enum pd_status check_tensor(struct pd_gguf_writer *w, const char *name, uint32_t n_dims,
                                   const uint64_t *ne, enum pd_dtype dtype, uint64_t *bytes,
                                   uint64_t *n_elems, struct pd_err *err)
{
    if (!name || !name[0]) {
        return pd_err_set(err, PD_EINVAL, "gguf writer: empty tensor name");
    }
    size_t len = strlen(name);
    for (size_t i = 0; i < w->n_tensors; i++) {
        if (w->tensors[i].name.n == len && memcmp(w->tensors[i].name.s, name, len) == 0) {
            return pd_err_set(err, PD_EINVAL, "gguf writer: tensor '%s': already present",
                              name);
        }
    }
    if ((unsigned)dtype >= PD_DTYPE_COUNT || pd_dtype_activation_only(dtype)) {
        return pd_err_set(err, PD_EINVAL, "gguf writer: tensor '%s': dtype %d cannot be stored",
                          name, (int)dtype);
    }
    if (n_dims < 1 || n_dims > PD_GGUF_MAX_DIMS) {
        return pd_err_set(err, PD_EINVAL, "gguf writer: tensor '%s': n_dims %u not in 1..%d",
                          name, n_dims, PD_GGUF_MAX_DIMS);
    }
    uint64_t rows = 1;
    *n_elems = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] == 0) {
            return pd_err_set(err, PD_EINVAL, "gguf writer: tensor '%s': ne[%u] is 0", name, d);
        }
        if ((d > 0 && !pd_mul(rows, ne[d], &rows)) || !pd_mul(*n_elems, ne[d], n_elems)) {
            return pd_err_set(err, PD_EINVAL, "gguf writer: tensor '%s': shape overflows",
                              name);
        }
    }
    const struct pd_dtype_traits *tr = pd_dtype_traits(dtype);
    uint64_t row = pd_dtype_row_size(dtype, ne[0]);
    if (row == 0) {
        return pd_err_set(err, PD_EINVAL,
                          "gguf writer: tensor '%s': ne[0] %llu is not a multiple of %s's "
                          "block size %u", name, (unsigned long long)ne[0], tr->name,
                          tr->block_size);
    }
    if (!pd_mul(row, rows, bytes) || *bytes > SIZE_MAX) {
        return pd_err_set(err, PD_EINVAL, "gguf writer: tensor '%s': size overflows", name);
    }
    return PD_OK;
}

enum pd_status pd_gguf_writer_add_tensor(struct pd_gguf_writer *w, const char *name,
                                         uint32_t n_dims, const uint64_t *ne,
                                         enum pd_dtype dtype, const void *data, size_t size,
                                         struct pd_err *err)
{
    uint64_t bytes, n_elems;
    enum pd_status rc = check_tensor(w, name, n_dims, ne, dtype, &bytes, &n_elems, err);
    if (rc != PD_OK) {
        return rc;
    }
    if (size != bytes || !data) {
        return pd_err_set(err, PD_EINVAL,
                          "gguf writer: tensor '%s': %zu data bytes given, %s needs %llu",
                          name, data ? size : 0, pd_dtype_traits(dtype)->name,
                          (unsigned long long)bytes);
    }
    uint8_t *copy = malloc(size);
    if (!copy) {
        return pd_err_set(err, PD_ENOMEM, "gguf writer: out of memory");
    }
    memcpy(copy, data, size);
    return push_tensor(w, name, strlen(name), n_dims, ne, pd_dtype_traits(dtype)->ggml_id,
                       copy, size, err);
}

enum pd_status pd_gguf_writer_add_tensor_f32(struct pd_gguf_writer *w, const char *name,
                                             uint32_t n_dims, const uint64_t *ne,
                                             enum pd_dtype dtype, const float *src,
                                             struct pd_err *err)
{
    uint64_t bytes, n_elems;
    enum pd_status rc = check_tensor(w, name, n_dims, ne, dtype, &bytes, &n_elems, err);
    if (rc != PD_OK) {
        return rc;
    }
    if (!src) {
        return pd_err_set(err, PD_EINVAL, "gguf writer: tensor '%s': NULL data", name);
    }
    uint8_t *dst = malloc(bytes ? bytes : 1);
    if (!dst) {
        return pd_err_set(err, PD_ENOMEM, "gguf writer: out of memory");
    }
    pd_dtype_traits(dtype)->from_f32(src, dst, (size_t)n_elems);
    return push_tensor(w, name, strlen(name), n_dims, ne, pd_dtype_traits(dtype)->ggml_id,
                       dst, (size_t)bytes, err);
}

enum pd_status pd_gguf_writer_add_tensor_raw(struct pd_gguf_writer *w, const char *name,
                                             size_t name_len, uint32_t n_dims,
                                             const uint64_t *ne, uint32_t ggml_type,
                                             const void *data, size_t size,
                                             struct pd_err *err)
{
    if (n_dims > PD_GGUF_WRITER_DIMS_MAX || (n_dims > 0 && !ne) || (size > 0 && !data)) {
        return pd_err_set(err, PD_EINVAL, "gguf writer: raw tensor: bad arguments");
    }
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) {
        return pd_err_set(err, PD_ENOMEM, "gguf writer: out of memory");
    }
    if (size) {
        memcpy(copy, data, size);
    }
    return push_tensor(w, name ? name : "", name ? name_len : 0, n_dims, ne, ggml_type, copy,
                       size, err);
}

enum pd_status pd_gguf_writer_set_tensor_offset(struct pd_gguf_writer *w, size_t index,
                                                uint64_t offset, struct pd_err *err)
{
    if (index >= w->n_tensors) {
        return pd_err_set(err, PD_EINVAL, "gguf writer: tensor index %zu out of range", index);
    }
    w->tensors[index].offset_set = true;
    w->tensors[index].offset_override = offset;
    return PD_OK;
}

/* ---- serialisation ---- */

struct ser {
    struct pd_gguf_writer *w;
    struct pd_buf buf;
    bool ok;
};

static void ser_bytes(struct ser *s, const void *p, size_t n)
{
    if (s->ok && n > 0 && !pd_buf_append(&s->buf, p, n)) {
        s->ok = false;
    }
}

static void ser_num(struct ser *s, uint64_t v, uint32_t width, const char *what)
{
    struct pd_gguf_writer *w = s->w;
    if (!s->ok) {
        return;
    }
    struct pd_gguf_writer_field *nf = pd_grow_array(w->fields, &w->cap_fields, w->n_fields + 1,
                                                    sizeof *w->fields);
    if (!nf) {
        s->ok = false;
        return;
    }
    w->fields = nf;
    w->fields[w->n_fields++] = (struct pd_gguf_writer_field){s->buf.len, width, what};
    uint8_t b[8];
    put_le(b, v, width);
    ser_bytes(s, b, width);
}

static void ser_str(struct ser *s, const char *p, size_t n, const char *what)
{
    ser_num(s, n, 8, what);
    ser_bytes(s, p, n);
}

static void ser_zeros(struct ser *s, uint64_t n)
{
    static const uint8_t zeros[256];
    while (s->ok && n > 0) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        ser_bytes(s, zeros, k);
        n -= k;
    }
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

static void ser_kv(struct ser *s, const struct wkv *kv)
{
    ser_str(s, kv->key.s, kv->key.n, "key length");
    ser_num(s, kv->type, 4, "value type");
    if (kv->raw) {
        ser_bytes(s, kv->bytes, kv->n_bytes);
    } else if (kv->type == PD_GGUF_STRING) {
        ser_str(s, (const char *)kv->bytes, kv->n_bytes, "string length");
    } else if (kv->type == PD_GGUF_ARRAY) {
        ser_num(s, kv->elem, 4, "array type");
        ser_num(s, kv->n, 8, "array count");
        if (kv->elem == PD_GGUF_STRING) {
            for (uint64_t i = 0; i < kv->n; i++) {
                ser_str(s, kv->strs[i].s, kv->strs[i].n, "string length");
            }
        } else {
            ser_bytes(s, kv->bytes, kv->n_bytes);
        }
    } else {
        ser_bytes(s, kv->bytes, kv->n_bytes);
    }
}

static enum pd_status serialise(struct pd_gguf_writer *w, struct pd_buf *out,
                                struct pd_err *err)
{
    struct ser s = {.w = w, .ok = true};
    pd_buf_init(&s.buf);
    w->n_fields = 0;
    memset(&w->layout, 0, sizeof w->layout);
    const uint64_t a = w->alignment;

    ser_bytes(&s, "GGUF", 4);
    ser_num(&s, w->version, 4, "version");
    ser_num(&s, w->n_tensors, 8, "n_tensors");
    ser_num(&s, w->n_kv, 8, "n_kv");
    struct pd_gguf_writer_layout lay = {.kv_start = s.buf.len};
    for (size_t i = 0; i < w->n_kv; i++) {
        ser_kv(&s, &w->kv[i]);
    }
    lay.tensor_info_start = s.buf.len;
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const struct wtensor *t = &w->tensors[i];
        off = align_up(off, a);
        ser_str(&s, t->name.s, t->name.n, "string length");
        ser_num(&s, t->n_dims, 4, "n_dims");
        for (uint32_t d = 0; d < t->n_dims; d++) {
            ser_num(&s, t->ne[d], 8, "ne");
        }
        ser_num(&s, t->ggml_type, 4, "tensor type");
        ser_num(&s, t->offset_set ? t->offset_override : off, 8, "tensor offset");
        off += t->size;
    }
    lay.padding_start = s.buf.len;
    lay.data_start = align_up(s.buf.len, a);
    ser_zeros(&s, lay.data_start - s.buf.len);
    for (size_t i = 0; i < w->n_tensors; i++) {
        ser_zeros(&s, align_up(s.buf.len - lay.data_start, a) - (s.buf.len - lay.data_start));
        ser_bytes(&s, w->tensors[i].data, w->tensors[i].size);
    }
    ser_zeros(&s, align_up(s.buf.len, a) - s.buf.len);
    lay.size = s.buf.len;
    if (!s.ok) {
        pd_buf_deinit(&s.buf);
        w->n_fields = 0;
        return pd_err_set(err, PD_ENOMEM, "gguf writer: out of memory");
    }
    w->layout = lay;
    *out = s.buf;
    return PD_OK;
}

enum pd_status pd_gguf_writer_write_mem(struct pd_gguf_writer *w, void **out, size_t *len,
                                        struct pd_err *err)
{
    struct pd_buf b;
    enum pd_status rc = serialise(w, &b, err);
    if (rc != PD_OK) {
        return rc;
    }
    *len = b.len;
    if (!b.data) { /* cannot happen (the magic is always written), but keep it total */
        b.data = malloc(1);
        if (!b.data) {
            return pd_err_set(err, PD_ENOMEM, "gguf writer: out of memory");
        }
    }
    *out = pd_buf_take(&b);
    return PD_OK;
}

static bool write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR) {
                continue;
            }
            return false;
        }
        p += k;
        n -= (size_t)k;
    }
    return true;
}

enum pd_status pd_gguf_writer_write_file(struct pd_gguf_writer *w, const char *path,
                                         struct pd_err *err)
{
    struct pd_buf b;
    enum pd_status rc = serialise(w, &b, err);
    if (rc != PD_OK) {
        return rc;
    }
    struct pd_buf tmp;
    pd_buf_init(&tmp);
    int fd = -1;
    bool created = false;
    if (!pd_buf_printf(&tmp, "%s.tmp.XXXXXX", path)) {
        rc = pd_err_set(err, PD_ENOMEM, "gguf writer: out of memory");
        goto fail;
    }
    fd = mkstemp(tmp.data);
    if (fd < 0) {
        rc = pd_err_set(err, PD_EIO, "%s: cannot create temp file: %s", path, strerror(errno));
        goto fail;
    }
    created = true;
    if (!write_all(fd, b.data, b.len) || fsync(fd) != 0) {
        rc = pd_err_set(err, PD_EIO, "%s: write failed: %s", path, strerror(errno));
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = pd_err_set(err, PD_EIO, "%s: close failed: %s", path, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp.data, path) != 0) {
        rc = pd_err_set(err, PD_EIO, "%s: rename failed: %s", path, strerror(errno));
        goto fail;
    }
    pd_buf_deinit(&tmp);
    pd_buf_deinit(&b);
    return PD_OK;

fail:
    if (fd >= 0) {
        close(fd);
    }
    if (created) {
        unlink(tmp.data);
    }
    pd_buf_deinit(&tmp);
    pd_buf_deinit(&b);
    return rc;
}

void pd_gguf_writer_layout(const struct pd_gguf_writer *w, struct pd_gguf_writer_layout *out)
{
    *out = w->layout;
}

size_t pd_gguf_writer_fields(const struct pd_gguf_writer *w,
                             const struct pd_gguf_writer_field **fields)
{
    *fields = w->fields;
    return w->n_fields;
}
