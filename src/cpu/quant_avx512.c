/*
** quant_avx512.c — Q8_0 / Q4_0 kernels on AVX-512 (compiled with the AVX512_FLAGS of the Makefile;
** called only when CPUID has them; the int8 section also needs avx512vnni, checked by quant.c).
**
** f32 activations (TOWER_QUANT_ACT=f32): weights are widened to f32 in registers and multiplied
** by the f32 activations with FMAs: nothing but the weights is rounded, and the sums differ from
** the plain C reference only in their order (per 16-lane vector, then per block times d). Per
** block of 32 weights: Q8_0 sign-extends 2 x 16 bytes to int32 and converts; Q4_0 zero-extends
** 16 bytes to int32 lanes, splits the nibbles with an and and a shift, and maps the values 0..15
** to the floats -8..7 with one vpermps from a 16-entry table. Decode walks 4 rows side by side;
** the K tail reads x with masked loads, so the zero-padded weights of the last block meet zeros.
**
** int8 activations (default): the activation quantizer, the decode kernel (T <= 4) and the
** prefill GEMM (T > 4), each described in its section below and in docs/quantization.md.
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
    const size_t bb = t == TW_DT_Q8_0 ? TW_Q8_0_BYTES : TW_Q4_0_BYTES;
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

/* ---- int8 activations: quantizing x (tw_qx_quantize's arithmetic, bit for bit) ------------------ */

void tw_qx_rows_avx512(const float *x, int64_t T, int64_t K, tw_qx *a) {
    const __m512 sign = _mm512_set1_ps(-0.0f), half = _mm512_set1_ps(0.5f);
    const __m512 hi = _mm512_set1_ps(127.0f), lo = _mm512_set1_ps(-127.0f);
    for (int64_t t = 0; t < T; t++)
        for (int64_t b = 0; b < a->nb; b++) {
            const float *xb = x + t * K + b * TW_QBLOCK;
            int64_t n = TW_MIN(TW_QBLOCK, K - b * TW_QBLOCK);
            __mmask16 m0 = (__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1);
            __mmask16 m1 = (__mmask16)(n >= 32 ? 0xffff : n > 16 ? (1u << (n - 16)) - 1 : 0);
            __m512 v[2] = { _mm512_maskz_loadu_ps(m0, xb), _mm512_maskz_loadu_ps(m1, xb + 16) };
            float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, v[0]), _mm512_andnot_ps(sign, v[1])));
            float id = amax > 0 ? 127.0f / amax : 0.0f;
            __m512i sum = _mm512_setzero_si512();
            int8_t *q = a->q + (t * a->ld + b) * TW_QBLOCK;
            for (int h = 0; h < 2; h++) {
                __m512 u = _mm512_mul_ps(v[h], _mm512_set1_ps(id));
                u = _mm512_add_ps(u, _mm512_or_ps(half, _mm512_and_ps(sign, u)));
                __m512i r = _mm512_cvttps_epi32(_mm512_min_ps(hi, _mm512_max_ps(lo, u)));
                sum = _mm512_add_epi32(sum, r);
                _mm_storeu_si128((__m128i *)(q + 16 * h), _mm512_cvtepi32_epi8(r));
            }
            a->d[t * a->ld + b] = amax / 127.0f;
            a->s[t * a->ld + b] = _mm512_reduce_add_epi32(sum);
        }
}

/* ---- int8 activations: VNNI ----------------------------------------------------------------------
** The weights become unsigned bytes (Q8_0: q ^ 0x80 = q + 128; Q4_0: the nibble = q + 8) and
** vpdpbusd multiplies them by the int8 activations; the offset comes back per block as
** 128 * s or 8 * s (s: the sum of the activation block, tw_qx). Q8_0: two blocks fill a 64-byte
** vector and eight such products (16 blocks) are summed horizontally into one vector holding each
** block's integer dot in a lane (lane order GPERM). Q4_0: four blocks' nibbles fill a vector, the
** low and high nibbles meet x in tw_qx_halves order, and four products give the 16 lanes (order
** GPERM4). The scales and activation sums are read in the same lane order (the f16 d_w by word
** permutes of 64-byte windows). Then per group and token: subtract the offset, convert, one FMA
** by d_w * d_x into an f32 accumulator, reduced once per row. Integer sums are exact, so the only
** difference from tw_quant_dot_i8_ref is the order of the f32 additions. Rows are walked one at
** a time (a task's rows are contiguous: one sequential stream, prefetched 4 KB ahead), each row's
** weights expanded once for up to 4 tokens. */

#pragma GCC push_options
#pragma GCC target("avx512vnni")

/* Software prefetch distance of the decode kernels: each group prefetches its own bytes this far
** ahead (rows of a task are contiguous). The hardware prefetcher alone left a single stream per
** core at 25-37 GB/s for two cores on the 256000-row head; best of 4 interleaved runs each:
** 2 KB 45 / 41 GB/s (Q8_0 / Q4_0), 4 KB 49 / 42, 8 KB 52 / 44, 12 KB 52 / 40. */
enum { PF_DIST = 8192 };
static const int32_t GPERM[16] = { 0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15 };

/* Q8_0 blocks b, b + 1 (two) or b alone as 64 unsigned bytes (q + 128) in column order */
INLINE __m512i pair_q8(const uint8_t *blk, bool two) {
    __m512i z = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(blk + 2)));
    if (two) z = _mm512_inserti64x4(z, _mm256_loadu_si256((const __m256i *)(blk + 36)), 1);
    return _mm512_xor_si512(z, _mm512_set1_epi8((char)0x80));
}

/* per 128-bit lane l: [sum of d0's lane l, d1's, d2's, d3's] */
INLINE __m512i hsum4(__m512i d0, __m512i d1, __m512i d2, __m512i d3) {
    __m512i a = _mm512_add_epi32(_mm512_unpacklo_epi32(d0, d1), _mm512_unpackhi_epi32(d0, d1));
    __m512i b = _mm512_add_epi32(_mm512_unpacklo_epi32(d2, d3), _mm512_unpackhi_epi32(d2, d3));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
}

/* Q8_0: blocks [b0, b0 + 8) of a group of n (pairs past n are zero): per token, hsum4 of the 4
** pairs. xq: the group's activations of the first token, the next token xs bytes further. */
INLINE void half_q8(int NT, int n, int b0, const uint8_t *gw, const int8_t *xq, int64_t xs, __m512i *S) {
    __m512i D[4][4];   /* [token][pair] */
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        int b = b0 + 2 * p;
        __m512i z = b < n ? pair_q8(gw + (size_t)b * 34, b + 1 < n) : _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int k = 0; k < NT; k++)
            D[k][p] = b < n ? _mm512_dpbusd_epi32(_mm512_setzero_si512(), z, _mm512_loadu_si512(xq + k * xs + b * 32))
                            : _mm512_setzero_si512();
    }
#pragma GCC unroll 4
    for (int k = 0; k < NT; k++) S[k] = hsum4(D[k][0], D[k][1], D[k][2], D[k][3]);
}

/* Q4_0: blocks [b0, b0 + 4) of a group of n, per token: lane l of the result = block b0 + l's 4
** partial sums. The 4 blocks' nibbles, 16 bytes each, fill one vector; its low nibbles meet the
** first 16 columns of x (tw_qx_halves order: xh), its high nibbles the last 16. */
INLINE void quad_q4(int NT, int n, int b0, const uint8_t *gw, const int8_t *xh, int64_t xs, __m512i *D) {
    __m512i z = _mm512_zextsi128_si512(_mm_loadu_si128((const __m128i *)(gw + (size_t)b0 * 18 + 2)));
    if (b0 + 1 < n) z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(gw + (size_t)(b0 + 1) * 18 + 2)), 1);
    if (b0 + 2 < n) z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(gw + (size_t)(b0 + 2) * 18 + 2)), 2);
    if (b0 + 3 < n) z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(gw + (size_t)(b0 + 3) * 18 + 2)), 3);
    const __m512i m = _mm512_set1_epi8(15);
    __m512i lo = _mm512_and_si512(z, m), hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), m);
#pragma GCC unroll 4
    for (int k = 0; k < NT; k++) {
        const int8_t *x = xh + k * xs + b0 * 32;
        D[k] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512(x)), hi,
                                   _mm512_loadu_si512(x + 64));
    }
}

static const int32_t GPERM4[16] = { 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15 };

/* The 16 d_w of a Q4_0 group in GPERM4 order: the first 64 bytes of each quad of blocks hold its 4
** scales (words 0, 9, 18, 27); two word permutes and a blend put them in place (a 16-lane gather
** measured about 1.5 cycles per block, most of the kernel's time). Bytes past the group's n
** blocks are never loaded (masked loads). */
static const uint16_t Q4_DIDX_A[32] = { 0, 32, 0, 0, 9, 41, 0, 0, 18, 50, 0, 0, 27, 59, 0, 0 };
static const uint16_t Q4_DIDX_B[32] = { 0, 0, 0, 32, 0, 0, 9, 41, 0, 0, 18, 50, 0, 0, 27, 59 };

INLINE __m512 q4_scales(int n, const uint8_t *gw) {
    __m512i Q[4];
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        int bytes = (n - 4 * c) * 18;
        if (bytes >= 64) Q[c] = _mm512_loadu_si512(gw + c * 72);
        else if (bytes > 0) Q[c] = _mm512_maskz_loadu_epi8((__mmask64)(((uint64_t)1 << bytes) - 1), gw + c * 72);
        else Q[c] = _mm512_setzero_si512();
    }
    __m512i a = _mm512_permutex2var_epi16(Q[0], _mm512_loadu_si512(Q4_DIDX_A), Q[1]);
    __m512i b = _mm512_permutex2var_epi16(Q[2], _mm512_loadu_si512(Q4_DIDX_B), Q[3]);
    b = _mm512_mask_blend_epi16(0xCCCC, a, b);   /* lanes with p % 4 >= 2 from quads 2, 3 */
    return _mm512_cvtph_ps(_mm512_castsi512_si256(b));
}

/* The same for Q8_0 in GPERM order: 64 bytes at every other block hold 2 scales (words 0, 17);
** four permutes pick the 4 scales of each pair of windows and three blends merge them. */
static const uint16_t Q8_DIDX[4][32] = { { 0, 32, 0, 0, 17, 49 }, { 0, 0, 0, 32, 0, 0, 17, 49 },
                                         { 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0, 17, 49 },
                                         { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0, 17, 49 } };

INLINE __m512 q8_scales(int n, const uint8_t *gw) {
    __m512i W[8], r = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int c = 0; c < 8; c++) {
        int bytes = (n - 2 * c) * 34;
        if (bytes >= 64) W[c] = _mm512_loadu_si512(gw + c * 68);
        else if (bytes > 0) W[c] = _mm512_maskz_loadu_epi8((__mmask64)(((uint64_t)1 << bytes) - 1), gw + c * 68);
        else W[c] = _mm512_setzero_si512();
    }
    static const __mmask32 lanes[4] = { 0x33, 0xcc, 0x3300, 0xcc00 };
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
        r = _mm512_mask_blend_epi16(lanes[k], r,
                                    _mm512_permutex2var_epi16(W[2 * k], _mm512_loadu_si512(Q8_DIDX[k]), W[2 * k + 1]));
    return _mm512_cvtph_ps(_mm512_castsi512_si256(r));
}

/* One group of n <= 16 blocks (gw: its first block) of one row, NT tokens: adds each token's
** sum over the group to acc[]. xq, xd, xs: the group's place in the first token's row of tw_qx;
** token k is k * ld blocks further. */
INLINE void group(tw_dtype t, int NT, int n, const uint8_t *gw, const int8_t *xq, const float *xd, const int32_t *xs,
                  int64_t ld, __m512 *acc) {
    const __m512i perm = _mm512_loadu_si512(t == TW_DT_Q8_0 ? GPERM : GPERM4);
    __m512i R[4];
    if (t == TW_DT_Q8_0) {
        __m512i U[4], V[4];
        half_q8(NT, n, 0, gw, xq, ld * TW_QBLOCK, U);
        half_q8(NT, n, 8, gw, xq, ld * TW_QBLOCK, V);
#pragma GCC unroll 4
        for (int k = 0; k < NT; k++)   /* lanes: blocks 0 2 4 6 1 3 5 7 8 10 12 14 9 11 13 15 (GPERM) */
            R[k] = _mm512_add_epi32(_mm512_shuffle_i64x2(U[k], V[k], 0x88), _mm512_shuffle_i64x2(U[k], V[k], 0xDD));
    } else {
        __m512i D[4][4];   /* [quad][token] */
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            if (4 * c < n) quad_q4(NT, n, 4 * c, gw, xq, ld * TW_QBLOCK, D[c]);
            else
                for (int k = 0; k < NT; k++) D[c][k] = _mm512_setzero_si512();
        }
#pragma GCC unroll 4
        for (int k = 0; k < NT; k++)   /* lanes: blocks 0 4 8 12 1 5 9 13 ... (GPERM4) */
            R[k] = hsum4(D[0][k], D[1][k], D[2][k], D[3][k]);
    }
    __m512 dw = t == TW_DT_Q8_0 ? q8_scales(n, gw) : q4_scales(n, gw);
#pragma GCC unroll 4
    for (int k = 0; k < NT; k++) {
        __m512 dx = _mm512_permutexvar_ps(perm, _mm512_loadu_ps(xd + k * ld));
        __m512i off = _mm512_slli_epi32(_mm512_permutexvar_epi32(perm, _mm512_loadu_si512(xs + k * ld)),
                                        t == TW_DT_Q8_0 ? 7 : 3);
        acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(R[k], off)), _mm512_mul_ps(dw, dx), acc[k]);
    }
}

/* one row (w), NT tokens from t0 of a, into y[k * ldy] */
INLINE void row_i8(tw_dtype t, int NT, const uint8_t *w, const tw_qx *a, int64_t t0, float *y, int64_t ldy) {
    const size_t bb = t == TW_DT_Q8_0 ? 34 : 18;
    const int64_t ld = a->ld, nb = a->nb;
    const int8_t *xq = (t == TW_DT_Q4_0 ? a->qh : a->q) + t0 * ld * TW_QBLOCK;
    const float *xd = a->d + t0 * ld;
    const int32_t *xs = a->s + t0 * ld;
    __m512 acc[4];
#pragma GCC unroll 4
    for (int k = 0; k < NT; k++) acc[k] = _mm512_setzero_ps();
    int64_t g = 0;
    for (; g + 16 <= nb; g += 16) {
#pragma GCC unroll 9
        for (size_t o = 0; o < 16 * bb; o += 64) _mm_prefetch((const char *)(w + (size_t)g * bb + PF_DIST + o), _MM_HINT_T0);
        group(t, NT, 16, w + (size_t)g * bb, xq + g * TW_QBLOCK, xd + g, xs + g, ld, acc);
    }
    if (g < nb) group(t, NT, (int)(nb - g), w + (size_t)g * bb, xq + g * TW_QBLOCK, xd + g, xs + g, ld, acc);
#pragma GCC unroll 4
    for (int k = 0; k < NT; k++) y[k * ldy] = _mm512_reduce_add_ps(acc[k]);
}

INLINE void rows_i8(tw_dtype t, const uint8_t *w, size_t rb, int64_t nrows, const tw_qx *a, int64_t t0, int64_t nt,
                    float *y, int64_t ldy) {
    for (int64_t r = 0; r < nrows; r++, w += rb, y++)
        for (int64_t k = 0; k < nt; k += 4) {
            switch (TW_MIN(4, nt - k)) {
            case 1: row_i8(t, 1, w, a, t0 + k, y + k * ldy, ldy); break;
            case 2: row_i8(t, 2, w, a, t0 + k, y + k * ldy, ldy); break;
            case 3: row_i8(t, 3, w, a, t0 + k, y + k * ldy, ldy); break;
            default: row_i8(t, 4, w, a, t0 + k, y + k * ldy, ldy); break;
            }
        }
}

static void i8_q8(const uint8_t *w, size_t rb, int64_t n, const tw_qx *a, int64_t t0, int64_t nt, float *y,
                  int64_t ldy) {
    rows_i8(TW_DT_Q8_0, w, rb, n, a, t0, nt, y, ldy);
}
static void i8_q4(const uint8_t *w, size_t rb, int64_t n, const tw_qx *a, int64_t t0, int64_t nt, float *y,
                  int64_t ldy) {
    rows_i8(TW_DT_Q4_0, w, rb, n, a, t0, nt, y, ldy);
}

void tw_qdot_i8_rows_avx512(tw_dtype t, const uint8_t *w, size_t row_bytes, int64_t nrows, const tw_qx *a,
                            int64_t t0, int64_t nt, float *y, int64_t ldy) {
    if (t == TW_DT_Q8_0) i8_q8(w, row_bytes, nrows, a, t0, nt, y, ldy);
    else i8_q4(w, row_bytes, nrows, a, t0, nt, y, ldy);
}

/* ---- int8 activations, T > 4: a small GEMM ------------------------------------------------------
** Panels of 16 rows are repacked once (tw_qgemm_i8_avx512's scratch) so that one 64-byte vector
** holds 4 consecutive columns of all 16 rows (dword lane r = row r): per block, 8 such vectors
** (Q8_0: bytes ^ 0x80; Q4_0: the nibbles in column order) and the 16 rows' d_w as f32. Then each
** vpdpbusd multiplies them by 4 columns of one token broadcast to every lane, and a block's 8
** products leave each row's integer dot in its own lane: no horizontal sums. Tiles of 16 rows x
** 8 tokens; per token and block: 8 vpdpbusd, then the offset (folded into the start value),
** one convert and one FMA by d_w * d_x. Same arithmetic as tw_quant_dot_i8_ref. */

enum { PB = 8 * 64 + 64 };   /* packed bytes per block: 8 column quads x 16 rows, 16 f16 d_w (+ pad) */

/* rows [0, nr) (nr <= 16; the rest repeat row nr - 1 and are never stored) of the panel at w into
** out, blocks [0, nb): the rows' bytes are loaded whole and transposed in registers (gathers
** measured several times slower), the scales copied as f16. */
INLINE void pack_panel(tw_dtype t, const uint8_t *w, size_t rb, int nr, int64_t nb, uint8_t *out) {
    const size_t bb = t == TW_DT_Q8_0 ? 34 : 18;
    const uint8_t *rp[16];
    for (int r = 0; r < 16; r++) rp[r] = w + (size_t)TW_MIN(r, nr - 1) * rb;
    const __m512i lo4 = _mm512_set1_epi8(15);
    const __m512i ilo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), ihi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    for (int64_t b = 0; b < nb; b++, out += PB) {
        const size_t o = (size_t)b * bb;
        __m512i *P = (__m512i *)out;
        if (t == TW_DT_Q8_0) {
            /* Y_i = [row i | row i + 8], 8 dwords each; an 8 x 8 dword transpose in both halves */
            __m512i Y[8], T[8], U[8];
            for (int i = 0; i < 8; i++)
                Y[i] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(rp[i] + o + 2))),
                                          _mm256_loadu_si256((const __m256i *)(rp[i + 8] + o + 2)), 1);
            for (int i = 0; i < 8; i += 2) {
                T[i] = _mm512_unpacklo_epi32(Y[i], Y[i + 1]);
                T[i + 1] = _mm512_unpackhi_epi32(Y[i], Y[i + 1]);
            }
            for (int i = 0; i < 8; i += 4) {   /* U[i + c]: lane dword c of rows i..i+3 */
                U[i + 0] = _mm512_unpacklo_epi64(T[i], T[i + 2]);
                U[i + 1] = _mm512_unpackhi_epi64(T[i], T[i + 2]);
                U[i + 2] = _mm512_unpacklo_epi64(T[i + 1], T[i + 3]);
                U[i + 3] = _mm512_unpackhi_epi64(T[i + 1], T[i + 3]);
            }
            for (int c = 0; c < 4; c++) {   /* dwords c (128-bit lanes 0, 2) and 4 + c (lanes 1, 3) */
                P[c] = _mm512_xor_si512(_mm512_permutex2var_epi64(U[c], ilo, U[4 + c]), _mm512_set1_epi8((char)0x80));
                P[4 + c] = _mm512_xor_si512(_mm512_permutex2var_epi64(U[c], ihi, U[4 + c]), _mm512_set1_epi8((char)0x80));
            }
        } else {
            /* Z_j = [row j | j + 4 | j + 8 | j + 12], 4 dwords each; a 4 x 4 transpose per lane */
            __m512i Z[4], T[4];
            for (int j = 0; j < 4; j++) {
                __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(rp[j] + o + 2))),
                                                    _mm_loadu_si128((const __m128i *)(rp[j + 4] + o + 2)), 1);
                Z[j] = _mm512_inserti32x4(_mm512_castsi256_si512(v), _mm_loadu_si128((const __m128i *)(rp[j + 8] + o + 2)), 2);
                Z[j] = _mm512_inserti32x4(Z[j], _mm_loadu_si128((const __m128i *)(rp[j + 12] + o + 2)), 3);
            }
            T[0] = _mm512_unpacklo_epi32(Z[0], Z[1]);
            T[1] = _mm512_unpackhi_epi32(Z[0], Z[1]);
            T[2] = _mm512_unpacklo_epi32(Z[2], Z[3]);
            T[3] = _mm512_unpackhi_epi32(Z[2], Z[3]);
            __m512i q[4] = { _mm512_unpacklo_epi64(T[0], T[2]), _mm512_unpackhi_epi64(T[0], T[2]),
                             _mm512_unpacklo_epi64(T[1], T[3]), _mm512_unpackhi_epi64(T[1], T[3]) };
            for (int c = 0; c < 4; c++) {   /* bytes 4c..4c+3: columns 4c.. (low nibbles), 16 + 4c.. (high) */
                P[c] = _mm512_and_si512(q[c], lo4);
                P[4 + c] = _mm512_and_si512(_mm512_srli_epi16(q[c], 4), lo4);
            }
        }
        uint16_t *d = (uint16_t *)(out + 8 * 64);
        for (int r = 0; r < 16; r++) memcpy(d + r, rp[r] + o, 2);
    }
}

/* y[k * ldy + r] for the 16 packed rows (nr stored) and NT tokens starting at t0 */
INLINE void tile(tw_dtype t, int NT, const uint8_t *pk, int nr, const tw_qx *a, int64_t t0, float *y, int64_t ldy) {
    const int32_t off = t == TW_DT_Q8_0 ? 128 : 8;   /* the weights' offset */
    const int64_t ld = a->ld;
    const int8_t *xq = a->q + t0 * ld * TW_QBLOCK;
    const float *xd = a->d + t0 * ld;
    const int32_t *xs = a->s + t0 * ld;
    __m512 acc[8];
#pragma GCC unroll 8
    for (int k = 0; k < NT; k++) acc[k] = _mm512_setzero_ps();
    for (int64_t b = 0; b < a->nb; b++, pk += PB) {
        const __m512i *W = (const __m512i *)pk;
        __m512i ai[8];   /* the tokens' chains interleaved: vpdpbusd's latency is hidden by NT of them */
#pragma GCC unroll 8
        for (int k = 0; k < NT; k++) ai[k] = _mm512_set1_epi32(-off * xs[k * ld + b]);
#pragma GCC unroll 8
        for (int s = 0; s < 8; s++) {
            __m512i ws = _mm512_load_si512(W + s);
#pragma GCC unroll 8
            for (int k = 0; k < NT; k++) {
                int32_t q4;
                memcpy(&q4, xq + (k * ld + b) * TW_QBLOCK + 4 * s, 4);
                ai[k] = _mm512_dpbusd_epi32(ai[k], ws, _mm512_set1_epi32(q4));
            }
        }
        __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(pk + 8 * 64)));
#pragma GCC unroll 8
        for (int k = 0; k < NT; k++)
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai[k]), _mm512_mul_ps(dw, _mm512_set1_ps(xd[k * ld + b])), acc[k]);
    }
    const __mmask16 m = (__mmask16)((1u << nr) - 1);
#pragma GCC unroll 8
    for (int k = 0; k < NT; k++) _mm512_mask_storeu_ps(y + k * ldy, m, acc[k]);
}

INLINE void gemm_i8(tw_dtype t, const uint8_t *w, size_t rb, int64_t nrows, const tw_qx *a, int64_t t0, int64_t nt,
                    float *y, int64_t ldy, uint8_t *scratch) {
    for (int64_t r0 = 0; r0 < nrows; r0 += 16) {
        int nr = (int)TW_MIN(16, nrows - r0);
        pack_panel(t, w + (size_t)r0 * rb, rb, nr, a->nb, scratch);
        for (int64_t k = 0; k < nt; k += 8) {
            float *yk = y + k * ldy + r0;
            switch (TW_MIN(8, nt - k)) {
            case 1: tile(t, 1, scratch, nr, a, t0 + k, yk, ldy); break;
            case 2: tile(t, 2, scratch, nr, a, t0 + k, yk, ldy); break;
            case 3: tile(t, 3, scratch, nr, a, t0 + k, yk, ldy); break;
            case 4: tile(t, 4, scratch, nr, a, t0 + k, yk, ldy); break;
            case 5: tile(t, 5, scratch, nr, a, t0 + k, yk, ldy); break;
            case 6: tile(t, 6, scratch, nr, a, t0 + k, yk, ldy); break;
            case 7: tile(t, 7, scratch, nr, a, t0 + k, yk, ldy); break;
            default: tile(t, 8, scratch, nr, a, t0 + k, yk, ldy); break;
            }
        }
    }
}

static void gemm_q8(const uint8_t *w, size_t rb, int64_t n, const tw_qx *a, int64_t t0, int64_t nt, float *y,
                    int64_t ldy, uint8_t *scratch) {
    gemm_i8(TW_DT_Q8_0, w, rb, n, a, t0, nt, y, ldy, scratch);
}
static void gemm_q4(const uint8_t *w, size_t rb, int64_t n, const tw_qx *a, int64_t t0, int64_t nt, float *y,
                    int64_t ldy, uint8_t *scratch) {
    gemm_i8(TW_DT_Q4_0, w, rb, n, a, t0, nt, y, ldy, scratch);
}

size_t tw_qgemm_i8_scratch_avx512(int64_t nb) { return (size_t)nb * PB; }

void tw_qgemm_i8_avx512(tw_dtype t, const uint8_t *w, size_t row_bytes, int64_t nrows, const tw_qx *a, int64_t t0,
                        int64_t nt, float *y, int64_t ldy, void *scratch) {
    if (t == TW_DT_Q8_0) gemm_q8(w, row_bytes, nrows, a, t0, nt, y, ldy, scratch);
    else gemm_q4(w, row_bytes, nrows, a, t0, nt, y, ldy, scratch);
}

#pragma GCC pop_options
