/*
** kernels_avx2.c — the AVX2 + FMA + F16C matmul block (compiled with -mavx2 -mfma -mf16c; only
** called when CPUID says the CPU has them). Same scheme as kernels_avx512.c at 8 lanes: weights
** widened to f32 in registers (bf16 by a shift into the high half, f16 with vcvtph2ps), f32 FMAs,
** tiles of MT tokens x NR rows whose dot products run side by side along K.
**
** On this path tw_matmul sends only decode (T = 1) here; two tokens or more go to the packed-panel
** GEMM of gemm_avx2.c. The T > 1 tiles below stay as its fallback (when it cannot allocate its
** buffers) and as the yardstick of bench/tool_avx2bench.c.
**
** With 16 ymm registers the T > 1 tile is 2 x 4: 8 accumulators + 4 weight vectors + x. (3 x 4
** needs 17 and GCC spills an accumulator, which costs more than the extra token saves.) Decode
** (one token) walks one row at a time (row_dec, below); for K longer than its x buffer it keeps
** 1 x 8 tiles, each weight vector loaded straight into its FMA. AVX2 has no 16-bit masked load,
** so a K tail (< 8 columns) is copied into zeroed stack buffers and done as one more full step.
*/
#include "kernels.h"

#include <immintrin.h>
#include <math.h>

#define INLINE static inline __attribute__((always_inline))

/* tile shape: tokens x rows (overridable with -D to try others; kernels.c's paths[] table
** must then know MT_MAX) */
#ifndef MT_MAX
#define MT_MAX 2
#endif
#ifndef NR_TILE
#define NR_TILE 4
#endif
enum { NR_MAX = 8 };

/* 8 weights of row w (type dt) starting at column k, widened to f32 */
INLINE __m256 load_w(tw_dtype dt, const void *w, int64_t k) {
    if (dt == TW_DT_F32) return _mm256_loadu_ps((const float *)w + k);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + k));
    if (dt == TW_DT_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* [sum a, sum b, sum c, sum d] */
INLINE __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

INLINE float hsum(__m256 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* One MT x NR tile over the whole nk of the block. With constant dt/MT/NR (every call site
** below) the loops unroll and acc[][] lives in registers. */
INLINE void tile(tw_dtype dt, int MT, int NR, const tw_mm_block *b, int64_t t0, int64_t n0) {
    const size_t es = dt == TW_DT_F32 ? 4 : 2;
    const float *x = b->x + t0 * b->ldx;
    const uint8_t *w = (const uint8_t *)b->w + (size_t)n0 * (size_t)b->ldw * es;
    const size_t wstride = (size_t)b->ldw * es;
    __m256 acc[MT_MAX][NR_MAX];
#pragma GCC unroll 8
    for (int t = 0; t < MT; t++)
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) acc[t][r] = _mm256_setzero_ps();

    int64_t k = 0;
    if (MT == 1) {
        /* decode: each weight vector goes straight into its FMA, so 8 rows need only 8
        ** accumulators + 2 temporaries, not 8 more registers for the weights */
        for (; k + 8 <= b->nk; k += 8) {
            __m256 xv = _mm256_loadu_ps(x + k);
#pragma GCC unroll 8
            for (int r = 0; r < NR; r++) acc[0][r] = _mm256_fmadd_ps(load_w(dt, w + r * wstride, k), xv, acc[0][r]);
        }
    }
    for (; k + 8 <= b->nk; k += 8) {
        __m256 wv[NR_MAX];
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) wv[r] = load_w(dt, w + r * wstride, k);
#pragma GCC unroll 8
        for (int t = 0; t < MT; t++) {
            __m256 xv = _mm256_loadu_ps(x + t * b->ldx + k);
#pragma GCC unroll 8
            for (int r = 0; r < NR; r++) acc[t][r] = _mm256_fmadd_ps(wv[r], xv, acc[t][r]);
        }
    }
    if (k < b->nk) {
        /* the last 1..7 columns, zero-padded to a full vector */
        size_t rem = (size_t)(b->nk - k);
        __m256 wv[NR_MAX];
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
            uint8_t pad[32] = { 0 };
            memcpy(pad, w + r * wstride + (size_t)k * es, rem * es);
            wv[r] = load_w(dt, pad, 0);
        }
#pragma GCC unroll 8
        for (int t = 0; t < MT; t++) {
            float pad[8] = { 0 };
            memcpy(pad, x + t * b->ldx + k, rem * sizeof(float));
            __m256 xv = _mm256_loadu_ps(pad);
#pragma GCC unroll 8
            for (int r = 0; r < NR; r++) acc[t][r] = _mm256_fmadd_ps(wv[r], xv, acc[t][r]);
        }
    }

#pragma GCC unroll 8
    for (int t = 0; t < MT; t++) {
        float *y = b->y + (t0 + t) * b->ldy + n0;
        int r = 0;
#pragma GCC unroll 8
        for (; r + 4 <= NR; r += 4) {
            __m128 s = hsum4(acc[t][r], acc[t][r + 1], acc[t][r + 2], acc[t][r + 3]);
            if (b->accumulate) s = _mm_add_ps(s, _mm_loadu_ps(y + r));
            else if (b->bias) s = _mm_add_ps(s, _mm_loadu_ps(b->bias + n0 + r));
            _mm_storeu_ps(y + r, s);
        }
#pragma GCC unroll 8
        for (; r < NR; r++) {
            float s = hsum(acc[t][r]);
            if (b->accumulate) s += y[r];
            else if (b->bias) s += b->bias[n0 + r];
            y[r] = s;
        }
    }
}

/* ---- decode: one token, the work is streaming the weights -------------------------------------
** As in kernels_avx512.c: a task's rows are contiguous in memory, so walking them one row at a time
** reads one sequential stream, which software prefetch DEC_PF bytes ahead keeps in flight (the
** 1 x 8 tiles above read 8 short streams at once). The loop does few instructions per weight byte:
** a 32-byte load holds 16 bf16 weights; shifting each 32-bit lane left by 16 gives the
** even-indexed ones as f32, masking off the low half the odd-indexed ones, with no shuffle; x is
** split into even and odd columns once per task to match (xp). Same products as the plain path;
** only the order of the additions differs. Measured against the 1 x 8 tiles and a plain read of
** the same matrices in docs/kernels.md: 93-99 % of the read rate, but ~73 % for K = 9216 when
** memory is fast (xp, 36 KB, no longer stays in L1 beside the stream; reading two rows at once to
** halve the x traffic, or K in chunks, made two streams and was slower still). */
enum { DEC_PF = 8192, DEC_KMAX = 16384 };   /* prefetch distance (bytes); longest K for xp */

INLINE void row_dec(tw_dtype dt, const tw_mm_block *b, const float *xp, int64_t n) {
    const size_t es = dt == TW_DT_F32 ? 4 : 2;
    const uint8_t *w = (const uint8_t *)b->w + (size_t)n * (size_t)b->ldw * es;
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    __m256 a[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
    int64_t k = 0;
    for (; k + 32 <= b->nk; k += 32) {   /* 32 columns: one cache line of bf16/f16, two of f32 */
#pragma GCC unroll 2
        for (size_t o = 0; o < 32 * es; o += 64) _mm_prefetch((const char *)(w + (size_t)k * es + DEC_PF + o), _MM_HINT_T0);
        if (dt == TW_DT_BF16) {
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(w + (size_t)(k + 16 * h) * 2));
                a[2 * h] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), _mm256_load_ps(xp + k + 16 * h),
                                           a[2 * h]);
                a[2 * h + 1] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v, hi)),
                                               _mm256_load_ps(xp + k + 16 * h + 8), a[2 * h + 1]);
            }
        } else {
#pragma GCC unroll 4
            for (int h = 0; h < 4; h++)
                a[h] = _mm256_fmadd_ps(load_w(dt, w, k + 8 * h), _mm256_loadu_ps(b->x + k + 8 * h), a[h]);
        }
    }
    for (; k + 8 <= b->nk; k += 8)   /* the last 1..31 columns: x in its own order */
        a[0] = _mm256_fmadd_ps(load_w(dt, w, k), _mm256_loadu_ps(b->x + k), a[0]);
    if (k < b->nk) {
        size_t rem = (size_t)(b->nk - k);
        uint8_t wpad[32] = { 0 };
        float xpad[8] = { 0 };
        memcpy(wpad, w + (size_t)k * es, rem * es);
        memcpy(xpad, b->x + k, rem * sizeof(float));
        a[0] = _mm256_fmadd_ps(load_w(dt, wpad, 0), _mm256_loadu_ps(xpad), a[0]);
    }
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])));
    if (b->accumulate) s += b->y[n];
    else if (b->bias) s += b->bias[n];
    b->y[n] = s;
}

/* columns 16j + 2i of x go to xp[16j + i], 16j + 2i + 1 to xp[16j + 8 + i] (i < 8) */
static void dec_split_x(const float *x, int64_t nk, float *xp) {
    for (int64_t k = 0; k + 16 <= nk; k += 16) {
        __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
        /* per 128-bit half: [x0 even | x1 even] pairs; the 64-bit permute puts x0's before x1's */
        __m256d ev = _mm256_castps_pd(_mm256_shuffle_ps(x0, x1, 0x88)), od = _mm256_castps_pd(_mm256_shuffle_ps(x0, x1, 0xDD));
        _mm256_store_ps(xp + k, _mm256_castpd_ps(_mm256_permute4x64_pd(ev, 0xD8)));
        _mm256_store_ps(xp + k + 8, _mm256_castpd_ps(_mm256_permute4x64_pd(od, 0xD8)));
    }
}

static void rows_dec_bf16(const tw_mm_block *b) {
    float xp[DEC_KMAX] __attribute__((aligned(32)));
    dec_split_x(b->x, b->nk, xp);
    for (int64_t n = 0; n < b->nn; n++) row_dec(TW_DT_BF16, b, xp, n);
}

/* ---- decode rows of several tokens (a batch of decode steps, tw_matmul_rows) ---------------------
** Two tokens per pass over a weight row: each weight vector is loaded once and goes into both
** tokens' accumulators, and for each token the operations are row_dec's, in row_dec's order — so
** every token's result is bit-identical to a one-token product, while a row is read from memory
** once per call (the passes of further token pairs find it in L1). */
INLINE void row_dec2(tw_dtype dt, const tw_mm_block *b, const float *xp0, const float *xp1, int64_t n) {
    const size_t es = dt == TW_DT_F32 ? 4 : 2;
    const uint8_t *w = (const uint8_t *)b->w + (size_t)n * (size_t)b->ldw * es;
    const float *x0 = b->x, *x1 = b->x + b->ldx;
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    __m256 a[4], c[4];
    for (int i = 0; i < 4; i++) a[i] = c[i] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= b->nk; k += 32) {
#pragma GCC unroll 2
        for (size_t o = 0; o < 32 * es; o += 64) _mm_prefetch((const char *)(w + (size_t)k * es + DEC_PF + o), _MM_HINT_T0);
        if (dt == TW_DT_BF16) {
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(w + (size_t)(k + 16 * h) * 2));
                __m256 we = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), wo = _mm256_castsi256_ps(_mm256_and_si256(v, hi));
                a[2 * h] = _mm256_fmadd_ps(we, _mm256_load_ps(xp0 + k + 16 * h), a[2 * h]);
                a[2 * h + 1] = _mm256_fmadd_ps(wo, _mm256_load_ps(xp0 + k + 16 * h + 8), a[2 * h + 1]);
                c[2 * h] = _mm256_fmadd_ps(we, _mm256_load_ps(xp1 + k + 16 * h), c[2 * h]);
                c[2 * h + 1] = _mm256_fmadd_ps(wo, _mm256_load_ps(xp1 + k + 16 * h + 8), c[2 * h + 1]);
            }
        } else {
#pragma GCC unroll 4
            for (int h = 0; h < 4; h++) {
                __m256 wv = load_w(dt, w, k + 8 * h);
                a[h] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x0 + k + 8 * h), a[h]);
                c[h] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x1 + k + 8 * h), c[h]);
            }
        }
    }
    for (; k + 8 <= b->nk; k += 8) {
        __m256 wv = load_w(dt, w, k);
        a[0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x0 + k), a[0]);
        c[0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x1 + k), c[0]);
    }
    if (k < b->nk) {
        size_t rem = (size_t)(b->nk - k);
        uint8_t wpad[32] = { 0 };
        float xpad0[8] = { 0 }, xpad1[8] = { 0 };
        memcpy(wpad, w + (size_t)k * es, rem * es);
        memcpy(xpad0, x0 + k, rem * sizeof(float));
        memcpy(xpad1, x1 + k, rem * sizeof(float));
        __m256 wv = load_w(dt, wpad, 0);
        a[0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xpad0), a[0]);
        c[0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xpad1), c[0]);
    }
    float s0 = hsum(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])));
    float s1 = hsum(_mm256_add_ps(_mm256_add_ps(c[0], c[1]), _mm256_add_ps(c[2], c[3])));
    if (b->bias) s0 += b->bias[n], s1 += b->bias[n];
    b->y[n] = s0;
    b->y[b->ldy + n] = s1;
}

void tw_mm_dec_rows_avx2(const tw_mm_block *b, float *xp, int64_t ldxp) {
    TW_ASSERT(!b->accumulate && b->nk <= DEC_KMAX && b->nt <= TW_DEC_ROWS_MAX);
    const bool bf = b->wt == TW_DT_BF16;
    if (bf)
        for (int64_t t = 0; t < b->nt; t++) dec_split_x(b->x + t * b->ldx, b->nk, xp + t * ldxp);
    for (int64_t n = 0; n < b->nn; n++) {
        int64_t t = 0;
        for (; t + 2 <= b->nt; t += 2) {
            tw_mm_block bt = *b;
            bt.x = b->x + t * b->ldx;
            bt.y = b->y + t * b->ldy;
            switch (b->wt) {
            case TW_DT_BF16: row_dec2(TW_DT_BF16, &bt, xp + t * ldxp, xp + (t + 1) * ldxp, n); break;
            case TW_DT_F16: row_dec2(TW_DT_F16, &bt, NULL, NULL, n); break;
            default: row_dec2(TW_DT_F32, &bt, NULL, NULL, n); break;
            }
        }
        if (t < b->nt) {
            tw_mm_block bt = *b;
            bt.x = b->x + t * b->ldx;
            bt.y = b->y + t * b->ldy;
            switch (b->wt) {
            case TW_DT_BF16: row_dec(TW_DT_BF16, &bt, xp + t * ldxp, n); break;
            case TW_DT_F16: row_dec(TW_DT_F16, &bt, NULL, n); break;
            default: row_dec(TW_DT_F32, &bt, NULL, n); break;
            }
        }
    }
}

/* Walks the block in tiles: full MT_MAX x 4 tiles, then the leftover tokens and rows. Every token
** count gets its own unrolled copy through the switch; leftover rows (N not a multiple of 4:
** rare in real models) go one at a time, which keeps the number of copies and compile time down. */
#define TILE_NR(dt, MT)                                                                       \
    if (nr == NR_TILE) tile(dt, MT, NR_TILE, b, t0, n0);                                      \
    else for (int r_ = 0; r_ < nr; r_++) tile(dt, MT, 1, b, t0, n0 + r_);

INLINE void block(tw_dtype dt, const tw_mm_block *b) {
    if (b->nt == 1 && b->nk <= DEC_KMAX) {
        if (dt == TW_DT_BF16) rows_dec_bf16(b);
        else for (int64_t n = 0; n < b->nn; n++) row_dec(dt, b, NULL, n);
        return;
    }
    if (b->nt == 1) {
        /* decode with a longer K than xp holds: 8 rows at a time, then 4, then the rest */
        int64_t n0 = 0, t0 = 0;
        for (; n0 + 8 <= b->nn; n0 += 8) tile(dt, 1, 8, b, 0, n0);
        for (; n0 < b->nn; n0 += 4) {
            int nr = (int)TW_MIN(4, b->nn - n0);
            TILE_NR(dt, 1);
        }
        return;
    }
    for (int64_t t0 = 0; t0 < b->nt; t0 += MT_MAX) {
        int mt = (int)TW_MIN(MT_MAX, b->nt - t0);
        for (int64_t n0 = 0; n0 < b->nn; n0 += NR_TILE) {
            int nr = (int)TW_MIN(NR_TILE, b->nn - n0);
            switch (mt) {
            case 1: TILE_NR(dt, 1); break;
#if MT_MAX > 2
            case 2: TILE_NR(dt, 2); break;
#endif
#if MT_MAX > 3
            case 3: TILE_NR(dt, 3); break;
#endif
            default: TILE_NR(dt, MT_MAX); break;
            }
        }
    }
}

static void block_f32(const tw_mm_block *b) { block(TW_DT_F32, b); }
static void block_f16(const tw_mm_block *b) { block(TW_DT_F16, b); }
static void block_bf16(const tw_mm_block *b) { block(TW_DT_BF16, b); }

void tw_mm_block_avx2(const tw_mm_block *b) {
    switch (b->wt) {
    case TW_DT_F32: block_f32(b); break;
    case TW_DT_F16: block_f16(b); break;
    case TW_DT_BF16: block_bf16(b); break;
    default: break;   /* the dispatcher only sends float weights */
    }
}

/* ---- norms ------------------------------------------------------------------------------------ */

/* As in kernels_avx512.c: the reference's arithmetic, 8 lanes wide, sums in double (products of
** floats are exact in double, only the order of the additions differs), the per-element f32
** formula in the reference's order and without FMA. The last n % 8 columns are done one by one. */

static double sum_sq_d(const float *x, int64_t n, double c, int64_t *done) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd(), cv = _mm256_set1_pd(c);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256d lo = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), cv);
        __m256d hi = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), cv);
        s0 = _mm256_fmadd_pd(lo, lo, s0);
        s1 = _mm256_fmadd_pd(hi, hi, s1);
    }
    __m256d s = _mm256_add_pd(s0, s1);
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    double sum = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (int64_t j = i; j < n; j++) sum += ((double)x[j] - c) * ((double)x[j] - c);
    *done = i;
    return sum;
}

static double sum_d(const float *x, int64_t n) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    __m256d s = _mm256_add_pd(s0, s1);
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    double sum = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (; i < n; i++) sum += x[i];
    return sum;
}

void tw_rmsnorm_1p_avx2(float *y, const float *x, const float *w, int64_t T, int64_t n, float eps) {
    const __m256 one = _mm256_set1_ps(1.0f);
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * n;
        float *yr = y + t * n;
        int64_t vec;
        float r = 1.0f / sqrtf((float)(sum_sq_d(xr, n, 0.0, &vec) / (double)n) + eps);
        __m256 rv = _mm256_set1_ps(r);
        for (int64_t i = 0; i < vec; i += 8) {
            __m256 v = _mm256_mul_ps(_mm256_loadu_ps(xr + i), rv);
            _mm256_storeu_ps(yr + i, _mm256_mul_ps(v, _mm256_add_ps(one, _mm256_loadu_ps(w + i))));
        }
        for (int64_t i = vec; i < n; i++) yr[i] = xr[i] * r * (1.0f + w[i]);
    }
}

void tw_layernorm_avx2(float *y, const float *x, const float *w, const float *b, int64_t T, int64_t n, float eps) {
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * n;
        float *yr = y + t * n;
        int64_t vec;
        double mean = sum_d(xr, n) / (double)n;
        double var = sum_sq_d(xr, n, mean, &vec) / (double)n;
        float r = 1.0f / sqrtf((float)var + eps), m = (float)mean;
        __m256 rv = _mm256_set1_ps(r), mv = _mm256_set1_ps(m);
        for (int64_t i = 0; i < vec; i += 8) {
            __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + i), mv), rv);
            v = _mm256_add_ps(_mm256_mul_ps(v, _mm256_loadu_ps(w + i)), _mm256_loadu_ps(b + i));
            _mm256_storeu_ps(yr + i, v);
        }
        for (int64_t i = vec; i < n; i++) yr[i] = (xr[i] - m) * r * w[i] + b[i];
    }
}

/* ---- activations ------------------------------------------------------------------------------ */

/* e^a for a <= 0, 8 lanes: as exp_neg in kernels_avx512.c, but 2^n is built in the exponent
** bits, so a is clamped at -87 where 2^n is still a normal float (e^-87 ~ 1.6e-38 is 0 for
** every use below). */
static inline __m256 exp_neg(__m256 a) {
    a = _mm256_max_ps(a, _mm256_set1_ps(-87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(a, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), a);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187045e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static inline __m256 gelu_tanh8(__m256 v) {
    const __m256 sign = _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u)), one = _mm256_set1_ps(1.0f);
    __m256 cube = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.044715f), v), v), v);
    __m256 u = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_add_ps(v, cube));
    __m256 t = exp_neg(_mm256_mul_ps(_mm256_set1_ps(-2.0f), _mm256_andnot_ps(sign, u)));
    __m256 th = _mm256_div_ps(_mm256_sub_ps(one, t), _mm256_add_ps(one, t));
    th = _mm256_or_ps(th, _mm256_and_ps(sign, u));
    th = _mm256_blendv_ps(th, u, _mm256_cmp_ps(u, u, _CMP_UNORD_Q));   /* NaN stays NaN */
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), v), _mm256_add_ps(one, th));
}

void tw_gelu_tanh_avx2(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, gelu_tanh8(_mm256_loadu_ps(x + i)));
    if (i < n) {   /* the last 1..7 through a zero-padded buffer, so they get the same formula */
        float pad[8] = { 0 };
        memcpy(pad, x + i, sizeof(float) * (size_t)(n - i));
        _mm256_storeu_ps(pad, gelu_tanh8(_mm256_loadu_ps(pad)));
        memcpy(y + i, pad, sizeof(float) * (size_t)(n - i));
    }
}
