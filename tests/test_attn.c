/*
** test_attn.c — every SIMD attention path the CPU can run against the plain C reference
** (tw_attention_ref), on random data laid out as the models lay it out:
**   SigLIP: q|k|v interleaved per row, [T, 3C], non-causal, one kv head per head;
**   Gemma2: queries [Tq, n_head*D], keys/values in a cache [n_alloc, n_kv*D] (n_alloc > Tk),
**           causal from a query offset (chunked prefill, decode over a long cache), sliding
**           window, softcap 50, GQA groups 1/2/4.
** Head sizes 16, 64, 72, 128, 256; query/key counts 1, 7, 64, 729, 1000. Each case runs with the
** plan tw_attention would pick and with forced blockings (tiny key blocks, odd query blocks, one
** key block for everything), on 1 and 2 threads, and through tw_attention itself.
**
** Gemma2 cases run with the cache in f32, f16 and bf16: the 16-bit paths read the rounded cache
** and are compared with the reference run on the same rounded values in f32 (so the tolerance
** below holds for them too: widening is exact); the reference on the 16-bit buffers must give
** those bits exactly. Decode (queries x group <= 8) also runs the decode kernel with forced key
** splits, at many cache lengths, query counts and windows. The SIMD rounding to f16/bf16 must equal
** the plain C rounding bit for bit (ties, subnormals, overflow, inf, NaN).
**
** Last, the model with each cache type on the fixture cases (tiny-towervision, prefill of every
** position and the greedy continuation fed token by token through the decode path): the largest
** logit difference from the float32 reference, checked against a tolerance per type (f32: the
** fixtures' 3e-3; f16 / bf16: 0.5 / 2.5, derived in model_kv_types).
**
** Tolerance: the paths differ from the reference in the order of the f32 additions, in the
** vectorised exp/tanh (a few ulp) and in normalising at the end (flash) instead of per weight, so
** |o - o_ref| <= 1e-5 * max|v| + 1e-6 per output (the decode kernel: 2.5e-5, see below). Scores are made large (up to ~+-40, as Gemma2's
** softcapped ones are) so the softmax is peaked and errors in it show. The vectorised exp and
** tanh of each path are also checked on their own against libm in double (<= 3 ulp).
**
** make check-long (TOWER_LONG=1) runs every cache type on every decode-sweep combination and long
** prefill; the default run gives some of them one 16-bit type in rotation and keeps every shape,
** path, plan, thread count and fixture case (decode_sweep and main say which, and why).
*/
#include "attn.h"
#include "model.h"
#include "testhelp.h"

#include <math.h>

static uint64_t rng = 0x2545f4914f6cdd1dull;

static float frand(void) {   /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (2.0 / 16777216.0) - 1.0);
}

typedef struct {
    const char *layout;   /* "siglip" or "gemma2" */
    int32_t D, Tq, Tk, nh, nkv;
    bool causal;
    int32_t q_pos, window;
    float softcap;
    float amp;            /* q values are uniform in [-amp, amp) */
} acase;

static int64_t n_compared;
static double worst_dec;   /* largest |o - o_ref| / max|v| of the decode kernel */

static void run_case(tw_pool *pool2, const acase *c, tw_kv_type kt) {
    int32_t D = c->D, nh = c->nh, nkv = c->nkv;
    tw_attn_args a = { 0 };
    float *buf_q, *buf_kv = NULL;
    void *buf16 = NULL;
    size_t nq, nkvbuf = 0;
    if (c->layout[0] == 's') {   /* interleaved rows: q at 0, k at C, v at 2C */
        int32_t C = nh * D;
        nq = (size_t)c->Tk * 3 * C;
        buf_q = malloc(sizeof(float) * nq);
        for (size_t i = 0; i < nq; i++) buf_q[i] = frand();
        for (int32_t t = 0; t < c->Tk; t++)
            for (int32_t e = 0; e < C; e++) buf_q[(size_t)t * 3 * C + e] *= c->amp;
        a.q = buf_q, a.ldq = 3 * C;
        a.k = buf_q + C, a.ldk = 3 * C;
        a.v = buf_q + 2 * C, a.ldv = 3 * C;
    } else {                      /* separate queries, and a cache with room past Tk */
        nq = (size_t)c->Tq * nh * D;
        buf_q = malloc(sizeof(float) * nq);
        for (size_t i = 0; i < nq; i++) buf_q[i] = frand() * c->amp;
        int32_t n_alloc = c->Tk + 5;
        nkvbuf = (size_t)n_alloc * nkv * D;
        buf_kv = malloc(sizeof(float) * 2 * nkvbuf);
        for (size_t i = 0; i < 2 * nkvbuf; i++) buf_kv[i] = tw_kv_round_ref(frand(), kt);
        a.q = buf_q, a.ldq = nh * D;
        a.k = buf_kv, a.ldk = nkv * D;
        a.v = buf_kv + nkvbuf, a.ldv = nkv * D;
    }
    size_t no = (size_t)c->Tq * nh * D;
    float *ref = malloc(sizeof(float) * no), *got = malloc(sizeof(float) * no);
    a.out = ref, a.ldo = nh * D;
    a.Tq = c->Tq, a.Tk = c->Tk, a.n_head = nh, a.n_kv = nkv, a.D = D;
    a.scale = 1.0f / sqrtf((float)D), a.softcap = c->softcap;
    a.causal = c->causal, a.q_pos = c->q_pos, a.window = c->window;
    tw_attention_ref(pool2, &a);
    if (kt != TW_KV_F32) {   /* the same values stored in 16 bits: the reference must not change */
        buf16 = malloc(2 * 2 * nkvbuf);
        tw_kv_store(buf16, kt, buf_kv, (int64_t)(2 * nkvbuf));
        float *ref16 = malloc(sizeof(float) * (size_t)c->Tq * nh * D);
        a.out = ref16;
        a.k = buf16, a.v = (uint16_t *)buf16 + nkvbuf, a.kv_type = kt;
        tw_attention_ref(pool2, &a);
        CHECK(memcmp(ref16, ref, sizeof(float) * (size_t)c->Tq * nh * D) == 0,
              "reference on %s K/V differs from the reference on the widened values", tw_kv_type_name(kt));
        free(ref16);
    }

    float vmax = 0;
    for (int32_t j = 0; j < c->Tk; j++)
        for (int32_t e = 0; e < nkv * D; e++) {
            const float *v32 = c->layout[0] == 's' ? buf_q + 2 * (size_t)nh * D : buf_kv + nkvbuf;
            vmax = fmaxf(vmax, fabsf(v32[(size_t)j * a.ldv + e]));
        }
    float tol = 1e-5f * vmax + 1e-6f;

    tw_attn_plan plans[8];
    int n_plans = 0;
    plans[n_plans++] = tw_attention_plan(&a, 2);
    plans[n_plans++] = (tw_attn_plan){ .bq = 1, .bk = 16 };
    plans[n_plans++] = (tw_attn_plan){ .bq = 7, .bk = 100 };
    plans[n_plans++] = (tw_attn_plan){ .bq = 64, .bk = 0 };
    plans[n_plans++] = (tw_attn_plan){ .bq = 32, .bk = 256 };
    if (c->Tq * (nh / nkv) <= 8) {   /* the decode kernel, one range and odd splits */
        plans[n_plans++] = (tw_attn_plan){ .bq = 1, .bk = 128, .decode = true, .n_split = 1 };
        plans[n_plans++] = (tw_attn_plan){ .bq = 1, .bk = 128, .decode = true, .n_split = 3 };
        plans[n_plans++] = (tw_attn_plan){ .bq = 1, .bk = 128, .decode = true, .n_split = 7 };
    }

    a.out = got;
    for (int p = TW_KPATH_AVX2; p < TW_KPATH_COUNT + 1; p++) {
        if (p < TW_KPATH_COUNT && !tw_kpath_supported((tw_kpath)p)) continue;
        for (int pl = 0; pl < (p == TW_KPATH_COUNT ? 1 : n_plans); pl++)
            for (int th = 0; th < 2; th++) {
                tw_pool *pool = th ? pool2 : NULL;
                for (size_t i = 0; i < no; i++) got[i] = NAN;
                const char *what;
                if (p == TW_KPATH_COUNT) {   /* the public entry point, active path */
                    tw_attention(pool, &a);
                    what = "tw_attention";
                } else {
                    CHECK(tw_attention_with(pool, &a, (tw_kpath)p, plans[pl]), "path %d refused", p);
                    what = tw_kpath_name((tw_kpath)p);
                }
                /* the decode kernel sums each dot in another order than the reference (two
                ** interleaved chains and a lane tree vs one sequential chain, which the block
                ** kernel shares): on peaked softmaxes its differences reach 1.2e-5 max|v| (measured) */
                bool dec = p == TW_KPATH_COUNT ? plans[0].decode : plans[pl].decode;
                float tl = dec ? 2.5e-5f * vmax + 1e-6f : tol;
                float worst = 0;
                size_t at = 0;
                for (size_t i = 0; i < no; i++) {
                    float d = fabsf(got[i] - ref[i]);
                    if (!(d <= worst)) worst = d, at = i;   /* NaN counts as worst */
                }
                n_compared++;
                if (dec && vmax > 0) worst_dec = fmax(worst_dec, worst / vmax);
                CHECK(worst <= tl, "%s %s kv %s D=%d Tq=%d Tk=%d nh=%d nkv=%d causal=%d q_pos=%d window=%d cap=%g "
                      "plan bq=%d bk=%d threads=%d: max err %g at %zu (got %g ref %g) > tol %g", what, c->layout, tw_kv_type_name(kt), D,
                      c->Tq, c->Tk, nh, nkv, c->causal, c->q_pos, c->window, c->softcap, plans[pl].bq, plans[pl].bk,
                      th ? 2 : 1, worst, at, got[at], ref[at], tl);
            }
    }
    free(buf_q), free(buf_kv), free(buf16), free(ref), free(got);
}

/* Decode shapes of Gemma2-2B (8 heads, 4 kv heads, D 256) and a GQA-8 one, for every cache type:
** 1 to 4 queries at the end of caches of many lengths (sub-block and range edges), windows from 1
** to past the context.
**
** make check-long (TOWER_LONG=1) runs every (length, window, queries) combination with each of the
** three cache types. The default run gives each combination one cache type, in rotation
** ((li + 2 wi + tq) mod 3): every length, every window, every query count and the GQA-8 shape still
** run with every cache type, and every combination with one of them. What a cache type changes is
** the load of K/V (f32, or widening f16 / bf16), which does not depend on the length or window;
** those drive the block, split and mask logic, which does not depend on the type. */
static void decode_sweep(tw_pool *pool) {
    const int32_t lens[] = { 1, 2, 15, 16, 17, 63, 64, 65, 127, 200, 513, 1031 };
    const int32_t windows[] = { 0, 1, 5, 64, 300, 5000 };
    const bool all_types = th_long();
    for (int kt = TW_KV_F32; kt <= TW_KV_BF16; kt++)
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
            for (size_t wi = 0; wi < sizeof windows / sizeof windows[0]; wi++)
                for (int32_t tq = 1; tq <= 4; tq++) {
                    int32_t tk = lens[li];
                    if (tq > tk || (tq == 3 && li % 2)) continue;
                    if (!all_types && (int)((li + 2 * wi + (size_t)tq) % 3) != kt) continue;
                    bool gqa8 = (li + wi) % 3 == 0 && tq == 1;
                    acase c = { "gemma2", gqa8 ? 64 : 256, tq, tk, gqa8 ? 8 : 8, gqa8 ? 1 : 4, true, tk - tq,
                                windows[wi], wi % 2 ? 0 : 50, wi % 2 ? 10 : 40 };
                    run_case(pool, &c, (tw_kv_type)kt);
                }
    /* head dims that are not a multiple of the vector width: the kernels' masked tails */
    const int32_t dims[] = { 20, 72, 100 };
    for (int kt = TW_KV_F32; kt <= TW_KV_BF16; kt++)
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
            for (int32_t tq = 1; tq <= 2; tq++) {
                acase c = { "odd-D", dims[di], tq, 77, 4, 2, true, 77 - tq, 0, 30, 10 };
                run_case(pool, &c, (tw_kv_type)kt);
            }
}

/* SIMD rounding == plain C rounding, bit for bit, on random values and the awkward ones */
static void check_rounding(void) {
    enum { N = 4099 };
    float *x = malloc(sizeof(float) * N);
    uint16_t *h = malloc(2 * N);
    for (int i = 0; i < N; i++) {
        uint32_t u = (uint32_t)(rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17);
        memcpy(&x[i], &u, 4);
        if (i % 3 == 0) x[i] = frand() * 70000.0f;                     /* f16 overflow range */
        if (i % 5 == 0) x[i] = frand() * 1e-6f;                        /* f16 subnormals     */
        if (i % 7 == 0) x[i] = 1.0f + (float)(i % 4) / 2048.0f;        /* f16 ties           */
        if (i % 11 == 0) x[i] = 1.0f + (float)(i % 4) / 256.0f;        /* bf16 ties          */
    }
    x[1] = INFINITY, x[2] = -INFINITY, x[4] = NAN, x[8] = 65519.0f, x[16] = 65520.0f, x[32] = -0.0f;
    tw_kpath active = tw_kernels_path();
    for (int kt = TW_KV_F16; kt <= TW_KV_BF16; kt++)
        for (int p = TW_KPATH_REF; p < TW_KPATH_COUNT; p++) {
            if (!tw_kernels_force((tw_kpath)p)) continue;
            tw_kv_store(h, (tw_kv_type)kt, x, N);
            tw_kernels_force(active);
            float *w = malloc(sizeof(float) * N);
            tw_kv_widen_ref(w, h, (tw_kv_type)kt, N);
            int bad = 0;
            for (int i = 0; i < N; i++) {
                float r = tw_kv_round_ref(x[i], (tw_kv_type)kt);
                bool same = isnan(r) ? isnan(w[i]) : memcmp(&r, &w[i], 4) == 0;
                if (!same && bad++ < 3) printf("  %s %s: %a -> %a, plain C %a\n", tw_kpath_name((tw_kpath)p), tw_kv_type_name((tw_kv_type)kt), x[i], w[i], r);
            }
            CHECK(bad == 0, "%s rounding to %s: %d values differ from plain C", tw_kpath_name((tw_kpath)p), tw_kv_type_name((tw_kv_type)kt), bad);
            free(w);
        }
    CHECK(tw_kv_round_ref(65520.0f, TW_KV_F16) == INFINITY, "f16 overflow");
    CHECK(tw_kv_round_ref(1.0f + 1.0f / 2048, TW_KV_F16) == 1.0f, "f16 tie to even");
    CHECK(tw_kv_round_ref(1.0f + 3.0f / 2048, TW_KV_F16) == 1.0f + 2.0f / 1024, "f16 tie to even (up)");
    CHECK(tw_kv_round_ref(1.0f + 1.0f / 256, TW_KV_BF16) == 1.0f, "bf16 tie to even");
    CHECK(tw_kv_round_ref(1.0f + 3.0f / 256, TW_KV_BF16) == 1.0f + 2.0f / 128, "bf16 tie to even (up)");
    free(x), free(h);
}

/* ulps between got and the exact value (double), measured in the f32 spacing at the exact value */
static double ulps(float got, double exact) {
    float r = (float)fabs(exact);
    double ulp = (double)nextafterf(r, INFINITY) - (double)r;
    return fabs((double)got - exact) / ulp;
}

/* The SIMD paths' exp (x in [-87, 88]) and tanh (x in [-12, 12], and tiny |x|) against libm in
** double: at most 3 ulp. */
static void check_vmath(void) {
    enum { N = 1 << 20 };
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
    for (int p = TW_KPATH_AVX2; p < TW_KPATH_COUNT; p++) {
        if (!tw_kpath_supported((tw_kpath)p)) continue;
        void (*fn)(float *, const float *, int64_t, int) = p == TW_KPATH_AVX512 ? tw_attn_vmath_avx512 : tw_attn_vmath_avx2;
        for (int f = 0; f < 2; f++) {
            for (int i = 0; i < N; i++) {
                double u = (double)i / (N - 1);
                if (f == 0) x[i] = (float)(-87.0 + 175.0 * u);
                else x[i] = i < N / 2 ? (float)(-12.0 + 24.0 * u * 2) : (float)((2 * u - 1.5) * 1e-3 * frand());
            }
            fn(y, x, N, f);
            double worst = 0;
            int at = 0;
            for (int i = 0; i < N; i++) {
                double e = f == 0 ? exp((double)x[i]) : tanh((double)x[i]);
                double d = x[i] == 0 ? fabs(y[i]) : ulps(y[i], e);
                if (!(d <= worst)) worst = d, at = i;
            }
            printf("%s %s: max %.2f ulp (at x = %g)\n", tw_kpath_name((tw_kpath)p), f ? "tanh" : "exp", worst, x[at]);
            CHECK(worst <= 3.0, "%s %s: %g ulp at x = %g", tw_kpath_name((tw_kpath)p), f ? "tanh" : "exp", worst, x[at]);
        }
    }
    free(x), free(y);
}

/* ---- the model with 16-bit caches vs the fixtures ------------------------------------------ */

static float *fx_f32(tw_st_set *st, const char *name, int64_t *n) {   /* f32 or f64 stored */
    const tw_tensor *t = tw_st_get(st, name);
    if (!t) return NULL;
    int64_t k = tw_tensor_nelem(t);
    float *out = malloc(sizeof(float) * (size_t)(k ? k : 1));
    if (t->type == TW_DT_F32) memcpy(out, t->data, sizeof(float) * (size_t)k);
    else
        for (int64_t i = 0; i < k; i++) {
            double d;
            memcpy(&d, (const char *)t->data + 8 * i, 8);
            out[i] = (float)d;
        }
    if (n) *n = k;
    return out;
}

static int32_t *fx_ids(tw_st_set *st, const char *name, int64_t *n) {
    const tw_tensor *t = tw_st_get(st, name);
    if (!t) return NULL;
    int64_t k = tw_tensor_nelem(t);
    int32_t *out = malloc(sizeof(int32_t) * (size_t)(k ? k : 1));
    for (int64_t i = 0; i < k; i++) {
        int64_t v;
        memcpy(&v, (const char *)t->data + 8 * i, 8);
        out[i] = (int32_t)v;
    }
    if (n) *n = k;
    return out;
}

/* max |logit - ref| over the probe columns and the reference top-8 of one row */
static double row_err(const float *l, const int32_t *probe, int64_t P, const float *r_probe, const int32_t *r_topk,
                      const float *r_topv) {
    double e = 0;
    for (int64_t p = 0; p < P; p++) e = fmax(e, fabs((double)l[probe[p]] - r_probe[p]));
    for (int k = 0; k < 8; k++) e = fmax(e, fabs((double)l[r_topk[k]] - r_topv[k]));
    return e;
}

static int32_t argmax_row(const float *l, int32_t V) {
    int32_t b = 0;
    for (int32_t i = 1; i < V; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

/* One fixture case with a cache of type kt: prefill (every position), then the fixture's greedy
** tokens fed one at a time. Returns the max logit error; counts argmax disagreements. */
static double model_case(tw_model *m, const char *name, int n_images, tw_kv_type kt, int *n_flip, int *n_rows) {
    char rel[256];
    snprintf(rel, sizeof rel, "expected/%s/tensors.safetensors", name);
    tw_st_set *st = NULL;
    CHECK_OK(tw_st_open_file(th_path(rel), &st), rel);
    if (!st) return INFINITY;
    const int32_t V = m->text.n_vocab, H = m->text.n_embd;
    int64_t T, P, n_gen;
    int32_t *ids = fx_ids(st, "input_ids", &T), *probe = fx_ids(st, "probe_ids", &P);
    int32_t *r_topk = fx_ids(st, "logits_topk_ids", NULL), *r_argmax = fx_ids(st, "logits_argmax", NULL);
    int32_t *gen = fx_ids(st, "generated_ids", &n_gen), *g_topk = fx_ids(st, "gen_topk_ids", NULL);
    float *r_probe = fx_f32(st, "logits_probe", NULL), *r_topv = fx_f32(st, "logits_topk_values", NULL);
    float *g_probe = fx_f32(st, "gen_logits_probe", NULL), *g_topv = fx_f32(st, "gen_topk_values", NULL);
    float *embd = NULL;
    int64_t n_embd = 0;
    for (int j = 0; j < n_images; j++) {
        char nm[32];
        snprintf(nm, sizeof nm, n_images == 1 ? "packed" : "packed_%d", j);
        int64_t k;
        float *f = fx_f32(st, nm, &k);
        embd = realloc(embd, sizeof(float) * (size_t)(n_embd + k));
        memcpy(embd + n_embd, f, sizeof(float) * (size_t)k);
        n_embd += k;
        free(f);
    }
    float *logits = malloc(sizeof(float) * (size_t)T * V);
    tw_seq *s = NULL;
    CHECK_OK(tw_seq_new_ex(m, 0, &(tw_seq_params){ .kv_type = kt }, &s), "tw_seq_new_ex");
    CHECK(tw_seq_kv_type(s) == kt, "kv type kept");
    tw_eval_opts o = { .embd = embd, .n_embd_rows = (size_t)(n_embd / H), .logits = logits };
    CHECK_OK(tw_seq_eval(s, ids, (size_t)T, &o), name);
    double e = 0;
    for (int64_t t = 0; t < T; t++) {
        e = fmax(e, row_err(logits + t * V, probe, P, r_probe + t * P, r_topk + t * 8, r_topv + t * 8));
        *n_flip += argmax_row(logits + t * V, V) != r_argmax[t];
        ++*n_rows;
    }
    for (int64_t g = 0; g < n_gen; g++) {   /* the reference's tokens, whatever ours would be */
        const float *l = tw_seq_logits(s);
        e = fmax(e, row_err(l, probe, P, g_probe + g * P, g_topk + g * 8, g_topv + g * 8));
        *n_flip += argmax_row(l, V) != gen[g];
        ++*n_rows;
        CHECK_OK(tw_seq_eval(s, &gen[g], 1, NULL), "decode");
    }
    tw_seq_free(s);
    free(logits), free(embd), free(ids), free(probe), free(r_topk), free(r_argmax), free(gen), free(g_topk);
    free(r_probe), free(r_topv), free(g_probe), free(g_topv);
    tw_st_close(st);
    return e;
}

/* Tolerances per cache type. f32: the fixtures' 3e-3 (the cache holds the exact f32 values; the
** argmax must agree on every row). 16-bit: rounding changes each key and value by up to 2^-11 (f16)
** or 2^-8 (bf16) of itself; the tiny random model amplifies that a lot (softcapped scores near +-40,
** peaked softmaxes, logits up to 19): measured over the seven cases, on the SIMD and on the plain C
** paths alike, 0.25 (f16) and 1.12 (bf16) at most, argmax different on 3 / 23 of 577 rows. The
** ratio follows the rounding steps (x4.6 for steps x8, the largest error being in different
** cases). The tolerances are twice the measurements: 0.5 and 2.5. */
static void model_kv_types(void) {
    tw_model_params p = tw_model_default_params();
    p.final_softcap = 0;   /* the fixtures hold logits without the final softcap */
    p.n_threads = 2;
    tw_model *m = NULL;
    CHECK_OK(tw_model_load_dir(th_path("tiny-towervision"), &p, &m), "load tiny-towervision");
    if (!m) return;
    const struct { const char *name; int n_images; } cases[] = {
        { "text_hello", 0 }, { "text_translate", 0 }, { "text_long", 0 }, { "img_60x60", 1 },
        { "img_200x100", 1 }, { "img_13x400", 1 }, { "two_images", 2 },
    };
    const double tol[] = { 3e-3, 0.5, 2.5 };
    for (int kt = TW_KV_F32; kt <= TW_KV_BF16; kt++) {
        double worst = 0;
        int flips = 0, rows = 0;
        printf("kv %-4s logits vs reference:", tw_kv_type_name((tw_kv_type)kt));
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            double e = model_case(m, cases[c].name, cases[c].n_images, (tw_kv_type)kt, &flips, &rows);
            printf(" %.1e", e);
            worst = fmax(worst, e);
        }
        printf("  max %.2e (tol %g), argmax differs on %d of %d rows\n", worst, tol[kt], flips, rows);
        CHECK(worst <= tol[kt], "kv %s: logits off by %g > %g", tw_kv_type_name((tw_kv_type)kt), worst, tol[kt]);
        if (kt == TW_KV_F32) CHECK(flips == 0, "kv f32: %d argmax differ", flips);
    }
    tw_model_free(m);
}

int main(void) {
    tw_pool *pool = tw_pool_new(2);
    double t0 = tw_time_ms();
    check_vmath();
    printf("  (vmath %.1f s)\n", (tw_time_ms() - t0) / 1e3);
    /* scores reach about amp * sqrt(D) / 3 (q in [-amp, amp), k in [-1, 1)) times 1/sqrt(D) */
    const acase cases[] = {
        /* SigLIP: non-causal, interleaved, Tq = Tk */
        { "siglip", 16, 16, 16, 2, 2, false, 0, 0, 0, 4 },
        { "siglip", 72, 1, 1, 3, 3, false, 0, 0, 0, 4 },
        { "siglip", 72, 7, 7, 2, 2, false, 0, 0, 0, 8 },
        { "siglip", 72, 64, 64, 2, 2, false, 0, 0, 0, 8 },
        { "siglip", 72, 729, 729, 2, 2, false, 0, 0, 0, 8 },
        { "siglip", 16, 729, 729, 2, 2, false, 0, 0, 0, 30 },
        { "siglip", 64, 1000, 1000, 1, 1, false, 0, 0, 0, 8 },
        /* Gemma2 prefill from position 0: causal, window, softcap, GQA */
        { "gemma2", 16, 7, 7, 4, 2, true, 0, 0, 50, 40 },
        { "gemma2", 16, 64, 64, 4, 2, true, 0, 8, 50, 40 },
        { "gemma2", 16, 1000, 1000, 4, 1, true, 0, 0, 50, 60 },
        { "gemma2", 16, 1000, 1000, 2, 2, true, 0, 100, 0, 10 },
        { "gemma2", 64, 64, 64, 4, 4, true, 0, 0, 0, 10 },
        { "gemma2", 128, 64, 64, 4, 1, true, 0, 30, 50, 100 },
        { "gemma2", 256, 64, 64, 8, 4, true, 0, 0, 50, 100 },
        { "gemma2", 256, 7, 7, 8, 4, true, 0, 4, 50, 100 },
        { "gemma2", 72, 729, 729, 2, 1, true, 0, 0, 0, 8 },
        /* chunked prefill: queries from an offset over a longer cache */
        { "gemma2", 256, 64, 264, 8, 4, true, 200, 0, 50, 100 },
        { "gemma2", 256, 64, 264, 8, 4, true, 200, 100, 50, 100 },
        { "gemma2", 64, 7, 1000, 4, 2, true, 993, 500, 50, 40 },
        { "gemma2", 16, 729, 1000, 4, 4, true, 271, 0, 50, 40 },
        /* decode: one query over a long cache (key ranges split between threads) */
        { "gemma2", 256, 1, 1000, 8, 4, true, 999, 0, 50, 100 },
        { "gemma2", 256, 1, 1000, 8, 4, true, 999, 4096, 50, 100 },
        { "gemma2", 256, 1, 1000, 8, 4, true, 999, 300, 50, 100 },
        { "gemma2", 256, 1, 1000, 2, 1, true, 999, 0, 50, 100 },
        { "gemma2", 128, 1, 1000, 4, 1, true, 999, 0, 0, 10 },
        { "gemma2", 72, 1, 1000, 1, 1, true, 999, 0, 0, 10 },
        { "gemma2", 256, 1, 1, 8, 4, true, 0, 0, 50, 100 },
        { "gemma2", 16, 1, 64, 4, 2, true, 63, 8, 50, 40 },
        /* non-causal with Tq != Tk */
        { "gemma2", 72, 7, 1000, 2, 2, false, 0, 0, 0, 8 },
        { "gemma2", 128, 64, 7, 4, 2, false, 0, 0, 50, 40 },
    };
    check_rounding();
    /* Gemma2 cases run with every cache type. The long prefills (Tq x Tk >= 729 x 729) are the
    ** slowest: make check-long runs each with f32, f16 and bf16; the default run with f32 and one
    ** 16-bit type, alternating, so that f16 and bf16 each still run on long prefills. The 16-bit
    ** types change only how K/V are loaded (widened in the kernels), which every shorter case checks
    ** on every path, plan and tail; what the long ones add (many key blocks, masks across them, the
    ** thread split) does not depend on the type. */
    t0 = tw_time_ms();
    int n_long = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool big = cases[i].layout[0] == 'g' && cases[i].Tq * cases[i].Tk >= 729 * 729;
        int kt16 = big ? TW_KV_F16 + n_long++ % 2 : -1;
        for (int kt = TW_KV_F32; kt <= (cases[i].layout[0] == 'g' ? TW_KV_BF16 : TW_KV_F32); kt++)
            if (kt == TW_KV_F32 || !big || kt == kt16 || th_long()) run_case(pool, &cases[i], (tw_kv_type)kt);
    }
    printf("  (cases %.1f s)\n", (tw_time_ms() - t0) / 1e3);
    t0 = tw_time_ms();
    decode_sweep(pool);
    printf("  (decode sweep %.1f s)\n", (tw_time_ms() - t0) / 1e3);
    t0 = tw_time_ms();
    model_kv_types();
    printf("  (model %.1f s)\n", (tw_time_ms() - t0) / 1e3);
    printf("decode kernel: max |o - o_ref| = %.2e max|v|\n", worst_dec);
    printf("%lld comparisons on paths:", (long long)n_compared);
    for (int p = TW_KPATH_AVX2; p < TW_KPATH_COUNT; p++)
        if (tw_kpath_supported((tw_kpath)p)) printf(" %s", tw_kpath_name((tw_kpath)p));
    printf("\n");
    tw_pool_free(pool);
    return th_report();
}
