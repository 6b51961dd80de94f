/*
** wtype.h — what the kernels do with each weight type, in one table (in the spirit of ggml's type
** traits). The sizes of a type (values and bytes per block, row bytes) are the format's
** (src/format/dtype.c); this table adds the functions: widening a row to f32 and the matrix product
** on each kernel path (decode and GEMM are chosen inside it, by the number of tokens). tw_matmul, tw_tensor_row_f32 and tw_tensor_to_f32 look a
** weight's type up here and call what they find; nothing below them branches on the weight type
** to pick a kernel, and a type without an entry cannot reach a kernel: model.c refuses it at load
** (tw_wtype_check, naming the tensor) and the dispatcher asserts it (TW_ASSERT, debug builds).
**
** Layering inside src/cpu: the SIMD files (arithmetic only) < kernels.c (paths, float kernels)
** and quant.c (block kernels), which never call each other < wtype.c (this table, tw_matmul).
*/
#ifndef TW_WTYPE_H
#define TW_WTYPE_H

#include "kernels.h"

/* y[T,N] = x[T,K] . W[N,K]^T (+ bias[N] f32): T, N, K >= 1 (see kernels.h) */
typedef void (*tw_matmul_fn)(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias);

typedef struct tw_wtype {
    tw_dtype     type;
    /* the first n values of one row (row bytes: tw_dtype_row_bytes) widened to f32 */
    void       (*to_f32)(const void *row, float *out, int64_t n);
    /* the product on each path; every entry of the table fills every path */
    tw_matmul_fn matmul[TW_KPATH_COUNT];
} tw_wtype;

/* The entry of type t, or NULL when no kernel reads t. */
const tw_wtype *tw_wtype_of(tw_dtype t);

/* For loaders: TW_OK if tensor t of the stated number of dimensions can be handed to the kernels
** (tw_matmul when 2-D, tw_tensor_to_f32 / tw_tensor_row_f32 always), else TW_E_WEIGHTS with a
** message naming t's file and name. */
tw_status tw_wtype_check(const tw_tensor *t, int ndim);

#endif
