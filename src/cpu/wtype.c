/*
** wtype.c — the weight-type table (wtype.h) and the entry points that read it: tw_matmul,
** tw_tensor_row_f32, tw_tensor_to_f32. The only file of src/cpu that knows both the float kernels
** (kernels.c) and the block kernels (quant.c); neither of those calls the other.
*/
#include "wtype.h"
#include "quant.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- widening one row ------------------------------------------------------------------------ */

static void f32_to_f32(const void *row, float *out, int64_t n) { tw_dtype_widen(TW_DT_F32, row, out, n); }
static void f16_to_f32(const void *row, float *out, int64_t n) { tw_dtype_widen(TW_DT_F16, row, out, n); }
static void bf16_to_f32(const void *row, float *out, int64_t n) { tw_dtype_widen(TW_DT_BF16, row, out, n); }
static void q8_0_to_f32(const void *row, float *out, int64_t n) { tw_dequantize_row(TW_DT_Q8_0, row, n, out); }
static void q4_0_to_f32(const void *row, float *out, int64_t n) { tw_dequantize_row(TW_DT_Q4_0, row, n, out); }

/* ---- the table ------------------------------------------------------------------------------- */

/* The amx path differs from avx512 only for BF16 weights (tile GEMM); for every other type it runs
** avx512's product. The quantized types have no kernel of their own on amx either. */
static const tw_wtype wtypes[TW_DT_COUNT] = {
    [TW_DT_F32] = { TW_DT_F32, f32_to_f32,
                    { tw_matmul_f32_ref, tw_matmul_f_avx2, tw_matmul_f_avx512, tw_matmul_f_avx512 } },
    [TW_DT_F16] = { TW_DT_F16, f16_to_f32,
                    { tw_matmul_f16_ref, tw_matmul_f_avx2, tw_matmul_f_avx512, tw_matmul_f_avx512 } },
    [TW_DT_BF16] = { TW_DT_BF16, bf16_to_f32,
                     { tw_matmul_bf16_ref, tw_matmul_f_avx2, tw_matmul_f_avx512, tw_matmul_bf16_amx } },
    [TW_DT_Q8_0] = { TW_DT_Q8_0, q8_0_to_f32,
                     { tw_matmul_q_ref, tw_matmul_q_avx2, tw_matmul_q_avx512, tw_matmul_q_avx512 } },
    [TW_DT_Q4_0] = { TW_DT_Q4_0, q4_0_to_f32,
                     { tw_matmul_q_ref, tw_matmul_q_avx2, tw_matmul_q_avx512, tw_matmul_q_avx512 } },
};

const tw_wtype *tw_wtype_of(tw_dtype t) {
    if ((unsigned)t >= TW_DT_COUNT || !wtypes[t].to_f32) return NULL;
    return &wtypes[t];
}

/* Every filled entry must fill every path (a NULL would be a kernel that silently does nothing). */
static bool wtype_complete(const tw_wtype *w) {
    for (int p = 0; p < TW_KPATH_COUNT; p++)
        if (!w->matmul[p]) return false;
    return true;
}

tw_status tw_wtype_check(const tw_tensor *t, int ndim) {
    const tw_wtype *w = tw_wtype_of(t->type);
    bool quant = tw_dtype_is_quant(t->type);
    if (!w && !quant)
        return tw_err(TW_E_WEIGHTS, "%s: tensor \"%s\": dtype %s, expected F32, F16 or BF16", t->file, t->name,
                      tw_dtype_name(t->type));
    if (!w || !wtype_complete(w))
        return tw_err(TW_E_WEIGHTS, "%s: tensor \"%s\": dtype %s has no kernel on every path", t->file, t->name,
                      tw_dtype_name(t->type));
    if (quant && ndim != 2)   /* blocks run along rows: only matrices */
        return tw_err(TW_E_WEIGHTS, "%s: tensor \"%s\": dtype %s, but only 2-D weights may be quantized", t->file,
                      t->name, tw_dtype_name(t->type));
    return TW_OK;
}

/* ---- entry points ------------------------------------------------------------------------------ */

void tw_matmul(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const tw_tensor *bias) {
    const tw_wtype *w = tw_wtype_of(W->type);
    TW_ASSERT(w != NULL);   /* model.c refused the type at load (tw_wtype_check) */
    TW_ASSERT(W->ndim >= 2 && (!bias || tw_tensor_nelem(bias) == W->shape[0]));
    tw_kpath path = tw_kernels_init();
    int64_t N = W->shape[0], K = W->shape[W->ndim - 1];
    /* rows of whole blocks or elements, naturally aligned float elements (model.c checked both) */
    TW_ASSERT(W->ndim > 2 || W->nbytes == (size_t)N * tw_dtype_row_bytes(W->type, K));
    TW_ASSERT(tw_dtype_is_quant(W->type) || (uintptr_t)W->data % tw_dtype_size(W->type) == 0);
    if (T <= 0 || N <= 0) return;
    /* an f32 bias is used in place; other types are widened once per call, into the workspace */
    int slot = -1;
    float *bf = NULL;
    const float *b = NULL;
    if (bias && bias->type == TW_DT_F32) {
        b = bias->data;
    } else if (bias) {
        if (!(bf = tw_ws_take(sizeof(float) * (size_t)N, &slot))) {
            fprintf(stderr, "tw_matmul: out of memory for the bias of %s (%lld floats)\n", W->name, (long long)N);
            abort();   /* no status to return, and a product without its bias would be a silent error */
        }
        tw_tensor_to_f32(bias, bf);
        b = bf;
    }
    if (K <= 0) {   /* an empty sum: y = bias */
        for (int64_t t = 0; t < T; t++)
            for (int64_t n = 0; n < N; n++) y[t * N + n] = b ? b[n] : 0.0f;
    } else {
        w->matmul[path](pool, y, x, T, W, b);
    }
    if (bf) tw_ws_give(bf, slot);
}

void tw_matmul_rows(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const tw_tensor *bias) {
    int64_t N = W->shape[0], K = W->shape[W->ndim - 1];
    if (T > 1 && !bias && tw_matmul_rows_avx2(pool, y, x, T, W, NULL)) return;
    for (int64_t t = 0; t < T; t++) tw_matmul(pool, y + t * N, x + t * K, 1, W, bias);
}

void tw_tensor_row_f32(const tw_tensor *t, int64_t row, float *out) {
    const tw_wtype *w = tw_wtype_of(t->type);
    TW_ASSERT(w != NULL);
    int64_t K = t->shape[t->ndim - 1];
    w->to_f32((const uint8_t *)t->data + (size_t)row * tw_dtype_row_bytes(t->type, K), out, K);
}

void tw_tensor_to_f32(const tw_tensor *t, float *out) {
    const tw_wtype *w = tw_wtype_of(t->type);
    TW_ASSERT(w != NULL);
    if (t->ndim == 0) {
        w->to_f32(t->data, out, 1);
        return;
    }
    /* row by row: a block type's rows start on block boundaries */
    int64_t K = t->shape[t->ndim - 1], rows = K > 0 ? tw_tensor_nelem(t) / K : 0;
    size_t rb = tw_dtype_row_bytes(t->type, K);
    for (int64_t r = 0; r < rows; r++) w->to_f32((const uint8_t *)t->data + (size_t)r * rb, out + r * K, K);
}

const char *tw_quant_i8_kernel(void) { return tw_quant_i8_kernel_on(tw_kernels_init()); }
