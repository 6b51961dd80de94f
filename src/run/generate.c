/*
** generate.c — the generation loop: prefill the prompt, then sample, stream and evaluate one
** token at a time until a stop id, a stop string, max_new_tokens, a full context or the
** callback says stop.
**
** Invariants the loop keeps (docs/generation.md spells them out for users):
** - Every token it produces, stop tokens included, is evaluated into the sequence, so the cache
**   always holds prompt + everything generated and a chat can simply continue.
** - Text reaches the callback in order and exactly once; the concatenation of all the texts
**   passed to the callback equals out->text. Text that could be the beginning of a stop string
**   is held back until the next tokens show it is not; text from a stop string on is never
**   passed on. Whatever is still held when generation ends (held-back text that turned out not
**   to be a stop string, an unfinished UTF-8 run) is delivered in one last call with id -1.
** - On error nothing is returned: *out is zeroed and every buffer freed.
*/
#include "model.h"

#include <stdlib.h>

/* ---- parameters --------------------------------------------------------------------------------- */

tw_gen_params tw_gen_default_params(void) {
    tw_gen_params p;
    memset(&p, 0, sizeof p);
    p.max_new_tokens = 256;
    p.sampling = tw_sampler_default_params();
    return p;
}

const char *tw_stop_reason_name(tw_stop_reason r) {
    switch (r) {
    case TW_STOP_MAX_TOKENS: return "max tokens";
    case TW_STOP_ID: return "stop id";
    case TW_STOP_STRING: return "stop string";
    case TW_STOP_CONTEXT_FULL: return "context full";
    case TW_STOP_CALLBACK: return "callback";
    }
    return "?";
}

void tw_gen_result_free(tw_gen_result *r) {
    if (!r) return;
    free(r->ids);
    free(r->text);
    memset(r, 0, sizeof *r);
}

/* ---- state of one tw_generate call ----------------------------------------------------------- */

typedef struct gen {
    const tw_gen_params *p;
    tw_token_fn on_token;
    void       *user_data;
    double      cb_ms;         /* time spent in the callback, kept out of decode_ms       */

    int32_t    *stops;         /* stop ids: the model's (unless ignored) + the caller's   */
    size_t      n_stops;
    size_t      max_stop_len;  /* longest stop string, in bytes                          */

    int32_t    *ids;           /* generated ids                                          */
    size_t      n_ids, cap_ids;
    tw_buf      text;          /* generated text, later cut before a stop string         */
    size_t      emitted;       /* bytes of text already passed to the callback           */
} gen;

static bool is_stop_id(const gen *g, int32_t id) {
    for (size_t i = 0; i < g->n_stops; i++)
        if (g->stops[i] == id) return true;
    return false;
}

static tw_status push_id(gen *g, int32_t id) {
    if (g->n_ids == g->cap_ids) {
        size_t cap = g->cap_ids ? 2 * g->cap_ids : 64;
        int32_t *n = tw_realloc(g->ids, cap * sizeof *n);
        if (!n) return TW_E_NOMEM;
        g->ids = n;
        g->cap_ids = cap;
    }
    g->ids[g->n_ids++] = id;
    return TW_OK;
}

/* Calls the user's callback (if any), timing it. */
static int deliver(gen *g, int32_t id, const char *text, size_t len) {
    if (!g->on_token) return 0;
    double t0 = tw_time_ms();
    int rc = g->on_token(g->user_data, id, text, len);
    g->cb_ms += tw_time_ms() - t0;
    return rc;
}

/* Looks for a stop string in the text from byte `from` on. Returns the start of the earliest
** occurrence, or (size_t)-1. */
static size_t find_stop_string(const gen *g, size_t from) {
    size_t best = (size_t)-1;
    const char *t = g->text.data;
    size_t len = g->text.len;
    for (size_t i = 0; i < g->p->n_stop_strings; i++) {
        const char *ss = g->p->stop_strings[i];
        size_t sl = ss ? strlen(ss) : 0;
        if (sl == 0 || sl > len - from) continue;
        const char *hit = memmem(t + from, len - from, ss, sl);
        if (hit && (size_t)(hit - t) < best) best = (size_t)(hit - t);
    }
    return best;
}

/* The first byte of the text that must be held back: the start of the longest tail of the
** text (after what was already emitted) that is a proper prefix of some stop string. With no
** such tail it is the end of the text. */
static size_t hold_from(const gen *g) {
    const char *t = g->text.data;
    size_t len = g->text.len, hold = len;
    for (size_t i = 0; i < g->p->n_stop_strings; i++) {
        const char *ss = g->p->stop_strings[i];
        size_t sl = ss ? strlen(ss) : 0;
        if (sl < 2) continue;
        size_t kmax = TW_MIN(sl - 1, len - g->emitted);
        for (size_t k = kmax; k >= 1; k--) {
            if (len - k < hold && memcmp(t + len - k, ss, k) == 0) {
                hold = len - k;
                break;
            }
        }
    }
    return hold;
}

/* Appends newly decoded text, then decides what of it may be streamed. Returns true when a stop
** string was found (the text is then cut right before it). *emit / *n_emit: what to pass to the
** callback now. */
static tw_status add_text(gen *g, const char *piece, size_t n, const char **emit, size_t *n_emit,
                          bool *stopped) {
    size_t before = g->text.len;
    *stopped = false;
    if (n > 0) TW_TRY(tw_buf_append(&g->text, piece, n));
    if (g->max_stop_len > 0 && g->text.len > before) {
        /* A new occurrence must end in the new bytes, and none starts before what was emitted
        ** (that text was checked not to begin one). */
        size_t from = before > g->max_stop_len - 1 ? before - (g->max_stop_len - 1) : 0;
        if (from < g->emitted) from = g->emitted;
        size_t q = find_stop_string(g, from);
        if (q != (size_t)-1) {
            g->text.len = q;
            g->text.data[q] = '\0';
            *stopped = true;
        }
    }
    size_t end = (g->max_stop_len > 0 && !*stopped) ? hold_from(g) : g->text.len;
    *emit = g->text.data ? g->text.data + g->emitted : "";
    *n_emit = end - g->emitted;
    g->emitted = end;
    return TW_OK;
}

/* ---- the loop ---------------------------------------------------------------------------------- */

static tw_status collect_stop_ids(gen *g, const tw_model *m) {
    const int32_t *mids = NULL;
    size_t n_model = g->p->ignore_model_stops ? 0 : tw_model_stop_ids(m, &mids);
    size_t n = n_model + g->p->n_stop_ids;
    if (n == 0) return TW_OK;
    g->stops = tw_malloc(n * sizeof *g->stops);
    if (!g->stops) return TW_E_NOMEM;
    for (size_t i = 0; i < n_model; i++) g->stops[g->n_stops++] = mids[i];
    for (size_t i = 0; i < g->p->n_stop_ids; i++) g->stops[g->n_stops++] = g->p->stop_ids[i];
    return TW_OK;
}

/* Makes the sequence's logits those of its last position: evaluates the prompt, or with an
** empty prompt re-evaluates the last cached token (its logits may be stale after a rewind). */
static tw_status prefill(tw_seq *s, const int32_t *prompt, size_t n_prompt, const tw_eval_opts *opts) {
    if (n_prompt > 0) return tw_seq_eval(s, prompt, n_prompt, opts);
    int32_t pos = tw_seq_pos(s);
    if (pos == 0) return tw_err(TW_E_ARG, "tw_generate: empty prompt and the sequence is empty");
    int32_t last = tw_seq_tokens(s)[pos - 1];
    TW_TRY(tw_seq_rewind(s, pos - 1));
    return tw_seq_eval(s, &last, 1, NULL);
}

static tw_status run(gen *g, tw_seq *s, const int32_t *prompt, size_t n_prompt,
                     const tw_eval_opts *prompt_opts, tw_gen_result *out,
                     tw_sampler **smp, tw_detok **dt) {
    const tw_gen_params *p = g->p;
    const tw_model *m = s->m;
    const tw_tokenizer *tok = tw_model_tokenizer(m);

    for (size_t i = 0; i < p->n_stop_strings; i++) {
        size_t l = p->stop_strings[i] ? strlen(p->stop_strings[i]) : 0;
        if (l > g->max_stop_len) g->max_stop_len = l;
    }
    TW_TRY(collect_stop_ids(g, m));
    TW_TRY(tw_sampler_new(&p->sampling, tw_model_n_vocab(m), smp));
    /* Without a tokenizer (a model from tw_model_load_dir) ids are still generated; the text
    ** stays empty and stop strings never match. */
    if (tok) TW_TRY(tw_detok_new(tok, 1, dt));
    TW_TRY(tw_buf_append(&g->text, "", 0));

    double t0 = tw_time_ms();
    TW_TRY(prefill(s, prompt, n_prompt, prompt_opts));
    double t1 = tw_time_ms();
    out->prefill_ms = t1 - t0;

    tw_stop_reason reason = TW_STOP_MAX_TOKENS;
    for (;;) {
        if (p->max_new_tokens > 0 && g->n_ids >= (size_t)p->max_new_tokens) { reason = TW_STOP_MAX_TOKENS; break; }
        if (tw_seq_pos(s) >= tw_seq_n_ctx(s)) { reason = TW_STOP_CONTEXT_FULL; break; }

        int32_t id = tw_sampler_sample(*smp, tw_seq_logits(s), tw_seq_tokens(s), (size_t)tw_seq_pos(s));
        if (is_stop_id(g, id)) {
            /* Into the cache (so the conversation can go on) but not into the output. */
            TW_TRY(tw_seq_eval(s, &id, 1, NULL));
            reason = TW_STOP_ID;
            break;
        }
        TW_TRY(push_id(g, id));

        const char *piece = "", *emit;
        size_t n_piece = 0, n_emit;
        bool stopped = false;
        if (*dt) TW_TRY(tw_detok_push(*dt, id, &piece, &n_piece));
        TW_TRY(add_text(g, piece, n_piece, &emit, &n_emit, &stopped));
        int rc = deliver(g, id, emit, n_emit);

        /* Evaluated even when this is the last token, so the cache holds the whole output. */
        TW_TRY(tw_seq_eval(s, &id, 1, NULL));
        if (stopped) { reason = TW_STOP_STRING; break; }
        if (rc != 0) { reason = TW_STOP_CALLBACK; break; }
    }

    /* Release what is still held: the detokenizer's unfinished bytes and text held back as a
    ** possible stop string that generation ended before completing. */
    if (reason != TW_STOP_STRING) {
        const char *piece = "", *emit;
        size_t n_piece = 0, n_emit;
        bool stopped = false;
        if (*dt) TW_TRY(tw_detok_flush(*dt, &piece, &n_piece));
        TW_TRY(add_text(g, piece, n_piece, &emit, &n_emit, &stopped));
        if (stopped) reason = TW_STOP_STRING;
        size_t rest = g->text.len - g->emitted;
        if (n_emit + rest > 0) {
            /* emit points at the emitted boundary before this call; the held rest follows it */
            deliver(g, -1, emit, n_emit + rest);
            g->emitted = g->text.len;
        }
    }
    out->decode_ms = tw_time_ms() - t1 - g->cb_ms;
    out->stop_reason = reason;
    return TW_OK;
}

tw_status tw_generate(tw_seq *s, const int32_t *prompt, size_t n_prompt, const tw_eval_opts *prompt_opts,
                      const tw_gen_params *p, tw_token_fn on_token, void *user_data,
                      tw_gen_result *out) {
    if (!out) return tw_err(TW_E_ARG, "tw_generate: out is NULL");
    memset(out, 0, sizeof *out);
    if (!s) return tw_err(TW_E_ARG, "tw_generate: NULL sequence");
    if (!prompt && n_prompt > 0) return tw_err(TW_E_ARG, "tw_generate: prompt is NULL");
    tw_gen_params defaults = tw_gen_default_params();
    if (!p) p = &defaults;
    if (p->n_stop_strings > 0 && !p->stop_strings)
        return tw_err(TW_E_ARG, "tw_generate: n_stop_strings is %zu but stop_strings is NULL", p->n_stop_strings);
    if (p->n_stop_ids > 0 && !p->stop_ids)
        return tw_err(TW_E_ARG, "tw_generate: n_stop_ids is %zu but stop_ids is NULL", p->n_stop_ids);

    gen g;
    memset(&g, 0, sizeof g);
    g.p = p;
    g.on_token = on_token;
    g.user_data = user_data;
    tw_sampler *smp = NULL;
    tw_detok *dt = NULL;

    tw_status st = run(&g, s, prompt, n_prompt, prompt_opts, out, &smp, &dt);
    tw_sampler_free(smp);
    tw_detok_free(dt);
    free(g.stops);
    if (st != TW_OK) {
        free(g.ids);
        tw_buf_free(&g.text);
        memset(out, 0, sizeof *out);
        return st;
    }
    out->ids = g.ids;
    out->n_ids = g.n_ids;
    out->text = tw_buf_detach(&g.text, &out->text_len);
    if (!out->text) {
        tw_gen_result_free(out);
        return TW_E_NOMEM;
    }
    return TW_OK;
}
