/*
** gemma2.c — the Gemma2 decoder forward pass (the text half of TowerVision, and all of Tower+).
**
** tw_gemma2_forward runs the new tokens of one or more sequences ("segments": each its own ids,
** positions and KV cache, kv.h) through the model, from the embedding lookup to the logits. The
** math follows transformers' modeling_gemma2.py (eager attention) in float32, as the fixtures and
** docs/SPEC.md section 8 describe:
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
** Batching: the segments' rows are concatenated, so every weight product (tw_matmul) runs once
** over the rows of all of them; only what is per sequence is done per segment: RoPE (each row at
** its own position), storing keys / values in the segment's cache, and attention against it.
** Decode is bound by reading the weights, so k sequences' steps together cost little more than
** one (docs/batching.md).
**
** What this file is not: it does no I/O and no validation (model.c checked every tensor against
** the config at load, seq.c checked the ids), and it knows no sequence: seq.c owns the positions
** and the token history and calls this; the cache's layout is kv.h's.
**
** Memory: the rows are processed in chunks of CHUNK rows (a chunk may hold the ends and starts of
** several segments), layer by layer within a chunk, so the activation scratch is O(CHUNK * n_ff)
** whatever the lengths; chunks run in order, so a segment's later rows see its earlier ones in its
** cache exactly as a single pass would. Attention (attn.c) reads the cache in place and never
** forms a [T, n_keys] score matrix. The output head computes logits HEAD_ROWS rows at a time, and
** only for rows whose logits are asked for (the segment's last row; every row for logits_all;
** every row but the last for scores), never [CHUNK, n_vocab]. All scratch is allocated once per
** call from one arena; nothing is allocated inside the layer loop except attention's per-thread
** blocks.
*/
#include "attn.h"
#include "model.h"
#include "par.h"

#include <math.h>

enum {
    CHUNK = 256,       /* rows per pass through the layers                                       */
    HEAD_ROWS = 16,    /* rows per output-head product: [16, n_vocab] f32 is 16 MB for Gemma2's
                       ** 256,000 ids, and 16 rows already run the head as a matrix product       */
};

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

/* ---- the output head ------------------------------------------------------------------------ */

/* Rows of a chunk whose logits are wanted, handled HEAD_ROWS at a time: chunk row r is row t of
** segment s. What happens with its logits depends on t: the last row's become the segment's
** logits, any other row's (scores asked) give the log-probability of ids[t + 1]. */
typedef struct head_row { int32_t s, t, r; } head_row;

typedef struct head_job {
    const tw_gemma2_seg *segs;
    const head_row      *rows;
    float               *l;       /* row i's logits at l + i * ldl                            */
    int64_t              ldl;
    int32_t              V;
    float                cap;     /* final softcap to apply, 0: none                          */
} head_job;

static bool seg_scores(const tw_gemma2_seg *g) { return g->logprobs || (g->n_top > 0 && (g->top_ids || g->top_lp)); }

/* One row's logits: softcapped, then scored against the next id, or kept as the segment's. */
static void head_task(void *ctx, int64_t i, int tid) {
    const head_job *j = ctx;
    const head_row *h = &j->rows[i];
    const tw_gemma2_seg *g = &j->segs[h->s];
    float *l = j->l + i * j->ldl;
    if (j->cap > 0) softcap(l, (size_t)j->V, j->cap);
    int32_t next = h->t + 1;   /* the position whose distribution this row gives */
    if (next < g->T) {
        if (!seg_scores(g)) return;
        int32_t *ti = g->top_ids ? g->top_ids + (size_t)next * g->n_top : NULL;
        float *tl = g->top_lp ? g->top_lp + (size_t)next * g->n_top : NULL;
        float lp = tw_logprob(l, j->V, g->ids[next], g->n_top, ti, tl);
        if (g->logprobs) g->logprobs[next] = lp;
    } else if (l != g->logits) {
        memcpy(g->logits, l, sizeof(float) * (size_t)j->V);
    }
}

/* The head for rows[0..n) of the chunk x: one product over their gathered rows into lg (one row
** that is a segment's last goes straight to its logits), then head_task per row on the pool. */
static void head_flush(const tw_model *m, const tw_gemma2_seg *segs, const head_row *rows, int32_t n, const float *x,
                       float *xg, float *lg, float cap) {
    const int32_t H = m->text.n_embd, V = m->text.n_vocab;
    if (n == 0) return;
    const float *in = x + (size_t)rows[0].r * H;
    float *out = lg;
    if (n == 1 && rows[0].t + 1 == segs[rows[0].s].T) out = segs[rows[0].s].logits;
    if (n > 1) {
        for (int32_t i = 0; i < n; i++) memcpy(xg + (size_t)i * H, x + (size_t)rows[i].r * H, sizeof(float) * (size_t)H);
        in = xg;
    }
    /* rows that are all decode steps (one-token segments): each computed as it is alone */
    bool decode = true;
    for (int32_t i = 0; i < n && decode; i++) decode = segs[rows[i].s].T == 1;
    if (decode) tw_matmul_rows(m->pool, out, in, n, m->tw.lm_head, NULL);
    else tw_matmul(m->pool, out, in, n, m->tw.lm_head, NULL);
    head_job j = { .segs = segs, .rows = rows, .l = out, .ldl = V, .V = V, .cap = cap };
    tw_pool_run(m->pool, n, head_task, &j);
}

/* ---- the forward ------------------------------------------------------------------------------ */

/* Rows t .. t+n-1 of segment s, at rows r .. r+n-1 of the chunk. */
typedef struct piece { int32_t s, t, n, r; } piece;

tw_status tw_gemma2_forward(const tw_model *m, const tw_gemma2_seg *segs, int32_t n_segs) {
    const tw_gemma2_config *c = &m->text;
    const tw_gemma2_weights *w = &m->tw;
    tw_pool *pool = m->pool;
    const int32_t H = c->n_embd, F = c->n_ff, L = c->n_layer, V = c->n_vocab;
    const int32_t nh = c->n_head, nkv = c->n_head_kv, D = c->head_dim, half = D / 2;
    const int32_t qd = nh * D, kvd = nkv * D;
    const float cap = m->final_softcap_on && c->final_softcap > 0 ? c->final_softcap : 0;
    if (n_segs <= 0) return tw_err(TW_E_ARG, "gemma2 forward: %d segments", (int)n_segs);

    /* what the scratch must hold: rows in all, caches to stage keys for, rows of the head */
    int64_t R = 0;
    bool stage_kv = n_segs > 1, scores = false;
    for (int32_t s = 0; s < n_segs; s++) {
        const tw_gemma2_seg *g = &segs[s];
        if (g->T <= 0) return tw_err(TW_E_ARG, "gemma2 forward: %d tokens", (int)g->T);
        if (g->pos + g->T > g->kv->n_alloc)
            return tw_err(TW_E_INTERNAL, "gemma2 forward: cache holds %d positions, need %d", (int)g->kv->n_alloc,
                          (int)(g->pos + g->T));
        R += g->T;
        stage_kv |= g->kv->type != TW_KV_F32;    /* keys / values are rounded into the cache */
        scores |= seg_scores(g) && !g->logits_all;   /* scored from the head's own rows */
    }
    if (R > INT32_MAX) return tw_err(TW_E_ARG, "gemma2 forward: %lld rows in one call", (long long)R);

    /* The embedding scale is a float32 constant (sqrt(2304) = 48 exactly; sqrt(3584) is not, and
    ** HF rounds it to the activation dtype: f32 here). */
    const float normalizer = (float)sqrt((double)H);
    const float scale = (float)pow((double)c->query_pre_attn_scalar, -0.5);
    const int32_t C = (int32_t)TW_MIN(R, CHUNK);
    /* head rows per product: with scores every row of a chunk may need one, else one per segment */
    const int32_t HB = TW_MIN(HEAD_ROWS, scores ? C : TW_MIN(n_segs, C));

    /* scratch, one arena for the whole call */
    size_t fl = sizeof(float), need = 0;
    const size_t C_kv = stage_kv ? (size_t)C : 0;   /* K/V rows before they go to the caches */
    const size_t HB_x = HB > 1 ? (size_t)HB : 0, HB_l = HB > 1 || scores ? (size_t)HB : 0;
    size_t sizes[] = { (size_t)C * H, (size_t)C * H, (size_t)C * qd, (size_t)C * qd, (size_t)C * H,
                       (size_t)C * F, (size_t)C * F, (size_t)C * half, (size_t)C * half, (size_t)half,
                       C_kv * kvd, C_kv * kvd, HB_x * H, HB_l * V };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) need += sizes[i] * fl + 64;
    need += (size_t)n_segs * (sizeof(piece) + sizeof(float *)) + (size_t)HEAD_ROWS * sizeof(head_row) + 3 * 64;
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
    float *k_buf  = tw_arena_push(&ar, sizes[10] * fl);  /* [C, nkv*D] staged keys (several
                                                         ** caches, or a 16-bit one)           */
    float *v_buf  = tw_arena_push(&ar, sizes[11] * fl);  /* [C, nkv*D]                        */
    float *xg     = tw_arena_push(&ar, sizes[12] * fl);  /* [HB, H]   head rows gathered      */
    float *lg     = tw_arena_push(&ar, sizes[13] * fl);  /* [HB, V]   their logits            */
    piece *pc     = tw_arena_push(&ar, (size_t)n_segs * sizeof(piece));          /* a chunk's pieces */
    const float **media = tw_arena_push(&ar, (size_t)n_segs * sizeof(float *));  /* next feature row
                                                                                 ** of each segment */
    head_row *hr  = tw_arena_push(&ar, (size_t)HEAD_ROWS * sizeof(head_row));
    TW_ASSERT(x && hn && q && att && o && gate && up && cs && sn && inv_freq && pc && media && hr);

    /* inv_freq[i] = 1 / theta^(2i/D), every step in float32 as HF computes it */
    for (int32_t i = 0; i < half; i++) inv_freq[i] = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)D);
    for (int32_t s = 0; s < n_segs; s++) media[s] = segs[s].embd;

    int32_t cur_s = 0, cur_t = 0;   /* the first row not yet run: row cur_t of segment cur_s */
    for (int64_t r0 = 0; r0 < R; r0 += C) {
        /* ---- the chunk's pieces: up to C rows, segment after segment ---- */
        int32_t tc = 0, np = 0;
        while (tc < C && cur_s < n_segs) {
            const tw_gemma2_seg *g = &segs[cur_s];
            int32_t n = TW_MIN(C - tc, g->T - cur_t);
            pc[np++] = (piece){ cur_s, cur_t, n, tc };
            tc += n;
            cur_t += n;
            if (cur_t == g->T) {
                cur_s++;
                cur_t = 0;
            }
        }

        /* ---- embeddings: the token's row, or the next feature row for a media token ---- */
        for (int32_t p = 0; p < np; p++) {
            const tw_gemma2_seg *g = &segs[pc[p].s];
            for (int32_t i = 0; i < pc[p].n; i++) {
                float *xr = x + (size_t)(pc[p].r + i) * H;
                int32_t id = g->ids[pc[p].t + i];
                if (g->embd && tw_is_media_token(m, id)) {
                    memcpy(xr, media[pc[p].s], (size_t)H * fl);
                    media[pc[p].s] += H;
                } else {
                    tw_tensor_row_f32(w->embed, id, xr);
                }
                for (int32_t k = 0; k < H; k++) xr[k] *= normalizer;
            }
            /* angle = position * inv_freq in float32 (a float64 angle drifts from HF at long range) */
            for (int32_t i = 0; i < pc[p].n; i++) {
                size_t row = (size_t)(pc[p].r + i) * half;
                for (int32_t k = 0; k < half; k++) {
                    float a = (float)(g->pos + pc[p].t + i) * inv_freq[k];
                    cs[row + k] = cosf(a);
                    sn[row + k] = sinf(a);
                }
            }
            if (g->hidden) memcpy(g->hidden + (size_t)pc[p].t * H, x + (size_t)pc[p].r * H, (size_t)pc[p].n * H * fl);
        }

        /* A chunk of decode steps only (every piece a one-token segment: a batch of sequences
        ** generating) multiplies its rows as independent decode rows: each bit-identical to the
        ** sequence's step alone, the weights still read once for all (tw_matmul_rows). */
        bool decode = tc > 1;
        for (int32_t p = 0; p < np && decode; p++) decode = segs[pc[p].s].T == 1;
#define MATMUL(y, xin, W) (decode ? tw_matmul_rows(pool, (y), (xin), tc, (W), NULL) : tw_matmul(pool, (y), (xin), tc, (W), NULL))

        for (int32_t l = 0; l < L; l++) {
            const tw_gemma2_layer *ly = &w->layers[l];
            /* the chunk's keys and values [tc, nkv*D]: straight into the cache when the chunk is
            ** one segment's and its cache stores f32, else staged and stored per piece */
            const tw_gemma2_seg *g0 = &segs[pc[0].s];
            float *k_new = np == 1 ? tw_kv_k_f32(g0->kv, l, g0->pos + pc[0].t) : NULL;
            float *v_new = np == 1 ? tw_kv_v_f32(g0->kv, l, g0->pos + pc[0].t) : NULL;
            if (!k_new) k_new = k_buf, v_new = v_buf;

            /* ---- attention block ---- */
            tw_par_rmsnorm_1p(pool, hn, x, ly->attn_norm_f, tc, H, c->rms_eps);
            MATMUL(q, hn, ly->wq);
            MATMUL(k_new, hn, ly->wk);
            MATMUL(v_new, hn, ly->wv);
            rope(q, tc, nh, D, cs, sn);
            rope(k_new, tc, nkv, D, cs, sn);

            /* per piece: its keys into its cache, its queries against every cached position up
            ** to theirs */
            for (int32_t p = 0; p < np; p++) {
                const tw_gemma2_seg *g = &segs[pc[p].s];
                const int32_t p0 = g->pos + pc[p].t, r = pc[p].r;
                tw_kv_put(g->kv, l, p0, pc[p].n, k_new + (size_t)r * kvd, v_new + (size_t)r * kvd);
                tw_attn_args aa = {
                    .q = q + (size_t)r * qd, .ldq = qd, .k = tw_kv_k(g->kv, l, 0), .ldk = tw_kv_ld(g->kv),
                    .v = tw_kv_v(g->kv, l, 0), .ldv = tw_kv_ld(g->kv), .kv_type = g->kv->type,
                    .out = att + (size_t)r * qd, .ldo = qd, .Tq = pc[p].n, .Tk = p0 + pc[p].n, .n_head = nh,
                    .n_kv = nkv, .D = D, .scale = scale, .softcap = c->attn_softcap,
                    .causal = true, .q_pos = p0, .window = c->layer_sliding[l] ? c->sliding_window : 0,
                };
                tw_attention(pool, &aa);
            }

            MATMUL(o, att, ly->wo);
            tw_par_rmsnorm_1p(pool, o, o, ly->post_attn_norm_f, tc, H, c->rms_eps);
            tw_par_add(pool, x, o, (int64_t)tc * H);

            /* ---- MLP block (GeGLU) ---- */
            tw_par_rmsnorm_1p(pool, hn, x, ly->ffn_norm_f, tc, H, c->rms_eps);
            MATMUL(gate, hn, ly->w_gate);
            MATMUL(up, hn, ly->w_up);
            tw_par_gelu_mul(pool, gate, up, (int64_t)tc * F);
            MATMUL(o, gate, ly->w_down);
            tw_par_rmsnorm_1p(pool, o, o, ly->post_ffn_norm_f, tc, H, c->rms_eps);
            tw_par_add(pool, x, o, (int64_t)tc * H);

            for (int32_t p = 0; p < np; p++) {
                const tw_gemma2_seg *g = &segs[pc[p].s];
                if (g->hidden)
                    memcpy(g->hidden + ((size_t)(l + 1) * g->T + pc[p].t) * H, x + (size_t)pc[p].r * H,
                           (size_t)pc[p].n * H * fl);
            }
        }

#undef MATMUL

        /* ---- final norm and the head ---- */
        tw_par_rmsnorm_1p(pool, x, x, w->norm_f, tc, H, c->rms_eps);
        int32_t nhr = 0;   /* head rows gathered */
        for (int32_t p = 0; p < np; p++) {
            const tw_gemma2_seg *g = &segs[pc[p].s];
            const int32_t t = pc[p].t, n = pc[p].n, r = pc[p].r;
            if (g->hidden) memcpy(g->hidden + ((size_t)(L + 1) * g->T + t) * H, x + (size_t)r * H, (size_t)n * H * fl);
            if (g->logits_all) {
                /* every row's logits into the caller's buffer; the head's work on them in place
                ** (after the rows gathered so far, whose list hr is about to be reused) */
                head_flush(m, segs, hr, nhr, x, xg, lg, cap);
                nhr = 0;
                float *la = g->logits_all + (size_t)t * V;
                tw_matmul(pool, la, x + (size_t)r * H, n, w->lm_head, NULL);
                for (int32_t i0 = 0; i0 < n; i0 += HEAD_ROWS) {
                    int32_t k = TW_MIN(HEAD_ROWS, n - i0);
                    for (int32_t i = 0; i < k; i++) hr[i] = (head_row){ pc[p].s, t + i0 + i, r + i0 + i };
                    head_job j = { .segs = segs, .rows = hr, .l = la + (size_t)i0 * V, .ldl = V, .V = V, .cap = cap };
                    tw_pool_run(pool, k, head_task, &j);
                }
                continue;
            }
            /* the last row, and with scores every other row too */
            int32_t from = seg_scores(g) ? t : TW_MAX(t, g->T - 1);
            for (int32_t i = from; i < t + n; i++) {
                hr[nhr++] = (head_row){ pc[p].s, i, r + (i - t) };
                if (nhr == HB) {
                    head_flush(m, segs, hr, nhr, x, xg, lg, cap);
                    nhr = 0;
                }
            }
        }
        head_flush(m, segs, hr, nhr, x, xg, lg, cap);
    }
    tw_arena_free(&ar);
    return TW_OK;
}
