/*
** tool_batchbench.c — batched decode in process: k sequences stepping together through
** tw_seq_eval_batch (one token each, what `tower serve`'s scheduler runs when k streams generate),
** for k = 1, 2, 4, 8, on random weights of TowerVision-2B's text shapes (every layer distinct, so
** each step streams the real model's weights from memory). It gives the engine's own ceiling for
** the server's "decode, all streams" figure (bench/serve_bench.py), without HTTP, sampling or
** scheduling, and shows which matrix path a step of k rows takes:
**   packed   the default: k >= 2 rows use the packed-panel GEMM (weights widened and packed per
**            call, for prefill), k = 1 the row-dot tiles
**   row-dot  tw_kernels_set_gemm_min_tokens(k + 1): every k on the row-dot tiles (each weight row
**            read once and dotted with the k activation rows)
** and the matrix products alone (tw_matmul over one layer's seven weights and the LM head, the
** bulk of a step) for the same k, both paths.
**
** Usage: build/bench/tool_batchbench [--type bf16|q8|q4] [--ctx N] [--steps N] [--threads N]
** The limit beside each row is the memory-bound rate: k x read bandwidth (measured beside it) /
** bytes one step reads (weights once + k x the KV cache at that context). With --threads 1 every
** product runs on the calling thread, and "cpu ms" (its CPU time per step) measures the kernels'
** own cost even when other processes share the machine (wall time does not).
*/
#include "bench.h"
#include "kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAX_K = 8 };
static const int ks[] = { 1, 2, 4, 8 };

static double now_ms(void) { return tw_time_ms(); }

static double cpu_ms(void) {   /* CPU time of the calling thread */
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static double last_cpu;   /* CPU ms per step of the best run of time_steps */

/* ms per step of k sequences decoding together, the best of `reps` runs of `steps` steps each */
static double time_steps(tw_seq **s, int k, int steps, int reps, int32_t n_vocab) {
    double best = INFINITY;
    int32_t ids[MAX_K];
    tw_batch_item items[MAX_K];
    for (int r = 0; r < reps; r++) {
        int32_t base = tw_seq_pos(s[0]);
        for (int i = 0; i < k; i++) tw_seq_rewind(s[i], base);
        double t0 = now_ms(), c0 = cpu_ms();
        for (int step = 0; step < steps; step++) {
            for (int i = 0; i < k; i++) {
                ids[i] = (int32_t)((7919u * (unsigned)(step + 1) + 104729u * (unsigned)i) % (unsigned)n_vocab);
                items[i] = (tw_batch_item){ s[i], &ids[i], 1, NULL };
            }
            if (tw_seq_eval_batch(items, (size_t)k) != TW_OK) {
                fprintf(stderr, "tool_batchbench: %s\n", tw_last_error());
                exit(1);
            }
        }
        double ms = (now_ms() - t0) / steps;
        if (ms < best) best = ms, last_cpu = (cpu_ms() - c0) / steps;
        for (int i = 0; i < k; i++) tw_seq_rewind(s[i], base);
    }
    return best;
}

/* ms of the matrix products of one step of k rows: every layer's seven weights and the LM head */
static double time_matmuls(const tw_model *m, int k, int reps) {
    const tw_gemma2_config *c = &m->text;
    int64_t width = TW_MAX((int64_t)c->n_ff, (int64_t)c->n_vocab);
    float *x = calloc((size_t)k * (size_t)TW_MAX(c->n_ff, c->n_embd), sizeof(float));
    float *y = malloc(sizeof(float) * (size_t)k * (size_t)width);
    if (!x || !y) exit(1);
    for (int64_t i = 0; i < (int64_t)k * TW_MAX(c->n_ff, c->n_embd); i++) x[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    double best = INFINITY;
    for (int r = 0; r < reps; r++) {
        double t0 = now_ms();
        for (int32_t l = 0; l < c->n_layer; l++) {
            const tw_gemma2_layer *L = &m->tw.layers[l];
            const tw_tensor *w[7] = { L->wq, L->wk, L->wv, L->wo, L->w_gate, L->w_up, L->w_down };
            for (int i = 0; i < 7; i++) tw_matmul(m->pool, y, x, k, w[i], NULL);
        }
        tw_matmul(m->pool, y, x, k, m->tw.lm_head, NULL);
        best = fmin(best, now_ms() - t0);
    }
    free(x);
    free(y);
    return best;
}

int main(int argc, char **argv) {
    const char *type = "bf16";
    int ctx = 100, steps = 8, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--type") && i + 1 < argc) type = argv[++i];
        else if (!strcmp(argv[i], "--ctx") && i + 1 < argc) ctx = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: tool_batchbench [--type bf16|q8|q4] [--ctx N] [--steps N] [--threads N]\n");
            return 2;
        }
    }
    tw_random_spec sp;
    tw_random_spec_preset("2b", &sp);
    sp.has_vision = false;   /* decode never touches it */
    sp.n_threads = threads;
    if (!tw_random_type_parse(type, &sp.type) || !tw_random_type_ok(sp.type)) {
        fprintf(stderr, "tool_batchbench: unknown --type %s\n", type);
        return 2;
    }
    fprintf(stderr, "tool_batchbench: building TowerVision-2B's text shapes with random %s weights...\n", type);
    tw_model *m = NULL;
    if (tw_random_model_new(&sp, &m) != TW_OK) {
        fprintf(stderr, "tool_batchbench: %s\n", tw_last_error());
        return 1;
    }
    tw_seq *s[MAX_K];
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)ctx);
    for (int i = 0; i < ctx; i++) prompt[i] = (int32_t)((i * 7919 + 13) % m->text.n_vocab);
    tw_batch_item items[MAX_K];
    for (int i = 0; i < MAX_K; i++) {
        if (tw_seq_new(m, ctx + 64, &s[i]) != TW_OK) return 1;
        items[i] = (tw_batch_item){ s[i], prompt, (size_t)ctx, NULL };
    }
    if (tw_seq_eval_batch(items, MAX_K) != TW_OK) {   /* each sequence holds ctx positions */
        fprintf(stderr, "tool_batchbench: %s\n", tw_last_error());
        return 1;
    }
    double weights = 0, all = tw_bench_decode_bytes(m, ctx, TW_KV_F32, &weights);
    double kv = all - weights;
    printf("\nbatched decode, TowerVision-2B text shapes, random %s weights, %d threads, kernels %s, context %d, "
           "f32 KV cache\n", type, tw_pool_size(m->pool), tw_kpath_name(tw_kernels_init()), ctx);
    printf("a step reads %.2f GB of weights + %.1f MB of KV cache per sequence; limit = k x read bandwidth / "
           "(weights + k x KV)\n\n", weights / 1e9, kv / 1e6);
    printf("%-8s %3s %10s %10s %9s %10s %9s %10s %9s %9s %9s\n", "path", "k", "ms/step", "tok/s", "x k=1", "GB/s read",
           "limit", "of limit", "matmul ms", "cpu ms", "cpu x k=1");
    int64_t saved = tw_kernels_set_gemm_min_tokens(2);   /* the default, read back */
    tw_kernels_set_gemm_min_tokens(saved);
    for (int path = 0; path < 2; path++) {
        double one = 0, one_cpu = 0;
        for (size_t j = 0; j < sizeof ks / sizeof ks[0]; j++) {
            int k = ks[j];
            tw_kernels_set_gemm_min_tokens(path == 0 ? saved : k + 1);
            time_steps(s, k, 1, 1, m->text.n_vocab);   /* warm the workspace for k rows */
            double bw = tw_bench_read_bw(m->pool, (size_t)256 << 20, 2);
            double ms = time_steps(s, k, steps, 2, m->text.n_vocab), cpu = last_cpu;
            double mm = time_matmuls(m, k, 2);
            bw = fmax(bw, tw_bench_read_bw(m->pool, (size_t)256 << 20, 2));
            double rate = k * 1e3 / ms;
            if (k == 1) one = rate, one_cpu = cpu;
            double limit = k * bw * 1e9 / (weights + k * kv);
            /* "cpu x k=1": tokens per CPU-second against k = 1's (meaningful with --threads 1) */
            printf("%-8s %3d %10.1f %10.2f %8.2fx %10.1f %9.2f %9.0f%% %10.1f %9.1f %8.2fx\n", path == 0 ? "packed" : "row-dot",
                   k, ms, rate, rate / one, bw, limit, 100 * rate / limit, mm, cpu, k * one_cpu / cpu);
            fflush(stdout);
        }
    }
    tw_kernels_set_gemm_min_tokens(saved);
    for (int i = 0; i < MAX_K; i++) tw_seq_free(s[i]);
    free(prompt);
    tw_model_free(m);
    return 0;
}
