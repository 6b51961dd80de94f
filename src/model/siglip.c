/*
** siglip.c — the SigLIP vision tower, and nothing else: tiles of pixels in, the hidden state of
** vision_feature_layer out. vision.c runs it as one step of the image and video pipeline.
**
** Per tile (S x S pixels, G = floor(S / P) patches per side, N = G*G tokens, width C):
**   x = conv_PxP_stride_P(pixels) + b + pos_embd          (valid conv: the last S - G*P pixels unused)
**   for each layer:  x += out_proj(MHA(LN1(x)))            (16 heads of 72, biases, no mask)
**                    x += fc2(gelu_tanh(fc1(LN2(x))))
**   feature = hidden_states[vision_feature_layer]          (no post_layernorm)
** All tiles of a call go through the matrix products together (T = n_tiles * N rows).
*/
#include "attn.h"
#include "par.h"
#include "vision.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>

int32_t tw_vision_grid(const tw_model *m) { return m->vision.image_size / m->vision.patch_size; }

/* Number of encoder layers to run to reach hidden_states[vision_feature_layer]. */
static int32_t layers_needed(const tw_model *m) {
    int32_t L = m->vision.n_layer, f = m->vision_feature_layer;
    return f < 0 ? L + 1 + f : f;
}

typedef struct {
    float *h, *a, *big;   /* [T,C], [T,C], [T,max(3C,F)] */
    int64_t T;
    int32_t N, n_tiles;
} layer_bufs;

/* One pre-LN encoder layer in place on x [T, C]. */
static void siglip_layer(const tw_model *m, const tw_siglip_layer *L, float *x, const layer_bufs *b) {
    const tw_siglip_config *vc = &m->vision;
    int32_t C = vc->n_embd, F = vc->n_ff;
    int64_t T = b->T;
    size_t n_x = (size_t)T * C;
    float *h = b->h, *a = b->a, *qkv = b->big;   /* qkv [T, 3C]: q | k | v per row */

    tw_par_layernorm(m->pool, h, x, L->ln1_w_f, L->ln1_b_f, T, C, vc->ln_eps);
    const tw_tensor *w[3] = { L->wq, L->wk, L->wv }, *bias[3] = { L->bq_f, L->bk_f, L->bv_f };
    for (int i = 0; i < 3; i++) {
        tw_matmul(m->pool, a, h, T, w[i], bias[i]);
        for (int64_t t = 0; t < T; t++) memcpy(qkv + t * 3 * C + i * C, a + t * C, sizeof(float) * (size_t)C);
    }
    /* each tile attends to itself only: N queries x N keys, q|k|v read in place from [T, 3C] */
    int32_t D = C / vc->n_head;
    for (int32_t tile = 0; tile < b->n_tiles; tile++) {
        const float *base = qkv + (size_t)tile * b->N * 3 * C;
        tw_attn_args aa = {
            .q = base, .ldq = 3 * C, .k = base + C, .ldk = 3 * C, .v = base + 2 * C, .ldv = 3 * C,
            .out = h + (size_t)tile * b->N * C, .ldo = C,
            .Tq = b->N, .Tk = b->N, .n_head = vc->n_head, .n_kv = vc->n_head, .D = D,
            .scale = 1.0f / sqrtf((float)D),
        };
        tw_attention(m->pool, &aa);
    }
    tw_matmul(m->pool, a, h, T, L->wo, L->bo_f);
    tw_par_add(m->pool, x, a, (int64_t)n_x);

    tw_par_layernorm(m->pool, h, x, L->ln2_w_f, L->ln2_b_f, T, C, vc->ln_eps);
    tw_matmul(m->pool, b->big, h, T, L->fc1_w, L->fc1_b_f);
    tw_par_gelu_mul(m->pool, b->big, NULL, (int64_t)T * F);
    tw_matmul(m->pool, a, b->big, T, L->fc2_w, L->fc2_b_f);
    tw_par_add(m->pool, x, a, (int64_t)n_x);
}

tw_status tw_siglip_forward(const tw_model *m, const float *pixels, int32_t n_tiles, float *feat, float *hidden) {
    if (!m->has_vision) return tw_err(TW_E_ARG, "%s: this model has no vision tower", m->dir);
    const tw_siglip_config *vc = &m->vision;
    int32_t S = vc->image_size, P = vc->patch_size, G = S / P, N = G * G, C = vc->n_embd, F = vc->n_ff;
    int32_t n_run = layers_needed(m);
    assert(n_run >= 0 && n_run <= vc->n_layer);   /* model.c range-checked vision_feature_layer at load */
    int64_t T = (int64_t)n_tiles * N, K = 3 * (int64_t)P * P;

    /* one allocation for every activation of the call */
    size_t n_x = (size_t)T * C, n_big = (size_t)T * TW_MAX(3 * (int64_t)C, TW_MAX((int64_t)F, K));
    float *x = tw_malloc(sizeof(float) * n_x), *h = tw_malloc(sizeof(float) * n_x), *a = tw_malloc(sizeof(float) * n_x);
    float *big = tw_malloc(sizeof(float) * n_big);
    tw_status st = TW_E_NOMEM;
    if (!x || !h || !a || !big) goto done;

    /* patch embedding as a matrix product: im2col rows in the weight's (channel, ky, kx) order */
    for (int32_t t = 0; t < n_tiles; t++)
        for (int32_t py = 0; py < G; py++)
            for (int32_t px = 0; px < G; px++) {
                float *row = big + ((size_t)t * N + (size_t)py * G + px) * K;
                for (int32_t c = 0; c < 3; c++)
                    for (int32_t ky = 0; ky < P; ky++)
                        memcpy(row + ((size_t)c * P + ky) * P,
                               pixels + (((size_t)t * 3 + c) * S + (size_t)py * P + ky) * S + (size_t)px * P,
                               sizeof(float) * (size_t)P);
            }
    {
        tw_tensor w2 = *m->vw.patch_w;   /* view [C, 3, P, P] as [C, 3*P*P] */
        w2.ndim = 2;
        w2.shape[1] = K;
        tw_matmul(m->pool, x, big, T, &w2, m->vw.patch_b_f);
    }
    for (int64_t t = 0; t < T; t++) {
        const float *pe = m->vw.pos_embd_f + (size_t)(t % N) * C;
        for (int32_t c = 0; c < C; c++) x[t * C + c] += pe[c];
    }
    if (hidden) memcpy(hidden, x, sizeof(float) * n_x);

    /* Layers past the selected one are not needed by the model; they run only when the caller
    ** asked for every hidden state (tower dump). */
    int32_t n_total = hidden ? vc->n_layer : n_run;
    if (n_run == 0) memcpy(feat, x, sizeof(float) * n_x);
    layer_bufs b = { h, a, big, T, N, n_tiles };
    for (int32_t l = 0; l < n_total; l++) {
        siglip_layer(m, &m->vw.layers[l], x, &b);
        if (hidden) memcpy(hidden + (size_t)(l + 1) * n_x, x, sizeof(float) * n_x);
        if (l + 1 == n_run) memcpy(feat, x, sizeof(float) * n_x);
    }
    st = TW_OK;
done:
    free(x), free(h), free(a), free(big);
    return st;
}
