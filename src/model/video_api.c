/*
** video_api.c — the public video calls: open and sample a clip, count its tokens, and encode it
** (frame preprocessing from video_prep.c, SigLIP + projector per frame, pooling from siglip.c).
*/
#include "video.h"
#include "vision.h"

#include <stdlib.h>

tw_status tw_video_open(const char *src, int32_t n_frames, tw_video **out) {
    return tw_video_load(src, n_frames, NULL, out);
}

tw_status tw_video_open_frames(const char *const *frames, int32_t n_paths, int32_t n_frames, tw_video **out) {
    return tw_video_load_images(frames, n_paths, n_frames, NULL, out);
}

int32_t tw_video_n_frames(const tw_video *v) { return v ? v->n_frames : 0; }
const int64_t *tw_video_frame_indices(const tw_video *v) { return v ? v->indices : NULL; }

static tw_status need_video(const tw_model *m) {
    if (!m->has_vision || m->video_token_id < 0)
        return tw_err(TW_E_ARG, "%s: this model (%s) takes no video: it has no <video> token (video_token_index)",
                      m->dir, m->arch_name);
    return TW_OK;
}

tw_status tw_video_n_tokens(const tw_model *m, int32_t n_frames, int32_t *n_tokens) {
    TW_TRY(need_video(m));
    if (n_frames <= 0) return tw_err(TW_E_ARG, "a video needs at least one frame (got %d)", n_frames);
    *n_tokens = tw_video_token_count(m, n_frames);
    return TW_OK;
}

tw_status tw_video_encode(const tw_model *m, const tw_video *v, float **embd, int32_t *n_tokens) {
    *embd = NULL;
    TW_TRY(need_video(m));
    if (v->n_frames <= 0) return tw_err(TW_E_ARG, "video has no frames");
    float *px = NULL;
    int32_t oh = 0, ow = 0;
    TW_TRY(tw_video_preprocess(&m->video_preproc, v, &px, &oh, &ow));
    int32_t S = m->vision.image_size;
    if (oh != S || ow != S) {
        free(px);
        return tw_err(TW_E_UNSUPPORTED, "%s: the video processor makes %dx%d frames but the vision tower takes %dx%d",
                      m->dir, ow, oh, S, S);
    }
    int32_t F = v->n_frames, G = tw_vision_grid(m), N = G * G, C = m->vision.n_embd, H = m->text.n_embd;
    int32_t n = tw_video_token_count(m, F);
    float *feat = tw_malloc(sizeof(float) * (size_t)F * N * C), *proj = tw_malloc(sizeof(float) * (size_t)F * N * H);
    float *out = tw_malloc(sizeof(float) * (size_t)n * H);
    tw_status s = TW_E_NOMEM;
    if (feat && proj && out && (s = tw_siglip_forward(m, px, F, feat, NULL)) == TW_OK &&
        (s = tw_projector_forward(m, feat, (int64_t)F * N, proj)) == TW_OK && (s = tw_pool_video(m, proj, F, out)) == TW_OK) {
        *embd = out;
        *n_tokens = n;
        out = NULL;
    }
    free(px), free(feat), free(proj), free(out);
    return s;
}
