/*
** test_generate.c — tw_generate on the tiny TowerVision fixture: greedy ids equal the
** reference's generated_ids for the text cases, runs are bit-identical, the streamed text equals
** out->text equals tw_detokenize(ids), and every stop condition (stop string, stop id,
** max_new_tokens, callback, full context) ends generation where it should with the cache
** holding everything generated.
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
    }
    for (int i = 0; i < 3; i++) free_case(&cs[i]);
    tw_model_free(m);
    return th_report();
}
