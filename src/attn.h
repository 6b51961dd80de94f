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
** Layouts are row-major with explicit row strides (in floats), so the kernel reads the models'
** buffers in place: Gemma2's queries [Tq, n_head*D] and KV cache [n_alloc, n_kv*D]; SigLIP's
** interleaved q|k|v rows [T, 3C] (q at +0, k at +C, v at +2C, ld 3C). Head h of row t is at
** base + t * ld + h * D. The output is written, never accumulated; it must not alias q, k or v.
**
** The plain C version (tw_attention_ref) is the yardstick; the SIMD paths (AVX-512, AVX2) follow
** the kernel path of kernels.h (tw_kernels_path / TOWER_KERNELS) and run blocks of queries against
** blocks of keys with an online softmax (flash attention), or a whole row of keys per block when
** that is faster (see docs/attention.md for the measurements and the choice per shape).
*/
#ifndef TW_ATTN_H
#define TW_ATTN_H

#include "kernels.h"

typedef struct tw_attn_args {
    const float *q;  int64_t ldq;     /* [Tq, ldq]  head h of row t at q + t*ldq + h*D        */
    const float *k;  int64_t ldk;     /* [Tk, ldk]  kv head g of key j at k + j*ldk + g*D     */
    const float *v;  int64_t ldv;     /* [Tk, ldv]                                            */
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
} tw_attn_plan;

tw_attn_plan tw_attention_plan(const tw_attn_args *a, int n_threads);
/* false if the CPU cannot run the path (nothing is written) */
bool tw_attention_with(tw_pool *pool, const tw_attn_args *a, tw_kpath path, tw_attn_plan plan);

/* ---- between attn.c and the SIMD files ---------------------------------------------------- */

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

/* The blocks' vectorised exp (softmax) and tanh (softcap) over an array, for the accuracy test:
** fn 0: y = exp(x) (0 below -87.3), fn 1: y = tanh(x). */
void tw_attn_vmath_avx512(float *y, const float *x, int64_t n, int fn);
void tw_attn_vmath_avx2(float *y, const float *x, int64_t n, int fn);

#endif
