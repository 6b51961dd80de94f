/*
** par.h — the element-wise and per-row steps of a forward pass (norms, GELU, residual adds) spread
** over the pool. Each output element is computed exactly as by the single-threaded kernel it calls
** (kernels.h), only by another thread, so results are bit-identical whatever the thread count.
** Small calls (a decode step's single row) run inline: handing 2,304 floats to another thread
** costs more than computing them.
*/
#ifndef TW_PAR_H
#define TW_PAR_H

#include "kernels.h"

/* x[i] += a[i], i < n */
void tw_par_add(tw_pool *pool, float *x, const float *a, int64_t n);
/* g[i] = gelu_tanh(g[i]) * (u ? u[i] : 1), i < n */
void tw_par_gelu_mul(tw_pool *pool, float *g, const float *u, int64_t n);
/* tw_layernorm / tw_rmsnorm_1p over T rows of n, rows split between threads */
void tw_par_layernorm(tw_pool *pool, float *y, const float *x, const float *w, const float *b, int64_t T, int64_t n,
                      float eps);
void tw_par_rmsnorm_1p(tw_pool *pool, float *y, const float *x, const float *w, int64_t T, int64_t n, float eps);

#endif
