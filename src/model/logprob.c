/*
** logprob.c — log-probabilities and the best alternatives under one row of logits: the scores of
** tw_eval_opts (gemma2.c's head calls this for every scored row) and of generated tokens (the
** server calls it on tw_seq_logits).
**
**   lp(i) = l[i] - lse,   lse = max + log(sum_j exp(l[j] - max))
**
** The sum runs in double: 256,000 terms summed in float would lose about log2(256000) = 18 bits
** of the smaller ones, enough to move lp by 1e-5 on flat distributions; each term is an expf
** (within an ulp), which keeps lp within 1e-6 of a log-softmax computed all in double. The best n_top ids come
** from one pass with a small min-heap (the worst kept id at its root), ties going to the lower id
** as torch.topk's stable order and the fixtures' top-k lists do.
*/
#include "model.h"

#include <math.h>

/* a ranks below b: a lower logit, or the same logit and a higher id */
static bool worse(const float *l, int32_t a, int32_t b) { return l[a] < l[b] || (l[a] == l[b] && a > b); }

static void sift_down(const float *l, int32_t *h, int32_t n, int32_t i) {
    for (;;) {
        int32_t c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && worse(l, h[c + 1], h[c])) c++;
        if (!worse(l, h[c], h[i])) return;
        int32_t t = h[c];
        h[c] = h[i];
        h[i] = t;
        i = c;
    }
}

/* The k best ids of l[0..V), best first, into ids (k <= V). */
static void top_k(const float *l, int32_t V, int32_t k, int32_t *ids) {
    int32_t n = 0;
    for (int32_t i = 0; i < V; i++) {
        if (n < k) {   /* fill, keeping the heap order by sifting the new id up */
            int32_t j = n++;
            ids[j] = i;
            while (j > 0 && worse(l, ids[j], ids[(j - 1) / 2])) {
                int32_t p = (j - 1) / 2, t = ids[p];
                ids[p] = ids[j];
                ids[j] = t;
                j = p;
            }
        } else if (l[i] > l[ids[0]]) {   /* i is later than every kept id: only a higher logit beats */
            ids[0] = i;
            sift_down(l, ids, n, 0);
        }
    }
    for (int32_t i = 1; i < n; i++) {   /* best first: insertion sort of at most TW_MAX_TOP ids */
        int32_t v = ids[i], j = i;
        for (; j > 0 && worse(l, ids[j - 1], v); j--) ids[j] = ids[j - 1];
        ids[j] = v;
    }
}

float tw_logprob(const float *logits, int32_t n_vocab, int32_t id, int32_t n_top, int32_t *top_ids, float *top_lp) {
    if (!logits || n_vocab <= 0) return NAN;
    float mx = -INFINITY;
    for (int32_t i = 0; i < n_vocab; i++) mx = logits[i] > mx ? logits[i] : mx;
    /* exp in float (each term within an ulp; the double exp took four times as long, and a row of
    ** Gemma2's 256,000 logits is scored for every prompt token), summed in double */
    double sum = 0;
    for (int32_t i = 0; i < n_vocab; i++) sum += (double)expf(logits[i] - mx);
    const double lse = (double)mx + log(sum);

    if (n_top > 0 && (top_ids || top_lp)) {
        int32_t ids[TW_MAX_TOP];
        int32_t k = TW_MIN(TW_MIN(n_top, TW_MAX_TOP), n_vocab);
        top_k(logits, n_vocab, k, ids);
        for (int32_t i = 0; i < n_top; i++) {   /* past k (n_top too large): -1 and NAN */
            if (top_ids) top_ids[i] = i < k ? ids[i] : -1;
            if (top_lp) top_lp[i] = i < k ? (float)((double)logits[ids[i]] - lse) : NAN;
        }
    }
    return id >= 0 && id < n_vocab ? (float)((double)logits[id] - lse) : NAN;
}
