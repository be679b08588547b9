/* dtype.h - tensor element types and the one type-traits table.
 *
 * ponder's internal enum is dense (0..PD_DTYPE_COUNT-1) so tables index it directly;
 * each entry records the GGML/GGUF type id it corresponds to on disk. Quantised types
 * are stored in blocks of `block_size` elements taking `type_size` bytes.
 *
 * Matrix-vector products follow GGUF's CPU convention: the activation row is first
 * converted to the weight type's `vec_dot_type` (F16 for F16 weights, Q8_0 for Q8_0, Q4_0
 * and Q5_0, Q8_1 for Q4_1 and Q5_1, Q8_K for the K-quants, F32 for F32) and then dotted
 * block by block, so results agree
 * with llama.cpp's CPU kernels to rounding.
 *
 * All functions are pure and thread-safe. */
#ifndef PD_DTYPE_H
#define PD_DTYPE_H

#include <stddef.h>
#include <stdint.h>

enum pd_dtype {
    PD_DTYPE_F32,
    PD_DTYPE_F16,
    PD_DTYPE_BF16,
    PD_DTYPE_Q8_0,
    PD_DTYPE_Q4_0,
    PD_DTYPE_Q4_K,
    PD_DTYPE_Q5_K,
    PD_DTYPE_Q6_K,
    PD_DTYPE_Q8_K,   /* activation-only type (vec_dot_type of the K-quants) */
    PD_DTYPE_Q5_0,
    PD_DTYPE_Q4_1,
    PD_DTYPE_Q5_1,
    PD_DTYPE_Q8_1,   /* activation-only type (vec_dot_type of q4_1 and q5_1) */
    PD_DTYPE_COUNT
};

/* Converts n floats (n a multiple of block_size) to this type's storage. */
typedef void (*pd_from_f32_fn)(const float *src, void *dst, size_t n);
/* Converts n elements (n a multiple of block_size) of storage to floats. */
typedef void (*pd_to_f32_fn)(const void *src, float *dst, size_t n);
/* Dot product of n elements: w in this type, x in vec_dot_type storage. */
typedef float (*pd_vec_dot_fn)(const void *w, const void *x, size_t n);

struct pd_dtype_traits {
    const char *name;          /* "f32", "q4_k", ... as in GGUF tooling */
    uint32_t ggml_id;          /* GGUF tensor type id */
    uint32_t block_size;       /* elements per block */
    uint32_t type_size;        /* bytes per block */
    enum pd_dtype vec_dot_type;/* activation format for vec_dot */
    pd_to_f32_fn to_f32;
    pd_from_f32_fn from_f32;   /* quantiser (same bytes at every SIMD level) */
    pd_vec_dot_fn vec_dot;     /* NULL for activation-only types */
};

/* The traits of t; t must be < PD_DTYPE_COUNT. The function pointers are the portable
 * reference kernels; hot loops take the run-time SIMD level's through pd_simd_traits
 * (simd.h), which has the same names and geometry. */
const struct pd_dtype_traits *pd_dtype_traits(enum pd_dtype t);

/* Q8_K and Q8_1: formats of activations only (a weight is never read in them). */
static inline int pd_dtype_activation_only(enum pd_dtype t)
{
    return t == PD_DTYPE_Q8_K || t == PD_DTYPE_Q8_1;
}

/* Maps a GGUF type id to ponder's enum. Returns 0 on success, -1 if ponder does not
 * support that id (the caller reports the id). */
int pd_dtype_from_ggml(uint32_t ggml_id, enum pd_dtype *out);

/* Parses a name ("q4_k", "F16", case-insensitive); returns PD_DTYPE_COUNT if unknown. */
enum pd_dtype pd_dtype_parse(const char *name);

/* Bytes needed for n elements of t; 0 if n is not a multiple of the block size or the
 * size overflows (callers treat 0 for n > 0 as an error). */
uint64_t pd_dtype_row_size(enum pd_dtype t, uint64_t n);

#endif
