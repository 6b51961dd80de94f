/*
** amx_ops.h — the six AMX tile operations gemm_amx.c is written against, in one place:
**
**     tw_tile_config(cfg)           LDTILECFG: shapes of the 8 tile registers (and zero them)
**     TW_TILE_LOAD(t, base, stride)  TILELOADD: rows of tile t from base, stride bytes apart
**     TW_TILE_STORE(t, base, stride) TILESTORED
**     TW_TILE_ZERO(t)                TILEZERO
**     TW_TILE_DPBF16(c, a, b)        TDPBF16PS: C(tile c) += A(tile a) . B(tile b), bf16 pairs, f32 sums
**     tw_tile_release()             TILERELEASE: back to the init state (small context switches)
**
** Tile numbers are literal constants (the instructions encode them). Normally these are the
** instructions themselves, as inline asm. Built with -DTW_AMX_EMULATE (tests/test_amx.c does that
** with the same gemm_amx.c) they are a plain C model of the tile registers: the configuration is
** validated as LDTILECFG would (palette 1, rows <= 16, bytes per row <= 64), TDPBF16PS follows the
** SDM's pseudo-code (below) including its shape checks, and any operation the hardware would fault
** on aborts with a message. That lets a machine without AMX run the real packing, tiling, tail and
** configuration logic of the kernel.
**
** Why our own asm and not <immintrin.h>'s _tile_* (GCC 12):
**   - _tile_loadconfig declares its memory input as *(const void **)cfg: 8 bytes, not 64. The
**     compiler then treats stores to the other 56 bytes of a configuration built on the stack as
**     dead and drops them; LDTILECFG reads garbage and faults (llama.cpp issue 20824). Ours names
**     the whole struct as the input, and the configuration gemm_amx.c loads is a static const.
**   - _tile_loadd has no memory input or clobber at all, so the compiler may move or drop the
**     stores that fill the packed buffers it reads. Every op below is a compiler barrier
**     ("memory"): tile state is invisible to the compiler, so ordering is all we can tell it, and
**     next to a 16-cycle tile instruction a barrier costs nothing measurable.
*/
#ifndef TW_AMX_OPS_H
#define TW_AMX_OPS_H

#include <stdbool.h>
#include <stdint.h>

/* The 64-byte operand of LDTILECFG (palette 1). Entries 8..15 and the reserved bytes stay 0. */
typedef struct tw_tilecfg {
    uint8_t  palette;        /* 1: 8 tiles of up to 16 rows x 64 bytes */
    uint8_t  start_row;      /* 0 (restart point after an interrupted load/store) */
    uint8_t  reserved[14];
    uint16_t colsb[16];      /* bytes per row of tile i */
    uint8_t  rows[16];       /* rows of tile i */
} tw_tilecfg;
_Static_assert(sizeof(tw_tilecfg) == 64, "LDTILECFG reads exactly 64 bytes");

#ifndef TW_AMX_EMULATE

static inline void tw_tile_config(const tw_tilecfg *cfg) {
    __asm__ volatile("ldtilecfg %0" ::"m"(*cfg) : "memory");
}
static inline void tw_tile_release(void) { __asm__ volatile("tilerelease" ::: "memory"); }

/* one level of indirection so that a macro naming a tile is expanded before it is pasted */
#define TW_TILE_LOAD(t, base, stride)  TW_TILE_LOAD_(t, base, stride)
#define TW_TILE_STORE(t, base, stride) TW_TILE_STORE_(t, base, stride)
#define TW_TILE_ZERO(t)                TW_TILE_ZERO_(t)
#define TW_TILE_DPBF16(c, a, b)        TW_TILE_DPBF16_(c, a, b)
#define TW_TILE_LOAD_(t, base, stride)                                                              \
    __asm__ volatile("tileloadd (%0,%1,1), %%tmm" #t ::"r"((const void *)(base)), "r"((int64_t)(stride)) \
                     : "memory")
#define TW_TILE_STORE_(t, base, stride)                                                             \
    __asm__ volatile("tilestored %%tmm" #t ", (%0,%1,1)" ::"r"((void *)(base)), "r"((int64_t)(stride)) : "memory")
#define TW_TILE_ZERO_(t) __asm__ volatile("tilezero %%tmm" #t ::: "memory")
/* AT&T order: src2 (B), src1 (A), destination (C) — as GCC's own _tile_dpbf16ps(c, a, b) emits it */
#define TW_TILE_DPBF16_(c, a, b) __asm__ volatile("tdpbf16ps %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::: "memory")

#else /* TW_AMX_EMULATE: the tile registers in plain C, one set per thread like the hardware's */

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    tw_tilecfg cfg;
    bool       configured;
    uint8_t    t[8][16][64];   /* tile i, row r: 64 bytes (the palette-1 maximum) */
} tw_amx_emu_regs;
static _Thread_local tw_amx_emu_regs tw_amx_emu;

__attribute__((noreturn, format(printf, 1, 2))) static void tw_amx_emu_fault(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("AMX emulator: the hardware would fault here: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* LDTILECFG, palette 1 (the only one we use): #GP on reserved bytes, more than 16 rows or 64
** bytes per row, or a tile with rows but no bytes (or the reverse); loading zeroes every tile. */
static inline void tw_tile_config(const tw_tilecfg *cfg) {
    if (cfg->palette != 1) tw_amx_emu_fault("ldtilecfg: palette %d (we only use 1)", cfg->palette);
    if (cfg->start_row != 0) tw_amx_emu_fault("ldtilecfg: start_row %d", cfg->start_row);
    for (int i = 0; i < 14; i++)
        if (cfg->reserved[i]) tw_amx_emu_fault("ldtilecfg: reserved byte %d is %d", 2 + i, cfg->reserved[i]);
    for (int i = 0; i < 16; i++) {
        if (i >= 8 && (cfg->rows[i] || cfg->colsb[i])) tw_amx_emu_fault("ldtilecfg: palette 1 has 8 tiles, tile %d set", i);
        if (cfg->rows[i] > 16 || cfg->colsb[i] > 64)
            tw_amx_emu_fault("ldtilecfg: tile %d is %d rows x %d bytes (max 16 x 64)", i, cfg->rows[i], cfg->colsb[i]);
        if ((cfg->rows[i] == 0) != (cfg->colsb[i] == 0))
            tw_amx_emu_fault("ldtilecfg: tile %d has %d rows of %d bytes", i, cfg->rows[i], cfg->colsb[i]);
    }
    memset(&tw_amx_emu, 0, sizeof tw_amx_emu);
    tw_amx_emu.cfg = *cfg;
    tw_amx_emu.configured = true;
}

static inline void tw_tile_release(void) { memset(&tw_amx_emu, 0, sizeof tw_amx_emu); }

/* a tile the current configuration gives rows to, or a fault naming the operation */
static inline void tw_amx_emu_need(const char *op, int t) {
    if (!tw_amx_emu.configured) tw_amx_emu_fault("%s tmm%d: no tile configuration loaded", op, t);
    if (t < 0 || t > 7 || tw_amx_emu.cfg.rows[t] == 0) tw_amx_emu_fault("%s tmm%d: tile not configured", op, t);
}

static inline void tw_amx_emu_load(int t, const void *base, int64_t stride) {
    tw_amx_emu_need("tileloadd", t);
    int rows = tw_amx_emu.cfg.rows[t], cb = tw_amx_emu.cfg.colsb[t];
    memset(tw_amx_emu.t[t], 0, sizeof tw_amx_emu.t[t]);   /* bytes and rows past the shape read 0 */
    for (int r = 0; r < rows; r++) memcpy(tw_amx_emu.t[t][r], (const uint8_t *)base + r * stride, (size_t)cb);
}

static inline void tw_amx_emu_store(int t, void *base, int64_t stride) {
    tw_amx_emu_need("tilestored", t);
    int rows = tw_amx_emu.cfg.rows[t], cb = tw_amx_emu.cfg.colsb[t];
    for (int r = 0; r < rows; r++) memcpy((uint8_t *)base + r * stride, tw_amx_emu.t[t][r], (size_t)cb);
}

static inline void tw_amx_emu_zero(int t) {
    tw_amx_emu_need("tilezero", t);
    memset(tw_amx_emu.t[t], 0, sizeof tw_amx_emu.t[t]);
}

/* TDPBF16PS rounds as RNE with denormal inputs read as zero and denormal results flushed to zero
** (MXCSR is not used): these two model that around ordinary f32 arithmetic. */
static inline float tw_amx_emu_daz(float v) { return fabsf(v) < 0x1p-126f ? copysignf(0.0f, v) : v; }
static inline float tw_amx_emu_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return tw_amx_emu_daz(f);
}

/* TDPBF16PS c, a, b as the SDM's pseudo-code has it: per row m of C, two f32 partial sums per
** output n, one over the even bf16 of each pair and one over the odd, each step an FMA (the
** product of two bf16 is exact in f32 unless it underflows, so only the additions round); then
** C[m][n] += even + odd. (The intrinsics guide's shorter pseudo-code adds both products of a pair
** into C directly; the SDM's is the instruction's reference, and the emulator follows it.)
** Shape rules (#UD otherwise): a, b, c distinct; bytes per row multiples of 4; C and B rows of
** the same width; A's pairs per row = B's rows; A and C the same number of rows. */
/* Not instrumented by the sanitizers: it touches only the emulator's own registers, and the
** sanitized build spends most of test_amx's time here otherwise. Loads and stores, which touch
** the kernel's buffers, stay instrumented. */
__attribute__((no_sanitize("address", "undefined"))) static inline void tw_amx_emu_dpbf16(int c, int a, int b) {
    tw_amx_emu_need("tdpbf16ps (C)", c);
    tw_amx_emu_need("tdpbf16ps (A)", a);
    tw_amx_emu_need("tdpbf16ps (B)", b);
    const tw_tilecfg *g = &tw_amx_emu.cfg;
    if (a == b || a == c || b == c) tw_amx_emu_fault("tdpbf16ps tmm%d, tmm%d, tmm%d: tiles must differ", c, a, b);
    if (g->colsb[a] % 4 || g->colsb[b] % 4 || g->colsb[c] % 4)
        tw_amx_emu_fault("tdpbf16ps: bytes per row %d/%d/%d not multiples of 4", g->colsb[c], g->colsb[a], g->colsb[b]);
    if (g->colsb[c] != g->colsb[b] || g->colsb[a] / 4 != g->rows[b] || g->rows[c] != g->rows[a])
        tw_amx_emu_fault("tdpbf16ps: shapes C %dx%dB, A %dx%dB, B %dx%dB do not fit", g->rows[c], g->colsb[c], g->rows[a],
                         g->colsb[a], g->rows[b], g->colsb[b]);
    int M = g->rows[c], Kp = g->colsb[a] / 4, Nn = g->colsb[c] / 4;
    float bv[16][2][16];   /* B widened once: [pair row k][even, odd][n] */
    for (int k = 0; k < Kp; k++)
        for (int n = 0; n < Nn; n++)
            for (int e = 0; e < 2; e++) {
                uint16_t h;
                memcpy(&h, &tw_amx_emu.t[b][k][4 * n + 2 * e], 2);
                bv[k][e][n] = tw_amx_emu_bf16(h);
            }
    for (int m = 0; m < M; m++) {
        float part[2][16] = { { 0 } };   /* the SDM's temp1: [even, odd][n] */
        for (int k = 0; k < Kp; k++)
            for (int e = 0; e < 2; e++) {
                uint16_t h;
                memcpy(&h, &tw_amx_emu.t[a][m][4 * k + 2 * e], 2);
                float av = tw_amx_emu_bf16(h);
                for (int n = 0; n < Nn; n++) part[e][n] = tw_amx_emu_daz(fmaf(av, bv[k][e][n], part[e][n]));
            }
        for (int n = 0; n < Nn; n++) {
            float cv;
            memcpy(&cv, &tw_amx_emu.t[c][m][4 * n], 4);
            cv = tw_amx_emu_daz(tw_amx_emu_daz(cv) + tw_amx_emu_daz(part[0][n] + part[1][n]));
            memcpy(&tw_amx_emu.t[c][m][4 * n], &cv, 4);
        }
        memset(&tw_amx_emu.t[c][m][4 * Nn], 0, (size_t)(64 - 4 * Nn));   /* write_row_and_zero */
    }
    for (int m = M; m < 16; m++) memset(tw_amx_emu.t[c][m], 0, 64);       /* zero_upper_rows */
}

#define TW_TILE_LOAD(t, base, stride)  tw_amx_emu_load((t), (base), (int64_t)(stride))
#define TW_TILE_STORE(t, base, stride) tw_amx_emu_store((t), (base), (int64_t)(stride))
#define TW_TILE_ZERO(t)                tw_amx_emu_zero(t)
#define TW_TILE_DPBF16(c, a, b)        tw_amx_emu_dpbf16((c), (a), (b))

#endif /* TW_AMX_EMULATE */
#endif /* TW_AMX_OPS_H */
