/*
** gemm_avx512.c — the AVX-512 matrix-matrix product for many tokens (prefill, vision tower):
**     y[T,N] = x[T,K] . W[N,K]^T (+ bias)
** compiled with the AVX512_FLAGS of the Makefile; only called when CPUID says the CPU has them
** (and, for the bf16-dot variant, avx512bf16 too).
**
** The work unit is a register tile of 8 tokens x 48 output rows (3 zmm of 16 rows each): 24
** accumulators, 3 weight vectors, one broadcast x value. Per step along K it does 3 loads of
** weights, 8 broadcasts of x and 24 FMAs, and it never reduces across lanes: lane j of an
** accumulator is output row j, so a tile's results are stored as they are.
**
** For that the weights must be read "16 rows side by side": W is packed, per task, into panels of
** 48 rows in exactly the microkernel's order, [k][48] — for the f32-FMA path widened to f32 at
** packing time (so the microkernel has nothing but loads, broadcasts and FMAs); with fewer than 64
** tokens, or for the bf16-dot path, as bf16 pairs [k/2][48][2] (half the packing work; the FMA
** kernel widens them in registers; vdpbf16ps multiplies a pair of bf16 x by a pair of bf16 w per
** lane). Packing transposes 16 x 16 blocks in registers; its cost is shared by every token of the
** task (about 4 % of a vision matmul, docs/kernels.md). The packed copy lives in a small
** per-thread buffer (NC rows x KC columns) that stays in L2: no second copy of the model's weights
** — unless model code packed the weight once (tw_kernels_pack_weight, tw_gemm_pack_avx512 below),
** then the tasks read that copy in place.
**
** Every output is one FMA chain over k in order, whatever T, tile, task or thread: results for a
** token do not depend on how many tokens share the call.
**
** Loops of one task (a group of NC rows x a block of TB tokens):
**     for each K chunk of KC:         pack NC x KC weights (read from memory or L3 once per task)
**       for each 48-row panel:         its KC x 48 weights stream from L1/L2 ...
**         for each 8-token tile:       ... with the x tiles of the block (TB x KC f32, in L2)
**           microkernel over KC        y tile (+)= x tile . panel
*/
#include "kernels.h"
#include "transpose_avx512.h"

#include <immintrin.h>
#include <pthread.h>

#define INLINE static inline __attribute__((always_inline))

enum {
    MR = 8,     /* tokens per register tile            */
    NRV = 3,    /* zmm of 16 rows per register tile     */
    NP = 48,    /* rows per panel: NRV * 16             */
    PAIRS_BELOW_T = 64,   /* bf16 weights, fewer tokens: f32 FMA from bf16-pair panels */
    DIRECT_BELOW_T = 24,  /* bf16 weights, fewer tokens still: no panels, see direct_rows */
};

/* ---- packing ------------------------------------------------------------------------------------ */

/* 16 weights of row `w` from column k on, widened to f32; lanes past `m` are zero */
INLINE __m512 load16_f32(tw_dtype dt, const void *w, int64_t k, __mmask16 m) {
    if (dt == TW_DT_F32) return _mm512_maskz_loadu_ps(m, (const float *)w + k);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + k);
    if (dt == TW_DT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Packs rows [0, nn) x columns [k0, k0 + nk) of w (row stride ldw elements, type dt) as f32
** panels: panel p (rows 48p..48p+47) is [nk16][48] at dst + p * nk16 * 48, nk16 = nk rounded up
** to 16. Rows past nn and columns past nk are zero. */
INLINE void pack_f32(tw_dtype dt, float *dst, const void *w, int64_t ldw, int64_t nn, int64_t k0, int64_t nk) {
    const size_t es = tw_dtype_size(dt);
    const int64_t nk16 = (nk + 15) & ~(int64_t)15, panels = (nn + NP - 1) / NP;
    for (int64_t p = 0; p < panels; p++)
        for (int g = 0; g < NRV; g++) {
            int64_t r0 = p * NP + g * 16;
            float *out = dst + p * nk16 * NP + g * 16;
            const uint8_t *row0 = (const uint8_t *)w + (size_t)r0 * (size_t)ldw * es;
            const size_t rs = (size_t)ldw * es;
            for (int64_t k = 0; k < nk16; k += 16) {
                __mmask16 m = nk - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (nk - k)) - 1);
                __m512 r[16];
                /* the next 16 rows at this column: each row is only nk columns here, too short
                ** for the hardware prefetcher to pick up, so the loads would wait on memory */
                if (r0 + 16 < nn)
#pragma GCC unroll 16
                    for (int i = 0; i < 16; i++) _mm_prefetch((const char *)(row0 + (16 + i) * rs + (size_t)(k0 + k) * es), _MM_HINT_T0);
#pragma GCC unroll 16
                for (int i = 0; i < 16; i++)
                    r[i] = r0 + i < nn ? load16_f32(dt, row0 + i * rs, k0 + k, m) : _mm512_setzero_ps();
                tw_transpose16(r);
#pragma GCC unroll 16
                for (int i = 0; i < 16; i++) _mm512_store_ps(out + (k + i) * NP, r[i]);
            }
        }
}

/* The same for bf16 weights kept as bf16 pairs: panel p is [nkp32 / 2][48] u32 (a u32 holds
** columns 2q and 2q + 1 of a row), nkp32 = nk rounded up to 32. */
static void pack_bf16_pairs(uint32_t *dst, const uint16_t *w, int64_t ldw, int64_t nn, int64_t k0, int64_t nk) {
    const int64_t nk32 = (nk + 31) & ~(int64_t)31, panels = (nn + NP - 1) / NP;
    for (int64_t p = 0; p < panels; p++)
        for (int g = 0; g < NRV; g++) {
            int64_t r0 = p * NP + g * 16;
            uint32_t *out = dst + p * (nk32 / 2) * NP + g * 16;
            for (int64_t k = 0; k < nk32; k += 32) {
                __mmask32 m = nk - k >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (nk - k)) - 1);
                __m512 r[16];
                if (r0 + 16 < nn)
#pragma GCC unroll 16
                    for (int i = 0; i < 16; i++) _mm_prefetch((const char *)(w + (size_t)(r0 + 16 + i) * (size_t)ldw + k0 + k), _MM_HINT_T0);
#pragma GCC unroll 16
                for (int i = 0; i < 16; i++)
                    r[i] = r0 + i < nn ? _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(m, w + (size_t)(r0 + i) * (size_t)ldw + k0 + k))
                                       : _mm512_setzero_ps();
                tw_transpose16(r);
#pragma GCC unroll 16
                for (int i = 0; i < 16; i++) _mm512_store_ps((float *)(out + (k / 2 + i) * NP), r[i]);
            }
        }
}

/* ---- microkernels ------------------------------------------------------------------------------- */

/* Where a tile's sums go: y rows t (stride ldy), columns [0, nv) of the panel (nv < 48 only in the
** last panel). init: 0 = start from zero, 1 = from bias, 2 = add to y. */
typedef struct {
    float       *y;
    int64_t      ldy;
    int          nv;
    int          init;
    const float *bias;
} tile_out;

INLINE __mmask16 vmask(int nv, int j) {
    int n = nv - 16 * j;
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

INLINE void tile_load(int mt, __m512 c[MR][NRV], const tile_out *o) {
    for (int j = 0; j < NRV; j++) {
        __mmask16 m = vmask(o->nv, j);
        __m512 b = o->init == 1 ? _mm512_maskz_loadu_ps(m, o->bias + 16 * j) : _mm512_setzero_ps();
        for (int t = 0; t < mt; t++) c[t][j] = o->init == 2 ? _mm512_maskz_loadu_ps(m, o->y + t * o->ldy + 16 * j) : b;
    }
}

INLINE void tile_store(int mt, __m512 c[MR][NRV], const tile_out *o) {
    for (int j = 0; j < NRV; j++) {
        __mmask16 m = vmask(o->nv, j);
        for (int t = 0; t < mt; t++) _mm512_mask_storeu_ps(o->y + t * o->ldy + 16 * j, m, c[t][j]);
    }
}

/* f32 FMA: y tile (+)= x tile . panel, over nk columns. xq: the tile's x packed [nk][8]. */
INLINE void ukr_f32(int mt, const float *bp, const float *xq, int64_t nk, const tile_out *o) {
    __m512 c[MR][NRV];
    tile_load(mt, c, o);
#pragma GCC unroll 4
    for (int64_t k = 0; k < nk; k++) {
        __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16), b2 = _mm512_load_ps(bp + 32);
#pragma GCC unroll 8
        for (int t = 0; t < mt; t++) {
            __m512 xv = _mm512_set1_ps(xq[t]);
            c[t][0] = _mm512_fmadd_ps(b0, xv, c[t][0]);
            c[t][1] = _mm512_fmadd_ps(b1, xv, c[t][1]);
            c[t][2] = _mm512_fmadd_ps(b2, xv, c[t][2]);
        }
        bp += NP;
        xq += MR;
    }
    tile_store(mt, c, o);
}

/* f32 FMA from bf16 pairs: the same arithmetic as ukr_f32 in the same order (column 2q, then
** 2q + 1), the weights widened in registers (low half: shift left 16; high half: mask) from a
** panel packed as bf16 pairs [nkp][48] u32. Half the packing work and bytes of ukr_f32's f32
** panels, for about 8 % more instructions per FMA: the better trade when few tokens share
** the packed panel. xq: the tile's x, f32 [2 nkp][8]. */
INLINE void ukr_f32_pairs(int mt, const uint32_t *bp, const float *xq, int64_t nk, const tile_out *o) {
    __m512 c[MR][NRV];
    const __m512i hi_mask = _mm512_set1_epi32((int)0xffff0000u);
    tile_load(mt, c, o);
#pragma GCC unroll 2
    for (int64_t k = 0; k + 1 < nk; k += 2) {
        __m512i r0 = _mm512_load_si512(bp), r1 = _mm512_load_si512(bp + 16), r2 = _mm512_load_si512(bp + 32);
        __m512 b0 = _mm512_castsi512_ps(_mm512_slli_epi32(r0, 16)), b1 = _mm512_castsi512_ps(_mm512_slli_epi32(r1, 16));
        __m512 b2 = _mm512_castsi512_ps(_mm512_slli_epi32(r2, 16));
#pragma GCC unroll 8
        for (int t = 0; t < mt; t++) {
            __m512 xv = _mm512_set1_ps(xq[t]);
            c[t][0] = _mm512_fmadd_ps(b0, xv, c[t][0]);
            c[t][1] = _mm512_fmadd_ps(b1, xv, c[t][1]);
            c[t][2] = _mm512_fmadd_ps(b2, xv, c[t][2]);
        }
        b0 = _mm512_castsi512_ps(_mm512_and_si512(r0, hi_mask));
        b1 = _mm512_castsi512_ps(_mm512_and_si512(r1, hi_mask));
        b2 = _mm512_castsi512_ps(_mm512_and_si512(r2, hi_mask));
#pragma GCC unroll 8
        for (int t = 0; t < mt; t++) {
            __m512 xv = _mm512_set1_ps(xq[MR + t]);
            c[t][0] = _mm512_fmadd_ps(b0, xv, c[t][0]);
            c[t][1] = _mm512_fmadd_ps(b1, xv, c[t][1]);
            c[t][2] = _mm512_fmadd_ps(b2, xv, c[t][2]);
        }
        bp += NP;
        xq += 2 * MR;
    }
    if (nk & 1) {   /* the last, odd column: the low halves only */
        __m512 b0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_load_si512(bp), 16));
        __m512 b1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_load_si512(bp + 16), 16));
        __m512 b2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_load_si512(bp + 32), 16));
#pragma GCC unroll 8
        for (int t = 0; t < mt; t++) {
            __m512 xv = _mm512_set1_ps(xq[t]);
            c[t][0] = _mm512_fmadd_ps(b0, xv, c[t][0]);
            c[t][1] = _mm512_fmadd_ps(b1, xv, c[t][1]);
            c[t][2] = _mm512_fmadd_ps(b2, xv, c[t][2]);
        }
    }
    tile_store(mt, c, o);
}

/* bf16 dot: the same with bf16 pairs: nkp pairs of columns, xq [nkp][8] u32, panel [nkp][48] u32 */
INLINE void ukr_bf16(int mt, const uint32_t *bp, const uint32_t *xq, int64_t nkp, const tile_out *o) {
    __m512 c[MR][NRV];
    tile_load(mt, c, o);
#pragma GCC unroll 4
    for (int64_t q = 0; q < nkp; q++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(bp), b1 = (__m512bh)_mm512_load_si512(bp + 16);
        __m512bh b2 = (__m512bh)_mm512_load_si512(bp + 32);
#pragma GCC unroll 8
        for (int t = 0; t < mt; t++) {
            __m512bh xv = (__m512bh)_mm512_set1_epi32((int)xq[t]);
            c[t][0] = _mm512_dpbf16_ps(c[t][0], xv, b0);
            c[t][1] = _mm512_dpbf16_ps(c[t][1], xv, b1);
            c[t][2] = _mm512_dpbf16_ps(c[t][2], xv, b2);
        }
        bp += NP;
        xq += MR;
    }
    tile_store(mt, c, o);
}

/* one copy per token count, so that c[][] lives in registers */
#define MT_SWITCH(mt, CALL)                                                                          \
    switch (mt) {                                                                                    \
    case 1: CALL(1); break; case 2: CALL(2); break; case 3: CALL(3); break; case 4: CALL(4); break;  \
    case 5: CALL(5); break; case 6: CALL(6); break; case 7: CALL(7); break; default: CALL(8); break;  \
    }

__attribute__((noinline)) static void run_f32(int mt, const float *bp, const float *xq, int64_t nk, const tile_out *o) {
#define CALL(M) ukr_f32(M, bp, xq, nk, o)
    MT_SWITCH(mt, CALL)
#undef CALL
}

__attribute__((noinline)) static void run_f32_pairs(int mt, const uint32_t *bp, const float *xq, int64_t nk,
                                                    const tile_out *o) {
#define CALL(M) ukr_f32_pairs(M, bp, xq, nk, o)
    MT_SWITCH(mt, CALL)
#undef CALL
}

__attribute__((noinline)) static void run_bf16(int mt, const uint32_t *bp, const uint32_t *xq, int64_t nkp,
                                               const tile_out *o) {
#define CALL(M) ukr_bf16(M, bp, xq, nkp, o)
    MT_SWITCH(mt, CALL)
#undef CALL
}

/* ---- x, packed once per call --------------------------------------------------------------------- */

/* x is repacked into tiles of 8 tokens, column-major inside a tile: xq[tile][k][8] (f32), or for
** the bf16-dot path rounded to bf16 (round to nearest even) and paired, xq[tile][q][8] with
** q = k / 2 and u32 = x[2q] | x[2q + 1] << 16. Tokens past T and a missing last column are 0.
** The microkernel then broadcasts from one pointer moving 32 bytes per step. */
typedef struct {
    const float *x;
    void        *xq;
    int64_t      T, K, kq;   /* kq: columns (f32) or pairs (bf16) per packed tile row */
    bool         bf16;
} xpack_job;

static void xpack_task(void *ctx, int64_t tile, int tid) {
    const xpack_job *j = ctx;
    int64_t t0 = tile * MR;
    uint32_t *out = (uint32_t *)j->xq + tile * j->kq * MR;
    /* 32 (f32) or 64 (pairs) columns at a time: rows 0..7 of the first half and of the second
    ** half make the 16 rows of one 16 x 16 transpose, whose output row i holds the 8 tokens of
    ** column i (lanes 0..7) and of column 16 + i (lanes 8..15) */
    const int64_t step = j->bf16 ? 64 : 32;
    for (int64_t k = 0; k < j->K; k += step) {
        __m512 r[16];
        /* 8 short streams: fetch 4 steps ahead, the hardware prefetcher is too slow to start */
        for (int t = 0; t < MR && t0 + t < j->T; t++)
            for (int64_t a = 0; a < step; a += 16)
                _mm_prefetch((const char *)(j->x + (t0 + t) * j->K + TW_MIN(k + 4 * step + a, j->K - 1)), _MM_HINT_T0);
        for (int h = 0; h < 2; h++)
            for (int t = 0; t < MR; t++) {
                const float *row = j->x + (t0 + t) * j->K;
                int64_t kk = k + h * step / 2;
                if (t0 + t >= j->T) {
                    r[8 * h + t] = _mm512_setzero_ps();
                } else if (!j->bf16) {
                    int64_t n = TW_MAX(0, TW_MIN(16, j->K - kk));
                    r[8 * h + t] = _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), row + kk);
                } else {
                    int64_t n0 = TW_MAX(0, TW_MIN(16, j->K - kk)), n1 = TW_MAX(0, TW_MIN(16, j->K - kk - 16));
                    __m512 lo = _mm512_maskz_loadu_ps((__mmask16)((1u << n0) - 1), row + kk);
                    __m512 hi = _mm512_maskz_loadu_ps((__mmask16)((1u << n1) - 1), row + kk + 16);
                    r[8 * h + t] = _mm512_castsi512_ps((__m512i)_mm512_cvtne2ps_pbh(hi, lo));
                }
            }
        tw_transpose16(r);
        int64_t q0 = j->bf16 ? k / 2 : k;   /* packed row of the first column */
        for (int i = 0; i < 16; i++) {
            if (q0 + i < j->kq) _mm256_store_si256((__m256i *)(out + (q0 + i) * MR), _mm512_castsi512_si256(_mm512_castps_si512(r[i])));
            if (q0 + 16 + i < j->kq)
                _mm256_store_si256((__m256i *)(out + (q0 + 16 + i) * MR), _mm512_extracti64x4_epi64(_mm512_castps_si512(r[i]), 1));
        }
    }
}

/* ---- the tasks ---------------------------------------------------------------------------------- */

typedef struct {
    float          *y;
    const void     *xq;     /* packed x: [tiles][kq][8] f32 or bf16 pairs       */
    int64_t         kq;
    bool            bf16;         /* bf16-dot path                                */
    bool            pairs;        /* f32 path from bf16-pair panels (few tokens)  */
    const void     *w;
    tw_dtype        wt;
    const float    *bias;
    int64_t         T, N, K;
    int64_t         NC, TB, KC;   /* rows per task, tokens per task, K chunk     */
    int64_t         n_groups;     /* row groups: tasks = n_groups x token blocks  */
    uint8_t        *bufs;         /* one packing buffer per thread                */
    size_t          buf_bytes;
    bool            direct;       /* T < 8, BF16, f32 FMA: no packing (direct_rows) */
    const uint32_t *pre;          /* weights packed once (tw_gemm_pack_avx512), or NULL */
    int64_t         pre_stride;   /* u32 per 48-row panel of pre                  */
} gemm_job;

/* Fewer than DIRECT_BELOW_T tokens, BF16 weights: no packing buffer at all. Each 16 x 32 block of weights
** (16 rows, 16 column pairs) is transposed in registers and used at once by the mt tokens: the
** same FMA chain per output, in the same column order, as the packed path (so the same bits),
** without writing the panel out and reading it back — with so few tokens that round trip is
** most of the work (1 core, 2304 x 9216, per CPU-second: T = 2 48 GFLOP/s against 34 packed,
** T = 8 133 against 92, T = 16 151 against 129; equal at T = 24). One tile of up to 8 tokens per
** call; xq: that tile of x, f32 [K][8]. */
INLINE void direct_rows(int mt, const uint16_t *w, int64_t K, int nv, const float *xq, float *y, int64_t ldy,
                        const float *bias) {
    const __m512i hi_mask = _mm512_set1_epi32((int)0xffff0000u);
    const __mmask16 rows = nv >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nv) - 1);
    __m512 acc[MR];
#pragma GCC unroll 8
    for (int t = 0; t < mt; t++) acc[t] = bias ? _mm512_maskz_loadu_ps(rows, bias) : _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k += 32) {
        __mmask32 m = K - k >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (K - k)) - 1);
        __m512 r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            /* ahead in these rows, and the next 16 rows at this column (short rows: K = 1152
            ** is 36 blocks, too few for the hardware prefetcher to start on the next rows) */
            _mm_prefetch((const char *)(w + (size_t)i * (size_t)K + k + 256), _MM_HINT_T0);
            _mm_prefetch((const char *)(w + (size_t)(16 + i) * (size_t)K + k), _MM_HINT_T1);
            r[i] = i < nv ? _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(m, w + (size_t)i * (size_t)K + k))
                          : _mm512_setzero_ps();
        }
        tw_transpose16(r);   /* r[i]: columns k + 2i, k + 2i + 1 of the 16 rows, as bf16 pairs */
        if (K - k >= 32) {
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) {
                __m512i v = _mm512_castps_si512(r[i]);
                __m512 lo = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
                __m512 hi = _mm512_castsi512_ps(_mm512_and_si512(v, hi_mask));
                const float *xk = xq + (k + 2 * i) * MR;
#pragma GCC unroll 8
                for (int t = 0; t < mt; t++) acc[t] = _mm512_fmadd_ps(lo, _mm512_set1_ps(xk[t]), acc[t]);
#pragma GCC unroll 8
                for (int t = 0; t < mt; t++) acc[t] = _mm512_fmadd_ps(hi, _mm512_set1_ps(xk[MR + t]), acc[t]);
            }
        } else {   /* the last columns; x is not read past K */
            for (int i = 0; 2 * i < K - k; i++) {
                __m512i v = _mm512_castps_si512(r[i]);
                __m512 lo = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
                __m512 hi = _mm512_castsi512_ps(_mm512_and_si512(v, hi_mask));
                const float *xk = xq + (k + 2 * i) * MR;
#pragma GCC unroll 8
                for (int t = 0; t < mt; t++) acc[t] = _mm512_fmadd_ps(lo, _mm512_set1_ps(xk[t]), acc[t]);
                if (k + 2 * i + 1 < K)
#pragma GCC unroll 8
                    for (int t = 0; t < mt; t++) acc[t] = _mm512_fmadd_ps(hi, _mm512_set1_ps(xk[MR + t]), acc[t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < mt; t++) _mm512_mask_storeu_ps(y + t * ldy, rows, acc[t]);
}

__attribute__((noinline)) static void run_direct(int mt, const uint16_t *w, int64_t K, int nv, const float *xq,
                                                 float *y, int64_t ldy, const float *bias) {
#define CALL(M) direct_rows(M, w, K, nv, xq, y, ldy, bias)
    MT_SWITCH(mt, CALL)
#undef CALL
}

static void gemm_task(void *ctx, int64_t i, int tid) {
    const gemm_job *j = ctx;
    int64_t n0 = (i % j->n_groups) * j->NC, t0 = (i / j->n_groups) * j->TB;
    int64_t nn = TW_MIN(j->NC, j->N - n0), nt = TW_MIN(j->TB, j->T - t0);
    void *buf = j->bufs + (size_t)tid * j->buf_bytes;
    const size_t es = tw_dtype_size(j->wt);
    const void *w = (const uint8_t *)j->w + (size_t)n0 * (size_t)j->K * es;
    if (j->direct) {   /* 16 rows at a time, each tile of 8 tokens in turn (the rows then come from L2) */
        for (int64_t r = 0; r < nn; r += 16)
            for (int64_t t = t0; t < t0 + nt; t += MR)
                run_direct((int)TW_MIN(MR, t0 + nt - t), (const uint16_t *)w + (size_t)r * (size_t)j->K, j->K,
                           (int)TW_MIN(16, nn - r), (const float *)j->xq + (t / MR) * j->kq * MR,
                           j->y + t * j->N + n0 + r, j->N, j->bias ? j->bias + n0 + r : NULL);
        return;
    }
    for (int64_t k0 = 0; k0 < j->K; k0 += j->KC) {
        int64_t nk = TW_MIN(j->KC, j->K - k0);
        int64_t pstride;   /* elements (f32 or u32) per packed panel */
        if (j->pre) {      /* packed at load: this chunk of this task's panels, in place */
            buf = (void *)(j->pre + n0 / NP * j->pre_stride + k0 / 2 * NP);
            pstride = j->pre_stride;
        } else if (j->bf16 || j->pairs) {
            pack_bf16_pairs(buf, w, j->K, nn, k0, nk);
            pstride = ((nk + 31) & ~(int64_t)31) / 2 * NP;
        } else {
            switch (j->wt) {
            case TW_DT_F32: pack_f32(TW_DT_F32, buf, w, j->K, nn, k0, nk); break;
            case TW_DT_F16: pack_f32(TW_DT_F16, buf, w, j->K, nn, k0, nk); break;
            default: pack_f32(TW_DT_BF16, buf, w, j->K, nn, k0, nk); break;
            }
            pstride = ((nk + 15) & ~(int64_t)15) * NP;
        }
        for (int64_t p = 0; p * NP < nn; p++) {
            tile_out o = { .ldy = j->N, .nv = (int)TW_MIN(NP, nn - p * NP), .init = k0 > 0 ? 2 : j->bias ? 1 : 0,
                           .bias = j->bias ? j->bias + n0 + p * NP : NULL };
            for (int64_t t = t0; t < t0 + nt; t += MR) {
                int mt = (int)TW_MIN(MR, t0 + nt - t);
                o.y = j->y + t * j->N + n0 + p * NP;
                const uint32_t *xt = (const uint32_t *)j->xq + (t / MR) * j->kq * MR;
                if (j->bf16) run_bf16(mt, (const uint32_t *)buf + p * pstride, xt + k0 / 2 * MR, (nk + 1) / 2, &o);
                else if (j->pairs) run_f32_pairs(mt, (const uint32_t *)buf + p * pstride, (const float *)xt + k0 * MR, nk, &o);
                else run_f32(mt, (const float *)buf + p * pstride, (const float *)xt + k0 * MR, nk, &o);
            }
        }
    }
}

/* Packing buffers: tw_ws_take / tw_ws_give (workspace.c), shared by the GEMMs. */

/* Cuts the product into tasks for the pool:
**   - KC: 256 columns (f32: a 48-row panel's chunk is 48 KB, streamed from L1/L2 with the x tiles),
**     512 for bf16 pairs (the same bytes); one chunk when K <= 1.5 KC;
**   - NC: 96 rows (2 panels) per task; a 9216-row weight still gives 96 tasks; 48 when that
**     gives fewer than 8 tasks per thread (the vision tower's 1152 rows: 24 groups of 48);
**   - TB: all tokens, unless that gives fewer than 8 tasks per thread (small N, e.g. the vision
**     tower's 1152 rows = 12 groups) or an x block (TB x KC f32) larger than half the L2: then
**     the tokens are cut into equal blocks (multiples of 8). Each token block re-packs the
**     weights (from L3 when they fit there, or memory: a 2304 x 9216 bf16 weight read twice for
**     T = 729 is 85 MB, 3 ms at 28 GB/s, against 60 ms of arithmetic). */
bool tw_gemm_avx512(tw_pool *pool, float *y, const float *x, int64_t T, int64_t N, int64_t K, const void *w,
                    tw_dtype wt, const void *packed, const float *bias, bool bf16_dot) {
    bf16_dot = bf16_dot && wt == TW_DT_BF16;
    if (wt != TW_DT_BF16) packed = NULL;
    gemm_job j = { .y = y, .w = w, .wt = wt, .bias = bias, .T = T, .N = N, .K = K, .bf16 = bf16_dot,
                   .pairs = !bf16_dot && wt == TW_DT_BF16 && (T < PAIRS_BELOW_T || packed), .pre = packed,
                   .pre_stride = ((K + 31) & ~(int64_t)31) / 2 * NP };
    int64_t threads = tw_pool_size(pool);
    j.KC = bf16_dot || j.pairs ? 512 : 256;
    if (K <= j.KC + j.KC / 2) j.KC = K;   /* one chunk rather than a big and a tiny one */
    /* small N: one-panel groups before cutting the tokens (cutting re-packs the weights) */
    j.NC = threads > 1 && (N + 2 * NP - 1) / (2 * NP) < 8 * threads ? NP : 2 * NP;
    j.n_groups = (N + j.NC - 1) / j.NC;
    int64_t tb_cache = TW_MAX(MR, (int64_t)(512 * 1024 / 4) / TW_MIN(j.KC, K) / MR * MR);
    int64_t blocks = (T + tb_cache - 1) / tb_cache;
    if (threads > 1 && j.n_groups * blocks < 8 * threads)
        blocks = TW_MAX(blocks, (8 * threads + j.n_groups - 1) / j.n_groups);
    j.TB = ((T + blocks - 1) / blocks + MR - 1) / MR * MR;
    blocks = (T + j.TB - 1) / j.TB;

    int64_t tiles = (T + MR - 1) / MR;
    j.kq = bf16_dot ? (K + 1) / 2 : K;
    j.buf_bytes = bf16_dot || j.pairs ? (size_t)j.NC * (size_t)((j.KC + 31) & ~(int64_t)31) * 2
                           : (size_t)j.NC * (size_t)((j.KC + 15) & ~(int64_t)15) * 4;
    j.direct = !bf16_dot && !packed && wt == TW_DT_BF16 && T < DIRECT_BELOW_T;
    if (packed || j.direct) j.buf_bytes = 0;
    size_t xq_bytes = ((sizeof(uint32_t) * (size_t)(tiles * j.kq * MR)) + 63) & ~(size_t)63;
    int slot;
    uint8_t *mem = tw_ws_take(xq_bytes + j.buf_bytes * (size_t)threads, &slot);
    if (!mem) return false;
    void *xq = mem;
    j.bufs = mem + xq_bytes;
    xpack_job xj = { .x = x, .xq = xq, .T = T, .K = K, .kq = j.kq, .bf16 = bf16_dot };
    tw_pool_run(pool, tiles, xpack_task, &xj);
    j.xq = xq;
    tw_pool_run(pool, j.n_groups * blocks, gemm_task, &j);
    tw_ws_give(mem, slot);
    return true;
}

/* The whole of a BF16 weight [N, K] packed once in the layout the tasks above build per call: per
** 48-row panel (N rounded up to 48, missing rows zero), [K32 / 2][48] bf16 pairs (K32 = K rounded
** up to 32, missing columns zero). Same size as the weight, give or take the padding. NULL when
** out of memory. *bytes gets the size. */
void *tw_gemm_pack_avx512(const void *w, int64_t N, int64_t K, size_t *bytes) {
    int64_t panels = (N + NP - 1) / NP, stride = ((K + 31) & ~(int64_t)31) / 2 * NP;
    *bytes = sizeof(uint32_t) * (size_t)(panels * stride);
    uint32_t *dst = tw_aligned_alloc(*bytes);
    if (!dst) return NULL;
    for (int64_t p = 0; p < panels; p++)
        pack_bf16_pairs(dst + p * stride, (const uint16_t *)w + (size_t)(p * NP) * (size_t)K, K, TW_MIN(NP, N - p * NP),
                        0, K);
    return dst;
}
