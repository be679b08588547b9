/* gguf.h - GGUF v2/v3 reader over a memory map, with full validation.
 *
 * pd_gguf_open maps the file read-only and parses the header, every metadata key/value,
 * and the tensor table. Everything is validated before use: magic, version, counts
 * (bounded by bytes remaining and hard maxima), string lengths, value types, array
 * element types and lengths, dims (1..4, each > 0, product overflow-checked), tensor
 * type ids, alignment (power of two), offsets (aligned, inside the data section) and
 * sizes, duplicate keys and duplicate tensor names, tensor overlaps. Errors name the field:
 *     "<path>: tensor 'blk.0.attn_q.weight': offset 96: data runs past end of file
 *      (needs 4096 bytes, 100 left)"
 * The full rule list and the block layouts are in docs/gguf.md.
 *
 * Ownership: struct pd_gguf owns the mapping and its index arrays. Strings and tensor
 * data pointers point into the mapping and stay valid until pd_gguf_close.
 * Thread-safety: read-only after open; concurrent readers are fine. */
#ifndef PD_GGUF_H
#define PD_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "dtype.h"

enum pd_gguf_vtype {
    PD_GGUF_UINT8 = 0,
    PD_GGUF_INT8 = 1,
    PD_GGUF_UINT16 = 2,
    PD_GGUF_INT16 = 3,
    PD_GGUF_UINT32 = 4,
    PD_GGUF_INT32 = 5,
    PD_GGUF_FLOAT32 = 6,
    PD_GGUF_BOOL = 7,
    PD_GGUF_STRING = 8,
    PD_GGUF_ARRAY = 9,
    PD_GGUF_UINT64 = 10,
    PD_GGUF_INT64 = 11,
    PD_GGUF_FLOAT64 = 12,
    PD_GGUF_VTYPE_COUNT
};

/* A string inside the mapping: not NUL-terminated. */
struct pd_gguf_str {
    const char *s;
    uint64_t n;
};

struct pd_gguf_kv {
    struct pd_gguf_str key;
    enum pd_gguf_vtype type;
    union {
        uint64_t u;          /* UINT8..UINT64, BOOL (0/1) */
        int64_t i;           /* INT8..INT64 */
        double f;            /* FLOAT32, FLOAT64 */
        struct pd_gguf_str str;
        struct {
            enum pd_gguf_vtype elem;  /* never ARRAY (nested arrays are rejected) */
            uint64_t n;
            const void *data;         /* raw little-endian elements (non-string) */
            const struct pd_gguf_str *strs; /* owned index, for STRING arrays only */
        } arr;
    } v;
};

#define PD_GGUF_MAX_DIMS 4

struct pd_gguf_tensor {
    struct pd_gguf_str name;
    uint32_t n_dims;
    uint64_t ne[PD_GGUF_MAX_DIMS]; /* ne[0] is the contiguous (row) dimension; unused = 1 */
    enum pd_dtype type;
    uint64_t offset;               /* relative to the data section */
    uint64_t size;                 /* bytes */
    const void *data;              /* into the mapping */
};

struct pd_gguf {
    char *path;                     /* owned copy, for messages */
    const uint8_t *base;            /* mapping (or the caller's buffer for open_mem) */
    uint64_t size;
    int owns_map;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;
    uint64_t n_kv;
    struct pd_gguf_kv *kv;          /* owned [n_kv] */
    uint64_t n_tensors;
    struct pd_gguf_tensor *tensors; /* owned [n_tensors] */
};

/* Opens and validates path. On success *out owns the mapping; on failure *out is NULL
 * and err says "<path>: <field>: <what is wrong>". */
enum pd_status pd_gguf_open(const char *path, struct pd_gguf **out, struct pd_err *err);

/* Same over a caller-owned buffer that must outlive the returned object (fuzz tests).
 * `name` is used in messages. */
enum pd_status pd_gguf_open_mem(const void *buf, size_t len, const char *name,
                                struct pd_gguf **out, struct pd_err *err);

/* Tells the system that the mapping's whole pages inside [p, p + n) will not be read
 * soon: they leave this process's memory and are read again from the file if touched.
 * Nothing for a caller's buffer (pd_gguf_open_mem). p must lie inside g's data. */
void pd_gguf_release(const struct pd_gguf *g, const void *p, uint64_t n);

/* Unmaps and frees; accepts NULL and *g == NULL; sets *g to NULL. */
void pd_gguf_close(struct pd_gguf **g);

/* Lookup by key; NULL if absent. */
const struct pd_gguf_kv *pd_gguf_find(const struct pd_gguf *g, const char *key);

/* Typed getters. Return PD_OK and set *out; PD_EINVAL (key absent: err untouched, so
 * callers can fall back to defaults) or PD_EFORMAT (present with the wrong type or out of
 * range: err names the key). Integer getters accept any integer type whose value fits;
 * get_f32 accepts float32, float64 within float range, and integers. *out is written only
 * on PD_OK. */
enum pd_status pd_gguf_get_u32(const struct pd_gguf *g, const char *key, uint32_t *out,
                               struct pd_err *err);
enum pd_status pd_gguf_get_u64(const struct pd_gguf *g, const char *key, uint64_t *out,
                               struct pd_err *err);
enum pd_status pd_gguf_get_f32(const struct pd_gguf *g, const char *key, float *out,
                               struct pd_err *err);
enum pd_status pd_gguf_get_bool(const struct pd_gguf *g, const char *key, bool *out,
                                struct pd_err *err);
enum pd_status pd_gguf_get_str(const struct pd_gguf *g, const char *key,
                               struct pd_gguf_str *out, struct pd_err *err);
/* Array getter: checks that the key is an array of elem type `elem`. */
enum pd_status pd_gguf_get_arr(const struct pd_gguf *g, const char *key,
                               enum pd_gguf_vtype elem, const struct pd_gguf_kv **out,
                               struct pd_err *err);

/* Element i of a non-string array (kv->type == ARRAY, elem not STRING; i < kv->v.arr.n:
 * both are the caller's preconditions). Elements are decoded from little-endian whatever
 * their alignment. _u64/_i64 zero- or sign-extend integer and bool elements by the element
 * type (floats give their raw bits); _f64 converts any numeric element to double. */
uint64_t pd_gguf_arr_u64(const struct pd_gguf_kv *kv, uint64_t i);
int64_t pd_gguf_arr_i64(const struct pd_gguf_kv *kv, uint64_t i);
double pd_gguf_arr_f64(const struct pd_gguf_kv *kv, uint64_t i);

/* Tensor lookup by name; NULL if absent. */
const struct pd_gguf_tensor *pd_gguf_find_tensor(const struct pd_gguf *g, const char *name);

/* Name of a value type ("uint32", "string", ...), "?" if out of range. */
const char *pd_gguf_vtype_name(enum pd_gguf_vtype t);

/* True when the GGUF string equals the NUL-terminated s. */
bool pd_gguf_str_eq(struct pd_gguf_str a, const char *s);

#endif
