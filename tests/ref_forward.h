/* ref_forward.h - a plain float64 transformer forward pass, the second oracle of the
 * engine tests. No batching, no cache tricks, no threads: every position recomputes its
 * attention over all earlier positions from stored K/V. Weights are dequantised rows
 * (exact for F32 files); activations are never quantised. Supports llama, qwen2, qwen3.
 * An optional `hide(pos_q, pos_k)` excludes key positions from a query's attention, so
 * tests can recompute what an eviction policy should have produced. */
#ifndef PD_TEST_REF_FORWARD_H
#define PD_TEST_REF_FORWARD_H

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "model.h"

typedef bool (*ref_hide_fn)(void *ud, size_t q, size_t k);

/* When set, every matrix product first rounds its input row the way the weight type's dot
 * format stores it (f16, bf16, q8_0, q8_1, q8_K), as the file format prescribes for CPU
 * inference; the products themselves stay exact. Against q8_1 (q4_1 and q5_1 weights) each
 * block's offset m multiplies the block's stored s (the half of d * sum(qs)), as the format's
 * dot product does, instead of the sum of the rounded inputs. */
static bool ref_round_activations;

static float ref_half(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return pd_f16_to_f32(h);
}

static void ref_matvec(const struct pd_weight *w, const double *x_in, double *y, float *rowbuf)
{
    const double *x = x_in;
    double *xr = NULL;
    uint8_t *q = NULL;
    bool q8_1 = false;
    if (ref_round_activations) {
        enum pd_dtype vdt = pd_dtype_traits(w->type)->vec_dot_type;
        const struct pd_dtype_traits *vt = pd_dtype_traits(vdt);
        size_t n = (size_t)w->cols;
        float *f = malloc(n * sizeof *f);
        q = malloc(n * 4 + 1024);
        xr = malloc(n * sizeof *xr);
        for (size_t i = 0; i < n; i++) {
            f[i] = (float)x_in[i];
        }
        vt->from_f32(f, q, n);
        vt->to_f32(q, f, n);
        for (size_t i = 0; i < n; i++) {
            xr[i] = f[i];
        }
        free(f);
        x = xr;
        q8_1 = vdt == PD_DTYPE_Q8_1;
    }
    size_t wbytes = pd_dtype_traits(w->type)->type_size;
    for (uint64_t r = 0; r < w->rows; r++) {
        pd_weight_row_f32(w, r, rowbuf);
        double s = 0.0;
        for (uint64_t c = 0; c < w->cols; c++) {
            s += (double)rowbuf[c] * x[c];
        }
        for (uint64_t b = 0; q8_1 && b < w->cols / 32; b++) {
            double xs = 0.0;
            for (uint64_t l = 0; l < 32; l++) {
                xs += x[32 * b + l];
            }
            double m = ref_half(w->data + r * w->row_bytes + b * wbytes + 2);
            s += m * ((double)ref_half(q + 36 * b + 2) - xs);
        }
        y[r] = s;
    }
    free(q);
    free(xr);
}

static void ref_rmsnorm(double *out, const double *x, const float *w, size_t n, double eps)
{
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) {
        ss += x[i] * x[i];
    }
    double sc = 1.0 / sqrt(ss / (double)n + eps);
    for (size_t i = 0; i < n; i++) {
        out[i] = x[i] * sc * w[i];
    }
}

static void ref_rope(double *x, const struct pd_hparams *hp, const float *freq_div, size_t pos)
{
    size_t half = hp->n_rot / 2;
    for (size_t i = 0; i < half; i++) {
        double theta = (double)pos * hp->rope_freq_scale *
                       pow(hp->rope_base, -2.0 * (double)i / (double)hp->n_rot) /
                       (freq_div ? freq_div[i] : 1.0);
        double c = cos(theta), s = sin(theta);
        size_t a = hp->rope_type == PD_ROPE_NORM ? 2 * i : i;
        size_t b = hp->rope_type == PD_ROPE_NORM ? 2 * i + 1 : i + half;
        double x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
}

/* Computes logits[n][n_vocab] (natural-log-unnormalised) for tokens[0..n). When attn is
 * non-NULL, stores the attention of query position attn_pos: [n_layer][n_head][n]. */
static void ref_forward(const struct pd_model *m, const int32_t *tokens, size_t n,
                        double *logits, size_t attn_pos, double *attn, ref_hide_fn hide,
                        void *hide_ud)
{
    const struct pd_hparams *hp = &m->hp;
    size_t E = hp->n_embd, F = hp->n_ff, H = hp->n_head, HKV = hp->n_head_kv;
    size_t hd = hp->head_dim, hdv = hp->head_dim_v, V = hp->n_vocab, L = hp->n_layer;
    size_t qd = H * hd, kd = HKV * hd, vd = HKV * hdv, od = H * hdv;
    size_t wide = E > F ? E : F;
    wide = wide > od ? wide : od;
    wide = wide > V ? wide : V;
    float *rowbuf = malloc(wide * sizeof(float));
    double *x = malloc(E * sizeof(double)), *xn = malloc(wide * sizeof(double));
    double *q = malloc(qd * sizeof(double)), *o = malloc(od * sizeof(double));
    double *g = malloc(F * sizeof(double)), *u = malloc(F * sizeof(double));
    double *tmp = malloc(wide * sizeof(double)), *sc = malloc(n * sizeof(double));
    double *K = malloc(L * n * kd * sizeof(double)), *Vv = malloc(L * n * vd * sizeof(double));
    for (size_t t = 0; t < n; t++) {
        pd_weight_row_f32(&m->tok_embd, (uint64_t)tokens[t], rowbuf);
        for (size_t i = 0; i < E; i++) {
            x[i] = rowbuf[i];
        }
        for (size_t il = 0; il < L; il++) {
            const struct pd_layer *ly = &m->layers[il];
            double *k = K + (il * n + t) * kd, *v = Vv + (il * n + t) * vd;
            ref_rmsnorm(xn, x, (const float *)ly->attn_norm.data, E, hp->norm_eps);
            ref_matvec(&ly->wq, xn, q, rowbuf);
            ref_matvec(&ly->wk, xn, k, rowbuf);
            ref_matvec(&ly->wv, xn, v, rowbuf);
            if (ly->bq.data) {
                for (size_t i = 0; i < qd; i++) {
                    q[i] += ((const float *)ly->bq.data)[i];
                }
                for (size_t i = 0; i < kd; i++) {
                    k[i] += ((const float *)ly->bk.data)[i];
                }
                for (size_t i = 0; i < vd; i++) {
                    v[i] += ((const float *)ly->bv.data)[i];
                }
            }
            for (size_t h = 0; h < H; h++) {
                if (ly->q_norm.data) {
                    ref_rmsnorm(q + h * hd, q + h * hd, (const float *)ly->q_norm.data, hd,
                                hp->norm_eps);
                }
                ref_rope(q + h * hd, hp, (const float *)m->rope_freqs.data, t);
            }
            for (size_t h = 0; h < HKV; h++) {
                if (ly->k_norm.data) {
                    ref_rmsnorm(k + h * hd, k + h * hd, (const float *)ly->k_norm.data, hd,
                                hp->norm_eps);
                }
                ref_rope(k + h * hd, hp, (const float *)m->rope_freqs.data, t);
            }
            for (size_t h = 0; h < H; h++) {
                size_t kvh = h / (H / HKV);
                double mx = -INFINITY;
                for (size_t s = 0; s <= t; s++) {
                    if (hide && s != t && hide(hide_ud, t, s)) {
                        sc[s] = -INFINITY;
                        continue;
                    }
                    const double *ks = K + (il * n + s) * kd + kvh * hd;
                    double d = 0.0;
                    for (size_t i = 0; i < hd; i++) {
                        d += q[h * hd + i] * ks[i];
                    }
                    sc[s] = d / sqrt((double)hd);
                    mx = sc[s] > mx ? sc[s] : mx;
                }
                double sum = 0.0;
                for (size_t s = 0; s <= t; s++) {
                    sc[s] = exp(sc[s] - mx);
                    sum += sc[s];
                }
                for (size_t i = 0; i < hdv; i++) {
                    o[h * hdv + i] = 0.0;
                }
                for (size_t s = 0; s <= t; s++) {
                    sc[s] /= sum;
                    const double *vs = Vv + (il * n + s) * vd + kvh * hdv;
                    for (size_t i = 0; i < hdv; i++) {
                        o[h * hdv + i] += sc[s] * vs[i];
                    }
                }
                if (attn && t == attn_pos) {
                    for (size_t s = 0; s < n; s++) {
                        attn[(il * H + h) * n + s] = s <= t ? sc[s] : 0.0;
                    }
                }
            }
            ref_matvec(&ly->wo, o, tmp, rowbuf);
            for (size_t i = 0; i < E; i++) {
                x[i] += tmp[i];
            }
            ref_rmsnorm(xn, x, (const float *)ly->ffn_norm.data, E, hp->norm_eps);
            ref_matvec(&ly->w_gate, xn, g, rowbuf);
            ref_matvec(&ly->w_up, xn, u, rowbuf);
            for (size_t i = 0; i < F; i++) {
                xn[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
            }
            ref_matvec(&ly->w_down, xn, tmp, rowbuf);
            for (size_t i = 0; i < E; i++) {
                x[i] += tmp[i];
            }
        }
        ref_rmsnorm(xn, x, (const float *)m->output_norm.data, E, hp->norm_eps);
        ref_matvec(&m->output, xn, logits + t * V, rowbuf);
    }
    free(rowbuf);
    free(x);
    free(xn);
    free(q);
    free(o);
    free(g);
    free(u);
    free(tmp);
    free(sc);
    free(K);
    free(Vv);
}

/* ln p(id) under logits[V] in double. */
static double ref_logprob(const double *logits, size_t V, int32_t id)
{
    double mx = -INFINITY;
    for (size_t i = 0; i < V; i++) {
        mx = logits[i] > mx ? logits[i] : mx;
    }
    double s = 0.0;
    for (size_t i = 0; i < V; i++) {
        s += exp(logits[i] - mx);
    }
    return logits[id] - mx - log(s);
}

#endif
