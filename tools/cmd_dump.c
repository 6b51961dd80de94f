/*
** cmd_dump.c — `tower dump`: one forward pass over a prompt file, writing ids, logits and hidden
** states (and with --image / --video every intermediate of the vision path, named as in the
** fixtures) to a safetensors file, or comparing them with a fixture (--check-against).
**
** Everything goes through the public API: the prompt is a tw_prompt (raw text, media by kind in
** placeholder order), the vision intermediates come from the pipeline's named-tensor callback
** (tw_encode_opts.on_tensor), the logits and hidden states from tw_prompt_eval, and the files are
** read and written with tw_tensor_file / tw_tensor_writer.
*/
#include "commands.h"
#include "media.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tower_help_dump(void) {
    printf("usage: tower dump -m MODEL --prompt-file FILE [--image SRC ...] [--video SRC [--frames N]]\n"
           "                  -o OUT.safetensors [-n N] [options]\n\n"
           "Runs one forward pass over the exact text of FILE (tokenized without adding special tokens:\n"
           "write <bos> in the file if you want it) and writes a safetensors file with\n"
           "  input_ids           I64 [T]          image tokens expanded\n"
           "  logits              F32 [T, V]       every position, no final softcap unless --final-softcap\n"
           "  text_hidden_states  F32 [L+2, T, H]  scaled embeddings, each layer's output, final norm\n"
           "  generated_ids       I64 [N]          N greedy tokens after the prompt (with -n N > 0)\n"
           "With --image SRC (repeatable, one per <image> in FILE, in order), also the image side, named\n"
           "as in the fixtures (_j suffixes only with several images):\n"
           "  pixel_values        F32 [n_images, max_tiles, 3, S, S]  processor output, zero-padded\n"
           "  image_sizes         I64 [n_images, 2]  (height, width);  num_image_tokens I64 [n_images]\n"
           "  image_rgb[_j]       U8  [h, w, 3]      the decoded image\n"
           "  vision_hidden_states[_j] F32 [L_v+1, tiles, G*G, C]; vision_selected[_j] [tiles, G*G, C]\n"
           "  projected[_j]       F32 [tiles, G*G, H];  packed[_j] F32 [n_tokens, H] (what the text model gets)\n"
           "  (several images on a OneVision checkpoint are single tiles: image_rgb, packed and the sizes only)\n"
           "With --video SRC (or --video-frames), the video side (_j suffixes only with several videos):\n"
           "  video_frame_indices I64 [F]; video_frames_rgb U8 [F, h, w, 3] (decoded, before resizing);\n"
           "  video_frames_resized U8 [F, S, S, 3]; pixel_values_videos F32 [1, F, 3, S, S];\n"
           "  video_vision_hidden_states F32 [L_v+1, F, G*G, C]; video_vision_selected [F, G*G, C];\n"
           "  video_projected [F, G*G, H]; video_pooled [F, P*P, H]; video_features [F*P*P+1, H];\n"
           "  num_video_tokens I64 [1]\n"
           "The file is written atomically: after an error no file is left behind.\n\n"
           "  -f, --prompt-file FILE   prompt text ('-': stdin; also --file, as for run)\n"
           "  -o, --output FILE        where to write\n"
           "  -n, --max-new-tokens N   greedy tokens to generate (default 0; model stop tokens ignored)\n"
           "  --final-softcap          apply the final logit softcap to the stored logits (--no-final-softcap:\n"
           "                           the default here, accepted as in run)\n"
           "  --image SRC              an image for the next <image> of FILE (file, '-', data: or http(s) URL)\n"
           "  --video SRC              a video for the next <video> of FILE; --frames N (default 32),\n"
           "                           --video-frames F1,F2,... / --video-frame F as for run\n"
           "  --check-against FILE     compare with a fixture's tensors.safetensors (input_ids,\n"
           "                           generated_ids exact; logits_full/logits_last 3e-3, text_hidden_states\n"
           "                           1e-4 relative; pixel_values 1e-6; image_sizes, image_rgb exact; vision\n"
           "                           tensors 1e-4); video: indices, counts exact, video_frames_rgb within 2\n"
           "                           levels, resized frames / pixel_values_videos within 1 level when the\n"
           "                           decoded frames are identical (resize ties), video tensors 1e-4 when\n"
           "                           the pixels are identical, else (and then logits) only reported;\n"
           "                           logits_argmax exact. Tensors the file lacks are skipped; exit 1 on a\n"
           "                           mismatch. -o is optional with it.\n"
           "  -t, --threads N, --ctx N, --offline, -v, --verbose   as for run\n\n"
           "examples:\n"
           "  tower dump -m ./TowerVision-2B --prompt-file prompt.txt -o out.safetensors -n 16\n"
           "  tower dump -m ./tiny-towervision --prompt-file two.txt --image a.png --image b.png -n 16 \\\n"
           "      --check-against expected/two_images/tensors.safetensors\n"
           "  tower dump -m ./tiny-towervideo --prompt-file v.txt --video clip.mp4 --frames 8 -n 16 \\\n"
           "      --check-against expected-video/video_mp4_h264_8f/tensors.safetensors\n");
}

/* ---- what dump computed: named tensors ------------------------------------------------------ */

typedef struct dtensor {
    char         name[64];    /* the written name (with the _j suffix where the fixtures use one) */
    tw_elem_type type;
    int32_t      n_dims;
    int64_t      shape[6];
    void        *data;        /* owned */
    size_t       n;           /* elements */
} dtensor;

typedef struct dset {
    dtensor *t;
    size_t   n, cap;
    size_t   n_of_kind[2];    /* images and videos of the prompt: _j suffixes only with several */
    int      oom;
} dset;

static size_t elem_size(tw_elem_type t) {
    switch (t) {
    case TW_ELEM_F32: case TW_ELEM_I32: return 4;
    case TW_ELEM_F16: case TW_ELEM_BF16: return 2;
    case TW_ELEM_I64: return 8;
    case TW_ELEM_U8: return 1;
    }
    return 1;
}

/* Adds a copy of data under name (base + "_j" when j >= 0 and its kind has several media). */
static dtensor *dset_add(dset *d, const char *base, int kind, int j, tw_elem_type type, int32_t n_dims,
                         const int64_t *shape, const void *data) {
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 32;
        dtensor *nt = realloc(d->t, cap * sizeof *nt);
        if (!nt) { d->oom = 1; return NULL; }
        d->t = nt;
        d->cap = cap;
    }
    dtensor *t = &d->t[d->n];
    memset(t, 0, sizeof *t);
    if (j >= 0 && kind >= 0 && d->n_of_kind[kind] > 1) snprintf(t->name, sizeof t->name, "%s_%d", base, j);
    else snprintf(t->name, sizeof t->name, "%s", base);
    t->type = type;
    t->n_dims = n_dims;
    t->n = 1;
    for (int32_t i = 0; i < n_dims; i++) t->shape[i] = shape[i], t->n *= (size_t)shape[i];
    size_t bytes = t->n * elem_size(type);
    if (!(t->data = malloc(bytes ? bytes : 1))) { d->oom = 1; return NULL; }
    if (data) memcpy(t->data, data, bytes);
    else memset(t->data, 0, bytes);
    d->n++;
    return t;
}

static const dtensor *dset_get(const dset *d, const char *name) {
    for (size_t i = 0; i < d->n; i++)
        if (!strcmp(d->t[i].name, name)) return &d->t[i];
    return NULL;
}

static void dset_free(dset *d) {
    for (size_t i = 0; i < d->n; i++) free(d->t[i].data);
    free(d->t);
    memset(d, 0, sizeof *d);
}

/* The pipeline's callback: keeps a copy of every intermediate. Image tensors of single tiles
** (several images on TowerVideo) other than packed are not kept: the reference stores none. */
typedef struct watch {
    dset            *d;
    const tw_prompt *p;
} watch;

static int on_tensor(void *ud, const tw_tensor_info *t) {
    watch *w = ud;
    int video = !strncmp(t->name, "video_", 6) || !strcmp(t->name, "pixel_values_videos");
    if (!video && strcmp(t->name, "packed") != 0) {
        for (size_t i = 0; i < tw_prompt_n_media(w->p); i++) {
            tw_prompt_media_info mi;
            if (tw_prompt_media(w->p, i, &mi) == TW_OK && mi.kind == TW_MEDIA_IMAGE && mi.index == t->media &&
                mi.single_tile)
                return 0;
        }
    }
    dset_add(w->d, t->name, video, t->media, t->type, t->n_dims, t->shape, t->data);
    return w->d->oom;
}

/* pixel_values of every image, [n_images, max_tiles, 3, S, S] zero-padded as the processor pads
** them; replaces the per-image tensors. */
static void join_pixel_values(dset *d) {
    size_t n = d->n_of_kind[0], max_tiles = 0, tile = 0;
    char nm[64];
    for (size_t j = 0; j < n; j++) {
        snprintf(nm, sizeof nm, n > 1 ? "pixel_values_%zu" : "pixel_values", j);
        const dtensor *t = dset_get(d, nm);
        if (!t) return;   /* single tiles: none */
        if ((size_t)t->shape[0] > max_tiles) max_tiles = (size_t)t->shape[0];
        tile = (size_t)(t->shape[1] * t->shape[2] * t->shape[3]);
    }
    if (!n) return;
    int64_t shape[5] = {(int64_t)n, (int64_t)max_tiles, 3, 0, 0};
    snprintf(nm, sizeof nm, n > 1 ? "pixel_values_0" : "pixel_values");
    shape[3] = dset_get(d, nm)->shape[2];
    shape[4] = dset_get(d, nm)->shape[3];
    dtensor *all = dset_add(d, "pixel_values_all", -1, -1, TW_ELEM_F32, 5, shape, NULL);
    if (!all) return;
    for (size_t j = 0; j < n; j++) {
        snprintf(nm, sizeof nm, n > 1 ? "pixel_values_%zu" : "pixel_values", j);
        dtensor *t = (dtensor *)dset_get(d, nm);
        memcpy((float *)all->data + j * max_tiles * tile, t->data, t->n * sizeof(float));
        t->name[0] = 0;   /* dropped: only the joined tensor is written */
    }
    snprintf(all->name, sizeof all->name, "pixel_values");
}

/* ---- checks against a fixture -------------------------------------------------------------------- */

/* max |a - b| over n floats */
static double max_abs_diff(const float *a, const float *b, size_t n, double *max_b) {
    double d = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double x = fabs((double)a[i] - (double)b[i]);
        if (x > d || isnan(x)) d = isnan(x) ? INFINITY : x;
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    if (max_b) *max_b = mb;
    return d;
}

static size_t ref_nelem(const tw_tensor_info *r) {
    size_t n = 1;
    for (int32_t i = 0; i < r->n_dims; i++) n *= (size_t)r->shape[i];
    return n;
}

static const char *elem_name(tw_elem_type t) {
    static const char *const names[] = {"F32", "F16", "BF16", "I64", "I32", "U8"};
    return (unsigned)t < 6 ? names[t] : "?";
}

/* The fixture's tensor of that name, or 0 (skipped). */
static int ref_get(const tw_tensor_file *f, const char *name, tw_tensor_info *r) {
    return tw_tensor_file_get(f, name, r) == TW_OK;
}

static int shape_mismatch(const char *name, const tw_tensor_info *r, size_t n) {
    fprintf(stderr, "check %s: MISMATCH (the reference has %zu %s values, dump computed %zu)\n", name, ref_nelem(r),
            elem_name(r->type), n);
    return 1;
}

/* One check line on stderr; returns 1 on a mismatch. A tensor the fixture lacks is skipped.
** why != NULL: the difference is only reported (an input upstream already differs). */
static int check_f32_why(const tw_tensor_file *f, const char *name, const float *ours, size_t n, double limit, int rel,
                         const char *why) {
    tw_tensor_info r;
    if (!ref_get(f, name, &r)) return 0;
    if (r.type != TW_ELEM_F32 || ref_nelem(&r) != n) return shape_mismatch(name, &r, n);
    double mb, d = max_abs_diff(ours, r.data, n, &mb), lim = rel ? limit * mb + limit : limit;
    if (why) {
        fprintf(stderr, "check %s: max |diff| %.3g (reported, not compared: %s)\n", name, d, why);
        return 0;
    }
    fprintf(stderr, "check %s: max |diff| %.3g (limit %.3g): %s\n", name, d, lim, d <= lim ? "ok" : "MISMATCH");
    return !(d <= lim);
}

static int check_exact(const tw_tensor_file *f, const dtensor *t) {
    tw_tensor_info r;
    if (!ref_get(f, t->name, &r)) return 0;
    int ok = r.type == t->type && ref_nelem(&r) == t->n && memcmp(r.data, t->data, t->n * elem_size(t->type)) == 0;
    fprintf(stderr, "check %s (%zu): %s\n", t->name, t->n, ok ? "ok" : "MISMATCH");
    return !ok;
}

/* uint8 pixels: max |diff| in levels and how many values differ; limit < 0: report only.
** *maxd = the largest difference (-1: the tensor is absent). */
static int check_u8(const tw_tensor_file *f, const dtensor *t, int limit, int *maxd) {
    tw_tensor_info r;
    *maxd = -1;
    if (!ref_get(f, t->name, &r)) return 0;
    if (r.type != TW_ELEM_U8 || ref_nelem(&r) != t->n) return shape_mismatch(t->name, &r, t->n);
    const uint8_t *a = t->data, *b = r.data;
    size_t differ = 0;
    int d = 0;
    for (size_t i = 0; i < t->n; i++) {
        int x = abs((int)a[i] - (int)b[i]);
        differ += x != 0;
        if (x > d) d = x;
    }
    *maxd = d;
    if (limit < 0) {
        fprintf(stderr, "check %s: max |diff| %d level(s), %zu of %zu values differ (reported, not compared: the "
                        "decoded frames differ)\n", t->name, d, differ, t->n);
        return 0;
    }
    fprintf(stderr, "check %s: max |diff| %d level(s) (limit %d), %zu of %zu values differ: %s\n", t->name, d, limit,
            differ, t->n, d <= limit ? "ok" : "MISMATCH");
    return d > limit;
}

/* The name of the j-th video's tensor (with _j with several videos). */
static const dtensor *vget(const dset *d, const char *base, size_t j, char *nm, size_t cap) {
    if (d->n_of_kind[1] > 1) snprintf(nm, cap, "%s_%zu", base, j);
    else snprintf(nm, cap, "%s", base);
    return dset_get(d, nm);
}

/* The video side: decoded frames within 2 levels; the resize and pixel_values_videos within one
** level when the decoded frames are the reference's (float ties, docs/video.md); what follows is
** compared only when the pixels are identical, else reported. *pixels_differ when they are not. */
static int check_videos(const tw_tensor_file *f, const dset *d, int *pixels_differ) {
    int bad = 0;
    for (size_t j = 0; j < d->n_of_kind[1]; j++) {
        char nm[64];
        const dtensor *t;
        int rgb_d = -1, res_d = -1;
        if ((t = vget(d, "video_frame_indices", j, nm, sizeof nm))) bad += check_exact(f, t);
        if ((t = vget(d, "num_video_tokens", j, nm, sizeof nm))) bad += check_exact(f, t);
        /* swscale's yuv->rgb paths may differ by a level or two between builds and CPUs */
        if ((t = vget(d, "video_frames_rgb", j, nm, sizeof nm))) bad += check_u8(f, t, 2, &rgb_d);
        if ((t = vget(d, "video_frames_resized", j, nm, sizeof nm))) bad += check_u8(f, t, rgb_d == 0 ? 1 : -1, &res_d);
        int same_px = 0;
        tw_tensor_info r;
        if ((t = vget(d, "pixel_values_videos", j, nm, sizeof nm)) && ref_get(f, t->name, &r)) {
            if (r.type != TW_ELEM_F32 || ref_nelem(&r) != t->n) {
                bad += shape_mismatch(t->name, &r, t->n);
            } else {
                const float *a = t->data, *b = r.data;
                size_t differ = 0;
                for (size_t i = 0; i < t->n; i++) differ += fabsf(a[i] - b[i]) > 1e-6f;
                double md = max_abs_diff(a, b, t->n, NULL), level = 1.0 / 127.5 + 1e-6;
                same_px = differ == 0;
                if (rgb_d == 0) {
                    int ok = md <= level;
                    fprintf(stderr, "check %s: max |diff| %.3g, %zu of %zu values differ (%s; limit 1 level = %.3g): %s\n",
                            t->name, md, differ, t->n, same_px ? "exact" : "resize ties", level, ok ? "ok" : "MISMATCH");
                    bad += !ok;
                } else {
                    fprintf(stderr, "check %s: max |diff| %.3g, %zu of %zu values differ (reported, not compared: the "
                                    "decoded frames differ)\n", t->name, md, differ, t->n);
                }
            }
        }
        if (!same_px) *pixels_differ = 1;
        const char *why = same_px ? NULL : "the frames' pixels differ from the reference's";
        static const char *const f32s[] = {"video_vision_hidden_states", "video_vision_selected", "video_projected",
                                           "video_pooled", "video_features"};
        for (size_t k = 0; k < 5; k++)
            if ((t = vget(d, f32s[k], j, nm, sizeof nm))) bad += check_f32_why(f, t->name, t->data, t->n, 1e-4, 0, why);
    }
    return bad;
}

/* Compares what dump computed with a fixture's tensors; prints one line per check on stderr. */
static int check_against(const char *path, const dset *d, size_t T, int32_t V) {
    tw_tensor_file *f = NULL;
    if (tw_tensor_file_open(path, &f) != TW_OK) return fail_lib();
    int bad = check_exact(f, dset_get(d, "input_ids"));
    const dtensor *gen = dset_get(d, "generated_ids"), *lg = dset_get(d, "logits");
    tw_tensor_info r;
    if (gen && ref_get(f, "generated_ids", &r) && r.type == TW_ELEM_I64) {
        size_t k = gen->n < ref_nelem(&r) ? gen->n : ref_nelem(&r);
        int ok = memcmp(r.data, gen->data, k * sizeof(int64_t)) == 0;
        fprintf(stderr, "check generated_ids (%zu): %s\n", k, ok ? "ok" : "MISMATCH");
        bad += !ok;
    }
    /* the video side first: when its pixels differ (resize ties), the text side moves a little */
    int pixels_differ = 0;
    bad += check_videos(f, d, &pixels_differ);
    const char *why = pixels_differ ? "the video's pixels differ from the reference's" : NULL;
    const float *logits = lg->data;
    if (ref_get(f, "logits_argmax", &r) && r.type == TW_ELEM_I64 && ref_nelem(&r) == T) {
        size_t differ = 0;
        for (size_t i = 0; i < T; i++) {
            const float *l = logits + i * (size_t)V;
            int32_t best = 0;
            for (int32_t k = 1; k < V; k++)
                if (l[k] > l[best]) best = k;
            differ += best != ((const int64_t *)r.data)[i];
        }
        fprintf(stderr, "check logits_argmax (%zu): %s\n", T, differ ? "MISMATCH" : "ok");
        bad += differ != 0;
    }
    size_t TV = T * (size_t)V;
    if (ref_get(f, "logits_full", &r) && ref_nelem(&r) == TV) bad += check_f32_why(f, "logits_full", logits, TV, 3e-3, 0, why);
    if (ref_get(f, "logits_last", &r) && ref_nelem(&r) == (size_t)V && T)
        bad += check_f32_why(f, "logits_last", logits + (T - 1) * (size_t)V, (size_t)V, 3e-3, 0, why);
    const dtensor *h = dset_get(d, "text_hidden_states");
    bad += check_f32_why(f, h->name, h->data, h->n, 1e-4, 1, why);
    /* the image side, in the order the reference lists it */
    for (size_t i = 0; i < d->n; i++) {
        const dtensor *t = &d->t[i];
        if (!t->name[0]) continue;
        if (!strcmp(t->name, "pixel_values")) bad += check_f32_why(f, t->name, t->data, t->n, 1e-6, 0, NULL);
        else if (!strcmp(t->name, "image_sizes") || !strcmp(t->name, "num_image_tokens") ||
                 !strncmp(t->name, "image_rgb", 9))
            bad += check_exact(f, t);
        else if (!strncmp(t->name, "vision_", 7) || !strncmp(t->name, "projected", 9) || !strncmp(t->name, "packed", 6))
            bad += check_f32_why(f, t->name, t->data, t->n, 1e-4, 0, NULL);
    }
    tw_tensor_file_close(f);
    return bad ? fail("%d check(s) against %s failed", bad, path) : 0;
}

/* Writes every tensor to one safetensors file (atomically). */
static int write_dump(const char *path, const dset *d) {
    tw_tensor_writer *w = NULL;
    if (tw_tensor_writer_new(&w) != TW_OK) return fail_lib();
    tw_status st = TW_OK;
    for (size_t i = 0; st == TW_OK && i < d->n; i++)
        if (d->t[i].name[0]) st = tw_tensor_writer_add(w, d->t[i].name, d->t[i].type, d->t[i].n_dims, d->t[i].shape,
                                                       d->t[i].data);
    if (st == TW_OK) st = tw_tensor_writer_save(w, path);
    tw_tensor_writer_free(w);
    return st == TW_OK ? 0 : fail_lib();
}

/* ---- the command ------------------------------------------------------------------------------ */

int tower_cmd_dump(int argc, char **argv) {
    parse_options(argc, argv, C_DUMP, tower_help_dump);
    require_model();
    if (!g.prompt_file) usage_error("missing --prompt-file FILE");
    if (!g.out && !g.check_against) usage_error("missing -o OUT.safetensors");
    size_t from_stdin = !strcmp(g.prompt_file, "-");
    for (size_t i = 0; i < g.n_images; i++) from_stdin += !strcmp(g.images[i], "-");
    if (from_stdin > 1) usage_error("only one of --prompt-file and --image can read stdin ('-')");
    for (size_t i = 0; i < g.n_videos; i++)
        if (!strcmp(g.videos[i], "-")) usage_error("--video cannot read stdin: give a file, directory or URL");
    char *text = NULL;
    size_t len = 0;
    if (read_prompt(&text, &len)) return 1;

    tw_model *m = NULL;
    tw_seq *seq = NULL;
    tw_prompt *p = NULL;
    cli_media *items = NULL;
    tw_media *md = NULL;
    dset d = {0};
    float *logits = NULL, *hidden = NULL;
    int32_t *gen = NULL;
    size_t T = 0, N = (size_t)g.max_new, n_media = n_cli_media();
    int rc = load_model(&m);
    if (rc) goto done;
    if (n_media && strlen(text) != len) { rc = fail("%s: the prompt contains a NUL byte", g.prompt_file); goto done; }
    /* the file's exact text; its placeholders name the media, the i-th <image> the i-th --image */
    if ((rc = open_cli_media(m, &items)) || !(md = media_list(items, n_media))) { rc = 1; goto done; }
    if (tw_prompt_from_text(m, NULL, text, len, md, n_media, TW_PROMPT_RAW, &p) != TW_OK) {
        rc = fail("%s: %s", g.prompt_file, tw_last_error());
        goto done;
    }
    T = tw_prompt_n_tokens(p);
    if (T == 0) { rc = fail("%s: the prompt is empty", g.prompt_file); goto done; }
    if (tw_seq_new_ex(m, g.n_ctx, &(tw_seq_params){ .kv_type = g.kv_type }, &seq) != TW_OK) { rc = fail_lib(); goto done; }
    int32_t V = tw_model_n_vocab(m), H = tw_model_n_embd(m), L = tw_model_n_layer(m);
    if ((int64_t)T + (int64_t)N > tw_seq_n_ctx(seq)) {
        rc = fail("%s: the prompt has %zu tokens%s and %zu more are asked for, but the context holds %d (see --ctx%s)",
                  g.prompt_file, T, n_cli_videos() ? " (video included)" : "", N, tw_seq_n_ctx(seq),
                  n_cli_videos() ? ", --frames" : "");
        goto done;
    }
    for (size_t i = 0; i < tw_prompt_n_media(p); i++) {
        tw_prompt_media_info mi;
        if (tw_prompt_media(p, i, &mi) == TW_OK) d.n_of_kind[mi.kind]++;
    }

    /* the vision side: every intermediate, through the pipeline's callback */
    double t0 = now_ms();
    watch w = {&d, p};
    tw_encode_opts eo = {on_tensor, &w};
    if (tw_prompt_encode(p, NULL, &eo) != TW_OK) { rc = d.oom ? fail("out of memory") : fail_lib(); goto done; }
    double t1 = now_ms();
    join_pixel_values(&d);
    if (d.n_of_kind[0]) {
        size_t n = d.n_of_kind[0];
        int64_t *sizes = malloc(2 * n * sizeof *sizes), *ntok = malloc(n * sizeof *ntok), s2[2] = {(int64_t)n, 2},
                s1[1] = {(int64_t)n};
        for (size_t i = 0, j = 0; sizes && ntok && i < tw_prompt_n_media(p); i++) {
            tw_prompt_media_info mi;
            if (tw_prompt_media(p, i, &mi) != TW_OK || mi.kind != TW_MEDIA_IMAGE) continue;
            sizes[2 * j] = tw_image_height(mi.image);
            sizes[2 * j + 1] = tw_image_width(mi.image);
            ntok[j] = mi.n_tokens;
            int64_t s_rgb[3] = {tw_image_height(mi.image), tw_image_width(mi.image), 3};
            dset_add(&d, "image_rgb", 0, mi.index, TW_ELEM_U8, 3, s_rgb, tw_image_rgb(mi.image));
            j++;
        }
        if (!sizes || !ntok) d.oom = 1;
        else {
            dset_add(&d, "image_sizes", -1, -1, TW_ELEM_I64, 2, s2, sizes);
            dset_add(&d, "num_image_tokens", -1, -1, TW_ELEM_I64, 1, s1, ntok);
        }
        free(sizes);
        free(ntok);
    }
    for (size_t i = 0; i < tw_prompt_n_media(p); i++) {
        tw_prompt_media_info mi;
        if (tw_prompt_media(p, i, &mi) != TW_OK || mi.kind != TW_MEDIA_VIDEO) continue;
        const tw_video *v = mi.video;
        int64_t F = tw_video_n_frames(v), s_idx[1] = {F}, s_rgb[4] = {F, tw_video_height(v), tw_video_width(v), 3},
                s_n[1] = {1}, ntok = mi.n_tokens;
        dset_add(&d, "video_frame_indices", 1, mi.index, TW_ELEM_I64, 1, s_idx, tw_video_frame_indices(v));
        dset_add(&d, "video_frames_rgb", 1, mi.index, TW_ELEM_U8, 4, s_rgb, tw_video_rgb(v));
        dset_add(&d, "num_video_tokens", 1, mi.index, TW_ELEM_I64, 1, s_n, &ntok);
    }

    /* the text side: every position's logits and hidden states */
    size_t n_hidden = (size_t)(L + 2) * T * (size_t)H;
    logits = malloc(T * (size_t)V * sizeof *logits);
    hidden = malloc(n_hidden * sizeof *hidden);
    gen = malloc((N + 1) * sizeof *gen);
    if (!logits || !hidden || !gen || d.oom) { rc = fail("out of memory (%zu tokens x %d vocab)", T, V); goto done; }
    tw_eval_opts ev = {.logits = logits, .hidden = hidden};
    double t2 = now_ms();
    if (tw_prompt_eval(seq, p, NULL, &ev, NULL) != TW_OK) { rc = fail_lib(); goto done; }
    double t3 = now_ms();
    /* greedy continuation: first index of the maximum, model stop tokens not applied */
    for (size_t i = 0; i < N; i++) {
        const float *lg = tw_seq_logits(seq);
        int32_t best = 0;
        for (int32_t v = 1; v < V; v++)
            if (lg[v] > lg[best]) best = v;
        gen[i] = best;
        if (i + 1 < N && tw_seq_eval(seq, &gen[i], 1, NULL) != TW_OK) { rc = fail_lib(); goto done; }
    }
    if (g.verbose)
        fprintf(stderr, "[dump: %zu media encoded in %.1f ms; %zu prompt tokens in %.1f ms, %zu generated in %.1f ms]\n",
                tw_prompt_n_media(p), t1 - t0, T, t3 - t2, N, now_ms() - t3);
    {
        int64_t *ids64 = malloc(T * sizeof *ids64), *gen64 = malloc((N + 1) * sizeof *gen64);
        int64_t s_ids[1] = {(int64_t)T}, s_logits[2] = {(int64_t)T, V}, s_hidden[3] = {L + 2, (int64_t)T, H},
                s_gen[1] = {(int64_t)N};
        if (ids64 && gen64) {
            for (size_t i = 0; i < T; i++) ids64[i] = tw_prompt_tokens(p)[i];
            for (size_t i = 0; i < N; i++) gen64[i] = gen[i];
            dset_add(&d, "input_ids", -1, -1, TW_ELEM_I64, 1, s_ids, ids64);
            dset_add(&d, "logits", -1, -1, TW_ELEM_F32, 2, s_logits, logits);
            dset_add(&d, "text_hidden_states", -1, -1, TW_ELEM_F32, 3, s_hidden, hidden);
            if (N) dset_add(&d, "generated_ids", -1, -1, TW_ELEM_I64, 1, s_gen, gen64);
        } else {
            d.oom = 1;
        }
        free(ids64);
        free(gen64);
    }
    if (d.oom) { rc = fail("out of memory"); goto done; }
    if (g.out && (rc = write_dump(g.out, &d))) goto done;
    if (g.check_against) rc = check_against(g.check_against, &d, T, V);
done:
    dset_free(&d);
    tw_prompt_free(p);
    free(md);
    close_media(items, n_media);
    free(logits);
    free(hidden);
    free(gen);
    tw_seq_free(seq);
    tw_model_free(m);
    free(text);
    return rc;
}
