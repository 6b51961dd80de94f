/*
** sampler.c — picks the next token from a row of logits.
**
** The pipeline follows the order in which transformers' generate() applies its logits processors
** and warpers, so a configuration means the same thing here as in HF:
**
**   1. repetition penalty     HF RepetitionPenaltyLogitsProcessor: every id present in the
**                             history gets logit < 0 ? logit * p : logit / p
**   2. presence / frequency   OpenAI: logit -= presence * (count > 0) + frequency * count
**   3. temperature <= 0       greedy: the FIRST index of the maximum (bit-stable, no RNG used)
**   4. temperature            logits / T
**   5. top-k                  the k best tokens (exactly k: ties at the border go to the lower id)
**   6. top-p                  HF TopPLogitsWarper: the smallest prefix of the tokens sorted by
**                             probability whose cumulative probability reaches top_p (>= 1 token)
**   7. min-p                  HF MinPLogitsWarper: drop tokens with prob < min_p * max prob
**   8. draw                   from the softmax of what is left, with xoshiro256** seeded by
**                             splitmix64(seed): the same seed gives the same draws everywhere.
**
** The penalties look at the last penalty_last_n tokens of the history (-1: all of it; HF itself
** has no window and looks at the whole input, which is what -1 gives).
**
** The vocabulary is large (256001 for TowerVision), so nothing here sorts it whole unless it has
** to: top-k keeps a k-element heap, top-p runs a quickselect steered by probability mass, so
** no path sorts more than top_k tokens. All buffers are allocated once in
** tw_sampler_new; tw_sampler_sample never allocates.
**
** Non-finite logits: NaN counts as -inf (never drawn); if some logits are +inf the draw is
** uniform over those (the limit of the softmax); if every logit is -inf or NaN the answer is 0.
*/
#include "tw_internal.h"

#include <math.h>
#include <stdlib.h>

/* A candidate token: its id and a value (scaled logit, then weight exp(z)). */
typedef struct cand {
    float   v;
    int32_t id;
} cand;

struct tw_sampler {
    tw_sampler_params p;
    int32_t   n_vocab;          /* V                                                  */
    float    *work;             /* [V] logits after the penalties                      */
    cand     *c;                /* [V] candidates                                      */
    uint32_t *count;            /* [V] occurrences in the penalty window; kept all-zero
                                ** between calls                                       */
    uint64_t  rng[4];           /* xoshiro256** state                                  */
};

/* ---- PRNG: splitmix64 to seed, xoshiro256** to draw (public-domain algorithms by Vigna) ---- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4]) {
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform double in [0, 1) from the top 53 bits. */
static double rng_uniform(uint64_t s[4]) { return (double)(xoshiro_next(s) >> 11) * 0x1.0p-53; }

/* ---- parameters ------------------------------------------------------------------------------ */

tw_sampler_params tw_sampler_default_params(void) {
    tw_sampler_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 0.0f;          /* greedy, like generation_config.json without do_sample */
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repetition_penalty = 1.0f;
    p.presence_penalty = 0.0f;
    p.frequency_penalty = 0.0f;
    p.penalty_last_n = 64;
    p.seed = 0;                    /* a fixed seed like any other, not "random"             */
    return p;
}

tw_status tw_sampler_new(const tw_sampler_params *p, int32_t n_vocab, tw_sampler **out) {
    if (!out) return tw_err(TW_E_ARG, "tw_sampler_new: out is NULL");
    *out = NULL;
    tw_sampler_params prm = p ? *p : tw_sampler_default_params();
    if (n_vocab <= 0) return tw_err(TW_E_ARG, "tw_sampler_new: n_vocab %d must be positive", (int)n_vocab);
    if (isnan(prm.temperature) || isnan(prm.top_p) || isnan(prm.min_p) ||
        !isfinite(prm.presence_penalty) || !isfinite(prm.frequency_penalty))
        return tw_err(TW_E_ARG, "tw_sampler_new: a sampling parameter is NaN or infinite");
    if (!(prm.repetition_penalty > 0.0f) || !isfinite(prm.repetition_penalty))
        return tw_err(TW_E_ARG, "tw_sampler_new: repetition_penalty %g must be a positive number "
                      "(1 turns it off)", (double)prm.repetition_penalty);
    if (prm.top_p <= 0.0f)
        return tw_err(TW_E_ARG, "tw_sampler_new: top_p %g must be > 0 (>= 1 turns it off)",
                      (double)prm.top_p);

    tw_sampler *s = tw_calloc(1, sizeof *s);
    if (!s) return TW_E_NOMEM;
    s->p = prm;
    s->n_vocab = n_vocab;
    s->work = tw_calloc((size_t)n_vocab, sizeof *s->work);
    s->c = tw_calloc((size_t)n_vocab, sizeof *s->c);
    s->count = tw_calloc((size_t)n_vocab, sizeof *s->count);
    if (!s->work || !s->c || !s->count) {
        tw_sampler_free(s);
        return TW_E_NOMEM;
    }
    uint64_t x = prm.seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    *out = s;
    return TW_OK;
}

void tw_sampler_free(tw_sampler *s) {
    if (!s) return;
    free(s->work);
    free(s->c);
    free(s->count);
    free(s);
}

/* ---- helpers ---------------------------------------------------------------------------------- */

/* First index of the maximum; NaN never wins; 0 when every value is NaN or -inf. */
static int32_t argmax_first(const float *x, int32_t n) {
    int32_t best = 0;
    float bv = -INFINITY;
    for (int32_t i = 0; i < n; i++) {
        if (x[i] > bv) {   /* strict: ties keep the first; false for NaN */
            bv = x[i];
            best = i;
        }
    }
    return best;
}

/* Total order "a ranks before b": larger value first, then the lower id. */
static inline bool cand_before(const cand *a, const cand *b) {
    return a->v > b->v || (a->v == b->v && a->id < b->id);
}

static int cand_cmp(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (cand_before(a, b)) return -1;
    if (cand_before(b, a)) return 1;
    return 0;
}

/* Min-heap on the ranking (root = the worst of the kept), for top-k selection. */
static void heap_sift_down(cand *h, int32_t n, int32_t i) {
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && cand_before(&h[w], &h[l])) w = l;
        if (r < n && cand_before(&h[w], &h[r])) w = r;
        if (w == i) return;
        cand t = h[i]; h[i] = h[w]; h[w] = t;
        i = w;
    }
}

/* Keeps the k best of c[0..n) in c[0..k), sorted best first. O(n log k). */
static void select_top_k(cand *c, int32_t n, int32_t k) {
    for (int32_t i = k / 2 - 1; i >= 0; i--) heap_sift_down(c, k, i);
    for (int32_t i = k; i < n; i++) {
        if (cand_before(&c[i], &c[0])) {
            c[0] = c[i];
            heap_sift_down(c, k, 0);
        }
    }
    qsort(c, (size_t)k, sizeof *c, cand_cmp);
}

/* Applies the penalties to s->work, which holds a copy of the logits. */
static void apply_penalties(tw_sampler *s, const int32_t *history, size_t n_hist) {
    const tw_sampler_params *p = &s->p;
    size_t n = n_hist;
    if (p->penalty_last_n >= 0 && (size_t)p->penalty_last_n < n) n = (size_t)p->penalty_last_n;
    const int32_t *h = history + (n_hist - n);
    for (size_t i = 0; i < n; i++)
        if (h[i] >= 0 && h[i] < s->n_vocab) s->count[h[i]]++;
    /* Second pass: each distinct id is penalised once (its count is then reset to 0, which
    ** also leaves the count array clean for the next call). */
    for (size_t i = 0; i < n; i++) {
        int32_t id = h[i];
        if (id < 0 || id >= s->n_vocab || s->count[id] == 0) continue;
        float x = s->work[id];
        if (p->repetition_penalty != 1.0f)
            x = x < 0.0f ? x * p->repetition_penalty : x / p->repetition_penalty;
        x -= p->presence_penalty + p->frequency_penalty * (float)s->count[id];
        s->work[id] = x;
        s->count[id] = 0;
    }
}

/* ---- top-p ------------------------------------------------------------------------------------ */

/* c[0..n) hold weights w = exp(z) >= 0; total = their sum. Moves the tokens top-p keeps to
** c[0..kept) and returns kept: the smallest set of best-ranked tokens whose mass reaches
** top_p * total. When c is sorted best first (after top-k) this is one scan. Otherwise a
** quickselect on the ranking, steered by mass instead of by count, finds the cut in expected
** O(n) without sorting anything: a flat distribution over 256k tokens, where top-p keeps most
** of the vocabulary, would otherwise need a full sort. The kept tokens are left unordered,
** which is all the draw needs. */
static int32_t top_p_cut(cand *c, int32_t n, double total, double top_p, bool sorted) {
    const double target = top_p * total;
    if (sorted) {
        double cum = 0.0;
        for (int32_t i = 0; i < n; i++) {
            cum += c[i].v;
            if (cum >= target) return i + 1;
        }
        return n;
    }
    int32_t lo = 0, hi = n;    /* the cut lies in [lo, hi]; c[0..lo) are kept       */
    double acc = 0.0;          /* mass of c[0..lo)                                  */
    while (lo < hi) {
        /* median of three as the pivot, moved to hi - 1 */
        int32_t mid = lo + (hi - lo) / 2, last = hi - 1;
        if (cand_before(&c[mid], &c[lo])) { cand t = c[mid]; c[mid] = c[lo]; c[lo] = t; }
        if (cand_before(&c[last], &c[lo])) { cand t = c[last]; c[last] = c[lo]; c[lo] = t; }
        if (cand_before(&c[mid], &c[last])) { cand t = c[mid]; c[mid] = c[last]; c[last] = t; }
        const cand pivot = c[last];
        /* partition: tokens ranking before the pivot go to [lo, j) */
        int32_t j = lo;
        double mass = 0.0;
        for (int32_t i = lo; i < last; i++) {
            if (cand_before(&c[i], &pivot)) {
                mass += c[i].v;
                cand t = c[i]; c[i] = c[j]; c[j] = t;
                j++;
            }
        }
        c[last] = c[j];
        c[j] = pivot;
        if (acc + mass >= target) {
            hi = j;                              /* the cut is among the better ones */
        } else if (acc + mass + pivot.v >= target) {
            return j + 1;                        /* the pivot completes the mass     */
        } else {
            acc += mass + pivot.v;
            lo = j + 1;
        }
    }
    /* lo == hi: [0, lo) already reaches the target (or rounding left every token short) */
    return lo > 0 ? lo : 1;
}

/* ---- sampling --------------------------------------------------------------------------------- */

int32_t tw_sampler_sample(tw_sampler *s, const float *logits, const int32_t *history, size_t n_hist) {
    if (!s || !logits) return 0;
    const tw_sampler_params *p = &s->p;
    const int32_t V = s->n_vocab;
    if (!history) n_hist = 0;

    bool penalise = n_hist > 0 && p->penalty_last_n != 0 &&
                    (p->repetition_penalty != 1.0f || p->presence_penalty != 0.0f ||
                     p->frequency_penalty != 0.0f);
    const float *x = logits;
    if (penalise) {
        memcpy(s->work, logits, (size_t)V * sizeof *s->work);
        apply_penalties(s, history, n_hist);
        x = s->work;
    }

    if (p->temperature <= 0.0f) return argmax_first(x, V);

    /* Candidates: every token with a finite or +inf logit, in id order. */
    float m = -INFINITY;
    for (int32_t i = 0; i < V; i++)
        if (x[i] > m) m = x[i];
    if (m == -INFINITY) return argmax_first(x, V);   /* all -inf / NaN: nothing to draw */

    int32_t n = 0;
    if (m == INFINITY) {
        /* The softmax limit: the +inf tokens share the mass equally. */
        for (int32_t i = 0; i < V; i++)
            if (x[i] == INFINITY) s->c[n++] = (cand){ 0.0f, i };
    } else {
        /* z = (x - max) / T <= 0, so exp(z) cannot overflow and the best token has weight 1. */
        const float inv_t = 1.0f / p->temperature;
        for (int32_t i = 0; i < V; i++) {
            if (!(x[i] > -INFINITY)) continue;   /* -inf and NaN */
            float z = (x[i] - m) * inv_t;
            if (isnan(z)) z = -INFINITY;         /* T = +inf-like corner cases */
            if (z > -INFINITY) s->c[n++] = (cand){ z, i };
        }
        if (n == 0) return argmax_first(x, V);
    }

    /* Top-k: the k best, sorted. */
    bool sorted = false;
    if (p->top_k > 0 && p->top_k < n) {
        select_top_k(s->c, n, p->top_k);
        n = p->top_k;
        sorted = true;
    }

    /* Weights exp(z) in (0, 1]; the best has exactly 1 (z = 0). */
    double total = 0.0;
    for (int32_t i = 0; i < n; i++) {
        s->c[i].v = expf(s->c[i].v);
        total += s->c[i].v;
    }

    if (p->top_p < 1.0f && n > 1) {
        n = top_p_cut(s->c, n, total, p->top_p, sorted);
    }

    /* Min-p: prob < min_p * max prob  <=>  w < min_p, since the best weight is 1. The best
    ** token always stays (HF keeps at least one). */
    if (p->min_p > 0.0f && n > 1) {
        float thr = p->min_p;
        int32_t k = 0;
        for (int32_t i = 0; i < n; i++)
            if (s->c[i].v >= thr || s->c[i].v == 1.0f) s->c[k++] = s->c[i];
        n = k;
    }

    total = 0.0;
    for (int32_t i = 0; i < n; i++) total += s->c[i].v;
    double u = rng_uniform(s->rng) * total;
    double cum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cum += s->c[i].v;
        if (u < cum) return s->c[i].id;
    }
    /* u landed in the rounding gap at the end: the last token that has any weight (tokens
    ** whose exp(z) underflowed to 0 must never be drawn). */
    for (int32_t i = n - 1; i > 0; i--)
        if (s->c[i].v > 0.0f) return s->c[i].id;
    return s->c[0].id;
}
