/*
** seq.c — sequences: one KV cache, a position and the token history, on top of a shared read-only
** model. tw_seq_eval turns ids into embeddings (merging image / video features into the rows of
** their placeholder tokens, as HF's LlavaNext does), runs gemma2.c's forward and applies the final
** logit softcap when the model was loaded with it on.
**
** The cache starts small and doubles up to n_ctx: a 2B model needs ~208 KB per position, so
** allocating an 8192-position context up front would cost 1.7 GB for a short chat.
** Nothing here is shared between sequences, so several sequences of one model can be evaluated
** from different threads (their matmuls then take turns on the model's pool).
**
** The cache's element type (tw_seq_params.kv_type: f32, f16, bf16) is chosen per sequence; only
** gemma2.c (through tw_kv_store) and attn.c read or write the caches.
*/
#include "attn.h"
#include "model.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>

enum { SEQ_INITIAL_ALLOC = 256 };   /* positions the cache holds before its first growth */

tw_kv_type tw_seq_kv_type(const tw_seq *s) { return s ? s->kv_type : TW_KV_F32; }

static size_t kv_dim(const tw_model *m) { return (size_t)m->text.n_head_kv * (size_t)m->text.head_dim; }

/* One of the two caches grown from `old` to n positions per layer, the first `pos` rows of every
** layer kept. realloc keeps the old block's contents at its start (and for large blocks usually
** remaps the pages instead of copying: no second cache alive at once); the layers then move to
** their new offsets, last layer first, since each one moves up. */
static void *grow_cache(void *c, size_t total, size_t L, size_t old, size_t n, size_t pos, size_t row) {
    char *p = realloc(c, total);
    if (!p) return NULL;
    for (size_t l = L; l-- > 1 && pos > 0;) memmove(p + l * n * row, p + l * old * row, pos * row);
    return p;
}

/* Makes room for at least `need` positions (need <= n_ctx), keeping the cached ones. The cache
** is [n_layer][n_alloc][kvd], so growing moves every layer's filled rows to their new place. */
static tw_status seq_reserve(tw_seq *s, int32_t need) {
    if (need <= s->n_alloc) return TW_OK;
    int32_t n = s->n_alloc > 0 ? s->n_alloc : SEQ_INITIAL_ALLOC;
    while (n < need) n = n > s->n_ctx / 2 ? s->n_ctx : n * 2;
    n = TW_MIN(TW_MAX(n, need), s->n_ctx);

    size_t kvd = kv_dim(s->m), L = (size_t)s->m->text.n_layer, layer_bytes, total;
    size_t row = kvd * tw_kv_size(tw_seq_kv_type(s));   /* bytes of one position of one layer */
    if (tw_mul_overflow((size_t)n, row, &layer_bytes) || tw_mul_overflow(layer_bytes, L, &total))
        return tw_err(TW_E_NOMEM, "KV cache of %d positions is too large", (int)n);
    int32_t *tok = realloc(s->tokens, sizeof(int32_t) * (size_t)n);
    if (tok) s->tokens = tok;
    uint64_t *tags = tok ? realloc(s->tags, sizeof(uint64_t) * (size_t)n) : NULL;
    if (tags) s->tags = tags;
    void *k = tags ? grow_cache(s->k_cache, total, L, (size_t)s->n_alloc, (size_t)n, (size_t)s->pos, row) : NULL;
    if (k) s->k_cache = k;
    void *v = k ? grow_cache(s->v_cache, total, L, (size_t)s->n_alloc, (size_t)n, (size_t)s->pos, row) : NULL;
    if (!v) {
        /* the tokens (and maybe K) grew, each keeping its rows; make the layout consistent again by
        ** moving K's layers back to the old spacing (its block is at least as large as needed) */
        if (k && s->pos > 0)
            for (size_t l = 1; l < L; l++)
                memmove((char *)k + l * (size_t)s->n_alloc * row, (char *)k + l * (size_t)n * row, (size_t)s->pos * row);
        return tw_err(TW_E_NOMEM, "out of memory growing the KV cache to %d positions (%zu MB)", (int)n,
                      2 * total >> 20);
    }
    s->v_cache = v;
    s->n_alloc = n;
    return TW_OK;
}

tw_status tw_seq_new(tw_model *m, int32_t n_ctx, tw_seq **out) { return tw_seq_new_ex(m, n_ctx, NULL, out); }

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

tw_status tw_seq_new_ex(tw_model *m, int32_t n_ctx, const tw_seq_params *params, tw_seq **out) {
    if (!m || !out) return tw_err(TW_E_ARG, "tw_seq_new: NULL argument");
    *out = NULL;
    tw_kv_type kt = params ? params->kv_type : TW_KV_F32;
    if (kt != TW_KV_F32 && kt != TW_KV_F16 && kt != TW_KV_BF16)
        return tw_err(TW_E_ARG, "tw_seq_new: unknown KV cache type %d", (int)kt);
    if (n_ctx < 0) return tw_err(TW_E_ARG, "tw_seq_new: n_ctx %d is negative", (int)n_ctx);
    if (n_ctx == 0) n_ctx = m->text.n_ctx_train;
    if (n_ctx <= 0) return tw_err(TW_E_ARG, "tw_seq_new: the model gives no context length; pass n_ctx");
    tw_seq *s = tw_calloc(1, sizeof *s);
    if (!s) return TW_E_NOMEM;
    s->kv_type = kt;
    s->m = m;
    s->n_ctx = n_ctx;
    s->logits = tw_calloc((size_t)m->text.n_vocab, sizeof(float));
    tw_status st = s->logits ? seq_reserve(s, TW_MIN(n_ctx, SEQ_INITIAL_ALLOC)) : TW_E_NOMEM;
    if (st != TW_OK) {
        tw_seq_free(s);
        return st;
    }
    *out = s;
    return TW_OK;
}

void tw_seq_free(tw_seq *s) {
    if (!s) return;
    free(s->k_cache);
    free(s->v_cache);
    free(s->tokens);
    free(s->tags);
    free(s->logits);
    free(s);
}

int32_t tw_seq_pos(const tw_seq *s) { return s ? s->pos : 0; }
int32_t tw_seq_n_ctx(const tw_seq *s) { return s ? s->n_ctx : 0; }
const int32_t *tw_seq_tokens(const tw_seq *s) { return s ? s->tokens : NULL; }
const uint64_t *tw_seq_tags(const tw_seq *s) { return s ? s->tags : NULL; }

void tw_seq_set_tags(tw_seq *s, int32_t from, const uint64_t *tags, int32_t n) {
    assert(from >= 0 && n >= 0 && from + n <= s->pos);
    memcpy(s->tags + from, tags, sizeof(uint64_t) * (size_t)n);
}
const float *tw_seq_logits(const tw_seq *s) { return s ? s->logits : NULL; }

/* The cache rows past pos are simply overwritten by the next eval: no clearing needed, because
** attention only ever reads positions < the query's own. */
tw_status tw_seq_rewind(tw_seq *s, int32_t pos) {
    if (!s) return tw_err(TW_E_ARG, "tw_seq_rewind: NULL sequence");
    if (pos < 0 || pos > s->pos)
        return tw_err(TW_E_ARG, "tw_seq_rewind: position %d is outside the %d cached positions", (int)pos, (int)s->pos);
    s->pos = pos;
    return TW_OK;
}

static bool is_media_token(const tw_model *m, int32_t id) {
    return (m->image_token_id >= 0 && id == m->image_token_id) || (m->video_token_id >= 0 && id == m->video_token_id);
}

static void softcap(float *l, size_t n, float cap) {
    for (size_t i = 0; i < n; i++) l[i] = cap * tanhf(l[i] / cap);
}

tw_status tw_seq_eval(tw_seq *s, const int32_t *ids, size_t n, const tw_eval_opts *opts) {
    if (!s || (!ids && n > 0)) return tw_err(TW_E_ARG, "tw_seq_eval: NULL argument");
    if (n == 0) return TW_OK;
    const tw_model *m = s->m;
    const int32_t H = m->text.n_embd, V = m->text.n_vocab;
    const tw_eval_opts none = { 0 };
    if (!opts) opts = &none;

    if (n > (size_t)(s->n_ctx - s->pos))
        return tw_err(TW_E_CONTEXT, "%zu new tokens after %d cached ones exceed the context of %d tokens",
                      n, (int)s->pos, (int)s->n_ctx);
    size_t n_media = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= V)
            return tw_err(TW_E_ARG, "token id %d at index %zu is outside the vocabulary [0, %d)", (int)ids[i], i, (int)V);
        n_media += is_media_token(m, ids[i]);
    }
    /* Same check and numbers as HF's "Image features and image tokens do not match". Without
    ** features, placeholder tokens just use their own embedding row. */
    if (opts->embd && n_media != opts->n_embd_rows)
        return tw_err(TW_E_ARG, "image features and image tokens do not match: tokens: %zu, features %zu",
                      n_media, opts->n_embd_rows);
    if (!opts->embd && opts->n_embd_rows > 0)
        return tw_err(TW_E_ARG, "tw_seq_eval: n_embd_rows is %zu but embd is NULL", opts->n_embd_rows);
    TW_TRY(seq_reserve(s, s->pos + (int32_t)n));

    float *x = tw_malloc(sizeof(float) * n * (size_t)H);   /* [n, H] input embeddings */
    if (!x) return TW_E_NOMEM;
    size_t r = 0;   /* next feature row */
    for (size_t i = 0; i < n; i++) {
        if (opts->embd && is_media_token(m, ids[i]))
            memcpy(x + i * H, opts->embd + (r++) * H, sizeof(float) * (size_t)H);
        else
            tw_tensor_row_f32(m->tw.embed, ids[i], x + i * H);
    }
    tw_status st = tw_gemma2_forward(s, x, (int32_t)n, opts->logits, opts->hidden);
    free(x);
    if (st != TW_OK) return st;

    /* HF >= 4.52 LlavaNext has no final softcap; Gemma2ForCausalLM (and older LlavaNext) has. */
    if (m->final_softcap_on && m->text.final_softcap > 0) {
        softcap(s->logits, (size_t)V, m->text.final_softcap);
        if (opts->logits) softcap(opts->logits, n * (size_t)V, m->text.final_softcap);
    }
    memcpy(s->tokens + s->pos, ids, sizeof(int32_t) * n);
    for (size_t i = 0; i < n; i++) s->tags[s->pos + i] = is_media_token(m, ids[i]) ? TW_SEQ_TAG_UNKNOWN : 0;
    s->pos += (int32_t)n;
    return TW_OK;
}
