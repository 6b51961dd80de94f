/*
** gemm_avx2.c — the AVX2 matrix-matrix product for many tokens (prefill, vision tower):
**     y[T,N] = x[T,K] . W[N,K]^T (+ bias)
** compiled with -mavx2 -mfma -mf16c; only called when CPUID says the CPU has them. The same
** design as gemm_avx512.c, cut down to 16 ymm registers of 8 lanes.
**
** Register tile: 4 tokens x 24 output rows (3 ymm of 8 rows): 12 accumulators, 3 weight vectors
** and one broadcast x value use all 16 registers. Per step along K: 3 weight loads, 4 broadcasts,
** 12 FMAs — 7 loads per 12 FMAs, so two load ports keep up with two FMA pipes even on older
** cores. Lane j of an accumulator is output row j: no horizontal sums. Measured in isolation (data
** in L1) it runs at 99 % of the 256-bit FMA peak. The usual alternative, 6 tokens x 16 rows, needs
** 8 loads per 12 FMAs, wastes more lanes on short prompts (T = 2..5 fill a 4-token tile better
** than a 6-token one) and leaves the same 12 accumulators.
**
** Weights are packed per task into panels of 24 rows in the microkernel's order, [k][24] f32 —
** widened from bf16/f16 at packing time, so the FMA loop has only loads, broadcasts and FMAs —
** by 8 x 8 in-register transposes (24 shuffles per 64 values), into a small per-thread buffer
** that stays in L2 (NC rows x KC columns f32: 96 KB). x is used in place: a tile's 4 rows are 4
** short streams that the microkernel broadcasts from (in L1/L2 for the K chunk; packing x into
** [k][4] measured no faster).
**
** Every output is one FMA chain over k in order, starting from its bias (or 0): K chunks continue
** the chain through an exact f32 store and reload of y. So the result for a token does not
** depend on T, on its tile, on the thread count or on KC — and it is bit for bit what
** gemm_avx512.c computes (the same chain; tests/test_kernels.c checks both).
**
** Loops of one task (a group of NC rows x a block of TB tokens):
**     for each K chunk of KC:         pack NC x KC weights (from memory, once per task)
**       for each 24-row panel:         its KC x 24 f32 (24 KB) stream from L1 ...
**         for each 4-token tile:       ... with the tile's x rows (4 x KC f32, from L1/L2)
**           microkernel over KC        y tile (+)= x tile . panel
*/
#include "kernels.h"

#include <immintrin.h>
#include <pthread.h>

#define INLINE static inline __attribute__((always_inline))

enum {
    MR = 4,    /* tokens per register tile      */
    NRV = 3,   /* ymm of 8 rows per tile         */
    NP = 24,   /* rows per panel: NRV * 8        */
};

/* ---- packing ------------------------------------------------------------------------------------ */

/* 8 x 8 transpose of 32-bit elements: r[i] lane j -> r[j] lane i (8 unpacks, 8 in-lane shuffles,
** 8 lane swaps) */
INLINE void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4h + j]: rows 4h..4h+3 at columns j (low 128 bits) and j + 4 (high) */
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        u[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
        u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
        u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
        u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
        r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
    }
}

/* 8 weights of one row (type dt) from column k on, widened to f32. n < 8: only n are read (the
** last columns of a row: AVX2 has no 16-bit masked load, so those go through a zeroed buffer),
** the other lanes are 0. */
INLINE __m256 load8_f32(tw_dtype dt, const uint8_t *row, int64_t k, int n) {
    if (dt == TW_DT_F32) {
        if (n >= 8) return _mm256_loadu_ps((const float *)row + k);
        __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        return _mm256_maskload_ps((const float *)row + k, m);
    }
    __m128i h;
    if (n >= 8) {
        h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + k));
    } else {
        uint16_t pad[8] = { 0 };
        memcpy(pad, (const uint16_t *)row + k, sizeof(uint16_t) * (size_t)n);
        h = _mm_loadu_si128((const __m128i *)pad);
    }
    if (dt == TW_DT_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* 8 rows x 8 columns from row0 (rows rs bytes apart) at column k, transposed and stored as 8
** panel rows [k + i][8 lanes] of out. nr < 8 rows or n < 8 columns: the rest is zero. */
INLINE void pack8x8(tw_dtype dt, float *out, const uint8_t *row0, size_t rs, int64_t k, int nr, int n) {
    __m256 r[8];
    if (nr == 8 && n == 8) {
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) r[i] = load8_f32(dt, row0 + i * rs, k, 8);
    } else {
        for (int i = 0; i < 8; i++) r[i] = i < nr ? load8_f32(dt, row0 + i * rs, k, n) : _mm256_setzero_ps();
    }
    transpose8(r);
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) _mm256_store_ps(out + i * NP, r[i]);
}

/* Packs rows [0, nn) x columns [k0, k0 + nk) of w (row stride ldw elements, type dt) as f32
** panels: panel p (rows 24p..24p+23) is [nk8][24] at dst + p * nk8 * 24, nk8 = nk rounded up to 8.
** Rows past nn and columns past nk are zero.
**
** A task's row segments (KC columns: 512 bytes of bf16) are too short for the hardware
** prefetcher, so each group of 8 rows is fetched by software while the group PF_GROUPS before it
** is packed, one cache line per row at a time; the last groups of a chunk fetch the first ones of
** the task's next chunk (columns from k0 + nk; ldw is also the weight's width K). */
enum { PF_GROUPS = 2 };

INLINE void pack(tw_dtype dt, float *dst, const void *w, int64_t ldw, int64_t nn, int64_t k0, int64_t nk) {
    const size_t es = dt == TW_DT_F32 ? 4 : 2, rs = (size_t)ldw * es;
    const int64_t nk8 = (nk + 7) & ~(int64_t)7, groups = (nn + 7) / 8, line = 64 / (int64_t)es;
    /* up to a whole last panel: its groups past nn are written as zeros, not left from a previous
    ** call (those lanes are never stored, but stale values could be NaN or denormal) */
    for (int64_t gi = 0; gi < (groups + NRV - 1) / NRV * NRV; gi++) {
        int nr = (int)TW_MAX(0, TW_MIN(8, nn - gi * 8));
        const uint8_t *row0 = (const uint8_t *)w + (size_t)(nr ? gi * 8 : 0) * rs;   /* not read when nr = 0 */
        float *out = dst + gi / NRV * nk8 * NP + gi % NRV * 8;
        /* the group to fetch: PF_GROUPS on in this chunk, else in the next one (if any) */
        int64_t pg = gi + PF_GROUPS, pk = k0;
        if (pg >= groups) pg -= groups, pk = k0 + nk;
        const uint8_t *pf = gi < groups && pk < ldw && pg >= 0 && pg < groups
                                ? (const uint8_t *)w + (size_t)(pg * 8) * rs + (size_t)pk * es : NULL;
        int pr = pf ? (int)TW_MIN(8, nn - pg * 8) : 0;
        int64_t pn = TW_MIN(nk, ldw - pk);   /* columns of the fetched chunk */
        int64_t k = 0;
        for (; k + 8 <= nk; k += 8) {
            if (k % line == 0 && k < pn)
                for (int i = 0; i < pr; i++) _mm_prefetch((const char *)(pf + i * rs + (size_t)k * es), _MM_HINT_T0);
            pack8x8(dt, out + k * NP, row0, rs, k0 + k, nr, 8);
        }
        if (k < nk) pack8x8(dt, out + k * NP, row0, rs, k0 + k, nr, (int)(nk - k));
    }
}

/* ---- microkernel -------------------------------------------------------------------------------- */

/* Where a tile's sums go: y rows t (stride ldy), columns [0, nv) of the panel (nv < 24 only in the
** last panel of a weight). init: 0 = start from zero, 1 = from bias, 2 = add to y. */
typedef struct {
    float       *y;
    int64_t      ldy;
    int          nv;
    int          init;
    const float *bias;
} tile_out;

/* The y (or bias) values a tile starts from, and where its sums go. A partial panel (nv < 24) goes
** through a zero-padded copy in the stack rather than masked loads and stores: masks computed
** before the k loop and reused after it stay live across it and took 3 of the 16 registers (GCC
** then spilled accumulators: half speed). */
INLINE void tile_load(int mt, __m256 c[MR][NRV], const tile_out *o) {
    float pad[MR][NP] __attribute__((aligned(32)));
    const float *src = o->init == 1 ? o->bias : o->y;
    int64_t ld = o->init == 1 ? 0 : o->ldy;
    if (o->init != 0 && o->nv < NP) {
        memset(pad, 0, sizeof pad);
        for (int t = 0; t < (o->init == 1 ? 1 : mt); t++) memcpy(pad[t], src + t * ld, sizeof(float) * (size_t)o->nv);
        src = &pad[0][0];
        ld = o->init == 1 ? 0 : NP;
    }
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++)
#pragma GCC unroll 3
        for (int j = 0; j < NRV; j++) c[t][j] = o->init == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(src + t * ld + 8 * j);
}

INLINE void tile_store(int mt, __m256 c[MR][NRV], const tile_out *o) {
    if (o->nv == NP) {
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++)
#pragma GCC unroll 3
            for (int j = 0; j < NRV; j++) _mm256_storeu_ps(o->y + t * o->ldy + 8 * j, c[t][j]);
        return;
    }
    float pad[MR][NP] __attribute__((aligned(32)));
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++)
#pragma GCC unroll 3
        for (int j = 0; j < NRV; j++) _mm256_store_ps(&pad[t][8 * j], c[t][j]);
    for (int t = 0; t < mt; t++) memcpy(o->y + t * o->ldy, pad[t], sizeof(float) * (size_t)o->nv);
}

/* y tile (+)= x tile . panel over nk columns: bp the f32 panel [nk][24] (from its first column),
** x the tile's first row at the chunk's first column, ldx its row stride. */
INLINE void ukr(int mt, const float *bp, const float *x, int64_t ldx, int64_t nk, const tile_out *o) {
    __m256 c[MR][NRV];
    tile_load(mt, c, o);
    for (int64_t k = 0; k < nk; k++) {
        __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8), b2 = _mm256_load_ps(bp + 16);
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++) {
            __m256 xv = _mm256_broadcast_ss(x + t * ldx + k);
            c[t][0] = _mm256_fmadd_ps(b0, xv, c[t][0]);
            c[t][1] = _mm256_fmadd_ps(b1, xv, c[t][1]);
            c[t][2] = _mm256_fmadd_ps(b2, xv, c[t][2]);
        }
        bp += NP;
    }
    tile_store(mt, c, o);
}

/* one copy per token count, so that c[][] lives in registers */
__attribute__((noinline)) static void run_tile(int mt, const float *bp, const float *x, int64_t ldx, int64_t nk,
                                               const tile_out *o) {
    switch (mt) {
    case 1: ukr(1, bp, x, ldx, nk, o); break;
    case 2: ukr(2, bp, x, ldx, nk, o); break;
    case 3: ukr(3, bp, x, ldx, nk, o); break;
    default: ukr(4, bp, x, ldx, nk, o); break;
    }
}

/* ---- the tasks ---------------------------------------------------------------------------------- */

typedef struct {
    float       *y;   /* [T, N] */
    const float *x;   /* [T, K] */
    const void  *w;   /* [N, K] of type wt */
    tw_dtype     wt;
    const float *bias;            /* [N] or NULL                                 */
    int64_t      T, N, K;
    int64_t      NC, TB, KC;      /* rows per task, tokens per task, K chunk     */
    int64_t      n_groups;        /* row groups: tasks = n_groups x token blocks  */
    uint8_t     *bufs;            /* one packing buffer per thread                */
    size_t       buf_bytes;
} gemm_job;

static void gemm_task(void *ctx, int64_t i, int tid) {
    const gemm_job *j = ctx;
    int64_t n0 = (i % j->n_groups) * j->NC, t0 = (i / j->n_groups) * j->TB;
    int64_t nn = TW_MIN(j->NC, j->N - n0), nt = TW_MIN(j->TB, j->T - t0);
    float *buf = (float *)(j->bufs + (size_t)tid * j->buf_bytes);   /* [NC / 24][KC8][24] */
    const void *w = (const uint8_t *)j->w + (size_t)n0 * (size_t)j->K * tw_dtype_size(j->wt);
    for (int64_t k0 = 0; k0 < j->K; k0 += j->KC) {
        int64_t nk = TW_MIN(j->KC, j->K - k0), pstride = ((nk + 7) & ~(int64_t)7) * NP;
        switch (j->wt) {
        case TW_DT_F32: pack(TW_DT_F32, buf, w, j->K, nn, k0, nk); break;
        case TW_DT_F16: pack(TW_DT_F16, buf, w, j->K, nn, k0, nk); break;
        default: pack(TW_DT_BF16, buf, w, j->K, nn, k0, nk); break;
        }
        for (int64_t p = 0; p * NP < nn; p++) {
            tile_out o = { .ldy = j->N, .nv = (int)TW_MIN(NP, nn - p * NP), .init = k0 > 0 ? 2 : j->bias ? 1 : 0,
                           .bias = j->bias ? j->bias + n0 + p * NP : NULL };
            for (int64_t t = t0; t < t0 + nt; t += MR) {
                o.y = j->y + t * j->N + n0 + p * NP;
                run_tile((int)TW_MIN(MR, t0 + nt - t), buf + p * pstride, j->x + t * j->K + k0, j->K, nk, &o);
            }
        }
    }
}

/* Packing buffers: tw_ws_take / tw_ws_give (workspace.c), shared by the GEMMs. */

/* Cuts the product into tasks for the pool:
**   - KC: 256 columns, so a 24-row panel chunk is 24 KB of f32 (L1); one chunk when K <= 384;
**   - NC: 96 rows (4 panels) per task, a 96 KB packing buffer; 48 when that gives fewer than 8
**     tasks per thread (the vision tower's 1152 rows: 24 groups of 48);
**   - TB: all tokens, unless that gives fewer than 8 tasks per thread (small N) or an x block
**     (TB x KC f32) larger than X_BLOCK: then the tokens are cut into equal blocks (multiples of
**     4). Each token block packs the weights again (from L3, or memory for large weights). */
enum { KC_DEF = 256, X_BLOCK = 512 * 1024 };

bool tw_gemm_avx2(tw_pool *pool, float *y, const float *x, int64_t T, int64_t N, int64_t K, const void *w,
                  tw_dtype wt, const float *bias) {
    if (T <= 0 || N <= 0 || K <= 0) return true;
    if (wt != TW_DT_F32 && wt != TW_DT_F16 && wt != TW_DT_BF16) return false;
    gemm_job j = { .y = y, .x = x, .w = w, .wt = wt, .bias = bias, .T = T, .N = N, .K = K };
    int64_t threads = tw_pool_size(pool);
    j.KC = K <= KC_DEF + KC_DEF / 2 ? K : KC_DEF;
    j.NC = threads > 1 && (N + 4 * NP - 1) / (4 * NP) < 8 * threads ? 2 * NP : 4 * NP;
    j.n_groups = (N + j.NC - 1) / j.NC;
    int64_t tb_cache = TW_MAX(MR, (int64_t)(X_BLOCK / 4) / j.KC / MR * MR);
    int64_t blocks = (T + tb_cache - 1) / tb_cache;
    if (threads > 1 && j.n_groups * blocks < 8 * threads)
        blocks = TW_MAX(blocks, (8 * threads + j.n_groups - 1) / j.n_groups);
    j.TB = ((T + blocks - 1) / blocks + MR - 1) / MR * MR;
    blocks = (T + j.TB - 1) / j.TB;

    j.buf_bytes = sizeof(float) * (size_t)j.NC * (size_t)((j.KC + 7) & ~(int64_t)7);
    int slot;
    uint8_t *mem = tw_ws_take(j.buf_bytes * (size_t)threads, &slot);
    if (!mem) return false;
    j.bufs = mem;
    tw_pool_run(pool, j.n_groups * blocks, gemm_task, &j);
    tw_ws_give(mem, slot);
    return true;
}
