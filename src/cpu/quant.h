/*
** quant.h — block-quantized weight matrices: Q8_0 and Q4_0, their matmul, and the single-file
** checkpoint's codec (`tower quantize`; the file itself is src/format/qfile.c). See docs/quantization.md.
**
** A quantized matrix is logically [N, K] like any weight; physically each of its N rows is
** ceil(K / 32) blocks of 32 consecutive columns, the last block zero-padded, so any K works
** (SigLIP's 4304 = 134.5 blocks, the tiny model's 13). Block layouts (little-endian):
**
**   Q8_0  34 bytes: f16 d, int8 q[32]                       w[i] = d * q[i]
**   Q4_0  18 bytes: f16 d, uint8 qs[16]                     w[i]      = d * ((qs[i] & 15) - 8)
**                                                            w[i + 16] = d * ((qs[i] >> 4) - 8)
**
** (the nibble order puts columns 0..15 in the low halves and 16..31 in the high halves, so one
** 16-byte load feeds two 16-lane vectors). tw_tensor for a quantized matrix: type TW_DT_Q8_0 /
** TW_DT_Q4_0, shape [N, K], data = N * tw_quant_row_bytes(type, K) bytes.
**
** Activations: by default (TW_QACT_INT8) each matmul call rounds x to int8 per block of 32
** (tw_qx_quantize), every block's dot product is an exact integer sum, scaled by d_w * d_x in
** f32; that is what lets the kernels run at memory speed (VNNI vpdpbusd). TOWER_QUANT_ACT=f32
** (or tw_quant_set_act) keeps x in f32 and widens the weights instead: only the weights are
** rounded, at several times the arithmetic cost. Error figures for both: docs/quantization.md.
*/
#ifndef TW_QUANT_H
#define TW_QUANT_H

#include "kernels.h"
#include "qfile.h"   /* TW_QBLOCK, block sizes and names, the file format */

/* ---- reference (plain C): the definition every faster path is tested against --------------- */

/* One row of K floats into tw_quant_row_bytes(t, K) bytes. Q8_0: d = max|x| / 127 rounded to
** f16, q = round(x / d). Q4_0: the scale is searched (a few candidates around max / -8, then
** one least-squares refinement) to minimise the block's squared error. */
void  tw_quantize_row(tw_dtype t, const float *x, int64_t K, void *out);
void  tw_dequantize_row(tw_dtype t, const void *q, int64_t K, float *out);
/* sum_k w[k] x[k] over one quantized row, f32 sums block by block (x: K floats) */
float tw_quant_dot_ref(tw_dtype t, const void *q, const float *x, int64_t K);

/* ---- int8 activations ------------------------------------------------------------------------ */

/* T rows of K activations rounded per block of 32: d = max|x| / 127 (f32, 0 for an all-zero
** block), q = round half away from zero (x * (127 / max|x|)), clamped to +-127, and s = sum of the
** block's q (the kernels' offset corrections). Rows are padded with zero blocks (d = 0, q = 0,
** s = 0) to ld = a multiple of 16 blocks so kernels can read whole groups. */
typedef struct tw_qx {
    int64_t  T, K, nb, ld;   /* tokens, columns, ceil(K / 32) blocks, blocks per stored row     */
    int8_t  *q;              /* [T][ld * 32]                                                    */
    float   *d;              /* [T][ld]                                                         */
    int32_t *s;              /* [T][ld]                                                         */
    int8_t  *qh;             /* NULL, or q reordered by tw_qx_halves                            */
    void    *mem;            /* the one allocation behind q, d, s (NULL: in a caller's buffer)  */
    bool     qh_owned;       /* qh was allocated by tw_qx_halves                                */
} tw_qx;

/* x rounded with path's code (avx512 and amx: 16 lanes; the others plain C; same bytes), into a
** fresh allocation that tw_qx_free releases. The matmul lays its tw_qx out in the workspace. */
tw_status tw_qx_quantize(tw_qx *a, const float *x, int64_t T, int64_t K, tw_kpath path);
/* Adds qh: the same bytes with every 4 blocks' first 16 columns (4 x 16) stored before their last
** 16 columns, the order in which 64 bytes of Q4_0 nibbles unpack (avx512 decode kernel). */
tw_status tw_qx_halves(tw_qx *a);
void      tw_qx_free(tw_qx *a);

/* sum over blocks of (float)(sum_i qw_i * qx_i) * (d_w * d_x), in block order (qw: the int8
** or nibble - 8 of the weight): the definition the int8 kernels are tested against (their
** integer sums are exact; only the order of the f32 additions differs). */
float tw_quant_dot_i8_ref(tw_dtype t, const void *w, const tw_qx *a, int64_t token);

typedef enum tw_qact { TW_QACT_INT8, TW_QACT_F32 } tw_qact;
/* Current activation mode: TOWER_QUANT_ACT=f32|int8 at first use, default int8. */
tw_qact tw_quant_act(void);
tw_qact tw_quant_set_act(tw_qact m);   /* returns the previous mode */

/* ---- matmul ---------------------------------------------------------------------------------- */

/* The quantized types' entries of wtype.c's table, one per path (amx uses avx512's):
** y[T,N] = x[T,K] . W^T (+ bias), T, N, K >= 1, bias f32 [N] or NULL. Only call a path the CPU
** runs. They never call back into kernels.c: the path is theirs, the f32 tiles they use are the
** SIMD files' (tw_mm_block_*), buffers come from the workspace. */
void tw_matmul_q_ref(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias);
void tw_matmul_q_avx2(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias);
void tw_matmul_q_avx512(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias);

/* SIMD pieces, f32 activations (quant_avx512.c, quant_avx2.c; called only when the path is supported):
** y[r] = dot(row r, x) for r < nrows, rows row_bytes apart starting at w (decode); and
** nrows rows' blocks [b0, b0 + nb) dequantized into out[r * ldo + (b - b0) * 32 ...] (prefill). */
void tw_qdot_rows_avx512(tw_dtype t, const uint8_t *w, size_t row_bytes, int64_t nrows, const float *x, int64_t K,
                         float *y);
void tw_qdot_rows_avx2(tw_dtype t, const uint8_t *w, size_t row_bytes, int64_t nrows, const float *x, int64_t K,
                       float *y);
void tw_qdequant_rows_avx512(tw_dtype t, const uint8_t *w, size_t row_bytes, int64_t nrows, int64_t b0, int64_t nb,
                             float *out, int64_t ldo);
void tw_qdequant_rows_avx2(tw_dtype t, const uint8_t *w, size_t row_bytes, int64_t nrows, int64_t b0, int64_t nb,
                           float *out, int64_t ldo);

/* int8-activation kernels: y[t * ldy + r] = dot(row r, token t0 + t of a) for r < nrows,
** t < nt; the same arithmetic as tw_quant_dot_i8_ref. The avx512 one needs avx512vnni; the avx2
** one uses AVX-VNNI when vnni is true (the CPU must have avxvnni), else vpmaddubsw + vpmaddwd. */
void tw_qdot_i8_rows_avx512(tw_dtype t, const uint8_t *w, size_t row_bytes, int64_t nrows, const tw_qx *a,
                            int64_t t0, int64_t nt, float *y, int64_t ldy);
void tw_qdot_i8_rows_avx2(tw_dtype t, const uint8_t *w, size_t row_bytes, int64_t nrows, const tw_qx *a,
                          int64_t t0, int64_t nt, float *y, int64_t ldy, bool vnni);
/* The same products for many tokens (prefill): rows in panels of 16 repacked into scratch
** (64-byte aligned, tw_qgemm_i8_scratch_avx512(blocks) bytes), tiles of 16 rows x 8 tokens. */
size_t tw_qgemm_i8_scratch_avx512(int64_t nb);
void   tw_qgemm_i8_avx512(tw_dtype t, const uint8_t *w, size_t row_bytes, int64_t nrows, const tw_qx *a, int64_t t0,
                          int64_t nt, float *y, int64_t ldy, void *scratch);
/* tw_qx_quantize's rounding on AVX-512 (same bytes): fills q, d, s of an allocated a */
void tw_qx_rows_avx512(const float *x, int64_t T, int64_t K, tw_qx *a);
/* which int8 kernel the quantized product runs on path p, or on the active path (wtype.c):
** "avx512-vnni", "avx2-vnni", "avx2", "ref" */
const char *tw_quant_i8_kernel_on(tw_kpath p);
const char *tw_quant_i8_kernel(void);

/* ---- quantized checkpoints --------------------------------------------------------------------- */

/* tw_qfile_write (src/format/qfile.h) with this file's block quantization as the codec. */
tw_status tw_quantize_model(const char *dir, const char *out_path, const tw_quant_opts *o);

#endif
