/*
** cmd_bench.c — `tower bench`: how fast the engine runs TowerVision on this machine, and how close
** each figure comes to what the machine can do, measured in the same run.
**
** No download: by default the model is built in memory with random weights of the exact shapes
** of TowerVision-2B (and/or -9B), BF16 as released (src/bench/model_random.c); -m DIR benches a real
** checkpoint instead. The figures go through the same entry points as `tower run`:
**   vision       SigLIP + projector on one 384px tile; tw_image_encode on a 1152x768 image
**                (6 tiles + base = 7 SigLIP passes)
**   prefill      tw_seq_eval of 512 and of 5,000 new tokens
**   decode       tw_seq_eval of one token at a time after 128 and 4,096 cached positions
**   TTFT         image encode + prefill of the ~5,200-token prompt + argmax of the first token
**   peak RSS     getrusage ru_maxrss
** Limits (src/bench/bench.c): decode against read bandwidth (bytes read per token, counted from the
** tensors, / GB/s), vision and prefill against the multiply-add peak (FLOPs counted from the
** shapes / GFLOP/s).
**
** To stay within minutes, one long prompt serves several figures: the 5,000-token prefill is
** the first 5,000 positions of the TTFT prompt (timed as its own tw_seq_eval call), and the
** decode figures run after rewinding that sequence to 4,096 and then to 128 positions; the
** cache rows beyond the rewind point are never read.
*/
#include "commands.h"

#include "bench.h"
#include "vision.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- options ------------------------------------------------------------------------------------ */

typedef struct bench_opts {
    const char *model;      /* "2b", "9b", "all"                         */
    const char *ckpt;       /* -m: a checkpoint directory instead        */
    const char *json;       /* NULL, "-" or a path                       */
    const char *type;       /* "bf16" (default), "f16", "f32", "q8", "q4" */
    tw_dtype    dtype;      /* what type names                             */
    int threads, reps, distinct, n_decode;
    bool quick, skip_vision, skip_2b, skip_9b, skip_ttft;
    tw_kv_type kv;          /* KV cache element type (default f16: what long decodes use) */
    const char *matmul;     /* NULL (the engine's setting, TOWER_MATMUL), "f32" or "bf16"  */
} bench_opts;

static void usage(FILE *f) {
    fprintf(f,
        "usage: tower bench [options]\n"
        "Measures vision, prefill, decode and time to first token on random weights of the exact\n"
        "TowerVision shapes built in memory (nothing is downloaded), and prints beside each figure\n"
        "the fraction of this machine's limit (read bandwidth, multiply-add peak) measured in the run.\n"
        "\n"
        "  --model 2b|9b|all   model shapes (default 2b)\n"
        "  -m, --checkpoint DIR  bench a local checkpoint directory instead of random weights\n"
        "  -t, --threads N     threads (default: every core)\n"
        "  --reps N            repetitions of the short measurements; the best is reported (default 2,\n"
        "                      --quick 1); the image encode, TTFT and long prefill run once\n"
        "  --decode N          tokens per decode measurement (default 16, --quick 4)\n"
        "  --type T            weight type of the random model: bf16 (default), f16, f32, q8, q4\n"
        "  --kv-type T         KV cache element type: f16 (default here), bf16, f32\n"
        "  --matmul f32|bf16   matrix products with f32 activations (the default) or rounded to bf16\n"
        "                      (TOWER_MATMUL=bf16: vdpbf16ps, faster, not within the f32 tolerances)\n"
        "  --distinct N        9B: distinct text layers, cycled over the 42 (default 4; 0 = all)\n"
        "  --quick             small sizes for CI: prefill 32/128, decode at 16/128, no 7-tile image\n"
        "  --skip-vision       no vision figures and no TTFT\n"
        "  --skip-ttft         no 7-tile image and no TTFT (the long prefill still runs)\n"
        "  --skip-2b, --skip-9b  with --model all\n"
        "  --json FILE         also write the results as JSON (\"-\": to stdout, the table to stderr)\n");
}

static int parse_int(const char *s, int lo, int hi, const char *opt, int *out) {
    char *e = NULL;
    long v = strtol(s, &e, 10);
    if (!*s || *e || v < lo || v > hi) {
        fprintf(stderr, "tower bench: %s expects an integer in %d..%d, got '%s'\n", opt, lo, hi, s);
        return 2;
    }
    *out = (int)v;
    return 0;
}

/* --type name -> weight type, if this build can fill random weights of it */
static bool type_of(const char *name, tw_dtype *t) { return tw_random_type_parse(name, t) && tw_random_type_ok(*t); }

/* ---- results ------------------------------------------------------------------------------------ */

enum { F_TILE, F_IMAGE, F_PP_SHORT, F_PP_LONG, F_TG_SHORT, F_TG_LONG, F_TTFT, F_COUNT };

typedef struct figure {
    bool   done;
    char   label[64];
    char   skip[96];     /* why not measured                                        */
    bool   is_time;      /* value in ms (lower is better), else tokens/s            */
    double value;        /* best of the reps                                        */
    double reps[16];
    int    n_reps;
    double work;         /* FLOPs (time and prefill figures) or bytes/token (decode) */
    double limit;        /* best possible value on this machine (ms or tokens/s)    */
    double frac;         /* of the limit (f32 FMA or bandwidth)                     */
    double frac_bf16;    /* of the vdpbf16ps peak, 0 when not applicable            */
    double bw_gbs;       /* decode: read bandwidth measured right before and after its reps */
    double ref;          /* llama.cpp figure from the issue, 0 when none           */
    char   ref_text[48];
    double speedup;
} figure;

typedef struct model_result {
    char     name[96], source[256], type[16], note[160];
    double   build_s;
    uint64_t weight_bytes;   /* held in memory                 */
    double   decode_weight_bytes;
    uint64_t peak_rss;
    int      n_image_tokens, n_prompt;
    figure   f[F_COUNT];
} model_result;

typedef struct machine {
    int    threads;
    char   cpu[128];
    const char *kpath;
    bool bf16_act;          /* matrix products round activations to bf16 (--matmul bf16) */
    double bw_gbs, fma, bf16, int8;
    size_t bw_bytes;
    double load1;        /* 1-minute load average when the run started */
} machine;

static double best_of(figure *f) {
    double b = f->n_reps ? f->reps[0] : 0;
    for (int i = 1; i < f->n_reps; i++) b = f->is_time ? fmin(b, f->reps[i]) : fmax(b, f->reps[i]);
    return b;
}

static void add_rep(figure *f, double v) {
    if (f->n_reps < 16) f->reps[f->n_reps++] = v;
    f->value = best_of(f);
    f->done = true;
}

/* Fractions and speedups once value, work and the machine are known. Time figures: limit =
** FLOPs at the f32 FMA peak; decode: bandwidth / bytes per token. (Prefill: finish_prefill.) */
static void finish(figure *f, const machine *mc, bool decode) {
    if (!f->done || f->value <= 0) return;
    if (decode) {
        double bw = f->bw_gbs > 0 ? f->bw_gbs : mc->bw_gbs;
        f->limit = bw > 0 ? bw * 1e9 / f->work : 0;
        f->frac = f->limit > 0 ? f->value / f->limit : 0;
    } else if (f->is_time) {
        f->limit = mc->fma > 0 ? f->work / (mc->fma * 1e9) * 1e3 : 0;
        f->frac = f->limit / f->value;
        f->frac_bf16 = mc->bf16 > 0 ? f->work / (mc->bf16 * 1e9) * 1e3 / f->value : 0;
    }
    if (f->ref > 0) f->speedup = f->is_time ? f->ref / f->value : f->value / f->ref;
}

/* Prefill: work = FLOPs of the call with n tokens; limit in tokens/s = n / (work / peak). */
static void finish_prefill(figure *f, const machine *mc, int n) {
    if (!f->done || f->value <= 0) return;
    f->limit = mc->fma > 0 ? n / (f->work / (mc->fma * 1e9)) : 0;
    f->frac = f->limit > 0 ? f->value / f->limit : 0;
    f->frac_bf16 = mc->bf16 > 0 ? f->value / (n / (f->work / (mc->bf16 * 1e9))) : 0;
    if (f->ref > 0) f->speedup = f->value / f->ref;
}

/* ---- the measurements ---------------------------------------------------------------------------- */

static double now_ms(void) { return tw_time_ms(); }

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

/* A text token: anything but the image token. */
static int32_t text_id(const tw_model *m) {
    int32_t V = m->text.n_vocab, id;
    do id = (int32_t)(rnd() % (uint32_t)V);
    while (id == m->image_token_id || id == m->video_token_id);
    return id;
}

static int32_t argmax(const float *x, int32_t n) {
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static int fail(const char *what) {
    fprintf(stderr, "tower bench: error: %s: %s\n", what, tw_last_error());
    return 1;
}

/* SigLIP + projector on one tile of random pixels in [-1, 1] (normalised range). */
static int bench_tile(const tw_model *m, int reps, figure *f) {
    int32_t S = m->vision.image_size, G = tw_vision_grid(m), N = G * G, C = m->vision.n_embd, H = m->text.n_embd;
    float *px = tw_malloc(sizeof(float) * 3 * (size_t)S * S);
    float *feat = tw_malloc(sizeof(float) * (size_t)N * C), *proj = tw_malloc(sizeof(float) * (size_t)N * H);
    int rc = 0;
    if (!px || !feat || !proj) {
        rc = fail("vision buffers");
        goto done;
    }
    for (size_t i = 0; i < 3 * (size_t)S * S; i++) px[i] = (float)(rnd() % 2001) / 1000.0f - 1.0f;
    for (int r = 0; r < reps; r++) {
        double t0 = now_ms();
        if (tw_siglip_forward(m, px, 1, feat, NULL) != TW_OK || tw_projector_forward(m, feat, N, proj) != TW_OK) {
            rc = fail("vision tower");
            goto done;
        }
        add_rep(f, now_ms() - t0);
        fprintf(stderr, "  vision tile %d/%d: %.0f ms\n", r + 1, reps, f->reps[f->n_reps - 1]);
    }
    f->work = tw_bench_vision_flops(m, 1);
done:
    free(px), free(feat), free(proj);
    return rc;
}

/* Decodes n tokens one at a time after rewinding s to ctx; tokens/s of the best rep. The read
** bandwidth is measured again right before and after every rep, and the best of those is this
** figure's limit: the memory speed of these VMs drifts by up to 1.5x within minutes (40-72 GB/s
** seen here), so a limit measured minutes earlier could put a figure far above or below 100 %. */
static int bench_decode(tw_seq *s, int32_t ctx, int n, int reps, figure *f, size_t bw_bytes) {
    const tw_model *m = s->m;
    for (int r = 0; r < reps; r++) {
        f->bw_gbs = fmax(f->bw_gbs, tw_bench_read_bw(m->pool, bw_bytes, 2));
        if (tw_seq_rewind(s, ctx) != TW_OK) return fail("rewind");
        int32_t id = text_id(m);
        double t0 = now_ms();
        for (int i = 0; i < n; i++) {
            if (tw_seq_eval(s, &id, 1, NULL) != TW_OK) return fail("decode");
            id = argmax(tw_seq_logits(s), m->text.n_vocab);
            if (id == m->image_token_id) id = 0;
        }
        add_rep(f, n / ((now_ms() - t0) / 1e3));
        f->bw_gbs = fmax(f->bw_gbs, tw_bench_read_bw(m->pool, bw_bytes, 2));
        fprintf(stderr, "  decode at %d: %.2f tokens/s (read bandwidth beside it %.1f GB/s)\n", (int)ctx,
                f->reps[f->n_reps - 1], f->bw_gbs);
    }
    f->work = tw_bench_decode_bytes(m, ctx + n / 2, tw_seq_kv_type(s), NULL);   /* the middle step's context */
    return 0;
}

enum { QUICK_PP_SHORT = 32, QUICK_PP_LONG = 128 };   /* --quick sizes */

static int bench_model(tw_model *m, const bench_opts *o, model_result *R) {
    const bool vision = m->has_vision && !o->skip_vision;
    const bool ttft = vision && !o->skip_ttft && !o->quick;
    const int32_t n_short = o->quick ? QUICK_PP_SHORT : 512, n_long = o->quick ? QUICK_PP_LONG : 5000;
    const int32_t c_short = o->quick ? 16 : 128, c_long = o->quick ? QUICK_PP_LONG : 4096;
    const int n_dec = o->n_decode > 0 ? o->n_decode : (o->quick ? 4 : 16);
    const size_t dec_bw_bytes = (size_t)(o->quick ? 64 : 256) << 20;   /* 2-8x the L3 */
    figure *F = R->f;
    int rc = 0;

    snprintf(F[F_TILE].label, sizeof F[F_TILE].label, "vision, one %dpx tile", (int)m->vision.image_size);
    snprintf(F[F_IMAGE].label, sizeof F[F_IMAGE].label, "vision, 7-tile image (%dx%d)",
             (int)m->vision.image_size * 3, (int)m->vision.image_size * 2);
    snprintf(F[F_PP_SHORT].label, sizeof F[F_PP_SHORT].label, "prefill, %d tokens", (int)n_short);
    snprintf(F[F_PP_LONG].label, sizeof F[F_PP_LONG].label, "prefill, %d tokens", (int)n_long);
    snprintf(F[F_TG_SHORT].label, sizeof F[F_TG_SHORT].label, "decode, %d context", (int)c_short);
    snprintf(F[F_TG_LONG].label, sizeof F[F_TG_LONG].label, "decode, %d context", (int)c_long);
    snprintf(F[F_TTFT].label, sizeof F[F_TTFT].label, "TTFT, %dx%d image + 20 tokens",
             (int)m->vision.image_size * 3, (int)m->vision.image_size * 2);
    for (int i = 0; i < F_COUNT; i++) F[i].is_time = i == F_TILE || i == F_IMAGE || i == F_TTFT;
    const char *why_v = !m->has_vision ? "text-only model" : "--skip-vision";
    if (!vision) {
        snprintf(F[F_TILE].skip, sizeof F[F_TILE].skip, "%s", why_v);
        snprintf(F[F_IMAGE].skip, sizeof F[F_IMAGE].skip, "%s", why_v);
        snprintf(F[F_TTFT].skip, sizeof F[F_TTFT].skip, "%s", why_v);
    } else if (!ttft) {
        snprintf(F[F_IMAGE].skip, sizeof F[F_IMAGE].skip, "%s", o->quick ? "--quick" : "--skip-ttft");
        snprintf(F[F_TTFT].skip, sizeof F[F_TTFT].skip, "%s", o->quick ? "--quick" : "--skip-ttft");
    }

    /* ---- vision: one tile ---- */
    if (vision && (rc = bench_tile(m, o->reps, &F[F_TILE]))) return rc;

    /* ---- the long prompt: [4 text] [image tokens] [rest text], or all text ---- */
    tw_image *im = NULL;
    float *embd = NULL;
    int32_t n_img = 0, *ids = NULL;
    if (ttft) {
        int32_t S = m->vision.image_size, W = 3 * S, Hh = 2 * S;
        uint8_t *rgb = tw_malloc((size_t)W * Hh * 3);
        if (!rgb) return fail("image");
        for (size_t i = 0; i < (size_t)W * Hh * 3; i++) rgb[i] = (uint8_t)rnd();
        tw_status st = tw_image_from_rgb(rgb, W, Hh, &im);
        free(rgb);
        if (st != TW_OK || tw_image_n_tokens(m, W, Hh, &n_img) != TW_OK) return fail("image");
    }
    /* chat template around the image: <bos><start_of_turn>user\n ... question<end_of_turn>\n<start_of_turn>model\n */
    const int32_t pre = 4, question = 20, post = 5;
    int32_t n_prompt = ttft ? pre + n_img + question + post : n_long;
    if (n_prompt < n_long) n_prompt = n_long;   /* the long prefill is a prefix of this prompt */
    R->n_image_tokens = n_img;
    R->n_prompt = n_prompt;
    int32_t n_ctx = TW_MAX(n_prompt, c_long + n_dec) + 1;
    ids = tw_malloc(sizeof(int32_t) * (size_t)n_prompt);
    int32_t *ids_short = tw_malloc(sizeof(int32_t) * (size_t)n_short);
    tw_seq *s = NULL;
    if (!ids || !ids_short || tw_seq_new_ex(m, n_ctx, &(tw_seq_params){ .kv_type = o->kv }, &s) != TW_OK) {
        rc = fail("sequence");
        goto done;
    }
    for (int32_t i = 0; i < n_prompt; i++)
        ids[i] = ttft && i >= pre && i < pre + n_img ? m->image_token_id : text_id(m);
    for (int32_t i = 0; i < n_short; i++) ids_short[i] = text_id(m);

    /* ---- prefill, short prompt (same sequence, rewound to 0 each time) ---- */
    for (int r = 0; r < o->reps; r++) {
        tw_seq_rewind(s, 0);
        double t0 = now_ms();
        if (tw_seq_eval(s, ids_short, (size_t)n_short, NULL) != TW_OK) {
            rc = fail("prefill");
            goto done;
        }
        add_rep(&F[F_PP_SHORT], n_short / ((now_ms() - t0) / 1e3));
        fprintf(stderr, "  prefill %d: %.1f tokens/s\n", (int)n_short, F[F_PP_SHORT].reps[F[F_PP_SHORT].n_reps - 1]);
    }
    F[F_PP_SHORT].work = tw_bench_prefill_flops(m, 0, n_short);

    /* ---- TTFT: encode the image, prefill the prompt in two calls (the first is the long
    ** prefill figure), pick the first token ---- */
    tw_seq_rewind(s, 0);
    double t_start = now_ms(), t_vis = 0;
    if (ttft) {
        int32_t n = 0;
        if (tw_image_encode(m, im, &embd, &n) != TW_OK) {
            rc = fail("image encode");
            goto done;
        }
        t_vis = now_ms() - t_start;
        add_rep(&F[F_IMAGE], t_vis);
        F[F_IMAGE].work = tw_bench_vision_flops(m, 7);
        fprintf(stderr, "  vision 7 tiles: %.0f ms (%d image tokens)\n", t_vis, (int)n);
    }
    int32_t img_in_first = ttft ? TW_MAX(0, TW_MIN(n_long - pre, n_img)) : 0;
    tw_eval_opts e1 = { .embd = ttft ? embd : NULL, .n_embd_rows = (size_t)img_in_first };
    double t1 = now_ms();
    if (tw_seq_eval(s, ids, (size_t)n_long, ttft ? &e1 : NULL) != TW_OK) {
        rc = fail("long prefill");
        goto done;
    }
    double t_long = now_ms() - t1;
    add_rep(&F[F_PP_LONG], n_long / (t_long / 1e3));
    F[F_PP_LONG].work = tw_bench_prefill_flops(m, 0, n_long);
    fprintf(stderr, "  prefill %d: %.1f tokens/s\n", (int)n_long, F[F_PP_LONG].value);
    if (n_prompt > n_long) {
        tw_eval_opts e2 = { .embd = ttft ? embd + (size_t)img_in_first * m->text.n_embd : NULL,
                            .n_embd_rows = (size_t)(n_img - img_in_first) };
        if (tw_seq_eval(s, ids + n_long, (size_t)(n_prompt - n_long), ttft ? &e2 : NULL) != TW_OK) {
            rc = fail("prompt tail");
            goto done;
        }
    }
    int32_t first = argmax(tw_seq_logits(s), m->text.n_vocab);
    tw_bench_sink = (uint64_t)first;
    if (ttft) {
        add_rep(&F[F_TTFT], now_ms() - t_start);
        F[F_TTFT].work = tw_bench_vision_flops(m, 7) + tw_bench_prefill_flops(m, 0, n_prompt);
        fprintf(stderr, "  TTFT: %.1f s (%d prompt tokens)\n", F[F_TTFT].value / 1e3, (int)n_prompt);
    }

    /* ---- decode after the long context, then the short one (rewinds only go back) ---- */
    if ((rc = bench_decode(s, c_long, n_dec, o->reps, &F[F_TG_LONG], dec_bw_bytes))) goto done;
    if ((rc = bench_decode(s, c_short, n_dec, o->reps, &F[F_TG_SHORT], dec_bw_bytes))) goto done;
    tw_bench_decode_bytes(m, 0, o->kv, &R->decode_weight_bytes);
done:
    tw_seq_free(s);
    free(ids);
    free(ids_short);
    free(embd);
    tw_image_free(im);
    return rc;
}

/* ---- output ------------------------------------------------------------------------------------- */

static void fmt_time(char *b, size_t n, double ms) {
    if (ms < 10) snprintf(b, n, "%.2f ms", ms);
    else if (ms < 1000) snprintf(b, n, "%.0f ms", ms);
    else if (ms < 100000) snprintf(b, n, "%.2f s", ms / 1e3);
    else snprintf(b, n, "%.1f s", ms / 1e3);
}

static void fmt_value(char *b, size_t n, const figure *f, double v) {
    if (f->is_time) fmt_time(b, n, v);
    else snprintf(b, n, v < 1000 ? "%.1f tok/s" : "%.0f tok/s", v);
}

static void fmt_pct(char *b, size_t n, double x) {
    if (x > 0) snprintf(b, n, "%.0f%%", 100 * x);
    else snprintf(b, n, "-");
}

static void fmt_si(char *b, size_t n, double x, const char *unit) {   /* 653 GFLOP, 5.24 GB, 210 KB */
    const char *p[] = { "", "K", "M", "G", "T" };
    int i = 0;
    while (x >= 1000 && i < 4) x /= 1000, i++;
    snprintf(b, n, x < 10 ? "%.2f %s%s" : x < 100 ? "%.1f %s%s" : "%.0f %s%s", x, p[i], unit);
}

static void print_table(FILE *out, const machine *mc, const model_result *R) {
    char wb[24], tb[24];
    fmt_si(wb, sizeof wb, (double)R->weight_bytes, "B");
    fmt_si(tb, sizeof tb, R->decode_weight_bytes, "B");
    fprintf(out, "\n%s: %s\n", R->name, R->source);
    if (R->note[0]) fprintf(out, "  %s\n", R->note);
    fprintf(out, "  weights in memory %s (built in %.1f s); weights read per decoded token %s\n", wb, R->build_s, tb);
    fprintf(out, "\n%-33s %13s %13s  %-21s %8s %8s  %-22s %7s\n", "figure", "value", "limit", "limit from",
            "of limit", "of bf16", "llama.cpp (issue text)", "speedup");
    for (int i = 0; i < F_COUNT; i++) {
        const figure *f = &R->f[i];
        char v[32], lv[32], basis[48], w[24], p1[16], p2[16], sp[16];
        if (!f->done) {
            fprintf(out, "%-33s %13s  (skipped: %s)\n", f->label, "-", f->skip[0] ? f->skip : "not measured");
            continue;
        }
        bool decode = i == F_TG_SHORT || i == F_TG_LONG;
        fmt_value(v, sizeof v, f, f->value);
        fmt_value(lv, sizeof lv, f, f->limit);
        if (decode) {
            fmt_si(w, sizeof w, f->work, "B");
            snprintf(basis, sizeof basis, "%s at %.0f GB/s", w, f->bw_gbs > 0 ? f->bw_gbs : mc->bw_gbs);
        } else {
            fmt_si(w, sizeof w, f->work, "FLOP");
            snprintf(basis, sizeof basis, "%s at FMA peak", w);
        }
        fmt_pct(p1, sizeof p1, f->frac);
        fmt_pct(p2, sizeof p2, decode ? 0 : f->frac_bf16);
        if (f->speedup > 0) snprintf(sp, sizeof sp, "%.2fx", f->speedup);
        else snprintf(sp, sizeof sp, "-");
        fprintf(out, "%-33s %13s %13s  %-21s %8s %8s  %-22s %7s\n", f->label, v, lv, basis, p1, p2,
                f->ref_text[0] ? f->ref_text : "-", sp);
    }
    char rss[24];
    fmt_si(rss, sizeof rss, (double)R->peak_rss, "B");
    fprintf(out, "%-33s %13s  (getrusage ru_maxrss: the whole process so far)\n", "peak RSS", rss);
}

static json_t *figure_json(const figure *f) {
    json_t *o = json_object();
    json_object_set_new(o, "label", json_string(f->label));
    if (!f->done) {
        json_object_set_new(o, "skipped", json_string(f->skip[0] ? f->skip : "not measured"));
        return o;
    }
    json_object_set_new(o, "value", json_real(f->value));
    json_object_set_new(o, "unit", json_string(f->is_time ? "ms" : "tokens/s"));
    json_t *reps = json_array();
    for (int i = 0; i < f->n_reps; i++) json_array_append_new(reps, json_real(f->reps[i]));
    json_object_set_new(o, "reps", reps);
    json_object_set_new(o, f->is_time || strstr(f->label, "prefill") ? "flops" : "bytes_per_token",
                        json_real(f->work));
    json_object_set_new(o, "limit", json_real(f->limit));
    if (f->bw_gbs > 0) json_object_set_new(o, "read_bandwidth_gbs", json_real(f->bw_gbs));
    json_object_set_new(o, "fraction", json_real(f->frac));
    if (f->frac_bf16 > 0) json_object_set_new(o, "fraction_of_bf16_peak", json_real(f->frac_bf16));
    if (f->ref > 0) {
        json_object_set_new(o, "llama_cpp_issue", json_real(f->ref));
        json_object_set_new(o, "llama_cpp_note", json_string(f->ref_text));
        json_object_set_new(o, "speedup", json_real(f->speedup));
    }
    return o;
}

static const char *fig_keys[F_COUNT] = { "vision_tile", "vision_image_7_tiles", "prefill_short", "prefill_long",
                                         "decode_short_ctx", "decode_long_ctx", "ttft_image" };

static int write_json(const char *path, const machine *mc, const bench_opts *o, const model_result *R, int n) {
    json_t *root = json_object(), *mj = json_object(), *models = json_array();
    json_object_set_new(root, "tool", json_string("tower bench"));
    json_object_set_new(root, "build", json_string(tw_build_info()));
    json_object_set_new(root, "quick", json_boolean(o->quick));
    json_object_set_new(mj, "cpu", json_string(mc->cpu));
    json_object_set_new(mj, "threads", json_integer(mc->threads));
    json_object_set_new(mj, "kernels", json_string(mc->kpath));
    json_object_set_new(mj, "matmul_activations", json_string(mc->bf16_act ? "bf16" : "f32"));
    json_object_set_new(mj, "cpu_features", json_string(tw_cpu_features()));
    json_object_set_new(mj, "read_bandwidth_gbs", json_real(mc->bw_gbs));
    json_object_set_new(mj, "read_bandwidth_buffer_bytes", json_integer((json_int_t)mc->bw_bytes));
    json_object_set_new(mj, "fma_f32_gflops", json_real(mc->fma));
    json_object_set_new(mj, "fma_isa", json_string(tw_bench_fma_isa()));
    json_object_set_new(mj, "bf16_dot_gflops", json_real(mc->bf16));
    json_object_set_new(mj, "int8_dot_gops", json_real(mc->int8));
    json_object_set_new(mj, "load_average_at_start", json_real(mc->load1));
    json_object_set_new(root, "machine", mj);
    for (int k = 0; k < n; k++) {
        const model_result *r = &R[k];
        json_t *mo = json_object(), *fj = json_object();
        json_object_set_new(mo, "name", json_string(r->name));
        json_object_set_new(mo, "source", json_string(r->source));
        json_object_set_new(mo, "type", json_string(r->type));
        if (r->note[0]) json_object_set_new(mo, "note", json_string(r->note));
        json_object_set_new(mo, "build_s", json_real(r->build_s));
        json_object_set_new(mo, "weight_bytes_in_memory", json_integer((json_int_t)r->weight_bytes));
        json_object_set_new(mo, "weight_bytes_per_token", json_real(r->decode_weight_bytes));
        json_object_set_new(mo, "image_tokens", json_integer(r->n_image_tokens));
        json_object_set_new(mo, "prompt_tokens", json_integer(r->n_prompt));
        json_object_set_new(mo, "peak_rss_bytes", json_integer((json_int_t)r->peak_rss));
        for (int i = 0; i < F_COUNT; i++) json_object_set_new(fj, fig_keys[i], figure_json(&r->f[i]));
        json_object_set_new(mo, "figures", fj);
        json_array_append_new(models, mo);
    }
    json_object_set_new(root, "models", models);
    int rc = 0;
    if (strcmp(path, "-") == 0) {
        rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) ? 1 : 0;
        fputc('\n', stdout);
    } else if (json_dump_file(root, path, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) != 0) {
        fprintf(stderr, "tower bench: error: cannot write %s\n", path);
        rc = 1;
    }
    json_decref(root);
    return rc;
}

/* ---- llama.cpp figures quoted in the issue (TowerVision-2B on this machine type) ------------------ */

static void set_refs(model_result *R, const char *type) {
    figure *F = R->f;
    F[F_TILE].ref = 4500, snprintf(F[F_TILE].ref_text, sizeof F[F_TILE].ref_text, "4.5 s (21 s default)");
    F[F_TTFT].ref = 105000, snprintf(F[F_TTFT].ref_text, sizeof F[F_TTFT].ref_text, "~105 s");
    if (strcmp(type, "bf16") == 0) {
        F[F_PP_SHORT].ref = 40, snprintf(F[F_PP_SHORT].ref_text, sizeof F[F_PP_SHORT].ref_text, "~40 tok/s (bf16)");
        F[F_TG_SHORT].ref = 3.9, snprintf(F[F_TG_SHORT].ref_text, sizeof F[F_TG_SHORT].ref_text, "3.9 tok/s (bf16)");
    } else if (strcmp(type, "q8") == 0) {
        F[F_TG_SHORT].ref = 10.2, snprintf(F[F_TG_SHORT].ref_text, sizeof F[F_TG_SHORT].ref_text, "10.2 tok/s (q8)");
    } else if (strcmp(type, "q4") == 0) {
        F[F_TG_SHORT].ref = 11.5, snprintf(F[F_TG_SHORT].ref_text, sizeof F[F_TG_SHORT].ref_text, "11.5 tok/s (q4)");
    }
}

static void read_cpu_name(char *out, size_t n) {
    snprintf(out, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && c) {
            c += 1 + (c[1] == ' ');
            c[strcspn(c, "\n")] = 0;
            snprintf(out, n, "%s", c);
            break;
        }
    }
    fclose(f);
}

/* ---- main --------------------------------------------------------------------------------------- */

static int run_one(const char *preset, const bench_opts *o, const machine *mc, model_result *R) {
    memset(R, 0, sizeof *R);
    tw_model *m = NULL;
    bool random = !o->ckpt;
    double t0 = now_ms();
    snprintf(R->type, sizeof R->type, "%s", random ? o->type : "as stored");
    if (random) {
        tw_random_spec sp;
        tw_random_spec_preset(preset, &sp);
        sp.n_threads = o->threads;
        sp.type = o->dtype;
        if (strcmp(preset, "9b") == 0) sp.n_distinct = o->distinct;
        snprintf(R->name, sizeof R->name, "%s", sp.name);
        snprintf(R->source, sizeof R->source, "random %s weights of the exact shapes, built in memory%s",
                 tw_dtype_name(sp.type), sp.type != TW_DT_BF16 && sp.type != TW_DT_F16 && sp.type != TW_DT_F32
                 ? " (matrices; vectors, patch conv and position embedding BF16)" : "");
        if (sp.n_distinct > 0 && sp.n_distinct < sp.text.n_layer)
            snprintf(R->note, sizeof R->note, "%s: %d distinct layers cycled over %d; weights read per token = the "
                     "real model's", strcmp(preset, "9b") == 0 ? "9B" : sp.name, (int)sp.n_distinct,
                     (int)sp.text.n_layer);
        fprintf(stderr, "tower bench: building %s with random weights...\n", sp.name);
        if (tw_random_model_new(&sp, &m) != TW_OK) return fail("random model");
        R->weight_bytes = tw_random_model_bytes(m);
    } else {
        tw_model_params p = tw_model_default_params();
        p.n_threads = o->threads;
        fprintf(stderr, "tower bench: loading %s...\n", o->ckpt);
        if (tw_model_load_dir(o->ckpt, &p, &m) != TW_OK) return fail(o->ckpt);
        snprintf(R->name, sizeof R->name, "%s (%d layers, hidden %d)", m->arch_name, (int)m->text.n_layer,
                 (int)m->text.n_embd);
        snprintf(R->source, sizeof R->source, "checkpoint %s", o->ckpt);
        R->weight_bytes = tw_st_bytes(m->st);
    }
    R->build_s = (now_ms() - t0) / 1e3;
    /* the llama.cpp figures are for TowerVision-2B */
    if (m->text.n_embd == 2304 && m->text.n_layer == 26) set_refs(R, random ? o->type : "bf16");
    int rc = bench_model(m, o, R);
    R->peak_rss = tw_bench_peak_rss();
    finish(&R->f[F_TILE], mc, false);
    finish(&R->f[F_IMAGE], mc, false);
    finish(&R->f[F_TTFT], mc, false);
    if (random) tw_random_model_free(m);
    else tw_model_free(m);
    return rc;
}

/* Fractions once the machine's limits are final (the best of the two measurements). */
static void finish_all(model_result *R, const machine *mc, bool quick) {
    finish(&R->f[F_TILE], mc, false);
    finish(&R->f[F_IMAGE], mc, false);
    finish(&R->f[F_TTFT], mc, false);
    finish_prefill(&R->f[F_PP_SHORT], mc, quick ? QUICK_PP_SHORT : 512);
    finish_prefill(&R->f[F_PP_LONG], mc, quick ? QUICK_PP_LONG : 5000);
    finish(&R->f[F_TG_SHORT], mc, true);
    finish(&R->f[F_TG_LONG], mc, true);
}

/* The limits, measured with the benchmark's thread count; called before and after the models,
** keeping the best of each (other processes on the machine can only make a measurement lower). */
static int measure_machine(machine *mc, const bench_opts *o) {
    tw_pool *pool = tw_pool_new(o->threads);
    if (!pool) return fail("thread pool");
    mc->threads = tw_pool_size(pool);
    mc->bw_bytes = o->quick ? (size_t)256 << 20 : (size_t)1 << 30;
    mc->bw_gbs = fmax(mc->bw_gbs, tw_bench_read_bw(pool, mc->bw_bytes, o->quick ? 3 : 5));
    mc->fma = fmax(mc->fma, tw_bench_fma_peak(pool, 3));
    mc->bf16 = fmax(mc->bf16, tw_bench_bf16_peak(pool, 3));
    mc->int8 = fmax(mc->int8, tw_bench_int8_peak(pool, 3));
    tw_pool_free(pool);
    return 0;
}

int tower_cmd_bench(int argc, char **argv) {
    bench_opts o = { .model = "2b", .type = "bf16", .dtype = TW_DT_BF16, .reps = 0, .distinct = 4, .kv = TW_KV_F16 };
    enum { O_MODEL = 256, O_REPS, O_TYPE, O_QUICK, O_SKIPV, O_SKIP2, O_SKIP9, O_JSON, O_DISTINCT, O_DECODE, O_SKIPT,
           O_KV, O_MATMUL };
    static const struct option lo[] = {
        { "model", required_argument, 0, O_MODEL },   { "checkpoint", required_argument, 0, 'm' },
        { "threads", required_argument, 0, 't' },     { "reps", required_argument, 0, O_REPS },
        { "type", required_argument, 0, O_TYPE },     { "quick", no_argument, 0, O_QUICK },
        { "skip-vision", no_argument, 0, O_SKIPV },   { "skip-2b", no_argument, 0, O_SKIP2 },
        { "skip-9b", no_argument, 0, O_SKIP9 },       { "skip-ttft", no_argument, 0, O_SKIPT },
        { "json", required_argument, 0, O_JSON },     { "distinct", required_argument, 0, O_DISTINCT },
        { "decode", required_argument, 0, O_DECODE }, { "help", no_argument, 0, 'h' },
        { "kv-type", required_argument, 0, O_KV },   { "matmul", required_argument, 0, O_MATMUL },
        { 0, 0, 0, 0 },
    };
    optind = 1;
    int c, rc;
    while ((c = getopt_long(argc, argv, "m:t:h", lo, NULL)) != -1) {
        switch (c) {
        case O_MODEL: o.model = optarg; break;
        case 'm': o.ckpt = optarg; break;
        case 't': if ((rc = parse_int(optarg, 0, 1024, "-t", &o.threads))) return rc; break;
        case O_REPS: if ((rc = parse_int(optarg, 1, 16, "--reps", &o.reps))) return rc; break;
        case O_DISTINCT: if ((rc = parse_int(optarg, 0, 4096, "--distinct", &o.distinct))) return rc; break;
        case O_DECODE: if ((rc = parse_int(optarg, 1, 4096, "--decode", &o.n_decode))) return rc; break;
        case O_TYPE: o.type = optarg; break;
        case O_KV:
            if (tw_kv_type_parse(optarg, &o.kv) != TW_OK) {
                fprintf(stderr, "tower bench: --kv-type: %s\n", tw_last_error());
                return 2;
            }
            break;
        case O_MATMUL:
            if (strcmp(optarg, "f32") && strcmp(optarg, "bf16")) {
                fprintf(stderr, "tower bench: --matmul expects f32 or bf16, got '%s'\n", optarg);
                return 2;
            }
            o.matmul = optarg;
            break;
        case O_QUICK: o.quick = true; break;
        case O_SKIPV: o.skip_vision = true; break;
        case O_SKIPT: o.skip_ttft = true; break;
        case O_SKIP2: o.skip_2b = true; break;
        case O_SKIP9: o.skip_9b = true; break;
        case O_JSON: o.json = optarg; break;
        case 'h': usage(stdout); return 0;
        default: fprintf(stderr, "Try 'tower bench --help'.\n"); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tower bench: unexpected argument '%s'\nTry 'tower bench --help'.\n", argv[optind]);
        return 2;
    }
    if (o.reps == 0) o.reps = o.quick ? 1 : 2;
    /* "tiny": a few small layers (tests/test_bench.c), not a real model */
    if (strcmp(o.model, "2b") && strcmp(o.model, "9b") && strcmp(o.model, "all") && strcmp(o.model, "tiny")) {
        fprintf(stderr, "tower bench: --model expects 2b, 9b or all, got '%s'\n", o.model);
        return 2;
    }
    if (strcmp(o.type, "bf16") && strcmp(o.type, "f16") && strcmp(o.type, "f32") && strcmp(o.type, "q8") &&
        strcmp(o.type, "q4")) {
        fprintf(stderr, "tower bench: --type expects bf16, f16, f32, q8 or q4, got '%s'\n", o.type);
        return 2;
    }
    if (!o.ckpt && !type_of(o.type, &o.dtype)) {
        /* quantized types need the quant module (src/cpu/quant.h) in this build */
        fprintf(stderr, "tower bench: --type %s: skipped: this build cannot make %s weights (no quant module); "
                "use --type bf16, or -m a quantized checkpoint\n", o.type, o.type);
        return 0;
    }

    const char *presets[2];
    int n_models = 0;
    if (o.ckpt) presets[n_models++] = "checkpoint";
    else {
        bool all = strcmp(o.model, "all") == 0;
        if ((all && !o.skip_2b) || strcmp(o.model, "2b") == 0) presets[n_models++] = "2b";
        if ((all && !o.skip_9b) || strcmp(o.model, "9b") == 0) presets[n_models++] = "9b";
        if (strcmp(o.model, "tiny") == 0) presets[n_models++] = "tiny";
    }
    if (!n_models) {
        fprintf(stderr, "tower bench: nothing to do (every model skipped)\n");
        return 2;
    }

    /* ---- the machine's limits, measured now ---- */
    machine mc = { 0 };
    mc.kpath = tw_kpath_name(tw_kernels_init());
    if (o.matmul) tw_kernels_set_bf16_activations(strcmp(o.matmul, "bf16") == 0);
    mc.bf16_act = tw_kernels_bf16_activations();
    if (o.matmul && strcmp(o.matmul, "bf16") == 0 && !mc.bf16_act)
        fprintf(stderr, "tower bench: --matmul bf16: this CPU or kernel path has no bf16 dot product; "
                "measuring the f32 path\n");
    read_cpu_name(mc.cpu, sizeof mc.cpu);
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf", &mc.load1) != 1) mc.load1 = 0;
        fclose(la);
    }
    fprintf(stderr, "tower bench: measuring this machine's limits...\n");
    if ((rc = measure_machine(&mc, &o))) return rc;

    model_result *R = tw_calloc((size_t)n_models, sizeof *R);
    if (!R) return fail("results");
    rc = 0;
    int done = 0;
    for (int k = 0; k < n_models && rc == 0; k++, done++) rc = run_one(presets[k], &o, &mc, &R[k]);
    if (done) {
        fprintf(stderr, "tower bench: measuring the limits again...\n");
        if (measure_machine(&mc, &o) == 0)
            for (int k = 0; k < done; k++) finish_all(&R[k], &mc, o.quick);
    }

    FILE *out = o.json && strcmp(o.json, "-") == 0 ? stderr : stdout;
    fprintf(out, "\ntower bench — %s, %d threads, kernels %s, matmul activations %s%s\n", mc.cpu, mc.threads,
            mc.kpath, mc.bf16_act ? "bf16 (--matmul bf16)" : "f32", o.quick ? " (--quick: small sizes)" : "");
    fprintf(out, "machine limits measured in this run: read %.1f GB/s (%zu MB buffer); f32 FMA %.0f GFLOP/s (%s); "
            "bf16 dot %.0f GFLOP/s; int8 dot %.0f GOP/s\n", mc.bw_gbs, mc.bw_bytes >> 20, mc.fma, tw_bench_fma_isa(),
            mc.bf16, mc.int8);
    if (mc.load1 > 0.5 * mc.threads)
        fprintf(out, "WARNING: load average %.1f at the start on %d cores: other processes shared the CPU, the "
                "figures and limits are disturbed\n", mc.load1, tw_cpu_count());
    fprintf(out, "limits: decode = read bandwidth (measured beside each decode figure) / bytes read per token "
            "(weights + KV cache); vision, prefill "
            "and TTFT = FLOPs / f32 FMA peak (\"of bf16\": / vdpbf16ps peak)\n");
    if (!o.quick && done)
        fprintf(out, "prefill %d = the first %d positions of the TTFT prompt; decode runs after rewinding that "
                "sequence to the context shown\n", 5000, 5000);
    for (int k = 0; k < done; k++) print_table(out, &mc, &R[k]);
    if (o.json && write_json(o.json, &mc, &o, R, done)) rc = 1;
    free(R);
    return rc;
}
