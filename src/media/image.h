/*
** image.h — image preprocessing for LlavaNext-style "anyres" models: the tiling plan (best grid
** pinpoint, resized size, padding, token count) and Pillow-exact resampling.
**
** One plan is computed per image and used by everything downstream — the prompt builder (how
** many <image> tokens), the pixel path (which tiles) and the packing of features (unpadding) —
** so the token count cannot disagree with what the model packs (a known failure of other
** engines that compute it twice).
*/
#ifndef TW_IMAGE_H
#define TW_IMAGE_H

#include "tw_internal.h"

/* Pillow's filter numbering, which preprocessor_config.json's "resample" uses. */
typedef enum tw_resample {
    TW_RESAMPLE_NEAREST = 0,
    TW_RESAMPLE_LANCZOS = 1,
    TW_RESAMPLE_BILINEAR = 2,
    TW_RESAMPLE_BICUBIC = 3,
    TW_RESAMPLE_BOX = 4,
    TW_RESAMPLE_HAMMING = 5,
} tw_resample;

/* Resizes an 8-bit interleaved image (channels 1..4) exactly as Pillow's Image.resize does:
** separable, horizontal pass first into an 8-bit intermediate, fixed-point coefficients with 22
** fractional bits, antialiased support when downscaling; NEAREST as Pillow's affine nearest.
** src: [sh][sw][ch], dst: [dh][dw][ch]. */
tw_status tw_resize_pil(const uint8_t *src, int32_t sw, int32_t sh, int32_t ch,
                        uint8_t *dst, int32_t dw, int32_t dh, tw_resample filter);

/* The anyres plan of one image (all sizes in pixels unless said otherwise). */
typedef struct tw_anyres_plan {
    int32_t orig_h, orig_w;        /* image_sizes                                            */
    int32_t best_h, best_w;        /* chosen pinpoint                                        */
    int32_t resized_h, resized_w;  /* aspect-preserving resize before padding                */
    int32_t pad_top, pad_left;     /* centred zero padding (odd pixel at bottom/right)       */
    int32_t rows, cols;            /* tile grid                                              */
    int32_t n_tiles;               /* rows*cols + 1 (the base thumbnail comes first)        */
    int32_t grid;                  /* features per tile side: tile_size / patch_size         */
    int32_t feat_h, feat_w;        /* unpadded feature grid (rows*grid x cols*grid cropped)  */
    int32_t crop_top, crop_left;   /* feature rows / columns cropped from the top / left     */
    int32_t out_h, out_w;          /* grid after OneVision's anyres_max downscale (else feat) */
    int32_t n_tokens;              /* grid^2 (base) + out_h*out_w + out_h (newlines)         */
} tw_anyres_plan;

/* pinpoints: [n][2] (height, width) in the checkpoint's order. max_patches: OneVision's
** "anyres_max_N" (the unpadded grid is bilinearly shrunk when it exceeds N tiles' worth by more
** than 10 %); 0 for LlavaNext. */
tw_status tw_anyres_plan_make(int32_t h, int32_t w, const int32_t *pinpoints, int32_t n_pinpoints,
                              int32_t tile_size, int32_t patch_size, int32_t max_patches, tw_anyres_plan *out);

/* Python's int(round(x, 7)) for x >= 0, as transformers' unpad rounding uses it. */
int64_t tw_py_int_round7(double x);
/* Python's float floor division a // b (fmod based: 25 // (5/3) is 14.0, not floor(25/(5/3)) = 15). */
double tw_py_floordiv(double a, double b);

/* What preprocessor_config.json asks for (LlavaNextImageProcessor). */
typedef struct tw_preproc {
    int32_t     tile;             /* crop_size = size.shortest_edge = vision image_size       */
    int32_t     patch;            /* vision patch_size                                        */
    tw_resample resample;
    bool        do_rescale, do_normalize;
    double      rescale_factor;   /* 1/255                                                    */
    float       mean[3], std[3];
} tw_preproc;

/* Reads dir/preprocessor_config.json (absent: SigLIP defaults) and checks it against the
** vision tower's tile size. */
tw_status tw_preproc_load(const char *dir, int32_t image_size, int32_t patch_size, tw_preproc *out);
/* The same from a source's preprocessor_config.json (a directory or a packed checkpoint). */
tw_status tw_preproc_load_src(const tw_src *src, int32_t image_size, int32_t patch_size, tw_preproc *out);

/* Builds the n_tiles normalised tiles of one RGB image: out [n_tiles][3][tile][tile] f32,
** base thumbnail first, then the grid row-major; float32(u8 * rescale_factor computed in double),
** then (x - mean) / std in f32, as LlavaNextImageProcessor does. */
tw_status tw_anyres_pixels(const uint8_t *rgb, const tw_anyres_plan *plan, const tw_preproc *pp, float *out);

/* A decoded image (tower.h's tw_image). */
struct tw_image {
    int32_t  w, h;
    uint8_t *rgb;   /* [h][w][3] */
};

#endif
