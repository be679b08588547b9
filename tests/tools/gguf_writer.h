/* gguf_writer.h - builds GGUF v3 (or v2) files for tests and tools.
 *
 * A writer collects metadata key/values and tensors in memory, then serialises them to a
 * malloc'd buffer or atomically to a path (temp file + rename). Layout written:
 *     "GGUF" | u32 version | u64 n_tensors | u64 n_kv | kv pairs | tensor infos |
 *     zero padding to the alignment | tensor data, each tensor at an aligned offset
 * All integers are little-endian. The alignment is 32 unless pd_gguf_writer_set_alignment
 * (or adding a uint32 "general.alignment") changes it; a non-default alignment is written
 * as the "general.alignment" key.
 *
 * The checked functions only build well-formed files: they reject duplicate keys and
 * tensor names, empty keys, n_dims outside 1..4, zero dims and data whose size does not
 * match the dtype and shape. The `_raw` functions and the overrides below skip all checks;
 * they exist so corrupt-input tests can build exactly the broken file they need.
 *
 * Ownership: the writer copies every key, string and tensor payload it is given; callers
 * keep their buffers. Not thread-safe; one writer per thread. */
#ifndef PD_GGUF_WRITER_H
#define PD_GGUF_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "dtype.h"
#include "gguf.h"

#define PD_GGUF_WRITER_ALIGNMENT_DEFAULT 32
#define PD_GGUF_WRITER_DIMS_MAX 8 /* raw tensor infos may carry up to 8 dims */

struct pd_gguf_writer;

/* One numeric header field the last write emitted: where it is and what it holds.
 * Fuzz and corrupt-input tests use these to patch counts, lengths and offsets. */
struct pd_gguf_writer_field {
    uint64_t pos;      /* byte offset in the written file */
    uint32_t width;    /* 4 or 8 bytes */
    const char *what;  /* static: "n_kv", "key length", "value type", "string length",
                        * "array type", "array count", "n_dims", "ne", "tensor type",
                        * "tensor offset", "n_tensors", "version" */
};

/* Where the sections of the last written file start (byte offsets). */
struct pd_gguf_writer_layout {
    uint64_t kv_start;          /* first key/value pair (24) */
    uint64_t tensor_info_start; /* first tensor info */
    uint64_t padding_start;     /* end of the tensor infos */
    uint64_t data_start;        /* data section (aligned) */
    uint64_t size;              /* whole file */
};

/* Creates an empty writer (version 3, alignment 32). *out is owned by the caller and
 * released with pd_gguf_writer_close. Returns PD_ENOMEM on allocation failure. */
enum pd_status pd_gguf_writer_open(struct pd_gguf_writer **out, struct pd_err *err);

/* Frees the writer; accepts NULL and *w == NULL; sets *w to NULL. */
void pd_gguf_writer_close(struct pd_gguf_writer **w);

/* Sets the version field written to the file. 3 by default; 2 writes the identical
 * layout with version 2. Any value is accepted so tests can write unsupported versions. */
void pd_gguf_writer_set_version(struct pd_gguf_writer *w, uint32_t version);

/* Sets the alignment of the data section and of every tensor, and records it as the
 * uint32 key "general.alignment" (updating the key if it exists). PD_EINVAL unless
 * alignment is a power of two. */
enum pd_status pd_gguf_writer_set_alignment(struct pd_gguf_writer *w, uint32_t alignment,
                                            struct pd_err *err);

/* Scalar metadata. key is NUL-terminated, non-empty and not yet present (PD_EINVAL
 * otherwise, naming the key). A uint32 "general.alignment" acts as set_alignment; any other
 * type for that key is rejected. PD_ENOMEM on allocation failure. */
enum pd_status pd_gguf_writer_add_u8(struct pd_gguf_writer *w, const char *key, uint8_t v,
                                     struct pd_err *err);
enum pd_status pd_gguf_writer_add_i8(struct pd_gguf_writer *w, const char *key, int8_t v,
                                     struct pd_err *err);
enum pd_status pd_gguf_writer_add_u16(struct pd_gguf_writer *w, const char *key, uint16_t v,
                                      struct pd_err *err);
enum pd_status pd_gguf_writer_add_i16(struct pd_gguf_writer *w, const char *key, int16_t v,
                                      struct pd_err *err);
enum pd_status pd_gguf_writer_add_u32(struct pd_gguf_writer *w, const char *key, uint32_t v,
                                      struct pd_err *err);
enum pd_status pd_gguf_writer_add_i32(struct pd_gguf_writer *w, const char *key, int32_t v,
                                      struct pd_err *err);
enum pd_status pd_gguf_writer_add_u64(struct pd_gguf_writer *w, const char *key, uint64_t v,
                                      struct pd_err *err);
enum pd_status pd_gguf_writer_add_i64(struct pd_gguf_writer *w, const char *key, int64_t v,
                                      struct pd_err *err);
enum pd_status pd_gguf_writer_add_f32(struct pd_gguf_writer *w, const char *key, float v,
                                      struct pd_err *err);
enum pd_status pd_gguf_writer_add_f64(struct pd_gguf_writer *w, const char *key, double v,
                                      struct pd_err *err);
enum pd_status pd_gguf_writer_add_bool(struct pd_gguf_writer *w, const char *key, bool v,
                                       struct pd_err *err);

/* String metadata: NUL-terminated s, or s[0..n) (may hold any bytes). */
enum pd_status pd_gguf_writer_add_str(struct pd_gguf_writer *w, const char *key,
                                      const char *s, struct pd_err *err);
enum pd_status pd_gguf_writer_add_str_n(struct pd_gguf_writer *w, const char *key,
                                        const char *s, size_t n, struct pd_err *err);

/* Array of n scalars of type elem (any type but STRING and ARRAY, else PD_EINVAL).
 * data points to n host values of the matching C type (uint8_t, int8_t, ..., float,
 * double, bool); they are written little-endian. data may be NULL when n == 0. */
enum pd_status pd_gguf_writer_add_arr(struct pd_gguf_writer *w, const char *key,
                                      enum pd_gguf_vtype elem, const void *data, size_t n,
                                      struct pd_err *err);

/* Array of n strings: strs[i] with length lens[i], or strlen(strs[i]) when lens is NULL. */
enum pd_status pd_gguf_writer_add_arr_str(struct pd_gguf_writer *w, const char *key,
                                          const char *const *strs, const size_t *lens,
                                          size_t n, struct pd_err *err);

/* Unchecked key/value for corrupt-input tests: writes key[0..key_len), the u32 `type`
 * as given, then value[0..n) verbatim (the caller serialises the value, including any
 * string length or array header). No duplicate, type or alignment handling. */
enum pd_status pd_gguf_writer_add_kv_raw(struct pd_gguf_writer *w, const char *key,
                                         size_t key_len, uint32_t type, const void *value,
                                         size_t n, struct pd_err *err);

/* Adds a tensor: name (NUL-terminated, non-empty, unique), n_dims in 1..4, ne[0..n_dims)
 * each > 0 (ne[0] is the contiguous dimension and a multiple of the dtype's block
 * size), and `size` bytes of data already in dtype's storage format, which must equal
 * pd_dtype_row_size(dtype, ne[0]) * ne[1] * ... . dtype must be a stored type (not Q8_K).
 * Tensors are laid out in the order added. PD_EINVAL names the tensor on any mismatch. */
enum pd_status pd_gguf_writer_add_tensor(struct pd_gguf_writer *w, const char *name,
                                         uint32_t n_dims, const uint64_t *ne,
                                         enum pd_dtype dtype, const void *data, size_t size,
                                         struct pd_err *err);

/* Same, converting n floats (the product of ne) with the dtype's reference quantiser. */
enum pd_status pd_gguf_writer_add_tensor_f32(struct pd_gguf_writer *w, const char *name,
                                             uint32_t n_dims, const uint64_t *ne,
                                             enum pd_dtype dtype, const float *src,
                                             struct pd_err *err);

/* Unchecked tensor for corrupt-input tests: name[0..name_len), n_dims in
 * 0..PD_GGUF_WRITER_DIMS_MAX (ne may be NULL when 0), any GGUF type id, any payload. The
 * payload is placed at the next aligned offset like any other tensor. */
enum pd_status pd_gguf_writer_add_tensor_raw(struct pd_gguf_writer *w, const char *name,
                                             size_t name_len, uint32_t n_dims,
                                             const uint64_t *ne, uint32_t ggml_type,
                                             const void *data, size_t size,
                                             struct pd_err *err);

/* Overrides the offset written in the tensor info of tensor number `index` (in the order
 * added); the payload stays where the layout puts it. PD_EINVAL if index is out of range. */
enum pd_status pd_gguf_writer_set_tensor_offset(struct pd_gguf_writer *w, size_t index,
                                                uint64_t offset, struct pd_err *err);

/* Serialises to a malloc'd buffer: *out (owned by the caller, free()) and *len. */
enum pd_status pd_gguf_writer_write_mem(struct pd_gguf_writer *w, void **out, size_t *len,
                                        struct pd_err *err);

/* Serialises to path atomically: writes "<path>.tmp.XXXXXX" in the same directory, syncs,
 * and renames it over path. On failure the temp file is removed and PD_EIO names the path. */
enum pd_status pd_gguf_writer_write_file(struct pd_gguf_writer *w, const char *path,
                                         struct pd_err *err);

/* Layout and numeric header fields of the last successful write (zeroes / 0 fields before
 * the first). *fields is borrowed: valid until the next write or close. */
void pd_gguf_writer_layout(const struct pd_gguf_writer *w,
                           struct pd_gguf_writer_layout *out);
size_t pd_gguf_writer_fields(const struct pd_gguf_writer *w,
                             const struct pd_gguf_writer_field **fields);

#endif
