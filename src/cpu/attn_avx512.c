/*
** attn_avx512.c — one attention block (a block of query rows against a block of keys, online
** softmax; the contract is tw_attn_block in attn.h) with AVX-512 (-mavx512f/bw/vl/dq -mfma; only
** called when CPUID says the CPU has them). Three steps, each shaped as a small GEMM:
**
**   S = Qp K^T   keys packed transposed (kt[d][j], 16 keys per vector) so the register tile is
**                6 query rows x 64 keys: per d, 4 key vectors and 6 broadcast query values feed
**                24 FMAs. Every score is one FMA chain over d = 0..D-1 whatever the tile, so a
**                query's scores do not depend on which other rows share its block (decode and
**                prefill agree; see attn.c on batch invariance).
**   softmax      scale, softcap (vectorised tanh), mask, block max; P = exp(S - max) vectorised;
**                running max/sum per row; the accumulator rows are rescaled by e^(old - new max).
**   O += P V     V rows read in place, the tile is rows x D-vectors (6 x 64 floats, or 4 x 80
**                for SigLIP's D = 72, masked in the last vector), broadcast P[i][j] per key.
**
** Vectorised exp: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, degree-7 Taylor polynomial
** for e^r (truncation error < 6e-9 relative), then 2^n by vscalefps; within 2 ulp of expf over
** the range softmax uses (measured: <= 0.91 ulp over [-87, 88], test_attn; arguments below
** ln(FLT_MIN) give 0 instead of a denormal).
** Vectorised tanh: tanh|y| = -expm1(-2|y|) / (2 + expm1(-2|y|)), with expm1 from the same
** reduction and a degree-8 Taylor polynomial for expm1(r), so small |y| keeps full relative
** accuracy (no 1 - e^-2y cancellation); measured <= 2.5 ulp of the exact tanh; |y| >= 9 gives +-1.
*/
#include "attn.h"

#include <immintrin.h>
#include <math.h>

#define INLINE static inline __attribute__((always_inline))

/* ---- vector math ----------------------------------------------------------------------------- */

static const float LOG2E = 1.44269504088896341f;
static const float LN2_HI = 0.693359375f;          /* ln 2 = LN2_HI + LN2_LO, LN2_HI has 10 bits */
static const float LN2_LO = -2.12194440e-4f;

/* n = round(x / ln2), r = x - n ln2 */
INLINE __m512 reduce_ln2(__m512 x, __m512 *r) {
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 t = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    *r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), t);
    return n;
}

/* e^x for x in [-87.3, 88]; 0 below. */
INLINE __m512 exp512(__m512 x) {
    __mmask16 ok = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_GE_OQ);
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.0f));
    __m512 r, n = reduce_ln2(x, &r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(ok, p, n);
}

/* e^x - 1 for x in [-18, 0] */
INLINE __m512 expm1_neg512(__m512 x) {
    __m512 r, n = reduce_ln2(x, &r);
    __m512 p = _mm512_set1_ps(1.0f / 40320);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 5040));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    __m512 q = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r);            /* expm1(r)          */
    __m512 two_n = _mm512_scalef_ps(_mm512_set1_ps(1.0f), n);
    return _mm512_add_ps(_mm512_mul_ps(two_n, q), _mm512_sub_ps(two_n, _mm512_set1_ps(1.0f)));   /* 2^n q + (2^n - 1) */
}

INLINE __m512 tanh512(__m512 y) {
    __m512 sign = _mm512_and_ps(y, _mm512_set1_ps(-0.0f));
    __m512 a = _mm512_min_ps(_mm512_andnot_ps(_mm512_set1_ps(-0.0f), y), _mm512_set1_ps(9.0f));
    __m512 e = expm1_neg512(_mm512_mul_ps(a, _mm512_set1_ps(-2.0f)));
    __m512 t = _mm512_div_ps(_mm512_sub_ps(_mm512_setzero_ps(), e), _mm512_add_ps(e, _mm512_set1_ps(2.0f)));
    return _mm512_or_ps(t, sign);
}

INLINE __mmask16 tail_mask(int32_t n) { return n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1); }

/* Visible key columns [*j0, *j1) of rows i0..i0+rows-1 together (the whole block without a mask).
** Columns outside are masked for every one of those rows: their scores are never used (the
** softmax overwrites them with -inf) and their P are 0, so the tiles skip them; the results are
** bit for bit those of the full loops. */
static void rows_span(const tw_attn_block *b, int32_t i0, int32_t rows, int32_t *j0, int32_t *j1) {
    if (!b->lo) {
        *j0 = 0, *j1 = b->nk;
        return;
    }
    int32_t lo = b->nk, hi = 0;
    for (int32_t r = i0; r < i0 + rows; r++)
        if (b->hi[r] > b->lo[r]) lo = TW_MIN(lo, b->lo[r]), hi = TW_MAX(hi, b->hi[r]);
    *j0 = lo, *j1 = TW_MAX(lo, hi);
}

/* does any row of i0..i0+rows-1 see a column of [c0, c1)? */
static bool live(const tw_attn_block *b, int32_t i0, int32_t rows, int32_t c0, int32_t c1) {
    int32_t j0, j1;
    rows_span(b, i0, rows, &j0, &j1);
    return j0 < c1 && c0 < j1;
}

/* ---- S = Qp K^T ------------------------------------------------------------------------------ */

enum { QK_MR = 6, QK_NV = 4, PV_MR_MAX = 8, PV_NV_MAX = 5 };

/* MR rows x NV key vectors of S from packed keys kt [D][lds] */
INLINE void qk_tile(int MR, int NV, const float *qp, int32_t D, const float *kt, int32_t lds, float *s) {
    __m512 acc[QK_MR][QK_NV];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int c = 0; c < NV; c++) acc[r][c] = _mm512_setzero_ps();
    for (int32_t d = 0; d < D; d++) {
        __m512 kv[QK_NV];
#pragma GCC unroll 8
        for (int c = 0; c < NV; c++) kv[c] = _mm512_loadu_ps(kt + (size_t)d * lds + 16 * c);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512 qb = _mm512_set1_ps(qp[(size_t)r * D + d]);
#pragma GCC unroll 8
            for (int c = 0; c < NV; c++) acc[r][c] = _mm512_fmadd_ps(qb, kv[c], acc[r][c]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int c = 0; c < NV; c++) _mm512_storeu_ps(s + (size_t)r * lds + 16 * c, acc[r][c]);
}

#define QK_ROWS(NV)                                                                              \
    static void qk_rows_##NV(const tw_attn_block *b, int32_t c0) {                               \
        int32_t i = 0, c1 = c0 + 16 * NV;                                                        \
        for (; i + QK_MR <= b->m; i += QK_MR)                                                    \
            if (live(b, i, QK_MR, c0, c1))                                                       \
                qk_tile(QK_MR, NV, b->qp + (size_t)i * b->D, b->D, b->kt + c0, b->lds, b->s + (size_t)i * b->lds + c0);\
        if (i == b->m || !live(b, i, b->m - i, c0, c1)) return;                                  \
        const float *q = b->qp + (size_t)i * b->D;                                               \
        float *s = b->s + (size_t)i * b->lds + c0;                                               \
        switch (b->m - i) {                                                                      \
        case 5: qk_tile(5, NV, q, b->D, b->kt + c0, b->lds, s); break;                           \
        case 4: qk_tile(4, NV, q, b->D, b->kt + c0, b->lds, s); break;                           \
        case 3: qk_tile(3, NV, q, b->D, b->kt + c0, b->lds, s); break;                           \
        case 2: qk_tile(2, NV, q, b->D, b->kt + c0, b->lds, s); break;                           \
        case 1: qk_tile(1, NV, q, b->D, b->kt + c0, b->lds, s); break;                           \
        default: break;                                                                          \
        }                                                                                        \
    }
QK_ROWS(1)
QK_ROWS(2)
QK_ROWS(3)
QK_ROWS(4)

/* kt[d][j] = k[j][d] for j < nk, zero up to the next multiple of 16 keys. 16 x 16 blocks go
** through registers: 16 key rows loaded (masked past D), transposed with unpack/shuffle. */
static void pack_kt(const tw_attn_block *b) {
    int32_t D = b->D, nk = b->nk, nkp = (nk + 15) / 16 * 16, lds = b->lds;
    for (int32_t j0 = 0; j0 < nkp; j0 += 16) {
        int32_t nj = TW_MIN(16, nk - j0);
        for (int32_t d0 = 0; d0 < D; d0 += 16) {
            __mmask16 dm = tail_mask(D - d0);
            __m512 r[16];
            for (int32_t jj = 0; jj < 16; jj++)
                r[jj] = jj < nj ? _mm512_maskz_loadu_ps(dm, b->k + (size_t)(j0 + jj) * b->ldk + d0) : _mm512_setzero_ps();
            /* 16x16 transpose: 4 rounds of interleaving */
            __m512 t[16];
            for (int32_t i = 0; i < 16; i += 2) {
                t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
                t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
            }
            for (int32_t i = 0; i < 16; i += 4) {
                __m512d a0 = _mm512_castps_pd(t[i]), a1 = _mm512_castps_pd(t[i + 1]);
                __m512d a2 = _mm512_castps_pd(t[i + 2]), a3 = _mm512_castps_pd(t[i + 3]);
                r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
                r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
                r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
                r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
            }
            /* r[4g + c] holds, in 128-bit lane L, column 4L + c of rows 4g..4g+3: gather the lanes */
            for (int32_t i = 0; i < 4; i++) {
                t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);       /* lanes 0,2 of each */
                t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);   /* lanes 1,3         */
                t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
                t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
            }
            for (int32_t i = 0; i < 4; i++) {
                r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
                r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
                r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
                r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xDD);
            }
            /* r[x] is now column d0 + x of the 16 keys */
            for (int32_t x = 0; x < 16; x++) {
                int32_t d = d0 + x;
                if (d < D) _mm512_storeu_ps(b->kt + (size_t)d * lds + j0, r[x]);
            }
        }
    }
}

static void qk(const tw_attn_block *b) {
    pack_kt(b);
    int32_t nv = (b->nk + 15) / 16, c = 0;
    for (; c + QK_NV <= nv; c += QK_NV) qk_rows_4(b, 16 * c);
    switch (nv - c) {
    case 3: qk_rows_3(b, 16 * c); break;
    case 2: qk_rows_2(b, 16 * c); break;
    case 1: qk_rows_1(b, 16 * c); break;
    default: break;
    }
}

/* ---- online softmax over the block ------------------------------------------------------ */

static void softmax_block(const tw_attn_block *b) {
    int32_t nv = (b->nk + 15) / 16, Dp = b->ldo;
    const __m512 ninf = _mm512_set1_ps(-INFINITY), scale = _mm512_set1_ps(b->scale);
    const __m512 cap = _mm512_set1_ps(b->softcap);
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int32_t i = 0; i < b->m; i++) {
        float *s = b->s + (size_t)i * b->lds;
        int32_t lo = b->lo ? b->lo[i] : 0, hi = b->hi ? b->hi[i] : b->nk;
        __m512i vlo = _mm512_set1_epi32(lo), vhi = _mm512_set1_epi32(hi);
        __m512 vmax = ninf;
        for (int32_t c = 0; c < nv; c++) {
            __m512 x = _mm512_mul_ps(_mm512_loadu_ps(s + 16 * c), scale);
            if (b->softcap > 0) x = _mm512_mul_ps(cap, tanh512(_mm512_div_ps(x, cap)));
            __m512i col = _mm512_add_epi32(iota, _mm512_set1_epi32(16 * c));
            __mmask16 vis = _mm512_cmpge_epi32_mask(col, vlo) & _mm512_cmplt_epi32_mask(col, vhi);
            x = _mm512_mask_blend_ps(vis, ninf, x);
            _mm512_storeu_ps(s + 16 * c, x);
            vmax = _mm512_max_ps(vmax, x);
        }
        float mb = _mm512_reduce_max_ps(vmax), m_old = b->mx[i], m_new = m_old > mb ? m_old : mb;
        if (m_new == -INFINITY) {   /* nothing visible yet: P = 0, nothing to rescale */
            for (int32_t c = 0; c < nv; c++) _mm512_storeu_ps(s + 16 * c, _mm512_setzero_ps());
            continue;
        }
        __m512 vm = _mm512_set1_ps(m_new), vsum = _mm512_setzero_ps();
        for (int32_t c = 0; c < nv; c++) {
            __m512 p = exp512(_mm512_sub_ps(_mm512_loadu_ps(s + 16 * c), vm));
            _mm512_storeu_ps(s + 16 * c, p);
            vsum = _mm512_add_ps(vsum, p);
        }
        float sum = _mm512_reduce_add_ps(vsum);
        if (m_old == m_new) {
            b->l[i] += sum;
        } else {
            float alpha = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
            b->l[i] = b->l[i] * alpha + sum;
            float *o = b->o + (size_t)i * Dp;
            __m512 va = _mm512_set1_ps(alpha);
            for (int32_t d = 0; d < Dp; d += 16) _mm512_storeu_ps(o + d, _mm512_mul_ps(_mm512_loadu_ps(o + d), va));
        }
        b->mx[i] = m_new;
    }
}

/* ---- O += P V ------------------------------------------------------------------------------- */

/* MR rows x NV vectors of O starting at column d0; the last vector loads V through `last`. */
INLINE void pv_tile(int MR, int NV, const tw_attn_block *b, int32_t i0, int32_t d0, __mmask16 last) {
    __m512 acc[PV_MR_MAX][PV_NV_MAX];
    float *o = b->o + (size_t)i0 * b->ldo + d0;
    const float *p = b->s + (size_t)i0 * b->lds;
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int c = 0; c < NV; c++) acc[r][c] = _mm512_loadu_ps(o + (size_t)r * b->ldo + 16 * c);
    int32_t j0, j1;
    rows_span(b, i0, MR, &j0, &j1);
    const float *v = b->v + (size_t)j0 * b->ldv + d0;
    for (int32_t j = j0; j < j1; j++, v += b->ldv) {
        __m512 vv[PV_NV_MAX];
#pragma GCC unroll 8
        for (int c = 0; c < NV; c++)
            vv[c] = c == NV - 1 ? _mm512_maskz_loadu_ps(last, v + 16 * c) : _mm512_loadu_ps(v + 16 * c);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512 pb = _mm512_set1_ps(p[(size_t)r * b->lds + j]);
#pragma GCC unroll 8
            for (int c = 0; c < NV; c++) acc[r][c] = _mm512_fmadd_ps(pb, vv[c], acc[r][c]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int c = 0; c < NV; c++) _mm512_storeu_ps(o + (size_t)r * b->ldo + 16 * c, acc[r][c]);
}

/* every row, D columns [d0, d0 + 16 NV), MR rows at a time */
#define PV_COLS(MR, NV)                                                                          \
    static void pv_cols_##MR##_##NV(const tw_attn_block *b, int32_t d0, __mmask16 last) {        \
        int32_t i = 0;                                                                           \
        for (; i + MR <= b->m; i += MR) pv_tile(MR, NV, b, i, d0, last);                         \
        switch (b->m - i) {                                                                      \
        case 7: pv_tile(7, NV, b, i, d0, last); break;                                           \
        case 6: pv_tile(6, NV, b, i, d0, last); break;                                           \
        case 5: pv_tile(5, NV, b, i, d0, last); break;                                           \
        case 4: pv_tile(4, NV, b, i, d0, last); break;                                           \
        case 3: pv_tile(3, NV, b, i, d0, last); break;                                           \
        case 2: pv_tile(2, NV, b, i, d0, last); break;                                           \
        case 1: pv_tile(1, NV, b, i, d0, last); break;                                           \
        default: break;                                                                          \
        }                                                                                        \
    }
PV_COLS(8, 1)
PV_COLS(8, 2)
PV_COLS(8, 3)
PV_COLS(6, 4)
PV_COLS(4, 5)

static void pv(const tw_attn_block *b) {
    int32_t D = b->D, nvd = (D + 15) / 16;
    __mmask16 last = tail_mask(D - 16 * (nvd - 1));
    switch (nvd) {   /* D <= 80: one pass over the keys */
    case 1: pv_cols_8_1(b, 0, last); return;
    case 2: pv_cols_8_2(b, 0, last); return;
    case 3: pv_cols_8_3(b, 0, last); return;
    case 4: pv_cols_6_4(b, 0, last); return;
    case 5: pv_cols_4_5(b, 0, last); return;
    default: break;
    }
    int32_t c = 0;   /* wider heads: 64 columns per pass, the rest in one last pass */
    for (; c + 4 < nvd; c += 4) pv_cols_6_4(b, 16 * c, 0xFFFF);
    switch (nvd - c) {
    case 1: pv_cols_8_1(b, 16 * c, last); break;
    case 2: pv_cols_8_2(b, 16 * c, last); break;
    case 3: pv_cols_8_3(b, 16 * c, last); break;
    case 4: pv_cols_6_4(b, 16 * c, last); break;
    default: break;
    }
}

void tw_attn_block_avx512(const tw_attn_block *b) {
    qk(b);
    softmax_block(b);
    pv(b);
}

void tw_attn_vmath_avx512(float *y, const float *x, int64_t n, int fn) {
    float in[16] = { 0 }, out[16];
    for (int64_t i = 0; i < n; i += 16) {
        int64_t k = TW_MIN(16, n - i);
        memcpy(in, x + i, sizeof(float) * (size_t)k);
        __m512 v = _mm512_loadu_ps(in);
        _mm512_storeu_ps(out, fn == 0 ? exp512(v) : tanh512(v));
        memcpy(y + i, out, sizeof(float) * (size_t)k);
    }
}

/* ---- 16-bit keys and values ----------------------------------------------------------------- */

/* 16 elements of type T at p (masked), widened to f32. T is a constant at every call site. */
INLINE __m512 load_kv(tw_kv_type T, const void *p, __mmask16 msk) {
    if (T == TW_KV_F32) return _mm512_maskz_loadu_ps(msk, p);
    __m256i h = _mm256_maskz_loadu_epi16(msk, p);
    if (T == TW_KV_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

void tw_attn_widen_avx512(float *dst, int32_t ldd, const void *src, int64_t ld, tw_kv_type t, int32_t rows, int32_t D) {
    size_t es = t == TW_KV_F32 ? 4 : 2;
    for (int32_t r = 0; r < rows; r++) {
        const char *s = (const char *)src + (size_t)r * (size_t)ld * es;
        float *d = dst + (size_t)r * ldd;
        for (int32_t e = 0; e < D; e += 16) {
            __mmask16 m = tail_mask(D - e);
            __m512 x = t == TW_KV_F16 ? load_kv(TW_KV_F16, s + (size_t)e * es, m)
                     : t == TW_KV_BF16 ? load_kv(TW_KV_BF16, s + (size_t)e * es, m) : load_kv(TW_KV_F32, s + (size_t)e * es, m);
            _mm512_mask_storeu_ps(d + e, m, x);
        }
    }
}

/* f32 -> bf16, round to nearest even (the NaN check keeps NaN a NaN) */
INLINE __m256i to_bf16(__m512 x) {
    __m512i u = _mm512_castps_si512(x);
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF))), 16);
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(r);
}

void tw_kv_store_avx512(void *dst, tw_kv_type t, const float *src, int64_t n) {
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask((int32_t)TW_MIN(16, n - i));
        __m512 x = _mm512_maskz_loadu_ps(m, src + i);
        __m256i y = t == TW_KV_F16 ? _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC) : to_bf16(x);
        _mm256_mask_storeu_epi16(h + i, m, y);
    }
}

/* ---- decode ----------------------------------------------------------------------------------- */

/* r[j] = sum of the 16 lanes of a[j], j < 16: a transposing reduction tree (45 shuffles/adds for
** 16 sums instead of 16 horizontal reductions). */
INLINE __m512 hsum16(const __m512 *a) {
    __m512 x[8], y[4];
    for (int i = 0; i < 8; i++)   /* per 128-bit lane: [a0 02, a1 02, a0 13, a1 13] partial sums */
        x[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    for (int i = 0; i < 4; i++) {   /* per lane: the lane sums of keys 4i .. 4i+3 */
        __m512d p = _mm512_castps_pd(x[2 * i]), q = _mm512_castps_pd(x[2 * i + 1]);
        y[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(p, q)), _mm512_castpd_ps(_mm512_unpackhi_pd(p, q)));
    }
    __m512 z0 = _mm512_add_ps(_mm512_shuffle_f32x4(y[0], y[1], 0x88), _mm512_shuffle_f32x4(y[0], y[1], 0xDD));
    __m512 z1 = _mm512_add_ps(_mm512_shuffle_f32x4(y[2], y[3], 0x88), _mm512_shuffle_f32x4(y[2], y[3], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(z0, z1, 0x88), _mm512_shuffle_f32x4(z0, z1, 0xDD));
}

/* Keys ahead to prefetch: one sub-block (DEC_SB, below) ahead, each line of a (key, head) slice
** fetched while the same slice of the key DEC_PF rows earlier is being used. */
enum { DEC_PF = 64, DEC_SB = 64 };

/* every line of the bytes [p, p + n) */
INLINE void prefetch_span(const char *p, size_t n) {
    for (size_t o = 0; o < n; o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
}

/* Scores of MR rows (one kv head) for 16 keys at k (rows [0, nj) valid): per key, per row, one
** D-long dot in two interleaved accumulators, reduced across lanes for the 16 keys at once. */
INLINE void dec_qk16(tw_kv_type T, int MR, const tw_attn_dec *d, const float *qp, const char *k, int32_t nj,
                     float *s, float *part) {
    const size_t es = T == TW_KV_F32 ? 4 : 2;
    const int32_t D = d->D;
    for (int32_t jj = 0; jj < 16; jj++) {
        __m512 acc0[8], acc1[8];
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) acc0[r] = acc1[r] = _mm512_setzero_ps();
        if (jj < nj) {
            const char *kr = k + (size_t)jj * (size_t)d->ldk * es;
            const char *pf = kr + (size_t)DEC_PF * (size_t)d->ldk * es;   /* the same head's row DEC_PF keys on */
            int32_t e = 0;
            prefetch_span(pf, (size_t)D * es);
            for (; e + 32 <= D; e += 32) {
                __m512 k0 = load_kv(T, kr + (size_t)e * es, 0xFFFF), k1 = load_kv(T, kr + (size_t)(e + 16) * es, 0xFFFF);
#pragma GCC unroll 8
                for (int r = 0; r < MR; r++) {
                    acc0[r] = _mm512_fmadd_ps(k0, _mm512_loadu_ps(qp + (size_t)r * D + e), acc0[r]);
                    acc1[r] = _mm512_fmadd_ps(k1, _mm512_loadu_ps(qp + (size_t)r * D + e + 16), acc1[r]);
                }
            }
            for (; e < D; e += 16) {
                __mmask16 msk = tail_mask(D - e);
                __m512 k0 = load_kv(T, kr + (size_t)e * es, msk);
#pragma GCC unroll 8
                for (int r = 0; r < MR; r++) acc0[r] = _mm512_fmadd_ps(k0, _mm512_maskz_loadu_ps(msk, qp + (size_t)r * D + e), acc0[r]);
            }
        }
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) _mm512_storeu_ps(part + ((size_t)r * 16 + jj) * 16, _mm512_add_ps(acc0[r], acc1[r]));
    }
    for (int r = 0; r < MR; r++) {
        __m512 a[16];
        for (int jj = 0; jj < 16; jj++) a[jj] = _mm512_loadu_ps(part + ((size_t)r * 16 + jj) * 16);
        _mm512_storeu_ps(s + (size_t)r * d->lds, hsum16(a));
    }
}

/* O[MR rows][16 NV columns from d0] += P[rows][0..nk) V[0..nk)[d0..]; masked past D. */
INLINE void dec_pv(tw_kv_type T, int MR, int NV, const tw_attn_dec *d, const float *p, const char *v, float *o,
                   int32_t d0) {
    const size_t es = T == TW_KV_F32 ? 4 : 2;
    __m512 acc[4][8];
    __mmask16 msk[8];
#pragma GCC unroll 8
    for (int c = 0; c < NV; c++) msk[c] = d0 + 16 * c < d->D ? tail_mask(d->D - d0 - 16 * c) : 0;
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int c = 0; c < NV; c++) acc[r][c] = _mm512_maskz_loadu_ps(msk[c], o + (size_t)r * d->ldo + d0 + 16 * c);
    int32_t j0 = d->nk, j1 = 0;   /* keys any of these rows sees */
    for (int r = 0; r < MR; r++)
        if (d->hi[r] > d->lo[r]) j0 = TW_MIN(j0, d->lo[r]), j1 = TW_MAX(j1, d->hi[r]);
    for (int32_t j = j0; j < j1; j++) {
        const char *vr = v + ((size_t)j * (size_t)d->ldv + (size_t)d0) * es;
        if (d0 == 0) prefetch_span(vr + (size_t)DEC_PF * (size_t)d->ldv * es, (size_t)d->D * es);
        __m512 vv[8];
#pragma GCC unroll 8
        for (int c = 0; c < NV; c++) vv[c] = load_kv(T, vr + (size_t)16 * c * es, msk[c]);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512 pb = _mm512_set1_ps(p[(size_t)r * d->lds + j]);
#pragma GCC unroll 8
            for (int c = 0; c < NV; c++) acc[r][c] = _mm512_fmadd_ps(pb, vv[c], acc[r][c]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int c = 0; c < NV; c++) _mm512_mask_storeu_ps(o + (size_t)r * d->ldo + d0 + 16 * c, msk[c], acc[r][c]);
}

/* DEC_SB: keys per sub-block, whose K/V rows of all heads stay in L1/L2 while the heads take turns */

INLINE void decode_t(tw_kv_type T, const tw_attn_dec *d) {
    const size_t es = T == TW_KV_F32 ? 4 : 2;
    const int32_t m = d->m, D = d->D, nkv = d->n_kv;
    float part[8 * 16 * 16];
    /* pass 1: raw scores, 16 keys at a time, every head of them while they are in cache */
    for (int32_t j = 0; j < d->nk; j += 16)   /* 16 keys, every head: contiguous rows */
        for (int32_t g = 0; g < nkv; g++) {
                const char *k = (const char *)d->k + ((size_t)j * (size_t)d->ldk + (size_t)g * D) * es;
                const float *qp = d->qp + (size_t)g * m * D;
                float *s = d->s + (size_t)g * m * d->lds + j;
                int32_t nj = TW_MIN(16, d->nk - j);
                switch (m) {   /* rows at a time: up to 4 (8 accumulators of 2 x 4) */
                case 1: dec_qk16(T, 1, d, qp, k, nj, s, part); break;
                case 2: dec_qk16(T, 2, d, qp, k, nj, s, part); break;
                case 3: dec_qk16(T, 3, d, qp, k, nj, s, part); break;
                case 4: dec_qk16(T, 4, d, qp, k, nj, s, part); break;
                default:
                    dec_qk16(T, 4, d, qp, k, nj, s, part);
                    switch (m - 4) {
                    case 1: dec_qk16(T, 1, d, qp + 4 * (size_t)D, k, nj, s + 4 * (size_t)d->lds, part); break;
                    case 2: dec_qk16(T, 2, d, qp + 4 * (size_t)D, k, nj, s + 4 * (size_t)d->lds, part); break;
                    case 3: dec_qk16(T, 3, d, qp + 4 * (size_t)D, k, nj, s + 4 * (size_t)d->lds, part); break;
                    default: dec_qk16(T, 4, d, qp + 4 * (size_t)D, k, nj, s + 4 * (size_t)d->lds, part); break;
                    }
                }
            }
    /* softmax of each (head, row) over the range, as the block kernel's (scale, softcap, mask) */
    int32_t nv = (d->nk + 15) / 16;
    const __m512 ninf = _mm512_set1_ps(-INFINITY), scale = _mm512_set1_ps(d->scale), cap = _mm512_set1_ps(d->softcap);
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int32_t g = 0; g < nkv; g++)
        for (int32_t i = 0; i < m; i++) {
            float *s = d->s + ((size_t)g * m + i) * d->lds;
            __m512i vlo = _mm512_set1_epi32(d->lo[i]), vhi = _mm512_set1_epi32(d->hi[i]);
            __m512 vmax = ninf;
            for (int32_t c = 0; c < nv; c++) {
                __m512 x = _mm512_mul_ps(_mm512_loadu_ps(s + 16 * c), scale);
                if (d->softcap > 0) x = _mm512_mul_ps(cap, tanh512(_mm512_div_ps(x, cap)));
                __m512i col = _mm512_add_epi32(iota, _mm512_set1_epi32(16 * c));
                __mmask16 vis = _mm512_cmpge_epi32_mask(col, vlo) & _mm512_cmplt_epi32_mask(col, vhi);
                x = _mm512_mask_blend_ps(vis, ninf, x);
                _mm512_storeu_ps(s + 16 * c, x);
                vmax = _mm512_max_ps(vmax, x);
            }
            float mx = _mm512_reduce_max_ps(vmax);
            __m512 vm = _mm512_set1_ps(mx), vsum = _mm512_setzero_ps();
            for (int32_t c = 0; c < nv; c++) {
                __m512 p = mx == -INFINITY ? _mm512_setzero_ps() : exp512(_mm512_sub_ps(_mm512_loadu_ps(s + 16 * c), vm));
                _mm512_storeu_ps(s + 16 * c, p);
                vsum = _mm512_add_ps(vsum, p);
            }
            d->mx[g * m + i] = mx;
            d->l[g * m + i] = _mm512_reduce_add_ps(vsum);
            memset(d->o + ((size_t)g * m + i) * d->ldo, 0, sizeof(float) * (size_t)d->ldo);
        }
    /* pass 2: O += P V, the same sub-blocks */
    for (int32_t j0 = 0; j0 < d->nk; j0 += DEC_SB) {
        int32_t nb = TW_MIN(DEC_SB, d->nk - j0);
        tw_attn_dec sub = *d;   /* the sub-block's view: keys j0 .. j0+nb-1 */
        int32_t lo[8], hi[8];
        for (int32_t i = 0; i < m; i++)
            lo[i] = TW_MIN(TW_MAX(d->lo[i] - j0, 0), nb), hi[i] = TW_MAX(TW_MIN(d->hi[i] - j0, nb), lo[i]);
        sub.lo = lo, sub.hi = hi, sub.nk = nb;
        for (int32_t g = 0; g < nkv; g++) {
            const char *v = (const char *)d->v + ((size_t)j0 * (size_t)d->ldv + (size_t)g * D) * es;
            for (int32_t i = 0; i < m; i += 2) {
                const float *p = d->s + ((size_t)g * m + i) * d->lds + j0;
                float *o = d->o + ((size_t)g * m + i) * d->ldo;
                sub.lo = lo + i, sub.hi = hi + i, sub.m = m - i;
                for (int32_t d0 = 0; d0 < D; d0 += 128) {   /* 8 vectors x 2 rows = 16 accumulators */
                    if (m - i >= 2) dec_pv(T, 2, 8, &sub, p, v, o, d0);
                    else dec_pv(T, 1, 8, &sub, p, v, o, d0);
                }
            }
        }
    }
}

static void decode_f32(const tw_attn_dec *d) { decode_t(TW_KV_F32, d); }
static void decode_f16(const tw_attn_dec *d) { decode_t(TW_KV_F16, d); }
static void decode_bf16(const tw_attn_dec *d) { decode_t(TW_KV_BF16, d); }

void tw_attn_decode_avx512(const tw_attn_dec *d) {
    switch (d->type) {
    case TW_KV_F16: decode_f16(d); break;
    case TW_KV_BF16: decode_bf16(d); break;
    default: decode_f32(d); break;
    }
}
