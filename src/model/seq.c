/*
** seq.c — sequences: a position, the token history and a KV cache (kv.h) on top of a shared
** read-only model. tw_seq_eval_batch checks every item, makes room in the caches and runs
** gemma2.c's forward over all of them at once (embeddings, media rows, layers, logits, final
** softcap, scores), then records the tokens; tw_seq_eval is its one-item case.
**
** Nothing here is shared between sequences, so several sequences of one model can be evaluated
** from different threads (their matmuls then take turns on the model's pool), or together in one
** tw_seq_eval_batch from one thread (their matmuls then run once for all: docs/batching.md).
*/
#include "model.h"

#include <assert.h>
#include <math.h>
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

size_t tw_seq_bytes(const tw_seq *s) {
    if (!s) return 0;
    size_t per = (size_t)s->kv.dim * tw_kv_size(s->kv.type) * (size_t)s->kv.n_layer * 2;   /* K and V */
    return (size_t)s->kv.n_alloc * per + (size_t)s->n_tokens * (sizeof(int32_t) + sizeof(uint64_t)) +
           (size_t)s->m->text.n_vocab * sizeof(float);
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

tw_status tw_seq_copy(tw_seq *dst, const tw_seq *src) {
    if (dst->m != src->m || dst->kv.type != src->kv.type || src->pos > dst->n_ctx)
        return tw_err(TW_E_ARG, "tw_seq_copy: the sequences differ in model, KV type or room (%d of %d positions)",
                      (int)src->pos, (int)dst->n_ctx);
    dst->pos = 0;
    dst->logits_ok = false;
    TW_TRY(seq_reserve(dst, TW_MAX(src->pos, 1)));
    TW_TRY(tw_kv_copy(&dst->kv, &src->kv, src->pos));
    memcpy(dst->tokens, src->tokens, sizeof(int32_t) * (size_t)src->pos);
    memcpy(dst->tags, src->tags, sizeof(uint64_t) * (size_t)src->pos);
    memcpy(dst->logits, src->logits, sizeof(float) * (size_t)src->m->text.n_vocab);
    dst->pos = src->pos;
    dst->logits_ok = src->logits_ok;
    return TW_OK;
}

/* The cache rows past pos are simply overwritten by the next eval: no clearing needed, because
** attention only ever reads positions < the query's own. */
tw_status tw_seq_rewind(tw_seq *s, int32_t pos) {
    if (!s) return tw_err(TW_E_ARG, "tw_seq_rewind: NULL sequence");
    if (pos < 0 || pos > s->pos)
        return tw_err(TW_E_ARG, "tw_seq_rewind: position %d is outside the %d cached positions", (int)pos, (int)s->pos);
    if (pos < s->pos) s->logits_ok = false;   /* they were the dropped position's */
    s->pos = pos;
    return TW_OK;
}

/* ---- evaluation --------------------------------------------------------------------------------- */

/* Checks one item (the caller's messages say which call and which item). */
static tw_status check_item(const tw_batch_item *it) {
    const tw_seq *s = it->seq;
    if (!s || (!it->ids && it->n > 0)) return tw_err(TW_E_ARG, "NULL %s", !s ? "sequence" : "ids");
    if (it->n == 0) return TW_OK;
    const tw_model *m = s->m;
    const int32_t V = m->text.n_vocab;
    const tw_eval_opts none = { 0 }, *o = it->opts ? it->opts : &none;
    size_t n = it->n;
    if (n > (size_t)(s->n_ctx - s->pos))
        return tw_err(TW_E_CONTEXT, "%zu new tokens after %d cached ones exceed the context of %d tokens",
                      n, (int)s->pos, (int)s->n_ctx);
    for (size_t i = 0; i < n; i++)
        if (it->ids[i] < 0 || it->ids[i] >= V)
            return tw_err(TW_E_ARG, "token id %d at index %zu is outside the vocabulary [0, %d)", (int)it->ids[i], i, (int)V);
    /* Same check and numbers as HF's "Image features and image tokens do not match". Without
    ** features, placeholder tokens just use their own embedding row. */
    size_t n_media = tw_gemma2_n_media(m, it->ids, n);
    if (o->embd && n_media != o->n_embd_rows)
        return tw_err(TW_E_ARG, "image features and image tokens do not match: tokens: %zu, features %zu",
                      n_media, o->n_embd_rows);
    if (!o->embd && o->n_embd_rows > 0)
        return tw_err(TW_E_ARG, "n_embd_rows is %zu but embd is NULL", o->n_embd_rows);
    if (o->n_top < 0 || o->n_top > TW_MAX_TOP || o->n_top > V)
        return tw_err(TW_E_ARG, "n_top %d is outside [0, %d]", (int)o->n_top, (int)TW_MIN(TW_MAX_TOP, V));
    return TW_OK;
}

/* The distribution before an item's first token: the sequence's kept logits when they are the
** last position's, else NAN and no alternatives. */
static void score_first(const tw_seq *s, const int32_t *ids, const tw_eval_opts *o) {
    const int32_t n_top = o->n_top;
    if (!o->logprobs && !(n_top > 0 && (o->top_ids || o->top_logprobs))) return;
    if (s->logits_ok) {
        float lp = tw_logprob(s->logits, s->m->text.n_vocab, ids[0], n_top, o->top_ids, o->top_logprobs);
        if (o->logprobs) o->logprobs[0] = lp;
        return;
    }
    if (o->logprobs) o->logprobs[0] = NAN;
    for (int32_t k = 0; k < n_top; k++) {
        if (o->top_ids) o->top_ids[k] = -1;
        if (o->top_logprobs) o->top_logprobs[k] = NAN;
    }
}

/* Every item checked before anything changes; then caches grown (no visible change: the positions
** stay), first scores, one forward, and the tokens recorded. */
static tw_status eval_items(const tw_batch_item *items, size_t n_items, const char *fn) {
    if (!items && n_items > 0) return tw_err(TW_E_ARG, "%s: items is NULL", fn);
    size_t n_segs = 0, rows = 0, first = 0;
    const tw_model *m = NULL;
    for (size_t i = 0; i < n_items; i++) {
        const tw_batch_item *it = &items[i];
        tw_status st = check_item(it);
        if (st != TW_OK) return n_items > 1 ? tw_err_prefix(st, "%s: item %zu", fn, i) : tw_err_prefix(st, "%s", fn);
        if (it->n == 0) continue;
        if (m && it->seq->m != m)
            return tw_err(TW_E_ARG, "%s: item %zu: its sequence is of another model than item %zu's", fn, i, first);
        if (!m) first = i;
        m = it->seq->m;
        for (size_t j = 0; j < i; j++)
            if (items[j].seq == it->seq) return tw_err(TW_E_ARG, "%s: items %zu and %zu are the same sequence", fn, j, i);
        if (it->opts && it->opts->hidden && n_items > 1)
            return tw_err(TW_E_ARG, "%s: item %zu: hidden states are for a batch of one item", fn, i);
        n_segs++;
        rows += it->n;
    }
    if (n_segs == 0) return TW_OK;
    if (rows > INT32_MAX || n_segs > INT32_MAX) return tw_err(TW_E_ARG, "%s: %zu tokens in one call", fn, rows);

    enum { FEW = 16 };   /* segments kept on the stack; a larger batch allocates its list */
    tw_gemma2_seg few[FEW], *segs = n_segs <= FEW ? few : tw_calloc(n_segs, sizeof *segs);
    if (!segs) return TW_E_NOMEM;
    tw_status st = TW_OK;
    for (size_t i = 0; i < n_items && st == TW_OK; i++)
        if (items[i].n > 0) st = seq_reserve(items[i].seq, items[i].seq->pos + (int32_t)items[i].n);

    const tw_eval_opts none = { 0 };
    for (size_t i = 0, k = 0; i < n_items && st == TW_OK; i++) {
        const tw_batch_item *it = &items[i];
        if (it->n == 0) continue;
        const tw_eval_opts *o = it->opts ? it->opts : &none;
        tw_seq *s = it->seq;
        segs[k++] = (tw_gemma2_seg){
            .kv = &s->kv, .pos = s->pos, .ids = it->ids, .T = (int32_t)it->n, .embd = o->embd, .logits = s->logits,
            .logits_all = o->logits, .hidden = o->hidden, .logprobs = o->logprobs, .n_top = o->n_top,
            .top_ids = o->top_ids, .top_lp = o->top_logprobs,
        };
    }
    if (st == TW_OK) {
        /* the first scores read the logits the forward overwrites */
        for (size_t i = 0; i < n_items; i++)
            if (items[i].n > 0 && items[i].opts) score_first(items[i].seq, items[i].ids, items[i].opts);
        st = tw_gemma2_forward(m, segs, (int32_t)n_segs);
    }
    if (segs != few) free(segs);
    if (st != TW_OK) return st;

    for (size_t i = 0; i < n_items; i++) {
        const tw_batch_item *it = &items[i];
        tw_seq *s = it->seq;
        if (it->n == 0) continue;
        const uint64_t *tags = it->opts ? it->opts->tags : NULL;
        memcpy(s->tokens + s->pos, it->ids, sizeof(int32_t) * it->n);
        for (size_t j = 0; j < it->n; j++)
            s->tags[s->pos + j] = !tw_is_media_token(m, it->ids[j]) ? 0 : tags ? tags[j] : TW_SEQ_TAG_UNKNOWN;
        s->pos += (int32_t)it->n;
        s->logits_ok = true;
    }
    return TW_OK;
}

tw_status tw_seq_eval(tw_seq *s, const int32_t *ids, size_t n, const tw_eval_opts *opts) {
    tw_batch_item it = { .seq = s, .ids = ids, .n = n, .opts = opts };
    return eval_items(&it, 1, "tw_seq_eval");
}

tw_status tw_seq_eval_batch(const tw_batch_item *items, size_t n_items) {
    return eval_items(items, n_items, "tw_seq_eval_batch");
}
