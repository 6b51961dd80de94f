/*
** image_api.c — the public image calls: wrap pixels, count tokens, preprocess, encode, and expand
** <image> placeholders in a prompt. One anyres plan per image drives all of them, so the token
** count the prompt gets is by construction the number of rows the encoder packs.
*/
#include "vision.h"

#include <stdlib.h>

tw_status tw_image_from_rgb(const uint8_t *rgb, int32_t width, int32_t height, tw_image **out) {
    *out = NULL;
    if (!rgb || width <= 0 || height <= 0) return tw_err(TW_E_ARG, "image: empty or missing pixels (%dx%d)", width, height);
    tw_image *im = tw_calloc(1, sizeof *im);
    size_t n;
    if (!im) return TW_E_NOMEM;
    if (tw_mul_overflow((size_t)width * 3, (size_t)height, &n) || !(im->rgb = tw_malloc(n))) {
        free(im);
        return TW_E_NOMEM;
    }
    memcpy(im->rgb, rgb, n);
    im->w = width;
    im->h = height;
    *out = im;
    return TW_OK;
}

int32_t tw_image_width(const tw_image *im) { return im ? im->w : 0; }
int32_t tw_image_height(const tw_image *im) { return im ? im->h : 0; }
const uint8_t *tw_image_rgb(const tw_image *im) { return im ? im->rgb : NULL; }

void tw_image_free(tw_image *im) {
    if (!im) return;
    free(im->rgb);
    free(im);
}

static tw_status need_vision(const tw_model *m) {
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

static tw_status plan_for(const tw_model *m, int32_t w, int32_t h, tw_anyres_plan *p) {
    TW_TRY(need_vision(m));
    return tw_anyres_plan_make(h, w, m->pinpoints, m->n_pinpoints, m->vision.image_size, m->vision.patch_size,
                               m->arch == TW_ARCH_LLAVA_ONEVISION ? m->max_num_patches : 0, p);
}

tw_status tw_image_n_tokens(const tw_model *m, int32_t width, int32_t height, int32_t *n_tokens) {
    tw_anyres_plan p;
    TW_TRY(plan_for(m, width, height, &p));
    *n_tokens = p.n_tokens;
    return TW_OK;
}

static tw_status pixels_for(const tw_model *m, const tw_image *im, const tw_anyres_plan *p, float **pixels) {
    const tw_preproc *pp = &m->preproc;
    size_t per = 3 * (size_t)pp->tile * pp->tile;
    float *px = tw_malloc(sizeof(float) * per * (size_t)p->n_tiles);
    if (!px) return TW_E_NOMEM;
    tw_status s = tw_anyres_pixels(im->rgb, p, pp, px);
    if (s != TW_OK) {
        free(px);
        return s;
    }
    *pixels = px;
    return TW_OK;
}

tw_status tw_image_preprocess(const tw_model *m, const tw_image *im, float **pixels, int32_t *n_tiles) {
    tw_anyres_plan p;
    *pixels = NULL;
    TW_TRY(plan_for(m, im->w, im->h, &p));
    TW_TRY(pixels_for(m, im, &p, pixels));
    *n_tiles = p.n_tiles;
    return TW_OK;
}

tw_status tw_image_encode(const tw_model *m, const tw_image *im, float **embd, int32_t *n_tokens) {
    tw_anyres_plan p;
    *embd = NULL;
    TW_TRY(plan_for(m, im->w, im->h, &p));
    float *px = NULL;
    TW_TRY(pixels_for(m, im, &p, &px));
    int32_t G = tw_vision_grid(m), N = G * G, C = m->vision.n_embd, H = m->text.n_embd;
    float *feat = tw_malloc(sizeof(float) * (size_t)p.n_tiles * N * C);
    float *proj = tw_malloc(sizeof(float) * (size_t)p.n_tiles * N * H);
    float *out = tw_malloc(sizeof(float) * (size_t)p.n_tokens * H);
    tw_status s = TW_E_NOMEM;
    if (feat && proj && out && (s = tw_siglip_forward(m, px, p.n_tiles, feat, NULL)) == TW_OK &&
        (s = tw_projector_forward(m, feat, (int64_t)p.n_tiles * N, proj)) == TW_OK &&
        (s = tw_pack_image(m, &p, proj, out)) == TW_OK) {
        *embd = out;
        *n_tokens = p.n_tokens;
        out = NULL;
    }
    free(px), free(feat), free(proj), free(out);
    return s;
}

tw_status tw_tokenize_prompt(const tw_model *m, const char *prompt, size_t len, const int32_t *n_tokens,
                             size_t n_media, int32_t **ids_out, size_t *n_out) {
    *ids_out = NULL;
    *n_out = 0;
    int32_t *ids = NULL;
    size_t n = 0;
    TW_TRY(tw_tokenize(m->tok, prompt, len, 0, &ids, &n));
    /* <image> and <video> are added tokens, matched atomically, so expanding the id after
    ** tokenizing gives the same ids as the processor's expanding the string before. */
    int32_t img = m->image_token_id, vid = m->video_token_id;
#define IS_MEDIA(id) (((id) == img && img >= 0) || ((id) == vid && vid >= 0))
    size_t n_ph = 0, total = 0;
    for (size_t i = 0; i < n; i++) {
        if (IS_MEDIA(ids[i])) {
            if (n_ph < n_media) total += (size_t)TW_MAX(n_tokens[n_ph], 0);
            n_ph++;
        } else {
            total++;
        }
    }
    if (n_ph != n_media) {
        free(ids);
        return tw_err(TW_E_ARG, "the prompt has %zu <image>/<video> placeholder(s) but %zu image(s)/video(s) were given",
                      n_ph, n_media);
    }
    int32_t *out = tw_malloc(sizeof(int32_t) * (total ? total : 1));
    if (!out) {
        free(ids);
        return TW_E_NOMEM;
    }
    size_t k = 0, ph = 0;
    for (size_t i = 0; i < n; i++) {
        if (IS_MEDIA(ids[i])) {
            int32_t cnt = n_tokens[ph++];
            for (int32_t r = 0; r < cnt; r++) out[k++] = ids[i];
        } else
            out[k++] = ids[i];
    }
#undef IS_MEDIA
    free(ids);
    *ids_out = out;
    *n_out = k;
    return TW_OK;
}

/* ---- several images in one prompt ---------------------------------------------------------------- */

/* LlavaOnevision tiles a prompt's image only when it is the prompt's only one. */
static bool single_tile_mode(const tw_model *m, size_t n_images) {
    return m->arch == TW_ARCH_LLAVA_ONEVISION && n_images > 1;
}

tw_status tw_images_n_tokens(const tw_model *m, const tw_image *const *images, size_t n_images, int32_t *n_tokens) {
    TW_TRY(need_vision(m));
    int32_t G = tw_vision_grid(m);
    for (size_t i = 0; i < n_images; i++) {
        if (single_tile_mode(m, n_images)) n_tokens[i] = G * G + 1;
        else TW_TRY(tw_image_n_tokens(m, images[i]->w, images[i]->h, &n_tokens[i]));
    }
    return TW_OK;
}

/* One image as a single tile: padded to a square of grey int(mean*255) (image centred, odd
** pixel after), resized to the tile, normalised; LlavaOnevisionImageProcessor's multi-image path. */
static tw_status encode_single_tile(const tw_model *m, const tw_image *im, float *out /* [G*G+1, H] */) {
    const tw_preproc pp = m->preproc;
    int32_t side = TW_MAX(im->w, im->h), S = pp.tile, G = tw_vision_grid(m), N = G * G, C = m->vision.n_embd,
            H = m->text.n_embd;
    uint8_t *sq = tw_malloc((size_t)side * side * 3), *tile = tw_malloc((size_t)S * S * 3);
    float *px = tw_malloc(sizeof(float) * 3 * (size_t)S * S), *feat = tw_malloc(sizeof(float) * (size_t)N * C);
    tw_status s = TW_E_NOMEM;
    if (!sq || !tile || !px || !feat) goto done;
    for (size_t i = 0; i < (size_t)side * side; i++)
        for (int c = 0; c < 3; c++) sq[i * 3 + c] = (uint8_t)(int)(pp.mean[c] * 255.0);
    int32_t top = (side - im->h) / 2, left = (side - im->w) / 2;
    for (int32_t y = 0; y < im->h; y++)
        memcpy(sq + ((size_t)(y + top) * side + left) * 3, im->rgb + (size_t)y * im->w * 3, (size_t)im->w * 3);
    if ((s = tw_resize_pil(sq, side, side, 3, tile, S, S, pp.resample)) != TW_OK) goto done;
    /* a one-tile "plan" reuses the normaliser: rows = cols = 0 means base only */
    tw_anyres_plan one = { .orig_h = S, .orig_w = S, .best_h = S, .best_w = S, .resized_h = S, .resized_w = S,
                           .rows = 0, .cols = 0, .n_tiles = 1, .grid = G };
    if ((s = tw_anyres_pixels(tile, &one, &pp, px)) != TW_OK) goto done;
    if ((s = tw_siglip_forward(m, px, 1, feat, NULL)) != TW_OK) goto done;
    if ((s = tw_projector_forward(m, feat, N, out)) != TW_OK) goto done;
    if (m->image_newline) tw_tensor_to_f32(m->image_newline, out + (size_t)N * H);
    else memset(out + (size_t)N * H, 0, sizeof(float) * (size_t)H);
done:
    free(sq), free(tile), free(px), free(feat);
    return s;
}

tw_status tw_images_encode(const tw_model *m, const tw_image *const *images, size_t n_images, float **embd,
                           int32_t *n_tokens) {
    *embd = NULL;
    TW_TRY(tw_images_n_tokens(m, images, n_images, n_tokens));
    size_t total = 0, H = (size_t)m->text.n_embd;
    for (size_t i = 0; i < n_images; i++) total += (size_t)n_tokens[i];
    float *all = tw_malloc(sizeof(float) * (total ? total : 1) * H);
    if (!all) return TW_E_NOMEM;
    size_t off = 0;
    for (size_t i = 0; i < n_images; i++) {
        tw_status s;
        if (single_tile_mode(m, n_images)) {
            s = encode_single_tile(m, images[i], all + off * H);
        } else {
            float *one = NULL;
            int32_t n = 0;
            s = tw_image_encode(m, images[i], &one, &n);
            if (s == TW_OK) memcpy(all + off * H, one, sizeof(float) * (size_t)n * H);
            free(one);
        }
        if (s != TW_OK) {
            free(all);
            return tw_err_prefix(s, "image %zu of %zu", i + 1, n_images);
        }
        off += (size_t)n_tokens[i];
    }
    *embd = all;
    return TW_OK;
}
