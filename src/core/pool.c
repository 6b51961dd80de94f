/*
** pool.c — a persistent thread pool. Work items are handed out with an atomic counter; the caller
** works too.
**
** Waiting is spin-then-sleep. After a job a worker polls for the next one for SPIN_NS before it
** sleeps on a condition variable, and the caller polls for the stragglers for as long before it
** sleeps. A decode step runs about 200 small jobs (7 matmuls per layer) separated by a few
** microseconds of single-threaded work (norms, RoPE, attention of one token); waking a sleeping
** thread costs 10-40 us on this VM, as much as the job itself, so a sleeping pool lost 5-10 % of
** decode speed. The spin is bounded, so an idle engine still uses no CPU: a spinning pool would
** steal a core from the user's other work on a 2-core machine.
**
** Sharing: several threads may call tw_pool_run; their jobs take turns (run_lock). A thread marked
** background (tw_pool_set_background) also waits before each job while someone holds a claim
** (tw_pool_claim), so a latency-bound loop (a server's token steps) is delayed by at most one
** background job (a media encode's matmul), not by the whole encode.
*/
#include "tw_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

enum { SPIN_NS = 50000 };   /* 50 us: longer than the gaps inside a forward pass, short when idle */

struct tw_pool {
    int             n;          /* threads including the caller */
    pthread_t      *threads;    /* n - 1 workers                */
    pthread_mutex_t run_lock;   /* serialises tw_pool_run calls */
    pthread_mutex_t mu;
    pthread_cond_t  wake, done;
    _Atomic uint64_t generation; /* bumped for every job (release), after the job's fields */
    _Atomic int     active;     /* workers still in the job     */
    int             sleepers;   /* workers waiting on wake (under mu) */
    _Atomic bool    quit;       /* set under mu, before generation is bumped */
    /* the current job: written before generation is bumped, read after it is seen */
    tw_task_fn      fn;
    void           *ctx;
    int64_t         n_items;
    _Atomic int64_t next;
    /* claims: while one is held, jobs from background threads wait (tw_pool_claim) */
    pthread_mutex_t gate_mu;
    pthread_cond_t  gate_cv;
    int             claims;    /* under gate_mu */
};

/* A background thread's jobs yield to claims (a server's media encodes to its token steps). */
static _Thread_local bool tls_background;

typedef struct { tw_pool *p; int tid; } worker_arg;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Polls until cond(p, arg) holds or SPIN_NS have passed; the clock is read every 64 polls. */
static bool spin_until(bool (*cond)(tw_pool *, uint64_t), tw_pool *p, uint64_t arg) {
    int64_t end = 0;
    for (int i = 0;; i++) {
        if (cond(p, arg)) return true;
        cpu_relax();
        if ((i & 63) == 63) {
            int64_t t = now_ns();
            if (!end) end = t + SPIN_NS;
            else if (t > end) return false;
        }
    }
}

static bool new_job(tw_pool *p, uint64_t seen) {
    return atomic_load_explicit(&p->generation, memory_order_acquire) != seen;
}

static bool job_done(tw_pool *p, uint64_t unused) {
    (void)unused;
    return atomic_load_explicit(&p->active, memory_order_acquire) == 0;
}

static void run_items(tw_pool *p, int tid) {
    for (;;) {
        int64_t i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= p->n_items) break;
        p->fn(p->ctx, i, tid);
    }
}

static void *worker(void *arg) {
    worker_arg wa = *(worker_arg *)arg;
    free(arg);
    tw_pool *p = wa.p;
    uint64_t seen = 0;
    for (;;) {
        if (!spin_until(new_job, p, seen)) {
            /* Sleep. The caller bumps generation before it takes mu to look at sleepers, and we
            ** check generation under mu before waiting, so a wake-up cannot be missed. */
            pthread_mutex_lock(&p->mu);
            p->sleepers++;
            while (!p->quit && !new_job(p, seen)) pthread_cond_wait(&p->wake, &p->mu);
            p->sleepers--;
            bool quit = p->quit;
            pthread_mutex_unlock(&p->mu);
            if (quit) break;
        }
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);
        if (p->quit) break;   /* tw_pool_free bumps generation too; quit is set before it */
        run_items(p, wa.tid);
        if (atomic_fetch_sub_explicit(&p->active, 1, memory_order_acq_rel) == 1) {
            /* the last one out: the caller may be asleep on done (it checks active under mu) */
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

int tw_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

tw_pool *tw_pool_new(int n_threads) {
    if (n_threads <= 0) n_threads = tw_cpu_count();
    tw_pool *p = tw_calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->run_lock, NULL);
    pthread_mutex_init(&p->gate_mu, NULL);
    pthread_cond_init(&p->gate_cv, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = tw_calloc((size_t)n_threads, sizeof(pthread_t));
    if (!p->threads) { free(p); return NULL; }
    for (int t = 1; t < n_threads; t++) {
        worker_arg *wa = tw_malloc(sizeof *wa);
        if (!wa) { p->n = t; break; }
        wa->p = p;
        wa->tid = t;
        if (pthread_create(&p->threads[t - 1], NULL, worker, wa) != 0) {
            free(wa);
            p->n = t;
            break;
        }
    }
    return p;
}

void tw_pool_free(tw_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);   /* wakes spinners */
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t < p->n; t++) pthread_join(p->threads[t - 1], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->run_lock);
    pthread_mutex_destroy(&p->gate_mu);
    pthread_cond_destroy(&p->gate_cv);
    free(p->threads);
    free(p);
}

int tw_pool_size(const tw_pool *p) { return p ? p->n : 1; }

void tw_pool_set_background(bool on) { tls_background = on; }

void tw_pool_claim(tw_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->gate_mu);
    p->claims++;
    pthread_mutex_unlock(&p->gate_mu);
}

void tw_pool_release(tw_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->gate_mu);
    TW_ASSERT(p->claims > 0);
    if (--p->claims == 0) pthread_cond_broadcast(&p->gate_cv);
    pthread_mutex_unlock(&p->gate_mu);
}

void tw_pool_run(tw_pool *p, int64_t n, tw_task_fn fn, void *ctx) {
    if (n <= 0) return;
    if (tls_background && p) {
        /* wait for the claims to end; a job already running is not interrupted, so a claimer
        ** waits at most for one background job */
        pthread_mutex_lock(&p->gate_mu);
        while (p->claims > 0) pthread_cond_wait(&p->gate_cv, &p->gate_mu);
        pthread_mutex_unlock(&p->gate_mu);
    }
    if (!p || p->n == 1 || n == 1) {
        for (int64_t i = 0; i < n; i++) fn(ctx, i, 0);
        return;
    }
    pthread_mutex_lock(&p->run_lock);
    p->fn = fn;
    p->ctx = ctx;
    p->n_items = n;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->active, p->n - 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);   /* publishes the job */
    pthread_mutex_lock(&p->mu);
    if (p->sleepers > 0) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    run_items(p, 0);
    if (!spin_until(job_done, p, 0)) {
        pthread_mutex_lock(&p->mu);
        while (!job_done(p, 0)) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&p->run_lock);
}
