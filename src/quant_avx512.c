/*
** quant_avx512.c — Q8_0 / Q4_0 rows on AVX-512 (compiled with the AVX512_FLAGS of the Makefile;
** called only when CPUID has them). Weights are widened to f32 in registers and multiplied by
** the f32 activations with FMAs: nothing but the weights is rounded, and the sums differ from
** the plain C reference only in their order (per 16-lane vector, then per block times d).
**
** Per block of 32 weights: Q8_0 sign-extends 2 x 16 bytes to int32 and converts; Q4_0 zero-
** extends 16 bytes to int32 lanes, splits the nibbles with an and and a shift, and maps the
** values 0..15 to the floats -8..7 with one vpermps from a 16-entry table (no convert, no
** subtract). Decode walks 4 rows side by side (4 independent weight streams, x loaded once per
** block for all 4); the K tail (K not a multiple of 32) reads x with masked loads, so the zero-
** padded weights of the last block meet zeros.
*/
#include "quant.h"

#include <immintrin.h>

#define INLINE static inline __attribute__((always_inline))

INLINE __m512 blk_d(const uint8_t *blk) {
    uint16_t h;
    memcpy(&h, blk, 2);
    return _mm512_set1_ps(_cvtsh_ss(h));
}

/* the block's 32 weights (without d) as two 16-lane f32 vectors */
INLINE void blk_w(tw_dtype t, const uint8_t *blk, __m512 tbl, __m512 *w0, __m512 *w1) {
    if (t == TW_DT_Q8_0) {
        *w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + 2))));
        *w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + 18))));
    } else {
        __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(blk + 2)));
        *w0 = _mm512_permutexvar_ps(_mm512_and_si512(v, _mm512_set1_epi32(15)), tbl);
        *w1 = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tbl);
    }
}

INLINE __m512 q4_table(void) {
    return _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
}

/* R rows (R constant at every call site) dotted with x */
INLINE void rows(tw_dtype t, int R, const uint8_t *w, size_t rb, const float *x, int64_t K, float *y) {
    const size_t bb = t == TW_DT_Q8_0 ? 34 : 18;
    const __m512 tbl = q4_table();
    __m512 acc[4];
    for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
    int64_t nb = K / TW_QBLOCK, b = 0;
    for (; b < nb; b++) {
        __m512 x0 = _mm512_loadu_ps(x + b * TW_QBLOCK), x1 = _mm512_loadu_ps(x + b * TW_QBLOCK + 16);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *blk = w + r * rb + (size_t)b * bb;
            __m512 w0, w1;
            blk_w(t, blk, tbl, &w0, &w1);
            __m512 s = _mm512_fmadd_ps(w1, x1, _mm512_mul_ps(w0, x0));
            acc[r] = _mm512_fmadd_ps(s, blk_d(blk), acc[r]);
        }
    }
    int64_t rem = K - nb * TW_QBLOCK;
    if (rem) {
        __mmask16 m0 = (__mmask16)(rem >= 16 ? 0xffff : (1u << rem) - 1);
        __mmask16 m1 = (__mmask16)(rem > 16 ? (1u << (rem - 16)) - 1 : 0);
        __m512 x0 = _mm512_maskz_loadu_ps(m0, x + b * TW_QBLOCK), x1 = _mm512_maskz_loadu_ps(m1, x + b * TW_QBLOCK + 16);
        for (int r = 0; r < R; r++) {
            const uint8_t *blk = w + r * rb + (size_t)b * bb;
            __m512 w0, w1;
            blk_w(t, blk, tbl, &w0, &w1);
            __m512 s = _mm512_fmadd_ps(w1, x1, _mm512_mul_ps(w0, x0));
            acc[r] = _mm512_fmadd_ps(s, blk_d(blk), acc[r]);
        }
    }
    for (int r = 0; r < R; r++) y[r] = _mm512_reduce_add_ps(acc[r]);
}

INLINE void dot_rows(tw_dtype t, const uint8_t *w, size_t rb, int64_t nrows, const float *x, int64_t K, float *y) {
    int64_t r = 0;
    for (; r + 4 <= nrows; r += 4) rows(t, 4, w + (size_t)r * rb, rb, x, K, y + r);
    for (; r < nrows; r++) rows(t, 1, w + (size_t)r * rb, rb, x, K, y + r);
}

static void dot_q8(const uint8_t *w, size_t rb, int64_t n, const float *x, int64_t K, float *y) {
    dot_rows(TW_DT_Q8_0, w, rb, n, x, K, y);
}
static void dot_q4(const uint8_t *w, size_t rb, int64_t n, const float *x, int64_t K, float *y) {
    dot_rows(TW_DT_Q4_0, w, rb, n, x, K, y);
}

void tw_qdot_rows_avx512(tw_dtype t, const uint8_t *w, size_t row_bytes, int64_t nrows, const float *x, int64_t K,
                         float *y) {
    if (t == TW_DT_Q8_0) dot_q8(w, row_bytes, nrows, x, K, y);
    else dot_q4(w, row_bytes, nrows, x, K, y);
}

void tw_qdequant_rows_avx512(tw_dtype t, const uint8_t *w, size_t row_bytes, int64_t nrows, int64_t b0, int64_t nb,
                             float *out, int64_t ldo) {
    const size_t bb = tw_quant_block_bytes(t);
    const __m512 tbl = q4_table();
    for (int64_t r = 0; r < nrows; r++) {
        const uint8_t *blk = w + (size_t)r * row_bytes + (size_t)b0 * bb;
        float *o = out + r * ldo;
        for (int64_t b = 0; b < nb; b++, blk += bb, o += TW_QBLOCK) {
            __m512 w0, w1, d = blk_d(blk);
            if (t == TW_DT_Q8_0) blk_w(TW_DT_Q8_0, blk, tbl, &w0, &w1);
            else blk_w(TW_DT_Q4_0, blk, tbl, &w0, &w1);
            _mm512_storeu_ps(o, _mm512_mul_ps(w0, d));
            _mm512_storeu_ps(o + 16, _mm512_mul_ps(w1, d));
        }
    }
}
