/* store_blob.h - the compact per-token blobs the store keeps: top-k and attention.
 *
 * Top-k blob (version 1, little-endian), stored in tokens.topk when n_top > 0:
 *   u8  version (=1)
 *   u8  n_top              1..PD_TOPK_MAX entries, most likely first
 *   u16 reserved (=0)
 *   then n_top times { i32 token id; f32 logprob (natural log) }
 * Total size = 4 + n_top * 8 bytes. A token without alternatives stores NULL.
 *
 * The attention summary blob is defined in base/attn_blob.h; the store validates it with
 * pd_attn_blob_check before writing and after reading.
 *
 * Pure functions, no allocation except where stated, thread-safe. */
#ifndef PD_STORE_BLOB_H
#define PD_STORE_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "trace.h"

#define PD_TOPK_BLOB_VERSION 1
#define PD_TOPK_BLOB_MAX (4 + PD_TOPK_MAX * 8)

/* Encodes top[0..n_top) into out (at least PD_TOPK_BLOB_MAX bytes); returns the size,
 * or 0 when n_top is 0 or above PD_TOPK_MAX. */
size_t pd_topk_blob_encode(const struct pd_topk *top, size_t n_top, uint8_t *out);

/* Decodes a top-k blob into top[PD_TOPK_MAX] and *n_top. PD_EFORMAT (message names the
 * problem) for a wrong version, count, reserved bytes or size. */
enum pd_status pd_topk_blob_decode(const uint8_t *blob, size_t len, struct pd_topk *top,
                                   uint8_t *n_top, struct pd_err *err);

#endif
