/*
** pool.c — a persistent thread pool. Workers sleep on a condition variable between jobs, so an
** idle engine uses no CPU (a spinning pool would steal a core from the user's other work on a
** 2-core machine). Work items are handed out with an atomic counter; the caller works too.
*/
#include "tw_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct tw_pool {
    int             n;          /* threads including the caller */
    pthread_t      *threads;    /* n - 1 workers                */
    pthread_mutex_t run_lock;   /* serialises tw_pool_run calls */
    pthread_mutex_t mu;
    pthread_cond_t  wake, done;
    uint64_t        generation; /* bumped for every job         */
    int             active;     /* workers still in the job     */
    bool            quit;
    /* the current job */
    tw_task_fn      fn;
    void           *ctx;
    int64_t         n_items;
    _Atomic int64_t next;
};

typedef struct { tw_pool *p; int tid; } worker_arg;

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
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->generation == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->quit) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        run_items(p, wa.tid);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
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
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t < p->n; t++) pthread_join(p->threads[t - 1], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->run_lock);
    free(p->threads);
    free(p);
}

int tw_pool_size(const tw_pool *p) { return p ? p->n : 1; }

void tw_pool_run(tw_pool *p, int64_t n, tw_task_fn fn, void *ctx) {
    if (n <= 0) return;
    if (!p || p->n == 1 || n == 1) {
        for (int64_t i = 0; i < n; i++) fn(ctx, i, 0);
        return;
    }
    pthread_mutex_lock(&p->run_lock);
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n_items = n;
    atomic_store(&p->next, 0);
    p->active = p->n - 1;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    run_items(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->active > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&p->run_lock);
}
