/*
** attn.h — scaled dot-product attention for both models (SigLIP tiles, Gemma2 prefill and decode).
**
**   out[t, h] = sum_j softmax_j(cap(scale * q[t, h] . k[j, g])) v[j, g]     g = h / (n_head / n_kv)
**
** cap(s) = softcap * tanh(s / softcap) when softcap > 0 (Gemma2), else s. With causal, query t sits
** at absolute position p = q_pos + t and key j (position j) is visible iff j <= p and, when
** window > 0, p - j < window (Gemma2's sliding layers). Without causal every key is visible.
** Softmax is the reference one: max-subtracted exp, normalised by the sum.
**
** Layouts are row-major with explicit row strides (in elements), so the kernel reads the models'
** buffers in place: Gemma2's queries [Tq, n_head*D] and KV cache [n_alloc, n_kv*D]; SigLIP's
** interleaved q|k|v rows [T, 3C] (q at +0, k at +C, v at +2C, ld 3C). Head h of row t is at
** base + t * ld + h * D. The output is written, never accumulated; it must not alias q, k or v.
**
** The plain C version (tw_attention_ref) is the yardstick; the SIMD paths (AVX-512, AVX2) follow
** the kernel path of kernels.h (tw_kernels_path / TOWER_KERNELS) and run blocks of queries against
** blocks of keys with an online softmax (flash attention), or a whole row of keys per block when
** that is faster (see docs/attention.md for the measurements and the choice per shape).
**
** Keys and values may be stored as f32, f16 or bf16 (kv_type: Gemma2's KV cache, tw_seq_params);
** the queries and the output are f32. 16-bit K/V are widened exactly to f32 as they are read, so
** every path computes the same function as tw_attention_ref on the widened values. Decode (a few
** query rows: queries x GQA group <= 8) has its own kernel, tw_attn_decode_*: each query row is
** dotted with key rows in place (no transpose), the key range is cut into equal parts that the
** threads stream through for all kv heads at once, and the parts' (max, sum, output) are merged.
*/
#ifndef TW_ATTN_H
#define TW_ATTN_H

#include "kernels.h"

typedef struct tw_attn_args {
    const float *q;  int64_t ldq;     /* [Tq, ldq]  head h of row t at q + t*ldq + h*D        */
    const void  *k;  int64_t ldk;     /* [Tk, ldk]  kv head g of key j at k + j*ldk + g*D     */
    const void  *v;  int64_t ldv;     /* [Tk, ldv]  (k, v, ldk, ldv in elements of kv_type)    */
    tw_kv_type   kv_type;             /* element type of k and v; 0 = TW_KV_F32                */
    float       *out; int64_t ldo;    /* [Tq, ldo]  head h of row t at out + t*ldo + h*D      */
    int32_t      Tq, Tk;              /* queries, keys (causal: Tk > q_pos + Tq - 1)           */
    int32_t      n_head, n_kv, D;     /* n_head a multiple of n_kv (GQA)                       */
    float        scale;               /* multiplies q.k                                        */
    float        softcap;             /* 0: none                                               */
    bool         causal;
    int32_t      q_pos;               /* causal: absolute position of query 0                  */
    int32_t      window;              /* causal: 0 = none, else keys with p - j < window        */
} tw_attn_args;

/* Runs on the pool with the active kernel path. */
void tw_attention(tw_pool *pool, const tw_attn_args *a);

/* ---- for tests and the benchmark --------------------------------------------------------- */

/* The plain C loops, one (query, head) at a time, single-threaded order of operations. */
void tw_attention_ref(tw_pool *pool, const tw_attn_args *a);

/* How a SIMD path cuts the work: queries per block (query rows, before the GQA group is folded
** in) and keys per block (0: all visible keys in one block — the exact two-pass softmax).
** tw_attention picks these per shape; the tests and the benchmark pass their own. */
typedef struct tw_attn_plan {
    int32_t bq, bk;
    bool    decode;    /* the decode kernel (queries x group <= 8; bq, bk unused)            */
    int32_t n_split;   /* decode: key ranges (0: from the thread count and the context)       */
} tw_attn_plan;

tw_attn_plan tw_attention_plan(const tw_attn_args *a, int n_threads);
/* false if the CPU cannot run the path (nothing is written) */
bool tw_attention_with(tw_pool *pool, const tw_attn_args *a, tw_kpath path, tw_attn_plan plan);

/* ---- 16-bit keys and values ---------------------------------------------------------------- */

/* Bytes of one element. */
size_t tw_kv_size(tw_kv_type t);
/* dst[i] = src[i] rounded to t (to nearest even; f16 overflows to +-inf, keeps subnormals), n
** elements; with the active kernel path. f32: a copy. */
void tw_kv_store(void *dst, tw_kv_type t, const float *src, int64_t n);
/* One value between f32 and the 16-bit types, plain C: bf16 by moving the 16 bits (round to
** nearest even; NaN stays NaN), f16 through _Float16 (GCC >= 12 on x86-64: round to nearest even,
** subnormals kept). Inline so that the SIMD files' tails share them without calling attn.c. */
static inline float tw_kv_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t tw_kv_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1)) >> 16);
}

static inline float tw_kv_f16_to_f32(uint16_t h) {
    _Float16 x;
    memcpy(&x, &h, 2);
    return (float)x;
}

static inline uint16_t tw_kv_f32_to_f16(float f) {
    _Float16 x = (_Float16)f;
    uint16_t h;
    memcpy(&h, &x, 2);
    return h;
}

/* dst[i] = src[i] widened to f32 (exact), plain C: inline for the SIMD files' tails, out of line
** (tw_kv_widen_ref, attn.c) for everyone else; and the rounding of one value, plain C. */
void tw_kv_widen_ref(float *dst, const void *src, tw_kv_type t, int64_t n);
static inline void tw_kv_widen_inl(float *dst, const void *src, tw_kv_type t, int64_t n) {
    const uint16_t *h = src;
    switch (t) {
    case TW_KV_F32: memcpy(dst, src, sizeof(float) * (size_t)n); break;
    case TW_KV_F16: for (int64_t i = 0; i < n; i++) dst[i] = tw_kv_f16_to_f32(h[i]); break;
    case TW_KV_BF16: for (int64_t i = 0; i < n; i++) dst[i] = tw_kv_bf16_to_f32(h[i]); break;
    }
}

static inline float tw_kv_round_ref(float x, tw_kv_type t) {
    switch (t) {
    case TW_KV_F16: return tw_kv_f16_to_f32(tw_kv_f32_to_f16(x));
    case TW_KV_BF16: return tw_kv_bf16_to_f32(tw_kv_f32_to_bf16(x));
    default: return x;
    }
}

/* ---- between attn.c and the SIMD files ----------------------------------------------------
** attn.c calls these through its table of per-path kernels; they call nothing of attn.c. */

/* One query block against one key block, all rows sharing kv head g (GQA rows folded in):
**   S[i, j]   = Qp[i, :] . K[j, :]                          i < m, j < nk
**   transform S (scale, softcap, visible range [lo_i, hi_i) of block columns else -inf),
**   m_i'      = max(m_i, max_j S[i, j]),  P = exp(S - m_i'),  l_i = l_i e^(m_i - m_i') + sum_j P
**   O[i, :]   = O[i, :] e^(m_i - m_i') + sum_j P[i, j] V[j, :]
** Qp: [m, D] packed, O: [m, ldo_p] accumulator, S: [m, lds] scratch (lds >= nk rounded up to
** the vector width), kt: scratch for the packed key block ([D, lds]), K/V rows read in place. */
typedef struct tw_attn_block {
    const float *qp;   int32_t m, D;
    const float *k;    int64_t ldk;   /* first key of the block, kv head g applied */
    const float *v;    int64_t ldv;
    int32_t      nk;
    const int32_t *lo, *hi;           /* [m] visible columns per row, or NULL: all   */
    float        scale, softcap;
    float       *s;    int32_t lds;
    float       *kt;
    float       *o;    int32_t ldo;
    float       *mx, *l;              /* [m] running max and sum                      */
} tw_attn_block;

void tw_attn_block_avx512(const tw_attn_block *b);
void tw_attn_block_avx2(const tw_attn_block *b);

/* Rows [0, rows) x [0, D) of 16-bit K or V (row stride ld elements) widened into dst [rows, ldd]
** (the block kernel's view of a 16-bit cache); and f32 -> t rounding of n elements. */
void tw_attn_widen_avx512(float *dst, int32_t ldd, const void *src, int64_t ld, tw_kv_type t, int32_t rows, int32_t D);
void tw_attn_widen_avx2(float *dst, int32_t ldd, const void *src, int64_t ld, tw_kv_type t, int32_t rows, int32_t D);
void tw_kv_store_avx512(void *dst, tw_kv_type t, const float *src, int64_t n);
void tw_kv_store_avx2(void *dst, tw_kv_type t, const float *src, int64_t n);

/* Decode: the m query rows of every kv head against keys [0, nk) of one key range, exact
** two-pass softmax within the range:
**   S[g][i][j] = Qp[g][i] . K[j, g]   (one D-long dot per (row, key), K rows read in place)
**   transform (scale, softcap, visible columns [lo_i, hi_i) else -inf), mx = max_j, P = exp(S - mx),
**   l = sum_j P, O[g][i] = sum_j P V[j, g]  (not normalised; the caller merges ranges)
** A row that sees no key of the range gets mx = -inf, l = 0, O = 0. */
typedef struct tw_attn_dec {
    const float *qp;   int32_t m, D, n_kv;   /* [n_kv][m][D] packed queries                   */
    const void  *k;    int64_t ldk;           /* key 0 of the range, kv head 0; head g at +g*D */
    const void  *v;    int64_t ldv;
    tw_kv_type   type;
    int32_t      nk;
    const int32_t *lo, *hi;                   /* [m] visible columns of each row (all heads)   */
    float        scale, softcap;
    float       *s;    int32_t lds;           /* [n_kv][m][lds] scratch, lds >= nk rounded to 16 */
    float       *o;    int32_t ldo;           /* [n_kv][m][ldo] output, ldo >= D rounded to 16 */
    float       *mx, *l;                      /* [n_kv * m]                                    */
} tw_attn_dec;

void tw_attn_decode_avx512(const tw_attn_dec *d);
void tw_attn_decode_avx2(const tw_attn_dec *d);

/* The blocks' vectorised exp (softmax) and tanh (softcap) over an array, for the accuracy test:
** fn 0: y = exp(x) (0 below -87.3), fn 1: y = tanh(x). */
void tw_attn_vmath_avx512(float *y, const float *x, int64_t n, int fn);
void tw_attn_vmath_avx2(float *y, const float *x, int64_t n, int fn);

#endif
