/*
** kernels.c — the kernel entry points and the plain C versions every faster path is tested
** against. The faster paths (kernels_avx2.c, kernels_avx512.c) provide row-dot functions that the
** dispatcher below installs at tw_kernels_init().
*/
#include "kernels.h"

#include <math.h>
#include <stdlib.h>

/* ---- dispatch ------------------------------------------------------------------------------- */

/* dot of one weight row (stored type) with an f32 vector of length K */
typedef float (*tw_dot_fn)(const void *w_row, const float *x, int64_t K);

typedef struct tw_kernel_table {
    tw_dot_fn dot[TW_DT_COUNT];
} tw_kernel_table;

static float dot_f32_ref(const void *w, const float *x, int64_t K) {
    const float *a = w;
    float s = 0;
    for (int64_t k = 0; k < K; k++) s += a[k] * x[k];
    return s;
}

static float dot_bf16_ref(const void *w, const float *x, int64_t K) {
    const uint16_t *a = w;
    float s = 0;
    for (int64_t k = 0; k < K; k++) s += tw_bf16_to_f32(a[k]) * x[k];
    return s;
}

static float dot_f16_ref(const void *w, const float *x, int64_t K) {
    const uint16_t *a = w;
    float s = 0;
    for (int64_t k = 0; k < K; k++) s += tw_f16_to_f32(a[k]) * x[k];
    return s;
}

static const tw_kernel_table ref_table = {
    .dot = { [TW_DT_F32] = dot_f32_ref, [TW_DT_F16] = dot_f16_ref, [TW_DT_BF16] = dot_bf16_ref },
};

static const tw_kernel_table *active = &ref_table;
static tw_kpath active_path = TW_KPATH_REF;
static bool inited;

const char *tw_kpath_name(tw_kpath p) {
    static const char *n[] = { "ref", "avx2", "avx512" };
    return (unsigned)p < TW_KPATH_COUNT ? n[p] : "?";
}

bool tw_kpath_supported(tw_kpath p) {
    __builtin_cpu_init();
    switch (p) {
    case TW_KPATH_REF: return true;
    case TW_KPATH_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case TW_KPATH_AVX512: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    default: return false;
    }
}

const char *tw_cpu_features(void) {
    static char buf[256];
    __builtin_cpu_init();
    buf[0] = 0;
    const char *names[] = { "sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                            "avx512vnni", "avx512bf16" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        bool has;
        /* __builtin_cpu_supports needs a literal: spell each out */
        switch (i) {
        case 0: has = __builtin_cpu_supports("sse4.2"); break;
        case 1: has = __builtin_cpu_supports("avx"); break;
        case 2: has = __builtin_cpu_supports("avx2"); break;
        case 3: has = __builtin_cpu_supports("fma"); break;
        case 4: has = __builtin_cpu_supports("f16c"); break;
        case 5: has = __builtin_cpu_supports("avx512f"); break;
        case 6: has = __builtin_cpu_supports("avx512bw"); break;
        case 7: has = __builtin_cpu_supports("avx512vl"); break;
        case 8: has = __builtin_cpu_supports("avx512vnni"); break;
        default: has = __builtin_cpu_supports("avx512bf16"); break;
        }
        if (has) {
            strcat(buf, buf[0] ? " " : "");
            strcat(buf, names[i]);
        }
    }
    return buf;
}

bool tw_kernels_force(tw_kpath p) {
    if (!tw_kpath_supported(p)) return false;
    /* Only the plain path exists so far; faster paths install their tables here. */
    active = &ref_table;
    active_path = TW_KPATH_REF;
    inited = true;
    return p == TW_KPATH_REF;
}

tw_kpath tw_kernels_init(void) {
    if (inited) return active_path;
    tw_kernels_force(TW_KPATH_REF);
    return active_path;
}

tw_kpath tw_kernels_path(void) { return tw_kernels_init(); }

/* ---- matmul ---------------------------------------------------------------------------------- */

typedef struct {
    float *y;
    const float *x;
    int64_t T, N, K;
    const uint8_t *w;
    size_t row_bytes;
    tw_dot_fn dot;
    const float *bias;   /* [N] f32 or NULL */
} matmul_job;

enum { MM_ROWS = 16 };   /* output features per task */

static void matmul_task(void *ctx, int64_t i, int tid) {
    matmul_job *j = ctx;
    int64_t n0 = i * MM_ROWS, n1 = TW_MIN(n0 + MM_ROWS, j->N);
    for (int64_t n = n0; n < n1; n++) {
        const void *row = j->w + (size_t)n * j->row_bytes;
        float b = j->bias ? j->bias[n] : 0.0f;
        for (int64_t t = 0; t < j->T; t++) j->y[t * j->N + n] = j->dot(row, j->x + t * j->K, j->K) + b;
    }
}

void tw_matmul(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const tw_tensor *bias) {
    tw_kernels_init();
    int64_t N = W->shape[0], K = W->shape[W->ndim - 1];
    float *bf = NULL;
    if (bias) {
        bf = malloc(sizeof(float) * (size_t)N);
        if (bf) tw_tensor_to_f32(bias, bf);
    }
    matmul_job j = { y, x, T, N, K, W->data, (size_t)K * tw_dtype_size(W->type), active->dot[W->type], bf };
    tw_pool_run(pool, (N + MM_ROWS - 1) / MM_ROWS, matmul_task, &j);
    free(bf);
}

/* ---- conversions ------------------------------------------------------------------------------ */

static void widen(tw_dtype t, const void *src, float *out, int64_t n) {
    switch (t) {
    case TW_DT_F32: memcpy(out, src, sizeof(float) * (size_t)n); break;
    case TW_DT_BF16: for (int64_t i = 0; i < n; i++) out[i] = tw_bf16_to_f32(((const uint16_t *)src)[i]); break;
    case TW_DT_F16: for (int64_t i = 0; i < n; i++) out[i] = tw_f16_to_f32(((const uint16_t *)src)[i]); break;
    case TW_DT_F64: for (int64_t i = 0; i < n; i++) out[i] = (float)((const double *)src)[i]; break;
    default: for (int64_t i = 0; i < n; i++) out[i] = 0; break;
    }
}

void tw_tensor_row_f32(const tw_tensor *t, int64_t row, float *out) {
    int64_t K = t->shape[t->ndim - 1];
    widen(t->type, (const uint8_t *)t->data + (size_t)row * (size_t)K * tw_dtype_size(t->type), out, K);
}

void tw_tensor_to_f32(const tw_tensor *t, float *out) { widen(t->type, t->data, out, tw_tensor_nelem(t)); }

/* ---- norms and activations ------------------------------------------------------------------- */

void tw_rmsnorm_1p(float *y, const float *x, const float *w, int64_t T, int64_t n, float eps) {
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * n;
        float *yr = y + t * n;
        double ss = 0;   /* double: the sum of 2304 squares, kept exact enough to match torch's f32 */
        for (int64_t i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        float r = 1.0f / sqrtf((float)(ss / (double)n) + eps);
        for (int64_t i = 0; i < n; i++) yr[i] = xr[i] * r * (1.0f + w[i]);
    }
}

void tw_layernorm(float *y, const float *x, const float *w, const float *b, int64_t T, int64_t n, float eps) {
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * n;
        float *yr = y + t * n;
        double mean = 0, var = 0;
        for (int64_t i = 0; i < n; i++) mean += xr[i];
        mean /= (double)n;
        for (int64_t i = 0; i < n; i++) var += ((double)xr[i] - mean) * ((double)xr[i] - mean);
        var /= (double)n;
        float r = 1.0f / sqrtf((float)var + eps), m = (float)mean;
        for (int64_t i = 0; i < n; i++) yr[i] = (xr[i] - m) * r * w[i] + b[i];
    }
}

float tw_gelu_tanh(float x) {
    const float c = 0.7978845608028654f;   /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}

float tw_gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f)); }
