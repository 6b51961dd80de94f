/*
** tool_avx2bench.c — the avx2 path (machines without AVX-512) measured against what it replaced,
** in one run, on a shared machine:
**   peak:    a register-only 256-bit FMA loop per core, 1 and 2 threads (per CPU-second): the
**            yardstick for the GFLOP/s below;
**   matrix  (T >= 2): GFLOP/s of the packed GEMM (gemm_avx2.c, what tw_matmul runs) against the
**            previous 2 x 4 row-dot tiles (tw_mm_block_avx2 through kernels.c's matmul_simd,
**            reached with tw_kernels_set_gemm_min_tokens), Gemma2-2B MLP and SigLIP so400m shapes,
**            T in {16, 64, 256, 729} (--small adds 2, 5, 8);
**   decode  (T = 1): GB/s of the one-row-at-a-time loop (what tw_matmul runs) against the previous
**            1 x 8 interleaved tiles (copied below) and a plain read of the same matrices.
** Memory bandwidth on the shared machine swings by tens of % between minutes, so every figure is
** the best of several rounds, and the variants being compared run back to back inside each round
** (A, B, A, B ...), not one after the other.
**
** Usage: build/bench/tool_avx2bench [--rounds N] [--small] [--gemm-only] [--decode-only]
**                                   [--dtype bf16|f16|f32] [--threads 1|2]
** Weights are cycled through enough copies (> 64 MB for the GEMM, > 128 MB for decode) that each
** call reads them from memory. The path is forced to avx2 (this CPU may have AVX-512).
*/
#include "kernels.h"

#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int rounds = 3;
static tw_dtype wtype = TW_DT_BF16;

static double thread_cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- peak ------------------------------------------------------------------------------------ */

/* 12 independent 256-bit FMA chains, no memory: more chains than latency x throughput needs */
__attribute__((target("avx2,fma"))) static double fma_loop(int64_t iters) {
    __m256 a[12], m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-3f);
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    for (int64_t n = 0; n < iters; n++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], m, c);
    __m256 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return (double)out[0];
}

typedef struct {
    int64_t iters;
    double sink[64], cpu_ms[64];
} peak_job;

static void peak_task(void *ctx, int64_t i, int tid) {
    peak_job *j = ctx;
    double c0 = thread_cpu_ms();
    j->sink[i & 63] += fma_loop(j->iters);
    j->cpu_ms[i & 63] = thread_cpu_ms() - c0;
}

/* GFLOP/s of `threads` cores running the loop at once, each per CPU-second, summed; best of 5 */
static double measure_peak(tw_pool *pool, int threads) {
    peak_job j = { .iters = 4000000 };
    double flop = (double)j.iters * 12 * 8 * 2, best = 0;
    for (int r = 0; r < 5; r++) {
        tw_pool_run(pool, threads, peak_task, &j);
        double sum = 0;
        for (int i = 0; i < threads; i++) sum += flop / j.cpu_ms[i] / 1e6;
        best = TW_MAX(best, sum);
    }
    return best;
}

/* ---- weights ---------------------------------------------------------------------------------- */

enum { MAX_COPIES = 16 };

typedef struct {
    int64_t N, K;
    int copies;
    void *w[MAX_COPIES];
    tw_tensor t[MAX_COPIES];
} shape;

static bool make_shape(shape *s, int64_t N, int64_t K, double bytes_min) {
    memset(s, 0, sizeof *s);
    s->N = N, s->K = K;
    size_t es = tw_dtype_size(wtype), bytes = es * (size_t)(N * K);
    s->copies = (int)TW_MIN(MAX_COPIES, TW_MAX(1, (int)(bytes_min / (double)bytes + 0.999)));
    uint32_t r = 12345;
    for (int c = 0; c < s->copies; c++) {
        s->w[c] = tw_aligned_alloc(bytes);
        if (!s->w[c]) return false;
        for (int64_t i = 0; i < N * K; i++) {
            r = r * 1664525u + 1013904223u;
            float v = (float)(r >> 8) / 16777216.0f - 0.5f;
            if (wtype == TW_DT_F32) ((float *)s->w[c])[i] = v;
            else if (wtype == TW_DT_F16) ((uint16_t *)s->w[c])[i] = tw_f32_to_f16(v);
            else ((uint16_t *)s->w[c])[i] = tw_f32_to_bf16(v);
        }
        s->t[c] = (tw_tensor){ .name = "w", .type = wtype, .ndim = 2, .shape = { N, K }, .data = s->w[c], .nbytes = bytes };
    }
    return true;
}

static void free_shape(shape *s) {
    for (int c = 0; c < s->copies; c++) tw_aligned_free(s->w[c]);
}

/* ---- the previous decode loop: 1 x 8 tiles, 8 rows interleaved (bf16 only) --------------------- */

/* A copy of the MT = 1 tile of kernels_avx2.c for 8 bf16 rows with K a multiple of 8 (all the
** shapes below), compiled here for AVX2 by attribute. */
__attribute__((target("avx2,fma,f16c"))) static void old_dec_8rows(const uint16_t *w, int64_t ldw, const float *x,
                                                                    int64_t K, float *y) {
    __m256 acc[8];
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t k = 0; k + 8 <= K; k += 8) {
        __m256 xv = _mm256_loadu_ps(x + k);
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            __m128i h = _mm_loadu_si128((const __m128i *)(w + (size_t)r * (size_t)ldw + k));
            __m256 wv = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
            acc[r] = _mm256_fmadd_ps(wv, xv, acc[r]);
        }
    }
    float s[8][8];
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++) _mm256_storeu_ps(s[r], acc[r]);
    for (int r = 0; r < 8; r++) y[r] = s[r][0] + s[r][1] + s[r][2] + s[r][3] + s[r][4] + s[r][5] + s[r][6] + s[r][7];
}

typedef struct {
    const uint8_t *w;   /* [N, K] */
    const float *x;
    float *y;
    int64_t N, K, NB;
    int what;           /* 0: read, 1: read with software prefetch, 2: the old decode tiles */
    uint64_t sink[64];
} dec_job;

/* plain read of rows [n0, n0 + nb): 256-bit loads into 4 independent sums; with prefetch 8 KB
** ahead (the decode loop's distance) or without, whichever is faster is the yardstick */
__attribute__((target("avx2"))) static uint64_t read_rows(const uint8_t *p, size_t bytes, bool pf) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    size_t i = 0;
    for (; i + 128 <= bytes; i += 128) {
        if (pf) {
            _mm_prefetch((const char *)(p + i + 8192), _MM_HINT_T0);
            _mm_prefetch((const char *)(p + i + 8192 + 64), _MM_HINT_T0);
        }
        a = _mm256_add_epi64(a, _mm256_load_si256((const __m256i *)(p + i)));
        b = _mm256_add_epi64(b, _mm256_load_si256((const __m256i *)(p + i + 32)));
        c = _mm256_add_epi64(c, _mm256_load_si256((const __m256i *)(p + i + 64)));
        d = _mm256_add_epi64(d, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    uint64_t s[4];
    _mm256_storeu_si256((__m256i *)s, _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d)));
    return s[0] + s[1] + s[2] + s[3];
}

static void dec_task(void *ctx, int64_t i, int tid) {
    dec_job *j = ctx;
    int64_t n0 = i * j->NB, nb = TW_MIN(j->NB, j->N - n0);
    size_t rb = tw_dtype_size(wtype) * (size_t)j->K;
    if (j->what < 2) {
        j->sink[tid & 63] += read_rows(j->w + (size_t)n0 * rb, (size_t)nb * rb, j->what == 1);
        return;
    }
    for (int64_t n = n0; n < n0 + nb; n += 8)
        old_dec_8rows((const uint16_t *)(j->w + (size_t)n * rb), j->K, j->x, j->K, j->y + n);
}

/* ---- timing ----------------------------------------------------------------------------------- */

typedef struct {
    double wall, cpu;   /* best ms per call: wall clock, CPU time (see below) */
} best_ms;

/* One measurement: `calls` calls cycling through the copies; keeps the fastest wall-clock call and
** (1 thread) the least CPU time of this thread per call: flop / cpu is what the core does per
** second it runs, even when the scheduler takes it away now and then. With 2 threads only the wall
** clock is kept: the process CPU clock counts a worker thread's running time only at scheduler
** ticks, so for calls of a few ms it undercounts by up to half (rates above the peak). */
enum { GEMM, ROWDOT, DEC_NEW, DEC_OLD, READ, READ_PF };

static void run_once(int what, tw_pool *pool, shape *s, int64_t T, const float *x, float *y, int calls, best_ms *b) {
    int th = tw_pool_size(pool);
    for (int c = 0; c < calls; c++) {
        const tw_tensor *W = &s->t[c % s->copies];
        double t0 = tw_time_ms(), c0 = thread_cpu_ms();
        if (what == GEMM || what == DEC_NEW) {
            tw_matmul(pool, y, x, T, W, NULL);
        } else if (what == ROWDOT) {
            int64_t old = tw_kernels_set_gemm_min_tokens(INT64_MAX);   /* kernels.c's row-dot tiles */
            tw_matmul(pool, y, x, T, W, NULL);
            tw_kernels_set_gemm_min_tokens(old);
        } else {
            /* decode's task split (kernels.c, T = 1): about 8 tasks per thread of at most 256 rows */
            dec_job j = { .w = W->data, .x = x, .y = y, .N = s->N, .K = s->K, .what = what == DEC_OLD ? 2 : what == READ_PF };
            j.NB = TW_MAX(16, TW_MIN(256, s->N / (8 * th)) / 16 * 16);
            tw_pool_run(pool, (s->N + j.NB - 1) / j.NB, dec_task, &j);
        }
        double wall = tw_time_ms() - t0, cpu = th == 1 ? thread_cpu_ms() - c0 : 1e30;
        b->wall = TW_MIN(b->wall, wall);
        b->cpu = TW_MIN(b->cpu, cpu);
    }
}

static void print_load(const char *when) {
    char buf[128] = "?\n";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (!fgets(buf, sizeof buf, f)) strcpy(buf, "?\n");
        fclose(f);
    }
    printf("load average %s: %s", when, buf);
}

/* ---- matrix products ---------------------------------------------------------------------------- */

static void bench_gemm(tw_pool **pools, int tmin, int tmax, bool small, const float *x, float *y, const double *peak) {
    enum { NS = 5 };
    const int64_t dims[NS][2] = { { 2304, 9216 }, { 9216, 2304 }, { 1152, 1152 }, { 4304, 1152 }, { 1152, 4304 } };
    const int64_t Tbig[] = { 16, 64, 256, 729 }, Tsmall[] = { 2, 5, 8, 16, 64, 256, 729 };
    const int64_t *Ts = small ? Tsmall : Tbig;
    int nT = small ? 7 : 4;
    printf("matrix products, %s weights: GFLOP/s (%% of the peak of as many cores), best of %d rounds:\n"
           "wall clock, and with 1 thread also per CPU-second (what the core does while it runs)\n",
           tw_dtype_name(wtype), rounds);
    printf("%-3s %-11s %5s | %-14s %-14s %6s | %-14s %-14s %6s\n", "th", "W [N,K]", "T", "gemm wall", "rowdot wall",
           "ratio", "gemm cpu-s", "rowdot cpu-s", "ratio");
    for (int si = 0; si < NS; si++) {
        shape s;
        if (!make_shape(&s, dims[si][0], dims[si][1], 64e6)) {
            printf("cannot allocate weights\n");
            return;
        }
        for (int th = tmin; th <= tmax; th++)
            for (int ti = 0; ti < nT; ti++) {
                int64_t T = Ts[ti];
                double flop = 2.0 * (double)(T * s.N * s.K);
                int calls = flop > 2e10 ? 1 : flop > 2e9 ? 2 : 4;
                best_ms g = { 1e30, 1e30 }, r = { 1e30, 1e30 };
                run_once(GEMM, pools[th], &s, T, x, y, 1, &g);   /* warm-up: pool, workspace */
                g = (best_ms){ 1e30, 1e30 };
                for (int round = 0; round < rounds; round++) {
                    /* alternate which goes first, so neither always follows the other */
                    if (round & 1) run_once(ROWDOT, pools[th], &s, T, x, y, calls, &r);
                    run_once(GEMM, pools[th], &s, T, x, y, calls, &g);
                    if (!(round & 1)) run_once(ROWDOT, pools[th], &s, T, x, y, calls, &r);
                }
                double gw = flop / g.wall / 1e6, rw = flop / r.wall / 1e6, pk = peak[th];
                printf("%-3d %5lldx%-5lld %5lld | %6.1f (%3.0f%%) %6.1f (%3.0f%%) %5.2fx", th, (long long)s.N,
                       (long long)s.K, (long long)T, gw, 100 * gw / pk, rw, 100 * rw / pk, gw / rw);
                if (th == 1) {
                    double gc = flop / g.cpu / 1e6, rc = flop / r.cpu / 1e6;
                    printf(" | %6.1f (%3.0f%%) %6.1f (%3.0f%%) %5.2fx", gc, 100 * gc / pk, rc, 100 * rc / pk, gc / rc);
                }
                printf("\n");
                fflush(stdout);
            }
        free_shape(&s);
    }
}

/* ---- decode ------------------------------------------------------------------------------------- */

static void bench_decode(tw_pool **pools, int tmin, int tmax, const float *x, float *y) {
    enum { NS = 2 };
    const int64_t dims[NS][2] = { { 9216, 2304 }, { 2304, 9216 } };   /* gate/up, down of Gemma2-2B */
    shape sh[NS];
    for (int si = 0; si < NS; si++)
        if (!make_shape(&sh[si], dims[si][0], dims[si][1], 128e6)) {
            printf("cannot allocate weights\n");
            return;
        }
    bool old_ok = wtype == TW_DT_BF16;
    best_ms b[3][NS][3];   /* [threads][shape][new, old, read] */
    for (int th = 0; th < 3; th++)
        for (int si = 0; si < NS; si++)
            for (int v = 0; v < 3; v++) b[th][si][v] = (best_ms){ 1e30, 1e30 };
    for (int round = 0; round < 2 * rounds; round++)
        for (int th = tmin; th <= tmax; th++)
            for (int si = 0; si < NS; si++) {
                shape *s = &sh[si];
                int calls = 2 * s->copies;
                /* rotate the order each round */
                for (int v0 = 0; v0 < 3; v0++) {
                    int v = (v0 + round) % 3;
                    if (v == 0) run_once(DEC_NEW, pools[th], s, 1, x, y, calls, &b[th][si][0]);
                    if (v == 1 && old_ok) run_once(DEC_OLD, pools[th], s, 1, x, y, calls, &b[th][si][1]);
                    if (v == 2) {
                        run_once(READ, pools[th], s, 1, x, y, calls, &b[th][si][2]);
                        run_once(READ_PF, pools[th], s, 1, x, y, calls, &b[th][si][2]);
                    }
                }
            }
    printf("decode (T = 1), %s weights: GB/s of weights, best of %d rounds (wall clock)\n", tw_dtype_name(wtype),
           2 * rounds);
    printf("%-3s %-11s | %8s %8s %8s | %7s %7s\n", "th", "W [N,K]", "row_dec", "1x8 old", "read", "new/rd", "old/rd");
    for (int th = tmin; th <= tmax; th++)
        for (int si = 0; si < NS; si++) {
            double bytes = (double)tw_dtype_size(wtype) * (double)(sh[si].N * sh[si].K);
            double nw = bytes / b[th][si][0].wall / 1e6, od = bytes / b[th][si][1].wall / 1e6,
                   rd = bytes / b[th][si][2].wall / 1e6;
            printf("%-3d %5lldx%-5lld | %8.1f %8.1f %8.1f | %6.0f%% %6.0f%%\n", th, (long long)sh[si].N,
                   (long long)sh[si].K, nw, old_ok ? od : 0.0, rd, 100 * nw / rd, old_ok ? 100 * od / rd : 0.0);
        }
    for (int si = 0; si < NS; si++) free_shape(&sh[si]);
}

int main(int argc, char **argv) {
    bool gemm = true, decode = true, small = false;
    int tmin = 1, tmax = TW_MIN(2, tw_cpu_count());
    for (int i = 1; i < argc; i++) {
        int v = i + 1 < argc ? atoi(argv[i + 1]) : 0;   /* the option's number, if it takes one */
        if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) rounds = TW_MAX(1, v), i++;
        else if (strcmp(argv[i], "--small") == 0) small = true;
        else if (strcmp(argv[i], "--gemm-only") == 0) decode = false;
        else if (strcmp(argv[i], "--decode-only") == 0) gemm = false;
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) tmin = tmax = TW_MAX(1, TW_MIN(tmax, v)), i++;
        else if (strcmp(argv[i], "--dtype") == 0 && i + 1 < argc) {
            const char *d = argv[++i];
            wtype = strcmp(d, "f32") == 0 ? TW_DT_F32 : strcmp(d, "f16") == 0 ? TW_DT_F16 : TW_DT_BF16;
        } else {
            fprintf(stderr, "usage: %s [--rounds N] [--small] [--gemm-only] [--decode-only] [--dtype bf16|f16|f32] "
                            "[--threads 1|2]\n", argv[0]);
            return 2;
        }
    }
    if (!tw_kernels_force(TW_KPATH_AVX2)) {
        printf("avx2 path not available: %s\n", tw_kpath_missing(TW_KPATH_AVX2));
        return 0;
    }
    printf("cpu: %s\npath: %s\n", tw_cpu_features(), tw_kpath_name(tw_kernels_path()));
    print_load("at start");
    tw_pool *pools[3] = { NULL, tw_pool_new(1), tmax > 1 ? tw_pool_new(2) : NULL };
    double peak[3] = { 1, 1, 1 };
    for (int th = 1; th <= tmax; th++) {
        peak[th] = measure_peak(pools[th], th);
        printf("peak  256-bit FMA  %d thread%s  %6.1f GFLOP/s  (register-only loop, per CPU-second)\n", th,
               th > 1 ? "s" : " ", peak[th]);
    }
    printf("\n");
    int64_t Tmax = 729, Kmax = 9216, Nmax = 9216;
    float *x = tw_aligned_alloc(sizeof(float) * (size_t)(Tmax * Kmax));
    float *y = tw_aligned_alloc(sizeof(float) * (size_t)(Tmax * Nmax));
    if (!x || !y) {
        printf("cannot allocate activations\n");
        return 1;
    }
    for (int64_t i = 0; i < Tmax * Kmax; i++) x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    if (decode) {
        bench_decode(pools, tmin, tmax, x, y);
        printf("\n");
    }
    if (gemm) bench_gemm(pools, tmin, tmax, small, x, y, peak);
    print_load("at end");
    tw_aligned_free(x);
    tw_aligned_free(y);
    tw_pool_free(pools[1]);
    tw_pool_free(pools[2]);
    return 0;
}
