/*
** tally.c — accuracy per key: per language for the multiple-choice benchmarks (ALM-Bench reports
** English apart from the mean of the other languages), per language pair for CoMMuTE. A fixed
** table, no allocation: a benchmark has at most a few dozen languages.
*/
#include "eval.h"

#include <math.h>

static int find(const tw_tally *t, const char *key) {
    for (int i = 0; i < t->n_keys; i++)
        if (strcmp(t->key[i], key) == 0) return i;
    return -1;
}

tw_status tw_tally_add(tw_tally *t, const char *key, double score) {
    if (!t || !key) return tw_err(TW_E_ARG, "tw_tally_add: NULL argument");
    if (strlen(key) >= TW_TALLY_KEY_LEN)
        return tw_err(TW_E_ARG, "tw_tally_add: key \"%.20s...\" is %zu bytes (at most %d)", key, strlen(key),
                      TW_TALLY_KEY_LEN - 1);
    int i = find(t, key);
    if (i < 0) {
        if (t->n_keys >= TW_TALLY_MAX_KEYS)
            return tw_err(TW_E_ARG, "tw_tally_add: more than %d keys", TW_TALLY_MAX_KEYS);
        i = t->n_keys++;
        strcpy(t->key[i], key);
        t->sum[i] = 0;
        t->n[i] = 0;
    }
    t->sum[i] += score;
    t->n[i]++;
    return TW_OK;
}

double tw_tally_mean(const tw_tally *t, const char *key) {
    int i = t && key ? find(t, key) : -1;
    return i < 0 ? NAN : t->sum[i] / (double)t->n[i];
}

double tw_tally_macro(const tw_tally *t, const char *except) {
    double sum = 0;
    int n = 0;
    for (int i = 0; t && i < t->n_keys; i++) {
        if (except && strcmp(t->key[i], except) == 0) continue;
        sum += t->sum[i] / (double)t->n[i];
        n++;
    }
    return n ? sum / n : NAN;
}

double tw_tally_micro(const tw_tally *t) {
    double sum = 0;
    int64_t n = 0;
    for (int i = 0; t && i < t->n_keys; i++) {
        sum += t->sum[i];
        n += t->n[i];
    }
    return n ? sum / (double)n : NAN;
}
