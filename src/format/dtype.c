/* dtype.c — element types of tensors as safetensors names them. */
#include "safetensors.h"

static const struct { const char *name; size_t size; } dtypes[TW_DT_COUNT] = {
    [TW_DT_F32] = { "F32", 4 }, [TW_DT_F16] = { "F16", 2 }, [TW_DT_BF16] = { "BF16", 2 },
    [TW_DT_F64] = { "F64", 8 }, [TW_DT_I64] = { "I64", 8 }, [TW_DT_I32] = { "I32", 4 },
    [TW_DT_I16] = { "I16", 2 }, [TW_DT_I8] = { "I8", 1 },   [TW_DT_U8] = { "U8", 1 },
    [TW_DT_BOOL] = { "BOOL", 1 },
    [TW_DT_Q8_0] = { "Q8_0", 0 },   [TW_DT_Q4_0] = { "Q4_0", 0 },   /* blocks, not elements: quant.h */
};

size_t tw_dtype_size(tw_dtype t) { return (unsigned)t < TW_DT_COUNT ? dtypes[t].size : 0; }

const char *tw_dtype_name(tw_dtype t) { return (unsigned)t < TW_DT_COUNT ? dtypes[t].name : "?"; }

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
