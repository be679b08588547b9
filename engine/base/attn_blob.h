/* attn_blob.h - the attention summary blob: its byte layout and the one codec that
 * writes, validates and reads it.
 *
 * Every producer (the CPU capture, the teacher-forced scorer, the GPU engine) and every
 * consumer (store, metrics, the KV simulator, the workbench, JSON output) goes through
 * this module; nothing else knows the offsets.
 *
 * Layout (little-endian), one blob per token when capture is `summary` or `full`:
 *   u8  version (1; 3 when the step section below follows; 2 is read, no longer written)
 *   u8  n_layer
 *   u8  n_top              entries kept per layer (head-mean row, highest weights)
 *   u8  reserved (=0)
 *   then n_layer times:  n_top times { u32 position; f32 weight }
 *   (entries with weight 0 and position 0xFFFFFFFF pad rows shorter than n_top)
 *   version 3 only:      u32 n_known; u32 first; u32 n_steps;
 *                        n_steps times { u32 begin; u32 end; f32 mass }
 *   (n_known reasoning steps were known when the token was evaluated, the first beginning
 *   at position `first`; steps are contiguous, so each ends where the next begins, the
 *   token's own step (the last one beginning at or before it) at the token itself.
 *   Listed, in order, are the steps the token attends to: every step with mass > 0, and
 *   always its own step; a step left out has mass 0 (under an eviction policy, every step
 *   whose slots were all evicted). begin .. end-1 are the step's positions; mass is the
 *   head-mean row's total weight on them, averaged over layers; positions before the
 *   first step count for none. Listing only what is attended keeps a summary bounded by
 *   the cache instead of growing with the number of steps.)
 *   version 2 (older databases): u32 n_steps; n_steps times { u32 begin; f32 mass }: every
 *   known step, each ending where the next begins, the last at the token.
 * Size = 4 + n_layer * n_top * 8, plus 12 + 12 * n_steps for version 3 (4 + 8 * n_steps
 * for version 2).
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
#define PD_ATTN_BLOB_STEP 12        /* u32 begin + u32 end + f32 mass (version 3) */
#define PD_ATTN_BLOB_STEP_V2 8      /* u32 begin + f32 mass (version 2) */
#define PD_ATTN_POS_PAD 0xFFFFFFFFu /* position of a padding entry */
#define PD_ATTN_STEPS_MAX (1u << 20)

/* A blob whose layout was checked (borrowed view). */
struct pd_attn_view {
    const uint8_t *blob;  /* borrowed */
    uint32_t n_layer;
    uint32_t n_top;
    uint32_t version;     /* 1, 2 or 3 */
    uint32_t n_steps;     /* steps listed; 0 for version 1 */
    uint32_t n_known;     /* steps known when the token was evaluated (version 2: n_steps) */
};

/* ---- writing ----------------------------------------------------------------------- */

/* Bytes of a blob with n_layer x n_top entries and n_steps listed steps (version 3 when
 * n_steps > 0); 0 when n_layer or n_top is 0 or above 255, or n_steps above
 * PD_ATTN_STEPS_MAX. */
size_t pd_attn_blob_size(uint32_t n_layer, uint32_t n_top, uint32_t n_steps);

/* How many steps pd_attn_blob_put_steps lists for a token at position pos, given the
 * n_known steps beginning at begin[0..n_known) (ascending) with masses mass[..]: those
 * with mass > 0 and the token's own step; 0 when the token precedes every step. */
uint32_t pd_attn_blob_steps_listed(uint32_t n_known, const int64_t *begin, const float *mass,
                                   int64_t pos);

/* Writes a version-1 header into blob (pd_attn_blob_size(n_layer, n_top, 0) bytes at
 * least) and fills every entry with padding. n_layer and n_top in 1..255. */
void pd_attn_blob_init(uint8_t *blob, uint32_t n_layer, uint32_t n_top);

/* Writes entry k (< n_top) of layer l (< n_layer) of an initialised blob. */
void pd_attn_blob_set(uint8_t *blob, uint32_t l, uint32_t k, uint32_t pos, float weight);

/* Appends the step section of a token at position pos to an initialised blob whose
 * buffer holds pd_attn_blob_size(n_layer, n_top, pd_attn_blob_steps_listed(...)) bytes
 * and marks it version 3 (nothing listed: nothing happens, the blob stays version 1). begin[k] are the known steps' start
 * positions, ascending (< 2^32), mass[k] their masses; only steps with mass > 0 and the
 * token's own step are written; a mass rounded above 1 is stored as 1. */
void pd_attn_blob_put_steps(uint8_t *blob, uint32_t n_known, const int64_t *begin,
                            const float *mass, int64_t pos);

/* ---- reading ----------------------------------------------------------------------- */

/* Checks the header and the length (version 1, 2 or 3, n_layer and n_top >= 1, reserved
 * byte 0, the exact size for the version, n_steps <= n_known <= PD_ATTN_STEPS_MAX) and
 * fills *v; false when inconsistent. Does not look at the entries' values. */
bool pd_attn_blob_layout(const uint8_t *blob, size_t len, struct pd_attn_view *v);

/* Checks a whole blob: its layout, every weight and step mass finite and in [0, 1] (with
 * 1e-3 slack for rounding), padding entries of weight 0, listed steps in order and not
 * overlapping (begin >= first, begin < end <= next begin); fills *v (may be NULL).
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

/* Listed step k (< n_steps): the position it begins at, the position after its last one
 * (-1 for the last step of a version-2 blob: it ends at the token), and the token's
 * attention mass on it. */
int64_t pd_attn_view_step_begin(const struct pd_attn_view *v, uint32_t k);
int64_t pd_attn_view_step_end(const struct pd_attn_view *v, uint32_t k);
float pd_attn_view_step_mass(const struct pd_attn_view *v, uint32_t k);

/* The first position of the first known step (-1 when no step was known). */
int64_t pd_attn_view_first_step(const struct pd_attn_view *v);

#endif
