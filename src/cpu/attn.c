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
** The decode kernel (tw_attn_decode_*) goes further: each task is one key range for all kv heads,
** so the threads stream disjoint, contiguous parts of the cache.
**
** 16-bit K/V (kv_type f16 / bf16): the reference widens each row it reads; the block kernel reads
** a widened copy of its key and value block (the widening is ~1 % of the block's arithmetic); the
** decode kernel widens in registers.
*/
#include "attn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- 16-bit elements, plain C ------------------------------------------------------------------ */

size_t tw_kv_size(tw_kv_type t) { return t == TW_KV_F32 ? 4 : 2; }

void tw_kv_widen_ref(float *dst, const void *src, tw_kv_type t, int64_t n) { tw_kv_widen_inl(dst, src, t, n); }

/* ---- the kernels of each path -------------------------------------------------------------------
** One row per kernel path; the drivers below call through it and never name a SIMD file. The ref
** path has none (NULL: the plain C loops); amx adds only a matrix product, its attention is
** avx512's. */

typedef void (*tw_attn_block_fn)(const tw_attn_block *b);
typedef void (*tw_attn_widen_fn)(float *dst, int32_t ldd, const void *src, int64_t ld, tw_kv_type t, int32_t rows, int32_t D);
typedef void (*tw_attn_dec_fn)(const tw_attn_dec *d);

typedef struct {
    tw_attn_block_fn block;    /* a query block against a key block (online softmax)  */
    tw_attn_widen_fn widen;    /* a block of 16-bit K or V rows to f32                 */
    tw_attn_dec_fn   decode;   /* few query rows against one key range                 */
    void (*store)(void *dst, tw_kv_type t, const float *src, int64_t n);   /* f32 -> 16-bit */
} attn_kernels;

static const attn_kernels attn_paths[TW_KPATH_COUNT] = {
    [TW_KPATH_REF] = { NULL, NULL, NULL, NULL },
    [TW_KPATH_AVX2] = { tw_attn_block_avx2, tw_attn_widen_avx2, tw_attn_decode_avx2, tw_kv_store_avx2 },
    [TW_KPATH_AVX512] = { tw_attn_block_avx512, tw_attn_widen_avx512, tw_attn_decode_avx512, tw_kv_store_avx512 },
    [TW_KPATH_AMX] = { tw_attn_block_avx512, tw_attn_widen_avx512, tw_attn_decode_avx512, tw_kv_store_avx512 },
};

void tw_kv_store(void *dst, tw_kv_type t, const float *src, int64_t n) {
    if (t == TW_KV_F32) {
        memmove(dst, src, sizeof(float) * (size_t)n);
        return;
    }
    const attn_kernels *k = &attn_paths[tw_kernels_path()];   /* the active path: one the CPU runs */
    if (k->store) {
        k->store(dst, t, src, n);
        return;
    }
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = t == TW_KV_F16 ? tw_kv_f32_to_f16(src[i]) : tw_kv_f32_to_bf16(src[i]);
}

/* element (row j, column e) of a K or V buffer */
static const void *kv_at(const void *base, tw_kv_type t, int64_t ld, int64_t j, int64_t e) {
    return (const char *)base + (size_t)(j * ld + e) * tw_kv_size(t);
}

/* ---- plain C reference ---------------------------------------------------------------------- */

typedef struct {
    const tw_attn_args *a;
    float *scores;   /* [n_threads, Tk + 2 D] one score row and two widened K/V rows per worker */
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
    float *s = j->scores + (size_t)tid * (a->Tk + 2 * (size_t)D);   /* [hi - lo] */
    float *kw = s + a->Tk, *vw = kw + D;                             /* [D] widened rows */
    bool wide = a->kv_type == TW_KV_F32;

    float mx = -INFINITY;
    for (int32_t k = lo; k < hi; k++) {
        const float *kr = kv_at(a->k, a->kv_type, a->ldk, k, (int64_t)g * D);
        if (!wide) tw_kv_widen_inl(kw, kr, a->kv_type, D), kr = kw;
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
        const float *vr = kv_at(a->v, a->kv_type, a->ldv, k, (int64_t)g * D);
        if (!wide) tw_kv_widen_inl(vw, vr, a->kv_type, D), vr = vw;
        float w = s[k - lo] * inv;
        for (int32_t e = 0; e < D; e++) o[e] += w * vr[e];
    }
}

void tw_attention_ref(tw_pool *pool, const tw_attn_args *a) {
    if (a->Tq <= 0 || a->Tk <= 0) return;
    size_t row = (size_t)a->Tk + 2 * (size_t)a->D;
    int slot;
    float *scores = tw_ws_take(sizeof(float) * (size_t)tw_pool_size(pool) * row, &slot);
    if (!scores) pool = NULL;   /* short of memory: one score row, on this thread */
    if (!scores && !(scores = tw_ws_take(sizeof(float) * row, &slot))) {
        fprintf(stderr, "tw_attention: out of memory for %zu scores\n", row);
        abort();   /* no status to return, and skipping would leave the output unwritten */
    }
    ref_job j = { a, scores };
    tw_pool_run(pool, (int64_t)a->Tq * a->n_head, ref_task, &j);
    tw_ws_give(scores, slot);
}

/* ---- blocked driver for the SIMD paths ---------------------------------------------------- */

enum { VEC = 16 };   /* score rows are padded to a multiple of the widest vector */

static int32_t round_up(int32_t x, int32_t m) { return (x + m - 1) / m * m; }
static size_t round_up_z(size_t n) { return (n + 15) / 16 * 16; }   /* floats: keeps 64-byte alignment */

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
    bool    wide;             /* K/V are f32: read in place                        */
    tw_attn_widen_fn widen;   /* else widened per block                            */
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
    float *kw = kt + (size_t)D * j->lds;                      /* [lds, D] widened keys (16-bit) */
    float *vw = kw + (j->wide ? 0 : (size_t)j->lds * D);      /* [lds, D] widened values       */
    float *mx = vw + (j->wide ? 0 : (size_t)j->lds * D);      /* [m_max]                      */
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
        const float *kb = kv_at(a->k, a->kv_type, a->ldk, k0, (int64_t)g * D);
        const float *vb = kv_at(a->v, a->kv_type, a->ldv, k0, (int64_t)g * D);
        int64_t ldk = a->ldk, ldv = a->ldv;
        if (!j->wide) {
            j->widen(kw, D, kb, ldk, a->kv_type, nk, D);
            j->widen(vw, D, vb, ldv, a->kv_type, nk, D);
            kb = kw, vb = vw, ldk = ldv = D;
        }
        tw_attn_block b = {
            .qp = qp, .m = m, .D = D,
            .k = kb, .ldk = ldk,
            .v = vb, .ldv = ldv,
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

/* ---- decode driver ---------------------------------------------------------------------------- */

typedef struct {
    const tw_attn_args *a;
    tw_attn_dec_fn fn;
    int32_t grp, m;           /* query heads per kv head; rows per kv head (Tq * grp)      */
    int32_t klo, khi, per;    /* keys any row sees, cut into ranges of `per` keys          */
    int32_t n_split, lds, Dp;
    const float *qp;          /* [n_kv][m][D] packed queries                               */
    float  *scratch;          /* [n_threads][n_kv * m * lds] scores                         */
    float  *part;             /* [n_split][n_kv * m][Dp + 2]: O, then max and sum            */
} dec_job;

static float *dec_part(const dec_job *j, int32_t sp, int32_t row) {
    return j->part + ((size_t)sp * j->a->n_kv * j->m + (size_t)row) * (j->Dp + 2);
}

static void dec_task(void *ctx, int64_t i, int tid) {
    const dec_job *j = ctx;
    const tw_attn_args *a = j->a;
    int32_t k0 = j->klo + (int32_t)i * j->per, nk = TW_MIN(j->per, j->khi - k0), m = j->m;
    int32_t lo[8], hi[8], n_rows = a->n_kv * m;
    float mx[64], l[64];
    float *o = j->scratch + (size_t)tid * ((size_t)n_rows * j->lds + (size_t)n_rows * j->Dp);   /* [n_kv][m][Dp] */
    for (int32_t r = 0; r < m; r++) {
        int32_t rl, rh;
        key_range(a, r / j->grp, &rl, &rh);
        lo[r] = TW_MIN(TW_MAX(rl - k0, 0), nk), hi[r] = TW_MAX(TW_MIN(rh - k0, nk), lo[r]);
    }
    tw_attn_dec d = {
        .qp = j->qp, .m = m, .D = a->D, .n_kv = a->n_kv,
        .k = kv_at(a->k, a->kv_type, a->ldk, k0, 0), .ldk = a->ldk,
        .v = kv_at(a->v, a->kv_type, a->ldv, k0, 0), .ldv = a->ldv,
        .type = a->kv_type, .nk = nk, .lo = lo, .hi = hi, .scale = a->scale, .softcap = a->softcap,
        .s = o + (size_t)n_rows * j->Dp, .lds = j->lds, .o = o, .ldo = j->Dp, .mx = mx, .l = l,
    };
    j->fn(&d);
    for (int32_t r = 0; r < n_rows; r++) {
        float *p = dec_part(j, (int32_t)i, r);
        memcpy(p, o + (size_t)r * j->Dp, sizeof(float) * (size_t)a->D);
        p[j->Dp] = mx[r], p[j->Dp + 1] = l[r];
    }
}

/* Queries x group <= 8 rows per kv head: the key range [first row's lo, last row's hi) is cut
** into equal ranges (several per thread so that a late thread does not stall the step), each
** task streams its range of K (all kv heads, contiguous rows) then of V. */
enum { DEC_ONE_THREAD = 256 };

static bool decode_run(tw_pool *pool, const tw_attn_args *a, tw_attn_dec_fn fn, int32_t n_split) {
    dec_job j = { .a = a, .fn = fn, .grp = a->n_head / a->n_kv };
    j.m = a->Tq * j.grp;
    int32_t dummy, D = a->D, n_rows;
    key_range(a, 0, &j.klo, &dummy);
    key_range(a, a->Tq - 1, &dummy, &j.khi);
    if (j.khi <= j.klo) j.khi = j.klo + 1;   /* causal rows always see their own key */
    int32_t n_keys = j.khi - j.klo, n_thr = tw_pool_size(pool);
    /* Below DEC_ONE_THREAD keys one thread reads the range in less time than handing half of it
    ** to another thread costs (d128: 0.02 ms on one thread, 0.13 ms on two under load). */
    if (n_split <= 0)
        n_split = n_thr <= 1 || n_keys < DEC_ONE_THREAD ? 1 : TW_MIN(4 * n_thr, (n_keys + 63) / 64);
    n_split = TW_MAX(1, TW_MIN(n_split, n_keys));
    j.per = (n_keys + n_split - 1) / n_split;
    j.n_split = (n_keys + j.per - 1) / j.per;
    j.lds = round_up(j.per, VEC);
    j.Dp = round_up(D, VEC);
    n_rows = a->n_kv * j.m;
    if (n_rows > 64) return false;
    /* one workspace buffer: packed queries, per-thread scores and outputs, the ranges' results */
    size_t n_qp = round_up_z((size_t)n_rows * D), n_scr = round_up_z((size_t)n_thr * n_rows * ((size_t)j.lds + j.Dp));
    int slot;
    float *mem = tw_ws_take(sizeof(float) * (n_qp + n_scr + (size_t)j.n_split * n_rows * (j.Dp + 2)), &slot);
    if (!mem) return false;
    float *qp = mem;
    j.scratch = mem + n_qp;
    j.part = j.scratch + n_scr;
    for (int32_t g = 0; g < a->n_kv; g++)   /* row r of head g: query r / grp, head g * grp + r % grp */
        for (int32_t r = 0; r < j.m; r++)
            memcpy(qp + ((size_t)g * j.m + r) * D, a->q + (size_t)(r / j.grp) * a->ldq + (size_t)(g * j.grp + r % j.grp) * D,
                   sizeof(float) * (size_t)D);
    j.qp = qp;
    tw_pool_run(pool, j.n_split, dec_task, &j);

    for (int32_t g = 0; g < a->n_kv; g++)   /* merge the ranges */
        for (int32_t r = 0; r < j.m; r++) {
            int32_t row = g * j.m + r;
            float M = -INFINITY, L = 0;
            for (int32_t sp = 0; sp < j.n_split; sp++) M = fmaxf(M, dec_part(&j, sp, row)[j.Dp]);
            float *dst = a->out + (size_t)(r / j.grp) * a->ldo + (size_t)(g * j.grp + r % j.grp) * D;
            for (int32_t e = 0; e < D; e++) dst[e] = 0;
            for (int32_t sp = 0; sp < j.n_split; sp++) {
                const float *p = dec_part(&j, sp, row);
                if (p[j.Dp] == -INFINITY) continue;   /* this range saw no key of the row */
                float w = j.n_split == 1 ? 1.0f : expf(p[j.Dp] - M);
                L += p[j.Dp + 1] * w;
                for (int32_t e = 0; e < D; e++) dst[e] += p[e] * w;
            }
            float inv = 1.0f / L;
            for (int32_t e = 0; e < D; e++) dst[e] *= inv;
        }
    tw_ws_give(mem, slot);
    return true;
}

/* Blocking per shape, from the measurements in docs/attention.md. Causal attention (Gemma2) always
** uses the same key grid, so a query's result is the same bit for bit whether it is evaluated in a
** long prefill, a short chunk after a rewind or alone (decode without split ranges). */
tw_attn_plan tw_attention_plan(const tw_attn_args *a, int n_threads) {
    tw_attn_plan p = { 0 };
    int32_t grp = a->n_head / a->n_kv;
    (void)n_threads;   /* the pool balances: every shape below gives >= 8 tasks per 2 threads */
    if (!a->causal) {              /* vision: equal query blocks of <= 192 rows (729 -> 4 x 183) */
        int32_t nb = (a->Tq + 191) / 192;
        p.bq = (a->Tq + nb - 1) / nb;
        p.bk = 256;
    } else if (a->Tq * grp <= 8) { /* decode: K/V bandwidth; keys split between threads */
        p.bq = a->Tq;
        p.bk = 128;                /* for a path without a decode kernel */
        p.decode = true;
        p.n_split = 0;
    } else {                       /* prefill: 256 rows (queries x GQA group) per block */
        p.bq = TW_MAX(1, 256 / grp);
        p.bk = 128;
    }
    return p;
}

/* The shapes every kernel relies on (attn.h). */
static void check_args(const tw_attn_args *a) {
    TW_ASSERT(a->D > 0 && a->n_kv > 0 && a->n_head > 0 && a->n_head % a->n_kv == 0);
    TW_ASSERT(a->ldq >= (int64_t)a->n_head * a->D && a->ldo >= (int64_t)a->n_head * a->D);
    TW_ASSERT(a->ldk >= (int64_t)a->n_kv * a->D && a->ldv >= (int64_t)a->n_kv * a->D);
    TW_ASSERT(!a->causal || a->Tq <= 0 || a->Tk > a->q_pos + a->Tq - 1);
    TW_ASSERT(a->kv_type == TW_KV_F32 || a->kv_type == TW_KV_F16 || a->kv_type == TW_KV_BF16);
    (void)a;
}

bool tw_attention_with(tw_pool *pool, const tw_attn_args *a, tw_kpath path, tw_attn_plan plan) {
    check_args(a);
    if (path == TW_KPATH_REF) {
        tw_attention_ref(pool, a);
        return true;
    }
    if ((unsigned)path >= TW_KPATH_COUNT || !tw_kpath_supported(path)) return false;
    const attn_kernels *k = &attn_paths[path];
    TW_ASSERT(k->block && k->widen && k->decode && k->store);   /* a vector path fills its row */
    if (a->Tq <= 0 || a->Tk <= 0) return true;
    if (plan.decode && a->Tq * (a->n_head / a->n_kv) <= 8 && decode_run(pool, a, k->decode, plan.n_split)) return true;

    blk_job j = { .a = a, .fn = k->block, .grp = a->n_head / a->n_kv, .wide = a->kv_type == TW_KV_F32, .widen = k->widen };
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
    if (!j.wide) j.per_thread += 2 * (size_t)j.lds * a->D;
    /* one workspace buffer: per-thread scratch, then the splits' partial results */
    size_t n_scr = round_up_z(j.per_thread * (size_t)n_thr);
    size_t n_part = j.n_split > 1 ? (size_t)(tasks * j.n_split) * j.m_max * (j.Dp + 2) : 0;
    int slot;
    float *mem = tw_ws_take(sizeof(float) * (n_scr + n_part), &slot);
    if (!mem) {   /* no memory for blocks: the plain loops */
        tw_attention_ref(pool, a);
        return true;
    }
    j.scratch = mem;
    j.part = n_part ? mem + n_scr : NULL;
    tw_pool_run(pool, tasks * j.n_split, blk_task, &j);
    if (j.n_split > 1) merge_splits(&j);
    tw_ws_give(mem, slot);
    return true;
}

void tw_attention(tw_pool *pool, const tw_attn_args *a) {
    tw_kpath path = tw_kernels_path();
    if (!tw_attention_with(pool, a, path, tw_attention_plan(a, tw_pool_size(pool)))) tw_attention_ref(pool, a);
}
