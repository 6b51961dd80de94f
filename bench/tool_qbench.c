/*
** tool_qbench.c — decode speed of quantized weights: T = 1 matvecs over every matrix of one
** Gemma2 decode step (the layers' q/k/v/o/gate/up/down, then the 256000-row head) in BF16
** (tw_matmul), Q8_0 and Q4_0, against the machine's read bandwidth measured in the same run.
**
** The machine is shared (other builds and tests run on the same 2 cores), so every figure is
** the best of several rounds, and each round measures the bandwidth right before the matvecs:
** the "of bw" fraction compares best with best. Per type it prints the GB/s of weights streamed,
** that fraction, and the tokens/s the step's matvecs allow (bytes of weights per token / time).
** Then, per quantized type: the same kernels on one matrix that stays in L2/L3 (the compute
** ceiling: far above the bandwidth means decode is memory-bound), T = 4 (small batch) and T = 64
** (prefill) through the layers, in both activation modes (int8 default, f32).
**
**   usage: build/bench/tool_qbench [threads] [rounds] [--9b]
** Two distinct copies of the layer matrices are cycled so nothing is served from the 32 MB L3.
** --9b also runs Gemma2-9B's shapes (about 5 GB for q4 + bf16 layer copies and heads).
*/
#include "quant.h"

#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- bandwidth ---------------------------------------------------------------------------- */

typedef struct bw_job { const uint8_t *p; size_t n; int64_t parts; bool prefetch; double sum[64]; } bw_job;

__attribute__((target("avx512f"))) static void bw_task(void *ctx, int64_t i, int tid) {
    bw_job *j = ctx;
    size_t per = j->n / (size_t)j->parts / 256 * 256;
    const float *f = (const float *)(j->p + (size_t)i * per);
    __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps(), c = _mm512_setzero_ps(), d = _mm512_setzero_ps();
    for (size_t k = 0; k < per / 4; k += 64) {
        if (j->prefetch)
            for (int l = 0; l < 4; l++) _mm_prefetch((const char *)(f + k + 1024 + 16 * l), _MM_HINT_T0);
        a = _mm512_add_ps(a, _mm512_loadu_ps(f + k));
        b = _mm512_add_ps(b, _mm512_loadu_ps(f + k + 16));
        c = _mm512_add_ps(c, _mm512_loadu_ps(f + k + 32));
        d = _mm512_add_ps(d, _mm512_loadu_ps(f + k + 48));
    }
    j->sum[i % 64] += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
}

/* every thread summing its share of a 512 MB buffer (64 parts, taken dynamically), best of 2
** without and 2 with a software prefetch 4 KB ahead (as the quantized kernels do: one stream per
** core is otherwise limited by the hardware prefetcher, and the yardstick must be the best the
** machine gives) */
static double read_bandwidth(tw_pool *pool, const uint8_t *p, size_t n) {
    bw_job j = { p, n, 64, false, { 0 } };
    double best = 0;
    for (int r = 0; r < 4; r++) {
        j.prefetch = r >= 2;
        double t0 = tw_time_ms();
        tw_pool_run(pool, j.parts, bw_task, &j);
        best = TW_MAX(best, (double)n / ((tw_time_ms() - t0) / 1e3) / 1e9);
    }
    return best;
}

/* ---- matrices --------------------------------------------------------------------------------- */

typedef struct mat { tw_tensor t; void *data; } mat;

static void mat_make(mat *m, tw_dtype type, int64_t N, int64_t K) {
    size_t bytes = tw_dtype_is_quant(type) ? tw_quant_row_bytes(type, K) * (size_t)N : (size_t)(N * K) * 2;
    m->data = malloc(bytes);
    uint64_t s = 0x9E3779B97F4A7C15ull ^ (uint64_t)(N * 131 + K);
    if (type == TW_DT_BF16) {
        uint16_t *w = m->data;
        for (size_t i = 0; i < bytes / 2; i++) s = s * 6364136223846793005ull + 1, w[i] = tw_f32_to_bf16(((int)(s >> 40) % 1000) * 2e-5f);
    } else {
        float *row = malloc(sizeof(float) * (size_t)K);
        size_t rb = tw_quant_row_bytes(type, K);
        for (int64_t n = 0; n < N; n++) {
            if (n < 64) {
                for (int64_t k = 0; k < K; k++) s = s * 6364136223846793005ull + 1, row[k] = ((int)(s >> 40) % 1000) * 2e-5f;
                tw_quantize_row(type, row, K, (uint8_t *)m->data + (size_t)n * rb);
            } else {   /* content does not matter for speed: repeat the first 64 rows */
                memcpy((uint8_t *)m->data + (size_t)n * rb, (uint8_t *)m->data + (size_t)(n % 64) * rb, rb);
            }
        }
        free(row);
    }
    m->t = (tw_tensor){ .name = "w", .type = type, .ndim = 2, .shape = { N, K }, .data = m->data, .nbytes = bytes };
}

typedef struct model_shape {
    const char *name;
    int64_t layers, vocab, mats[7][2];   /* q, k, v, o, gate, up, down: [N, K] */
} model_shape;

static const model_shape GEMMA2_2B = { "gemma2-2b", 26, 256000,
    { { 2048, 2304 }, { 1024, 2304 }, { 1024, 2304 }, { 2304, 2048 }, { 9216, 2304 }, { 9216, 2304 }, { 2304, 9216 } } };
static const model_shape GEMMA2_9B = { "gemma2-9b", 42, 256000,
    { { 4096, 3584 }, { 2048, 3584 }, { 2048, 3584 }, { 3584, 4096 }, { 14336, 3584 }, { 14336, 3584 }, { 3584, 14336 } } };

enum { COPIES = 2, NTYPES = 3 };
static const tw_dtype TYPES[NTYPES] = { TW_DT_BF16, TW_DT_Q8_0, TW_DT_Q4_0 };
static const char *type_name(int i) { return i == 0 ? "bf16" : tw_quant_name(TYPES[i]); }

typedef struct typed { mat L[COPIES * 7], head; size_t lbytes; } typed;

/* ms for T tokens through all layers' matrices (copies cycled) */
static double run_layers(tw_pool *pool, const model_shape *ms, typed *m, float *y, const float *x, int64_t T) {
    double t0 = tw_time_ms();
    for (int64_t l = 0; l < ms->layers; l++)
        for (int i = 0; i < 7; i++) tw_matmul(pool, y, x, T, &m->L[(l % COPIES) * 7 + i].t, NULL);
    return tw_time_ms() - t0;
}

static void bench_model(tw_pool *pool, const model_shape *ms, int rounds, const uint8_t *bwbuf, size_t bwn) {
    typed *M = calloc(NTYPES, sizeof *M);
    const int64_t TP = 64;
    float *x = malloc(sizeof(float) * (size_t)(TP * 16384)), *y = malloc(sizeof(float) * (size_t)(TP * 16384));
    float *yh = malloc(sizeof(float) * (size_t)ms->vocab);
    for (int64_t i = 0; i < TP * 16384; i++) x[i] = (float)((i * 7) % 17 - 8) * 0.01f;
    for (int ti = 0; ti < NTYPES; ti++) {
        for (int c = 0; c < COPIES; c++)
            for (int i = 0; i < 7; i++) mat_make(&M[ti].L[c * 7 + i], TYPES[ti], ms->mats[i][0], ms->mats[i][1]);
        for (int i = 0; i < 7; i++) M[ti].lbytes += M[ti].L[i].t.nbytes;
        mat_make(&M[ti].head, TYPES[ti], ms->vocab, ms->mats[0][1]);
    }
    /* rounds: bandwidth, then every configuration's layers and head; best of each. Configurations:
    ** bf16, then each quantized type with int8 and with f32 activations. */
    enum { NCONF = 1 + 2 * (NTYPES - 1) };
    double bw = 0, best_l[NCONF], best_h[NCONF];
    for (int ci = 0; ci < NCONF; ci++) best_l[ci] = best_h[ci] = 1e30;
    for (int r = 0; r < rounds; r++) {
        bw = TW_MAX(bw, read_bandwidth(pool, bwbuf, bwn));
        for (int ci = 0; ci < NCONF; ci++) {
            int ti = (ci + 1) / 2;
            tw_qact old = tw_quant_set_act(ci > 0 && ci % 2 == 0 ? TW_QACT_F32 : TW_QACT_INT8);
            best_l[ci] = TW_MIN(best_l[ci], run_layers(pool, ms, &M[ti], y, x, 1) / (double)ms->layers);
            double t0 = tw_time_ms();
            tw_matmul(pool, yh, x, 1, &M[ti].head.t, NULL);
            best_h[ci] = TW_MIN(best_h[ci], tw_time_ms() - t0);
            tw_quant_set_act(old);
        }
    }
    printf("\n%s, T = 1 (best of %d rounds; read bandwidth %.1f GB/s, best of the same rounds), int8 kernel %s\n",
           ms->name, rounds, bw, tw_quant_i8_kernel());
    printf("%-10s %9s %9s %6s  %9s %9s %6s  %9s %6s %7s\n", "type", "layers", "ms/layer", "of bw", "head", "head ms",
           "of bw", "step GB", "of bw", "tok/s");
    for (int ci = 0; ci < NCONF; ci++) {
        int ti = (ci + 1) / 2;
        char name[32];
        snprintf(name, sizeof name, "%s%s", type_name(ti), ci == 0 ? "" : ci % 2 ? " int8" : " f32");
        double gl = (double)M[ti].lbytes / (best_l[ci] / 1e3) / 1e9, gh = (double)M[ti].head.t.nbytes / (best_h[ci] / 1e3) / 1e9;
        double step = (double)M[ti].lbytes * (double)ms->layers + (double)M[ti].head.t.nbytes;
        double ms_tok = (double)ms->layers * best_l[ci] + best_h[ci], g = step / (ms_tok / 1e3) / 1e9;
        printf("%-10s %4.1f GB/s %8.3f %5.0f%%  %4.1f GB/s %9.2f %5.0f%%  %9.3f %5.0f%% %7.1f\n", name, gl,
               best_l[ci], 100 * gl / bw, gh, best_h[ci], 100 * gh / bw, step / 1e9, 100 * g / bw, 1e3 / ms_tok);
    }
    /* the quantized kernels' compute ceiling (one K x N matrix that stays in cache) and T > 1 */
    printf("%-5s %-4s %16s %14s %14s\n", "type", "act", "in-cache GB/s", "T=4 ms/layer", "T=64 tok/s");
    for (int ti = 1; ti < NTYPES; ti++)
        for (int act = 0; act < 2; act++) {
            tw_qact old = tw_quant_set_act((tw_qact)act);
            const mat *c = &M[ti].L[1];   /* k_proj: 1-2 MB */
            double bc = 1e30, b4 = 1e30, b64 = 1e30;
            for (int r = 0; r < TW_MAX(2, rounds / 2); r++) {
                double t0 = tw_time_ms();
                for (int k = 0; k < 50; k++) tw_matmul(pool, y, x, 1, &c->t, NULL);
                bc = TW_MIN(bc, (tw_time_ms() - t0) / 50);
                b4 = TW_MIN(b4, run_layers(pool, ms, &M[ti], y, x, 4) / (double)ms->layers);
                b64 = TW_MIN(b64, run_layers(pool, ms, &M[ti], y, x, TP));
            }
            printf("%-5s %-4s %11.1f GB/s %14.3f %14.1f\n", type_name(ti), act ? "f32" : "int8",
                   (double)c->t.nbytes / (bc / 1e3) / 1e9, b4, TP * 1e3 / b64);
            tw_quant_set_act(old);
        }
    for (int ti = 0; ti < NTYPES; ti++) {
        for (int i = 0; i < COPIES * 7; i++) free(M[ti].L[i].data);
        free(M[ti].head.data);
    }
    free(M), free(x), free(y), free(yh);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0, rounds = argc > 2 ? atoi(argv[2]) : 5;
    bool nine = argc > 3 && strcmp(argv[3], "--9b") == 0;
    tw_pool *pool = tw_pool_new(threads);
    tw_kernels_init();
    size_t bwn = (size_t)512 << 20;
    uint8_t *bwbuf = malloc(bwn);
    memset(bwbuf, 1, bwn);
    printf("path %s, %d threads, activations %s by default\n", tw_kpath_name(tw_kernels_path()), tw_pool_size(pool),
           tw_quant_act() == TW_QACT_INT8 ? "int8" : "f32");
    bench_model(pool, &GEMMA2_2B, TW_MAX(1, rounds), bwbuf, bwn);
    if (nine) bench_model(pool, &GEMMA2_9B, TW_MAX(1, rounds), bwbuf, bwn);
    free(bwbuf);
    tw_pool_free(pool);
    return 0;
}
