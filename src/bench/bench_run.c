/*
** bench_run.c — the engine of `tower bench` (tools/cmd_bench.c prints and parses options): how fast
** the engine runs TowerVision on this machine, and how close each figure comes to what the machine
** can do, measured in the same run. Public entry points: tw_bench_* in include/tower.h.
**
** No download: by default the model is built in memory with random weights of the exact shapes
** of TowerVision-2B (and/or -9B), BF16 as released (model_random.c); a checkpoint can be benched
** instead. The figures go through the same entry points as `tower run`:
**   vision       SigLIP + projector on one 384px tile; tw_image_encode on a 1152x768 image
**                (6 tiles + base = 7 SigLIP passes)
**   prefill      tw_seq_eval of 512 and of 5,000 new tokens
**   decode       tw_seq_eval of one token at a time after 128 and 4,096 cached positions (with
**                n_batch > 1: that many sequences stepped together by tw_seq_eval_batch, the
**                figure their tokens per second in all)
**   TTFT         image encode + prefill of the ~5,200-token prompt + argmax of the first token
**   peak RSS     getrusage ru_maxrss
** Limits (bench.c): decode against read bandwidth (bytes read per token, counted from the
** tensors, / GB/s), vision and prefill against the multiply-add peak (FLOPs counted from the
** shapes / GFLOP/s).
**
** To stay within minutes, one long prompt serves several figures: the 5,000-token prefill is
** the first 5,000 positions of the TTFT prompt (timed as its own tw_seq_eval call), and the
** decode figures run after rewinding that sequence to 4,096 and then to 128 positions; the
** cache rows beyond the rewind point are never read.
*/
#include "bench.h"
#include "kernels.h"
#include "safetensors.h"
#include "vision.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- figures ------------------------------------------------------------------------------------ */

static double best_of(tw_bench_figure *f) {
    double b = f->n_reps ? f->reps[0] : 0;
    for (int i = 1; i < f->n_reps; i++) b = f->is_time ? fmin(b, f->reps[i]) : fmax(b, f->reps[i]);
    return b;
}

static void add_rep(tw_bench_figure *f, double v) {
    if (f->n_reps < 16) f->reps[f->n_reps++] = v;
    f->value = best_of(f);
    f->done = true;
}

/* Fractions and speedups once value, work and the machine are known. Time figures: limit =
** FLOPs at the f32 FMA peak; decode: bandwidth / bytes per token. (Prefill: finish_prefill.) */
static void finish(tw_bench_figure *f, const tw_bench_machine *mc, bool decode) {
    if (!f->done || f->value <= 0) return;
    if (decode) {
        double bw = f->bw_gbs > 0 ? f->bw_gbs : mc->read_gbs;
        f->limit = bw > 0 ? bw * 1e9 / f->work : 0;
        f->frac = f->limit > 0 ? f->value / f->limit : 0;
    } else if (f->is_time) {
        f->limit = mc->fma_gflops > 0 ? f->work / (mc->fma_gflops * 1e9) * 1e3 : 0;
        f->frac = f->limit / f->value;
        f->frac_bf16 = mc->bf16_gflops > 0 ? f->work / (mc->bf16_gflops * 1e9) * 1e3 / f->value : 0;
    }
    if (f->ref > 0) f->speedup = f->is_time ? f->ref / f->value : f->value / f->ref;
}

/* Prefill: work = FLOPs of the call with n tokens; limit in tokens/s = n / (work / peak). */
static void finish_prefill(tw_bench_figure *f, const tw_bench_machine *mc, int n) {
    if (!f->done || f->value <= 0) return;
    f->limit = mc->fma_gflops > 0 ? n / (f->work / (mc->fma_gflops * 1e9)) : 0;
    f->frac = f->limit > 0 ? f->value / f->limit : 0;
    f->frac_bf16 = mc->bf16_gflops > 0 ? f->value / (n / (f->work / (mc->bf16_gflops * 1e9))) : 0;
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

/* what failed, then the library's message */
static tw_status fail(const char *what) {
    char prev[512];
    snprintf(prev, sizeof prev, "%s", tw_last_error());
    return tw_err(TW_E_INTERNAL, "%s: %s", what, prev);
}

/* A progress line through the caller's log callback. */
__attribute__((format(printf, 2, 3)))
static void say(const tw_bench_params *o, const char *fmt, ...) {
    if (!o->log) return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    o->log(o->user_data, line);
}

/* SigLIP + projector on one tile of random pixels in [-1, 1] (normalised range). */
static int bench_tile(const tw_model *m, const tw_bench_params *o, int reps, tw_bench_figure *f) {
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
        say(o, "  vision tile %d/%d: %.0f ms", r + 1, reps, f->reps[f->n_reps - 1]);
    }
    f->work = tw_bench_vision_flops(m, 1);
done:
    free(px), free(feat), free(proj);
    return rc;
}

/* Decodes n tokens one at a time after rewinding s to ctx; tokens/s of the best rep. With more
** sequences (copies of s at ctx: n_more of them), every step is one tw_seq_eval_batch of all of
** them, each with its own token, and the figure is the tokens of all per second. The read
** bandwidth is measured again right before and after every rep, and the best of those is this
** figure's limit: the memory speed of these VMs drifts by up to 1.5x within minutes (40-72 GB/s
** seen here), so a limit measured minutes earlier could put a figure far above or below 100 %. */
static int bench_decode(const tw_bench_params *o, tw_seq *s, int32_t ctx, int n, int reps, tw_bench_figure *f,
                        size_t bw_bytes, tw_seq **more, int n_more) {
    const tw_model *m = s->m;
    enum { MAX_BATCH = 64 };   /* tw_bench_run refuses more */
    tw_batch_item items[MAX_BATCH];
    int32_t ids[MAX_BATCH];
    const int k = 1 + n_more;
    if (k > MAX_BATCH) return fail("batch too large");
    if (tw_seq_rewind(s, ctx) != TW_OK) return fail("rewind");
    for (int i = 0; i < n_more; i++)
        if (tw_seq_copy(more[i], s) != TW_OK) return fail("copying the context for the batch");
    for (int r = 0; r < reps; r++) {
        f->bw_gbs = fmax(f->bw_gbs, tw_bench_read_bw(m->pool, bw_bytes, 2));
        for (int i = 0; i < k; i++) {
            tw_seq *q = i == 0 ? s : more[i - 1];
            if (tw_seq_rewind(q, ctx) != TW_OK) return fail("rewind");
            ids[i] = text_id(m);
            items[i] = (tw_batch_item){ q, &ids[i], 1, NULL };
        }
        double t0 = now_ms();
        for (int j = 0; j < n; j++) {
            if ((k == 1 ? tw_seq_eval(s, ids, 1, NULL) : tw_seq_eval_batch(items, (size_t)k)) != TW_OK) return fail("decode");
            for (int i = 0; i < k; i++) {
                ids[i] = argmax(tw_seq_logits(items[i].seq), m->text.n_vocab);
                if (ids[i] == m->image_token_id) ids[i] = 0;
            }
        }
        add_rep(f, (double)k * n / ((now_ms() - t0) / 1e3));
        f->bw_gbs = fmax(f->bw_gbs, tw_bench_read_bw(m->pool, bw_bytes, 2));
        say(o, "  decode at %d%s: %.2f tokens/s (read bandwidth beside it %.1f GB/s)", (int)ctx,
            k > 1 ? ", batch" : "", f->reps[f->n_reps - 1], f->bw_gbs);
    }
    /* bytes read per token: the weights once per step for all k, each sequence's cache for its own */
    double wb = 0, all = tw_bench_decode_bytes(m, ctx + n / 2, tw_seq_kv_type(s), &wb);   /* the middle step */
    f->work = (wb + k * (all - wb)) / k;
    return 0;
}

enum { QUICK_PP_SHORT = 32, QUICK_PP_LONG = 128 };   /* --quick sizes */

static int bench_model(tw_model *m, const tw_bench_params *o, tw_bench_result *R) {
    const bool vision = m->has_vision && !o->skip_vision;
    const bool ttft = vision && !o->skip_ttft && !o->quick;
    const int32_t n_short = o->quick ? QUICK_PP_SHORT : 512, n_long = o->quick ? QUICK_PP_LONG : 5000;
    const int32_t c_short = o->quick ? 16 : 128, c_long = o->quick ? QUICK_PP_LONG : 4096;
    const int n_dec = o->n_decode > 0 ? o->n_decode : (o->quick ? 4 : 16);
    const int n_batch = TW_MAX(1, o->n_batch);
    const size_t dec_bw_bytes = (size_t)(o->quick ? 64 : 256) << 20;   /* 2-8x the L3 */
    tw_bench_figure *F = R->f;
    int rc = 0;

    snprintf(F[TW_BENCH_TILE].label, sizeof F[TW_BENCH_TILE].label, "vision, one %dpx tile", (int)m->vision.image_size);
    snprintf(F[TW_BENCH_IMAGE].label, sizeof F[TW_BENCH_IMAGE].label, "vision, 7-tile image (%dx%d)",
             (int)m->vision.image_size * 3, (int)m->vision.image_size * 2);
    snprintf(F[TW_BENCH_PP_SHORT].label, sizeof F[TW_BENCH_PP_SHORT].label, "prefill, %d tokens", (int)n_short);
    snprintf(F[TW_BENCH_PP_LONG].label, sizeof F[TW_BENCH_PP_LONG].label, "prefill, %d tokens", (int)n_long);
    char per[32] = "";
    if (n_batch > 1) snprintf(per, sizeof per, ", %d sequences", n_batch);
    snprintf(F[TW_BENCH_TG_SHORT].label, sizeof F[TW_BENCH_TG_SHORT].label, "decode, %d context%s", (int)c_short, per);
    snprintf(F[TW_BENCH_TG_LONG].label, sizeof F[TW_BENCH_TG_LONG].label, "decode, %d context%s", (int)c_long, per);
    snprintf(F[TW_BENCH_TTFT].label, sizeof F[TW_BENCH_TTFT].label, "TTFT, %dx%d image + 20 tokens",
             (int)m->vision.image_size * 3, (int)m->vision.image_size * 2);
    for (int i = 0; i < TW_BENCH_N_FIGURES; i++) F[i].is_time = i == TW_BENCH_TILE || i == TW_BENCH_IMAGE || i == TW_BENCH_TTFT;
    const char *why_v = !m->has_vision ? "text-only model" : "--skip-vision";
    if (!vision) {
        snprintf(F[TW_BENCH_TILE].skip, sizeof F[TW_BENCH_TILE].skip, "%s", why_v);
        snprintf(F[TW_BENCH_IMAGE].skip, sizeof F[TW_BENCH_IMAGE].skip, "%s", why_v);
        snprintf(F[TW_BENCH_TTFT].skip, sizeof F[TW_BENCH_TTFT].skip, "%s", why_v);
    } else if (!ttft) {
        snprintf(F[TW_BENCH_IMAGE].skip, sizeof F[TW_BENCH_IMAGE].skip, "%s", o->quick ? "--quick" : "--skip-ttft");
        snprintf(F[TW_BENCH_TTFT].skip, sizeof F[TW_BENCH_TTFT].skip, "%s", o->quick ? "--quick" : "--skip-ttft");
    }

    /* ---- vision: one tile ---- */
    if (vision && (rc = bench_tile(m, o, o->reps, &F[TW_BENCH_TILE]))) return rc;

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
    tw_seq *s = NULL, **more = n_batch > 1 ? tw_calloc((size_t)n_batch - 1, sizeof *more) : NULL;
    if (!ids || !ids_short || (n_batch > 1 && !more) ||
        tw_seq_new_ex(m, n_ctx, &(tw_seq_params){ .kv_type = o->kv_type }, &s) != TW_OK) {
        rc = fail("sequence");
        goto done;
    }
    for (int i = 0; i < n_batch - 1; i++)
        if (tw_seq_new_ex(m, n_ctx, &(tw_seq_params){ .kv_type = o->kv_type }, &more[i]) != TW_OK) {
            rc = fail("sequences of the batch");
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
        add_rep(&F[TW_BENCH_PP_SHORT], n_short / ((now_ms() - t0) / 1e3));
        say(o, "  prefill %d: %.1f tokens/s", (int)n_short, F[TW_BENCH_PP_SHORT].reps[F[TW_BENCH_PP_SHORT].n_reps - 1]);
    }
    F[TW_BENCH_PP_SHORT].work = tw_bench_prefill_flops(m, 0, n_short);

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
        add_rep(&F[TW_BENCH_IMAGE], t_vis);
        F[TW_BENCH_IMAGE].work = tw_bench_vision_flops(m, 7);
        say(o, "  vision 7 tiles: %.0f ms (%d image tokens)", t_vis, (int)n);
    }
    int32_t img_in_first = ttft ? TW_MAX(0, TW_MIN(n_long - pre, n_img)) : 0;
    tw_eval_opts e1 = { .embd = ttft ? embd : NULL, .n_embd_rows = (size_t)img_in_first };
    double t1 = now_ms();
    if (tw_seq_eval(s, ids, (size_t)n_long, ttft ? &e1 : NULL) != TW_OK) {
        rc = fail("long prefill");
        goto done;
    }
    double t_long = now_ms() - t1;
    add_rep(&F[TW_BENCH_PP_LONG], n_long / (t_long / 1e3));
    F[TW_BENCH_PP_LONG].work = tw_bench_prefill_flops(m, 0, n_long);
    say(o, "  prefill %d: %.1f tokens/s", (int)n_long, F[TW_BENCH_PP_LONG].value);
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
        add_rep(&F[TW_BENCH_TTFT], now_ms() - t_start);
        F[TW_BENCH_TTFT].work = tw_bench_vision_flops(m, 7) + tw_bench_prefill_flops(m, 0, n_prompt);
        say(o, "  TTFT: %.1f s (%d prompt tokens)", F[TW_BENCH_TTFT].value / 1e3, (int)n_prompt);
    }

    /* ---- decode after the long context, then the short one (rewinds only go back) ---- */
    if ((rc = bench_decode(o, s, c_long, n_dec, o->reps, &F[TW_BENCH_TG_LONG], dec_bw_bytes, more, n_batch - 1)))
        goto done;
    if ((rc = bench_decode(o, s, c_short, n_dec, o->reps, &F[TW_BENCH_TG_SHORT], dec_bw_bytes, more, n_batch - 1)))
        goto done;
    tw_bench_decode_bytes(m, 0, o->kv_type, &R->decode_weight_bytes);
done:
    tw_seq_free(s);
    for (int i = 0; more && i < n_batch - 1; i++) tw_seq_free(more[i]);
    free(more);
    free(ids);
    free(ids_short);
    free(embd);
    tw_image_free(im);
    return rc;
}

/* ---- llama.cpp figures quoted in the issue (TowerVision-2B on this machine type) ------------------ */

static void set_refs(tw_bench_result *R, const char *type, bool batch) {
    tw_bench_figure *F = R->f;
    F[TW_BENCH_TILE].ref = 4500, snprintf(F[TW_BENCH_TILE].ref_text, sizeof F[TW_BENCH_TILE].ref_text, "4.5 s (21 s default)");
    F[TW_BENCH_TTFT].ref = 105000, snprintf(F[TW_BENCH_TTFT].ref_text, sizeof F[TW_BENCH_TTFT].ref_text, "~105 s");
    if (strcmp(type, "bf16") == 0) {
        F[TW_BENCH_PP_SHORT].ref = 40, snprintf(F[TW_BENCH_PP_SHORT].ref_text, sizeof F[TW_BENCH_PP_SHORT].ref_text, "~40 tok/s (bf16)");
        F[TW_BENCH_TG_SHORT].ref = 3.9, snprintf(F[TW_BENCH_TG_SHORT].ref_text, sizeof F[TW_BENCH_TG_SHORT].ref_text, "3.9 tok/s (bf16)");
    } else if (strcmp(type, "q8") == 0) {
        F[TW_BENCH_TG_SHORT].ref = 10.2, snprintf(F[TW_BENCH_TG_SHORT].ref_text, sizeof F[TW_BENCH_TG_SHORT].ref_text, "10.2 tok/s (q8)");
    } else if (strcmp(type, "q4") == 0) {
        F[TW_BENCH_TG_SHORT].ref = 11.5, snprintf(F[TW_BENCH_TG_SHORT].ref_text, sizeof F[TW_BENCH_TG_SHORT].ref_text, "11.5 tok/s (q4)");
    }
    if (batch) {   /* llama.cpp's decode figures are of one sequence: not comparable with a batch's */
        F[TW_BENCH_TG_SHORT].ref = 0;
        F[TW_BENCH_TG_SHORT].ref_text[0] = 0;
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

static int run_one(const char *preset, tw_dtype type, const tw_bench_params *o, const tw_bench_machine *mc, tw_bench_result *R) {
    memset(R, 0, sizeof *R);
    tw_model *m = NULL;
    bool random = !o->checkpoint;
    double t0 = now_ms();
    snprintf(R->type, sizeof R->type, "%s", random ? o->type : "as stored");
    if (random) {
        tw_random_spec sp;
        tw_random_spec_preset(preset, &sp);
        sp.n_threads = o->n_threads;
        sp.type = type;
        if (strcmp(preset, "9b") == 0) sp.n_distinct = o->n_distinct;
        snprintf(R->name, sizeof R->name, "%s", sp.name);
        snprintf(R->source, sizeof R->source, "random %s weights of the exact shapes, built in memory%s",
                 tw_dtype_name(sp.type), sp.type != TW_DT_BF16 && sp.type != TW_DT_F16 && sp.type != TW_DT_F32
                 ? " (matrices; vectors, patch conv and position embedding BF16)" : "");
        if (sp.n_distinct > 0 && sp.n_distinct < sp.text.n_layer)
            snprintf(R->note, sizeof R->note, "%s: %d distinct layers cycled over %d; weights read per token = the "
                     "real model's", strcmp(preset, "9b") == 0 ? "9B" : sp.name, (int)sp.n_distinct,
                     (int)sp.text.n_layer);
        say(o, "building %s with random weights...", sp.name);
        if (tw_random_model_new(&sp, &m) != TW_OK) return fail("random model");
        R->weight_bytes = tw_random_model_bytes(m);
    } else {
        tw_model_params p = tw_model_default_params();
        p.n_threads = o->n_threads;
        p.offline = o->offline;
        say(o, "loading %s...", o->checkpoint);
        tw_status st = tw_model_load(o->checkpoint, &p, &m);   /* its message names the checkpoint */
        if (st != TW_OK) return st;
        snprintf(R->name, sizeof R->name, "%s (%d layers, hidden %d)", m->arch_name, (int)m->text.n_layer,
                 (int)m->text.n_embd);
        snprintf(R->source, sizeof R->source, "checkpoint %s", o->checkpoint);
        R->weight_bytes = tw_st_bytes(m->st);
    }
    R->build_s = (now_ms() - t0) / 1e3;
    /* the llama.cpp figures are for TowerVision-2B */
    if (m->text.n_embd == 2304 && m->text.n_layer == 26) set_refs(R, random ? o->type : "bf16", o->n_batch > 1);
    int rc = bench_model(m, o, R);
    R->peak_rss = tw_bench_peak_rss();
    finish(&R->f[TW_BENCH_TILE], mc, false);
    finish(&R->f[TW_BENCH_IMAGE], mc, false);
    finish(&R->f[TW_BENCH_TTFT], mc, false);
    if (random) tw_random_model_free(m);
    else tw_model_free(m);
    return rc;
}

/* Fractions once the machine's limits are final (the best of the two measurements). */
static void finish_all(tw_bench_result *R, const tw_bench_machine *mc, bool quick) {
    finish(&R->f[TW_BENCH_TILE], mc, false);
    finish(&R->f[TW_BENCH_IMAGE], mc, false);
    finish(&R->f[TW_BENCH_TTFT], mc, false);
    finish_prefill(&R->f[TW_BENCH_PP_SHORT], mc, quick ? QUICK_PP_SHORT : 512);
    finish_prefill(&R->f[TW_BENCH_PP_LONG], mc, quick ? QUICK_PP_LONG : 5000);
    finish(&R->f[TW_BENCH_TG_SHORT], mc, true);
    finish(&R->f[TW_BENCH_TG_LONG], mc, true);
}

/* The limits, measured with the benchmark's thread count; called before and after the models,
** keeping the best of each (other processes on the machine can only make a measurement lower). */
static int measure_machine(tw_bench_machine *mc, int quick) {
    tw_pool *pool = tw_pool_new(mc->threads);
    if (!pool) return fail("thread pool");
    mc->threads = tw_pool_size(pool);
    mc->read_buffer_bytes = quick ? (size_t)256 << 20 : (size_t)1 << 30;
    mc->read_gbs = fmax(mc->read_gbs, tw_bench_read_bw(pool, mc->read_buffer_bytes, quick ? 3 : 5));
    mc->fma_gflops = fmax(mc->fma_gflops, tw_bench_fma_peak(pool, 3));
    mc->bf16_gflops = fmax(mc->bf16_gflops, tw_bench_bf16_peak(pool, 3));
    mc->int8_gops = fmax(mc->int8_gops, tw_bench_int8_peak(pool, 3));
    tw_pool_free(pool);
    return 0;
}

/* ---- public entry points ------------------------------------------------------------------------ */

tw_bench_params tw_bench_default_params(void) {
    return (tw_bench_params){ .shape = "2b", .type = "bf16", .reps = 2, .n_distinct = 4, .kv_type = TW_KV_F16 };
}

/* type name -> weight type, if this build can fill random weights of it */
static bool type_of(const char *name, tw_dtype *t) { return tw_random_type_parse(name, t) && tw_random_type_ok(*t); }

int tw_bench_type_ok(const char *type) {
    tw_dtype t;
    return type && type_of(type, &t);
}

tw_status tw_bench_machine_init(tw_bench_machine *mc, int n_threads, const char *matmul) {
    memset(mc, 0, sizeof *mc);
    if (matmul && strcmp(matmul, "f32") && strcmp(matmul, "bf16"))
        return tw_err(TW_E_ARG, "matmul activations \"%s\": expected f32 or bf16", matmul);
    mc->threads = n_threads;
    mc->n_cpus = tw_cpu_count();
    mc->kernels = tw_kpath_name(tw_kernels_init());
    mc->cpu_features = tw_cpu_features();
    mc->fma_isa = tw_bench_fma_isa();
    if (matmul) tw_kernels_set_bf16_activations(strcmp(matmul, "bf16") == 0);
    mc->bf16_activations = tw_kernels_bf16_activations();
    read_cpu_name(mc->cpu, sizeof mc->cpu);
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf", &mc->load1) != 1) mc->load1 = 0;
        fclose(la);
    }
    return TW_OK;
}

tw_status tw_bench_machine_measure(tw_bench_machine *mc, int quick) {
    return measure_machine(mc, quick) ? TW_E_NOMEM : TW_OK;
}

tw_status tw_bench_run(const tw_bench_params *p, const tw_bench_machine *mc, tw_bench_result *out) {
    memset(out, 0, sizeof *out);
    tw_dtype type = TW_DT_BF16;
    const char *preset = p->checkpoint ? "checkpoint" : p->shape ? p->shape : "2b";
    if (!p->checkpoint) {
        tw_random_spec sp;
        if (!tw_random_spec_preset(preset, &sp))
            return tw_err(TW_E_ARG, "model shapes \"%s\": expected 2b, 9b or tiny", preset);
        if (!type_of(p->type ? p->type : "bf16", &type))
            return tw_err(TW_E_UNSUPPORTED, "weight type \"%s\": this build makes random weights of bf16, f16, f32%s",
                          p->type ? p->type : "", tw_random_type_ok(TW_DT_Q8_0) ? ", q8 and q4" : "");
    }
    if (p->n_batch < 0 || p->n_batch > 64)
        return tw_err(TW_E_ARG, "decode batch of %d sequences: expected 1 to 64", p->n_batch);
    tw_bench_params o = *p;
    if (o.reps < 1) o.reps = o.quick ? 1 : 2;
    if (o.reps > 16) o.reps = 16;
    if (!o.type) o.type = "bf16";
    int rc = run_one(preset, type, &o, mc, out);
    return rc ? (tw_status)rc : TW_OK;
}

void tw_bench_finish(tw_bench_result *r, const tw_bench_machine *mc, int quick) { finish_all(r, mc, quick); }
