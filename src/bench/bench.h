/*
** bench.h — what `tower bench` needs from the library: the machine's limits measured by small
** loops (read bandwidth, matrix rate), the work a forward pass does counted from the model's
** shapes (FLOPs, bytes read per token), and models with random weights of the exact TowerVision
** shapes built in memory (src/model/model_random.c), so the engine can be measured without a
** download.
**
** Nothing here changes how the engine runs: the benchmark drives the public entry points
** (tw_image_encode, tw_seq_eval) and these helpers only count and compare.
*/
#ifndef TW_BENCH_H
#define TW_BENCH_H

#include "model.h"
#include "model_random.h"   /* models with random weights (src/model/model_random.c) */

/* ---- machine limits ---------------------------------------------------------------------------- */

/* Read bandwidth in GB/s (1e9 bytes/s): every thread of the pool sums 64-byte vectors of a buffer of
** `bytes` (make it much larger than the L3) in large chunks; the best of `reps` passes. 0 when the
** buffer cannot be allocated. */
double tw_bench_read_bw(tw_pool *pool, size_t bytes, int reps);

/* Register-only multiply-add loops run on every thread of the pool at once, in GFLOP/s (one
** multiply-add = 2 FLOPs); the best of `reps`. Each returns 0 when the CPU lacks the instruction.
**   fma:  f32 vfmadd on the widest vectors the CPU has (AVX-512, else AVX2, else scalar)
**   bf16: vdpbf16ps (AVX512-BF16): 32 bf16 products summed into 16 f32 lanes per instruction
**   int8: vpdpbusd (AVX512-VNNI): 64 u8 x s8 products into 16 i32 lanes (GOP/s)            */
double      tw_bench_fma_peak(tw_pool *pool, int reps);
double      tw_bench_bf16_peak(tw_pool *pool, int reps);
double      tw_bench_int8_peak(tw_pool *pool, int reps);
const char *tw_bench_fma_isa(void);   /* "avx512", "avx2" or "scalar": what tw_bench_fma_peak ran */

/* Benchmarks store results here so the compiler cannot drop the work that produced them. */
extern volatile uint64_t tw_bench_sink;

/* ---- work counted from the shapes -------------------------------------------------------------- */

/* Bytes one decode step reads: every weight tensor the step touches (all layers' projections and
** widened norms, one embedding row, the LM head) plus the keys and values the attention reads at
** `ctx` cached positions (sliding layers read at most sliding_window of them), with the cache's
** element size. weights_only: the part without the cache. */
double tw_bench_decode_bytes(const tw_model *m, int64_t ctx, tw_kv_type kv, double *weights_only);

/* FLOPs of running T new tokens after p0 cached ones through Gemma2: 2*N*K per token per matrix
** product, attention 4*D per (query, visible key) pair per head (QK^T and PV), the LM head for
** the last row only (what tw_seq_eval computes). */
double tw_bench_prefill_flops(const tw_model *m, int64_t p0, int64_t T);

/* FLOPs of n_tiles SigLIP passes up to the feature layer plus the projector on their tokens. */
double tw_bench_vision_flops(const tw_model *m, int64_t n_tiles);

/* Peak resident set of the process so far (getrusage ru_maxrss), in bytes. */
uint64_t tw_bench_peak_rss(void);
/* Resident set now (/proc/self/statm), in bytes; 0 when unknown. */
uint64_t tw_bench_rss_now(void);

#endif
