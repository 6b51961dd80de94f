/*
** test_onevision.c — the LlavaOnevision (TowerVideo) vision paths against the video fixtures:
** OneVision images (36-entry grid, anyres_max_9 downscale with Python's float floor division:
** the 300x300 case) and video frames (SigLIP per frame, projector, 2x2 bilinear pooling, one
** trailing newline), starting from the reference pixel values; token counts; and the pixel
** values of OneVision images from the decoded RGB.
*/
#include "vision.h"
#include "testhelp.h"

#include <math.h>

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static tw_st_set *open_case(const char *name) {
    char path[600];
    snprintf(path, sizeof path, "%s/expected-video/%s/tensors.safetensors", th_fixtures(), name);
    tw_st_set *st = NULL;
    CHECK_OK(tw_st_open_file(path, &st), path);
    return st;
}

static void check_image(tw_model *m, const char *name, int32_t want_tokens) {
    tw_st_set *st = open_case(name);
    if (!st) return;
    const tw_tensor *rgb = tw_st_get(st, "image_rgb"), *pv = tw_st_get(st, "pixel_values"), *pk = tw_st_get(st, "packed");
    tw_image *im = NULL;
    CHECK_OK(tw_image_from_rgb(rgb->data, (int32_t)rgb->shape[1], (int32_t)rgb->shape[0], &im), "image");
    int32_t n_tok = 0, n_tiles = 0;
    CHECK_OK(tw_image_n_tokens(m, im->w, im->h, &n_tok), "n_tokens");
    CHECK(n_tok == want_tokens && pk->shape[0] == want_tokens, "%s: %d image tokens, expected %d", name, n_tok, want_tokens);
    float *px = NULL, *embd = NULL;
    CHECK_OK(tw_image_preprocess(m, im, &px, &n_tiles), "preprocess");
    CHECK(px && n_tiles == pv->shape[1], "%s: %d tiles", name, n_tiles);
    if (px && n_tiles == pv->shape[1]) {
        double d = max_abs_diff(px, pv->data, (size_t)tw_tensor_nelem(pv));
        CHECK(d == 0, "%s: pixel values differ by %g", name, d);
    }
    CHECK_OK(tw_image_encode(m, im, &embd, &n_tok), "encode");
    if (embd && n_tok == pk->shape[0]) {
        double d = max_abs_diff(embd, pk->data, (size_t)tw_tensor_nelem(pk));
        CHECK(d <= 1e-4, "%s: packed differs by %g", name, d);
        printf("%s: packed max abs diff %.3g (%d tokens)\n", name, d, n_tok);
    }
    free(px), free(embd);
    tw_image_free(im);
    tw_st_close(st);
}

static void check_video(tw_model *m, const char *name) {
    tw_st_set *st = open_case(name);
    if (!st) return;
    const tw_tensor *pv = tw_st_get(st, "pixel_values_videos"), *vf = tw_st_get(st, "video_features");
    const tw_tensor *pooled = tw_st_get(st, "video_pooled"), *nt = tw_st_get(st, "num_video_tokens");
    int32_t F = (int32_t)pv->shape[1], G = tw_vision_grid(m), N = G * G, C = m->vision.n_embd, H = m->text.n_embd;
    int32_t P = tw_video_pooled_side(m);
    CHECK(tw_video_token_count(m, F) == *(const int64_t *)nt->data, "%s: %d video tokens", name, tw_video_token_count(m, F));
    float *feat = malloc(sizeof(float) * (size_t)F * N * C), *proj = malloc(sizeof(float) * (size_t)F * N * H);
    float *out = malloc(sizeof(float) * (size_t)tw_video_token_count(m, F) * H);
    CHECK_OK(tw_siglip_forward(m, pv->data, F, feat, NULL), "siglip");
    CHECK_OK(tw_projector_forward(m, feat, (int64_t)F * N, proj), "projector");
    CHECK_OK(tw_pool_video(m, proj, F, out), "pool");
    double dp = max_abs_diff(out, pooled->data, (size_t)F * P * P * H);
    double df = max_abs_diff(out, vf->data, (size_t)tw_tensor_nelem(vf));
    CHECK(dp <= 1e-4 && df <= 1e-4, "%s: pooled differ by %g, features by %g", name, dp, df);
    printf("%s: video features max abs diff %.3g (%d frames)\n", name, df, F);
    free(feat), free(proj), free(out);
    tw_st_close(st);
}

int main(void) {
    tw_model_params mp = tw_model_default_params();
    tw_model *m = NULL;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tiny-towervideo", th_fixtures());
    CHECK_OK(tw_model_load_dir(dir, &mp, &m), dir);
    if (!m) return th_report();
    CHECK(m->max_num_patches == 9, "anyres_max_9 parsed (%d)", m->max_num_patches);
    check_image(m, "image_ov_200x100", 153);
    check_image(m, "image_and_video", 235);   /* 25x25 grid shrunk to 14x14, not floor's 15x15 */
    check_video(m, "video_synthetic_8f");
    check_video(m, "video_mp4_h264_8f");
    check_video(m, "video_webm_vp9_4f");
    check_video(m, "image_and_video");

    CHECK(tw_py_floordiv(25, 25.0 / 15.0) == 14.0, "python 25 // 1.666.. == 14");
    CHECK(tw_py_floordiv(7, 2) == 3.0 && tw_py_floordiv(-7, 2) == -4.0, "floordiv signs");
    tw_model_free(m);
    return th_report();
}
