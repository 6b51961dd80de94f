/*
** test_pool.c — the thread pool: every item runs exactly once on a valid thread id, whatever the
** job sizes and their order; calls from several threads are serialised; an idle pool sleeps (its
** bounded spin after a job must not turn into busy-waiting); freeing a pool right after a job
** (workers still spinning) or long after (workers asleep) returns; and par.c matches the
** single-threaded kernels bit for bit.
*/
#include "par.h"
#include "testhelp.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

enum { MAXN = 4096 };

typedef struct {
    _Atomic int hits[MAXN];
    _Atomic int bad_tid;
    int threads;
} job;

static void count_task(void *ctx, int64_t i, int tid) {
    job *j = ctx;
    atomic_fetch_add(&j->hits[i], 1);
    if (tid < 0 || tid >= j->threads) atomic_fetch_add(&j->bad_tid, 1);
}

static bool run_and_check(tw_pool *p, job *j, int64_t n) {
    for (int64_t i = 0; i < n; i++) atomic_store(&j->hits[i], 0);
    tw_pool_run(p, n, count_task, j);
    for (int64_t i = 0; i < n; i++)
        if (atomic_load(&j->hits[i]) != 1) return false;
    return atomic_load(&j->bad_tid) == 0;
}

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void sleep_ms(int ms) {
    struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&t, NULL);
}

typedef struct { tw_pool *p; job *j; int ok; } caller_arg;

static void *caller(void *arg) {
    caller_arg *c = arg;
    for (int r = 0; r < 300; r++)
        if (!run_and_check(c->p, c->j, 1 + r % 97)) c->ok = 0;
    return NULL;
}

/* par.c: the pool versions of the element-wise and per-row steps are bit-identical to the
** single-threaded kernels, for sizes around the chunk boundaries and any thread count. */
static void check_par(void) {
    const int64_t sizes[] = { 1, 7, 65535, 65536, 65537, 200003 };
    const int64_t rows[][2] = { { 1, 2304 }, { 29, 1152 }, { 100, 2304 }, { 3, 70000 } };
    enum { MAXE = 240000 };
    float *x = malloc(sizeof(float) * MAXE), *u = malloc(sizeof(float) * MAXE), *w = malloc(sizeof(float) * 70000);
    float *b = malloc(sizeof(float) * 70000), *r1 = malloc(sizeof(float) * MAXE), *r2 = malloc(sizeof(float) * MAXE);
    uint32_t seed = 12345;
    for (int64_t i = 0; i < MAXE; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((int32_t)(seed >> 8) % 20000) / 1000.0f - 10.0f;
        u[i] = (float)(i % 97) / 31.0f - 1.5f;
    }
    for (int64_t i = 0; i < 70000; i++) w[i] = (float)(i % 13) / 7.0f - 0.9f, b[i] = (float)(i % 5) * 0.1f;
    for (int threads = 1; threads <= 3; threads++) {
        tw_pool *p = tw_pool_new(threads);
        int bad = 0;
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            int64_t n = sizes[k];
            memcpy(r1, x, sizeof(float) * (size_t)n), memcpy(r2, x, sizeof(float) * (size_t)n);
            tw_par_add(p, r1, u, n);
            for (int64_t i = 0; i < n; i++) r2[i] += u[i];
            bad += memcmp(r1, r2, sizeof(float) * (size_t)n) != 0;
            memcpy(r1, x, sizeof(float) * (size_t)n), memcpy(r2, x, sizeof(float) * (size_t)n);
            tw_par_gelu_mul(p, r1, u, n);
            tw_gelu_tanh_array(r2, r2, n);
            for (int64_t i = 0; i < n; i++) r2[i] *= u[i];
            bad += memcmp(r1, r2, sizeof(float) * (size_t)n) != 0;
            memcpy(r1, x, sizeof(float) * (size_t)n), memcpy(r2, x, sizeof(float) * (size_t)n);
            tw_par_gelu_mul(p, r1, NULL, n);
            tw_gelu_tanh_array(r2, r2, n);
            bad += memcmp(r1, r2, sizeof(float) * (size_t)n) != 0;
        }
        for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
            int64_t T = rows[k][0], n = rows[k][1];
            tw_par_layernorm(p, r1, x, w, b, T, n, 1e-6f);
            tw_layernorm(r2, x, w, b, T, n, 1e-6f);
            bad += memcmp(r1, r2, sizeof(float) * (size_t)(T * n)) != 0;
            tw_par_rmsnorm_1p(p, r1, x, w, T, n, 1e-6f);
            tw_rmsnorm_1p(r2, x, w, T, n, 1e-6f);
            bad += memcmp(r1, r2, sizeof(float) * (size_t)(T * n)) != 0;
        }
        CHECK(bad == 0, "%d threads: %d par.c results differ from the single-threaded kernels", threads, bad);
        tw_pool_free(p);
    }
    free(x), free(u), free(w), free(b), free(r1), free(r2);
}

/* ---- claims: a background thread's jobs wait while the pool is claimed ---- */

typedef struct {
    tw_pool    *p;
    atomic_int  started;   /* background jobs begun */
    atomic_bool stop;
} bg_arg;

static void slow_task(void *ctx, int64_t i, int tid) {
    (void)ctx, (void)i, (void)tid;
    sleep_ms(1);
}

static void *background(void *arg) {
    bg_arg *b = arg;
    tw_pool_set_background(true);
    while (!atomic_load(&b->stop)) {
        atomic_fetch_add(&b->started, 1);
        tw_pool_run(b->p, 4, slow_task, NULL);
    }
    return NULL;
}

static void check_claims(void) {
    bg_arg b = { .p = tw_pool_new(2) };
    atomic_init(&b.started, 0);
    atomic_init(&b.stop, false);
    pthread_t t;
    pthread_create(&t, NULL, background, &b);
    while (atomic_load(&b.started) < 3) sleep_ms(1);
    tw_pool_claim(b.p);
    tw_pool_claim(b.p);   /* claims nest */
    sleep_ms(10);         /* the background job that was running has ended, the next one waits */
    int before = atomic_load(&b.started);
    static job j;
    j.threads = 2;
    CHECK(run_and_check(b.p, &j, 1000), "the claimer's own jobs run while it holds the claim");
    tw_pool_release(b.p);
    sleep_ms(30);
    int during = atomic_load(&b.started);
    CHECK(during - before <= 1, "no background job starts while the pool is claimed (%d started)", during - before);
    tw_pool_release(b.p);
    int64_t until = 0;
    while (atomic_load(&b.started) < during + 3 && until++ < 5000) sleep_ms(1);
    CHECK(atomic_load(&b.started) >= during + 3, "background jobs resume after the last release");
    atomic_store(&b.stop, true);
    pthread_join(t, NULL);
    tw_pool_free(b.p);
}

int main(void) {
    check_claims();
    static job j;
    check_par();
    for (int threads = 1; threads <= 4; threads++) {
        tw_pool *p = tw_pool_new(threads);
        CHECK(p && tw_pool_size(p) == threads, "pool of %d", threads);
        if (!p) continue;
        j.threads = threads;
        int bad = 0;
        /* back to back (workers spinning) and with pauses (workers asleep) */
        for (int r = 0; r < 2000; r++) {
            int64_t n = (r * 37) % 300 + 1;
            if (!run_and_check(p, &j, n)) bad++;
            if (r % 500 == 499) sleep_ms(5);
        }
        CHECK(bad == 0, "%d threads: %d jobs ran an item not exactly once or on a bad thread id", threads, bad);
        CHECK(run_and_check(p, &j, MAXN), "%d threads: a large job", threads);
        tw_pool_free(p);   /* right after a job: workers still spinning */
    }

    /* two callers at once: tw_pool_run serialises them */
    tw_pool *p = tw_pool_new(3);
    static job j2;
    j.threads = j2.threads = 3;
    caller_arg a = { p, &j, 1 }, b = { p, &j2, 1 };
    pthread_t ta, tb;
    pthread_create(&ta, NULL, caller, &a);
    pthread_create(&tb, NULL, caller, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(a.ok && b.ok, "concurrent callers");

    /* idle: after a job, the workers spin at most ~50 us each, then sleep. 300 ms of idling
    ** with a busy-waiting worker would cost ~300 ms of CPU; allow 30 ms (sanitizer builds,
    ** a loaded machine). */
    run_and_check(p, &j, 64);
    double c0 = cpu_seconds();
    sleep_ms(300);
    double idle = cpu_seconds() - c0;
    CHECK(idle < 0.03, "an idle pool used %.1f ms of CPU in 300 ms", idle * 1e3);
    tw_pool_free(p);   /* long after a job: workers asleep */

    CHECK(tw_pool_size(NULL) == 1, "no pool is one thread");
    tw_pool_run(NULL, 5, count_task, &j);   /* no pool: runs inline */
    return th_report();
}
