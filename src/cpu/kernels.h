/*
** kernels.h — the math the models call. Model code never knows which SIMD path or weight type it
** got; kernels never know about models. Every kernel has a plain C version (in kernels.c) that
** runs anywhere and is the yardstick for the faster paths (kernels_avx2.c, kernels_avx512.c, and
** amx = avx512 plus gemm_amx.c's tile GEMM for BF16 weights), which are picked once at start from
** CPUID (tw_kernels_init) and can be forced lower with TOWER_KERNELS=ref|avx2|avx512|amx or
** tw_kernels_force(). A path the CPU cannot run is never chosen.
**
** Shapes use one vocabulary: T tokens (rows of activations), K input features, N output
** features. Activations are f32, row-major [T, K]; weights keep their stored type, [N, K].
*/
#ifndef TW_KERNELS_H
#define TW_KERNELS_H

#include "safetensors.h"

/* In order of preference: a later path can run everything an earlier SIMD one can (amx needs all
** of avx512), so "avx512 or better" is p >= TW_KPATH_AVX512. */
typedef enum tw_kpath { TW_KPATH_REF, TW_KPATH_AVX2, TW_KPATH_AVX512, TW_KPATH_AMX, TW_KPATH_COUNT } tw_kpath;

/* The path whose vector kernels (norms, attention, quantized products, decode) run on path p: the
** amx path adds only a matrix-matrix product, everything else is avx512's. */
static inline tw_kpath tw_kpath_vector(tw_kpath p) { return p == TW_KPATH_AMX ? TW_KPATH_AVX512 : p; }

/* Picks the best path the CPU supports, or the one TOWER_KERNELS names if the CPU can run it
** (otherwise the best one, with the reason in tw_kernels_note()); returns it. Idempotent. */
tw_kpath    tw_kernels_init(void);
tw_kpath    tw_kernels_path(void);
bool        tw_kernels_force(tw_kpath p);     /* false (path unchanged) if the CPU cannot run p */
const char *tw_kpath_name(tw_kpath p);
bool        tw_kpath_parse(const char *s, tw_kpath *out);   /* "ref" / "avx2" / "avx512" / "amx" */
bool        tw_kpath_supported(tw_kpath p);
const char *tw_kpath_missing(tw_kpath p);     /* "" if supported, else the missing features     */
const char *tw_kernels_note(void);            /* why the active path differs from the request   */
const char *tw_cpu_features(void);            /* "avx2 fma avx512f avx512bf16 amx-tile ..." */
/* tw_model_params.kernels and .matmul applied (model.c, at load): an unknown name or a path the
** CPU cannot run is an error naming the field (nothing changed); otherwise the path and the mode
** are set unless TOWER_KERNELS / TOWER_MATMUL are set, which take precedence. NULL or "" and
** TW_MATMUL_DEFAULT change nothing. */
tw_status   tw_kernels_configure(const char *kernels, tw_matmul_mode matmul);

/* y[T,N] = x[T,K] . W[N,K]^T (+ bias[N]). W: any type of wtype.h's table (F32, F16, BF16, Q8_0,
** Q4_0: model.c refuses others at load, tw_wtype_check); bias any float type or NULL.
** Accumulates in f32. Rows of y are computed in parallel on the pool. Defined in wtype.c, which
** hands W to the product its type has on the active path. */
void tw_matmul(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const tw_tensor *bias);
/* T rows that are independent decode steps (a batch of sequences): each row's result is
** bit-identical to tw_matmul of that row alone, and where a kernel allows (avx2, float weights)
** the weights are read once for all rows instead of once per row. */
void tw_matmul_rows(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const tw_tensor *bias);

/* Optional faster matrix-matrix products (T > 1) with AVX512-BF16 vdpbf16ps: x is rounded to
** bf16 once per call (round to nearest even), BF16 weights are used as stored, sums in f32. About
** twice the arithmetic rate of the f32 FMA path, but results differ from it by up to
** 2^-8 * sum_k |w_k x_k| (docs/kernels.md). Default off; TOWER_MATMUL=bf16 turns it on at start,
** this switches it at run time. It applies only to BF16 weights on the avx512 path of a CPU with
** avx512bf16, and on the amx path (tile products on x rounded once instead of split in three);
** elsewhere the call is accepted and changes nothing. Returns the previous setting.
** tw_kernels_bf16_activations() says whether it is on and can run on this CPU. */
bool tw_kernels_set_bf16_activations(bool on);
bool tw_kernels_bf16_activations(void);

/* From how many tokens the avx512 and avx2 paths use their packed-panel products (tw_gemm_avx512,
** tw_gemm_avx2), and the amx path the tile product for BF16 weights (tw_gemm_amx), instead of the
** row-dot tiles; for tests and benchmarks. Returns the previous value. */
int64_t tw_kernels_set_gemm_min_tokens(int64_t t);

/* Weights packed once for the matrix-matrix path (optional). Without it, every call with T >= 2
** packs the weights it needs, per task, into a small buffer (no extra RAM); with it, a BF16
** weight is packed once into the panel layout the avx512 GEMM reads (as much RAM again as the
** weight) and calls skip that step: measured gain in docs/kernels.md. Model code that wants it
** calls tw_kernels_pack_weight after loading and tw_kernels_unpack_weight before the weight's
** memory goes away (the copy is found by W->data: a stale entry would be used for new data at
** the same address). Pack returns false when it does not apply (not BF16 2-D, no avx512 path)
** or memory is short; both are safe to call from several threads. */
bool   tw_kernels_pack_weight(const tw_tensor *W);
void   tw_kernels_unpack_weight(const tw_tensor *W);
size_t tw_kernels_packed_bytes(void);   /* RAM held by packed copies */

/* One row of a 2-D weight tensor widened to f32 (embedding lookup). wtype.c, by the type's table. */
void tw_tensor_row_f32(const tw_tensor *t, int64_t row, float *out);
/* Whole tensor widened to f32 (small tensors: norms, biases). out has tw_tensor_nelem floats. */
void tw_tensor_to_f32(const tw_tensor *t, float *out);

/* Gemma RMSNorm over rows of n: y = x * rsqrt(mean(x^2) + eps) * (1 + w). y may equal x. */
void tw_rmsnorm_1p(float *y, const float *x, const float *w, int64_t T, int64_t n, float eps);
/* LayerNorm (biased variance): y = (x - mean) * rsqrt(var + eps) * w + b. y may equal x. */
void tw_layernorm(float *y, const float *x, const float *w, const float *b, int64_t T, int64_t n, float eps);

float tw_gelu_tanh(float x);   /* 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))  (gelu_pytorch_tanh) */
float tw_gelu_erf(float x);    /* 0.5x(1 + erf(x / sqrt 2))                     (exact "gelu")      */
/* y[i] = tw_gelu_tanh(x[i]) for n values (y may equal x). Vectorised on the SIMD paths (avx512:
** about 25x faster than the scalar loop), within 2e-7 * |x| (about 2 ulp) of the scalar function. */
void  tw_gelu_tanh_array(float *y, const float *x, int64_t n);

/* ---- between kernels.c and the SIMD files (model code does not call these) ---------------- */

/* The float weight types' matrix products, one per path: the entries of wtype.c's table for
** F32, F16 and BF16 (the quantized types' are in quant.h). Same contract as tw_matmul, except that
** T, N and K are >= 1 and the bias is f32 [N] or NULL. A path's function may only be called when
** tw_kpath_supported says the CPU runs it. */
void tw_matmul_f32_ref(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias);
void tw_matmul_f16_ref(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias);
void tw_matmul_bf16_ref(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias);
void tw_matmul_f_avx2(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias);
void tw_matmul_f_avx512(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias);
void tw_matmul_bf16_amx(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias);

/* A reusable buffer of at least n bytes (64-byte aligned) for one call's packing, and its return;
** NULL when memory is short (then give nothing back). src/cpu/workspace.c. */
void *tw_ws_take(size_t n, int *slot);
void  tw_ws_give(void *p, int slot);

/* One block of a matmul, handed by the dispatcher in kernels.c to a SIMD path:
**     y[t, n] (+)= sum_k x[t, k] * w[n, k]      t < nt, n < nn, k < nk
** y, x and w already point at the block's first element; ld* are row strides in elements.
** With accumulate, the sums are added to y; otherwise y = sums (+ bias[n] if bias). */
typedef struct tw_mm_block {
    float       *y;   int64_t ldy;   /* [nt, ldy]                          */
    const float *x;   int64_t ldx;   /* [nt, ldx]                          */
    const void  *w;   int64_t ldw;   /* [nn, ldw] of type wt               */
    tw_dtype     wt;                 /* F32, F16 or BF16                   */
    int64_t      nt, nn, nk;
    const float *bias;               /* [nn] or NULL; used when !accumulate */
    bool         accumulate;
} tw_mm_block;

void tw_mm_block_avx2(const tw_mm_block *b);     /* only call when tw_kpath_supported(AVX2)   */
/* Decode rows of b->nt <= TW_DEC_ROWS_MAX tokens over the whole K (b->nk = K <= TW_DEC_KMAX, no
** accumulate): each token's outputs bit-identical to the one-token product, each weight row read
** once. xp: a [nt, ldxp] scratch (32-byte aligned, ldxp a multiple of 8 and >= K) for bf16. */
enum { TW_DEC_ROWS_MAX = 8, TW_DEC_KMAX = 16384 };
void tw_mm_dec_rows_avx2(const tw_mm_block *b, float *xp, int64_t ldxp);
bool tw_matmul_rows_avx2(tw_pool *pool, float *y, const float *x, int64_t T, const tw_tensor *W, const float *bias);

/* The whole product y[T,N] = x[T,K] . W[N,K]^T (+ bias[N] f32) for T > 1 on the pool, with
** weights packed per task into 48-row panels (src/cpu/gemm_avx512.c). bf16_dot: the vdpbf16ps variant
** (BF16 weights only, CPU must have avx512bf16; ignored for other weight types). Returns false
** (nothing written) when it cannot allocate its packing buffers. */
bool tw_gemm_avx512(tw_pool *pool, float *y, const float *x, int64_t T, int64_t N, int64_t K, const void *w,
                    tw_dtype wt, const void *packed, const float *bias, bool bf16_dot);
/* packed: NULL, or w as laid out by tw_gemm_pack_avx512 (BF16 only), which tw_kernels_pack_weight
** keeps. Returns a tw_aligned_alloc'ed copy (*bytes long) or NULL. */
void *tw_gemm_pack_avx512(const void *w, int64_t N, int64_t K, size_t *bytes);
void tw_mm_block_avx512(const tw_mm_block *b);   /* only call when tw_kpath_supported(AVX512) */

/* The same product on AMX tiles (src/cpu/gemm_amx.c) for BF16 weights w [N, K], any T >= 1: only call
** on the amx path. x enters the tiles as `parts` bf16 terms per value (each the rounding of what
** the previous ones left): 3 represent every f32 of magnitude >= 2^-103 exactly, so results differ
** from the f32 paths only in the order of the f32 sums (the default); 2 leave up to 2^-17 |x| out (within
** 2^-17 sum|w x|); 1 is x rounded to bf16 (2^-8 sum|w x|, the TOWER_MATMUL=bf16 mode). Each part
** is one tile product per step. packed: NULL or tw_gemm_pack_avx512's copy of w. bias: f32 [N] or
** NULL. Returns false (nothing written) when it cannot allocate its buffers. */
bool tw_gemm_amx(tw_pool *pool, float *y, const float *x, int64_t T, int64_t N, int64_t K, const uint16_t *w,
                 const void *packed, const float *bias, int parts);
typedef bool (*tw_gemm_amx_fn)(tw_pool *pool, float *y, const float *x, int64_t T, int64_t N, int64_t K,
                               const uint16_t *w, const void *packed, const float *bias, int parts);
/* Tests only (tests/test_amx.c, on machines without AMX): let the amx path run with fn — the build
** of gemm_amx.c against amx_ops.h's tile emulator — in place of tw_gemm_amx, as if CPUID, the OS and
** the kernel said yes, so that dispatch, the self-check and tw_kernels_force(TW_KPATH_AMX) can be
** exercised. fn must pass the same self-check the real kernel gets (else false, with the reason in
** tw_kernels_note(), nothing changed); the avx512 path with avx512bf16 must be supported. NULL
** restores the real detection (and leaves the amx path if it is active and not really supported). */
bool tw_kernels_amx_substitute(tw_gemm_amx_fn fn);
/* The same contract on the avx2 path (src/cpu/gemm_avx2.c): F32/F16/BF16 weights, T > 1; returns false
** (nothing written) when it does not handle the call, and the row-dot tiles run instead. */
bool tw_gemm_avx2(tw_pool *pool, float *y, const float *x, int64_t T, int64_t N, int64_t K, const void *w,
                  tw_dtype wt, const float *bias);

/* The norms above, vectorised (same sums in double, same f32 formula per element). */
void tw_rmsnorm_1p_avx512(float *y, const float *x, const float *w, int64_t T, int64_t n, float eps);
void tw_layernorm_avx512(float *y, const float *x, const float *w, const float *b, int64_t T, int64_t n, float eps);
void tw_gelu_tanh_avx512(float *y, const float *x, int64_t n);
void tw_rmsnorm_1p_avx2(float *y, const float *x, const float *w, int64_t T, int64_t n, float eps);
void tw_layernorm_avx2(float *y, const float *x, const float *w, const float *b, int64_t T, int64_t n, float eps);
void tw_gelu_tanh_avx2(float *y, const float *x, int64_t n);

#endif
