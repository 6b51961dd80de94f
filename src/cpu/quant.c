/*
** quant.c — Q8_0 / Q4_0 block quantization (formats in quant.h, design in docs/quantization.md):
** the plain C reference (quantize, dequantize, dot; activation rounding and the int8 dot) and the
** quantized products of each kernel path (tw_matmul_q_*, the Q8_0 / Q4_0 entries of wtype.c's
** table). The path is an argument: nothing here calls kernels.c. The file `tower quantize` writes
** is src/format/qfile.c's; tw_quantize_model hands it this file's row quantizer.
**
** The matmul rounds x to int8 per block of 32 (default) and runs the int8 kernels: decode
** (T <= 4) streams every row once, at memory speed (18 or 34 bytes per 32 weights against BF16's
** 64); prefill (T > 4) uses the packed-panel VNNI GEMM on avx512 and the row kernel elsewhere.
** With TOWER_QUANT_ACT=f32, decode widens weights against f32 x, and prefill dequantizes a panel
** of rows x a chunk of blocks to f32 in a per-thread scratch (L2) for the f32 tiles of kernels.h.
*/
#include "quant.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- formats ------------------------------------------------------------------------------- */

static inline float blk_d(const uint8_t *blk) { return tw_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8)); }

static inline void blk_set_d(uint8_t *blk, uint16_t h) {
    blk[0] = (uint8_t)h;
    blk[1] = (uint8_t)(h >> 8);
}

/* ---- reference quantize / dequantize / dot ------------------------------------------------- */

/* round half away from zero, inline (roundf is a libm call without SSE4.1); |v| < 2^31 here */
static inline float rnd(float v) { return (float)(int32_t)(v + (v >= 0 ? 0.5f : -0.5f)); }

/* d rounded to f16 as stored (clamped to the f16 range) */
static uint16_t scale_f16(float d) { return tw_f32_to_f16(fminf(d, 65504.0f)); }

static void quantize_q8_block(const float *x, uint8_t *blk) {
    float amax = 0;
    for (int i = 0; i < TW_QBLOCK; i++) amax = fmaxf(amax, fabsf(x[i]));
    uint16_t h = scale_f16(amax / 127.0f);
    float d = tw_f16_to_f32(h), id = d > 0 ? 1.0f / d : 0.0f;
    blk_set_d(blk, h);
    for (int i = 0; i < TW_QBLOCK; i++) {
        float q = rnd(x[i] * id);
        blk[2 + i] = (uint8_t)(int8_t)fmaxf(-127.0f, fminf(127.0f, q));
    }
}

/* Q4 values q in 0..15 for scale d (stored as its f16 h); returns the squared error. */
static float q4_try(const float *x, float d, uint8_t *q) {
    float id = d != 0 ? 1.0f / d : 0.0f, e = 0;
    for (int i = 0; i < TW_QBLOCK; i++) {
        float v = rnd(fmaxf(-8.0f, fminf(7.0f, x[i] * id)));
        q[i] = (uint8_t)(v + 8.0f);
        float r = x[i] - v * d;
        e += r * r;
    }
    return e;
}

/* The scale that maps the largest |x| onto -8 (llama.cpp's choice) is not the best for most
** blocks; a few nearby denominators (both signs: the extreme value may sit on +7 instead) and a
** least-squares refit for the chosen q lower the block's squared error (never raise it). */
static void quantize_q4_block(const float *x, uint8_t *blk) {
    static const float den[] = { -8.0f, -8.5f, -7.75f, -7.5f, -7.25f, -7.0f, -6.5f, 6.5f, 7.0f, 7.25f, 7.5f };
    float mx = 0;
    for (int i = 0; i < TW_QBLOCK; i++)
        if (fabsf(x[i]) > fabsf(mx)) mx = x[i];
    uint8_t q[TW_QBLOCK], qb[TW_QBLOCK];
    uint16_t hb = 0;
    float eb = INFINITY;
    if (mx != 0)
        for (size_t c = 0; c < sizeof den / sizeof den[0]; c++) {
            uint16_t h = scale_f16(mx / den[c]);
            float e = q4_try(x, tw_f16_to_f32(h), q);
            if (e < eb) eb = e, hb = h, memcpy(qb, q, sizeof q);
        }
    if (mx != 0) {   /* least squares: d = sum x q / sum q^2 for the chosen q */
        float sxq = 0, sqq = 0;
        for (int i = 0; i < TW_QBLOCK; i++) {
            float v = (float)qb[i] - 8.0f;
            sxq += x[i] * v;
            sqq += v * v;
        }
        if (sqq > 0) {
            uint16_t h = scale_f16(fabsf(sxq / sqq)) | (sxq < 0 ? 0x8000 : 0);
            float e = q4_try(x, tw_f16_to_f32(h), q);
            if (e < eb) eb = e, hb = h, memcpy(qb, q, sizeof q);
        }
    } else {
        memset(qb, 8, sizeof qb);
    }
    blk_set_d(blk, hb);
    for (int i = 0; i < 16; i++) blk[2 + i] = (uint8_t)(qb[i] | qb[i + 16] << 4);
}

/* One block back to 32 floats, and one block's integer dot with 32 int8 activations. */
static void dequant_q8_block(const uint8_t *blk, float *out) {
    float d = blk_d(blk);
    for (int i = 0; i < TW_QBLOCK; i++) out[i] = d * (float)(int8_t)blk[2 + i];
}

static void dequant_q4_block(const uint8_t *blk, float *out) {
    float d = blk_d(blk);
    for (int i = 0; i < 16; i++) {
        out[i] = d * (float)((blk[2 + i] & 15) - 8);
        out[i + 16] = d * (float)((blk[2 + i] >> 4) - 8);
    }
}

static int32_t dot_i8_q8_block(const uint8_t *blk, const int8_t *q) {
    int32_t dot = 0;
    for (int i = 0; i < TW_QBLOCK; i++) dot += (int8_t)blk[2 + i] * q[i];
    return dot;
}

static int32_t dot_i8_q4_block(const uint8_t *blk, const int8_t *q) {
    int32_t dot = 0;
    for (int i = 0; i < 16; i++) dot += ((blk[2 + i] & 15) - 8) * q[i] + ((blk[2 + i] >> 4) - 8) * q[i + 16];
    return dot;
}

/* The block functions of each quantized type (the plain C definitions); a type without a row is
** not a quantized type, and asking for it is a bug (model.c and wtype.c let none through). */
typedef struct {
    size_t  bytes;
    void    (*quantize)(const float *x, uint8_t *blk);
    void    (*dequant)(const uint8_t *blk, float *out);
    int32_t (*dot_i8)(const uint8_t *blk, const int8_t *q);
} qblock_fns;

static const qblock_fns qblocks[TW_DT_COUNT] = {
    [TW_DT_Q8_0] = { TW_Q8_0_BYTES, quantize_q8_block, dequant_q8_block, dot_i8_q8_block },
    [TW_DT_Q4_0] = { TW_Q4_0_BYTES, quantize_q4_block, dequant_q4_block, dot_i8_q4_block },
};

static const qblock_fns *qblock(tw_dtype t) {
    TW_ASSERT((unsigned)t < TW_DT_COUNT && qblocks[t].quantize);
    return &qblocks[t];
}

void tw_quantize_row(tw_dtype t, const float *x, int64_t K, void *out) {
    const qblock_fns *f = qblock(t);
    uint8_t *o = out;
    for (int64_t b = 0; b * TW_QBLOCK < K; b++, o += f->bytes) {
        float v[TW_QBLOCK] = {0};   /* the last block is zero-padded */
        int64_t n = TW_MIN(TW_QBLOCK, K - b * TW_QBLOCK);
        memcpy(v, x + b * TW_QBLOCK, sizeof(float) * (size_t)n);
        f->quantize(v, o);
    }
}

/* nb whole blocks starting at blk into out[nb * 32] */
static void dequant_blocks(tw_dtype t, const uint8_t *blk, int64_t nb, float *out) {
    const qblock_fns *f = qblock(t);
    for (int64_t b = 0; b < nb; b++, blk += f->bytes, out += TW_QBLOCK) f->dequant(blk, out);
}

void tw_dequantize_row(tw_dtype t, const void *q, int64_t K, float *out) {
    int64_t full = K / TW_QBLOCK;
    dequant_blocks(t, q, full, out);
    if (K % TW_QBLOCK) {
        float v[TW_QBLOCK];
        dequant_blocks(t, (const uint8_t *)q + (size_t)full * qblock(t)->bytes, 1, v);
        memcpy(out + full * TW_QBLOCK, v, sizeof(float) * (size_t)(K % TW_QBLOCK));
    }
}

float tw_quant_dot_ref(tw_dtype t, const void *q, const float *x, int64_t K) {
    const uint8_t *blk = q;
    const qblock_fns *f = qblock(t);
    float s = 0;
    for (int64_t k0 = 0; k0 < K; k0 += TW_QBLOCK, blk += f->bytes) {
        float w[TW_QBLOCK], sb = 0;
        f->dequant(blk, w);   /* d * q: the same products as summing q x then scaling, up to rounding */
        int64_t n = TW_MIN(TW_QBLOCK, K - k0);
        for (int64_t i = 0; i < n; i++) sb += w[i] * x[k0 + i];
        s += sb;
    }
    return s;
}

/* ---- int8 activations: quantizing, reference dot -------------------------------------------- */

/* Bytes of the tw_qx of T rows of K values (q, d, s; the padding included), and the layout of one
** in mem (64-byte aligned, that many bytes): pointers set, padding zeroed, nothing quantized yet. */
static size_t qx_bytes(int64_t T, int64_t K) {
    int64_t ld = (tw_quant_blocks(K) + 15) / 16 * 16;
    return (size_t)T * (size_t)ld * (TW_QBLOCK + sizeof(float) + sizeof(int32_t));
}

static void qx_layout(tw_qx *a, void *mem, int64_t T, int64_t K) {
    int64_t nb = tw_quant_blocks(K), ld = (nb + 15) / 16 * 16;
    *a = (tw_qx){ .T = T, .K = K, .nb = nb, .ld = ld };   /* qh = NULL, mem = NULL: not owned */
    a->q = mem;
    a->d = (float *)(a->q + (size_t)T * (size_t)ld * TW_QBLOCK);
    a->s = (int32_t *)(a->d + (size_t)T * (size_t)ld);
    for (int64_t t = 0; t < T; t++) {   /* the padding: columns K.. of q, blocks nb.. of d and s */
        memset(a->q + t * ld * TW_QBLOCK + K, 0, (size_t)(ld * TW_QBLOCK - K));
        memset(a->d + t * ld + nb, 0, sizeof(float) * (size_t)(ld - nb));
        memset(a->s + t * ld + nb, 0, sizeof(int32_t) * (size_t)(ld - nb));
    }
}

/* Plain C below; the avx512 path does the same operations 16 lanes at a time (test_quant checks
** the bytes are equal). */
static void qx_fill(tw_qx *a, const float *x, tw_kpath path) {
    const int64_t T = a->T, K = a->K, nb = a->nb, ld = a->ld;
    if (tw_kpath_vector(path) == TW_KPATH_AVX512) {   /* amx: avx512's vector code */
        tw_qx_rows_avx512(x, T, K, a);
        return;
    }
    for (int64_t t = 0; t < T; t++)
        for (int64_t b = 0; b < nb; b++) {
            const float *xb = x + t * K + b * TW_QBLOCK;
            int64_t n = TW_MIN(TW_QBLOCK, K - b * TW_QBLOCK);
            /* plain comparisons, not fmaxf/fminf (libm calls here), and no branch on the sign */
            float amax = 0;
            for (int64_t i = 0; i < n; i++) {
                float v = fabsf(xb[i]);
                amax = v > amax ? v : amax;
            }
            float id = amax > 0 ? 127.0f / amax : 0.0f;
            int8_t *q = a->q + (t * ld + b) * TW_QBLOCK;
            int32_t sum = 0;
            for (int64_t i = 0; i < n; i++) {   /* rnd(), clamped to +-127 */
                float v = xb[i] * id, u = v + copysignf(0.5f, v);
                u = u > 127.0f ? 127.0f : u < -127.0f ? -127.0f : u;
                q[i] = (int8_t)(int32_t)u;
                sum += q[i];
            }
            a->d[t * ld + b] = amax / 127.0f;
            a->s[t * ld + b] = sum;
        }
}

tw_status tw_qx_quantize(tw_qx *a, const float *x, int64_t T, int64_t K, tw_kpath path) {
    void *mem = tw_aligned_alloc(qx_bytes(T, K));
    if (!mem) return TW_E_NOMEM;
    qx_layout(a, mem, T, K);
    a->mem = mem;
    qx_fill(a, x, path);
    return TW_OK;
}

/* qh into dst (T * ld * 32 bytes) */
static void qx_halves_into(tw_qx *a, int8_t *dst) {
    size_t n = (size_t)a->T * (size_t)a->ld * TW_QBLOCK;
    a->qh = dst;
    for (size_t g = 0; g < n; g += 4 * TW_QBLOCK)   /* ld is a multiple of 16: whole groups of 4 */
        for (int j = 0; j < 4; j++)
            for (int h = 0; h < 2; h++) memcpy(a->qh + g + h * 64 + j * 16, a->q + g + j * TW_QBLOCK + h * 16, 16);
}

tw_status tw_qx_halves(tw_qx *a) {
    int8_t *qh = tw_aligned_alloc((size_t)a->T * (size_t)a->ld * TW_QBLOCK);
    if (!qh) return TW_E_NOMEM;
    qx_halves_into(a, qh);
    a->qh_owned = true;
    return TW_OK;
}

void tw_qx_free(tw_qx *a) {
    if (!a) return;
    tw_aligned_free(a->mem), a->mem = NULL;
    if (a->qh_owned) tw_aligned_free(a->qh);
    a->qh = NULL, a->qh_owned = false;
}

float tw_quant_dot_i8_ref(tw_dtype t, const void *w, const tw_qx *a, int64_t token) {
    const uint8_t *blk = w;
    const qblock_fns *f = qblock(t);
    const int8_t *q = a->q + token * a->ld * TW_QBLOCK;
    const float *dx = a->d + token * a->ld;
    float s = 0;
    for (int64_t b = 0; b < a->nb; b++, blk += f->bytes, q += TW_QBLOCK)
        s += (float)f->dot_i8(blk, q) * (blk_d(blk) * dx[b]);
    return s;
}

static int act_mode = -1;   /* tw_qact, -1 until first read */

tw_qact tw_quant_act(void) {
    if (act_mode < 0) {
        const char *e = getenv("TOWER_QUANT_ACT");
        act_mode = e && strcmp(e, "f32") == 0 ? TW_QACT_F32 : TW_QACT_INT8;
    }
    return (tw_qact)act_mode;
}

tw_qact tw_quant_set_act(tw_qact m) {
    tw_qact old = tw_quant_act();
    act_mode = m;
    return old;
}

/* ---- matmul ------------------------------------------------------------------------------------ */

enum {
    QT_PANEL = 4,      /* f32 activations: from this many tokens on, dequantize panels (f32 tiles) */
    QD_ROWS = 32,      /* f32 activations: rows per decode task                                  */
    QP_ROWS = 64,      /* rows per prefill panel                                                 */
    QP_BLOCKS = 32,    /* blocks (x 32 columns) per K chunk: 64 x 1024 f32 = 256 KB in L2        */
    QI_TOKENS = 16,    /* int8 activations, T > 4: tokens per task (x: 16 x K bytes, L1/L2)       */
};

/* y[r] = dot(row r, x) for r < nrows, plain C (the f32-activation decode of the ref path) */
static void qdot_rows_ref(tw_dtype t, const uint8_t *w, size_t row_bytes, int64_t nrows, const float *x, int64_t K,
                          float *y) {
    for (int64_t r = 0; r < nrows; r++) y[r] = tw_quant_dot_ref(t, w + (size_t)r * row_bytes, x, K);
}

/* The f32-activation pieces of each path: decode rows, and prefill's dequantized panels run
** through the path's f32 tiles (kernels.h). The ref path has no panels (NULL: decode rows for
** every T); amx runs avx512's. */
static const struct {
    void (*dot_rows)(tw_dtype t, const uint8_t *w, size_t row_bytes, int64_t nrows, const float *x, int64_t K, float *y);
    void (*dequant_rows)(tw_dtype t, const uint8_t *w, size_t row_bytes, int64_t nrows, int64_t b0, int64_t nb,
                         float *out, int64_t ldo);
    void (*mm_block)(const tw_mm_block *b);
} qpaths[TW_KPATH_COUNT] = {
    [TW_KPATH_REF] = { qdot_rows_ref, NULL, NULL },
    [TW_KPATH_AVX2] = { tw_qdot_rows_avx2, tw_qdequant_rows_avx2, tw_mm_block_avx2 },
    [TW_KPATH_AVX512] = { tw_qdot_rows_avx512, tw_qdequant_rows_avx512, tw_mm_block_avx512 },
    [TW_KPATH_AMX] = { tw_qdot_rows_avx512, tw_qdequant_rows_avx512, tw_mm_block_avx512 },
};

typedef enum { I8_REF, I8_AVX2, I8_AVX2_VNNI, I8_AVX512 } i8_kernel;

typedef struct qjob {
    float *y;
    const float *x;
    int64_t T, N, K;
    const uint8_t *w;
    size_t rb;              /* bytes per row */
    tw_dtype t;
    tw_kpath path;
    const float *bias;      /* [N] or NULL */
    /* int8 activations */
    const tw_qx *a;
    i8_kernel ik;
    int64_t rows;           /* rows per task */
    uint8_t *gemm;          /* T > 4 on avx512-vnni: [threads][gemm_bytes] packed panels */
    size_t gemm_bytes;
    /* prefill */
    int64_t TB, n_panels;
    float *scratch;         /* [threads][QP_ROWS * QP_BLOCKS * 32] */
} qjob;

/* The int8 kernel the CPU can run on path p: VNNI where it exists, else AVX2's vpmaddubsw; the
** ref path keeps the plain C loop (same arithmetic). */
static i8_kernel i8_pick(tw_kpath p) {
    p = tw_kpath_vector(p);   /* amx: avx512's kernels */
    if (p == TW_KPATH_AVX512 && __builtin_cpu_supports("avx512vnni")) return I8_AVX512;
    if (p >= TW_KPATH_AVX2) return __builtin_cpu_supports("avxvnni") ? I8_AVX2_VNNI : I8_AVX2;
    return I8_REF;
}

const char *tw_quant_i8_kernel_on(tw_kpath p) {
    static const char *names[] = { "ref", "avx2", "avx2-vnni", "avx512-vnni" };
    return names[i8_pick(p)];
}

static void rows_dot(const qjob *j, int64_t n0, int64_t nn, const float *x, float *y) {
    qpaths[j->path].dot_rows(j->t, j->w + (size_t)n0 * j->rb, j->rb, nn, x, j->K, y);
    if (j->bias)
        for (int64_t r = 0; r < nn; r++) y[r] += j->bias[n0 + r];
}

static void decode_task(void *ctx, int64_t i, int tid) {
    const qjob *j = ctx;
    int64_t n0 = i * QD_ROWS, nn = TW_MIN(QD_ROWS, j->N - n0);
    for (int64_t t = 0; t < j->T; t++) rows_dot(j, n0, nn, j->x + t * j->K, j->y + t * j->N + n0);
}

/* int8 activations: rows [n0, n0 + rows) x tokens [t0, t0 + TB) of the task grid */
static void i8_task(void *ctx, int64_t i, int tid) {
    const qjob *j = ctx;
    int64_t n0 = (i % j->n_panels) * j->rows, t0 = (i / j->n_panels) * j->TB;
    int64_t nn = TW_MIN(j->rows, j->N - n0), nt = TW_MIN(j->TB, j->T - t0);
    const uint8_t *w = j->w + (size_t)n0 * j->rb;
    float *y = j->y + t0 * j->N + n0;
    switch (j->ik) {
    case I8_AVX512:
        if (j->gemm) tw_qgemm_i8_avx512(j->t, w, j->rb, nn, j->a, t0, nt, y, j->N, j->gemm + (size_t)tid * j->gemm_bytes);
        else tw_qdot_i8_rows_avx512(j->t, w, j->rb, nn, j->a, t0, nt, y, j->N);
        break;
    case I8_AVX2_VNNI: tw_qdot_i8_rows_avx2(j->t, w, j->rb, nn, j->a, t0, nt, y, j->N, true); break;
    case I8_AVX2: tw_qdot_i8_rows_avx2(j->t, w, j->rb, nn, j->a, t0, nt, y, j->N, false); break;
    case I8_REF:
        for (int64_t r = 0; r < nn; r++)
            for (int64_t t = 0; t < nt; t++)
                y[t * j->N + r] = tw_quant_dot_i8_ref(j->t, w + (size_t)r * j->rb, j->a, t0 + t);
        break;
    }
    if (j->bias)
        for (int64_t t = 0; t < nt; t++)
            for (int64_t r = 0; r < nn; r++) y[t * j->N + r] += j->bias[n0 + r];
}

static void prefill_task(void *ctx, int64_t i, int tid) {
    const qjob *j = ctx;
    int64_t n0 = (i % j->n_panels) * QP_ROWS, t0 = (i / j->n_panels) * j->TB;
    int64_t nn = TW_MIN(QP_ROWS, j->N - n0), nt = TW_MIN(j->TB, j->T - t0), nbk = tw_quant_blocks(j->K);
    float *s = j->scratch + (size_t)tid * QP_ROWS * QP_BLOCKS * TW_QBLOCK;
    const int64_t ld = QP_BLOCKS * TW_QBLOCK;
    for (int64_t b0 = 0; b0 < nbk; b0 += QP_BLOCKS) {
        int64_t nb = TW_MIN(QP_BLOCKS, nbk - b0);
        const uint8_t *w = j->w + (size_t)n0 * j->rb;
        qpaths[j->path].dequant_rows(j->t, w, j->rb, nn, b0, nb, s, ld);
        tw_mm_block b = { .y = j->y + t0 * j->N + n0, .ldy = j->N, .x = j->x + t0 * j->K + b0 * TW_QBLOCK,
                          .ldx = j->K, .w = s, .ldw = ld, .wt = TW_DT_F32, .nt = nt, .nn = nn,
                          .nk = TW_MIN(nb * TW_QBLOCK, j->K - b0 * TW_QBLOCK),
                          .bias = j->bias ? j->bias + n0 : NULL, .accumulate = b0 > 0 };
        qpaths[j->path].mm_block(&b);
    }
}

static size_t align64(size_t n) { return (n + 63) / 64 * 64; }

/* int8 activations: x quantized once, then a grid of row panels x token blocks. Decode (T <= 4)
** gives each task a contiguous run of rows (one sequential stream; about 8 tasks per thread so a
** disturbed thread is caught up by the other). Prefill on avx512-vnni: 64-row panels, each
** repacked once for all the tokens of its task (tokens split only when panels are few); the
** other paths use the row kernel in 64 rows x 16 tokens. The quantized x, its reordered copy and
** the panels live in one workspace buffer (workspace.c), kept between calls. */
static bool matmul_i8(tw_pool *pool, qjob *j) {
    tw_qx a;
    int threads = tw_pool_size(pool);
    j->ik = i8_pick(j->path);
    bool halves = j->T <= 4 && j->ik == I8_AVX512 && j->t == TW_DT_Q4_0;
    size_t qxb = align64(qx_bytes(j->T, j->K));
    size_t hb = halves ? align64((size_t)j->T * (size_t)((tw_quant_blocks(j->K) + 15) / 16 * 16) * TW_QBLOCK) : 0;
    if (j->T > 4 && j->ik == I8_AVX512) j->gemm_bytes = tw_qgemm_i8_scratch_avx512(tw_quant_blocks(j->K));
    int slot;
    uint8_t *mem = tw_ws_take(qxb + hb + (size_t)threads * j->gemm_bytes, &slot);
    if (!mem) return false;
    qx_layout(&a, mem, j->T, j->K);
    qx_fill(&a, j->x, j->path);
    if (halves) qx_halves_into(&a, (int8_t *)mem + qxb);
    if (j->gemm_bytes) j->gemm = mem + qxb + hb;
    j->a = &a;
    if (j->T <= 4) {
        j->TB = j->T;
        j->rows = TW_MAX(16, TW_MIN(256, j->N / (8 * threads)) / 16 * 16);
    } else if (j->gemm) {
        j->rows = QP_ROWS;
        int64_t panels = (j->N + QP_ROWS - 1) / QP_ROWS, want = (8 * threads + panels - 1) / panels;
        j->TB = want > 1 ? TW_MAX(8, ((j->T + want - 1) / want + 7) / 8 * 8) : j->T;
    } else {
        j->TB = QI_TOKENS;
        j->rows = QP_ROWS;
    }
    j->n_panels = (j->N + j->rows - 1) / j->rows;
    tw_pool_run(pool, j->n_panels * ((j->T + j->TB - 1) / j->TB), i8_task, j);
    tw_ws_give(mem, slot);
    return true;
}

/* The product on one path (wtype.c calls it through tw_matmul_q_*): T, N, K >= 1, bias f32 or NULL. */
static void matmul_q(tw_pool *pool, tw_kpath path, float *y, const float *x, int64_t T, const tw_tensor *W,
                     const float *bias) {
    int64_t N = W->shape[0], K = W->shape[W->ndim - 1];
    TW_ASSERT(tw_dtype_is_quant(W->type) && W->ndim == 2 && T > 0 && N > 0 && K > 0);
    TW_ASSERT(W->nbytes == (size_t)N * tw_quant_row_bytes(W->type, K));
    qjob j = { .y = y, .x = x, .T = T, .N = N, .K = K, .w = W->data, .rb = tw_quant_row_bytes(W->type, K),
               .t = W->type, .path = path, .bias = bias };
    if (tw_quant_act() == TW_QACT_INT8 && matmul_i8(pool, &j)) return;
    int threads = tw_pool_size(pool), slot = -1;
    if (T >= QT_PANEL && qpaths[path].mm_block)
        j.scratch = tw_ws_take(sizeof(float) * (size_t)threads * QP_ROWS * QP_BLOCKS * TW_QBLOCK, &slot);
    if (!j.scratch) {
        tw_pool_run(pool, (N + QD_ROWS - 1) / QD_ROWS, decode_task, &j);
    } else {
        j.n_panels = (N + QP_ROWS - 1) / QP_ROWS;
        j.TB = T;
        if (threads > 1 && j.n_panels < 8 * threads) {   /* few panels: split tokens too (as kernels.c) */
            int64_t want = (8 * threads + j.n_panels - 1) / j.n_panels, tb = (T + want - 1) / want;
            j.TB = TW_MAX(6, (tb + 5) / 6 * 6);
        }
        tw_pool_run(pool, j.n_panels * ((T + j.TB - 1) / j.TB), prefill_task, &j);
        tw_ws_give(j.scratch, slot);
    }
}

void tw_matmul_q_ref(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias) {
    matmul_q(pool, TW_KPATH_REF, y, x, T, W, bias);
}

void tw_matmul_q_avx2(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias) {
    matmul_q(pool, TW_KPATH_AVX2, y, x, T, W, bias);
}

void tw_matmul_q_avx512(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias) {
    matmul_q(pool, TW_KPATH_AVX512, y, x, T, W, bias);
}

/* ---- the quantized checkpoint ------------------------------------------------------------------ */

/* The file is src/format/qfile.c's; the blocks in it are computed here. */
tw_status tw_quantize_model(const char *dir, const char *out_path, const tw_quant_opts *o) {
    const tw_qfile_codec codec = { tw_quantize_row, tw_dequantize_row };
    return tw_qfile_write(dir, out_path, o, &codec);
}
