/*
** ocrbench.c — OCRBench's scoring: an item scores 1 when one of its answers, normalised, is a
** substring of the normalised prediction (Python's `in`), and the benchmark's score is the
** number of items scored 1, out of 1000, reported per category.
**
** Two rules (tw_ocrbench_rule): the one of TowerVision's lmms-eval fork (tasks/ocrbench/utils.py,
** ocrbench_process_results), which lowercases the prediction before anything else, HME100k
** included; and OCRBench's own (Yuliang-Liu/MultimodalOCR, the OCRBench evaluation script),
** which leaves HME100k's both sides as written. Upstream lmms-eval has since moved to the latter
** and also folds full-width ASCII; that later rule is not the paper's and is not here.
*/
#include "eval.h"
#include "pystr.h"

#include <math.h>

/* What follows the strip: nothing, "\n" -> " ", or (HME100k) "\n" and " " removed. */
enum { AFTER_NONE, AFTER_NEWLINES, AFTER_HME };

/* text -> [lower ->] strip -> the `after` step, into out. */
static tw_status prep(const uint32_t *v, size_t n, bool lower, int after, tw_u32s *out) {
    tw_u32s low = {0};
    if (lower) {
        TW_TRY(tw_py_lower(v, n, &low));
        v = low.v;
        n = low.n;
    }
    size_t b, e;
    tw_py_strip(v, n, &b, &e);
    tw_status s = TW_OK;
    out->n = 0;
    for (size_t i = b; i < e && s == TW_OK; i++) {
        uint32_t c = v[i];
        if (after == AFTER_HME && (c == '\n' || c == ' ')) continue;
        s = tw_u32s_push(out, c == '\n' && after == AFTER_NEWLINES ? ' ' : c);
    }
    tw_u32s_free(&low);
    return s;
}

static bool contains(const uint32_t *hay, size_t nh, const uint32_t *needle, size_t nn) {
    if (nn == 0) return true;
    for (size_t i = 0; i + nn <= nh; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, nn * sizeof *hay) == 0) return true;
    return false;
}

tw_status tw_ocrbench_score(const char *pred, const char *const *answers, size_t n_answers,
                            const char *dataset_name, tw_ocrbench_rule rule, int *score) {
    if (!pred || !score || !dataset_name || (n_answers && !answers))
        return tw_err(TW_E_ARG, "tw_ocrbench_score: NULL argument");
    if (rule != TW_OCRBENCH_LMMS_EVAL && rule != TW_OCRBENCH_ORIGINAL)
        return tw_err(TW_E_ARG, "tw_ocrbench_score: unknown rule %d", (int)rule);
    for (size_t i = 0; i < n_answers; i++)
        if (!answers[i]) return tw_err(TW_E_ARG, "tw_ocrbench_score: answer %zu is NULL", i);
    const bool hme = strcmp(dataset_name, "HME100k") == 0;
    tw_u32s raw = {0}, p = {0}, a = {0}, first = {0};
    tw_status s = tw_py_decode(pred, strlen(pred), &raw);
    if (s == TW_OK && rule == TW_OCRBENCH_LMMS_EVAL) {
        /* pred = results[0].lower().strip(), before either branch */
        s = prep(raw.v, raw.n, true, AFTER_NONE, &first);
        if (s == TW_OK) { tw_u32s_free(&raw); raw = first; first = (tw_u32s){0}; }
    }
    /* HME100k: the prediction is not lowercased (again); the others lowercase it */
    const int after = hme ? AFTER_HME : AFTER_NEWLINES;
    if (s == TW_OK) s = prep(raw.v, raw.n, !hme, after, &p);
    *score = 0;
    for (size_t i = 0; i < n_answers && s == TW_OK && !*score; i++) {
        tw_u32s g = {0};
        s = tw_py_decode(answers[i], strlen(answers[i]), &g);
        if (s == TW_OK) s = prep(g.v, g.n, !hme, after, &a);
        tw_u32s_free(&g);
        if (s == TW_OK && contains(p.v, p.n, a.v, a.n)) *score = 1;
    }
    tw_u32s_free(&raw);
    tw_u32s_free(&p);
    tw_u32s_free(&a);
    tw_u32s_free(&first);
    return s;
}

/* ---- categories ----------------------------------------------------------------------------- */

static const struct { const char *name; int full; } CATEGORIES[TW_OCRBENCH_N_CATEGORIES] = {
    {"Regular Text Recognition", 50},
    {"Irregular Text Recognition", 50},
    {"Artistic Text Recognition", 50},
    {"Handwriting Recognition", 50},
    {"Digit String Recognition", 50},
    {"Non-Semantic Text Recognition", 50},
    {"Scene Text-centric VQA", 200},
    {"Doc-oriented VQA", 200},
    {"Key Information Extraction", 200},
    {"Handwritten Mathematical Expression Recognition", 100},
};
enum { N_RECOGNITION = 6 };   /* the first six: "Text Recognition(Total 300)" */

const char *tw_ocrbench_category_name(int i) {
    return i >= 0 && i < TW_OCRBENCH_N_CATEGORIES ? CATEGORIES[i].name : NULL;
}

int tw_ocrbench_category_full(int i) {
    return i >= 0 && i < TW_OCRBENCH_N_CATEGORIES ? CATEGORIES[i].full : 0;
}

int tw_ocrbench_category(const char *type) {
    for (int i = 0; type && i < TW_OCRBENCH_N_CATEGORIES; i++)
        if (strcmp(type, CATEGORIES[i].name) == 0) return i;
    return -1;
}

tw_status tw_ocrbench_add(tw_ocrbench_tally *t, const char *type, int score) {
    int i = tw_ocrbench_category(type);
    if (!t || i < 0) return tw_err(TW_E_ARG, "tw_ocrbench_add: unknown category \"%s\"", type ? type : "(null)");
    if (score != 0 && score != 1) return tw_err(TW_E_ARG, "tw_ocrbench_add: score %d (0 or 1)", score);
    t->score[i] += score;
    t->n[i]++;
    return TW_OK;
}

void tw_ocrbench_summarize(const tw_ocrbench_tally *t, tw_ocrbench_summary *out) {
    memset(out, 0, sizeof *out);
    for (int i = 0; i < TW_OCRBENCH_N_CATEGORIES; i++) {
        out->score += t->score[i];
        out->n += t->n[i];
        if (i < N_RECOGNITION) out->recognition += t->score[i];
        out->category_scaled[i] = t->n[i] ? (double)t->score[i] * CATEGORIES[i].full / t->n[i] : NAN;
    }
    out->scaled = out->n ? (double)out->score * 1000 / out->n : NAN;
}
