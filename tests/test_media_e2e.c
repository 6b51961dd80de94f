/*
** test_media_e2e.c — images and video through the public API only, from the input files to the
** generated tokens, on both tiny checkpoints: decode (or wrap) the media, encode them, expand the
** placeholders of the case's prompt, evaluate, and compare with the reference: input_ids
** identical, last-position logits within 3e-3 and argmax identical at every position, and the 16
** greedy tokens identical. Covers LlavaNext images (one and two per prompt) and LlavaOnevision
** video (decoded with FFmpeg, or frames already in memory), OneVision images and image + video together.
** Apart from wrapping in-memory frames, only the public API is used.
**
** Every case also goes through the multimodal prompt API (tw_prompt) three ways — chat parts
** (media parts + the question), the user text with its placeholders, and the rendered prompt
** raw — which must give the reference's input_ids, the same media rows and logits bit for bit as
** the lower-level calls above, and the reference's greedy tokens through tw_prompt_generate.
*/
#include "tower.h"
#include "safetensors.h"
#include "video.h"   /* tw_video_from_rgb: frames already in memory */
#include "testhelp.h"

#include <math.h>

typedef struct {
    const char *set;      /* "expected" or "expected-video" */
    const char *name;
    const char *images[2];/* files relative to the fixtures dir, or "rgb" for the tensor image_rgb */
    const char *video;    /* relative to the media dir (../media from the fixtures), "rgb" (the
                          ** decoded frames), "resized" (the reference's resized frames), or NULL */
    int32_t     n_frames;
    bool        pixel_ties; /* the frame resize may differ from torch by one level where a value
                            ** is within float noise of .5 (docs/video.md): logits then move by up
                            ** to ~2e-2 on this random model, so only the tokens are compared */
} media_case;

static tw_model *load(const char *dir_name) {
    tw_model_params p = tw_model_default_params();
    p.final_softcap = 0;   /* the fixtures store logits without it */
    tw_model *m = NULL;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", th_fixtures(), dir_name);
    CHECK_OK(tw_model_load(dir, &p, &m), dir);
    return m;
}

/* The same case through tw_prompt: ids, rows and logits identical to the lower-level path
** (embd [rows][H], logits [n_ids][V]), greedy tokens the reference's. */
static void prompt_paths(tw_model *m, const media_case *c, json_t *cj, tw_st_set *st, tw_image *const *ims, size_t n_img,
                         const tw_video *v, const float *embd, size_t rows, const float *logits) {
    const char *prompt = json_string_value(json_object_get(cj, "prompt"));
    const char *user = json_string_value(json_object_get(cj, "user_text"));
    char ubuf[512] = "";
    if (!user) {   /* cases without it: the user turn of the rendered prompt */
        const char *a = strstr(prompt, "<start_of_turn>user\n"), *b = a ? strstr(a, "<end_of_turn>") : NULL;
        if (a && b) snprintf(ubuf, sizeof ubuf, "%.*s", (int)(b - a - 20), a + 20);
        user = ubuf;
    }
    const char *question = user;   /* the user text without its leading placeholder lines */
    for (;;) {
        if (!strncmp(question, "<image>\n", 8)) question += 8;
        else if (!strncmp(question, "<video>\n", 8)) question += 8;
        else break;
    }
    tw_media media[3];
    tw_part parts[4];
    size_t n_media = 0;
    for (size_t i = 0; i < n_img; i++) {
        media[n_media++] = (tw_media){ TW_MEDIA_IMAGE, ims[i], NULL };
        parts[i] = (tw_part){ TW_PART_IMAGE, NULL, ims[i], NULL };
    }
    if (v) {
        media[n_media++] = (tw_media){ TW_MEDIA_VIDEO, NULL, v };
        parts[n_img] = (tw_part){ TW_PART_VIDEO, NULL, NULL, v };
    }
    parts[n_media] = (tw_part){ TW_PART_TEXT, question, NULL, NULL };
    tw_chat_message msg = { "user", parts, n_media + 1 };
    tw_prompt *p[3] = { 0 };
    CHECK_OK(tw_prompt_from_chat(m, &msg, 1, 1, &p[0]), "prompt from chat parts");
    CHECK_OK(tw_prompt_from_text(m, NULL, user, strlen(user), media, n_media, 0, &p[1]), "prompt from user text");
    CHECK_OK(tw_prompt_from_text(m, NULL, prompt, strlen(prompt), media, n_media, TW_PROMPT_RAW, &p[2]), "raw prompt");
    const tw_tensor *ref_ids = tw_st_get(st, "input_ids");
    size_t n_ids = (size_t)ref_ids->shape[0];
    for (int k = 0; k < 3; k++) {
        if (!p[k]) continue;
        CHECK(strcmp(tw_prompt_text(p[k]), prompt) == 0, "%s: route %d renders \"%s\"", c->name, k, tw_prompt_text(p[k]));
        bool same = tw_prompt_n_tokens(p[k]) == n_ids;
        for (size_t i = 0; same && i < n_ids; i++) same = tw_prompt_tokens(p[k])[i] == ((const int64_t *)ref_ids->data)[i];
        CHECK(same, "%s: route %d: tokens differ from the reference's input_ids (%zu vs %zu)", c->name, k,
              tw_prompt_n_tokens(p[k]), n_ids);
        CHECK(tw_prompt_n_media(p[k]) == n_media, "%s: route %d: %zu media", c->name, k, tw_prompt_n_media(p[k]));
    }
    if (!p[0]) goto done;
    /* rows: identical to the lower-level calls, and shared through the cache by the other routes */
    tw_media_cache *cache = NULL;
    CHECK_OK(tw_media_cache_new(m, 0, &cache), "cache");
    CHECK_OK(tw_prompt_encode(p[0], cache, NULL), "encode");
    const float *pe = NULL;
    size_t pr = 0;
    CHECK_OK(tw_prompt_embd(p[0], &pe, &pr), "embd");
    size_t H = (size_t)tw_model_n_embd(m), V = (size_t)tw_model_n_vocab(m);
    CHECK(pr == rows && (!rows || memcmp(pe, embd, rows * H * sizeof(float)) == 0),
          "%s: prompt rows differ from tw_images_encode / tw_video_encode", c->name);
    tw_media_cache_stats cs;
    if (p[1]) CHECK_OK(tw_prompt_encode(p[1], cache, NULL), "encode from cache");
    tw_media_cache_get_stats(cache, &cs);
    CHECK(cs.misses == n_media && cs.hits == n_media && cs.entries == n_media,
          "%s: cache %llu misses %llu hits %zu entries for %zu media", c->name, (unsigned long long)cs.misses,
          (unsigned long long)cs.hits, cs.entries, n_media);
    /* logits: bit-identical to tw_seq_eval with the same rows */
    tw_seq *s = NULL;
    CHECK_OK(tw_seq_new(m, 0, &s), "seq");
    float *lg = malloc(sizeof(float) * n_ids * V);
    tw_eval_opts eo = { .logits = lg };
    size_t reused = 99;
    if (s) CHECK_OK(tw_prompt_eval(s, p[1], cache, &eo, &reused), "prompt eval");
    CHECK(reused == 0 && memcmp(lg, logits, sizeof(float) * n_ids * V) == 0,
          "%s: prompt eval logits differ from tw_seq_eval's (reused %zu)", c->name, reused);
    /* greedy: the whole prompt is in the cache, so only its last token is evaluated again */
    tw_gen_params gp = tw_gen_default_params();
    gp.max_new_tokens = 16;
    gp.ignore_model_stops = 1;
    tw_gen_result r = { 0 };
    if (s) CHECK_OK(tw_prompt_generate(s, p[2], cache, &gp, NULL, NULL, &r, &reused), "prompt generate");
    const tw_tensor *gen = tw_st_get(st, "generated_ids");
    bool same = r.n_ids == 16 && reused == n_ids - 1;
    for (size_t i = 0; same && i < 16; i++) same = r.ids[i] == ((const int64_t *)gen->data)[i];
    CHECK(same, "%s: tw_prompt_generate: greedy tokens differ from the reference (reused %zu of %zu)", c->name, reused,
          n_ids);
    tw_gen_result_free(&r);
    free(lg);
    tw_seq_free(s);
    tw_media_cache_free(cache);
done:
    for (int k = 0; k < 3; k++) tw_prompt_free(p[k]);
}

static void run_case(tw_model *m, const media_case *c) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s/%s/tensors.safetensors", th_fixtures(), c->set, c->name);
    tw_st_set *st = NULL;
    CHECK_OK(tw_st_open_file(path, &st), path);
    snprintf(path, sizeof path, "%s/%s/%s/case.json", th_fixtures(), c->set, c->name);
    json_t *cj = NULL;
    CHECK_OK(tw_json_load(path, &cj), path);
    if (!st || !cj) goto out;

    /* media in prompt order: images first in these prompts, then the video */
    tw_image *ims[2] = { 0 };
    size_t n_img = 0;
    for (; n_img < 2 && c->images[n_img]; n_img++) {
        if (strcmp(c->images[n_img], "rgb") == 0) {
            const tw_tensor *t = tw_st_get(st, "image_rgb");
            CHECK_OK(tw_image_from_rgb(t->data, (int32_t)t->shape[1], (int32_t)t->shape[0], &ims[n_img]), "rgb");
        } else {
            snprintf(path, sizeof path, "%s/%s/%s/%s", th_fixtures(), c->set, c->name, c->images[n_img]);
            CHECK_OK(tw_image_load(path, NULL, &ims[n_img]), path);
        }
        if (!ims[n_img]) goto out;
    }
    int32_t counts[3] = { 0 };
    float *img_embd = NULL, *vid_embd = NULL;
    if (n_img) CHECK_OK(tw_images_encode(m, (const tw_image *const *)ims, n_img, &img_embd, counts), "images");
    size_t n_media = n_img;
    tw_video *v = NULL;
    if (c->video) {
        if (strcmp(c->video, "rgb") == 0 || strcmp(c->video, "resized") == 0) {
            /* frames given in memory (internal wrapper: no decoding); "resized" frames already have
            ** the tile size, so the processor leaves them as they are */
            const tw_tensor *t = tw_st_get(st, strcmp(c->video, "rgb") == 0 ? "video_frames_rgb" : "video_frames_resized");
            CHECK_OK(tw_video_from_rgb(t->data, (int32_t)t->shape[0], (int32_t)t->shape[1], (int32_t)t->shape[2], &v),
                     "frames");
        } else {
            snprintf(path, sizeof path, "%s/../media/%s", th_fixtures(), c->video);
            tw_status s = tw_video_open(path, c->n_frames, &v);
            if (s == TW_E_UNSUPPORTED) {
                printf("skipping %s: %s\n", c->name, tw_last_error());
                goto out;
            }
            CHECK_OK(s, path);
        }
        if (!v) goto out;
        CHECK_OK(tw_video_encode(m, v, &vid_embd, &counts[n_media]), "video encode");
        n_media++;
    }
    const char *prompt = json_string_value(json_object_get(cj, "prompt"));
    int32_t *ids = NULL;
    size_t n_ids = 0;
    CHECK_OK(tw_tokenize_prompt(m, prompt, strlen(prompt), counts, n_media, &ids, &n_ids), "tokenize");
    const tw_tensor *ref_ids = tw_st_get(st, "input_ids");
    bool same = ids && (int64_t)n_ids == ref_ids->shape[0];
    for (size_t i = 0; same && i < n_ids; i++) same = ids[i] == ((const int64_t *)ref_ids->data)[i];
    CHECK(same, "%s: input_ids differ from the reference (%zu vs %lld tokens)", c->name, n_ids,
          (long long)ref_ids->shape[0]);
    if (!same) goto out_ids;

    /* all media rows in prompt order */
    int32_t H = tw_model_n_embd(m), V = tw_model_n_vocab(m);
    size_t rows = 0;
    for (size_t i = 0; i < n_media; i++) rows += (size_t)counts[i];
    float *embd = malloc(sizeof(float) * rows * (size_t)H);
    size_t img_rows = rows - (c->video ? (size_t)counts[n_img] : 0);
    if (img_embd) memcpy(embd, img_embd, sizeof(float) * img_rows * H);
    if (vid_embd) memcpy(embd + img_rows * H, vid_embd, sizeof(float) * (size_t)counts[n_img] * H);

    tw_seq *s = NULL;
    CHECK_OK(tw_seq_new(m, 0, &s), "seq");
    float *logits = malloc(sizeof(float) * n_ids * (size_t)V);
    tw_eval_opts eo = { .embd = embd, .n_embd_rows = rows, .logits = logits };
    CHECK_OK(tw_seq_eval(s, ids, n_ids, &eo), "eval");
    const tw_tensor *last = tw_st_get(st, "logits_last"), *am = tw_st_get(st, "logits_argmax");
    double d = 0;
    for (int32_t k = 0; k < V; k++) d = fmax(d, fabs((double)logits[(n_ids - 1) * V + k] - ((const float *)last->data)[k]));
    CHECK(d <= (c->pixel_ties ? 5e-2 : 3e-3), "%s: last logits differ by %g", c->name, d);
    int bad_argmax = 0;
    for (size_t t = 0; t < n_ids; t++) {
        int32_t best = 0;
        for (int32_t k = 1; k < V; k++)
            if (logits[t * V + k] > logits[t * V + best]) best = k;
        bad_argmax += best != ((const int64_t *)am->data)[t];
    }
    CHECK(bad_argmax == 0, "%s: argmax differs at %d positions", c->name, bad_argmax);
    /* greedy continuation with the public generate call */
    tw_seq_rewind(s, 0);
    tw_gen_params gp = tw_gen_default_params();
    gp.max_new_tokens = 16;
    gp.ignore_model_stops = 1;
    tw_eval_opts po = { .embd = embd, .n_embd_rows = rows };
    tw_gen_result r = { 0 };
    CHECK_OK(tw_generate(s, ids, n_ids, &po, &gp, NULL, NULL, &r), "generate");
    const tw_tensor *gen = tw_st_get(st, "generated_ids");
    same = r.n_ids == 16;
    for (size_t i = 0; same && i < 16; i++) same = r.ids[i] == ((const int64_t *)gen->data)[i];
    CHECK(same, "%s: greedy tokens differ from the reference", c->name);
    printf("%s%s: %zu tokens (%zu media rows), last-logit max diff %.3g, greedy %s\n", c->name,
           c->video && strcmp(c->video, "resized") == 0 ? " (reference frames)" : "", n_ids, rows, d,
           same ? "identical" : "DIFFERENT");
    tw_gen_result_free(&r);
    prompt_paths(m, c, cj, st, ims, n_img, v, embd, rows, logits);
    tw_seq_free(s);
    free(logits), free(embd);
out_ids:
    free(ids);
    free(img_embd), free(vid_embd);
    tw_video_free(v);
    for (size_t i = 0; i < 2; i++) tw_image_free(ims[i]);
out:
    json_decref(cj);
    tw_st_close(st);
}

int main(void) {
    static const media_case tv[] = {
        { "expected", "img_60x60", { "image.png" }, NULL, 0, false },
        { "expected", "img_200x100", { "image.png" }, NULL, 0, false },
        { "expected", "img_300x170", { "image.png" }, NULL, 0, false },
        { "expected", "img_13x400", { "image.png" }, NULL, 0, false },
        { "expected", "img_50x80", { "image.png" }, NULL, 0, false },
        { "expected", "two_images", { "image0.png", "image1.png" }, NULL, 0, false },
    };
    static const media_case ov[] = {
        { "expected-video", "image_ov_200x100", { "rgb" }, NULL, 0, false },
        { "expected-video", "video_synthetic_8f", { 0 }, "rgb", 8, false },
        { "expected-video", "video_mp4_h264_8f", { 0 }, "videos/testsrc2_h264_640x360_30fps_5s.mp4", 8, false },
        { "expected-video", "video_webm_vp9_4f", { 0 }, "videos/testsrc_vp9_320x240_25fps_4s.webm", 4, true },
        { "expected-video", "image_and_video", { "rgb" }, "videos/testsrc2_h264_480x270_rot90_24fps_3s.mp4", 4, true },
        { "expected-video", "video_webm_vp9_4f", { 0 }, "resized", 4, false },
        { "expected-video", "image_and_video", { "rgb" }, "resized", 4, false },
    };
    tw_model *m = load("tiny-towervision");
    for (size_t i = 0; m && i < sizeof tv / sizeof tv[0]; i++) run_case(m, &tv[i]);
    tw_model_free(m);
    m = load("tiny-towervideo");
    for (size_t i = 0; m && i < sizeof ov / sizeof ov[0]; i++) run_case(m, &ov[i]);
    tw_model_free(m);
    return th_report();
}
