/*
** kernels.c — the kernel paths (which one runs), the float weight types' products on each path
** (tw_matmul_*: the F32/F16/BF16 entries of wtype.c's table, which tw_matmul calls), the norms,
** and the plain C versions every faster path is tested against. Nothing here knows quantized
** blocks (quant.c) or file formats. The SIMD files (kernels_avx2.c, kernels_avx512.c) provide one function
** each, tw_mm_block_*, that multiplies a block of tokens by a block of weight rows; this file
** decides which path runs (CPUID, TOWER_KERNELS, tw_model_params via tw_kernels_configure,
** tw_kernels_force) and cuts a matmul into such
** blocks for the thread pool, sized so that weights stream from memory once and x stays in cache.
** On the avx512 path, products of two tokens or more go instead to the packed-panel GEMM
** (gemm_avx512.c, which cuts its own tasks); this file keeps the optional packed copies of
** weights (tw_kernels_pack_weight) and the bf16-activation switch (TOWER_MATMUL=bf16).
** The amx path is avx512 plus the tile GEMM of gemm_amx.c for BF16 weights; this file decides
** whether it may run (CPUID, XCR0, the kernel's permission, a self-check against avx512).
*/
#include "kernels.h"

#include <cpuid.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- plain C reference ------------------------------------------------------------------- */

/* dot of one weight row (stored type) with an f32 vector of length K, summed left to right */
typedef float (*tw_dot_fn)(const void *w_row, const float *x, int64_t K);

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

/* ---- which path runs ------------------------------------------------------------------------ */

typedef void (*tw_mm_block_fn)(const tw_mm_block *b);

static const struct {
    tw_mm_block_fn block;   /* NULL: the plain C row-dot loop */
    int            mt;      /* tokens per register tile: token blocks are cut at multiples */
} paths[TW_KPATH_COUNT] = {
    [TW_KPATH_REF] = { NULL, 1 },
    [TW_KPATH_AVX2] = { tw_mm_block_avx2, 2 },
    [TW_KPATH_AVX512] = { tw_mm_block_avx512, 6 },
    [TW_KPATH_AMX] = { tw_mm_block_avx512, 6 },   /* tiles only for BF16 with T >= 2: tw_matmul */
};

/* Set once by kernels_choose (pthread_once), later only by tw_kernels_force, which callers use
** at start-up or in tests, not while matmuls run. */
static tw_kpath active_path = TW_KPATH_REF;
static bool bf16_act;   /* TOWER_MATMUL=bf16 / tw_kernels_set_bf16_activations */
static char note[384];
static pthread_once_t choose_once = PTHREAD_ONCE_INIT;

const char *tw_kpath_name(tw_kpath p) {
    static const char *n[] = { "ref", "avx2", "avx512", "amx" };
    return (unsigned)p < TW_KPATH_COUNT ? n[p] : "?";
}

bool tw_kpath_parse(const char *s, tw_kpath *out) {
    for (int p = 0; p < TW_KPATH_COUNT; p++)
        if (s && strcmp(s, tw_kpath_name((tw_kpath)p)) == 0) {
            *out = (tw_kpath)p;
            return true;
        }
    return false;
}

/* ---- the amx path: CPUID, the OS, the kernel's permission, a self-check ------------------------ */

#ifndef ARCH_REQ_XCOMP_PERM
#define ARCH_REQ_XCOMP_PERM 0x1023   /* <asm/prctl.h> of Linux 5.16+ */
#endif
#define XFEATURE_XTILEDATA 18          /* the XSAVE component of the tile data (XCR0 bit 18) */

/* What the CPU has: CPUID.(EAX=7, ECX=0):EDX bit 24 AMX-TILE, bit 22 AMX-BF16. */
static void cpu_amx_bits(bool *tile, bool *bf16) {
    unsigned a, b, c, d;
    *tile = *bf16 = false;
    if (__get_cpuid_max(0, NULL) < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    *tile = d >> 24 & 1;
    *bf16 = d >> 22 & 1;
}

/* Whether the OS saves tile state: XCR0 bits 17 (XTILECFG) and 18 (XTILEDATA). XGETBV exists only
** when CPUID.1:ECX.OSXSAVE (bit 27) says the OS turned XSAVE on. */
static bool os_amx_state(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c >> 27 & 1)) return false;
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    uint64_t xcr0 = (uint64_t)hi << 32 | lo;
    return (xcr0 & (3ull << 17)) == (3ull << 17);
}

/* The product the amx path runs: the real tile GEMM, or a test's emulation of it. */
static tw_gemm_amx_fn amx_gemm = tw_gemm_amx;
static bool amx_substituted;

/* A small product with every kind of tail — T = 33 (two 16-token tiles and one token), N = 40 (two
** and a half 16-row groups), K = 100 (three 32-column steps and 4 columns), with a bias — through
** fn with x in 3, 2 and 1 bf16 parts, against the avx512 GEMM's f32 result, within the bounds of
** docs/kernels.md: (e + 1e-5) sum|w x| + 1e-6 with e = 0, 2^-17, 2^-8. A few microseconds of
** work. Leaves "" in why, or what went wrong. Needs avx512 with avx512bf16. */
static void amx_selfcheck(tw_gemm_amx_fn fn, char *why, size_t cap) {
    enum { T = 33, N = 40, K = 100 };
    float *x = malloc(sizeof(float) * (T * K + N + 2 * T * N));
    uint16_t *w = malloc(sizeof(uint16_t) * N * K);
    float *bias = x + T * K, *y0 = bias + N, *y1 = y0 + T * N;
    why[0] = 0;
    if (!x || !w) {
        snprintf(why, cap, "out of memory");
        goto done;
    }
    uint64_t r = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < T * K + N + N * K; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        float v = (float)((double)(r >> 40) * (2.0 / 16777216.0) - 1.0);   /* uniform in [-1, 1) */
        if (i < T * K + N) x[i] = v;   /* x, then the bias */
        else w[i - T * K - N] = tw_f32_to_bf16(v);
    }
    if (!tw_gemm_avx512(NULL, y0, x, T, N, K, w, TW_DT_BF16, NULL, bias, false)) {
        snprintf(why, cap, "out of memory");
        goto done;
    }
    for (int parts = 3; parts >= 1 && !why[0]; parts--) {
        for (int i = 0; i < T * N; i++) y1[i] = NAN;   /* every output must be written */
        if (!fn(NULL, y1, x, T, N, K, w, NULL, bias, parts)) {
            snprintf(why, cap, "out of memory");
            break;
        }
        for (int i = 0; i < T * N && !why[0]; i++) {
            int t = i / N, n = i % N;
            double mag = 0;
            for (int k = 0; k < K; k++) mag += fabs((double)tw_bf16_to_f32(w[n * K + k]) * x[t * K + k]);
            double tol = ((parts == 3 ? 0 : parts == 2 ? 0x1p-17 : 0x1p-8) + 1e-5) * mag + 1e-6;
            if (!(fabs((double)y1[i] - y0[i]) <= tol))
                snprintf(why, cap, "x in %d bf16 parts, T=%d N=%d K=%d: y[%d][%d] = %g where avx512 gives %g",
                         parts, T, N, K, t, n, y1[i], y0[i]);
        }
    }
done:
    free(w);
    free(x);
}

/* Why the hardware amx path cannot run ("" when it can), found once per process: the CPU's bits,
** the OS's XCR0, then the kernel's permission for the tile data. Linux allocates the large XSAVE
** area of a task only for processes that asked (arch_prctl ARCH_REQ_XCOMP_PERM); without it the
** first tile instruction gets SIGILL. The permission is per process: threads created before or
** after the request have it (Documentation/arch/x86/xstate.rst), so one request covers the pool.
** Last, a self-check of the real tile GEMM against the avx512 one, so that a broken toolchain,
** kernel or CPU falls back to avx512 instead of computing wrong numbers. Called only once the
** avx512 features are known to be there. */
static struct {
    pthread_once_t once;
    char missing[224];
} amx_hw = { PTHREAD_ONCE_INIT, "" };

static void amx_probe(void) {
    char *m = amx_hw.missing;
    const size_t cap = sizeof amx_hw.missing;
    bool tile, bf16;
    cpu_amx_bits(&tile, &bf16);
    if (!tile || !bf16) {
        snprintf(m, cap, "%s%s%s", tile ? "" : "amx-tile", !tile && !bf16 ? " " : "", bf16 ? "" : "amx-bf16");
    } else if (!os_amx_state()) {
        snprintf(m, cap, "OS support for the tile state (XCR0 bits 17-18)");
    } else if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) {
        snprintf(m, cap, "the kernel's permission for the tile state (arch_prctl ARCH_REQ_XCOMP_PERM: %s)", strerror(errno));
    } else {
        char why[160];
        amx_selfcheck(tw_gemm_amx, why, sizeof why);
        if (why[0]) snprintf(m, cap, "a passing AMX self-check (%s)", why);
    }
}

/* The features a path's code was compiled for (see AVX2_FLAGS / AVX512_FLAGS in the Makefile):
** the compiler may use any of them anywhere in that file. __builtin_cpu_supports also checks
** that the OS saves the wide registers (XGETBV). */
const char *tw_kpath_missing(tw_kpath p) {
    static _Thread_local char buf[320];
    __builtin_cpu_init();
    buf[0] = 0;
#define NEED(f) if (!__builtin_cpu_supports(f)) strcat(strcat(buf, buf[0] ? " " : ""), f)
    switch (p) {
    case TW_KPATH_REF: break;
    case TW_KPATH_AVX2: NEED("avx2"); NEED("fma"); NEED("f16c"); break;
    case TW_KPATH_AVX512:
        NEED("avx2"); NEED("fma"); NEED("f16c");
        NEED("avx512f"); NEED("avx512bw"); NEED("avx512vl"); NEED("avx512dq");
        break;
    case TW_KPATH_AMX:   /* gemm_amx.c's x and weight packing use AVX512-BF16 */
        NEED("avx2"); NEED("fma"); NEED("f16c");
        NEED("avx512f"); NEED("avx512bw"); NEED("avx512vl"); NEED("avx512dq"); NEED("avx512bf16");
        if (!buf[0] && !amx_substituted) {
            pthread_once(&amx_hw.once, amx_probe);
            snprintf(buf, sizeof buf, "%s", amx_hw.missing);
        }
        break;
    default: strcpy(buf, "unknown path"); break;
    }
#undef NEED
    return buf;
}

bool tw_kpath_supported(tw_kpath p) { return tw_kpath_missing(p)[0] == 0; }

const char *tw_cpu_features(void) {
    static char buf[256];
    __builtin_cpu_init();
    buf[0] = 0;
    /* __builtin_cpu_supports needs a literal: spell each out */
#define HAS(f) if (__builtin_cpu_supports(f)) strcat(strcat(buf, buf[0] ? " " : ""), f)
    HAS("sse4.2"); HAS("avx"); HAS("avx2"); HAS("fma"); HAS("f16c"); HAS("avx512f"); HAS("avx512bw");
    HAS("avx512vl"); HAS("avx512dq"); HAS("avx512vnni"); HAS("avx512bf16");
#undef HAS
    bool tile, bf16;   /* what CPUID says; whether the OS lets us use them: tw_kpath_missing(AMX) */
    cpu_amx_bits(&tile, &bf16);
    if (tile) strcat(strcat(buf, buf[0] ? " " : ""), "amx-tile");
    if (bf16) strcat(strcat(buf, buf[0] ? " " : ""), "amx-bf16");
    return buf;
}

/* The best path chosen without being asked: avx512 at most. The amx path is opt-in
** (TOWER_KERNELS=amx, tw_kernels_force) until it has run on AMX hardware: it was written and
** tested here against an emulation of the tiles only (this project's machines have no AMX), and
** two cross-kernel checks of test_gemma2 (decode on avx512 vs prefill on the tiles; F32/F16
** checkpoints vs BF16) would not hold with it (docs/kernels.md, "The AMX path"). Not probing it
** by default also means no AMX instruction runs unless asked for. */
static tw_kpath best_path(void) {
    for (int p = TW_KPATH_AVX512; p > 0; p--)
        if (tw_kpath_supported((tw_kpath)p)) return (tw_kpath)p;
    return TW_KPATH_REF;
}

/* Best path, or the one TOWER_KERNELS asks for if the CPU can run it. */
static void kernels_choose(void) {
    tw_kpath best = best_path(), want;
    const char *env = getenv("TOWER_KERNELS"), *mm = getenv("TOWER_MATMUL");
    active_path = best;
    bf16_act = mm && strcmp(mm, "bf16") == 0;
    bool tile, bf16;
    cpu_amx_bits(&tile, &bf16);
    if (tile && bf16 && best == TW_KPATH_AVX512)   /* AMX in the CPU: say it is there to ask for */
        snprintf(note, sizeof note, "the CPU has AMX: TOWER_KERNELS=amx turns on the (opt-in) amx path; using %s",
                 tw_kpath_name(best));
    if (!env || !*env) return;
    if (!tw_kpath_parse(env, &want))
        snprintf(note, sizeof note, "TOWER_KERNELS=%s is not ref, avx2, avx512 or amx; using %s", env,
                 tw_kpath_name(best));
    else if (!tw_kpath_supported(want))
        snprintf(note, sizeof note, "TOWER_KERNELS=%s: this CPU lacks %s; using %s", env,
                 tw_kpath_missing(want), tw_kpath_name(best));
    else
        active_path = want;
}

tw_kpath tw_kernels_init(void) {
    pthread_once(&choose_once, kernels_choose);
    return active_path;
}

tw_kpath tw_kernels_path(void) { return tw_kernels_init(); }

const char *tw_kernels_note(void) {
    tw_kernels_init();
    return note;
}

bool tw_kernels_force(tw_kpath p) {
    tw_kernels_init();
    if (!tw_kpath_supported(p)) {
        snprintf(note, sizeof note, "%s requested: %s; staying on %s", tw_kpath_name(p),
                 (unsigned)p < TW_KPATH_COUNT ? tw_kpath_missing(p) : "unknown path",
                 tw_kpath_name(active_path));
        return false;
    }
    active_path = p;
    note[0] = 0;
    return true;
}

tw_status tw_kernels_configure(const char *kernels, tw_matmul_mode matmul) {
    tw_kernels_init();
    bool ask = kernels && *kernels;
    tw_kpath want = active_path;
    if (ask && !tw_kpath_parse(kernels, &want))
        return tw_err(TW_E_ARG, "tw_model_params.kernels is \"%s\": not ref, avx2, avx512 or amx", kernels);
    if ((unsigned)matmul > TW_MATMUL_BF16)
        return tw_err(TW_E_ARG, "tw_model_params.matmul is %d: not a tw_matmul_mode", (int)matmul);
    if (ask && !tw_kpath_supported(want))
        return tw_err(TW_E_UNSUPPORTED, "tw_model_params.kernels is \"%s\": this CPU lacks %s", kernels,
                      tw_kpath_missing(want));
    const char *env = getenv("TOWER_KERNELS"), *mm = getenv("TOWER_MATMUL");
    if (ask && !(env && *env) && want != active_path) {   /* the environment, when set, decided already */
        active_path = want;
        note[0] = 0;
    }
    if (matmul != TW_MATMUL_DEFAULT && !(mm && *mm)) bf16_act = matmul == TW_MATMUL_BF16;
    return TW_OK;
}

bool tw_kernels_amx_substitute(tw_gemm_amx_fn fn) {
    tw_kernels_init();
    if (!fn) {
        amx_gemm = tw_gemm_amx;
        amx_substituted = false;
        if (active_path == TW_KPATH_AMX && !tw_kpath_supported(TW_KPATH_AMX)) active_path = best_path();
        return true;
    }
    __builtin_cpu_init();
    if (!tw_kpath_supported(TW_KPATH_AVX512) || !__builtin_cpu_supports("avx512bf16")) return false;
    char why[160];
    amx_selfcheck(fn, why, sizeof why);
    if (why[0]) {
        snprintf(note, sizeof note, "amx substitute refused: self-check failed (%s)", why);
        return false;
    }
    amx_gemm = fn;
    amx_substituted = true;
    return true;
}

bool tw_kernels_set_bf16_activations(bool on) {
    tw_kernels_init();
    bool was = bf16_act;
    bf16_act = on;
    return was;
}

bool tw_kernels_bf16_activations(void) {
    tw_kernels_init();
    __builtin_cpu_init();
    return bf16_act && active_path >= TW_KPATH_AVX512 && __builtin_cpu_supports("avx512bf16");
}

/* ---- matmul ---------------------------------------------------------------------------------- */

/* The plain path: each task takes MM_ROWS output features and every token, one dot at a time. */
typedef struct {
    float *y;
    const float *x;
    int64_t T, N, K;
    const uint8_t *w;
    size_t row_bytes;
    tw_dot_fn dot;
    const float *bias;   /* [N] f32 or NULL */
} ref_job;

enum { MM_ROWS = 16 };   /* output features per task */

static void ref_task(void *ctx, int64_t i, int tid) {
    ref_job *j = ctx;
    int64_t n0 = i * MM_ROWS, n1 = TW_MIN(n0 + MM_ROWS, j->N);
    for (int64_t n = n0; n < n1; n++) {
        const void *row = j->w + (size_t)n * j->row_bytes;
        float b = j->bias ? j->bias[n] : 0.0f;
        for (int64_t t = 0; t < j->T; t++) j->y[t * j->N + n] = j->dot(row, j->x + t * j->K, j->K) + b;
    }
}

/* The SIMD paths. A task is one panel of NB weight rows times one block of TB tokens; inside it
** K is walked in chunks of KC columns, and for each chunk the path's block function runs its
** register tiles over the TB tokens and NB rows (tokens outer, rows inner). The sizes follow the
** caches (L1 48 KB, L2 1 MB per core on the machines we measured, see docs/kernels.md):
**   - a tile's x rows, MT x KC f32, stay in L1 while the tile sweeps the panel's rows;
**   - the panel's chunk of weights, NB x KC, stays in L2 while the tiles sweep the tokens,
**     so each weight byte comes from memory once per token block.
** Decode (T = 1) needs neither: x is one row, and the work is only streaming W, so panels are
** small (for balance between threads) and K is not cut. */
typedef struct {
    const tw_mm_block *proto;   /* y, x, w, wt, ld*, bias for the whole matmul */
    tw_mm_block_fn fn;
    int64_t T, N, K;
    int64_t NB, TB, KC;
    int64_t n_panels;
} simd_job;

static void simd_task(void *ctx, int64_t i, int tid) {
    const simd_job *j = ctx;
    const tw_mm_block *p = j->proto;
    int64_t n0 = (i % j->n_panels) * j->NB, t0 = (i / j->n_panels) * j->TB;
    size_t es = tw_dtype_size(p->wt);
    tw_mm_block b = *p;
    b.y = p->y + t0 * p->ldy + n0;
    b.nt = TW_MIN(j->TB, j->T - t0);
    b.nn = TW_MIN(j->NB, j->N - n0);
    b.bias = p->bias ? p->bias + n0 : NULL;
    for (int64_t k0 = 0; k0 < j->K; k0 += j->KC) {
        b.x = p->x + t0 * p->ldx + k0;
        b.w = (const uint8_t *)p->w + ((size_t)n0 * (size_t)p->ldw + (size_t)k0) * es;
        b.nk = TW_MIN(j->KC, j->K - k0);
        b.accumulate = k0 > 0;
        j->fn(&b);
    }
}

enum { KC_MAX = 1536 };   /* 6 tokens x 1536 f32 = 36 KB of x: fits L1 with room for weights */

static void matmul_simd(tw_pool *pool, tw_kpath path, float *y, const float *x, int64_t T, int64_t N,
                        int64_t K, const tw_tensor *W, const float *bias) {
    tw_mm_block proto = { .y = y, .ldy = N, .x = x, .ldx = K, .w = W->data, .ldw = K, .wt = W->type,
                          .bias = bias };
    simd_job j = { .proto = &proto, .fn = paths[path].block, .T = T, .N = N, .K = K };
    int64_t mt = paths[path].mt, threads = tw_pool_size(pool);
    if (T == 1) {
        /* about 8 tasks per thread (balance) of at most 256 rows; 2304 rows -> 144 per task */
        j.NB = TW_MAX(16, TW_MIN(256, N / (8 * threads)) / 16 * 16);
        j.TB = 1;
        j.KC = K;
    } else {
        /* NB x KC weights in L2: 128 x 1536 x 2 bytes = 384 KB (bf16/f16), half as many f32 rows */
        j.NB = W->type == TW_DT_F32 ? 64 : 128;
        j.TB = T;
        /* cut K into equal chunks of at most KC_MAX, multiples of 16 so only the last has a tail */
        int64_t chunks = T <= mt ? 1 : (K + KC_MAX - 1) / KC_MAX;
        j.KC = ((K + chunks - 1) / chunks + 15) / 16 * 16;
    }
    j.n_panels = (N + j.NB - 1) / j.NB;
    if (T > 1 && threads > 1 && j.n_panels < 8 * threads) {
        /* Few panels (small N: the vision tower's 1152 rows make 9): split the tokens too, so the
        ** threads finish together (9 tasks on 2 threads would leave one idle for a ninth of the
        ** time), at the cost of reading the weights once per token block — from L3, mostly. */
        int64_t want = (8 * threads + j.n_panels - 1) / j.n_panels;
        int64_t tb = (T + want - 1) / want;
        j.TB = TW_MAX(mt, (tb + mt - 1) / mt * mt);
    }
    int64_t n_tblocks = (T + j.TB - 1) / j.TB;
    tw_pool_run(pool, j.n_panels * n_tblocks, simd_task, &j);
}

/* ---- decode rows of several tokens (tw_matmul_rows on avx2) ---------------------------------- */

typedef struct {
    tw_mm_block proto;
    int64_t     NB, N;
    float      *xp;      /* [threads][nt][ldxp]: each task splits x into its thread's part */
    int64_t     ldxp;
} dec_rows_job;

static void dec_rows_task(void *ctx, int64_t i, int tid) {
    const dec_rows_job *j = ctx;
    const tw_mm_block *p = &j->proto;
    int64_t n0 = i * j->NB;
    tw_mm_block b = *p;
    b.y = p->y + n0;
    b.nn = TW_MIN(j->NB, j->N - n0);
    b.w = (const uint8_t *)p->w + (size_t)n0 * (size_t)p->ldw * tw_dtype_size(p->wt);
    b.bias = p->bias ? p->bias + n0 : NULL;
    tw_mm_dec_rows_avx2(&b, j->xp + (size_t)tid * (size_t)p->nt * (size_t)j->ldxp, j->ldxp);
}

/* T <= TW_DEC_ROWS_MAX decode rows on the avx2 path (float weights): false when this does not
** apply (the caller then runs the rows one by one, which gives the same numbers). */
bool tw_matmul_rows_avx2(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias) {
    int64_t N = W->shape[0], K = W->shape[W->ndim - 1];
    if (T > TW_DEC_ROWS_MAX || K > TW_DEC_KMAX || tw_kernels_init() != TW_KPATH_AVX2 ||
        !(W->type == TW_DT_F32 || W->type == TW_DT_F16 || W->type == TW_DT_BF16))
        return false;
    int64_t threads = tw_pool_size(pool), ldxp = (K + 7) / 8 * 8;
    float *xp = NULL;
    int slot = -1;   /* the workspace keeps the buffer between calls: no allocation per product */
    if (W->type == TW_DT_BF16 && !(xp = tw_ws_take(sizeof(float) * (size_t)(threads * T * ldxp), &slot))) return false;
    dec_rows_job j = {
        .proto = { .y = y, .ldy = N, .x = x, .ldx = K, .w = W->data, .ldw = K, .wt = W->type, .nt = T, .nk = K, .bias = bias },
        .NB = TW_MAX(16, TW_MIN(256, N / (8 * threads)) / 16 * 16), .N = N, .xp = xp, .ldxp = ldxp,
    };
    tw_pool_run(pool, (N + j.NB - 1) / j.NB, dec_rows_task, &j);
    if (xp) tw_ws_give(xp, slot);
    return true;
}

/* Below this many tokens the row-dot tiles of tw_mm_block_avx512 run (no packing: decode and
** short prompts are bound by reading the weights, docs/kernels.md). */
static _Atomic int64_t gemm_min_t = 2;

/* ---- packed weights: a list keyed by the weight's data pointer ---------------------------- */

typedef struct {
    const void *data;
    int64_t N, K;
    void *packed;
    size_t bytes;
} packed_entry;

static struct {
    pthread_mutex_t lock;
    packed_entry *e;
    int64_t n, cap;
    size_t bytes;
} packs = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* the packed copy of W, or NULL; a linear look over a few hundred entries per matmul call */
static const void *packed_find(const tw_tensor *W) {
    const void *p = NULL;
    pthread_mutex_lock(&packs.lock);
    for (int64_t i = 0; i < packs.n && !p; i++)
        if (packs.e[i].data == W->data && packs.e[i].N == W->shape[0] && packs.e[i].K == W->shape[W->ndim - 1])
            p = packs.e[i].packed;
    pthread_mutex_unlock(&packs.lock);
    return p;
}

bool tw_kernels_pack_weight(const tw_tensor *W) {
    /* the same copy serves the avx512 GEMM and the amx tiles (gemm_amx.c reads its panels in place) */
    if (W->type != TW_DT_BF16 || W->ndim != 2 || tw_kernels_init() < TW_KPATH_AVX512) return false;
    if (packed_find(W)) return true;
    size_t bytes;
    void *p = tw_gemm_pack_avx512(W->data, W->shape[0], W->shape[1], &bytes);
    if (!p) return false;
    pthread_mutex_lock(&packs.lock);
    bool ok = true;
    if (packs.n == packs.cap) {
        int64_t cap = packs.cap ? 2 * packs.cap : 64;
        packed_entry *e = realloc(packs.e, sizeof *e * (size_t)cap);
        if (e) packs.e = e, packs.cap = cap;
        else ok = false;
    }
    if (ok) {
        packs.e[packs.n++] = (packed_entry){ W->data, W->shape[0], W->shape[1], p, bytes };
        packs.bytes += bytes;
    }
    pthread_mutex_unlock(&packs.lock);
    if (!ok) tw_aligned_free(p);
    return ok;
}

void tw_kernels_unpack_weight(const tw_tensor *W) {
    pthread_mutex_lock(&packs.lock);
    for (int64_t i = 0; i < packs.n; i++)
        if (packs.e[i].data == W->data) {
            tw_aligned_free(packs.e[i].packed);
            packs.bytes -= packs.e[i].bytes;
            packs.e[i--] = packs.e[--packs.n];
        }
    if (packs.n == 0) {
        free(packs.e);
        packs.e = NULL;
        packs.cap = 0;
    }
    pthread_mutex_unlock(&packs.lock);
}

size_t tw_kernels_packed_bytes(void) {
    pthread_mutex_lock(&packs.lock);
    size_t b = packs.bytes;
    pthread_mutex_unlock(&packs.lock);
    return b;
}

int64_t tw_kernels_set_gemm_min_tokens(int64_t t) { return atomic_exchange(&gemm_min_t, t); }

/* The float weight types' products, one entry per path of wtype.c's table. The caller (tw_matmul)
** has checked the shapes, handles T, N or K = 0 and widened the bias to f32. */

static void matmul_rows_ref(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias,
                            tw_dot_fn dot) {
    int64_t N = W->shape[0], K = W->shape[W->ndim - 1];
    ref_job j = { y, x, T, N, K, W->data, tw_dtype_row_bytes(W->type, K), dot, bias };
    tw_pool_run(pool, (N + MM_ROWS - 1) / MM_ROWS, ref_task, &j);
}

void tw_matmul_f32_ref(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias) {
    TW_ASSERT(W->type == TW_DT_F32);
    matmul_rows_ref(pool, y, x, T, W, bias, dot_f32_ref);
}

void tw_matmul_f16_ref(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias) {
    TW_ASSERT(W->type == TW_DT_F16);
    matmul_rows_ref(pool, y, x, T, W, bias, dot_f16_ref);
}

void tw_matmul_bf16_ref(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias) {
    TW_ASSERT(W->type == TW_DT_BF16);
    matmul_rows_ref(pool, y, x, T, W, bias, dot_bf16_ref);
}

/* avx2: the packed GEMM from gemm_min_t tokens on, else (decode, or a GEMM that could not get its
** buffers) the row-dot tiles. */
void tw_matmul_f_avx2(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias) {
    int64_t N = W->shape[0], K = W->shape[W->ndim - 1];
    TW_ASSERT(W->type == TW_DT_F32 || W->type == TW_DT_F16 || W->type == TW_DT_BF16);
    if (T >= atomic_load_explicit(&gemm_min_t, memory_order_relaxed) && tw_gemm_avx2(pool, y, x, T, N, K, W->data, W->type, bias))
        return;
    matmul_simd(pool, TW_KPATH_AVX2, y, x, T, N, K, W, bias);
}

/* avx512: the packed-panel GEMM (8 x 48 register tiles) from gemm_min_t tokens on, else the
** row-dot tiles. */
void tw_matmul_f_avx512(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias) {
    int64_t N = W->shape[0], K = W->shape[W->ndim - 1];
    TW_ASSERT(W->type == TW_DT_F32 || W->type == TW_DT_F16 || W->type == TW_DT_BF16);
    if (T >= atomic_load_explicit(&gemm_min_t, memory_order_relaxed) &&
        tw_gemm_avx512(pool, y, x, T, N, K, W->data, W->type, W->type == TW_DT_BF16 ? packed_find(W) : NULL, bias,
                       tw_kernels_bf16_activations()))
        return;
    matmul_simd(pool, TW_KPATH_AVX512, y, x, T, N, K, W, bias);
}

/* amx, BF16 weights: the AMX tiles from gemm_min_t tokens on (T >= 2 like the avx512 GEMM, so a
** token's result does not depend on T); decode and a failed allocation go to avx512's product. */
void tw_matmul_bf16_amx(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias) {
    int64_t N = W->shape[0], K = W->shape[W->ndim - 1];
    TW_ASSERT(W->type == TW_DT_BF16);
    if (T >= atomic_load_explicit(&gemm_min_t, memory_order_relaxed) &&
        amx_gemm(pool, y, x, T, N, K, W->data, packed_find(W), bias, tw_kernels_bf16_activations() ? 1 : 3))
        return;
    tw_matmul_f_avx512(pool, y, x, T, W, bias);
}

/* ---- norms and activations ------------------------------------------------------------------- */

/* Each path's vector versions; NULL on ref (the loops below). The amx path adds only a matrix
** product: its vector kernels are avx512's. */
typedef struct {
    void (*rmsnorm_1p)(float *y, const float *x, const float *w, int64_t T, int64_t n, float eps);
    void (*layernorm)(float *y, const float *x, const float *w, const float *b, int64_t T, int64_t n, float eps);
    void (*gelu_tanh)(float *y, const float *x, int64_t n);
} vec_kernels;

static const vec_kernels vec_paths[TW_KPATH_COUNT] = {
    [TW_KPATH_REF] = { NULL, NULL, NULL },
    [TW_KPATH_AVX2] = { tw_rmsnorm_1p_avx2, tw_layernorm_avx2, tw_gelu_tanh_avx2 },
    [TW_KPATH_AVX512] = { tw_rmsnorm_1p_avx512, tw_layernorm_avx512, tw_gelu_tanh_avx512 },
    [TW_KPATH_AMX] = { tw_rmsnorm_1p_avx512, tw_layernorm_avx512, tw_gelu_tanh_avx512 },
};

void tw_rmsnorm_1p(float *y, const float *x, const float *w, int64_t T, int64_t n, float eps) {
    const vec_kernels *v = &vec_paths[tw_kernels_init()];
    if (v->rmsnorm_1p) {
        v->rmsnorm_1p(y, x, w, T, n, eps);
        return;
    }
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
    const vec_kernels *v = &vec_paths[tw_kernels_init()];
    if (v->layernorm) {
        v->layernorm(y, x, w, b, T, n, eps);
        return;
    }
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

void tw_gelu_tanh_array(float *y, const float *x, int64_t n) {
    const vec_kernels *v = &vec_paths[tw_kernels_init()];
    if (v->gelu_tanh) {
        v->gelu_tanh(y, x, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) y[i] = tw_gelu_tanh(x[i]);
}

float tw_gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f)); }
