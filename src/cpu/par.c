/*
** par.c — see par.h. Work is cut into chunks of about PAR_CHUNK elements (whole rows for the
** norms): 64K floats is 256 KB, a few tens of microseconds of work, so the pool's hand-over
** (a few microseconds with its spin, src/core/pool.c) stays small beside it.
*/
#include "par.h"

enum { PAR_CHUNK = 65536 };

typedef struct {
    float *y;
    const float *x, *a, *w, *b;
    int64_t n, T, chunk;   /* elements (or rows) per task */
    float eps;
} par_job;

static int64_t tasks_for(int64_t work, int64_t per) { return (work + per - 1) / per; }

static void add_task(void *ctx, int64_t i, int tid) {
    const par_job *j = ctx;
    int64_t lo = i * j->chunk, hi = TW_MIN(j->n, lo + j->chunk);
    for (int64_t k = lo; k < hi; k++) j->y[k] += j->a[k];
}

void tw_par_add(tw_pool *pool, float *x, const float *a, int64_t n) {
    par_job j = { .y = x, .a = a, .n = n, .chunk = PAR_CHUNK };
    tw_pool_run(pool, tasks_for(n, j.chunk), add_task, &j);
}

static void gelu_task(void *ctx, int64_t i, int tid) {
    const par_job *j = ctx;
    int64_t lo = i * j->chunk, hi = TW_MIN(j->n, lo + j->chunk);
    tw_gelu_tanh_array(j->y + lo, j->y + lo, hi - lo);
    if (j->a)
        for (int64_t k = lo; k < hi; k++) j->y[k] *= j->a[k];
}

void tw_par_gelu_mul(tw_pool *pool, float *g, const float *u, int64_t n) {
    par_job j = { .y = g, .a = u, .n = n, .chunk = PAR_CHUNK };
    tw_pool_run(pool, tasks_for(n, j.chunk), gelu_task, &j);
}

static void ln_task(void *ctx, int64_t i, int tid) {
    const par_job *j = ctx;
    int64_t r0 = i * j->chunk, rows = TW_MIN(j->T, r0 + j->chunk) - r0;
    tw_layernorm(j->y + r0 * j->n, j->x + r0 * j->n, j->w, j->b, rows, j->n, j->eps);
}

static void rms_task(void *ctx, int64_t i, int tid) {
    const par_job *j = ctx;
    int64_t r0 = i * j->chunk, rows = TW_MIN(j->T, r0 + j->chunk) - r0;
    tw_rmsnorm_1p(j->y + r0 * j->n, j->x + r0 * j->n, j->w, rows, j->n, j->eps);
}

void tw_par_layernorm(tw_pool *pool, float *y, const float *x, const float *w, const float *b, int64_t T, int64_t n,
                      float eps) {
    par_job j = { .y = y, .x = x, .w = w, .b = b, .n = n, .T = T, .eps = eps };
    j.chunk = TW_MAX(1, PAR_CHUNK / TW_MAX(n, 1));
    tw_pool_run(pool, tasks_for(T, j.chunk), ln_task, &j);
}

void tw_par_rmsnorm_1p(tw_pool *pool, float *y, const float *x, const float *w, int64_t T, int64_t n, float eps) {
    par_job j = { .y = y, .x = x, .w = w, .n = n, .T = T, .eps = eps };
    j.chunk = TW_MAX(1, PAR_CHUNK / TW_MAX(n, 1));
    tw_pool_run(pool, tasks_for(T, j.chunk), rms_task, &j);
}
