/*
** tool_kbench.c — micro-benchmark of the matmul paths.
**   peak:    a register-only FMA loop (and a vdpbf16ps loop) per core, 1 and 2 threads at once:
**            the yardstick for the GFLOP/s below;
**   memory:  read bandwidth (sum over a 1 GB buffer) and memcpy;
**   decode  (T = 1): GB/s of weight streaming on Gemma2-2B shapes, every path;
**   matrix  (T > 1): GFLOP/s and % of the measured peak for T in {16, 64, 256, 729, 2048} on the
**            Gemma2-2B MLP shapes (2304x9216, 9216x2304) and the SigLIP so400m ones (1152x1152,
**            4304x1152, 1152x4304), bf16 weights, 1 and 2 threads, for the f32-FMA packed path,
**            the bf16-dot packed path (vdpbf16ps) and the older row-dot tiles.
**
** Usage: build/bench/tool_kbench [--quick] [--gemm-only] [--mode N]
**   --mode N: only one GEMM mode: 0 f32-fma, 1 f32-pre, 2 bf16-dot, 3 bf16-pre, 4 rowdot
**   ("-pre": weights packed once with tw_kernels_pack_weight; otherwise packed per call)
** Weights are cycled through enough copies (> 64 MB in all) that each call reads them from memory,
** as a forward pass through 26 layers would. 1-thread figures are also given per CPU-second of
** the calling thread (the kernel's own speed, even when the machine is shared).
*/
#include "kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <immintrin.h>

static bool quick;
static int only_mode = -1;   /* --mode N: one GEMM mode only */

/* ---- read bandwidth ------------------------------------------------------------------------ */

typedef struct {
    const uint64_t *buf;
    int64_t n;        /* words */
    int64_t chunk;    /* words per task */
    uint64_t sums[64];
} sum_job;

static void sum_task(void *ctx, int64_t i, int tid) {
    sum_job *j = ctx;
    const uint64_t *p = j->buf + i * j->chunk;
    int64_t n = TW_MIN(j->chunk, j->n - i * j->chunk);
    /* four independent chains so the adds never wait on each other: the loads set the pace */
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (int64_t k = 0; k + 4 <= n; k += 4) a += p[k], b += p[k + 1], c += p[k + 2], d += p[k + 3];
    j->sums[tid & 63] += a + b + c + d;
}

typedef struct {
    uint8_t *dst;
    const uint8_t *src;
    size_t chunk, n;
} copy_job;

static void copy_task(void *ctx, int64_t i, int tid) {
    copy_job *j = ctx;
    size_t off = (size_t)i * j->chunk;
    memcpy(j->dst + off, j->src + off, TW_MIN(j->chunk, j->n - off));
}

static void bench_bandwidth(tw_pool *pool, int threads) {
    size_t bytes = quick ? ((size_t)256 << 20) : ((size_t)1 << 30);
    uint64_t *buf = tw_aligned_alloc(bytes), *dst = tw_aligned_alloc(bytes);
    if (!buf || !dst) {
        printf("bandwidth: cannot allocate %zu MB\n", bytes >> 20);
        tw_aligned_free(buf);
        tw_aligned_free(dst);
        return;
    }
    for (size_t i = 0; i < bytes / 8; i++) buf[i] = i;   /* touch every page */
    memset(dst, 1, bytes);
    sum_job sj = { .buf = buf, .n = (int64_t)(bytes / 8), .chunk = (int64_t)(4 << 20) / 8 };
    double best = 1e30;
    for (int r = 0; r < (quick ? 3 : 6); r++) {
        double t0 = tw_time_ms();
        tw_pool_run(pool, (sj.n + sj.chunk - 1) / sj.chunk, sum_task, &sj);
        best = TW_MIN(best, tw_time_ms() - t0);
    }
    uint64_t s = 0;
    for (int i = 0; i < 64; i++) s += sj.sums[i];
    printf("read  bandwidth  %d thread%s  %6.1f GB/s   (sum over %zu MB, checksum %llu)\n", threads,
           threads > 1 ? "s" : " ", (double)bytes / best / 1e6, bytes >> 20, (unsigned long long)(s & 0xff));
    copy_job cj = { (uint8_t *)dst, (const uint8_t *)buf, (size_t)4 << 20, bytes };
    best = 1e30;
    for (int r = 0; r < (quick ? 3 : 6); r++) {
        double t0 = tw_time_ms();
        tw_pool_run(pool, (int64_t)((bytes + cj.chunk - 1) / cj.chunk), copy_task, &cj);
        best = TW_MIN(best, tw_time_ms() - t0);
    }
    printf("memcpy           %d thread%s  %6.1f GB/s   (read + write, counted once)\n", threads,
           threads > 1 ? "s" : " ", (double)bytes / best / 1e6);
    tw_aligned_free(buf);
    tw_aligned_free(dst);
}

/* ---- peak ------------------------------------------------------------------------------------ */

/* A register-only loop: 12 independent accumulators (more than the FMA latency x throughput needs),
** no memory. Compiled for AVX-512 by attribute; only called when the CPU has it. */
__attribute__((target("avx512f,fma"))) static double fma_loop(int64_t iters) {
    __m512 a[12], m = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-3f);
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    for (int64_t n = 0; n < iters; n++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], m, c);
    __m512 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
    return (double)_mm512_reduce_add_ps(s);
}

__attribute__((target("avx512f,avx512bf16"))) static double dpbf16_loop(int64_t iters) {
    __m512 a[12];
    __m512bh m = (__m512bh)_mm512_set1_epi32(0x3f803f80), c = (__m512bh)_mm512_set1_epi32(0x3a803a80);
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    for (int64_t n = 0; n < iters; n++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm512_dpbf16_ps(a[i], m, c);
    __m512 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
    return (double)_mm512_reduce_add_ps(s);
}

typedef struct {
    bool bf16;
    int64_t iters;
    double sink[64];
    double cpu_ms[64];   /* per task: CPU time of the thread that ran it */
} peak_job;

static double thread_cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void peak_task(void *ctx, int64_t i, int tid) {
    peak_job *j = ctx;
    double c0 = thread_cpu_ms();
    j->sink[i & 63] += j->bf16 ? dpbf16_loop(j->iters) : fma_loop(j->iters);
    j->cpu_ms[i & 63] = thread_cpu_ms() - c0;
}

/* GFLOP/s of `threads` cores running the loop at once (one task each), each core's share per
** CPU-second of the thread that ran it (a register-only loop's speed does not depend on the other
** processes of a shared machine, only whether it runs): the best of 5, summed over the cores */
static double measure_peak(tw_pool *pool, int threads, bool bf16) {
    peak_job j = { .bf16 = bf16, .iters = 2000000 };
    /* 12 instructions per iteration; an FMA lane is 2 flops, a vdpbf16ps lane 4 */
    double flop = (double)j.iters * 12 * 16 * (bf16 ? 4 : 2), best = 0;
    for (int r = 0; r < 5; r++) {
        tw_pool_run(pool, threads, peak_task, &j);
        double sum = 0;
        for (int i = 0; i < threads; i++) sum += flop / j.cpu_ms[i] / 1e6;
        best = TW_MAX(best, sum);
    }
    return best;
}

/* ---- matmul ---------------------------------------------------------------------------------- */

enum { MAX_COPIES = 16 };

typedef struct {
    int64_t N, K;
    int copies;
    uint16_t *w[MAX_COPIES];
    tw_tensor t[MAX_COPIES];
} shape;

/* enough copies for `bytes_min` bytes in all, at most MAX_COPIES */
static bool make_shape(shape *s, int64_t N, int64_t K, double bytes_min) {
    memset(s, 0, sizeof *s);
    s->N = N, s->K = K;
    double one = 2.0 * (double)(N * K);
    s->copies = (int)TW_MIN(MAX_COPIES, TW_MAX(1, (int)(bytes_min / one + 0.999)));
    uint32_t r = 12345;
    for (int c = 0; c < s->copies; c++) {
        s->w[c] = tw_aligned_alloc(sizeof(uint16_t) * (size_t)(N * K));
        if (!s->w[c]) return false;
        for (int64_t i = 0; i < N * K; i++) {
            r = r * 1664525u + 1013904223u;
            s->w[c][i] = tw_f32_to_bf16((float)(r >> 8) / 16777216.0f - 0.5f);
        }
        s->t[c] = (tw_tensor){ .name = "w", .type = TW_DT_BF16, .ndim = 2, .shape = { N, K },
                               .data = s->w[c], .nbytes = sizeof(uint16_t) * (size_t)(N * K) };
    }
    return true;
}

static void free_shape(shape *s) {
    for (int c = 0; c < s->copies; c++) tw_aligned_free(s->w[c]);
}

/* ms per call: the fastest of `calls` timed calls, cycling through the copies. The fastest, not
** the mean, because on a shared machine other processes take the cores now and then, and the
** fastest call is the one that ran alone. *cpu_ms gets this thread's CPU time for that call: with
** a 1-thread pool all the work runs on this thread, so it is the time the kernel needed even when
** the scheduler took the core away in between. */
static double process_cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* *proc_ms: the CPU time of all the process's threads for the call (the least seen). With several
** threads, flop / proc_ms x threads is the rate the cores would reach if none were taken away —
** it counts cache and memory contention between our threads but not time spent waiting for the
** last task (an idle pool thread sleeps), so it is an upper bound for the wall-clock figure. */
static double time_matmul_p(tw_pool *pool, shape *s, int64_t T, const float *x, float *y, int calls, double *cpu_ms,
                            double *proc_ms) {
    double best = 1e30;
    *cpu_ms = 1e30;
    *proc_ms = 1e30;
    tw_matmul(pool, y, x, T, &s->t[0], NULL);   /* warm-up: pool threads, page tables */
    for (int c = 0; c < calls; c++) {
        double t0 = tw_time_ms(), c0 = thread_cpu_ms(), p0 = process_cpu_ms();
        tw_matmul(pool, y, x, T, &s->t[(c + 1) % s->copies], NULL);
        best = TW_MIN(best, tw_time_ms() - t0);
        *cpu_ms = TW_MIN(*cpu_ms, thread_cpu_ms() - c0);
        *proc_ms = TW_MIN(*proc_ms, process_cpu_ms() - p0);
    }
    return best;
}

static double time_matmul(tw_pool *pool, shape *s, int64_t T, const float *x, float *y, int calls, double *cpu_ms) {
    double proc;
    return time_matmul_p(pool, s, T, x, y, calls, cpu_ms, &proc);
}

static void print_load(const char *when) {
    char buf[128] = "?";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (!fgets(buf, sizeof buf, f)) strcpy(buf, "?\n");
        fclose(f);
    }
    printf("load average %s: %s", when, buf);
}

/* decode: weight streaming of the two Gemma2-2B MLP shapes on every path */
static void bench_decode(tw_pool **pools, int max_threads, const float *x, float *y) {
    shape shapes[2];
    const int64_t dims[2][2] = { { 9216, 2304 }, { 2304, 9216 } };   /* [N, K]: gate/up, down */
    for (int si = 0; si < 2; si++)
        if (!make_shape(&shapes[si], dims[si][0], dims[si][1], quick ? 100e6 : 300e6)) {
            printf("cannot allocate weights\n");
            return;
        }
    printf("%-7s %-7s %-16s %8s %10s %10s\n", "path", "threads", "W [N,K] bf16", "T", "ms/call", "result");
    for (int p = 0; p < TW_KPATH_COUNT; p++) {
        if (!tw_kernels_force((tw_kpath)p)) {
            printf("%-7s skipped: CPU lacks %s\n", tw_kpath_name((tw_kpath)p), tw_kpath_missing((tw_kpath)p));
            continue;
        }
        for (int th = 1; th <= max_threads; th++)
            for (int si = 0; si < 2; si++) {
                shape *s = &shapes[si];
                double bytes = 2.0 * (double)(s->N * s->K), cpu;
                double ms = time_matmul(pools[th], s, 1, x, y, quick ? 8 : 48, &cpu);
                printf("%-7s %-7d %5lldx%-10lld %8d %10.3f %7.1f GB/s", tw_kpath_name((tw_kpath)p), th,
                       (long long)s->N, (long long)s->K, 1, ms, bytes / ms / 1e6);
                if (th == 1) printf("     (%.1f per CPU-second)", bytes / cpu / 1e6);
                printf("\n");
            }
    }
    for (int si = 0; si < 2; si++) free_shape(&shapes[si]);
}

/* matrix products: the packed f32-FMA path, the packed bf16-dot path, the older row-dot tiles */
static void bench_gemm(tw_pool **pools, int max_threads, const float *x, float *y, const double peak[3][2]) {
    enum { NS = 5, NT = 5 };
    const int64_t dims[NS][2] = { { 2304, 9216 }, { 9216, 2304 }, { 1152, 1152 }, { 4304, 1152 }, { 1152, 4304 } };
    const int64_t Ts[NT] = { 16, 64, 256, 729, 2048 };
    /* f32-fma / bf16-dot: weights packed per call; -pre: packed once (tw_kernels_pack_weight) */
    enum { F32, F32_PRE, BF16, BF16_PRE, ROWDOT, MODES };
    const char *modes[MODES] = { "f32-fma", "f32-pre", "bf16-dot", "bf16-pre", "rowdot" };
    bool have_bf16 = __builtin_cpu_supports("avx512bf16");
    if (!tw_kernels_force(TW_KPATH_AVX512)) {
        printf("matrix products: avx512 path not available (%s)\n", tw_kpath_missing(TW_KPATH_AVX512));
        return;
    }
    printf("%-9s %-3s %-11s %5s %9s %9s %7s %9s %7s\n", "mode", "th", "W [N,K]", "T", "ms/call", "GFLOP/s", "%peak",
           "cpu-GF/s", "%peak");
    for (int si = 0; si < NS; si++) {
        shape s;
        if (!make_shape(&s, dims[si][0], dims[si][1], 64e6)) {
            printf("cannot allocate weights\n");
            return;
        }
        for (int mode = 0; mode < MODES; mode++) {
            bool bf16 = mode == BF16 || mode == BF16_PRE, pre = mode == F32_PRE || mode == BF16_PRE;
            if (bf16 && !have_bf16) continue;
            if (only_mode >= 0 && mode != only_mode) continue;
            tw_kernels_set_bf16_activations(bf16);
            for (int c = 0; c < s.copies; c++)
                if (pre) tw_kernels_pack_weight(&s.t[c]);
                else tw_kernels_unpack_weight(&s.t[c]);
            int64_t old = tw_kernels_set_gemm_min_tokens(mode == ROWDOT ? INT64_MAX : 2);
            for (int th = 1; th <= max_threads; th++)
                for (int ti = 0; ti < NT; ti++) {
                    int64_t T = Ts[ti];
                    if (quick && T == 2048) continue;
                    double flop = 2.0 * (double)(T * s.N * s.K), cpu, proc;
                    int calls = flop > 2e10 ? 2 : flop > 2e9 ? 3 : 8;
                    double ms = time_matmul_p(pools[th], &s, T, x, y, calls, &cpu, &proc);
                    double gf = flop / ms / 1e6, pk = peak[bf16 ? 1 : 0][th - 1];
                    /* CPU-second rate: this thread's (1 thread), all threads' times th (2) */
                    double cg = th == 1 ? flop / cpu / 1e6 : flop / proc * th / 1e6;
                    printf("%-9s %-3d %5lldx%-5lld %5lld %9.3f %9.1f %6.1f%% %9.1f %6.1f%%\n", modes[mode], th,
                           (long long)s.N, (long long)s.K, (long long)T, ms, gf, 100 * gf / pk, cg, 100 * cg / pk);
                    fflush(stdout);
                }
            tw_kernels_set_gemm_min_tokens(old);
        }
        tw_kernels_set_bf16_activations(false);
        for (int c = 0; c < s.copies; c++) tw_kernels_unpack_weight(&s.t[c]);
        free_shape(&s);
    }
}

int main(int argc, char **argv) {
    bool gemm_only = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = true;
        else if (strcmp(argv[i], "--gemm-only") == 0) gemm_only = true;
        else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) only_mode = atoi(argv[++i]);
    }
    tw_kernels_init();
    printf("cpu: %s\n", tw_cpu_features());
    print_load("at start");
    printf("default path: %s%s%s\n\n", tw_kpath_name(tw_kernels_path()), tw_kernels_note()[0] ? " — " : "",
           tw_kernels_note());
    int max_threads = TW_MIN(2, tw_cpu_count());
    tw_pool *pools[3] = { NULL, tw_pool_new(1), max_threads > 1 ? tw_pool_new(2) : NULL };

    /* peak[0] f32 FMA, peak[1] vdpbf16ps, per thread count; [2] unused */
    double peak[3][2] = { { 1, 1 }, { 1, 1 }, { 1, 1 } };
    if (tw_kpath_supported(TW_KPATH_AVX512))
        for (int th = 1; th <= max_threads; th++) {
            peak[0][th - 1] = measure_peak(pools[th], th, false);
            printf("peak  f32 FMA     %d thread%s  %6.1f GFLOP/s  (register-only loop, per CPU-second)\n", th, th > 1 ? "s" : " ",
                   peak[0][th - 1]);
            if (__builtin_cpu_supports("avx512bf16")) {
                peak[1][th - 1] = measure_peak(pools[th], th, true);
                printf("peak  vdpbf16ps   %d thread%s  %6.1f GFLOP/s\n", th, th > 1 ? "s" : " ", peak[1][th - 1]);
            }
        }
    if (!gemm_only)
        for (int th = 1; th <= max_threads; th++) bench_bandwidth(pools[th], th);
    printf("\n");

    int64_t Tmax = 2048, Kmax = 9216, Nmax = 9216;
    float *x = tw_aligned_alloc(sizeof(float) * (size_t)(Tmax * Kmax));
    float *y = tw_aligned_alloc(sizeof(float) * (size_t)(Tmax * Nmax));
    if (!x || !y) {
        printf("cannot allocate activations\n");
        return 1;
    }
    for (int64_t i = 0; i < Tmax * Kmax; i++) x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    if (!gemm_only) bench_decode(pools, max_threads, x, y);
    printf("\n");
    bench_gemm(pools, max_threads, x, y, peak);
    print_load("at end");
    tw_aligned_free(x);
    tw_aligned_free(y);
    tw_pool_free(pools[1]);
    tw_pool_free(pools[2]);
    return 0;
}
