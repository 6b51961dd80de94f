/*
** seq.c — sequences: a position, the token history and a KV cache (kv.h) on top of a shared
** read-only model. tw_seq_eval checks its arguments, makes room in the cache and runs gemma2.c's
** forward (embeddings, media rows, layers, logits, final softcap), then records the tokens.
**
** Nothing here is shared between sequences, so several sequences of one model can be evaluated
** from different threads (their matmuls then take turns on the model's pool).
*/
#include "model.h"

#include <assert.h>
#include <stdlib.h>


tw_kv_type tw_seq_kv_type(const tw_seq *s) { return s ? s->kv.type : TW_KV_F32; }

/* Makes room for at least `need` positions (need <= n_ctx) in the cache and the token history,
** keeping the cached ones. */
static tw_status seq_reserve(tw_seq *s, int32_t need) {
    TW_TRY(tw_kv_reserve(&s->kv, need, s->pos));
    if (s->n_tokens < s->kv.n_alloc) {   /* the history follows the cache's growth */
        int32_t *tok = realloc(s->tokens, sizeof(int32_t) * (size_t)s->kv.n_alloc);
        if (!tok) return tw_err(TW_E_NOMEM, "out of memory growing the token history to %d", (int)s->kv.n_alloc);
        s->tokens = tok;
        uint64_t *tags = realloc(s->tags, sizeof(uint64_t) * (size_t)s->kv.n_alloc);
        if (!tags) return tw_err(TW_E_NOMEM, "out of memory growing the token history to %d", (int)s->kv.n_alloc);
        s->tags = tags;
        s->n_tokens = s->kv.n_alloc;
    }
    return TW_OK;
}

tw_status tw_seq_new(const tw_model *m, int32_t n_ctx, tw_seq **out) { return tw_seq_new_ex(m, n_ctx, NULL, out); }

tw_status tw_seq_new_ex(const tw_model *m, int32_t n_ctx, const tw_seq_params *params, tw_seq **out) {
    if (!m || !out) return tw_err(TW_E_ARG, "tw_seq_new: NULL argument");
    *out = NULL;
    tw_kv kv;
    TW_TRY(tw_kv_init(&kv, params ? params->kv_type : TW_KV_F32, m->text.n_layer, m->text.n_head_kv * m->text.head_dim,
                      0));
    if (n_ctx < 0) return tw_err(TW_E_ARG, "tw_seq_new: n_ctx %d is negative", (int)n_ctx);
    if (n_ctx == 0) n_ctx = m->text.n_ctx_train;
    if (n_ctx <= 0) return tw_err(TW_E_ARG, "tw_seq_new: the model gives no context length; pass n_ctx");
    kv.n_max = n_ctx;
    tw_seq *s = tw_calloc(1, sizeof *s);
    if (!s) return TW_E_NOMEM;
    s->m = m;
    s->n_ctx = n_ctx;
    s->kv = kv;
    s->logits = tw_calloc((size_t)m->text.n_vocab, sizeof(float));
    tw_status st = s->logits ? seq_reserve(s, 1) : TW_E_NOMEM;   /* the cache's first block */
    if (st != TW_OK) {
        tw_seq_free(s);
        return st;
    }
    *out = s;
    return TW_OK;
}

void tw_seq_free(tw_seq *s) {
    if (!s) return;
    tw_kv_free(&s->kv);
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

tw_status tw_seq_eval(tw_seq *s, const int32_t *ids, size_t n, const tw_eval_opts *opts) {
    if (!s || (!ids && n > 0)) return tw_err(TW_E_ARG, "tw_seq_eval: NULL argument");
    if (n == 0) return TW_OK;
    const tw_model *m = s->m;
    const int32_t V = m->text.n_vocab;
    const tw_eval_opts none = { 0 };
    if (!opts) opts = &none;

    if (n > (size_t)(s->n_ctx - s->pos))
        return tw_err(TW_E_CONTEXT, "%zu new tokens after %d cached ones exceed the context of %d tokens",
                      n, (int)s->pos, (int)s->n_ctx);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return tw_err(TW_E_ARG, "token id %d at index %zu is outside the vocabulary [0, %d)", (int)ids[i], i, (int)V);
    /* Same check and numbers as HF's "Image features and image tokens do not match". Without
    ** features, placeholder tokens just use their own embedding row. */
    size_t n_media = tw_gemma2_n_media(m, ids, n);
    if (opts->embd && n_media != opts->n_embd_rows)
        return tw_err(TW_E_ARG, "image features and image tokens do not match: tokens: %zu, features %zu",
                      n_media, opts->n_embd_rows);
    if (!opts->embd && opts->n_embd_rows > 0)
        return tw_err(TW_E_ARG, "tw_seq_eval: n_embd_rows is %zu but embd is NULL", opts->n_embd_rows);
    TW_TRY(seq_reserve(s, s->pos + (int32_t)n));

    TW_TRY(tw_gemma2_forward(m, &s->kv, s->pos, ids, (int32_t)n, opts->embd, s->logits, opts->logits, opts->hidden));
    memcpy(s->tokens + s->pos, ids, sizeof(int32_t) * n);
    for (size_t i = 0; i < n; i++)
        s->tags[s->pos + i] = !tw_is_media_token(m, ids[i]) ? 0 : opts->tags ? opts->tags[i] : TW_SEQ_TAG_UNKNOWN;
    s->pos += (int32_t)n;
    return TW_OK;
}
