/*
** test_batch.c — several sequences in one forward (tw_seq_eval_batch) and scores without full
** logits (tw_eval_opts.logprobs / n_top / top_ids / top_logprobs, tw_logprob), on the tiny
** TowerVision fixture, on every kernel path this CPU runs (tw_kernels_force):
**
**   a. a batch of one item is tw_seq_eval, bit for bit (last logits, every row's logits, hidden
**      states, decode steps)
**   b. a batch mixing two single-token decode steps (one on an f16 cache), a 230-token prefill
**      and an image prompt cut across the chunk boundary gives each sequence what it gets alone
**      within 1e-4, the tolerance test_gemma2 gives a one-row vs a several-row product (a row in
**      a batch of several goes through the matrix-product kernels, alone a decode row goes
**      through the one-row kernels: docs/batching.md); a batch whose every item has several rows
**      and every logit read from a product of several rows on both sides is bit-identical
**   c. four sequences decoding greedily together (one on a bf16 cache, one leaving early) choose
**      the tokens each chooses alone
**   d. scores: against the fixtures' full logits and top-8 lists (the fixtures' tolerances),
**      against the log-softmax of logits_all (1e-5), the first score from the sequence's previous
**      logits, NAN after a rewind, the final softcap, tw_logprob's ties and limits
**   e. every error (same sequence twice, two models, a bad id, no room, media rows, hidden with
**      several items, n_top, NULLs) fails before anything runs: no sequence changes
** The figures measured are printed per path and, worst over the paths, at the end.
*/
#include "model.h"
#include "testhelp.h"

#include <math.h>
#include <stdlib.h>

static tw_model *g_m, *g_cap;   /* the tiny checkpoint without / with the final softcap */
static int32_t V;

/* measured over all paths, printed at the end */
static double worst_mixed, worst_greedy, worst_lp_full, worst_lp_golden, worst_first;

/* ---- fixtures (as test_gemma2.c reads them) ---------------------------------------------------- */

typedef struct fx {
    tw_st_set *st;
    int32_t   *ids;
    int64_t    T;
    float     *embd;        /* packed image rows or NULL */
    size_t     n_rows;
} fx;

static float *fx_f32(tw_st_set *st, const char *name, int64_t *n) {
    const tw_tensor *t = tw_st_get(st, name);
    CHECK(t != NULL, "tensor %s missing", name);
    if (!t) return NULL;
    int64_t k = tw_tensor_nelem(t);
    float *out = malloc(sizeof(float) * (size_t)(k ? k : 1));
    if (t->type == TW_DT_F32) memcpy(out, t->data, sizeof(float) * (size_t)k);
    else for (int64_t i = 0; i < k; i++) { double d; memcpy(&d, (const char *)t->data + 8 * i, 8); out[i] = (float)d; }
    if (n) *n = k;
    return out;
}

static int32_t *fx_i32(tw_st_set *st, const char *name, int64_t *n) {
    const tw_tensor *t = tw_st_get(st, name);
    CHECK(t != NULL && t->type == TW_DT_I64, "int64 tensor %s missing", name);
    if (!t) return NULL;
    int64_t k = tw_tensor_nelem(t);
    int32_t *out = malloc(sizeof(int32_t) * (size_t)(k ? k : 1));
    for (int64_t i = 0; i < k; i++) { int64_t v; memcpy(&v, (const char *)t->data + 8 * i, 8); out[i] = (int32_t)v; }
    if (n) *n = k;
    return out;
}

static bool fx_open(fx *f, const char *name, bool image) {
    char rel[256];
    snprintf(rel, sizeof rel, "expected/%s/tensors.safetensors", name);
    memset(f, 0, sizeof *f);
    tw_status s = tw_st_open_file(th_path(rel), &f->st);
    CHECK(s == TW_OK, "open %s: %s", rel, tw_last_error());
    if (s != TW_OK) return false;
    f->ids = fx_i32(f->st, "input_ids", &f->T);
    if (image) {
        int64_t k;
        f->embd = fx_f32(f->st, "packed", &k);
        f->n_rows = (size_t)(k / g_m->text.n_embd);
    }
    return f->ids != NULL;
}

static void fx_close(fx *f) {
    free(f->ids);
    free(f->embd);
    if (f->st) tw_st_close(f->st);
}

static fx hello, translate, tlong, img;   /* text_hello (11), text_translate (22), text_long (61), img_60x60 (50) */

/* ---- helpers ------------------------------------------------------------------------------------ */

static double max_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

/* max |a - b| over entries finite in both; NAN in one and not the other counts as infinite */
static double max_diff_nan(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) d = isnan(a[i]) && isnan(b[i]) ? d : INFINITY;
        else d = fmax(d, fabs((double)a[i] - b[i]));
    }
    return d;
}

static int32_t argmax(const float *l) {
    int32_t b = 0;
    for (int32_t i = 1; i < V; i++) if (l[i] > l[b]) b = i;
    return b;
}

/* log-sum-exp of one row, in double: log-softmax(row)[id] = row[id] - ref_lse(row) is the
** reference the scores are checked against */
static double ref_lse(const float *l) {
    double mx = l[0], s = 0;
    for (int32_t i = 1; i < V; i++) mx = fmax(mx, l[i]);
    for (int32_t i = 0; i < V; i++) s += exp((double)l[i] - mx);
    return mx + log(s);
}

static double ref_lp(const float *l, int32_t id) { return (double)l[id] - ref_lse(l); }

static tw_seq *seq_new(tw_model *m, tw_kv_type kv, int32_t n_ctx) {
    tw_seq *s = NULL;
    tw_seq_params p = { .kv_type = kv };
    CHECK_OK(tw_seq_new_ex(m, n_ctx, &p, &s), "seq_new");
    return s;
}

/* a sequence holding a fixture's prompt, evaluated alone */
static tw_seq *seq_with(const fx *f, tw_kv_type kv) {
    tw_seq *s = seq_new(g_m, kv, 0);
    CHECK_OK(tw_seq_eval(s, f->ids, (size_t)f->T, &(tw_eval_opts){ .embd = f->embd, .n_embd_rows = f->n_rows }), "prefill");
    return s;
}

static float *fmalloc(size_t n) { return malloc(sizeof(float) * (n ? n : 1)); }

/* ---- a. a batch of one is tw_seq_eval ----------------------------------------------------------- */

static void test_one(void) {
    const int32_t H = g_m->text.n_embd, L = g_m->text.n_layer;
    const fx *cases[] = { &hello, &img };
    for (int c = 0; c < 2; c++) {
        const fx *f = cases[c];
        size_t T = (size_t)f->T;
        float *la = fmalloc(T * V), *lb = fmalloc(T * V);
        float *ha = fmalloc((size_t)(L + 2) * T * H), *hb = fmalloc((size_t)(L + 2) * T * H);
        tw_seq *a = seq_new(g_m, TW_KV_F32, 0), *b = seq_new(g_m, TW_KV_F32, 0);
        tw_eval_opts oa = { .embd = f->embd, .n_embd_rows = f->n_rows, .logits = la, .hidden = ha };
        tw_eval_opts ob = { .embd = f->embd, .n_embd_rows = f->n_rows, .logits = lb, .hidden = hb };
        CHECK_OK(tw_seq_eval(a, f->ids, T, &oa), "eval");
        CHECK_OK(tw_seq_eval_batch(&(tw_batch_item){ b, f->ids, T, &ob }, 1), "batch of one");
        CHECK(memcmp(la, lb, sizeof(float) * T * V) == 0, "batch of one: logits of every row differ");
        CHECK(memcmp(ha, hb, sizeof(float) * (size_t)(L + 2) * T * H) == 0, "batch of one: hidden states differ");
        CHECK(memcmp(tw_seq_logits(a), tw_seq_logits(b), sizeof(float) * (size_t)V) == 0, "batch of one: logits");
        CHECK(tw_seq_pos(b) == (int32_t)T && memcmp(tw_seq_tokens(b), f->ids, sizeof(int32_t) * T) == 0, "history");
        /* a decode step, and a prefill without logits_all (the last-row head) */
        int32_t next = argmax(tw_seq_logits(a));
        CHECK_OK(tw_seq_eval(a, &next, 1, NULL), "step");
        CHECK_OK(tw_seq_eval_batch(&(tw_batch_item){ b, &next, 1, NULL }, 1), "batch step");
        CHECK(memcmp(tw_seq_logits(a), tw_seq_logits(b), sizeof(float) * (size_t)V) == 0, "batch of one: decode step");
        tw_seq_rewind(a, 0);
        tw_seq_rewind(b, 0);
        CHECK_OK(tw_seq_eval(a, f->ids, T, &(tw_eval_opts){ .embd = f->embd, .n_embd_rows = f->n_rows }), "eval");
        CHECK_OK(tw_seq_eval_batch(&(tw_batch_item){ b, f->ids, T, &(tw_eval_opts){ .embd = f->embd,
                                                     .n_embd_rows = f->n_rows } }, 1), "batch");
        CHECK(memcmp(tw_seq_logits(a), tw_seq_logits(b), sizeof(float) * (size_t)V) == 0, "batch of one: last row");
        tw_seq_free(a);
        tw_seq_free(b);
        free(la); free(lb); free(ha); free(hb);
    }
}

/* ---- b. a mixed batch gives each sequence its own results ------------------------------------- */

/* What one item asks and gets: scores and every row's logits when asked. */
typedef struct probe {
    const int32_t *ids;
    size_t n;
    const float *embd;
    size_t n_rows;
    bool want_all, want_lp;
    int32_t n_top;
    float *all, *lp, *tlp;
    int32_t *tid;
} probe;

static void probe_alloc(probe *p) {
    p->all = p->want_all ? fmalloc(p->n * V) : NULL;
    p->lp = p->want_lp ? fmalloc(p->n) : NULL;
    p->tid = p->n_top ? malloc(sizeof(int32_t) * p->n * (size_t)p->n_top) : NULL;
    p->tlp = p->n_top ? fmalloc(p->n * (size_t)p->n_top) : NULL;
}

static tw_eval_opts probe_opts(const probe *p) {
    return (tw_eval_opts){ .embd = p->embd, .n_embd_rows = p->n_rows, .logits = p->all, .logprobs = p->lp,
                           .n_top = p->n_top, .top_ids = p->tid, .top_logprobs = p->tlp };
}

static void probe_free(probe *p) {
    free(p->all); free(p->lp); free(p->tid); free(p->tlp);
}

/* Evaluates items in one batch on seqs[] and alone on twins[] (same histories), then compares
** everything each item got. exact: demand bit-identical results. Returns the max abs difference. */
static double batch_vs_alone(tw_seq **seqs, tw_seq **twins, probe *pa, probe *pb, int n, bool exact, const char *what,
                             bool *bit_same) {
    tw_batch_item items[8];
    tw_eval_opts oa[8], ob[8];
    for (int i = 0; i < n; i++) {
        probe_alloc(&pa[i]);
        probe_alloc(&pb[i]);
        oa[i] = probe_opts(&pa[i]);
        ob[i] = probe_opts(&pb[i]);
        items[i] = (tw_batch_item){ seqs[i], pa[i].ids, pa[i].n, &oa[i] };
    }
    CHECK_OK(tw_seq_eval_batch(items, (size_t)n), what);
    for (int i = 0; i < n; i++) CHECK_OK(tw_seq_eval(twins[i], pb[i].ids, pb[i].n, &ob[i]), "alone");
    double worst = 0;
    for (int i = 0; i < n; i++) {
        const probe *a = &pa[i], *b = &pb[i];
        bool same = memcmp(tw_seq_logits(seqs[i]), tw_seq_logits(twins[i]), sizeof(float) * (size_t)V) == 0;
        double d = max_diff(tw_seq_logits(seqs[i]), tw_seq_logits(twins[i]), (size_t)V);
        CHECK(argmax(tw_seq_logits(seqs[i])) == argmax(tw_seq_logits(twins[i])), "%s item %d: argmax differs", what, i);
        if (a->all) {
            same &= memcmp(a->all, b->all, sizeof(float) * a->n * V) == 0;
            d = fmax(d, max_diff(a->all, b->all, a->n * V));
        }
        if (a->lp) {
            same &= memcmp(a->lp, b->lp, sizeof(float) * a->n) == 0;
            d = fmax(d, max_diff_nan(a->lp, b->lp, a->n));
        }
        if (a->n_top) {
            size_t k = a->n * (size_t)a->n_top;
            bool ids_same = memcmp(a->tid, b->tid, sizeof(int32_t) * k) == 0;
            CHECK(ids_same, "%s item %d: top ids differ", what, i);
            same &= ids_same && memcmp(a->tlp, b->tlp, sizeof(float) * k) == 0;
            d = fmax(d, max_diff_nan(a->tlp, b->tlp, k));
        }
        CHECK(tw_seq_pos(seqs[i]) == tw_seq_pos(twins[i]) &&
              memcmp(tw_seq_tokens(seqs[i]), tw_seq_tokens(twins[i]), sizeof(int32_t) * (size_t)tw_seq_pos(seqs[i])) == 0,
              "%s item %d: history differs", what, i);
        if (exact) CHECK(same, "%s item %d: not bit-identical to the item alone (max diff %g)", what, i, d);
        else CHECK(d <= 1e-4, "%s item %d: differs from the item alone by %g", what, i, d);
        if (bit_same) bit_same[i] = same;
        worst = fmax(worst, d);
    }
    for (int i = 0; i < n; i++) {
        probe_free(&pa[i]);
        probe_free(&pb[i]);
    }
    return worst;
}

/* a long synthetic prompt */
enum { N_LONG = 230 };
static int32_t long_ids[N_LONG];

static void test_mixed(void) {
    /* B decodes one token after text_hello, A prefills 230 tokens, C decodes one token after
    ** text_translate on an f16 cache, D prefills the image prompt with its rows. 282 rows: the
    ** first chunk (256) is B's row, A's, C's and D's first 24, the second D's last 26, so D is cut
    ** where it is not alone (and its media rows continue in the next chunk), and the head gathers
    ** rows of several items, scored and last ones. */
    tw_seq *s[4] = { seq_with(&hello, TW_KV_F32), seq_new(g_m, TW_KV_F32, 0), seq_with(&translate, TW_KV_F16),
                     seq_new(g_m, TW_KV_F32, 0) };
    tw_seq *t[4] = { seq_with(&hello, TW_KV_F32), seq_new(g_m, TW_KV_F32, 0), seq_with(&translate, TW_KV_F16),
                     seq_new(g_m, TW_KV_F32, 0) };
    int32_t nb = argmax(tw_seq_logits(s[0])), nc = argmax(tw_seq_logits(s[2]));
    probe pa[4] = {
        { .ids = &nb, .n = 1, .want_lp = true, .n_top = 5 },
        { .ids = long_ids, .n = N_LONG },
        { .ids = &nc, .n = 1 },
        { .ids = img.ids, .n = (size_t)img.T, .embd = img.embd, .n_rows = img.n_rows, .want_lp = true, .n_top = 8 },
    };
    probe pb[4];
    memcpy(pb, pa, sizeof pa);
    bool same[4];
    double d = batch_vs_alone(s, t, pa, pb, 4, false, "mixed batch", same);
    printf("    mixed batch (decode, 230-row prefill, f16 decode, image prompt across chunks): max diff %.2e; "
           "bit-identical: %s %s %s %s\n", d, same[0] ? "yes" : "no", same[1] ? "yes" : "no", same[2] ? "yes" : "no",
           same[3] ? "yes" : "no");
    worst_mixed = fmax(worst_mixed, d);

    /* Every item several rows inside one chunk, every logit from a product of several rows on
    ** both sides (logits_all where the last row would be a one-row product alone): bit for bit. */
    tw_seq *e[3] = { seq_with(&hello, TW_KV_F32), seq_with(&translate, TW_KV_F16), seq_new(g_m, TW_KV_F32, 0) };
    tw_seq *f[3] = { seq_with(&hello, TW_KV_F32), seq_with(&translate, TW_KV_F16), seq_new(g_m, TW_KV_F32, 0) };
    probe qa[3] = {
        { .ids = translate.ids + 1, .n = 3, .want_all = true },
        { .ids = hello.ids + 1, .n = 2, .want_all = true, .want_lp = true, .n_top = 3 },
        { .ids = translate.ids, .n = (size_t)translate.T, .want_lp = true, .n_top = 4 },
    };
    probe qb[3];
    memcpy(qb, qa, sizeof qa);
    d = batch_vs_alone(e, f, qa, qb, 3, true, "several rows each", NULL);
    printf("    batch of items of several rows each: bit-identical to alone (max diff %.2e)\n", d);

    for (int i = 0; i < 4; i++) tw_seq_free(s[i]), tw_seq_free(t[i]);
    for (int i = 0; i < 3; i++) tw_seq_free(e[i]), tw_seq_free(f[i]);
}

/* ---- c. greedy decoding together == alone ------------------------------------------------------ */

static void test_greedy(void) {
    enum { STEPS = 10, N = 4 };
    const fx *p[N] = { &hello, &translate, &tlong, &img };
    tw_seq *s[N], *t[N];
    tw_batch_item items[N];
    for (int i = 0; i < N; i++) {
        s[i] = seq_new(g_m, i == 1 ? TW_KV_BF16 : TW_KV_F32, 0);
        t[i] = seq_new(g_m, i == 1 ? TW_KV_BF16 : TW_KV_F32, 0);
    }
    /* the prompts prefilled together too */
    tw_eval_opts oi = { .embd = img.embd, .n_embd_rows = img.n_rows };
    for (int i = 0; i < N; i++) {
        items[i] = (tw_batch_item){ s[i], p[i]->ids, (size_t)p[i]->T, i == 3 ? &oi : NULL };
        CHECK_OK(tw_seq_eval(t[i], p[i]->ids, (size_t)p[i]->T, i == 3 ? &oi : NULL), "prefill alone");
    }
    CHECK_OK(tw_seq_eval_batch(items, N), "prefill together");
    double d = 0, d_steps = 0;   /* all logits; those after decode steps only */
    int32_t tok_s[N][STEPS], tok_t[N][STEPS];
    for (int g = 0; g < STEPS; g++) {
        int n = 0;
        for (int i = 0; i < N; i++) {
            double di = max_diff(tw_seq_logits(s[i]), tw_seq_logits(t[i]), (size_t)V);
            d = fmax(d, di);
            if (g > 0) d_steps = fmax(d_steps, di);
            tok_s[i][g] = argmax(tw_seq_logits(s[i]));
            tok_t[i][g] = argmax(tw_seq_logits(t[i]));
            if (i == 2 && g >= 6) continue;   /* one sequence stops early: the batch goes on without it */
            items[n++] = (tw_batch_item){ s[i], &tok_s[i][g], 1, NULL };
            CHECK_OK(tw_seq_eval(t[i], &tok_t[i][g], 1, NULL), "step alone");
        }
        CHECK_OK(tw_seq_eval_batch(items, (size_t)n), "step together");
    }
    for (int i = 0; i < N; i++) {
        CHECK(memcmp(tok_s[i], tok_t[i], sizeof tok_s[i]) == 0, "greedy sequence %d: tokens differ together and alone", i);
        CHECK(tw_seq_pos(s[i]) == tw_seq_pos(t[i]), "greedy sequence %d: position", i);
        tw_seq_free(s[i]);
        tw_seq_free(t[i]);
    }
    CHECK(d <= 1e-4, "greedy together vs alone: logits differ by %g", d);
    /* a batch of decode steps multiplies its rows as decode rows (tw_matmul_rows): each
    ** sequence's step is then exactly its step alone, on every path */
    CHECK(d_steps == 0, "decode steps together vs alone: logits differ by %g (want bit-identical)", d_steps);
    printf("    greedy, 4 sequences (one on a bf16 cache, one stopping early) x %d steps: same tokens, logits %.2e "
           "(after the batched prefill), decode steps bit-identical\n", STEPS, d);
    worst_greedy = fmax(worst_greedy, d);
}

/* ---- d. scores ---------------------------------------------------------------------------------- */

/* The fixtures' logits: log-softmax of logits_full (text_hello), top-8 lists and logsumexp of
** every case, against scores computed without logits held. Tolerance: the fixtures' 3e-3 on
** logits plus 3e-3 on logsumexp (fixtures/README.md), as a log-probability is their difference. */
static void test_golden(void) {
    const fx *cs[] = { &hello, &img };   /* the one with logits_full, and an image prompt */
    double worst = 0;
    for (int c = 0; c < 2; c++) {
        const fx *f = cs[c];
        size_t T = (size_t)f->T;
        float *lp = fmalloc(T), *tlp = fmalloc(T * 8);
        int32_t *tid = malloc(sizeof(int32_t) * T * 8);
        tw_seq *s = seq_new(g_m, TW_KV_F32, 0);
        tw_eval_opts o = { .embd = f->embd, .n_embd_rows = f->n_rows, .logprobs = lp, .n_top = 8, .top_ids = tid,
                           .top_logprobs = tlp };
        CHECK_OK(tw_seq_eval(s, f->ids, T, &o), "scores");
        CHECK(isnan(lp[0]) && tid[0] == -1 && tid[7] == -1 && isnan(tlp[0]), "a new sequence's first score is NAN");
        int32_t *r_topk = fx_i32(f->st, "logits_topk_ids", NULL);
        float *r_topv = fx_f32(f->st, "logits_topk_values", NULL), *r_lse = fx_f32(f->st, "logits_logsumexp", NULL);
        float *full = tw_st_get(f->st, "logits_full") ? fx_f32(f->st, "logits_full", NULL) : NULL;
        double e = 0;
        for (size_t t = 1; t < T; t++) {   /* score t is read from row t - 1 */
            bool same = memcmp(tid + t * 8, r_topk + (t - 1) * 8, sizeof(int32_t) * 8) == 0;
            CHECK(same, "%s score %zu: top-8 ids differ from the fixture's", c == 1 ? "img" : "text", t);
            for (int k = 0; k < 8; k++) e = fmax(e, fabs(tlp[t * 8 + k] - ((double)r_topv[(t - 1) * 8 + k] - r_lse[t - 1])));
            if (full) e = fmax(e, fabs(lp[t] - ref_lp(full + (t - 1) * V, f->ids[t])));
        }
        CHECK(e <= 6e-3, "scores vs the fixture: %g", e);
        worst = fmax(worst, e);
        tw_seq_free(s);
        free(lp); free(tlp); free(tid); free(r_topk); free(r_topv); free(r_lse); free(full);
    }
    printf("    scores vs the fixtures (top-8 ids exact; logprobs, top logprobs): %.2e\n", worst);
    worst_lp_golden = fmax(worst_lp_golden, worst);
}

/* Scores against the log-softmax (in double, by the test) of logits_all computed the existing
** way, on model m (with or without the final softcap): within 1e-5, the rounding of a log-
** probability to float (the logits themselves are the same products: several rows each). Top
** lists sorted, best first, lower id first on ties, each the row's log-softmax. */
static double scores_vs_logits(tw_model *m, const fx *f) {
    size_t T = (size_t)f->T;
    enum { K = 6 };
    float *all = fmalloc(T * V), *lp = fmalloc(T), *tlp = fmalloc(T * K);
    int32_t *tid = malloc(sizeof(int32_t) * T * K);
    tw_seq *a, *b;
    CHECK_OK(tw_seq_new(m, 0, &a), "seq");
    CHECK_OK(tw_seq_new(m, 0, &b), "seq");
    CHECK_OK(tw_seq_eval(a, f->ids, T, &(tw_eval_opts){ .embd = f->embd, .n_embd_rows = f->n_rows, .logits = all }), "all");
    CHECK_OK(tw_seq_eval(b, f->ids, T, &(tw_eval_opts){ .embd = f->embd, .n_embd_rows = f->n_rows, .logprobs = lp,
                                                         .n_top = K, .top_ids = tid, .top_logprobs = tlp }), "scores");
    double e = 0;
    bool sorted = true, top_ok = true;
    for (size_t t = 1; t < T; t++) {
        const float *row = all + (t - 1) * V;
        double lse = ref_lse(row);
        e = fmax(e, fabs(lp[t] - ((double)row[f->ids[t]] - lse)));
        for (int k = 0; k < K; k++) {
            int32_t id = tid[t * K + k];
            e = fmax(e, fabs(tlp[t * K + k] - ((double)row[id] - lse)));
            if (k > 0) {
                int32_t pid = tid[t * K + k - 1];
                sorted &= row[pid] > row[id] || (row[pid] == row[id] && pid < id);
            }
        }
        /* exactly K - 1 ids rank above the list's last (then, sorted, the list is the top K) */
        int32_t last = tid[t * K + K - 1], above = 0;
        for (int32_t i = 0; i < V; i++) above += row[i] > row[last] || (row[i] == row[last] && i < last);
        top_ok &= above == K - 1;
        if (tid[t * K] == f->ids[t]) CHECK(lp[t] == tlp[t * K], "score of the best id is its top logprob");
        CHECK(lp[t] <= tlp[t * K] + 1e-6, "a score above the best one");
    }
    CHECK(sorted, "top ids not sorted best first (ties: lower id)");
    CHECK(top_ok, "an id outside the top list beats it");
    CHECK(e <= 1e-5, "scores vs log-softmax of logits_all: %g", e);
    CHECK(memcmp(tw_seq_logits(a), tw_seq_logits(b), sizeof(float) * (size_t)V) == 0, "scores change the kept logits");
    tw_seq_free(a);
    tw_seq_free(b);
    free(all); free(lp); free(tlp); free(tid);
    return e;
}

static void test_scores(void) {
    double e = scores_vs_logits(g_m, &translate);
    double ec = scores_vs_logits(g_cap, &translate);
    printf("    scores vs log-softmax of logits_all: %.2e (final softcap on: %.2e)\n", e, ec);
    worst_lp_full = fmax(worst_lp_full, fmax(e, ec));

    /* the first score reads the previous logits: the same number tw_logprob gives on them, and
    ** the full prefill's within the 1e-4 of a one-row vs several-row product */
    enum { SPLIT = 10, K = 3 };
    const fx *f = &translate;
    size_t T = (size_t)f->T;
    float *all = fmalloc(T * V), *prev = fmalloc((size_t)V), lp[64], tlp[64 * K], want_tlp[K];
    int32_t tid[64 * K], want_tid[K];
    tw_seq *a = seq_new(g_m, TW_KV_F32, 0), *b = seq_new(g_m, TW_KV_F32, 0);
    CHECK_OK(tw_seq_eval(a, f->ids, T, &(tw_eval_opts){ .logits = all }), "all");
    CHECK_OK(tw_seq_eval(b, f->ids, SPLIT, NULL), "first part");
    memcpy(prev, tw_seq_logits(b), sizeof(float) * (size_t)V);
    tw_eval_opts o = { .logprobs = lp, .n_top = K, .top_ids = tid, .top_logprobs = tlp };
    CHECK_OK(tw_seq_eval(b, f->ids + SPLIT, T - SPLIT, &o), "second part");
    float want = tw_logprob(prev, V, f->ids[SPLIT], K, want_tid, want_tlp);
    CHECK(lp[0] == want && memcmp(tid, want_tid, sizeof want_tid) == 0 && memcmp(tlp, want_tlp, sizeof want_tlp) == 0,
          "first score: %g, tw_logprob on the previous logits %g", lp[0], want);
    double d = fabs(lp[0] - ref_lp(all + (SPLIT - 1) * V, f->ids[SPLIT]));
    CHECK(d <= 1e-4, "first score vs the full prefill's: %g", d);
    worst_first = fmax(worst_first, d);

    /* rewound: no logits for the position before: NAN, ids -1; rewinding nowhere keeps them */
    CHECK_OK(tw_seq_rewind(b, (int32_t)T - 1), "rewind");
    CHECK_OK(tw_seq_eval(b, f->ids + T - 1, 1, &o), "after rewind");
    CHECK(isnan(lp[0]) && isnan(tlp[0]) && tid[0] == -1 && tid[K - 1] == -1, "after a rewind the first score is NAN");
    CHECK_OK(tw_seq_rewind(b, tw_seq_pos(b)), "rewind to the same position");
    int32_t next = argmax(tw_seq_logits(b));
    memcpy(prev, tw_seq_logits(b), sizeof(float) * (size_t)V);
    CHECK_OK(tw_seq_eval(b, &next, 1, &o), "step");
    CHECK(lp[0] == tw_logprob(prev, V, next, 0, NULL, NULL) && tid[0] == next, "score of the greedy token: %g", lp[0]);
    tw_seq_free(a);
    tw_seq_free(b);
    free(all); free(prev);
}

/* tw_logprob on small rows: values, ties, more alternatives than ids, ids outside */
static void test_logprob_fn(void) {
    const float l[5] = { 1, 3, 3, 2, 3 };
    int32_t ids[7];
    float lps[7];
    double lse = log(exp(1.0) + 3 * exp(3.0) + exp(2.0));
    float lp = tw_logprob(l, 5, 3, 3, ids, lps);
    CHECK(fabs(lp - (2 - lse)) < 1e-6, "tw_logprob: %g, expected %g", lp, 2 - lse);
    CHECK(ids[0] == 1 && ids[1] == 2 && ids[2] == 4, "ties: lower id first: %d %d %d", ids[0], ids[1], ids[2]);
    CHECK(fabs(lps[0] - (3 - lse)) < 1e-6 && lps[0] == lps[1] && lps[1] == lps[2], "top logprobs");
    tw_logprob(l, 5, 0, 7, ids, lps);
    CHECK(ids[3] == 3 && ids[4] == 0 && ids[5] == -1 && ids[6] == -1 && isnan(lps[5]) && !isnan(lps[4]),
          "n_top above n_vocab: the rest -1 / NAN");
    CHECK(isnan(tw_logprob(l, 5, 5, 0, NULL, NULL)) && isnan(tw_logprob(l, 5, -1, 0, NULL, NULL)), "id outside: NAN");
    tw_logprob(l, 5, -1, 2, NULL, lps);   /* alternatives without the ids */
    CHECK(lps[0] == lps[1] && fabs(lps[0] - (3 - lse)) < 1e-6, "top logprobs alone");
    const float one[1] = { -7 };
    CHECK(tw_logprob(one, 1, 0, 0, NULL, NULL) == 0, "a single id has log-probability 0");
}

/* ---- e. errors change nothing ------------------------------------------------------------------- */

typedef struct snap { int32_t pos; int32_t *tokens; float *logits; } snap;

static snap take(const tw_seq *s) {
    snap p = { tw_seq_pos(s), malloc(sizeof(int32_t) * (size_t)(tw_seq_pos(s) + 1)), fmalloc((size_t)V) };
    memcpy(p.tokens, tw_seq_tokens(s), sizeof(int32_t) * (size_t)p.pos);
    memcpy(p.logits, tw_seq_logits(s), sizeof(float) * (size_t)V);
    return p;
}

static bool same_as(const tw_seq *s, const snap *p) {
    return tw_seq_pos(s) == p->pos && memcmp(tw_seq_tokens(s), p->tokens, sizeof(int32_t) * (size_t)p->pos) == 0 &&
           memcmp(tw_seq_logits(s), p->logits, sizeof(float) * (size_t)V) == 0;
}

static void test_errors(void) {
    tw_model_params mp = tw_model_default_params();
    mp.final_softcap = 0;
    mp.n_threads = 2;
    tw_model *other = NULL;
    CHECK_OK(tw_model_load_dir(th_path("tiny-towervision"), &mp, &other), "a second model");
    tw_seq *a = seq_with(&hello, TW_KV_F32), *b = seq_with(&translate, TW_KV_F16), *c = seq_new(g_m, TW_KV_F32, 16);
    tw_seq *o = other ? seq_new(other, TW_KV_F32, 0) : NULL;
    CHECK_OK(tw_seq_eval(c, hello.ids, 10, NULL), "c");
    snap sa = take(a), sb = take(b), sc = take(c);
    int32_t tok = 5, bad[2] = { 5, V };
    float lp[64], hid[1];
    tw_eval_opts scored = { .logprobs = lp }, big_top = { .n_top = TW_MAX_TOP + 1 }, with_hidden = { .hidden = hid };
    tw_eval_opts rows_off = { .embd = img.embd, .n_embd_rows = img.n_rows - 1 };
    struct {
        const char *what;
        tw_status want;
        const char *msg;   /* in the message */
        tw_batch_item it[3];
    } cs[] = {
        { "same sequence twice", TW_E_ARG, "same sequence", { { a, &tok, 1, &scored }, { b, &tok, 1, NULL }, { a, &tok, 1, NULL } } },
        { "two models", TW_E_ARG, "another model", { { a, &tok, 1, &scored }, { o, &tok, 1, NULL }, { b, &tok, 1, NULL } } },
        { "id == n_vocab", TW_E_ARG, "item 2", { { a, &tok, 1, &scored }, { b, &tok, 1, NULL }, { c, bad, 2, NULL } } },
        { "no room", TW_E_CONTEXT, "context of 16", { { a, &tok, 1, &scored }, { c, long_ids, 7, NULL }, { b, &tok, 1, NULL } } },
        { "media rows", TW_E_ARG, "do not match", { { a, &tok, 1, &scored }, { b, &tok, 1, NULL }, { c, img.ids, 6, &rows_off } } },
        { "hidden", TW_E_ARG, "batch of one", { { a, &tok, 1, &scored }, { b, &tok, 1, &with_hidden }, { c, &tok, 1, NULL } } },
        { "n_top", TW_E_ARG, "n_top", { { a, &tok, 1, &scored }, { b, &tok, 1, NULL }, { c, &tok, 1, &big_top } } },
        { "NULL ids", TW_E_ARG, "NULL", { { a, &tok, 1, &scored }, { b, NULL, 1, NULL }, { c, &tok, 1, NULL } } },
        { "NULL sequence", TW_E_ARG, "NULL", { { a, &tok, 1, &scored }, { b, &tok, 1, NULL }, { NULL, &tok, 1, NULL } } },
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        if (!o && i == 1) continue;
        tw_status st = tw_seq_eval_batch(cs[i].it, 3);
        CHECK(st == cs[i].want, "%s: %s, expected %s", cs[i].what, tw_status_name(st), tw_status_name(cs[i].want));
        CHECK(strstr(tw_last_error(), cs[i].msg) != NULL, "%s: message \"%s\"", cs[i].what, tw_last_error());
        CHECK(same_as(a, &sa) && same_as(b, &sb) && same_as(c, &sc), "%s: a sequence changed", cs[i].what);
    }
    CHECK(tw_seq_eval_batch(NULL, 2) == TW_E_ARG, "NULL items");
    CHECK_OK(tw_seq_eval_batch(NULL, 0), "no items");
    /* items without tokens are left alone; the others run */
    tw_batch_item some[2] = { { a, NULL, 0, NULL }, { b, &tok, 1, NULL } };
    CHECK_OK(tw_seq_eval_batch(some, 2), "an empty item");
    CHECK(same_as(a, &sa) && tw_seq_pos(b) == sb.pos + 1, "empty item untouched, the other evaluated");
    /* after the failures a's logits are still its last position's: its first score reads them */
    CHECK_OK(tw_seq_eval(a, &tok, 1, &scored), "scored");
    CHECK(lp[0] == tw_logprob(sa.logits, V, tok, 0, NULL, NULL), "first score after failed batches");
    tw_seq_free(a); tw_seq_free(b); tw_seq_free(c); tw_seq_free(o);
    free(sa.tokens); free(sa.logits); free(sb.tokens); free(sb.logits); free(sc.tokens); free(sc.logits);
    tw_model_free(other);
}

/* ---- tw_seq_copy: a second stream from the same context ----------------------------------------- */

static void test_copy(void) {
    tw_seq *a = seq_with(&translate, TW_KV_F16), *b = seq_new(g_m, TW_KV_F16, 0), *c = seq_new(g_m, TW_KV_F32, 0);
    CHECK_OK(tw_seq_eval(b, hello.ids, (size_t)hello.T, NULL), "b's own history");
    CHECK_OK(tw_seq_copy(b, a), "copy");
    CHECK(tw_seq_copy(c, a) == TW_E_ARG, "a copy between KV types is refused");
    CHECK(tw_seq_pos(b) == tw_seq_pos(a) && memcmp(tw_seq_tokens(b), tw_seq_tokens(a), sizeof(int32_t) * translate.T) == 0,
          "the copy's history");
    int32_t next = argmax(tw_seq_logits(a));
    float lpa, lpb;
    CHECK_OK(tw_seq_eval(a, &next, 1, &(tw_eval_opts){ .logprobs = &lpa }), "a");
    CHECK_OK(tw_seq_eval(b, &next, 1, &(tw_eval_opts){ .logprobs = &lpb }), "b");
    CHECK(lpa == lpb && memcmp(tw_seq_logits(a), tw_seq_logits(b), sizeof(float) * (size_t)V) == 0,
          "the copy continues as the original, bit for bit");
    tw_seq_free(a); tw_seq_free(b); tw_seq_free(c);
}

/* ---- main: every kernel path -------------------------------------------------------------------- */

int main(void) {
    tw_model_params p = tw_model_default_params();
    p.final_softcap = 0;   /* the fixtures hold logits without the final softcap */
    p.n_threads = 2;
    CHECK_OK(tw_model_load_dir(th_path("tiny-towervision"), &p, &g_m), "load tiny-towervision");
    p.final_softcap = -1;  /* the config's 30 */
    CHECK_OK(tw_model_load_dir(th_path("tiny-towervision"), &p, &g_cap), "load with the final softcap");
    if (!g_m || !g_cap) return th_report();
    V = g_m->text.n_vocab;
    for (int i = 0; i < N_LONG; i++) long_ids[i] = (int32_t)((i * 7919u + 13) % 256000u);
    long_ids[0] = 2;
    if (fx_open(&hello, "text_hello", false) && fx_open(&translate, "text_translate", false) &&
        fx_open(&tlong, "text_long", false) && fx_open(&img, "img_60x60", true)) {
        test_logprob_fn();
        tw_kpath was = tw_kernels_path();
        for (int k = 0; k < TW_KPATH_COUNT; k++) {
            if (!tw_kpath_supported((tw_kpath)k) || !tw_kernels_force((tw_kpath)k)) continue;
            printf("kernel path %s:\n", tw_kpath_name((tw_kpath)k));
            test_one();
            test_mixed();
            test_greedy();
            test_golden();
            test_scores();
            test_errors();
            test_copy();
        }
        tw_kernels_force(was);
    }
    printf("worst over the paths: mixed batch vs alone %.2e (tolerance 1e-4), greedy logits %.2e (1e-4), scores vs "
           "logits_all %.2e (1e-5), vs the fixtures %.2e (6e-3), first score vs full prefill %.2e (1e-4)\n",
           worst_mixed, worst_greedy, worst_lp_full, worst_lp_golden, worst_first);
    fx_close(&hello); fx_close(&translate); fx_close(&tlong); fx_close(&img);
    tw_model_free(g_m);
    tw_model_free(g_cap);
    return th_report();
}
