/*
** transpose_avx512.h — a 16 x 16 transpose of 32-bit lanes in registers, for the files compiled with
** AVX-512 flags that repack weight panels (gemm_avx512.c: f32 and bf16 pairs; gemm_amx.c: bf16
** pairs as u32, through a cast: __m512 and __m512i may alias). 8 unpacks, 16 in-lane shuffles,
** 16 128-bit-block shuffles.
*/
#ifndef TW_TRANSPOSE_AVX512_H
#define TW_TRANSPOSE_AVX512_H

#include <immintrin.h>

/* 16 x 16 transpose of 32-bit elements: r[i] lane j -> r[j] lane i */
static inline __attribute__((always_inline)) void tw_transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* per 128-bit lane L of u[4g + j]: rows 4g..4g+3 at column 4L + j */
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m512 v0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88), w0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
        __m512 v1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88), w1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
        r[j] = _mm512_shuffle_f32x4(v0, v1, 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(v0, v1, 0xDD);
        r[4 + j] = _mm512_shuffle_f32x4(w0, w1, 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(w0, w1, 0xDD);
    }
}

#endif
