/*
** quant.h — block-quantized weight matrices: Q8_0 and Q4_0, their matmul, and the single-file
** quantized checkpoint (`tower quantize`). See docs/quantization.md.
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
#include "safetensors.h"

enum { TW_QBLOCK = 32 };   /* weights per block, both formats */

bool    tw_dtype_is_quant(tw_dtype t);
size_t  tw_quant_block_bytes(tw_dtype t);              /* 34, 18; 0 for other types          */
int64_t tw_quant_blocks(int64_t K);                    /* ceil(K / 32)                       */
size_t  tw_quant_row_bytes(tw_dtype t, int64_t K);     /* blocks * block bytes               */
bool    tw_quant_parse(const char *s, tw_dtype *t);    /* "q8" / "q8_0" / "q4" / "q4_0"      */
const char *tw_quant_name(tw_dtype t);                 /* "q8_0", "q4_0"                     */

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
    void    *mem;            /* the one allocation behind q, d, s                               */
} tw_qx;

tw_status tw_qx_quantize(tw_qx *a, const float *x, int64_t T, int64_t K);
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

/* tw_matmul for quantized W (tw_matmul hands them here). y[T,N] = x[T,K] . W^T (+ bias). */
void tw_matmul_quant(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const tw_tensor *bias);
/* One row dequantized (embedding lookup of a quantized embed_tokens). */
void tw_quant_row_f32(const tw_tensor *t, int64_t row, float *out);

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
/* which int8 kernel tw_matmul_quant uses: "avx512-vnni", "avx2-vnni", "avx2", "ref" */
const char *tw_quant_i8_kernel(void);

/* ---- quantized checkpoints --------------------------------------------------------------------- */

/* What `tower quantize` makes of a checkpoint directory: one .safetensors file holding
**   - every 2-D weight matrix (".weight", both dims > 1, not a position embedding) quantized, as a
**     U8 tensor [N, row_bytes] plus metadata "tower.quant.<name>": "q4_0:32:[N,K]";
**   - every other tensor as it was (norms, biases, the patch convolution, position embeddings);
**   - the directory's *.json and *.jinja files as U8 tensors "__file__/<name>";
** and "tower.format": "towervision-quant/1". keep_vision keeps the SigLIP tower and the projector
** in their stored type; keep_embed keeps embed_tokens (and so a tied lm_head). */
typedef struct tw_quant_opts {
    tw_dtype type;          /* TW_DT_Q8_0 or TW_DT_Q4_0 */
    bool     keep_vision;
    bool     keep_embed;
    int      n_threads;     /* 0: every core */
    /* called once per tensor written (may be NULL): how it was stored and, for quantized ones,
    ** the RMS relative error sqrt(sum (w - w')^2 / sum w^2) */
    void   (*report)(void *user, const char *name, const char *how, int64_t N, int64_t K, double rel_rms);
    void    *user;
} tw_quant_opts;

tw_status tw_quantize_model(const char *dir, const char *out_path, const tw_quant_opts *o);

/* Retypes the quantized U8 blobs of an opened set to TW_DT_Q8_0 / TW_DT_Q4_0 [N, K] as the files'
** "tower.quant.*" metadata says (checking sizes); a set without such metadata is left alone. */
tw_status tw_quant_apply(tw_st_set *s);
/* True if path is a regular file holding embedded checkpoint files ("__file__/config.json"). */
bool      tw_quant_is_packed(const char *path);
/* The embedded files of an opened packed checkpoint as a file source (tw_internal.h) that the
** loaders read config.json, tokenizer.json, ... from, straight from the mapping: nothing is
** written anywhere. path names the file in messages ("path:config.json"); s must stay open while
** out is used; free out with tw_src_free. */
tw_status tw_quant_src(const tw_st_set *s, const char *path, tw_src *out);

#endif
