/*
** attn_avx2.c — the attention block (tw_attn_block, attn.h) for AVX2/FMA machines: the same
** three steps as attn_avx512.c with 8-lane vectors and 16 registers, so smaller tiles:
**   S = Qp K^T   keys packed transposed (8x8 register transposes), tile 4 rows x 24 keys;
**   softmax      scale, softcap, mask, online max/sum, the same vectorised exp and tanh (2^n is
**                built in the exponent bits, as AVX2 has no vscalefps);
**   O += P V     tile 4 rows x 24 columns of D, V rows read in place, the D tail masked.
** Every score is one FMA chain over d = 0..D-1, as on the AVX-512 path and for the same reason
** (a query's result does not depend on the other rows of its block).
*/
#include "attn.h"

#include <immintrin.h>
#include <math.h>

#define INLINE static inline __attribute__((always_inline))

/* ---- vector math (see attn_avx512.c for the method and the error bounds) ------------------- */

static const float LOG2E = 1.44269504088896341f;
static const float LN2_HI = 0.693359375f;
static const float LN2_LO = -2.12194440e-4f;

INLINE __m256 reduce_ln2(__m256 x, __m256 *r) {
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 t = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    *r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), t);
    return n;
}

/* 2^n for integral n in [-126, 127] */
INLINE __m256 pow2i(__m256 n) {
    __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}

/* e^x for x in [-87.3, 88]; 0 below */
INLINE __m256 exp256(__m256 x) {
    __m256 ok = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_GE_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.0f));
    __m256 r, n = reduce_ln2(x, &r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* x in [-87.3, 88] gives n in [-126, 127]: 2^n is a normal float */
    return _mm256_and_ps(ok, _mm256_mul_ps(p, pow2i(n)));
}

/* e^x - 1 for x in [-18, 0] */
INLINE __m256 expm1_neg256(__m256 x) {
    __m256 r, n = reduce_ln2(x, &r);
    __m256 p = _mm256_set1_ps(1.0f / 40320);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 5040));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    __m256 q = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r);
    __m256 two_n = pow2i(n);
    return _mm256_add_ps(_mm256_mul_ps(two_n, q), _mm256_sub_ps(two_n, _mm256_set1_ps(1.0f)));
}

INLINE __m256 tanh256(__m256 y) {
    __m256 sign = _mm256_and_ps(y, _mm256_set1_ps(-0.0f));
    __m256 a = _mm256_min_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), y), _mm256_set1_ps(9.0f));
    __m256 e = expm1_neg256(_mm256_mul_ps(a, _mm256_set1_ps(-2.0f)));
    __m256 t = _mm256_div_ps(_mm256_sub_ps(_mm256_setzero_ps(), e), _mm256_add_ps(e, _mm256_set1_ps(2.0f)));
    return _mm256_or_ps(t, sign);
}

INLINE float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* lanes < n set (n in 1..8) */
INLINE __m256i tail_mask(int32_t n) {
    __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), iota);
}

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

enum { MR = 4, NV_MAX = 3 };

INLINE void qk_tile(int R, int NV, const float *qp, int32_t D, const float *kt, int32_t lds, float *s) {
    __m256 acc[MR][NV_MAX];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NV; c++) acc[r][c] = _mm256_setzero_ps();
    for (int32_t d = 0; d < D; d++) {
        __m256 kv[NV_MAX];
#pragma GCC unroll 4
        for (int c = 0; c < NV; c++) kv[c] = _mm256_loadu_ps(kt + (size_t)d * lds + 8 * c);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m256 qb = _mm256_broadcast_ss(qp + (size_t)r * D + d);
#pragma GCC unroll 4
            for (int c = 0; c < NV; c++) acc[r][c] = _mm256_fmadd_ps(qb, kv[c], acc[r][c]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NV; c++) _mm256_storeu_ps(s + (size_t)r * lds + 8 * c, acc[r][c]);
}

#define QK_ROWS(NV)                                                                              \
    static void qk_rows_##NV(const tw_attn_block *b, int32_t c0) {                               \
        int32_t i = 0, c1 = c0 + 8 * NV;                                                         \
        for (; i + MR <= b->m; i += MR)                                                          \
            if (live(b, i, MR, c0, c1))                                                          \
                qk_tile(MR, NV, b->qp + (size_t)i * b->D, b->D, b->kt + c0, b->lds, b->s + (size_t)i * b->lds + c0);\
        if (i == b->m || !live(b, i, b->m - i, c0, c1)) return;                                  \
        const float *q = b->qp + (size_t)i * b->D;                                               \
        float *s = b->s + (size_t)i * b->lds + c0;                                               \
        switch (b->m - i) {                                                                      \
        case 3: qk_tile(3, NV, q, b->D, b->kt + c0, b->lds, s); break;                           \
        case 2: qk_tile(2, NV, q, b->D, b->kt + c0, b->lds, s); break;                           \
        case 1: qk_tile(1, NV, q, b->D, b->kt + c0, b->lds, s); break;                           \
        default: break;                                                                          \
        }                                                                                        \
    }
QK_ROWS(1)
QK_ROWS(2)
QK_ROWS(3)

/* kt[d][j] = k[j][d], zero past nk up to a multiple of 8 keys; 8x8 blocks through registers */
static void pack_kt(const tw_attn_block *b) {
    int32_t D = b->D, nk = b->nk, nkp = (nk + 7) / 8 * 8, lds = b->lds;
    for (int32_t j0 = 0; j0 < nkp; j0 += 8) {
        int32_t nj = TW_MIN(8, nk - j0);
        for (int32_t d0 = 0; d0 < D; d0 += 8) {
            __m256i dm = tail_mask(D - d0);
            __m256 r[8], t[8];
            for (int32_t jj = 0; jj < 8; jj++)
                r[jj] = jj < nj ? _mm256_maskload_ps(b->k + (size_t)(j0 + jj) * b->ldk + d0, dm) : _mm256_setzero_ps();
            for (int32_t i = 0; i < 8; i += 2) {
                t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
                t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
            }
            for (int32_t i = 0; i < 8; i += 4) {   /* r[i + c]: column 4L + c of rows i..i+3, lane L */
                __m256d a0 = _mm256_castps_pd(t[i]), a1 = _mm256_castps_pd(t[i + 1]);
                __m256d a2 = _mm256_castps_pd(t[i + 2]), a3 = _mm256_castps_pd(t[i + 3]);
                r[i] = _mm256_castpd_ps(_mm256_unpacklo_pd(a0, a2));
                r[i + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a0, a2));
                r[i + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(a1, a3));
                r[i + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(a1, a3));
            }
            for (int32_t c = 0; c < 4; c++) {
                t[c] = _mm256_permute2f128_ps(r[c], r[c + 4], 0x20);       /* column c     */
                t[c + 4] = _mm256_permute2f128_ps(r[c], r[c + 4], 0x31);   /* column 4 + c */
            }
            for (int32_t x = 0; x < 8 && d0 + x < D; x++) _mm256_storeu_ps(b->kt + (size_t)(d0 + x) * lds + j0, t[x]);
        }
    }
}

static void qk(const tw_attn_block *b) {
    pack_kt(b);
    int32_t nv = (b->nk + 7) / 8, c = 0;
    for (; c + 3 <= nv; c += 3) qk_rows_3(b, 8 * c);
    switch (nv - c) {
    case 2: qk_rows_2(b, 8 * c); break;
    case 1: qk_rows_1(b, 8 * c); break;
    default: break;
    }
}

/* ---- online softmax ------------------------------------------------------------------------- */

static void softmax_block(const tw_attn_block *b) {
    int32_t nv = (b->nk + 7) / 8, Dp = b->ldo;
    const __m256 ninf = _mm256_set1_ps(-INFINITY), scale = _mm256_set1_ps(b->scale), cap = _mm256_set1_ps(b->softcap);
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int32_t i = 0; i < b->m; i++) {
        float *s = b->s + (size_t)i * b->lds;
        int32_t lo = b->lo ? b->lo[i] : 0, hi = b->hi ? b->hi[i] : b->nk;
        __m256i vlo = _mm256_set1_epi32(lo - 1), vhi = _mm256_set1_epi32(hi);
        __m256 vmax = ninf;
        for (int32_t c = 0; c < nv; c++) {
            __m256 x = _mm256_mul_ps(_mm256_loadu_ps(s + 8 * c), scale);
            if (b->softcap > 0) x = _mm256_mul_ps(cap, tanh256(_mm256_div_ps(x, cap)));
            __m256i col = _mm256_add_epi32(iota, _mm256_set1_epi32(8 * c));
            __m256i vis = _mm256_and_si256(_mm256_cmpgt_epi32(col, vlo), _mm256_cmpgt_epi32(vhi, col));
            x = _mm256_blendv_ps(ninf, x, _mm256_castsi256_ps(vis));
            _mm256_storeu_ps(s + 8 * c, x);
            vmax = _mm256_max_ps(vmax, x);
        }
        float mb = hmax(vmax), m_old = b->mx[i], m_new = m_old > mb ? m_old : mb;
        if (m_new == -INFINITY) {
            for (int32_t c = 0; c < nv; c++) _mm256_storeu_ps(s + 8 * c, _mm256_setzero_ps());
            continue;
        }
        __m256 vm = _mm256_set1_ps(m_new), vsum = _mm256_setzero_ps();
        for (int32_t c = 0; c < nv; c++) {
            __m256 p = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + 8 * c), vm));
            _mm256_storeu_ps(s + 8 * c, p);
            vsum = _mm256_add_ps(vsum, p);
        }
        float sum = hsum(vsum);
        if (m_old == m_new) {
            b->l[i] += sum;
        } else {
            float alpha = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
            b->l[i] = b->l[i] * alpha + sum;
            float *o = b->o + (size_t)i * Dp;
            __m256 va = _mm256_set1_ps(alpha);
            for (int32_t d = 0; d < Dp; d += 8) _mm256_storeu_ps(o + d, _mm256_mul_ps(_mm256_loadu_ps(o + d), va));
        }
        b->mx[i] = m_new;
    }
}

/* ---- O += P V ------------------------------------------------------------------------------- */

INLINE void pv_tile(int R, int NV, const tw_attn_block *b, int32_t i0, int32_t d0, __m256i last) {
    __m256 acc[MR][NV_MAX];
    float *o = b->o + (size_t)i0 * b->ldo + d0;
    const float *p = b->s + (size_t)i0 * b->lds;
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NV; c++) acc[r][c] = _mm256_loadu_ps(o + (size_t)r * b->ldo + 8 * c);
    int32_t j0, j1;
    rows_span(b, i0, R, &j0, &j1);
    const float *v = b->v + (size_t)j0 * b->ldv + d0;
    for (int32_t j = j0; j < j1; j++, v += b->ldv) {
        __m256 vv[NV_MAX];
#pragma GCC unroll 4
        for (int c = 0; c < NV; c++) vv[c] = c == NV - 1 ? _mm256_maskload_ps(v + 8 * c, last) : _mm256_loadu_ps(v + 8 * c);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m256 pb = _mm256_broadcast_ss(p + (size_t)r * b->lds + j);
#pragma GCC unroll 4
            for (int c = 0; c < NV; c++) acc[r][c] = _mm256_fmadd_ps(pb, vv[c], acc[r][c]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NV; c++) _mm256_storeu_ps(o + (size_t)r * b->ldo + 8 * c, acc[r][c]);
}

#define PV_COLS(NV)                                                                              \
    static void pv_cols_##NV(const tw_attn_block *b, int32_t d0, __m256i last) {                 \
        int32_t i = 0;                                                                           \
        for (; i + MR <= b->m; i += MR) pv_tile(MR, NV, b, i, d0, last);                         \
        switch (b->m - i) {                                                                      \
        case 3: pv_tile(3, NV, b, i, d0, last); break;                                           \
        case 2: pv_tile(2, NV, b, i, d0, last); break;                                           \
        case 1: pv_tile(1, NV, b, i, d0, last); break;                                           \
        default: break;                                                                          \
        }                                                                                        \
    }
PV_COLS(1)
PV_COLS(2)
PV_COLS(3)

static void pv(const tw_attn_block *b) {
    int32_t D = b->D, nvd = (D + 7) / 8, c = 0;
    __m256i full = _mm256_set1_epi32(-1), last = tail_mask(D - 8 * (nvd - 1));
    for (; c + 3 < nvd; c += 3) pv_cols_3(b, 8 * c, full);
    switch (nvd - c) {
    case 3: pv_cols_3(b, 8 * c, last); break;
    case 2: pv_cols_2(b, 8 * c, last); break;
    case 1: pv_cols_1(b, 8 * c, last); break;
    default: break;
    }
}

void tw_attn_block_avx2(const tw_attn_block *b) {
    qk(b);
    softmax_block(b);
    pv(b);
}

void tw_attn_vmath_avx2(float *y, const float *x, int64_t n, int fn) {
    float in[8] = { 0 }, out[8];
    for (int64_t i = 0; i < n; i += 8) {
        int64_t k = TW_MIN(8, n - i);
        memcpy(in, x + i, sizeof(float) * (size_t)k);
        __m256 v = _mm256_loadu_ps(in);
        _mm256_storeu_ps(out, fn == 0 ? exp256(v) : tanh256(v));
        memcpy(y + i, out, sizeof(float) * (size_t)k);
    }
}

/* ---- 16-bit keys and values ----------------------------------------------------------------- */

/* 8 elements of type t at p widened to f32 (t is a constant where it matters) */
INLINE __m256 load8_kv(tw_kv_type t, const void *p) {
    if (t == TW_KV_F32) return _mm256_loadu_ps(p);
    __m128i h = _mm_loadu_si128(p);
    if (t == TW_KV_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

void tw_attn_widen_avx2(float *dst, int32_t ldd, const void *src, int64_t ld, tw_kv_type t, int32_t rows, int32_t D) {
    size_t es = t == TW_KV_F32 ? 4 : 2;
    for (int32_t r = 0; r < rows; r++) {
        const char *s = (const char *)src + (size_t)r * (size_t)ld * es;
        float *d = dst + (size_t)r * ldd;
        int32_t e = 0;
        for (; e + 8 <= D; e += 8)
            _mm256_storeu_ps(d + e, t == TW_KV_F16 ? load8_kv(TW_KV_F16, s + (size_t)e * es)
                                    : t == TW_KV_BF16 ? load8_kv(TW_KV_BF16, s + (size_t)e * es) : load8_kv(TW_KV_F32, s + (size_t)e * es));
        if (e < D) tw_kv_widen_inl(d + e, s + (size_t)e * es, t, D - e);
    }
}

void tw_kv_store_avx2(void *dst, tw_kv_type t, const float *src, int64_t n) {
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i += 8) {
        float in[8] = { 0 };
        int64_t k = TW_MIN(8, n - i);
        const float *x = src + i;
        if (k < 8) memcpy(in, x, sizeof(float) * (size_t)k), x = in;
        __m256 v = _mm256_loadu_ps(x);
        __m128i y;
        if (t == TW_KV_F16) {
            y = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        } else {   /* bf16, round to nearest even; NaN stays NaN */
            __m256i u = _mm256_castps_si256(v);
            __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
            __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7FFF))), 16);
            __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
            r = _mm256_blendv_epi8(r, _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40)), nan);
            /* 32 -> 16 bits: the values fit in 16 bits unsigned */
            y = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        }
        if (k == 8) _mm_storeu_si128((__m128i *)(h + i), y);
        else {
            uint16_t out[8];
            _mm_storeu_si128((__m128i *)out, y);
            memcpy(h + i, out, sizeof(uint16_t) * (size_t)k);
        }
    }
}

/* ---- decode ----------------------------------------------------------------------------------- */

/* The decode kernel (tw_attn_dec, attn.h) with the AVX-512 one's structure (attn_avx512.c): scores
** key by key with K rows read in place, the range's softmax, then O += P V by sub-blocks of keys.
** Each score is the sum of two interleaved FMA chains over d, reduced across lanes; only the
** order of the additions differs from the plain C kernel. Before it, the AVX2 path ran decode
** through the block kernel, which widens and transposes every key first: 4x slower at 4,096
** keys (tests/tool_attnbench, d4096). */

enum { DEC2_PF = 64, DEC2_SB = 64 };   /* keys ahead to prefetch; keys per P V sub-block */

/* r[j] = sum of the 8 lanes of a[j] */
INLINE __m256 hsum8(const __m256 *a) {
    __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);   /* [0..3 low half, 0..3 high] */
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* 8 elements of a row from column e, the last n (< 8) of them zero-extended */
INLINE __m256 load8_kv_tail(tw_kv_type t, const char *p, int32_t n) {
    float f[8] = { 0 };
    tw_kv_widen_inl(f, p, t, n);
    return _mm256_loadu_ps(f);
}

/* Scores of RW (<= 4) rows of one kv head for the 8 keys at k (keys [0, nj) valid). */
INLINE void dec2_qk8(tw_kv_type T, int RW, const tw_attn_dec *d, const float *qp, const char *k, int32_t nj, float *s) {
    const size_t es = T == TW_KV_F32 ? 4 : 2;
    const int32_t D = d->D;
    __m256 part[4][8];
    for (int32_t jj = 0; jj < 8; jj++) {
        __m256 acc0[4], acc1[4];
#pragma GCC unroll 4
        for (int r = 0; r < RW; r++) acc0[r] = acc1[r] = _mm256_setzero_ps();
        if (jj < nj) {
            const char *kr = k + (size_t)jj * (size_t)d->ldk * es;
            const char *pf = kr + (size_t)DEC2_PF * (size_t)d->ldk * es;
            for (size_t o = 0; o < (size_t)D * es; o += 64) _mm_prefetch(pf + o, _MM_HINT_T0);
            int32_t e = 0;
            for (; e + 16 <= D; e += 16) {
                __m256 k0 = load8_kv(T, kr + (size_t)e * es), k1 = load8_kv(T, kr + (size_t)(e + 8) * es);
#pragma GCC unroll 4
                for (int r = 0; r < RW; r++) {
                    acc0[r] = _mm256_fmadd_ps(k0, _mm256_loadu_ps(qp + (size_t)r * D + e), acc0[r]);
                    acc1[r] = _mm256_fmadd_ps(k1, _mm256_loadu_ps(qp + (size_t)r * D + e + 8), acc1[r]);
                }
            }
            for (; e < D; e += 8) {
                int32_t n = TW_MIN(8, D - e);
                __m256 k0 = n == 8 ? load8_kv(T, kr + (size_t)e * es) : load8_kv_tail(T, kr + (size_t)e * es, n);
#pragma GCC unroll 4
                for (int r = 0; r < RW; r++)
                    acc0[r] = _mm256_fmadd_ps(k0, _mm256_maskload_ps(qp + (size_t)r * D + e, tail_mask(n)), acc0[r]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < RW; r++) part[r][jj] = _mm256_add_ps(acc0[r], acc1[r]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < RW; r++) _mm256_storeu_ps(s + (size_t)r * d->lds, hsum8(part[r]));
}

/* O[RW rows][8 NV columns from d0] += P[rows][keys] V[keys][d0..]; columns past D masked. */
INLINE void dec2_pv(tw_kv_type T, int RW, int NV, const tw_attn_dec *d, const float *p, const char *v, float *o,
                    int32_t d0) {
    const size_t es = T == TW_KV_F32 ? 4 : 2;
    __m256 acc[2][4];
    int32_t n[4];
#pragma GCC unroll 4
    for (int c = 0; c < NV; c++) n[c] = TW_MAX(0, TW_MIN(8, d->D - d0 - 8 * c));
#pragma GCC unroll 2
    for (int r = 0; r < RW; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NV; c++)
            acc[r][c] = n[c] ? _mm256_maskload_ps(o + (size_t)r * d->ldo + d0 + 8 * c, tail_mask(n[c])) : _mm256_setzero_ps();
    int32_t j0 = d->nk, j1 = 0;   /* keys any of these rows sees */
    for (int r = 0; r < RW; r++)
        if (d->hi[r] > d->lo[r]) j0 = TW_MIN(j0, d->lo[r]), j1 = TW_MAX(j1, d->hi[r]);
    for (int32_t j = j0; j < j1; j++) {
        const char *vr = v + ((size_t)j * (size_t)d->ldv + (size_t)d0) * es;
        if (d0 == 0)
            for (size_t o2 = 0; o2 < (size_t)d->D * es; o2 += 64) _mm_prefetch(vr + (size_t)DEC2_PF * (size_t)d->ldv * es + o2, _MM_HINT_T0);
        __m256 vv[4];
#pragma GCC unroll 4
        for (int c = 0; c < NV; c++)
            vv[c] = n[c] == 8 ? load8_kv(T, vr + (size_t)8 * c * es)
                  : n[c] ? load8_kv_tail(T, vr + (size_t)8 * c * es, n[c]) : _mm256_setzero_ps();
#pragma GCC unroll 2
        for (int r = 0; r < RW; r++) {
            __m256 pb = _mm256_broadcast_ss(p + (size_t)r * d->lds + j);
#pragma GCC unroll 4
            for (int c = 0; c < NV; c++) acc[r][c] = _mm256_fmadd_ps(pb, vv[c], acc[r][c]);
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < RW; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NV; c++)
            if (n[c]) _mm256_maskstore_ps(o + (size_t)r * d->ldo + d0 + 8 * c, tail_mask(n[c]), acc[r][c]);
}

INLINE void decode2_t(tw_kv_type T, const tw_attn_dec *d) {
    const size_t es = T == TW_KV_F32 ? 4 : 2;
    const int32_t m = d->m, D = d->D, nkv = d->n_kv;
    /* pass 1: raw scores, 8 keys at a time, every head of them while they are in cache */
    for (int32_t j = 0; j < d->nk; j += 8)
        for (int32_t g = 0; g < nkv; g++) {
            const char *k = (const char *)d->k + ((size_t)j * (size_t)d->ldk + (size_t)g * D) * es;
            int32_t nj = TW_MIN(8, d->nk - j);
            for (int32_t i = 0; i < m; i += 4) {   /* rows 4 at a time: 8 accumulators */
                const float *qp = d->qp + ((size_t)g * m + i) * D;
                float *s = d->s + ((size_t)g * m + i) * d->lds + j;
                switch (TW_MIN(4, m - i)) {
                case 1: dec2_qk8(T, 1, d, qp, k, nj, s); break;
                case 2: dec2_qk8(T, 2, d, qp, k, nj, s); break;
                case 3: dec2_qk8(T, 3, d, qp, k, nj, s); break;
                default: dec2_qk8(T, 4, d, qp, k, nj, s); break;
                }
            }
        }
    /* softmax of each (head, row) over the range: scale, softcap, visible columns [lo, hi) */
    int32_t nv = (d->nk + 7) / 8;
    const __m256 ninf = _mm256_set1_ps(-INFINITY), scale = _mm256_set1_ps(d->scale), cap = _mm256_set1_ps(d->softcap);
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int32_t g = 0; g < nkv; g++)
        for (int32_t i = 0; i < m; i++) {
            float *s = d->s + ((size_t)g * m + i) * d->lds;
            __m256i vlo = _mm256_set1_epi32(d->lo[i] - 1), vhi = _mm256_set1_epi32(d->hi[i]);
            __m256 vmax = ninf;
            for (int32_t c = 0; c < nv; c++) {
                __m256 x = _mm256_mul_ps(_mm256_loadu_ps(s + 8 * c), scale);
                if (d->softcap > 0) x = _mm256_mul_ps(cap, tanh256(_mm256_div_ps(x, cap)));
                __m256i col = _mm256_add_epi32(iota, _mm256_set1_epi32(8 * c));
                __m256i vis = _mm256_and_si256(_mm256_cmpgt_epi32(col, vlo), _mm256_cmpgt_epi32(vhi, col));
                x = _mm256_blendv_ps(ninf, x, _mm256_castsi256_ps(vis));
                _mm256_storeu_ps(s + 8 * c, x);
                vmax = _mm256_max_ps(vmax, x);
            }
            float mx = hmax(vmax);
            __m256 vm = _mm256_set1_ps(mx), vsum = _mm256_setzero_ps();
            for (int32_t c = 0; c < nv; c++) {
                __m256 p = mx == -INFINITY ? _mm256_setzero_ps() : exp256(_mm256_sub_ps(_mm256_loadu_ps(s + 8 * c), vm));
                _mm256_storeu_ps(s + 8 * c, p);
                vsum = _mm256_add_ps(vsum, p);
            }
            d->mx[g * m + i] = mx;
            d->l[g * m + i] = hsum(vsum);
            memset(d->o + ((size_t)g * m + i) * d->ldo, 0, sizeof(float) * (size_t)d->ldo);
        }
    /* pass 2: O += P V by sub-blocks of keys, whose V rows of every head stay in cache */
    for (int32_t j0 = 0; j0 < d->nk; j0 += DEC2_SB) {
        int32_t nb = TW_MIN(DEC2_SB, d->nk - j0);
        tw_attn_dec sub = *d;
        int32_t lo[8], hi[8];
        for (int32_t i = 0; i < m; i++)
            lo[i] = TW_MIN(TW_MAX(d->lo[i] - j0, 0), nb), hi[i] = TW_MAX(TW_MIN(d->hi[i] - j0, nb), lo[i]);
        sub.nk = nb;
        for (int32_t g = 0; g < nkv; g++) {
            const char *v = (const char *)d->v + ((size_t)j0 * (size_t)d->ldv + (size_t)g * D) * es;
            for (int32_t i = 0; i < m; i += 2) {
                const float *p = d->s + ((size_t)g * m + i) * d->lds + j0;
                float *o = d->o + ((size_t)g * m + i) * d->ldo;
                sub.lo = lo + i, sub.hi = hi + i, sub.m = m - i;
                for (int32_t d0 = 0; d0 < D; d0 += 32) {   /* 4 vectors x 2 rows = 8 accumulators */
                    if (m - i >= 2) dec2_pv(T, 2, 4, &sub, p, v, o, d0);
                    else dec2_pv(T, 1, 4, &sub, p, v, o, d0);
                }
            }
        }
    }
}

static void decode2_f32(const tw_attn_dec *d) { decode2_t(TW_KV_F32, d); }
static void decode2_f16(const tw_attn_dec *d) { decode2_t(TW_KV_F16, d); }
static void decode2_bf16(const tw_attn_dec *d) { decode2_t(TW_KV_BF16, d); }

void tw_attn_decode_avx2(const tw_attn_dec *d) {
    switch (d->type) {
    case TW_KV_F16: decode2_f16(d); break;
    case TW_KV_BF16: decode2_bf16(d); break;
    default: decode2_f32(d); break;
    }
}
