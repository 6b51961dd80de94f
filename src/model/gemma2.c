/*
** gemma2.c — the Gemma2 decoder forward pass (the text half of TowerVision, and all of Tower+).
**
** tw_gemma2_forward runs T new token ids at positions pos .. pos+T-1 through the model, from the
** embedding lookup to the logits, reading and extending a KV cache (kv.h). The math follows
** transformers' modeling_gemma2.py (eager attention) in float32, as the fixtures and docs/SPEC.md
** section 8 describe:
**
**   x = embed_tokens[ids] * sqrt(H)   (image / video tokens take the caller's feature rows
**                                      instead, in order, as HF's LlavaNext merges them)
**   per layer:  h = rmsnorm_1p(x, input_layernorm)
**               q, k, v = h Wq^T, h Wk^T, h Wv^T          RoPE (rotate_half) on q and k
**               s = softcap_50(q.k * query_pre_attn_scalar^-0.5), causal (+ sliding window on
**               sliding layers), softmax, a = s . v       (GQA: head h reads kv head h/(nh/nkv))
**               x += rmsnorm_1p(a Wo^T, post_attention_layernorm)
**               h = rmsnorm_1p(x, pre_feedforward_layernorm)
**               x += rmsnorm_1p(down(gelu_tanh(gate(h)) * up(h)), post_feedforward_layernorm)
**   x = rmsnorm_1p(x, norm);  logits = x lm_head^T
**   logits = cap * tanh(logits / cap)                        when the model was loaded with the
**                                                            final softcap on
**
** What this file is not: it does no I/O and no validation (model.c checked every tensor against
** the config at load, tw_seq_eval checked the ids), and it knows no sequence: seq.c owns the
** positions and the token history and calls this; the cache's layout is kv.h's.
**
** Memory: a long prompt is processed in chunks of CHUNK rows, layer by layer within a chunk, so
** the activation scratch is O(CHUNK * n_ff) whatever the prompt length; the causal cache makes a
** chunk see the previous ones exactly as a single pass would. Attention (attn.c) reads the cache
** in place and never forms a [T, n_keys] score matrix. All scratch is allocated once per call from
** one arena; nothing is allocated inside the layer loop except attention's per-thread blocks.
*/
#include "attn.h"
#include "model.h"
#include "par.h"

#include <math.h>

enum { CHUNK = 256 };   /* prompt rows per pass through the layers */

/* ---- RoPE ------------------------------------------------------------------------------------- */

/* x: [T, n_heads*D], rotated in place with the rotate_half convention: the pairs are
** (x[i], x[i + D/2]), not adjacent elements. cs, sn: [T, D/2]. */
static void rope(float *x, int32_t T, int32_t n_heads, int32_t D, const float *cs, const float *sn) {
    int32_t half = D / 2;
    for (int32_t t = 0; t < T; t++) {
        const float *c = cs + (size_t)t * half, *s = sn + (size_t)t * half;
        for (int32_t h = 0; h < n_heads; h++) {
            float *r = x + ((size_t)t * n_heads + h) * D;
            for (int32_t i = 0; i < half; i++) {
                float a = r[i], b = r[i + half];
                r[i]        = a * c[i] - b * s[i];
                r[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

/* ---- embeddings and the final softcap --------------------------------------------------------- */


size_t tw_gemma2_n_media(const tw_model *m, const int32_t *ids, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += tw_is_media_token(m, ids[i]);
    return k;
}

static void softcap(float *l, size_t n, float cap) {
    for (size_t i = 0; i < n; i++) l[i] = cap * tanhf(l[i] / cap);
}

/* ---- the forward ------------------------------------------------------------------------------ */

tw_status tw_gemma2_forward(const tw_model *m, tw_kv *kv, int32_t pos, const int32_t *ids, int32_t T,
                            const float *embd, float *logits, float *logits_all, float *hidden) {
    const tw_gemma2_config *c = &m->text;
    const tw_gemma2_weights *w = &m->tw;
    tw_pool *pool = m->pool;
    const int32_t H = c->n_embd, F = c->n_ff, L = c->n_layer, V = c->n_vocab;
    const int32_t nh = c->n_head, nkv = c->n_head_kv, D = c->head_dim, half = D / 2;
    const int32_t qd = nh * D, kvd = nkv * D;
    const bool kv_f32 = kv->type == TW_KV_F32;   /* else keys / values are rounded into the cache */
    if (T <= 0) return tw_err(TW_E_ARG, "gemma2 forward: %d tokens", (int)T);
    if (pos + T > kv->n_alloc) return tw_err(TW_E_INTERNAL, "gemma2 forward: cache holds %d positions, need %d", (int)kv->n_alloc, (int)(pos + T));

    /* The embedding scale is a float32 constant (sqrt(2304) = 48 exactly; sqrt(3584) is not, and
    ** HF rounds it to the activation dtype: f32 here). */
    const float normalizer = (float)sqrt((double)H);
    const float scale = (float)pow((double)c->query_pre_attn_scalar, -0.5);
    const int32_t C = TW_MIN(T, CHUNK);

    /* scratch, one arena for the whole call */
    size_t fl = sizeof(float), need = 0;
    const size_t C_kv = kv_f32 ? 0 : (size_t)C;   /* 16-bit cache: K/V rows before rounding */
    size_t sizes[] = { (size_t)C * H, (size_t)C * H, (size_t)C * qd, (size_t)C * qd, (size_t)C * H,
                       (size_t)C * F, (size_t)C * F, (size_t)C * half, (size_t)C * half, (size_t)half,
                       C_kv * kvd, C_kv * kvd };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) need += sizes[i] * fl + 64;
    tw_arena ar;
    TW_TRY(tw_arena_init(&ar, need));
    float *x      = tw_arena_push(&ar, sizes[0] * fl);   /* [C, H]    residual stream        */
    float *hn     = tw_arena_push(&ar, sizes[1] * fl);   /* [C, H]    normed input of a block */
    float *q      = tw_arena_push(&ar, sizes[2] * fl);   /* [C, nh*D] queries                 */
    float *att    = tw_arena_push(&ar, sizes[3] * fl);   /* [C, nh*D] attention output        */
    float *o      = tw_arena_push(&ar, sizes[4] * fl);   /* [C, H]    block output            */
    float *gate   = tw_arena_push(&ar, sizes[5] * fl);   /* [C, F]                            */
    float *up     = tw_arena_push(&ar, sizes[6] * fl);   /* [C, F]                            */
    float *cs     = tw_arena_push(&ar, sizes[7] * fl);   /* [C, D/2]  cos of the RoPE angles  */
    float *sn     = tw_arena_push(&ar, sizes[8] * fl);   /* [C, D/2]  sin                     */
    float *inv_freq = tw_arena_push(&ar, sizes[9] * fl); /* [D/2]                             */
    float *k_f32  = tw_arena_push(&ar, sizes[10] * fl);  /* [C, nkv*D] 16-bit cache only       */
    float *v_f32  = tw_arena_push(&ar, sizes[11] * fl);  /* [C, nkv*D]                        */

    /* inv_freq[i] = 1 / theta^(2i/D), every step in float32 as HF computes it */
    for (int32_t i = 0; i < half; i++) inv_freq[i] = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)D);

    const float *media = embd;   /* next feature row for an image / video token */
    for (int32_t t0 = 0; t0 < T; t0 += C) {
        const int32_t tc = TW_MIN(C, T - t0);   /* rows in this chunk */
        const int32_t p0 = pos + t0;            /* position of its first row */

        /* ---- embeddings: the token's row, or the next feature row for a media token ---- */
        for (int32_t t = 0; t < tc; t++) {
            float *xr = x + (size_t)t * H;
            int32_t id = ids[t0 + t];
            if (embd && tw_is_media_token(m, id)) {
                memcpy(xr, media, (size_t)H * fl);
                media += H;
            } else {
                tw_tensor_row_f32(w->embed, id, xr);
            }
            for (int32_t i = 0; i < H; i++) xr[i] *= normalizer;
        }
        if (hidden) memcpy(hidden + (size_t)t0 * H, x, (size_t)tc * H * fl);

        /* angle = position * inv_freq in float32 (a float64 angle drifts from HF at long range) */
        for (int32_t t = 0; t < tc; t++)
            for (int32_t i = 0; i < half; i++) {
                float a = (float)(p0 + t) * inv_freq[i];
                cs[(size_t)t * half + i] = cosf(a);
                sn[(size_t)t * half + i] = sinf(a);
            }

        for (int32_t l = 0; l < L; l++) {
            const tw_gemma2_layer *ly = &w->layers[l];
            /* the chunk's keys and values [tc, nkv*D]: straight into an f32 cache, else computed in
            ** k_f32 / v_f32 and rounded into the cache once */
            float *k_new = kv_f32 ? tw_kv_k_f32(kv, l, p0) : k_f32;
            float *v_new = kv_f32 ? tw_kv_v_f32(kv, l, p0) : v_f32;

            /* ---- attention block ---- */
            tw_par_rmsnorm_1p(pool, hn, x, ly->attn_norm_f, tc, H, c->rms_eps);
            tw_matmul(pool, q, hn, tc, ly->wq, NULL);
            tw_matmul(pool, k_new, hn, tc, ly->wk, NULL);
            tw_matmul(pool, v_new, hn, tc, ly->wv, NULL);
            rope(q, tc, nh, D, cs, sn);
            rope(k_new, tc, nkv, D, cs, sn);
            tw_kv_put(kv, l, p0, tc, k_new, v_new);

            /* queries of this chunk against every cached position up to theirs */
            tw_attn_args aa = {
                .q = q, .ldq = qd, .k = tw_kv_k(kv, l, 0), .ldk = tw_kv_ld(kv), .v = tw_kv_v(kv, l, 0),
                .ldv = tw_kv_ld(kv), .kv_type = kv->type, .out = att, .ldo = qd,
                .Tq = tc, .Tk = p0 + tc, .n_head = nh, .n_kv = nkv, .D = D,
                .scale = scale, .softcap = c->attn_softcap,
                .causal = true, .q_pos = p0, .window = c->layer_sliding[l] ? c->sliding_window : 0,
            };
            tw_attention(pool, &aa);

            tw_matmul(pool, o, att, tc, ly->wo, NULL);
            tw_par_rmsnorm_1p(pool, o, o, ly->post_attn_norm_f, tc, H, c->rms_eps);
            tw_par_add(pool, x, o, (int64_t)tc * H);

            /* ---- MLP block (GeGLU) ---- */
            tw_par_rmsnorm_1p(pool, hn, x, ly->ffn_norm_f, tc, H, c->rms_eps);
            tw_matmul(pool, gate, hn, tc, ly->w_gate, NULL);
            tw_matmul(pool, up, hn, tc, ly->w_up, NULL);
            tw_par_gelu_mul(pool, gate, up, (int64_t)tc * F);
            tw_matmul(pool, o, gate, tc, ly->w_down, NULL);
            tw_par_rmsnorm_1p(pool, o, o, ly->post_ffn_norm_f, tc, H, c->rms_eps);
            tw_par_add(pool, x, o, (int64_t)tc * H);

            if (hidden) memcpy(hidden + ((size_t)(l + 1) * T + t0) * H, x, (size_t)tc * H * fl);
        }

        /* final norm; logits for every row when asked, else only for the prompt's last row */
        tw_par_rmsnorm_1p(pool, x, x, w->norm_f, tc, H, c->rms_eps);
        if (hidden) memcpy(hidden + ((size_t)(L + 1) * T + t0) * H, x, (size_t)tc * H * fl);
        if (logits_all) tw_matmul(pool, logits_all + (size_t)t0 * V, x, tc, w->lm_head, NULL);
        if (t0 + tc == T) {
            if (logits_all) memcpy(logits, logits_all + (size_t)(T - 1) * V, (size_t)V * fl);
            else tw_matmul(pool, logits, x + (size_t)(tc - 1) * H, 1, w->lm_head, NULL);
        }
    }
    tw_arena_free(&ar);

    /* HF >= 4.52 LlavaNext has no final softcap; Gemma2ForCausalLM (and older LlavaNext) has. */
    if (m->final_softcap_on && c->final_softcap > 0) {
        softcap(logits, (size_t)V, c->final_softcap);
        if (logits_all) softcap(logits_all, (size_t)T * V, c->final_softcap);
    }
    return TW_OK;
}
