/*
** test_kernels.c — every SIMD matmul path the CPU can run against the plain C path, on random
** data, for f32/f16/bf16 weights and shapes chosen to hit every tail: K not a multiple of the
** vector width, N not a multiple of the tile, T not a multiple of the token tile, K cut into
** chunks, tokens split across threads. Also checks how paths are chosen (tw_kernels_force,
** TOWER_KERNELS) and that unsupported paths are refused.
**
** The norms (vectorised on some paths) are compared the same way, to a few ulp.
**
** Tolerance: the paths differ from the reference only in the order of the f32 additions, so
** |y - y_ref| <= 1e-5 * sum_k |w x| + 1e-6 per output.
*/
#include "kernels.h"
#include "wtype.h"
#include "testhelp.h"

#include <math.h>
#include <unistd.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float frand(void) {   /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (2.0 / 16777216.0) - 1.0);
}

/* A random [N, K] weight of type dt, and its exact f32 value (for the |w x| bound). */
typedef struct {
    tw_tensor t;
    void *data;
    float *wf;   /* [N, K] */
} weight;

static weight make_weight(tw_dtype dt, int64_t N, int64_t K) {
    weight w = { 0 };
    size_t n = (size_t)(N * K), es = tw_dtype_size(dt);
    w.data = malloc(n * es + 1);
    w.wf = malloc(n * sizeof(float) + 1);
    for (size_t i = 0; i < n; i++) {
        float v = frand();
        if (dt == TW_DT_F32) ((float *)w.data)[i] = v;
        if (dt == TW_DT_F16) v = tw_f16_to_f32(((uint16_t *)w.data)[i] = tw_f32_to_f16(v));
        if (dt == TW_DT_BF16) v = tw_bf16_to_f32(((uint16_t *)w.data)[i] = tw_f32_to_bf16(v));
        w.wf[i] = v;
    }
    w.t = (tw_tensor){ .name = "w", .type = dt, .ndim = 2, .shape = { N, K }, .data = w.data, .nbytes = n * es };
    return w;
}

static void free_weight(weight *w) {
    free(w->data);
    free(w->wf);
}

static bool tested[TW_KPATH_COUNT];
static int64_t n_cases;
/* relative part of the bound: 1e-5 for the f32 paths; the bf16-dot mode adds its rounding of x */
static double tol_rel = 1e-5;
static double worst_ratio;   /* the largest |y - y_ref| / bound seen since it was last reset */

/* One shape: reference result, then every other supported path, compared elementwise. */
static void check_shape(tw_pool *pool, tw_dtype dt, int64_t T, int64_t N, int64_t K, bool with_bias) {
    weight w = make_weight(dt, N, K);
    float *x = malloc(sizeof(float) * (size_t)(T * K) + 1);
    for (int64_t i = 0; i < T * K; i++) x[i] = frand();
    float *bias = malloc(sizeof(float) * (size_t)N);
    for (int64_t i = 0; i < N; i++) bias[i] = frand();
    tw_tensor bt = { .name = "b", .type = TW_DT_F32, .ndim = 1, .shape = { N }, .data = bias,
                     .nbytes = sizeof(float) * (size_t)N };
    const tw_tensor *b = with_bias ? &bt : NULL;

    float *yref = malloc(sizeof(float) * (size_t)(T * N));
    float *y = malloc(sizeof(float) * (size_t)(T * N));
    tw_kernels_force(TW_KPATH_REF);
    tw_matmul(pool, yref, x, T, &w.t, b);

    for (int p = TW_KPATH_REF + 1; p < TW_KPATH_COUNT; p++) {
        if (!tw_kernels_force((tw_kpath)p)) continue;
        tested[p] = true;
        for (int64_t i = 0; i < T * N; i++) y[i] = NAN;   /* every output must be written */
        tw_matmul(pool, y, x, T, &w.t, b);
        int64_t bad = 0, first = -1;
        double worst = 0;
        for (int64_t t = 0; t < T; t++)
            for (int64_t n = 0; n < N; n++) {
                double mag = 0;
                for (int64_t k = 0; k < K; k++) mag += fabs((double)w.wf[n * K + k] * x[t * K + k]);
                double d = fabs((double)y[t * N + n] - yref[t * N + n]), tol = tol_rel * mag + 1e-6;
                if (!(d <= tol)) {
                    if (first < 0) first = t * N + n;
                    bad++;
                }
                if (d / tol > worst) worst = d / tol;
            }
        if (worst > worst_ratio) worst_ratio = worst;
        CHECK(bad == 0, "%s %s T=%lld N=%lld K=%lld bias=%d: %lld of %lld outputs off (first [%lld]: %g vs %g)",
              tw_kpath_name((tw_kpath)p), tw_dtype_name(dt), (long long)T, (long long)N, (long long)K,
              with_bias, (long long)bad, (long long)(T * N), (long long)(first < 0 ? 0 : first),
              first < 0 ? 0.0 : y[first], first < 0 ? 0.0 : yref[first]);
    }
    n_cases++;
    free(y);
    free(yref);
    free(bias);
    free(x);
    free_weight(&w);
}

static void test_shapes(tw_pool *pool) {
    static const int64_t Ks[] = { 1, 13, 16, 64, 72, 256, 1152, 2304, 4304 };
    static const int64_t Ns[] = { 1, 7, 64, 256, 1152 };
    static const int64_t Ts[] = { 1, 2, 5, 16 };
    static const tw_dtype dts[] = { TW_DT_F32, TW_DT_F16, TW_DT_BF16 };
    int i = 0;
    for (size_t d = 0; d < 3; d++)
        for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++)
            for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++)
                for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
                    int64_t K = Ks[ki], N = Ns[ni], T = Ts[ti];
                    /* the big products only at T = 1 and 5: enough to cover them, and fast */
                    if (N * K * T > 3000000 && T != 1 && T != 5) continue;
                    if (N * K * T > 6000000) continue;
                    check_shape(pool, dts[d], T, N, K, (i++ & 1) != 0);
                }
    /* many tokens (vision tower, prefill), small N and K; K chunked; odd everything */
    for (size_t d = 0; d < 3; d++) {
        check_shape(pool, dts[d], 729, 64, 72, true);
        check_shape(pool, dts[d], 729, 7, 13, false);
        check_shape(pool, dts[d], 37, 130, 1152, d == 1);
        check_shape(pool, dts[d], 16, 136, 4304, true);
        check_shape(pool, dts[d], 13, 9, 3100, false);
        check_shape(pool, dts[d], 7, 20, 14336, true);   /* Tower+ 9B down projection's K */
        check_shape(pool, dts[d], 1, 9, 9216, false);
        check_shape(pool, dts[d], 729, 20, 1152, true);  /* vision-sized token count, tokens split */
        /* the avx2 GEMM's tails: 24-row panels and 8-row groups cut short (N = 17, 4304 = 179 x 24
        ** + 8), K = 3, K in 256-column chunks with a short last one (1153), 2 and 3 tokens, and
        ** more tokens than one x block holds (1500: three token blocks) */
        check_shape(pool, dts[d], 3, 17, 3, d == 0);
        check_shape(pool, dts[d], 2, 4304, 1152, true);
        check_shape(pool, dts[d], 1500, 17, 1153, d == 2);
    }
    /* decode with a longer K than the one-row loop's x buffer (16384): the 1 x 8 tiles */
    check_shape(pool, TW_DT_BF16, 1, 20, 16411, true);
    check_shape(pool, TW_DT_F16, 1, 9, 16400, false);
    /* the LM head: 256001 rows (not a multiple of anything), one token */
    check_shape(pool, TW_DT_BF16, 1, 256001, 64, false);
}

/* The packed GEMM (T >= 2 on avx512) against the row-dot tiles it replaced, which stay the T = 1
** path and are checked here for T > 1 too; then the opt-in bf16-dot mode, whose bound adds the
** rounding of x to bf16: |x~ - x| <= 2^-8 |x| (8 significant bits, round to nearest even), so
** |sum w x~ - sum w x| <= 2^-8 sum |w x|, plus the f32 summation's 1e-5 sum |w x|. */
static void test_gemm_modes(tw_pool *pool) {
    static const tw_dtype dts[] = { TW_DT_F32, TW_DT_F16, TW_DT_BF16 };
    int64_t old = tw_kernels_set_gemm_min_tokens(INT64_MAX);
    for (size_t d = 0; d < 3; d++) {   /* row-dot tiles for many tokens */
        check_shape(pool, dts[d], 37, 130, 1152, true);
        check_shape(pool, dts[d], 13, 9, 3100, false);
    }
    tw_kernels_set_gemm_min_tokens(old);

    tw_kernels_force(TW_KPATH_AVX512);
    bool was = tw_kernels_set_bf16_activations(true);
    bool on = tw_kernels_bf16_activations();
    printf("bf16-dot mode %s on this CPU\n", on ? "runs" : "cannot run (no avx512bf16): f32 bound");
    tol_rel = on ? 1.0 / 256 + 1e-5 : 1e-5;
    worst_ratio = 0;
    static const int64_t shapes[][3] = {   /* T, N, K: tails in every direction, odd K, chunked K */
        { 2, 48, 64 }, { 5, 7, 13 }, { 16, 100, 1152 }, { 37, 130, 1153 }, { 9, 64, 4304 }, { 729, 20, 72 },
        { 64, 96, 2304 },
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        check_shape(pool, TW_DT_BF16, shapes[i][0], shapes[i][1], shapes[i][2], i & 1);
    printf("bf16-dot: worst |y - y_ref| / bound %.3f (bound (2^-8 + 1e-5) sum|wx| + 1e-6)\n", worst_ratio);
    /* other weight types ignore the mode: the f32 bound holds */
    tol_rel = 1e-5;
    check_shape(pool, TW_DT_F32, 16, 64, 300, true);
    check_shape(pool, TW_DT_F16, 16, 64, 300, false);
    tw_kernels_set_bf16_activations(was);
}

/* The packed GEMMs (avx512, avx2) do the same arithmetic for a token whatever T, the token's place
** in its tile and the thread count: prefill, re-evaluation after a rewind and a batch give the same
** bits. Both sum each output as one FMA chain over k in order from the bias, so they also give the
** same bits as each other. */
static void test_gemm_invariance(tw_pool *p2, tw_pool *p1) {
    const int64_t T = 41, N = 100, K = 1000;
    static const tw_kpath gemm_paths[] = { TW_KPATH_AVX2, TW_KPATH_AVX512 };
    weight w = make_weight(TW_DT_BF16, N, K);
    float *x = malloc(sizeof(float) * (size_t)(T * K)), *all = malloc(sizeof(float) * (size_t)(T * N));
    float *part = malloc(sizeof(float) * (size_t)(T * N)), *first = NULL;
    for (int64_t i = 0; i < T * K; i++) x[i] = frand();
    for (size_t pi = 0; pi < sizeof gemm_paths / sizeof gemm_paths[0]; pi++) {
        tw_kpath path = gemm_paths[pi];
        if (!tw_kernels_force(path)) continue;
        tw_matmul(p2, all, x, T, &w.t, NULL);
        for (int64_t t0 = 3, n = 2; t0 + n <= T; t0 += n, n = n * 2 % 11 + 2) {
            tw_matmul(n & 1 ? p1 : p2, part, x + t0 * K, n, &w.t, NULL);
            CHECK(memcmp(part, all + t0 * N, sizeof(float) * (size_t)(n * N)) == 0,
                  "%s gemm: tokens %lld..%lld alone differ from the same tokens in a batch of %lld", tw_kpath_name(path),
                  (long long)t0, (long long)(t0 + n), (long long)T);
        }
        if (!first) {
            first = malloc(sizeof(float) * (size_t)(T * N));
            memcpy(first, all, sizeof(float) * (size_t)(T * N));
        } else {
            CHECK(memcmp(first, all, sizeof(float) * (size_t)(T * N)) == 0, "%s gemm: other bits than %s",
                  tw_kpath_name(path), tw_kpath_name(gemm_paths[0]));
        }
    }
    free(first);
    free(part);
    free(all);
    free(x);
    free_weight(&w);
}

/* The avx2 and avx512 GEMMs give the same bits on every weight type, with and without bias, on
** shapes with tails in every direction (see test_gemm_invariance). */
static void test_gemm_same_bits(tw_pool *pool) {
    static const int64_t shapes[][3] = { { 2, 1, 1 }, { 3, 17, 3 }, { 5, 24, 8 }, { 729, 20, 72 }, { 37, 130, 1153 },
                                         { 9, 64, 4304 }, { 64, 96, 2304 }, { 600, 50, 300 } };
    static const tw_dtype dts[] = { TW_DT_F32, TW_DT_F16, TW_DT_BF16 };
    if (!tw_kpath_supported(TW_KPATH_AVX512)) return;   /* avx2 alone: nothing to compare with */
    for (size_t d = 0; d < 3; d++)
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            int64_t T = shapes[i][0], N = shapes[i][1], K = shapes[i][2];
            weight w = make_weight(dts[d], N, K);
            float *x = malloc(sizeof(float) * (size_t)(T * K)), *bias = malloc(sizeof(float) * (size_t)N);
            float *y2 = malloc(sizeof(float) * (size_t)(T * N)), *y5 = malloc(sizeof(float) * (size_t)(T * N));
            for (int64_t k = 0; k < T * K; k++) x[k] = frand();
            for (int64_t n = 0; n < N; n++) bias[n] = frand();
            tw_tensor bt = { .name = "b", .type = TW_DT_F32, .ndim = 1, .shape = { N }, .data = bias,
                             .nbytes = sizeof(float) * (size_t)N };
            tw_kernels_force(TW_KPATH_AVX2);
            tw_matmul(pool, y2, x, T, &w.t, i & 1 ? &bt : NULL);
            tw_kernels_force(TW_KPATH_AVX512);
            tw_matmul(pool, y5, x, T, &w.t, i & 1 ? &bt : NULL);
            CHECK(memcmp(y2, y5, sizeof(float) * (size_t)(T * N)) == 0, "avx2 and avx512 gemm differ: %s T=%lld N=%lld K=%lld",
                  tw_dtype_name(dts[d]), (long long)T, (long long)N, (long long)K);
            free(y5);
            free(y2);
            free(bias);
            free(x);
            free_weight(&w);
        }
}

/* tw_matmul_rows (a batch of decode steps): every row bit-identical to tw_matmul of that row alone,
** on every path this CPU runs, for each float type, row counts up to and past the kernel's 8, K
** with tails and K past the decode kernel's x buffer, 1-3 threads. */
static void test_matmul_rows(tw_pool *pool, tw_pool *p1, tw_pool *p3) {
    static const int64_t shapes[][3] = { { 2, 1, 1 }, { 3, 17, 3 }, { 5, 24, 31 }, { 8, 70, 100 }, { 4, 130, 1153 },
                                         { 9, 64, 2304 }, { 2, 40, 16500 }, { 7, 300, 64 } };
    static const tw_dtype dts[] = { TW_DT_F32, TW_DT_F16, TW_DT_BF16 };
    tw_pool *pools[] = { pool, p1, p3 };
    int64_t n_checked = 0;
    for (int path = 0; path < TW_KPATH_COUNT; path++) {
        if (!tw_kpath_supported((tw_kpath)path)) continue;
        tw_kernels_force((tw_kpath)path);
        for (size_t d = 0; d < 3; d++)
            for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
                int64_t T = shapes[i][0], N = shapes[i][1], K = shapes[i][2];
                weight w = make_weight(dts[d], N, K);
                float *x = malloc(sizeof(float) * (size_t)(T * K));
                float *ya = malloc(sizeof(float) * (size_t)(T * N)), *yb = malloc(sizeof(float) * (size_t)(T * N));
                for (int64_t k = 0; k < T * K; k++) x[k] = frand();
                tw_pool *pl = pools[i % 3];
                tw_matmul_rows(pl, ya, x, T, &w.t, NULL);
                for (int64_t t = 0; t < T; t++) tw_matmul(pl, yb + t * N, x + t * K, 1, &w.t, NULL);
                CHECK(memcmp(ya, yb, sizeof(float) * (size_t)(T * N)) == 0, "%s: tw_matmul_rows differs from one row at a time: %s T=%lld N=%lld K=%lld",
                      tw_kpath_name((tw_kpath)path), tw_dtype_name(dts[d]), (long long)T, (long long)N, (long long)K);
                n_checked++;
                free(yb);
                free(ya);
                free(x);
                free_weight(&w);
            }
    }
    printf("matmul rows: %lld cases bit-identical to one row at a time\n", (long long)n_checked);
}

/* Weights packed once (tw_kernels_pack_weight) give the same bits as packing per call, in both
** modes, for shapes with row and column tails; unpacking gives the memory back. */
static void test_packed_weights(tw_pool *pool) {
    static const int64_t shapes[][3] = { { 2, 48, 64 }, { 5, 7, 13 }, { 37, 100, 1153 }, { 70, 130, 2304 }, { 9, 49, 4304 } };
    if (!tw_kernels_force(TW_KPATH_AVX512)) return;
    CHECK(tw_kernels_packed_bytes() == 0, "no packed weights at start");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int64_t T = shapes[i][0], N = shapes[i][1], K = shapes[i][2];
        weight w = make_weight(TW_DT_BF16, N, K);
        float *x = malloc(sizeof(float) * (size_t)(T * K)), *bias = malloc(sizeof(float) * (size_t)N);
        float *y0 = malloc(sizeof(float) * (size_t)(T * N)), *y1 = malloc(sizeof(float) * (size_t)(T * N));
        for (int64_t k = 0; k < T * K; k++) x[k] = frand();
        for (int64_t n = 0; n < N; n++) bias[n] = frand();
        tw_tensor bt = { .name = "b", .type = TW_DT_F32, .ndim = 1, .shape = { N }, .data = bias,
                         .nbytes = sizeof(float) * (size_t)N };
        for (int mode = 0; mode < 2; mode++) {
            bool was = tw_kernels_set_bf16_activations(mode == 1);
            tw_matmul(pool, y0, x, T, &w.t, &bt);
            CHECK(tw_kernels_pack_weight(&w.t), "pack %lldx%lld", (long long)N, (long long)K);
            CHECK(tw_kernels_packed_bytes() >= sizeof(uint16_t) * (size_t)(N * K), "packed bytes counted");
            tw_matmul(pool, y1, x, T, &w.t, &bt);
            CHECK(memcmp(y0, y1, sizeof(float) * (size_t)(T * N)) == 0, "packed weight %lldx%lld T=%lld mode %d: other bits",
                  (long long)N, (long long)K, (long long)T, mode);
            tw_kernels_unpack_weight(&w.t);
            CHECK(tw_kernels_packed_bytes() == 0, "unpack frees");
            tw_kernels_set_bf16_activations(was);
        }
        free(y1);
        free(y0);
        free(bias);
        free(x);
        free_weight(&w);
    }
    weight f = make_weight(TW_DT_F32, 4, 4);
    CHECK(!tw_kernels_pack_weight(&f.t), "only BF16 weights are packed");
    free_weight(&f);
}

/* The norms: every path against ref, on rows with tails, in place and not. The SIMD versions sum
** in double like the reference, so the outputs agree to a few ulp of f32. */
static void test_norms(void) {
    static const int64_t ns[] = { 1, 13, 16, 64, 1152, 2304, 4304 };
    const int64_t T = 3;
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
        int64_t n = ns[ni];
        float *x = malloc(sizeof(float) * (size_t)(T * n)), *w = malloc(sizeof(float) * (size_t)n);
        float *b = malloc(sizeof(float) * (size_t)n), *ref = malloc(sizeof(float) * (size_t)(T * n) * 2);
        float *got = malloc(sizeof(float) * (size_t)(T * n));
        for (int64_t i = 0; i < T * n; i++) x[i] = 3.0f * frand() + 0.5f;
        for (int64_t i = 0; i < n; i++) w[i] = frand(), b[i] = frand();
        tw_kernels_force(TW_KPATH_REF);
        tw_rmsnorm_1p(ref, x, w, T, n, 1e-6f);
        tw_layernorm(ref + T * n, x, w, b, T, n, 1e-6f);
        for (int p = TW_KPATH_REF + 1; p < TW_KPATH_COUNT; p++) {
            if (!tw_kernels_force((tw_kpath)p)) continue;
            for (int which = 0; which < 2; which++)
                for (int inplace = 0; inplace < 2; inplace++) {
                    if (inplace) memcpy(got, x, sizeof(float) * (size_t)(T * n));
                    const float *in = inplace ? got : x;
                    if (which == 0) tw_rmsnorm_1p(got, in, w, T, n, 1e-6f);
                    else tw_layernorm(got, in, w, b, T, n, 1e-6f);
                    double worst = 0;
                    for (int64_t i = 0; i < T * n; i++) {
                        double e = fabs((double)got[i] - ref[which * T * n + i]) / (fabs(ref[which * T * n + i]) + 1e-6);
                        if (!(e <= worst)) worst = e;
                    }
                    CHECK(worst <= 1e-6, "%s %s n=%lld inplace=%d: relative error %g", tw_kpath_name((tw_kpath)p),
                          which ? "layernorm" : "rmsnorm", (long long)n, inplace, worst);
                }
        }
        free(got);
        free(ref);
        free(b);
        free(w);
        free(x);
    }
}

/* gelu_tanh over an array: every path against the scalar function, on a sweep through the
** region where the curve bends, big and tiny values, and the specials. */
static void test_gelu(void) {
    enum { n = 4000 + 21 };
    static float x[n], ref[n], got[n];
    for (int i = 0; i < 4000; i++) x[i] = -12.0f + 24.0f * (float)i / 4000.0f + 1e-3f * frand();
    const float specials[21] = { 0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-30f, -1e-30f, 1e10f, -1e10f, 30.0f,
                                 -30.0f, 9.0f, -9.0f, 1e-4f, -1e-4f, 0.5f, -0.5f, 3e38f, -3e38f, 88.0f, -88.0f };
    memcpy(x + 4000, specials, sizeof specials);
    for (int i = 0; i < n; i++) ref[i] = tw_gelu_tanh(x[i]);
    for (int p = 0; p < TW_KPATH_COUNT; p++) {
        if (!tw_kernels_force((tw_kpath)p)) continue;
        for (int len = n; len >= n - 17; len -= 17) {   /* a full length and one with a tail */
            memset(got, 0, sizeof got);
            tw_gelu_tanh_array(got, x, len);
            int bad = 0, first = -1;
            for (int i = 0; i < len; i++) {
                bool ok = isnan(ref[i]) ? isnan(got[i])
                                        : (got[i] == ref[i] || fabs((double)got[i] - ref[i]) <= 3e-7 * fabs(x[i]));
                if (!ok && first < 0) first = i;
                bad += !ok;
            }
            CHECK(bad == 0, "%s gelu_tanh_array len %d: %d off, first x=%g: %.9g vs %.9g", tw_kpath_name((tw_kpath)p),
                  len, bad, first < 0 ? 0.0 : x[first], first < 0 ? 0.0 : got[first], first < 0 ? 0.0 : ref[first]);
            CHECK(len == n || got[len] == 0.0f, "%s gelu_tanh_array writes past n", tw_kpath_name((tw_kpath)p));
        }
    }
    /* in place, on the last path forced above (the best): the same bits as out of place */
    static float inplace[n];
    memcpy(inplace, x, sizeof inplace);
    tw_gelu_tanh_array(got, x, n);
    tw_gelu_tanh_array(inplace, inplace, n);
    CHECK(memcmp(got, inplace, sizeof got) == 0, "gelu_tanh_array in place");
}

/* TOWER_KERNELS is read once per process, so it is tested on a fresh copy of this program. */
static void run_child(const char *env, char *out, size_t cap) {
    char self[256] = { 0 }, cmd[512];
    out[0] = 0;
    /* resolved here: inside popen's shell, /proc/self/exe would be the shell */
    if (readlink("/proc/self/exe", self, sizeof self - 1) <= 0) return;
    snprintf(cmd, sizeof cmd, "TOWER_KERNELS='%s' '%s' --print-path 2>&1", env, self);
    FILE *f = popen(cmd, "r");
    if (!f) return;
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = 0;
    pclose(f);
}

static void test_selection(void) {
    tw_kpath best = TW_KPATH_REF;   /* what is chosen unasked: avx512 at most (amx is opt-in) */
    for (int p = 0; p <= TW_KPATH_AVX512; p++)
        if (tw_kpath_supported((tw_kpath)p)) best = (tw_kpath)p;
    CHECK(tw_kpath_supported(TW_KPATH_REF), "ref always runs");
    CHECK(!tw_kpath_supported(TW_KPATH_COUNT), "no such path");

    for (int p = 0; p < TW_KPATH_COUNT; p++) {
        tw_kpath parsed;
        CHECK(tw_kpath_parse(tw_kpath_name((tw_kpath)p), &parsed) && parsed == (tw_kpath)p, "parse %d", p);
        tw_kernels_force(TW_KPATH_REF);
        bool ok = tw_kernels_force((tw_kpath)p);
        CHECK(ok == tw_kpath_supported((tw_kpath)p), "force %s", tw_kpath_name((tw_kpath)p));
        if (ok) CHECK(tw_kernels_path() == (tw_kpath)p, "forced %s is active", tw_kpath_name((tw_kpath)p));
        else CHECK(tw_kernels_path() == TW_KPATH_REF && tw_kernels_note()[0], "refused %s: stays, says why",
                   tw_kpath_name((tw_kpath)p));
    }
    CHECK(!tw_kernels_force(TW_KPATH_COUNT), "force of a bogus path refused");

    char out[512], want[64];
    for (int p = 0; p < TW_KPATH_COUNT; p++) {
        run_child(tw_kpath_name((tw_kpath)p), out, sizeof out);
        snprintf(want, sizeof want, "path=%s\n", tw_kpath_name(tw_kpath_supported((tw_kpath)p) ? (tw_kpath)p : best));
        CHECK(strstr(out, want) != NULL, "TOWER_KERNELS=%s: got \"%s\"", tw_kpath_name((tw_kpath)p), out);
        if (!tw_kpath_supported((tw_kpath)p)) CHECK(strstr(out, "note=TOWER_KERNELS") != NULL, "fallback says why");
    }
    run_child("avx9", out, sizeof out);
    snprintf(want, sizeof want, "path=%s\n", tw_kpath_name(best));
    CHECK(strstr(out, want) && strstr(out, "note=TOWER_KERNELS=avx9"), "unknown name: best path + note: %s", out);
    run_child("", out, sizeof out);
    CHECK(strstr(out, want) != NULL, "empty TOWER_KERNELS: best path: %s", out);
}

/* tw_model_params.kernels / .matmul (tw_kernels_configure, applied by tw_model_load): wrong values
** are errors naming the field and change nothing; the environment, when set, takes precedence. */
static void test_configure(void) {
    tw_kpath was = tw_kernels_path();
    const char *ek = getenv("TOWER_KERNELS"), *em = getenv("TOWER_MATMUL");
    bool env_k = ek && *ek, env_m = em && *em;
    CHECK(tw_kernels_configure("sse9", TW_MATMUL_DEFAULT) == TW_E_ARG &&
          strstr(tw_last_error(), "tw_model_params.kernels") && strstr(tw_last_error(), "sse9"),
          "unknown path name refused, naming the field: %s", tw_last_error());
    CHECK(tw_kernels_path() == was, "unknown name: path unchanged");
    CHECK(tw_kernels_configure(NULL, (tw_matmul_mode)7) == TW_E_ARG && strstr(tw_last_error(), "tw_model_params.matmul"),
          "bad matmul mode refused, naming the field: %s", tw_last_error());
    for (int p = 0; p < TW_KPATH_COUNT; p++) {
        tw_kernels_force(was);
        tw_status st = tw_kernels_configure(tw_kpath_name((tw_kpath)p), TW_MATMUL_DEFAULT);
        if (tw_kpath_supported((tw_kpath)p))
            CHECK(st == TW_OK && tw_kernels_path() == (env_k ? was : (tw_kpath)p), "kernels = %s applied%s",
                  tw_kpath_name((tw_kpath)p), env_k ? " (TOWER_KERNELS set: kept)" : "");
        else
            CHECK(st == TW_E_UNSUPPORTED && strstr(tw_last_error(), "tw_model_params.kernels") &&
                  strstr(tw_last_error(), "lacks") && tw_kernels_path() == was,
                  "kernels = %s refused on this CPU: %s", tw_kpath_name((tw_kpath)p), tw_last_error());
    }
    tw_kernels_force(was);
    CHECK(tw_kernels_configure(NULL, TW_MATMUL_DEFAULT) == TW_OK && tw_kernels_configure("", TW_MATMUL_DEFAULT) == TW_OK &&
          tw_kernels_path() == was, "NULL / \"\": nothing changes");
    if (!env_m) {
        bool m0 = tw_kernels_set_bf16_activations(false);
        CHECK(tw_kernels_configure(NULL, TW_MATMUL_BF16) == TW_OK && tw_kernels_set_bf16_activations(false),
              "matmul = bf16 applied");
        CHECK(tw_kernels_configure(NULL, TW_MATMUL_DEFAULT) == TW_OK && !tw_kernels_set_bf16_activations(true) &&
                  tw_kernels_configure(NULL, TW_MATMUL_DEFAULT) == TW_OK && tw_kernels_set_bf16_activations(false),
              "matmul = default leaves the mode as it is");
        CHECK(tw_kernels_configure(NULL, TW_MATMUL_F32) == TW_OK && !tw_kernels_set_bf16_activations(m0), "matmul = f32 applied");
    }
    /* the environment wins over the field (a child process, TOWER_KERNELS=ref, asking for avx2) */
    if (tw_kpath_supported(TW_KPATH_AVX2)) {
        char out[512];
        run_child("ref' TW_TEST_CONFIGURE='avx2", out, sizeof out);
        CHECK(strstr(out, "path=ref\n") != NULL, "TOWER_KERNELS=ref beats tw_model_params.kernels = avx2: got \"%s\"", out);
    }
}

/* The weight-type table (wtype.c): every float and block type the loader accepts has a complete
** row; any other type is refused by tw_wtype_check with a message naming the file and tensor. */
static void test_wtype_table(void) {
    const tw_dtype ok[] = { TW_DT_F32, TW_DT_F16, TW_DT_BF16, TW_DT_Q8_0, TW_DT_Q4_0 };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        const tw_wtype *w = tw_wtype_of(ok[i]);
        bool full = w && w->to_f32;
        for (int p = 0; full && p < TW_KPATH_COUNT; p++) full = w->matmul[p] != NULL;
        CHECK(full, "%s: a complete row of the table", tw_dtype_name(ok[i]));
        tw_tensor t = { .name = "m.weight", .type = ok[i], .ndim = 2, .shape = { 4, 64 }, .file = "f.safetensors" };
        CHECK(tw_wtype_check(&t, 2) == TW_OK, "%s matrix accepted", tw_dtype_name(ok[i]));
    }
    const tw_dtype bad[] = { TW_DT_F64, TW_DT_I64, TW_DT_I32, TW_DT_I16, TW_DT_I8, TW_DT_U8, TW_DT_BOOL };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tw_tensor t = { .name = "model.layers.0.mlp.up_proj.weight", .type = bad[i], .ndim = 2, .shape = { 4, 64 },
                        .file = "f.safetensors" };
        CHECK(!tw_wtype_of(bad[i]) && tw_wtype_check(&t, 2) == TW_E_WEIGHTS &&
              strstr(tw_last_error(), "f.safetensors") && strstr(tw_last_error(), "up_proj.weight") &&
              strstr(tw_last_error(), tw_dtype_name(bad[i])),
              "%s refused at load, naming the tensor: %s", tw_dtype_name(bad[i]), tw_last_error());
    }
    tw_tensor v = { .name = "norm.weight", .type = TW_DT_Q8_0, .ndim = 1, .shape = { 64 }, .file = "f.safetensors" };
    CHECK(tw_wtype_check(&v, 1) == TW_E_WEIGHTS && strstr(tw_last_error(), "only 2-D"), "quantized vector refused: %s",
          tw_last_error());
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--print-path") == 0) {
        const char *cfg = getenv("TW_TEST_CONFIGURE");   /* test_configure: a params field to apply first */
        if (cfg && tw_kernels_configure(cfg, TW_MATMUL_DEFAULT) != TW_OK) printf("configure failed: %s\n", tw_last_error());
        tw_kpath p = tw_kernels_init();
        printf("path=%s\nnote=%s\n", tw_kpath_name(p), tw_kernels_note());
        return 0;
    }
    test_selection();
    test_configure();
    test_wtype_table();
    test_norms();
    test_gelu();
    tw_pool *pool = tw_pool_new(2);
    test_shapes(pool);
    /* a single thread and an odd thread count must give the same coverage */
    tw_pool *p1 = tw_pool_new(1), *p3 = tw_pool_new(3);
    check_shape(p1, TW_DT_BF16, 16, 300, 2304, true);
    check_shape(p3, TW_DT_F16, 29, 70, 1000, true);
    check_shape(NULL, TW_DT_F32, 3, 33, 77, false);
    test_gemm_modes(pool);
    test_gemm_invariance(pool, p1);
    test_gemm_same_bits(pool);
    test_packed_weights(pool);
    test_matmul_rows(pool, p1, p3);
    tw_pool_free(p3);
    tw_pool_free(p1);
    tw_pool_free(pool);

    printf("cpu: %s\npaths tested against ref (%lld shapes):", tw_cpu_features(), (long long)n_cases);
    for (int p = 1; p < TW_KPATH_COUNT; p++)
        if (tested[p]) printf(" %s", tw_kpath_name((tw_kpath)p));
    printf("\n");
    return th_report();
}
