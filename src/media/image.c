/*
** image.c — the decoded image object (tower.h's tw_image): wrap pixels, size, free. Decoding is
** image_io.c; the model's use of images (anyres, encoding) is src/model.
*/
#include "image.h"

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
