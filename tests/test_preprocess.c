/*
** test_preprocess.c — anyres plan and Pillow-exact pixels against the fixtures: for every image
** case, the plan (best pinpoint, resized size, padding, grid, token count) equals case.json and
** pixel_values equal the reference bit for bit. Also the worked token counts of SPEC section 5
** for the real 384-px TowerVision settings, and Python's int(round(x, 7)).
*/
#include "image.h"
#include "safetensors.h"
#include "testhelp.h"

#include <math.h>

static const int32_t tiny_pinpoints[14][2] = {
    { 60, 60 },   { 60, 120 }, { 120, 60 },  { 60, 180 },  { 180, 60 },  { 60, 240 },  { 120, 120 },
    { 240, 60 }, { 60, 300 }, { 300, 60 }, { 60, 360 }, { 120, 180 }, { 180, 120 }, { 360, 60 },
};

static int64_t jint(const json_t *o, const char *key, int idx) {
    const json_t *v = json_object_get(o, key);
    if (idx >= 0) v = json_array_get(v, (size_t)idx);
    return json_integer_value(v);
}

static void check_case(const char *name) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/expected/%s", th_fixtures(), name);
    snprintf(path, sizeof path, "%s/case.json", dir);
    json_t *cj = NULL;
    CHECK_OK(tw_json_load(path, &cj), path);
    if (!cj) return;
    snprintf(path, sizeof path, "%s/tensors.safetensors", dir);
    tw_st_set *st = NULL;
    CHECK_OK(tw_st_open_file(path, &st), path);
    if (!st) {
        json_decref(cj);
        return;
    }
    const json_t *images = json_object_get(cj, "images");
    const tw_tensor *pv = tw_st_get(st, "pixel_values");   /* [N, max_tiles, 3, 60, 60] */
    for (size_t j = 0; j < json_array_size(images); j++) {
        const json_t *im = json_array_get(images, j);
        int32_t h = (int32_t)jint(im, "height", -1), w = (int32_t)jint(im, "width", -1);
        tw_anyres_plan p;
        CHECK_OK(tw_anyres_plan_make(h, w, &tiny_pinpoints[0][0], 14, 60, 14, 0, &p), "plan");
        CHECK(p.best_h == jint(im, "best_resolution_hw", 0) && p.best_w == jint(im, "best_resolution_hw", 1),
              "%s: best %dx%d", name, p.best_h, p.best_w);
        CHECK(p.resized_h == jint(im, "resized_hw_before_pad", 0) && p.resized_w == jint(im, "resized_hw_before_pad", 1),
              "%s: resized %dx%d", name, p.resized_h, p.resized_w);
        CHECK(p.pad_top == jint(im, "pad_top_left", 0) && p.pad_left == jint(im, "pad_top_left", 1), "%s: pad %d,%d", name,
              p.pad_top, p.pad_left);
        CHECK(p.rows == jint(im, "grid_rows_cols", 0) && p.cols == jint(im, "grid_rows_cols", 1), "%s: grid", name);
        CHECK(p.n_tiles == jint(im, "num_tiles_incl_base", -1), "%s: tiles %d", name, p.n_tiles);
        CHECK(p.n_tokens == jint(im, "num_image_tokens", -1), "%s: tokens %d, expected %lld", name, p.n_tokens,
              (long long)jint(im, "num_image_tokens", -1));

        char rgbname[32];
        snprintf(rgbname, sizeof rgbname, json_array_size(images) > 1 ? "image_rgb_%zu" : "image_rgb", j);
        const tw_tensor *rgb = tw_st_get(st, rgbname);
        CHECK(rgb && pv, "%s: tensors %s / pixel_values present", name, rgbname);
        if (!rgb || !pv) continue;
        size_t tile_floats = 3 * 60 * 60;
        float *out = malloc(sizeof(float) * tile_floats * (size_t)p.n_tiles);
        tw_preproc pp;
        char mdir[512];
        snprintf(mdir, sizeof mdir, "%s/tiny-towervision", th_fixtures());
        CHECK_OK(tw_preproc_load(mdir, 60, 14, &pp), "preprocessor_config.json");
        CHECK(pp.resample == TW_RESAMPLE_BICUBIC && pp.tile == 60, "preproc fields");
        CHECK_OK(tw_anyres_pixels(rgb->data, &p, &pp, out), "pixels");
        const float *ref = (const float *)pv->data + j * (size_t)pv->shape[1] * tile_floats;
        size_t diff = 0;
        for (size_t i = 0; i < tile_floats * (size_t)p.n_tiles; i++) diff += out[i] != ref[i];
        CHECK(diff == 0, "%s image %zu: %zu pixel values differ from the reference", name, j, diff);
        free(out);
    }
    tw_st_close(st);
    json_decref(cj);
}


/* Every resample filter preprocessor_config.json may name, against Pillow 9.4's Image.resize:
** FNV-1a hashes of Pillow's output for a synthetic 53x37 RGB image (made by
** /usr/bin/python3 with python3-pil from the same formula as below). */
static void check_filters(void) {
    enum { W = 53, H = 37 };
    static uint8_t src[H][W][3];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) src[y][x][c] = (uint8_t)((x * 37 + y * 101 + c * 53 + x * y * 7 + ((x ^ y) & 5) * 40) % 256);
    static const struct { int filter, w, h; uint64_t fnv; } want[] = {
        { 0, 20, 11, 0xa4e251dde13abd5dULL },
        { 0, 120, 90, 0x7c00587824d09e79ULL },
        { 0, 53, 80, 0xa3a7f0ab3e7c1eb9ULL },
        { 0, 7, 37, 0x6c49c7253ba6cfecULL },
        { 0, 1, 1, 0x5d214a1a69703344ULL },
        { 1, 20, 11, 0x07b498c26e460e27ULL },
        { 1, 120, 90, 0x5eff0e01417c9c81ULL },
        { 1, 53, 80, 0xf3acd1a048a493ffULL },
        { 1, 7, 37, 0xfa1f358942a0a050ULL },
        { 1, 1, 1, 0xa32734196f09ea94ULL },
        { 2, 20, 11, 0xaceef1ca1dfe7b82ULL },
        { 2, 120, 90, 0xfbf85716b4d38335ULL },
        { 2, 53, 80, 0xcf1301d8c5cf895aULL },
        { 2, 7, 37, 0xade5e2ca6c974bc4ULL },
        { 2, 1, 1, 0xaddcd21975afe20eULL },
        { 3, 20, 11, 0xe2faff3c18b7612bULL },
        { 3, 120, 90, 0x28c72b3413601604ULL },
        { 3, 53, 80, 0x4fc48c0a9ffc14a4ULL },
        { 3, 7, 37, 0xab79695d400da9abULL },
        { 3, 1, 1, 0xaddc5d1975af1b3fULL },
        { 4, 20, 11, 0x578d4d1c0803b7f3ULL },
        { 4, 120, 90, 0x7c00587824d09e79ULL },
        { 4, 53, 80, 0xa3a7f0ab3e7c1eb9ULL },
        { 4, 7, 37, 0x821f59b21fc5e5e7ULL },
        { 4, 1, 1, 0xa32434196f07b4bdULL },
        { 5, 20, 11, 0x7380bffbf93e3addULL },
        { 5, 120, 90, 0x6d164f112d9b4472ULL },
        { 5, 53, 80, 0x3464d217b14c2aacULL },
        { 5, 7, 37, 0xde624b85c3e76404ULL },
        { 5, 1, 1, 0xaddc5d1975af1b3fULL },
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        size_t n = (size_t)want[i].w * want[i].h * 3;
        uint8_t *out = malloc(n);
        CHECK_OK(tw_resize_pil(&src[0][0][0], W, H, 3, out, want[i].w, want[i].h, (tw_resample)want[i].filter), "resize");
        uint64_t h = 0xcbf29ce484222325ULL;
        for (size_t k = 0; k < n; k++) h = (h ^ out[k]) * 0x100000001b3ULL;
        CHECK(h == want[i].fnv, "filter %d, %dx%d: pixels differ from Pillow's", want[i].filter, want[i].w, want[i].h);
        free(out);
    }
}

int main(void) {
    check_filters();
    const char *cases[] = { "img_60x60", "img_50x80", "img_200x100", "img_300x170", "img_13x400", "two_images" };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(cases[i]);

    /* SPEC section 5, real TowerVision pinpoints (tile 384, patch 14): (h, w) -> tokens */
    static const int32_t real[14][2] = {
        { 384, 384 },  { 384, 768 },  { 768, 384 },  { 384, 1152 }, { 1152, 384 }, { 384, 1536 }, { 768, 768 },
        { 1536, 384 }, { 384, 1920 }, { 1920, 384 }, { 384, 2304 }, { 768, 1152 }, { 1152, 768 }, { 2304, 384 },
    };
    static const int32_t worked[][3] = {
        { 384, 384, 1485 },  { 224, 224, 1485 },   { 480, 640, 2929 },  { 1000, 1000, 3699 }, { 500, 2000, 3672 },
        { 768, 1024, 4725 }, { 1080, 1920, 4501 }, { 1200, 800, 5184 }, { 3000, 4000, 4725 },
    };
    for (size_t i = 0; i < sizeof worked / sizeof worked[0]; i++) {
        tw_anyres_plan p;
        CHECK_OK(tw_anyres_plan_make(worked[i][0], worked[i][1], &real[0][0], 14, 384, 14, 0, &p), "plan");
        CHECK(p.n_tokens == worked[i][2], "%dx%d: %d tokens, SPEC says %d", worked[i][0], worked[i][1], p.n_tokens,
              worked[i][2]);
    }
    /* extreme sizes never produce an empty resize or a negative grid */
    const int32_t extremes[][2] = { { 1, 1 }, { 1, 5000 }, { 5000, 1 }, { 3, 1000 }, { 10000, 10000 } };
    for (size_t i = 0; i < sizeof extremes / sizeof extremes[0]; i++) {
        tw_anyres_plan p;
        CHECK_OK(tw_anyres_plan_make(extremes[i][0], extremes[i][1], &real[0][0], 14, 384, 14, 0, &p), "plan");
        CHECK(p.resized_h >= 1 && p.resized_w >= 1 && p.feat_h >= 0 && p.feat_w >= 0 && p.n_tokens >= 729,
              "%dx%d: plan %dx%d feat %dx%d", extremes[i][0], extremes[i][1], p.resized_h, p.resized_w, p.feat_h,
              p.feat_w);
    }

    /* int(round(x, 7)): values a hair below an integer round up, others truncate */
    CHECK(tw_py_int_round7(26.99999999) == 27, "round7 up");
    CHECK(tw_py_int_round7(26.9999) == 26, "round7 trunc");
    CHECK(tw_py_int_round7(27.0) == 27, "round7 exact");
    CHECK(tw_py_int_round7(0.00000004) == 0, "round7 small");
    return th_report();
}
