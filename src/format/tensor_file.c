/*
** tensor_file.c — the public safetensors calls of tower.h (tw_tensor_file, tw_tensor_writer): a
** thin, typed face over safetensors.c for programs that dump, compare or save tensors.
*/
#include "safetensors.h"

#include <stdlib.h>

struct tw_tensor_file { tw_st_set *set; };
struct tw_tensor_writer { tw_st_writer *w; };

static const struct { tw_elem_type e; tw_dtype d; } k_types[] = {
    { TW_ELEM_F32, TW_DT_F32 }, { TW_ELEM_F16, TW_DT_F16 }, { TW_ELEM_BF16, TW_DT_BF16 },
    { TW_ELEM_I64, TW_DT_I64 }, { TW_ELEM_I32, TW_DT_I32 }, { TW_ELEM_U8, TW_DT_U8 },
};
#define N_TYPES (sizeof k_types / sizeof k_types[0])

tw_status tw_tensor_file_open(const char *path, tw_tensor_file **out) {
    if (!path || !out) return tw_err(TW_E_ARG, "tw_tensor_file_open: NULL argument");
    *out = NULL;
    tw_tensor_file *f = tw_calloc(1, sizeof *f);
    if (!f) return TW_E_NOMEM;
    tw_status s = tw_st_open_file(path, &f->set);
    if (s != TW_OK) {
        free(f);
        return s;
    }
    *out = f;
    return TW_OK;
}

tw_status tw_tensor_file_get(const tw_tensor_file *f, const char *name, tw_tensor_info *out) {
    memset(out, 0, sizeof *out);
    const tw_tensor *t = f && name ? tw_st_get(f->set, name) : NULL;
    if (!t) return TW_E_NOT_FOUND;
    size_t i = 0;
    while (i < N_TYPES && k_types[i].d != t->type) i++;
    if (i == N_TYPES)
        return tw_err(TW_E_UNSUPPORTED, "%s: tensor \"%s\" is %s, which tw_tensor_file does not hand out", t->file,
                      name, tw_dtype_name(t->type));
    *out = (tw_tensor_info){ .name = t->name, .type = k_types[i].e, .n_dims = t->ndim, .data = t->data, .media = -1 };
    for (int d = 0; d < t->ndim && d < 6; d++) out->shape[d] = t->shape[d];
    return TW_OK;
}

void tw_tensor_file_close(tw_tensor_file *f) {
    if (!f) return;
    tw_st_close(f->set);
    free(f);
}

tw_status tw_tensor_writer_new(tw_tensor_writer **out) {
    *out = NULL;
    tw_tensor_writer *w = tw_calloc(1, sizeof *w);
    if (!w || !(w->w = tw_st_writer_new())) {
        free(w);
        return TW_E_NOMEM;
    }
    *out = w;
    return TW_OK;
}

tw_status tw_tensor_writer_add(tw_tensor_writer *w, const char *name, tw_elem_type type, int32_t n_dims,
                               const int64_t *shape, const void *data) {
    size_t i = 0;
    while (i < N_TYPES && k_types[i].e != type) i++;
    if (!w || i == N_TYPES) return tw_err(TW_E_ARG, "tw_tensor_writer_add: tensor \"%s\": unknown element type %d",
                                          name ? name : "(null)", (int)type);
    return tw_st_writer_add(w->w, name, k_types[i].d, n_dims, shape, data);
}

tw_status tw_tensor_writer_save(tw_tensor_writer *w, const char *path) {
    if (!w || !path) return tw_err(TW_E_ARG, "tw_tensor_writer_save: NULL argument");
    return tw_st_writer_save(w->w, path);
}

void tw_tensor_writer_free(tw_tensor_writer *w) {
    if (!w) return;
    tw_st_writer_free(w->w);
    free(w);
}
