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
** Tolerance: the paths differ from the reference in the order of the f32 additions, in the
** vectorised exp/tanh (a few ulp) and in normalising at the end (flash) instead of per weight, so
** |o - o_ref| <= 1e-5 * max|v| + 1e-6 per output. Scores are made large (up to ~+-40, as Gemma2's
** softcapped ones are) so the softmax is peaked and errors in it show. The vectorised exp and
** tanh of each path are also checked on their own against libm in double (<= 3 ulp).
*/
#include "attn.h"
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

static void run_case(tw_pool *pool2, const acase *c) {
    int32_t D = c->D, nh = c->nh, nkv = c->nkv;
    tw_attn_args a = { 0 };
    float *buf_q, *buf_kv = NULL;
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
        for (size_t i = 0; i < 2 * nkvbuf; i++) buf_kv[i] = frand();
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

    float vmax = 0;
    for (int32_t j = 0; j < c->Tk; j++)
        for (int32_t e = 0; e < nkv * D; e++) vmax = fmaxf(vmax, fabsf(((const float *)a.v)[(size_t)j * a.ldv + e]));
    float tol = 1e-5f * vmax + 1e-6f;

    tw_attn_plan plans[5];
    int n_plans = 0;
    plans[n_plans++] = tw_attention_plan(&a, 2);
    plans[n_plans++] = (tw_attn_plan){ 1, 16 };
    plans[n_plans++] = (tw_attn_plan){ 7, 100 };
    plans[n_plans++] = (tw_attn_plan){ 64, 0 };
    plans[n_plans++] = (tw_attn_plan){ 32, 256 };

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
                float worst = 0;
                size_t at = 0;
                for (size_t i = 0; i < no; i++) {
                    float d = fabsf(got[i] - ref[i]);
                    if (!(d <= worst)) worst = d, at = i;   /* NaN counts as worst */
                }
                n_compared++;
                CHECK(worst <= tol, "%s %s D=%d Tq=%d Tk=%d nh=%d nkv=%d causal=%d q_pos=%d window=%d cap=%g "
                      "plan bq=%d bk=%d threads=%d: max err %g at %zu (got %g ref %g) > tol %g", what, c->layout, D,
                      c->Tq, c->Tk, nh, nkv, c->causal, c->q_pos, c->window, c->softcap, plans[pl].bq, plans[pl].bk,
                      th ? 2 : 1, worst, at, got[at], ref[at], tol);
            }
    }
    free(buf_q), free(buf_kv), free(ref), free(got);
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

int main(void) {
    tw_pool *pool = tw_pool_new(2);
    check_vmath();
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
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(pool, &cases[i]);
    printf("%lld comparisons on paths:", (long long)n_compared);
    for (int p = TW_KPATH_AVX2; p < TW_KPATH_COUNT; p++)
        if (tw_kpath_supported((tw_kpath)p)) printf(" %s", tw_kpath_name((tw_kpath)p));
    printf("\n");
    tw_pool_free(pool);
    return th_report();
}
