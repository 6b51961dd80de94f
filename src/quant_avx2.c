/*
** quant_avx2.c — Q8_0 / Q4_0 rows on AVX2 + FMA + F16C (compiled with AVX2_FLAGS; called only
** when CPUID has them). The same scheme as quant_avx512.c on 8 lanes: a block of 32 weights is
** four 8-lane f32 vectors; Q8_0 sign-extends 4 x 8 bytes, Q4_0 splits the nibbles of 16 bytes
** into two 16-byte vectors (low: columns 0..15, high: 16..31), zero-extends them 8 at a time and
** subtracts 8 before converting. Decode walks 4 rows side by side; the K tail is read from a
** zero-padded copy of x's last partial block, so padded weights meet zeros.
*/
#include "quant.h"

#include <immintrin.h>

#define INLINE static inline __attribute__((always_inline))

INLINE __m256 blk_d(const uint8_t *blk) {
    uint16_t h;
    memcpy(&h, blk, 2);
    return _mm256_set1_ps(_cvtsh_ss(h));
}

/* the block's 32 weights (without d) as four 8-lane f32 vectors */
INLINE void blk_w(tw_dtype t, const uint8_t *blk, __m256 w[4]) {
    if (t == TW_DT_Q8_0) {
        for (int i = 0; i < 4; i++)
            w[i] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(blk + 2 + 8 * i))));
    } else {
        __m128i v = _mm_loadu_si128((const __m128i *)(blk + 2)), m = _mm_set1_epi8(15);
        __m128i lo = _mm_and_si128(v, m), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m);
        __m256i e8 = _mm256_set1_epi32(8);
        w[0] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(lo), e8));
        w[1] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)), e8));
        w[2] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(hi), e8));
        w[3] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)), e8));
    }
}

INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

INLINE __m256 blk_dot(tw_dtype t, const uint8_t *blk, const float *x) {
    __m256 w[4];
    blk_w(t, blk, w);
    __m256 s = _mm256_mul_ps(w[0], _mm256_loadu_ps(x));
    s = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(x + 8), s);
    s = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(x + 16), s);
    return _mm256_fmadd_ps(w[3], _mm256_loadu_ps(x + 24), s);
}

INLINE void rows(tw_dtype t, int R, const uint8_t *w, size_t rb, const float *x, int64_t K, float *y) {
    const size_t bb = t == TW_DT_Q8_0 ? 34 : 18;
    __m256 acc[4];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    int64_t nb = K / TW_QBLOCK, b = 0;
    for (; b < nb; b++)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *blk = w + r * rb + (size_t)b * bb;
            acc[r] = _mm256_fmadd_ps(blk_dot(t, blk, x + b * TW_QBLOCK), blk_d(blk), acc[r]);
        }
    int64_t rem = K - nb * TW_QBLOCK;
    if (rem) {
        float xt[TW_QBLOCK] = {0};
        memcpy(xt, x + nb * TW_QBLOCK, sizeof(float) * (size_t)rem);
        for (int r = 0; r < R; r++) {
            const uint8_t *blk = w + r * rb + (size_t)b * bb;
            acc[r] = _mm256_fmadd_ps(blk_dot(t, blk, xt), blk_d(blk), acc[r]);
        }
    }
    for (int r = 0; r < R; r++) y[r] = hsum(acc[r]);
}

INLINE void dot_rows(tw_dtype t, const uint8_t *w, size_t rb, int64_t nrows, const float *x, int64_t K, float *y) {
    int64_t r = 0;
    for (; r + 4 <= nrows; r += 4) rows(t, 4, w + (size_t)r * rb, rb, x, K, y + r);
    for (; r < nrows; r++) rows(t, 1, w + (size_t)r * rb, rb, x, K, y + r);
}

void tw_qdot_rows_avx2(tw_dtype t, const uint8_t *w, size_t row_bytes, int64_t nrows, const float *x, int64_t K,
                       float *y) {
    if (t == TW_DT_Q8_0) dot_rows(TW_DT_Q8_0, w, row_bytes, nrows, x, K, y);
    else dot_rows(TW_DT_Q4_0, w, row_bytes, nrows, x, K, y);
}

void tw_qdequant_rows_avx2(tw_dtype t, const uint8_t *w, size_t row_bytes, int64_t nrows, int64_t b0, int64_t nb,
                           float *out, int64_t ldo) {
    const size_t bb = tw_quant_block_bytes(t);
    for (int64_t r = 0; r < nrows; r++) {
        const uint8_t *blk = w + (size_t)r * row_bytes + (size_t)b0 * bb;
        float *o = out + r * ldo;
        for (int64_t b = 0; b < nb; b++, blk += bb, o += TW_QBLOCK) {
            __m256 v[4], d = blk_d(blk);
            if (t == TW_DT_Q8_0) blk_w(TW_DT_Q8_0, blk, v);
            else blk_w(TW_DT_Q4_0, blk, v);
            for (int i = 0; i < 4; i++) _mm256_storeu_ps(o + 8 * i, _mm256_mul_ps(v[i], d));
        }
    }
}

void tw_qdot_i8_rows_avx2(tw_dtype t, const uint8_t *w, size_t row_bytes, int64_t nrows, const tw_qx *a,
                          int64_t t0, int64_t nt, float *y, int64_t ldy, bool vnni) {
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t k = 0; k < nt; k++) y[k * ldy + r] = tw_quant_dot_i8_ref(t, w + (size_t)r * row_bytes, a, t0 + k);
}
