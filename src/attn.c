/*
** attn.c — attention entry point (tw_attention), the plain C reference, and the blocked driver
** that the SIMD paths plug into (one function each, tw_attn_block_*: a block of queries against a
** block of keys with an online softmax; see attn.h). This file decides the blocking and the
** parallel split; the SIMD files only do arithmetic.
**
** Work split. Queries are cut into blocks of bq rows; for GQA the group's query heads are folded
** into the block (rows t0..t0+bq-1 of every head reading kv head g), so each key and value row is
** read once for the whole group. A task is one (kv head, query block[, key split]). With a causal
** mask later query blocks see more keys, so tasks are numbered latest block first: the pool hands
** out items in order, and starting with the longest ones balances the threads (LPT order).
** Decode (few query rows over a long cache) has too few such tasks for the threads, so its keys
** are split into ranges whose partial (max, sum, output) are merged afterwards (flash-decoding).
*/
#include "attn.h"

#include <math.h>
#include <stdlib.h>

/* ---- plain C reference ---------------------------------------------------------------------- */

typedef struct {
    const tw_attn_args *a;
    float *scores;   /* [n_threads, Tk] one score row per worker */
} ref_job;

/* visible keys [lo, hi) of query row t */
static void key_range(const tw_attn_args *a, int32_t t, int32_t *lo, int32_t *hi) {
    if (!a->causal) {
        *lo = 0, *hi = a->Tk;
        return;
    }
    int32_t p = a->q_pos + t;
    *hi = TW_MIN(p + 1, a->Tk);
    *lo = a->window > 0 ? TW_MAX(0, p - a->window + 1) : 0;
}

/* One (query row, head) pair: i = t * n_head + h. The same operations in the same order as the
** models' original loops: dot, scale, softcap, max; exp and sum; normalised weights times v. */
static void ref_task(void *ctx, int64_t i, int tid) {
    const ref_job *j = ctx;
    const tw_attn_args *a = j->a;
    int32_t t = (int32_t)(i / a->n_head), h = (int32_t)(i % a->n_head), D = a->D;
    int32_t g = h / (a->n_head / a->n_kv), lo, hi;
    key_range(a, t, &lo, &hi);
    const float *q = a->q + (size_t)t * a->ldq + (size_t)h * D;   /* [D] */
    float *s = j->scores + (size_t)tid * a->Tk;                     /* [hi - lo] */

    float mx = -INFINITY;
    for (int32_t k = lo; k < hi; k++) {
        const float *kr = a->k + (size_t)k * a->ldk + (size_t)g * D;
        float d = 0;
        for (int32_t e = 0; e < D; e++) d += q[e] * kr[e];
        d *= a->scale;
        if (a->softcap > 0) d = a->softcap * tanhf(d / a->softcap);
        s[k - lo] = d;
        mx = d > mx ? d : mx;
    }
    float sum = 0;
    for (int32_t k = lo; k < hi; k++) {
        s[k - lo] = expf(s[k - lo] - mx);
        sum += s[k - lo];
    }
    float inv = 1.0f / sum;

    float *o = a->out + (size_t)t * a->ldo + (size_t)h * D;   /* [D] */
    for (int32_t e = 0; e < D; e++) o[e] = 0;
    for (int32_t k = lo; k < hi; k++) {
        const float *vr = a->v + (size_t)k * a->ldv + (size_t)g * D;
        float w = s[k - lo] * inv;
        for (int32_t e = 0; e < D; e++) o[e] += w * vr[e];
    }
}

void tw_attention_ref(tw_pool *pool, const tw_attn_args *a) {
    if (a->Tq <= 0 || a->Tk <= 0) return;
    float *scores = malloc(sizeof(float) * (size_t)tw_pool_size(pool) * (size_t)a->Tk);
    if (!scores) pool = NULL;   /* short of memory: one score row, on this thread */
    if (!scores && !(scores = malloc(sizeof(float) * (size_t)a->Tk))) return;
    ref_job j = { a, scores };
    tw_pool_run(pool, (int64_t)a->Tq * a->n_head, ref_task, &j);
    free(scores);
}

/* ---- blocked driver for the SIMD paths ---------------------------------------------------- */

typedef void (*tw_attn_block_fn)(const tw_attn_block *b);

enum { VEC = 16 };   /* score rows are padded to a multiple of the widest vector */

static int32_t round_up(int32_t x, int32_t m) { return (x + m - 1) / m * m; }

typedef struct {
    const tw_attn_args *a;
    tw_attn_block_fn fn;
    int32_t grp;              /* query heads per kv head                         */
    int32_t bq, bk;           /* query rows (positions) per block, keys per block */
    int32_t n_qb, n_split;    /* query blocks, key ranges per (kv head, block)    */
    int32_t m_max, lds, Dp;   /* rows per block, score row stride, O row stride    */
    size_t  per_thread;       /* floats of scratch per thread                     */
    float  *scratch;          /* [n_threads][per_thread]                          */
    float  *part;             /* n_split > 1: [task][m_max][Dp + 2] partial results */
} blk_job;

/* Task i: kv head g, query block qb (latest first), key range sp. */
static void blk_task(void *ctx, int64_t i, int tid) {
    const blk_job *j = ctx;
    const tw_attn_args *a = j->a;
    int32_t sp = (int32_t)(i % j->n_split);
    int64_t r = i / j->n_split;
    int32_t qb = j->n_qb - 1 - (int32_t)(r / a->n_kv), g = (int32_t)(r % a->n_kv);
    int32_t D = a->D, grp = j->grp, Dp = j->Dp;
    int32_t t0 = qb * j->bq, nt = TW_MIN(j->bq, a->Tq - t0), m = nt * grp;

    float *qp = j->scratch + (size_t)tid * j->per_thread;   /* [m_max, D]   packed queries  */
    float *o = qp + (size_t)j->m_max * D;                     /* [m_max, Dp]  accumulator     */
    float *s = o + (size_t)j->m_max * Dp;                     /* [m_max, lds] scores          */
    float *kt = s + (size_t)j->m_max * j->lds;                /* [D, lds]     packed keys     */
    float *mx = kt + (size_t)D * j->lds;                      /* [m_max]                      */
    float *l = mx + j->m_max;                                 /* [m_max]                      */
    int32_t *lo = (int32_t *)(l + j->m_max), *hi = lo + j->m_max;   /* [m_max] each          */

    /* row r = tt * grp + hh is query t0 + tt of head g * grp + hh */
    for (int32_t tt = 0; tt < nt; tt++)
        for (int32_t hh = 0; hh < grp; hh++) {
            int32_t row = tt * grp + hh;
            memcpy(qp + (size_t)row * D, a->q + (size_t)(t0 + tt) * a->ldq + (size_t)(g * grp + hh) * D,
                   sizeof(float) * (size_t)D);
            mx[row] = -INFINITY;
            l[row] = 0;
            memset(o + (size_t)row * Dp, 0, sizeof(float) * (size_t)Dp);
        }

    /* keys any row of the block sees: [first row's lo, last row's hi); then this split's part */
    int32_t klo, khi, dummy;
    key_range(a, t0, &klo, &dummy);
    key_range(a, t0 + nt - 1, &dummy, &khi);
    int32_t bk = j->bk > 0 ? j->bk : TW_MAX(1, khi - klo), k_first = klo;
    if (j->bk > 0) k_first = klo / bk * bk;   /* key blocks on a fixed grid of absolute positions */
    if (j->n_split > 1) {                     /* this split's share of the grid's blocks */
        int32_t nb = (khi - k_first + bk - 1) / bk, per = (nb + j->n_split - 1) / j->n_split;
        int32_t s0 = k_first + TW_MIN(nb, sp * per) * bk, s1 = k_first + TW_MIN(nb, (sp + 1) * per) * bk;
        k_first = s0, khi = TW_MIN(khi, s1);
    }

    for (int32_t k0 = k_first; k0 < khi; k0 += bk) {
        int32_t nk = TW_MIN(bk, khi - k0);
        bool full = true, any = false;
        for (int32_t tt = 0; tt < nt; tt++) {
            int32_t rl, rh;
            key_range(a, t0 + tt, &rl, &rh);
            rl = TW_MAX(rl - k0, 0), rh = TW_MIN(rh - k0, nk);
            if (rh < rl) rh = rl;
            if (rl > 0 || rh < nk) full = false;
            if (rh > rl) any = true;
            for (int32_t hh = 0; hh < grp; hh++) lo[tt * grp + hh] = rl, hi[tt * grp + hh] = rh;
        }
        if (!any) continue;
        tw_attn_block b = {
            .qp = qp, .m = m, .D = D,
            .k = a->k + (size_t)k0 * a->ldk + (size_t)g * D, .ldk = a->ldk,
            .v = a->v + (size_t)k0 * a->ldv + (size_t)g * D, .ldv = a->ldv,
            .nk = nk, .lo = full ? NULL : lo, .hi = full ? NULL : hi,
            .scale = a->scale, .softcap = a->softcap,
            .s = s, .lds = j->lds, .kt = kt, .o = o, .ldo = Dp, .mx = mx, .l = l,
        };
        j->fn(&b);
    }

    if (j->n_split == 1) {   /* normalise into the output */
        for (int32_t row = 0; row < m; row++) {
            int32_t tt = row / grp, hh = row % grp;
            float *dst = a->out + (size_t)(t0 + tt) * a->ldo + (size_t)(g * grp + hh) * D;
            float inv = 1.0f / l[row];
            for (int32_t e = 0; e < D; e++) dst[e] = o[(size_t)row * Dp + e] * inv;
        }
        return;
    }
    float *pt = j->part + (size_t)i * j->m_max * (Dp + 2);   /* [m_max][max, sum, O[Dp]] */
    for (int32_t row = 0; row < m; row++) {
        float *p = pt + (size_t)row * (Dp + 2);
        p[0] = mx[row], p[1] = l[row];
        memcpy(p + 2, o + (size_t)row * Dp, sizeof(float) * (size_t)D);
    }
}

/* n_split > 1: merge the key ranges of each (kv head, query block) row. */
static void merge_splits(const blk_job *j) {
    const tw_attn_args *a = j->a;
    int32_t D = a->D, Dp = j->Dp, grp = j->grp;
    for (int64_t r = 0; r < (int64_t)j->n_qb * a->n_kv; r++) {
        int32_t qb = j->n_qb - 1 - (int32_t)(r / a->n_kv), g = (int32_t)(r % a->n_kv);
        int32_t t0 = qb * j->bq, nt = TW_MIN(j->bq, a->Tq - t0);
        for (int32_t row = 0; row < nt * grp; row++) {
            float M = -INFINITY, L = 0;
            for (int32_t sp = 0; sp < j->n_split; sp++) {
                const float *p = j->part + ((size_t)(r * j->n_split + sp) * j->m_max + row) * (Dp + 2);
                M = p[0] > M ? p[0] : M;
            }
            float *dst = a->out + (size_t)(t0 + row / grp) * a->ldo + (size_t)(g * grp + row % grp) * D;
            for (int32_t e = 0; e < D; e++) dst[e] = 0;
            for (int32_t sp = 0; sp < j->n_split; sp++) {
                const float *p = j->part + ((size_t)(r * j->n_split + sp) * j->m_max + row) * (Dp + 2);
                if (p[0] == -INFINITY) continue;   /* this range saw no key of the row */
                float w = expf(p[0] - M);
                L += p[1] * w;
                for (int32_t e = 0; e < D; e++) dst[e] += p[2 + e] * w;
            }
            float inv = 1.0f / L;
            for (int32_t e = 0; e < D; e++) dst[e] *= inv;
        }
    }
}

static tw_attn_block_fn block_fn(tw_kpath path) {
    switch (path) {
    case TW_KPATH_AVX512: return tw_attn_block_avx512;
    case TW_KPATH_AVX2: return tw_attn_block_avx2;
    default: return NULL;
    }
}

/* Blocking per shape, from the measurements in docs/attention.md. Causal attention (Gemma2) always
** uses the same key grid, so a query's result is the same bit for bit whether it is evaluated in a
** long prefill, a short chunk after a rewind or alone (decode without split ranges). */
tw_attn_plan tw_attention_plan(const tw_attn_args *a, int n_threads) {
    tw_attn_plan p;
    int32_t grp = a->n_head / a->n_kv;
    (void)n_threads;   /* the pool balances: every shape below gives >= 8 tasks per 2 threads */
    if (!a->causal) {              /* vision: equal query blocks of <= 192 rows (729 -> 4 x 183) */
        int32_t nb = (a->Tq + 191) / 192;
        p.bq = (a->Tq + nb - 1) / nb;
        p.bk = 256;
    } else if (a->Tq * grp <= 8) { /* decode: K/V bandwidth; keys split between threads */
        p.bq = a->Tq;
        p.bk = 128;
    } else {                       /* prefill: 256 rows (queries x GQA group) per block */
        p.bq = TW_MAX(1, 256 / grp);
        p.bk = 128;
    }
    return p;
}

bool tw_attention_with(tw_pool *pool, const tw_attn_args *a, tw_kpath path, tw_attn_plan plan) {
    if (path == TW_KPATH_REF) {
        tw_attention_ref(pool, a);
        return true;
    }
    tw_attn_block_fn fn = block_fn(path);
    if (!fn || !tw_kpath_supported(path)) return false;
    if (a->Tq <= 0 || a->Tk <= 0) return true;

    blk_job j = { .a = a, .fn = fn, .grp = a->n_head / a->n_kv };
    j.bq = TW_MAX(1, TW_MIN(plan.bq, a->Tq));
    j.n_qb = (a->Tq + j.bq - 1) / j.bq;
    j.m_max = j.bq * j.grp;
    j.Dp = round_up(a->D, VEC);
    /* the widest key range a block can see bounds the score rows */
    int32_t kmax = a->Tk;
    if (a->causal) kmax = TW_MIN(a->Tk, a->q_pos + a->Tq);
    if (a->causal && a->window > 0) kmax = TW_MIN(kmax, a->window + j.bq - 1);
    j.bk = TW_MAX(0, plan.bk);
    /* decode: too few tasks for the threads; split the keys, 256 at least per range */
    int n_thr = tw_pool_size(pool);
    int64_t tasks = (int64_t)j.n_qb * a->n_kv;
    j.n_split = 1;
    if (tasks < 2 * n_thr && a->Tq * j.grp <= 8 && j.bk > 0) {
        int64_t want = (2 * n_thr + tasks - 1) / tasks;
        j.n_split = (int32_t)TW_MAX(1, TW_MIN(want, kmax / 256));
    }
    int32_t span = j.bk > 0 ? j.bk : kmax;
    j.lds = round_up(span, VEC);
    j.per_thread = (size_t)j.m_max * a->D + (size_t)j.m_max * j.Dp + (size_t)j.m_max * j.lds +
                   (size_t)a->D * j.lds + 4 * (size_t)j.m_max + 16;
    j.scratch = malloc(sizeof(float) * j.per_thread * (size_t)n_thr);
    if (j.n_split > 1) j.part = malloc(sizeof(float) * (size_t)(tasks * j.n_split) * j.m_max * (j.Dp + 2));
    if (!j.scratch || (j.n_split > 1 && !j.part)) {   /* no memory for blocks: the plain loops */
        free(j.scratch), free(j.part);
        tw_attention_ref(pool, a);
        return true;
    }
    tw_pool_run(pool, tasks * j.n_split, blk_task, &j);
    if (j.n_split > 1) merge_splits(&j);
    free(j.scratch), free(j.part);
    return true;
}

void tw_attention(tw_pool *pool, const tw_attn_args *a) {
    tw_kpath path = tw_kernels_path();
    if (!tw_attention_with(pool, a, path, tw_attention_plan(a, tw_pool_size(pool)))) tw_attention_ref(pool, a);
}
