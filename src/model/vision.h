/*
** vision.h — the image side of LlavaNext: SigLIP vision tower, projector, and the packing of tile
** features into the token sequence (unpadding + image_newline), as transformers'
** LlavaNextModel does (SPEC sections 6-7).
*/
#ifndef TW_VISION_H
#define TW_VISION_H

#include "image.h"
#include "model.h"

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
