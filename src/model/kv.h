/*
** kv.h — the KV cache of one sequence: the only place that knows its layout.
**
**   k, v: [n_layer][n_alloc][dim] elements of `type` (f32, f16 or bf16), dim = n_head_kv * head_dim
**
** A position's keys (values) of one layer are one contiguous row of `dim` elements; the rows of a
** layer are tw_kv_ld(kv) elements apart, which is how attention (attn.c) reads them in place.
** The cache starts small and doubles up to n_max (tw_kv_reserve): a 2B model needs ~208 KB per
** position, so allocating an 8192-position context up front would cost 1.7 GB for a short chat.
** Growing moves each layer's rows, so pointers from tw_kv_k / tw_kv_v are valid until the next
** tw_kv_reserve only.
**
** What it is not: it knows no tokens and no position counter (seq.c's tw_seq has those), and it
** computes nothing (gemma2.c writes it, attn.c reads it).
*/
#ifndef TW_KV_H
#define TW_KV_H

#include "attn.h"

typedef struct tw_kv {
    tw_kv_type type;      /* element type of k and v                         */
    int32_t    n_layer;
    int32_t    dim;       /* elements of one position: n_head_kv * head_dim  */
    int32_t    n_max;     /* positions it may grow to (the sequence's n_ctx) */
    int32_t    n_alloc;   /* positions it holds room for now                 */
    void      *k, *v;     /* [n_layer][n_alloc][dim] of type                 */
} tw_kv;

/* An empty cache (nothing allocated) of n_layer layers of dim elements, up to n_max positions.
** TW_E_ARG for an unknown element type. */
tw_status tw_kv_init(tw_kv *kv, tw_kv_type type, int32_t n_layer, int32_t dim, int32_t n_max);

/* Makes room for at least `need` positions (need <= n_max), keeping the first `keep` of every
** layer. On failure (TW_E_NOMEM) the cache is unchanged. */
tw_status tw_kv_reserve(tw_kv *kv, int32_t need, int32_t keep);

void tw_kv_free(tw_kv *kv);

/* dst (the same type, layers and dim; room for n reserved here) holds src's first n positions of
** every layer. TW_E_NOMEM leaves dst's first positions as they were. */
tw_status tw_kv_copy(tw_kv *dst, const tw_kv *src, int32_t n);

/* Address of position p of layer l in the keys / values (rows from there on: tw_kv_ld apart). */
static inline void *tw_kv_k(const tw_kv *kv, int32_t l, int32_t p) {
    return (char *)kv->k + ((size_t)l * (size_t)kv->n_alloc + (size_t)p) * (size_t)kv->dim * tw_kv_size(kv->type);
}
static inline void *tw_kv_v(const tw_kv *kv, int32_t l, int32_t p) {
    return (char *)kv->v + ((size_t)l * (size_t)kv->n_alloc + (size_t)p) * (size_t)kv->dim * tw_kv_size(kv->type);
}
/* Elements from one position's row to the next one's (the ldk / ldv of tw_attn_args). */
static inline int64_t tw_kv_ld(const tw_kv *kv) { return kv->dim; }

/* Where n new f32 rows [n, dim] of layer l from position p may be computed in place: the cache's
** own rows when it stores f32 (then tw_kv_put has nothing left to do), else NULL. */
static inline float *tw_kv_k_f32(const tw_kv *kv, int32_t l, int32_t p) {
    return kv->type == TW_KV_F32 ? (float *)tw_kv_k(kv, l, p) : NULL;
}
static inline float *tw_kv_v_f32(const tw_kv *kv, int32_t l, int32_t p) {
    return kv->type == TW_KV_F32 ? (float *)tw_kv_v(kv, l, p) : NULL;
}

/* Stores n positions of layer l from p on: k, v [n, dim] f32, rounded once to the cache's type
** (attention widens them back exactly). Rows already in place (tw_kv_k_f32) are left alone. */
void tw_kv_put(tw_kv *kv, int32_t l, int32_t p, int32_t n, const float *k, const float *v);

#endif
