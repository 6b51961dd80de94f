/*
** video_api.c — the public video calls of tower.h that need the model (count, encode), each one
** call into the vision pipeline (vision.c). Opening and sampling a clip is src/media.
*/
#include "video.h"
#include "vision.h"

#include <stdlib.h>

tw_status tw_video_n_tokens(const tw_model *m, int32_t n_frames, int32_t *n_tokens) {
    return tw_vision_video_tokens(m, n_frames, n_tokens);
}

tw_status tw_video_encode(const tw_model *m, const tw_video *v, float **embd, int32_t *n_tokens) {
    *embd = NULL;
    int32_t n = 0;
    TW_TRY(tw_vision_video_tokens(m, v->n_frames, &n));
    float *out = tw_malloc(sizeof(float) * (size_t)n * (size_t)m->text.n_embd);
    if (!out) return TW_E_NOMEM;
    tw_status s = tw_vision_encode_video(m, v, NULL, out);
    if (s != TW_OK) {
        free(out);
        return s;
    }
    *embd = out;
    *n_tokens = n;
    return TW_OK;
}

int tw_model_has_vision(const tw_model *m) { return m && m->has_vision && m->image_token_id >= 0; }
int tw_model_has_video(const tw_model *m) { return m && m->has_vision && m->video_token_id >= 0; }
