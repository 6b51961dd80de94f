/*
** cmd_dump.c — `tower dump`: one forward pass over a prompt file, writing ids, logits and hidden
** states (and with --image / --video every intermediate of the vision path, named as in the
** fixtures) to a safetensors file, or comparing them with a fixture (--check-against).
** Uses the safetensors writer/reader (src/format/safetensors.h) and, through tools/media.h, the
** vision and video internals; the library's multimodal prompt API is to replace the latter.
*/
#define TOWER_MEDIA_INTERNALS
#include "commands.h"
#include "media.h"
#include "safetensors.h"

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

/* Tensor name with the fixtures' _j suffix when the prompt has several images (or videos). */
static const char *img_name(char *buf, size_t cap, const char *base, size_t j, size_t n_imgs) {
    if (n_imgs > 1) snprintf(buf, cap, "%s_%zu", base, j);
    else snprintf(buf, cap, "%s", base);
    return buf;
}

/* One check line on stderr; returns 1 on a mismatch. A tensor the fixture lacks is skipped.
** why != NULL: the difference is only reported (an input upstream already differs). */
static int check_f32_why(const tw_st_set *set, const char *name, const float *ours, size_t n, double limit, int rel,
                         const char *why) {
    const tw_tensor *t = tw_st_get(set, name);
    if (!t) return 0;
    if (t->type != TW_DT_F32 || (size_t)tw_tensor_nelem(t) != n) {
        fprintf(stderr, "check %s: MISMATCH (the reference has %lld %s values, dump computed %zu)\n", name,
                (long long)tw_tensor_nelem(t), tw_dtype_name(t->type), n);
        return 1;
    }
    double mb, d = max_abs_diff(ours, t->data, n, &mb), lim = rel ? limit * mb + limit : limit;
    if (why) {
        fprintf(stderr, "check %s: max |diff| %.3g (reported, not compared: %s)\n", name, d, why);
        return 0;
    }
    fprintf(stderr, "check %s: max |diff| %.3g (limit %.3g): %s\n", name, d, lim, d <= lim ? "ok" : "MISMATCH");
    return !(d <= lim);
}

static int check_f32(const tw_st_set *set, const char *name, const float *ours, size_t n, double limit, int rel) {
    return check_f32_why(set, name, ours, n, limit, rel, NULL);
}

static int check_exact(const tw_st_set *set, const char *name, tw_dtype type, const void *ours, size_t n) {
    const tw_tensor *t = tw_st_get(set, name);
    if (!t) return 0;
    int ok = t->type == type && (size_t)tw_tensor_nelem(t) == n && memcmp(t->data, ours, n * tw_dtype_size(type)) == 0;
    fprintf(stderr, "check %s (%zu): %s\n", name, n, ok ? "ok" : "MISMATCH");
    return !ok;
}

/* uint8 pixels: max |diff| in levels and how many values differ; limit < 0: report only.
** *maxd = the largest difference (-1: the tensor is absent or has another shape). */
static int check_u8(const tw_st_set *set, const char *name, const uint8_t *ours, size_t n, int limit, int *maxd) {
    const tw_tensor *t = tw_st_get(set, name);
    *maxd = -1;
    if (!t) return 0;
    if (t->type != TW_DT_U8 || (size_t)tw_tensor_nelem(t) != n) {
        fprintf(stderr, "check %s: MISMATCH (the reference has %lld %s values, dump computed %zu)\n", name,
                (long long)tw_tensor_nelem(t), tw_dtype_name(t->type), n);
        return 1;
    }
    const uint8_t *r = t->data;
    size_t differ = 0;
    int d = 0;
    for (size_t i = 0; i < n; i++) {
        int x = abs((int)ours[i] - (int)r[i]);
        differ += x != 0;
        if (x > d) d = x;
    }
    *maxd = d;
    if (limit < 0) {
        fprintf(stderr, "check %s: max |diff| %d level(s), %zu of %zu values differ (reported, not compared: the "
                        "decoded frames differ)\n", name, d, differ, n);
        return 0;
    }
    fprintf(stderr, "check %s: max |diff| %d level(s) (limit %d), %zu of %zu values differ: %s\n", name, d, limit, differ,
            n, d <= limit ? "ok" : "MISMATCH");
    return d > limit;
}

/* What dump computed, for writing and checking. */
typedef struct dump_out {
    const int64_t *ids64;          /* [T]                            */
    size_t         T;
    const float   *logits;         /* [T, V]                         */
    int32_t        V;
    const float   *hidden;         /* [L+2, T, H]                    */
    size_t         n_hidden;
    const int64_t *gen64;          /* [N]                            */
    size_t         N;
    cli_media *const *imgs;        /* n_imgs images in prompt order, packed features in embd */
    const dump_image *dimg;        /* NULL: several OneVision images (single tiles: packed only) */
    size_t         n_imgs;
    const float   *pixel_values;   /* [n_imgs, max_tiles, 3, S, S]   */
    size_t         n_pixel_values;
    const int64_t *image_sizes;    /* [n_imgs, 2]                    */
    const int64_t *num_tokens;     /* [n_imgs]                       */
    cli_media *const *vids;        /* n_vids videos in prompt order, video_features in embd */
    const dump_video *dvid;
    size_t         n_vids;
} dump_out;

/* The video side of check_against. *pixels_differ is set when a video's pixel_values_videos are
** not the reference's (decoding or resize ties), so what follows can only be reported. */
static int check_videos(const tw_st_set *set, const tw_model *m, const dump_out *o, int *pixels_differ) {
    int bad = 0;
    int32_t G = tw_vision_grid(m), N = G * G, C = m->vision.n_embd, H = tw_model_n_embd(m), Lv = m->vision.n_layer;
    int32_t P = tw_video_pooled_side(m);
    for (size_t j = 0; j < o->n_vids; j++) {
        char nm[64];
        const cli_media *ci = o->vids[j];
        const dump_video *d = &o->dvid[j];
        const tw_video *v = ci->vid;
        size_t F = (size_t)v->n_frames, S = (size_t)d->S, nt = F * (size_t)N;
        int64_t ntok = ci->n_tokens;
        int rgb_d = -1, res_d = -1;
        bad += check_exact(set, img_name(nm, sizeof nm, "video_frame_indices", j, o->n_vids), TW_DT_I64, v->indices, F);
        bad += check_exact(set, img_name(nm, sizeof nm, "num_video_tokens", j, o->n_vids), TW_DT_I64, &ntok, 1);
        /* swscale's yuv->rgb paths may differ by a level or two between builds and CPUs */
        bad += check_u8(set, img_name(nm, sizeof nm, "video_frames_rgb", j, o->n_vids), v->rgb,
                        F * (size_t)v->height * (size_t)v->width * 3, 2, &rgb_d);
        /* same frames: the resize may still differ by one level where torch's value is within
        ** float noise of .5 (docs/video.md) */
        bad += check_u8(set, img_name(nm, sizeof nm, "video_frames_resized", j, o->n_vids), d->resized, F * S * S * 3,
                        rgb_d == 0 ? 1 : -1, &res_d);
        const char *name = img_name(nm, sizeof nm, "pixel_values_videos", j, o->n_vids);
        const tw_tensor *t = tw_st_get(set, name);
        size_t npx = F * 3 * S * S;
        int same_px = 0;
        if (t) {
            if (t->type != TW_DT_F32 || (size_t)tw_tensor_nelem(t) != npx) {
                bad += check_f32(set, name, d->pixels, npx, 0, 0);   /* prints the shape mismatch */
            } else {
                const float *r = t->data;
                size_t differ = 0;
                for (size_t i = 0; i < npx; i++) differ += fabsf(d->pixels[i] - r[i]) > 1e-6f;
                double md = max_abs_diff(d->pixels, r, npx, NULL), level = 1.0 / 127.5 + 1e-6;
                same_px = differ == 0;
                if (rgb_d == 0) {
                    int ok = md <= level;
                    fprintf(stderr, "check %s: max |diff| %.3g, %zu of %zu values differ (%s; limit 1 level = %.3g): %s\n",
                            name, md, differ, npx, same_px ? "exact" : "resize ties", level, ok ? "ok" : "MISMATCH");
                    bad += !ok;
                } else {
                    fprintf(stderr, "check %s: max |diff| %.3g, %zu of %zu values differ (reported, not compared: the "
                                    "decoded frames differ)\n", name, md, differ, npx);
                }
            }
        }
        if (!same_px) *pixels_differ = 1;
        const char *why = same_px ? NULL : "the frames' pixels differ from the reference's";
        bad += check_f32_why(set, img_name(nm, sizeof nm, "video_vision_hidden_states", j, o->n_vids), d->hidden,
                             (size_t)(Lv + 1) * nt * (size_t)C, 1e-4, 0, why);
        bad += check_f32_why(set, img_name(nm, sizeof nm, "video_vision_selected", j, o->n_vids), d->selected,
                             nt * (size_t)C, 1e-4, 0, why);
        bad += check_f32_why(set, img_name(nm, sizeof nm, "video_projected", j, o->n_vids), d->projected,
                             nt * (size_t)H, 1e-4, 0, why);
        bad += check_f32_why(set, img_name(nm, sizeof nm, "video_pooled", j, o->n_vids), ci->embd,
                             F * (size_t)P * (size_t)P * (size_t)H, 1e-4, 0, why);
        bad += check_f32_why(set, img_name(nm, sizeof nm, "video_features", j, o->n_vids), ci->embd,
                             (size_t)ci->n_tokens * (size_t)H, 1e-4, 0, why);
    }
    return bad;
}

/* Compares what dump computed with a fixture's tensors; prints one line per check on stderr. */
static int check_against(const char *path, const tw_model *m, const dump_out *o) {
    tw_st_set *set = NULL;
    if (tw_st_open_file(path, &set) != TW_OK) return fail_lib();
    int bad = check_exact(set, "input_ids", TW_DT_I64, o->ids64, o->T);
    const tw_tensor *t;
    if (o->N && (t = tw_st_get(set, "generated_ids")) && t->type == TW_DT_I64) {
        size_t ne = (size_t)tw_tensor_nelem(t), k = o->N < ne ? o->N : ne;
        int ok = memcmp(t->data, o->gen64, k * sizeof *o->gen64) == 0;
        fprintf(stderr, "check generated_ids (%zu): %s\n", k, ok ? "ok" : "MISMATCH");
        bad += !ok;
    }
    /* the video side first: when its pixels differ (resize ties), the text side moves a little */
    int pixels_differ = 0;
    if (o->n_vids) bad += check_videos(set, m, o, &pixels_differ);
    const char *why = pixels_differ ? "the video's pixels differ from the reference's" : NULL;
    if ((t = tw_st_get(set, "logits_argmax")) && t->type == TW_DT_I64 && (size_t)tw_tensor_nelem(t) == o->T) {
        size_t differ = 0;
        for (size_t i = 0; i < o->T; i++) {
            const float *lg = o->logits + i * (size_t)o->V;
            int32_t best = 0;
            for (int32_t k = 1; k < o->V; k++)
                if (lg[k] > lg[best]) best = k;
            differ += best != ((const int64_t *)t->data)[i];
        }
        fprintf(stderr, "check logits_argmax (%zu): %s\n", o->T, differ ? "MISMATCH" : "ok");
        bad += differ != 0;
    }
    size_t TV = o->T * (size_t)o->V;
    if ((t = tw_st_get(set, "logits_full")) && (size_t)tw_tensor_nelem(t) == TV)
        bad += check_f32_why(set, "logits_full", o->logits, TV, 3e-3, 0, why);
    if ((t = tw_st_get(set, "logits_last")) && tw_tensor_nelem(t) == o->V && o->T)
        bad += check_f32_why(set, "logits_last", o->logits + (o->T - 1) * (size_t)o->V, (size_t)o->V, 3e-3, 0, why);
    bad += check_f32_why(set, "text_hidden_states", o->hidden, o->n_hidden, 1e-4, 1, why);
    if (o->n_imgs) {
        int32_t G = tw_vision_grid(m), N = G * G, C = m->vision.n_embd, H = tw_model_n_embd(m), Lv = m->vision.n_layer;
        if (o->dimg) bad += check_f32(set, "pixel_values", o->pixel_values, o->n_pixel_values, 1e-6, 0);
        bad += check_exact(set, "image_sizes", TW_DT_I64, o->image_sizes, 2 * o->n_imgs);
        bad += check_exact(set, "num_image_tokens", TW_DT_I64, o->num_tokens, o->n_imgs);
        for (size_t j = 0; j < o->n_imgs; j++) {
            char nm[64];
            const cli_media *ci = o->imgs[j];
            bad += check_exact(set, img_name(nm, sizeof nm, "image_rgb", j, o->n_imgs), TW_DT_U8, tw_image_rgb(ci->im),
                               (size_t)tw_image_width(ci->im) * (size_t)tw_image_height(ci->im) * 3);
            if (o->dimg) {
                const dump_image *d = &o->dimg[j];
                size_t nt = (size_t)d->plan.n_tiles * (size_t)N;
                bad += check_f32(set, img_name(nm, sizeof nm, "vision_hidden_states", j, o->n_imgs), d->hidden,
                                 (size_t)(Lv + 1) * nt * (size_t)C, 1e-4, 0);
                bad += check_f32(set, img_name(nm, sizeof nm, "vision_selected", j, o->n_imgs), d->selected,
                                 nt * (size_t)C, 1e-4, 0);
                bad += check_f32(set, img_name(nm, sizeof nm, "projected", j, o->n_imgs), d->projected, nt * (size_t)H,
                                 1e-4, 0);
            }
            bad += check_f32(set, img_name(nm, sizeof nm, "packed", j, o->n_imgs), ci->embd,
                             (size_t)ci->n_tokens * (size_t)H, 1e-4, 0);
        }
    }
    tw_st_close(set);
    return bad ? fail("%d check(s) against %s failed", bad, path) : 0;
}

/* Adds one video's tensors (fixture names, _j with several videos). */
static tw_status write_video(tw_st_writer *w, const tw_model *m, const dump_out *o, size_t j) {
    int32_t G = tw_vision_grid(m), N = G * G, C = m->vision.n_embd, H = tw_model_n_embd(m), Lv = m->vision.n_layer,
            P = tw_video_pooled_side(m);
    const cli_media *ci = o->vids[j];
    const dump_video *d = &o->dvid[j];
    const tw_video *v = ci->vid;
    int64_t F = v->n_frames, S = d->S, ntok = ci->n_tokens;
    int64_t s_idx[1] = {F}, s_rgb[4] = {F, v->height, v->width, 3}, s_res[4] = {F, S, S, 3}, s_pv[5] = {1, F, 3, S, S},
            s_vh[4] = {Lv + 1, F, N, C}, s_sel[3] = {F, N, C}, s_proj[3] = {F, N, H}, s_pool[3] = {F, (int64_t)P * P, H},
            s_feat[2] = {ntok, H}, s_n[1] = {1};
    char nm[64];
    size_t n = o->n_vids;
    tw_status st;
    if ((st = tw_st_writer_add(w, img_name(nm, sizeof nm, "video_frame_indices", j, n), TW_DT_I64, 1, s_idx,
                               v->indices)) != TW_OK ||
        (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "video_frames_rgb", j, n), TW_DT_U8, 4, s_rgb, v->rgb)) != TW_OK ||
        (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "video_frames_resized", j, n), TW_DT_U8, 4, s_res,
                               d->resized)) != TW_OK ||
        (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "pixel_values_videos", j, n), TW_DT_F32, 5, s_pv,
                               d->pixels)) != TW_OK ||
        (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "video_vision_hidden_states", j, n), TW_DT_F32, 4, s_vh,
                               d->hidden)) != TW_OK ||
        (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "video_vision_selected", j, n), TW_DT_F32, 3, s_sel,
                               d->selected)) != TW_OK ||
        (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "video_projected", j, n), TW_DT_F32, 3, s_proj,
                               d->projected)) != TW_OK ||
        (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "video_pooled", j, n), TW_DT_F32, 3, s_pool, ci->embd)) != TW_OK ||
        (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "video_features", j, n), TW_DT_F32, 2, s_feat, ci->embd)) != TW_OK)
        return st;
    return tw_st_writer_add(w, img_name(nm, sizeof nm, "num_video_tokens", j, n), TW_DT_I64, 1, s_n, &ntok);
}

/* Writes everything dump computed to one safetensors file (atomically). */
static int write_dump(const char *path, const tw_model *m, const dump_out *o) {
    int32_t L = tw_model_n_layer(m), H = tw_model_n_embd(m);
    int64_t s_ids[1] = {(int64_t)o->T}, s_logits[2] = {(int64_t)o->T, o->V}, s_hidden[3] = {L + 2, (int64_t)o->T, H},
            s_gen[1] = {(int64_t)o->N};
    tw_st_writer *w = tw_st_writer_new();
    if (!w) return fail("out of memory");
    tw_status st = TW_OK;
    if ((st = tw_st_writer_add(w, "input_ids", TW_DT_I64, 1, s_ids, o->ids64)) != TW_OK ||
        (st = tw_st_writer_add(w, "logits", TW_DT_F32, 2, s_logits, o->logits)) != TW_OK ||
        (st = tw_st_writer_add(w, "text_hidden_states", TW_DT_F32, 3, s_hidden, o->hidden)) != TW_OK ||
        (o->N && (st = tw_st_writer_add(w, "generated_ids", TW_DT_I64, 1, s_gen, o->gen64)) != TW_OK))
        goto done;
    if (o->n_imgs) {
        int32_t G = tw_vision_grid(m), N = G * G, C = m->vision.n_embd, Lv = m->vision.n_layer, S = m->vision.image_size;
        int64_t n = (int64_t)o->n_imgs;
        int64_t s_pv[5] = {n, (int64_t)(o->n_pixel_values / ((size_t)n * 3 * (size_t)S * (size_t)S)), 3, S, S};
        int64_t s_sizes[2] = {n, 2}, s_ntok[1] = {n};
        if ((o->dimg && (st = tw_st_writer_add(w, "pixel_values", TW_DT_F32, 5, s_pv, o->pixel_values)) != TW_OK) ||
            (st = tw_st_writer_add(w, "image_sizes", TW_DT_I64, 2, s_sizes, o->image_sizes)) != TW_OK ||
            (st = tw_st_writer_add(w, "num_image_tokens", TW_DT_I64, 1, s_ntok, o->num_tokens)) != TW_OK)
            goto done;
        for (size_t j = 0; j < o->n_imgs; j++) {
            char nm[64];
            const cli_media *ci = o->imgs[j];
            int64_t s_rgb[3] = {tw_image_height(ci->im), tw_image_width(ci->im), 3}, s_pack[2] = {ci->n_tokens, H};
            if ((st = tw_st_writer_add(w, img_name(nm, sizeof nm, "image_rgb", j, o->n_imgs), TW_DT_U8, 3, s_rgb,
                                       tw_image_rgb(ci->im))) != TW_OK ||
                (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "packed", j, o->n_imgs), TW_DT_F32, 2, s_pack,
                                       ci->embd)) != TW_OK)
                goto done;
            if (!o->dimg) continue;
            const dump_image *d = &o->dimg[j];
            int64_t tiles = d->plan.n_tiles;
            int64_t s_vh[4] = {Lv + 1, tiles, N, C}, s_sel[3] = {tiles, N, C}, s_proj[3] = {tiles, N, H};
            if ((st = tw_st_writer_add(w, img_name(nm, sizeof nm, "vision_hidden_states", j, o->n_imgs), TW_DT_F32, 4,
                                       s_vh, d->hidden)) != TW_OK ||
                (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "vision_selected", j, o->n_imgs), TW_DT_F32, 3, s_sel,
                                       d->selected)) != TW_OK ||
                (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "projected", j, o->n_imgs), TW_DT_F32, 3, s_proj,
                                       d->projected)) != TW_OK)
                goto done;
        }
    }
    for (size_t j = 0; j < o->n_vids; j++)
        if ((st = write_video(w, m, o, j)) != TW_OK) goto done;
    st = tw_st_writer_save(w, path);
done:
    tw_st_writer_free(w);
    return st == TW_OK ? 0 : fail_lib();
}

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
    cli_media *items = NULL, **imgs = NULL, **vids = NULL;
    dump_image *dimg = NULL;
    dump_video *dvid = NULL;
    prompt_media pm = {0};
    int32_t *ids = NULL, *gen = NULL;
    int64_t *ids64 = NULL, *gen64 = NULL, *sizes = NULL, *ntok = NULL;
    float *logits = NULL, *hidden = NULL, *pv = NULL;
    size_t T = 0, N = (size_t)g.max_new, n_media = n_cli_media(), n_imgs = g.n_images, n_vids = n_cli_videos(), n_pv = 0;
    int rc = load_model(&m);
    if (rc) goto done;
    if (n_media && strlen(text) != len) { rc = fail("%s: the prompt contains a NUL byte", g.prompt_file); goto done; }
    /* the media in the order the file's placeholders name them */
    if ((rc = open_cli_media(m, &items)) || (rc = order_media(text, items, n_media)) ||
        (rc = media_count(m, items, n_media)))
        goto done;
    imgs = calloc(n_imgs + 1, sizeof *imgs);
    vids = calloc(n_vids + 1, sizeof *vids);
    if (!imgs || !vids) { rc = fail("out of memory"); goto done; }
    for (size_t i = 0, a = 0, b = 0; i < n_media; i++) {
        if (items[i].kind == MEDIA_IMAGE) imgs[a++] = &items[i];
        else vids[b++] = &items[i];
    }
    if (n_media) rc = tokenize_with_media(m, text, items, n_media, &ids, &T);
    else if (tw_tokenize(tw_model_tokenizer(m), text, len, 0, &ids, &T) != TW_OK) rc = fail_lib();
    if (rc) goto done;
    if (T == 0) { rc = fail("%s: the prompt is empty", g.prompt_file); goto done; }
    if (tw_seq_new_ex(m, g.n_ctx, &(tw_seq_params){ .kv_type = g.kv_type }, &seq) != TW_OK) { rc = fail_lib(); goto done; }
    int32_t V = tw_model_n_vocab(m), H = tw_model_n_embd(m), L = tw_model_n_layer(m);
    if ((int64_t)T + (int64_t)N > tw_seq_n_ctx(seq)) {
        size_t vt = 0;
        for (size_t j = 0; j < n_vids; j++) vt += (size_t)vids[j]->n_tokens;
        rc = fail("%s: the prompt has %zu tokens%s and %zu more are asked for, but the context holds %d (see --ctx%s)",
                  g.prompt_file, T, vt ? " (video included)" : "", N, tw_seq_n_ctx(seq), vt ? ", --frames" : "");
        goto done;
    }

    /* the image side: every intermediate, then pixel_values zero-padded to the most tiles;
    ** several images on a OneVision checkpoint are single tiles: only packed is kept */
    if (n_imgs) {
        int single_tiles = m->arch == TW_ARCH_LLAVA_ONEVISION && n_imgs > 1;
        if (!single_tiles) dimg = calloc(n_imgs, sizeof *dimg);
        sizes = malloc(2 * n_imgs * sizeof *sizes);
        ntok = malloc(n_imgs * sizeof *ntok);
        if ((!single_tiles && !dimg) || !sizes || !ntok) { rc = fail("out of memory"); goto done; }
        int32_t max_tiles = 0;
        for (size_t j = 0; j < n_imgs; j++) {
            if (dimg && (rc = dump_vision(m, imgs[j], j, &dimg[j]))) goto done;
            if (dimg && dimg[j].plan.n_tiles > max_tiles) max_tiles = dimg[j].plan.n_tiles;
            sizes[2 * j] = tw_image_height(imgs[j]->im);
            sizes[2 * j + 1] = tw_image_width(imgs[j]->im);
            ntok[j] = imgs[j]->n_tokens;
        }
        if (single_tiles) {
            if (g.verbose) fprintf(stderr, "[dump: %zu OneVision images, one tile each: packed only]\n", n_imgs);
            if ((rc = media_encode(m, items, n_media))) goto done;   /* videos are encoded below, first */
        } else {
            size_t tile = 3 * (size_t)m->vision.image_size * (size_t)m->vision.image_size;
            n_pv = n_imgs * (size_t)max_tiles * tile;
            if (!(pv = calloc(n_pv, sizeof *pv))) { rc = fail("out of memory"); goto done; }
            for (size_t j = 0; j < n_imgs; j++)
                memcpy(pv + j * (size_t)max_tiles * tile, dimg[j].pixels, (size_t)dimg[j].plan.n_tiles * tile * sizeof *pv);
        }
    }
    if (n_vids) {
        if (!(dvid = calloc(n_vids, sizeof *dvid))) { rc = fail("out of memory"); goto done; }
        for (size_t j = 0; j < n_vids; j++)
            if ((rc = dump_video_run(m, vids[j], j, &dvid[j]))) goto done;
    }
    if (n_media && (rc = media_build(m, ids, T, items, n_media, &pm))) goto done;

    size_t n_hidden = (size_t)(L + 2) * T * (size_t)H;
    logits = malloc(T * (size_t)V * sizeof *logits);
    hidden = malloc(n_hidden * sizeof *hidden);
    ids64 = malloc(T * sizeof *ids64);
    gen = malloc((N + 1) * sizeof *gen);
    gen64 = malloc((N + 1) * sizeof *gen64);
    if (!logits || !hidden || !ids64 || !gen || !gen64) { rc = fail("out of memory (%zu tokens x %d vocab)", T, V); goto done; }

    tw_eval_opts eo = {.embd = pm.embd, .n_embd_rows = pm.n_rows, .logits = logits, .hidden = hidden};
    double t0 = now_ms();
    if (tw_seq_eval(seq, ids, T, &eo) != TW_OK) { rc = fail_lib(); goto done; }
    double t1 = now_ms();
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
        fprintf(stderr, "[dump: %zu prompt tokens in %.1f ms, %zu generated in %.1f ms]\n", T, t1 - t0, N, now_ms() - t1);
    for (size_t i = 0; i < T; i++) ids64[i] = ids[i];
    for (size_t i = 0; i < N; i++) gen64[i] = gen[i];

    dump_out o = {
        .ids64 = ids64, .T = T, .logits = logits, .V = V, .hidden = hidden, .n_hidden = n_hidden, .gen64 = gen64, .N = N,
        .imgs = imgs, .dimg = dimg, .n_imgs = n_imgs, .pixel_values = pv, .n_pixel_values = n_pv, .image_sizes = sizes,
        .num_tokens = ntok, .vids = vids, .dvid = dvid, .n_vids = n_vids,
    };
    if (g.out && (rc = write_dump(g.out, m, &o))) goto done;
    if (g.check_against) rc = check_against(g.check_against, m, &o);
done:
    for (size_t j = 0; dimg && j < n_imgs; j++) dump_image_free(&dimg[j]);
    for (size_t j = 0; dvid && j < n_vids; j++) dump_video_free(&dvid[j]);
    free(dimg);
    free(dvid);
    free(imgs);
    free(vids);
    close_media(items, n_media);
    media_free(&pm);
    free(pv);
    free(sizes);
    free(ntok);
    free(logits);
    free(hidden);
    free(ids64);
    free(gen);
    free(gen64);
    tw_free(ids);
    tw_seq_free(seq);
    tw_model_free(m);
    free(text);
    return rc;
}
