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
