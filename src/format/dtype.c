/* dtype.c — element types of tensors: how safetensors names them, their sizes (the quantized
** types in blocks, as ggml's type traits do: values per block and bytes per block), and the
** widening of the plain float types to f32. What a kernel does with a type is src/cpu/wtype.c's. */
#include "safetensors.h"

static const struct {
    const char *name;
    size_t      size;    /* bytes per element; 0 for block types (not a safetensors dtype) */
    int64_t     blck;    /* values per block: 1, or 32 for the quantized types             */
    size_t      blck_bytes;
} dtypes[TW_DT_COUNT] = {
    [TW_DT_F32] = { "F32", 4, 1, 4 }, [TW_DT_F16] = { "F16", 2, 1, 2 }, [TW_DT_BF16] = { "BF16", 2, 1, 2 },
    [TW_DT_F64] = { "F64", 8, 1, 8 }, [TW_DT_I64] = { "I64", 8, 1, 8 }, [TW_DT_I32] = { "I32", 4, 1, 4 },
    [TW_DT_I16] = { "I16", 2, 1, 2 }, [TW_DT_I8] = { "I8", 1, 1, 1 },   [TW_DT_U8] = { "U8", 1, 1, 1 },
    [TW_DT_BOOL] = { "BOOL", 1, 1, 1 },
    /* f16 scale + 32 int8; f16 scale + 32 nibbles (src/cpu/quant.h) */
    [TW_DT_Q8_0] = { "Q8_0", 0, 32, 34 },   [TW_DT_Q4_0] = { "Q4_0", 0, 32, 18 },
};

size_t tw_dtype_size(tw_dtype t) { return (unsigned)t < TW_DT_COUNT ? dtypes[t].size : 0; }

const char *tw_dtype_name(tw_dtype t) { return (unsigned)t < TW_DT_COUNT ? dtypes[t].name : "?"; }

bool tw_dtype_is_quant(tw_dtype t) { return (unsigned)t < TW_DT_COUNT && dtypes[t].blck > 1; }

size_t tw_dtype_row_bytes(tw_dtype t, int64_t n) {
    if ((unsigned)t >= TW_DT_COUNT || n <= 0) return 0;
    return (size_t)((n + dtypes[t].blck - 1) / dtypes[t].blck) * dtypes[t].blck_bytes;
}

bool tw_dtype_widen(tw_dtype t, const void *src, float *dst, int64_t n) {
    switch (t) {
    case TW_DT_F32: memcpy(dst, src, sizeof(float) * (size_t)n); return true;
    case TW_DT_BF16: for (int64_t i = 0; i < n; i++) dst[i] = tw_bf16_to_f32(((const uint16_t *)src)[i]); return true;
    case TW_DT_F16: for (int64_t i = 0; i < n; i++) dst[i] = tw_f16_to_f32(((const uint16_t *)src)[i]); return true;
    case TW_DT_F64: for (int64_t i = 0; i < n; i++) dst[i] = (float)((const double *)src)[i]; return true;
    default: return false;
    }
}
bool tw_dtype_parse(const char *s, tw_dtype *out) {
    for (int i = 0; i < TW_DT_COUNT; i++)
        if (dtypes[i].size && strcmp(s, dtypes[i].name) == 0) {   /* quant types are not header dtypes */
            *out = (tw_dtype)i;
            return true;
        }
    return false;
}

int64_t tw_tensor_nelem(const tw_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}
