/*
** tool_kbench.c — micro-benchmark of the matmul paths on Gemma2-2B shapes (bf16 weights):
**   decode  (T = 1):   GB/s of weight streaming, to compare with the machine's read bandwidth;
**   prefill (T = 512): GFLOP/s.
** for every path the CPU can run and for 1 and 2 threads, plus a plain read-bandwidth figure
** (sum over a 1 GB buffer) and memcpy, so the decode ratio is visible.
**
** Usage: build/tests/tool_kbench [--quick]     (--quick: smaller buffers and fewer repeats)
** Decode cycles through several copies of the weights (more than the L3 holds), as a real
** forward pass through 26 layers would, so every call reads its weights from memory.
*/
#include "kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static bool quick;

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

/* ---- matmul ---------------------------------------------------------------------------------- */

enum { COPIES = 8 };   /* 8 x 42 MB of weights: far more than the L3 */

typedef struct {
    int64_t N, K;
    uint16_t *w[COPIES];
    tw_tensor t[COPIES];
} shape;

static bool make_shape(shape *s, int64_t N, int64_t K, int copies) {
    memset(s, 0, sizeof *s);
    s->N = N, s->K = K;
    uint32_t r = 12345;
    for (int c = 0; c < copies; c++) {
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
    for (int c = 0; c < COPIES; c++) tw_aligned_free(s->w[c]);
}

static double thread_cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ms per call: the fastest of `calls` timed calls, cycling through the copies. The fastest, not
** the mean, because on a shared machine other processes take the cores now and then, and the
** fastest call is the one that ran alone. *cpu_ms gets this thread's CPU time for that call: with
** a 1-thread pool all the work runs on this thread, so it is the time the kernel needed even when
** the scheduler took the core away in between. */
static double time_matmul(tw_pool *pool, shape *s, int copies, int64_t T, const float *x, float *y, int calls,
                          double *cpu_ms) {
    double best = 1e30;
    *cpu_ms = 1e30;
    tw_matmul(pool, y, x, T, &s->t[0], NULL);   /* warm-up: pool threads, page tables */
    for (int c = 0; c < calls; c++) {
        double t0 = tw_time_ms(), c0 = thread_cpu_ms();
        tw_matmul(pool, y, x, T, &s->t[c % copies], NULL);
        best = TW_MIN(best, tw_time_ms() - t0);
        *cpu_ms = TW_MIN(*cpu_ms, thread_cpu_ms() - c0);
    }
    return best;
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

int main(int argc, char **argv) {
    quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    tw_kernels_init();
    printf("cpu: %s\n", tw_cpu_features());
    print_load("at start");
    printf("default path: %s%s%s\n\n", tw_kpath_name(tw_kernels_path()), tw_kernels_note()[0] ? " — " : "",
           tw_kernels_note());
    int max_threads = TW_MIN(2, tw_cpu_count());
    tw_pool *pools[3] = { NULL, tw_pool_new(1), max_threads > 1 ? tw_pool_new(2) : NULL };

    for (int th = 1; th <= max_threads; th++) bench_bandwidth(pools[th], th);
    printf("\n");

    int copies = quick ? 2 : COPIES;
    shape shapes[2];
    const int64_t dims[2][2] = { { 9216, 2304 }, { 2304, 9216 } };   /* [N, K]: gate/up, down */
    int64_t Tp = 512, Kmax = 9216, Nmax = 9216;
    float *x = tw_aligned_alloc(sizeof(float) * (size_t)(Tp * Kmax));
    float *y = tw_aligned_alloc(sizeof(float) * (size_t)(Tp * Nmax));
    for (int64_t i = 0; i < Tp * Kmax; i++) x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    for (int si = 0; si < 2; si++)
        if (!make_shape(&shapes[si], dims[si][0], dims[si][1], copies)) {
            printf("cannot allocate weights\n");
            return 1;
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
                double ms = time_matmul(pools[th], s, copies, 1, x, y, quick ? 8 : 48, &cpu);
                printf("%-7s %-7d %5lldx%-10lld %8d %10.3f %7.1f GB/s", tw_kpath_name((tw_kpath)p), th,
                       (long long)s->N, (long long)s->K, 1, ms, bytes / ms / 1e6);
                if (th == 1) printf("     (%.1f per CPU-second)", bytes / cpu / 1e6);
                printf("\n");
                /* the plain C path would take minutes at T = 512: it is timed on 8 tokens */
                int64_t T = p == TW_KPATH_REF ? 8 : (quick ? 64 : Tp);
                ms = time_matmul(pools[th], s, copies, T, x, y, quick ? 2 : 3, &cpu);
                double flop = 2.0 * (double)(T * s->N * s->K);
                printf("%-7s %-7d %5lldx%-10lld %8lld %10.3f %7.1f GFLOP/s", tw_kpath_name((tw_kpath)p), th,
                       (long long)s->N, (long long)s->K, (long long)T, ms, flop / ms / 1e6);
                if (th == 1) printf("  (%.1f per CPU-second)", flop / cpu / 1e6);
                printf("\n");
            }
    }
    print_load("at end");
    for (int si = 0; si < 2; si++) free_shape(&shapes[si]);
    tw_aligned_free(x);
    tw_aligned_free(y);
    tw_pool_free(pools[1]);
    tw_pool_free(pools[2]);
    return 0;
}
