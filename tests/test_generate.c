/*
** test_generate.c — tw_generate on the tiny TowerVision fixture: greedy ids equal the
** reference's generated_ids for the text cases, runs are bit-identical, the streamed text equals
** out->text equals tw_detokenize(ids), and every stop condition (stop string, stop id,
** max_new_tokens, callback, full context) ends generation where it should with the cache
** holding everything generated. Stepping a tw_gen by hand gives exactly tw_generate's ids, text,
** stop reason and cache in every one of those cases, cancelling included.
*/
#include "tower.h"
#include "hub.h"
#include "model.h"
#include "testhelp.h"

#include <jansson.h>

/* ---- fixtures -------------------------------------------------------------------------------- */

typedef struct tcase {
    const char *name;
    int32_t    *prompt;    /* input_ids */
    size_t      n_prompt;
    int32_t     gen[64];   /* generated_ids */
    size_t      n_gen;
    char       *gen_text;  /* generated_text */
} tcase;

static int load_case(const char *name, tcase *c) {
    memset(c, 0, sizeof *c);
    c->name = name;
    char rel[256];
    snprintf(rel, sizeof rel, "expected/%s/case.json", name);
    json_error_t jerr;
    json_t *j = json_load_file(th_path(rel), 0, &jerr);
    CHECK(j != NULL, "%s: %s", rel, jerr.text);
    if (!j) return 0;
    json_t *g = json_object_get(j, "generated_ids");
    for (size_t i = 0; i < json_array_size(g) && i < 64; i++)
        c->gen[c->n_gen++] = (int32_t)json_integer_value(json_array_get(g, i));
    const char *t = json_string_value(json_object_get(j, "generated_text"));
    c->gen_text = strdup(t ? t : "");
    json_decref(j);

    snprintf(rel, sizeof rel, "expected/%s/tensors.safetensors", name);
    tw_st_set *st = NULL;
    CHECK_OK(tw_st_open_file(th_path(rel), &st), rel);
    if (!st) return 0;
    const tw_tensor *ids = tw_st_get(st, "input_ids");
    CHECK(ids && ids->type == TW_DT_I64, "%s: input_ids int64", rel);
    if (ids && ids->type == TW_DT_I64) {
        c->n_prompt = (size_t)tw_tensor_nelem(ids);
        c->prompt = malloc(sizeof(int32_t) * c->n_prompt);
        for (size_t i = 0; i < c->n_prompt; i++) c->prompt[i] = (int32_t)((const int64_t *)ids->data)[i];
    }
    tw_st_close(st);
    return c->prompt != NULL && c->n_gen == 16;
}

static void free_case(tcase *c) {
    free(c->prompt);
    free(c->gen_text);
}

/* model.c reaches the hub and the template engine through weak symbols, which the linker does
** not pull out of a static library by itself: referencing them here makes tw_model_load whole. */
typedef void (*any_fn)(void);
static volatile any_fn force_link[] = { (any_fn)tw_hub_resolve, (any_fn)tw_template_new };

static tw_model *load_model(int final_softcap) {
    CHECK(force_link[0] && force_link[1], "hub and template engine linked");
    tw_model_params mp = tw_model_default_params();
    mp.final_softcap = final_softcap;
    mp.offline = 1;
    tw_model *m = NULL;
    const char *dir = th_path("tiny-towervision");
    tw_status st = tw_model_load(dir, &mp, &m);
    if (st != TW_OK) {
        /* Not this file's subject: report it loudly, then test generation anyway with the
        ** weights and the tokenizer loaded separately. */
        fprintf(stderr, "WARNING: tw_model_load failed (%s: %s); loading weights + tokenizer separately\n",
                tw_status_name(st), tw_last_error());
        tw_model_free(m);
        m = NULL;
        st = tw_model_load_dir(dir, &mp, &m);
        if (st == TW_OK) st = tw_tokenizer_load(dir, &m->tok);
    }
    CHECK_OK(st, "loading tiny-towervision");
    return st == TW_OK ? m : NULL;
}

/* ---- callback recorder ----------------------------------------------------------------------- */

typedef struct rec {
    char    text[4096];
    size_t  len;
    int     calls;        /* calls with a real id                */
    int     flushes;      /* calls with id -1                    */
    int     stop_after;   /* return 1 on this call (1-based); 0: never */
    int     bad_order;    /* a token call after the final flush  */
} rec;

static int on_token(void *ud, int32_t id, const char *text, size_t len) {
    rec *r = ud;
    if (id < 0) r->flushes++;
    else {
        if (r->flushes) r->bad_order = 1;
        r->calls++;
    }
    if (r->len + len < sizeof r->text) {
        memcpy(r->text + r->len, text, len);
        r->len += len;
        r->text[r->len] = 0;
    }
    return r->stop_after > 0 && r->calls == r->stop_after;
}

/* Runs tw_generate on a fresh sequence. */
static tw_status gen_fresh(tw_model *m, int32_t n_ctx, const tcase *c, const tw_gen_params *gp, rec *r,
                           tw_gen_result *out, int32_t *pos_after) {
    tw_seq *s = NULL;
    tw_status st = tw_seq_new(m, n_ctx, &s);
    CHECK_OK(st, "tw_seq_new");
    if (st) return st;
    if (r) memset(r->text, 0, sizeof r->text), r->len = 0, r->calls = r->flushes = r->bad_order = 0;
    st = tw_generate(s, c->prompt, c->n_prompt, NULL, gp, r ? on_token : NULL, r, out);
    if (pos_after) *pos_after = tw_seq_pos(s);
    tw_seq_free(s);
    return st;
}

static tw_gen_params greedy16(void) {
    tw_gen_params gp = tw_gen_default_params();
    gp.max_new_tokens = 16;
    gp.ignore_model_stops = 1;
    return gp;
}

/* ---- tests ------------------------------------------------------------------------------------ */

static void test_defaults(void) {
    tw_gen_params gp = tw_gen_default_params();
    CHECK(gp.max_new_tokens == 256 && gp.sampling.temperature == 0 && gp.n_stop_strings == 0 &&
          gp.n_stop_ids == 0 && gp.ignore_model_stops == 0, "gen defaults");
    tw_gen_result out;
    memset(&out, 0x5a, sizeof out);
    CHECK(tw_generate(NULL, NULL, 0, NULL, &gp, NULL, NULL, &out) == TW_E_ARG, "NULL seq");
    CHECK(out.ids == NULL && out.text == NULL && out.n_ids == 0, "out zeroed on error");
    tw_gen_result_free(&out);
    tw_gen_result_free(NULL);
    const char *names[] = { "max tokens", "stop id", "stop string", "context full", "callback" };
    for (int r = TW_STOP_MAX_TOKENS; r <= TW_STOP_CALLBACK; r++)
        CHECK(strcmp(tw_stop_reason_name((tw_stop_reason)r), names[r]) == 0, "stop reason %d: %s", r,
              tw_stop_reason_name((tw_stop_reason)r));
    CHECK(strcmp(tw_stop_reason_name((tw_stop_reason)99), "?") == 0, "unknown stop reason");
}

static void test_greedy_case(tw_model *m, const tcase *c) {
    tw_gen_params gp = greedy16();
    tw_gen_result a, b;
    rec r = { .stop_after = 0 };
    int32_t pos = 0;
    CHECK_OK(gen_fresh(m, 0, c, &gp, &r, &a, &pos), c->name);
    CHECK(a.n_ids == 16 && a.stop_reason == TW_STOP_MAX_TOKENS, "%s: 16 tokens, reason %d", c->name, a.stop_reason);
    CHECK(a.n_ids == c->n_gen && memcmp(a.ids, c->gen, sizeof(int32_t) * c->n_gen) == 0,
          "%s: ids equal the reference's generated_ids", c->name);
    CHECK(pos == (int32_t)(c->n_prompt + 16), "%s: every generated token is in the cache (%d)", c->name, pos);
    CHECK(a.text && strlen(a.text) == a.text_len, "%s: text NUL-terminated", c->name);
    CHECK(r.len == a.text_len && memcmp(r.text, a.text, a.text_len) == 0,
          "%s: streamed text == out->text\n  streamed '%s'\n  out      '%s'", c->name, r.text, a.text);
    CHECK(r.calls == 16 && !r.bad_order, "%s: one callback per token (%d)", c->name, r.calls);
    CHECK(a.prefill_ms >= 0 && a.decode_ms >= 0, "%s: timings", c->name);

    char *dt = NULL;
    size_t dl = 0;
    CHECK_OK(tw_detokenize(tw_model_tokenizer(m), a.ids, a.n_ids, 1, &dt, &dl), "tw_detokenize");
    CHECK(dt && dl == a.text_len && memcmp(dt, a.text, dl) == 0,
          "%s: out->text == tw_detokenize(ids)", c->name);
    CHECK(strcmp(a.text, c->gen_text) == 0, "%s: text equals the reference's generated_text\n  got  '%s'\n  want '%s'",
          c->name, a.text, c->gen_text);
    tw_free(dt);

    CHECK_OK(gen_fresh(m, 0, c, &gp, NULL, &b, NULL), c->name);
    CHECK(b.n_ids == a.n_ids && memcmp(a.ids, b.ids, sizeof(int32_t) * a.n_ids) == 0 &&
          b.text_len == a.text_len && memcmp(a.text, b.text, a.text_len) == 0,
          "%s: second run bit-identical", c->name);
    tw_gen_result_free(&b);

    /* The model's own stop ids (1, 107) do not occur here, so they change nothing. */
    gp.ignore_model_stops = 0;
    CHECK_OK(gen_fresh(m, 0, c, &gp, NULL, &b, NULL), c->name);
    CHECK(b.n_ids == 16 && memcmp(a.ids, b.ids, sizeof(int32_t) * 16) == 0, "%s: with model stops", c->name);
    tw_gen_result_free(&b);
    tw_gen_result_free(&a);
}

static void test_softcap(tw_model *mcap, const tcase *c) {
    tw_gen_params gp = greedy16();
    tw_gen_result a;
    CHECK_OK(gen_fresh(mcap, 0, c, &gp, NULL, &a, NULL), c->name);
    CHECK(a.n_ids == c->n_gen && memcmp(a.ids, c->gen, sizeof(int32_t) * c->n_gen) == 0,
          "%s: final softcap on gives the same greedy ids", c->name);
    tw_gen_result_free(&a);
}

/* Byte offset of the start of token k's text in the generated text (by detokenizing prefixes). */
static size_t prefix_len(tw_model *m, const tcase *c, size_t k) {
    char *t = NULL;
    size_t l = 0;
    tw_detokenize(tw_model_tokenizer(m), c->gen, k, 1, &t, &l);
    tw_free(t);
    return l;
}

static void check_stop_string(tw_model *m, const tcase *c, const char *stop, const char *what) {
    const char *hit = strstr(c->gen_text, stop);
    size_t want = hit ? (size_t)(hit - c->gen_text) : strlen(c->gen_text);
    tw_gen_params gp = greedy16();
    const char *stops[] = { "never-appears-xyz", stop };
    gp.stop_strings = stops;
    gp.n_stop_strings = 2;
    tw_gen_result a;
    rec r = { .stop_after = 0 };
    int32_t pos = 0;
    CHECK_OK(gen_fresh(m, 0, c, &gp, &r, &a, &pos), what);
    CHECK(a.stop_reason == (hit ? TW_STOP_STRING : TW_STOP_MAX_TOKENS), "%s: stop reason %d", what, a.stop_reason);
    CHECK(a.text_len == want && memcmp(a.text, c->gen_text, want) == 0,
          "%s: text cut right before the stop string: '%s'", what, a.text);
    CHECK(r.len == a.text_len && memcmp(r.text, a.text, a.text_len) == 0,
          "%s: streamed == out->text: '%s'", what, r.text);
    if (hit) {
        /* generation stopped at the token that completed the stop string */
        size_t k = 0;
        while (k < c->n_gen && prefix_len(m, c, k + 1) < want + strlen(stop)) k++;
        CHECK(a.n_ids == k + 1, "%s: stopped at token %zu (got %zu ids)", what, k + 1, a.n_ids);
        CHECK(pos == (int32_t)(c->n_prompt + a.n_ids), "%s: cache holds the generated tokens", what);
    }
    tw_gen_result_free(&a);
}

static void test_stop_strings(tw_model *m, const tcase *hello, const tcase *tr) {
    check_stop_string(m, hello, "Clooney", "stop string 'Clooney'");
    /* a stop string spanning token boundaries */
    size_t b = prefix_len(m, hello, 2);
    char span[16];
    snprintf(span, sizeof span, "%.*s", 5, hello->gen_text + b - 2);
    check_stop_string(m, hello, span, "stop string across tokens");
    /* A stop string whose beginning shows up at the end and is never completed: held back
    ** while it might match, then released at the end. */
    check_stop_string(m, hello, "コレクションXYZ", "unfinished stop string");
    check_stop_string(m, tr, "Internet blacksmith!", "unfinished stop string 2");
    check_stop_string(m, tr, "InternetInternet", "repeated-token stop string");
    /* stop string at the very start */
    char first[8];
    snprintf(first, sizeof first, "%.3s", tr->gen_text);
    check_stop_string(m, tr, first, "stop string at the start");
    /* (streamed == the text before the stop string, so no part of it was ever streamed) */
}

static void test_stop_ids(tw_model *m, const tcase *c) {
    tw_gen_params gp = greedy16();
    int32_t stop = c->gen[5];
    size_t first = 0;
    while (c->gen[first] != stop) first++;
    gp.stop_ids = &stop;
    gp.n_stop_ids = 1;
    tw_gen_result a;
    rec r = { .stop_after = 0 };
    int32_t pos = 0;
    CHECK_OK(gen_fresh(m, 0, c, &gp, &r, &a, &pos), "stop id");
    CHECK(a.stop_reason == TW_STOP_ID && a.n_ids == first, "stop id: %zu ids (want %zu), reason %d",
          a.n_ids, first, a.stop_reason);
    CHECK(memcmp(a.ids, c->gen, sizeof(int32_t) * a.n_ids) == 0, "stop id: prefix equal");
    CHECK(pos == (int32_t)(c->n_prompt + first + 1), "the stop token is in the cache (pos %d)", pos);
    CHECK(r.calls == (int)first && r.len == a.text_len, "stop token not streamed");
    tw_gen_result_free(&a);
}

static void test_limits(tw_model *m, const tcase *c) {
    tw_gen_params gp = greedy16();
    tw_gen_result a;
    rec r = { .stop_after = 0 };

    gp.max_new_tokens = 5;
    CHECK_OK(gen_fresh(m, 0, c, &gp, &r, &a, NULL), "max_new_tokens");
    CHECK(a.n_ids == 5 && a.stop_reason == TW_STOP_MAX_TOKENS && memcmp(a.ids, c->gen, 5 * sizeof(int32_t)) == 0,
          "max_new_tokens 5: %zu ids", a.n_ids);
    tw_gen_result_free(&a);

    gp.max_new_tokens = 16;
    r.stop_after = 3;
    CHECK_OK(gen_fresh(m, 0, c, &gp, &r, &a, NULL), "callback stop");
    CHECK(a.n_ids == 3 && a.stop_reason == TW_STOP_CALLBACK && r.calls == 3, "callback stop after 3: %zu ids, reason %d",
          a.n_ids, a.stop_reason);
    CHECK(r.len == a.text_len && memcmp(r.text, a.text, a.text_len) == 0, "callback stop: streamed == text");
    r.stop_after = 0;
    tw_gen_result_free(&a);

    int32_t pos = 0;
    gp.max_new_tokens = 0;   /* until a stop or the context is full */
    CHECK_OK(gen_fresh(m, (int32_t)c->n_prompt + 6, c, &gp, &r, &a, &pos), "context full");
    CHECK(a.n_ids == 6 && a.stop_reason == TW_STOP_CONTEXT_FULL && memcmp(a.ids, c->gen, 6 * sizeof(int32_t)) == 0,
          "context full: %zu ids, reason %d", a.n_ids, a.stop_reason);
    CHECK(pos == (int32_t)c->n_prompt + 6, "context full: pos %d", pos);
    tw_gen_result_free(&a);

    CHECK_OK(gen_fresh(m, (int32_t)c->n_prompt, c, &gp, &r, &a, NULL), "prompt fills the context");
    CHECK(a.n_ids == 0 && a.stop_reason == TW_STOP_CONTEXT_FULL && a.text && a.text_len == 0, "no room: 0 ids, reason 3");
    tw_gen_result_free(&a);

    memset(&a, 0x5a, sizeof a);
    tw_status st = gen_fresh(m, (int32_t)c->n_prompt - 1, c, &gp, &r, &a, NULL);
    CHECK(st == TW_E_CONTEXT, "prompt longer than the context: %s", tw_status_name(st));
    CHECK(a.ids == NULL && a.text == NULL && a.n_ids == 0, "out zeroed on error");
}

/* Generating 8 then continuing with an empty prompt gives the same 16 tokens. */
static void test_continue(tw_model *m, const tcase *c) {
    tw_seq *s = NULL;
    CHECK_OK(tw_seq_new(m, 0, &s), "tw_seq_new");
    if (!s) return;
    tw_gen_params gp = greedy16();
    gp.max_new_tokens = 8;
    tw_gen_result a, b;
    CHECK_OK(tw_generate(s, c->prompt, c->n_prompt, NULL, &gp, NULL, NULL, &a), "first half");
    CHECK_OK(tw_generate(s, NULL, 0, NULL, &gp, NULL, NULL, &b), "continue with an empty prompt");
    CHECK(a.n_ids == 8 && b.n_ids == 8 && memcmp(a.ids, c->gen, 32) == 0 && memcmp(b.ids, c->gen + 8, 32) == 0,
          "continuation equals one 16-token run");
    CHECK(tw_seq_pos(s) == (int32_t)c->n_prompt + 16, "pos after continuing");
    tw_gen_result_free(&a);
    tw_gen_result_free(&b);
    tw_seq_free(s);

    CHECK_OK(tw_seq_new(m, 0, &s), "tw_seq_new");
    CHECK(tw_generate(s, NULL, 0, NULL, &gp, NULL, NULL, &a) == TW_E_ARG, "empty prompt on an empty sequence");
    tw_seq_free(s);
}

static void test_sampling(tw_model *m, const tcase *c) {
    tw_gen_params gp = greedy16();
    gp.sampling.temperature = 1.5f;
    gp.sampling.top_k = 40;
    gp.sampling.top_p = 0.95f;
    gp.sampling.repetition_penalty = 1.1f;
    gp.sampling.seed = 1234;
    tw_gen_result a, b;
    rec r = { .stop_after = 0 };
    CHECK_OK(gen_fresh(m, 0, c, &gp, &r, &a, NULL), "sampling");
    CHECK_OK(gen_fresh(m, 0, c, &gp, NULL, &b, NULL), "sampling again");
    CHECK(a.n_ids == 16 && b.n_ids == 16 && memcmp(a.ids, b.ids, 16 * sizeof(int32_t)) == 0,
          "seeded sampling reproducible");
    CHECK(r.len == a.text_len && memcmp(r.text, a.text, a.text_len) == 0, "sampling: streamed == text");
    tw_gen_result_free(&a);
    tw_gen_result_free(&b);
}

/* ---- step-wise generation (tw_gen) ---------------------------------------------------------- */

/* What stepping a tw_gen by hand produced. */
typedef struct steprun {
    int32_t        ids[64];     /* the emitted steps' ids                    */
    size_t         n_ids;
    char           text[4096];  /* every step's text, concatenated           */
    size_t         len;
    char           last[256];   /* the text of the step that ended it        */
    size_t         last_len;
    int            last_id;     /* and its id (-1: none sampled)             */
    tw_stop_reason reason;
    int32_t        pos;         /* the sequence's length at the end          */
} steprun;

/* Prefills c's prompt into a fresh sequence and steps a tw_gen around tw_seq_eval as the header's
** loop does; after the cancel_after-th emitted token (0: never) it cancels instead of going on.
** Checks the step invariants on the way. */
static int run_steps(tw_model *m, int32_t n_ctx, const tcase *c, const tw_gen_params *gp, int cancel_after,
                     steprun *o, const char *what) {
    memset(o, 0, sizeof *o);
    tw_seq *s = NULL;
    tw_gen *g = NULL;
    CHECK_OK(tw_seq_new(m, n_ctx, &s), "tw_seq_new");
    CHECK_OK(tw_gen_new(m, gp, &g), "tw_gen_new");
    if (!s || !g) goto out;
    CHECK_OK(tw_seq_eval(s, c->prompt, c->n_prompt, NULL), "prefill");
    tw_gen_step st;
    for (int n = 0;; n++) {
        int32_t pos = tw_seq_pos(s);
        CHECK_OK(tw_gen_next(g, tw_seq_logits(s), tw_seq_tokens(s), (size_t)pos, tw_seq_n_ctx(s) - pos, &st), what);
        CHECK(st.text != NULL, "%s: step %d: text is never NULL", what, n);
        CHECK(st.done || (st.id >= 0 && st.eval && st.emitted), "%s: step %d: a step that does not end samples, "
              "emits and evaluates a token (id %d eval %d emitted %d)", what, n, st.id, st.eval, st.emitted);
        CHECK(!st.emitted || (st.id >= 0 && st.eval), "%s: step %d: an emitted token is evaluated", what, n);
        CHECK(st.eval == (st.id >= 0), "%s: step %d: every sampled token is evaluated, nothing else", what, n);
        if (st.emitted && o->n_ids < 64) o->ids[o->n_ids++] = st.id;
        if (o->len + st.len < sizeof o->text) memcpy(o->text + o->len, st.text, st.len), o->len += st.len;
        if (st.eval) CHECK_OK(tw_seq_eval(s, &st.id, 1, NULL), "eval the step's token");
        if (!st.done && cancel_after > 0 && (int)o->n_ids == cancel_after) {
            CHECK_OK(tw_gen_cancel(g, &st), "tw_gen_cancel");
            CHECK(st.done && st.id < 0 && !st.eval && !st.emitted, "%s: the cancel step ends without a token", what);
            if (o->len + st.len < sizeof o->text) memcpy(o->text + o->len, st.text, st.len), o->len += st.len;
        }
        if (st.done || n > 1000) break;
    }
    CHECK(st.done, "%s: generation ended", what);
    o->reason = st.stop_reason;
    o->last_id = st.id;
    o->last_len = TW_MIN(st.len, sizeof o->last - 1);
    memcpy(o->last, st.text, o->last_len);
    o->pos = tw_seq_pos(s);
    /* the generator's own record agrees with the steps */
    size_t n_ids = 0, tl = 0;
    const int32_t *ids = tw_gen_ids(g, &n_ids);
    const char *t = tw_gen_text(g, &tl);
    CHECK(n_ids == o->n_ids && (!n_ids || memcmp(ids, o->ids, n_ids * sizeof *ids) == 0), "%s: tw_gen_ids", what);
    CHECK(tl == o->len && memcmp(t, o->text, tl) == 0 && t[tl] == 0, "%s: tw_gen_text == the steps' texts", what);
    /* after the end nothing more happens */
    tw_gen_step again;
    CHECK_OK(tw_gen_next(g, tw_seq_logits(s), tw_seq_tokens(s), (size_t)tw_seq_pos(s), 100, &again), "next after done");
    CHECK(again.done && again.id == -1 && !again.eval && again.len == 0 && again.stop_reason == o->reason,
          "%s: a step after the end is done, without a token or text", what);
    CHECK_OK(tw_gen_cancel(g, &again), "cancel after done");
    CHECK(again.done && again.len == 0 && again.stop_reason == o->reason, "%s: cancelling after the end changes nothing",
          what);
out:
    tw_gen_free(g);
    tw_seq_free(s);
    return s && g;
}

/* Steps by hand and tw_generate (whose callback stops at the same token) give the same ids, text,
** stop reason and cache; the callback's id -1 call carries what the last step released after
** its token. */
static void step_vs_generate(tw_model *m, int32_t n_ctx, const tcase *c, const tw_gen_params *gp, int cancel_after,
                             const char *what) {
    steprun o;
    if (!run_steps(m, n_ctx, c, gp, cancel_after, &o, what)) return;
    tw_gen_result a;
    rec r = { .stop_after = cancel_after };
    int32_t pos = 0;
    CHECK_OK(gen_fresh(m, n_ctx, c, gp, &r, &a, &pos), what);
    CHECK(a.n_ids == o.n_ids && (!a.n_ids || memcmp(a.ids, o.ids, a.n_ids * sizeof(int32_t)) == 0),
          "%s: the same ids (%zu by steps, %zu by tw_generate)", what, o.n_ids, a.n_ids);
    CHECK(a.text && a.text_len == o.len && memcmp(a.text, o.text, o.len) == 0,
          "%s: the same text\n  steps '%.*s'\n  gen   '%s'", what, (int)o.len, o.text, a.text ? a.text : "");
    CHECK(a.stop_reason == o.reason, "%s: the same stop reason (%s by steps, %s by tw_generate)", what,
          tw_stop_reason_name(o.reason), tw_stop_reason_name(a.stop_reason));
    CHECK(pos == o.pos, "%s: the same cache length (%d, %d)", what, o.pos, pos);
    CHECK(r.len == o.len && memcmp(r.text, o.text, o.len) == 0, "%s: streamed == the steps' texts", what);
    tw_gen_result_free(&a);
}

static void test_steps(tw_model *m, const tcase *cs) {
    const tcase *hello = &cs[0], *tr = &cs[1];
    tw_gen_params gp = greedy16();
    steprun o;
    for (int i = 0; i < 3; i++) {   /* greedy: the reference's ids, and tw_generate's */
        char what[64];
        snprintf(what, sizeof what, "steps, greedy %s", cs[i].name);
        step_vs_generate(m, 0, &cs[i], &gp, 0, what);
        if (run_steps(m, 0, &cs[i], &gp, 0, &o, what))
            CHECK(o.n_ids == 16 && !memcmp(o.ids, cs[i].gen, sizeof cs[i].gen[0] * 16) && o.reason == TW_STOP_MAX_TOKENS &&
                  o.last_id == cs[i].gen[15] && strcmp(o.text, cs[i].gen_text) == 0,
                  "%s: the reference's 16 ids and text; the 16th token's step ends it", what);
    }
    tw_gen_params sp = greedy16();   /* seeded sampling */
    sp.sampling.temperature = 1.5f;
    sp.sampling.top_k = 40;
    sp.sampling.top_p = 0.95f;
    sp.sampling.repetition_penalty = 1.1f;
    sp.sampling.seed = 1234;
    step_vs_generate(m, 0, &cs[2], &sp, 0, "steps, seeded sampling");
    sp.sampling.seed = 99;
    step_vs_generate(m, 0, &cs[0], &sp, 0, "steps, seeded sampling 2");

    /* stop strings: within a token, across tokens, held back and never completed */
    size_t b = prefix_len(m, hello, 2);
    char span[16];
    snprintf(span, sizeof span, "%.*s", 5, hello->gen_text + b - 2);
    const char *stops[][2] = { { "x", "Clooney" }, { "x", span }, { "x", "コレクションXYZ" } };
    const char *trs[][2] = { { "x", "Internet blacksmith!" }, { "x", "InternetInternet" } };
    for (int i = 0; i < 3; i++) {
        gp.stop_strings = stops[i];
        gp.n_stop_strings = 2;
        step_vs_generate(m, 0, hello, &gp, 0, stops[i][1]);
    }
    for (int i = 0; i < 2; i++) {
        gp.stop_strings = trs[i];
        gp.n_stop_strings = 2;
        step_vs_generate(m, 0, tr, &gp, 0, trs[i][1]);
    }
    gp.stop_strings = stops[1];
    if (run_steps(m, 0, hello, &gp, 0, &o, "steps, stop string across tokens"))
        CHECK(o.reason == TW_STOP_STRING && o.last_id >= 0 && o.n_ids >= 2 && o.last_id == o.ids[o.n_ids - 1],
              "the step whose token completes the stop string ends it (reason %d)", o.reason);
    /* held text released by the step that reaches max_new_tokens: "コレクション" after token 5 */
    gp.stop_strings = stops[2];
    gp.max_new_tokens = 5;
    step_vs_generate(m, 0, hello, &gp, 0, "steps, held text at max tokens");
    if (run_steps(m, 0, hello, &gp, 0, &o, "steps, held text at max tokens"))
        CHECK(o.reason == TW_STOP_MAX_TOKENS && o.last_id == hello->gen[4] && o.last_len >= strlen("コレクション") &&
              strcmp(o.last + o.last_len - strlen("コレクション"), "コレクション") == 0,
              "the 5th token's step releases the held 'コレクション' (step text '%s')", o.last);
    gp.stop_strings = NULL;
    gp.n_stop_strings = 0;
    gp.max_new_tokens = 16;

    /* stop ids: evaluated, not emitted */
    int32_t stop = hello->gen[5];
    gp.stop_ids = &stop;
    gp.n_stop_ids = 1;
    step_vs_generate(m, 0, hello, &gp, 0, "steps, stop id");
    if (run_steps(m, 0, hello, &gp, 0, &o, "steps, stop id"))
        CHECK(o.reason == TW_STOP_ID && o.last_id == stop && o.pos == (int32_t)(hello->n_prompt + o.n_ids + 1),
              "the stop id's step ends it and the id goes into the cache (pos %d)", o.pos);
    gp.stop_ids = NULL;
    gp.n_stop_ids = 0;

    /* max tokens, context full (after a token, and before any) */
    gp.max_new_tokens = 5;
    step_vs_generate(m, 0, tr, &gp, 0, "steps, max tokens");
    gp.max_new_tokens = 0;
    step_vs_generate(m, (int32_t)tr->n_prompt + 6, tr, &gp, 0, "steps, context full");
    if (run_steps(m, (int32_t)tr->n_prompt + 6, tr, &gp, 0, &o, "steps, context full"))
        CHECK(o.reason == TW_STOP_CONTEXT_FULL && o.n_ids == 6 && o.last_id == tr->gen[5],
              "the token that fills the context ends it (%zu ids, reason %d)", o.n_ids, o.reason);
    step_vs_generate(m, (int32_t)tr->n_prompt, tr, &gp, 0, "steps, no room");
    if (run_steps(m, (int32_t)tr->n_prompt, tr, &gp, 0, &o, "steps, no room"))
        CHECK(o.reason == TW_STOP_CONTEXT_FULL && o.n_ids == 0 && o.last_id == -1 && o.len == 0,
              "no room: the first step ends without a token");

    /* cancel: plainly, and while text is held back (after token 5, "コレクション" might begin
    ** the stop string): the cancel step releases it, as tw_generate's id -1 call does */
    gp.max_new_tokens = 16;
    step_vs_generate(m, 0, tr, &gp, 3, "steps, cancel");
    gp.stop_strings = stops[2];
    gp.n_stop_strings = 2;
    step_vs_generate(m, 0, hello, &gp, 5, "steps, cancel mid-hold");
    if (run_steps(m, 0, hello, &gp, 5, &o, "steps, cancel mid-hold")) {
        size_t want = prefix_len(m, hello, 5);
        CHECK(o.reason == TW_STOP_CALLBACK && o.n_ids == 5 && o.last_id == -1 && o.len == want &&
              o.last_len == strlen("コレクション") && memcmp(o.last, "コレクション", o.last_len) == 0,
              "cancel mid-hold: reason %d, the cancel step releases '%.*s'", o.reason, (int)o.last_len, o.last);
    }
    rec r = { .stop_after = 5 };
    tw_gen_result a;
    CHECK_OK(gen_fresh(m, 0, hello, &gp, &r, &a, NULL), "generate, cancel mid-hold");
    CHECK(a.stop_reason == TW_STOP_CALLBACK && r.calls == 5 && r.flushes == 1, "tw_generate: the held text comes in one "
          "id -1 call after the cancelling token (%d calls, %d flushes)", r.calls, r.flushes);
    tw_gen_result_free(&a);

    /* arguments */
    tw_gen *g = NULL;
    tw_gen_step st;
    CHECK(tw_gen_new(NULL, NULL, &g) == TW_E_ARG && !g, "tw_gen_new: NULL model");
    gp.stop_strings = NULL;
    CHECK(tw_gen_new(m, &gp, &g) == TW_E_ARG && !g && strstr(tw_last_error(), "tw_gen_new: n_stop_strings"),
          "tw_gen_new: stop strings NULL: %s", tw_last_error());
    CHECK_OK(tw_gen_new(m, NULL, &g), "tw_gen_new with the defaults");
    CHECK(tw_gen_next(g, NULL, NULL, 0, 10, &st) == TW_E_ARG && st.id == -1 && !st.done, "tw_gen_next: NULL logits");
    CHECK(tw_gen_cancel(NULL, &st) == TW_E_ARG, "tw_gen_cancel: NULL generator");
    size_t n = 1;
    CHECK(tw_gen_ids(g, &n) == NULL && n == 0 && tw_gen_text(g, &n) && n == 0, "nothing generated yet");
    tw_gen_free(g);
    tw_gen_free(NULL);
}

int main(void) {
    test_defaults();
    tw_model *m = load_model(0);
    tcase cs[3];
    const char *names[3] = { "text_hello", "text_translate", "text_long" };
    int ok = m != NULL;
    for (int i = 0; i < 3; i++) ok &= load_case(names[i], &cs[i]);
    if (ok) {
        for (int i = 0; i < 3; i++) test_greedy_case(m, &cs[i]);
        tw_model *mcap = load_model(1);
        if (mcap)
            for (int i = 0; i < 3; i++) test_softcap(mcap, &cs[i]);
        tw_model_free(mcap);
        test_stop_strings(m, &cs[0], &cs[1]);
        test_stop_ids(m, &cs[0]);
        test_limits(m, &cs[1]);
        test_continue(m, &cs[0]);
        test_sampling(m, &cs[2]);
        test_steps(m, cs);
    }
    for (int i = 0; i < 3; i++) free_case(&cs[i]);
    tw_model_free(m);
    return th_report();
}
