/*
** kv.c — the KV cache's allocation and growth, and the names of its element types (kv.h has the
** layout and why it grows).
*/
#include "kv.h"

#include <stdlib.h>

enum { KV_INITIAL_ALLOC = 256 };   /* positions the cache holds before its first growth */

const char *tw_kv_type_name(tw_kv_type t) {
    switch (t) {
    case TW_KV_F32: return "f32";
    case TW_KV_F16: return "f16";
    case TW_KV_BF16: return "bf16";
    }
    return "?";
}

tw_status tw_kv_type_parse(const char *name, tw_kv_type *out) {
    for (int t = TW_KV_F32; t <= TW_KV_BF16; t++)
        if (name && strcmp(name, tw_kv_type_name((tw_kv_type)t)) == 0) {
            *out = (tw_kv_type)t;
            return TW_OK;
        }
    return tw_err(TW_E_ARG, "KV cache type '%s': expected f32, f16 or bf16", name ? name : "(null)");
}

tw_status tw_kv_init(tw_kv *kv, tw_kv_type type, int32_t n_layer, int32_t dim, int32_t n_max) {
    memset(kv, 0, sizeof *kv);
    if (type != TW_KV_F32 && type != TW_KV_F16 && type != TW_KV_BF16)
        return tw_err(TW_E_ARG, "unknown KV cache type %d", (int)type);
    kv->type = type;
    kv->n_layer = n_layer;
    kv->dim = dim;
    kv->n_max = n_max;
    return TW_OK;
}

/* One of the two caches grown from `old` to n positions per layer, the first `keep` rows of every
** layer kept. realloc keeps the old block's contents at its start (and for large blocks usually
** remaps the pages instead of copying: no second cache alive at once); the layers then move to
** their new offsets, last layer first, since each one moves up. */
static void *grow(void *c, size_t total, size_t L, size_t old, size_t n, size_t keep, size_t row) {
    char *p = realloc(c, total);
    if (!p) return NULL;
    for (size_t l = L; l-- > 1 && keep > 0;) memmove(p + l * n * row, p + l * old * row, keep * row);
    return p;
}

tw_status tw_kv_reserve(tw_kv *kv, int32_t need, int32_t keep) {
    if (need <= kv->n_alloc) return TW_OK;
    int32_t n = kv->n_alloc > 0 ? kv->n_alloc : KV_INITIAL_ALLOC;
    while (n < need) n = n > kv->n_max / 2 ? kv->n_max : n * 2;
    n = TW_MIN(TW_MAX(n, need), kv->n_max);

    size_t L = (size_t)kv->n_layer, old = (size_t)kv->n_alloc, layer_bytes, total;
    size_t row = (size_t)kv->dim * tw_kv_size(kv->type);   /* bytes of one position of one layer */
    if (tw_mul_overflow((size_t)n, row, &layer_bytes) || tw_mul_overflow(layer_bytes, L, &total))
        return tw_err(TW_E_NOMEM, "KV cache of %d positions is too large", (int)n);
    void *k = grow(kv->k, total, L, old, (size_t)n, (size_t)keep, row);
    if (k) kv->k = k;
    void *v = k ? grow(kv->v, total, L, old, (size_t)n, (size_t)keep, row) : NULL;
    if (!v) {
        /* K may have grown, keeping its rows; make the layout consistent again by moving K's
        ** layers back to the old spacing (its block is at least as large as needed) */
        if (k && keep > 0)
            for (size_t l = 1; l < L; l++) memmove((char *)k + l * old * row, (char *)k + l * (size_t)n * row, (size_t)keep * row);
        return tw_err(TW_E_NOMEM, "out of memory growing the KV cache to %d positions (%zu MB)", (int)n,
                      2 * total >> 20);
    }
    kv->v = v;
    kv->n_alloc = n;
    return TW_OK;
}

void tw_kv_free(tw_kv *kv) {
    if (!kv) return;
    free(kv->k);
    free(kv->v);
    kv->k = kv->v = NULL;
    kv->n_alloc = 0;
}

void tw_kv_put(tw_kv *kv, int32_t l, int32_t p, int32_t n, const float *k, const float *v) {
    void *kd = tw_kv_k(kv, l, p), *vd = tw_kv_v(kv, l, p);
    int64_t count = (int64_t)n * kv->dim;   /* the n rows of a layer are contiguous */
    if (k != kd) tw_kv_store(kd, kv->type, k, count);
    if (v != vd) tw_kv_store(vd, kv->type, v, count);
}

tw_status tw_kv_copy(tw_kv *dst, const tw_kv *src, int32_t n) {
    TW_ASSERT(dst->type == src->type && dst->n_layer == src->n_layer && dst->dim == src->dim && n <= src->n_alloc);
    TW_TRY(tw_kv_reserve(dst, n, 0));
    size_t bytes = (size_t)n * (size_t)src->dim * tw_kv_size(src->type);   /* a layer's n rows are contiguous */
    for (int32_t l = 0; l < src->n_layer && n > 0; l++) {
        memcpy(tw_kv_k(dst, l, 0), tw_kv_k(src, l, 0), bytes);
        memcpy(tw_kv_v(dst, l, 0), tw_kv_v(src, l, 0), bytes);
    }
    return TW_OK;
}
