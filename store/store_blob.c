/* store_blob.c - encoding and validation of the per-token top-k and attention blobs.
 *
 * Byte order is fixed little-endian, written byte by byte, so files move between hosts. */
#include "store_blob.h"

#include <math.h>
#include <string.h>

#include "le.h"

size_t pd_topk_blob_encode(const struct pd_topk *top, size_t n_top, uint8_t *out)
{
    if (n_top == 0 || n_top > PD_TOPK_MAX) {
        return 0;
    }
    out[0] = PD_TOPK_BLOB_VERSION;
    out[1] = (uint8_t)n_top;
    out[2] = 0;
    out[3] = 0;
    for (size_t i = 0; i < n_top; i++) {
        pd_le_put_u32(out + 4 + i * 8, (uint32_t)top[i].id);
        pd_le_put_u32(out + 8 + i * 8, pd_f32_bits(top[i].logprob));
    }
    return 4 + n_top * 8;
}

enum pd_status pd_topk_blob_decode(const uint8_t *blob, size_t len, struct pd_topk *top,
                                   uint8_t *n_top, struct pd_err *err)
{
    if (len < 4) {
        return pd_err_set(err, PD_EFORMAT, "top-k blob: %zu bytes, header needs 4", len);
    }
    if (blob[0] != PD_TOPK_BLOB_VERSION) {
        return pd_err_set(err, PD_EFORMAT, "top-k blob: version %u, expected %u", blob[0],
                          PD_TOPK_BLOB_VERSION);
    }
    size_t n = blob[1];
    if (n == 0 || n > PD_TOPK_MAX) {
        return pd_err_set(err, PD_EFORMAT, "top-k blob: n_top %zu outside 1..%d", n,
                          PD_TOPK_MAX);
    }
    if (blob[2] != 0 || blob[3] != 0) {
        return pd_err_set(err, PD_EFORMAT, "top-k blob: reserved bytes not zero");
    }
    if (len != 4 + n * 8) {
        return pd_err_set(err, PD_EFORMAT, "top-k blob: %zu bytes, n_top %zu needs %zu", len,
                          n, 4 + n * 8);
    }
    for (size_t i = 0; i < n; i++) {
        top[i].id = (int32_t)pd_le_get_u32(blob + 4 + i * 8);
        top[i].logprob = pd_bits_f32(pd_le_get_u32(blob + 8 + i * 8));
        if (top[i].id < 0) {
            return pd_err_set(err, PD_EFORMAT, "top-k blob: entry %zu: negative token id %d",
                              i, (int)top[i].id);
        }
        /* logprobs are <= 0; -inf is a legal (impossible) alternative, NaN is not */
        if (isnan(top[i].logprob) || top[i].logprob > 1e-3f) {
            return pd_err_set(err, PD_EFORMAT, "top-k blob: entry %zu: logprob %g not <= 0",
                              i, (double)top[i].logprob);
        }
    }
    *n_top = (uint8_t)n;
    return PD_OK;
}

