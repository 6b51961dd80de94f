/*
** ccocr.c — CC-OCR's multilingual text reading score: a bag-of-tokens F1 between the model's
** transcription and the ground truth, per image, then averaged (macro) and pooled (micro).
** The reference is CC-OCR's evaluator (AlibabaResearch/AdvancedLiterateMachinery,
** Benchmarks/CC-OCR/evaluation/evaluator/ocr_evaluator.py), which TowerVision's lmms-eval fork
** copies into tasks/cc_ocr/cc_ocr_eval/utils.py and calls per language with lowercasing on and
** alphanumeric filtering off.
**
** Tokenisation, as text_normalize_and_tokenize (on code points, CPython's rules, pystr.c):
**   strip; "\t", "\n" -> " "; delete "###", then "***" (each left to right, non-overlapping);
**   each whitespace run (re's \s+) -> " "; words: split on " "; characters: delete " ", one
**   token per code point; lowercase each token (a lone capital sigma stays σ); drop empty ones.
**
** The arithmetic is the reference's, operation for operation in double (C11 mode contracts no
** a*b+c into an FMA), so the figures are equal to its floats.
*/
#include "eval.h"
#include "pystr.h"

#include <stdlib.h>

tw_ccocr_unit tw_ccocr_unit_for(const char *language) {
    static const char *const chars[] = {"Arabic", "Japanese", "Korean", "Chinese"};
    if (!language) return TW_CCOCR_WORDS;
    for (size_t i = 0; i < sizeof chars / sizeof chars[0]; i++)
        if (strcmp(language, chars[i]) == 0) return TW_CCOCR_CHARS;
    return strstr(language, "zh") ? TW_CCOCR_CHARS : TW_CCOCR_WORDS;
}

/* ---- tokens ----------------------------------------------------------------------------------- */

typedef struct token { const uint32_t *v; size_t n; } token;

typedef struct tokens {
    tw_u32s pool;        /* every token's code points, one after the other */
    size_t *end;         /* token i is pool[end[i-1] .. end[i])            */
    size_t  n, cap;
    token  *t;           /* filled by tokens_finish                        */
} tokens;

static void tokens_free(tokens *k) {
    tw_u32s_free(&k->pool);
    free(k->end);
    free(k->t);
    memset(k, 0, sizeof *k);
}

/* Lowercases one raw token into the pool; empty results are dropped. */
static tw_status tokens_add(tokens *k, const uint32_t *v, size_t n) {
    size_t before = k->pool.n;
    TW_TRY(tw_py_lower(v, n, &k->pool));
    if (k->pool.n == before) return TW_OK;
    if (k->n == k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 64;
        size_t *e = tw_realloc(k->end, cap * sizeof *e);
        if (!e) return TW_E_NOMEM;
        k->end = e;
        k->cap = cap;
    }
    k->end[k->n++] = k->pool.n;
    return TW_OK;
}

static int token_cmp(const void *pa, const void *pb) {
    const token *a = pa, *b = pb;
    if (a->n != b->n) return a->n < b->n ? -1 : 1;
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i] != b->v[i]) return a->v[i] < b->v[i] ? -1 : 1;
    return 0;
}

/* Points the tokens into the finished pool and sorts them (any total order groups equal ones). */
static tw_status tokens_finish(tokens *k) {
    k->t = tw_calloc(k->n ? k->n : 1, sizeof *k->t);
    if (!k->t) return TW_E_NOMEM;
    for (size_t i = 0; i < k->n; i++) {
        size_t b = i ? k->end[i - 1] : 0;
        k->t[i] = (token){k->pool.v + b, k->end[i] - b};
    }
    qsort(k->t, k->n, sizeof *k->t, token_cmp);
    return TW_OK;
}

/* s[i..] starts with three c's. */
static bool triple(const uint32_t *s, size_t n, size_t i, uint32_t c) {
    return i + 3 <= n && s[i] == c && s[i + 1] == c && s[i + 2] == c;
}

static tw_status tokenize(const char *text, tw_ccocr_unit unit, tokens *out) {
    tw_u32s raw = {0}, a = {0}, b = {0};
    tw_status s = tw_py_decode(text, strlen(text), &raw);
    size_t lo = 0, hi = 0;
    if (s == TW_OK) tw_py_strip(raw.v, raw.n, &lo, &hi);
    /* tabs and newlines to spaces, then "###" out */
    for (size_t i = lo; i < hi && s == TW_OK;) {
        uint32_t c = raw.v[i] == '\t' || raw.v[i] == '\n' ? ' ' : raw.v[i];
        if (triple(raw.v, hi, i, '#')) { i += 3; continue; }
        s = tw_u32s_push(&a, c);
        i++;
    }
    /* "***" out */
    for (size_t i = 0; i < a.n && s == TW_OK;) {
        if (triple(a.v, a.n, i, '*')) { i += 3; continue; }
        s = tw_u32s_push(&b, a.v[i++]);
    }
    /* whitespace runs to one space */
    a.n = 0;
    for (size_t i = 0; i < b.n && s == TW_OK;) {
        if (tw_py_isspace(b.v[i])) {
            while (i < b.n && tw_py_isspace(b.v[i])) i++;
            s = tw_u32s_push(&a, ' ');
        } else {
            s = tw_u32s_push(&a, b.v[i++]);
        }
    }
    for (size_t i = 0; i < a.n && s == TW_OK;) {
        if (unit == TW_CCOCR_CHARS) {
            if (a.v[i] != ' ') s = tokens_add(out, a.v + i, 1);
            i++;
        } else {
            size_t j = i;
            while (j < a.n && a.v[j] != ' ') j++;
            s = tokens_add(out, a.v + i, j - i);   /* "" between two spaces: dropped */
            i = j + 1;
        }
    }
    if (s == TW_OK) s = tokens_finish(out);
    tw_u32s_free(&raw);
    tw_u32s_free(&a);
    tw_u32s_free(&b);
    return s;
}

tw_status tw_ccocr_count(const char *pred, const char *gt, tw_ccocr_unit unit, tw_ccocr_counts *out) {
    if (!pred || !gt || !out) return tw_err(TW_E_ARG, "tw_ccocr_count: NULL argument");
    if (unit != TW_CCOCR_WORDS && unit != TW_CCOCR_CHARS)
        return tw_err(TW_E_ARG, "tw_ccocr_count: unknown unit %d", (int)unit);
    tokens p = {0}, g = {0};
    tw_status s = tokenize(pred, unit, &p);
    if (s == TW_OK) s = tokenize(gt, unit, &g);
    if (s == TW_OK) {
        /* sum over token types of min(count in gt, count in pred): a merge of the sorted lists */
        int64_t right = 0;
        size_t i = 0, j = 0;
        while (i < p.n && j < g.n) {
            int c = token_cmp(&p.t[i], &g.t[j]);
            if (c < 0) i++;
            else if (c > 0) j++;
            else { right++; i++; j++; }
        }
        *out = (tw_ccocr_counts){right, (int64_t)g.n, (int64_t)p.n};
    }
    tokens_free(&p);
    tokens_free(&g);
    return s;
}

/* ---- the figures -------------------------------------------------------------------------------- */

void tw_ccocr_add(tw_ccocr_acc *acc, const tw_ccocr_counts *c) {
    double r = (double)c->right / ((double)c->n_gt + 1e-9);
    double p = (double)c->right / ((double)c->n_pred + 1e-9);
    double f1 = 2 * r * p / (r + p + 1e-9);
    acc->n_images++;
    acc->right += c->right;
    acc->n_gt += c->n_gt;
    acc->n_pred += c->n_pred;
    acc->sum_recall += r;
    acc->sum_precision += p;
    acc->sum_f1 += f1;
}

void tw_ccocr_result_of(const tw_ccocr_acc *acc, tw_ccocr_result *out) {
    double n = (double)acc->n_images + 1e-9;
    out->macro_recall = acc->sum_recall / n;
    out->macro_precision = acc->sum_precision / n;
    out->macro_f1 = acc->sum_f1 / n;
    out->micro_recall = (double)acc->right / ((double)acc->n_gt + 1e-9);
    out->micro_precision = (double)acc->right / ((double)acc->n_pred + 1e-9);
    out->micro_f1 = 2 * out->micro_recall * out->micro_precision /
                    (out->micro_recall + out->micro_precision + 1e-9);
}
