/*
** test_gemma2.c — parity of the Gemma2 forward and of sequences against the fixtures
** (fixtures/README.md "Semantics" 6-9): logits (probe columns, top-k, logsumexp, argmax) at every
** prompt position, every hidden state, greedy generation with the KV cache, and the image cases'
** text side fed with the fixture's packed features (the merge path). Then the sequence contract:
** prefill == token by token, rewind, final softcap, context limit, argument errors, cache growth,
** and two sequences of one model running on two threads.
*/
#include "model.h"
#include "testhelp.h"
#include "ckpt_variants.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>


/* worst errors seen over all cases, printed at the end */
static double err_logit, err_lse, err_hidden_rel, err_gen, err_full;

/* ---- fixture access ----------------------------------------------------------------------- */

typedef struct fx { tw_st_set *st; const char *name; } fx;

static bool fx_open(fx *f, const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "expected/%s/tensors.safetensors", name);
    f->name = name;
    tw_status s = tw_st_open_file(th_path(rel), &f->st);
    CHECK(s == TW_OK, "open %s: %s", rel, tw_last_error());
    return s == TW_OK;
}

/* A copy of a tensor as f32 (f32 / f64 stored) or NULL; copied because the mapping gives no
** alignment promise for a float pointer. n: element count. */
static float *fx_f32(const fx *f, const char *name, int64_t *n) {
    const tw_tensor *t = tw_st_get(f->st, name);
    CHECK(t != NULL, "%s: tensor %s missing", f->name, name);
    if (!t) return NULL;
    int64_t k = tw_tensor_nelem(t);
    float *out = malloc(sizeof(float) * (size_t)(k ? k : 1));
    if (t->type == TW_DT_F32) memcpy(out, t->data, sizeof(float) * (size_t)k);
    else for (int64_t i = 0; i < k; i++) { double d; memcpy(&d, (const char *)t->data + 8 * i, 8); out[i] = (float)d; }
    if (n) *n = k;
    return out;
}

static int32_t *fx_ids(const fx *f, const char *name, int64_t *n) {
    const tw_tensor *t = tw_st_get(f->st, name);
    CHECK(t != NULL && t->type == TW_DT_I64, "%s: int64 tensor %s missing", f->name, name);
    if (!t) return NULL;
    int64_t k = tw_tensor_nelem(t);
    int32_t *out = malloc(sizeof(int32_t) * (size_t)(k ? k : 1));
    for (int64_t i = 0; i < k; i++) { int64_t v; memcpy(&v, (const char *)t->data + 8 * i, 8); out[i] = (int32_t)v; }
    if (n) *n = k;
    return out;
}

/* ---- logits statistics ---------------------------------------------------------------------- */

static int32_t argmax(const float *l, int32_t V) {   /* first index of the maximum, like torch */
    int32_t b = 0;
    for (int32_t i = 1; i < V; i++) if (l[i] > l[b]) b = i;
    return b;
}

static double logsumexp(const float *l, int32_t V) {
    double mx = l[0], s = 0;
    for (int32_t i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
    for (int32_t i = 0; i < V; i++) s += exp((double)l[i] - mx);
    return mx + log(s);
}

/* top-8 ids, largest first (earlier id first on ties), in one pass with an insertion list */
static void topk8(const float *l, int32_t V, int32_t *ids) {
    int n = 0;
    for (int32_t i = 0; i < V; i++) {
        if (n == 8 && !(l[i] > l[ids[7]])) continue;
        int k = n < 8 ? n++ : 7;
        while (k > 0 && l[i] > l[ids[k - 1]]) { ids[k] = ids[k - 1]; k--; }
        ids[k] = i;
    }
}

/* The per-position checks of the README: probe logits, top-8 ids and values, logsumexp, argmax.
** ref_* point at row `row` of the fixture arrays. Returns the max abs logit error. */
static double check_row(const char *what, int row, const float *l, int32_t V, const int32_t *probe, int64_t P,
                        const float *ref_probe, const int32_t *ref_topk, const float *ref_topv, double ref_lse,
                        int32_t ref_argmax) {
    double e = 0;
    for (int64_t p = 0; p < P; p++) e = fmax(e, fabs((double)l[probe[p]] - ref_probe[p]));
    int32_t ids[8];
    topk8(l, V, ids);
    bool same = true;
    for (int k = 0; k < 8; k++) {
        same &= ids[k] == ref_topk[k];
        e = fmax(e, fabs((double)l[ref_topk[k]] - ref_topv[k]));
    }
    CHECK(same, "%s row %d: top-8 ids differ (first: %d vs %d)", what, row, ids[0], ref_topk[0]);
    double lse = fabs(logsumexp(l, V) - ref_lse);
    CHECK(lse <= 3e-3, "%s row %d: logsumexp off by %g", what, row, lse);
    CHECK(e <= 3e-3, "%s row %d: logits off by %g", what, row, e);
    if (ref_argmax >= 0) CHECK(argmax(l, V) == ref_argmax, "%s row %d: argmax %d, expected %d", what, row, argmax(l, V), ref_argmax);
    err_lse = fmax(err_lse, lse);
    return e;
}

/* ---- one fixture case ----------------------------------------------------------------------- */

/* Prefill the case's prompt (with its packed image features when it has some), check every
** position and every hidden state, then generate 16 tokens greedily one at a time. */
static void check_case(tw_model *m, const char *name, int n_images) {
    fx f;
    if (!fx_open(&f, name)) return;
    const int32_t V = m->text.n_vocab, H = m->text.n_embd, L = m->text.n_layer;
    int64_t T, P, n_gen, n_hid;
    int32_t *ids = fx_ids(&f, "input_ids", &T);
    int32_t *probe = fx_ids(&f, "probe_ids", &P);
    float *r_probe = fx_f32(&f, "logits_probe", NULL), *r_topv = fx_f32(&f, "logits_topk_values", NULL);
    int32_t *r_topk = fx_ids(&f, "logits_topk_ids", NULL), *r_argmax = fx_ids(&f, "logits_argmax", NULL);
    float *r_lse = fx_f32(&f, "logits_logsumexp", NULL), *r_hid = fx_f32(&f, "text_hidden_states", &n_hid);
    int32_t *gen = fx_ids(&f, "generated_ids", &n_gen), *g_topk = fx_ids(&f, "gen_topk_ids", NULL);
    float *g_probe = fx_f32(&f, "gen_logits_probe", NULL), *g_topv = fx_f32(&f, "gen_topk_values", NULL);
    float *g_lse = fx_f32(&f, "gen_logsumexp", NULL);

    /* image features: packed, or packed_0, packed_1, ... concatenated in prompt order */
    float *embd = NULL;
    int64_t n_embd = 0;
    for (int j = 0; j < n_images; j++) {
        char nm[32];
        if (n_images == 1) snprintf(nm, sizeof nm, "packed");
        else snprintf(nm, sizeof nm, "packed_%d", j);
        int64_t k;
        float *p = fx_f32(&f, nm, &k);
        embd = realloc(embd, sizeof(float) * (size_t)(n_embd + k));
        memcpy(embd + n_embd, p, sizeof(float) * (size_t)k);
        n_embd += k;
        free(p);
    }

    float *logits = malloc(sizeof(float) * (size_t)T * V);
    float *hidden = malloc(sizeof(float) * (size_t)(L + 2) * T * H);
    tw_seq *s = NULL;
    CHECK_OK(tw_seq_new(m, 0, &s), "seq_new");
    tw_eval_opts o = { .embd = embd, .n_embd_rows = (size_t)(n_embd / H), .logits = logits, .hidden = hidden };
    CHECK_OK(tw_seq_eval(s, ids, (size_t)T, &o), name);
    CHECK(n_hid == (int64_t)(L + 2) * T * H, "%s: hidden shape", name);

    double e_logit = 0, e_hid = 0, e_hid_abs = 0;
    for (int64_t t = 0; t < T; t++)
        e_logit = fmax(e_logit, check_row(name, (int)t, logits + t * V, V, probe, P, r_probe + t * P, r_topk + t * 8,
                                          r_topv + t * 8, r_lse[t], r_argmax[t]));
    for (int32_t l = 0; l < L + 2; l++) {   /* max|a-b| <= 1e-4 max|b| + 1e-4, per hidden state */
        const float *a = hidden + (size_t)l * T * H, *b = r_hid + (size_t)l * T * H;
        double d = 0, mb = 0;
        for (int64_t i = 0; i < T * H; i++) { d = fmax(d, fabs((double)a[i] - b[i])); mb = fmax(mb, fabs(b[i])); }
        CHECK(d <= 1e-4 * mb + 1e-4, "%s: hidden state %d off by %g (max |ref| %g)", name, l, d, mb);
        e_hid = fmax(e_hid, d / (mb + 1));
        e_hid_abs = fmax(e_hid_abs, d);
    }
    if (tw_st_get(f.st, "logits_full")) {
        float *full = fx_f32(&f, "logits_full", NULL);
        double d = 0;
        for (int64_t i = 0; i < T * V; i++) d = fmax(d, fabs((double)logits[i] - full[i]));
        CHECK(d <= 3e-3, "%s: full logits off by %g", name, d);
        err_full = fmax(err_full, d);
        free(full);
    }
    /* the kept last-row logits are the last row of the full output */
    CHECK(memcmp(tw_seq_logits(s), logits + (T - 1) * V, sizeof(float) * V) == 0, "%s: tw_seq_logits", name);

    /* greedy with the cache: the logits that chose token g, then feed it */
    double e_gen = 0;
    for (int64_t g = 0; g < n_gen; g++) {
        const float *l = tw_seq_logits(s);
        int32_t next = argmax(l, V);
        CHECK(next == gen[g], "%s: generated token %d is %d, expected %d", name, (int)g, next, gen[g]);
        e_gen = fmax(e_gen, check_row(name, (int)(T + g), l, V, probe, P, g_probe + g * P, g_topk + g * 8, g_topv + g * 8,
                                      g_lse[g], -1));
        if (next != gen[g]) break;
        CHECK_OK(tw_seq_eval(s, &next, 1, NULL), "decode");
    }
    CHECK(tw_seq_pos(s) == (int32_t)(T + n_gen), "%s: position after greedy is %d", name, tw_seq_pos(s));
    CHECK(memcmp(tw_seq_tokens(s), ids, sizeof(int32_t) * (size_t)T) == 0 &&
          memcmp(tw_seq_tokens(s) + T, gen, sizeof(int32_t) * (size_t)n_gen) == 0, "%s: token history", name);

    printf("  %-15s T=%3d  logits %.2e  hidden %.2e abs (%.2e of max|ref|+1)  greedy logits %.2e\n", name, (int)T,
           e_logit, e_hid_abs, e_hid, e_gen);
    err_logit = fmax(err_logit, e_logit);
    err_gen = fmax(err_gen, e_gen);
    err_hidden_rel = fmax(err_hidden_rel, e_hid);

    tw_seq_free(s);
    free(logits); free(hidden); free(embd);
    free(ids); free(probe); free(r_probe); free(r_topv); free(r_topk); free(r_argmax); free(r_lse); free(r_hid);
    free(gen); free(g_topk); free(g_probe); free(g_topv); free(g_lse);
    tw_st_close(f.st);
}

/* ---- sequence behaviour ---------------------------------------------------------------------- */

static double max_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

/* Prefill all at once == one token at a time (the cache path); rewind + re-eval == original. */
static void test_cache(tw_model *m, const int32_t *ids, int32_t T) {
    const int32_t V = m->text.n_vocab;
    float *all = malloc(sizeof(float) * (size_t)T * V), *again = malloc(sizeof(float) * 5 * (size_t)V);
    tw_seq *a, *b;
    CHECK_OK(tw_seq_new(m, 0, &a), "seq a");
    CHECK_OK(tw_seq_new(m, 0, &b), "seq b");
    CHECK_OK(tw_seq_eval(a, ids, (size_t)T, &(tw_eval_opts){ .logits = all }), "prefill");
    double d = 0;
    for (int32_t t = 0; t < T; t++) {
        CHECK_OK(tw_seq_eval(b, ids + t, 1, NULL), "one token");
        d = fmax(d, max_diff(tw_seq_logits(b), all + (size_t)t * V, (size_t)V));
    }
    CHECK(d <= 1e-4, "token by token vs prefill: %g", d);
    printf("  cache: token-by-token vs prefill %.2e\n", d);

    CHECK_OK(tw_seq_rewind(a, T - 5), "rewind");
    CHECK(tw_seq_pos(a) == T - 5, "pos after rewind %d", tw_seq_pos(a));
    CHECK(tw_seq_rewind(a, T) == TW_E_ARG, "rewind forward must fail");
    CHECK(tw_seq_rewind(a, -1) == TW_E_ARG, "rewind to -1 must fail");
    CHECK_OK(tw_seq_eval(a, ids + T - 5, 5, &(tw_eval_opts){ .logits = again }), "re-eval");
    d = max_diff(again, all + (size_t)(T - 5) * V, 5 * (size_t)V);
    CHECK(d <= 1e-5, "rewind + re-eval differs by %g", d);
    printf("  cache: rewind + re-eval %.2e\n", d);
    tw_seq_free(a);
    tw_seq_free(b);
    free(all); free(again);
}

/* A prompt longer than the initial cache and than one prefill chunk, evaluated in one call vs in
** two calls (the second grows the cache and moves the cached rows). */
static void test_growth(tw_model *m) {
    enum { N = 600, SPLIT = 200 };
    int32_t *ids = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) ids[i] = (int32_t)((i * 7919u + 13) % 256000u);
    ids[0] = 2;
    tw_seq *a, *b;
    CHECK_OK(tw_seq_new(m, 0, &a), "seq a");
    CHECK_OK(tw_seq_new(m, 0, &b), "seq b");
    CHECK_OK(tw_seq_eval(a, ids, N, NULL), "one call");
    CHECK_OK(tw_seq_eval(b, ids, SPLIT, NULL), "first part");
    CHECK_OK(tw_seq_eval(b, ids + SPLIT, N - SPLIT, NULL), "second part");
    double d = max_diff(tw_seq_logits(a), tw_seq_logits(b), (size_t)m->text.n_vocab);
    CHECK(d <= 1e-4, "600 tokens in one call vs two: %g", d);
    CHECK(a->kv.n_alloc >= N && a->kv.n_alloc <= a->n_ctx, "cache holds %d positions", (int)a->kv.n_alloc);
    CHECK(tw_seq_n_ctx(a) == m->text.n_ctx_train, "n_ctx 0 -> %d", tw_seq_n_ctx(a));
    printf("  cache growth + chunked prefill (600 tokens): %.2e\n", d);
    tw_seq_free(a);
    tw_seq_free(b);
    free(ids);
}

static void test_errors(tw_model *m, const int32_t *ids, int32_t T) {
    tw_seq *s;
    CHECK_OK(tw_seq_new(m, 16, &s), "seq n_ctx 16");
    CHECK(tw_seq_n_ctx(s) == 16, "n_ctx");
    CHECK_OK(tw_seq_eval(s, ids, 11, NULL), "11 tokens");
    tw_status st = tw_seq_eval(s, ids, 6, NULL);
    CHECK(st == TW_E_CONTEXT, "17 > 16 tokens gives %s", tw_status_name(st));
    CHECK(strstr(tw_last_error(), "16") != NULL, "context message names the limit: %s", tw_last_error());
    CHECK(tw_seq_pos(s) == 11, "failed eval leaves pos at %d", tw_seq_pos(s));
    CHECK_OK(tw_seq_eval(s, ids, 5, NULL), "exactly 16 tokens");
    int32_t bad[2] = { 2, m->text.n_vocab };
    tw_seq_rewind(s, 0);
    CHECK(tw_seq_eval(s, bad, 2, NULL) == TW_E_ARG, "id == n_vocab must fail");
    bad[1] = -1;
    CHECK(tw_seq_eval(s, bad, 2, NULL) == TW_E_ARG, "id -1 must fail");
    CHECK(tw_seq_pos(s) == 0, "pos after failed evals");
    tw_seq_free(s);
    CHECK(tw_seq_new(m, -1, &s) == TW_E_ARG, "negative n_ctx");
    TW_UNUSED(T);
}

/* embd rows must match the image tokens exactly (HF's "Image features and image tokens do not match") */
static void test_embd_mismatch(tw_model *m) {
    fx f;
    if (!fx_open(&f, "img_60x60")) return;
    int64_t T, k;
    int32_t *ids = fx_ids(&f, "input_ids", &T);
    float *packed = fx_f32(&f, "packed", &k);
    size_t rows = (size_t)(k / m->text.n_embd);
    tw_seq *s;
    CHECK_OK(tw_seq_new(m, 0, &s), "seq");
    tw_status st = tw_seq_eval(s, ids, (size_t)T, &(tw_eval_opts){ .embd = packed, .n_embd_rows = rows - 1 });
    CHECK(st == TW_E_ARG, "one feature row short gives %s", tw_status_name(st));
    char want[64];
    snprintf(want, sizeof want, "tokens: %zu, features %zu", rows, rows - 1);
    CHECK(strstr(tw_last_error(), want) != NULL, "message gives both counts: %s", tw_last_error());
    st = tw_seq_eval(s, ids, (size_t)T, &(tw_eval_opts){ .embd = packed, .n_embd_rows = rows + 1 });
    CHECK(st == TW_E_ARG, "one feature row too many gives %s", tw_status_name(st));
    CHECK(tw_seq_pos(s) == 0, "pos unchanged");
    tw_seq_free(s);
    free(ids); free(packed);
    tw_st_close(f.st);
}

/* params final_softcap = -1: the config's 30 applies, to the kept and the returned logits */
static void test_final_softcap(const tw_model *plain, const int32_t *ids, int32_t T) {
    tw_model_params p = tw_model_default_params();
    p.final_softcap = -1;
    p.n_threads = 2;
    tw_model *m = NULL;
    CHECK_OK(tw_model_load_dir(th_path("tiny-towervision"), &p, &m), "load with softcap");
    if (!m) return;
    CHECK(m->final_softcap_on, "final_softcap -1 turns the config's softcap on");
    const int32_t V = m->text.n_vocab;
    float *capped = malloc(sizeof(float) * (size_t)T * V), *raw = malloc(sizeof(float) * (size_t)T * V);
    tw_seq *a, *b;
    CHECK_OK(tw_seq_new(m, 0, &a), "seq");
    CHECK_OK(tw_seq_new((tw_model *)plain, 0, &b), "seq");
    CHECK_OK(tw_seq_eval(a, ids, (size_t)T, &(tw_eval_opts){ .logits = capped }), "capped");
    CHECK_OK(tw_seq_eval(b, ids, (size_t)T, &(tw_eval_opts){ .logits = raw }), "raw");
    double d = 0, d_last = 0, mx = 0;
    for (size_t i = 0; i < (size_t)T * V; i++) {
        d = fmax(d, fabs(capped[i] - 30.0 * tanh(raw[i] / 30.0)));
        mx = fmax(mx, fabs(capped[i]));
    }
    for (int32_t i = 0; i < V; i++) d_last = fmax(d_last, fabs(tw_seq_logits(a)[i] - 30.0 * tanh(tw_seq_logits(b)[i] / 30.0)));
    CHECK(d <= 1e-5 && d_last <= 1e-5, "softcap: %g (last %g)", d, d_last);
    CHECK(mx < 30, "capped logits below 30: %g", mx);
    printf("  final softcap 30*tanh(l/30): %.2e\n", d);
    tw_seq_free(a);
    tw_seq_free(b);
    free(capped); free(raw);
    tw_model_free(m);
}

/* Two sequences of one model on two threads give exactly what they give one after the other. */
typedef struct { tw_model *m; const int32_t *ids; int32_t T; float *out; tw_status st; } th_job;

static void *run_job(void *arg) {
    th_job *j = arg;
    tw_seq *s;
    j->st = tw_seq_new(j->m, 0, &s);
    if (j->st != TW_OK) return NULL;
    j->st = tw_seq_eval(s, j->ids, (size_t)j->T, NULL);
    for (int g = 0; g < 4 && j->st == TW_OK; g++) {   /* a few decode steps too */
        int32_t next = argmax(tw_seq_logits(s), j->m->text.n_vocab);
        j->st = tw_seq_eval(s, &next, 1, NULL);
    }
    if (j->st == TW_OK) memcpy(j->out, tw_seq_logits(s), sizeof(float) * (size_t)j->m->text.n_vocab);
    tw_seq_free(s);
    return NULL;
}

static void test_threads(tw_model *m, const int32_t *a, int32_t Ta, const int32_t *b, int32_t Tb) {
    const size_t V = (size_t)m->text.n_vocab;
    th_job seq[2] = { { m, a, Ta, malloc(sizeof(float) * V), 0 }, { m, b, Tb, malloc(sizeof(float) * V), 0 } };
    th_job par[2] = { { m, a, Ta, malloc(sizeof(float) * V), 0 }, { m, b, Tb, malloc(sizeof(float) * V), 0 } };
    run_job(&seq[0]);
    run_job(&seq[1]);
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, run_job, &par[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        CHECK(seq[i].st == TW_OK && par[i].st == TW_OK, "thread job %d failed", i);
        CHECK(memcmp(seq[i].out, par[i].out, sizeof(float) * V) == 0, "thread %d: concurrent result differs", i);
        free(seq[i].out);
        free(par[i].out);
    }
}

/* Every checkpoint layout the loader accepts (legacy names, shards, f32 / mixed dtypes, untied
** head, text-only Gemma2ForCausalLM) gives the base model's logits on text_hello. */
static void test_variants(tw_model *base) {
    fx f;
    if (!fx_open(&f, "text_hello")) return;
    int64_t T;
    int32_t *ids = fx_ids(&f, "input_ids", &T);
    const size_t V = (size_t)base->text.n_vocab, n = (size_t)T * V;
    float *ref = malloc(sizeof(float) * n), *got = malloc(sizeof(float) * n);
    tw_seq *s;
    CHECK_OK(tw_seq_new(base, 0, &s), "seq");
    CHECK_OK(tw_seq_eval(s, ids, (size_t)T, &(tw_eval_opts){ .logits = ref }), "base");
    tw_seq_free(s);

    struct { const char *what; cv_opts o; } v[] = {
        { "legacy names", { .legacy = 1 } },
        { "3 shards", { .n_shards = 3 } },
        { "f32", { .dtype = CV_F32 } },
        { "mixed f32/f16/bf16", { .dtype = CV_MIX } },
        { "untied head", { .untie = 1 } },
        { "legacy + shards + untied", { .legacy = 1, .n_shards = 2, .untie = 1 } },
        { "text-only Gemma2", { .text_only = 1 } },
        { "text-only untied", { .text_only = 1, .untie = 1 } },
    };
    tw_model_params p = tw_model_default_params();
    p.final_softcap = 0;
    p.n_threads = 2;
    double worst = 0;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char *dir = cv_make(th_path("tiny-towervision"), &v[i].o);
        CHECK(dir != NULL, "variant %s: cannot build", v[i].what);
        if (!dir) continue;
        tw_model *m = NULL;
        CHECK_OK(tw_model_load_dir(dir, &p, &m), v[i].what);
        if (m && tw_seq_new(m, 0, &s) == TW_OK) {
            CHECK_OK(tw_seq_eval(s, ids, (size_t)T, &(tw_eval_opts){ .logits = got }), v[i].what);
            double d = max_diff(got, ref, n);
            CHECK(d <= 1e-5, "variant %s: logits differ from the base by %g", v[i].what, d);
            worst = fmax(worst, d);
            tw_seq_free(s);
        }
        tw_model_free(m);
        cv_remove(dir);
    }
    printf("  checkpoint variants vs base (text_hello logits): %.2e\n", worst);
    free(ref); free(got); free(ids);
    tw_st_close(f.st);
}

int main(void) {
    tw_model_params p = tw_model_default_params();
    p.final_softcap = 0;   /* the fixtures hold logits without the final softcap */
    p.n_threads = 2;
    tw_model *m = NULL;
    CHECK_OK(tw_model_load_dir(th_path("tiny-towervision"), &p, &m), "load tiny-towervision");
    if (!m) return th_report();

    printf("parity against the fixtures (max abs errors):\n");
    check_case(m, "text_hello", 0);
    check_case(m, "text_translate", 0);
    check_case(m, "text_long", 0);
    check_case(m, "img_60x60", 1);
    check_case(m, "img_200x100", 1);
    check_case(m, "img_13x400", 1);
    check_case(m, "two_images", 2);

    fx f;
    if (fx_open(&f, "text_translate")) {
        int64_t T, T2;
        int32_t *ids = fx_ids(&f, "input_ids", &T);
        fx g;
        if (fx_open(&g, "text_long")) {
            int32_t *ids2 = fx_ids(&g, "input_ids", &T2);
            test_threads(m, ids, (int32_t)T, ids2, (int32_t)T2);
            free(ids2);
            tw_st_close(g.st);
        }
        test_cache(m, ids, (int32_t)T);
        test_errors(m, ids, (int32_t)T);
        test_final_softcap(m, ids, (int32_t)T);
        free(ids);
        tw_st_close(f.st);
    }
    test_growth(m);
    test_embd_mismatch(m);
    test_variants(m);

    printf("max abs error: logits %.2e, logsumexp %.2e, greedy logits %.2e, text_hello full logits %.2e, "
           "hidden %.2e (relative to max|ref|+1)\n", err_logit, err_lse, err_gen, err_full, err_hidden_rel);
    tw_model_free(m);
    return th_report();
}
