/*
** image_api.c — the public image calls of tower.h (count, preprocess, encode), each one call into
** the vision pipeline (vision.c).
*/
#include "vision.h"

#include <stdlib.h>

tw_status tw_image_n_tokens(const tw_model *m, int32_t width, int32_t height, int32_t *n_tokens) {
    return tw_vision_image_tokens(m, width, height, false, n_tokens);
}

tw_status tw_image_preprocess(const tw_model *m, const tw_image *im, float **pixels, int32_t *n_tiles) {
    return tw_vision_image_pixels(m, im, false, pixels, n_tiles);
}

/* n images encoded as one prompt's: *embd (malloc'ed) holds all rows, image after image. */
static tw_status encode_images(const tw_model *m, const tw_image *const *images, size_t n, float **embd,
                               int32_t *n_tokens) {
    *embd = NULL;
    bool single = tw_vision_single_tile(m, n);
    size_t total = 0, H = (size_t)m->text.n_embd;
    for (size_t i = 0; i < n; i++) {
        TW_TRY(tw_vision_image_tokens(m, images[i]->w, images[i]->h, single, &n_tokens[i]));
        total += (size_t)n_tokens[i];
    }
    float *all = tw_malloc(sizeof(float) * (total ? total : 1) * H);
    if (!all) return TW_E_NOMEM;
    for (size_t i = 0, off = 0; i < n; off += (size_t)n_tokens[i], i++) {
        tw_status s = tw_vision_encode_image(m, images[i], single, NULL, all + off * H);
        if (s != TW_OK) {
            free(all);
            return n > 1 ? tw_err_prefix(s, "image %zu of %zu", i + 1, n) : s;
        }
    }
    *embd = all;
    return TW_OK;
}

tw_status tw_image_encode(const tw_model *m, const tw_image *im, float **embd, int32_t *n_tokens) {
    *embd = NULL;
    TW_TRY(tw_vision_check_image(m));
    tw_anyres_plan p;   /* one image alone is always tiled (anyres), whatever the architecture */
    TW_TRY(tw_vision_image_plan(m, im->w, im->h, &p));
    float *out = tw_malloc(sizeof(float) * (size_t)p.n_tokens * (size_t)m->text.n_embd);
    if (!out) return TW_E_NOMEM;
    tw_status s = tw_vision_encode_image(m, im, false, NULL, out);
    if (s != TW_OK) {
        free(out);
        return s;
    }
    *embd = out;
    *n_tokens = p.n_tokens;
    return TW_OK;
}

tw_status tw_images_n_tokens(const tw_model *m, const tw_image *const *images, size_t n_images, int32_t *n_tokens) {
    TW_TRY(tw_vision_check_image(m));
    bool single = tw_vision_single_tile(m, n_images);
    for (size_t i = 0; i < n_images; i++)
        TW_TRY(tw_vision_image_tokens(m, images[i]->w, images[i]->h, single, &n_tokens[i]));
    return TW_OK;
}

tw_status tw_images_encode(const tw_model *m, const tw_image *const *images, size_t n_images, float **embd,
                           int32_t *n_tokens) {
    TW_TRY(tw_vision_check_image(m));
    return encode_images(m, images, n_images, embd, n_tokens);
}
