/*
** qfile.h — the single-file quantized checkpoint (`tower quantize`, docs/quantization.md "File"),
** and the names and block sizes of the quantized weight types it stores. Block layouts are in
** src/cpu/quant.h; how a block is computed is the cpu layer's business: the writer gets it from
** the caller as a codec (tw_quantize_model in quant.c hands in quant.c's reference functions).
*/
#ifndef TW_QFILE_H
#define TW_QFILE_H

#include "safetensors.h"

/* weights per block (both formats), and bytes per block: the same figures as dtype.c's table,
** as constants for the kernels (which call nothing of the format layer) */
enum { TW_QBLOCK = 32, TW_Q8_0_BYTES = 34, TW_Q4_0_BYTES = 18 };

size_t  tw_quant_block_bytes(tw_dtype t);              /* 34, 18; 0 for other types          */
int64_t tw_quant_blocks(int64_t K);                    /* ceil(K / 32)                       */
size_t  tw_quant_row_bytes(tw_dtype t, int64_t K);     /* blocks * block bytes               */
bool    tw_quant_parse(const char *s, tw_dtype *t);    /* "q8" / "q8_0" / "q4" / "q4_0"      */
const char *tw_quant_name(tw_dtype t);                 /* "q8_0", "q4_0"                     */

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

/* How rows become blocks and back: one row of K floats into tw_quant_row_bytes(t, K) bytes, and
** the reverse (the writer measures each tensor's error with it). Both are called from the pool's
** threads at once. */
typedef struct tw_qfile_codec {
    void (*quantize_row)(tw_dtype t, const float *x, int64_t K, void *out);
    void (*dequantize_row)(tw_dtype t, const void *q, int64_t K, float *out);
} tw_qfile_codec;

/* Writes the file for checkpoint directory dir at out_path (atomically: a temporary file renamed
** at the end), quantizing 4096 rows at a time on a pool of o->n_threads. */
tw_status tw_qfile_write(const char *dir, const char *out_path, const tw_quant_opts *o, const tw_qfile_codec *c);

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
