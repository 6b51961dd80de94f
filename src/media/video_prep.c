/*
** video_prep.c — the LlavaOnevisionVideoProcessor's frame preprocessing: resize every frame with
** torch's antialiased bicubic (or bilinear) interpolation on the float path, clamp and round back
** to uint8 as torchvision does, then the fused rescale + normalise into pixel_values_videos.
**
** Why not Pillow's resize (resample.c)? The video processor resizes uint8 tensors with
** torchvision, which converts them to float32 and calls F.interpolate(antialias=True). The kernel
** support and taps are Pillow's, but the arithmetic is float with no rounding between the two
** passes; Pillow's 8-bit fixed point differs by up to 13 levels (fixtures README, "TowerVideo").
**
** The arithmetic mirrors torch 1.13's CPU kernel (UpSampleKernel.cpp, _compute_weights_aa and
** interpolate_aa_single_dim) type for type, because the fixture bytes depend on it: scale and
** weights in float32, the centre computed in double and stored as float, weights normalised in
** float, taps accumulated left to right in float. Horizontal pass first, then vertical; an axis
** whose size does not change is not resampled.
*/
#include "video.h"

#include <math.h>
#include <stdlib.h>

/* ---- config ------------------------------------------------------------------------------- */

/* LlavaOnevisionVideoProcessor's class defaults (transformers), used for absent fields. */
static void preproc_defaults(tw_video_preproc *p) {
    memset(p, 0, sizeof *p);
    p->height = p->width = 384;
    p->resample = TW_RESAMPLE_BICUBIC;
    p->do_resize = p->do_rescale = p->do_normalize = p->do_convert_rgb = true;
    p->rescale_factor = 1.0 / 255.0;
    static const double clip_mean[3] = { 0.48145466, 0.4578275, 0.40821073 };
    static const double clip_std[3] = { 0.26862954, 0.26130258, 0.27577711 };
    memcpy(p->mean, clip_mean, sizeof clip_mean);
    memcpy(p->std, clip_std, sizeof clip_std);
}

/* image_mean / image_std: a list of 3 numbers or one number for all channels. */
static tw_status read_triplet(const json_t *root, const char *file, const char *key, double out[3]) {
    const json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return TW_OK;
    if (json_is_number(v)) {
        out[0] = out[1] = out[2] = json_number_value(v);
        return TW_OK;
    }
    if (!json_is_array(v) || json_array_size(v) != 3)
        return tw_err(TW_E_CONFIG, "%s: field \"%s\": expected a list of 3 numbers", file, key);
    for (size_t i = 0; i < 3; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_number(e))
            return tw_err(TW_E_CONFIG, "%s: field \"%s\"[%zu]: expected a number", file, key, i);
        out[i] = json_number_value(e);
    }
    return TW_OK;
}

static tw_status read_flag(const json_t *root, const char *file, const char *key, bool *out) {
    const json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return TW_OK;   /* null = "use the class default" in transformers */
    return tw_json_bool(root, file, key, false, out);
}

static tw_status preproc_parse(const json_t *root, const char *file, tw_video_preproc *p) {
    TW_TRY(read_flag(root, file, "do_resize", &p->do_resize));
    TW_TRY(read_flag(root, file, "do_rescale", &p->do_rescale));
    TW_TRY(read_flag(root, file, "do_normalize", &p->do_normalize));
    TW_TRY(read_flag(root, file, "do_convert_rgb", &p->do_convert_rgb));
    const json_t *rf = json_object_get(root, "rescale_factor");
    if (rf && !json_is_null(rf)) TW_TRY(tw_json_num(root, file, "rescale_factor", true, &p->rescale_factor));
    if (p->do_rescale && !(p->rescale_factor > 0))
        return tw_err(TW_E_CONFIG, "%s: field \"rescale_factor\": expected a positive number", file);
    TW_TRY(read_triplet(root, file, "image_mean", p->mean));
    TW_TRY(read_triplet(root, file, "image_std", p->std));
    for (int c = 0; c < 3; c++)
        if (p->do_normalize && p->std[c] == 0)
            return tw_err(TW_E_CONFIG, "%s: field \"image_std\": a channel has std 0", file);

    const json_t *rs = json_object_get(root, "resample");
    if (rs && !json_is_null(rs)) {
        int64_t r = 0;
        TW_TRY(tw_json_int(root, file, "resample", true, &r));
        if (r != TW_RESAMPLE_BICUBIC && r != TW_RESAMPLE_BILINEAR)
            return tw_err(TW_E_UNSUPPORTED, "%s: field \"resample\": %lld is not supported for video frames "
                          "(2 = bilinear and 3 = bicubic are)", file, (long long)r);
        p->resample = (tw_resample)r;
    }

    const json_t *size = json_object_get(root, "size");
    if (size && !json_is_null(size)) {
        if (!json_is_object(size))
            return tw_err(TW_E_CONFIG, "%s: field \"size\": expected an object", file);
        int64_t h = 0, w = 0, se = 0;
        TW_TRY(tw_json_int(size, file, "height", false, &h));
        TW_TRY(tw_json_int(size, file, "width", false, &w));
        TW_TRY(tw_json_int(size, file, "shortest_edge", false, &se));
        if (h > 0 && w > 0 && h <= 16384 && w <= 16384) {
            p->height = (int32_t)h, p->width = (int32_t)w, p->shortest_edge = 0;
        } else if (se > 0 && se <= 16384 && !h && !w) {
            p->height = p->width = 0, p->shortest_edge = (int32_t)se;
        } else {
            return tw_err(TW_E_CONFIG, "%s: field \"size\": expected {\"height\", \"width\"} or "
                          "{\"shortest_edge\"} with values in 1..16384", file);
        }
    }
    return TW_OK;
}

tw_status tw_video_preproc_load(const char *model_dir, tw_video_preproc *out) {
    if (!model_dir || !out) return tw_err(TW_E_ARG, "tw_video_preproc_load: NULL argument");
    tw_src src = tw_src_dir(model_dir);
    return tw_video_preproc_load_src(&src, out);
}

tw_status tw_video_preproc_load_src(const tw_src *src, tw_video_preproc *out) {
    preproc_defaults(out);
    /* transformers' video processors fall back to the image processor's file when the checkpoint
    ** has no video_preprocessor_config.json. */
    const char *name = "video_preprocessor_config.json";
    if (!tw_src_exists(src, name)) {
        name = "preprocessor_config.json";
        if (!tw_src_exists(src, name))
            return tw_err(TW_E_NOT_FOUND, "%s: neither video_preprocessor_config.json nor "
                          "preprocessor_config.json exists", src->root);
    }
    char *path = tw_src_name(src, name);
    if (!path) return TW_E_NOMEM;
    json_t *root = NULL;
    tw_status s = tw_src_json(src, name, &root);
    if (s == TW_OK) {
        if (!json_is_object(root)) s = tw_err(TW_E_CONFIG, "%s: expected a JSON object", path);
        else s = preproc_parse(root, path, out);
    }
    json_decref(root);
    free(path);
    return s;
}

tw_status tw_video_preproc_out_size(const tw_video_preproc *p, int32_t h, int32_t w, int32_t *oh, int32_t *ow) {
    if (h <= 0 || w <= 0) return tw_err(TW_E_ARG, "video frame size %dx%d: expected positive sizes", w, h);
    if (!p->do_resize) {
        *oh = h, *ow = w;
    } else if (p->shortest_edge > 0) {
        /* transformers get_resize_output_image_size(default_to_square=False): the short side
        ** becomes S, the long side int(S * long / short) (Python float, truncated). */
        int32_t s = p->shortest_edge;
        if (h <= w) *oh = s, *ow = (int32_t)((double)s * w / h);
        else        *ow = s, *oh = (int32_t)((double)s * h / w);
        if (*oh < 1) *oh = 1;
        if (*ow < 1) *ow = 1;
    } else {
        *oh = p->height, *ow = p->width;
    }
    return TW_OK;
}

/* ---- torch antialiased interpolation ------------------------------------------------------ */

/* Keys' cubic convolution with a = -0.5 (torch's aa_filter for bicubic), in float as torch. The
** reference torch is the x86 build, whose CPU kernels are compiled with -mavx2 -mfma and GCC's
** default contraction: a*b + c there is one fused multiply-add. We write those fmaf() calls
** explicitly (the build uses -std=c11, which never contracts), which brings the resized frames
** from 27 to 6 differing values on the WebM fixture (docs/video.md). */
static float filter_bicubic(float x) {
    const float a = -0.5f;
    if (x < 0.0f) x = -x;
    if (x < 1.0f) return fmaf(fmaf(a + 2.0f, x, -(a + 3.0f)) * x, x, 1.0f);
    if (x < 2.0f) return fmaf(fmaf(fmaf(a, x, -5.0f * a), x, 8.0f * a), x, -4.0f * a);
    return 0.0f;
}

static float filter_bilinear(float x) {
    if (x < 0.0f) x = -x;
    return x < 1.0f ? 1.0f - x : 0.0f;
}

/* Taps of one axis: for output o, inputs [first[o], first[o] + count[o]) with weights
** w[o * stride ...]. */
typedef struct axis_taps {
    int32_t *first, *count;
    float   *w;
    int32_t  stride;
} axis_taps;

static void taps_free(axis_taps *t) {
    free(t->first);
    free(t->count);
    free(t->w);
}

static tw_status taps_make(int32_t in, int32_t out, tw_resample filter, axis_taps *t) {
    memset(t, 0, sizeof *t);
    float (*fn)(float) = filter == TW_RESAMPLE_BILINEAR ? filter_bilinear : filter_bicubic;
    int interp = filter == TW_RESAMPLE_BILINEAR ? 2 : 4;
    /* area_pixel_compute_scale<float>: (float)in / out. */
    float scale = (float)in / (float)out;
    float support = scale >= 1.0f ? (float)(interp * 0.5 * scale) : (float)(interp * 0.5);
    t->stride = (int32_t)ceilf(support) * 2 + 1;
    t->first = tw_calloc((size_t)out, sizeof *t->first);
    t->count = tw_calloc((size_t)out, sizeof *t->count);
    t->w = tw_calloc((size_t)out * (size_t)t->stride, sizeof *t->w);
    if (!t->first || !t->count || !t->w) {
        taps_free(t);
        return TW_E_NOMEM;
    }
    float invscale = scale >= 1.0f ? (float)(1.0 / scale) : 1.0f;
    for (int32_t o = 0; o < out; o++) {
        float center = (float)(scale * (o + 0.5));
        int64_t lo = (int64_t)(center - support + 0.5);
        int64_t hi = (int64_t)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in) hi = in;
        int32_t n = (int32_t)(hi - lo);
        if (n > t->stride) n = t->stride;   /* cannot happen; guards the buffer */
        float *w = t->w + (size_t)o * t->stride, total = 0.0f;
        for (int32_t j = 0; j < n; j++) {
            /* (int64 - float) is float in C, + 0.5 and * invscale in double, as in torch. */
            float d = (float)(j + lo) - center;
            w[j] = fn((float)((d + 0.5) * invscale));
            total += w[j];
        }
        if (total != 0.0f)
            for (int32_t j = 0; j < n; j++) w[j] /= total;
        t->first[o] = (int32_t)lo;
        t->count[o] = n;
    }
    return TW_OK;
}

/* One resampling pass. hpass: [rows][in_w][3] -> [rows][out_w][3] along x; vpass: [in_h][w][3]
** -> [out_h][w][3] along y. Taps are summed left to right as torch's interpolate_aa_single_dim,
** acc = fma(pixel, weight, acc). Each is compiled twice on x86: with the FMA instruction enabled
** (chosen at run time when the CPU has it) and without (fmaf from libm: same result, slower). */
#define DEFINE_PASSES(SUFFIX, ATTR)                                                                  \
    ATTR static void hpass##SUFFIX(const axis_taps *t, const float *in, float *out, int32_t rows,    \
                                   int32_t in_w, int32_t out_w) {                                    \
        for (int32_t y = 0; y < rows; y++) {                                                         \
            const float *row = in + (size_t)y * in_w * 3;                                            \
            float *orow = out + (size_t)y * out_w * 3;                                               \
            for (int32_t x = 0; x < out_w; x++) {                                                    \
                const float *w = t->w + (size_t)x * t->stride;                                       \
                const float *p = row + (size_t)t->first[x] * 3;                                      \
                for (int c = 0; c < 3; c++) {                                                        \
                    float acc = p[c] * w[0];                                                         \
                    for (int32_t j = 1; j < t->count[x]; j++) acc = fmaf(p[j * 3 + c], w[j], acc);   \
                    orow[x * 3 + c] = acc;                                                           \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
    ATTR static void vpass##SUFFIX(const axis_taps *t, const float *in, float *out, int32_t in_h,    \
                                   int32_t width, int32_t out_h) {                                   \
        TW_UNUSED(in_h);                                                                             \
        size_t rs = (size_t)width * 3;                                                               \
        for (int32_t y = 0; y < out_h; y++) {                                                        \
            const float *w = t->w + (size_t)y * t->stride;                                           \
            const float *base = in + (size_t)t->first[y] * rs;                                       \
            float *orow = out + (size_t)y * rs;                                                      \
            for (size_t i = 0; i < rs; i++) {                                                        \
                float acc = base[i] * w[0];                                                          \
                for (int32_t j = 1; j < t->count[y]; j++) acc = fmaf(base[(size_t)j * rs + i], w[j], acc); \
                orow[i] = acc;                                                                       \
            }                                                                                        \
        }                                                                                            \
    }

DEFINE_PASSES(, )
#if defined(__x86_64__) && defined(__GNUC__)
DEFINE_PASSES(_fma, __attribute__((target("fma"))))
static bool cpu_has_fma(void) { return __builtin_cpu_supports("fma"); }
#else
#define hpass_fma hpass
#define vpass_fma vpass
static bool cpu_has_fma(void) { return false; }
#endif

#define run_pass(plain, fast, t, in, out, a, b, c) \
    (cpu_has_fma() ? fast(t, in, out, a, b, c) : plain(t, in, out, a, b, c))

tw_status tw_video_resize_frame(const uint8_t *src, int32_t sh, int32_t sw, uint8_t *dst, int32_t dh, int32_t dw,
                                tw_resample filter) {
    if (!src || !dst || sh <= 0 || sw <= 0 || dh <= 0 || dw <= 0)
        return tw_err(TW_E_ARG, "tw_video_resize_frame: bad arguments (%dx%d -> %dx%d)", sw, sh, dw, dh);
    if (filter != TW_RESAMPLE_BICUBIC && filter != TW_RESAMPLE_BILINEAR)
        return tw_err(TW_E_UNSUPPORTED, "video frame resize: resample %d is not supported (2, 3 are)", (int)filter);
    /* torchvision returns the frame untouched when it already has the target size. */
    if (sh == dh && sw == dw) {
        memcpy(dst, src, (size_t)sh * sw * 3);
        return TW_OK;
    }
    axis_taps th = {0}, tv = {0};
    tw_status s = TW_OK;
    float *in = tw_malloc((size_t)sh * sw * 3 * sizeof(float));
    float *mid = tw_malloc((size_t)sh * dw * 3 * sizeof(float));
    float *fin = tw_malloc((size_t)dh * dw * 3 * sizeof(float));
    if (!in || !mid || !fin) { s = TW_E_NOMEM; goto done; }
    for (size_t i = 0; i < (size_t)sh * sw * 3; i++) in[i] = src[i];

    /* Horizontal pass [sh][sw] -> [sh][dw] (skipped when the width does not change), then the
    ** vertical pass [sh][dw] -> [dh][dw]. */
    if (sw != dw) {
        if ((s = taps_make(sw, dw, filter, &th)) != TW_OK) goto done;
        run_pass(hpass, hpass_fma, &th, in, mid, sh, sw, dw);
    } else {
        memcpy(mid, in, (size_t)sh * sw * 3 * sizeof(float));
    }
    if (sh != dh) {
        if ((s = taps_make(sh, dh, filter, &tv)) != TW_OK) goto done;
        run_pass(vpass, vpass_fma, &tv, mid, fin, sh, dw, dh);
    } else {
        memcpy(fin, mid, (size_t)dh * dw * 3 * sizeof(float));
    }

    /* torchvision: clamp to [0, 255] (bicubic overshoots), torch.round (half to even), uint8. */
    for (size_t i = 0; i < (size_t)dh * dw * 3; i++) {
        float v = fin[i];
        if (!(v > 0.0f)) v = 0.0f;   /* also maps NaN to 0 */
        if (v > 255.0f) v = 255.0f;
        dst[i] = (uint8_t)nearbyintf(v);   /* default rounding mode: half to even */
    }
done:
    taps_free(&th);
    taps_free(&tv);
    free(in);
    free(mid);
    free(fin);
    return s;
}

tw_status tw_video_resize(const tw_video_preproc *p, const tw_video *v, uint8_t **out, int32_t *oh, int32_t *ow) {
    if (!p || !v || !out || !oh || !ow) return tw_err(TW_E_ARG, "tw_video_resize: NULL argument");
    *out = NULL;
    TW_TRY(tw_video_preproc_out_size(p, v->height, v->width, oh, ow));
    size_t fsz_in = (size_t)v->height * v->width * 3, fsz = (size_t)*oh * *ow * 3, total;
    if (tw_mul_overflow(fsz, (size_t)v->n_frames, &total))
        return tw_err(TW_E_ARG, "video resize: %d frames of %dx%d are too large", v->n_frames, *ow, *oh);
    uint8_t *buf = tw_malloc(total ? total : 1);
    if (!buf) return TW_E_NOMEM;
    for (int32_t f = 0; f < v->n_frames; f++) {
        tw_status s = tw_video_resize_frame(v->rgb + f * fsz_in, v->height, v->width, buf + f * fsz, *oh, *ow,
                                            p->resample);
        if (s != TW_OK) {
            free(buf);
            return s;
        }
    }
    *out = buf;
    return TW_OK;
}

tw_status tw_video_normalize(const tw_video_preproc *p, const uint8_t *rgb, int32_t n, int32_t h, int32_t w,
                             float *pixels) {
    if (!p || !rgb || !pixels) return tw_err(TW_E_ARG, "tw_video_normalize: NULL argument");
    /* transformers fuses rescale and normalise: mean and std become float32 tensors multiplied
    ** by 1/rescale_factor (in float32), then (x - mean) / std in float32. Rescale alone is
    ** x * rescale_factor; normalise alone uses mean and std as given. */
    float mean[3], stdv[3], scale = (float)p->rescale_factor;
    for (int c = 0; c < 3; c++) {
        mean[c] = (float)p->mean[c];
        stdv[c] = (float)p->std[c];
        if (p->do_rescale && p->do_normalize) {
            float k = (float)(1.0 / p->rescale_factor);
            mean[c] = mean[c] * k;
            stdv[c] = stdv[c] * k;
        }
    }
    size_t plane = (size_t)h * w;
    for (int32_t f = 0; f < n; f++) {
        const uint8_t *src = rgb + (size_t)f * plane * 3;
        float *dst = pixels + (size_t)f * plane * 3;
        for (int c = 0; c < 3; c++) {
            float *o = dst + (size_t)c * plane;
            for (size_t i = 0; i < plane; i++) {
                float x = src[i * 3 + c];
                if (p->do_normalize) o[i] = (x - mean[c]) / stdv[c];
                else if (p->do_rescale) o[i] = x * scale;
                else o[i] = x;
            }
        }
    }
    return TW_OK;
}

tw_status tw_video_preprocess(const tw_video_preproc *p, const tw_video *v, float **pixels, int32_t *oh, int32_t *ow) {
    if (!p || !v || !pixels || !oh || !ow) return tw_err(TW_E_ARG, "tw_video_preprocess: NULL argument");
    *pixels = NULL;
    uint8_t *rs = NULL;
    TW_TRY(tw_video_resize(p, v, &rs, oh, ow));
    size_t n = (size_t)v->n_frames * (size_t)*oh * (size_t)*ow * 3;
    float *px = tw_malloc((n ? n : 1) * sizeof(float));
    if (!px) {
        free(rs);
        return TW_E_NOMEM;
    }
    tw_status s = tw_video_normalize(p, rs, v->n_frames, *oh, *ow, px);
    free(rs);
    if (s != TW_OK) {
        free(px);
        return s;
    }
    *pixels = px;
    return TW_OK;
}
