/*
** test_quant.c — Q8_0 / Q4_0 (src/cpu/quant.h): the formats (round trip, padding, zero blocks), every
** kernel path against the plain C reference on awkward shapes (K = 13, 16, 1152, 2304, 4304,
** 9216; a 256001-row head), the error quantization adds to a matmul on realistic random shapes,
** and the quantized single-file checkpoint of the fixture model: it loads by path with its
** tokenizer and template, and its logits on the text cases and one image case are compared with
** the BF16 model (max / mean |diff|, top-1 agreement). The numbers go to docs/quantization.md.
** Packed files load without writing anything (TMPDIR missing, or watched for new entries), with
** the same tokenizer, template, stop ids and processor configs as their source directory, and a
** corrupt embedded file is reported by the packed file's name and the embedded file's.
*/
#include "model.h"
#include "quant.h"
#include "testhelp.h"
#include "ckpt_variants.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

static uint64_t rng = 88172645463325252ull;
static double urand(void) {   /* xorshift64, [0, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static float nrand(void) {    /* Box-Muller */
    double u = urand() + 1e-12, v = urand();
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static const tw_dtype QT[2] = { TW_DT_Q8_0, TW_DT_Q4_0 };

/* ---- formats ------------------------------------------------------------------------------- */

static void test_format(void) {
    CHECK(tw_quant_row_bytes(TW_DT_Q8_0, 4304) == 135 * 34, "q8 row bytes for 4304");
    CHECK(tw_quant_row_bytes(TW_DT_Q4_0, 13) == 18, "q4 row bytes for 13");
    CHECK(tw_dtype_size(TW_DT_Q4_0) == 0 && !tw_dtype_parse("Q4_0", &(tw_dtype){ 0 }), "quant is not a header dtype");
    const int64_t Ks[] = { 1, 13, 16, 32, 33, 1152, 4304 };
    for (int q = 0; q < 2; q++)
        for (size_t i = 0; i < sizeof Ks / sizeof Ks[0]; i++) {
            int64_t K = Ks[i];
            float *x = malloc(sizeof(float) * (size_t)K), *y = malloc(sizeof(float) * (size_t)(K + 32));
            uint8_t *b = malloc(tw_quant_row_bytes(QT[q], K));
            for (int64_t k = 0; k < K; k++) x[k] = nrand() * (k % 7 == 0 ? 3.0f : 1.0f);
            tw_quantize_row(QT[q], x, K, b);
            tw_dequantize_row(QT[q], b, K, y);
            /* per element: at most half a step (q8: amax/254, q4: about amax/14) of its block */
            bool ok = true;
            for (int64_t k = 0; k < K; k++) {
                float amax = 0;
                for (int64_t j = k / 32 * 32; j < TW_MIN(K, k / 32 * 32 + 32); j++) amax = fmaxf(amax, fabsf(x[j]));
                ok &= fabsf(x[k] - y[k]) <= amax * (q == 0 ? 1.0f / 250 : 1.0f / 7) + 1e-7f;
            }
            CHECK(ok, "%s K=%lld: round trip error above half a step", tw_quant_name(QT[q]), (long long)K);
            /* the padding of the last block dequantizes to zeros */
            float pad[32];
            int64_t nb = tw_quant_blocks(K);
            tw_dequantize_row(QT[q], b + (nb - 1) * tw_quant_block_bytes(QT[q]), 32, pad);
            bool z = true;
            for (int64_t k = K - (nb - 1) * 32; k < 32; k++) z &= pad[k] == 0;
            CHECK(z, "%s K=%lld: padding not zero", tw_quant_name(QT[q]), (long long)K);
            memset(x, 0, sizeof(float) * (size_t)K);
            tw_quantize_row(QT[q], x, K, b);
            tw_dequantize_row(QT[q], b, K, y);
            bool zero = true;
            for (int64_t k = 0; k < K; k++) zero &= y[k] == 0;
            CHECK(zero, "%s K=%lld: zero row", tw_quant_name(QT[q]), (long long)K);
            free(x), free(y), free(b);
        }
}

/* ---- kernels vs reference --------------------------------------------------------------------- */

typedef struct qmat { tw_tensor t; uint8_t *data; } qmat;

/* rows of f32 weights quantized on the pool (the Q4_0 scale search is the slow part) */
typedef struct qrows_job { tw_dtype q; const float *w; int64_t N, K; uint8_t *out; } qrows_job;
enum { QROWS = 256 };
static void qrows_task(void *ctx, int64_t i, int tid) {
    const qrows_job *j = ctx;
    size_t rb = tw_quant_row_bytes(j->q, j->K);
    for (int64_t n = i * QROWS; n < TW_MIN(j->N, (i + 1) * QROWS); n++)
        tw_quantize_row(j->q, j->w + n * j->K, j->K, j->out + (size_t)n * rb);
}
static uint8_t *quantize_rows(tw_pool *pool, tw_dtype q, const float *w, int64_t N, int64_t K) {
    qrows_job j = { q, w, N, K, malloc(tw_quant_row_bytes(q, K) * (size_t)N) };
    tw_pool_run(pool, (N + QROWS - 1) / QROWS, qrows_task, &j);
    return j.out;
}

static void qmat_make(tw_pool *pool, qmat *m, tw_dtype q, int64_t N, int64_t K, float scale) {
    float *w = malloc(sizeof(float) * (size_t)(N * K));
    for (int64_t i = 0; i < N * K; i++) w[i] = nrand() * scale;
    m->data = quantize_rows(pool, q, w, N, K);
    free(w);
    m->t = (tw_tensor){ .name = "w", .type = q, .ndim = 2, .shape = { N, K }, .data = m->data,
                        .nbytes = tw_quant_row_bytes(q, K) * (size_t)N };
}

static double worst_kernel_err[2];   /* [tw_qact] */

/* Each path's tw_matmul, in both activation modes, against the plain C reference of the same
** arithmetic (tw_quant_dot_i8_ref on the same tw_qx, or tw_quant_dot_ref) + bias, and the int8
** AVX2 kernel's two variants (VNNI, vpmaddubsw) called directly, since tw_matmul picks only
** one. Errors relative to sum |w x| (+ |bias|) of the row: the int8 integer sums are exact, so
** only the order of f32 additions differs. check_rows: at most about this many rows checked. */
static void check_kernels(tw_pool *pool, tw_dtype q, int64_t T, int64_t N, int64_t K, int64_t check_rows) {
    qmat m;
    qmat_make(pool, &m, q, N, K, 0.05f);
    float *x = malloc(sizeof(float) * (size_t)(T * K)), *y = malloc(sizeof(float) * (size_t)(T * N));
    float *bias = malloc(sizeof(float) * (size_t)N);
    for (int64_t i = 0; i < T * K; i++) x[i] = nrand() * (i % 29 == 0 ? 4.0f : 1.0f);
    for (int64_t n = 0; n < N; n++) bias[n] = nrand();
    tw_tensor bt = { .name = "b", .type = TW_DT_F32, .ndim = 1, .shape = { N }, .data = bias, .nbytes = sizeof(float) * (size_t)N };
    size_t rb = tw_quant_row_bytes(q, K);
    int64_t step = N > check_rows ? N / check_rows : 1, nc = (N + step - 1) / step;
    /* references and magnitudes of the checked rows, once: [mode][row][token] */
    float *ref = malloc(sizeof(float) * (size_t)(2 * nc * T)), *mag = malloc(sizeof(float) * (size_t)(nc * T));
    float *w = malloc(sizeof(float) * (size_t)K);
    tw_qx a;
    CHECK_OK(tw_qx_quantize(&a, x, T, K, TW_KPATH_REF), "quantize x");
    for (int64_t c = 0; c < nc; c++) {
        const uint8_t *row = m.data + (size_t)(c * step) * rb;
        tw_dequantize_row(q, row, K, w);
        for (int64_t t = 0; t < T; t++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += fabs((double)w[k] * x[t * K + k]);
            mag[c * T + t] = (float)s + fabsf(bias[c * step]) + 1e-6f;
            ref[(0 * nc + c) * T + t] = tw_quant_dot_i8_ref(q, row, &a, t) + bias[c * step];
            ref[(1 * nc + c) * T + t] = tw_quant_dot_ref(q, row, x + t * K, K) + bias[c * step];
        }
    }
    tw_kpath before = tw_kernels_path();
    tw_qact act0 = tw_quant_act();
    /* runs: paths x modes through tw_matmul, then the int8 avx2 variants directly (no bias) */
    for (int run = 0; run < 2 * TW_KPATH_COUNT + 2; run++) {
        int mode = run < 2 * TW_KPATH_COUNT ? run / TW_KPATH_COUNT : TW_QACT_INT8;
        const char *what;
        bool with_bias = true;
        if (run < 2 * TW_KPATH_COUNT) {
            tw_kpath p = (tw_kpath)(run % TW_KPATH_COUNT);
            if (!tw_kernels_force(p)) continue;
            tw_quant_set_act((tw_qact)mode);
            tw_matmul(pool, y, x, T, &m.t, &bt);
            what = tw_kpath_name(p);
        } else {
            bool vnni = run == 2 * TW_KPATH_COUNT + 1;
            if (!tw_kpath_supported(TW_KPATH_AVX2) || (vnni && !__builtin_cpu_supports("avxvnni"))) continue;
            tw_qdot_i8_rows_avx2(q, m.data, rb, N, &a, 0, T, y, N, vnni);
            what = vnni ? "avx2-vnni direct" : "avx2-maddubs direct";
            with_bias = false;
        }
        double worst = 0;
        for (int64_t c = 0; c < nc; c++)
            for (int64_t t = 0; t < T; t++) {
                double r = ref[((int64_t)mode * nc + c) * T + t] - (with_bias ? 0 : bias[c * step]);
                worst = fmax(worst, fabs((double)y[t * N + c * step] - r) / mag[c * T + t]);
            }
        worst_kernel_err[mode] = fmax(worst_kernel_err[mode], worst);
        CHECK(worst < 2e-6, "%s %s act %s T=%lld N=%lld K=%lld: error %.2e of sum|wx|", what, tw_quant_name(q),
              mode == TW_QACT_INT8 ? "int8" : "f32", (long long)T, (long long)N, (long long)K, worst);
    }
    tw_kernels_force(before);
    tw_quant_set_act(act0);
    tw_qx_free(&a);
    free(w), free(x), free(y), free(bias), free(m.data), free(ref), free(mag);
}

/* tw_qx: scales, rounding, sums and zero padding, on a block with exact halves */
static void test_act_quant(void) {
    float x[40];
    for (int i = 0; i < 40; i++) x[i] = (float)(i - 20) * 0.25f;   /* block 0: -5 .. 2.75, max 5 */
    tw_qx a;
    CHECK_OK(tw_qx_quantize(&a, x, 1, 40, TW_KPATH_REF), "quantize");
    CHECK(a.nb == 2 && a.ld == 16 && a.d[0] == 5.0f / 127 && a.d[1] == 4.75f / 127 && a.d[2] == 0, "scales");
    bool ok = true;
    int32_t s = 0;
    for (int i = 0; i < 32; i++) {
        float v = x[i] * (127.0f / 5.0f);
        int e = (int)(v + (v >= 0 ? 0.5f : -0.5f));
        ok &= a.q[i] == e;
        s += e;
    }
    CHECK(ok && a.q[0] == -127 && a.s[0] == s, "q = round half away (x * 127 / max), s = sum");
    bool pad = true;
    for (int i = 40; i < 16 * 32; i++) pad &= a.q[i] == 0;
    CHECK(pad && a.s[2] == 0, "padding zero");
    tw_qx_free(&a);
    /* every path's quantizer gives the reference's bytes (ragged K, zero blocks, wide ranges) */
    const int64_t Ks[] = { 1, 13, 16, 33, 100, 2304, 4304 };
    tw_kpath before = tw_kernels_path();
    for (size_t i = 0; i < sizeof Ks / sizeof Ks[0]; i++) {
        int64_t K = Ks[i], T = 3;
        float *v = malloc(sizeof(float) * (size_t)(T * K));
        for (int64_t k = 0; k < T * K; k++) v[k] = (k / 32) % 5 == 3 ? 0.0f : nrand() * (float)(1 << (k % 11));
        tw_qx r, p;
        CHECK_OK(tw_qx_quantize(&r, v, T, K, TW_KPATH_REF), "quantize ref");
        for (int pi = 1; pi < TW_KPATH_COUNT; pi++) {
            if (!tw_kpath_supported((tw_kpath)pi)) continue;
            CHECK_OK(tw_qx_quantize(&p, v, T, K, (tw_kpath)pi), "quantize path");
            size_t n = (size_t)(T * r.ld);
            CHECK(memcmp(r.q, p.q, n * 32) == 0 && memcmp(r.d, p.d, n * sizeof(float)) == 0 &&
                  memcmp(r.s, p.s, n * sizeof(int32_t)) == 0, "%s: activation bytes differ from ref, K=%lld",
                  tw_kpath_name((tw_kpath)pi), (long long)K);
            tw_qx_free(&p);
        }
        tw_qx_free(&r);
        free(v);
    }
    tw_kernels_force(before);
}

/* make check-long (TOWER_LONG=1) runs every token count on every shape and the real vocabulary head
** (256001 rows). The default run keeps:
**   - every token count (1-4: one task per row range; 5, 7: a 16-token task with a tail; 17: two
**     tasks) on the four smaller shapes, which hold every K class: a part block (13), half a block
**     (16), a K chunk of 32 blocks plus a remainder (1152, 2304);
**   - on the two largest shapes (K = 4304: a part block after 4 chunks; 9216: whole chunks only)
**     the counts 1, 5 and 17, one of each class: the token tails do not depend on K, and their K
**     classes run with each of those;
**   - an 8193-row head instead of the 256001-row one: both are 1 past a multiple of every tile and
**     task size, both give the int8 path its largest row ranges (256) and the f32 prefill enough
**     panels not to split tokens, so they run the same code; the big one only takes 31 x longer. */
static void test_kernels(tw_pool *pool) {
    const int64_t shapes[][2] = { { 37, 13 }, { 64, 16 }, { 130, 1152 }, { 96, 2304 }, { 67, 4304 }, { 41, 9216 } };
    const int64_t Ts[] = { 1, 2, 3, 4, 5, 7, 17 };
    const bool all = th_long();
    const int64_t head = all ? 256001 : 8193;
    printf("  int8 kernel on this CPU: %s\n", tw_quant_i8_kernel());
    for (int q = 0; q < 2; q++) {
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (size_t t = 0; t < sizeof Ts / sizeof Ts[0]; t++) {
                bool few = s >= 4 && Ts[t] != 1 && Ts[t] != 5 && Ts[t] != 17;
                if (all || !few) check_kernels(pool, QT[q], Ts[t], shapes[s][0], shapes[s][1], 64);
            }
        /* a vocabulary head (odd, not a multiple of any tile), decode and a prompt */
        check_kernels(pool, QT[q], 1, head, 64, 3000);
        check_kernels(pool, QT[q], 5, head, 64, 1000);
    }
    printf("  kernels vs reference of the same arithmetic: worst %.2e (int8 act), %.2e (f32 act) of sum |w x|\n",
           worst_kernel_err[TW_QACT_INT8], worst_kernel_err[TW_QACT_F32]);
}

/* ---- matmul error of quantization on realistic shapes ------------------------------------------ */

/* Random BF16-like weights (normal, std 0.02, with 1 in 1000 values x8 as outliers) and normal
** activations (1 in 50 x6, like the outlier channels of real hidden states): relative RMS error
** of y = x W^T against the unquantized product, with f32 activations (the weights' rounding
** alone) and int8 ones (both), and int8 against f32 on the same weights (the activations' part). */
/* make check-long (TOWER_LONG=1) measures all five shapes (the numbers in docs/quantization.md). The
** default run keeps three: K = 2304, K = 9216 (the longest sums) and [4304, 1152], the largest
** errors of the five. The relative error of an output depends on the value distributions, hardly on
** the shape: measured, the five are within 5 % of each other for each figure, and the largest
** 10 % or more below its bound. */
static void test_matmul_error(tw_pool *pool) {
    const int64_t shapes[][2] = { { 2304, 2304 }, { 9216, 2304 }, { 2304, 9216 }, { 4304, 1152 }, { 1152, 4304 } };
    const int64_t T = 4;
    tw_qact act0 = tw_quant_act();
    printf("  matmul rel. RMS error vs unquantized weights (T=%lld): f32 act / int8 act / int8 vs f32 act\n",
           (long long)T);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        if (!th_long() && (s == 1 || s == 4)) continue;
        int64_t N = shapes[s][0], K = shapes[s][1];
        float *w = malloc(sizeof(float) * (size_t)(N * K)), *x = malloc(sizeof(float) * (size_t)(T * K));
        float *y0 = malloc(sizeof(float) * (size_t)(T * N)), *y[2];
        y[0] = malloc(sizeof(float) * (size_t)(T * N)), y[1] = malloc(sizeof(float) * (size_t)(T * N));
        for (int64_t i = 0; i < N * K; i++) w[i] = nrand() * 0.02f * (urand() < 0.001 ? 8.0f : 1.0f);
        for (int64_t i = 0; i < T * K; i++) x[i] = nrand() * (i % 50 == 7 ? 6.0f : 1.0f);
        tw_tensor wf = { .name = "w", .type = TW_DT_F32, .ndim = 2, .shape = { N, K }, .data = w,
                         .nbytes = sizeof(float) * (size_t)(N * K) };
        tw_matmul(pool, y0, x, T, &wf, NULL);
        printf("    [%5lld, %5lld]", (long long)N, (long long)K);
        for (int q = 0; q < 2; q++) {
            uint8_t *d = quantize_rows(pool, QT[q], w, N, K);
            tw_tensor wq = { .name = "wq", .type = QT[q], .ndim = 2, .shape = { N, K }, .data = d,
                             .nbytes = tw_quant_row_bytes(QT[q], K) * (size_t)N };
            double rel[3];
            for (int mode = 0; mode < 2; mode++) {   /* y[TW_QACT_INT8], y[TW_QACT_F32] */
                tw_quant_set_act((tw_qact)mode);
                tw_matmul(pool, y[mode], x, T, &wq, NULL);
            }
            for (int c = 0; c < 3; c++) {
                const float *a = c == 0 ? y[TW_QACT_F32] : y[TW_QACT_INT8], *b = c == 2 ? y[TW_QACT_F32] : y0;
                double e = 0, r = 0;
                for (int64_t i = 0; i < T * N; i++) e += (double)(a[i] - b[i]) * (a[i] - b[i]), r += (double)b[i] * b[i];
                rel[c] = sqrt(e / r);
            }
            printf("  %s %.2e / %.2e / %.2e", tw_quant_name(QT[q]), rel[0], rel[1], rel[2]);
            CHECK(rel[0] < (q == 0 ? 0.01 : 0.12) && rel[1] < (q == 0 ? 0.012 : 0.12) && rel[2] < 0.01,
                  "%s [%lld, %lld]: matmul error %.3e (f32 act) %.3e (int8 act) %.3e (int8 vs f32)",
                  tw_quant_name(QT[q]), (long long)N, (long long)K, rel[0], rel[1], rel[2]);
            free(d);
        }
        printf("\n");
        free(w), free(x), free(y0), free(y[0]), free(y[1]);
    }
    tw_quant_set_act(act0);
}

/* ---- the fixture model quantized --------------------------------------------------------------- */

static int32_t argmax(const float *l, int32_t V) {
    int32_t b = 0;
    for (int32_t i = 1; i < V; i++) if (l[i] > l[b]) b = i;
    return b;
}

static int32_t *case_ids(const char *name, int64_t *T) {
    char rel[256];
    snprintf(rel, sizeof rel, "expected/%s/tensors.safetensors", name);
    tw_st_set *st = NULL;
    if (tw_st_open_file(th_path(rel), &st)) return NULL;
    const tw_tensor *t = tw_st_get(st, "input_ids");
    int32_t *ids = NULL;
    if (t && t->type == TW_DT_I64) {
        *T = tw_tensor_nelem(t);
        ids = malloc(sizeof(int32_t) * (size_t)*T);
        for (int64_t i = 0; i < *T; i++) { int64_t v; memcpy(&v, (const char *)t->data + 8 * i, 8); ids[i] = (int32_t)v; }
    }
    tw_st_close(st);
    return ids;
}

/* all-position logits of one case (image cases: the image encoded by the model itself) */
static float *case_logits(tw_model *m, const char *name, bool image, int64_t *T) {
    int32_t *ids = case_ids(name, T);
    CHECK(ids != NULL, "%s: input_ids", name);
    if (!ids) return NULL;
    const int32_t V = tw_model_n_vocab(m);
    float *logits = malloc(sizeof(float) * (size_t)(*T * V)), *embd = NULL;
    int32_t n_img = 0;
    if (image) {
        char rel[256];
        snprintf(rel, sizeof rel, "expected/%s/image.png", name);
        tw_image *im = NULL;
        CHECK_OK(tw_image_load(th_path(rel), NULL, &im), rel);
        if (im) CHECK_OK(tw_image_encode(m, im, &embd, &n_img), "image encode");
        tw_image_free(im);
    }
    tw_seq *s = NULL;
    CHECK_OK(tw_seq_new(m, 0, &s), "seq");
    tw_eval_opts o = { .embd = embd, .n_embd_rows = (size_t)n_img, .logits = logits };
    CHECK_OK(tw_seq_eval(s, ids, (size_t)*T, &o), name);
    tw_seq_free(s);
    free(embd);
    free(ids);
    return logits;
}

/* max |a - b|, mean |a - b| over all T x V logits, and positions with the same argmax */
static void logit_diff(const float *a, const float *b, int64_t T, int32_t V, double *mx, double *mean, int *agree) {
    double m = 0, sum = 0;
    int n = 0;
    for (int64_t t = 0; t < T; t++) {
        const float *x = a + t * V, *y = b + t * V;
        for (int32_t v = 0; v < V; v++) {
            double d = fabs((double)x[v] - y[v]);
            m = fmax(m, d);
            sum += d;
        }
        n += argmax(x, V) == argmax(y, V);
    }
    *mx = m, *mean = sum / (double)(T * V), *agree = n;
}

typedef struct qcase { const char *name; bool image; } qcase;
static const qcase CASES[] = { { "text_hello", false }, { "text_translate", false }, { "text_long", false },
                               { "img_60x60", true } };
enum { N_CASES = sizeof CASES / sizeof CASES[0] };

static void test_model(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", th_path("tiny-towervision"));
    tw_model_params p = tw_model_default_params();
    p.n_threads = 2;
    tw_model *base = NULL;
    CHECK_OK(tw_model_load(dir, &p, &base), "load bf16");
    if (!base) return;
    float *ref[N_CASES];
    int64_t T[N_CASES];
    for (int c = 0; c < N_CASES; c++) ref[c] = case_logits(base, CASES[c].name, CASES[c].image, &T[c]);
    const int32_t V = tw_model_n_vocab(base);

    char path[256];
    snprintf(path, sizeof path, "/tmp/test_quant_%ld.tower.safetensors", (long)getpid());
    printf("  fixture model, logits vs BF16 (max |diff| / mean |diff| / top-1 agreement):\n");
    for (int q = 0; q < 2; q++)
        for (int keep = 0; keep < 2; keep++) {
            tw_quant_opts o = { .type = QT[q], .keep_vision = keep, .n_threads = 2 };
            CHECK_OK(tw_quantize_model(dir, path, &o), "quantize");
            tw_model *m = NULL;
            CHECK_OK(tw_model_load(path, &p, &m), "load quantized file");
            if (!m) continue;
            const tw_gemma2_layer *l0 = &m->tw.layers[0];
            CHECK(l0->wq->type == QT[q] && m->tw.embed->type == QT[q] && m->tw.lm_head == m->tw.embed,
                  "text weights are %s", tw_quant_name(QT[q]));
            CHECK(m->vw.layers[0].fc1_w->type == (keep ? TW_DT_BF16 : QT[q]) && m->vw.patch_w->type == TW_DT_BF16 &&
                  l0->attn_norm->type == TW_DT_BF16, "vision / norms storage (keep_vision %d)", keep);
            CHECK(m->tmpl != NULL && m->n_stop_ids == base->n_stop_ids, "template and stop ids from the file");
            int32_t *a = NULL, *b = NULL;
            size_t na = 0, nb = 0;
            CHECK_OK(tw_tokenize(m->tok, "Hello, world!", 13, 1, &a, &na), "tokenize q");
            CHECK_OK(tw_tokenize(base->tok, "Hello, world!", 13, 1, &b, &nb), "tokenize base");
            CHECK(na == nb && a && b && memcmp(a, b, na * sizeof *a) == 0, "same tokens from the embedded tokenizer");
            free(a), free(b);
            /* logits in the default int8-activation mode and, without keep_vision, in the f32 one
            ** too, with the difference between the two (the activations' share of the error) */
            float *lg8[N_CASES] = { 0 };
            double dmx[N_CASES] = { 0 }, dmean[N_CASES] = { 0 };
            int dagree[N_CASES] = { 0 };
            for (int mode = 0; mode < (keep ? 1 : 2); mode++) {
                tw_qact act0 = tw_quant_set_act((tw_qact)mode);
                printf("    %s%s %s act:", tw_quant_name(QT[q]), keep ? " (vision bf16)" : "              ",
                       mode == TW_QACT_INT8 ? "int8" : "f32 ");
                for (int c = 0; c < N_CASES; c++) {
                    if (!ref[c] || (keep && !CASES[c].image)) continue;   /* text: the same weights */
                    int64_t Tq;
                    float *lg = case_logits(m, CASES[c].name, CASES[c].image, &Tq);
                    if (!lg) continue;
                    double mx, mean;
                    int agree;
                    logit_diff(lg, ref[c], T[c], V, &mx, &mean, &agree);
                    printf("  %s %.3f/%.4f/%d of %lld", CASES[c].name, mx, mean, agree, (long long)T[c]);
                    /* Loose bounds: the tiny model's random weights are tuned to make every op matter
                    ** (attention logits near the 50 softcap), so it amplifies any weight error far
                    ** more than a trained model; docs/quantization.md has the realistic numbers. */
                    CHECK(mx < (q == 0 ? 20.0 : 40.0) && mean < (q == 0 ? 1.0 : 3.0),
                          "%s %s: logit diff max %.3f mean %.4f", tw_quant_name(QT[q]), CASES[c].name, mx, mean);
                    CHECK(agree >= (q == 0 ? T[c] * 6 / 10 : 1), "%s %s: top-1 agreement %d of %lld",
                          tw_quant_name(QT[q]), CASES[c].name, agree, (long long)T[c]);
                    if (mode == TW_QACT_INT8) {
                        lg8[c] = lg;
                    } else {
                        if (lg8[c]) logit_diff(lg8[c], lg, T[c], V, &dmx[c], &dmean[c], &dagree[c]);
                        free(lg);
                    }
                }
                printf("\n");
                tw_quant_set_act(act0);
            }
            if (!keep) {
                printf("    %s int8 vs f32 act:     ", tw_quant_name(QT[q]));
                for (int c = 0; c < N_CASES; c++)
                    printf("  %s %.3f/%.4f/%d of %lld", CASES[c].name, dmx[c], dmean[c], dagree[c], (long long)T[c]);
                printf("\n");
            }
            for (int c = 0; c < N_CASES; c++) free(lg8[c]);
            CHECK(strcmp(tw_model_dir(m), path) == 0, "tw_model_dir is the packed file: %s", tw_model_dir(m));
            tw_model_free(m);
        }
    /* a corrupted quant record is refused with the tensor's name */
    tw_st_set *st = NULL;
    CHECK_OK(tw_st_open_file(path, &st), "open raw");
    const tw_tensor *raw = tw_st_get(st, "model.language_model.layers.0.self_attn.q_proj.weight");
    CHECK(raw && raw->type == TW_DT_U8, "stored as U8 blob before tw_quant_apply");
    CHECK_OK(tw_quant_apply(st), "apply");
    CHECK(raw && raw->type == TW_DT_Q4_0 && raw->shape[1] == 64, "retyped to Q4_0 [N, 64]");
    tw_st_close(st);
    CHECK(tw_quant_is_packed(path) && !tw_quant_is_packed(dir), "packed file detection");
    unlink(path);
    for (int c = 0; c < N_CASES; c++) free(ref[c]);
    tw_model_free(base);
}

/* ---- packed files: nothing written, the same small files as the directory ------------------- */

/* entries of a directory other than . and .. (-1 when it cannot be read) */
static int dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static bool same_ids(const tw_tokenizer *a, const tw_tokenizer *b, const char *text, int add_special) {
    int32_t *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    bool ok = tw_tokenize(a, text, strlen(text), add_special, &x, &nx) == TW_OK &&
              tw_tokenize(b, text, strlen(text), add_special, &y, &ny) == TW_OK && nx == ny && nx > 0 &&
              memcmp(x, y, nx * sizeof *x) == 0;
    free(x);
    free(y);
    return ok;
}

/* Everything but the weights that tw_model_load reads from the small files. */
static void check_same_files(const tw_model *d, const tw_model *p, const char *what) {
    static const char *const texts[] = { "Hello, world!", "Translate to Portuguese: the cat sleeps.\n",
                                         "<start_of_turn>user\n<image>\nWhat is this?<end_of_turn>\n",
                                         "  multiple   spaces\tand \xC3\xA9t\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC" };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        for (int sp = 0; sp < 2; sp++)
            CHECK(same_ids(d->tok, p->tok, texts[i], sp), "%s: same ids for text %zu (add_special %d)", what, i, sp);
    CHECK(tw_tokenizer_vocab_size(d->tok) == tw_tokenizer_vocab_size(p->tok) &&
          tw_tokenizer_bos(d->tok) == tw_tokenizer_bos(p->tok), "%s: vocab size and bos", what);
    CHECK(d->bos_token && p->bos_token && strcmp(d->bos_token, p->bos_token) == 0 && d->eos_token && p->eos_token &&
          strcmp(d->eos_token, p->eos_token) == 0, "%s: bos / eos strings", what);
    CHECK(d->n_stop_ids > 0 && d->n_stop_ids == p->n_stop_ids &&
          memcmp(d->stop_ids, p->stop_ids, d->n_stop_ids * sizeof d->stop_ids[0]) == 0, "%s: stop ids", what);
    const tw_message msgs[] = { { "user", "<image>\nDescribe the picture." }, { "assistant", "A cat." },
                                { "user", "Translate that to German." } };
    char *rd = NULL, *rp = NULL;
    CHECK_OK(tw_chat_render(d, msgs, 3, 1, &rd), "render (directory)");
    CHECK_OK(tw_chat_render(p, msgs, 3, 1, &rp), "render (packed)");
    CHECK(rd && rp && strcmp(rd, rp) == 0, "%s: same rendered chat", what);
    free(rd);
    free(rp);
    CHECK(d->has_vision == p->has_vision && d->image_token_id == p->image_token_id &&
          d->video_token_id == p->video_token_id, "%s: media tokens", what);
    const tw_preproc *a = &d->preproc, *b = &p->preproc;
    CHECK(a->tile == b->tile && a->patch == b->patch && a->resample == b->resample &&
          a->do_rescale == b->do_rescale && a->do_normalize == b->do_normalize &&
          a->rescale_factor == b->rescale_factor && memcmp(a->mean, b->mean, sizeof a->mean) == 0 &&
          memcmp(a->std, b->std, sizeof a->std) == 0, "%s: image processor config", what);
    const tw_video_preproc *v = &d->video_preproc, *w = &p->video_preproc;
    CHECK(v->height == w->height && v->width == w->width && v->shortest_edge == w->shortest_edge &&
          v->resample == w->resample && v->do_resize == w->do_resize && v->do_rescale == w->do_rescale &&
          v->do_normalize == w->do_normalize && v->do_convert_rgb == w->do_convert_rgb &&
          v->rescale_factor == w->rescale_factor && memcmp(v->mean, w->mean, sizeof v->mean) == 0 &&
          memcmp(v->std, w->std, sizeof v->std) == 0, "%s: video processor config", what);
}

/* The image processor's pixels for the fixture image, from both models. */
static void check_same_pixels(const tw_model *d, const tw_model *p) {
    tw_image *im = NULL;
    CHECK_OK(tw_image_load(th_path("expected/img_60x60/image.png"), NULL, &im), "image");
    if (!im) return;
    float *x = NULL, *y = NULL;
    int32_t nx = 0, ny = 0;
    CHECK_OK(tw_image_preprocess(d, im, &x, &nx), "preprocess (directory)");
    CHECK_OK(tw_image_preprocess(p, im, &y, &ny), "preprocess (packed)");
    size_t n = (size_t)nx * 3 * (size_t)d->preproc.tile * (size_t)d->preproc.tile;
    CHECK(x && y && nx == ny && nx > 0 && memcmp(x, y, n * sizeof *x) == 0, "same pixel values (%d tiles)", nx);
    free(x);
    free(y);
    tw_image_free(im);
}

/* Loads path with TMPDIR set to tmpdir (NULL: unset), then restores TMPDIR. */
static tw_status load_with_tmpdir(const char *path, const char *tmpdir, tw_model **m) {
    const char *old = getenv("TMPDIR");
    char *saved = old ? strdup(old) : NULL;
    if (tmpdir) setenv("TMPDIR", tmpdir, 1);
    else unsetenv("TMPDIR");
    tw_model_params p = tw_model_default_params();
    p.n_threads = 2;
    tw_status st = tw_model_load(path, &p, m);
    if (saved) setenv("TMPDIR", saved, 1);
    else unsetenv("TMPDIR");
    free(saved);
    return st;
}

static void test_packed_files(void) {
    /* A copy of the vision fixture whose image processor asks for values unlike the SigLIP
    ** defaults (bilinear, other mean and std), so reading the embedded file is visible. */
    cv_opts co = cv_default();
    char *src = cv_make(th_path("tiny-towervision"), &co);
    CHECK(src != NULL, "variant written");
    if (!src) return;
    char *pp = tw_path_join(src, "preprocessor_config.json");
    static const char pp_json[] =
        "{\"crop_size\": {\"height\": 60, \"width\": 60}, \"size\": {\"shortest_edge\": 60}, \"resample\": 2,"
        " \"do_rescale\": true, \"rescale_factor\": 0.00392156862745098, \"do_normalize\": true,"
        " \"image_mean\": [0.25, 0.5, 0.75], \"image_std\": [0.5, 0.25, 0.125]}";
    CHECK_OK(tw_write_file_atomic(pp, pp_json, sizeof pp_json - 1), "write preprocessor_config.json");

    char path[256], vpath[256], tmp[256];
    snprintf(path, sizeof path, "%s/test_quant_packed_%ld.tower.safetensors", cv_tmp_root(), (long)getpid());
    snprintf(vpath, sizeof vpath, "%s/test_quant_video_%ld.tower.safetensors", cv_tmp_root(), (long)getpid());
    snprintf(tmp, sizeof tmp, "%s/test_quant_tmpdir_XXXXXX", cv_tmp_root());
    tw_quant_opts o = { .type = TW_DT_Q8_0, .n_threads = 2 };
    CHECK_OK(tw_quantize_model(src, path, &o), "quantize the variant");
    tw_model_params mp = tw_model_default_params();
    mp.n_threads = 2;
    tw_model *d = NULL, *m = NULL;
    CHECK_OK(tw_model_load(src, &mp, &d), "load the variant directory");

    /* TMPDIR that does not exist: nothing to write into, and nothing needs to be written */
    CHECK_OK(load_with_tmpdir(path, "/nonexistent-tower-tmpdir/sub", &m), "packed load, TMPDIR missing");
    if (m) CHECK(strcmp(tw_model_dir(m), path) == 0, "tw_model_dir is the file");
    tw_model_free(m);
    m = NULL;
    /* TMPDIR that exists: it stays empty while the model is loaded and after it is freed */
    CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
    CHECK_OK(load_with_tmpdir(path, tmp, &m), "packed load, TMPDIR watched");
    CHECK(dir_entries(tmp) == 0, "nothing created in TMPDIR by loading (%d entries)", dir_entries(tmp));
    if (d && m) {
        CHECK(m->preproc.resample == TW_RESAMPLE_BILINEAR && m->preproc.mean[0] == 0.25f && m->preproc.std[2] == 0.125f,
              "the embedded preprocessor_config.json is the one read");
        check_same_files(d, m, "vision");
        check_same_pixels(d, m);
    }
    tw_model_free(m);
    m = NULL;
    CHECK(dir_entries(tmp) == 0, "nothing left in TMPDIR after free");
    rmdir(tmp);

    /* a corrupt embedded file: the message names the packed file and the embedded file */
    static const char bad[] = "{\"resample\": 3,\n \"image_mean\": [0.5, 0.5,\n";
    CHECK_OK(tw_write_file_atomic(pp, bad, sizeof bad - 1), "write a broken preprocessor_config.json");
    CHECK_OK(tw_quantize_model(src, path, &o), "quantize with a broken processor config");
    char want[600];
    snprintf(want, sizeof want, "%s:preprocessor_config.json:", path);
    tw_status st = load_with_tmpdir(path, "/nonexistent-tower-tmpdir", &m);
    CHECK(st == TW_E_FORMAT && m == NULL && strstr(tw_last_error(), want) && strstr(tw_last_error(), "invalid JSON"),
          "broken embedded processor config: %s %s", tw_status_name(st), tw_last_error());
    tw_model_free(d);
    free(pp);
    cv_remove(src);

    /* the video fixture: its video_preprocessor_config.json (74 x 74) comes from the file too */
    const char *vdir = th_path("tiny-towervideo");
    CHECK_OK(tw_quantize_model(vdir, vpath, &o), "quantize tiny-towervideo");
    d = m = NULL;
    CHECK_OK(tw_model_load(vdir, &mp, &d), "load tiny-towervideo");
    CHECK_OK(load_with_tmpdir(vpath, "/nonexistent-tower-tmpdir", &m), "packed tiny-towervideo, TMPDIR missing");
    if (d && m) {
        CHECK(m->video_token_id >= 0 && m->video_preproc.height == 74 && m->video_preproc.width == 74,
              "embedded video_preprocessor_config.json read (%dx%d)", m->video_preproc.height, m->video_preproc.width);
        check_same_files(d, m, "video");
    }
    tw_model_free(d);
    tw_model_free(m);
    unlink(vpath);

    /* a corrupt embedded config.json: a syntax error, then a field of the wrong type */
    struct { cv_opts o; tw_status st; const char *must; } bc[2] = { { cv_default(), TW_E_FORMAT, "invalid JSON" },
                                                                    { cv_default(), TW_E_CONFIG, "field \"text_config.hidden_size\"" } };
    bc[0].o.bad_json = 1;
    bc[1].o.set_key = "text_config.hidden_size";
    bc[1].o.set_json = "\"wide\"";
    for (int i = 0; i < 2; i++) {
        char *cdir = cv_make(th_path("tiny-towervision"), &bc[i].o);
        CHECK(cdir != NULL, "corrupt variant %d written", i);
        if (!cdir) continue;
        CHECK_OK(tw_quantize_model(cdir, path, &o), "quantize with a corrupt config.json");
        m = NULL;
        st = load_with_tmpdir(path, "/nonexistent-tower-tmpdir", &m);
        snprintf(want, sizeof want, "%s:config.json", path);
        CHECK(st == bc[i].st && m == NULL && strstr(tw_last_error(), want) && strstr(tw_last_error(), bc[i].must),
              "corrupt embedded config.json %d: %s %s", i, tw_status_name(st), tw_last_error());
        cv_remove(cdir);
    }
    unlink(path);
}

int main(void) {
    tw_pool *pool = tw_pool_new(2);
    double t0 = tw_time_ms();
    test_format();
    test_act_quant();
    printf("  (formats %.1f s)\n", (tw_time_ms() - t0) / 1e3);
    t0 = tw_time_ms();
    test_kernels(pool);
    printf("  (kernels %.1f s)\n", (tw_time_ms() - t0) / 1e3);
    t0 = tw_time_ms();
    test_matmul_error(pool);
    printf("  (matmul error %.1f s)\n", (tw_time_ms() - t0) / 1e3);
    t0 = tw_time_ms();
    test_model();
    printf("  (model %.1f s)\n", (tw_time_ms() - t0) / 1e3);
    t0 = tw_time_ms();
    test_packed_files();
    printf("  (packed files %.1f s)\n", (tw_time_ms() - t0) / 1e3);
    tw_pool_free(pool);
    return th_report();
}
