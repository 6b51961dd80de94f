/*
** gemm_amx.c — the matrix-matrix product on AMX tiles for BF16 weights (prefill, vision tower):
**     y[T,N] = x[T,K] . W[N,K]^T (+ bias)
** compiled with AMX_FLAGS (the AVX-512 ones plus -mamx-tile -mamx-bf16). kernels.c calls it only
** on the amx path: CPUID, XCR0, the kernel's permission and a self-check all said yes. The tile
** instructions come from amx_ops.h; built with -DTW_AMX_EMULATE the same source runs on a C model
** of them (tests/test_amx.c), which is how it is tested on machines without AMX.
**
** One TDPBF16PS multiplies an A tile (16 tokens x 32 columns of x, bf16) by a B tile (16 column
** pairs x 16 weight rows, bf16 pairs) into a C tile (16 tokens x 16 outputs, f32 sums): 8192
** products per instruction. There are 8 tile registers; the work unit is 2 x 2 C tiles (32 tokens x
** 32 outputs, tmm0-3) fed per 32 columns by 2 A tiles (tmm4-5) and 2 B tiles (tmm6-7).
**
** Numbers. W is exactly bf16; x is not, so x enters as `parts` bf16 terms per value, each the
** rounding (to nearest even) of what the previous ones left: x_1 = bf16(x), x_2 = bf16(x - x_1),
** x_3 = bf16(x - x_1 - x_2). Each step runs the tile product once per part into the same f32 sums.
** A product of two bf16 is exact in f32, so the only errors are what the parts leave out of x and
** the rounding of the f32 sums: 1 part leaves up to 2^-8 |x|, 2 parts 2^-17 |x|, 3 parts nothing
** (24 significant bits = 3 x 8; for |x| >= 2^-103, below which a part would be a denormal, read as
** 0). The default is 3 parts: results of f32 quality (measured: 3x closer to the exact product
** than the f32 FMA chain, whose sums round at every step). The bf16-activation mode
** (TOWER_MATMUL=bf16) runs 1 part. Bounds and fixture parity: docs/kernels.md.
**
** Layouts (every tile is 16 rows of 64 bytes):
**   x  packed once per call, split as above: [T/16][K/32][part][16 tokens][32 columns] bf16, so
**      each A tile is 1 KB in one piece. Tokens past T and columns past K are 0.
**   W  per task and K chunk into a per-thread buffer in the pair layout TDPBF16PS reads:
**      [16-row group][K/32][16 column pairs][16 rows] u32 (a u32 is columns 2q, 2q + 1 of a row),
**      made by 16 x 16 transposes of u32 in registers; rows past N and columns past K are 0. Or,
**      if model code packed the weight once (tw_kernels_pack_weight), read in place from that
**      copy: tw_gemm_pack_avx512's 48-row panels [K/2][48] u32, where a B tile is 16 of a panel's
**      rows 192 bytes apart. Packing per call is the default because it needs no RAM; its cost is
**      estimated in docs/kernels.md (it could not be measured here).
**   y  C tiles are loaded from and stored to y in place (rows N floats apart); a tile cut by T or
**      N goes through a small per-thread buffer instead, so a task never writes outside its outputs.
**
** Loops of one task (a group of NC rows x a block of TB tokens):
**   for each K chunk of up to 512 columns:   pack NC x 512 weights (or find them packed)
**     for each pair of 16-row groups:         its B tiles (2 x 16 KB per chunk) stay in L1 ...
**       for each pair of 16-token tiles:      ... while the A tiles stream from L2
**         C (+)= A . B over the chunk; C stored to y at the end of the chunk, reloaded at the next
**
** Every output is the same sequence of tile steps whatever T, its place in a tile, the task cut or
** the thread count, so a token's result does not depend on how many tokens share the call.
*/
#ifdef TW_AMX_EMULATE
#define tw_gemm_amx tw_gemm_amx_emu   /* the test links this build next to the real one */
#endif
#include "kernels.h"
#include "amx_ops.h"
#include "transpose_avx512.h"

#include <immintrin.h>
#include <pthread.h>

#define INLINE static inline __attribute__((always_inline))

enum {
    KB = 32,         /* columns per tile step (64 bytes of bf16 per A row) */
    KCB = 16,        /* steps per K chunk: 512 columns; one chunk when K <= 24 steps */
    TILE_U16 = 512,  /* 16-bit elements in a tile: an A tile's bf16 (a B tile holds 256 u32 pairs) */
};

/* The one configuration: tmm0-3 C (16 x 16 f32), tmm4-5 A (16 x 32 bf16), tmm6-7 B (16 x 16 bf16
** pairs); all 16 rows of 64 bytes. A static const, so no stores build it at run time (amx_ops.h). */
static _Alignas(64) const tw_tilecfg tile_cfg = {
    .palette = 1,
    .colsb = { 64, 64, 64, 64, 64, 64, 64, 64 },
    .rows = { 16, 16, 16, 16, 16, 16, 16, 16 },
};

INLINE __mmask16 mask16(int64_t n) {   /* the first n of 16 lanes, n clamped to [0, 16] */
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* ---- x: split into bf16 parts once per call ------------------------------------------------- */

typedef struct {
    const float *x;    /* [T, K] */
    uint16_t    *xq;   /* [T/16][nkb][parts][16][32] */
    int64_t      T, K, nkb;
    int          parts;   /* bf16 terms per value of x: 1, 2 or 3 */
} xpack_job;

/* One 16-token tile: each token's 32 columns of a step become one 64-byte row of each of its
** parts' A tiles. Part q is bf16(r_q), r_0 = x, r_q+1 = r_q - part q: vcvtne2ps2bf16 rounds to
** nearest even (an f32 denormal becomes 0), and each difference is exact in f32 (r_q and its
** rounding are within a factor 2 of each other). */
static void xpack_task(void *ctx, int64_t tt, int tid) {
    const xpack_job *j = ctx;
    for (int r = 0; r < 16; r++) {
        int64_t t = tt * 16 + r;
        uint16_t *out = j->xq + (tt * j->nkb * j->parts) * TILE_U16 + r * KB;
        for (int64_t kb = 0; kb < j->nkb; kb++, out += j->parts * TILE_U16) {
            int64_t k = kb * KB;
            __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
            if (t < j->T) {
                const float *row = j->x + t * j->K;
                a = _mm512_maskz_loadu_ps(mask16(j->K - k), row + k);
                b = _mm512_maskz_loadu_ps(mask16(j->K - k - 16), row + k + 16);
            }
            for (int q = 0; q < j->parts; q++) {
                __m512i h = (__m512i)_mm512_cvtne2ps_pbh(b, a);   /* columns k..k+15 in the low half */
                _mm512_store_si512(out + q * TILE_U16, h);
                if (q + 1 == j->parts) break;
                a = _mm512_sub_ps(a, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(h)), 16)));
                b = _mm512_sub_ps(b, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(h, 1)), 16)));
            }
        }
    }
}

/* ---- W: into B tiles ------------------------------------------------------------------------ */

/* Rows [0, nn) x columns [k0, k0 + nk) of w (bf16, rows ld apart) as B tiles, nkb steps per group:
** group g, step s at dst + (g * nkb + s) * 256 u32; tile row q = column pair k0 + 32s + 2q, lane n =
** weight row 16g + n. Rows past nn and columns past nk are 0. */
static void pack_b(uint32_t *dst, const uint16_t *w, int64_t ld, int64_t nn, int64_t k0, int64_t nk, int64_t nkb) {
    for (int64_t g = 0; g * 16 < nn; g++) {
        const uint16_t *rows = w + (size_t)(g * 16) * (size_t)ld + k0;
        int64_t nr = TW_MIN(16, nn - g * 16);
        for (int64_t s = 0; s < nkb; s++) {
            int64_t n = nk - s * KB;
            __mmask32 m = n >= 32 ? (__mmask32)0xffffffffu : n <= 0 ? (__mmask32)0 : (__mmask32)((1u << n) - 1);
            __m512i r[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) {
                /* the next group's rows at this column: rows of one chunk are too short for the
                ** hardware prefetcher to pick up the next ones in time */
                if (g * 16 + 16 + i < nn) _mm_prefetch((const char *)(rows + (size_t)(16 + i) * (size_t)ld + s * KB), _MM_HINT_T0);
                r[i] = i < nr ? _mm512_maskz_loadu_epi16(m, rows + (size_t)i * (size_t)ld + s * KB) : _mm512_setzero_si512();
            }
            tw_transpose16((__m512 *)r);   /* u32 lanes: __m512i and __m512 may alias */
            uint32_t *out = dst + (g * nkb + s) * 256;
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) _mm512_store_si512(out + 16 * i, r[i]);
        }
    }
}

/* ---- the tile block ------------------------------------------------------------------------- */

/* Up to 2 x 2 C tiles: mt token tiles (1 or 2) x nt row groups (1 or 2), over nkb steps. */
typedef struct {
    const uint16_t *a;          /* A tile of token tile 0, part 0, at the first step (parts follow) */
    int64_t         a_tile;     /* bf16 from token tile 0's A to token tile 1's                  */
    int64_t         a_step;     /* bf16 from one step to the next (parts x 512)                   */
    const uint32_t *b[2];       /* B tiles of groups 0 and 1 at the first step                   */
    int64_t         b_step;     /* u32 from one step to the next                                 */
    int64_t         b_ld;       /* bytes between the rows of a B tile                            */
    float          *c[2][2];    /* C tile (token tile i, group j): loaded from and stored to     */
    int64_t         c_ld[2][2]; /* bytes between its rows                                        */
    const float    *bias[2];    /* first chunk: C starts as this row repeated (stride 0), or 0   */
    int64_t         nkb;
    int             mt, nt;
    int             parts;      /* bf16 terms of x: each step multiplies the B tiles by each */
    bool            first;
} tblock;

/* The tile numbers, by role */
#define C00 0
#define C01 1
#define C10 2
#define C11 3
#define A0  4
#define A1  5
#define B0  6
#define B1  7

static void tile_block(const tblock *p) {
    const bool m2 = p->mt == 2, n2 = p->nt == 2;
    if (!p->first) {
        TW_TILE_LOAD(C00, p->c[0][0], p->c_ld[0][0]);
        if (n2) TW_TILE_LOAD(C01, p->c[0][1], p->c_ld[0][1]);
        if (m2) TW_TILE_LOAD(C10, p->c[1][0], p->c_ld[1][0]);
        if (m2 && n2) TW_TILE_LOAD(C11, p->c[1][1], p->c_ld[1][1]);
    } else if (p->bias[0]) {
        TW_TILE_LOAD(C00, p->bias[0], 0);
        if (n2) TW_TILE_LOAD(C01, p->bias[1], 0);
        if (m2) TW_TILE_LOAD(C10, p->bias[0], 0);
        if (m2 && n2) TW_TILE_LOAD(C11, p->bias[1], 0);
    } else {
        TW_TILE_ZERO(C00);
        if (n2) TW_TILE_ZERO(C01);
        if (m2) TW_TILE_ZERO(C10);
        if (m2 && n2) TW_TILE_ZERO(C11);
    }
    const uint16_t *a = p->a;
    const uint32_t *b0 = p->b[0], *b1 = p->b[1];
    for (int64_t s = 0; s < p->nkb; s++) {
        TW_TILE_LOAD(B0, b0, p->b_ld);
        if (n2) TW_TILE_LOAD(B1, b1, p->b_ld);
        for (int q = 0; q < p->parts; q++) {   /* the same weights times each part of x */
            TW_TILE_LOAD(A0, a + q * TILE_U16, 64);
            if (m2) TW_TILE_LOAD(A1, a + p->a_tile + q * TILE_U16, 64);
            TW_TILE_DPBF16(C00, A0, B0);
            if (n2) TW_TILE_DPBF16(C01, A0, B1);
            if (m2) TW_TILE_DPBF16(C10, A1, B0);
            if (m2 && n2) TW_TILE_DPBF16(C11, A1, B1);
        }
        a += p->a_step;
        b0 += p->b_step;
        b1 += p->b_step;
    }
    TW_TILE_STORE(C00, p->c[0][0], p->c_ld[0][0]);
    if (n2) TW_TILE_STORE(C01, p->c[0][1], p->c_ld[0][1]);
    if (m2) TW_TILE_STORE(C10, p->c[1][0], p->c_ld[1][0]);
    if (m2 && n2) TW_TILE_STORE(C11, p->c[1][1], p->c_ld[1][1]);
}

/* ---- the tasks ------------------------------------------------------------------------------ */

typedef struct {
    float          *y;          /* [T, N] */
    const uint16_t *xq;         /* packed x (xpack_task)                                   */
    const uint16_t *w;          /* [N, K] bf16                                              */
    const uint32_t *pre;        /* the weight packed once (tw_gemm_pack_avx512), or NULL    */
    int64_t         pre_stride; /* u32 per 48-row panel of pre                              */
    const float    *bias;       /* [N rounded up to 16] (zero padded), or NULL              */
    int64_t         T, N, K;
    int64_t         nkb, kcb;   /* steps of 32 columns in K; steps per chunk                */
    int64_t         NC, TB;     /* rows per task (multiple of 32), tokens per task (of 32)  */
    int64_t         n_groups;   /* tasks = n_groups x token blocks                          */
    int             parts;
    uint8_t        *bufs;       /* per thread: 4 bounce tiles (4 KB), then the B buffer     */
    size_t          buf_bytes;
} amx_job;

static void amx_task(void *ctx, int64_t i, int tid) {
    const amx_job *j = ctx;
    int64_t n0 = (i % j->n_groups) * j->NC, t0 = (i / j->n_groups) * j->TB;
    int64_t nn = TW_MIN(j->NC, j->N - n0), nt = TW_MIN(j->TB, j->T - t0);
    uint8_t *mine = j->bufs + (size_t)tid * j->buf_bytes;
    float *bounce = (float *)mine;              /* [4][16][16] f32: C tiles cut by T or N */
    uint32_t *bp = (uint32_t *)(mine + 4096);   /* [NC / 16][kcb][256] u32                */
    /* The configuration is per thread (and zeroes the tiles): load it per task, on whatever
    ** thread the pool runs it, and release the tiles after. */
    tw_tile_config(&tile_cfg);
    for (int64_t kb0 = 0; kb0 < j->nkb; kb0 += j->kcb) {
        int64_t nkb = TW_MIN(j->kcb, j->nkb - kb0);
        if (!j->pre) pack_b(bp, j->w + (size_t)n0 * (size_t)j->K, j->K, nn, kb0 * KB, TW_MIN(j->kcb * KB, j->K - kb0 * KB), nkb);
        for (int64_t g = 0; g * 16 < nn; g += 2) {
            tblock p = { .a_tile = j->nkb * j->parts * TILE_U16, .a_step = j->parts * TILE_U16, .nkb = nkb,
                         .nt = (g + 1) * 16 < nn ? 2 : 1, .parts = j->parts, .first = kb0 == 0 };
            for (int c = 0; c < p.nt; c++) {
                if (j->pre) {   /* global 16-row group G: panel G / 3, rows 16 (G % 3).. of it */
                    int64_t G = n0 / 16 + g + c;
                    p.b[c] = j->pre + (G / 3) * j->pre_stride + (G % 3) * 16 + kb0 * 16 * 48;
                } else {
                    p.b[c] = bp + (g + c) * nkb * 256;
                }
                p.bias[c] = j->bias ? j->bias + n0 + (g + c) * 16 : NULL;
            }
            if (p.nt == 1) p.b[1] = p.b[0], p.bias[1] = p.bias[0];
            p.b_step = j->pre ? 16 * 48 : 256;
            p.b_ld = j->pre ? 48 * 4 : 64;
            for (int64_t tt = 0; tt * 16 < nt; tt += 2) {
                p.mt = (tt + 1) * 16 < nt ? 2 : 1;
                p.a = j->xq + ((t0 / 16 + tt) * j->nkb + kb0) * j->parts * TILE_U16;
                int vr[2], vc[2];   /* valid rows (tokens) and columns (outputs) of each C tile */
                for (int a = 0; a < p.mt; a++) vr[a] = (int)TW_MIN(16, j->T - (t0 + (tt + a) * 16));
                for (int c = 0; c < p.nt; c++) vc[c] = (int)TW_MIN(16, j->N - (n0 + (g + c) * 16));
                for (int a = 0; a < p.mt; a++)
                    for (int c = 0; c < p.nt; c++) {
                        float *yt = j->y + (t0 + (tt + a) * 16) * j->N + n0 + (g + c) * 16;
                        if (vr[a] == 16 && vc[c] == 16) {
                            p.c[a][c] = yt;
                            p.c_ld[a][c] = j->N * (int64_t)sizeof(float);
                            continue;
                        }
                        p.c[a][c] = bounce + (2 * a + c) * 256;
                        p.c_ld[a][c] = 64;
                        if (!p.first)
                            for (int r = 0; r < vr[a]; r++) memcpy(p.c[a][c] + 16 * r, yt + r * j->N, sizeof(float) * (size_t)vc[c]);
                    }
                tile_block(&p);
                for (int a = 0; a < p.mt; a++)
                    for (int c = 0; c < p.nt; c++)
                        if (vr[a] < 16 || vc[c] < 16) {
                            float *yt = j->y + (t0 + (tt + a) * 16) * j->N + n0 + (g + c) * 16;
                            for (int r = 0; r < vr[a]; r++) memcpy(yt + r * j->N, p.c[a][c] + 16 * r, sizeof(float) * (size_t)vc[c]);
                        }
            }
        }
    }
    tw_tile_release();
}

/* Packing buffers: tw_ws_take / tw_ws_give (workspace.c), shared by the GEMMs. */

/* Cuts the product into tasks:
**   - NC: 128 rows (4 pairs of groups: each A tile is reused by 4 B pairs per load from L2),
**     halved down to 32 while that gives fewer than 8 tasks per thread (N = 1152 on 2 threads: 64);
**   - TB: all tokens, unless the x block of a task (TB x 512 columns x parts x 2 bytes, swept
**     once per pair of groups) would pass 1 MB — half an L2 of the Sapphire Rapids class — or the
**     tasks would still be fewer than 8 per thread; then equal blocks, multiples of 32. Each block
**     re-packs the weights. */
bool tw_gemm_amx(tw_pool *pool, float *y, const float *x, int64_t T, int64_t N, int64_t K, const uint16_t *w,
                 const void *packed, const float *bias, int parts) {
    amx_job j = { .y = y, .w = w, .pre = packed, .T = T, .N = N, .K = K, .parts = TW_MAX(1, TW_MIN(3, parts)),
                  .pre_stride = (K + 31) / 32 * 16 * 48 };
    const int64_t threads = tw_pool_size(pool), tiles = (T + 15) / 16, n16 = (N + 15) / 16 * 16;
    j.nkb = (K + KB - 1) / KB;
    j.kcb = j.nkb <= KCB + KCB / 2 ? j.nkb : KCB;
    j.NC = 128;
    while (j.NC > 32 && (N + j.NC - 1) / j.NC < 8 * threads) j.NC /= 2;
    j.n_groups = (N + j.NC - 1) / j.NC;
    int64_t tb_cache = TW_MAX(32, ((int64_t)1 << 20) / (j.kcb * KB * j.parts * 2) / 32 * 32);
    int64_t blocks = (T + tb_cache - 1) / tb_cache;
    if (threads > 1 && j.n_groups * blocks < 8 * threads) blocks = TW_MAX(blocks, (8 * threads + j.n_groups - 1) / j.n_groups);
    j.TB = ((T + blocks - 1) / blocks + 31) / 32 * 32;
    blocks = (T + j.TB - 1) / j.TB;

    size_t xq_bytes = sizeof(uint16_t) * (size_t)(tiles * j.nkb * j.parts * TILE_U16);
    size_t bias_bytes = bias ? (sizeof(float) * (size_t)n16 + 63) & ~(size_t)63 : 0;
    j.buf_bytes = 4096 + (packed ? 0 : sizeof(uint32_t) * 256 * (size_t)(j.NC / 16 * j.kcb));
    int slot;
    uint8_t *mem = tw_ws_take(xq_bytes + bias_bytes + j.buf_bytes * (size_t)threads, &slot);
    if (!mem) return false;
    j.xq = (const uint16_t *)mem;
    if (bias) {   /* C starts as the bias row; a 16-wide row must not read past N */
        float *bp = (float *)(mem + xq_bytes);
        memcpy(bp, bias, sizeof(float) * (size_t)N);
        memset(bp + N, 0, sizeof(float) * (size_t)(n16 - N));
        j.bias = bp;
    }
    j.bufs = mem + xq_bytes + bias_bytes;
    xpack_job xj = { .x = x, .xq = (uint16_t *)mem, .T = T, .K = K, .nkb = j.nkb, .parts = j.parts };
    tw_pool_run(pool, tiles, xpack_task, &xj);
    tw_pool_run(pool, j.n_groups * blocks, amx_task, &j);
    tw_ws_give(mem, slot);
    return true;
}
