/*
** vision.c — the one vision pipeline: image or video in, the rows that replace its placeholder
** tokens out. Every path that encodes media (the public calls, prompts, tower dump) runs through
** tw_vision_encode_image / tw_vision_encode_video:
**
**   image:  anyres plan -> tiles (pixels) -> SigLIP -> projector -> pack (unpad + image_newline)
**           or, TowerVideo with several images in a prompt: one padded square tile -> SigLIP ->
**           projector -> its G*G rows + one image_newline
**   video:  resize + normalise frames -> SigLIP per frame -> projector -> 2x2 bilinear pooling,
**           frames in order, one image_newline at the end
**
** An observer (tw_vision_obs) sees every intermediate under the reference dump's names; the
** hidden states of every SigLIP layer are computed only when one is watching.
*/
#include "vision.h"

#include <stdlib.h>

/* ---- what the model takes ------------------------------------------------------------------- */

tw_status tw_vision_check_image(const tw_model *m) {
    if (!m->has_vision || m->image_token_id < 0)
        return tw_err(TW_E_ARG, "%s: this is a text-only model (%s); it cannot take images", m->dir, m->arch_name);
    if (strcmp(m->vision_feature_select_strategy, "full") != 0)
        return tw_err(TW_E_UNSUPPORTED, "%s/config.json: vision_feature_select_strategy \"%s\" drops a CLS token that a "
                      "SigLIP tower does not have (transformers fails on it too); use \"full\"", m->dir,
                      m->vision_feature_select_strategy);
    if (m->n_pinpoints <= 0)
        return tw_err(TW_E_CONFIG, "%s/config.json: field \"image_grid_pinpoints\" is missing or empty", m->dir);
    return TW_OK;
}

tw_status tw_vision_check_video(const tw_model *m) {
    if (!m->has_vision || m->video_token_id < 0)
        return tw_err(TW_E_ARG, "%s: this model (%s) takes no video: it has no <video> token (video_token_index)",
                      m->dir, m->arch_name);
    return TW_OK;
}

bool tw_vision_single_tile(const tw_model *m, size_t n_images) {
    return m->arch == TW_ARCH_LLAVA_ONEVISION && n_images > 1;
}

tw_status tw_vision_image_plan(const tw_model *m, int32_t w, int32_t h, tw_anyres_plan *p) {
    TW_TRY(tw_vision_check_image(m));
    return tw_anyres_plan_make(h, w, m->pinpoints, m->n_pinpoints, m->vision.image_size, m->vision.patch_size,
                               m->arch == TW_ARCH_LLAVA_ONEVISION ? m->max_num_patches : 0, p);
}

static tw_status image_plan(const tw_model *m, const tw_image *im, bool single_tile, tw_anyres_plan *p);

tw_status tw_vision_image_tokens(const tw_model *m, int32_t w, int32_t h, bool single_tile, int32_t *n_tokens) {
    tw_anyres_plan p;
    TW_TRY(image_plan(m, &(tw_image){ .w = w, .h = h }, single_tile, &p));
    *n_tokens = p.n_tokens;
    return TW_OK;
}

tw_status tw_vision_video_tokens(const tw_model *m, int32_t n_frames, int32_t *n_tokens) {
    TW_TRY(tw_vision_check_video(m));
    if (n_frames <= 0) return tw_err(TW_E_ARG, "a video needs at least one frame (got %d)", n_frames);
    *n_tokens = tw_video_token_count(m, n_frames);
    return TW_OK;
}

/* ---- observing ------------------------------------------------------------------------------ */

static tw_status report(const tw_vision_obs *o, const char *name, tw_elem_type type, const void *data, int32_t nd,
                        int64_t d0, int64_t d1, int64_t d2, int64_t d3, int64_t d4) {
    if (!o || !o->fn) return TW_OK;
    tw_tensor_info t = { .name = name, .type = type, .n_dims = nd, .data = data, .media = o->media,
                         .shape = { d0, d1, d2, d3, d4 } };
    if (o->fn(o->user_data, &t) != 0) return tw_err(TW_E_CANCELLED, "stopped by the tensor callback at %s", name);
    return TW_OK;
}

/* ---- pixels --------------------------------------------------------------------------------- */

/* One image as a single tile: padded to a square of grey int(mean*255) (image centred, odd
** pixel after), resized to the tile, normalised; LlavaOnevisionImageProcessor's multi-image path.
** px: [3][S][S]. */
static tw_status single_tile_pixels(const tw_model *m, const tw_image *im, float *px) {
    const tw_preproc pp = m->preproc;
    int32_t side = TW_MAX(im->w, im->h), S = pp.tile, G = tw_vision_grid(m);
    uint8_t *sq = tw_malloc((size_t)side * side * 3), *tile = tw_malloc((size_t)S * S * 3);
    tw_status s = TW_E_NOMEM;
    if (sq && tile) {
        for (size_t i = 0; i < (size_t)side * side; i++)
            for (int c = 0; c < 3; c++) sq[i * 3 + c] = (uint8_t)(int)(pp.mean[c] * 255.0);
        int32_t top = (side - im->h) / 2, left = (side - im->w) / 2;
        for (int32_t y = 0; y < im->h; y++)
            memcpy(sq + ((size_t)(y + top) * side + left) * 3, im->rgb + (size_t)y * im->w * 3, (size_t)im->w * 3);
        /* a base-only plan (rows = cols = 0) reuses the anyres normaliser for the one tile */
        tw_anyres_plan one = { .orig_h = S, .orig_w = S, .best_h = S, .best_w = S, .resized_h = S, .resized_w = S,
                               .rows = 0, .cols = 0, .n_tiles = 1, .grid = G };
        if ((s = tw_resize_pil(sq, side, side, 3, tile, S, S, pp.resample)) == TW_OK) s = tw_anyres_pixels(tile, &one, &pp, px);
    }
    free(sq), free(tile);
    return s;
}

/* The one plan of an image as the prompt encodes it: anyres, or a single tile (a base-only plan:
** one tile, G*G + 1 tokens). Tokens, tiles and packing all follow from it. */
static tw_status image_plan(const tw_model *m, const tw_image *im, bool single_tile, tw_anyres_plan *p) {
    if (!single_tile) return tw_vision_image_plan(m, im->w, im->h, p);
    TW_TRY(tw_vision_check_image(m));
    int32_t G = tw_vision_grid(m);
    *p = (tw_anyres_plan){ .n_tiles = 1, .grid = G, .n_tokens = G * G + 1 };
    return TW_OK;
}

/* The plan's tiles: px [p->n_tiles][3][S][S] (malloc'ed). */
static tw_status plan_pixels(const tw_model *m, const tw_image *im, bool single_tile, const tw_anyres_plan *p,
                             float **pixels) {
    size_t per = 3 * (size_t)m->preproc.tile * m->preproc.tile;
    float *px = tw_malloc(sizeof(float) * per * (size_t)p->n_tiles);
    if (!px) return TW_E_NOMEM;
    tw_status s = single_tile ? single_tile_pixels(m, im, px) : tw_anyres_pixels(im->rgb, p, &m->preproc, px);
    if (s != TW_OK) {
        free(px);
        return s;
    }
    *pixels = px;
    return TW_OK;
}

tw_status tw_vision_image_pixels(const tw_model *m, const tw_image *im, bool single_tile, float **pixels,
                                 int32_t *n_tiles) {
    *pixels = NULL;
    tw_anyres_plan p;
    TW_TRY(image_plan(m, im, single_tile, &p));
    TW_TRY(plan_pixels(m, im, single_tile, &p, pixels));
    *n_tiles = p.n_tiles;
    return TW_OK;
}

/* ---- tiles -> features -> projector ----------------------------------------------------------- */

/* SigLIP then the projector on n normalised tiles px [n][3][S][S]: proj [n][G*G][H]. names: the
** observer's names of the hidden states, the selected layer and the projection. */
static tw_status tiles_forward(const tw_model *m, const float *px, int32_t n, const tw_vision_obs *o,
                               const char *const names[3], float *proj) {
    int32_t G = tw_vision_grid(m), N = G * G, C = m->vision.n_embd, H = m->text.n_embd, Lv = m->vision.n_layer;
    size_t nt = (size_t)n * (size_t)N;
    bool watch = o && o->fn;
    float *feat = tw_malloc(sizeof(float) * nt * (size_t)C);
    float *hidden = watch ? tw_malloc(sizeof(float) * (size_t)(Lv + 1) * nt * (size_t)C) : NULL;
    tw_status s = TW_E_NOMEM;
    if (feat && (!watch || hidden) && (s = tw_siglip_forward(m, px, n, feat, hidden)) == TW_OK &&
        (s = report(o, names[0], TW_ELEM_F32, hidden, 4, Lv + 1, n, N, C, 0)) == TW_OK &&
        (s = report(o, names[1], TW_ELEM_F32, feat, 3, n, N, C, 0, 0)) == TW_OK &&
        (s = tw_projector_forward(m, feat, (int64_t)nt, proj)) == TW_OK)
        s = report(o, names[2], TW_ELEM_F32, proj, 3, n, N, H, 0, 0);
    free(feat), free(hidden);
    return s;
}

tw_status tw_vision_encode_image(const tw_model *m, const tw_image *im, bool single_tile, const tw_vision_obs *o,
                                 float *out) {
    static const char *const names[3] = { "vision_hidden_states", "vision_selected", "projected" };
    int32_t G = tw_vision_grid(m), N = G * G, H = m->text.n_embd, S = m->preproc.tile;
    tw_anyres_plan p;   /* computed once: tiles, token count and packing follow from it */
    float *px = NULL;
    TW_TRY(image_plan(m, im, single_tile, &p));
    TW_TRY(plan_pixels(m, im, single_tile, &p, &px));
    int32_t n_tiles = p.n_tiles, n_tok = p.n_tokens;
    float *proj = tw_malloc(sizeof(float) * (size_t)n_tiles * N * H);
    tw_status s = proj ? report(o, "pixel_values", TW_ELEM_F32, px, 4, n_tiles, 3, S, S, 0) : TW_E_NOMEM;
    if (s == TW_OK) s = tiles_forward(m, px, n_tiles, o, names, proj);
    if (s == TW_OK) {
        if (single_tile) {   /* its G*G rows, then one image_newline */
            memcpy(out, proj, sizeof(float) * (size_t)N * H);
            tw_vision_newline(m, out + (size_t)N * H);
        } else {
            s = tw_pack_image(m, &p, proj, out);
        }
    }
    if (s == TW_OK) s = report(o, "packed", TW_ELEM_F32, out, 2, n_tok, H, 0, 0, 0);
    free(px), free(proj);
    return s;
}

tw_status tw_vision_encode_video(const tw_model *m, const tw_video *v, const tw_vision_obs *o, float *out) {
    static const char *const names[3] = { "video_vision_hidden_states", "video_vision_selected", "video_projected" };
    TW_TRY(tw_vision_check_video(m));
    if (v->n_frames <= 0) return tw_err(TW_E_ARG, "video has no frames");
    int32_t F = v->n_frames, G = tw_vision_grid(m), N = G * G, H = m->text.n_embd, S = m->vision.image_size,
            P = tw_video_pooled_side(m), n_tok = tw_video_token_count(m, F), oh = 0, ow = 0;
    uint8_t *resized = NULL;
    float *px = NULL, *proj = NULL;
    tw_status s = TW_OK;
    if (o && o->fn) {   /* the resized frames are an intermediate of tw_video_preprocess: only for watchers */
        if ((s = tw_video_resize(&m->video_preproc, v, &resized, &oh, &ow)) == TW_OK)
            s = report(o, "video_frames_resized", TW_ELEM_U8, resized, 4, F, oh, ow, 3, 0);
    }
    if (s == TW_OK) s = tw_video_preprocess(&m->video_preproc, v, &px, &oh, &ow);
    if (s == TW_OK && (oh != S || ow != S))
        s = tw_err(TW_E_UNSUPPORTED, "%s: the video processor makes %dx%d frames but the vision tower takes %dx%d",
                   m->dir, ow, oh, S, S);
    if (s == TW_OK) s = report(o, "pixel_values_videos", TW_ELEM_F32, px, 5, 1, F, 3, S, S);
    if (s == TW_OK && !(proj = tw_malloc(sizeof(float) * (size_t)F * N * H))) s = TW_E_NOMEM;
    if (s == TW_OK) s = tiles_forward(m, px, F, o, names, proj);
    if (s == TW_OK) s = tw_pool_video(m, proj, F, out);
    if (s == TW_OK) s = report(o, "video_pooled", TW_ELEM_F32, out, 3, F, (int64_t)P * P, H, 0, 0);
    if (s == TW_OK) s = report(o, "video_features", TW_ELEM_F32, out, 2, n_tok, H, 0, 0, 0);
    free(resized), free(px), free(proj);
    return s;
}

/* ---- projector, packing, pooling -------------------------------------------------------------- */

void tw_vision_newline(const tw_model *m, float *out) {
    if (m->image_newline_f) memcpy(out, m->image_newline_f, sizeof(float) * (size_t)m->text.n_embd);
    else memset(out, 0, sizeof(float) * (size_t)m->text.n_embd);
}

tw_status tw_projector_forward(const tw_model *m, const float *feat, int64_t n, float *out) {
    int32_t H = m->text.n_embd;
    float *mid = tw_malloc(sizeof(float) * (size_t)n * H);
    if (!mid) return TW_E_NOMEM;
    tw_matmul(m->pool, mid, feat, n, m->proj.w1, m->proj.b1_f);
    for (size_t i = 0; i < (size_t)n * H; i++) mid[i] = tw_gelu_erf(mid[i]);
    tw_matmul(m->pool, out, mid, n, m->proj.w2, m->proj.b2_f);
    free(mid);
    return TW_OK;
}

/* torch's F.interpolate(mode="bilinear", align_corners=False, antialias=False) on a feature map
** in [h][w][C] layout, computed in float32 as torch does on the CPU. */
void tw_bilinear_hwc(const float *in, int32_t ih, int32_t iw, int32_t C, float *out, int32_t oh, int32_t ow) {
    float sh = (float)ih / (float)oh, sw = (float)iw / (float)ow;
    for (int32_t y = 0; y < oh; y++) {
        float fy = sh * ((float)y + 0.5f) - 0.5f;
        if (fy < 0) fy = 0;
        int32_t y0 = (int32_t)fy, y1 = y0 + (y0 < ih - 1 ? 1 : 0);
        float ly1 = fy - (float)y0, ly0 = 1.0f - ly1;
        for (int32_t x = 0; x < ow; x++) {
            float fx = sw * ((float)x + 0.5f) - 0.5f;
            if (fx < 0) fx = 0;
            int32_t x0 = (int32_t)fx, x1 = x0 + (x0 < iw - 1 ? 1 : 0);
            float lx1 = fx - (float)x0, lx0 = 1.0f - lx1;
            const float *a = in + ((size_t)y0 * iw + x0) * C, *b = in + ((size_t)y0 * iw + x1) * C;
            const float *c = in + ((size_t)y1 * iw + x0) * C, *d = in + ((size_t)y1 * iw + x1) * C;
            float *o = out + ((size_t)y * ow + x) * C;
            for (int32_t k = 0; k < C; k++) o[k] = ly0 * (lx0 * a[k] + lx1 * b[k]) + ly1 * (lx0 * c[k] + lx1 * d[k]);
        }
    }
}

tw_status tw_pack_image(const tw_model *m, const tw_anyres_plan *p, const float *proj, float *out) {
    int32_t H = m->text.n_embd, G = tw_vision_grid(m), N = G * G;
    if (p->grid != G) return tw_err(TW_E_INTERNAL, "anyres plan grid %d != vision grid %d", p->grid, G);
    float *nl = tw_calloc((size_t)H, sizeof(float));
    float *grid = tw_malloc(sizeof(float) * ((size_t)p->feat_h * p->feat_w + 1) * H);
    float *small = NULL;
    if (!nl || !grid) {
        free(nl), free(grid);
        return TW_E_NOMEM;
    }
    tw_vision_newline(m, nl);
    memcpy(out, proj, sizeof(float) * (size_t)N * H);   /* base thumbnail, row-major */

    /* stitch the tiles into one (rows*G) x (cols*G) map, keeping only the unpadded window */
    float *g = grid;
    for (int32_t y = p->crop_top; y < p->crop_top + p->feat_h; y++) {
        int32_t tr = y / G, fy = y % G;
        for (int32_t x = p->crop_left; x < p->crop_left + p->feat_w; x++, g += H) {
            int32_t tc = x / G, fx = x % G;
            memcpy(g, proj + ((size_t)(1 + tr * p->cols + tc) * N + (size_t)fy * G + fx) * H, sizeof(float) * (size_t)H);
        }
    }
    const float *map = grid;
    if (p->out_h != p->feat_h || p->out_w != p->feat_w) {   /* OneVision anyres_max downscale */
        small = tw_malloc(sizeof(float) * ((size_t)p->out_h * p->out_w + 1) * H);
        if (!small) {
            free(nl), free(grid);
            return TW_E_NOMEM;
        }
        tw_bilinear_hwc(grid, p->feat_h, p->feat_w, H, small, p->out_h, p->out_w);
        map = small;
    }
    float *o = out + (size_t)N * H;
    for (int32_t y = 0; y < p->out_h; y++) {
        memcpy(o, map + (size_t)y * p->out_w * H, sizeof(float) * (size_t)p->out_w * H);
        o += (size_t)p->out_w * H;
        memcpy(o, nl, sizeof(float) * (size_t)H);   /* image_newline after every row */
        o += H;
    }
    free(nl), free(grid), free(small);
    return TW_OK;
}

int32_t tw_video_pooled_side(const tw_model *m) { return (tw_vision_grid(m) + 1) / 2; }

int32_t tw_video_token_count(const tw_model *m, int32_t n_frames) {
    int32_t P = tw_video_pooled_side(m);
    return n_frames * P * P + 1;
}

tw_status tw_pool_video(const tw_model *m, const float *proj, int32_t n_frames, float *out) {
    int32_t H = m->text.n_embd, G = tw_vision_grid(m), P = tw_video_pooled_side(m);
    for (int32_t f = 0; f < n_frames; f++)
        tw_bilinear_hwc(proj + (size_t)f * G * G * H, G, G, H, out + (size_t)f * P * P * H, P, P);
    tw_vision_newline(m, out + (size_t)n_frames * P * P * H);   /* one image_newline after the whole video */
    return TW_OK;
}
