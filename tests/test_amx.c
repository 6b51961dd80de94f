/*
** test_amx.c — the AMX tile GEMM (src/cpu/gemm_amx.c), tested on machines without AMX.
**
** This program links a second build of gemm_amx.c, made with -DTW_AMX_EMULATE (Makefile), whose
** tile instructions are amx_ops.h's C model of them: the real packing, tiling, tails, chunking,
** threading and configuration code runs, only the six tile operations are emulated. It checks:
**   1. the emulator itself: TDPBF16PS on hand-computed tiles (shapes smaller than 16 x 64, the
**      SDM's order of additions, denormals in and out), and that what the hardware would fault
**      on aborts loudly (a child process per case);
**   2. the emulated GEMM against the plain C reference (tw_kernels_force(TW_KPATH_REF) + tw_matmul)
**      on shapes with every tail (T, N and K around 16 and 32, SigLIP's 1152 / 4304, 729 tokens),
**      with and without bias, 1 and 2 threads, x in 3, 2 and 1 bf16 parts, within the bounds of
**      docs/kernels.md (the relative term: what the parts leave out of x, plus the f32 paths'
**      allowance for summing in another order):
**          3 parts (default):    |y - y_ref| <= (0     + 1e-5) sum_k |w_k x_k| + 1e-6
**          2 parts:              |y - y_ref| <= (2^-17 + 1e-5) sum_k |w_k x_k| + 1e-6
**          1 part (bf16 mode):   |y - y_ref| <= (2^-8  + 1e-5) sum_k |w_k x_k| + 1e-6
**   3. weights packed once give the same bits; a token's result does not depend on T or threads;
**   4. dispatch: tw_kernels_amx_substitute puts the emulated GEMM on the amx path, so tw_matmul,
**      tw_kernels_force(TW_KPATH_AMX), the modes and the self-check (which must refuse a wrong
**      kernel) run as they would on AMX hardware;
**   5. on a CPU that really has AMX (tw_kpath_supported), the same shapes on the real tiles.
*/
#define TW_AMX_EMULATE   /* the emulator of amx_ops.h, for the self-tests in this file */
#include "amx_ops.h"
#include "kernels.h"
#include "quant.h"
#include "testhelp.h"

#include <math.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

/* gemm_amx.c built against the emulator (tests/gemm_amx_emu.o) */
bool tw_gemm_amx_emu(tw_pool *pool, float *y, const float *x, int64_t T, int64_t N, int64_t K, const uint16_t *w,
                     const void *packed, const float *bias, int parts);

static uint64_t rng = 0x2545f4914f6cdd1dull;

static float frand(void) {   /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (2.0 / 16777216.0) - 1.0);
}

static uint16_t bf(float v) { return tw_f32_to_bf16(v); }   /* exact for the values used below */

/* ---- 1. the emulator ---------------------------------------------------------------------------- */

static tw_tilecfg small_cfg(void) {
    /* tmm0: C 2 x 2 f32, tmm1: A 2 x 4 bf16 (2 pairs), tmm2: B 2 pairs x 2 outputs, tmm3: a 16 x 64 spare */
    tw_tilecfg c = { .palette = 1 };
    c.rows[0] = 2, c.colsb[0] = 8;
    c.rows[1] = 2, c.colsb[1] = 8;
    c.rows[2] = 2, c.colsb[2] = 8;
    c.rows[3] = 16, c.colsb[3] = 64;
    return c;
}

static void test_emulator_math(void) {
    tw_tilecfg cfg = small_cfg();
    tw_tile_config(&cfg);
    /* A (tokens x column pairs): [1 2 | 3 4], [0.5 -1 | 2 0.25]; B (column pairs x outputs, pairs):
    ** k0: n0 (5, 6), n1 (7, 8); k1: n0 (-1, 2), n1 (0.5, 3); C starts [[10, 20], [0, 0]].
    ** C[0][0] = 10 + (1*5 + 3*-1) + (2*6 + 4*2) = 32      C[0][1] = 20 + (1*7 + 3*0.5) + (2*8 + 4*3) = 56.5
    ** C[1][0] = (0.5*5 + 2*-1) + (-1*6 + 0.25*2) = -5    C[1][1] = (0.5*7 + 2*0.5) + (-1*8 + 0.25*3) = -2.75 */
    uint16_t A[2][8] = { { bf(1), bf(2), bf(3), bf(4), 0x7fc0, 0x7fc0, 0x7fc0, 0x7fc0 },   /* past colsb: NaN, unread */
                         { bf(0.5f), bf(-1), bf(2), bf(0.25f) } };
    uint16_t B[2][4] = { { bf(5), bf(6), bf(7), bf(8) }, { bf(-1), bf(2), bf(0.5f), bf(3) } };
    float C[2][4] = { { 10, 20, 99, 99 }, { 0, 0, 99, 99 } };   /* 16-byte rows: the tile has 8 */
    TW_TILE_LOAD(0, C, sizeof C[0]);
    TW_TILE_LOAD(1, A, sizeof A[0]);
    TW_TILE_LOAD(2, B, sizeof B[0]);
    TW_TILE_DPBF16(0, 1, 2);
    float out[2][4] = { { -7, -7, -7, -7 }, { -7, -7, -7, -7 } };
    TW_TILE_STORE(0, out, sizeof out[0]);
    CHECK(out[0][0] == 32 && out[0][1] == 56.5f && out[1][0] == -5 && out[1][1] == -2.75f,
          "tdpbf16ps by hand: got [[%g %g] [%g %g]]", out[0][0], out[0][1], out[1][0], out[1][1]);
    CHECK(out[0][2] == -7 && out[0][3] == -7 && out[1][2] == -7 && out[1][3] == -7, "tilestored writes only colsb bytes");

    /* The SDM's order: per output, an even and an odd partial sum over k, then C += even + odd.
    ** A = [1 1 | 1 1], B pairs k0 (2^24, 1), k1 (1, -2^24): even = fl(2^24 + 1) = 2^24 (a tie,
    ** to even), odd = fl(1 - 2^24) = -(2^24 - 1), C = 0 + 1 = 1. (Adding the products in pair
    ** order instead gives 0; the exact sum is 2.) */
    uint16_t A2[2][4] = { { bf(1), bf(1), bf(1), bf(1) }, { bf(1), bf(1), bf(1), bf(1) } };
    uint16_t B2[2][4] = { { bf(0x1p24f), bf(1), 0, 0 }, { bf(1), bf(-0x1p24f), 0, 0 } };
    TW_TILE_ZERO(0);
    TW_TILE_LOAD(1, A2, sizeof A2[0]);
    TW_TILE_LOAD(2, B2, sizeof B2[0]);
    TW_TILE_DPBF16(0, 1, 2);
    TW_TILE_STORE(0, out, sizeof out[0]);
    CHECK(out[0][0] == 1.0f && out[0][1] == 0.0f, "SDM order of additions: got %g (want 1), %g", out[0][0], out[0][1]);

    /* Denormals: a bf16 denormal input counts as 0 (0x0001 * 2^100 would be 2^-33); a product
    ** below 2^-126 is flushed (2^-70 * 2^-70); C's own denormal is read as 0. */
    uint16_t A3[2][4] = { { 0x0001, bf(0x1p-70f), 0, 0 }, { 0 } };
    uint16_t B3[2][4] = { { bf(0x1p100f), bf(0x1p-70f), 0, 0 }, { 0 } };
    float C3[2][2] = { { 0, 0x1p-130f }, { 0, 0 } };
    TW_TILE_LOAD(0, C3, sizeof C3[0]);
    TW_TILE_LOAD(1, A3, sizeof A3[0]);
    TW_TILE_LOAD(2, B3, sizeof B3[0]);
    TW_TILE_DPBF16(0, 1, 2);
    TW_TILE_STORE(0, out, sizeof out[0]);
    CHECK(out[0][0] == 0.0f && out[0][1] == 0.0f, "DAZ/FTZ: got %g %g", out[0][0], out[0][1]);

    /* a load reads only rows x colsb and zeroes the rest; stride 0 repeats one row */
    float row[16];
    for (int i = 0; i < 16; i++) row[i] = (float)i;
    float big[16][16];
    TW_TILE_LOAD(3, row, 0);
    TW_TILE_STORE(3, big, sizeof big[0]);
    bool rep = true;
    for (int r = 0; r < 16; r++)
        for (int i = 0; i < 16; i++) rep = rep && big[r][i] == (float)i;
    CHECK(rep, "stride 0 repeats the row");
    tw_tile_release();
}

/* Runs one faulting operation in a child; it must die of SIGABRT. */
static void expect_fault(int which, const char *what) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr)) _exit(3);
        tw_tilecfg cfg = small_cfg();
        float buf[16][16] = { { 0 } };
        switch (which) {
        case 0: TW_TILE_LOAD(0, buf, 64); break;   /* no configuration */
        case 1: cfg.rows[3] = 17; tw_tile_config(&cfg); break;
        case 2: cfg.colsb[3] = 68; tw_tile_config(&cfg); break;
        case 3: cfg.reserved[5] = 1; tw_tile_config(&cfg); break;
        case 4: cfg.rows[4] = 4; tw_tile_config(&cfg); break;   /* rows without bytes */
        case 5: tw_tile_config(&cfg); TW_TILE_LOAD(5, buf, 64); break;   /* tile not configured */
        case 6: tw_tile_config(&cfg); TW_TILE_DPBF16(0, 1, 3); break;    /* B 16 rows, A 2 pairs */
        case 7: tw_tile_config(&cfg); TW_TILE_DPBF16(0, 1, 1); break;    /* same tile twice */
        case 8: tw_tile_config(&cfg); tw_tile_release(); TW_TILE_ZERO(0); break;   /* after release */
        case 9: cfg.palette = 0; tw_tile_config(&cfg); break;
        }
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "emulator must abort on %s (status %d)", what, st);
}

static void test_emulator_faults(void) {
    static const char *what[] = { "a tile op before ldtilecfg", "17 rows", "68 bytes per row", "a reserved byte",
                                  "rows without bytes", "an unconfigured tile", "mismatched dp shapes",
                                  "a tile used twice in one dp", "a tile op after tilerelease", "palette 0" };
    for (int i = 0; i < 10; i++) expect_fault(i, what[i]);
}

/* ---- 2. the GEMM against the reference ------------------------------------------------------------ */

static double worst[4];   /* largest |y - y_ref| / bound seen, by parts of x */
static const double part_err[4] = { 0, 0x1p-8, 0x1p-17, 0 };   /* what 1, 2, 3 parts leave out, relative */

/* one random problem and its reference */
typedef struct {
    int64_t T, N, K;
    uint16_t *w;
    float *x, *bias, *yref, *mag;
    tw_tensor wt, bt;
} problem;

/* sum_k |w_k x_k| of every output (in double), token t of the bound's scale */
static void mag_task(void *ctx, int64_t t, int tid) {
    problem *p = ctx;
    for (int64_t n = 0; n < p->N; n++) {
        double m = 0;
        for (int64_t k = 0; k < p->K; k++) m += fabs((double)tw_bf16_to_f32(p->w[n * p->K + k]) * p->x[t * p->K + k]);
        p->mag[t * p->N + n] = (float)m;
    }
}

static problem make_problem(tw_pool *pool, int64_t T, int64_t N, int64_t K) {
    problem p = { .T = T, .N = N, .K = K };
    p.w = malloc(sizeof(uint16_t) * (size_t)(N * K) + 1);
    p.x = malloc(sizeof(float) * (size_t)(T * K) + 1);
    p.bias = malloc(sizeof(float) * (size_t)N);
    p.yref = malloc(sizeof(float) * (size_t)(T * N) * 2);   /* without bias, then with */
    p.mag = malloc(sizeof(float) * (size_t)(T * N));
    for (int64_t i = 0; i < N * K; i++) p.w[i] = bf(frand());
    for (int64_t i = 0; i < T * K; i++) p.x[i] = frand();
    for (int64_t i = 0; i < N; i++) p.bias[i] = frand();
    p.wt = (tw_tensor){ .name = "w", .type = TW_DT_BF16, .ndim = 2, .shape = { N, K }, .data = p.w,
                        .nbytes = sizeof(uint16_t) * (size_t)(N * K) };
    p.bt = (tw_tensor){ .name = "b", .type = TW_DT_F32, .ndim = 1, .shape = { N }, .data = p.bias,
                        .nbytes = sizeof(float) * (size_t)N };
    tw_kpath was = tw_kernels_path();
    tw_kernels_force(TW_KPATH_REF);
    tw_matmul(pool, p.yref, p.x, T, &p.wt, NULL);
    tw_matmul(pool, p.yref + T * N, p.x, T, &p.wt, &p.bt);
    tw_kernels_force(was);
    tw_pool_run(pool, T, mag_task, &p);
    return p;
}

static void free_problem(problem *p) {
    free(p->w), free(p->x), free(p->bias), free(p->yref), free(p->mag);
}

/* y against the reference within the mode's bound; every output must have been written */
static bool within(const problem *p, const float *y, int parts, bool with_bias, const char *who) {
    const float *ref = p->yref + (with_bias ? p->T * p->N : 0);
    double rel = part_err[parts] + 1e-5;
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < p->T * p->N; i++) {
        double tol = rel * p->mag[i] + 1e-6, d = fabs((double)y[i] - ref[i]);
        if (!(d <= tol)) {
            if (first < 0) first = i;
            bad++;
        }
        if (d / tol > worst[parts]) worst[parts] = d / tol;
    }
    CHECK(bad == 0, "%s T=%lld N=%lld K=%lld parts=%d bias=%d: %lld of %lld outputs off (first [%lld]: %g vs %g)", who,
          (long long)p->T, (long long)p->N, (long long)p->K, parts, with_bias, (long long)bad,
          (long long)(p->T * p->N), (long long)(first < 0 ? 0 : first), first < 0 ? 0.0 : y[first],
          first < 0 ? 0.0 : ref[first]);
    return bad == 0;
}

static int64_t n_runs;

/* Runs fn on p in the given mode / thread count / bias and checks it. */
static void run_one(tw_gemm_amx_fn fn, const char *who, tw_pool *pool, const problem *p, int parts, bool with_bias) {
    float *y = malloc(sizeof(float) * (size_t)(p->T * p->N));
    for (int64_t i = 0; i < p->T * p->N; i++) y[i] = NAN;
    bool ok = fn(pool, y, p->x, p->T, p->N, p->K, p->w, NULL, with_bias ? p->bias : NULL, parts);
    CHECK(ok, "%s returned false", who);
    if (ok) within(p, y, parts, with_bias, who);
    n_runs++;
    free(y);
}

/* The shape set: every combination of small sizes around the tile edges (16, 32) in both modes
** and thread counts, then the big ones (SigLIP's 1152 and 4304, 729 tokens, Gemma's 9216) in one
** mode / thread count each, cycling through them, so the emulator's run time stays reasonable. */
static void test_shapes(tw_gemm_amx_fn fn, const char *who, tw_pool *p1, tw_pool *p2) {
    static const int64_t Ts[] = { 2, 3, 16, 17, 31, 32, 33 };
    static const int64_t Ns[] = { 1, 15, 16, 17, 40 };
    static const int64_t Ks[] = { 1, 2, 31, 32, 33, 100 };
    int i = 0;
    for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++)
        for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++) {
                problem p = make_problem(p2, Ts[ti], Ns[ni], Ks[ki]);
                for (int mode = 0; mode < 6; mode++, i++)   /* 3, 2, 1 parts x 1, 2 threads; bias alternates */
                    run_one(fn, who, mode & 1 ? p2 : p1, &p, 3 - mode / 2, (i % 4) != 0);
                free_problem(&p);
            }
    /* the big sizes: every combination up to 90M multiply-adds, then the vision tower's own shape */
    static const int64_t bT[] = { 2, 17, 33, 729 }, bN[] = { 1, 17, 1152, 4304 }, bK[] = { 33, 1152, 4304 };
    for (size_t ti = 0; ti < 4; ti++)
        for (size_t ni = 0; ni < 4; ni++)
            for (size_t ki = 0; ki < 3; ki++, i++) {
                if (bT[ti] * bN[ni] * bK[ki] > 90000000) continue;
                problem p = make_problem(p2, bT[ti], bN[ni], bK[ki]);
                run_one(fn, who, i & 1 ? p2 : p1, &p, i % 3 + 1, i % 4 != 1);
                free_problem(&p);
            }
    static const int64_t extra[][3] = { { 729, 1152, 1152 }, { 64, 96, 9216 }, { 3, 40, 9216 } };
    for (size_t e = 0; e < 3; e++, i++) {
        problem p = make_problem(p2, extra[e][0], extra[e][1], extra[e][2]);
        run_one(fn, who, p2, &p, 3 - (int)e, true);
        free_problem(&p);
    }
}

/* ---- 3. packed-once weights, invariance ------------------------------------------------------------ */

static void test_packed_and_invariance(tw_gemm_amx_fn fn, tw_pool *p1, tw_pool *p2) {
    static const int64_t shapes[][3] = { { 33, 40, 100 }, { 2, 7, 13 }, { 37, 100, 1153 }, { 70, 130, 2304 }, { 17, 49, 4304 } };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t T = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        problem p = make_problem(p2, T, N, K);
        float *y0 = malloc(sizeof(float) * (size_t)(T * N)), *y1 = malloc(sizeof(float) * (size_t)(T * N));
        size_t bytes = 0;
        void *pre = tw_gemm_pack_avx512(p.w, N, K, &bytes);
        CHECK(pre != NULL, "tw_gemm_pack_avx512");
        for (int parts = 1; parts <= 3 && pre; parts++) {
            fn(p2, y0, p.x, T, N, K, p.w, NULL, p.bias, parts);
            fn(p1, y1, p.x, T, N, K, p.w, pre, p.bias, parts);
            CHECK(memcmp(y0, y1, sizeof(float) * (size_t)(T * N)) == 0, "packed-once weights %lldx%lld T=%lld parts %d: other bits",
                  (long long)N, (long long)K, (long long)T, parts);
            /* the tokens of the batch alone, in pieces of varying size: the same bits */
            for (int64_t t0 = 0, n = 1; t0 < T; t0 += n, n = n * 3 % 17 + 1) {
                int64_t m = TW_MIN(n, T - t0);
                fn(n & 1 ? p1 : p2, y1, p.x + t0 * K, m, N, K, p.w, n & 2 ? pre : NULL, p.bias, parts);
                CHECK(memcmp(y1, y0 + t0 * N, sizeof(float) * (size_t)(m * N)) == 0,
                      "tokens %lld..%lld alone differ from the same tokens in a batch of %lld (parts %d)", (long long)t0,
                      (long long)(t0 + m), (long long)T, parts);
            }
        }
        tw_aligned_free(pre);
        free(y1), free(y0);
        free_problem(&p);
    }
}

/* ---- 4. dispatch on the amx path, with the emulated kernel ------------------------------------------ */

static int broken_calls;
/* a kernel that is right except for one output: the self-check must refuse it */
static bool broken_gemm(tw_pool *pool, float *y, const float *x, int64_t T, int64_t N, int64_t K, const uint16_t *w,
                        const void *packed, const float *bias, int parts) {
    bool ok = tw_gemm_amx_emu(pool, y, x, T, N, K, w, packed, bias, parts);
    if (ok && T * N > 5) y[T * N - 5] += 1e-3f;
    broken_calls++;
    return ok;
}

static void test_dispatch(tw_pool *pool) {
    bool real = tw_kpath_supported(TW_KPATH_AMX);
    CHECK(!tw_kernels_amx_substitute(broken_gemm), "self-check refuses a kernel with one wrong output");
    CHECK(broken_calls > 0 && strstr(tw_kernels_note(), "self-check") != NULL, "and says why: \"%s\"", tw_kernels_note());
    CHECK(tw_kpath_supported(TW_KPATH_AMX) == real, "a refused substitute changes nothing");

    CHECK(tw_kernels_amx_substitute(tw_gemm_amx_emu), "the emulated kernel passes the self-check");
    CHECK(tw_kpath_supported(TW_KPATH_AMX) && tw_kernels_force(TW_KPATH_AMX), "amx path forced with the substitute");
    CHECK(tw_kernels_path() == TW_KPATH_AMX && strcmp(tw_kpath_name(TW_KPATH_AMX), "amx") == 0, "amx is active");

    const int64_t T = 37, N = 70, K = 300;
    problem p = make_problem(pool, T, N, K);
    float *y = malloc(sizeof(float) * (size_t)(T * N)), *want = malloc(sizeof(float) * (size_t)(T * N));
    /* BF16 weights, T >= 2: the tile GEMM, x in 3 parts by default, rounded once with bf16 activations */
    for (int mode = 0; mode < 2; mode++) {
        bool was = tw_kernels_set_bf16_activations(mode == 1);
        CHECK(tw_kernels_bf16_activations() == (mode == 1), "bf16 activations %s on the amx path", mode ? "on" : "off");
        tw_matmul(pool, y, p.x, T, &p.wt, &p.bt);
        tw_gemm_amx_emu(pool, want, p.x, T, N, K, p.w, NULL, p.bias, mode == 0 ? 3 : 1);
        CHECK(memcmp(y, want, sizeof(float) * (size_t)(T * N)) == 0, "tw_matmul on amx = the tile GEMM (mode %d)", mode);
        within(&p, y, mode == 0 ? 3 : 1, true, "tw_matmul amx");
        /* weights packed once: found by tw_matmul, the same bits */
        CHECK(tw_kernels_pack_weight(&p.wt), "tw_kernels_pack_weight on the amx path");
        tw_matmul(pool, y, p.x, T, &p.wt, &p.bt);
        CHECK(memcmp(y, want, sizeof(float) * (size_t)(T * N)) == 0, "tw_matmul on amx, packed weight (mode %d)", mode);
        tw_kernels_unpack_weight(&p.wt);
        tw_kernels_set_bf16_activations(was);
    }
    /* decode (T = 1) and F32 weights stay on the avx512 kernels: the same bits as that path */
    {
        float *wf = malloc(sizeof(float) * (size_t)(N * K));
        for (int64_t i = 0; i < N * K; i++) wf[i] = tw_bf16_to_f32(p.w[i]);
        tw_tensor ft = { .name = "wf", .type = TW_DT_F32, .ndim = 2, .shape = { N, K }, .data = wf,
                         .nbytes = sizeof(float) * (size_t)(N * K) };
        tw_matmul(pool, y, p.x, T, &ft, &p.bt);
        tw_matmul(pool, y + T * N - N, p.x, 1, &p.wt, NULL);   /* T = 1 into the last row */
        tw_kernels_force(TW_KPATH_AVX512);
        tw_matmul(pool, want, p.x, T, &ft, &p.bt);
        tw_matmul(pool, want + T * N - N, p.x, 1, &p.wt, NULL);
        CHECK(memcmp(y, want, sizeof(float) * (size_t)(T * N)) == 0, "F32 weights and T = 1 on amx = avx512");
        free(wf);
    }
    /* quantized weights (quant.c) run avx512's kernels on amx, with int8 and with f32 activations */
    {
        size_t rb = tw_quant_row_bytes(TW_DT_Q8_0, K);
        uint8_t *q = malloc(rb * (size_t)N);
        float *row = malloc(sizeof(float) * (size_t)K);
        for (int64_t n = 0; n < N; n++) {
            for (int64_t k = 0; k < K; k++) row[k] = tw_bf16_to_f32(p.w[n * K + k]);
            tw_quantize_row(TW_DT_Q8_0, row, K, q + (size_t)n * rb);
        }
        tw_tensor qt = { .name = "q", .type = TW_DT_Q8_0, .ndim = 2, .shape = { N, K }, .data = q, .nbytes = rb * (size_t)N };
        for (int act = 0; act < 2; act++) {
            tw_qact was = tw_quant_set_act(act ? TW_QACT_F32 : TW_QACT_INT8);
            tw_kernels_force(TW_KPATH_AMX);
            const char *kern_amx = tw_quant_i8_kernel();
            tw_matmul(pool, y, p.x, T, &qt, &p.bt);
            tw_matmul(pool, y + T * N - N, p.x, 1, &qt, NULL);
            tw_kernels_force(TW_KPATH_AVX512);
            CHECK(strcmp(kern_amx, tw_quant_i8_kernel()) == 0, "int8 kernel on amx %s = avx512's %s", kern_amx, tw_quant_i8_kernel());
            tw_matmul(pool, want, p.x, T, &qt, &p.bt);
            tw_matmul(pool, want + T * N - N, p.x, 1, &qt, NULL);
            CHECK(memcmp(y, want, sizeof(float) * (size_t)(T * N)) == 0, "Q8_0 weights on amx = avx512 (%s activations)",
                  act ? "f32" : "int8");
            tw_quant_set_act(was);
        }
        free(row), free(q);
    }

    /* the norms run avx512's code on amx */
    float a[3 * 100], b1[3 * 100], b2[3 * 100], g[100];
    for (int i = 0; i < 300; i++) a[i] = frand();
    for (int i = 0; i < 100; i++) g[i] = frand();
    tw_kernels_force(TW_KPATH_AMX);
    tw_rmsnorm_1p(b1, a, g, 3, 100, 1e-6f);
    tw_kernels_force(TW_KPATH_AVX512);
    tw_rmsnorm_1p(b2, a, g, 3, 100, 1e-6f);
    CHECK(memcmp(b1, b2, sizeof b1) == 0, "rmsnorm on amx = avx512");

    /* back to the real detection: on a CPU without AMX the path is refused again */
    tw_kernels_force(TW_KPATH_AMX);
    CHECK(tw_kernels_amx_substitute(NULL), "substitute removed");
    CHECK(tw_kpath_supported(TW_KPATH_AMX) == real, "amx support back to the hardware's (%d)", real);
    CHECK(real || tw_kernels_path() != TW_KPATH_AMX, "left the amx path when the substitute went");
    free(want), free(y);
    free_problem(&p);
}

int main(void) {
    test_emulator_math();
    test_emulator_faults();
    tw_kernels_init();
    printf("cpu: %s\n", tw_cpu_features());
    printf("amx path: %s\n", tw_kpath_supported(TW_KPATH_AMX) ? "supported" : tw_kpath_missing(TW_KPATH_AMX));
    if (!tw_kpath_supported(TW_KPATH_AMX)) {
        CHECK(!tw_kernels_force(TW_KPATH_AMX) && tw_kernels_path() != TW_KPATH_AMX && tw_kernels_note()[0],
              "amx refused without AMX, with a note: \"%s\"", tw_kernels_note());
    }

    __builtin_cpu_init();
    if (!tw_kpath_supported(TW_KPATH_AVX512) || !__builtin_cpu_supports("avx512bf16")) {
        /* the kernel's packing is AVX-512 code: the emulated kernel cannot run on this CPU */
        printf("emulated GEMM not run: this CPU lacks %s\n", tw_kpath_supported(TW_KPATH_AVX512) ? "avx512bf16" : tw_kpath_missing(TW_KPATH_AVX512));
        return th_report();
    }
    tw_pool *p1 = tw_pool_new(1), *p2 = tw_pool_new(2);
    test_shapes(tw_gemm_amx_emu, "emulated", p1, p2);
    printf("emulated: %lld runs; worst |y - y_ref| / bound with x in 3 / 2 / 1 parts: %.3f / %.3f / %.3f\n",
           (long long)n_runs, worst[3], worst[2], worst[1]);
    test_packed_and_invariance(tw_gemm_amx_emu, p1, p2);
    test_dispatch(p2);

    if (tw_kpath_supported(TW_KPATH_AMX)) {   /* real tiles: the same checks */
        memset(worst, 0, sizeof worst);
        n_runs = 0;
        test_shapes(tw_gemm_amx, "amx", p1, p2);
        printf("real amx: %lld runs; worst |y - y_ref| / bound with x in 3 / 2 / 1 parts: %.3f / %.3f / %.3f\n",
               (long long)n_runs, worst[3], worst[2], worst[1]);
        test_packed_and_invariance(tw_gemm_amx, p1, p2);
    } else {
        printf("real amx tiles not run: this machine lacks %s\n", tw_kpath_missing(TW_KPATH_AMX));
    }
    tw_pool_free(p2);
    tw_pool_free(p1);
    return th_report();
}
