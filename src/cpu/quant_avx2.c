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
    const size_t bb = t == TW_DT_Q8_0 ? TW_Q8_0_BYTES : TW_Q4_0_BYTES;
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

/* ---- int8 activations ------------------------------------------------------------------------
** The scheme of quant_avx512.c on 8 lanes, one block per 32-byte vector and groups of 8 blocks.
** Two ways to multiply the bytes, picked by the caller from CPUID:
**   - AVX-VNNI vpdpbusd (u8 x s8 -> s32), with the weights made unsigned (Q8_0: q ^ 0x80 = q +
**     128; Q4_0: the nibble = q + 8) and the offset taken back per block as 128 s or 8 s;
**   - vpmaddubsw + vpmaddwd: Q4_0 nibbles (<= 15) times int8 never saturate the 16-bit pairs;
**     Q8_0 uses |w| times x with w's sign (|w| <= 128, so a pair stays <= 32512), no offset.
** vpdpbusd is written as inline assembly ({vex} encoding): the file is compiled for AVX2 only
** and the instruction must not leak into code that runs on CPUs without it. Each group prefetches
** its bytes 4 KB ahead, as the avx512 kernel does. Scales: 8 scalar loads. */

INLINE __m256i dpbusd(__m256i acc, __m256i u, __m256i x) {
    __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(u), "xm"(x));
    return acc;
}

/* the block's integer dot with x (32 int8) as 8 int32 lanes, before the offset correction */
INLINE __m256i blk_i8(tw_dtype t, bool vnni, const uint8_t *blk, __m256i x) {
    if (t == TW_DT_Q4_0) {
        __m128i v = _mm_loadu_si128((const __m128i *)(blk + 2));
        __m256i u = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(15));
        return vnni ? dpbusd(_mm256_setzero_si256(), u, x)
                    : _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1));
    }
    __m256i w = _mm256_loadu_si256((const __m256i *)(blk + 2));
    if (vnni) return dpbusd(_mm256_setzero_si256(), _mm256_xor_si256(w, _mm256_set1_epi8((char)0x80)), x);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w)), _mm256_set1_epi16(1));
}

INLINE __m256i hsum4_8(__m256i d0, __m256i d1, __m256i d2, __m256i d3) {
    __m256i a = _mm256_add_epi32(_mm256_unpacklo_epi32(d0, d1), _mm256_unpackhi_epi32(d0, d1));
    __m256i b = _mm256_add_epi32(_mm256_unpacklo_epi32(d2, d3), _mm256_unpackhi_epi32(d2, d3));
    return _mm256_add_epi32(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b));
}

/* blocks [b0, b0 + 4) of a group of n: per token, lane l of 128-bit half h = sum of block b0+l's half h */
INLINE void quad_i8(tw_dtype t, bool vnni, int NT, int n, int b0, const uint8_t *gw, const int8_t *const *xq,
                    __m256i *S) {
    const size_t bb = t == TW_DT_Q8_0 ? 34 : 18;
    __m256i D[2][4];
    for (int p = 0; p < 4; p++)
        for (int k = 0; k < NT; k++)
            D[k][p] = b0 + p < n ? blk_i8(t, vnni, gw + (size_t)(b0 + p) * bb,
                                          _mm256_loadu_si256((const __m256i *)(xq[k] + (b0 + p) * 32)))
                                 : _mm256_setzero_si256();
    for (int k = 0; k < NT; k++) S[k] = hsum4_8(D[k][0], D[k][1], D[k][2], D[k][3]);
}

/* one group of n <= 8 blocks of one row, NT <= 2 tokens, added to acc[] */
INLINE void group_i8(tw_dtype t, bool vnni, int NT, int n, const uint8_t *gw, const int8_t *const *xq,
                     const float *const *xd, const int32_t *const *xs, __m256 *acc) {
    const size_t bb = t == TW_DT_Q8_0 ? 34 : 18;
    __m256i U[2], V[2];
    quad_i8(t, vnni, NT, n, 0, gw, xq, U);
    quad_i8(t, vnni, NT, n, 4, gw, xq, V);
    /* the 8 f16 scales by scalar loads into one vector (an 8-lane gather measured 2.5x slower on
    ** Zen 5); blocks past n read as 0 */
    uint16_t h[8] = { 0 };
    for (int b = 0; b < 8; b++)
        if (b < n) memcpy(&h[b], gw + (size_t)b * bb, 2);
    __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
    const int sh = t == TW_DT_Q4_0 ? 3 : vnni ? 7 : 0;
    for (int k = 0; k < NT; k++) {
        __m256i r = _mm256_add_epi32(_mm256_permute2x128_si256(U[k], V[k], 0x20),
                                     _mm256_permute2x128_si256(U[k], V[k], 0x31));   /* blocks 0..7 */
        if (sh) r = _mm256_sub_epi32(r, _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)xs[k]), sh));
        acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(r), _mm256_mul_ps(dw, _mm256_loadu_ps(xd[k])), acc[k]);
    }
}

INLINE void row_i8(tw_dtype t, bool vnni, int NT, const uint8_t *w, const tw_qx *a, int64_t t0, float *y,
                   int64_t ldy) {
    const size_t bb = t == TW_DT_Q8_0 ? 34 : 18;
    const int8_t *xq[2];
    const float *xd[2];
    const int32_t *xs[2];
    __m256 acc[2];
    for (int k = 0; k < NT; k++) {
        xq[k] = a->q + (t0 + k) * a->ld * TW_QBLOCK;
        xd[k] = a->d + (t0 + k) * a->ld;
        xs[k] = a->s + (t0 + k) * a->ld;
        acc[k] = _mm256_setzero_ps();
    }
    int64_t g = 0;
    for (; g + 8 <= a->nb; g += 8) {
        for (size_t o = 0; o < 8 * bb; o += 64) _mm_prefetch((const char *)(w + (size_t)g * bb + 4096 + o), _MM_HINT_T0);
        group_i8(t, vnni, NT, 8, w + (size_t)g * bb, xq, xd, xs, acc);
        for (int k = 0; k < NT; k++) xq[k] += 8 * TW_QBLOCK, xd[k] += 8, xs[k] += 8;
    }
    if (g < a->nb) group_i8(t, vnni, NT, (int)(a->nb - g), w + (size_t)g * bb, xq, xd, xs, acc);
    for (int k = 0; k < NT; k++) y[k * ldy] = hsum(acc[k]);
}

INLINE void rows_i8(tw_dtype t, bool vnni, const uint8_t *w, size_t rb, int64_t nrows, const tw_qx *a, int64_t t0,
                    int64_t nt, float *y, int64_t ldy) {
    for (int64_t r = 0; r < nrows; r++, w += rb, y++)
        for (int64_t k = 0; k < nt; k += 2) {
            if (nt - k >= 2) row_i8(t, vnni, 2, w, a, t0 + k, y + k * ldy, ldy);
            else row_i8(t, vnni, 1, w, a, t0 + k, y + k * ldy, ldy);
        }
}

#define I8_VARIANT(name, T, V)                                                                                   \
    static void name(const uint8_t *w, size_t rb, int64_t n, const tw_qx *a, int64_t t0, int64_t nt, float *y,  \
                     int64_t ldy) {                                                                              \
        rows_i8(T, V, w, rb, n, a, t0, nt, y, ldy);                                                              \
    }
I8_VARIANT(i8_q8_vnni, TW_DT_Q8_0, true)
I8_VARIANT(i8_q4_vnni, TW_DT_Q4_0, true)
I8_VARIANT(i8_q8_madd, TW_DT_Q8_0, false)
I8_VARIANT(i8_q4_madd, TW_DT_Q4_0, false)

void tw_qdot_i8_rows_avx2(tw_dtype t, const uint8_t *w, size_t row_bytes, int64_t nrows, const tw_qx *a,
                          int64_t t0, int64_t nt, float *y, int64_t ldy, bool vnni) {
    if (t == TW_DT_Q8_0) (vnni ? i8_q8_vnni : i8_q8_madd)(w, row_bytes, nrows, a, t0, nt, y, ldy);
    else (vnni ? i8_q4_vnni : i8_q4_madd)(w, row_bytes, nrows, a, t0, nt, y, ldy);
}
