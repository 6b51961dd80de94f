/*
** resample.c — Pillow-exact image resizing (Pillow's libImaging/Resample.c behaviour, written
** from its documented algorithm). Bit-exact pixels matter: the reference processor resizes with
** Pillow, and a one-level difference in a uint8 pixel moves the vision features.
**
** Algorithm, per axis: scale = in/out; filterscale = max(scale, 1) (antialiasing widens the
** kernel when downscaling); support = filter_support * filterscale; for output i the centre is
** (i + 0.5) * scale, the taps are x in [int(centre - support + 0.5), int(centre + support + 0.5))
** clipped to the image, weight f((x - centre + 0.5) / filterscale), normalised to sum 1 in
** double, then converted to fixed point with 22 fractional bits (rounded half away from zero).
** The horizontal pass runs first and writes 8-bit pixels; the vertical pass reads them. A pass
** whose size does not change is skipped.
*/
#include "image.h"

#include <math.h>
#include <stdlib.h>

#define PRECISION_BITS (32 - 8 - 2)

typedef struct {
    double (*f)(double x);
    double support;
} filter_def;

static double f_box(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }
static double f_bilinear(double x) {
    if (x < 0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}
static double f_bicubic(double x) {   /* Keys cubic, a = -0.5 */
    const double a = -0.5;
    if (x < 0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}
static double sinc(double x) {
    if (x == 0.0) return 1.0;
    x *= M_PI;
    return sin(x) / x;
}
static double f_hamming(double x) {
    if (x < 0) x = -x;
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x *= M_PI;
    return sin(x) / x * (0.54 + 0.46 * cos(x));
}
static double f_lanczos(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0; }

static bool filter_for(tw_resample r, filter_def *fd) {
    switch (r) {
    case TW_RESAMPLE_BOX: *fd = (filter_def){ f_box, 0.5 }; return true;
    case TW_RESAMPLE_BILINEAR: *fd = (filter_def){ f_bilinear, 1.0 }; return true;
    case TW_RESAMPLE_BICUBIC: *fd = (filter_def){ f_bicubic, 2.0 }; return true;
    case TW_RESAMPLE_HAMMING: *fd = (filter_def){ f_hamming, 1.0 }; return true;
    case TW_RESAMPLE_LANCZOS: *fd = (filter_def){ f_lanczos, 3.0 }; return true;
    default: return false;
    }
}

/* Fixed-point taps of one axis: bounds[2*i] = first source index, bounds[2*i+1] = tap count,
** kk[i*ksize + t] = weight. Returns ksize, or -1 on allocation failure. */
static int precompute(int32_t in, int32_t out, const filter_def *fd, int32_t **bounds_out, int32_t **kk_out) {
    double scale = (double)in / out, fscale = scale < 1.0 ? 1.0 : scale;
    double support = fd->support * fscale;
    int ksize = (int)ceil(support) * 2 + 1;
    int32_t *bounds = tw_calloc((size_t)out * 2, sizeof *bounds);
    int32_t *kk = tw_calloc((size_t)out * (size_t)ksize, sizeof *kk);
    double *w = tw_calloc((size_t)ksize, sizeof *w);
    if (!bounds || !kk || !w) {
        free(bounds), free(kk), free(w);
        return -1;
    }
    for (int32_t i = 0; i < out; i++) {
        double center = (i + 0.5) * scale, ss = 1.0 / fscale, ww = 0.0;
        int32_t xmin = (int32_t)(center - support + 0.5), xmax = (int32_t)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in) xmax = in;
        xmax -= xmin;
        for (int32_t x = 0; x < xmax; x++) {
            w[x] = fd->f((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        for (int32_t x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? w[x] / ww : w[x];
            kk[(size_t)i * ksize + x] = (int32_t)(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
        }
        bounds[2 * i] = xmin;
        bounds[2 * i + 1] = xmax;
    }
    free(w);
    *bounds_out = bounds;
    *kk_out = kk;
    return ksize;
}

static inline uint8_t clip8(int64_t v) {
    v >>= PRECISION_BITS;   /* arithmetic shift: negatives stay negative */
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* Pillow's NEAREST resize is its affine "scale" transform: the source position starts at half a
** step and is advanced by repeated addition (not (x + 0.5) * scale), which decides the rounding. */
static tw_status resize_nearest(const uint8_t *src, int32_t sw, int32_t sh, int32_t ch, uint8_t *dst, int32_t dw,
                                int32_t dh) {
    double ax = (double)sw / dw, ay = (double)sh / dh;
    int32_t *xin = tw_calloc((size_t)dw, sizeof *xin);
    if (!xin) return TW_E_NOMEM;
    double xo = ax * 0.5, yo = ay * 0.5;
    for (int32_t x = 0; x < dw; x++, xo += ax) xin[x] = xo < 0 ? -1 : (int32_t)xo;
    for (int32_t y = 0; y < dh; y++, yo += ay) {
        int32_t yi = yo < 0 ? -1 : (int32_t)yo;
        uint8_t *orow = dst + (size_t)y * dw * ch;
        if (yi < 0 || yi >= sh) {   /* Pillow leaves such rows black (fill) */
            memset(orow, 0, (size_t)dw * ch);
            continue;
        }
        for (int32_t x = 0; x < dw; x++) {
            if (xin[x] < 0 || xin[x] >= sw) memset(orow + (size_t)x * ch, 0, (size_t)ch);
            else memcpy(orow + (size_t)x * ch, src + ((size_t)yi * sw + xin[x]) * ch, (size_t)ch);
        }
    }
    free(xin);
    return TW_OK;
}

tw_status tw_resize_pil(const uint8_t *src, int32_t sw, int32_t sh, int32_t ch, uint8_t *dst, int32_t dw, int32_t dh,
                        tw_resample filter) {
    if (sw <= 0 || sh <= 0 || dw <= 0 || dh <= 0 || ch < 1 || ch > 4)
        return tw_err(TW_E_ARG, "resize: bad sizes %dx%d -> %dx%d (%d channels)", sw, sh, dw, dh, ch);
    if (sw == dw && sh == dh) {   /* Pillow returns a copy */
        memcpy(dst, src, (size_t)sw * sh * ch);
        return TW_OK;
    }
    if (filter == TW_RESAMPLE_NEAREST) return resize_nearest(src, sw, sh, ch, dst, dw, dh);
    filter_def fd;
    if (!filter_for(filter, &fd)) return tw_err(TW_E_UNSUPPORTED, "resize: unknown resample filter %d", (int)filter);

    int32_t *bh = NULL, *kh = NULL, *bv = NULL, *kv = NULL;
    int ksh = 0, ksv = 0;
    bool need_h = sw != dw, need_v = sh != dh;
    if (need_h && (ksh = precompute(sw, dw, &fd, &bh, &kh)) < 0) return TW_E_NOMEM;
    if (need_v && (ksv = precompute(sh, dh, &fd, &bv, &kv)) < 0) {
        free(bh), free(kh);
        return TW_E_NOMEM;
    }
    /* Horizontal pass over the source rows the vertical pass will read (all of them when only
    ** the width changes). */
    int32_t y0 = 0, y1 = sh;
    if (need_v) {
        y0 = bv[0];
        y1 = bv[2 * (dh - 1)] + bv[2 * (dh - 1) + 1];
    }
    const uint8_t *mid = src;
    uint8_t *tmp = NULL;
    int32_t mid_y0 = 0;
    if (need_h) {
        uint8_t *hout = need_v ? (tmp = tw_malloc((size_t)(y1 - y0) * dw * ch)) : dst;
        if (!hout) {
            free(bh), free(kh), free(bv), free(kv);
            return TW_E_NOMEM;
        }
        for (int32_t y = y0; y < y1; y++) {
            const uint8_t *row = src + (size_t)y * sw * ch;
            uint8_t *orow = hout + (size_t)(y - y0) * dw * ch;
            for (int32_t x = 0; x < dw; x++) {
                int32_t xmin = bh[2 * x], n = bh[2 * x + 1];
                const int32_t *k = kh + (size_t)x * ksh;
                for (int32_t c = 0; c < ch; c++) {
                    int64_t ss = 1 << (PRECISION_BITS - 1);
                    for (int32_t t = 0; t < n; t++) ss += (int64_t)row[(size_t)(xmin + t) * ch + c] * k[t];
                    orow[(size_t)x * ch + c] = clip8(ss);
                }
            }
        }
        mid = hout;
        mid_y0 = y0;
    }
    if (need_v) {
        int32_t mw = need_h ? dw : sw;
        for (int32_t y = 0; y < dh; y++) {
            int32_t ymin = bv[2 * y] - mid_y0, n = bv[2 * y + 1];
            const int32_t *k = kv + (size_t)y * ksv;
            uint8_t *orow = dst + (size_t)y * dw * ch;
            for (int32_t x = 0; x < mw * ch; x++) {
                int64_t ss = 1 << (PRECISION_BITS - 1);
                for (int32_t t = 0; t < n; t++) ss += (int64_t)mid[(size_t)(ymin + t) * mw * ch + x] * k[t];
                orow[x] = clip8(ss);
            }
        }
    }
    free(tmp);
    free(bh), free(kh), free(bv), free(kv);
    return TW_OK;
}
