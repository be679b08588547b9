/* attn_blob.h - the attention summary blob: its byte layout and the one codec that
 * writes, validates and reads it.
 *
 * Every producer (the CPU capture, the teacher-forced scorer, the GPU engine) and every
 * consumer (store, metrics, the KV simulator, the workbench, JSON output) goes through
 * this module; nothing else knows the offsets.
 *
 * Layout (little-endian), one blob per token when capture is `summary` or `full`:
 *   u8  version (1, or 2 when the step section below follows)
 *   u8  n_layer
 *   u8  n_top              entries kept per layer (head-mean row, highest weights)
 *   u8  reserved (=0)
 *   then n_layer times:  n_top times { u32 position; f32 weight }
 *   (entries with weight 0 and position 0xFFFFFFFF pad rows shorter than n_top)
 *   version 2 only:      u32 n_steps; n_steps times { u32 begin; f32 mass }
 *   (the reasoning steps known when the token was evaluated, in order: step k covers
 *   positions begin[k] .. begin[k+1]-1 (the last one up to the token itself); mass[k] is
 *   the head-mean row's total weight on those positions, averaged over layers; positions
 *   before the first step count for none)
 * Size = 4 + n_layer * n_top * 8, plus 4 + 8 * n_steps for version 2.
 *
 * Ownership: every function borrows its buffers for the call; a view borrows the blob
 * and is valid while the blob is. Pure and reentrant. */
#ifndef PD_ATTN_BLOB_H
#define PD_ATTN_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define PD_ATTN_BLOB_HEADER 4
#define PD_ATTN_BLOB_ENTRY 8        /* u32 position + f32 weight */
#define PD_ATTN_BLOB_STEP 8         /* u32 begin + f32 mass */
#define PD_ATTN_POS_PAD 0xFFFFFFFFu /* position of a padding entry */
#define PD_ATTN_STEPS_MAX (1u << 20)

/* A blob whose layout was checked (borrowed view). */
struct pd_attn_view {
    const uint8_t *blob;  /* borrowed */
    uint32_t n_layer;
    uint32_t n_top;
    uint32_t n_steps;     /* 0 for version 1 */
};

/* ---- writing ----------------------------------------------------------------------- */

/* Bytes of a blob with n_layer x n_top entries and n_steps step masses (version 2 when
 * n_steps > 0); 0 when n_layer or n_top is 0 or above 255, or n_steps above
 * PD_ATTN_STEPS_MAX. */
size_t pd_attn_blob_size(uint32_t n_layer, uint32_t n_top, uint32_t n_steps);

/* Writes a version-1 header into blob (pd_attn_blob_size(n_layer, n_top, 0) bytes at
 * least) and fills every entry with padding. n_layer and n_top in 1..255. */
void pd_attn_blob_init(uint8_t *blob, uint32_t n_layer, uint32_t n_top);

/* Writes entry k (< n_top) of layer l (< n_layer) of an initialised blob. */
void pd_attn_blob_set(uint8_t *blob, uint32_t l, uint32_t k, uint32_t pos, float weight);

/* Appends the step section to an initialised blob whose buffer holds
 * pd_attn_blob_size(n_layer, n_top, n_steps) bytes and marks it version 2 (n_steps 0:
 * nothing happens, the blob stays version 1). begin[k] are step start positions
 * (< 2^32), mass[k] their masses; a mass rounded above 1 is stored as 1. */
void pd_attn_blob_put_steps(uint8_t *blob, uint32_t n_steps, const int64_t *begin,
                            const float *mass);

/* ---- reading ----------------------------------------------------------------------- */

/* Checks the header and the length (version 1 or 2, n_layer and n_top >= 1, reserved
 * byte 0, the exact size for the version, n_steps <= PD_ATTN_STEPS_MAX) and fills *v;
 * false when inconsistent. Does not look at the entries' values. */
bool pd_attn_blob_layout(const uint8_t *blob, size_t len, struct pd_attn_view *v);

/* Checks a whole blob: its layout, every weight and step mass finite and in [0, 1] (with
 * 1e-3 slack for rounding), padding entries of weight 0; fills *v (may be NULL).
 * PD_EFORMAT with a message naming the first bad field (the caller prefixes where the
 * blob came from). */
enum pd_status pd_attn_blob_check(const uint8_t *blob, size_t len, struct pd_attn_view *v,
                                  struct pd_err *err);

/* Entry k (< n_top) of layer l (< n_layer), padding included. */
void pd_attn_view_get(const struct pd_attn_view *v, uint32_t l, uint32_t k, uint32_t *pos,
                      float *weight);

/* Entry k of layer l when it is a real one: false when out of range, padding, or its
 * weight is not finite. */
bool pd_attn_view_entry(const struct pd_attn_view *v, uint32_t l, uint32_t k, uint32_t *pos,
                        float *weight);

/* Step k (< n_steps): the position it begins at, and the token's attention mass on it. */
int64_t pd_attn_view_step_begin(const struct pd_attn_view *v, uint32_t k);
float pd_attn_view_step_mass(const struct pd_attn_view *v, uint32_t k);

#endif
