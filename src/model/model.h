/*
** model.h — the loaded model: hyper-parameters read from the checkpoint's JSON files, weights as
** pointers into the mapped safetensors, and the per-sequence state (KV cache). model.c fills
** these and validates every tensor against the config once at load, so the forward code
** (gemma2.c, later siglip.c) trusts its inputs and does no I/O.
*/
#ifndef TW_MODEL_H
#define TW_MODEL_H

#include "image.h"
#include "kernels.h"
#include "kv.h"
#include "safetensors.h"
#include "video.h"

/* ---- Gemma2 text model ------------------------------------------------------------------------ */

typedef struct tw_gemma2_config {
    int32_t n_vocab;            /* vocab_size                              */
    int32_t n_embd;             /* hidden_size (H)                         */
    int32_t n_ff;               /* intermediate_size                       */
    int32_t n_layer;            /* num_hidden_layers                       */
    int32_t n_head;             /* num_attention_heads                     */
    int32_t n_head_kv;          /* num_key_value_heads                     */
    int32_t head_dim;           /* head_dim (D)                            */
    int32_t n_ctx_train;        /* max_position_embeddings                 */
    int32_t sliding_window;     /* 0: none                                 */
    float   rms_eps;            /* rms_norm_eps                            */
    float   rope_theta;
    float   query_pre_attn_scalar; /* attention scale = query_pre_attn_scalar^-0.5 */
    float   attn_softcap;       /* attn_logit_softcapping, 0: none         */
    float   final_softcap;      /* final_logit_softcapping, 0: none        */
    bool    tie_embeddings;     /* lm_head = embed_tokens                  */
    uint8_t *layer_sliding;     /* [n_layer] 1 if the layer uses the sliding window:
                                ** "layer_types" when present, else even layer indices  */
} tw_gemma2_config;

typedef struct tw_gemma2_layer {
    const tw_tensor *attn_norm;      /* input_layernorm            [H]                */
    const tw_tensor *wq;             /* q_proj                     [n_head*D, H]      */
    const tw_tensor *wk;             /* k_proj                     [n_head_kv*D, H]   */
    const tw_tensor *wv;             /* v_proj                     [n_head_kv*D, H]   */
    const tw_tensor *wo;             /* o_proj                     [H, n_head*D]      */
    const tw_tensor *post_attn_norm; /* post_attention_layernorm   [H]                */
    const tw_tensor *ffn_norm;       /* pre_feedforward_layernorm  [H]                */
    const tw_tensor *w_gate;         /* gate_proj                  [n_ff, H]          */
    const tw_tensor *w_up;           /* up_proj                    [n_ff, H]          */
    const tw_tensor *w_down;         /* down_proj                  [H, n_ff]          */
    const tw_tensor *post_ffn_norm;  /* post_feedforward_layernorm [H]                */
    /* norm weights widened to f32 once at load (tiny; read on every token) */
    float *attn_norm_f, *post_attn_norm_f, *ffn_norm_f, *post_ffn_norm_f;   /* [H] each */
} tw_gemma2_layer;

typedef struct tw_gemma2_weights {
    const tw_tensor *embed;          /* embed_tokens [n_vocab, H]                        */
    const tw_tensor *lm_head;        /* lm_head [n_vocab, H], or embed when tied          */
    const tw_tensor *norm;           /* final norm [H]                                   */
    float           *norm_f;         /* [H] widened                                      */
    tw_gemma2_layer *layers;         /* [n_layer]                                        */
} tw_gemma2_weights;

/* ---- SigLIP vision tower + projector (validated now, run by the image path) -------------------- */

typedef struct tw_siglip_config {
    int32_t n_embd;          /* hidden_size (1152)          */
    int32_t n_ff;            /* intermediate_size (4304)    */
    int32_t n_layer;         /* num_hidden_layers (26)      */
    int32_t n_head;          /* num_attention_heads (16)    */
    int32_t image_size;      /* 384                          */
    int32_t patch_size;      /* 14                           */
    int32_t n_channels;      /* 3                            */
    float   ln_eps;          /* layer_norm_eps               */
} tw_siglip_config;

typedef struct tw_siglip_layer {
    const tw_tensor *ln1_w, *ln1_b;            /* [C]              */
    const tw_tensor *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo; /* [C,C], [C] */
    const tw_tensor *ln2_w, *ln2_b;            /* [C]              */
    const tw_tensor *fc1_w, *fc1_b;            /* [F,C], [F]       */
    const tw_tensor *fc2_w, *fc2_b;            /* [C,F], [C]       */
    /* widened to f32 once at load (tw_model_widen_vision): small, read on every call */
    float     *ln1_w_f, *ln1_b_f, *ln2_w_f, *ln2_b_f;           /* [C] each          */
    tw_tensor *bq_f, *bk_f, *bv_f, *bo_f, *fc1_b_f, *fc2_b_f;  /* F32 [C], fc1: [F] */
} tw_siglip_layer;

typedef struct tw_siglip_weights {
    const tw_tensor *patch_w;   /* [C, 3, P, P] */
    const tw_tensor *patch_b;   /* [C]          */
    const tw_tensor *pos_embd;  /* [G*G, C]     */
    const tw_tensor *post_ln_w, *post_ln_b;   /* [C], optional: unused for features */
    tw_tensor       *patch_b_f;   /* F32 [C]      widened at load */
    float           *pos_embd_f;  /* [G*G, C]     widened at load */
    tw_siglip_layer *layers;    /* [n_layer]    */
} tw_siglip_weights;

typedef struct tw_projector_weights {
    const tw_tensor *w1, *b1;   /* linear_1 [H, C], [H] (biases optional: multimodal_projector_bias) */
    const tw_tensor *w2, *b2;   /* linear_2 [H, H], [H] */
    tw_tensor       *b1_f, *b2_f;   /* F32 [H] widened at load; NULL when the bias is absent */
} tw_projector_weights;

/* ---- the model ------------------------------------------------------------------------------- */

typedef enum tw_arch { TW_ARCH_GEMMA2, TW_ARCH_LLAVA_NEXT, TW_ARCH_LLAVA_ONEVISION } tw_arch;

struct tw_model {
    char              *dir;            /* local directory the files came from, or
                                       ** the packed single-file checkpoint's path */
    tw_arch            arch;
    const char        *arch_name;      /* "gemma2", "llava_next", "llava_onevision" */
    tw_st_set         *st;             /* mapped weights                          */
    tw_gemma2_config   text;
    tw_gemma2_weights  tw;
    bool               final_softcap_on; /* resolved from params + config          */

    bool               has_vision;
    tw_siglip_config   vision;
    tw_siglip_weights  vw;
    tw_projector_weights proj;
    const tw_tensor   *image_newline;  /* [H] or NULL                             */
    float             *image_newline_f; /* [H] widened at load, or NULL           */
    int32_t            vision_feature_layer;
    char              *vision_feature_select_strategy;  /* "full" or "default"    */
    int32_t            image_token_id; /* -1 when none                            */
    int32_t            video_token_id; /* -1 when none                            */
    int32_t           *pinpoints;      /* [n_pinpoints][2] (height, width)        */
    int32_t            n_pinpoints;
    int32_t            max_num_patches; /* OneVision "anyres_max_N" -> N; 0: none  */
    tw_preproc         preproc;        /* preprocessor_config.json, read at load  */
    tw_video_preproc   video_preproc;  /* video_preprocessor_config.json (OneVision) */

    tw_tokenizer      *tok;
    tw_template       *tmpl;           /* NULL when the checkpoint has none       */
    char              *bos_token, *eos_token;  /* strings the template sees       */
    int32_t            stop_ids[16];
    size_t             n_stop_ids;

    tw_pool           *pool;
};

/* Widens the vision tower's and projector's small per-token parameters (layer norms, biases,
** position embeddings, image_newline) to f32 once, after its tensors are set (model.c's loader,
** bench's random models); tw_model_free frees them. */
tw_status tw_model_widen_vision(tw_model *m);

/* Loads config + weights of a local directory and validates them (no tokenizer, no template).
** Used by tw_model_load and by tests that build models from other directories. */
tw_status tw_model_load_dir(const char *dir, const tw_model_params *p, tw_model **out);

/* ---- sequences --------------------------------------------------------------------------------- */

struct tw_seq {
    const tw_model *m;   /* shared, read-only: several sequences per model */
    int32_t   n_ctx;       /* max positions                                           */
    int32_t   pos;         /* positions filled                                        */
    int32_t  *tokens;      /* [n_tokens] ids in the cache (n_tokens >= pos)            */
    int32_t   n_tokens;
    uint64_t *tags;        /* [n_tokens] what each position holds: 0 text, else the content
                           ** hash of the medium whose row it is (TW_SEQ_TAG_UNKNOWN: rows
                           ** given to tw_seq_eval without saying whose), so a prompt reuses
                           ** the cache only where it holds the very same image or video    */
    tw_kv     kv;          /* the KV cache (kv.h), up to n_ctx positions               */
    float    *logits;      /* [n_vocab] logits of the last evaluated position         */
    bool      logits_ok;   /* logits belong to position pos - 1 (false when empty, or
                           ** rewound since the last evaluation): scores read them    */
};

#define TW_SEQ_TAG_UNKNOWN UINT64_MAX
/* dst becomes a copy of src (positions, cache, tokens, tags, logits): a second stream from the
** same context without evaluating it again (bench's batched decode). Both of one model and one KV
** type, src->pos <= dst's n_ctx; else TW_E_ARG. On failure dst is empty (position 0). */
tw_status tw_seq_copy(tw_seq *dst, const tw_seq *src);
/* Overwrites the tags of cached positions [from, from + n) (run/prompt.c, after evaluating). */
void tw_seq_set_tags(tw_seq *s, int32_t from, const uint64_t *tags, int32_t n);
const uint64_t *tw_seq_tags(const tw_seq *s);   /* [tw_seq_pos] */

/* One sequence's part of a text forward (gemma2.c): T new tokens `ids` at positions pos ..
** pos+T-1, reading and extending the cache kv (room for pos+T positions reserved by the caller).
** embd: NULL or [n_embd_rows, H] features that replace the embedding rows of the image / video
** tokens, in order. logits: [V] of the last position; logits_all: NULL or [T, V]; hidden: NULL or
** [L+2, T, H]. Scores (logprobs, top_ids, top_lp, any may be NULL; top_* [T, n_top]): row t gives
** entry t+1 (the log-probability of ids[t+1], as tw_logprob); entry 0 is the caller's, from the
** sequence's logits before this call. Every logit is after the final softcap setting. */
typedef struct tw_gemma2_seg {
    tw_kv         *kv;
    int32_t        pos;
    const int32_t *ids;           /* [T], T >= 1 */
    int32_t        T;
    const float   *embd;
    float         *logits;        /* [V]                 */
    float         *logits_all;    /* NULL or [T, V]      */
    float         *hidden;        /* NULL or [L+2, T, H] */
    float         *logprobs;      /* NULL or [T]         */
    int32_t        n_top;         /* 0 .. TW_MAX_TOP     */
    int32_t       *top_ids;       /* NULL or [T, n_top]  */
    float         *top_lp;        /* NULL or [T, n_top]  */
} tw_gemma2_seg;

/* The text forward of n_segs segments in one pass (their rows share every weight product); the
** segments' caches must be distinct. Results per segment are what a call with it alone gives,
** bit for bit with one segment, else within the products' rounding (docs/batching.md). */
tw_status tw_gemma2_forward(const tw_model *m, const tw_gemma2_seg *segs, int32_t n_segs);

/* An image or video placeholder token: its embedding row is replaced by a medium's row. */
static inline bool tw_is_media_token(const tw_model *m, int32_t id) {
    return (m->image_token_id >= 0 && id == m->image_token_id) || (m->video_token_id >= 0 && id == m->video_token_id);
}

/* How many of ids[0..n) are image / video tokens: the rows tw_gemma2_forward takes from embd. */
size_t tw_gemma2_n_media(const tw_model *m, const int32_t *ids, size_t n);

#endif
