/*
** model_random.h — TowerVision models with random weights of the exact released shapes, built in
** memory (model_random.c). `tower bench` measures the engine on them without a download, and
** tw_model_load("random:2b", ...) serves them with a real tokenizer and chat template (model.c),
** so that the server and the CLI can be measured on the 2B / 9B shapes too.
*/
#ifndef TW_MODEL_RANDOM_H
#define TW_MODEL_RANDOM_H

#include "model.h"

typedef struct tw_random_spec {
    const char       *name;         /* "TowerVision-2B" etc., for messages                     */
    tw_gemma2_config  text;         /* layer_sliding is ignored: even layers slide, as Gemma2  */
    bool              has_vision;
    tw_siglip_config  vision;
    int32_t           n_pinpoints;
    int32_t           pinpoints[32][2];   /* (height, width)                                  */
    tw_dtype          type;         /* weight type of every matrix (BF16 as released); with a
                                    ** quantized type, vectors, the patch convolution and the
                                    ** position embedding stay BF16 (as `tower quantize` stores)  */
    int32_t           n_distinct;   /* text layers with their own weights, cycled over all
                                    ** layers; 0: every layer distinct                         */
    int               n_threads;    /* the model's pool; 0: every core                         */
    uint64_t          seed;
} tw_random_spec;

/* The released shapes: "2b", "9b" (TowerVision-2B / -9B), or "tiny" (a few layers of small
** widths, for tests). false for an unknown name. */
bool tw_random_spec_preset(const char *name, tw_random_spec *out);

/* "random:SHAPE" or "random:SHAPE:TYPE" (SHAPE a preset above, TYPE bf16, f16, f32, q8, q4, q8_0
** or q4_0; default bf16) -> a preset with that weight type. TW_E_ARG naming what is wrong and
** what is accepted. tw_random_name tells whether a model name is of this form at all. */
bool      tw_random_name(const char *name);
tw_status tw_random_spec_parse(const char *name, tw_random_spec *out);

/* Builds a model with every field tw_model_load_dir fills (configs, every weight tensor of the
** exact shape, widened norms, pinpoints, image token = the last id, pool), weights uniform random
** scaled by 1/sqrt(fan-in) so activations stay finite through all layers, the LM head tied to the
** embedding. The model owns its tensors (tw_model.owned): tw_model_free frees everything. No
** tokenizer or chat template (tw_model_load's "random:" names attach them). */
tw_status tw_random_model_new(const tw_random_spec *spec, tw_model **out);
/* tw_model_load of a "random:" name: the preset with every text layer distinct, its vocabulary
** the tokenizer's of p->tokenizer_dir (required; TowerVision's has 256001 ids, as the released
** models), the image placeholder its "<image>" (none: a text-only model), and the tokenizer
** files, chat template and stop ids of that directory; p's threads, kernels, matmul mode and
** final softcap apply as for a checkpoint. */
tw_status tw_random_model_load(const char *name, const tw_model_params *p, tw_model **out);
/* Whether this build can fill weights of type t (float types, Q8_0, Q4_0). */
bool      tw_random_type_ok(tw_dtype t);
/* "bf16", "f16", "f32", "q8" / "q8_0", "q4" / "q4_0". */
bool      tw_random_type_parse(const char *name, tw_dtype *t);
/* Bytes of weight data the model owns (shared layers counted once); 0 for a loaded checkpoint. */
uint64_t  tw_random_model_bytes(const tw_model *m);

#endif
