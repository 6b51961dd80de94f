/*
** bench.c — the machine's limits, measured, and the work of a forward pass, counted.
**
** `tower bench` prints each figure beside the fraction of this machine's limit it reaches, with
** the limit measured in the same run (a figure from a data sheet says nothing about a shared,
** throttled or virtualised core):
**   read bandwidth  every pool thread sums a buffer far larger than the L3 with 64-byte vector
**                   loads (GCC vector extensions: plain SSE2 already issues more loads than
**                   DRAM can serve, so the loop is memory bound on any x86-64);
**   matrix rate     register-only multiply-add chains (no loads), one per pool thread: f32 FMA
**                   on the widest vectors the CPU has, vdpbf16ps and vpdpbusd where present.
** The instruction-set specific loops are compiled with function target attributes and only
** called after __builtin_cpu_supports says the CPU (and the OS) can run them.
**
** The counts (FLOPs, bytes per token) come from the tensors the model actually holds, so they
** follow the weight type and the shapes of whatever model is measured.
*/
#include "bench.h"

#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

/* ---- read bandwidth ----------------------------------------------------------------------------- */

typedef uint64_t v8u64 __attribute__((vector_size(64)));

typedef struct bw_job {
    const v8u64 *buf;
    int64_t      n, chunk;        /* vectors, vectors per task */
    v8u64        sums[64];        /* per thread, so the loads cannot be optimised away */
} bw_job;

static void bw_task(void *ctx, int64_t i, int tid) {
    bw_job *j = ctx;
    const v8u64 *p = j->buf + i * j->chunk;
    int64_t n = TW_MIN(j->chunk, j->n - i * j->chunk);
    v8u64 a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };   /* independent chains: loads set the pace */
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) a += p[k], b += p[k + 1], c += p[k + 2], d += p[k + 3];
    for (; k < n; k++) a += p[k];
    j->sums[tid & 63] += a + b + c + d;
}

static void touch_task(void *ctx, int64_t i, int tid) {
    TW_UNUSED(tid);
    bw_job *j = ctx;
    v8u64 *p = (v8u64 *)j->buf + i * j->chunk;
    int64_t n = TW_MIN(j->chunk, j->n - i * j->chunk);
    for (int64_t k = 0; k < n; k++) p[k] = (v8u64){ (uint64_t)k, 1, 2, 3, 4, 5, 6, 7 };
}

volatile uint64_t tw_bench_sink;   /* results of the loops go here so they are computed */

double tw_bench_read_bw(tw_pool *pool, size_t bytes, int reps) {
    bytes &= ~(size_t)63;
    void *buf = aligned_alloc(64, bytes);
    if (!buf || bytes == 0) {
        free(buf);
        return 0;
    }
    bw_job *j = tw_calloc(1, sizeof *j);   /* 4 KB of sums: not on the stack */
    if (!j) {
        free(buf);
        return 0;
    }
    j->buf = buf;
    j->n = (int64_t)(bytes / 64);
    j->chunk = (4 << 20) / 64;   /* 4 MB per task: long sequential streams, enough tasks to balance */
    int64_t tasks = (j->n + j->chunk - 1) / j->chunk;
    tw_pool_run(pool, tasks, touch_task, j);   /* first touch in parallel: pages spread as they will be read */
    double best = 0;
    for (int r = 0; r < TW_MAX(reps, 1); r++) {
        double t0 = tw_time_ms();
        tw_pool_run(pool, tasks, bw_task, j);
        double s = (tw_time_ms() - t0) / 1e3;
        if (s > 0 && (double)bytes / s / 1e9 > best) best = (double)bytes / s / 1e9;
    }
    uint64_t x = 0;
    for (int i = 0; i < 64; i++)
        for (int e = 0; e < 8; e++) x += j->sums[i][e];
    tw_bench_sink = x;
    free(j);
    free(buf);
    return best;
}

/* ---- multiply-add peaks ------------------------------------------------------------------------- */

/* Each loop runs `iters` iterations of NCH independent chains (more than latency x throughput on
** current cores: 4-5 cycles x 2 pipes) and returns the operations it did. The chain loop must be
** unrolled so the accumulators live in registers (a loop over an array in memory is bound by
** store-to-load forwarding, not by the multiply-add units). */
enum { NCH = 12 };

/* The sanitized build (-O1, ASan + UBSan) kept the accumulator array in memory with checks on
** every access, which made these loops many times slower (test_bench under the sanitizers spent
** 93 % of its time in fma_avx2). They index a fixed local array with constants only: there is
** nothing to check, so they are built as in the normal build. */
#if defined(__SANITIZE_ADDRESS__)
#define PEAK_LOOP __attribute__((no_sanitize("address", "undefined"), optimize("O2")))
#else
#define PEAK_LOOP
#endif

PEAK_LOOP __attribute__((target("avx512f,fma"))) static double fma_avx512(int64_t iters) {
    __m512 a[NCH], m = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-6f);
    for (int c = 0; c < NCH; c++) a[c] = _mm512_set1_ps((float)c);
    for (int64_t i = 0; i < iters; i++)
#pragma GCC unroll 16
        for (int c = 0; c < NCH; c++) a[c] = _mm512_fmadd_ps(a[c], m, b);
    float s = 0;
    for (int c = 0; c < NCH; c++) s += _mm512_reduce_add_ps(a[c]);
    tw_bench_sink = (uint64_t)s;
    return (double)iters * NCH * 16 * 2;
}

PEAK_LOOP __attribute__((target("avx2,fma"))) static double fma_avx2(int64_t iters) {
    __m256 a[NCH], m = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-6f);
    for (int c = 0; c < NCH; c++) a[c] = _mm256_set1_ps((float)c);
    for (int64_t i = 0; i < iters; i++)
#pragma GCC unroll 16
        for (int c = 0; c < NCH; c++) a[c] = _mm256_fmadd_ps(a[c], m, b);
    float s[8], t = 0;
    for (int c = 0; c < NCH; c++) {
        _mm256_storeu_ps(s, a[c]);
        for (int e = 0; e < 8; e++) t += s[e];
    }
    tw_bench_sink = (uint64_t)t;
    return (double)iters * NCH * 8 * 2;
}

PEAK_LOOP static double fma_scalar(int64_t iters) {
    float a[NCH];
    for (int c = 0; c < NCH; c++) a[c] = (float)c;
    for (int64_t i = 0; i < iters; i++)
#pragma GCC unroll 16
        for (int c = 0; c < NCH; c++) a[c] = a[c] * 0.999999f + 1e-6f;
    float t = 0;
    for (int c = 0; c < NCH; c++) t += a[c];
    tw_bench_sink = (uint64_t)t;
    return (double)iters * NCH * 2;
}

PEAK_LOOP __attribute__((target("avx512bf16,avx512f"))) static double dot_bf16(int64_t iters) {
    __m512 a[NCH];
    __m512bh x = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.5f), _mm512_set1_ps(0.25f));
    __m512bh y = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(-1e-3f));
    for (int c = 0; c < NCH; c++) a[c] = _mm512_set1_ps((float)c);
    for (int64_t i = 0; i < iters; i++)
#pragma GCC unroll 16
        for (int c = 0; c < NCH; c++) a[c] = _mm512_dpbf16_ps(a[c], x, y);
    float s = 0;
    for (int c = 0; c < NCH; c++) s += _mm512_reduce_add_ps(a[c]);
    tw_bench_sink = (uint64_t)s;
    return (double)iters * NCH * 32 * 2;
}

PEAK_LOOP __attribute__((target("avx512vnni,avx512f"))) static double dot_int8(int64_t iters) {
    __m512i a[NCH], x = _mm512_set1_epi8(3), y = _mm512_set1_epi8(-1);
    for (int c = 0; c < NCH; c++) a[c] = _mm512_set1_epi32(c);
    for (int64_t i = 0; i < iters; i++)
#pragma GCC unroll 16
        for (int c = 0; c < NCH; c++) a[c] = _mm512_dpbusd_epi32(a[c], x, y);
    int64_t s = 0;
    for (int c = 0; c < NCH; c++) s += _mm512_reduce_add_epi32(a[c]);
    tw_bench_sink = (uint64_t)s;
    return (double)iters * NCH * 64 * 2;
}

typedef double (*peak_fn)(int64_t iters);

typedef struct peak_job {
    peak_fn fn;
    int64_t iters;
    double  ops[64];   /* per thread */
} peak_job;

static void peak_task(void *ctx, int64_t i, int tid) {
    TW_UNUSED(i);
    peak_job *j = ctx;
    j->ops[tid & 63] += j->fn(j->iters);
}

/* Many short tasks per thread (the pool hands them out dynamically, so a thread that starts late
** does fewer), timed as a whole: operations of all threads / wall time. */
static double peak(tw_pool *pool, peak_fn fn, int64_t iters, int reps) {
    int n = tw_pool_size(pool);
    double best = 0;
    fn(iters / 8);   /* wake the core up (frequency, the upper halves of the vector units) */
    for (int r = 0; r < TW_MAX(reps, 1); r++) {
        peak_job j = { fn, iters, { 0 } };
        double t0 = tw_time_ms();
        tw_pool_run(pool, (int64_t)n * 16, peak_task, &j);
        double s = (tw_time_ms() - t0) / 1e3, ops = 0;
        for (int t = 0; t < 64; t++) ops += j.ops[t];
        if (s > 0 && ops / s / 1e9 > best) best = ops / s / 1e9;
    }
    return best;
}

const char *tw_bench_fma_isa(void) {
    if (__builtin_cpu_supports("avx512f")) return "avx512";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2";
    return "scalar";
}

/* iteration counts: about 5-10 ms per task on a 4 GHz core */
double tw_bench_fma_peak(tw_pool *pool, int reps) {
    if (__builtin_cpu_supports("avx512f")) return peak(pool, fma_avx512, 2000000, reps);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return peak(pool, fma_avx2, 2000000, reps);
    return peak(pool, fma_scalar, 1000000, reps);
}

double tw_bench_bf16_peak(tw_pool *pool, int reps) {
    if (!__builtin_cpu_supports("avx512bf16") || !__builtin_cpu_supports("avx512f")) return 0;
    return peak(pool, dot_bf16, 1000000, reps);
}

double tw_bench_int8_peak(tw_pool *pool, int reps) {
    if (!__builtin_cpu_supports("avx512vnni") || !__builtin_cpu_supports("avx512f")) return 0;
    return peak(pool, dot_int8, 1000000, reps);
}

/* ---- counting the work -------------------------------------------------------------------------- */

/* Keys a query at absolute position p reads on layer l: p + 1, or the window on sliding layers. */
static int64_t visible(const tw_gemma2_config *c, int32_t l, int64_t p) {
    int64_t n = p + 1;
    if (c->layer_sliding && c->layer_sliding[l] && c->sliding_window > 0) n = TW_MIN(n, (int64_t)c->sliding_window);
    return n;
}

static double nbytes(const tw_tensor *t) { return t ? (double)t->nbytes : 0; }

double tw_bench_decode_bytes(const tw_model *m, int64_t ctx, tw_kv_type kv, double *weights_only) {
    const tw_gemma2_config *c = &m->text;
    const tw_gemma2_weights *w = &m->tw;
    const double H = c->n_embd, f32 = sizeof(float);
    double b = nbytes(w->embed) / (double)c->n_vocab;   /* one embedding row */
    b += nbytes(w->lm_head) + H * f32;                  /* LM head, final norm (widened) */
    for (int32_t l = 0; l < c->n_layer; l++) {
        const tw_gemma2_layer *y = &w->layers[l];
        b += nbytes(y->wq) + nbytes(y->wk) + nbytes(y->wv) + nbytes(y->wo);
        b += nbytes(y->w_gate) + nbytes(y->w_up) + nbytes(y->w_down);
        b += 4 * H * f32;                               /* the four norms, widened at load */
    }
    if (weights_only) *weights_only = b;
    /* keys and values of the visible positions, in the cache's element type */
    const double kv_elt = kv == TW_KV_F32 ? 4.0 : 2.0, kvd = (double)c->n_head_kv * c->head_dim;
    for (int32_t l = 0; l < c->n_layer; l++) b += 2.0 * (double)visible(c, l, ctx) * kvd * kv_elt;
    return b;
}

static double mat(const tw_tensor *t) {   /* 2*N*K: one token through one matrix */
    if (!t) return 0;
    double n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (double)t->shape[i];
    return 2 * n;
}

double tw_bench_prefill_flops(const tw_model *m, int64_t p0, int64_t T) {
    const tw_gemma2_config *c = &m->text;
    const tw_gemma2_weights *w = &m->tw;
    double per_tok = 0, attn_pairs = 0;
    for (int32_t l = 0; l < c->n_layer; l++) {
        const tw_gemma2_layer *y = &w->layers[l];
        per_tok += mat(y->wq) + mat(y->wk) + mat(y->wv) + mat(y->wo) + mat(y->w_gate) + mat(y->w_up) + mat(y->w_down);
        for (int64_t p = p0; p < p0 + T; p++) attn_pairs += (double)visible(c, l, p);
    }
    /* QK^T and PV: 2 FLOPs each per element of D, per (query, key) pair, per query head */
    return per_tok * (double)T + attn_pairs * 4.0 * c->head_dim * c->n_head + mat(w->lm_head);
}

double tw_bench_vision_flops(const tw_model *m, int64_t n_tiles) {
    if (!m->has_vision) return 0;
    const tw_siglip_config *v = &m->vision;
    const double G = v->image_size / v->patch_size, N = G * G, C = v->n_embd;
    int32_t f = m->vision_feature_layer, n_run = f < 0 ? v->n_layer + 1 + f : f;
    double per_tile = N * mat(m->vw.patch_w);   /* im2col matmul: [N, 3*P*P] x [C, 3*P*P]^T */
    for (int32_t l = 0; l < n_run; l++) {
        const tw_siglip_layer *y = &m->vw.layers[l];
        per_tile += N * (mat(y->wq) + mat(y->wk) + mat(y->wv) + mat(y->wo) + mat(y->fc1_w) + mat(y->fc2_w));
        per_tile += 4.0 * N * N * C;   /* every head: N x N pairs, D each; heads x D = C */
    }
    per_tile += N * (mat(m->proj.w1) + mat(m->proj.w2));
    return per_tile * (double)n_tiles;
}

/* ---- memory ------------------------------------------------------------------------------------ */

uint64_t tw_bench_peak_rss(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (uint64_t)ru.ru_maxrss * 1024;   /* Linux: kilobytes */
}

uint64_t tw_bench_rss_now(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, res = 0;
    if (!f) return 0;
    int n = fscanf(f, "%llu %llu", &size, &res);
    fclose(f);
    return n == 2 ? (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}
