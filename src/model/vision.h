/*
** vision.h — the image and video side of the model: the SigLIP tower (siglip.c) and the one
** pipeline that turns an image or a video into the rows of its placeholder tokens (vision.c:
** tiles, tower, projector, packing as LlavaNextModel does, pooling as LlavaOnevision does;
** SPEC sections 6-7).
*/
#ifndef TW_VISION_H
#define TW_VISION_H

#include "image.h"
#include "model.h"

/* ---- the pipeline (vision.c) ---------------------------------------------------------------- */

/* Who watches the pipeline's intermediates (tower dump): fn gets each under the reference's
** names, tagged with media. */
typedef struct tw_vision_obs {
    tw_tensor_fn fn;
    void        *user_data;
    int32_t      media;
} tw_vision_obs;

tw_status tw_vision_check_image(const tw_model *m);   /* the model takes images: else a message why not */
tw_status tw_vision_check_video(const tw_model *m);
/* LlavaOnevision tiles a prompt's image only when it is the prompt's only one; with several,
** each is one padded square tile (+ one newline), as transformers does. */
bool      tw_vision_single_tile(const tw_model *m, size_t n_images_in_prompt);
/* The one anyres plan of an image of w x h: token count, tiles and packing all follow from it. */
tw_status tw_vision_image_plan(const tw_model *m, int32_t w, int32_t h, tw_anyres_plan *p);
tw_status tw_vision_image_tokens(const tw_model *m, int32_t w, int32_t h, bool single_tile, int32_t *n_tokens);
tw_status tw_vision_video_tokens(const tw_model *m, int32_t n_frames, int32_t *n_tokens);
/* The processor's pixel_values of one image: *pixels (malloc'ed) [*n_tiles][3][S][S]. */
tw_status tw_vision_image_pixels(const tw_model *m, const tw_image *im, bool single_tile, float **pixels,
                                 int32_t *n_tiles);
/* Image -> out [tw_vision_image_tokens][H]; obs may be NULL. */
tw_status tw_vision_encode_image(const tw_model *m, const tw_image *im, bool single_tile, const tw_vision_obs *obs,
                                 float *out);
/* Video -> out [tw_vision_video_tokens][H]; obs may be NULL. */
tw_status tw_vision_encode_video(const tw_model *m, const tw_video *v, const tw_vision_obs *obs, float *out);
/* The image_newline row (zeros when the checkpoint has none): out [H]. */
void      tw_vision_newline(const tw_model *m, float *out);

/* ---- the steps ------------------------------------------------------------------------------- */

/* Features per tile side (image_size / patch_size, floor: the valid convolution ignores the
** remainder) and per tile. */
int32_t tw_vision_grid(const tw_model *m);

/* Runs SigLIP on n_tiles normalised tiles pixels [n_tiles, 3, S, S] and writes the hidden state
** selected by vision_feature_layer (no post_layernorm): feat [n_tiles, G*G, C].
** hidden: NULL or [n_layer + 1, n_tiles, G*G, C] (embeddings, then every layer's output). */
tw_status tw_siglip_forward(const tw_model *m, const float *pixels, int32_t n_tiles, float *feat, float *hidden);

/* Projector: out [n, H] = linear_2(gelu_erf(linear_1(feat [n, C]))). */
tw_status tw_projector_forward(const tw_model *m, const float *feat, int64_t n, float *out);

/* Packs one image's projected tiles proj [plan->n_tiles, G*G, H] (base first) into
** out [plan->n_tokens, H]: base tokens, then the stitched, unpadded grid with image_newline
** after every row. */
tw_status tw_pack_image(const tw_model *m, const tw_anyres_plan *plan, const float *proj, float *out);

/* F.interpolate(bilinear, align_corners=False) of a [ih][iw][C] map to [oh][ow][C]. */
void tw_bilinear_hwc(const float *in, int32_t ih, int32_t iw, int32_t C, float *out, int32_t oh, int32_t ow);

/* Video (LlavaOnevision): each frame's G x G projected features are pooled bilinearly to
** ceil(G/2) per side; frames are concatenated and ONE image_newline ends the video. */
int32_t   tw_video_pooled_side(const tw_model *m);
int32_t   tw_video_token_count(const tw_model *m, int32_t n_frames);   /* frames * side^2 + 1 */
/* proj [n_frames, G*G, H] -> out [tw_video_n_tokens, H] */
tw_status tw_pool_video(const tw_model *m, const float *proj, int32_t n_frames, float *out);

#endif
