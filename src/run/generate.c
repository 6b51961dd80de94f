/*
** generate.c — generation one token at a time (tw_gen: sample, stop checks, stop strings, UTF-8
** streaming) and tw_generate, the loop that prefills a prompt and steps a tw_gen around
** tw_seq_eval until a stop id, a stop string, max_new_tokens, a full context or the callback says
** stop. tw_generate holds no per-token logic of its own, so a server that steps tw_gen itself
** (evaluating many sequences in one batch) gets exactly tw_generate's tokens and texts.
**
** Invariants (docs/generation.md spells them out for users):
** - Every token a step samples, stop tokens included, is to be evaluated into the sequence
**   (step.eval), so the cache holds prompt + everything generated and a chat can simply continue.
** - Text is released in order and exactly once; the concatenation of all step texts equals the
**   output text. Text that could be the beginning of a stop string is held back until later
**   tokens show it is not; text from a stop string on is never released. Whatever is still held
**   when generation ends (held-back text that turned out not to be a stop string, an unfinished
**   UTF-8 run) is released by the step that ends it: tw_generate passes that part to the
**   callback in one last call with id -1.
** - On error tw_generate returns nothing: *out is zeroed and every buffer freed.
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

/* ---- the generator ------------------------------------------------------------------------------ */

struct tw_gen {
    int32_t     max_new;       /* <= 0: no limit                                           */
    tw_sampler *smp;
    tw_detok   *dt;            /* NULL without a tokenizer: ids only, no text              */

    int32_t    *stops;         /* stop ids: the model's (unless ignored) + the caller's    */
    size_t      n_stops;
    char      **ss;            /* the non-empty stop strings, copied                       */
    size_t     *ss_len;
    size_t      n_ss;
    size_t      max_stop_len;  /* longest stop string, in bytes                            */

    int32_t    *ids;           /* output ids (stop ids excluded)                           */
    size_t      n_ids, cap_ids;
    tw_buf      text;          /* output text, cut before a stop string once one is found  */
    size_t      emitted;       /* bytes of text already released                          */

    bool        done;
    tw_stop_reason reason;
    size_t      tok_len;       /* last step: bytes of its text the token released; the rest
                               ** (done steps) is what the end flushed (tw_generate's id -1) */
};

void tw_gen_free(tw_gen *g) {
    if (!g) return;
    tw_sampler_free(g->smp);
    tw_detok_free(g->dt);
    free(g->stops);
    for (size_t i = 0; i < g->n_ss; i++) free(g->ss[i]);
    free(g->ss);
    free(g->ss_len);
    free(g->ids);
    tw_buf_free(&g->text);
    free(g);
}

/* Copies p's stop ids (after the model's, unless ignored) and non-empty stop strings into g. */
static tw_status copy_stops(tw_gen *g, const tw_model *m, const tw_gen_params *p) {
    const int32_t *mids = NULL;
    size_t n_model = p->ignore_model_stops ? 0 : tw_model_stop_ids(m, &mids);
    size_t n = n_model + p->n_stop_ids;
    if (n > 0) {
        if (!(g->stops = tw_malloc(n * sizeof *g->stops))) return TW_E_NOMEM;
        for (size_t i = 0; i < n_model; i++) g->stops[g->n_stops++] = mids[i];
        for (size_t i = 0; i < p->n_stop_ids; i++) g->stops[g->n_stops++] = p->stop_ids[i];
    }
    if (p->n_stop_strings > 0) {
        g->ss = tw_calloc(p->n_stop_strings, sizeof *g->ss);
        g->ss_len = tw_calloc(p->n_stop_strings, sizeof *g->ss_len);
        if (!g->ss || !g->ss_len) return TW_E_NOMEM;
    }
    for (size_t i = 0; i < p->n_stop_strings; i++) {
        const char *s = p->stop_strings[i];
        size_t l = s ? strlen(s) : 0;
        if (l == 0) continue;   /* empty stop strings are ignored */
        if (!(g->ss[g->n_ss] = tw_strndup(s, l))) return TW_E_NOMEM;
        g->ss_len[g->n_ss++] = l;
        g->max_stop_len = TW_MAX(g->max_stop_len, l);
    }
    return TW_OK;
}

/* tw_gen_new with the caller's name in messages (tw_generate's keep their name). */
static tw_status gen_create(const tw_model *m, const tw_gen_params *p, const char *who, tw_gen **out) {
    *out = NULL;
    if (!m) return tw_err(TW_E_ARG, "%s: NULL model", who);
    tw_gen_params defaults = tw_gen_default_params();
    if (!p) p = &defaults;
    if (p->n_stop_strings > 0 && !p->stop_strings)
        return tw_err(TW_E_ARG, "%s: n_stop_strings is %zu but stop_strings is NULL", who, p->n_stop_strings);
    if (p->n_stop_ids > 0 && !p->stop_ids)
        return tw_err(TW_E_ARG, "%s: n_stop_ids is %zu but stop_ids is NULL", who, p->n_stop_ids);
    tw_gen *g = tw_calloc(1, sizeof *g);
    if (!g) return TW_E_NOMEM;
    g->max_new = p->max_new_tokens;
    const tw_tokenizer *tok = tw_model_tokenizer(m);
    tw_status st = copy_stops(g, m, p);
    if (st == TW_OK) st = tw_sampler_new(&p->sampling, tw_model_n_vocab(m), &g->smp);
    /* Without a tokenizer (a model from tw_model_load_dir) ids are still generated; the text
    ** stays empty and stop strings never match. */
    if (st == TW_OK && tok) st = tw_detok_new(tok, 1, &g->dt);
    if (st == TW_OK) st = tw_buf_append(&g->text, "", 0);   /* text.data is never NULL */
    if (st != TW_OK) {
        tw_gen_free(g);
        return st;
    }
    *out = g;
    return TW_OK;
}

tw_status tw_gen_new(const tw_model *m, const tw_gen_params *p, tw_gen **out) {
    if (!out) return tw_err(TW_E_ARG, "tw_gen_new: out is NULL");
    return gen_create(m, p, "tw_gen_new", out);
}

const int32_t *tw_gen_ids(const tw_gen *g, size_t *n) {
    if (n) *n = g ? g->n_ids : 0;
    return g ? g->ids : NULL;
}

const char *tw_gen_text(const tw_gen *g, size_t *len) {
    if (len) *len = g ? g->emitted : 0;
    return g ? g->text.data : NULL;
}

/* ---- text and stops ----------------------------------------------------------------------------- */

static bool is_stop_id(const tw_gen *g, int32_t id) {
    for (size_t i = 0; i < g->n_stops; i++)
        if (g->stops[i] == id) return true;
    return false;
}

static tw_status push_id(tw_gen *g, int32_t id) {
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

/* Looks for a stop string in the text from byte `from` on. Returns the start of the earliest
** occurrence, or (size_t)-1. */
static size_t find_stop_string(const tw_gen *g, size_t from) {
    size_t best = (size_t)-1;
    const char *t = g->text.data;
    size_t len = g->text.len;
    for (size_t i = 0; i < g->n_ss; i++) {
        if (g->ss_len[i] > len - from) continue;
        const char *hit = memmem(t + from, len - from, g->ss[i], g->ss_len[i]);
        if (hit && (size_t)(hit - t) < best) best = (size_t)(hit - t);
    }
    return best;
}

/* The first byte of the text that must be held back: the start of the longest tail of the
** text (after what was already released) that is a proper prefix of some stop string. With no
** such tail it is the end of the text. */
static size_t hold_from(const tw_gen *g) {
    const char *t = g->text.data;
    size_t len = g->text.len, hold = len;
    for (size_t i = 0; i < g->n_ss; i++) {
        size_t sl = g->ss_len[i];
        if (sl < 2) continue;
        size_t kmax = TW_MIN(sl - 1, len - g->emitted);
        for (size_t k = kmax; k >= 1; k--) {
            if (len - k < hold && memcmp(t + len - k, g->ss[i], k) == 0) {
                hold = len - k;
                break;
            }
        }
    }
    return hold;
}

/* Appends newly decoded text and moves the released boundary (g->emitted) as far as it may go:
** to the end of the text, or to the start of a possible stop string. When a stop string is
** found the text is cut right before it (*stopped). */
static tw_status add_text(tw_gen *g, const char *piece, size_t n, bool *stopped) {
    size_t before = g->text.len;
    *stopped = false;
    if (n > 0) TW_TRY(tw_buf_append(&g->text, piece, n));
    if (g->max_stop_len > 0 && g->text.len > before) {
        /* A new occurrence must end in the new bytes, and none starts before what was released
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
    g->emitted = (g->max_stop_len > 0 && !*stopped) ? hold_from(g) : g->text.len;
    return TW_OK;
}

/* Ends generation: flushes the detokenizer's unfinished bytes (unless a stop string already cut
** the text), releases everything still held, and fills a done step whose text runs from byte
** `from` (the released boundary before this step's token) to the end. */
static tw_status finish(tw_gen *g, tw_stop_reason reason, size_t from, tw_gen_step *out) {
    if (reason != TW_STOP_STRING) {
        const char *piece = "";
        size_t n_piece = 0;
        bool stopped = false;
        if (g->dt) TW_TRY(tw_detok_flush(g->dt, &piece, &n_piece));
        TW_TRY(add_text(g, piece, n_piece, &stopped));
        if (stopped) reason = TW_STOP_STRING;
    }
    g->emitted = g->text.len;
    g->done = true;
    g->reason = reason;
    out->text = g->text.data + from;
    out->len = g->text.len - from;
    out->done = 1;
    out->stop_reason = reason;
    return TW_OK;
}

/* ---- stepping ----------------------------------------------------------------------------------- */

/* The end was reached before sampling: a step with no token. */
static tw_status end_step(tw_gen *g, tw_stop_reason reason, tw_gen_step *out) {
    g->tok_len = 0;
    if (g->done) {   /* already ended: nothing more, and the reason it ended */
        out->done = 1;
        out->stop_reason = g->reason;
        return TW_OK;
    }
    return finish(g, reason, g->emitted, out);
}

tw_status tw_gen_next(tw_gen *g, const float *logits, const int32_t *history, size_t n_hist, int32_t room,
                      tw_gen_step *out) {
    if (!out) return tw_err(TW_E_ARG, "tw_gen_next: out is NULL");
    *out = (tw_gen_step){ .id = -1, .text = "" };
    if (!g || !logits || (!history && n_hist > 0)) return tw_err(TW_E_ARG, "tw_gen_next: NULL argument");
    if (g->done) return end_step(g, g->reason, out);
    if (room <= 0) return end_step(g, TW_STOP_CONTEXT_FULL, out);

    size_t from = g->emitted;
    g->tok_len = 0;
    int32_t id = tw_sampler_sample(g->smp, logits, history, n_hist);
    out->id = id;
    out->eval = 1;   /* a stop id too: into the cache (so the conversation can go on), not the output */
    if (is_stop_id(g, id)) return finish(g, TW_STOP_ID, from, out);
    TW_TRY(push_id(g, id));
    out->emitted = 1;

    const char *piece = "";
    size_t n_piece = 0;
    bool stopped = false;
    if (g->dt) TW_TRY(tw_detok_push(g->dt, id, &piece, &n_piece));
    TW_TRY(add_text(g, piece, n_piece, &stopped));
    g->tok_len = g->emitted - from;
    if (stopped) return finish(g, TW_STOP_STRING, from, out);
    /* The same checks tw_generate made before the next token, made now so that a scheduler
    ** learns at once that this sequence is finished (the token is still evaluated). */
    if (g->max_new > 0 && g->n_ids >= (size_t)g->max_new) return finish(g, TW_STOP_MAX_TOKENS, from, out);
    if (room - 1 <= 0) return finish(g, TW_STOP_CONTEXT_FULL, from, out);
    out->text = g->text.data + from;
    out->len = g->tok_len;
    return TW_OK;
}

tw_status tw_gen_cancel(tw_gen *g, tw_gen_step *out) {
    if (!out) return tw_err(TW_E_ARG, "tw_gen_cancel: out is NULL");
    *out = (tw_gen_step){ .id = -1, .text = "" };
    if (!g) return tw_err(TW_E_ARG, "tw_gen_cancel: NULL generator");
    return end_step(g, TW_STOP_CALLBACK, out);
}

/* ---- the loop ----------------------------------------------------------------------------------- */

/* Calls the user's callback (if any), timing it into *cb_ms (kept out of decode_ms). */
static int deliver(tw_token_fn fn, void *ud, double *cb_ms, int32_t id, const char *text, size_t len) {
    if (!fn) return 0;
    double t0 = tw_time_ms();
    int rc = fn(ud, id, text, len);
    *cb_ms += tw_time_ms() - t0;
    return rc;
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

/* Steps g around tw_seq_eval. A step's text is the token's (passed with its id) followed, when
** the step ends generation, by what the end released (passed with id -1, after the token is
** evaluated). A non-zero return from the callback cancels: tw_gen_cancel releases what is held,
** unless the step had already ended generation for another reason, which only a stop string
** outranks (as when the callback's stop and the stop string come with the same token). */
static tw_status run(tw_gen *g, tw_seq *s, const int32_t *prompt, size_t n_prompt, const tw_eval_opts *prompt_opts,
                     tw_token_fn on_token, void *user_data, tw_gen_result *out) {
    double cb_ms = 0, t0 = tw_time_ms();
    TW_TRY(prefill(s, prompt, n_prompt, prompt_opts));
    double t1 = tw_time_ms();
    out->prefill_ms = t1 - t0;

    tw_gen_step step;
    for (;;) {
        int32_t pos = tw_seq_pos(s);
        TW_TRY(tw_gen_next(g, tw_seq_logits(s), tw_seq_tokens(s), (size_t)pos, tw_seq_n_ctx(s) - pos, &step));
        size_t tok = step.emitted ? g->tok_len : 0;
        int rc = step.emitted ? deliver(on_token, user_data, &cb_ms, step.id, step.text, tok) : 0;
        /* Evaluated even when this is the last token, so the cache holds the whole output. */
        if (step.eval) TW_TRY(tw_seq_eval(s, &step.id, 1, NULL));
        if (!step.done && rc != 0) {
            TW_TRY(tw_gen_cancel(g, &step));
            tok = 0;
        }
        if (step.done) {
            if (step.len > tok) deliver(on_token, user_data, &cb_ms, -1, step.text + tok, step.len - tok);
            out->stop_reason = step.stop_reason;
            if (rc != 0 && step.stop_reason != TW_STOP_STRING) out->stop_reason = TW_STOP_CALLBACK;
            break;
        }
    }
    out->decode_ms = tw_time_ms() - t1 - cb_ms;
    return TW_OK;
}

tw_status tw_generate(tw_seq *s, const int32_t *prompt, size_t n_prompt, const tw_eval_opts *prompt_opts,
                      const tw_gen_params *p, tw_token_fn on_token, void *user_data,
                      tw_gen_result *out) {
    if (!out) return tw_err(TW_E_ARG, "tw_generate: out is NULL");
    memset(out, 0, sizeof *out);
    if (!s) return tw_err(TW_E_ARG, "tw_generate: NULL sequence");
    if (!prompt && n_prompt > 0) return tw_err(TW_E_ARG, "tw_generate: prompt is NULL");
    tw_gen *g = NULL;
    TW_TRY(gen_create(s->m, p, "tw_generate", &g));
    tw_status st = run(g, s, prompt, n_prompt, prompt_opts, on_token, user_data, out);
    if (st != TW_OK) {
        tw_gen_free(g);
        memset(out, 0, sizeof *out);
        return st;
    }
    out->ids = g->ids;   /* the result takes the generator's buffers */
    out->n_ids = g->n_ids;
    g->ids = NULL;
    out->text = tw_buf_detach(&g->text, &out->text_len);
    tw_gen_free(g);
    if (!out->text) {
        tw_gen_result_free(out);
        return TW_E_NOMEM;
    }
    return TW_OK;
}
