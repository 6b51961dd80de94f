/*
** anyres.c — LlavaNext "anyres" tiling: choose the grid pinpoint, size the resize and the padding,
** count the tokens the unpadded feature grid gives, and cut the normalised tiles. Follows
** transformers' LlavaNextImageProcessor (slow, PIL path) and LlavaNextProcessor's token count,
** including their float rounding (see SPEC sections 4-5).
*/
#include "image.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int64_t tw_py_int_round7(double x) {
    /* Python's round(x, 7) rounds the exact binary value to 7 decimals (correctly rounded,
    ** half-even); int() then truncates. glibc's printf is correctly rounded too, so printing
    ** with %.7f and keeping the integer part gives the same integer. */
    char buf[64];
    snprintf(buf, sizeof buf, "%.7f", x);
    return strtoll(buf, NULL, 10);
}

double tw_py_floordiv(double a, double b) {
    /* CPython's float_floor_div */
    double mod = fmod(a, b), div = (a - mod) / b;
    if (mod != 0.0 && ((b < 0) != (mod < 0))) div -= 1.0;
    if (div != 0.0) {
        double fl = floor(div);
        if (div - fl > 0.5) fl += 1.0;
        return fl;
    }
    return copysign(0.0, a / b);
}

tw_status tw_anyres_plan_make(int32_t h, int32_t w, const int32_t *pinpoints, int32_t n_pinpoints,
                              int32_t tile_size, int32_t patch_size, int32_t max_patches, tw_anyres_plan *out) {
    if (h <= 0 || w <= 0) return tw_err(TW_E_ARG, "image size %dx%d (width x height) is empty", w, h);
    if (n_pinpoints <= 0 || tile_size <= 0 || patch_size <= 0 || patch_size > tile_size)
        return tw_err(TW_E_CONFIG, "anyres: no grid pinpoints or bad tile/patch size (%d/%d)", tile_size, patch_size);
    memset(out, 0, sizeof *out);
    out->orig_h = h;
    out->orig_w = w;

    /* select_best_resolution: largest effective resolution, then least waste; first wins ties. */
    int64_t best_eff = 0, best_waste = INT64_MAX;
    int best = -1;
    for (int32_t i = 0; i < n_pinpoints; i++) {
        int32_t ph = pinpoints[2 * i], pw = pinpoints[2 * i + 1];
        if (ph <= 0 || pw <= 0 || ph % tile_size || pw % tile_size)
            return tw_err(TW_E_CONFIG, "image_grid_pinpoints[%d] = [%d, %d] is not a multiple of the tile size %d", i, ph,
                          pw, tile_size);
        double scale = fmin((double)pw / w, (double)ph / h);
        int64_t dw = (int64_t)(w * scale), dh = (int64_t)(h * scale);
        int64_t eff = TW_MIN(dw * dh, (int64_t)w * h), waste = (int64_t)ph * pw - eff;
        if (eff > best_eff || (eff == best_eff && waste < best_waste)) {
            best_eff = eff;
            best_waste = waste;
            best = i;
        }
    }
    if (best < 0) best = 0;   /* only reachable for absurd sizes; the first pinpoint is as good */
    out->best_h = pinpoints[2 * best];
    out->best_w = pinpoints[2 * best + 1];

    /* get_patch_output_size: the limiting side takes the target, the other ceil(side * scale). */
    double sw = (double)out->best_w / w, sh = (double)out->best_h / h;
    if (sw < sh) {
        out->resized_w = out->best_w;
        out->resized_h = (int32_t)TW_MIN(ceil(h * sw), out->best_h);
    } else {
        out->resized_h = out->best_h;
        out->resized_w = (int32_t)TW_MIN(ceil(w * sh), out->best_w);
    }
    if (out->resized_h < 1) out->resized_h = 1;   /* PIL cannot make an empty image */
    if (out->resized_w < 1) out->resized_w = 1;
    out->pad_top = (out->best_h - out->resized_h) / 2;
    out->pad_left = (out->best_w - out->resized_w) / 2;

    out->rows = out->best_h / tile_size;
    out->cols = out->best_w / tile_size;
    out->n_tiles = out->rows * out->cols + 1;
    out->grid = tile_size / patch_size;

    /* Unpadding in feature units with the ORIGINAL size (processor and model agree since the
    ** round(..., 7) fix). */
    int32_t ch = out->rows * out->grid, cw = out->cols * out->grid;
    if ((double)w / h > (double)cw / ch) {
        int64_t nh = tw_py_int_round7(h * ((double)cw / w));
        int32_t pad = (int32_t)((ch - nh) / 2);
        out->crop_top = pad;
        ch -= 2 * pad;
    } else {
        int64_t nw = tw_py_int_round7(w * ((double)ch / h));
        int32_t pad = (int32_t)((cw - nw) / 2);
        out->crop_left = pad;
        cw -= 2 * pad;
    }
    out->feat_h = out->out_h = ch;
    out->feat_w = out->out_w = cw;
    if (max_patches > 0) {   /* OneVision anyres_max_N, same expression in processor and model */
        double ratio = sqrt((double)ch * cw / ((double)max_patches * out->grid * out->grid));
        if (ratio > 1.1) {
            out->out_h = (int32_t)tw_py_floordiv(ch, ratio);
            out->out_w = (int32_t)tw_py_floordiv(cw, ratio);
        }
    }
    out->n_tokens = out->grid * out->grid + out->out_h * out->out_w + out->out_h;
    return TW_OK;
}

/* rescale then normalise one uint8 HWC tile into CHW f32: the reference's two f32 roundings
** (a fused (u - 127.5) / 127.5 differs for half of the byte values) */
static void normalise_tile(const uint8_t *hwc, const tw_preproc *pp, float *chw) {
    int32_t tile = pp->tile;
    for (int32_t c = 0; c < 3; c++)
        for (int32_t i = 0; i < tile * tile; i++) {
            float x = pp->do_rescale ? (float)(hwc[(size_t)i * 3 + c] * pp->rescale_factor) : (float)hwc[(size_t)i * 3 + c];
            chw[(size_t)c * tile * tile + i] = pp->do_normalize ? (x - pp->mean[c]) / pp->std[c] : x;
        }
}

tw_status tw_anyres_pixels(const uint8_t *rgb, const tw_anyres_plan *p, const tw_preproc *pp, float *out) {
    int32_t tile = pp->tile;
    tw_resample filter = pp->resample;
    size_t tile_px = (size_t)tile * tile;
    uint8_t *buf = tw_malloc(tile_px * 3);
    uint8_t *resized = tw_malloc((size_t)p->resized_h * p->resized_w * 3);
    uint8_t *canvas = tw_calloc((size_t)p->best_h * p->best_w, 3);
    tw_status s = TW_E_NOMEM;
    if (!buf || !resized || !canvas) goto done;

    /* base thumbnail: the original squashed to tile x tile */
    if ((s = tw_resize_pil(rgb, p->orig_w, p->orig_h, 3, buf, tile, tile, filter)) != TW_OK) goto done;
    normalise_tile(buf, pp, out);

    /* aspect-preserving resize, centred on a black canvas, cut row-major */
    if ((s = tw_resize_pil(rgb, p->orig_w, p->orig_h, 3, resized, p->resized_w, p->resized_h, filter)) != TW_OK) goto done;
    for (int32_t y = 0; y < p->resized_h; y++)
        memcpy(canvas + ((size_t)(y + p->pad_top) * p->best_w + p->pad_left) * 3, resized + (size_t)y * p->resized_w * 3,
               (size_t)p->resized_w * 3);
    for (int32_t r = 0; r < p->rows; r++)
        for (int32_t c = 0; c < p->cols; c++) {
            for (int32_t y = 0; y < tile; y++)
                memcpy(buf + (size_t)y * tile * 3, canvas + ((size_t)(r * tile + y) * p->best_w + (size_t)c * tile) * 3,
                       (size_t)tile * 3);
            normalise_tile(buf, pp, out + (size_t)(1 + r * p->cols + c) * 3 * tile_px);
        }
    s = TW_OK;
done:
    free(buf);
    free(resized);
    free(canvas);
    return s;
}

/* ---- preprocessor_config.json ------------------------------------------------------------------ */

static tw_status read_size(const json_t *j, const char *file, const char *key, int32_t *h, int32_t *w) {
    const json_t *o = json_object_get(j, key);
    if (!o) return TW_OK;
    if (json_is_integer(o)) {   /* old processors store a bare int */
        *h = *w = (int32_t)json_integer_value(o);
        return TW_OK;
    }
    int64_t se = -1, hh = -1, ww = -1;
    char k[64];
    snprintf(k, sizeof k, "%s.shortest_edge", key);
    TW_TRY(tw_json_int(j, file, k, false, &se));
    snprintf(k, sizeof k, "%s.height", key);
    TW_TRY(tw_json_int(j, file, k, false, &hh));
    snprintf(k, sizeof k, "%s.width", key);
    TW_TRY(tw_json_int(j, file, k, false, &ww));
    if (se > 0) *h = *w = (int32_t)se;
    else if (hh > 0 && ww > 0) *h = (int32_t)hh, *w = (int32_t)ww;
    else return tw_err(TW_E_CONFIG, "%s: field \"%s\" needs shortest_edge or height and width", file, key);
    return TW_OK;
}

static tw_status read_triple(const json_t *j, const char *file, const char *key, float out[3]) {
    const json_t *a = json_object_get(j, key);
    if (!a) return TW_OK;
    if (json_is_number(a)) {
        out[0] = out[1] = out[2] = (float)json_number_value(a);
        return TW_OK;
    }
    if (!json_is_array(a) || json_array_size(a) != 3)
        return tw_err(TW_E_CONFIG, "%s: field \"%s\" must be a list of 3 numbers", file, key);
    for (size_t i = 0; i < 3; i++) {
        const json_t *v = json_array_get(a, i);
        if (!json_is_number(v)) return tw_err(TW_E_CONFIG, "%s: field \"%s\"[%zu] must be a number", file, key, i);
        out[i] = (float)json_number_value(v);   /* the processor casts mean/std to the image's f32 */
    }
    return TW_OK;
}

tw_status tw_preproc_load(const char *dir, int32_t image_size, int32_t patch_size, tw_preproc *pp) {
    tw_src src = tw_src_dir(dir);
    return tw_preproc_load_src(&src, image_size, patch_size, pp);
}

tw_status tw_preproc_load_src(const tw_src *src, int32_t image_size, int32_t patch_size, tw_preproc *pp) {
    /* SigLIP's own settings when the file is absent */
    *pp = (tw_preproc){ .tile = image_size, .patch = patch_size, .resample = TW_RESAMPLE_BICUBIC,
                        .do_rescale = true, .do_normalize = true, .rescale_factor = 1.0 / 255.0,
                        .mean = { 0.5f, 0.5f, 0.5f }, .std = { 0.5f, 0.5f, 0.5f } };
    if (!tw_src_exists(src, "preprocessor_config.json")) return TW_OK;
    char *path = tw_src_name(src, "preprocessor_config.json");
    if (!path) return TW_E_NOMEM;
    json_t *j = NULL;
    tw_status s = tw_src_json(src, "preprocessor_config.json", &j);
    const char *file = path;
    int64_t resample = pp->resample;
    int32_t sh = image_size, sw = image_size, ch = image_size, cw = image_size;
    if (s == TW_OK) s = tw_json_int(j, file, "resample", false, &resample);
    if (s == TW_OK) s = tw_json_bool(j, file, "do_rescale", false, &pp->do_rescale);
    if (s == TW_OK) s = tw_json_num(j, file, "rescale_factor", false, &pp->rescale_factor);
    if (s == TW_OK) s = tw_json_bool(j, file, "do_normalize", false, &pp->do_normalize);
    if (s == TW_OK) s = read_triple(j, file, "image_mean", pp->mean);
    if (s == TW_OK) s = read_triple(j, file, "image_std", pp->std);
    if (s == TW_OK) s = read_size(j, file, "size", &sh, &sw);
    if (s == TW_OK) s = read_size(j, file, "crop_size", &ch, &cw);
    if (s == TW_OK && (resample < 0 || resample > 5))
        s = tw_err(TW_E_CONFIG, "%s: field \"resample\" is %lld, expected a Pillow filter 0-5", file, (long long)resample);
    pp->resample = (tw_resample)resample;
    if (s == TW_OK && (ch != image_size || cw != image_size || sh != image_size || sw != image_size))
        s = tw_err(TW_E_UNSUPPORTED,
                   "%s: size %dx%d / crop_size %dx%d differ from the vision tower's image_size %d; only equal sizes are "
                   "supported",
                   file, sh, sw, ch, cw, image_size);
    for (int c = 0; s == TW_OK && c < 3; c++)
        if (pp->do_normalize && pp->std[c] == 0.0f) s = tw_err(TW_E_CONFIG, "%s: field \"image_std\"[%d] is 0", file, c);
    json_decref(j);
    free(path);
    return s;
}
