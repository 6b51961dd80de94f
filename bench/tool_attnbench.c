/*
** tool_attnbench.c — attention timings on the real models' shapes, for every path the CPU can run,
** several blockings, 1 and 2 threads:
**   siglip   one 384x384 tile: 729 tokens, 16 heads of 72, non-causal, q|k|v interleaved [T, 3C]
**   p512     Gemma2-2B prefill of 512 tokens (8 heads, 4 kv heads, D 256, softcap 50), run as the
**            model runs it: chunks of 256 queries against the growing cache
**   p5000    the same for 5000 tokens; the figure is the mean of a global layer and a sliding one
**            (window 4096): the 2B alternates them
**   d128, d4096   decode: one query over a cache of 128 / 4096 positions; the caches of 8 layers
**            are cycled (256 MB at 4096 in f32), so K and V come from memory as in a real forward
**            pass; with the cache in f32, f16 and bf16 (--kv TYPE: only that one; for the
**            prefill shapes --kv TYPE stores K/V in that type, f32 otherwise)
** Printed: ms per call (per layer for prefill/decode, per tile-layer for siglip), GFLOP/s counting
** 4 * D flops per visible (query, key, head), and for decode GB/s of K/V read and that rate as a
** fraction of the read bandwidth (tw_bench_read_bw, 256 MB, the same thread count) measured in
** the same run just before.
**
** Usage: build/bench/tool_attnbench [--quick] [--ref] [--only NAME] [--kv TYPE] [shape...]
**   --ref: also the plain C loops (slow: minutes for p5000); --only: variants whose name contains
**   NAME; shapes: siglip p512 p5000 d128 d4096 (default all).
*/
#include "attn.h"
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of the whole process (all threads): on a loaded machine wall time measures the
** other processes too, CPU time / threads is what the kernel itself costs. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (2.0 / 16777216.0) - 1.0);
}

static float *rand_buf(size_t n, float amp) {
    float *b = malloc(sizeof(float) * n);
    if (!b) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) b[i] = frand() * amp;
    return b;
}

static bool quick;
static tw_kv_type kv_type;   /* decode shapes: the cache's element type */
static int n_calls;       /* timed units run_shape ran, for the CPU time per unit */
static double cpu_acc;   /* CPU seconds inside the timed regions                 */

typedef struct {
    const char *name;
    tw_kpath path;     /* TW_KPATH_COUNT: tw_attention (active path, its own plan) */
    tw_attn_plan plan;
    bool own_plan;     /* use tw_attention_plan */
} variant;

/* ---- one shape ------------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int kind;          /* 0 siglip, 1 prefill, 2 decode */
    int32_t T;         /* tokens (prefill), context (decode) */
} shape;

enum { NH = 8, NKV = 4, DG = 256, CHUNK = 256, DECODE_LAYERS = 8 };

/* time one call sequence of the shape; returns seconds per "unit" and fills flops, bytes */
static double run_shape(tw_pool *pool, const shape *sh, const variant *va, double *flops, double *bytes) {
    int reps = quick ? 1 : 3;
    double best = 1e30;
    *flops = 0, *bytes = 0;
    if (sh->kind == 0) {
        int32_t T = 729, H = 16, D = 72, C = H * D;
        float *qkv = rand_buf((size_t)T * 3 * C, 1.0f), *out = malloc(sizeof(float) * (size_t)T * C);
        tw_attn_args a = { .q = qkv, .ldq = 3 * C, .k = qkv + C, .ldk = 3 * C, .v = qkv + 2 * C, .ldv = 3 * C,
                           .out = out, .ldo = C, .Tq = T, .Tk = T, .n_head = H, .n_kv = H, .D = D,
                           .scale = 1.0f / sqrtf(72.0f) };
        tw_attn_plan p = va->own_plan ? tw_attention_plan(&a, tw_pool_size(pool)) : va->plan;
        n_calls = reps;
        for (int r = 0; r < reps; r++) {
            double t0 = now(), c0 = cpu_now();
            if (va->path == TW_KPATH_COUNT) tw_attention(pool, &a);
            else tw_attention_with(pool, &a, va->path, p);
            double dt = now() - t0;
            cpu_acc += cpu_now() - c0;
            best = dt < best ? dt : best;
        }
        *flops = 4.0 * D * (double)T * T * H;
        free(qkv), free(out);
        return best;
    }
    if (sh->kind == 1) {   /* chunked prefill, a global and a sliding layer */
        int32_t T = sh->T, kvd = NKV * DG;
        float *q = rand_buf((size_t)CHUNK * NH * DG, 3.0f), *out = malloc(sizeof(float) * (size_t)CHUNK * NH * DG);
        float *k = rand_buf((size_t)T * kvd, 1.0f), *v = rand_buf((size_t)T * kvd, 1.0f);
        tw_kv_store(k, kv_type, k, (int64_t)T * kvd);   /* in place, front half when 16-bit */
        tw_kv_store(v, kv_type, v, (int64_t)T * kvd);
        int n_layers = T > 4096 ? 2 : 1;
        double total = 0;
        n_calls = (quick ? 1 : 2) * n_layers;
        for (int r = 0; r < (quick ? 1 : 2); r++) {
            double t0 = now(), c0 = cpu_now(), fl = 0;
            for (int ly = 0; ly < n_layers; ly++)
                for (int32_t q0 = 0; q0 < T; q0 += CHUNK) {
                    int32_t tc = TW_MIN(CHUNK, T - q0);
                    tw_attn_args a = { .q = q, .ldq = NH * DG, .k = k, .ldk = kvd, .v = v, .ldv = kvd, .kv_type = kv_type, .out = out,
                                       .ldo = NH * DG, .Tq = tc, .Tk = q0 + tc, .n_head = NH, .n_kv = NKV, .D = DG,
                                       .scale = 1.0f / 16.0f, .softcap = 50.0f, .causal = true, .q_pos = q0,
                                       .window = ly == 1 ? 4096 : 0 };
                    tw_attn_plan p = va->own_plan ? tw_attention_plan(&a, tw_pool_size(pool)) : va->plan;
                    if (va->path == TW_KPATH_COUNT) tw_attention(pool, &a);
                    else tw_attention_with(pool, &a, va->path, p);
                    for (int32_t t = 0; t < tc; t++) {
                        int32_t pos = q0 + t, lo = a.window ? TW_MAX(0, pos - a.window + 1) : 0;
                        fl += 4.0 * DG * NH * (double)(pos + 1 - lo);
                    }
                }
            double dt = (now() - t0) / n_layers;
            cpu_acc += cpu_now() - c0;
            total = r == 0 || dt < total ? dt : total;
            *flops = fl / n_layers;
        }
        free(q), free(out), free(k), free(v);
        return total;
    }
    /* decode over DECODE_LAYERS caches */
    int32_t ctx = sh->T, kvd = NKV * DG, L = quick ? 2 : DECODE_LAYERS;
    float *q = rand_buf((size_t)NH * DG, 3.0f), *out = malloc(sizeof(float) * NH * DG);
    float *kv = rand_buf((size_t)L * 2 * ctx * kvd, 1.0f);
    if (kv_type != TW_KV_F32) tw_kv_store(kv, kv_type, kv, (int64_t)L * 2 * ctx * kvd);   /* in place, front half */
    size_t es = tw_kv_size(kv_type);
    int n_steps = quick ? 4 : 32;
    n_calls = n_steps;
    double t0 = now(), c0 = cpu_now();
    for (int s = 0; s < n_steps; s++) {
        int ly = s % L;
        const char *k = (const char *)kv + (size_t)ly * 2 * ctx * kvd * es, *v = k + (size_t)ctx * kvd * es;
        tw_attn_args a = { .q = q, .ldq = NH * DG, .k = k, .ldk = kvd, .v = v, .ldv = kvd, .kv_type = kv_type,
                           .out = out, .ldo = NH * DG,
                           .Tq = 1, .Tk = ctx, .n_head = NH, .n_kv = NKV, .D = DG, .scale = 1.0f / 16.0f,
                           .softcap = 50.0f, .causal = true, .q_pos = ctx - 1 };
        tw_attn_plan p = va->own_plan ? tw_attention_plan(&a, tw_pool_size(pool)) : va->plan;
        if (va->path == TW_KPATH_COUNT) tw_attention(pool, &a);
        else tw_attention_with(pool, &a, va->path, p);
    }
    double dt = (now() - t0) / n_steps;
    cpu_acc += cpu_now() - c0;
    *flops = 4.0 * DG * NH * (double)ctx;
    *bytes = 2.0 * (double)es * (double)ctx * kvd;
    free(q), free(out), free(kv);
    return dt;
}

int main(int argc, char **argv) {
    const shape shapes[] = {
        { "siglip", 0, 729 }, { "p512", 1, 512 }, { "p5000", 1, 5000 }, { "d128", 2, 128 }, { "d4096", 2, 4096 },
    };
    const char *want[8];
    int n_want = 0;
    bool with_ref = false, kv_only = false;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = true;
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
        else if (strcmp(argv[i], "--ref") == 0) with_ref = true;
        else if (strcmp(argv[i], "--kv") == 0 && i + 1 < argc) {
            if (tw_kv_type_parse(argv[++i], &kv_type) != TW_OK) return 2;
            kv_only = true;
        }
        else if (n_want < 8) want[n_want++] = argv[i];
    }
    const variant variants[] = {
        { "ref", TW_KPATH_REF, { 0, 0, false, 0 }, false },
        { "avx2 auto", TW_KPATH_AVX2, { 0, 0, false, 0 }, true },
        { "avx512 auto", TW_KPATH_AVX512, { 0, 0, false, 0 }, true },
        { "avx512 rows bq64", TW_KPATH_AVX512, { 64, 0, false, 0 }, false },
        { "avx512 rows bq96", TW_KPATH_AVX512, { 96, 0, false, 0 }, false },
        { "avx512 flash 32x256", TW_KPATH_AVX512, { 32, 256, false, 0 }, false },
        { "avx512 flash 64x128", TW_KPATH_AVX512, { 64, 128, false, 0 }, false },
        { "avx512 flash 64x256", TW_KPATH_AVX512, { 64, 256, false, 0 }, false },
        { "avx512 flash 96x128", TW_KPATH_AVX512, { 96, 128, false, 0 }, false },
        { "avx512 flash 96x256", TW_KPATH_AVX512, { 96, 256, false, 0 }, false },
        { "avx512 flash 128x128", TW_KPATH_AVX512, { 128, 128, false, 0 }, false },
        { "avx512 flash 192x256", TW_KPATH_AVX512, { 192, 256, false, 0 }, false },
        { "avx512 flash 1x64", TW_KPATH_AVX512, { 1, 64, false, 0 }, false },
        { "avx512 flash 1x256", TW_KPATH_AVX512, { 1, 256, false, 0 }, false },
        { "avx512 flash 1x1024", TW_KPATH_AVX512, { 1, 1024, false, 0 }, false },
        { "avx512 decode split1", TW_KPATH_AVX512, { 1, 0, true, 1 }, false },
        { "avx512 decode split2", TW_KPATH_AVX512, { 1, 0, true, 2 }, false },
        { "avx512 decode split16", TW_KPATH_AVX512, { 1, 0, true, 16 }, false },
        { "tw_attention", TW_KPATH_COUNT, { 0, 0, false, 0 }, true },
    };
    printf("attention benchmark, CPU: %s\n", tw_cpu_features());
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        bool on = n_want == 0;
        for (int w = 0; w < n_want; w++) on |= strcmp(want[w], shapes[s].name) == 0;
        if (!on) continue;
        bool decode_shape = shapes[s].kind == 2, gemma = shapes[s].kind != 0;
        if (!decode_shape && !kv_only) kv_type = TW_KV_F32;   /* prefill: f32 unless --kv says */
        for (int th = 1; th <= 2; th++)
        for (int kt = TW_KV_F32; kt <= (decode_shape ? TW_KV_BF16 : TW_KV_F32); kt++) {
            if (decode_shape && kv_only && kt != (int)kv_type) continue;
            if (decode_shape) kv_type = (tw_kv_type)kt;
            if (gemma && !decode_shape) printf("%-7s %d thr  kv %s\n", shapes[s].name, th, tw_kv_type_name(kv_type));
            tw_pool *pool = tw_pool_new(th);
            double bw = decode_shape ? tw_bench_read_bw(pool, (size_t)256 << 20, 3) : 0;
            if (decode_shape) printf("%-7s %d thr  kv %-4s read bandwidth %.1f GB/s\n", shapes[s].name, th, tw_kv_type_name(kv_type), bw);
            for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
                const variant *va = &variants[v];
                if (va->path < TW_KPATH_COUNT && !tw_kpath_supported(va->path)) continue;
                if (va->path == TW_KPATH_REF && !with_ref) continue;
                if (only && !strstr(va->name, only)) continue;
                bool decode = shapes[s].kind == 2;
                if (decode != (va->plan.bq == 1) && !va->own_plan && va->path != TW_KPATH_REF) continue;
                if (decode && kv_type != TW_KV_F32 && va->path == TW_KPATH_REF && shapes[s].T > 128) continue;
                cpu_acc = 0;
                double fl, by, dt = run_shape(pool, &shapes[s], va, &fl, &by);
                double cpu = cpu_acc / n_calls / th;   /* per call, per thread */
                printf("%-7s %d thr  %-22s %9.3f ms  %7.1f GFLOP/s  cpu/thr %9.3f ms %7.1f GFLOP/s", shapes[s].name,
                       th, va->name, dt * 1e3, fl / dt * 1e-9, cpu * 1e3, fl / cpu * 1e-9);
                if (by > 0) printf("  %6.1f GB/s (%3.0f %%)", by / dt * 1e-9, 100 * by / dt * 1e-9 / bw);
                printf("\n");
                fflush(stdout);
            }
            tw_pool_free(pool);
        }
    }
    return 0;
}
