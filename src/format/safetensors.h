/*
** safetensors.h — reading (mmap, one file or shards + model.safetensors.index.json) and writing
** the safetensors format. Every header is validated when opened: a tensor's offsets must lie in
** the file, must not overlap another tensor, and must match dtype x shape, so later code can trust
** tw_tensor.data blindly.
*/
#ifndef TW_SAFETENSORS_H
#define TW_SAFETENSORS_H

#include "tw_internal.h"

typedef enum tw_dtype {
    TW_DT_F32, TW_DT_F16, TW_DT_BF16, TW_DT_F64,
    TW_DT_I64, TW_DT_I32, TW_DT_I16, TW_DT_I8, TW_DT_U8, TW_DT_BOOL,
    /* block-quantized weight matrices (src/cpu/quant.h): never in a safetensors header — stored as
    ** U8 blobs and retyped from the file's metadata by tw_quant_apply (qfile.c); tw_dtype_size is 0 */
    TW_DT_Q8_0, TW_DT_Q4_0,
    TW_DT_COUNT
} tw_dtype;

size_t      tw_dtype_size(tw_dtype t);
const char *tw_dtype_name(tw_dtype t);               /* safetensors spelling: "BF16", ... */
bool        tw_dtype_parse(const char *s, tw_dtype *out);
bool        tw_dtype_is_quant(tw_dtype t);           /* Q8_0, Q4_0: blocks of 32 values            */
/* Bytes of a row of n values: n elements, or ceil(n / 32) blocks of a quantized type; 0 if unknown. */
size_t      tw_dtype_row_bytes(tw_dtype t, int64_t n);
/* n values of a plain float type (F32, F16, BF16, F64) widened to f32; false (nothing written)
** for any other type. */
bool        tw_dtype_widen(tw_dtype t, const void *src, float *dst, int64_t n);

#define TW_MAX_DIMS 6

typedef struct tw_tensor {
    const char *name;
    tw_dtype    type;
    int         ndim;
    int64_t     shape[TW_MAX_DIMS];   /* row-major, shape[ndim-1] is contiguous */
    const void *data;                 /* points into the mapping               */
    size_t      nbytes;
    const char *file;                 /* shard it came from (for messages)     */
} tw_tensor;

int64_t tw_tensor_nelem(const tw_tensor *t);

typedef struct tw_st_set tw_st_set;

/* Opens dir/model.safetensors.index.json (all shards it names) or dir/model.safetensors. */
tw_status tw_st_open_dir(const char *dir, tw_st_set **out);
/* Opens one .safetensors file. */
tw_status tw_st_open_file(const char *path, tw_st_set **out);
void      tw_st_close(tw_st_set *s);
const tw_tensor *tw_st_get(const tw_st_set *s, const char *name);   /* NULL if absent */
size_t           tw_st_count(const tw_st_set *s);
const tw_tensor *tw_st_at(const tw_st_set *s, size_t i);
/* Sum of the mapped file sizes. */
uint64_t         tw_st_bytes(const tw_st_set *s);

/* Writer: tensors are copied in, written with a sorted JSON header, atomically (temp + rename). */
typedef struct tw_st_writer tw_st_writer;
tw_st_writer *tw_st_writer_new(void);
tw_status     tw_st_writer_add(tw_st_writer *w, const char *name, tw_dtype type, int ndim,
                               const int64_t *shape, const void *data);
tw_status     tw_st_writer_save(tw_st_writer *w, const char *path);
void          tw_st_writer_free(tw_st_writer *w);

#endif
