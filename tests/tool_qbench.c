/*
** tool_qbench.c — decode speed of quantized weights: T = 1 matvecs over the Gemma2-2B matrices
** (26 layers of q/k/v/o/gate/up/down, plus the 256000-row head) in BF16, Q8_0 and Q4_0, against
** the machine's read bandwidth measured here the same way (every thread summing its share of a
** large buffer). Prints GB/s of weights streamed, the fraction of the measured bandwidth, and the
** tokens/s one decode step's matvecs would allow.
**   usage: build/tests/tool_qbench [threads] [layers-in-memory]
** Two distinct copies of the layer matrices (default) are cycled so nothing is served from the
** 32 MB L3.
*/
#include "quant.h"

#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- bandwidth ---------------------------------------------------------------------------- */

typedef struct bw_job { const uint8_t *p; size_t n; int64_t parts; double sum[64]; } bw_job;

__attribute__((target("avx512f"))) static void bw_task(void *ctx, int64_t i, int tid) {
    bw_job *j = ctx;
    size_t per = j->n / (size_t)j->parts / 256 * 256;
    const float *f = (const float *)(j->p + (size_t)i * per);
    __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps(), c = _mm512_setzero_ps(), d = _mm512_setzero_ps();
    for (size_t k = 0; k < per / 4; k += 64) {
        a = _mm512_add_ps(a, _mm512_loadu_ps(f + k));
        b = _mm512_add_ps(b, _mm512_loadu_ps(f + k + 16));
        c = _mm512_add_ps(c, _mm512_loadu_ps(f + k + 32));
        d = _mm512_add_ps(d, _mm512_loadu_ps(f + k + 48));
    }
    j->sum[i % 64] += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
}

static double read_bandwidth(tw_pool *pool) {
    size_t n = (size_t)1 << 30;
    uint8_t *p = malloc(n);
    for (size_t i = 0; i < n; i += 4096) p[i] = (uint8_t)i;
    memset(p, 1, n);
    bw_job j = { p, n, 64, { 0 } };
    double best = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = tw_time_ms();
        tw_pool_run(pool, j.parts, bw_task, &j);
        best = TW_MAX(best, (double)n / ((tw_time_ms() - t0) / 1e3) / 1e9);
    }
    free(p);
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
        float row[64 * 1024];
        size_t rb = tw_quant_row_bytes(type, K);
        for (int64_t n = 0; n < N; n++) {
            if (n < 64) {
                for (int64_t k = 0; k < K; k++) s = s * 6364136223846793005ull + 1, row[k] = ((int)(s >> 40) % 1000) * 2e-5f;
                tw_quantize_row(type, row, K, (uint8_t *)m->data + (size_t)n * rb);
            } else {   /* content does not matter for speed: repeat the first 64 rows */
                memcpy((uint8_t *)m->data + (size_t)n * rb, (uint8_t *)m->data + (size_t)(n % 64) * rb, rb);
            }
        }
    }
    m->t = (tw_tensor){ .name = "w", .type = type, .ndim = 2, .shape = { N, K }, .data = m->data, .nbytes = bytes };
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0, copies = argc > 2 ? atoi(argv[2]) : 2;
    tw_pool *pool = tw_pool_new(threads);
    tw_kernels_init();
    double bw = read_bandwidth(pool);
    printf("path %s, %d threads; measured read bandwidth %.1f GB/s\n", tw_kpath_name(tw_kernels_path()),
           tw_pool_size(pool), bw);
    /* Gemma2-2B: H 2304, 8 heads x 256, 4 kv heads, FF 9216, 26 layers, vocab 256000 */
    const int64_t shapes[7][2] = { { 2048, 2304 }, { 1024, 2304 }, { 1024, 2304 }, { 2304, 2048 },
                                   { 9216, 2304 }, { 9216, 2304 }, { 2304, 9216 } };
    const tw_dtype types[3] = { TW_DT_BF16, TW_DT_Q8_0, TW_DT_Q4_0 };
    float *x = malloc(sizeof(float) * 9216), *y = malloc(sizeof(float) * 256000);
    for (int i = 0; i < 9216; i++) x[i] = (float)(i % 17) * 0.01f;
    printf("%-5s %10s %9s %7s   %10s %9s %7s   %s\n", "type", "layers GB/s", "ms/layer", "of bw", "head GB/s", "ms",
           "of bw", "decode tok/s (26 layers + head)");
    for (int ti = 0; ti < 3; ti++) {
        tw_dtype t = types[ti];
        mat *L = calloc((size_t)copies * 7, sizeof *L), head;
        size_t lbytes = 0;
        for (int c = 0; c < copies; c++)
            for (int i = 0; i < 7; i++) mat_make(&L[c * 7 + i], t, shapes[i][0], shapes[i][1]);
        for (int i = 0; i < 7; i++) lbytes += L[i].t.nbytes;
        mat_make(&head, t, 256000, 2304);
        /* warm up, then the best of several rounds of 26 layers */
        double best_l = 1e30, best_h = 1e30;
        for (int r = 0; r < 4; r++) {
            double t0 = tw_time_ms();
            for (int l = 0; l < 26; l++)
                for (int i = 0; i < 7; i++) tw_matmul(pool, y, x, 1, &L[(l % copies) * 7 + i].t, NULL);
            best_l = TW_MIN(best_l, (tw_time_ms() - t0) / 26);
            t0 = tw_time_ms();
            tw_matmul(pool, y, x, 1, &head.t, NULL);
            best_h = TW_MIN(best_h, tw_time_ms() - t0);
        }
        double gl = (double)lbytes / (best_l / 1e3) / 1e9, gh = (double)head.t.nbytes / (best_h / 1e3) / 1e9;
        printf("%-5s %10.1f %9.3f %6.0f%%   %10.1f %9.2f %6.0f%%   %.1f\n", ti == 0 ? "bf16" : tw_quant_name(t), gl,
               best_l, 100 * gl / bw, gh, best_h, 100 * gh / bw, 1e3 / (26 * best_l + best_h));
        for (int i = 0; i < copies * 7; i++) free(L[i].data);
        free(L);
        free(head.data);
    }
    free(x);
    free(y);
    tw_pool_free(pool);
    return 0;
}
