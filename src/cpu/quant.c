/*
** quant.c — Q8_0 / Q4_0 block quantization (formats in quant.h, design in docs/quantization.md):
** the plain C reference (quantize, dequantize, dot; activation rounding and the int8 dot), the
** quantized matmul's dispatcher, and the single-file quantized checkpoint: writing it
** (tw_quantize_model), retyping its blobs when it is opened (tw_quant_apply) and serving its
** embedded JSON files from the mapping (tw_quant_src).
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

bool tw_dtype_is_quant(tw_dtype t) { return t == TW_DT_Q8_0 || t == TW_DT_Q4_0; }

size_t tw_quant_block_bytes(tw_dtype t) { return t == TW_DT_Q8_0 ? 34 : t == TW_DT_Q4_0 ? 18 : 0; }

int64_t tw_quant_blocks(int64_t K) { return (K + TW_QBLOCK - 1) / TW_QBLOCK; }

size_t tw_quant_row_bytes(tw_dtype t, int64_t K) { return (size_t)tw_quant_blocks(K) * tw_quant_block_bytes(t); }

const char *tw_quant_name(tw_dtype t) { return t == TW_DT_Q8_0 ? "q8_0" : t == TW_DT_Q4_0 ? "q4_0" : "?"; }

bool tw_quant_parse(const char *s, tw_dtype *t) {
    if (!s) return false;
    if (strcmp(s, "q8") == 0 || strcmp(s, "q8_0") == 0 || strcmp(s, "Q8_0") == 0) *t = TW_DT_Q8_0;
    else if (strcmp(s, "q4") == 0 || strcmp(s, "q4_0") == 0 || strcmp(s, "Q4_0") == 0) *t = TW_DT_Q4_0;
    else return false;
    return true;
}

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

void tw_quantize_row(tw_dtype t, const float *x, int64_t K, void *out) {
    uint8_t *o = out;
    size_t bb = tw_quant_block_bytes(t);
    for (int64_t b = 0; b * TW_QBLOCK < K; b++, o += bb) {
        float v[TW_QBLOCK] = {0};   /* the last block is zero-padded */
        int64_t n = TW_MIN(TW_QBLOCK, K - b * TW_QBLOCK);
        memcpy(v, x + b * TW_QBLOCK, sizeof(float) * (size_t)n);
        if (t == TW_DT_Q8_0) quantize_q8_block(v, o);
        else quantize_q4_block(v, o);
    }
}

/* nb whole blocks starting at blk into out[nb * 32] */
static void dequant_blocks(tw_dtype t, const uint8_t *blk, int64_t nb, float *out) {
    size_t bb = tw_quant_block_bytes(t);
    for (int64_t b = 0; b < nb; b++, blk += bb, out += TW_QBLOCK) {
        float d = blk_d(blk);
        if (t == TW_DT_Q8_0) {
            for (int i = 0; i < TW_QBLOCK; i++) out[i] = d * (float)(int8_t)blk[2 + i];
        } else {
            for (int i = 0; i < 16; i++) {
                out[i] = d * (float)((blk[2 + i] & 15) - 8);
                out[i + 16] = d * (float)((blk[2 + i] >> 4) - 8);
            }
        }
    }
}

void tw_dequantize_row(tw_dtype t, const void *q, int64_t K, float *out) {
    int64_t full = K / TW_QBLOCK;
    dequant_blocks(t, q, full, out);
    if (K % TW_QBLOCK) {
        float v[TW_QBLOCK];
        dequant_blocks(t, (const uint8_t *)q + (size_t)full * tw_quant_block_bytes(t), 1, v);
        memcpy(out + full * TW_QBLOCK, v, sizeof(float) * (size_t)(K % TW_QBLOCK));
    }
}

float tw_quant_dot_ref(tw_dtype t, const void *q, const float *x, int64_t K) {
    const uint8_t *blk = q;
    size_t bb = tw_quant_block_bytes(t);
    float s = 0;
    for (int64_t k0 = 0; k0 < K; k0 += TW_QBLOCK, blk += bb) {
        float w[TW_QBLOCK], sb = 0;
        dequant_blocks(t, blk, 1, w);   /* d * q: the same products as summing q x then scaling, up to rounding */
        int64_t n = TW_MIN(TW_QBLOCK, K - k0);
        for (int64_t i = 0; i < n; i++) sb += w[i] * x[k0 + i];
        s += sb;
    }
    return s;
}

/* ---- int8 activations: quantizing, reference dot -------------------------------------------- */

/* Plain C below; the avx512 path does the same operations 16 lanes at a time (test_quant checks
** the bytes are equal). */
tw_status tw_qx_quantize(tw_qx *a, const float *x, int64_t T, int64_t K) {
    int64_t nb = tw_quant_blocks(K), ld = (nb + 15) / 16 * 16;
    size_t per = (size_t)ld * (TW_QBLOCK + sizeof(float) + sizeof(int32_t));
    *a = (tw_qx){ .T = T, .K = K, .nb = nb, .ld = ld };   /* qh = NULL */
    if (!(a->mem = tw_aligned_alloc((size_t)T * per))) return TW_E_NOMEM;   /* zeroed: the padding */
    a->q = a->mem;
    a->d = (float *)(a->q + (size_t)T * (size_t)ld * TW_QBLOCK);
    a->s = (int32_t *)(a->d + (size_t)T * (size_t)ld);
    if (tw_kpath_vector(tw_kernels_path()) == TW_KPATH_AVX512) {   /* amx: avx512's vector code */
        tw_qx_rows_avx512(x, T, K, a);
        return TW_OK;
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
    return TW_OK;
}

tw_status tw_qx_halves(tw_qx *a) {
    size_t n = (size_t)a->T * (size_t)a->ld * TW_QBLOCK;
    if (!(a->qh = tw_aligned_alloc(n))) return TW_E_NOMEM;
    for (size_t g = 0; g < n; g += 4 * TW_QBLOCK)   /* ld is a multiple of 16: whole groups of 4 */
        for (int j = 0; j < 4; j++)
            for (int h = 0; h < 2; h++) memcpy(a->qh + g + h * 64 + j * 16, a->q + g + j * TW_QBLOCK + h * 16, 16);
    return TW_OK;
}

void tw_qx_free(tw_qx *a) {
    if (!a) return;
    tw_aligned_free(a->mem), a->mem = NULL;
    tw_aligned_free(a->qh), a->qh = NULL;
}

float tw_quant_dot_i8_ref(tw_dtype t, const void *w, const tw_qx *a, int64_t token) {
    const uint8_t *blk = w;
    const size_t bb = tw_quant_block_bytes(t);
    const int8_t *q = a->q + token * a->ld * TW_QBLOCK;
    const float *dx = a->d + token * a->ld;
    float s = 0;
    for (int64_t b = 0; b < a->nb; b++, blk += bb, q += TW_QBLOCK) {
        int32_t dot = 0;
        if (t == TW_DT_Q8_0) {
            for (int i = 0; i < TW_QBLOCK; i++) dot += (int8_t)blk[2 + i] * q[i];
        } else {
            for (int i = 0; i < 16; i++) dot += ((blk[2 + i] & 15) - 8) * q[i] + ((blk[2 + i] >> 4) - 8) * q[i + 16];
        }
        s += (float)dot * (blk_d(blk) * dx[b]);
    }
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

void tw_quant_row_f32(const tw_tensor *t, int64_t row, float *out) {
    int64_t K = t->shape[t->ndim - 1];
    tw_dequantize_row(t->type, (const uint8_t *)t->data + (size_t)row * tw_quant_row_bytes(t->type, K), K, out);
}

/* ---- matmul ------------------------------------------------------------------------------------ */

enum {
    QT_PANEL = 4,      /* f32 activations: from this many tokens on, dequantize panels (f32 tiles) */
    QD_ROWS = 32,      /* f32 activations: rows per decode task                                  */
    QP_ROWS = 64,      /* rows per prefill panel                                                 */
    QP_BLOCKS = 32,    /* blocks (x 32 columns) per K chunk: 64 x 1024 f32 = 256 KB in L2        */
    QI_TOKENS = 16,    /* int8 activations, T > 4: tokens per task (x: 16 x K bytes, L1/L2)       */
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

/* The int8 kernel the CPU can run on the active path: VNNI where it exists, else AVX2's
** vpmaddubsw; the ref path keeps the plain C loop (same arithmetic). */
static i8_kernel i8_pick(tw_kpath p) {
    p = tw_kpath_vector(p);   /* amx: avx512's kernels */
    if (p == TW_KPATH_AVX512 && __builtin_cpu_supports("avx512vnni")) return I8_AVX512;
    if (p >= TW_KPATH_AVX2) return __builtin_cpu_supports("avxvnni") ? I8_AVX2_VNNI : I8_AVX2;
    return I8_REF;
}

const char *tw_quant_i8_kernel(void) {
    static const char *names[] = { "ref", "avx2", "avx2-vnni", "avx512-vnni" };
    return names[i8_pick(tw_kernels_init())];
}

static void rows_dot(const qjob *j, int64_t n0, int64_t nn, const float *x, float *y) {
    const uint8_t *w = j->w + (size_t)n0 * j->rb;
    switch (j->path) {
    case TW_KPATH_AVX512: tw_qdot_rows_avx512(j->t, w, j->rb, nn, x, j->K, y); break;
    case TW_KPATH_AVX2: tw_qdot_rows_avx2(j->t, w, j->rb, nn, x, j->K, y); break;
    default:
        for (int64_t r = 0; r < nn; r++) y[r] = tw_quant_dot_ref(j->t, w + (size_t)r * j->rb, x, j->K);
        break;
    }
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
    default:
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
        if (j->path == TW_KPATH_AVX512) tw_qdequant_rows_avx512(j->t, w, j->rb, nn, b0, nb, s, ld);
        else tw_qdequant_rows_avx2(j->t, w, j->rb, nn, b0, nb, s, ld);
        tw_mm_block b = { .y = j->y + t0 * j->N + n0, .ldy = j->N, .x = j->x + t0 * j->K + b0 * TW_QBLOCK,
                          .ldx = j->K, .w = s, .ldw = ld, .wt = TW_DT_F32, .nt = nt, .nn = nn,
                          .nk = TW_MIN(nb * TW_QBLOCK, j->K - b0 * TW_QBLOCK),
                          .bias = j->bias ? j->bias + n0 : NULL, .accumulate = b0 > 0 };
        if (j->path == TW_KPATH_AVX512) tw_mm_block_avx512(&b);
        else tw_mm_block_avx2(&b);
    }
}

/* int8 activations: x quantized once, then a grid of row panels x token blocks. Decode (T <= 4)
** gives each task a contiguous run of rows (one sequential stream; about 8 tasks per thread so a
** disturbed thread is caught up by the other). Prefill on avx512-vnni: 64-row panels, each
** repacked once for all the tokens of its task (tokens split only when panels are few); the
** other paths use the row kernel in 64 rows x 16 tokens. */
static bool matmul_i8(tw_pool *pool, qjob *j) {
    tw_qx a;
    int threads = tw_pool_size(pool);
    j->ik = i8_pick(j->path);
    if (j->T > 4 && j->ik == I8_AVX512) {
        j->gemm_bytes = tw_qgemm_i8_scratch_avx512(tw_quant_blocks(j->K));
        if (!(j->gemm = tw_aligned_alloc((size_t)threads * j->gemm_bytes))) return false;
    }
    if (tw_qx_quantize(&a, j->x, j->T, j->K) ||
        (j->T <= 4 && j->ik == I8_AVX512 && j->t == TW_DT_Q4_0 && tw_qx_halves(&a))) {
        tw_qx_free(&a);
        tw_aligned_free(j->gemm);
        return false;
    }
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
    tw_qx_free(&a);
    tw_aligned_free(j->gemm);
    return true;
}

void tw_matmul_quant(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const tw_tensor *bias) {
    int64_t N = W->shape[0], K = W->shape[W->ndim - 1];
    if (T <= 0 || N <= 0) return;
    float *bf = NULL;
    if (bias && bias->type != TW_DT_F32) {
        bf = malloc(sizeof(float) * (size_t)N);
        if (bf) tw_tensor_to_f32(bias, bf);
    }
    qjob j = { .y = y, .x = x, .T = T, .N = N, .K = K, .w = W->data, .rb = tw_quant_row_bytes(W->type, K),
               .t = W->type, .path = tw_kpath_vector(tw_kernels_init()),   /* amx: the avx512 kernels */
               .bias = bf ? bf : bias ? bias->data : NULL };
    if (tw_quant_act() == TW_QACT_INT8 && matmul_i8(pool, &j)) {
        free(bf);
        return;
    }
    int threads = tw_pool_size(pool);
    if (T >= QT_PANEL && j.path != TW_KPATH_REF)
        j.scratch = malloc(sizeof(float) * (size_t)threads * QP_ROWS * QP_BLOCKS * TW_QBLOCK);
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
        free(j.scratch);
    }
    free(bf);
}

/* ---- reading a quantized file's metadata ------------------------------------------------------ */

/* The JSON header of one safetensors file (validated already by tw_st_open_*). */
static tw_status read_header(const char *path, json_t **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return tw_err(TW_E_IO, "%s: %s", path, strerror(errno));
    uint8_t l8[8];
    uint64_t hlen = 0;
    tw_status st = TW_OK;
    char *h = NULL;
    if (fread(l8, 1, 8, f) != 8) st = tw_err(TW_E_FORMAT, "%s: too short for a safetensors file", path);
    for (int i = 7; i >= 0 && !st; i--) hlen = hlen << 8 | l8[i];
    if (!st && hlen > 100u * 1024u * 1024u) st = tw_err(TW_E_FORMAT, "%s: header length %llu is implausible", path,
                                                      (unsigned long long)hlen);
    if (!st && !(h = tw_malloc((size_t)hlen + 1))) st = TW_E_NOMEM;
    if (!st && fread(h, 1, (size_t)hlen, f) != hlen) st = tw_err(TW_E_FORMAT, "%s: header truncated", path);
    fclose(f);
    if (!st) {
        json_error_t je;
        *out = json_loadb(h, (size_t)hlen, 0, &je);
        if (!*out) st = tw_err(TW_E_FORMAT, "%s: header JSON: %s", path, je.text);
    }
    free(h);
    return st;
}

/* "q4_0:32:[N,K]" */
static bool parse_spec(const char *s, tw_dtype *t, int64_t *N, int64_t *K) {
    char ty[16];
    int blk;
    long long n, k;
    char end;
    if (sscanf(s, "%15[^:]:%d:[%lld,%lld%c", ty, &blk, &n, &k, &end) != 5 || end != ']') return false;
    return tw_quant_parse(ty, t) && blk == TW_QBLOCK && n > 0 && k > 0 && (*N = n, *K = k, true);
}

static tw_status apply_file(tw_st_set *s, const char *path) {
    json_t *h = NULL;
    TW_TRY(read_header(path, &h));
    tw_status st = TW_OK;
    const json_t *md = json_object_get(h, "__metadata__");
    const char *key;
    json_t *v;
    static const char pre[] = "tower.quant.";
    if (json_is_object(md))
        json_object_foreach((json_t *)md, key, v) {
            if (strncmp(key, pre, sizeof pre - 1) != 0) continue;
            const char *name = key + sizeof pre - 1;
            tw_dtype t;
            int64_t N, K;
            if (!json_is_string(v) || !parse_spec(json_string_value(v), &t, &N, &K)) {
                st = tw_err(TW_E_FORMAT, "%s: metadata \"%s\" is not \"q8_0|q4_0:32:[N,K]\"", path, key);
                break;
            }
            /* The set owns its tw_tensor array (heap); const is only the lookup's promise to
            ** readers. Retyping in place keeps every tw_st_get pointer valid. */
            tw_tensor *x = (tw_tensor *)tw_st_get(s, name);
            if (!x || strcmp(x->file, path) != 0) {
                st = tw_err(TW_E_FORMAT, "%s: metadata \"%s\" names a tensor the file does not have", path, key);
                break;
            }
            size_t rb = tw_quant_row_bytes(t, K);
            if (x->type != TW_DT_U8 || x->ndim != 2 || x->shape[0] != N || (size_t)x->shape[1] != rb) {
                st = tw_err(TW_E_FORMAT, "%s: tensor \"%s\": %s needs U8 [%lld, %zu] for %s [%lld, %lld]", path, name,
                            json_string_value(v), (long long)N, rb, tw_quant_name(t), (long long)N, (long long)K);
                break;
            }
            x->type = t;
            x->shape[1] = K;
        }
    json_decref(h);
    return st;
}

tw_status tw_quant_apply(tw_st_set *s) {
    const char *done = NULL;   /* shards: each tensor's file, each distinct file once */
    for (size_t i = 0; i < tw_st_count(s); i++) {
        const char *f = tw_st_at(s, i)->file;
        if (f == done) continue;
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++) seen = tw_st_at(s, k)->file == f;
        if (!seen) TW_TRY(apply_file(s, f));
        done = f;
    }
    return TW_OK;
}

/* ---- packed checkpoints: embedded files --------------------------------------------------------- */

static const char FILE_PREFIX[] = "__file__/";

bool tw_quant_is_packed(const char *path) {
    if (!path || !tw_file_exists(path) || tw_dir_exists(path)) return false;
    json_t *h = NULL;
    if (read_header(path, &h)) return false;
    bool yes = json_object_get(h, "__file__/config.json") != NULL;
    json_decref(h);
    return yes;
}

/* an embedded file's name must be a plain file name (the writer takes nothing else) */
static bool plain_name(const char *n) {
    return *n && !strchr(n, '/') && strcmp(n, ".") && strcmp(n, "..") && strcmp(n, "model.safetensors") &&
           strcmp(n, "model.safetensors.index.json");
}

tw_status tw_quant_src(const tw_st_set *s, const char *path, tw_src *out) {
    *out = (tw_src){ .root = path, .packed = true };
    size_t n = 0;
    for (size_t i = 0; i < tw_st_count(s); i++) n += strncmp(tw_st_at(s, i)->name, FILE_PREFIX, sizeof FILE_PREFIX - 1) == 0;
    if (!n) return tw_err(TW_E_FORMAT, "%s: no embedded files (\"__file__/config.json\", ...): not a packed checkpoint",
                          path);
    if (!(out->files = tw_calloc(n, sizeof *out->files))) return TW_E_NOMEM;
    for (size_t i = 0; i < tw_st_count(s); i++) {
        const tw_tensor *t = tw_st_at(s, i);
        if (strncmp(t->name, FILE_PREFIX, sizeof FILE_PREFIX - 1) != 0) continue;
        const char *nm = t->name + sizeof FILE_PREFIX - 1;
        if (!plain_name(nm) || t->type != TW_DT_U8) {
            tw_src_free(out);
            return tw_err(TW_E_FORMAT, "%s: embedded file \"%s\" is not a plain file name with U8 data", path, t->name);
        }
        out->files[out->n_files++] = (tw_src_file){ nm, t->data, t->nbytes };
    }
    return TW_OK;
}

/* ---- writing a quantized checkpoint -------------------------------------------------------------- */

typedef enum { E_COPY, E_QUANT, E_FILE } ent_kind;

typedef struct qent {
    const char      *name;     /* output tensor name (owned for files)   */
    ent_kind         kind;
    const tw_tensor *src;      /* E_COPY, E_QUANT                        */
    char            *fdata;    /* E_FILE contents                        */
    tw_dtype         type;     /* output dtype                           */
    tw_dtype         qtype;    /* E_QUANT: Q8_0 / Q4_0                   */
    int              ndim;
    int64_t          shape[TW_MAX_DIMS];
    size_t           nbytes;
    uint64_t         off;
    double           rel_rms;  /* E_QUANT                                */
} qent;

static bool is_vision(const char *n) { return strstr(n, "vision_tower") || strstr(n, "multi_modal_projector"); }

/* Which tensors get quantized: 2-D float matrices used as matmul weights or token embeddings. */
static bool want_quant(const tw_tensor *t, const tw_quant_opts *o) {
    size_t l = strlen(t->name);
    if (t->ndim != 2 || t->shape[0] < 2 || t->shape[1] < 2) return false;
    if (t->type != TW_DT_F32 && t->type != TW_DT_F16 && t->type != TW_DT_BF16) return false;
    if (l < 7 || strcmp(t->name + l - 7, ".weight") != 0 || strstr(t->name, "position_embedding")) return false;
    if (o->keep_vision && is_vision(t->name)) return false;
    if (o->keep_embed && strstr(t->name, "embed_tokens")) return false;
    return true;
}

static int ent_data_cmp(const void *a, const void *b) {   /* wider elements first: natural alignment */
    const qent *x = *(const qent *const *)a, *y = *(const qent *const *)b;
    size_t sx = tw_dtype_size(x->type), sy = tw_dtype_size(y->type);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Quantizing rows [r0, r0 + n) of one tensor in parallel; each task keeps its error sums. */
typedef struct qwork {
    const tw_tensor *src;
    tw_dtype type;
    int64_t K, r0, n;
    size_t rb;
    uint8_t *out;        /* [n * rb] */
    double (*err)[2];    /* [tasks] sum (w - w')^2, sum w^2 */
} qwork;

enum { QW_ROWS = 16 };

static void quant_task(void *ctx, int64_t i, int tid) {
    qwork *q = ctx;
    float *w = malloc(sizeof(float) * 2 * (size_t)q->K);
    if (!w) return;   /* the caller checks every task ran (err[i][1] set below) */
    float *back = w + q->K;
    double e = 0, s = 0;
    for (int64_t r = i * QW_ROWS; r < TW_MIN((i + 1) * QW_ROWS, q->n); r++) {
        uint8_t *o = q->out + (size_t)r * q->rb;
        tw_tensor_row_f32(q->src, q->r0 + r, w);
        tw_quantize_row(q->type, w, q->K, o);
        tw_dequantize_row(q->type, o, q->K, back);
        for (int64_t k = 0; k < q->K; k++) {
            double d = (double)w[k] - back[k];
            e += d * d;
            s += (double)w[k] * w[k];
        }
    }
    q->err[i][0] = e;
    q->err[i][1] = s;
    free(w);
}

static tw_status write_all(FILE *f, const char *path, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, f) != n) return tw_err(TW_E_IO, "%s: write: %s", path, strerror(errno));
    return TW_OK;
}

static tw_status write_quant(FILE *f, const char *path, qent *e, tw_pool *pool) {
    const int64_t N = e->src->shape[0], K = e->src->shape[1], CH = 4096;
    size_t rb = tw_quant_row_bytes(e->qtype, K);
    uint8_t *buf = tw_malloc((size_t)TW_MIN(CH, N) * rb);
    double (*err)[2] = tw_calloc((size_t)(CH + QW_ROWS - 1) / QW_ROWS, sizeof *err);
    tw_status st = buf && err ? TW_OK : TW_E_NOMEM;
    double se = 0, ss = 0;
    for (int64_t r0 = 0; r0 < N && !st; r0 += CH) {
        qwork q = { e->src, e->qtype, K, r0, TW_MIN(CH, N - r0), rb, buf, err };
        int64_t tasks = (q.n + QW_ROWS - 1) / QW_ROWS;
        for (int64_t i = 0; i < tasks; i++) err[i][1] = -1;
        tw_pool_run(pool, tasks, quant_task, &q);
        for (int64_t i = 0; i < tasks; i++) {
            if (err[i][1] < 0) st = TW_E_NOMEM;
            se += err[i][0];
            ss += err[i][1];
        }
        if (!st) st = write_all(f, path, buf, (size_t)q.n * rb);
    }
    e->rel_rms = ss > 0 ? sqrt(se / ss) : 0;
    free(buf);
    free(err);
    return st;
}

/* Entries for the embedded files: the directory's *.json and *.jinja files. */
static tw_status add_files(const char *dir, qent **ents, size_t *n) {
    DIR *d = opendir(dir);
    if (!d) return tw_err(TW_E_IO, "%s: %s", dir, strerror(errno));
    tw_status st = TW_OK;
    struct dirent *de;
    while (!st && (de = readdir(d))) {
        const char *nm = de->d_name;
        size_t l = strlen(nm);
        bool json = l > 5 && strcmp(nm + l - 5, ".json") == 0, jinja = l > 6 && strcmp(nm + l - 6, ".jinja") == 0;
        if ((!json && !jinja) || !plain_name(nm)) continue;
        char *p = tw_path_join(dir, nm);
        if (!p) { st = TW_E_NOMEM; break; }
        if (tw_dir_exists(p)) { free(p); continue; }
        qent e = { .kind = E_FILE, .type = TW_DT_U8, .ndim = 1 };
        st = tw_read_file(p, &e.fdata, &e.nbytes);
        free(p);
        if (st) break;
        e.shape[0] = (int64_t)e.nbytes;
        e.name = tw_asprintf("%s%s", FILE_PREFIX, nm);
        qent *g = tw_realloc(*ents, (*n + 1) * sizeof *g);
        if (!e.name || !g) {
            free((char *)e.name);
            free(e.fdata);
            if (g) *ents = g;
            st = TW_E_NOMEM;
            break;
        }
        *ents = g;
        (*ents)[(*n)++] = e;
    }
    closedir(d);
    return st;
}

tw_status tw_quantize_model(const char *dir, const char *out_path, const tw_quant_opts *o) {
    if (!dir || !out_path || !o || !tw_dtype_is_quant(o->type))
        return tw_err(TW_E_ARG, "tw_quantize_model: dir, out_path and a q8_0/q4_0 type are required");
    char *cfg = tw_path_join(dir, "config.json");
    bool has_cfg = cfg && tw_file_exists(cfg);
    free(cfg);
    if (!has_cfg) return tw_err(TW_E_NOT_FOUND, "%s: no config.json: not a checkpoint directory", dir);
    tw_st_set *s = NULL;
    TW_TRY(tw_st_open_dir(dir, &s));
    size_t nt = tw_st_count(s), n = 0;
    qent *ents = tw_calloc(nt + 1, sizeof *ents);
    qent **order = NULL;
    tw_pool *pool = NULL;
    json_t *h = NULL, *md = NULL;
    char *hs = NULL, *tmp = NULL;
    FILE *f = NULL;
    tw_status st = ents ? TW_OK : TW_E_NOMEM;
    for (size_t i = 0; i < nt && !st; i++) {
        const tw_tensor *t = tw_st_at(s, i);
        if (strncmp(t->name, FILE_PREFIX, sizeof FILE_PREFIX - 1) == 0) continue;   /* re-quantizing: files below */
        if (tw_dtype_is_quant(t->type)) {
            st = tw_err(TW_E_UNSUPPORTED, "%s: tensor \"%s\" is already quantized", dir, t->name);
            break;
        }
        qent e = { .name = t->name, .src = t, .type = t->type, .ndim = t->ndim, .nbytes = t->nbytes };
        memcpy(e.shape, t->shape, sizeof e.shape);
        if (want_quant(t, o)) {
            e.kind = E_QUANT;
            e.type = TW_DT_U8;
            e.qtype = o->type;
            e.shape[1] = (int64_t)tw_quant_row_bytes(o->type, t->shape[1]);
            e.nbytes = (size_t)t->shape[0] * (size_t)e.shape[1];
        }
        ents[n++] = e;
    }
    size_t n_tensors = n;
    if (!st) st = add_files(dir, &ents, &n);

    /* header: tensors in data order, offsets contiguous (the format allows no holes) */
    if (!st && !(order = tw_malloc((n + 1) * sizeof *order))) st = TW_E_NOMEM;
    if (!st) {
        for (size_t i = 0; i < n; i++) order[i] = &ents[i];
        qsort(order, n, sizeof *order, ent_data_cmp);
        uint64_t off = 0;
        for (size_t i = 0; i < n; i++) order[i]->off = off, off += order[i]->nbytes;
        h = json_object();
        md = json_object();
        if (!h || !md) st = TW_E_NOMEM;
        json_object_set_new(md, "format", json_string("pt"));
        json_object_set_new(md, "tower.format", json_string("towervision-quant/1"));
        json_object_set_new(md, "tower.quant_type", json_string(tw_quant_name(o->type)));
        for (size_t i = 0; i < n && !st; i++) {
            const qent *e = &ents[i];
            json_t *sh = json_array(), *t = json_object();
            for (int d = 0; d < e->ndim; d++) json_array_append_new(sh, json_integer(e->shape[d]));
            json_object_set_new(t, "dtype", json_string(tw_dtype_name(e->type)));
            json_object_set_new(t, "shape", sh);
            json_object_set_new(t, "data_offsets",
                                json_pack("[II]", (json_int_t)e->off, (json_int_t)(e->off + e->nbytes)));
            if (json_object_set_new(h, e->name, t)) st = tw_err(TW_E_ARG, "tensor name \"%s\" is not UTF-8", e->name);
            if (e->kind == E_QUANT) {
                char k[600], v[96];
                snprintf(k, sizeof k, "tower.quant.%s", e->name);
                snprintf(v, sizeof v, "%s:%d:[%lld,%lld]", tw_quant_name(o->type), TW_QBLOCK,
                         (long long)e->src->shape[0], (long long)e->src->shape[1]);
                json_object_set_new(md, k, json_string(v));
            }
        }
        json_object_set(h, "__metadata__", md);
        if (!st && !(hs = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS))) st = TW_E_NOMEM;
    }
    if (!st && !(pool = tw_pool_new(o->n_threads))) st = tw_err(TW_E_NOMEM, "could not start the thread pool");
    if (!st && !(tmp = tw_asprintf("%s.tmp.%ld", out_path, (long)getpid()))) st = TW_E_NOMEM;
    if (!st && !(f = fopen(tmp, "wb"))) st = tw_err(TW_E_IO, "%s: %s", tmp, strerror(errno));
    if (!st) {
        size_t hl = strlen(hs), pad = (64 - (8 + hl) % 64) % 64;   /* data starts 64-aligned */
        uint8_t l8[8];
        for (int i = 0; i < 8; i++) l8[i] = (uint8_t)((uint64_t)(hl + pad) >> (8 * i));
        st = write_all(f, tmp, l8, 8);
        if (!st) st = write_all(f, tmp, hs, hl);
        for (size_t i = 0; i < pad && !st; i++) st = write_all(f, tmp, " ", 1);
    }
    for (size_t i = 0; i < n && !st; i++) {
        qent *e = order[i];
        if (e->kind == E_COPY) st = write_all(f, tmp, e->src->data, e->nbytes);
        else if (e->kind == E_FILE) st = write_all(f, tmp, e->fdata, e->nbytes);
        else st = write_quant(f, tmp, e, pool);
    }
    if (f) {
        if (!st && (fflush(f) != 0 || fsync(fileno(f)) != 0)) st = tw_err(TW_E_IO, "%s: %s", tmp, strerror(errno));
        if (fclose(f) != 0 && !st) st = tw_err(TW_E_IO, "%s: close: %s", tmp, strerror(errno));
        if (!st && rename(tmp, out_path) != 0)
            st = tw_err(TW_E_IO, "%s: rename to %s: %s", tmp, out_path, strerror(errno));
        if (st) unlink(tmp);
    }
    if (!st && o->report)
        for (size_t i = 0; i < n_tensors; i++) {
            const qent *e = &ents[i];
            int nd = e->src->ndim;
            int64_t N = nd > 1 ? e->src->shape[0] : 1, K = nd > 0 ? e->src->shape[nd - 1] : 1;
            o->report(o->user, e->name, e->kind == E_QUANT ? tw_quant_name(o->type) : tw_dtype_name(e->type), N, K,
                      e->kind == E_QUANT ? e->rel_rms : 0);
        }
    for (size_t i = n_tensors; i < n; i++) {
        free((char *)ents[i].name);
        free(ents[i].fdata);
    }
    free(ents);
    free(order);
    free(hs);
    free(tmp);
    json_decref(md);
    json_decref(h);
    tw_pool_free(pool);
    tw_st_close(s);
    return st;
}
