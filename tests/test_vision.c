/*
** test_vision.c — SigLIP, projector and packing against the fixtures: starting from the
** reference pixel_values of every image case, the hidden states of every SigLIP layer, the
** selected features, the projected features and the packed sequence (unpadding + newlines) agree
** within the README's tolerances (1e-4 abs), and the packed length equals the planned tokens.
*/
#include "vision.h"
#include "testhelp.h"
#include "ckpt_variants.h"

#include <math.h>

static const int32_t tiny_pinpoints[14][2] = {
    { 60, 60 },   { 60, 120 }, { 120, 60 },  { 60, 180 },  { 180, 60 },  { 60, 240 },  { 120, 120 },
    { 240, 60 }, { 60, 300 }, { 300, 60 }, { 60, 360 }, { 120, 180 }, { 180, 120 }, { 360, 60 },
};

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static void check_case(tw_model *m, const char *name, int n_images) {
    char path[600];
    snprintf(path, sizeof path, "%s/expected/%s/tensors.safetensors", th_fixtures(), name);
    tw_st_set *st = NULL;
    CHECK_OK(tw_st_open_file(path, &st), path);
    if (!st) return;
    const tw_tensor *pv = tw_st_get(st, "pixel_values"), *sizes = tw_st_get(st, "image_sizes");
    int32_t G = tw_vision_grid(m), N = G * G, C = m->vision.n_embd, H = m->text.n_embd, L = m->vision.n_layer;
    size_t tile_floats = 3 * (size_t)m->vision.image_size * m->vision.image_size;
    for (int j = 0; j < n_images; j++) {
        char suf[16] = "";
        if (n_images > 1) snprintf(suf, sizeof suf, "_%d", j);
        char nm[64];
        const int64_t *hw = (const int64_t *)sizes->data + 2 * j;
        tw_anyres_plan p;
        CHECK_OK(tw_anyres_plan_make((int32_t)hw[0], (int32_t)hw[1], &tiny_pinpoints[0][0], 14, m->vision.image_size,
                                     m->vision.patch_size, 0, &p), "plan");
        const float *pix = (const float *)pv->data + (size_t)j * pv->shape[1] * tile_floats;
        float *feat = malloc(sizeof(float) * (size_t)p.n_tiles * N * C);
        float *hid = malloc(sizeof(float) * (size_t)(L + 1) * p.n_tiles * N * C);
        float *proj = malloc(sizeof(float) * (size_t)p.n_tiles * N * H);
        float *packed = malloc(sizeof(float) * (size_t)p.n_tokens * H);
        CHECK_OK(tw_siglip_forward(m, pix, p.n_tiles, feat, hid), "siglip");
        snprintf(nm, sizeof nm, "vision_hidden_states%s", suf);
        const tw_tensor *rh = tw_st_get(st, nm);
        CHECK(rh && tw_tensor_nelem(rh) == (int64_t)(L + 1) * p.n_tiles * N * C, "%s: %s shape", name, nm);
        if (rh) {
            double d = max_abs_diff(hid, rh->data, (size_t)tw_tensor_nelem(rh));
            CHECK(d <= 1e-4, "%s: vision hidden states max diff %g", name, d);
            printf("%s%s: vision hidden max abs diff %.3g\n", name, suf, d);
        }
        snprintf(nm, sizeof nm, "vision_selected%s", suf);
        const tw_tensor *rs = tw_st_get(st, nm);
        if (rs) CHECK(max_abs_diff(feat, rs->data, (size_t)tw_tensor_nelem(rs)) <= 1e-4, "%s: selected", name);
        CHECK_OK(tw_projector_forward(m, feat, (int64_t)p.n_tiles * N, proj), "projector");
        snprintf(nm, sizeof nm, "projected%s", suf);
        const tw_tensor *rp = tw_st_get(st, nm);
        if (rp) {
            double d = max_abs_diff(proj, rp->data, (size_t)tw_tensor_nelem(rp));
            CHECK(d <= 1e-4, "%s: projected max diff %g", name, d);
        }
        CHECK_OK(tw_pack_image(m, &p, proj, packed), "pack");
        snprintf(nm, sizeof nm, "packed%s", suf);
        const tw_tensor *rk = tw_st_get(st, nm);
        CHECK(rk && rk->shape[0] == p.n_tokens, "%s: packed has %lld rows, plan says %d", name,
              rk ? (long long)rk->shape[0] : -1LL, p.n_tokens);
        if (rk && rk->shape[0] == p.n_tokens) {
            double d = max_abs_diff(packed, rk->data, (size_t)tw_tensor_nelem(rk));
            CHECK(d <= 1e-4, "%s: packed max diff %g", name, d);
            printf("%s%s: packed max abs diff %.3g (%d tokens)\n", name, suf, d, p.n_tokens);
        }
        free(feat), free(hid), free(proj), free(packed);
    }
    tw_st_close(st);
}


/* Checkpoints that are not in ../shared: the legacy key layout in 3 shards with F32 weights, and
** other vision_feature_layer values (-2, 1, 0 = the embeddings); the selected features must be
** the reference's hidden state of that layer. */
static void check_variants(void) {
    char path[600];
    snprintf(path, sizeof path, "%s/expected/img_200x100/tensors.safetensors", th_fixtures());
    tw_st_set *st = NULL;
    CHECK_OK(tw_st_open_file(path, &st), path);
    if (!st) return;
    const tw_tensor *pv = tw_st_get(st, "pixel_values"), *rh = tw_st_get(st, "vision_hidden_states");
    char src[512];
    snprintf(src, sizeof src, "%s/tiny-towervision", th_fixtures());
    static const struct { const char *layer; int legacy, shards, dtype; int want; } v[] = {
        { NULL, 1, 3, CV_F32, 3 }, { "-2", 0, 0, CV_KEEP, 2 }, { "1", 1, 2, CV_KEEP, 1 }, { "0", 0, 0, CV_MIX, 0 },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        cv_opts o = cv_default();
        o.legacy = v[i].legacy;
        o.n_shards = v[i].shards;
        o.dtype = v[i].dtype;
        if (v[i].layer) {
            o.set_key = "vision_feature_layer";
            o.set_json = v[i].layer;
        }
        char *dir = cv_make(src, &o);
        CHECK(dir != NULL, "variant %zu made", i);
        if (!dir) continue;
        tw_model_params mp = tw_model_default_params();
        tw_model *m = NULL;
        CHECK_OK(tw_model_load_dir(dir, &mp, &m), dir);
        if (m) {
            int32_t n_tiles = 7, N = 16, C = m->vision.n_embd;   /* 200x100: 2x3 grid + base */
            size_t per = (size_t)n_tiles * N * C;
            float *feat = malloc(sizeof(float) * per);
            CHECK_OK(tw_siglip_forward(m, pv->data, n_tiles, feat, NULL), "siglip");
            double d = max_abs_diff(feat, (const float *)rh->data + (size_t)v[i].want * per, per);
            CHECK(d <= 1e-4, "variant %zu (layer %s): selected features differ from hidden_states[%d] by %g", i,
                  v[i].layer ? v[i].layer : "-1", v[i].want, d);
            free(feat);
            tw_model_free(m);
        }
        cv_remove(dir);
    }
    tw_st_close(st);
}

/* Odd sizes (1 or 3 pixels tall or wide, extreme ratios): the encoder packs exactly the number of
** rows the plan announced to the prompt builder, and nothing crashes. */
static void check_odd_sizes(tw_model *m) {
    static const int32_t sizes[][2] = { { 1, 1 }, { 1, 300 }, { 300, 1 }, { 3, 200 }, { 200, 3 }, { 13, 400 }, { 999, 7 } };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int32_t w = sizes[i][0], h = sizes[i][1];
        uint8_t *rgb = malloc((size_t)w * h * 3);
        for (size_t k = 0; k < (size_t)w * h * 3; k++) rgb[k] = (uint8_t)(k * 31);
        tw_image *im = NULL;
        CHECK_OK(tw_image_from_rgb(rgb, w, h, &im), "wrap");
        int32_t want = -1, got = -2;
        float *e = NULL;
        CHECK_OK(tw_image_n_tokens(m, w, h, &want), "count");
        CHECK_OK(tw_image_encode(m, im, &e, &got), "encode");
        CHECK(want == got && want > 0, "%dx%d: the plan announced %d tokens, the encoder packed %d", w, h, want, got);
        free(e);
        free(rgb);
        tw_image_free(im);
    }
}

int main(void) {
    tw_model_params mp = tw_model_default_params();
    tw_model *m = NULL;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tiny-towervision", th_fixtures());
    CHECK_OK(tw_model_load_dir(dir, &mp, &m), dir);
    if (!m) return th_report();
    const char *cases[] = { "img_60x60", "img_50x80", "img_200x100", "img_300x170", "img_13x400" };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(m, cases[i], 1);
    check_case(m, "two_images", 2);
    check_odd_sizes(m);
    tw_model_free(m);
    check_variants();
    return th_report();
}
